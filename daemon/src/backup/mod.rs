//! Base backups: a non-exclusive SQL backup on a held session, the data directory walked with
//! PostgreSQL's exclusions, files cut into 1 MiB page-aligned chunks stored once per
//! repository, and the backup committed by a manifest written last.
//!
//! Invariant: the manifest is written only after every pack and index it needs, after
//! `pg_backup_stop`, and after the WAL from the start to the stop position is durable in the
//! repository. An interrupted backup leaves only unreferenced packs, never a manifest.
//! A repository with `required = false` that fails is logged at ERROR and gets no manifest;
//! the backup succeeds when every required repository has its manifest.

pub mod copy;
pub mod session;
pub mod sink;
pub mod wait;
pub mod walk;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::Utc;

use crate::config::{ClusterConfig, Config, RepositoryConfig};
use crate::crypto::kek::Kek;
use crate::pg::sql::{self, ServerFacts, SqlError};
use crate::pg::{Lsn, TimelineId};
use crate::repo::manifest::{BackupId, Entry, EntryKind, Manifest};
use crate::repo::{storage_for, RepoError, Repository};
use copy::{copy_file, PageCheck};
use sink::Sink;
use walk::{Walk, WalkEntry, WalkKind};

/// Files are cut at these page-aligned offsets.
pub const CHUNK_SIZE: u64 = 1 << 20;

/// Options of one backup run.
#[derive(Debug, Clone, Default)]
pub struct BackupOptions {
    /// Label given to PostgreSQL; defaults to `lifeboat <backup id>`.
    pub label: Option<String>,
}

/// Why a backup failed. Nothing it wrote is referenced until its manifest exists.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Talking to PostgreSQL failed.
    #[error(transparent)]
    Sql(#[from] SqlError),
    /// The repository failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// The key-encryption key did not load.
    #[error(transparent)]
    Crypto(#[from] crate::crypto::CryptoError),
    /// Walking the data directory failed.
    #[error(transparent)]
    Walk(#[from] walk::WalkError),
    /// A data file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The server and the repository disagree about which database this is.
    #[error("{0}")]
    Mismatch(String),
    /// PostgreSQL answered something unexpected.
    #[error("unexpected answer from PostgreSQL: {0}")]
    Protocol(String),
    /// The backup's WAL did not arrive in time.
    #[error("WAL through {stop} did not reach repository {repository} within {}: segment {segment} is missing\nhint: in archive mode, check that archive_command runs `lifeboat wal-push` and succeeds (see the PostgreSQL log); in stream mode, that `lifeboat daemon` is running and streaming; then run the backup again", humantime::format_duration(*waited))]
    WalTimeout {
        /// The repository.
        repository: String,
        /// The first missing segment.
        segment: String,
        /// The stop position.
        stop: Lsn,
        /// How long we waited.
        waited: Duration,
    },
}

/// Takes one base backup of `cluster` into each of its repositories.
pub async fn run(
    _config: &Config,
    cluster: &ClusterConfig,
    opts: &BackupOptions,
) -> Result<Manifest, BackupError> {
    let began = Instant::now();
    let kek = cluster.kek.load()?;
    let repos = open_repositories(cluster, &kek).await?;
    let client = sql::connect(&cluster.conninfo).await?;
    let facts = sql::server_facts(&client).await?;
    check_identity(cluster, &facts, &repos)?;
    let backup_id = fresh_id(&repos).await?;
    let label = opts
        .label
        .clone()
        .unwrap_or_else(|| format!("lifeboat {backup_id}"));
    let span = tracing::info_span!("backup", backup_id = %backup_id);
    let _enter = span.enter();

    // start: a non-exclusive backup on this held session
    let start_time = Utc::now();
    let session = session::Session::start(&client, facts.major(), &label).await?;
    let start_lsn = session.start_lsn;
    tracing::info!(%start_lsn, "backup started");

    // walk: the data directory and tablespaces, with PostgreSQL's exclusions
    let walked = walk::walk(&cluster.pgdata)?;

    // copy: every file into every repository, pg_control last
    let mut sinks = Vec::new();
    for repo in repos {
        let required = config_of(cluster, &repo.name).is_none_or(|rc| rc.required);
        let name = repo.name.clone();
        match Sink::open(repo, cluster.backup.compress_level, required).await {
            Ok(sink) => sinks.push(sink),
            Err(e) if required => return Err(e),
            Err(e) => tracing::error!(repository = %name, error = %e,
                "non-required repository left out of this backup"),
        }
    }
    let check = facts.data_checksums.then_some(start_lsn);
    let copied = copy_all(&cluster.pgdata, &walked, check, &mut sinks).await?;

    // stop: PostgreSQL writes the backup-end record and switches segments
    let stopped = session.stop().await?;
    let stop_time = Utc::now();
    let tli = session::label_timeline(&stopped.label_file)
        .map(TimelineId)
        .ok_or_else(|| BackupError::Protocol("backup label has no START TIMELINE".into()))?;
    tracing::info!(stop_lsn = %stopped.stop_lsn, timeline = %tli, "backup stopped");

    // wait: the WAL from start to stop must be in each repository before the backup counts there
    for sink in sinks.iter_mut().filter(|s| !s.is_failed()) {
        let waited = wait::wait_for_wal(
            &sink.repo,
            tli,
            start_lsn,
            stopped.stop_lsn,
            cluster.backup.wal_timeout,
        )
        .await;
        if let Err(e) = waited {
            sink.fail(e)?;
        }
    }

    // commit: packs and index first, the manifest last
    let mut manifest = None;
    for (i, sink) in sinks.iter_mut().enumerate() {
        if sink.is_failed() {
            continue;
        }
        if let Err(e) = sink.finish().await {
            sink.fail(e)?;
            continue;
        }
        let mut stats = std::mem::take(&mut sink.stats);
        stats.files = copied.files;
        stats.bytes_read = copied.bytes_read;
        stats.seconds = began.elapsed().as_secs_f64();
        let m = Manifest {
            format: 1,
            backup_id: backup_id.clone(),
            label: label.clone(),
            system_identifier: facts.system_identifier.to_string(),
            pg_version_num: facts.version_num,
            timeline: tli,
            start_lsn,
            stop_lsn: stopped.stop_lsn,
            start_time,
            stop_time,
            wal_segment_size: facts.wal_segment_size,
            chunk_size: CHUNK_SIZE,
            data_checksums: facts.data_checksums,
            backup_label: stopped.label_file.clone(),
            tablespace_map: stopped.tablespace_map.clone(),
            entries: copied.entries_for(i),
            checksum_failures: copied.bad_blocks.clone(),
            stats,
            residency_zone: cluster.residency.map(|z| z.to_string()),
            region: config_of(cluster, &sink.repo.name).and_then(|rc| rc.region.clone()),
        };
        if let Err(e) = sink.repo.put_manifest(&m).await {
            sink.fail(e.into())?;
            continue;
        }
        tracing::info!(repository = %sink.repo.name, bytes_read = m.stats.bytes_read,
            bytes_new = m.stats.bytes_new, bytes_stored = m.stats.bytes_stored,
            seconds = m.stats.seconds, "backup committed");
        manifest.get_or_insert(m);
    }
    Ok(manifest.expect("a cluster has at least one required repository"))
}

/// Opens every repository in configuration order; a non-required one that does not open is
/// logged at ERROR and left out.
async fn open_repositories(
    cluster: &ClusterConfig,
    kek: &Kek,
) -> Result<Vec<Repository>, BackupError> {
    let mut out = Vec::new();
    for rc in &cluster.repositories {
        match Repository::open(&rc.name, storage_for(rc), kek).await {
            Ok(repo) => out.push(repo),
            Err(e) if rc.required => return Err(e.into()),
            Err(e) => tracing::error!(repository = %rc.name, error = %e,
                "non-required repository does not open; this backup leaves it out"),
        }
    }
    Ok(out)
}

/// The configuration of the repository called `name`.
fn config_of<'a>(cluster: &'a ClusterConfig, name: &str) -> Option<&'a RepositoryConfig> {
    cluster.repositories.iter().find(|rc| rc.name == name)
}

/// Refuses a server that is not the database the repositories were made for.
fn check_identity(
    cluster: &ClusterConfig,
    facts: &ServerFacts,
    repos: &[Repository],
) -> Result<(), BackupError> {
    for r in repos {
        if r.info.system_identifier != facts.system_identifier.to_string() {
            return Err(BackupError::Mismatch(format!(
                "PostgreSQL at {:?} has system identifier {}, but repository {} holds {}\nhint: each database lineage needs its own repository",
                cluster.conninfo, facts.system_identifier, r.name, r.info.system_identifier
            )));
        }
        if r.info.wal_segment_size != facts.wal_segment_size {
            return Err(BackupError::Mismatch(format!(
                "PostgreSQL uses {}-byte WAL segments, repository {} holds {}-byte segments",
                facts.wal_segment_size, r.name, r.info.wal_segment_size
            )));
        }
    }
    let configured =
        std::fs::canonicalize(&cluster.pgdata).unwrap_or_else(|_| cluster.pgdata.clone());
    let served = std::fs::canonicalize(&facts.data_directory)
        .unwrap_or_else(|_| PathBuf::from(&facts.data_directory));
    if configured != served {
        return Err(BackupError::Mismatch(format!(
            "pgdata is {} in the configuration, but the server at {:?} runs on {}\nhint: fix pgdata or conninfo of cluster {:?}",
            cluster.pgdata.display(), cluster.conninfo, facts.data_directory, cluster.name
        )));
    }
    Ok(())
}

/// A backup id not yet used: ids are start seconds, so wait out a second already taken.
async fn fresh_id(repos: &[Repository]) -> Result<BackupId, BackupError> {
    loop {
        let id = BackupId::at(Utc::now());
        let mut taken = false;
        for r in repos {
            taken |= r.list_backups().await?.contains(&id);
        }
        if !taken {
            return Ok(id);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Everything the copy produced, for the manifests.
struct Copied {
    entries: Vec<(String, CopiedKind)>,
    files: u64,
    bytes_read: u64,
    bad_blocks: Vec<String>,
}

enum CopiedKind {
    Dir(u32),
    File {
        mode: u32,
        size: u64,
        chunks: Vec<Vec<String>>,
    },
    Tablespace {
        oid: u32,
        location: String,
    },
}

impl Copied {
    fn entries_for(&self, sink: usize) -> Vec<Entry> {
        self.entries
            .iter()
            .map(|(path, k)| Entry {
                path: path.clone(),
                kind: match k {
                    CopiedKind::Dir(mode) => EntryKind::Dir { mode: *mode },
                    CopiedKind::File { mode, size, chunks } => EntryKind::File {
                        mode: *mode,
                        size: *size,
                        chunks: chunks[sink].clone(),
                    },
                    CopiedKind::Tablespace { oid, location } => EntryKind::Tablespace {
                        oid: *oid,
                        location: location.clone(),
                    },
                },
            })
            .collect()
    }
}

async fn copy_all(
    pgdata: &Path,
    walked: &Walk,
    start: Option<Lsn>,
    sinks: &mut [Sink],
) -> Result<Copied, BackupError> {
    let mut out = Copied {
        entries: Vec::new(),
        files: 0,
        bytes_read: 0,
        bad_blocks: Vec::new(),
    };
    for e in walked
        .entries
        .iter()
        .chain(std::iter::once(&walked.pg_control))
    {
        copy_entry(pgdata, e, start, sinks, &mut out).await?;
    }
    for bad in &out.bad_blocks {
        tracing::warn!(block = %bad, "page checksum failure in the source cluster");
    }
    Ok(out)
}

async fn copy_entry(
    pgdata: &Path,
    e: &WalkEntry,
    start: Option<Lsn>,
    sinks: &mut [Sink],
    out: &mut Copied,
) -> Result<(), BackupError> {
    let kind = match &e.kind {
        WalkKind::Dir { mode } => CopiedKind::Dir(*mode),
        WalkKind::TablespaceLink { oid, target } => CopiedKind::Tablespace {
            oid: *oid,
            location: target.to_string_lossy().into_owned(),
        },
        WalkKind::File { size, mode, .. } => {
            let check = start
                .zip(walk::relation_segment_info(&e.path))
                .map(|(start_lsn, segno)| PageCheck { segno, start_lsn });
            let Some(c) = copy_file(pgdata, &e.path, *size, CHUNK_SIZE, check, sinks).await? else {
                tracing::debug!(path = %e.path, "file vanished during the backup; WAL replay recreates it if needed");
                return Ok(());
            };
            out.files += 1;
            out.bytes_read += c.size;
            out.bad_blocks.extend(c.bad_blocks);
            CopiedKind::File {
                mode: *mode,
                size: c.size,
                chunks: c.chunks,
            }
        }
    };
    out.entries.push((e.path.clone(), kind));
    Ok(())
}
