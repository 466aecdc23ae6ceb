//! The location cache: a cold read of a packed block whose location is cached is answered
//! from its pack without a backend lookup, and a cached location never serves a block that
//! was deleted, never outlives a reclaimed pack, and is rebuilt by reads after a reopen.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use bytes::Bytes;
use ipfrs_storage::{Block, Cid, Config, Engine, HotTier};

/// Blocks of 2-6 KiB: over the 1 KiB inline threshold below, so they stay in packs.
fn block(i: u32) -> Block {
    let len = 2048 + (i.wrapping_mul(2_654_435_761) % 4096) as usize;
    let mut data = vec![0u8; len];
    for (j, b) in data.iter_mut().enumerate() {
        *b = (i as usize).wrapping_mul(31).wrapping_add(j) as u8;
    }
    data[..4].copy_from_slice(&i.to_le_bytes());
    Block::new(data).unwrap()
}

fn config(dir: &std::path::Path, location_cache_bytes: u64) -> Config {
    let mut config = Config::new(dir);
    config.shards = Some(2);
    config.max_block_size = 8192;
    config.hot_tier = Some(HotTier {
        segment_bytes: 64 << 10,
        budget_bytes: 2 * 4 * (64 << 10),
        inline_threshold_bytes: 1024,
        // Reads must not keep blocks hot: every block goes cold at compaction.
        keep_hot_reads: 0,
        promote_after_reads: 0,
        ..HotTier::default()
    });
    config.cache_bytes = 0;
    config.location_cache_bytes = location_cache_bytes;
    config.bloom_expected_items = 4096;
    config
}

fn check_all(engine: &Engine, model: &HashMap<Cid, Bytes>, deleted: &[Cid]) {
    let store = engine.blocking();
    for (cid, data) in model {
        assert_eq!(store.get(cid).unwrap().as_ref(), Some(data), "{cid}");
        assert_eq!(
            store.get_size(cid).unwrap(),
            Some(data.len() as u64),
            "{cid}"
        );
        assert!(store.has(cid).unwrap(), "{cid}");
    }
    // `get_many` is answered by the shard, which keeps the same cache.
    let cids: Vec<Cid> = model.keys().copied().collect();
    let many = store.get_many(&cids).unwrap();
    for (cid, got) in cids.iter().zip(many) {
        assert_eq!(got.as_ref(), model.get(cid), "get_many of {cid}");
    }
    for cid in deleted {
        assert_eq!(store.get(cid).unwrap(), None, "deleted {cid} served");
        assert_eq!(store.get_size(cid).unwrap(), None, "deleted {cid} sized");
        assert!(!store.has(cid).unwrap(), "deleted {cid} present");
    }
}

#[test]
fn packed_reads_skip_the_backend_and_never_serve_deleted_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path(), 1 << 20)).unwrap();
    let store = engine.blocking();
    let blocks: Vec<Block> = (0..400).map(block).collect();
    for chunk in blocks.chunks(40) {
        store.put_many(chunk).unwrap();
    }
    store.compact().unwrap();
    let mut model: HashMap<Cid, Bytes> = blocks
        .iter()
        .map(|b| (*b.cid(), b.data().clone()))
        .collect();

    let before = store.stats().unwrap();
    assert!(before.locations_cached > 0, "compaction cached no location");
    let cold = before.blocks - before.hot_blocks;
    assert!(cold > 300, "only {cold} of 400 blocks went cold");
    check_all(&engine, &model, &[]);
    let after = store.stats().unwrap();
    // Every cold block read by `get` and `get_many` (sizes and `has` are answered by the
    // cache too): none of them needed the backend.
    assert_eq!(
        after.cache_misses, before.cache_misses,
        "packed reads went to the backend"
    );
    assert!(
        after.location_hits - before.location_hits >= cold,
        "{} location hits for {cold} cold blocks",
        after.location_hits - before.location_hits
    );

    // Deletes drop the locations before they are acknowledged.
    let deleted: Vec<Cid> = blocks.iter().step_by(3).map(|b| *b.cid()).collect();
    store.delete_many(&deleted).unwrap();
    for cid in &deleted {
        model.remove(cid);
    }
    check_all(&engine, &model, &deleted);

    // Reclamation rewrites the packs: live blocks move, the old packs go; every read is still
    // exact, deleted blocks stay gone.
    store.compact().unwrap();
    check_all(&engine, &model, &deleted);
    store.compact().unwrap();
    check_all(&engine, &model, &deleted);
    store.close().unwrap();

    // After a reopen the cache starts empty: a first read asks the backend and caches the
    // location, a second one does not ask.
    let engine = Engine::open(config(dir.path(), 1 << 20)).unwrap();
    let store = engine.blocking();
    check_all(&engine, &model, &deleted);
    // (Reads of deleted blocks still ask the backend: the bloom filter cannot rule them out.)
    let first = store.stats().unwrap();
    check_all(&engine, &model, &[]);
    let second = store.stats().unwrap();
    let cold_now = second.blocks - second.hot_blocks;
    assert_eq!(
        second.cache_misses, first.cache_misses,
        "second reads went to the backend"
    );
    assert!(second.location_hits - first.location_hits >= cold_now);
    store.close().unwrap();
}

#[test]
fn without_the_cache_every_packed_read_asks_the_backend() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path(), 0)).unwrap();
    let store = engine.blocking();
    let blocks: Vec<Block> = (0..200).map(block).collect();
    store.put_many(&blocks).unwrap();
    store.compact().unwrap();
    let model: HashMap<Cid, Bytes> = blocks
        .iter()
        .map(|b| (*b.cid(), b.data().clone()))
        .collect();
    let before = store.stats().unwrap();
    assert_eq!(before.locations_cached, 0);
    // `get` and `get_many` of each block.
    let cold = 2 * (before.blocks - before.hot_blocks);
    check_all(&engine, &model, &[]);
    let after = store.stats().unwrap();
    assert_eq!(after.location_hits, 0);
    assert!(after.cache_misses - before.cache_misses >= cold);
    store.close().unwrap();
}
