//! The pack tier killed at exact points of its order (the `failpoints` feature of the shards:
//! the process aborts there): after a pack's upload and before the manifest that lists it,
//! after a manifest and before any eviction, after a pack's local files are removed. Each
//! time the store reopens on the same bucket with every block, the uploader finishes what
//! the crash cut off, and the bucket holds exactly what its manifests list. And killed right
//! after a delete reached the cold index, before a manifest listed the deleted records dead:
//! the reopened store still publishes them, so a replica stops serving those blocks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use futures_lite::future::block_on;
use ipfrs_storage::{
    BackendKind, Block, BlockStore, Config, Engine, HotTier, RemoteConfig, Replica,
};

mod common;

use common::remote::{files_ending, stats};

const CHILD: &str = "remote_failpoint_child";
const DATA: &str = "IPFRS_FAILPOINT_DATA";
const BUCKET_ROOT: &str = "IPFRS_FAILPOINT_BUCKET";

fn config(data: &Path, bucket_root: &Path) -> Config {
    let mut config = Config::new(data);
    config.shards = Some(1);
    config.backend = BackendKind::Sled;
    config.max_block_size = 256 << 10;
    config.hot_tier = Some(HotTier {
        segment_bytes: 1 << 20,
        budget_bytes: 4 << 20,
        keep_hot_reads: 0,
        promote_after_reads: 0,
        ..HotTier::default()
    });
    std::fs::create_dir_all(bucket_root.join("bucket")).unwrap();
    let endpoint = format!("file://{}", bucket_root.display());
    config.remote = Some(common::remote::tier(
        RemoteConfig::new(Some(&endpoint), "bucket"),
        0,
    ));
    config
}

fn blocks() -> Vec<Block> {
    common::two_sizes(11, 120, 4, 700, 48 << 10)
}

/// Runs the child test `child` on `data` and the bucket under `root` with failpoint `point`
/// armed, and checks that it aborted there (SIGABRT), not exited: the point was reached.
fn run_child(child: &str, point: &str, data: &Path, root: &Path) {
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", child, "--ignored", "--test-threads=1"])
        .env("FAILPOINTS", format!("{point}=return"))
        .env(DATA, data)
        .env(BUCKET_ROOT, root)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGABRT), "{point}: {status}");
}

/// A child's store (where the parent's environment says), holding every block, compacted
/// into packs.
fn child_store_with_blocks() -> Engine {
    let (data, root) = (
        PathBuf::from(std::env::var(DATA).unwrap()),
        PathBuf::from(std::env::var(BUCKET_ROOT).unwrap()),
    );
    let engine = Engine::open(config(&data, &root)).unwrap();
    for chunk in blocks().chunks(10) {
        block_on(engine.put_many(chunk)).unwrap();
    }
    block_on(engine.compact()).unwrap();
    engine
}

/// Run as a child: stores every block (acknowledged before the compaction that makes packs),
/// then compacts and waits for the failpoint named in `FAILPOINTS` to abort the process.
#[test]
#[ignore = "helper: run as a child process by the failpoint campaign"]
fn remote_failpoint_child() {
    let _scenario = fail::FailScenario::setup();
    let _engine = child_store_with_blocks();
    // The uploader reaches the point within seconds; alive past that, it never did.
    std::thread::sleep(Duration::from_secs(30));
    std::process::exit(3);
}

/// Whether block `i` of [`blocks`] is deleted by [`remote_delete_child`].
fn doomed(i: usize) -> bool {
    i % 3 == 1
}

/// Run as a child: stores every block, waits until every pack is in the bucket and gone from
/// the disk (so the deletes below are of blocks only the bucket holds), then deletes a third
/// of them; the failpoint aborts right after the cold index dropped them.
#[test]
#[ignore = "helper: run as a child process by the delete campaign"]
fn remote_delete_child() {
    let _scenario = fail::FailScenario::setup();
    let engine = child_store_with_blocks();
    let all = blocks();
    let start = Instant::now();
    let mut s = stats(&engine);
    while !(s.packs > 0 && s.remote_packs == s.packs && s.remote_evictions == s.packs)
        && start.elapsed() < Duration::from_secs(30)
    {
        std::thread::sleep(Duration::from_millis(50));
        s = stats(&engine);
    }
    let cids: Vec<_> = (0..all.len())
        .filter(|&i| doomed(i))
        .map(|i| *all[i].cid())
        .collect();
    let _ = block_on(engine.delete_many(&cids));
    std::process::exit(3);
}

#[test]
fn killed_after_a_cold_delete_the_reopened_store_still_lists_the_records_dead() {
    let dir = tempfile::tempdir().unwrap();
    let (data, root) = (dir.path().join("store"), dir.path().join("s3"));
    run_child(
        "remote_delete_child",
        "remote-after-cold-delete",
        &data,
        &root,
    );

    let all = blocks();
    let engine = Engine::open(config(&data, &root)).unwrap();
    let store = engine.blocking();
    for (i, block) in all.iter().enumerate() {
        let want = (!doomed(i)).then(|| block.data().clone());
        assert_eq!(store.get(block.cid()).unwrap(), want, "block {i}");
    }
    // The reopened store's uploader publishes the dead records; a replica built from the
    // bucket alone then serves exactly the blocks that were not deleted.
    let endpoint = format!("file://{}", root.display());
    let replica = Replica::open(RemoteConfig::new(Some(&endpoint), "bucket")).unwrap();
    let start = Instant::now();
    let served = |replica: &Replica| {
        all.iter()
            .enumerate()
            .filter(|(i, b)| doomed(*i) && replica.has(b.cid()))
            .count()
    };
    while served(&replica) > 0 && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(100));
        replica.refresh().unwrap();
    }
    assert_eq!(
        served(&replica),
        0,
        "deleted blocks the replica still serves"
    );
    // Its count agrees: the dead records came with a manifest of the same packs.
    let kept = (0..all.len()).filter(|&i| !doomed(i)).count() as u64;
    assert_eq!(replica.block_count(), kept);
    // Once a manifest lists them, the shard's own note of those records goes.
    let start = Instant::now();
    while !files_ending(&data, "DEAD").is_empty() && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(files_ending(&data, "DEAD"), Vec::<PathBuf>::new());
    for (i, block) in all.iter().enumerate().filter(|(i, _)| !doomed(*i)) {
        assert_eq!(
            block_on(replica.get(block.cid())).unwrap().as_ref(),
            Some(block.data()),
            "block {i}"
        );
    }
    block_on(engine.close()).unwrap();
}

/// Objects under the bucket's `packs` folders, by file name.
fn packs_in_bucket(root: &Path) -> Vec<String> {
    let dir = root.join("bucket/shard-000/packs");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".pack"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn killed_at_each_step_of_the_upload_order_the_store_keeps_every_block() {
    for point in [
        "remote-after-upload",
        "remote-after-publish",
        "remote-after-evict",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (data, root) = (dir.path().join("store"), dir.path().join("s3"));
        run_child(CHILD, point, &data, &root);

        let engine = Engine::open(config(&data, &root)).unwrap();
        let all = blocks();
        let start = Instant::now();
        let mut s = stats(&engine);
        while !(s.packs > 0 && s.remote_packs == s.packs)
            && start.elapsed() < Duration::from_secs(60)
        {
            std::thread::sleep(Duration::from_millis(50));
            s = stats(&engine);
        }
        assert!(s.packs > 0, "{point}: {s:?}");
        assert_eq!(
            s.remote_packs, s.packs,
            "{point}: the uploader caught up: {s:?}"
        );
        let store = engine.blocking();
        for block in &all {
            assert_eq!(
                store.get(block.cid()).unwrap().as_ref(),
                Some(block.data()),
                "{point}: {}",
                block.cid()
            );
        }
        let cids: Vec<_> = all.iter().map(|b| *b.cid()).collect();
        for (block, got) in all.iter().zip(store.get_many(&cids).unwrap()) {
            assert_eq!(got.as_ref(), Some(block.data()), "{point}");
        }
        assert_eq!(
            packs_in_bucket(&root).len() as u64,
            s.packs,
            "{point}: the bucket holds what the manifest lists: {:?}",
            packs_in_bucket(&root)
        );
        block_on(engine.close()).unwrap();
    }
}
