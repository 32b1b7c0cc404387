//! The long page header at the start of every WAL segment, and the checks that tie a segment file
//! to its name and to the database system it came from.
//!
//! Layout (little-endian, 40 bytes once MAXALIGN'd): @0 magic u16, @2 info u16, @4 tli u32,
//! @8 pageaddr u64, @16 rem_len u32, @24 system identifier u64, @32 segment size u32,
//! @36 XLOG_BLCKSZ u32. A PostgreSQL 15 segment `000000010000000000000007` with 16 MiB segments
//! starts `10 d1 07 00 01 00 00 00 00 00 00 07 00 00 00 00`: magic 0xD110, info 0x0007 (long
//! header, first record continued from the previous segment, backup blocks removable), tli 1,
//! pageaddr 0/7000000.
//!
//! The tli in the header is the timeline of the first record on the page, not the one in the
//! file name: when a timeline is created, PostgreSQL copies the parent's segment up to the switch
//! point into the new timeline's first segment, header included, so `000000020000000000000004`
//! can start with tli 1. A header tli above the file's timeline is always wrong.
//!
//! Invariant: a segment is stored or served only after [`validate_segment`] accepted it, so a
//! recycled file (old pageaddr), a file renamed across timelines or segments, or WAL from another
//! database system (different system identifier) never enters a repository's WAL archive.

use super::lsn::Lsn;
use super::segment::{HistoryEntry, SegmentName, TimelineId};

/// Size of the long page header as PostgreSQL lays it out (SizeOfXLogLongPHD, MAXALIGN'd).
pub const LONG_HEADER_SIZE: usize = 40;

/// WAL page size (XLOG_BLCKSZ); the only one Lifeboat reads.
pub const XLOG_BLCKSZ: u32 = 8192;

/// `xlp_info` bit: the page starts with the rest of a record from the previous page.
pub const XLP_FIRST_IS_CONTRECORD: u16 = 0x0001;

/// `xlp_info` bit: the page carries the long header.
pub const XLP_LONG_HEADER: u16 = 0x0002;

/// `XLOG_PAGE_MAGIC` of each supported major version, checked against a real 15 segment.
const MAGICS: [(u16, u32); 5] = [
    (0xD106, 13),
    (0xD10D, 14),
    (0xD110, 15),
    (0xD113, 16),
    (0xD116, 17),
];

/// The fields of a segment's long page header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// `xlp_magic`, one per PostgreSQL major version.
    pub magic: u16,
    /// The major version the magic belongs to.
    pub pg_major: u32,
    /// `xlp_info` flag bits.
    pub info: u16,
    /// Timeline of the first record on the page (can be an ancestor of the file's timeline).
    pub tli: TimelineId,
    /// `xlp_pageaddr`: the LSN of the first byte of the segment.
    pub pageaddr: Lsn,
    /// `xlp_rem_len`: bytes at the start continuing a record from the previous segment.
    pub rem_len: u32,
    /// `xlp_sysid`: the database system identifier from pg_control.
    pub system_identifier: u64,
    /// `xlp_seg_size`: the cluster's wal_segment_size.
    pub seg_size: u32,
    /// `xlp_xlog_blcksz`: the WAL page size.
    pub xlog_blcksz: u32,
}

/// Why a segment's header was rejected.
#[derive(Debug, thiserror::Error)]
pub enum WalHeaderError {
    /// Fewer bytes than a long page header.
    #[error("wal segment header needs {LONG_HEADER_SIZE} bytes but only {len} were given")]
    TooShort {
        /// Bytes given.
        len: usize,
    },
    /// The magic is not one of a supported PostgreSQL major version.
    #[error(
        "wal page magic 0x{magic:04X} is not PostgreSQL 13 to 17 (or this is not a WAL segment)"
    )]
    UnknownMagic {
        /// The magic found.
        magic: u16,
    },
    /// The first page lacks the long header flag.
    #[error("wal page info 0x{info:04X} lacks the long header flag, so this is not the start of a segment")]
    NotLongHeader {
        /// The info bits found.
        info: u16,
    },
    /// The file is not exactly one segment long.
    #[error("segment {segment} is {len} bytes but segments are {seg_size} bytes")]
    WrongLength {
        /// The segment's file name.
        segment: String,
        /// Bytes given.
        len: u64,
        /// The cluster's segment size.
        seg_size: u64,
    },
    /// The header describes another position in the WAL.
    #[error("segment {segment} should start at {expected} but its header says {found}\nhint: a recycled segment not yet rewritten, or a file renamed to the wrong segment")]
    WrongPageAddress {
        /// The segment's file name.
        segment: String,
        /// The pageaddr in the header.
        found: Lsn,
        /// The start LSN of the named segment.
        expected: Lsn,
    },
    /// The header's timeline cannot precede the file's.
    #[error("segment {segment} starts with a record on timeline {found}, which is not timeline {expected} nor one it branched from in this segment")]
    WrongTimeline {
        /// The segment's file name.
        segment: String,
        /// The tli in the header.
        found: TimelineId,
        /// The timeline in the file name.
        expected: TimelineId,
    },
    /// The header records another segment size.
    #[error(
        "segment {segment} was written with {found}-byte segments but the cluster uses {expected}"
    )]
    WrongSegmentSize {
        /// The segment's file name.
        segment: String,
        /// The size in the header.
        found: u32,
        /// The cluster's segment size.
        expected: u64,
    },
    /// The header records a WAL page size other than 8192.
    #[error("segment {segment} uses {found}-byte WAL pages; only {XLOG_BLCKSZ} is supported")]
    WrongBlockSize {
        /// The segment's file name.
        segment: String,
        /// The page size in the header.
        found: u32,
    },
    /// The segment belongs to another database system.
    #[error("segment {segment} belongs to database system {found} but this repository holds {expected}\nhint: one repository archives one cluster lineage; a re-initdb'd cluster needs a new repository")]
    WrongSystem {
        /// The segment's file name.
        segment: String,
        /// The system identifier in the header.
        found: u64,
        /// The system identifier the repository holds.
        expected: u64,
    },
}

impl WalHeaderError {
    /// Whether trying again may succeed: never, the bytes are what they are.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// The PostgreSQL major version whose WAL carries this page magic.
pub fn pg_major_for_magic(magic: u16) -> Option<u32> {
    MAGICS
        .iter()
        .find(|(m, _)| *m == magic)
        .map(|(_, major)| *major)
}

/// Parses the long page header at the start of `bytes`, checking only that it is one.
pub fn read_header(bytes: &[u8]) -> Result<SegmentHeader, WalHeaderError> {
    let head = bytes
        .get(..LONG_HEADER_SIZE)
        .ok_or(WalHeaderError::TooShort { len: bytes.len() })?;
    let magic = le_u16(head, 0);
    let pg_major = pg_major_for_magic(magic).ok_or(WalHeaderError::UnknownMagic { magic })?;
    let info = le_u16(head, 2);
    if info & XLP_LONG_HEADER == 0 {
        return Err(WalHeaderError::NotLongHeader { info });
    }
    Ok(SegmentHeader {
        magic,
        pg_major,
        info,
        tli: TimelineId(le_u32(head, 4)),
        pageaddr: Lsn(le_u64(head, 8)),
        rem_len: le_u32(head, 16),
        system_identifier: le_u64(head, 24),
        seg_size: le_u32(head, 32),
        xlog_blcksz: le_u32(head, 36),
    })
}

/// Checks that `bytes` is the whole segment `expected` of the system `system_identifier`.
///
/// A streamed partial segment, zero-padded to `seg_size`, passes: only the header is read. The
/// header tli may be lower than `expected.tli` (see the module header); callers that hold the
/// timeline history narrow that down with [`validate_timeline`].
pub fn validate_segment(
    bytes: &[u8],
    expected: SegmentName,
    seg_size: u64,
    system_identifier: Option<u64>,
) -> Result<SegmentHeader, WalHeaderError> {
    let segment = expected.file_name(seg_size);
    if bytes.len() as u64 != seg_size {
        let len = bytes.len() as u64;
        return Err(WalHeaderError::WrongLength {
            segment,
            len,
            seg_size,
        });
    }
    let header = read_header(bytes)?;
    check_layout(&header, &segment, seg_size)?;
    check_position(&header, expected, &segment, seg_size)?;
    if let Some(expected) = system_identifier.filter(|&id| id != header.system_identifier) {
        let found = header.system_identifier;
        return Err(WalHeaderError::WrongSystem {
            segment,
            found,
            expected,
        });
    }
    Ok(header)
}

/// Checks a header tli below the file's timeline against that timeline's history: it is only
/// right in the segment where the header's timeline ended and the file's timeline branched off.
pub fn validate_timeline(
    header: &SegmentHeader,
    expected: SegmentName,
    history: &[HistoryEntry],
    seg_size: u64,
) -> Result<(), WalHeaderError> {
    if header.tli == expected.tli {
        return Ok(());
    }
    let start = expected.start_lsn(seg_size);
    let end = Lsn(start.0 + seg_size);
    let branched_here = history
        .iter()
        .any(|h| h.parent == header.tli && start < h.switch_lsn && h.switch_lsn < end);
    if branched_here {
        return Ok(());
    }
    Err(WalHeaderError::WrongTimeline {
        segment: expected.file_name(seg_size),
        found: header.tli,
        expected: expected.tli,
    })
}

/// Segment and page sizes recorded in the header.
fn check_layout(
    header: &SegmentHeader,
    segment: &str,
    seg_size: u64,
) -> Result<(), WalHeaderError> {
    if u64::from(header.seg_size) != seg_size {
        return Err(WalHeaderError::WrongSegmentSize {
            segment: segment.to_string(),
            found: header.seg_size,
            expected: seg_size,
        });
    }
    if header.xlog_blcksz != XLOG_BLCKSZ {
        let found = header.xlog_blcksz;
        return Err(WalHeaderError::WrongBlockSize {
            segment: segment.to_string(),
            found,
        });
    }
    Ok(())
}

/// The header's position in the WAL: segment start and a timeline no later than the file's.
fn check_position(
    header: &SegmentHeader,
    expected: SegmentName,
    segment: &str,
    seg_size: u64,
) -> Result<(), WalHeaderError> {
    let start = expected.start_lsn(seg_size);
    if header.pageaddr != start {
        return Err(WalHeaderError::WrongPageAddress {
            segment: segment.to_string(),
            found: header.pageaddr,
            expected: start,
        });
    }
    if header.tli.0 == 0 || header.tli > expected.tli {
        return Err(WalHeaderError::WrongTimeline {
            segment: segment.to_string(),
            found: header.tli,
            expected: expected.tli,
        });
    }
    Ok(())
}

/// Little-endian u16 at `at`; the caller has checked the length.
pub(crate) fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

/// Little-endian u32 at `at`; the caller has checked the length.
pub(crate) fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Little-endian u64 at `at`; the caller has checked the length.
pub(crate) fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from(le_u32(b, at)) | (u64::from(le_u32(b, at + 4)) << 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB16: u64 = 16 * 1024 * 1024;

    /// The first 40 bytes of a real PostgreSQL 15 segment, 000000010000000000000007.
    const REAL_HEADER: [u8; 40] = [
        0x10, 0xd1, 0x07, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00,
        0x00, 0x16, 0x0b, 0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xdc, 0x18, 0x14, 0x26, 0xa6,
        0x11, 0x6b, 0x00, 0x00, 0x00, 0x01, 0x00, 0x20, 0x00, 0x00,
    ];
    const REAL_SYSID: u64 = 0x6b11_a626_1418_dc00;

    fn seg(tli: u32, segno: u64) -> SegmentName {
        SegmentName {
            tli: TimelineId(tli),
            segno,
        }
    }

    /// A zero-padded segment starting with `header`, as pg_receivewal leaves a partial file.
    fn padded(header: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0u8; MB16 as usize];
        bytes[..header.len()].copy_from_slice(header);
        bytes
    }

    #[test]
    fn reads_a_real_header() {
        let h = read_header(&REAL_HEADER).unwrap();
        assert_eq!((h.magic, h.pg_major, h.info), (0xD110, 15, 0x0007));
        assert_eq!(h.tli, TimelineId(1));
        assert_eq!(h.pageaddr.to_string(), "0/7000000");
        assert_eq!(h.rem_len, 461_590);
        assert_eq!(h.system_identifier, REAL_SYSID);
        assert_eq!((h.seg_size, h.xlog_blcksz), (MB16 as u32, 8192));
    }

    #[test]
    fn accepts_the_segment_it_names() {
        let h = validate_segment(&padded(&REAL_HEADER), seg(1, 7), MB16, Some(REAL_SYSID));
        assert_eq!(h.unwrap().pageaddr, Lsn(0x700_0000));
    }

    #[test]
    fn rejects_a_recycled_or_renamed_segment() {
        let err = validate_segment(&padded(&REAL_HEADER), seg(1, 8), MB16, None).unwrap_err();
        assert!(matches!(err, WalHeaderError::WrongPageAddress { .. }));
        assert!(err
            .to_string()
            .contains("should start at 0/8000000 but its header says 0/7000000"));
    }

    #[test]
    fn rejects_another_database_system() {
        let err = validate_segment(&padded(&REAL_HEADER), seg(1, 7), MB16, Some(7311)).unwrap_err();
        assert_eq!(
            err.to_string().lines().next().unwrap(),
            format!(
                "segment 000000010000000000000007 belongs to database system {REAL_SYSID} \
                 but this repository holds 7311"
            )
        );
    }

    #[test]
    fn header_tli_may_be_a_parent_but_never_a_child() {
        let parent = validate_segment(&padded(&REAL_HEADER), seg(2, 7), MB16, None).unwrap();
        assert_eq!(parent.tli, TimelineId(1));
        let mut child = REAL_HEADER;
        child[4] = 3;
        let err = validate_segment(&padded(&child), seg(2, 7), MB16, None).unwrap_err();
        assert!(matches!(err, WalHeaderError::WrongTimeline { .. }));
    }

    #[test]
    fn a_parent_tli_needs_the_switch_inside_the_segment() {
        let h = read_header(&REAL_HEADER).unwrap();
        let switch = |lsn| {
            [HistoryEntry {
                parent: TimelineId(1),
                switch_lsn: Lsn(lsn),
            }]
        };
        assert!(validate_timeline(&h, seg(2, 7), &switch(0x700_27A8), MB16).is_ok());
        assert!(validate_timeline(&h, seg(2, 7), &switch(0x900_0000), MB16).is_err());
        assert!(validate_timeline(&h, seg(1, 7), &[], MB16).is_ok());
    }

    #[test]
    fn rejects_wrong_sizes_and_garbage() {
        let short = validate_segment(&REAL_HEADER, seg(1, 7), MB16, None).unwrap_err();
        assert!(matches!(short, WalHeaderError::WrongLength { .. }));
        let big = validate_segment(&padded(&REAL_HEADER)[..], seg(1, 0), 2 * MB16, None);
        assert!(matches!(
            big.unwrap_err(),
            WalHeaderError::WrongLength { .. }
        ));
        let mb1 = 1024 * 1024;
        let one_mb = validate_segment(&padded(&REAL_HEADER)[..mb1], seg(1, 0x70), mb1 as u64, None);
        assert!(matches!(
            one_mb.unwrap_err(),
            WalHeaderError::WrongSegmentSize {
                found: 0x100_0000,
                ..
            }
        ));
        assert!(matches!(
            read_header(&[0u8; 40]),
            Err(WalHeaderError::UnknownMagic { magic: 0 })
        ));
        assert!(matches!(
            read_header(&REAL_HEADER[..39]),
            Err(WalHeaderError::TooShort { .. })
        ));
        let mut short_hdr = REAL_HEADER;
        short_hdr[2] = 0x05;
        assert!(matches!(
            read_header(&short_hdr),
            Err(WalHeaderError::NotLongHeader { .. })
        ));
    }

    #[test]
    fn knows_each_supported_major() {
        let majors: Vec<_> = [0xD106, 0xD10D, 0xD110, 0xD113, 0xD116, 0xD118]
            .into_iter()
            .map(pg_major_for_magic)
            .collect();
        assert_eq!(
            majors,
            [Some(13), Some(14), Some(15), Some(16), Some(17), None]
        );
    }
}
