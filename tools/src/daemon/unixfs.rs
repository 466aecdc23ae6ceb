//! Just enough UnixFS for the gateway's CAR selections: a dag-pb node's links (with names) and
//! its UnixFS `Data` (type, file size, block sizes, inline bytes), so that a path below a CID
//! can be resolved through directories and `dag-scope=entity` / `entity-bytes` can pick the
//! blocks of one file or directory. Nothing is deserialized for the client: the gateway still
//! sends blocks only.
//!
//! UnixFS `Data` is protobuf: field 1 `Type` (varint), 2 `Data` (bytes), 3 `filesize`
//! (varint), 4 `blocksizes` (repeated varint, packed or not), 5 `hashType`, 6 `fanout`;
//! other fields are skipped.

use bytes::Bytes;
use ipfrs_storage::Cid;
use ipld_dagpb::PbNode;

/// dag-pb's multicodec.
const DAG_PB: u64 = 0x70;
/// raw's multicodec.
const RAW: u64 = 0x55;

/// What a block is, as UnixFS sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A raw block: file bytes (a leaf, or a whole small file).
    Raw,
    /// A UnixFS file node (or a legacy `Raw` node).
    File,
    /// A plain directory: one link per entry, by name.
    Directory,
    /// A HAMT-sharded directory node.
    HamtShard,
    /// A symlink, metadata node, or a dag-pb node without UnixFS data.
    Other,
    /// Not UnixFS at all (dag-cbor, ...).
    NotUnixFs,
}

/// One decoded node.
#[derive(Debug, Clone)]
pub struct Node {
    /// Its kind.
    pub kind: Kind,
    /// Links in order: (name, target).
    pub links: Vec<(String, Cid)>,
    /// The file bytes held inline in this node (before those of its children).
    pub inline_len: u64,
    /// The file bytes below each link, in link order (files only).
    pub blocksizes: Vec<u64>,
    /// The file's size (files and raw blocks).
    pub filesize: u64,
    /// A HAMT node's fanout (its entry links are named by a hex prefix of this width).
    pub fanout: u64,
}

/// Why a block could not be read as UnixFS.
#[derive(Debug, thiserror::Error)]
#[error("block {cid} is not valid dag-pb/UnixFS: {reason}")]
pub struct DecodeError {
    /// The block.
    pub cid: Box<Cid>,
    /// What is wrong.
    pub reason: String,
}

/// Decodes `data`, the block of `cid`.
pub fn decode(cid: &Cid, data: &Bytes) -> Result<Node, DecodeError> {
    let fail = |reason: String| DecodeError {
        cid: Box::new(*cid),
        reason,
    };
    let mut node = Node {
        kind: Kind::NotUnixFs,
        links: Vec::new(),
        inline_len: 0,
        blocksizes: Vec::new(),
        filesize: 0,
        fanout: 0,
    };
    match cid.codec() {
        RAW => {
            node.kind = Kind::Raw;
            node.filesize = data.len() as u64;
            node.inline_len = data.len() as u64;
            return Ok(node);
        }
        DAG_PB => {}
        _ => return Ok(node),
    }
    let pb = PbNode::from_bytes(data.clone()).map_err(|e| fail(e.to_string()))?;
    node.links = pb
        .links
        .into_iter()
        .map(|l| (l.name.unwrap_or_default(), l.cid))
        .collect();
    node.kind = Kind::Other;
    let Some(unixfs) = pb.data else {
        return Ok(node);
    };
    let mut reader = Reader {
        bytes: &unixfs,
        at: 0,
    };
    let mut filesize = None;
    while !reader.done() {
        let key = reader.varint().map_err(&fail)?;
        let (field, wire) = (key >> 3, key & 7);
        match (field, wire) {
            (1, 0) => {
                node.kind = match reader.varint().map_err(&fail)? {
                    // Raw (0) and File (2) both hold file bytes.
                    0 | 2 => Kind::File,
                    1 => Kind::Directory,
                    5 => Kind::HamtShard,
                    _ => Kind::Other,
                }
            }
            (2, 2) => node.inline_len = reader.bytes().map_err(&fail)?.len() as u64,
            (3, 0) => filesize = Some(reader.varint().map_err(&fail)?),
            (4, 0) => node.blocksizes.push(reader.varint().map_err(&fail)?),
            (4, 2) => {
                let packed = reader.bytes().map_err(&fail)?;
                let mut inner = Reader {
                    bytes: packed,
                    at: 0,
                };
                while !inner.done() {
                    node.blocksizes.push(inner.varint().map_err(&fail)?);
                }
            }
            (6, 0) => node.fanout = reader.varint().map_err(&fail)?,
            (_, 0) => {
                reader.varint().map_err(&fail)?;
            }
            (_, 1) => reader.skip(8).map_err(&fail)?,
            (_, 2) => {
                reader.bytes().map_err(&fail)?;
            }
            (_, 5) => reader.skip(4).map_err(&fail)?,
            (_, w) => return Err(fail(format!("unsupported protobuf wire type {w}"))),
        }
    }
    if node.kind == Kind::File {
        if node.blocksizes.len() != node.links.len() {
            return Err(fail(format!(
                "{} blocksizes for {} links",
                node.blocksizes.len(),
                node.links.len()
            )));
        }
        // Untrusted numbers: saturate rather than overflow.
        node.filesize = filesize.unwrap_or_else(|| {
            node.blocksizes
                .iter()
                .fold(node.inline_len, |total, s| total.saturating_add(*s))
        });
    }
    Ok(node)
}

impl Node {
    /// The link named `name` of a plain directory.
    pub fn child(&self, name: &str) -> Option<Cid> {
        self.links
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, cid)| *cid)
    }

    /// A HAMT node's links to further shard nodes (named by the hex prefix alone), as
    /// opposed to its entries (prefix followed by the entry's name).
    pub fn shard_links(&self) -> impl Iterator<Item = Cid> + '_ {
        let width = hex_width(self.fanout);
        self.links
            .iter()
            .filter(move |(name, _)| name.len() == width)
            .map(|(_, cid)| *cid)
    }
}

/// Hex digits that name a HAMT bucket of `fanout` (256: two).
fn hex_width(fanout: u64) -> usize {
    let mut width = 0;
    let mut n = fanout.saturating_sub(1);
    while n > 0 {
        width += 1;
        n >>= 4;
    }
    width.max(1)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn done(&self) -> bool {
        self.at >= self.bytes.len()
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self
                .bytes
                .get(self.at)
                .ok_or("truncated varint in UnixFS data")?;
            self.at += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint over 64 bits in UnixFS data".into())
    }

    fn skip(&mut self, n: usize) -> Result<(), String> {
        if self.bytes.len() - self.at < n {
            return Err("truncated field in UnixFS data".into());
        }
        self.at += n;
        Ok(())
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let len = usize::try_from(self.varint()?).map_err(|_| "field too long")?;
        let start = self.at;
        self.skip(len)?;
        Ok(&self.bytes[start..start + len])
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn hex_width_names_buckets() {
        assert_eq!(hex_width(256), 2);
        assert_eq!(hex_width(16), 1);
        assert_eq!(hex_width(4096), 3);
    }

    #[test]
    fn a_truncated_data_field_is_an_error() {
        // Links: none; Data: field 1 (bytes) of 3 bytes: Type=File, then a length that runs
        // past the end.
        let node = PbNode {
            links: Vec::new(),
            data: Some(Bytes::from_static(&[0x08, 0x02, 0x12, 0x05, 0x01])),
        };
        let data = Bytes::from(node.into_bytes());
        let block = ipfrs_storage::Block::with(
            ipfrs_storage::Codec::DagPb,
            ipfrs_storage::HashAlgorithm::Sha2_256,
            data.clone(),
        )
        .unwrap();
        assert!(decode(block.cid(), &data).is_err());
    }
}
