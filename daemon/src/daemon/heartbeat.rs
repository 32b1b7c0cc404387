//! The heartbeat: a one-row table `lifeboat.heartbeat(id, n, ts)` on the source that the daemon
//! bumps every `[cluster.wal] heartbeat-interval` in autocommit, so the newest row a restore
//! recovers tells to the second which moment it reached, and a quiet database still writes WAL.
//!
//! Example: after a restore, `SELECT n, ts FROM lifeboat.heartbeat` gives `(4711, 2026-03-01
//! 08:00:03.512+00)`: everything the source committed before 08:00:03 was recovered.
//!
//! Invariant: the heartbeat runs beside the streamer and never stops it; a failure is logged,
//! counted as `lifeboat_errors_total{kind="heartbeat"}` and retried with backoff.

use std::time::Duration;

use tokio::sync::watch;

use crate::config::ClusterConfig;
use crate::metrics::{self, ErrorKind};
use crate::pg::sql::{self, SqlError};
use crate::wal::stream::wait_for_shutdown;

/// Creates the schema, the table and its row when missing; harmless when they exist.
const CREATE: &str = "CREATE SCHEMA IF NOT EXISTS lifeboat; \
    CREATE TABLE IF NOT EXISTS lifeboat.heartbeat \
        (id int PRIMARY KEY, n bigint NOT NULL, ts timestamptz NOT NULL); \
    INSERT INTO lifeboat.heartbeat VALUES (1, 0, clock_timestamp()) ON CONFLICT (id) DO NOTHING";

/// `clock_timestamp()`, not `now()`: the moment of the update itself.
const BEAT: &str = "UPDATE lifeboat.heartbeat SET n = n + 1, ts = clock_timestamp() WHERE id = 1";

const FIRST_BACKOFF: Duration = Duration::from_secs(1);

const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Bumps the heartbeat of `cluster` until shutdown; returns at once when it is turned off.
pub async fn run(cluster: &ClusterConfig, mut shutdown: watch::Receiver<bool>) {
    let Some(interval) = cluster.wal.heartbeat_interval else {
        return;
    };
    let mut backoff = FIRST_BACKOFF;
    loop {
        let result = tokio::select! {
            r = session(cluster, interval, &mut backoff) => r,
            _ = wait_for_shutdown(&mut shutdown) => return,
        };
        if let Err(e) = result {
            metrics::global().error(&cluster.name, ErrorKind::Heartbeat);
            tracing::warn!(error = %e, retry_in = ?backoff, "the heartbeat failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = wait_for_shutdown(&mut shutdown) => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection: create what is missing, then beat until an error.
async fn session(
    cluster: &ClusterConfig,
    interval: Duration,
    backoff: &mut Duration,
) -> Result<(), SqlError> {
    let client = sql::connect(&cluster.conninfo).await?;
    client
        .batch_execute(CREATE)
        .await
        .map_err(|source| query("creating lifeboat.heartbeat", source))?;
    tracing::debug!("heartbeat table ready");
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        client
            .batch_execute(BEAT)
            .await
            .map_err(|source| query("updating lifeboat.heartbeat", source))?;
        *backoff = FIRST_BACKOFF;
    }
}

fn query(what: &str, source: tokio_postgres::Error) -> SqlError {
    SqlError::Query {
        what: what.into(),
        source,
    }
}
