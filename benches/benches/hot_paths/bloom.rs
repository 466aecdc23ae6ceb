//! Bloom filter lookups as a shard does them: fastbloom fed a precomputed xxh3 of the key
//! (`key::bloom_hash`), against fastbloom's default SipHash of the key for comparison.

use criterion::{BenchmarkId, Criterion};
use fastbloom::BloomFilter;
use ipfrs_storage::key::bloom_hash;

/// Keys in the filter; the filter is sized as the engine sizes a shard's (1% false positives).
const ITEMS: usize = 100_000;

pub fn bench(c: &mut Criterion) {
    let keys = crate::keys(2 * ITEMS);
    let (present, absent) = keys.split_at(ITEMS);
    let mut xxh3 = BloomFilter::with_false_pos(0.01).expected_items(ITEMS);
    let mut sip = BloomFilter::with_false_pos(0.01).expected_items(ITEMS);
    for key in present {
        xxh3.insert_hash(bloom_hash(key));
        sip.insert(key);
    }
    let mut group = c.benchmark_group("bloom");
    for (name, probe) in [("present", present), ("absent", absent)] {
        let mut i = 0;
        group.bench_function(BenchmarkId::new("xxh3", name), |b| {
            b.iter(|| {
                i = (i + 1) % probe.len();
                xxh3.contains_hash(bloom_hash(std::hint::black_box(&probe[i])))
            })
        });
        let mut i = 0;
        group.bench_function(BenchmarkId::new("siphash", name), |b| {
            b.iter(|| {
                i = (i + 1) % probe.len();
                sip.contains(std::hint::black_box(&probe[i]))
            })
        });
    }
    group.finish();
}
