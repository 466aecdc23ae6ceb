//! The pack tier on a bucket (`Config::remote`): sealed packs are uploaded and listed in a
//! manifest, their local files removed past the local budget, and every block still reads
//! back, checked, through reopen, deletes and reclamation. The bucket here is a directory
//! (`file://`, the same object store API as S3), and once a real Garage.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use futures_lite::future::block_on;
use ipfrs_storage::{Block, BlockStore, Config, Engine, Error, RemoteConfig, Stats};

mod common;

use common::remote::{files_ending, settle, settle_for, stats};

/// A bucket that is a directory under `root`, the store's objects under `store-a`.
fn dir_bucket(root: &Path) -> RemoteConfig {
    common::remote::dir_bucket(root, "packs-bucket", "store-a")
}

fn config(dir: &Path, bucket: RemoteConfig, local_pack_bytes: u64) -> Config {
    common::remote::store_config(dir, bucket, local_pack_bytes)
}

/// Packs reclaimed, across shards.
fn reclaimed(s: &Stats) -> u64 {
    s.shards.iter().map(|shard| shard.packs_reclaimed).sum()
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
        assert!(store.has(block.cid()).unwrap());
    }
    let cids: Vec<_> = present.iter().map(|b| *b.cid()).collect();
    for (block, got) in present.iter().zip(store.get_many(&cids).unwrap()) {
        assert_eq!(got.as_ref(), Some(block.data()));
    }
    for block in absent {
        assert_eq!(store.get(block.cid()).unwrap(), None);
        assert!(!store.has(block.cid()).unwrap());
    }
}

/// 64 KiB blocks and 2 KiB ones (which stay in packs too: a bucket's packs hold every block).
fn blocks(seed: u32, count: u32) -> Vec<Block> {
    common::two_sizes(seed, count, 3, 2 << 10, 64 << 10)
}

/// Fills a store whose packs all leave the disk, and returns its blocks.
fn fill_and_evict(engine: &Engine, seed: u32) -> (Vec<Block>, Stats) {
    let all = blocks(seed, 300);
    for chunk in all.chunks(20) {
        block_on(engine.put_many(chunk)).unwrap();
    }
    block_on(engine.compact()).unwrap();
    let s = settle(engine, |s| {
        s.packs > 0 && s.remote_packs == s.packs && s.remote_uploads >= s.packs
    });
    assert!(s.packs > 0, "{s:?}");
    assert_eq!(s.remote_packs, s.packs, "every pack left the disk: {s:?}");
    assert!(s.remote_manifests > 0, "{s:?}");
    assert_eq!(s.remote_failures, 0, "{s:?}");
    (all, s)
}

#[test]
fn evicted_packs_serve_every_block_through_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (data, bucket_root) = (dir.path().join("store"), dir.path().join("s3"));
    let bucket = dir_bucket(&bucket_root);
    let engine = Engine::open(config(&data, bucket.clone(), 0)).unwrap();
    let (all, s) = fill_and_evict(&engine, 1);
    assert!(
        files_ending(&data, ".pack").is_empty(),
        "local packs removed"
    );
    assert_eq!(
        files_ending(&bucket_root, ".pack").len() as u64,
        s.packs,
        "one object per pack"
    );
    let absent = blocks(99, 10);
    check(&engine, &all, &absent);
    let s = stats(&engine);
    assert!(
        s.remote_reads + s.remote_range_hits >= all.len() as u64,
        "{s:?}"
    );
    // An absent block is answered by the local filter and index: not one read of the bucket.
    let before = stats(&engine).remote_reads;
    for block in &absent {
        assert!(!engine.blocking().has(block.cid()).unwrap());
        assert_eq!(engine.blocking().get(block.cid()).unwrap(), None);
    }
    assert_eq!(stats(&engine).remote_reads, before);
    block_on(engine.close()).unwrap();

    // Reopened, the packs come from the manifest.
    let engine = Engine::open(config(&data, bucket, 0)).unwrap();
    assert_eq!(stats(&engine).remote_packs, s.packs);
    check(&engine, &all, &absent);
    block_on(engine.close()).unwrap();

    // A repair cannot check blocks that are not on this disk: refused, nothing touched.
    match ipfrs_storage::repair_cold(config(&data, dir_bucket(&bucket_root), 0)) {
        Err(Error::InvalidConfig {
            field: "remote",
            reason,
        }) => {
            assert!(reason.contains("packs-bucket"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // Without the bucket, the store refuses to open rather than miss its blocks.
    let mut without = config(&data, dir_bucket(&bucket_root), 0);
    without.remote = None;
    match Engine::open(without) {
        Err(Error::RemoteRequired { bucket, .. }) => {
            assert!(bucket.contains("packs-bucket"), "{bucket}")
        }
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("opened without the bucket its packs are in"),
    }
}

#[test]
fn reads_in_pack_order_read_ahead_and_the_index_still_decides_what_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let (data, bucket_root) = (dir.path().join("store"), dir.path().join("s3"));
    let engine = Engine::open(config(&data, dir_bucket(&bucket_root), 0)).unwrap();
    let (all, _) = fill_and_evict(&engine, 3);
    let store = engine.blocking();
    // The first half in the order written: each shard reads its packs front to back.
    let half = all.len() / 2;
    for block in &all[..half] {
        assert_eq!(store.get(block.cid()).unwrap().as_ref(), Some(block.data()));
    }
    let s = stats(&engine);
    assert_eq!(s.remote_reads + s.remote_range_hits, half as u64, "{s:?}");
    assert!(
        s.remote_range_hits > s.remote_reads,
        "most records came from ranges read ahead: {s:?}"
    );
    // Blocks just ahead of the reads are in a cached range: deleted, they are not served.
    let deleted: Vec<_> = all[half..half + 6].iter().map(|b| *b.cid()).collect();
    assert!(
        block_on(engine.delete_many(&deleted))
            .unwrap()
            .iter()
            .all(|d| *d)
    );
    for (i, block) in all.iter().enumerate().skip(half) {
        let want = (i >= half + 6).then(|| block.data().clone());
        assert_eq!(store.get(block.cid()).unwrap(), want, "block {i}");
    }
    block_on(engine.close()).unwrap();

    // Readers of neighbouring blocks at once (as a bitswap session's wants are) share the
    // read-aheads in flight and still get exactly their blocks.
    let engine = Engine::open(config(&data, dir_bucket(&bucket_root), 0)).unwrap();
    let live: Vec<&Block> = all
        .iter()
        .enumerate()
        .filter(|(i, _)| !(half..half + 6).contains(i))
        .map(|(_, b)| b)
        .collect();
    std::thread::scope(|scope| {
        for lane in 0..4 {
            let (engine, live) = (&engine, &live);
            scope.spawn(move || {
                let store = engine.blocking();
                for chunk in live.chunks(8).skip(lane).step_by(4) {
                    let cids: Vec<_> = chunk.iter().map(|b| *b.cid()).collect();
                    for (block, got) in chunk.iter().zip(store.get_many(&cids).unwrap()) {
                        assert_eq!(got.as_ref(), Some(block.data()));
                    }
                }
            });
        }
    });
    let s = stats(&engine);
    assert_eq!(
        s.remote_reads + s.remote_range_hits,
        live.len() as u64,
        "{s:?}"
    );
    block_on(engine.close()).unwrap();

    // Without read-ahead every record is a request of its own.
    let mut off = config(&data, dir_bucket(&bucket_root), 0);
    if let Some(tier) = off.remote.as_mut() {
        tier.readahead_bytes = 0;
    }
    let engine = Engine::open(off).unwrap();
    let store = engine.blocking();
    for block in &all[..half] {
        assert_eq!(store.get(block.cid()).unwrap().as_ref(), Some(block.data()));
    }
    let s = stats(&engine);
    assert_eq!(
        (s.remote_reads, s.remote_range_hits),
        (half as u64, 0),
        "{s:?}"
    );
    block_on(engine.close()).unwrap();
}

#[test]
fn a_local_budget_keeps_packs_on_disk_and_uploads_them_all() {
    let dir = tempfile::tempdir().unwrap();
    let (data, bucket_root) = (dir.path().join("store"), dir.path().join("s3"));
    let engine = Engine::open(config(&data, dir_bucket(&bucket_root), u64::MAX)).unwrap();
    let all = blocks(2, 200);
    for chunk in all.chunks(20) {
        block_on(engine.put_many(chunk)).unwrap();
    }
    block_on(engine.compact()).unwrap();
    let s = settle(&engine, |s| s.packs > 0 && s.remote_uploads >= s.packs);
    assert!(s.packs > 0, "{s:?}");
    assert_eq!(s.remote_uploads, s.packs, "{s:?}");
    assert_eq!(s.remote_packs, 0, "kept locally: {s:?}");
    assert_eq!(files_ending(&data, ".pack").len() as u64, s.packs);
    // The bucket holds the same bytes (the records; the local file's unwritten tail is not
    // uploaded).
    for local in files_ending(&data, ".pack") {
        // shard-NNN/segments/PPPPPPPP.pack here, <prefix>/shard-NNN/packs/PPPPPPPP.pack there.
        let shard = local
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .file_name()
            .unwrap();
        let name = local.file_name().unwrap().to_string_lossy().to_string();
        let remote: Vec<_> = files_ending(&bucket_root, &name)
            .into_iter()
            .filter(|r| r.to_string_lossy().contains(&*shard.to_string_lossy()))
            .collect();
        assert_eq!(remote.len(), 1, "{name}");
        let (l, r) = (
            std::fs::read(&local).unwrap(),
            std::fs::read(&remote[0]).unwrap(),
        );
        assert!(!r.is_empty() && r.len() <= l.len());
        assert_eq!(&l[..r.len()], &r[..], "{name}");
        assert!(l[r.len()..].iter().all(|&b| b == 0), "{name}");
    }
    check(&engine, &all, &[]);
    assert_eq!(
        stats(&engine).remote_reads,
        0,
        "local packs are read locally"
    );
    block_on(engine.close()).unwrap();
}

#[test]
fn deletes_reclaim_remote_packs_and_the_bucket_lets_them_go() {
    let dir = tempfile::tempdir().unwrap();
    let (data, bucket_root) = (dir.path().join("store"), dir.path().join("s3"));
    let engine = Engine::open(config(&data, dir_bucket(&bucket_root), 0)).unwrap();
    let (all, before) = fill_and_evict(&engine, 3);
    let (gone, kept) = all.split_at(all.len() * 4 / 5);
    let cids: Vec<_> = gone.iter().map(|b| *b.cid()).collect();
    block_on(engine.delete_many(&cids)).unwrap();
    block_on(engine.compact()).unwrap();
    let s = settle(&engine, |s| reclaimed(s) > 0 && s.remote_packs == s.packs);
    assert!(reclaimed(&s) > 0, "{s:?}");
    assert!(
        s.remote_fetched_back > 0,
        "reclaiming a remote pack fetches it: {s:?}"
    );
    check(&engine, kept, gone);
    // The reclaimed packs stay in the bucket until the blocks rewritten out of them are
    // uploaded again: once the segment they went to is packed, they go. (Each compaction may
    // reclaim again, rewriting into a new segment: a few rounds settle it.)
    let in_bucket = || files_ending(&bucket_root, ".pack").len() as u64;
    let mut s = stats(&engine);
    for _ in 0..4 {
        block_on(engine.compact()).unwrap();
        s = settle_for(&engine, Duration::from_secs(15), |s| {
            s.remote_deletes > 0 && s.remote_packs == s.packs && in_bucket() == s.packs
        });
        if in_bucket() == s.packs {
            break;
        }
    }
    assert!(s.remote_deletes > 0, "{s:?}");
    assert_eq!(in_bucket(), s.packs, "{s:?}");
    // Older manifest generations go too (a grace after they were replaced): one per shard.
    let manifests = |root: &Path| -> usize {
        (0..2)
            .map(|shard| {
                let dir = root.join(format!("packs-bucket/store-a/shard-{shard:03}/manifests"));
                std::fs::read_dir(dir).map_or(0, |d| d.count())
            })
            .sum()
    };
    let start = Instant::now();
    while manifests(&bucket_root) > 2 && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(manifests(&bucket_root), 2, "{}", s.remote_manifests);
    check(&engine, kept, gone);
    block_on(engine.close()).unwrap();
    let engine = Engine::open(config(&data, dir_bucket(&bucket_root), 0)).unwrap();
    check(&engine, kept, gone);
    let s = stats(&engine);
    // What the bucket holds is what the manifest lists: nothing reclaimed stays.
    assert_eq!(
        files_ending(&bucket_root, ".pack").len() as u64,
        s.packs,
        "{s:?} (before the deletes: {} packs)",
        before.packs
    );
    block_on(engine.close()).unwrap();
}

/// A pack reclaimed with nothing live in it had nothing rewritten out of it: it leaves the
/// manifest and the bucket at once, even when the store then stays idle (its active segment
/// empty, never sealed).
#[test]
fn packs_emptied_by_deletes_leave_the_bucket_without_more_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (data, bucket_root) = (dir.path().join("store"), dir.path().join("s3"));
    let engine = Engine::open(config(&data, dir_bucket(&bucket_root), 0)).unwrap();
    let (all, before) = fill_and_evict(&engine, 4);
    let cids: Vec<_> = all.iter().map(|b| *b.cid()).collect();
    block_on(engine.delete_many(&cids)).unwrap();
    block_on(engine.compact()).unwrap();
    let in_bucket = || files_ending(&bucket_root, ".pack").len() as u64;
    // Twice the uploader's idle tick: a wait on a segment that never fills runs it out.
    let s = settle_for(&engine, Duration::from_secs(12), |s| {
        s.packs == 0 && in_bucket() == 0
    });
    assert_eq!(s.packs, 0, "{s:?}");
    assert_eq!(reclaimed(&s), before.packs, "{s:?}");
    assert_eq!(s.remote_deletes, before.packs, "{s:?}");
    assert_eq!(in_bucket(), 0, "{s:?}");
    assert_eq!(
        s.remote_fetched_back, 0,
        "nothing live, nothing fetched: {s:?}"
    );
    check(&engine, &[], &all);
    block_on(engine.close()).unwrap();
}

#[test]
fn a_damaged_pack_in_the_bucket_is_reported_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let (data, bucket_root) = (dir.path().join("store"), dir.path().join("s3"));
    let engine = Engine::open(config(&data, dir_bucket(&bucket_root), 0)).unwrap();
    let (all, _) = fill_and_evict(&engine, 4);
    // Flip one byte in the middle of every pack object: some record in each is hit.
    for pack in files_ending(&bucket_root, ".pack") {
        let mut bytes = std::fs::read(&pack).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x40;
        std::fs::write(&pack, bytes).unwrap();
    }
    let store = engine.blocking();
    let mut corrupt = 0;
    for block in &all {
        match store.get(block.cid()) {
            Ok(Some(data)) => assert_eq!(data.as_ref(), block.data(), "damaged bytes served"),
            Ok(None) => panic!("{} reported absent", block.cid()),
            Err(Error::Corrupt { .. }) => corrupt += 1,
            Err(other) => panic!("{other}"),
        }
    }
    assert!(corrupt > 0, "no read met the damage");
    block_on(engine.close()).unwrap();
}

#[test]
fn packs_go_to_a_real_garage() {
    let Some(bin) = ipfrs_garage::garage_for_test("packs_go_to_a_real_garage").unwrap() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let garage = ipfrs_garage::Garage::start_with(&bin, &dir.path().join("garage")).unwrap();
    let mut bucket = RemoteConfig::new(Some(&garage.endpoint()), garage.bucket());
    bucket.region = garage.region().to_owned();
    bucket.access_key_id = Some(garage.access_key().to_owned());
    bucket.secret_access_key = Some(garage.secret_key().to_owned());
    // Garage leaves Nagle on: fresh connections (see `RemoteConfig::reuse_connections`).
    bucket.reuse_connections = false;
    bucket.prefix = "engine-test".into();
    let data = dir.path().join("store");
    let engine = Engine::open(config(&data, bucket.clone(), 0)).unwrap();
    let (all, s) = fill_and_evict(&engine, 5);
    assert!(files_ending(&data, ".pack").is_empty());
    check(&engine, &all, &blocks(98, 5));
    block_on(engine.close()).unwrap();
    let engine = Engine::open(config(&data, bucket, 0)).unwrap();
    assert_eq!(stats(&engine).remote_packs, s.packs);
    check(&engine, &all, &[]);
    block_on(engine.close()).unwrap();
}

#[test]
fn a_pack_a_crash_left_in_the_bucket_is_deleted_and_listed_ones_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let (data, bucket_root) = (dir.path().join("store"), dir.path().join("s3"));
    let engine = Engine::open(config(&data, dir_bucket(&bucket_root), 0)).unwrap();
    let (all, s) = fill_and_evict(&engine, 6);
    block_on(engine.close()).unwrap();
    // A pack dropped, and its manifest generation published, before its delete ran.
    let packs_dir = bucket_root.join("packs-bucket/store-a/shard-000/packs");
    let left = packs_dir.join("00009999.pack");
    std::fs::write(&left, b"left behind").unwrap();
    std::fs::write(packs_dir.join("00009999.hint"), b"left behind").unwrap();
    let engine = Engine::open(config(&data, dir_bucket(&bucket_root), 0)).unwrap();
    let s2 = settle(&engine, |s| s.remote_deletes > 0);
    assert_eq!(s2.remote_deletes, 1, "{s2:?}");
    assert!(!left.exists());
    assert!(
        files_ending(&bucket_root, ".hint")
            .iter()
            .all(|h| !h.ends_with("00009999.hint"))
    );
    assert_eq!(files_ending(&bucket_root, ".pack").len() as u64, s.packs);
    check(&engine, &all, &[]);
    block_on(engine.close()).unwrap();
}

#[test]
fn deleted_blocks_are_listed_dead_in_the_manifest_for_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let (data, bucket_root) = (dir.path().join("store"), dir.path().join("s3"));
    let engine = Engine::open(config(&data, dir_bucket(&bucket_root), 0)).unwrap();
    let (all, _) = fill_and_evict(&engine, 7);
    // A few deletes: far from enough for any pack to be reclaimed.
    let gone: Vec<_> = all.iter().step_by(30).map(|b| *b.cid()).collect();
    block_on(engine.delete_many(&gone)).unwrap();
    let bucket = ipfrs_remote::PackBucket::open(&dir_bucket(&bucket_root)).unwrap();
    let dead = |bucket: &ipfrs_remote::PackBucket| -> usize {
        (0..2)
            .map(|shard| {
                bucket
                    .latest_manifest(shard)
                    .wait()
                    .unwrap()
                    .map_or(0, |m| m.dead.len())
            })
            .sum()
    };
    let start = Instant::now();
    while dead(&bucket) < gone.len() && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        dead(&bucket),
        gone.len(),
        "one dead record per deleted block"
    );
    block_on(engine.close()).unwrap();
    // Reopened, the list is kept: the next generation still names them.
    let engine = Engine::open(config(&data, dir_bucket(&bucket_root), 0)).unwrap();
    let more = [*all[1].cid()];
    block_on(engine.delete_many(&more)).unwrap();
    let start = Instant::now();
    while dead(&bucket) < gone.len() + 1 && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(dead(&bucket), gone.len() + 1);
    block_on(engine.close()).unwrap();
}

#[test]
fn a_bucket_that_cannot_be_reached_or_does_not_exist_fails_the_open_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("store");
    // Nothing listens there: refused at once, named, no hang.
    let mut nobody = RemoteConfig::new(Some("http://127.0.0.1:9"), "packs");
    nobody.open_timeout = Duration::from_secs(5);
    // Credentials given: without them the client would ask the instance metadata service.
    nobody.access_key_id = Some("GK000".into());
    nobody.secret_access_key = Some("secret".into());
    match Engine::open(config(&data, nobody, 0)) {
        Err(Error::Remote { source, .. }) => assert!(
            matches!(*source, ipfrs_remote::RemoteError::Unreachable { .. }),
            "{source}"
        ),
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("opened against nothing"),
    }
    // A directory store without the bucket's directory: no such bucket.
    let missing = RemoteConfig::new(
        Some(&format!("file://{}", dir.path().join("s3").display())),
        "absent",
    );
    match Engine::open(config(&data, missing, 0)) {
        Err(Error::Remote { source, .. }) => assert!(
            matches!(*source, ipfrs_remote::RemoteError::NoBucket { .. }),
            "{source}"
        ),
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("opened a missing bucket"),
    }
    // Without the hot tier there are no packs to put anywhere: refused as a bad config.
    let mut cold_only = config(&data, dir_bucket(&dir.path().join("s3")), 0);
    cold_only.hot_tier = None;
    assert!(matches!(
        Engine::open(cold_only),
        Err(Error::InvalidConfig {
            field: "remote",
            ..
        })
    ));
}
