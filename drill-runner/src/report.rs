//! The drill report: a versioned JSON document, its Markdown rendering for a compliance
//! reviewer, and the short summary the command prints.
//!
//! Stored locally as `<state-dir>/drills/20261203T171706Z/report.json` and `report.md`, and in
//! every repository of the cluster as `drills/20261203T171706Z/report.json`, sealed as a
//! [`Kind::Report`] object.
//!
//! Invariant: reports are written create-only, locally and in the repository; a drill id names
//! one drill, and its report is never replaced.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{chown, OpenOptionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use lifeboat::crypto::envelope::Kind;
use lifeboat::repo::{RepoError, Repository};
use serde::{Deserialize, Serialize};

use crate::checks::CheckResult;
use crate::measure::{human_seconds, RpoBasis, Verdict};
use crate::scratch::FileOwner;

/// The version of the JSON document; bumped when a field changes meaning or goes away.
pub const FORMAT: u32 = 1;

/// The local report file names inside `<state-dir>/drills/<drill-id>/`.
pub const JSON_FILE: &str = "report.json";
/// The Markdown rendering beside it.
pub const MARKDOWN_FILE: &str = "report.md";

/// zstd level for the sealed report: it is small, so the default level costs nothing.
const COMPRESS_LEVEL: i32 = 3;

/// The local directory of a drill.
pub fn local_dir(state_dir: &Path, drill_id: &str) -> PathBuf {
    state_dir.join("drills").join(drill_id)
}

/// The repository object holding a drill's JSON report.
pub fn object_name(drill_id: &str) -> String {
    format!("drills/{drill_id}/report.json")
}

/// A drill's documented result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DrillReport {
    /// [`FORMAT`].
    pub format: u32,
    /// `YYYYMMDDTHHMMSSZ` of T0.
    pub drill_id: String,
    /// The cluster's name in the configuration.
    pub cluster: String,
    /// T0, the declared incident time.
    pub started: DateTime<Utc>,
    /// When the report was made, after teardown.
    pub finished: DateTime<Utc>,
    /// The base backup restored.
    pub backup_id: String,
    /// The recovery target, as the restore reported it.
    pub target: String,
    /// Each phase from T0 to checks passed, in order.
    pub phases: Vec<Phase>,
    /// T0 until accepting queries and checks done.
    pub rto_seconds: f64,
    /// T0 minus the newest recovered commit; absent when it could not be found.
    pub rpo_seconds: Option<f64>,
    /// Where the newest recovered commit time came from.
    pub rpo_basis: RpoBasis,
    /// The newest recovered commit time the RPO is measured from.
    pub newest_recovered_commit: Option<DateTime<Utc>>,
    /// `[cluster.targets]`.
    pub targets: Objectives,
    /// Target minus measured: positive is headroom.
    pub margins: Margins,
    /// Every check, passed or not.
    pub checks: Vec<CheckResult>,
    /// Pass only when both objectives were met and every check passed.
    pub verdict: Verdict,
    /// Every reason for a fail; empty on pass.
    pub failures: Vec<String>,
    /// `lifeboat-drill` version.
    pub software_version: String,
    /// The host the drill ran on.
    pub host: String,
    /// The operating-system user who ran it.
    pub operator: String,
    /// The configuration file.
    pub config_path: String,
    /// SHA-256 of the configuration file.
    pub config_sha256: String,
    /// The repository restored from.
    pub repository: RepositoryRef,
    /// The LSN replay ended at.
    pub replay_lsn: Option<String>,
    /// Bytes of base-backup files restored.
    pub bytes_restored: u64,
    /// What became of the scratch environment.
    pub teardown: Teardown,
}

/// One measured phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    /// What happened: `provision`, the restore's own phases, `connect for checks`, `checks`.
    pub name: String,
    /// How long it took.
    pub seconds: f64,
    /// Bytes it moved, when it moves data.
    pub bytes: Option<u64>,
}

/// RTO and RPO targets in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Objectives {
    /// Recovery-time objective.
    pub rto_seconds: f64,
    /// Recovery-point objective.
    pub rpo_seconds: f64,
}

/// Target minus measured, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Margins {
    /// RTO margin.
    pub rto_seconds: f64,
    /// RPO margin; absent when the RPO could not be measured.
    pub rpo_seconds: Option<f64>,
}

/// A repository by name and id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepositoryRef {
    /// Its name in the configuration.
    pub name: String,
    /// Its `repository_id` from `lifeboat.repo`.
    pub id: String,
}

/// Whether the scratch environment was stopped and removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Teardown {
    /// Stopped and removed.
    pub done: bool,
    /// What happened, or the error.
    pub detail: String,
}

impl DrillReport {
    /// The JSON document.
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("a drill report serializes");
        v.push(b'\n');
        v
    }

    /// Writes `report.json` and `report.md` into `dir`, create-only, owned by `owner` when
    /// running as root; returns their paths.
    pub fn write_local(&self, dir: &Path, owner: FileOwner) -> std::io::Result<[PathBuf; 2]> {
        let json = dir.join(JSON_FILE);
        let md = dir.join(MARKDOWN_FILE);
        write_new(&json, &self.to_json(), owner)?;
        write_new(&md, self.to_markdown().as_bytes(), owner)?;
        Ok([json, md])
    }

    /// Seals the JSON report into `repo` as [`object_name`].
    pub async fn store(&self, repo: &Repository) -> Result<String, RepoError> {
        let name = object_name(&self.drill_id);
        repo.put_object(&name, Kind::Report, &self.to_json(), COMPRESS_LEVEL)
            .await?;
        Ok(name)
    }
}

fn write_new(path: &Path, bytes: &[u8], owner: FileOwner) -> std::io::Result<()> {
    let with_path =
        |e: std::io::Error| std::io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)
        .map_err(with_path)?;
    f.write_all(bytes).map_err(with_path)?;
    f.sync_all().map_err(with_path)?;
    if nix::unistd::geteuid().is_root() {
        chown(path, Some(owner.uid), Some(owner.gid)).map_err(with_path)?;
    }
    Ok(())
}

fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A table cell: pipes and line breaks would break the table.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

impl DrillReport {
    /// RTO counts until the checks passed: with a failed check the service was never restored.
    fn rto_result(&self) -> &'static str {
        if self.checks.iter().all(|c| c.passed) {
            met(Some(self.margins.rto_seconds))
        } else {
            "**not achieved**: a check failed"
        }
    }
}

fn met(margin: Option<f64>) -> &'static str {
    match margin {
        Some(m) if m >= 0.0 => "met",
        Some(_) => "**missed**",
        None => "**not measured**",
    }
}

fn throughput(p: &Phase) -> String {
    match p.bytes {
        Some(b) if p.seconds > 0.0 => format!("{:.1} MB/s", b as f64 / 1e6 / p.seconds),
        _ => String::new(),
    }
}

fn megabytes(bytes: Option<u64>) -> String {
    bytes
        .map(|b| format!("{:.1} MB", b as f64 / 1e6))
        .unwrap_or_default()
}

impl DrillReport {
    /// The Markdown rendering: verdict, objectives, phases, checks, failures, evidence.
    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        self.md_summary(&mut md);
        self.md_objectives(&mut md);
        self.md_phases(&mut md);
        self.md_checks(&mut md);
        self.md_failures(&mut md);
        self.md_evidence(&mut md);
        md
    }

    fn md_summary(&self, md: &mut String) {
        let verdict = self.verdict.as_str().to_uppercase();
        let _ = writeln!(
            md,
            "# Disaster-recovery drill {}: {verdict}\n",
            self.drill_id
        );
        let _ = writeln!(
            md,
            "Cluster **{}** was restored from backup `{}` (target: {}) into a scratch \
             environment on {}, started, promoted and checked. The incident time T0 was declared \
             at {}.\n",
            self.cluster,
            self.backup_id,
            self.target,
            self.host,
            time(&self.started)
        );
    }

    fn md_objectives(&self, md: &mut String) {
        let rpo = self
            .rpo_seconds
            .map(human_seconds)
            .unwrap_or_else(|| "unknown".into());
        let rpo_margin = self
            .margins
            .rpo_seconds
            .map(human_seconds)
            .unwrap_or_default();
        md.push_str("## Objectives\n\n");
        md.push_str("| objective | target | measured | margin | result |\n");
        md.push_str("| --- | --- | --- | --- | --- |\n");
        let _ = writeln!(
            md,
            "| RTO: T0 to accepting queries and checks passed | {} | {} | {} | {} |",
            human_seconds(self.targets.rto_seconds),
            human_seconds(self.rto_seconds),
            human_seconds(self.margins.rto_seconds),
            self.rto_result()
        );
        let _ = writeln!(
            md,
            "| RPO: T0 minus the newest recovered commit | {} | {rpo} | {rpo_margin} | {} |\n",
            human_seconds(self.targets.rpo_seconds),
            met(self.margins.rpo_seconds)
        );
        let commit = self.newest_recovered_commit.as_ref().map(time);
        let _ = writeln!(
            md,
            "The RPO is measured from {} ({}).\n",
            commit.as_deref().unwrap_or("no commit time"),
            self.rpo_basis.describe()
        );
    }

    fn md_phases(&self, md: &mut String) {
        md.push_str(
            "## Phases\n\n| phase | duration | data | throughput |\n| --- | --- | --- | --- |\n",
        );
        for p in &self.phases {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                cell(&p.name),
                human_seconds(p.seconds),
                megabytes(p.bytes),
                throughput(p)
            );
        }
        let _ = writeln!(
            md,
            "| **RTO** | **{}** | | |\n",
            human_seconds(self.rto_seconds)
        );
    }

    fn md_checks(&self, md: &mut String) {
        md.push_str(
            "## Checks\n\n| check | database | result | detail |\n| --- | --- | --- | --- |\n",
        );
        for c in &self.checks {
            let result = if c.passed { "pass" } else { "**fail**" };
            let _ = writeln!(
                md,
                "| {} | {} | {result} | {} |",
                cell(&c.name),
                cell(&c.database),
                cell(&c.detail)
            );
        }
        md.push('\n');
    }

    fn md_failures(&self, md: &mut String) {
        md.push_str("## Failures\n\n");
        if self.failures.is_empty() {
            md.push_str("None.\n\n");
        }
        for f in &self.failures {
            let _ = writeln!(md, "- {f}");
        }
        if !self.failures.is_empty() {
            md.push('\n');
        }
    }

    fn md_evidence(&self, md: &mut String) {
        let lsn = self.replay_lsn.as_deref().unwrap_or("not reported");
        let teardown = if self.teardown.done {
            "done"
        } else {
            "**failed**"
        };
        md.push_str("## Evidence\n\n");
        let _ = writeln!(
            md,
            "- Drill id: `{}`, report format {}",
            self.drill_id, self.format
        );
        let _ = writeln!(md, "- Started (T0): {}", time(&self.started));
        let _ = writeln!(md, "- Finished: {}", time(&self.finished));
        let _ = writeln!(
            md,
            "- Backup: `{}`; target: {}",
            self.backup_id, self.target
        );
        let _ = writeln!(md, "- Replay ended at LSN: {lsn}");
        let _ = writeln!(md, "- Bytes restored: {}", self.bytes_restored);
        let _ = writeln!(
            md,
            "- Repository: {} (id `{}`)",
            self.repository.name, self.repository.id
        );
        let _ = writeln!(
            md,
            "- Configuration: `{}`, SHA-256 `{}`",
            self.config_path, self.config_sha256
        );
        let _ = writeln!(md, "- Software: lifeboat-drill {}", self.software_version);
        let _ = writeln!(md, "- Host: {}; operator: {}", self.host, self.operator);
        let _ = writeln!(
            md,
            "- Scratch environment teardown: {teardown} ({})",
            self.teardown.detail
        );
    }

    /// What `lifeboat-drill run` prints: verdict, objectives, phases and where the report is.
    pub fn summary(&self, files: &[PathBuf], objects: &[String]) -> String {
        let mut s = String::new();
        let verdict = self.verdict.as_str().to_uppercase();
        let _ = writeln!(
            s,
            "drill {} of cluster {}: {verdict}",
            self.drill_id, self.cluster
        );
        let _ = writeln!(
            s,
            "  RTO {} (target {}, margin {})",
            human_seconds(self.rto_seconds),
            human_seconds(self.targets.rto_seconds),
            human_seconds(self.margins.rto_seconds)
        );
        let rpo = self
            .rpo_seconds
            .map(human_seconds)
            .unwrap_or_else(|| "unknown".into());
        let rpo_margin = self
            .margins
            .rpo_seconds
            .map(human_seconds)
            .unwrap_or_else(|| "none".into());
        let _ = writeln!(
            s,
            "  RPO {rpo} (target {}, margin {rpo_margin})",
            human_seconds(self.targets.rpo_seconds)
        );
        let _ = writeln!(s, "  backup {}, target {}", self.backup_id, self.target);
        s.push_str("  phases:\n");
        for p in &self.phases {
            let _ = writeln!(s, "    {:<32} {:>11}", p.name, human_seconds(p.seconds));
        }
        let passed = self.checks.iter().filter(|c| c.passed).count();
        let _ = writeln!(s, "  checks: {passed} of {} passed", self.checks.len());
        for f in &self.failures {
            let _ = writeln!(s, "  FAILED: {f}");
        }
        for f in files {
            let _ = writeln!(s, "  report: {}", f.display());
        }
        for o in objects {
            let _ = writeln!(s, "  stored: {o}");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> DrillReport {
        let started: DateTime<Utc> = "2026-12-03T17:17:06Z".parse().unwrap();
        DrillReport {
            format: FORMAT,
            drill_id: "20261203T171706Z".into(),
            cluster: "main".into(),
            started,
            finished: "2026-12-03T17:17:50Z".parse().unwrap(),
            backup_id: "20261203T150000Z".into(),
            target: "latest".into(),
            phases: vec![
                Phase {
                    name: "provision".into(),
                    seconds: 0.02,
                    bytes: None,
                },
                Phase {
                    name: "restore files".into(),
                    seconds: 20.0,
                    bytes: Some(160_000_000),
                },
                Phase {
                    name: "checks".into(),
                    seconds: 1.5,
                    bytes: None,
                },
            ],
            rto_seconds: 42.0,
            rpo_seconds: Some(75.5),
            rpo_basis: RpoBasis::LastReplayedCommit,
            newest_recovered_commit: Some("2026-12-03T17:15:50.500Z".parse().unwrap()),
            targets: Objectives {
                rto_seconds: 14_400.0,
                rpo_seconds: 3600.0,
            },
            margins: Margins {
                rto_seconds: 14_358.0,
                rpo_seconds: Some(3524.5),
            },
            checks: vec![CheckResult {
                name: "pgbench balance invariant".into(),
                database: "bench".into(),
                passed: true,
                detail: "balanced: sum(abalance) = -81722, ...".into(),
            }],
            verdict: Verdict::Pass,
            failures: vec![],
            software_version: "0.1.0".into(),
            host: "db1".into(),
            operator: "alice".into(),
            config_path: "/etc/lifeboat/lifeboat.toml".into(),
            config_sha256: "ab".repeat(32),
            repository: RepositoryRef {
                name: "primary".into(),
                id: "r-1234".into(),
            },
            replay_lsn: Some("0/3000148".into()),
            bytes_restored: 160_000_000,
            teardown: Teardown {
                done: true,
                detail: "stopped and removed".into(),
            },
        }
    }

    #[test]
    fn markdown_holds_the_figures_a_reviewer_needs() {
        let md = sample().to_markdown();
        for needle in [
            "# Disaster-recovery drill 20261203T171706Z: PASS",
            "| 4h 00m 00s | 42.0s | 3h 59m 18s | met |",
            "| 1h 00m 00s | 1m 16s | 58m 45s | met |",
            "| restore files | 20.0s | 160.0 MB | 8.0 MB/s |",
            "| pgbench balance invariant | bench | pass |",
            "2026-12-03T17:15:50.500Z",
            "None.",
            "`20261203T150000Z`",
            "r-1234",
            &"ab".repeat(32),
            "operator: alice",
        ] {
            assert!(md.contains(needle), "{needle:?} missing from:\n{md}");
        }
    }

    #[test]
    fn markdown_of_a_failed_drill_names_each_failure() {
        let mut r = sample();
        r.verdict = Verdict::Fail;
        r.rpo_seconds = None;
        r.margins.rpo_seconds = None;
        r.checks[0].passed = false;
        r.checks[0].detail = "balances disagree | badly".into();
        r.failures = vec!["RPO could not be measured".into(), "check failed".into()];
        let md = r.to_markdown();
        assert!(md.contains(": FAIL"));
        assert!(md.contains("| unknown |  | **not measured** |"), "{md}");
        assert!(
            md.contains("| **fail** | balances disagree \\| badly |"),
            "{md}"
        );
        assert!(
            md.contains("- RPO could not be measured\n- check failed\n"),
            "{md}"
        );
    }

    #[test]
    fn json_is_versioned_and_round_trips() {
        let r = sample();
        let v: serde_json::Value = serde_json::from_slice(&r.to_json()).unwrap();
        assert_eq!(v["format"], 1);
        assert_eq!(v["verdict"], "pass");
        assert_eq!(v["rto_seconds"], 42.0);
        assert_eq!(v["margins"]["rpo_seconds"], 3524.5);
        assert_eq!(v["rpo_basis"], "last-replayed-commit");
        let back: DrillReport = serde_json::from_slice(&r.to_json()).unwrap();
        assert_eq!(back.phases, r.phases);
    }

    #[test]
    fn summary_shows_verdict_objectives_and_paths() {
        let s = sample().summary(&[PathBuf::from("/s/drills/x/report.json")], &[]);
        assert!(
            s.starts_with("drill 20261203T171706Z of cluster main: PASS\n"),
            "{s}"
        );
        assert!(
            s.contains("RTO 42.0s (target 4h 00m 00s, margin 3h 59m 18s)"),
            "{s}"
        );
        assert!(s.contains("report: /s/drills/x/report.json"), "{s}");
    }
}
