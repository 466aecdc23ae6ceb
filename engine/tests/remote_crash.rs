//! Crash campaign of the pack tier on a bucket (`Config::remote`, issue 16).
//!
//! A child process ingests with `Sync` durability, a small hot tier and `local_pack_bytes: 0`,
//! so that packs are sealed, uploaded, listed in a manifest and their local files removed all
//! the time, and prints each acknowledged batch; in one campaign it also deletes, so packs
//! are reclaimed (fetched back from the bucket), dropped from manifests and deleted from the
//! bucket meanwhile. The parent kills it with SIGKILL after a different time each round
//! (mid-upload, mid-manifest, mid-eviction, mid-reclamation: wherever it happens to be),
//! reopens the store on the same bucket and checks that every acknowledged block reads
//! back equal through `get` and `get_many` (and every acknowledged delete stays deleted),
//! that no read reports damage, and that the
//! uploader catches up (every pack listed and off the disk). Then the other way round: the
//! server holding the bucket is killed mid-ingest; puts keep being acknowledged (the hot
//! tier is the acknowledgement point), uploads fail and are retried, and once the server is
//! back everything is uploaded and reads back.
//!
//! Buckets: a directory (`file://`, always runs) and a real Garage (skips without the
//! binary unless `IPFRS_REQUIRE_GARAGE` is set). Kills per campaign: `IPFRS_REMOTE_CRASH_KILLS`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ipfrs_storage::{Block, Config, Engine, Error, RemoteConfig, Stats};
use rand::{Rng, SeedableRng};

mod common;

use common::remote::{SEGMENT, files_ending, settle, stats};

/// A bucket that is a directory under `root`, objects under `crash`.
fn dir_bucket(root: &Path) -> RemoteConfig {
    common::remote::dir_bucket(root, "packs-bucket", "crash")
}

/// The child's store directory; its presence is what makes the ignored child test run.
const CHILD_DIR: &str = "IPFRS_RCRASH_CHILD_DIR";
/// The first block index the child puts (the acknowledged count so far).
const CHILD_START: &str = "IPFRS_RCRASH_CHILD_START";
/// The bucket, one variable per field of [`RemoteConfig`] the tests set.
const CHILD_ENDPOINT: &str = "IPFRS_RCRASH_ENDPOINT";
const CHILD_BUCKET: &str = "IPFRS_RCRASH_BUCKET";
const CHILD_PREFIX: &str = "IPFRS_RCRASH_PREFIX";
const CHILD_REGION: &str = "IPFRS_RCRASH_REGION";
const CHILD_KEY_ID: &str = "IPFRS_RCRASH_KEY_ID";
const CHILD_SECRET: &str = "IPFRS_RCRASH_SECRET";

/// Bytes the child puts between two explicit compactions: compaction also runs on its own
/// past the hot budget, but an explicit one seals the active segment, so packs (and with
/// them uploads and manifests) come at a steady pace even from a short-lived child.
const COMPACT_EVERY_BYTES: u64 = 2 * SEGMENT;

/// Upper bound of one campaign's wall time, kills and checks included, so that a slow
/// machine runs fewer kills rather than a test over a minute.
const CAMPAIGN_BUDGET: Duration = Duration::from_secs(35);

/// No promotion: the parent's reads must go to the bucket, not to a copy they made.
fn config(dir: &Path, bucket: RemoteConfig) -> Config {
    common::remote::store_config(dir, bucket, 0)
}

/// The bucket of a Garage node (or cluster) at `endpoint`.
fn garage_bucket(endpoint: String, bucket: &str, key: &str, secret: &str) -> RemoteConfig {
    let mut config = RemoteConfig::new(Some(&endpoint), bucket);
    config.region = ipfrs_garage::REGION.to_owned();
    config.access_key_id = Some(key.to_owned());
    config.secret_access_key = Some(secret.to_owned());
    // Garage leaves Nagle on: fresh connections (see `RemoteConfig::reuse_connections`).
    config.reuse_connections = false;
    // A dead server must fail a request in seconds, so that the uploader retries (and the
    // test sees it) well within the test's bounds.
    config.request_timeout = Duration::from_secs(5);
    config.prefix = "crash".into();
    config
}

/// The bucket as environment variables for the child.
fn bucket_env(bucket: &RemoteConfig) -> Vec<(&'static str, String)> {
    let mut env = vec![
        (CHILD_ENDPOINT, bucket.endpoint.clone().unwrap_or_default()),
        (CHILD_BUCKET, bucket.bucket.clone()),
        (CHILD_PREFIX, bucket.prefix.clone()),
        (CHILD_REGION, bucket.region.clone()),
    ];
    if let (Some(id), Some(secret)) = (&bucket.access_key_id, &bucket.secret_access_key) {
        env.push((CHILD_KEY_ID, id.clone()));
        env.push((CHILD_SECRET, secret.clone()));
    }
    env
}

/// The bucket [`bucket_env`] described.
fn bucket_from_env() -> RemoteConfig {
    let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
    let mut bucket = RemoteConfig::new(var(CHILD_ENDPOINT).as_deref(), &var(CHILD_BUCKET).unwrap());
    bucket.prefix = var(CHILD_PREFIX).unwrap_or_default();
    bucket.region = var(CHILD_REGION).unwrap();
    bucket.access_key_id = var(CHILD_KEY_ID);
    bucket.secret_access_key = var(CHILD_SECRET);
    if bucket.access_key_id.is_some() {
        bucket.reuse_connections = false;
        bucket.request_timeout = Duration::from_secs(5);
    }
    bucket
}

/// Block `i` of the ingest sequence: its bytes depend only on `i` (the index leads, so no
/// two are equal), so the parent rebuilds any acknowledged block and compares bytes. One in
/// four is small (a few KiB), the rest tens of KiB: packs fill after a few dozen blocks.
fn block(i: u64) -> Block {
    let len = if i.is_multiple_of(4) {
        1024 + (i as usize * 37) % 3000
    } else {
        (24 << 10) + (i as usize * 131) % (40 << 10)
    };
    let mut data = format!("{i}:").into_bytes();
    data.extend((data.len()..len).map(|j| (i as usize * 31 + j * 7) as u8));
    Block::new(data).unwrap()
}

/// Every pack listed in the bucket and gone from the disk (`local_pack_bytes` is 0).
fn caught_up(s: &Stats) -> bool {
    s.remote_packs == s.packs
}

/// Every block of `expected` reads back equal, one by one and through `get_many`; a read
/// that reports damage fails the test with `what` (which kill, which seed).
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
    // In slices, as a caller would ask: one request per pack per call.
    for (blocks, cids) in expected.chunks(64).zip(cids.chunks(64)) {
        let got = store
            .get_many(cids)
            .unwrap_or_else(|e| panic!("{what}: get_many: {e}"));
        for (b, got) in blocks.iter().zip(got) {
            assert_eq!(
                got.as_ref(),
                Some(b.data()),
                "{what}: get_many of {}",
                b.cid()
            );
        }
    }
}

/// Whether the child also deletes (`1`): then packs lose records, explicit compactions
/// reclaim them (fetching remote ones back) and manifests drop packs, so kills land in
/// reclamations and in the deletes from the bucket too.
const CHILD_DELETES: &str = "IPFRS_RCRASH_DELETES";

/// Blocks back from the batch just acknowledged that the child deletes: far enough that the
/// block is packed and usually evicted by then.
const DELETE_LAG: u64 = 39;

/// The block the child deletes after batch `first..first + 4` is acknowledged, if any: one
/// large block per batch (a quarter of the records, a third of the bytes), so that packs
/// fall under the explicit compaction's reclaim threshold.
fn delete_after(first: u64) -> Option<u64> {
    first.checked_sub(DELETE_LAG)
}

/// The child: puts blocks in batches of four from `CHILD_START` on, forever, printing the
/// last index of each acknowledged batch (and `d<index>` for each acknowledged delete), and
/// compacts every [`COMPACT_EVERY_BYTES`].
#[test]
#[ignore = "helper: run as a child process by the crash campaigns"]
fn remote_crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let start: u64 = std::env::var(CHILD_START).unwrap().parse().unwrap();
    let deletes = std::env::var(CHILD_DELETES).is_ok_and(|v| v == "1");
    let engine = Engine::open(config(dir.as_ref(), bucket_from_env())).unwrap();
    let store = engine.blocking();
    println!("ready");
    let (mut i, mut since_compaction) = (start, 0u64);
    loop {
        let batch: Vec<Block> = (i..i + 4).map(block).collect();
        store.put_many(&batch).unwrap();
        // One line per batch, so that a kill never splits one (a batch is acknowledged whole).
        println!("{}", i + 3);
        if let Some(gone) = delete_after(i).filter(|_| deletes) {
            assert!(
                store.delete(block(gone).cid()).unwrap(),
                "{gone} was stored"
            );
            println!("d{gone}");
        }
        i += 4;
        since_compaction += batch.iter().map(|b| b.len() as u64).sum::<u64>();
        if since_compaction >= COMPACT_EVERY_BYTES {
            store.compact().unwrap();
            since_compaction = 0;
        }
    }
}

/// What one child acknowledged before it died.
#[derive(Default)]
struct ChildRun {
    /// The last block whose put was acknowledged.
    last_put: Option<u64>,
    /// Blocks whose delete was acknowledged.
    deleted: Vec<u64>,
}

/// Runs the child with `envs`, waits for its "ready", lets it run for `run_for`, kills it
/// with SIGKILL and returns what it acknowledged, lines printed before the kill landed
/// included. The child's standard error goes to `log` (quoted if it dies before ready).
/// (`common::kill_child_after` reads numbers only; this child prints deletes too.)
fn kill_child_after(envs: &[(&str, String)], run_for: Duration, log: &Path) -> ChildRun {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut process = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "remote_crash_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(process.stdout.take().unwrap()).lines();
    let mut run = ChildRun::default();
    let mut record = |line: &str| {
        if let Some(gone) = line.strip_prefix('d') {
            run.deleted.push(gone.parse().unwrap());
        } else if let Ok(n) = line.parse::<u64>() {
            run.last_put = Some(n);
        }
    };
    // libtest prints "test <child> ... " before the child's own "ready".
    let mut ready = false;
    for line in lines.by_ref() {
        if line.unwrap().ends_with("ready") {
            ready = true;
            break;
        }
    }
    assert!(
        ready,
        "the child died before it was ready (opening the store?)"
    );
    let deadline = Instant::now() + run_for;
    for line in lines.by_ref() {
        record(&line.unwrap());
        if Instant::now() >= deadline {
            break;
        }
    }
    process.kill().unwrap();
    for line in lines {
        record(&line.unwrap_or_default());
    }
    process.wait().unwrap();
    run
}

/// What a campaign saw, for the callers' own checks.
struct Campaign {
    acked: u64,
    kills: usize,
    /// Packs uploaded by the parent after reopens: left local, unlisted, by a killed child.
    uploads_after_reopen: u64,
    last: Stats,
}

/// Kills children ingesting into `data` on `bucket` (deleting too if `deletes`), checking
/// each time after reopening.
fn crash_campaign(
    name: &str,
    data: &Path,
    bucket: &RemoteConfig,
    deletes: bool,
    max_kills: usize,
) -> Campaign {
    let kills: usize = std::env::var("IPFRS_REMOTE_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(max_kills);
    let seed: u64 = rand::random();
    eprintln!("{name}: up to {kills} kills, seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let started = Instant::now();
    let (mut acked, mut done, mut uploads_after_reopen) = (0u64, 0usize, 0u64);
    // Deletes acknowledged, and deletes that may or may not have happened (issued when the
    // kill came; a later child never repeats them).
    let (mut deleted, mut maybe_deleted) = (HashSet::new(), HashSet::new());
    let mut last = None;
    for kill in 0..kills {
        if kill >= 3 && started.elapsed() > CAMPAIGN_BUDGET {
            break;
        }
        // Spread over time: early deaths (during open and the first uploads) and late ones
        // (a backlog of packs, evictions, manifests, reclamations).
        let run_for = Duration::from_millis(rng.random_range(50..2500));
        let mut envs = bucket_env(bucket);
        envs.push((CHILD_DIR, data.display().to_string()));
        envs.push((CHILD_START, acked.to_string()));
        envs.push((CHILD_DELETES, if deletes { "1" } else { "0" }.to_string()));
        let run = kill_child_after(&envs, run_for, &data.with_extension("child.log"));
        deleted.extend(run.deleted.iter().copied());
        if let Some(n) = run.last_put {
            acked = n + 1;
            // The delete after the last acknowledged batch may have been in flight.
            if let Some(gone) = delete_after(acked - 4).filter(|_| deletes)
                && !deleted.contains(&gone)
            {
                maybe_deleted.insert(gone);
            }
        }
        done += 1;

        let what = format!("{name}, kill {kill} after {run_for:?} (seed {seed})");
        let engine = Engine::open(config(data, bucket.clone()))
            .unwrap_or_else(|e| panic!("{what}: reopen failed: {e}"));
        let check = |engine: &Engine| {
            let (expected, gone): (Vec<u64>, Vec<u64>) = (0..acked)
                .filter(|i| !maybe_deleted.contains(i))
                .partition(|i| !deleted.contains(i));
            let expected: Vec<Block> = expected.into_iter().map(block).collect();
            check_all(engine, &expected, &what);
            check_absent(engine, &gone, &what);
            check_either(engine, &maybe_deleted, &what);
        };
        check(&engine);
        // Whatever the child left sealed but unlisted is uploaded, listed and evicted now.
        engine.blocking().compact().unwrap();
        let s = settle(&engine, caught_up);
        assert!(
            caught_up(&s),
            "{what}: the uploader did not catch up: {s:?}"
        );
        assert_eq!(s.corrupt_records, 0, "{what}: {s:?}");
        assert_eq!(s.corrupt_cold_reads, 0, "{what}: {s:?}");
        uploads_after_reopen += s.remote_uploads;
        // And read again, now that the parent's own uploads, evictions and reclamations ran.
        check(&engine);
        engine.blocking().close().unwrap();
        last = Some(s);
    }
    let last = last.expect("at least one kill");
    eprintln!(
        "{name}: {done} kills, {acked} blocks acknowledged ({} deleted, {} maybe), {} packs \
         (all remote), {} uploaded after reopens, in {:?}",
        deleted.len(),
        maybe_deleted.len(),
        last.packs,
        uploads_after_reopen,
        started.elapsed()
    );
    if deletes {
        assert!(!deleted.is_empty(), "the children never deleted");
    }
    Campaign {
        acked,
        kills: done,
        uploads_after_reopen,
        last,
    }
}

/// Blocks whose delete was acknowledged are gone: neither read nor reported present.
fn check_absent(engine: &Engine, gone: &[u64], what: &str) {
    let store = engine.blocking();
    for &i in gone {
        let b = block(i);
        assert_eq!(
            store.get(b.cid()).unwrap(),
            None,
            "{what}: deleted {i} back"
        );
        assert!(!store.has(b.cid()).unwrap(), "{what}: deleted {i} present");
    }
}

/// Blocks whose delete was in flight at the kill: gone, or back whole and undamaged.
fn check_either(engine: &Engine, maybe: &HashSet<u64>, what: &str) {
    let store = engine.blocking();
    for &i in maybe {
        let b = block(i);
        match store.get(b.cid()) {
            Ok(None) => {}
            Ok(Some(data)) => assert_eq!(data.as_ref(), b.data(), "{what}: {i} wrong"),
            Err(e) => panic!("{what}: get {i} (deleted at the kill): {e}"),
        }
    }
}

/// The campaign's end: data well past the hot budget must have reached the bucket.
fn assert_packs_reached_the_bucket(c: &Campaign) {
    assert!(c.acked > 0, "the child never acknowledged a write");
    let written: u64 = (0..c.acked).map(|i| block(i).len() as u64).sum();
    if written > 4 * 4 * SEGMENT {
        assert!(
            c.last.packs > 0 && c.last.remote_packs == c.last.packs,
            "{written} bytes written over {} kills, no pack in the bucket: {:?}",
            c.kills,
            c.last
        );
    }
}

#[test]
fn killed_mid_upload_a_directory_bucket_keeps_every_acknowledged_block() {
    let dir = tempfile::tempdir().unwrap();
    let (data, root) = (dir.path().join("store"), dir.path().join("s3"));
    let bucket = dir_bucket(&root);
    let c = crash_campaign("file:// bucket", &data, &bucket, false, 10);
    assert_packs_reached_the_bucket(&c);
    // Every listed pack is in the bucket; the child only puts, so nothing should be there
    // that no manifest lists (a reupload after a kill finds its object and reuses it).
    let objects = files_ending(&root, ".pack").len() as u64;
    assert!(objects >= c.last.packs, "{objects} objects: {:?}", c.last);
    assert_eq!(
        objects, c.last.packs,
        "objects in the bucket that no manifest lists (uploads after reopens: {})",
        c.uploads_after_reopen
    );
}

#[test]
fn killed_mid_reclamation_a_directory_bucket_keeps_every_acknowledged_block() {
    let dir = tempfile::tempdir().unwrap();
    let (data, root) = (dir.path().join("store"), dir.path().join("s3"));
    let bucket = dir_bucket(&root);
    let c = crash_campaign("file:// bucket, deleting", &data, &bucket, true, 10);
    assert_packs_reached_the_bucket(&c);
}

#[test]
fn killed_mid_upload_to_garage_keeps_every_acknowledged_block() {
    let test = "killed_mid_upload_to_garage_keeps_every_acknowledged_block";
    let Some(bin) = ipfrs_garage::garage_for_test(test).unwrap() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let garage = ipfrs_garage::Garage::start_with(&bin, &dir.path().join("garage")).unwrap();
    let bucket = garage_bucket(
        garage.endpoint(),
        garage.bucket(),
        garage.access_key(),
        garage.secret_key(),
    );
    let c = crash_campaign("garage", &dir.path().join("store"), &bucket, true, 6);
    assert_packs_reached_the_bucket(&c);
}

/// Puts batches from `next` on until `stop`, recording the acknowledged count in `acked`
/// (an acknowledged block is one `put_many` returned for). Returns the first error.
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
                .unwrap_or_else(|e| panic!("compaction with the server down: {e}"));
            since_compaction = 0;
        }
    }
}

/// Garage is killed (SIGKILL) while the engine ingests: puts stay acknowledged, the
/// uploader fails and retries, and once Garage is back every pack is uploaded and every
/// block reads back. Garage is a one-node cluster here: that is the handle that can stop a
/// node and start it again on its files and ports.
#[test]
fn garage_killed_mid_ingest_loses_nothing_and_uploads_resume() {
    let test = "garage_killed_mid_ingest_loses_nothing_and_uploads_resume";
    let Some(bin) = ipfrs_garage::garage_for_test(test).unwrap() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut garage = ipfrs_garage::GarageCluster::start_with(&bin, dir.path(), 1).unwrap();
    let bucket = garage_bucket(
        garage.endpoint(0).unwrap(),
        garage.bucket(),
        garage.access_key(),
        garage.secret_key(),
    );
    let data = dir.path().join("store");
    let engine = Engine::open(config(&data, bucket.clone())).unwrap();
    let (next, acked, stop) = (AtomicU64::new(0), AtomicU64::new(0), AtomicBool::new(false));

    let (before, down, during) = std::thread::scope(|scope| {
        let ingesting = scope.spawn(|| ingest(&engine, &next, &acked, &stop));
        // Ingest until the uploader has been at work, then kill the server under it.
        // (Asserted after the join: a panic here would leave the ingest thread running.)
        let before = settle(&engine, |s| {
            s.remote_uploads >= 2 && s.remote_manifests >= 1
        });
        garage.stop_node(0).unwrap();
        let down = acked.load(Ordering::Relaxed);
        // Puts go on being acknowledged while uploads fail.
        let during = settle(&engine, |s| {
            s.remote_failures >= 2 && acked.load(Ordering::Relaxed) > down + 64
        });
        stop.store(true, Ordering::Relaxed);
        ingesting.join().unwrap();
        (before, down, during)
    });
    assert!(
        before.remote_uploads >= 2,
        "no uploads before the kill: {before:?}"
    );
    let acked = acked.load(Ordering::Relaxed);
    assert!(
        during.remote_failures > 0,
        "no upload failed with the server down: {during:?}"
    );
    assert!(
        acked > down + 64,
        "puts stopped being acknowledged with the server down ({down} then {acked})"
    );
    // Packs sealed while the server was down wait locally for it.
    let s = stats(&engine);
    assert!(s.remote_packs < s.packs || s.packs == 0, "{s:?}");

    garage.start_node(0).unwrap();
    // New work wakes the uploader from its back-off at once.
    engine.blocking().compact().unwrap();
    let s = settle(&engine, |s| caught_up(s) && s.packs > 0);
    assert!(
        caught_up(&s) && s.packs > 0,
        "uploads did not resume: {s:?}"
    );
    let expected: Vec<Block> = (0..acked).map(block).collect();
    check_all(&engine, &expected, "after garage restarted");
    engine.blocking().close().unwrap();

    // And from the bucket alone after a reopen.
    let engine = Engine::open(config(&data, bucket)).unwrap();
    let s = stats(&engine);
    assert!(caught_up(&s), "{s:?}");
    check_all(&engine, &expected, "reopened after garage restarted");
    engine.blocking().close().unwrap();
}

/// Packs reclaimed, across shards.
fn reclaimed(s: &Stats) -> u64 {
    s.shards.iter().map(|shard| shard.packs_reclaimed).sum()
}

/// A pack that left the manifest waits out its grace period before it is deleted from the
/// bucket; a restart (clean here, a crash alike) in between must not make it stay forever.
#[test]
fn packs_dropped_before_a_restart_still_leave_the_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let (data, root) = (dir.path().join("store"), dir.path().join("s3"));
    let bucket = dir_bucket(&root);
    let with_grace = |grace: Duration| {
        let mut config = config(&data, bucket.clone());
        config.remote.as_mut().unwrap().delete_grace = grace;
        config
    };
    let engine = Engine::open(with_grace(Duration::from_secs(3600))).unwrap();
    let all: Vec<Block> = (0..400).map(block).collect();
    for chunk in all.chunks(20) {
        engine.blocking().put_many(chunk).unwrap();
    }
    engine.blocking().compact().unwrap();
    let s = settle(&engine, |s| s.packs > 0 && caught_up(s));
    assert!(s.packs > 0 && caught_up(&s), "{s:?}");
    // Most blocks deleted: their packs are reclaimed and leave the manifest.
    let (gone, kept) = all.split_at(all.len() * 4 / 5);
    let cids: Vec<_> = gone.iter().map(|b| *b.cid()).collect();
    engine.blocking().delete_many(&cids).unwrap();
    engine.blocking().compact().unwrap();
    let s = settle(&engine, |s| reclaimed(s) > 0 && caught_up(s));
    assert!(reclaimed(&s) > 0 && caught_up(&s), "{s:?}");
    let waiting = files_ending(&root, ".pack").len() as u64;
    assert!(
        waiting > s.packs,
        "the grace period keeps dropped packs in the bucket: {waiting} objects, {s:?}"
    );
    engine.blocking().close().unwrap();

    // Reopened with no grace left: the packs no manifest lists go. (A reclaimed pack may
    // stay listed, and stored, until the records rewritten out of it are packed: what
    // the bucket must hold is what the manifests list.)
    let engine = Engine::open(with_grace(Duration::ZERO)).unwrap();
    engine.blocking().compact().unwrap();
    let view = ipfrs_remote::PackBucket::open(&bucket).unwrap();
    let unlisted = || -> Vec<(u32, u32)> {
        (0..2u32)
            .flat_map(|shard| {
                let listed: HashSet<u32> = view
                    .latest_manifest(shard)
                    .wait()
                    .unwrap()
                    .map(|m| m.packs.iter().map(|e| e.pack).collect())
                    .unwrap_or_default();
                view.list_packs(shard)
                    .wait()
                    .unwrap()
                    .into_iter()
                    .filter(move |p| !listed.contains(p))
                    .map(move |p| (shard, p))
            })
            .collect()
    };
    let start = Instant::now();
    let left = loop {
        let left = unlisted();
        // Past the uploader's idle tick (5 s) twice over.
        if left.is_empty() || start.elapsed() > Duration::from_secs(15) {
            break left;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    check_all(&engine, kept, "after the restart");
    assert!(
        left.is_empty(),
        "(shard, pack)s dropped before the restart stay in the bucket, listed by no \
         manifest: {left:?}; {waiting} objects before the restart, {:?}",
        stats(&engine)
    );
    engine.blocking().close().unwrap();
}
