//! Choosing what to restore, as pure functions of the manifests and the WAL listing: which
//! backup, how far continuous WAL reaches from it along the timeline history that recovery
//! will follow, and whether the target lies inside that reach.
//!
//! Example: backups ending at 17:17:40 and 18:00:12, WAL continuous on timeline 1 through
//! `0/9A000000`, newest commit at 18:42:03. A target of 18:30 picks the 18:00:12 backup; 17:00
//! is refused ("before the earliest recoverable instant"), and so is 18:50 ("after the latest").
//!
//! Invariant: every refusal happens here, before anything is written; recovery is never started
//! on WAL that is known to have a gap before the backup's stop position.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::target::{show_time, Target};
use super::RestoreError;
use crate::pg::segment::HistoryEntry;
use crate::pg::{Lsn, SegmentName, TimelineId};
use crate::repo::manifest::{BackupId, Manifest};
use crate::repo::wal::{WalListing, WalObject};

/// The timelines recovery reads, oldest first, each with the LSN where it begins.
pub type Chain = Vec<(TimelineId, Lsn)>;

/// The timelines `recovery_target_timeline = 'latest'` follows from `tli`: PostgreSQL probes
/// for history files `tli+1`, `tli+2`, … and takes the last one found, which must descend from
/// `tli`. `Err` holds that newest timeline when it does not.
pub fn timeline_chain(
    tli: TimelineId,
    histories: &BTreeMap<TimelineId, Vec<HistoryEntry>>,
) -> Result<Chain, TimelineId> {
    let mut newest = tli;
    while histories.contains_key(&TimelineId(newest.0 + 1)) {
        newest = TimelineId(newest.0 + 1);
    }
    let Some(entries) = histories.get(&newest).filter(|_| newest != tli) else {
        return Ok(vec![(tli, Lsn(0))]);
    };
    let first = entries.iter().position(|e| e.parent == tli).ok_or(newest)?;
    let mut chain = Vec::new();
    for (i, e) in entries.iter().enumerate().skip(first) {
        let begin = if i == 0 {
            Lsn(0)
        } else {
            entries[i - 1].switch_lsn
        };
        chain.push((e.parent, begin));
    }
    let last_switch = entries.last().map_or(Lsn(0), |e| e.switch_lsn);
    chain.push((newest, last_switch));
    Ok(chain)
}

/// The timeline recovery reads segment `segno` from: the newest one that began at or before it.
pub fn timeline_for(chain: &Chain, segno: u64, seg_size: u64) -> TimelineId {
    chain
        .iter()
        .rev()
        .find(|(_, begin)| begin.0 / seg_size <= segno)
        .or(chain.first())
        .map_or(TimelineId(1), |(tli, _)| *tli)
}

/// How far WAL is continuous from a starting position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reach {
    /// End of the continuous run: a segment end, or a partial's end LSN.
    pub end: Lsn,
    /// Timeline of the last object.
    pub timeline: TimelineId,
    /// The last object of the run.
    pub last: WalObject,
    /// What is missing right after the run, for messages.
    pub next_missing: String,
}

/// The continuous run of WAL from the segment holding `from`, following `chain`; `None` when
/// not even that segment (or a partial of it) is stored.
pub fn reach(listing: &WalListing, chain: &Chain, from: Lsn, seg_size: u64) -> Option<Reach> {
    let mut segno = from.0 / seg_size;
    let mut last = None;
    loop {
        let seg = SegmentName {
            tli: timeline_for(chain, segno, seg_size),
            segno,
        };
        if listing.has_segment(seg) {
            last = Some(seg);
            segno += 1;
            continue;
        }
        let name = seg.file_name(seg_size);
        if let Some(end) = listing.partials.get(&(seg.tli, segno)) {
            let next_missing = format!("segment {name} past {end} (only a partial is stored)");
            let last = WalObject::Partial(seg, *end);
            return Some(Reach {
                end: *end,
                timeline: seg.tli,
                last,
                next_missing,
            });
        }
        let next_missing = format!("segment {name}");
        return last.map(|l: SegmentName| Reach {
            end: Lsn(segno * seg_size),
            timeline: l.tli,
            last: WalObject::Segment(l),
            next_missing,
        });
    }
}

/// Refuses a backup whose WAL, from its start segment through its stop position, has a gap.
pub fn check_backup_wal(
    m: &Manifest,
    chain: &Chain,
    reach: Option<&Reach>,
    repository: &str,
) -> Result<(), RestoreError> {
    if reach.is_some_and(|r| r.end >= m.stop_lsn) {
        return Ok(());
    }
    let missing = match reach {
        Some(r) => r.next_missing.clone(),
        None => {
            let seg_size = m.wal_segment_size;
            let segno = m.start_lsn.0 / seg_size;
            let seg = SegmentName {
                tli: timeline_for(chain, segno, seg_size),
                segno,
            };
            format!("segment {}", seg.file_name(seg_size))
        }
    };
    Err(RestoreError::WalGap {
        backup: m.backup_id.to_string(),
        repository: repository.into(),
        missing,
        from: m.start_lsn.to_string(),
        through: m.stop_lsn.to_string(),
    })
}

/// Refuses to replay "to the end" (latest, or an xid or name found only by replaying) when WAL
/// is stored past a hole in the run: recovery would stop at the hole and promote, silently
/// dropping the later WAL. Returns the first stored object beyond the hole.
pub fn check_no_wal_beyond(
    listing: &WalListing,
    chain: &Chain,
    reach: &Reach,
    seg_size: u64,
    repository: &str,
) -> Result<(), RestoreError> {
    // The segment where the run breaks: after a partial, its own tail is missing.
    let hole = match reach.last {
        WalObject::Partial(seg, _) => seg.segno,
        _ => reach.end.0 / seg_size,
    };
    let timelines: Vec<TimelineId> = chain.iter().map(|(t, _)| *t).collect();
    let on_chain = |t: &TimelineId| timelines.contains(t);
    let complete = listing
        .segments
        .iter()
        .filter(|(t, _)| on_chain(t))
        .flat_map(|(t, segs)| {
            segs.iter()
                .filter(|s| **s > hole)
                .map(|s| SegmentName { tli: *t, segno: *s })
        });
    let partial = listing
        .partials
        .keys()
        .filter(|(t, s)| on_chain(t) && *s > hole)
        .map(|(t, s)| SegmentName { tli: *t, segno: *s });
    match complete.chain(partial).min() {
        None => Ok(()),
        Some(later) => Err(RestoreError::WalBeyondGap {
            repository: repository.into(),
            end: reach.end.to_string(),
            missing: reach.next_missing.clone(),
            later: later.file_name(seg_size),
        }),
    }
}

/// The newest backup: the one whose stop position is highest.
pub fn newest(manifests: &[Manifest]) -> Option<&Manifest> {
    manifests.iter().max_by_key(|m| (m.stop_lsn, m.stop_time))
}

/// Chooses the backup to restore for `target`: `explicit` if given (refused when the target is
/// before its stop), else the newest backup that ends at or before a time or LSN target, else
/// the newest backup.
pub fn choose_backup<'a>(
    manifests: &'a [Manifest],
    target: &Target,
    explicit: Option<&BackupId>,
    repository: &str,
) -> Result<&'a Manifest, RestoreError> {
    let oldest = manifests
        .iter()
        .min_by_key(|m| (m.stop_lsn, m.stop_time))
        .ok_or_else(|| RestoreError::NoBackups {
            repository: repository.into(),
        })?;
    if let Some(id) = explicit {
        let m = manifests
            .iter()
            .find(|m| &m.backup_id == id)
            .ok_or_else(|| {
                let ids: Vec<&str> = manifests.iter().map(|m| m.backup_id.as_str()).collect();
                RestoreError::UnknownBackup {
                    id: id.to_string(),
                    repository: repository.into(),
                    available: ids.join(", "),
                }
            })?;
        let stop = match target {
            Target::Time(_) if target.time_utc() < Some(m.stop_time) => show_time(&m.stop_time),
            Target::Lsn(l) if *l < m.stop_lsn => m.stop_lsn.to_string(),
            _ => return Ok(m),
        };
        return Err(RestoreError::BeforeBackup {
            target: target.to_string(),
            backup: id.to_string(),
            stop,
        });
    }
    let before = |earliest: String| RestoreError::BeforeWindow {
        target: target.to_string(),
        what: if matches!(target, Target::Lsn(_)) {
            "position"
        } else {
            "instant"
        },
        earliest,
        backup: oldest.backup_id.to_string(),
    };
    match target {
        Target::Time(t) => manifests
            .iter()
            .filter(|m| m.stop_time <= *t)
            .max_by_key(|m| (m.stop_time, m.stop_lsn))
            .ok_or_else(|| before(show_time(&oldest.stop_time))),
        Target::Lsn(l) => manifests
            .iter()
            .filter(|m| m.stop_lsn <= *l)
            .max_by_key(|m| m.stop_lsn)
            .ok_or_else(|| before(oldest.stop_lsn.to_string())),
        _ => newest(manifests).ok_or_else(|| RestoreError::NoBackups {
            repository: repository.into(),
        }),
    }
}

/// Where the continuous WAL after a backup ends, as read from its last objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunEnd {
    /// The continuous run.
    pub reach: Reach,
    /// Where valid WAL ends inside the last object, when it could be scanned.
    pub valid_end: Option<Lsn>,
    /// The newest commit found scanning back from the end.
    pub last_commit: Option<DateTime<Utc>>,
}

impl RunEnd {
    /// The latest instant a time target can reach from backup `m`: the newest commit (recovery
    /// stops only at a commit after the target), else the backup's own stop time.
    pub fn latest_time(&self, m: &Manifest) -> DateTime<Utc> {
        self.last_commit.map_or(m.stop_time, |c| c.max(m.stop_time))
    }

    /// Where replayable WAL ends.
    pub fn latest_lsn(&self) -> Lsn {
        self.valid_end.unwrap_or(self.reach.end)
    }
}

/// Refuses a time or LSN target that the WAL after `m` cannot reach.
pub fn check_target(target: &Target, m: &Manifest, run: &RunEnd) -> Result<(), RestoreError> {
    let after = |latest: String, hint: &str| RestoreError::AfterWindow {
        target: target.to_string(),
        what: if matches!(target, Target::Lsn(_)) {
            "position"
        } else {
            "instant"
        },
        latest,
        run: format!(
            "backup {} through WAL {} on timeline {}",
            m.backup_id,
            run.latest_lsn(),
            run.reach.timeline
        ),
        hint: hint.into(),
    };
    match target {
        Target::Time(_) => {
            let t = target.time_utc().unwrap_or(m.stop_time);
            let latest = run.latest_time(m);
            // With a commit known to be the newest, PostgreSQL needs one after the target.
            let refused = if run.last_commit.is_some() {
                t >= latest
            } else {
                t > latest
            };
            if refused {
                return Err(after(
                    show_time(&latest),
                    "\nhint: recovery stops only at a commit after the target time; restore without a target to replay all archived WAL. \
                     Commits still in a WAL segment PostgreSQL has not archived yet are not in the repository: run SELECT pg_switch_wal() on the source, or set archive_timeout",
                ));
            }
        }
        Target::Lsn(l) if *l >= run.latest_lsn() => {
            return Err(after(
                run.latest_lsn().to_string(),
                "\nhint: restore without a target to replay all archived WAL",
            ));
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
#[path = "plan_tests.rs"]
pub(crate) mod tests;
