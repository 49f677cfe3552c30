//! Fuzz target `store_scan`: the store's record decoder and block scan
//! (`rnats_core::store::record`: `decode`, `scan`) driven directly over
//! arbitrary bytes, checked against this crate's reference decoder written
//! from the documented format ([`store_record::ref_decode`]).
//!
//! `store_record` reaches the same code through a whole `FileStore` open;
//! this target skips the store, so each input costs only the scan and the
//! fuzzer spends its time on the decoder's edge cases.
//!
//! Input: 1 control byte, then one block's bytes (at most
//! [`store_record::MAX_BLOCK`]). Control bit 0: rewrite each record's crc32
//! first ([`store_record::fix_checksums`]), so mutations get past it.
//!
//! Invariants checked (beyond no panic / hang / OOM):
//! - `decode` at every offset agrees with the reference decoder: it accepts
//!   exactly the offsets the reference accepts, with the same fields and
//!   length; it never returns `Short` when the whole record is there, and
//!   never `BadChecksum { len }` with a `len` other than the header's;
//! - every accepted record re-encodes (`record::encode`) to exactly its
//!   input bytes;
//! - `scan`'s good records, skipped stretches and tail tile the block in
//!   order, without gap or overlap; each good offset decodes, each skipped
//!   stretch starts where `decode` fails and ends at a good record; a tail
//!   estimates at least one record;
//! - a block that is a clean run of records ([`store_record::clean_records`])
//!   scans as exactly those records, nothing skipped, no tail;
//! - cutting the tail (what recovery does) and scanning again gives the
//!   same good records and skipped stretches and no tail: a second open
//!   cuts nothing more.

use rnats_core::store::record::{self, DecodeError, Kind};

use crate::store_record::{self, ref_decode, RefRecord, MAX_BLOCK};

fn kind_byte(kind: Kind) -> u8 {
    kind as u8
}

/// `decode` at `offset` against the reference; returns the record length
/// when both accept.
fn check_decode(block: &[u8], offset: usize) -> Option<usize> {
    let bytes = &block[offset..];
    let reference = ref_decode(bytes);
    match (record::decode(bytes), reference) {
        (Ok(got), Some(expected)) => {
            let got = RefRecord {
                kind: kind_byte(got.kind),
                seq: got.seq,
                ts: got.ts,
                ttl: got.ttl,
                subject: got.subject.to_vec(),
                headers: got.headers.to_vec(),
                payload: got.payload.to_vec(),
                len: got.len,
            };
            assert_eq!(got, expected, "decode disagrees at offset {offset}");
            let kind = record::decode(bytes).expect("decoded above").kind;
            let mut encoded = Vec::new();
            record::encode(
                &mut encoded,
                kind,
                got.seq,
                got.ts,
                got.ttl,
                &got.subject,
                &got.headers,
                &got.payload,
            );
            assert_eq!(
                &encoded[..],
                &bytes[..got.len],
                "re-encoding differs at offset {offset}"
            );
            Some(got.len)
        }
        (Ok(got), None) => panic!("decode accepts offset {offset} ({got:?}), the reference not"),
        (Err(error), Some(expected)) => {
            panic!("decode refuses offset {offset} ({error:?}), the reference reads {expected:?}")
        }
        (Err(DecodeError::Short), None) => {
            // Short: fewer bytes than a header, or than the length claims.
            if bytes.len() >= 6 {
                let len = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes")) as usize;
                assert!(
                    len > bytes.len(),
                    "Short at {offset} with the record all there"
                );
            }
            None
        }
        (Err(DecodeError::BadChecksum { len }), None) => {
            let header = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes")) as usize;
            assert_eq!(len, header, "BadChecksum length at {offset}");
            assert!(len <= bytes.len(), "BadChecksum past the end at {offset}");
            None
        }
        (Err(DecodeError::BadHeader), None) => None,
    }
}

/// Check that `scan`'s output tiles `block`; returns it.
fn check_scan(block: &[u8]) -> record::Scan {
    let scan = record::scan(block);
    let mut pieces: Vec<(usize, usize, &str)> = Vec::new();
    for &offset in &scan.good {
        let len = record::decode(&block[offset..])
            .unwrap_or_else(|error| panic!("good offset {offset} does not decode: {error:?}"))
            .len;
        pieces.push((offset, len, "good"));
    }
    for &(offset, len) in &scan.skipped {
        assert!(len > 0, "empty skipped stretch at {offset}");
        assert!(
            record::decode(&block[offset..]).is_err(),
            "skipped stretch at {offset} starts with a good record"
        );
        assert!(
            scan.good.contains(&(offset + len)),
            "skipped stretch at {offset} does not end at a good record"
        );
        pieces.push((offset, len, "skipped"));
    }
    if let Some((offset, estimate)) = scan.tail {
        assert!(estimate >= 1, "a tail holds at least one record");
        assert!(offset < block.len(), "tail at the end of the block");
        pieces.push((offset, block.len() - offset, "tail"));
    }
    pieces.sort_unstable();
    let mut at = 0;
    for (offset, len, what) in pieces {
        assert_eq!(offset, at, "{what} piece at {offset}, expected {at}");
        at = offset + len;
    }
    assert_eq!(at, block.len(), "the pieces stop short of the end");
    scan
}

/// Run one input.
pub fn run(data: &[u8]) {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    if rest.len() > MAX_BLOCK {
        return;
    }
    let mut block = rest.to_vec();
    if control & 1 == 1 {
        store_record::fix_checksums(&mut block);
    }
    for offset in 0..block.len() {
        check_decode(&block, offset);
    }
    let scan = check_scan(&block);

    if let Some(records) = store_record::clean_records(&block) {
        assert!(scan.skipped.is_empty(), "clean block: stretch skipped");
        assert_eq!(scan.tail, None, "clean block: tail");
        let mut offset = 0;
        let mut offsets = Vec::new();
        for record in &records {
            offsets.push(offset);
            offset += record.len;
        }
        assert_eq!(scan.good, offsets, "clean block: good records");
    }

    let good_len = scan.good_len(block.len());
    let again = check_scan(&block[..good_len]);
    assert_eq!(again.good, scan.good, "rescan after the cut: good records");
    assert_eq!(again.skipped, scan.skipped, "rescan after the cut: skipped");
    assert_eq!(again.tail, None, "rescan after the cut: a tail again");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_middle_and_a_torn_tail() {
        let mut block = Vec::new();
        for seq in 1..=4 {
            store_record::encode(
                &mut block,
                store_record::MESSAGE,
                seq,
                1,
                0,
                b"a",
                b"",
                b"xy",
            );
        }
        let len = block.len() / 4;
        block[len + 40] ^= 1;
        block.truncate(block.len() - 2);
        let mut input = vec![0];
        input.extend_from_slice(&block);
        run(&input);
        let scan = record::scan(&block);
        assert_eq!(scan.good, vec![0, 2 * len]);
        assert_eq!(scan.skipped, vec![(len, len)]);
        assert_eq!(scan.tail, Some((3 * len, 1)));
    }
}
