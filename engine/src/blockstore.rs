//! [`Blockstore`](::blockstore::Blockstore) for [`Engine`] (cargo feature `blockstore`): the
//! store trait of beetswap, the libp2p bitswap of the Lumina/Celestia nodes, so the engine
//! can be a node's block store.
//!
//! The trait speaks `CidGeneric<S>` and `Vec<u8>`; the engine keys blocks by multihash:
//! - a CID is first converted to the engine's [`Cid`] (multihashes of up to 64 bytes, every
//!   digest of the codetable): a longer one is
//!   [`CidTooLarge`](::blockstore::Error::CidTooLarge), what the crate's own stores answer
//!   for a CID past their size;
//! - one block answers every CID of its multihash, whatever the codec and the CID version
//!   (raw, dag-pb, CIDv0 alike), as Kubo's and the engine's own `BlockStore` do; so `remove`
//!   through one codec removes it for all;
//! - identity CIDs are answered from the CID itself, never stored: `has` is true, `get` gives
//!   the inline bytes, `put_keyed` only checks that the data is those bytes, `remove` is a
//!   no-op;
//! - `put_keyed` verifies that the data hashes to the CID. The trait does not ask for it, but
//!   the engine stores only verified blocks, so a mismatch is an error and nothing is stored
//!   (beetswap has verified fetched blocks already: a node hashes each one twice);
//! - `put_many_keyed` and `put_many` are one `put_many` of the engine: all blocks are checked
//!   before any is stored, and the batch is one write per shard, not one per block;
//! - the engine's errors keep their message; [`to_blockstore_error`] says which goes where.

use ::blockstore::block::{Block as TraitBlock, CidError};
use ::blockstore::cond_send::{CondSend, CondSync};
use ::blockstore::{Blockstore, Error as TraitError, Result as TraitResult};
use bytes::Bytes;
use cid::CidGeneric;
use cid::multihash::Multihash;
use ipfrs_core_types::{Block, BlockError, Cid};

use crate::{BlockStore, Engine, Error};

/// Largest multihash digest the engine's [`Cid`] holds (its `CidGeneric` size).
const ENGINE_DIGEST_BYTES: usize = 64;

impl Blockstore for Engine {
    async fn get<const S: usize>(&self, cid: &CidGeneric<S>) -> TraitResult<Option<Vec<u8>>> {
        let cid = engine_cid(cid)?;
        let data = BlockStore::get(self, &cid)
            .await
            .map_err(to_blockstore_error)?;
        Ok(data.map(|bytes| bytes.to_vec()))
    }

    async fn put_keyed<const S: usize>(&self, cid: &CidGeneric<S>, data: &[u8]) -> TraitResult<()> {
        let block = self.checked_block(cid, data)?;
        BlockStore::put(self, &block)
            .await
            .map_err(to_blockstore_error)
    }

    async fn remove<const S: usize>(&self, cid: &CidGeneric<S>) -> TraitResult<()> {
        let cid = engine_cid(cid)?;
        BlockStore::delete(self, &cid)
            .await
            .map(|_was_stored| ())
            .map_err(to_blockstore_error)
    }

    async fn has<const S: usize>(&self, cid: &CidGeneric<S>) -> TraitResult<bool> {
        let cid = engine_cid(cid)?;
        BlockStore::has(self, &cid)
            .await
            .map_err(to_blockstore_error)
    }

    async fn put_many<const S: usize, B, I>(&self, blocks: I) -> TraitResult<()>
    where
        B: TraitBlock<S>,
        I: IntoIterator<Item = B> + CondSend,
        <I as IntoIterator>::IntoIter: Send,
    {
        let blocks = blocks
            .into_iter()
            .map(|block| self.checked_block(&block.cid()?, block.data()))
            .collect::<TraitResult<Vec<Block>>>()?;
        BlockStore::put_many(self, &blocks)
            .await
            .map_err(to_blockstore_error)
    }

    async fn put_many_keyed<const S: usize, D, I>(&self, blocks: I) -> TraitResult<()>
    where
        D: AsRef<[u8]> + CondSync,
        I: IntoIterator<Item = (CidGeneric<S>, D)> + CondSend,
        <I as IntoIterator>::IntoIter: Send,
    {
        let blocks = blocks
            .into_iter()
            .map(|(cid, data)| self.checked_block(&cid, data.as_ref()))
            .collect::<TraitResult<Vec<Block>>>()?;
        BlockStore::put_many(self, &blocks)
            .await
            .map_err(to_blockstore_error)
    }

    /// Closes the engine: every clone of this handle sees it closed (later calls fail with
    /// [`FatalDatabaseError`](::blockstore::Error::FatalDatabaseError)). Idempotent, like
    /// [`BlockStore::close`].
    async fn close(self) -> TraitResult<()> {
        BlockStore::close(&self).await.map_err(to_blockstore_error)
    }
}

impl Engine {
    /// The engine's block for a CID and data handed to the trait: size checked first (so an
    /// oversized block is neither copied nor hashed), then the hash verified.
    fn checked_block<const S: usize>(
        &self,
        cid: &CidGeneric<S>,
        data: &[u8],
    ) -> TraitResult<Block> {
        let cid = engine_cid(cid)?;
        if data.len() > self.config().max_block_size {
            return Err(TraitError::ValueTooLarge);
        }
        Block::from_parts(cid, Bytes::copy_from_slice(data))
            .map_err(|e| to_blockstore_error(Error::Block(e)))
    }
}

/// The engine's [`Cid`] for a CID of any multihash size: `CidTooLarge` past 64 digest bytes.
fn engine_cid<const S: usize>(cid: &CidGeneric<S>) -> TraitResult<Cid> {
    let hash = Multihash::<ENGINE_DIGEST_BYTES>::wrap(cid.hash().code(), cid.hash().digest())
        .map_err(|_| TraitError::CidTooLarge)?;
    // A CIDv0 that was valid at size S is valid here too (same codec and multihash); the
    // error path is kept rather than unwrapped because it costs nothing.
    Cid::new(cid.version(), cid.codec(), hash)
        .map_err(|e| TraitError::CidError(CidError::InvalidCid(e.to_string())))
}

/// The `blockstore` error for an engine error. The trait's enum has six variants, so this is
/// many to one; the message of the engine's error is kept wherever the variant carries one:
///
/// | engine | `blockstore` |
/// | --- | --- |
/// | `Block(TooLarge)` (over `Config::max_block_size`) | `ValueTooLarge` |
/// | `Block(IdentityTooLarge)` (inline data past the limit) | `CidTooLarge` |
/// | `Block(HashMismatch / UnsupportedHash / MalformedCid)` | `CidError(InvalidCid(message))` |
/// | `Corrupt` (a stored block failed its check, not served) | `StoredDataError(message)` |
/// | anything else (`Closed`, `Poisoned`, `NoSpace`, `Io`, `Backend`, ...) | `FatalDatabaseError(message)` |
///
/// `FatalDatabaseError` is the trait's only variant for a failing store, so it also carries
/// errors the engine recovers from (`NoSpace`: writes work again once space is freed; a
/// poisoned shard: after a reopen); the message says which.
pub fn to_blockstore_error(error: Error) -> TraitError {
    match error {
        Error::Block(BlockError::TooLarge { .. }) => TraitError::ValueTooLarge,
        Error::Block(BlockError::IdentityTooLarge { .. }) => TraitError::CidTooLarge,
        Error::Block(
            e @ (BlockError::HashMismatch { .. }
            | BlockError::UnsupportedHash { .. }
            | BlockError::MalformedCid { .. }),
        ) => TraitError::CidError(CidError::InvalidCid(e.to_string())),
        e @ Error::Corrupt { .. } => TraitError::StoredDataError(e.to_string()),
        e => TraitError::FatalDatabaseError(e.to_string()),
    }
}
