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
//!
//! Layout 4 is layout 3 with one byte in front, the token shift: the rotated tokens are
//! stored minus it, chosen so that the values in use start at 0. A rotation spreads a
//! patch's tokens over a band of the byte values that may lie anywhere (even across 255 and
//! 0), and zstd describes its Huffman code by a weight for every value up to the largest in
//! use: reading and expanding those weights was a third of the time a two-row patch of a
//! 384-wide model took to decode (1.5 against 2.3 us per 768 tokens with the shift, and 2%
//! fewer bytes), and a long sparse chain decodes thousands of such patches per checkout.

use zstd::bulk::Compressor;
use zstd::zstd_safe::CParameter;

use super::exponent_groups::{
    BitWriter, MAGIC, MAX_TOKEN, MSB, apply_values_runs, exponent, get_varint, put_varint, token,
    word, zigzag,
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

/// The layout-4 payload of `new` against `base` (same length, whole 32-bit elements), or
/// `None` if zstd fails.
pub(super) fn encode(new: &[u8], base: &[u8], level: i32) -> Option<Vec<u8>> {
    encode_with(new, base, level, true)
}

/// The layout-3 payload (no token shift): no longer written, kept so that the tests show
/// the payloads of earlier commits still decode.
#[cfg(test)]
pub(super) fn encode_unshifted(new: &[u8], base: &[u8], level: i32) -> Option<Vec<u8>> {
    encode_with(new, base, level, false)
}

/// The token shift of layout 4 for `tokens`: the first value in use after the longest run
/// of values not in use (circularly), so that the stored tokens span the fewest values
/// from 0.
fn shift_for(tokens: &[u8]) -> u8 {
    let mut used = [false; 256];
    for &t in tokens {
        used[usize::from(t)] = true;
    }
    let Some(first) = used.iter().position(|&u| u) else {
        return 0;
    };
    // Walk once around from a used value, measuring each gap that ends at a used value.
    let (mut best, mut best_gap, mut gap) = (first, 0, 0);
    for k in 1..=256 {
        let v = (first + k) % 256;
        if used[v] {
            if gap > best_gap {
                (best, best_gap) = (v, gap);
            }
            gap = 0;
        } else {
            gap += 1;
        }
    }
    best as u8
}

fn encode_with(new: &[u8], base: &[u8], level: i32, shifted: bool) -> Option<Vec<u8>> {
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
    let shift = if shifted { shift_for(&tokens) } else { 0 };
    if shift != 0 {
        for t in &mut tokens {
            *t = t.wrapping_sub(shift);
        }
    }
    let mut zstd = Compressor::new(level).ok()?;
    // The decoder knows the element count; the frame need not say it.
    zstd.set_parameter(CParameter::ContentSizeFlag(false))
        .ok()?;
    let frame = zstd.compress(&tokens).ok()?;
    let body = frame.get(MAGIC.len()..)?;
    let raw = raw.finish();
    let mut out = Vec::with_capacity(body.len() + raw.len() + 6);
    if shifted {
        out.push(shift);
    }
    put_varint(&mut out, body.len());
    out.extend_from_slice(body);
    out.extend_from_slice(&raw);
    Some(out)
}

/// Inverse of [`encode`]. Errors say why the payload does not fit the base.
#[cfg(test)]
pub(super) fn decode(payload: &[u8], base: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = base.to_vec();
    decode_in_place(payload, &mut out, true)?;
    Ok(out)
}

/// [`decode`] with the base in `data`, replaced by the new chunk: one pass in element
/// order, each element reading its token, its base's exponent and its raw bits (loaded as
/// 8 bytes at its bit position from a buffer padded by 8 zero bytes, then shifted: no
/// branch, and only the bit position carries from one element to the next). `shifted`:
/// a layout-4 payload (its token shift first), else layout 3.
pub(super) fn decode_in_place(
    payload: &[u8],
    data: &mut [u8],
    shifted: bool,
) -> Result<(), String> {
    let n = u32::try_from(data.len() / 4).map_err(|_| "chunk too long".to_string())?;
    decode_runs_in_place(payload, data, &[(0, n)], shifted)
}

/// [`decode_in_place`] of the elements of `data` in `runs` (start, length; in order and
/// within `data`), as if they were one chunk: the inner payload of a sparse patch, applied
/// where its elements are instead of to a gathered copy of them.
pub(super) fn decode_runs_in_place(
    payload: &[u8],
    data: &mut [u8],
    runs: &[(u32, u32)],
    shifted: bool,
) -> Result<(), String> {
    let (shift, payload) = if shifted {
        let (&shift, rest) = payload.split_first().ok_or("no token shift")?;
        (shift, rest)
    } else {
        (0, payload)
    };
    TOKENS_SCRATCH.with(|s| {
        // Only this function borrows it, and it does not call itself.
        let mut s = s.borrow_mut();
        let (frame, tokens) = &mut *s;
        decode_with(payload, shift, data, runs, frame, tokens)
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
    shift: u8,
    data: &mut [u8],
    runs: &[(u32, u32)],
    frame: &mut Vec<u8>,
    tokens: &mut Vec<u8>,
) -> Result<(), String> {
    let n: usize = runs.iter().map(|&(_, len)| len as usize).sum();
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
    let mut rest = &mut tokens[..];
    for &(start, len) in runs {
        let (at, len) = (start as usize * 4, len as usize);
        let (here, tail) = std::mem::take(&mut rest).split_at_mut(len);
        rest = tail;
        for (t, w) in here.iter_mut().zip(data[at..at + 4 * len].chunks_exact(4)) {
            *t = t.wrapping_add(shift).wrapping_sub(rotation(word(w)));
        }
    }
    if u32::from(tokens.iter().fold(0, |m, &t| m.max(t))) > MAX_TOKEN {
        let t = tokens.iter().find(|&&t| u32::from(t) > MAX_TOKEN);
        return Err(format!("bad token {}", t.copied().unwrap_or_default()));
    }
    apply_values_runs(data, runs, tokens, &payload[at..])
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
        // Shift 0: the stored token is the rotated one.
        let mut payload = vec![0];
        put_varint(&mut payload, frame.len() - MAGIC.len());
        payload.extend_from_slice(&frame[MAGIC.len()..]);
        assert!(
            decode(&payload, &[0u8; 16])
                .unwrap_err()
                .contains("bad token")
        );
    }

    #[test]
    fn the_shift_starts_the_tokens_in_use_at_zero() {
        assert_eq!(shift_for(&[]), 0);
        assert_eq!(
            shift_for(&[7, 9, 200]),
            200,
            "the gap 9..200 is the longest"
        );
        assert_eq!(shift_for(&[40, 41, 60]), 40);
        // A band across 255 and 0 starts where it starts, not at 0.
        assert_eq!(shift_for(&[250, 255, 0, 3]), 250);
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(shift_for(&all), 0);
        for tokens in [vec![250u8, 255, 0, 3], vec![7, 9, 200], vec![5]] {
            let s = shift_for(&tokens);
            let span = tokens.iter().map(|t| t.wrapping_sub(s)).max().unwrap();
            // No other shift makes every stored token smaller.
            for other in 0..=255u8 {
                let worse = tokens.iter().map(|t| t.wrapping_sub(other)).max().unwrap();
                assert!(
                    span <= worse,
                    "{tokens:?}: {s} spans {span}, {other} {worse}"
                );
            }
        }
    }

    /// Layout-3 payloads (no shift) of earlier commits decode as before, and the layout-4
    /// payload of the same change is the same tokens, shifted, behind one byte.
    #[test]
    fn unshifted_payloads_of_earlier_commits_still_decode() {
        let base = super::super::tests::wave(8192, 0.02);
        let new = super::super::tests::waved(&base, 1e-4, 1.3);
        let old = encode_unshifted(&new, &base, 3).unwrap();
        let mut data = base.clone();
        decode_in_place(&old, &mut data, false).unwrap();
        assert_eq!(data, new);
        let current = encode(&new, &base, 3).unwrap();
        assert_ne!(current[0], 0, "these tokens are shifted");
        assert!(
            current.len() <= old.len() + 1,
            "{} {}",
            current.len(),
            old.len()
        );
        assert_eq!(decode(&current, &base).unwrap(), new);
        // Read with the wrong shift, the same frame gives other tokens: a shift is never
        // ignored.
        let mut data = base.clone();
        let mut wrong = current.clone();
        wrong[0] = wrong[0].wrapping_add(8);
        assert!(decode_in_place(&wrong, &mut data, true).is_err() || data != new);
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
