//! The WAL streamer of one cluster (`[cluster.wal] mode = "stream"`): a physical replication
//! connection through slot `lifeboat` -> a spool file per segment in
//! `<state-dir>/spool/<cluster>/` -> each complete segment uploaded at once as
//! `wal/00000001/000000010000000000000004`, and every `partial-upload-interval` the streamed part
//! of the current segment as `wal/00000001/000000010000000000000005.partial.000000000512A3F0`.
//!
//! Start: the higher of the repositories' durable end on the server's timeline and the slot's
//! `restart_lsn`, rounded down to its segment start as pg_receivewal does. At the end of a
//! timeline the history file is stored first, then streaming restarts on the new timeline at
//! the segment start of the switch point.
//!
//! Invariant: the flush position reported to PostgreSQL, which lets the slot release WAL, is
//! only ever a position durable in every repository.

#[path = "stream_repos.rs"]
mod repos;
#[path = "stream_session.rs"]
mod session;
#[path = "stream_spool.rs"]
mod spool;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::ClusterConfig;
use crate::crypto::CryptoError;
use crate::metrics::{ErrorKind, WalMetrics};
use crate::pg::replication::ReplError;
use crate::pg::{Lsn, TimelineId};

pub use repos::{end_on, RepoFailure, Repos};
pub use spool::{Spool, SpoolError};

/// The first pause after a failed session; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// The longest pause between reconnects: a restarted server is found again within this.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Why streaming stopped.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The replication connection failed.
    #[error(transparent)]
    Repl(#[from] ReplError),
    /// A repository could not be read or written.
    #[error(transparent)]
    Repo(#[from] RepoFailure),
    /// The spool could not be written.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// The key-encryption key did not load.
    #[error(transparent)]
    Kek(#[from] CryptoError),
    /// The server is another database system than the repository's.
    #[error("server {server} is database system {server_id}, but repository {repository} belongs to system {repo_id}\nhint: the conninfo points at another cluster, or the cluster was re-initialised; use a new repository for a new cluster")]
    WrongSystem {
        /// The server.
        server: String,
        /// Its system identifier.
        server_id: u64,
        /// The repository.
        repository: String,
        /// The repository's system identifier (as stored).
        repo_id: String,
    },
    /// The server's WAL segment size differs from the repository's.
    #[error("server {server} uses {server_size}-byte WAL segments, repository {repository} {repo_size}-byte ones")]
    WrongSegmentSize {
        /// The server.
        server: String,
        /// Its segment size.
        server_size: u64,
        /// The repository.
        repository: String,
        /// The repository's segment size.
        repo_size: u64,
    },
    /// The server announced a timeline switch that does not fit what was streamed.
    #[error("server {server}: timeline {tli} ends with next timeline {next} at {next_start}, which does not follow (received up to {received})")]
    BadTimelineSwitch {
        /// The server.
        server: String,
        /// The timeline that ended.
        tli: TimelineId,
        /// The announced next timeline.
        next: TimelineId,
        /// Where it starts.
        next_start: Lsn,
        /// The end of the WAL received on `tli`.
        received: Lsn,
    },
}

impl StreamError {
    /// Whether reconnecting may cure it; the others need a person, and are logged at ERROR.
    pub fn is_retryable(&self) -> bool {
        match self {
            StreamError::Repl(e) => e.is_retryable(),
            StreamError::Repo(e) => e.source.is_retryable(),
            StreamError::Spool(_) => true,
            _ => false,
        }
    }
}

/// The streamer's view of one cluster, kept across reconnects.
pub struct Streamer<'a> {
    cluster: &'a ClusterConfig,
    repos: Repos,
    spool: Spool,
    seg_size: u64,
    /// Set when the server no longer had the WAL after the repositories' end: the next session
    /// starts at the slot's position instead, leaving a gap.
    after_gap: bool,
    /// Whether the current session stored anything, which resets the backoff.
    progressed: bool,
    /// The positions exported on `/metrics`.
    metrics: Arc<WalMetrics>,
}

/// Streams `cluster` until `shutdown` turns true, reconnecting with backoff; returns an error
/// only when the repositories or the spool cannot even be opened.
pub async fn run(
    cluster: &ClusterConfig,
    state_dir: &Path,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), StreamError> {
    let kek = cluster.kek.load()?;
    let repos = Repos::open(cluster, &kek).await?;
    let seg_size = repos
        .all()
        .first()
        .map(|r| r.info.wal_segment_size)
        .unwrap_or(16 << 20);
    let spool_dir = state_dir.join("spool").join(&cluster.name);
    let spool = Spool::open(spool_dir, seg_size)?;
    let mut streamer = Streamer {
        cluster,
        repos,
        spool,
        seg_size,
        after_gap: false,
        progressed: false,
        metrics: crate::metrics::global().wal(&cluster.name),
    };
    let mut backoff = FIRST_BACKOFF;
    loop {
        streamer.progressed = false;
        let result = streamer.session(&mut shutdown).await;
        if stopping(&shutdown) {
            if let Err(e) = &result {
                tracing::warn!(error = %e, "streaming ended with an error during shutdown");
            }
            return Ok(());
        }
        if streamer.progressed {
            backoff = FIRST_BACKOFF;
        }
        if let Err(e) = result {
            streamer.report(&e);
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = wait_for_shutdown(&mut shutdown) => return Ok(()),
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

impl Streamer<'_> {
    fn report(&mut self, e: &StreamError) {
        let gap = matches!(e, StreamError::Repl(ReplError::WalRemoved { .. }));
        let kind = if gap {
            ErrorKind::WalGap
        } else {
            ErrorKind::Stream
        };
        crate::metrics::global().error(&self.cluster.name, kind);
        if gap {
            tracing::error!(
                error = %e,
                "the server removed WAL the repositories do not hold: the archive has a gap; \
                 streaming resumes at the slot's position, and a new base backup is needed"
            );
            self.after_gap = true;
        } else if e.is_retryable() {
            tracing::warn!(error = %e, "streaming failed; reconnecting");
        } else {
            tracing::error!(error = %e, "streaming failed; retrying with backoff");
        }
    }
}

/// Whether shutdown was requested (or its sender is gone).
fn stopping(shutdown: &watch::Receiver<bool>) -> bool {
    *shutdown.borrow() || shutdown.has_changed().is_err()
}

/// Returns once shutdown is requested or its sender is gone.
pub async fn wait_for_shutdown(shutdown: &mut watch::Receiver<bool>) {
    while !*shutdown.borrow_and_update() {
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}
