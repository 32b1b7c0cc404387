//! PostgreSQL server binaries of one major version, and the operating-system user they run as.
//!
//! Example: a backup of PostgreSQL 15 is started with `/usr/lib/postgresql/15/bin/pg_ctl`
//! (Debian's layout), unless `pg-bin-dir` in the cluster's configuration names another
//! directory; as root, that `pg_ctl` runs as `postgres` (uid 101 on Debian), the owner of the
//! restored data directory.
//!
//! Invariant: PostgreSQL never runs as root. A directory counts as the binaries of major N only
//! if its `postgres --version` says N, so a client-only install or another major never passes.

use std::os::unix::fs::{lchown, MetadataExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::unistd::{getegid, geteuid, Uid, User};

/// Environment variables that would point PostgreSQL's programs at another cluster.
const CLEARED_ENV: [&str; 9] = [
    "PGDATA",
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGUSER",
    "PGDATABASE",
    "PGSERVICE",
    "PGOPTIONS",
    "PGSERVICEFILE",
];

/// Errors finding binaries or acting as the data directory's owner.
#[derive(Debug, thiserror::Error)]
pub enum BinError {
    /// No directory holds the server binaries of the major version.
    #[error("no PostgreSQL {major} server binaries found; tried:\n{}\nhint: install the PostgreSQL {major} server package, or set pg-bin-dir in [[cluster]] {cluster:?}", .tried.join("\n"))]
    NotFound {
        /// The major version needed.
        major: u32,
        /// The cluster whose configuration was used.
        cluster: String,
        /// Each place tried, with what was wrong there.
        tried: Vec<String>,
    },
    /// The configured `pg-bin-dir` is not usable for this major version.
    #[error("pg-bin-dir {dir} of [[cluster]] {cluster:?} cannot serve PostgreSQL {major}: {reason}\nhint: point pg-bin-dir at the bin directory of PostgreSQL {major}")]
    ConfiguredDir {
        /// The directory from the configuration.
        dir: PathBuf,
        /// The cluster.
        cluster: String,
        /// The major version needed.
        major: u32,
        /// What is wrong with it.
        reason: String,
    },
    /// The `postgres` user does not exist, so a root-owned restore has nobody to run as.
    #[error("running as root, PostgreSQL needs a non-root owner for {dir}, but there is no user named postgres\nhint: create the data directory owned by the user PostgreSQL should run as, or install PostgreSQL (which creates the postgres user)")]
    NoPostgresUser {
        /// The data directory.
        dir: PathBuf,
    },
    /// The user database could not be read.
    #[error("cannot look up user {what}: {source}")]
    Lookup {
        /// Which user.
        what: String,
        /// Why.
        source: nix::Error,
    },
    /// A file or directory could not be inspected or handed over.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was attempted.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A directory of PostgreSQL server programs of a known major version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgBin {
    /// The directory, e.g. `/usr/lib/postgresql/15/bin`.
    pub dir: PathBuf,
    /// The major version its `postgres --version` reports.
    pub major: u32,
}

impl PgBin {
    /// Finds the binaries of `major`: `configured` (pg-bin-dir) if set, else
    /// `/usr/lib/postgresql/<major>/bin`, else `pg_config --bindir` when its version matches.
    pub fn find(cluster: &str, configured: Option<&Path>, major: u32) -> Result<PgBin, BinError> {
        if let Some(dir) = configured {
            return check_dir(dir, major).map_err(|reason| BinError::ConfiguredDir {
                dir: dir.to_path_buf(),
                cluster: cluster.into(),
                major,
                reason,
            });
        }
        let mut tried = Vec::new();
        let debian = PathBuf::from(format!("/usr/lib/postgresql/{major}/bin"));
        match check_dir(&debian, major) {
            Ok(bin) => return Ok(bin),
            Err(why) => tried.push(format!("  {}: {why}", debian.display())),
        }
        match pg_config_bindir() {
            Ok(dir) => match check_dir(&dir, major) {
                Ok(bin) => return Ok(bin),
                Err(why) => tried.push(format!("  pg_config --bindir = {}: {why}", dir.display())),
            },
            Err(why) => tried.push(format!("  pg_config --bindir: {why}")),
        }
        Err(BinError::NotFound {
            major,
            cluster: cluster.into(),
            tried,
        })
    }

    /// The path of program `name` in this directory.
    pub fn tool(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Checks that `dir` holds `pg_ctl` and a `postgres` of major `major`.
fn check_dir(dir: &Path, major: u32) -> Result<PgBin, String> {
    for program in ["pg_ctl", "postgres"] {
        if !dir.join(program).is_file() {
            return Err(format!("no {program} there"));
        }
    }
    let postgres = dir.join("postgres");
    let out = Command::new(&postgres)
        .arg("--version")
        .output()
        .map_err(|e| format!("cannot run {} --version: {e}", postgres.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let found = major_of_version_output(&text)
        .ok_or_else(|| format!("{} --version printed {:?}", postgres.display(), text.trim()))?;
    if found != major {
        return Err(format!("it holds PostgreSQL {found}"));
    }
    Ok(PgBin {
        dir: dir.to_path_buf(),
        major,
    })
}

fn pg_config_bindir() -> Result<PathBuf, String> {
    let out = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .map_err(|e| format!("cannot run pg_config: {e}"))?;
    if !out.status.success() {
        return Err(format!("pg_config failed ({})", out.status));
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// The major version in `postgres (PostgreSQL) 15.18` or `PostgreSQL 16beta1 (Debian ...)`.
pub fn major_of_version_output(text: &str) -> Option<u32> {
    let mut words = text.split_whitespace();
    words.find(|w| w.trim_matches(|c| c == '(' || c == ')') == "PostgreSQL")?;
    let version = words.next()?;
    let digits: String = version.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// The operating-system user a restored cluster belongs to and PostgreSQL runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// User id.
    pub uid: u32,
    /// Group id files are given to.
    pub gid: u32,
    /// User name, `postgres`.
    pub name: String,
    /// Home directory, for `.pgpass` and `HOME`.
    pub home: PathBuf,
}

impl Owner {
    /// Who owns a data directory restored to `dir`: the current user unless running as root;
    /// as root, the owner of an existing non-root `dir`, else the `postgres` user.
    pub fn for_data_dir(dir: &Path) -> Result<Owner, BinError> {
        if !geteuid().is_root() {
            return Owner::current();
        }
        match std::fs::metadata(dir) {
            Ok(meta) if meta.uid() != 0 => Owner::of_uid(meta.uid(), meta.gid()),
            _ => match User::from_name("postgres") {
                Ok(Some(u)) => Ok(Owner::from_user(u, None)),
                Ok(None) => Err(BinError::NoPostgresUser {
                    dir: dir.to_path_buf(),
                }),
                Err(source) => Err(BinError::Lookup {
                    what: "postgres".into(),
                    source,
                }),
            },
        }
    }

    /// The effective user of this process.
    pub fn current() -> Result<Owner, BinError> {
        Owner::of_uid(geteuid().as_raw(), getegid().as_raw())
    }

    fn of_uid(uid: u32, gid: u32) -> Result<Owner, BinError> {
        match User::from_uid(Uid::from_raw(uid)) {
            Ok(Some(u)) => Ok(Owner::from_user(u, Some(gid))),
            Ok(None) => Ok(Owner {
                uid,
                gid,
                name: uid.to_string(),
                home: PathBuf::from("/"),
            }),
            Err(source) => Err(BinError::Lookup {
                what: format!("uid {uid}"),
                source,
            }),
        }
    }

    fn from_user(u: User, gid: Option<u32>) -> Owner {
        Owner {
            uid: u.uid.as_raw(),
            gid: gid.unwrap_or(u.gid.as_raw()),
            name: u.name,
            home: u.dir,
        }
    }

    /// Whether this process already runs as this user.
    pub fn is_current(&self) -> bool {
        geteuid().as_raw() == self.uid
    }

    /// Makes `cmd` run as this user (uid, gid, no supplementary groups, `HOME`, `USER`) with
    /// the `PG*` variables that could redirect it cleared.
    pub fn apply(&self, cmd: &mut Command) {
        for var in CLEARED_ENV {
            cmd.env_remove(var);
        }
        if self.is_current() {
            return;
        }
        cmd.uid(self.uid)
            .gid(self.gid)
            .env("HOME", &self.home)
            .env("USER", &self.name)
            .env("LOGNAME", &self.name);
    }

    /// Gives `root` and everything under it to this user, without following symlinks.
    pub fn chown_tree(&self, root: &Path) -> Result<(), BinError> {
        if !geteuid().is_root() {
            return Ok(());
        }
        let io = |op, path: &Path| {
            let path = path.to_path_buf();
            move |source| BinError::Io { op, path, source }
        };
        lchown(root, Some(self.uid), Some(self.gid)).map_err(io("cannot chown", root))?;
        if !std::fs::symlink_metadata(root)
            .map_err(io("cannot inspect", root))?
            .is_dir()
        {
            return Ok(());
        }
        for entry in std::fs::read_dir(root).map_err(io("cannot list", root))? {
            let entry = entry.map_err(io("cannot list", root))?;
            self.chown_tree(&entry.path())?;
        }
        Ok(())
    }

    /// Whether this user can read (or, with `execute`, execute or enter) `path`, asked of
    /// the system by running `test -r`/`test -x` as the user, so ACLs and groups count.
    pub fn can_access(&self, path: &Path, execute: bool) -> Result<bool, BinError> {
        let mut cmd = Command::new("test");
        cmd.arg(if execute { "-x" } else { "-r" })
            .arg(path)
            .current_dir("/");
        self.apply(&mut cmd);
        let status = cmd.status().map_err(|source| BinError::Io {
            op: "cannot run test -r on",
            path: path.to_path_buf(),
            source,
        })?;
        Ok(status.success())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_major_versions() {
        assert_eq!(
            major_of_version_output("postgres (PostgreSQL) 15.18\n"),
            Some(15)
        );
        assert_eq!(
            major_of_version_output("PostgreSQL 15.18 (Debian 15.18-0+deb12u1)"),
            Some(15)
        );
        assert_eq!(
            major_of_version_output("postgres (PostgreSQL) 16beta1"),
            Some(16)
        );
        assert_eq!(major_of_version_output("psql 15"), None);
    }

    #[test]
    fn a_missing_configured_dir_is_named() {
        let err = PgBin::find("main", Some(Path::new("/nonexistent/bin")), 15).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("/nonexistent/bin") && text.contains("no pg_ctl"),
            "{text}"
        );
    }

    #[test]
    fn the_current_user_needs_no_switch() {
        let me = Owner::current().unwrap();
        assert!(me.is_current());
        let mut cmd = Command::new("true");
        me.apply(&mut cmd);
        assert!(cmd.get_envs().any(|(k, v)| k == "PGDATA" && v.is_none()));
        assert!(me.can_access(Path::new("/"), true).unwrap());
        assert!(!me
            .can_access(Path::new("/nonexistent/file"), false)
            .unwrap());
    }
}
