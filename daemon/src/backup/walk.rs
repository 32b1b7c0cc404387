//! The data-directory walk of a non-exclusive SQL base backup: what to copy, in a fixed order,
//! with the exclusions of PostgreSQL's own base backup (basebackup.c `sendDir`).
//!
//! Left out: the contents of `pg_wal` (the directory and `pg_wal/archive_status/` are kept, and
//! `pg_wal/summaries/` on 17), of `pg_stat_tmp`, `pg_replslot`, `pg_dynshmem`, `pg_notify`,
//! `pg_serial`, `pg_snapshots` and `pg_subtrans` (the directories are kept); the files
//! `postmaster.pid`, `postmaster.opts`, `backup_label`, `tablespace_map`, `backup_manifest`,
//! `postgresql.auto.conf.tmp`, `current_logfiles.tmp`, `pg_internal.init*`; anything named
//! `pgsql_tmp*`; in database directories temporary relations (`t3_16390`, `t3_16390_fsm.1`) and
//! in relation directories every fork of an unlogged relation but its init fork (`16402` and
//! `16402_vm` go when `16402_init` exists). A tablespace `pg_tblspc/16395 -> /srv/ts1` is a
//! [`WalkKind::TablespaceLink`] followed by `pg_tblspc/16395/PG_15_202209061/...`.
//!
//! Invariant: `global/pg_control` is never among [`Walk::entries`]; it is returned apart so the
//! copy takes it last, after every file whose state it vouches for. A file that vanishes during
//! the walk is skipped, as PostgreSQL does: WAL replay from the backup start recreates or drops it.

use std::collections::BTreeSet;
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Directories whose contents are never copied (the directory itself is).
const EXCLUDE_DIR_CONTENTS: [&str; 7] = [
    "pg_stat_tmp",
    "pg_replslot",
    "pg_dynshmem",
    "pg_notify",
    "pg_serial",
    "pg_snapshots",
    "pg_subtrans",
];

/// Files never copied, matched by whole name.
const EXCLUDE_FILES: [&str; 7] = [
    "postgresql.auto.conf.tmp",
    "current_logfiles.tmp",
    "backup_label",
    "tablespace_map",
    "backup_manifest",
    "postmaster.pid",
    "postmaster.opts",
];

/// Fork suffixes after `_` in a relation file name (the main fork has none).
const FORKS: [&str; 3] = ["fsm", "vm", "init"];

/// Longest relation file number PostgreSQL parses (OIDCHARS).
const OIDCHARS: usize = 10;

/// What the walk found: everything to copy, and pg_control to copy after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Walk {
    /// Entries in copy order: each directory before its contents, names sorted bytewise.
    pub entries: Vec<WalkEntry>,
    /// `global/pg_control`, to be copied last.
    pub pg_control: WalkEntry,
}

/// One thing to copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalkEntry {
    /// Path relative to the data directory, `/`-separated.
    pub path: String,
    /// What it is.
    pub kind: WalkKind,
}

/// The kinds of walk entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WalkKind {
    /// A directory.
    Dir {
        /// Permission bits.
        mode: u32,
    },
    /// A regular file, as the walk saw it.
    File {
        /// Size in bytes when walked.
        size: u64,
        /// Permission bits.
        mode: u32,
        /// Modification time, seconds since the Unix epoch.
        mtime: i64,
    },
    /// A tablespace symlink in `pg_tblspc`.
    TablespaceLink {
        /// The tablespace OID (the link's name).
        oid: u32,
        /// Where the link points on the source host.
        target: PathBuf,
    },
}

/// Why the walk failed.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    /// A directory or file could not be read.
    #[error("could not read {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The directory does not look like a data directory.
    #[error("{pgdata} is not a PostgreSQL data directory: {reason}\nhint: check the cluster's pgdata setting")]
    NotADataDirectory {
        /// The directory walked.
        pgdata: PathBuf,
        /// What is missing or wrong.
        reason: String,
    },
    /// A name that is not UTF-8; repository paths are strings.
    #[error("{path} has a name that is not UTF-8; rename or remove it")]
    NonUtf8Name {
        /// The path.
        path: PathBuf,
    },
}

impl WalkError {
    /// Whether trying again may succeed: an I/O error other than a permission problem may.
    pub fn is_retryable(&self) -> bool {
        matches!(self, WalkError::Io { source, .. } if source.kind() != io::ErrorKind::PermissionDenied)
    }
}

/// Walks `pgdata` and its tablespaces.
pub fn walk(pgdata: &Path) -> Result<Walk, WalkError> {
    let cluster = Cluster::read(pgdata)?;
    let mut walker = Walker {
        pgdata,
        cluster,
        entries: Vec::new(),
    };
    walker.dir(pgdata, "")?;
    let pg_control = walker.pg_control()?;
    Ok(Walk {
        entries: walker.entries,
        pg_control,
    })
}

/// The segment file number of a checksummed relation data file (`base/5/16384.2` → 2,
/// `global/1260` → 0, `base/5/16384_vm.1` → 1), or `None` for any other file.
pub fn relation_segment_info(rel_path: &str) -> Option<u32> {
    let parts: Vec<&str> = rel_path.split('/').collect();
    let in_relation_dir = match parts.as_slice() {
        ["global", _] => true,
        ["base", db, _] => is_digits(db),
        ["pg_tblspc", oid, version, db, _] => {
            is_digits(oid) && version.starts_with("PG_") && is_digits(db)
        }
        _ => false,
    };
    let name = parts.last()?;
    in_relation_dir
        .then(|| parse_relation_file(name, OIDCHARS))
        .flatten()
        .map(|f| f.segno)
}

/// A relation file name: `<number>[_<fork>][.<segno>]`.
struct RelationFile<'a> {
    number: &'a str,
    fork: Option<&'a str>,
    segno: u32,
}

/// Parses a relation file name as parse_filename_for_nontemp_relation does.
fn parse_relation_file(name: &str, max_digits: usize) -> Option<RelationFile<'_>> {
    let (stem, segno) = match name.split_once('.') {
        Some((stem, seg)) if is_digits(seg) => (stem, seg.parse().ok()?),
        Some(_) => return None,
        None => (name, 0),
    };
    let (number, fork) = match stem.split_once('_') {
        Some((number, fork)) if FORKS.contains(&fork) => (number, Some(fork)),
        Some(_) => return None,
        None => (stem, None),
    };
    (is_digits(number) && number.len() <= max_digits).then_some(RelationFile {
        number,
        fork,
        segno,
    })
}

/// looks_like_temp_rel_name: `t<backend>_<number>[_<fork>][.<segno>]`.
fn is_temp_relation(name: &str) -> bool {
    let Some((backend, rest)) = name.strip_prefix('t').and_then(|n| n.split_once('_')) else {
        return false;
    };
    is_digits(backend) && parse_relation_file(rest, usize::MAX).is_some()
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// How a directory's files are treated.
#[derive(Clone, Copy, PartialEq, Eq)]
enum DirClass {
    /// `base/<db>` or a tablespace's `<version>/<db>`: unlogged and temporary relations.
    Database,
    /// `global`: unlogged relations only.
    Global,
    /// Anything else.
    Plain,
}

/// What the walk needs to know about the cluster before it starts.
struct Cluster {
    /// `PG_<major>_<catalog version>`, the one tablespace subdirectory that is ours.
    version_dir: String,
    major: u32,
    /// Tablespaces located inside the data directory, walked only through pg_tblspc.
    nested_tablespaces: BTreeSet<String>,
}

impl Cluster {
    /// Reads PG_VERSION, the catalog version in pg_control, and the tablespace links.
    fn read(pgdata: &Path) -> Result<Cluster, WalkError> {
        let not_pgdata = |reason: String| WalkError::NotADataDirectory {
            pgdata: pgdata.to_path_buf(),
            reason,
        };
        let version = fs::read_to_string(pgdata.join("PG_VERSION"))
            .map_err(|e| not_pgdata(format!("PG_VERSION: {e}")))?;
        let major: u32 = version
            .trim()
            .parse()
            .map_err(|_| not_pgdata(format!("PG_VERSION holds {version:?}")))?;
        let control = fs::read(pgdata.join("global/pg_control"))
            .map_err(|e| not_pgdata(format!("global/pg_control: {e}")))?;
        // pg_control: system identifier u64 @0, pg_control_version u32 @8, catversion u32 @12.
        let catversion = control
            .get(12..16)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| not_pgdata("global/pg_control is too short".to_string()))?;
        let nested_tablespaces = nested_tablespaces(pgdata)?;
        Ok(Cluster {
            version_dir: format!("PG_{major}_{catversion}"),
            major,
            nested_tablespaces,
        })
    }

    /// How files in the directory at `rel` are treated.
    fn class_of(&self, rel: &str) -> DirClass {
        let parts: Vec<&str> = rel.split('/').collect();
        match parts.as_slice() {
            ["global"] => DirClass::Global,
            ["base", db] if is_digits(db) => DirClass::Database,
            ["pg_tblspc", oid, version, db]
                if is_digits(oid) && *version == self.version_dir && is_digits(db) =>
            {
                DirClass::Database
            }
            _ => DirClass::Plain,
        }
    }
}

/// Paths, relative to `pgdata`, of tablespace link targets that lie inside it. (An in-place
/// tablespace, a plain directory in pg_tblspc, is walked where it is.)
fn nested_tablespaces(pgdata: &Path) -> Result<BTreeSet<String>, WalkError> {
    let Ok(root) = fs::canonicalize(pgdata) else {
        return Ok(BTreeSet::new());
    };
    let pg_tblspc = pgdata.join("pg_tblspc");
    let names = read_dir_names(&pg_tblspc)?.unwrap_or_default();
    Ok(names
        .iter()
        .map(|name| pg_tblspc.join(name))
        .filter(|link| {
            link.symlink_metadata()
                .is_ok_and(|m| m.file_type().is_symlink())
        })
        .filter_map(|link| fs::canonicalize(link).ok())
        .filter_map(|target| target.strip_prefix(&root).ok().map(Path::to_path_buf))
        .filter_map(|rel| rel.to_str().map(str::to_string))
        .collect())
}

/// The walk in progress.
struct Walker<'a> {
    pgdata: &'a Path,
    cluster: Cluster,
    entries: Vec<WalkEntry>,
}

impl Walker<'_> {
    /// Adds the contents of the directory `abs` (at `rel` in the backup), recursively.
    fn dir(&mut self, abs: &Path, rel: &str) -> Result<(), WalkError> {
        let Some(names) = read_dir_names(abs)? else {
            return Ok(());
        };
        let class = self.cluster.class_of(rel);
        for name in &names {
            if excluded(rel, name, class, &names) {
                continue;
            }
            let child_rel = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let child_abs = abs.join(name);
            if let Some(meta) = lstat(&child_abs)? {
                self.entry(&child_abs, child_rel, rel, &meta)?;
            }
        }
        Ok(())
    }

    /// Adds one directory entry that survived the name-based exclusions.
    fn entry(
        &mut self,
        abs: &Path,
        rel: String,
        parent: &str,
        meta: &Metadata,
    ) -> Result<(), WalkError> {
        let name = rel.rsplit('/').next().unwrap_or_default();
        if EXCLUDE_DIR_CONTENTS.contains(&name) {
            self.push_dir(rel, dir_mode(abs, meta));
        } else if rel == "pg_wal" {
            self.pg_wal(dir_mode(abs, meta));
        } else if parent == "pg_tblspc" && meta.file_type().is_symlink() {
            self.tablespace(abs, rel)?;
        } else if meta.is_dir() {
            if !self.cluster.nested_tablespaces.contains(&rel) {
                self.push_dir(rel.clone(), mode_of(meta));
                self.dir(abs, &rel)?;
            }
        } else if meta.is_file() {
            self.entries.push(WalkEntry {
                path: rel,
                kind: file_kind(meta),
            });
        } else {
            tracing::warn!(path = %abs.display(), "skipping special file in the data directory");
        }
        Ok(())
    }

    /// `pg_wal` itself and the subdirectories recovery expects, never their contents.
    fn pg_wal(&mut self, mode: u32) {
        self.push_dir("pg_wal".to_string(), mode);
        self.push_dir("pg_wal/archive_status".to_string(), mode);
        if self.cluster.major >= 17 {
            self.push_dir("pg_wal/summaries".to_string(), mode);
        }
    }

    /// A tablespace link, then our version directory behind it.
    fn tablespace(&mut self, abs: &Path, rel: String) -> Result<(), WalkError> {
        let name = rel.rsplit('/').next().unwrap_or_default();
        let Ok(oid) = name.parse::<u32>() else {
            tracing::warn!(path = %abs.display(), "skipping a link in pg_tblspc that is not an OID");
            return Ok(());
        };
        let target = match fs::read_link(abs) {
            Ok(target) => target,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(WalkError::Io {
                    path: abs.to_path_buf(),
                    source,
                })
            }
        };
        self.entries.push(WalkEntry {
            path: rel.clone(),
            kind: WalkKind::TablespaceLink { oid, target },
        });
        let version_abs = abs.join(&self.cluster.version_dir);
        let version_rel = format!("{rel}/{}", self.cluster.version_dir);
        if let Some(meta) = stat(&version_abs)? {
            self.push_dir(version_rel.clone(), mode_of(&meta));
            self.dir(&version_abs, &version_rel)?;
        }
        Ok(())
    }

    fn push_dir(&mut self, path: String, mode: u32) {
        self.entries.push(WalkEntry {
            path,
            kind: WalkKind::Dir { mode },
        });
    }

    /// The pg_control entry, read after everything else.
    fn pg_control(&self) -> Result<WalkEntry, WalkError> {
        let path = self.pgdata.join("global/pg_control");
        let meta = lstat(&path)?.filter(Metadata::is_file).ok_or_else(|| {
            let reason = "global/pg_control vanished".to_string();
            WalkError::NotADataDirectory {
                pgdata: self.pgdata.to_path_buf(),
                reason,
            }
        })?;
        Ok(WalkEntry {
            path: "global/pg_control".to_string(),
            kind: file_kind(&meta),
        })
    }
}

/// The exclusions decided by name alone: PostgreSQL's file list, temporary files and relations,
/// the forks of unlogged relations (`siblings` is the directory's sorted listing), and
/// pg_control, which [`Walk`] returns apart.
fn excluded(rel: &str, name: &str, class: DirClass, siblings: &[String]) -> bool {
    if name.starts_with("pgsql_tmp") || name.starts_with("pg_internal.init") {
        return true;
    }
    if EXCLUDE_FILES.contains(&name) || (rel == "global" && name == "pg_control") {
        return true;
    }
    if class == DirClass::Database && is_temp_relation(name) {
        return true;
    }
    class != DirClass::Plain && is_unlogged_fork(name, siblings)
}

/// A fork other than `_init` of a relation that has an `_init` fork beside it.
fn is_unlogged_fork(name: &str, siblings: &[String]) -> bool {
    let Some(file) = parse_relation_file(name, OIDCHARS) else {
        return false;
    };
    let init = format!("{}_init", file.number);
    file.fork != Some("init") && siblings.binary_search(&init).is_ok()
}

/// Sorted entry names of a directory; `None` if it vanished.
fn read_dir_names(dir: &Path) -> Result<Option<Vec<String>>, WalkError> {
    let io_error = |source| WalkError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let read = match fs::read_dir(dir) {
        Ok(read) => read,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(e)),
    };
    let mut names = Vec::new();
    for entry in read {
        let name = entry.map_err(io_error)?.file_name();
        let name = name.into_string().map_err(|raw| WalkError::NonUtf8Name {
            path: dir.join(raw),
        })?;
        names.push(name);
    }
    names.sort();
    Ok(Some(names))
}

/// `lstat`, with a vanished file as `None`.
fn lstat(path: &Path) -> Result<Option<Metadata>, WalkError> {
    missing_ok(path, fs::symlink_metadata(path))
}

/// `stat` (through links), with a vanished file as `None`.
fn stat(path: &Path) -> Result<Option<Metadata>, WalkError> {
    missing_ok(path, fs::metadata(path))
}

fn missing_ok(path: &Path, result: io::Result<Metadata>) -> Result<Option<Metadata>, WalkError> {
    match result {
        Ok(meta) => Ok(Some(meta)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(WalkError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Mode of a directory kept empty; a symlinked one (say `pg_wal` on another disk) gets its
/// target's mode, or 0700 if the target is gone, as PostgreSQL writes such links as directories.
fn dir_mode(abs: &Path, meta: &Metadata) -> u32 {
    if !meta.file_type().is_symlink() {
        return mode_of(meta);
    }
    fs::metadata(abs).map(|m| mode_of(&m)).unwrap_or(0o700)
}

fn mode_of(meta: &Metadata) -> u32 {
    meta.permissions().mode() & 0o7777
}

fn file_kind(meta: &Metadata) -> WalkKind {
    WalkKind::File {
        size: meta.len(),
        mode: mode_of(meta),
        mtime: meta.mtime(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A small data directory: PG_VERSION, pg_control with catalog version 202209061, and
    /// `files` (a trailing `/` makes a directory).
    fn pgdata(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let mut control = vec![0u8; 64];
        control[12..16].copy_from_slice(&202_209_061u32.to_le_bytes());
        fs::create_dir(dir.path().join("global")).unwrap();
        fs::write(dir.path().join("global/pg_control"), control).unwrap();
        fs::write(dir.path().join("PG_VERSION"), "15\n").unwrap();
        for f in files {
            make(&dir.path().join(f));
        }
        dir
    }

    fn make(path: &Path) {
        let s = path.to_str().unwrap();
        if let Some(dir) = s.strip_suffix('/') {
            fs::create_dir_all(dir).unwrap();
        } else {
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, b"x").unwrap();
        }
    }

    fn paths(walked: &Walk) -> Vec<&str> {
        walked.entries.iter().map(|e| e.path.as_str()).collect()
    }

    #[test]
    fn applies_postgres_exclusions() {
        let dir = pgdata(&[
            "postmaster.pid",
            "postmaster.opts",
            "backup_label",
            "tablespace_map",
            "backup_manifest",
            "postgresql.auto.conf",
            "postgresql.auto.conf.tmp",
            "current_logfiles.tmp",
            "global/1260",
            "global/pg_internal.init",
            "global/pg_filenode.map",
            "pg_wal/000000010000000000000001",
            "pg_wal/archive_status/000000010000000000000001.done",
            "pg_replslot/s1/state",
            "pg_stat_tmp/global.stat",
            "pg_subtrans/0000",
            "pg_notify/",
            "pg_xact/0000",
            "base/pgsql_tmp/pgsql_tmp12.0",
            "base/5/pg_internal.init.1234",
        ]);
        let walked = walk(dir.path()).unwrap();
        let expected = [
            "PG_VERSION",
            "base",
            "base/5",
            "global",
            "global/1260",
            "global/pg_filenode.map",
            "pg_notify",
            "pg_replslot",
            "pg_stat_tmp",
            "pg_subtrans",
            "pg_wal",
            "pg_wal/archive_status",
            "pg_xact",
            "pg_xact/0000",
            "postgresql.auto.conf",
        ];
        assert_eq!(paths(&walked), expected);
        assert_eq!(walked.pg_control.path, "global/pg_control");
        assert!(matches!(
            walked.pg_control.kind,
            WalkKind::File { size: 64, .. }
        ));
    }

    #[test]
    fn drops_unlogged_and_temporary_relations() {
        let dir = pgdata(&[
            "base/5/16384",
            "base/5/16384.1",
            "base/5/16384_fsm",
            "base/5/16402",
            "base/5/16402.1",
            "base/5/16402_vm",
            "base/5/16402_init",
            "base/5/t3_16390",
            "base/5/t3_16390_fsm.1",
            "base/5/t3_x",
            "global/t3_16390",
        ]);
        let walked = walk(dir.path()).unwrap();
        let base: Vec<_> = paths(&walked)
            .into_iter()
            .filter(|p| p.starts_with("base/5/"))
            .collect();
        let expected = [
            "base/5/16384",
            "base/5/16384.1",
            "base/5/16384_fsm",
            "base/5/16402_init",
            "base/5/t3_x",
        ];
        assert_eq!(base, expected);
        // PostgreSQL looks for temporary relations in database directories only.
        assert!(paths(&walked).contains(&"global/t3_16390"));
    }

    #[test]
    fn follows_tablespace_links_into_our_version_only() {
        let dir = pgdata(&["pg_tblspc/"]);
        let ts = tempfile::tempdir().unwrap();
        for f in [
            "PG_15_202209061/5/16500",
            "PG_15_202209061/5/16501_init",
            "PG_15_202209061/5/16501",
            "PG_14_202107181/5/1",
        ] {
            make(&ts.path().join(f));
        }
        symlink(ts.path(), dir.path().join("pg_tblspc/16499")).unwrap();
        let walked = walk(dir.path()).unwrap();
        let link = walked
            .entries
            .iter()
            .find(|e| e.path == "pg_tblspc/16499")
            .unwrap();
        let target = ts.path().to_path_buf();
        assert_eq!(link.kind, WalkKind::TablespaceLink { oid: 16499, target });
        let in_ts: Vec<_> = paths(&walked)
            .into_iter()
            .filter(|p| p.starts_with("pg_tblspc/"))
            .collect();
        let expected = [
            "pg_tblspc/16499",
            "pg_tblspc/16499/PG_15_202209061",
            "pg_tblspc/16499/PG_15_202209061/5",
            "pg_tblspc/16499/PG_15_202209061/5/16500",
            "pg_tblspc/16499/PG_15_202209061/5/16501_init",
        ];
        assert_eq!(in_ts, expected);
    }

    #[test]
    fn a_tablespace_inside_pgdata_is_walked_once_and_in_place_ones_where_they_are() {
        let dir = pgdata(&[
            "pg_tblspc/16600/PG_15_202209061/5/16601",
            "ts_inside/PG_15_202209061/5/16701",
        ]);
        symlink(
            dir.path().join("ts_inside"),
            dir.path().join("pg_tblspc/16700"),
        )
        .unwrap();
        let walked = walk(dir.path()).unwrap();
        let files: Vec<_> = walked
            .entries
            .iter()
            .filter(|e| matches!(e.kind, WalkKind::File { .. }))
            .map(|e| e.path.as_str())
            .collect();
        let expected = [
            "PG_VERSION",
            "pg_tblspc/16600/PG_15_202209061/5/16601",
            "pg_tblspc/16700/PG_15_202209061/5/16701",
        ];
        assert_eq!(files, expected);
    }

    #[test]
    fn a_symlinked_pg_wal_is_a_directory_and_pg_17_keeps_summaries() {
        let dir = pgdata(&[]);
        fs::write(dir.path().join("PG_VERSION"), "17\n").unwrap();
        let wal = tempfile::tempdir().unwrap();
        fs::write(wal.path().join("000000010000000000000001"), b"x").unwrap();
        symlink(wal.path(), dir.path().join("pg_wal")).unwrap();
        let walked = walk(dir.path()).unwrap();
        let wal_entries: Vec<_> = walked
            .entries
            .iter()
            .filter(|e| e.path.starts_with("pg_wal"))
            .collect();
        let names: Vec<_> = wal_entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            names,
            ["pg_wal", "pg_wal/archive_status", "pg_wal/summaries"]
        );
        assert!(wal_entries
            .iter()
            .all(|e| matches!(e.kind, WalkKind::Dir { .. })));
    }

    #[test]
    fn records_size_and_mode() {
        let dir = pgdata(&["base/1/1259"]);
        let file = dir.path().join("base/1/1259");
        fs::write(&file, vec![0u8; 8192]).unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o640)).unwrap();
        let walked = walk(dir.path()).unwrap();
        let entry = walked
            .entries
            .iter()
            .find(|e| e.path == "base/1/1259")
            .unwrap();
        assert!(matches!(
            entry.kind,
            WalkKind::File {
                size: 8192,
                mode: 0o640,
                ..
            }
        ));
    }

    #[test]
    fn refuses_a_directory_that_is_not_pgdata() {
        let dir = tempfile::tempdir().unwrap();
        let err = walk(dir.path()).unwrap_err();
        assert!(matches!(err, WalkError::NotADataDirectory { .. }));
        assert!(!err.is_retryable());
    }

    #[test]
    fn a_vanished_directory_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_dir_names(&dir.path().join("gone")).unwrap().is_none());
        assert!(lstat(&dir.path().join("gone")).unwrap().is_none());
    }

    #[test]
    fn knows_checksummed_relation_files() {
        let cases = [
            ("base/5/16384", Some(0)),
            ("base/5/16384.2", Some(2)),
            ("base/5/16384_fsm", Some(0)),
            ("base/5/16384_vm.1", Some(1)),
            ("base/5/16384_init", Some(0)),
            ("global/1260", Some(0)),
            ("pg_tblspc/16499/PG_15_202209061/5/16500.3", Some(3)),
            ("base/5/pg_filenode.map", None),
            ("base/5/PG_VERSION", None),
            ("base/5/pg_internal.init", None),
            ("global/pg_control", None),
            ("base/5/t3_16390", None),
            ("base/5/16384_main", None),
            ("base/5/16384.", None),
            ("base/5/12345678901", None),
            ("base/x/16384", None),
            ("pg_xact/0000", None),
            ("16384", None),
        ];
        for (path, expected) in cases {
            assert_eq!(relation_segment_info(path), expected, "{path}");
        }
    }

    /// `$LIFEBOAT_TEST_PGDATA` walked gives what pg_basebackup sent: the sorted paths of its
    /// tars in `$LIFEBOAT_TEST_BASEBACKUP_LIST` (tablespace tars prefixed `pg_tblspc/<oid>/`),
    /// taken from the same cluster just before.
    #[test]
    #[ignore = "needs LIFEBOAT_TEST_PGDATA and LIFEBOAT_TEST_BASEBACKUP_LIST"]
    fn matches_pg_basebackup_on_a_real_cluster() {
        let pgdata = PathBuf::from(std::env::var("LIFEBOAT_TEST_PGDATA").unwrap());
        let list = fs::read_to_string(std::env::var("LIFEBOAT_TEST_BASEBACKUP_LIST").unwrap());
        // pg_basebackup adds these two itself, and names one entry "./pg_wal/archive_status".
        let theirs: BTreeSet<&str> = list
            .as_ref()
            .unwrap()
            .lines()
            .map(|p| p.trim_start_matches("./"))
            .filter(|p| !["backup_label", "tablespace_map"].contains(p))
            .collect();
        let walked = walk(&pgdata).unwrap();
        let ours: BTreeSet<&str> = walked
            .entries
            .iter()
            .filter(|e| !matches!(e.kind, WalkKind::TablespaceLink { .. }))
            .chain([&walked.pg_control])
            .map(|e| e.path.as_str())
            .collect();
        let only_ours: Vec<_> = ours.difference(&theirs).collect();
        let only_theirs: Vec<_> = theirs.difference(&ours).collect();
        assert_eq!((only_ours, only_theirs), (vec![], vec![]));
        assert!(walked.entries.iter().all(|e| e.path != "global/pg_control"));
    }
}
