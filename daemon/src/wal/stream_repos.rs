//! The streamer's writes to every repository of a cluster: complete segments
//! (`wal/00000001/000000010000000000000004`), partial segments
//! (`wal/00000001/000000010000000000000005.partial.000000000512A3F0`, the exact prefix up to the
//! LSN in the name, as wal-fetch expects) and history files (`wal/00000002.history`).
//!
//! Invariant: a write counts only once it is stored in every repository; a partial is removed
//! only after a longer partial or the complete segment is stored in that repository.

use crate::config::ClusterConfig;
use crate::crypto::envelope::Kind;
use crate::crypto::kek::Kek;
use crate::pg::wal_header::validate_segment;
use crate::pg::{Lsn, SegmentName, TimelineId};
use crate::repo::wal::{WalListing, WalObject};
use crate::repo::{storage_for, RepoError, Repository};

use crate::wal::with_retries;

/// A repository operation that failed, naming the repository.
#[derive(Debug, thiserror::Error)]
#[error("repository {repository}: {source}")]
pub struct RepoFailure {
    /// The repository.
    pub repository: String,
    /// Why.
    pub source: RepoError,
}

/// The open repositories of one cluster.
#[derive(Debug)]
pub struct Repos {
    repos: Vec<Repository>,
    level: i32,
}

impl Repos {
    /// Opens every repository of `cluster`.
    pub async fn open(cluster: &ClusterConfig, kek: &Kek) -> Result<Repos, RepoFailure> {
        let mut repos = Vec::new();
        for rc in &cluster.repositories {
            let open = || Repository::open(&rc.name, storage_for(rc), kek);
            let repo = with_retries("opening the repository", open)
                .await
                .map_err(fail(&rc.name))?;
            repos.push(repo);
        }
        Ok(Repos {
            repos,
            level: cluster.backup.compress_level,
        })
    }

    /// The repositories.
    pub fn all(&self) -> &[Repository] {
        &self.repos
    }

    /// How far WAL on `tli` is durable in every repository: per repository the end of its
    /// highest complete segment or partial, then the lowest of those; `None` when one holds none.
    pub async fn durable_end(&self, tli: TimelineId) -> Result<Option<Lsn>, RepoFailure> {
        let mut lowest: Option<Lsn> = None;
        for repo in &self.repos {
            let listing = with_retries("listing WAL", || repo.list_wal())
                .await
                .map_err(fail(&repo.name))?;
            let Some(end) = end_on(&listing, tli, repo.info.wal_segment_size) else {
                return Ok(None);
            };
            lowest = Some(lowest.map_or(end, |l| l.min(end)));
        }
        Ok(lowest)
    }

    /// Stores complete segment `seg` in every repository after checking its header.
    pub async fn put_segment(&self, seg: SegmentName, bytes: &[u8]) -> Result<(), RepoFailure> {
        for repo in &self.repos {
            let seg_size = repo.info.wal_segment_size;
            let sysid = repo.info.system_id().map_err(|reason| RepoFailure {
                repository: repo.name.clone(),
                source: RepoError::Format {
                    name: crate::repo::info::PATH.into(),
                    reason,
                },
            })?;
            validate_segment(bytes, seg, seg_size, Some(sysid)).map_err(|e| RepoFailure {
                repository: repo.name.clone(),
                source: RepoError::Format {
                    name: seg.file_name(seg_size),
                    reason: e.to_string(),
                },
            })?;
            let name = WalObject::Segment(seg).path(seg_size);
            self.put(repo, &name, Kind::Wal, bytes).await?;
        }
        Ok(())
    }

    /// Stores the prefix of `seg` ending at `end` in every repository.
    pub async fn put_partial(
        &self,
        seg: SegmentName,
        end: Lsn,
        bytes: &[u8],
    ) -> Result<(), RepoFailure> {
        for repo in &self.repos {
            let name = WalObject::Partial(seg, end).path(repo.info.wal_segment_size);
            self.put(repo, &name, Kind::Wal, bytes).await?;
        }
        Ok(())
    }

    /// Stores a timeline history file in every repository.
    pub async fn put_history(&self, tli: TimelineId, bytes: &[u8]) -> Result<(), RepoFailure> {
        for repo in &self.repos {
            let name = WalObject::History(tli).path(repo.info.wal_segment_size);
            self.put(repo, &name, Kind::History, bytes).await?;
        }
        Ok(())
    }

    /// Whether every repository holds the history file of `tli`.
    pub async fn has_history(&self, tli: TimelineId) -> Result<bool, RepoFailure> {
        for repo in &self.repos {
            let listing = with_retries("listing WAL", || repo.list_wal())
                .await
                .map_err(fail(&repo.name))?;
            if !listing.histories.contains(&tli) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Removes the partials of `seg` that end before `keep_from` (all of them when the complete
    /// segment is stored: pass the segment's end).
    pub async fn prune_partials(
        &self,
        seg: SegmentName,
        keep_from: Lsn,
    ) -> Result<(), RepoFailure> {
        for repo in &self.repos {
            let seg_size = repo.info.wal_segment_size;
            let prefix = format!("{}.partial.", WalObject::Segment(seg).path(seg_size));
            let list = || async { Ok(repo.storage().list(&prefix).await?) };
            let objects = with_retries("listing partials", list)
                .await
                .map_err(fail(&repo.name))?;
            for o in objects {
                let superseded = matches!(
                    WalObject::parse(&o.name, seg_size),
                    Some(WalObject::Partial(s, end)) if s == seg && end < keep_from
                );
                if superseded {
                    let delete = || async { Ok(repo.storage().delete(&o.name).await?) };
                    with_retries("removing a superseded partial", delete)
                        .await
                        .map_err(fail(&repo.name))?;
                    tracing::debug!(repository = %repo.name, object = %o.name, "removed");
                }
            }
        }
        Ok(())
    }

    async fn put(
        &self,
        repo: &Repository,
        name: &str,
        kind: Kind,
        bytes: &[u8],
    ) -> Result<(), RepoFailure> {
        with_retries("storing WAL", || {
            repo.put_object(name, kind, bytes, self.level)
        })
        .await
        .map_err(fail(&repo.name))?;
        tracing::debug!(repository = %repo.name, object = %name, "stored");
        Ok(())
    }
}

fn fail(repository: &str) -> impl Fn(RepoError) -> RepoFailure + '_ {
    move |source| RepoFailure {
        repository: repository.to_string(),
        source,
    }
}

/// The end of the newest WAL a listing holds on `tli`: its highest complete segment's end or
/// its highest partial's end, whichever is later.
pub fn end_on(listing: &WalListing, tli: TimelineId, seg_size: u64) -> Option<Lsn> {
    let complete = listing
        .segments
        .get(&tli)
        .and_then(|s| s.last())
        .map(|&segno| Lsn((segno + 1) * seg_size));
    let partial = listing
        .partials
        .iter()
        .filter(|((t, _), _)| *t == tli)
        .map(|(_, end)| *end)
        .max();
    complete.max(partial)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 16 << 20;

    #[test]
    fn the_end_is_the_later_of_complete_segments_and_partials() {
        let t1 = TimelineId(1);
        let mut l = WalListing::default();
        assert_eq!(end_on(&l, t1, S), None);
        l.segments.entry(t1).or_default().extend([3, 4]);
        assert_eq!(end_on(&l, t1, S), Some(Lsn(5 * S)));
        l.partials.insert((t1, 5), Lsn(5 * S + 10));
        l.partials.insert((TimelineId(2), 9), Lsn(9 * S + 10));
        assert_eq!(end_on(&l, t1, S), Some(Lsn(5 * S + 10)));
        l.segments.entry(t1).or_default().insert(6);
        assert_eq!(end_on(&l, t1, S), Some(Lsn(7 * S)));
    }
}
