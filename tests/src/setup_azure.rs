//! A cluster archiving into an Azure repository on the Azurite emulator, set up the way an
//! operator would: an account-key file readable only by `postgres`, a `kind = "azure"`
//! repository in the configuration, `repo init`, and `archive_command` running `wal-push`.
//!
//! Example: `let az = Azurite::start(); let a = Archived::with_azure("primary", &az);`

use std::path::Path;

use lifeboat::storage::azure::AzureStorage;

use crate::azurite::{write_azure_key_file, Azurite, AZURITE_ACCOUNT};
use crate::privilege::give_to_postgres;
use crate::setup::ConfigParts;
use crate::Archived;

impl Archived {
    /// Like [`Archived::new`], with the repository in a new container of `azurite`.
    #[track_caller]
    pub fn with_azure(name: &str, azurite: &Azurite) -> Archived {
        Archived::build(name, true, |root| {
            let key = write_azure_key_file(root.path());
            give_to_postgres(&key);
            let container = format!("lifeboat-{}", hex_id());
            create_container(azurite, &container, &key);
            ConfigParts {
                repositories: azure_repository(name, &azurite.endpoint(), &container, &key),
                ..ConfigParts::default()
            }
        })
    }
}

fn hex_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

fn create_container(azurite: &Azurite, container: &str, key: &Path) {
    let storage = AzureStorage::new(azurite.settings(container, key.to_path_buf()));
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("cannot build a tokio runtime")
        .block_on(storage.create_container())
        .unwrap_or_else(|e| panic!("cannot create container {container}: {e}"));
}

/// A `[[cluster.repository]]` block for `container` at `endpoint`, with the account key file.
pub fn azure_repository(cluster: &str, endpoint: &str, container: &str, key: &Path) -> String {
    format!(
        r#"[[cluster.repository]]
name = "azurite"
kind = "azure"
account = "{AZURITE_ACCOUNT}"
container = "{container}"
prefix = "clusters/{cluster}"
endpoint = "{endpoint}"
account-key = "file:{key}"
request-timeout = "20s"
"#,
        key = key.display(),
    )
}
