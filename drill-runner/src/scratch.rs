//! The scratch environment a drill restores into: a directory under the drill's own directory and
//! a free port on 127.0.0.1, both gone when the drill ends.
//!
//! Example: `/var/lib/lifeboat/drills/20261203T171706Z/scratch/pgdata`, PostgreSQL on
//! 127.0.0.1:41873, running as `postgres` (the user `lifeboat restore` picks for that path).
//!
//! Invariant: a [`Scratch`] is torn down exactly once, on the success path by
//! [`Scratch::teardown`] and otherwise by its `Drop` (an error, a panic, or a drill future dropped
//! on SIGINT): PostgreSQL is stopped with `pg_ctl stop -m immediate` as the data directory's owner,
//! then the directory is removed. Nothing of the restored cluster outlives the drill.

use std::fs;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::{chown, DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use lifeboat::pg::bin::{BinError, Owner, PgBin};
use nix::sys::signal::{kill, Signal};
use nix::unistd::{geteuid, Pid};

/// How long an immediate shutdown may take before teardown gives up on it.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// A scratch environment that could not be made or removed.
#[derive(Debug, thiserror::Error)]
pub enum ScratchError {
    /// A file-system step failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The user PostgreSQL is to run as could not be determined.
    #[error(transparent)]
    Runner(#[from] BinError),
    /// The user that runs the scratch cluster cannot reach its directory.
    #[error("{user} runs the scratch cluster but cannot enter {dir}\nhint: make {dir} enterable by {user} (chmod o+x, or let {user} own the state directory)")]
    Unreachable {
        /// The user.
        user: String,
        /// The first directory on the way that is closed to it.
        dir: PathBuf,
    },
    /// No free port on 127.0.0.1.
    #[error("no free port on 127.0.0.1: {0}")]
    NoPort(std::io::Error),
    /// The scratch cluster did not stop.
    #[error("cannot stop the scratch cluster in {pgdata}: {reason}")]
    Stop {
        /// Its data directory.
        pgdata: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

impl ScratchError {
    /// Whether trying again may succeed: a port race can, a missing user cannot.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ScratchError::NoPort(_))
    }
}

/// A user and group to own files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileOwner {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

impl FileOwner {
    /// The owner of `path`.
    pub fn of(path: &Path) -> Result<FileOwner, ScratchError> {
        let meta = fs::metadata(path).map_err(io("cannot read", path))?;
        Ok(FileOwner {
            uid: meta.uid(),
            gid: meta.gid(),
        })
    }
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ScratchError + 'a {
    move |source| ScratchError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Makes `dir` (which must not exist) with `mode`, owned by `owner` when running as root.
pub fn make_dir(dir: &Path, mode: u32, owner: FileOwner) -> Result<(), ScratchError> {
    fs::DirBuilder::new()
        .mode(mode)
        .create(dir)
        .map_err(io("cannot create", dir))?;
    set_owner(dir, mode, owner)
}

fn set_owner(dir: &Path, mode: u32, owner: FileOwner) -> Result<(), ScratchError> {
    // The umask may have narrowed the mode.
    fs::set_permissions(dir, fs::Permissions::from_mode(mode)).map_err(io("cannot chmod", dir))?;
    if geteuid().is_root() {
        chown(dir, Some(owner.uid), Some(owner.gid)).map_err(io("cannot chown", dir))?;
    }
    Ok(())
}

/// A provisioned scratch environment; see the module invariant.
#[derive(Debug)]
pub struct Scratch {
    dir: PathBuf,
    port: u16,
    cluster: String,
    pg_bin_dir: Option<PathBuf>,
    extra_dirs: Vec<PathBuf>,
    torn_down: bool,
}

impl Scratch {
    /// Makes `dir` for the user the restore will run PostgreSQL as, and picks a free port.
    /// `cluster` and `pg_bin_dir` find `pg_ctl` at teardown, as the restore finds it.
    pub fn provision(
        dir: &Path,
        cluster: &str,
        pg_bin_dir: Option<PathBuf>,
    ) -> Result<Scratch, ScratchError> {
        fs::DirBuilder::new()
            .mode(0o700)
            .create(dir)
            .map_err(io("cannot create", dir))?;
        // From here on, Drop removes the directory whatever fails next.
        let mut scratch = Scratch {
            dir: dir.to_path_buf(),
            port: 0,
            cluster: cluster.into(),
            pg_bin_dir,
            extra_dirs: Vec::new(),
            torn_down: false,
        };
        let runner = Owner::for_data_dir(&scratch.pgdata())?;
        set_owner(
            dir,
            0o700,
            FileOwner {
                uid: runner.uid,
                gid: runner.gid,
            },
        )?;
        check_reachable(dir, &runner)?;
        scratch.port = free_port()?;
        Ok(scratch)
    }

    /// The scratch directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the cluster is restored to; the restore creates it.
    pub fn pgdata(&self) -> PathBuf {
        self.dir.join("pgdata")
    }

    /// The port PostgreSQL is to listen on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Removes `dir` too at teardown, after PostgreSQL stopped, unless it lies inside the
    /// scratch directory already: the restore puts the unix socket in a directory of its own
    /// under /tmp when the data directory's path is too long for one.
    pub fn adopt(&mut self, dir: &Path) {
        if !dir.starts_with(&self.dir) {
            self.extra_dirs.push(dir.to_path_buf());
        }
    }

    /// Stops PostgreSQL if it runs and removes the directories.
    pub fn teardown(mut self) -> Result<(), ScratchError> {
        self.torn_down = true;
        self.stop_and_remove()
    }

    fn stop_and_remove(&self) -> Result<(), ScratchError> {
        let stopped = self.stop_postgres();
        // Remove even when the stop failed: a postmaster whose directory is gone shuts down on
        // its next lock-file check, and leaving restored data behind is the worse outcome.
        let mut removed = Ok(());
        for dir in std::iter::once(&self.dir).chain(&self.extra_dirs) {
            match fs::remove_dir_all(dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    removed = Err(ScratchError::Io {
                        what: "cannot remove",
                        path: dir.clone(),
                        source: e,
                    });
                }
                _ => {}
            }
        }
        stopped.and(removed)
    }

    fn stop_postgres(&self) -> Result<(), ScratchError> {
        let pgdata = self.pgdata();
        let Some(pid) = postmaster_pid(&pgdata) else {
            return Ok(());
        };
        tracing::info!(pgdata = %pgdata.display(), pid, "stopping the scratch cluster");
        let stop_err = match self.pg_ctl_stop(&pgdata) {
            Ok(()) => return Ok(()),
            Err(reason) => reason,
        };
        tracing::warn!(error = %stop_err, "pg_ctl stop failed; sending SIGQUIT to the postmaster");
        quit_postmaster(pid).map_err(|reason| ScratchError::Stop {
            pgdata: pgdata.clone(),
            reason: format!("{stop_err}; then {reason}"),
        })
    }

    fn pg_ctl_stop(&self, pgdata: &Path) -> Result<(), String> {
        let version = fs::read_to_string(pgdata.join("PG_VERSION"))
            .map_err(|e| format!("PG_VERSION: {e}"))?;
        let major = version
            .trim()
            .parse()
            .map_err(|_| format!("PG_VERSION holds {version:?}"))?;
        let bin = PgBin::find(&self.cluster, self.pg_bin_dir.as_deref(), major)
            .map_err(|e| e.to_string())?;
        let owner = Owner::for_data_dir(pgdata).map_err(|e| e.to_string())?;
        let pg_ctl = bin.tool("pg_ctl");
        let mut cmd = Command::new(&pg_ctl);
        cmd.arg("stop")
            .arg("-D")
            .arg(pgdata)
            .args(["-m", "immediate", "-w", "-t"]);
        cmd.arg(STOP_TIMEOUT.as_secs().to_string()).current_dir("/");
        owner.apply(&mut cmd);
        let out = cmd
            .output()
            .map_err(|e| format!("cannot run {}: {e}", pg_ctl.display()))?;
        if out.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        Err(format!(
            "{} stop exited with {}: {}",
            pg_ctl.display(),
            out.status,
            stderr.trim()
        ))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.torn_down {
            return;
        }
        self.torn_down = true;
        if let Err(e) = self.stop_and_remove() {
            tracing::error!(error = %e, dir = %self.dir.display(), "scratch environment not torn down");
        }
    }
}

/// A port that was free on 127.0.0.1 a moment ago.
fn free_port() -> Result<u16, ScratchError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(ScratchError::NoPort)?;
    Ok(listener.local_addr().map_err(ScratchError::NoPort)?.port())
}

/// Fails naming the first directory on the way to `dir` that `runner` cannot enter.
fn check_reachable(dir: &Path, runner: &Owner) -> Result<(), ScratchError> {
    if runner.is_current() {
        return Ok(());
    }
    // From the root down, so the directory named is the one to open, not one below it.
    let ancestors: Vec<&Path> = dir.ancestors().collect();
    for ancestor in ancestors.into_iter().rev() {
        if !runner.can_access(ancestor, true)? {
            return Err(ScratchError::Unreachable {
                user: runner.name.clone(),
                dir: ancestor.to_path_buf(),
            });
        }
    }
    Ok(())
}

/// The postmaster's pid, from the first line of `postmaster.pid`, if the file exists.
fn postmaster_pid(pgdata: &Path) -> Option<i32> {
    let text = fs::read_to_string(pgdata.join("postmaster.pid")).ok()?;
    text.lines().next()?.trim().parse().ok()
}

/// SIGQUIT is PostgreSQL's immediate shutdown; waits until the postmaster is gone.
fn quit_postmaster(pid: i32) -> Result<(), String> {
    let pid = Pid::from_raw(pid);
    match kill(pid, Signal::SIGQUIT) {
        Ok(()) => {}
        Err(nix::errno::Errno::ESRCH) => return Ok(()),
        Err(e) => return Err(format!("cannot signal postmaster {pid}: {e}")),
    }
    let deadline = Instant::now() + STOP_TIMEOUT;
    while Instant::now() < deadline {
        if kill(pid, None) == Err(nix::errno::Errno::ESRCH) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "postmaster {pid} still runs {}s after SIGQUIT",
        STOP_TIMEOUT.as_secs()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("lifeboat-drill-{name}-{}", std::process::id()))
    }

    #[test]
    fn teardown_removes_the_directories_when_nothing_runs() {
        let base = temp("teardown");
        let socket = temp("socket");
        let mut scratch = match Scratch::provision(&base, "main", None) {
            Ok(s) => s,
            // As root without a postgres user there is nobody to run PostgreSQL as.
            Err(ScratchError::Runner(_)) => return,
            Err(e) => panic!("{e}"),
        };
        assert!(scratch.port() > 0);
        fs::create_dir(scratch.pgdata()).unwrap();
        fs::create_dir(&socket).unwrap();
        scratch.adopt(&socket);
        scratch.adopt(&scratch.pgdata());
        scratch.teardown().unwrap();
        assert!(!base.exists());
        assert!(!socket.exists());
    }

    #[test]
    fn drop_removes_the_directory() {
        let base = temp("drop");
        if let Ok(s) = Scratch::provision(&base, "main", None) {
            fs::create_dir(s.pgdata()).unwrap();
            drop(s);
        }
        assert!(!base.exists());
    }
}
