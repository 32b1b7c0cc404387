//! The long-running supervisor (`lifeboat daemon`): one WAL streamer per cluster whose
//! `[cluster.wal] mode = "stream"`, each restarted with backoff when it fails, all stopped
//! together on SIGTERM or SIGINT.
//!
//! Example: `lifeboat --config /etc/lifeboat/lifeboat.toml daemon` under systemd.
//!
//! Invariant: a shutdown lets each streamer store its partial segment and report it before the
//! process exits, within [`SHUTDOWN_GRACE`]; one cluster failing never stops another.

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
    let (stop, stopped) = watch::channel(false);
    tracing::info!(clusters = streamed.len(), "daemon started");
    // One task drives every supervisor: the replication client's futures are not `Send`.
    let supervisors = streamed.into_iter().map(|cluster| {
        let span = tracing::info_span!("supervisor", cluster = %cluster.name);
        supervise(cluster, config.state_dir.clone(), stopped.clone()).instrument(span)
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
        tracing::error!(
            grace = ?SHUTDOWN_GRACE,
            "streamers did not stop in time; the newest WAL may not be stored"
        );
    }
    tracing::info!("daemon stopped");
    Ok(())
}

/// Runs the streamer of `cluster` again and again until shutdown.
async fn supervise(
    cluster: ClusterConfig,
    state_dir: std::path::PathBuf,
    mut stopped: watch::Receiver<bool>,
) {
    let mut delay = FIRST_RESTART_DELAY;
    loop {
        match stream::run(&cluster, &state_dir, stopped.clone()).await {
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
