//! Tablespaces of a restored cluster: where each goes (`--tablespace-map OID=DIR`, else
//! `<to>/pg_tblspc_restored/<oid>`) and the `tablespace_map` that tells PostgreSQL so.
//!
//! Example: a backup with `pg_tblspc/16395 -> /srv/ts1`, restored to `/srv/restore`, gets
//! `/srv/restore/pg_tblspc_restored/16395` and the `tablespace_map` line
//! `16395 /srv/restore/pg_tblspc_restored/16395`; PostgreSQL recreates the link from it.
//!
//! Invariant: a restore never writes into a tablespace's original location, which may belong
//! to the running source cluster on the same host.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::RestoreError;
use crate::repo::manifest::{EntryKind, Manifest};

/// A tablespace of the backup and where it is restored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablespaceDir {
    /// Its OID.
    pub oid: u32,
    /// The link inside the data directory, `pg_tblspc/16395`.
    pub link: String,
    /// The new location.
    pub location: PathBuf,
}

/// Where each tablespace of `m` goes: `map[oid]` if given, else `<to>/pg_tblspc_restored/<oid>`.
pub fn tablespace_dirs(
    m: &Manifest,
    to: &Path,
    map: &BTreeMap<u32, PathBuf>,
) -> Result<Vec<TablespaceDir>, RestoreError> {
    let mut dirs: BTreeMap<u32, String> = m
        .entries
        .iter()
        .filter_map(|e| match e.kind {
            EntryKind::Tablespace { oid, .. } => Some((oid, e.path.clone())),
            _ => None,
        })
        .collect();
    for line in m.tablespace_map.as_deref().unwrap_or("").lines() {
        if let Some(oid) = line.split(' ').next().and_then(|o| o.parse::<u32>().ok()) {
            dirs.entry(oid)
                .or_insert_with(|| format!("pg_tblspc/{oid}"));
        }
    }
    let bad = |oid: u32, reason: String| RestoreError::TablespaceMap {
        oid,
        location: map
            .get(&oid)
            .map_or(String::new(), |p| p.display().to_string()),
        reason,
    };
    if let Some(oid) = map.keys().find(|oid| !dirs.contains_key(oid)) {
        let known: Vec<String> = dirs.keys().map(u32::to_string).collect();
        let reason = format!(
            "backup {} has no tablespace {oid}; it has: {}",
            m.backup_id,
            known.join(", ")
        );
        return Err(bad(*oid, reason));
    }
    let mut out = Vec::new();
    for (oid, link) in dirs {
        let location = match map.get(&oid) {
            Some(p) if p.is_absolute() => p.clone(),
            Some(_) => return Err(bad(oid, "the location must be an absolute path".into())),
            None => to.join("pg_tblspc_restored").join(oid.to_string()),
        };
        out.push(TablespaceDir {
            oid,
            link,
            location,
        });
    }
    Ok(out)
}

/// The `tablespace_map` naming the new locations, as PostgreSQL writes it (`\` before `\`,
/// CR and LF); `None` without tablespaces.
pub fn tablespace_map_text(tablespaces: &[TablespaceDir]) -> Option<String> {
    (!tablespaces.is_empty()).then(|| {
        tablespaces
            .iter()
            .map(|t| {
                let mut escaped = String::new();
                for c in t.location.to_string_lossy().chars() {
                    if matches!(c, '\\' | '\n' | '\r') {
                        escaped.push('\\');
                    }
                    escaped.push(c);
                }
                format!("{} {escaped}\n", t.oid)
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tablespace_map_escapes_like_postgres() {
        let t = |oid, loc: &str| TablespaceDir {
            oid,
            link: format!("pg_tblspc/{oid}"),
            location: loc.into(),
        };
        assert_eq!(tablespace_map_text(&[]), None);
        let text = tablespace_map_text(&[t(16395, "/srv/ts1"), t(16400, "/srv/a\\b")]).unwrap();
        assert_eq!(text, "16395 /srv/ts1\n16400 /srv/a\\\\b\n");
    }

    #[test]
    fn unknown_or_relative_mappings_are_refused() {
        let stop = crate::pg::Lsn(0x3000138);
        let mut m =
            crate::restore::plan::tests::manifest("20261203T171706Z", 3, stop, chrono::Utc::now());
        m.entries.push(crate::repo::manifest::Entry {
            path: "pg_tblspc/16395".into(),
            kind: EntryKind::Tablespace {
                oid: 16395,
                location: "/srv/ts1".into(),
            },
        });
        let to = Path::new("/srv/restore");
        let dirs = tablespace_dirs(&m, to, &BTreeMap::new()).unwrap();
        assert_eq!(
            dirs[0].location,
            PathBuf::from("/srv/restore/pg_tblspc_restored/16395")
        );
        let map = BTreeMap::from([(16395, PathBuf::from("/data/ts"))]);
        assert_eq!(
            tablespace_dirs(&m, to, &map).unwrap()[0].location,
            PathBuf::from("/data/ts")
        );
        for bad in [(16400, "/data/ts"), (16395, "data/ts")] {
            let map = BTreeMap::from([(bad.0, PathBuf::from(bad.1))]);
            assert!(tablespace_dirs(&m, to, &map).is_err(), "{bad:?}");
        }
    }
}
