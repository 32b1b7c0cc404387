//! Waiting for the backup's WAL: a backup is only restorable once every segment from its start
//! through its stop position is in the repository (complete, or a partial reaching the stop),
//! so the manifest waits for that, within `backup.wal-timeout`.

use std::time::{Duration, Instant};

use super::BackupError;
use crate::pg::{Lsn, SegmentName, TimelineId};
use crate::repo::Repository;

/// Waits until `repo` holds WAL on `tli` from `start` through `stop`.
pub async fn wait_for_wal(
    repo: &Repository,
    tli: TimelineId,
    start: Lsn,
    stop: Lsn,
    timeout: Duration,
) -> Result<(), BackupError> {
    let seg_size = repo.info.wal_segment_size;
    let first = SegmentName::containing(tli, start, seg_size);
    let last = SegmentName::last_needed_for(tli, stop, seg_size);
    let deadline = Instant::now() + timeout;
    loop {
        let listing = repo.list_wal().await?;
        let end = listing.continuous_end(tli, first.segno, seg_size);
        if end.is_some_and(|e| e >= stop) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let missing = (first.segno..=last.segno)
                .map(|segno| SegmentName { tli, segno })
                .find(|s| !listing.has_segment(*s))
                .unwrap_or(last);
            return Err(BackupError::WalTimeout {
                repository: repo.name.clone(),
                segment: missing.file_name(seg_size),
                stop,
                waited: timeout,
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
