//! Asking a restored server how far recovery got: `postmaster.pid` for whether it runs and
//! accepts connections, and `psql` run as the server's owner (so `peer` authentication works
//! as it does for the owner at a shell) for the replay position and pause state.
//!
//! Example: `postmaster.pid` line 8 reads `standby` once the copy is consistent; then
//! `SELECT pg_is_in_recovery(), …` answers `t|paused|0/A183958|1796319871300717`.
//!
//! Invariant: no query is sent before the server says it accepts connections, so polling leaves
//! no "the database system is starting up" lines in the log it is watched through.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

use super::RestoreError;
use crate::pg::bin::{Owner, PgBin};
use crate::pg::Lsn;

/// What `postmaster.pid` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PidFile {
    /// The postmaster's process id (line 1).
    pub pid: i32,
    /// Its port (line 4).
    pub port: u16,
    /// Its state (line 8): `starting`, `standby`, `ready`, `stopping`.
    pub status: String,
}

impl PidFile {
    /// Reads `dir/postmaster.pid`; `None` when absent or not yet complete.
    pub fn read(dir: &Path) -> Option<PidFile> {
        let text = std::fs::read_to_string(dir.join("postmaster.pid")).ok()?;
        let lines: Vec<&str> = text.lines().collect();
        let pid = lines.first()?.trim().parse().ok()?;
        let port = lines.get(3)?.trim().parse().ok()?;
        let status = lines.get(7).map_or("", |s| s.trim()).to_string();
        Some(PidFile { pid, port, status })
    }

    /// Whether it accepts connections (read-only ones count).
    pub fn accepting(&self) -> bool {
        self.status == "ready" || self.status == "standby"
    }
}

/// Whether process `pid` exists.
pub fn alive(pid: i32) -> bool {
    matches!(kill(Pid::from_raw(pid), None), Ok(()) | Err(Errno::EPERM))
}

/// One answer to the progress query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// `pg_is_in_recovery()`.
    pub in_recovery: bool,
    /// `pg_get_wal_replay_pause_state()`, `''` once promoted.
    pub pause_state: String,
    /// `pg_last_wal_replay_lsn()`.
    pub replay_lsn: Option<Lsn>,
    /// `pg_last_xact_replay_timestamp()`.
    pub last_commit: Option<DateTime<Utc>>,
}

/// What one psql run said.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// The query's output.
    Rows(String),
    /// Not answering yet (starting, socket absent, timed out).
    NotYet,
    /// This role was refused, with the server's words.
    Refused(String),
}

/// Queries one restored server.
#[derive(Debug)]
pub struct Probe<'a> {
    /// Its data directory.
    pub dir: &'a Path,
    /// Its binaries (`psql`).
    pub bin: &'a PgBin,
    /// The user it runs as, and psql with it.
    pub owner: &'a Owner,
    /// Its unix socket directory.
    pub socket_dir: PathBuf,
    /// Roles to try, in order.
    pub users: Vec<String>,
}

impl Probe<'_> {
    /// The progress query for this major version.
    fn progress_sql(&self) -> String {
        let pause = if self.bin.major >= 14 {
            "pg_get_wal_replay_pause_state()"
        } else {
            "CASE WHEN pg_is_wal_replay_paused() THEN 'paused' ELSE 'not paused' END"
        };
        format!(
            "SELECT pg_is_in_recovery(), CASE WHEN pg_is_in_recovery() THEN {pause} ELSE '' END, \
             coalesce(pg_last_wal_replay_lsn()::text, ''), \
             coalesce((extract(epoch FROM pg_last_xact_replay_timestamp()) * 1000000)::int8::text, '')"
        )
    }

    /// Asks for progress as the first role let in; `None` while the server is not answering.
    /// Roles refused are remembered in `refused`; when all are, that is an error.
    pub async fn progress(
        &self,
        refused: &mut Vec<(String, String)>,
    ) -> Result<Option<Progress>, RestoreError> {
        let sql = self.progress_sql();
        for user in &self.users {
            if refused.iter().any(|(u, _)| u == user) {
                continue;
            }
            match self.psql(user, &sql).await? {
                Answer::Rows(text) => return Ok(parse_progress(&text)),
                Answer::NotYet => return Ok(None),
                Answer::Refused(why) => refused.push((user.clone(), why)),
            }
        }
        if refused.len() < self.users.len() {
            return Ok(None);
        }
        let reason: Vec<&str> = refused.iter().map(|(_, why)| why.as_str()).collect();
        Err(RestoreError::Connect {
            socket_dir: self.socket_dir.clone(),
            users: self.users.join(", "),
            reason: reason.join("; "),
        })
    }

    /// Runs `sql` as `user` over the unix socket.
    pub async fn psql(&self, user: &str, sql: &str) -> Result<Answer, RestoreError> {
        let Some(pid_file) = PidFile::read(self.dir).filter(PidFile::accepting) else {
            return Ok(Answer::NotYet);
        };
        let psql = self.bin.tool("psql");
        let mut cmd = Command::new(&psql);
        cmd.args([
            "-X",
            "-A",
            "-t",
            "-q",
            "-F",
            "|",
            "-d",
            "template1",
            "-U",
            user,
        ]);
        cmd.arg("-p")
            .arg(pid_file.port.to_string())
            .arg("-h")
            .arg(&self.socket_dir);
        cmd.arg("-c").arg(sql).env("PGCONNECT_TIMEOUT", "10");
        cmd.current_dir(self.dir).stdin(Stdio::null());
        self.owner.apply(&mut cmd);
        let run = tokio::process::Command::from(cmd)
            .kill_on_drop(true)
            .output();
        let out = match tokio::time::timeout(Duration::from_secs(30), run).await {
            Ok(out) => out.map_err(RestoreError::io("cannot run", &psql))?,
            Err(_) => return Ok(Answer::NotYet),
        };
        if out.status.success() {
            return Ok(Answer::Rows(
                String::from_utf8_lossy(&out.stdout).trim().to_string(),
            ));
        }
        Ok(classify(&String::from_utf8_lossy(&out.stderr)))
    }
}

/// Tells "not yet" (starting up, socket absent) from a refusal of this role.
pub fn classify(stderr: &str) -> Answer {
    const REFUSED: [&str; 4] = [
        "authentication failed",
        "no pg_hba.conf entry",
        "does not exist",
        "permission denied",
    ];
    let line = stderr
        .lines()
        .find(|l| l.contains("FATAL"))
        .unwrap_or(stderr)
        .trim();
    if REFUSED.iter().any(|r| line.contains(r)) {
        Answer::Refused(line.to_string())
    } else {
        Answer::NotYet
    }
}

/// Parses `t|paused|0/5000000|1796318405123456`.
pub fn parse_progress(text: &str) -> Option<Progress> {
    let mut f = text.lines().next()?.split('|');
    let in_recovery = f.next()? == "t";
    let pause_state = f.next()?.to_string();
    let replay_lsn = f.next()?.parse().ok();
    let last_commit = f
        .next()?
        .parse()
        .ok()
        .and_then(|us| Utc.timestamp_micros(us).single());
    Some(Progress {
        in_recovery,
        pause_state,
        replay_lsn,
        last_commit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_rows_parse() {
        let p = parse_progress("t|paused|0/5000000|1796318405123456").unwrap();
        assert!(p.in_recovery && p.pause_state == "paused");
        assert_eq!(p.replay_lsn, Some(Lsn(0x5000000)));
        assert_eq!(p.last_commit.unwrap().timestamp_micros(), 1796318405123456);
        let p = parse_progress("f||0/6000028|").unwrap();
        assert!(!p.in_recovery && p.last_commit.is_none());
        assert_eq!(parse_progress(""), None);
    }

    #[test]
    fn refusals_are_told_from_a_server_still_starting() {
        let starting = "psql: error: connection to server on socket \"/x/.s.PGSQL.5433\" failed: \
                        FATAL:  the database system is starting up";
        assert_eq!(classify(starting), Answer::NotYet);
        assert_eq!(
            classify("psql: error: ... No such file or directory"),
            Answer::NotYet
        );
        let peer = "psql: error: connection to server ... failed: FATAL:  Peer authentication \
                    failed for user \"lifeboat\"";
        assert!(matches!(classify(peer), Answer::Refused(_)));
    }

    #[test]
    fn pid_files_parse() {
        let dir = tempfile::tempdir().unwrap();
        let text =
            "4242\n/srv/restore\n1796318405\n5433\n/srv/restore\n127.0.0.1\n  1234\nstandby \n";
        std::fs::write(dir.path().join("postmaster.pid"), text).unwrap();
        let p = PidFile::read(dir.path()).unwrap();
        assert_eq!((p.pid, p.port, p.status.as_str()), (4242, 5433, "standby"));
        assert!(p.accepting());
        std::fs::write(dir.path().join("postmaster.pid"), "4242\n/srv/restore\n").unwrap();
        assert_eq!(PidFile::read(dir.path()), None);
    }
}
