//! Reads on the caller's thread (`Config::caller_reads`) while the shard moves blocks under
//! them: puts, deletes, background and explicit compaction (hot segments into packs and the
//! cold backend) and pack reclamation all run while reader threads `get`, `has` and
//! `get_size`. Asserted: a block whose put was acknowledged before a read began, and not
//! deleted since, is found with its exact bytes; a block whose delete was acknowledged before
//! a read began is absent; nothing else is ever returned. Then the same with the path off, and
//! the counters show which path answered.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};

use futures_lite::future::block_on;
use ipfrs_storage::{BackendKind, Block, BlockStore, Config, Durability, Engine, HotTier};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const BLOCKS: usize = 900;
const READERS: usize = 4;

/// Block `i`: most are small (stored inline when cold), every third is 40 KiB (packed).
fn block(i: usize) -> Block {
    let len = if i.is_multiple_of(3) {
        40 << 10
    } else {
        300 + (i * 37) % 3000
    };
    let mut data: Vec<u8> = (0..len).map(|j| (i * 31 + j * 7) as u8).collect();
    data[..8].copy_from_slice(&(i as u64).to_le_bytes());
    Block::new(data).unwrap()
}

fn config(dir: &std::path::Path, backend: BackendKind, caller_reads: bool) -> Config {
    let mut config = Config::new(dir);
    config.shards = Some(2);
    config.backend = backend;
    config.caller_reads = caller_reads;
    config.max_block_size = 64 << 10;
    config.durability = Durability::Batch {
        max_delay: std::time::Duration::from_micros(200),
        max_ops: 64,
    };
    config.hot_tier = Some(HotTier {
        segment_bytes: 256 << 10,
        // A few segments per shard: background compaction runs all along.
        budget_bytes: 2 << 20,
        keep_hot_reads: 2,
        promote_after_reads: 2,
        ..HotTier::default()
    });
    config
}

/// States of a block, as the writer publishes them.
const UNWRITTEN: u8 = 0;
const PUT: u8 = 1;
const DELETING: u8 = 2;
const DELETED: u8 = 3;

fn campaign(backend: BackendKind, caller_reads: bool) -> (u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path(), backend, caller_reads)).unwrap();
    let blocks: Arc<Vec<Block>> = Arc::new((0..BLOCKS).map(block).collect());
    let states: Arc<Vec<AtomicU8>> = Arc::new((0..BLOCKS).map(|_| AtomicU8::new(0)).collect());
    let written = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let checked = Arc::new(AtomicUsize::new(0));

    let writer = {
        let (engine, blocks, states, written) = (
            engine.clone(),
            Arc::clone(&blocks),
            Arc::clone(&states),
            Arc::clone(&written),
        );
        std::thread::spawn(move || {
            let store = engine.blocking();
            for (i, b) in blocks.iter().enumerate() {
                store.put(b).unwrap();
                states[i].store(PUT, Ordering::Release);
                written.store(i + 1, Ordering::Release);
                // Every fourth block is deleted a little later: its pack loses live bytes.
                if i.is_multiple_of(4) && i >= 40 {
                    let gone = i - 40;
                    states[gone].store(DELETING, Ordering::Release);
                    assert_eq!(
                        store.delete_many(&[*blocks[gone].cid()]).unwrap(),
                        vec![true]
                    );
                    states[gone].store(DELETED, Ordering::Release);
                }
            }
        })
    };
    let compactor = {
        let (engine, done) = (engine.clone(), Arc::clone(&done));
        std::thread::spawn(move || {
            while !done.load(Ordering::Acquire) {
                block_on(engine.compact()).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        })
    };
    let readers: Vec<_> = (0..READERS)
        .map(|r| {
            let (engine, blocks, states, written, done, checked) = (
                engine.clone(),
                Arc::clone(&blocks),
                Arc::clone(&states),
                Arc::clone(&written),
                Arc::clone(&done),
                Arc::clone(&checked),
            );
            std::thread::spawn(move || {
                let store = engine.blocking();
                let mut rng = StdRng::seed_from_u64(r as u64);
                while !done.load(Ordering::Acquire) {
                    let upto = written.load(Ordering::Acquire);
                    if upto == 0 {
                        continue;
                    }
                    let i = rng.random_range(0..upto);
                    let b = &blocks[i];
                    let before = states[i].load(Ordering::Acquire);
                    let (got, has, size) = match rng.random_range(0..4) {
                        0 => {
                            let many = store.get_many(&[*b.cid(), *blocks[0].cid()]).unwrap();
                            (many.into_iter().next().unwrap(), None, None)
                        }
                        1 => (None, Some(store.has(b.cid()).unwrap()), None),
                        2 => (None, None, Some(store.get_size(b.cid()).unwrap())),
                        _ => (store.get(b.cid()).unwrap(), None, None),
                    };
                    let after = states[i].load(Ordering::Acquire);
                    let present =
                        got.is_some() || has == Some(true) || size.is_some_and(|s| s.is_some());
                    if let Some(data) = &got {
                        assert_eq!(data, b.data(), "block {i}: other bytes");
                    }
                    if let Some(Some(len)) = size {
                        assert_eq!(len, b.len() as u64, "block {i}: wrong size");
                    }
                    if before == PUT && after == PUT {
                        assert!(present, "block {i}: acknowledged, not deleted, not found");
                    }
                    if before == DELETED {
                        assert!(!present, "block {i}: deleted, still found");
                    }
                    assert_ne!(before, UNWRITTEN);
                    checked.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    writer.join().unwrap();
    // Let the readers race a little more against compaction of the finished store.
    std::thread::sleep(std::time::Duration::from_millis(300));
    done.store(true, Ordering::Release);
    compactor.join().unwrap();
    for reader in readers {
        reader.join().unwrap();
    }
    assert!(checked.load(Ordering::Relaxed) > 1000);
    let stats = block_on(BlockStore::stats(&engine)).unwrap();
    assert!(stats.packs > 0 || stats.shards.iter().any(|s| s.packs_reclaimed > 0));
    // Every block ends where the writer left it, through a reopen.
    block_on(engine.close()).unwrap();
    let engine = Engine::open(config(dir.path(), backend, caller_reads)).unwrap();
    let store = engine.blocking();
    for (i, b) in blocks.iter().enumerate() {
        let expected = (states[i].load(Ordering::Acquire) == PUT).then(|| b.data().clone());
        assert_eq!(
            store.get(b.cid()).unwrap(),
            expected,
            "block {i} after reopen"
        );
    }
    drop(store);
    block_on(engine.close()).unwrap();
    let reads = stats.caller_reads;
    let promotions: u64 = stats.shards.iter().map(|s| s.promotions).sum();
    (reads, promotions)
}

#[test]
fn caller_reads_see_every_acknowledged_block_while_it_moves_sled() {
    let (reads, _) = campaign(BackendKind::Sled, true);
    assert!(reads > 0, "no read was answered on the caller's thread");
}

#[test]
fn caller_reads_see_every_acknowledged_block_while_it_moves_paritydb() {
    let (reads, _) = campaign(BackendKind::ParityDb, true);
    assert!(reads > 0, "no read was answered on the caller's thread");
}

#[test]
fn reads_through_the_shard_only_pass_the_same_campaign() {
    let (reads, _) = campaign(BackendKind::Sled, false);
    assert_eq!(
        reads, 0,
        "caller_reads is off: every read goes to its shard"
    );
}
