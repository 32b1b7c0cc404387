//! The base-backup schedule of a cluster: `[cluster.backup] schedule`, a cron expression with
//! seconds (`sec min hour day-of-month month day-of-week [year]`, the `cron` crate's syntax),
//! read in `time-zone` (an IANA name, UTC by default), and the daemon task that runs
//! `lifeboat::backup::run` at each fire time.
//!
//! Example: `schedule = "0 0 2 * * *"`, `time-zone = "Europe/Paris"`: 02:00 Paris time every
//! day, which is 01:00 UTC in winter and 00:00 UTC in summer; `schedule = "off"` runs none.
//!
//! Invariant: one backup at a time per cluster; a fire time that passes while a backup runs is
//! skipped, not queued, and a failed backup is retried at the next fire time.

use std::str::FromStr;
use std::time::{Instant, SystemTime};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use tokio::sync::watch;
use tracing::Instrument;

use crate::backup::{self, BackupOptions};
use crate::config::{ClusterConfig, Config};
use crate::metrics::{self, ErrorKind};
use crate::wal::stream::wait_for_shutdown;

/// A cron schedule in a time zone.
#[derive(Clone)]
pub struct Schedule {
    expr: String,
    cron: cron::Schedule,
    tz: Tz,
}

impl std::fmt::Debug for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} in {}", self.expr, self.tz)
    }
}

impl Schedule {
    /// Parses `expr` in time zone `tz`; `"off"` means no schedule.
    pub fn parse(expr: &str, tz: &str) -> Result<Option<Schedule>, String> {
        let tz = Tz::from_str(tz).map_err(|_| {
            format!("backup.time-zone = {tz:?} is not an IANA time zone such as \"UTC\" or \"Europe/Paris\"")
        })?;
        if expr.trim() == "off" {
            return Ok(None);
        }
        let cron = cron::Schedule::from_str(expr).map_err(|e| {
            format!(
                "backup.schedule = {expr:?} is not a cron expression with seconds ({e}); \
                 write it like \"0 0 2 * * *\" (02:00:00 every day) or \"off\""
            )
        })?;
        let schedule = Schedule {
            expr: expr.to_string(),
            cron,
            tz,
        };
        if schedule.next_after(Utc::now()).is_none() {
            // A schedule that never fires would look configured while no backup is ever taken.
            return Err(format!(
                "backup.schedule = {expr:?} never fires (no future time matches it, e.g. 31 \
                 February or a past year); write it like \"0 0 2 * * *\" or \"off\""
            ));
        }
        Ok(Some(schedule))
    }

    /// The first fire time strictly after `now`.
    pub fn next_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = now.with_timezone(&self.tz);
        self.cron
            .after(&local)
            .next()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// Runs `cluster`'s scheduled backups until shutdown; returns at once without a schedule.
pub async fn run(config: &Config, cluster: &ClusterConfig, mut shutdown: watch::Receiver<bool>) {
    let Some(schedule) = &cluster.backup.schedule else {
        return;
    };
    loop {
        let Some(next) = schedule.next_after(Utc::now()) else {
            tracing::error!(
                ?schedule,
                "the backup schedule has no further fire time; no more scheduled backups"
            );
            return;
        };
        tracing::debug!(at = %next, "next scheduled backup");
        let wait = (next - Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = wait_for_shutdown(&mut shutdown) => return,
        }
        tokio::select! {
            _ = once(config, cluster) => {}
            // The backup leaves no manifest when interrupted, so nothing half-done is kept.
            _ = wait_for_shutdown(&mut shutdown) => return,
        }
    }
}

/// One scheduled backup, logged and counted.
async fn once(config: &Config, cluster: &ClusterConfig) {
    let m = metrics::global();
    let began = Instant::now();
    tracing::info!("scheduled backup starting");
    // On a task of its own, so compressing and sealing chunks runs beside the streamer.
    let name = cluster.name.clone();
    let (config, cluster) = (config.clone(), cluster.clone());
    let run = async move { backup::run(&config, &cluster, &BackupOptions::default()).await };
    let task = tokio::spawn(run.instrument(tracing::Span::current()));
    let _abort = AbortOnDrop(task.abort_handle());
    let Ok(result) = task.await else {
        m.error(&name, ErrorKind::Backup);
        tracing::error!("the scheduled backup task panicked");
        return;
    };
    match result {
        Ok(manifest) => {
            let took = began.elapsed();
            m.backup_succeeded(&name, SystemTime::now(), took);
            tracing::info!(backup_id = %manifest.backup_id, seconds = took.as_secs_f64(), "scheduled backup done");
        }
        Err(e) => {
            m.error(&name, ErrorKind::Backup);
            tracing::error!(error = %e, "scheduled backup failed; retrying at the next fire time");
        }
    }
}

/// Stops the backup task when shutdown drops its waiter: the interrupted backup leaves no
/// manifest, and its session ends with the task.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn next_fire_follows_the_time_zone_and_its_daylight_saving() {
        let s = Schedule::parse("0 0 2 * * *", "Europe/Paris")
            .unwrap()
            .unwrap();
        // Winter (UTC+1): 02:00 Paris is 01:00 UTC.
        let winter = Utc.with_ymd_and_hms(2026, 1, 10, 12, 0, 0).unwrap();
        let want = Utc.with_ymd_and_hms(2026, 1, 11, 1, 0, 0).unwrap();
        assert_eq!(s.next_after(winter), Some(want));
        // Summer (UTC+2): 02:00 Paris is 00:00 UTC.
        let summer = Utc.with_ymd_and_hms(2026, 7, 10, 12, 0, 0).unwrap();
        let want = Utc.with_ymd_and_hms(2026, 7, 11, 0, 0, 0).unwrap();
        assert_eq!(s.next_after(summer), Some(want));
    }

    #[test]
    fn utc_seconds_schedule_fires_on_the_next_multiple() {
        let s = Schedule::parse("*/10 * * * * *", "UTC").unwrap().unwrap();
        let now = Utc.with_ymd_and_hms(2026, 3, 1, 8, 0, 3).unwrap();
        let want = Utc.with_ymd_and_hms(2026, 3, 1, 8, 0, 10).unwrap();
        assert_eq!(s.next_after(now), Some(want));
    }

    #[test]
    fn off_and_bad_values() {
        assert!(Schedule::parse("off", "UTC").unwrap().is_none());
        assert!(Schedule::parse("0 0 2 * *", "UTC")
            .unwrap_err()
            .contains("cron"));
        assert!(Schedule::parse("0 0 2 * * *", "Mars/Olympus")
            .unwrap_err()
            .contains("IANA"));
        for never in ["0 0 2 31 2 *", "0 0 2 * * * 2020"] {
            let err = Schedule::parse(never, "UTC").unwrap_err();
            assert!(err.contains("never fires"), "{never}: {err}");
        }
    }
}
