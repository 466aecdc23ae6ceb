//! Exact deltas between two versions of a chunk.
//!
//! A changed chunk is stored as `zstd(byte_planes(new XOR base))`. XOR of the bit patterns
//! makes reconstruction bit-exact for every value (NaN payloads, -0.0, infinities,
//! subnormals) with no floating-point arithmetic. A small training step leaves the sign,
//! exponent and high mantissa bits of most weights unchanged, so after XOR the high bytes of
//! each element are mostly zero; grouping byte k of every element together (byte planes)
//! turns those into long zero runs that zstd removes, while the noisy low bytes cost about
//! their size. The caller keeps a delta only when it is smaller than the chunk itself.

/// The name of this encoding, recorded in every [`crate::objects::Delta`].
pub const ENCODING: &str = "xor-byteplanes-zstd-v1";

/// Default zstd level: zstd's own default, a good ratio at several hundred MB/s.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// `new XOR base`, grouped into byte planes of `elem`-byte elements: plane k holds byte k of
/// every element. Both slices have the same length, a multiple of `elem`.
fn xor_planes(new: &[u8], base: &[u8], elem: usize) -> Vec<u8> {
    let n = new.len() / elem;
    let mut out = vec![0u8; new.len()];
    match elem {
        1 => {
            for ((o, a), b) in out.iter_mut().zip(new).zip(base) {
                *o = a ^ b;
            }
        }
        _ => {
            for (i, (a, b)) in new
                .chunks_exact(elem)
                .zip(base.chunks_exact(elem))
                .enumerate()
            {
                for k in 0..elem {
                    out[k * n + i] = a[k] ^ b[k];
                }
            }
        }
    }
    out
}

/// Inverse of [`xor_planes`]: `planes` back to element order, XORed with `base`.
fn unplane_xor(planes: &[u8], base: &[u8], elem: usize) -> Vec<u8> {
    let n = base.len() / elem;
    let mut out = vec![0u8; base.len()];
    match elem {
        1 => {
            for ((o, p), b) in out.iter_mut().zip(planes).zip(base) {
                *o = p ^ b;
            }
        }
        _ => {
            for (i, (o, b)) in out
                .chunks_exact_mut(elem)
                .zip(base.chunks_exact(elem))
                .enumerate()
            {
                for k in 0..elem {
                    o[k] = planes[k * n + i] ^ b[k];
                }
            }
        }
    }
    out
}

/// The delta payload of `new` against `base`, or `None` when it would not be smaller than
/// `new` itself (then the chunk is better stored as is). `None` also for chunks of different
/// lengths, which cannot be XORed.
pub fn encode(new: &[u8], base: &[u8], elem: usize, level: i32) -> Option<Vec<u8>> {
    if new.len() != base.len() || elem == 0 || !new.len().is_multiple_of(elem) {
        return None;
    }
    let planes = xor_planes(new, base, elem);
    let packed = zstd::bulk::compress(&planes, level).ok()?;
    (packed.len() < new.len()).then_some(packed)
}

/// Rebuilds the chunk from `base` and a payload made by [`encode`]. Errors say why the
/// payload does not fit (corrupt, wrong length).
pub fn decode(payload: &[u8], base: &[u8], elem: usize) -> Result<Vec<u8>, String> {
    if elem == 0 || !base.len().is_multiple_of(elem) {
        return Err(format!(
            "base chunk of {} bytes is not whole {elem}-byte elements",
            base.len()
        ));
    }
    // The capacity bound makes a corrupt payload fail instead of allocating without limit.
    let planes = zstd::bulk::decompress(payload, base.len()).map_err(|e| e.to_string())?;
    if planes.len() != base.len() {
        return Err(format!(
            "payload decodes to {} bytes, the base chunk has {}",
            planes.len(),
            base.len()
        ));
    }
    Ok(unplane_xor(&planes, base, elem))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn planes_group_bytes_by_position() {
        let new = [1u8, 2, 3, 4, 5, 6];
        let zero = [0u8; 6];
        assert_eq!(xor_planes(&new, &zero, 2), [1, 3, 5, 2, 4, 6]);
        assert_eq!(unplane_xor(&[1, 3, 5, 2, 4, 6], &zero, 2), new);
    }

    #[test]
    fn incompressible_or_mismatched_chunks_are_not_encoded() {
        let base = vec![0u8; 64];
        let noise: Vec<u8> = (0..64u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        assert_eq!(encode(&noise, &base, 4, 3), None);
        assert_eq!(encode(&base[..60], &base, 4, 3), None);
        assert!(
            encode(&base, &base, 4, 3).is_some(),
            "an unchanged chunk packs tiny"
        );
    }

    #[test]
    fn corrupt_payload_is_an_error() {
        let base = vec![7u8; 4096];
        let mut new = base.clone();
        new[100] ^= 0xff;
        let payload = encode(&new, &base, 4, 3).unwrap();
        assert_eq!(decode(&payload, &base, 4).unwrap(), new);
        assert!(decode(&payload[..payload.len() / 2], &base, 4).is_err());
        assert!(decode(&payload, &base[..2048], 4).is_err());
    }
}
