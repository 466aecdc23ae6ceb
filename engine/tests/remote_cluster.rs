//! The pack tier on a three-node Garage cluster (replication factor 3, issue 16): the engine
//! ingests, one node is killed mid-ingest, and the engine keeps ingesting and compacting.
//! Every acknowledged block reads back, from the cluster itself (`local_pack_bytes: 0`
//! keeps no pack locally), and uploads go on with one node down (two replicas of three are
//! a write quorum). Skips without the `garage` binary unless `IPFRS_REQUIRE_GARAGE` is set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use ipfrs_storage::{Block, Config, Engine, Error, RemoteConfig};

mod common;

use common::remote::{SEGMENT, settle, stats};

/// Bytes put between two explicit compactions (each seals the active segments into packs).
const COMPACT_EVERY_BYTES: u64 = 2 * SEGMENT;

/// The node killed: not node 0, whose endpoint the engine talks to (any node's endpoint
/// serves the whole bucket; losing the one a client talks to is a client's failover, not
/// the cluster's).
const VICTIM: usize = 2;

fn config(dir: &Path, bucket: RemoteConfig) -> Config {
    common::remote::store_config(dir, bucket, 0)
}

/// Block `i`: bytes that depend only on `i`, the index leading so no two are equal.
fn block(i: u64) -> Block {
    let len = if i.is_multiple_of(4) {
        1024 + (i as usize * 37) % 3000
    } else {
        (24 << 10) + (i as usize * 131) % (40 << 10)
    };
    let mut data = format!("cluster {i}:").into_bytes();
    data.extend((data.len()..len).map(|j| (i as usize * 31 + j * 7) as u8));
    Block::new(data).unwrap()
}

/// Puts batches of four from `next` on until `stop`, recording in `acked` how many blocks
/// are acknowledged, and compacts every [`COMPACT_EVERY_BYTES`].
fn ingest(engine: &Engine, next: &AtomicU64, acked: &AtomicU64, stop: &AtomicBool) {
    let store = engine.blocking();
    let mut since_compaction = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let i = next.fetch_add(4, Ordering::Relaxed);
        let batch: Vec<Block> = (i..i + 4).map(block).collect();
        store
            .put_many(&batch)
            .unwrap_or_else(|e| panic!("put of blocks {i}.. not acknowledged: {e}"));
        acked.store(i + 4, Ordering::Relaxed);
        since_compaction += batch.iter().map(|b| b.len() as u64).sum::<u64>();
        if since_compaction >= COMPACT_EVERY_BYTES {
            store
                .compact()
                .unwrap_or_else(|e| panic!("compaction with a node down: {e}"));
            since_compaction = 0;
        }
    }
}

/// Every block of `expected` reads back equal through `get` and `get_many`.
fn check_all(engine: &Engine, expected: &[Block], what: &str) {
    let store = engine.blocking();
    for b in expected {
        match store.get(b.cid()) {
            Ok(Some(data)) => assert_eq!(data.as_ref(), b.data(), "{what}: {} wrong", b.cid()),
            Ok(None) => panic!("{what}: acknowledged block {} lost", b.cid()),
            Err(e @ Error::Corrupt { .. }) => panic!("{what}: {} reported corrupt: {e}", b.cid()),
            Err(e) => panic!("{what}: get {}: {e}", b.cid()),
        }
    }
    let cids: Vec<_> = expected.iter().map(|b| *b.cid()).collect();
    for (blocks, cids) in expected.chunks(64).zip(cids.chunks(64)) {
        let got = store
            .get_many(cids)
            .unwrap_or_else(|e| panic!("{what}: get_many: {e}"));
        for (b, got) in blocks.iter().zip(got) {
            assert_eq!(got.as_ref(), Some(b.data()), "{what}: get_many {}", b.cid());
        }
    }
}

#[test]
fn a_node_killed_mid_ingest_loses_nothing_and_uploads_go_on() {
    let test = "a_node_killed_mid_ingest_loses_nothing_and_uploads_go_on";
    let Some(bin) = ipfrs_garage::garage_for_test(test).unwrap() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cluster =
        ipfrs_garage::GarageCluster::start_with(&bin, &dir.path().join("garage"), 3).unwrap();
    let mut bucket = RemoteConfig::new(Some(&cluster.endpoint(0).unwrap()), cluster.bucket());
    bucket.region = cluster.region().to_owned();
    bucket.access_key_id = Some(cluster.access_key().to_owned());
    bucket.secret_access_key = Some(cluster.secret_key().to_owned());
    bucket.reuse_connections = false;
    bucket.request_timeout = Duration::from_secs(10);
    bucket.prefix = "cluster".into();
    let data = dir.path().join("store");
    let engine = Engine::open(config(&data, bucket.clone())).unwrap();
    let (next, acked, stop) = (AtomicU64::new(0), AtomicU64::new(0), AtomicBool::new(false));

    let (before, at_kill, after) = std::thread::scope(|scope| {
        let ingesting = scope.spawn(|| ingest(&engine, &next, &acked, &stop));
        // Asserted after the join: a panic here would leave the ingest thread running.
        let before = settle(&engine, |s| {
            s.remote_uploads >= 2 && s.remote_evictions >= 1
        });
        cluster.stop_node(VICTIM).unwrap();
        let at_kill = stats(&engine);
        // Uploads, manifests and evictions go on with one node down, while puts continue.
        let after = settle(&engine, |s| {
            s.remote_uploads >= at_kill.remote_uploads + 4
                && s.remote_manifests > at_kill.remote_manifests
                && s.remote_evictions > at_kill.remote_evictions
        });
        stop.store(true, Ordering::Relaxed);
        ingesting.join().unwrap();
        (before, at_kill, after)
    });
    assert!(
        before.remote_uploads >= 2 && before.remote_evictions >= 1,
        "nothing uploaded before the kill: {before:?}"
    );
    assert!(
        after.remote_uploads >= at_kill.remote_uploads + 4
            && after.remote_manifests > at_kill.remote_manifests
            && after.remote_evictions > at_kill.remote_evictions,
        "uploads stopped with one node of three down: at the kill {at_kill:?}, then {after:?}"
    );
    // The rest is uploaded too, still with the node down, and every block is read from the
    // two nodes left.
    engine.blocking().compact().unwrap();
    let s = settle(&engine, |s| s.remote_packs == s.packs);
    assert_eq!(s.remote_packs, s.packs, "{s:?}");
    let acked = acked.load(Ordering::Relaxed);
    let expected: Vec<Block> = (0..acked).map(block).collect();
    let reads_before = s.remote_reads;
    check_all(&engine, &expected, "one node down");
    assert!(
        stats(&engine).remote_reads > reads_before,
        "reads did not go to the cluster"
    );
    engine.blocking().close().unwrap();

    // Reopened on the manifests the two nodes hold; then the node comes back and the
    // cluster serves everything with all three.
    let engine = Engine::open(config(&data, bucket.clone())).unwrap();
    check_all(&engine, &expected, "reopened, one node down");
    engine.blocking().close().unwrap();
    cluster.start_node(VICTIM).unwrap();
    let engine = Engine::open(config(&data, bucket)).unwrap();
    assert_eq!(stats(&engine).remote_packs, s.packs);
    check_all(&engine, &expected, "node back");
    engine.blocking().close().unwrap();
    eprintln!(
        "{acked} blocks acknowledged, {} packs in the cluster ({} uploaded with a node down)",
        s.packs,
        s.remote_uploads - at_kill.remote_uploads
    );
}
