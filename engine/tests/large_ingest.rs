//! Large blocks ingested without reading them back (`HotTier::prefetch_large_written` off, as
//! `ipfrs-store car import` runs): hints come from header walks, compaction leaves the blocks
//! in place with their headers checked, and every read still checks the whole record.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use ipfrs_storage::{BackendKind, Block, Config, Engine, Error, HotTier};
use ipfrs_tiering::segment::hint::decode_hint;
use ipfrs_tiering::segment::{Alignment, scan_segment};

mod common;

const SEGMENT: u64 = 1 << 20;

fn config(dir: &Path) -> Config {
    let mut config = Config::new(dir);
    config.shards = Some(1);
    config.backend = BackendKind::ParityDb;
    config.max_block_size = 256 << 10;
    config.hot_tier = Some(HotTier {
        segment_bytes: SEGMENT,
        budget_bytes: 64 * SEGMENT,
        keep_hot_reads: 0,
        promote_after_reads: 0,
        prefetch_large_written: false,
        ..HotTier::default()
    });
    config
}

/// 60 KiB blocks (left in place when cold) and 2 KiB ones (copied inline).
fn blocks(seed: u32, count: u32) -> Vec<Block> {
    common::two_sizes(seed, count, 4, 2 << 10, 60 << 10)
}

fn segments_dir(dir: &Path) -> PathBuf {
    dir.join("shard-000/segments")
}

/// Every hint file next to its segment (`.hint`) or pack (`.pack-hint`): what the hint says
/// equals a checked scan of the file (records, kinds, sequence numbers and the end). Returns
/// how many were compared.
fn hints_match_their_files(dir: &Path) -> usize {
    let mut compared = 0;
    for entry in std::fs::read_dir(segments_dir(dir)).unwrap() {
        let hint_path = entry.unwrap().path();
        let data = match hint_path.extension().and_then(|e| e.to_str()) {
            Some("hint") => hint_path.with_extension("seg"),
            Some("pack-hint") => hint_path.with_extension("pack"),
            _ => continue,
        };
        let hint_bytes = std::fs::read(&hint_path).unwrap();
        let hint = decode_hint(&hint_bytes).expect("an intact hint");
        let file = std::fs::read(&data).unwrap();
        let scan = scan_segment(&file, Alignment::WORD);
        assert!(scan.bad.is_empty(), "{}", data.display());
        assert_eq!(hint.found, scan.found, "{}", hint_path.display());
        assert_eq!(hint.end, scan.end, "{}", hint_path.display());
        compared += 1;
    }
    compared
}

fn check(engine: &Engine, present: &[Block]) {
    let store = engine.blocking();
    for block in present {
        assert_eq!(
            store.get(block.cid()).unwrap().as_ref(),
            Some(block.data()),
            "{}",
            block.cid()
        );
    }
}

#[test]
fn hints_from_header_walks_equal_checked_scans_and_packs_read_exact() {
    let dir = tempfile::tempdir().unwrap();
    let first = blocks(1, 80);
    let engine = Engine::open(config(dir.path())).unwrap();
    for chunk in first.chunks(7) {
        engine.blocking().put_many(chunk).unwrap();
    }
    // Reopened mid-segment: the resumed segment's hint is walked too.
    engine.blocking().close().unwrap();
    drop(engine);
    let engine = Engine::open(config(dir.path())).unwrap();
    let second = blocks(2, 80);
    for chunk in second.chunks(9) {
        engine.blocking().put_many(chunk).unwrap();
    }
    let all: Vec<Block> = first.iter().chain(&second).cloned().collect();
    check(&engine, &all);
    // The sealed segments' hints (written in the background, each atomically), then the
    // packs'.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while hints_match_their_files(dir.path()) < 6 {
        assert!(std::time::Instant::now() < deadline, "no hints written");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    engine.blocking().compact().unwrap();
    let stats = engine.blocking().stats().unwrap();
    assert!(stats.hot_blocks < all.len() as u64 / 4, "{stats:?}");
    check(&engine, &all);
    engine.blocking().close().unwrap();
    drop(engine);
    // About 9 MiB of records in 1 MiB segments.
    assert!(hints_match_their_files(dir.path()) >= 6);
    let engine = Engine::open(config(dir.path())).unwrap();
    check(&engine, &all);
    assert_eq!(engine.blocking().stats().unwrap().corrupt_records, 0);
    engine.blocking().close().unwrap();
}

#[test]
fn a_large_record_damaged_after_its_seal_is_reported_after_compaction_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let all = blocks(3, 60);
    let engine = Engine::open(config(dir.path())).unwrap();
    for chunk in all.chunks(5) {
        engine.blocking().put_many(chunk).unwrap();
    }
    // Block 5 (60 KiB) lies in a sealed segment: flip a byte of its payload there.
    let victim = &all[5];
    let mut segments: Vec<PathBuf> = std::fs::read_dir(segments_dir(dir.path()))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segments.sort();
    let (path, at) = segments
        .iter()
        .find_map(|p| {
            let bytes = std::fs::read(p).unwrap();
            let at = bytes
                .windows(64)
                .position(|w| w == &victim.data()[1000..1064])?;
            Some((p.clone(), at as u64))
        })
        .expect("block 5 is in a segment");
    assert_ne!(path, *segments.last().unwrap(), "in a sealed segment");
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(&[victim.data()[1000] ^ 0x20], at)
        .unwrap();
    drop(file);

    let store = engine.blocking();
    store.compact().unwrap();
    let corrupt = |result: Result<_, Error>| matches!(result, Err(Error::Corrupt { .. }));
    assert!(corrupt(store.get(victim.cid())), "reported, not served");
    assert!(store.get_many(&[*victim.cid()]).is_err());
    let others: Vec<Block> = all
        .iter()
        .filter(|b| b.cid() != victim.cid())
        .cloned()
        .collect();
    check(&engine, &others);
    store.close().unwrap();
    drop(engine);
    let engine = Engine::open(config(dir.path())).unwrap();
    assert!(corrupt(engine.blocking().get(victim.cid())));
    check(&engine, &others);
    engine.blocking().close().unwrap();
}
