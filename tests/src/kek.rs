//! The key-encryption key file a test hands to Lifeboat.
//!
//! Example: `write_kek(&root)` writes 32 random bytes to `<root>/kek`, mode 0600.
//!
//! Invariant: the key is readable by the user Lifeboat runs as (`postgres` when the tests run as
//! root) and by no one else, as Lifeboat may insist.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use rand::RngCore;

use crate::privilege::give_to_postgres;
use crate::TestRoot;

/// Writes a fresh random 32-byte key to [`TestRoot::kek_path`] and returns that path.
pub fn write_kek(root: &TestRoot) -> PathBuf {
    let path = root.kek_path();
    let mut key = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut key);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
    file.write_all(&key)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    give_to_postgres(&path);
    path
}
