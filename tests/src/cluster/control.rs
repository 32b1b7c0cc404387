//! Starting, stopping and waiting on a cluster's server with `pg_ctl`.
//!
//! Example: `cluster.start()` runs
//! `pg_ctl start -w -t 120 -D <root>/primary/data -l <root>/primary/postgres.log`; if the log
//! says `could not bind IPv4 address "127.0.0.1": Address already in use`, it moves the cluster to
//! another free port and tries again.
//!
//! Invariant: a start or stop that fails panics with pg_ctl's output and the server log, never
//! leaving a test to time out on a server that is not there.

use std::process::Command;
use std::time::{Duration, Instant};

use super::Cluster;
use crate::pg_bin::pg_command;
use crate::run::{failure_report, run};

/// How often a start is retried on a new port when the old one was taken meanwhile.
const START_ATTEMPTS: usize = 5;

/// Seconds pg_ctl waits for a start or stop (crash recovery after a load may take a while).
const PG_CTL_WAIT_SECS: &str = "120";

/// What the server log says when the port was taken between choosing it and binding it.
const PORT_TAKEN: &str = "Address already in use";

impl Cluster {
    /// Starts the server and waits until it accepts connections; panics with the log on failure.
    #[track_caller]
    pub fn start(&self) {
        if let Err(report) = self.try_start() {
            panic!("{report}");
        }
    }

    /// Starts the server, moving to a new port if its port is taken; the error is a report.
    ///
    /// For a restored cluster in archive recovery this returns once it accepts read-only
    /// connections; use [`Cluster::wait_for_recovery_end`] to wait for recovery to finish.
    pub fn try_start(&self) -> Result<(), String> {
        for _ in 1..START_ATTEMPTS {
            let log_before = self.log_len();
            match self.pg_ctl_start() {
                Ok(()) => return Ok(()),
                Err(_) if self.log_since(log_before).contains(PORT_TAKEN) => self.change_port(),
                Err(report) => return Err(report),
            }
        }
        self.pg_ctl_start()
    }

    /// Stops the server cleanly (`-m fast`, with a shutdown checkpoint).
    #[track_caller]
    pub fn stop(&self) {
        self.pg_ctl(&["stop", "-m", "fast"], "stop");
    }

    /// Stops the server as a crash would (`-m immediate`): the next start runs crash recovery.
    #[track_caller]
    pub fn stop_immediate(&self) {
        self.pg_ctl(&["stop", "-m", "immediate"], "stop -m immediate");
    }

    /// Stops the server cleanly and starts it again.
    #[track_caller]
    pub fn restart(&self) {
        self.stop();
        self.start();
    }

    /// Makes the running server re-read its configuration.
    #[track_caller]
    pub fn reload(&self) {
        self.pg_ctl(&["reload"], "reload");
    }

    /// Whether a server is running on the data directory (`pg_ctl status`).
    pub fn is_running(&self) -> bool {
        let output = run(&mut self.pg_ctl_command(&["status"]));
        output.status.success()
    }

    /// Waits until the server accepts connections and is out of recovery; panics after `timeout`.
    #[track_caller]
    pub fn wait_for_recovery_end(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        while Instant::now() < deadline {
            match self.try_psql("postgres", "SELECT pg_is_in_recovery()") {
                Ok(answer) if answer == "f" => return,
                Ok(answer) => last = format!("pg_is_in_recovery() = {answer}"),
                Err(report) => last = report,
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "{}",
            self.report(&format!("still in recovery after {timeout:?}"), &last)
        );
    }

    fn pg_ctl_start(&self) -> Result<(), String> {
        let mut cmd = self.pg_ctl_command(&["start"]);
        cmd.arg("-l").arg(self.log_path());
        let output = run(&mut cmd);
        if output.status.success() {
            return Ok(());
        }
        Err(self.report("start failed", &failure_report(&cmd, &output)))
    }

    #[track_caller]
    fn pg_ctl(&self, args: &[&str], what: &str) {
        let mut cmd = self.pg_ctl_command(args);
        let output = run(&mut cmd);
        if !output.status.success() {
            panic!(
                "{}",
                self.report(&format!("{what} failed"), &failure_report(&cmd, &output))
            );
        }
    }

    fn pg_ctl_command(&self, args: &[&str]) -> Command {
        let mut cmd = pg_command("pg_ctl", self.root.path());
        cmd.args(args)
            .args(["-w", "-t", PG_CTL_WAIT_SECS, "-D"])
            .arg(&self.pgdata);
        cmd
    }

    fn log_len(&self) -> u64 {
        std::fs::metadata(self.log_path()).map_or(0, |meta| meta.len())
    }

    /// The server log written after byte `offset`.
    fn log_since(&self, offset: u64) -> String {
        let log = std::fs::read(self.log_path()).unwrap_or_default();
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(log.len());
        String::from_utf8_lossy(&log[start..]).into_owned()
    }
}
