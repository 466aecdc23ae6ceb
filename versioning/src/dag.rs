//! Walking the versioning DAG from roots: what gc keeps and what a CAR export carries.

use std::collections::HashSet;

use bytes::Bytes;
use cid::Cid;
use ipfrs_storage::{BlockStore, Codec};

use crate::error::Result;
use crate::ledger::Ledger;
use crate::objects::{ChunkSource, Object};
use crate::refs::RefStore;
use crate::repo::Repo;

/// Everything reachable from some roots.
#[derive(Debug, Default)]
pub struct Reachable {
    /// Objects (commits, states, tensors, deltas) with their bytes, in depth-first pre-order
    /// (each root before what it links to).
    pub objects: Vec<(Cid, Bytes)>,
    /// Stored raw blocks: data chunks and delta payloads. Not read.
    pub leaves: Vec<Cid>,
    /// CIDs named in provenance (datasets, gradients): kept by gc if they are in the store,
    /// but not followed, since they may be anything (or live elsewhere).
    pub external: Vec<Cid>,
}

impl Reachable {
    /// The storage keys (multihashes) of everything listed: what gc must keep.
    pub fn keys(&self) -> HashSet<Vec<u8>> {
        self.objects
            .iter()
            .map(|(c, _)| c)
            .chain(&self.leaves)
            .chain(&self.external)
            .map(|c| c.hash().to_bytes())
            .collect()
    }
}

impl<S: BlockStore, R: RefStore, L: Ledger> Repo<S, R, L> {
    /// Walks from `roots`. A root with the dag-cbor codec must be a readable versioning
    /// object; any other root is listed as a leaf. A missing object is an error naming it:
    /// nothing can be said about what it links to.
    pub async fn reachable(&self, roots: &[Cid]) -> Result<Reachable> {
        let mut out = Reachable::default();
        let mut seen: HashSet<Vec<u8>> = HashSet::new();
        let mut stack: Vec<Cid> = Vec::new();
        for root in roots.iter().rev() {
            if root.codec() == Codec::DagCbor.code() {
                stack.push(*root);
            } else if seen.insert(root.hash().to_bytes()) {
                out.leaves.push(*root);
            }
        }
        while let Some(cid) = stack.pop() {
            if !seen.insert(cid.hash().to_bytes()) {
                continue;
            }
            let data = self.block(&cid).await?;
            let object = Object::decode(&cid, &data, "versioning")?;
            out.objects.push((cid, data));
            let leaf = |c: Cid, seen: &mut HashSet<Vec<u8>>, out: &mut Reachable| {
                if seen.insert(c.hash().to_bytes()) {
                    out.leaves.push(c);
                }
            };
            // Children pushed in reverse so they pop in order.
            match object {
                Object::Commit(c) => {
                    out.external.extend(c.provenance.datasets);
                    out.external.extend(c.provenance.gradients);
                    stack.extend(c.parents.iter().rev());
                    stack.push(c.state);
                }
                Object::State(s) => stack.extend(s.tensors.values().rev()),
                Object::Tensor(t) => {
                    for c in t.chunks {
                        leaf(c, &mut seen, &mut out);
                    }
                }
                Object::Delta(d) => {
                    for c in d.chunks {
                        match c.from {
                            // The base's chunk: reached through the base.
                            ChunkSource::Base => {}
                            ChunkSource::Raw => leaf(c.chunk, &mut seen, &mut out),
                            ChunkSource::Xor(x) | ChunkSource::Sub(x) => {
                                leaf(x, &mut seen, &mut out)
                            }
                        }
                    }
                    stack.push(d.base);
                }
                Object::Chunked(t) => {
                    for r in &t.chunks {
                        leaf(r.key.block(), &mut seen, &mut out);
                        for p in &r.patches {
                            leaf(p.payload, &mut seen, &mut out);
                        }
                    }
                    let heads = t.chunks.iter().rev().filter_map(|r| r.chain);
                    stack.extend(heads.map(|c| c.head));
                }
                Object::Link(l) => {
                    // An inline payload is part of the link's block.
                    if l.data.is_none() {
                        leaf(l.patch.payload, &mut seen, &mut out);
                    }
                    stack.extend(l.prev);
                }
            }
        }
        Ok(out)
    }
}
