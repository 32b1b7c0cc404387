//! The configuration file: one TOML document, kebab-case keys, unknown keys rejected with their
//! line, secrets only by reference. `raw` mirrors the file; `Config` is the validated form the
//! rest of Lifeboat uses, built once at start-up.
//!
//! Example: `config/lifeboat.example.toml` in the source tree documents every key.

mod raw;

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::crypto::kek::KekRef;
use crate::residency::Zone;

/// Where the configuration is read from when neither `--config` nor `LIFEBOAT_CONFIG` is given.
pub const DEFAULT_PATH: &str = "/etc/lifeboat/lifeboat.toml";

/// A configuration file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration {path}: {source}\nhint: pass --config FILE or set LIFEBOAT_CONFIG; the file must be readable by the user running lifeboat (for archive_command and restore_command, the PostgreSQL server's user)")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML did not parse or has an unknown key; toml's message carries the line.
    #[error("configuration {path} is invalid: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's message, with line and column.
        message: String,
    },
    /// A value parsed but is not acceptable.
    #[error("configuration {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The cluster asked for does not exist, or none was named and there are several.
    #[error("{0}")]
    Cluster(String),
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from.
    pub path: PathBuf,
    /// SHA-256 of the file's bytes, recorded in reports and the audit log.
    pub sha256: String,
    /// Directory for spool files, drill reports and local state.
    pub state_dir: PathBuf,
    /// Where `/metrics` is served; no listener when unset.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// The clusters this file describes.
    pub clusters: Vec<ClusterConfig>,
}

/// One PostgreSQL cluster and where its backups go.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The cluster's name in this file.
    pub name: String,
    /// The cluster's data directory.
    pub pgdata: PathBuf,
    /// libpq-style keyword/value connection string.
    pub conninfo: String,
    /// Directory holding the PostgreSQL binaries of the cluster's major version, if set.
    pub pg_bin_dir: Option<PathBuf>,
    /// Reference to the key-encryption key.
    pub kek: KekRef,
    /// The repositories; every backup and WAL object goes to each.
    pub repositories: Vec<RepositoryConfig>,
    /// The residency zone every repository must lie in, when one is promised.
    pub residency: Option<Zone>,
    /// Recovery objectives.
    pub targets: Targets,
    /// Base backup settings.
    pub backup: BackupSettings,
    /// How WAL reaches the repositories.
    pub wal: WalSettings,
}

/// How WAL reaches the repositories (`[cluster.wal]`).
#[derive(Debug, Clone)]
pub struct WalSettings {
    /// Streamed by `lifeboat daemon`, or archived by PostgreSQL's archive_command.
    pub mode: WalMode,
    /// The physical replication slot the daemon streams through.
    pub slot: String,
    /// How often the streamed part of the current segment is uploaded when it grew.
    pub partial_upload_interval: Duration,
    /// How often the daemon bumps `lifeboat.heartbeat` on the source; `None` when `0s`.
    pub heartbeat_interval: Option<Duration>,
}

/// Who ships WAL to the repositories.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalMode {
    /// `lifeboat daemon` streams it over the replication protocol.
    Stream,
    /// PostgreSQL's archive_command runs `lifeboat wal-push`.
    Archive,
}

/// Where one repository lives.
#[derive(Debug, Clone)]
pub struct RepositoryConfig {
    /// Name in the file, unique within the cluster.
    pub name: String,
    /// Storage kind and location.
    pub kind: RepositoryKind,
    /// Whether WAL and backups count as durable only once this repository holds them.
    pub required: bool,
    /// The region it lives in (an Azure region name), for the residency check.
    pub region: Option<String>,
    /// Why it may lie outside the cluster's residency zone, when it may.
    pub allow_cross_zone: Option<String>,
}

/// Kinds of storage a repository can live on.
#[derive(Debug, Clone)]
pub enum RepositoryKind {
    /// A directory on a local or mounted file system.
    Local {
        /// The directory.
        path: PathBuf,
    },
    /// A container (and prefix) in an Azure Blob Storage account.
    Azure {
        /// The storage account.
        account: String,
        /// The container, which must exist.
        container: String,
        /// Folder inside the container; empty for the container's root.
        prefix: String,
        /// Service URL when not `https://<account>.blob.core.windows.net` (sovereign clouds,
        /// the emulator), without a final `/`.
        endpoint: Option<String>,
        /// How requests are authorized.
        auth: AzureAuth,
        /// How long one request may take before it is abandoned and retried.
        request_timeout: Duration,
    },
}

/// How Lifeboat authenticates to Azure Blob Storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AzureAuth {
    /// Shared Key signing with the account key (base64, as the portal shows it).
    AccountKey(SecretRef),
    /// A shared access signature appended to every URL.
    SasToken(SecretRef),
    /// An Entra ID token: workload identity, managed identity, or the Azure CLI's login.
    TokenCredential,
}

/// A secret given by reference: `file:/path` (the file's content, trimmed) or `env:NAME`.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// A file holding the secret.
    File(PathBuf),
    /// An environment variable holding the secret.
    Env(String),
}

impl std::fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretRef::File(p) => write!(f, "file:{}", p.display()),
            SecretRef::Env(n) => write!(f, "env:{n}"),
        }
    }
}

impl SecretRef {
    /// Parses `file:PATH` or `env:NAME` given for `key`.
    pub fn parse(key: &str, value: &str) -> Result<SecretRef, String> {
        if let Some(p) = value.strip_prefix("file:").filter(|p| !p.is_empty()) {
            return Ok(SecretRef::File(PathBuf::from(p)));
        }
        if let Some(n) = value.strip_prefix("env:").filter(|n| !n.is_empty()) {
            return Ok(SecretRef::Env(n.to_string()));
        }
        Err(format!(
            "{key} must be a reference, \"file:/etc/lifeboat/{key}\" or \"env:NAME\"; \
             secrets are never written in the configuration"
        ))
    }

    /// Reads the secret, trimmed of surrounding white space.
    pub fn read(&self) -> Result<String, String> {
        let value = match self {
            SecretRef::File(p) => std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read secret file {}: {e}", p.display()))?,
            SecretRef::Env(n) => std::env::var(n)
                .map_err(|_| format!("environment variable {n} (a secret) is not set"))?,
        };
        Ok(value.trim().to_string())
    }
}

/// Recovery-time and recovery-point objectives.
#[derive(Debug, Clone, Copy)]
pub struct Targets {
    /// Recovery-time objective.
    pub rto: Duration,
    /// Recovery-point objective.
    pub rpo: Duration,
}

/// Settings of base backups.
#[derive(Debug, Clone)]
pub struct BackupSettings {
    /// How long `backup` waits for the WAL up to the stop position to reach the repository.
    pub wal_timeout: Duration,
    /// zstd level for chunks and WAL.
    pub compress_level: i32,
    /// When the daemon takes backups; `None` for `schedule = "off"`.
    pub schedule: Option<crate::daemon::schedule::Schedule>,
}

impl Config {
    /// Reads and validates the configuration file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let text = String::from_utf8_lossy(&bytes);
        let raw: raw::RawConfig = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let mut config = raw.validate().map_err(invalid)?;
        // Reports and restore_command name the file: a relative path would mean nothing there.
        config.path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        config.sha256 = hex::encode(Sha256::digest(&bytes));
        Ok(config)
    }

    /// The cluster called `name`, or the only one when `name` is `None`.
    pub fn cluster(&self, name: Option<&str>) -> Result<&ClusterConfig, ConfigError> {
        let names = || {
            self.clusters
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        match name {
            Some(n) => self.clusters.iter().find(|c| c.name == n).ok_or_else(|| {
                ConfigError::Cluster(format!(
                    "no cluster named {n:?} in {}; it has: {}",
                    self.path.display(),
                    names()
                ))
            }),
            None if self.clusters.len() == 1 => Ok(&self.clusters[0]),
            None => Err(ConfigError::Cluster(format!(
                "{} describes several clusters ({}); hint: pass --cluster NAME",
                self.path.display(),
                names()
            ))),
        }
    }
}

/// Parses a duration such as `4h`, `90s` or `30d`.
pub fn parse_duration(key: &str, value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value).map_err(|e| {
        format!(
            "{key} = {value:?} is not a duration ({e}); write it like \"4h\", \"15m\" or \"30d\""
        )
    })
}
