//! Hashing a block into its CID: sha2-256 (`Block::new`, SHA-NI where the CPU has it) and
//! blake3 (`Block::with`), on a small node and on a 256 KiB chunk.

use criterion::{BenchmarkId, Criterion, Throughput};
use ipfrs_storage::{Block, Codec, HashAlgorithm};

pub fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("hashing");
    for size in [4usize << 10, 256 << 10] {
        let data = bytes::Bytes::from(vec![0xa5u8; size]);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(BenchmarkId::new("sha2-256", size), |b| {
            b.iter(|| Block::new(std::hint::black_box(data.clone())).map(|b| *b.cid()))
        });
        group.bench_function(BenchmarkId::new("blake3", size), |b| {
            b.iter(|| {
                Block::with(
                    Codec::Raw,
                    HashAlgorithm::Blake3,
                    std::hint::black_box(data.clone()),
                )
                .map(|b| *b.cid())
            })
        });
    }
    group.finish();
}
