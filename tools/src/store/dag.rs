//! Walking the DAGs under roots through a block store (for export and gc).

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use futures_lite::future::block_on;
use ipfrs_storage::{BlockStore, Cid};

use super::error::{Error, Result};
use crate::car::links;

/// Blocks fetched per `get_many` round trip: enough to keep every shard busy.
const BATCH: usize = 64;
/// Prefetched blocks kept at most (2 MiB blocks: 256 MiB at worst, typically a few MiB).
const CACHED: usize = 128;

/// What to do when a linked block is not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnMissing {
    /// Stop with [`Error::MissingBlock`] (export: the file would be incomplete).
    Fail,
    /// Note it and go on (gc: a partial DAG keeps what it has).
    Note,
}

/// The outcome of a walk.
#[derive(Debug, Default, Clone)]
pub struct Walked {
    /// Distinct blocks visited.
    pub blocks: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Linked blocks that are not stored (with [`OnMissing::Note`]).
    pub missing: Vec<Cid>,
    /// Blocks whose codec is neither dag-pb, dag-cbor nor raw: kept, links not followed.
    pub unfollowed: u64,
}

/// Visits every block reachable from `roots` once (by CID), depth first in link order (the
/// order go-car and Kubo's `dag export` write, so an export of a DAG imported from such a file
/// gives back the same file). Blocks are fetched in batches: when the next block is not at
/// hand, it is fetched with the next entries of the stack. Memory: the set of CIDs seen, the
/// stack, and at most [`CACHED`] prefetched blocks.
pub fn walk<S: BlockStore>(
    store: &S,
    roots: &[Cid],
    on_missing: OnMissing,
    mut visit: impl FnMut(&Cid, &Bytes) -> Result<()>,
) -> Result<Walked> {
    let mut seen: HashSet<Cid> = HashSet::new();
    // (block, the block that links to it); the top of the stack is visited next.
    let mut stack: Vec<(Cid, Cid)> = roots.iter().rev().map(|r| (*r, *r)).collect();
    let mut cache: HashMap<Cid, Option<Bytes>> = HashMap::new();
    let mut walked = Walked::default();
    while let Some((cid, parent)) = stack.pop() {
        if !seen.insert(cid) {
            continue;
        }
        let data = match cache.remove(&cid) {
            Some(data) => data,
            None => {
                let room = CACHED.saturating_sub(cache.len()).clamp(1, BATCH);
                let mut wanted = vec![cid];
                for (next, _) in stack.iter().rev() {
                    if wanted.len() >= room {
                        break;
                    }
                    if !seen.contains(next) && !cache.contains_key(next) && !wanted.contains(next) {
                        wanted.push(*next);
                    }
                }
                let found = block_on(store.get_many(&wanted))?;
                let mut found = wanted.into_iter().zip(found);
                let first = found.next().and_then(|(_, data)| data);
                cache.extend(found);
                first
            }
        };
        let Some(data) = data else {
            match on_missing {
                OnMissing::Fail => {
                    return Err(Error::MissingBlock {
                        cid: Box::new(cid),
                        parent: Box::new(parent),
                    });
                }
                OnMissing::Note => {
                    walked.missing.push(cid);
                    continue;
                }
            }
        };
        visit(&cid, &data)?;
        walked.blocks += 1;
        walked.bytes += data.len() as u64;
        match links(&cid, &data)? {
            Some(children) => {
                for child in children.into_iter().rev() {
                    if !seen.contains(&child) {
                        stack.push((child, cid));
                    }
                }
            }
            None => walked.unfollowed += 1,
        }
    }
    Ok(walked)
}
