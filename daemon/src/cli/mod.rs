//! The `lifeboat` command line: argument parsing (clap), logging, and one module per command
//! that turns a parsed command into a library call and its result into output and an exit code.
//!
//! Example: `lifeboat --config /etc/lifeboat/lifeboat.toml --cluster main list --json`.
//!
//! Invariant: stdout carries only command output and stderr carries logs and errors, so a
//! command's output can be piped; `wal-fetch` never exits 1 except for a confirmed absence,
//! not even for a bad argument (see [`crate::wal::fetch`]).

mod backup;
mod daemon;
mod list;
mod logging;
mod repo_init;
mod restore;
mod wal;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::config::{Config, DEFAULT_PATH};
use crate::wal::fetch::EXIT_FAILED;

/// Exit status of a command that failed (other than wal-fetch).
pub const EXIT_ERROR: u8 = 1;

/// Lifeboat keeps a PostgreSQL cluster recoverable to any moment: WAL archive, base backups,
/// point-in-time restore.
#[derive(Debug, Parser)]
#[command(name = "lifeboat", version)]
pub struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// The configuration file.
    #[arg(long, global = true, env = "LIFEBOAT_CONFIG", default_value = DEFAULT_PATH)]
    #[arg(value_name = "FILE")]
    config: PathBuf,
    /// The cluster to work on; may be left out when the file describes only one.
    #[arg(long, global = true, value_name = "NAME")]
    cluster: Option<String>,
}

impl Global {
    /// Loads the configuration from its absolute path, so commands written into PostgreSQL's
    /// settings (restore_command) find it from any directory.
    fn load(&self) -> anyhow::Result<Config> {
        let path = std::path::absolute(&self.config)
            .with_context(|| format!("cannot make {} absolute", self.config.display()))?;
        Ok(Config::load(&path)?)
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Manage repositories.
    Repo(repo_init::RepoArgs),
    /// Stream WAL of every cluster with `[cluster.wal] mode = "stream"` until stopped.
    Daemon(daemon::DaemonArgs),
    /// Take a base backup into every repository of the cluster.
    Backup(backup::BackupArgs),
    /// Archive one WAL file (PostgreSQL's archive_command).
    WalPush(wal::PushArgs),
    /// Fetch one WAL file for recovery (PostgreSQL's restore_command).
    WalFetch(wal::FetchArgs),
    /// List backups and the recoverable window.
    List(list::ListArgs),
    /// Restore a backup to a new data directory, to a point in time.
    Restore(restore::RestoreArgs),
}

/// Runs the `lifeboat` binary.
pub fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let fetching = args.iter().skip(1).any(|a| a == "wal-fetch");
    if fetching {
        exit_failed_on_panic();
    }
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e, fetching),
    };
    logging::init();
    let failure = if fetching { EXIT_FAILED } else { EXIT_ERROR };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build();
    match runtime {
        Ok(runtime) => runtime.block_on(cli.run()),
        Err(e) => {
            print_error(&anyhow::Error::new(e).context("cannot start the async runtime"));
            ExitCode::from(failure)
        }
    }
}

/// A panic exits 101, which PostgreSQL would take as "file absent" and end recovery early; in
/// wal-fetch it must exit above 125 instead.
fn exit_failed_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        std::process::exit(EXIT_FAILED.into());
    }));
}

/// Help and version exit 0; a usage error exits 2 as clap's convention is, except for
/// wal-fetch, where anything but 0 or 1 must be above 125.
fn usage_error(e: &clap::Error, fetching: bool) -> ExitCode {
    let _ = e.print();
    match (e.use_stderr(), fetching) {
        (false, _) => ExitCode::SUCCESS,
        (true, true) => ExitCode::from(EXIT_FAILED),
        (true, false) => ExitCode::from(e.exit_code().clamp(1, 125) as u8),
    }
}

impl Cli {
    async fn run(self) -> ExitCode {
        let g = &self.global;
        let result = match self.command {
            Command::WalFetch(args) => return wal::fetch(g, args).await,
            Command::Repo(args) => repo_init::run(g, args).await,
            Command::Daemon(args) => daemon::run(g, args).await,
            Command::Backup(args) => backup::run(g, args).await,
            Command::WalPush(args) => wal::push(g, args).await,
            Command::List(args) => list::run(g, args).await,
            Command::Restore(args) => restore::run(g, args).await,
        };
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                print_error(&e);
                ExitCode::from(EXIT_ERROR)
            }
        }
    }
}

/// Prints `error: <each cause, joined by ": ">` and then the `hint:` and detail lines the
/// messages carry, skipping a cause whose text its wrapper already showed.
fn print_error(e: &anyhow::Error) {
    eprint!("{}", error_text(e));
}

/// The text [`print_error`] prints; `lifeboat-drill` prints its errors the same way.
pub fn error_text(e: &anyhow::Error) -> String {
    let mut heads: Vec<String> = Vec::new();
    let mut details: Vec<String> = Vec::new();
    let mut shown = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if shown.contains(&text) {
            continue;
        }
        let mut lines = text.lines();
        heads.extend(lines.next().map(str::to_string));
        details.extend(lines.map(str::to_string));
        shown.push_str(&text);
        shown.push('\n');
    }
    let mut out = format!("error: {}\n", heads.join(": "));
    for d in details {
        out.push_str(&d);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_print_each_cause_once_and_hints_last() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "permission denied");
        let e = anyhow::Error::new(io)
            .context("read wal/x in local /srv: permission denied\nhint: chmod it")
            .context("wal-push pg_wal/x");
        assert_eq!(
            error_text(&e),
            "error: wal-push pg_wal/x: read wal/x in local /srv: permission denied\n\
             hint: chmod it\n"
        );
    }

    #[test]
    fn an_unknown_config_key_is_named_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lifeboat.toml");
        let text = "state-dir = \"/tmp/x\"\n\n[[cluster]]\nname = \"main\"\nbogus-key = 1\n";
        std::fs::write(&path, text).unwrap();
        let g = Global {
            config: path,
            cluster: None,
        };
        let err = error_text(&g.load().unwrap_err());
        assert!(err.contains("line 5") && err.contains("bogus-key"), "{err}");
    }

    #[test]
    fn the_example_configuration_is_valid() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../config/lifeboat.example.toml"
        );
        let config = Config::load(std::path::Path::new(path)).unwrap();
        assert_eq!(config.cluster(None).unwrap().name, "main");
    }

    #[test]
    fn the_command_line_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli =
            Cli::try_parse_from(["lifeboat", "wal-fetch", "A", "B", "--cluster", "c"]).unwrap();
        assert_eq!(cli.global.cluster.as_deref(), Some("c"));
        assert!(Cli::try_parse_from(["lifeboat", "wal-fetch", "A"]).is_err());
    }
}
