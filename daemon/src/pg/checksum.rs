//! PostgreSQL's data page checksum (checksum_impl.h), and the check a base backup runs over each
//! chunk of a relation file it copies.
//!
//! The checksum is FNV-1a-like over the 8192-byte page read as 32 lanes of u32, each lane seeded
//! from a fixed table, two extra rounds of zeros, the lanes XOR-folded, `^ blkno`, then
//! `% 65535 + 1`, with `pd_checksum` (@8, u16) taken as zero. `blkno` is the block number in the
//! whole relation fork: block 5 of file `16384.2` is `2 * 131072 + 5` ([`absolute_block`]).
//! Example: block 0 of a freshly initdb'd `global/1260` (pg_authid) verifies against the u16
//! stored at @8, exactly as `pg_checksums --check` does.
//!
//! Invariant: only a page PostgreSQL itself would call corrupt is reported, so that checks are
//! never switched off for false alarms: new pages (`pd_upper` @14 == 0) and pages written since
//! the backup started (`pd_lsn` >= start LSN, which replay overwrites) are skipped.

use std::fmt;

use super::lsn::Lsn;

/// Size of a data page (BLCKSZ).
pub const BLCKSZ: usize = 8192;

/// Blocks in one 1 GiB relation segment file (RELSEG_SIZE).
pub const RELSEG_BLOCKS: u32 = 131_072;

const N_SUMS: usize = 32;
const FNV_PRIME: u32 = 16_777_619;

const BASE_OFFSETS: [u32; N_SUMS] = [
    0x5B1F36E9, 0xB8525960, 0x02AB50AA, 0x1DE66D2A, 0x79FF467A, 0x9BB9F8A3, 0x217E7CD2, 0x83E13D2C,
    0xF8D4474F, 0xE39EB970, 0x42C6AE16, 0x993216FA, 0x7B093B5D, 0x98DAFF3C, 0xF718902A, 0x0B1C9CDB,
    0xE58F764B, 0x187636BC, 0x5D7B3BB1, 0xE73DE7DE, 0x92BEC979, 0xCCA6C0B2, 0x304A0979, 0x85AA43D4,
    0x783125BB, 0x6CA8EAA2, 0xE407EAC6, 0x4B5CFC3E, 0x9FBF8C76, 0x15CA20BE, 0xF2CA9FD3, 0x959BD756,
];

/// A page whose stored checksum does not match its contents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadBlock {
    /// Block number in the relation fork (segment file number × 131072 + block in the file).
    pub blkno: u32,
    /// `pd_checksum` as stored on the page.
    pub stored: u16,
    /// The checksum the page's contents give.
    pub computed: u16,
}

impl fmt::Display for BadBlock {
    /// pg_checksums' wording, without the block (callers name the file and block).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (computed, stored) = (self.computed, self.stored);
        write!(
            f,
            "calculated checksum {computed:X} but block contains {stored:X}"
        )
    }
}

/// The block number PostgreSQL checksums with: `segment_file_no * 131072 + block_in_file`.
pub fn absolute_block(segment_file_no: u32, block_in_file: u32) -> u32 {
    segment_file_no
        .wrapping_mul(RELSEG_BLOCKS)
        .wrapping_add(block_in_file)
}

/// The checksum PostgreSQL would store on this page as block `blkno` of its fork.
pub fn page_checksum(page: &[u8; BLCKSZ], blkno: u32) -> u16 {
    let mut sums = BASE_OFFSETS;
    for (i, word) in page.chunks_exact(4).enumerate() {
        // pd_checksum (bytes 8..10) is the low half of the third word on a little-endian host.
        let value = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        let value = if i == 2 { value & 0xFFFF_0000 } else { value };
        mix(&mut sums[i % N_SUMS], value);
    }
    for _ in 0..2 {
        sums.iter_mut().for_each(|sum| mix(sum, 0));
    }
    let folded = sums.iter().fold(0, |acc, sum| acc ^ sum) ^ blkno;
    (folded % 65_535 + 1) as u16
}

/// Checks every whole page of `data`, whose first page is block `first_blkno` of its fork, and
/// returns those that do not match; a trailing partial page cannot be checked and is ignored.
pub fn verify_chunk(data: &[u8], first_blkno: u32, start_lsn: Lsn) -> Vec<BadBlock> {
    data.chunks_exact(BLCKSZ)
        .zip(0u32..)
        .filter_map(|(page, i)| verify_page(page, first_blkno.wrapping_add(i), start_lsn))
        .collect()
}

/// One page: skipped if new or written after `start_lsn`, else checked.
fn verify_page(page: &[u8], blkno: u32, start_lsn: Lsn) -> Option<BadBlock> {
    let page: &[u8; BLCKSZ] = page.try_into().ok()?;
    if is_new(page) || page_lsn(page) >= start_lsn {
        return None;
    }
    let stored = u16::from_le_bytes([page[8], page[9]]);
    let computed = page_checksum(page, blkno);
    (stored != computed).then_some(BadBlock {
        blkno,
        stored,
        computed,
    })
}

/// PageIsNew: `pd_upper` is zero, as on a page extended but never initialized.
fn is_new(page: &[u8; BLCKSZ]) -> bool {
    page[14] == 0 && page[15] == 0
}

/// `pd_lsn`: xlogid (high half) @0 then xrecoff @4, each a native (little-endian) u32.
fn page_lsn(page: &[u8; BLCKSZ]) -> Lsn {
    let hi = u32::from_le_bytes([page[0], page[1], page[2], page[3]]);
    let lo = u32::from_le_bytes([page[4], page[5], page[6], page[7]]);
    Lsn((u64::from(hi) << 32) | u64::from(lo))
}

/// One FNV-style round of checksum_impl.h's CHECKSUM_COMP.
fn mix(sum: &mut u32, value: u32) {
    let tmp = *sum ^ value;
    *sum = tmp.wrapping_mul(FNV_PRIME) ^ (tmp >> 17);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three pages of a real PostgreSQL 15 cluster made with `initdb -k`, as pg_checksums
    /// accepted them: block 0 of global/1260, block 1 of pgbench_accounts (base/5/16396), and
    /// block 3 of the second segment file of a 1.2 GB table (base/5/16460.1).
    fn real_pages() -> Vec<([u8; BLCKSZ], u32, u16)> {
        let packed = include_bytes!("testdata/relation_pages.zst");
        let bytes = zstd::decode_all(&packed[..]).unwrap();
        let blocks = [(0, 0xAF17), (1, 0x0A9C), (absolute_block(1, 3), 0x6A9C)];
        bytes
            .chunks_exact(BLCKSZ)
            .zip(blocks)
            .map(|(page, (blkno, stored))| (page.try_into().unwrap(), blkno, stored))
            .collect()
    }

    #[test]
    fn computes_what_postgres_stored() {
        for (page, blkno, stored) in real_pages() {
            assert_eq!(page_checksum(&page, blkno), stored, "block {blkno}");
            assert!(verify_chunk(&page, blkno, Lsn(u64::MAX)).is_empty());
        }
    }

    #[test]
    fn the_block_number_is_part_of_the_checksum() {
        let (page, _, stored) = real_pages()[2];
        assert_eq!(absolute_block(1, 3), 131_075);
        assert_ne!(
            page_checksum(&page, 3),
            stored,
            "segment file number left out"
        );
    }

    #[test]
    fn reports_a_flipped_byte_with_its_absolute_block() {
        let (mut page, blkno, stored) = real_pages()[2];
        page[4000] ^= 0x01;
        let bad = verify_chunk(&page, blkno, Lsn(u64::MAX));
        let computed = page_checksum(&page, blkno);
        assert_eq!(
            bad,
            [BadBlock {
                blkno: 131_075,
                stored,
                computed
            }]
        );
        assert_eq!(
            bad[0].to_string(),
            format!("calculated checksum {computed:X} but block contains 6A9C")
        );
    }

    #[test]
    fn skips_new_pages_and_pages_written_after_the_start() {
        let (mut page, blkno, _) = real_pages()[1];
        page[4000] ^= 0x01;
        // pd_lsn of this page is 0/13B20B50.
        assert!(verify_chunk(&page, blkno, "0/13B20B50".parse().unwrap()).is_empty());
        assert_eq!(
            verify_chunk(&page, blkno, "0/13B20B51".parse().unwrap()).len(),
            1
        );
        let mut new_page = [0u8; BLCKSZ];
        new_page[100] = 1;
        assert!(verify_chunk(&new_page, 0, Lsn(u64::MAX)).is_empty());
    }

    #[test]
    fn counts_blocks_across_a_chunk_and_ignores_a_torn_tail() {
        let pages = real_pages();
        let mut chunk: Vec<u8> = Vec::new();
        chunk.extend(pages[1].0);
        chunk.extend(pages[1].0);
        chunk.extend(&pages[1].0[..100]);
        // The same page as block 1 matches, as block 2 it does not.
        let bad = verify_chunk(&chunk, 1, Lsn(u64::MAX));
        assert_eq!(bad.iter().map(|b| b.blkno).collect::<Vec<_>>(), [2]);
    }

    /// Every page of every relation file the walker returns for `$LIFEBOAT_TEST_PGDATA` (a
    /// stopped cluster made with `initdb -k`) matches, as `pg_checksums --check` says.
    #[test]
    #[ignore = "needs LIFEBOAT_TEST_PGDATA"]
    fn every_page_of_a_real_cluster_verifies() {
        use crate::backup::walk::{relation_segment_info, walk, WalkKind};
        let pgdata = std::path::PathBuf::from(std::env::var("LIFEBOAT_TEST_PGDATA").unwrap());
        let walked = walk(&pgdata).unwrap();
        let (mut files, mut pages, mut bad) = (0, 0, Vec::new());
        for entry in &walked.entries {
            let (WalkKind::File { .. }, Some(segno)) =
                (&entry.kind, relation_segment_info(&entry.path))
            else {
                continue;
            };
            let data = std::fs::read(pgdata.join(&entry.path)).unwrap();
            let found = verify_chunk(&data, absolute_block(segno, 0), Lsn(u64::MAX));
            bad.extend(
                found
                    .into_iter()
                    .map(|b| format!("{}: block {}: {b}", entry.path, b.blkno)),
            );
            files += 1;
            pages += data.len() / BLCKSZ;
        }
        eprintln!("{files} relation files, {pages} pages");
        assert!(pages > 0);
        assert_eq!(bad, Vec::<String>::new());
    }
}
