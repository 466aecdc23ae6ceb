//! Walking the DAGs under roots through a block store (for export and gc).

use std::collections::{HashSet, VecDeque};

use bytes::Bytes;
use futures_lite::future::block_on;
use ipfrs_storage::{BlockStore, Cid};

use super::error::{Error, Result};
use crate::car::links;

/// Blocks fetched per `get_many` round trip: enough to keep every shard busy, small enough
/// that a batch of 2 MiB blocks stays well under a gigabyte.
const BATCH: usize = 64;

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

/// Visits every block reachable from `roots` once (by CID), breadth first, fetching in
/// batches. Memory: the set of CIDs seen and the frontier, never block data beyond a batch.
pub fn walk<S: BlockStore>(
    store: &S,
    roots: &[Cid],
    on_missing: OnMissing,
    mut visit: impl FnMut(&Cid, &Bytes) -> Result<()>,
) -> Result<Walked> {
    let mut seen: HashSet<Cid> = HashSet::new();
    let mut queue: VecDeque<(Cid, Cid)> = VecDeque::new();
    for root in roots {
        if seen.insert(*root) {
            queue.push_back((*root, *root));
        }
    }
    let mut walked = Walked::default();
    while !queue.is_empty() {
        let batch: Vec<(Cid, Cid)> = queue.drain(..queue.len().min(BATCH)).collect();
        let cids: Vec<Cid> = batch.iter().map(|(cid, _)| *cid).collect();
        let found = block_on(store.get_many(&cids))?;
        for ((cid, parent), data) in batch.into_iter().zip(found) {
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
                    for child in children {
                        if seen.insert(child) {
                            queue.push_back((child, cid));
                        }
                    }
                }
                None => walked.unfollowed += 1,
            }
        }
    }
    Ok(walked)
}
