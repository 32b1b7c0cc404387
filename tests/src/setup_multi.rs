//! A cluster archiving into two repositories at once: a local directory (`local`) and a
//! container on the Azurite emulator (`azurite`), with the residency keys and `required` set as
//! a test asks. The configuration can be rewritten afterwards to move the Azure repository to
//! another region or to an endpoint that refuses connections.
//!
//! Example: `let m = MultiRepo::start("primary", &az, &Residency::eu());
//! m.a.lifeboat_ok(&["backup"]);`

use std::path::PathBuf;

use crate::azurite::{Azurite, AZURITE_ACCOUNT};
use crate::privilege::give_to_postgres;
use crate::{write_kek, Archived, Cluster, TestRoot};

/// The residency keys and `required` of the two repositories.
#[derive(Debug, Clone, Default)]
pub struct Residency {
    /// `[[cluster]] residency`.
    pub zone: Option<String>,
    /// `region` of the local repository.
    pub local_region: Option<String>,
    /// `region` of the Azure repository.
    pub azure_region: Option<String>,
    /// `allow-cross-zone` of the Azure repository.
    pub allow_cross_zone: Option<String>,
    /// `required = false` on the Azure repository.
    pub azure_optional: bool,
    /// The Azure repository's endpoint instead of Azurite's (a closed port).
    pub azure_endpoint: Option<String>,
}

impl Residency {
    /// Zone `eu`, the local repository in `northeurope`, the Azure one in
    /// `germanywestcentral`: both inside.
    pub fn eu() -> Residency {
        Residency {
            zone: Some("eu".into()),
            local_region: Some("northeurope".into()),
            azure_region: Some("germanywestcentral".into()),
            ..Residency::default()
        }
    }
}

/// A cluster archiving into a local and an Azure repository.
pub struct MultiRepo {
    /// The cluster, its root and configuration.
    pub a: Archived,
    /// The Azure repository's container.
    pub container: String,
    /// The file holding Azurite's account key.
    pub key: PathBuf,
    kek: PathBuf,
    endpoint: String,
}

impl MultiRepo {
    /// Sets up the cluster with both repositories configured as `r` says, and initialises them.
    #[track_caller]
    pub fn start(name: &str, azurite: &Azurite, r: &Residency) -> MultiRepo {
        let root = TestRoot::new();
        let cluster = Cluster::init(&root, name);
        let kek = write_kek(&root);
        let container = format!("lifeboat-{:016x}", rand::random::<u64>());
        let key = create_container(azurite, &root, &container);
        let config = root.config_path();
        let archive = format!(
            "{} --config {} wal-push %p",
            root.lifeboat_path().display(),
            config.display()
        );
        cluster.set("archive_mode", "on");
        cluster.set("archive_command", &archive);
        cluster.start();
        let m = MultiRepo {
            a: Archived {
                root,
                cluster,
                config,
            },
            container,
            key,
            kek,
            endpoint: azurite.endpoint(),
        };
        m.configure(r);
        m.a.lifeboat_ok(&["repo", "init"]);
        m
    }

    /// Rewrites the configuration with `r`; the next command (and archive_command) reads it.
    pub fn configure(&self, r: &Residency) {
        self.a.root.write_file("lifeboat.toml", self.config_text(r));
    }

    fn config_text(&self, r: &Residency) -> String {
        let line = |key: &str, v: &Option<String>| match v {
            Some(v) => format!("{key} = \"{v}\"\n"),
            None => String::new(),
        };
        let root = &self.a.root;
        let cluster = &self.a.cluster;
        format!(
            r#"state-dir = "{state}"

[[cluster]]
name = "{name}"
pgdata = "{pgdata}"
conninfo = "host={sock} port={port} user=postgres dbname=postgres"
pg-bin-dir = "{bin}"
{zone}
[cluster.encryption]
kek = "file:{kek}"

[[cluster.repository]]
name = "local"
kind = "local"
path = "{repo}"
{local_region}
[[cluster.repository]]
name = "azurite"
kind = "azure"
account = "{AZURITE_ACCOUNT}"
container = "{container}"
prefix = "clusters/{name}"
endpoint = "{endpoint}"
account-key = "file:{key}"
request-timeout = "20s"
required = {required}
{azure_region}{allow}
[cluster.backup]
wal-timeout = "60s"
"#,
            state = root.state_dir().display(),
            name = cluster.name(),
            pgdata = cluster.pgdata().display(),
            sock = root.socket_dir().display(),
            port = cluster.port(),
            bin = crate::pg_bin_dir().display(),
            zone = line("residency", &r.zone),
            kek = self.kek.display(),
            repo = root.repo_dir().display(),
            local_region = line("region", &r.local_region),
            container = self.container,
            endpoint = r.azure_endpoint.as_deref().unwrap_or(&self.endpoint),
            key = self.key.display(),
            required = !r.azure_optional,
            azure_region = line("region", &r.azure_region),
            allow = line("allow-cross-zone", &r.allow_cross_zone),
        )
    }
}

/// Creates `container` in Azurite; returns the account-key file, readable by `postgres`.
fn create_container(azurite: &Azurite, root: &TestRoot, container: &str) -> PathBuf {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("cannot build a tokio runtime")
        .block_on(azurite.storage(root.path(), container));
    let key = root.path().join("azure-account-key");
    give_to_postgres(&key);
    key
}
