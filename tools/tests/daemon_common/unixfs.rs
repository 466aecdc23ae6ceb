//! UnixFS DAGs built here (so the tests need no data files): a file of raw leaves under
//! balanced dag-pb nodes (Kubo's `--raw-leaves --cid-version 1` shape) and plain directories.

use ipfrs_car::varint;
use ipfrs_storage::{Block, Cid, Codec, HashAlgorithm};

/// UnixFS `Data.Type` of a directory.
const UNIXFS_DIRECTORY: u64 = 1;
/// UnixFS `Data.Type` of a file.
const UNIXFS_FILE: u64 = 2;

fn bytes_field(field: u64, data: &[u8], out: &mut Vec<u8>) {
    varint::write(field << 3 | 2, out);
    varint::write(data.len() as u64, out);
    out.extend_from_slice(data);
}

fn varint_field(field: u64, value: u64, out: &mut Vec<u8>) {
    varint::write(field << 3, out);
    varint::write(value, out);
}

/// A node under construction: its CID, the file bytes below it, the bytes of every block
/// below it (dag-pb's Tsize).
struct Built {
    cid: Cid,
    file_bytes: u64,
    tree_bytes: u64,
}

/// A dag-pb node: links (name, cid, tsize) first, then Data, as dag-pb's canonical form has.
fn pb_node(links: &[(&str, Cid, u64)], unixfs: &[u8]) -> Block {
    let mut node = Vec::new();
    for (name, cid, tsize) in links {
        let mut link = Vec::new();
        bytes_field(1, &cid.to_bytes(), &mut link);
        bytes_field(2, name.as_bytes(), &mut link);
        varint_field(3, *tsize, &mut link);
        bytes_field(2, &link, &mut node);
    }
    bytes_field(1, unixfs, &mut node);
    Block::with(Codec::DagPb, HashAlgorithm::Sha2_256, node).unwrap()
}

fn file_node(children: &[Built], blocks: &mut Vec<Block>) -> Built {
    let mut unixfs = Vec::new();
    varint_field(1, UNIXFS_FILE, &mut unixfs);
    let file_bytes: u64 = children.iter().map(|c| c.file_bytes).sum();
    varint_field(3, file_bytes, &mut unixfs);
    for child in children {
        varint_field(4, child.file_bytes, &mut unixfs);
    }
    let links: Vec<(&str, Cid, u64)> = children.iter().map(|c| ("", c.cid, c.tree_bytes)).collect();
    let block = pb_node(&links, &unixfs);
    let built = Built {
        cid: *block.cid(),
        file_bytes,
        tree_bytes: block.len() as u64 + children.iter().map(|c| c.tree_bytes).sum::<u64>(),
    };
    blocks.push(block);
    built
}

/// A UnixFS file of `data`: raw leaves of `chunk` bytes under a balanced tree of dag-pb
/// nodes of at most `fanout` links. Returns the root and every block in depth-first order
/// (root first), as a CAR export lists them.
pub fn file(data: &[u8], chunk: usize, fanout: usize) -> (Cid, Vec<Block>) {
    let leaves: Vec<Block> = data
        .chunks(chunk)
        .map(|piece| Block::new(piece.to_vec()).unwrap())
        .collect();
    let mut by_cid: std::collections::HashMap<Cid, Block> = std::collections::HashMap::new();
    let mut level: Vec<Built> = leaves
        .iter()
        .map(|b| Built {
            cid: *b.cid(),
            file_bytes: b.len() as u64,
            tree_bytes: b.len() as u64,
        })
        .collect();
    let mut nodes = Vec::new();
    while level.len() > 1 {
        level = level
            .chunks(fanout)
            .map(|children| file_node(children, &mut nodes))
            .collect();
    }
    // A file of one chunk still gets a dag-pb root, so the root is always UnixFS.
    if level[0].cid.codec() == Codec::Raw.code() {
        level = vec![file_node(&level, &mut nodes)];
    }
    let root = level[0].cid;
    for b in leaves.into_iter().chain(nodes) {
        by_cid.insert(*b.cid(), b);
    }
    (root, depth_first(root, &by_cid))
}

/// A UnixFS directory (not sharded) of `entries` (name, root CID, every block of the entry);
/// returns its root and its blocks in depth-first order, root first.
pub fn directory(entries: &[(&str, Cid, Vec<Block>)]) -> (Cid, Vec<Block>) {
    let mut sorted: Vec<&(&str, Cid, Vec<Block>)> = entries.iter().collect();
    sorted.sort_by_key(|(name, _, _)| name.as_bytes().to_vec());
    let links: Vec<(&str, Cid, u64)> = sorted
        .iter()
        .map(|(name, cid, blocks)| (*name, *cid, blocks.iter().map(|b| b.len() as u64).sum()))
        .collect();
    let mut unixfs = Vec::new();
    varint_field(1, UNIXFS_DIRECTORY, &mut unixfs);
    let dir = pb_node(&links, &unixfs);
    let root = *dir.cid();
    let mut by_cid: std::collections::HashMap<Cid, Block> = std::collections::HashMap::new();
    by_cid.insert(root, dir);
    for (_, _, blocks) in entries {
        for b in blocks {
            by_cid.insert(*b.cid(), b.clone());
        }
    }
    (root, depth_first(root, &by_cid))
}

/// The blocks under `root`, depth first in link order, each once.
fn depth_first(root: Cid, by_cid: &std::collections::HashMap<Cid, Block>) -> Vec<Block> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![root];
    while let Some(cid) = stack.pop() {
        if !seen.insert(cid) {
            continue;
        }
        let block = by_cid[&cid].clone();
        let links = ipfrs_tools::car::links(block.cid(), block.data())
            .unwrap()
            .unwrap_or_default();
        stack.extend(links.into_iter().rev());
        out.push(block);
    }
    out
}

/// Pseudo-random bytes (xorshift, seeded): the same file every run, incompressible.
pub fn file_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}
