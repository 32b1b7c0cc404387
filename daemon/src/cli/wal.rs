//! `lifeboat wal-push PATH` and `lifeboat wal-fetch NAME DEST`: PostgreSQL's archive_command and
//! restore_command.
//!
//! ```text
//! archive_command = '/usr/bin/lifeboat --config /etc/lifeboat/lifeboat.toml --cluster main wal-push %p'
//! restore_command = '/usr/bin/lifeboat --config /etc/lifeboat/lifeboat.toml --cluster main wal-fetch %f %p'
//! ```
//! wal-push exits 0 once the file is durable in every required repository and 1 otherwise (PostgreSQL
//! keeps the file and calls again). wal-fetch exits 0 (found), 1 (absent, confirmed) or 255
//! (anything else, including an unreadable configuration), so recovery never ends early.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::{print_error, Global};
use crate::wal::fetch::{self, FetchOutcome, EXIT_FAILED};
use crate::wal::push::{self, PushOutcome};

/// Arguments of `wal-push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// The WAL file to archive, as PostgreSQL passes it (%p, relative to the data directory).
    #[arg(value_name = "PATH")]
    path: PathBuf,
}

/// Arguments of `wal-fetch`.
#[derive(Debug, Args)]
pub struct FetchArgs {
    /// The WAL file PostgreSQL asks for (%f): a segment or a timeline history file name.
    #[arg(value_name = "NAME")]
    name: String,
    /// Where to write it (%p).
    #[arg(value_name = "DEST")]
    dest: PathBuf,
    /// Read only this repository (restore writes the one it restored from); default: every
    /// repository of the cluster, the first that has the file.
    #[arg(long, value_name = "NAME")]
    repository: Option<String>,
}

/// Archives one file into every repository.
pub async fn push(g: &Global, args: PushArgs) -> anyhow::Result<()> {
    let config = g.load()?;
    let cluster = config.cluster(g.cluster.as_deref())?;
    let outcome = push::push(cluster, &args.path)
        .await
        .with_context(|| format!("wal-push {}", args.path.display()))?;
    match outcome {
        PushOutcome::Stored(_) => tracing::debug!(file = %args.path.display(), "archived"),
        PushOutcome::Skipped(reason) => {
            tracing::debug!(file = %args.path.display(), reason, "accepted without storing")
        }
    }
    Ok(())
}

/// Fetches one file and maps the outcome to PostgreSQL's exit codes.
pub async fn fetch(g: &Global, args: FetchArgs) -> ExitCode {
    let result = async {
        let config = g.load()?;
        let mut cluster = config.cluster(g.cluster.as_deref())?.clone();
        if let Some(name) = &args.repository {
            cluster.repositories.retain(|r| &r.name == name);
            anyhow::ensure!(
                !cluster.repositories.is_empty(),
                "cluster {} has no repository named {name:?}",
                cluster.name
            );
        }
        Ok::<_, anyhow::Error>(fetch::fetch(&cluster, &args.name, &args.dest).await?)
    };
    let result = result
        .await
        .with_context(|| format!("wal-fetch {}", args.name));
    match result {
        Ok(outcome) => {
            if outcome == FetchOutcome::Absent {
                tracing::debug!(file = %args.name, "not in any repository");
            }
            ExitCode::from(fetch::exit_code(&Ok(outcome)))
        }
        Err(e) => {
            print_error(&e);
            ExitCode::from(EXIT_FAILED)
        }
    }
}
