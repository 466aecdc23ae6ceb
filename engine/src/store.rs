//! The embedder's contract: [`BlockStore`], and its implementation by [`Engine`].

use std::collections::VecDeque;
use std::future::Future;

use bytes::Bytes;
use ipfrs_core_types::key::{Key, cid_of_key, identity_data, shard_of};
use ipfrs_core_types::{Block, Cid};
use ipfrs_shards::Fetched;
use ipfrs_shards::protocol::Request;
use ipfrs_shards::read_view::Quick;

use crate::metrics::Op;
use crate::{Engine, Error, Result, Stats};

/// Where a listing of CIDs stands: opaque, returned by [`BlockStore::cid_page`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor {
    pub(crate) shard: usize,
    pub(crate) after: Option<Key>,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CidPage {
    /// CIDv1 raw of each stored multihash (blocks are stored under their multihash).
    pub cids: Vec<Cid>,
    /// Where the next page starts; `None` when the listing is complete.
    pub next: Option<Cursor>,
}

/// A content-addressed block store.
///
/// Every future is `Send`, so the store can be used from tokio, glommio or any executor;
/// [`Engine::blocking`] serves plain threads. Blocks are keyed by multihash: the same bytes
/// under two codecs are one block. Identity CIDs are answered from the CID itself and never
/// stored.
pub trait BlockStore: Send + Sync {
    /// Stores a block. The block's hash was verified when it was built ([`Block::new`],
    /// [`Block::from_parts`]); the store refuses blocks over `Config::max_block_size`.
    /// Returns once the block is durable under the configured `Durability`.
    ///
    /// ```
    /// # use ipfrs_storage::{Block, BlockStore, Engine};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Engine::open(dir.path())?;
    /// let block = Block::new(vec![7u8; 1024])?;
    /// futures_lite::future::block_on(store.put(&block))?;
    /// # Ok::<(), ipfrs_storage::Error>(())
    /// ```
    fn put(&self, block: &Block) -> impl Future<Output = Result<()>> + Send {
        self.put_many(std::slice::from_ref(block))
    }

    /// Stores blocks; all are checked before any is written. Returns once all are durable.
    fn put_many(&self, blocks: &[Block]) -> impl Future<Output = Result<()>> + Send;

    /// Verifies that `data` hashes to `cid`, then stores it: a mismatch is an error and
    /// nothing is stored.
    fn put_data(&self, cid: &Cid, data: Bytes) -> impl Future<Output = Result<()>> + Send {
        async move {
            let block = Block::from_parts(*cid, data)?;
            self.put(&block).await
        }
    }

    /// The block's bytes, `None` if absent.
    fn get(&self, cid: &Cid) -> impl Future<Output = Result<Option<Bytes>>> + Send {
        async move {
            Ok(self
                .get_many(std::slice::from_ref(cid))
                .await?
                .pop()
                .flatten())
        }
    }

    /// The blocks' bytes, in input order.
    fn get_many(&self, cids: &[Cid]) -> impl Future<Output = Result<Vec<Option<Bytes>>>> + Send;

    /// Whether the block is stored.
    fn has(&self, cid: &Cid) -> impl Future<Output = Result<bool>> + Send {
        async move { Ok(self.has_many(std::slice::from_ref(cid)).await?.pop() == Some(true)) }
    }

    /// Whether each block is stored, in input order.
    fn has_many(&self, cids: &[Cid]) -> impl Future<Output = Result<Vec<bool>>> + Send;

    /// The block's size in bytes, `None` if absent.
    fn get_size(&self, cid: &Cid) -> impl Future<Output = Result<Option<u64>>> + Send;

    /// Removes a block; returns whether it was stored. Durable like a put.
    fn delete(&self, cid: &Cid) -> impl Future<Output = Result<bool>> + Send {
        async move { Ok(self.delete_many(std::slice::from_ref(cid)).await?.pop() == Some(true)) }
    }

    /// Removes blocks; returns whether each was stored, in input order.
    fn delete_many(&self, cids: &[Cid]) -> impl Future<Output = Result<Vec<bool>>> + Send;

    /// One page of the listing of every stored block, starting at `cursor`
    /// (`Cursor::default()` for the first page).
    fn cid_page(
        &self,
        cursor: Cursor,
        limit: usize,
    ) -> impl Future<Output = Result<CidPage>> + Send;

    /// A stream of every stored block's CID (CIDv1 raw), read page by page.
    fn cids(&self) -> CidStream<'_, Self>
    where
        Self: Sized,
    {
        CidStream {
            store: self,
            next: Some(Cursor::default()),
            buffer: VecDeque::new(),
        }
    }

    /// Counters: blocks, bytes, cache and bloom figures, per shard and in total.
    fn stats(&self) -> impl Future<Output = Result<Stats>> + Send;

    /// Makes every acknowledged write durable, whatever the durability mode.
    fn flush(&self) -> impl Future<Output = Result<()>> + Send;

    /// Finishes in-flight work, flushes, and stops the store; later calls fail with
    /// `Error::Closed`. Idempotent.
    fn close(&self) -> impl Future<Output = Result<()>> + Send;
}

/// The CIDs of every stored block, fetched a page at a time (bounded memory).
pub struct CidStream<'a, S> {
    store: &'a S,
    next: Option<Cursor>,
    buffer: VecDeque<Cid>,
}

/// CIDs fetched per page by [`CidStream`].
const PAGE: usize = 1024;

impl<S: BlockStore> CidStream<'_, S> {
    /// The next CID, `None` at the end.
    pub async fn next(&mut self) -> Option<Result<Cid>> {
        while self.buffer.is_empty() {
            let cursor = self.next.take()?;
            match self.store.cid_page(cursor, PAGE).await {
                Ok(page) => {
                    self.buffer.extend(page.cids);
                    self.next = page.next;
                }
                Err(e) => return Some(Err(e)),
            }
        }
        self.buffer.pop_front().map(Ok)
    }
}

impl Engine {
    /// Reads blocks (the work behind `get_many`). Hot records are checked here, on the
    /// caller's thread (see `Fetched`): a damaged one is `Error::Corrupt`, never served.
    async fn fetch_many(&self, cids: &[Cid]) -> Result<Vec<Option<Bytes>>> {
        let fetched = self
            .keyed(
                cids,
                |keys, reply| Request::Get { keys, reply },
                |data| Some(Fetched::Data(Bytes::copy_from_slice(data))),
                |shard, key| shard.quick_get(key),
            )
            .await?;
        fetched
            .into_iter()
            .zip(cids)
            .map(|(found, cid)| match found {
                Some(record @ Fetched::Record(_)) => {
                    // The key is the multihash's bytes: written to the stack, not allocated
                    // (multihash-codetable digests are at most 64 bytes).
                    let mut key = [0u8; 80];
                    let len = cid.hash().write(&mut key[..]).unwrap_or(0);
                    record.into_data(&key[..len]).map(Some).map_err(Error::from)
                }
                Some(Fetched::Data(data)) => Ok(Some(data)),
                None => Ok(None),
            })
            .collect()
    }

    /// One page of the listing (the work behind `cid_page`).
    async fn list_page(&self, cursor: Cursor, limit: usize) -> Result<CidPage> {
        let limit = limit.max(1);
        let mut cursor = cursor;
        let mut cids = Vec::new();
        while cursor.shard < self.shard_count() && cids.len() < limit {
            let keys = self
                .scan(cursor.shard, cursor.after.take(), limit - cids.len())
                .await?;
            let exhausted = keys.len() < limit - cids.len();
            for key in &keys {
                cids.push(cid_of_key(key)?);
            }
            if exhausted {
                cursor = Cursor {
                    shard: cursor.shard + 1,
                    after: None,
                };
            } else {
                cursor.after = keys.last().cloned();
            }
        }
        let next = (cursor.shard < self.shard_count()).then_some(cursor);
        Ok(CidPage { cids, next })
    }
}

impl Engine {
    /// A single key read on the caller's thread without allocating (the key lives on the
    /// stack): `f` gets the CID's shard and key. `None` when the shard must answer (or the
    /// CID is an identity CID, or `caller_reads` is off).
    fn quick<T>(
        &self,
        cid: &Cid,
        f: impl FnOnce(&ipfrs_shards::ShardHandle, &[u8]) -> ipfrs_shards::Result<Quick<T>>,
    ) -> Result<Option<T>> {
        if !self.caller_reads() || identity_data(cid).is_some() {
            return Ok(None);
        }
        let mut key = [0u8; 80];
        let len = match cid.hash().write(&mut key[..]) {
            Ok(len) => len,
            Err(_) => return Ok(None),
        };
        let shard = self.shard(shard_of(cid, self.shard_count()))?;
        Ok(match f(shard, &key[..len])? {
            Quick::Answer(value) => Some(value),
            Quick::Shard => None,
        })
    }
}

impl BlockStore for Engine {
    async fn get(&self, cid: &Cid) -> Result<Option<Bytes>> {
        let work = async {
            let quick = self.quick(cid, |shard, key| {
                Ok(match shard.quick_get(key)? {
                    Quick::Answer(value) => {
                        Quick::Answer(value.map(|fetched| fetched.into_data(key)).transpose()?)
                    }
                    Quick::Shard => Quick::Shard,
                })
            })?;
            match quick {
                Some(found) => Ok(found),
                None => Ok(self
                    .fetch_many(std::slice::from_ref(cid))
                    .await?
                    .pop()
                    .flatten()),
            }
        };
        self.timed(Op::Get, 1, work, |found| {
            found.as_ref().map_or(0, |b| b.len() as u64)
        })
        .await
    }

    async fn has(&self, cid: &Cid) -> Result<bool> {
        let work = async {
            match self.quick(cid, |shard, key| shard.view().has(key))? {
                Some(found) => Ok(found),
                None => Ok(self
                    .keyed(
                        std::slice::from_ref(cid),
                        |keys, reply| Request::Has { keys, reply },
                        |_| true,
                        |_, _| Ok(Quick::Shard),
                    )
                    .await?
                    .pop()
                    == Some(true)),
            }
        };
        self.timed(Op::Has, 1, work, |_| 0).await
    }

    fn put_many(&self, blocks: &[Block]) -> impl Future<Output = Result<()>> + Send {
        let bytes: u64 = blocks.iter().map(|b| b.len() as u64).sum();
        self.timed(Op::Put, blocks.len(), self.put_blocks(blocks), move |_| {
            bytes
        })
    }

    fn get_many(&self, cids: &[Cid]) -> impl Future<Output = Result<Vec<Option<Bytes>>>> + Send {
        let work = self.fetch_many(cids);
        self.timed(Op::Get, cids.len(), work, |found| {
            found.iter().flatten().map(|b| b.len() as u64).sum()
        })
    }

    fn has_many(&self, cids: &[Cid]) -> impl Future<Output = Result<Vec<bool>>> + Send {
        let work = self.keyed(
            cids,
            |keys, reply| Request::Has { keys, reply },
            |_| true,
            |shard, key| shard.view().has(key),
        );
        self.timed(Op::Has, cids.len(), work, |_| 0)
    }

    async fn get_size(&self, cid: &Cid) -> Result<Option<u64>> {
        let work = async {
            let sizes = self
                .keyed(
                    std::slice::from_ref(cid),
                    |keys, reply| Request::Size { keys, reply },
                    |data| Some(data.len() as u64),
                    |shard, key| shard.view().size(key),
                )
                .await?;
            Ok(sizes.into_iter().next().flatten())
        };
        self.timed(Op::Size, 1, work, |_| 0).await
    }

    fn delete_many(&self, cids: &[Cid]) -> impl Future<Output = Result<Vec<bool>>> + Send {
        // Identity blocks are never stored, so there is nothing to delete.
        let work = self.keyed(
            cids,
            |keys, reply| Request::Delete { keys, reply },
            |_| false,
            |_, _| Ok(Quick::Shard),
        );
        self.timed(Op::Delete, cids.len(), work, |_| 0)
    }

    fn cid_page(
        &self,
        cursor: Cursor,
        limit: usize,
    ) -> impl Future<Output = Result<CidPage>> + Send {
        self.timed(Op::List, limit, self.list_page(cursor, limit), |_| 0)
    }

    fn stats(&self) -> impl Future<Output = Result<Stats>> + Send {
        Engine::stats(self)
    }

    async fn flush(&self) -> Result<()> {
        let work = async {
            self.broadcast(|reply| Request::Flush { reply }).await?;
            Ok(())
        };
        self.timed(Op::Flush, 0, work, |_| 0).await
    }

    fn close(&self) -> impl Future<Output = Result<()>> + Send {
        Engine::close(self)
    }
}
