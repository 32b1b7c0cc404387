//! The spool: the segment being streamed, as a local file
//! `<state-dir>/spool/<cluster>/000000010000000000000004`, created at the segment size with
//! zeros (as pg_receivewal does), written at each byte's offset and fsynced before any of it is
//! uploaded.
//!
//! Invariant: the spool is only a staging area. Nothing counts as durable until it is in every
//! repository, so a spool file left by a crash is discarded: the slot still holds that WAL on
//! the server, and streaming restarts at the segment start of the repository's durable end.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::pg::{Lsn, SegmentName};

/// The spool directory of one cluster and its current segment file.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    seg_size: u64,
    current: Option<SpoolSegment>,
}

/// The file of the segment being streamed.
#[derive(Debug)]
struct SpoolSegment {
    seg: SegmentName,
    file: File,
    path: PathBuf,
    /// End of the bytes written so far.
    end: Lsn,
}

/// An I/O error on a spool file, naming it.
#[derive(Debug, thiserror::Error)]
#[error("spool file {path}: {source}")]
pub struct SpoolError {
    /// The file or directory.
    pub path: PathBuf,
    /// Why.
    pub source: io::Error,
}

fn at(path: &Path) -> impl Fn(io::Error) -> SpoolError + '_ {
    move |source| SpoolError {
        path: path.to_path_buf(),
        source,
    }
}

impl Spool {
    /// Opens `dir`, creating it, and removes files a previous run left (see the module header).
    pub fn open(dir: PathBuf, seg_size: u64) -> Result<Spool, SpoolError> {
        std::fs::create_dir_all(&dir).map_err(at(&dir))?;
        for entry in std::fs::read_dir(&dir).map_err(at(&dir))? {
            let path = entry.map_err(at(&dir))?.path();
            std::fs::remove_file(&path).map_err(at(&path))?;
        }
        Ok(Spool {
            dir,
            seg_size,
            current: None,
        })
    }

    /// Writes `data`, which starts at `start` and stays inside segment `seg`.
    pub fn write(&mut self, seg: SegmentName, start: Lsn, data: &[u8]) -> Result<(), SpoolError> {
        if self.current.as_ref().is_none_or(|c| c.seg != seg) {
            self.discard()?;
            self.current = Some(self.create(seg)?);
        }
        let current = self.current.as_mut().expect("created above");
        let offset = start.segment_offset(self.seg_size);
        current
            .file
            .write_all_at(data, offset)
            .map_err(at(&current.path))?;
        current.end = Lsn(start.0 + data.len() as u64);
        Ok(())
    }

    fn create(&self, seg: SegmentName) -> Result<SpoolSegment, SpoolError> {
        let path = self.dir.join(seg.file_name(self.seg_size));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(at(&path))?;
        file.set_len(self.seg_size).map_err(at(&path))?;
        file.sync_all().map_err(at(&path))?;
        sync_dir(&self.dir)?;
        Ok(SpoolSegment {
            seg,
            file,
            end: seg.start_lsn(self.seg_size),
            path,
        })
    }

    /// Fsyncs the current segment file and returns its bytes from the segment start to the end
    /// written, with the segment they belong to.
    pub fn synced_prefix(&self) -> Result<Option<(SegmentName, Lsn, Vec<u8>)>, SpoolError> {
        let Some(c) = &self.current else {
            return Ok(None);
        };
        c.file.sync_data().map_err(at(&c.path))?;
        let len = c.end.0 - c.seg.start_lsn(self.seg_size).0;
        let mut bytes = vec![0; len as usize];
        c.file.read_exact_at(&mut bytes, 0).map_err(at(&c.path))?;
        Ok(Some((c.seg, c.end, bytes)))
    }

    /// Removes the current segment file (it is in every repository, or will be re-streamed).
    pub fn discard(&mut self) -> Result<(), SpoolError> {
        if let Some(c) = self.current.take() {
            std::fs::remove_file(&c.path).map_err(at(&c.path))?;
        }
        Ok(())
    }
}

fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(at(dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::TimelineId;

    const S: u64 = 1 << 20;

    #[test]
    fn writes_land_at_their_offset_in_a_zero_padded_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("s")).unwrap();
        std::fs::write(dir.path().join("s/leftover"), b"x").unwrap();
        let mut spool = Spool::open(dir.path().join("s"), S).unwrap();
        assert!(!dir.path().join("s/leftover").exists());
        let seg = SegmentName {
            tli: TimelineId(1),
            segno: 3,
        };
        let start = seg.start_lsn(S);
        spool.write(seg, start, b"abc").unwrap();
        spool.write(seg, Lsn(start.0 + 3), b"de").unwrap();
        let (got, end, bytes) = spool.synced_prefix().unwrap().unwrap();
        assert_eq!(
            (got, end, bytes.as_slice()),
            (seg, Lsn(start.0 + 5), &b"abcde"[..])
        );
        let path = dir.path().join("s").join(seg.file_name(S));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), S);
        spool
            .write(seg.next(), seg.next().start_lsn(S), b"f")
            .unwrap();
        assert!(!path.exists());
        spool.discard().unwrap();
        assert_eq!(std::fs::read_dir(dir.path().join("s")).unwrap().count(), 0);
    }
}
