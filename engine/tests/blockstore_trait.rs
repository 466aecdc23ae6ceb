//! `Engine` as a `blockstore::Blockstore` (feature `blockstore`): the cases of the blockstore
//! crate's own test suite (insert/get, duplicate insert, CID sizes, too-large CIDs, `Block`
//! inserts, batches, remove) run against the engine and, as a reference, against the crate's
//! `InMemoryBlockstore`; then what the engine adds: one block per multihash whatever the codec
//! or CID version, identity CIDs, size limits, verification, close.
//!
//! The crate's suite builds CIDs over multihash code 1 with data that does not hash to them;
//! the engine verifies every block it stores, so the shared cases use real sha2-256 CIDs, and
//! an unverifiable CID is a case of its own (refused, nothing stored).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use blockstore::block::{Block as TraitBlock, CidError};
use blockstore::{Blockstore, Error, InMemoryBlockstore};
use cid::CidGeneric;
use cid::multihash::Multihash;
use futures_lite::future::block_on;
use ipfrs_storage::{Config, Engine, Op};
use multihash_codetable::{Code, MultihashDigest};

const RAW: u64 = 0x55;
const DAG_PB: u64 = 0x70;
const DAG_CBOR: u64 = 0x71;
const SHA2_256: u64 = 0x12;
const IDENTITY: u64 = 0x00;

/// The largest block the test engines accept.
const MAX_BLOCK: usize = 1000;

/// A CIDv1 of `codec` over the sha2-256 of `data`, in a CID of multihash size `S`.
fn cid_of<const S: usize>(codec: u64, data: &[u8]) -> CidGeneric<S> {
    let digest = Code::Sha2_256.digest(data);
    CidGeneric::new_v1(codec, Multihash::wrap(SHA2_256, digest.digest()).unwrap())
}

fn raw<const S: usize>(data: &[u8]) -> CidGeneric<S> {
    cid_of(RAW, data)
}

/// An engine in a fresh directory (kept alive by the returned guard).
fn engine() -> (Engine, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path());
    config.shards = Some(2);
    config.max_block_size = MAX_BLOCK;
    (Engine::open(config).unwrap(), dir)
}

/// A block that computes its own CID, as the crate's `TestBlock`, but with a real hash.
#[derive(Debug, Clone, Copy)]
struct TestBlock([u8; 4]);

impl TraitBlock<64> for TestBlock {
    fn cid(&self) -> Result<CidGeneric<64>, CidError> {
        Ok(raw(&self.0))
    }

    fn data(&self) -> &[u8] {
        &self.0
    }
}

/// The blockstore crate's cases, over any store: they must hold for the reference in-memory
/// store and for the engine alike.
mod shared {
    use super::*;

    pub async fn insert_get<B: Blockstore>(store: &B) {
        let cid = raw::<64>(b"1");
        store.put_keyed(&cid, b"1").await.unwrap();
        assert_eq!(store.get(&cid).await.unwrap().unwrap(), b"1");
        assert!(store.has(&cid).await.unwrap());
        let another = raw::<64>(b"2");
        assert_eq!(store.get(&another).await.unwrap(), None);
        assert!(!store.has(&another).await.unwrap());
    }

    pub async fn duplicate_insert<B: Blockstore>(store: &B) {
        let cid0 = raw::<64>(b"d1");
        let cid1 = raw::<64>(b"d2");
        store.put_keyed(&cid0, b"d1").await.unwrap();
        store.put_keyed(&cid1, b"d2").await.unwrap();
        store.put_keyed(&cid1, b"d2").await.unwrap();
        assert_eq!(store.get(&cid1).await.unwrap().unwrap(), b"d2");
    }

    pub async fn different_cid_size<B: Blockstore>(store: &B) {
        let data = b"sizes";
        store.put_keyed(&raw::<32>(data), data).await.unwrap();
        assert_eq!(store.get(&raw::<32>(data)).await.unwrap().unwrap(), data);
        assert_eq!(store.get(&raw::<64>(data)).await.unwrap().unwrap(), data);
        assert_eq!(store.get(&raw::<128>(data)).await.unwrap().unwrap(), data);
    }

    pub async fn block_insert<B: Blockstore>(store: &B) {
        let block = TestBlock([0, 1, 2, 3]);
        store.put(block).await.unwrap();
        let cid = block.cid().unwrap();
        assert_eq!(store.get(&cid).await.unwrap().unwrap(), block.data());
    }

    pub async fn multiple_blocks_insert<B: Blockstore>(store: &B) {
        let blocks = [
            TestBlock([0, 0, 0, 0]),
            TestBlock([0, 0, 0, 1]),
            TestBlock([0, 0, 1, 0]),
            TestBlock([0, 0, 1, 1]),
            TestBlock([0, 1, 0, 0]),
            TestBlock([0, 1, 0, 1]),
            TestBlock([0, 1, 1, 0]),
            TestBlock([0, 1, 1, 1]),
        ];
        let absent = [
            TestBlock([1, 0, 0, 0]),
            TestBlock([1, 0, 0, 1]),
            TestBlock([1, 0, 1, 0]),
            TestBlock([1, 1, 0, 1]),
        ];
        store.put_many(blocks).await.unwrap();
        for b in blocks {
            let cid = b.cid().unwrap();
            assert!(store.has(&cid).await.unwrap());
            assert_eq!(store.get(&cid).await.unwrap().unwrap(), b.data());
        }
        for b in absent {
            let cid = b.cid().unwrap();
            assert!(!store.has(&cid).await.unwrap());
            assert!(store.get(&cid).await.unwrap().is_none());
        }
    }

    pub async fn multiple_keyed<B: Blockstore>(store: &B) {
        let blocks: [&[u8]; 4] = [b"k0", b"k1", b"k2", b"k3"];
        let pairs: Vec<(CidGeneric<64>, &[u8])> =
            blocks.iter().map(|data| (raw::<64>(data), *data)).collect();
        store.put_many_keyed(pairs.clone()).await.unwrap();
        for (cid, data) in pairs {
            assert_eq!(store.get(&cid).await.unwrap().unwrap(), data);
        }
    }

    pub async fn remove<B: Blockstore>(store: &B) {
        let cid1 = raw::<64>(b"r1");
        let cid2 = raw::<64>(b"r2");
        let cid3 = raw::<64>(b"r3");
        // Removing what was never stored is not an error.
        store.remove(&cid1).await.unwrap();
        store.put_keyed(&cid1, b"r1").await.unwrap();
        store.put_keyed(&cid2, b"r2").await.unwrap();
        assert_eq!(store.get(&cid1).await.unwrap().unwrap(), b"r1");
        store.remove(&cid1).await.unwrap();
        assert!(store.get(&cid1).await.unwrap().is_none());
        assert!(!store.has(&cid1).await.unwrap());
        store.remove(&cid1).await.unwrap();
        store.remove(&cid3).await.unwrap();
        assert_eq!(store.get(&cid2).await.unwrap().unwrap(), b"r2");
    }

    /// Every shared case, in order, on one store.
    pub async fn all<B: Blockstore>(store: &B) {
        insert_get(store).await;
        duplicate_insert(store).await;
        different_cid_size(store).await;
        block_insert(store).await;
        multiple_blocks_insert(store).await;
        multiple_keyed(store).await;
        remove(store).await;
    }
}

#[test]
fn the_crate_cases_hold_for_its_in_memory_store() {
    block_on(shared::all(&InMemoryBlockstore::<128>::new()));
}

#[test]
fn the_crate_cases_hold_for_the_engine() {
    let (engine, _dir) = engine();
    block_on(async {
        shared::all(&engine).await;
        Blockstore::close(engine).await.unwrap();
    });
}

#[test]
fn a_multihash_past_64_bytes_is_cid_too_large() {
    let (engine, _dir) = engine();
    let big = CidGeneric::<128>::new_v1(RAW, Multihash::wrap(SHA2_256, &[7u8; 100]).unwrap());
    block_on(async {
        assert!(matches!(
            engine.put_keyed(&big, b"x").await,
            Err(Error::CidTooLarge)
        ));
        assert!(matches!(engine.get(&big).await, Err(Error::CidTooLarge)));
        assert!(matches!(engine.has(&big).await, Err(Error::CidTooLarge)));
        assert!(matches!(engine.remove(&big).await, Err(Error::CidTooLarge)));
        // A CID of size 128 whose multihash fits is served like any other.
        let fits = raw::<128>(b"fits");
        engine.put_keyed(&fits, b"fits").await.unwrap();
        assert!(engine.has(&fits).await.unwrap());
    });
}

#[test]
fn one_block_answers_every_codec_and_cid_version() {
    let (engine, _dir) = engine();
    let data = b"one multihash";
    let v1_raw = raw::<64>(data);
    let v1_pb = cid_of::<64>(DAG_PB, data);
    let v1_cbor = cid_of::<64>(DAG_CBOR, data);
    let v0 = CidGeneric::<64>::new_v0(*v1_pb.hash()).unwrap();
    block_on(async {
        engine.put_keyed(&v1_raw, data).await.unwrap();
        for cid in [&v1_raw, &v1_pb, &v1_cbor, &v0] {
            assert!(engine.has(cid).await.unwrap(), "{cid}");
            assert_eq!(engine.get(cid).await.unwrap().unwrap(), data, "{cid}");
        }
        // Stored once: the listing has one block.
        assert_eq!(
            ipfrs_storage::BlockStore::stats(&engine)
                .await
                .unwrap()
                .blocks,
            1
        );
        // Removed through CIDv0, gone under every CID.
        engine.remove(&v0).await.unwrap();
        for cid in [&v1_raw, &v1_pb, &v1_cbor, &v0] {
            assert!(!engine.has(cid).await.unwrap(), "{cid}");
            assert_eq!(engine.get(cid).await.unwrap(), None, "{cid}");
        }
        // A CIDv0 put is found as CIDv1 raw.
        engine.put_keyed(&v0, data).await.unwrap();
        assert_eq!(engine.get(&v1_raw).await.unwrap().unwrap(), data);
    });
}

#[test]
fn identity_cids_are_answered_from_the_cid_and_never_stored() {
    let (engine, _dir) = engine();
    let inline = b"inline bytes";
    let id = CidGeneric::<64>::new_v1(RAW, Multihash::wrap(IDENTITY, inline).unwrap());
    block_on(async {
        assert!(engine.has(&id).await.unwrap());
        assert_eq!(engine.get(&id).await.unwrap().unwrap(), inline);
        engine.put_keyed(&id, inline).await.unwrap();
        assert!(matches!(
            engine.put_keyed(&id, b"other bytes").await,
            Err(Error::CidError(CidError::InvalidCid(_)))
        ));
        engine.remove(&id).await.unwrap();
        assert_eq!(engine.get(&id).await.unwrap().unwrap(), inline);
        assert_eq!(
            ipfrs_storage::BlockStore::stats(&engine)
                .await
                .unwrap()
                .blocks,
            0
        );
    });
}

#[test]
fn blocks_over_the_size_limit_are_value_too_large_and_batches_all_or_nothing() {
    let (engine, _dir) = engine();
    let big = vec![1u8; MAX_BLOCK + 1];
    let at_limit = vec![2u8; MAX_BLOCK];
    block_on(async {
        assert!(matches!(
            engine.put_keyed(&raw::<64>(&big), &big).await,
            Err(Error::ValueTooLarge)
        ));
        assert!(!engine.has(&raw::<64>(&big)).await.unwrap());
        engine
            .put_keyed(&raw::<64>(&at_limit), &at_limit)
            .await
            .unwrap();
        // One oversized block fails the batch before anything of it is stored.
        let small = b"small".to_vec();
        let batch = vec![(raw::<64>(&small), small.clone()), (raw::<64>(&big), big)];
        assert!(matches!(
            engine.put_many_keyed(batch).await,
            Err(Error::ValueTooLarge)
        ));
        assert!(!engine.has(&raw::<64>(&small)).await.unwrap());
    });
}

#[test]
fn data_that_does_not_hash_to_its_cid_is_refused() {
    let (engine, _dir) = engine();
    // The blockstore crate's own suite stores this kind of CID (code 1, the data as its
    // "digest"); the engine cannot verify it and says so.
    let unverifiable = CidGeneric::<64>::new_v1(1, Multihash::wrap(1, b"1").unwrap());
    let claimed = raw::<64>(b"claimed");
    block_on(async {
        match engine.put_keyed(&unverifiable, b"3").await {
            Err(Error::CidError(CidError::InvalidCid(message))) => {
                assert!(message.contains("unsupported multihash"), "{message}")
            }
            other => panic!("expected a CID error, got {other:?}"),
        }
        match engine.put_keyed(&claimed, b"not the claimed bytes").await {
            Err(Error::CidError(CidError::InvalidCid(message))) => {
                assert!(message.contains("does not match"), "{message}")
            }
            other => panic!("expected a CID error, got {other:?}"),
        }
        assert!(!engine.has(&claimed).await.unwrap());
        assert_eq!(
            ipfrs_storage::BlockStore::stats(&engine)
                .await
                .unwrap()
                .blocks,
            0
        );
    });
}

#[test]
fn close_closes_every_handle_and_later_calls_fail() {
    let (engine, _dir) = engine();
    let cid = raw::<64>(b"c");
    block_on(async {
        engine.put_keyed(&cid, b"c").await.unwrap();
        let other = engine.clone();
        Blockstore::close(engine).await.unwrap();
        assert!(matches!(
            other.get(&cid).await,
            Err(Error::FatalDatabaseError(message)) if message.contains("closed")
        ));
        assert!(matches!(
            other.put_keyed(&cid, b"c").await,
            Err(Error::FatalDatabaseError(_))
        ));
        // Idempotent, like the engine's own close.
        Blockstore::close(other).await.unwrap();
    });
}

#[test]
fn trait_calls_are_in_the_engine_metrics() {
    let (engine, _dir) = engine();
    block_on(async {
        engine.put_keyed(&raw::<64>(b"m"), b"m").await.unwrap();
        engine.has(&raw::<64>(b"m")).await.unwrap();
        engine.get(&raw::<64>(b"m")).await.unwrap();
        engine.get(&raw::<64>(b"absent")).await.unwrap();
        let snap = engine.metrics().await.unwrap();
        let op = |op: Op| snap.ops.iter().find(|o| o.op == op).unwrap().clone();
        assert_eq!(op(Op::Put).calls, 1);
        assert_eq!(op(Op::Has).calls, 1);
        assert_eq!((op(Op::Get).calls, op(Op::Get).bytes), (2, 1));
    });
}
