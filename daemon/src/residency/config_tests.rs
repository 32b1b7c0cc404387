//! The residency keys and `required` as the configuration loader sees them.

use crate::config::Config;

const CLUSTER: &str = r#"
[[cluster]]
name = "main"
pgdata = "/srv/pg"
conninfo = "host=/tmp"
ZONE
[cluster.encryption]
kek = "file:/etc/lifeboat/kek"
"#;

fn load(zone: &str, repositories: &str) -> Result<Config, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lifeboat.toml");
    let text = format!("{}{repositories}", CLUSTER.replace("ZONE", zone));
    std::fs::write(&path, text).unwrap();
    Config::load(&path).map_err(|e| e.to_string())
}

fn azure(name: &str, extra: &str) -> String {
    format!(
        "[[cluster.repository]]\nname = \"{name}\"\nkind = \"azure\"\naccount = \"a\"\n\
         container = \"c\"\n{extra}\n"
    )
}

const LOCAL: &str = "[[cluster.repository]]\nname = \"disk\"\nkind = \"local\"\npath = \"/r\"\n";

#[test]
fn repositories_inside_the_zone_load_with_their_settings() {
    let repos = format!(
        "{LOCAL}region = \"northeurope\"\n{}",
        azure("dr", "region = \"germanywestcentral\"\nrequired = false")
    );
    let config = load("residency = \"eu\"", &repos).unwrap();
    let c = &config.clusters[0];
    assert_eq!(c.residency.map(|z| z.to_string()).as_deref(), Some("eu"));
    assert_eq!(c.repositories[0].region.as_deref(), Some("northeurope"));
    assert!(c.repositories[0].required);
    assert!(!c.repositories[1].required);
}

#[test]
fn a_repository_outside_the_zone_is_refused_unless_allowed_with_a_reason() {
    let outside = azure("dr", "region = \"eastus\"");
    let err = load("residency = \"eu\"", &outside).unwrap_err();
    assert!(
        err.contains("region eastus") && err.contains("residency zone eu"),
        "{err}"
    );
    let allowed = azure(
        "dr",
        "region = \"eastus\"\nallow-cross-zone = \"legal hold\"",
    );
    assert!(load("residency = \"eu\"", &allowed).is_ok());
    let empty = azure("dr", "region = \"eastus\"\nallow-cross-zone = \" \"");
    let err = load("residency = \"eu\"", &empty).unwrap_err();
    assert!(err.contains("needs the reason"), "{err}");
}

#[test]
fn a_local_repository_without_a_region_is_accepted_and_with_one_is_checked() {
    assert!(load("residency = \"uk\"", LOCAL).is_ok());
    let err = load(
        "residency = \"uk\"",
        &format!("{LOCAL}region = \"westeurope\""),
    )
    .unwrap_err();
    assert!(
        err.contains("region westeurope") && err.contains("zone uk"),
        "{err}"
    );
}

#[test]
fn an_unknown_zone_and_no_required_repository_are_refused() {
    let err = load("residency = \"europe\"", LOCAL).unwrap_err();
    assert!(err.contains("not a zone"), "{err}");
    let err = load("", &format!("{LOCAL}required = false")).unwrap_err();
    assert!(err.contains("required = true"), "{err}");
}
