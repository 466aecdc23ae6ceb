//! Layout 3 of delta encoding v2: 32-bit subtraction deltas as exponent-scaled tokens in
//! element order, one entropy-coded stream.
//!
//! The same tokens and raw low bits as [`super::exponent_groups`] (layout 1), with the
//! grouping replaced by a shift. A dense step moves weights by about the same absolute
//! amount, so a delta counted in units of the weight's last place has a bit length of
//! about `c - exponent`: each step of the base's exponent shifts the token by one bit
//! length, [`ROTATION`] token values. Layout 1 codes each exponent group with a table of
//! its own so that the shift costs nothing; here the token is rotated by the base's
//! exponent instead, which maps every group's distribution onto one, so a single zstd
//! frame codes the whole chunk at about the same size (measured on dense steps of 1e-6 to
//! 1e-4 on weights of N(0, 0.01 to 0.08), 64 Ki elements: 0 to 0.15 points of the chunk
//! smaller than layout 1, as one table replaces several and rare exponents no longer share
//! a group with others).
//!
//! Why another layout: decoding. Layout 1's tokens arrive in group order and must be
//! gathered back into element order (a cursor per group and per element, two passes);
//! here element `i`'s token is byte `i` of the frame, so the decoder is one pass over the
//! chunk with no gather: 220-250 us against 387 us for layout 1 per 256 KiB chunk (best of
//! 200, same machine); a checkout of a dense tip applies one or more such patches per
//! chunk.
//!
//! The rotation, for the base element's 8-bit exponent `e`: token `t` is stored as the byte
//! `t + 8 e` (wrapping), a bijection of the bytes for each `e`, so every 32-bit pattern
//! round-trips (NaN payloads, -0.0, infinities, subnormals, data without f32 exponents:
//! there the layout is merely not smaller and the caller keeps another). Literal tokens
//! (unchanged elements, steps of a few ulps) are rotated too, which spreads them over the
//! exponents' few values: rare in a dense step, and a chunk with many of them takes the
//! sparse layout or byte planes instead.
//!
//! Payload: the token frame's length (LEB128) and the frame (its zstd magic number dropped,
//! as in layout 1), then the raw low bits of all elements in element order, packed LSB
//! first.

use zstd::bulk::Compressor;
use zstd::zstd_safe::CParameter;

use super::exponent_groups::{
    BitWriter, MAGIC, MAX_TOKEN, MSB, apply_values, exponent, get_varint, put_varint, token, word,
    zigzag,
};

/// Token values per bit length: one step of the base's exponent shifts a delta's bit
/// length by one, its token by this much.
const ROTATION: u8 = 1 << MSB;

/// The rotation of a token for a base element (a little-endian word) of exponent `e`:
/// `e << 3`, wrapping, which is bits 20 to 27 of the word with the low three cleared.
fn rotation(w: u32) -> u8 {
    const _: () = assert!(ROTATION == 8);
    (w >> 20) as u8 & 0xf8
}

/// Token `t` rotated for a base of exponent `e`.
fn rotate(t: u8, e: usize) -> u8 {
    t.wrapping_add((e as u8).wrapping_mul(ROTATION))
}

/// The layout-3 payload of `new` against `base` (same length, whole 32-bit elements), or
/// `None` if zstd fails.
pub(super) fn encode(new: &[u8], base: &[u8], level: i32) -> Option<Vec<u8>> {
    let mut tokens = Vec::with_capacity(new.len() / 4);
    let mut raw = BitWriter {
        out: Vec::with_capacity(new.len() / 2),
        acc: 0,
        bits: 0,
    };
    for (a, b) in new.chunks_exact(4).zip(base.chunks_exact(4)) {
        let (a, b) = (word(a), word(b));
        let (t, bits, low) = token(zigzag(a.wrapping_sub(b)));
        tokens.push(rotate(t, exponent(b)));
        raw.put(low, bits);
    }
    let mut zstd = Compressor::new(level).ok()?;
    // The decoder knows the element count; the frame need not say it.
    zstd.set_parameter(CParameter::ContentSizeFlag(false))
        .ok()?;
    let frame = zstd.compress(&tokens).ok()?;
    let body = frame.get(MAGIC.len()..)?;
    let raw = raw.finish();
    let mut out = Vec::with_capacity(body.len() + raw.len() + 5);
    put_varint(&mut out, body.len());
    out.extend_from_slice(body);
    out.extend_from_slice(&raw);
    Some(out)
}

/// Inverse of [`encode`]. Errors say why the payload does not fit the base.
#[cfg(test)]
pub(super) fn decode(payload: &[u8], base: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = base.to_vec();
    decode_in_place(payload, &mut out)?;
    Ok(out)
}

/// [`decode`] with the base in `data`, replaced by the new chunk: one pass in element
/// order, each element reading its token, its base's exponent and its raw bits (loaded as
/// 8 bytes at its bit position from a buffer padded by 8 zero bytes, then shifted: no
/// branch, and only the bit position carries from one element to the next).
pub(super) fn decode_in_place(payload: &[u8], data: &mut [u8]) -> Result<(), String> {
    TOKENS_SCRATCH.with(|s| {
        // Only this function borrows it, and it does not call itself.
        let mut s = s.borrow_mut();
        let (frame, tokens) = &mut *s;
        decode_with(payload, data, frame, tokens)
    })
}

thread_local! {
    /// The buffers of [`decode_in_place`] (the token frame with its magic number, the
    /// tokens), kept per thread: a checkout's decoding thread applies thousands of patches,
    /// and a sparse one decodes in ~20 us, where fresh buffers showed.
    static TOKENS_SCRATCH: std::cell::RefCell<(Vec<u8>, Vec<u8>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// [`decode_in_place`] with the caller's buffers for the frame and the tokens.
fn decode_with(
    payload: &[u8],
    data: &mut [u8],
    frame: &mut Vec<u8>,
    tokens: &mut Vec<u8>,
) -> Result<(), String> {
    let n = data.len() / 4;
    let mut at = 0usize;
    let len = get_varint(payload, &mut at)?;
    let body = payload
        .get(at..at.saturating_add(len))
        .ok_or("token frame is truncated")?;
    at += len;
    frame.clear();
    frame.extend_from_slice(&MAGIC);
    frame.extend_from_slice(body);
    // Every token is overwritten by the frame (a frame of fewer is refused below), so the
    // buffer is only resized, not cleared.
    tokens.resize(n, 0);
    // Decompressing into a buffer of the element count makes a corrupt frame fail instead
    // of allocating without limit.
    let got =
        crate::codec::decompress_into(frame, tokens).map_err(|e| format!("token frame: {e}"))?;
    if got != n {
        return Err(format!("{got} tokens, the base has {n} elements"));
    }
    // Undo the rotations first, in one pass that vectorizes; bytes past the last token
    // are then checked once, so that the loop below looks tokens up without a branch.
    // The rotation is read from each base element as a whole word (bits 20 to 27 with the
    // low three cleared: `exponent << 3`, wrapping): picked out of its two top bytes
    // instead, the loop gathered bytes at a stride of 4 one by one and took a quarter of
    // the patch's decoding time.
    for (t, w) in tokens.iter_mut().zip(data.chunks_exact(4)) {
        *t = t.wrapping_sub(rotation(word(w)));
    }
    if u32::from(tokens.iter().fold(0, |m, &t| m.max(t))) > MAX_TOKEN {
        let t = tokens.iter().find(|&&t| u32::from(t) > MAX_TOKEN);
        return Err(format!("bad token {}", t.copied().unwrap_or_default()));
    }
    apply_values(data, tokens, &payload[at..])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn rotation_is_a_bijection_for_every_exponent() {
        for e in 0..256usize {
            let r = rotation((e as u32) << 23);
            assert_eq!(r, (e as u8).wrapping_mul(8), "{e}");
            // With any sign and mantissa bits around the exponent.
            for other in [0x807f_ffffu32, 0x0055_aa01, 0x8000_0001] {
                assert_eq!(rotation(((e as u32) << 23) | other), r, "{e} {other:x}");
            }
            let mut seen = [false; 256];
            for t in 0..=255u8 {
                let x = rotate(t, e);
                assert!(!seen[usize::from(x)], "{t} {e}");
                seen[usize::from(x)] = true;
                assert_eq!(x.wrapping_sub(r), t);
            }
        }
        // One exponent up halves the ulp, so the same step is one bit length longer: the
        // rotation maps both to one token.
        let (t, _, _) = token(1000);
        let (u, _, _) = token(2000);
        assert_eq!(rotate(u, 120), rotate(t, 121));
    }

    #[test]
    fn round_trip_and_corruption() {
        super::super::exponent_groups::tests::check_round_trip_and_corruption(encode, decode);
        // A stream byte that is no token.
        let mut bad = Compressor::new(3).unwrap();
        bad.set_parameter(CParameter::ContentSizeFlag(false))
            .unwrap();
        let frame = bad.compress(&[250u8; 4]).unwrap();
        let mut payload = Vec::new();
        put_varint(&mut payload, frame.len() - MAGIC.len());
        payload.extend_from_slice(&frame[MAGIC.len()..]);
        assert!(
            decode(&payload, &[0u8; 16])
                .unwrap_err()
                .contains("bad token")
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Every pair of 32-bit patterns round-trips through this layout, whether or not
        /// the encoder would have chosen it (arbitrary bits cover NaN payloads, -0.0,
        /// infinities and subnormals, and every rotation).
        #[test]
        fn any_bits_round_trip(
            pairs in proptest::collection::vec((proptest::prelude::any::<u32>(), 0u32..4, proptest::prelude::any::<u32>()), 0..5000)
        ) {
            let (base, new) = super::super::exponent_groups::tests::chunks_of(&pairs, false);
            let payload = encode(&new, &base, 3).unwrap();
            proptest::prop_assert_eq!(decode(&payload, &base).unwrap(), new);
        }
    }
}
