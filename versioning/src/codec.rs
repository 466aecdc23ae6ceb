//! Lossless compression of whole chunks (the keys of chunk recipes, see
//! [`crate::objects::Chunked`]).
//!
//! Weights are floating point: the sign and exponent bits of neighbouring weights are
//! nearly constant while the low mantissa bits are noise. Grouping byte k of every element
//! together (byte planes) separates the two, and each plane is its own zstd frame so the
//! exponent planes get their own entropy tables and the noise planes cost about their size
//! (zstd stores a frame's literals raw when Huffman would not help). Integers and one-byte
//! types have no such structure: they are one zstd frame of the bytes as they are.
//!
//! Payload format: a layout byte, then
//! - [`LAYOUT_PLANES`]: per plane, its frame length (u32 LE) and a zstd frame of `len /
//!   elem` bytes;
//! - [`LAYOUT_ZSTD`]: one zstd frame of the chunk;
//! - [`LAYOUT_EXPONENT`] (F32, BF16): as byte planes, after moving each element's 8-bit
//!   exponent into its own byte (zipnn's grouping), so that the exponent's few bits of
//!   entropy are coded together and sign + mantissa, nearly random, cost their size.
//!
//! Both are exact for every bit pattern: no arithmetic touches the values.

use crate::dtype::DType;

/// Layout byte: byte planes, each one zstd frame.
pub const LAYOUT_PLANES: u8 = 0;
/// Layout byte: the chunk as one zstd frame.
pub const LAYOUT_ZSTD: u8 = 1;
/// Layout byte (F32 and BF16): the exponent byte of every element as the first plane, then
/// the sign and mantissa bits as byte planes, each plane one zstd frame.
pub const LAYOUT_EXPONENT: u8 = 2;

/// Whether `dtype` is compressed as byte planes (floating point wider than a byte).
fn planar(dtype: DType) -> bool {
    dtype.is_float() && dtype.size() > 1
}

/// Whether `dtype` has an 8-bit exponent that byte planes would split across two bytes
/// (F32, BF16): the exponent is the only low-entropy part of a weight, and in byte planes
/// its lowest bit sits with 7 mantissa bits, whose plane then cannot be compressed.
fn exponent_split(dtype: DType) -> bool {
    matches!(dtype, DType::F32 | DType::BF16)
}

/// Moves an F32/BF16 element's exponent to its own byte: `[exponent, sign << 7 | top
/// mantissa bits, lower mantissa bytes]`, as planes. A bijection on the bit patterns.
fn exponent_planes(data: &[u8], elem: usize) -> Vec<u8> {
    let mut moved = vec![0u8; data.len()];
    let bits = 8 * elem as u32;
    for (o, e) in moved.chunks_exact_mut(elem).zip(data.chunks_exact(elem)) {
        let mut w = [0u8; 4];
        w[..elem].copy_from_slice(e);
        let v = u32::from_le_bytes(w);
        let sign = v >> (bits - 1);
        let exponent = (v >> (bits - 9)) & 0xff;
        let mantissa = v & ((1 << (bits - 9)) - 1);
        // Sign above the mantissa, exponent in the top byte: byte planes then put the
        // exponent in the last plane and sign + mantissa in the others.
        let r = (exponent << (bits - 8)) | (sign << (bits - 9)) | mantissa;
        o.copy_from_slice(&r.to_le_bytes()[..elem]);
    }
    transpose(&moved, elem)
}

/// Inverse of [`exponent_planes`], fused with the untransposition (one pass over the
/// planes: this runs for every chunk of a checkout), into `data` (as long as `planes`).
///
/// Written byte by byte: the exponent plane `e` and the sign + top mantissa plane `s` give
/// the element's two top bytes as `(s & 0x7f) | (e << 7)` and `(s & 0x80) | (e >> 1)`, and
/// the other planes are its low bytes as they are. The compiler turns this loop into
/// vector shuffles (28 GB/s on one core here, against 6 GB/s for the same mapping done on
/// u32s, which took a fifth of a checkout's decoding time).
fn exponent_unplanes(planes: &[&[u8]], data: &mut [u8]) {
    if let [p0, p1, p2, p3] = planes {
        for ((((o, &a), &b), &s), &e) in
            data.chunks_exact_mut(4).zip(*p0).zip(*p1).zip(*p2).zip(*p3)
        {
            o[0] = a;
            o[1] = b;
            o[2] = (s & 0x7f) | (e << 7);
            o[3] = (s & 0x80) | (e >> 1);
        }
    } else if let [p0, p1] = planes {
        for ((o, &s), &e) in data.chunks_exact_mut(2).zip(*p0).zip(*p1) {
            o[0] = (s & 0x7f) | (e << 7);
            o[1] = (s & 0x80) | (e >> 1);
        }
    }
}

/// Shortest match zstd may take in an exponent plane. Exponents of neighbouring weights are
/// i.i.d. draws from a few values (about 2.5 bits of entropy for Gaussian weights): short
/// matches between them are coincidences that cost more than the literals they replace
/// (measured on a plane of N(0, 0.02) exponents at level 3: 3.17 bits a byte with zstd's
/// default, 2.84 with 7, entropy 2.54).
const EXPONENT_MIN_MATCH: u32 = 7;

/// zstd's smallest hash table (2^6 entries) and one probe per position, with the fast
/// strategy: even matches of 7 were mostly coincidences, so the fewer zstd finds, the
/// closer a plane of i.i.d. exponents comes to Huffman-coded literals (2.64 bits an
/// exponent of a real 90.9 MB F32 model, against 2.89 at level 3 with the longer minimum
/// match; entropy per chunk 2.59, an optimal Huffman code 2.62), and it compresses in a
/// quarter of the time. Runs, as in a constant plane, are still found through zstd's
/// repeated offsets.
const EXPONENT_HASH_LOG: u32 = 6;

/// One zstd frame of an exponent plane (the level is not used: every parameter it would
/// choose is set).
fn compress_exponents(plane: &[u8]) -> Option<Vec<u8>> {
    use zstd::stream::raw::CParameter;
    let mut c = zstd::bulk::Compressor::new(1).ok()?;
    for p in [
        CParameter::Strategy(zstd::zstd_safe::Strategy::ZSTD_fast),
        CParameter::MinMatch(EXPONENT_MIN_MATCH),
        CParameter::HashLog(EXPONENT_HASH_LOG),
        CParameter::SearchLog(1),
        CParameter::TargetLength(0),
    ] {
        c.set_parameter(p).ok()?;
    }
    c.compress(plane).ok()
}

/// Runs `f` with this thread's zstd decompression context: creating one per frame (an
/// allocation of some hundred KiB, and its tables) showed in checkout profiles, where every
/// chunk takes several frames.
fn with_dctx<T>(
    f: impl FnOnce(&mut zstd::bulk::Decompressor<'static>) -> std::io::Result<T>,
) -> Result<T, String> {
    thread_local! {
        static DCTX: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
            const { std::cell::RefCell::new(None) };
    }
    DCTX.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = Some(zstd::bulk::Decompressor::new().map_err(|e| e.to_string())?);
        }
        match d.as_mut() {
            Some(d) => f(d).map_err(|e| e.to_string()),
            None => Err("no zstd context".into()),
        }
    })
}

/// Decompresses a zstd frame into `out`, returning its length (an error if it does not
/// fit).
pub(crate) fn decompress_into(frame: &[u8], out: &mut [u8]) -> Result<usize, String> {
    with_dctx(|d| d.decompress_to_buffer(frame, out))
}

/// Decompresses a zstd frame of at most `capacity` bytes (the bound makes a corrupt frame
/// fail instead of allocating without limit).
pub(crate) fn decompress_vec(frame: &[u8], capacity: usize) -> Result<Vec<u8>, String> {
    with_dctx(|d| d.decompress(frame, capacity))
}

/// Byte planes of `data` (`elem`-byte elements): plane k holds byte k of every element.
pub(crate) fn transpose(data: &[u8], elem: usize) -> Vec<u8> {
    let n = data.len() / elem;
    let mut out = vec![0u8; data.len()];
    match elem {
        2 => {
            let (p0, p1) = out.split_at_mut(n);
            for (i, e) in data.chunks_exact(2).enumerate() {
                (p0[i], p1[i]) = (e[0], e[1]);
            }
        }
        4 => {
            let (p0, rest) = out.split_at_mut(n);
            let (p1, rest) = rest.split_at_mut(n);
            let (p2, p3) = rest.split_at_mut(n);
            for (i, e) in data.chunks_exact(4).enumerate() {
                (p0[i], p1[i], p2[i], p3[i]) = (e[0], e[1], e[2], e[3]);
            }
        }
        _ => {
            for (i, e) in data.chunks_exact(elem).enumerate() {
                for (k, &b) in e.iter().enumerate() {
                    out[k * n + i] = b;
                }
            }
        }
    }
    out
}

/// Inverse of [`transpose`], into `out`, from the planes one by one (each `out.len() /
/// planes.len()` bytes).
fn untranspose_into(planes: &[&[u8]], out: &mut [u8]) {
    match planes {
        [p0, p1] => {
            for ((e, &a), &b) in out.chunks_exact_mut(2).zip(*p0).zip(*p1) {
                e.copy_from_slice(&[a, b]);
            }
        }
        [p0, p1, p2, p3] => {
            for ((((e, &a), &b), &c), &d) in
                out.chunks_exact_mut(4).zip(*p0).zip(*p1).zip(*p2).zip(*p3)
            {
                e.copy_from_slice(&[a, b, c, d]);
            }
        }
        _ => {
            for (i, e) in out.chunks_exact_mut(planes.len().max(1)).enumerate() {
                for (b, plane) in e.iter_mut().zip(planes) {
                    *b = plane[i];
                }
            }
        }
    }
}

/// The zstd frame magic number, little-endian.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// The `len` bytes a zstd frame holds, when it holds them as stored (raw) blocks only: zstd
/// stores a plane that does not compress (the low mantissa bytes of weights, half of an
/// F32 key) so, and decompressing it would only copy it. Returns the blocks' bytes in
/// order: a block holds at most 128 KiB (RFC 8878, section 3.1.1.2.4), so a plane of a
/// 1 MiB F32 chunk (256 KiB) is two of them. `None` for any other frame (then it is
/// decompressed): a compressed or RLE block, an empty one, a checksum or dictionary, a
/// content size other than `len` (sections 3.1.1.1 and 3.1.1.2).
fn stored_blocks(frame: &[u8], len: usize) -> Option<Vec<&[u8]>> {
    let (magic, rest) = frame.split_first_chunk::<4>()?;
    let (&descriptor, rest) = rest.split_first()?;
    // Reserved bit, content checksum, dictionary ID: none of them in a plain stored frame.
    if *magic != ZSTD_MAGIC || descriptor & 0x0f != 0 {
        return None;
    }
    let single_segment = descriptor & 0x20 != 0;
    let (window, size_bytes) = match (descriptor >> 6, single_segment) {
        (0, true) => (0, 1),
        (0, false) => (1, 0),
        (1, s) => (usize::from(!s), 2),
        (2, s) => (usize::from(!s), 4),
        (_, s) => (usize::from(!s), 8),
    };
    let rest = rest.get(window..)?;
    let (size, mut rest) = rest.split_at_checked(size_bytes)?;
    if !size.is_empty() {
        let mut v = [0u8; 8];
        v[..size.len()].copy_from_slice(size);
        // A two-byte content size is stored minus 256.
        let content = u64::from_le_bytes(v) + if size.len() == 2 { 256 } else { 0 };
        if content != len as u64 {
            return None;
        }
    }
    let (mut blocks, mut total) = (Vec::with_capacity(len.div_ceil(128 << 10)), 0usize);
    loop {
        let (header, tail) = rest.split_first_chunk::<3>()?;
        let block =
            u32::from(header[0]) | (u32::from(header[1]) << 8) | (u32::from(header[2]) << 16);
        let (last, kind, size) = (block & 1 == 1, (block >> 1) & 3, (block >> 3) as usize);
        // An empty block would make no progress in `unplanes_pieces`.
        if kind != 0 || size == 0 {
            return None;
        }
        let (data, tail) = tail.split_at_checked(size)?;
        blocks.push(data);
        total += size;
        rest = tail;
        if last {
            break;
        }
    }
    (total == len && rest.is_empty()).then_some(blocks)
}

/// The chunk in `out` from its planes, each given as pieces (a stored plane's blocks, or
/// one piece decompressed): [`exponent_unplanes`] or [`untranspose_into`] over the element
/// ranges where no plane changes piece. Every plane's pieces must be non-empty and total
/// `out.len() / planes.len()` bytes.
fn unplanes_pieces(planes: &[Vec<&[u8]>], exponent: bool, out: &mut [u8]) {
    let elem = planes.len().max(1);
    let n = out.len() / elem;
    // Per plane: its current piece and the offset in it.
    let mut at = vec![(0usize, 0usize); planes.len()];
    let mut parts: Vec<&[u8]> = Vec::with_capacity(planes.len());
    let mut done = 0;
    while done < n {
        let step = planes
            .iter()
            .zip(&at)
            .map(|(p, &(k, o))| p.get(k).map_or(0, |piece| piece.len() - o))
            .min()
            .unwrap_or(0)
            .min(n - done);
        if step == 0 {
            return;
        }
        parts.clear();
        for (p, (k, o)) in planes.iter().zip(at.iter_mut()) {
            parts.push(&p[*k][*o..*o + step]);
            *o += step;
            if *o == p[*k].len() {
                (*k, *o) = (*k + 1, 0);
            }
        }
        let range = &mut out[done * elem..(done + step) * elem];
        if exponent {
            exponent_unplanes(&parts, range);
        } else {
            untranspose_into(&parts, range);
        }
        done += step;
    }
}

/// The compressed payload of a chunk of `dtype`, or `None` when it would not be smaller
/// than the chunk (then the chunk is stored as it is). A chunk that is not whole elements
/// is compressed as plain bytes.
pub fn pack(data: &[u8], dtype: DType, level: i32) -> Option<Vec<u8>> {
    let elem = dtype.size();
    let payload = if planar(dtype) && data.len().is_multiple_of(elem) && !data.is_empty() {
        let (layout, planes) = if exponent_split(dtype) {
            (LAYOUT_EXPONENT, exponent_planes(data, elem))
        } else {
            (LAYOUT_PLANES, transpose(data, elem))
        };
        let n = data.len() / elem;
        let mut out = Vec::with_capacity(data.len());
        out.push(layout);
        for (k, plane) in planes.chunks(n).enumerate() {
            let frame = if layout == LAYOUT_EXPONENT && k == elem - 1 {
                compress_exponents(plane)?
            } else {
                zstd::bulk::compress(plane, level).ok()?
            };
            out.extend_from_slice(&u32::try_from(frame.len()).ok()?.to_le_bytes());
            out.extend_from_slice(&frame);
        }
        out
    } else {
        let mut out = vec![LAYOUT_ZSTD];
        out.extend_from_slice(&zstd::bulk::compress(data, level).ok()?);
        out
    };
    (payload.len() < data.len()).then_some(payload)
}

/// Inverse of [`pack`] for a chunk of `len` bytes of `dtype`. Errors say why the payload
/// does not fit (corrupt, wrong length, unknown layout).
pub fn unpack(payload: &[u8], dtype: DType, len: usize) -> Result<Vec<u8>, String> {
    let mut out = vec![0u8; len];
    unpack_into(payload, dtype, &mut out, &mut Vec::new())?;
    Ok(out)
}

/// [`unpack`] into `out` (the chunk's length), with `scratch` for the byte planes: a
/// checkout reuses both buffers for every chunk a thread decodes, as fresh ones cost a
/// page fault per 4 KiB.
pub fn unpack_into(
    payload: &[u8],
    dtype: DType,
    out: &mut [u8],
    scratch: &mut Vec<u8>,
) -> Result<(), String> {
    let elem = dtype.size();
    let len = out.len();
    match payload.split_first() {
        Some((&LAYOUT_ZSTD, frame)) => {
            // Decompressing into a buffer of the chunk's length makes a corrupt frame fail
            // instead of allocating without limit.
            let got = decompress_into(frame, out)?;
            if got != len {
                return Err(format!("{got} bytes, expected {len}"));
            }
            Ok(())
        }
        Some((&layout @ (LAYOUT_PLANES | LAYOUT_EXPONENT), mut rest)) => {
            if layout == LAYOUT_EXPONENT && !exponent_split(dtype) {
                return Err(format!("exponent layout does not apply to {dtype}"));
            }
            if !len.is_multiple_of(elem) || elem < 2 {
                return Err(format!(
                    "byte planes of {len} bytes do not fit {elem}-byte elements"
                ));
            }
            let n = len / elem;
            scratch.resize(len, 0);
            // Each plane is either read in place from the payload (a stored frame) or
            // decompressed into its place in `scratch`.
            let mut stored: Vec<Option<Vec<&[u8]>>> = Vec::with_capacity(elem);
            for (k, plane) in scratch[..len].chunks_mut(n.max(1)).enumerate() {
                let (head, tail) = rest
                    .split_at_checked(4)
                    .ok_or_else(|| format!("payload ends before plane {k}"))?;
                let size = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
                let (frame, tail) = tail
                    .split_at_checked(size)
                    .ok_or_else(|| format!("plane {k} is truncated"))?;
                rest = tail;
                if let Some(blocks) = stored_blocks(frame, n) {
                    stored.push(Some(blocks));
                    continue;
                }
                let got = decompress_into(frame, plane).map_err(|e| format!("plane {k}: {e}"))?;
                if got != n {
                    return Err(format!("plane {k} has {got} bytes, expected {n}"));
                }
                stored.push(None);
            }
            if !rest.is_empty() {
                return Err(format!("{} bytes after the last plane", rest.len()));
            }
            let planes: Vec<Vec<&[u8]>> = stored
                .into_iter()
                .zip(scratch[..len].chunks(n.max(1)))
                .map(|(s, decoded)| s.unwrap_or_else(|| vec![decoded]))
                .collect();
            unplanes_pieces(&planes, layout == LAYOUT_EXPONENT, out);
            Ok(())
        }
        Some((layout, _)) => Err(format!("unknown layout {layout}")),
        None => Err("empty payload".into()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn planes_round_trip_and_compress_smooth_floats() {
        let data: Vec<u8> = (0..65536u32)
            .flat_map(|i| ((i as f32 * 0.37).sin() * 0.02).to_le_bytes())
            .collect();
        let mut back = vec![0u8; data.len()];
        let planes = transpose(&data, 4);
        untranspose_into(
            &planes.chunks(data.len() / 4).collect::<Vec<_>>(),
            &mut back,
        );
        assert_eq!(back, data);
        let packed = pack(&data, DType::F32, 3).unwrap();
        assert_eq!(packed[0], LAYOUT_EXPONENT);
        let f16 = pack(&data, DType::F16, 3).unwrap();
        assert_eq!(f16[0], LAYOUT_PLANES);
        assert_eq!(unpack(&f16, DType::F16, data.len()).unwrap(), data);
        assert!(packed.len() < data.len() * 9 / 10, "{}", packed.len());
        assert_eq!(unpack(&packed, DType::F32, data.len()).unwrap(), data);
        assert!(unpack(&packed[..packed.len() - 1], DType::F32, data.len()).is_err());
        assert!(unpack(&packed, DType::F32, data.len() - 4).is_err());
        assert!(unpack(&[9, 1, 2], DType::F32, 4).is_err());
    }

    /// The exponent plane of a chunk of Gaussian weights costs little more than its
    /// order-0 entropy: the key of every chunk pays the difference (at level 3 with a
    /// minimum match of 7, 0.3 bits an exponent more: 0.9 points of a full F32 snapshot).
    #[test]
    fn gaussian_exponents_cost_near_their_entropy() {
        use rand::{Rng, SeedableRng, rngs::StdRng};
        let mut rng = StdRng::seed_from_u64(0x9e37_79b9_7f4a_7c15);
        let data: Vec<u8> = (0..65536)
            .flat_map(|_| {
                // Box-Muller; u in (0, 1] so that its logarithm is finite.
                let (u, v) = (1.0 - rng.random::<f64>(), rng.random::<f64>());
                let n = (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos();
                ((0.02 * n) as f32).to_le_bytes()
            })
            .collect();
        let mut counts = [0u64; 256];
        for v in data.chunks_exact(4) {
            counts[usize::from((u32::from_le_bytes([v[0], v[1], v[2], v[3]]) >> 23) as u8)] += 1;
        }
        let n = (data.len() / 4) as f64;
        let entropy: f64 = counts
            .iter()
            .filter(|&&c| c > 0)
            .map(|&c| -(c as f64 / n) * (c as f64 / n).log2())
            .sum();
        let planes = exponent_planes(&data, 4);
        let exponents = &planes[3 * data.len() / 4..];
        let bits = 8.0 * compress_exponents(exponents).unwrap().len() as f64 / n;
        assert!(
            bits < entropy + 0.12,
            "{bits:.3} bits an exponent, entropy {entropy:.3}"
        );
        let packed = pack(&data, DType::F32, 3).unwrap();
        assert_eq!(unpack(&packed, DType::F32, data.len()).unwrap(), data);
    }

    #[test]
    fn stored_frames_are_read_in_place_and_only_they() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut noise = |n: usize| -> Vec<u8> {
            (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x >> 56) as u8
                })
                .collect()
        };
        // zstd stores incompressible data as raw blocks of at most 128 KiB, whatever the
        // content-size form.
        for (n, blocks) in [(10usize, 1), (300, 1), (65536, 1), (70000, 1), (300_000, 3)] {
            let data = noise(n);
            let frame = zstd::bulk::compress(&data, 3).unwrap();
            let got = stored_blocks(&frame, n).unwrap();
            assert_eq!(got.len(), blocks, "{n}");
            assert_eq!(got.concat(), data, "{n}");
            assert_eq!(stored_blocks(&frame, n - 1), None);
            assert_eq!(stored_blocks(&frame[..frame.len() - 1], n), None);
        }
        let smooth = vec![7u8; 4096];
        let frame = zstd::bulk::compress(&smooth, 3).unwrap();
        assert_eq!(stored_blocks(&frame, 4096), None, "a compressed block");
        // A stored block followed by a compressed one: the frame is decompressed.
        let mut mixed = noise(128 << 10);
        mixed.extend(std::iter::repeat_n(7u8, 128 << 10));
        let frame = zstd::bulk::compress(&mixed, 3).unwrap();
        assert_eq!(
            stored_blocks(&frame, mixed.len()),
            None,
            "a compressed block last"
        );
        let data = noise(1000);
        let mut c = zstd::bulk::Compressor::new(3).unwrap();
        c.set_parameter(zstd::stream::raw::CParameter::ChecksumFlag(true))
            .unwrap();
        let frame = c.compress(&data).unwrap();
        assert_eq!(stored_blocks(&frame, 1000), None, "a checksum to check");
        // F32 weights: the low mantissa planes are stored, and the chunk round-trips, in a
        // 256 KiB chunk (one block a plane) and a 1 MiB one (two blocks a plane).
        for elems in [65536u32, 262_144] {
            let weights: Vec<u8> = (0..elems)
                .flat_map(|i| ((i as f32 * 0.37).sin() * 0.02 + i as f32 * 1e-9).to_le_bytes())
                .collect();
            let packed = pack(&weights, DType::F32, 3).unwrap();
            let mut rest = &packed[1..];
            let mut stored = 0;
            while let Some((head, tail)) = rest.split_first_chunk::<4>() {
                let size = u32::from_le_bytes(*head) as usize;
                stored += usize::from(stored_blocks(&tail[..size], elems as usize).is_some());
                rest = &tail[size..];
            }
            assert!(stored >= 1, "{elems}: {stored}");
            assert_eq!(unpack(&packed, DType::F32, weights.len()).unwrap(), weights);
        }
    }

    /// Planes cut into pieces at different places (a stored plane's blocks next to a
    /// decompressed one) rebuild the same chunk as whole planes.
    #[test]
    fn planes_in_pieces_rebuild_the_chunk() {
        let data: Vec<u8> = (0..1000u32)
            .flat_map(|i| ((i as f32 * 0.37).sin() * 0.02).to_le_bytes())
            .collect();
        for (exponent, planes) in [
            (true, exponent_planes(&data, 4)),
            (false, transpose(&data, 4)),
        ] {
            let whole: Vec<Vec<&[u8]>> = planes.chunks(1000).map(|p| vec![p]).collect();
            let cut: Vec<Vec<&[u8]>> = planes
                .chunks(1000)
                .enumerate()
                .map(|(k, p)| p.chunks(1 + 97 * k).collect())
                .collect();
            let (mut a, mut b) = (vec![0u8; data.len()], vec![0u8; data.len()]);
            unplanes_pieces(&whole, exponent, &mut a);
            unplanes_pieces(&cut, exponent, &mut b);
            assert_eq!(a, data);
            assert_eq!(b, data);
        }
    }

    #[test]
    fn integers_are_one_frame_and_noise_is_not_packed() {
        let ints: Vec<u8> = (0..4096u32).flat_map(|i| (i % 7).to_le_bytes()).collect();
        let packed = pack(&ints, DType::I32, 3).unwrap();
        assert_eq!(packed[0], LAYOUT_ZSTD);
        assert_eq!(unpack(&packed, DType::I32, ints.len()).unwrap(), ints);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 56) as u8
            })
            .collect();
        assert_eq!(pack(&noise, DType::U8, 3), None);
    }
}
