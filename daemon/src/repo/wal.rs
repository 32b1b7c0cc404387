//! WAL objects: `wal/00000001/000000010000000000000003` (a complete segment),
//! `wal/00000001/000000010000000000000004.partial.0000000004A1C2F8` (the streamed part of a
//! segment up to that end LSN) and `wal/00000002.history` (a timeline history file).
//!
//! Invariant: a WAL name is written once; the same content again is accepted, different content
//! is a conflict and the stored object is kept.

use std::collections::{BTreeMap, BTreeSet};

use super::{RepoError, Repository};
use crate::pg::{Lsn, SegmentName, TimelineId};

/// One WAL object, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalObject {
    /// A complete segment.
    Segment(SegmentName),
    /// A prefix of a segment ending at the LSN.
    Partial(SegmentName, Lsn),
    /// A timeline history file.
    History(TimelineId),
}

impl WalObject {
    /// The object name.
    pub fn path(self, seg_size: u64) -> String {
        match self {
            WalObject::Segment(s) => format!("wal/{}/{}", s.tli.to_hex8(), s.file_name(seg_size)),
            WalObject::Partial(s, end) => {
                format!(
                    "wal/{}/{}.partial.{}",
                    s.tli.to_hex8(),
                    s.file_name(seg_size),
                    end.to_hex16()
                )
            }
            WalObject::History(t) => format!("wal/{}", t.history_file_name()),
        }
    }

    /// Parses an object name.
    pub fn parse(name: &str, seg_size: u64) -> Option<WalObject> {
        let rest = name.strip_prefix("wal/")?;
        if let Some(tli) = rest.strip_suffix(".history") {
            return TimelineId::from_hex8(tli).map(WalObject::History);
        }
        let (dir, file) = rest.split_once('/')?;
        let tli = TimelineId::from_hex8(dir)?;
        let (seg, partial) = match file.split_once(".partial.") {
            Some((seg, end)) => (seg, Some(Lsn::from_hex16(end).ok()?)),
            None => (file, None),
        };
        let seg = SegmentName::parse(seg, seg_size).filter(|s| s.tli == tli)?;
        Some(match partial {
            Some(end) => WalObject::Partial(seg, end),
            None => WalObject::Segment(seg),
        })
    }
}

/// What WAL a repository holds.
#[derive(Debug, Default, Clone)]
pub struct WalListing {
    /// Complete segments by timeline.
    pub segments: BTreeMap<TimelineId, BTreeSet<u64>>,
    /// Partial segments: for each (timeline, segno) the highest end LSN stored.
    pub partials: BTreeMap<(TimelineId, u64), Lsn>,
    /// Timelines with a history file.
    pub histories: BTreeSet<TimelineId>,
}

impl WalListing {
    /// Whether segment `seg` is stored complete.
    pub fn has_segment(&self, seg: SegmentName) -> bool {
        self.segments
            .get(&seg.tli)
            .is_some_and(|s| s.contains(&seg.segno))
    }

    /// How far WAL on `tli` is continuous from segment `from` (inclusive): the end LSN of the
    /// last complete segment in the run, extended by a partial of the next segment if stored.
    pub fn continuous_end(&self, tli: TimelineId, from: u64, seg_size: u64) -> Option<Lsn> {
        let segs = self.segments.get(&tli);
        let mut next = from;
        while segs.is_some_and(|s| s.contains(&next)) {
            next += 1;
        }
        if let Some(end) = self.partials.get(&(tli, next)) {
            return Some(*end);
        }
        (next > from).then(|| Lsn(next * seg_size))
    }
}

impl Repository {
    /// Lists the WAL objects.
    pub async fn list_wal(&self) -> Result<WalListing, RepoError> {
        let seg_size = self.info.wal_segment_size;
        let mut out = WalListing::default();
        for obj in self.storage().list("wal/").await? {
            match WalObject::parse(&obj.name, seg_size) {
                Some(WalObject::Segment(s)) => {
                    out.segments.entry(s.tli).or_default().insert(s.segno);
                }
                Some(WalObject::Partial(s, end)) => {
                    let e = out.partials.entry((s.tli, s.segno)).or_insert(end);
                    *e = (*e).max(end);
                }
                Some(WalObject::History(t)) => {
                    out.histories.insert(t);
                }
                None => {}
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 16 << 20;

    #[test]
    fn names_round_trip() {
        let seg = SegmentName {
            tli: TimelineId(1),
            segno: 4,
        };
        for o in [
            WalObject::Segment(seg),
            WalObject::Partial(seg, Lsn(0x4A1C2F8)),
            WalObject::History(TimelineId(2)),
        ] {
            assert_eq!(WalObject::parse(&o.path(S), S), Some(o));
        }
        assert_eq!(
            WalObject::Segment(seg).path(S),
            "wal/00000001/000000010000000000000004"
        );
        assert_eq!(
            WalObject::Partial(seg, Lsn(0x4A1C2F8)).path(S),
            "wal/00000001/000000010000000000000004.partial.0000000004A1C2F8"
        );
        assert_eq!(
            WalObject::parse("wal/00000002/000000010000000000000004", S),
            None
        );
    }

    #[test]
    fn continuity_stops_at_a_gap_and_uses_the_partial() {
        let mut l = WalListing::default();
        l.segments
            .entry(TimelineId(1))
            .or_default()
            .extend([3, 4, 6]);
        l.partials.insert((TimelineId(1), 5), Lsn(5 * S + 100));
        assert_eq!(
            l.continuous_end(TimelineId(1), 3, S),
            Some(Lsn(5 * S + 100))
        );
        l.partials.clear();
        assert_eq!(l.continuous_end(TimelineId(1), 3, S), Some(Lsn(5 * S)));
        assert_eq!(l.continuous_end(TimelineId(1), 5, S), None);
    }
}
