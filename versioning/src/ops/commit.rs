//! Commit: storing a model state as chunks, deltas and objects, then moving the branch.
//!
//! Per tensor, in order of preference: unchanged since the first parent -> the parent's
//! tensor object is reused as is; same layout as the parent's and the last full version is
//! fewer than `snapshot_every` versions back -> a [`Delta`] against that full version, each
//! chunk stored as shared, XOR-delta or raw, whichever is smallest; otherwise -> a full
//! [`Tensor`] (raw chunks, which still deduplicate with every earlier chunk).

use std::collections::BTreeMap;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use cid::Cid;
use ipfrs_storage::{Block, BlockStore};

use crate::chunking::{chunk_len, split};
use crate::delta;
use crate::error::{Error, Result};
use crate::ledger::Ledger;
use crate::objects::{
    ChunkSource, Commit, Delta, DeltaChunk, Object, Provenance, State, Tensor, TensorObject,
};
use crate::refs::{HEAD, RefStore};
use crate::repo::{Repo, branch_ref};
use crate::tensors::{TensorData, Tensors};

/// Who, why and from what: the descriptive part of a commit.
#[derive(Debug, Clone, Default)]
pub struct CommitInfo {
    /// Author.
    pub author: String,
    /// Message.
    pub message: String,
    /// Provenance.
    pub provenance: Provenance,
    /// Milliseconds since the Unix epoch; `None` for now.
    pub timestamp_ms: Option<u64>,
    /// The `__metadata__` of the safetensors file committed, kept in the state
    /// ([`State::metadata`]) and written back on checkout.
    pub file_metadata: Option<BTreeMap<String, String>>,
}

/// What a commit stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitSummary {
    /// The new commit.
    pub commit: Cid,
    /// The branch it landed on.
    pub branch: String,
    /// Its parents.
    pub parents: Vec<Cid>,
    /// Tensors stored in full.
    pub full: usize,
    /// Tensors stored as deltas.
    pub deltas: usize,
    /// Tensors unchanged since the first parent.
    pub unchanged: usize,
    /// Blocks the store did not hold before.
    pub new_blocks: usize,
    /// Bytes of those blocks.
    pub new_bytes: u64,
}

impl fmt::Display for CommitSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "[{}] {}", self.branch, self.commit)?;
        write!(
            f,
            "tensors: {} full, {} delta, {} unchanged; new blocks: {} ({} bytes)",
            self.full, self.deltas, self.unchanged, self.new_blocks, self.new_bytes
        )
    }
}

/// How one tensor was stored.
enum Stored {
    Full,
    Delta,
    Unchanged,
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl<S: BlockStore, R: RefStore, L: Ledger> Repo<S, R, L> {
    /// Commits `tensors` on `branch`, parented on the branch's tip. A branch that does not
    /// exist yet starts at HEAD's commit, as `git checkout -b` does (so its first commit is a
    /// delta against HEAD and its history joins the one it came from); with no HEAD (an empty
    /// repository) the commit has no parent. [`Repo::commit_orphan`] starts a history of its
    /// own.
    ///
    /// The branch moves by compare-and-swap from the tip read at the start: if another writer
    /// moved it meanwhile, the result is [`Error::Conflict`] and the branch keeps the other
    /// commit (retry to commit on top of it). HEAD then points at the new commit.
    ///
    /// [`Error::Conflict`]: crate::Error::Conflict
    pub async fn commit(
        &self,
        branch: &str,
        tensors: &Tensors,
        info: CommitInfo,
    ) -> Result<CommitSummary> {
        let name = branch_ref(branch);
        crate::refs::validate_name(&name)?;
        let tip = self.refs.get(&name)?;
        let parents: Vec<Cid> = match tip {
            Some(tip) => vec![tip],
            None => self.refs.get(HEAD)?.into_iter().collect(),
        };
        self.write_commit(branch, tip, tensors, parents, info).await
    }

    /// Commits `tensors` as the first commit of a new branch, with no parent (git's
    /// `--orphan`): every tensor is stored in full. [`Error::RefExists`] if the branch exists.
    ///
    /// [`Error::RefExists`]: crate::Error::RefExists
    pub async fn commit_orphan(
        &self,
        branch: &str,
        tensors: &Tensors,
        info: CommitInfo,
    ) -> Result<CommitSummary> {
        let name = branch_ref(branch);
        crate::refs::validate_name(&name)?;
        if self.refs.get(&name)?.is_some() {
            return Err(Error::RefExists(name));
        }
        // Created by compare-and-swap from absent: a branch made meanwhile is a Conflict.
        self.write_commit(branch, None, tensors, Vec::new(), info)
            .await
    }

    /// Stores a state and a commit with `parents` (the first is the base of deltas), then
    /// moves the branch from `tip` (its expected current commit, `None` for a new branch) to
    /// it.
    pub(crate) async fn write_commit(
        &self,
        branch: &str,
        tip: Option<Cid>,
        tensors: &Tensors,
        parents: Vec<Cid>,
        info: CommitInfo,
    ) -> Result<CommitSummary> {
        for (name, t) in tensors {
            t.check(name)?;
        }
        let _guard = self.ledger.writer()?;
        let parent_state = match parents.first() {
            Some(p) => self.commit_state(p).await?,
            None => State::default(),
        };
        let mut summary = CommitSummary {
            commit: Cid::default(),
            branch: branch.to_string(),
            parents: parents.clone(),
            full: 0,
            deltas: 0,
            unchanged: 0,
            new_blocks: 0,
            new_bytes: 0,
        };
        let mut state = State {
            tensors: BTreeMap::new(),
            metadata: info.file_metadata,
        };
        for (name, t) in tensors {
            let previous = parent_state.tensors.get(name);
            let (cid, how) = self.store_tensor(t, previous, &mut summary).await?;
            match how {
                Stored::Full => summary.full += 1,
                Stored::Delta => summary.deltas += 1,
                Stored::Unchanged => summary.unchanged += 1,
            }
            state.tensors.insert(name.clone(), cid);
        }
        let state_block = Object::State(state).to_block()?;
        let commit = Commit {
            state: *state_block.cid(),
            parents: parents.clone(),
            author: info.author,
            message: info.message,
            timestamp_ms: info.timestamp_ms.unwrap_or_else(now_ms),
            provenance: info.provenance,
        };
        let commit_block = Object::Commit(commit).to_block()?;
        let (n, b) = self.put_new(&[state_block, commit_block.clone()]).await?;
        summary.new_blocks += n;
        summary.new_bytes += b;
        summary.commit = *commit_block.cid();
        self.refs
            .compare_and_swap(&branch_ref(branch), tip, Some(summary.commit))?;
        self.set_head(summary.commit)?;
        Ok(summary)
    }

    /// Stores one tensor; returns its object's CID and how it was stored.
    async fn store_tensor(
        &self,
        t: &TensorData,
        previous: Option<&Cid>,
        summary: &mut CommitSummary,
    ) -> Result<(Cid, Stored)> {
        let chunk = chunk_len(t.dtype, self.config.chunk_bytes);
        let parts = split(&t.data, chunk);
        let blocks: Vec<Block> = parts
            .iter()
            .map(|p| Block::new(p.clone()))
            .collect::<Result<_, _>>()?;
        let cids: Vec<Cid> = blocks.iter().map(|b| *b.cid()).collect();
        let layout = |dtype, shape: &[u64], bytes| {
            dtype == t.dtype && shape == t.shape.as_slice() && bytes == chunk as u64
        };

        // The full version a delta would be based on, how many versions back it is, and the
        // parent's delta against it (whose entries are reused for chunks unchanged since).
        let mut base: Option<(Cid, Tensor, u32)> = None;
        let mut parent_delta: Option<Delta> = None;
        if let Some(prev_cid) = previous {
            let prev = self.tensor_object(prev_cid).await?;
            if layout(prev.dtype(), prev.shape(), prev.chunk_bytes()) {
                if prev.chunk_cids() == cids {
                    return Ok((*prev_cid, Stored::Unchanged));
                }
                base = match prev {
                    TensorObject::Full(full) => Some((*prev_cid, full, 1)),
                    TensorObject::Delta(d) => {
                        let full = self.full_tensor(&d.base).await?;
                        let found = (d.base, full, d.depth.saturating_add(1));
                        parent_delta = Some(d);
                        Some(found)
                    }
                };
            }
        }
        if let Some((base_cid, base, depth)) = base
            && depth < self.config.snapshot_every
            && layout(base.dtype, &base.shape, base.chunk_bytes)
            && base.chunks.len() == cids.len()
        {
            let (entries, payloads) = self
                .encode_delta(t, &parts, &cids, &base, parent_delta.as_ref())
                .await?;
            if entries.iter().any(|e| e.from.payload().is_some()) {
                let mut to_store = payloads;
                for (e, b) in entries.iter().zip(&blocks) {
                    if e.from == ChunkSource::Raw {
                        to_store.push(b.clone());
                    }
                }
                let object = Object::Delta(Delta {
                    base: base_cid,
                    encoding: delta::ENCODING.to_string(),
                    depth,
                    dtype: t.dtype,
                    shape: t.shape.clone(),
                    chunk_bytes: chunk as u64,
                    chunks: entries,
                })
                .to_block()?;
                let cid = *object.cid();
                to_store.push(object);
                self.put_counted(&to_store, summary).await?;
                return Ok((cid, Stored::Delta));
            }
        }
        let object = Object::Tensor(Tensor {
            dtype: t.dtype,
            shape: t.shape.clone(),
            chunk_bytes: chunk as u64,
            chunks: cids,
        })
        .to_block()?;
        let cid = *object.cid();
        let mut to_store = blocks;
        to_store.push(object);
        self.put_counted(&to_store, summary).await?;
        Ok((cid, Stored::Full))
    }

    async fn put_counted(&self, blocks: &[Block], summary: &mut CommitSummary) -> Result<()> {
        let (n, b) = self.put_new(blocks).await?;
        summary.new_blocks += n;
        summary.new_bytes += b;
        Ok(())
    }

    /// The delta entries of `t` against `base`, and the XOR payload blocks to store.
    async fn encode_delta(
        &self,
        t: &TensorData,
        parts: &[Bytes],
        cids: &[Cid],
        base: &Tensor,
        parent: Option<&Delta>,
    ) -> Result<(Vec<DeltaChunk>, Vec<Block>)> {
        let elem = t.dtype.size();
        let mut entries: Vec<DeltaChunk> = cids
            .iter()
            .zip(&base.chunks)
            .map(|(c, b)| DeltaChunk {
                chunk: *c,
                from: if c == b {
                    ChunkSource::Base
                } else {
                    ChunkSource::Raw
                },
            })
            .collect();
        // A chunk unchanged since the parent keeps the parent's entry (same base, so its
        // payload is still right): a chain of small updates encodes only what each changed.
        let mut settled: Vec<bool> = entries
            .iter()
            .map(|e| e.from == ChunkSource::Base)
            .collect();
        if let Some(p) = parent.filter(|p| p.chunks.len() == cids.len()) {
            for ((e, pc), done) in entries.iter_mut().zip(&p.chunks).zip(&mut settled) {
                if pc.chunk == e.chunk {
                    e.from = pc.from;
                    *done = true;
                }
            }
        }
        let changed: Vec<usize> = (0..cids.len()).filter(|&i| !settled[i]).collect();
        let mut payloads = Vec::new();
        for batch in changed.chunks(self.config.batch_blocks.max(1)) {
            let base_cids: Vec<Cid> = batch.iter().map(|&i| base.chunks[i]).collect();
            let base_data = self.blocks(&base_cids).await?;
            for (&i, old) in batch.iter().zip(&base_data) {
                if let Some((transform, payload)) =
                    delta::encode(&parts[i], old, elem, self.config.zstd_level)
                {
                    let block = Block::new(payload)?;
                    entries[i].from = match transform {
                        delta::Transform::Xor => ChunkSource::Xor(*block.cid()),
                        delta::Transform::Sub => ChunkSource::Sub(*block.cid()),
                    };
                    payloads.push(block);
                }
            }
        }
        Ok((entries, payloads))
    }
}
