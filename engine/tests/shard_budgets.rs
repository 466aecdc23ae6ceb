//! What each shard promises beyond correctness: absent lookups answered by the bloom filter
//! without a backend read, a block cache that stays inside its byte budget, and group commit
//! (concurrent writes share one backend batch and one sync).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use ipfrs_storage::{Block, Cid, Config, Durability, Engine};

fn config(dir: &std::path::Path) -> Config {
    let mut config = Config::new(dir);
    config.shards = Some(4);
    config.bloom_expected_items = 64 * 1024;
    config
}

fn blocks(count: usize, size: usize, salt: u8) -> Vec<Block> {
    (0..count)
        .map(|i| {
            let mut data = vec![salt; size];
            data[..8].copy_from_slice(&(i as u64).to_le_bytes());
            Block::new(data).unwrap()
        })
        .collect()
}

#[test]
fn absent_lookups_are_answered_by_the_bloom_filter() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    let store = engine.blocking();
    store.put_many(&blocks(2_000, 64, 1)).unwrap();
    let absent: Vec<Cid> = blocks(2_000, 64, 2).iter().map(|b| *b.cid()).collect();

    let before = store.stats().unwrap();
    assert!(store.has_many(&absent).unwrap().iter().all(|h| !h));
    assert!(store.get_many(&absent).unwrap().iter().all(Option::is_none));
    let after = store.stats().unwrap();

    // 4,000 lookups of absent keys at a 1% false-positive rate: nearly all answered by the
    // filter, and the gets among them never reached the backend.
    let negatives = after.bloom_negatives - before.bloom_negatives;
    assert!(negatives >= 3_800, "only {negatives} bloom negatives");
    let backend_reads = after.cache_misses - before.cache_misses;
    assert!(backend_reads <= 60, "{backend_reads} backend reads");
    // The filter is rebuilt on reopen: still no false negatives, still answering.
    store.close().unwrap();
    drop(store);
    drop(engine);
    let engine = Engine::open(config(dir.path())).unwrap();
    let store = engine.blocking();
    let stored: Vec<Cid> = blocks(2_000, 64, 1).iter().map(|b| *b.cid()).collect();
    assert!(store.has_many(&stored).unwrap().iter().all(|h| *h));
    assert!(store.has_many(&absent).unwrap().iter().all(|h| !h));
    assert!(store.stats().unwrap().bloom_negatives >= 1_900);
    store.close().unwrap();
}

#[test]
fn the_block_cache_serves_repeats_and_stays_within_its_budget() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.cache_bytes = 256 << 10;
    // The cache fronts the cold backend: hot blocks are served from their segments.
    config.hot_tier = None;
    let engine = Engine::open(config.clone()).unwrap();
    let store = engine.blocking();
    let all = blocks(200, 16 << 10, 3);
    store.put_many(&all).unwrap();

    // 3.2 MiB read through a 256 KiB cache.
    for block in &all {
        assert_eq!(store.get(block.cid()).unwrap().as_ref(), Some(block.data()));
    }
    let stats = store.stats().unwrap();
    assert!(
        stats.cache_bytes <= config.cache_bytes,
        "cache holds {} bytes, budget {}",
        stats.cache_bytes,
        config.cache_bytes
    );
    // A block read again right away comes from the cache.
    let hot = &all[0];
    store.get(hot.cid()).unwrap();
    let hits = store.stats().unwrap().cache_hits;
    assert_eq!(store.get(hot.cid()).unwrap().as_ref(), Some(hot.data()));
    assert_eq!(store.stats().unwrap().cache_hits, hits + 1);
    // A deleted block is not served from the cache.
    assert!(store.delete(hot.cid()).unwrap());
    assert_eq!(store.get(hot.cid()).unwrap(), None);
    store.close().unwrap();
}

#[test]
fn concurrent_writes_share_group_commits() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.shards = Some(1);
    // A long gathering window makes the grouping certain, whatever the machine's load.
    config.durability = Durability::Batch {
        max_delay: Duration::from_millis(20),
        max_ops: 1 << 20,
    };
    let engine = Engine::open(config.clone()).unwrap();
    const THREADS: u8 = 8;
    const PUTS: usize = 25;
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            let store = engine.blocking();
            scope.spawn(move || {
                for block in blocks(PUTS, 128, 10 + t) {
                    store.put(&block).unwrap();
                }
            });
        }
    });
    let stats = engine.blocking().stats().unwrap();
    let shard = &stats.shards[0];
    assert_eq!(shard.write_ops, u64::from(THREADS) * PUTS as u64);
    assert!(
        shard.write_groups * 2 <= shard.write_ops,
        "{} groups for {} writes",
        shard.write_groups,
        shard.write_ops
    );
    assert_eq!(stats.blocks, u64::from(THREADS) * PUTS as u64);
    engine.blocking().close().unwrap();

    // Sync durability: every put acknowledged after its group's sync, and all survive.
    drop(engine);
    config.durability = Durability::Sync;
    let engine = Engine::open(config).unwrap();
    let more = blocks(50, 128, 99);
    for block in &more {
        engine.blocking().put(block).unwrap();
    }
    assert_eq!(
        engine.blocking().stats().unwrap().blocks,
        u64::from(THREADS) * PUTS as u64 + 50
    );
    engine.blocking().close().unwrap();
}
