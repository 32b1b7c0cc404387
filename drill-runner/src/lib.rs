//! Lifeboat drills: restore a cluster into a scratch environment, prove it answers and its data
//! holds together, measure RTO and RPO against the cluster's targets, and document the result.
//!
//! Example: `lifeboat-drill run` on cluster `main` writes
//! `/var/lib/lifeboat/drills/20261203T171706Z/report.json` and `report.md`, and seals the JSON
//! into the repository as `drills/20261203T171706Z/report.json`.
//!
//! Invariant: a drill never touches the production cluster: it reads only the repository, and
//! its PostgreSQL listens on 127.0.0.1 in a directory it removes when it ends.
#![warn(missing_docs)]

pub mod checks;
pub mod drill;
pub mod measure;
pub mod report;
pub mod scratch;

pub use drill::{run_drill, DrillError, DrillOptions};
pub use measure::Verdict;
pub use report::DrillReport;
