//! WAL in and out of the repositories: `push` is PostgreSQL's archive_command
//! (`lifeboat wal-push pg_wal/000000010000000000000003`), `fetch` its restore_command
//! (`lifeboat wal-fetch 000000010000000000000003 pg_wal/RECOVERYXLOG`).
//!
//! Both speak the repository's WAL objects ([`crate::repo::wal`]): a segment is stored as
//! `wal/00000001/000000010000000000000003`, a history file as `wal/00000002.history`.
//!
//! Invariant: a segment enters or leaves a repository only after its header matched its name,
//! the segment size and the repository's system identifier; push reports success only once the
//! file is durable in every repository, fetch reports "absent" only once every repository's
//! listing said so.

pub mod fetch;
pub mod push;
pub mod stream;

use std::future::Future;
use std::time::Duration;

use crate::pg::{SegmentName, TimelineId};
use crate::repo::RepoError;

/// The pauses between attempts of a retryable repository operation: few and short, because
/// PostgreSQL calls archive_command again itself, and recovery waits on restore_command.
const RETRY_DELAYS: [Duration; 3] = [
    Duration::from_millis(200),
    Duration::from_millis(800),
    Duration::from_secs(2),
];

/// A file name PostgreSQL hands to archive_command (`%f` of `%p`) or restore_command (`%f`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalFileName {
    /// `000000010000000000000003`: a segment; its number depends on the segment size.
    Segment(String),
    /// `00000002.history`: a timeline history file.
    History(TimelineId),
    /// `000000010000000000000003.00000028.backup`: a backup history file.
    BackupHistory,
    /// `000000010000000000000003.partial`: the unfinished last segment of a timeline that a
    /// promotion left behind.
    Partial,
}

impl WalFileName {
    /// Classifies a file name; `None` for anything PostgreSQL does not archive.
    pub fn classify(name: &str) -> Option<WalFileName> {
        let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
        if hex(name, 24) {
            return Some(WalFileName::Segment(name.to_string()));
        }
        if let Some(tli) = name.strip_suffix(".history") {
            return TimelineId::from_hex8(tli).map(WalFileName::History);
        }
        if let Some(seg) = name.strip_suffix(".partial") {
            return hex(seg, 24).then_some(WalFileName::Partial);
        }
        let (seg, offset) = name.strip_suffix(".backup")?.split_once('.')?;
        (hex(seg, 24) && hex(offset, 8)).then_some(WalFileName::BackupHistory)
    }
}

/// Parses a segment file name for a repository with `seg_size`-byte segments.
pub fn parse_segment(name: &str, seg_size: u64) -> Result<SegmentName, String> {
    SegmentName::parse(name, seg_size).ok_or_else(|| {
        format!(
            "{name} is not a segment name with {} MiB segments",
            seg_size >> 20
        )
    })
}

/// Runs `op` until it succeeds, fails for good, or the retries are spent.
pub(crate) async fn with_retries<T, F, Fut>(what: &str, mut op: F) -> Result<T, RepoError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, RepoError>>,
{
    let mut delays = RETRY_DELAYS.iter();
    loop {
        match op().await {
            Err(e) if e.is_retryable() => match delays.next() {
                Some(delay) => {
                    tracing::warn!(error = %e, retry_in = ?delay, "{what} failed; trying again");
                    tokio::time::sleep(*delay).await;
                }
                None => return Err(e),
            },
            result => return result,
        }
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! A repository in a temporary directory and segments with a valid long page header.

    use std::sync::Arc;

    use crate::crypto::kek::Kek;
    use crate::crypto::SecretKey;
    use crate::pg::SegmentName;
    use crate::repo::{RepoInfo, Repository};
    use crate::storage::local::LocalStorage;

    /// 16 MiB, PostgreSQL's default segment size.
    pub const SEG: u64 = 16 << 20;

    /// The system identifier test repositories belong to.
    pub const SYSID: u64 = 7_312_345_678_901_234_567;

    /// A fresh repository named `name` under `dir`.
    pub async fn repo(dir: &std::path::Path, name: &str) -> Repository {
        let storage = Arc::new(LocalStorage::new(dir.join(name)));
        let kek = Kek {
            key: SecretKey([9; 32]),
        };
        Repository::init(name, storage, &kek, RepoInfo::new("main", SYSID, SEG))
            .await
            .unwrap()
    }

    /// A whole segment of PostgreSQL 15 with a valid header for `seg`, filled with `fill`.
    pub fn segment(seg: SegmentName, sysid: u64, fill: u8) -> Vec<u8> {
        let mut b = vec![fill; SEG as usize];
        b[..40].fill(0);
        b[0..2].copy_from_slice(&0xD110u16.to_le_bytes());
        b[2..4].copy_from_slice(&0x0002u16.to_le_bytes());
        b[4..8].copy_from_slice(&seg.tli.0.to_le_bytes());
        b[8..16].copy_from_slice(&seg.start_lsn(SEG).0.to_le_bytes());
        b[24..32].copy_from_slice(&sysid.to_le_bytes());
        b[32..36].copy_from_slice(&(SEG as u32).to_le_bytes());
        b[36..40].copy_from_slice(&8192u32.to_le_bytes());
        // A WAL switch as the first record: the segment is complete, and `fill` after it is
        // unused space that still makes the content differ.
        let prev = crate::pg::Lsn(seg.start_lsn(SEG).0.saturating_sub(24));
        b[40..64].copy_from_slice(&crate::pg::records::switch_record(prev));
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_what_postgres_archives() {
        use WalFileName::*;
        let c = WalFileName::classify;
        assert_eq!(
            c("000000010000000000000003"),
            Some(Segment("000000010000000000000003".into()))
        );
        assert_eq!(c("00000002.history"), Some(History(TimelineId(2))));
        assert_eq!(
            c("000000010000000000000003.00000028.backup"),
            Some(BackupHistory)
        );
        assert_eq!(c("000000010000000000000003.partial"), Some(Partial));
        for bad in [
            "RECOVERYXLOG",
            "0000000100000000000003",
            "2.history",
            "x.backup",
            "",
        ] {
            assert_eq!(c(bad), None, "{bad}");
        }
        assert!(parse_segment("0000000100000000000001FF", testing::SEG).is_err());
    }
}
