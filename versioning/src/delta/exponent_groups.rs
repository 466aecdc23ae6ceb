//! Layout 1 of delta encoding v2: 32-bit subtraction deltas coded in groups by the base
//! element's exponent. Read, no longer written: layout 3 ([`super::scaled_tokens`]) codes
//! the same tokens as one stream rotated by the exponent, as small and twice as fast to
//! decode. Its tokens, raw bits and varints are shared with layout 3.
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

#[cfg(test)]
use zstd::bulk::Compressor;
#[cfg(test)]
use zstd::zstd_safe::CParameter;

/// Deltas below this are tokens by themselves (no raw bits): unchanged elements (0) and
/// steps of a few ulps.
pub(super) const LITERALS: u32 = 16;
/// Bits below the leading one that go into the token: enough that the distribution inside
/// one token's range is nearly flat, so the raw bits are nearly incompressible.
pub(super) const MSB: u32 = 3;
/// The largest token: bit length 32 with all [`MSB`] bits set.
pub(super) const MAX_TOKEN: u32 = LITERALS + (32 - 5) * (1 << MSB) + (1 << MSB) - 1;
/// Exponents with fewer elements than this share a group with their neighbours: a group
/// costs a frame header and a Huffman table (tens of bytes).
const MIN_GROUP: usize = 2048;
/// The zstd frame magic number, little-endian: constant, so not stored.
pub(super) const MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// The token, the number of raw bits and the raw bits of delta `d`.
pub(super) fn token(d: u32) -> (u8, u32, u32) {
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
/// bytes that are not tokens. The decoder uses the same table built at compile time
/// (`VALUES_TABLE`, checked against this one by the tests).
#[cfg(test)]
pub(super) fn untoken_table() -> [Option<(u32, u32)>; 256] {
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

pub(super) fn zigzag(d: u32) -> u32 {
    (d << 1) ^ (((d as i32) >> 31) as u32)
}

pub(super) fn unzigzag(z: u32) -> u32 {
    (z >> 1) ^ (z & 1).wrapping_neg()
}

pub(super) fn word(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

pub(super) fn exponent(bits: u32) -> usize {
    ((bits >> 23) & 0xff) as usize
}

/// The group of each exponent value and the size of each group, from the base alone (so
/// encoder and decoder agree without storing it). Exponents are taken in order and a group
/// is closed once it holds [`MIN_GROUP`] elements; a short last group joins the one before.
/// The decoder counts exponents itself, per stretch ([`groups_of_counts`]).
#[cfg(test)]
fn groups(base: &[u8]) -> ([u8; 256], Vec<usize>) {
    let mut counts = [0usize; 256];
    for b in base.chunks_exact(4) {
        counts[exponent(word(b))] += 1;
    }
    groups_of_counts(&counts)
}

/// [`groups`] from the count of base elements of each exponent.
fn groups_of_counts(counts: &[usize; 256]) -> ([u8; 256], Vec<usize>) {
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

/// Stretches of the chunk the decoder walks side by side (see [`decode_in_place`]).
const LANES: usize = 4;

/// Packs values of up to 28 bits, LSB first.
pub(super) struct BitWriter {
    pub(super) out: Vec<u8>,
    pub(super) acc: u64,
    pub(super) bits: u32,
}

impl BitWriter {
    pub(super) fn put(&mut self, value: u32, bits: u32) {
        self.acc |= u64::from(value) << self.bits;
        self.bits += bits;
        if self.bits >= 32 {
            self.out.extend_from_slice(&(self.acc as u32).to_le_bytes());
            self.acc >>= 32;
            self.bits -= 32;
        }
    }

    pub(super) fn finish(mut self) -> Vec<u8> {
        while self.bits > 0 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.bits = self.bits.saturating_sub(8);
        }
        self.out
    }
}

pub(super) fn put_varint(out: &mut Vec<u8>, mut v: usize) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(super) fn get_varint(data: &[u8], at: &mut usize) -> Result<usize, String> {
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
/// `None` if zstd fails. No longer written (layout 3 replaced it), kept so that the tests
/// can make the payloads earlier commits stored.
#[cfg(test)]
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
#[cfg(test)]
pub(super) fn decode(payload: &[u8], base: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = base.to_vec();
    decode_in_place(payload, &mut out)?;
    Ok(out)
}

/// Bytes read at once from the raw bits: any value (at most 28 bits) starting at any bit
/// offset fits in them.
pub(super) const WORD: usize = 8;

/// [`decode`] with the base in `data`, replaced by the new chunk (no second buffer: a
/// fresh 256 KiB one per patch cost page faults at checkout).
///
/// Two passes, each free of long dependency chains (the first version, one loop with a
/// bit reader refilled on demand, ran at ~8 ns an element):
/// 1. each element's token, taken from its group's stream. The cursor of a group is
///    loaded, used and stored once per element, and consecutive elements mostly share a
///    group, so one walk would wait on that store every element; the chunk is cut into
///    [`LANES`] stretches walked side by side, each with cursors of its own starting where
///    the stretches before it leave each group (from per-stretch exponent counts, which
///    also give the groups);
/// 2. the values, in element order: each element loads the 8 bytes at its bit position in
///    the raw bits and shifts, branch-free (the raw bits are copied into a buffer padded by
///    8 zero bytes so that the load never runs past it), and only the bit position carries
///    from one element to the next.
pub(super) fn decode_in_place(payload: &[u8], data: &mut [u8]) -> Result<(), String> {
    let n = data.len() / 4;
    let per = n.div_ceil(LANES);
    // Byte by byte (bits 23..31 of the little-endian word), which vectorizes.
    let mut exponents = vec![0u8; n];
    for (e, w) in exponents.iter_mut().zip(data.chunks_exact(4)) {
        *e = (w[3] << 1) | (w[2] >> 7);
    }
    let lanes: [&[u8]; LANES] =
        std::array::from_fn(|k| &exponents[(k * per).min(n)..((k + 1) * per).min(n)]);
    // The last lane is the shortest: up to its length every lane has an element. The
    // lanes are named one by one so that the compiler keeps them in registers.
    let short = lanes[LANES - 1].len();
    let [l0, l1, l2, l3] = lanes;
    let mut lane_counts = [[0u32; 256]; LANES];
    {
        let [c0, c1, c2, c3] = &mut lane_counts;
        for j in 0..short {
            c0[usize::from(l0[j])] += 1;
            c1[usize::from(l1[j])] += 1;
            c2[usize::from(l2[j])] += 1;
            c3[usize::from(l3[j])] += 1;
        }
        for (lane, c) in [(l0, c0), (l1, c1), (l2, c2)] {
            for &e in lane.get(short..).unwrap_or_default() {
                c[usize::from(e)] += 1;
            }
        }
    }
    let mut counts = [0usize; 256];
    for lane in &lane_counts {
        for (c, &l) in counts.iter_mut().zip(lane) {
            *c += l as usize;
        }
    }
    let (group_of, sizes) = groups_of_counts(&counts);
    // All groups' tokens in one buffer, in group order.
    let mut tokens = vec![0u8; n];
    let mut at = 0;
    let mut frame = Vec::new();
    let mut start = 0;
    let mut next = Vec::with_capacity(sizes.len());
    for (g, &size) in sizes.iter().enumerate() {
        let len = get_varint(payload, &mut at)?;
        let body = payload
            .get(at..at.saturating_add(len))
            .ok_or_else(|| format!("token group {g} is truncated"))?;
        at += len;
        frame.clear();
        frame.extend_from_slice(&MAGIC);
        frame.extend_from_slice(body);
        // Decompressing into the group's place makes a corrupt frame fail instead of
        // allocating without limit.
        let got = crate::codec::decompress_into(&frame, &mut tokens[start..start + size])
            .map_err(|e| format!("token group {g}: {e}"))?;
        if got != size {
            return Err(format!(
                "token group {g} has {got} tokens, the base needs {size}"
            ));
        }
        next.push(start);
        start += size;
    }
    // Every token is used once (each group holds exactly its elements' tokens), so they
    // are checked here in one pass (tokens are exactly the bytes up to MAX_TOKEN) and the
    // loops below look them up without a branch.
    if u32::from(tokens.iter().fold(0, |m, &t| m.max(t))) > MAX_TOKEN {
        let t = tokens.iter().find(|&&t| u32::from(t) > MAX_TOKEN);
        return Err(format!("bad token {}", t.copied().unwrap_or_default()));
    }
    // Pass 1: lane k's cursor in group g starts after the elements of g in lanes < k.
    let mut cursor = [[0usize; 256]; LANES];
    for (lane_cursor, lane) in cursor.iter_mut().zip(&lane_counts) {
        let mut in_group = vec![0usize; sizes.len()];
        // An empty chunk has no group: every count is 0 then.
        for (e, &c) in lane.iter().enumerate().filter(|(_, c)| **c > 0) {
            in_group[usize::from(group_of[e])] += c as usize;
        }
        for (g, add) in in_group.into_iter().enumerate() {
            lane_cursor[g] = next[g];
            next[g] += add;
        }
    }
    let mut element_tokens = vec![0u8; n];
    {
        let (o0, rest) = element_tokens.split_at_mut(l0.len());
        let (o1, rest) = rest.split_at_mut(l1.len());
        let (o2, o3) = rest.split_at_mut(l2.len());
        let [c0, c1, c2, c3] = &mut cursor;
        // Each lane takes exactly as many tokens from a group as it has elements in it, so
        // no cursor leaves its group.
        let take = |c: &mut [usize; 256], e: u8| {
            let g = usize::from(group_of[usize::from(e)]);
            let t = tokens[c[g]];
            c[g] += 1;
            t
        };
        for j in 0..short {
            o0[j] = take(c0, l0[j]);
            o1[j] = take(c1, l1[j]);
            o2[j] = take(c2, l2[j]);
            o3[j] = take(c3, l3[j]);
        }
        for (lane, c, out) in [(l0, c0, o0), (l1, c1, o1), (l2, c2, o2)] {
            for (o, &e) in out.iter_mut().zip(lane).skip(short) {
                *o = take(c, e);
            }
        }
    }
    // Pass 2: the values.
    apply_values(data, &element_tokens, &payload[at..])
}

/// Adds to each 4-byte element of `data` the delta its token and the raw low bits in `raw`
/// give (the values pass of layouts 1 and 3, which differ only in how the tokens are coded):
/// every raw bit must be used, and a payload that asks for more bits than `raw` holds is an
/// error, never a read past its end.
pub(super) fn apply_values(data: &mut [u8], tokens: &[u8], raw: &[u8]) -> Result<(), String> {
    let n = u32::try_from(data.len() / 4).map_err(|_| "chunk too long".to_string())?;
    apply_values_runs(data, &[(0, n)], tokens, raw)
}

/// [`apply_values`] to the elements of `data` in `runs` (start, length; in order, within
/// `data`, together as many as `tokens`), as if they were one chunk: a sparse patch
/// rewrites its elements where they are, without gathering them first.
pub(super) fn apply_values_runs(
    data: &mut [u8],
    runs: &[(u32, u32)],
    tokens: &[u8],
    raw: &[u8],
) -> Result<(), String> {
    VALUES_SCRATCH.with(|s| {
        // Only this function borrows it, and it does not call itself.
        let mut s = s.borrow_mut();
        let (deltas, padded) = &mut *s;
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("bmi2") {
            // SAFETY: the CPU has BMI2 (checked just above), all the function requires.
            return unsafe { apply_values_bmi2(data, runs, tokens, raw, deltas, padded) };
        }
        apply_values_any(data, runs, tokens, raw, deltas, padded)
    })
}

thread_local! {
    /// The buffers of [`apply_values`] (the deltas, the padded raw bits), kept per thread
    /// from one patch to the next: a checkout's decoding thread applies thousands of
    /// patches, and fresh buffers were allocated and zero-filled for each (256 KiB of
    /// deltas per dense patch).
    static VALUES_SCRATCH: std::cell::RefCell<(Vec<u32>, Vec<u8>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// [`apply_values`] compiled for CPUs with BMI2, whose shifts by a variable count
/// (`shrx`) and bit extraction (`bzhi`) are single instructions that read no flags: a dense
/// patch of a 256 KiB chunk decoded in 172 us against 182 us without (about 5%; see
/// versioning/README.md).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "bmi1,bmi2")]
fn apply_values_bmi2(
    data: &mut [u8],
    runs: &[(u32, u32)],
    tokens: &[u8],
    raw: &[u8],
    deltas: &mut Vec<u32>,
    padded: &mut Vec<u8>,
) -> Result<(), String> {
    apply_values_any(data, runs, tokens, raw, deltas, padded)
}

/// For each token: the delta's high part in the low half, the mask of its raw bits above
/// (one load an entry in the values loop, and the mask needs no shift by a count that the
/// compiler must first reduce); 0 for bytes that are no token (never looked up: the
/// callers refuse them first). Built at compile time: computing it took about a
/// microsecond, paid by every patch, which a one-row patch decodes in ~20.
const VALUES_TABLE: [u64; 256] = {
    let mut table = [0u64; 256];
    let mut t = 0u32;
    while t <= MAX_TOKEN {
        let (high, extra) = if t < LITERALS {
            (t, 0)
        } else {
            let n = 5 + (t - LITERALS) / (1 << MSB);
            let m = (t - LITERALS) % (1 << MSB);
            let shift = n - 1 - MSB;
            ((1u32 << (n - 1)) | (m << shift), shift)
        };
        table[t as usize] = high as u64 | ((((1u32 << extra) - 1) as u64) << 32);
        t += 1;
    }
    table
};

/// [`raw_bits`] of every byte, looked up in the values loop (one load instead of three
/// operations an element).
const RAW_BITS: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut t = 0;
    while t < 256 {
        table[t] = raw_bits(t as u8);
        t += 1;
    }
    table
};

/// [`apply_values`] for any CPU, with the caller's buffers; inlined into the variants
/// compiled for CPU features.
#[inline(always)]
fn apply_values_any(
    data: &mut [u8],
    runs: &[(u32, u32)],
    tokens: &[u8],
    raw: &[u8],
    deltas: &mut Vec<u32>,
    padded: &mut Vec<u8>,
) -> Result<(), String> {
    // The raw bits the tokens take, summed first (a pass that vectorizes): a payload that
    // asks for more bits than `raw` holds is refused before any element is touched, and
    // the value loop needs no check of its own (one compare and branch an element).
    let bits: usize = tokens
        .chunks(1 << 16)
        .map(|part| part.iter().map(|&t| u32::from(raw_bits(t))).sum::<u32>() as usize)
        .sum();
    if bits.div_ceil(8) != raw.len() {
        return Err(format!(
            "{} bytes of raw bits, the tokens take {}",
            raw.len(),
            bits.div_ceil(8)
        ));
    }
    let (table, extra_of) = (&VALUES_TABLE, &RAW_BITS);
    padded.clear();
    padded.extend_from_slice(raw);
    padded.extend_from_slice(&[0; WORD]);
    // The deltas first, into a buffer of their own (the loop's only work: a token, its
    // table entries and the raw bits loaded, few enough loads to keep up), then added to
    // the base in a pass that vectorizes. Every delta is overwritten, so the buffer is
    // only resized (zero-filled where it grows), not cleared.
    deltas.resize(tokens.len(), 0);
    let mut pos = 0usize;
    for (d, &t) in deltas.iter_mut().zip(tokens) {
        let e = table[usize::from(t)];
        // The positions stay below `bits` (summed from the same counts), so within `raw`
        // and its padding.
        let at = pos >> 3;
        let mut w = [0u8; WORD];
        w.copy_from_slice(&padded[at..at + WORD]);
        let low = (u64::from_le_bytes(w) >> (pos & 7)) as u32 & (e >> 32) as u32;
        pos += usize::from(extra_of[usize::from(t)]);
        *d = e as u32 | low;
    }
    let mut deltas = &deltas[..];
    for &(start, len) in runs {
        let (at, len) = (start as usize * 4, len as usize);
        let (here, rest) = deltas.split_at(len.min(deltas.len()));
        deltas = rest;
        for (o, &d) in data[at..at + 4 * len].chunks_exact_mut(4).zip(here) {
            o.copy_from_slice(&unzigzag(d).wrapping_add(word(o)).to_le_bytes());
        }
    }
    Ok(())
}

/// The number of raw bits below token `t`'s high part, computed (as [`untoken_table`]
/// says for every token: literals take none, each further [`MSB`]-bit step of tokens one
/// more), so that summing them vectorizes; at least the table's for any byte.
const fn raw_bits(t: u8) -> u8 {
    const _: () = assert!(MSB == 3 && LITERALS == 16);
    (t >> MSB).saturating_sub(1)
}

#[cfg(test)]
pub(super) mod tests {
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
        // The values pass's table, built at compile time, says the same for every token.
        for (t, e) in table.iter().enumerate() {
            let (high, extra) = e.unwrap_or((0, 0));
            let mask = (1u64 << extra) - 1;
            assert_eq!(VALUES_TABLE[t], u64::from(high) | (mask << 32), "{t}");
            assert_eq!(RAW_BITS[t], raw_bits(t as u8), "{t}");
        }
        // The decoder's computed count of raw bits agrees with the table on every token.
        for (t, e) in table.iter().enumerate() {
            let extra = e.map_or(0, |e| e.1);
            assert!(u32::from(raw_bits(t as u8)) >= extra, "{t}");
            if t <= MAX_TOKEN as usize {
                assert_eq!(u32::from(raw_bits(t as u8)), extra, "{t}");
            }
        }
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
        check_round_trip_and_corruption(encode, decode);
    }

    /// A layout's encoder: new chunk, base chunk, zstd level.
    pub(in crate::delta) type Encode = fn(&[u8], &[u8], i32) -> Option<Vec<u8>>;
    /// A layout's decoder: payload, base chunk.
    pub(in crate::delta) type Decode = fn(&[u8], &[u8]) -> Result<Vec<u8>, String>;

    /// A dense step of 20,000 F32 weights: it round-trips, takes under 3/4 of the chunk, and
    /// every cut, extension or truncation of its payload (and an empty chunk) is caught;
    /// shared by the layouts that code tokens and raw low bits (1 and 3).
    pub(in crate::delta) fn check_round_trip_and_corruption(encode: Encode, decode: Decode) {
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
        assert!(decode(&payload, &base[..base.len() - 4]).is_err());
        assert_eq!(
            decode(&encode(&[], &[], 3).unwrap(), &[]).unwrap(),
            Vec::<u8>::new()
        );
    }

    /// A base and a new chunk from `(base bits, how, other bits)`: the new element is
    /// `other` (how 0, 1), the base's (2) or the base's plus a small step (3).
    /// `shared_exponents`: bases of how 1-3 get one of three exponents, so that exponent
    /// groups really form.
    pub(in crate::delta) fn chunks_of(
        pairs: &[(u32, u32, u32)],
        shared_exponents: bool,
    ) -> (Vec<u8>, Vec<u8>) {
        let mut base = Vec::new();
        let mut new = Vec::new();
        for &(b, how, other) in pairs {
            let b = if shared_exponents && how != 0 {
                (b & 0x807f_ffff) | (((120 + how) << 23) & 0x7f80_0000)
            } else {
                b
            };
            let n = match how {
                0 | 1 => other,
                2 => b,
                _ => b.wrapping_add(other >> 12),
            };
            base.extend_from_slice(&b.to_le_bytes());
            new.extend_from_slice(&n.to_le_bytes());
        }
        (base, new)
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
            let (base, new) = chunks_of(&pairs, true);
            let payload = encode(&new, &base, 3).unwrap();
            proptest::prop_assert_eq!(decode(&payload, &base).unwrap(), new);
        }
    }
}
