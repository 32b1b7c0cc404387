//! The files that turn a restored data directory into a recovery: `backup_label` (byte for
//! byte), `tablespace_map`, `recovery.signal`, and a block appended to `postgresql.auto.conf`.
//!
//! Example of the block, for `--target-time "2026-12-03 17:20:05.123" --target-action promote`:
//! ```text
//! restore_command = '''/usr/bin/lifeboat'' --config ''/etc/lifeboat/lifeboat.toml'' --cluster ''main'' wal-fetch --repository primary %f %p'
//! archive_mode = off
//! recovery_target = ''
//! recovery_target_lsn = ''
//! recovery_target_name = ''
//! recovery_target_xid = ''
//! recovery_target_time = '2026-12-03 17:20:05.123000+00:00'
//! ```
//! Invariant: the restored copy never archives into the production repository, and exactly one
//! recovery target is in force: every other target is reset to '' before the chosen one, so a
//! target left by an earlier restore in the same file cannot combine with it.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use chrono::Utc;

use super::target::{Target, TargetAction};
use super::RestoreError;
use crate::repo::manifest::Manifest;

/// Every `recovery_target*` setting that names a target.
const TARGET_SETTINGS: [&str; 5] = [
    "recovery_target",
    "recovery_target_lsn",
    "recovery_target_name",
    "recovery_target_time",
    "recovery_target_xid",
];

/// Files a running or crashed source leaves that must not reach the restored copy; a
/// `standby.signal` would make it follow the production primary instead of the target.
const STALE_FILES: [&str; 3] = ["postmaster.pid", "postmaster.opts", "standby.signal"];

/// What the recovery block says.
#[derive(Debug, Clone)]
pub struct Recovery<'a> {
    /// The full restore_command.
    pub restore_command: String,
    /// Where recovery stops.
    pub target: &'a Target,
    /// What happens there.
    pub action: TargetAction,
    /// `port`, when one was asked for.
    pub port: Option<u16>,
    /// The backup, for the comment.
    pub backup: String,
}

/// `restore_command` calling `lifeboat wal-fetch` on `repository` (the one the backup came
/// from, whose WAL the plan checked), each path quoted for `sh` and any `%` in it doubled so
/// PostgreSQL does not expand it.
pub fn restore_command(
    lifeboat_bin: &Path,
    config: &Path,
    cluster: &str,
    repository: &str,
) -> String {
    let q = |s: &str| sh_quote(s).replace('%', "%%");
    format!(
        "{} --config {} --cluster {} wal-fetch --repository {} %f %p",
        q(&lifeboat_bin.to_string_lossy()),
        q(&config.to_string_lossy()),
        q(cluster),
        q(repository)
    )
}

/// Quotes `s` as one `sh` word.
pub fn sh_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+:,=@".contains(&b));
    if plain {
        // Nothing the shell would interpret: keep it readable in postgresql.conf.
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Quotes `s` as a configuration-file string, doubling quotes and backslashes as ALTER SYSTEM
/// does.
pub fn conf_quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', r"\\").replace('\'', "''"))
}

/// The block appended to `postgresql.auto.conf`.
pub fn recovery_block(r: &Recovery) -> String {
    let mut lines = vec![
        format!(
            "# Added by lifeboat restore at {}: backup {}, target {}.",
            Utc::now().format("%Y-%m-%dT%H:%M:%SZ"),
            r.backup,
            r.target
        ),
        "# Archiving is off so this copy never writes into the production archive.".into(),
        format!("restore_command = {}", conf_quote(&r.restore_command)),
        "archive_mode = off".into(),
        "recovery_target_timeline = 'latest'".into(),
    ];
    let chosen = r.target.setting();
    for name in TARGET_SETTINGS {
        if chosen.as_ref().is_none_or(|(n, _)| *n != name) {
            lines.push(format!("{name} = ''"));
        }
    }
    if let Some((name, value)) = chosen {
        lines.push(format!("{name} = {}", conf_quote(&value)));
        lines.push("recovery_target_inclusive = on".into());
        lines.push(format!("recovery_target_action = '{}'", r.action));
    }
    if let Some(port) = r.port {
        lines.push(format!("port = {port}"));
    }
    lines.join("\n") + "\n"
}

/// Writes `backup_label`, `tablespace_map`, `recovery.signal` and the recovery block, and
/// removes the stale files of a running source.
pub fn write(
    dir: &Path,
    m: &Manifest,
    tablespace_map: Option<&str>,
    block: &str,
) -> Result<(), RestoreError> {
    write_new(&dir.join("backup_label"), m.backup_label.as_bytes())?;
    if let Some(map) = tablespace_map {
        write_new(&dir.join("tablespace_map"), map.as_bytes())?;
    }
    write_new(&dir.join("recovery.signal"), b"")?;
    append_block(&dir.join("postgresql.auto.conf"), block)?;
    for name in STALE_FILES {
        let path = dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => tracing::info!(file = %path.display(), "removed a file the source left"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(RestoreError::io("cannot remove", &path)(e)),
        }
    }
    Ok(())
}

fn write_new(path: &Path, bytes: &[u8]) -> Result<(), RestoreError> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(RestoreError::io("cannot create", path))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(RestoreError::io("cannot write", path))
}

/// Appends `block` to `path` (created if missing), starting on a fresh line.
fn append_block(path: &Path, block: &str) -> Result<(), RestoreError> {
    let old = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(RestoreError::io("cannot read", path)(e)),
    };
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(RestoreError::io("cannot open", path))?;
    let sep = if old.is_empty() || old.ends_with(b"\n") {
        ""
    } else {
        "\n"
    };
    f.write_all(format!("{sep}{block}").as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(RestoreError::io("cannot write", path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::Lsn;

    #[test]
    fn restore_command_is_quoted_for_sh_and_postgres() {
        let cmd = restore_command(
            Path::new("/opt/life boat/lifeboat"),
            Path::new("/etc/it's 100%.toml"),
            "main",
            "dr 2",
        );
        assert_eq!(
            cmd,
            r"'/opt/life boat/lifeboat' --config '/etc/it'\''s 100%%.toml' --cluster main wal-fetch --repository 'dr 2' %f %p"
        );
        assert_eq!(conf_quote(r"a'b\c"), r"'a''b\\c'");
    }

    fn block(target: &Target, port: Option<u16>) -> String {
        let r = Recovery {
            restore_command: "lifeboat wal-fetch %f %p".into(),
            target,
            action: TargetAction::Promote,
            port,
            backup: "20261203T171706Z".into(),
        };
        recovery_block(&r)
    }

    #[test]
    fn the_chosen_target_comes_after_every_reset() {
        let t = Target::Time(crate::restore::parse_target_time("2026-12-03 17:20:05.123").unwrap());
        let text = block(&t, Some(5433));
        let lines: Vec<&str> = text.lines().collect();
        let chosen = lines
            .iter()
            .position(|l| l.starts_with("recovery_target_time ="))
            .unwrap();
        assert_eq!(
            lines[chosen],
            "recovery_target_time = '2026-12-03 17:20:05.123000+00:00'"
        );
        for reset in [
            "recovery_target = ''",
            "recovery_target_lsn = ''",
            "recovery_target_xid = ''",
        ] {
            assert!(
                lines.iter().position(|l| *l == reset).unwrap() < chosen,
                "{reset}"
            );
        }
        assert!(text.contains("archive_mode = off\n"));
        assert!(text.contains("recovery_target_action = 'promote'\n"));
        assert!(text.contains("recovery_target_timeline = 'latest'\n"));
        assert!(text.ends_with("port = 5433\n"));
    }

    #[test]
    fn latest_resets_every_target_and_sets_no_action() {
        let text = block(&Target::Latest, None);
        assert_eq!(text.matches(" = ''").count(), 5);
        assert!(!text.contains("recovery_target_action") && !text.contains("port"));
        let text = block(&Target::Lsn(Lsn(0x5000028)), None);
        assert!(text.contains("recovery_target_lsn = '0/5000028'\n"));
        assert!(block(&Target::Immediate, None).contains("recovery_target = 'immediate'\n"));
    }
}
