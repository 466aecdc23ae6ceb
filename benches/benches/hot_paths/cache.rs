//! Block cache hits as `shards/src/cache.rs` configures quick_cache: the unsync cache, keyed
//! by multihash bytes, weighted by key + value bytes + 64 bytes of bookkeeping.

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion};
use quick_cache::Weighter;
use quick_cache::unsync::Cache;

/// The shards' per-entry overhead charge.
const ENTRY_OVERHEAD: u64 = 64;

#[derive(Clone, Copy)]
struct ByteWeighter;

impl Weighter<Vec<u8>, Bytes> for ByteWeighter {
    fn weight(&self, key: &Vec<u8>, value: &Bytes) -> u64 {
        key.len() as u64 + value.len() as u64 + ENTRY_OVERHEAD
    }
}

pub fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("cache_hit");
    for block in [4usize << 10, 256 << 10] {
        // 32 MiB budget, every block resident: this measures hits only.
        let budget: u64 = 32 << 20;
        let entries = (budget / (block as u64 + 200)) as usize / 2;
        let keys = crate::keys(entries);
        let mut cache = Cache::with_weighter(entries, budget, ByteWeighter);
        let value = Bytes::from(vec![7u8; block]);
        for key in &keys {
            cache.insert(key.clone(), value.clone());
        }
        let mut i = 0;
        group.bench_function(BenchmarkId::from_parameter(block), |b| {
            b.iter(|| {
                i = (i + 1) % keys.len();
                cache.get(std::hint::black_box(keys[i].as_slice())).cloned()
            })
        });
    }
    group.finish();
}
