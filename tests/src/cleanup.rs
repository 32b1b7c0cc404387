//! Stopping every server a test started and removing its test root, whatever way the test ends.
//!
//! Example: a test root `/tmp/lifeboat-test-backup_works-Ab12Cd/` holds a marker file
//! `.owner-pid` with the test process's pid. When the root is dropped (normally or while a panic
//! unwinds), when the test process exits with the root leaked, or when a later test process
//! finds the marker's pid dead (the earlier one was killed), every server whose `postmaster.pid`
//! lies under the root is stopped with `pg_ctl stop -m immediate`, then the root is deleted.
//!
//! Invariant: servers are stopped before their files are deleted, and nothing here panics, since
//! it runs inside `Drop` and at process exit; `LIFEBOAT_KEEP_TEST_DIRS=1` keeps the files (the
//! servers are still stopped) and removes the marker so no later run sweeps them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Mutex, Once, PoisonError};

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::pg_bin::pg_command;

/// The name prefix of every test root in the temp dir.
pub(crate) const ROOT_PREFIX: &str = "lifeboat-test-";

/// The marker file naming the process that owns a test root.
const OWNER_MARKER: &str = ".owner-pid";

/// How deep below a test root to look for data directories (drills nest their scratch clusters).
const SEARCH_DEPTH: usize = 5;

/// Test roots of this process that are not released yet.
static LIVE_ROOTS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Records `root` as owned by this process, so that it is cleaned up even if leaked.
pub(crate) fn register(root: &Path) {
    static FIRST: Once = Once::new();
    FIRST.call_once(|| {
        // SAFETY: the handler is an `extern "C" fn` that catches every panic itself.
        unsafe { nix::libc::atexit(release_all_at_exit) };
        sweep_stale_roots(root.parent().unwrap_or(root));
    });
    live_roots().push(root.to_path_buf());
    let marker = root.join(OWNER_MARKER);
    std::fs::write(&marker, std::process::id().to_string())
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", marker.display()));
}

/// Stops every server under `root`, then deletes it unless told to keep test directories.
pub(crate) fn release(root: &Path) {
    live_roots().retain(|live| live != root);
    stop_servers_under(root);
    if keep_test_dirs() {
        let _ = std::fs::remove_file(root.join(OWNER_MARKER));
        say(&format!("kept test directory {}", root.display()));
        return;
    }
    if let Err(e) = std::fs::remove_dir_all(root) {
        if e.kind() != std::io::ErrorKind::NotFound {
            say(&format!("cannot remove {}: {e}", root.display()));
        }
    }
}

/// Stops the server of `pgdata` at once if one is running; `root` is any directory `postgres`
/// may enter.
pub(crate) fn stop_server(root: &Path, pgdata: &Path) {
    let pid_file = pgdata.join("postmaster.pid");
    if !pid_file.exists() {
        return;
    }
    let stopped = std::panic::catch_unwind(|| {
        pg_command("pg_ctl", root)
            .args(["stop", "-m", "immediate", "-w", "-t", "30", "-D"])
            .arg(pgdata)
            .output()
    });
    if matches!(stopped, Ok(Ok(Output { ref status, .. })) if status.success()) {
        return;
    }
    // pg_ctl failed or was not found: make sure the postmaster does not outlive its files.
    if let Some(pid) = postmaster_pid(&pid_file) {
        if kill(pid, None).is_ok() {
            say(&format!(
                "pg_ctl could not stop {}; killing it",
                pgdata.display()
            ));
            let _ = kill(pid, Signal::SIGKILL);
        }
    }
}

fn live_roots() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    LIVE_ROOTS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Writes to the real stderr: libtest captures `eprintln!`, and would hide these from a passing test.
fn say(message: &str) {
    let _ = writeln!(std::io::stderr(), "lifeboat-tests: {message}");
}

fn keep_test_dirs() -> bool {
    std::env::var("LIFEBOAT_KEEP_TEST_DIRS").is_ok_and(|v| v == "1")
}

extern "C" fn release_all_at_exit() {
    let _ = std::panic::catch_unwind(|| {
        let leaked: Vec<PathBuf> = std::mem::take(&mut *live_roots());
        for root in leaked {
            release(&root);
        }
    });
}

/// Cleans up test roots whose owning process is gone (killed before it could clean up).
fn sweep_stale_roots(temp_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(temp_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let is_root = entry.file_name().to_string_lossy().starts_with(ROOT_PREFIX);
        let path = entry.path();
        if is_root && owner_is_gone(&path) {
            release(&path);
        }
    }
}

fn owner_is_gone(root: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(root.join(OWNER_MARKER)) else {
        return false;
    };
    match text.trim().parse::<i32>() {
        Ok(pid) => kill(Pid::from_raw(pid), None) == Err(Errno::ESRCH),
        Err(_) => false,
    }
}

fn stop_servers_under(root: &Path) {
    for pgdata in data_dirs_under(root) {
        stop_server(root, &pgdata);
    }
}

/// Directories under `root` holding a `postmaster.pid`, not descending into data directories.
fn data_dirs_under(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![(root.to_path_buf(), 0)];
    while let Some((dir, depth)) = pending.pop() {
        if dir.join("PG_VERSION").is_file() {
            if dir.join("postmaster.pid").is_file() {
                found.push(dir);
            }
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let is_dir = entry.file_type().is_ok_and(|kind| kind.is_dir());
            if is_dir && depth < SEARCH_DEPTH {
                pending.push((entry.path(), depth + 1));
            }
        }
    }
    found
}

fn postmaster_pid(pid_file: &Path) -> Option<Pid> {
    let text = std::fs::read_to_string(pid_file).ok()?;
    let pid: i32 = text.lines().next()?.trim().parse().ok()?;
    Some(Pid::from_raw(pid))
}
