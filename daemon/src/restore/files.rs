//! Writing a backup's data directory: directories with their modes, files rebuilt from sealed
//! chunks read by ranges from packs (adjacent chunks in one read, several files at once), and
//! tablespaces as symlinks `pg_tblspc/<oid>` to new, empty locations.
//!
//! Example: file `base/5/16384` with chunks `[77c1…, 9a0f…]` is two ranges of
//! `packs/3f/3f9a…`, each opened as `chunk/<id>` (which checks its content id) and written at
//! offsets 0 and 1 MiB; tablespace 16395 becomes `DIR/pg_tblspc_restored/16395` unless mapped.
//!
//! Invariant: nothing is written outside the destination and the tablespace locations, every
//! chunk is authenticated before its bytes reach a file, and every file and directory is
//! fsynced before the restore counts as written.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::task::JoinSet;

use super::tablespace::TablespaceDir;
use super::RestoreError;
use crate::crypto::envelope::{ContentId, Kind};
use crate::repo::index::{ChunkIndex, ChunkLocation};
use crate::repo::manifest::{EntryKind, Manifest};
use crate::repo::{pack, RepoError, Repository};

/// Files restored at the same time.
const PARALLEL_FILES: usize = 8;

/// Adjacent chunks are read together up to this many bytes.
const MAX_READ: u64 = 16 << 20;

/// What was written.
#[derive(Debug, Clone, Copy, Default)]
pub struct Written {
    /// Regular files.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// Checks every path of `m` and that every chunk is indexed, before anything is written.
pub fn check_manifest(
    m: &Manifest,
    index: &ChunkIndex,
    repository: &str,
) -> Result<(), RestoreError> {
    for e in &m.entries {
        safe_relative(&e.path).ok_or_else(|| RestoreError::UnsafePath {
            backup: m.backup_id.to_string(),
            path: e.path.clone(),
        })?;
        let EntryKind::File { chunks, .. } = &e.kind else {
            continue;
        };
        for c in chunks {
            if ContentId::from_hex(c)
                .and_then(|id| index.get(&id))
                .is_none()
            {
                return Err(RestoreError::MissingChunk {
                    chunk: c.clone(),
                    path: e.path.clone(),
                    backup: m.backup_id.to_string(),
                    repository: repository.into(),
                });
            }
        }
    }
    Ok(())
}

/// `path` as a relative path of normal components only; `Some("")` for the root itself.
fn safe_relative(path: &str) -> Option<PathBuf> {
    let p = Path::new(path);
    p.components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        .then(|| {
            p.components()
                .filter(|c| matches!(c, Component::Normal(_)))
                .collect()
        })
}

/// Refuses a destination or tablespace location that exists and is not an empty directory.
pub fn check_destination(to: &Path, tablespaces: &[TablespaceDir]) -> Result<(), RestoreError> {
    for dir in std::iter::once(to).chain(tablespaces.iter().map(|t| t.location.as_path())) {
        match std::fs::read_dir(dir).map(|mut entries| entries.next().is_none()) {
            Ok(true) => {}
            Ok(false) => {
                return Err(RestoreError::NotEmpty {
                    dir: dir.to_path_buf(),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(RestoreError::io("cannot read", dir)(e)),
        }
    }
    Ok(())
}

/// Writes every entry of `m` under `to`, then fsyncs everything written.
pub async fn restore(
    repo: &Repository,
    index: Arc<ChunkIndex>,
    m: &Manifest,
    to: &Path,
    tablespaces: &[TablespaceDir],
) -> Result<Written, RestoreError> {
    make_dir(to, 0o700)?;
    for t in tablespaces {
        if let Some(parent) = t.location.parent().filter(|p| p.starts_with(to)) {
            make_dir(parent, 0o700)?;
        }
        std::fs::create_dir_all(&t.location)
            .map_err(RestoreError::io("cannot create", &t.location))?;
        set_mode(&t.location, 0o700)?;
        let link = to.join(&t.link);
        if let Some(parent) = link.parent() {
            make_dir(parent, 0o700)?;
        }
        symlink(&t.location, &link).map_err(RestoreError::io("cannot create symlink", &link))?;
    }
    for e in &m.entries {
        if let EntryKind::Dir { mode } = e.kind {
            let rel = checked(m, &e.path)?;
            if !rel.as_os_str().is_empty() {
                make_dir(&to.join(rel), mode)?;
            }
        }
    }
    let written = write_files(repo, index, m, to).await?;
    for d in ["pg_wal", "pg_wal/archive_status"] {
        make_dir(&to.join(d), 0o700)?;
    }
    sync_tree(to)?;
    for t in tablespaces {
        sync_tree(&t.location)?;
    }
    if let Some(parent) = to.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent)?;
    }
    Ok(written)
}

fn checked(m: &Manifest, path: &str) -> Result<PathBuf, RestoreError> {
    safe_relative(path).ok_or_else(|| RestoreError::UnsafePath {
        backup: m.backup_id.to_string(),
        path: path.into(),
    })
}

/// Creates `dir` (and missing parents) or accepts an existing directory, and sets its mode.
fn make_dir(dir: &Path, mode: u32) -> Result<(), RestoreError> {
    if !dir.is_dir() {
        std::fs::create_dir_all(dir).map_err(RestoreError::io("cannot create directory", dir))?;
    }
    set_mode(dir, mode)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), RestoreError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o7777))
        .map_err(RestoreError::io("cannot set the mode of", path))
}

/// Restores the regular files, [`PARALLEL_FILES`] at a time.
async fn write_files(
    repo: &Repository,
    index: Arc<ChunkIndex>,
    m: &Manifest,
    to: &Path,
) -> Result<Written, RestoreError> {
    let mut tasks = JoinSet::new();
    let mut written = Written::default();
    for e in &m.entries {
        let EntryKind::File { mode, size, chunks } = &e.kind else {
            continue;
        };
        let job = FileJob {
            repo: repo.clone(),
            index: index.clone(),
            dest: to.join(checked(m, &e.path)?),
            rel: e.path.clone(),
            backup: m.backup_id.to_string(),
            mode: *mode,
            size: *size,
            chunks: chunks.clone(),
        };
        if tasks.len() >= PARALLEL_FILES {
            add(&mut written, tasks.join_next().await)?;
        }
        tasks.spawn(job.run());
    }
    while let Some(done) = tasks.join_next().await {
        add(&mut written, Some(done))?;
    }
    Ok(written)
}

type Joined = Option<Result<Result<u64, RestoreError>, tokio::task::JoinError>>;

fn add(written: &mut Written, joined: Joined) -> Result<(), RestoreError> {
    let Some(joined) = joined else { return Ok(()) };
    let bytes = joined.map_err(|e| RestoreError::Io {
        op: "restore task failed",
        path: PathBuf::new(),
        source: std::io::Error::other(e.to_string()),
    })??;
    written.files += 1;
    written.bytes += bytes;
    Ok(())
}

/// One file to rebuild.
struct FileJob {
    repo: Repository,
    index: Arc<ChunkIndex>,
    dest: PathBuf,
    rel: String,
    backup: String,
    mode: u32,
    size: u64,
    chunks: Vec<String>,
}

impl FileJob {
    async fn run(self) -> Result<u64, RestoreError> {
        let io = |op| RestoreError::io(op, &self.dest);
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&self.dest)
            .await
            .map_err(io("cannot create"))?;
        let mut got = 0u64;
        for run in self.runs()? {
            for plain in self.read_run(&run).await? {
                file.write_all(&plain).await.map_err(io("cannot write"))?;
                got += plain.len() as u64;
            }
        }
        if got != self.size {
            let (path, backup, want) = (self.rel.clone(), self.backup.clone(), self.size);
            return Err(RestoreError::SizeMismatch {
                path,
                backup,
                got,
                want,
            });
        }
        file.sync_all().await.map_err(io("cannot fsync"))?;
        set_mode(&self.dest, self.mode)?;
        tracing::debug!(file = %self.rel, bytes = got, "restored");
        Ok(got)
    }

    /// The chunks grouped into reads: consecutive chunks stored back to back in one pack.
    fn runs(&self) -> Result<Vec<Vec<(ContentId, ChunkLocation)>>, RestoreError> {
        let mut runs: Vec<Vec<(ContentId, ChunkLocation)>> = Vec::new();
        for hex in &self.chunks {
            let missing = || RestoreError::MissingChunk {
                chunk: hex.clone(),
                path: self.rel.clone(),
                backup: self.backup.clone(),
                repository: self.repo.name.clone(),
            };
            let id = ContentId::from_hex(hex).ok_or_else(missing)?;
            let loc = self.index.get(&id).ok_or_else(missing)?.clone();
            let joins = runs
                .last()
                .and_then(|r| Some((r.first()?, r.last()?)))
                .is_some_and(|(first, last)| {
                    last.1.pack == loc.pack
                        && last.1.slot.offset + u64::from(last.1.slot.len) == loc.slot.offset
                        && loc.slot.offset + u64::from(loc.slot.len) - first.1.slot.offset
                            <= MAX_READ
                });
            match runs.last_mut() {
                Some(run) if joins => run.push((id, loc)),
                _ => runs.push(vec![(id, loc)]),
            }
        }
        Ok(runs)
    }

    /// Reads one run with a single ranged read and opens each chunk in it.
    async fn read_run(
        &self,
        run: &[(ContentId, ChunkLocation)],
    ) -> Result<Vec<Vec<u8>>, RestoreError> {
        let (Some(first), Some(last)) = (run.first(), run.last()) else {
            return Ok(Vec::new());
        };
        let start = first.1.slot.offset;
        let len = last.1.slot.offset + u64::from(last.1.slot.len) - start;
        let name = pack::path(&first.1.pack);
        let bytes = self
            .repo
            .storage()
            .get_range(&name, start, len)
            .await
            .map_err(RepoError::from)?;
        if (bytes.len() as u64) < len {
            let reason = format!(
                "it ends before {} (offset {start}, {len} bytes wanted)",
                last.0
            );
            return Err(RepoError::Format { name, reason }.into());
        }
        let mut out = Vec::with_capacity(run.len());
        for (id, loc) in run {
            let at = (loc.slot.offset - start) as usize;
            let sealed = &bytes[at..at + loc.slot.len as usize];
            let chunk = self
                .repo
                .open_sealed(&pack::chunk_name(*id), Kind::Chunk, sealed)
                .map_err(|e| RepoError::Format {
                    name: name.clone(),
                    reason: format!("chunk at offset {}: {e}", loc.slot.offset),
                })?;
            out.push(chunk);
        }
        Ok(out)
    }
}

/// Fsyncs every directory under `root` (not following symlinks), and `root` itself.
fn sync_tree(root: &Path) -> Result<(), RestoreError> {
    for entry in std::fs::read_dir(root).map_err(RestoreError::io("cannot list", root))? {
        let entry = entry.map_err(RestoreError::io("cannot list", root))?;
        let kind = entry
            .file_type()
            .map_err(RestoreError::io("cannot inspect", &entry.path()))?;
        if kind.is_dir() {
            sync_tree(&entry.path())?;
        }
    }
    sync_dir(root)
}

fn sync_dir(dir: &Path) -> Result<(), RestoreError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(RestoreError::io("cannot fsync directory", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_paths_pass() {
        assert_eq!(
            safe_relative("base/5/16384"),
            Some(PathBuf::from("base/5/16384"))
        );
        assert_eq!(safe_relative("./global"), Some(PathBuf::from("global")));
        assert_eq!(safe_relative(""), Some(PathBuf::new()));
        assert_eq!(safe_relative("../etc/passwd"), None);
        assert_eq!(safe_relative("/etc/passwd"), None);
        assert_eq!(safe_relative("base/../../x"), None);
    }
}
