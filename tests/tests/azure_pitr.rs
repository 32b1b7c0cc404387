//! The whole chain on an Azure repository (Azurite): archive_command ships WAL to the
//! container, a base backup goes there, and a restore to a time comes back from it.

use std::time::Duration;

use lifeboat_tests::{pgbench_invariants_hold, Archived, Azurite};

#[test]
fn backup_and_restore_to_a_time_through_an_azure_repository() {
    let azurite = Azurite::start();
    let a = Archived::with_azure("primary", &azurite);
    a.cluster.pgbench_init(1);
    a.sql("CREATE TABLE marker(n int)");
    a.lifeboat_ok(&["backup"]);

    a.sql("INSERT INTO marker VALUES (1)");
    std::thread::sleep(Duration::from_millis(500));
    let target =
        a.sql("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')");
    std::thread::sleep(Duration::from_millis(500));
    a.sql("INSERT INTO marker VALUES (2)");
    a.switch_and_archive();

    let restored = a.restore_and_start("restored", &["--target-time", &target]);
    let markers = restored.psql("postgres", "SELECT string_agg(n::text, ',') FROM marker");
    assert_eq!(markers, "1", "restored to {target} UTC");
    assert!(pgbench_invariants_hold(&restored));
}
