//! The CopyBoth phase of START_REPLICATION: WAL and keepalives in, status updates out, and the
//! end-of-timeline handshake that hands the connection back for the next command.
//!
//! Example: after `START_REPLICATION 0/1000000 TIMELINE 1` on a server promoted at `0/4031038`,
//! [`ReplicationStream::next`] yields XLogData up to `0/4031038`, then
//! `EndOfTimeline { next_tli: 2, next_tli_start: 0/4031038 }`.
//!
//! Invariant: the stream checks continuity itself: each XLogData must start exactly where the
//! previous one ended (the first at the requested start), else [`ReplError::Discontinuity`], so a
//! caller that writes `data` at `start` can never leave a hole.

use bytes::Bytes;
use postgres_protocol::message::frontend;

use super::conn::{log_notice, Conn, Frame};
use super::error::ReplError;
use super::messages::{self, CopyMessage};
use crate::pg::{Lsn, TimelineId};

/// How long to wait for `'Z'` after an error inside the stream before giving up on the connection.
const DRAIN_AFTER_ERROR: std::time::Duration = std::time::Duration::from_secs(5);

/// Something the server sent while streaming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// WAL bytes; `start` is always the end of the previous XLogData.
    XLogData {
        /// LSN of the first byte.
        start: Lsn,
        /// The server's WAL end when it sent this.
        wal_end: Lsn,
        /// The bytes (at most 128 KiB per message).
        data: Bytes,
    },
    /// A heartbeat; when `reply_requested`, call [`ReplicationStream::send_status`] at once or
    /// the server drops the connection at `wal_sender_timeout`.
    Keepalive {
        /// The server's WAL end.
        wal_end: Lsn,
        /// Whether the server asks for a status update now.
        reply_requested: bool,
    },
    /// The streamed timeline ended (promotion, or a historic timeline); the connection is ready
    /// for TIMELINE_HISTORY and a new START_REPLICATION. `next_tli_start` is at or before the
    /// end of the received data, which past that point must be replaced by the new timeline's.
    EndOfTimeline {
        /// The timeline that follows.
        next_tli: TimelineId,
        /// Where it starts.
        next_tli_start: Lsn,
    },
}

/// A running START_REPLICATION; borrows the connection until it ends.
pub struct ReplicationStream<'c> {
    conn: &'c mut Conn,
    command: String,
    tli: TimelineId,
    expected: Lsn,
    ended: bool,
    /// An end of timeline read before any data, returned by the first [`Self::next`].
    pending: Option<StreamEvent>,
}

impl<'c> ReplicationStream<'c> {
    /// Sends `command` and waits for CopyBothResponse; errors before it (such as "not in this
    /// server's history") come back here.
    pub(super) async fn start(
        conn: &'c mut Conn,
        command: String,
        start: Lsn,
        tli: TimelineId,
    ) -> Result<ReplicationStream<'c>, ReplError> {
        conn.send_query(&command).await?;
        loop {
            let frame = conn.read_frame().await?;
            match frame.tag {
                b'W' => {
                    messages::decode_copy_both(&frame.body).map_err(|e| conn.protocol(e))?;
                    break;
                }
                b'E' => {
                    let error = messages::decode_server_message(&frame.body);
                    conn.read_result(&command).await?;
                    return Err(ReplError::from_server(&conn.server, &command, error));
                }
                b'N' => log_notice(&conn.server, &frame.body),
                // Starting exactly at a historic timeline's end: no copy, just the result set.
                b'T' | b'D' => return Self::ended_at_start(conn, command, start, tli, frame).await,
                b'Z' => return Err(conn.protocol(format!("{command} ended without streaming"))),
                _ => {}
            }
        }
        Ok(ReplicationStream {
            conn,
            command,
            tli,
            expected: start,
            ended: false,
            pending: None,
        })
    }

    async fn ended_at_start(
        conn: &'c mut Conn,
        command: String,
        start: Lsn,
        tli: TimelineId,
        first: Frame,
    ) -> Result<ReplicationStream<'c>, ReplError> {
        let mut rows = Vec::new();
        if first.tag == b'D' {
            rows.push(messages::decode_data_row(&first.body).map_err(|e| conn.protocol(e))?);
        }
        rows.extend(conn.read_result(&command).await?);
        let mut stream = ReplicationStream {
            conn,
            command,
            tli,
            expected: start,
            ended: true,
            pending: None,
        };
        stream.pending = Some(stream.next_timeline(&rows)?);
        Ok(stream)
    }

    /// The end of the WAL received so far: where the next XLogData must start.
    pub fn received_end(&self) -> Lsn {
        self.expected
    }

    /// The next event. Cancel-safe while waiting for data; the end-of-timeline handshake and
    /// error draining are not, so do not cancel a call that has started one (keep timers long).
    pub async fn next(&mut self) -> Result<StreamEvent, ReplError> {
        if let Some(event) = self.pending.take() {
            return Ok(event);
        }
        if self.ended {
            return Err(self
                .conn
                .protocol(format!("{} already ended", self.command)));
        }
        loop {
            let frame = self.conn.read_frame().await?;
            match frame.tag {
                b'd' => return self.copy_data(frame.body),
                b'c' => return self.end_of_timeline().await,
                b'E' => return Err(self.error_in_stream(&frame.body).await),
                b'N' => log_notice(&self.conn.server, &frame.body),
                other => {
                    self.ended = true;
                    let reason =
                        format!("unexpected message {:?} in {}", other as char, self.command);
                    return Err(self.conn.protocol(reason));
                }
            }
        }
    }

    /// Sends a standby status update; `flush` must be durable, as the slot will drop WAL before
    /// it. Send one at least every 10 s and whenever a keepalive requests it.
    pub async fn send_status(
        &mut self,
        write: Lsn,
        flush: Lsn,
        apply: Lsn,
        reply_requested: bool,
    ) -> Result<(), ReplError> {
        let now = messages::now_pg_micros();
        let payload = messages::encode_status_update(write, flush, apply, now, reply_requested);
        let message =
            frontend::CopyData::new(&payload[..]).map_err(|e| self.conn.protocol(e.to_string()))?;
        message.write(self.conn.write_buf());
        self.conn.flush().await
    }

    /// Ends streaming: sends CopyDone and reads to `'Z'`, discarding WAL still in flight; the
    /// connection is then ready for another command.
    pub async fn stop(mut self) -> Result<(), ReplError> {
        if self.ended {
            return Ok(());
        }
        self.ended = true;
        frontend::copy_done(self.conn.write_buf());
        self.conn.flush().await?;
        let mut error = None;
        loop {
            let frame = self.conn.read_frame().await?;
            match frame.tag {
                b'Z' => break,
                b'E' => error = Some(messages::decode_server_message(&frame.body)),
                // WAL in flight, the server's CopyDone, an end-of-timeline row that crossed our
                // CopyDone, and the CommandCompletes.
                _ => {}
            }
        }
        match error {
            Some(error) => Err(ReplError::from_server(
                &self.conn.server,
                &self.command,
                error,
            )),
            None => Ok(()),
        }
    }

    fn copy_data(&mut self, payload: Bytes) -> Result<StreamEvent, ReplError> {
        match messages::decode_copy_data(payload).map_err(|e| self.conn.protocol(e))? {
            CopyMessage::XLogData {
                start,
                wal_end,
                data,
                ..
            } => {
                if start != self.expected {
                    self.ended = true;
                    return Err(ReplError::Discontinuity {
                        server: self.conn.server.clone(),
                        expected: self.expected,
                        got: start,
                    });
                }
                self.expected = Lsn(start.0 + data.len() as u64);
                Ok(StreamEvent::XLogData {
                    start,
                    wal_end,
                    data,
                })
            }
            CopyMessage::Keepalive {
                wal_end,
                reply_requested,
                ..
            } => Ok(StreamEvent::Keepalive {
                wal_end,
                reply_requested,
            }),
        }
    }

    /// The server sent CopyDone: answer it, then read the row naming the next timeline.
    async fn end_of_timeline(&mut self) -> Result<StreamEvent, ReplError> {
        self.ended = true;
        frontend::copy_done(self.conn.write_buf());
        self.conn.flush().await?;
        let rows = self.conn.read_result(&self.command).await?;
        self.next_timeline(&rows)
    }

    /// Parses and checks the row naming the next timeline: it must be newer, and start no later
    /// than the data received, or the caller would be left with a hole.
    fn next_timeline(&self, rows: &[messages::Row]) -> Result<StreamEvent, ReplError> {
        let row = rows.first().ok_or_else(|| {
            self.conn.protocol(format!(
                "{} ended without naming the next timeline",
                self.command
            ))
        })?;
        let (next_tli, next_tli_start) =
            messages::parse_end_of_timeline(row).map_err(|e| self.conn.protocol(e))?;
        if next_tli <= self.tli || next_tli_start > self.expected {
            return Err(self.conn.protocol(format!(
                "{}: timeline {next_tli} at {next_tli_start} cannot follow timeline {} with data received to {}",
                self.command, self.tli, self.expected
            )));
        }
        Ok(StreamEvent::EndOfTimeline {
            next_tli,
            next_tli_start,
        })
    }

    /// An ErrorResponse after CopyBothResponse (removed WAL, start ahead of flush): read to `'Z'`
    /// so the connection stays usable, and classify it.
    async fn error_in_stream(&mut self, body: &[u8]) -> ReplError {
        self.ended = true;
        let error = ReplError::from_server(
            &self.conn.server,
            &self.command,
            messages::decode_server_message(body),
        );
        let drained = tokio::time::timeout(DRAIN_AFTER_ERROR, async {
            while self.conn.read_frame().await?.tag != b'Z' {}
            Ok::<(), ReplError>(())
        })
        .await;
        if !matches!(drained, Ok(Ok(()))) {
            tracing::debug!(server = %self.conn.server, "no ReadyForQuery after a stream error");
        }
        error
    }
}
