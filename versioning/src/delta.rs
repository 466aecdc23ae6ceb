//! Exact deltas between two versions of a chunk.
//!
//! Two layouts exist, both exact for every value (NaN payloads, -0.0, infinities,
//! subnormals): no floating-point arithmetic is involved, only bijections on the elements'
//! bit patterns.
//!
//! **Byte planes** (layout 0; the whole of encoding v1): `zstd(byte_planes(transform(new,
//! base)))`, where the transform is one of two bijections (chosen per chunk):
//! - **XOR** of the bit patterns;
//! - **SUB**: the wrapping integer difference of the bit patterns (`new - base` as unsigned
//!   little-endian integers of the element size), zigzag-mapped.
//!
//! A small training step leaves the sign, exponent and high mantissa bits of most weights
//! unchanged, so the high bytes of each transformed element are mostly zero. XOR is ideal
//! when few bits flip; SUB wins for dense small steps, where a carry through the mantissa
//! flips many bits under XOR but adds little under subtraction. Grouping byte k of every
//! element together (byte planes) turns the zero high bytes into long runs that zstd
//! removes, while the noisy low bytes cost about their size. Each plane is its own zstd
//! frame.
//!
//! **Exponent-scaled tokens** (layout 4, 32-bit elements only; see [`scaled_tokens`]): SUB
//! deltas as tokens rotated by the base element's exponent, one entropy-coded stream in
//! element order, which a dense step needs to get close to its entropy. **Sparse** (layout
//! 5): the runs of changed elements, then their delta in one of the other layouts.
//!
//! Layouts no longer written still decode: **exponent groups** (layout 1,
//! [`exponent_groups`]), the same tokens coded per group of base elements sharing an
//! exponent, at about half the speed; layout 3, the tokens of layout 4 without its token
//! shift; layout 2, the sparse layout with its runs in a zstd frame.
//!
//! Encoding v2 (the current one) starts each payload with its layout byte and keeps the
//! smaller layout per chunk; v1 payloads (byte planes without the layout byte) still
//! decode. The caller keeps a delta only when it is smaller than the chunk itself.

mod exponent_groups;
mod scaled_tokens;

use exponent_groups::{get_varint, put_varint};

use serde::{Deserialize, Serialize};

/// The name of the current encoding, recorded in every new [`crate::objects::Delta`].
pub const ENCODING: &str = "layout-byte/byteplanes-or-f32-exponent-groups/zstd/v2";

/// The name of the first encoding (byte planes only, no layout byte), still decoded.
pub const ENCODING_V1: &str = "xor-or-zigzag-sub/byteplanes/zstd-per-plane/v1";

/// A delta encoding this code can decode, named by a [`crate::objects::Delta`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// [`ENCODING_V1`].
    V1,
    /// [`ENCODING`].
    V2,
}

impl Version {
    /// The version an encoding name stands for, `None` if unknown.
    pub fn of(encoding: &str) -> Option<Version> {
        match encoding {
            ENCODING => Some(Version::V2),
            ENCODING_V1 => Some(Version::V1),
            _ => None,
        }
    }
}

/// How a payload is laid out (for reports: the decoder reads it from the payload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Byte planes, each a zstd frame (all of v1; layout 0 of v2).
    BytePlanes,
    /// 32-bit SUB deltas grouped by the base's exponent (layout 1 of v2).
    ExponentGroups,
    /// Only the changed runs of elements, then their delta in another layout (layouts 2
    /// and 5 of v2, which differ in how the runs are written).
    Sparse,
    /// 32-bit SUB deltas as tokens rotated by the base's exponent (layouts 3 and 4 of v2,
    /// which differ by the token shift).
    ScaledTokens,
}

/// The layout of a payload of encoding `version`, `None` if its layout byte is unknown.
pub fn layout(version: Version, payload: &[u8]) -> Option<Layout> {
    match (version, payload.first()) {
        (Version::V1, _) => Some(Layout::BytePlanes),
        (Version::V2, Some(&LAYOUT_PLANES)) => Some(Layout::BytePlanes),
        (Version::V2, Some(&LAYOUT_EXPONENT_GROUPS)) => Some(Layout::ExponentGroups),
        (Version::V2, Some(&(LAYOUT_SPARSE | LAYOUT_SPARSE_RUNS))) => Some(Layout::Sparse),
        (Version::V2, Some(&(LAYOUT_SCALED_TOKENS | LAYOUT_SHIFTED_TOKENS))) => {
            Some(Layout::ScaledTokens)
        }
        (Version::V2, _) => None,
    }
}

/// Layout byte of a v2 payload: byte planes, as in v1.
const LAYOUT_PLANES: u8 = 0;
/// Layout byte of a v2 payload: 32-bit SUB deltas in exponent groups.
const LAYOUT_EXPONENT_GROUPS: u8 = 1;
/// Layout byte of a v2 payload: the runs of changed elements (a zstd frame of (start,
/// length) u32 pairs, preceded by its length as u32 LE), then the changed elements coded
/// against the same elements of the base as a dense payload (with its layout byte).
/// Decoding rewrites the runs of the base in place, so a chunk with a few changed rows
/// decodes in the time of those rows: the patches of a long sparse chain stay cheap to
/// apply. No longer written (layout 5 replaced it); payloads of earlier commits decode.
const LAYOUT_SPARSE: u8 = 2;
/// Layout byte of a v2 payload: 32-bit SUB deltas as exponent-scaled tokens in element
/// order ([`scaled_tokens`]): the size of exponent groups, decoded in one pass. No longer
/// written (layout 4 replaced it); payloads of earlier commits decode.
const LAYOUT_SCALED_TOKENS: u8 = 3;
/// Layout byte of a v2 payload: layout 3 behind a token shift ([`scaled_tokens`]), so
/// that the tokens in use start at 0: zstd's description of its Huffman code, which a
/// small patch's decoding spends most of its time reading, covers fewer values.
const LAYOUT_SHIFTED_TOKENS: u8 = 4;
/// Layout byte of a v2 payload: layout 2 with its runs as LEB128 numbers (the count, then
/// each run's distance from the end of the one before and its length minus one) instead of
/// a zstd frame. A patch of a few rows has a few runs: their zstd frame cost more bytes
/// than the runs, and decoding it a second zstd call per patch, with a buffer bounded by 8
/// bytes an element of the chunk allocated and freed each time.
const LAYOUT_SPARSE_RUNS: u8 = 5;

/// The sparse layout is tried when at most this many quarters of the elements changed. A
/// dense layout codes each unchanged element as a literal token rotated by its exponent,
/// which costs bits; the sparse layout skips them. On 1 MiB of the real weights of the
/// goals (`versioning/README.md`), 384-value rows moved by 1e-4: 30% of the rows changed
/// 134 KB sparse against 198 KB dense, decoded in 174 against 447 us; 47% (what a chain
/// re-based on its key after 64 commits of 1% carries) 180 against 250 KB, 238 against
/// 574 us; 60% 252 against 301 KB, 344 against 548 us. The bound was a quarter, which
/// left those re-based deltas dense. Above three quarters was not measured: a dense step
/// changes every element, where a sparse payload would only add one run around the same
/// tokens.
const SPARSE_MAX_QUARTERS: usize = 3;

/// Runs (start, length) of the elements where `new` and `base` differ.
fn changed_runs(new: &[u8], base: &[u8], elem: usize) -> Vec<(u32, u32)> {
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for (i, (a, b)) in new
        .chunks_exact(elem)
        .zip(base.chunks_exact(elem))
        .enumerate()
    {
        if a == b {
            continue;
        }
        let i = i as u32;
        match runs.last_mut() {
            Some((start, len)) if *start + *len == i => *len += 1,
            _ => runs.push((i, 1)),
        }
    }
    runs
}

/// The elements of `data` in `runs`, concatenated.
fn gather(data: &[u8], runs: &[(u32, u32)], elem: usize) -> Vec<u8> {
    let mut out = Vec::new();
    gather_into(data, runs, elem, &mut out);
    out
}

/// [`gather`] appended to `out` (a buffer kept for reuse).
fn gather_into(data: &[u8], runs: &[(u32, u32)], elem: usize, out: &mut Vec<u8>) {
    for &(start, len) in runs {
        let (a, b) = (start as usize * elem, (start + len) as usize * elem);
        out.extend_from_slice(&data[a..b]);
    }
}

/// The sparse payload (layout 5, without the layout byte) and its transform, `None` when
/// too many elements changed for it to pay.
fn encode_sparse(new: &[u8], base: &[u8], elem: usize, level: i32) -> Option<(Transform, Vec<u8>)> {
    let n = new.len() / elem;
    let runs = changed_runs(new, base, elem);
    let changed: usize = runs.iter().map(|r| r.1 as usize).sum();
    if changed == 0 || changed > n / 4 * SPARSE_MAX_QUARTERS {
        return None;
    }
    let (t, planes) = encode_dense(
        &gather(new, &runs, elem),
        &gather(base, &runs, elem),
        elem,
        level,
    )?;
    let mut out = Vec::with_capacity(5 + 4 * runs.len() + planes.len());
    put_varint(&mut out, runs.len());
    let mut end = 0;
    for &(start, len) in &runs {
        put_varint(&mut out, (start - end) as usize);
        put_varint(&mut out, len as usize - 1);
        end = start + len;
    }
    out.extend_from_slice(&planes);
    Some((t, out))
}

/// The runs of a layout-2 payload (its zstd frame) into `runs`, and what follows them.
fn zstd_runs<'a>(
    payload: &'a [u8],
    n: usize,
    runs: &mut Vec<(u32, u32)>,
) -> Result<&'a [u8], String> {
    let (head, rest) = payload
        .split_at_checked(4)
        .ok_or("sparse payload ends before its header")?;
    let size = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let (frame, planes) = rest
        .split_at_checked(size)
        .ok_or("sparse header is truncated")?;
    // At most one run per element, 8 bytes each.
    let header = crate::codec::decompress_vec(frame, 8 * n).map_err(|e| format!("runs: {e}"))?;
    if !header.len().is_multiple_of(8) {
        return Err("runs are not whole (start, length) pairs".into());
    }
    for pair in header.chunks_exact(8) {
        let start = u32::from_le_bytes([pair[0], pair[1], pair[2], pair[3]]);
        let len = u32::from_le_bytes([pair[4], pair[5], pair[6], pair[7]]);
        if u64::from(start) + u64::from(len) > n as u64 {
            return Err(format!("run {start}+{len} past the chunk's {n} elements"));
        }
        runs.push((start, len));
    }
    Ok(planes)
}

/// The runs of a layout-5 payload (LEB128) into `runs`, and what follows them.
fn varint_runs<'a>(
    payload: &'a [u8],
    n: usize,
    runs: &mut Vec<(u32, u32)>,
) -> Result<&'a [u8], String> {
    let mut at = 0;
    let count = get_varint(payload, &mut at)?;
    if count > n {
        return Err(format!("{count} runs in a chunk of {n} elements"));
    }
    let mut end = 0u64;
    for _ in 0..count {
        let start = end + get_varint(payload, &mut at)? as u64;
        let len = get_varint(payload, &mut at)? as u64 + 1;
        if start + len > n as u64 {
            return Err(format!("run {start}+{len} past the chunk's {n} elements"));
        }
        // Both fit in u32: they are at most n, a count of elements in memory.
        runs.push((start as u32, len as u32));
        end = start + len;
    }
    Ok(&payload[at..])
}

/// Inverse of [`encode_sparse`] (`layout` 5) and of layout 2's encoder.
fn decode_sparse(
    layout: u8,
    t: Transform,
    payload: &[u8],
    base: &[u8],
    elem: usize,
) -> Result<Vec<u8>, String> {
    let mut out = base.to_vec();
    decode_sparse_in_place(layout, t, payload, &mut out, elem)?;
    Ok(out)
}

/// The buffers a sparse payload decodes with: its runs and the elements they cover.
type SparseScratch = (Vec<(u32, u32)>, Vec<u8>);

thread_local! {
    /// The buffers of [`decode_sparse_in_place`], kept per thread: a checkout of a long
    /// sparse chain applies tens of thousands of patches of a few rows each.
    static SPARSE_SCRATCH: std::cell::RefCell<SparseScratch> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// [`decode_sparse`] rewriting the changed runs of `data` (the base) in place: no copy of
/// the chunk, which is what keeps a long chain of sparse patches cheap at checkout.
fn decode_sparse_in_place(
    layout: u8,
    t: Transform,
    payload: &[u8],
    data: &mut [u8],
    elem: usize,
) -> Result<(), String> {
    let n = data.len() / elem;
    SPARSE_SCRATCH.with(|s| {
        // The inner payload is never sparse (refused below), so this does not borrow it
        // again.
        let mut s = s.borrow_mut();
        let (runs, values) = &mut *s;
        runs.clear();
        let planes = if layout == LAYOUT_SPARSE {
            zstd_runs(payload, n, runs)?
        } else {
            varint_runs(payload, n, runs)?
        };
        match planes.split_first() {
            Some((&(LAYOUT_SPARSE | LAYOUT_SPARSE_RUNS), _)) => {
                return Err("a sparse payload inside a sparse payload".into());
            }
            // Token layouts rewrite the runs where they are: no gather, no scatter.
            Some((&l @ (LAYOUT_SCALED_TOKENS | LAYOUT_SHIFTED_TOKENS), rest))
                if elem == 4 && t == Transform::Sub =>
            {
                return scaled_tokens::decode_runs_in_place(
                    rest,
                    data,
                    runs,
                    l == LAYOUT_SHIFTED_TOKENS,
                );
            }
            _ => {}
        }
        // The changed elements' base values, gathered and rebuilt (in place where the
        // layout decodes so), then written back.
        values.clear();
        gather_into(data, runs, elem, values);
        let want = values.len();
        decode_in_place(Version::V2, t, planes, values, elem)?;
        if values.len() != want {
            return Err(format!("{} bytes for runs of {want}", values.len()));
        }
        let mut at = 0;
        for &(start, len) in runs.iter() {
            let (a, b) = (start as usize * elem, (start + len) as usize * elem);
            data[a..b].copy_from_slice(&values[at..at + (b - a)]);
            at += b - a;
        }
        Ok(())
    })
}

/// Default zstd level: zstd's own default, a good ratio at several hundred MB/s.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// The bijection applied to each element before byte grouping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transform {
    /// `new XOR base`.
    Xor,
    /// `new - base`, wrapping, on the element-sized unsigned integers.
    Sub,
}

/// Reads the `elem`-byte little-endian unsigned integer (elem in 1, 2, 4, 8).
fn load(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w[..b.len()].copy_from_slice(b);
    u64::from_le_bytes(w)
}

/// The transform of one element of `bits` bits (8, 16, 32 or 64).
fn apply(t: Transform, new: u64, base: u64, bits: u32) -> u64 {
    match t {
        Transform::Xor => new ^ base,
        Transform::Sub => zigzag(new.wrapping_sub(base), bits),
    }
}

fn invert(t: Transform, delta: u64, base: u64, bits: u32) -> u64 {
    match t {
        Transform::Xor => delta ^ base,
        Transform::Sub => unzigzag(delta, bits).wrapping_add(base) & mask(bits),
    }
}

fn mask(bits: u32) -> u64 {
    u64::MAX >> (64 - bits)
}

/// Maps the `bits`-bit two's-complement difference to 0, -1, 1, -2, ... -> 0, 1, 2, 3, ...,
/// so small steps of either sign leave the high bytes zero (plain two's complement would
/// fill them with 0xff for every negative step).
fn zigzag(d: u64, bits: u32) -> u64 {
    let m = mask(bits);
    let d = d & m;
    let negative = (d >> (bits - 1)) & 1 == 1;
    ((d << 1) ^ if negative { m } else { 0 }) & m
}

fn unzigzag(z: u64, bits: u32) -> u64 {
    let m = mask(bits);
    ((z >> 1) ^ if z & 1 == 1 { m } else { 0 }) & m
}

/// `transform(new, base)` grouped into byte planes of `elem`-byte elements: plane k holds
/// byte k of every element. Both slices have the same length, a multiple of `elem`.
fn to_planes(t: Transform, new: &[u8], base: &[u8], elem: usize) -> Vec<u8> {
    let n = new.len() / elem;
    let bits = 8 * elem as u32;
    let mut out = vec![0u8; new.len()];
    if elem == 1 {
        for ((o, &a), &b) in out.iter_mut().zip(new).zip(base) {
            *o = apply(t, u64::from(a), u64::from(b), 8) as u8;
        }
        return out;
    }
    if elem == 4 {
        // The common case (f32), with fixed-size planes the compiler can keep in registers.
        let (p0, rest) = out.split_at_mut(n);
        let (p1, rest) = rest.split_at_mut(n);
        let (p2, p3) = rest.split_at_mut(n);
        for (i, (a, b)) in new.chunks_exact(4).zip(base.chunks_exact(4)).enumerate() {
            let a = u32::from_le_bytes([a[0], a[1], a[2], a[3]]);
            let b = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            let d = apply(t, u64::from(a), u64::from(b), 32) as u32;
            let d = d.to_le_bytes();
            (p0[i], p1[i], p2[i], p3[i]) = (d[0], d[1], d[2], d[3]);
        }
        return out;
    }
    for (i, (a, b)) in new
        .chunks_exact(elem)
        .zip(base.chunks_exact(elem))
        .enumerate()
    {
        let d = apply(t, load(a), load(b), bits).to_le_bytes();
        for k in 0..elem {
            out[k * n + i] = d[k];
        }
    }
    out
}

/// Inverse of [`to_planes`]: `planes` back to element order, combined with `base`.
fn from_planes(t: Transform, planes: &[u8], base: &[u8], elem: usize) -> Vec<u8> {
    let n = base.len() / elem;
    let bits = 8 * elem as u32;
    let mut out = vec![0u8; base.len()];
    if elem == 1 {
        for ((o, &p), &b) in out.iter_mut().zip(planes).zip(base) {
            *o = invert(t, u64::from(p), u64::from(b), 8) as u8;
        }
        return out;
    }
    if elem == 4 && t == Transform::Sub {
        // The common case of a dense step, written branch-free on u32 (zigzag's inverse as
        // a shift and a mask) so that it vectorizes: 2.5x faster than the loop below.
        let (p0, rest) = planes.split_at(n);
        let (p1, rest) = rest.split_at(n);
        let (p2, p3) = rest.split_at(n);
        for (((((o, b), &a0), &a1), &a2), &a3) in out
            .chunks_exact_mut(4)
            .zip(base.chunks_exact(4))
            .zip(p0)
            .zip(p1)
            .zip(p2)
            .zip(p3)
        {
            let z = u32::from_le_bytes([a0, a1, a2, a3]);
            let b = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            let d = (z >> 1) ^ (z & 1).wrapping_neg();
            o.copy_from_slice(&d.wrapping_add(b).to_le_bytes());
        }
        return out;
    }
    if elem == 4 {
        let (p0, rest) = planes.split_at(n);
        let (p1, rest) = rest.split_at(n);
        let (p2, p3) = rest.split_at(n);
        for (i, (o, b)) in out
            .chunks_exact_mut(4)
            .zip(base.chunks_exact(4))
            .enumerate()
        {
            let d = u32::from_le_bytes([p0[i], p1[i], p2[i], p3[i]]);
            let b = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            let v = invert(t, u64::from(d), u64::from(b), 32) as u32;
            o.copy_from_slice(&v.to_le_bytes());
        }
        return out;
    }
    let mut d = [0u8; 8];
    for (i, (o, b)) in out
        .chunks_exact_mut(elem)
        .zip(base.chunks_exact(elem))
        .enumerate()
    {
        for k in 0..elem {
            d[k] = planes[k * n + i];
        }
        let v = invert(t, u64::from_le_bytes(d), load(b), bits).to_le_bytes();
        o.copy_from_slice(&v[..elem]);
    }
    out
}

/// Estimated compressed size in bits: the order-0 entropy of each byte plane times its
/// length. Cheap next to zstd, and a good predictor of which transform compresses better
/// on weight data, so only one of them is compressed.
fn entropy_bits(planes: &[u8], elem: usize) -> f64 {
    let n = planes.len() / elem;
    if n == 0 {
        return 0.0;
    }
    let mut bits = 0.0;
    for plane in planes.chunks(n) {
        let mut counts = [0u32; 256];
        for &b in plane {
            counts[usize::from(b)] += 1;
        }
        for &c in counts.iter().filter(|&&c| c > 0) {
            let p = f64::from(c) / plane.len() as f64;
            bits -= f64::from(c) * p.log2();
        }
    }
    bits
}

/// Compresses each byte plane as its own zstd frame, each preceded by its length (u32 LE):
/// planes differ completely in statistics (noisy low bytes, near-constant high bytes), and a
/// separate frame gives each its own entropy tables.
fn pack(planes: &[u8], elem: usize, level: i32) -> Option<Vec<u8>> {
    let n = planes.len() / elem;
    let mut out = Vec::with_capacity(planes.len() / 2);
    for plane in planes.chunks(n.max(1)) {
        let frame = zstd::bulk::compress(plane, level).ok()?;
        out.extend_from_slice(&u32::try_from(frame.len()).ok()?.to_le_bytes());
        out.extend_from_slice(&frame);
    }
    Some(out)
}

/// Inverse of [`pack`], for a chunk of `len` bytes.
fn unpack(payload: &[u8], elem: usize, len: usize) -> Result<Vec<u8>, String> {
    let n = len / elem;
    let mut planes = vec![0u8; if n == 0 { 0 } else { len }];
    let mut at = 0;
    for (k, plane) in planes.chunks_mut(n.max(1)).enumerate() {
        let head = payload
            .get(at..at + 4)
            .ok_or_else(|| format!("payload ends before plane {k}"))?;
        let size = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let frame = payload
            .get(at + 4..at + 4 + size)
            .ok_or_else(|| format!("plane {k} is truncated"))?;
        // Decompressing into the plane's place makes a corrupt frame fail instead of
        // allocating without limit.
        let got =
            crate::codec::decompress_into(frame, plane).map_err(|e| format!("plane {k}: {e}"))?;
        if got != n {
            return Err(format!("plane {k} has {got} bytes, expected {n}"));
        }
        at += 4 + size;
    }
    if at != payload.len() {
        return Err(format!("{} bytes after the last plane", payload.len() - at));
    }
    Ok(planes)
}

/// The encoding-v1 payload of `new` against `base` (byte planes, no layout byte) and the
/// transform used, or `None` when it would not be smaller than `new`, the chunks differ in
/// length or the element size is not 1, 2, 4 or 8. New deltas use [`encode`]; this stays so
/// that compatibility with stored v1 deltas can be tested.
pub fn encode_v1(new: &[u8], base: &[u8], elem: usize, level: i32) -> Option<(Transform, Vec<u8>)> {
    let (t, packed) = encode_planes(new, base, elem, level)?;
    (packed.len() < new.len()).then_some((t, packed))
}

/// The byte-plane payload (no layout byte) with the transform whose planes look cheaper,
/// whatever its size; `None` for chunks that are not comparable whole elements.
fn encode_planes(new: &[u8], base: &[u8], elem: usize, level: i32) -> Option<(Transform, Vec<u8>)> {
    if new.len() != base.len() || !matches!(elem, 1 | 2 | 4 | 8) {
        return None;
    }
    if !new.len().is_multiple_of(elem) {
        return None;
    }
    let xor = to_planes(Transform::Xor, new, base, elem);
    let sub = to_planes(Transform::Sub, new, base, elem);
    let (t, planes) = if entropy_bits(&sub, elem) < entropy_bits(&xor, elem) {
        (Transform::Sub, sub)
    } else {
        (Transform::Xor, xor)
    };
    Some((t, pack(&planes, elem, level)?))
}

/// The delta payload (encoding v2, [`ENCODING`]) of `new` against `base` and the transform
/// used, or `None` when it would not be smaller than `new` itself (then the chunk is better
/// stored as is). `None` also for chunks of different lengths or an element size other
/// than 1, 2, 4 or 8. Byte planes and, for 32-bit elements, exponent-scaled tokens are
/// tried; the sparse layout when few elements changed.
pub fn encode(new: &[u8], base: &[u8], elem: usize, level: i32) -> Option<(Transform, Vec<u8>)> {
    let (mut best_t, mut best) = encode_dense(new, base, elem, level)?;
    // The sparse layout decodes in the time of a copy: kept unless 1/32 larger.
    if let Some((t, sparse)) = encode_sparse(new, base, elem, level)
        && sparse.len() < best.len() + best.len() / 32
    {
        best.clear();
        best.push(LAYOUT_SPARSE_RUNS);
        best.extend_from_slice(&sparse);
        best_t = t;
    }
    (best.len() < new.len()).then_some((best_t, best))
}

/// The smaller of the byte-plane and exponent-group payloads (with its layout byte) over
/// every element, whatever its size.
fn encode_dense(new: &[u8], base: &[u8], elem: usize, level: i32) -> Option<(Transform, Vec<u8>)> {
    let (mut best_t, planes) = encode_planes(new, base, elem, level)?;
    let mut best = Vec::with_capacity(planes.len() + 1);
    best.push(LAYOUT_PLANES);
    best.extend_from_slice(&planes);
    // Exponent-scaled tokens (layout 3) code a dense step close to its entropy and decode
    // in one pass, at about the speed of byte planes: kept whenever smaller. Exponent
    // groups (layout 1), the same tokens grouped instead of rotated, were never smaller
    // than them on weights (measured on dense steps of 1e-6 to 1e-4 on N(0, 0.01 to 0.08))
    // and decode at about half the speed: they are read, no longer written.
    if elem == 4
        && let Some(tokens) = scaled_tokens::encode(new, base, level)
        && tokens.len() + 1 < best.len()
    {
        best.clear();
        best.push(LAYOUT_SHIFTED_TOKENS);
        best.extend_from_slice(&tokens);
        best_t = Transform::Sub;
    }
    Some((best_t, best))
}

/// Rebuilds the chunk from `base` and a payload of encoding `version` made with transform
/// `t`. Errors say why the payload does not fit (corrupt, wrong length).
pub fn decode(
    version: Version,
    t: Transform,
    payload: &[u8],
    base: &[u8],
    elem: usize,
) -> Result<Vec<u8>, String> {
    if !matches!(elem, 1 | 2 | 4 | 8) || !base.len().is_multiple_of(elem) {
        return Err(format!(
            "base chunk of {} bytes is not whole {elem}-byte elements",
            base.len()
        ));
    }
    let planes = match version {
        Version::V1 => payload,
        Version::V2 => match payload.split_first() {
            Some((&LAYOUT_PLANES, rest)) => rest,
            Some((&LAYOUT_EXPONENT_GROUPS, rest)) if elem == 4 && t == Transform::Sub => {
                let mut out = base.to_vec();
                exponent_groups::decode_in_place(rest, &mut out)?;
                return Ok(out);
            }
            Some((&l @ (LAYOUT_SCALED_TOKENS | LAYOUT_SHIFTED_TOKENS), rest))
                if elem == 4 && t == Transform::Sub =>
            {
                let mut out = base.to_vec();
                scaled_tokens::decode_in_place(rest, &mut out, l == LAYOUT_SHIFTED_TOKENS)?;
                return Ok(out);
            }
            Some((&l @ (LAYOUT_SPARSE | LAYOUT_SPARSE_RUNS), rest)) => {
                return decode_sparse(l, t, rest, base, elem);
            }
            Some((layout, _)) => {
                return Err(format!(
                    "layout {layout} does not apply to {elem}-byte elements with {t:?}"
                ));
            }
            None => return Err("empty payload".into()),
        },
    };
    let planes = unpack(planes, elem, base.len())?;
    Ok(from_planes(t, &planes, base, elem))
}

/// [`decode`] with the base in `data`, replaced by the rebuilt chunk: a sparse payload
/// rewrites only its runs in place, exponent groups rewrite each element in place, byte
/// planes rebuild the chunk whole.
pub fn decode_in_place(
    version: Version,
    t: Transform,
    payload: &[u8],
    data: &mut Vec<u8>,
    elem: usize,
) -> Result<(), String> {
    match (version, payload.split_first()) {
        (Version::V2, Some((&l @ (LAYOUT_SPARSE | LAYOUT_SPARSE_RUNS), rest)))
            if matches!(elem, 1 | 2 | 4 | 8) && data.len().is_multiple_of(elem) =>
        {
            decode_sparse_in_place(l, t, rest, data, elem)
        }
        (Version::V2, Some((&LAYOUT_EXPONENT_GROUPS, rest)))
            if elem == 4 && t == Transform::Sub && data.len().is_multiple_of(4) =>
        {
            exponent_groups::decode_in_place(rest, data)
        }
        (Version::V2, Some((&l @ (LAYOUT_SCALED_TOKENS | LAYOUT_SHIFTED_TOKENS), rest)))
            if elem == 4 && t == Transform::Sub && data.len().is_multiple_of(4) =>
        {
            scaled_tokens::decode_in_place(rest, data, l == LAYOUT_SHIFTED_TOKENS)
        }
        _ => {
            *data = decode(version, t, payload, data, elem)?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// `n` F32 weights of a slow wave of amplitude `amp`: a chunk of a few exponents.
    pub(super) fn wave(n: u32, amp: f32) -> Vec<u8> {
        (0..n)
            .flat_map(|i| ((i as f32 * 0.37).sin() * amp).to_le_bytes())
            .collect()
    }

    /// The runs of a layout-2 payload as earlier commits wrote them: the length (u32 LE) of
    /// a zstd frame of (start, length) u32 pairs, then the frame.
    fn zstd_runs_header(runs: &[(u32, u32)]) -> Vec<u8> {
        let pairs: Vec<u8> = runs
            .iter()
            .flat_map(|&(s, l)| s.to_le_bytes().into_iter().chain(l.to_le_bytes()))
            .collect();
        let frame = zstd::bulk::compress(&pairs, 3).unwrap();
        let mut out = (frame.len() as u32).to_le_bytes().to_vec();
        out.extend_from_slice(&frame);
        out
    }

    /// `base` with element `i` moved by `amount * cos(i * freq)`: a dense step.
    pub(super) fn waved(base: &[u8], amount: f32, freq: f32) -> Vec<u8> {
        base.chunks_exact(4)
            .enumerate()
            .flat_map(|(i, b)| {
                let x = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                (x + amount * (i as f32 * freq).cos()).to_le_bytes()
            })
            .collect()
    }

    #[test]
    fn planes_group_bytes_by_position() {
        let new = [1u8, 2, 3, 4, 5, 6];
        let zero = [0u8; 6];
        assert_eq!(
            to_planes(Transform::Xor, &new, &zero, 2),
            [1, 3, 5, 2, 4, 6]
        );
        assert_eq!(
            from_planes(Transform::Xor, &[1, 3, 5, 2, 4, 6], &zero, 2),
            new
        );
        // 0x0100 - 0x00ff = 1 (zigzag 2): a carry that XOR would spread over two bytes.
        let sub = to_planes(Transform::Sub, &[0x00, 0x01], &[0xff, 0x00], 2);
        assert_eq!(sub, [2, 0]);
        // 0x00ff - 0x0100 = -1 (zigzag 1): the high byte stays zero.
        assert_eq!(
            to_planes(Transform::Sub, &[0xff, 0x00], &[0x00, 0x01], 2),
            [1, 0]
        );
        for bits in [8, 16, 32, 64] {
            for d in [0u64, 1, 2, 12345, u64::MAX, u64::MAX - 7, 1 << (bits - 1)] {
                let d = d & mask(bits);
                assert_eq!(unzigzag(zigzag(d, bits), bits), d, "{bits} {d}");
            }
        }
        assert_eq!(
            from_planes(Transform::Sub, &sub, &[0xff, 0x00], 2),
            [0x00, 0x01]
        );
    }

    #[test]
    fn dense_small_steps_pick_subtraction() {
        let base: Vec<u8> = (0..4096u32)
            .flat_map(|i| (1.0f32 + i as f32 * 1e-3).to_le_bytes())
            .collect();
        let new: Vec<u8> = base
            .chunks_exact(4)
            .flat_map(|b| {
                let bits = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                bits.wrapping_add(300).to_le_bytes()
            })
            .collect();
        let (t, payload) = encode(&new, &base, 4, 3).unwrap();
        assert_eq!(t, Transform::Sub);
        assert_eq!(decode(Version::V2, t, &payload, &base, 4).unwrap(), new);
    }

    #[test]
    fn incompressible_or_mismatched_chunks_are_not_encoded() {
        let base = vec![0u8; 4096];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 56) as u8
            })
            .collect();
        assert_eq!(encode(&noise, &base, 4, 3), None);
        assert_eq!(encode(&base[..4092], &base, 4, 3), None);
        assert_eq!(encode(&base, &base, 3, 3), None);
        assert!(
            encode(&base, &base, 4, 3).is_some(),
            "an unchanged chunk packs tiny"
        );
    }

    #[test]
    fn a_few_changed_rows_take_the_sparse_layout() {
        let base = wave(16384, 0.02);
        let mut new = base.clone();
        for v in new[4096..8192].chunks_exact_mut(4) {
            let x = f32::from_le_bytes([v[0], v[1], v[2], v[3]]) + 1e-4;
            v.copy_from_slice(&x.to_le_bytes());
        }
        new[60000] ^= 0x80; // a sign flip elsewhere: a second run
        let (t, payload) = encode(&new, &base, 4, 3).unwrap();
        assert_eq!(layout(Version::V2, &payload), Some(Layout::Sparse));
        assert!(payload.len() < 4096, "{}", payload.len());
        assert_eq!(decode(Version::V2, t, &payload, &base, 4).unwrap(), new);
        assert!(decode(Version::V2, t, &payload, &base[..32768], 4).is_err());
        assert!(decode(Version::V2, t, &payload[..payload.len() - 3], &base, 4).is_err());
    }

    /// Payloads of the layouts no longer written (exponent groups, alone and inside a
    /// sparse payload) still decode, whole and in place: repositories written before
    /// layout 3 replaced them check out.
    #[test]
    fn exponent_group_payloads_of_earlier_commits_still_decode() {
        let base = wave(16384, 0.02);
        let new = waved(&base, 1e-5, 1.7);
        let mut dense = vec![LAYOUT_EXPONENT_GROUPS];
        dense.extend_from_slice(&exponent_groups::encode(&new, &base, 3).unwrap());
        assert_eq!(layout(Version::V2, &dense), Some(Layout::ExponentGroups));
        assert_eq!(
            decode(Version::V2, Transform::Sub, &dense, &base, 4).unwrap(),
            new
        );
        let mut data = base.clone();
        decode_in_place(Version::V2, Transform::Sub, &dense, &mut data, 4).unwrap();
        assert_eq!(data, new);
        // The current encoder writes layout 3 for the same step, at most as large.
        let (t, current) = encode(&new, &base, 4, 3).unwrap();
        assert_eq!(layout(Version::V2, &current), Some(Layout::ScaledTokens));
        assert!(
            current.len() <= dense.len(),
            "{} {}",
            current.len(),
            dense.len()
        );
        assert_eq!(decode(Version::V2, t, &current, &base, 4).unwrap(), new);

        // A sparse payload whose changed elements were coded as exponent groups.
        let mut changed = base.clone();
        changed[8192..12288].copy_from_slice(&new[8192..12288]);
        let runs = changed_runs(&changed, &base, 4);
        let header = zstd_runs_header(&runs);
        let inner =
            exponent_groups::encode(&gather(&changed, &runs, 4), &gather(&base, &runs, 4), 3)
                .unwrap();
        let mut sparse = vec![LAYOUT_SPARSE];
        sparse.extend_from_slice(&header);
        sparse.push(LAYOUT_EXPONENT_GROUPS);
        sparse.extend_from_slice(&inner);
        let mut data = base.clone();
        decode_in_place(Version::V2, Transform::Sub, &sparse, &mut data, 4).unwrap();
        assert_eq!(data, changed);
        assert_eq!(
            decode(Version::V2, Transform::Sub, &sparse, &base, 4).unwrap(),
            changed
        );

        // Layout 3 (tokens without a shift), alone and inside layout 2.
        let mut unshifted = vec![LAYOUT_SCALED_TOKENS];
        unshifted.extend_from_slice(&scaled_tokens::encode_unshifted(&new, &base, 3).unwrap());
        assert_eq!(layout(Version::V2, &unshifted), Some(Layout::ScaledTokens));
        let mut data = base.clone();
        decode_in_place(Version::V2, Transform::Sub, &unshifted, &mut data, 4).unwrap();
        assert_eq!(data, new);
        let inner = scaled_tokens::encode_unshifted(
            &gather(&changed, &runs, 4),
            &gather(&base, &runs, 4),
            3,
        )
        .unwrap();
        sparse.truncate(1 + header.len());
        sparse.push(LAYOUT_SCALED_TOKENS);
        sparse.extend_from_slice(&inner);
        let mut data = base.clone();
        decode_in_place(Version::V2, Transform::Sub, &sparse, &mut data, 4).unwrap();
        assert_eq!(data, changed);
    }

    /// The current encoder writes a few changed rows as layout 5 around layout 4, smaller
    /// than layout 2 around layout 3 for the same rows; its runs are checked against the
    /// chunk.
    #[test]
    fn sparse_runs_are_varints_and_are_checked() {
        let base = wave(65536, 0.05);
        let mut new = base.clone();
        // Two rows of 384 values and one lone element.
        for (i, v) in new.chunks_exact_mut(4).enumerate() {
            if (384 * 10..384 * 11).contains(&i) || (384 * 90..384 * 91).contains(&i) || i == 60000
            {
                let x = f32::from_le_bytes([v[0], v[1], v[2], v[3]]);
                v.copy_from_slice(&(x + 1e-4 * (i as f32).cos()).to_le_bytes());
            }
        }
        let (t, payload) = encode(&new, &base, 4, 3).unwrap();
        assert_eq!(payload[0], LAYOUT_SPARSE_RUNS);
        let mut runs = Vec::new();
        let inner = varint_runs(&payload[1..], 65536, &mut runs).unwrap();
        assert_eq!(runs, [(3840, 384), (34560, 384), (60000, 1)]);
        assert_eq!(inner[0], LAYOUT_SHIFTED_TOKENS);
        assert_eq!(decode(Version::V2, t, &payload, &base, 4).unwrap(), new);
        let mut data = base.clone();
        decode_in_place(Version::V2, t, &payload, &mut data, 4).unwrap();
        assert_eq!(data, new);

        // The same rows the way earlier commits wrote them.
        let header = zstd_runs_header(&runs);
        let values =
            scaled_tokens::encode_unshifted(&gather(&new, &runs, 4), &gather(&base, &runs, 4), 3)
                .unwrap();
        let old = 1 + header.len() + 1 + values.len();
        assert!(payload.len() < old, "{} against {old}", payload.len());

        // A chunk too short for the runs, runs past the end, a count past the elements,
        // payloads cut short: errors, and the chunk is left whole.
        assert!(decode(Version::V2, t, &payload, &base[..200_000], 4).is_err());
        let mut past = vec![LAYOUT_SPARSE_RUNS];
        put_varint(&mut past, 1);
        put_varint(&mut past, 65530);
        put_varint(&mut past, 9);
        past.extend_from_slice(inner);
        assert!(
            decode(Version::V2, t, &past, &base, 4)
                .unwrap_err()
                .contains("past")
        );
        let mut many = vec![LAYOUT_SPARSE_RUNS];
        put_varint(&mut many, 65537);
        assert!(decode(Version::V2, t, &many, &base, 4).is_err());
        for cut in [2, 5, payload.len() - 1] {
            assert!(
                decode(Version::V2, t, &payload[..cut], &base, 4).is_err(),
                "{cut}"
            );
        }
        // A sparse payload inside a sparse one.
        let mut nested = payload[..inner.as_ptr() as usize - payload.as_ptr() as usize].to_vec();
        nested.extend_from_slice(&payload);
        assert!(
            decode(Version::V2, t, &nested, &base, 4)
                .unwrap_err()
                .contains("inside")
        );
    }

    /// Layout 3 is exact on every kind of 32-bit data the encoder may see, chosen or not,
    /// and in place as whole.
    #[test]
    fn scaled_tokens_decode_in_place_like_whole() {
        let base: Vec<u8> = (0..4096u32)
            .flat_map(|i| (i.wrapping_mul(0x9e37_79b9) ^ 0x7fc0_0001).to_le_bytes())
            .collect();
        let new: Vec<u8> = base
            .chunks_exact(4)
            .flat_map(|b| {
                u32::from_le_bytes([b[0], b[1], b[2], b[3]])
                    .rotate_left(7)
                    .to_le_bytes()
            })
            .collect();
        let mut payload = vec![LAYOUT_SHIFTED_TOKENS];
        payload.extend_from_slice(&scaled_tokens::encode(&new, &base, 3).unwrap());
        assert_eq!(
            decode(Version::V2, Transform::Sub, &payload, &base, 4).unwrap(),
            new
        );
        let mut data = base.clone();
        decode_in_place(Version::V2, Transform::Sub, &payload, &mut data, 4).unwrap();
        assert_eq!(data, new);
        // Only SUB on 32-bit elements.
        assert!(decode(Version::V2, Transform::Xor, &payload, &base, 4).is_err());
        assert!(decode(Version::V2, Transform::Sub, &payload, &base, 2).is_err());
    }

    /// The token layouts decode with buffers kept per thread (`apply_values`, layout 3's
    /// tokens): patches of every size, in any order, with refused payloads between them,
    /// decode on one thread as each does alone, so nothing carries over from one patch to
    /// the next (a longer patch's tokens or deltas, a failed one's half-filled buffers).
    #[test]
    fn token_patches_decode_alike_in_any_order_on_one_thread() {
        let chunk = |n: u32, seed: f32| -> Vec<u8> {
            (0..n)
                .flat_map(|i| ((i as f32 * seed).sin() * 0.02).to_le_bytes())
                .collect()
        };
        let step = |base: &[u8], amount: f32| -> Vec<u8> {
            base.chunks_exact(4)
                .enumerate()
                .flat_map(|(i, b)| {
                    let x = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                    (x + amount * (i as f32 * 1.3).cos()).to_le_bytes()
                })
                .collect()
        };
        let mut cases = Vec::new();
        for (n, amount) in [
            (65536u32, 1e-6f32),
            (4096, 1e-4),
            (16384, 1e-5),
            (100, 1e-3),
        ] {
            let base = chunk(n, 0.37 + n as f32 * 1e-6);
            let dense = step(&base, amount);
            let (t, payload) = encode(&dense, &base, 4, 3).unwrap();
            assert_eq!(layout(Version::V2, &payload), Some(Layout::ScaledTokens));
            // A few changed rows of the same chunk: a sparse payload around layout 3.
            let mut rows = base.clone();
            let end = rows.len().min(4096);
            rows[..end].copy_from_slice(&dense[..end]);
            let (ts, sparse) = encode(&rows, &base, 4, 3).unwrap();
            cases.push((base, (t, payload, dense), (ts, sparse, rows)));
        }
        let check = |base: &[u8], t: Transform, payload: &[u8], want: &[u8]| {
            let mut data = base.to_vec();
            decode_in_place(Version::V2, t, payload, &mut data, 4).unwrap();
            assert_eq!(data, want);
        };
        for order in [[0, 1, 2, 3], [3, 2, 1, 0], [1, 0, 3, 2]] {
            for &k in &order {
                let (base, (t, dense, want), (ts, sparse, rows)) = &cases[k];
                check(base, *t, dense, want);
                // A payload cut short fails halfway through; the next still decodes.
                let mut data = base.clone();
                assert!(
                    decode_in_place(Version::V2, *t, &dense[..dense.len() - 1], &mut data, 4)
                        .is_err()
                );
                check(base, *ts, sparse, rows);
                check(base, *t, dense, want);
            }
        }
    }

    /// A chain re-based on its key carries every row its patches changed, about half of
    /// them after 64 commits of 1%: coded sparse, smaller than dense and decoded faster.
    #[test]
    fn half_the_rows_changed_take_the_sparse_layout() {
        let base = wave(65536, 0.05);
        let mut new = base.clone();
        for (r, row) in new.chunks_exact_mut(384 * 4).enumerate() {
            if (r * 7) % 10 < 5 {
                for (i, v) in row.chunks_exact_mut(4).enumerate() {
                    let x = f32::from_le_bytes([v[0], v[1], v[2], v[3]]);
                    let step = 1e-4 * ((r * 384 + i) as f32 * 0.7).sin();
                    v.copy_from_slice(&(x + step).to_le_bytes());
                }
            }
        }
        let changed = changed_runs(&new, &base, 4)
            .iter()
            .map(|r| r.1)
            .sum::<u32>();
        assert!(changed > 65536 / 3, "{changed}");
        let (t, payload) = encode(&new, &base, 4, 3).unwrap();
        assert_eq!(layout(Version::V2, &payload), Some(Layout::Sparse));
        let (_, dense) = encode_dense(&new, &base, 4, 3).unwrap();
        assert!(
            payload.len() < dense.len(),
            "{} {}",
            payload.len(),
            dense.len()
        );
        let mut data = base.clone();
        decode_in_place(Version::V2, t, &payload, &mut data, 4).unwrap();
        assert_eq!(data, new);
    }

    #[test]
    fn corrupt_payload_is_an_error() {
        let base = vec![7u8; 4096];
        let mut new = base.clone();
        new[100] ^= 0xff;
        let (t, payload) = encode(&new, &base, 4, 3).unwrap();
        assert_eq!(decode(Version::V2, t, &payload, &base, 4).unwrap(), new);
        assert!(decode(Version::V2, t, &payload[..payload.len() / 2], &base, 4).is_err());
        // A sparse payload names the runs it rewrites, not the chunk's length (the recipe's
        // length is checked on the rebuilt chunk): a base too short for its runs is refused.
        assert_eq!(layout(Version::V2, &payload), Some(Layout::Sparse));
        assert!(decode(Version::V2, t, &payload, &base[..64], 4).is_err());
    }
}
