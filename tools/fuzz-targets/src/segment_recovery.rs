//! Hot-segment records and crash recovery on bytes read back from disk.
//!
//! After a crash the segment files hold whatever the disk kept: torn writes, zeroed or stale
//! sectors, bit rot. Recovery (`scan_segment`, `replay`, `Scanner`, `decode`) must never panic
//! on them, and what it hands to the engine must point inside the buffers it read.
//!
//! The first input byte picks the mode:
//! - bit 7 clear (raw): the rest of the input is one or two segment buffers, as found on disk.
//!   A checksum is out of libFuzzer's reach, so this mode mostly exercises the paths for bad
//!   bytes: magic, lengths, resynchronisation, zero tails.
//! - bit 7 set (structured): the rest is a program of puts, tombstones, marks and segment
//!   switches, encoded with the real encoder; the result must read back exactly (round trip,
//!   and the index a model of last-writer-wins predicts). Then the tail of the program flips,
//!   zeroes or cuts bytes of the encoded segments, and recovery runs again on the damage with
//!   valid checksums around it, which reaches the torn-tail and corruption logic.
//!
//! Bits 0-1 pick the alignment in both modes.

use std::collections::HashMap;

use ipfrs_tiering::segment::record::{MAX_KEY_LEN, MAX_PAYLOAD_LEN};
use ipfrs_tiering::segment::recover::{Kind, MARK_KEY, encode_mark};
use ipfrs_tiering::segment::{
    Alignment, Payload, Position, Recovered, ScanEnd, Scanner, SegmentScan, decode, encode_into,
    encoded_len, replay, scan_segment,
};

/// The alignment bits 0-1 of the mode pick: WORD is what hot segments use, SECTOR the O_DIRECT
/// case; 1 and 16 catch arithmetic that only works for one value.
fn alignment(mode: u8) -> Alignment {
    let bytes = [8, 512, 1, 16][usize::from(mode & 3)];
    Alignment::new(bytes).unwrap_or(Alignment::WORD)
}

/// Runs the `segment_recovery` target on one input: recovery never panics on any segment
/// bytes, structured programs read back exactly, and damage never hides earlier records.
///
/// # Panics
/// When an invariant of the module doc does not hold (that is the finding).
pub fn segment_recovery(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let align = alignment(mode);
    if mode & 0x80 == 0 {
        raw(rest, align, mode);
    } else {
        structured(rest, align);
    }
}

/// Arbitrary bytes as one segment, or two when bit 6 of the mode is set (split in the middle).
fn raw(bytes: &[u8], align: Alignment, mode: u8) {
    let segments: Vec<(u32, &[u8])> = if mode & 0x40 != 0 {
        let (a, b) = bytes.split_at(bytes.len() / 2);
        vec![(3, a), (4, b)]
    } else {
        vec![(0, bytes)]
    };
    check_recovery(&segments, align);
    for (_, buf) in &segments {
        check_scanner(buf, align, buf.len() / 2);
    }
}

/// A record the program wrote: what the model remembers of it.
#[derive(Debug, Clone)]
struct Written {
    segment: u32,
    offset: usize,
    seq: u64,
    key: Vec<u8>,
    /// `None` for a tombstone.
    payload: Option<Vec<u8>>,
    is_mark: bool,
}

/// Reads a program from the input, encodes it, checks the round trip, then damages the result.
fn structured(program: &[u8], align: Alignment) {
    let mut input = program.iter().copied();
    let mut segments: Vec<Vec<u8>> = vec![Vec::new()];
    let mut written: Vec<Written> = Vec::new();
    let mut seq = 0u64;
    // Ops until a 0xff byte (or the end): the rest of the input is damage.
    while let Some(op) = input.next() {
        if op == 0xff {
            break;
        }
        seq += 1;
        let segment = segments.len() - 1;
        let (key, payload, is_mark) = match op % 5 {
            // Sixteen keys of lengths 1..=16, never the mark key (its bytes are zero).
            0 | 1 => {
                let id = input.next().unwrap_or(0) % 16;
                let len = usize::from(input.next().unwrap_or(0)) * 3;
                let fill = input.next().unwrap_or(0);
                let payload: Vec<u8> = (0..len).map(|i| fill.wrapping_add(i as u8)).collect();
                (vec![id + 1; usize::from(id) + 1], Some(payload), false)
            }
            2 => {
                let id = input.next().unwrap_or(0) % 16;
                (vec![id + 1; usize::from(id) + 1], None, false)
            }
            3 => {
                let mark = Position {
                    segment: u32::from(input.next().unwrap_or(0) % 4),
                    offset: u64::from(input.next().unwrap_or(0)) * 8,
                };
                (MARK_KEY.to_vec(), Some(encode_mark(mark).to_vec()), true)
            }
            _ => {
                // A new segment, up to four.
                if segments.len() < 4 {
                    segments.push(Vec::new());
                }
                continue;
            }
        };
        let buf = &mut segments[segment];
        let offset = buf.len();
        let body = match &payload {
            Some(data) => Payload::Data(data),
            None => Payload::Tombstone,
        };
        let len = match encode_into(buf, seq, &key, body, align) {
            Ok(len) => len,
            Err(e) => panic!("encoding a valid record failed: {e}"),
        };
        assert_eq!(
            len,
            encoded_len(key.len(), payload.as_ref().map_or(0, Vec::len), align)
        );
        assert_eq!(buf.len(), offset + len);
        written.push(Written {
            segment: segment as u32,
            offset,
            seq,
            key,
            payload,
            is_mark,
        });
    }
    // A preallocated file: zeros after the records.
    let zeros = usize::from(input.next().unwrap_or(0));
    for buf in &mut segments {
        buf.resize(buf.len() + zeros, 0);
    }

    check_round_trip(&segments, &written, align);

    // Damage: (segment, offset hi, offset lo, action) quadruples.
    let mut damaged_from: Vec<usize> = segments.iter().map(Vec::len).collect();
    let mut damaged = false;
    let rest: Vec<u8> = input.collect();
    for chunk in rest.chunks_exact(4) {
        let s = usize::from(chunk[0]) % segments.len();
        let buf = &mut segments[s];
        if buf.is_empty() {
            continue;
        }
        let at = usize::from(u16::from_be_bytes([chunk[1], chunk[2]])) % buf.len();
        match chunk[3] {
            // Cut the file short (a lost tail).
            0 => buf.truncate(at),
            // Zero a 512-byte sector (a write that never reached the disk).
            1 => {
                let start = at / 512 * 512;
                let end = (start + 512).min(buf.len());
                buf[start..end].fill(0);
            }
            flip => buf[at] ^= flip,
        }
        damaged_from[s] = damaged_from[s].min(at / 512 * 512);
        damaged = true;
    }
    let views: Vec<(u32, &[u8])> = segments
        .iter()
        .enumerate()
        .map(|(i, buf)| (i as u32, buf.as_slice()))
        .collect();
    let recovered = check_recovery(&views, align);
    if damaged {
        // Everything before the first damaged byte of a segment still reads as written: a
        // scan is sequential, so damage later cannot hide earlier records.
        for w in &written {
            let s = w.segment as usize;
            let end =
                w.offset + encoded_len(w.key.len(), w.payload.as_ref().map_or(0, Vec::len), align);
            if end <= damaged_from[s] {
                let record = match decode(&segments[s], w.offset, align) {
                    Ok(record) => record,
                    Err(e) => panic!("undamaged record at {} no longer decodes: {e}", w.offset),
                };
                assert_eq!(record.key, w.key.as_slice());
                assert_eq!(record.seq, w.seq);
            }
        }
    }
    for (id, buf) in &views {
        let synced = recovered.segments[*id as usize].append_at;
        check_scanner(buf, align, synced);
    }
}

/// Freshly encoded segments read back exactly, and replay builds the index a model predicts.
fn check_round_trip(segments: &[Vec<u8>], written: &[Written], align: Alignment) {
    let scans: Vec<(u32, SegmentScan<'_>)> = segments
        .iter()
        .enumerate()
        .map(|(i, buf)| (i as u32, scan_segment(buf, align)))
        .collect();
    let mut expected = written.iter();
    for (id, scan) in &scans {
        let buf = &segments[*id as usize];
        assert!(
            scan.bad.is_empty(),
            "clean segment {id} has bad regions: {:?}",
            scan.bad
        );
        let records_end = written
            .iter()
            .filter(|w| w.segment == *id)
            .map(|w| {
                w.offset + encoded_len(w.key.len(), w.payload.as_ref().map_or(0, Vec::len), align)
            })
            .max()
            .unwrap_or(0);
        assert_eq!(scan.end, records_end, "segment {id}");
        for found in &scan.found {
            let Some(w) = expected.next() else {
                panic!("scan found a record nobody wrote at {}", found.offset);
            };
            assert_eq!(
                (found.offset, found.seq, &*found.key),
                (w.offset, w.seq, w.key.as_slice())
            );
            match (found.kind, &w.payload) {
                (Kind::Put { len }, Some(data)) => {
                    assert!(!w.is_mark);
                    assert_eq!(len as usize, data.len());
                    let record = decode(buf, found.offset, align).ok();
                    assert_eq!(record.and_then(|r| r.payload.data()), Some(data.as_slice()));
                }
                (Kind::Tombstone, None) => {}
                (Kind::Mark(_), Some(_)) => assert!(w.is_mark),
                (kind, payload) => panic!(
                    "record at {} read back as {kind:?}, wrote {payload:?}",
                    w.offset
                ),
            }
        }
    }
    assert!(expected.next().is_none(), "a written record was not found");

    // Last writer wins, per key, in segment order then file order.
    let mut model: HashMap<&[u8], Option<&Written>> = HashMap::new();
    for w in written.iter().filter(|w| !w.is_mark) {
        model.insert(&w.key, w.payload.as_ref().map(|_| w));
    }
    let mut puts = 0;
    let recovered = replay(&scans, |_| puts += 1);
    assert!(recovered.corruption.is_empty());
    assert_eq!(recovered.dropped_after_tear, 0);
    assert_eq!(
        puts,
        written
            .iter()
            .filter(|w| !w.is_mark && w.payload.is_some())
            .count()
    );
    let live = model.values().filter(|w| w.is_some()).count();
    assert_eq!(recovered.index.len(), live);
    for (key, last) in &model {
        let loc = recovered.index.get(key);
        match last {
            Some(w) => {
                let loc = loc.unwrap_or_else(|| panic!("live key {key:?} missing from the index"));
                assert_eq!((loc.segment, loc.offset as usize), (w.segment, w.offset));
                assert_eq!(loc.len as usize, w.payload.as_ref().map_or(0, Vec::len));
            }
            None => {
                assert!(loc.is_none(), "deleted key {key:?} still indexed");
                assert!(recovered.tombstoned.iter().any(|k| k.as_slice() == *key));
            }
        }
    }
    assert_eq!(
        recovered.tombstoned.len(),
        model.values().filter(|w| w.is_none()).count()
    );
    assert_eq!(
        recovered.max_seq,
        written.iter().map(|w| w.seq).max().unwrap_or(0)
    );
}

/// What must hold for any segment buffers: recovery's output stays inside them.
fn check_recovery<'a>(segments: &[(u32, &'a [u8])], align: Alignment) -> Recovered {
    let scans: Vec<(u32, SegmentScan<'a>)> = segments
        .iter()
        .map(|(id, buf)| (*id, scan_segment(buf, align)))
        .collect();
    for ((_, buf), (_, scan)) in segments.iter().zip(&scans) {
        check_scan(buf, scan, align);
    }
    let mut put_keys = 0usize;
    let recovered = replay(&scans, |key| {
        assert!(!key.is_empty() && key.len() <= MAX_KEY_LEN);
        put_keys += 1;
    });
    let highest_mark = scans
        .iter()
        .flat_map(|(_, scan)| &scan.found)
        .filter_map(|f| match f.kind {
            Kind::Mark(m) => Some(m),
            _ => None,
        })
        .max()
        .unwrap_or_default();
    assert_eq!(recovered.durable, highest_mark);
    assert_eq!(recovered.segments.len(), segments.len());
    let mut kept = 0;
    for ((id, buf), ((_, scan), outcome)) in
        segments.iter().zip(scans.iter().zip(&recovered.segments))
    {
        assert_eq!(outcome.segment, *id);
        assert!(outcome.append_at <= buf.len());
        if let Some(torn) = outcome.torn_at {
            assert_eq!(outcome.append_at, torn);
            assert!(scan.bad.iter().any(|b| b.offset == torn));
        }
        assert!(outcome.records <= scan.found.len());
        kept += outcome.records;
    }
    assert!(recovered.index.len() + recovered.tombstoned.len() <= kept);
    // Every index entry points at a whole record inside its segment, at a record the scan
    // found there.
    for (_, loc) in recovered.index.iter() {
        let Some(((_, buf), (_, scan))) = segments
            .iter()
            .zip(&scans)
            .find(|((id, _), _)| *id == loc.segment)
        else {
            panic!("index entry in unknown segment {}", loc.segment);
        };
        let offset = loc.offset as usize;
        assert!(
            offset + loc.record_len() <= buf.len(),
            "{loc:?} past the end {}",
            buf.len()
        );
        let found = scan.found.iter().find(|f| f.offset == offset);
        let Some(found) = found else {
            panic!("index entry {loc:?} is not at a record the scan found");
        };
        assert_eq!(usize::from(loc.key_len), found.key.len());
        assert!(
            matches!(found.kind, Kind::Put { len } | Kind::Damaged { len, .. } if len == loc.len)
        );
    }
    for key in &recovered.tombstoned {
        assert!(
            !recovered.index.contains(key),
            "tombstoned key still indexed"
        );
    }
    for c in &recovered.corruption {
        assert!(
            segments
                .iter()
                .any(|(id, buf)| *id == c.segment && c.offset < buf.len())
        );
    }
    recovered
}

/// One scan's findings are inside the buffer, in order, and agree with `decode`.
fn check_scan(buf: &[u8], scan: &SegmentScan<'_>, align: Alignment) {
    assert!(scan.end <= buf.len());
    let range = buf.as_ptr_range();
    let mut last = None;
    for found in &scan.found {
        assert!(
            found.offset < buf.len(),
            "found at {} of {}",
            found.offset,
            buf.len()
        );
        assert!(align.is_aligned(found.offset));
        assert!(
            last.is_none_or(|prev| found.offset > prev),
            "found out of order"
        );
        last = Some(found.offset);
        // A stored key borrows from the buffer; only a damaged record's corrected key may not.
        if let std::borrow::Cow::Borrowed(key) = &found.key {
            let key = key.as_ptr_range();
            assert!(
                key.start >= range.start && key.end <= range.end,
                "key outside the buffer"
            );
        } else {
            assert!(
                matches!(found.kind, Kind::Damaged { .. }),
                "owned key of a whole record"
            );
        }
        assert!(!found.key.is_empty() && found.key.len() <= MAX_KEY_LEN);
        let len = match found.kind {
            Kind::Put { len } | Kind::Damaged { len, .. } => len as usize,
            Kind::Tombstone | Kind::Mark(_) => 0,
        };
        assert!(len <= MAX_PAYLOAD_LEN);
        let extent = encoded_len(found.key.len(), len, align);
        assert!(
            found.offset + extent <= buf.len(),
            "record extent past the end"
        );
        let decoded = decode(buf, found.offset, align);
        match found.kind {
            Kind::Damaged { .. } => assert!(decoded.is_err(), "damaged record decodes"),
            Kind::Put { len } => {
                let record = decoded.unwrap_or_else(|e| panic!("put does not decode: {e}"));
                assert_eq!(record.payload.data().map(<[u8]>::len), Some(len as usize));
                assert_eq!(record.seq, found.seq);
            }
            Kind::Tombstone => {
                assert!(decoded.is_ok_and(|r| r.is_tombstone()));
            }
            Kind::Mark(_) => {
                assert_eq!(found.key, MARK_KEY);
                assert!(decoded.is_ok());
            }
        }
    }
    let mut last_bad = None;
    for bad in &scan.bad {
        assert!(bad.offset < buf.len());
        assert!(
            last_bad.is_none_or(|prev| bad.offset > prev),
            "bad regions out of order"
        );
        last_bad = Some(bad.offset);
    }
    if scan.bad.is_empty() {
        assert!(
            buf[scan.end..].iter().all(|&b| b == 0),
            "bytes after a clean end"
        );
    }
}

/// The sequential scanner: records in order, inside the buffer, and an end that agrees.
fn check_scanner(buf: &[u8], align: Alignment, synced: usize) {
    let mut scanner = Scanner::new(buf, align, synced);
    let mut next = 0;
    for record in scanner.by_ref() {
        assert_eq!(record.offset, next);
        assert!(record.next_offset > record.offset && record.next_offset <= buf.len());
        next = record.next_offset;
    }
    let Some(end) = scanner.end() else {
        panic!("scanner stopped without saying why");
    };
    assert_eq!(end.records_end(), next);
    match end {
        ScanEnd::Clean { end } => {
            assert!(*end >= synced, "a clean end before the synced mark");
            assert!(buf[*end..].iter().all(|&b| b == 0));
        }
        ScanEnd::TornTail { offset, .. } => assert!(*offset >= synced),
        ScanEnd::Corruption { offset, .. } => assert!(*offset < synced),
    }
}
