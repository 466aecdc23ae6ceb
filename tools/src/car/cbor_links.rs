//! Links (tag 42) in DAG-CBOR, found without decoding values.
//!
//! Why not serde_ipld_dagcbor's link extraction: it validates every text string as UTF-8,
//! and real DAG-CBOR data (Filecoin chain blocks, in go-car's own sample files) holds text
//! strings that are not, which go-ipld-prime accepts. Following links needs only the CBOR
//! framing, so this scanner walks the item heads iteratively (no recursion, so no stack
//! overflow on deep nesting) and reads CIDs only where tag 42 says one is.

use ipfrs_storage::Cid;

/// The CBOR tag DAG-CBOR uses for a CID.
const CID_TAG: u64 = 42;

/// Every CID linked from a DAG-CBOR block, in document order.
pub(crate) fn links(data: &[u8]) -> Result<Vec<Cid>, String> {
    let mut pos = 0usize;
    let mut pending: u64 = 1;
    let mut out = Vec::new();
    while pending > 0 {
        pending -= 1;
        let (major, arg) = head(data, &mut pos)?;
        match major {
            0 | 1 | 7 => {}
            2 | 3 => skip(data, &mut pos, arg)?,
            4 => pending = grow(pending, arg, data.len() - pos)?,
            5 => pending = grow(pending, arg.saturating_mul(2), data.len() - pos)?,
            6 if arg == CID_TAG => {
                let at = pos;
                let (major, len) = head(data, &mut pos)?;
                if major != 2 {
                    return Err(format!("tag 42 at byte {at} is not followed by bytes"));
                }
                let start = pos;
                skip(data, &mut pos, len)?;
                let bytes = &data[start..pos];
                // DAG-CBOR prefixes the binary CID with 0x00 (the identity multibase).
                let Some((0, cid)) = bytes.split_first() else {
                    return Err(format!("CID at byte {at} lacks the 0x00 multibase prefix"));
                };
                let cid = ipfrs_storage::key::parse_cid_bytes(cid)
                    .map_err(|e| format!("bad CID at byte {at}: {e}"))?;
                out.push(cid);
            }
            6 => pending = grow(pending, 1, data.len() - pos)?,
            _ => unreachable!("a major type has three bits"),
        }
    }
    if pos != data.len() {
        return Err(format!(
            "{} bytes after the top-level item",
            data.len() - pos
        ));
    }
    Ok(out)
}

/// Reads an item head at `*pos`: the major type and its argument (length, value or tag).
fn head(data: &[u8], pos: &mut usize) -> Result<(u8, u64), String> {
    let at = *pos;
    let &initial = data
        .get(at)
        .ok_or_else(|| format!("truncated at byte {at}"))?;
    *pos += 1;
    let major = initial >> 5;
    let info = initial & 0x1f;
    let width = match info {
        0..=23 => return Ok((major, u64::from(info))),
        24 => 1,
        25 => 2,
        26 => 4,
        27 => 8,
        31 => {
            return Err(format!(
                "indefinite length at byte {at} (DAG-CBOR forbids it)"
            ));
        }
        _ => return Err(format!("reserved additional info {info} at byte {at}")),
    };
    let bytes = data
        .get(*pos..*pos + width)
        .ok_or_else(|| format!("truncated at byte {at}"))?;
    *pos += width;
    Ok((
        major,
        bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)),
    ))
}

fn skip(data: &[u8], pos: &mut usize, len: u64) -> Result<(), String> {
    let end = usize::try_from(len)
        .ok()
        .and_then(|len| pos.checked_add(len))
        .filter(|&end| end <= data.len())
        .ok_or_else(|| format!("string of {len} bytes at byte {pos} runs past the end"))?;
    *pos = end;
    Ok(())
}

/// Adds `more` items to read; each takes at least one byte, so more than `left` is a lie.
fn grow(pending: u64, more: u64, left: usize) -> Result<u64, String> {
    let total = pending.saturating_add(more);
    if total > left as u64 {
        return Err(format!("{more} items announced, only {left} bytes left"));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn links_inside_invalid_utf8_text_neighbours_are_found() {
        let cid = *ipfrs_storage::Block::new(&b"x"[..]).unwrap().cid();
        let mut doc = vec![0xa2]; // map(2)
        doc.extend([0x61, b'a', 0x62, 0xff, 0xfe]); // "a": text(2) that is not UTF-8
        doc.extend([0x61, b'b', 0xd8, 0x2a]); // "b": tag(42)
        let mut bytes = vec![0x00];
        bytes.extend(cid.to_bytes());
        doc.push(0x58); // bytes(n), n in one byte
        doc.push(bytes.len() as u8);
        doc.extend(bytes);
        assert_eq!(links(&doc).unwrap(), vec![cid]);
    }

    #[test]
    fn malformed_framing_is_refused() {
        for doc in [
            &[][..],
            &[0x9f, 0xff][..],                   // indefinite array
            &[0x85, 0x01][..],                   // array(5) with one item
            &[0x5a, 0xff, 0xff, 0xff, 0xff][..], // bytes(4 GiB)
            &[0x01, 0x02][..],                   // trailing item
            &[0xd8, 0x2a, 0x01][..],             // tag 42 on an integer
        ] {
            assert!(links(doc).is_err(), "{doc:?}");
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(doc in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = links(&doc);
        }
    }
}
