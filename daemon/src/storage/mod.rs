//! The object-store trait every repository sits on, and its backends.
//!
//! Names are `/`-separated relative paths (`wal/00000001/000000010000000000000003`). Invariant:
//! `put_new` never replaces an object, and when it returns `Ok` the object is durable.

pub mod azure;
pub mod local;

use std::time::Duration;

use async_trait::async_trait;

/// One stored object as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Its name.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
}

/// A lock taken with [`Storage::lock`]: its object name and the id that releases it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The lock's object, `locks/<name>`.
    pub name: String,
    /// The holder's id (a GUID on Azure).
    pub id: String,
}

/// Errors of a storage backend.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// No object has this name.
    #[error("object {0} does not exist")]
    NotFound(String),
    /// A create-only write met an existing object.
    #[error("object {0} already exists")]
    AlreadyExists(String),
    /// Someone else holds the lock (lease) of this name.
    #[error("lock {0} is held by another process")]
    Locked(String),
    /// The name is not acceptable.
    #[error("invalid object name {0:?}")]
    InvalidName(String),
    /// The backend failed.
    #[error("{op} {name} in {location}: {source}")]
    Io {
        /// What was attempted.
        op: &'static str,
        /// The object.
        name: String,
        /// The backend's description.
        location: String,
        /// The cause.
        source: std::io::Error,
    },
}

impl StorageError {
    /// Whether trying again may succeed (an outage rather than a fact about the object).
    pub fn is_retryable(&self) -> bool {
        match self {
            StorageError::Io { source, .. } => !matches!(
                source.kind(),
                std::io::ErrorKind::PermissionDenied
                    | std::io::ErrorKind::InvalidInput
                    | std::io::ErrorKind::Unsupported
            ),
            _ => false,
        }
    }
}

/// An object store.
#[async_trait]
pub trait Storage: Send + Sync + std::fmt::Debug {
    /// Writes `data` as `name` if no object has that name; durable when it returns `Ok`.
    async fn put_new(&self, name: &str, data: &[u8]) -> Result<(), StorageError>;
    /// Reads a whole object.
    async fn get(&self, name: &str) -> Result<Vec<u8>, StorageError>;
    /// Reads `len` bytes at `offset`.
    async fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>, StorageError>;
    /// Lists objects whose names start with `prefix`, sorted by name.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError>;
    /// Removes an object; removing a missing one is not an error.
    async fn delete(&self, name: &str) -> Result<(), StorageError>;
    /// Where this store is, for messages: `local /srv/lifeboat/main`.
    fn location(&self) -> String;
    /// Takes the lock `locks/<name>` for `ttl` (a holder that dies loses it then);
    /// [`StorageError::Locked`] while another holder has it.
    async fn lock(&self, name: &str, ttl: Duration) -> Result<Lease, StorageError> {
        let _ = ttl;
        Err(StorageError::Io {
            op: "lock",
            name: lock_path(name),
            location: self.location(),
            source: std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "this storage has no locks",
            ),
        })
    }
    /// Releases a lock taken with [`Storage::lock`]; releasing a lost lock is not an error.
    async fn unlock(&self, lease: &Lease) -> Result<(), StorageError> {
        let _ = lease;
        Ok(())
    }
}

/// The object name of lock `name`.
pub fn lock_path(name: &str) -> String {
    format!("locks/{name}")
}

/// Checks an object name: relative, `/`-separated, no `.`/`..` parts, no empty parts.
pub fn check_name(name: &str) -> Result<(), StorageError> {
    let ok = !name.is_empty()
        && !name.starts_with('/')
        && name
            .split('/')
            .all(|p| !p.is_empty() && p != "." && p != ".." && !p.starts_with(".tmp."))
        && !name.contains('\0');
    if ok {
        Ok(())
    } else {
        Err(StorageError::InvalidName(name.to_string()))
    }
}
