//! CAR import in one pass, all or nothing: a corrupt block rolls back everything
//! the import added and nothing that was there before, the disk space comes back, a SIGKILL
//! mid-import is rolled back by the next `ipfrs-store` command, and pipes work (each input
//! is read once).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_lite::future::block_on;
use ipfrs_storage::fs::disk_usage;
use ipfrs_storage::{Block, BlockStore, Cid, Config, Engine, HotTier};
use ipfrs_tools::car::{CarError, CarWriter};
use ipfrs_tools::import::{self, ImportError, ImportOptions};
use ipfrs_tools::store::repo::Repo;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

/// A block of `size` pseudo-random bytes, the same for the same `seed`.
fn block(seed: u64, size: usize) -> Block {
    let mut data = vec![0u8; size];
    StdRng::seed_from_u64(seed).fill_bytes(&mut data);
    Block::new(data).unwrap()
}

/// A CARv1 of `blocks` (first one as root); with `corrupt: Some(i)` the last byte of block
/// i's data is flipped, so its hash no longer matches its CID.
fn car_bytes(blocks: &[Block], corrupt: Option<usize>) -> Vec<u8> {
    let mut writer = CarWriter::new(Vec::new(), &[*blocks[0].cid()]).unwrap();
    let mut flip = None;
    for (i, b) in blocks.iter().enumerate() {
        writer.write_block(b.cid(), b.data()).unwrap();
        if corrupt == Some(i) {
            flip = Some(writer.bytes_written() as usize - 1);
        }
    }
    let mut bytes = writer.finish().unwrap();
    if let Some(at) = flip {
        bytes[at] ^= 0x01;
    }
    bytes
}

/// Small segments so that a few MB pass through the hot tier into packs, as a 1 GiB file
/// would with the defaults.
fn small_config(dir: &Path) -> Config {
    let mut config = Config::new(dir);
    config.shards = Some(2);
    // The segments must hold two of the largest blocks.
    config.max_block_size = 256 << 10;
    config.hot_tier = Some(HotTier {
        budget_bytes: 4 << 20,
        segment_bytes: 1 << 20,
        ..HotTier::default()
    });
    config
}

/// Small batches and window, so a few MB make many batches and several are stored before
/// the corrupt one is reached.
fn small_options(config: &Config) -> ImportOptions {
    ImportOptions {
        batch_bytes: 128 << 10,
        batch_blocks: 64,
        window_bytes: 1 << 20,
        ..ImportOptions::for_store(config)
    }
}

fn has_all(store: &Engine, cids: &[Cid]) -> Vec<bool> {
    block_on(store.has_many(cids)).unwrap()
}

fn journals(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

#[test]
fn a_corrupt_block_in_the_middle_rolls_back_only_what_the_import_added() {
    let tmp = tempfile::tempdir().unwrap();
    let config = small_config(&tmp.path().join("store"));
    let journal_dir = tmp.path().join("imports");
    let engine = Engine::open(config.clone()).unwrap();
    // 6 MiB in 384 blocks; 20 of them (and one unrelated block) are stored beforehand.
    let blocks: Vec<Block> = (0..384).map(|i| block(i, 16 << 10)).collect();
    let before: Vec<Block> = blocks[100..120]
        .iter()
        .cloned()
        .chain([block(10_000, 1000)])
        .collect();
    block_on(engine.put_many(&before)).unwrap();
    let before_cids: Vec<Cid> = before.iter().map(|b| *b.cid()).collect();
    let new_cids: Vec<Cid> = blocks
        .iter()
        .map(|b| *b.cid())
        .filter(|c| !before_cids.contains(c))
        .collect();
    let stats_before = block_on(BlockStore::stats(&engine)).unwrap();
    let car = car_bytes(&blocks, Some(250));

    let err = import::import_car(
        &engine,
        &car[..],
        &journal_dir,
        small_options(&config),
        &|_| {},
    )
    .unwrap_err();
    let ImportError::Car { source, stored, .. } = &err else {
        panic!("not a CAR error: {err}");
    };
    assert!(
        matches!(**source, CarError::BadBlock { ref cid, .. } if **cid == *blocks[250].cid()),
        "{source}"
    );
    // Batches before the bad block were stored (and then removed): the rollback was real.
    assert!(
        *stored >= 128,
        "only {stored} blocks stored before the error"
    );
    assert!(has_all(&engine, &new_cids).iter().all(|h| !h));
    assert!(has_all(&engine, &before_cids).iter().all(|h| *h));
    for b in &before {
        assert_eq!(
            block_on(engine.get(b.cid())).unwrap().as_ref(),
            Some(b.data())
        );
    }
    assert_eq!(
        journals(&journal_dir),
        0,
        "the journal outlived the rollback"
    );
    let stats_after = block_on(BlockStore::stats(&engine)).unwrap();
    assert_eq!(stats_after.blocks, stats_before.blocks);

    // The same file without the corruption imports whole, and commits.
    let clean = car_bytes(&blocks, None);
    let added = import::import_car(
        &engine,
        &clean[..],
        &journal_dir,
        small_options(&config),
        &|_| {},
    )
    .unwrap();
    assert_eq!(added.blocks, 384);
    assert!(has_all(&engine, &new_cids).iter().all(|h| *h));
    assert_eq!(journals(&journal_dir), 0);
    block_on(engine.close()).unwrap();
}

#[test]
fn disk_space_returns_after_a_failed_import() {
    let tmp = tempfile::tempdir().unwrap();
    let store_dir = tmp.path().join("store");
    let config = small_config(&store_dir);
    let journal_dir = tmp.path().join("imports");
    let engine = Engine::open(config.clone()).unwrap();
    block_on(engine.put(&block(10_000, 1000))).unwrap();
    block_on(engine.flush()).unwrap();
    let empty = disk_usage(&store_dir).unwrap();
    // 16 MiB of 64 KiB blocks, the last one corrupt: all but one batch is stored first.
    let blocks: Vec<Block> = (0..256).map(|i| block(i, 64 << 10)).collect();
    let car = car_bytes(&blocks, Some(255));
    let options = ImportOptions {
        batch_bytes: 1 << 20,
        ..small_options(&config)
    };
    let err = import::import_car(&engine, &car[..], &journal_dir, options, &|_| {}).unwrap_err();
    assert!(
        matches!(err, ImportError::Car { stored, .. } if stored >= 240),
        "{err}"
    );
    // Compaction moves the tombstoned segments out and reclaims the emptied packs; a few
    // rounds let every shard's budget pass settle.
    for _ in 0..4 {
        block_on(engine.compact()).unwrap();
    }
    block_on(engine.flush()).unwrap();
    let after = disk_usage(&store_dir).unwrap();
    let stats = block_on(BlockStore::stats(&engine)).unwrap();
    assert_eq!(stats.blocks, 1);
    // Segment preallocation and backend files keep some overhead, but nothing close to the
    // 16 MiB the import wrote (measured: 4.2 MB before, 18.3 MB after the rollback, 4.3 MB
    // after compaction).
    assert!(
        after <= empty + (6 << 20),
        "disk usage {empty} before, {after} after a rolled-back 16 MiB import"
    );
    block_on(engine.close()).unwrap();
}

#[test]
fn a_tiny_window_and_one_thread_each_still_import_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let config = small_config(&tmp.path().join("store"));
    let engine = Engine::open(config.clone()).unwrap();
    let blocks: Vec<Block> = (0..100)
        .map(|i| block(i, (i as usize % 7 + 1) << 10))
        .collect();
    let car = car_bytes(&blocks, None);
    let options = ImportOptions {
        window_bytes: 1,
        batch_bytes: 1,
        batch_blocks: 1,
        hash_threads: 1,
        store_threads: 1,
        ..ImportOptions::for_store(&config)
    };
    let seen = std::sync::atomic::AtomicU64::new(0);
    let added = import::import_car(&engine, &car[..], &tmp.path().join("j"), options, &|n| {
        seen.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    })
    .unwrap();
    assert_eq!(added.blocks, 100);
    // Progress covers the whole input exactly once.
    assert_eq!(seen.into_inner(), car.len() as u64);
    let cids: Vec<Cid> = blocks.iter().map(|b| *b.cid()).collect();
    assert!(has_all(&engine, &cids).iter().all(|h| *h));
    block_on(engine.close()).unwrap();
}

fn new_repo(tmp: &Path) -> PathBuf {
    let repo = tmp.join("repo");
    let out = common::run(&repo, &["init", "--shards", "2"]);
    assert!(out.status.success(), "{out:?}");
    repo
}

/// How many of `cids` the repository's store holds (opened directly, after the CLI closed
/// it: one process per CID would be slow).
fn present(repo: &Path, cids: &[Cid]) -> usize {
    let engine = Repo::locate(Some(repo.to_path_buf()), None)
        .unwrap()
        .open()
        .unwrap();
    let found = has_all(&engine, cids).iter().filter(|h| **h).count();
    block_on(engine.close()).unwrap();
    found
}

#[test]
fn cli_failed_import_is_a_typed_one_line_error_and_stores_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = new_repo(tmp.path());
    let blocks: Vec<Block> = (0..40).map(|i| block(i, 4 << 10)).collect();
    let good = tmp.path().join("good.car");
    std::fs::write(&good, car_bytes(&blocks[..20], None)).unwrap();
    let bad = tmp.path().join("bad.car");
    std::fs::write(&bad, car_bytes(&blocks[20..], Some(10))).unwrap();
    // The good file first: all or nothing covers every file of the command.
    let out = common::run(
        &repo,
        &[
            "car",
            "import",
            good.to_str().unwrap(),
            bad.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.car") && stderr.contains("byte") && stderr.lines().count() == 1,
        "{stderr}"
    );
    let cids: Vec<Cid> = blocks.iter().map(|b| *b.cid()).collect();
    assert_eq!(present(&repo, &cids), 0);
    // With --partial the good file and the bad one's first ten blocks stay.
    let out = common::run(
        &repo,
        &[
            "car",
            "import",
            "--partial",
            good.to_str().unwrap(),
            bad.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(present(&repo, &cids), 30);
    assert_eq!(journals(&repo.join("blocks.imports")), 0);
}

#[test]
fn cli_imports_from_stdin_and_from_a_fifo() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = new_repo(tmp.path());
    let blocks: Vec<Block> = (0..64).map(|i| block(i, 8 << 10)).collect();
    let car = car_bytes(&blocks, None);
    let cids: Vec<Cid> = blocks.iter().map(|b| *b.cid()).collect();

    let mut child = common::store_command(&repo)
        .args(["--json", "car", "import", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&car[..car.len() / 2])
        .unwrap();
    let out = child.wait_with_output().unwrap();
    // Half a file on stdin is a truncated CAR: nothing stays.
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(present(&repo, &cids[..8]), 0);

    let mut child = common::store_command(&repo)
        .args(["--json", "car", "import", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&car).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["files"][0]["blocks"], 64);

    let fifo = tmp.path().join("car.fifo");
    mkfifo(&fifo);
    let other: Vec<Block> = (100..132).map(|i| block(i, 2 << 10)).collect();
    let other_car = car_bytes(&other, None);
    let writer = std::thread::spawn({
        let fifo = fifo.clone();
        move || std::fs::write(fifo, other_car).unwrap()
    });
    let out = common::run(&repo, &["--json", "car", "import", fifo.to_str().unwrap()]);
    writer.join().unwrap();
    assert!(out.status.success(), "{out:?}");
    let other_cids: Vec<Cid> = other.iter().map(|b| *b.cid()).collect();
    assert_eq!(present(&repo, &other_cids), 32);
}

fn mkfifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let name = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
}

#[test]
fn a_sigkilled_import_is_rolled_back_by_the_next_command() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = new_repo(tmp.path());
    // One block stored before: it must survive the rollback, though the CAR holds it too.
    let blocks: Vec<Block> = (0..384).map(|i| block(i, 64 << 10)).collect();
    let kept = tmp.path().join("kept.car");
    std::fs::write(&kept, car_bytes(&blocks[..1], None)).unwrap();
    assert!(
        common::run(&repo, &["car", "import", kept.to_str().unwrap()])
            .status
            .success()
    );
    let car = car_bytes(&blocks, None);

    // The import reads from a FIFO that gets three quarters of the file (two 8 MiB batches
    // are full, the third waits), so the child is stuck mid-import with blocks stored.
    let fifo = tmp.path().join("car.fifo");
    mkfifo(&fifo);
    let mut child = common::store_command(&repo)
        .args(["car", "import", fifo.to_str().unwrap()])
        .spawn()
        .unwrap();
    let mut input = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    input.write_all(&car[..car.len() * 3 / 4]).unwrap();
    let journal_dir = repo.join("blocks.imports");
    let deadline = Instant::now() + Duration::from_secs(30);
    let journal_len = || {
        std::fs::read_dir(&journal_dir)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum::<u64>()
    };
    // Two records of 128 CIDs (36 bytes each) after the 8-byte magic.
    while journal_len() < 8 + 2 * (12 + 127 * 36) {
        assert!(
            Instant::now() < deadline,
            "the import never journaled two batches"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Let the store threads finish those batches' put_many.
    std::thread::sleep(Duration::from_secs(2));
    child.kill().unwrap();
    child.wait().unwrap();
    drop(input);

    let cids: Vec<Cid> = blocks.iter().map(|b| *b.cid()).collect();
    // Opened without the CLI (no recovery): the killed import's blocks are there, so the
    // rollback below has something to do.
    let visible = present(&repo, &cids);
    assert!(visible > 1, "only {visible} blocks visible after the kill");
    assert_eq!(journals(&journal_dir), 1);

    // The next command rolls it back and says so.
    let out = common::run(&repo, &["repo", "stat"]);
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("rolled back 1 interrupted"), "{stderr}");
    assert_eq!(journals(&journal_dir), 0);
    assert_eq!(present(&repo, &cids[1..]), 0);
    assert_eq!(present(&repo, &cids[..1]), 1);
}
