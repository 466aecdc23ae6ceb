//! Explicit compactions racing background compaction while puts and deletes stream in.
//!
//! An explicit `Engine::compact` lists the sealed segments as "every segment but the active
//! one"; if it read the active segment's number while the writer was out for an append, it
//! took the active segment for a sealed one, moved its records, and its retire then found the
//! records appended meanwhile: `segment N still has live records after compaction`. Here a
//! few writer threads keep appends in flight while another thread compacts over and over
//! (the budget is small, so background compaction runs too). Asserted: every compaction
//! succeeds, and afterwards every block is where the acknowledged operations left it.
//!
//! Bounded: a fixed number of compactions, and a deadline after which the writers stop.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_lite::future::block_on;
use ipfrs_storage::{Block, Config, Durability, Engine, HotTier};

/// Explicit compactions attempted.
const COMPACTIONS: usize = 120;
/// Writer threads keeping appends in flight.
const WRITERS: u32 = 4;
/// Past this, the compacting thread stops early (a loaded machine), still asserting.
const DEADLINE: Duration = Duration::from_secs(25);

fn block(writer: u32, i: u32) -> Block {
    let mut data = vec![(writer * 31 + i) as u8; 6144 + (i as usize % 7) * 1024];
    data.extend_from_slice(&writer.to_le_bytes());
    data.extend_from_slice(&i.to_le_bytes());
    Block::new(data).unwrap()
}

fn config(dir: &std::path::Path) -> Config {
    let mut config = Config::new(dir);
    config.shards = Some(1);
    config.max_block_size = 16 << 10;
    config.durability = Durability::Sync;
    // Small segments and budget: background compaction runs all the time too.
    config.hot_tier = Some(HotTier {
        segment_bytes: 128 << 10,
        budget_bytes: 512 << 10,
        keep_hot_reads: 1,
        ..HotTier::default()
    });
    config
}

#[test]
fn explicit_compactions_racing_background_compaction_never_fail() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = engine.blocking();
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                // Per block: whether the last acknowledged operation left it present.
                let mut present = Vec::new();
                let mut i = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let b = block(w, i);
                    store.put(&b).unwrap();
                    present.push(true);
                    // Read some back (hits keep them hot: rewrites into the active segment),
                    // and delete every third one written a little earlier.
                    if i.is_multiple_of(2) {
                        assert_eq!(store.get(b.cid()).unwrap().as_ref(), Some(b.data()));
                    }
                    if i.is_multiple_of(3) && i >= 6 {
                        let old = i - 6;
                        if present[old as usize] {
                            store.delete(block(w, old).cid()).unwrap();
                            present[old as usize] = false;
                        }
                    }
                    i += 1;
                }
                present
            })
        })
        .collect();
    let started = Instant::now();
    let mut failures = Vec::new();
    let mut done = 0;
    while done < COMPACTIONS && started.elapsed() < DEADLINE {
        if let Err(e) = block_on(engine.compact()) {
            failures.push(e.to_string());
        }
        done += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let models: Vec<Vec<bool>> = writers.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(
        failures.is_empty(),
        "{} of {done} compactions failed, first: {}",
        failures.len(),
        failures[0]
    );
    assert!(done >= 10, "only {done} compactions ran");
    let store = engine.blocking();
    let stats = store.stats().unwrap();
    assert!(stats.shards[0].segments_compacted > 0, "{stats:?}");
    for (w, model) in models.iter().enumerate() {
        for (i, &present) in model.iter().enumerate() {
            let b = block(w as u32, i as u32);
            let got = store.get(b.cid()).unwrap();
            if present {
                assert_eq!(got.as_ref(), Some(b.data()), "block {w}/{i}");
            } else {
                assert_eq!(got, None, "deleted block {w}/{i} is back");
            }
        }
    }
    store.close().unwrap();
}
