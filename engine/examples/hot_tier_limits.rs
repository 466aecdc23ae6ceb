//! Two measurements of the hot tier that ipfrs-bench's rounds cannot make: recovery time per
//! GiB of hot data, and peak memory while ingesting millions of blocks under a memory budget.
//!
//! ```text
//! cargo run --release -p ipfrs-storage --example hot_tier_limits -- recovery [GiB] [dir] [block bytes]
//! cargo run --release -p ipfrs-storage --example hot_tier_limits -- memory [blocks] [dir]
//! cargo run --release -p ipfrs-storage --example hot_tier_limits -- space [GiB] [dir] [block bytes]
//! cargo run --release -p ipfrs-storage --example hot_tier_limits -- cold-reads [GiB] [dir] [block bytes]
//! cargo run --release -p ipfrs-storage --example hot_tier_limits -- crash-open [GiB] [dir] [block bytes]
//! ```
//! Blocks are 256 KiB unless `block bytes` says otherwise (4096: blocks above the engine's
//! inline threshold, which stay in packs, but small enough that the index holds an entry
//! per 4 KiB of data).
//! `space` ingests GiB of 256 KiB blocks under a 256 MiB hot budget (most of it goes cold, into
//! packs), deletes 30% of them, compacts (as `repo gc` does) and prints the disk the store takes
//! against its live bytes, and the engine's write amplification, for sled and parity-db.
//! `recovery` ingests GiB of 256 KiB blocks and times reopening with the page cache dropped
//! (root only: /proc/sys/vm/drop_caches) and warm, three ways: all in the hot tier, nearly all
//! in packs (a 128 MiB hot budget, compacted), and with the hot tier off (every block in the
//! backend); each from the state the clean close saved and without it (as after a crash: the
//! open walks the cold keys).
//! `cold-reads` ingests GiB of 256 KiB blocks under a 128 MiB hot budget (nearly all of them
//! end up in packs), closes, and times single gets of 256 random blocks on one thread, first
//! with the page cache dropped (root only), then again warm: what ipfrs-bench, whose data
//! stays in the page cache, cannot show of a read from disk.
//! `crash-open` ingests GiB of blocks under a 128 MiB hot budget and compacts (nearly all of
//! them end up in packs), then three times lets a child process open the store, waits until
//! every shard of the child has written a checkpoint, kills it with SIGKILL and times the
//! reopen: with the page cache dropped (root only) and warm from the checkpoint, and warm with
//! the checkpoint removed (the walk an open after a crash made before checkpoints).
//! `memory` ingests `blocks` 1 KiB blocks (generated on the fly, batches of 256) with a 256 MiB
//! budget (cache 128 MiB, backend cache 64 MiB, hot budget 1 GiB of disk) and prints the peak
//! resident memory (VmHWM) next to the budget and the hot index's own size.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Instant;

use ipfrs_storage::fs::disk_usage;
use ipfrs_storage::{BackendKind, Block, Config, Durability, Engine, HotTier};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("recovery");
    if mode == "checkpoint-child" {
        checkpoint_child(Path::new(&args[2]));
        return;
    }
    let dir = args
        .get(3)
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(dir).unwrap();
    let size: usize = args.get(4).map_or(256 << 10, |s| s.parse().unwrap());
    match mode {
        "recovery" => {
            let gib: f64 = args.get(2).map_or(1.0, |s| s.parse().unwrap());
            recovery(dir.path(), gib, size);
        }
        "memory" => {
            let blocks: usize = args.get(2).map_or(2_000_000, |s| s.parse().unwrap());
            memory(dir.path(), blocks);
        }
        "space" => {
            let gib: f64 = args.get(2).map_or(2.0, |s| s.parse().unwrap());
            space(dir.path(), gib, size);
        }
        "cold-reads" => {
            let gib: f64 = args.get(2).map_or(1.0, |s| s.parse().unwrap());
            cold_reads(dir.path(), gib, size);
        }
        "crash-open" => {
            let gib: f64 = args.get(2).map_or(2.0, |s| s.parse().unwrap());
            crash_open(dir.path(), gib, size);
        }
        other => panic!("unknown mode {other}: recovery, memory, space, cold-reads or crash-open"),
    }
}

fn block(i: usize, size: usize) -> Block {
    let mut data = vec![0u8; size];
    let seed = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for (j, chunk) in data.chunks_mut(8).enumerate() {
        let v = seed ^ (j as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        chunk.copy_from_slice(&v.to_le_bytes()[..chunk.len()]);
    }
    Block::new(data).unwrap()
}

fn drop_caches() -> bool {
    // Flush dirty pages first so dropping really empties the cache.
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

fn recovery(root: &Path, gib: f64, size: usize) {
    let count = ((gib * (1u64 << 30) as f64) / size as f64) as usize;
    // "hot": everything in hot segments; "packs": the default hot tier over a 128 MiB budget,
    // compacted, so nearly everything is in packs indexed by sled; "cold": no hot tier, every
    // block in sled.
    for tier in ["hot", "packs", "cold"] {
        let hot = tier != "cold";
        let dir = root.join(tier);
        let mut config = Config::new(&dir);
        // Batch (the default): sealed segments are synced, so they get their hint files.
        config.durability = Durability::default();
        let budget = if tier == "packs" {
            128 << 20
        } else {
            4 * (gib * (1u64 << 30) as f64) as u64 + (1 << 30)
        };
        config.hot_tier = hot.then(|| HotTier {
            budget_bytes: budget,
            prefetch_written: false,
            ..HotTier::default()
        });
        let engine = Engine::open(config.clone()).unwrap();
        let store = engine.blocking();
        ingest(&store, count, size);
        if tier == "packs" {
            store.compact().unwrap();
        }
        let stats = store.stats().unwrap();
        let hot_gib = stats.hot_bytes as f64 / (1u64 << 30) as f64;
        let all_gib = stats.bytes as f64 / (1u64 << 30) as f64;
        store.close().unwrap();
        drop(store);
        drop(engine);
        // Each reopen closes cleanly again, so each finds a saved open state unless it is
        // removed first: "walk" is an open after a crash (minus the hot segments' scan).
        for (cold_cache, walk) in [(true, true), (true, false), (false, true), (false, false)] {
            if walk {
                remove_open_states(&dir);
            }
            let dropped = cold_cache && drop_caches();
            if cold_cache && !dropped {
                println!("(page cache not dropped: not root)");
            }
            let started = Instant::now();
            let engine = Engine::open(config.clone()).unwrap();
            let took = started.elapsed().as_secs_f64();
            let stats = engine.blocking().stats().unwrap();
            assert_eq!(stats.blocks, count as u64);
            engine.blocking().close().unwrap();
            let per_gib = took / all_gib;
            println!(
                "{tier:5}: reopen of {count} blocks ({all_gib:.2} GiB, {hot_gib:.2} GiB hot), \
                 page cache {}, {}: {took:.3} s = {per_gib:.3} s/GiB ({} cold keys walked)",
                if dropped { "dropped" } else { "warm   " },
                if walk {
                    "no saved state"
                } else {
                    "saved state   "
                },
                stats.keys_walked_at_open,
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// Puts blocks `0..count` of `size` bytes, 32 per call.
fn cold_reads(root: &Path, gib: f64, size: usize) {
    let count = ((gib * (1u64 << 30) as f64) / size as f64) as usize;
    for kind in [BackendKind::ParityDb, BackendKind::Sled] {
        let dir = root.join(kind.name());
        let mut config = Config::new(&dir);
        config.backend = kind;
        config.hot_tier = Some(HotTier {
            budget_bytes: 128 << 20,
            prefetch_written: false,
            ..HotTier::default()
        });
        {
            let engine = Engine::open(config.clone()).unwrap();
            let store = engine.blocking();
            ingest(&store, count, size);
            store.compact().unwrap();
            store.close().unwrap();
        }
        // The same random blocks each pass (a fixed odd stride over the block numbers).
        let picks: Vec<ipfrs_storage::Cid> = (0..256)
            .map(|i| *block((i * 2_654_435_761usize) % count, size).cid())
            .collect();
        for cache in ["dropped", "warm"] {
            if cache == "dropped" && !drop_caches() {
                println!("(page cache not dropped: not root)");
            }
            let engine = Engine::open(config.clone()).unwrap();
            let store = engine.blocking();
            let started = Instant::now();
            for cid in &picks {
                let got = store.get(cid).unwrap().expect("stored");
                assert_eq!(got.len(), size);
            }
            let took = started.elapsed().as_secs_f64();
            let hot = store.stats().unwrap().hot_blocks;
            store.close().unwrap();
            println!(
                "cold-reads {}: {count} blocks ({hot} hot), page cache {cache}: {:.0} gets/s \
                 ({:.0} MiB/s, {:.2} ms each)",
                kind.name(),
                picks.len() as f64 / took,
                picks.len() as f64 * size as f64 / (1 << 20) as f64 / took,
                took * 1000.0 / picks.len() as f64,
            );
        }
    }
}

fn crash_open_config(dir: &Path) -> Config {
    let mut config = Config::new(dir);
    config.hot_tier = Some(HotTier {
        budget_bytes: 128 << 20,
        prefetch_written: false,
        ..HotTier::default()
    });
    config
}

/// The child of `crash-open`: opens the store, waits until every shard has written a
/// checkpoint, says so, and waits to be killed.
fn checkpoint_child(dir: &Path) {
    let engine = Engine::open(crash_open_config(dir)).unwrap();
    let store = engine.blocking();
    loop {
        let stats = store.stats().unwrap();
        if stats.shards.iter().all(|s| s.checkpoints > 0) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    println!("checkpointed");
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

fn crash_open(root: &Path, gib: f64, size: usize) {
    use std::io::BufRead;
    let count = ((gib * (1u64 << 30) as f64) / size as f64) as usize;
    let dir = root.join("store");
    {
        let engine = Engine::open(crash_open_config(&dir)).unwrap();
        let store = engine.blocking();
        ingest(&store, count, size);
        store.compact().unwrap();
        store.close().unwrap();
    }
    for (cache, checkpoint) in [("dropped", true), ("warm", true), ("warm", false)] {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["checkpoint-child", dir.to_str().unwrap()])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        for line in out.lines() {
            if line.unwrap() == "checkpointed" {
                break;
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        if !checkpoint {
            remove_open_states(&dir);
        }
        if cache == "dropped" && !drop_caches() {
            println!("(page cache not dropped: not root)");
        }
        let started = Instant::now();
        let engine = Engine::open(crash_open_config(&dir)).unwrap();
        let took = started.elapsed().as_secs_f64();
        let stats = engine.blocking().stats().unwrap();
        assert_eq!(stats.blocks, count as u64);
        engine.blocking().close().unwrap();
        println!(
            "crash-open: {count} blocks of {size} bytes ({:.2} GiB, {:.2} GiB hot), SIGKILL, \
             page cache {cache:7}, {}: reopen {took:.3} s ({} cold keys walked)",
            stats.bytes as f64 / (1u64 << 30) as f64,
            stats.hot_bytes as f64 / (1u64 << 30) as f64,
            if checkpoint {
                "from the checkpoint"
            } else {
                "checkpoint removed "
            },
            stats.keys_walked_at_open,
        );
    }
}

fn ingest(store: &ipfrs_storage::BlockingStore, count: usize, size: usize) {
    let blocks: Vec<usize> = (0..count).collect();
    for chunk in blocks.chunks(32) {
        let batch: Vec<Block> = chunk.iter().map(|&i| block(i, size)).collect();
        store.put_many(&batch).unwrap();
    }
}

fn space(root: &Path, gib: f64, size: usize) {
    let count = ((gib * (1u64 << 30) as f64) / size as f64) as usize;
    for backend in [
        ipfrs_storage::BackendKind::Sled,
        ipfrs_storage::BackendKind::ParityDb,
    ] {
        let dir = root.join(backend.name());
        let mut config = Config::new(&dir);
        config.backend = backend;
        config.hot_tier = Some(HotTier {
            budget_bytes: 256 << 20,
            prefetch_written: false,
            ..HotTier::default()
        });
        let engine = Engine::open(config.clone()).unwrap();
        let store = engine.blocking();
        ingest(&store, count, size);
        let ingested = store.stats().unwrap();
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        println!(
            "{}: ingested {:.0} MiB: disk {:.0} MiB ({:.2}x), write amplification {:.2}, {} packs",
            backend.name(),
            mib(ingested.bytes),
            mib(disk_usage(&dir).unwrap()),
            disk_usage(&dir).unwrap() as f64 / ingested.bytes as f64,
            ingested.write_amplification,
            ingested.packs
        );
        let doomed: Vec<_> = (0..count)
            .filter(|i| i % 10 < 3)
            .map(|i| *block(i, size).cid())
            .collect();
        for chunk in doomed.chunks(256) {
            store.delete_many(chunk).unwrap();
        }
        store.compact().unwrap();
        let after = store.stats().unwrap();
        store.close().unwrap();
        let used = disk_usage(&dir).unwrap();
        println!(
            "{}: after deleting 30% and compacting: live {:.0} MiB, disk {:.0} MiB ({:.2}x the \
             live data), {} packs ({:.0} MiB on disk, {:.0} MiB live), {} reclaimed",
            backend.name(),
            mib(after.bytes),
            mib(used),
            used as f64 / after.bytes as f64,
            after.packs,
            mib(after.pack_disk_bytes),
            mib(after.pack_live_bytes),
            after.shards.iter().map(|s| s.packs_reclaimed).sum::<u64>()
        );
        drop(store);
        drop(engine);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// Removes every shard's saved open state, so the next open walks the cold keys.
fn remove_open_states(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let state = entry.unwrap().path().join("open-state");
        if state.exists() {
            std::fs::remove_file(state).unwrap();
        }
    }
}

/// A field of /proc/self/status in KiB.
fn status_kib(field: &str) -> u64 {
    ipfrs_storage::proc_status::kib(field).unwrap_or(0)
}

fn vm_hwm_kib() -> u64 {
    status_kib("VmHWM:")
}

fn memory(root: &Path, count: usize) {
    let mut config = Config::new(root.join("store"));
    config.cache_bytes = 128 << 20;
    config.backend_cache_bytes = 64 << 20;
    config.bloom_expected_items = count as u64;
    config.hot_tier = Some(HotTier {
        budget_bytes: 1 << 30,
        prefetch_written: false,
        ..HotTier::default()
    });
    let budget = config.cache_bytes + config.backend_cache_bytes + (64 << 20);
    let before = vm_hwm_kib();
    let engine = Engine::open(config).unwrap();
    let store = engine.blocking();
    let started = Instant::now();
    let mut batch = Vec::with_capacity(256);
    let mut peak_index = 0;
    // Resident memory splits into anonymous memory (the engine's own: caches, index,
    // buffers, sled) and file pages mapped from the hot segments (page cache the kernel can
    // reclaim at any time). The peak of each is sampled every 64 batches.
    let mut peak_anon = 0;
    let mut peak_file = 0;
    for i in 0..count {
        batch.push(block(i, 1024));
        if batch.len() == 256 {
            store.put_many(&batch).unwrap();
            batch.clear();
            if i % (256 * 64) == 255 {
                peak_anon = peak_anon.max(status_kib("RssAnon:"));
                peak_file = peak_file.max(status_kib("RssFile:"));
            }
            if i % (256 * 1024) == 255 {
                let stats = store.stats().unwrap();
                peak_index = peak_index.max(stats.hot_index_bytes);
                println!(
                    "{:>9} blocks  {:>6.1} s  VmHWM {:>5} MiB  anon {:>5} MiB  file {:>5} MiB  hot index {:>4} MiB  hot {:>5} MiB  cold {:>5} MiB",
                    i + 1,
                    started.elapsed().as_secs_f64(),
                    vm_hwm_kib() / 1024,
                    status_kib("RssAnon:") / 1024,
                    status_kib("RssFile:") / 1024,
                    stats.hot_index_bytes >> 20,
                    stats.hot_bytes >> 20,
                    stats.cold_bytes >> 20,
                );
            }
        }
    }
    store.put_many(&batch).unwrap();
    let stats = store.stats().unwrap();
    peak_index = peak_index.max(stats.hot_index_bytes);
    let took = started.elapsed().as_secs_f64();
    let hwm = vm_hwm_kib();
    println!(
        "{count} blocks of 1 KiB in {took:.1} s ({:.0} blocks/s); peak RSS {} MiB, of which \
         anonymous (sampled) {} MiB and mapped segment pages (sampled) {} MiB (process before \
         open {} MiB); budget {} MiB (cache 128 + backend cache 64 + 64 for buffers, bloom and \
         the process) + hot index {} MiB at its peak, {:.1} bytes per hot block",
        count as f64 / took,
        hwm / 1024,
        peak_anon / 1024,
        peak_file / 1024,
        before / 1024,
        budget >> 20,
        peak_index >> 20,
        stats.hot_index_bytes as f64 / stats.hot_blocks.max(1) as f64,
    );
    store.close().unwrap();
}
