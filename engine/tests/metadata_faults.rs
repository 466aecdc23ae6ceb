//! Fault injection in the metadata log's file operations (the `fail` crate's `failpoints`
//! feature, on for the engine's tests only): a failed or cut-short append, a failed fdatasync,
//! and each step of a rewrite (writing the new log, the rename, the directory sync, reopening
//! the renamed log). In every case the log poisons itself: later changes are refused with
//! `Error::MetadataPoisoned` naming the failure, reads of acknowledged values keep working, and
//! after a reopen (fault cleared) every acknowledged value is there, no refused change is, and
//! the store takes changes again.
//!
//! Fail points are global to the process, so the scenarios run one after the other in a
//! single test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;

use futures_lite::future::block_on;
use ipfrs_storage::{BlockStore, Config, Engine, Error, MetadataStore, Swap};

fn config(dir: &Path) -> Config {
    let mut config = Config::new(dir);
    config.shards = Some(1);
    config
}

/// Near the largest value: a handful of swaps of one key pass the log's rewrite threshold
/// (1 MiB, four times the live bytes).
const BIG: usize = 60 << 10;

/// Where the fault strikes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stage {
    /// The append of a change (write or fdatasync): that change fails.
    Append,
    /// The rewrite that a change sets off once the log is mostly dead records: that change is
    /// already durable in the log, so it is acknowledged, and the changes after it are refused.
    Rewrite,
}

struct Fault {
    point: &'static str,
    stage: Stage,
    /// The operation the poisoned error must name.
    operation: &'static str,
}

const FAULTS: &[Fault] = &[
    Fault {
        point: "metadata-write",
        stage: Stage::Append,
        operation: "write",
    },
    Fault {
        point: "metadata-sync",
        stage: Stage::Append,
        operation: "fdatasync",
    },
    Fault {
        point: "metadata-rewrite",
        stage: Stage::Rewrite,
        operation: "write",
    },
    Fault {
        point: "metadata-rename",
        stage: Stage::Rewrite,
        operation: "rename",
    },
    Fault {
        point: "metadata-sync-dir",
        stage: Stage::Rewrite,
        operation: "directory sync",
    },
    Fault {
        point: "metadata-reopen",
        stage: Stage::Rewrite,
        operation: "reopen",
    },
];

fn swap(
    engine: &Engine,
    key: &str,
    expected: Option<&[u8]>,
    new: Option<&[u8]>,
) -> Result<Swap, Error> {
    block_on(engine.meta_compare_and_swap(key.as_bytes(), expected, new))
}

fn assert_poisoned(err: &Error, fault: &Fault, what: &str) {
    match err {
        Error::MetadataPoisoned {
            operation, source, ..
        } => {
            assert_eq!(
                *operation, fault.operation,
                "{}: {what}: {err}",
                fault.point
            );
            assert_eq!(
                source.raw_os_error(),
                Some(libc::EIO),
                "{}: {what}: {err}",
                fault.point
            );
        }
        other => panic!(
            "{}: {what}: expected MetadataPoisoned, got {other}",
            fault.point
        ),
    }
}

/// Every acknowledged value, read back through the engine, and nothing else under `k/`.
fn assert_holds(engine: &Engine, model: &BTreeMap<String, Vec<u8>>, fault: &Fault, when: &str) {
    let listed: BTreeMap<String, Vec<u8>> = block_on(engine.meta_list(b"k/"))
        .unwrap_or_else(|e| panic!("{}: {when}: list: {e}", fault.point))
        .into_iter()
        .map(|(k, v)| (String::from_utf8(k).unwrap(), v.to_vec()))
        .collect();
    assert_eq!(&listed, model, "{}: {when}: listed values", fault.point);
    for (key, value) in model {
        let got = block_on(engine.meta_get(key.as_bytes())).unwrap();
        assert_eq!(
            got.as_deref(),
            Some(&value[..]),
            "{}: {when}: {key}",
            fault.point
        );
    }
}

fn run(fault: &Fault) {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    let mut model: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for i in 0..5u8 {
        let key = format!("k/small{i}");
        assert_eq!(
            swap(&engine, &key, None, Some(&[i; 3])).unwrap(),
            Swap::Done
        );
        model.insert(key, vec![i; 3]);
    }
    // A deleted key must stay deleted through the fault and the reopen.
    assert_eq!(
        swap(&engine, "k/small4", Some(&[4; 3]), None).unwrap(),
        Swap::Done
    );
    model.remove("k/small4");

    fail::cfg(fault.point, "return").unwrap();
    match fault.stage {
        Stage::Append => {
            let err = swap(&engine, "k/small0", Some(&[0; 3]), Some(b"refused")).unwrap_err();
            assert_poisoned(&err, fault, "the failing swap");
        }
        Stage::Rewrite => {
            // Rewrite the same key with large values until the log passes its threshold: each
            // swap is durable before the rewrite it may set off, so each is acknowledged, and
            // the first one after the failed rewrite is refused.
            let mut current: Option<Vec<u8>> = None;
            let refused = (0u8..40).find_map(|i| {
                let next = vec![i; BIG];
                match swap(&engine, "k/big", current.as_deref(), Some(&next)) {
                    Ok(Swap::Done) => {
                        model.insert("k/big".into(), next.clone());
                        current = Some(next);
                        None
                    }
                    Ok(conflict) => panic!("{}: {conflict:?}", fault.point),
                    Err(e) => Some((i, e)),
                }
            });
            let (i, err) = refused.expect("the log never reached its rewrite threshold");
            assert!(i > 1, "{}: refused before any rewrite: {err}", fault.point);
            assert_poisoned(&err, fault, "the swap after the failed rewrite");
        }
    }
    fail::remove(fault.point);

    // With the fault gone the log stays poisoned: every change is refused, whatever its kind.
    let err = swap(&engine, "k/new", None, Some(b"later")).unwrap_err();
    assert_poisoned(&err, fault, "a later insert");
    let err = swap(&engine, "k/small1", Some(&[1; 3]), None).unwrap_err();
    assert_poisoned(&err, fault, "a later delete");
    // Reads of what was acknowledged keep working.
    assert_holds(&engine, &model, fault, "poisoned");
    block_on(engine.close()).unwrap();

    // Reopened: acknowledged values whole, refused changes absent, writable again.
    let engine = Engine::open(config(dir.path())).unwrap();
    assert_holds(&engine, &model, fault, "reopened");
    assert!(
        !dir.path().join("metadata.tmp").exists(),
        "{}: the rewrite's temporary file survived a reopen",
        fault.point
    );
    assert_eq!(
        swap(&engine, "k/new", None, Some(b"after")).unwrap(),
        Swap::Done
    );
    model.insert("k/new".into(), b"after".to_vec());
    block_on(engine.close()).unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    assert_holds(&engine, &model, fault, "reopened twice");
    block_on(engine.close()).unwrap();
}

#[test]
fn a_failed_write_sync_or_rename_poisons_the_metadata_log() {
    for fault in FAULTS {
        run(fault);
    }
}
