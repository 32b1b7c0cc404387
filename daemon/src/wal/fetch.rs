//! `lifeboat wal-fetch NAME DEST`, PostgreSQL's restore_command:
//! `restore_command = '/usr/bin/lifeboat --config /etc/lifeboat/lifeboat.toml --cluster main
//! wal-fetch %f %p'`. `wal-fetch 000000010000000000000003 pg_wal/RECOVERYXLOG` serves
//! `wal/00000001/000000010000000000000003`; when only
//! `wal/00000001/000000010000000000000003.partial.0000000003A1C2F8` is stored, it serves that
//! prefix zero-padded to the segment size, because PostgreSQL never asks for a `.partial` and
//! would otherwise lose the newest WAL.
//!
//! Exit codes are PostgreSQL's contract: [`EXIT_FOUND`] once DEST is complete and durable,
//! [`EXIT_ABSENT`] once every repository's listing said the file is not there, and
//! [`EXIT_FAILED`] for anything else, which makes recovery stop rather than end early and
//! promote a cluster that is missing WAL.
//!
//! Invariant: DEST appears only by rename of a fsynced temporary file holding a whole segment
//! whose header matched its name and the repository's system identifier. A partial is served
//! only when every repository was listed and none holds the complete segment.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{parse_segment, with_retries, WalFileName};
use crate::config::ClusterConfig;
use crate::crypto::envelope::Kind;
use crate::crypto::CryptoError;
use crate::pg::segment::parse_history;
use crate::pg::wal_header::validate_segment;
use crate::pg::{Lsn, SegmentName};
use crate::repo::wal::WalObject;
use crate::repo::{storage_for, RepoError, Repository};

/// Exit status: DEST holds the file.
pub const EXIT_FOUND: u8 = 0;

/// Exit status: no repository holds the file (confirmed by a listing of each).
pub const EXIT_ABSENT: u8 = 1;

/// Exit status on any error. PostgreSQL aborts recovery on a status above 125 instead of
/// taking the file as missing; 255 is also what a Rust panic or `exit(-1)` would give.
pub const EXIT_FAILED: u8 = 255;

const _: () = assert!(
    EXIT_FAILED > 125,
    "PostgreSQL only aborts recovery above 125"
);

/// Why the file could not be served or ruled out.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The name is not one restore_command is asked for.
    #[error("{0:?} is not a WAL segment or timeline history file name\nhint: restore_command must pass %f and %p: `lifeboat ... wal-fetch %f %p`")]
    BadName(String),
    /// The key-encryption key did not load.
    #[error(transparent)]
    Kek(#[from] CryptoError),
    /// No repository served the file, and not every one could rule it out.
    #[error("cannot fetch {name}; recovery must stop rather than end early:\n{}\nhint: fix the repository, or remove one that is gone for good from the configuration", failures_text(.failures))]
    Failed {
        /// The file asked for.
        name: String,
        /// What went wrong, by repository.
        failures: Vec<RepoFailure>,
    },
    /// The segment is missing while later WAL of its timeline is stored.
    #[error("WAL segment {name} is missing from repository {repository}, but later WAL of its timeline is stored ({later}): a gap; recovery stops here rather than end early and lose everything after it\nhint: find the segment (the source's pg_wal, another repository) and store it with `lifeboat wal-push`, or restore to a target before the gap")]
    Gap {
        /// The missing segment.
        name: String,
        /// The repository with the gap.
        repository: String,
        /// A later object that proves the gap.
        later: String,
    },
    /// DEST could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The destination.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

fn failures_text(failures: &[RepoFailure]) -> String {
    failures
        .iter()
        .map(|f| format!("  repository {}: {}", f.repository, f.reason))
        .collect::<Vec<_>>()
        .join("\n")
}

/// One repository that could not answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoFailure {
    /// The repository.
    pub repository: String,
    /// What went wrong.
    pub reason: String,
}

/// What a fetch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchOutcome {
    /// DEST was written from `object` of `repository`; `partial_end` when it was a padded partial.
    Served {
        /// The repository read.
        repository: String,
        /// The object served.
        object: String,
        /// End LSN of the partial served, if it was one.
        partial_end: Option<Lsn>,
    },
    /// No repository has it.
    Absent,
}

/// The exit status PostgreSQL gets for `result`.
pub fn exit_code(result: &Result<FetchOutcome, FetchError>) -> u8 {
    match result {
        Ok(FetchOutcome::Served { .. }) => EXIT_FOUND,
        Ok(FetchOutcome::Absent) => EXIT_ABSENT,
        Err(_) => EXIT_FAILED,
    }
}

/// What a repository's listing holds for the file asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Found {
    /// The complete segment or the history file.
    Complete(String),
    /// Partials of the segment: (end LSN, object).
    Partials(Vec<(Lsn, String)>),
    /// Nothing.
    Nothing,
}

/// An object to try, by index into the listed repositories.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Candidate {
    repo: usize,
    object: String,
    partial_end: Option<Lsn>,
}

/// What the listings decided.
#[derive(Debug, PartialEq, Eq)]
enum Plan {
    /// Try these, best first; the first that validates is served.
    Try(Vec<Candidate>),
    /// Every repository was listed and none has it.
    Absent,
    /// Nothing complete was found and some repository could not be listed, so neither serving
    /// a partial nor answering "absent" is safe.
    Undecided,
}

/// Complete objects win, in repository order. Only with every repository listed: the newest
/// partial (a later one holds more WAL), else absent.
fn plan(found: &[Found], all_listed: bool) -> Plan {
    let complete: Vec<Candidate> = found
        .iter()
        .enumerate()
        .filter_map(|(repo, f)| match f {
            Found::Complete(object) => Some(Candidate {
                repo,
                object: object.clone(),
                partial_end: None,
            }),
            _ => None,
        })
        .collect();
    if !complete.is_empty() {
        return Plan::Try(complete);
    }
    if !all_listed {
        return Plan::Undecided;
    }
    let partials = found.iter().enumerate().flat_map(|(repo, f)| match f {
        Found::Partials(p) => p.iter().map(|(end, o)| (repo, *end, o.clone())).collect(),
        _ => Vec::new(),
    });
    let partials: Vec<(usize, Lsn, String)> = partials.collect();
    let Some(newest) = partials.iter().map(|(_, end, _)| *end).max() else {
        return Plan::Absent;
    };
    Plan::Try(
        partials
            .into_iter()
            .filter(|(_, end, _)| *end == newest)
            .map(|(repo, end, object)| Candidate {
                repo,
                object,
                partial_end: Some(end),
            })
            .collect(),
    )
}

/// What was asked for, in one repository's terms.
#[derive(Debug, Clone, Copy)]
enum Target {
    Segment(SegmentName),
    History(crate::pg::TimelineId),
}

/// Serves `name` from the repositories of `cluster` into `dest`.
pub async fn fetch(
    cluster: &ClusterConfig,
    name: &str,
    dest: &Path,
) -> Result<FetchOutcome, FetchError> {
    match WalFileName::classify(name) {
        Some(WalFileName::Segment(_)) | Some(WalFileName::History(_)) => {}
        Some(WalFileName::BackupHistory) => {
            tracing::debug!(file = name, "backup history files are not archived; absent");
            return Ok(FetchOutcome::Absent);
        }
        Some(WalFileName::Partial) | None => return Err(FetchError::BadName(name.to_string())),
    }
    let kek = cluster.kek.load()?;
    let mut repos = Vec::new();
    for rc in &cluster.repositories {
        let open = || Repository::open(&rc.name, storage_for(rc), &kek);
        repos.push(
            with_retries("opening the repository", open)
                .await
                .map_err(|e| RepoFailure {
                    repository: rc.name.clone(),
                    reason: e.to_string(),
                }),
        );
    }
    fetch_from(&repos, name, dest).await
}

/// Serves `name` into `dest` from the first of `repos` that has it (see [`plan`]).
pub async fn fetch_from(
    repos: &[Result<Repository, RepoFailure>],
    name: &str,
    dest: &Path,
) -> Result<FetchOutcome, FetchError> {
    let mut failures = Vec::new();
    let mut listed = Vec::new();
    let mut found = Vec::new();
    for repo in repos {
        let result = match repo {
            Ok(repo) => probe(repo, name).await.map(|f| (repo, f)),
            Err(failure) => Err(failure.clone()),
        };
        match result {
            Ok((repo, f)) => {
                listed.push(repo);
                found.push(f);
            }
            Err(failure) => failures.push(failure),
        }
    }
    let candidates = match plan(&found, failures.is_empty()) {
        Plan::Try(candidates) => candidates,
        Plan::Absent => return absent_unless_gap(&listed, name).await,
        Plan::Undecided => {
            return Err(FetchError::Failed {
                name: name.to_string(),
                failures,
            })
        }
    };
    for c in candidates {
        let repo = listed[c.repo];
        match materialize(repo, name, &c).await {
            Ok(bytes) => {
                write_durably(dest, &bytes).map_err(|source| FetchError::Write {
                    path: dest.to_path_buf(),
                    source,
                })?;
                log_served(name, repo, &c, &failures);
                let (repository, object, partial_end) =
                    (repo.name.clone(), c.object, c.partial_end);
                return Ok(FetchOutcome::Served {
                    repository,
                    object,
                    partial_end,
                });
            }
            Err(reason) => failures.push(RepoFailure {
                repository: repo.name.clone(),
                reason,
            }),
        }
    }
    Err(FetchError::Failed {
        name: name.to_string(),
        failures,
    })
}

/// A segment is absent only at the end of its timeline's WAL. When a later segment of the same
/// timeline is stored, the missing one is a hole: answering "absent" would make recovery end
/// there and promote, silently dropping everything after it.
async fn absent_unless_gap(listed: &[&Repository], name: &str) -> Result<FetchOutcome, FetchError> {
    for repo in listed {
        let Ok(Target::Segment(seg)) = target(repo, name) else {
            return Ok(FetchOutcome::Absent);
        };
        let seg_size = repo.info.wal_segment_size;
        let prefix = format!("wal/{}/", seg.tli.to_hex8());
        let list = || async { Ok(repo.storage().list(&prefix).await?) };
        let objects = with_retries("listing WAL", list)
            .await
            .map_err(|e: RepoError| FetchError::Failed {
                name: name.to_string(),
                failures: vec![RepoFailure {
                    repository: repo.name.clone(),
                    reason: e.to_string(),
                }],
            })?;
        let later = objects
            .iter()
            .find(|o| match WalObject::parse(&o.name, seg_size) {
                Some(WalObject::Segment(s)) | Some(WalObject::Partial(s, _)) => s.segno > seg.segno,
                _ => false,
            });
        if let Some(later) = later {
            return Err(FetchError::Gap {
                name: name.to_string(),
                repository: repo.name.clone(),
                later: later.name.clone(),
            });
        }
    }
    Ok(FetchOutcome::Absent)
}

fn log_served(name: &str, repo: &Repository, c: &Candidate, failures: &[RepoFailure]) {
    for f in failures {
        let (repository, reason) = (&f.repository, &f.reason);
        tracing::warn!(file = name, %repository, %reason, "repository failed; served from another");
    }
    let repository = &repo.name;
    match c.partial_end {
        Some(end_lsn) => {
            let msg = "served the newest partial, zero-padded";
            tracing::info!(file = name, %repository, %end_lsn, "{msg}")
        }
        None => tracing::debug!(file = name, %repository, object = %c.object, "served"),
    }
}

fn target(repo: &Repository, name: &str) -> Result<Target, String> {
    match WalFileName::classify(name) {
        Some(WalFileName::History(tli)) => Ok(Target::History(tli)),
        _ => parse_segment(name, repo.info.wal_segment_size).map(Target::Segment),
    }
}

/// Lists what `repo` holds for `name`.
async fn probe(repo: &Repository, name: &str) -> Result<Found, RepoFailure> {
    let failure = |reason: String| RepoFailure {
        repository: repo.name.clone(),
        reason,
    };
    let seg_size = repo.info.wal_segment_size;
    let target = target(repo, name).map_err(failure)?;
    let complete = match target {
        Target::Segment(seg) => WalObject::Segment(seg),
        Target::History(tli) => WalObject::History(tli),
    };
    let prefix = complete.path(seg_size);
    let list = || async { Ok(repo.storage().list(&prefix).await?) };
    let objects = with_retries("listing WAL", list)
        .await
        .map_err(|e: RepoError| failure(e.to_string()))?;
    let mut partials = Vec::new();
    for o in objects {
        match WalObject::parse(&o.name, seg_size) {
            Some(obj) if obj == complete => return Ok(Found::Complete(o.name)),
            Some(WalObject::Partial(seg, end)) if WalObject::Segment(seg) == complete => {
                partials.push((end, o.name))
            }
            _ => {}
        }
    }
    Ok(if partials.is_empty() {
        Found::Nothing
    } else {
        Found::Partials(partials)
    })
}

/// Reads candidate `c` and turns it into the exact bytes PostgreSQL gets, checked.
async fn materialize(repo: &Repository, name: &str, c: &Candidate) -> Result<Vec<u8>, String> {
    let seg_size = repo.info.wal_segment_size;
    let target = target(repo, name)?;
    let kind = match target {
        Target::Segment(_) => Kind::Wal,
        Target::History(_) => Kind::History,
    };
    let read = || repo.get_object(&c.object, kind);
    let plain = with_retries("reading WAL", read)
        .await
        .map_err(|e| e.to_string())?;
    match target {
        Target::History(_) => {
            let text =
                std::str::from_utf8(&plain).map_err(|_| format!("{} is not text", c.object))?;
            parse_history(text).map_err(|e| format!("{}: {e}", c.object))?;
            Ok(plain)
        }
        Target::Segment(seg) => {
            let bytes = match c.partial_end {
                Some(end) => pad_partial(plain, seg, end, seg_size)
                    .map_err(|e| format!("{}: {e}", c.object))?,
                None => plain,
            };
            let sysid = repo.info.system_id()?;
            validate_segment(&bytes, seg, seg_size, Some(sysid))
                .map_err(|e| format!("{}: {e}", c.object))?;
            Ok(bytes)
        }
    }
}

/// The prefix of `seg` up to `end`, zero-padded to a whole segment, as PostgreSQL's own
/// freshly initialised segment files are.
fn pad_partial(
    mut prefix: Vec<u8>,
    seg: SegmentName,
    end: Lsn,
    seg_size: u64,
) -> Result<Vec<u8>, String> {
    let start = seg.start_lsn(seg_size).0;
    let expected = end
        .0
        .checked_sub(start)
        .filter(|&n| n > 0 && n <= seg_size)
        .ok_or_else(|| {
            format!(
                "its end {end} is not inside segment {}",
                seg.file_name(seg_size)
            )
        })?;
    if prefix.len() as u64 != expected {
        return Err(format!(
            "it holds {} bytes but its name says {expected} (from {} to {end})",
            prefix.len(),
            Lsn(start)
        ));
    }
    prefix.resize(seg_size as usize, 0);
    Ok(prefix)
}

/// Writes `dest` through `dest.tmp` in the same directory: write, fsync, rename, fsync the
/// directory, so PostgreSQL never sees a half-written file.
fn write_durably(dest: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let file_name = dest.file_name().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the destination has no file name",
        )
    })?;
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp_name = file_name.to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, dest)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::TimelineId;
    use crate::wal::testing::{repo, segment, SEG, SYSID};

    const SEG3: SegmentName = SegmentName {
        tli: TimelineId(1),
        segno: 3,
    };
    const NAME: &str = "000000010000000000000003";

    fn partial(end: u64) -> Found {
        Found::Partials(vec![(Lsn(end), format!("p{end:X}"))])
    }

    #[test]
    fn complete_beats_partials_and_the_newest_partial_wins() {
        let c = |repo, o: &str, end: Option<u64>| Candidate {
            repo,
            object: o.into(),
            partial_end: end.map(Lsn),
        };
        let found = [
            partial(0x3000100),
            Found::Complete("s".into()),
            Found::Nothing,
        ];
        assert_eq!(plan(&found, false), Plan::Try(vec![c(1, "s", None)]));
        let found = [partial(0x3000100), partial(0x3000200), Found::Nothing];
        assert_eq!(
            plan(&found, true),
            Plan::Try(vec![c(1, "p3000200", Some(0x3000200))])
        );
        assert_eq!(plan(&found, false), Plan::Undecided);
        assert_eq!(plan(&[Found::Nothing, Found::Nothing], true), Plan::Absent);
        assert_eq!(plan(&[Found::Nothing], false), Plan::Undecided);
    }

    #[test]
    fn partials_are_padded_to_a_whole_segment_only_when_their_length_matches_their_name() {
        let padded = pad_partial(vec![7; 0x100], SEG3, Lsn(0x3000100), SEG).unwrap();
        assert_eq!(padded.len() as u64, SEG);
        assert!(padded[..0x100].iter().all(|&b| b == 7) && padded[0x100..].iter().all(|&b| b == 0));
        assert!(pad_partial(vec![7; 0xFF], SEG3, Lsn(0x3000100), SEG).is_err());
        assert!(pad_partial(vec![], SEG3, Lsn(0x3000000), SEG).is_err());
        assert!(pad_partial(vec![7; 0x100], SEG3, Lsn(0x4000100), SEG).is_err());
        assert_eq!(
            pad_partial(vec![7; SEG as usize], SEG3, Lsn(0x4000000), SEG)
                .unwrap()
                .len() as u64,
            SEG
        );
    }

    #[test]
    fn exit_codes_follow_postgres() {
        let served = FetchOutcome::Served {
            repository: "r".into(),
            object: "o".into(),
            partial_end: None,
        };
        assert_eq!(exit_code(&Ok(served)), 0);
        assert_eq!(exit_code(&Ok(FetchOutcome::Absent)), 1);
        assert_eq!(
            exit_code(&Err(FetchError::BadName("x".into()))),
            EXIT_FAILED
        );
    }

    fn gone(name: &str) -> Result<Repository, RepoFailure> {
        Err(RepoFailure {
            repository: name.into(),
            reason: "unmounted".into(),
        })
    }

    #[tokio::test]
    async fn serves_the_complete_segment_from_the_first_repository_that_has_it() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (repo(dir.path(), "a").await, repo(dir.path(), "b").await);
        let bytes = segment(SEG3, SYSID, 0x5A);
        b.put_object(&WalObject::Segment(SEG3).path(SEG), Kind::Wal, &bytes, 3)
            .await
            .unwrap();
        let end = Lsn(0x3000100);
        a.put_object(
            &WalObject::Partial(SEG3, end).path(SEG),
            Kind::Wal,
            &bytes[..0x100],
            3,
        )
        .await
        .unwrap();
        let dest = dir.path().join("RECOVERYXLOG");
        let out = fetch_from(&[gone("x"), Ok(a), Ok(b)], NAME, &dest)
            .await
            .unwrap();
        assert!(
            matches!(out, FetchOutcome::Served { ref repository, partial_end: None, .. }
                if repository == "b")
        );
        assert_eq!(std::fs::read(&dest).unwrap(), bytes);
        assert!(!dir.path().join("RECOVERYXLOG.tmp").exists());
    }

    #[tokio::test]
    async fn serves_the_newest_partial_padded_when_no_segment_is_complete() {
        let dir = tempfile::tempdir().unwrap();
        let a = repo(dir.path(), "a").await;
        let bytes = segment(SEG3, SYSID, 0x5A);
        for end in [0x3000100u64, 0x3000400, 0x3000200] {
            let prefix = &bytes[..(end - 0x3000000) as usize];
            a.put_object(
                &WalObject::Partial(SEG3, Lsn(end)).path(SEG),
                Kind::Wal,
                prefix,
                3,
            )
            .await
            .unwrap();
        }
        let dest = dir.path().join("RECOVERYXLOG");
        let out = fetch_from(&[Ok(a.clone())], NAME, &dest).await.unwrap();
        assert!(matches!(
            out,
            FetchOutcome::Served {
                partial_end: Some(Lsn(0x3000400)),
                ..
            }
        ));
        let served = std::fs::read(&dest).unwrap();
        assert_eq!(served.len() as u64, SEG);
        assert_eq!(&served[..0x400], &bytes[..0x400]);
        assert!(served[0x400..].iter().all(|&b| b == 0));
        let unreadable = fetch_from(&[Ok(a), gone("dr")], NAME, &dest).await;
        assert_eq!(exit_code(&unreadable), EXIT_FAILED);
    }

    #[tokio::test]
    async fn absent_only_when_every_repository_was_listed() {
        let dir = tempfile::tempdir().unwrap();
        let a = repo(dir.path(), "a").await;
        let dest = dir.path().join("RECOVERYHISTORY");
        assert_eq!(
            fetch_from(&[Ok(a.clone())], "00000002.history", &dest)
                .await
                .unwrap(),
            FetchOutcome::Absent
        );
        assert_eq!(
            fetch_from(&[Ok(a.clone())], NAME, &dest).await.unwrap(),
            FetchOutcome::Absent
        );
        let err = fetch_from(&[Ok(a), gone("dr")], NAME, &dest)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("repository dr: unmounted"), "{err}");
        assert!(!dest.exists());
    }

    #[tokio::test]
    async fn a_corrupt_segment_fails_hard_instead_of_falling_back_to_a_partial() {
        let dir = tempfile::tempdir().unwrap();
        let a = repo(dir.path(), "a").await;
        let bytes = segment(SEG3, SYSID, 0x5A);
        let object = WalObject::Segment(SEG3).path(SEG);
        a.put_object(&object, Kind::Wal, &bytes, 3).await.unwrap();
        a.put_object(
            &WalObject::Partial(SEG3, Lsn(0x3000100)).path(SEG),
            Kind::Wal,
            &bytes[..0x100],
            3,
        )
        .await
        .unwrap();
        let file = dir.path().join("a").join(&object);
        let mut sealed = std::fs::read(&file).unwrap();
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        std::fs::remove_file(&file).unwrap();
        std::fs::write(&file, sealed).unwrap();
        let dest = dir.path().join("RECOVERYXLOG");
        let result = fetch_from(&[Ok(a)], NAME, &dest).await;
        assert_eq!(exit_code(&result), EXIT_FAILED);
        assert!(result.unwrap_err().to_string().contains(&object));
        assert!(!dest.exists());
    }

    #[tokio::test]
    async fn a_stored_segment_of_another_system_is_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let a = repo(dir.path(), "a").await;
        let foreign = segment(SEG3, 42, 0);
        a.put_object(&WalObject::Segment(SEG3).path(SEG), Kind::Wal, &foreign, 3)
            .await
            .unwrap();
        let dest = dir.path().join("RECOVERYXLOG");
        let err = fetch_from(&[Ok(a)], NAME, &dest)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("database system 42"), "{err}");
    }
}
