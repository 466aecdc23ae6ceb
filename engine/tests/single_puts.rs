//! Single puts from many threads at once, as a node receiving blocks makes them: every
//! acknowledged block is readable by a read that starts after the acknowledgement, on another
//! thread than the writer's, and the store holds exactly the acknowledged blocks, before and
//! after a reopen (a `HashMap` model), under each durability mode: the promises any change to
//! the single-put path (the hand-off to the shard, its acknowledgement) must keep.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Barrier};

use bytes::Bytes;
use ipfrs_storage::{Block, Cid, Config, Durability, Engine};

const WRITERS: u32 = 16;
const PUTS: u32 = 40;
/// Blocks every writer also puts: concurrent puts of the same block store it once.
const COMMON: u32 = 8;

/// A block whose bytes are determined by `(owner, index)`, 1-4 KiB.
fn block(owner: u32, index: u32) -> Block {
    let len = 1024 + (owner.wrapping_mul(7919) ^ index.wrapping_mul(104_729)) as usize % 3072;
    let mut data = Vec::with_capacity(len);
    data.extend_from_slice(&owner.to_le_bytes());
    data.extend_from_slice(&index.to_le_bytes());
    data.resize(len, (owner ^ index) as u8);
    Block::new(data).unwrap()
}

fn config(dir: &std::path::Path, durability: Durability) -> Config {
    let mut config = Config::new(dir);
    config.shards = Some(2);
    config.durability = durability;
    config.cache_bytes = 1 << 20;
    config.bloom_expected_items = 8 * 1024;
    config
}

/// Every block of `model` reads back exactly, and the counts agree.
fn assert_holds_exactly(engine: &Engine, model: &HashMap<Cid, Bytes>) {
    let store = engine.blocking();
    for (cid, data) in model {
        assert_eq!(store.get(cid).unwrap().as_ref(), Some(data), "{cid}");
    }
    let stats = store.stats().unwrap();
    assert_eq!(stats.blocks, model.len() as u64);
    assert_eq!(
        stats.bytes,
        model.values().map(|d| d.len() as u64).sum::<u64>()
    );
}

fn single_puts_from_many_threads(durability: Durability) {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path(), durability)).unwrap();
    // A reader thread checks each acknowledged block as soon as it hears of it: its read
    // starts after the acknowledgement, on a thread that did not write the block.
    let (acked_tx, acked_rx) = flume::unbounded::<Block>();
    let reader = {
        let engine = engine.clone();
        std::thread::spawn(move || {
            let store = engine.blocking();
            let mut checked = 0u64;
            for block in acked_rx {
                let got = store.get(block.cid()).unwrap();
                assert_eq!(got.as_ref(), Some(block.data()), "{}", block.cid());
                checked += 1;
            }
            checked
        })
    };
    let start = Arc::new(Barrier::new(WRITERS as usize));
    let writers: Vec<_> = (0..WRITERS)
        .map(|owner| {
            let engine = engine.clone();
            let start = Arc::clone(&start);
            let acked = acked_tx.clone();
            std::thread::spawn(move || {
                let store = engine.blocking();
                start.wait();
                let mut mine = Vec::new();
                for i in 0..PUTS {
                    let block = if i % 5 == 0 {
                        block(u32::MAX, (i / 5 + owner) % COMMON)
                    } else {
                        block(owner, i)
                    };
                    store.put(&block).unwrap();
                    acked.send(block.clone()).unwrap();
                    mine.push(block);
                }
                mine
            })
        })
        .collect();
    drop(acked_tx);
    let mut model: HashMap<Cid, Bytes> = HashMap::new();
    for writer in writers {
        for block in writer.join().unwrap() {
            model.insert(*block.cid(), block.data().clone());
        }
    }
    assert_eq!(
        reader.join().unwrap(),
        u64::from(WRITERS * PUTS),
        "every acknowledgement was checked"
    );
    assert_holds_exactly(&engine, &model);
    engine.blocking().close().unwrap();
    let engine = Engine::open(config(dir.path(), durability)).unwrap();
    assert_holds_exactly(&engine, &model);
    engine.blocking().close().unwrap();
}

#[test]
fn single_puts_from_many_threads_sync() {
    single_puts_from_many_threads(Durability::Sync);
}

#[test]
fn single_puts_from_many_threads_batch() {
    single_puts_from_many_threads(Durability::batch());
}

#[test]
fn single_puts_from_many_threads_none() {
    single_puts_from_many_threads(Durability::None);
}
