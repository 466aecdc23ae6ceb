//! Routing a CID to its shard: xxh3 of the digest modulo the shard count.

use criterion::{BenchmarkId, Criterion};
use ipfrs_storage::Block;
use ipfrs_storage::key::shard_of;

pub fn bench(c: &mut Criterion) {
    let cids: Vec<_> = (0..1024u32)
        .map(|i| {
            Block::new(i.to_le_bytes().to_vec())
                .map(|b| *b.cid())
                .unwrap_or_else(|e| panic!("{e}"))
        })
        .collect();
    let mut group = c.benchmark_group("routing");
    for shards in [2usize, 16] {
        let mut i = 0;
        group.bench_function(BenchmarkId::new("shard_of", shards), |b| {
            b.iter(|| {
                i = (i + 1) % cids.len();
                shard_of(std::hint::black_box(&cids[i]), shards)
            })
        });
    }
    group.finish();
}
