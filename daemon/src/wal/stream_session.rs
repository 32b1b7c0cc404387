//! One replication connection of the streamer: IDENTIFY_SYSTEM and the checks against the
//! repositories, the slot, the start position, then START_REPLICATION on each timeline in turn
//! (`START_REPLICATION SLOT "lifeboat" PHYSICAL 0/5000000 TIMELINE 1`), spooling, sealing and
//! uploading as the WAL arrives.
//!
//! Invariant: `Progress::durable`, the only flush position ever sent, moves only after a
//! segment or partial is stored in every repository.

use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::Instrument;

use super::{wait_for_shutdown, StreamError, Streamer};
use crate::pg::replication::{ReplError, ReplicationClient, ReplicationStream, StreamEvent};
use crate::pg::{Lsn, SegmentName, TimelineId};

/// Status updates go out at least this often; PostgreSQL drops a silent receiver after
/// `wal_sender_timeout` (60 s by default), and the reference asks for at most 10 s.
const STATUS_INTERVAL: Duration = Duration::from_secs(5);

/// How often the partial-upload and status timers are looked at.
const TICK: Duration = Duration::from_millis(200);

/// How long a clean stop of the stream may take at shutdown.
const STOP_TIMEOUT: Duration = Duration::from_secs(2);

/// How one timeline's stream ended.
enum Ended {
    Shutdown,
    Switched { next: TimelineId, start: Lsn },
}

/// What woke the streaming loop.
enum Step {
    Shutdown,
    Tick,
    Event(Result<StreamEvent, ReplError>),
}

/// Positions on the timeline being streamed.
struct Progress {
    tli: TimelineId,
    /// End of the WAL written to the spool.
    received: Lsn,
    /// End of the WAL stored in every repository: the flush position reported.
    durable: Lsn,
    last_upload: Instant,
    last_status: Instant,
}

impl Streamer<'_> {
    /// Connects and streams until shutdown or an error.
    pub(super) async fn session(
        &mut self,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), StreamError> {
        let conninfo = self.cluster.conninfo.clone();
        let mut client = tokio::select! {
            client = ReplicationClient::connect(&conninfo) => client?,
            _ = wait_for_shutdown(shutdown) => return Ok(()),
        };
        let system = client.identify_system().await?;
        self.check_server(&mut client, system.system_identifier)
            .await?;
        let restart = self.ensure_slot(&mut client).await?;
        let mut tli = system.timeline;
        let mut start = self.start_position(tli, restart, system.xlogpos).await?;
        loop {
            self.ensure_history(&mut client, tli).await?;
            let span = tracing::info_span!(
                "wal_stream",
                cluster = %self.cluster.name,
                slot = %self.cluster.wal.slot,
                timeline = %tli
            );
            let ended = self
                .stream_timeline(&mut client, tli, start, shutdown)
                .instrument(span)
                .await?;
            match ended {
                Ended::Shutdown => return Ok(()),
                Ended::Switched { next, start: at } => {
                    tracing::info!(timeline = %next, start = %at, "following the new timeline");
                    tli = next;
                    start = at.segment_start(self.seg_size);
                }
            }
        }
    }

    /// The server must be the repositories' database system, with their segment size.
    async fn check_server(
        &self,
        client: &mut ReplicationClient,
        server_id: u64,
    ) -> Result<(), StreamError> {
        let server_size = client.wal_segment_size().await?;
        for repo in self.repos.all() {
            let repo_id = repo.info.system_identifier.clone();
            if repo.info.system_id().ok() != Some(server_id) {
                return Err(StreamError::WrongSystem {
                    server: client.server().to_string(),
                    server_id,
                    repository: repo.name.clone(),
                    repo_id,
                });
            }
            if repo.info.wal_segment_size != server_size {
                return Err(StreamError::WrongSegmentSize {
                    server: client.server().to_string(),
                    server_size,
                    repository: repo.name.clone(),
                    repo_size: repo.info.wal_segment_size,
                });
            }
        }
        Ok(())
    }

    /// Creates the slot if it is missing and returns its restart position.
    async fn ensure_slot(&self, client: &mut ReplicationClient) -> Result<Option<Lsn>, ReplError> {
        let slot = &self.cluster.wal.slot;
        match client.create_physical_slot(slot).await {
            Ok(()) => tracing::info!(%slot, "created the replication slot"),
            Err(ReplError::SlotExists { .. }) => {}
            Err(e) => return Err(e),
        }
        let info = client.read_replication_slot(slot).await?;
        Ok(info.and_then(|i| i.restart_lsn))
    }

    /// The segment start of the higher of the repositories' end on `tli` and the slot's
    /// restart position; after a gap, the slot's position alone.
    async fn start_position(
        &self,
        tli: TimelineId,
        restart: Option<Lsn>,
        xlogpos: Lsn,
    ) -> Result<Lsn, StreamError> {
        let repo_end = self.repos.durable_end(tli).await?;
        let from = if self.after_gap {
            restart.unwrap_or(xlogpos)
        } else {
            repo_end.max(restart).unwrap_or(xlogpos)
        };
        if let (Some(end), Some(slot)) = (repo_end, restart) {
            if slot.segment_start(self.seg_size) > end {
                tracing::warn!(
                    repository_end = %end, slot_restart = %slot,
                    "the slot is past the repositories' end: WAL between them is missing"
                );
            }
        }
        Ok(from.segment_start(self.seg_size))
    }

    /// Stores the history file of `tli` first, so no segment of a timeline is stored without it.
    async fn ensure_history(
        &self,
        client: &mut ReplicationClient,
        tli: TimelineId,
    ) -> Result<(), StreamError> {
        if tli.0 < 2 || self.repos.has_history(tli).await? {
            return Ok(());
        }
        let (name, bytes) = client.timeline_history(tli).await?;
        self.repos.put_history(tli, &bytes).await?;
        tracing::info!(file = %name, "stored the timeline history");
        Ok(())
    }

    /// What is already durable of the segment starting at `start`: a partial or later WAL
    /// stored before, else nothing past `start`.
    async fn initial_durable(&self, tli: TimelineId, start: Lsn) -> Result<Lsn, StreamError> {
        let end = self.repos.durable_end(tli).await?.unwrap_or(start);
        Ok(if end > start && end.0 < start.0 + self.seg_size {
            end
        } else {
            start
        })
    }

    async fn stream_timeline(
        &mut self,
        client: &mut ReplicationClient,
        tli: TimelineId,
        start: Lsn,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Ended, StreamError> {
        let durable = self.initial_durable(tli, start).await?;
        let slot = self.cluster.wal.slot.clone();
        let mut stream = client.start_replication(Some(&slot), start, tli).await?;
        self.after_gap = false;
        self.metrics.durable(durable);
        tracing::info!(%start, %durable, "streaming");
        let now = Instant::now();
        let mut p = Progress {
            tli,
            received: start,
            durable,
            last_upload: now,
            last_status: now - STATUS_INTERVAL,
        };
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            // The timers come before the stream so that a busy stream cannot starve them.
            let step = tokio::select! {
                biased;
                _ = wait_for_shutdown(shutdown) => Step::Shutdown,
                _ = tick.tick() => Step::Tick,
                event = stream.next() => Step::Event(event),
            };
            if let Step::Event(Ok(
                StreamEvent::XLogData { wal_end, .. } | StreamEvent::Keepalive { wal_end, .. },
            )) = &step
            {
                self.metrics.server_end(*wal_end);
            }
            match step {
                Step::Shutdown => {
                    self.upload_partial(&mut p).await?;
                    send_status(&mut stream, &mut p).await?;
                    let _ = tokio::time::timeout(STOP_TIMEOUT, stream.stop()).await;
                    tracing::info!(durable = %p.durable, "stopped streaming");
                    return Ok(Ended::Shutdown);
                }
                Step::Tick => self.on_tick(&mut stream, &mut p).await?,
                Step::Event(Err(e)) => {
                    // What was spooled is WAL the server had flushed: store it before
                    // reconnecting, so a crashed source loses no more than the network held.
                    if let Err(upload) = self.upload_partial(&mut p).await {
                        tracing::warn!(error = %upload, "storing the spooled WAL failed");
                    }
                    return Err(e.into());
                }
                Step::Event(Ok(event)) => match event {
                    StreamEvent::XLogData { start, data, .. } => {
                        self.on_data(&mut stream, &mut p, start, &data).await?
                    }
                    StreamEvent::Keepalive {
                        reply_requested: true,
                        ..
                    } => send_status(&mut stream, &mut p).await?,
                    StreamEvent::Keepalive { .. } => {}
                    StreamEvent::EndOfTimeline {
                        next_tli,
                        next_tli_start,
                    } => {
                        if next_tli <= tli || next_tli_start > p.received {
                            return Err(StreamError::BadTimelineSwitch {
                                server: client.server().to_string(),
                                tli,
                                next: next_tli,
                                next_start: next_tli_start,
                                received: p.received,
                            });
                        }
                        self.upload_partial(&mut p).await?;
                        self.spool.discard()?;
                        return Ok(Ended::Switched {
                            next: next_tli,
                            start: next_tli_start,
                        });
                    }
                },
            }
        }
    }

    /// Spools `data`, split at segment ends, and stores each segment it completes.
    async fn on_data(
        &mut self,
        stream: &mut ReplicationStream<'_>,
        p: &mut Progress,
        start: Lsn,
        data: &[u8],
    ) -> Result<(), StreamError> {
        let mut at = start;
        let mut rest = data;
        while !rest.is_empty() {
            let seg = SegmentName::containing(p.tli, at, self.seg_size);
            let room = self.seg_size - at.segment_offset(self.seg_size);
            let n = rest.len().min(room as usize);
            self.spool.write(seg, at, &rest[..n])?;
            at = Lsn(at.0 + n as u64);
            rest = &rest[n..];
            p.received = at;
            if at.segment_offset(self.seg_size) == 0 {
                self.seal(stream, p).await?;
            }
        }
        self.metrics.received(p.received);
        Ok(())
    }

    /// Stores the complete segment in the spool, then drops its partials and its spool file.
    async fn seal(
        &mut self,
        stream: &mut ReplicationStream<'_>,
        p: &mut Progress,
    ) -> Result<(), StreamError> {
        let Some((seg, end, bytes)) = self.spool.synced_prefix()? else {
            return Ok(());
        };
        self.repos.put_segment(seg, &bytes).await?;
        p.durable = end;
        self.metrics.durable(end);
        self.progressed = true;
        self.repos.prune_partials(seg, end).await?;
        self.spool.discard()?;
        tracing::debug!(segment = %seg.file_name(self.seg_size), "stored the complete segment");
        send_status(stream, p).await?;
        Ok(())
    }

    /// Every `partial-upload-interval` with new WAL, stores the spooled prefix; keeps the
    /// status updates coming.
    async fn on_tick(
        &mut self,
        stream: &mut ReplicationStream<'_>,
        p: &mut Progress,
    ) -> Result<(), StreamError> {
        let interval = self.cluster.wal.partial_upload_interval;
        if p.last_upload.elapsed() >= interval && p.received > p.durable {
            self.upload_partial(p).await?;
            send_status(stream, p).await?;
        }
        if p.last_status.elapsed() >= STATUS_INTERVAL {
            send_status(stream, p).await?;
        }
        Ok(())
    }

    /// Stores the spooled part of the current segment as a partial, if it grew.
    async fn upload_partial(&mut self, p: &mut Progress) -> Result<(), StreamError> {
        if p.received <= p.durable {
            return Ok(());
        }
        let Some((seg, end, bytes)) = self.spool.synced_prefix()? else {
            return Ok(());
        };
        self.repos.put_partial(seg, end, &bytes).await?;
        p.durable = end;
        self.metrics.durable(end);
        p.last_upload = Instant::now();
        self.progressed = true;
        self.repos.prune_partials(seg, end).await?;
        tracing::debug!(segment = %seg.file_name(self.seg_size), %end, "stored a partial");
        Ok(())
    }
}

async fn send_status(
    stream: &mut ReplicationStream<'_>,
    p: &mut Progress,
) -> Result<(), ReplError> {
    stream
        .send_status(p.received, p.durable, Lsn::INVALID, false)
        .await?;
    p.last_status = Instant::now();
    Ok(())
}
