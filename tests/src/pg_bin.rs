//! Finding the PostgreSQL server binaries and building commands that run them.
//!
//! Example: with PostgreSQL 15 from Debian, `pg_tool("initdb")` is
//! `/usr/lib/postgresql/15/bin/initdb`. The search order is `LIFEBOAT_PG_BIN`, then
//! `pg_config --bindir`, then the newest `/usr/lib/postgresql/<major>/bin`.
//!
//! Invariant: a directory is only chosen if it holds `initdb`, so a client-only install (psql
//! and pg_config without a server) never passes for a server.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::privilege::as_postgres;

/// Connection variables that would redirect the tools away from the cluster under test.
const CLEARED_ENV: [&str; 10] = [
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGUSER",
    "PGDATABASE",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGPASSFILE",
    "PGOPTIONS",
    "PGDATA",
];

/// The directory holding the PostgreSQL server binaries; panics with a hint when there is none.
pub fn pg_bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(find_bin_dir)
}

/// The path of PostgreSQL program `name`; panics with a hint when it is not installed.
pub fn pg_tool(name: &str) -> PathBuf {
    let path = pg_bin_dir().join(name);
    if !path.is_file() {
        panic!(
            "{} not found\nhint: install postgresql and postgresql-contrib (scripts/test does)",
            path.display()
        );
    }
    path
}

/// A command running PostgreSQL program `name` as `postgres` in `dir`, with PG* variables cleared.
pub(crate) fn pg_command(name: &str, dir: &Path) -> Command {
    let mut cmd = Command::new(pg_tool(name));
    cmd.current_dir(dir).env("LC_ALL", "C");
    for var in CLEARED_ENV {
        cmd.env_remove(var);
    }
    as_postgres(&mut cmd);
    cmd
}

fn find_bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LIFEBOAT_PG_BIN") {
        let dir = PathBuf::from(dir);
        if !has_initdb(&dir) {
            panic!("LIFEBOAT_PG_BIN={} holds no initdb", dir.display());
        }
        return dir;
    }
    pg_config_bin_dir()
        .filter(|dir| has_initdb(dir))
        .or_else(newest_debian_bin_dir)
        .unwrap_or_else(|| {
            panic!(
                "no PostgreSQL server binaries found (looked at LIFEBOAT_PG_BIN, \
                 pg_config --bindir and /usr/lib/postgresql/*/bin)\n\
                 hint: run scripts/test, which installs postgresql and postgresql-contrib"
            )
        })
}

fn has_initdb(dir: &Path) -> bool {
    dir.join("initdb").is_file()
}

fn pg_config_bin_dir() -> Option<PathBuf> {
    let output = Command::new("pg_config").arg("--bindir").output().ok()?;
    if !output.status.success() {
        return None;
    }
    let dir = String::from_utf8(output.stdout).ok()?;
    Some(PathBuf::from(dir.trim()))
}

fn newest_debian_bin_dir() -> Option<PathBuf> {
    let versions = std::fs::read_dir("/usr/lib/postgresql").ok()?;
    versions
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let major: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            has_initdb(&bin).then_some((major, bin))
        })
        .max_by_key(|(major, _)| *major)
        .map(|(_, bin)| bin)
}
