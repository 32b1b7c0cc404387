//! Base backups: a non-exclusive SQL backup on a held session, the data directory walked with
//! PostgreSQL's exclusions, files cut into chunks, stored, and committed by a manifest written
//! last, only once the WAL from start to stop is in the repository.

pub mod walk;
