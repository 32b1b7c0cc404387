//! One cluster, two repositories: a local directory and an Azure container (Azurite). WAL and
//! backups go to both; a restore can come from either; the residency zone is enforced at
//! start-up; a repository with `required = false` that is down holds nothing back.

use lifeboat::config::Config;
use lifeboat::repo::{storage_for, Repository};
use lifeboat_tests::{
    free_port, pgbench_invariants_hold, Azurite, MultiRepo, Residency, AZURITE_ACCOUNT,
};

/// Every repository of the test's configuration, opened with its key-encryption key.
fn open_all(m: &MultiRepo) -> Vec<Repository> {
    let config = Config::load(&m.a.config).expect("the configuration loads");
    let cluster = &config.clusters[0];
    let kek = cluster.kek.load().expect("the KEK loads");
    runtime().block_on(async {
        let mut out = Vec::new();
        for rc in &cluster.repositories {
            let repo = Repository::open(&rc.name, storage_for(rc), &kek).await;
            out.push(repo.unwrap_or_else(|e| panic!("repository {}: {e}", rc.name)));
        }
        out
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("cannot build a tokio runtime")
}

/// The WAL object names of `repo`.
fn wal_names(repo: &Repository) -> Vec<String> {
    let listed = runtime().block_on(repo.storage().list("wal/"));
    let listed = listed.unwrap_or_else(|e| panic!("listing WAL of {}: {e}", repo.name));
    listed.into_iter().map(|o| o.name).collect()
}

#[test]
fn a_local_and_an_azure_repository_hold_identical_wal_and_each_restores_to_a_time() {
    let azurite = Azurite::start();
    let m = MultiRepo::start("primary", &azurite, &Residency::eu());
    let a = &m.a;
    a.cluster.pgbench_init(1);
    a.sql("CREATE TABLE marker(n int)");
    a.lifeboat_ok(&["backup"]);

    let target = a.markers_around_a_target();
    a.switch_and_archive();

    let repos = open_all(&m);
    let (local, azure) = (wal_names(&repos[0]), wal_names(&repos[1]));
    assert!(!local.is_empty());
    assert_eq!(local, azure, "both repositories hold the same WAL objects");
    for (repo, region) in repos.iter().zip(["northeurope", "germanywestcentral"]) {
        let m = runtime().block_on(repo.load_manifests()).unwrap();
        assert_eq!(m.len(), 1, "{}", repo.name);
        assert_eq!(m[0].residency_zone.as_deref(), Some("eu"));
        assert_eq!(m[0].region.as_deref(), Some(region), "{}", repo.name);
    }
    let list = a.lifeboat_ok(&["list"]);
    for region in ["northeurope", "germanywestcentral"] {
        let line = format!("residency zone eu, region {region}");
        assert!(list.contains(&line), "{list}");
    }

    for repo in ["local", "azurite"] {
        let args = ["--repository", repo, "--target-time", &target];
        let restored = a.restore_and_start(&format!("from-{repo}"), &args);
        let markers = restored.psql("postgres", "SELECT string_agg(n::text, ',') FROM marker");
        assert_eq!(markers, "1", "restored from {repo} to {target} UTC");
        assert!(pgbench_invariants_hold(&restored), "restored from {repo}");
    }
}

#[test]
fn a_repository_outside_the_residency_zone_is_refused_naming_both_unless_allowed() {
    let azurite = Azurite::start();
    let m = MultiRepo::start("primary", &azurite, &Residency::eu());
    let mut r = Residency::eu();
    r.azure_region = Some("eastus".into());
    m.configure(&r);
    let out = m.a.lifeboat(&["list"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("region eastus") && stderr.contains("residency zone eu"),
        "{stderr}"
    );

    r.azure_region = None;
    m.configure(&r);
    let out = m.a.lifeboat(&["list"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("names no region"), "{stderr}");

    r.azure_region = Some("eastus".into());
    r.allow_cross_zone = Some("US copy for a legal hold, approved by counsel".into());
    m.configure(&r);
    let out = m.a.lifeboat(&["list"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("WARN") && stderr.contains("approved by counsel"),
        "{stderr}"
    );
}

#[test]
fn an_unreachable_non_required_repository_blocks_neither_wal_push_nor_backup() {
    let azurite = Azurite::start();
    let m = MultiRepo::start("primary", &azurite, &Residency::default());
    let closed = format!("http://127.0.0.1:{}/{AZURITE_ACCOUNT}", free_port());
    m.configure(&Residency {
        azure_optional: true,
        azure_endpoint: Some(closed),
        ..Residency::default()
    });
    let a = &m.a;
    a.cluster.pgbench_init(1);
    let out = a.lifeboat(&["backup"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("ERROR") && stderr.contains("azurite"),
        "{stderr}"
    );
    a.switch_and_archive();
    let failed = a.sql("SELECT failed_count FROM pg_stat_archiver");
    assert_eq!(failed, "0", "archive_command never failed");

    let config = Config::load(&a.config).unwrap();
    let cluster = &config.clusters[0];
    let kek = cluster.kek.load().unwrap();
    let local = &cluster.repositories[0];
    let repo = runtime()
        .block_on(Repository::open(&local.name, storage_for(local), &kek))
        .unwrap();
    assert_eq!(runtime().block_on(repo.list_backups()).unwrap().len(), 1);

    // With no --repository the restore reads the first that opens, WAL included, so the
    // unreachable one cannot make wal-fetch doubt whether a file exists.
    let restored = a.restore_and_start("restored", &["--target-immediate"]);
    assert!(pgbench_invariants_hold(&restored));
}
