//! The long-running supervisor (`lifeboat daemon`): for each cluster whose
//! `[cluster.wal] mode = "stream"`, the WAL streamer (restarted with backoff when it fails), the
//! heartbeat ([`heartbeat`]) and the backup schedule ([`schedule`]); `/metrics` on
//! `metrics-listen`; all stopped together on SIGTERM or SIGINT.
//!
//! Example: `lifeboat --config /etc/lifeboat/lifeboat.toml daemon` under systemd.
//!
//! Invariant: a shutdown lets each streamer store its partial segment and report it before the
//! process exits, within [`SHUTDOWN_GRACE`]; one cluster or task failing never stops another.

pub mod heartbeat;
pub mod schedule;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::watch;
use tracing::Instrument;

use crate::config::{ClusterConfig, Config, WalMode};
use crate::wal::stream;

/// How long the streamers get to store their partial segments after a signal; systemd's
/// default stop timeout is 90 s, and the issue asks for an exit within 10 s.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(9);

/// The first pause before a failed streamer is started again; it doubles up to a minute.
const FIRST_RESTART_DELAY: Duration = Duration::from_secs(1);

const MAX_RESTART_DELAY: Duration = Duration::from_secs(60);

/// Errors that keep the daemon from starting.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// No cluster has anything for the daemon to do.
    #[error("no cluster in {path} has [cluster.wal] mode = \"stream\"; the daemon has nothing to do\nhint: set mode = \"stream\" in a cluster's [cluster.wal] section")]
    NothingToDo {
        /// The configuration file.
        path: String,
    },
    /// The signal handlers could not be installed.
    #[error("cannot install the signal handlers: {0}")]
    Signals(std::io::Error),
    /// The metrics endpoint could not listen.
    #[error("cannot listen for /metrics on {addr}: {source}\nhint: the address must be this host's and the port free (a second daemon?); change metrics-listen")]
    Metrics {
        /// `metrics-listen`.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The streamers did not stop within the grace period after SIGTERM or SIGINT.
    #[error("the streamers did not stop within {0:?}; the newest WAL may not be stored yet (the slot keeps it on the server, so a restarted daemon ships it)")]
    ShutdownTimeout(std::time::Duration),
}

/// Runs until SIGTERM or SIGINT, then stops the streamers and returns.
pub async fn run(config: &Config) -> Result<(), DaemonError> {
    let streamed: Vec<ClusterConfig> = config
        .clusters
        .iter()
        .filter(|c| c.wal.mode == WalMode::Stream)
        .cloned()
        .collect();
    if streamed.is_empty() {
        return Err(DaemonError::NothingToDo {
            path: config.path.display().to_string(),
        });
    }
    let signals = Signals::install()?;
    if let Some(addr) = config.metrics_listen {
        let listener = crate::metrics::http::bind(addr)
            .await
            .map_err(|source| DaemonError::Metrics { addr, source })?;
        tracing::info!(%addr, "serving /metrics");
        tokio::spawn(crate::metrics::http::serve(listener));
    }
    let (stop, stopped) = watch::channel(false);
    tracing::info!(clusters = streamed.len(), "daemon started");
    // One task drives every supervisor: the replication client's futures are not `Send`.
    let supervisors = streamed.into_iter().map(|cluster| {
        let span = tracing::info_span!("supervisor", cluster = %cluster.name);
        let stopped = stopped.clone();
        crate::metrics::global().register_cluster(&cluster.name);
        async move {
            futures::join!(
                supervise(&cluster, &config.state_dir, stopped.clone()),
                heartbeat::run(&cluster, stopped.clone()),
                schedule::run(config, &cluster, stopped),
            );
        }
        .instrument(span)
    });
    let all_done = futures::future::join_all(supervisors);
    tokio::pin!(all_done);
    tokio::select! {
        _ = &mut all_done => return Ok(()),
        _ = signals.wait() => {}
    }
    tracing::info!("stopping: storing partial segments");
    let _ = stop.send(true);
    if tokio::time::timeout(SHUTDOWN_GRACE, all_done)
        .await
        .is_err()
    {
        // Nothing is lost (the slot still holds the WAL), but a service manager must see it.
        return Err(DaemonError::ShutdownTimeout(SHUTDOWN_GRACE));
    }
    tracing::info!("daemon stopped");
    Ok(())
}

/// Runs the streamer of `cluster` again and again until shutdown.
async fn supervise(
    cluster: &ClusterConfig,
    state_dir: &std::path::Path,
    mut stopped: watch::Receiver<bool>,
) {
    let mut delay = FIRST_RESTART_DELAY;
    loop {
        match stream::run(cluster, state_dir, stopped.clone()).await {
            Ok(()) => return,
            Err(e) => tracing::error!(error = %e, retry_in = ?delay, "the WAL streamer failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stream::wait_for_shutdown(&mut stopped) => return,
        }
        delay = (delay * 2).min(MAX_RESTART_DELAY);
    }
}

/// SIGTERM and SIGINT, caught from start-up on so neither kills the process mid-upload.
struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    fn install() -> Result<Signals, DaemonError> {
        let term = signal(SignalKind::terminate()).map_err(DaemonError::Signals)?;
        let int = signal(SignalKind::interrupt()).map_err(DaemonError::Signals)?;
        Ok(Signals { term, int })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => tracing::info!("SIGTERM received"),
            _ = self.int.recv() => tracing::info!("SIGINT received"),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigError};

    const EXAMPLE: &str = include_str!("../../../config/lifeboat.example.toml");

    /// The example configuration with `edits` applied, loaded from a temporary file.
    fn load(edits: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut text = EXAMPLE.to_string();
        for (from, to) in edits {
            assert!(text.contains(from), "{from:?} is not in the example");
            text = text.replacen(from, to, 1);
        }
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("lifeboat.toml");
        std::fs::write(&path, text).expect("write the configuration");
        Config::load(&path)
    }

    #[test]
    fn daemon_keys_default_to_a_daily_backup_a_heartbeat_and_no_listener() {
        let config = load(&[]).unwrap();
        let c = config.cluster(None).unwrap();
        assert!(config.metrics_listen.is_none());
        assert!(c.backup.schedule.is_some());
        assert_eq!(
            c.wal.heartbeat_interval,
            Some(std::time::Duration::from_secs(1))
        );
    }

    #[test]
    fn daemon_keys_parse_and_turn_off() {
        let config = load(&[
            ("# metrics-listen = ", "metrics-listen = "),
            ("schedule = \"0 0 2 * * *\"", "schedule = \"off\""),
            ("heartbeat-interval = \"1s\"", "heartbeat-interval = \"0s\""),
        ])
        .unwrap();
        let c = config.cluster(None).unwrap();
        assert_eq!(config.metrics_listen, Some(([127, 0, 0, 1], 9187).into()));
        assert!(c.backup.schedule.is_none());
        assert!(c.wal.heartbeat_interval.is_none());
    }

    #[test]
    fn bad_daemon_keys_are_refused_naming_the_key() {
        let cases = [
            (
                "# metrics-listen = \"127.0.0.1:9187\"",
                "metrics-listen = \"localhost\"",
                "metrics-listen",
            ),
            (
                "time-zone = \"UTC\"",
                "time-zone = \"Mars/Olympus\"",
                "backup.time-zone",
            ),
            (
                "schedule = \"0 0 2 * * *\"",
                "schedule = \"daily\"",
                "backup.schedule",
            ),
            (
                "heartbeat-interval = \"1s\"",
                "heartbeat-interval = \"often\"",
                "wal.heartbeat-interval",
            ),
        ];
        for (from, to, key) in cases {
            let err = load(&[(from, to)]).unwrap_err().to_string();
            assert!(err.contains(key), "{to}: {err}");
        }
    }
}
