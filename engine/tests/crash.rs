//! Crash test: a child process ingests with `Sync` durability and reports every acknowledged
//! block on its stdout; the parent kills it with SIGKILL at a random moment, reopens the store
//! and checks that every acknowledged block reads back bit-exact and the store takes writes.
//!
//! Kills: `IPFRS_CRASH_KILLS` (default 50) per backend whose sync makes writes durable (sled,
//! rocksdb). parity-db is left out: its commits are acknowledged before its background writer
//! has them (see the README's Durability section).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use ipfrs_storage::{BackendKind, Block, Config, Durability, Engine, HotTier, IoDriver};
use rand::{Rng, SeedableRng};

const CHILD_DIR: &str = "IPFRS_CRASH_CHILD_DIR";
const CHILD_BACKEND: &str = "IPFRS_CRASH_CHILD_BACKEND";
const CHILD_DRIVER: &str = "IPFRS_CRASH_CHILD_DRIVER";

fn config(dir: &std::path::Path, backend: BackendKind, driver: IoDriver) -> Config {
    let mut config = Config::new(dir);
    config.backend = backend;
    config.io_driver = driver;
    config.shards = Some(4);
    config.durability = Durability::Sync;
    // Small segments and a small hot budget, so the child rolls segments over and compacts
    // into the cold backend while it is being killed.
    config.max_block_size = 64 << 10;
    config.hot_tier = Some(HotTier {
        segment_bytes: 1 << 20,
        budget_bytes: 4 * (3 << 20),
        ..HotTier::default()
    });
    config
}

/// Block `i` of the child's sequence: its bytes depend only on `i`, so the parent can rebuild
/// any acknowledged block and compare bytes.
fn block(i: u64) -> Block {
    let len = 64 + (i as usize * 37) % 8000;
    let data: Vec<u8> = (0..len).map(|j| (i as usize * 31 + j * 7) as u8).collect();
    Block::new(data).unwrap()
}

/// The child: puts blocks forever, in batches of 4 and one by one in turn (lone puts are
/// written on the child's own thread while its shard is idle, `Config::caller_writes`),
/// printing the index of each acknowledged one. Starts after whatever an earlier child stored
/// (the parent says where).
#[test]
#[ignore = "helper: run as a child process by the crash tests"]
fn crash_child() {
    let (Ok(dir), Ok(backend)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_BACKEND)) else {
        return;
    };
    let start: u64 = std::env::var("IPFRS_CRASH_CHILD_START")
        .unwrap()
        .parse()
        .unwrap();
    let driver: IoDriver = std::env::var(CHILD_DRIVER).unwrap().parse().unwrap();
    let engine = Engine::open(config(dir.as_ref(), backend.parse().unwrap(), driver)).unwrap();
    assert_eq!(engine.io_driver(), driver);
    let store = engine.blocking();
    println!("ready");
    let mut i = start;
    loop {
        let batch: Vec<Block> = (i..i + 4).map(block).collect();
        if (i / 4).is_multiple_of(2) {
            store.put_many(&batch).unwrap();
            for n in i..i + 4 {
                println!("{n}");
            }
        } else {
            for (n, block) in (i..).zip(&batch) {
                store.put(block).unwrap();
                println!("{n}");
            }
        }
        i += 4;
    }
}

/// Kills children ingesting under `child` and checks each time after reopening under
/// `parent` (the other driver: a store a killed process left behind opens under either).
fn crash_campaign(backend: BackendKind, child: IoDriver, parent: IoDriver) {
    let kills: usize = std::env::var("IPFRS_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let seed: u64 = rand::random();
    eprintln!("crash campaign on {backend}, {child} then {parent}: {kills} kills, seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut acked: u64 = 0;
    for kill in 0..kills {
        let run_for = Duration::from_millis(rng.random_range(20..250));
        let envs = [
            (CHILD_DIR, dir.path().display().to_string()),
            (CHILD_BACKEND, backend.name().to_string()),
            ("IPFRS_CRASH_CHILD_START", acked.to_string()),
            (CHILD_DRIVER, child.name().to_string()),
        ];
        let last = common::kill_child_after("crash_child", &envs, run_for);
        if let Some(n) = last {
            acked = n + 1;
        }

        let engine = Engine::open(config(dir.path(), backend, parent))
            .unwrap_or_else(|e| panic!("kill {kill} (seed {seed}): reopen failed: {e}"));
        let store = engine.blocking();
        let expected: Vec<Block> = (0..acked).map(block).collect();
        let cids: Vec<_> = expected.iter().map(|b| *b.cid()).collect();
        for (b, got) in expected.iter().zip(store.get_many(&cids).unwrap()) {
            assert_eq!(
                got.as_ref(),
                Some(b.data()),
                "kill {kill} (seed {seed}): acknowledged block {} lost or wrong",
                b.cid()
            );
        }
        // Writable again.
        let probe = Block::new(format!("after kill {kill}").into_bytes()).unwrap();
        store.put(&probe).unwrap();
        assert!(store.has(probe.cid()).unwrap());
        store.close().unwrap();
    }
    assert!(acked > 0, "the child never acknowledged a write");
    let engine = Engine::open(config(dir.path(), backend, parent)).unwrap();
    let stats = engine.blocking().stats().unwrap();
    eprintln!(
        "{acked} blocks acknowledged, {} hot, {} in the cold backend",
        stats.hot_blocks,
        stats.blocks - stats.hot_blocks
    );
    engine.blocking().close().unwrap();
    // Written well past the hot budget, compaction must have run while children died. How
    // much is written depends on the machine's speed, not on the kill count: a loaded
    // machine writes less in the same windows.
    let written: u64 = (0..acked).map(|i| block(i).data().len() as u64).sum();
    let budget = config(dir.path(), backend, parent)
        .hot_tier
        .map_or(0, |t| t.budget_bytes);
    if written > 2 * budget {
        assert!(
            stats.hot_blocks < stats.blocks,
            "{written} bytes written, nothing reached the cold backend"
        );
    }
}

#[test]
fn sled_keeps_every_acknowledged_block_across_sigkill() {
    crash_campaign(BackendKind::Sled, IoDriver::IoUring, IoDriver::IoUring);
}

#[test]
fn sled_on_the_fallback_driver_keeps_every_acknowledged_block_across_sigkill() {
    crash_campaign(BackendKind::Sled, IoDriver::Fallback, IoDriver::IoUring);
}

#[cfg(feature = "rocksdb")]
#[test]
fn rocksdb_keeps_every_acknowledged_block_across_sigkill() {
    crash_campaign(BackendKind::RocksDb, IoDriver::IoUring, IoDriver::IoUring);
}
