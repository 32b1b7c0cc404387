//! Manifests: `backups/20261203T171706Z/manifest`, one sealed JSON document per base backup
//! naming every directory, file (as chunk ids) and tablespace, with the backup's WAL range.
//!
//! Invariant: the manifest is the last object a backup writes, after its packs, its index and
//! the WAL from its start to its stop position; a backup without a manifest does not exist.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{RepoError, Repository};
use crate::crypto::envelope::Kind;
use crate::pg::{Lsn, TimelineId};

/// A backup id: its start time in UTC, `20261203T171706Z`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BackupId(String);

impl BackupId {
    /// The id for a backup starting at `t`.
    pub fn at(t: DateTime<Utc>) -> BackupId {
        BackupId(t.format("%Y%m%dT%H%M%SZ").to_string())
    }

    /// Parses an id as typed by a user or found in a name.
    pub fn parse(s: &str) -> Option<BackupId> {
        chrono::NaiveDateTime::parse_from_str(s, "%Y%m%dT%H%M%SZ").ok()?;
        Some(BackupId(s.to_string()))
    }

    /// The text form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BackupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The object name of a backup's manifest.
pub fn path(id: &BackupId) -> String {
    format!("backups/{id}/manifest")
}

/// Parses a manifest object name back to its backup id.
pub fn parse(name: &str) -> Option<BackupId> {
    let id = name.strip_prefix("backups/")?.strip_suffix("/manifest")?;
    BackupId::parse(id)
}

/// One base backup.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Format version, 1.
    pub format: u32,
    /// The backup's id.
    pub backup_id: BackupId,
    /// The label given to PostgreSQL.
    pub label: String,
    /// PostgreSQL system identifier.
    pub system_identifier: String,
    /// `server_version_num` of the source.
    pub pg_version_num: u32,
    /// Timeline the backup started on.
    pub timeline: TimelineId,
    /// START WAL LOCATION.
    pub start_lsn: Lsn,
    /// Position returned by the backup stop: recovery is consistent from here.
    pub stop_lsn: Lsn,
    /// When the backup started.
    pub start_time: DateTime<Utc>,
    /// When the backup stopped; the earliest instant it can restore to.
    pub stop_time: DateTime<Utc>,
    /// WAL segment size.
    pub wal_segment_size: u64,
    /// Chunk size files were cut into.
    pub chunk_size: u64,
    /// Whether the source has data checksums.
    pub data_checksums: bool,
    /// `backup_label` exactly as PostgreSQL returned it.
    pub backup_label: String,
    /// `tablespace_map` as PostgreSQL returned it, if not empty.
    pub tablespace_map: Option<String>,
    /// Everything to restore, in order (directories before their contents, pg_control last).
    pub entries: Vec<Entry>,
    /// Page checksum failures found while copying.
    pub checksum_failures: Vec<String>,
    /// Figures of the run.
    pub stats: BackupStats,
    /// The cluster's residency zone when the backup was taken (absent in older manifests).
    #[serde(default)]
    pub residency_zone: Option<String>,
    /// The region of the repository holding this manifest, when configured.
    #[serde(default)]
    pub region: Option<String>,
}

/// One item of the data directory. (No `deny_unknown_fields` here: serde cannot combine it
/// with `flatten`; the flattened kind denies unknown fields itself.)
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    /// Path relative to the data directory, `/`-separated.
    pub path: String,
    /// What it is.
    #[serde(flatten)]
    pub kind: EntryKind,
}

/// The kinds of entries.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum EntryKind {
    /// A directory.
    Dir {
        /// Permission bits.
        mode: u32,
    },
    /// A regular file, as chunk ids in order.
    File {
        /// Permission bits.
        mode: u32,
        /// Bytes copied.
        size: u64,
        /// Chunk content ids, hex.
        chunks: Vec<String>,
    },
    /// A tablespace link `pg_tblspc/<oid>` and where it pointed.
    Tablespace {
        /// Tablespace OID.
        oid: u32,
        /// The link target on the source host.
        location: String,
    },
}

/// Figures of a backup run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupStats {
    /// Files copied.
    pub files: u64,
    /// Bytes read from the data directory.
    pub bytes_read: u64,
    /// Bytes of chunks not yet in the repository.
    pub bytes_new: u64,
    /// Bytes written to the repository (sealed, compressed).
    pub bytes_stored: u64,
    /// Seconds from start to manifest.
    pub seconds: f64,
}

impl Manifest {
    /// Total bytes the restored data directory holds.
    pub fn data_size(&self) -> u64 {
        self.entries
            .iter()
            .map(|e| match &e.kind {
                EntryKind::File { size, .. } => *size,
                _ => 0,
            })
            .sum()
    }
}

impl Repository {
    /// Stores a manifest, the step that makes a backup exist.
    pub async fn put_manifest(&self, m: &Manifest) -> Result<(), RepoError> {
        let plain = serde_json::to_vec(m).expect("manifests serialize");
        self.put_object(&path(&m.backup_id), Kind::Manifest, &plain, 3)
            .await?;
        Ok(())
    }

    /// Reads a manifest.
    pub async fn get_manifest(&self, id: &BackupId) -> Result<Manifest, RepoError> {
        let name = path(id);
        let plain = self.get_object(&name, Kind::Manifest).await?;
        let m: Manifest = serde_json::from_slice(&plain).map_err(|e| RepoError::Format {
            name: name.clone(),
            reason: e.to_string(),
        })?;
        if &m.backup_id != id {
            return Err(RepoError::Format {
                name,
                reason: format!("it describes backup {}", m.backup_id),
            });
        }
        Ok(m)
    }

    /// The ids of every backup with a manifest, oldest first.
    pub async fn list_backups(&self) -> Result<Vec<BackupId>, RepoError> {
        let mut ids: Vec<BackupId> = self
            .storage()
            .list("backups/")
            .await?
            .iter()
            .filter_map(|o| parse(&o.name))
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Every manifest that opens, oldest first, and those that do not with the reason. An
    /// unreadable manifest costs that one backup, not the repository; an unreachable storage
    /// is still an error.
    pub async fn load_manifests_lenient(
        &self,
    ) -> Result<(Vec<Manifest>, Vec<(BackupId, String)>), RepoError> {
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for id in self.list_backups().await? {
            match self.get_manifest(&id).await {
                Ok(m) => good.push(m),
                Err(RepoError::Storage(e)) => return Err(RepoError::Storage(e)),
                Err(e) => {
                    tracing::error!(backup = %id, error = %e, "manifest does not open; backup skipped");
                    bad.push((id, e.to_string()));
                }
            }
        }
        Ok((good, bad))
    }

    /// Every manifest, oldest first.
    pub async fn load_manifests(&self) -> Result<Vec<Manifest>, RepoError> {
        let mut out = Vec::new();
        for id in self.list_backups().await? {
            out.push(self.get_manifest(&id).await?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_from_before_residency_still_parses() {
        let old = r#"{"format":1,"backup_id":"20261203T171706Z","label":"l",
            "system_identifier":"1","pg_version_num":170000,"timeline":1,
            "start_lsn":"0/3000028","stop_lsn":"0/3000138",
            "start_time":"2026-12-03T17:17:06Z","stop_time":"2026-12-03T17:17:40Z",
            "wal_segment_size":16777216,"chunk_size":1048576,"data_checksums":true,
            "backup_label":"","tablespace_map":null,"entries":[],"checksum_failures":[],
            "stats":{"files":0,"bytes_read":0,"bytes_new":0,"bytes_stored":0,"seconds":0.0}}"#;
        let m: Manifest = serde_json::from_str(old).unwrap();
        assert_eq!((m.residency_zone, m.region), (None, None));
    }
}
