//! The hot-segment record format: round trips, damage detection, and the scanner's verdicts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ipfrs_tiering::segment::record::{HEADER_LEN, MAGIC, MAX_KEY_LEN, VERSION};
use ipfrs_tiering::segment::{
    Alignment, Decoded, LengthField, Payload, RecordError, ScanEnd, Scanner, decode, encode_at,
    encode_into, encoded_len,
};
use proptest::prelude::*;
use xxhash_rust::xxh3::xxh3_64;

fn align(bytes: usize) -> Alignment {
    Alignment::new(bytes).unwrap()
}

/// An owned record to encode and compare against what is decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rec {
    seq: u64,
    key: Vec<u8>,
    /// `None` for a tombstone.
    data: Option<Vec<u8>>,
}

impl Rec {
    fn payload(&self) -> Payload<'_> {
        match &self.data {
            Some(d) => Payload::Data(d),
            None => Payload::Tombstone,
        }
    }

    fn matches(&self, d: &Decoded<'_>) -> bool {
        d.seq == self.seq && d.key == self.key.as_slice() && d.payload == self.payload()
    }

    fn encode(&self, buf: &mut Vec<u8>, a: Alignment) -> usize {
        encode_into(buf, self.seq, &self.key, self.payload(), a).unwrap()
    }
}

/// A record built by hand from the documented layout, independent of the encoder, with any
/// header values (valid or not) and a correct checksum over them, unpadded.
fn raw_record(
    version: u8,
    flags: u8,
    key: &[u8],
    payload_len: u32,
    data: &[u8],
    seq: u64,
) -> Vec<u8> {
    let mut fields = Vec::new();
    fields.extend_from_slice(&MAGIC.to_le_bytes());
    fields.push(version);
    fields.push(flags);
    fields.extend_from_slice(&(key.len() as u16).to_le_bytes());
    fields.extend_from_slice(&payload_len.to_le_bytes());
    fields.extend_from_slice(&seq.to_le_bytes());
    let mut covered = fields.clone();
    covered.extend_from_slice(key);
    covered.extend_from_slice(data);
    let mut out = fields;
    out.extend_from_slice(&xxh3_64(&covered).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(data);
    out
}

fn pad_to(mut bytes: Vec<u8>, a: Alignment) -> Vec<u8> {
    let len = a.round_up(bytes.len()).unwrap();
    bytes.resize(len, 0);
    bytes
}

fn rec_strategy(max_payload: usize) -> impl Strategy<Value = Rec> {
    (
        any::<u64>(),
        prop::collection::vec(any::<u8>(), 1..=70),
        prop::option::weighted(0.85, prop::collection::vec(any::<u8>(), 0..=max_payload)),
    )
        .prop_map(|(seq, key, data)| Rec { seq, key, data })
}

fn align_strategy() -> impl Strategy<Value = Alignment> {
    prop::sample::select(vec![1usize, 2, 8, 64, 512, 4096]).prop_map(align)
}

/// A few records of different shapes, for the exhaustive damage tests.
fn sample_records() -> Vec<Rec> {
    vec![
        Rec {
            seq: 1,
            key: vec![0x12, 0x20, 0xaa, 0xbb, 0xcc],
            data: Some(b"hello, segment".to_vec()),
        },
        Rec {
            seq: u64::MAX - 3,
            key: vec![0x1e; 34],
            data: None,
        },
        Rec {
            seq: 0,
            key: vec![0x00],
            data: Some(Vec::new()),
        },
        Rec {
            seq: 42,
            key: (0..=255u8).collect(),
            data: Some((0..300u32).map(|i| (i * 7) as u8).collect()),
        },
    ]
}

// ---------------------------------------------------------------------------------------------
// Format pinning

#[test]
fn encoding_matches_the_documented_layout_byte_for_byte() {
    let a = align(64);
    let key = [0x12, 0x20, 0x01, 0x02];
    let data = b"abc";
    let mut buf = Vec::new();
    let len = encode_into(
        &mut buf,
        0x0102_0304_0506_0708,
        &key,
        Payload::Data(data),
        a,
    )
    .unwrap();
    assert_eq!(len, 64);
    assert_eq!(len, encoded_len(key.len(), data.len(), a));

    let expected = pad_to(raw_record(1, 0, &key, 3, data, 0x0102_0304_0506_0708), a);
    assert_eq!(buf, expected);
    // Spot-check the fixed fields by position, so a change to raw_record cannot hide a change.
    assert_eq!(&buf[0..4], b"IPFr");
    assert_eq!(buf[4], 1);
    assert_eq!(buf[5], 0);
    assert_eq!(&buf[6..8], &[4, 0]);
    assert_eq!(&buf[8..12], &[3, 0, 0, 0]);
    assert_eq!(&buf[12..20], &[8, 7, 6, 5, 4, 3, 2, 1]);
    assert_eq!(&buf[28..32], &key);
    assert_eq!(&buf[32..35], data);
    assert!(buf[35..].iter().all(|&b| b == 0));

    let mut tomb = Vec::new();
    encode_into(&mut tomb, 9, &key, Payload::Tombstone, a).unwrap();
    assert_eq!(tomb, pad_to(raw_record(1, 1, &key, 0, &[], 9), a));
}

#[test]
fn hand_built_records_decode() {
    let a = align(8);
    let raw = pad_to(raw_record(VERSION, 0, b"key", 4, b"data", 77), a);
    let d = decode(&raw, 0, a).unwrap();
    assert_eq!(d.seq, 77);
    assert_eq!(d.key, b"key");
    assert_eq!(d.payload, Payload::Data(b"data"));
    assert_eq!(d.next_offset, raw.len());
    assert!(!d.is_tombstone());
}

// ---------------------------------------------------------------------------------------------
// Round trips and layout invariants

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn round_trip(rec in rec_strategy(3000), a in align_strategy(), prefix_slots in 0usize..3) {
        // Start after some aligned, unrelated bytes so offsets other than 0 are exercised.
        let mut buf = vec![0xee; prefix_slots * a.get()];
        let start = buf.len();
        let len = rec.encode(&mut buf, a);
        let payload_len = rec.data.as_ref().map_or(0, Vec::len);

        prop_assert_eq!(len, encoded_len(rec.key.len(), payload_len, a));
        prop_assert_eq!(buf.len(), start + len);
        prop_assert!(a.is_aligned(len));
        prop_assert!(len >= HEADER_LEN + rec.key.len() + payload_len);
        prop_assert!(len < HEADER_LEN + rec.key.len() + payload_len + a.get());
        prop_assert!(buf[start + HEADER_LEN + rec.key.len() + payload_len..].iter().all(|&b| b == 0));

        let d = decode(&buf, start, a).unwrap();
        prop_assert!(rec.matches(&d), "{:?} decoded as {:?}", rec, d);
        prop_assert_eq!(d.offset, start);
        prop_assert_eq!(d.next_offset, start + len);
        prop_assert_eq!(d.is_tombstone(), rec.data.is_none());
        // Zero copy: the slices point into the buffer.
        let range = buf.as_ptr_range();
        prop_assert!(range.contains(&d.key.as_ptr()));

        // encode_at into a dirty fixed buffer writes the same bytes and leaves the rest alone.
        let mut fixed = vec![0x5a; start + len + a.get()];
        let n = encode_at(&mut fixed, start, rec.seq, &rec.key, rec.payload(), a).unwrap();
        prop_assert_eq!(n, len);
        prop_assert_eq!(&fixed[start..start + len], &buf[start..]);
        prop_assert!(fixed[..start].iter().chain(&fixed[start + len..]).all(|&b| b == 0x5a));
    }

    #[test]
    fn scanner_yields_every_record_at_aligned_offsets_then_ends_cleanly(
        recs in prop::collection::vec(rec_strategy(600), 0..12),
        a in align_strategy(),
        zero_tail in 0usize..3000,
    ) {
        let mut buf = Vec::new();
        let mut offsets = Vec::new();
        for rec in &recs {
            offsets.push(buf.len());
            rec.encode(&mut buf, a);
        }
        let end = buf.len();
        buf.resize(end + zero_tail, 0);

        // Synced anywhere up to the end of the records: a clean end either way.
        for synced in [0, end / 2, end] {
            let mut scanner = Scanner::new(&buf, a, synced);
            let got: Vec<_> = scanner.by_ref().collect();
            prop_assert_eq!(got.len(), recs.len());
            for ((d, rec), &off) in got.iter().zip(&recs).zip(&offsets) {
                prop_assert!(rec.matches(d));
                prop_assert_eq!(d.offset, off);
                prop_assert!(a.is_aligned(d.offset));
                prop_assert!(a.is_aligned(d.next_offset));
            }
            prop_assert_eq!(scanner.end(), Some(&ScanEnd::Clean { end }));
            prop_assert_eq!(scanner.next(), None);
        }
        // A mark past the records means durable records are missing.
        if zero_tail > 0 {
            let end_verdict = Scanner::new(&buf, a, end + 1).finish();
            prop_assert!(
                matches!(end_verdict, ScanEnd::Corruption { offset, .. } if offset == end),
                "{:?}", end_verdict
            );
        }
    }

    #[test]
    fn random_single_byte_damage_is_detected(
        rec in rec_strategy(700),
        a in align_strategy(),
        pos_seed in any::<usize>(),
        new_byte in any::<u8>(),
    ) {
        let mut buf = Vec::new();
        let len = rec.encode(&mut buf, a);
        let pos = pos_seed % len;
        prop_assume!(buf[pos] != new_byte);
        buf[pos] = new_byte;
        prop_assert!(decode(&buf, 0, a).is_err());
    }
}

// ---------------------------------------------------------------------------------------------
// Damage: flips and truncation

/// Every byte of `record` (one encoded record at offset 0) changed by every XOR mask in `masks`
/// must make `decode` fail; with the first mask, a scanner must also stop at 0 with a torn tail
/// (mark 0) or corruption (mark past the record).
fn assert_every_flip_detected(record: &[u8], a: Alignment, masks: &[u8]) {
    let mut buf = record.to_vec();
    buf.resize(record.len() + 2 * a.get().max(64), 0); // zeroed space after
    for pos in 0..record.len() {
        for &mask in masks {
            buf[pos] ^= mask;
            let res = decode(&buf, 0, a);
            assert!(
                res.is_err(),
                "flip {mask:#04x} at byte {pos} of a {}-byte record (align {}) went unnoticed: {res:?}",
                record.len(),
                a.get()
            );
            // The scanner's verdicts for one mask per byte: enough to see each position
            // classified, and three times faster than for every mask.
            if mask != masks[0] {
                buf[pos] ^= mask;
                continue;
            }
            let torn = Scanner::new(&buf, a, 0).finish();
            assert!(
                matches!(torn, ScanEnd::TornTail { offset: 0, .. }),
                "flip at {pos}: {torn:?}"
            );
            let corrupt = Scanner::new(&buf, a, record.len()).finish();
            assert!(
                matches!(corrupt, ScanEnd::Corruption { offset: 0, .. }),
                "flip at {pos}: {corrupt:?}"
            );
            buf[pos] ^= mask;
        }
    }
    assert!(decode(&buf, 0, a).is_ok(), "the buffer was restored");
}

#[test]
fn every_single_byte_change_is_detected_small_alignments() {
    let all_masks: Vec<u8> = (1..=255).collect();
    for a in [align(1), align(8), align(64)] {
        for rec in sample_records() {
            let mut buf = Vec::new();
            rec.encode(&mut buf, a);
            assert_every_flip_detected(&buf, a, &all_masks);
        }
    }
}

#[test]
fn every_byte_of_a_page_aligned_record_is_checked() {
    // A 4096-aligned record is mostly padding; a few masks per byte keep this fast.
    let masks = [0x01, 0x80, 0xff, 0x5a];
    for rec in sample_records() {
        let mut buf = Vec::new();
        rec.encode(&mut buf, Alignment::PAGE);
        assert_every_flip_detected(&buf, Alignment::PAGE, &masks);
    }
}

#[test]
fn truncation_at_every_length_is_detected() {
    for a in [align(1), align(8), Alignment::SECTOR] {
        for rec in sample_records() {
            // One good record, then the record under test, cut at every length.
            let first = Rec {
                seq: 1,
                key: vec![7; 10],
                data: Some(vec![3; 50]),
            };
            let mut buf = Vec::new();
            first.encode(&mut buf, a);
            let start = buf.len();
            let len = rec.encode(&mut buf, a);

            for cut in 0..len {
                let short = &buf[..start + cut];
                match decode(short, start, a) {
                    Err(RecordError::Truncated {
                        offset,
                        needed,
                        available,
                    }) => {
                        assert_eq!(offset, start);
                        assert_eq!(available, cut);
                        assert!(needed > cut);
                    }
                    other => panic!("cut at {cut} of {len}: {other:?}"),
                }

                let mut scanner = Scanner::new(short, a, start);
                assert_eq!(scanner.next().map(|d| d.seq), Some(1));
                assert_eq!(scanner.next(), None);
                let end = scanner.end().unwrap();
                if cut == 0 {
                    // Nothing of the second record was written: a clean end.
                    assert_eq!(end, &ScanEnd::Clean { end: start });
                } else {
                    assert!(
                        matches!(end, ScanEnd::TornTail { offset, cause: RecordError::Truncated { .. } } if *offset == start),
                        "cut at {cut}: {end:?}"
                    );
                }
                // Once the mark says the second record was synced, a cut is corruption.
                let verdict = Scanner::new(short, a, start + len).finish();
                assert!(
                    matches!(verdict, ScanEnd::Corruption { offset, .. } if offset == start),
                    "cut at {cut}: {verdict:?}"
                );
            }
            assert!(decode(&buf, start, a).is_ok());
        }
    }
}

#[test]
fn torn_write_into_preallocated_zeroes_is_never_a_different_record() {
    // The realistic torn write: the segment keeps its length and the unwritten part of the
    // record stays zero. Either the result is an error, or (when only zero bytes were lost, e.g.
    // padding) exactly the same record.
    for a in [align(8), Alignment::SECTOR] {
        for rec in sample_records() {
            let mut buf = Vec::new();
            let len = rec.encode(&mut buf, a);
            buf.resize(len + a.get(), 0);
            for cut in 0..len {
                let mut torn = buf.clone();
                torn[cut..len].fill(0);
                match decode(&torn, 0, a) {
                    Ok(d) => assert!(rec.matches(&d), "cut at {cut} decoded as {d:?}"),
                    Err(_) => {
                        let verdict = Scanner::new(&torn, a, 0).finish();
                        if cut == 0 {
                            assert_eq!(verdict, ScanEnd::Clean { end: 0 });
                        } else {
                            assert!(
                                matches!(verdict, ScanEnd::TornTail { offset: 0, .. }),
                                "cut at {cut}: {verdict:?}"
                            );
                        }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The scanner's verdicts around the synced mark

/// `n` records of varied sizes followed by `zero_tail` zero bytes: the buffer, and the offset of
/// every record plus the end of the last one.
fn segment_of(n: u64, a: Alignment, zero_tail: usize) -> (Vec<u8>, Vec<usize>) {
    let mut buf = Vec::new();
    let mut offsets = Vec::new();
    for seq in 0..n {
        offsets.push(buf.len());
        let data = vec![seq as u8; 100 + 300 * (seq as usize % 3)];
        encode_into(&mut buf, seq, &seq.to_be_bytes(), Payload::Data(&data), a).unwrap();
    }
    offsets.push(buf.len());
    buf.resize(buf.len() + zero_tail, 0);
    (buf, offsets)
}

#[test]
fn corrupt_record_before_the_synced_mark_is_corruption_after_it_torn_tail() {
    let a = Alignment::SECTOR;
    let (clean, offsets) = segment_of(6, a, 4096);
    let end = offsets[6];
    // Damage a payload byte in record 3.
    let mut buf = clean.clone();
    buf[offsets[3] + HEADER_LEN + 8 + 5] ^= 0x40;

    for synced in [offsets[4], offsets[5], end] {
        let mut scanner = Scanner::new(&buf, a, synced);
        assert_eq!(
            scanner.by_ref().map(|d| d.seq).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        match scanner.end().unwrap() {
            ScanEnd::Corruption {
                offset,
                cause: RecordError::ChecksumMismatch { offset: at, .. },
            } => {
                assert_eq!(*offset, offsets[3]);
                assert_eq!(*at, offsets[3]);
            }
            other => panic!("synced {synced}: {other:?}"),
        }
    }
    // At the mark (the bad record is the first unsynced one) and after it: a torn tail.
    for synced in [0, offsets[1], offsets[3]] {
        let verdict = Scanner::new(&buf, a, synced).finish();
        assert!(
            matches!(verdict, ScanEnd::TornTail { offset, cause: RecordError::ChecksumMismatch { .. } } if offset == offsets[3]),
            "synced {synced}: {verdict:?}"
        );
        assert_eq!(verdict.records_end(), offsets[3]);
    }
    // The undamaged segment is clean for any mark up to its end.
    for synced in [0, offsets[3], end] {
        assert_eq!(
            Scanner::new(&clean, a, synced).finish(),
            ScanEnd::Clean { end }
        );
    }
}

#[test]
fn zeroed_records_before_the_mark_are_corruption() {
    // A lost write inside the durable region: records 2.. read back as zeros.
    let a = Alignment::SECTOR;
    let (mut buf, offsets) = segment_of(5, a, 1024);
    let end = offsets[5];
    buf[offsets[2]..end].fill(0);

    let verdict = Scanner::new(&buf, a, end).finish();
    assert_eq!(
        verdict,
        ScanEnd::Corruption {
            offset: offsets[2],
            cause: RecordError::Unwritten { offset: offsets[2] },
        }
    );
    // If the mark is at record 2, those records were never durable: a clean end.
    assert_eq!(
        Scanner::new(&buf, a, offsets[2]).finish(),
        ScanEnd::Clean { end: offsets[2] }
    );
}

#[test]
fn stray_bytes_after_a_gap_are_not_a_clean_end() {
    // Record 1 never reached the disk but record 2 did (writes landed out of order).
    let a = Alignment::SECTOR;
    let (mut buf, offsets) = segment_of(3, a, 1024);
    buf[offsets[1]..offsets[2]].fill(0);

    let verdict = Scanner::new(&buf, a, offsets[1]).finish();
    assert_eq!(
        verdict,
        ScanEnd::TornTail {
            offset: offsets[1],
            cause: RecordError::StrayData {
                offset: offsets[1],
                at: offsets[2],
            },
        }
    );
    let verdict = Scanner::new(&buf, a, offsets[3]).finish();
    assert!(matches!(
        verdict,
        ScanEnd::Corruption { offset, cause: RecordError::StrayData { .. } } if offset == offsets[1]
    ));

    // A single stray byte far into the zeroed tail is caught too.
    let (mut buf, offsets) = segment_of(2, a, 8192);
    let stray = buf.len() - 3;
    buf[stray] = 1;
    assert_eq!(
        Scanner::new(&buf, a, offsets[2]).finish(),
        ScanEnd::TornTail {
            offset: offsets[2],
            cause: RecordError::StrayData {
                offset: offsets[2],
                at: stray,
            },
        }
    );
}

#[test]
fn empty_and_exactly_full_buffers_end_cleanly() {
    let a = align(64);
    assert_eq!(Scanner::new(&[], a, 0).finish(), ScanEnd::Clean { end: 0 });
    assert_eq!(
        Scanner::new(&[0; 4096], a, 0).finish(),
        ScanEnd::Clean { end: 0 }
    );
    let (buf, offsets) = segment_of(4, a, 0);
    assert_eq!(buf.len(), offsets[4]);
    assert_eq!(
        Scanner::new(&buf, a, buf.len()).finish(),
        ScanEnd::Clean { end: buf.len() }
    );
    // A mark beyond the buffer: durable bytes are missing.
    assert!(matches!(
        Scanner::new(&buf, a, buf.len() + 64).finish(),
        ScanEnd::Corruption {
            cause: RecordError::Truncated { available: 0, .. },
            ..
        }
    ));
}

// ---------------------------------------------------------------------------------------------
// Refusals: bad arguments and headers that are well-formed but not ours

#[test]
fn encoding_refuses_bad_arguments_and_leaves_the_buffer_alone() {
    let a = Alignment::SECTOR;
    let mut buf = vec![1u8; 100];
    assert_eq!(
        encode_into(&mut buf, 1, b"k", Payload::Data(b"v"), a),
        Err(RecordError::Misaligned {
            offset: 100,
            align: 512
        })
    );
    assert_eq!(buf, vec![1u8; 100]);

    let mut buf = Vec::new();
    let err = encode_into(&mut buf, 1, b"", Payload::Data(b"v"), a).unwrap_err();
    assert!(matches!(
        err,
        RecordError::LengthOutOfRange {
            field: LengthField::Key,
            len: 0,
            ..
        }
    ));
    let long_key = vec![1u8; MAX_KEY_LEN + 1];
    let err = encode_into(&mut buf, 1, &long_key, Payload::Tombstone, a).unwrap_err();
    assert!(matches!(
        err,
        RecordError::LengthOutOfRange {
            field: LengthField::Key,
            ..
        }
    ));
    assert!(buf.is_empty());
    // The longest key is fine.
    let max_key = vec![2u8; MAX_KEY_LEN];
    encode_into(&mut buf, 1, &max_key, Payload::Tombstone, a).unwrap();
    assert_eq!(decode(&buf, 0, a).unwrap().key, max_key.as_slice());

    // encode_at: no room, or misaligned; the buffer is untouched.
    let mut fixed = vec![9u8; 1024];
    assert_eq!(
        encode_at(&mut fixed, 512, 1, b"k", Payload::Data(&[0; 600]), a),
        Err(RecordError::NoSpace {
            offset: 512,
            needed: 1024,
            available: 512
        })
    );
    assert_eq!(
        encode_at(&mut fixed, 2048, 1, b"k", Payload::Tombstone, a),
        Err(RecordError::NoSpace {
            offset: 2048,
            needed: 512,
            available: 0
        })
    );
    assert!(matches!(
        encode_at(&mut fixed, 8, 1, b"k", Payload::Tombstone, a),
        Err(RecordError::Misaligned { offset: 8, .. })
    ));
    assert_eq!(fixed, vec![9u8; 1024]);
    assert_eq!(
        encode_at(&mut fixed, 512, 1, b"k", Payload::Data(&[0; 400]), a),
        Ok(512)
    );
}

#[test]
fn decoding_refuses_valid_looking_records_this_version_does_not_write() {
    let a = align(8);
    let check = |raw: Vec<u8>, want: &dyn Fn(&RecordError) -> bool| {
        let buf = pad_to(raw, a);
        let err = decode(&buf, 0, a).unwrap_err();
        assert!(want(&err), "{err:?}");
    };
    check(
        raw_record(VERSION + 1, 0, b"key", 1, b"x", 1),
        &|e| matches!(e, RecordError::UnsupportedVersion { offset: 0, version } if *version == VERSION + 1),
    );
    check(raw_record(VERSION, 0b10, b"key", 1, b"x", 1), &|e| {
        matches!(
            e,
            RecordError::UnknownFlags {
                offset: 0,
                flags: 0b10
            }
        )
    });
    // A tombstone that carries a payload.
    check(raw_record(VERSION, 1, b"key", 1, b"x", 1), &|e| {
        matches!(
            e,
            RecordError::LengthOutOfRange {
                field: LengthField::Payload,
                len: 1,
                max: 0,
                ..
            }
        )
    });
    check(raw_record(VERSION, 0, b"", 1, b"x", 1), &|e| {
        matches!(
            e,
            RecordError::LengthOutOfRange {
                field: LengthField::Key,
                len: 0,
                ..
            }
        )
    });
    // A payload length over the limit is refused before the buffer is even looked at.
    check(raw_record(VERSION, 0, b"key", u32::MAX, b"", 1), &|e| {
        matches!(
            e,
            RecordError::LengthOutOfRange {
                field: LengthField::Payload,
                ..
            }
        )
    });
    // Not a record at all.
    let mut junk = pad_to(raw_record(VERSION, 0, b"key", 1, b"x", 1), a);
    junk[0..4].copy_from_slice(b"IPFR");
    assert!(matches!(
        decode(&junk, 0, a),
        Err(RecordError::BadMagic { offset: 0, found }) if found == u32::from_le_bytes(*b"IPFR")
    ));
}

#[test]
fn decode_checks_offsets() {
    let a = align(64);
    let (buf, offsets) = segment_of(3, a, 128);
    assert_eq!(decode(&buf, offsets[1], a).unwrap().seq, 1);
    assert_eq!(
        decode(&buf, offsets[1] + 8, a),
        Err(RecordError::Misaligned {
            offset: offsets[1] + 8,
            align: 64
        })
    );
    assert_eq!(
        decode(&buf, offsets[3], a),
        Err(RecordError::Unwritten { offset: offsets[3] })
    );
    // Starting inside a record lands on payload bytes, never a valid record.
    assert!(decode(&buf, offsets[1] + 64, a).is_err());
    let past = buf.len() + 64;
    assert_eq!(
        decode(&buf, past, a),
        Err(RecordError::Truncated {
            offset: past,
            needed: HEADER_LEN,
            available: 0
        })
    );
}

#[test]
fn errors_name_the_offset_in_their_message() {
    let err = RecordError::ChecksumMismatch {
        offset: 4096,
        stored: 1,
        computed: 2,
    };
    assert!(err.to_string().contains("offset 4096"), "{err}");
    let err = RecordError::BadMagic {
        offset: 512,
        found: 0,
    };
    assert!(err.to_string().contains("512"), "{err}");
}
