//! The configuration file as written: serde structs with `deny_unknown_fields`, each default a
//! named function. `validate` turns it into [`super::Config`].

use std::path::PathBuf;

use serde::Deserialize;

use super::{
    parse_duration, BackupSettings, ClusterConfig, Config, RepositoryConfig, RepositoryKind,
    Targets,
};
use crate::crypto::kek::KekRef;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawConfig {
    #[serde(default = "default_state_dir")]
    state_dir: PathBuf,
    #[serde(default)]
    cluster: Vec<RawCluster>,
}

/// The packaged daemon keeps its state here; tests and demos always set their own.
fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/lifeboat")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawCluster {
    name: String,
    pgdata: PathBuf,
    conninfo: String,
    pg_bin_dir: Option<PathBuf>,
    encryption: RawEncryption,
    #[serde(default)]
    repository: Vec<RawRepository>,
    #[serde(default)]
    targets: RawTargets,
    #[serde(default)]
    backup: RawBackup,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawEncryption {
    kek: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawRepository {
    name: String,
    kind: String,
    path: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawTargets {
    #[serde(default = "default_rto")]
    rto: String,
    #[serde(default = "default_rpo")]
    rpo: String,
}

/// The contractual objectives the service is sold with.
fn default_rto() -> String {
    "4h".into()
}

fn default_rpo() -> String {
    "1h".into()
}

impl Default for RawTargets {
    fn default() -> Self {
        RawTargets {
            rto: default_rto(),
            rpo: default_rpo(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawBackup {
    #[serde(default = "default_wal_timeout")]
    wal_timeout: String,
    #[serde(default = "default_compress_level")]
    compress_level: i32,
}

/// archive_command ships a segment within seconds of the switch; minutes mean it is broken.
fn default_wal_timeout() -> String {
    "5m".into()
}

/// zstd level 3 is zstd's own default: most of the ratio at a fraction of the CPU.
fn default_compress_level() -> i32 {
    3
}

impl Default for RawBackup {
    fn default() -> Self {
        RawBackup {
            wal_timeout: default_wal_timeout(),
            compress_level: default_compress_level(),
        }
    }
}

impl RawConfig {
    pub(super) fn validate(self) -> Result<Config, String> {
        if self.cluster.is_empty() {
            return Err("no [[cluster]] is configured; add one (see lifeboat.example.toml)".into());
        }
        let mut clusters = Vec::new();
        for raw in self.cluster {
            if clusters.iter().any(|c: &ClusterConfig| c.name == raw.name) {
                return Err(format!("cluster name {:?} is used twice", raw.name));
            }
            clusters.push(raw.validate()?);
        }
        Ok(Config {
            path: PathBuf::new(),
            sha256: String::new(),
            state_dir: self.state_dir,
            clusters,
        })
    }
}

impl RawCluster {
    fn validate(self) -> Result<ClusterConfig, String> {
        let at = |m: String| format!("[[cluster]] {:?}: {m}", self.name);
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!(
                "cluster name {:?} must be letters, digits, '-' or '_'",
                self.name
            ));
        }
        if has_password(&self.conninfo) {
            return Err(at(
                "conninfo holds a password; secrets are only given by reference: \
                           use a .pgpass file or trust/peer authentication for the backup role"
                    .into(),
            ));
        }
        let kek = KekRef::parse(&self.encryption.kek).map_err(|e| at(e.to_string()))?;
        if self.repository.is_empty() {
            return Err(at("has no [[cluster.repository]]; add at least one".into()));
        }
        let mut repositories: Vec<RepositoryConfig> = Vec::new();
        for r in self.repository {
            if repositories.iter().any(|x| x.name == r.name) {
                return Err(at(format!("repository name {:?} is used twice", r.name)));
            }
            repositories.push(r.validate().map_err(at)?);
        }
        let targets = Targets {
            rto: parse_duration("targets.rto", &self.targets.rto).map_err(at)?,
            rpo: parse_duration("targets.rpo", &self.targets.rpo).map_err(at)?,
        };
        let wal_timeout =
            parse_duration("backup.wal-timeout", &self.backup.wal_timeout).map_err(at)?;
        if !(1..=19).contains(&self.backup.compress_level) {
            return Err(at(format!(
                "backup.compress-level = {} is outside 1..=19",
                self.backup.compress_level
            )));
        }
        Ok(ClusterConfig {
            name: self.name,
            pgdata: self.pgdata,
            conninfo: self.conninfo,
            pg_bin_dir: self.pg_bin_dir,
            kek,
            repositories,
            targets,
            backup: BackupSettings {
                wal_timeout,
                compress_level: self.backup.compress_level,
            },
        })
    }
}

impl RawRepository {
    fn validate(self) -> Result<RepositoryConfig, String> {
        let kind = match self.kind.as_str() {
            "local" => RepositoryKind::Local {
                path: self.path.ok_or_else(|| {
                    format!(
                        "repository {:?} of kind \"local\" needs path = \"/dir\"",
                        self.name
                    )
                })?,
            },
            other => {
                return Err(format!(
                    "repository {:?} has kind = {other:?}; supported kinds: \"local\"",
                    self.name
                ))
            }
        };
        Ok(RepositoryConfig {
            name: self.name,
            kind,
        })
    }
}

/// True when a libpq keyword string carries `password=`.
fn has_password(conninfo: &str) -> bool {
    conninfo
        .split_whitespace()
        .any(|kv| kv.split('=').next().is_some_and(|k| k.trim() == "password"))
}
