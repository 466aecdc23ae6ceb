//! Parsing CIDs from text (`key::parse_cid`): base32 CIDv1 and base58 CIDv0.

use criterion::{BenchmarkId, Criterion};
use ipfrs_storage::key::parse_cid;
use ipfrs_storage::{Block, Codec, HashAlgorithm};

pub fn bench(c: &mut Criterion) {
    let block = Block::with(Codec::DagPb, HashAlgorithm::Sha2_256, &b"a dag-pb node"[..])
        .unwrap_or_else(|e| panic!("{e}"));
    let v1 = block.cid().to_string();
    let v0 = ipfrs_storage::Cid::new_v0(*block.cid().hash())
        .unwrap_or_else(|e| panic!("{e}"))
        .to_string();
    let mut group = c.benchmark_group("parse_cid");
    for (name, text) in [("v1-base32", v1), ("v0-base58", v0)] {
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| parse_cid(std::hint::black_box(&text)))
        });
    }
    group.finish();
}
