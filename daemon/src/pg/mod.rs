//! PostgreSQL facts Lifeboat depends on: LSN and WAL-name types, WAL segment headers and
//! records, page checksums, and the SQL helpers used by backup, restore and drills.

pub mod bin;
pub mod checksum;
pub mod lsn;
pub mod records;
pub mod replication;
pub mod segment;
pub mod sql;
pub mod wal_header;

pub use lsn::Lsn;
pub use segment::{SegmentName, TimelineId};
