//! `lifeboat wal-push PATH`, PostgreSQL's archive_command:
//! `archive_command = '/usr/bin/lifeboat --config /etc/lifeboat/lifeboat.toml --cluster main
//! wal-push %p'`. `pg_wal/000000010000000000000003` becomes the object
//! `wal/00000001/000000010000000000000003` and `pg_wal/00000002.history` becomes
//! `wal/00000002.history`, in every repository of the cluster.
//!
//! Backup history files (`…0028.backup`) and a promotion's `.partial` segment are accepted and
//! not stored (see [`skip_reason`]); anything else PostgreSQL would not archive is refused.
//!
//! Invariant: success means the file is durable and read back in every repository with
//! `required = true` (the default). A name that is already stored succeeds only with identical
//! content; different content is an error that keeps the stored object, and PostgreSQL keeps the
//! file and calls again. A non-required repository that fails is logged at ERROR and does not
//! hold PostgreSQL back.

use std::path::{Path, PathBuf};

use super::{parse_segment, with_retries, WalFileName};
use crate::config::{ClusterConfig, RepositoryConfig};
use crate::crypto::envelope::Kind;
use crate::crypto::kek::Kek;
use crate::crypto::CryptoError;
use crate::pg::records::{scan_commits, ScanStop};
use crate::pg::segment::{parse_history, HistoryEntry};
use crate::pg::wal_header::{validate_segment, validate_timeline, WalHeaderError};
use crate::pg::{SegmentName, TimelineId};
use crate::repo::wal::WalObject;
use crate::repo::{storage_for, PutOutcome, RepoError, Repository};
use crate::storage::StorageError;

/// Why a file was not archived.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The path names nothing PostgreSQL archives.
    #[error("{name:?} is not the name of a WAL segment, timeline history, backup history or .partial file\nhint: archive_command must pass %p: `lifeboat ... wal-push %p`")]
    NotWal {
        /// The path given.
        path: PathBuf,
        /// Its file name.
        name: String,
    },
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The key-encryption key did not load.
    #[error(transparent)]
    Kek(#[from] CryptoError),
    /// A repository could not be opened or written.
    #[error("repository {repository}: {source}")]
    Repo {
        /// The repository.
        repository: String,
        /// Why.
        source: RepoError,
    },
    /// The segment does not belong in this repository under this name.
    #[error("repository {repository}: {source}")]
    Header {
        /// The repository.
        repository: String,
        /// Which check failed.
        source: WalHeaderError,
    },
    /// The file's content is not what its name says.
    #[error("{name} is not valid: {reason}")]
    Invalid {
        /// The file name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// Some required repositories have the file and others do not.
    #[error("{name} is not durable in every required repository (stored in: {}):\n{}", .stored.join(", "), failures_text(.failures))]
    Incomplete {
        /// The file name.
        name: String,
        /// Repositories where it is stored.
        stored: Vec<String>,
        /// What went wrong in the others.
        failures: Vec<PushError>,
    },
}

fn failures_text(failures: &[PushError]) -> String {
    failures
        .iter()
        .map(|f| format!("  {f}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    /// Stored in every required repository: (repository, what the write found), for each
    /// repository that has it.
    Stored(Vec<(String, PutOutcome)>),
    /// Accepted without storing, for this reason.
    Skipped(&'static str),
}

/// A file PostgreSQL asked to archive, read into memory.
#[derive(Debug, Clone)]
pub struct WalFile {
    /// Its file name, `000000010000000000000003`.
    pub name: String,
    kind: Stored,
    bytes: Vec<u8>,
    /// The directory it was in (`pg_wal`), where PostgreSQL also keeps history files.
    dir: PathBuf,
}

/// The kinds of files that are stored.
#[derive(Debug, Clone, Copy)]
enum Stored {
    /// A segment, by name; its number depends on each repository's segment size.
    Segment,
    /// A timeline history file.
    History(TimelineId),
}

/// Why a kind of file is accepted but not stored; `None` when it is stored.
pub fn skip_reason(kind: &WalFileName) -> Option<&'static str> {
    match kind {
        WalFileName::BackupHistory => {
            Some("backup history file: each manifest records its own backup label and WAL range")
        }
        WalFileName::Partial => Some(
            "promotion's .partial segment: the new timeline's first segment holds the same WAL \
             up to the switch point",
        ),
        WalFileName::Segment(_) | WalFileName::History(_) => None,
    }
}

impl WalFile {
    /// Classifies `path` by its name; `Ok(Err(reason))` for a file accepted without storing.
    pub fn read(path: &Path) -> Result<Result<WalFile, &'static str>, PushError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let not_wal = || PushError::NotWal {
            path: path.to_path_buf(),
            name: name.clone(),
        };
        // Even a file we do not store must exist: a wrong %p must not report success.
        std::fs::metadata(path).map_err(|source| PushError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let kind = match WalFileName::classify(&name).ok_or_else(not_wal)? {
            WalFileName::Segment(_) => Stored::Segment,
            WalFileName::History(tli) => Stored::History(tli),
            skipped => return Ok(Err(skip_reason(&skipped).unwrap_or("not stored"))),
        };
        let bytes = std::fs::read(path).map_err(|source| PushError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(Ok(WalFile {
            name,
            kind,
            bytes,
            dir,
        }))
    }
}

/// Archives `path` into every repository of `cluster`, all at once.
pub async fn push(cluster: &ClusterConfig, path: &Path) -> Result<PushOutcome, PushError> {
    let file = match WalFile::read(path)? {
        Ok(file) => file,
        Err(reason) => return Ok(PushOutcome::Skipped(reason)),
    };
    let kek = cluster.kek.load()?;
    let level = cluster.backup.compress_level;
    let pushes = cluster
        .repositories
        .iter()
        .map(|rc| push_one(rc, &kek, &file, level));
    let results = futures::future::join_all(pushes).await;
    let mut stored = Vec::new();
    let mut failures = Vec::new();
    for (rc, result) in cluster.repositories.iter().zip(results) {
        match result {
            Ok(outcome) => stored.push((rc.name.clone(), outcome)),
            Err(e) if rc.required => failures.push(e),
            // Until streaming's catch-up covers archive mode, this repository keeps a gap here.
            Err(e) => tracing::error!(repository = %rc.name, file = %file.name, error = %e,
                "WAL not stored in a non-required repository; it lacks this file from now on"),
        }
    }
    settle(file.name, stored, failures)
}

/// Opens `rc` and stores `file` there. A non-required repository gets one round (its backend
/// still retries each request), so an outage there costs the required ones little time.
async fn push_one(
    rc: &RepositoryConfig,
    kek: &Kek,
    file: &WalFile,
    level: i32,
) -> Result<PutOutcome, PushError> {
    let open_once = || Repository::open(&rc.name, storage_for(rc), kek);
    let repo = match rc.required {
        true => open(&rc.name, open_once).await?,
        false => open_once().await.map_err(|source| PushError::Repo {
            repository: rc.name.clone(),
            source,
        })?,
    };
    push_to(&repo, file, level).await
}

/// Opens a repository, retrying outages.
async fn open<F, Fut>(name: &str, op: F) -> Result<Repository, PushError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Repository, RepoError>>,
{
    with_retries("opening the repository", op)
        .await
        .map_err(|source| PushError::Repo {
            repository: name.to_string(),
            source,
        })
}

/// Success only when every required repository has the file; `failures` are theirs.
fn settle(
    name: String,
    stored: Vec<(String, PutOutcome)>,
    mut failures: Vec<PushError>,
) -> Result<PushOutcome, PushError> {
    match (stored.is_empty(), failures.len()) {
        (_, 0) => Ok(PushOutcome::Stored(stored)),
        (true, 1) => Err(failures.remove(0)),
        _ => {
            let stored = stored.into_iter().map(|(r, _)| r).collect();
            Err(PushError::Incomplete {
                name,
                stored,
                failures,
            })
        }
    }
}

/// Validates `file` for `repo` and stores it there create-only.
pub async fn push_to(
    repo: &Repository,
    file: &WalFile,
    level: i32,
) -> Result<PutOutcome, PushError> {
    let seg_size = repo.info.wal_segment_size;
    let (object, kind) = match file.kind {
        Stored::Segment => {
            let seg = parse_segment(&file.name, seg_size).map_err(|reason| PushError::Invalid {
                name: file.name.clone(),
                reason,
            })?;
            check_segment(repo, file, seg).await?;
            (WalObject::Segment(seg), Kind::Wal)
        }
        Stored::History(tli) => {
            check_history(&file.name, tli, &file.bytes)?;
            (WalObject::History(tli), Kind::History)
        }
    };
    let name = object.path(seg_size);
    let outcome = with_retries("storing WAL", || {
        repo.put_object(&name, kind, &file.bytes, level)
    })
    .await
    .map_err(|source| PushError::Repo {
        repository: repo.name.clone(),
        source,
    })?;
    match outcome {
        PutOutcome::Stored => tracing::debug!(repository = %repo.name, object = %name, "stored"),
        PutOutcome::AlreadyStored => tracing::info!(
            repository = %repo.name, object = %name, "already stored with identical content"
        ),
    }
    Ok(outcome)
}

/// Header checks: size, position, system identifier, and a parent timeline only where the
/// segment's timeline branched off.
async fn check_segment(
    repo: &Repository,
    file: &WalFile,
    seg: SegmentName,
) -> Result<(), PushError> {
    let seg_size = repo.info.wal_segment_size;
    let sysid = repo.info.system_id().map_err(|reason| PushError::Repo {
        repository: repo.name.clone(),
        source: RepoError::Format {
            name: crate::repo::info::PATH.into(),
            reason,
        },
    })?;
    let header_error = |source| PushError::Header {
        repository: repo.name.clone(),
        source,
    };
    let header = validate_segment(&file.bytes, seg, seg_size, Some(sysid)).map_err(header_error)?;
    check_records(file, seg, seg_size)?;
    if header.tli == seg.tli {
        return Ok(());
    }
    let history = history_of(repo, seg.tli, &file.dir).await?;
    validate_timeline(&header, seg, &history, seg_size).map_err(header_error)
}

/// A complete segment's WAL runs to its end (or to a WAL switch). Valid WAL that stops early
/// means a segment PostgreSQL is still writing, or one cut short; stored under its final name it
/// would later block the real segment and be served to recovery as if whole.
fn check_records(file: &WalFile, seg: SegmentName, seg_size: u64) -> Result<(), PushError> {
    let summary = scan_commits(&file.bytes, seg.start_lsn(seg_size));
    let reason = match summary.stop {
        ScanStop::Switch | ScanStop::SegmentEnd | ScanStop::ContinuesInNextSegment(_) => {
            return Ok(())
        }
        ScanStop::EndOfWal => format!(
            "its WAL ends at {} before the segment does: PostgreSQL is still writing it, or the \
             copy was cut short (archive_command is only given complete segments)",
            summary.end_of_valid_wal
        ),
        ScanStop::Invalid { at, reason } => format!("it holds invalid WAL at {at}: {reason}"),
    };
    Err(PushError::Invalid {
        name: file.name.clone(),
        reason,
    })
}

/// The history of `tli`: from the repository, else from PostgreSQL's `pg_wal` beside the file.
async fn history_of(
    repo: &Repository,
    tli: TimelineId,
    dir: &Path,
) -> Result<Vec<HistoryEntry>, PushError> {
    let object = WalObject::History(tli).path(repo.info.wal_segment_size);
    let file_name = tli.history_file_name();
    let text = match with_retries("reading a history file", || {
        repo.get_object(&object, Kind::History)
    })
    .await
    {
        Ok(bytes) => bytes,
        Err(RepoError::Storage(StorageError::NotFound(_))) => std::fs::read(dir.join(&file_name))
            .map_err(|e| PushError::Invalid {
            name: file_name.clone(),
            reason: format!(
                "it is needed to check a segment that starts on an earlier timeline, but it \
                     is neither in repository {} nor readable in {}: {e}\nhint: push {} first",
                repo.name,
                dir.display(),
                file_name
            ),
        })?,
        Err(source) => {
            return Err(PushError::Repo {
                repository: repo.name.clone(),
                source,
            })
        }
    };
    parse_history(&String::from_utf8_lossy(&text)).map_err(|reason| PushError::Invalid {
        name: file_name,
        reason,
    })
}

/// A history file of timeline `tli` parses and names only earlier timelines.
fn check_history(name: &str, tli: TimelineId, bytes: &[u8]) -> Result<(), PushError> {
    let invalid = |reason: String| PushError::Invalid {
        name: name.to_string(),
        reason,
    };
    let text = std::str::from_utf8(bytes).map_err(|_| invalid("it is not UTF-8 text".into()))?;
    let entries = parse_history(text).map_err(invalid)?;
    match entries.iter().find(|e| e.parent >= tli) {
        Some(e) => Err(invalid(format!(
            "it names timeline {} as a parent of timeline {tli}",
            e.parent
        ))),
        None if tli.0 < 2 || entries.is_empty() => Err(invalid(format!(
            "timeline {tli} needs at least one parent line"
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::testing::{repo, segment, SEG, SYSID};

    fn seg(segno: u64) -> SegmentName {
        SegmentName {
            tli: TimelineId(1),
            segno,
        }
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> WalFile {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        WalFile::read(&path).unwrap().unwrap()
    }

    #[tokio::test]
    async fn same_content_again_succeeds_and_different_content_keeps_the_stored_object() {
        let dir = tempfile::tempdir().unwrap();
        let repo = repo(dir.path(), "primary").await;
        let name = seg(3).file_name(SEG);
        let first = segment(seg(3), SYSID, 0xAA);
        let file = write(dir.path(), &name, &first);
        assert_eq!(push_to(&repo, &file, 3).await.unwrap(), PutOutcome::Stored);
        assert_eq!(
            push_to(&repo, &file, 3).await.unwrap(),
            PutOutcome::AlreadyStored
        );

        let other = write(dir.path(), &name, &segment(seg(3), SYSID, 0xBB));
        let err = push_to(&repo, &other, 3).await.unwrap_err().to_string();
        let object = "wal/00000001/000000010000000000000003";
        assert!(
            err.contains(object) && err.contains("different content"),
            "{err}"
        );
        assert_eq!(repo.get_object(object, Kind::Wal).await.unwrap(), first);
    }

    #[tokio::test]
    async fn a_segment_still_being_written_is_refused_and_not_stored() {
        let dir = tempfile::tempdir().unwrap();
        let repo = repo(dir.path(), "primary").await;
        let mut bytes = segment(seg(4), SYSID, 0);
        bytes[40..64].fill(0);
        let file = write(dir.path(), &seg(4).file_name(SEG), &bytes);
        let err = push_to(&repo, &file, 3).await.unwrap_err().to_string();
        assert!(err.contains("still writing"), "{err}");
        assert!(repo.list_wal().await.unwrap().segments.is_empty());
    }

    #[tokio::test]
    async fn a_segment_of_another_cluster_is_refused_naming_both_systems() {
        let dir = tempfile::tempdir().unwrap();
        let repo = repo(dir.path(), "primary").await;
        let file = write(dir.path(), &seg(5).file_name(SEG), &segment(seg(5), 42, 0));
        let err = push_to(&repo, &file, 3).await.unwrap_err().to_string();
        assert!(
            err.contains("database system 42") && err.contains(&SYSID.to_string()),
            "{err}"
        );
        assert!(repo.list_wal().await.unwrap().segments.is_empty());
    }

    #[tokio::test]
    async fn wrong_size_or_position_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let repo = repo(dir.path(), "primary").await;
        let short = write(
            dir.path(),
            &seg(3).file_name(SEG),
            &segment(seg(3), SYSID, 0)[..8192],
        );
        assert!(push_to(&repo, &short, 3)
            .await
            .unwrap_err()
            .to_string()
            .contains("8192 bytes"));
        let renamed = write(
            dir.path(),
            &seg(4).file_name(SEG),
            &segment(seg(3), SYSID, 0),
        );
        let err = push_to(&repo, &renamed, 3).await.unwrap_err().to_string();
        assert!(err.contains("should start at 0/4000000"), "{err}");
    }

    #[tokio::test]
    async fn a_parent_timeline_header_needs_the_switch_in_that_segment() {
        let dir = tempfile::tempdir().unwrap();
        let repo = repo(dir.path(), "primary").await;
        let on_tli2 = SegmentName {
            tli: TimelineId(2),
            segno: 4,
        };
        let file = write(
            dir.path(),
            &on_tli2.file_name(SEG),
            &segment(seg(4), SYSID, 0),
        );
        let err = push_to(&repo, &file, 3).await.unwrap_err().to_string();
        assert!(err.contains("00000002.history"), "{err}");
        write(
            dir.path(),
            "00000002.history",
            b"1\t0/9000000\tno recovery target specified\n",
        );
        assert!(push_to(&repo, &file, 3)
            .await
            .unwrap_err()
            .to_string()
            .contains("timeline 1"));
        let history = write(
            dir.path(),
            "00000002.history",
            b"1\t0/4031038\tno recovery target specified\n",
        );
        push_to(&repo, &history, 3).await.unwrap();
        std::fs::remove_file(dir.path().join("00000002.history")).unwrap();
        assert_eq!(push_to(&repo, &file, 3).await.unwrap(), PutOutcome::Stored);
        assert!(repo
            .get_object("wal/00000002.history", Kind::History)
            .await
            .is_ok());
    }

    #[test]
    fn backup_history_and_partial_files_are_accepted_unstored_and_others_refused() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "000000010000000000000002.00000028.backup",
            "000000010000000000000005.partial",
        ] {
            let missing = WalFile::read(&dir.path().join(name));
            assert!(
                missing.is_err(),
                "{name}: a path that does not exist is an error"
            );
            std::fs::write(dir.path().join(name), b"x").unwrap();
            assert!(
                WalFile::read(&dir.path().join(name)).unwrap().is_err(),
                "{name}"
            );
        }
        std::fs::write(dir.path().join("postmaster.pid"), b"1").unwrap();
        let err = WalFile::read(&dir.path().join("postmaster.pid"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("\"postmaster.pid\" is not the name of a WAL segment"),
            "{err}"
        );
        assert!(check_history("00000001.history", TimelineId(1), b"").is_err());
        assert!(check_history("00000003.history", TimelineId(3), b"3\t0/1\tx\n").is_err());
    }

    #[test]
    fn success_needs_every_required_repository() {
        let ok = vec![("primary".to_string(), PutOutcome::Stored)];
        assert!(settle("f".into(), ok.clone(), vec![]).is_ok());
        let fail = || PushError::Invalid {
            name: "f".into(),
            reason: "broken".into(),
        };
        let err = settle("f".into(), ok, vec![fail()])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("f is not durable in every required repository (stored in: primary)"),
            "{err}"
        );
        assert!(matches!(
            settle("f".into(), vec![], vec![fail()]),
            Err(PushError::Invalid { .. })
        ));
    }
}
