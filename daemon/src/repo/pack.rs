//! Packs: `packs/3f/3f9a0c…` (64 hex digits, the BLAKE3 hash of the pack's bytes; the folder is
//! its first two digits). A pack is sealed chunks laid end to end, about 32 MiB; the index says
//! where each chunk starts. Each chunk is sealed on its own with `chunk/<content id>` as its
//! name, so it opens wherever it is stored.

use crate::crypto::envelope::ContentId;

/// A pack is closed once it holds this many bytes.
pub const TARGET_SIZE: usize = 32 << 20;

/// The object name of pack `id`.
pub fn path(id: &str) -> String {
    format!("packs/{}/{id}", &id[..2])
}

/// Parses a pack object name back to its id.
pub fn parse(name: &str) -> Option<&str> {
    let rest = name.strip_prefix("packs/")?;
    let (dir, id) = rest.split_once('/')?;
    (id.len() == 64
        && id.bytes().all(|b| b.is_ascii_hexdigit())
        && id.starts_with(dir)
        && dir.len() == 2)
        .then_some(id)
}

/// The name a chunk is sealed under (its associated data), not a stored object.
pub fn chunk_name(id: ContentId) -> String {
    format!("chunk/{}", id.to_hex())
}

/// A chunk's place inside a pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// Offset of the sealed chunk in the pack.
    pub offset: u64,
    /// Length of the sealed chunk.
    pub len: u32,
}

/// Collects sealed chunks into one pack.
#[derive(Debug, Default)]
pub struct PackWriter {
    buf: Vec<u8>,
    chunks: Vec<(ContentId, Slot)>,
}

impl PackWriter {
    /// Appends a sealed chunk.
    pub fn add(&mut self, id: ContentId, sealed: &[u8]) {
        let slot = Slot {
            offset: self.buf.len() as u64,
            len: sealed.len() as u32,
        };
        self.buf.extend_from_slice(sealed);
        self.chunks.push((id, slot));
    }

    /// Whether the pack reached its target size.
    pub fn is_full(&self) -> bool {
        self.buf.len() >= TARGET_SIZE
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Closes the pack: its id, bytes, and chunk slots.
    pub fn finish(self) -> (String, Vec<u8>, Vec<(ContentId, Slot)>) {
        let id = blake3::hash(&self.buf).to_hex().to_string();
        (id, self.buf, self.chunks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let id = "3f".to_string() + &"a".repeat(62);
        assert_eq!(parse(&path(&id)), Some(id.as_str()));
        assert_eq!(parse("packs/40/3faaaa"), None);
    }
}
