//! A Lifeboat repository: its identity file, key ring, and sealed objects, on any [`Storage`].
//!
//! Object names (each has a module with its `path()` and `parse()`):
//! `lifeboat.repo` ([`info`]), `keys/k0001` ([`keys`]), `wal/00000001/000000010000000000000003`
//! and `wal/00000002.history` ([`wal`]), `packs/3f/3f9a…` ([`pack`]), `index/77c1…` ([`index`]),
//! `backups/20261203T171706Z/manifest` ([`manifest`]).
//!
//! Invariant: every write is create-only and read back before it counts; every read is
//! authenticated. A backup exists only once its manifest is stored, and the manifest is the last
//! object a backup writes.

pub mod index;
pub mod info;
pub mod keys;
pub mod manifest;
pub mod pack;
pub mod wal;

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::{ClusterConfig, RepositoryConfig, RepositoryKind};
use crate::crypto::envelope::{self, ContentId, Kind};
use crate::crypto::kek::Kek;
use crate::crypto::keyring::KeyEntry;
use crate::crypto::CryptoError;
use crate::storage::azure::{AzureSettings, AzureStorage};
use crate::storage::local::LocalStorage;
use crate::storage::{Storage, StorageError};

pub use info::RepoInfo;

/// Errors reading or writing a repository.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// The storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// An object did not authenticate or a key did not open.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// An object authenticated but its content makes no sense.
    #[error("object {name} is not valid: {reason}")]
    Format {
        /// The object.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The location holds no repository.
    #[error("no Lifeboat repository at {location} (lifeboat.repo is missing)\nhint: check the repository's location in the configuration (a typo, or storage not mounted?); only for a new repository, run `lifeboat repo init`")]
    NotInitialized {
        /// Where we looked.
        location: String,
    },
    /// Another object is already stored under this name.
    #[error("object {name} already exists with different content (stored content id {stored}, new {new}); the stored object is kept")]
    Conflict {
        /// The object.
        name: String,
        /// Content id of the stored object.
        stored: String,
        /// Content id of what was offered.
        new: String,
    },
    /// A write read back differently.
    #[error("object {name} did not read back as written in {location}")]
    VerifyFailed {
        /// The object.
        name: String,
        /// Where.
        location: String,
    },
}

impl RepoError {
    /// Whether trying again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            RepoError::Storage(e) => e.is_retryable(),
            RepoError::VerifyFailed { .. } => true,
            _ => false,
        }
    }
}

/// What a create-only write found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The object was stored now.
    Stored,
    /// The same content was already stored under that name.
    AlreadyStored,
}

/// An open repository: identity, unwrapped key ring and storage.
#[derive(Debug, Clone)]
pub struct Repository {
    /// Its name in the configuration.
    pub name: String,
    /// Its identity file.
    pub info: RepoInfo,
    storage: Arc<dyn Storage>,
    keys: Vec<KeyEntry>,
}

/// Builds the storage a repository configuration points at.
pub fn storage_for(rc: &RepositoryConfig) -> Arc<dyn Storage> {
    match &rc.kind {
        RepositoryKind::Local { path } => Arc::new(LocalStorage::new(PathBuf::from(path))),
        RepositoryKind::Azure {
            account,
            container,
            prefix,
            endpoint,
            auth,
            request_timeout,
            ..
        } => {
            let mut settings = AzureSettings::new(account, container, auth.clone());
            settings.endpoint = endpoint.clone();
            settings.prefix = prefix.clone();
            settings.request_timeout = *request_timeout;
            Arc::new(AzureStorage::new(settings))
        }
    }
}

impl Repository {
    /// Creates a repository: identity file first, then the first key-ring entry.
    pub async fn init(
        name: &str,
        storage: Arc<dyn Storage>,
        kek: &Kek,
        info: RepoInfo,
    ) -> Result<Repository, RepoError> {
        let entry = KeyEntry::generate(&keys::key_id(1));
        let identity = info.to_json();
        let info = RepoInfo::parse(&identity)?;
        let wrapped = serde_json::to_vec_pretty(&entry.wrap(kek, &info.sha256))
            .expect("key ring entries serialize");
        storage.put_new(info::PATH, &identity).await?;
        storage
            .put_new(&keys::path(&entry.key_id), &wrapped)
            .await?;
        Ok(Repository {
            name: name.into(),
            info,
            storage,
            keys: vec![entry],
        })
    }

    /// Opens an existing repository and unwraps its key ring with `kek`.
    pub async fn open(
        name: &str,
        storage: Arc<dyn Storage>,
        kek: &Kek,
    ) -> Result<Repository, RepoError> {
        let raw = match storage.get(info::PATH).await {
            Err(StorageError::NotFound(_)) => {
                return Err(RepoError::NotInitialized {
                    location: storage.location(),
                })
            }
            r => r?,
        };
        let info = RepoInfo::parse(&raw)?;
        let keys = keys::load_all(storage.as_ref(), kek, &info).await?;
        Ok(Repository {
            name: name.into(),
            info,
            storage,
            keys,
        })
    }

    /// Opens every repository of `cluster`, in configuration order.
    pub async fn open_all(
        cluster: &ClusterConfig,
        kek: &Kek,
    ) -> Result<Vec<Repository>, RepoError> {
        let mut out = Vec::new();
        for rc in &cluster.repositories {
            out.push(Repository::open(&rc.name, storage_for(rc), kek).await?);
        }
        Ok(out)
    }

    /// The storage under this repository.
    pub fn storage(&self) -> &dyn Storage {
        self.storage.as_ref()
    }

    /// The key-ring entry new objects are sealed with.
    pub fn current_key(&self) -> &KeyEntry {
        self.keys
            .last()
            .expect("an open repository has at least one key")
    }

    /// The content id of `data` in this repository.
    pub fn content_id(&self, data: &[u8]) -> ContentId {
        ContentId::of(self.current_key(), data)
    }

    /// Seals `plain` for object `name` (or chunk name) without storing it.
    pub fn seal(&self, name: &str, kind: Kind, plain: &[u8], level: i32) -> Vec<u8> {
        envelope::seal(
            self.current_key(),
            &self.info.repository_id,
            name,
            kind,
            plain,
            level,
        )
    }

    /// Opens sealed bytes of object `name`.
    pub fn open_sealed(&self, name: &str, kind: Kind, bytes: &[u8]) -> Result<Vec<u8>, RepoError> {
        let find = |id: &str| self.keys.iter().find(|k| k.key_id == id).cloned();
        Ok(envelope::open(
            find,
            &self.info.repository_id,
            name,
            kind,
            bytes,
        )?)
    }

    /// Stores sealed bytes create-only and reads them back. An existing object with the same
    /// content id counts as stored; different content is a [`RepoError::Conflict`].
    pub async fn put_verified(&self, name: &str, sealed: &[u8]) -> Result<PutOutcome, RepoError> {
        match self.storage.put_new(name, sealed).await {
            Ok(()) => {}
            Err(StorageError::AlreadyExists(_)) => {
                return self.compare_existing(name, sealed).await
            }
            Err(e) => return Err(e.into()),
        }
        let back = self.storage.get(name).await?;
        if back != sealed {
            return Err(RepoError::VerifyFailed {
                name: name.into(),
                location: self.storage.location(),
            });
        }
        Ok(PutOutcome::Stored)
    }

    async fn compare_existing(&self, name: &str, sealed: &[u8]) -> Result<PutOutcome, RepoError> {
        let header = envelope::read_header(name, sealed)?;
        let new = header.content_id;
        let stored_bytes = self.storage.get(name).await?;
        let stored = envelope::read_header(name, &stored_bytes)?.content_id;
        // The header alone is not authenticated: a damaged stored copy must not let the caller
        // (PostgreSQL's archiver) drop the only good one.
        self.open_sealed(name, header.kind, &stored_bytes)?;
        if stored == new {
            return Ok(PutOutcome::AlreadyStored);
        }
        Err(RepoError::Conflict {
            name: name.into(),
            stored: stored.to_hex(),
            new: new.to_hex(),
        })
    }

    /// Seals and stores object `name`.
    pub async fn put_object(
        &self,
        name: &str,
        kind: Kind,
        plain: &[u8],
        level: i32,
    ) -> Result<PutOutcome, RepoError> {
        let sealed = self.seal(name, kind, plain, level);
        self.put_verified(name, &sealed).await
    }

    /// Reads and opens object `name`.
    pub async fn get_object(&self, name: &str, kind: Kind) -> Result<Vec<u8>, RepoError> {
        let bytes = self.storage.get(name).await?;
        self.open_sealed(name, kind, &bytes)
    }
}

impl Repository {
    /// Stores bytes named by their own hash (packs): an existing object of that name already
    /// holds these bytes, so it counts as stored. Read back before it counts.
    pub async fn put_hashed(&self, name: &str, bytes: &[u8]) -> Result<PutOutcome, RepoError> {
        let outcome = match self.storage.put_new(name, bytes).await {
            Ok(()) => PutOutcome::Stored,
            Err(StorageError::AlreadyExists(_)) => PutOutcome::AlreadyStored,
            Err(e) => return Err(e.into()),
        };
        let back = self.storage.get(name).await?;
        if back != bytes {
            return Err(RepoError::VerifyFailed {
                name: name.into(),
                location: self.storage.location(),
            });
        }
        Ok(outcome)
    }
}
