//! `lifeboat restore --to DIR [--backup ID] [TARGET] [--target-action A] [--start] [--port P]`:
//! restores a backup to a new data directory with recovery settings for one target (at most
//! one of `--target-time`, `--target-lsn`, `--target-xid`, `--target-name`,
//! `--target-immediate`; none means latest). The restore_command it writes runs this binary
//! (`std::env::current_exe()`) with this configuration's absolute path.
//!
//! Example: `lifeboat restore --to /srv/restore --target-time "2026-12-03 17:20:05"
//! --target-action promote --start` (a time without an offset is UTC).

use std::path::PathBuf;

use anyhow::Context;
use clap::{ArgGroup, Args, ValueEnum};

use super::Global;
use crate::pg::Lsn;
use crate::repo::manifest::BackupId;
use crate::restore::{
    self, parse_tablespace_mapping, parse_target_time, RestoreOptions, Target, TargetAction,
};

/// Arguments of `restore`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("target").multiple(false)))]
pub struct RestoreArgs {
    /// The new data directory; must be absent or empty.
    #[arg(long, value_name = "DIR")]
    to: PathBuf,
    /// The backup to restore (an id from `lifeboat list`); default: the newest that ends before
    /// the target.
    #[arg(long, value_name = "ID", value_parser = parse_backup_id)]
    backup: Option<BackupId>,
    /// Recover to this instant: `2026-12-03 17:20:05.123` (UTC) or with an offset
    /// (`2026-12-03T18:20:05+01:00`).
    #[arg(long, value_name = "TIME", group = "target")]
    target_time: Option<String>,
    /// Recover to this WAL position, e.g. 0/5000028.
    #[arg(long, value_name = "LSN", group = "target")]
    target_lsn: Option<Lsn>,
    /// Recover through the commit of this transaction id.
    #[arg(long, value_name = "XID", group = "target")]
    target_xid: Option<u64>,
    /// Recover to this named restore point (pg_create_restore_point).
    #[arg(long, value_name = "NAME", group = "target")]
    target_name: Option<String>,
    /// Stop as soon as the backup is consistent.
    #[arg(long, group = "target")]
    target_immediate: bool,
    /// What the server does at the target (needs a target) [PostgreSQL's default: pause].
    #[arg(long, value_enum, value_name = "ACTION", requires = "target")]
    target_action: Option<ActionArg>,
    /// Start PostgreSQL (as the owner of DIR) and wait until recovery reaches the target.
    #[arg(long)]
    start: bool,
    /// Port for the restored server (written to postgresql.auto.conf).
    #[arg(long, value_name = "P")]
    port: Option<u16>,
    /// Restore tablespace OID to DIR instead of `<DIR>/pg_tblspc_restored/<OID>`; repeatable.
    #[arg(long, value_name = "OID=DIR", value_parser = parse_tablespace_mapping)]
    tablespace_map: Vec<(u32, PathBuf)>,
    /// Restore from this repository (a name from the configuration); default: the first that
    /// opens, in configuration order.
    #[arg(long, value_name = "NAME")]
    repository: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// `--target-action` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum ActionArg {
    Promote,
    Pause,
    Shutdown,
}

impl From<ActionArg> for TargetAction {
    fn from(a: ActionArg) -> TargetAction {
        match a {
            ActionArg::Promote => TargetAction::Promote,
            ActionArg::Pause => TargetAction::Pause,
            ActionArg::Shutdown => TargetAction::Shutdown,
        }
    }
}

fn parse_backup_id(s: &str) -> Result<BackupId, String> {
    BackupId::parse(s).ok_or_else(|| format!("{s:?} is not a backup id like 20261203T171706Z"))
}

impl RestoreArgs {
    fn target(&self) -> anyhow::Result<Target> {
        Ok(
            match (
                &self.target_time,
                self.target_lsn,
                self.target_xid,
                &self.target_name,
            ) {
                (Some(t), ..) => Target::Time(parse_target_time(t)?),
                (_, Some(lsn), ..) => Target::Lsn(lsn),
                (_, _, Some(xid), _) => Target::Xid(xid),
                (.., Some(name)) => Target::Name(name.clone()),
                _ if self.target_immediate => Target::Immediate,
                _ => Target::Latest,
            },
        )
    }
}

/// Runs the restore and prints its report.
pub async fn run(g: &Global, args: RestoreArgs) -> anyhow::Result<()> {
    let config = g.load()?;
    let cluster = config.cluster(g.cluster.as_deref())?;
    let exe = std::env::current_exe().context("cannot find the running lifeboat binary")?;
    let mut opts = RestoreOptions::new(args.to.clone(), exe);
    opts.target = args.target()?;
    opts.backup = args.backup.clone();
    if let Some(action) = args.target_action {
        opts.action = action.into();
    }
    opts.start = args.start;
    opts.port = args.port;
    opts.tablespace_map = args.tablespace_map.iter().cloned().collect();
    opts.repository = args.repository.clone();
    let report = restore::run(&config, cluster, &opts)
        .await
        .with_context(|| {
            format!(
                "restore of cluster {} to {}",
                cluster.name,
                args.to.display()
            )
        })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
        println!("{}", next_step(&opts));
    }
    Ok(())
}

/// What the operator does next, since the restored cluster's state depends on the options.
fn next_step(opts: &RestoreOptions) -> String {
    let dir = opts.to.display();
    if !opts.start {
        return format!(
            "next: start it as the directory's owner with `pg_ctl -D {dir} start`; recovery then runs to the target"
        );
    }
    match (&opts.target, opts.action) {
        (restore::Target::Latest, _) | (_, restore::TargetAction::Promote) => {
            "next: the cluster is promoted and writable; it does not archive (archive_mode = off): \
             set archiving and take a new backup before it becomes a primary"
                .into()
        }
        (_, restore::TargetAction::Pause) => {
            "next: the cluster is PAUSED at the target and read-only; check the data, then run \
             SELECT pg_wal_replay_resume(); to promote it (or restore with --target-action promote)"
                .into()
        }
        (_, restore::TargetAction::Shutdown) => {
            "next: the server stopped at the target; to open it, set \
             recovery_target_action = 'promote' in postgresql.auto.conf and start it"
                .into()
        }
    }
}
