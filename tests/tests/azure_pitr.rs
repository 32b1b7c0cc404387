//! The whole chain on an Azure repository (Azurite): archive_command ships WAL to the
//! container, a base backup goes there, and a restore to a time comes back from it.

use lifeboat_tests::{pgbench_invariants_hold, Archived, Azurite};

#[test]
fn backup_and_restore_to_a_time_through_an_azure_repository() {
    let azurite = Azurite::start();
    let a = Archived::with_azure("primary", &azurite);
    a.cluster.pgbench_init(1);
    a.sql("CREATE TABLE marker(n int)");
    a.lifeboat_ok(&["backup"]);

    let target = a.markers_around_a_target();
    a.switch_and_archive();

    let restored = a.restore_and_start("restored", &["--target-time", &target]);
    let markers = restored.psql("postgres", "SELECT string_agg(n::text, ',') FROM marker");
    assert_eq!(markers, "1", "restored to {target} UTC");
    assert!(pgbench_invariants_hold(&restored));
}
