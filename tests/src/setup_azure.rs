//! A cluster archiving into an Azure repository on the Azurite emulator, set up the way an
//! operator would: an account-key file readable only by `postgres`, a `kind = "azure"`
//! repository in the configuration, `repo init`, and `archive_command` running `wal-push`.
//!
//! Example: `let az = Azurite::start(); let a = Archived::with_azure("primary", &az);`

use std::path::Path;

use lifeboat::storage::azure::AzureStorage;

use crate::azurite::{write_azure_key_file, Azurite, AZURITE_ACCOUNT};
use crate::privilege::give_to_postgres;
use crate::{write_kek, Archived, Cluster, TestRoot};

impl Archived {
    /// Like [`Archived::new`], with the repository in a new container of `azurite`.
    #[track_caller]
    pub fn with_azure(name: &str, azurite: &Azurite) -> Archived {
        let root = TestRoot::new();
        let cluster = Cluster::init(&root, name);
        let kek = write_kek(&root);
        let key = write_azure_key_file(root.path());
        give_to_postgres(&key);
        let container = format!("lifeboat-{}", hex_id());
        create_container(azurite, &container, &key);
        let config = root.config_path();
        let archive = format!(
            "{} --config {} wal-push %p",
            root.lifeboat_path().display(),
            config.display()
        );
        cluster.set("archive_mode", "on");
        cluster.set("archive_command", &archive);
        cluster.start();
        let text = config_text(&root, &cluster, name, &kek, azurite, &container, &key);
        root.write_file("lifeboat.toml", text);
        let a = Archived {
            root,
            cluster,
            config,
        };
        a.lifeboat_ok(&["repo", "init"]);
        a
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

fn config_text(
    root: &TestRoot,
    cluster: &Cluster,
    name: &str,
    kek: &Path,
    azurite: &Azurite,
    container: &str,
    key: &Path,
) -> String {
    format!(
        r#"state-dir = "{state}"

[[cluster]]
name = "{name}"
pgdata = "{pgdata}"
conninfo = "host={sock} port={port} user=postgres dbname=postgres"
pg-bin-dir = "{bin}"

[cluster.encryption]
kek = "file:{kek}"

[[cluster.repository]]
name = "azurite"
kind = "azure"
account = "{AZURITE_ACCOUNT}"
container = "{container}"
prefix = "clusters/{name}"
endpoint = "{endpoint}"
account-key = "file:{key}"
request-timeout = "20s"

[cluster.backup]
wal-timeout = "60s"
"#,
        state = root.state_dir().display(),
        pgdata = cluster.pgdata().display(),
        sock = root.socket_dir().display(),
        port = cluster.port(),
        bin = crate::pg_bin_dir().display(),
        kek = kek.display(),
        endpoint = azurite.endpoint(),
        key = key.display(),
    )
}
