//! `lifeboat list [--json]`: the backups of every repository of the cluster and the window
//! they can restore to. `--json` prints `{"cluster": "main", "repositories": [<catalog>...]}`,
//! one catalog per repository in configuration order (see [`crate::restore::Catalog`]).

use anyhow::Context;
use clap::Args;
use serde::Serialize;

use super::Global;
use crate::repo::{storage_for, Repository};
use crate::restore::{catalog, Catalog};

/// Arguments of `list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Listing<'a> {
    cluster: &'a str,
    repositories: Vec<Catalog>,
}

/// Prints the catalog of each repository.
pub async fn run(g: &Global, args: ListArgs) -> anyhow::Result<()> {
    let config = g.load()?;
    let cluster = config.cluster(g.cluster.as_deref())?;
    let kek = cluster.kek.load()?;
    let mut repositories = Vec::new();
    for rc in &cluster.repositories {
        let storage = storage_for(rc);
        let location = storage.location();
        let read = async {
            let repo = Repository::open(&rc.name, storage, &kek).await?;
            Ok::<_, anyhow::Error>(catalog(&repo).await?)
        };
        let mut cat = read
            .await
            .with_context(|| format!("repository {} ({location})", rc.name))?;
        cat.residency_zone = cluster.residency.map(|z| z.to_string());
        cat.region = rc.region.clone();
        repositories.push(cat);
    }
    if args.json {
        let listing = Listing {
            cluster: &cluster.name,
            repositories,
        };
        println!("{}", serde_json::to_string_pretty(&listing)?);
        return Ok(());
    }
    let several = repositories.len() > 1;
    for cat in repositories {
        if several {
            println!("repository {}:", cat.repository);
        }
        print!("{cat}");
    }
    Ok(())
}
