//! Errors of the replication client, each naming the server (`host:port` or socket directory and
//! port) and the command, which carries the slot and LSN involved.
//!
//! Example: `START_REPLICATION SLOT "lifeboat" PHYSICAL 0/1000000 TIMELINE 1 on /run/pg:5432:
//! WAL was removed: requested WAL segment 000000010000000000000001 has already been removed`.
//!
//! Invariant: only failures that a reconnect can cure are retryable; a removed WAL segment, a
//! fork the server does not know or a rejected password must reach a person or a new base backup.

use std::io;

use crate::pg::Lsn;

use super::messages::ServerMessage;

/// SQLSTATE of a removed WAL segment (`ERRCODE_UNDEFINED_FILE`).
pub const WAL_REMOVED: &str = "58P01";

/// SQLSTATE of a slot that already exists (`ERRCODE_DUPLICATE_OBJECT`).
pub const DUPLICATE_OBJECT: &str = "42710";

/// A failure of the replication client.
#[derive(Debug, thiserror::Error)]
pub enum ReplError {
    /// The conninfo cannot be used.
    #[error("conninfo {conninfo:?} is invalid: {reason}")]
    Conninfo {
        /// The string (configs hold no password).
        conninfo: String,
        /// Why.
        reason: String,
    },
    /// The conninfo asks for TLS, which this client does not speak yet.
    #[error("conninfo asks for sslmode={sslmode}, but TLS replication connections are not supported yet\nhint: use a unix socket or sslmode=disable/prefer on a trusted network")]
    TlsUnsupported {
        /// The requested mode.
        sslmode: String,
    },
    /// The socket could not be opened or broke.
    #[error("connection to {server} failed: {source}")]
    Io {
        /// Where.
        server: String,
        /// Why.
        source: io::Error,
    },
    /// The server closed the connection.
    #[error("connection to {server} closed by the server")]
    Closed {
        /// Where.
        server: String,
    },
    /// The server refused the credentials, or asked for an unsupported method.
    #[error("authentication as {user} to {server} failed: {reason}\nhint: check pg_hba.conf has a `replication` line for this user and that the role has REPLICATION")]
    Auth {
        /// Where.
        server: String,
        /// The role.
        user: String,
        /// Why.
        reason: String,
    },
    /// The slot name breaks PostgreSQL's rule.
    #[error("slot name {0:?} is invalid: use 1-63 lowercase letters, digits and underscores")]
    InvalidSlotName(String),
    /// CREATE_REPLICATION_SLOT found the slot already there.
    #[error("{command} on {server}: the slot already exists")]
    SlotExists {
        /// Where.
        server: String,
        /// The command, naming the slot.
        command: String,
    },
    /// The server no longer has the WAL asked for (58P01): a gap unless another copy exists.
    #[error("{command} on {server}: WAL was removed: {message}\nhint: the archive has a gap from here; take a new base backup")]
    WalRemoved {
        /// Where.
        server: String,
        /// The command, naming slot, LSN and timeline.
        command: String,
        /// The server's message, naming the segment.
        message: String,
    },
    /// The start point is past the point where the requested timeline forked on this server.
    #[error("{command} on {server}: {message} ({detail})\nhint: the server was promoted; fetch its timeline history and follow the new timeline")]
    NotInHistory {
        /// Where.
        server: String,
        /// The command.
        command: String,
        /// The server's message.
        message: String,
        /// The server's DETAIL, naming the fork point.
        detail: String,
    },
    /// Any other error the server reported.
    #[error("{command} on {server}: {} {}: {}{}", .error.severity, .error.code, .error.message, detail_suffix(.error))]
    Server {
        /// Where.
        server: String,
        /// The command.
        command: String,
        /// The server's report.
        error: Box<ServerMessage>,
    },
    /// The server sent something this client does not expect.
    #[error("{server}: protocol error: {reason}")]
    Protocol {
        /// Where.
        server: String,
        /// What was wrong.
        reason: String,
    },
    /// An XLogData message did not start where the previous one ended.
    #[error("{server}: WAL stream jumped: expected data at {expected}, got {got}")]
    Discontinuity {
        /// Where.
        server: String,
        /// The end of the bytes received so far.
        expected: Lsn,
        /// Where the new message starts.
        got: Lsn,
    },
    /// The SQL fallback for READ_REPLICATION_SLOT before PostgreSQL 15 failed.
    #[error("reading slot {slot} from pg_replication_slots failed: {reason}")]
    Sql {
        /// The slot.
        slot: String,
        /// Why.
        reason: String,
    },
}

impl ReplError {
    /// Whether reconnecting and repeating the command can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ReplError::Io { .. } | ReplError::Closed { .. } | ReplError::Discontinuity { .. } => {
                true
            }
            ReplError::Server { error, .. } => retryable_sqlstate(&error.code),
            ReplError::Sql { .. } => true,
            ReplError::Conninfo { .. }
            | ReplError::TlsUnsupported { .. }
            | ReplError::Auth { .. }
            | ReplError::InvalidSlotName(_)
            | ReplError::SlotExists { .. }
            | ReplError::WalRemoved { .. }
            | ReplError::NotInHistory { .. }
            | ReplError::Protocol { .. } => false,
        }
    }

    /// Classifies an ErrorResponse to `command`.
    pub(crate) fn from_server(server: &str, command: &str, error: ServerMessage) -> ReplError {
        let server = server.to_owned();
        let command = command.to_owned();
        // 58P01 is any missing file (a history file too); only a stream's is removed WAL.
        if error.code == WAL_REMOVED && command.starts_with("START_REPLICATION") {
            return ReplError::WalRemoved {
                server,
                command,
                message: error.message,
            };
        }
        if error.code == DUPLICATE_OBJECT && command.starts_with("CREATE_REPLICATION_SLOT") {
            return ReplError::SlotExists { server, command };
        }
        if error.message.contains("not in this server's history") {
            return ReplError::NotInHistory {
                server,
                command,
                message: error.message,
                detail: error.detail.unwrap_or_default(),
            };
        }
        ReplError::Server {
            server,
            command,
            error: Box::new(error),
        }
    }
}

/// Connection exceptions (08), resource shortages such as too many walsenders (53) and operator
/// intervention such as a shutdown (57) pass; everything else needs a change first.
fn retryable_sqlstate(code: &str) -> bool {
    ["08", "53", "57"]
        .iter()
        .any(|class| code.starts_with(class))
}

fn detail_suffix(error: &ServerMessage) -> String {
    match &error.detail {
        Some(detail) => format!(" ({detail})"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_error(code: &str, message: &str) -> ServerMessage {
        ServerMessage {
            severity: "ERROR".into(),
            code: code.into(),
            message: message.into(),
            detail: Some("forked from timeline 1 at 0/4031038".into()),
        }
    }

    #[test]
    fn server_errors_get_their_kinds() {
        let start = "START_REPLICATION 0/1000000 TIMELINE 1";
        let removed = ReplError::from_server("h:5432", start, server_error("58P01", "gone"));
        assert!(matches!(removed, ReplError::WalRemoved { .. }));
        assert!(!removed.is_retryable());
        let history = ReplError::from_server(
            "h:5432",
            "TIMELINE_HISTORY 1",
            server_error("58P01", "no file"),
        );
        assert!(matches!(history, ReplError::Server { .. }));
        let slot = server_error("42710", "replication slot \"s\" already exists");
        let exists = ReplError::from_server("h:5432", "CREATE_REPLICATION_SLOT \"s\"", slot);
        assert!(matches!(exists, ReplError::SlotExists { .. }));
        let fork = server_error(
            "XX000",
            "requested starting point 0/5000000 on timeline 1 is not in this server's history",
        );
        let fork = ReplError::from_server("h:5432", "START", fork);
        assert!(matches!(fork, ReplError::NotInHistory { .. }));
        assert!(fork
            .to_string()
            .contains("forked from timeline 1 at 0/4031038"));
        let shutdown = ReplError::from_server("h:5432", "START", server_error("57P01", "bye"));
        assert!(shutdown.is_retryable());
        let closed = ReplError::Closed {
            server: "h:5432".into(),
        };
        assert!(closed.is_retryable());
    }
}
