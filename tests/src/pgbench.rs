//! pgbench load on a test cluster, and the balance invariant that proves a copy is consistent.
//!
//! Example: after `cluster.pgbench_init(1)` (100 000 accounts) and `cluster.pgbench_run(4, 5)`,
//! `pgbench_balances(&cluster)` may be `[-81_513, -81_513, -81_513, -81_513]`: each TPC-B-like
//! transaction adds the same delta to one account, one teller, one branch and the history.
//!
//! Invariant: the four sums are equal in every transaction-consistent state, so a restored
//! cluster whose sums differ holds a torn copy. Runs pass `-n`, because pgbench otherwise
//! truncates `pgbench_history` first and the sums would part for a reason of its own.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::pg_bin::pg_command;
use crate::run::{describe, failure_report, run};
use crate::Cluster;

impl Cluster {
    /// Creates the pgbench tables in database `postgres` at `scale` (100 000 accounts each).
    #[track_caller]
    pub fn pgbench_init(&self, scale: u32) {
        let mut cmd = self.pgbench();
        cmd.args(["-i", "-q", "-s", &scale.to_string(), "postgres"]);
        self.pgbench_must_succeed(&mut cmd);
    }

    /// Runs the default pgbench load with `clients` clients for `seconds`; returns its summary.
    #[track_caller]
    pub fn pgbench_run(&self, clients: u32, seconds: u32) -> String {
        let mut cmd = self.pgbench_load(clients, seconds);
        self.pgbench_must_succeed(&mut cmd)
    }

    /// Starts the same load in the background; it stops after `seconds` or when told to.
    pub fn pgbench_spawn(&self, clients: u32, seconds: u32) -> PgbenchLoad {
        static RUNS: AtomicUsize = AtomicUsize::new(0);
        let run = RUNS.fetch_add(1, Ordering::SeqCst);
        let stdout = self.dir().join(format!("pgbench-{run}.out"));
        let stderr = self.dir().join(format!("pgbench-{run}.err"));
        let mut cmd = self.pgbench_load(clients, seconds);
        cmd.stdin(Stdio::null())
            .stdout(create(&stdout))
            .stderr(create(&stderr));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", describe(&cmd)));
        PgbenchLoad {
            child: Some(child),
            command: describe(&cmd),
            stdout,
            stderr,
        }
    }

    fn pgbench(&self) -> Command {
        let mut cmd = pg_command("pgbench", self.root().path());
        cmd.arg("-h").arg(self.root().socket_dir()).args([
            "-p",
            &self.port().to_string(),
            "-U",
            "postgres",
        ]);
        cmd
    }

    fn pgbench_load(&self, clients: u32, seconds: u32) -> Command {
        let threads = clients.clamp(1, 2);
        let mut cmd = self.pgbench();
        cmd.args(["-n", "-c", &clients.to_string(), "-j", &threads.to_string()])
            .args(["-T", &seconds.to_string(), "postgres"]);
        cmd
    }

    #[track_caller]
    fn pgbench_must_succeed(&self, cmd: &mut Command) -> String {
        let output = run(cmd);
        if !output.status.success() {
            panic!(
                "{}",
                self.report("pgbench failed", &failure_report(cmd, &output))
            );
        }
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

/// A background pgbench run; dropping it kills pgbench.
pub struct PgbenchLoad {
    child: Option<Child>,
    command: String,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl PgbenchLoad {
    /// Whether pgbench is still running.
    pub fn is_running(&mut self) -> bool {
        let child = self.child.as_mut();
        child.is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Waits for the run to end by itself; returns its summary, or panics with its output.
    pub fn finish(mut self) -> String {
        let status = self
            .child
            .take()
            .map(|mut child| child.wait())
            .unwrap_or_else(|| panic!("{} was already stopped", self.command))
            .unwrap_or_else(|e| panic!("cannot wait for {}: {e}", self.command));
        let stdout = std::fs::read_to_string(&self.stdout).unwrap_or_default();
        if !status.success() {
            let stderr = std::fs::read_to_string(&self.stderr).unwrap_or_default();
            panic!(
                "command failed: {} ({status})\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
                self.command
            );
        }
        stdout
    }

    /// Kills pgbench now; transactions in flight roll back, so the invariant still holds.
    pub fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PgbenchLoad {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The sums of `abalance`, `tbalance`, `bbalance` and history `delta`, in one snapshot.
pub fn pgbench_balances(cluster: &Cluster) -> [i64; 4] {
    let answer = cluster.psql(
        "postgres",
        "SELECT (SELECT coalesce(sum(abalance), 0) FROM pgbench_accounts), \
                (SELECT coalesce(sum(tbalance), 0) FROM pgbench_tellers), \
                (SELECT coalesce(sum(bbalance), 0) FROM pgbench_branches), \
                (SELECT coalesce(sum(delta), 0) FROM pgbench_history)",
    );
    let sums: Vec<i64> = answer
        .split('|')
        .map(|sum| {
            sum.parse()
                .unwrap_or_else(|e| panic!("pgbench sums {answer:?} are not numbers: {e}"))
        })
        .collect();
    sums.try_into()
        .unwrap_or_else(|sums| panic!("expected four pgbench sums, got {sums:?}"))
}

/// Whether the four pgbench sums agree (see [`pgbench_balances`]).
pub fn pgbench_invariants_hold(cluster: &Cluster) -> bool {
    let [accounts, tellers, branches, history] = pgbench_balances(cluster);
    accounts == tellers && tellers == branches && branches == history
}

fn create(path: &PathBuf) -> File {
    File::create(path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()))
}
