//! A shard's state and its read path.
//!
//! Reads run first on the caller's thread (`read_view`): bloom filter ("absent" answers at
//! once), the hot index, the cache, then the cold index (an inline block, or a record in a
//! pack). What that path cannot answer (damage, a gone backend, a race with a move) comes
//! here, where reads run concurrently on the executor, the backend on its blocking pool.
//! Writes go through the shard's single writer (`commit`), so the order of puts and deletes
//! is the order they arrived in.
//!
//! A read that misses the cache fills it only if no delete committed while it was reading
//! (`delete_epoch`), so a deleted block can never come back through a late cache fill.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use crate::rt::Gate;
use fastbloom::AtomicBloomFilter;
use ipfrs_core_types::key::{Key, bloom_hash, cid_of_key};
use ipfrs_tiering::ColdBackend;
use ipfrs_tiering::pack::Entry;

use crate::cache::BlockCache;
use crate::cold_index;
use crate::commit::{Ack, Pending, WriteOp, WriteQueue};
use crate::damage::{Damage, DamageSite, MAX_DAMAGE_KEPT};
use crate::hot::HotTier;
use crate::protocol::{Fetched, Request, ShardStats};
use crate::read_view::ReadCounters;
use crate::{Error, Result};

/// Counters of one shard; `Cell`s because the shard is single-threaded.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) blocks: Cell<u64>,
    pub(crate) bytes: Cell<u64>,
    pub(crate) write_groups: Cell<u64>,
    pub(crate) write_ops: Cell<u64>,
    pub(crate) put_bytes: Cell<u64>,
    /// Cold reads refused because the backend's bytes did not hash to their key.
    pub(crate) corrupt_cold_reads: Cell<u64>,
    /// Cold keys walked at open to rebuild the bloom filter and counters (0 when a clean
    /// close's saved state stood in for the walk).
    pub(crate) keys_walked_at_open: Cell<u64>,
}

pub(crate) fn bump(cell: &Cell<u64>, by: u64) {
    cell.set(cell.get() + by);
}

/// Everything one shard owns.
pub(crate) struct Shard {
    pub(crate) id: usize,
    pub(crate) backend: Arc<dyn ColdBackend>,
    pub(crate) cache: Arc<BlockCache>,
    pub(crate) bloom: Arc<AtomicBloomFilter>,
    pub(crate) counters: Counters,
    /// Read counters shared with callers' threads (see [`crate::read_view`]).
    pub(crate) reads: Arc<ReadCounters>,
    /// Incremented each time a group that deleted something commits.
    pub(crate) delete_epoch: Arc<crate::shared::Epoch>,
    pub(crate) writes: WriteQueue,
    /// The hot tier, if configured.
    pub(crate) hot: Option<HotTier>,
    /// Damage met while serving (a listing that could not read a key back), beside what the
    /// hot tier's recovery found; at most [`MAX_DAMAGE_KEPT`] entries.
    pub(crate) damage: RefCell<Vec<Damage>>,
    /// Tasks serving requests; closing it waits for them (clean shutdown).
    pub(crate) gate: Gate,
    /// Tasks in the gate that are not the committer, running now (for the shutdown report).
    pub(crate) gate_tasks: Rc<Cell<usize>>,
}

/// Fault injection (tests only, the `failpoints` feature): a cold-backend read failing as an
/// EIO from the disk would make it fail.
#[cfg_attr(not(feature = "failpoints"), allow(unused_variables))]
pub(crate) fn injected_cold_read_failure(
    kind: ipfrs_core_types::BackendKind,
) -> Option<ipfrs_tiering::Error> {
    fail::fail_point!("cold-read", |_| Some(ipfrs_tiering::Error::Backend {
        backend: kind,
        source: Box::new(std::io::Error::from_raw_os_error(libc::EIO)),
    }));
    None
}

impl Shard {
    pub(crate) fn backend_error(&self, err: ipfrs_tiering::Error) -> Error {
        Error::backend(self.id)(err)
    }

    /// False only when the key is certainly absent. Not counted in the stats: the writer
    /// asks this too, and only lookups should count as bloom negatives.
    pub(crate) fn bloom_may_contain(&self, key: &[u8]) -> bool {
        self.bloom.contains_hash(bloom_hash(key))
    }

    /// [`Self::bloom_may_contain`] for a lookup, counting the negatives.
    pub(crate) fn may_contain(&self, key: &[u8]) -> bool {
        let present = self.bloom_may_contain(key);
        if !present {
            ReadCounters::add(&self.reads.bloom_negatives, 1);
        }
        present
    }

    /// Runs a backend call on the blocking pool: the shard's core never blocks on it.
    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn ColdBackend) -> ipfrs_tiering::Result<T> + Send + 'static,
    ) -> Result<T> {
        let backend = Arc::clone(&self.backend);
        crate::rt::spawn_blocking(move || f(&*backend))
            .await
            .map_err(|e| self.backend_error(e))
    }

    /// Serves one request. Writes are queued for the writer; reads run as their own tasks.
    pub(crate) fn dispatch(self: &Rc<Self>, request: Request) {
        match request {
            Request::Put { items, reply } => {
                bump(
                    &self.counters.put_bytes,
                    items.iter().map(|(_, v)| v.len() as u64).sum(),
                );
                self.enqueue_put(items, reply)
            }
            Request::Delete { keys, reply } => self.enqueue_delete(keys, reply),
            Request::Promote { key, data, epoch } => {
                if self.hot.is_some() {
                    self.enqueue(WriteOp {
                        pending: Pending::Promote { key, data, epoch },
                        ack: Ack::Nobody,
                    });
                }
            }
            Request::Flush { reply } => self.enqueue_flush(reply),
            Request::Get { keys, reply } => {
                self.spawn(async move |s| {
                    let _ = reply.send(s.get_many(keys).await);
                });
            }
            Request::Has { keys, reply } => {
                self.spawn(async move |s| {
                    let _ = reply.send(s.has_many(keys).await);
                });
            }
            Request::Size { keys, reply } => {
                self.spawn(async move |s| {
                    let _ = reply.send(s.size_many(keys).await);
                });
            }
            Request::Scan {
                after,
                limit,
                reply,
            } => {
                self.spawn(async move |s| {
                    let _ = reply.send(s.scan(after, limit).await);
                });
            }
            Request::Compact { reply } => {
                self.spawn(async move |s| {
                    let _ = reply.send(crate::hot::compaction::compact_all(&s).await);
                });
            }
            Request::Stats { reply } => {
                let _ = reply.send(Ok(self.stats()));
            }
            Request::Damage { reply } => {
                let _ = reply.send(Ok(self.damage_report()));
            }
            // Handled by the shard's main loop, which owns the shutdown sequence.
            Request::Shutdown { reply } => {
                let _ = reply.send(Err(Error::Stopped { shard: self.id }));
            }
        }
    }

    /// What callers' threads may read of this shard.
    pub(crate) fn view(&self) -> crate::read_view::ReadView {
        crate::read_view::ReadView {
            id: self.id,
            backend: Arc::downgrade(&self.backend),
            bloom: Arc::clone(&self.bloom),
            epoch: Arc::clone(&self.delete_epoch),
            counters: Arc::clone(&self.reads),
            cache: Arc::clone(&self.cache),
            hot: self.hot.as_ref().map(HotTier::view),
        }
    }

    /// Runs `task` inside the shard's gate; `false` if the shard is shutting down (the task
    /// is dropped).
    pub(crate) fn spawn(self: &Rc<Self>, task: impl AsyncFnOnce(Rc<Shard>) + 'static) -> bool {
        let shard = Rc::clone(self);
        let count = Rc::clone(&self.gate_tasks);
        // A closed gate means the shard is shutting down: the request's reply channel is
        // dropped with the task and the caller sees `Stopped`.
        if let Ok(task) = self.gate.spawn(async move {
            count.set(count.get() + 1);
            task(shard).await;
            count.set(count.get() - 1);
        }) {
            task.detach();
            true
        } else {
            false
        }
    }

    async fn get_many(self: &Rc<Self>, keys: Vec<Key>) -> Result<Vec<Option<Fetched>>> {
        let mut out = vec![None; keys.len()];
        let mut misses = Vec::new();
        {
            let cache = &self.cache;
            for (i, key) in keys.iter().enumerate() {
                if !self.may_contain(key) {
                    continue;
                }
                if let Some(record) = self.hot.as_ref().and_then(|hot| hot.fetch(key)) {
                    out[i] = Some(Fetched::Record(record));
                    continue;
                }
                match cache.get(key) {
                    Some(value) => {
                        ReadCounters::add(&self.reads.cache_hits, 1);
                        out[i] = Some(Fetched::Data(value));
                    }
                    None => misses.push(i),
                }
            }
        }
        if misses.is_empty() {
            return Ok(out);
        }
        ReadCounters::add(&self.reads.cache_misses, misses.len() as u64);
        let epoch = self.delete_epoch.get();
        let miss_keys: Vec<Key> = misses.iter().map(|&i| keys[i].clone()).collect();
        let (miss_keys, entries, mut damaged) = self
            .blocking(move |backend| {
                let mut damaged = Vec::new();
                let mut entries = Vec::with_capacity(miss_keys.len());
                for key in &miss_keys {
                    if let Some(err) = injected_cold_read_failure(backend.kind()) {
                        return Err(err);
                    }
                    let entry = match cold_index::get(backend, key) {
                        Ok(entry) => entry,
                        // Damaged backend files (a refused read, a backend that did not open,
                        // an unreadable entry) make this key corrupt: never `None`, which
                        // claims it absent.
                        Err(e) if ipfrs_tiering::backends::is_damage(&e) => {
                            damaged.push((key.clone(), e.to_string()));
                            entries.push(None);
                            continue;
                        }
                        Err(e) => return Err(e),
                    };
                    // An inline block is hashed here, on the blocking pool, never on the
                    // shard's core (the backend's files carry no checksum of ours); a packed
                    // one is a record that the caller checks by its own checksum and key.
                    if let Some(Entry::Inline(data)) = &entry
                        && let Err(e) = ipfrs_core_types::verify_key(key, data)
                    {
                        damaged.push((
                            key.clone(),
                            format!("the cold backend returned other bytes: {e}"),
                        ));
                    }
                    entries.push(entry);
                }
                Ok((miss_keys, entries, damaged))
            })
            .await?;
        // Packed blocks are records in the pack files' mappings: resolved here, checked by
        // the caller like hot records, never copied or cached (the page cache holds them).
        let values: Vec<Option<Fetched>> = miss_keys
            .iter()
            .zip(entries)
            .map(|(key, entry)| match entry {
                // Not in the backend: a reclamation may have put it back in the hot tier
                // (before dropping its entry) while the backend was asked.
                None => self
                    .hot
                    .as_ref()
                    .and_then(|hot| hot.fetch(key))
                    .map(Fetched::Record),
                Some(Entry::Inline(data)) => Some(Fetched::Data(data)),
                Some(Entry::Packed(loc)) => {
                    // A reclamation may have moved the block back into the hot tier (and
                    // dropped the pack) since the entry was read; a delete may have removed
                    // it. Only an entry that nothing explains is damage.
                    let record = self
                        .hot
                        .as_ref()
                        .and_then(|hot| hot.pack_record(&loc).or_else(|| hot.fetch(key)));
                    if record.is_none() && epoch == self.delete_epoch.get() {
                        damaged.push((
                            key.clone(),
                            format!(
                                "its index entry points into pack {}, which is gone",
                                loc.pack
                            ),
                        ));
                    }
                    record.map(Fetched::Record)
                }
            })
            .collect();
        bump(&self.counters.corrupt_cold_reads, damaged.len() as u64);
        if let Some((key, reason)) = damaged.into_iter().next() {
            // The whole read fails, as for a damaged hot record, and nothing it read is
            // cached or promoted: the caller retries key by key to find the others.
            return Err(Error::Corrupt { key, reason });
        }
        let fill = epoch == self.delete_epoch.get();
        let mut promote = Vec::new();
        {
            let cache = &self.cache;
            for ((i, key), value) in misses.into_iter().zip(miss_keys).zip(values) {
                if let (true, Some(Fetched::Data(value))) = (fill, &value) {
                    if let Some(hot) = &self.hot
                        && hot.count_cold_read(&key)
                    {
                        promote.push((key.clone(), value.clone()));
                    }
                    cache.insert(key, value.clone());
                }
                out[i] = value;
            }
        }
        for (key, data) in promote {
            self.enqueue(WriteOp {
                pending: Pending::Promote { key, data, epoch },
                ack: Ack::Nobody,
            });
        }
        Ok(out)
    }

    async fn has_many(&self, keys: Vec<Key>) -> Result<Vec<bool>> {
        self.lookup_many(
            keys,
            false,
            |hot, key| hot.index.borrow().contains(key).then_some(true),
            |cache, key| cache.contains(key).then_some(true),
            |backend, key| backend.contains(key),
        )
        .await
    }

    async fn size_many(&self, keys: Vec<Key>) -> Result<Vec<Option<u64>>> {
        self.lookup_many(
            keys,
            None,
            |hot, key| {
                hot.index
                    .borrow()
                    .get(key)
                    .map(|loc| Some(u64::from(loc.len)))
            },
            |cache, key| cache.get(key).map(|value| Some(value.len() as u64)),
            cold_index::size,
        )
        .await
    }

    /// Answers each key from the first tier that can: `absent` where the bloom filter rules
    /// the key out, `from_hot` where the hot index knows it, `from_cache` where the cache
    /// does, and one blocking batch of `from_backend` calls for the rest.
    async fn lookup_many<T: Clone + Send + 'static>(
        &self,
        keys: Vec<Key>,
        absent: T,
        from_hot: impl Fn(&HotTier, &[u8]) -> Option<T>,
        from_cache: impl Fn(&BlockCache, &[u8]) -> Option<T>,
        from_backend: fn(&dyn ColdBackend, &[u8]) -> ipfrs_tiering::Result<T>,
    ) -> Result<Vec<T>> {
        let mut out = vec![absent; keys.len()];
        let mut unsure = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            if !self.may_contain(key) {
                continue;
            }
            if let Some(value) = self.hot.as_ref().and_then(|hot| from_hot(hot, key)) {
                out[i] = value;
                continue;
            }
            match from_cache(&self.cache, key) {
                Some(value) => out[i] = value,
                None => unsure.push(i),
            }
        }
        if unsure.is_empty() {
            return Ok(out);
        }
        let unsure_keys: Vec<Key> = unsure.iter().map(|&i| keys[i].clone()).collect();
        let answers = self
            .blocking(move |backend| {
                unsure_keys
                    .iter()
                    .map(|key| from_backend(backend, key))
                    .collect::<ipfrs_tiering::Result<Vec<_>>>()
            })
            .await?;
        // A reclamation may have put the block back in the hot tier and dropped its entry
        // while the backend was asked: the hot tier is asked again (it comes first there).
        for (i, answer) in unsure.into_iter().zip(answers) {
            out[i] = self
                .hot
                .as_ref()
                .and_then(|hot| from_hot(hot, &keys[i]))
                .unwrap_or(answer);
        }
        Ok(out)
    }

    /// Keys after `after` in ascending order, from both tiers, without duplicates.
    async fn scan(&self, after: Option<Key>, limit: usize) -> Result<Vec<Key>> {
        // Hot keys are read from the record headers in the segment mappings, on the blocking
        // pool (page faults), then merged with the cold backend's ordered walk.
        let hot_source = self.hot.as_ref().map(|hot| {
            let segments = hot.segments.borrow().clone();
            let entries: Vec<_> = hot.index.borrow().iter().collect();
            (segments, entries)
        });
        let (merged, unreadable_hot, malformed_cold) = self
            .blocking(move |backend| {
                let (mut hot_keys, unreadable_hot) = match hot_source {
                    Some((segments, entries)) => crate::hot::keys_of(&segments, &entries),
                    None => (Vec::new(), Vec::new()),
                };
                if let Some(after) = &after {
                    hot_keys.retain(|k| k > after);
                }
                hot_keys.sort_unstable();
                hot_keys.truncate(limit);
                // A cold key that is no multihash (damage the backend did not notice) is skipped
                // and reported, and does not count against the page: one bad key must neither
                // fail the listing nor end it early.
                let mut cold = Vec::with_capacity(limit.min(4096));
                let mut malformed_cold = Vec::new();
                backend.iterate(after.as_deref(), &mut |key, _| {
                    if cid_of_key(key).is_ok() {
                        cold.push(key.to_vec());
                    } else if malformed_cold.len() < MAX_DAMAGE_KEPT {
                        malformed_cold.push(key.to_vec());
                    }
                    cold.len() < limit
                })?;
                let mut merged = Vec::with_capacity(limit.min(hot_keys.len() + cold.len()));
                let (mut h, mut c) = (hot_keys.into_iter().peekable(), cold.into_iter().peekable());
                while merged.len() < limit {
                    let next = match (h.peek(), c.peek()) {
                        (Some(a), Some(b)) if a == b => {
                            c.next();
                            h.next()
                        }
                        (Some(a), Some(b)) if a < b => h.next(),
                        (Some(_), Some(_)) | (None, Some(_)) => c.next(),
                        (Some(_), None) => h.next(),
                        (None, None) => None,
                    };
                    match next {
                        Some(key) => merged.push(key),
                        None => break,
                    }
                }
                Ok((merged, unreadable_hot, malformed_cold))
            })
            .await?;
        let hot_damage = unreadable_hot.into_iter().map(|(loc, cause)| Damage {
            shard: self.id,
            site: DamageSite::HotRecord {
                segment: loc.segment,
                offset: u64::from(loc.offset),
            },
            key: None,
            key_proven: false,
            cause,
        });
        let cold_damage = malformed_cold.into_iter().map(|key| Damage {
            shard: self.id,
            site: DamageSite::ColdBackend {
                detail: "a key that is no multihash".into(),
            },
            key: Some(key),
            key_proven: false,
            cause: "the backend lists a key that does not parse as a multihash".into(),
        });
        self.note_damage(hot_damage.chain(cold_damage));
        Ok(merged)
    }

    /// Adds damage to the shard's report, once per place and key, up to [`MAX_DAMAGE_KEPT`].
    pub(crate) fn note_damage(&self, found: impl IntoIterator<Item = Damage>) {
        let mut damage = self.damage.borrow_mut();
        for new in found {
            let known = damage
                .iter()
                .any(|d| d.site == new.site && d.key == new.key);
            if !known && damage.len() < MAX_DAMAGE_KEPT {
                damage.push(new);
            }
        }
    }

    /// Every damaged place this shard knows of: found at recovery, then met since.
    pub(crate) fn damage_report(&self) -> Vec<Damage> {
        let recovered = self.hot.as_ref().map(|hot| hot.damage.borrow().clone());
        let mut report = recovered.unwrap_or_default();
        report.extend(self.damage.borrow().iter().cloned());
        report
    }

    pub(crate) fn stats(&self) -> ShardStats {
        let c = &self.counters;
        let (cache_bytes, cache_entries) = self.cache.usage();
        let mut stats = ShardStats {
            shard: self.id,
            blocks: c.blocks.get(),
            bytes: c.bytes.get(),
            cache_bytes,
            cache_entries,
            cache_hits: ReadCounters::get(&self.reads.cache_hits),
            cache_misses: ReadCounters::get(&self.reads.cache_misses),
            bloom_negatives: ReadCounters::get(&self.reads.bloom_negatives),
            caller_reads: ReadCounters::get(&self.reads.caller_reads),
            bloom_bits: self.bloom.num_bits() as u64,
            write_groups: c.write_groups.get(),
            write_ops: c.write_ops.get(),
            read_only: self.writes.poisoned().is_some(),
            put_bytes: c.put_bytes.get(),
            corrupt_cold_reads: c.corrupt_cold_reads.get(),
            keys_walked_at_open: c.keys_walked_at_open.get(),
            ..ShardStats::default()
        };
        if let Some(hot) = &self.hot {
            let index = hot.index.borrow();
            let h = &hot.counters;
            stats.hot_blocks = index.len() as u64;
            stats.hot_bytes = index.bytes();
            stats.hot_index_bytes = index.memory_bytes();
            stats.hot_segments = hot.segments.borrow().len() as u64;
            stats.hot_disk_bytes = hot.disk_footprint();
            stats.segment_write_bytes = h.disk_bytes.get();
            stats.compaction_read_bytes = h.compaction_read_bytes.get();
            stats.compaction_cold_bytes = h.compaction_cold_bytes.get();
            stats.compaction_rewritten_bytes = h.compaction_rewritten_bytes.get();
            stats.segments_compacted = h.segments_compacted.get();
            stats.promotions = h.promotions.get();
            stats.corrupt_records = h.corrupt_records.get();
            stats.compaction_failures = h.compaction_failures.get();
            stats.packs_reclaimed = h.packs_reclaimed.get();
        }
        if let Some(hot) = &self.hot {
            (stats.packs, stats.pack_disk_bytes, stats.pack_live_bytes) =
                hot.packs.borrow().usage();
        }
        stats
    }
}
