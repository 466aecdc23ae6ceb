//! The header walk (`walk_headers`, `decode_header`): what the hint writer and compaction read
//! instead of every payload, checked against the full scan and against damage.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ipfrs_tiering::segment::recover::{MARK_KEY, encode_mark};
use ipfrs_tiering::segment::{
    Alignment, HeaderDigest, Payload, Position, decode, decode_header, encode_into, scan_segment,
    walk_headers,
};
use proptest::prelude::*;

/// One record to lay out: a block, a tombstone or a mark.
#[derive(Debug, Clone)]
enum Rec {
    Block(Vec<u8>, Vec<u8>),
    Tombstone(Vec<u8>),
    Mark(u32, u32),
}

fn rec_strategy() -> impl Strategy<Value = Rec> {
    let key = prop::collection::vec(any::<u8>(), 1..=40)
        .prop_filter("not the mark key", |k| k.as_slice() != MARK_KEY);
    prop_oneof![
        6 => (key.clone(), prop::collection::vec(any::<u8>(), 0..=5000))
            .prop_map(|(k, d)| Rec::Block(k, d)),
        1 => key.prop_map(Rec::Tombstone),
        1 => (any::<u32>(), any::<u32>()).prop_map(|(s, o)| Rec::Mark(s, o)),
    ]
}

/// A segment holding `recs` numbered from `first_seq`, then `zero_tail` unwritten bytes, with
/// the digest a writer would have kept of it and where its records end.
fn segment(recs: &[Rec], first_seq: u64, zero_tail: usize) -> (Vec<u8>, u64, usize) {
    let mut buf = Vec::new();
    let mut digest = HeaderDigest::default();
    for (i, rec) in recs.iter().enumerate() {
        let mark;
        let (key, payload) = match rec {
            Rec::Block(k, d) => (k.as_slice(), Payload::Data(d)),
            Rec::Tombstone(k) => (k.as_slice(), Payload::Tombstone),
            Rec::Mark(segment, offset) => {
                mark = encode_mark(Position {
                    segment: *segment,
                    offset: *offset as u64,
                });
                (MARK_KEY, Payload::Data(&mark[..]))
            }
        };
        let at = buf.len();
        encode_into(
            &mut buf,
            first_seq + i as u64,
            key,
            payload,
            Alignment::WORD,
        )
        .unwrap();
        digest.add(&buf[at..at + 28], key);
    }
    let end = buf.len();
    buf.resize(end + zero_tail, 0);
    (buf, digest.value(), end)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn an_undamaged_segment_walks_as_it_scans(
        recs in prop::collection::vec(rec_strategy(), 0..20),
        first_seq in 0u64..1_000_000,
        zero_tail in 0usize..2000,
    ) {
        let (buf, written, end) = segment(&recs, first_seq, zero_tail);
        let (walked, read) = walk_headers(&buf, Alignment::WORD).expect("every header reads");
        let scanned = scan_segment(&buf, Alignment::WORD);
        prop_assert!(scanned.bad.is_empty());
        prop_assert_eq!(&walked.found, &scanned.found);
        prop_assert_eq!(walked.end, end);
        prop_assert_eq!(scanned.end, end);
        prop_assert_eq!(read.value(), written);
        // The header agrees with the whole record on every field it has.
        for found in &walked.found {
            let header = decode_header(&buf, found.offset, Alignment::WORD).unwrap();
            let record = decode(&buf, found.offset, Alignment::WORD).unwrap();
            prop_assert_eq!(header.seq, record.seq);
            prop_assert_eq!(header.key, record.key);
            prop_assert_eq!(header.next_offset, record.next_offset);
            prop_assert_eq!(header.tombstone, record.is_tombstone());
            prop_assert_eq!(header.payload_len, record.payload.data().map_or(0, <[u8]>::len));
        }
    }

    /// What the hint writer accepts from a walk over a damaged segment (the walk up to the
    /// writer's end, that end reached, the digests equal) is never a wrong record list: any
    /// change to a header or key is refused, so the segment is scanned with every check.
    #[test]
    fn a_damaged_header_or_key_never_passes_the_writers_check(
        recs in prop::collection::vec(rec_strategy(), 1..12),
        first_seq in 0u64..1_000_000,
        pick in any::<prop::sample::Index>(),
        at in 0usize..1100,
        flip in 1u8..=255,
    ) {
        let (mut buf, written, end) = segment(&recs, first_seq, 64);
        let clean = scan_segment(&buf, Alignment::WORD);
        let record = &clean.found[pick.index(clean.found.len())];
        // A byte of its header or key.
        let span = 28 + record.key.len();
        let pos = record.offset + at % span;
        buf[pos] ^= flip;
        let accepted = walk_headers(&buf[..end], Alignment::WORD)
            .filter(|(scan, read)| scan.end == end && read.value() == written);
        prop_assert!(accepted.is_none(), "damage at {} accepted", pos);
    }

    /// A damaged payload is not the walk's to see: it lists the record as the writer wrote it,
    /// and the record's own check (every read's) fails.
    #[test]
    fn a_damaged_payload_is_left_to_the_reads(
        data in prop::collection::vec(any::<u8>(), 1..3000),
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let recs = [Rec::Block(b"key".to_vec(), data.clone()), Rec::Tombstone(b"other".to_vec())];
        let (mut buf, written, end) = segment(&recs, 7, 0);
        let pos = 28 + 3 + at.index(data.len());
        buf[pos] ^= flip;
        let (walked, read) = walk_headers(&buf, Alignment::WORD).unwrap();
        prop_assert_eq!(walked.end, end);
        prop_assert_eq!(read.value(), written);
        prop_assert!(decode(&buf, 0, Alignment::WORD).is_err());
        prop_assert!(!scan_segment(&buf, Alignment::WORD).bad.is_empty());
    }
}

#[test]
fn a_gap_in_the_numbering_stops_the_walk() {
    let recs = [
        Rec::Block(b"a".to_vec(), vec![1; 100]),
        Rec::Block(b"b".to_vec(), vec![2; 100]),
    ];
    let (mut buf, _, _) = segment(&recs, 10, 0);
    assert!(walk_headers(&buf, Alignment::WORD).is_some());
    // Renumber the second record as 12 (its checksum then fails too, which the walk does
    // not read): records 10 and 12 with nothing between are not what a writer leaves.
    let second = decode(&buf, 0, Alignment::WORD).unwrap().next_offset;
    buf[second + 12] = 12;
    assert!(walk_headers(&buf, Alignment::WORD).is_none());
}
