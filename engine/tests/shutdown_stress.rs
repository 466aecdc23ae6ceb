//! Shutdown under load: plain threads and tokio tasks hammer one engine with puts, gets,
//! deletes and batches, some of their futures polled once and dropped midway, while the
//! engine is closed (or its last clone dropped) underneath them.
//!
//! Asserted: nothing hangs (every thread is joined with a stall limit), nothing panics,
//! every call ends in success or `Closed`, reads never return other bytes, and after a
//! reopen every block is where the acknowledged operations left it.
//!
//! The model, per block (each worker owns its blocks, so one block's operations come from
//! one worker, in order): an acknowledged put leaves it present, an acknowledged delete
//! absent. A call that was dropped or refused with `Closed` may or may not have taken
//! effect (its request may already be in the shard's queue, and a shard applies its queue
//! in order), so it leaves the block unknown unless it could not change the state (a put of
//! a present block, a delete of an absent one). Unknown blocks must read back exact or
//! absent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_lite::future::{block_on, poll_once};
use ipfrs_storage::{Block, BlockStore, Cid, Config, Durability, Engine, Error, HotTier};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Blocks each worker owns and works on.
const POOL: u32 = 32;
/// Operations each worker attempts (it stops early once the engine is closed).
const OPS: usize = 150;
const THREADS: u32 = 3;
const TASKS: u32 = 3;
/// How long without any call completing counts as a hang.
const STALL: Duration = Duration::from_secs(30);

/// Worker `owner`'s block `index`: 0 to ~6 KiB, bytes fixed by the pair.
fn block(owner: u32, index: u32) -> Block {
    let mut rng = StdRng::seed_from_u64(u64::from(owner) << 32 | u64::from(index));
    let len = rng.random_range(0..6 << 10) as usize;
    let mut data: Vec<u8> = (0..len).map(|_| rng.random::<u8>()).collect();
    data.extend_from_slice(&owner.to_le_bytes());
    data.extend_from_slice(&index.to_le_bytes());
    Block::new(data).unwrap()
}

/// Odd seeds group-commit (acknowledged after a sync), even ones acknowledge before any
/// sync (`Durability::None`): then only the clean shutdown makes the acknowledged writes
/// durable, which is what the reopen checks.
fn config(dir: &std::path::Path, seed: u64) -> Config {
    let mut config = Config::new(dir);
    config.shards = Some(3);
    config.cache_bytes = 256 << 10;
    config.max_block_size = 64 << 10;
    config.durability = if seed % 2 == 1 {
        Durability::Batch {
            max_delay: Duration::from_millis(1),
            max_ops: 16,
        }
    } else {
        Durability::None
    };
    // Small segments and budget: compaction runs during the load too.
    config.hot_tier = Some(HotTier {
        segment_bytes: 256 << 10,
        budget_bytes: 3 << 20,
        ..HotTier::default()
    });
    config
}

/// What one call did to the blocks it named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Put,
    Delete,
    /// Dropped midway or refused with `Closed`: a put that may or may not have happened.
    MaybePut,
    MaybeDelete,
}

/// Where the model says a block is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Absent,
    Present,
    Unknown,
}

impl State {
    fn after(self, effect: Effect) -> State {
        match (self, effect) {
            (_, Effect::Put) => State::Present,
            (_, Effect::Delete) => State::Absent,
            (State::Present, Effect::MaybePut) | (State::Absent, Effect::MaybeDelete) => self,
            _ => State::Unknown,
        }
    }
}

/// Shared tallies: calls acknowledged and completed (any outcome), workers finished.
#[derive(Default)]
struct Counts {
    acked: AtomicUsize,
    completed: AtomicUsize,
    done: AtomicUsize,
}

/// One worker's log: for each of its blocks, the effects in order; and its counts.
struct Log {
    owner: u32,
    effects: Vec<Vec<Effect>>,
    ok: usize,
    closed: usize,
    dropped: usize,
}

/// A worker's calls, one per step, against `engine`; `run` drives each future (to the end,
/// or one poll then drop when `once` is set). Returns after `OPS` steps, or a few steps
/// after the first `Closed` (later calls must all be `Closed` too).
async fn work<R>(engine: &Engine, owner: u32, seed: u64, counts: &Counts, run: R) -> Log
where
    R: AsyncRunner,
{
    let mut rng =
        StdRng::seed_from_u64(seed ^ u64::from(owner).wrapping_mul(0x5851_f42d_4c95_7f2d));
    let mut log = Log {
        owner,
        effects: vec![Vec::new(); POOL as usize],
        ok: 0,
        closed: 0,
        dropped: 0,
    };
    let mut after_close = 0;
    for _ in 0..OPS {
        if after_close >= 5 {
            break;
        }
        let once = rng.random_range(0..100) < 15;
        let picks: Vec<u32> = (0..1 + rng.random_range(0..4))
            .map(|_| rng.random_range(0..POOL))
            .collect();
        let blocks: Vec<Block> = picks.iter().map(|&i| block(owner, i)).collect();
        let cids: Vec<Cid> = blocks.iter().map(|b| *b.cid()).collect();
        // Any worker's block may be read: the answer must be absent or exact.
        let foreign = block(
            rng.random_range(0..(u64::from(THREADS + TASKS)).max(1)) as u32,
            rng.random_range(0..POOL),
        );
        let kind = rng.random_range(0..10);
        let outcome: Option<Result<(), Error>> = match kind {
            0..=2 => run
                .drive(engine.put(&blocks[0]), once)
                .await
                .map(|r| r.map(drop)),
            3 => run
                .drive(engine.put_many(&blocks), once)
                .await
                .map(|r| r.map(drop)),
            4 | 5 => run
                .drive(engine.delete(&cids[0]), once)
                .await
                .map(|r| r.map(drop)),
            6 => run
                .drive(engine.delete_many(&cids), once)
                .await
                .map(|r| r.map(drop)),
            7 => run
                .drive(engine.get_many(&[cids[0], *foreign.cid()]), once)
                .await
                .map(|r| {
                    r.map(|got| {
                        for (want, got) in [&blocks[0], &foreign].into_iter().zip(got) {
                            assert!(
                                got.is_none_or(|g| g == want.data()),
                                "worker {owner}: other bytes for {}",
                                want.cid()
                            );
                        }
                    })
                }),
            8 => run.drive(engine.get(foreign.cid()), once).await.map(|r| {
                r.map(|got| {
                    assert!(got.is_none_or(|g| g == foreign.data()), "other bytes");
                })
            }),
            _ => run
                .drive(engine.has(&cids[0]), once)
                .await
                .map(|r| r.map(drop)),
        };
        let write = match kind {
            0..=2 => Some((Effect::Put, Effect::MaybePut, &picks[..1])),
            3 => Some((Effect::Put, Effect::MaybePut, &picks[..])),
            4 | 5 => Some((Effect::Delete, Effect::MaybeDelete, &picks[..1])),
            6 => Some((Effect::Delete, Effect::MaybeDelete, &picks[..])),
            _ => None,
        };
        counts.completed.fetch_add(1, Ordering::Relaxed);
        let acknowledged = match outcome {
            None => {
                log.dropped += 1;
                false
            }
            Some(Ok(())) => {
                log.ok += 1;
                counts.acked.fetch_add(1, Ordering::Relaxed);
                true
            }
            Some(Err(Error::Closed)) => {
                log.closed += 1;
                after_close += 1;
                false
            }
            Some(Err(e)) => panic!("worker {owner}: an error other than Closed: {e}"),
        };
        if after_close > 0 {
            assert!(
                !acknowledged,
                "worker {owner}: a call succeeded after a Closed"
            );
        }
        if let Some((sure, maybe, picked)) = write {
            for &i in picked {
                log.effects[i as usize].push(if acknowledged { sure } else { maybe });
            }
        }
    }
    log
}

/// Drives one engine future: to completion, or (`once`) one poll and a drop.
trait AsyncRunner {
    fn drive<T>(&self, f: impl Future<Output = T>, once: bool) -> impl Future<Output = Option<T>>;
}

/// On a tokio task: awaits (one poll is `poll_once`).
struct Await;

impl AsyncRunner for Await {
    async fn drive<T>(&self, f: impl Future<Output = T>, once: bool) -> Option<T> {
        if once {
            let out = poll_once(f).await;
            tokio::task::yield_now().await;
            out
        } else {
            Some(f.await)
        }
    }
}

/// On a plain thread: blocks on the future (the `work` future itself never waits on
/// anything else, so blocking inside it is what a plain-thread caller does).
struct Blocking;

impl AsyncRunner for Blocking {
    async fn drive<T>(&self, f: impl Future<Output = T>, once: bool) -> Option<T> {
        if once {
            block_on(poll_once(f))
        } else {
            Some(block_on(f))
        }
    }
}

/// How the engine goes away.
#[derive(Debug, Clone, Copy)]
enum Ending {
    /// Another thread calls `close()` once the workers have had `after` calls acknowledged.
    Close { after: usize },
    /// Every worker drops its clone when done, the test's own handle goes first: the last
    /// drop (on whichever thread) shuts the engine down. No call may see `Closed`.
    DropLastClone,
}

/// Waits for `handle`, failing the test with `what` if no call anywhere completed for
/// [`STALL`] (a hang). Progress, not total time, is watched: on this shared machine an
/// fsync can take far longer than usual, but no single call takes seconds.
fn join_by<T>(handle: std::thread::JoinHandle<T>, progress: &AtomicUsize, what: &str) -> T {
    let (mut seen, mut since) = (progress.load(Ordering::Relaxed), Instant::now());
    while !handle.is_finished() {
        let now = progress.load(Ordering::Relaxed);
        if now != seen {
            (seen, since) = (now, Instant::now());
        }
        assert!(
            since.elapsed() < STALL,
            "{what}: no call completed for {STALL:?}: a hang"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    match handle.join() {
        Ok(value) => value,
        Err(_) => panic!("{what} panicked"),
    }
}

/// One iteration; returns (calls acknowledged, closed, dropped).
fn iteration(seed: u64, ending: Ending) -> (usize, usize, usize) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let engine = Engine::open(config(&dir, seed)).unwrap();
    let counts = Arc::new(Counts::default());

    let mut threads = Vec::new();
    for owner in 0..THREADS {
        let (engine, counts) = (engine.clone(), Arc::clone(&counts));
        threads.push(std::thread::spawn(move || {
            let log = block_on(work(&engine, owner, seed, &counts, Blocking));
            drop(engine);
            counts.done.fetch_add(1, Ordering::Relaxed);
            log
        }));
    }
    let tasks = {
        let (engine, counts) = (engine.clone(), Arc::clone(&counts));
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .build()
                .unwrap();
            runtime.block_on(async move {
                let handles: Vec<_> = (0..TASKS)
                    .map(|t| {
                        let (engine, counts) = (engine.clone(), Arc::clone(&counts));
                        tokio::spawn(async move {
                            // The clone is dropped on a runtime thread: with the drop
                            // ending, one of these may be the last and shut down the engine.
                            let log = work(&engine, THREADS + t, seed, &counts, Await).await;
                            drop(engine);
                            counts.done.fetch_add(1, Ordering::Relaxed);
                            log
                        })
                    })
                    .collect();
                drop(engine);
                let mut logs = Vec::new();
                for handle in handles {
                    logs.push(handle.await.expect("a tokio worker panicked"));
                }
                logs
            })
        })
    };
    let closer = match ending {
        Ending::Close { after } => {
            let (engine, counts) = (engine.clone(), Arc::clone(&counts));
            let closer = std::thread::spawn(move || {
                let workers = (THREADS + TASKS) as usize;
                while counts.acked.load(Ordering::Relaxed) < after
                    && counts.done.load(Ordering::Relaxed) < workers
                {
                    std::thread::sleep(Duration::from_micros(200));
                }
                block_on(engine.close())
            });
            Some(closer)
        }
        Ending::DropLastClone => None,
    };
    drop(engine);

    let mut logs: Vec<Log> = threads
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            join_by(
                t,
                &counts.completed,
                &format!("seed {seed:#x}: thread worker {i}"),
            )
        })
        .collect();
    logs.extend(join_by(
        tasks,
        &counts.completed,
        &format!("seed {seed:#x}: tokio workers"),
    ));
    if let Some(closer) = closer {
        join_by(
            closer,
            &counts.completed,
            &format!("seed {seed:#x}: close()"),
        )
        .expect("close()");
    }
    let (ok, closed, dropped) = logs.iter().fold((0, 0, 0), |(a, b, c), l| {
        (a + l.ok, b + l.closed, c + l.dropped)
    });
    if let Ending::DropLastClone = ending {
        assert_eq!(closed, 0, "seed {seed:#x}: Closed while clones were alive");
    }

    // Every clone is gone and the shards have stopped: the directory is free again.
    let engine = Engine::open(config(&dir, seed)).expect("reopen after the shutdown");
    let store = engine.blocking();
    let (mut present, mut unknown) = (0u64, 0u64);
    for log in &logs {
        for (index, effects) in log.effects.iter().enumerate() {
            let b = block(log.owner, index as u32);
            let state = effects.iter().fold(State::Absent, |s, &e| s.after(e));
            let got = store.get(b.cid()).unwrap();
            let what = format!(
                "seed {seed:#x} {ending:?}: block {} of worker {}",
                index, log.owner
            );
            match state {
                State::Present => {
                    present += 1;
                    assert_eq!(
                        got.as_ref(),
                        Some(b.data()),
                        "{what}: acknowledged put lost ({effects:?})"
                    );
                }
                State::Absent => assert_eq!(
                    got, None,
                    "{what}: acknowledged delete undone ({effects:?})"
                ),
                State::Unknown => {
                    unknown += 1;
                    assert!(got.is_none_or(|g| g == b.data()), "{what}: other bytes");
                }
            }
        }
    }
    let blocks = store.stats().unwrap().blocks;
    assert!(
        (present..=present + unknown).contains(&blocks),
        "seed {seed:#x}: {blocks} blocks stored, {present} known present, {unknown} unknown"
    );
    // Writable again.
    let fresh = block(999, 0);
    store.put(&fresh).unwrap();
    assert_eq!(store.get(fresh.cid()).unwrap().as_ref(), Some(fresh.data()));
    store.close().unwrap();
    (ok, closed, dropped)
}

#[test]
fn close_and_last_drop_under_load_lose_no_acknowledged_operation() {
    let started = Instant::now();
    let mut totals = (0, 0, 0);
    let mut iterations = 0;
    for seed in 1..=4u64 {
        let endings = [
            Ending::Close {
                after: 50 + (seed as usize * 97) % 300,
            },
            Ending::DropLastClone,
        ];
        for ending in endings {
            let (ok, closed, dropped) = iteration(seed, ending);
            println!(
                "shutdown stress seed {seed} {ending:?}: {ok} acknowledged, {closed} Closed, \
                 {dropped} dropped midway"
            );
            totals = (totals.0 + ok, totals.1 + closed, totals.2 + dropped);
            iterations += 1;
        }
    }
    println!(
        "shutdown stress: {iterations} iterations, {} acknowledged, {} Closed, {} dropped \
         midway, {:.1} s",
        totals.0,
        totals.1,
        totals.2,
        started.elapsed().as_secs_f64()
    );
    assert!(totals.2 > 0, "some futures were dropped midway");
    assert!(totals.1 > 0, "some calls raced the close");
}

/// A close while an explicit compaction works through many segments: the compaction's next
/// step is refused (`Closed`) rather than queued for a writer that will never run, so the
/// close ends cleanly (before, it waited out its 20 s bound and failed: `repo gc` on a full
/// disk, where one shard's compaction failed and the command closed the engine while the
/// other's went on). Every block reads back after a reopen.
#[test]
fn a_close_during_an_explicit_compaction_ends_it_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let make = || {
        let mut config = Config::new(dir.path());
        config.shards = Some(2);
        config.max_block_size = 64 << 10;
        config.hot_tier = Some(HotTier {
            segment_bytes: 256 << 10,
            // Nothing goes cold until asked: the explicit compaction has every segment to do.
            budget_bytes: 1 << 30,
            keep_hot_reads: 0,
            ..HotTier::default()
        });
        config
    };
    let blocks: Vec<Block> = (0..600u32)
        .map(|i| {
            Block::new(
                vec![(i % 251) as u8; 20 << 10]
                    .into_iter()
                    .chain(i.to_le_bytes())
                    .collect::<Vec<u8>>(),
            )
            .unwrap()
        })
        .collect();
    for round in 0..3u64 {
        let engine = Engine::open(make()).unwrap();
        if round == 0 {
            for chunk in blocks.chunks(50) {
                block_on(engine.put_many(chunk)).unwrap();
            }
        }
        let compacting = {
            let engine = engine.clone();
            std::thread::spawn(move || block_on(engine.compact()))
        };
        // Let the compaction get under way (a few segments), then close under it.
        std::thread::sleep(Duration::from_millis(20 + 30 * round));
        block_on(engine.close()).unwrap();
        match compacting.join().unwrap() {
            Ok(_) | Err(Error::Closed) => {}
            Err(e) => panic!("round {round}: compaction ended with {e}"),
        }
        let engine = Engine::open(make()).unwrap();
        let store = engine.blocking();
        for block in blocks.iter().step_by(7) {
            assert_eq!(store.get(block.cid()).unwrap().as_ref(), Some(block.data()));
        }
        drop(store);
        block_on(engine.close()).unwrap();
    }
}
