//! A drill on a pgbench cluster: it passes, and its report holds RTO, RPO and the verdict.

use lifeboat_tests::Archived;

#[test]
fn a_drill_on_a_pgbench_cluster_passes_and_reports_rto_rpo_and_verdict() {
    let a = Archived::new("primary");
    a.cluster.pgbench_init(2);
    a.lifeboat_ok(&["backup"]);
    a.cluster.pgbench_run(2, 3);
    a.switch_and_archive();

    let out = a.drill(&["run", "--json"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "drill failed:\n{stdout}\n{stderr}");
    let report: serde_json::Value =
        serde_json::from_str(&stdout).expect("--json prints the report");
    assert_eq!(report["verdict"], "pass", "{report:#}");
    let rto = report["rto_seconds"].as_f64().expect("rto_seconds");
    let rpo = report["rpo_seconds"].as_f64().expect("rpo_seconds");
    assert!(rto > 0.0 && rto < 4.0 * 3600.0, "rto {rto}");
    assert!((0.0..3600.0).contains(&rpo), "rpo {rpo}");

    let drills = a.root.state_dir().join("drills");
    let id = report["drill_id"].as_str().expect("drill_id");
    for f in ["report.json", "report.md"] {
        assert!(
            drills.join(id).join(f).is_file(),
            "{f} of drill {id} is missing"
        );
    }
    let md = std::fs::read_to_string(drills.join(id).join("report.md")).unwrap();
    assert!(
        md.contains("RTO") && md.contains("RPO"),
        "markdown report:\n{md}"
    );
    let in_repo = a
        .root
        .repo_dir()
        .join("drills")
        .join(id)
        .join("report.json");
    assert!(in_repo.is_file(), "the report is stored in the repository");
    assert!(
        !drills.join(id).join("scratch").exists(),
        "the scratch cluster is torn down"
    );
}
