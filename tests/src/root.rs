//! The per-test root directory: everything one test creates lives under it.
//!
//! Example layout, for a test named `backup_roundtrip`:
//!
//! ```text
//! /tmp/lifeboat-test-backup_roundtrip-Xy12ab/   mode 0755, owner postgres when run as root
//!     sock/                 unix sockets of every cluster (ports tell them apart)
//!     primary/data/         a cluster made by Cluster::init(&root, "primary")
//!     primary/postgres.log  its server log
//!     bin/lifeboat          copies of the built binaries, mode 0755 (made on first use)
//!     bin/lifeboat-drill
//!     repo/ state/ lifeboat.toml kek    paths for the test's repository, state, config, key
//! ```
//!
//! Invariant: the root sits outside the clone (which `postgres` may not be able to enter) and
//! belongs to `postgres`, so archive_command and restore_command run by the server can reach the
//! binaries, the repository and the key; it is removed only after its servers are stopped.

use std::ffi::OsStr;
use std::fs::Permissions;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use crate::binaries::{built_binary, LIFEBOAT_BINARIES};
use crate::cleanup::{self, ROOT_PREFIX};
use crate::privilege::{as_postgres, check_reachable_by_postgres, give_to_postgres};

/// The longest unix socket lock file path PostgreSQL handles with room to spare (it needs < 108).
const MAX_SOCKET_PATH: usize = 100;

/// The longest part of the test name put into the root's name.
const MAX_LABEL: usize = 24;

/// A test's root directory; clones share it, and the last one dropped cleans it up.
#[derive(Clone)]
pub struct TestRoot {
    dir: Arc<RootDir>,
}

/// The directory itself; its `Drop` stops the servers under it, then deletes it.
struct RootDir {
    path: PathBuf,
    bin: OnceLock<PathBuf>,
}

impl Drop for RootDir {
    fn drop(&mut self) {
        cleanup::release(&self.path);
    }
}

impl TestRoot {
    /// Creates a fresh root under the system temp dir, named after the running test.
    pub fn new() -> TestRoot {
        let prefix = format!("{ROOT_PREFIX}{}-", test_label());
        let path = tempfile::Builder::new()
            .prefix(&prefix)
            .tempdir_in(std::env::temp_dir())
            .unwrap_or_else(|e| panic!("cannot create a test directory in the temp dir: {e}"))
            .keep();
        cleanup::register(&path);
        let root = TestRoot {
            dir: Arc::new(RootDir {
                path,
                bin: OnceLock::new(),
            }),
        };
        set_mode(root.path(), 0o755);
        give_to_postgres(root.path());
        check_reachable_by_postgres(root.path());
        root.mkdir("sock");
        check_socket_path(&root.socket_dir());
        root
    }

    /// The root directory.
    pub fn path(&self) -> &Path {
        &self.dir.path
    }

    /// The unix socket directory shared by the root's clusters.
    pub fn socket_dir(&self) -> PathBuf {
        self.path().join("sock")
    }

    /// Where the test's repository goes (not created: Lifeboat makes it).
    pub fn repo_dir(&self) -> PathBuf {
        self.path().join("repo")
    }

    /// Where Lifeboat's state goes (not created: Lifeboat makes it).
    pub fn state_dir(&self) -> PathBuf {
        self.path().join("state")
    }

    /// Where the test's Lifeboat config file goes (write it with [`TestRoot::write_file`]).
    pub fn config_path(&self) -> PathBuf {
        self.path().join("lifeboat.toml")
    }

    /// Where [`crate::write_kek`] puts the key-encryption key.
    pub fn kek_path(&self) -> PathBuf {
        self.path().join("kek")
    }

    /// Creates directory `relative` (and its parents) under the root, owned by `postgres`.
    pub fn mkdir(&self, relative: impl AsRef<Path>) -> PathBuf {
        let path = self.path().join(relative);
        if !path.starts_with(self.path()) {
            panic!(
                "{} is outside the test root {}",
                path.display(),
                self.path().display()
            );
        }
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        let mut dir = path.as_path();
        while dir != self.path() {
            give_to_postgres(dir);
            dir = dir.parent().unwrap_or(self.path());
        }
        path
    }

    /// Writes file `relative` under the root (mode 0644, owned by `postgres`) and returns its path.
    pub fn write_file(&self, relative: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path().join(relative);
        if let Some(parent) = path.parent() {
            self.mkdir(parent);
        }
        std::fs::write(&path, contents)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        set_mode(&path, 0o644);
        give_to_postgres(&path);
        path
    }

    /// The root's `bin/`, holding copies of the Lifeboat binaries (copied on the first call).
    pub fn bin_dir(&self) -> &Path {
        self.dir.bin.get_or_init(|| self.copy_binaries())
    }

    /// The root's copy of the `lifeboat` binary, for commands and archive_command.
    pub fn lifeboat_path(&self) -> PathBuf {
        self.bin_dir().join("lifeboat")
    }

    /// The root's copy of the `lifeboat-drill` binary.
    pub fn lifeboat_drill_path(&self) -> PathBuf {
        self.bin_dir().join("lifeboat-drill")
    }

    /// A command running `program` in the root, as `postgres` when the tests run as root.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(self.path());
        as_postgres(&mut cmd);
        cmd
    }

    /// A command running the root's copy of `lifeboat`, as [`TestRoot::command`] does.
    pub fn lifeboat(&self) -> Command {
        self.command(self.lifeboat_path())
    }

    /// A command running the root's copy of `lifeboat-drill`, as [`TestRoot::command`] does.
    pub fn lifeboat_drill(&self) -> Command {
        self.command(self.lifeboat_drill_path())
    }

    fn copy_binaries(&self) -> PathBuf {
        let bin = self.mkdir("bin");
        for name in LIFEBOAT_BINARIES {
            let built = built_binary(name);
            let copy = bin.join(name);
            std::fs::copy(&built, &copy).unwrap_or_else(|e| {
                panic!("cannot copy {} to {}: {e}", built.display(), copy.display())
            });
            set_mode(&copy, 0o755);
            give_to_postgres(&copy);
        }
        bin
    }
}

impl Default for TestRoot {
    fn default() -> TestRoot {
        TestRoot::new()
    }
}

/// The running test's name (libtest names the thread after it), reduced to a short file name.
fn test_label() -> String {
    let thread = std::thread::current();
    let name = thread.name().unwrap_or("test");
    let last = name.rsplit("::").next().unwrap_or(name);
    last.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(MAX_LABEL)
        .collect()
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("cannot chmod {}: {e}", path.display()));
}

fn check_socket_path(socket_dir: &Path) {
    let lock_file = socket_dir.join(".s.PGSQL.65535.lock");
    let length = lock_file.as_os_str().len();
    if length >= MAX_SOCKET_PATH {
        panic!(
            "unix socket paths under {} would be {length} bytes, too long for PostgreSQL\n\
             hint: run with TMPDIR=/tmp",
            socket_dir.display()
        );
    }
}
