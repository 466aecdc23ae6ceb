//! Micro-benchmarks of the engine's hot paths, one module per path, in one bench binary so
//! `cargo test --workspace` / clippy link it once. Each benchmark measures for about a second
//! ([`config`]): `cargo bench -p ipfrs-benches` finishes in well under a few minutes.
//!
//! Run one group: `cargo bench -p ipfrs-benches -- bloom`.

#![allow(missing_docs)]

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};

mod bloom;
mod cache;
mod cid;
mod hashing;
mod index;
mod routing;
mod segment;

/// Short measurements: these paths take nanoseconds to microseconds, so a second of samples
/// is plenty, and the whole suite stays quick on a shared 2-core machine.
fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .sample_size(20)
}

/// Keys as the engine stores them: multihash bytes (sha2-256: 2 + 32 bytes) of `n` blocks.
pub fn keys(n: usize) -> Vec<Vec<u8>> {
    (0..n as u64)
        .map(|i| {
            let block = ipfrs_storage::Block::new(i.to_le_bytes().to_vec())
                .unwrap_or_else(|e| panic!("block {i}: {e}"));
            ipfrs_storage::key::key_of(block.cid())
        })
        .collect()
}

criterion_group! {
    name = hot_paths;
    config = config();
    targets = bloom::bench, cache::bench, segment::bench, index::bench, routing::bench,
        hashing::bench, cid::bench
}
criterion_main!(hot_paths);
