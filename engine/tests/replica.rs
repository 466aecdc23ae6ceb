//! A read replica of a store from its packs on an object store, without the primary's files.
//! The packs are made by an engine (small segments, compaction), then uploaded with their
//! hints and listed in manifests by hand, as the engine's uploader will: the replica serves
//! exactly what a replay of the uploaded hints says is live, every byte equal; an absent
//! block costs no request; a damaged record is `Corrupt`, never served; a new manifest
//! generation is followed by `refresh`, a dropped pack's blocks go with it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_lite::future::block_on;
use ipfrs_remote::{Manifest, PackBucket, PackEntry, RemoteConfig};
use ipfrs_storage::key::key_of;
use ipfrs_storage::{Block, BlockStore, Cid, Engine, Replica};
use ipfrs_storage::{Refreshed, ReplicaError, Stats};
use ipfrs_tiering::pack::{list_packs, pack_hint_path};
use ipfrs_tiering::segment::hint::{decode_hint, encode_hint};
use ipfrs_tiering::segment::recover::Kind;
use ipfrs_tiering::segment::{Alignment, scan_segment};
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

mod common;

use common::remote::settle;

const PREFIX: &str = "store-a";

/// 64 KiB blocks and 2 KiB ones, distinct by `seed`.
fn blocks(seed: u32, count: u32) -> Vec<Block> {
    common::two_sizes(seed, count, 3, 2 << 10, 64 << 10)
}

/// What an engine wrote: every block, and the CIDs it deleted.
struct Written {
    blocks: Vec<Block>,
    deleted: HashSet<Cid>,
}

/// Writes blocks into a store at `dir`, deletes some, writes more (so the tombstones are
/// sealed into packs too), compacts and closes.
fn make_store(dir: &Path) -> Written {
    let engine = Engine::open(common::remote::local_store_config(dir)).unwrap();
    let first = blocks(1, 150);
    for chunk in first.chunks(20) {
        block_on(engine.put_many(chunk)).unwrap();
    }
    let deleted: Vec<Cid> = first.iter().step_by(7).map(|b| *b.cid()).collect();
    block_on(engine.delete_many(&deleted)).unwrap();
    let second = blocks(2, 150);
    for chunk in second.chunks(20) {
        block_on(engine.put_many(chunk)).unwrap();
    }
    block_on(engine.compact()).unwrap();
    block_on(engine.close()).unwrap();
    Written {
        blocks: first.into_iter().chain(second).collect(),
        deleted: deleted.into_iter().collect(),
    }
}

/// One uploaded pack: its manifest entry and its records as a hint.
struct Uploaded {
    entry: PackEntry,
    hint: Vec<u8>,
    /// Uploaded without a hint: the replica reads the pack whole to index it.
    hintless: bool,
}

/// Uploads every pack of every shard of the store at `dir` with its hint; by shard, ascending.
fn upload_packs(bucket: &PackBucket, dir: &Path) -> BTreeMap<u32, Vec<Uploaded>> {
    let mut out = BTreeMap::new();
    for shard in 0u32.. {
        let segments = dir.join(format!("shard-{shard:03}")).join("segments");
        if !segments.exists() {
            break;
        }
        let mut packs = list_packs(&segments).unwrap();
        packs.sort();
        let mut uploaded = Vec::new();
        for (id, path) in packs {
            let bytes = Bytes::from(std::fs::read(&path).unwrap());
            // A pack can be sealed without a hint (the engine writes it after the seal and
            // goes on without one if that fails or the store closes first): it goes up with
            // an empty one, which the replica passes over for the pack itself, and the model
            // reads the pack's records from a scan.
            let (uploaded_hint, hint) = match std::fs::read(pack_hint_path(&segments, id)) {
                Ok(hint) => (hint.clone(), hint),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let scan = scan_segment(&bytes, Alignment::WORD);
                    (Vec::new(), encode_hint(&scan).unwrap())
                }
                Err(e) => panic!("{}: {e}", path.display()),
            };
            let hintless = uploaded_hint.is_empty();
            let entry = bucket
                .upload_pack(shard, id, bytes, Bytes::from(uploaded_hint))
                .wait()
                .unwrap();
            uploaded.push(Uploaded {
                entry,
                hint,
                hintless,
            });
        }
        out.insert(shard, uploaded);
    }
    assert!(
        out.values().map(Vec::len).sum::<usize>() >= 4,
        "the engine made too few packs for these tests"
    );
    out
}

fn publish<'a>(
    bucket: &PackBucket,
    shard: u32,
    generation: u64,
    packs: impl IntoIterator<Item = &'a Uploaded>,
) {
    publish_dead(bucket, shard, generation, packs, Vec::new());
}

/// [`publish`], listing the records `dead` (pack, offset) dead.
fn publish_dead<'a>(
    bucket: &PackBucket,
    shard: u32,
    generation: u64,
    packs: impl IntoIterator<Item = &'a Uploaded>,
    dead: Vec<(u32, u32)>,
) {
    let manifest = Manifest {
        shard,
        generation,
        packs: packs.into_iter().map(|u| u.entry).collect(),
        dead,
    };
    bucket.publish(&manifest).wait().unwrap();
}

/// The model: the keys a replay of these packs' hints leaves live (a plain fold in pack
/// order), and the keys whose last record is a tombstone.
fn live_keys<'a>(
    packs: impl IntoIterator<Item = &'a Uploaded>,
) -> (HashSet<Vec<u8>>, HashSet<Vec<u8>>) {
    let mut live = HashSet::new();
    let mut tombstoned = HashSet::new();
    for pack in packs {
        for record in decode_hint(&pack.hint).unwrap().found {
            match record.kind {
                Kind::Put { .. } => {
                    tombstoned.remove(record.key.as_ref());
                    live.insert(record.key.to_vec());
                }
                Kind::Tombstone => {
                    live.remove(record.key.as_ref());
                    tombstoned.insert(record.key.to_vec());
                }
                _ => {}
            }
        }
    }
    (live, tombstoned)
}

/// The replica serves exactly the blocks in `live`, each equal to what was written.
fn check_serves_exactly(replica: &Replica, written: &Written, live: &HashSet<Vec<u8>>) {
    let mut present = Vec::new();
    for block in &written.blocks {
        let cid = block.cid();
        if live.contains(&key_of(cid)) {
            assert!(replica.has(cid), "{cid}");
            assert_eq!(replica.get_size(cid), Some(block.len() as u64), "{cid}");
            let got = block_on(replica.get(cid)).unwrap();
            assert_eq!(got.as_ref(), Some(block.data()), "{cid}");
            present.push(block);
        } else {
            assert!(!replica.has(cid), "{cid} should be absent");
            assert_eq!(replica.get_size(cid), None, "{cid}");
            assert_eq!(block_on(replica.get(cid)).unwrap(), None, "{cid}");
        }
    }
    assert_eq!(replica.block_count(), present.len() as u64);
    let all: Vec<Cid> = written.blocks.iter().map(|b| *b.cid()).collect();
    let many = block_on(replica.get_many(&all)).unwrap();
    for (block, got) in written.blocks.iter().zip(many) {
        if live.contains(&key_of(block.cid())) {
            assert_eq!(got.as_ref(), Some(block.data()), "{}", block.cid());
        } else {
            assert_eq!(got, None, "{}", block.cid());
        }
    }
}

/// An object store that counts the requests made through it.
#[derive(Debug)]
struct Counting {
    inner: Arc<InMemory>,
    requests: AtomicU64,
    ranged_reads: AtomicU64,
}

impl Counting {
    fn new() -> Arc<Counting> {
        Arc::new(Counting {
            inner: Arc::new(InMemory::new()),
            requests: AtomicU64::new(0),
            ranged_reads: AtomicU64::new(0),
        })
    }

    fn count(&self) {
        self.requests.fetch_add(1, Ordering::SeqCst);
    }

    fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    fn ranged_reads(&self) -> u64 {
        self.ranged_reads.load(Ordering::SeqCst)
    }

    /// Replaces an object's bytes behind the bucket's back (damage in the store).
    fn overwrite(&self, path: &str, bytes: Vec<u8>) {
        block_on(
            self.inner
                .put(&ObjectPath::from(path), PutPayload::from(bytes)),
        )
        .unwrap();
    }

    fn read(&self, path: &str) -> Vec<u8> {
        block_on(async {
            let got = self.inner.get(&ObjectPath::from(path)).await.unwrap();
            got.bytes().await.unwrap().to_vec()
        })
    }
}

impl fmt::Display for Counting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Counting({})", self.inner)
    }
}

type BoxStream<T> = Pin<Box<dyn futures_lite::Stream<Item = T> + Send>>;

#[async_trait::async_trait]
impl ObjectStore for Counting {
    async fn put_opts(
        &self,
        location: &ObjectPath,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.count();
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &ObjectPath,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.count();
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &ObjectPath,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.count();
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &ObjectPath,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.count();
        self.ranged_reads.fetch_add(1, Ordering::SeqCst);
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<object_store::Result<ObjectPath>>,
    ) -> BoxStream<object_store::Result<ObjectPath>> {
        self.count();
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&ObjectPath>) -> BoxStream<object_store::Result<ObjectMeta>> {
        self.count();
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> object_store::Result<ListResult> {
        self.count();
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &ObjectPath,
        to: &ObjectPath,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.count();
        self.inner.copy_opts(from, to, options).await
    }
}

fn counted_bucket() -> (Arc<Counting>, PackBucket) {
    let store = Counting::new();
    let bucket = PackBucket::with_store(store.clone(), PREFIX).unwrap();
    (store, bucket)
}

/// Every block a replay of the uploaded packs leaves live reads back equal, in single and
/// batched reads (one ranged request per pack); deleted blocks whose tombstone was uploaded
/// and blocks never written are absent, and answering that costs no request.
#[test]
fn a_replica_serves_every_uploaded_block_and_absent_ones_cost_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let written = make_store(dir.path());
    let (store, bucket) = counted_bucket();
    let uploaded = upload_packs(&bucket, dir.path());
    for (shard, packs) in &uploaded {
        publish(&bucket, *shard, 1, packs);
    }
    let (live, tombstoned) = live_keys(uploaded.values().flatten());
    assert!(
        live.len() > written.blocks.len() / 2,
        "{} of {} blocks in packs",
        live.len(),
        written.blocks.len()
    );
    let deleted_in_packs: Vec<&Cid> = written
        .deleted
        .iter()
        .filter(|cid| tombstoned.contains(&key_of(cid)))
        .collect();
    assert!(
        !deleted_in_packs.is_empty(),
        "no uploaded pack holds a tombstone"
    );

    // Opened from another bucket handle: the replica never sees the store's directory.
    // Opening costs one listing of the shards, a listing and a read of each shard's newest
    // manifest, and one read per pack (its hint, or the pack itself where it has none).
    let shards = uploaded.len() as u64;
    let packs = uploaded.values().flatten().count() as u64;
    let hintless = uploaded.values().flatten().filter(|u| u.hintless).count() as u64;
    let before = store.requests();
    let replica =
        Replica::open_with_bucket(PackBucket::with_store(store.clone(), PREFIX).unwrap()).unwrap();
    assert_eq!(store.requests() - before, 1 + 2 * shards + packs + hintless);
    // A refresh with nothing new reads the manifests only.
    let before = store.requests();
    assert_eq!(replica.refresh().unwrap(), Refreshed::default());
    assert_eq!(store.requests() - before, 1 + 2 * shards);
    for cid in &deleted_in_packs {
        assert!(!replica.has(cid), "{cid} was deleted");
    }
    check_serves_exactly(&replica, &written, &live);

    // Absent blocks (never written, deleted) and present ones' has / size: no request.
    let before = store.requests();
    for block in blocks(3, 200).iter().chain(&written.blocks) {
        let _ = replica.has(block.cid());
        let _ = replica.get_size(block.cid());
    }
    let absent: Vec<Cid> = blocks(3, 200).iter().map(|b| *b.cid()).collect();
    for cid in &absent {
        assert_eq!(block_on(replica.get(cid)).unwrap(), None);
    }
    assert_eq!(
        block_on(replica.get_many(&absent)).unwrap(),
        vec![None; absent.len()]
    );
    // An identity CID is answered from itself.
    let identity = Cid::new_v1(
        0x55,
        multihash_codetable::Multihash::wrap(0, b"inline").unwrap(),
    );
    assert!(replica.has(&identity));
    assert_eq!(
        block_on(replica.get(&identity)).unwrap().as_deref(),
        Some(&b"inline"[..])
    );
    assert_eq!(store.requests(), before, "absent blocks reached the store");

    // A batch costs one ranged request per pack it touches (a fresh replica: the reads
    // above read ahead, and what they cached would cost none).
    let replica =
        Replica::open_with_bucket(PackBucket::with_store(store.clone(), PREFIX).unwrap()).unwrap();
    let present: Vec<Cid> = written
        .blocks
        .iter()
        .map(|b| *b.cid())
        .filter(|cid| live.contains(&key_of(cid)))
        .collect();
    let before = store.ranged_reads();
    let got = block_on(replica.get_many(&present)).unwrap();
    assert!(got.iter().all(Option::is_some));
    let packs_holding: usize = uploaded.values().map(Vec::len).sum();
    let used = store.ranged_reads() - before;
    assert!(
        used >= 1 && used <= packs_holding as u64,
        "{used} ranged reads for {} blocks in {packs_holding} packs",
        present.len()
    );
    assert!(replica.index_memory_bytes() >= 33 * present.len() as u64);
}

/// A flipped byte in an uploaded pack (in a block's bytes, or in a record's key) makes that
/// block `Corrupt` in single and batched reads, never served; the pack's other blocks still
/// read. A damaged hint is passed over for the pack itself.
#[test]
fn a_damaged_record_is_corrupt_and_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let written = make_store(dir.path());
    let (store, bucket) = counted_bucket();
    let uploaded = upload_packs(&bucket, dir.path());
    for (shard, packs) in &uploaded {
        publish(&bucket, *shard, 1, packs);
    }
    let (live, _) = live_keys(uploaded.values().flatten());
    let by_key: HashMap<Vec<u8>, &Block> = written
        .blocks
        .iter()
        .map(|b| (key_of(b.cid()), b))
        .collect();

    // Two live records of the first pack that holds two: a payload byte and a key byte.
    let (shard, pack, records) = uploaded
        .iter()
        .flat_map(|(shard, packs)| packs.iter().map(move |p| (*shard, p)))
        .find_map(|(shard, p)| {
            let found: Vec<(usize, Vec<u8>)> = decode_hint(&p.hint)
                .unwrap()
                .found
                .iter()
                .filter(|r| matches!(r.kind, Kind::Put { len } if len > 100))
                .filter(|r| live.contains(r.key.as_ref()))
                .map(|r| (r.offset, r.key.to_vec()))
                .collect();
            (found.len() >= 3).then_some((shard, p.entry.pack, found))
        })
        .expect("a pack with three live records");
    let path = format!("{PREFIX}/shard-{shard:03}/packs/{pack:08}.pack");
    let mut bytes = store.read(&path);
    let (payload_at, payload_key) = &records[0];
    let (key_at, key_key) = &records[1];
    bytes[payload_at + 28 + payload_key.len() + 50] ^= 0x01;
    bytes[key_at + 28 + 3] ^= 0x40;
    store.overwrite(&path, bytes);

    let replica =
        Replica::open_with_bucket(PackBucket::with_store(store.clone(), PREFIX).unwrap()).unwrap();
    for key in [payload_key, key_key] {
        let cid = by_key[key].cid();
        // The index still knows it: it is damaged, not absent.
        assert!(replica.has(cid));
        match block_on(replica.get(cid)) {
            Err(e @ ReplicaError::Corrupt { .. }) => {
                assert_eq!(e.corrupt_cid().as_ref(), Some(cid), "{e}");
            }
            other => panic!("{cid}: {other:?}"),
        }
        let batch = [*by_key[&records[2].1].cid(), *cid];
        assert!(matches!(
            block_on(replica.get_many(&batch)),
            Err(ReplicaError::Corrupt { .. })
        ));
    }
    let intact = by_key[&records[2].1];
    assert_eq!(
        block_on(replica.get(intact.cid())).unwrap().as_ref(),
        Some(intact.data())
    );

    // A damaged hint: the replica reads that pack whole and scans it instead, and serves the
    // same blocks (the two damaged records still reported, not dropped).
    let other = uploaded
        .iter()
        .flat_map(|(shard, packs)| packs.iter().map(move |p| (*shard, p.entry.pack)))
        .find(|&(s, p)| (s, p) != (shard, pack))
        .unwrap();
    let hint_path = format!("{PREFIX}/shard-{:03}/packs/{:08}.hint", other.0, other.1);
    let mut hint = store.read(&hint_path);
    hint[20] ^= 0xff;
    store.overwrite(&hint_path, hint);
    let rescanned =
        Replica::open_with_bucket(PackBucket::with_store(store.clone(), PREFIX).unwrap()).unwrap();
    assert_eq!(rescanned.block_count(), replica.block_count());
    for block in &written.blocks {
        let cid = block.cid();
        let key = key_of(cid);
        if key == *payload_key || key == *key_key {
            assert!(rescanned.has(cid));
            assert!(block_on(rescanned.get(cid)).is_err());
        } else if live.contains(&key) {
            assert_eq!(
                block_on(rescanned.get(cid)).unwrap().as_ref(),
                Some(block.data())
            );
        } else {
            assert!(!rescanned.has(cid));
        }
    }
}

/// `refresh` follows new manifest generations: packs added above the indexed ones extend the
/// index, a dropped pack's blocks go (the shard's index rebuilt from the remaining hints), an
/// unchanged manifest changes nothing.
#[test]
fn refresh_picks_up_new_generations_and_drops_removed_packs() {
    let dir = tempfile::tempdir().unwrap();
    let written = make_store(dir.path());
    let (store, bucket) = counted_bucket();
    let uploaded = upload_packs(&bucket, dir.path());
    let shards = uploaded.len();
    // Generation 1 lists all but each shard's last pack.
    let first: Vec<&Uploaded> = uploaded
        .values()
        .flat_map(|packs| &packs[..packs.len() - 1])
        .collect();
    for (shard, packs) in &uploaded {
        publish(&bucket, *shard, 1, &packs[..packs.len() - 1]);
    }
    let replica =
        Replica::open_with_bucket(PackBucket::with_store(store.clone(), PREFIX).unwrap()).unwrap();
    let (live1, _) = live_keys(first);
    check_serves_exactly(&replica, &written, &live1);
    assert_eq!(replica.refresh().unwrap(), Refreshed::default());

    // Generation 2 adds the last packs: the replay continues from where it stopped.
    for (shard, packs) in &uploaded {
        publish(&bucket, *shard, 2, packs);
    }
    let report = replica.refresh().unwrap();
    assert_eq!(
        report,
        Refreshed {
            packs_added: shards,
            packs_dropped: 0,
            shards_rebuilt: 0
        }
    );
    let (live2, _) = live_keys(uploaded.values().flatten());
    assert!(live2.len() > live1.len());
    check_serves_exactly(&replica, &written, &live2);
    assert_eq!(replica.generation(0), Some(2));

    // Generation 3 drops each shard's first pack.
    for (shard, packs) in &uploaded {
        publish(&bucket, *shard, 3, &packs[1..]);
    }
    let report = replica.refresh().unwrap();
    assert_eq!(
        report,
        Refreshed {
            packs_added: 0,
            packs_dropped: shards,
            shards_rebuilt: shards
        }
    );
    let (live3, _) = live_keys(uploaded.values().flat_map(|packs| &packs[1..]));
    assert!(
        live2.difference(&live3).next().is_some(),
        "the dropped packs held no block of their own"
    );
    check_serves_exactly(&replica, &written, &live3);
    // The same answers as a replica opened at generation 3.
    let fresh =
        Replica::open_with_bucket(PackBucket::with_store(store.clone(), PREFIX).unwrap()).unwrap();
    assert_eq!(fresh.block_count(), replica.block_count());

    // Generation 4 lists the first packs again, below the indexed ones: a rebuild, and the
    // answers of generation 2.
    for (shard, packs) in &uploaded {
        publish(&bucket, *shard, 4, packs);
    }
    let report = replica.refresh().unwrap();
    assert_eq!(
        report,
        Refreshed {
            packs_added: shards,
            packs_dropped: 0,
            shards_rebuilt: shards
        }
    );
    check_serves_exactly(&replica, &written, &live2);

    // Reads racing refreshes between generations 3 and 4 see one or the other, never other
    // bytes and never an error (no pack is deleted).
    let mut generation = 5;
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let cids: Vec<Cid> = written.blocks.iter().map(|b| *b.cid()).collect();
            for _ in 0..20 {
                let got = block_on(replica.get_many(&cids)).unwrap();
                for (block, got) in written.blocks.iter().zip(got) {
                    let key = key_of(block.cid());
                    match got {
                        Some(data) => assert_eq!(&data, block.data()),
                        None => assert!(!live2.contains(&key) || !live3.contains(&key)),
                    }
                }
            }
        });
        while !reader.is_finished() {
            for (shard, packs) in &uploaded {
                let listed = if generation % 2 == 1 {
                    &packs[1..]
                } else {
                    &packs[..]
                };
                publish(&bucket, *shard, generation, listed);
            }
            replica.refresh().unwrap();
            generation += 1;
        }
        reader.join().unwrap();
    });
    assert!(generation > 5, "no refresh raced the reads");

    // The same packs again, with records listed dead (blocks deleted after their packs were
    // sealed): no pack is added or dropped, and the replica serves and counts the rest.
    for (shard, packs) in &uploaded {
        publish(&bucket, *shard, generation, packs);
    }
    replica.refresh().unwrap();
    check_serves_exactly(&replica, &written, &live2);
    let mut live_dead = live2.clone();
    for (shard, packs) in &uploaded {
        let last = packs.last().unwrap();
        let found = decode_hint(&last.hint).unwrap().found;
        // Every third block whose last record in the shard's last pack is a put.
        let dead: Vec<(u32, u32)> = found
            .iter()
            .enumerate()
            .filter(|(i, r)| {
                matches!(r.kind, Kind::Put { .. })
                    && !found[i + 1..].iter().any(|later| later.key == r.key)
            })
            .step_by(3)
            .map(|(_, r)| {
                live_dead.remove(r.key.as_ref());
                (last.entry.pack, r.offset as u32)
            })
            .collect();
        assert!(!dead.is_empty(), "shard {shard}: no record to list dead");
        publish_dead(&bucket, *shard, generation + 1, packs, dead);
    }
    let report = replica.refresh().unwrap();
    assert_eq!(report, Refreshed::default());
    check_serves_exactly(&replica, &written, &live_dead);
}

/// The same against a real Garage: packs and manifests uploaded through one client, a
/// replica opened from its configuration (another client) serves every block.
#[test]
fn a_replica_reads_its_packs_from_garage() {
    let Some(binary) =
        ipfrs_garage::garage_for_test("a_replica_reads_its_packs_from_garage").unwrap()
    else {
        return;
    };
    let garage_dir = tempfile::tempdir().unwrap();
    let garage = ipfrs_garage::Garage::start_with(&binary, garage_dir.path()).unwrap();
    let mut remote = RemoteConfig::new(Some(&garage.endpoint()), garage.bucket());
    remote.region = ipfrs_garage::REGION.to_owned();
    remote.prefix = PREFIX.to_owned();
    remote.access_key_id = Some(garage.access_key().to_owned());
    remote.secret_access_key = Some(garage.secret_key().to_owned());
    remote.open_timeout = Duration::from_secs(10);
    remote.request_timeout = Duration::from_secs(30);
    // Garage leaves Nagle on: kept-alive connections wait out a delayed ACK per answer.
    remote.reuse_connections = false;

    let dir = tempfile::tempdir().unwrap();
    let written = make_store(dir.path());
    let bucket = PackBucket::open(&remote).unwrap();
    let uploaded = upload_packs(&bucket, dir.path());
    for (shard, packs) in &uploaded {
        publish(&bucket, *shard, 1, packs);
    }
    drop(bucket);
    let (live, _) = live_keys(uploaded.values().flatten());
    let replica = Replica::open(remote).unwrap();
    check_serves_exactly(&replica, &written, &live);
}

/// The model of what a bucket's newest manifests list: a replay of their packs' hints (a
/// pack whose hint does not decode is scanned, as the replica does).
fn bucket_model(bucket: &PackBucket) -> (HashSet<Vec<u8>>, HashSet<Vec<u8>>, usize) {
    let mut listed = Vec::new();
    // Where each key's last put lies, and the records the manifests say are dead.
    let mut last: HashMap<Vec<u8>, (u32, u32, u32)> = HashMap::new();
    let mut dead = HashSet::new();
    for shard in bucket.shards().wait().unwrap() {
        let Some(manifest) = bucket.latest_manifest(shard).wait().unwrap() else {
            continue;
        };
        dead.extend(
            manifest
                .dead
                .iter()
                .map(|&(pack, offset)| (shard, pack, offset)),
        );
        for entry in manifest.packs {
            let hint = bucket.read_hint(shard, entry.pack).wait().unwrap().to_vec();
            let hint = if decode_hint(&hint).is_some() {
                hint
            } else {
                let pack = bucket.read_pack(shard, entry).wait().unwrap();
                encode_hint(&scan_segment(&pack, Alignment::WORD)).unwrap()
            };
            for record in decode_hint(&hint).unwrap().found {
                match record.kind {
                    Kind::Put { .. } => {
                        let at = (shard, entry.pack, record.offset as u32);
                        last.insert(record.key.to_vec(), at);
                    }
                    Kind::Tombstone => {
                        last.remove(record.key.as_ref());
                    }
                    _ => {}
                }
            }
            listed.push(Uploaded {
                entry,
                hint,
                hintless: false,
            });
        }
    }
    let (mut live, tombstoned) = live_keys(&listed);
    // A block deleted after its pack was sealed: its record is dead, the replica skips it.
    live.retain(|key| last.get(key).is_none_or(|at| !dead.contains(at)));
    (live, tombstoned, listed.len())
}

/// An engine in `dir` whose packs all went to a directory bucket (objects under `prefix`),
/// holding `blocks(seed, 300)`: the engine, the bucket, the blocks and the stats once every
/// pack is uploaded and gone from the disk.
fn uploaded(dir: &Path, prefix: &str, seed: u32) -> (Engine, RemoteConfig, Vec<Block>, Stats) {
    let remote = common::remote::dir_bucket(&dir.join("s3"), "packs-bucket", prefix);
    let config = common::remote::store_config(&dir.join("store"), remote.clone(), 0);
    let engine = Engine::open(config).unwrap();
    let all = blocks(seed, 300);
    for chunk in all.chunks(20) {
        block_on(engine.put_many(chunk)).unwrap();
    }
    block_on(engine.compact()).unwrap();
    let s = settle(&engine, |s| {
        s.packs > 0 && s.remote_packs == s.packs && s.remote_uploads >= s.packs
    });
    (engine, remote, all, s)
}

/// A replica serving a file block by block, in the order its blocks were written, reads
/// ahead: most records come from ranges fetched with an earlier one, and every block is
/// still checked and exact. With read-ahead off, each record is a request of its own.
#[test]
fn a_replica_reading_blocks_in_written_order_reads_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, remote, all, _) = uploaded(dir.path(), "", 8);
    block_on(engine.close()).unwrap();

    let walk = |replica: &Replica| {
        let mut served = 0;
        for block in &all {
            if let Some(data) = block_on(replica.get(block.cid())).unwrap() {
                assert_eq!(&data, block.data());
                served += 1;
            }
        }
        served
    };
    let replica = Replica::open(remote.clone()).unwrap();
    let served = walk(&replica);
    assert!(served > 0);
    let reads = replica.reads();
    assert_eq!(reads.fetched + reads.from_readahead, served, "{reads:?}");
    assert!(reads.from_readahead > reads.fetched, "{reads:?}");
    assert!(reads.cached_bytes > 0, "{reads:?}");

    let mut off = ipfrs_storage::RemoteTier::new(remote);
    off.readahead_bytes = 0;
    let replica = Replica::open_tier(&off).unwrap();
    assert_eq!(walk(&replica), served);
    let reads = replica.reads();
    assert_eq!(
        (reads.fetched, reads.from_readahead),
        (served, 0),
        "{reads:?}"
    );
}

/// End to end: an engine with `Config::remote` uploads its packs itself; a replica opened on
/// the same bucket, while the engine runs, serves every block its packs hold (every cold
/// block: with a bucket no block is inline), and after deletes, reclamation and the
/// engine's new manifests, `refresh` drops what the reclaimed packs held.
#[test]
fn a_replica_serves_what_an_engine_with_a_bucket_uploaded() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, remote, all, s) = uploaded(dir.path(), PREFIX, 5);
    assert_eq!(s.remote_failures, 0, "{s:?}");
    let written = Written {
        blocks: all.clone(),
        deleted: HashSet::new(),
    };

    let replica = Replica::open(remote.clone()).unwrap();
    let bucket = PackBucket::open(&remote).unwrap();
    let (live, _, packs) = bucket_model(&bucket);
    assert_eq!(packs as u64, s.packs, "{s:?}");
    check_serves_exactly(&replica, &written, &live);
    // Every block the engine holds outside its hot tier is in an uploaded pack.
    assert_eq!(replica.block_count(), s.blocks - s.hot_blocks, "{s:?}");

    // Deletes and compaction reclaim packs: new manifests drop them, and a refresh follows.
    let (gone, _) = all.split_at(all.len() * 4 / 5);
    let cids: Vec<Cid> = gone.iter().map(|b| *b.cid()).collect();
    block_on(engine.delete_many(&cids)).unwrap();
    block_on(engine.compact()).unwrap();
    let before = s;
    let s = settle(&engine, |s| {
        s.remote_manifests > before.remote_manifests
            && s.shards.iter().map(|x| x.packs_reclaimed).sum::<u64>() > 0
            && s.remote_packs == s.packs
    });
    block_on(engine.close()).unwrap();
    let report = replica.refresh().unwrap();
    assert!(report.packs_dropped > 0, "{report:?} {s:?}");
    let (live_after, _, _) = bucket_model(&bucket);
    check_serves_exactly(&replica, &written, &live_after);
    // Every block of the engine is still served: the cold ones from their packs, and the
    // live ones the reclamation rewrote into the engine's hot tier (no new puts came) from
    // the reclaimed packs, which stay listed until that segment is packed and uploaded.
    assert_eq!(replica.block_count(), s.blocks, "{s:?}");
    // No deleted block is served: reclaimed packs left the manifest, and the others list
    // the deleted records as dead.
    let served_deleted = gone.iter().filter(|b| replica.has(b.cid())).count();
    assert_eq!(served_deleted, 0, "deleted blocks still served");
}
