//! The targets measured: the engine over a backend, a raw backend called directly with the
//! engine's keys, the ceilings (the disk through glommio DMA, the CPU's hash, memory), and
//! with `--s3` the engine with its pack tier on a bucket against one object per block there
//! (see [`super::s3`]).

use std::path::Path;
use std::time::{Duration, Instant};

use ipfrs_storage::key::{cid_of_key, key_of};
use ipfrs_storage::{BackendKind, BlockStore, Config, Cursor, Engine, IoDriver};
use ipfrs_tiering::{BackendOptions, ColdBackend};

use super::cli::Plan;
use super::disk::DiskTarget;
use super::driver::{Lanes, Measurement, OpFuture, OpTarget, drive, drive_scan, histogram, nanos};
use super::error::{BenchError, Result};
use super::s3::{ObjectPerBlock, S3Service};
use super::sync_ceiling::SyncCeiling;
use super::workload::{Dataset, FreshBlocks, Op, WorkloadKind};

/// CIDs per page of the scan workload.
const SCAN_PAGE: usize = 1024;

/// How long engine+s3 may take after ingest to upload its packs before the reads start
/// anyway: 500 MiB go up in about 5 s on loopback Garage, a real bucket is slower.
const SETTLE_LIMIT: Duration = Duration::from_secs(180);
/// How often the settle step reads the engine's counters.
const SETTLE_POLL: Duration = Duration::from_millis(100);
/// How long the counters must stay still for the uploader to count as idle.
const SETTLE_QUIET: Duration = Duration::from_secs(1);

/// One measured thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// The engine over a backend, with (`hot: true`) or without its hot segment tier.
    Engine {
        /// The cold backend.
        backend: BackendKind,
        /// Whether the hot tier is on.
        hot: bool,
        /// Whether it runs on the fallback I/O driver rather than io_uring.
        fallback: bool,
    },
    /// The backend's `ColdBackend` called directly, as a shard would, with the same keys.
    Raw(BackendKind),
    /// glommio O_DIRECT sequential writes and random reads of the same bytes: the disk.
    Disk,
    /// sha2-256 of the same blocks and nothing else: the CPU.
    Cpu,
    /// One xxh3-64 pass (the record check's hash and code) over each block a read asks for,
    /// from the generated blocks in memory: what a checked read can serve once its bytes are
    /// in RAM, bound by the memory bus for blocks past the CPU caches.
    Memory,
    /// One O_DIRECT write of one block and one fdatasync (`sync: false`, `--durability
    /// none`: the write alone) per call, queue depth 1 per lane: the put workload's ceiling.
    SyncWrite {
        /// Whether each write is synced.
        sync: bool,
    },
    /// The engine with its hot tier and its pack tier on the run's S3 bucket
    /// (`Config.remote`), keeping `--local-pack-bytes` of uploaded packs locally.
    EngineS3(BackendKind),
    /// One object per block on the run's S3 bucket: the raw baseline of `EngineS3`.
    S3ObjectPerBlock,
}

impl TargetKind {
    /// Every target of a run, in the order each round runs them.
    pub fn all(plan: &Plan) -> Vec<TargetKind> {
        let mut targets = Vec::new();
        for &backend in &plan.backends {
            targets.push(TargetKind::Raw(backend));
            for &hot in plan.hot_tier.variants() {
                for &driver in &plan.io_drivers {
                    let fallback = driver == IoDriver::Fallback;
                    targets.push(TargetKind::Engine {
                        backend,
                        hot,
                        fallback,
                    });
                }
            }
            if plan.s3.is_some() {
                targets.push(TargetKind::EngineS3(backend));
            }
        }
        if plan.s3.is_some() {
            targets.push(TargetKind::S3ObjectPerBlock);
        }
        if plan.ceilings {
            targets.push(TargetKind::Disk);
            targets.push(TargetKind::Cpu);
            if plan
                .workloads
                .iter()
                .any(|&w| TargetKind::Memory.supports(w))
            {
                targets.push(TargetKind::Memory);
            }
            if plan.workloads.contains(&WorkloadKind::Put) {
                targets.push(TargetKind::SyncWrite {
                    sync: plan.durability.syncs(),
                });
            }
        }
        targets
    }

    /// The target's name in tables and JSON, e.g. `engine/sled`.
    pub fn name(self) -> String {
        match self {
            TargetKind::Engine {
                backend,
                hot,
                fallback,
            } => format!(
                "engine{}/{backend}{}",
                if hot { "+hot" } else { "" },
                if fallback { " (fallback)" } else { "" }
            ),
            TargetKind::Raw(b) => format!("raw/{b}"),
            TargetKind::Disk => "disk/o_direct".into(),
            TargetKind::Cpu => "cpu/sha2-256".into(),
            TargetKind::Memory => "mem/xxh3".into(),
            TargetKind::SyncWrite { sync: true } => "disk/write+fdatasync".into(),
            TargetKind::SyncWrite { sync: false } => "disk/write".into(),
            TargetKind::EngineS3(b) => format!("engine+s3/{b}"),
            TargetKind::S3ObjectPerBlock => "s3/object-per-block".into(),
        }
    }

    /// Whether the target sends requests to S3 (the report counts them).
    pub fn uses_s3(self) -> bool {
        matches!(self, TargetKind::EngineS3(_) | TargetKind::S3ObjectPerBlock)
    }

    /// Whether this is a ceiling (what the hardware allows) rather than a store.
    pub fn is_ceiling(self) -> bool {
        matches!(
            self,
            TargetKind::Disk | TargetKind::Cpu | TargetKind::Memory | TargetKind::SyncWrite { .. }
        )
    }

    /// Whether the target can run `workload`.
    pub fn supports(self, workload: WorkloadKind) -> bool {
        match self {
            TargetKind::Engine { .. }
            | TargetKind::Raw(_)
            | TargetKind::EngineS3(_)
            | TargetKind::S3ObjectPerBlock => true,
            // Car is an ingest of other blocks: the ceilings write or hash them the same way.
            TargetKind::Disk => matches!(
                workload,
                WorkloadKind::Ingest
                    | WorkloadKind::Get
                    | WorkloadKind::GetMany
                    | WorkloadKind::GetZipf
                    | WorkloadKind::Car
            ),
            TargetKind::Cpu => matches!(workload, WorkloadKind::Ingest | WorkloadKind::Car),
            TargetKind::Memory => matches!(
                workload,
                WorkloadKind::Get | WorkloadKind::GetMany | WorkloadKind::GetZipf
            ),
            TargetKind::SyncWrite { .. } => workload == WorkloadKind::Put,
        }
    }

    /// Opens the target in `dir` (which must not exist yet) for one round; the S3 targets
    /// on `s3`'s bucket, under a prefix of their own.
    pub fn open<'d>(
        self,
        plan: &Plan,
        data: &'d Dataset,
        dir: &Path,
        s3: Option<&S3Service>,
    ) -> Result<Session<'d>> {
        let no_s3 = || BenchError::Internal(format!("{} needs --s3", self.name()));
        let lanes = Lanes {
            threads: plan.threads,
            in_flight: plan.in_flight,
            rate: plan.rate,
        };
        let inner = match self {
            TargetKind::Engine {
                backend,
                hot,
                fallback,
            } => {
                let driver = if fallback {
                    IoDriver::Fallback
                } else {
                    IoDriver::IoUring
                };
                Inner::Engine(EngineTarget::open(
                    plan,
                    (backend, hot, driver),
                    dir,
                    data,
                    None,
                )?)
            }
            TargetKind::EngineS3(backend) => {
                let tier =
                    s3.ok_or_else(no_s3)?
                        .tier_for(dir, plan.local_pack_bytes, plan.s3_readahead);
                // The first driver the run measures: the S3 targets compare tiers, not drivers.
                let driver = plan.io_drivers.first().copied().unwrap_or(IoDriver::Auto);
                Inner::Engine(EngineTarget::open(
                    plan,
                    (backend, true, driver),
                    dir,
                    data,
                    Some(tier),
                )?)
            }
            TargetKind::S3ObjectPerBlock => {
                let config = s3.ok_or_else(no_s3)?.config_for(dir);
                Inner::S3(ObjectPerBlock::open(&config, data)?)
            }
            TargetKind::Raw(backend) => {
                let options = BackendOptions {
                    cache_bytes: Config::new(dir).backend_cache_bytes,
                };
                Inner::Raw(RawTarget {
                    backend: ipfrs_tiering::open_backend(backend, dir, &options)?,
                    flush: plan.durability.syncs(),
                    data,
                    fresh: FreshBlocks::default(),
                })
            }
            TargetKind::Disk => Inner::Disk(DiskTarget::new(dir, data, plan)?),
            TargetKind::Cpu => Inner::Cpu(CpuTarget { data }),
            TargetKind::Memory => Inner::Memory(MemoryTarget { data }),
            TargetKind::SyncWrite { sync } => Inner::SyncWrite(SyncCeiling::new(
                dir,
                data,
                lanes.threads * lanes.in_flight,
                sync,
            )?),
        };
        Ok(Session { inner, lanes })
    }
}

/// An open target for one round.
pub struct Session<'d> {
    inner: Inner<'d>,
    lanes: Lanes,
}

enum Inner<'d> {
    Engine(EngineTarget<'d>),
    Raw(RawTarget<'d>),
    Disk(DiskTarget<'d>),
    Cpu(CpuTarget<'d>),
    Memory(MemoryTarget<'d>),
    SyncWrite(SyncCeiling<'d>),
    S3(ObjectPerBlock<'d>),
}

impl Session<'_> {
    /// Runs one pass of `workload` over `ops` (or a scan), for `duration` if given.
    pub fn run(
        &mut self,
        workload: WorkloadKind,
        ops: &[Op],
        duration: Option<Duration>,
    ) -> Result<Measurement> {
        let target: &dyn OpTarget = match &mut self.inner {
            Inner::Disk(disk) => return disk.run(ops, self.lanes, duration),
            Inner::Engine(t) => t,
            Inner::Raw(t) => t,
            Inner::Cpu(t) => t,
            Inner::Memory(t) => t,
            Inner::SyncWrite(t) => t,
            Inner::S3(t) => t,
        };
        match workload {
            WorkloadKind::Scan => drive_scan(target, SCAN_PAGE),
            _ => drive(target, ops, self.lanes, duration),
        }
    }

    /// The `car` workload as `ipfrs-store car import` runs it, when this target is the engine:
    /// the file read once, its blocks hashed across cores, journaled and stored in batches of
    /// at most `batch` blocks, all or nothing ([`ipfrs_tools::import`]). Timed end to end,
    /// with the time between stored batches as the latency. `None` for the other targets,
    /// which replay the file's blocks from memory (a raw backend has no import).
    pub fn import_car(&self, path: &Path, batch: usize, dir: &Path) -> Option<Result<Measurement>> {
        match &self.inner {
            Inner::Engine(t) => Some(t.import_car(path, batch, dir)),
            _ => None,
        }
    }

    /// After ingest, for engine+s3: waits (untimed) until the engine's uploader is idle: the
    /// counters of uploads, evictions and packs unchanged for a second, and the local pack
    /// files within `local_pack_bytes` (or all of them uploaded and removed). The reads that
    /// follow then find cold data where a store that has run a while has it, in the bucket,
    /// instead of racing the uploads. Returns whether it settled within its limit; every
    /// other target returns `true` at once.
    pub fn settle(&self, local_pack_bytes: u64) -> Result<bool> {
        let Inner::Engine(t) = &self.inner else {
            return Ok(true);
        };
        if !t.remote {
            return Ok(true);
        }
        let store = t.engine.blocking();
        let started = Instant::now();
        let mut last = None;
        let mut still_since = Instant::now();
        while started.elapsed() < SETTLE_LIMIT {
            let s = store.stats()?;
            let now = (
                s.packs,
                s.remote_uploads,
                s.remote_evictions,
                s.remote_packs,
            );
            if last != Some(now) {
                (last, still_since) = (Some(now), Instant::now());
            }
            let local_done = s.remote_packs == s.packs || s.pack_disk_bytes <= local_pack_bytes;
            if local_done && still_since.elapsed() >= SETTLE_QUIET {
                return Ok(true);
            }
            std::thread::sleep(SETTLE_POLL);
        }
        Ok(false)
    }

    /// Closes the target (the engine shuts its shards down; the raw backend flushes).
    pub fn close(self) -> Result<()> {
        match self.inner {
            Inner::Engine(t) => Ok(t.engine.blocking().close()?),
            Inner::Raw(t) => Ok(t.backend.flush()?),
            Inner::Disk(t) => t.close(),
            // Every object-per-block request was answered before its op returned.
            Inner::Cpu(_) | Inner::Memory(_) | Inner::S3(_) => Ok(()),
            Inner::SyncWrite(t) => t.close(),
        }
    }
}

/// The engine, called through its async `BlockStore` futures (so a thread can keep several
/// requests in flight).
struct EngineTarget<'d> {
    engine: Engine,
    data: &'d Dataset,
    fresh: FreshBlocks,
    /// Whether its packs go to a bucket (`Config.remote`).
    remote: bool,
}

impl<'d> EngineTarget<'d> {
    /// See [`Session::import_car`]; `dir` is the engine's data directory (the journal goes
    /// beside it, as for `ipfrs-store`).
    fn import_car(&self, path: &Path, batch: usize, dir: &Path) -> Result<Measurement> {
        use ipfrs_tools::import::{ImportOptions, default_journal_dir, import_car};
        let file =
            std::fs::File::open(path).map_err(|e| BenchError::io("cannot open --car", path, e))?;
        let options = ImportOptions {
            batch_blocks: batch.max(1),
            ..ImportOptions::for_store(&Config::new(dir))
        };
        // Stored batches are reported from the store threads: the gaps between them are the
        // latency per batch.
        let hist = std::sync::Mutex::new(histogram()?);
        let started = Instant::now();
        let last = std::sync::Mutex::new(started);
        let progress = |_: u64| {
            let now = Instant::now();
            let mut last = last
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let gap = nanos(now.duration_since(*last));
            *last = now;
            let mut hist = hist
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // A value past the histogram's hour is recorded as its highest.
            hist.saturating_record(gap);
        };
        let added = import_car(
            &self.engine,
            std::io::BufReader::with_capacity(1 << 20, file),
            &default_journal_dir(dir),
            options,
            &progress,
        )
        .map_err(|e| BenchError::Car(format!("{}: import: {e}", path.display())))?;
        let wall = started.elapsed();
        if added.blocks as usize != self.data.stored {
            return Err(BenchError::Check(format!(
                "the import stored {} blocks of {}, the file holds {}",
                added.blocks,
                path.display(),
                self.data.stored
            )));
        }
        Ok(Measurement {
            ops: added.blocks,
            bytes: added.bytes,
            wall,
            hist: hist
                .into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        })
    }

    fn open(
        plan: &Plan,
        (backend, hot, driver): (BackendKind, bool, IoDriver),
        dir: &Path,
        data: &'d Dataset,
        remote: Option<ipfrs_remote::RemoteTier>,
    ) -> Result<Self> {
        let mut config = Config::new(dir);
        let has_remote = remote.is_some();
        config.remote = remote;
        config.io_driver = driver;
        config.hot_tier = match (hot, config.hot_tier) {
            (false, _) | (true, None) => None,
            (true, Some(mut tier)) => {
                if let Some(budget) = plan.hot_budget {
                    tier.budget_bytes = budget as u64;
                }
                if let Some(inline_max) = plan.inline_max {
                    tier.inline_threshold_bytes = u32::try_from(inline_max).map_err(|_| {
                        BenchError::Usage(format!("--inline-max {inline_max} is above 4 GiB"))
                    })?;
                }
                if let Some(on) = plan.prefetch_written {
                    tier.prefetch_written = on;
                }
                Some(tier)
            }
        };
        config.backend = backend;
        config.durability = plan.durability.durability();
        config.shards = plan.shards;
        // Without the flag the engine keeps its own default (200 us); `--spin-us 0`: never.
        if let Some(us) = plan.spin_us {
            config.spin_before_park = (us > 0).then(|| Duration::from_micros(us));
        }
        if let Some(on) = plan.caller_writes {
            config.caller_writes = on;
        }
        if let Some(cache) = plan.cache {
            config.cache_bytes = cache as u64;
        }
        if let Some(bytes) = plan.location_cache {
            config.location_cache_bytes = bytes as u64;
        }
        // `-w car` runs `ipfrs-store car import`'s path, engine configuration included.
        if plan.workloads.contains(&WorkloadKind::Car) {
            ipfrs_tools::import::tune_for_import(&mut config);
        }
        // Size the bloom filters for what the run stores, as an operator would.
        config.bloom_expected_items = config.bloom_expected_items.max(data.len() as u64);
        Ok(EngineTarget {
            engine: Engine::open(config)?,
            data,
            fresh: FreshBlocks::default(),
            remote: has_remote,
        })
    }
}

/// The check every target makes of a get.
pub(super) fn check_get(data: &Dataset, i: u32, got: Option<usize>) -> Result<u64> {
    let want = data.block_len(i as usize);
    if got != Some(want) {
        return Err(BenchError::Check(format!(
            "get {}: expected {want} bytes, got {got:?}",
            data.cid(i as usize)
        )));
    }
    Ok(want as u64)
}

/// The check every target makes of `has` on an absent CID.
pub(super) fn check_absent(data: &Dataset, i: u32, found: bool) -> Result<u64> {
    if found {
        return Err(BenchError::Check(format!(
            "has {}: a never-stored CID is present",
            data.absent(i as usize)
        )));
    }
    Ok(0)
}

/// A batched call must answer once per key asked, in order.
fn check_count(what: &str, asked: usize, answered: usize) -> Result<()> {
    if asked != answered {
        return Err(BenchError::Check(format!(
            "{what} of {asked} CIDs answered {answered} values"
        )));
    }
    Ok(())
}

/// The check of a get-many call: every block found with its length; returns the bytes.
pub(super) fn check_get_many(
    data: &Dataset,
    blocks: &[u32],
    got: impl ExactSizeIterator<Item = Option<usize>>,
) -> Result<u64> {
    check_count("get_many", blocks.len(), got.len())?;
    blocks
        .iter()
        .zip(got)
        .try_fold(0, |bytes, (&i, len)| Ok(bytes + check_get(data, i, len)?))
}

/// The check of a has-many-absent call over absent CIDs `first..`: none found.
pub(super) fn check_absent_many(
    data: &Dataset,
    first: u32,
    len: u32,
    found: impl ExactSizeIterator<Item = bool>,
) -> Result<u64> {
    check_count("has_many", len as usize, found.len())?;
    for (i, found) in (first..first + len).zip(found) {
        check_absent(data, i, found)?;
    }
    Ok(0)
}

impl OpTarget for EngineTarget<'_> {
    fn call(&self, op: Op) -> OpFuture<'_> {
        let data = self.data;
        Box::pin(async move {
            match op {
                Op::Ingest { first, len } => {
                    let range = first as usize..(first + len) as usize;
                    let blocks = range.map(|i| data.block(i)).collect::<Result<Vec<_>>>()?;
                    self.engine.put_many(&blocks).await?;
                    Ok(data.bytes_of(first as usize, len as usize))
                }
                Op::Put(i) => {
                    self.engine.put(&data.block(i as usize)?).await?;
                    Ok(data.block_len(i as usize) as u64)
                }
                Op::PutNew => {
                    let block = data.fresh_block(self.fresh.take())?;
                    self.engine.put(&block).await?;
                    Ok(block.len() as u64)
                }
                Op::Get(i) => {
                    let got = self.engine.get(data.cid(i as usize)).await?;
                    check_get(data, i, got.map(|b| b.len()))
                }
                Op::GetMany { first, len } => {
                    let (first, len) = (first as usize, len as usize);
                    let got = self.engine.get_many(data.sample_cids(first, len)).await?;
                    check_get_many(
                        data,
                        data.sample_blocks(first, len),
                        got.iter().map(|b| b.as_ref().map(|b| b.len())),
                    )
                }
                Op::HasAbsent(i) => {
                    let found = self.engine.has(data.absent(i as usize)).await?;
                    check_absent(data, i, found)
                }
                Op::HasManyAbsent { first, len } => {
                    let cids = data.absent_run(first as usize, len as usize);
                    let found = self.engine.has_many(cids).await?;
                    check_absent_many(data, first, len, found.into_iter())
                }
                Op::Delete { first, len } => {
                    let range = first as usize..(first + len) as usize;
                    let cids: Vec<_> = range.map(|i| *data.cid(i)).collect();
                    let deleted = self.engine.delete_many(&cids).await?;
                    if let Some((cid, _)) = cids.iter().zip(&deleted).find(|(_, d)| !**d) {
                        return Err(BenchError::Check(format!("delete {cid}: was not stored")));
                    }
                    Ok(0)
                }
            }
        })
    }

    fn blocking(&self) -> bool {
        false
    }

    fn scan(&self, page: usize, on_page: &mut dyn FnMut(Duration, usize)) -> Result<u64> {
        let store = self.engine.blocking();
        let mut cursor = Some(Cursor::default());
        let mut total = 0;
        while let Some(at) = cursor {
            let start = Instant::now();
            let got = store.cid_page(at, page)?;
            on_page(start.elapsed(), got.cids.len());
            total += got.cids.len() as u64;
            cursor = got.next;
        }
        Ok(total)
    }
}

/// A raw backend with the engine's keys (multihash bytes) and batching.
struct RawTarget<'d> {
    backend: Box<dyn ColdBackend>,
    /// Flush after each batch (every durability setting but `none`).
    flush: bool,
    data: &'d Dataset,
    fresh: FreshBlocks,
}

impl RawTarget<'_> {
    fn call_now(&self, op: Op) -> Result<u64> {
        let data = self.data;
        match op {
            Op::Ingest { first, len } => {
                let range = first as usize..(first + len) as usize;
                let mut items = Vec::with_capacity(len as usize);
                for i in range {
                    // Hash as the engine's callers do, so both pay for it.
                    let (cid, bytes) = data.block(i)?.into_parts();
                    items.push((key_of(&cid), bytes));
                }
                self.backend.put_batch(&items)?;
                if self.flush {
                    self.backend.flush()?;
                }
                Ok(data.bytes_of(first as usize, len as usize))
            }
            Op::Put(i) => self.call_now(Op::Ingest { first: i, len: 1 }),
            // One block per call, flushed as a batch is: sled inserts and flushes, parity-db
            // commits (its commit is queued, not durable, and its flush waits for nothing),
            // rocksdb writes and syncs its WAL.
            Op::PutNew => {
                let (cid, bytes) = data.fresh_block(self.fresh.take())?.into_parts();
                let len = bytes.len() as u64;
                self.backend.put_batch(&[(key_of(&cid), bytes)])?;
                if self.flush {
                    self.backend.flush()?;
                }
                Ok(len)
            }
            Op::Get(i) => {
                let got = self.backend.get(&key_of(data.cid(i as usize)))?;
                check_get(data, i, got.map(|b| b.len()))
            }
            // A shard answers a batch with one backend call per key: so does the raw target.
            Op::GetMany { first, len } => {
                let (first, len) = (first as usize, len as usize);
                let mut bytes = 0;
                for (&i, cid) in data
                    .sample_blocks(first, len)
                    .iter()
                    .zip(data.sample_cids(first, len))
                {
                    let got = self.backend.get(&key_of(cid))?;
                    bytes += check_get(data, i, got.map(|b| b.len()))?;
                }
                Ok(bytes)
            }
            Op::HasAbsent(i) => {
                let found = self.backend.contains(&key_of(data.absent(i as usize)))?;
                check_absent(data, i, found)
            }
            Op::HasManyAbsent { first, len } => {
                for (i, cid) in (first..).zip(data.absent_run(first as usize, len as usize)) {
                    check_absent(data, i, self.backend.contains(&key_of(cid))?)?;
                }
                Ok(0)
            }
            Op::Delete { first, len } => {
                let range = first as usize..(first + len) as usize;
                let keys: Vec<_> = range.map(|i| key_of(data.cid(i))).collect();
                self.backend.delete_batch(&keys)?;
                if self.flush {
                    self.backend.flush()?;
                }
                Ok(0)
            }
        }
    }
}

impl OpTarget for RawTarget<'_> {
    fn call(&self, op: Op) -> OpFuture<'_> {
        let result = self.call_now(op);
        Box::pin(async move { result })
    }

    fn blocking(&self) -> bool {
        true
    }

    fn scan(&self, page: usize, on_page: &mut dyn FnMut(Duration, usize)) -> Result<u64> {
        let mut after: Option<Vec<u8>> = None;
        let mut total = 0;
        loop {
            let start = Instant::now();
            let mut keys = Vec::with_capacity(page);
            self.backend.iterate(after.as_deref(), &mut |key, _| {
                keys.push(key.to_vec());
                keys.len() < page
            })?;
            // Turn keys into CIDs as the engine's listing does, so both do the same work.
            for key in &keys {
                cid_of_key(key)?;
            }
            on_page(start.elapsed(), keys.len());
            total += keys.len() as u64;
            if keys.len() < page {
                return Ok(total);
            }
            after = keys.pop();
        }
    }
}

/// sha2-256 of the blocks and nothing else (for a CAR file's blocks: each block's own hash
/// function, as verifying them takes).
struct CpuTarget<'d> {
    data: &'d Dataset,
}

impl OpTarget for CpuTarget<'_> {
    fn call(&self, op: Op) -> OpFuture<'_> {
        let data = self.data;
        let result = match op {
            Op::Ingest { first, len } => (first..first + len)
                .try_for_each(|i| {
                    data.block(i as usize)
                        .map(|b| drop(std::hint::black_box(b)))
                })
                .map(|()| data.bytes_of(first as usize, len as usize)),
            other => Err(BenchError::Internal(format!(
                "the CPU ceiling has no {other:?}"
            ))),
        };
        Box::pin(async move { result })
    }

    fn blocking(&self) -> bool {
        true
    }

    fn scan(&self, _: usize, _: &mut dyn FnMut(Duration, usize)) -> Result<u64> {
        Err(BenchError::Internal("the CPU ceiling cannot scan".into()))
    }
}

/// One xxh3-64 pass over each block a read asks for, from the generated blocks in memory.
struct MemoryTarget<'d> {
    data: &'d Dataset,
}

impl MemoryTarget<'_> {
    /// The block's length, after hashing it as a record check would (twox-hash, the engine's
    /// implementation, which picks AVX2 at run time: another one would make a different
    /// ceiling).
    fn read(&self, i: u32) -> u64 {
        let bytes = self.data.data(i as usize);
        std::hint::black_box(twox_hash::XxHash3_64::oneshot(&bytes));
        bytes.len() as u64
    }
}

impl OpTarget for MemoryTarget<'_> {
    fn call(&self, op: Op) -> OpFuture<'_> {
        let result = match op {
            Op::Get(i) => Ok(self.read(i)),
            Op::GetMany { first, len } => Ok(self
                .data
                .sample_blocks(first as usize, len as usize)
                .iter()
                .map(|&i| self.read(i))
                .sum()),
            other => Err(BenchError::Internal(format!(
                "the memory ceiling has no {other:?}"
            ))),
        };
        Box::pin(async move { result })
    }

    fn blocking(&self) -> bool {
        true
    }

    fn scan(&self, _: usize, _: &mut dyn FnMut(Duration, usize)) -> Result<u64> {
        Err(BenchError::Internal(
            "the memory ceiling cannot scan".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::bench::workload::SizeSpec;

    #[test]
    fn names_are_unique_and_ceilings_support_only_their_workloads() {
        let names: Vec<String> = [
            TargetKind::Engine {
                backend: BackendKind::Sled,
                hot: true,
                fallback: false,
            },
            TargetKind::Engine {
                backend: BackendKind::Sled,
                hot: true,
                fallback: true,
            },
            TargetKind::Engine {
                backend: BackendKind::Sled,
                hot: false,
                fallback: false,
            },
            TargetKind::Raw(BackendKind::Sled),
            TargetKind::Engine {
                backend: BackendKind::ParityDb,
                hot: true,
                fallback: false,
            },
            TargetKind::Disk,
            TargetKind::Cpu,
            TargetKind::Memory,
            TargetKind::SyncWrite { sync: true },
            TargetKind::SyncWrite { sync: false },
            TargetKind::EngineS3(BackendKind::Sled),
            TargetKind::EngineS3(BackendKind::ParityDb),
            TargetKind::S3ObjectPerBlock,
        ]
        .iter()
        .map(|t| t.name())
        .collect();
        let set: std::collections::HashSet<_> = names.iter().collect();
        assert_eq!(set.len(), names.len());
        assert!(TargetKind::Disk.supports(WorkloadKind::GetZipf));
        assert!(!TargetKind::Disk.supports(WorkloadKind::HasAbsent));
        assert!(TargetKind::Disk.supports(WorkloadKind::GetMany));
        assert!(!TargetKind::Disk.supports(WorkloadKind::HasManyAbsent));
        assert!(!TargetKind::Cpu.supports(WorkloadKind::GetMany));
        assert!(!TargetKind::Cpu.supports(WorkloadKind::Get));
        for t in [
            TargetKind::Cpu,
            TargetKind::Disk,
            TargetKind::Raw(BackendKind::Sled),
        ] {
            assert!(t.supports(WorkloadKind::Car), "{t:?}");
        }
        assert!(TargetKind::Raw(BackendKind::Sled).supports(WorkloadKind::Scan));
        let sync = TargetKind::SyncWrite { sync: true };
        assert!(sync.is_ceiling() && sync.supports(WorkloadKind::Put));
        assert!(!sync.supports(WorkloadKind::Ingest) && !sync.supports(WorkloadKind::Get));
        assert!(!TargetKind::Disk.supports(WorkloadKind::Put));
        assert!(!TargetKind::Cpu.supports(WorkloadKind::Put));
        let memory = TargetKind::Memory;
        assert!(memory.is_ceiling() && memory.supports(WorkloadKind::GetMany));
        assert!(
            !memory.supports(WorkloadKind::Ingest) && !memory.supports(WorkloadKind::HasAbsent)
        );
    }

    #[test]
    fn batched_checks_catch_a_wrong_or_missing_answer() {
        let d = Dataset::generate(SizeSpec::Fixed(10), 4, 0, 6, (8, 0), 1).unwrap();
        let blocks = d.sample_blocks(0, 8);
        let right = || blocks.iter().map(|_| Some(10));
        assert_eq!(check_get_many(&d, blocks, right()).unwrap(), 80);
        let short = right().take(7);
        assert!(matches!(
            check_get_many(&d, blocks, short),
            Err(BenchError::Check(_))
        ));
        let missing = right().enumerate().map(|(k, l)| l.filter(|_| k != 5));
        assert!(matches!(
            check_get_many(&d, blocks, missing),
            Err(BenchError::Check(_))
        ));
        let wrong = right()
            .enumerate()
            .map(|(k, l)| if k == 2 { Some(9) } else { l });
        assert!(matches!(
            check_get_many(&d, blocks, wrong),
            Err(BenchError::Check(_))
        ));
        assert_eq!(
            check_absent_many(&d, 2, 4, [false; 4].into_iter()).unwrap(),
            0
        );
        for found in [&[false, false, true, false][..], &[false; 3]] {
            assert!(matches!(
                check_absent_many(&d, 2, 4, found.iter().copied()),
                Err(BenchError::Check(_))
            ));
        }
    }
}
