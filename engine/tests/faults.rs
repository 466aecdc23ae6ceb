//! Fault injection in the engine's file operations (the `failpoints` feature of
//! ipfrs-shards, enabled for these tests only): a failed fdatasync, a failed or short write,
//! and a full disk when a segment is allocated, and EIO on a cold-backend read. In every case the write is refused, nothing
//! unpersisted is acknowledged or served, the shard's earlier blocks stay readable, and after
//! a reopen (with the fault cleared) the store is whole and writable.
//!
//! Fail points are global to the process, so the scenarios run one after the other in a
//! single test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use ipfrs_storage::{Block, Config, Durability, Engine, Error, HotTier, IoDriver, PoisonCause};

fn config(dir: &Path, driver: IoDriver) -> Config {
    let mut config = Config::new(dir);
    config.io_driver = driver;
    config.shards = Some(1);
    config.durability = Durability::Sync;
    config.max_block_size = 64 << 10;
    config.hot_tier = Some(HotTier {
        segment_bytes: 256 << 10,
        budget_bytes: 64 << 20,
        ..HotTier::default()
    });
    config
}

fn block(i: usize, size: usize) -> Block {
    let data: Vec<u8> = (0..size).map(|j| (i * 17 + j * 5) as u8).collect();
    Block::new([data, (i as u64).to_le_bytes().to_vec()].concat()).unwrap()
}

/// What a fault must do to the write that meets it and to the shard.
struct Fault {
    point: &'static str,
    /// Whether the shard refuses later writes (a failed write or sync: the kernel may have
    /// dropped the data) or takes them again (a full disk: nothing was written).
    poisons: bool,
    /// Blocks stored before the fault, and their size: enough to make the faulty write need a
    /// new segment where that matters.
    before: usize,
    size: usize,
    /// Lone puts, one block each: written on the test's own thread while the shard is idle
    /// (`Config::caller_writes`), so the fault meets the caller's write, not the shard's.
    lone: bool,
}

fn run(fault: &Fault, driver: IoDriver) {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path(), driver)).unwrap();
    let store = engine.blocking();
    let stored: Vec<Block> = (0..fault.before).map(|i| block(i, fault.size)).collect();
    if fault.lone {
        for b in &stored {
            store.put(b).unwrap();
        }
        let lent = store.stats().unwrap().caller_puts;
        assert!(
            lent > 0,
            "{}: no lone put was written by its caller",
            fault.point
        );
        // The shard lends its writer again right after it answers; give it the moment.
        std::thread::sleep(std::time::Duration::from_millis(20));
    } else {
        store.put_many(&stored).unwrap();
    }

    fail::cfg(fault.point, "return").unwrap();
    let doomed = if fault.lone {
        vec![block(1000, fault.size)]
    } else {
        vec![block(1000, fault.size), block(1001, fault.size)]
    };
    let err = match &doomed[..] {
        [one] if fault.lone => store.put(one),
        _ => store.put_many(&doomed),
    }
    .expect_err("a write meeting a fault must fail");
    fail::remove(fault.point);
    // A poisoned shard names what failed, with the OS error as the source.
    match (&err, fault.poisons) {
        (
            Error::Poisoned {
                cause: PoisonCause::SegmentSync(_),
                ..
            },
            true,
        ) if fault.point == "hot-sync" => {}
        (
            Error::Poisoned {
                cause: PoisonCause::SegmentWrite(_),
                ..
            },
            true,
        ) if fault.point != "hot-sync" => {}
        (Error::NoSpace { .. }, false) => {}
        _ => panic!("{} ({driver}): unexpected error {err}", fault.point),
    }
    if let Error::Poisoned { cause, .. } = &err {
        assert!(
            std::error::Error::source(cause).is_some(),
            "{}: the cause keeps its source",
            fault.point
        );
        // The engine's error leads to the I/O error through its chain of causes.
        assert!(
            root_io_error(&err).is_some(),
            "{}: no I/O error under {err:?}",
            fault.point
        );
    }
    // Nothing of the failed write is served; everything before it is.
    for b in &doomed {
        assert!(
            !store.has(b.cid()).unwrap(),
            "{}: unacknowledged block served",
            fault.point
        );
    }
    for b in &stored {
        assert_eq!(
            store.get(b.cid()).unwrap().as_ref(),
            Some(b.data()),
            "{}",
            fault.point
        );
    }
    let later = block(2000, 100);
    let again = store.put(&later);
    assert_eq!(again.is_err(), fault.poisons, "{}: {again:?}", fault.point);
    assert_eq!(store.stats().unwrap().shards[0].read_only, fault.poisons);
    let _ = store.close();
    drop(store);
    drop(engine);

    // Reopened with the fault gone (and under the other driver): whole and writable.
    let other = match driver {
        IoDriver::Fallback => IoDriver::IoUring,
        _ => IoDriver::Fallback,
    };
    let engine = Engine::open(config(dir.path(), other)).unwrap();
    let store = engine.blocking();
    for b in &stored {
        assert_eq!(
            store.get(b.cid()).unwrap().as_ref(),
            Some(b.data()),
            "{}",
            fault.point
        );
    }
    assert_eq!(
        store.has(later.cid()).unwrap(),
        !fault.poisons,
        "{}",
        fault.point
    );
    let after = block(3000, 100);
    store.put(&after).unwrap();
    assert!(store.has(after.cid()).unwrap());
    // A failed write's bytes may have reached the disk; if recovery finds them they are whole
    // records, so reading them must never fail as corrupt.
    for b in &doomed {
        if let Some(got) = store.get(b.cid()).unwrap() {
            assert_eq!(got, b.data(), "{}", fault.point);
        }
    }
    store.close().unwrap();
}

#[test]
fn faults_refuse_the_write_and_keep_what_was_acknowledged() {
    let scenario = fail::FailScenario::setup();
    for fault in [
        Fault {
            point: "hot-sync",
            poisons: true,
            before: 5,
            size: 4000,
            lone: false,
        },
        Fault {
            point: "hot-write",
            poisons: true,
            before: 5,
            size: 4000,
            lone: false,
        },
        Fault {
            point: "hot-short-write",
            poisons: true,
            before: 5,
            size: 4000,
            lone: false,
        },
        // Three 60 KiB blocks fill most of a 256 KiB segment: two more need a new one.
        Fault {
            point: "hot-preallocate",
            poisons: false,
            before: 3,
            size: 60 << 10,
            lone: false,
        },
        // The same failures met by a lone put on the caller's thread.
        Fault {
            point: "hot-sync",
            poisons: true,
            before: 5,
            size: 4000,
            lone: true,
        },
        Fault {
            point: "hot-write",
            poisons: true,
            before: 5,
            size: 4000,
            lone: true,
        },
        Fault {
            point: "hot-short-write",
            poisons: true,
            before: 5,
            size: 4000,
            lone: true,
        },
    ] {
        for driver in [IoDriver::IoUring, IoDriver::Fallback] {
            run(&fault, driver);
        }
    }
    for driver in [IoDriver::IoUring, IoDriver::Fallback] {
        cold_read_fails_then_recovers(driver);
    }
    scenario.teardown();
}

/// EIO on a cold read: the read fails, serves and caches nothing, and the same blocks read
/// back exact once the fault clears, without a reopen.
fn cold_read_fails_then_recovers(driver: IoDriver) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), driver);
    config.hot_tier = None;
    let stored: Vec<Block> = (0..8).map(|i| block(i, 3000)).collect();
    let engine = Engine::open(config.clone()).unwrap();
    engine.blocking().put_many(&stored).unwrap();
    engine.blocking().close().unwrap();
    // Reopened: the block cache is empty, so every read goes to the backend.
    let store = Engine::open(config).unwrap().blocking();
    let cids: Vec<_> = stored.iter().map(|b| *b.cid()).collect();
    fail::cfg("cold-read", "return").unwrap();
    for cid in &cids[..4] {
        let err = store.get(cid).expect_err("a failed cold read must fail");
        assert!(
            matches!(&err, Error::Backend { source, .. }
                if matches!(**source, ipfrs_tiering::Error::Backend { .. })),
            "cold-read: {err}"
        );
        // The disk's own error is still there for a caller walking the causes.
        assert_eq!(
            root_io_error(&err).and_then(std::io::Error::raw_os_error),
            Some(libc::EIO),
            "cold-read: {err:?}"
        );
    }
    assert!(store.get_many(&cids).is_err());
    fail::remove("cold-read");
    for (b, got) in stored.iter().zip(store.get_many(&cids).unwrap()) {
        assert_eq!(got.as_deref(), Some(&b.data()[..]), "cold-read");
    }
    store.close().unwrap();
}

/// The deepest `io::Error` in `err`'s chain of causes (as such, or shared behind an `Arc`
/// where the error must be `Clone`).
fn root_io_error<'e>(err: &'e (dyn std::error::Error + 'static)) -> Option<&'e std::io::Error> {
    let mut found = None;
    let mut cause = Some(err);
    while let Some(e) = cause {
        let io = e.downcast_ref::<std::io::Error>().or_else(|| {
            e.downcast_ref::<std::sync::Arc<std::io::Error>>()
                .map(|shared| &**shared)
        });
        found = io.or(found);
        cause = e.source();
    }
    found
}
