//! The key-encryption key: 32 random bytes, given by reference only.
//!
//! `file:/etc/lifeboat/kek` reads the raw 32 bytes from a file that must not be readable by group
//! or others; `env:LIFEBOAT_KEK` reads 64 hex digits (or base64 of 32 bytes) from the environment.
//! The KEK only wraps the key ring; it never touches data.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use base64::Engine;
use sha2::{Digest, Sha256};

use super::{CryptoError, SecretKey};

/// Where the KEK comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KekRef {
    /// A file holding the raw 32 bytes.
    File(PathBuf),
    /// An environment variable holding hex or base64.
    Env(String),
}

/// A loaded KEK.
#[derive(Debug, Clone)]
pub struct Kek {
    /// The key.
    pub key: SecretKey,
}

impl KekRef {
    /// Parses `file:PATH` or `env:NAME`.
    pub fn parse(s: &str) -> Result<KekRef, CryptoError> {
        if let Some(p) = s.strip_prefix("file:").filter(|p| !p.is_empty()) {
            return Ok(KekRef::File(PathBuf::from(p)));
        }
        if let Some(n) = s.strip_prefix("env:").filter(|n| !n.is_empty()) {
            return Ok(KekRef::Env(n.to_string()));
        }
        Err(CryptoError::Kek(format!(
            "encryption.kek = {s:?} is not a key reference; write \"file:/etc/lifeboat/kek\" or \"env:NAME\""
        )))
    }

    /// Loads the key, refusing a key file that group or others can read.
    pub fn load(&self) -> Result<Kek, CryptoError> {
        let bytes = match self {
            KekRef::File(path) => read_key_file(path)?,
            KekRef::Env(name) => {
                let v = std::env::var(name).map_err(|_| {
                    CryptoError::Kek(format!("environment variable {name} (the KEK) is not set"))
                })?;
                decode_text_key(v.trim()).ok_or_else(|| {
                    CryptoError::Kek(format!(
                        "{name} must hold 64 hex digits or base64 of 32 bytes"
                    ))
                })?
            }
        };
        Ok(Kek {
            key: SecretKey(bytes),
        })
    }
}

fn read_key_file(path: &PathBuf) -> Result<[u8; 32], CryptoError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| CryptoError::Kek(format!("cannot read KEK file {}: {e}", path.display())))?;
    if meta.mode() & 0o077 != 0 {
        return Err(CryptoError::Kek(format!(
            "KEK file {} is readable by group or others (mode {:o})\nhint: chmod 600 {}",
            path.display(),
            meta.mode() & 0o777,
            path.display()
        )));
    }
    let data = std::fs::read(path)
        .map_err(|e| CryptoError::Kek(format!("cannot read KEK file {}: {e}", path.display())))?;
    data.as_slice().try_into().map_err(|_| {
        CryptoError::Kek(format!(
            "KEK file {} holds {} bytes; it must hold exactly 32 random bytes\n\
             hint: head -c 32 /dev/urandom > {}",
            path.display(),
            data.len(),
            path.display()
        ))
    })
}

fn decode_text_key(v: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(v)
        .ok()
        .or_else(|| base64::engine::general_purpose::STANDARD.decode(v).ok())?;
    bytes.try_into().ok()
}

impl Kek {
    /// A short public fingerprint naming this KEK in key rings and error messages.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"lifeboat kek fingerprint v1");
        h.update(self.key.0);
        hex::encode(&h.finalize()[..8])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn refuses_readable_or_short_key_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("kek");
        std::fs::write(&p, [7u8; 32]).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = KekRef::File(p.clone()).load().unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(KekRef::File(p.clone()).load().is_ok());
        std::fs::write(&p, [7u8; 31]).unwrap();
        assert!(KekRef::File(p)
            .load()
            .unwrap_err()
            .to_string()
            .contains("31 bytes"));
    }

    #[test]
    fn parses_references() {
        assert_eq!(KekRef::parse("env:K").unwrap(), KekRef::Env("K".into()));
        assert!(KekRef::parse("/etc/kek").is_err());
        assert!(decode_text_key(&"ab".repeat(32)).is_some());
    }
}
