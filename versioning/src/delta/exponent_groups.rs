//! Layout 1 of delta encoding v2: 32-bit subtraction deltas coded in groups by the base
//! element's exponent.
//!
//! A dense training step moves every weight by about the same absolute amount, so the step
//! measured in units of the weight's last place (what the bit-pattern difference counts)
//! scales with 2^-exponent of the weight: a weight of 0.02 and one of 0.0003 differ in their
//! delta's magnitude by 2^6. Byte planes over a whole chunk mix all those scales in each
//! plane, and an order-0 coder then pays for the mixture. The decoder already has the base,
//! so it knows each element's exponent: grouping elements by it gives each group one scale.
//!
//! Each delta `d = zigzag(new - base)` (32-bit, wrapping, as in [`super::Transform::Sub`])
//! is split like JPEG XL's hybrid integers: values below [`LITERALS`] are their own token;
//! larger ones become a token naming their bit length and the [`MSB`] bits below the leading
//! one, plus the remaining low bits verbatim. For a smooth, wide distribution those low bits
//! are close to uniform, so storing them raw loses little, while the token carries the shape
//! of the distribution and is entropy coded: one zstd frame per exponent group (zstd codes
//! the token bytes with its own Huffman table per frame). The token streams' zstd magic
//! numbers are dropped (constant) and restored on decode.
//!
//! Payload: for each group in exponent order, its frame's length (LEB128) and the frame;
//! then the raw low bits of all elements in element order, packed LSB first. The group
//! sizes are not stored: the decoder counts them from the base.
//!
//! Every 32-bit pattern round-trips (the transform is a bijection on bit patterns), so this
//! is exact for NaN payloads, -0.0, infinities, subnormals, and any other 32-bit data; for
//! data without f32 exponents it is merely not smaller, and the caller then keeps another
//! layout.

use zstd::bulk::Compressor;
use zstd::zstd_safe::CParameter;

/// Deltas below this are tokens by themselves (no raw bits): unchanged elements (0) and
/// steps of a few ulps.
const LITERALS: u32 = 16;
/// Bits below the leading one that go into the token: enough that the distribution inside
/// one token's range is nearly flat, so the raw bits are nearly incompressible.
const MSB: u32 = 3;
/// The largest token: bit length 32 with all [`MSB`] bits set.
const MAX_TOKEN: u32 = LITERALS + (32 - 5) * (1 << MSB) + (1 << MSB) - 1;
/// Exponents with fewer elements than this share a group with their neighbours: a group
/// costs a frame header and a Huffman table (tens of bytes).
const MIN_GROUP: usize = 2048;
/// The zstd frame magic number, little-endian: constant, so not stored.
const MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// The token, the number of raw bits and the raw bits of delta `d`.
fn token(d: u32) -> (u8, u32, u32) {
    if d < LITERALS {
        return (d as u8, 0, 0);
    }
    // d >= 16, so its bit length n is at least 5 and n - 1 - MSB at least 1.
    let n = 32 - d.leading_zeros();
    let shift = n - 1 - MSB;
    let m = (d >> shift) & ((1 << MSB) - 1);
    let t = LITERALS + (n - 5) * (1 << MSB) + m;
    (t as u8, shift, d & ((1u32 << shift) - 1))
}

/// For each token: the delta's high part and the number of raw bits below it; `None` for
/// bytes that are not tokens.
fn untoken_table() -> [Option<(u32, u32)>; 256] {
    let mut table = [None; 256];
    for (t, slot) in table.iter_mut().enumerate() {
        let t = t as u32;
        *slot = if t < LITERALS {
            Some((t, 0))
        } else if t <= MAX_TOKEN {
            let n = 5 + (t - LITERALS) / (1 << MSB);
            let m = (t - LITERALS) % (1 << MSB);
            let shift = n - 1 - MSB;
            Some(((1u32 << (n - 1)) | (m << shift), shift))
        } else {
            None
        };
    }
    table
}

fn zigzag(d: u32) -> u32 {
    (d << 1) ^ (((d as i32) >> 31) as u32)
}

fn unzigzag(z: u32) -> u32 {
    (z >> 1) ^ (z & 1).wrapping_neg()
}

fn word(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn exponent(bits: u32) -> usize {
    ((bits >> 23) & 0xff) as usize
}

/// The group of each exponent value and the size of each group, from the base alone (so
/// encoder and decoder agree without storing it). Exponents are taken in order and a group
/// is closed once it holds [`MIN_GROUP`] elements; a short last group joins the one before.
fn groups(base: &[u8]) -> ([u8; 256], Vec<usize>) {
    let mut counts = [0usize; 256];
    for b in base.chunks_exact(4) {
        counts[exponent(word(b))] += 1;
    }
    let mut group_of = [0u8; 256];
    let mut sizes: Vec<usize> = Vec::new();
    let mut open = 0usize;
    for (e, &c) in counts.iter().enumerate() {
        // At most 256 groups, so the index fits a byte.
        group_of[e] = sizes.len() as u8;
        open += c;
        if open >= MIN_GROUP {
            sizes.push(open);
            open = 0;
        }
    }
    match sizes.last_mut() {
        Some(last) => *last += open,
        None if open > 0 => sizes.push(open),
        None => {}
    }
    // Exponents past the last closed group (the short tail) belong to the last group.
    let last = sizes.len().saturating_sub(1) as u8;
    for g in group_of.iter_mut() {
        *g = (*g).min(last);
    }
    (group_of, sizes)
}

/// Packs values of up to 28 bits, LSB first.
struct BitWriter {
    out: Vec<u8>,
    acc: u64,
    bits: u32,
}

impl BitWriter {
    fn put(&mut self, value: u32, bits: u32) {
        self.acc |= u64::from(value) << self.bits;
        self.bits += bits;
        if self.bits >= 32 {
            self.out.extend_from_slice(&(self.acc as u32).to_le_bytes());
            self.acc >>= 32;
            self.bits -= 32;
        }
    }

    fn finish(mut self) -> Vec<u8> {
        while self.bits > 0 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.bits = self.bits.saturating_sub(8);
        }
        self.out
    }
}

/// Reads what [`BitWriter`] wrote; running past the end is an error.
struct BitReader<'a> {
    data: &'a [u8],
    at: usize,
    acc: u64,
    bits: u32,
}

impl BitReader<'_> {
    fn take(&mut self, bits: u32) -> Result<u32, String> {
        if self.bits < bits {
            if let Some(w) = self.data.get(self.at..self.at + 4) {
                self.acc |= u64::from(word(w)) << self.bits;
                self.bits += 32;
                self.at += 4;
            } else {
                while self.bits < bits {
                    let byte = self.data.get(self.at).ok_or("raw bits are truncated")?;
                    self.acc |= u64::from(*byte) << self.bits;
                    self.bits += 8;
                    self.at += 1;
                }
            }
        }
        let v = (self.acc & ((1u64 << bits) - 1)) as u32;
        self.acc >>= bits;
        self.bits -= bits;
        Ok(v)
    }

    /// Bits taken so far: every byte loaded is in the accumulator or was taken.
    fn consumed(&self) -> u64 {
        8 * self.at as u64 - u64::from(self.bits)
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: usize) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(data: &[u8], at: &mut usize) -> Result<usize, String> {
    let mut v = 0usize;
    for shift in (0..35).step_by(7) {
        let byte = *data.get(*at).ok_or("payload ends inside a length")?;
        *at += 1;
        v |= usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("length is too long".into())
}

/// The layout-1 payload of `new` against `base` (same length, whole 32-bit elements), or
/// `None` if zstd fails.
pub(super) fn encode(new: &[u8], base: &[u8], level: i32) -> Option<Vec<u8>> {
    let (group_of, sizes) = groups(base);
    let mut tokens: Vec<Vec<u8>> = sizes.iter().map(|&s| Vec::with_capacity(s)).collect();
    let mut raw = BitWriter {
        out: Vec::with_capacity(new.len() / 2),
        acc: 0,
        bits: 0,
    };
    for (a, b) in new.chunks_exact(4).zip(base.chunks_exact(4)) {
        let (a, b) = (word(a), word(b));
        let (t, bits, low) = token(zigzag(a.wrapping_sub(b)));
        tokens[usize::from(group_of[exponent(b)])].push(t);
        raw.put(low, bits);
    }
    let mut zstd = Compressor::new(level).ok()?;
    // The decoder knows each group's size; the frame need not say it.
    zstd.set_parameter(CParameter::ContentSizeFlag(false))
        .ok()?;
    let raw = raw.finish();
    let mut out = Vec::with_capacity(new.len() / 4 + raw.len());
    for group in &tokens {
        let frame = zstd.compress(group).ok()?;
        let body = frame.get(MAGIC.len()..)?;
        put_varint(&mut out, body.len());
        out.extend_from_slice(body);
    }
    out.extend_from_slice(&raw);
    Some(out)
}

/// Inverse of [`encode`]. Errors say why the payload does not fit the base.
pub(super) fn decode(payload: &[u8], base: &[u8]) -> Result<Vec<u8>, String> {
    let (group_of, sizes) = groups(base);
    // All groups' tokens in one buffer; each group's cursor starts at its offset.
    let mut tokens: Vec<u8> = Vec::with_capacity(base.len() / 4);
    let mut cursor: Vec<usize> = Vec::with_capacity(sizes.len());
    let mut at = 0;
    let mut frame = Vec::new();
    for (g, &size) in sizes.iter().enumerate() {
        let len = get_varint(payload, &mut at)?;
        let body = payload
            .get(at..at.saturating_add(len))
            .ok_or_else(|| format!("token group {g} is truncated"))?;
        at += len;
        frame.clear();
        frame.extend_from_slice(&MAGIC);
        frame.extend_from_slice(body);
        // The capacity bound makes a corrupt frame fail instead of allocating without limit.
        let group = crate::codec::decompress_vec(&frame, size)
            .map_err(|e| format!("token group {g}: {e}"))?;
        if group.len() != size {
            return Err(format!(
                "token group {g} has {} tokens, the base needs {size}",
                group.len()
            ));
        }
        cursor.push(tokens.len());
        tokens.extend_from_slice(&group);
    }
    // Every token is used once (each group holds exactly its elements' tokens), so they
    // are checked here in one pass and the per-element loop below looks them up without
    // a branch.
    let table = untoken_table();
    if let Some(t) = tokens.iter().find(|&&t| table[usize::from(t)].is_none()) {
        return Err(format!("bad token {t}"));
    }
    let table = table.map(|e| e.unwrap_or((0, 0)));
    let raw = &payload[at..];
    let mut bits = BitReader {
        data: raw,
        at: 0,
        acc: 0,
        bits: 0,
    };
    let mut out = vec![0u8; base.len()];
    for (o, b) in out.chunks_exact_mut(4).zip(base.chunks_exact(4)) {
        let b = word(b);
        let c = &mut cursor[usize::from(group_of[exponent(b)])];
        // Each group holds exactly as many tokens as the base has elements in it.
        let t = tokens[*c];
        *c += 1;
        let (high, extra) = table[usize::from(t)];
        let d = high | bits.take(extra)?;
        o.copy_from_slice(&unzigzag(d).wrapping_add(b).to_le_bytes());
    }
    let used = bits.consumed().div_ceil(8);
    if used != raw.len() as u64 {
        return Err(format!("{} bytes of raw bits, {used} used", raw.len()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn tokens_cover_every_delta() {
        let table = untoken_table();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let edges = [
            0u32,
            1,
            15,
            16,
            17,
            31,
            32,
            255,
            256,
            1 << 31,
            u32::MAX,
            u32::MAX - 1,
        ];
        let random = (0..10_000).map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x as u32) >> (x >> 59)
        });
        for d in edges.into_iter().chain(random) {
            let (t, bits, low) = token(d);
            assert!(u32::from(t) <= MAX_TOKEN, "{d}");
            assert!(bits <= 28 && low < (1 << bits).max(1), "{d}");
            let (high, extra) = table[usize::from(t)].unwrap();
            assert_eq!(extra, bits);
            assert_eq!(high | low, d);
        }
        assert!(table[MAX_TOKEN as usize + 1].is_none());
        for z in [0u32, 1, 2, 3, u32::MAX, u32::MAX - 1] {
            assert_eq!(zigzag(unzigzag(z)), z);
        }
        assert_eq!(zigzag(1u32.wrapping_neg()), 1);
        assert_eq!(zigzag(1), 2);
    }

    #[test]
    fn groups_come_from_the_base_and_cover_it() {
        // 3000 elements of exponent 120, 100 of 121, 2500 of 122, 10 of 200.
        let mut base = Vec::new();
        for (e, n) in [(120u32, 3000), (121, 100), (122, 2500), (200, 10)] {
            for _ in 0..n {
                base.extend_from_slice(&(e << 23).to_le_bytes());
            }
        }
        let (group_of, sizes) = groups(&base);
        assert_eq!(sizes, [3000, 2610]);
        assert_eq!((group_of[120], group_of[121], group_of[122]), (0, 1, 1));
        assert_eq!(group_of[200], 1);
        let (_, tiny) = groups(&base[..40]);
        assert_eq!(tiny, [10]);
        assert!(groups(&[]).1.is_empty());
    }

    #[test]
    fn round_trip_and_corruption() {
        let base: Vec<u8> = (0..20_000u32)
            .flat_map(|i| (((i as f32) * 0.37).sin() * 0.02).to_le_bytes())
            .collect();
        let new: Vec<u8> = base
            .chunks_exact(4)
            .enumerate()
            .flat_map(|(i, b)| {
                (f32::from_le_bytes(b.try_into().unwrap()) + 1e-4 * ((i as f32) * 1.3).cos())
                    .to_le_bytes()
            })
            .collect();
        let payload = encode(&new, &base, 3).unwrap();
        assert!(payload.len() < new.len() * 3 / 4, "{}", payload.len());
        assert_eq!(decode(&payload, &base).unwrap(), new);
        assert!(decode(&payload[..payload.len() - 1], &base).is_err());
        let mut longer = payload.clone();
        longer.push(0);
        assert!(decode(&longer, &base).is_err());
        assert!(decode(&payload[..10], &base).is_err());
        assert_eq!(
            decode(&encode(&[], &[], 3).unwrap(), &[]).unwrap(),
            Vec::<u8>::new()
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Every pair of 32-bit patterns round-trips through this layout, whether or not
        /// the encoder would have chosen it (arbitrary bits cover NaN payloads, -0.0,
        /// infinities and subnormals); sizes span one and several groups.
        #[test]
        fn any_bits_round_trip(
            pairs in proptest::collection::vec((proptest::prelude::any::<u32>(), 0u32..4, proptest::prelude::any::<u32>()), 0..5000)
        ) {
            let mut base = Vec::new();
            let mut new = Vec::new();
            for (b, how, other) in pairs {
                // Many elements share exponents so that groups really form.
                let b = if how == 0 { b } else { (b & 0x807f_ffff) | (((120 + how) << 23) & 0x7f80_0000) };
                let n = match how {
                    0 | 1 => other,
                    2 => b,
                    _ => b.wrapping_add(other >> 12),
                };
                base.extend_from_slice(&b.to_le_bytes());
                new.extend_from_slice(&n.to_le_bytes());
            }
            let payload = encode(&new, &base, 3).unwrap();
            proptest::prop_assert_eq!(decode(&payload, &base).unwrap(), new);
        }
    }
}
