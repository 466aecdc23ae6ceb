//! Stores of format 1 (cold backend values = the blocks' bytes) and `migrate`: the engine
//! refuses them with an error naming `ipfrs-store repo migrate`; `migrate` converts every
//! value into an inline index entry, checks each against its key, finishes after a crash at
//! any step, and leaves a current store alone.
//!
//! The format 1 stores are written directly, as format 1 code wrote them: `ipfrs.meta` with
//! `format=1`, and each shard's backend holding the raw bytes under the block's multihash.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use ipfrs_storage::key::{key_of, shard_of};
use ipfrs_storage::{
    BackendKind, Block, Config, Engine, Error, MigrateReport, ShardOutcome, migrate,
};
use ipfrs_tiering::pack::encode_inline;
use ipfrs_tiering::{BackendOptions, open_backend};

const SHARDS: usize = 3;
const KINDS: [BackendKind; 2] = [BackendKind::Sled, BackendKind::ParityDb];

fn blocks(count: usize, salt: u8) -> Vec<Block> {
    (0..count)
        .map(|i| {
            // Sizes from 0 to ~20 KiB, one of 200 KiB.
            let len = if i == 7 {
                200 << 10
            } else {
                (i * 797) % 20_000
            };
            let data: Vec<u8> = (0..len)
                .map(|j| (i * 131 + j * 7) as u8 ^ salt)
                .chain((i as u32).to_le_bytes())
                .collect();
            Block::new(data).unwrap()
        })
        .collect()
}

fn config(dir: &Path, kind: BackendKind) -> Config {
    let mut config = Config::new(dir);
    config.shards = Some(SHARDS);
    config.backend = kind;
    config.cache_bytes = 1 << 20;
    config.backend_cache_bytes = 4 << 20;
    config
}

fn options() -> BackendOptions {
    BackendOptions {
        cache_bytes: 1 << 20,
    }
}

fn backend_dir(dir: &Path, kind: BackendKind, shard: usize) -> PathBuf {
    dir.join(format!("shard-{shard:03}")).join(kind.name())
}

fn sibling(dir: &Path, kind: BackendKind, shard: usize, suffix: &str) -> PathBuf {
    dir.join(format!("shard-{shard:03}"))
        .join(format!("{}.{suffix}", kind.name()))
}

fn meta_text(kind: BackendKind, format: &str) -> String {
    format!("ipfrs-storage\nformat={format}\nbackend={kind}\nshards={SHARDS}\n")
}

/// Writes a format 1 store: its metadata, each shard's backend with the blocks' raw bytes
/// (plus `extra` raw values put as they are), and an `open-state` file per shard.
fn v1_store(dir: &Path, kind: BackendKind, all: &[Block], extra: &[(usize, Vec<u8>, Vec<u8>)]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("ipfrs.meta"), meta_text(kind, "1")).unwrap();
    for shard in 0..SHARDS {
        let backend = open_backend(kind, &backend_dir(dir, kind, shard), &options()).unwrap();
        let mut items: Vec<(Vec<u8>, Bytes)> = all
            .iter()
            .filter(|b| shard_of(b.cid(), SHARDS) == shard)
            .map(|b| (key_of(b.cid()), b.data().clone()))
            .collect();
        items.extend(
            extra
                .iter()
                .filter(|(s, _, _)| *s == shard)
                .map(|(_, k, v)| (k.clone(), Bytes::from(v.clone()))),
        );
        if !items.is_empty() {
            backend.put_batch(&items).unwrap();
        }
        backend.flush().unwrap();
        drop(backend);
        std::fs::write(
            dir.join(format!("shard-{shard:03}/open-state")),
            b"saved by v1",
        )
        .unwrap();
    }
}

/// Every key of one backend directory, with its value's digest.
fn contents(kind: BackendKind, path: &Path) -> BTreeMap<Vec<u8>, (usize, u64)> {
    let backend = open_backend(kind, path, &options()).unwrap();
    let mut out = BTreeMap::new();
    backend
        .iterate(None, &mut |k, v| {
            out.insert(k.to_vec(), digest(v));
            true
        })
        .unwrap();
    out
}

/// Asserts the store is fully converted: format 2, each shard's backend holds exactly
/// `encode_inline(key, data)` for `expected`'s blocks, no conversion leftovers, no open-state.
fn assert_converted(dir: &Path, kind: BackendKind, expected: &[Block]) {
    assert_eq!(
        std::fs::read_to_string(dir.join("ipfrs.meta")).unwrap(),
        meta_text(kind, "2")
    );
    for shard in 0..SHARDS {
        let want: BTreeMap<Vec<u8>, (usize, u64)> = expected
            .iter()
            .filter(|b| shard_of(b.cid(), SHARDS) == shard)
            .map(|b| {
                let key = key_of(b.cid());
                let value = digest(&encode_inline(&key, b.data()));
                (key, value)
            })
            .collect();
        assert_eq!(
            contents(kind, &backend_dir(dir, kind, shard)),
            want,
            "{kind} shard {shard}"
        );
        for suffix in ["migrating", "v1"] {
            assert!(!sibling(dir, kind, shard, suffix).exists(), "{suffix}");
        }
        assert!(!dir.join(format!("shard-{shard:03}/open-state")).exists());
    }
}

/// A short, comparable stand-in for bytes (failures print these, not megabytes).
fn digest(bytes: &[u8]) -> (usize, u64) {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    (bytes.len(), hasher.finish())
}

/// Every file under `dir` but the lock, with its length and hash.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (usize, u64)> {
    fn walk(root: &Path, path: &Path, out: &mut BTreeMap<PathBuf, (usize, u64)>) {
        for entry in std::fs::read_dir(path).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if path.file_name().unwrap() != "LOCK" {
                let rel = path.strip_prefix(root).unwrap().to_path_buf();
                out.insert(rel, digest(&std::fs::read(&path).unwrap()));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let dest = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &dest);
        } else {
            std::fs::copy(&path, &dest).unwrap();
        }
    }
}

fn assert_totals(report: &MigrateReport, all: &[Block]) {
    assert_eq!(report.blocks(), all.len() as u64);
    assert_eq!(
        report.bytes(),
        all.iter().map(|b| b.data().len() as u64).sum::<u64>()
    );
    assert_eq!(report.refused(), 0);
}

#[test]
fn a_v1_store_is_refused_with_the_command_that_converts_it() {
    let dir = tempfile::tempdir().unwrap();
    let all = blocks(20, 1);
    v1_store(dir.path(), BackendKind::Sled, &all, &[]);
    let before = snapshot(dir.path());
    let err = Engine::open(config(dir.path(), BackendKind::Sled))
        .err()
        .unwrap();
    match &err {
        Error::IncompatibleFormat {
            path,
            found,
            supported,
        } => {
            assert_eq!(path, dir.path());
            assert_eq!(found, "1");
            assert_eq!(*supported, 2);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string().contains("`ipfrs-store repo migrate`"),
        "{err}"
    );
    // A repair does not touch it either (it would take the raw values for the new format).
    assert!(matches!(
        ipfrs_storage::repair_cold(config(dir.path(), BackendKind::Sled)),
        Err(Error::IncompatibleFormat { .. })
    ));
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn migrate_turns_every_value_into_an_inline_entry_and_leaves_the_rest() {
    for kind in KINDS {
        let dir = tempfile::tempdir().unwrap();
        let all = blocks(60, 2);
        v1_store(dir.path(), kind, &all, &[]);
        // Hot segments, the space reserve and the metadata log do not change with the
        // format: whatever they hold is left byte for byte.
        let segments = dir.path().join("shard-001/segments");
        std::fs::create_dir_all(&segments).unwrap();
        std::fs::write(segments.join("00000003.seg"), b"a hot segment").unwrap();
        std::fs::write(segments.join("00000003.hint"), b"its hint").unwrap();
        std::fs::write(dir.path().join("shard-002/space.reserve"), [0u8; 4096]).unwrap();
        std::fs::write(dir.path().join("metadata.log"), b"log").unwrap();
        let kept = |snap: BTreeMap<PathBuf, (usize, u64)>| -> BTreeMap<PathBuf, (usize, u64)> {
            snap.into_iter()
                .filter(|(p, _)| {
                    let p = p.to_string_lossy();
                    p.contains("segments") || p.contains("space.reserve") || p == "metadata.log"
                })
                .collect()
        };
        let before = kept(snapshot(dir.path()));
        assert_eq!(before.len(), 4);

        let report = migrate(config(dir.path(), kind)).unwrap();
        assert_eq!(report.from, "1");
        assert_eq!(report.to, 2);
        assert!(!report.was_current());
        assert_eq!(report.shards.len(), SHARDS);
        for (i, shard) in report.shards.iter().enumerate() {
            assert_eq!(shard.shard, i);
            assert_eq!(shard.outcome, ShardOutcome::Copied);
            assert_eq!(shard.path, backend_dir(dir.path(), kind, i));
            assert_eq!(
                shard.blocks,
                all.iter()
                    .filter(|b| shard_of(b.cid(), SHARDS) == i)
                    .count() as u64
            );
            assert!(shard.unknown_loss.is_none());
        }
        assert_totals(&report, &all);
        assert_converted(dir.path(), kind, &all);
        assert_eq!(kept(snapshot(dir.path())), before, "{kind}");

        // Run again: the store is current, nothing changes.
        let before = snapshot(dir.path());
        let again = migrate(config(dir.path(), kind)).unwrap();
        assert!(again.was_current());
        assert_eq!(again.blocks(), 0);
        assert!(
            again
                .shards
                .iter()
                .all(|s| s.outcome == ShardOutcome::AlreadyDone)
        );
        assert_eq!(snapshot(dir.path()), before);
    }
}

/// The final behaviour: the engine serves every migrated block bit-exact.
#[test]
fn the_engine_reads_every_migrated_block_bit_exact() {
    for kind in KINDS {
        let dir = tempfile::tempdir().unwrap();
        let all = blocks(60, 3);
        v1_store(dir.path(), kind, &all, &[]);
        migrate(config(dir.path(), kind)).unwrap();
        let engine = Engine::open(config(dir.path(), kind)).unwrap();
        let store = engine.blocking();
        for block in &all {
            assert_eq!(
                store.get(block.cid()).unwrap().as_ref(),
                Some(block.data()),
                "{kind}"
            );
            assert!(store.has(block.cid()).unwrap());
        }
        assert_eq!(store.stats().unwrap().blocks, all.len() as u64);
        let absent = Block::new(&b"never stored"[..]).unwrap();
        assert_eq!(store.get(absent.cid()).unwrap(), None);
        store.close().unwrap();
    }
}

#[test]
fn a_value_that_does_not_match_its_key_is_refused_and_named() {
    let kind = BackendKind::Sled;
    let dir = tempfile::tempdir().unwrap();
    let all = blocks(30, 4);
    let (damaged, sound) = all.split_at(2);
    // The first two blocks are stored with a flipped byte; one key is not a multihash.
    let mut extra: Vec<(usize, Vec<u8>, Vec<u8>)> = damaged
        .iter()
        .map(|b| {
            let mut data = b.data().to_vec();
            data[0] ^= 0x40;
            (shard_of(b.cid(), SHARDS), key_of(b.cid()), data)
        })
        .collect();
    extra.push((1, b"not a multihash".to_vec(), b"whatever".to_vec()));
    v1_store(dir.path(), kind, sound, &extra);

    let report = migrate(config(dir.path(), kind)).unwrap();
    let mut refused: Vec<String> = report
        .shards
        .iter()
        .flat_map(|s| s.refused.iter().map(ToString::to_string))
        .collect();
    refused.sort();
    // Named as CIDv1 raw, which `Block::new` makes.
    let mut want: Vec<String> = damaged.iter().map(|b| b.cid().to_string()).collect();
    want.sort();
    assert_eq!(refused, want);
    assert_eq!(report.shards[1].refused_unnamed, 1);
    assert_eq!(report.refused(), 3);
    assert_eq!(report.blocks(), sound.len() as u64);
    assert_converted(dir.path(), kind, sound);
}

/// Runs a migration to the end on a twin of `dir` (same blocks) and returns its converted
/// shard backends' directory (the twin), so states can be built from the real output.
fn converted_twin(root: &Path, kind: BackendKind, all: &[Block]) -> PathBuf {
    let twin = root.join("twin");
    v1_store(&twin, kind, all, &[]);
    migrate(config(&twin, kind)).unwrap();
    twin
}

/// Each state a crash can leave (see `migrate.rs`), built on disk, is finished by a re-run.
#[test]
fn a_rerun_finishes_after_a_crash_at_any_step() {
    type Setup = fn(&Path, &Path, BackendKind);
    // (name, setup of shard 1 given the store and the converted twin, migrated count,
    // expected outcome of shard 1)
    let cases: Vec<(&str, Setup, usize, ShardOutcome)> = vec![
        (
            "meta marked, nothing else",
            |_, _, _| {},
            0,
            ShardOutcome::Copied,
        ),
        (
            "copy under way",
            |store, _, kind| {
                let partial = sibling(store, kind, 1, "migrating");
                let b = open_backend(kind, &partial, &options()).unwrap();
                b.put_batch(&[(b"partial".to_vec(), Bytes::from_static(b"junk"))])
                    .unwrap();
                b.flush().unwrap();
            },
            1,
            ShardOutcome::Copied,
        ),
        (
            "old moved aside, copy complete",
            |store, twin, kind| {
                std::fs::rename(backend_dir(store, kind, 1), sibling(store, kind, 1, "v1"))
                    .unwrap();
                copy_tree(
                    &backend_dir(twin, kind, 1),
                    &sibling(store, kind, 1, "migrating"),
                );
            },
            1,
            ShardOutcome::Finished,
        ),
        (
            "new in place, old not removed",
            |store, twin, kind| {
                std::fs::rename(backend_dir(store, kind, 1), sibling(store, kind, 1, "v1"))
                    .unwrap();
                copy_tree(&backend_dir(twin, kind, 1), &backend_dir(store, kind, 1));
            },
            1,
            ShardOutcome::Finished,
        ),
        (
            "new in place and counted, old not removed",
            |store, twin, kind| {
                std::fs::rename(backend_dir(store, kind, 1), sibling(store, kind, 1, "v1"))
                    .unwrap();
                copy_tree(&backend_dir(twin, kind, 1), &backend_dir(store, kind, 1));
            },
            2,
            ShardOutcome::AlreadyDone,
        ),
        (
            "only the old one, moved aside",
            |store, _, kind| {
                std::fs::rename(backend_dir(store, kind, 1), sibling(store, kind, 1, "v1"))
                    .unwrap();
            },
            1,
            ShardOutcome::Copied,
        ),
        (
            "shard done and counted, the last shard untouched",
            |store, twin, kind| {
                std::fs::remove_dir_all(backend_dir(store, kind, 1)).unwrap();
                copy_tree(&backend_dir(twin, kind, 1), &backend_dir(store, kind, 1));
                std::fs::remove_file(store.join("shard-001/open-state")).unwrap();
            },
            2,
            ShardOutcome::AlreadyDone,
        ),
    ];
    for kind in KINDS {
        let root = tempfile::tempdir().unwrap();
        let all = blocks(45, 5);
        let twin = converted_twin(root.path(), kind, &all);
        for (name, setup, migrated, outcome) in &cases {
            let store = root.path().join("store");
            v1_store(&store, kind, &all, &[]);
            // Shard 0 is converted (it comes before shard 1), as a run that reached
            // shard 1 left it.
            std::fs::remove_dir_all(backend_dir(&store, kind, 0)).unwrap();
            copy_tree(&backend_dir(&twin, kind, 0), &backend_dir(&store, kind, 0));
            std::fs::remove_file(store.join("shard-000/open-state")).unwrap();
            if *migrated == 0 {
                // Nothing converted yet: shard 0 is still old.
                std::fs::remove_dir_all(&store).unwrap();
                v1_store(&store, kind, &all, &[]);
            }
            std::fs::write(
                store.join("ipfrs.meta"),
                format!("{}migrated={migrated}\n", meta_text(kind, "1-to-2")),
            )
            .unwrap();
            setup(&store, &twin, kind);

            // No build opens the half-converted store; the message names the command.
            let refused = Engine::open(config(&store, kind)).err().unwrap();
            assert!(
                matches!(&refused, Error::IncompatibleFormat { found, .. } if found == "1-to-2")
                    && refused.to_string().contains("`ipfrs-store repo migrate`"),
                "{name}: {refused}"
            );

            let report = migrate(config(&store, kind)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(report.from, "1-to-2", "{name}");
            assert_eq!(report.shards[1].outcome, *outcome, "{kind} {name}");
            assert_eq!(report.shards[2].outcome, ShardOutcome::Copied, "{name}");
            assert_eq!(report.refused(), 0, "{name}");
            assert_converted(&store, kind, &all);
            std::fs::remove_dir_all(&store).unwrap();
        }
    }
}

#[test]
fn a_state_no_run_leaves_is_refused_and_left_alone() {
    let kind = BackendKind::Sled;
    let dir = tempfile::tempdir().unwrap();
    let all = blocks(10, 6);
    v1_store(dir.path(), kind, &all, &[]);
    std::fs::create_dir_all(sibling(dir.path(), kind, 0, "migrating")).unwrap();
    std::fs::create_dir_all(sibling(dir.path(), kind, 0, "v1")).unwrap();
    let before = snapshot(dir.path());
    match migrate(config(dir.path(), kind)) {
        Err(Error::UnexpectedFiles { reason, .. }) => {
            assert!(reason.contains("sled.migrating"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // Only the metadata changed (marked as under conversion), and shard 0's open-state is
    // untouched because the shard was refused before it.
    let after = snapshot(dir.path());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("ipfrs.meta")).unwrap(),
        format!("{}migrated=0\n", meta_text(kind, "1-to-2"))
    );
    let without_meta = |mut s: BTreeMap<PathBuf, (usize, u64)>| {
        s.remove(Path::new("ipfrs.meta"));
        s
    };
    assert_eq!(without_meta(after), without_meta(before));
}

#[test]
fn a_current_store_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let all = blocks(20, 7);
    let engine = Engine::open(config(dir.path(), BackendKind::Sled)).unwrap();
    let store = engine.blocking();
    store.put_many(&all).unwrap();
    store.close().unwrap();
    let before = snapshot(dir.path());
    let report = migrate(config(dir.path(), BackendKind::Sled)).unwrap();
    assert!(report.was_current());
    assert_eq!(report.from, "2");
    assert_eq!(report.shards.len(), SHARDS);
    assert_eq!(report.blocks(), 0);
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let root = tempfile::tempdir().unwrap();
    // No store at all: nothing is created.
    let absent = root.path().join("absent");
    assert!(matches!(
        migrate(config(&absent, BackendKind::Sled)),
        Err(Error::NotOurDirectory { .. })
    ));
    assert!(!absent.exists());
    let empty = root.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert!(matches!(
        migrate(config(&empty, BackendKind::Sled)),
        Err(Error::NotOurDirectory { .. })
    ));
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);

    // A format this build does not know.
    let future = root.path().join("future");
    v1_store(&future, BackendKind::Sled, &blocks(5, 8), &[]);
    std::fs::write(
        future.join("ipfrs.meta"),
        meta_text(BackendKind::Sled, "99"),
    )
    .unwrap();
    let before = snapshot(&future);
    match migrate(config(&future, BackendKind::Sled)) {
        Err(err @ Error::IncompatibleFormat { .. }) => {
            assert!(!err.to_string().contains("migrate"), "{err}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(snapshot(&future), before);

    // A store locked by someone else (an engine of the old build, say).
    let locked = root.path().join("locked");
    v1_store(&locked, BackendKind::Sled, &blocks(5, 9), &[]);
    let before = snapshot(&locked);
    let lock = File::create(locked.join("LOCK")).unwrap();
    lock.lock().unwrap();
    assert!(matches!(
        migrate(config(&locked, BackendKind::Sled)),
        Err(Error::Locked { .. })
    ));
    assert_eq!(snapshot(&locked), before);
    drop(lock);
    assert_eq!(
        migrate(config(&locked, BackendKind::Sled))
            .unwrap()
            .blocks(),
        5
    );
}
