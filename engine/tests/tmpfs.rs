//! A store on tmpfs, which refuses O_DIRECT: both I/O drivers write through the page cache
//! there (glommio by its own check of the filesystem, the fallback when `fcntl` refuses
//! O_DIRECT) and make it durable with fdatasync; a store written under one opens under the
//! other with every block.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ipfrs_storage::{Block, Config, Engine, HotTier, IoDriver};

/// A directory on tmpfs, if the machine has one (`/dev/shm` on Linux).
fn tmpfs_dir() -> Option<tempfile::TempDir> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    let on_tmpfs = mounts.lines().any(|l| {
        let mut fields = l.split_whitespace().skip(1);
        (fields.next(), fields.next()) == (Some("/dev/shm"), Some("tmpfs"))
    });
    on_tmpfs.then(|| tempfile::tempdir_in("/dev/shm").unwrap())
}

fn config(dir: &std::path::Path, driver: IoDriver) -> Config {
    let mut config = Config::new(dir);
    config.io_driver = driver;
    config.shards = Some(2);
    config.hot_tier = Some(HotTier {
        segment_bytes: 8 << 20,
        budget_bytes: 32 << 20,
        ..HotTier::default()
    });
    config
}

#[test]
fn both_drivers_run_on_tmpfs_and_read_each_others_store() {
    let Some(dir) = tmpfs_dir() else {
        eprintln!("SKIPPED: no tmpfs at /dev/shm on this machine");
        return;
    };
    // Small blocks and large ones (past the writer's direct-write limit: written on the
    // blocking pool under the fallback, as DMA writes under io_uring).
    let blocks: Vec<Block> = (0..60usize)
        .map(|i| {
            let len = if i % 3 == 0 { 600_000 } else { 3000 + i };
            Block::new(
                (0..len)
                    .map(|j| (i * 7 + j * 13) as u8)
                    .collect::<Vec<u8>>(),
            )
            .unwrap()
        })
        .collect();
    let mut stored = 0;
    for (round, driver) in [IoDriver::Fallback, IoDriver::IoUring, IoDriver::Fallback]
        .into_iter()
        .enumerate()
    {
        let engine = Engine::open(config(dir.path(), driver)).unwrap();
        assert_eq!(engine.io_driver(), driver);
        let store = engine.blocking();
        for b in &blocks[..stored] {
            assert_eq!(
                store.get(b.cid()).unwrap().as_ref(),
                Some(b.data()),
                "round {round} ({driver})"
            );
        }
        let next = (stored + 20).min(blocks.len());
        store.put_many(&blocks[stored..next]).unwrap();
        stored = next;
        store.close().unwrap();
    }
    let engine = Engine::open(config(dir.path(), IoDriver::IoUring)).unwrap();
    let store = engine.blocking();
    assert_eq!(store.stats().unwrap().blocks, blocks.len() as u64);
    for b in &blocks {
        assert_eq!(store.get(b.cid()).unwrap().as_ref(), Some(b.data()));
    }
    store.close().unwrap();
}
