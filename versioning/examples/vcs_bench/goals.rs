//! `--goals`: the figures the chain goals ask for, on one generated model and its bf16 copy.
//!
//! Model: matrices of 4096 columns whose weights are N(0, s) with s from 0.01 to 0.08 by
//! tensor (as the layers of a trained network differ), plus per-layer norm weights near 1
//! and small biases. Measured, each in a fresh repository with the default config (or
//! `--max-depth`):
//! - a full snapshot: new bytes / model bytes, for F32 and BF16;
//! - a chain of 50 commits each changing 1% of the rows (w += 1e-4 N(0,1) on those rows):
//!   new bytes per commit (mean, max), and checkout at depths 0, 10, .., 50;
//! - a chain of 20 dense steps (every weight += `DENSE_STEP` N(0,1)): mean and max per
//!   commit, and checkout of its tip;
//! - each checkout: `Repo::checkout_to_file` against `std::fs::copy` of the reference file
//!   (both warm, medians of 5 in the same run), and `cmp` of the two files.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::future::block_on;
use ipfrs_storage::{BlockStore, Cid, Engine};
use ipfrs_versioning::{
    CheckoutOptions, Chunked, CommitInfo, DType, MemLedger, MemRefStore, Repo, RepoConfig,
    Revision, TensorData, TensorObject, Tensors, write_safetensors,
};

use super::{Rng, median, secs, stored};

const COLS: usize = 4096;
/// The dense step: chosen so that one step costs what a real optimizer step on a real F32
/// model cost (35.6% of a 90.9 MB sentence-embedding model).
const DENSE_STEP: f32 = 1e-6;
/// The sparse chain's step on the rows it touches.
const ROW_STEP: f32 = 1e-4;

type TestRepo = Repo<Engine, MemRefStore, MemLedger>;

/// N(0, 1) by Box-Muller (the bench's sum of uniforms has no tails).
fn gauss(rng: &mut Rng) -> f32 {
    let u = (rng.uniform() as f64).max(1e-12);
    let v = rng.uniform() as f64;
    ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
}

fn f32_tensor(name: &str, shape: Vec<u64>, values: impl Iterator<Item = f32>) -> TensorData {
    let data: Vec<u8> = values.flat_map(f32::to_le_bytes).collect();
    TensorData::new(name, DType::F32, shape, data).unwrap()
}

/// The generated F32 model of about `mib` MiB (see the module doc).
fn model(mib: usize, rng: &mut Rng) -> Tensors {
    let mut m = Tensors::new();
    let rows_per = (16 << 20) / (COLS * 4);
    let layers = (mib << 20).div_ceil(rows_per * COLS * 4);
    for i in 0..layers {
        let s = [0.01f32, 0.02, 0.04, 0.08][i % 4];
        let w = f32_tensor(
            &format!("layer{i:03}.weight"),
            vec![rows_per as u64, COLS as u64],
            (0..rows_per * COLS).map(|_| s * gauss(rng)),
        );
        let norm = f32_tensor(
            &format!("layer{i:03}.norm"),
            vec![COLS as u64],
            (0..COLS).map(|_| 1.0 + 0.05 * gauss(rng)),
        );
        let bias = f32_tensor(
            &format!("layer{i:03}.bias"),
            vec![COLS as u64],
            (0..COLS).map(|_| 0.01 * gauss(rng)),
        );
        m.insert(format!("layer{i:03}.weight"), w);
        m.insert(format!("layer{i:03}.norm"), norm);
        m.insert(format!("layer{i:03}.bias"), bias);
    }
    m
}

/// A model of about `mib` MiB with the weight statistics of a real one: the F32 tensors of
/// the safetensors file `like`, repeated until the size is reached, each copy with its rows
/// (the elements of a vector) rotated by a random count. A copy holds the real values in
/// their order (a trained model's neighbouring rows are alike: an embedding table's
/// rare tokens, a layer's rows), yet its chunks start elsewhere in that order, so no chunk
/// of one copy equals a chunk of another and deduplication finds nothing the real file
/// would not offer.
fn model_like(like: &Path, mib: usize, rng: &mut Rng) -> Tensors {
    let real = ipfrs_versioning::read_safetensors(like).unwrap();
    let floats: Vec<(&String, &TensorData)> =
        real.iter().filter(|(_, t)| t.dtype == DType::F32).collect();
    assert!(!floats.is_empty(), "{} holds no F32 tensor", like.display());
    let mut m = Tensors::new();
    let mut size = 0u64;
    for copy in 0.. {
        if size >= (mib as u64) << 20 {
            break;
        }
        for (name, t) in &floats {
            // A vector's rows are its elements.
            let row = match t.shape.as_slice() {
                [.., cols] if t.shape.len() >= 2 => 4 * (*cols as usize).max(1),
                _ => 4,
            };
            let mut rows: Vec<&[u8]> = t.data.chunks(row).collect();
            let by = rng.below(rows.len());
            rows.rotate_left(by);
            let rotated =
                TensorData::new(name.as_str(), DType::F32, t.shape.clone(), rows.concat()).unwrap();
            size += rotated.data.len() as u64;
            m.insert(format!("copy{copy}.{name}"), rotated);
        }
    }
    m
}

/// The model the suite runs on: [`model_like`] a real file, or the Gaussian [`model`].
fn model_for(mib: usize, like: Option<&Path>, rng: &mut Rng) -> Tensors {
    match like {
        Some(file) => model_like(file, mib, rng),
        None => model(mib, rng),
    }
}

/// bf16 by round-to-nearest-even of the f32 bits (as torch's `.to(torch.bfloat16)`).
fn to_bf16(m: &Tensors) -> Tensors {
    m.iter()
        .map(|(n, t)| {
            let data: Vec<u8> = t
                .data
                .chunks_exact(4)
                .flat_map(|b| {
                    let x = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                    half::bf16::from_f32(x).to_bits().to_le_bytes()
                })
                .collect();
            let t = TensorData::new(n, DType::BF16, t.shape.clone(), data).unwrap();
            (n.clone(), t)
        })
        .collect()
}

/// `m` with `f` applied to every f32 value of the rows `pick` selects.
fn step(
    m: &Tensors,
    rng: &mut Rng,
    mut pick: impl FnMut(&mut Rng) -> bool,
    amount: f32,
) -> Tensors {
    m.iter()
        .map(|(n, t)| {
            let cols = *t.shape.last().unwrap() as usize;
            let mut data = t.data.to_vec();
            for row in data.chunks_exact_mut(cols * 4) {
                if !pick(rng) {
                    continue;
                }
                for v in row.chunks_exact_mut(4) {
                    let x = f32::from_le_bytes([v[0], v[1], v[2], v[3]]);
                    v.copy_from_slice(&(x + amount * gauss(rng)).to_le_bytes());
                }
            }
            let t = TensorData {
                dtype: t.dtype,
                shape: t.shape.clone(),
                data: Bytes::from(data),
            };
            (n.clone(), t)
        })
        .collect()
}

fn size_of(m: &Tensors) -> u64 {
    m.values().map(|t| t.data.len() as u64).sum()
}

fn fresh_repo(dir: &Path, name: &str, config: &RepoConfig) -> TestRepo {
    let engine = Engine::open(dir.join(name)).unwrap();
    Repo::new(engine, MemRefStore::new(), MemLedger::new(), config.clone())
}

/// Commits `m` and returns the engine's new bytes.
fn commit(repo: &TestRepo, m: &Tensors, msg: &str) -> u64 {
    let before = stored(repo.store());
    let info = CommitInfo {
        message: msg.into(),
        ..CommitInfo::default()
    };
    block_on(repo.commit("main", m, info)).unwrap();
    stored(repo.store()) - before
}

/// The chunked tensor objects of the tip, with their CIDs, as stored (chains not walked).
fn tip_objects(repo: &TestRepo) -> Vec<(Cid, Chunked)> {
    let head = block_on(repo.resolve(&Revision::Head)).unwrap();
    let state = block_on(repo.commit_state(&head)).unwrap();
    state
        .tensors
        .values()
        .filter_map(|cid| match block_on(repo.tensor_object(cid)).unwrap() {
            TensorObject::Chunked(t) => Some((*cid, t)),
            _ => None,
        })
        .collect()
}

/// [`tip_objects`] with their chains walked (each recipe lists all its patches).
fn tip_chunked(repo: &TestRepo) -> Vec<(Cid, Chunked)> {
    let mut tip = tip_objects(repo);
    for (_, t) in &mut tip {
        block_on(repo.resolve_chains(&mut t.chunks)).unwrap();
    }
    tip
}

/// Seconds to walk the patch chains of every recipe of the tip (`Repo::resolve_chains`).
fn chain_walk(repo: &TestRepo) -> f64 {
    let mut tip = tip_objects(repo);
    let t = Instant::now();
    for (_, tensor) in &mut tip {
        block_on(repo.resolve_chains(&mut tensor.chunks)).unwrap();
    }
    secs(t.elapsed())
}

/// Seconds to read every block the tip's recipes name (keys and the patches their links do
/// not carry) from the engine, without decoding: with [`chain_walk`], the floor under a
/// checkout.
fn engine_read(repo: &TestRepo) -> f64 {
    let mut cids = Vec::new();
    for (_, mut t) in tip_objects(repo) {
        let inline = block_on(repo.resolve_chains(&mut t.chunks)).unwrap();
        for r in t.chunks {
            cids.push(r.key.block());
            let stored = r
                .patches
                .iter()
                .filter(|p| !inline.contains_key(&p.payload));
            cids.extend(stored.map(|p| p.payload));
        }
    }
    let t = Instant::now();
    let mut bytes = 0;
    for batch in cids.chunks(32) {
        for b in block_on(repo.store().get_many(batch)).unwrap() {
            bytes += b.unwrap().len();
        }
    }
    std::hint::black_box(bytes);
    secs(t.elapsed())
}

/// Waits (at most a minute) until the engine's background compaction has stopped moving
/// data, and returns how long that took: after a run of commits that wrote a few GB it may
/// still be packing segments, on the cores a checkout decodes on, and the figure is the
/// checkout's own. (Rounds of the dense tip's checkout took 0.24 to 0.72 s in one run; in
/// the runs since this wait, compaction had always finished already, so the spread has
/// another cause too, likely the kernel writing back the files of earlier rounds: hence
/// five rounds.)
fn compaction_settled(engine: &Engine) -> Duration {
    let start = Instant::now();
    let moving = |s: &ipfrs_storage::Stats| {
        let compacted: u64 = s.shards.iter().map(|x| x.segments_compacted).sum();
        (
            s.hot_disk_bytes,
            s.packs,
            s.compaction_cold_bytes,
            s.compaction_rewritten_bytes,
            compacted,
        )
    };
    let mut last = moving(&engine.blocking().stats().unwrap());
    while start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(300));
        let now = moving(&engine.blocking().stats().unwrap());
        if now == last {
            break;
        }
        last = now;
    }
    start.elapsed()
}

/// Checkout of the tip to a file vs `cp` of `m` written as a file: see [`checkout_vs_file`].
fn checkout_vs_cp(repo: &TestRepo, m: &Tensors, dir: &Path) -> (f64, f64, bool) {
    let reference = dir.join("reference.safetensors");
    write_safetensors(&reference, m).unwrap();
    let result = checkout_vs_file(repo, &reference, dir);
    let _ = std::fs::remove_file(reference);
    result
}

/// Checkout of the tip to a file vs `cp` of `reference`: (checkout s, cp s, cmp equal),
/// medians of 5; also prints cp + fsync (what `checkout --fsync` adds to cp) and the
/// engine's read of the tip's blocks.
fn checkout_vs_file(repo: &TestRepo, reference: &Path, dir: &Path) -> (f64, f64, bool) {
    let (copy, out) = (dir.join("copy.safetensors"), dir.join("out.safetensors"));
    let waited = compaction_settled(repo.store());
    let (mut cps, mut outs, mut syncs, mut reads) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // One unmeasured round of each warms the page cache for both.
    for round in 0..6 {
        let t = Instant::now();
        std::fs::copy(reference, &copy).unwrap();
        let cp = t.elapsed();
        std::fs::File::open(&copy).unwrap().sync_all().unwrap();
        let synced = t.elapsed();
        let read = Duration::from_secs_f64(engine_read(repo));
        let t = Instant::now();
        block_on(repo.checkout_to_file(&Revision::Head, &out)).unwrap();
        let co = t.elapsed();
        if round > 0 {
            cps.push(cp);
            outs.push(co);
            syncs.push(synced);
            reads.push(read);
        }
    }
    println!(
        "    (cp + fsync {:.3} s; engine read of the tip's blocks {:.3} s; {:.1} s waited for \
         compaction to finish first)",
        secs(median(syncs)),
        secs(median(reads)),
        secs(waited)
    );
    let same = cmp_equal(reference, &out);
    for f in [copy, out] {
        let _ = std::fs::remove_file(f);
    }
    (secs(median(outs)), secs(median(cps)), same)
}

fn pct(part: u64, whole: u64) -> f64 {
    100.0 * part as f64 / whole as f64
}

/// Runs the suite on a model of `mib` MiB.
pub fn run(mib: usize, max_depth: Option<u32>, dir: Option<&Path>, like: Option<&Path>) {
    let tmp = match dir {
        Some(d) => tempfile::tempdir_in(d).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let mut config = RepoConfig::default();
    if let Some(d) = max_depth {
        config.max_chain_depth = d;
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let m0 = model_for(mib, like, &mut rng);
    if let Some(file) = like {
        println!("weights of {} (each copy's rows rotated)", file.display());
    }
    let size = size_of(&m0);
    println!(
        "model: {} tensors, {:.1} MiB F32; max chain depth {}, chunk {} KiB, zstd {}; {} cores",
        m0.len(),
        size as f64 / f64::from(1 << 20),
        config.max_chain_depth,
        config.chunk_bytes >> 10,
        config.zstd_level,
        std::thread::available_parallelism().map_or(1, usize::from)
    );

    // Full snapshots.
    let b16 = to_bf16(&m0);
    let bf = fresh_repo(tmp.path(), "bf16", &config);
    let new = commit(&bf, &b16, "bf16");
    let (co, cp, same) = checkout_vs_cp(&bf, &b16, tmp.path());
    println!(
        "full snapshot BF16: {:.2}% of {:.1} MiB; checkout {co:.3} s vs cp {cp:.3} s = {:.2}x, cmp {}",
        pct(new, size_of(&b16)),
        size_of(&b16) as f64 / f64::from(1 << 20),
        co / cp,
        if same { "equal" } else { "DIFFERENT" }
    );
    drop(b16);
    block_on(bf.store().close()).unwrap();

    let repo = fresh_repo(tmp.path(), "sparse", &config);
    let new = commit(&repo, &m0, "v0");
    let (_, chunks, distinct) = keys_of(&repo);
    let (co, cp, same) = checkout_vs_cp(&repo, &m0, tmp.path());
    println!(
        "full snapshot F32 ({chunks} chunks, {distinct} distinct): {:.2}%; depth 0 checkout {co:.3} s vs cp {cp:.3} s = {:.2}x, cmp {}",
        pct(new, size),
        co / cp,
        if same { "equal" } else { "DIFFERENT" }
    );

    // Sparse chain: 1% of rows per commit.
    let mut m = m0.clone();
    let mut costs = Vec::new();
    for k in 1..=50 {
        m = step(&m, &mut rng, |r| r.below(100) == 0, ROW_STEP);
        let new = commit(&repo, &m, &format!("sparse {k}"));
        costs.push(pct(new, size));
        if k % 10 == 0 {
            let objects = tensor_objects(&repo);
            let (co, cp, same) = checkout_vs_cp(&repo, &m, tmp.path());
            println!(
                "  sparse depth {k}: commit {:.2}% (tensor objects {:.2}%, {:.2} patches per chunk); checkout {co:.3} s vs cp {cp:.3} s = {:.2}x, cmp {}",
                costs[k - 1],
                pct(objects.0, size),
                objects.1,
                co / cp,
                if same { "equal" } else { "DIFFERENT" }
            );
        }
    }
    let mean = costs.iter().sum::<f64>() / costs.len() as f64;
    let max = costs.iter().cloned().fold(0.0, f64::max);
    let over = costs.iter().filter(|&&c| c > 2.0).count();
    println!(
        "chain of 50 x 1% rows: mean {mean:.3}% per commit, max {max:.3}%, {over} commits above 2%"
    );
    block_on(repo.store().close()).unwrap();

    // Dense chain.
    let repo = fresh_repo(tmp.path(), "dense", &config);
    commit(&repo, &m0, "v0");
    let mut m = m0;
    let mut costs = Vec::new();
    for k in 1..=20 {
        let t = Instant::now();
        m = step(&m, &mut rng, |_| true, DENSE_STEP);
        let gen_s = secs(t.elapsed());
        let t = Instant::now();
        let new = commit(&repo, &m, &format!("dense {k}"));
        costs.push(pct(new, size));
        println!(
            "  dense {k}: {:.2}% (commit {:.1} s, step generated in {gen_s:.1} s)",
            costs[k - 1],
            secs(t.elapsed())
        );
    }
    let mean = costs.iter().sum::<f64>() / costs.len() as f64;
    let max = costs.iter().cloned().fold(0.0, f64::max);
    let (co, cp, same) = checkout_vs_cp(&repo, &m, tmp.path());
    println!(
        "chain of 20 dense steps ({DENSE_STEP:e} N(0,1)): mean {mean:.2}% per commit, max {max:.2}%; tip checkout {co:.3} s vs cp {cp:.3} s = {:.2}x, cmp {}",
        co / cp,
        if same { "equal" } else { "DIFFERENT" }
    );
    block_on(repo.store().close()).unwrap();
}

/// What `--checkout-profile` measures (flags of the example, see its module doc).
pub struct Profile {
    /// Size of the generated model.
    pub mib: usize,
    /// Measured checkouts per phase (after one unmeasured round that warms the caches).
    pub rounds: usize,
    /// Depths of the sparse chain at which the tip is checked out, ascending.
    pub sparse_depths: Vec<usize>,
    /// Percentage of rows each sparse commit changes.
    pub rows_pct: f64,
    /// Dense steps committed after the sparse chain (0: none), then its tip checked out.
    pub dense_steps: usize,
    /// Also check out the model's bf16 copy (a fresh repository, depth 0).
    pub bf16: bool,
    /// A real safetensors file whose weights the model takes ([`model_like`]).
    pub like: Option<std::path::PathBuf>,
    /// `--max-depth`: the repository's chain depth bound, if not the default.
    pub max_depth: Option<u32>,
    /// `--keep`: leave the F32 repository on disk and print where, with its tip, for
    /// [`profile_saved`].
    pub keep: bool,
}

/// `--checkout-profile`: the F32 model committed and checked out (depth 0), then the tip of
/// a sparse chain at each of `sparse_depths`, then the tip after `dense_steps` dense steps,
/// and the BF16 copy at depth 0: each phase `rounds` times, alternating a plain checkout,
/// a verified one (`Repo::checkout_to_file_verified`) and `cp` of the same file, with the
/// CPU each checkout used and `cmp` of the result; for `perf record` too (the decoding
/// threads are named `checkout-decode`).
pub fn profile_checkout(p: &Profile, dir: Option<&Path>) {
    let tmp = match dir {
        Some(d) => tempfile::tempdir_in(d).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let t = Instant::now();
    let mut m = model_for(p.mib, p.like.as_deref(), &mut rng);
    if let Some(file) = &p.like {
        println!("weights of {} (each copy's rows rotated)", file.display());
    }
    let mut config = RepoConfig::default();
    if let Some(d) = p.max_depth {
        config.max_chain_depth = d;
    }
    println!(
        "model: {:.1} MiB F32 in {} tensors (generated in {:.1} s); max chain depth {}, chunk {} KiB; {} cores; sparse commits change {}% of rows",
        size_of(&m) as f64 / f64::from(1 << 20),
        m.len(),
        secs(t.elapsed()),
        config.max_chain_depth,
        config.chunk_bytes >> 10,
        std::thread::available_parallelism().map_or(1, usize::from),
        p.rows_pct
    );
    if p.bf16 {
        let b16 = to_bf16(&m);
        let repo = fresh_repo(tmp.path(), "bf16", &config);
        commit(&repo, &b16, "bf16");
        profile_phase(&repo, &b16, tmp.path(), "BF16 depth 0", p.rounds);
        block_on(repo.store().close()).unwrap();
    }
    let repo = fresh_repo(tmp.path(), "profile", &config);
    commit(&repo, &m, "v0");
    profile_phase(&repo, &m, tmp.path(), "F32 depth 0", p.rounds);
    let per_10k = (p.rows_pct * 100.0).round() as usize;
    let mut depth = 0;
    let t = Instant::now();
    for &target in &p.sparse_depths {
        while depth < target {
            depth += 1;
            m = step(&m, &mut rng, |r| r.below(10_000) < per_10k, ROW_STEP);
            commit(&repo, &m, &format!("sparse {depth}"));
        }
        println!("  ({depth} sparse commits in {:.1} s)", secs(t.elapsed()));
        profile_phase(
            &repo,
            &m,
            tmp.path(),
            &format!("F32 sparse depth {depth}"),
            p.rounds,
        );
    }
    if p.dense_steps > 0 {
        for k in 1..=p.dense_steps {
            m = step(&m, &mut rng, |_| true, DENSE_STEP);
            commit(&repo, &m, &format!("dense {k}"));
        }
        let phase = format!(
            "F32 dense tip ({} dense steps after {depth} sparse)",
            p.dense_steps
        );
        profile_phase(&repo, &m, tmp.path(), &phase, p.rounds);
    }
    let tip = block_on(repo.resolve(&Revision::Head)).unwrap();
    block_on(repo.store().close()).unwrap();
    if p.keep {
        let dir = tmp.keep().join("profile");
        println!(
            "kept: --checkout-repo {} --tip {tip} (delete it when done)",
            dir.display()
        );
    }
}

/// `--checkout-repo DIR --tip CID --checkout-profile ROUNDS`: the commit `tip` of a
/// repository that `--checkout-profile --keep` left in `dir`, checked out `rounds` times
/// (after one unmeasured round) alternating with `cp` of the file, without building the
/// chain again: two builds of the decoder compared on the same data, run after run.
pub fn profile_saved(dir: &Path, tip: Cid, rounds: usize) {
    let repo = fresh_repo(dir, ".", &RepoConfig::default());
    let work = tempfile::tempdir_in(dir.parent().unwrap_or(dir)).unwrap();
    let (reference, copy, out) = (
        work.path().join("ref"),
        work.path().join("copy"),
        work.path().join("out"),
    );
    let rev = Revision::Commit(tip);
    block_on(repo.checkout_to_file(&rev, &reference)).unwrap();
    let (mut plain, mut cps, mut cpu) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..=rounds {
        let cp = timed_copy(&reference, &copy);
        let (co, c) = wall_and_cpu(|| {
            block_on(repo.checkout_to_file(&rev, &out)).unwrap();
        });
        if round > 0 {
            cps.push(cp);
            plain.push(co);
            cpu.push(Duration::from_secs_f64(c));
        }
    }
    let same = cmp_equal(&reference, &out);
    let (co, cp, cpu) = (secs(median(plain)), secs(median(cps)), secs(median(cpu)));
    println!(
        "saved tip {tip}: checkout {co:.3} s vs cp {cp:.3} s = {:.2}x (CPU {cpu:.3} s, medians of {rounds}); cmp {}; load {}",
        co / cp,
        if same { "equal" } else { "DIFFERENT" },
        super::load()
    );
    block_on(repo.store().close()).unwrap();
}

/// One phase of [`profile_checkout`]: the tip of `repo` (whose tensors are `m`) checked
/// out `rounds` times plainly and verified, against `cp` of the same file.
fn profile_phase(repo: &TestRepo, m: &Tensors, dir: &Path, phase: &str, rounds: usize) {
    let out = dir.join("out.safetensors");
    let (reference, copy) = (dir.join("ref"), dir.join("copy"));
    write_safetensors(&reference, m).unwrap();
    let (mut plain, mut verified, mut cps) = (Vec::new(), Vec::new(), Vec::new());
    let (mut cpu_plain, mut cpu_verified) = (0.0, 0.0);
    let options = CheckoutOptions::default();
    for round in 0..=rounds {
        let cp = timed_copy(&reference, &copy);
        let (v, c_v) = wall_and_cpu(|| {
            block_on(repo.checkout_to_file_verified(&Revision::Head, &out, options)).unwrap();
        });
        let (co, c_p) = wall_and_cpu(|| {
            block_on(repo.checkout_to_file(&Revision::Head, &out)).unwrap();
        });
        // Round 0 warms the page cache and the engine's mappings for both.
        if round > 0 {
            cps.push(cp);
            verified.push(v);
            plain.push(co);
            cpu_plain += c_p;
            cpu_verified += c_v;
        }
    }
    let same = cmp_equal(&reference, &out);
    println!("  {phase}: {}", recipe_summary(repo));
    println!(
        "  {phase}: walking the patch chains (inline patches with their links) {:.3} s, then reading keys and the other payloads {:.3} s (one thread, no decoding)",
        chain_walk(repo),
        engine_read(repo)
    );
    let (co, v, cp) = (
        secs(median(plain)),
        secs(median(verified)),
        secs(median(cps)),
    );
    let n = rounds.max(1) as f64;
    println!(
        "{phase}: checkout {co:.3} s vs cp {cp:.3} s = {:.2}x (CPU {:.3} s); verified {v:.3} s = {:.2}x (CPU {:.3} s); cmp {}; load {}",
        co / cp,
        cpu_plain / n,
        v / cp,
        cpu_verified / n,
        if same { "equal" } else { "DIFFERENT" },
        super::load()
    );
    for f in [reference, copy, out] {
        let _ = std::fs::remove_file(f);
    }
}

/// What a checkout of the tip decodes per chunk: patches per chunk (mean, max), and how
/// many of them are dense (over an eighth of their chunk: a dense step's patch is about a
/// third) or sparse (a few rows).
fn recipe_summary(repo: &TestRepo) -> String {
    let (mut chunks, mut patches, mut dense, mut max) = (0usize, 0usize, 0usize, 0usize);
    let mut by_dense = [0usize; 4];
    for (_, t) in tip_chunked(repo) {
        for r in &t.chunks {
            let d = r
                .patches
                .iter()
                .filter(|p| u64::from(p.bytes) > t.chunk_bytes / 8)
                .count();
            chunks += 1;
            patches += r.patches.len();
            dense += d;
            max = max.max(r.patches.len());
            by_dense[d.min(3)] += 1;
        }
    }
    let n = chunks.max(1) as f64;
    format!(
        "{:.2} patches per chunk (max {max}): {:.2} dense, {:.2} sparse; chunks with 0 / 1 / 2 / 3+ dense patches {} / {} / {} / {}",
        patches as f64 / n,
        dense as f64 / n,
        (patches - dense) as f64 / n,
        by_dense[0],
        by_dense[1],
        by_dense[2],
        by_dense[3]
    )
}

/// `cp` of `from` to `to` (`std::fs::copy`: copy_file_range, as cp does it), timed.
fn timed_copy(from: &Path, to: &Path) -> Duration {
    let t = Instant::now();
    std::fs::copy(from, to).unwrap();
    t.elapsed()
}

/// Runs `f`: its wall time, and the CPU seconds this process used meanwhile (every
/// thread's, so a checkout's decoding threads count).
fn wall_and_cpu(f: impl FnOnce()) -> (Duration, f64) {
    let c = cpu_secs();
    let t = Instant::now();
    f();
    (t.elapsed(), cpu_secs() - c)
}

/// CPU seconds (user + system) this process has used, from /proc (0 where absent).
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) ends with ')'.
    let rest = stat.rsplit_once(')').map_or("", |r| r.1);
    let f: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    f.iter().sum::<f64>() / 100.0
}

/// Whether `cmp` finds the two files byte for byte equal (what the goals promise a user).
fn cmp_equal(a: &std::path::Path, b: &std::path::Path) -> bool {
    Command::new("cmp")
        .arg("-s")
        .arg(a)
        .arg(b)
        .status()
        .is_ok_and(|s| s.success())
}

/// `--snapshot-file PATH`: a real safetensors file committed as a full snapshot (new bytes
/// over its tensor bytes, its dtypes, and the order-0 floor of its F32 tensors per 64 KiB
/// of values), then its bf16 copy; the F32 checkout against `cp` of the file itself, and
/// `cmp` of the two (the file's `__metadata__` and layout are kept).
pub fn snapshot_file(path: &Path, dir: Option<&Path>) {
    let tmp = match dir {
        Some(d) => tempfile::tempdir_in(d).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let (m, file_metadata) = ipfrs_versioning::read_safetensors_with_metadata(path).unwrap();
    let size = size_of(&m);
    let f32_bytes: u64 = m
        .values()
        .filter(|t| t.dtype == DType::F32)
        .map(|t| t.data.len() as u64)
        .sum();
    println!(
        "{}: {} tensors, {:.1} MiB ({:.1}% F32); order-0 floor of the F32 values per 64 KiB: {:.1}%",
        path.display(),
        m.len(),
        size as f64 / f64::from(1 << 20),
        pct(f32_bytes, size),
        100.0 * f32_floor(&m)
    );
    let config = RepoConfig::default();
    let repo = fresh_repo(tmp.path(), "file", &config);
    let before = stored(repo.store());
    let info = CommitInfo {
        message: "file".into(),
        file_metadata,
        ..CommitInfo::default()
    };
    block_on(repo.commit("main", &m, info)).unwrap();
    let new = stored(repo.store()) - before;
    let (keys, chunks, distinct) = keys_of(&repo);
    println!(
        "  keys of {chunks} chunks ({distinct} distinct) {:.2}% of the tensor bytes, the rest (objects) {:.2}%",
        pct(keys, size),
        pct(new - keys.min(new), size)
    );
    let (co, cp, same) = checkout_vs_file(&repo, path, tmp.path());
    println!(
        "full snapshot of the file: {:.2}% of its tensor bytes; checkout {co:.3} s vs cp {cp:.3} s = {:.2}x, cmp {}",
        pct(new, size),
        co / cp,
        if same { "equal" } else { "DIFFERENT" }
    );
    block_on(repo.store().close()).unwrap();
    let floats: Tensors = m
        .iter()
        .filter(|(_, t)| t.dtype == DType::F32)
        .map(|(n, t)| (n.clone(), t.clone()))
        .collect();
    let b16 = to_bf16(&floats);
    let bf = fresh_repo(tmp.path(), "bf16", &config);
    let new = commit(&bf, &b16, "bf16");
    println!(
        "full snapshot of its bf16 copy: {:.2}% of {:.1} MiB",
        pct(new, size_of(&b16)),
        size_of(&b16) as f64 / f64::from(1 << 20)
    );
    block_on(bf.store().close()).unwrap();
}

/// Bytes of the tip's tensor objects (a commit that changes a chunk of a tensor writes its
/// whole object again: every chunk's recipe, with the head of its patch chain) and the
/// mean number of patches per chunk.
fn tensor_objects(repo: &TestRepo) -> (u64, f64) {
    let tip = tip_chunked(repo);
    let cids: Vec<_> = tip.iter().map(|(cid, _)| *cid).collect();
    let (chunks, patches) = tip.iter().fold((0usize, 0usize), |(c, p), (_, t)| {
        let patches: usize = t.chunks.iter().map(|r| r.patches.len()).sum();
        (c + t.chunks.len(), p + patches)
    });
    (
        block_bytes(repo, &cids),
        patches as f64 / chunks.max(1) as f64,
    )
}

/// The total size of the blocks `cids`.
fn block_bytes(repo: &TestRepo, cids: &[Cid]) -> u64 {
    block_on(repo.store().get_many(cids))
        .unwrap()
        .into_iter()
        .map(|b| b.unwrap().len() as u64)
        .sum()
}

/// Bytes of the distinct key blocks the tip's chunk recipes name, with the number of chunks
/// and of distinct keys (equal unless chunks were deduplicated).
fn keys_of(repo: &TestRepo) -> (u64, usize, usize) {
    let mut cids: Vec<_> = tip_chunked(repo)
        .iter()
        .flat_map(|(_, t)| t.chunks.iter().map(|r| r.key.block()))
        .collect();
    let chunks = cids.len();
    cids.sort();
    cids.dedup();
    (block_bytes(repo, &cids), chunks, cids.len())
}

/// The order-0 entropy of the F32 values of `m`, per 64 KiB of values, as a fraction of
/// their bits: sign, exponent, and the mantissa's bytes each coded on their own (what a
/// byte-grouping coder without context can reach).
fn f32_floor(m: &Tensors) -> f64 {
    fn entropy(counts: &[u64], n: u64) -> f64 {
        counts
            .iter()
            .filter(|&&c| c > 0)
            .map(|&c| {
                let p = c as f64 / n as f64;
                -p * p.log2()
            })
            .sum::<f64>()
            * n as f64
    }
    let (mut bits, mut values) = (0.0, 0u64);
    for t in m.values().filter(|t| t.dtype == DType::F32) {
        for chunk in t.data.chunks(64 << 10) {
            let mut planes = vec![[0u64; 256]; 5];
            let n = (chunk.len() / 4) as u64;
            for v in chunk.chunks_exact(4) {
                let x = u32::from_le_bytes([v[0], v[1], v[2], v[3]]);
                planes[0][(x >> 31) as usize] += 1;
                planes[1][((x >> 23) & 0xff) as usize] += 1;
                planes[2][((x >> 15) & 0xff) as usize] += 1;
                planes[3][((x >> 7) & 0xff) as usize] += 1;
                planes[4][(x & 0x7f) as usize] += 1;
            }
            bits += planes.iter().map(|p| entropy(p, n)).sum::<f64>();
            values += n;
        }
    }
    bits / (32.0 * values.max(1) as f64)
}
