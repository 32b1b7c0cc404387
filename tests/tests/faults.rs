//! Bad input and damaged repositories: wal-fetch's exit codes, a flipped byte in any object,
//! a wrong key-encryption key, and an unknown configuration key.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use lifeboat_tests::{running_as_root, Archived};

/// Every object file under `dir`, relative to it.
fn objects(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

fn flip(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = at % bytes.len();
    bytes[at] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn wal_fetch_exit_codes_found_absent_and_unreadable() {
    let a = Archived::new("primary");
    a.switch_and_archive();
    let name = a.sql("SELECT last_archived_wal FROM pg_stat_archiver");
    let dest = a.root.mkdir("fetched").join("seg");
    let d = dest.to_str().unwrap();

    let found = a.lifeboat(&["wal-fetch", &name, d]);
    assert_eq!(
        found.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&found.stderr)
    );
    assert_eq!(
        std::fs::metadata(&dest).unwrap().len(),
        16 << 20,
        "exactly one segment"
    );

    let absent = a.lifeboat(&["wal-fetch", "0000000100000000000000FE", d]);
    assert_eq!(
        absent.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&absent.stderr)
    );
    let history = a.lifeboat(&["wal-fetch", "00000002.history", d]);
    assert_eq!(history.status.code(), Some(1));

    // The repository becomes unreadable: recovery must stop, not promote.
    let repo = a.root.repo_dir();
    std::fs::set_permissions(&repo, std::fs::Permissions::from_mode(0o000)).unwrap();
    let broken = a.lifeboat(&["wal-fetch", &name, d]);
    std::fs::set_permissions(&repo, std::fs::Permissions::from_mode(0o755)).unwrap();
    if running_as_root() || !nix::unistd::geteuid().is_root() {
        let code = broken.status.code().unwrap_or(0);
        assert!(
            code > 125,
            "an unreadable repository must exit above 125, got {code}: {}",
            String::from_utf8_lossy(&broken.stderr)
        );
    }
}

#[test]
fn one_flipped_byte_in_any_object_is_detected_and_named() {
    let a = Archived::new("primary");
    a.cluster.pgbench_init(1);
    a.lifeboat_ok(&["backup"]);
    a.switch_and_archive();
    let repo = a.root.repo_dir();
    let fetch_to = a.root.mkdir("fetched").join("seg");

    for (n, rel) in objects(&repo).into_iter().enumerate() {
        let path = repo.join(&rel);
        let original = std::fs::read(&path).unwrap();
        flip(&path, original.len() / 2 + n);
        let name = rel.to_str().unwrap().to_string();
        let restore_to = a.restore_dir(&format!("flip-{n}"));
        let mut errors = String::new();
        let restore = a.lifeboat(&[
            "restore",
            "--to",
            restore_to.to_str().unwrap(),
            "--target-immediate",
        ]);
        errors.push_str(&String::from_utf8_lossy(&restore.stderr));
        let mut failed = !restore.status.success();
        if name.starts_with("wal/") && !name.ends_with(".history") {
            let seg = rel.file_name().unwrap().to_str().unwrap().to_string();
            let fetch = a.lifeboat(&["wal-fetch", &seg, fetch_to.to_str().unwrap()]);
            errors.push_str(&String::from_utf8_lossy(&fetch.stderr));
            failed |= fetch.status.code().unwrap_or(0) > 125;
        }
        std::fs::write(&path, &original).unwrap();
        assert!(failed, "a flipped byte in {name} went unnoticed");
        let short = name.rsplit('/').next().unwrap();
        assert!(
            errors.contains(short) || errors.contains("lifeboat.repo"),
            "the error names {name}:\n{errors}"
        );
    }
}

#[test]
fn a_wrong_kek_fails_with_a_clear_error() {
    let a = Archived::new("primary");
    let kek = a.root.kek_path();
    std::fs::write(&kek, [0x5a; 32]).unwrap();
    let out = a.lifeboat(&["list"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("key-encryption key") && err.contains("hint:"),
        "{err}"
    );
}

#[test]
fn an_unknown_configuration_key_names_its_line() {
    let a = Archived::new("primary");
    let text = std::fs::read_to_string(&a.config).unwrap();
    let bad = text.replacen("[cluster.targets]", "[cluster.targets]\nrpo-seconds = 5", 1);
    let line = bad
        .lines()
        .position(|l| l.starts_with("rpo-seconds"))
        .unwrap()
        + 1;
    a.root.write_file("bad.toml", bad);
    let out = lifeboat_tests::run(
        a.root
            .lifeboat()
            .arg("--config")
            .arg(a.root.path().join("bad.toml"))
            .arg("list"),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("rpo-seconds") && err.contains(&format!("line {line}")),
        "{err}"
    );
}

#[test]
fn a_wal_segment_missing_in_the_middle_is_never_taken_for_the_end_of_wal() {
    let a = Archived::new("primary");
    a.sql("CREATE TABLE marker(n int)");
    a.lifeboat_ok(&["backup"]);
    let mut names = Vec::new();
    for n in 1..=3 {
        a.sql(&format!("INSERT INTO marker VALUES ({n})"));
        names.push(a.sql("SELECT pg_walfile_name(pg_current_wal_lsn())"));
        a.switch_and_archive();
    }
    let hole = a.root.repo_dir().join("wal/00000001").join(&names[1]);
    let aside = a.root.path().join("aside");
    std::fs::rename(&hole, &aside).unwrap();

    let to = a.restore_dir("gap");
    let out = a.lifeboat(&["restore", "--to", to.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a latest restore across a WAL gap must be refused"
    );
    assert!(err.contains(&names[1]) && err.contains("gap"), "{err}");
    assert!(!to.exists(), "nothing is written for a refused restore");

    let dest = a.root.mkdir("fetch").join("seg");
    let fetch = a.lifeboat(&["wal-fetch", &names[1], dest.to_str().unwrap()]);
    let code = fetch.status.code().unwrap_or(0);
    assert!(
        code > 125,
        "a hole must stop recovery (exit {code}): {}",
        String::from_utf8_lossy(&fetch.stderr)
    );
    std::fs::rename(&aside, &hole).unwrap();
}

#[test]
fn a_page_with_a_bad_checksum_in_the_source_is_named_and_fails_the_backup() {
    let a = Archived::new("primary");
    a.sql("CREATE TABLE victim AS SELECT generate_series(1, 10000) AS n");
    a.sql("CHECKPOINT");
    let rel = a.sql("SELECT pg_relation_filepath('victim')");
    a.cluster.stop();
    let file = a.cluster.pgdata().join(&rel);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[8192 + 4000] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();
    a.cluster.start();

    let out = a.lifeboat(&["backup"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a backup of a corrupt source must not exit 0"
    );
    assert!(
        err.contains(&rel) && err.contains("block 1"),
        "the bad block is named: {err}"
    );
    let list = a.lifeboat_ok(&["list"]);
    assert!(list.contains("BAD PAGE"), "list flags the backup:\n{list}");
}

#[test]
fn a_gap_between_backups_narrows_the_window_and_a_bad_manifest_costs_only_its_backup() {
    let a = Archived::new("primary");
    a.lifeboat_ok(&["backup"]);
    a.sql("CREATE TABLE between_backups(n int)");
    let lost = a.sql("SELECT pg_walfile_name(pg_current_wal_lsn())");
    a.switch_and_archive();
    a.switch_and_archive();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    a.lifeboat_ok(&["backup"]);
    let ids: Vec<String> = std::fs::read_dir(a.root.repo_dir().join("backups"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let (older, newer) = (
        ids.iter().min().unwrap().clone(),
        ids.iter().max().unwrap().clone(),
    );
    std::fs::remove_file(a.root.repo_dir().join("wal/00000001").join(&lost)).unwrap();

    let list = a.lifeboat_ok(&["list"]);
    assert!(
        list.contains(&format!("backup {newer} through WAL")),
        "window comes from the newer backup:\n{list}"
    );
    assert!(
        list.contains(&format!("not in the window: backup {older}")) && list.contains(&lost),
        "{list}"
    );

    // A manifest that does not open (copied under another id) is named, and the rest still works.
    let forged = a.root.repo_dir().join("backups/20300101T000000Z");
    std::fs::create_dir(&forged).unwrap();
    std::fs::copy(
        a.root
            .repo_dir()
            .join("backups")
            .join(&newer)
            .join("manifest"),
        forged.join("manifest"),
    )
    .unwrap();
    let list = a.lifeboat_ok(&["list"]);
    assert!(
        list.contains("UNREADABLE backup 20300101T000000Z"),
        "{list}"
    );
    let restored = a.restore_and_start("restored", &["--backup", &newer, "--target-immediate"]);
    assert_eq!(
        restored.psql("postgres", "SELECT count(*) FROM between_backups"),
        "0"
    );
}
