//! The CIDs a block links to, by codec.

use ipfrs_storage::Cid;

/// dag-pb's multicodec.
const DAG_PB: u64 = 0x70;
/// dag-cbor's multicodec.
const DAG_CBOR: u64 = 0x71;
/// raw's multicodec.
const RAW: u64 = 0x55;

/// A block that claims a codec but does not decode as it.
#[derive(Debug, thiserror::Error)]
#[error("block {cid} does not decode as its codec 0x{codec:x}: {reason}")]
pub struct LinkError {
    /// The block (boxed: CIDs are large and errors travel by value).
    pub cid: Box<Cid>,
    /// Its codec.
    pub codec: u64,
    /// What the decoder said.
    pub reason: String,
}

/// The links of a block, by its CID's codec: dag-pb and dag-cbor are decoded, raw has none.
/// `Ok(None)` for any other codec: the block is kept, its links (if any) cannot be followed.
pub fn links(cid: &Cid, data: &[u8]) -> Result<Option<Vec<Cid>>, LinkError> {
    let fail = |reason: String| LinkError {
        cid: Box::new(*cid),
        codec: cid.codec(),
        reason,
    };
    match cid.codec() {
        RAW => Ok(Some(Vec::new())),
        DAG_PB => {
            let mut out = Vec::new();
            ipld_dagpb::links(data, &mut out).map_err(|e| fail(e.to_string()))?;
            Ok(Some(out))
        }
        DAG_CBOR => super::cbor_links::links(data).map(Some).map_err(fail),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use ipfrs_storage::{Block, Codec, HashAlgorithm};
    use ipld_core::ipld::Ipld;
    use std::collections::BTreeMap;

    #[test]
    fn dag_cbor_links_are_found_at_any_depth() {
        let a = *Block::new(&b"a"[..]).unwrap().cid();
        let b = *Block::new(&b"b"[..]).unwrap().cid();
        let mut map = BTreeMap::new();
        map.insert("x".to_string(), Ipld::Link(a));
        map.insert(
            "y".to_string(),
            Ipld::List(vec![Ipld::Integer(1), Ipld::Link(b)]),
        );
        let bytes = serde_ipld_dagcbor::to_vec(&Ipld::Map(map)).unwrap();
        let block = Block::with(Codec::DagCbor, HashAlgorithm::Sha2_256, bytes).unwrap();
        let mut found = links(block.cid(), block.data()).unwrap().unwrap();
        found.sort();
        let mut want = vec![a, b];
        want.sort();
        assert_eq!(found, want);
    }

    #[test]
    fn raw_has_none_unknown_codecs_are_not_followed() {
        let raw = Block::new(&b"r"[..]).unwrap();
        assert_eq!(links(raw.cid(), raw.data()).unwrap(), Some(vec![]));
        let other = Cid::new_v1(0x0129, *raw.cid().hash());
        assert_eq!(links(&other, raw.data()).unwrap(), None);
    }

    #[test]
    fn undecodable_blocks_are_errors() {
        let junk =
            Block::with(Codec::DagCbor, HashAlgorithm::Sha2_256, &[0xffu8, 0x00][..]).unwrap();
        assert!(links(junk.cid(), junk.data()).is_err());
        let junk = Block::with(Codec::DagPb, HashAlgorithm::Sha2_256, &[0xffu8; 3][..]).unwrap();
        assert!(links(junk.cid(), junk.data()).is_err());
    }
}
