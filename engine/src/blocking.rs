//! A blocking face of the engine for plain threads.

use bytes::Bytes;
use futures_lite::future::block_on;
use ipfrs_core_types::{Block, Cid};

use crate::store::{CidStream, Cursor};
use crate::{BlockStore, Engine, Result, Stats};

/// The engine's operations as blocking calls, for threads without an async runtime.
///
/// Each call parks the calling thread until the shard replies. Do not use it from inside an
/// async task (it would block that executor's thread); use [`BlockStore`] there.
#[derive(Clone)]
pub struct BlockingStore {
    engine: Engine,
}

impl Engine {
    /// The blocking face of this engine.
    pub fn blocking(&self) -> BlockingStore {
        BlockingStore {
            engine: self.clone(),
        }
    }
}

impl BlockingStore {
    /// See [`BlockStore::put`].
    pub fn put(&self, block: &Block) -> Result<()> {
        block_on(self.engine.put(block))
    }

    /// See [`BlockStore::put_many`].
    pub fn put_many(&self, blocks: &[Block]) -> Result<()> {
        block_on(self.engine.put_many(blocks))
    }

    /// See [`BlockStore::put_data`].
    pub fn put_data(&self, cid: &Cid, data: Bytes) -> Result<()> {
        block_on(self.engine.put_data(cid, data))
    }

    /// See [`BlockStore::get`].
    pub fn get(&self, cid: &Cid) -> Result<Option<Bytes>> {
        block_on(self.engine.get(cid))
    }

    /// See [`BlockStore::get_many`].
    pub fn get_many(&self, cids: &[Cid]) -> Result<Vec<Option<Bytes>>> {
        block_on(self.engine.get_many(cids))
    }

    /// See [`BlockStore::has`].
    pub fn has(&self, cid: &Cid) -> Result<bool> {
        block_on(self.engine.has(cid))
    }

    /// See [`BlockStore::has_many`].
    pub fn has_many(&self, cids: &[Cid]) -> Result<Vec<bool>> {
        block_on(self.engine.has_many(cids))
    }

    /// See [`BlockStore::get_size`].
    pub fn get_size(&self, cid: &Cid) -> Result<Option<u64>> {
        block_on(self.engine.get_size(cid))
    }

    /// See [`BlockStore::delete`].
    pub fn delete(&self, cid: &Cid) -> Result<bool> {
        block_on(self.engine.delete(cid))
    }

    /// See [`BlockStore::delete_many`].
    pub fn delete_many(&self, cids: &[Cid]) -> Result<Vec<bool>> {
        block_on(self.engine.delete_many(cids))
    }

    /// Every stored block's CID, fetched page by page.
    pub fn cids(&self) -> impl Iterator<Item = Result<Cid>> + '_ {
        let mut stream: CidStream<'_, Engine> = self.engine.cids();
        std::iter::from_fn(move || block_on(stream.next()))
    }

    /// See [`BlockStore::cid_page`].
    pub fn cid_page(&self, cursor: Cursor, limit: usize) -> Result<crate::CidPage> {
        block_on(self.engine.cid_page(cursor, limit))
    }

    /// See [`BlockStore::stats`].
    pub fn stats(&self) -> Result<Stats> {
        block_on(BlockStore::stats(&self.engine))
    }

    /// See [`Engine::damage`].
    pub fn damage(&self) -> Result<Vec<crate::Damage>> {
        block_on(self.engine.damage())
    }

    /// See [`Engine::compact`].
    pub fn compact(&self) -> Result<u64> {
        block_on(self.engine.compact())
    }

    /// See [`BlockStore::flush`].
    pub fn flush(&self) -> Result<()> {
        block_on(BlockStore::flush(&self.engine))
    }

    /// See [`BlockStore::close`].
    pub fn close(&self) -> Result<()> {
        block_on(BlockStore::close(&self.engine))
    }
}
