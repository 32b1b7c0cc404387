//! Finding the built Lifeboat binaries that the tests copy into each test root.
//!
//! Example: in a plain checkout they are `<workspace>/target/debug/lifeboat` and
//! `<workspace>/target/debug/lifeboat-drill`. `LIFEBOAT_BIN_DIR` names the directory outright;
//! otherwise it is `$CARGO_TARGET_DIR` (or `<workspace>/target`) joined with `$LIFEBOAT_PROFILE`
//! (or `debug`).
//!
//! Invariant: `cargo test` does not build another package's binaries, so a test must never run
//! binaries older than the sources they come from: such a binary is refused with the command
//! that rebuilds it.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The Lifeboat binaries copied into every test root's `bin/`.
pub const LIFEBOAT_BINARIES: [&str; 2] = ["lifeboat", "lifeboat-drill"];

const HINT: &str = "hint: run `cargo build --workspace --bins` first (scripts/test does)";

/// The directory the built Lifeboat binaries are taken from.
pub fn built_bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LIFEBOAT_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => workspace_dir().join("target"),
    };
    let profile = std::env::var("LIFEBOAT_PROFILE").unwrap_or_else(|_| "debug".to_owned());
    target.join(profile)
}

/// The path of built binary `name`; panics with a hint when it is missing or out of date.
pub(crate) fn built_binary(name: &str) -> PathBuf {
    let path = built_bin_dir().join(name);
    let built = modified(&path)
        .unwrap_or_else(|| panic!("Lifeboat binary {} not found\n{HINT}", path.display()));
    if std::env::var_os("LIFEBOAT_BIN_DIR").is_none() {
        refuse_if_stale(name, &path, built);
    }
    path
}

fn workspace_dir() -> PathBuf {
    let tests_crate = Path::new(env!("CARGO_MANIFEST_DIR"));
    tests_crate.parent().unwrap_or(tests_crate).to_path_buf()
}

fn refuse_if_stale(name: &str, path: &Path, built: SystemTime) {
    let crates: &[&str] = match name {
        "lifeboat" => &["daemon"],
        _ => &["daemon", "drill-runner"],
    };
    let workspace = workspace_dir();
    for krate in crates {
        let newest = newest_source(&workspace.join(krate));
        if let Some((source, changed)) = newest.filter(|(_, changed)| *changed > built) {
            panic!(
                "Lifeboat binary {} is older than {} (changed {:?} later)\n{HINT}",
                path.display(),
                source.display(),
                changed.duration_since(built).unwrap_or_default()
            );
        }
    }
}

/// The most recently changed file among a crate's `Cargo.toml` and `src/`.
fn newest_source(krate: &Path) -> Option<(PathBuf, SystemTime)> {
    let mut newest: Option<(PathBuf, SystemTime)> = None;
    let mut pending = vec![krate.join("src")];
    let mut consider = |path: PathBuf| {
        if let Some(changed) = modified(&path) {
            if newest.as_ref().is_none_or(|(_, seen)| changed > *seen) {
                newest = Some((path, changed));
            }
        }
    };
    consider(krate.join("Cargo.toml"));
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => pending.push(entry.path()),
                Ok(kind) if kind.is_file() => consider(entry.path()),
                _ => {}
            }
        }
    }
    newest
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path)
        .and_then(|meta| meta.modified())
        .ok()
}
