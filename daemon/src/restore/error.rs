//! Everything a restore can refuse or fail with, each message naming the backup, LSN, time,
//! path or log it is about, with a `hint:` line when the fix is known.

use std::path::PathBuf;

use crate::crypto::CryptoError;
use crate::pg::bin::BinError;
use crate::repo::RepoError;

/// Why a restore was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The repository could not be read.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// The key-encryption key did not load.
    #[error(transparent)]
    Kek(#[from] CryptoError),
    /// PostgreSQL binaries or their user are not usable.
    #[error(transparent)]
    Bin(#[from] BinError),
    /// The cluster has no repository to restore from.
    #[error("cluster {cluster:?} has no [[cluster.repository]] to restore from")]
    NoRepository {
        /// The cluster.
        cluster: String,
    },
    /// `--repository` names no repository of the cluster.
    #[error("cluster {cluster:?} has no repository named {name:?}; it has: {}", .known.join(", "))]
    UnknownRepository {
        /// The cluster.
        cluster: String,
        /// The name asked for.
        name: String,
        /// The names it has.
        known: Vec<String>,
    },
    /// The repository holds no backup.
    #[error("repository {repository} holds no backup\nhint: run `lifeboat backup` first")]
    NoBackups {
        /// The repository.
        repository: String,
    },
    /// `--backup` names a backup the repository does not hold.
    #[error("backup {id} is not in repository {repository}; it holds: {available}\nhint: `lifeboat list` shows the backups")]
    UnknownBackup {
        /// The id asked for.
        id: String,
        /// The repository.
        repository: String,
        /// The ids it holds.
        available: String,
    },
    /// A target time did not parse.
    #[error("target time {value:?} is not a time ({reason})\nhint: write it like 2026-12-03 17:20:05.123 (UTC) or 2026-12-03T17:20:05+01:00")]
    BadTime {
        /// What was given.
        value: String,
        /// The parser's complaint.
        reason: String,
    },
    /// The target is before anything a backup can restore to.
    #[error("target {target} is before the earliest recoverable {what} {earliest} (the end of the oldest backup, {backup})")]
    BeforeWindow {
        /// The target.
        target: String,
        /// `instant` or `position`.
        what: &'static str,
        /// The earliest instant or LSN.
        earliest: String,
        /// The oldest backup.
        backup: String,
    },
    /// The target is after the newest WAL that can be replayed.
    #[error("target {target} is after the latest recoverable {what} {latest} ({run}){hint}")]
    AfterWindow {
        /// The target.
        target: String,
        /// `instant` or `position`.
        what: &'static str,
        /// The latest instant or LSN.
        latest: String,
        /// The run of WAL: `backup X through WAL 0/5000000 on timeline 1`.
        run: String,
        /// A `\nhint: ...` line, or nothing.
        hint: String,
    },
    /// `--backup` names a backup that ends after the target.
    #[error("target {target} is before the end of backup {backup} ({stop}), the earliest instant it restores to\nhint: pick an older backup with --backup, or leave --backup out")]
    BeforeBackup {
        /// The target.
        target: String,
        /// The backup.
        backup: String,
        /// Its stop time or LSN.
        stop: String,
    },
    /// WAL needed by the chosen backup is missing.
    #[error("the WAL of backup {backup} is not continuous in repository {repository}: {missing} is missing (needed from {from} through {through})\nhint: restore an older backup with --backup, or find the missing segment")]
    WalGap {
        /// The backup.
        backup: String,
        /// The repository.
        repository: String,
        /// The first missing segment.
        missing: String,
        /// Start of the WAL needed.
        from: String,
        /// End of the WAL needed.
        through: String,
    },
    /// WAL is stored past a hole in the run a restore would replay.
    #[error("the WAL in repository {repository} has a gap: {missing} is missing, but later WAL is stored (segment {later}); replaying to the end would silently stop at {end} and drop the rest\nhint: find the missing segment (the source's pg_wal, another repository) and store it with `lifeboat wal-push`; or, to restore up to the gap on purpose, pass --target-lsn or --target-time before {end}")]
    WalBeyondGap {
        /// The repository.
        repository: String,
        /// Where the continuous WAL ends.
        end: String,
        /// The first missing segment.
        missing: String,
        /// The first stored segment past the hole.
        later: String,
    },
    /// The newest timeline does not descend from the backup's.
    #[error("timeline {newest} in repository {repository} does not descend from timeline {timeline} of backup {backup}, and recovery_target_timeline = 'latest' would follow it")]
    Timeline {
        /// The repository.
        repository: String,
        /// The backup.
        backup: String,
        /// The backup's timeline.
        timeline: u32,
        /// The newest timeline found.
        newest: u32,
    },
    /// A chunk the manifest names is in no index.
    #[error("chunk {chunk} of {path} (backup {backup}) is in no index of repository {repository}, or its pack is missing\nhint: restore another backup with --backup (`lifeboat list` shows them); take a new backup, which stores lost chunks again")]
    MissingChunk {
        /// The chunk id.
        chunk: String,
        /// The file.
        path: String,
        /// The backup.
        backup: String,
        /// The repository.
        repository: String,
    },
    /// A `--tablespace-map` entry cannot be used.
    #[error("--tablespace-map {oid}={location}: {reason}")]
    TablespaceMap {
        /// The tablespace OID given.
        oid: u32,
        /// The location given.
        location: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A manifest path would escape the data directory.
    #[error("manifest of backup {backup} holds an unsafe path {path:?}")]
    UnsafePath {
        /// The backup.
        backup: String,
        /// The path.
        path: String,
    },
    /// The restored server's user could not use something restore_command needs.
    #[error("PostgreSQL runs as {user}, and its restore_command needs {what}, but {reason}\nhint: make it readable by {user} (archive_command needs that too)")]
    Unreadable {
        /// The user PostgreSQL runs as.
        user: String,
        /// What it needs.
        what: String,
        /// Why it cannot.
        reason: String,
    },
    /// The destination already holds something.
    #[error("{dir} is not empty\nhint: restore into a new or empty directory")]
    NotEmpty {
        /// The directory.
        dir: PathBuf,
    },
    /// A file system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was attempted.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A restored file does not have the size the manifest says.
    #[error("restored {path} holds {got} bytes but backup {backup} says {want}")]
    SizeMismatch {
        /// The file.
        path: String,
        /// The backup.
        backup: String,
        /// Bytes written.
        got: u64,
        /// Bytes expected.
        want: u64,
    },
    /// PostgreSQL did not start or stopped on its own.
    #[error("PostgreSQL {reason}\n--- last lines of {} ---\n{tail}", .log.display())]
    ServerFailed {
        /// What happened.
        reason: String,
        /// The server log.
        log: PathBuf,
        /// Its last lines.
        tail: String,
    },
    /// Recovery ran out of WAL before the target.
    #[error("recovery ended before the target {target} was reached: the archived WAL holds no {what}\nhint: {hint}\n--- last lines of {} ---\n{tail}", .log.display())]
    TargetNotReached {
        /// The target.
        target: String,
        /// What was not found.
        what: String,
        /// What to do.
        hint: String,
        /// The server log.
        log: PathBuf,
        /// Its last lines.
        tail: String,
    },
    /// The restored server refused our connections.
    #[error("cannot connect to the restored server on {socket_dir} as {users}: {reason}\nhint: the restored pg_hba.conf must let the server's owner connect over the unix socket (e.g. `local all all peer`)")]
    Connect {
        /// The socket directory.
        socket_dir: PathBuf,
        /// The roles tried.
        users: String,
        /// The server's answer.
        reason: String,
    },
    /// Recovery took longer than allowed.
    #[error("recovery did not reach the target {target} within {seconds} s; the server is left running\nhint: watch {} and stop it with pg_ctl stop -D DIR", .log.display())]
    Timeout {
        /// The target.
        target: String,
        /// The limit.
        seconds: u64,
        /// The server log.
        log: PathBuf,
    },
}

impl RestoreError {
    /// Whether trying again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            RestoreError::Repo(e) => e.is_retryable(),
            RestoreError::Io { source, .. } => !matches!(
                source.kind(),
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::NotFound
            ),
            _ => false,
        }
    }

    /// An I/O error constructor for `map_err`.
    pub(crate) fn io(
        op: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> RestoreError {
        let path = path.to_path_buf();
        move |source| RestoreError::Io { op, path, source }
    }
}
