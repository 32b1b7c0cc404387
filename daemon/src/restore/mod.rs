//! `lifeboat restore`: a base backup written to a new data directory with the settings that
//! make PostgreSQL recover to a target, optionally started and watched until it gets there;
//! and `lifeboat list`'s catalog of backups and the recoverable window ([`catalog`]).
//!
//! Example: `lifeboat restore --to /srv/restore --target-time "2026-12-03 17:20:05"
//! --target-action promote --start --port 5433` picks the newest backup that ended before
//! 17:20:05 UTC, writes its files, `backup_label`, `recovery.signal` and
//! `restore_command = '... wal-fetch %f %p'`, starts PostgreSQL as `postgres` and returns once
//! `pg_is_in_recovery()` is false.
//!
//! Invariant: every refusal (target outside the window, WAL gap, unknown chunk, non-empty
//! destination) happens before the first byte is written, and the restored copy has archiving
//! off so it can never write into the production archive.

pub mod catalog;
mod error;
pub mod files;
pub mod plan;
pub mod probe;
pub mod report;
pub mod settings;
pub mod start;
pub mod tablespace;
pub mod target;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument;

pub use catalog::{catalog, BackupSummary, Catalog, Window};
pub use error::RestoreError;
pub use report::{Phase, RestoreReport};
pub use target::{parse_target_time, Target, TargetAction};

use crate::config::{AzureAuth, ClusterConfig, Config, RepositoryKind, SecretRef};
use crate::crypto::kek::KekRef;
use crate::pg::bin::{Owner, PgBin};
use crate::repo::index::ChunkIndex;
use crate::repo::manifest::{BackupId, Manifest};
use crate::repo::{storage_for, Repository};
use tablespace::TablespaceDir;

/// How long `--start` waits for the target by default: far beyond any RTO, so only a stuck
/// recovery hits it.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// What to restore, where, and whether to start it.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// The new data directory; must be absent or empty.
    pub to: PathBuf,
    /// The backup to restore; by default the newest one that ends before the target.
    pub backup: Option<BackupId>,
    /// Where recovery stops.
    pub target: Target,
    /// What the server does at the target.
    pub action: TargetAction,
    /// Start PostgreSQL and wait until the target is reached.
    pub start: bool,
    /// Port for the started server, also written to `postgresql.auto.conf`.
    pub port: Option<u16>,
    /// The `lifeboat` binary that restore_command runs.
    pub lifeboat_bin: PathBuf,
    /// New locations of tablespaces by OID (`--tablespace-map OID=DIR`); others go to
    /// `<to>/pg_tblspc_restored/<oid>`.
    pub tablespace_map: BTreeMap<u32, PathBuf>,
    /// How long `start` waits for the target.
    pub timeout: Duration,
    /// The repository to restore from; by default the first that opens, in configuration order.
    pub repository: Option<String>,
}

impl RestoreOptions {
    /// Latest, paused, not started, to `to`, with restore_command running `lifeboat_bin`.
    pub fn new(to: PathBuf, lifeboat_bin: PathBuf) -> RestoreOptions {
        RestoreOptions {
            to,
            backup: None,
            target: Target::Latest,
            action: TargetAction::default(),
            start: false,
            port: None,
            lifeboat_bin,
            tablespace_map: BTreeMap::new(),
            timeout: DEFAULT_TIMEOUT,
            repository: None,
        }
    }
}

/// Parses `--tablespace-map 16395=/srv/ts1`.
pub fn parse_tablespace_mapping(s: &str) -> Result<(u32, PathBuf), String> {
    let (oid, dir) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not OID=DIR"))?;
    let oid = oid
        .trim()
        .parse()
        .map_err(|_| format!("{oid:?} in {s:?} is not a tablespace OID"))?;
    Ok((oid, PathBuf::from(dir)))
}

/// Opens the repository called `name`, or by default the first of the cluster's repositories
/// that opens (in configuration order), so a restore still runs when the primary site is down.
pub async fn open_repository(
    cluster: &ClusterConfig,
    name: Option<&str>,
) -> Result<Repository, RestoreError> {
    let kek = cluster.kek.load()?;
    if let Some(name) = name {
        let rc = cluster
            .repositories
            .iter()
            .find(|rc| rc.name == name)
            .ok_or_else(|| RestoreError::UnknownRepository {
                cluster: cluster.name.clone(),
                name: name.to_string(),
                known: cluster
                    .repositories
                    .iter()
                    .map(|r| r.name.clone())
                    .collect(),
            })?;
        return Ok(Repository::open(&rc.name, storage_for(rc), &kek).await?);
    }
    let mut first_error = None;
    for rc in &cluster.repositories {
        match Repository::open(&rc.name, storage_for(rc), &kek).await {
            Ok(repo) => return Ok(repo),
            Err(e) => {
                tracing::error!(repository = %rc.name, error = %e,
                    "repository does not open; trying the next one");
                first_error.get_or_insert(e);
            }
        }
    }
    Err(match first_error {
        Some(e) => e.into(),
        None => RestoreError::NoRepository {
            cluster: cluster.name.clone(),
        },
    })
}

/// Everything decided before the first byte is written.
struct Plan {
    manifest: Manifest,
    index: Arc<ChunkIndex>,
    to: PathBuf,
    tablespaces: Vec<TablespaceDir>,
    owner: Owner,
    bin: Option<PgBin>,
    restore_command: String,
    users: Vec<String>,
}

/// Restores a backup of `cluster` as `opts` says.
pub async fn run(
    config: &Config,
    cluster: &ClusterConfig,
    opts: &RestoreOptions,
) -> Result<RestoreReport, RestoreError> {
    let span = tracing::info_span!("restore", cluster = %cluster.name, to = %opts.to.display());
    run_phases(config, cluster, opts).instrument(span).await
}

async fn run_phases(
    config: &Config,
    cluster: &ClusterConfig,
    opts: &RestoreOptions,
) -> Result<RestoreReport, RestoreError> {
    // Plan: open the repository, choose the backup, refuse what cannot be reached.
    let clock = Instant::now();
    let repo = open_repository(cluster, opts.repository.as_deref()).await?;
    tracing::info!(repository = %repo.name, "restoring from this repository");
    let plan = prepare(&repo, config, cluster, opts).await?;
    let m = &plan.manifest;
    let mut phases = vec![Phase::new("plan", clock.elapsed(), None)];
    tracing::info!(backup_id = %m.backup_id, target = %opts.target, "restore planned");

    // Files: directories, files rebuilt from chunks, tablespace links; all fsynced.
    let t = Instant::now();
    let written = files::restore(&repo, plan.index.clone(), m, &plan.to, &plan.tablespaces).await?;
    phases.push(Phase::new(
        "restore files",
        t.elapsed(),
        Some(written.bytes),
    ));
    tracing::info!(
        files = written.files,
        bytes = written.bytes,
        seconds = t.elapsed().as_secs_f64(),
        "files restored"
    );

    // Settings: backup_label, tablespace_map, recovery.signal, the recovery block; ownership.
    let t = Instant::now();
    let recovery = settings::Recovery {
        restore_command: plan.restore_command.clone(),
        target: &opts.target,
        action: opts.action,
        port: opts.port,
        backup: m.backup_id.to_string(),
    };
    let map = tablespace::tablespace_map_text(&plan.tablespaces);
    settings::write(
        &plan.to,
        m,
        map.as_deref(),
        &settings::recovery_block(&recovery),
    )?;
    plan.owner.chown_tree(&plan.to)?;
    for t in &plan.tablespaces {
        plan.owner.chown_tree(&t.location)?;
    }
    phases.push(Phase::new("recovery settings", t.elapsed(), None));

    let mut report = RestoreReport {
        backup_id: m.backup_id.clone(),
        target: opts.target.to_string(),
        data_dir: plan.to.clone(),
        phases,
        bytes_restored: written.bytes,
        replay_lsn: None,
        last_replayed_commit: None,
        socket_dir: None,
        port: None,
    };

    // Start: PostgreSQL as the owner of the directory, until recovery reaches the target.
    if let Some(bin) = &plan.bin {
        let start_plan = start::StartPlan {
            dir: &plan.to,
            bin,
            owner: &plan.owner,
            port: opts.port,
            target: &opts.target,
            action: opts.action,
            users: plan.users.clone(),
            timeout: opts.timeout,
            redo_from: m.start_lsn,
        };
        let started = start::start_and_wait(&start_plan).await?;
        report.phases.extend(started.phases);
        report.replay_lsn = started.replay_lsn;
        report.last_replayed_commit = started.last_commit;
        // After a shutdown at the target there is no server to connect to.
        if started.port.is_some() {
            report.socket_dir = Some(started.socket_dir);
            report.port = started.port;
        }
    }
    tracing::info!(seconds = report.total_seconds(), "restore finished");
    Ok(report)
}

/// Chooses and checks everything; writes nothing.
async fn prepare(
    repo: &Repository,
    config: &Config,
    cluster: &ClusterConfig,
    opts: &RestoreOptions,
) -> Result<Plan, RestoreError> {
    let to = absolute(&opts.to)?;
    let state = catalog::RepoState::load(repo).await?;
    if let Some((id, reason)) = state
        .unreadable
        .iter()
        .find(|(id, _)| opts.backup.as_ref() == Some(id))
    {
        return Err(RestoreError::Repo(crate::repo::RepoError::Format {
            name: crate::repo::manifest::path(id),
            reason: reason.clone(),
        }));
    }
    let manifest = plan::choose_backup(
        &state.manifests,
        &opts.target,
        opts.backup.as_ref(),
        &repo.name,
    )?
    .clone();
    let chain = state.chain(&manifest)?;
    let reach = state.reach(&manifest, &chain);
    plan::check_backup_wal(&manifest, &chain, reach.as_ref(), &repo.name)?;
    if let (Some(r), Target::Latest | Target::Xid(_) | Target::Name(_)) = (&reach, &opts.target) {
        plan::check_no_wal_beyond(&state.listing, &chain, r, state.seg_size, &repo.name)?;
    }
    if let (Some(reach), Target::Time(_) | Target::Lsn(_)) = (reach, &opts.target) {
        let run = catalog::run_end(repo, &state, &manifest, &chain, reach).await?;
        plan::check_target(&opts.target, &manifest, &run)?;
    }
    let mut index = repo.load_index().await?;
    // A chunk whose pack is gone counts as missing, so the restore is refused before writing.
    let lost = index.retain_packs(&repo.list_packs().await?);
    if lost > 0 {
        tracing::error!(repository = %repo.name, chunks = lost, "indexed chunks whose pack is missing");
    }
    files::check_manifest(&manifest, &index, &repo.name)?;
    let tablespaces = tablespace::tablespace_dirs(&manifest, &to, &opts.tablespace_map)?;
    files::check_destination(&to, &tablespaces)?;
    let owner = Owner::for_data_dir(&to)?;
    let major = manifest.pg_version_num / 10000;
    let bin = match opts.start {
        true => Some(PgBin::find(
            &cluster.name,
            cluster.pg_bin_dir.as_deref(),
            major,
        )?),
        false => None,
    };
    let lifeboat_bin = absolute(&opts.lifeboat_bin)?;
    let config_path = absolute(&config.path)?;
    let restore_command =
        settings::restore_command(&lifeboat_bin, &config_path, &cluster.name, &repo.name);
    let needs = fetch_needs(&to, &lifeboat_bin, &config_path, cluster);
    check_owner_access(&owner, &needs, opts.start)?;
    let users = connect_users(cluster, &owner);
    Ok(Plan {
        manifest,
        index: Arc::new(index),
        to,
        tablespaces,
        owner,
        bin,
        restore_command,
        users,
    })
}

/// `p` made absolute against the current directory.
fn absolute(p: &Path) -> Result<PathBuf, RestoreError> {
    std::path::absolute(p).map_err(RestoreError::io("cannot make absolute", p))
}

/// What the server's user must reach for recovery to work: (what, path, execute).
fn fetch_needs(
    to: &Path,
    bin: &Path,
    config: &Path,
    cluster: &ClusterConfig,
) -> Vec<(String, PathBuf, bool)> {
    let existing = to
        .ancestors()
        .find(|a| a.exists())
        .unwrap_or(Path::new("/"));
    let mut needs = vec![
        (
            "to enter the data directory".to_string(),
            existing.to_path_buf(),
            true,
        ),
        ("to run the lifeboat binary".into(), bin.to_path_buf(), true),
        (
            "to read the configuration".into(),
            config.to_path_buf(),
            false,
        ),
    ];
    if let KekRef::File(kek) = &cluster.kek {
        needs.push(("to read the key-encryption key".into(), kek.clone(), false));
    }
    for rc in &cluster.repositories {
        let (what, path) = match &rc.kind {
            RepositoryKind::Local { path } => ("repository", path.join(crate::repo::info::PATH)),
            RepositoryKind::Azure {
                auth:
                    AzureAuth::AccountKey(SecretRef::File(path))
                    | AzureAuth::SasToken(SecretRef::File(path)),
                ..
            } => ("the credential of repository", path.clone()),
            RepositoryKind::Azure { .. } => continue,
        };
        needs.push((format!("to read {what} {}", rc.name), path, false));
    }
    needs
}

/// Refuses (with `--start`) or warns when the server's user cannot reach what it needs.
fn check_owner_access(
    owner: &Owner,
    needs: &[(String, PathBuf, bool)],
    start: bool,
) -> Result<(), RestoreError> {
    if owner.is_current() {
        return Ok(());
    }
    for (what, path, execute) in needs {
        if owner.can_access(path, *execute)? {
            continue;
        }
        let err = RestoreError::Unreadable {
            user: owner.name.clone(),
            what: what.clone(),
            reason: format!(
                "it cannot {} {}",
                if *execute { "enter or run" } else { "read" },
                path.display()
            ),
        };
        if start {
            return Err(err);
        }
        tracing::warn!("{err}");
    }
    Ok(())
}

/// Roles to query the restored server as: the configured backup role, then the owner's name.
fn connect_users(cluster: &ClusterConfig, owner: &Owner) -> Vec<String> {
    let configured = cluster
        .conninfo
        .parse::<tokio_postgres::Config>()
        .ok()
        .and_then(|c| c.get_user().map(str::to_string));
    let mut users: Vec<String> = configured.into_iter().collect();
    if !users.contains(&owner.name) {
        users.push(owner.name.clone());
    }
    users
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tablespace_mappings_parse() {
        assert_eq!(
            parse_tablespace_mapping("16395=/srv/ts1"),
            Ok((16395, PathBuf::from("/srv/ts1")))
        );
        assert!(parse_tablespace_mapping("/srv/ts1").is_err());
        assert!(parse_tablespace_mapping("ts=/srv").is_err());
    }
}
