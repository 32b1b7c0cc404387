//! Physical replication client: the walsender commands Lifeboat needs (IDENTIFY_SYSTEM,
//! `SHOW wal_segment_size`, TIMELINE_HISTORY, CREATE_REPLICATION_SLOT, READ_REPLICATION_SLOT,
//! START_REPLICATION) over one connection opened with `replication=true`.
//!
//! Example:
//! ```no_run
//! # async fn demo() -> Result<(), lifeboat::pg::replication::ReplError> {
//! use lifeboat::pg::replication::{ReplicationClient, StreamEvent};
//! let mut client = ReplicationClient::connect("host=/run/postgresql port=5432 user=postgres").await?;
//! let system = client.identify_system().await?;
//! let mut stream = client.start_replication(Some("lifeboat"), system.xlogpos, system.timeline).await?;
//! if let StreamEvent::XLogData { start, data, .. } = stream.next().await? {
//!     // write `data` at `start`, fsync, then report it:
//!     stream.send_status(start, start, lifeboat::pg::Lsn::INVALID, false).await?;
//! }
//! # Ok(()) }
//! ```
//!
//! Invariant: this module never reports a flush position by itself; only the caller knows what
//! is durable, and the slot lets PostgreSQL delete WAL up to whatever flush it is told.

mod conn;
mod error;
mod messages;
mod pgpass;
mod stream;

pub use error::ReplError;
pub use messages::{encode_status_update, now_pg_micros, parse_segment_size, ServerMessage};
pub use stream::{ReplicationStream, StreamEvent};

use conn::{Conn, Target};
use messages::{text, Row};

use crate::pg::{Lsn, TimelineId};

/// What IDENTIFY_SYSTEM reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SystemInfo {
    /// The cluster's system identifier, fixed at initdb.
    pub system_identifier: u64,
    /// The server's current timeline.
    pub timeline: TimelineId,
    /// The server's WAL flush position.
    pub xlogpos: Lsn,
}

/// A physical slot's position, from READ_REPLICATION_SLOT or `pg_replication_slots`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotInfo {
    /// Oldest WAL the slot retains; `None` while the slot reserves none.
    pub restart_lsn: Option<Lsn>,
    /// Timeline of `restart_lsn`; `None` before PostgreSQL 15 (not in `pg_replication_slots`).
    pub restart_tli: Option<TimelineId>,
}

/// A replication connection to one server.
pub struct ReplicationClient {
    conn: Conn,
    conninfo: String,
}

impl ReplicationClient {
    /// Connects and authenticates with a libpq-style conninfo (first host and port only).
    pub async fn connect(conninfo: &str) -> Result<ReplicationClient, ReplError> {
        let target: Target = conn::parse_target(conninfo)?;
        let conn = Conn::connect(&target).await?;
        Ok(ReplicationClient {
            conn,
            conninfo: conninfo.to_owned(),
        })
    }

    /// `host:port` (or socket directory and port) of the server, for messages.
    pub fn server(&self) -> &str {
        &self.conn.server
    }

    /// The server's major version, from the `server_version` it announced at startup.
    pub fn server_major(&self) -> Option<u32> {
        messages::parse_server_major(&self.conn.server_version)
    }

    /// IDENTIFY_SYSTEM: system identifier, current timeline and flush position.
    pub async fn identify_system(&mut self) -> Result<SystemInfo, ReplError> {
        let command = "IDENTIFY_SYSTEM";
        let row = self.one_row(command).await?;
        let column = |i: usize| row.get(i).cloned().flatten().map(|c| text(&c));
        let parsed = (|| {
            Some(SystemInfo {
                system_identifier: column(0)?.parse().ok()?,
                timeline: TimelineId(column(1)?.parse().ok()?),
                xlogpos: column(2)?.parse().ok()?,
            })
        })();
        parsed.ok_or_else(|| {
            self.conn
                .protocol(format!("{command} row {row:?} does not parse"))
        })
    }

    /// `SHOW wal_segment_size` in bytes.
    pub async fn wal_segment_size(&mut self) -> Result<u64, ReplError> {
        let command = "SHOW wal_segment_size";
        let row = self.one_row(command).await?;
        let value = row
            .first()
            .cloned()
            .flatten()
            .map(|c| text(&c))
            .unwrap_or_default();
        parse_segment_size(&value)
            .ok_or_else(|| self.conn.protocol(format!("{command} gave {value:?}")))
    }

    /// TIMELINE_HISTORY: the history file's name and raw content (errors for timeline 1).
    pub async fn timeline_history(
        &mut self,
        tli: TimelineId,
    ) -> Result<(String, Vec<u8>), ReplError> {
        let command = format!("TIMELINE_HISTORY {}", tli.0);
        let row = self.one_row(&command).await?;
        match row.as_slice() {
            // The content's type OID differs between versions; its bytes are the file either way.
            [Some(name), Some(content)] => Ok((text(name), content.to_vec())),
            _ => Err(self
                .conn
                .protocol(format!("{command} row has {} columns", row.len()))),
        }
    }

    /// Creates a physical slot that reserves WAL at once, in the form PostgreSQL 13-17 accept.
    pub async fn create_physical_slot(&mut self, name: &str) -> Result<(), ReplError> {
        check_slot_name(name)?;
        let command = format!("CREATE_REPLICATION_SLOT \"{name}\" PHYSICAL RESERVE_WAL");
        self.conn.simple_query(&command).await.map(drop)
    }

    /// The slot's restart position, or `None` when there is no such slot.
    ///
    /// On PostgreSQL 15+ this is READ_REPLICATION_SLOT; before, a normal SQL connection made
    /// from the same conninfo reads `pg_replication_slots`.
    pub async fn read_replication_slot(
        &mut self,
        name: &str,
    ) -> Result<Option<SlotInfo>, ReplError> {
        check_slot_name(name)?;
        if self.server_major().is_some_and(|major| major < 15) {
            return read_slot_via_sql(&self.conninfo, name).await;
        }
        let command = format!("READ_REPLICATION_SLOT \"{name}\"");
        let row = self.one_row(&command).await?;
        let column = |i: usize| row.get(i).cloned().flatten().map(|c| text(&c));
        // An unknown slot is one row of NULLs, not an error.
        if column(0).is_none() {
            return Ok(None);
        }
        let restart_lsn = column(1).and_then(|lsn| lsn.parse().ok());
        let restart_tli = column(2).and_then(|tli| tli.parse().ok()).map(TimelineId);
        Ok(Some(SlotInfo {
            restart_lsn,
            restart_tli,
        }))
    }

    /// START_REPLICATION at `start` on `tli`, through `slot` if given; the stream borrows the
    /// connection until it ends (end of timeline or [`ReplicationStream::stop`]).
    pub async fn start_replication(
        &mut self,
        slot: Option<&str>,
        start: Lsn,
        tli: TimelineId,
    ) -> Result<ReplicationStream<'_>, ReplError> {
        let slot_clause = match slot {
            Some(name) => {
                check_slot_name(name)?;
                format!("SLOT \"{name}\" ")
            }
            None => String::new(),
        };
        let command = format!(
            "START_REPLICATION {slot_clause}PHYSICAL {start} TIMELINE {}",
            tli.0
        );
        ReplicationStream::start(&mut self.conn, command, start, tli).await
    }

    async fn one_row(&mut self, command: &str) -> Result<Row, ReplError> {
        let mut rows = self.conn.simple_query(command).await?;
        if rows.len() != 1 {
            return Err(self.conn.protocol(format!(
                "{command} returned {} rows, expected 1",
                rows.len()
            )));
        }
        Ok(rows.swap_remove(0))
    }
}

/// Reads a slot from `pg_replication_slots` on a normal connection: the path for servers
/// before 15, which lack READ_REPLICATION_SLOT; they do not show the slot's timeline.
pub async fn read_slot_via_sql(conninfo: &str, name: &str) -> Result<Option<SlotInfo>, ReplError> {
    check_slot_name(name)?;
    let sql_err = |reason: String| ReplError::Sql {
        slot: name.to_owned(),
        reason,
    };
    let client = crate::pg::sql::connect(conninfo)
        .await
        .map_err(|e| sql_err(e.to_string()))?;
    let row = client
        .query_opt(
            "SELECT restart_lsn::text FROM pg_replication_slots \
             WHERE slot_name = $1 AND slot_type = 'physical'",
            &[&name],
        )
        .await
        .map_err(|e| sql_err(e.to_string()))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let restart_lsn: Option<String> = row.try_get(0).map_err(|e| sql_err(e.to_string()))?;
    let restart_lsn = restart_lsn
        .map(|lsn| lsn.parse::<Lsn>().map_err(|e| sql_err(e.to_string())))
        .transpose()?;
    Ok(Some(SlotInfo {
        restart_lsn,
        restart_tli: None,
    }))
}

fn check_slot_name(name: &str) -> Result<(), ReplError> {
    if messages::valid_slot_name(name) {
        Ok(())
    } else {
        Err(ReplError::InvalidSlotName(name.to_owned()))
    }
}
