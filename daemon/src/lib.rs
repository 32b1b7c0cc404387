//! Lifeboat: PostgreSQL backup, WAL archive, point-in-time restore.
#![warn(missing_docs)]

pub mod backup;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod daemon;
pub mod metrics;
pub mod pg;
pub mod repo;
pub mod residency;
pub mod restore;
pub mod storage;
pub mod wal;
