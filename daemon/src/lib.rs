//! Lifeboat: PostgreSQL backup, WAL archive, point-in-time restore.
#![warn(missing_docs)]

pub mod backup;
pub mod config;
pub mod crypto;
pub mod pg;
pub mod repo;
pub mod storage;
