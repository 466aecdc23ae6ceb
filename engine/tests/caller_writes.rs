//! Lone durable puts written on the caller's thread (`Config::caller_writes`) while other
//! threads' puts and deletes go through their shards' group commit, segments roll over and
//! compaction moves blocks: each thread reads back what it was told is stored (and not what it
//! deleted) at once, and the store holds exactly the model's blocks, with counts that agree,
//! before and after a reopen.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::{Arc, Barrier};

use bytes::Bytes;
use ipfrs_storage::{Block, Cid, Config, Durability, Engine, HotTier};
use rand::{Rng, SeedableRng};

const THREADS: u64 = 4;
const OPS: usize = 300;
/// Blocks each thread chooses among: puts of a stored block and deletes of an absent one
/// happen too.
const KEYS: u64 = 48;

fn config(dir: &std::path::Path, caller_writes: bool) -> Config {
    config_with(dir, caller_writes, Durability::Sync)
}

fn config_with(dir: &std::path::Path, caller_writes: bool, durability: Durability) -> Config {
    let mut config = Config::new(dir);
    config.shards = Some(2);
    config.durability = durability;
    config.caller_writes = caller_writes;
    config.max_block_size = 8 << 10;
    // Small segments and budget: lone puts meet full segments (which the shard rolls over)
    // and compaction steps (which take the writer back) all the time.
    config.hot_tier = Some(HotTier {
        segment_bytes: 64 << 10,
        budget_bytes: 4 * (64 << 10),
        inline_threshold_bytes: 1024,
        ..HotTier::default()
    });
    config.cache_bytes = 1 << 20;
    config.bloom_expected_items = 8 * 1024;
    config
}

/// Block `key` of thread `owner`: 100 B - 6 KiB, bytes fixed by the pair.
fn block(owner: u64, key: u64) -> Block {
    let len = 100 + ((owner * 7919 + key * 104_729) % 6000) as usize;
    let mut data = Vec::with_capacity(len);
    data.extend_from_slice(&owner.to_le_bytes());
    data.extend_from_slice(&key.to_le_bytes());
    data.resize(len, (owner * 31 + key) as u8);
    Block::new(data).unwrap()
}

/// One thread's run: its own keys, so its model is exact; lone puts, batches and deletes.
fn churn(engine: &Engine, owner: u64, seed: u64) -> HashMap<Cid, Bytes> {
    let store = engine.blocking();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ owner);
    let mut model: HashMap<Cid, Bytes> = HashMap::new();
    for step in 0..OPS {
        let b = block(owner, rng.random_range(0..KEYS));
        match rng.random_range(0..10) {
            0..=5 => {
                store.put(&b).unwrap();
                model.insert(*b.cid(), b.data().clone());
            }
            6 | 7 => {
                let more = block(owner, rng.random_range(0..KEYS));
                store.put_many(&[b.clone(), more.clone()]).unwrap();
                model.insert(*b.cid(), b.data().clone());
                model.insert(*more.cid(), more.data().clone());
            }
            _ => {
                let was = store.delete(b.cid()).unwrap();
                assert_eq!(
                    was,
                    model.remove(b.cid()).is_some(),
                    "thread {owner} step {step} (seed {seed}): delete's answer"
                );
            }
        }
        assert_eq!(
            store.get(b.cid()).unwrap().as_ref(),
            model.get(b.cid()),
            "thread {owner} step {step} (seed {seed}): read after write"
        );
    }
    model
}

fn assert_holds_exactly(engine: &Engine, model: &HashMap<Cid, Bytes>, context: &str) {
    let store = engine.blocking();
    for (cid, data) in model {
        assert_eq!(
            store.get(cid).unwrap().as_ref(),
            Some(data),
            "{context}: {cid}"
        );
    }
    let stats = store.stats().unwrap();
    assert_eq!(stats.blocks, model.len() as u64, "{context}: blocks");
    let bytes: u64 = model.values().map(|d| d.len() as u64).sum();
    assert_eq!(stats.bytes, bytes, "{context}: bytes");
}

/// Returns the puts written on the callers' threads.
fn campaign(caller_writes: bool) -> u64 {
    campaign_with(caller_writes, Durability::Sync)
}

fn campaign_with(caller_writes: bool, durability: Durability) -> u64 {
    let seed: u64 = rand::random();
    let dir = tempfile::tempdir().unwrap();
    let config = |dir: &std::path::Path, caller_writes| config_with(dir, caller_writes, durability);
    let engine = Engine::open(config(dir.path(), caller_writes)).unwrap();
    let start = Arc::new(Barrier::new(THREADS as usize));
    let threads: Vec<_> = (0..THREADS)
        .map(|owner| {
            let engine = engine.clone();
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                start.wait();
                churn(&engine, owner, seed)
            })
        })
        .collect();
    let mut model = HashMap::new();
    for thread in threads {
        model.extend(thread.join().unwrap());
    }
    let context = format!("caller_writes {caller_writes}, {durability:?}, seed {seed}");
    assert_holds_exactly(&engine, &model, &context);
    let lent = engine.blocking().stats().unwrap().caller_puts;
    engine.blocking().close().unwrap();
    let engine = Engine::open(config(dir.path(), caller_writes)).unwrap();
    assert_holds_exactly(&engine, &model, &format!("{context}, reopened"));
    // Writable again, on either path.
    let after = block(99, 0);
    engine.blocking().put(&after).unwrap();
    assert!(engine.blocking().has(after.cid()).unwrap());
    engine.blocking().close().unwrap();
    lent
}

#[test]
fn lone_puts_on_the_callers_thread_keep_every_promise() {
    let lent = campaign(true);
    eprintln!("{lent} lone puts on the callers' threads");
    assert!(lent > 0, "no lone put was written on its caller's thread");
}

#[test]
fn under_batch_lone_puts_take_the_callers_thread_too() {
    // With 4 threads the gathering window makes groups of several, which stop the lending:
    // the campaign checks the promises, a lone writer checks that the lane is taken.
    campaign_with(true, Durability::batch());
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(dir.path(), true, Durability::batch());
    let engine = Engine::open(config.clone()).unwrap();
    let blocks: Vec<Block> = (0..20).map(|i| block(7, i)).collect();
    for b in &blocks {
        engine.blocking().put(b).unwrap();
    }
    // The writer is lent from the start: at least the first put took the lane, without
    // waiting for the window.
    assert!(engine.blocking().stats().unwrap().caller_puts >= 1);
    engine.blocking().close().unwrap();
    let engine = Engine::open(config).unwrap();
    for b in &blocks {
        assert_eq!(
            engine.blocking().get(b.cid()).unwrap().as_ref(),
            Some(b.data())
        );
    }
    engine.blocking().close().unwrap();
}

#[test]
fn under_none_every_put_goes_to_its_shard() {
    assert_eq!(campaign_with(true, Durability::None), 0);
}

#[test]
fn without_caller_writes_every_put_goes_to_its_shard() {
    assert_eq!(campaign(false), 0);
}

/// Pages of `path`'s first `len` bytes in the page cache.
fn resident_pages(path: &std::path::Path, len: usize) -> usize {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(path).unwrap();
    let pages = len.div_ceil(4096);
    // SAFETY: a fresh read-only shared mapping of `len` bytes of an open file, unmapped
    // below; nothing reads through it (mincore only asks the kernel about its pages).
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    assert_ne!(map, libc::MAP_FAILED);
    let mut vec = vec![0u8; pages];
    // SAFETY: `map` is a mapping of `len` bytes and `vec` has one byte per page of it.
    let rc = unsafe { libc::mincore(map, len, vec.as_mut_ptr()) };
    // SAFETY: unmapping the mapping made above, of the same length.
    unsafe { libc::munmap(map, len) };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    vec.iter().filter(|&&b| b & 1 == 1).count()
}

/// A lone put written on the caller's thread is read back into the page cache as the shard's
/// writer reads back its groups (`HotTier::prefetch_written`), so the block's first read is
/// not a disk read; with the option off it is not (the write is O_DIRECT).
#[test]
fn lone_puts_are_read_back_as_the_writers_are() {
    for prefetch in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(dir.path(), true);
        config.shards = Some(1);
        config.max_block_size = 64 << 10;
        if let Some(hot) = &mut config.hot_tier {
            hot.prefetch_written = prefetch;
            hot.segment_bytes = 1 << 20;
            hot.budget_bytes = 8 << 20;
        }
        let engine = Engine::open(config).unwrap();
        let data: Vec<u8> = (0..60 << 10).map(|i: u32| (i * 7 % 251) as u8).collect();
        let block = Block::new(data).unwrap();
        engine.blocking().put(&block).unwrap();
        assert_eq!(engine.blocking().stats().unwrap().caller_puts, 1);
        // The readahead is asked for, not waited on.
        std::thread::sleep(std::time::Duration::from_millis(300));
        let segments = dir.path().join("shard-000").join("segments");
        let segment = std::fs::read_dir(&segments)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "seg"))
            .expect("a segment file");
        // The block's pages, but for the last partial one (the next append rewrites it).
        let resident = resident_pages(&segment, 56 << 10);
        if prefetch {
            assert!(resident >= 12, "{resident} of 14 pages read back");
        } else {
            assert_eq!(resident, 0, "pages read back with prefetch_written off");
        }
        engine.blocking().close().unwrap();
    }
}
