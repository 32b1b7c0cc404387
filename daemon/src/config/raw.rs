//! The configuration file as written: serde structs with `deny_unknown_fields`, each default a
//! named function. `validate` turns it into [`super::Config`].

use std::path::PathBuf;

use serde::Deserialize;

use super::{
    parse_duration, AzureAuth, BackupSettings, ClusterConfig, Config, RepositoryConfig,
    RepositoryKind, SecretRef, Targets, WalMode, WalSettings,
};
use crate::crypto::kek::KekRef;
use crate::daemon::schedule::Schedule;
use crate::residency::{self, Placement, Verdict, Zone};

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawConfig {
    #[serde(default = "default_state_dir")]
    state_dir: PathBuf,
    metrics_listen: Option<String>,
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
    residency: Option<String>,
    #[serde(default)]
    targets: RawTargets,
    #[serde(default)]
    backup: RawBackup,
    #[serde(default)]
    wal: RawWal,
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
    account: Option<String>,
    container: Option<String>,
    prefix: Option<String>,
    endpoint: Option<String>,
    region: Option<String>,
    #[serde(default = "default_required")]
    required: bool,
    allow_cross_zone: Option<String>,
    account_key: Option<String>,
    sas_token: Option<String>,
    request_timeout: Option<String>,
}

/// A repository counts toward durability unless the operator says it may fall behind.
fn default_required() -> bool {
    true
}

/// Long enough for a 256 MiB put on a slow link, short enough that a hung connection is
/// abandoned and retried well within archive_command's patience.
fn default_request_timeout() -> &'static str {
    "60s"
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
    #[serde(default = "default_schedule")]
    schedule: String,
    #[serde(default = "default_time_zone")]
    time_zone: String,
}

/// A daily full backup (cheap: unchanged chunks are referenced) at a quiet hour.
fn default_schedule() -> String {
    "0 0 2 * * *".into()
}

fn default_time_zone() -> String {
    "UTC".into()
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
            schedule: default_schedule(),
            time_zone: default_time_zone(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawWal {
    #[serde(default = "default_wal_mode")]
    mode: String,
    #[serde(default = "default_slot")]
    slot: String,
    #[serde(default = "default_partial_upload_interval")]
    partial_upload_interval: String,
    #[serde(default = "default_heartbeat_interval")]
    heartbeat_interval: String,
}

/// A restore can tell to the second what it recovered.
fn default_heartbeat_interval() -> String {
    "1s".into()
}

/// archive_command is what existing installations use; streaming is opted into per cluster.
fn default_wal_mode() -> String {
    "archive".into()
}

fn default_slot() -> String {
    "lifeboat".into()
}

/// Seconds of RPO for one sealed upload of at most a segment every interval.
fn default_partial_upload_interval() -> String {
    "5s".into()
}

impl Default for RawWal {
    fn default() -> Self {
        RawWal {
            mode: default_wal_mode(),
            slot: default_slot(),
            partial_upload_interval: default_partial_upload_interval(),
            heartbeat_interval: default_heartbeat_interval(),
        }
    }
}

impl RawWal {
    fn validate(self) -> Result<WalSettings, String> {
        let mode = match self.mode.as_str() {
            "stream" => WalMode::Stream,
            "archive" => WalMode::Archive,
            other => {
                return Err(format!(
                    "wal.mode = {other:?}; supported: \"stream\", \"archive\""
                ))
            }
        };
        let valid_slot = !self.slot.is_empty()
            && self.slot.len() <= 63
            && self
                .slot
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid_slot {
            return Err(format!(
                "wal.slot = {:?} must be 1-63 lowercase letters, digits or '_'",
                self.slot
            ));
        }
        let interval =
            parse_duration("wal.partial-upload-interval", &self.partial_upload_interval)?;
        if interval.is_zero() {
            return Err("wal.partial-upload-interval must be above zero".into());
        }
        let heartbeat = parse_duration("wal.heartbeat-interval", &self.heartbeat_interval)?;
        Ok(WalSettings {
            mode,
            slot: self.slot,
            partial_upload_interval: interval,
            heartbeat_interval: Some(heartbeat).filter(|d| !d.is_zero()),
        })
    }
}

impl RawConfig {
    pub(super) fn validate(self) -> Result<Config, String> {
        if self.cluster.is_empty() {
            return Err("no [[cluster]] is configured; add one (see lifeboat.example.toml)".into());
        }
        require_absolute("state-dir", &self.state_dir)?;
        let mut clusters = Vec::new();
        for raw in self.cluster {
            if clusters.iter().any(|c: &ClusterConfig| c.name == raw.name) {
                return Err(format!("cluster name {:?} is used twice", raw.name));
            }
            clusters.push(raw.validate()?);
        }
        let metrics_listen = match &self.metrics_listen {
            Some(a) => Some(a.parse().map_err(|_| {
                format!("metrics-listen = {a:?} is not an address and port like \"127.0.0.1:9187\"")
            })?),
            None => None,
        };
        Ok(Config {
            path: PathBuf::new(),
            sha256: String::new(),
            state_dir: self.state_dir,
            metrics_listen,
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
        if let KekRef::File(p) = &kek {
            require_absolute("encryption.kek", p).map_err(at)?;
        }
        require_absolute("pgdata", &self.pgdata).map_err(at)?;
        if let Some(dir) = &self.pg_bin_dir {
            require_absolute("pg-bin-dir", dir).map_err(at)?;
        }
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
        if !repositories.iter().any(|r| r.required) {
            return Err(at(
                "has no repository with required = true; WAL would count as archived \
                 without being stored anywhere"
                    .into(),
            ));
        }
        let residency = match &self.residency {
            Some(z) => Some(z.parse::<Zone>().map_err(at)?),
            None => None,
        };
        check_residency(residency, &repositories).map_err(at)?;
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
        let wal = self.wal.validate().map_err(at)?;
        let schedule =
            Schedule::parse(&self.backup.schedule, &self.backup.time_zone).map_err(at)?;
        Ok(ClusterConfig {
            name: self.name,
            pgdata: self.pgdata,
            conninfo: self.conninfo,
            pg_bin_dir: self.pg_bin_dir,
            kek,
            repositories,
            residency,
            targets,
            backup: BackupSettings {
                wal_timeout,
                compress_level: self.backup.compress_level,
                schedule,
            },
            wal,
        })
    }
}

impl RawRepository {
    fn validate(self) -> Result<RepositoryConfig, String> {
        let kind = match self.kind.as_str() {
            "local" => {
                self.refuse_azure_keys()?;
                RepositoryKind::Local {
                    path: self.path.clone().ok_or_else(|| {
                        format!(
                            "repository {:?} of kind \"local\" needs path = \"/dir\"",
                            self.name
                        )
                    })?,
                }
            }
            "azure" => self.azure()?,
            other => {
                return Err(format!(
                    "repository {:?} has kind = {other:?}; supported kinds: \"local\", \"azure\"",
                    self.name
                ))
            }
        };
        if let RepositoryKind::Local { path } = &kind {
            require_absolute(&format!("repository {:?} path", self.name), path)?;
        }
        if let Some(reason) = &self.allow_cross_zone {
            if reason.trim().is_empty() {
                return Err(format!(
                    "repository {:?}: allow-cross-zone needs the reason, for the log and audit",
                    self.name
                ));
            }
        }
        Ok(RepositoryConfig {
            name: self.name,
            kind,
            required: self.required,
            region: self.region,
            allow_cross_zone: self.allow_cross_zone,
        })
    }
}

impl RawRepository {
    fn refuse_azure_keys(&self) -> Result<(), String> {
        let azure_only = [
            ("account", self.account.is_some()),
            ("container", self.container.is_some()),
            ("prefix", self.prefix.is_some()),
            ("endpoint", self.endpoint.is_some()),
            ("account-key", self.account_key.is_some()),
            ("sas-token", self.sas_token.is_some()),
            ("request-timeout", self.request_timeout.is_some()),
        ];
        match azure_only.iter().find(|(_, set)| *set) {
            Some((key, _)) => Err(format!(
                "repository {:?}: {key} is only for kind = \"azure\"",
                self.name
            )),
            None => Ok(()),
        }
    }

    fn azure(&self) -> Result<RepositoryKind, String> {
        let at = |m: String| format!("repository {:?}: {m}", self.name);
        let need = |v: &Option<String>, key: &str| {
            v.clone()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| at(format!("kind = \"azure\" needs {key} = \"...\"")))
        };
        if self.path.is_some() {
            return Err(at("path is only for kind = \"local\"".into()));
        }
        let account = need(&self.account, "account")?;
        let container = need(&self.container, "container")?;
        let auth = match (&self.account_key, &self.sas_token) {
            (Some(_), Some(_)) => {
                return Err(at("give account-key or sas-token, not both".into()));
            }
            (Some(k), None) => {
                AzureAuth::AccountKey(SecretRef::parse("account-key", k).map_err(at)?)
            }
            (None, Some(t)) => AzureAuth::SasToken(SecretRef::parse("sas-token", t).map_err(at)?),
            (None, None) => AzureAuth::TokenCredential,
        };
        let endpoint = match &self.endpoint {
            Some(e) if !(e.starts_with("https://") || e.starts_with("http://")) => {
                return Err(at(format!(
                    "endpoint = {e:?} must start with https:// or http://"
                )));
            }
            // A final `/` would make every path start `//container`, which the service rejects.
            Some(e) => Some(e.trim_end_matches('/').to_string()),
            None => None,
        };
        let timeout = self
            .request_timeout
            .as_deref()
            .unwrap_or(default_request_timeout());
        Ok(RepositoryKind::Azure {
            account,
            container,
            prefix: self
                .prefix
                .clone()
                .unwrap_or_default()
                .trim_matches('/')
                .to_string(),
            endpoint,
            auth,
            request_timeout: parse_duration("request-timeout", timeout).map_err(at)?,
        })
    }
}

/// Refuses a repository outside the cluster's zone; WARNs for each exempted one.
fn check_residency(zone: Option<Zone>, repositories: &[RepositoryConfig]) -> Result<(), String> {
    for r in repositories {
        let kind = match r.kind {
            RepositoryKind::Local { .. } => "local",
            RepositoryKind::Azure { .. } => "azure",
        };
        let placement = Placement {
            repository: &r.name,
            kind,
            region: r.region.as_deref(),
            allow_cross_zone: r.allow_cross_zone.as_deref(),
        };
        if let Verdict::Exempted(message) = residency::check(zone, &placement)? {
            tracing::warn!(repository = %r.name, "{message}");
        }
    }
    Ok(())
}

/// True when a libpq keyword string carries `password=`.
fn has_password(conninfo: &str) -> bool {
    // Parsed as libpq does, so URIs (`postgresql://user:secret@host/db`) are caught too.
    match conninfo.parse::<tokio_postgres::Config>() {
        Ok(c) => c.get_password().is_some(),
        Err(_) => conninfo.contains("password"),
    }
}

/// PostgreSQL runs archive_command and restore_command in the data directory, so a relative
/// path would point somewhere else there than where it was tested.
fn require_absolute(key: &str, path: &std::path::Path) -> Result<(), String> {
    if path.is_absolute() {
        return Ok(());
    }
    Err(format!(
        "{key} = {:?} is a relative path; write it absolute (archive_command and \
         restore_command run in the data directory)",
        path.display().to_string()
    ))
}

#[cfg(test)]
mod azure_tests {
    use super::*;

    fn repository(extra: &str) -> Result<RepositoryConfig, String> {
        let text = format!("name = \"az\"\nkind = \"azure\"\n{extra}");
        let raw: RawRepository = toml::from_str(&text).map_err(|e| e.to_string())?;
        raw.validate()
    }

    #[test]
    fn an_azure_repository_takes_its_keys_and_secrets_by_reference() {
        let rc = repository(
            "account = \"acct\"\ncontainer = \"c\"\nprefix = \"/main/\"\n\
             endpoint = \"http://127.0.0.1:10000/devstoreaccount1/\"\n\
             region = \"germanywestcentral\"\naccount-key = \"file:/etc/key\"",
        )
        .unwrap();
        let RepositoryKind::Azure {
            prefix,
            endpoint,
            auth,
            request_timeout,
            ..
        } = rc.kind
        else {
            panic!("not azure: {:?}", rc.kind)
        };
        assert_eq!(prefix, "main");
        assert_eq!(endpoint.unwrap(), "http://127.0.0.1:10000/devstoreaccount1");
        assert_eq!(
            auth,
            AzureAuth::AccountKey(SecretRef::File("/etc/key".into()))
        );
        assert_eq!(request_timeout, std::time::Duration::from_secs(60));
        let token = repository("account = \"a\"\ncontainer = \"c\"").unwrap();
        assert!(matches!(
            token.kind,
            RepositoryKind::Azure {
                auth: AzureAuth::TokenCredential,
                ..
            }
        ));
    }

    #[test]
    fn azure_mistakes_are_refused_with_the_fix() {
        for (extra, says) in [
            ("container = \"c\"", "needs account"),
            ("account = \"a\"", "needs container"),
            ("account = \"a\"\ncontainer = \"c\"\naccount-key = \"abc==\"", "reference"),
            (
                "account = \"a\"\ncontainer = \"c\"\naccount-key = \"env:K\"\nsas-token = \"env:S\"",
                "not both",
            ),
            ("account = \"a\"\ncontainer = \"c\"\nendpoint = \"ftp://x\"", "https://"),
            ("account = \"a\"\ncontainer = \"c\"\npath = \"/x\"", "local"),
        ] {
            let err = repository(extra).unwrap_err();
            assert!(err.contains(says), "{extra:?}: {err}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_refused_in_keyword_and_uri_form() {
        assert!(has_password("host=/tmp user=postgres password=s3cret"));
        assert!(has_password(
            "postgresql://postgres:s3cret@localhost:5432/postgres"
        ));
        assert!(has_password(
            "postgresql:///postgres?host=/tmp&password=s3cret"
        ));
        assert!(!has_password(
            "host=/var/run/postgresql port=5432 user=postgres dbname=postgres"
        ));
    }

    #[test]
    fn relative_paths_are_refused_naming_the_key() {
        let err = require_absolute("encryption.kek", std::path::Path::new("kek")).unwrap_err();
        assert!(
            err.contains("encryption.kek") && err.contains("absolute"),
            "{err}"
        );
        assert!(require_absolute("pgdata", std::path::Path::new("/srv/pg")).is_ok());
    }
}
