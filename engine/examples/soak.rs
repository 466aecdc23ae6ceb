//! Soak: millions of mixed operations under a memory budget, with compaction running all along.
//! Prints one line per window: throughput, p50/p99/max latency, resident memory (anonymous and
//! mapped segment pages), hot and cold bytes, compaction progress. Growth of memory or p99 over
//! the windows is what it is for.
//!
//! ```text
//! cargo run --release -p ipfrs-storage --example soak -- [ops] [dir] [threads] [budget MiB] [backend cache MiB|-] [backend]
//! ```
//! Defaults: 10,000,000 operations; 16 client threads (each op is a round trip, so threads
//! keep the shards busy); a pool of 400,000 block ids (1-8 KiB); 55% get, 30% put, 15%
//! delete; a 512 MiB memory budget split as block cache 1/8, cold-backend cache 1/8, the
//! hot tier's mapped pages 3/8 (its disk budget, so compaction never stops), the location
//! cache 1/16 (32 MiB: every id of the pool), and 5/16 left for the rest: requests in flight, compaction buffers, thread stacks, code and the allocator's
//! free lists (measured over 10M operations: sampled anonymous memory at most 253 MiB, the
//! two caches' 128 MiB included); durability None (single puts from a few threads would
//! otherwise each wait for an fdatasync, and the soak is about memory and latency over many
//! operations, not durability, which the crash tests cover). `IPFRS_SOAK_SLOW_MS=N` prints
//! every operation slower than N ms.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use ipfrs_storage::{Block, Config, Engine, HotTier};
use rand::{Rng, SeedableRng};

const POOL: u64 = 400_000;
const WINDOW_OPS: u64 = 500_000;

fn block(id: u64) -> Block {
    let len = 1024 + (id.wrapping_mul(2_654_435_761) % 7168) as usize;
    let mut data = vec![0u8; len];
    for (j, chunk) in data.chunks_mut(8).enumerate() {
        let v = id.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (j as u64);
        chunk.copy_from_slice(&v.to_le_bytes()[..chunk.len()]);
    }
    Block::new(data).unwrap()
}

fn status_kib(field: &str) -> u64 {
    ipfrs_storage::proc_status::kib(field).unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let total: u64 = args.get(1).map_or(10_000_000, |s| s.parse().unwrap());
    let root = args
        .get(2)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let threads: u64 = args.get(3).map_or(16, |s| s.parse().unwrap());
    let budget: u64 = args.get(4).map_or(512, |s| s.parse().unwrap()) << 20;
    let dir = tempfile::tempdir_in(root).unwrap();
    let mut config = Config::new(dir.path());
    config.cache_bytes = budget / 8;
    // sled 0.34 holds several times its cache_capacity (spacejam/sled#986, #1309): a fifth
    // argument sets the backend's cache alone, to measure how its memory follows it.
    config.backend_cache_bytes = args
        .get(5)
        .filter(|s| *s != "-")
        .map_or(budget / 8, |s| s.parse::<u64>().unwrap() << 20);
    config.location_cache_bytes = budget / 16;
    config.bloom_expected_items = POOL;
    if let Some(backend) = args.get(6) {
        config.backend = backend.parse().unwrap();
    }
    config.durability = ipfrs_storage::Durability::None;
    config.hot_tier = Some(HotTier {
        budget_bytes: budget / 8 * 3,
        segment_bytes: 32 << 20,
        ..HotTier::default()
    });
    let config_backend = config.backend;
    let engine = Engine::open(config).unwrap();
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    println!(
        "{:>10} {:>8} {:>9} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "ops",
        "secs",
        "ops/s",
        "p50 us",
        "p99 us",
        "max us",
        "anon MiB",
        "file MiB",
        "hot MiB",
        "cold MiB",
        "compacted"
    );
    // IPFRS_SOAK_SLOW_MS=N prints every operation slower than N ms, to find where stalls are.
    let slow = std::env::var("IPFRS_SOAK_SLOW_MS")
        .ok()
        .map(|ms| Duration::from_millis(ms.parse().unwrap()));
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let store = engine.blocking();
            let done = Arc::clone(&done);
            std::thread::spawn(move || {
                let mut rng = rand::rngs::StdRng::seed_from_u64(t);
                let mut hist = Histogram::<u64>::new(3).unwrap();
                let mut window = Vec::new();
                // The window (1-based) `hist` holds. Each operation goes to the window its
                // completion number falls in, so a thread closes its histogram when the count
                // moves on (before, only the thread that crossed a boundary closed its own, so
                // the others' histograms spanned several windows and repeated their maxima).
                let mut current = 1u64;
                while done.load(Ordering::Relaxed) < total {
                    let id = rng.random_range(0..POOL);
                    let roll: u32 = rng.random_range(0..100);
                    let began = Instant::now();
                    let op = if roll < 55 {
                        "get"
                    } else if roll < 85 {
                        "put"
                    } else {
                        "delete"
                    };
                    match op {
                        "get" => {
                            let cid = *block(id).cid();
                            if let Some(got) = store.get(&cid).unwrap() {
                                assert_eq!(got.len(), block(id).len());
                            }
                        }
                        "put" => store.put(&block(id)).unwrap(),
                        _ => {
                            store.delete(block(id).cid()).unwrap();
                        }
                    }
                    let took = began.elapsed();
                    if slow.is_some_and(|slow| took > slow) {
                        println!(
                            "slow: {op} of block {id} by thread {t}: {} ms, ended at {:.3} s",
                            took.as_millis(),
                            started.elapsed().as_secs_f64()
                        );
                    }
                    let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                    if n > total {
                        break;
                    }
                    let w = (n - 1) / WINDOW_OPS + 1;
                    if w != current {
                        if !hist.is_empty() {
                            window.push((current, hist.clone()));
                        }
                        hist.reset();
                        current = w;
                    }
                    let _ = hist.record(took.as_micros() as u64);
                }
                if !hist.is_empty() {
                    window.push((current, hist));
                }
                window
            })
        })
        .collect();
    // The reporter: one line per window of WINDOW_OPS operations.
    let store = engine.blocking();
    let mut last = (0u64, Instant::now());
    let mut peak_anon = 0;
    while done.load(Ordering::Relaxed) < total {
        std::thread::sleep(Duration::from_millis(200));
        let n = done.load(Ordering::Relaxed);
        peak_anon = peak_anon.max(status_kib("RssAnon:"));
        if n / WINDOW_OPS > last.0 / WINDOW_OPS {
            let stats = store.stats().unwrap();
            let rate = (n - last.0) as f64 / last.1.elapsed().as_secs_f64();
            println!(
                "{:>10} {:>8.1} {:>9.0} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
                n,
                started.elapsed().as_secs_f64(),
                rate,
                "-",
                "-",
                "-",
                status_kib("RssAnon:") / 1024,
                status_kib("RssFile:") / 1024,
                stats.hot_bytes >> 20,
                stats.cold_bytes >> 20,
                stats
                    .shards
                    .iter()
                    .map(|s| s.segments_compacted)
                    .sum::<u64>(),
            );
            last = (n, Instant::now());
        }
    }
    let mut windows: std::collections::BTreeMap<u64, Histogram<u64>> = Default::default();
    for worker in workers {
        for (key, hist) in worker.join().unwrap() {
            windows
                .entry(key)
                .and_modify(|h| h.add(&hist).unwrap())
                .or_insert(hist);
        }
    }
    println!("latency per window (every thread's windows merged):");
    for (w, h) in &windows {
        println!(
            "  window {w:>3}: p50 {:>6} us  p99 {:>6} us  p99.9 {:>7} us  max {:>8} us",
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.max()
        );
    }
    let stats = store.stats().unwrap();
    println!(
        "{total} ops on {} in {:.1} s; peak RSS {} MiB, peak anonymous (sampled) {} MiB; budget {} MiB \
         + hot index {} MiB ({} hot blocks); {} blocks, {} segments compacted, write \
         amplification {:.2}",
        config_backend,
        started.elapsed().as_secs_f64(),
        status_kib("VmHWM:") / 1024,
        peak_anon / 1024,
        budget >> 20,
        stats.hot_index_bytes >> 20,
        stats.hot_blocks,
        stats.blocks,
        stats
            .shards
            .iter()
            .map(|s| s.segments_compacted)
            .sum::<u64>(),
        stats.write_amplification,
    );
    store.close().unwrap();
}
