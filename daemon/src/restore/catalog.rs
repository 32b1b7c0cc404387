//! What a repository can restore: its backups and the recoverable window, for `lifeboat list`
//! and for restore's own planning.
//!
//! Example (`lifeboat list`):
//! ```text
//! backup            stopped                 start LSN  stop LSN   TLI  data     stored   WAL
//! 20261203T171706Z  2026-12-03T17:17:40Z    0/3000028  0/3000138  1    1.2 GiB  310 MiB  ok
//! recoverable window: 2026-12-03T17:17:40Z to 2026-12-03T18:42:03.120811Z
//!   (backup 20261203T171706Z through WAL 0/9002000 on timeline 1)
//! ```
//! Invariant: the window's latest instant is a commit actually read from the archived WAL that
//! follows the newest backup without a gap, never a listing's guess.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::plan::{self, Chain, Reach, RunEnd};
use super::target::show_time;
use super::RestoreError;
use crate::crypto::envelope::Kind;
use crate::pg::records::scan_commits;
use crate::pg::segment::{parse_history, HistoryEntry};
use crate::pg::{Lsn, SegmentName, TimelineId};
use crate::repo::manifest::{BackupId, Manifest};
use crate::repo::wal::{WalListing, WalObject};
use crate::repo::{RepoError, Repository};

/// How many segments to scan back from the end of WAL looking for the newest commit.
const SCAN_BACK: u64 = 8;

/// A repository's backups and recoverable window.
#[derive(Debug, Clone, Serialize)]
pub struct Catalog {
    /// The repository's name in the configuration.
    pub repository: String,
    /// Backups, oldest first.
    pub backups: Vec<BackupSummary>,
    /// The recoverable window, when some backup has its WAL.
    pub window: Option<Window>,
    /// Backups whose manifest does not open, with the reason.
    pub unreadable: Vec<(BackupId, String)>,
    /// Older backups that cannot reach the window because of a WAL gap, described.
    pub cut_off: Vec<String>,
    /// The cluster's residency zone, from the configuration (`list` sets it).
    pub residency_zone: Option<String>,
    /// The repository's region, from the configuration (`list` sets it).
    pub region: Option<String>,
}

/// One backup as `list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct BackupSummary {
    /// Its id.
    pub id: BackupId,
    /// When it started.
    pub start_time: DateTime<Utc>,
    /// When it stopped: the earliest instant it restores to.
    pub stop_time: DateTime<Utc>,
    /// START WAL LOCATION.
    pub start_lsn: Lsn,
    /// Where recovery from it becomes consistent.
    pub stop_lsn: Lsn,
    /// Its timeline.
    pub timeline: TimelineId,
    /// PostgreSQL `server_version_num` of the source.
    pub pg_version_num: u32,
    /// Bytes of the data directory it restores.
    pub data_bytes: u64,
    /// Bytes it added to the repository.
    pub stored_bytes: u64,
    /// Whether the WAL from its start through its stop is in the repository.
    pub wal_complete: bool,
    /// Source pages that failed their checksum while it was copied.
    pub checksum_failures: usize,
}

/// The span of instants a restore can reach.
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    /// The end of the oldest restorable backup.
    pub earliest: DateTime<Utc>,
    /// The newest commit in WAL archived without a gap after the newest backup (that backup's
    /// stop time when no commit was found).
    pub latest: DateTime<Utc>,
    /// Where that WAL ends.
    pub latest_lsn: Lsn,
    /// The timeline it ends on.
    pub timeline: TimelineId,
    /// The backup the latest instant is reached from.
    pub backup: BackupId,
    /// Whether `latest` is a commit read from the WAL rather than the backup's stop time.
    pub latest_is_commit: bool,
}

/// Everything restore planning reads from a repository, loaded once.
#[derive(Debug, Clone)]
pub struct RepoState {
    /// The repository's name.
    pub repository: String,
    /// Every manifest, oldest first.
    pub manifests: Vec<Manifest>,
    /// Backups whose manifest does not open, with the reason.
    pub unreadable: Vec<(BackupId, String)>,
    /// The WAL objects.
    pub listing: WalListing,
    /// Parsed timeline history files.
    pub histories: BTreeMap<TimelineId, Vec<HistoryEntry>>,
    /// WAL segment size.
    pub seg_size: u64,
}

impl RepoState {
    /// Reads manifests, the WAL listing and the history files.
    pub async fn load(repo: &Repository) -> Result<RepoState, RestoreError> {
        let seg_size = repo.info.wal_segment_size;
        let listing = repo.list_wal().await?;
        let mut histories = BTreeMap::new();
        for tli in &listing.histories {
            let name = WalObject::History(*tli).path(seg_size);
            let bytes = repo.get_object(&name, Kind::History).await?;
            let parsed = parse_history(&String::from_utf8_lossy(&bytes))
                .map_err(|reason| RepoError::Format { name, reason })?;
            histories.insert(*tli, parsed);
        }
        let (manifests, unreadable) = repo.load_manifests_lenient().await?;
        Ok(RepoState {
            repository: repo.name.clone(),
            manifests,
            unreadable,
            listing,
            histories,
            seg_size,
        })
    }

    /// The timelines recovery from `m` follows.
    pub fn chain(&self, m: &Manifest) -> Result<Chain, RestoreError> {
        plan::timeline_chain(m.timeline, &self.histories).map_err(|newest| RestoreError::Timeline {
            repository: self.repository.clone(),
            backup: m.backup_id.to_string(),
            timeline: m.timeline.0,
            newest: newest.0,
        })
    }

    /// How far WAL is continuous from `m`'s start, or why it is not, along `chain`.
    pub fn reach(&self, m: &Manifest, chain: &Chain) -> Option<Reach> {
        plan::reach(&self.listing, chain, m.start_lsn, self.seg_size)
    }

    /// Whether `m` has every WAL segment from its start through its stop.
    pub fn wal_complete(&self, m: &Manifest) -> bool {
        self.chain(m)
            .ok()
            .and_then(|c| self.reach(m, &c))
            .is_some_and(|r| r.end >= m.stop_lsn)
    }
}

/// Reads the backups and the recoverable window of `repo`.
pub async fn catalog(repo: &Repository) -> Result<Catalog, RestoreError> {
    let state = RepoState::load(repo).await?;
    let complete: Vec<&Manifest> = state
        .manifests
        .iter()
        .filter(|m| state.wal_complete(m))
        .collect();
    let (connected, cut_off) = connected_backups(&state, &complete);
    let window = match (connected.first(), connected.last()) {
        (Some(oldest), Some(newest)) => window(repo, &state, oldest, newest).await?,
        _ => None,
    };
    let backups = state
        .manifests
        .iter()
        .map(|m| summary(m, state.wal_complete(m)))
        .collect();
    Ok(Catalog {
        repository: repo.name.clone(),
        backups,
        window,
        unreadable: state.unreadable.clone(),
        cut_off,
        residency_zone: None,
        region: None,
    })
}

/// The backups whose WAL runs without a gap into the next newer one, oldest first, ending at
/// the newest; and a description of each older backup a gap cuts off. Every instant from the
/// oldest connected backup's stop to the newest WAL is restorable; earlier ones are not.
fn connected_backups<'a>(
    state: &RepoState,
    complete: &[&'a Manifest],
) -> (Vec<&'a Manifest>, Vec<String>) {
    let mut sorted: Vec<&Manifest> = complete.to_vec();
    sorted.sort_by_key(|m| (m.stop_lsn, m.stop_time));
    let mut connected: Vec<&Manifest> = sorted.last().into_iter().copied().collect();
    let mut cut_off = Vec::new();
    for m in sorted.iter().rev().skip(1) {
        let next = connected[0];
        let reach = state.chain(m).ok().and_then(|c| state.reach(m, &c));
        match reach {
            Some(r) if r.end >= next.stop_lsn && cut_off.is_empty() => connected.insert(0, m),
            Some(r) => cut_off.push(format!(
                "backup {} restores only up to WAL {} ({} is missing)",
                m.backup_id, r.end, r.next_missing
            )),
            None => cut_off.push(format!("backup {} has no WAL", m.backup_id)),
        }
    }
    (connected, cut_off)
}

/// The window from the end of `oldest` to the newest commit after `newest`.
async fn window(
    repo: &Repository,
    state: &RepoState,
    oldest: &Manifest,
    newest: &Manifest,
) -> Result<Option<Window>, RestoreError> {
    let chain = state.chain(newest)?;
    let Some(reach) = state.reach(newest, &chain) else {
        return Ok(None);
    };
    let run = run_end(repo, state, newest, &chain, reach).await?;
    Ok(Some(Window {
        earliest: oldest.stop_time,
        latest: run.latest_time(newest),
        latest_lsn: run.latest_lsn(),
        timeline: run.reach.timeline,
        backup: newest.backup_id.clone(),
        latest_is_commit: run.last_commit.is_some(),
    }))
}

/// The last column of `list`: WAL state, and corruption found in the source.
fn note(b: &BackupSummary) -> String {
    let wal = if b.wal_complete { "ok" } else { "MISSING" };
    match b.checksum_failures {
        0 => wal.to_string(),
        n => format!("{wal}, {n} BAD PAGE(S) in source"),
    }
}

fn summary(m: &Manifest, wal_complete: bool) -> BackupSummary {
    BackupSummary {
        id: m.backup_id.clone(),
        start_time: m.start_time,
        stop_time: m.stop_time,
        start_lsn: m.start_lsn,
        stop_lsn: m.stop_lsn,
        timeline: m.timeline,
        pg_version_num: m.pg_version_num,
        data_bytes: m.data_size(),
        stored_bytes: m.stats.bytes_stored,
        wal_complete,
        checksum_failures: m.checksum_failures.len(),
    }
}

/// Reads the end of the run of WAL after `m`: where valid WAL stops in its last object, and
/// the newest commit, scanning back up to [`SCAN_BACK`] segments but not before `m` started.
pub async fn run_end(
    repo: &Repository,
    state: &RepoState,
    m: &Manifest,
    chain: &Chain,
    reach: Reach,
) -> Result<RunEnd, RestoreError> {
    let seg_size = state.seg_size;
    let last_segno = match reach.last {
        WalObject::Segment(s) | WalObject::Partial(s, _) => s.segno,
        WalObject::History(_) => {
            return Ok(RunEnd {
                reach,
                valid_end: None,
                last_commit: None,
            })
        }
    };
    let floor = m.start_lsn.0 / seg_size;
    let mut out = RunEnd {
        reach,
        valid_end: None,
        last_commit: None,
    };
    for segno in (floor..=last_segno).rev().take(SCAN_BACK as usize) {
        let object = if segno == last_segno {
            out.reach.last
        } else {
            WalObject::Segment(SegmentName {
                tli: plan::timeline_for(chain, segno, seg_size),
                segno,
            })
        };
        let mut bytes = repo.get_object(&object.path(seg_size), Kind::Wal).await?;
        if (bytes.len() as u64) < seg_size {
            bytes.resize(seg_size as usize, 0);
        }
        let scan = scan_commits(&bytes, Lsn(segno * seg_size));
        if segno == last_segno {
            out.valid_end = Some(scan.end_of_valid_wal);
        }
        if let Some(commit) = scan.last_commit {
            out.last_commit = Some(commit.time);
            break;
        }
    }
    Ok(out)
}

impl fmt::Display for Catalog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.residency_zone.is_some() || self.region.is_some() {
            writeln!(
                f,
                "residency zone {}, region {}",
                self.residency_zone.as_deref().unwrap_or("none"),
                self.region.as_deref().unwrap_or("not set")
            )?;
        }
        if self.backups.is_empty() {
            return writeln!(f, "repository {} holds no backup", self.repository);
        }
        writeln!(
            f,
            "{:<17} {:<22} {:<22} {:<11} {:<11} {:<4} {:>9} {:>9}  WAL",
            "backup", "started", "stopped", "start LSN", "stop LSN", "TLI", "data", "stored"
        )?;
        for b in &self.backups {
            writeln!(
                f,
                "{:<17} {:<22} {:<22} {:<11} {:<11} {:<4} {:>9} {:>9}  {}",
                b.id.as_str(),
                b.start_time.format("%Y-%m-%dT%H:%M:%SZ"),
                b.stop_time.format("%Y-%m-%dT%H:%M:%SZ"),
                b.start_lsn.to_string(),
                b.stop_lsn.to_string(),
                b.timeline.0,
                human_bytes(b.data_bytes),
                human_bytes(b.stored_bytes),
                note(b),
            )?;
        }
        match &self.window {
            Some(w) => writeln!(
                f,
                "recoverable window: {} to {}{}\n  (backup {} through WAL {} on timeline {})",
                show_time(&w.earliest),
                show_time(&w.latest),
                if w.latest_is_commit {
                    ""
                } else {
                    " (no commit found after the backup)"
                },
                w.backup,
                w.latest_lsn,
                w.timeline
            ),
            None => writeln!(f, "recoverable window: none (no backup has all of its WAL)"),
        }?;
        for c in &self.cut_off {
            writeln!(f, "  not in the window: {c}")?;
        }
        for (id, reason) in &self.unreadable {
            writeln!(f, "UNREADABLE backup {id}: {reason}")?;
        }
        Ok(())
    }
}

/// `1.2 GiB`, `310 MiB`, `4.0 KiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 || v >= 100.0 {
        format!("{v:.0} {}", UNITS[unit])
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_naturally() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(310 << 20), "310 MiB");
        assert_eq!(human_bytes(1288490189), "1.2 GiB");
    }
}
