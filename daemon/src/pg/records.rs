//! A WAL record scanner over one segment's bytes: where the valid WAL in it ends, and the commit,
//! abort and restore-point times it holds, for point-in-time targets and partial segments.
//!
//! Pages are 8192 bytes; page 0 has the 40-byte long header, the others a 24-byte short one. A
//! page's `xlp_rem_len` bytes (flag `XLP_FIRST_IS_CONTRECORD`) finish a record begun earlier.
//! Records start MAXALIGN'd (8) with a 24-byte header (`xl_tot_len`, `xl_xid`, `xl_prev`,
//! `xl_info`, `xl_rmid`, 2 pad, `xl_crc`), then block headers, then block data and main data.
//! Example, from pg_waldump of a real PostgreSQL 15 segment:
//! `rmgr: Transaction len (rec/tot): 46/46, tx: 9754, lsn: 0/0716C710, prev 0/0716C6B8, desc:
//! COMMIT 2026-12-03 17:26:17.410321 UTC` is what [`scan_commits`] reports as a commit.
//!
//! Invariant: a record counts only if every page it touches has this segment's magic and
//! pageaddr, its `xl_prev` points at the record before it, and its CRC-32C matches, the checks
//! PostgreSQL's own reader uses to find the end of WAL. So zero padding, a torn tail, or stale
//! bytes of a recycled segment end the scan; they are never read as commits.

use chrono::{DateTime, Utc};

use super::lsn::Lsn;
use super::wal_header::{self, le_u16, le_u32, le_u64, XLP_FIRST_IS_CONTRECORD, XLP_LONG_HEADER};

const PAGE: usize = wal_header::XLOG_BLCKSZ as usize;
const SHORT_HEADER_SIZE: usize = 24;
const RECORD_HEADER_SIZE: usize = 24;
/// `xlp_info` bits PostgreSQL defines (13 to 17, with XLP_FIRST_IS_OVERWRITE_CONTRECORD).
const XLP_ALL_FLAGS: u16 = 0x000F;

const RM_XLOG_ID: u8 = 0;
const RM_XACT_ID: u8 = 1;
const XLOG_SWITCH: u8 = 0x40;
const XLOG_RESTORE_POINT: u8 = 0x70;
const XLOG_XACT_OPMASK: u8 = 0x70;
const XLOG_XACT_HAS_INFO: u8 = 0x80;

/// Microseconds from the Unix epoch to PostgreSQL's, 2000-01-01 00:00 UTC.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// A transaction end (commit or abort) found in the WAL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XactEnd {
    /// Start of the commit or abort record.
    pub lsn: Lsn,
    /// `xact_time`, when the transaction ended.
    pub time: DateTime<Utc>,
    /// The transaction id; for COMMIT/ABORT PREPARED, the prepared transaction's.
    pub xid: u32,
}

/// A named restore point found in the WAL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestorePoint {
    /// Start of the restore point record.
    pub lsn: Lsn,
    /// When it was created.
    pub time: DateTime<Utc>,
    /// The name given to `pg_create_restore_point()`.
    pub name: String,
}

/// Why a scan stopped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ScanStop {
    /// A zero record length or a never-written page: nothing more was written.
    #[default]
    EndOfWal,
    /// An XLOG_SWITCH record: the rest of the segment is unused.
    Switch,
    /// The last record ended exactly at the end of the segment.
    SegmentEnd,
    /// The record starting at this LSN continues into the next segment.
    ContinuesInNextSegment(Lsn),
    /// The bytes at this LSN are not valid WAL after what came before.
    Invalid {
        /// Where the scan stopped.
        at: Lsn,
        /// What was wrong, for logs.
        reason: String,
    },
}

/// What one segment holds, for the records that start in it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanSummary {
    /// Where the next record would start after the last complete valid one (PostgreSQL's
    /// EndRecPtr); the segment end after a switch record.
    pub end_of_valid_wal: Lsn,
    /// Number of complete valid records starting in the segment.
    pub records: u64,
    /// The first commit (COMMIT or COMMIT PREPARED).
    pub first_commit: Option<XactEnd>,
    /// The last commit.
    pub last_commit: Option<XactEnd>,
    /// The first abort (ABORT or ABORT PREPARED).
    pub first_abort: Option<XactEnd>,
    /// The last abort.
    pub last_abort: Option<XactEnd>,
    /// The last restore point.
    pub last_restore_point: Option<RestorePoint>,
    /// Why the scan stopped.
    pub stop: ScanStop,
}

/// A complete record that passed every check.
struct Record<'a> {
    bytes: &'a [u8],
    lsn: Lsn,
    pg_major: u32,
}

/// What a record means to Lifeboat.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Event {
    Commit(XactEnd),
    Abort(XactEnd),
    RestorePoint(RestorePoint),
    Other,
}

/// Scans the records starting in one segment (`bytes`, normally `wal_segment_size` long and
/// zero-padded if partial) whose first byte is at `seg_start`.
pub fn scan_commits(bytes: &[u8], seg_start: Lsn) -> ScanSummary {
    let mut summary = ScanSummary::default();
    let (stop, end) = scan_records(bytes, seg_start, |record| summary.note(decode(record)));
    summary.stop = stop;
    summary.end_of_valid_wal = end;
    summary
}

impl ScanSummary {
    /// Takes in one valid record.
    fn note(&mut self, event: Event) {
        self.records += 1;
        match event {
            Event::Commit(x) => {
                self.first_commit.get_or_insert(x);
                self.last_commit = Some(x);
            }
            Event::Abort(x) => {
                self.first_abort.get_or_insert(x);
                self.last_abort = Some(x);
            }
            Event::RestorePoint(rp) => self.last_restore_point = Some(rp),
            Event::Other => {}
        }
    }
}

/// Calls `on_record` for each valid record starting in the segment; returns why the scan
/// stopped and where the next record would have started.
fn scan_records(
    bytes: &[u8],
    seg_start: Lsn,
    mut on_record: impl FnMut(&Record<'_>),
) -> (ScanStop, Lsn) {
    let seg = match Segment::open(bytes, seg_start) {
        Ok(seg) => seg,
        Err(stop) => return (stop, seg_start),
    };
    let mut pos = match seg.first_record() {
        Ok(pos) => pos,
        Err(stop) => return (stop, seg_start),
    };
    let mut prev = None;
    loop {
        let (start, record, end) = match seg.record_at(pos, prev) {
            Ok(found) => found,
            Err(stop) => return (stop, seg.lsn(pos)),
        };
        let (lsn, pg_major) = (seg.lsn(start), seg.pg_major);
        on_record(&Record {
            bytes: &record,
            lsn,
            pg_major,
        });
        if is_switch(&record) {
            return (ScanStop::Switch, seg.lsn(bytes.len()));
        }
        prev = Some(start);
        pos = align8(end);
    }
}

/// The parts of a WAL page header the scanner checks.
struct PageHeader {
    info: u16,
    rem_len: u32,
    size: usize,
}

/// One segment's bytes, with what page 0 says about all its pages.
struct Segment<'a> {
    bytes: &'a [u8],
    start: Lsn,
    magic: u16,
    pg_major: u32,
}

impl<'a> Segment<'a> {
    /// Reads page 0's long header; a segment without one holds no records we can trust.
    fn open(bytes: &'a [u8], start: Lsn) -> Result<Segment<'a>, ScanStop> {
        if bytes
            .get(..SHORT_HEADER_SIZE)
            .is_some_and(|h| h.iter().all(|&b| b == 0))
        {
            return Err(ScanStop::EndOfWal);
        }
        let header = wal_header::read_header(bytes).map_err(|e| invalid(start, e.to_string()))?;
        let seg = Segment {
            bytes,
            start,
            magic: header.magic,
            pg_major: header.pg_major,
        };
        seg.page_header(0)?;
        Ok(seg)
    }

    /// The LSN of a byte offset in the segment.
    fn lsn(&self, offset: usize) -> Lsn {
        Lsn(self.start.0 + offset as u64)
    }

    /// Checks the header of the page at `offset`: this segment's magic and the page's address.
    fn page_header(&self, offset: usize) -> Result<PageHeader, ScanStop> {
        let at = self.lsn(offset);
        let head = self
            .bytes
            .get(offset..offset + SHORT_HEADER_SIZE)
            .ok_or(ScanStop::EndOfWal)?;
        if head.iter().all(|&b| b == 0) {
            return Err(ScanStop::EndOfWal);
        }
        let (magic, info, pageaddr) = (le_u16(head, 0), le_u16(head, 2), Lsn(le_u64(head, 8)));
        if magic != self.magic || info & !XLP_ALL_FLAGS != 0 {
            return Err(invalid(
                at,
                format!("page magic 0x{magic:04X}, info 0x{info:04X}"),
            ));
        }
        if pageaddr != at {
            return Err(invalid(
                at,
                format!("page says it is at {pageaddr} (stale or recycled)"),
            ));
        }
        let size = if info & XLP_LONG_HEADER != 0 {
            wal_header::LONG_HEADER_SIZE
        } else {
            SHORT_HEADER_SIZE
        };
        Ok(PageHeader {
            info,
            rem_len: le_u32(head, 16),
            size,
        })
    }

    /// Offset of the first record starting in the segment, after the tail of one begun earlier;
    /// the segment end if that tail fills the whole segment.
    fn first_record(&self) -> Result<usize, ScanStop> {
        let mut header = self.page_header(0)?;
        if header.info & XLP_FIRST_IS_CONTRECORD == 0 {
            return Ok(header.size);
        }
        let (mut page, mut rem) = (0, header.rem_len as usize);
        while rem > PAGE - header.size {
            rem -= PAGE - header.size;
            page += PAGE;
            if page >= self.bytes.len() {
                return Ok(self.bytes.len());
            }
            header = self.page_header(page)?;
            if header.info & XLP_FIRST_IS_CONTRECORD == 0 || header.rem_len as usize != rem {
                return Err(invalid(
                    self.lsn(page),
                    "page breaks the record continued from before",
                ));
            }
        }
        Ok(page + header.size + align8(rem))
    }

    /// The record at the record boundary `pos` (after a page header if `pos` starts a page), with
    /// its start offset, if it is complete and valid and follows the record at `prev`.
    fn record_at(
        &self,
        pos: usize,
        prev: Option<usize>,
    ) -> Result<(usize, Vec<u8>, usize), ScanStop> {
        if pos >= self.bytes.len() {
            return Err(ScanStop::SegmentEnd);
        }
        let start = if pos.is_multiple_of(PAGE) {
            self.page_start(pos)?
        } else {
            pos
        };
        let tot_len = match self.bytes.get(start..start + 4) {
            Some(b) => le_u32(b, 0) as usize,
            None => return Err(ScanStop::SegmentEnd),
        };
        if tot_len == 0 {
            return Err(ScanStop::EndOfWal);
        }
        if tot_len < RECORD_HEADER_SIZE {
            return Err(invalid(self.lsn(start), format!("record length {tot_len}")));
        }
        let (record, end) = self.gather(start, tot_len)?;
        check_record(&record, self.lsn(start), prev.map(|p| self.lsn(p)))?;
        Ok((start, record, end))
    }

    /// Offset of the first record on the page at `pos`, which must not continue an earlier one.
    fn page_start(&self, pos: usize) -> Result<usize, ScanStop> {
        let header = self.page_header(pos)?;
        if header.info & XLP_FIRST_IS_CONTRECORD != 0 {
            let reason = "page continues a record that already ended".to_string();
            return Err(invalid(self.lsn(pos), reason));
        }
        Ok(pos + header.size)
    }

    /// Copies `len` record bytes from `start`, skipping the headers of the pages it runs into;
    /// returns them and the offset just past the last one.
    fn gather(&self, start: usize, len: usize) -> Result<(Vec<u8>, usize), ScanStop> {
        let mut out = Vec::with_capacity(len.min(self.bytes.len()));
        let mut at = start;
        while out.len() < len {
            if at >= self.bytes.len() {
                return Err(ScanStop::ContinuesInNextSegment(self.lsn(start)));
            }
            if at.is_multiple_of(PAGE) {
                at += self.continuation(at, len - out.len(), start)?;
            }
            let page_end = ((at / PAGE + 1) * PAGE).min(self.bytes.len());
            let take = (len - out.len()).min(page_end - at);
            out.extend_from_slice(&self.bytes[at..at + take]);
            at += take;
        }
        Ok((out, at))
    }

    /// Checks that the page at `offset` continues the record at `start` with `remaining` bytes,
    /// and returns its header size.
    fn continuation(
        &self,
        offset: usize,
        remaining: usize,
        start: usize,
    ) -> Result<usize, ScanStop> {
        let header = self.page_header(offset).map_err(|stop| match stop {
            ScanStop::EndOfWal => invalid(self.lsn(start), "record cut off by an unwritten page"),
            other => other,
        })?;
        if header.info & XLP_FIRST_IS_CONTRECORD == 0 || header.rem_len as usize != remaining {
            let reason = format!("page at {} does not continue this record", self.lsn(offset));
            return Err(invalid(self.lsn(start), reason));
        }
        Ok(header.size)
    }
}

/// Checks the back link and the CRC of a complete record at `lsn`.
fn check_record(record: &[u8], lsn: Lsn, prev: Option<Lsn>) -> Result<(), ScanStop> {
    let xl_prev = Lsn(le_u64(record, 8));
    if let Some(expected) = prev.filter(|&p| p != xl_prev) {
        let reason = format!("xl_prev is {xl_prev}, not the previous record {expected}");
        return Err(invalid(lsn, reason));
    }
    let crc = !crc32c(crc32c(!0, &record[RECORD_HEADER_SIZE..]), &record[..20]);
    if crc != le_u32(record, 20) {
        return Err(invalid(lsn, "record crc mismatch"));
    }
    Ok(())
}

/// An XLOG_SWITCH record: PostgreSQL writes nothing more in its segment.
fn is_switch(record: &[u8]) -> bool {
    record[17] == RM_XLOG_ID && record[16] & 0xF0 == XLOG_SWITCH
}

/// What a record means; one we cannot decode counts as `Other`.
fn decode(record: &Record<'_>) -> Event {
    let (info, rmid, lsn) = (record.bytes[16], record.bytes[17], record.lsn);
    let Some(main) = main_data(record.bytes, record.pg_major) else {
        return Event::Other;
    };
    match rmid {
        RM_XACT_ID => decode_xact(info, main, lsn, le_u32(record.bytes, 4)),
        RM_XLOG_ID if info & 0xF0 == XLOG_RESTORE_POINT => decode_restore_point(main, lsn),
        _ => Event::Other,
    }
}

/// A COMMIT, COMMIT PREPARED, ABORT or ABORT PREPARED record's main data.
fn decode_xact(info: u8, main: &[u8], lsn: Lsn, header_xid: u32) -> Event {
    let op = info & XLOG_XACT_OPMASK;
    let (is_commit, prepared) = match op {
        0x00 => (true, false),
        0x30 => (true, true),
        0x20 => (false, false),
        0x40 => (false, true),
        _ => return Event::Other,
    };
    let Some(time) = main.get(..8).and_then(pg_time) else {
        return Event::Other;
    };
    let twophase = prepared
        .then(|| twophase_xid(info, main, is_commit))
        .flatten();
    let end = XactEnd {
        lsn,
        time,
        xid: twophase.unwrap_or(header_xid),
    };
    if is_commit {
        Event::Commit(end)
    } else {
        Event::Abort(end)
    }
}

/// `xl_restore_point`: rp_time then a NUL-padded 64-byte name.
fn decode_restore_point(main: &[u8], lsn: Lsn) -> Event {
    let (Some(time), Some(raw)) = (main.get(..8).and_then(pg_time), main.get(8..72)) else {
        return Event::Other;
    };
    let name = raw.split(|&b| b == 0).next().unwrap_or_default();
    let name = String::from_utf8_lossy(name).into_owned();
    Event::RestorePoint(RestorePoint { lsn, time, name })
}

/// The prepared transaction's xid in xl_xact_commit/abort, after the optional sections that
/// ParseCommitRecord and ParseAbortRecord skip (dropped stats exist from 15 on; an older record
/// never sets that bit).
fn twophase_xid(info: u8, main: &[u8], is_commit: bool) -> Option<u32> {
    const DBINFO: u32 = 1 << 0;
    const SUBXACTS: u32 = 1 << 1;
    const RELFILENODES: u32 = 1 << 2;
    const INVALS: u32 = 1 << 3;
    const TWOPHASE: u32 = 1 << 4;
    const DROPPED_STATS: u32 = 1 << 8;
    let mut at = 8;
    let xinfo = if info & XLOG_XACT_HAS_INFO != 0 {
        read_u32(main, &mut at)?
    } else {
        0
    };
    let counted = |at: &mut usize, each: usize| -> Option<()> {
        let n = read_u32(main, at)? as usize;
        *at = at.checked_add(n.checked_mul(each)?)?;
        Some(())
    };
    if xinfo & DBINFO != 0 {
        at += 8;
    }
    if xinfo & SUBXACTS != 0 {
        counted(&mut at, 4)?;
    }
    if xinfo & RELFILENODES != 0 {
        counted(&mut at, 12)?;
    }
    if xinfo & DROPPED_STATS != 0 {
        counted(&mut at, 12)?;
    }
    if is_commit && xinfo & INVALS != 0 {
        counted(&mut at, 16)?;
    }
    (xinfo & TWOPHASE != 0)
        .then(|| read_u32(main, &mut at))
        .flatten()
}

/// The main data of a record, found by walking the block headers as DecodeXLogRecord does;
/// `None` unless headers, block data and main data add up to the record's length exactly.
fn main_data(record: &[u8], pg_major: u32) -> Option<&[u8]> {
    let (mut at, mut block_data, mut main_len) = (RECORD_HEADER_SIZE, 0usize, 0usize);
    while record.len().checked_sub(at)? > block_data {
        let id = *record.get(at)?;
        at += 1;
        match id {
            255 => {
                main_len = usize::from(*record.get(at)?);
                at += 1;
                break;
            }
            254 => {
                main_len = read_u32(record, &mut at)? as usize;
                break;
            }
            253 => at += 2,
            252 => at += 4,
            0..=32 => {
                let (header_len, data_len) = block_header(record.get(at..)?, pg_major)?;
                at += header_len;
                block_data += data_len;
            }
            _ => return None,
        }
    }
    let main_start = at.checked_add(block_data)?;
    (main_start.checked_add(main_len)? == record.len()).then(|| &record[main_start..])
}

/// Length of a block reference header after its id byte, and of the data it announces.
fn block_header(b: &[u8], pg_major: u32) -> Option<(usize, usize)> {
    const HAS_IMAGE: u8 = 0x10;
    const SAME_REL: u8 = 0x80;
    const HAS_HOLE: u8 = 0x01;
    let fork_flags = *b.first()?;
    let mut len = 3;
    let mut data = usize::from(le_u16(b.get(..3)?, 1));
    if fork_flags & HAS_IMAGE != 0 {
        let image = b.get(len..len + 5)?;
        let bimg_info = image[4];
        data += usize::from(le_u16(image, 0));
        len += 5;
        if image_compressed(bimg_info, pg_major) && bimg_info & HAS_HOLE != 0 {
            len += 2;
        }
    }
    if fork_flags & SAME_REL == 0 {
        len += 12;
    }
    len += 4;
    b.get(..len)?;
    Some((len, data))
}

/// Whether `bimg_info` marks a compressed image: one bit before 15, a method bit since.
fn image_compressed(bimg_info: u8, pg_major: u32) -> bool {
    if pg_major >= 15 {
        bimg_info & 0x1C != 0
    } else {
        bimg_info & 0x02 != 0
    }
}

/// A little-endian u32 at `*at`, advancing it.
fn read_u32(b: &[u8], at: &mut usize) -> Option<u32> {
    let v = le_u32(b.get(*at..*at + 4)?, 0);
    *at += 4;
    Some(v)
}

/// A PostgreSQL TimestampTz (µs since 2000-01-01 UTC) as a time.
fn pg_time(raw: &[u8]) -> Option<DateTime<Utc>> {
    let micros = le_u64(raw, 0) as i64;
    DateTime::from_timestamp_micros(micros.checked_add(PG_EPOCH_MICROS)?)
}

fn invalid(at: Lsn, reason: impl Into<String>) -> ScanStop {
    ScanStop::Invalid {
        at,
        reason: reason.into(),
    }
}

fn align8(n: usize) -> usize {
    (n + 7) & !7
}

/// CRC-32C (Castagnoli), the WAL record checksum, one table lookup a byte.
/// An XLOG_SWITCH record (header only, valid CRC), for tests that need a complete segment.
#[cfg(test)]
pub(crate) fn switch_record(prev: Lsn) -> [u8; 24] {
    let mut r = [0u8; 24];
    r[0..4].copy_from_slice(&24u32.to_le_bytes());
    r[8..16].copy_from_slice(&prev.0.to_le_bytes());
    r[16] = 0x40;
    let crc = !crc32c(!0, &r[..20]);
    r[20..24].copy_from_slice(&crc.to_le_bytes());
    r
}

fn crc32c(crc: u32, data: &[u8]) -> u32 {
    data.iter().fold(crc, |c, &b| {
        CRC32C_TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8)
    })
}

const CRC32C_TABLE: [u32; 256] = crc32c_table();

const fn crc32c_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82F6_3B78
            } else {
                c >> 1
            };
            bit += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::segment::{SegmentName, TimelineId};
    use crate::pg::wal_header::{validate_segment, validate_timeline};

    const MB16: u64 = 16 * 1024 * 1024;

    /// A real PostgreSQL 15 segment: it starts with the tail of a 1 MB logical message, then
    /// holds commits, aborts, two-phase commits and aborts, restore points, full-page images
    /// crossing pages, and ends with pg_switch_wal().
    fn segment_7() -> Vec<u8> {
        let packed = include_bytes!("testdata/000000010000000000000007.zst");
        zstd::decode_all(&packed[..]).unwrap()
    }

    /// The first segment of timeline 2 after a promotion at 0/A0027A8, as the promoted server
    /// left it: page 0 still says tli 1, and page 2 holds stale bytes.
    fn segment_2_a() -> Vec<u8> {
        let packed = include_bytes!("testdata/00000002000000000000000A.zst");
        zstd::decode_all(&packed[..]).unwrap()
    }

    fn lsn(s: &str) -> Lsn {
        s.parse().unwrap()
    }

    fn time(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn xact(at: &str, when: &str, xid: u32) -> XactEnd {
        XactEnd {
            lsn: lsn(at),
            time: time(&format!("2026-12-03T17:26:17.{when}Z")),
            xid,
        }
    }

    fn events(bytes: &[u8], start: Lsn) -> Vec<Event> {
        let mut out = Vec::new();
        scan_records(bytes, start, |r| out.push(decode(r)));
        out.retain(|e| *e != Event::Other);
        out
    }

    #[test]
    fn finds_what_pg_waldump_finds() {
        let s = scan_commits(&segment_7(), lsn("0/7000000"));
        assert_eq!(s.records, 387);
        assert_eq!(s.first_commit, Some(xact("0/716C710", "410321", 9754)));
        assert_eq!(s.last_commit, Some(xact("0/71886B8", "418751", 9766)));
        assert_eq!(s.first_abort, Some(xact("0/716C7C8", "411174", 9755)));
        assert_eq!(s.last_abort, Some(xact("0/716CB30", "412574", 9757)));
        let rp = s.last_restore_point.unwrap();
        assert_eq!(
            (rp.lsn, rp.name.as_str()),
            (lsn("0/71885D0"), "lifeboat-rp-2")
        );
        assert!(time("2026-12-03T17:26:17.418120Z") < rp.time);
        assert!(rp.time < time("2026-12-03T17:26:17.418751Z"));
        assert_eq!(s.stop, ScanStop::Switch);
        assert_eq!(s.end_of_valid_wal, lsn("0/8000000"));
    }

    #[test]
    fn every_record_decodes_to_its_exact_length() {
        let mut undecodable = 0;
        scan_records(&segment_7(), lsn("0/7000000"), |r| {
            undecodable += usize::from(main_data(r.bytes, r.pg_major).is_none());
        });
        assert_eq!(undecodable, 0);
    }

    #[test]
    fn compressed_images_with_a_hole_changed_layout_in_15() {
        // Block 0 with an lz4-compressed image (HAS_HOLE | COMPRESS_LZ4 = 0x09, read on 14 as
        // HAS_HOLE | APPLY), which on 15 carries a hole length; then 3 bytes of main data.
        let mut record = vec![0u8; RECORD_HEADER_SIZE];
        record.extend([0, 0x10, 0, 0]); // id 0, HAS_IMAGE, no block data
        record.extend([5, 0, 64, 0, 0x09, 32, 0]); // 5-byte image, hole at 64, 32 bytes long
        record.extend([0u8; 12 + 4]); // relfilenode, block number
        record.extend([255, 3]); // main data, 3 bytes
        record.extend([1, 2, 3, 4, 5, 7, 8, 9]);
        assert_eq!(main_data(&record, 15), Some(&[7u8, 8, 9][..]));
        assert_eq!(main_data(&record, 14), None);
    }

    #[test]
    fn prepared_transactions_report_their_own_xid() {
        let found = events(&segment_7(), lsn("0/7000000"));
        let xids: Vec<_> = found
            .iter()
            .filter_map(|e| match e {
                Event::Commit(x) | Event::Abort(x) => Some((x.lsn.to_string(), x.xid)),
                _ => None,
            })
            .collect();
        let expected = [
            ("0/716C710", 9754),
            ("0/716C7C8", 9755),
            ("0/716C970", 9756),
            ("0/716CB30", 9757),
            ("0/716CCF8", 9758),
            ("0/71855E0", 9761),
            ("0/71857B8", 9762),
            ("0/71863D8", 9763),
            ("0/7187A18", 9764),
            ("0/71883F8", 9765),
            ("0/71886B8", 9766),
        ];
        assert_eq!(xids, expected.map(|(l, x)| (l.to_string(), x)));
    }

    #[test]
    fn a_partial_segment_ends_before_the_torn_record() {
        let mut bytes = segment_7();
        bytes[0x16C900..].fill(0);
        let s = scan_commits(&bytes, lsn("0/7000000"));
        assert_eq!(s.end_of_valid_wal, lsn("0/716C878"));
        assert_eq!(s.last_commit.map(|x| x.xid), Some(9754));
        assert_eq!(s.last_abort.map(|x| x.xid), Some(9755));
        assert!(matches!(s.stop, ScanStop::Invalid { at, .. } if at == lsn("0/716C878")));
    }

    #[test]
    fn a_partial_segment_cut_at_a_page_ends_at_the_last_whole_record() {
        let mut bytes = segment_7();
        bytes[0x16E000..].fill(0);
        let s = scan_commits(&bytes, lsn("0/7000000"));
        assert_eq!(
            s.last_restore_point.map(|rp| rp.name),
            Some("lifeboat-rp-1".into())
        );
        assert!(s.end_of_valid_wal <= lsn("0/716E000"));
        assert!(matches!(
            s.stop,
            ScanStop::Invalid { .. } | ScanStop::EndOfWal
        ));
    }

    #[test]
    fn stops_at_a_broken_back_link() {
        let mut bytes = segment_7();
        bytes[0x16C7C8 + 8] ^= 0x08;
        let s = scan_commits(&bytes, lsn("0/7000000"));
        assert_eq!(s.end_of_valid_wal, lsn("0/716C7C8"));
        assert!(matches!(&s.stop, ScanStop::Invalid { reason, .. } if reason.contains("xl_prev")));
        assert_eq!(s.first_abort, None);
    }

    #[test]
    fn stops_at_a_stale_page() {
        let mut bytes = segment_7();
        bytes.copy_within(0x16C000..0x16E000, 0x16E000);
        let s = scan_commits(&bytes, lsn("0/7000000"));
        let ScanStop::Invalid { reason, .. } = s.stop else {
            panic!("{:?}", s.stop)
        };
        assert!(reason.contains("0/716C000") || reason.contains("does not continue"));
    }

    #[test]
    fn a_segment_that_is_all_continuation_has_no_records() {
        let bytes = &segment_7()[..8 * PAGE];
        let s = scan_commits(bytes, lsn("0/7000000"));
        assert_eq!((s.records, s.stop), (0, ScanStop::SegmentEnd));
        assert_eq!(s.end_of_valid_wal, lsn("0/7010000"));
    }

    #[test]
    fn an_empty_or_foreign_segment_has_no_records() {
        let zeros = scan_commits(&[0u8; 2 * PAGE], lsn("0/7000000"));
        assert_eq!((zeros.records, zeros.stop), (0, ScanStop::EndOfWal));
        let moved = scan_commits(&segment_7(), lsn("0/8000000"));
        assert!(matches!(moved.stop, ScanStop::Invalid { .. }));
        assert_eq!(moved.records, 0);
    }

    #[test]
    fn the_first_segment_of_a_new_timeline() {
        let bytes = segment_2_a();
        let seg = SegmentName {
            tli: TimelineId(2),
            segno: 0xA,
        };
        let header = validate_segment(&bytes, seg, MB16, Some(0x6b11_a626_1418_dc00)).unwrap();
        assert_eq!(header.tli, TimelineId(1));
        let history = crate::pg::segment::parse_history("1\t0/A0027A8\tno recovery target\n");
        assert!(validate_timeline(&header, seg, &history.unwrap(), MB16).is_ok());
        let s = scan_commits(&bytes, lsn("0/A000000"));
        assert_eq!(s.records, 8);
        assert_eq!(
            s.last_commit.map(|x| (x.lsn, x.xid)),
            Some((lsn("0/A002778"), 9767))
        );
        assert_eq!(
            (s.end_of_valid_wal, s.stop),
            (lsn("0/A002938"), ScanStop::EndOfWal)
        );
    }

    /// Every segment in `$LIFEBOAT_TEST_WAL_DIR` (a stopped cluster's pg_wal, say) against
    /// `$LIFEBOAT_PG_BIN/pg_waldump`: the same record count and the same commits and aborts, with
    /// LSNs, xids and times.
    #[test]
    #[ignore = "needs LIFEBOAT_TEST_WAL_DIR and LIFEBOAT_PG_BIN"]
    fn matches_pg_waldump_on_a_real_cluster() {
        let dir = std::path::PathBuf::from(std::env::var("LIFEBOAT_TEST_WAL_DIR").unwrap());
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.unwrap().file_name().into_string().ok())
            .filter(|n| SegmentName::parse(n, MB16).is_some())
            .collect();
        names.sort();
        let mut checked = 0;
        for name in names {
            let seg = SegmentName::parse(&name, MB16).unwrap();
            let bytes = std::fs::read(dir.join(&name)).unwrap();
            if validate_segment(&bytes, seg, MB16, None).is_err() {
                continue; // recycled and not yet rewritten
            }
            let start = seg.start_lsn(MB16);
            let summary = scan_commits(&bytes, start);
            let spill = match summary.stop {
                ScanStop::ContinuesInNextSegment(at) => at,
                _ => Lsn(u64::MAX),
            };
            let (count, theirs) = pg_waldump(&dir.join(&name), spill);
            let (mut ours, mut undecodable) = (Vec::new(), 0);
            scan_records(&bytes, start, |r| {
                undecodable += usize::from(main_data(r.bytes, r.pg_major).is_none());
                if let Event::Commit(x) | Event::Abort(x) = decode(r) {
                    ours.push(x);
                }
            });
            assert_eq!(summary.records, count, "{name}: {:?}", summary.stop);
            assert_eq!(ours, theirs, "{name}");
            assert_eq!(undecodable, 0, "{name}: block headers misread");
            checked += 1;
        }
        assert!(checked > 0);
        eprintln!("{checked} segments match pg_waldump");
    }

    /// Records and transaction ends pg_waldump prints for one segment, before `spill`.
    fn pg_waldump(file: &std::path::Path, spill: Lsn) -> (u64, Vec<XactEnd>) {
        let bin = std::env::var("LIFEBOAT_PG_BIN").unwrap();
        let out = std::process::Command::new(format!("{bin}/pg_waldump"))
            .arg(file)
            .env("TZ", "UTC")
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<_> = text
            .lines()
            .filter(|l| l.starts_with("rmgr:"))
            .filter(|l| field(l, "lsn: ").parse::<Lsn>().unwrap() < spill)
            .collect();
        (
            lines.len() as u64,
            lines.iter().filter_map(|l| waldump_xact(l)).collect(),
        )
    }

    fn field<'a>(line: &'a str, key: &str) -> &'a str {
        let rest = &line[line.find(key).unwrap() + key.len()..];
        rest.split(',').next().unwrap().trim()
    }

    fn waldump_xact(line: &str) -> Option<XactEnd> {
        let desc = &line[line.find("desc: ")? + 6..];
        let (op, rest) = desc.split_once(' ')?;
        let (xid, rest) = match op {
            "COMMIT" | "ABORT" => (field(line, "tx: ").parse().unwrap(), rest),
            "COMMIT_PREPARED" | "ABORT_PREPARED" => {
                let (xid, rest) = rest.split_once(": ")?;
                (xid.parse().unwrap(), rest)
            }
            _ => return None,
        };
        let stamp = rest.get(..rest.find(" UTC")?)?;
        let time = chrono::NaiveDateTime::parse_from_str(stamp, "%Y-%m-%d %H:%M:%S%.f").unwrap();
        let lsn = field(line, "lsn: ").parse().unwrap();
        Some(XactEnd {
            lsn,
            time: time.and_utc(),
            xid,
        })
    }

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        assert_eq!(!crc32c(!0, b"123456789"), 0xE306_9283);
    }
}
