//! Tests of the restore plan: backup choice, WAL reach along timelines, window refusals.

use super::*;
use crate::repo::manifest::BackupStats;
use chrono::TimeZone;

const S: u64 = 16 << 20;

fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 3, h, m, s).unwrap()
}

pub(crate) fn manifest(id: &str, start_seg: u64, stop: Lsn, stop_time: DateTime<Utc>) -> Manifest {
    Manifest {
        format: 1,
        backup_id: BackupId::parse(id).unwrap(),
        label: "t".into(),
        system_identifier: "1".into(),
        pg_version_num: 150018,
        timeline: TimelineId(1),
        start_lsn: Lsn(start_seg * S + 0x28),
        stop_lsn: stop,
        start_time: stop_time - chrono::Duration::seconds(30),
        stop_time,
        wal_segment_size: S,
        chunk_size: 1 << 20,
        data_checksums: true,
        backup_label: String::new(),
        tablespace_map: None,
        entries: Vec::new(),
        checksum_failures: Vec::new(),
        stats: BackupStats::default(),
        residency_zone: None,
        region: None,
    }
}

fn two_backups() -> Vec<Manifest> {
    vec![
        manifest("20261203T171706Z", 3, Lsn(3 * S + 0x138), at(17, 17, 40)),
        manifest("20261203T175942Z", 8, Lsn(8 * S + 0x138), at(18, 0, 12)),
    ]
}

fn listing(tli: u32, segs: impl IntoIterator<Item = u64>) -> WalListing {
    let mut l = WalListing::default();
    l.segments.entry(TimelineId(tli)).or_default().extend(segs);
    l
}

fn time(s: &str) -> Target {
    Target::Time(super::super::target::parse_target_time(s).unwrap())
}

#[test]
fn a_time_target_picks_the_newest_backup_ending_before_it() {
    let ms = two_backups();
    let pick = |s| choose_backup(&ms, &time(s), None, "primary").map(|m| m.backup_id.to_string());
    assert_eq!(pick("2026-12-03 17:30:00").unwrap(), "20261203T171706Z");
    assert_eq!(pick("2026-12-03 18:00:12").unwrap(), "20261203T175942Z");
    assert_eq!(
        pick("2026-12-03 19:00:12+01:00").unwrap(),
        "20261203T175942Z"
    );
    let err = pick("2026-12-03 17:00:00").unwrap_err().to_string();
    assert!(
        err.contains("before the earliest recoverable instant 2026-12-03T17:17:40Z"),
        "{err}"
    );
    assert!(err.contains("20261203T171706Z"), "{err}");
}

#[test]
fn other_targets_pick_by_lsn_or_the_newest() {
    let ms = two_backups();
    let pick = |t: Target| choose_backup(&ms, &t, None, "r").map(|m| m.backup_id.to_string());
    assert_eq!(pick(Target::Lsn(Lsn(5 * S))).unwrap(), "20261203T171706Z");
    assert!(pick(Target::Lsn(Lsn(3 * S)))
        .unwrap_err()
        .to_string()
        .contains("0/3000138"));
    for t in [
        Target::Latest,
        Target::Immediate,
        Target::Xid(853),
        Target::Name("x".into()),
    ] {
        assert_eq!(pick(t).unwrap(), "20261203T175942Z");
    }
    let err = choose_backup(&[], &Target::Latest, None, "primary")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("holds no backup") && err.contains("hint:"),
        "{err}"
    );
}

#[test]
fn an_explicit_backup_must_end_before_the_target() {
    let ms = two_backups();
    let newer = BackupId::parse("20261203T175942Z").unwrap();
    let err = choose_backup(&ms, &time("2026-12-03 17:30:00"), Some(&newer), "r").unwrap_err();
    assert!(
        err.to_string()
            .contains("before the end of backup 20261203T175942Z"),
        "{err}"
    );
    let older = BackupId::parse("20261203T171706Z").unwrap();
    let m = choose_backup(&ms, &time("2026-12-03 18:30:00"), Some(&older), "r").unwrap();
    assert_eq!(m.backup_id, older);
    let unknown = BackupId::parse("20250101T000000Z").unwrap();
    let err = choose_backup(&ms, &Target::Latest, Some(&unknown), "r")
        .unwrap_err()
        .to_string();
    assert!(err.contains("20261203T171706Z, 20261203T175942Z"), "{err}");
}

#[test]
fn reach_stops_at_a_gap_and_ends_with_a_partial() {
    let chain = vec![(TimelineId(1), Lsn(0))];
    let mut l = listing(1, [3, 4, 5, 7]);
    let r = reach(&l, &chain, Lsn(3 * S + 0x28), S).unwrap();
    assert_eq!(r.end, Lsn(6 * S));
    assert_eq!(r.next_missing, "segment 000000010000000000000006");
    l.partials.insert((TimelineId(1), 6), Lsn(6 * S + 0x5000));
    let r = reach(&l, &chain, Lsn(3 * S), S).unwrap();
    assert_eq!(r.end, Lsn(6 * S + 0x5000));
    assert!(matches!(r.last, WalObject::Partial(_, _)));
    assert_eq!(reach(&l, &chain, Lsn(2 * S), S), None);
}

#[test]
fn reach_follows_the_newest_timeline_from_its_switch_segment() {
    let mut histories = BTreeMap::new();
    histories.insert(
        TimelineId(2),
        vec![HistoryEntry {
            parent: TimelineId(1),
            switch_lsn: Lsn(5 * S + 0x1038),
        }],
    );
    let chain = timeline_chain(TimelineId(1), &histories).unwrap();
    assert_eq!(
        chain,
        vec![
            (TimelineId(1), Lsn(0)),
            (TimelineId(2), Lsn(5 * S + 0x1038))
        ]
    );
    let mut l = listing(1, [3, 4, 5]);
    l.segments.entry(TimelineId(2)).or_default().extend([5, 6]);
    let r = reach(&l, &chain, Lsn(3 * S), S).unwrap();
    assert_eq!((r.end, r.timeline), (Lsn(7 * S), TimelineId(2)));
    // Without timeline 2's copy of the switch segment, the run ends before it.
    l.segments.get_mut(&TimelineId(2)).unwrap().remove(&5);
    assert_eq!(reach(&l, &chain, Lsn(3 * S), S).unwrap().end, Lsn(5 * S));
}

#[test]
fn a_newest_timeline_of_another_branch_is_refused() {
    let mut histories = BTreeMap::new();
    histories.insert(
        TimelineId(3),
        vec![HistoryEntry {
            parent: TimelineId(2),
            switch_lsn: Lsn(9 * S),
        }],
    );
    histories.insert(
        TimelineId(2),
        vec![HistoryEntry {
            parent: TimelineId(1),
            switch_lsn: Lsn(4 * S),
        }],
    );
    assert_eq!(
        timeline_chain(TimelineId(5), &histories),
        Ok(vec![(TimelineId(5), Lsn(0))])
    );
    assert_eq!(
        timeline_chain(TimelineId(1), &histories),
        Err(TimelineId(3))
    );
}

#[test]
fn a_gap_inside_the_backup_is_refused_naming_the_segment() {
    let ms = two_backups();
    let chain = vec![(TimelineId(1), Lsn(0))];
    let l = listing(1, [8, 10]);
    let r = reach(&l, &chain, ms[1].start_lsn, S);
    assert!(check_backup_wal(&ms[1], &chain, r.as_ref(), "primary").is_ok());
    let l = listing(1, [9]);
    let err = check_backup_wal(
        &ms[1],
        &chain,
        reach(&l, &chain, ms[1].start_lsn, S).as_ref(),
        "primary",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("segment 000000010000000000000008 is missing"),
        "{err}"
    );
    assert!(err.contains("from 0/8000028 through 0/8000138"), "{err}");
}

#[test]
fn targets_after_the_newest_commit_are_refused_naming_the_window() {
    let ms = two_backups();
    let chain = vec![(TimelineId(1), Lsn(0))];
    let r = reach(&listing(1, 8..=9), &chain, ms[1].start_lsn, S).unwrap();
    let run = RunEnd {
        reach: r,
        valid_end: Some(Lsn(9 * S + 0x2000)),
        last_commit: Some(at(18, 42, 3)),
    };
    assert!(check_target(&time("2026-12-03 18:42:02.999"), &ms[1], &run).is_ok());
    let err = check_target(&time("2026-12-03 18:42:03"), &ms[1], &run)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(
            "target time 2026-12-03 18:42:03.000000+00:00 is after the latest recoverable instant \
             2026-12-03T18:42:03Z (backup 20261203T175942Z through WAL 0/9002000 on timeline 1)"
        ),
        "{err}"
    );
    assert!(err.contains("hint:"), "{err}");
    assert!(check_target(&Target::Lsn(Lsn(9 * S + 0x1FFF)), &ms[1], &run).is_ok());
    assert!(check_target(&Target::Lsn(Lsn(9 * S + 0x2000)), &ms[1], &run).is_err());
    assert!(check_target(&Target::Name("before-upgrade".into()), &ms[1], &run).is_ok());
}

#[test]
fn without_a_commit_the_backup_stop_bounds_time_targets() {
    let ms = two_backups();
    let chain = vec![(TimelineId(1), Lsn(0))];
    let r = reach(&listing(1, [8]), &chain, ms[1].start_lsn, S).unwrap();
    let run = RunEnd {
        reach: r,
        valid_end: None,
        last_commit: None,
    };
    assert_eq!(run.latest_time(&ms[1]), at(18, 0, 12));
    assert!(check_target(&time("2026-12-03 18:00:12"), &ms[1], &run).is_ok());
    assert!(check_target(&time("2026-12-03 18:00:13"), &ms[1], &run).is_err());
}

#[test]
fn wal_stored_past_a_hole_refuses_replaying_to_the_end() {
    let chain = vec![(TimelineId(1), Lsn(0))];
    let gap = listing(1, [3, 4, 5, 7]);
    let r = reach(&gap, &chain, Lsn(3 * S), S).unwrap();
    let err = check_no_wal_beyond(&gap, &chain, &r, S, "primary")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("000000010000000000000006") && err.contains("000000010000000000000007"),
        "{err}"
    );

    let whole = listing(1, [3, 4, 5]);
    let r = reach(&whole, &chain, Lsn(3 * S), S).unwrap();
    assert!(check_no_wal_beyond(&whole, &chain, &r, S, "primary").is_ok());

    // A partial ending the run is the newest WAL, unless a later segment is stored.
    let mut tail = listing(1, [3, 4]);
    tail.partials.insert((TimelineId(1), 5), Lsn(5 * S + 0x100));
    let r = reach(&tail, &chain, Lsn(3 * S), S).unwrap();
    assert!(check_no_wal_beyond(&tail, &chain, &r, S, "primary").is_ok());
    tail.segments.get_mut(&TimelineId(1)).unwrap().insert(6);
    let r = reach(&tail, &chain, Lsn(3 * S), S).unwrap();
    assert!(check_no_wal_beyond(&tail, &chain, &r, S, "primary").is_err());
}
