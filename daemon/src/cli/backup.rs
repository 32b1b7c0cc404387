//! `lifeboat backup [--label L]`: one base backup of the cluster, committed by its manifest.
//! Prints one line: `backup 20261203T171706Z: 0/3000028 to 0/3000138 on timeline 1, …`.

use anyhow::Context;
use clap::Args;

use super::Global;
use crate::backup::{self, BackupOptions};
use crate::repo::manifest::Manifest;
use crate::restore::catalog::human_bytes;

/// Arguments of `backup`.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Label given to PostgreSQL (shown in backup_label); defaults to `lifeboat <backup id>`.
    #[arg(long, value_name = "L")]
    label: Option<String>,
}

/// Takes a backup and prints its summary.
pub async fn run(g: &Global, args: BackupArgs) -> anyhow::Result<()> {
    let config = g.load()?;
    let cluster = config.cluster(g.cluster.as_deref())?;
    let opts = BackupOptions { label: args.label };
    let m = backup::run(&config, cluster, &opts)
        .await
        .with_context(|| format!("backup of cluster {}", cluster.name))?;
    println!("{}", summary(&m));
    if !m.checksum_failures.is_empty() {
        // Like pg_basebackup: the backup is kept, but an operator must hear about corruption.
        anyhow::bail!(
            "backup {} is stored, but {} page(s) of the source cluster failed their checksum:\n  {}\n\
             hint: the source has corrupt pages; check it with pg_amcheck and pg_checksums, and \
             restore those relations from an older backup if needed",
            m.backup_id,
            m.checksum_failures.len(),
            m.checksum_failures.join("\n  ")
        );
    }
    Ok(())
}

fn summary(m: &Manifest) -> String {
    let s = &m.stats;
    let rate = s.bytes_read as f64 / 1e6 / s.seconds.max(1e-3);
    format!(
        "backup {}: {} to {} on timeline {}, {} files, {} read, {} new, {} stored, \
         {:.1} s ({rate:.1} MB/s)",
        m.backup_id,
        m.start_lsn,
        m.stop_lsn,
        m.timeline,
        s.files,
        human_bytes(s.bytes_read),
        human_bytes(s.bytes_new),
        human_bytes(s.bytes_stored),
        s.seconds
    )
}
