//! `lifeboat repo init`: creates the repository identity (`lifeboat.repo`) and the first
//! key-ring entry in every repository of the cluster, tied to the running server's system
//! identifier and segment size. Prints, per repository:
//! `initialised repository primary (local /srv/lifeboat/main): id 9c1f5e0a…, system 7312…,
//! 16 MiB segments`, then the archive_command to set.
//!
//! Nothing is written unless every repository is either new (absent or empty) or already
//! initialised for this same database system; a run where all of them already were fails.

use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

use super::Global;
use crate::config::{ClusterConfig, RepositoryConfig};
use crate::pg::sql;
use crate::repo::{info, storage_for, RepoInfo, Repository};
use crate::restore::settings::{conf_quote, sh_quote};
use crate::storage::{Storage, StorageError};

/// Arguments of `repo`.
#[derive(Debug, Args)]
pub struct RepoArgs {
    #[command(subcommand)]
    command: RepoCommand,
}

#[derive(Debug, Subcommand)]
enum RepoCommand {
    /// Initialise every repository of the cluster (connects to the cluster with `conninfo`).
    Init,
}

/// What a configured repository holds before init.
enum Found {
    /// Nothing: it can be initialised.
    New(Arc<dyn Storage>),
    /// A repository of this same database system.
    Initialised(RepoInfo),
}

/// Runs `repo init`.
pub async fn run(g: &Global, args: RepoArgs) -> anyhow::Result<()> {
    let RepoCommand::Init = args.command;
    let config = g.load()?;
    let cluster = config.cluster(g.cluster.as_deref())?;
    let kek = cluster.kek.load()?;
    let client = sql::connect(&cluster.conninfo).await?;
    let facts = sql::server_facts(&client).await?;
    if facts.system_identifier == 0 {
        bail!(
            "PostgreSQL at {:?} reported no system identifier",
            cluster.conninfo
        );
    }
    let mut found = Vec::new();
    for rc in &cluster.repositories {
        found.push(inspect(rc, facts.system_identifier, facts.wal_segment_size).await?);
    }
    if found.iter().all(|f| matches!(f, Found::Initialised(_))) {
        let ids: Vec<String> = cluster
            .repositories
            .iter()
            .zip(&found)
            .filter_map(|(rc, f)| match f {
                Found::Initialised(i) => Some(format!("{} (id {})", rc.name, i.repository_id)),
                Found::New(_) => None,
            })
            .collect();
        bail!(
            "every repository of cluster {} is already initialised: {}",
            cluster.name,
            ids.join(", ")
        );
    }
    for (rc, f) in cluster.repositories.iter().zip(found) {
        match f {
            Found::Initialised(i) => {
                println!(
                    "repository {} is already initialised (id {}); kept as is",
                    rc.name, i.repository_id
                )
            }
            Found::New(storage) => {
                let location = storage.location();
                let info = RepoInfo::new(
                    &cluster.name,
                    facts.system_identifier,
                    facts.wal_segment_size,
                );
                let repo = Repository::init(&rc.name, storage, &kek, info)
                    .await
                    .with_context(|| format!("initialising repository {} ({location})", rc.name))?;
                let repository_id = &repo.info.repository_id;
                tracing::info!(repository = %rc.name, %repository_id, "repository initialised");
                println!(
                    "initialised repository {} ({location}): id {}, system {}, {} MiB segments",
                    rc.name,
                    repo.info.repository_id,
                    repo.info.system_identifier,
                    repo.info.wal_segment_size >> 20
                );
            }
        }
    }
    if cluster.wal.mode == crate::config::WalMode::Stream {
        println!(
            "next: start `lifeboat --config {} daemon` (as a service) to stream WAL; the conninfo's \
             role needs REPLICATION and pg_hba.conf a replication line",
            config.path.display()
        );
    } else {
        println!(
            "next: set in postgresql.conf (archive_mode needs a restart): archive_mode = on, archive_command = {}",
            archive_command(&config.path, cluster)?
        );
    }
    Ok(())
}

/// Refuses a repository holding something else; accepts a new one or one of this system.
async fn inspect(rc: &RepositoryConfig, sysid: u64, seg_size: u64) -> anyhow::Result<Found> {
    let storage = storage_for(rc);
    let location = storage.location();
    let at = || format!("repository {} ({location})", rc.name);
    match storage.get(info::PATH).await {
        Ok(raw) => {
            let existing = RepoInfo::parse(&raw).with_context(at)?;
            if existing.system_identifier != sysid.to_string()
                || existing.wal_segment_size != seg_size
            {
                bail!(
                    "{} is already initialised for system {} with {} MiB segments, but the \
                     server is system {sysid} with {} MiB segments\nhint: one repository per \
                     cluster lineage; point this repository's path at a new location",
                    at(),
                    existing.system_identifier,
                    existing.wal_segment_size >> 20,
                    seg_size >> 20
                );
            }
            Ok(Found::Initialised(existing))
        }
        Err(StorageError::NotFound(_)) => {
            let present = match storage.list("").await {
                Ok(objects) => objects.len(),
                Err(StorageError::NotFound(_)) => 0,
                Err(e) => return Err(e).with_context(at),
            };
            if present > 0 {
                bail!(
                    "{} holds {present} files but no lifeboat.repo; refusing to initialise it",
                    at()
                );
            }
            Ok(Found::New(storage))
        }
        Err(e) => Err(e).with_context(at),
    }
}

/// The archive_command line for postgresql.conf, with this binary and configuration.
fn archive_command(config: &std::path::Path, cluster: &ClusterConfig) -> anyhow::Result<String> {
    let exe = std::env::current_exe().context("cannot find the running lifeboat binary")?;
    let q = |s: &str| sh_quote(s).replace('%', "%%");
    let command = format!(
        "{} --config {} --cluster {} wal-push %p",
        q(&exe.to_string_lossy()),
        q(&config.to_string_lossy()),
        q(&cluster.name)
    );
    Ok(conf_quote(&command))
}
