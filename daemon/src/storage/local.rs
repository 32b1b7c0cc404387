//! A repository in a local directory: one file per object, `<root>/<name>`.
//!
//! Create-only and durable: the bytes go to `.tmp.<random>` beside the target, are fsynced, then
//! hard-linked to the final name (the link fails if the name exists, so nothing is replaced),
//! and the directory is fsynced before `put_new` returns. When run as root, new files and
//! directories get the owner of the repository root, so the `postgres` user running
//! archive_command can keep writing to a repository that root wrote to.
//! A lock `locks/<name>` is a file created exclusively, holding its lease id and expiry (Unix
//! seconds); an expired one is taken over.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use super::{check_name, lock_path, Lease, ObjectInfo, Storage, StorageError};

/// A directory-backed store.
#[derive(Debug, Clone)]
pub struct LocalStorage {
    root: PathBuf,
}

impl LocalStorage {
    /// A store rooted at `root` (created, with its parents, on first write).
    pub fn new(root: impl Into<PathBuf>) -> LocalStorage {
        LocalStorage { root: root.into() }
    }

    fn io(&self, op: &'static str, name: &str, source: std::io::Error) -> StorageError {
        if source.kind() == std::io::ErrorKind::NotFound && op != "create" {
            return StorageError::NotFound(name.to_string());
        }
        StorageError::Io {
            op,
            name: name.to_string(),
            location: self.location(),
            source,
        }
    }

    fn put_blocking(&self, name: &str, data: &[u8]) -> Result<(), StorageError> {
        check_name(name)?;
        let path = self.root.join(name);
        let dir = path
            .parent()
            .expect("a checked name has a parent under root");
        self.create_dirs(dir)
            .map_err(|e| self.io("create", name, e))?;
        let tmp = dir.join(format!(".tmp.{}", hex::encode(rand::random::<[u8; 8]>())));
        let result = self
            .write_durable(&tmp, data)
            .and_then(|()| fs::hard_link(&tmp, &path));
        let _ = fs::remove_file(&tmp);
        match result {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(StorageError::AlreadyExists(name.to_string()))
            }
            Err(e) => Err(self.io("create", name, e)),
            Ok(()) => fsync_dir(dir).map_err(|e| self.io("create", name, e)),
        }
    }

    fn write_durable(&self, tmp: &Path, data: &[u8]) -> std::io::Result<()> {
        let mut f = OpenOptions::new().write(true).create_new(true).open(tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        self.adopt_owner(tmp)
    }

    /// Creates `dir` and missing parents, fsyncing each parent that gained an entry.
    fn create_dirs(&self, dir: &Path) -> std::io::Result<()> {
        if dir.is_dir() {
            return Ok(());
        }
        if let Some(parent) = dir.parent() {
            self.create_dirs(parent)?;
        }
        match fs::create_dir(dir) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
            r => r?,
        }
        self.adopt_owner(dir)?;
        dir.parent().map(fsync_dir).unwrap_or(Ok(()))
    }

    /// As root, gives `path` the owner of the repository root.
    fn adopt_owner(&self, path: &Path) -> std::io::Result<()> {
        if !nix::unistd::geteuid().is_root() || path == self.root {
            return Ok(());
        }
        let meta = fs::metadata(&self.root)?;
        if meta.uid() == 0 {
            return Ok(());
        }
        std::os::unix::fs::chown(path, Some(meta.uid()), Some(meta.gid()))
    }

    fn get_range_blocking(
        &self,
        name: &str,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, StorageError> {
        check_name(name)?;
        let mut f = File::open(self.root.join(name)).map_err(|e| self.io("read", name, e))?;
        f.seek(SeekFrom::Start(offset))
            .map_err(|e| self.io("read", name, e))?;
        let mut buf = Vec::with_capacity(len as usize);
        f.take(len)
            .read_to_end(&mut buf)
            .map_err(|e| self.io("read", name, e))?;
        if (buf.len() as u64) < len {
            let short = std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "wanted {len} bytes at offset {offset}, the object ends after {}",
                    buf.len()
                ),
            );
            return Err(self.io("read", name, short));
        }
        Ok(buf)
    }

    fn list_blocking(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        let dir_part = prefix.rfind('/').map(|i| &prefix[..i]).unwrap_or("");
        let mut out = Vec::new();
        let start = self.root.join(dir_part);
        self.walk(&start, dir_part, &mut out)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => StorageError::NotFound(prefix.to_string()),
                _ => self.io("list", prefix, e),
            })
            .or_else(|e| match e {
                StorageError::NotFound(_) if self.root.is_dir() => Ok(()),
                e => Err(e),
            })?;
        out.retain(|o| o.name.starts_with(prefix));
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn walk(&self, dir: &Path, rel: &str, out: &mut Vec<ObjectInfo>) -> std::io::Result<()> {
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let file_name = entry.file_name().to_string_lossy().into_owned();
            if file_name.starts_with(".tmp.") {
                continue;
            }
            let name = if rel.is_empty() {
                file_name
            } else {
                format!("{rel}/{file_name}")
            };
            let meta = entry.metadata()?;
            if meta.is_dir() {
                self.walk(&entry.path(), &name, out)?;
            } else {
                out.push(ObjectInfo {
                    name,
                    size: meta.len(),
                });
            }
        }
        Ok(())
    }
}

impl LocalStorage {
    fn lock_blocking(&self, name: &str, ttl: Duration) -> Result<Lease, StorageError> {
        let path = lock_path(name);
        check_name(&path)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let id = hex::encode(rand::random::<[u8; 16]>());
        let content = format!("{id} {}\n", (now + ttl).as_secs());
        for _ in 0..2 {
            match self.put_blocking(&path, content.as_bytes()) {
                Ok(()) => {
                    return Ok(Lease {
                        name: path.clone(),
                        id,
                    })
                }
                Err(StorageError::AlreadyExists(_)) => {}
                Err(e) => return Err(e),
            }
            let held = fs::read_to_string(self.root.join(&path)).unwrap_or_default();
            let expires = held.split_whitespace().nth(1).and_then(|e| e.parse().ok());
            if expires.is_some_and(|e: u64| e > now.as_secs()) {
                return Err(StorageError::Locked(path));
            }
            // Expired (or half-written by a crash): take it over.
            match fs::remove_file(self.root.join(&path)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(self.io("lock", &path, e))
                }
                _ => {}
            }
        }
        Err(StorageError::Locked(path))
    }

    fn unlock_blocking(&self, lease: &Lease) -> Result<(), StorageError> {
        let file = self.root.join(&lease.name);
        let held = fs::read_to_string(&file).unwrap_or_default();
        if held.split_whitespace().next() != Some(lease.id.as_str()) {
            return Ok(());
        }
        match fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(self.io("unlock", &lease.name, e))
            }
            _ => Ok(()),
        }
    }
}

fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(f)
        .await
        .expect("storage worker thread panicked")
}

#[async_trait]
impl Storage for LocalStorage {
    async fn put_new(&self, name: &str, data: &[u8]) -> Result<(), StorageError> {
        let (s, n, d) = (self.clone(), name.to_string(), data.to_vec());
        blocking(move || s.put_blocking(&n, &d)).await
    }

    async fn get(&self, name: &str) -> Result<Vec<u8>, StorageError> {
        check_name(name)?;
        let (s, n) = (self.clone(), name.to_string());
        blocking(move || fs::read(s.root.join(&n)).map_err(|e| s.io("read", &n, e))).await
    }

    async fn get_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>, StorageError> {
        let (s, n) = (self.clone(), name.to_string());
        blocking(move || s.get_range_blocking(&n, offset, len)).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        let (s, p) = (self.clone(), prefix.to_string());
        blocking(move || s.list_blocking(&p)).await
    }

    async fn delete(&self, name: &str) -> Result<(), StorageError> {
        check_name(name)?;
        let (s, n) = (self.clone(), name.to_string());
        blocking(move || {
            let path = s.root.join(&n);
            match fs::remove_file(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(s.io("delete", &n, e)),
                Ok(()) => {
                    fsync_dir(path.parent().expect("has parent")).map_err(|e| s.io("delete", &n, e))
                }
            }
        })
        .await
    }

    fn location(&self) -> String {
        format!("local {}", self.root.display())
    }

    async fn lock(&self, name: &str, ttl: Duration) -> Result<Lease, StorageError> {
        let (s, n) = (self.clone(), name.to_string());
        blocking(move || s.lock_blocking(&n, ttl)).await
    }

    async fn unlock(&self, lease: &Lease) -> Result<(), StorageError> {
        let (s, l) = (self.clone(), lease.clone());
        blocking(move || s.unlock_blocking(&l)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn create_only_get_range_list_delete() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStorage::new(dir.path().join("repo"));
        s.put_new("wal/00000001/a", b"hello").await.unwrap();
        assert!(matches!(
            s.put_new("wal/00000001/a", b"other").await,
            Err(StorageError::AlreadyExists(_))
        ));
        assert_eq!(s.get("wal/00000001/a").await.unwrap(), b"hello");
        assert_eq!(s.get_range("wal/00000001/a", 1, 3).await.unwrap(), b"ell");
        assert!(s.get_range("wal/00000001/a", 3, 5).await.is_err());
        s.put_new("wal/00000002/b", b"x").await.unwrap();
        let names: Vec<_> = s
            .list("wal/")
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.name)
            .collect();
        assert_eq!(names, ["wal/00000001/a", "wal/00000002/b"]);
        assert!(s.list("packs/").await.unwrap().is_empty());
        assert!(matches!(
            s.get("nope").await,
            Err(StorageError::NotFound(_))
        ));
        s.delete("wal/00000001/a").await.unwrap();
        s.delete("wal/00000001/a").await.unwrap();
        assert!(s.put_new("../x", b"").await.is_err());
    }
}
