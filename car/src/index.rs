//! The CARv2 index go-car writes by default: MultihashIndexSorted (multicodec 0x0401).
//!
//! Layout (integers little-endian): the codec as a varint; the number of hash codes (u32);
//! for each code in ascending order, the code (u64) then an IndexSorted: the number of buckets
//! (u32), and per bucket, in ascending width, the width (u32: digest length + 8), the bucket's
//! byte length (u64), and its entries sorted by digest, each the digest then the offset (u64)
//! of the block's section from the start of the CARv1 payload. Identity multihashes are not
//! indexed (their data is in the CID), as go-car does by default.

use std::collections::BTreeMap;

use ipfrs_core_types::Cid;
use ipfrs_core_types::key::IDENTITY_CODE;

use crate::varint;

/// The multicodec of MultihashIndexSorted.
const MULTIHASH_INDEX_SORTED: u64 = 0x0401;

/// One digest length's entries: digest -> section offset, sorted by digest.
type Bucket = BTreeMap<Vec<u8>, u64>;

/// Sections' offsets by multihash code, digest length and digest. Memory: about 80 bytes per
/// block (digest, offset and map overhead), held until the file is finished.
#[derive(Debug, Default)]
pub(crate) struct Index {
    entries: BTreeMap<(u64, usize), Bucket>,
}

impl Index {
    /// Records the section of `cid` at `offset` (payload-relative); the first section of a
    /// multihash wins.
    pub(crate) fn add(&mut self, cid: &Cid, offset: u64) {
        let mh = cid.hash();
        if mh.code() == IDENTITY_CODE {
            return;
        }
        self.entries
            .entry((mh.code(), mh.digest().len()))
            .or_default()
            .entry(mh.digest().to_vec())
            .or_insert(offset);
    }

    /// The encoded index.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        varint::write(MULTIHASH_INDEX_SORTED, &mut out);
        let mut codes: BTreeMap<u64, Vec<(usize, &Bucket)>> = BTreeMap::new();
        for (&(code, len), bucket) in &self.entries {
            codes.entry(code).or_default().push((len, bucket));
        }
        out.extend_from_slice(&(codes.len() as u32).to_le_bytes());
        for (code, buckets) in codes {
            out.extend_from_slice(&code.to_le_bytes());
            out.extend_from_slice(&(buckets.len() as u32).to_le_bytes());
            for (len, bucket) in buckets {
                let width = len + 8;
                out.extend_from_slice(&(width as u32).to_le_bytes());
                out.extend_from_slice(&((width * bucket.len()) as u64).to_le_bytes());
                for (digest, offset) in bucket {
                    out.extend_from_slice(digest);
                    out.extend_from_slice(&offset.to_le_bytes());
                }
            }
        }
        out
    }
}
