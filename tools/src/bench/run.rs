//! Targets (the engine, a raw backend) and the three timed phases run on each.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use ipfrs_storage::key::key_of;
use ipfrs_storage::{BackendKind, Block, BlockingStore, Cid, Config, Durability, Engine};
use ipfrs_tiering::{BackendOptions, ColdBackend};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::cli::{Plan, SizeClass};
use super::error::{BenchError, Result};
use super::report::{self, CpuCeiling, Report};
use super::workload::{Workload, absent_cids};

/// The phases, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Batched put of every block, hashing included; latency per batch.
    Ingest,
    /// Single gets of stored blocks, uniform at random.
    Get,
    /// `has` of CIDs never stored.
    HasAbsent,
    /// `get_many` of `--batch` stored blocks at a time; latency per call.
    GetMany,
    /// `has_many` of `--batch` never-stored CIDs at a time; latency per call.
    HasManyAbsent,
}

impl Phase {
    /// Every phase, in run order.
    pub const ALL: [Phase; 5] = [
        Phase::Ingest,
        Phase::Get,
        Phase::HasAbsent,
        Phase::GetMany,
        Phase::HasManyAbsent,
    ];

    /// The phase's name in the table and the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Ingest => "ingest",
            Phase::Get => "get",
            Phase::HasAbsent => "has_absent",
            Phase::GetMany => "get_many",
            Phase::HasManyAbsent => "has_many_absent",
        }
    }
}

/// What is measured: the engine or a raw backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// The engine over the backend, through its blocking handle.
    Engine,
    /// The backend's `ColdBackend` called directly.
    Raw,
}

impl TargetKind {
    /// The target's name in the table and the JSON.
    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Engine => "engine",
            TargetKind::Raw => "raw",
        }
    }
}

/// The figures of one phase.
#[derive(Debug, Clone)]
pub struct PhaseResult {
    /// The phase.
    pub phase: Phase,
    /// Operations: blocks stored, gets, or lookups.
    pub ops: u64,
    /// Block bytes moved (0 for lookups).
    pub bytes: u64,
    /// Wall time of the phase, all threads.
    pub seconds: f64,
    /// Median latency in microseconds (per batch for ingest).
    pub p50_us: f64,
    /// 99th percentile latency in microseconds.
    pub p99_us: f64,
    /// Largest latency in microseconds.
    pub max_us: f64,
}

impl PhaseResult {
    /// Operations per second.
    pub fn ops_per_s(&self) -> f64 {
        self.ops as f64 / self.seconds.max(1e-9)
    }

    /// MiB of block data per second; `None` for phases that move no data.
    pub fn mib_per_s(&self) -> Option<f64> {
        (self.bytes > 0).then(|| self.bytes as f64 / (1 << 20) as f64 / self.seconds.max(1e-9))
    }
}

/// The results of one target on one size class.
#[derive(Debug, Clone)]
pub struct TargetResult {
    /// The size class.
    pub class: SizeClass,
    /// The backend.
    pub backend: BackendKind,
    /// Engine or raw.
    pub target: TargetKind,
    /// The engine's shard count (`None` for raw backends).
    pub shards: Option<usize>,
    /// One result per phase, in [`Phase::ALL`] order.
    pub phases: Vec<PhaseResult>,
}

impl TargetResult {
    /// The result of `phase`.
    pub fn phase(&self, phase: Phase) -> Option<&PhaseResult> {
        self.phases.iter().find(|p| p.phase == phase)
    }
}

/// The operations the phases time, implemented by the engine and by raw backends.
trait Target: Sync {
    /// Hashes a batch of blocks and stores them durably (as the durability setting says);
    /// returns their CIDs in order.
    fn ingest(&self, blocks: Vec<Bytes>) -> Result<Vec<Cid>>;
    /// The length of a stored block, `None` if it is missing.
    fn get(&self, cid: &Cid) -> Result<Option<usize>>;
    /// Whether the block is stored.
    fn has(&self, cid: &Cid) -> Result<bool>;
    /// The lengths of stored blocks, in order.
    fn get_many(&self, cids: &[Cid]) -> Result<Vec<Option<usize>>>;
    /// Whether each block is stored, in order.
    fn has_many(&self, cids: &[Cid]) -> Result<Vec<bool>>;
}

/// The engine through its blocking handle.
struct EngineTarget {
    store: BlockingStore,
}

impl Target for EngineTarget {
    fn ingest(&self, blocks: Vec<Bytes>) -> Result<Vec<Cid>> {
        let blocks = blocks
            .into_iter()
            .map(Block::new)
            .collect::<Result<Vec<_>, _>>()?;
        self.store.put_many(&blocks)?;
        Ok(blocks.iter().map(|b| *b.cid()).collect())
    }

    fn get(&self, cid: &Cid) -> Result<Option<usize>> {
        Ok(self.store.get(cid)?.map(|b| b.len()))
    }

    fn has(&self, cid: &Cid) -> Result<bool> {
        Ok(self.store.has(cid)?)
    }

    fn get_many(&self, cids: &[Cid]) -> Result<Vec<Option<usize>>> {
        let blocks = self.store.get_many(cids)?;
        Ok(blocks.into_iter().map(|b| b.map(|b| b.len())).collect())
    }

    fn has_many(&self, cids: &[Cid]) -> Result<Vec<bool>> {
        Ok(self.store.has_many(cids)?)
    }
}

/// A raw backend, with the engine's keys (multihash bytes) and batching.
struct RawTarget {
    backend: Box<dyn ColdBackend>,
    /// Flush after each batch (every durability setting but `none`).
    flush: bool,
}

impl Target for RawTarget {
    fn ingest(&self, blocks: Vec<Bytes>) -> Result<Vec<Cid>> {
        let mut cids = Vec::with_capacity(blocks.len());
        let mut items = Vec::with_capacity(blocks.len());
        for data in blocks {
            let (cid, data) = Block::new(data)?.into_parts();
            items.push((key_of(&cid), data));
            cids.push(cid);
        }
        self.backend.put_batch(&items)?;
        if self.flush {
            self.backend.flush()?;
        }
        Ok(cids)
    }

    fn get(&self, cid: &Cid) -> Result<Option<usize>> {
        Ok(self.backend.get(&key_of(cid))?.map(|b| b.len()))
    }

    fn has(&self, cid: &Cid) -> Result<bool> {
        Ok(self.backend.contains(&key_of(cid))?)
    }

    fn get_many(&self, cids: &[Cid]) -> Result<Vec<Option<usize>>> {
        cids.iter().map(|cid| self.get(cid)).collect()
    }

    fn has_many(&self, cids: &[Cid]) -> Result<Vec<bool>> {
        cids.iter().map(|cid| self.has(cid)).collect()
    }
}

/// Runs the whole benchmark described by `plan`, printing as it goes unless quiet.
pub fn run(plan: &Plan) -> Result<()> {
    let started = Instant::now();
    // Fail on an unusable --json or --dir before spending a minute measuring.
    let json_file = match &plan.json {
        Some(path) => Some((
            path,
            File::create(path).map_err(|e| BenchError::io("cannot create --json", path, e))?,
        )),
        None => None,
    };
    let root = run_directory(plan)?;
    let out = Printer { quiet: plan.quiet };

    let cpu = cpu_ceiling()?;
    out.line(&report::header(plan, root.path(), &cpu));

    let mut results = Vec::new();
    for &class in &plan.classes {
        let workload = Workload::generate(class, plan.seed);
        let absent = absent_cids(class.count, plan.seed)?;
        out.line(&report::class_header(class));
        for &backend in &plan.backends {
            for target in [TargetKind::Raw, TargetKind::Engine] {
                let dir = root.path().join(format!(
                    "{}-{}-{}",
                    class.size,
                    target.name(),
                    backend.name()
                ));
                let result = run_target(plan, &workload, &absent, backend, target, &dir)?;
                let raw = results.iter().find(|r: &&TargetResult| {
                    r.class == class && r.backend == backend && r.target == TargetKind::Raw
                });
                out.line(&report::rows(&result, raw));
                results.push(result);
                std::fs::remove_dir_all(&dir)
                    .map_err(|e| BenchError::io("cannot remove", &dir, e))?;
            }
        }
    }
    let elapsed = started.elapsed();
    let report = Report {
        plan,
        cpu: &cpu,
        results: &results,
        elapsed,
    };
    out.line(&report::footer(&report));
    if let Some((path, mut file)) = json_file {
        use std::io::Write;
        file.write_all(report::json(&report).as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| BenchError::io("cannot write --json", path, e))?;
    }
    let root_path = root.path().to_path_buf();
    root.close()
        .map_err(|e| BenchError::io("cannot remove", root_path, e))?;
    Ok(())
}

/// Prints to stdout unless quiet.
struct Printer {
    quiet: bool,
}

impl Printer {
    fn line(&self, text: &str) {
        if !self.quiet {
            println!("{text}");
        }
    }
}

/// A fresh directory for the run (inside --dir if given), removed when dropped.
fn run_directory(plan: &Plan) -> Result<tempfile::TempDir> {
    let builder = {
        let mut b = tempfile::Builder::new();
        b.prefix("ipfrs-bench-");
        b
    };
    match &plan.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| BenchError::io("cannot create --dir", dir, e))?;
            builder
                .tempdir_in(dir)
                .map_err(|e| BenchError::io("cannot write in --dir", dir, e))
        }
        None => builder
            .tempdir()
            .map_err(|e| BenchError::io("cannot create a directory in", std::env::temp_dir(), e)),
    }
}

/// Opens one target in `dir`, runs the three phases, closes it.
fn run_target(
    plan: &Plan,
    workload: &Workload,
    absent: &[Cid],
    backend: BackendKind,
    target: TargetKind,
    dir: &Path,
) -> Result<TargetResult> {
    let mut config = Config::new(dir);
    config.backend = backend;
    config.durability = plan.durability.durability();
    config.shards = plan.shards;
    config.spin_before_park = plan.spin_us.map(Duration::from_micros);
    let (phases, shards) = match target {
        TargetKind::Engine => {
            let engine = Engine::open(config)?;
            let shards = engine.shard_count();
            let store = engine.blocking();
            let phases = run_phases(plan, workload, absent, &EngineTarget { store });
            let closed = engine.blocking().close();
            let phases = phases?;
            closed?;
            (phases, Some(shards))
        }
        TargetKind::Raw => {
            let options = BackendOptions {
                cache_bytes: config.backend_cache_bytes,
            };
            let raw = RawTarget {
                backend: ipfrs_tiering::open_backend(backend, dir, &options)?,
                flush: !matches!(config.durability, Durability::None),
            };
            let phases = run_phases(plan, workload, absent, &raw)?;
            raw.backend.flush()?;
            (phases, None)
        }
    };
    Ok(TargetResult {
        class: workload.class,
        backend,
        target,
        shards,
        phases,
    })
}

/// Ingest, then random gets, then absent lookups.
fn run_phases(
    plan: &Plan,
    workload: &Workload,
    absent: &[Cid],
    target: &dyn Target,
) -> Result<Vec<PhaseResult>> {
    let (ingest, cids) = ingest(plan, workload, target)?;
    let get = random_gets(plan, workload.class, &cids, target, 1)?;
    let has = absent_lookups(plan, absent, target, 1)?;
    let get_many = random_gets(plan, workload.class, &cids, target, plan.batch)?;
    let has_many = absent_lookups(plan, absent, target, plan.batch)?;
    Ok(vec![ingest, get, has, get_many, has_many])
}

/// A latency histogram in nanoseconds (1 ns to 1 hour, 3 significant digits).
fn histogram() -> Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3)
        .map_err(|e| BenchError::Internal(format!("latency histogram: {e}")))
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1)
}

/// Runs `work(thread index, histogram)` on `plan.threads` threads, stopping all of them at the
/// first error; returns the wall time, the merged histogram and each thread's output.
fn on_threads<T: Send>(
    threads: usize,
    work: impl Fn(usize, &mut Histogram<u64>, &AtomicBool) -> Result<T> + Sync,
) -> Result<(Duration, Histogram<u64>, Vec<T>)> {
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let joined: Vec<Result<(Histogram<u64>, T)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let work = &work;
                let stop = &stop;
                scope.spawn(move || {
                    let mut hist = histogram()?;
                    let out = work(t, &mut hist, stop);
                    if out.is_err() {
                        stop.store(true, Ordering::Relaxed);
                    }
                    Ok((hist, out?))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(BenchError::Internal("a client thread panicked".into()))
                })
            })
            .collect()
    });
    let wall = start.elapsed();
    let mut merged = histogram()?;
    let mut outputs = Vec::with_capacity(threads);
    for result in joined {
        let (hist, out) = result?;
        merged
            .add(&hist)
            .map_err(|e| BenchError::Internal(format!("latency histogram: {e:?}")))?;
        outputs.push(out);
    }
    Ok((wall, merged, outputs))
}

fn phase_result(
    phase: Phase,
    ops: u64,
    bytes: u64,
    wall: Duration,
    h: &Histogram<u64>,
) -> PhaseResult {
    let us = |ns: u64| ns as f64 / 1000.0;
    PhaseResult {
        phase,
        ops,
        bytes,
        seconds: wall.as_secs_f64(),
        p50_us: us(h.value_at_quantile(0.50)),
        p99_us: us(h.value_at_quantile(0.99)),
        max_us: us(h.max()),
    }
}

/// Stores every block in batches taken by the threads from a shared counter.
fn ingest(
    plan: &Plan,
    workload: &Workload,
    target: &dyn Target,
) -> Result<(PhaseResult, Vec<Cid>)> {
    let count = workload.class.count;
    let batches = count.div_ceil(plan.batch);
    let next = AtomicUsize::new(0);
    let (wall, hist, outputs) = on_threads(plan.threads, |_, hist, stop| {
        let mut done = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let b = next.fetch_add(1, Ordering::Relaxed);
            if b >= batches {
                break;
            }
            let range = b * plan.batch..((b + 1) * plan.batch).min(count);
            let blocks = workload.blocks(range);
            let start = Instant::now();
            let cids = target.ingest(blocks)?;
            hist.saturating_record(nanos(start.elapsed()));
            done.push((b, cids));
        }
        Ok(done)
    })?;
    let mut by_batch: Vec<Option<Vec<Cid>>> = vec![None; batches];
    for (b, cids) in outputs.into_iter().flatten() {
        by_batch[b] = Some(cids);
    }
    let cids: Vec<Cid> = by_batch.into_iter().flatten().flatten().collect();
    if cids.len() != count {
        return Err(BenchError::Internal(format!(
            "ingest stored {} of {count} blocks",
            cids.len()
        )));
    }
    let bytes = (count * workload.class.size) as u64;
    Ok((
        phase_result(Phase::Ingest, count as u64, bytes, wall, &hist),
        cids,
    ))
}

/// Splits `total` operations between `threads`: thread `t` does `share(total, threads, t)`.
fn share(total: usize, threads: usize, t: usize) -> usize {
    total / threads + usize::from(t < total % threads)
}

/// `count` gets of stored blocks chosen uniformly at random: single `get`s when `batch` is 1,
/// else `get_many` calls of `batch` blocks (latency per call).
fn random_gets(
    plan: &Plan,
    class: SizeClass,
    cids: &[Cid],
    target: &dyn Target,
    batch: usize,
) -> Result<PhaseResult> {
    let (wall, hist, _) = on_threads(plan.threads, |t, hist, stop| {
        let mut rng = StdRng::seed_from_u64(plan.seed.wrapping_add(0x6e7_0000 + t as u64));
        let mut left = share(class.count, plan.threads, t);
        let mut picked = Vec::with_capacity(batch);
        while left > 0 && !stop.load(Ordering::Relaxed) {
            picked.clear();
            picked.extend((0..batch.min(left)).map(|_| cids[rng.random_range(0..cids.len())]));
            left -= picked.len();
            let start = Instant::now();
            let got = if batch == 1 {
                vec![target.get(&picked[0])?]
            } else {
                target.get_many(&picked)?
            };
            hist.saturating_record(nanos(start.elapsed()));
            for (cid, got) in picked.iter().zip(&got) {
                if *got != Some(class.size) {
                    return Err(BenchError::Check(format!(
                        "get {cid}: expected {} bytes, got {got:?}",
                        class.size
                    )));
                }
            }
        }
        Ok(())
    })?;
    let ops = class.count as u64;
    let phase = if batch == 1 {
        Phase::Get
    } else {
        Phase::GetMany
    };
    Ok(phase_result(
        phase,
        ops,
        ops * class.size as u64,
        wall,
        &hist,
    ))
}

/// Lookups of every absent CID, split between the threads: single `has` calls when `batch`
/// is 1, else `has_many` calls of `batch` CIDs (latency per call).
fn absent_lookups(
    plan: &Plan,
    absent: &[Cid],
    target: &dyn Target,
    batch: usize,
) -> Result<PhaseResult> {
    let (wall, hist, _) = on_threads(plan.threads, |t, hist, stop| {
        let mine: Vec<Cid> = absent
            .iter()
            .skip(t)
            .step_by(plan.threads)
            .copied()
            .collect();
        for chunk in mine.chunks(batch) {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let start = Instant::now();
            let found = if batch == 1 {
                vec![target.has(&chunk[0])?]
            } else {
                target.has_many(chunk)?
            };
            hist.saturating_record(nanos(start.elapsed()));
            if let Some((cid, _)) = chunk.iter().zip(&found).find(|(_, found)| **found) {
                return Err(BenchError::Check(format!(
                    "has {cid}: a never-stored CID is present"
                )));
            }
        }
        Ok(())
    })?;
    let phase = if batch == 1 {
        Phase::HasAbsent
    } else {
        Phase::HasManyAbsent
    };
    Ok(phase_result(phase, absent.len() as u64, 0, wall, &hist))
}

/// Measures sha2-256 alone (through `Block::new`) on 256 KiB buffers, on one core.
fn cpu_ceiling() -> Result<CpuCeiling> {
    const SIZE: usize = 256 << 10;
    let mut rng = StdRng::seed_from_u64(0x5ea_256);
    let mut buf = vec![0u8; SIZE];
    rng.fill(&mut buf[..]);
    let buf = Bytes::from(buf);
    // Warm up, then hash for at least 300 ms.
    Block::new(buf.clone())?;
    let start = Instant::now();
    let mut hashed = 0u64;
    while start.elapsed() < Duration::from_millis(300) {
        for _ in 0..8 {
            std::hint::black_box(Block::new(std::hint::black_box(buf.clone()))?);
            hashed += SIZE as u64;
        }
    }
    let mb_per_s = hashed as f64 / 1e6 / start.elapsed().as_secs_f64();
    Ok(CpuCeiling {
        sha256_mb_per_s: mb_per_s,
        sha_ni: Some(ipfrs_storage::sha256_accelerated()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up() {
        for (total, threads) in [(10, 3), (1, 4), (0, 2), (20_000, 2)] {
            let sum: usize = (0..threads).map(|t| share(total, threads, t)).sum();
            assert_eq!(sum, total);
        }
    }
}
