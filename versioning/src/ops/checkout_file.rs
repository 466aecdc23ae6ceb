//! Checkout to a safetensors file, streamed: no tensor is assembled in memory.
//!
//! The file's layout is known before any data is decoded: the header (from the tensors'
//! names, dtypes and shapes, and the state's `__metadata__`) fixes every tensor's offset.
//! So the header is written first, then every chunk of every tensor is rebuilt by a pool of
//! one thread per core and written at its offset in the file (`pwrite`) as soon as it is
//! rebuilt. The main thread fetches the blocks of the next window of chunks (across
//! tensors, in file order) while the pool decodes the previous one; a bounded queue
//! between them bounds the memory in flight to about two windows. Each decoding thread
//! reuses its buffers for every chunk (fresh ones cost a page fault per 4 KiB), and a
//! chunk stored raw is written from the block itself.
//!
//! What is verified: every block a chunk is rebuilt from (its key and its patches) is the
//! block stored under its CID, because the store checks that on every read (the engine:
//! each block's hash is checked when it is put, and every read checks the record's xxh3
//! checksum over key and payload, or hashes an inline cold block against its key; see
//! `ipfrs_shards::Fetched`). Decoding is deterministic, so the rebuilt chunk is the one the
//! commit encoded. Hashing every rebuilt chunk again with SHA-256 against the chunk CID its
//! recipe records took a quarter of a checkout's CPU, and is what
//! [`Repo::checkout_to_file_verified`] adds: it also checks what the store cannot, that the
//! recipe rebuilds its chunk (a history imported from elsewhere, a store that does not
//! check its reads, a decoder changed since the commit). A raw key stored under a CID
//! other than its chunk's is always hashed. Tensors of the earlier formats are read and
//! verified by [`Repo::read_chunks`], then written. The file is built under a temporary
//! name and put in place of the target in one step only once every chunk is written (an
//! exchange of the two names, then the old file unlinked: ext4 flushes a file renamed over
//! another inside the rename, see `replace_file`), so a failed or interrupted checkout
//! never leaves a partial file under the target's name.

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use cid::Cid;
use ipfrs_storage::BlockStore;

use crate::chunking::tensor_len;
use crate::codec;
use crate::delta;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::ledger::Ledger;
use crate::objects::{Key, Recipe, TensorObject};
use crate::ops::checkout::CheckoutSummary;
use crate::ops::read::{check_chunked, cores};
use crate::refs::RefStore;
use crate::repo::Repo;
use crate::revision::Revision;
use crate::tensors::{HeaderEntry, safetensors_prefix, temp_path};

/// How [`Repo::checkout_to_file_with`] writes its file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckoutOptions {
    /// Flush the file to stable storage (`fsync`) before it is renamed into place. Off by
    /// default, as in git: without it a power loss (not a process crash) soon after the
    /// checkout may leave the file incomplete, and the repository can always write it
    /// again.
    pub fsync: bool,
}

/// One chunk for the decoding pool: its recipe, its blocks, where its bytes go.
struct Job {
    dtype: DType,
    len: usize,
    offset: u64,
    recipe: Recipe,
    key: Bytes,
    patches: Vec<Bytes>,
}

/// What the decoding threads share: the file, the queue, and the first error.
struct Pool {
    file: File,
    /// Hash every rebuilt chunk ([`Repo::checkout_to_file_verified`]).
    verify: bool,
    jobs: Mutex<Receiver<Job>>,
    failed: AtomicBool,
    error: Mutex<Option<Error>>,
}

impl Pool {
    /// Records `e` unless an earlier error was; the others stop at their next job.
    fn fail(&self, e: Error) {
        self.failed.store(true, Ordering::Relaxed);
        if let Ok(mut slot) = self.error.lock() {
            slot.get_or_insert(e);
        }
    }

    /// A decoding thread: rebuilds, verifies and writes jobs until the queue closes. After
    /// a failure it keeps draining the queue (so the sender never blocks) without work.
    fn work(&self, path: &Path) {
        let (mut out, mut scratch) = (Vec::new(), Vec::new());
        loop {
            let job = match self.jobs.lock() {
                Ok(rx) => rx.recv(),
                Err(_) => return,
            };
            let Ok(job) = job else { return };
            if self.failed.load(Ordering::Relaxed) {
                continue;
            }
            if let Err(e) = self.write_chunk(&job, &mut out, &mut scratch, path) {
                self.fail(e);
            }
        }
    }

    fn write_chunk(
        &self,
        job: &Job,
        out: &mut Vec<u8>,
        scratch: &mut Vec<u8>,
        path: &Path,
    ) -> Result<()> {
        let r = &job.recipe;
        let mut verify = self.verify;
        let data: &[u8] = match r.key {
            // A raw key without patches is the chunk: written from the block itself. The
            // store checked the block against its CID, so it is the chunk when that CID
            // has the chunk's hash; under another CID it must be hashed.
            Key::Raw(k) if r.patches.is_empty() => {
                verify |= k.hash() != r.chunk.hash();
                &job.key
            }
            _ => {
                rebuild_into(job, out, scratch)?;
                out
            }
        };
        if data.len() != job.len {
            return Err(Error::BadDelta {
                cid: Box::new(r.chunk),
                reason: format!("rebuilt {} bytes, the chunk has {}", data.len(), job.len),
            });
        }
        if verify {
            ipfrs_storage::verify(&r.chunk, data)
                .map_err(|_| Error::ChunkMismatch { cid: r.chunk })?;
        }
        self.file
            .write_all_at(data, job.offset)
            .map_err(Error::io(path))
    }
}

/// The bytes of `job`'s chunk into `out`, from its key through its patches (unverified).
fn rebuild_into(job: &Job, out: &mut Vec<u8>, scratch: &mut Vec<u8>) -> Result<()> {
    let r = &job.recipe;
    let bad = |cid: Cid, reason: String| Error::BadDelta {
        cid: Box::new(cid),
        reason,
    };
    match r.key {
        Key::Raw(_) => {
            out.clear();
            out.extend_from_slice(&job.key);
        }
        Key::Packed(k) => {
            // Every byte is overwritten by the decoder: only a change of length resizes.
            out.resize(job.len, 0);
            codec::unpack_into(&job.key, job.dtype, out, scratch).map_err(|e| bad(k, e))?;
        }
    }
    if job.patches.len() != r.patches.len() {
        return Err(bad(r.chunk, "patch blocks missing".into()));
    }
    for (p, payload) in r.patches.iter().zip(&job.patches) {
        delta::decode_in_place(
            delta::Version::V2,
            p.transform,
            payload,
            out,
            job.dtype.size(),
        )
        .map_err(|e| bad(p.payload, e))?;
    }
    Ok(())
}

/// A tensor of the state, in file order.
struct Planned {
    cid: Cid,
    obj: TensorObject,
    offset: u64,
}

impl<S: BlockStore, R: RefStore, L: Ledger> Repo<S, R, L> {
    /// Writes the commit `rev` names to a safetensors file and points HEAD at it, byte for
    /// byte the file [`crate::write_safetensors_with_metadata`] would write from
    /// [`Repo::checkout_with_metadata`], without fsync (see [`CheckoutOptions`]). The file
    /// is built under a temporary name and renamed into place once whole: a missing block
    /// or a chunk that fails verification leaves no file and HEAD as is.
    pub async fn checkout_to_file(&self, rev: &Revision, path: &Path) -> Result<CheckoutSummary> {
        self.checkout_to_file_with(rev, path, CheckoutOptions::default())
            .await
    }

    /// [`Repo::checkout_to_file`] with options (fsync).
    pub async fn checkout_to_file_with(
        &self,
        rev: &Revision,
        path: &Path,
        options: CheckoutOptions,
    ) -> Result<CheckoutSummary> {
        self.checkout_streamed(rev, path, options, false).await
    }

    /// [`Repo::checkout_to_file_with`], also hashing every rebuilt chunk (SHA-256) and
    /// comparing it with the chunk CID its recipe records before it is written; a mismatch
    /// is [`Error::ChunkMismatch`] and leaves no file. The store already checks every block
    /// it returns against its CID (the engine does, see the module doc), so this adds one
    /// check: that each recipe rebuilds its chunk. Worth its cost (about a quarter of a
    /// checkout's CPU) for a history imported from elsewhere, a store that does not check
    /// its reads, or after a change of the decoder.
    pub async fn checkout_to_file_verified(
        &self,
        rev: &Revision,
        path: &Path,
        options: CheckoutOptions,
    ) -> Result<CheckoutSummary> {
        self.checkout_streamed(rev, path, options, true).await
    }

    /// The checkout to a file behind the public entry points; `verify` hashes every chunk.
    async fn checkout_streamed(
        &self,
        rev: &Revision,
        path: &Path,
        options: CheckoutOptions,
        verify: bool,
    ) -> Result<CheckoutSummary> {
        let commit = self.resolve(rev).await?;
        let state = self.commit_state(&commit).await?;
        let mut objects = Vec::with_capacity(state.tensors.len());
        for (name, cid) in &state.tensors {
            let obj = self.tensor_object(cid).await?;
            let len = tensor_len(obj.dtype(), obj.shape()).ok_or_else(|| Error::Decode {
                cid: Box::new(*cid),
                expected: "tensor",
                reason: "shape overflows".into(),
            })?;
            objects.push((name.as_str(), *cid, obj, len));
        }
        let entries: Vec<HeaderEntry<'_>> = objects
            .iter()
            .map(|(name, _, obj, len)| HeaderEntry {
                name,
                dtype: obj.dtype(),
                shape: obj.shape(),
                len: *len,
            })
            .collect();
        let (prefix, order) = safetensors_prefix(&entries, state.metadata.as_ref())?;
        drop(entries);
        let bytes: u64 = objects.iter().map(|o| o.3).sum();
        let lens: Vec<u64> = objects.iter().map(|o| o.3).collect();
        let mut offset = prefix.len() as u64;
        let mut planned = Vec::with_capacity(order.len());
        let mut slots: Vec<Option<(Cid, TensorObject)>> = objects
            .into_iter()
            .map(|(_, cid, obj, _)| Some((cid, obj)))
            .collect();
        for i in order {
            let len = lens[i];
            if let Some((cid, obj)) = slots[i].take() {
                planned.push(Planned { cid, obj, offset });
            }
            offset += len;
        }
        let tmp = temp_path(path);
        let written = self
            .write_file(&tmp, &prefix, &planned, offset, verify)
            .await;
        let result = written.and_then(|file| {
            if options.fsync {
                file.sync_all().map_err(Error::io(path))?;
            }
            drop(file);
            crate::ops::replace_file::replace(&tmp, path).map_err(Error::io(path))
        });
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        self.set_head(commit)?;
        Ok(CheckoutSummary {
            commit,
            tensors: planned.len(),
            bytes,
        })
    }

    /// Creates `tmp` and writes the file into it: `prefix`, then every tensor at its
    /// offset; `end` is the file's length; `verify` hashes every chunk.
    async fn write_file(
        &self,
        tmp: &Path,
        prefix: &[u8],
        planned: &[Planned],
        end: u64,
        verify: bool,
    ) -> Result<File> {
        let file = File::create(tmp).map_err(Error::io(tmp))?;
        file.set_len(end).map_err(Error::io(tmp))?;
        file.write_all_at(prefix, 0).map_err(Error::io(tmp))?;
        let window = self.decode_window();
        let (tx, rx) = sync_channel::<Job>(window);
        let pool = Arc::new(Pool {
            file,
            verify,
            jobs: Mutex::new(rx),
            failed: AtomicBool::new(false),
            error: Mutex::new(None),
        });
        let mut workers = Vec::new();
        for _ in 0..cores().max(1) {
            let (p, path) = (Arc::clone(&pool), tmp.to_path_buf());
            // Named, so that a profile of a checkout can select its decoding threads.
            let spawned = std::thread::Builder::new()
                .name("checkout-decode".into())
                .spawn(move || p.work(&path));
            match spawned {
                Ok(w) => workers.push(w),
                // Fewer threads only slow the checkout; none would leave the queue unread.
                Err(e) if workers.is_empty() => return Err(Error::io(tmp)(e)),
                Err(_) => break,
            }
        }
        let sent = self.feed(&tx, &pool, planned, tmp, window).await;
        // Closing the queue ends the workers once it is drained.
        drop(tx);
        for w in workers {
            // A panic in a decoding thread is a bug; re-raise it here.
            w.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
        }
        let pool = Arc::into_inner(pool).ok_or_else(|| Error::Io {
            path: tmp.to_path_buf(),
            source: std::io::Error::other("a decoding thread outlived the checkout"),
        })?;
        sent?;
        if let Some(e) = pool.error.into_inner().ok().flatten() {
            return Err(e);
        }
        Ok(pool.file)
    }

    /// Fetches the blocks of every chunk in file order, a window at a time, and queues
    /// each chunk for the pool; tensors of the earlier formats are read whole here and
    /// written directly. Stops early once the pool has failed.
    async fn feed(
        &self,
        tx: &SyncSender<Job>,
        pool: &Pool,
        planned: &[Planned],
        tmp: &Path,
        window: usize,
    ) -> Result<()> {
        let mut pending: Vec<(DType, usize, u64, &Recipe)> = Vec::new();
        for p in planned {
            match &p.obj {
                TensorObject::Chunked(c) => {
                    check_chunked(&p.cid, c)?;
                    // The chunks must cover the tensor exactly: a missing one would leave
                    // a hole of zeros in the file that no hash check would see.
                    let len = tensor_len(c.dtype, &c.shape).unwrap_or(0);
                    let expected = if c.chunk_bytes == 0 {
                        None
                    } else {
                        usize::try_from(len.div_ceil(c.chunk_bytes)).ok()
                    };
                    if expected != Some(c.chunks.len()) {
                        return Err(Error::Decode {
                            cid: Box::new(p.cid),
                            expected: "tensor",
                            reason: format!(
                                "{} chunks of {} bytes for a tensor of {len} bytes",
                                c.chunks.len(),
                                c.chunk_bytes
                            ),
                        });
                    }
                    let mut at = p.offset;
                    for (i, r) in c.chunks.iter().enumerate() {
                        let len = crate::ops::read::chunk_len_at(c, i);
                        pending.push((c.dtype, len, at, r));
                        at += len as u64;
                        if pending.len() == window {
                            self.send_window(tx, pool, &mut pending).await?;
                        }
                    }
                }
                other => {
                    let indices: Vec<usize> = (0..other.chunk_cids().len()).collect();
                    let mut at = p.offset;
                    for part in self.read_chunks(&p.cid, other, &indices).await? {
                        pool.file.write_all_at(&part, at).map_err(Error::io(tmp))?;
                        at += part.len() as u64;
                    }
                    let len = tensor_len(other.dtype(), other.shape()).unwrap_or(0);
                    if at - p.offset != len {
                        return Err(Error::Decode {
                            cid: Box::new(p.cid),
                            expected: "tensor",
                            reason: format!(
                                "chunks hold {} bytes, shape needs {len}",
                                at - p.offset
                            ),
                        });
                    }
                }
            }
            if pool.failed.load(Ordering::Relaxed) {
                return Ok(());
            }
        }
        self.send_window(tx, pool, &mut pending).await
    }

    /// Fetches the blocks of the chunks in `pending` in one pass and queues them.
    async fn send_window(
        &self,
        tx: &SyncSender<Job>,
        pool: &Pool,
        pending: &mut Vec<(DType, usize, u64, &Recipe)>,
    ) -> Result<()> {
        if pool.failed.load(Ordering::Relaxed) {
            pending.clear();
            return Ok(());
        }
        let recipes = pending.iter().map(|p| p.3.clone()).collect();
        let chunk_bytes = pending.iter().map(|p| p.1 as u64).max().unwrap_or(0);
        let inputs = self.recipe_inputs(recipes, chunk_bytes).await?;
        for ((dtype, len, offset, _), (recipe, key, patches)) in pending.drain(..).zip(inputs) {
            let job = Job {
                dtype,
                len,
                offset,
                recipe,
                key,
                patches,
            };
            // The workers drain the queue until it closes, so a send only fails if they
            // are gone; their error is then what the caller sees.
            if tx.send(job).is_err() {
                break;
            }
        }
        Ok(())
    }
}
