//! Encryption at rest: the key-encryption key (KEK) and where it comes from, the key ring it
//! wraps (data key and dedup key), and the object envelope every repository object is sealed in.
//!
//! Invariant: no object is trusted before its AES-256-GCM tag checked out against its header,
//! its name and the repository id, and its plaintext matched the content id in the header.

pub mod envelope;
pub mod kek;
pub mod keyring;

/// A 256-bit secret. Debug never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(pub [u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

/// Errors of the crypto layer.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The KEK could not be loaded.
    #[error("{0}")]
    Kek(String),
    /// The KEK did not open a key ring.
    #[error(
        "the key-encryption key does not open key {key_id} of repository {repository_id} \
             (it was wrapped by KEK {wrapped_by}, the configured KEK is {configured})\n\
             hint: point [cluster.encryption] kek at the key this repository was initialised with"
    )]
    WrongKek {
        /// Key ring entry.
        key_id: String,
        /// Repository.
        repository_id: String,
        /// Fingerprint of the KEK that wrapped it.
        wrapped_by: String,
        /// Fingerprint of the configured KEK.
        configured: String,
    },
    /// An object failed authentication or its structure is broken.
    #[error("object {name} is corrupt or was tampered with: {reason}")]
    Corrupt {
        /// The object's name.
        name: String,
        /// What check failed.
        reason: String,
    },
    /// The object is sealed with a key the ring does not have.
    #[error(
        "object {name} is sealed with key {key_id}, which is not in this repository's key ring"
    )]
    UnknownKey {
        /// The object's name.
        name: String,
        /// The missing key id.
        key_id: String,
    },
}
