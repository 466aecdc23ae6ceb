//! The hot tier end to end: zero-copy reads, reopen, compaction into the cold backend,
//! promotion, corruption reported and never served, torn tails truncated.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ipfrs_storage::{BackendKind, Block, Config, Durability, Engine, Error, HotTier};

fn config(dir: &Path) -> Config {
    let mut config = Config::new(dir);
    config.shards = Some(1);
    config.max_block_size = 64 << 10;
    config.durability = Durability::Sync;
    config.hot_tier = Some(HotTier {
        segment_bytes: 256 << 10,
        budget_bytes: 4 << 20,
        // The 4 KiB blocks here are copied into the cold backend when they go cold (and may
        // be promoted back): the inline path (packs have tests/packs.rs and
        // tests/location_cache.rs).
        inline_threshold_bytes: 16 << 10,
        ..HotTier::default()
    });
    config
}

fn config_no_cache(dir: &Path) -> Config {
    let mut config = config(dir);
    config.cache_bytes = 0;
    config
}

fn blocks(count: usize, size: usize, salt: u8) -> Vec<Block> {
    (0..count)
        .map(|i| {
            let data: Vec<u8> = (0..size)
                .map(|j| (i * 131 + j * 7) as u8 ^ salt)
                .chain((i as u32).to_le_bytes())
                .collect();
            Block::new(data).unwrap()
        })
        .collect()
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir.join("shard-000/segments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    out.sort();
    out
}

/// The offset of the first occurrence of `needle` in the file.
fn find(path: &Path, needle: &[u8]) -> Option<u64> {
    let bytes = std::fs::read(path).unwrap();
    bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p as u64)
}

fn reopen(engine: Engine, config: Config) -> Engine {
    engine.blocking().close().unwrap();
    drop(engine);
    Engine::open(config).unwrap()
}

#[test]
fn hot_reads_are_zero_copy_slices_that_outlive_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    let store = engine.blocking();
    let all = blocks(40, 8 << 10, 1);
    store.put_many(&all).unwrap();
    let stats = store.stats().unwrap();
    assert_eq!(stats.hot_blocks, 40);
    assert_eq!(stats.hot_bytes, stats.bytes);

    let first = store.get(all[0].cid()).unwrap().unwrap();
    let again = store.get(all[0].cid()).unwrap().unwrap();
    assert_eq!(first, all[0].data());
    // Both reads borrow the same mapped bytes: no copy was made.
    assert_eq!(first.as_ptr(), again.as_ptr());

    // Moving everything to the cold backend removes the segment files, yet the bytes held
    // by the caller stay valid.
    let before = segments(dir.path());
    assert!(store.compact().unwrap() >= 1);
    assert!(
        before.iter().any(|p| !p.exists()),
        "a compacted segment file is removed"
    );
    assert_eq!(first, all[0].data());
    let stats = store.stats().unwrap();
    assert!(stats.compaction_cold_bytes > 0);
    assert_eq!(stats.blocks, 40);
    for block in &all {
        assert_eq!(store.get(block.cid()).unwrap().as_ref(), Some(block.data()));
    }
    store.close().unwrap();
}

#[test]
fn compaction_keeps_read_blocks_hot_and_moves_the_rest_cold() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    let store = engine.blocking();
    let all = blocks(20, 4 << 10, 2);
    store.put_many(&all).unwrap();
    // Read the first five three times: they are hot when compaction reaches them.
    for _ in 0..3 {
        for block in &all[..5] {
            store.get(block.cid()).unwrap();
        }
    }
    store.compact().unwrap();
    let stats = store.stats().unwrap();
    assert_eq!(stats.hot_blocks, 5, "only the read blocks stay hot");
    assert_eq!(stats.blocks, 20);
    assert!(stats.compaction_rewritten_bytes >= 5 * 4096);
    assert!(stats.compaction_cold_bytes >= 15 * 4096);
    assert!(stats.write_amplification >= 1.0);

    // The same after a reopen: the rewritten copies are found, the cold ones too.
    let engine = reopen(engine, config(dir.path()));
    let store = engine.blocking();
    let stats = store.stats().unwrap();
    assert_eq!(stats.blocks, 20);
    assert_eq!(stats.hot_blocks, 5);
    for block in &all {
        assert_eq!(store.get(block.cid()).unwrap().as_ref(), Some(block.data()));
    }
    store.close().unwrap();
}

#[test]
fn cold_blocks_read_twice_are_promoted_back() {
    let dir = tempfile::tempdir().unwrap();
    // No block cache: every cold read reaches the backend.
    let engine = Engine::open(config_no_cache(dir.path())).unwrap();
    let store = engine.blocking();
    let all = blocks(10, 4 << 10, 3);
    store.put_many(&all).unwrap();
    store.compact().unwrap();
    assert_eq!(store.stats().unwrap().hot_blocks, 0);
    for _ in 0..2 {
        assert_eq!(
            store.get(all[0].cid()).unwrap().as_ref(),
            Some(all[0].data())
        );
    }
    // The promotion is a queued write: a flush waits for it.
    store.flush().unwrap();
    let stats = store.stats().unwrap();
    assert_eq!(stats.promotions, 1);
    assert_eq!(stats.hot_blocks, 1);
    assert_eq!(stats.blocks, 10, "a promoted block is counted once");
    // Deleting a promoted block removes both copies, for good.
    assert!(store.delete(all[0].cid()).unwrap());
    let engine = reopen(engine, config_no_cache(dir.path()));
    let store = engine.blocking();
    assert!(!store.has(all[0].cid()).unwrap());
    assert_eq!(store.get(all[0].cid()).unwrap(), None);
    assert_eq!(store.stats().unwrap().blocks, 9);
    store.close().unwrap();
}

#[test]
fn deletes_survive_reopen_in_both_tiers() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    let store = engine.blocking();
    let all = blocks(12, 2 << 10, 4);
    store.put_many(&all[..6]).unwrap();
    store.compact().unwrap(); // 0..6 are cold now
    store.put_many(&all[6..]).unwrap(); // 6..12 are hot
    let doomed: Vec<_> = [1, 2, 7, 8].iter().map(|&i| *all[i].cid()).collect();
    assert_eq!(store.delete_many(&doomed).unwrap(), vec![true; 4]);
    let engine = reopen(engine, config(dir.path()));
    let store = engine.blocking();
    for (i, block) in all.iter().enumerate() {
        let want = ![1, 2, 7, 8].contains(&i);
        assert_eq!(store.has(block.cid()).unwrap(), want, "block {i}");
    }
    assert_eq!(store.stats().unwrap().blocks, 8);
    let listed: Vec<_> = store.cids().collect::<Result<_, _>>().unwrap();
    assert_eq!(listed.len(), 8);
    store.close().unwrap();
}

#[test]
fn a_damaged_record_is_reported_corrupt_and_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let all = blocks(8, 4 << 10, 5);
    {
        let engine = Engine::open(config(dir.path())).unwrap();
        engine.blocking().put_many(&all).unwrap();
        engine.blocking().close().unwrap();
    }
    // Flip one byte in the middle of block 3's payload.
    let seg = segments(dir.path()).pop().unwrap();
    let at = find(&seg, all[3].data()).expect("block 3 is in the segment") + 100;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&seg)
        .unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, at).unwrap();
    file.write_all_at(&[byte[0] ^ 0x40], at).unwrap();
    drop(file);

    let engine = Engine::open(config(dir.path())).unwrap();
    let store = engine.blocking();
    assert!(
        store.stats().unwrap().corrupt_records >= 1,
        "recovery reports it"
    );
    match store.get(all[3].cid()) {
        Err(err @ Error::Corrupt { .. }) => {
            assert_eq!(err.corrupt_cid().as_ref(), Some(all[3].cid()))
        }
        other => panic!("a damaged block must be reported corrupt, got {other:?}"),
    }
    assert!(store.get_many(&[*all[3].cid()]).is_err());
    for (i, block) in all.iter().enumerate().filter(|(i, _)| *i != 3) {
        assert_eq!(
            store.get(block.cid()).unwrap().as_ref(),
            Some(block.data()),
            "block {i}"
        );
    }
    // Damage that appears while the engine runs is caught by the read too.
    let at = find(&seg, all[5].data()).unwrap() + 10;
    let file = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    file.write_all_at(&[0xff, 0x00, 0xff], at).unwrap();
    drop(file);
    assert!(matches!(
        store.get(all[5].cid()),
        Err(Error::Corrupt { .. })
    ));
    // Compaction drops damaged records instead of moving their bytes to the cold tier.
    store.compact().unwrap();
    assert_eq!(store.get(all[3].cid()).unwrap(), None);
    assert_eq!(store.get(all[5].cid()).unwrap(), None);
    assert_eq!(
        store.get(all[0].cid()).unwrap().as_ref(),
        Some(all[0].data())
    );
    store.close().unwrap();
}

#[test]
fn a_torn_tail_is_truncated_and_writing_continues() {
    let dir = tempfile::tempdir().unwrap();
    let all = blocks(6, 1 << 10, 6);
    {
        let engine = Engine::open(config(dir.path())).unwrap();
        engine.blocking().put_many(&all[..4]).unwrap();
        engine.blocking().close().unwrap();
    }
    // A write that was cut short: a header-like fragment right after the last record.
    let seg = segments(dir.path()).pop().unwrap();
    let end = find(&seg, all[3].data()).unwrap() + all[3].data().len() as u64;
    let end = end.next_multiple_of(8);
    let file = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    file.write_all_at(b"IPFr\x01\x00\x22\x00garbage-from-a-torn-write", end)
        .unwrap();
    drop(file);

    let engine = Engine::open(config(dir.path())).unwrap();
    let store = engine.blocking();
    assert_eq!(
        store.stats().unwrap().corrupt_records,
        0,
        "a torn tail is not corruption"
    );
    for block in &all[..4] {
        assert_eq!(store.get(block.cid()).unwrap().as_ref(), Some(block.data()));
    }
    store.put_many(&all[4..]).unwrap();
    let engine = reopen(engine, config(dir.path()));
    let store = engine.blocking();
    for block in &all {
        assert_eq!(store.get(block.cid()).unwrap().as_ref(), Some(block.data()));
    }
    assert_eq!(store.stats().unwrap().corrupt_records, 0);
    store.close().unwrap();
}

#[test]
fn background_compaction_keeps_the_hot_area_within_budget() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.durability = Durability::default();
    config.hot_tier = Some(HotTier {
        segment_bytes: 256 << 10,
        budget_bytes: 1 << 20,
        ..HotTier::default()
    });
    let engine = Engine::open(config).unwrap();
    let store = engine.blocking();
    let all = blocks(600, 8 << 10, 7); // ~4.8 MiB through a 1 MiB hot budget
    for chunk in all.chunks(50) {
        store.put_many(chunk).unwrap();
    }
    // Compaction runs in the background: give it a moment to catch up.
    let limit = (1 << 20) + (256 << 10);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut stats = store.stats().unwrap();
    while stats.hot_disk_bytes > limit && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        stats = store.stats().unwrap();
    }
    assert!(
        stats.hot_disk_bytes <= limit,
        "hot area {} bytes over a 1 MiB budget",
        stats.hot_disk_bytes
    );
    assert!(stats.compaction_cold_bytes > 0);
    assert_eq!(stats.blocks, 600);
    for block in all.iter().step_by(7) {
        assert_eq!(store.get(block.cid()).unwrap().as_ref(), Some(block.data()));
    }
    store.close().unwrap();
}

#[test]
fn a_store_with_hot_segments_refuses_to_open_without_them() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine = Engine::open(config(dir.path())).unwrap();
        engine.blocking().put(&blocks(1, 10, 8)[0]).unwrap();
        engine.blocking().close().unwrap();
    }
    let mut cold_only = config(dir.path());
    cold_only.hot_tier = None;
    assert!(matches!(
        Engine::open(cold_only),
        Err(Error::HotTierRequired { .. })
    ));
}

#[test]
fn every_backend_serves_hot_and_cold_blocks() {
    for backend in ipfrs_storage::compiled_backends() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(dir.path());
        config.backend = backend;
        let engine = Engine::open(config.clone()).unwrap();
        let store = engine.blocking();
        let all = blocks(10, 3000, 9);
        store.put_many(&all[..5]).unwrap();
        store.compact().unwrap();
        store.put_many(&all[5..]).unwrap();
        let cids: Vec<_> = all.iter().map(|b| *b.cid()).collect();
        let got = store.get_many(&cids).unwrap();
        for (b, g) in all.iter().zip(got) {
            assert_eq!(g.as_ref(), Some(b.data()), "{backend}");
        }
        let stats = store.stats().unwrap();
        assert_eq!((stats.blocks, stats.hot_blocks), (10, 5), "{backend}");
        store.close().unwrap();
        if backend == BackendKind::Sled {
            assert!(dir.path().join("shard-000/sled").exists());
        }
    }
}

#[test]
fn sealed_segments_get_hint_files_and_a_bad_hint_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let all = blocks(100, 8 << 10, 10); // ~800 KiB: three sealed 256 KiB segments
    {
        let engine = Engine::open(config(dir.path())).unwrap();
        engine.blocking().put_many(&all[..50]).unwrap();
        engine.blocking().put_many(&all[50..]).unwrap();
        engine.blocking().close().unwrap();
    }
    let segs = dir.path().join("shard-000/segments");
    // Hints are written in the background after the sync; wait for them.
    let deadline = Instant::now() + Duration::from_secs(10);
    let hints = || -> Vec<PathBuf> {
        let mut h: Vec<PathBuf> = std::fs::read_dir(&segs)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "hint"))
            .collect();
        h.sort();
        h
    };
    while hints().len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let found = hints();
    assert!(found.len() >= 2, "hints: {found:?}");
    assert!(
        found.len() < segments(dir.path()).len(),
        "the active segment has no hint"
    );

    // A damaged hint is ignored: that segment is scanned instead.
    let mut bytes = std::fs::read(&found[0]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&found[0], bytes).unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    let store = engine.blocking();
    assert_eq!(store.stats().unwrap().blocks, 100);
    for block in &all {
        assert_eq!(store.get(block.cid()).unwrap().as_ref(), Some(block.data()));
    }
    // Compaction removes a segment's hint with it.
    store.compact().unwrap();
    assert!(hints().is_empty(), "{:?}", hints());
    store.close().unwrap();
}
