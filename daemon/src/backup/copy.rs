//! Copying one file: read it in page-aligned chunks up to the size it had when the walk saw
//! it, verify page checksums of relation files, and hand each chunk to every repository sink.
//!
//! Files change while a non-exclusive backup runs, and WAL replay repairs them: a file that
//! vanished is skipped, one that shrank is kept as far as it was read, one that grew is copied
//! up to its walked size. A page whose checksum fails is read again once before it is reported.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::sink::Sink;
use super::BackupError;
use crate::pg::checksum;
use crate::pg::Lsn;

/// Relation files hold this many 8 KiB blocks per 1 GiB segment file.
const BLOCKS_PER_SEGMENT: u64 = 131_072;
const PAGE: u64 = 8192;

/// What copying a file produced.
#[derive(Debug)]
pub struct CopiedFile {
    /// Bytes copied.
    pub size: u64,
    /// For each sink, the chunk ids in order.
    pub chunks: Vec<Vec<String>>,
    /// Pages whose checksum failed twice, described for the operator.
    pub bad_blocks: Vec<String>,
}

/// How to check pages: the relation segment number, and the backup start (newer pages are
/// skipped because WAL replay rewrites them).
#[derive(Debug, Clone, Copy)]
pub struct PageCheck {
    /// Segment file number of the relation file (`16384.2` is 2).
    pub segno: u32,
    /// The backup's start LSN.
    pub start_lsn: Lsn,
}

/// Copies `rel` (relative to `pgdata`) into every sink; `None` if the file vanished.
pub async fn copy_file(
    pgdata: &Path,
    rel: &str,
    size: u64,
    chunk_size: u64,
    check: Option<PageCheck>,
    sinks: &mut [Sink],
) -> Result<Option<CopiedFile>, BackupError> {
    let path = pgdata.join(rel);
    let mut file = match open(&path).await? {
        Some(f) => f,
        None => return Ok(None),
    };
    let mut out = CopiedFile {
        size: 0,
        chunks: vec![Vec::new(); sinks.len()],
        bad_blocks: Vec::new(),
    };
    while out.size < size {
        let want = chunk_size.min(size - out.size);
        let (f, data) = read_chunk(file, &path, want).await?;
        file = f;
        if data.is_empty() {
            break;
        }
        if let Some(c) = check {
            out.bad_blocks
                .extend(check_pages(&path, rel, out.size, &data, c)?);
        }
        for (sink, ids) in sinks.iter_mut().zip(out.chunks.iter_mut()) {
            if sink.is_failed() {
                continue;
            }
            match sink.put_chunk(&data).await {
                Ok(id) => ids.push(id.to_hex()),
                Err(e) => sink.fail(e)?,
            }
        }
        out.size += data.len() as u64;
        if (data.len() as u64) < want {
            break;
        }
    }
    Ok(Some(out))
}

async fn open(path: &Path) -> Result<Option<File>, BackupError> {
    let p = path.to_path_buf();
    let r = tokio::task::spawn_blocking(move || File::open(&p))
        .await
        .expect("reader thread panicked");
    match r {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(BackupError::Read {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

async fn read_chunk(file: File, path: &Path, want: u64) -> Result<(File, Vec<u8>), BackupError> {
    let p: PathBuf = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut buf = Vec::with_capacity(want as usize);
        let mut f = file;
        (&mut f).take(want).read_to_end(&mut buf).map(|_| (f, buf))
    })
    .await
    .expect("reader thread panicked")
    .map_err(|source| BackupError::Read { path: p, source })
}

/// Checks the pages of a chunk at `offset`; returns descriptions of pages bad twice.
fn check_pages(
    path: &Path,
    rel: &str,
    offset: u64,
    data: &[u8],
    c: PageCheck,
) -> Result<Vec<String>, BackupError> {
    let first = c.segno as u64 * BLOCKS_PER_SEGMENT + offset / PAGE;
    let mut out = Vec::new();
    for bad in checksum::verify_chunk(data, first as u32, c.start_lsn) {
        let at = offset + (bad.blkno as u64 - first) * PAGE;
        let again = reread_page(path, at).map_err(|source| BackupError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let still_bad = again
            .as_deref()
            .is_some_and(|page| !checksum::verify_chunk(page, bad.blkno, c.start_lsn).is_empty());
        if still_bad {
            out.push(format!(
                "{rel}: block {} (absolute block {}) {}",
                at / PAGE,
                bad.blkno,
                bad
            ));
        }
    }
    Ok(out)
}

fn reread_page(path: &Path, at: u64) -> std::io::Result<Option<Vec<u8>>> {
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(at))?;
    let mut page = vec![0u8; PAGE as usize];
    match f.read_exact(&mut page) {
        Ok(()) => Ok(Some(page)),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}
