//! Where chunks go: one sink per repository. Each repository has its own dedup key, so a chunk
//! gets a different content id in each, and is stored in each only if that repository lacks it.
//! A pack is uploaded as soon as it is full; the index of the packs this backup wrote is
//! stored when the copy ends, before any manifest.
//!
//! A sink of a repository with `required = false` that fails is marked failed and skipped from
//! then on: the backup goes on in the others and writes no manifest there.

use super::BackupError;
use crate::crypto::envelope::{self, ContentId, Kind};
use crate::repo::index::{ChunkIndex, ChunkLocation, IndexFile};
use crate::repo::manifest::BackupStats;
use crate::repo::pack::{self, PackWriter};
use crate::repo::Repository;

/// One repository's share of a running backup.
pub struct Sink {
    /// The repository.
    pub repo: Repository,
    known: ChunkIndex,
    pack: PackWriter,
    index: IndexFile,
    /// Figures for this repository.
    pub stats: BackupStats,
    level: i32,
    required: bool,
    failed: bool,
}

impl Sink {
    /// A sink that knows every chunk already in `repo` whose pack is still stored.
    pub async fn open(repo: Repository, level: i32, required: bool) -> Result<Sink, BackupError> {
        let mut known = repo.load_index().await?;
        // A chunk whose pack is gone must be stored again, or this backup inherits the loss.
        let lost = known.retain_packs(&repo.list_packs().await?);
        if lost > 0 {
            tracing::error!(repository = %repo.name, chunks = lost,
                "indexed chunks whose pack is missing; this backup stores them again");
        }
        Ok(Sink {
            repo,
            known,
            pack: PackWriter::default(),
            index: IndexFile::default(),
            stats: BackupStats::default(),
            level,
            required,
            failed: false,
        })
    }

    /// Whether an earlier step failed in this (non-required) repository.
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    /// Handles `e` from this sink: the backup's error when the repository is required, else
    /// logged at ERROR and the sink skipped from now on.
    pub fn fail(&mut self, e: BackupError) -> Result<(), BackupError> {
        if self.required {
            return Err(e);
        }
        tracing::error!(repository = %self.repo.name, error = %e,
            "backup failed in a non-required repository; it goes on in the others");
        self.failed = true;
        Ok(())
    }

    /// Stores `data` unless the repository has it; returns its content id.
    pub async fn put_chunk(&mut self, data: &[u8]) -> Result<ContentId, BackupError> {
        let key = self.repo.current_key();
        let id = ContentId::of(key, data);
        if self.known.get(&id).is_some() {
            return Ok(id);
        }
        let sealed = envelope::seal_with_id(
            key,
            &self.repo.info.repository_id,
            &pack::chunk_name(id),
            Kind::Chunk,
            data,
            id,
            self.level,
        );
        self.stats.bytes_new += data.len() as u64;
        self.pack.add(id, &sealed);
        // Known from now on, so a repeated chunk in this backup is stored once.
        let pending = ChunkLocation {
            pack: String::new(),
            slot: pack::Slot { offset: 0, len: 0 },
        };
        self.known.insert(id, pending);
        if self.pack.is_full() {
            self.flush_pack().await?;
        }
        Ok(id)
    }

    async fn flush_pack(&mut self) -> Result<(), BackupError> {
        let (id, bytes, chunks) = std::mem::take(&mut self.pack).finish();
        self.repo.put_hashed(&pack::path(&id), &bytes).await?;
        self.stats.bytes_stored += bytes.len() as u64;
        for (chunk, slot) in &chunks {
            self.known.insert(
                *chunk,
                ChunkLocation {
                    pack: id.clone(),
                    slot: *slot,
                },
            );
        }
        self.index.add_pack(&id, &chunks);
        Ok(())
    }

    /// Uploads the last pack and the index of every pack this backup wrote.
    pub async fn finish(&mut self) -> Result<(), BackupError> {
        if !self.pack.is_empty() {
            self.flush_pack().await?;
        }
        if !self.index.packs.is_empty() {
            self.repo.put_index(&self.index).await?;
        }
        Ok(())
    }
}
