//! Tests of the test harness itself: clusters, load, checks, binaries and cleanup.

use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Duration;

use lifeboat_tests::{
    free_port, pgbench_balances, pgbench_invariants_hold, run_ok, running_as_root, write_kek,
    Cluster, TestRoot,
};

/// Whether process `pid` is still running (a zombie waiting for its reaper counts as gone).
fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|rest| rest.trim().chars().next());
            state != Some('Z')
        }
        Err(_) => false,
    }
}

fn postmaster_pid(cluster: &Cluster) -> u32 {
    let pid_file = cluster.pgdata().join("postmaster.pid");
    let text = std::fs::read_to_string(&pid_file).expect("running cluster has postmaster.pid");
    text.lines()
        .next()
        .and_then(|line| line.parse().ok())
        .expect("pid on the first line")
}

fn owner_is_postgres_when_root(path: &Path) {
    if running_as_root() {
        let postgres = nix::unistd::User::from_name("postgres").unwrap().unwrap();
        let owner = std::fs::metadata(path).unwrap().uid();
        assert_eq!(owner, postgres.uid.as_raw(), "{} owner", path.display());
    }
}

#[test]
fn cluster_under_pgbench_keeps_invariants_and_checksums() {
    let root = TestRoot::new();
    let root_path = root.path().to_path_buf();
    let cluster = Cluster::init(&root, "primary");
    cluster.start();
    owner_is_postgres_when_root(cluster.pgdata());

    cluster.pgbench_init(1);
    let summary = cluster.pgbench_run(2, 3);
    assert!(summary.contains("tps"), "pgbench summary: {summary}");
    let background = cluster.pgbench_spawn(2, 60);
    std::thread::sleep(Duration::from_secs(2));
    background.stop();
    let balances = pgbench_balances(&cluster);
    assert!(pgbench_invariants_hold(&cluster), "sums part: {balances:?}");
    assert_ne!(balances[3], 0, "the load changed no balance");

    assert_eq!(cluster.psql("postgres", "SHOW data_checksums"), "on");
    let dump = cluster.pg_dump("postgres");
    assert!(dump.contains("CREATE TABLE public.pgbench_accounts"));
    assert_eq!(
        dump,
        cluster.pg_dump("postgres"),
        "two dumps of unchanged data differ"
    );
    cluster
        .amcheck()
        .unwrap_or_else(|report| panic!("{report}"));

    cluster.stop();
    assert!(!cluster.is_running());
    cluster
        .checksums_check()
        .unwrap_or_else(|report| panic!("{report}"));

    drop(cluster);
    drop(root);
    assert!(!root_path.exists(), "{} left behind", root_path.display());
}

#[test]
fn panic_in_a_test_still_stops_the_server_and_removes_the_root() {
    let mut seen: Option<(PathBuf, u32)> = None;
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let root = TestRoot::new();
        let cluster = Cluster::init(&root, "doomed");
        cluster.start();
        seen = Some((root.path().to_path_buf(), postmaster_pid(&cluster)));
        cluster.psql("postgres", "SELECT no_such_function()");
    }));
    assert!(outcome.is_err(), "the failing query did not panic");
    let (root_path, pid) = seen.expect("the cluster started");
    assert!(!process_alive(pid), "postmaster {pid} survived the panic");
    assert!(!root_path.exists(), "{} left behind", root_path.display());
}

#[test]
fn adopted_copy_of_a_stopped_cluster_serves_the_same_data() {
    let root = TestRoot::new();
    let origin = Cluster::init(&root, "origin");
    origin.start();
    origin.psql(
        "postgres",
        "CREATE TABLE t (id int PRIMARY KEY, note text);
         INSERT INTO t SELECT g, 'row ' || g FROM generate_series(1, 1000) g;",
    );
    origin.stop();

    let copy_dir = root.mkdir("copy");
    run_ok(
        root.command("cp")
            .arg("-a")
            .arg(origin.pgdata())
            .arg(&copy_dir),
    );
    let copy = Cluster::adopt(&root, "copy", &copy_dir.join("data"), free_port());
    copy.start();
    origin.start();
    assert_ne!(copy.port(), origin.port());
    assert_eq!(copy.psql("postgres", "SELECT count(*) FROM t"), "1000");
    assert_eq!(copy.pg_dump("postgres"), origin.pg_dump("postgres"));
    copy.wait_for_recovery_end(Duration::from_secs(10));
    copy.stop();
    copy.checksums_check()
        .unwrap_or_else(|report| panic!("{report}"));
}

#[test]
fn start_moves_to_a_free_port_when_its_port_is_taken() {
    let root = TestRoot::new();
    let cluster = Cluster::init(&root, "crowded");
    let taken = cluster.port();
    let _squatter = TcpListener::bind(("127.0.0.1", taken)).expect("port is free");

    cluster.start();

    assert_ne!(cluster.port(), taken);
    assert_eq!(cluster.psql("postgres", "SELECT 1"), "1");
    assert!(cluster
        .conninfo()
        .contains(&format!("port={}", cluster.port())));
}

#[test]
fn lifeboat_binaries_and_key_are_usable_by_postgres() {
    let root = TestRoot::new();
    for binary in [root.lifeboat_path(), root.lifeboat_drill_path()] {
        let mode = std::fs::metadata(&binary).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755, "{} mode", binary.display());
    }
    run_ok(root.lifeboat().arg("--help"));
    run_ok(root.lifeboat_drill().arg("--help"));

    let kek = write_kek(&root);
    let meta = std::fs::metadata(&kek).unwrap();
    assert_eq!(meta.len(), 32);
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    owner_is_postgres_when_root(&kek);
    run_ok(root.command("cat").arg(&kek));
}
