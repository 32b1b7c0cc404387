//! A PostgreSQL cluster under test: made with `initdb -k`, or adopted after a restore.
//!
//! Example: `Cluster::init(&root, "primary")` makes `<root>/primary/data` with data checksums,
//! appends the harness settings below to its `postgresql.conf`, and logs to
//! `<root>/primary/postgres.log`, outside the data directory so backups never carry it:
//!
//! ```text
//! listen_addresses = '127.0.0.1'
//! port = '41873'
//! unix_socket_directories = '/tmp/lifeboat-test-…/sock'
//! wal_level = 'replica'
//! ```
//!
//! Invariant: a cluster's server never outlives it: dropping the `Cluster` stops it at once, and
//! the test root's cleanup stops any server left under the root before deleting files.

mod control;
mod query;

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU16, Ordering};

use crate::cleanup::stop_server;
use crate::pg_bin::pg_command;
use crate::port::free_port;
use crate::run::run_ok;
use crate::TestRoot;

/// Settings every cluster made by the harness starts with, besides its port and socket directory.
const BASE_SETTINGS: [(&str, &str); 8] = [
    ("wal_level", "replica"),
    ("max_wal_senders", "5"),
    ("fsync", "on"),
    // Small enough for several clusters per test and four tests at once on a 2-core machine.
    ("shared_buffers", "16MB"),
    ("max_connections", "40"),
    ("logging_collector", "off"),
    ("log_line_prefix", "%m [%p] "),
    ("log_checkpoints", "on"),
];

/// A PostgreSQL cluster in a test root, owned by `postgres` when the tests run as root.
pub struct Cluster {
    root: TestRoot,
    name: String,
    dir: PathBuf,
    pgdata: PathBuf,
    port: AtomicU16,
}

impl Cluster {
    /// Creates `<root>/<name>/data` with `initdb -k` and the harness settings; not started.
    #[track_caller]
    pub fn init(root: &TestRoot, name: &str) -> Cluster {
        let dir = root.mkdir(name);
        let pgdata = dir.join("data");
        run_ok(
            pg_command("initdb", root.path())
                .arg("-D")
                .arg(&pgdata)
                .args(["--username=postgres", "--auth=trust", "--encoding=UTF8"])
                .args(["--locale=C", "--data-checksums", "--no-sync"]),
        );
        let cluster = Cluster::new(root, name, dir, pgdata, free_port());
        for (key, value) in BASE_SETTINGS {
            cluster.set(key, value);
        }
        cluster.set_identity();
        cluster
    }

    /// Takes over a data directory made by something else (a restore), to run it on `port`.
    ///
    /// `pgdata` must lie inside the root, so that cleanup finds it; the server log goes to
    /// `<root>/<name>/postgres.log`. The harness only appends the port and socket settings.
    pub fn adopt(root: &TestRoot, name: &str, pgdata: &Path, port: u16) -> Cluster {
        if !pgdata.starts_with(root.path()) {
            panic!(
                "cannot adopt {}: it is outside the test root {}",
                pgdata.display(),
                root.path().display()
            );
        }
        if !pgdata.join("PG_VERSION").is_file() {
            panic!("cannot adopt {}: it holds no PG_VERSION", pgdata.display());
        }
        let dir = root.mkdir(name);
        let cluster = Cluster::new(root, name, dir, pgdata.to_path_buf(), port);
        cluster.set_identity();
        cluster
    }

    /// Appends `key = 'value'` to `postgresql.conf`; the last setting of a key wins at the next
    /// start, restart or [`Cluster::reload`].
    pub fn set(&self, key: &str, value: &str) {
        let valid = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        if !valid {
            panic!("{key:?} is not a PostgreSQL setting name");
        }
        let escaped = value.replace('\\', "\\\\").replace('\'', "''");
        let conf = self.pgdata.join("postgresql.conf");
        let mut file = OpenOptions::new()
            .append(true)
            .open(&conf)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", conf.display()));
        writeln!(file, "{key} = '{escaped}'")
            .unwrap_or_else(|e| panic!("cannot append to {}: {e}", conf.display()));
    }

    /// The libpq connection string: `host=<socket dir> port=<port> user=postgres dbname=postgres`.
    pub fn conninfo(&self) -> String {
        format!(
            "host={} port={} user=postgres dbname=postgres",
            self.root.socket_dir().display(),
            self.port()
        )
    }

    /// The data directory.
    pub fn pgdata(&self) -> &Path {
        &self.pgdata
    }

    /// The TCP port (127.0.0.1) and unix socket number; it changes if a start meets a taken port.
    pub fn port(&self) -> u16 {
        self.port.load(Ordering::SeqCst)
    }

    /// The cluster's name, which is also its directory under the root.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cluster's directory `<root>/<name>`, holding the log (and the data, unless adopted).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The test root the cluster lives in.
    pub fn root(&self) -> &TestRoot {
        &self.root
    }

    /// The server log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    /// The last `lines` lines of the server log (empty if there is no log yet).
    pub fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read(self.log_path()).unwrap_or_default();
        let log = String::from_utf8_lossy(&log);
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn new(root: &TestRoot, name: &str, dir: PathBuf, pgdata: PathBuf, port: u16) -> Cluster {
        Cluster {
            root: root.clone(),
            name: name.to_owned(),
            dir,
            pgdata,
            port: AtomicU16::new(port),
        }
    }

    /// Points the server at this cluster's port and the root's socket directory.
    fn set_identity(&self) {
        self.set("listen_addresses", "127.0.0.1");
        self.set("port", &self.port().to_string());
        self.set(
            "unix_socket_directories",
            &self.root.socket_dir().to_string_lossy(),
        );
    }

    /// Moves the cluster to a new free port (after a start found its port taken).
    fn change_port(&self) {
        self.port.store(free_port(), Ordering::SeqCst);
        self.set("port", &self.port().to_string());
    }

    /// Formats a panic message: what failed, the details, and the end of the server log.
    pub(crate) fn report(&self, what: &str, details: &str) -> String {
        format!(
            "cluster {}: {what}\n{details}\n--- last lines of {} ---\n{}",
            self.name,
            self.log_path().display(),
            self.log_tail(30)
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        stop_server(self.root.path(), &self.pgdata);
    }
}
