//! `--decode-costs`: what rebuilding one 256 KiB F32 chunk costs, piece by piece, on the
//! chunks a checkout of the `--goals` model meets: its key, a dense step's patch (layout 3),
//! a one-row sparse patch, a whole dense tip (key and two dense patches), a key and the one
//! patch that replaced a chain of sparse and dense ones, against a copy of the chunk. Best
//! and median of many runs on one core, so that a change of a decoder shows without a
//! whole checkout (whose figures the machine's load decides).

use std::time::{Duration, Instant};

use ipfrs_versioning::{DType, codec, delta};

use super::Rng;

/// Elements of a 256 KiB F32 chunk.
const ELEMS: usize = 64 * 1024;
/// Columns of the model's matrices: a row is 16 KiB, a chunk 16 rows.
const COLS: usize = 4096;
/// Timed runs per figure.
const RUNS: usize = 300;

/// N(0, 1) by Box-Muller (as the goals' model).
fn gauss(rng: &mut Rng) -> f32 {
    let u = (rng.uniform() as f64).max(1e-12);
    let v = rng.uniform() as f64;
    ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
}

/// `base` with `amount * N(0, 1)` added to the elements of rows `rows`.
fn moved(base: &[u8], rng: &mut Rng, rows: std::ops::Range<usize>, amount: f32) -> Vec<u8> {
    let mut out = base.to_vec();
    for (i, v) in out.chunks_exact_mut(4).enumerate() {
        if rows.contains(&(i / COLS)) {
            let x = f32::from_le_bytes([v[0], v[1], v[2], v[3]]);
            v.copy_from_slice(&(x + amount * gauss(rng)).to_le_bytes());
        }
    }
    out
}

/// (best, median) of `RUNS` runs of `f`.
fn timed(mut f: impl FnMut()) -> (Duration, Duration) {
    let mut t: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed()
        })
        .collect();
    t.sort_unstable();
    (t[0], t[RUNS / 2])
}

fn show(name: &str, (best, median): (Duration, Duration)) {
    println!(
        "  {name}: best {:.0} us, median {:.0} us",
        best.as_secs_f64() * 1e6,
        median.as_secs_f64() * 1e6
    );
}

/// Where a timed rebuild starts: a copy of the base chunk, or its key decompressed.
enum Start<'a> {
    Copy(&'a [u8]),
    Key(&'a [u8]),
}

/// Times a rebuild into `data` from `start` through `patches` (the start included: subtract
/// the copy's or the key's own figure), shows it as `name`, and checks it gives `want`.
fn show_rebuild(
    name: &str,
    start: Start<'_>,
    patches: &[(delta::Transform, &[u8])],
    data: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
    want: &[u8],
) {
    show(
        name,
        timed(|| {
            match start {
                Start::Copy(base) => data.copy_from_slice(base),
                Start::Key(key) => codec::unpack_into(key, DType::F32, data, scratch).unwrap(),
            }
            for &(t, payload) in patches {
                delta::decode_in_place(delta::Version::V2, t, payload, data, 4).unwrap();
            }
        }),
    );
    assert_eq!(data.as_slice(), want);
}

/// Prints the costs (see the module doc).
pub fn run(rng: &mut Rng) {
    let mut base = Vec::with_capacity(ELEMS * 4);
    for _ in 0..ELEMS {
        base.extend_from_slice(&(0.02 * gauss(rng)).to_le_bytes());
    }
    let key = codec::pack(&base, DType::F32, 3).unwrap();
    let dense1 = moved(&base, rng, 0..16, 1e-6);
    let dense2 = moved(&dense1, rng, 0..16, 1e-6);
    let (t1, p1) = delta::encode(&dense1, &base, 4, 3).unwrap();
    let (t2, p2) = delta::encode(&dense2, &dense1, 4, 3).unwrap();
    let row = moved(&base, rng, 5..6, 1e-4);
    let (ts, ps) = delta::encode(&row, &base, 4, 3).unwrap();
    println!(
        "256 KiB F32 chunk of N(0, 0.02): key {:.1}%, dense 1e-6 patches {:.1}% / {:.1}% ({:?}), one-row patch {:.2}% ({:?}); load {}",
        100.0 * key.len() as f64 / base.len() as f64,
        100.0 * p1.len() as f64 / base.len() as f64,
        100.0 * p2.len() as f64 / base.len() as f64,
        delta::layout(delta::Version::V2, &p1).unwrap(),
        100.0 * ps.len() as f64 / base.len() as f64,
        delta::layout(delta::Version::V2, &ps).unwrap(),
        super::load()
    );
    let mut out = vec![0u8; base.len()];
    let mut scratch = Vec::new();
    show(
        "copy of the chunk",
        timed(|| out.copy_from_slice(std::hint::black_box(&base))),
    );
    show(
        "key",
        timed(|| codec::unpack_into(&key, DType::F32, &mut out, &mut scratch).unwrap()),
    );
    assert_eq!(out, base);
    let mut data = base.clone();
    let mut rebuild = |name, start, patches: &[(delta::Transform, &[u8])], want: &[u8]| {
        show_rebuild(name, start, patches, &mut data, &mut scratch, want)
    };
    rebuild(
        "dense patch (onto its base)",
        Start::Copy(&base),
        &[(t1, &p1)],
        &dense1,
    );
    rebuild(
        "one-row sparse patch",
        Start::Copy(&base),
        &[(ts, &ps)],
        &row,
    );
    rebuild(
        "dense tip: key + two dense patches",
        Start::Key(&key),
        &[(t1, &p1), (t2, &p2)],
        &dense2,
    );
    // A patch of a chain on narrow rows (384 values, as all-MiniLM-L6-v2's): two rows
    // moved (with the copy of its base, as above: subtract the copy's figure).
    let mut narrow = base.clone();
    for (i, v) in narrow.chunks_exact_mut(4).enumerate() {
        if (384 * 40..384 * 41).contains(&i) || (384 * 97..384 * 98).contains(&i) {
            let x = f32::from_le_bytes([v[0], v[1], v[2], v[3]]);
            v.copy_from_slice(&(x + 1e-4 * gauss(rng)).to_le_bytes());
        }
    }
    let (tn, pn) = delta::encode(&narrow, &base, 4, 3).unwrap();
    println!(
        "  (two rows of 384 values moved by 1e-4: {} bytes, {:?})",
        pn.len(),
        delta::layout(delta::Version::V2, &pn).unwrap()
    );
    rebuild("two narrow rows", Start::Copy(&base), &[(tn, &pn)], &narrow);
    // What the profile's dense tip decodes (`--checkout-profile`, 6 dense steps after 50
    // sparse commits): mostly its key and one patch against it that carries everything
    // since the key, here 8 of the 16 rows moved by 1e-4 (the sparse commits) and 6 dense
    // steps.
    let mut since_key = base.clone();
    for r in 0..8 {
        since_key = moved(&since_key, rng, 2 * r..2 * r + 1, 1e-4);
    }
    for _ in 0..6 {
        since_key = moved(&since_key, rng, 0..16, 1e-6);
    }
    let (tk, pk) = delta::encode(&since_key, &base, 4, 3).unwrap();
    println!(
        "  (patch against the key after 8 rows moved and 6 dense steps: {:.1}% of the chunk, {:?})",
        100.0 * pk.len() as f64 / base.len() as f64,
        delta::layout(delta::Version::V2, &pk).unwrap()
    );
    rebuild(
        "key + that patch",
        Start::Key(&key),
        &[(tk, &pk)],
        &since_key,
    );
    // The tip of `--goals`' dense chain: 19 dense steps since the key in one patch against
    // it, then the 20th as a patch on top.
    let mut nineteen = base.clone();
    for _ in 0..19 {
        nineteen = moved(&nineteen, rng, 0..16, 1e-6);
    }
    let twenty = moved(&nineteen, rng, 0..16, 1e-6);
    let (t19, p19) = delta::encode(&nineteen, &base, 4, 3).unwrap();
    let (t20, p20) = delta::encode(&twenty, &nineteen, 4, 3).unwrap();
    println!(
        "  (19 dense steps against the key: {:.1}% of the chunk, {:?}; the 20th on top {:.1}%, {:?})",
        100.0 * p19.len() as f64 / base.len() as f64,
        delta::layout(delta::Version::V2, &p19).unwrap(),
        100.0 * p20.len() as f64 / base.len() as f64,
        delta::layout(delta::Version::V2, &p20).unwrap()
    );
    rebuild(
        "key + those two patches",
        Start::Key(&key),
        &[(t19, &p19), (t20, &p20)],
        &twenty,
    );
}
