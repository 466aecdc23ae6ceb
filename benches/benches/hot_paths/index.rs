//! Hot index inserts: a hashbrown map from a 34-byte key (a sha2-256 multihash) to
//! (segment, offset, length), as the hot tier's index holds it.

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput};
use hashbrown::HashMap;

/// Entries inserted per measured batch.
const N: usize = 10_000;

pub fn bench(c: &mut Criterion) {
    let keys: Vec<[u8; 34]> = crate::keys(N)
        .into_iter()
        .map(|k| {
            k.try_into()
                .unwrap_or_else(|k: Vec<u8>| panic!("{} bytes", k.len()))
        })
        .collect();
    let mut group = c.benchmark_group("index_insert");
    group.throughput(Throughput::Elements(N as u64));
    for presized in [false, true] {
        let name = if presized { "presized" } else { "growing" };
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter_batched(
                || {
                    if presized {
                        HashMap::with_capacity(N)
                    } else {
                        HashMap::new()
                    }
                },
                |mut map: HashMap<[u8; 34], (u32, u64, u32)>| {
                    for (i, key) in keys.iter().enumerate() {
                        map.insert(*key, (1, i as u64 * 4096, 4096));
                    }
                    map
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}
