//! The result of a restore: which backup, which target, and how long each phase took, as JSON
//! for drills and as lines for a person.
//!
//! Example (Display):
//! ```text
//! restored backup 20261203T171706Z to /srv/restore, target time 2026-12-03 17:20:05.123000+00:00
//!   plan                               0.2 s
//!   restore files                     12.1 s   1.2 GiB   101.6 MB/s
//!   start server                       0.1 s
//!   replay to target                   4.9 s  48.0 MiB of WAL
//!   total                             17.3 s
//! replayed through 0/9A0001C8, last commit 2026-12-03T17:20:04.998871Z
//! ```
//! Invariant: phases are recorded in the order they ran and do not overlap, so their sum is the
//! restore's wall-clock time.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::catalog::human_bytes;
use super::target::show_time;
use crate::pg::Lsn;
use crate::repo::manifest::BackupId;

/// One timed phase.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Phase {
    /// What ran.
    pub name: String,
    /// How long it took.
    pub seconds: f64,
    /// Bytes it moved, when that means something.
    pub bytes: Option<u64>,
}

impl Phase {
    /// A phase that took `took`.
    pub fn new(name: &str, took: Duration, bytes: Option<u64>) -> Phase {
        Phase {
            name: name.into(),
            seconds: took.as_secs_f64(),
            bytes,
        }
    }
}

/// What a restore did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    /// The backup restored.
    pub backup_id: BackupId,
    /// The target, as text.
    pub target: String,
    /// The restored data directory.
    pub data_dir: PathBuf,
    /// Phases in order.
    pub phases: Vec<Phase>,
    /// Bytes of files written.
    pub bytes_restored: u64,
    /// `pg_last_wal_replay_lsn()` once the target was reached (with `--start`).
    pub replay_lsn: Option<Lsn>,
    /// `pg_last_xact_replay_timestamp()` once the target was reached (with `--start`).
    pub last_replayed_commit: Option<DateTime<Utc>>,
    /// The unix socket directory of the started server.
    pub socket_dir: Option<PathBuf>,
    /// The port of the started server.
    pub port: Option<u16>,
}

impl RestoreReport {
    /// Seconds from the start of planning to the end of the last phase.
    pub fn total_seconds(&self) -> f64 {
        self.phases.iter().map(|p| p.seconds).sum()
    }
}

impl fmt::Display for RestoreReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "restored backup {} to {}, target {}",
            self.backup_id,
            self.data_dir.display(),
            self.target
        )?;
        for p in &self.phases {
            write!(f, "  {:<32} {:>7.1} s", p.name, p.seconds)?;
            match p.bytes {
                Some(b) if p.name == "restore files" => {
                    let rate = b as f64 / 1e6 / p.seconds.max(1e-3);
                    write!(f, "  {:>9}  {rate:.1} MB/s", human_bytes(b))?;
                }
                Some(b) => write!(f, "  {} of WAL", human_bytes(b))?,
                None => {}
            }
            writeln!(f)?;
        }
        writeln!(f, "  {:<32} {:>7.1} s", "total", self.total_seconds())?;
        if let Some(lsn) = self.replay_lsn {
            write!(f, "replayed through {lsn}")?;
            match &self.last_replayed_commit {
                Some(t) => writeln!(f, ", last commit {}", show_time(t))?,
                None => writeln!(f, ", no transaction replayed")?,
            }
        }
        if let Some(dir) = &self.socket_dir {
            let port = self.port.map_or(String::new(), |p| format!(" port={p}"));
            writeln!(f, "connect with: host={}{port}", dir.display())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_phase_with_throughput() {
        let r = RestoreReport {
            backup_id: BackupId::parse("20261203T171706Z").unwrap(),
            target: "latest".into(),
            data_dir: "/srv/restore".into(),
            phases: vec![
                Phase::new("plan", Duration::from_millis(200), None),
                Phase::new("restore files", Duration::from_secs(2), Some(200_000_000)),
            ],
            bytes_restored: 200_000_000,
            replay_lsn: None,
            last_replayed_commit: None,
            socket_dir: None,
            port: None,
        };
        let text = r.to_string();
        assert_eq!(text.lines().count(), 4, "{text}");
        assert!(text.contains("100.0 MB/s"), "{text}");
        assert!((r.total_seconds() - 2.2).abs() < 1e-9);
    }
}
