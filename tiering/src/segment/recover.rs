//! Rebuilding a shard's hot index from its segment files.
//!
//! Recovery runs in two steps:
//! 1. [`scan_segment`] reads one segment buffer (a read-only map of the file) into the records
//!    it holds and the bad regions between them, resynchronising after a bad region at the
//!    next record that decodes, so damage in the middle of a segment does not hide the records
//!    after it.
//! 2. [`replay`] walks every segment in order and decides, with the durable mark, what each bad
//!    region is. The writer starts each group with a *mark record* ([`MARK_KEY`]) naming the
//!    position up to which everything was durable before that group. The highest mark found
//!    anywhere is the recovery's durable mark: a bad region before it held durable (perhaps
//!    acknowledged) records, so it is **corruption** and is reported; a bad region at or past
//!    it is a **torn tail** (a write cut short by the crash, never acknowledged) and the
//!    segment is truncated there, dropping anything after it.
//!
//! A damaged record whose block can be named is indexed anyway, so a read of its key finds it,
//! fails the checksum and reports the block as corrupt instead of calling it absent. Its key is
//! named by [`salvage`](super::salvage), which proves it with the payload's hash where it can
//! (a flipped key or length is found again). No damaged length decides where the next record
//! starts unless the bytes there continue the log; otherwise the scan resynchronises on the
//! next offset where a whole record decodes (magic and checksum). Replay keeps the last record of each key (file order is sequence order):
//! a put points the index at it, a tombstone removes the key and lists it in
//! [`Recovered::tombstoned`] so the caller can redo the delete on the cold backend.

use std::borrow::Cow;

use super::align::Alignment;
use super::error::RecordError;
use super::index::{HotIndex, Loc, fingerprint};
use super::record::{
    HEADER_LEN, HeaderDigest, MAGIC, MAX_KEY_LEN, MAX_PAYLOAD_LEN, Payload, decode, decode_header,
    encoded_len, first_nonzero,
};
use super::salvage::{KeyTrust, salvage};

/// The key of mark records. `00 00` is the identity multihash of zero bytes: the engine answers
/// identity CIDs from the CID itself and never stores them, so no block can have this key.
pub const MARK_KEY: &[u8] = &[0x00, 0x00];

/// A position in a shard's hot log: segments in number order, offsets within a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position {
    /// The segment number.
    pub segment: u32,
    /// The offset in that segment.
    pub offset: u64,
}

/// The payload of a mark record: the durable position, 12 bytes little-endian.
pub fn encode_mark(durable: Position) -> [u8; 12] {
    let mut out = [0u8; 12];
    out[..4].copy_from_slice(&durable.segment.to_le_bytes());
    out[4..].copy_from_slice(&durable.offset.to_le_bytes());
    out
}

/// Reads a mark payload back.
pub fn decode_mark(payload: &[u8]) -> Option<Position> {
    let bytes: &[u8; 12] = payload.try_into().ok()?;
    let (segment, offset) = bytes.split_at(4);
    Some(Position {
        segment: u32::from_le_bytes(segment.try_into().ok()?),
        offset: u64::from_le_bytes(offset.try_into().ok()?),
    })
}

/// What a record found by the scan is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A block, with its payload length.
    Put {
        /// The payload's length.
        len: u32,
    },
    /// A delete of its key.
    Tombstone,
    /// The writer's durable mark at the start of a group.
    Mark(Position),
    /// A record that fails its checks but whose block could be named (see
    /// [`salvage`](super::salvage)): indexed so that reads report it as corrupt.
    Damaged {
        /// The payload length it is taken to have.
        len: u32,
        /// How far its key can be trusted.
        trust: KeyTrust,
    },
}

/// A record found by [`scan_segment`], borrowing its key from the segment buffer (a damaged
/// record's corrected key is owned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found<'a> {
    /// Where the record starts.
    pub offset: usize,
    /// Its sequence number (as its header says, for a damaged record).
    pub seq: u64,
    /// The key bytes.
    pub key: Cow<'a, [u8]>,
    /// What the record is.
    pub kind: Kind,
}

/// Bytes between records that are not a valid record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRegion {
    /// Where the bad bytes start.
    pub offset: usize,
    /// Why they do not decode.
    pub cause: RecordError,
}

/// One segment buffer read record by record.
#[derive(Debug, Clone, Default)]
pub struct SegmentScan<'a> {
    /// Every record that decoded (or whose header reads), in file order.
    pub found: Vec<Found<'a>>,
    /// Every bad region, in file order. `found` entries after a region's offset come from
    /// resynchronising past it.
    pub bad: Vec<BadRegion>,
    /// Where the records end: the first byte after the last record, all zeros from here on
    /// if `bad` is empty.
    pub end: usize,
}

/// Reads `buf` (a segment's bytes from its start) into its records and bad regions.
pub fn scan_segment(buf: &[u8], align: Alignment) -> SegmentScan<'_> {
    let mut scan = SegmentScan::default();
    let mut pos = 0;
    while pos < buf.len() {
        match decode(buf, pos, align) {
            Ok(record) => {
                let kind = match record.payload {
                    Payload::Tombstone => Kind::Tombstone,
                    Payload::Data(data) if record.key == MARK_KEY => match decode_mark(data) {
                        Some(mark) => Kind::Mark(mark),
                        // A record under the mark key that is not a mark: nothing this code
                        // writes, so it is damage.
                        None => {
                            scan.bad.push(BadRegion {
                                offset: pos,
                                cause: RecordError::StrayData {
                                    offset: pos,
                                    at: pos,
                                },
                            });
                            pos = record.next_offset;
                            continue;
                        }
                    },
                    // Lengths were checked against MAX_PAYLOAD_LEN (< u32::MAX) by decode.
                    Payload::Data(data) => Kind::Put {
                        len: data.len() as u32,
                    },
                };
                scan.found.push(Found {
                    offset: pos,
                    seq: record.seq,
                    key: Cow::Borrowed(record.key),
                    kind,
                });
                pos = record.next_offset;
                scan.end = pos;
            }
            Err(cause) => {
                let rest = &buf[pos..];
                if first_nonzero(rest).is_none() {
                    break;
                }
                scan.bad.push(BadRegion { offset: pos, cause });
                // The stored lengths are believed only where the log visibly goes on after
                // them (a flip in a payload leaves them right); otherwise the damage ends
                // where the next whole record starts.
                let limit = match stored_extent(buf, pos, align) {
                    Some(end) if continues(buf, end, align) => end,
                    _ => resync(buf, pos + align.get(), align).unwrap_or(buf.len()),
                };
                match salvage(buf, pos, limit, align) {
                    Some(salvaged) => {
                        scan.found.push(Found {
                            offset: pos,
                            seq: buf[pos + 12..pos + 20]
                                .try_into()
                                .map_or(0, u64::from_le_bytes),
                            key: salvaged.key,
                            kind: Kind::Damaged {
                                len: salvaged.len,
                                trust: salvaged.trust,
                            },
                        });
                        // A proven record may end before `limit`: what lies between is
                        // scanned as more damage.
                        pos = salvaged.end;
                    }
                    None => pos = limit,
                }
                scan.end = pos.min(buf.len());
            }
        }
    }
    scan
}

/// The records of a segment this process wrote and synced, read from their headers alone (see
/// [`decode_header`]): the scan [`scan_segment`] would return for an undamaged segment, at the
/// cost of one page per large record instead of every byte, with the [`HeaderDigest`] of what
/// it read. `None` when a header does not read, so that the caller scans with every check
/// instead.
///
/// The walk ends at the first unwritten header; unlike [`scan_segment`] it does not check that
/// the space after it is zero. Marks are decoded in full (they are a few bytes). Sequence
/// numbers must grow by one from record to record, as the writer numbers them: a damaged
/// length that sends the walk to a later record's header skips records, and that shows as
/// a gap (a caller that knows where the segment ends and its last number also catches a skip
/// to the end).
pub fn walk_headers(buf: &[u8], align: Alignment) -> Option<(SegmentScan<'_>, HeaderDigest)> {
    let mut scan = SegmentScan::default();
    let mut digest = HeaderDigest::default();
    let mut pos = 0;
    while pos < buf.len() {
        let header = match decode_header(buf, pos, align) {
            Ok(header) => header,
            Err(RecordError::Unwritten { .. }) => break,
            Err(_) => return None,
        };
        if let Some(previous) = scan.found.last()
            && previous.seq.checked_add(1) != Some(header.seq)
        {
            return None;
        }
        digest.add(&buf[pos..pos + HEADER_LEN], header.key);
        let kind = if header.tombstone {
            Kind::Tombstone
        } else if header.key == MARK_KEY {
            let record = decode(buf, pos, align).ok()?;
            Kind::Mark(decode_mark(record.payload.data()?)?)
        } else {
            // Lengths were checked against MAX_PAYLOAD_LEN (< u32::MAX).
            Kind::Put {
                len: header.payload_len as u32,
            }
        };
        scan.found.push(Found {
            offset: pos,
            seq: header.seq,
            key: Cow::Borrowed(header.key),
            kind,
        });
        pos = header.next_offset;
        scan.end = pos;
    }
    Some((scan, digest))
}

/// Where the record at `offset` ends if its stored key and payload lengths are right: `None`
/// when they are out of range or run past the buffer. Magic, version and flags are not
/// consulted: one flipped bit there leaves the lengths intact.
fn stored_extent(buf: &[u8], offset: usize, align: Alignment) -> Option<usize> {
    let header = buf.get(offset..)?.first_chunk::<HEADER_LEN>()?;
    let key_len = usize::from(u16::from_le_bytes([header[6], header[7]]));
    let len = u32::from_le_bytes([header[8], header[9], header[10], header[11]]) as usize;
    if key_len == 0 || key_len > MAX_KEY_LEN || len > MAX_PAYLOAD_LEN {
        return None;
    }
    let end = offset.checked_add(encoded_len(key_len, len, align))?;
    (end <= buf.len()).then_some(end)
}

/// Whether the log continues at `offset`: the buffer ends there, a whole record decodes
/// there, or nothing was written from there on.
fn continues(buf: &[u8], offset: usize, align: Alignment) -> bool {
    offset == buf.len()
        || decode(buf, offset, align).is_ok()
        || buf
            .get(offset..)
            .is_some_and(|rest| first_nonzero(rest).is_none())
}

/// The first offset at or after `from` (aligned) where a record decodes.
fn resync(buf: &[u8], from: usize, align: Alignment) -> Option<usize> {
    let magic = MAGIC.to_le_bytes();
    let mut pos = align.round_up(from)?;
    while pos + HEADER_LEN <= buf.len() {
        if buf[pos..pos + 4] == magic && decode(buf, pos, align).is_ok() {
            return Some(pos);
        }
        pos += align.get();
    }
    None
}

/// What to do with one segment after replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentOutcome {
    /// The segment number.
    pub segment: u32,
    /// Where appending may continue: the end of the kept records.
    pub append_at: usize,
    /// A torn tail to zero from this offset on before appending, if any.
    pub torn_at: Option<usize>,
    /// Live records and tombstones this segment holds after replay (its share of the index).
    pub records: usize,
}

/// A bad region before the durable mark: data that was durable is damaged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corruption {
    /// The segment number.
    pub segment: u32,
    /// Where the bad bytes start.
    pub offset: usize,
    /// Why they do not decode.
    pub cause: RecordError,
    /// The block the damaged record held, when it could be named, and how far that name can be
    /// trusted. `None`: no record could be read there (a header beyond reading, a damaged
    /// tombstone or mark), so only the place is known.
    pub key: Option<(Vec<u8>, KeyTrust)>,
}

/// The outcome of [`replay`].
#[derive(Default)]
pub struct Recovered {
    /// The rebuilt index.
    pub index: HotIndex,
    /// Keys whose last record is a tombstone: the caller redoes these deletes on the cold
    /// backend (the delete may have been acknowledged before the backend made it durable).
    pub tombstoned: Vec<Vec<u8>>,
    /// One outcome per segment, in the order given.
    pub segments: Vec<SegmentOutcome>,
    /// Damage before the durable mark, reported, never dropped silently.
    pub corruption: Vec<Corruption>,
    /// The durable mark: the highest mark record found.
    pub durable: Position,
    /// Records that were dropped because they lay past a torn tail.
    pub dropped_after_tear: usize,
    /// The highest sequence number kept: the writer continues after it.
    pub max_seq: u64,
}

/// The durable mark of a set of scans: the highest mark record any of them holds (the start
/// of the log if none does).
pub fn durable_mark<'s, 'a: 's>(scans: impl IntoIterator<Item = &'s SegmentScan<'a>>) -> Position {
    scans
        .into_iter()
        .flat_map(|scan| scan.found.iter())
        .filter_map(|found| match found.kind {
            Kind::Mark(mark) => Some(mark),
            _ => None,
        })
        .max()
        .unwrap_or_default()
}

/// Replays scanned segments (ascending segment numbers) into an index. `on_put` sees the key of
/// every block record kept, live or not: the caller feeds its bloom filter, which may hold
/// extra keys but must never miss one.
pub fn replay<'s>(
    segments: &'s [(u32, SegmentScan<'_>)],
    mut on_put: impl FnMut(&'s [u8]),
) -> Recovered {
    let mut out = Recovered {
        durable: durable_mark(segments.iter().map(|(_, scan)| scan)),
        ..Recovered::default()
    };
    let mut tombstoned: hashbrown::HashMap<u128, &'s [u8]> = hashbrown::HashMap::new();
    for (segment, scan) in segments {
        let segment = *segment;
        let at = |offset: usize| Position {
            segment,
            offset: offset as u64,
        };
        // The first bad region at or past the durable mark is where this segment's valid
        // records end; the ones before it are corruption.
        let tear = scan
            .bad
            .iter()
            .find(|bad| at(bad.offset) >= out.durable)
            .map(|bad| bad.offset);
        for bad in &scan.bad {
            if tear.is_none_or(|torn| bad.offset < torn) {
                let key = scan.found.iter().find_map(|found| match found.kind {
                    Kind::Damaged { trust, .. } if found.offset == bad.offset => {
                        Some((found.key.to_vec(), trust))
                    }
                    _ => None,
                });
                out.corruption.push(Corruption {
                    segment,
                    offset: bad.offset,
                    cause: bad.cause.clone(),
                    key,
                });
            }
        }
        let mut records = 0;
        for found in &scan.found {
            if tear.is_some_and(|torn| found.offset >= torn) {
                out.dropped_after_tear += 1;
                continue;
            }
            // A damaged record's sequence number may be the flipped field: the writer must
            // not continue after a garbage value (file order already orders the records).
            if !matches!(found.kind, Kind::Damaged { .. }) {
                out.max_seq = out.max_seq.max(found.seq);
            }
            let fp = fingerprint(&found.key);
            let put = |len: u32| Loc {
                segment,
                // Segments are at most 4 GiB (the writer's limit), so offsets fit.
                offset: found.offset as u32,
                len,
                key_len: found.key.len() as u16,
                hits: 0,
            };
            match found.kind {
                Kind::Put { len } | Kind::Damaged { len, .. } => {
                    out.index.insert_fingerprint(fp, put(len));
                    tombstoned.remove(&fp);
                    on_put(&found.key);
                    records += 1;
                }
                Kind::Tombstone => {
                    out.index.remove_fingerprint(fp);
                    tombstoned.insert(fp, &found.key);
                    records += 1;
                }
                Kind::Mark(_) => {}
            }
        }
        out.segments.push(SegmentOutcome {
            segment,
            append_at: tear.unwrap_or(scan.end),
            torn_at: tear,
            records,
        });
    }
    out.tombstoned = tombstoned.into_values().map(<[u8]>::to_vec).collect();
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::segment::encode_into;

    const A: Alignment = Alignment::WORD;

    /// The storage key of a short name: records carry multihashes, as the engine writes them.
    fn k(name: &[u8]) -> Vec<u8> {
        ipfrs_core_types::key_for_data(0x12, name).unwrap()
    }

    fn put(buf: &mut Vec<u8>, seq: u64, name: &[u8], data: &[u8]) -> usize {
        let at = buf.len();
        encode_into(buf, seq, &k(name), Payload::Data(data), A).unwrap();
        at
    }

    fn mark(buf: &mut Vec<u8>, seq: u64, durable: Position) {
        encode_into(buf, seq, MARK_KEY, Payload::Data(&encode_mark(durable)), A).unwrap();
    }

    fn tomb(buf: &mut Vec<u8>, seq: u64, name: &[u8]) {
        encode_into(buf, seq, &k(name), Payload::Tombstone, A).unwrap();
    }

    #[test]
    fn mark_round_trips() {
        let p = Position {
            segment: 7,
            offset: 1 << 40,
        };
        assert_eq!(decode_mark(&encode_mark(p)), Some(p));
        assert_eq!(decode_mark(&[0; 11]), None);
    }

    #[test]
    fn clean_segment_replays_last_record_per_key() {
        let mut buf = Vec::new();
        mark(&mut buf, 1, Position::default());
        put(&mut buf, 2, b"a", b"one");
        put(&mut buf, 3, b"b", b"two");
        tomb(&mut buf, 4, b"a");
        let c = put(&mut buf, 5, b"c", b"three");
        let end = buf.len();
        buf.resize(end + 4096, 0);
        let scan = scan_segment(&buf, A);
        assert!(scan.bad.is_empty());
        assert_eq!(scan.end, end);
        let mut puts = Vec::new();
        let rec = replay(&[(0, scan)], |k| puts.push(k.to_vec()));
        assert_eq!(puts.len(), 3);
        assert!(rec.index.get(&k(b"a")).is_none());
        assert_eq!(rec.index.get(&k(b"c")).unwrap().offset as usize, c);
        assert_eq!(rec.index.len(), 2);
        assert_eq!(rec.tombstoned, vec![k(b"a")]);
        assert!(rec.corruption.is_empty());
        assert_eq!(rec.segments[0].append_at, end);
    }

    #[test]
    fn damage_past_the_mark_is_a_torn_tail_and_is_truncated() {
        let mut buf = Vec::new();
        mark(&mut buf, 1, Position::default());
        put(&mut buf, 2, b"a", b"acked");
        let second_group = buf.len();
        mark(
            &mut buf,
            3,
            Position {
                segment: 0,
                offset: second_group as u64,
            },
        );
        let torn = put(&mut buf, 4, b"b", &[7u8; 100]);
        put(&mut buf, 5, b"c", b"after the tear");
        buf.resize(buf.len() + 512, 0);
        buf[torn + HEADER_LEN + 34 + 50] ^= 1;
        let scan = scan_segment(&buf, A);
        let rec = replay(&[(0, scan)], |_| {});
        assert!(rec.corruption.is_empty(), "{:?}", rec.corruption);
        assert_eq!(rec.segments[0].torn_at, Some(torn));
        assert_eq!(rec.segments[0].append_at, torn);
        assert!(rec.index.contains(&k(b"a")));
        assert!(!rec.index.contains(&k(b"b")));
        assert!(
            !rec.index.contains(&k(b"c")),
            "records past a tear were never synced"
        );
        assert_eq!(rec.dropped_after_tear, 2);
    }

    #[test]
    fn damage_before_the_mark_is_corruption_and_later_records_survive() {
        let mut buf = Vec::new();
        mark(&mut buf, 1, Position::default());
        let a = put(&mut buf, 2, b"a", &[1u8; 64]);
        put(&mut buf, 3, b"b", &[2u8; 64]);
        let durable = buf.len();
        mark(
            &mut buf,
            4,
            Position {
                segment: 0,
                offset: durable as u64,
            },
        );
        put(&mut buf, 5, b"c", b"tail");
        buf.resize(buf.len() + 64, 0);
        // Payload damage: the header still reads, so the key is indexed and reads report it.
        buf[a + HEADER_LEN + 34 + 3] ^= 0x80;
        let scan = scan_segment(&buf, A);
        let rec = replay(&[(0, scan)], |_| {});
        assert_eq!(rec.corruption.len(), 1);
        assert_eq!(rec.corruption[0].offset, a);
        assert!(
            rec.index.contains(&k(b"a")),
            "damaged record stays findable"
        );
        assert!(rec.index.contains(&k(b"b")) && rec.index.contains(&k(b"c")));
        assert_eq!(rec.segments[0].torn_at, None);
    }

    #[test]
    fn smashed_header_before_the_mark_resyncs_at_the_next_record() {
        let mut buf = Vec::new();
        mark(&mut buf, 1, Position::default());
        let a = put(&mut buf, 2, b"a", &[1u8; 64]);
        put(&mut buf, 3, b"b", &[2u8; 64]);
        let next = Position {
            segment: 1,
            offset: 0,
        };
        buf.resize(buf.len() + 64, 0);
        buf[a..a + 8].fill(0xee);
        let mut later = Vec::new();
        mark(&mut later, 4, next);
        later.resize(64, 0);
        let rec = replay(
            &[(0, scan_segment(&buf, A)), (1, scan_segment(&later, A))],
            |_| {},
        );
        assert_eq!(rec.durable, next);
        assert_eq!(rec.corruption.len(), 1);
        assert!(
            !rec.index.contains(&k(b"a")),
            "its header is gone: not indexable"
        );
        assert!(rec.index.contains(&k(b"b")));
    }

    /// Real blocks (payloads that hash to their keys) behind a mark, with the segment's
    /// offsets of each record.
    fn real_blocks(count: usize) -> (Vec<u8>, Vec<(Vec<u8>, usize)>) {
        let mut buf = Vec::new();
        mark(&mut buf, 1, Position::default());
        let mut blocks = Vec::new();
        for i in 0..count {
            let data = vec![i as u8 + 1; 100 + 40 * i];
            let at = buf.len();
            encode_into(&mut buf, 2 + i as u64, &k(&data), Payload::Data(&data), A).unwrap();
            blocks.push((k(&data), at));
        }
        // A closing mark: everything before it was durable.
        let end = buf.len();
        mark(
            &mut buf,
            99,
            Position {
                segment: 0,
                offset: end as u64,
            },
        );
        buf.resize(buf.len() + 256, 0);
        (buf, blocks)
    }

    #[test]
    fn any_flip_in_a_header_or_key_costs_that_record_only_and_names_it() {
        let (clean, blocks) = real_blocks(4);
        let (victim, at) = blocks[1].clone();
        for byte in at..at + HEADER_LEN + victim.len() {
            for bit in 0..8 {
                let mut buf = clean.clone();
                buf[byte] ^= 1 << bit;
                let rec = replay(&[(0, scan_segment(&buf, A))], |_| {});
                let what = format!("byte {} bit {bit}", byte - at);
                for (key, offset) in blocks.iter().filter(|(key, _)| *key != victim) {
                    let loc = rec.index.get(key).unwrap_or_else(|| panic!("{what}: lost"));
                    assert_eq!(loc.offset as usize, *offset, "{what}");
                }
                assert_eq!(rec.corruption.len(), 1, "{what}: {:?}", rec.corruption);
                let bad = &rec.corruption[0];
                assert_eq!(bad.offset, at, "{what}");
                // Every flip here leaves the payload intact, so its hash names the block.
                let (key, trust) = bad.key.clone().unwrap_or_else(|| panic!("{what}: unnamed"));
                assert!(trust.is_proven(), "{what}: {trust:?}");
                assert_eq!(key, victim, "{what}");
                assert!(
                    rec.index.contains(&victim),
                    "{what}: reads must say corrupt"
                );
                assert!(rec.segments[0].torn_at.is_none(), "{what}");
            }
        }
    }

    #[test]
    fn a_damaged_payload_is_named_by_its_stored_key_and_nothing_else_moves() {
        let (clean, blocks) = real_blocks(3);
        let (victim, at) = blocks[0].clone();
        let mut buf = clean.clone();
        buf[at + HEADER_LEN + victim.len() + 7] ^= 0x04;
        let rec = replay(&[(0, scan_segment(&buf, A))], |_| {});
        assert_eq!(rec.corruption.len(), 1);
        assert_eq!(
            rec.corruption[0].key,
            Some((victim.clone(), KeyTrust::Unverified))
        );
        for (key, offset) in &blocks {
            assert_eq!(rec.index.get(key).unwrap().offset as usize, *offset);
        }
    }

    #[test]
    fn later_segments_override_earlier_ones() {
        let mut s0 = Vec::new();
        put(&mut s0, 1, b"k", b"old");
        let mut s1 = Vec::new();
        let at = put(&mut s1, 2, b"k", b"new!");
        let rec = replay(
            &[(3, scan_segment(&s0, A)), (4, scan_segment(&s1, A))],
            |_| {},
        );
        let loc = rec.index.get(&k(b"k")).unwrap();
        assert_eq!((loc.segment, loc.offset as usize, loc.len), (4, at, 4));
        assert_eq!(rec.index.bytes(), 4);
    }
}
