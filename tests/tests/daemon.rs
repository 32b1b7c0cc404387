//! `lifeboat daemon` beyond streaming: `/metrics` over HTTP from a daemon streaming a real
//! cluster, the heartbeat table on the source, and the backup schedule.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use lifeboat::pg::Lsn;
use lifeboat_tests::{free_port, Archived, Daemon, StreamOptions};

const SEG: u64 = 16 << 20;

/// `GET /metrics`, the body; empty when the daemon does not answer.
fn scrape(addr: SocketAddr) -> String {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let request = "GET /metrics HTTP/1.1\r\nHost: lifeboat\r\nConnection: close\r\n\r\n";
    if s.write_all(request.as_bytes()).is_err() {
        return String::new();
    }
    let mut response = String::new();
    let _ = s.read_to_string(&mut response);
    match response.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => body.to_string(),
        _ => String::new(),
    }
}

/// The value of the sample named exactly `series` (name and labels), if present.
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Waits up to `within` for `ok` to hold on a scrape; returns that scrape.
#[track_caller]
fn wait_metrics(
    addr: SocketAddr,
    daemon: &Daemon,
    within: Duration,
    what: &str,
    ok: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + within;
    loop {
        let body = scrape(addr);
        if ok(&body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{what} not within {within:?}; last scrape:\n{body}\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn backups_in(repo: &Path) -> usize {
    std::fs::read_dir(repo.join("backups"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().join("manifest").exists())
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn daemon_serves_metrics_beats_the_heartbeat_and_takes_scheduled_backups() {
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let a = Archived::streaming_with(
        "primary",
        &StreamOptions {
            metrics_listen: Some(addr),
            schedule: Some("*/10 * * * * *".into()),
        },
    );
    let daemon = Daemon::start(&a);
    daemon.wait_streaming(&a);
    let durable = r#"lifeboat_wal_durable_lsn{cluster="primary"}"#;
    let last_backup = r#"lifeboat_backup_last_success_timestamp_seconds{cluster="primary"}"#;

    // /metrics answers with every metric, HELP text included.
    let body = wait_metrics(addr, &daemon, Duration::from_secs(10), "metrics", |b| {
        sample(b, durable).is_some()
    });
    for name in [
        "lifeboat_wal_received_lsn",
        "lifeboat_wal_durable_lsn",
        "lifeboat_rpo_exposure_seconds",
        "lifeboat_slot_retained_bytes",
        "lifeboat_backup_last_success_timestamp_seconds",
        "lifeboat_backup_duration_seconds",
    ] {
        assert!(body.contains(&format!("# HELP {name} ")), "{name}:\n{body}");
    }
    let before = sample(&body, durable).unwrap_or(0.0);

    // A segment switch makes the durable LSN reach the next segment boundary.
    let switched: Lsn = a.sql("SELECT pg_switch_wal()").parse().expect("switch LSN");
    let boundary = switched.0.div_ceil(SEG) * SEG;
    let body = wait_metrics(
        addr,
        &daemon,
        Duration::from_secs(15),
        "durable LSN at the segment boundary",
        |b| sample(b, durable).is_some_and(|d| d >= boundary as f64),
    );
    let after = sample(&body, durable).unwrap_or(0.0);
    assert!(after > before, "durable LSN {before} -> {after}");

    // The heartbeat table exists on the source and its counter moves.
    let beat = || -> i64 {
        a.sql("SELECT n FROM lifeboat.heartbeat WHERE id = 1")
            .parse()
            .expect("heartbeat n")
    };
    let n0 = beat();
    std::thread::sleep(Duration::from_millis(2500));
    let n1 = beat();
    assert!(n1 > n0, "heartbeat n stayed at {n0} -> {n1}");

    // Every 10 s a backup: one lands in the repository and its metrics follow.
    let repo = a.root.repo_dir();
    let deadline = Instant::now() + Duration::from_secs(25);
    while backups_in(&repo) == 0 {
        assert!(
            Instant::now() < deadline,
            "no scheduled backup within 25 s\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let body = wait_metrics(
        addr,
        &daemon,
        Duration::from_secs(5),
        "backup timestamp",
        |b| sample(b, last_backup).is_some_and(|t| t > 0.0),
    );
    eprintln!("{body}");
    daemon.stop();
}
