//! A cluster set up the way an operator sets up Lifeboat: a KEK, a configuration file, an
//! initialised local repository, and `archive_command` running `lifeboat wal-push`.
//!
//! Example: `let a = Archived::new("primary"); a.lifeboat_ok(&["backup"]);`

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use crate::{run, run_ok, write_kek, Cluster, TestRoot};

/// A running cluster archiving into a Lifeboat repository.
pub struct Archived {
    /// The test root holding everything.
    pub root: TestRoot,
    /// The source cluster, started.
    pub cluster: Cluster,
    /// The configuration file.
    pub config: PathBuf,
}

impl Archived {
    /// Creates, configures and starts a cluster, and initialises its repository.
    #[track_caller]
    pub fn new(name: &str) -> Archived {
        Archived::build(name, true, |_| ConfigParts::default())
    }

    /// Creates a cluster (archiving through `lifeboat wal-push` when `archive`), starts it,
    /// writes its configuration from the parts `parts` gives, and initialises the repositories.
    #[track_caller]
    pub fn build(
        name: &str,
        archive: bool,
        parts: impl FnOnce(&TestRoot) -> ConfigParts,
    ) -> Archived {
        let root = TestRoot::new();
        let cluster = Cluster::init(&root, name);
        write_kek(&root);
        let config = root.config_path();
        if archive {
            let command = format!(
                "{} --config {} wal-push %p",
                root.lifeboat_path().display(),
                config.display()
            );
            cluster.set("archive_mode", "on");
            cluster.set("archive_command", &command);
        } else {
            cluster.set("archive_mode", "off");
        }
        cluster.start();
        // After start: the harness may have moved the cluster to another free port.
        let text = config_text(&root, &cluster, &parts(&root));
        root.write_file("lifeboat.toml", text);
        let a = Archived {
            root,
            cluster,
            config,
        };
        a.lifeboat_ok(&["repo", "init"]);
        a
    }

    /// Runs `lifeboat --config <config> ARGS`.
    pub fn lifeboat(&self, args: &[&str]) -> Output {
        run(self
            .root
            .lifeboat()
            .arg("--config")
            .arg(&self.config)
            .args(args))
    }

    /// Runs `lifeboat` and panics unless it succeeds; returns stdout.
    #[track_caller]
    pub fn lifeboat_ok(&self, args: &[&str]) -> String {
        run_ok(
            self.root
                .lifeboat()
                .arg("--config")
                .arg(&self.config)
                .args(args),
        )
    }

    /// Runs `lifeboat-drill --config <config> ARGS`.
    pub fn drill(&self, args: &[&str]) -> Output {
        run(self
            .root
            .lifeboat_drill()
            .arg("--config")
            .arg(&self.config)
            .args(args))
    }

    /// One SQL statement on the source's `postgres` database.
    #[track_caller]
    pub fn sql(&self, sql: &str) -> String {
        self.cluster.psql("postgres", sql)
    }

    /// Switches WAL and waits until the segment that was current is archived.
    #[track_caller]
    pub fn switch_and_archive(&self) {
        let before = self.sql("SELECT pg_walfile_name(pg_current_wal_lsn())");
        self.sql("SELECT pg_switch_wal()");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let last = self.sql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver");
            if last.as_str() >= before.as_str() && !last.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "segment {before} not archived in 60 s; last {last}\n{}",
                self.cluster.log_tail(30)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Inserts marker 1 into `marker(n int)`, takes the time half a second later (UTC, no
    /// offset, as an operator types it), and inserts marker 2 half a second after that: a
    /// restore to the returned time must hold marker 1 and not marker 2.
    #[track_caller]
    pub fn markers_around_a_target(&self) -> String {
        self.sql("INSERT INTO marker VALUES (1)");
        std::thread::sleep(Duration::from_millis(500));
        let target = self.sql(
            "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')",
        );
        std::thread::sleep(Duration::from_millis(500));
        self.sql("INSERT INTO marker VALUES (2)");
        target
    }

    /// A fresh directory for a restore, inside the root.
    pub fn restore_dir(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    /// Restores with ARGS (a target, without `--start`) into `<root>/<name>/data`, promoting at
    /// the target, and starts it as a cluster the harness manages; waits for promotion.
    #[track_caller]
    pub fn restore_and_start(&self, name: &str, args: &[&str]) -> Cluster {
        let dir = self.root.mkdir(name);
        let pgdata = dir.join("data");
        let mut all = vec!["restore", "--to", path_str(&pgdata)];
        all.extend_from_slice(args);
        if !args.is_empty() {
            // Without a target, recovery replays everything and promotes by itself.
            all.extend_from_slice(&["--target-action", "promote"]);
        }
        self.lifeboat_ok(&all);
        let restored = Cluster::adopt(&self.root, name, &pgdata, crate::free_port());
        restored.start();
        restored.wait_for_recovery_end(Duration::from_secs(120));
        restored
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// The parts of a test configuration that differ between setups; the rest (state directory,
/// cluster, KEK, the backup's WAL timeout) is the same everywhere.
#[derive(Debug, Clone, Default)]
pub struct ConfigParts {
    /// Top-level lines, before `[[cluster]]`.
    pub top: String,
    /// Extra lines of `[[cluster]]`.
    pub cluster: String,
    /// The `[[cluster.repository]]` blocks; empty means one local repository in the root.
    pub repositories: String,
    /// Extra lines of `[cluster.backup]`.
    pub backup: String,
    /// Further sections, such as `[cluster.wal]`.
    pub tail: String,
}

/// The configuration file of `cluster` in `root`, with `parts`.
pub fn config_text(root: &TestRoot, cluster: &Cluster, parts: &ConfigParts) -> String {
    let local = format!(
        "[[cluster.repository]]\nname = \"primary\"\nkind = \"local\"\npath = \"{}\"\n",
        root.repo_dir().display()
    );
    let repositories = match parts.repositories.is_empty() {
        true => local.as_str(),
        false => parts.repositories.as_str(),
    };
    format!(
        r#"state-dir = "{state}"
{top}
[[cluster]]
name = "{name}"
pgdata = "{pgdata}"
conninfo = "host={sock} port={port} user=postgres dbname=postgres"
pg-bin-dir = "{bin}"
{cluster_extra}
[cluster.encryption]
kek = "file:{kek}"

{repositories}
[cluster.targets]
rto = "4h"
rpo = "1h"

[cluster.backup]
wal-timeout = "60s"
{backup}
{tail}"#,
        state = root.state_dir().display(),
        top = parts.top,
        name = cluster.name(),
        pgdata = cluster.pgdata().display(),
        sock = root.socket_dir().display(),
        port = cluster.port(),
        bin = crate::pg_bin_dir().display(),
        cluster_extra = parts.cluster,
        kek = root.kek_path().display(),
        backup = parts.backup,
        tail = parts.tail,
    )
}
