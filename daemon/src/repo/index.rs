//! Indexes: `index/<64 hex>` (the content id of the index's plaintext). An index is sealed JSON
//! mapping the chunks of some packs to their place:
//! `{"format":1,"packs":[{"pack":"3f9a…","chunks":[["77c1…",0,1049133],…]}]}`.
//! A backup writes one index for the packs it wrote, after the packs and before its manifest.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::pack::Slot;
use super::{RepoError, Repository};
use crate::crypto::envelope::{ContentId, Kind};

/// The object name of index `id`.
pub fn path(id: &str) -> String {
    format!("index/{id}")
}

/// Parses an index object name back to its id.
pub fn parse(name: &str) -> Option<&str> {
    name.strip_prefix("index/")
        .filter(|id| id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The stored form.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexFile {
    /// Format version, 1.
    pub format: u32,
    /// The packs it covers.
    pub packs: Vec<IndexedPack>,
}

/// One pack in an index.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexedPack {
    /// Pack id.
    pub pack: String,
    /// `(chunk id hex, offset, sealed length)`.
    pub chunks: Vec<(String, u64, u32)>,
}

/// Where a chunk is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkLocation {
    /// Pack id.
    pub pack: String,
    /// Place in the pack.
    pub slot: Slot,
}

/// Every chunk of the repository's indexes.
#[derive(Debug, Default, Clone)]
pub struct ChunkIndex {
    chunks: HashMap<ContentId, ChunkLocation>,
}

impl ChunkIndex {
    /// Where `id` is stored.
    pub fn get(&self, id: &ContentId) -> Option<&ChunkLocation> {
        self.chunks.get(id)
    }

    /// Records a chunk.
    pub fn insert(&mut self, id: ContentId, loc: ChunkLocation) {
        self.chunks.insert(id, loc);
    }

    /// Forgets chunks whose pack is not in `packs`; returns how many were forgotten.
    pub fn retain_packs(&mut self, packs: &std::collections::HashSet<String>) -> usize {
        let before = self.chunks.len();
        self.chunks.retain(|_, loc| packs.contains(&loc.pack));
        before - self.chunks.len()
    }

    /// Number of chunks known.
    pub fn len(&self) -> usize {
        self.chunks.len()
    }

    /// Whether no chunk is known.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }
}

impl IndexFile {
    /// Adds a closed pack.
    pub fn add_pack(&mut self, pack: &str, chunks: &[(ContentId, Slot)]) {
        self.packs.push(IndexedPack {
            pack: pack.into(),
            chunks: chunks
                .iter()
                .map(|(id, s)| (id.to_hex(), s.offset, s.len))
                .collect(),
        });
    }
}

impl Repository {
    /// Stores an index; returns its id.
    pub async fn put_index(&self, index: &IndexFile) -> Result<String, RepoError> {
        let mut file = IndexFile {
            format: 1,
            packs: Vec::new(),
        };
        file.packs.extend(index.packs.iter().map(|p| IndexedPack {
            pack: p.pack.clone(),
            chunks: p.chunks.clone(),
        }));
        let plain = serde_json::to_vec(&file).expect("indexes serialize");
        let id = self.content_id(&plain).to_hex();
        self.put_object(&path(&id), Kind::Index, &plain, 3).await?;
        Ok(id)
    }

    /// The ids of every stored pack.
    pub async fn list_packs(&self) -> Result<std::collections::HashSet<String>, RepoError> {
        let listed = self.storage().list("packs/").await?;
        Ok(listed
            .iter()
            .filter_map(|o| super::pack::parse(&o.name))
            .map(String::from)
            .collect())
    }

    /// Loads every index into one map.
    pub async fn load_index(&self) -> Result<ChunkIndex, RepoError> {
        let mut out = ChunkIndex::default();
        for obj in self.storage().list("index/").await? {
            if parse(&obj.name).is_none() {
                continue;
            }
            let plain = self.get_object(&obj.name, Kind::Index).await?;
            let bad = |reason: String| RepoError::Format {
                name: obj.name.clone(),
                reason,
            };
            let file: IndexFile = serde_json::from_slice(&plain).map_err(|e| bad(e.to_string()))?;
            for p in file.packs {
                for (id, offset, len) in p.chunks {
                    let id = ContentId::from_hex(&id)
                        .ok_or_else(|| bad(format!("chunk id {id:?} is not 64 hex digits")))?;
                    out.insert(
                        id,
                        ChunkLocation {
                            pack: p.pack.clone(),
                            slot: Slot { offset, len },
                        },
                    );
                }
            }
        }
        Ok(out)
    }
}
