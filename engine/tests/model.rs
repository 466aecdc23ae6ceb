//! Model-based test of the engine: random operation sequences against a `HashMap` model.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use ipfrs_storage::key::{IDENTITY_CODE, cid_of_key, key_of, parse_cid_bytes};
use ipfrs_storage::{
    BackendKind, Block, Cid, Codec, Config, Cursor, Engine, HashAlgorithm, HotTier, IoDriver,
};
use proptest::prelude::*;

mod common;

/// How a block of the pool is addressed.
#[derive(Debug, Clone, Copy)]
enum Form {
    /// CIDv1 raw.
    Raw,
    /// CIDv1 dag-pb: same multihash as `Raw`, so the same stored block.
    DagPb,
    /// CIDv1 dag-cbor.
    DagCbor,
    /// CIDv0 (sha2-256 only; falls back to dag-pb for other hashes).
    V0,
    /// An identity CID carrying the data inline (data cut to 64 bytes, the most a `Cid` holds).
    Identity,
}

/// The CIDv1 raw identity CID of `data` (at most 64 bytes), built from its binary form:
/// version 1, codec 0x55, multihash code 0x00, length, the data itself.
fn identity_cid(data: &[u8]) -> Cid {
    assert!(data.len() <= 64);
    let mut bytes = vec![0x01, 0x55, 0x00, data.len() as u8];
    bytes.extend_from_slice(data);
    let cid = parse_cid_bytes(&bytes).unwrap();
    assert_eq!(cid.hash().code(), IDENTITY_CODE);
    cid
}

/// One block: which data, which hash function, which CID form.
#[derive(Debug, Clone, Copy)]
struct Spec {
    data: u8,
    hash: u8,
    form: Form,
}

/// The data of pool entry `i`: index 0 is the empty block; lengths and bytes vary.
fn data(i: u8) -> Bytes {
    if i == 0 {
        return Bytes::new();
    }
    let len = (usize::from(i) * 37) % 300 + 1;
    Bytes::from(
        (0..len)
            .map(|j| (j as u8).wrapping_mul(i) ^ i)
            .collect::<Vec<u8>>(),
    )
}

impl Spec {
    fn hash(&self) -> HashAlgorithm {
        match self.hash % 4 {
            // sha2-256 is the common case: half of the blocks.
            0 | 1 => HashAlgorithm::Sha2_256,
            2 => HashAlgorithm::Blake3,
            _ => HashAlgorithm::Blake2b256,
        }
    }

    fn block(&self) -> Block {
        let bytes = data(self.data);
        let hash = self.hash();
        match self.form {
            Form::Raw => Block::with(Codec::Raw, hash, bytes).unwrap(),
            Form::DagPb => Block::with(Codec::DagPb, hash, bytes).unwrap(),
            Form::DagCbor => Block::with(Codec::DagCbor, hash, bytes).unwrap(),
            Form::V0 => {
                let v1 = Block::with(Codec::DagPb, hash, bytes.clone()).unwrap();
                if hash == HashAlgorithm::Sha2_256 {
                    let v0 = Cid::new_v0(*v1.cid().hash()).unwrap();
                    Block::from_parts(v0, bytes).unwrap()
                } else {
                    v1
                }
            }
            Form::Identity => {
                let inline = bytes.slice(..bytes.len().min(64));
                Block::from_parts(identity_cid(&inline), inline).unwrap()
            }
        }
    }

    fn cid(&self) -> Cid {
        *self.block().cid()
    }
}

#[derive(Debug, Clone)]
enum Op {
    Put(Spec),
    PutData(Spec),
    PutMany(Vec<Spec>),
    Get(Spec),
    GetMany(Vec<Spec>),
    Has(Spec),
    HasMany(Vec<Spec>),
    GetSize(Spec),
    Delete(Spec),
    DeleteMany(Vec<Spec>),
    /// Close and open again; `true`: with the explicit shard count, `false`: with `None`
    /// (the recorded count must be used).
    Reopen(bool),
    /// List every CID page by page with this page size.
    List(usize),
    Flush,
    /// Seal the active hot segments and compact them: blocks move to the cold backend.
    Compact,
}

fn spec() -> impl Strategy<Value = Spec> {
    let form = prop_oneof![
        4 => Just(Form::Raw),
        3 => Just(Form::DagPb),
        1 => Just(Form::DagCbor),
        1 => Just(Form::V0),
        2 => Just(Form::Identity),
    ];
    // A small pool, so puts, gets and deletes of the same block meet often.
    (0u8..12, 0u8..4, form).prop_map(|(data, hash, form)| Spec { data, hash, form })
}

fn op() -> impl Strategy<Value = Op> {
    let many = || prop::collection::vec(spec(), 0..8);
    prop_oneof![
        6 => spec().prop_map(Op::Put),
        1 => spec().prop_map(Op::PutData),
        4 => many().prop_map(Op::PutMany),
        3 => spec().prop_map(Op::Get),
        2 => many().prop_map(Op::GetMany),
        2 => spec().prop_map(Op::Has),
        2 => many().prop_map(Op::HasMany),
        2 => spec().prop_map(Op::GetSize),
        3 => spec().prop_map(Op::Delete),
        2 => many().prop_map(Op::DeleteMany),
        1 => any::<bool>().prop_map(Op::Reopen),
        2 => (1usize..6).prop_map(Op::List),
        1 => Just(Op::Flush),
        2 => Just(Op::Compact),
    ]
}

/// The model: stored multihash -> bytes. Identity blocks are never in it.
#[derive(Default)]
struct Model {
    blocks: HashMap<Vec<u8>, Bytes>,
}

fn is_identity(cid: &Cid) -> bool {
    cid.hash().code() == IDENTITY_CODE
}

impl Model {
    fn put(&mut self, block: &Block) {
        if !is_identity(block.cid()) {
            self.blocks
                .entry(key_of(block.cid()))
                .or_insert_with(|| block.data().clone());
        }
    }

    fn get(&self, cid: &Cid) -> Option<Bytes> {
        if is_identity(cid) {
            return Some(Bytes::copy_from_slice(cid.hash().digest()));
        }
        self.blocks.get(&key_of(cid)).cloned()
    }

    fn delete(&mut self, cid: &Cid) -> bool {
        !is_identity(cid) && self.blocks.remove(&key_of(cid)).is_some()
    }

    fn listing(&self) -> HashSet<Cid> {
        self.blocks.keys().map(|k| cid_of_key(k).unwrap()).collect()
    }
}

/// Which tiers a run uses.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Tiers {
    /// Hot segments over the cold backend, segments small enough to roll over within a run.
    Hot,
    /// The cold backend alone.
    ColdOnly,
}

fn config(
    dir: &std::path::Path,
    backend: BackendKind,
    explicit_shards: bool,
    tiers: Tiers,
    driver: IoDriver,
) -> Config {
    let mut config = Config::new(dir);
    config.io_driver = driver;
    config.max_block_size = 4096;
    config.hot_tier = match tiers {
        Tiers::Hot => Some(HotTier {
            segment_bytes: 16 << 10,
            budget_bytes: 8 * 2 * (16 << 10),
            // Blocks over 1 KiB stay in their segments as packs when they go cold, so the
            // sequences exercise packs, their reclamation and their reopening; smaller ones
            // are copied into the backend.
            inline_threshold_bytes: 1024,
            ..HotTier::default()
        }),
        Tiers::ColdOnly => None,
    };
    config.backend = backend;
    config.shards = explicit_shards.then_some(8);
    // Small budgets: many engines are opened, and 8 shards share 2 cores.
    config.cache_bytes = 1 << 20;
    config.backend_cache_bytes = 8 << 20;
    config.bloom_expected_items = 8 * 1024;
    config.blocking_threads_per_shard = 1;
    config
}

/// Every stored CID, page by page with `cid_page`, checking the pages' shape.
fn list_paged(engine: &Engine, limit: usize) -> Vec<Cid> {
    let store = engine.blocking();
    let mut out = Vec::new();
    let mut cursor = Some(Cursor::default());
    let mut pages = 0;
    while let Some(c) = cursor {
        let page = store.cid_page(c, limit).unwrap();
        assert!(page.cids.len() <= limit, "page larger than its limit");
        if page.next.is_some() {
            assert_eq!(page.cids.len(), limit, "a short page must be the last one");
        }
        out.extend(page.cids);
        cursor = page.next;
        pages += 1;
        assert!(pages < 10_000, "listing does not end");
    }
    out
}

fn check_listing(listed: Vec<Cid>, model: &Model) {
    for cid in &listed {
        assert_eq!(u64::from(cid.version()), 1, "listed {cid} is not CIDv1");
        assert_eq!(cid.codec(), Codec::Raw.code(), "listed {cid} is not raw");
    }
    let set: HashSet<Cid> = listed.iter().copied().collect();
    assert_eq!(set.len(), listed.len(), "a CID was listed twice");
    assert_eq!(set, model.listing());
}

fn check_stats(engine: &Engine, model: &Model, context: &str) {
    let stats = engine.blocking().stats().unwrap();
    assert_eq!(stats.blocks, model.blocks.len() as u64, "blocks {context}");
    let bytes: u64 = model.blocks.values().map(|v| v.len() as u64).sum();
    assert_eq!(stats.bytes, bytes, "bytes {context}");
    assert_eq!(stats.shards.len(), 8, "{context}");
    assert_eq!(
        stats.shards.iter().map(|s| s.blocks).sum::<u64>(),
        stats.blocks
    );
}

/// Runs `ops` against the model. The engine opens under `drivers[0]`; each reopen switches
/// to the other driver, so a store written under one is read and written under the other.
fn run(backend: BackendKind, tiers: Tiers, drivers: [IoDriver; 2], ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let mut opens = 0;
    let mut driver = || {
        opens += 1;
        drivers[(opens - 1) % 2]
    };
    let mut engine = Engine::open(config(dir.path(), backend, true, tiers, driver())).unwrap();
    if drivers[0] != IoDriver::Auto {
        assert_eq!(engine.io_driver(), drivers[0]);
    }
    assert_eq!(engine.shard_count(), 8);
    let mut model = Model::default();
    for (step, op) in ops.into_iter().enumerate() {
        let store = engine.blocking();
        let context = format!("after step {step}: {op:?}");
        match &op {
            Op::Put(s) => {
                let block = s.block();
                store.put(&block).unwrap();
                model.put(&block);
            }
            Op::PutData(s) => {
                let block = s.block();
                store.put_data(block.cid(), block.data().clone()).unwrap();
                model.put(&block);
            }
            Op::PutMany(specs) => {
                let blocks: Vec<Block> = specs.iter().map(Spec::block).collect();
                store.put_many(&blocks).unwrap();
                for block in &blocks {
                    model.put(block);
                }
            }
            Op::Get(s) => {
                let cid = s.cid();
                assert_eq!(store.get(&cid).unwrap(), model.get(&cid), "{context}");
            }
            Op::GetMany(specs) => {
                let cids: Vec<Cid> = specs.iter().map(Spec::cid).collect();
                let want: Vec<Option<Bytes>> = cids.iter().map(|c| model.get(c)).collect();
                assert_eq!(store.get_many(&cids).unwrap(), want, "{context}");
            }
            Op::Has(s) => {
                let cid = s.cid();
                assert_eq!(
                    store.has(&cid).unwrap(),
                    model.get(&cid).is_some(),
                    "{context}"
                );
            }
            Op::HasMany(specs) => {
                let cids: Vec<Cid> = specs.iter().map(Spec::cid).collect();
                let want: Vec<bool> = cids.iter().map(|c| model.get(c).is_some()).collect();
                assert_eq!(store.has_many(&cids).unwrap(), want, "{context}");
            }
            Op::GetSize(s) => {
                let cid = s.cid();
                let want = model.get(&cid).map(|v| v.len() as u64);
                assert_eq!(store.get_size(&cid).unwrap(), want, "{context}");
            }
            Op::Delete(s) => {
                let cid = s.cid();
                let want = model.delete(&cid);
                assert_eq!(store.delete(&cid).unwrap(), want, "{context}");
            }
            Op::DeleteMany(specs) => {
                let cids: Vec<Cid> = specs.iter().map(Spec::cid).collect();
                // In input order: a key named twice is reported present only the first time.
                let want: Vec<bool> = cids.iter().map(|c| model.delete(c)).collect();
                assert_eq!(store.delete_many(&cids).unwrap(), want, "{context}");
            }
            Op::Reopen(explicit) => {
                store.close().unwrap();
                drop(store);
                drop(engine);
                engine =
                    Engine::open(config(dir.path(), backend, *explicit, tiers, driver())).unwrap();
                assert_eq!(engine.shard_count(), 8, "{context}");
                assert_eq!(engine.config().shards, Some(8), "{context}");
                // Everything the model holds is readable again, byte for byte.
                let cids: Vec<Cid> = model.listing().into_iter().collect();
                let got = engine.blocking().get_many(&cids).unwrap();
                for (cid, got) in cids.iter().zip(got) {
                    assert_eq!(got, model.get(cid), "{cid} {context}");
                }
            }
            Op::List(limit) => {
                check_listing(list_paged(&engine, *limit), &model);
                let streamed: Vec<Cid> = store.cids().collect::<Result<_, _>>().unwrap();
                check_listing(streamed, &model);
            }
            Op::Flush => store.flush().unwrap(),
            Op::Compact => {
                let compacted = store.compact().unwrap();
                if tiers == Tiers::ColdOnly {
                    assert_eq!(compacted, 0, "{context}");
                }
                let stats = store.stats().unwrap();
                // Only blocks read since their write may stay hot.
                assert!(stats.hot_blocks <= stats.blocks, "{context}");
            }
        }
        check_stats(&engine, &model, &context);
    }
    // The end state, checked in full, then once more after a reopen.
    for round in 0..2 {
        let store = engine.blocking();
        check_listing(store.cids().collect::<Result<_, _>>().unwrap(), &model);
        check_stats(&engine, &model, &format!("at the end, round {round}"));
        if round == 0 {
            store.close().unwrap();
            drop(store);
            drop(engine);
            engine = Engine::open(config(dir.path(), backend, true, tiers, driver())).unwrap();
        }
    }
    engine.blocking().close().unwrap();
}

/// Opened under io_uring, reopened under the fallback, and so on.
const URING_FIRST: [IoDriver; 2] = [IoDriver::IoUring, IoDriver::Fallback];
/// Opened under the fallback, reopened under io_uring, and so on.
const FALLBACK_FIRST: [IoDriver; 2] = [IoDriver::Fallback, IoDriver::IoUring];

fn model_config() -> ProptestConfig {
    ProptestConfig {
        cases: 12,
        failure_persistence: None,
        max_shrink_iters: 64,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(model_config())]

    #[test]
    fn engine_over_sled_matches_the_model(ops in prop::collection::vec(op(), 1..40)) {
        run(BackendKind::Sled, Tiers::Hot, URING_FIRST, ops);
    }

    #[test]
    fn engine_over_sled_on_the_fallback_driver_matches_the_model(
        ops in prop::collection::vec(op(), 1..40)
    ) {
        run(BackendKind::Sled, Tiers::Hot, FALLBACK_FIRST, ops);
    }

    #[test]
    fn engine_over_sled_without_hot_tier_matches_the_model(
        ops in prop::collection::vec(op(), 1..40)
    ) {
        run(BackendKind::Sled, Tiers::ColdOnly, URING_FIRST, ops);
    }

    #[test]
    fn engine_over_paritydb_matches_the_model(ops in prop::collection::vec(op(), 1..40)) {
        run(BackendKind::ParityDb, Tiers::Hot, URING_FIRST, ops);
    }

    #[test]
    fn engine_over_paritydb_on_the_fallback_driver_matches_the_model(
        ops in prop::collection::vec(op(), 1..40)
    ) {
        run(BackendKind::ParityDb, Tiers::Hot, FALLBACK_FIRST, ops);
    }

    #[cfg(feature = "rocksdb")]
    #[test]
    fn engine_over_rocksdb_matches_the_model(ops in prop::collection::vec(op(), 1..40)) {
        run(BackendKind::RocksDb, Tiers::Hot, URING_FIRST, ops);
    }
}

/// With io_uring refused by seccomp (all three calls, as Docker's default profile refuses
/// them) in the thread that opens the engine, and so in its shard threads, the default
/// driver runs on the fallback and matches the model.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
#[test]
fn engine_with_io_uring_refused_matches_the_model() {
    std::thread::spawn(|| {
        common::seccomp::try_refuse(&common::seccomp::ALL_IO_URING, libc::EPERM).unwrap();
        let probe = tempfile::tempdir().unwrap();
        let engine = Engine::open(config(
            probe.path(),
            BackendKind::Sled,
            true,
            Tiers::Hot,
            IoDriver::Auto,
        ))
        .unwrap();
        assert_eq!(engine.io_driver(), IoDriver::Fallback);
        engine.blocking().close().unwrap();
        let mut runner = proptest::test_runner::TestRunner::new(model_config());
        runner
            .run(&prop::collection::vec(op(), 1..40), |ops| {
                run(BackendKind::Sled, Tiers::Hot, [IoDriver::Auto; 2], ops);
                Ok(())
            })
            .unwrap();
    })
    .join()
    .expect("the model run with io_uring refused failed");
}

/// The per-backend tests above cover exactly the backends this build includes.
#[test]
fn every_compiled_backend_is_modelled() {
    let mut modelled = vec![BackendKind::Sled, BackendKind::ParityDb];
    if cfg!(feature = "rocksdb") {
        modelled.push(BackendKind::RocksDb);
    }
    assert_eq!(ipfrs_storage::compiled_backends(), modelled);
}

/// The same bytes under raw, dag-pb and CIDv0 are one block; identity blocks store nothing.
/// A fixed sequence, so these facts are checked on every run, not only when generated.
#[test]
fn codecs_share_a_block_and_identity_stores_nothing() {
    for backend in ipfrs_storage::compiled_backends() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(config(
            dir.path(),
            backend,
            true,
            Tiers::Hot,
            IoDriver::IoUring,
        ))
        .unwrap();
        let store = engine.blocking();
        let raw = Spec {
            data: 5,
            hash: 0,
            form: Form::Raw,
        }
        .block();
        let pb = Spec {
            data: 5,
            hash: 0,
            form: Form::DagPb,
        }
        .block();
        let v0 = Spec {
            data: 5,
            hash: 0,
            form: Form::V0,
        }
        .block();
        assert_ne!(raw.cid(), pb.cid());
        store.put(&pb).unwrap();
        assert!(store.has(raw.cid()).unwrap());
        assert!(store.has(v0.cid()).unwrap());
        assert_eq!(store.get(raw.cid()).unwrap().as_ref(), Some(raw.data()));
        store.put(&raw).unwrap();
        let stats = store.stats().unwrap();
        assert_eq!((stats.blocks, stats.bytes), (1, raw.len() as u64));
        let listed: Vec<Cid> = store.cids().collect::<Result<_, _>>().unwrap();
        assert_eq!(listed, vec![*raw.cid()], "listing gives CIDv1 raw");

        let id = Spec {
            data: 7,
            hash: 0,
            form: Form::Identity,
        }
        .block();
        assert!(store.has(id.cid()).unwrap());
        assert_eq!(store.get(id.cid()).unwrap().as_ref(), Some(id.data()));
        assert_eq!(store.get_size(id.cid()).unwrap(), Some(id.len() as u64));
        store.put(&id).unwrap();
        store.put_many(&[id.clone(), id.clone()]).unwrap();
        let after = store.stats().unwrap();
        assert_eq!((after.blocks, after.bytes), (stats.blocks, stats.bytes));
        assert!(
            !store.delete(id.cid()).unwrap(),
            "identity blocks are never stored"
        );
        assert!(store.has(id.cid()).unwrap());

        assert!(store.delete(v0.cid()).unwrap());
        assert!(!store.has(pb.cid()).unwrap());
        assert!(!store.delete(raw.cid()).unwrap());
        assert_eq!(store.stats().unwrap().blocks, 0);
        store.close().unwrap();
    }
}
