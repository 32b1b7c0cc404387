//! `lifeboat daemon` streaming WAL from real PostgreSQL: the RPO after the source is killed
//! with `kill -9`, no gap (nor a slot ahead of the repository) when the daemon itself is
//! killed mid-segment and restarted, and streaming resuming by itself after the source was down.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lifeboat::pg::Lsn;
use lifeboat_tests::{
    pgbench_invariants_hold, repo_durable_end, Archived, Cluster, Daemon, PARTIAL_UPLOAD_INTERVAL,
};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const SEG: u64 = 16 << 20;

/// A streaming cluster with pgbench tables and a base backup taken while the daemon streams.
fn streaming_with_backup(name: &str) -> (Archived, Daemon) {
    let a = Archived::streaming(name);
    let daemon = Daemon::start(&a);
    daemon.wait_streaming(&a);
    a.sql(
        "CREATE TABLE heartbeat (n bigint NOT NULL, ts timestamptz NOT NULL); \
         INSERT INTO heartbeat VALUES (0, clock_timestamp())",
    );
    a.cluster.pgbench_init(1);
    a.lifeboat_ok(&["backup"]);
    (a, daemon)
}

/// Updates the heartbeat every 0.5 s until told to stop or the server is gone; returns each
/// acknowledged value with the moment its commit was acknowledged.
fn heartbeat(cluster: &Cluster, stop: &AtomicBool) -> Vec<(i64, Instant)> {
    let mut acks = Vec::new();
    let update = "UPDATE heartbeat SET n = n + 1, ts = clock_timestamp() RETURNING n";
    while !stop.load(Ordering::SeqCst) {
        match cluster.try_psql("postgres", update) {
            Ok(n) => acks.push((n.parse().expect("heartbeat number"), Instant::now())),
            Err(_) => break,
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    acks
}

fn kill9_postmaster(cluster: &Cluster) {
    let pid_file = cluster.pgdata().join("postmaster.pid");
    let text = std::fs::read_to_string(&pid_file).expect("postmaster.pid");
    let pid: i32 = text
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .expect("a pid on the first line of postmaster.pid");
    kill(Pid::from_raw(pid), Signal::SIGKILL).expect("kill -9 the postmaster");
}

#[test]
fn source_killed_under_load_loses_at_most_the_partial_upload_interval() {
    let (a, daemon) = streaming_with_backup("primary");
    let load = a.cluster.pgbench_spawn(2, 60);
    let stop = AtomicBool::new(false);
    let acks = std::thread::scope(|s| {
        let writer = s.spawn(|| heartbeat(&a.cluster, &stop));
        std::thread::sleep(Duration::from_secs(6));
        kill9_postmaster(&a.cluster);
        stop.store(true, Ordering::SeqCst);
        writer.join().expect("heartbeat writer")
    });
    load.stop();
    let &(last_n, last_at) = acks.last().expect("acknowledged heartbeats");
    std::thread::sleep(PARTIAL_UPLOAD_INTERVAL + Duration::from_secs(1));
    daemon.stop();

    let restored = a.restore_and_start("restored", &[]);
    let n: i64 = restored
        .psql("postgres", "SELECT n FROM heartbeat")
        .parse()
        .expect("restored heartbeat");
    eprintln!("recovered heartbeat {n}; last acknowledged {last_n}");
    if n < last_n {
        let at = acks
            .iter()
            .find(|(k, _)| *k == n)
            .map(|(_, at)| *at)
            .unwrap_or_else(|| panic!("restored heartbeat {n} was never acknowledged"));
        let lost = last_at - at;
        assert!(
            lost <= PARTIAL_UPLOAD_INTERVAL + Duration::from_secs(1),
            "restored heartbeat {n}, {lost:?} older than the last acknowledged {last_n}"
        );
    }
    assert!(pgbench_invariants_hold(&restored));
}

#[test]
fn daemon_killed_mid_segment_resumes_without_gap_and_slot_never_passes_repository() {
    let (a, daemon) = streaming_with_backup("primary");
    let repo = a.root.repo_dir();
    let stop = AtomicBool::new(false);
    let violations = Mutex::new(Vec::new());
    let mut samples = 0;
    let slot = "SELECT coalesce(restart_lsn::text, '0/0') FROM pg_replication_slots \
                WHERE slot_name = 'lifeboat'";
    std::thread::scope(|s| {
        let sampler = s.spawn(|| {
            while !stop.load(Ordering::SeqCst) {
                let restart: Lsn = a.sql(slot).parse().expect("restart_lsn");
                // Listed after the slot was read: the repository's end only grows, and a
                // second listing covers a file renamed while the first one read the directory.
                let mut end = repo_durable_end(&repo, 1, SEG);
                if restart.0 > end {
                    std::thread::sleep(Duration::from_millis(100));
                    end = repo_durable_end(&repo, 1, SEG);
                }
                if restart.0 > end {
                    violations.lock().unwrap().push((restart, Lsn(end)));
                }
                samples += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        let load = a.cluster.pgbench_spawn(2, 60);
        std::thread::sleep(Duration::from_secs(3));
        daemon.kill9();
        std::thread::sleep(Duration::from_secs(1));
        let daemon = Daemon::start(&a);
        daemon.wait_streaming(&a);
        std::thread::sleep(Duration::from_secs(2));
        a.sql("CREATE TABLE after_restart AS SELECT 42 AS answer");
        std::thread::sleep(PARTIAL_UPLOAD_INTERVAL + Duration::from_secs(1));
        load.stop();
        stop.store(true, Ordering::SeqCst);
        sampler.join().expect("sampler");
        daemon.stop();
    });
    let violations = violations.into_inner().unwrap();
    assert!(
        violations.is_empty(),
        "slot restart_lsn passed the repository's durable end (restart, end): {violations:?}"
    );
    assert!(samples >= 10, "only {samples} samples");

    let restored = a.restore_and_start("restored", &[]);
    assert_eq!(
        restored.psql("postgres", "SELECT answer FROM after_restart"),
        "42"
    );
    assert!(pgbench_invariants_hold(&restored));
}

#[test]
fn streaming_resumes_by_itself_after_the_source_was_down() {
    let (a, daemon) = streaming_with_backup("primary");
    a.sql("CREATE TABLE before_stop AS SELECT 1 AS answer");
    a.cluster.stop();
    // Long enough for several failed reconnects and their backoff.
    std::thread::sleep(Duration::from_secs(5));
    a.cluster.start();
    daemon.wait_streaming(&a);
    a.sql("CREATE TABLE after_start AS SELECT 2 AS answer");
    std::thread::sleep(PARTIAL_UPLOAD_INTERVAL + Duration::from_secs(1));
    daemon.stop();

    let restored = a.restore_and_start("restored", &[]);
    assert_eq!(
        restored.psql("postgres", "SELECT answer FROM after_start"),
        "2"
    );
}
