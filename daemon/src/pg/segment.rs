//! Timelines, WAL segment names and timeline history files.
//!
//! A segment name is `{tli:08X}{segno / per:08X}{segno % per:08X}` with `per = 2^32 / seg_size`:
//! with 16 MiB segments, LSN `0/3000028` on timeline 1 lives in `000000010000000000000003`.
//! A history file is `{tli:08X}.history`, lines `parentTLI<TAB>switchLSN<TAB>reason`.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::lsn::Lsn;

/// A PostgreSQL timeline id.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct TimelineId(pub u32);

impl fmt::Display for TimelineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl TimelineId {
    /// Eight hex digits, as in segment and history file names.
    pub fn to_hex8(self) -> String {
        format!("{:08X}", self.0)
    }

    /// Parses eight hex digits.
    pub fn from_hex8(s: &str) -> Option<TimelineId> {
        (s.len() == 8 && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| u32::from_str_radix(s, 16).ok().map(TimelineId))
            .flatten()
    }

    /// The history file name of this timeline, `00000002.history`.
    pub fn history_file_name(self) -> String {
        format!("{:08X}.history", self.0)
    }
}

/// A WAL segment: its timeline and number. Formatting needs the segment size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentName {
    /// Timeline the segment belongs to.
    pub tli: TimelineId,
    /// Segment number: start LSN divided by the segment size.
    pub segno: u64,
}

impl SegmentName {
    /// The segment on `tli` that holds `lsn`.
    pub fn containing(tli: TimelineId, lsn: Lsn, seg_size: u64) -> SegmentName {
        SegmentName {
            tli,
            segno: lsn.0 / seg_size,
        }
    }

    /// The last segment needed to reach `end` (exclusive), the rule `pg_walfile_name()` uses.
    pub fn last_needed_for(tli: TimelineId, end: Lsn, seg_size: u64) -> SegmentName {
        SegmentName {
            tli,
            segno: end.0.saturating_sub(1) / seg_size,
        }
    }

    /// The LSN where this segment starts.
    pub fn start_lsn(self, seg_size: u64) -> Lsn {
        Lsn(self.segno * seg_size)
    }

    /// The 24-hex-digit file name.
    pub fn file_name(self, seg_size: u64) -> String {
        let per = (1u64 << 32) / seg_size;
        format!(
            "{:08X}{:08X}{:08X}",
            self.tli.0,
            self.segno / per,
            self.segno % per
        )
    }

    /// Parses a 24-hex-digit file name; `None` for anything else (history files, `.partial`).
    pub fn parse(name: &str, seg_size: u64) -> Option<SegmentName> {
        if name.len() != 24 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let tli = u32::from_str_radix(&name[0..8], 16).ok()?;
        let log = u64::from_str_radix(&name[8..16], 16).ok()?;
        let seg = u64::from_str_radix(&name[16..24], 16).ok()?;
        let per = (1u64 << 32) / seg_size;
        if seg >= per {
            return None;
        }
        Some(SegmentName {
            tli: TimelineId(tli),
            segno: log * per + seg,
        })
    }

    /// The next segment on the same timeline.
    pub fn next(self) -> SegmentName {
        SegmentName {
            tli: self.tli,
            segno: self.segno + 1,
        }
    }
}

/// One line of a timeline history file: `tli` was left for its child at `switch_lsn`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The parent timeline.
    pub parent: TimelineId,
    /// First LSN that belongs to the child, not the parent.
    pub switch_lsn: Lsn,
}

/// Parses a history file; comment and blank lines are skipped.
pub fn parse_history(text: &str) -> Result<Vec<HistoryEntry>, String> {
    let mut entries = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let bad = || format!("history line {} is malformed: {line:?}", n + 1);
        let parent = fields.next().and_then(|f| f.parse().ok()).ok_or_else(bad)?;
        let switch_lsn = fields.next().and_then(|f| f.parse().ok()).ok_or_else(bad)?;
        entries.push(HistoryEntry {
            parent: TimelineId(parent),
            switch_lsn,
        });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB16: u64 = 16 * 1024 * 1024;

    #[test]
    fn names_follow_postgres() {
        let s = SegmentName::containing(TimelineId(1), "1/A2000000".parse().unwrap(), 64 << 20);
        assert_eq!(s.file_name(64 << 20), "000000010000000100000028");
        let e =
            SegmentName::last_needed_for(TimelineId(1), "1/A4000000".parse().unwrap(), 64 << 20);
        assert_eq!(e.file_name(64 << 20), "000000010000000100000028");
        let p = SegmentName::parse("000000010000000000000003", MB16).unwrap();
        assert_eq!(p.start_lsn(MB16).to_string(), "0/3000000");
        assert_eq!(SegmentName::parse("00000002.history", MB16), None);
    }

    #[test]
    fn history_parses() {
        let h = parse_history("1\t0/4031038\tno recovery target specified\n").unwrap();
        assert_eq!(
            h,
            vec![HistoryEntry {
                parent: TimelineId(1),
                switch_lsn: Lsn(0x4031038)
            }]
        );
        assert!(parse_history("x y").is_err());
    }
}
