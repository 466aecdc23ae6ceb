//! The checkout's decoders read bytes that came from a store: a damaged or forged payload
//! (a flipped byte, a cut, bytes appended) must give an error or some chunk, never a panic
//! or a read outside the payload. Covers the in-place exponent-group decoder (its raw bits
//! are read eight bytes at a time) and keys whose planes are read in place from stored
//! zstd blocks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ipfrs_versioning::delta::{self, Transform, Version};
use ipfrs_versioning::{DType, codec};
use proptest::prelude::*;

/// `n` f32 weights of about `scale`, and the same after a dense step of about `step`.
fn dense_pair(n: usize, scale: f32, step: f32, seed: u64) -> (Vec<u8>, Vec<u8>) {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let base: Vec<f32> = (0..n).map(|_| scale * next()).collect();
    let new: Vec<f32> = base.iter().map(|b| b + step * next()).collect();
    let bytes = |v: &[f32]| v.iter().flat_map(|f| f.to_le_bytes()).collect::<Vec<u8>>();
    (bytes(&base), bytes(&new))
}

/// `payload` damaged by `how`: a byte flipped, the end cut, or bytes appended.
fn damage(payload: &[u8], how: u8, at: usize, byte: u8) -> Vec<u8> {
    let mut p = payload.to_vec();
    match how % 3 {
        0 if !p.is_empty() => {
            let i = at % p.len();
            p[i] ^= byte | 1;
        }
        1 => p.truncate(at % (p.len() + 1)),
        _ => p.extend(std::iter::repeat_n(byte, 1 + at % 9)),
    }
    p
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Damaged exponent-group and byte-plane patches of a dense step: decoding them, in
    /// place or not, is an error or a chunk of the right length.
    #[test]
    fn damaged_dense_patches_never_panic(
        seed in any::<u64>(),
        elems in 1usize..6000,
        how in any::<u8>(),
        at in any::<usize>(),
        byte in any::<u8>(),
    ) {
        let (base, new) = dense_pair(elems, 0.05, 1e-4, seed);
        let Some((t, payload)) = delta::encode(&new, &base, 4, 3) else {
            return Ok(());
        };
        prop_assert_eq!(&delta::decode(Version::V2, t, &payload, &base, 4).unwrap(), &new);
        let bad = damage(&payload, how, at, byte);
        for t in [Transform::Sub, Transform::Xor] {
            if let Ok(out) = delta::decode(Version::V2, t, &bad, &base, 4) {
                prop_assert_eq!(out.len(), base.len());
            }
            let mut data = base.clone();
            if delta::decode_in_place(Version::V2, t, &bad, &mut data, 4).is_ok() {
                prop_assert_eq!(data.len(), base.len());
            }
        }
    }

    /// Damaged keys (F32 planes, some of them stored zstd blocks read in place; BF16;
    /// F16): unpacking them is an error or a chunk of the right length.
    #[test]
    fn damaged_keys_never_panic(
        seed in any::<u64>(),
        elems in 1usize..6000,
        dtype in prop_oneof![Just(DType::F32), Just(DType::BF16), Just(DType::F16)],
        how in any::<u8>(),
        at in any::<usize>(),
        byte in any::<u8>(),
    ) {
        let (weights, _) = dense_pair(elems, 0.05, 0.0, seed);
        let data = &weights[..weights.len() / 4 * dtype.size()];
        let Some(payload) = codec::pack(data, dtype, 3) else {
            return Ok(());
        };
        prop_assert_eq!(&codec::unpack(&payload, dtype, data.len()).unwrap(), data);
        let bad = damage(&payload, how, at, byte);
        if let Ok(out) = codec::unpack(&bad, dtype, data.len()) {
            prop_assert_eq!(out.len(), data.len());
        }
    }
}
