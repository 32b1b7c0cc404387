//! End-to-end test harness: real PostgreSQL clusters, each in a throwaway test root.
//!
//! A test builds a [`TestRoot`] (one directory under the system temp dir), creates clusters in
//! it with [`Cluster::init`], loads them with pgbench and runs the Lifeboat binaries copied into
//! the root's `bin/`:
//!
//! ```no_run
//! use lifeboat_tests::{pgbench_invariants_hold, Cluster, TestRoot};
//!
//! let root = TestRoot::new();
//! let primary = Cluster::init(&root, "primary");
//! primary.start();
//! primary.pgbench_init(1);
//! primary.pgbench_run(2, 3);
//! assert!(pgbench_invariants_hold(&primary));
//! ```
//!
//! Invariant: every PostgreSQL program and every Lifeboat command runs through [`as_postgres`],
//! so when the tests run as root (as in CI) the clusters, the repository and the state are owned
//! by `postgres`, and nothing a test creates outlives it: dropping the root (also while a panic
//! unwinds, and at process exit for anything leaked) stops its servers before deleting files.

#![warn(missing_docs)]

mod azurite;
mod binaries;
mod cleanup;
mod cluster;
mod kek;
mod pg_bin;
mod pgbench;
mod port;
mod privilege;
mod root;
mod run;
mod setup;
mod setup_azure;
mod setup_multi;
mod setup_stream;

pub use azurite::{write_azure_key_file, Azurite, AZURITE_ACCOUNT, AZURITE_KEY};
pub use binaries::{built_bin_dir, LIFEBOAT_BINARIES};
pub use cluster::Cluster;
pub use kek::write_kek;
pub use pg_bin::{pg_bin_dir, pg_tool};
pub use pgbench::{pgbench_balances, pgbench_invariants_hold, PgbenchLoad};
pub use port::free_port;
pub use privilege::{as_postgres, give_to_postgres, running_as_root};
pub use root::TestRoot;
pub use run::{describe, run, run_ok};
pub use setup::Archived;
pub use setup_multi::{MultiRepo, Residency};
pub use setup_stream::{repo_durable_end, Daemon, StreamOptions, PARTIAL_UPLOAD_INTERVAL};
