//! Reading tensor data back: full tensors directly, deltas against their base, chunk
//! recipes (formats 3 and 4) each from its key through its patches.
//!
//! Recipes are decoded in parallel across the cores, a window of chunks at a time: the
//! blocks of a window are fetched in one pass, then each thread rebuilds and verifies a
//! share of its chunks, and the caller receives them in order (so a file is written
//! sequentially).

use bytes::{Bytes, BytesMut};
use cid::Cid;
use ipfrs_storage::{Block, BlockStore};

use crate::chunking::tensor_len;
use crate::codec;
use crate::delta::{self, Transform};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::ledger::Ledger;
use crate::objects::{
    ChunkSource, Chunked, Delta, InlinePayloads, Key, Object, Patch, Recipe, Tensor, TensorObject,
};
use crate::refs::RefStore;
use crate::repo::Repo;
use crate::tensors::TensorData;

/// The chunk bytes a decoding window holds at most (see `Repo::decode_window`): 64 chunks of
/// 1 MiB, the default's window on two cores.
const WINDOW_BYTES: usize = 64 << 20;

impl<S: BlockStore, R: RefStore, L: Ledger> Repo<S, R, L> {
    /// The logical bytes of the chunks at `indices` of a tensor object (every index must be
    /// below its chunk count), reconstructed bit for bit. Delta chunks are verified against
    /// their recorded CIDs.
    pub async fn read_chunks(
        &self,
        cid: &Cid,
        obj: &TensorObject,
        indices: &[usize],
    ) -> Result<Vec<Bytes>> {
        match obj {
            TensorObject::Full(t) => {
                let cids: Vec<Cid> = indices.iter().map(|&i| t.chunks[i]).collect();
                self.blocks(&cids).await
            }
            TensorObject::Delta(d) => {
                let base = self.full_tensor(&d.base).await?;
                let version = check_delta(cid, d, &base)?;
                self.read_delta_chunks(d, version, &base, indices).await
            }
            TensorObject::Chunked(c) => self.read_recipes(cid, c, indices).await,
        }
    }

    /// The bytes of the chunks at `indices` of `tensor` (object `cid`), rebuilt from their
    /// recipes and verified, in order.
    pub(crate) async fn read_recipes(
        &self,
        cid: &Cid,
        tensor: &Chunked,
        indices: &[usize],
    ) -> Result<Vec<Bytes>> {
        check_chunked(cid, tensor)?;
        let mut out = Vec::with_capacity(indices.len());
        // Window k decodes on its own thread while window k + 1 is fetched: the store's
        // reads and the decoding overlap.
        let mut decoding: Option<std::thread::JoinHandle<Result<Vec<Bytes>>>> = None;
        for window in indices.chunks(self.decode_window()) {
            let recipes = window.iter().map(|&i| tensor.chunks[i].clone()).collect();
            let inputs = self.recipe_inputs(recipes, tensor.chunk_bytes).await?;
            let jobs: Vec<_> = window
                .iter()
                .zip(inputs)
                .map(|(&i, (r, key, patches))| (chunk_len_at(tensor, i), r, key, patches))
                .collect();
            if let Some(h) = decoding.take() {
                out.extend(join(h)?);
            }
            let dtype = tensor.dtype;
            decoding = Some(std::thread::spawn(move || {
                parallel_map(jobs, |(len, r, key, patches)| {
                    rebuild(dtype, len, &r, &key, &patches)
                })
            }));
        }
        if let Some(h) = decoding {
            out.extend(join(h)?);
        }
        Ok(out)
    }

    /// What rebuilds each of `recipes`: the recipe with its chain walked
    /// ([`Self::resolve_chains`]), its key's bytes and its patches' payloads, in order. The
    /// blocks are fetched in requests bounded by bytes, a key counted as `chunk_bytes`;
    /// payloads the links carried inline are not fetched.
    pub(crate) async fn recipe_inputs(
        &self,
        mut recipes: Vec<Recipe>,
        chunk_bytes: u64,
    ) -> Result<Vec<(Recipe, Bytes, Vec<Bytes>)>> {
        let inline = self.resolve_chains(&mut recipes).await?;
        let mut cids = Vec::new();
        let mut sizes = Vec::new();
        // Per patch, in order: its payload if its link carried it, else `None` (fetched).
        let mut carried = Vec::new();
        for r in &recipes {
            cids.push(r.key.block());
            sizes.push(chunk_bytes);
            for p in &r.patches {
                let data = inline.get(&p.payload).cloned();
                if data.is_none() {
                    cids.push(p.payload);
                    sizes.push(u64::from(p.bytes));
                }
                carried.push(data);
            }
        }
        let mut got = self.blocks_sized(&cids, &sizes).await?.into_iter();
        let mut carried = carried.into_iter();
        Ok(recipes
            .into_iter()
            .map(|r| {
                let key = got.next().unwrap_or_default();
                let patches = r
                    .patches
                    .iter()
                    .map(|_| match carried.next().flatten() {
                        Some(data) => data,
                        None => got.next().unwrap_or_default(),
                    })
                    .collect();
                (r, key, patches)
            })
            .collect())
    }

    /// Walks the chains of `recipes`: each then lists all its patches, oldest first, and
    /// has no chain. The chains are walked together, one request per link depth. A link
    /// that is not one, or a chain longer or shorter than its recipe says, is an error
    /// naming the recipe's chunk: its bytes cannot be rebuilt. Returns the payloads the
    /// links carried inline, by their CID: those patches have no block of their own
    /// ([`Self::payload`] reads either kind).
    pub async fn resolve_chains(&self, recipes: &mut [Recipe]) -> Result<InlinePayloads> {
        // (recipe, its chain's depth, next link, patches newest first)
        let mut walks: Vec<(usize, usize, Option<Cid>, Vec<Patch>)> = recipes
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                r.chain
                    .map(|c| (i, c.depth as usize, Some(c.head), Vec::new()))
            })
            .collect();
        let mut inline = InlinePayloads::new();
        loop {
            let (mut wanted, mut sizes) = (Vec::new(), Vec::new());
            for (i, depth, next, _) in &walks {
                if let Some(cid) = next {
                    wanted.push(*cid);
                    // A link and the average payload of its chain (inline when small).
                    let chain = recipes[*i].chain.map_or(0, |c| c.bytes);
                    sizes.push(LINK_BYTES + chain / (*depth).max(1) as u64);
                }
            }
            if wanted.is_empty() {
                break;
            }
            let mut got = self.blocks_sized(&wanted, &sizes).await?.into_iter();
            for (i, depth, next, patches) in walks.iter_mut() {
                let Some(cid) = *next else { continue };
                let (r, depth) = (&recipes[*i], *depth);
                let bad = |reason: String| Error::BadDelta {
                    cid: Box::new(r.chunk),
                    reason,
                };
                let data = got.next().unwrap_or_default();
                let Object::Link(link) = Object::decode(&cid, &data, "link")? else {
                    return Err(bad(format!("{cid} in its patch chain is not a link")));
                };
                if let Some(payload) = link.data {
                    if payload.len() != link.patch.bytes as usize {
                        return Err(bad(format!(
                            "link {cid} holds {} bytes of patch, it says {}",
                            payload.len(),
                            link.patch.bytes
                        )));
                    }
                    inline.insert(link.patch.payload, Bytes::from(payload));
                }
                patches.push(link.patch);
                if patches.len() > depth || (patches.len() == depth) != link.prev.is_none() {
                    return Err(bad(format!("its patch chain is not {depth} links long")));
                }
                *next = link.prev;
            }
        }
        for (i, _, _, mut patches) in walks {
            let r = &mut recipes[i];
            patches.reverse();
            patches.append(&mut r.patches);
            r.patches = patches;
            r.chain = None;
        }
        Ok(inline)
    }

    /// The payload of patch `p` of a walked recipe: inline in its link (`inline`, from
    /// [`Self::resolve_chains`]) or its own block.
    pub async fn payload(&self, p: &Patch, inline: &InlinePayloads) -> Result<Bytes> {
        match inline.get(&p.payload) {
            Some(data) => Ok(data.clone()),
            None => self.block(&p.payload).await,
        }
    }

    /// Chunks decoded per pass: `batch_blocks` per core, enough to keep every core busy
    /// between fetches, and no more than [`WINDOW_BYTES`] of chunks (at least two per core),
    /// so that the memory in flight does not grow with the cores or the chunk size.
    pub(crate) fn decode_window(&self) -> usize {
        let cores = cores().max(2);
        let by_bytes = (WINDOW_BYTES / self.config.chunk_bytes.max(1)).max(2 * cores);
        (self.config.batch_blocks.max(1) * cores).min(by_bytes)
    }

    async fn read_delta_chunks(
        &self,
        d: &Delta,
        version: delta::Version,
        base: &Tensor,
        indices: &[usize],
    ) -> Result<Vec<Bytes>> {
        let elem = d.dtype.size();
        let mut out = Vec::with_capacity(indices.len());
        for batch in indices.chunks(self.config.batch_blocks.max(1)) {
            // One request for the batch: stored chunks, and base + payload for XOR chunks.
            let mut wanted = Vec::with_capacity(batch.len() * 2);
            for &i in batch {
                let c = &d.chunks[i];
                match c.from {
                    ChunkSource::Base => wanted.push(base.chunks[i]),
                    ChunkSource::Raw => wanted.push(c.chunk),
                    ChunkSource::Xor(x) | ChunkSource::Sub(x) => {
                        wanted.push(base.chunks[i]);
                        wanted.push(x);
                    }
                }
            }
            let mut got = self.blocks(&wanted).await?.into_iter();
            // Stored chunks go straight out; coded ones are decoded below, in parallel.
            let mut slots: Vec<Option<Bytes>> = Vec::with_capacity(batch.len());
            let mut jobs = Vec::new();
            for (slot, &i) in batch.iter().enumerate() {
                let c = &d.chunks[i];
                let first = got.next().unwrap_or_default();
                match c.from.payload() {
                    None => slots.push(Some(first)),
                    Some((transform, x)) => {
                        let payload = got.next().unwrap_or_default();
                        jobs.push((slot, i, transform, x, c.chunk, first, payload));
                        slots.push(None);
                    }
                }
            }
            for (slot, data) in decode_all(jobs, version, elem)? {
                slots[slot] = Some(data);
            }
            out.extend(slots.into_iter().map(Option::unwrap_or_default));
        }
        Ok(out)
    }

    /// A whole tensor, reconstructed.
    pub async fn read_tensor(&self, cid: &Cid) -> Result<TensorData> {
        let obj = self.tensor_object(cid).await?;
        let indices: Vec<usize> = (0..obj.chunk_cids().len()).collect();
        let len = tensor_len(obj.dtype(), obj.shape()).ok_or_else(|| Error::Decode {
            cid: Box::new(*cid),
            expected: "tensor",
            reason: "shape overflows".into(),
        })?;
        let mut data = BytesMut::with_capacity(usize::try_from(len).unwrap_or(0));
        for part in self.read_chunks(cid, &obj, &indices).await? {
            data.extend_from_slice(&part);
        }
        if data.len() as u64 != len {
            return Err(Error::Decode {
                cid: Box::new(*cid),
                expected: "tensor",
                reason: format!("chunks hold {} bytes, shape needs {len}", data.len()),
            });
        }
        Ok(TensorData {
            dtype: obj.dtype(),
            shape: obj.shape().to_vec(),
            data: data.freeze(),
        })
    }
}

/// A delta must name an encoding this code decodes (returned) and describe the same layout
/// as its base.
pub(crate) fn check_delta(cid: &Cid, d: &Delta, base: &Tensor) -> Result<delta::Version> {
    let bad = |reason: String| {
        Err(Error::BadDelta {
            cid: Box::new(*cid),
            reason,
        })
    };
    let Some(version) = delta::Version::of(&d.encoding) else {
        return bad(format!("unknown encoding {:?}", d.encoding));
    };
    if d.dtype != base.dtype || d.shape != base.shape {
        return bad(format!(
            "delta is {} {:?} but its base {} is {} {:?}",
            d.dtype, d.shape, d.base, base.dtype, base.shape
        ));
    }
    if d.chunk_bytes != base.chunk_bytes || d.chunks.len() != base.chunks.len() {
        return bad(format!(
            "delta has {} chunks of {} bytes, its base {} of {}",
            d.chunks.len(),
            d.chunk_bytes,
            base.chunks.len(),
            base.chunk_bytes
        ));
    }
    Ok(version)
}

/// About the size of a [`crate::objects::PatchLink`] block without an inline payload.
const LINK_BYTES: u64 = 128;

/// A recipe object must name a format this code decodes.
pub(crate) fn check_chunked(cid: &Cid, t: &Chunked) -> Result<()> {
    let format = t.format.as_str();
    if format != crate::objects::CHUNKED_FORMAT && format != crate::objects::CHUNKED_FORMAT_V3 {
        return Err(Error::BadDelta {
            cid: Box::new(*cid),
            reason: format!("unknown format {:?}", t.format),
        });
    }
    Ok(())
}

/// The available cores (1 when unknown).
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1)
}

/// The bytes recipe `r` of a tensor of `dtype` rebuilds from its key's and patches'
/// blocks, before verification; `len` is the chunk's length.
pub(crate) fn apply_recipe(
    dtype: DType,
    len: usize,
    r: &Recipe,
    key: &[u8],
    patches: &[Bytes],
) -> Result<Vec<u8>> {
    let bad = |cid: Cid, reason: String| Error::BadDelta {
        cid: Box::new(cid),
        reason,
    };
    let mut data = match r.key {
        Key::Raw(_) => key.to_vec(),
        Key::Packed(k) => codec::unpack(key, dtype, len).map_err(|e| bad(k, e))?,
    };
    if patches.len() != r.patches.len() {
        return Err(bad(r.chunk, "patch blocks missing".into()));
    }
    for (p, payload) in r.patches.iter().zip(patches) {
        delta::decode_in_place(
            delta::Version::V2,
            p.transform,
            payload,
            &mut data,
            dtype.size(),
        )
        .map_err(|e| bad(p.payload, e))?;
    }
    Ok(data)
}

/// The length of chunk `i` of a tensor: `chunk_bytes`, or less for its last chunk.
pub(crate) fn chunk_len_at(t: &Chunked, i: usize) -> usize {
    let total = crate::chunking::tensor_len(t.dtype, &t.shape).unwrap_or(0);
    let start = (i as u64).saturating_mul(t.chunk_bytes);
    usize::try_from(total.saturating_sub(start).min(t.chunk_bytes)).unwrap_or(0)
}

/// The result of a decoding thread; a panic in it is a bug, re-raised here.
fn join<T>(h: std::thread::JoinHandle<T>) -> T {
    h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// Rebuilds a chunk of `len` bytes from recipe `r` and checks it against its recorded CID.
fn rebuild(dtype: DType, len: usize, r: &Recipe, key: &[u8], patches: &[Bytes]) -> Result<Bytes> {
    let data = apply_recipe(dtype, len, r, key, patches)?;
    let block =
        Block::from_parts(r.chunk, data).map_err(|_| Error::ChunkMismatch { cid: r.chunk })?;
    Ok(block.into_parts().1)
}

/// `f` over `jobs` on up to one thread per core, results in the jobs' order.
pub(crate) fn parallel_map<J: Send, T: Send>(
    jobs: Vec<J>,
    f: impl Fn(J) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let threads = cores().min(jobs.len());
    if threads <= 1 {
        return jobs.into_iter().map(f).collect();
    }
    let per = jobs.len().div_ceil(threads);
    let mut groups: Vec<Vec<J>> = Vec::new();
    let mut jobs = jobs.into_iter().peekable();
    while jobs.peek().is_some() {
        groups.push(jobs.by_ref().take(per).collect());
    }
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = groups
            .into_iter()
            .map(|g| s.spawn(move || g.into_iter().map(f).collect::<Result<Vec<T>>>()))
            .collect();
        let mut out = Vec::new();
        for h in handles {
            // A panic in a decoder thread is a bug; re-raise it on this thread.
            let part = h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))?;
            out.extend(part);
        }
        Ok(out)
    })
}

/// One coded chunk to rebuild: (slot, index, transform, payload CID, chunk CID, base bytes,
/// payload bytes).
type Job = (usize, usize, Transform, Cid, Cid, Bytes, Bytes);

/// Decodes and verifies coded chunks, spread over the cores: decoding (zstd, the inverse
/// transform, SHA-256 of the result) is CPU work that dominates a checkout of deltas.
fn decode_all(jobs: Vec<Job>, version: delta::Version, elem: usize) -> Result<Vec<(usize, Bytes)>> {
    let decode = |(slot, i, transform, x, chunk, base, payload): Job| -> Result<(usize, Bytes)> {
        let data = delta::decode(version, transform, &payload, &base, elem).map_err(|reason| {
            Error::BadDelta {
                cid: Box::new(x),
                reason: format!("chunk {i}: {reason}"),
            }
        })?;
        // The recorded CID makes the reconstruction self-checking.
        let block =
            Block::from_parts(chunk, data).map_err(|_| Error::ChunkMismatch { cid: chunk })?;
        Ok((slot, block.into_parts().1))
    };
    let threads = std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1)
        .min(jobs.len());
    if threads <= 1 {
        return jobs.into_iter().map(decode).collect();
    }
    let per = jobs.len().div_ceil(threads);
    let mut groups: Vec<Vec<Job>> = Vec::new();
    let mut jobs = jobs.into_iter().peekable();
    while jobs.peek().is_some() {
        groups.push(jobs.by_ref().take(per).collect());
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = groups
            .into_iter()
            .map(|g| s.spawn(move || g.into_iter().map(decode).collect::<Result<Vec<_>>>()))
            .collect();
        let mut out = Vec::new();
        for h in handles {
            // A panic in a decoder thread is a bug; re-raise it on this thread.
            let part = h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))?;
            out.extend(part);
        }
        Ok(out)
    })
}
