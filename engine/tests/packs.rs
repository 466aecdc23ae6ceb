//! The cold tier as packs: large cold blocks stay in their sealed segments (packs) and the
//! backend indexes them; small ones are copied into the backend. Reads are exact through
//! compaction, reopen and a crash; deletes give disk space back by reclaiming packs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use futures_lite::future::block_on;
use ipfrs_storage::{BackendKind, Block, BlockStore, Config, Engine, HotTier, Stats};

mod common;

const SEGMENT: u64 = 1 << 20;

fn config(dir: &Path, backend: BackendKind) -> Config {
    let mut config = Config::new(dir);
    config.shards = Some(2);
    config.backend = backend;
    config.max_block_size = 256 << 10;
    config.hot_tier = Some(HotTier {
        segment_bytes: SEGMENT,
        budget_bytes: 4 * SEGMENT,
        // Nothing read since written stays hot: what compaction reaches goes cold.
        keep_hot_reads: 0,
        promote_after_reads: 0,
        ..HotTier::default()
    });
    config
}

/// 64 KiB blocks (packed) and 2 KiB ones (inline), distinct by `seed`.
fn blocks(seed: u32, count: u32) -> Vec<Block> {
    (0..count)
        .map(|i| {
            let len = if i % 3 == 0 { 2 << 10 } else { 64 << 10 };
            let fill = format!("{seed}:{i}:");
            Block::new(fill.repeat(len / fill.len() + 1)[..len].to_string()).unwrap()
        })
        .collect()
}

fn stats(engine: &Engine) -> Stats {
    block_on(BlockStore::stats(engine)).unwrap()
}

fn check(engine: &Engine, present: &[Block], absent: &[Block]) {
    let store = engine.blocking();
    for block in present {
        assert_eq!(
            store.get(block.cid()).unwrap().as_ref(),
            Some(block.data()),
            "{}",
            block.cid()
        );
        assert_eq!(
            store.get_size(block.cid()).unwrap(),
            Some(block.len() as u64)
        );
    }
    let cids: Vec<_> = present.iter().map(|b| *b.cid()).collect();
    let many = store.get_many(&cids).unwrap();
    for (block, got) in present.iter().zip(many) {
        assert_eq!(got.as_ref(), Some(block.data()));
    }
    for block in absent {
        assert_eq!(store.get(block.cid()).unwrap(), None);
        assert!(!store.has(block.cid()).unwrap());
    }
    let s = stats(engine);
    assert_eq!(s.blocks, present.len() as u64);
    assert_eq!(s.bytes, present.iter().map(|b| b.len() as u64).sum::<u64>());
}

fn packs_serve_cold_blocks(backend: BackendKind) {
    let dir = tempfile::tempdir().unwrap();
    let all = blocks(1, 300);
    let engine = Engine::open(config(dir.path(), backend)).unwrap();
    for chunk in all.chunks(20) {
        block_on(engine.put_many(chunk)).unwrap();
    }
    block_on(engine.compact()).unwrap();
    let s = stats(&engine);
    assert!(s.packs > 0, "{s:?}");
    assert!(s.hot_blocks < all.len() as u64 / 4, "{s:?}");
    // Packed blocks are not copied into the backend: what compaction gave it is the small
    // blocks and 15-byte entries, far below the large blocks' bytes.
    let large: u64 = all
        .iter()
        .filter(|b| b.len() > 16 << 10)
        .map(|b| b.len() as u64)
        .sum();
    assert!(s.compaction_cold_bytes < large / 4, "{s:?}");
    assert!(s.pack_live_bytes > large / 2, "{s:?}");
    check(&engine, &all, &blocks(2, 10));
    block_on(engine.close()).unwrap();

    // Reopened from the saved state, then with a walk of the index.
    let engine = Engine::open(config(dir.path(), backend)).unwrap();
    assert_eq!(stats(&engine).keys_walked_at_open, 0);
    check(&engine, &all, &[]);
    let packs = stats(&engine).pack_live_bytes;
    block_on(engine.close()).unwrap();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let _ = std::fs::remove_file(entry.unwrap().path().join("open-state"));
    }
    let engine = Engine::open(config(dir.path(), backend)).unwrap();
    assert!(stats(&engine).keys_walked_at_open > 0);
    assert_eq!(
        stats(&engine).pack_live_bytes,
        packs,
        "the walk counts what the close saved"
    );
    check(&engine, &all, &[]);

    // Deleting most blocks makes packs reclaimable; compaction gives their space back and
    // every remaining block reads back exact.
    let gone: Vec<Block> = all
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 5 != 0)
        .map(|(_, b)| b.clone())
        .collect();
    let kept: Vec<Block> = all.iter().step_by(5).cloned().collect();
    let before = stats(&engine);
    let cids: Vec<_> = gone.iter().map(|b| *b.cid()).collect();
    block_on(engine.delete_many(&cids)).unwrap();
    block_on(engine.compact()).unwrap();
    let after = stats(&engine);
    assert!(
        after.pack_disk_bytes < before.pack_disk_bytes,
        "{before:?}\n{after:?}"
    );
    assert!(after.shards.iter().map(|s| s.packs_reclaimed).sum::<u64>() > 0);
    check(&engine, &kept, &gone);
    block_on(engine.close()).unwrap();
    let engine = Engine::open(config(dir.path(), backend)).unwrap();
    check(&engine, &kept, &gone);
    block_on(engine.close()).unwrap();
}

#[test]
fn packs_serve_cold_blocks_sled() {
    packs_serve_cold_blocks(BackendKind::Sled);
}

#[test]
fn packs_serve_cold_blocks_paritydb() {
    packs_serve_cold_blocks(BackendKind::ParityDb);
}

/// With the threshold at the largest block, every cold block is copied into the backend, as
/// the engine's first design did, and no pack is made.
#[test]
fn an_inline_threshold_at_the_block_limit_makes_no_packs() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), BackendKind::Sled);
    if let Some(hot) = &mut config.hot_tier {
        hot.inline_threshold_bytes = config.max_block_size as u32;
    }
    let all = blocks(3, 60);
    let engine = Engine::open(config).unwrap();
    block_on(engine.put_many(&all)).unwrap();
    block_on(engine.compact()).unwrap();
    assert_eq!(stats(&engine).packs, 0);
    check(&engine, &all, &[]);
    block_on(engine.close()).unwrap();
}

/// A child that writes and compacts until killed: packs made, renamed and reclaimed under
/// it; the parent reopens and reads every acknowledged block.
#[test]
fn a_crash_during_pack_work_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    // Per round, the last index whose put (and delete) the child acknowledged.
    let mut acks: Vec<Option<u64>> = Vec::new();
    for round in 0..4u32 {
        let envs = [
            ("IPFRS_PACKS_DIR", dir.path().display().to_string()),
            ("IPFRS_PACKS_ROUND", round.to_string()),
        ];
        acks.push(common::kill_child_after(
            "child_writes_deletes_and_compacts",
            &envs,
            std::time::Duration::from_millis(600 + 150 * u64::from(round)),
        ));
        // Every round so far: later children compacted, packed and reclaimed its blocks.
        let engine = Engine::open(config(dir.path(), BackendKind::Sled)).unwrap();
        let store = engine.blocking();
        for (r, acked) in acks.iter().enumerate() {
            let Some(acked) = *acked else {
                continue;
            };
            let written = blocks(100 + r as u32, 120);
            for (i, block) in written.iter().enumerate().take(acked as usize + 1) {
                let got = store.get(block.cid()).unwrap();
                if i % 4 == 3 {
                    assert_eq!(
                        got, None,
                        "round {round}: block {i} of round {r} was deleted"
                    );
                } else {
                    assert_eq!(
                        got.as_ref(),
                        Some(block.data()),
                        "round {round}: block {i} of round {r}"
                    );
                }
            }
        }
        drop(store);
        block_on(engine.close()).unwrap();
    }
}

/// Run by `a_crash_during_pack_work_loses_nothing_acknowledged`: puts blocks one by one,
/// deletes every fourth after its put, compacts every 16, printing each index once its put
/// (and delete) is acknowledged.
#[test]
#[ignore = "a child of a_crash_during_pack_work_loses_nothing_acknowledged"]
fn child_writes_deletes_and_compacts() {
    let dir = std::env::var("IPFRS_PACKS_DIR").unwrap();
    let round: u32 = std::env::var("IPFRS_PACKS_ROUND").unwrap().parse().unwrap();
    let mut config = config(Path::new(&dir), BackendKind::Sled);
    config.durability = ipfrs_storage::Durability::Sync;
    let engine = Engine::open(config).unwrap();
    let store = engine.blocking();
    println!("ready");
    for (i, block) in blocks(100 + round, 120).iter().enumerate() {
        store.put(block).unwrap();
        if i % 4 == 3 {
            store.delete(block.cid()).unwrap();
        }
        if i % 16 == 15 {
            store.compact().unwrap();
        }
        println!("{i}");
    }
    // Finished: every index is acknowledged; keep saying so until killed (the parent reads
    // lines until its deadline).
    loop {
        std::thread::sleep(std::time::Duration::from_millis(20));
        println!("119");
    }
}
