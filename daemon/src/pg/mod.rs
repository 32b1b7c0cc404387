//! PostgreSQL facts Lifeboat depends on: LSN and WAL-name types, WAL segment headers and
//! records, page checksums, and the SQL helpers used by backup, restore and drills.

pub mod lsn;
pub mod segment;

pub use lsn::Lsn;
pub use segment::{SegmentName, TimelineId};
