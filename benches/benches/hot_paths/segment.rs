//! Hot segment records: encode one record as the segment writer lays them out (packed at
//! 8-byte boundaries, `Alignment::WORD`: what an append costs before the DMA write) and
//! decode it back with its checksum check.

use criterion::{BenchmarkId, Criterion, Throughput};
use ipfrs_tiering::segment::{Alignment, Payload, decode, encode_into};

pub fn bench(c: &mut Criterion) {
    let key = crate::keys(1).remove(0);
    let mut group = c.benchmark_group("segment");
    for size in [1usize << 10, 4 << 10, 256 << 10] {
        let data = vec![0x5a; size];
        group.throughput(Throughput::Bytes(size as u64));
        let mut buf = Vec::with_capacity(size + 8192);
        group.bench_function(BenchmarkId::new("encode", size), |b| {
            b.iter(|| {
                buf.clear();
                encode_into(&mut buf, 42, &key, Payload::Data(&data), Alignment::WORD)
                    .unwrap_or_else(|e| panic!("encode: {e}"))
            })
        });
        buf.clear();
        encode_into(&mut buf, 42, &key, Payload::Data(&data), Alignment::WORD)
            .unwrap_or_else(|e| panic!("encode: {e}"));
        group.bench_function(BenchmarkId::new("decode", size), |b| {
            b.iter(|| {
                decode(std::hint::black_box(&buf), 0, Alignment::WORD)
                    .map(|r| r.next_offset)
                    .unwrap_or_else(|e| panic!("decode: {e}"))
            })
        });
    }
    group.finish();
}
