//! `lifeboat daemon`: streams WAL for every cluster with `[cluster.wal] mode = "stream"` until
//! SIGTERM or SIGINT (see [`crate::daemon`]); exits 0 after a clean stop.

use clap::Args;

use super::Global;

/// Arguments of `daemon`.
#[derive(Debug, Args)]
pub struct DaemonArgs {}

/// Runs the daemon for every cluster of the file (`--cluster` is not used).
pub async fn run(g: &Global, _args: DaemonArgs) -> anyhow::Result<()> {
    let config = g.load()?;
    crate::daemon::run(&config).await?;
    Ok(())
}
