//! The object envelope: every repository object but `lifeboat.repo` and `keys/*` is sealed in it.
//!
//! ```text
//! offset size  field
//! 0      4     magic "LBOX"
//! 4      1     format version (1)
//! 5      1     kind (1 wal, 2 history, 3 chunk, 4 index, 5 manifest, 6 report, 7 audit)
//! 6      1     compression (0 none, 1 zstd)
//! 7      1     key id length n (1..=32)
//! 8      n     key id, ASCII (e.g. "k0001")
//! 8+n    32    salt: the object key is HKDF-SHA256(data key, salt, "lifeboat object v1")
//! 40+n   12    nonce
//! 52+n   32    content id: BLAKE3 keyed with the dedup key, over the plaintext
//! 84+n   8     plaintext length, little-endian
//! 92+n   ...   AES-256-GCM ciphertext of the (compressed) plaintext, 16-byte tag at the end
//! ```
//! Associated data: the header bytes, the repository id and the object's name (for a chunk, its
//! `chunk/<id>` name, so a chunk can move between packs). A moved, swapped, truncated or flipped
//! object fails to open, and the opened plaintext must hash to the header's content id.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use rand::RngCore;
use sha2::Sha256;

use super::keyring::KeyEntry;
use super::CryptoError;

const MAGIC: &[u8; 4] = b"LBOX";
const VERSION: u8 = 1;

/// What an object holds; part of the authenticated header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A complete or partial WAL segment.
    Wal = 1,
    /// A timeline history file.
    History = 2,
    /// A chunk of a base-backup file, inside a pack.
    Chunk = 3,
    /// A pack index.
    Index = 4,
    /// A backup manifest.
    Manifest = 5,
    /// A drill report.
    Report = 6,
    /// A sealed audit segment.
    Audit = 7,
}

impl Kind {
    fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            1 => Kind::Wal,
            2 => Kind::History,
            3 => Kind::Chunk,
            4 => Kind::Index,
            5 => Kind::Manifest,
            6 => Kind::Report,
            7 => Kind::Audit,
            _ => return None,
        })
    }
}

/// A content id: keyed BLAKE3 of an object's or chunk's plaintext.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentId(pub [u8; 32]);

impl ContentId {
    /// The content id of `data` under `entry`'s dedup key.
    pub fn of(entry: &KeyEntry, data: &[u8]) -> ContentId {
        ContentId(*blake3::keyed_hash(&entry.dedup_key.0, data).as_bytes())
    }

    /// 64 hex digits.
    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Option<ContentId> {
        let v = hex::decode(s).ok()?;
        Some(ContentId(v.try_into().ok()?))
    }
}

impl std::fmt::Debug for ContentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ContentId({})", &self.to_hex()[..16])
    }
}

impl std::fmt::Display for ContentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// The parsed, not yet authenticated, header of a sealed object.
#[derive(Debug, Clone)]
pub struct Header {
    /// What the object holds.
    pub kind: Kind,
    /// Whether the plaintext was zstd-compressed before encryption.
    pub compressed: bool,
    /// The key-ring entry that sealed it.
    pub key_id: String,
    /// Content id of the plaintext.
    pub content_id: ContentId,
    /// Plaintext length.
    pub plain_len: u64,
    /// Header length in bytes; the ciphertext follows.
    pub len: usize,
    salt: [u8; 32],
    nonce: [u8; 12],
}

fn object_key(entry: &KeyEntry, salt: &[u8; 32]) -> Aes256Gcm {
    let hk = Hkdf::<Sha256>::new(Some(salt), &entry.data_key.0);
    let mut key = [0u8; 32];
    hk.expand(b"lifeboat object v1", &mut key)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    Aes256Gcm::new((&key).into())
}

fn aad(header: &[u8], repository_id: &str, name: &str) -> Vec<u8> {
    let mut a = Vec::with_capacity(header.len() + repository_id.len() + name.len() + 2);
    a.extend_from_slice(header);
    a.extend_from_slice(repository_id.as_bytes());
    a.push(0);
    a.extend_from_slice(name.as_bytes());
    a
}

/// Seals `plain` as object `name` of `repository_id`; `level` is the zstd level, 0 for none.
pub fn seal(
    entry: &KeyEntry,
    repository_id: &str,
    name: &str,
    kind: Kind,
    plain: &[u8],
    level: i32,
) -> Vec<u8> {
    let content_id = ContentId::of(entry, plain);
    seal_with_id(entry, repository_id, name, kind, plain, content_id, level)
}

/// [`seal`] with a content id the caller already computed.
pub fn seal_with_id(
    entry: &KeyEntry,
    repository_id: &str,
    name: &str,
    kind: Kind,
    plain: &[u8],
    content_id: ContentId,
    level: i32,
) -> Vec<u8> {
    let mut salt = [0u8; 32];
    let mut nonce = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut salt);
    rand::thread_rng().fill_bytes(&mut nonce);
    let compressed = level > 0;
    let body = if compressed {
        zstd::bulk::compress(plain, level).expect("in-memory zstd compression cannot fail")
    } else {
        plain.to_vec()
    };
    let mut out = Vec::with_capacity(body.len() + 128);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[
        VERSION,
        kind as u8,
        compressed as u8,
        entry.key_id.len() as u8,
    ]);
    out.extend_from_slice(entry.key_id.as_bytes());
    out.extend_from_slice(&salt);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&content_id.0);
    out.extend_from_slice(&(plain.len() as u64).to_le_bytes());
    let aad = aad(&out, repository_id, name);
    let ct = object_key(entry, &salt)
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &body,
                aad: &aad,
            },
        )
        .expect("AES-GCM encryption in memory cannot fail");
    out.extend_from_slice(&ct);
    out
}

/// Parses the header of sealed object `name` without keys (to compare content ids).
pub fn read_header(name: &str, bytes: &[u8]) -> Result<Header, CryptoError> {
    let corrupt = |reason: &str| CryptoError::Corrupt {
        name: name.into(),
        reason: reason.into(),
    };
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err(corrupt(
            "it does not start with a Lifeboat envelope (magic LBOX)",
        ));
    }
    if bytes[4] != VERSION {
        return Err(corrupt(&format!(
            "unsupported envelope version {}",
            bytes[4]
        )));
    }
    let kind = Kind::from_u8(bytes[5]).ok_or_else(|| corrupt("unknown object kind"))?;
    let n = bytes[7] as usize;
    let len = 8 + n + 32 + 12 + 32 + 8;
    if n == 0 || n > 32 || bytes.len() < len + 16 {
        return Err(corrupt("the header is truncated"));
    }
    let key_id = std::str::from_utf8(&bytes[8..8 + n])
        .map_err(|_| corrupt("the key id is not ASCII"))?
        .to_string();
    let at = 8 + n;
    let field = |o: usize, l: usize| &bytes[at + o..at + o + l];
    Ok(Header {
        kind,
        compressed: bytes[6] == 1,
        key_id,
        salt: field(0, 32).try_into().expect("32-byte slice"),
        nonce: field(32, 12).try_into().expect("12-byte slice"),
        content_id: ContentId(field(44, 32).try_into().expect("32-byte slice")),
        plain_len: u64::from_le_bytes(field(76, 8).try_into().expect("8-byte slice")),
        len,
    })
}

/// Opens sealed object `name`, checking kind, tag, and content id; `entry_for` finds a key.
pub fn open(
    entry_for: impl Fn(&str) -> Option<KeyEntry>,
    repository_id: &str,
    name: &str,
    kind: Kind,
    bytes: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let corrupt = |reason: String| CryptoError::Corrupt {
        name: name.into(),
        reason,
    };
    let h = read_header(name, bytes)?;
    if h.kind != kind {
        return Err(corrupt(format!(
            "it holds a {:?} object where a {kind:?} was expected",
            h.kind
        )));
    }
    let entry = entry_for(&h.key_id).ok_or_else(|| CryptoError::UnknownKey {
        name: name.into(),
        key_id: h.key_id.clone(),
    })?;
    let aad = aad(&bytes[..h.len], repository_id, name);
    let body = object_key(&entry, &h.salt)
        .decrypt(Nonce::from_slice(&h.nonce), Payload { msg: &bytes[h.len..], aad: &aad })
        .map_err(|_| corrupt("authentication failed (flipped bytes, or an object moved from another name or repository)".into()))?;
    let plain = if h.compressed {
        zstd::bulk::decompress(&body, h.plain_len as usize)
            .map_err(|e| corrupt(format!("zstd frame does not decompress: {e}")))?
    } else {
        body
    };
    if plain.len() as u64 != h.plain_len || ContentId::of(&entry, &plain) != h.content_id {
        return Err(corrupt(
            "the plaintext does not match its content id".into(),
        ));
    }
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_flipped_byte_is_detected() {
        let e = KeyEntry::generate("k0001");
        let find = |id: &str| (id == "k0001").then(|| e.clone());
        let data = b"some wal bytes ".repeat(50);
        let sealed = seal(&e, "r1", "wal/00000001/x", Kind::Wal, &data, 3);
        assert_eq!(
            open(find, "r1", "wal/00000001/x", Kind::Wal, &sealed).unwrap(),
            data
        );
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(
                open(find, "r1", "wal/00000001/x", Kind::Wal, &bad).is_err(),
                "byte {i}"
            );
        }
        assert!(open(find, "r1", "wal/00000001/y", Kind::Wal, &sealed).is_err());
        assert!(open(find, "r2", "wal/00000001/x", Kind::Wal, &sealed).is_err());
        assert!(open(find, "r1", "wal/00000001/x", Kind::History, &sealed).is_err());
        assert!(open(
            find,
            "r1",
            "wal/00000001/x",
            Kind::Wal,
            &sealed[..sealed.len() - 1]
        )
        .is_err());
    }
}
