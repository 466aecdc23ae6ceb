//! Git-for-Tensors benchmark on a real engine.
//!
//! ```text
//! cargo run --release -p ipfrs-versioning --example vcs_bench -- --mib 1024 [--chain 100] [--dir PATH]
//!     [--chain-rows PCT] [--max-depth N] [--hot-budget-mib N]
//! cargo run --release -p ipfrs-versioning --example vcs_bench -- --layouts
//! cargo run --release -p ipfrs-versioning --example vcs_bench -- --decode-costs
//! cargo run --release -p ipfrs-versioning --example vcs_bench -- --goals --mib 256 [--max-depth N]
//! cargo run --release -p ipfrs-versioning --example vcs_bench -- --checkout-profile ROUNDS --mib 256
//!     [--sparse-depths 16,50] [--rows-pct PCT] [--dense-steps N] [--bf16] [--keep]
//! cargo run --release -p ipfrs-versioning --example vcs_bench -- --checkout-repo DIR --tip CID
//!     --checkout-profile ROUNDS
//! ```
//!
//! `--chain-rows` is the percentage of rows each chain commit changes (default 1);
//! `--max-depth` overrides the repository's chain depth bound; `--goals` runs only the
//! suite of the chain goals (`vcs_bench/goals.rs`: sizes of long chains and checkout
//! against `cp`); `--checkout-profile` only checkouts, plain and verified, against `cp`:
//! at depth 0, at each of `--sparse-depths` (default 16) of a chain whose commits change
//! `--rows-pct` of the rows (default 1), after `--dense-steps` dense steps (default 6; 0 for
//! none), and with `--bf16` the bf16 copy at depth 0; `--keep` leaves its F32 repository on
//! disk and prints the `--checkout-repo DIR --tip CID` that checks its tip out again
//! (plain, against `cp`) without building the chain again; `--hot-budget-mib` the engines'
//! hot-tier budget (past it, compaction moves blocks into the cold backend). `--layouts` only
//! compares the delta encodings' size and decode time on single chunks; `--decode-costs` times
//! the pieces of a chunk's rebuild (key, dense and sparse patches) on one core; `--ingest-only R`
//! runs only the first step (full commit vs raw ingest), R times, and prints medians. The bench prints the disk use of
//! both engine directories as it goes, since a long chain on a large model writes a lot.
//!
//! Builds a synthetic f32 model (64 MiB matrices of 4096 columns, weights ~ N(0, 0.02)) and
//! reports: a full commit vs ingesting the raw bytes with put_many; a commit with 1% of rows
//! rewritten; a dense update (w += 1e-4 * noise) with exact deltas vs plain zstd of the new
//! tensors; checkout at the end of a chain of commits vs reading the raw bytes. "New bytes"
//! come from the engine's stats (bytes stored after minus before).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_lite::future::block_on;
use ipfrs_storage::{Block, BlockStore, Engine};
use ipfrs_versioning::{
    CommitInfo, DType, MemLedger, MemRefStore, Repo, RepoConfig, Revision, TensorData,
    TensorObject, Tensors, delta,
};

#[path = "vcs_bench/decode_costs.rs"]
mod decode_costs;
#[path = "vcs_bench/goals.rs"]
mod goals;

const COLS: usize = 4096;
const ROW_BYTES: usize = COLS * 4;
const TENSOR_MIB: usize = 64;

/// xorshift64*: fast, reproducible noise; quality is irrelevant here.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn uniform(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
    /// Approximately N(0, 1): the sum of 4 uniforms, rescaled (variance 4/12).
    fn normal(&mut self) -> f32 {
        (self.uniform() + self.uniform() + self.uniform() + self.uniform() - 2.0) * 1.732
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn model(mib: usize, rng: &mut Rng) -> Tensors {
    let mut m = Tensors::new();
    let mut left = mib << 20;
    let mut i = 0;
    while left > 0 {
        let bytes = left.min(TENSOR_MIB << 20);
        let rows = (bytes / ROW_BYTES).max(1);
        let mut data = Vec::with_capacity(rows * ROW_BYTES);
        for _ in 0..rows * COLS {
            data.extend_from_slice(&(0.02 * rng.normal()).to_le_bytes());
        }
        let name = format!("layer{i:03}.weight");
        let t = TensorData::new(&name, DType::F32, vec![rows as u64, COLS as u64], data).unwrap();
        m.insert(name, t);
        left = left.saturating_sub(rows * ROW_BYTES);
        i += 1;
    }
    m
}

fn total_rows(m: &Tensors) -> usize {
    m.values().map(|t| t.shape[0] as usize).sum()
}

/// Applies `f` to the f32 values of `rows` randomly chosen rows (over all tensors).
fn touch_rows(
    m: &Tensors,
    rows: usize,
    rng: &mut Rng,
    f: &mut impl FnMut(f32, &mut Rng) -> f32,
) -> Tensors {
    let names: Vec<String> = m.keys().cloned().collect();
    let mut bufs: Vec<Vec<u8>> = m.values().map(|t| t.data.to_vec()).collect();
    let per: Vec<usize> = m.values().map(|t| t.shape[0] as usize).collect();
    let total: usize = per.iter().sum();
    for _ in 0..rows {
        let mut r = rng.below(total);
        let mut k = 0;
        while r >= per[k] {
            r -= per[k];
            k += 1;
        }
        let row = &mut bufs[k][r * ROW_BYTES..(r + 1) * ROW_BYTES];
        for v in row.chunks_exact_mut(4) {
            let x = f32::from_le_bytes([v[0], v[1], v[2], v[3]]);
            v.copy_from_slice(&f(x, rng).to_le_bytes());
        }
    }
    names
        .into_iter()
        .zip(bufs)
        .map(|(n, b)| {
            let t = &m[&n];
            (
                n,
                TensorData {
                    dtype: t.dtype,
                    shape: t.shape.clone(),
                    data: Bytes::from(b),
                },
            )
        })
        .collect()
}

/// Bytes the files under `dir` occupy on disk (allocated blocks, so sparse or preallocated
/// files count for what they really take).
fn disk_use(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => disk_use(&e.path()),
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

fn gib(b: u64) -> f64 {
    b as f64 / (1u64 << 30) as f64
}

/// Estimated entropy, in bits per element, of the exact steps from `base` to `new` given
/// what a decoder already knows (each base element's exponent): the plug-in conditional
/// entropy of the zigzag bit-pattern difference, bucketed to its 5 leading bits per
/// exponent, plus the bits below those counted as uniform. Gathered over the whole model,
/// so it includes no per-chunk table costs: a floor for coders that condition on the
/// exponent, not for every conceivable coder.
fn entropy_bits_per_elem(new: &Tensors, base: &Tensors) -> f64 {
    const BUCKETS: usize = 32 + 27 * 16;
    let mut counts = vec![[0u64; BUCKETS]; 256];
    let (mut uniform_bits, mut n) = (0u64, 0u64);
    for (name, t) in new {
        for (a, b) in t.data.chunks_exact(4).zip(base[name].data.chunks_exact(4)) {
            let a = u32::from_le_bytes([a[0], a[1], a[2], a[3]]);
            let b = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            let d = a.wrapping_sub(b);
            let d = (d << 1) ^ (((d as i32) >> 31) as u32);
            let bucket = if d < 32 {
                d as usize
            } else {
                let len = 32 - d.leading_zeros();
                uniform_bits += u64::from(len - 5);
                32 + (len as usize - 6) * 16 + ((d >> (len - 5)) & 15) as usize
            };
            counts[((b >> 23) & 0xff) as usize][bucket] += 1;
            n += 1;
        }
    }
    let mut bits = uniform_bits as f64;
    for row in &counts {
        let total: u64 = row.iter().sum();
        for &c in row.iter().filter(|&&c| c > 0) {
            bits += c as f64 * (total as f64 / c as f64).log2();
        }
    }
    bits / n.max(1) as f64
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Stores the model's chunks as raw blocks, as the repository would cut them; their CIDs
/// per tensor.
fn put_raw(raw: &Engine, m: &Tensors, config: &RepoConfig) -> Vec<Vec<ipfrs_storage::Cid>> {
    let mut raw_cids = Vec::new();
    for tensor in m.values() {
        let mut cids = Vec::new();
        let mut batch = Vec::new();
        for part in tensor.data.chunks(config.chunk_bytes) {
            let b = Block::new(tensor.data.slice_ref(part)).unwrap();
            cids.push(*b.cid());
            batch.push(b);
            if batch.len() == config.batch_blocks {
                block_on(raw.put_many(&batch)).unwrap();
                batch.clear();
            }
        }
        block_on(raw.put_many(&batch)).unwrap();
        raw_cids.push(cids);
    }
    raw_cids
}

fn stored(e: &Engine) -> u64 {
    block_on(BlockStore::stats(e)).unwrap().bytes
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Sizes and decode times of v1 and v2 on one 256 KiB chunk (16 rows), for a dense step and
/// for a sparse update (one row moved by 1e-3, as the chain does): what the per-chunk
/// layout choice trades.
fn layout_costs(rng: &mut Rng) {
    let n = 16 * COLS;
    let base: Vec<u8> = (0..n)
        .flat_map(|_| (0.02 * rng.normal()).to_le_bytes())
        .collect();
    let mut step = |scale: f32, rows: usize| -> Vec<u8> {
        base.chunks_exact(4)
            .enumerate()
            .flat_map(|(i, b)| {
                let x = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                let y = if i / COLS < rows {
                    x + scale * rng.normal()
                } else {
                    x
                };
                y.to_le_bytes()
            })
            .collect()
    };
    let cases = [
        ("dense 1e-4", step(1e-4, 16)),
        ("one row 1e-3", step(1e-3, 1)),
    ];
    let timed = |f: &dyn Fn()| {
        median(
            (0..21)
                .map(|_| {
                    let t = Instant::now();
                    f();
                    t.elapsed()
                })
                .collect(),
        )
    };
    for (name, new) in cases {
        let (t1, v1) = delta::encode_v1(&new, &base, 4, 3).unwrap();
        let (t2, v2) = delta::encode(&new, &base, 4, 3).unwrap();
        let d1 = timed(&|| {
            assert_eq!(
                delta::decode(delta::Version::V1, t1, &v1, &base, 4).unwrap(),
                new
            );
        });
        let d2 = timed(&|| {
            assert_eq!(
                delta::decode(delta::Version::V2, t2, &v2, &base, 4).unwrap(),
                new
            );
        });
        println!(
            "   chunk, {name}: v1 {:.1}% of the chunk, decode {:.0} us; v2 ({:?}) {:.1}%, decode {:.0} us (median of 21, load {})",
            100.0 * v1.len() as f64 / new.len() as f64,
            d1.as_secs_f64() * 1e6,
            delta::layout(delta::Version::V2, &v2).unwrap(),
            100.0 * v2.len() as f64 / new.len() as f64,
            d2.as_secs_f64() * 1e6,
            load()
        );
    }
}

fn main() {
    let mut mib = 1024usize;
    let mut chain = 100usize;
    let mut dir: Option<std::path::PathBuf> = None;
    let mut chain_pct = 1.0f64;
    let mut max_depth: Option<u32> = None;
    let mut goals_mode = false;
    let mut profile_rounds = 0usize;
    let mut sparse_depths = vec![16usize];
    let mut rows_pct = 1.0f64;
    let mut dense_steps = 6usize;
    let mut bf16 = false;
    let mut hot_budget: Option<u64> = None;
    let mut layouts_only = false;
    let mut decode_costs_only = false;
    let mut snapshot_file: Option<std::path::PathBuf> = None;
    let mut like: Option<std::path::PathBuf> = None;
    let mut ingest_rounds = 0usize;
    let mut keep = false;
    let mut saved: Option<std::path::PathBuf> = None;
    let mut tip: Option<ipfrs_storage::Cid> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--mib" => mib = args.next().and_then(|v| v.parse().ok()).expect("--mib N"),
            "--chain" => chain = args.next().and_then(|v| v.parse().ok()).expect("--chain N"),
            "--dir" => dir = args.next().map(Into::into),
            "--chain-rows" => {
                chain_pct = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--chain-rows PCT")
            }
            "--max-depth" => {
                max_depth = args.next().and_then(|v| v.parse().ok());
                assert!(max_depth.is_some(), "--max-depth N");
            }
            "--goals" => goals_mode = true,
            "--checkout-profile" => {
                profile_rounds = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--checkout-profile ROUNDS")
            }
            "--sparse-depths" => {
                sparse_depths = args
                    .next()
                    .map(|v| v.split(',').map(|d| d.parse().expect("a depth")).collect())
                    .expect("--sparse-depths D1,D2,..");
                sparse_depths.sort_unstable();
            }
            "--rows-pct" => {
                rows_pct = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--rows-pct PCT")
            }
            "--dense-steps" => {
                dense_steps = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--dense-steps N")
            }
            "--bf16" => bf16 = true,
            "--keep" => keep = true,
            "--checkout-repo" => saved = args.next().map(std::path::PathBuf::from),
            "--tip" => tip = args.next().and_then(|v| v.parse().ok()),
            "--like" => like = args.next().map(std::path::PathBuf::from),
            "--snapshot-file" => snapshot_file = args.next().map(std::path::PathBuf::from),
            "--layouts" => layouts_only = true,
            "--decode-costs" => decode_costs_only = true,
            "--ingest-only" => {
                ingest_rounds = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--ingest-only ROUNDS")
            }
            "--hot-budget-mib" => {
                hot_budget = args
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .map(|m| m << 20);
                assert!(hot_budget.is_some(), "--hot-budget-mib N");
            }
            other => panic!(
                "unknown argument {other}; use --mib N --chain N --dir PATH --chain-rows PCT --max-depth N --hot-budget-mib N --layouts --ingest-only R --goals [--like FILE] --snapshot-file PATH --checkout-profile ROUNDS [--sparse-depths D1,D2 --rows-pct PCT --dense-steps N --bf16 --keep] [--checkout-repo DIR --tip CID]"
            ),
        }
    }
    if let Some(file) = &snapshot_file {
        goals::snapshot_file(file, dir.as_deref());
        return;
    }
    if let Some(dir) = &saved {
        let tip = tip.expect("--checkout-repo DIR needs --tip CID");
        goals::profile_saved(dir, tip, profile_rounds.max(1));
        return;
    }
    if profile_rounds > 0 {
        let profile = goals::Profile {
            mib,
            rounds: profile_rounds,
            sparse_depths,
            rows_pct,
            dense_steps,
            bf16,
            like,
            max_depth,
            keep,
        };
        goals::profile_checkout(&profile, dir.as_deref());
        return;
    }
    if goals_mode {
        goals::run(mib, max_depth, dir.as_deref(), like.as_deref());
        return;
    }
    if layouts_only {
        layout_costs(&mut Rng(0x2545_f491_4f6c_dd1d));
        return;
    }
    if decode_costs_only {
        decode_costs::run(&mut Rng(0x2545_f491_4f6c_dd1d));
        return;
    }
    let tmp = match &dir {
        Some(d) => tempfile::tempdir_in(d).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let t = Instant::now();
    let m0 = model(mib, &mut rng);
    let size: u64 = m0.values().map(|t| t.data.len() as u64).sum();
    println!(
        "model: {} tensors, {:.1} MiB of f32 (generated in {:.1} s); dir {}",
        m0.len(),
        size as f64 / (1 << 20) as f64,
        secs(t.elapsed()),
        tmp.path().display()
    );
    let mut config = RepoConfig::default();
    if let Some(n) = max_depth {
        config.max_chain_depth = n;
    }
    println!(
        "config: chunk {} KiB, max chain depth {}, zstd level {}, hot-tier budget {}; chain commits change {chain_pct}% of rows",
        config.chunk_bytes >> 10,
        config.max_chain_depth,
        config.zstd_level,
        hot_budget.map_or("default".to_string(), |b| format!("{} MiB", b >> 20))
    );

    // 1. Raw ingest vs full commit, each into a fresh engine.
    let engine_config = |name: &str| {
        let mut c = ipfrs_storage::Config::new(tmp.path().join(name));
        if let (Some(hot), Some(budget)) = (c.hot_tier.as_mut(), hot_budget) {
            hot.budget_bytes = budget;
        }
        c
    };
    if ingest_rounds > 0 {
        // Step 1 only, in fresh engines each round (removed after), for medians.
        let (mut raws, mut fulls) = (Vec::new(), Vec::new());
        for round in 0..ingest_rounds {
            let raw = Engine::open(engine_config(&format!("raw{round}"))).unwrap();
            let t = Instant::now();
            put_raw(&raw, &m0, &config);
            raws.push(t.elapsed());
            block_on(raw.close()).unwrap();
            let engine = Engine::open(engine_config(&format!("repo{round}"))).unwrap();
            let repo = Repo::new(engine, MemRefStore::new(), MemLedger::new(), config.clone());
            let t = Instant::now();
            block_on(repo.commit("main", &m0, CommitInfo::default())).unwrap();
            fulls.push(t.elapsed());
            block_on(repo.store().close()).unwrap();
            println!(
                "   round {round}: full commit {:.2} s, raw put_many {:.2} s (load {})",
                secs(fulls[round]),
                secs(raws[round]),
                load()
            );
            for name in ["raw", "repo"] {
                std::fs::remove_dir_all(tmp.path().join(format!("{name}{round}"))).unwrap();
            }
        }
        let (full, raw) = (median(fulls), median(raws));
        println!(
            "1. full commit {:.2} s ({:.0} MiB/s) vs raw put_many {:.2} s ({:.0} MiB/s), medians of {ingest_rounds}: {:.2}x",
            secs(full),
            size as f64 / (1 << 20) as f64 / secs(full),
            secs(raw),
            size as f64 / (1 << 20) as f64 / secs(raw),
            secs(full) / secs(raw)
        );
        return;
    }
    let raw = Engine::open(engine_config("raw")).unwrap();
    let t = Instant::now();
    let raw_cids = put_raw(&raw, &m0, &config);
    let raw_put = t.elapsed();
    let engine = Engine::open(engine_config("repo")).unwrap();
    let repo = Repo::new(engine, MemRefStore::new(), MemLedger::new(), config.clone());
    let commit = |m: &Tensors, msg: &str| {
        let info = CommitInfo {
            message: msg.into(),
            ..CommitInfo::default()
        };
        let before = stored(repo.store());
        let t = Instant::now();
        let s = block_on(repo.commit("main", m, info)).unwrap();
        (t.elapsed(), stored(repo.store()) - before, s)
    };
    let (full_time, full_bytes, _) = commit(&m0, "full");
    println!(
        "1. full commit {:.2} s ({:.0} MiB/s) vs raw put_many {:.2} s ({:.0} MiB/s): {:.2}x; stored {:.1} MiB",
        secs(full_time),
        size as f64 / (1 << 20) as f64 / secs(full_time),
        secs(raw_put),
        size as f64 / (1 << 20) as f64 / secs(raw_put),
        secs(full_time) / secs(raw_put),
        full_bytes as f64 / (1 << 20) as f64
    );
    let disk = |when: &str| {
        println!(
            "   disk after {when}: repo {:.2} GiB, raw {:.2} GiB (load {})",
            gib(disk_use(&tmp.path().join("repo"))),
            gib(disk_use(&tmp.path().join("raw"))),
            load()
        );
    };
    disk("the full commit");

    // 2. 1% of rows rewritten with fresh values.
    let rows = (total_rows(&m0) / 100).max(1);
    let chain_rows = ((total_rows(&m0) as f64 * chain_pct / 100.0) as usize).max(1);
    let m1 = touch_rows(&m0, rows, &mut rng, &mut |_, r| 0.02 * r.normal());
    let (t1, b1, s1) = commit(&m1, "1% rows");
    println!(
        "2. 1% rows ({rows} rows) changed: {:.2} MiB new = {:.3}% of the model (goal <= 2%), {:.2} s; {} delta / {} full / {} unchanged tensors",
        b1 as f64 / (1 << 20) as f64,
        100.0 * b1 as f64 / size as f64,
        secs(t1),
        s1.deltas,
        s1.full,
        s1.unchanged
    );

    // 3. Dense update: every weight moves by a small step.
    let m2: Tensors = m1
        .iter()
        .map(|(n, t)| {
            let mut out = Vec::with_capacity(t.data.len());
            for v in t.data.chunks_exact(4) {
                let x = f32::from_le_bytes([v[0], v[1], v[2], v[3]]);
                out.extend_from_slice(&(x + 1e-4 * rng.normal()).to_le_bytes());
            }
            (
                n.clone(),
                TensorData {
                    dtype: t.dtype,
                    shape: t.shape.clone(),
                    data: Bytes::from(out),
                },
            )
        })
        .collect();
    let (t2, b2, s2) = commit(&m2, "dense step");
    let tz = Instant::now();
    let zstd_bytes: u64 = m2
        .values()
        .map(|t| {
            zstd::bulk::compress(&t.data, config.zstd_level)
                .unwrap()
                .len() as u64
        })
        .sum();
    println!(
        "3. dense w += 1e-4*N(0,1): {:.1} MiB new = {:.1}% of a full copy (goal <= 60%), {:.2} s; plain zstd -{} of the new tensors: {:.1} MiB = {:.1}% ({:.2} s)",
        b2 as f64 / (1 << 20) as f64,
        100.0 * b2 as f64 / size as f64,
        secs(t2),
        config.zstd_level,
        zstd_bytes as f64 / (1 << 20) as f64,
        100.0 * zstd_bytes as f64 / size as f64,
        secs(tz.elapsed())
    );
    // The dense commit's deltas are against the recipe's key (m0) or the parent (m1).
    let h_base = entropy_bits_per_elem(&m2, &m0);
    let h_parent = entropy_bits_per_elem(&m2, &m1);
    drop((m0, m1));
    let mut layouts = [0usize; 3];
    for cid in block_on(repo.commit_state(&s2.commit))
        .unwrap()
        .tensors
        .values()
    {
        if let TensorObject::Chunked(mut t) = block_on(repo.tensor_object(cid)).unwrap() {
            let inline = block_on(repo.resolve_chains(&mut t.chunks)).unwrap();
            // The newest patch of each chunk is the dense step's.
            let payloads: Vec<_> = t.chunks.iter().filter_map(|r| r.patches.last()).collect();
            layouts[2] += t.chunks.len() - payloads.len();
            for p in payloads {
                let b = block_on(repo.payload(p, &inline)).unwrap();
                let layout = delta::layout(delta::Version::V2, &b);
                let exponent_coded = matches!(
                    layout,
                    Some(delta::Layout::ExponentGroups | delta::Layout::ScaledTokens)
                );
                layouts[usize::from(exponent_coded)] += 1;
            }
        }
    }
    println!(
        "   entropy bound: {:.1}% ({:.2} bits/weight, H(step | base exponent) against the delta's base; {:.1}% against the parent); chunks: {} byte planes, {} exponent-coded, {} raw/unchanged (load {})",
        100.0 * h_base / 32.0,
        h_base,
        100.0 * h_parent / 32.0,
        layouts[0],
        layouts[1],
        layouts[2],
        load()
    );
    disk("the dense commit");

    // 4. A chain of commits (each rewrites 1% of rows by a small step), then checkout of
    //    its end vs reading the raw bytes back.
    let mut m = m2;
    let tc = Instant::now();
    let mut chain_bytes = 0;
    for i in 0..chain {
        m = touch_rows(&m, chain_rows, &mut rng, &mut |x, r| x + 1e-3 * r.normal());
        let (_, b, _) = commit(&m, &format!("chain {i}"));
        chain_bytes += b;
        if (i + 1) % 10 == 0 {
            disk(&format!("chain commit {}", i + 1));
        }
    }
    let chain_time = tc.elapsed();
    let tip = block_on(repo.resolve(&Revision::Branch("main".into()))).unwrap();
    let state = block_on(repo.commit_state(&tip)).unwrap();
    let (mut deltas, mut max_depth) = (0, 0);
    for cid in state.tensors.values() {
        if let TensorObject::Chunked(t) = block_on(repo.tensor_object(cid)).unwrap() {
            deltas += 1;
            let deepest = t.chunks.iter().map(|r| r.depth()).max().unwrap_or(0);
            max_depth = max_depth.max(deepest);
        }
    }
    // Median of five of each, alternating: the machine is shared and noisy.
    let (mut checkout, mut raw_read) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let t = Instant::now();
        let (_, out) = block_on(repo.checkout(&Revision::Branch("main".into()))).unwrap();
        checkout.push(t.elapsed());
        assert!(out == m, "checkout is not bit-exact");
        drop(out);
        let t = Instant::now();
        let mut raw_total = 0;
        for cids in &raw_cids {
            let mut buf = BytesMut::new();
            for batch in cids.chunks(config.batch_blocks) {
                for b in block_on(raw.get_many(batch)).unwrap() {
                    buf.extend_from_slice(&b.unwrap());
                }
            }
            raw_total += buf.len();
        }
        raw_read.push(t.elapsed());
        assert_eq!(raw_total as u64, size);
    }
    println!(
        "4. chain of {chain} commits ({chain_pct}% rows each): {:.1} s, {:.1} MiB new in all ({:.2}% of the model per commit); tip: {deltas}/{} tensors are deltas, depth <= {max_depth}",
        secs(chain_time),
        chain_bytes as f64 / (1 << 20) as f64,
        100.0 * chain_bytes as f64 / size as f64 / chain.max(1) as f64,
        state.tensors.len()
    );
    let (best_c, best_r) = (
        checkout.iter().min().copied(),
        raw_read.iter().min().copied(),
    );
    let (checkout, raw_read) = (median(checkout), median(raw_read));
    println!(
        "   checkout of the tip {:.2} s vs raw read {:.2} s (median of 5): {:.2}x (goal <= 1.5x); best {:.2} s vs {:.2} s (load {})",
        secs(checkout),
        secs(raw_read),
        secs(checkout) / secs(raw_read),
        secs(best_c.unwrap()),
        secs(best_r.unwrap()),
        load()
    );
    block_on(repo.store().close()).unwrap();
    block_on(raw.close()).unwrap();
}
