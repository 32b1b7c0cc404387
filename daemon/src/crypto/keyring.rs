//! The key ring: per repository, data keys (seal objects) and one dedup key (keys content ids),
//! each entry stored as `keys/<key-id>`, e.g. `keys/k0001`, wrapped by the KEK.
//!
//! A stored entry is plaintext JSON:
//! `{"format":1,"key_id":"k0001","kek":"3f2a9c...","nonce":"<b64>","wrapped":"<b64>","created":"..."}`
//! where `wrapped` is AES-256-GCM(KEK, data key || dedup key). Its associated data binds the
//! entry's other fields and the SHA-256 of the repository's `lifeboat.repo`, so an entry copied
//! into another repository, an edited entry, or an edited identity file does not open.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::kek::Kek;
use super::{CryptoError, SecretKey};

/// One unwrapped key-ring entry.
#[derive(Debug, Clone)]
pub struct KeyEntry {
    /// Its id, e.g. `k0001`.
    pub key_id: String,
    /// Seals objects.
    pub data_key: SecretKey,
    /// Keys the BLAKE3 content ids; the same in every entry of a repository so dedup survives
    /// data-key rotation.
    pub dedup_key: SecretKey,
}

/// The stored, wrapped form of an entry.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WrappedEntry {
    /// Format version, 1.
    pub format: u32,
    /// The entry's id.
    pub key_id: String,
    /// Fingerprint of the KEK that wrapped it.
    pub kek: String,
    /// When it was made, RFC 3339.
    pub created: String,
    /// GCM nonce, base64.
    pub nonce: String,
    /// Ciphertext of data key || dedup key, base64.
    pub wrapped: String,
}

/// What a wrapped entry is bound to: its own fields and the identity file's digest.
fn aad(identity_sha256: &str, format: u32, key_id: &str, kek: &str, created: &str) -> Vec<u8> {
    format!("lifeboat keyring v1\0{identity_sha256}\0{format}\0{key_id}\0{kek}\0{created}")
        .into_bytes()
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

impl KeyEntry {
    /// A fresh entry with random keys.
    pub fn generate(key_id: &str) -> KeyEntry {
        let mut data = [0u8; 32];
        let mut dedup = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut data);
        rand::thread_rng().fill_bytes(&mut dedup);
        KeyEntry {
            key_id: key_id.into(),
            data_key: SecretKey(data),
            dedup_key: SecretKey(dedup),
        }
    }

    /// Wraps this entry with `kek` for the repository whose `lifeboat.repo` has this SHA-256.
    pub fn wrap(&self, kek: &Kek, identity_sha256: &str) -> WrappedEntry {
        let mut nonce = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut nonce);
        let mut secret = Vec::with_capacity(64);
        secret.extend_from_slice(&self.data_key.0);
        secret.extend_from_slice(&self.dedup_key.0);
        let cipher = Aes256Gcm::new((&kek.key.0).into());
        let created = chrono::Utc::now().to_rfc3339();
        let fingerprint = kek.fingerprint();
        let aad = aad(identity_sha256, 1, &self.key_id, &fingerprint, &created);
        let wrapped = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &secret,
                    aad: &aad,
                },
            )
            .expect("AES-GCM encryption of 64 bytes cannot fail");
        WrappedEntry {
            format: 1,
            key_id: self.key_id.clone(),
            kek: fingerprint,
            created,
            nonce: b64().encode(nonce),
            wrapped: b64().encode(wrapped),
        }
    }
}

impl WrappedEntry {
    /// Unwraps with `kek`; a wrong KEK gives [`CryptoError::WrongKek`]. `repository_id` names
    /// the repository in messages; `identity_sha256` is the digest of its `lifeboat.repo`.
    pub fn unwrap_with(
        &self,
        kek: &Kek,
        repository_id: &str,
        identity_sha256: &str,
    ) -> Result<KeyEntry, CryptoError> {
        let corrupt = |reason: &str| CryptoError::Corrupt {
            name: format!("keys/{}", self.key_id),
            reason: reason.into(),
        };
        let nonce = b64()
            .decode(&self.nonce)
            .map_err(|_| corrupt("nonce is not base64"))?;
        let wrapped = b64()
            .decode(&self.wrapped)
            .map_err(|_| corrupt("key is not base64"))?;
        if nonce.len() != 12 {
            return Err(corrupt("nonce is not 12 bytes"));
        }
        let cipher = Aes256Gcm::new((&kek.key.0).into());
        let aad = aad(
            identity_sha256,
            self.format,
            &self.key_id,
            &self.kek,
            &self.created,
        );
        let plain = cipher
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &wrapped,
                    aad: &aad,
                },
            )
            .map_err(|_| {
                if self.kek == kek.fingerprint() {
                    corrupt(
                        "authentication failed although the KEK fingerprint matches: \
                             this entry or the repository's lifeboat.repo was altered",
                    )
                } else {
                    CryptoError::WrongKek {
                        key_id: self.key_id.clone(),
                        repository_id: repository_id.into(),
                        wrapped_by: self.kek.clone(),
                        configured: kek.fingerprint(),
                    }
                }
            })?;
        if plain.len() != 64 {
            return Err(corrupt("unwrapped key material is not 64 bytes"));
        }
        let mut data = [0u8; 32];
        let mut dedup = [0u8; 32];
        data.copy_from_slice(&plain[..32]);
        dedup.copy_from_slice(&plain[32..]);
        Ok(KeyEntry {
            key_id: self.key_id.clone(),
            data_key: SecretKey(data),
            dedup_key: SecretKey(dedup),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kek(b: u8) -> Kek {
        Kek {
            key: SecretKey([b; 32]),
        }
    }

    #[test]
    fn wraps_and_refuses_wrong_kek_or_repository() {
        let e = KeyEntry::generate("k0001");
        let w = e.wrap(&kek(1), "digest-a");
        let back = w.unwrap_with(&kek(1), "r", "digest-a").unwrap();
        assert_eq!(back.data_key, e.data_key);
        let err = w.unwrap_with(&kek(2), "r", "digest-a").unwrap_err();
        assert!(matches!(err, CryptoError::WrongKek { .. }), "{err}");
        assert!(w.unwrap_with(&kek(1), "r", "digest-b").is_err());
        let mut edited = e.wrap(&kek(1), "digest-a");
        edited.created.push('0');
        assert!(edited.unwrap_with(&kek(1), "r", "digest-a").is_err());
        assert!(!format!("{back:?}").contains(&format!("{:?}", e.data_key.0)));
    }
}
