//! Dropping root privileges to the `postgres` user for everything the tests run.
//!
//! Example: as root, `as_postgres(&mut Command::new("initdb"))` makes initdb run as
//! `postgres` (uid 101 on Debian) with `HOME` set to the test root.
//!
//! Invariant: PostgreSQL refuses to run as root, and archive_command runs Lifeboat as the server's
//! user, so as root every file a test makes must belong to `postgres`; as a normal user nothing
//! changes.

use std::os::unix::fs::{lchown, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use nix::unistd::{geteuid, Gid, Uid, User};

/// Whether the tests run with effective uid 0 (CI does).
pub fn running_as_root() -> bool {
    geteuid().is_root()
}

/// The uid and gid of the `postgres` user; panics with a hint when it does not exist.
fn postgres_ids() -> (Uid, Gid) {
    static IDS: OnceLock<(Uid, Gid)> = OnceLock::new();
    *IDS.get_or_init(|| match User::from_name("postgres") {
        Ok(Some(user)) => (user.uid, user.gid),
        Ok(None) => panic!(
            "no user named postgres, needed to run PostgreSQL as root\n\
             hint: install PostgreSQL with scripts/test, which creates the user"
        ),
        Err(e) => panic!("cannot look up the postgres user: {e}"),
    })
}

/// When root, makes `cmd` run as `postgres` with `HOME` set to the test root; otherwise no-op.
///
/// The test root is taken from the command's working directory, which [`crate::TestRoot`]'s
/// commands set; without one the system temp dir serves as both, since the caller's own
/// directory (the clone) may be closed to `postgres`.
pub fn as_postgres(cmd: &mut Command) {
    if !running_as_root() {
        return;
    }
    let (uid, gid) = postgres_ids();
    let home = match cmd.get_current_dir() {
        Some(dir) => dir.to_path_buf(),
        None => std::env::temp_dir(),
    };
    cmd.current_dir(&home)
        .uid(uid.as_raw())
        .gid(gid.as_raw())
        .env("HOME", &home)
        .env("USER", "postgres")
        .env("LOGNAME", "postgres");
}

/// When root, makes `path` (not following symlinks) belong to `postgres`; otherwise no-op.
pub fn give_to_postgres(path: &Path) {
    if !running_as_root() {
        return;
    }
    let (uid, gid) = postgres_ids();
    lchown(path, Some(uid.as_raw()), Some(gid.as_raw()))
        .unwrap_or_else(|e| panic!("cannot chown {} to postgres: {e}", path.display()));
}

/// Panics with a hint when, as root, `postgres` cannot reach `dir` through its ancestors.
pub(crate) fn check_reachable_by_postgres(dir: &Path) {
    if !running_as_root() {
        return;
    }
    let (uid, _) = postgres_ids();
    let closed: Option<PathBuf> = dir.ancestors().skip(1).find_map(|ancestor| {
        let meta = std::fs::metadata(ancestor).ok()?;
        let other_may_enter = meta.permissions().mode() & 0o001 != 0;
        (!other_may_enter && meta.uid() != uid.as_raw()).then(|| ancestor.to_path_buf())
    });
    if let Some(ancestor) = closed {
        panic!(
            "the postgres user cannot enter {}, so it cannot reach {}\n\
             hint: run with TMPDIR=/tmp",
            ancestor.display(),
            dir.display()
        );
    }
}
