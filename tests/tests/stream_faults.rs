//! The repository refusing writes for a while under a streaming daemon (a real fault: its WAL
//! directory made read-only): the slot is never advanced past what is stored, and nothing is
//! lost once writes succeed again.

use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use lifeboat::pg::Lsn;
use lifeboat_tests::{pgbench_invariants_hold, repo_durable_end, Archived, Daemon};

const SEG: u64 = 16 << 20;

#[test]
fn repository_writes_failing_never_advance_the_slot_and_lose_nothing() {
    let a = Archived::streaming("primary");
    let daemon = Daemon::start(&a);
    daemon.wait_streaming(&a);
    a.cluster.pgbench_init(1);
    a.lifeboat_ok(&["backup"]);
    a.sql("CREATE TABLE marker(n int)");

    let wal_dir = a.root.repo_dir().join("wal/00000001");
    let repo = a.root.repo_dir();
    let stop = AtomicBool::new(false);
    let slot = "SELECT coalesce(restart_lsn::text, '0/0') FROM pg_replication_slots \
                WHERE slot_name = 'lifeboat'";
    let violations = std::thread::scope(|s| {
        let sampler = s.spawn(|| {
            let mut bad = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let end = repo_durable_end(&repo, 1, SEG);
                let restart: Lsn = a.sql(slot).parse().expect("restart_lsn");
                if restart.0 > end.max(repo_durable_end(&repo, 1, SEG)) {
                    bad.push((restart, Lsn(end)));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            bad
        });
        std::fs::set_permissions(&wal_dir, std::fs::Permissions::from_mode(0o555)).unwrap();
        let load = a.cluster.pgbench_spawn(2, 60);
        for n in 1..=5 {
            a.sql(&format!("INSERT INTO marker VALUES ({n})"));
            if n == 3 {
                a.sql("SELECT pg_switch_wal()");
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        std::fs::set_permissions(&wal_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        a.sql("INSERT INTO marker VALUES (6)");
        load.stop();
        // Once writes succeed again, everything up to the marker becomes durable.
        let target = Lsn(a
            .sql("SELECT pg_current_wal_flush_lsn() - '0/0'::pg_lsn")
            .parse()
            .unwrap());
        let deadline = Instant::now() + Duration::from_secs(90);
        while repo_durable_end(&repo, 1, SEG) < target.0 {
            assert!(
                Instant::now() < deadline,
                "WAL through {target} not durable 90 s after writes resumed\n{}",
                daemon.log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        stop.store(true, Ordering::SeqCst);
        sampler.join().unwrap()
    });
    assert!(
        violations.is_empty(),
        "slot restart_lsn passed the durable end: {violations:?}"
    );
    let log = daemon.log();
    assert!(
        log.contains("ermission denied"),
        "the fault never reached the daemon:\n{log}"
    );
    daemon.stop();

    let restored = a.restore_and_start("restored", &[]);
    let markers = restored.psql(
        "postgres",
        "SELECT string_agg(n::text, ',' ORDER BY n) FROM marker",
    );
    assert_eq!(markers, "1,2,3,4,5,6");
    assert!(pgbench_invariants_hold(&restored));
}
