//! Talking to a cluster with the PostgreSQL client tools: psql, pg_dump, pg_amcheck, pg_checksums.
//!
//! Example: `cluster.psql("postgres", "SELECT count(*) FROM pgbench_accounts")` runs
//! `psql -X -q -At -v ON_ERROR_STOP=1 -f -` over the unix socket with the SQL on stdin and
//! returns `"100000"`.
//!
//! Invariant: SQL goes through stdin as a script, so each statement runs on its own (as in a
//! migration file) and the first error stops it; a failure report carries the SQL and the log.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use super::Cluster;
use crate::pg_bin::pg_command;
use crate::run::{describe, failure_report, run};

/// A fixed `\restrict` key, so two dumps of the same data are byte-equal.
const RESTRICT_KEY: &str = "lifeboattests";

impl Cluster {
    /// Runs `sql` in database `db` and returns psql's unaligned output, trimmed; panics on error.
    #[track_caller]
    pub fn psql(&self, db: &str, sql: &str) -> String {
        match self.try_psql(db, sql) {
            Ok(output) => output,
            Err(report) => panic!("{report}"),
        }
    }

    /// Runs `sql` in database `db`; the error is a report with psql's stderr and the server log.
    pub fn try_psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let mut cmd = self.client("psql");
        cmd.args([
            "-X",
            "-q",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            db,
            "-f",
            "-",
        ]);
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", describe(&cmd)));
        // Fed from a thread: a large result could otherwise fill stdout while we still write.
        let stdin = child.stdin.take();
        let script = sql.to_owned();
        let feeder =
            std::thread::spawn(move || stdin.map(|mut pipe| pipe.write_all(script.as_bytes())));
        let output = child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("cannot wait for {}: {e}", describe(&cmd)));
        let _ = feeder.join();
        if output.status.success() {
            return Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned());
        }
        let details = format!("{}\n--- sql ---\n{sql}", failure_report(&cmd, &output));
        Err(self.report(&format!("psql on database {db} failed"), &details))
    }

    /// A plain-format `pg_dump` of database `db`, byte-equal for equal data.
    #[track_caller]
    pub fn pg_dump(&self, db: &str) -> String {
        let mut cmd = self.client("pg_dump");
        cmd.args(["--no-sync", "-d", db]);
        if pg_dump_has_restrict_key() {
            cmd.arg(format!("--restrict-key={RESTRICT_KEY}"));
        }
        let output = run(&mut cmd);
        if !output.status.success() {
            panic!(
                "{}",
                self.report("pg_dump failed", &failure_report(&cmd, &output))
            );
        }
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `pg_checksums --check` on the stopped cluster: Ok with its output, Err with a report.
    pub fn checksums_check(&self) -> Result<String, String> {
        let mut cmd = pg_command("pg_checksums", self.root.path());
        cmd.arg("--check").arg("-D").arg(&self.pgdata);
        self.outcome(&mut cmd, "pg_checksums --check")
    }

    /// `pg_amcheck --all --heapallindexed` on the running cluster, installing amcheck where
    /// missing: Ok with its output, Err with a report.
    pub fn amcheck(&self) -> Result<String, String> {
        let mut cmd = self.client("pg_amcheck");
        cmd.args(["--all", "--install-missing", "--heapallindexed"]);
        self.outcome(&mut cmd, "pg_amcheck")
    }

    /// A client program connected as `postgres` over the root's unix socket.
    fn client(&self, program: &str) -> Command {
        let mut cmd = pg_command(program, self.root.path());
        cmd.arg("-h").arg(self.root.socket_dir()).args([
            "-p",
            &self.port().to_string(),
            "-U",
            "postgres",
        ]);
        cmd
    }

    fn outcome(&self, cmd: &mut Command, what: &str) -> Result<String, String> {
        let output = run(cmd);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() {
            return Ok(stdout);
        }
        Err(self.report(&format!("{what} failed"), &failure_report(cmd, &output)))
    }
}

/// Whether pg_dump knows `--restrict-key` (minor releases from August 2025 on), without which
/// it writes a random key into every dump.
fn pg_dump_has_restrict_key() -> bool {
    static KNOWN: OnceLock<bool> = OnceLock::new();
    *KNOWN.get_or_init(|| {
        let help = Command::new(crate::pg_tool("pg_dump"))
            .arg("--help")
            .output();
        help.is_ok_and(|output| String::from_utf8_lossy(&output.stdout).contains("--restrict-key"))
    })
}
