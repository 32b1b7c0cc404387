//! The daemon's Prometheus metrics: one process-wide registry, the `lifeboat_` gauges and
//! counters every task updates, and the `/metrics` endpoint on `metrics-listen` ([`http`]).
//!
//! Example: `curl -s 127.0.0.1:9187/metrics | grep lifeboat_wal_durable_lsn` prints
//! `lifeboat_wal_durable_lsn{cluster="main"} 83886080`.
//!
//! Invariant: `lifeboat_wal_durable_lsn` only ever shows a position the streamer reported as
//! durable in every repository, so an alert on it never claims more safety than there is.

pub mod http;

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus::{Encoder, GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::pg::Lsn;

/// What failed, the `kind` label of `lifeboat_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A streaming session failed (connection, repository, spool).
    Stream,
    /// The server no longer had WAL the repositories lack: the archive has a gap.
    WalGap,
    /// Updating the heartbeat table failed.
    Heartbeat,
    /// A scheduled base backup failed.
    Backup,
}

impl ErrorKind {
    const ALL: [ErrorKind; 4] = [
        ErrorKind::Stream,
        ErrorKind::WalGap,
        ErrorKind::Heartbeat,
        ErrorKind::Backup,
    ];

    fn label(self) -> &'static str {
        match self {
            ErrorKind::Stream => "stream",
            ErrorKind::WalGap => "wal_gap",
            ErrorKind::Heartbeat => "heartbeat",
            ErrorKind::Backup => "backup",
        }
    }
}

/// The registry and every metric in it.
pub struct Metrics {
    registry: Registry,
    wal_received_lsn: IntGaugeVec,
    wal_durable_lsn: IntGaugeVec,
    rpo_exposure_seconds: GaugeVec,
    slot_retained_bytes: IntGaugeVec,
    backup_last_success: GaugeVec,
    backup_duration: GaugeVec,
    errors_total: IntCounterVec,
    wal: Mutex<HashMap<String, Arc<WalMetrics>>>,
}

static GLOBAL: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process-wide metrics.
pub fn global() -> &'static Metrics {
    &GLOBAL
}

fn int_gauge(registry: &Registry, name: &str, help: &str) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), &["cluster"]).expect("valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("unique metric");
    g
}

fn gauge(registry: &Registry, name: &str, help: &str) -> GaugeVec {
    let g = GaugeVec::new(Opts::new(name, help), &["cluster"]).expect("valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("unique metric");
    g
}

impl Metrics {
    fn new() -> Metrics {
        let r = Registry::new();
        let errors_total = IntCounterVec::new(
            Opts::new(
                "lifeboat_errors_total",
                "Failures by kind: stream, wal_gap, heartbeat, backup.",
            ),
            &["cluster", "kind"],
        )
        .expect("valid metric");
        r.register(Box::new(errors_total.clone()))
            .expect("unique metric");
        Metrics {
            wal_received_lsn: int_gauge(
                &r,
                "lifeboat_wal_received_lsn",
                "End of the WAL received from the server and spooled, as a byte position.",
            ),
            wal_durable_lsn: int_gauge(
                &r,
                "lifeboat_wal_durable_lsn",
                "End of the WAL stored in every repository, as a byte position.",
            ),
            rpo_exposure_seconds: gauge(
                &r,
                "lifeboat_rpo_exposure_seconds",
                "Seconds of WAL the server has flushed that no repository holds yet; \
                 0 when caught up.",
            ),
            slot_retained_bytes: int_gauge(
                &r,
                "lifeboat_slot_retained_bytes",
                "Bytes of WAL the replication slot keeps on the server: its flush position \
                 minus the last position reported durable.",
            ),
            backup_last_success: gauge(
                &r,
                "lifeboat_backup_last_success_timestamp_seconds",
                "Unix time the last scheduled base backup finished; 0 before the first.",
            ),
            backup_duration: gauge(
                &r,
                "lifeboat_backup_duration_seconds",
                "How long the last successful scheduled base backup took.",
            ),
            errors_total,
            registry: r,
            wal: Mutex::new(HashMap::new()),
        }
    }

    /// The WAL positions of `cluster`, one shared set per cluster across streamer restarts.
    pub fn wal(&'static self, cluster: &str) -> Arc<WalMetrics> {
        let mut map = self.wal.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry(cluster.to_string())
            .or_insert_with(|| Arc::new(WalMetrics::new(self, cluster)))
            .clone()
    }

    /// Shows `cluster`'s backup metrics and error counters at 0 before anything happens, so
    /// rules on them see a series from the daemon's start.
    pub fn register_cluster(&self, cluster: &str) {
        self.backup_last_success.with_label_values(&[cluster]);
        self.backup_duration.with_label_values(&[cluster]);
        for kind in ErrorKind::ALL {
            self.errors_total
                .with_label_values(&[cluster, kind.label()]);
        }
    }

    /// Counts one failure of `kind` for `cluster`.
    pub fn error(&self, cluster: &str, kind: ErrorKind) {
        self.errors_total
            .with_label_values(&[cluster, kind.label()])
            .inc();
    }

    /// Records a successful base backup that ended at `finished` after `took`.
    pub fn backup_succeeded(&self, cluster: &str, finished: SystemTime, took: Duration) {
        let at = finished
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        self.backup_last_success
            .with_label_values(&[cluster])
            .set(at);
        self.backup_duration
            .with_label_values(&[cluster])
            .set(took.as_secs_f64());
    }

    /// The text exposition of every metric, the RPO exposure computed as of now.
    pub fn render(&self) -> String {
        let wal: Vec<Arc<WalMetrics>> = self
            .wal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        for w in wal {
            w.refresh();
        }
        let mut out = Vec::new();
        let encoded = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        if let Err(e) = encoded {
            tracing::warn!(error = %e, "cannot encode the metrics");
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// The streamer's positions for one cluster, and what follows from them.
pub struct WalMetrics {
    metrics: &'static Metrics,
    cluster: String,
    state: Mutex<WalState>,
}

#[derive(Default)]
struct WalState {
    received: Lsn,
    durable: Lsn,
    /// The server's flush position, from its keepalives and WAL messages.
    server_end: Lsn,
    /// When the oldest WAL not yet durable may have been written: the last moment the durable
    /// position advanced or was caught up with the server.
    exposed_since: Option<Instant>,
}

impl WalMetrics {
    fn new(metrics: &'static Metrics, cluster: &str) -> WalMetrics {
        WalMetrics {
            metrics,
            cluster: cluster.to_string(),
            state: Mutex::new(WalState::default()),
        }
    }

    /// The end of the spooled WAL moved to `lsn`.
    pub fn received(&self, lsn: Lsn) {
        self.update(|s| s.received = lsn);
    }

    /// The server said its WAL ends at `lsn`.
    pub fn server_end(&self, lsn: Lsn) {
        self.update(|s| s.server_end = s.server_end.max(lsn));
    }

    /// The WAL through `lsn` is durable in every repository.
    pub fn durable(&self, lsn: Lsn) {
        self.update(|s| {
            if lsn > s.durable {
                s.exposed_since = Some(Instant::now());
            }
            s.durable = lsn;
        });
    }

    /// Recomputes the derived gauges as of now.
    pub fn refresh(&self) {
        self.update(|_| {});
    }

    fn update(&self, change: impl FnOnce(&mut WalState)) {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        change(&mut s);
        let behind = s.server_end > s.durable;
        if !behind {
            s.exposed_since = Some(Instant::now());
        }
        let exposure = match s.exposed_since {
            Some(since) if behind => since.elapsed().as_secs_f64(),
            _ => 0.0,
        };
        let label = [self.cluster.as_str()];
        let m = self.metrics;
        m.wal_received_lsn
            .with_label_values(&label)
            .set(as_i64(s.received));
        m.wal_durable_lsn
            .with_label_values(&label)
            .set(as_i64(s.durable));
        m.rpo_exposure_seconds
            .with_label_values(&label)
            .set(exposure);
        let retained = s.server_end.0.saturating_sub(s.durable.0);
        m.slot_retained_bytes
            .with_label_values(&label)
            .set(retained.min(i64::MAX as u64) as i64);
    }
}

/// LSNs fit an i64 for the first 8 EiB of WAL a cluster writes.
fn as_i64(lsn: Lsn) -> i64 {
    lsn.0.min(i64::MAX as u64) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposure_is_zero_when_caught_up_and_grows_when_behind() {
        let w = global().wal("metrics-test");
        w.server_end(Lsn(100));
        w.durable(Lsn(100));
        let text = global().render();
        assert!(text.contains("lifeboat_rpo_exposure_seconds{cluster=\"metrics-test\"} 0"));
        assert!(text.contains("lifeboat_wal_durable_lsn{cluster=\"metrics-test\"} 100"));
        w.server_end(Lsn(300));
        std::thread::sleep(Duration::from_millis(20));
        w.refresh();
        let exposure = global()
            .rpo_exposure_seconds
            .with_label_values(&["metrics-test"])
            .get();
        assert!(exposure >= 0.02, "{exposure}");
        assert!(global()
            .render()
            .contains("lifeboat_slot_retained_bytes{cluster=\"metrics-test\"} 200"));
    }

    #[test]
    fn errors_are_counted_by_kind() {
        global().error("metrics-errors", ErrorKind::Backup);
        global().error("metrics-errors", ErrorKind::Backup);
        let text = global().render();
        assert!(
            text.contains("lifeboat_errors_total{cluster=\"metrics-errors\",kind=\"backup\"} 2")
        );
    }
}
