//! sled's memory follows its `cache_capacity`: the patched sled in third_party/sled.
//!
//! Upstream sled 0.34 kept about 0.6x of the data it had read resident whatever its cache
//! size, and never evicted pages stored as blobs (large values). Each case runs in a child
//! process of this test binary, so the resident memory it reports is sled's and not the other
//! tests'; freed memory is handed back to the kernel first, so what is measured is what sled
//! holds, not what the allocator keeps in its free lists.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use bytes::Bytes;
use ipfrs_tiering::backends::SledBackend;
use ipfrs_tiering::{BackendOptions, ColdBackend};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

const CACHE_BYTES: u64 = 8 << 20;
/// What the child may hold resident after reading everything back: the cache, sled's write
/// buffers and the test binary. Upstream sled held 154 MiB for the small values and all of the
/// large ones.
const RESIDENT_LIMIT_KIB: u64 = 64 << 10;

fn value(key: u64, len: usize) -> Bytes {
    let mut v = vec![0u8; len];
    for (j, chunk) in v.chunks_mut(8).enumerate() {
        let word = key.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ j as u64;
        chunk.copy_from_slice(&word.to_le_bytes()[..chunk.len()]);
    }
    Bytes::from(v)
}

fn status_kib(field: &str) -> u64 {
    ipfrs_core_types::proc_status::kib(field).unwrap()
}

/// Hands freed heap pages back to the kernel, so that what is measured is what sled holds,
/// not the allocator's free lists.
fn release_free_memory() {
    // SAFETY: malloc_trim only returns free heap pages to the kernel.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Opens a backend with the test's cache in `dir` and stores `total_mib` of values of
/// `lengths` bytes under keys 0, 1, 2... (16 per batch), flushed; returns each key's length.
fn filled_backend(
    dir: &std::path::Path,
    rng: &mut impl Rng,
    total_mib: usize,
    lengths: std::ops::Range<usize>,
) -> (SledBackend, Vec<usize>) {
    let options = BackendOptions {
        cache_bytes: CACHE_BYTES,
    };
    let backend = SledBackend::open(dir, &options).unwrap();
    let mut stored_lengths = Vec::new();
    let mut stored = 0;
    while stored < total_mib << 20 {
        let batch: Vec<(Vec<u8>, Bytes)> = (0..16)
            .map(|_| {
                let key = stored_lengths.len() as u64;
                let len = rng.random_range(lengths.clone());
                stored_lengths.push(len);
                stored += len;
                (key.to_be_bytes().to_vec(), value(key, len))
            })
            .collect();
        backend.put_batch(&batch).unwrap();
    }
    backend.flush().unwrap();
    (backend, stored_lengths)
}

/// Stores `total_mib` of values of `min..max` bytes, reads every one back twice in random
/// order (checking its bytes), and prints the resident anonymous memory at the end.
fn child_workload(total_mib: usize, min: usize, max: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let (backend, lengths) = filled_backend(dir.path(), &mut rng, total_mib, min..max);
    let mut order: Vec<u64> = (0..lengths.len() as u64).collect();
    for _ in 0..2 {
        order.shuffle(&mut rng);
        for &key in &order {
            let got = backend.get(&key.to_be_bytes()).unwrap().unwrap();
            assert_eq!(got, value(key, lengths[key as usize]), "key {key}");
        }
    }
    release_free_memory();
    println!("resident-kib {}", status_kib("RssAnon:"));
}

/// Stores `total_mib` of 1-8 KiB values, then overwrites `batch_mib` of them picked across
/// the whole key range in one `put_batch`, as compaction does with a segment's cold blocks,
/// and prints the peak resident memory during that one call.
fn child_scattered_batch(total_mib: usize, batch_mib: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let (backend, lengths) = filled_backend(dir.path(), &mut rng, total_mib, 1024..8192);
    let keys = lengths.len() as u64;
    let mut scattered = Vec::new();
    let mut bytes = 0;
    while bytes < batch_mib << 20 {
        let key = rng.random_range(0..keys);
        let len = rng.random_range(1024..8192);
        bytes += len;
        scattered.push((key.to_be_bytes().to_vec(), value(key ^ 1, len)));
    }
    release_free_memory();
    // Writing 5 resets the peak resident set (VmHWM) to the current one (Linux 4.0+).
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    backend.put_batch(&scattered).unwrap();
    let peak = status_kib("VmHWM:");
    // The last write of a key is what it holds.
    let mut seen = std::collections::HashSet::new();
    for (key, data) in scattered
        .iter()
        .rev()
        .filter(|(k, _)| seen.insert(k.clone()))
    {
        assert_eq!(backend.get(key).unwrap().as_ref(), Some(data));
    }
    println!("resident-kib {peak}");
}

/// Runs `case` in a child and returns the resident KiB it reported.
fn resident_in_child(case: &str) -> u64 {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--ignored", "--nocapture"])
        .env("IPFRS_SLED_MEMORY_CASE", case)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "child {case} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("resident-kib "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("child {case} printed no figure:\n{stdout}"))
}

/// The child: which case it runs comes from the parent's environment.
#[test]
#[ignore = "run by the tests below in a child process"]
fn child() {
    match std::env::var("IPFRS_SLED_MEMORY_CASE").unwrap().as_str() {
        // 1-8 KiB blocks: leaves of about 16 values, many more pages than the cache holds.
        "small" => child_workload(160, 1024, 8192),
        // 32-256 KiB blocks: leaves of several MiB, which sled writes as blob files.
        "large" => child_workload(128, 32 << 10, 256 << 10),
        // One batch of 16 MiB spread over every leaf of 160 MiB of small values.
        "scattered-batch" => child_scattered_batch(160, 16),
        other => panic!("unknown case {other}"),
    }
}

#[test]
fn small_values_stay_within_the_cache_budget() {
    let kib = resident_in_child("small");
    assert!(
        kib < RESIDENT_LIMIT_KIB,
        "sled held {kib} KiB after reading 160 MiB with an 8 MiB cache"
    );
}

#[test]
fn large_values_stored_as_blobs_are_evicted() {
    let kib = resident_in_child("large");
    assert!(
        kib < RESIDENT_LIMIT_KIB,
        "sled held {kib} KiB after reading 128 MiB with an 8 MiB cache"
    );
}

#[test]
fn a_batch_spread_over_the_keys_stays_within_the_cache_budget() {
    let kib = resident_in_child("scattered-batch");
    assert!(
        kib < RESIDENT_LIMIT_KIB,
        "sled peaked at {kib} KiB during one 16 MiB batch with an 8 MiB cache"
    );
}
