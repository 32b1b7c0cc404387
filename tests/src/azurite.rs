//! The Azurite emulator's blob service, one per test, for Lifeboat's Azure backend.
//!
//! Example: `Azurite::start()` runs `tests/node_modules/.bin/azurite-blob --blobHost 127.0.0.1
//! --blobPort 41873 --location /tmp/.tmpX --skipApiVersionCheck --disableTelemetry`, waits until
//! the port answers, and serves account `devstoreaccount1` at
//! `http://127.0.0.1:41873/devstoreaccount1`.
//!
//! Invariant: the emulator dies with its `Azurite` value (also while a panic unwinds), and its
//! data directory with it. A missing emulator fails the test: it never passes by skipping.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lifeboat::config::{AzureAuth, SecretRef};
use lifeboat::storage::azure::{AzureSettings, AzureStorage};

use crate::port::free_port;

/// The emulator's well-known development account.
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";

/// The published key of the development account (public, from Microsoft's documentation).
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// A running blob emulator.
pub struct Azurite {
    child: Child,
    port: u16,
    _data: tempfile::TempDir,
}

impl Azurite {
    /// Starts the emulator on a free port and waits until it accepts connections.
    pub fn start() -> Azurite {
        let bin = azurite_bin();
        let data = tempfile::tempdir().expect("cannot create a directory for Azurite's data");
        let port = free_port();
        let child = Command::new(&bin)
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .arg("--location")
            .arg(data.path())
            // The SDK speaks a newer service version than the emulator knows.
            .args(["--skipApiVersionCheck", "--disableTelemetry"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut azurite = Azurite {
            child,
            port,
            _data: data,
        };
        azurite.wait_ready();
        azurite
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("Azurite exited before it was ready: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "Azurite did not listen on port {} within 30 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The service URL of the development account.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{AZURITE_ACCOUNT}", self.port)
    }

    /// Storage settings for `container`, signed with the account key read from `key_file`.
    pub fn settings(&self, container: &str, key_file: PathBuf) -> AzureSettings {
        Azurite::settings_for(&self.endpoint(), container, key_file)
    }

    /// Settings for the development account at any `endpoint`.
    pub fn settings_for(endpoint: &str, container: &str, key_file: PathBuf) -> AzureSettings {
        let mut s = AzureSettings::new(
            AZURITE_ACCOUNT,
            container,
            AzureAuth::AccountKey(SecretRef::File(key_file)),
        );
        s.endpoint = Some(endpoint.to_string());
        s
    }

    /// A store on a new `container`, the key written to a file in `dir`.
    pub async fn storage(&self, dir: &std::path::Path, container: &str) -> AzureStorage {
        let key_file = write_azure_key_file(dir);
        let storage = AzureStorage::new(self.settings(container, key_file));
        storage
            .create_container()
            .await
            .unwrap_or_else(|e| panic!("cannot create container {container} in Azurite: {e}"));
        storage
    }
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes the development account's key to `dir/azure-account-key` (mode 0600).
pub fn write_azure_key_file(dir: &std::path::Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("azure-account-key");
    std::fs::write(&path, AZURITE_KEY).expect("cannot write the account key file");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .expect("cannot restrict the account key file");
    path
}

/// `tests/node_modules/.bin/azurite-blob`, which `scripts/test` installs.
fn azurite_bin() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("node_modules/.bin/azurite-blob");
    assert!(
        bin.exists(),
        "the Azurite emulator is not installed ({} is missing)\n\
         hint: run scripts/test, which installs it with `npm ci --prefix tests`",
        bin.display()
    );
    bin
}
