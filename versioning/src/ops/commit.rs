//! Commit: storing a model state as chunk recipes and objects, then moving the branch.
//!
//! Per tensor: unchanged since the first parent -> the parent's tensor object is reused as
//! is; otherwise a [`Chunked`] object whose chunks unchanged since the parent keep the
//! parent's recipe, and whose changed chunks each get the cheapest of a delta against the
//! parent's bytes (extending the recipe, within `RepoConfig::max_chain_depth` patches), a
//! delta against the recipe's key (replacing its patches), or a new compressed key. A
//! parent in an older format (full [`crate::objects::Tensor`] or [`crate::objects::Delta`])
//! is read as recipes where it can be, so histories continue across the format change.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use cid::Cid;
use ipfrs_storage::{Block, BlockStore};
use serde::Serialize;

use crate::chunking::{chunk_len, split};
use crate::codec;
use crate::delta;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::ledger::Ledger;
use crate::objects::{
    CHUNKED_FORMAT, Chain, ChunkSource, Chunked, Commit, INLINE_PATCH_BYTES, Key, Object, Patch,
    PatchLink, Provenance, Recipe, State, TensorObject,
};
use crate::ops::read::{apply_recipe, parallel_map};
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

/// What a commit stored. Serialises with CIDs as text ([`crate::cid_text`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommitSummary {
    /// The new commit.
    #[serde(with = "crate::cid_text")]
    pub commit: Cid,
    /// The branch it landed on.
    pub branch: String,
    /// Its parents.
    #[serde(with = "crate::cid_text::vec")]
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

    /// Stores one tensor as chunk recipes (format 4); returns its object's CID and how it
    /// was stored. See [`Chunked`] for the choice made per chunk.
    async fn store_tensor(
        &self,
        t: &TensorData,
        previous: Option<&Cid>,
        summary: &mut CommitSummary,
    ) -> Result<(Cid, Stored)> {
        // The parent's version, when it has this dtype and shape.
        let prev = match previous {
            Some(cid) => {
                let p = self.tensor_object(cid).await?;
                (p.dtype() == t.dtype && p.shape() == t.shape.as_slice()).then_some((*cid, p))
            }
            None => None,
        };
        // A tensor keeps the chunks it was first stored in: its chains continue only over
        // the same chunks, so a repository whose configured (or default) size changed
        // still stores its next commit of that tensor as patches, not as new keys.
        let chunk = match &prev {
            Some((_, p))
                if usize::try_from(p.chunk_bytes())
                    .is_ok_and(|c| c > 0 && c <= MAX_CHUNK_BYTES && chunk_len(t.dtype, c) == c) =>
            {
                p.chunk_bytes() as usize
            }
            _ => chunk_len(t.dtype, self.config.chunk_bytes),
        };
        let parts = split(&t.data, chunk);
        let cids: Vec<Cid> = parts
            .iter()
            .map(|p| Block::new(p.clone()).map(|b| *b.cid()))
            .collect::<Result<_, _>>()?;

        // The parent's version, when it also has these chunks: the reference of deltas.
        let mut parent: Option<(Cid, TensorObject)> = None;
        if let Some((prev_cid, prev)) = prev
            && prev.chunk_bytes() == chunk as u64
            && prev.chunk_cids().len() == cids.len()
        {
            if prev.chunk_cids() == cids {
                return Ok((prev_cid, Stored::Unchanged));
            }
            parent = Some((prev_cid, prev));
        }
        let recipes_before = match &parent {
            Some((_, obj)) => self.recipes_of(obj).await?,
            None => vec![None; cids.len()],
        };
        let parent_cids = parent.as_ref().map(|(_, o)| o.chunk_cids());
        let cap = depth_cap(self.config.max_chain_depth, cids.len());

        let mut recipes: Vec<Option<Recipe>> = vec![None; cids.len()];
        let mut todo = Vec::new();
        for (i, cid) in cids.iter().enumerate() {
            match (&recipes_before[i], &parent_cids) {
                // Unchanged since the parent, with a recipe to reuse: costs nothing.
                (Some(r), Some(pc)) if pc[i] == *cid && r.depth() <= cap => {
                    recipes[i] = Some(r.clone());
                }
                _ => todo.push(i),
            }
        }
        let mut to_store: Vec<Block> = Vec::new();
        for window in todo.chunks(self.decode_window()) {
            // The parent's bytes of each chunk (the reference of a delta extending its
            // recipe) and its recipe's key bytes (the reference of a delta replacing its
            // patches).
            let (olds, keys) = match &parent {
                Some((pcid, pobj)) if cap > 0 => {
                    let olds = self.read_chunks(pcid, pobj, window).await?;
                    let mut keys: Vec<Option<Bytes>> = vec![None; window.len()];
                    let with_key: Vec<usize> = (0..window.len())
                        .filter(|&w| {
                            recipes_before[window[w]]
                                .as_ref()
                                .is_some_and(|r| r.depth() > 0)
                        })
                        .collect();
                    let key_blocks: Vec<Cid> = with_key
                        .iter()
                        .filter_map(|&w| recipes_before[window[w]].as_ref())
                        .map(|r| r.key.block())
                        .collect();
                    let got = self.blocks(&key_blocks).await?;
                    for (&w, data) in with_key.iter().zip(got) {
                        keys[w] = Some(data);
                    }
                    (olds.into_iter().map(Some).collect(), keys)
                }
                _ => (vec![None; window.len()], vec![None; window.len()]),
            };
            let jobs: Vec<_> = window
                .iter()
                .zip(olds)
                .zip(keys)
                .map(|((&i, old), key)| (i, old, key))
                .collect();
            let level = self.config.zstd_level;
            let chosen = parallel_map(jobs, |(i, old, key)| {
                let before = recipes_before[i].as_ref();
                let key = match (before, key) {
                    (Some(r), Some(k)) => Some(key_bytes(t.dtype, parts[i].len(), r, k)?),
                    _ => None,
                };
                let reference = before.zip(old.as_deref());
                choose(
                    t.dtype,
                    level,
                    cap,
                    &parts[i],
                    cids[i],
                    reference,
                    key.as_deref(),
                )
            })?;
            for (&i, (recipe, blocks)) in window.iter().zip(chosen) {
                recipes[i] = Some(recipe);
                to_store.extend(blocks);
            }
        }
        let chunks: Vec<Recipe> = recipes.into_iter().flatten().collect();
        let object = Object::Chunked(Chunked {
            format: CHUNKED_FORMAT.to_string(),
            dtype: t.dtype,
            shape: t.shape.clone(),
            chunk_bytes: chunk as u64,
            chunks,
        })
        .to_block()?;
        let cid = *object.cid();
        to_store.push(object);
        self.put_counted(&to_store, summary).await?;
        Ok((
            cid,
            if parent.is_some() {
                Stored::Delta
            } else {
                Stored::Full
            },
        ))
    }

    /// The recipe of each chunk of a tensor object, where one can be given without
    /// re-encoding: all of a recipe object, a full tensor's raw chunks, and the stored or
    /// shared chunks of an older delta (its coded chunks have none: if unchanged they are
    /// re-encoded once).
    async fn recipes_of(&self, obj: &TensorObject) -> Result<Vec<Option<Recipe>>> {
        let raw = |chunk: Cid, block: Cid| Some(Recipe::key_only(chunk, Key::Raw(block)));
        Ok(match obj {
            TensorObject::Chunked(c) => c.chunks.iter().cloned().map(Some).collect(),
            TensorObject::Full(f) => f.chunks.iter().map(|&c| raw(c, c)).collect(),
            TensorObject::Delta(d) => {
                let base = self.full_tensor(&d.base).await?;
                d.chunks
                    .iter()
                    .zip(&base.chunks)
                    .map(|(e, &b)| match e.from {
                        ChunkSource::Base => raw(e.chunk, b),
                        ChunkSource::Raw => raw(e.chunk, e.chunk),
                        ChunkSource::Xor(_) | ChunkSource::Sub(_) => None,
                    })
                    .collect()
            }
        })
    }

    async fn put_counted(&self, blocks: &[Block], summary: &mut CommitSummary) -> Result<()> {
        let (n, b) = self.put_new(blocks).await?;
        summary.new_blocks += n;
        summary.new_bytes += b;
        Ok(())
    }
}

/// The largest chunk size taken over from a tensor's parent version (the size it was
/// first stored with, see `store_tensor`): a sanity bound on a number read from the store,
/// far above any chunk size that makes sense for blocks.
const MAX_CHUNK_BYTES: usize = 64 << 20;

/// The largest serialized size wanted of a tensor object: well under the engine's default
/// 2 MiB block limit, whatever the number of chunks.
const MAX_OBJECT_BYTES: usize = 1536 * 1024;
/// Serialized bytes of a recipe without patches (chunk CID, key), rounded up.
const RECIPE_BYTES: usize = 100;
/// Serialized bytes of a recipe's chain (head CID, depth, bytes), rounded up: the same at
/// any depth.
const CHAIN_BYTES: usize = 70;

/// The depth bound of a tensor of `chunks` chunks: `max`, or 0 (keys only) when recipes
/// with a chain would take its object over [`MAX_OBJECT_BYTES`] (tensors of more than
/// about 9,000 chunks).
fn depth_cap(max: u32, chunks: usize) -> u32 {
    if MAX_OBJECT_BYTES / chunks.max(1) >= RECIPE_BYTES + CHAIN_BYTES {
        max
    } else {
        0
    }
}

/// The chain of `r`'s patches (none without `r`) followed by `p` (its payload inline when
/// `data` holds it), and the link blocks to store for it: one for `p`, and one for each
/// patch a format 3 recipe listed itself, so that a chunk's history continues into the
/// chain format.
fn extend_chain(
    r: Option<&Recipe>,
    p: Patch,
    data: Option<Vec<u8>>,
) -> Result<(Chain, Vec<Block>)> {
    let mut prev = r.and_then(|r| r.chain).map(|c| c.head);
    let mut blocks = Vec::new();
    for &patch in r.map_or(&[][..], |r| &r.patches) {
        // Their payloads are blocks already.
        let link = PatchLink {
            prev,
            patch,
            data: None,
        };
        let block = Object::Link(link).to_block()?;
        prev = Some(*block.cid());
        blocks.push(block);
    }
    let link = PatchLink {
        prev,
        patch: p,
        data,
    };
    let block = Object::Link(link).to_block()?;
    let chain = Chain {
        head: *block.cid(),
        depth: r.map_or(0, Recipe::depth).saturating_add(1),
        bytes: r.map_or(0, Recipe::patch_bytes) + u64::from(p.bytes),
    };
    blocks.push(block);
    Ok((chain, blocks))
}

/// The bytes of a recipe's key (decompressed when packed).
fn key_bytes(dtype: DType, len: usize, r: &Recipe, key: Bytes) -> Result<Bytes> {
    Ok(match r.key {
        Key::Raw(_) => key,
        Key::Packed(_) => Bytes::from(apply_recipe(
            dtype,
            len,
            &Recipe::key_only(r.chunk, r.key),
            &key,
            &[],
        )?),
    })
}

/// The patches of a recipe may together hold at most this percentage of the chunk's size
/// before another is appended: a bound on decode cost next to the depth bound (a patch
/// decodes in about the time its bytes take, sparse ones faster). Sparse patches are small
/// and chain up to the depth bound; dense ones (a third of the chunk each) stop at two,
/// after which a changed chunk takes one delta against its key or a new key, so a
/// checkout after any run of dense steps decodes each chunk through its key and at most
/// two dense patches. At 100 (three dense patches) the dense tip of `vcs_bench
/// --checkout-profile` took ~1.1 s of CPU per 256 MiB against ~0.25 s for its keys alone.
const MAX_CHAIN_BYTES_PER_CHUNK: u64 = 50;

/// A patch of at most this fraction (1/n) of the chunk still extends a chain past
/// [`MAX_CHAIN_BYTES_PER_CHUNK`], up to [`MAX_CHAIN_BYTES_SMALL`]. Without it a chunk
/// whose chain holds one large dense step (a 1e-4 step is 59% of the chunk) could not take
/// the next commit's small change as a patch: every later commit replaced the chain by a
/// delta against the key, which carries the dense step again (the default `vcs_bench` run's
/// chain of 1% of rows after such a step cost 9.24% of the model per commit against 0.9%
/// for the same commits before it). A small patch adds little decode time (a sparse one
/// decodes in microseconds) next to the dense patch under it.
const SMALL_PATCH_DIVISOR: usize = 16;

/// The bound on a recipe's patch bytes, as a percentage of the chunk, for small patches
/// (see [`SMALL_PATCH_DIVISOR`]): past it the chain is replaced (a delta against the key or
/// a new key), which pays the dense step once more every few dozen commits, not at each.
const MAX_CHAIN_BYTES_SMALL: u64 = 100;

/// A delta replacing a recipe's patches is preferred to one extending them when it is at
/// most this fraction of the chunk larger, or [`CHAIN_SLACK_DIVISOR`] of the patches it
/// replaces: it decodes in one step instead of many. Small for sparse chains: a replacing
/// delta carries every change since the key, so with a slack of 1/32 of the chunk (8 KiB
/// of 256 KiB) a chain of sparse commits re-based every ~5 commits and stored each change
/// about twice (0.88% of the model per commit over the first ten against 0.69%).
const REKEY_SLACK_DIVISOR: usize = 256;

/// The part of a recipe's patch bytes a replacing delta may cost more than an extending
/// one. Dense steps decode slowly (a patch of a third of the chunk takes about three times
/// a sparse chunk's key), and a delta against the key that holds two of them is barely
/// larger than one: it is taken, and a dense tip decodes through one patch. A sparse
/// chain's replacing delta is about the size of all its patches, far above this.
const CHAIN_SLACK_DIVISOR: u64 = 8;

/// Whether at most `limit` of the `elem`-byte elements of `new` and `old` differ (false
/// when their lengths do), stopping at the first one over.
fn changed_at_most(new: &[u8], old: &[u8], elem: usize, limit: usize) -> bool {
    if new.len() != old.len() || elem == 0 {
        return false;
    }
    // Equal spans are skipped a span at a time: most of a sparse change's chunk is.
    let span = elem * 16;
    let mut changed = 0;
    for (a, b) in new.chunks(span).zip(old.chunks(span)) {
        if a == b {
            continue;
        }
        changed += a
            .chunks(elem)
            .zip(b.chunks(elem))
            .filter(|(x, y)| x != y)
            .count();
        if changed > limit {
            return false;
        }
    }
    true
}

/// The recipe of a changed chunk `new` (CID `cid`) and the blocks it needs stored: the
/// cheapest of a new key (compressed, or raw when that is not smaller), a delta against the
/// parent's bytes extending the parent's recipe (`reference`: recipe and bytes; only within
/// `cap` patches) and a delta against that recipe's key replacing its patches (`key`).
fn choose(
    dtype: DType,
    level: i32,
    cap: u32,
    new: &Bytes,
    cid: Cid,
    reference: Option<(&Recipe, &[u8])>,
    key: Option<&[u8]>,
) -> Result<(Recipe, Vec<Block>)> {
    let elem = dtype.size();
    // A candidate on `key` whose patches are `base`'s (none without it) and then `payload`:
    // its size, recipe and the blocks to store (the payload and the links).
    let chained = |base: Option<&Recipe>, key: Key, transform, payload: Vec<u8>| {
        let size = payload.len();
        let inline = size <= INLINE_PATCH_BYTES;
        let block = Block::new(Bytes::from(payload))?;
        let p = Patch {
            transform,
            payload: *block.cid(),
            bytes: u32::try_from(block.len()).unwrap_or(u32::MAX),
        };
        let data = inline.then(|| block.data().to_vec());
        let (chain, mut blocks) = extend_chain(base, p, data)?;
        if !inline {
            blocks.push(block);
        }
        let recipe = Recipe {
            chain: Some(chain),
            ..Recipe::key_only(cid, key)
        };
        Ok::<_, Error>((size, recipe, blocks))
    };
    let mut best: Option<(usize, Recipe, Vec<Block>)> = None;
    if let Some((r, old)) = reference
        && cap > 0
    {
        let chunk = new.len() as u64;
        // Over the bound for any patch, a chain takes only a small one: a change of more
        // elements than such a patch could hold is not encoded at all (it would be
        // discarded, and encoding is the costly part of a commit).
        let heavy = r.patch_bytes() > chunk * MAX_CHAIN_BYTES_PER_CHUNK / 100;
        let small = new.len() / SMALL_PATCH_DIVISOR;
        if r.depth() < cap
            && r.patch_bytes() <= chunk * MAX_CHAIN_BYTES_SMALL / 100
            && (!heavy || changed_at_most(new, old, elem, small / elem.max(1)))
            && let Some((tr, payload)) = delta::encode(new, old, elem, level)
            && (!heavy || payload.len() <= small)
        {
            best = Some(chained(Some(r), r.key, tr, payload)?);
        }
        if let Some(k) = key
            && let Some((tr, payload)) = delta::encode(new, k, elem, level)
        {
            let slack = (new.len() / REKEY_SLACK_DIVISOR)
                .max(usize::try_from(r.patch_bytes() / CHAIN_SLACK_DIVISOR).unwrap_or(usize::MAX));
            if best
                .as_ref()
                .is_none_or(|(size, _, _)| payload.len() <= size + slack)
            {
                best = Some(chained(None, r.key, tr, payload)?);
            }
        }
    }
    // A new key: compressed keys are rarely below half the chunk, so a delta smaller than
    // that is kept without trying one (compressing is the costly part of a commit).
    if best
        .as_ref()
        .is_none_or(|(size, _, _)| *size >= new.len() / 2)
    {
        let (size, recipe, block) = match codec::pack(new, dtype, level) {
            Some(payload) => {
                let block = Block::new(Bytes::from(payload))?;
                let recipe = Recipe::key_only(cid, Key::Packed(*block.cid()));
                (block.len(), recipe, block)
            }
            None => {
                let recipe = Recipe::key_only(cid, Key::Raw(cid));
                (new.len(), recipe, Block::new(new.clone())?)
            }
        };
        if best.as_ref().is_none_or(|(s, _, _)| size <= *s) {
            best = Some((size, recipe, vec![block]));
        }
    }
    let (_, recipe, blocks) = best.ok_or(Error::ChunkMismatch { cid })?;
    Ok((recipe, blocks))
}
