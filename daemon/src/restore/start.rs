//! Starting the restored cluster and waiting until recovery has reached its target.
//!
//! Example: `pg_ctl start -D /srv/restore -W -l /srv/restore/log/restore.log -o "-c
//! 'listen_addresses=127.0.0.1' -c 'unix_socket_directories=/srv/restore' …"` as `postgres`,
//! then a query every 250 ms until `pg_is_in_recovery()` is false (promote),
//! `pg_get_wal_replay_pause_state()` is `paused` (pause), or the server has shut itself down at
//! the target (shutdown).
//!
//! Invariant: a target counts as reached only on the server's own word (a query answer, or its
//! "shutdown at recovery target" log line); a server that exits, a "recovery ended before
//! configured recovery target was reached" line, or the time limit is an error carrying the
//! last lines this start wrote to the log.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::probe::{alive, Answer, PidFile, Probe, Progress};
use super::report::Phase;
use super::settings::sh_quote;
use super::target::{Target, TargetAction};
use super::RestoreError;
use crate::pg::bin::{Owner, PgBin};
use crate::pg::Lsn;

/// How often the server is asked how far it got.
const POLL: Duration = Duration::from_millis(250);

/// How long a server may take to write `postmaster.pid` before it counts as not started.
const PID_GRACE: Duration = Duration::from_secs(60);

/// The longest unix socket path PostgreSQL accepts (`sizeof(sun_path)` minus the NUL).
const MAX_SOCKET_PATH: usize = 107;

/// PostgreSQL's message when the WAL ran out before the target.
const NOT_REACHED: &str = "recovery ended before configured recovery target was reached";

/// PostgreSQL's message when recovery_target_action = shutdown did its job.
const SHUT_DOWN_AT_TARGET: &str = "shutdown at recovery target";

/// What to start and what to wait for.
#[derive(Debug)]
pub struct StartPlan<'a> {
    /// The restored data directory, absolute.
    pub dir: &'a Path,
    /// The server binaries.
    pub bin: &'a PgBin,
    /// The user the server runs as.
    pub owner: &'a Owner,
    /// TCP port on 127.0.0.1, if asked for.
    pub port: Option<u16>,
    /// The recovery target.
    pub target: &'a Target,
    /// The action at the target.
    pub action: TargetAction,
    /// Roles to connect as, in order of preference.
    pub users: Vec<String>,
    /// Give up waiting after this long.
    pub timeout: Duration,
    /// Where replay starts, to count WAL bytes replayed.
    pub redo_from: Lsn,
}

/// What starting found.
#[derive(Debug, Default)]
pub struct Started {
    /// Phases from pg_ctl to ready.
    pub phases: Vec<Phase>,
    /// `pg_last_wal_replay_lsn()` at the target.
    pub replay_lsn: Option<Lsn>,
    /// `pg_last_xact_replay_timestamp()` at the target.
    pub last_commit: Option<DateTime<Utc>>,
    /// The unix socket directory.
    pub socket_dir: PathBuf,
    /// The port the server listens on.
    pub port: Option<u16>,
}

/// Starts the server and waits for the target.
pub async fn start_and_wait(p: &StartPlan<'_>) -> Result<Started, RestoreError> {
    let socket_dir = socket_dir(p.dir, p.owner)?;
    let log = Log::open(p.dir, p.owner)?;

    // Start: pg_ctl without -w, since a shutdown at the target is success, not a failed start.
    let t = Instant::now();
    pg_ctl_start(p, &socket_dir, &log).await?;
    let mut phases = vec![Phase::new("start server", t.elapsed(), None)];

    // Replay: poll until the server says the target is reached.
    let t = Instant::now();
    let probe = Probe {
        dir: p.dir,
        bin: p.bin,
        owner: p.owner,
        socket_dir,
        users: p.users.clone(),
    };
    let (consistent, reached) = wait(p, &probe, &log).await?;
    if let Some(c) = consistent {
        phases.push(Phase::new("consistent (read-only queries)", c, None));
    }
    let replayed = reached
        .as_ref()
        .and_then(|r| r.replay_lsn)
        .map(|l| l.0.saturating_sub(p.redo_from.0));
    phases.push(Phase::new(
        "replay to target",
        t.elapsed() - consistent.unwrap_or_default(),
        replayed,
    ));

    // Ready: a fresh query is answered.
    let mut out = Started {
        port: PidFile::read(p.dir).map(|f| f.port),
        ..Started::default()
    };
    if let Some(progress) = reached {
        let t = Instant::now();
        ready(&probe, &log).await?;
        phases.push(Phase::new("ready (accepting queries)", t.elapsed(), None));
        out.replay_lsn = progress.replay_lsn;
        out.last_commit = progress.last_commit;
    }
    out.phases = phases;
    out.socket_dir = probe.socket_dir;
    Ok(out)
}

/// The data directory itself when its socket path fits and needs no quoting, else a private
/// directory under /tmp.
fn socket_dir(dir: &Path, owner: &Owner) -> Result<PathBuf, RestoreError> {
    let text = dir.to_string_lossy();
    let plain = text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c));
    if plain && text.len() + "/.s.PGSQL.65535".len() <= MAX_SOCKET_PATH {
        return Ok(dir.to_path_buf());
    }
    let tmp = PathBuf::from(format!(
        "/tmp/lifeboat-{}",
        hex::encode(rand::random::<[u8; 6]>())
    ));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&tmp)
        .map_err(RestoreError::io("cannot create socket directory", &tmp))?;
    owner.chown_tree(&tmp)?;
    Ok(tmp)
}

/// `DIR/log/restore.log`, read only from where this start began writing to it.
struct Log {
    path: PathBuf,
    from: u64,
}

impl Log {
    fn open(dir: &Path, owner: &Owner) -> Result<Log, RestoreError> {
        let log_dir = dir.join("log");
        if !log_dir.is_dir() {
            std::fs::create_dir(&log_dir).map_err(RestoreError::io("cannot create", &log_dir))?;
            owner.chown_tree(&log_dir)?;
        }
        let path = log_dir.join("restore.log");
        let from = std::fs::metadata(&path).map_or(0, |m| m.len());
        Ok(Log { path, from })
    }

    /// What this start wrote so far.
    fn text(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.path) {
            let mut bytes = Vec::new();
            if f.seek(SeekFrom::Start(self.from))
                .and_then(|_| f.read_to_end(&mut bytes))
                .is_ok()
            {
                text = String::from_utf8_lossy(&bytes).into_owned();
            }
        }
        text
    }

    fn tail(&self) -> String {
        let text = self.text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(25)..].join("\n")
    }

    fn failed(&self, reason: &str) -> RestoreError {
        RestoreError::ServerFailed {
            reason: reason.into(),
            log: self.path.clone(),
            tail: self.tail(),
        }
    }
}

/// Run-time settings for this start only (they go to `postmaster.opts`, not the config):
/// a private socket, TCP only on 127.0.0.1 and only with a port, the log where we read it,
/// and hot standby so progress can be queried.
fn server_options(socket_dir: &Path, tcp: bool) -> String {
    let listen = if tcp {
        "listen_addresses=127.0.0.1"
    } else {
        "listen_addresses="
    };
    let sockets = format!("unix_socket_directories={}", socket_dir.display());
    [
        listen,
        &sockets,
        "logging_collector=off",
        "log_destination=stderr",
        "hot_standby=on",
    ]
    .iter()
    .map(|s| format!("-c {}", sh_quote(s)))
    .collect::<Vec<_>>()
    .join(" ")
}

async fn pg_ctl_start(p: &StartPlan<'_>, socket_dir: &Path, log: &Log) -> Result<(), RestoreError> {
    let pg_ctl = p.bin.tool("pg_ctl");
    let mut cmd = Command::new(&pg_ctl);
    cmd.arg("start")
        .arg("-D")
        .arg(p.dir)
        .arg("-W")
        .arg("-l")
        .arg(&log.path);
    cmd.arg("-o")
        .arg(server_options(socket_dir, p.port.is_some()));
    cmd.current_dir(p.dir).stdin(Stdio::null());
    p.owner.apply(&mut cmd);
    tracing::info!(dir = %p.dir.display(), user = %p.owner.name, "starting PostgreSQL");
    let out = tokio::process::Command::from(cmd)
        .output()
        .await
        .map_err(RestoreError::io("cannot run", &pg_ctl))?;
    if out.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&out.stderr).trim().to_string();
    Err(log.failed(&format!("did not start: pg_ctl {} ({said})", out.status)))
}

/// Waits for the target; returns how long consistency took, if it was seen, and the progress
/// at the target (`None` after a shutdown at the target).
async fn wait(
    p: &StartPlan<'_>,
    probe: &Probe<'_>,
    log: &Log,
) -> Result<(Option<Duration>, Option<Progress>), RestoreError> {
    let started = Instant::now();
    // Without a target PostgreSQL replays everything and promotes; the action does not apply.
    let action = if p.target.has_action() {
        p.action
    } else {
        TargetAction::Promote
    };
    let mut seen_pid = None;
    let mut consistent = None;
    let mut refused = Vec::new();
    loop {
        tokio::time::sleep(POLL).await;
        if log.text().contains(NOT_REACHED) {
            return Err(not_reached(p.target, log));
        }
        match PidFile::read(p.dir) {
            Some(f) if alive(f.pid) => seen_pid = Some(f.pid),
            None if seen_pid.is_some_and(alive) => {}
            None if seen_pid.is_none() && started.elapsed() < PID_GRACE => continue,
            _ => return exited(action, p.target, log).map(|()| (consistent, None)),
        }
        if started.elapsed() > p.timeout {
            let (target, log) = (p.target.to_string(), log.path.clone());
            return Err(RestoreError::Timeout {
                target,
                seconds: p.timeout.as_secs(),
                log,
            });
        }
        if action == TargetAction::Shutdown {
            continue;
        }
        let Some(progress) = probe.progress(&mut refused).await? else {
            continue;
        };
        consistent.get_or_insert(started.elapsed());
        let reached = match action {
            TargetAction::Promote => !progress.in_recovery,
            _ => progress.pause_state == "paused",
        };
        if reached {
            return Ok((consistent, Some(progress)));
        }
    }
}

/// The server is gone: success only for a shutdown at the target.
fn exited(action: TargetAction, target: &Target, log: &Log) -> Result<(), RestoreError> {
    let text = log.text();
    if text.contains(NOT_REACHED) {
        return Err(not_reached(target, log));
    }
    if action == TargetAction::Shutdown && text.contains(SHUT_DOWN_AT_TARGET) {
        return Ok(());
    }
    Err(log.failed("exited before reaching the recovery target"))
}

/// Confirms the server answers a fresh query after the target.
async fn ready(probe: &Probe<'_>, log: &Log) -> Result<(), RestoreError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for user in &probe.users {
            if let Answer::Rows(_) = probe.psql(user, "SELECT 1").await? {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(log.failed("reached the target but stopped answering queries"));
        }
        tokio::time::sleep(POLL).await;
    }
}

fn not_reached(target: &Target, log: &Log) -> RestoreError {
    let (what, hint) = match target {
        Target::Time(_) => (
            "commit after the target time",
            "pick an earlier time, or restore without a target (latest)",
        ),
        Target::Xid(_) => (
            "commit of that transaction after the backup",
            "check the xid; if it committed before the backup ended, pick an older backup with --backup",
        ),
        Target::Name(_) => (
            "restore point of that name after the backup",
            "check the name; if the point was made before the backup ended, pick an older backup with --backup",
        ),
        Target::Lsn(_) => ("record at or after that LSN", "pick an earlier LSN, or restore without a target (latest)"),
        Target::Latest | Target::Immediate => ("consistent state", "the backup's WAL is incomplete; run `lifeboat list`"),
    };
    RestoreError::TargetNotReached {
        target: target.to_string(),
        what: what.into(),
        hint: hint.into(),
        log: log.path.clone(),
        tail: log.tail(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_go_where_their_path_fits() {
        let me = Owner::current().unwrap();
        assert_eq!(
            socket_dir(Path::new("/srv/restore"), &me).unwrap(),
            PathBuf::from("/srv/restore")
        );
        let long = PathBuf::from(format!("/srv/{}", "x".repeat(90)));
        let tmp = socket_dir(&long, &me).unwrap();
        assert!(
            tmp.to_string_lossy().starts_with("/tmp/lifeboat-"),
            "{tmp:?}"
        );
        std::fs::remove_dir(tmp).unwrap();
        let opts = server_options(Path::new("/srv/restore"), false);
        assert_eq!(opts.split(" -c ").next(), Some("-c listen_addresses="));
        assert!(opts.contains("unix_socket_directories=/srv/restore"));
    }

    #[test]
    fn only_what_this_start_logged_counts() {
        let dir = tempfile::tempdir().unwrap();
        let me = Owner::current().unwrap();
        std::fs::create_dir(dir.path().join("log")).unwrap();
        std::fs::write(
            dir.path().join("log/restore.log"),
            format!("old: FATAL: {NOT_REACHED}\n"),
        )
        .unwrap();
        let log = Log::open(dir.path(), &me).unwrap();
        assert_eq!(log.text(), "");
        std::fs::write(
            dir.path().join("log/restore.log"),
            format!("old: FATAL: {NOT_REACHED}\nLOG: {SHUT_DOWN_AT_TARGET}\n"),
        )
        .unwrap();
        assert!(exited(TargetAction::Shutdown, &Target::Immediate, &log).is_ok());
        let err = exited(TargetAction::Promote, &Target::Immediate, &log)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("exited before reaching") && err.contains(SHUT_DOWN_AT_TARGET),
            "{err}"
        );
    }
}
