//! Hint files: a sealed segment's record list without the payloads, so recovery does not read
//! every byte of every segment.
//!
//! ```text
//! shard-NNN/segments/00000007.hint   written once segment 7 is sealed and synced
//!
//! magic "IPFhint1" | records_end u64 | count u32 | entries | xxh3-64 of everything before
//! entry: offset u32 | seq u64 | kind u8 | len u32 | key_len u16 | key | [12-byte mark]
//!        kind 0 = put (len = payload length), 1 = tombstone, 2 = mark (followed by its
//!        12-byte payload)
//! ```
//! A hint is only a shortcut: a missing, torn or damaged hint file (checksum, lengths) is
//! ignored and the segment is scanned instead. Recovery also uses a hint only for a segment
//! that the durable mark proves was synced in full, so a hint can never describe records that
//! did not reach the disk. Payload checksums are not checked through a hint; reads check every
//! record they serve, and compaction checks every record it moves.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use xxhash_rust::xxh3::xxh3_64;

use super::recover::{Found, Kind, Position, SegmentScan, decode_mark, encode_mark};

const MAGIC: &[u8; 8] = b"IPFhint1";
const KIND_PUT: u8 = 0;
const KIND_TOMBSTONE: u8 = 1;
const KIND_MARK: u8 = 2;

/// The hint file of segment `id` in `dir`.
pub fn hint_path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("{id:08}.hint"))
}

/// The hint of a clean scan; `None` if the scan found damage (such a segment is always
/// scanned) or holds a record a hint cannot describe.
pub fn encode_hint(scan: &SegmentScan<'_>) -> Option<Vec<u8>> {
    if !scan.bad.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(24 + scan.found.len() * 56);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(scan.end as u64).to_le_bytes());
    out.extend_from_slice(&u32::try_from(scan.found.len()).ok()?.to_le_bytes());
    for found in &scan.found {
        let (kind, len) = match found.kind {
            Kind::Put { len } => (KIND_PUT, len),
            Kind::Tombstone => (KIND_TOMBSTONE, 0),
            Kind::Mark(_) => (KIND_MARK, 0),
            Kind::Damaged { .. } => return None,
        };
        out.extend_from_slice(&u32::try_from(found.offset).ok()?.to_le_bytes());
        out.extend_from_slice(&found.seq.to_le_bytes());
        out.push(kind);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&u16::try_from(found.key.len()).ok()?.to_le_bytes());
        out.extend_from_slice(&found.key);
        if let Kind::Mark(mark) = found.kind {
            out.extend_from_slice(&encode_mark(mark));
        }
    }
    let checksum = xxh3_64(&out);
    out.extend_from_slice(&checksum.to_le_bytes());
    Some(out)
}

/// Reads a hint back as the scan it stands for (keys borrow from `bytes`); `None` if it is
/// not a complete, intact hint.
pub fn decode_hint(bytes: &[u8]) -> Option<SegmentScan<'_>> {
    let (body, checksum) = bytes.split_last_chunk::<8>()?;
    if xxh3_64(body) != u64::from_le_bytes(*checksum) {
        return None;
    }
    let mut r = Reader { buf: body, at: 0 };
    if r.take(8)? != MAGIC {
        return None;
    }
    let end = usize::try_from(r.u64()?).ok()?;
    let count = r.u32()? as usize;
    let mut found = Vec::with_capacity(count.min(body.len() / 19));
    for _ in 0..count {
        let offset = r.u32()? as usize;
        let seq = r.u64()?;
        let kind = r.take(1)?[0];
        let len = r.u32()?;
        let key_len = usize::from(r.u16()?);
        let key = r.take(key_len)?;
        let kind = match kind {
            KIND_PUT => Kind::Put { len },
            KIND_TOMBSTONE => Kind::Tombstone,
            KIND_MARK => Kind::Mark(decode_mark(r.take(12)?)?),
            _ => return None,
        };
        if offset >= end && end > 0 {
            return None;
        }
        found.push(Found {
            offset,
            seq,
            key: Cow::Borrowed(key),
            kind,
        });
    }
    (r.at == body.len()).then_some(SegmentScan {
        found,
        bad: Vec::new(),
        end,
    })
}

/// Writes a hint durably: to a temporary file, synced, renamed into place, directory synced.
pub fn write_hint(dir: &Path, id: u32, hint: &[u8]) -> std::io::Result<()> {
    super::file::write_durably(&hint_path(dir, id), hint)
}

/// Whether the durable mark proves segment `id` was synced in full: a later segment's mark
/// names a position past it.
pub fn proven_durable(id: u32, durable: Position) -> bool {
    durable.segment > id
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let out = self.buf.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(out)
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::segment::recover::{MARK_KEY, scan_segment};
    use crate::segment::{Alignment, Payload, encode_into};

    fn segment() -> Vec<u8> {
        let mut buf = Vec::new();
        let a = Alignment::WORD;
        let mark = encode_mark(Position {
            segment: 3,
            offset: 40,
        });
        encode_into(&mut buf, 1, MARK_KEY, Payload::Data(&mark), a).unwrap();
        encode_into(&mut buf, 2, b"key-a", Payload::Data(&[1u8; 100]), a).unwrap();
        encode_into(&mut buf, 3, b"key-b", Payload::Tombstone, a).unwrap();
        buf.resize(buf.len() + 64, 0);
        buf
    }

    #[test]
    fn a_hint_stands_for_its_scan() {
        let buf = segment();
        let scan = scan_segment(&buf, Alignment::WORD);
        let hint = encode_hint(&scan).unwrap();
        let back = decode_hint(&hint).unwrap();
        assert_eq!(back.found, scan.found);
        assert_eq!(back.end, scan.end);
        assert!(back.bad.is_empty());
    }

    #[test]
    fn any_damage_or_truncation_voids_the_hint() {
        let buf = segment();
        let hint = encode_hint(&scan_segment(&buf, Alignment::WORD)).unwrap();
        for i in 0..hint.len() {
            let mut bad = hint.clone();
            bad[i] ^= 0x10;
            assert!(decode_hint(&bad).is_none(), "flip at {i} accepted");
        }
        for len in 0..hint.len() {
            assert!(
                decode_hint(&hint[..len]).is_none(),
                "truncation to {len} accepted"
            );
        }
    }

    #[test]
    fn a_damaged_segment_gets_no_hint() {
        let mut buf = segment();
        buf[40] ^= 0xff;
        assert!(encode_hint(&scan_segment(&buf, Alignment::WORD)).is_none());
    }

    #[test]
    fn hints_are_written_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let hint = encode_hint(&scan_segment(&segment(), Alignment::WORD)).unwrap();
        write_hint(dir.path(), 7, &hint).unwrap();
        let read = std::fs::read(hint_path(dir.path(), 7)).unwrap();
        assert_eq!(read, hint);
        assert!(!dir.path().join("00000007.hint.tmp").exists());
    }
}
