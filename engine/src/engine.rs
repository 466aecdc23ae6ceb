//! The engine: opens the store, starts one shard per core, routes requests and shuts down.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use ipfrs_core_types::key::{Key, identity_data, key_of, shard_of};
use ipfrs_core_types::{Block, BlockError, Cid, Config, IoDriver};
use ipfrs_shards::protocol::{Reply, Request};
use ipfrs_shards::read_view::Quick;
use ipfrs_shards::{Damage, ShardHandle, ShardStats, ShardThread, start_shard};

use crate::directory::{Directory, Meta};
use crate::metadata::{MetaLog, MetaService};
use crate::metrics::{Metrics, MetricsSnapshot, Op};
use crate::trim::Trimmer;
use crate::{Error, Result, Stats};

/// The storage engine: a handle to a running set of shards over one data directory.
///
/// Cheap to clone (an `Arc`); every clone is the same engine. Methods take `&self` and may be
/// called from any thread and any async runtime (tokio, glommio, ...); see
/// [`crate::BlockStore`] for the operations and [`Engine::blocking`] for plain threads.
///
/// The engine shuts down when [`crate::BlockStore::close`] is called or when the last clone is
/// dropped: in-flight writes finish, every shard flushes its backend, threads are joined.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    shards: Vec<ShardHandle>,
    threads: Mutex<Vec<ShardThread>>,
    closed: AtomicBool,
    /// The locked directory: released by `close` once the shards have stopped, or when the
    /// engine is dropped, so a closed store can be reopened while old handles linger.
    directory: Mutex<Option<Directory>>,
    metrics: Metrics,
    /// Stopped after the shards and before the directory is released.
    metadata: MetaService,
    trimmer: Trimmer,
}

impl Engine {
    /// Opens the store in a directory (created if missing), or with a full [`Config`].
    ///
    /// ```
    /// use ipfrs_storage::{Block, BlockStore, Engine};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path();
    /// let store = Engine::open(path)?;
    /// let block = Block::new(&b"hello"[..])?;
    /// futures_lite::future::block_on(async {
    ///     store.put(&block).await?;
    ///     let got = store.get(block.cid()).await?;
    ///     assert_eq!(got.as_deref(), Some(&b"hello"[..]));
    ///     assert!(store.has(block.cid()).await?);
    ///     store.close().await
    /// })?;
    /// # Ok::<(), ipfrs_storage::Error>(())
    /// ```
    ///
    /// Errors: [`Error::NotOurDirectory`], [`Error::Locked`] (another engine has it open),
    /// [`Error::BackendMismatch`], [`Error::ShardCountMismatch`],
    /// [`Error::IncompatibleFormat`], [`Error::IoUringUnavailable`], [`Error::MemlockTooLow`],
    /// [`Error::InvalidConfig`], [`Error::BackendNotCompiled`].
    pub fn open(config: impl Into<Config>) -> Result<Engine> {
        let mut config = config.into();
        validate(&config)?;
        if !ipfrs_tiering::backends::is_compiled(config.backend) {
            return Err(Error::BackendNotCompiled(config.backend));
        }
        // Before touching the directory: a machine refusing what was asked changes nothing on
        // disk. Resolved once, so every shard runs the same driver and `config()` names it.
        config.io_driver = ipfrs_shards::resolve_io_driver(config.io_driver)?;
        let directory = Directory::lock(&config.data_dir)?;
        let shards = match directory.read_meta()? {
            Some(meta) => {
                if meta.backend != config.backend {
                    return Err(Error::BackendMismatch {
                        path: config.data_dir.clone(),
                        recorded: meta.backend,
                        requested: config.backend,
                    });
                }
                if let Some(requested) = config.shards.filter(|&n| n != meta.shards) {
                    return Err(Error::ShardCountMismatch {
                        path: config.data_dir.clone(),
                        recorded: meta.shards,
                        requested,
                    });
                }
                meta.shards
            }
            None => {
                let shards = config
                    .shards
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
                directory.write_meta(&Meta {
                    backend: config.backend,
                    shards,
                })?;
                shards
            }
        };
        config.shards = Some(shards);
        let metadata = MetaLog::open(&config.data_dir)?;
        let threads = start_all(&config, &directory, shards)?;
        let metadata = match MetaService::start(metadata) {
            Ok(m) => m,
            Err(e) => {
                stop_all(threads);
                return Err(e);
            }
        };
        let trimmer = match Trimmer::start(config.release_free_memory_every) {
            Ok(t) => t,
            Err(e) => {
                stop_all(threads);
                metadata.stop();
                return Err(e);
            }
        };
        let handles = threads.iter().map(|t| t.handle().clone()).collect();
        Ok(Engine {
            inner: Arc::new(Inner {
                config,
                shards: handles,
                threads: Mutex::new(threads),
                closed: AtomicBool::new(false),
                directory: Mutex::new(Some(directory)),
                metrics: Metrics::new(),
                metadata,
                trimmer,
            }),
        })
    }

    /// The configuration in force (with the shard count resolved).
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The I/O driver the shards run with: `IoUring` or `Fallback` (`Config::io_driver`
    /// resolved at open).
    pub fn io_driver(&self) -> IoDriver {
        self.inner.config.io_driver
    }

    /// The number of shards.
    pub fn shard_count(&self) -> usize {
        self.inner.shards.len()
    }

    /// The damage each shard's cold backend showed at open, by shard (empty for a sound
    /// store; empty again once the engine is closed). A damaged shard still serves its hot
    /// tier and whatever its backend can read; cold reads it cannot answer fail with
    /// [`Error::Corrupt`]. [`crate::repair_cold`] rebuilds such a backend.
    pub fn cold_damage(&self) -> Vec<(usize, ipfrs_tiering::ColdDamage)> {
        let threads = self.inner.threads.lock().unwrap_or_else(|e| e.into_inner());
        threads
            .iter()
            .enumerate()
            .filter_map(|(shard, t)| t.cold_damage().map(|d| (shard, d.clone())))
            .collect()
    }

    /// [`Engine::cold_damage`] as places of a damage report (what [`Engine::damage`] gives
    /// for the hot tier): one per damaged cold backend, naming no block, since the blocks a
    /// backend lost cannot be named until a repair reads what is left.
    pub fn cold_damage_places(&self) -> Vec<crate::Damage> {
        self.cold_damage()
            .into_iter()
            .map(|(shard, damage)| crate::Damage {
                shard,
                site: crate::DamageSite::ColdBackend {
                    detail: format!("{}, found at {:?}", damage.path.display(), damage.stage),
                },
                key: None,
                key_proven: false,
                cause: format!(
                    "{}; blocks it held may be unreadable: run `repo repair`",
                    damage.cause
                ),
            })
            .collect()
    }

    /// Operation counters and latency histograms since open, with the shards' counters
    /// (cache hits, bloom negatives); [`MetricsSnapshot::to_prometheus`] renders it.
    pub async fn metrics(&self) -> Result<MetricsSnapshot> {
        let stats = self.stats().await?;
        Ok(self
            .inner
            .metrics
            .snapshot(stats, self.inner.config.io_driver))
    }

    /// Runs one public operation, recording it in the metrics: `items` CIDs or blocks, and
    /// the bytes `bytes` reports from a successful result.
    pub(crate) async fn timed<T>(
        &self,
        op: Op,
        items: usize,
        work: impl Future<Output = Result<T>>,
        bytes: impl FnOnce(&T) -> u64,
    ) -> Result<T> {
        let start = std::time::Instant::now();
        let result = work.await;
        let moved = result.as_ref().map_or(0, bytes);
        self.inner
            .metrics
            .record(op, result.is_ok(), items, moved, start.elapsed());
        result
    }

    pub(crate) fn metadata(&self) -> &MetaService {
        &self.inner.metadata
    }

    /// Shard `i`'s handle, if the engine is open.
    pub(crate) fn shard(&self, i: usize) -> Result<&ShardHandle> {
        self.check_open()?;
        self.inner
            .shards
            .get(i)
            .ok_or_else(|| Error::Internal(format!("no shard {i}")))
    }

    /// Whether reads may be answered on the caller's thread (`Config::caller_reads`).
    pub(crate) fn caller_reads(&self) -> bool {
        self.inner.config.caller_reads
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    /// Per-key requests, split per shard (one message per shard), answered in input order.
    /// Identity CIDs are answered by `inline` from the CID itself; keys that `quick` answers
    /// on this thread (reads, see `ipfrs_shards::read_view`) never reach their shard.
    pub(crate) async fn keyed<T: Send + 'static>(
        &self,
        cids: &[Cid],
        make: fn(Vec<Key>, Reply<Vec<T>>) -> Request,
        inline: impl Fn(&[u8]) -> T + Send,
        quick: impl Fn(&ShardHandle, &[u8]) -> ipfrs_shards::Result<Quick<T>> + Send,
    ) -> Result<Vec<T>> {
        self.check_open()?;
        let n = self.inner.shards.len();
        let caller_reads = self.inner.config.caller_reads;
        let mut out: Vec<Option<T>> = (0..cids.len()).map(|_| None).collect();
        let mut groups: Vec<(Vec<usize>, Vec<Key>)> = vec![(Vec::new(), Vec::new()); n];
        for (i, cid) in cids.iter().enumerate() {
            match identity_data(cid) {
                Some(data) => out[i] = Some(inline(data)),
                None => {
                    let shard = shard_of(cid, n);
                    let key = key_of(cid);
                    if caller_reads
                        && let Quick::Answer(value) = quick(&self.inner.shards[shard], &key)?
                    {
                        out[i] = Some(value);
                        continue;
                    }
                    let (positions, keys) = &mut groups[shard];
                    positions.push(i);
                    keys.push(key);
                }
            }
        }
        let mut pending = Vec::new();
        for (shard, (positions, keys)) in groups.into_iter().enumerate() {
            if !keys.is_empty() {
                let reply = self.inner.shards[shard].send(|r| make(keys, r)).await?;
                pending.push((positions, reply));
            }
        }
        for (positions, reply) in pending {
            for (i, value) in positions.into_iter().zip(reply.wait().await?) {
                out[i] = Some(value);
            }
        }
        out.into_iter()
            .collect::<Option<Vec<T>>>()
            .ok_or_else(|| Error::Internal("a shard answered with too few values".into()))
    }

    /// Stores blocks: checked against the size limit first (all or nothing), then one message
    /// per shard; returns once every shard has acknowledged under the durability mode.
    pub(crate) async fn put_blocks(&self, blocks: &[Block]) -> Result<()> {
        self.check_open()?;
        let limit = self.inner.config.max_block_size;
        if let Some(big) = blocks.iter().find(|b| b.len() > limit) {
            return Err(BlockError::TooLarge {
                size: big.len(),
                limit,
            }
            .into());
        }
        let n = self.inner.shards.len();
        // A lone put is written on this thread while its shard commits nothing (see
        // `Config::caller_writes`); anything else, or a shard that is busy, takes the queue.
        if let [block] = blocks
            && identity_data(block.cid()).is_none()
        {
            let shard = &self.inner.shards[shard_of(block.cid(), n)];
            if let Quick::Answer(done) = shard.view().put(&key_of(block.cid()), block.data()) {
                return done.map_err(Into::into);
            }
        }
        let mut groups: Vec<Vec<(Key, Bytes)>> = vec![Vec::new(); n];
        for block in blocks {
            if identity_data(block.cid()).is_none() {
                groups[shard_of(block.cid(), n)].push((key_of(block.cid()), block.data().clone()));
            }
        }
        let mut pending = Vec::new();
        for (shard, items) in groups.into_iter().enumerate() {
            if !items.is_empty() {
                let reply = self.inner.shards[shard]
                    .send(|reply| Request::Put { items, reply })
                    .await?;
                pending.push(reply);
            }
        }
        for reply in pending {
            reply.wait().await?;
        }
        Ok(())
    }

    /// One request to every shard, replies in shard order.
    pub(crate) async fn broadcast<T: Send + 'static>(
        &self,
        make: fn(Reply<T>) -> Request,
    ) -> Result<Vec<T>> {
        self.check_open()?;
        let mut pending = Vec::with_capacity(self.inner.shards.len());
        for shard in &self.inner.shards {
            pending.push(shard.send(make).await?);
        }
        // Every shard's answer is awaited before an error is returned: a caller that closes
        // the engine on the first error must not find other shards still at the work (a
        // compaction then races the shutdown).
        let mut out = Vec::with_capacity(pending.len());
        let mut first_error = None;
        for reply in pending {
            match reply.wait().await {
                Ok(value) => out.push(value),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e.into()),
            None => Ok(out),
        }
    }

    /// Keys of one shard after `after`, at most `limit`.
    pub(crate) async fn scan(
        &self,
        shard: usize,
        after: Option<Key>,
        limit: usize,
    ) -> Result<Vec<Key>> {
        self.check_open()?;
        Ok(self.inner.shards[shard]
            .call(|reply| Request::Scan {
                after,
                limit,
                reply,
            })
            .await?)
    }

    /// Compacts every sealed hot segment now, whatever the hot budget: blocks read since they
    /// were written stay hot (rewritten), the rest move into the cold backend, and the emptied
    /// segment files are removed. Returns the number of segments compacted. Without a hot
    /// tier there is nothing to do.
    ///
    /// Background compaction does the same by itself whenever the hot area passes its budget;
    /// this is for operators (`ipfrs-store repo compact`) and tests.
    ///
    /// # Errors
    /// A backend or segment error; the segment being compacted is then left in place.
    pub async fn compact(&self) -> Result<u64> {
        let per_shard: Vec<u64> = self.broadcast(|reply| Request::Compact { reply }).await?;
        Ok(per_shard.into_iter().sum())
    }

    /// Every damaged place the shards know of: hot records that recovery found damaged (named
    /// by their block where the payload's hash proves it, else by segment and offset), and
    /// records or keys a listing could not read back since. Reads of a damaged block fail
    /// with [`Error::Corrupt`]; this report also names damage no read can reach (a record
    /// whose key is gone). `repo verify` prints it.
    pub async fn damage(&self) -> Result<Vec<Damage>> {
        let per_shard: Vec<Vec<Damage>> = self.broadcast(|reply| Request::Damage { reply }).await?;
        Ok(per_shard.into_iter().flatten().collect())
    }

    pub(crate) async fn stats(&self) -> Result<Stats> {
        let shards: Vec<ShardStats> = self.broadcast(|reply| Request::Stats { reply }).await?;
        Ok(Stats::from_shards(shards, self.inner.config.io_driver))
    }

    /// Stops every shard after in-flight work and a final flush; idempotent.
    pub(crate) async fn close(&self) -> Result<()> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let mut first_error = None;
        for shard in &self.inner.shards {
            if let Err(e) = shard.call(|reply| Request::Shutdown { reply }).await {
                first_error.get_or_insert(e);
            }
        }
        self.inner.join_threads();
        self.inner.metadata.stop();
        self.inner.trimmer.stop();
        self.inner.release_directory();
        match first_error {
            None | Some(ipfrs_shards::Error::Stopped { .. }) => Ok(()),
            Some(e) => Err(e.into()),
        }
    }
}

impl Inner {
    fn release_directory(&self) {
        match self.directory.lock() {
            Ok(mut guard) => drop(guard.take()),
            Err(poisoned) => drop(poisoned.into_inner().take()),
        }
    }

    fn join_threads(&self) {
        let threads = match self.threads.lock() {
            Ok(mut guard) => std::mem::take(&mut *guard),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        };
        for thread in threads {
            thread.join();
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            for shard in &self.shards {
                let _ =
                    futures_lite::future::block_on(shard.call(|reply| Request::Shutdown { reply }));
            }
        }
        self.join_threads();
        self.metadata.stop();
        self.trimmer.stop();
        self.release_directory();
    }
}

fn validate(config: &Config) -> Result<()> {
    let invalid = |field, reason: &str| {
        Err(Error::InvalidConfig {
            field,
            reason: reason.to_string(),
        })
    };
    if config.shards == Some(0) {
        return invalid("shards", "must be at least 1");
    }
    if config.remote.is_some() && config.hot_tier.is_none() {
        return invalid(
            "remote",
            "needs the hot tier: packs are what goes to the bucket, and only the hot tier makes them",
        );
    }
    if !(config.bloom_fp_rate > 0.0 && config.bloom_fp_rate < 1.0) {
        return invalid("bloom_fp_rate", "must be between 0 and 1 (exclusive)");
    }
    if config.max_block_size == 0 {
        return invalid("max_block_size", "must be at least 1");
    }
    if let Some(hot) = &config.hot_tier {
        if config.max_block_size > ipfrs_tiering::segment::record::MAX_PAYLOAD_LEN {
            return invalid(
                "max_block_size",
                "must be at most 1 GiB with the hot tier (the segment record limit)",
            );
        }
        // A record is header + key (< 1 KiB) + block; a segment must hold two of the
        // largest so that a roll-over always makes room.
        let least = 2 * (config.max_block_size as u64 + 4096);
        if hot.segment_bytes % 4096 != 0 || hot.segment_bytes < least {
            return invalid(
                "hot_tier.segment_bytes",
                &format!(
                    "must be a multiple of 4096 and at least {least} (two of the largest blocks)"
                ),
            );
        }
        if hot.segment_bytes > u64::from(u32::MAX) + 1 {
            return invalid("hot_tier.segment_bytes", "must be at most 4 GiB");
        }
        if hot.write_chunk_bytes < 4096 || hot.write_chunk_bytes % 4096 != 0 {
            return invalid(
                "hot_tier.write_chunk_bytes",
                "must be a multiple of 4096, at least 4096",
            );
        }
        if hot.reclaim_below_percent > 100 {
            return invalid("hot_tier.reclaim_below_percent", "must be at most 100");
        }
    }
    Ok(())
}

/// Starts every shard in parallel (each recovers its hot tier and rebuilds its bloom filter,
/// from its saved open state or a walk of its backend); if one fails, the others are shut
/// down and the first failure is returned.
fn start_all(config: &Config, directory: &Directory, shards: usize) -> Result<Vec<ShardThread>> {
    let results: Vec<ipfrs_shards::Result<ShardThread>> = std::thread::scope(|scope| {
        let starting: Vec<_> = (0..shards)
            .map(|id| {
                let dir = directory.shard_dir(id, config.backend);
                scope.spawn(move || start_shard(id, shards, config, dir))
            })
            .collect();
        starting
            .into_iter()
            .enumerate()
            .map(|(id, handle)| {
                handle.join().unwrap_or_else(|_| {
                    Err(ipfrs_shards::Error::Executor {
                        shard: id,
                        cause: ipfrs_shards::ExecutorFailure::Panicked(
                            "the thread starting it panicked".into(),
                        ),
                    })
                })
            })
            .collect()
    });
    let mut started = Vec::new();
    let mut failure = None;
    for result in results {
        match result {
            Ok(thread) => started.push(thread),
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    let Some(failure) = failure else {
        return Ok(started);
    };
    stop_all(started);
    Err(failure.into())
}

/// Shuts down shards that started when the engine cannot open after all.
fn stop_all(started: Vec<ShardThread>) {
    for thread in started {
        let _ = futures_lite::future::block_on(
            thread.handle().call(|reply| Request::Shutdown { reply }),
        );
        thread.join();
    }
}
