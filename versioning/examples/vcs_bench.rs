//! Git-for-Tensors benchmark on a real engine.
//!
//! ```text
//! cargo run --release -p ipfrs-versioning --example vcs_bench -- --mib 1024 [--chain 100] [--dir PATH]
//! ```
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
    TensorObject, Tensors,
};

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

fn stored(e: &Engine) -> u64 {
    block_on(BlockStore::stats(e)).unwrap().bytes
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn main() {
    let mut mib = 1024usize;
    let mut chain = 100usize;
    let mut dir: Option<std::path::PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--mib" => mib = args.next().and_then(|v| v.parse().ok()).expect("--mib N"),
            "--chain" => chain = args.next().and_then(|v| v.parse().ok()).expect("--chain N"),
            "--dir" => dir = args.next().map(Into::into),
            other => panic!("unknown argument {other}; use --mib N --chain N --dir PATH"),
        }
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
    let config = RepoConfig::default();
    println!(
        "config: chunk {} KiB, snapshot every {} versions, zstd level {}",
        config.chunk_bytes >> 10,
        config.snapshot_every,
        config.zstd_level
    );

    // 1. Raw ingest vs full commit, each into a fresh engine.
    let raw = Engine::open(tmp.path().join("raw")).unwrap();
    let t = Instant::now();
    let mut raw_cids: Vec<Vec<ipfrs_storage::Cid>> = Vec::new();
    for tensor in m0.values() {
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
    let raw_put = t.elapsed();
    let engine = Engine::open(tmp.path().join("repo")).unwrap();
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

    // 2. 1% of rows rewritten with fresh values.
    let rows = (total_rows(&m0) / 100).max(1);
    let m1 = touch_rows(&m0, rows, &mut rng, &mut |_, r| 0.02 * r.normal());
    drop(m0);
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
    drop(m1);
    let (t2, b2, _) = commit(&m2, "dense step");
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

    // 4. A chain of commits (each rewrites 1% of rows by a small step), then checkout of
    //    its end vs reading the raw bytes back.
    let mut m = m2;
    let tc = Instant::now();
    let mut chain_bytes = 0;
    for i in 0..chain {
        m = touch_rows(&m, rows, &mut rng, &mut |x, r| x + 1e-3 * r.normal());
        let (_, b, _) = commit(&m, &format!("chain {i}"));
        chain_bytes += b;
    }
    let chain_time = tc.elapsed();
    let tip = block_on(repo.resolve(&Revision::Branch("main".into()))).unwrap();
    let state = block_on(repo.commit_state(&tip)).unwrap();
    let (mut deltas, mut max_depth) = (0, 0);
    for cid in state.tensors.values() {
        if let TensorObject::Delta(d) = block_on(repo.tensor_object(cid)).unwrap() {
            deltas += 1;
            max_depth = max_depth.max(d.depth);
        }
    }
    // Best of three of each, alternating: the machine is shared and noisy.
    let (mut checkout, mut raw_read) = (Duration::MAX, Duration::MAX);
    for _ in 0..3 {
        let t = Instant::now();
        let (_, out) = block_on(repo.checkout(&Revision::Branch("main".into()))).unwrap();
        checkout = checkout.min(t.elapsed());
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
        raw_read = raw_read.min(t.elapsed());
        assert_eq!(raw_total as u64, size);
    }
    println!(
        "4. chain of {chain} commits (1% rows each): {:.1} s, {:.1} MiB new in all ({:.2}% of the model per commit); tip: {deltas}/{} tensors are deltas, depth <= {max_depth}",
        secs(chain_time),
        chain_bytes as f64 / (1 << 20) as f64,
        100.0 * chain_bytes as f64 / size as f64 / chain.max(1) as f64,
        state.tensors.len()
    );
    println!(
        "   checkout of the tip {:.2} s vs raw read {:.2} s (best of 3): {:.2}x (goal <= 1.5x)",
        secs(checkout),
        secs(raw_read),
        secs(checkout) / secs(raw_read)
    );
    block_on(repo.store().close()).unwrap();
    block_on(raw.close()).unwrap();
}
