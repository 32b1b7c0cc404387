//! Point-in-time restores on real clusters: a backup under pgbench load, then restores to a
//! time, an LSN, an xid, a named restore point, the end of the backup, and the latest WAL,
//! each checked on the data.

use std::time::Duration;

use lifeboat_tests::{pgbench_invariants_hold, Archived};

fn now_utc(a: &Archived) -> String {
    a.sql("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')")
}

fn markers(c: &lifeboat_tests::Cluster) -> String {
    c.psql(
        "postgres",
        "SELECT coalesce(string_agg(n::text, ',' ORDER BY n), '') FROM marker",
    )
}

#[test]
fn restore_to_a_time_between_two_markers_keeps_only_the_earlier() {
    let a = Archived::new("primary");
    a.cluster.pgbench_init(2);
    a.sql("CREATE TABLE marker(n int, at timestamptz DEFAULT clock_timestamp())");
    let load = a.cluster.pgbench_spawn(2, 300);
    std::thread::sleep(Duration::from_secs(2));
    a.lifeboat_ok(&["backup"]);
    std::thread::sleep(Duration::from_secs(2));

    a.sql("INSERT INTO marker(n) VALUES (1)");
    std::thread::sleep(Duration::from_millis(500));
    let target = now_utc(&a);
    std::thread::sleep(Duration::from_millis(500));
    a.sql("INSERT INTO marker(n) VALUES (2)");
    std::thread::sleep(Duration::from_secs(1));
    load.stop();
    a.switch_and_archive();

    let restored = a.restore_and_start("restored", &["--target-time", &target]);
    assert_eq!(markers(&restored), "1", "restored to {target} UTC");
    assert!(
        pgbench_invariants_hold(&restored),
        "pgbench balances disagree after the restore"
    );
    restored.stop();
    let checked = restored.checksums_check();
    assert!(
        checked.is_ok(),
        "pg_checksums on the restored cluster: {checked:?}"
    );
}

#[test]
fn restore_to_an_lsn_equals_the_source_dump_at_that_lsn() {
    let a = Archived::new("primary");
    a.cluster.pgbench_init(1);
    a.lifeboat_ok(&["backup"]);
    a.cluster.pgbench_run(2, 3);

    // Writes are paused while the position and the dump are taken.
    let lsn = a.sql("SELECT pg_current_wal_insert_lsn()");
    let expected = a.cluster.pg_dump("postgres");
    a.cluster.pgbench_run(2, 2);
    a.sql("CREATE TABLE after_the_target(x int)");
    a.switch_and_archive();

    let restored = a.restore_and_start("restored", &["--target-lsn", &lsn]);
    assert_eq!(
        restored.pg_dump("postgres"),
        expected,
        "dump at {lsn} differs from the source's"
    );
    assert!(
        restored.amcheck().is_ok(),
        "pg_amcheck: {:?}",
        restored.amcheck()
    );
}

#[test]
fn restores_to_an_xid_a_restore_point_immediate_and_latest() {
    let a = Archived::new("primary");
    a.sql("CREATE TABLE marker(n int, at timestamptz DEFAULT clock_timestamp())");
    a.sql("INSERT INTO marker(n) VALUES (1)");
    a.lifeboat_ok(&["backup"]);

    a.sql("INSERT INTO marker(n) VALUES (10)");
    let xid = a.sql("BEGIN; INSERT INTO marker(n) VALUES (11); SELECT txid_current(); COMMIT;");
    a.sql("INSERT INTO marker(n) VALUES (12)");
    a.sql("SELECT pg_create_restore_point('before_thirteen')");
    a.sql("INSERT INTO marker(n) VALUES (13)");
    a.switch_and_archive();

    let by_xid = a.restore_and_start("by-xid", &["--target-xid", xid.trim()]);
    assert_eq!(markers(&by_xid), "1,10,11", "restore to xid {xid}");
    drop(by_xid);

    let by_name = a.restore_and_start("by-name", &["--target-name", "before_thirteen"]);
    assert_eq!(markers(&by_name), "1,10,11,12");
    drop(by_name);

    let immediate = a.restore_and_start("immediate", &["--target-immediate"]);
    assert_eq!(markers(&immediate), "1");
    drop(immediate);

    let latest = a.restore_and_start("latest", &[]);
    assert_eq!(markers(&latest), "1,10,11,12,13");
}

#[test]
fn a_target_outside_the_window_is_refused_before_anything_is_written() {
    let a = Archived::new("primary");
    a.lifeboat_ok(&["backup"]);
    a.switch_and_archive();
    let dir = a.restore_dir("refused");
    let d = dir.to_str().unwrap();

    let out = a.lifeboat(&["restore", "--to", d, "--target-time", "2000-01-01 00:00:00"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a target in 2000 must be refused");
    assert!(
        err.contains("window") || err.contains("earliest"),
        "message names the window: {err}"
    );
    assert!(!dir.exists(), "nothing may be written for a refused target");

    let out = a.lifeboat(&[
        "restore",
        "--to",
        d,
        "--target-time",
        "2999-01-01 00:00:00+00",
    ]);
    assert!(!out.status.success(), "a target in 2999 must be refused");
    assert!(!dir.exists());
}

#[test]
fn a_tablespace_is_backed_up_and_restored_to_its_new_place() {
    let a = Archived::new("primary");
    let ts = a.root.mkdir("tablespace");
    a.sql(&format!(
        "CREATE TABLESPACE extra LOCATION '{}'",
        ts.display()
    ));
    a.sql("CREATE TABLE far(n int) TABLESPACE extra");
    a.sql("INSERT INTO far SELECT generate_series(1, 50000)");
    a.lifeboat_ok(&["backup"]);
    a.sql("INSERT INTO far VALUES (-1)");
    a.switch_and_archive();

    let restored = a.restore_and_start("restored", &[]);
    let count = restored.psql("postgres", "SELECT count(*) FROM far");
    assert_eq!(count, "50001");
    let location = restored.psql(
        "postgres",
        "SELECT pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname = 'extra'",
    );
    assert!(
        location.starts_with(a.root.path().join("restored").to_str().unwrap()),
        "tablespace restored to {location}, not inside the restore"
    );
    assert_ne!(
        location,
        ts.to_str().unwrap(),
        "the restore must not write into the source's tablespace"
    );
}
