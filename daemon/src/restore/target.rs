//! Recovery targets and actions, as a user types them and as PostgreSQL reads them.
//!
//! Example: `--target-time "2026-12-03 17:20:05.123"` is UTC and becomes
//! `recovery_target_time = '2026-12-03 17:20:05.123000+00:00'`; `--target-lsn 0/5000028`
//! becomes `recovery_target_lsn = '0/5000028'`.
//!
//! Invariant: a time written for PostgreSQL always carries an explicit offset, so the server's
//! `timezone` setting can never move the target.

use std::fmt;
use std::str::FromStr;

use chrono::{
    DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, SecondsFormat, SubsecRound, Utc,
};
use serde::Serialize;

use super::RestoreError;
use crate::pg::Lsn;

/// Where recovery stops.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Replay every archived WAL record, then end recovery.
    Latest,
    /// Stop before the first transaction that committed after this instant.
    Time(DateTime<FixedOffset>),
    /// Stop after the record at or after this position.
    Lsn(Lsn),
    /// Stop after this transaction commits.
    Xid(u64),
    /// Stop at this named restore point (`pg_create_restore_point`).
    Name(String),
    /// Stop as soon as the backup is consistent.
    Immediate,
}

/// What the server does once the target is reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetAction {
    /// End recovery and accept writes.
    Promote,
    /// Stay in recovery, paused, for inspection (PostgreSQL's default).
    #[default]
    Pause,
    /// Shut the server down.
    Shutdown,
}

impl TargetAction {
    /// The value of `recovery_target_action`.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetAction::Promote => "promote",
            TargetAction::Pause => "pause",
            TargetAction::Shutdown => "shutdown",
        }
    }
}

impl fmt::Display for TargetAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TargetAction {
    type Err = String;

    fn from_str(s: &str) -> Result<TargetAction, String> {
        match s {
            "promote" => Ok(TargetAction::Promote),
            "pause" => Ok(TargetAction::Pause),
            "shutdown" => Ok(TargetAction::Shutdown),
            other => Err(format!(
                "target action {other:?} is not one of promote, pause, shutdown"
            )),
        }
    }
}

impl Target {
    /// The instant of a time target, in UTC.
    pub fn time_utc(&self) -> Option<DateTime<Utc>> {
        match self {
            Target::Time(t) => Some(t.with_timezone(&Utc)),
            _ => None,
        }
    }

    /// Whether PostgreSQL applies `recovery_target_action`: only when a target is set. Without
    /// one, recovery replays the whole archive and then promotes.
    pub fn has_action(&self) -> bool {
        !matches!(self, Target::Latest)
    }

    /// The `recovery_target*` setting this target is written as, `None` for latest.
    pub fn setting(&self) -> Option<(&'static str, String)> {
        Some(match self {
            Target::Latest => return None,
            Target::Time(t) => ("recovery_target_time", pg_time(t)),
            Target::Lsn(l) => ("recovery_target_lsn", l.to_string()),
            Target::Xid(x) => ("recovery_target_xid", x.to_string()),
            Target::Name(n) => ("recovery_target_name", n.clone()),
            Target::Immediate => ("recovery_target", "immediate".into()),
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Latest => f.write_str("latest"),
            Target::Time(t) => write!(f, "time {}", pg_time(t)),
            Target::Lsn(l) => write!(f, "LSN {l}"),
            Target::Xid(x) => write!(f, "xid {x}"),
            Target::Name(n) => write!(f, "restore point {n:?}"),
            Target::Immediate => f.write_str("immediate (end of backup)"),
        }
    }
}

/// A time as PostgreSQL reads it, in UTC with microseconds and an explicit offset:
/// `2026-12-03 17:20:05.123456+00:00`.
pub fn pg_time(t: &DateTime<FixedOffset>) -> String {
    t.with_timezone(&Utc)
        .format("%Y-%m-%d %H:%M:%S%.6f+00:00")
        .to_string()
}

/// Formats an instant for messages and reports: `2026-12-03T17:20:05.123456Z`.
pub fn show_time(t: &DateTime<Utc>) -> String {
    t.trunc_subsecs(6)
        .to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Parses a target time; one without an offset is UTC. Accepted: `2026-12-03 17:20:05.123`,
/// `2026-12-03T17:20:05Z`, `2026-12-03 17:20:05+01:00`, `2026-12-03 17:20:05 UTC`.
pub fn parse_target_time(text: &str) -> Result<DateTime<FixedOffset>, RestoreError> {
    let bad = |reason: &str| RestoreError::BadTime {
        value: text.into(),
        reason: reason.into(),
    };
    let s = text.trim();
    let mut s = if s.len() > 10 && s.as_bytes()[10] == b'T' {
        format!("{} {}", &s[..10], &s[11..])
    } else {
        s.to_string()
    };
    for utc in [" UTC", "UTC", "Z", "z"] {
        if let Some(rest) = s.strip_suffix(utc) {
            s = format!("{}+00:00", rest.trim_end());
            break;
        }
    }
    const WITH_OFFSET: [&str; 2] = ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%.f %#z"];
    for fmt in WITH_OFFSET {
        if let Ok(t) = DateTime::parse_from_str(&s, fmt) {
            return Ok(t);
        }
    }
    let naive = NaiveDateTime::parse_from_str(&s, "%Y-%m-%d %H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(&s, "%Y-%m-%d %H:%M"))
        .or_else(|_| NaiveDate::parse_from_str(&s, "%Y-%m-%d").map(|d| d.and_time(NaiveTime::MIN)))
        .map_err(|e| bad(&e.to_string()))?;
    Ok(naive.and_utc().fixed_offset())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> String {
        pg_time(&parse_target_time(s).unwrap())
    }

    #[test]
    fn a_time_without_offset_is_utc() {
        assert_eq!(
            utc("2026-12-03 17:20:05.123"),
            "2026-12-03 17:20:05.123000+00:00"
        );
        assert_eq!(
            utc("2026-12-03 17:20:05"),
            "2026-12-03 17:20:05.000000+00:00"
        );
        assert_eq!(
            utc("2026-12-03T17:20:05.123456"),
            "2026-12-03 17:20:05.123456+00:00"
        );
        assert_eq!(utc("2026-12-03 17:20"), "2026-12-03 17:20:00.000000+00:00");
        assert_eq!(utc("2026-12-03"), "2026-12-03 00:00:00.000000+00:00");
    }

    #[test]
    fn offsets_are_honoured() {
        assert_eq!(
            utc("2026-12-03T17:20:05Z"),
            "2026-12-03 17:20:05.000000+00:00"
        );
        assert_eq!(
            utc("2026-12-03 17:20:05 UTC"),
            "2026-12-03 17:20:05.000000+00:00"
        );
        assert_eq!(
            utc("2026-12-03T17:20:05.5+01:00"),
            "2026-12-03 16:20:05.500000+00:00"
        );
        assert_eq!(
            utc("2026-12-03 17:20:05-0230"),
            "2026-12-03 19:50:05.000000+00:00"
        );
        assert_eq!(
            utc("2026-12-03 17:20:05 +01"),
            "2026-12-03 16:20:05.000000+00:00"
        );
        let t = parse_target_time("2026-12-03T17:20:05+01:00").unwrap();
        assert_eq!(t.offset().local_minus_utc(), 3600);
    }

    #[test]
    fn garbage_is_refused_with_an_example() {
        for bad in ["yesterday", "2026-13-03 10:00:00", "17:20:05", ""] {
            let err = parse_target_time(bad).unwrap_err().to_string();
            assert!(err.contains("hint:") && err.contains(bad), "{err}");
        }
    }

    #[test]
    fn settings_and_actions() {
        assert_eq!(Target::Latest.setting(), None);
        assert_eq!(
            Target::Lsn(Lsn(0x5000028)).setting(),
            Some(("recovery_target_lsn", "0/5000028".into()))
        );
        assert_eq!(
            Target::Immediate.setting(),
            Some(("recovery_target", "immediate".into()))
        );
        assert_eq!(
            "shutdown".parse::<TargetAction>(),
            Ok(TargetAction::Shutdown)
        );
        assert!("stop".parse::<TargetAction>().is_err());
        assert_eq!(TargetAction::default(), TargetAction::Pause);
    }
}
