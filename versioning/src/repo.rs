//! The repository: a block store, a ref store and a ledger, and the object plumbing every
//! operation shares (typed loads, deduplicating writes, revision resolution).

use bytes::Bytes;
use cid::Cid;
use ipfrs_storage::{Block, BlockStore};

use crate::chunking::DEFAULT_CHUNK_BYTES;
use crate::delta::DEFAULT_ZSTD_LEVEL;
use crate::error::{Error, Result};
use crate::ledger::Ledger;
use crate::objects::{Commit, Object, State, Tensor, TensorObject};
use crate::refs::{BRANCH_PREFIX, HEAD, RefStore, TAG_PREFIX};
use crate::revision::Revision;

/// Default [`RepoConfig::max_chain_depth`]. Past it a changed chunk takes one delta against
/// its key, which carries every change since the key again. A model of narrow rows (384
/// values: a 256 KiB chunk holds 170) changes 82% of its chunks in a commit that moves 1% of
/// its rows, so its chains grow by most of a patch per commit: at 16 they re-based every
/// ~20 commits and stored each change about twice (1.38% of the model per commit against
/// 0.69% at 64, `vcs_bench --goals --like`). A row-sparse patch applies in a few
/// microseconds in place, and its chain costs a commit one link per changed chunk.
pub const DEFAULT_MAX_CHAIN_DEPTH: u32 = 64;

/// The most blocks [`Repo::blocks_sized`] asks for in one request, however small.
const MAX_BATCH_BLOCKS: usize = 1024;

/// Tuning of a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoConfig {
    /// Bytes per data chunk (rounded down to whole elements per tensor) of a tensor new to
    /// the history: a tensor keeps the chunks it was first stored in, so that its chains
    /// continue when this changes.
    pub chunk_bytes: usize,
    /// The most patches (deltas) a chunk's recipe may hold: its decode depth at checkout.
    /// A changed chunk whose recipe is full starts a new compressed key (or takes one delta
    /// against its key); 0 stores every changed chunk as a key. Config key
    /// `max_chain_depth` of the CLI's repository config.
    pub max_chain_depth: u32,
    /// zstd level of delta payloads and compressed keys.
    pub zstd_level: i32,
    /// Blocks per `put_many`/`get_many` request: bounds the memory in flight.
    pub batch_blocks: usize,
}

impl Default for RepoConfig {
    fn default() -> RepoConfig {
        RepoConfig {
            chunk_bytes: DEFAULT_CHUNK_BYTES,
            max_chain_depth: DEFAULT_MAX_CHAIN_DEPTH,
            zstd_level: DEFAULT_ZSTD_LEVEL,
            batch_blocks: 32,
        }
    }
}

/// A Git-for-Tensors repository over any [`BlockStore`].
pub struct Repo<S, R, L> {
    pub(crate) store: S,
    pub(crate) refs: R,
    pub(crate) ledger: L,
    pub(crate) config: RepoConfig,
}

impl<S: BlockStore, R: RefStore, L: Ledger> Repo<S, R, L> {
    /// A repository over these stores. Nothing is written until the first commit.
    pub fn new(store: S, refs: R, ledger: L, config: RepoConfig) -> Repo<S, R, L> {
        Repo {
            store,
            refs,
            ledger,
            config,
        }
    }

    /// The block store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The ref store.
    pub fn refs(&self) -> &R {
        &self.refs
    }

    /// The ledger of blocks this layer stored.
    pub fn ledger(&self) -> &L {
        &self.ledger
    }

    /// The configuration.
    pub fn config(&self) -> &RepoConfig {
        &self.config
    }

    /// The configuration, to change: it applies to the operations that follow.
    pub fn config_mut(&mut self) -> &mut RepoConfig {
        &mut self.config
    }

    /// A block's bytes; [`Error::MissingBlock`] names it if absent.
    pub(crate) async fn block(&self, cid: &Cid) -> Result<Bytes> {
        self.store
            .get(cid)
            .await?
            .ok_or(Error::MissingBlock { cid: *cid })
    }

    /// Blocks' bytes in order, fetched in batches; the first absent one is an error.
    pub(crate) async fn blocks(&self, cids: &[Cid]) -> Result<Vec<Bytes>> {
        let mut out = Vec::with_capacity(cids.len());
        for batch in cids.chunks(self.config.batch_blocks.max(1)) {
            self.get_batch(batch, &mut out).await?;
        }
        Ok(out)
    }

    /// One request for `batch`, its blocks appended to `out`; the first absent one is an
    /// error.
    async fn get_batch(&self, batch: &[Cid], out: &mut Vec<Bytes>) -> Result<()> {
        for (cid, data) in batch.iter().zip(self.store.get_many(batch).await?) {
            out.push(data.ok_or(Error::MissingBlock { cid: *cid })?);
        }
        Ok(())
    }

    /// [`Self::blocks`] for blocks whose sizes are about known (`sizes`, index for index):
    /// batched by bytes instead of by count, so that the many small blocks of patch chains
    /// take few requests while the memory in flight stays what `batch_blocks` chunks of
    /// `chunk_bytes` take.
    pub(crate) async fn blocks_sized(&self, cids: &[Cid], sizes: &[u64]) -> Result<Vec<Bytes>> {
        let budget = (self.config.batch_blocks.max(1) * self.config.chunk_bytes.max(1)) as u64;
        let mut out = Vec::with_capacity(cids.len());
        let mut start = 0;
        while start < cids.len() {
            let (mut end, mut bytes) = (start, 0u64);
            while end < cids.len() && end - start < MAX_BATCH_BLOCKS {
                let size = sizes.get(end).copied().unwrap_or(0);
                if end > start && bytes + size > budget {
                    break;
                }
                bytes += size;
                end += 1;
            }
            self.get_batch(&cids[start..end], &mut out).await?;
            start = end;
        }
        Ok(out)
    }

    /// Any object.
    pub async fn object(&self, cid: &Cid) -> Result<Object> {
        let data = self.block(cid).await?;
        Object::decode(cid, &data, "versioning")
    }

    /// A commit object.
    pub async fn commit_object(&self, cid: &Cid) -> Result<Commit> {
        let data = self.block(cid).await?;
        match Object::decode(cid, &data, "commit")? {
            Object::Commit(c) => Ok(c),
            other => Err(wrong(cid, "commit", &other)),
        }
    }

    /// A state object.
    pub async fn state_object(&self, cid: &Cid) -> Result<State> {
        let data = self.block(cid).await?;
        match Object::decode(cid, &data, "state")? {
            Object::State(s) => Ok(s),
            other => Err(wrong(cid, "state", &other)),
        }
    }

    /// The state of a commit.
    pub async fn commit_state(&self, commit: &Cid) -> Result<State> {
        let c = self.commit_object(commit).await?;
        self.state_object(&c.state).await
    }

    /// A tensor object (full or delta).
    pub async fn tensor_object(&self, cid: &Cid) -> Result<TensorObject> {
        let data = self.block(cid).await?;
        match Object::decode(cid, &data, "tensor")? {
            Object::Tensor(t) => Ok(TensorObject::Full(t)),
            Object::Delta(d) => Ok(TensorObject::Delta(d)),
            Object::Chunked(c) => Ok(TensorObject::Chunked(c)),
            other => Err(wrong(cid, "tensor", &other)),
        }
    }

    /// A full tensor object (the base of a delta).
    pub(crate) async fn full_tensor(&self, cid: &Cid) -> Result<Tensor> {
        match self.tensor_object(cid).await? {
            TensorObject::Full(t) => Ok(t),
            TensorObject::Delta(_) | TensorObject::Chunked(_) => Err(Error::BadDelta {
                cid: Box::new(*cid),
                reason: "a delta's base must be a full tensor, found another delta".into(),
            }),
        }
    }

    /// Stores blocks, recording in the ledger (before storing) those the store did not hold.
    /// The caller holds the ledger's writer guard. Returns (new blocks, new bytes).
    pub(crate) async fn put_new(&self, blocks: &[Block]) -> Result<(usize, u64)> {
        let mut count = 0;
        let mut bytes = 0;
        for batch in blocks.chunks(self.config.batch_blocks.max(1)) {
            let cids: Vec<Cid> = batch.iter().map(|b| *b.cid()).collect();
            let present = self.store.has_many(&cids).await?;
            let fresh: Vec<Block> = batch
                .iter()
                .zip(&present)
                .filter(|(_, p)| !**p)
                .map(|(b, _)| b.clone())
                .collect();
            if fresh.is_empty() {
                continue;
            }
            let fresh_cids: Vec<Cid> = fresh.iter().map(|b| *b.cid()).collect();
            self.ledger.record(&fresh_cids)?;
            self.store.put_many(&fresh).await?;
            count += fresh.len();
            bytes += fresh.iter().map(|b| b.len() as u64).sum::<u64>();
        }
        Ok((count, bytes))
    }

    /// The commit a revision names. A commit given by CID must be in the store.
    pub async fn resolve(&self, rev: &Revision) -> Result<Cid> {
        let unknown = || Error::UnknownRef(rev.to_string());
        match rev {
            Revision::Head => self.refs.get(HEAD)?.ok_or_else(unknown),
            Revision::Branch(b) => self.refs.get(&branch_ref(b))?.ok_or_else(unknown),
            Revision::Tag(t) => self.refs.get(&tag_ref(t))?.ok_or_else(unknown),
            Revision::Name(n) => match self.refs.get(&branch_ref(n))? {
                Some(c) => Ok(c),
                None => self.refs.get(&tag_ref(n))?.ok_or_else(unknown),
            },
            Revision::Commit(c) => {
                self.commit_object(c).await?;
                Ok(*c)
            }
            Revision::AsOf { base, timestamp_ms } => {
                let mut at = Box::pin(self.resolve(base)).await?;
                loop {
                    let c = self.commit_object(&at).await?;
                    if c.timestamp_ms <= *timestamp_ms {
                        return Ok(at);
                    }
                    match c.parents.first() {
                        Some(p) => at = *p,
                        None => {
                            return Err(Error::NothingAsOf {
                                rev: base.to_string(),
                                timestamp_ms: *timestamp_ms,
                            });
                        }
                    }
                }
            }
        }
    }

    /// Points HEAD at `commit`, whatever it was (HEAD is advisory: it records the last commit
    /// made or checked out, and a lost race between two writers only changes which one).
    pub(crate) fn set_head(&self, commit: Cid) -> Result<()> {
        loop {
            let current = self.refs.get(HEAD)?;
            match self.refs.compare_and_swap(HEAD, current, Some(commit)) {
                Err(Error::Conflict { .. }) => continue,
                other => return other,
            }
        }
    }
}

/// The ref name of a branch.
pub fn branch_ref(name: &str) -> String {
    format!("{BRANCH_PREFIX}{name}")
}

/// The ref name of a tag.
pub fn tag_ref(name: &str) -> String {
    format!("{TAG_PREFIX}{name}")
}

fn wrong(cid: &Cid, expected: &'static str, found: &Object) -> Error {
    Error::Decode {
        cid: Box::new(*cid),
        expected,
        reason: format!("it is a {} object", found.kind()),
    }
}
