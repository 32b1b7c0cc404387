//! The backup session: a non-exclusive SQL backup held open on one connection from start to
//! stop. PostgreSQL aborts the backup if that connection drops, so it is never pooled, and its
//! statement and idle timeouts are switched off first.
//!
//! 15+: `pg_backup_start(label, fast)` / `pg_backup_stop(false)`; 13-14:
//! `pg_start_backup(label, fast, false)` / `pg_stop_backup(false, false)`. The third argument of
//! `pg_start_backup` must be false: the default is an exclusive backup whose label lives in
//! PGDATA, which the copy then excludes, and the restore silently corrupts.

use tokio_postgres::Client;

use super::BackupError;
use crate::pg::Lsn;

/// A started backup.
pub struct Session<'a> {
    client: &'a Client,
    major: u32,
    /// Where the backup's WAL starts.
    pub start_lsn: Lsn,
}

/// What `pg_backup_stop` returned.
#[derive(Debug)]
pub struct Stopped {
    /// End of the backup-end record: recovery is consistent from here.
    pub stop_lsn: Lsn,
    /// `backup_label`, byte for byte.
    pub label_file: String,
    /// `tablespace_map`, if not empty.
    pub tablespace_map: Option<String>,
}

fn query_err(what: &str) -> impl FnOnce(tokio_postgres::Error) -> BackupError + '_ {
    move |source| {
        BackupError::Sql(crate::pg::sql::SqlError::Query {
            what: what.into(),
            source,
        })
    }
}

impl<'a> Session<'a> {
    /// Starts a backup with an immediate checkpoint.
    pub async fn start(
        client: &'a Client,
        major: u32,
        label: &str,
    ) -> Result<Session<'a>, BackupError> {
        client
            .batch_execute("SET statement_timeout = 0; SET lock_timeout = 0")
            .await
            .map_err(query_err("switching off session timeouts"))?;
        if major >= 14 {
            client
                .batch_execute("SET idle_session_timeout = 0")
                .await
                .map_err(query_err("switching off idle_session_timeout"))?;
        }
        let sql = if major >= 15 {
            "SELECT pg_backup_start($1, true)::text"
        } else {
            "SELECT pg_start_backup($1, true, false)::text"
        };
        let row = client
            .query_one(sql, &[&label])
            .await
            .map_err(query_err("starting the backup"))?;
        let start: String = row.get(0);
        let start_lsn = start
            .parse()
            .map_err(|e| BackupError::Protocol(format!("backup start returned {e}")))?;
        Ok(Session {
            client,
            major,
            start_lsn,
        })
    }

    /// Stops the backup without waiting for archiving; Lifeboat waits for the WAL itself.
    pub async fn stop(self) -> Result<Stopped, BackupError> {
        let sql = if self.major >= 15 {
            "SELECT lsn::text, labelfile, spcmapfile FROM pg_backup_stop(false)"
        } else {
            "SELECT lsn::text, labelfile, spcmapfile FROM pg_stop_backup(false, false)"
        };
        let row = self
            .client
            .query_one(sql, &[])
            .await
            .map_err(query_err("stopping the backup"))?;
        let stop: String = row.get(0);
        let map: Option<String> = row.get(2);
        Ok(Stopped {
            stop_lsn: stop
                .parse()
                .map_err(|e| BackupError::Protocol(format!("backup stop returned {e}")))?,
            label_file: row.get(1),
            tablespace_map: map.filter(|m| !m.is_empty()),
        })
    }
}

/// The timeline named by `START TIMELINE:` in a backup label.
pub fn label_timeline(label: &str) -> Option<u32> {
    label
        .lines()
        .find_map(|l| l.strip_prefix("START TIMELINE:"))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_timeline_from_a_label() {
        let label = "START WAL LOCATION: 0/8000028 (file 000000010000000000000008)\n\
                     CHECKPOINT LOCATION: 0/8000060\nSTART TIMELINE: 3\n";
        assert_eq!(label_timeline(label), Some(3));
        assert_eq!(label_timeline("LABEL: x\n"), None);
    }
}
