//! Checkpoints of the open state: a shard whose compaction has been idle writes its bloom
//! filter, counters and pack figures, so that the open after a crash skips the walk of the
//! cold keys; anything that would make the checkpoint wrong (a delete of a block the backend
//! may hold, a compaction) voids it first, and that open walks again. Either way every
//! acknowledged block is there, deleted ones are not, and the counters equal a full walk's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use ipfrs_storage::{BackendKind, Block, Config, Durability, Engine, HotTier};

const SHARDS: usize = 2;
const DIR: &str = "IPFRS_CHECKPOINT_DIR";
const SCENARIO: &str = "IPFRS_CHECKPOINT_SCENARIO";

fn config(dir: &Path) -> Config {
    let mut config = Config::new(dir);
    config.backend = BackendKind::Sled;
    config.shards = Some(SHARDS);
    config.durability = Durability::Sync;
    config.max_block_size = 64 << 10;
    // 4 KiB blocks over a small hot budget: most go cold, into packs, indexed by sled.
    config.hot_tier = Some(HotTier {
        segment_bytes: 1 << 20,
        budget_bytes: 4 << 20,
        ..HotTier::default()
    });
    config
}

/// [`config`] for the opens that check the crash's outcome: a budget nothing reaches, so no
/// compaction moves a segment into a pack between the stats taken at one open and the next
/// open's walk (the pack figures of the two must describe the same files).
fn quiet_config(dir: &Path) -> Config {
    let mut config = config(dir);
    if let Some(hot) = &mut config.hot_tier {
        hot.budget_bytes = 1 << 30;
    }
    config
}

/// Cold block `i`: 4 KiB, its bytes a function of `i`.
fn cold(i: u32) -> Block {
    Block::new(format!("checkpointed cold block {i:06} ").repeat(4096 / 31 + 1)[..4096].to_owned())
        .unwrap()
}

/// Block `i` put after the checkpoint: small, so the hot tier stays under its budget.
fn late(i: u32) -> Block {
    Block::new(format!("put after the checkpoint {i}")).unwrap()
}

const COLD: u32 = 3000;

fn checkpoints(engine: &Engine) -> u64 {
    let stats = engine.blocking().stats().unwrap();
    stats.shards.iter().map(|s| s.checkpoints).sum()
}

/// The child: ingests the cold blocks, waits until both shards have written a checkpoint,
/// does what its scenario says, then puts small blocks one at a time until killed.
#[test]
#[ignore = "helper: run as a child process by the checkpoint tests"]
fn checkpoint_child() {
    let (Ok(dir), Ok(scenario)) = (std::env::var(DIR), std::env::var(SCENARIO)) else {
        return;
    };
    let engine = Engine::open(config(Path::new(&dir))).unwrap();
    let store = engine.blocking();
    let blocks: Vec<Block> = (0..COLD).map(cold).collect();
    for chunk in blocks.chunks(64) {
        store.put_many(chunk).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while checkpoints(&engine) < SHARDS as u64 {
        assert!(Instant::now() < deadline, "no checkpoint within 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    match scenario.as_str() {
        "hot-puts" => {}
        "delete" => assert!(store.delete(cold(7).cid()).unwrap()),
        "compact" => {
            store.compact().unwrap();
        }
        other => panic!("unknown scenario {other}"),
    }
    println!("ready");
    for i in 0.. {
        store.put(&late(i)).unwrap();
        println!("{i}");
    }
}

/// Removes every shard's open state or checkpoint, so the next open walks the cold keys.
fn remove_open_states(dir: &Path) {
    for shard in 0..SHARDS {
        let state = dir.join(format!("shard-{shard:03}")).join("open-state");
        if state.exists() {
            std::fs::remove_file(state).unwrap();
        }
    }
}

fn crash_and_reopen(scenario: &str) {
    let dir = tempfile::tempdir().unwrap();
    let envs = [
        (DIR, dir.path().display().to_string()),
        (SCENARIO, scenario.to_string()),
    ];
    let acked = common::kill_child_after("checkpoint_child", &envs, Duration::from_millis(200))
        .map_or(0, |n| n + 1) as u32;

    let engine = Engine::open(quiet_config(dir.path())).unwrap();
    let store = engine.blocking();
    let stats = store.stats().unwrap();
    let walked = stats.keys_walked_at_open;
    let deleted = (scenario == "delete").then(|| cold(7));
    for block in (0..COLD).map(cold).chain((0..acked).map(late)) {
        let want = (deleted.as_ref().map(Block::cid) != Some(block.cid())).then(|| block.data());
        let got = store.get(block.cid()).unwrap();
        assert_eq!(
            got.as_deref(),
            want.map(|d| &d[..]),
            "{scenario}: {}",
            block.cid()
        );
    }
    // The child may have had one more put acknowledged than it printed.
    let expected = COLD as u64 + acked as u64 - deleted.is_some() as u64;
    assert!(
        stats.blocks == expected || stats.blocks == expected + 1,
        "{scenario}: {} blocks after the crash, {expected} acknowledged",
        stats.blocks
    );
    drop(store);
    drop(engine);

    // A second crash-free reopen from nothing but a walk must count the same.
    remove_open_states(dir.path());
    let engine = Engine::open(quiet_config(dir.path())).unwrap();
    let walked_stats = engine.blocking().stats().unwrap();
    assert!(walked_stats.keys_walked_at_open > 0);
    assert_eq!(walked_stats.blocks, stats.blocks, "{scenario}: blocks");
    assert_eq!(walked_stats.bytes, stats.bytes, "{scenario}: bytes");
    assert_eq!(
        walked_stats.pack_live_bytes, stats.pack_live_bytes,
        "{scenario}: live bytes of the packs"
    );
    engine.blocking().close().unwrap();

    match scenario {
        // Nothing voided either shard's checkpoint: the open walked nothing.
        "hot-puts" => assert_eq!(walked, 0, "the checkpoint must spare the walk"),
        // Each voided at least one shard's checkpoint, whose keys were walked.
        _ => assert!(walked > 0, "{scenario}: a voided checkpoint was used"),
    }
}

#[test]
fn a_crash_after_a_checkpoint_opens_without_walking_the_cold_keys() {
    crash_and_reopen("hot-puts");
}

#[test]
fn a_delete_of_a_cold_block_voids_the_checkpoint() {
    crash_and_reopen("delete");
}

#[test]
fn a_compaction_voids_the_checkpoint() {
    crash_and_reopen("compact");
}
