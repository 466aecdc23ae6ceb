//! The `ColdBackend` contract, checked by one generic suite against every compiled backend.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use ipfrs_core_types::BackendKind;
use ipfrs_tiering::backends::{ParityDbBackend, SledBackend};
use ipfrs_tiering::{BackendOptions, ColdBackend, Error, open_backend};
use proptest::prelude::*;

fn options() -> BackendOptions {
    BackendOptions {
        cache_bytes: 1 << 20,
    }
}

/// A reopen right after a drop relies on `SledBackend::open` waiting out sled's lingering
/// file lock (seen about once in ten runs of this suite before it did).
fn open_sled(dir: &Path) -> SledBackend {
    SledBackend::open(dir, &options()).expect("open sled")
}

fn open_paritydb(dir: &Path) -> ParityDbBackend {
    std::fs::create_dir_all(dir).unwrap();
    ParityDbBackend::open(dir, &options()).expect("open parity-db")
}

#[cfg(feature = "rocksdb")]
fn open_rocksdb(dir: &Path) -> ipfrs_tiering::backends::RocksDbBackend {
    ipfrs_tiering::backends::RocksDbBackend::open(dir, &options()).expect("open rocksdb")
}

fn item(key: &[u8], value: &[u8]) -> (Vec<u8>, Bytes) {
    (key.to_vec(), Bytes::copy_from_slice(value))
}

/// Every (key, value length) the backend lists after `after`, in the order it lists them.
fn listing(b: &dyn ColdBackend, after: Option<&[u8]>) -> Vec<(Vec<u8>, u64)> {
    let mut out = Vec::new();
    b.iterate(after, &mut |k, v| {
        out.push((k.to_vec(), v.len() as u64));
        true
    })
    .unwrap();
    out
}

/// Reads every key of `model` and some absent ones, and the full listing, against the model.
fn assert_matches(b: &dyn ColdBackend, model: &BTreeMap<Vec<u8>, Vec<u8>>, absent: &[Vec<u8>]) {
    for (k, v) in model {
        assert_eq!(b.get(k).unwrap().as_deref(), Some(&v[..]), "get {k:?}");
        assert_eq!(b.size(k).unwrap(), Some(v.len() as u64), "size {k:?}");
        assert!(b.contains(k).unwrap(), "contains {k:?}");
    }
    for k in absent.iter().filter(|k| !model.contains_key(*k)) {
        assert_eq!(b.get(k).unwrap(), None, "get absent {k:?}");
        assert_eq!(b.size(k).unwrap(), None, "size absent {k:?}");
        assert!(!b.contains(k).unwrap(), "contains absent {k:?}");
    }
    let expected: Vec<(Vec<u8>, u64)> = model
        .iter()
        .map(|(k, v)| (k.clone(), v.len() as u64))
        .collect();
    assert_eq!(listing(b, None), expected, "full listing");
}

// ---- the generic suite ----

fn kind_is_reported<B: ColdBackend>(open: impl Fn(&Path) -> B, kind: BackendKind) {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(open(dir.path()).kind(), kind);
}

fn put_get_contains_size<B: ColdBackend>(open: impl Fn(&Path) -> B) {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    assert_eq!(b.get(b"a").unwrap(), None);
    assert_eq!(b.size(b"a").unwrap(), None);
    assert!(!b.contains(b"a").unwrap());
    b.put_batch(&[
        item(b"a", b"alpha"),
        item(b"b", b"bravo!"),
        item(b"c", &[7u8; 5000]),
    ])
    .unwrap();
    assert_eq!(b.get(b"a").unwrap().as_deref(), Some(&b"alpha"[..]));
    assert_eq!(b.get(b"b").unwrap().as_deref(), Some(&b"bravo!"[..]));
    assert_eq!(b.get(b"c").unwrap().as_deref(), Some(&[7u8; 5000][..]));
    assert_eq!(b.size(b"b").unwrap(), Some(6));
    assert_eq!(b.size(b"c").unwrap(), Some(5000));
    assert!(b.contains(b"c").unwrap());
    // Neighbours of stored keys (prefix, extension) are absent.
    for absent in [&b""[..], b"d", b"aa", b"\x00a", b"b\x00"] {
        assert_eq!(b.get(absent).unwrap(), None, "{absent:?}");
        assert!(!b.contains(absent).unwrap(), "{absent:?}");
        assert_eq!(b.size(absent).unwrap(), None, "{absent:?}");
    }
    // An empty batch is accepted and changes nothing.
    b.put_batch(&[]).unwrap();
    b.delete_batch(&[]).unwrap();
    assert_eq!(listing(&b, None).len(), 3);
}

fn delete_batch<B: ColdBackend>(open: impl Fn(&Path) -> B) {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    b.put_batch(&[item(b"k1", b"1"), item(b"k2", b"22"), item(b"k3", b"333")])
        .unwrap();
    // Deleting an absent key alongside present ones is not an error.
    b.delete_batch(&[b"k1".to_vec(), b"nope".to_vec(), b"k3".to_vec()])
        .unwrap();
    assert_eq!(b.get(b"k1").unwrap(), None);
    assert!(!b.contains(b"k3").unwrap());
    assert_eq!(b.size(b"k3").unwrap(), None);
    assert_eq!(b.get(b"k2").unwrap().as_deref(), Some(&b"22"[..]));
    assert_eq!(listing(&b, None), vec![(b"k2".to_vec(), 2)]);
    // Deleting only absent keys (including already deleted ones) is not an error either.
    b.delete_batch(&[b"k1".to_vec(), b"zzz".to_vec()]).unwrap();
    b.delete_batch(&[b"k2".to_vec()]).unwrap();
    assert_eq!(listing(&b, None), vec![]);
    // A deleted key can be stored again.
    b.put_batch(&[item(b"k1", b"again")]).unwrap();
    assert_eq!(b.get(b"k1").unwrap().as_deref(), Some(&b"again"[..]));
}

/// Keys chosen to catch non-bytewise orders: prefixes, 0x00 and 0xff bytes, length ties.
fn tricky_keys() -> Vec<Vec<u8>> {
    vec![
        vec![0x12, 0x20, 0xff],
        vec![0x01],
        vec![0xff],
        vec![0x12, 0x20],
        vec![0x00],
        vec![0x12],
        vec![0x12, 0x20, 0x00],
        vec![0x80, 0x00],
        vec![0x7f, 0xff, 0xff],
        vec![0x00, 0x00],
        vec![0x12, 0x1f, 0xff, 0xff],
    ]
}

fn iterate_ascending<B: ColdBackend>(open: impl Fn(&Path) -> B) {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    assert_eq!(listing(&b, None), vec![], "empty store lists nothing");
    let keys = tricky_keys();
    // Two batches, neither in order, so insertion order cannot pass for sorted order.
    let (first, second) = keys.split_at(5);
    for half in [second, first] {
        let items: Vec<_> = half
            .iter()
            .map(|k| (k.clone(), Bytes::from(vec![1u8; k.len() * 3 + 1])))
            .collect();
        b.put_batch(&items).unwrap();
    }
    let mut sorted = keys.clone();
    sorted.sort();
    let expected: Vec<_> = sorted
        .iter()
        .map(|k| (k.clone(), k.len() as u64 * 3 + 1))
        .collect();
    assert_eq!(listing(&b, None), expected);
}

fn iterate_after_is_exclusive<B: ColdBackend>(open: impl Fn(&Path) -> B) {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    let keys = tricky_keys();
    let items: Vec<_> = keys
        .iter()
        .map(|k| (k.clone(), Bytes::from_static(b"v")))
        .collect();
    b.put_batch(&items).unwrap();
    let mut sorted = keys.clone();
    sorted.sort();
    let names = |v: Vec<(Vec<u8>, u64)>| v.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    // After each stored key: exactly the keys strictly greater.
    for (i, k) in sorted.iter().enumerate() {
        assert_eq!(
            names(listing(&b, Some(k))),
            sorted[i + 1..].to_vec(),
            "after stored key {k:?}"
        );
    }
    // After keys that are not stored: the keys greater than them.
    for probe in [
        vec![],
        vec![0x00, 0x00, 0x00],
        vec![0x12, 0x20, 0x00, 0x00],
        vec![0x50],
        vec![0xff, 0x00],
        vec![0xff, 0xff, 0xff],
    ] {
        let want: Vec<_> = sorted.iter().filter(|k| **k > probe).cloned().collect();
        assert_eq!(
            names(listing(&b, Some(&probe))),
            want,
            "after absent {probe:?}"
        );
    }
    // After the last key: nothing.
    assert_eq!(listing(&b, Some(sorted.last().unwrap())), vec![]);
}

fn iterate_stops_early<B: ColdBackend>(open: impl Fn(&Path) -> B) {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    let items: Vec<_> = (0u8..20)
        .map(|i| (vec![i, i], Bytes::from(vec![i; 3])))
        .collect();
    b.put_batch(&items).unwrap();
    for stop_after in [1usize, 3, 19, 20] {
        let mut seen = Vec::new();
        b.iterate(None, &mut |k, _| {
            seen.push(k.to_vec());
            seen.len() < stop_after
        })
        .unwrap();
        // f is never called again once it returned false.
        assert_eq!(seen.len(), stop_after, "stop after {stop_after}");
        let want: Vec<_> = (0u8..stop_after as u8).map(|i| vec![i, i]).collect();
        assert_eq!(seen, want);
    }
    // Early stop combined with `after`.
    let mut seen = Vec::new();
    b.iterate(Some(&[5, 5]), &mut |k, _| {
        seen.push(k.to_vec());
        seen.len() < 2
    })
    .unwrap();
    assert_eq!(seen, vec![vec![6, 6], vec![7, 7]]);
}

fn reopen_keeps_flushed_writes<B: ColdBackend>(open: impl Fn(&Path) -> B) {
    let dir = tempfile::tempdir().unwrap();
    let mut model = BTreeMap::new();
    {
        let b = open(dir.path());
        let items: Vec<_> = (0u16..200)
            .map(|i| {
                let key = i.to_be_bytes().to_vec();
                let value = vec![(i % 251) as u8; usize::from(i % 97)];
                (key, Bytes::from(value))
            })
            .collect();
        b.put_batch(&items).unwrap();
        let deleted: Vec<Vec<u8>> = (0u16..200)
            .step_by(3)
            .map(|i| i.to_be_bytes().to_vec())
            .collect();
        b.delete_batch(&deleted).unwrap();
        b.put_batch(&[item(b"over", b"first")]).unwrap();
        b.put_batch(&[item(b"over", b"second value")]).unwrap();
        for (k, v) in &items {
            if !deleted.contains(k) {
                model.insert(k.clone(), v.to_vec());
            }
        }
        model.insert(b"over".to_vec(), b"second value".to_vec());
        b.flush().unwrap();
    }
    let absent: Vec<Vec<u8>> = (0u16..200)
        .step_by(3)
        .map(|i| i.to_be_bytes().to_vec())
        .collect();
    let b = open(dir.path());
    assert_matches(&b, &model, &absent);
    // Reopened store accepts writes.
    b.put_batch(&[item(b"new", b"n")]).unwrap();
    assert!(b.contains(b"new").unwrap());
    drop(b);
    // Twice, so a reopen does not only work on a freshly created store.
    let b = open(dir.path());
    model.insert(b"new".to_vec(), b"n".to_vec());
    assert_matches(&b, &model, &absent);
}

fn empty_value<B: ColdBackend>(open: impl Fn(&Path) -> B) {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = open(dir.path());
        b.put_batch(&[item(b"empty", b""), item(b"full", b"x")])
            .unwrap();
        assert_eq!(b.get(b"empty").unwrap().as_deref(), Some(&b""[..]));
        assert_eq!(b.size(b"empty").unwrap(), Some(0));
        assert!(b.contains(b"empty").unwrap());
        assert_eq!(
            listing(&b, None),
            vec![(b"empty".to_vec(), 0), (b"full".to_vec(), 1)]
        );
        b.flush().unwrap();
    }
    let b = open(dir.path());
    assert_eq!(b.get(b"empty").unwrap().as_deref(), Some(&b""[..]));
    assert!(b.contains(b"empty").unwrap());
    b.delete_batch(&[b"empty".to_vec()]).unwrap();
    assert!(!b.contains(b"empty").unwrap());
    assert_eq!(b.get(b"empty").unwrap(), None);
}

fn overwrite<B: ColdBackend>(open: impl Fn(&Path) -> B) {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path());
    b.put_batch(&[item(b"k", b"short")]).unwrap();
    b.put_batch(&[item(b"k", &[9u8; 300])]).unwrap();
    assert_eq!(b.get(b"k").unwrap().as_deref(), Some(&[9u8; 300][..]));
    assert_eq!(b.size(b"k").unwrap(), Some(300));
    b.put_batch(&[item(b"k", b"")]).unwrap();
    assert_eq!(b.size(b"k").unwrap(), Some(0));
    assert_eq!(listing(&b, None), vec![(b"k".to_vec(), 0)]);
}

// ---- model test ----

#[derive(Debug, Clone)]
enum Op {
    Put(Vec<(u8, Vec<u8>)>),
    Delete(Vec<u8>),
    Get(u8),
    Iterate { after: Option<u8>, limit: usize },
    Reopen,
}

/// A small key space (so puts, deletes and overwrites collide), with prefix relations.
fn key(i: u8) -> Vec<u8> {
    match i % 4 {
        0 => vec![i],
        1 => vec![i, 0],
        2 => vec![i / 2, 0xff],
        _ => vec![0x12, 0x20, i],
    }
}

fn op() -> impl Strategy<Value = Op> {
    let k = 0u8..24;
    prop_oneof![
        4 => prop::collection::vec((k.clone(), prop::collection::vec(any::<u8>(), 0..40)), 1..6)
            .prop_map(Op::Put),
        2 => prop::collection::vec(k.clone(), 1..5).prop_map(Op::Delete),
        2 => k.clone().prop_map(Op::Get),
        2 => (prop::option::of(k), 1usize..10).prop_map(|(after, limit)| Op::Iterate { after, limit }),
        1 => Just(Op::Reopen),
    ]
}

fn run_model<B: ColdBackend>(open: impl Fn(&Path) -> B, ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
    let mut backend = Some(open(dir.path()));
    for op in ops {
        let b = backend.as_ref().unwrap();
        match op {
            Op::Put(items) => {
                // A batch never carries a key twice (the engine collapses per key first).
                let mut batch: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
                for (k, v) in items {
                    batch.insert(key(k), v);
                }
                let items: Vec<_> = batch.iter().map(|(k, v)| item(k, v)).collect();
                b.put_batch(&items).unwrap();
                model.extend(batch);
            }
            Op::Delete(keys) => {
                let mut keys: Vec<Vec<u8>> = keys.into_iter().map(key).collect();
                keys.sort();
                keys.dedup();
                b.delete_batch(&keys).unwrap();
                for k in &keys {
                    model.remove(k);
                }
            }
            Op::Get(k) => {
                let k = key(k);
                let want = model.get(&k);
                assert_eq!(b.get(&k).unwrap().as_deref(), want.map(|v| &v[..]));
                assert_eq!(b.size(&k).unwrap(), want.map(|v| v.len() as u64));
                assert_eq!(b.contains(&k).unwrap(), want.is_some());
            }
            Op::Iterate { after, limit } => {
                let after = after.map(key);
                let mut seen = Vec::new();
                b.iterate(after.as_deref(), &mut |k, v| {
                    seen.push((k.to_vec(), v.len() as u64));
                    seen.len() < limit
                })
                .unwrap();
                let want: Vec<_> = model
                    .iter()
                    .filter(|(k, _)| after.as_ref().is_none_or(|a| *k > a))
                    .take(limit)
                    .map(|(k, v)| (k.clone(), v.len() as u64))
                    .collect();
                assert_eq!(seen, want, "iterate after {after:?} limit {limit}");
            }
            Op::Reopen => {
                b.flush().unwrap();
                drop(backend.take());
                backend = Some(open(dir.path()));
            }
        }
    }
    let all: Vec<Vec<u8>> = (0u8..24).map(key).collect();
    assert_matches(backend.as_ref().unwrap(), &model, &all);
}

fn model_config() -> ProptestConfig {
    ProptestConfig {
        cases: 24,
        failure_persistence: None,
        max_shrink_iters: 200,
        ..ProptestConfig::default()
    }
}

/// Instantiates the whole suite for one backend as a module of tests.
macro_rules! conformance {
    ($module:ident, $kind:expr, $open:path) => {
        mod $module {
            use super::*;

            #[test]
            fn kind_is_reported() {
                super::kind_is_reported($open, $kind);
            }
            #[test]
            fn put_get_contains_size() {
                super::put_get_contains_size($open);
            }
            #[test]
            fn delete_batch() {
                super::delete_batch($open);
            }
            #[test]
            fn iterate_ascending() {
                super::iterate_ascending($open);
            }
            #[test]
            fn iterate_after_is_exclusive() {
                super::iterate_after_is_exclusive($open);
            }
            #[test]
            fn iterate_stops_early() {
                super::iterate_stops_early($open);
            }
            #[test]
            fn reopen_keeps_flushed_writes() {
                super::reopen_keeps_flushed_writes($open);
            }
            #[test]
            fn empty_value() {
                super::empty_value($open);
            }
            #[test]
            fn overwrite() {
                super::overwrite($open);
            }

            proptest! {
                #![proptest_config(model_config())]
                #[test]
                fn matches_a_btreemap(ops in prop::collection::vec(op(), 1..40)) {
                    run_model($open, ops);
                }
            }
        }
    };
}

conformance!(sled, BackendKind::Sled, open_sled);
conformance!(paritydb, BackendKind::ParityDb, open_paritydb);
#[cfg(feature = "rocksdb")]
conformance!(rocksdb, BackendKind::RocksDb, open_rocksdb);

/// `open_backend` dispatches to every compiled backend, and refuses the others by name.
#[test]
fn open_backend_covers_every_compiled_kind() {
    let compiled = ipfrs_tiering::backends::compiled();
    assert!(compiled.contains(&BackendKind::Sled));
    assert!(compiled.contains(&BackendKind::ParityDb));
    assert_eq!(
        compiled.contains(&BackendKind::RocksDb),
        cfg!(feature = "rocksdb")
    );
    for kind in BackendKind::ALL {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("nested").join(kind.name());
        match open_backend(kind, &sub, &options()) {
            Ok(b) => {
                assert!(compiled.contains(&kind));
                assert_eq!(b.kind(), kind);
                b.put_batch(&[item(b"x", b"y")]).unwrap();
                assert_eq!(b.get(b"x").unwrap().as_deref(), Some(&b"y"[..]));
            }
            Err(Error::NotCompiled(k)) => {
                assert_eq!(k, kind);
                assert!(!compiled.contains(&kind));
            }
            Err(e) => panic!("{kind}: {e}"),
        }
    }
}
