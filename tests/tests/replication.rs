//! The physical replication client against real PostgreSQL servers: commands, slots, a streamed
//! segment equal to the server's file, flush reports moving the slot, password methods, removed
//! WAL, and the end of a historic timeline after a promotion.

use std::future::Future;
use std::time::Duration;

use lifeboat::pg::replication::{ReplError, ReplicationClient, ReplicationStream, StreamEvent};
use lifeboat::pg::segment::parse_history;
use lifeboat::pg::{Lsn, SegmentName, TimelineId};
use lifeboat_tests::{free_port, pg_tool, run_ok, Cluster, TestRoot};

const SEG: u64 = 16 << 20;
const TLI1: TimelineId = TimelineId(1);

/// Runs `body` on a one-thread runtime; blocking psql calls inside it are fine because the
/// client has no background task.
fn block_on<F: Future>(body: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(body)
}

fn started(root: &TestRoot, name: &str) -> Cluster {
    let cluster = Cluster::init(root, name);
    cluster.start();
    cluster
}

fn lsn(cluster: &Cluster, sql: &str) -> Lsn {
    let text = cluster.psql("postgres", sql);
    text.parse()
        .unwrap_or_else(|e| panic!("{sql} gave {text:?}: {e}"))
}

fn slot_restart_lsn(cluster: &Cluster, slot: &str) -> Lsn {
    lsn(
        cluster,
        &format!("SELECT restart_lsn FROM pg_replication_slots WHERE slot_name = '{slot}'"),
    )
}

fn tcp_conninfo(cluster: &Cluster, user_and_password: &str) -> String {
    format!(
        "host=127.0.0.1 port={} dbname=postgres {user_and_password}",
        cluster.port()
    )
}

async fn connect(conninfo: &str) -> ReplicationClient {
    ReplicationClient::connect(conninfo)
        .await
        .unwrap_or_else(|e| panic!("connect {conninfo}: {e}"))
}

async fn next_event(stream: &mut ReplicationStream<'_>) -> StreamEvent {
    tokio::time::timeout(Duration::from_secs(30), stream.next())
        .await
        .expect("an event within 30 s")
        .expect("stream event")
}

/// Reads XLogData until `want` bytes from the stream's start are in `into`, answering keepalives.
async fn collect(stream: &mut ReplicationStream<'_>, into: &mut Vec<u8>, want: usize) {
    while into.len() < want {
        match next_event(stream).await {
            StreamEvent::XLogData { data, .. } => into.extend_from_slice(&data),
            StreamEvent::Keepalive {
                reply_requested: true,
                ..
            } => stream
                .send_status(Lsn(0), Lsn(0), Lsn(0), false)
                .await
                .expect("status"),
            StreamEvent::Keepalive { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn identify_system_segment_size_and_slots_match_the_server() {
    let root = TestRoot::new();
    let cluster = started(&root, "primary");
    block_on(async {
        let mut client = connect(&cluster.conninfo()).await;
        let system = client.identify_system().await.expect("identify");
        let sysid = cluster.psql(
            "postgres",
            "SELECT system_identifier FROM pg_control_system()",
        );
        assert_eq!(system.system_identifier.to_string(), sysid);
        assert_eq!(system.timeline, TLI1);
        assert!(system.xlogpos <= lsn(&cluster, "SELECT pg_current_wal_flush_lsn()"));
        assert_eq!(client.wal_segment_size().await.expect("segment size"), SEG);
        assert_eq!(client.server_major(), Some(15));

        assert_eq!(
            client.read_replication_slot("lb").await.expect("read"),
            None
        );
        client
            .create_physical_slot("lb")
            .await
            .expect("create slot");
        let dup = client
            .create_physical_slot("lb")
            .await
            .expect_err("duplicate");
        assert!(matches!(dup, ReplError::SlotExists { .. }), "{dup}");
        assert!(!dup.is_retryable());
        assert!(dup.to_string().contains("\"lb\""), "{dup}");
        let slot = client
            .read_replication_slot("lb")
            .await
            .expect("read")
            .expect("slot");
        assert_eq!(slot.restart_lsn, Some(slot_restart_lsn(&cluster, "lb")));
        assert_eq!(slot.restart_tli, Some(TLI1));
        let via_sql = lifeboat::pg::replication::read_slot_via_sql(&cluster.conninfo(), "lb")
            .await
            .expect("sql read");
        assert_eq!(via_sql.and_then(|s| s.restart_lsn), slot.restart_lsn);
        let bad = client
            .create_physical_slot("Bad\"Name")
            .await
            .expect_err("bad name");
        assert!(matches!(bad, ReplError::InvalidSlotName(_)), "{bad}");
        let tli1 = client
            .timeline_history(TLI1)
            .await
            .expect_err("no history for 1");
        assert!(matches!(tli1, ReplError::Server { .. }), "{tli1}");

        let mut tcp = connect(&tcp_conninfo(&cluster, "user=postgres")).await;
        assert_eq!(
            tcp.identify_system().await.expect("tcp identify"),
            system_now(&mut client).await
        );
        let tls = tcp_conninfo(&cluster, "user=postgres sslmode=require");
        let tls = ReplicationClient::connect(&tls)
            .await
            .err()
            .expect("no TLS");
        assert!(matches!(tls, ReplError::TlsUnsupported { .. }), "{tls}");
    });
}

async fn system_now(client: &mut ReplicationClient) -> lifeboat::pg::replication::SystemInfo {
    client.identify_system().await.expect("identify")
}

#[test]
fn streamed_segment_equals_pg_wal_file_and_flush_moves_the_slot() {
    let root = TestRoot::new();
    let cluster = started(&root, "primary");
    block_on(async {
        let mut client = connect(&cluster.conninfo()).await;
        client
            .create_physical_slot("lb")
            .await
            .expect("create slot");
        let restart = slot_restart_lsn(&cluster, "lb");
        let start = restart.segment_start(SEG);
        let mut stream = client
            .start_replication(Some("lb"), start, TLI1)
            .await
            .expect("start");

        let mut wal = Vec::new();
        collect(&mut stream, &mut wal, 1).await;
        let app = "SELECT application_name FROM pg_stat_replication";
        assert_eq!(cluster.psql("postgres", app), "lifeboat");
        cluster.psql(
            "postgres",
            "CREATE TABLE t AS SELECT generate_series(1, 20000) AS n",
        );
        cluster.psql("postgres", "SELECT pg_switch_wal()");
        collect(&mut stream, &mut wal, SEG as usize).await;
        assert_eq!(stream.received_end(), Lsn(start.0 + wal.len() as u64));

        let name = SegmentName::containing(TLI1, start, SEG).file_name(SEG);
        let file = std::fs::read(cluster.pgdata().join("pg_wal").join(&name)).expect("segment");
        assert!(
            wal[..SEG as usize] == file[..],
            "streamed {name} differs from pg_wal"
        );

        let flush = Lsn(start.0 + SEG);
        stream
            .send_status(flush, flush, Lsn(0), false)
            .await
            .expect("status");
        let mut waited = Duration::ZERO;
        while slot_restart_lsn(&cluster, "lb") != flush {
            assert!(
                waited < Duration::from_secs(10),
                "slot stayed before {flush}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
            waited += Duration::from_millis(50);
        }
        stream.stop().await.expect("stop");
        let after = client.identify_system().await.expect("usable after stop");
        assert!(after.xlogpos >= flush);
    });
}

#[test]
fn removed_wal_is_a_distinct_error_after_copy_both() {
    let root = TestRoot::new();
    let cluster = started(&root, "primary");
    for _ in 0..3 {
        cluster.psql(
            "postgres",
            "CREATE TABLE IF NOT EXISTS t (n int); INSERT INTO t VALUES (1)",
        );
        cluster.psql("postgres", "SELECT pg_switch_wal()");
        cluster.psql("postgres", "CHECKPOINT");
    }
    block_on(async {
        let mut client = connect(&cluster.conninfo()).await;
        let mut stream = client
            .start_replication(None, Lsn(SEG), TLI1)
            .await
            .expect("the error comes after CopyBothResponse");
        let err = loop {
            match tokio::time::timeout(Duration::from_secs(30), stream.next()).await {
                Ok(Ok(StreamEvent::Keepalive { .. })) => continue,
                Ok(Ok(other)) => panic!("unexpected {other:?}"),
                Ok(Err(err)) => break err,
                Err(_) => panic!("no error within 30 s"),
            }
        };
        assert!(matches!(err, ReplError::WalRemoved { .. }), "{err}");
        assert!(!err.is_retryable());
        assert!(err.to_string().contains("0/1000000"), "{err}");
        drop(stream);
        client
            .identify_system()
            .await
            .expect("usable after the error");
    });
}

#[test]
fn scram_md5_and_cleartext_passwords_authenticate() {
    let root = TestRoot::new();
    let cluster = started(&root, "primary");
    for (role, method) in [
        ("lb_scram", "scram-sha-256"),
        ("lb_md5", "md5"),
        ("lb_clear", "scram-sha-256"),
    ] {
        cluster.psql(
            "postgres",
            &format!("SET password_encryption = '{method}'; CREATE ROLE {role} LOGIN REPLICATION PASSWORD 'pw_{role}'"),
        );
    }
    let hba = cluster.pgdata().join("pg_hba.conf");
    let old = std::fs::read_to_string(&hba).expect("pg_hba.conf");
    let lines = "host replication lb_scram 127.0.0.1/32 scram-sha-256\n\
                 host replication lb_md5 127.0.0.1/32 md5\n\
                 host replication lb_clear 127.0.0.1/32 password\n";
    std::fs::write(&hba, format!("{lines}{old}")).expect("write pg_hba.conf");
    cluster.reload();
    block_on(async {
        for role in ["lb_scram", "lb_md5", "lb_clear"] {
            let good = tcp_conninfo(&cluster, &format!("user={role} password=pw_{role}"));
            let mut client = connect(&good).await;
            client.identify_system().await.expect("identify");
            let wrong = tcp_conninfo(&cluster, &format!("user={role} password=wrong"));
            let err = ReplicationClient::connect(&wrong)
                .await
                .err()
                .expect("wrong password");
            assert!(matches!(err, ReplError::Auth { .. }), "{role}: {err}");
            assert!(!err.is_retryable());
        }
    });
}

#[test]
fn historic_timeline_ends_with_the_next_timeline_after_promotion() {
    let root = TestRoot::new();
    let primary = started(&root, "primary");
    primary.psql(
        "postgres",
        "CREATE TABLE t AS SELECT generate_series(1, 1000) AS n",
    );
    let dir = root.mkdir("standby");
    let pgdata = dir.join("data");
    run_ok(
        root.command(pg_tool("pg_basebackup"))
            .arg("-D")
            .arg(&pgdata)
            .args(["-R", "-X", "stream", "-c", "fast", "-U", "postgres", "-h"])
            .arg(root.socket_dir())
            .args(["-p", &primary.port().to_string()]),
    );
    let standby = Cluster::adopt(&root, "standby", &pgdata, free_port());
    standby.start();
    // Replayed WAL past the backup's segment switch puts the fork in the middle of a segment.
    primary.psql(
        "postgres",
        "CREATE TABLE after_backup AS SELECT generate_series(1, 1000) AS n",
    );
    let replayed = "SELECT to_regclass('after_backup') IS NOT NULL";
    let mut waited = Duration::ZERO;
    while standby.psql("postgres", replayed) != "t" {
        assert!(waited < Duration::from_secs(30), "standby did not replay");
        std::thread::sleep(Duration::from_millis(50));
        waited += Duration::from_millis(50);
    }
    standby.psql("postgres", "SELECT pg_promote()");
    standby.wait_for_recovery_end(Duration::from_secs(60));
    block_on(async {
        let mut client = connect(&standby.conninfo()).await;
        let system = client.identify_system().await.expect("identify");
        assert_eq!(system.timeline, TimelineId(2));
        let (name, content) = client
            .timeline_history(TimelineId(2))
            .await
            .expect("history");
        assert_eq!(name, "00000002.history");
        let history = parse_history(&String::from_utf8_lossy(&content)).expect("parse");
        let switch = history[0].switch_lsn;

        let start = switch.segment_start(SEG);
        let mut stream = client
            .start_replication(None, start, TLI1)
            .await
            .expect("start");
        let end = loop {
            match next_event(&mut stream).await {
                StreamEvent::XLogData { .. } | StreamEvent::Keepalive { .. } => {}
                StreamEvent::EndOfTimeline {
                    next_tli,
                    next_tli_start,
                } => break (next_tli, next_tli_start, stream.received_end()),
            }
        };
        assert_eq!(end, (TimelineId(2), switch, switch));
        assert!(switch > start, "the fork {switch} is inside the segment");
        drop(stream);

        let mut at_end = client
            .start_replication(None, switch, TLI1)
            .await
            .expect("at end");
        let event = next_event(&mut at_end).await;
        let expected = StreamEvent::EndOfTimeline {
            next_tli: TimelineId(2),
            next_tli_start: switch,
        };
        assert_eq!(event, expected);
        drop(at_end);

        assert_eq!(
            client.identify_system().await.expect("usable").timeline,
            TimelineId(2)
        );
        let past_fork = Lsn(switch.0 + 8);
        let err = client
            .start_replication(None, past_fork, TLI1)
            .await
            .err()
            .expect("past the fork");
        assert!(matches!(err, ReplError::NotInHistory { .. }), "{err}");
        assert!(!err.is_retryable());
        assert!(err.to_string().contains(&switch.to_string()), "{err}");
        client
            .identify_system()
            .await
            .expect("usable after the error");
    });
}
