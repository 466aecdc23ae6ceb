//! Property tests: exact deltas reconstruct every bit pattern, including NaN payloads, -0.0,
//! infinities and subnormals, both for the codec alone and through commit + checkout.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::LazyLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use common::*;
use futures_lite::future::block_on;
use ipfrs_storage::{Block, BlockStore};
use ipfrs_versioning::{
    ChunkSource, DType, Delta, DeltaChunk, Error, Object, RepoConfig, TensorData, TensorObject,
    Tensors, delta,
};
use proptest::prelude::*;

/// Bit patterns of f32 weighted towards the awkward ones.
fn f32_bits() -> impl Strategy<Value = u32> {
    prop_oneof![
        4 => any::<f32>().prop_map(f32::to_bits),
        1 => Just(0x8000_0000u32),                    // -0.0
        1 => Just(0x7f80_0000u32),                    // +inf
        1 => Just(0xff80_0000u32),                    // -inf
        1 => 0x0000_0001u32..0x0080_0000,             // positive subnormals
        1 => 0x8000_0001u32..0x8080_0000,             // negative subnormals
        1 => 0x7f80_0001u32..=0x7fff_ffff,            // NaNs with payloads (quiet and signalling)
        1 => 0xff80_0001u32..=0xffff_ffff,            // negative NaNs
        1 => any::<u32>(),
    ]
}

/// Bit patterns of f16 (`half_inf` 0x7c00) or bf16 (`half_inf` 0x7f80).
fn half_bits(inf: u16) -> impl Strategy<Value = u16> {
    let sub_top = if inf == 0x7c00 { 0x0400u16 } else { 0x0080 };
    prop_oneof![
        4 => any::<u16>(),
        1 => Just(0x8000u16),
        1 => Just(inf),
        1 => Just(inf | 0x8000),
        1 => 1u16..sub_top,
        1 => (inf + 1)..=0x7fffu16,
        1 => (inf + 1 + 0x8000)..=0xffffu16,
    ]
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    F32,
    F16,
    BF16,
}

impl Kind {
    fn dtype(self) -> DType {
        match self {
            Kind::F32 => DType::F32,
            Kind::F16 => DType::F16,
            Kind::BF16 => DType::BF16,
        }
    }
}

/// A base tensor's bytes and a new version: a mix of untouched elements, low-bit nudges
/// (what training does) and replacements by any pattern, including specials.
fn versions() -> impl Strategy<Value = (Kind, Vec<u8>, Vec<u8>)> {
    let kind = prop_oneof![Just(Kind::F32), Just(Kind::F16), Just(Kind::BF16)];
    kind.prop_flat_map(|kind| {
        let elems: BoxedStrategy<Vec<(u32, u8, u32)>> = match kind {
            Kind::F32 => prop::collection::vec((f32_bits(), 0u8..5, f32_bits()), 1..600).boxed(),
            Kind::F16 | Kind::BF16 => {
                let inf = if matches!(kind, Kind::F16) {
                    0x7c00
                } else {
                    0x7f80
                };
                prop::collection::vec(
                    (
                        half_bits(inf).prop_map(u32::from),
                        0u8..5,
                        half_bits(inf).prop_map(u32::from),
                    ),
                    1..600,
                )
                .boxed()
            }
        };
        elems.prop_map(move |elems| {
            let size = kind.dtype().size();
            let (mut old, mut new) = (Vec::new(), Vec::new());
            for (base, how, other) in elems {
                let next = match how {
                    0 | 1 => base,              // unchanged
                    2 => base ^ (other & 0x3f), // a small change in the low bits
                    _ => other,                 // replaced, possibly by a special value
                };
                old.extend_from_slice(&base.to_le_bytes()[..size]);
                // A carry past the element's width is dropped by the truncation below.
                new.extend_from_slice(&next.to_le_bytes()[..size]);
            }
            (kind, old, new)
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn codec_round_trip_is_bit_exact((kind, old, new) in versions()) {
        let elem = kind.dtype().size();
        // `None` (not smaller) means the chunk is stored as is, which is exact by definition.
        if let Some((transform, payload)) = delta::encode(&new, &old, elem, 3) {
            prop_assert!(payload.len() < new.len());
            prop_assert_eq!(delta::decode(delta::Version::V2, transform, &payload, &old, elem).unwrap(), new);
        }
    }
}

/// An f32 base spread over many exponents (weights from 1e-6 to 10, and specials) and a
/// dense small step on it, as an optimizer makes; some elements are replaced by any bit
/// pattern, including the special values.
fn dense_versions() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    let elem = (
        prop_oneof![
            8 => (-6.0f32..1.0, any::<bool>()).prop_map(|(l, neg)| {
                let v = 10f32.powf(l);
                if neg { -v } else { v }
            }).prop_map(f32::to_bits),
            1 => f32_bits(),
        ],
        0u8..10,
        -1.0f32..1.0,
        f32_bits(),
    );
    prop::collection::vec(elem, 1..6000).prop_map(|elems| {
        let (mut old, mut new) = (Vec::new(), Vec::new());
        for (base, how, step, other) in elems {
            let next = match how {
                0 => other,
                1 => base,
                _ => (f32::from_bits(base) + 1e-4 * step).to_bits(),
            };
            old.extend_from_slice(&base.to_le_bytes());
            new.extend_from_slice(&next.to_le_bytes());
        }
        (old, new)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn dense_steps_round_trip_bit_exactly((old, new) in dense_versions()) {
        if let Some((transform, payload)) = delta::encode(&new, &old, 4, 3) {
            prop_assert!(payload.len() < new.len());
            prop_assert!(delta::layout(delta::Version::V2, &payload).is_some());
            prop_assert_eq!(delta::decode(delta::Version::V2, transform, &payload, &old, 4).unwrap(), new);
        }
    }

    /// Deltas written by the first encoding still decode.
    #[test]
    fn v1_payloads_still_decode((kind, old, new) in versions()) {
        let elem = kind.dtype().size();
        if let Some((transform, payload)) = delta::encode_v1(&new, &old, elem, 3) {
            prop_assert_eq!(delta::layout(delta::Version::V1, &payload), Some(delta::Layout::BytePlanes));
            prop_assert_eq!(delta::decode(delta::Version::V1, transform, &payload, &old, elem).unwrap(), new);
        }
    }
}

/// Deterministic weights ~ 0.02 * (roughly normal) and a dense step of 1e-4 on each.
fn dense_step(n: usize) -> (Vec<u8>, Vec<u8>) {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut normal = move || {
        let mut sum = 0.0f32;
        for _ in 0..4 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            sum += (x >> 40) as f32 / (1u64 << 24) as f32;
        }
        (sum - 2.0) * 1.732
    };
    let (mut old, mut new) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let w = 0.02 * normal();
        old.extend_from_slice(&w.to_le_bytes());
        new.extend_from_slice(&(w + 1e-4 * normal()).to_le_bytes());
    }
    (old, new)
}

#[test]
fn a_dense_step_uses_scaled_tokens_and_beats_byte_planes() {
    // Guards the properties above against passing with the new layout never chosen.
    let (old, new) = dense_step(65536);
    let (t, payload) = delta::encode(&new, &old, 4, 3).unwrap();
    assert_eq!(
        delta::layout(delta::Version::V2, &payload),
        Some(delta::Layout::ScaledTokens)
    );
    let (_, v1) = delta::encode_v1(&new, &old, 4, 3).unwrap();
    assert!(
        payload.len() < v1.len(),
        "{} vs {}",
        payload.len(),
        v1.len()
    );
    assert_eq!(
        delta::decode(delta::Version::V2, t, &payload, &old, 4).unwrap(),
        new
    );
    // A v2 payload is not a v1 one: the versions are told apart by the Delta's name.
    assert!(delta::decode(delta::Version::V1, t, &payload, &old, 4).is_err());
}

#[test]
fn a_delta_stored_with_the_v1_encoding_still_checks_out() {
    let fx = Fixture::with_config(RepoConfig {
        chunk_bytes: 4096,
        ..RepoConfig::default()
    });
    let (old, new) = dense_step(3000);
    let w = TensorData::new("w", DType::F32, vec![3000], Bytes::from(old.clone())).unwrap();
    let (base_cid, base) = common::store_full_v2(&fx, &w, 4096);
    // A delta as the first encoding wrote it, stored by hand.
    let mut chunks = Vec::new();
    let mut blocks = Vec::new();
    for (n, o) in new.chunks(4096).zip(old.chunks(4096)) {
        let chunk = *Block::new(Bytes::copy_from_slice(n)).unwrap().cid();
        let (t, payload) = delta::encode_v1(n, o, 4, 3).unwrap();
        let p = Block::new(Bytes::from(payload)).unwrap();
        let from = match t {
            delta::Transform::Xor => ChunkSource::Xor(*p.cid()),
            delta::Transform::Sub => ChunkSource::Sub(*p.cid()),
        };
        chunks.push(DeltaChunk { chunk, from });
        blocks.push(p);
    }
    let delta = |encoding: &str| Delta {
        base: base_cid,
        encoding: encoding.into(),
        depth: 1,
        dtype: DType::F32,
        shape: vec![3000],
        chunk_bytes: base.chunk_bytes,
        chunks: chunks.clone(),
    };
    let v1 = Object::Delta(delta(delta::ENCODING_V1)).to_block().unwrap();
    let bogus = Object::Delta(delta("bogus/v9")).to_block().unwrap();
    let (v1_cid, bogus_cid) = (*v1.cid(), *bogus.cid());
    blocks.extend([v1, bogus]);
    block_on(fx.repo.store().put_many(&blocks)).unwrap();
    let got = block_on(fx.repo.read_tensor(&v1_cid)).unwrap();
    assert_eq!(got.data.as_ref(), new.as_slice());
    assert!(matches!(
        block_on(fx.repo.read_tensor(&bogus_cid)),
        Err(Error::BadDelta { .. })
    ));
}

/// One engine for all cases of the repository property; each case uses its own branch.
/// A static is never dropped, so its directory lives under the target directory and the
/// next run removes what the last one left (a run in /tmp leaked a 257 MB store each time).
static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let parent = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    for old in std::fs::read_dir(parent).into_iter().flatten().flatten() {
        if old
            .file_name()
            .to_string_lossy()
            .starts_with(FIXTURE_PREFIX)
        {
            let _ = std::fs::remove_dir_all(old.path());
        }
    }
    let dir = tempfile::Builder::new()
        .prefix(FIXTURE_PREFIX)
        .tempdir_in(parent)
        .unwrap();
    Fixture::in_dir(
        dir,
        RepoConfig {
            chunk_bytes: 128,
            max_chain_depth: 3,
            ..RepoConfig::default()
        },
    )
});
const FIXTURE_PREFIX: &str = "delta-props-";
static CASE: AtomicUsize = AtomicUsize::new(0);

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn commit_and_checkout_are_bit_exact((kind, old, new) in versions(), again in any::<bool>()) {
        let fx = &*FIXTURE;
        let branch = format!("case{}", CASE.fetch_add(1, Ordering::Relaxed));
        let size = kind.dtype().size();
        let tensor = |data: &[u8]| {
            let n = (data.len() / size) as u64;
            TensorData::new("t", kind.dtype(), vec![n], Bytes::copy_from_slice(data)).unwrap()
        };
        let mut versions = vec![old.clone(), new.clone()];
        if again {
            // A third version on top of the delta: based on the same full version.
            versions.push(old.iter().zip(&new).map(|(a, b)| a ^ (b & 1)).collect());
        }
        let mut commits = Vec::new();
        for v in &versions {
            let mut m = Tensors::new();
            m.insert("t".into(), tensor(v));
            commits.push(block_on(fx.repo.commit(&branch, &m, info("v"))).unwrap().commit);
        }
        for (c, v) in commits.iter().zip(&versions) {
            let got = fx.checkout(&c.to_string());
            // Bytes equality is bit-pattern equality: NaN payloads and -0.0 included.
            prop_assert_eq!(got["t"].data.as_ref(), v.as_slice());
            prop_assert_eq!(got["t"].dtype, kind.dtype());
        }
    }
}

#[test]
fn a_typical_update_is_stored_as_a_delta_with_coded_chunks() {
    // Guards the property above against passing vacuously (every chunk stored raw). 4 KiB
    // chunks: with the 256-byte test chunks the two CIDs per chunk would dominate.
    let fx = Fixture::with_config(RepoConfig {
        chunk_bytes: 4096,
        ..RepoConfig::default()
    });
    let base: Vec<f32> = (0..4096).map(|i| ((i as f32) * 0.37).sin()).collect();
    let next: Vec<f32> = base.iter().map(|w| w + 1e-4 * w.cos()).collect();
    let mut m = Tensors::new();
    m.insert("w".into(), f32_tensor(&base, vec![4096]));
    fx.commit("main", &m, "v1");
    m.insert("w".into(), f32_tensor(&next, vec![4096]));
    let c = fx.commit("main", &m, "v2");
    let s = block_on(fx.repo.commit_state(&c.commit)).unwrap();
    let TensorObject::Chunked(d) = block_on(fx.repo.tensor_object(&s.tensors["w"])).unwrap() else {
        panic!("a new version is stored as chunk recipes")
    };
    assert!(
        d.chunks.iter().all(|c| c.depth() == 1),
        "a dense small step is a delta"
    );
    assert!(c.new_bytes < 16384 * 3 / 4, "{} of 16384", c.new_bytes);
    let got = f32_values(&fx.checkout("main")["w"]);
    assert!(
        got.iter()
            .zip(&next)
            .all(|(a, b)| a.to_bits() == b.to_bits())
    );
}
