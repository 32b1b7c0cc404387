//! `keys/<key-id>`: key-ring entries, e.g. `keys/k0001`, plaintext JSON holding the wrapped keys
//! (see [`crate::crypto::keyring`]). Ids number upwards; the highest seals new objects.

use super::{RepoError, RepoInfo};
use crate::crypto::kek::Kek;
use crate::crypto::keyring::{KeyEntry, WrappedEntry};
use crate::storage::Storage;

/// The id of the `n`th key-ring entry: `k0001`.
pub fn key_id(n: u32) -> String {
    format!("k{n:04}")
}

/// The object name of an entry.
pub fn path(key_id: &str) -> String {
    format!("keys/{key_id}")
}

/// Parses an entry's object name back to its id.
pub fn parse(name: &str) -> Option<&str> {
    name.strip_prefix("keys/").filter(|id| {
        id.len() == 5 && id.starts_with('k') && id[1..].bytes().all(|b| b.is_ascii_digit())
    })
}

/// Loads and unwraps every entry, oldest first.
pub async fn load_all(
    storage: &dyn Storage,
    kek: &Kek,
    info: &RepoInfo,
) -> Result<Vec<KeyEntry>, RepoError> {
    let mut out = Vec::new();
    for obj in storage.list("keys/").await? {
        let Some(id) = parse(&obj.name) else { continue };
        let raw = storage.get(&obj.name).await?;
        let wrapped: WrappedEntry =
            serde_json::from_slice(&raw).map_err(|e| RepoError::Format {
                name: obj.name.clone(),
                reason: e.to_string(),
            })?;
        if wrapped.key_id != id {
            return Err(RepoError::Format {
                name: obj.name.clone(),
                reason: format!("it names key {}", wrapped.key_id),
            });
        }
        out.push(wrapped.unwrap_with(kek, &info.repository_id, &info.sha256)?);
    }
    if out.is_empty() {
        return Err(RepoError::Format {
            name: "keys/".into(),
            reason: format!("the key ring in {} is empty", storage.location()),
        });
    }
    Ok(out)
}
