//! `lifeboat.repo`: the plaintext identity of a repository, written once by `repo init`.
//!
//! ```json
//! {"format":1,"repository_id":"9c1f5e0a3b7d4e21a8f06c5d2b9e7a13","cluster":"main",
//!  "system_identifier":"7312345678901234567","wal_segment_size":16777216,
//!  "created":"2026-12-03T17:17:06Z"}
//! ```
//! The repository id is associated data of every sealed object, so objects cannot be moved
//! between repositories; the system identifier ties the repository to one database lineage.

use serde::{Deserialize, Serialize};

use super::RepoError;

/// Object name of the identity file.
pub const PATH: &str = "lifeboat.repo";

/// The repository identity.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RepoInfo {
    /// Format version, 1.
    pub format: u32,
    /// Random 128-bit id, hex.
    pub repository_id: String,
    /// The cluster name it was created for.
    pub cluster: String,
    /// PostgreSQL system identifier of the cluster (a u64, kept as text for JSON readers).
    pub system_identifier: String,
    /// WAL segment size in bytes.
    pub wal_segment_size: u64,
    /// Creation time, RFC 3339.
    pub created: String,
    /// SHA-256 of the file as stored; key-ring entries are bound to it.
    #[serde(skip)]
    pub sha256: String,
}

impl RepoInfo {
    /// A new identity with a random id.
    pub fn new(cluster: &str, system_identifier: u64, wal_segment_size: u64) -> RepoInfo {
        RepoInfo {
            format: 1,
            repository_id: hex::encode(rand::random::<[u8; 16]>()),
            cluster: cluster.into(),
            system_identifier: system_identifier.to_string(),
            wal_segment_size,
            created: chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            sha256: String::new(),
        }
    }

    /// Parses and checks the identity file.
    pub fn parse(raw: &[u8]) -> Result<RepoInfo, RepoError> {
        let bad = |reason: String| RepoError::Format {
            name: PATH.into(),
            reason,
        };
        let mut info: RepoInfo = serde_json::from_slice(raw).map_err(|e| bad(e.to_string()))?;
        info.sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(raw));
        if info.format != 1 {
            return Err(bad(format!(
                "format {} is not supported by this Lifeboat (1)",
                info.format
            )));
        }
        if !info.wal_segment_size.is_power_of_two() || info.wal_segment_size < (1 << 20) {
            return Err(bad(format!(
                "wal_segment_size {} is not a power of two >= 1 MiB",
                info.wal_segment_size
            )));
        }
        info.system_id().map_err(bad)?;
        Ok(info)
    }

    /// The system identifier as a number.
    pub fn system_id(&self) -> Result<u64, String> {
        self.system_identifier.parse().map_err(|_| {
            format!(
                "system_identifier {:?} is not a number",
                self.system_identifier
            )
        })
    }

    /// Serialized form.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("repository info serializes")
    }
}
