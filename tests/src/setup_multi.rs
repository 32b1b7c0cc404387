//! A cluster archiving into two repositories at once: a local directory (`local`) and a
//! container on the Azurite emulator (`azurite`), with the residency keys and `required` set as
//! a test asks. The configuration can be rewritten afterwards to move the Azure repository to
//! another region or to an endpoint that refuses connections.
//!
//! Example: `let m = MultiRepo::start("primary", &az, &Residency::eu());
//! m.a.lifeboat_ok(&["backup"]);`

use std::path::{Path, PathBuf};

use crate::azurite::Azurite;
use crate::privilege::give_to_postgres;
use crate::setup::{config_text, ConfigParts};
use crate::setup_azure::azure_repository;
use crate::{Archived, TestRoot};

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
    endpoint: String,
}

impl MultiRepo {
    /// Sets up the cluster with both repositories configured as `r` says, and initialises them.
    #[track_caller]
    pub fn start(name: &str, azurite: &Azurite, r: &Residency) -> MultiRepo {
        let container = format!("lifeboat-{:016x}", rand::random::<u64>());
        let endpoint = azurite.endpoint();
        let mut key = PathBuf::new();
        let a = Archived::build(name, true, |root| {
            key = create_container(azurite, root, &container);
            parts(name, &root.repo_dir(), &container, &key, &endpoint, r)
        });
        MultiRepo {
            a,
            container,
            key,
            endpoint,
        }
    }

    /// Rewrites the configuration with `r`; the next command (and archive_command) reads it.
    pub fn configure(&self, r: &Residency) {
        let root = &self.a.root;
        let parts = parts(
            self.a.cluster.name(),
            &root.repo_dir(),
            &self.container,
            &self.key,
            &self.endpoint,
            r,
        );
        let text = config_text(&self.a.root, &self.a.cluster, &parts);
        self.a.root.write_file("lifeboat.toml", text);
    }
}

/// The residency line and both repositories, as `r` says.
fn parts(
    cluster: &str,
    repo: &Path,
    container: &str,
    key: &Path,
    endpoint: &str,
    r: &Residency,
) -> ConfigParts {
    let line = |key: &str, v: &Option<String>| match v {
        Some(v) => format!("{key} = \"{v}\"\n"),
        None => String::new(),
    };
    ConfigParts {
        cluster: line("residency", &r.zone),
        repositories: format!(
            "[[cluster.repository]]\nname = \"local\"\nkind = \"local\"\npath = \"{repo}\"\n{local_region}\n\
             {azure}required = {required}\n{azure_region}{allow}",
            repo = repo.display(),
            local_region = line("region", &r.local_region),
            azure = azure_repository(cluster, r.azure_endpoint.as_deref().unwrap_or(endpoint), container, key),
            required = !r.azure_optional,
            azure_region = line("region", &r.azure_region),
            allow = line("allow-cross-zone", &r.allow_cross_zone),
        ),
        ..ConfigParts::default()
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
