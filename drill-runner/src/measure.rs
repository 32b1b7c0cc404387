//! Measuring a drill: RTO and RPO in seconds, each judged against `[cluster.targets]` with the
//! margin left, and the verdict that follows from them and from the checks.
//!
//! Example: an RTO of 42 s against the 4 h target is met with a margin of 14 358 s; an RPO of
//! 75 min against the 1 h target is missed with a margin of -900 s.
//!
//! Invariant: the verdict is pass only when every objective was measured and met and every check
//! passed; each reason for a fail is named in the failure list, so a report never says "fail"
//! without saying why.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::checks::CheckResult;

/// One objective (RTO or RPO): what was measured, the target, and what is left of it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Judgement {
    /// The measured figure in seconds; `None` when it could not be measured.
    pub measured: Option<f64>,
    /// The target in seconds.
    pub target: f64,
    /// Target minus measured: positive is headroom, negative is the overrun.
    pub margin: Option<f64>,
    /// Whether the figure was measured and is within the target.
    pub met: bool,
}

/// Judges `measured` seconds against `target`; a figure equal to its target meets it.
pub fn judge(measured: Option<f64>, target: Duration) -> Judgement {
    let target = target.as_secs_f64();
    let margin = measured.map(|m| target - m);
    Judgement {
        measured,
        target,
        margin,
        met: margin.is_some_and(|m| m >= 0.0),
    }
}

/// Where the newest recovered commit time came from, weakest last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RpoBasis {
    /// The restore reported the commit time of the last transaction it replayed
    /// (`pg_last_xact_replay_timestamp()` at the target).
    LastReplayedCommit,
    /// No transaction was replayed after the backup: everything up to the backup's stop time was
    /// recovered, so the RPO is at most T0 minus that time.
    BackupStopTime,
    /// Nothing told when the recovered data ends.
    Unknown,
}

impl RpoBasis {
    /// How a reader of the report should understand the figure.
    pub fn describe(self) -> &'static str {
        match self {
            RpoBasis::LastReplayedCommit => "commit time of the last transaction replayed",
            RpoBasis::BackupStopTime => {
                "no transaction replayed after the backup; bounded by the backup's stop time"
            }
            RpoBasis::Unknown => "no commit time could be found",
        }
    }
}

/// The RPO: T0 minus the newest recovered commit, never below zero.
///
/// Restoring "latest" replays WAL archived after T0 too, so a commit newer than T0 can be
/// recovered; that is no loss, and counts as zero until drills cut replay at T0 (issue 5).
pub fn rpo_seconds(t0: DateTime<Utc>, newest_commit: Option<DateTime<Utc>>) -> Option<f64> {
    let lag = t0.signed_duration_since(newest_commit?);
    Some((lag.num_milliseconds() as f64 / 1000.0).max(0.0))
}

/// The drill's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Every objective met and every check passed.
    Pass,
    /// At least one objective missed or unmeasured, or one check failed.
    Fail,
}

impl Verdict {
    /// `pass` or `fail`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
        }
    }
}

/// The verdict and, for a fail, every reason, in the order objectives then checks.
pub fn verdict(rto: &Judgement, rpo: &Judgement, checks: &[CheckResult]) -> (Verdict, Vec<String>) {
    let mut failures = Vec::new();
    failures.extend(objective_failure("RTO", rto));
    failures.extend(objective_failure("RPO", rpo));
    if checks.is_empty() {
        failures.push("no check ran against the restored cluster".to_string());
    }
    for c in checks.iter().filter(|c| !c.passed) {
        failures.push(format!(
            "check {:?} on database {:?} failed: {}",
            c.name, c.database, c.detail
        ));
    }
    let verdict = if failures.is_empty() {
        Verdict::Pass
    } else {
        Verdict::Fail
    };
    (verdict, failures)
}

fn objective_failure(name: &str, j: &Judgement) -> Option<String> {
    match (j.measured, j.margin) {
        (Some(m), Some(margin)) if margin < 0.0 => Some(format!(
            "{name} {} exceeds the {} target by {}",
            human_seconds(m),
            human_seconds(j.target),
            human_seconds(-margin)
        )),
        (None, _) => Some(format!("{name} could not be measured")),
        _ => None,
    }
}

/// Seconds for people: `0.42s`, `42.0s`, `3m 05s`, `4h 00m 00s`; negative values get a `-`.
pub fn human_seconds(s: f64) -> String {
    if s < 0.0 {
        return format!("-{}", human_seconds(-s));
    }
    if s < 1.0 {
        return format!("{s:.2}s");
    }
    if s < 60.0 {
        return format!("{s:.1}s");
    }
    let total = s.round() as u64;
    let (h, m, sec) = (total / 3600, total % 3600 / 60, total % 60);
    if h == 0 {
        format!("{m}m {sec:02}s")
    } else {
        format!("{h}h {m:02}m {sec:02}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(passed: bool) -> CheckResult {
        CheckResult {
            name: "select 1".into(),
            database: "app".into(),
            passed,
            detail: if passed {
                "ok".into()
            } else {
                "connection refused".into()
            },
        }
    }

    #[test]
    fn margin_is_target_minus_measured() {
        let j = judge(Some(42.0), Duration::from_secs(4 * 3600));
        assert_eq!(j.margin, Some(14_358.0));
        assert!(j.met);
        let j = judge(Some(4500.0), Duration::from_secs(3600));
        assert_eq!(j.margin, Some(-900.0));
        assert!(!j.met);
    }

    #[test]
    fn a_figure_equal_to_its_target_meets_it() {
        assert!(judge(Some(3600.0), Duration::from_secs(3600)).met);
    }

    #[test]
    fn an_unmeasured_figure_never_meets_its_target() {
        let j = judge(None, Duration::from_secs(3600));
        assert_eq!(j.margin, None);
        assert!(!j.met);
    }

    #[test]
    fn verdict_passes_only_when_everything_holds() {
        let ok = judge(Some(10.0), Duration::from_secs(60));
        let (v, failures) = verdict(&ok, &ok, &[check(true)]);
        assert_eq!(v, Verdict::Pass);
        assert!(failures.is_empty());
    }

    #[test]
    fn verdict_names_every_reason_to_fail() {
        let slow = judge(Some(4500.0), Duration::from_secs(3600));
        let unknown = judge(None, Duration::from_secs(3600));
        let (v, failures) = verdict(&slow, &unknown, &[check(true), check(false)]);
        assert_eq!(v, Verdict::Fail);
        assert_eq!(failures.len(), 3, "{failures:?}");
        assert_eq!(
            failures[0],
            "RTO 1h 15m 00s exceeds the 1h 00m 00s target by 15m 00s"
        );
        assert_eq!(failures[1], "RPO could not be measured");
        assert!(failures[2].contains("\"app\"") && failures[2].contains("connection refused"));
    }

    #[test]
    fn a_drill_without_checks_fails() {
        let ok = judge(Some(1.0), Duration::from_secs(60));
        let (v, failures) = verdict(&ok, &ok, &[]);
        assert_eq!(v, Verdict::Fail);
        assert_eq!(
            failures,
            vec!["no check ran against the restored cluster".to_string()]
        );
    }

    #[test]
    fn rpo_is_t0_minus_newest_commit_and_never_negative() {
        let t0: DateTime<Utc> = "2026-12-03T17:00:00Z".parse().unwrap();
        let commit: DateTime<Utc> = "2026-12-03T16:59:17.500Z".parse().unwrap();
        assert_eq!(rpo_seconds(t0, Some(commit)), Some(42.5));
        let later: DateTime<Utc> = "2026-12-03T17:00:03Z".parse().unwrap();
        assert_eq!(rpo_seconds(t0, Some(later)), Some(0.0));
        assert_eq!(rpo_seconds(t0, None), None);
    }

    #[test]
    fn human_seconds_reads_naturally() {
        assert_eq!(human_seconds(0.423), "0.42s");
        assert_eq!(human_seconds(42.04), "42.0s");
        assert_eq!(human_seconds(185.0), "3m 05s");
        assert_eq!(human_seconds(14_400.0), "4h 00m 00s");
        assert_eq!(human_seconds(-900.0), "-15m 00s");
    }
}
