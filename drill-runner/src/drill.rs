//! The drill: declare an incident, restore the cluster into scratch, prove it answers and its data
//! holds together, measure RTO and RPO against the targets, report, tear down.
//!
//! Example: T0 2026-12-03T17:17:06Z makes drill `20261203T171706Z`; its scratch cluster lives in
//! `<state-dir>/drills/20261203T171706Z/scratch/pgdata` and its report beside it.
//!
//! Invariant: the RTO clock starts at T0, before anything is touched, and stops only once the
//! checks are done; the scratch cluster is torn down on every path out of [`run_drill`].

use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, Utc};
use lifeboat::config::{ClusterConfig, Config};
use lifeboat::crypto::CryptoError;
use lifeboat::repo::{storage_for, RepoError, Repository};
use lifeboat::restore::{RestoreError, RestoreOptions, RestoreReport, Target, TargetAction};
use tokio_postgres::Client;
use tracing::Instrument;

use crate::checks::{self, CheckResult, Login};
use crate::measure::{self, RpoBasis};
use crate::report::{self, DrillReport, Margins, Objectives, Phase, RepositoryRef, Teardown};
use crate::scratch::{self, FileOwner, Scratch, ScratchError};

/// What a drill needs besides the configuration.
#[derive(Debug, Clone)]
pub struct DrillOptions {
    /// The `lifeboat` binary the restored cluster's `restore_command` runs.
    pub lifeboat_bin: PathBuf,
    /// The repository to restore from; by default the first that opens, in configuration order.
    pub repository: Option<String>,
}

/// A drill that could not run, as opposed to one that ran and failed its targets or checks.
#[derive(Debug, thiserror::Error)]
pub enum DrillError {
    /// The key-encryption key did not load.
    #[error("cannot load the key-encryption key of cluster {cluster}")]
    Kek {
        /// The cluster.
        cluster: String,
        /// Why.
        source: CryptoError,
    },
    /// A repository did not open.
    #[error("cannot open the repositories of cluster {cluster}")]
    OpenRepository {
        /// The cluster.
        cluster: String,
        /// Why.
        source: Box<RepoError>,
    },
    /// The drill's directory or scratch environment could not be made.
    #[error("cannot provision the scratch environment of drill {drill_id}")]
    Scratch {
        /// The drill.
        drill_id: String,
        /// Why.
        source: ScratchError,
    },
    /// The restore into scratch failed.
    #[error("cannot restore cluster {cluster} into {pgdata}")]
    Restore {
        /// The cluster.
        cluster: String,
        /// The scratch data directory.
        pgdata: PathBuf,
        /// Why; boxed, as restore errors carry log tails.
        source: Box<RestoreError>,
    },
    /// The cluster has no repository to restore from.
    #[error("cluster {cluster} has no repository to restore from")]
    NoRepository {
        /// The cluster.
        cluster: String,
    },
    /// `--repository` names no repository of the cluster.
    #[error("cluster {cluster} has no repository named {name:?}")]
    UnknownRepository {
        /// The cluster.
        cluster: String,
        /// The name asked for.
        name: String,
    },
    /// The report could not be written locally.
    #[error("cannot write the report of drill {drill_id} to {dir}")]
    WriteReport {
        /// The drill.
        drill_id: String,
        /// The drill's directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The report could not be stored in a repository; the local copy exists.
    #[error("cannot store the report of drill {drill_id} in repository {repository} (the local copy is in {dir})")]
    StoreReport {
        /// The drill.
        drill_id: String,
        /// The repository.
        repository: String,
        /// The drill's local directory.
        dir: PathBuf,
        /// Why.
        source: Box<RepoError>,
    },
}

impl DrillError {
    /// Whether running the drill again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            DrillError::OpenRepository { source, .. } | DrillError::StoreReport { source, .. } => {
                source.is_retryable()
            }
            DrillError::Scratch { source, .. } => source.is_retryable(),
            _ => false,
        }
    }
}

/// The incident a drill recovers from: T0, and the monotonic clock RTO is measured on.
struct Incident {
    t0: DateTime<Utc>,
    clock: Instant,
    id: String,
}

impl Incident {
    fn declare() -> Incident {
        let t0 = Utc::now();
        Incident {
            t0,
            clock: Instant::now(),
            id: drill_id(t0),
        }
    }
}

/// A drill's id: `YYYYMMDDTHHMMSSZ` of T0.
pub fn drill_id(t0: DateTime<Utc>) -> String {
    t0.format("%Y%m%dT%H%M%SZ").to_string()
}

/// Runs one drill of `cluster` and returns its report, already written under
/// `<state-dir>/drills/<drill-id>/` and stored in every repository of the cluster.
///
/// A drill that ran returns `Ok` whatever its verdict; `Err` means it could not run.
pub async fn run_drill(
    config: &Config,
    cluster: &ClusterConfig,
    opts: &DrillOptions,
) -> Result<DrillReport, DrillError> {
    let incident = Incident::declare();
    let span = tracing::info_span!("drill", drill_id = %incident.id, cluster = %cluster.name);
    drill(config, cluster, opts, incident)
        .instrument(span)
        .await
}

async fn drill(
    config: &Config,
    cluster: &ClusterConfig,
    opts: &DrillOptions,
    incident: Incident,
) -> Result<DrillReport, DrillError> {
    tracing::info!(t0 = %incident.t0, "incident declared");
    let mut phases = Vec::new();

    // Provision: the drill's directory, the repositories, a scratch directory and port.
    let lap = Instant::now();
    let dir = DrillDir::create(&config.state_dir, &cluster.pgdata, &incident.id)?;
    let repos = open_repositories(cluster, opts.repository.as_deref()).await?;
    let chosen = match &opts.repository {
        Some(name) => repos.iter().find(|r| &r.name == name),
        None => repos.first(),
    };
    let Some(primary) = chosen else {
        return Err(DrillError::NoRepository {
            cluster: cluster.name.clone(),
        });
    };
    let mut scratch = provision_scratch(&dir.path, cluster, &incident.id)?;
    phases.push(phase("provision", lap, None));

    // Restore the latest backup, start it, replay WAL and promote, timed by the restore.
    let restored = restore(config, cluster, opts, &scratch, &primary.name).await?;
    if let Some(socket_dir) = &restored.socket_dir {
        scratch.adopt(socket_dir);
    }
    phases.extend(restored.phases.iter().map(|p| Phase {
        name: p.name.clone(),
        seconds: p.seconds,
        bytes: p.bytes,
    }));

    // Checks, over our own connections; the RTO clock stops when they are done.
    let target = checks::Target {
        port: scratch.port(),
        socket_dir: restored.socket_dir.clone(),
        login: Login::from_conninfo(&cluster.conninfo),
    };
    let lap = Instant::now();
    let client = accept(&target).await;
    phases.push(phase("connect for checks", lap, None));
    let lap = Instant::now();
    let check_results = run_checks(&target, &client).await;
    phases.push(phase("checks", lap, None));
    let rto_seconds = incident.clock.elapsed().as_secs_f64();
    drop(client);

    // RPO: T0 minus the newest commit the restored cluster holds.
    let (newest_commit, rpo_basis) = newest_commit(&restored, primary).await;

    // Tear down before reporting, so the report says whether it worked.
    let teardown = tear_down(scratch);

    // Judge, report, store.
    let report = build_report(Built {
        config,
        cluster,
        incident: &incident,
        restored: &restored,
        phases,
        rto_seconds,
        newest_commit,
        rpo_basis,
        checks: check_results,
        repository: primary,
        teardown,
    });
    save(&report, &dir, &repos).await?;
    tracing::info!(
        verdict = report.verdict.as_str(),
        rto_seconds,
        rpo_seconds = report.rpo_seconds.unwrap_or(f64::NAN),
        "drill done"
    );
    Ok(report)
}

fn phase(name: &str, started: Instant, bytes: Option<u64>) -> Phase {
    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(phase = name, seconds, "phase done");
    Phase {
        name: name.into(),
        seconds,
        bytes,
    }
}

/// The drill's own directory, `<state-dir>/drills/<id>`; removed again when it is still empty
/// at the end, so only drills that wrote a report leave a directory behind.
struct DrillDir {
    path: PathBuf,
    owner: FileOwner,
}

impl DrillDir {
    /// Makes the directory, owned like the state directory; an existing one means a drill with
    /// this id already ran. A missing state directory is made, owned like the cluster's data
    /// directory, since PostgreSQL runs the scratch cluster as that user.
    fn create(state_dir: &Path, pgdata: &Path, drill_id: &str) -> Result<DrillDir, DrillError> {
        let err = |source| DrillError::Scratch {
            drill_id: drill_id.into(),
            source,
        };
        if !state_dir.exists() {
            let parent = state_dir.parent().unwrap_or(Path::new("/"));
            std::fs::create_dir_all(parent).map_err(|source| {
                err(scratch::ScratchError::Io {
                    what: "cannot create",
                    path: parent.into(),
                    source,
                })
            })?;
            let owner = FileOwner::of(pgdata)
                .or_else(|_| FileOwner::of(parent))
                .map_err(err)?;
            scratch::make_dir(state_dir, 0o750, owner).map_err(err)?;
        }
        let owner = FileOwner::of(state_dir).map_err(err)?;
        let drills = state_dir.join("drills");
        if !drills.is_dir() {
            scratch::make_dir(&drills, 0o755, owner).map_err(err)?;
        }
        let path = report::local_dir(state_dir, drill_id);
        scratch::make_dir(&path, 0o755, owner).map_err(err)?;
        Ok(DrillDir { path, owner })
    }
}

impl Drop for DrillDir {
    fn drop(&mut self) {
        // remove_dir takes only an empty directory: the scratch guard, dropped first, has
        // emptied it, and a written report keeps it.
        let _ = std::fs::remove_dir(&self.path);
    }
}

/// Opens the repositories that answer, in configuration order: the drill restores from
/// `wanted` (which must open) or the first, and stores its report in each. The others are
/// logged at ERROR; when none opens, the first one's error is the drill's.
async fn open_repositories(
    cluster: &ClusterConfig,
    wanted: Option<&str>,
) -> Result<Vec<Repository>, DrillError> {
    let kek = cluster.kek.load().map_err(|source| DrillError::Kek {
        cluster: cluster.name.clone(),
        source,
    })?;
    if let Some(name) = wanted.filter(|n| !cluster.repositories.iter().any(|r| r.name == *n)) {
        return Err(DrillError::UnknownRepository {
            cluster: cluster.name.clone(),
            name: name.into(),
        });
    }
    let failed = |source| DrillError::OpenRepository {
        cluster: cluster.name.clone(),
        source: Box::new(source),
    };
    let mut opened = Vec::new();
    let mut first_error = None;
    for rc in &cluster.repositories {
        match Repository::open(&rc.name, storage_for(rc), &kek).await {
            Ok(repo) => opened.push(repo),
            Err(e) if wanted == Some(rc.name.as_str()) => return Err(failed(e)),
            Err(e) => {
                tracing::error!(repository = %rc.name, error = %e,
                    "repository does not open; the drill goes on without it");
                first_error.get_or_insert(e);
            }
        }
    }
    match (opened.is_empty(), first_error) {
        (true, Some(e)) => Err(failed(e)),
        _ => Ok(opened),
    }
}

fn provision_scratch(
    dir: &Path,
    cluster: &ClusterConfig,
    drill_id: &str,
) -> Result<Scratch, DrillError> {
    let scratch = Scratch::provision(
        &dir.join("scratch"),
        &cluster.name,
        cluster.pg_bin_dir.clone(),
    )
    .map_err(|source| DrillError::Scratch {
        drill_id: drill_id.into(),
        source,
    })?;
    tracing::info!(
        dir = %scratch.dir().display(),
        port = scratch.port(),
        "scratch environment provisioned"
    );
    Ok(scratch)
}

async fn restore(
    config: &Config,
    cluster: &ClusterConfig,
    opts: &DrillOptions,
    scratch: &Scratch,
    repository: &str,
) -> Result<RestoreReport, DrillError> {
    let mut restore_opts = RestoreOptions::new(scratch.pgdata(), opts.lifeboat_bin.clone());
    restore_opts.repository = Some(repository.into());
    restore_opts.target = Target::Latest;
    restore_opts.action = TargetAction::Promote;
    restore_opts.start = true;
    restore_opts.port = Some(scratch.port());
    lifeboat::restore::run(config, cluster, &restore_opts)
        .await
        .map_err(|source| DrillError::Restore {
            cluster: cluster.name.clone(),
            pgdata: scratch.pgdata(),
            source: Box::new(source),
        })
}

/// The first connection; a server that never accepts one fails the drill, not the run.
async fn accept(target: &checks::Target) -> Result<Client, CheckResult> {
    target.accept().await.map_err(|detail| CheckResult {
        name: "accepting queries".into(),
        database: target.login.dbname.clone(),
        passed: false,
        detail,
    })
}

async fn run_checks(
    target: &checks::Target,
    client: &Result<Client, CheckResult>,
) -> Vec<CheckResult> {
    match client {
        Ok(c) => target.check_all(c).await,
        Err(refused) => vec![refused.clone()],
    }
}

/// The newest recovered commit: the restore's `pg_last_xact_replay_timestamp()` at the target;
/// when no transaction was replayed, the backup's stop time bounds it.
async fn newest_commit(
    restored: &RestoreReport,
    repo: &Repository,
) -> (Option<DateTime<Utc>>, RpoBasis) {
    if let Some(t) = restored.last_replayed_commit {
        return (Some(t), RpoBasis::LastReplayedCommit);
    }
    match repo.get_manifest(&restored.backup_id).await {
        Ok(m) => (Some(m.stop_time), RpoBasis::BackupStopTime),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the restored backup's manifest for the RPO");
            (None, RpoBasis::Unknown)
        }
    }
}

fn tear_down(scratch: Scratch) -> Teardown {
    let dir = scratch.dir().to_path_buf();
    match scratch.teardown() {
        Ok(()) => Teardown {
            done: true,
            detail: format!("stopped and removed {}", dir.display()),
        },
        Err(e) => {
            tracing::error!(error = %e, "scratch environment not torn down");
            Teardown {
                done: false,
                detail: e.to_string(),
            }
        }
    }
}

/// Everything the report is made of.
struct Built<'a> {
    config: &'a Config,
    cluster: &'a ClusterConfig,
    incident: &'a Incident,
    restored: &'a RestoreReport,
    phases: Vec<Phase>,
    rto_seconds: f64,
    newest_commit: Option<DateTime<Utc>>,
    rpo_basis: RpoBasis,
    checks: Vec<CheckResult>,
    repository: &'a Repository,
    teardown: Teardown,
}

fn build_report(b: Built<'_>) -> DrillReport {
    let targets = b.cluster.targets;
    let rpo_seconds = measure::rpo_seconds(b.incident.t0, b.newest_commit);
    let rto = measure::judge(Some(b.rto_seconds), targets.rto);
    let rpo = measure::judge(rpo_seconds, targets.rpo);
    let (verdict, failures) = measure::verdict(&rto, &rpo, &b.checks);
    DrillReport {
        format: report::FORMAT,
        drill_id: b.incident.id.clone(),
        cluster: b.cluster.name.clone(),
        started: b.incident.t0,
        finished: Utc::now(),
        backup_id: b.restored.backup_id.to_string(),
        target: b.restored.target.clone(),
        phases: b.phases,
        rto_seconds: b.rto_seconds,
        rpo_seconds,
        rpo_basis: b.rpo_basis,
        newest_recovered_commit: b.newest_commit,
        targets: Objectives {
            rto_seconds: rto.target,
            rpo_seconds: rpo.target,
        },
        margins: Margins {
            rto_seconds: rto.margin.unwrap_or_default(),
            rpo_seconds: rpo.margin,
        },
        checks: b.checks,
        verdict,
        failures,
        software_version: env!("CARGO_PKG_VERSION").into(),
        host: host_name(),
        operator: operator(),
        config_path: b.config.path.display().to_string(),
        config_sha256: b.config.sha256.clone(),
        repository: RepositoryRef {
            name: b.repository.name.clone(),
            id: b.repository.info.repository_id.clone(),
        },
        replay_lsn: b.restored.replay_lsn.map(|l| l.to_string()),
        bytes_restored: b.restored.bytes_restored,
        teardown: b.teardown,
    }
}

/// Writes the local report, then seals it into every repository.
async fn save(
    report: &DrillReport,
    dir: &DrillDir,
    repos: &[Repository],
) -> Result<(), DrillError> {
    report
        .write_local(&dir.path, dir.owner)
        .map_err(|source| DrillError::WriteReport {
            drill_id: report.drill_id.clone(),
            dir: dir.path.clone(),
            source,
        })?;
    for repo in repos {
        report
            .store(repo)
            .await
            .map_err(|source| DrillError::StoreReport {
                drill_id: report.drill_id.clone(),
                repository: repo.name.clone(),
                dir: dir.path.clone(),
                source: Box::new(source),
            })?;
    }
    Ok(())
}

/// The kernel's host name.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// The user running the drill, and who they are behind sudo.
fn operator() -> String {
    let uid = nix::unistd::getuid();
    let name = match nix::unistd::User::from_uid(uid) {
        Ok(Some(u)) => u.name,
        _ => format!("uid {uid}"),
    };
    match std::env::var("SUDO_USER") {
        Ok(by) if !by.is_empty() && by != name => format!("{name} (sudo by {by})"),
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drill_id_is_t0_in_utc() {
        let t0: DateTime<Utc> = "2026-12-03T17:17:06.734Z".parse().unwrap();
        assert_eq!(drill_id(t0), "20261203T171706Z");
    }
}
