//! `lifeboat-drill`: disaster-recovery drills of a Lifeboat-protected cluster.
//!
//! Example: `lifeboat-drill --config /etc/lifeboat/lifeboat.toml run --json`.
//!
//! Exit status: 0 when the drill passed, 1 when it ran and missed a target or failed a check,
//! 2 when it could not run.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, Context};
use clap::{Parser, Subcommand};
use lifeboat::config::Config;
use lifeboat_drill::report::{self, DrillReport};
use lifeboat_drill::{run_drill, DrillOptions, Verdict};

/// Disaster-recovery drills: restore into scratch, check, measure RTO and RPO, report.
#[derive(Parser)]
#[command(name = "lifeboat-drill", version)]
struct Cli {
    /// The configuration file.
    #[arg(long, global = true, value_name = "FILE", env = "LIFEBOAT_CONFIG", default_value = lifeboat::config::DEFAULT_PATH)]
    config: PathBuf,
    /// The cluster to drill; may be left out when the configuration has one.
    #[arg(long, global = true, value_name = "NAME")]
    cluster: Option<String>,
    /// The `lifeboat` binary the restored cluster fetches WAL with [default: `lifeboat` beside
    /// this program].
    #[arg(long, global = true, value_name = "PATH")]
    lifeboat_bin: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a drill now: restore the latest backup into scratch, promote, check, measure, report.
    Run {
        /// Print the JSON report instead of the summary.
        #[arg(long)]
        json: bool,
        /// Restore from this repository; default: the first that opens, in configuration
        /// order.
        #[arg(long, value_name = "NAME")]
        repository: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => return fail(&anyhow!(e).context("cannot start the async runtime")),
    };
    let result = match &cli.command {
        Command::Run { json, repository } => runtime.block_on(run(&cli, *json, repository.clone())),
    };
    match result {
        Ok(Verdict::Pass) => ExitCode::SUCCESS,
        Ok(Verdict::Fail) => ExitCode::from(1),
        Err(e) => fail(&e),
    }
}

/// Prints the error and exits 2.
fn fail(e: &anyhow::Error) -> ExitCode {
    eprint!("{}", lifeboat::cli::error_text(e));
    ExitCode::from(2)
}

async fn run(cli: &Cli, json: bool, repository: Option<String>) -> anyhow::Result<Verdict> {
    let config = Config::load(&cli.config)?;
    let cluster = config.cluster(cli.cluster.as_deref())?;
    let lifeboat_bin = match &cli.lifeboat_bin {
        Some(p) => p.clone(),
        None => beside_this_program("lifeboat")?,
    };
    let opts = DrillOptions {
        lifeboat_bin,
        repository,
    };
    // Dropping the drill on a signal drops its scratch guard, which tears the cluster down.
    let report = tokio::select! {
        r = run_drill(&config, cluster, &opts) => r?,
        signal = shutdown_signal() => {
            return Err(anyhow!("interrupted by {signal}; the scratch environment was torn down"))
        }
    };
    if json {
        print!("{}", String::from_utf8_lossy(&report.to_json()));
    } else {
        print!("{}", summary(&report, &config.state_dir, cluster));
    }
    Ok(report.verdict)
}

fn summary(
    report: &DrillReport,
    state_dir: &Path,
    cluster: &lifeboat::config::ClusterConfig,
) -> String {
    let dir = report::local_dir(state_dir, &report.drill_id);
    let files = [dir.join(report::JSON_FILE), dir.join(report::MARKDOWN_FILE)];
    let object = report::object_name(&report.drill_id);
    let objects: Vec<String> = cluster
        .repositories
        .iter()
        .map(|r| format!("repository {}: {object}", r.name))
        .collect();
    report.summary(&files, &objects)
}

fn beside_this_program(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the path of lifeboat-drill")?;
    let dir = exe
        .parent()
        .with_context(|| format!("{} has no directory", exe.display()))?;
    Ok(dir.join(name))
}

async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

/// Human logs on a terminal, JSON lines otherwise, filtered by `LIFEBOAT_LOG`, else
/// `RUST_LOG`, else `info`, as `lifeboat` does.
fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let spec = std::env::var("LIFEBOAT_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok();
    let filter = spec.as_deref().and_then(|s| EnvFilter::try_new(s).ok());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter.unwrap_or_else(|| EnvFilter::new("info")))
        .with_writer(std::io::stderr);
    let _ = if std::io::stderr().is_terminal() {
        builder.with_target(false).try_init()
    } else {
        builder.json().with_span_list(false).try_init()
    };
}
