//! Lifeboat: PostgreSQL backup, WAL archive, point-in-time restore.
#![warn(missing_docs)]

pub mod backup;
pub mod pg;
