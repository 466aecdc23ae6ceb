//! One engine shared by plain threads, a tokio runtime and a glommio executor; shutdown rules.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Barrier};

use bytes::Bytes;
use ipfrs_storage::{Block, BlockStore, Cid, Config, Cursor, Durability, Engine, Error};

/// A block whose bytes are determined by `(owner, index)`; lengths vary from 0 to ~3 KiB.
fn block(owner: u32, index: u32) -> Block {
    let len = (owner
        .wrapping_mul(7919)
        .wrapping_add(index.wrapping_mul(104_729))
        % 3000) as usize;
    let mut data = Vec::with_capacity(len + 8);
    data.extend_from_slice(&owner.to_le_bytes());
    data.extend_from_slice(&index.to_le_bytes());
    data.extend((0..len).map(|i| (i as u32 ^ owner ^ index.rotate_left(3)) as u8));
    Block::new(data).unwrap()
}

/// Blocks every worker writes: the overlapping set.
fn shared(index: u32) -> Block {
    block(u32::MAX, index)
}

const WORKERS_PER_KIND: u32 = 4;
const OWN: u32 = 60;
const SHARED: u32 = 25;
const EPHEMERAL: u32 = 10;

fn config(dir: &std::path::Path, shards: usize) -> Config {
    let mut config = Config::new(dir);
    config.shards = Some(shards);
    config.cache_bytes = 1 << 20;
    config.bloom_expected_items = 8 * 1024;
    config
}

/// Checks that none of `cids` is stored.
fn assert_none_present(engine: &Engine, cids: &[Cid]) {
    let present = engine.blocking().has_many(cids).unwrap();
    assert!(present.iter().all(|h| !h), "a deleted block is present");
}

/// Checks every block reads back bit-exact, the count of stored blocks and the listing.
fn assert_exactly(engine: &Engine, blocks: &BTreeMap<Cid, Bytes>) {
    let store = engine.blocking();
    let cids: Vec<Cid> = blocks.keys().copied().collect();
    let got = store.get_many(&cids).unwrap();
    for (cid, got) in cids.iter().zip(got) {
        assert_eq!(got.as_ref(), Some(&blocks[cid]), "{cid}");
    }
    assert!(store.has_many(&cids).unwrap().into_iter().all(|h| h));
    let stats = store.stats().unwrap();
    assert_eq!(stats.blocks, blocks.len() as u64);
    let bytes: u64 = blocks.values().map(|v| v.len() as u64).sum();
    assert_eq!(stats.bytes, bytes);
    let listed: BTreeSet<Cid> = store.cids().collect::<Result<_, _>>().unwrap();
    assert_eq!(listed, blocks.keys().copied().collect::<BTreeSet<_>>());
}

/// What one worker did: blocks it had acknowledged, blocks it put and deleted again.
#[derive(Default)]
struct Outcome {
    acknowledged: Vec<Block>,
    deleted: Vec<Cid>,
}

fn thread_worker(engine: Engine, owner: u32, start: Arc<Barrier>) -> Outcome {
    let store = engine.blocking();
    let mut out = Outcome::default();
    start.wait();
    for i in 0..OWN {
        let b = block(owner, i);
        if i % 5 == 0 {
            // Every fifth: a batch with a shared block in it.
            let pair = [b.clone(), shared(i % SHARED)];
            store.put_many(&pair).unwrap();
            out.acknowledged.extend(pair);
        } else {
            store.put(&b).unwrap();
            out.acknowledged.push(b.clone());
        }
        // Acknowledged means readable at once, from this thread.
        assert_eq!(store.get(b.cid()).unwrap().as_ref(), Some(b.data()));
        let s = shared((i * 3 + owner) % SHARED);
        store.put(&s).unwrap();
        out.acknowledged.push(s.clone());
        assert!(store.has(s.cid()).unwrap());
    }
    for i in 0..EPHEMERAL {
        let e = block(owner + 10_000, i);
        store.put(&e).unwrap();
        assert_eq!(store.get_size(e.cid()).unwrap(), Some(e.len() as u64));
        assert!(
            store.delete(e.cid()).unwrap(),
            "only this worker knows this block"
        );
        assert_eq!(store.get(e.cid()).unwrap(), None);
        out.deleted.push(*e.cid());
    }
    out
}

async fn tokio_worker(engine: Engine, owner: u32) -> Outcome {
    let mut out = Outcome::default();
    for i in 0..OWN {
        let b = block(owner, i);
        let s = shared((i * 5 + owner) % SHARED);
        if i % 4 == 0 {
            engine.put_many(&[s.clone(), b.clone()]).await.unwrap();
        } else {
            engine.put(&b).await.unwrap();
            engine.put(&s).await.unwrap();
        }
        out.acknowledged.extend([b.clone(), s.clone()]);
        let got = engine.get_many(&[*b.cid(), *s.cid()]).await.unwrap();
        assert_eq!(got, vec![Some(b.data().clone()), Some(s.data().clone())]);
        // Yield so tasks interleave on the runtime's workers.
        tokio::task::yield_now().await;
    }
    for i in 0..EPHEMERAL {
        let e = block(owner + 10_000, i);
        engine.put_data(e.cid(), e.data().clone()).await.unwrap();
        assert_eq!(
            engine.delete_many(&[*e.cid(), *e.cid()]).await.unwrap(),
            vec![true, false]
        );
        assert!(!engine.has(e.cid()).await.unwrap());
        out.deleted.push(*e.cid());
    }
    out
}

#[test]
fn threads_and_tokio_share_one_engine() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path(), 4)).unwrap();
    let start = Arc::new(Barrier::new(WORKERS_PER_KIND as usize + 1));
    let threads: Vec<_> = (0..WORKERS_PER_KIND)
        .map(|owner| {
            let engine = engine.clone();
            let start = Arc::clone(&start);
            std::thread::spawn(move || thread_worker(engine, owner, start))
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    start.wait();
    let tokio_outcomes: Vec<Outcome> = runtime.block_on(async {
        let tasks: Vec<_> = (0..WORKERS_PER_KIND)
            .map(|w| tokio::spawn(tokio_worker(engine.clone(), 100 + w)))
            .collect();
        let mut outs = Vec::new();
        for task in tasks {
            outs.push(task.await.unwrap());
        }
        outs
    });
    let mut outcomes: Vec<Outcome> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    outcomes.extend(tokio_outcomes);

    let mut expected: BTreeMap<Cid, Bytes> = BTreeMap::new();
    let mut deleted = Vec::new();
    for out in outcomes {
        for b in out.acknowledged {
            expected.insert(*b.cid(), b.data().clone());
        }
        deleted.extend(out.deleted);
    }
    // 8 workers x 60 own blocks, plus the shared set, each counted once.
    let distinct = (2 * WORKERS_PER_KIND * OWN + SHARED) as usize;
    assert_eq!(expected.len(), distinct);
    assert_exactly(&engine, &expected);
    assert_none_present(&engine, &deleted);

    engine.blocking().close().unwrap();
    drop(engine);
    let engine = Engine::open(config(dir.path(), 4)).unwrap();
    assert_exactly(&engine, &expected);
    assert_none_present(&engine, &deleted);
    // Runtime dropped after the engine: nothing in the engine depends on it.
    drop(runtime);
    engine.blocking().close().unwrap();
}

#[test]
fn engine_inside_a_users_glommio_executor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let executor = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(512 << 10)
        .make()
        .expect("the test's own glommio executor");
    let written: Vec<Block> = executor.run(async move {
        // Opened, used and closed on the executor's thread.
        let engine = Engine::open(config(&path, 3)).unwrap();
        let tasks: Vec<_> = (0..4u32)
            .map(|t| {
                let engine = engine.clone();
                glommio::spawn_local(async move {
                    let mut mine = Vec::new();
                    for i in 0..30 {
                        let b = block(500 + t, i);
                        engine.put(&b).await.unwrap();
                        assert_eq!(engine.get(b.cid()).await.unwrap().as_ref(), Some(b.data()));
                        mine.push(b);
                        if i % 10 == 0 {
                            glommio::yield_if_needed().await;
                        }
                    }
                    mine
                })
            })
            .collect();
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await);
        }
        let stats = engine.stats().await.unwrap();
        assert_eq!(stats.blocks, all.len() as u64);
        let mut stream = engine.cids();
        let mut listed = BTreeSet::new();
        while let Some(cid) = stream.next().await {
            listed.insert(cid.unwrap());
        }
        assert_eq!(listed, all.iter().map(|b| *b.cid()).collect());
        engine.close().await.unwrap();
        assert!(matches!(engine.has(all[0].cid()).await, Err(Error::Closed)));
        all
    });
    drop(executor);
    let engine = Engine::open(config(dir.path(), 3)).unwrap();
    let expected = written
        .iter()
        .map(|b| (*b.cid(), b.data().clone()))
        .collect();
    assert_exactly(&engine, &expected);
    engine.blocking().close().unwrap();
}

/// An engine opened outside glommio and used from inside a user's executor on another thread.
#[test]
fn engine_shared_with_a_glommio_executor_thread() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path(), 2)).unwrap();
    let inside = engine.clone();
    let handle = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(512 << 10)
        .spawn(move || async move {
            for i in 0..20 {
                inside.put(&block(900, i)).await.unwrap();
            }
        })
        .unwrap();
    for i in 0..20 {
        engine.blocking().put(&block(901, i)).unwrap();
    }
    handle.join().unwrap();
    let expected: BTreeMap<Cid, Bytes> = (0..20)
        .flat_map(|i| [block(900, i), block(901, i)])
        .map(|b| (*b.cid(), b.data().clone()))
        .collect();
    assert_exactly(&engine, &expected);
    engine.blocking().close().unwrap();
}

fn dropped_engine_keeps_writes(durability: Durability) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), 4);
    cfg.durability = durability;
    let mut expected = BTreeMap::new();
    {
        let engine = Engine::open(cfg.clone()).unwrap();
        let store = engine.blocking();
        for i in 0..40 {
            let b = block(7, i);
            store.put(&b).unwrap();
            expected.insert(*b.cid(), b.data().clone());
        }
        let gone = block(7, 0);
        assert!(store.delete(gone.cid()).unwrap());
        expected.remove(gone.cid());
        // A clone dropped early must not stop the engine.
        let clone = engine.clone();
        drop(clone);
        assert!(store.has(block(7, 1).cid()).unwrap());
        // No close, no flush: the last handles are simply dropped.
    }
    let engine = Engine::open(cfg).unwrap();
    assert_exactly(&engine, &expected);
    assert!(!engine.blocking().has(block(7, 0).cid()).unwrap());
}

#[test]
fn drop_without_close_keeps_acknowledged_writes() {
    dropped_engine_keeps_writes(Durability::default());
}

#[test]
fn drop_without_close_keeps_writes_acknowledged_before_sync() {
    // Durability::None acknowledges before any sync; an orderly drop still flushes them.
    dropped_engine_keeps_writes(Durability::None);
}

#[test]
fn close_is_idempotent_and_later_calls_fail_with_closed() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path(), 2)).unwrap();
    let clone = engine.clone();
    let stored = block(1, 1);
    engine.blocking().put(&stored).unwrap();
    // An identity CID: answered from the CID itself while open, refused once closed.
    let identity =
        ipfrs_storage::key::parse_cid_bytes(&[0x01, 0x55, 0x00, 0x02, 0xab, 0xcd]).unwrap();
    assert!(engine.blocking().has(&identity).unwrap());

    futures_lite::future::block_on(engine.close()).unwrap();
    futures_lite::future::block_on(engine.close()).unwrap();
    clone.blocking().close().unwrap();

    let closed = |r: Result<(), Error>, what: &str| match r {
        Err(Error::Closed) => {}
        other => panic!("{what} after close: {other:?}"),
    };
    for store in [engine.blocking(), clone.blocking()] {
        let cid = *stored.cid();
        closed(store.put(&stored), "put");
        closed(store.put(&block(1, 2)), "put of a new block");
        closed(store.put_many(&[block(1, 3)]), "put_many");
        closed(store.put_data(&cid, stored.data().clone()), "put_data");
        closed(store.get(&cid).map(drop), "get");
        closed(store.get_many(&[cid]).map(drop), "get_many");
        closed(store.has(&cid).map(drop), "has");
        closed(store.has(&identity).map(drop), "has(identity)");
        closed(store.has_many(&[cid]).map(drop), "has_many");
        closed(store.get_size(&cid).map(drop), "get_size");
        closed(store.delete(&cid).map(drop), "delete");
        closed(store.delete_many(&[cid]).map(drop), "delete_many");
        closed(store.stats().map(drop), "stats");
        closed(store.flush(), "flush");
        closed(store.cid_page(Cursor::default(), 10).map(drop), "cid_page");
        let listed: Vec<_> = store.cids().collect();
        assert!(
            matches!(listed.as_slice(), [Err(Error::Closed)]),
            "cids after close"
        );
        store.close().unwrap();
    }
    drop(engine);
    drop(clone);
    // Nothing was written after the close.
    let engine = Engine::open(config(dir.path(), 2)).unwrap();
    let expected = BTreeMap::from([(*stored.cid(), stored.data().clone())]);
    assert_exactly(&engine, &expected);
}

/// Writers racing a close: every call ends with success or `Closed` (no hang, no other
/// error), and every write that succeeded is there after a reopen.
#[test]
fn close_racing_writers_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path(), 4)).unwrap();
    let start = Arc::new(Barrier::new(4));
    let writers: Vec<_> = (0..3u32)
        .map(|w| {
            let store = engine.blocking();
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                start.wait();
                let mut acked = Vec::new();
                for i in 0.. {
                    let b = block(2000 + w, i);
                    match store.put(&b) {
                        Ok(()) => acked.push(b),
                        Err(Error::Closed) => return acked,
                        Err(e) => panic!("writer {w}: {e}"),
                    }
                }
                unreachable!()
            })
        })
        .collect();
    start.wait();
    // Let the writers get some writes in before closing (no timing is asserted).
    let probe = block(2000, 5);
    while !engine.blocking().has(probe.cid()).unwrap() {
        assert!(
            !writers[0].is_finished(),
            "writer 0 ended before its sixth write"
        );
        std::thread::yield_now();
    }
    engine.blocking().close().unwrap();
    let acked: Vec<Block> = writers
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert!(acked.len() >= 6);
    drop(engine);
    let engine = Engine::open(config(dir.path(), 4)).unwrap();
    let store = engine.blocking();
    let cids: Vec<Cid> = acked.iter().map(|b| *b.cid()).collect();
    for (b, got) in acked.iter().zip(store.get_many(&cids).unwrap()) {
        assert_eq!(got.as_ref(), Some(b.data()), "{}", b.cid());
    }
    // A single-block put refused with `Closed` never reached its shard before the shutdown,
    // so exactly the acknowledged blocks are stored.
    assert_eq!(store.stats().unwrap().blocks, acked.len() as u64);
    store.close().unwrap();
}

/// `close()` releases the directory lock even while clones of the engine are still alive, so
/// a closed store can be reopened at once.
#[test]
fn a_closed_engine_releases_its_directory() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path(), 2)).unwrap();
    let b = block(3, 3);
    engine.blocking().put(&b).unwrap();
    engine.blocking().close().unwrap();
    // `engine` is still alive (an embedder may keep handles in other structures).
    let reopened = Engine::open(config(dir.path(), 2)).expect("the store was closed");
    assert_eq!(
        reopened.blocking().get(b.cid()).unwrap().as_ref(),
        Some(b.data())
    );
    assert!(matches!(engine.blocking().has(b.cid()), Err(Error::Closed)));
    drop(engine);
    // Dropping the closed handle must not disturb the engine now open.
    assert!(reopened.blocking().has(b.cid()).unwrap());
    reopened.blocking().close().unwrap();
}
