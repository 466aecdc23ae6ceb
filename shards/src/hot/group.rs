//! Group commit into the hot tier.
//!
//! A group is every write queued since the last one (see `commit`). It is committed in four
//! steps, and acknowledged only after the last:
//! 1. **Resolve**: which keys exist. The hot index answers for hot keys; keys the bloom filter
//!    cannot rule out are looked up in the cold backend, all in one blocking call.
//! 2. **Plan**: replay the group's ops in order against that state: a put of a stored block
//!    writes nothing (same key, same bytes), a delete of a stored block writes a tombstone.
//! 3. **Append**: one mark record and every planned record, in DMA writes, then one fdatasync
//!    (unless durability is None and nothing asked for a flush).
//! 4. **Cold deletes**: blocks deleted that may also be in the cold backend are deleted there
//!    (and flushed) after their tombstones are durable; if the process dies in between,
//!    recovery redoes them from the tombstones.
//!
//! Then the index, bloom filter, cache and counters are updated and every waiter answered.

use std::rc::Rc;

use bytes::Bytes;
use hashbrown::{HashMap, HashSet};
use ipfrs_core_types::Durability;
use ipfrs_core_types::key::{Key, bloom_hash};
use ipfrs_tiering::pack::PackLoc;
use ipfrs_tiering::segment::{Loc, Payload};

use super::HotTier;
use super::writer::{AppendError, Appended, RECORD_ALIGN, Record, align_down};
use crate::commit::{Ack, Pending, WriteOp, acknowledge, apply_delta};
use crate::shard::{Shard, bump};
use crate::{Error, PoisonCause, Result};

/// Writes the hint file of a sealed, synced segment on the blocking pool. Run it with
/// `Shard::background`: a missing hint only means recovery scans that segment.
fn write_hint(
    dir: &std::path::Path,
    sealed: ipfrs_tiering::segment::MappedSegment,
) -> impl std::future::Future<Output = ()> + 'static {
    let dir = dir.to_path_buf();
    crate::rt::spawn_blocking(move || {
        let scan = ipfrs_tiering::segment::scan_segment(sealed.bytes(), RECORD_ALIGN);
        if let Some(hint) = ipfrs_tiering::segment::hint::encode_hint(&scan) {
            let _ = ipfrs_tiering::segment::hint::write_hint(&dir, sealed.id(), &hint);
        }
        drop(scan);
        sealed.release();
    })
}

/// Bytes per readahead request after a write (see `HotTier::prefetch_written`).
const PREFETCH_STEP: usize = 1 << 20;

/// The parts of an append's `(segment, start, end)` ranges worth reading ahead: all of them
/// but the active segment's last partial page. The next append rewrites that page (O_DIRECT
/// from its 4096-byte boundary), and the kernel must lock the page to drop it from the page
/// cache; a readahead of it still waiting for the disk then held up every write of the shard:
/// stalls of 0.2-1.3 s in the soak while sled flushed, its writes in `folio_lock`. That page
/// is read on demand instead. An append ends in the active segment, so its last range is
/// the one cut.
fn prefetch_ranges(ranges: &[(u32, u64, u64)]) -> impl Iterator<Item = (u32, u64, u64)> + '_ {
    let last = ranges.len().saturating_sub(1);
    ranges
        .iter()
        .enumerate()
        .filter_map(move |(i, &(id, start, end))| {
            let end = if i == last { align_down(end) } else { end };
            (end > align_down(start)).then_some((id, start, end))
        })
}

/// Where a key is, as far as the group has seen.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tier {
    Hot,
    Cold,
    /// Written by this group.
    New,
}

/// What a planned record does to the index once it is durable.
enum Effect {
    Put { key: Key, len: u32, hits: u16 },
    Tombstone { key: Key },
}

/// The plan of one group.
/// What the cold backend holds for some keys: the block's length and, if packed, where.
type ColdFacts = HashMap<Key, Option<(u64, Option<PackLoc>)>>;

#[derive(Default)]
struct Plan {
    /// Records to append, with what each does.
    records: Vec<(Effect, Option<Bytes>)>,
    /// Keys to delete from the cold backend.
    cold_deletes: Vec<Key>,
    /// Per delete op, whether each key was present.
    deleted_flags: Vec<Vec<bool>>,
    blocks_delta: i64,
    bytes_delta: i64,
    promotions: u64,
    sync: bool,
    /// A flush was asked for: the cold backend is flushed too (deletes made under
    /// durability None).
    flush_cold: bool,
}

impl Shard {
    /// Commits one group into the hot tier (see the module documentation).
    pub(crate) async fn commit_group_hot(self: &Rc<Self>, hot: &HotTier, group: Vec<WriteOp>) {
        if let Some(cause) = self.writes.poisoned() {
            for op in group {
                op.ack.fail(Error::Poisoned {
                    shard: self.id,
                    cause: cause.clone(),
                });
            }
            return;
        }
        if let [
            WriteOp {
                pending:
                    Pending::Migrate { .. }
                    | Pending::Retire { .. }
                    | Pending::Seal
                    | Pending::Reclaim { .. }
                    | Pending::DropPack { .. },
                ..
            },
        ] = group.as_slice()
        {
            let Some(op) = group.into_iter().next() else {
                return;
            };
            self.writes.stage.set(op.pending.name());
            let result = match op.pending {
                Pending::Migrate {
                    segment,
                    records,
                    mode,
                } => self.migrate(hot, segment, records, mode).await,
                Pending::Retire { segment } => self.retire(hot, segment).await,
                Pending::Seal => self.seal(hot).await,
                Pending::Reclaim { pack, records } => self.reclaim(hot, pack, records).await,
                Pending::DropPack { pack } => self.drop_pack(hot, pack).await,
                _ => Ok(()),
            };
            match (result, op.ack) {
                (Ok(()), Ack::Done(reply)) => {
                    let _ = reply.send(Ok(()));
                }
                (Err(e), ack) => ack.fail(e),
                _ => {}
            }
            return;
        }
        let ops = group.len() as u64;
        let (pendings, acks): (Vec<Pending>, Vec<Ack>) =
            group.into_iter().map(|op| (op.pending, op.ack)).unzip();
        let result = self.commit_hot(hot, pendings).await;
        match result {
            Ok(flags) => {
                bump(&self.counters.write_groups, 1);
                bump(&self.counters.write_ops, ops);
                acknowledge(acks, flags);
            }
            Err(err) => {
                for ack in acks {
                    ack.fail(err.clone());
                }
            }
        }
        if hot.over_budget() {
            let _ = hot.wake_tx.try_send(());
        }
    }

    /// Resolves, plans, appends and applies one group; returns the delete flags.
    async fn commit_hot(&self, hot: &HotTier, ops: Vec<Pending>) -> Result<Vec<Vec<bool>>> {
        let cold = self.resolve_cold(hot, &ops).await?;
        let plan = self.plan(hot, ops, &cold);
        let records: Vec<Record<'_>> = plan
            .records
            .iter()
            .map(|(effect, data)| match effect {
                Effect::Put { key, .. } => Record {
                    key,
                    payload: Payload::Data(data.as_deref().unwrap_or(&[])),
                },
                Effect::Tombstone { key } => Record {
                    key,
                    payload: Payload::Tombstone,
                },
            })
            .collect();
        let appended = self.append(hot, &records, plan.sync).await?;
        drop(records);
        if !plan.cold_deletes.is_empty() || plan.flush_cold {
            let keys = plan.cold_deletes.clone();
            let sync = plan.sync;
            // The backend's own error is kept (as the poison's cause), not mapped.
            let deleted = self
                .blocking(move |backend| {
                    Ok((|| {
                        if !keys.is_empty() {
                            backend.delete_batch(&keys)?;
                        }
                        if sync {
                            backend.flush()?;
                        }
                        Ok(())
                    })())
                })
                .await?;
            if let Err(e) = deleted {
                // The tombstones are durable but the cold copies may still be served:
                // refuse writes until a reopen redoes the deletes from the tombstones.
                let cause = PoisonCause::ColdDelete(std::sync::Arc::new(e));
                self.writes.poison(cause.clone());
                return Err(Error::Poisoned {
                    shard: self.id,
                    cause,
                });
            }
        }
        // The deleted entries no longer hold their packs' bytes; a pack that falls under the
        // threshold is reclaimed by the compaction task.
        let mut released = false;
        {
            let mut packs = hot.packs.borrow_mut();
            for key in &plan.cold_deletes {
                if let Some(Some((len, Some(loc)))) = cold.get(key) {
                    packs.release(loc.pack, *len);
                    released = true;
                }
            }
        }
        if released {
            let _ = hot.wake_tx.try_send(());
        }
        self.apply(hot, plan.records, &appended);
        apply_delta(&self.counters.blocks, plan.blocks_delta);
        apply_delta(&self.counters.bytes, plan.bytes_delta);
        bump(&hot.counters.promotions, plan.promotions);
        Ok(plan.deleted_flags)
    }

    /// Sizes in the cold backend (and pack locations) of the keys the group touches that are
    /// not hot and that the bloom filter cannot rule out: one blocking call for the whole
    /// group.
    async fn resolve_cold(&self, hot: &HotTier, ops: &[Pending]) -> Result<ColdFacts> {
        let mut unsure: HashSet<Key> = HashSet::new();
        {
            let index = hot.index.borrow();
            let mut consider = |key: &Key| {
                if !index.contains(key) && self.bloom_may_contain(key) {
                    unsure.insert(key.clone());
                }
            };
            for op in ops {
                match op {
                    Pending::Put(items) => items.iter().for_each(|(key, _)| consider(key)),
                    Pending::Delete(keys) => keys.iter().for_each(&mut consider),
                    _ => {}
                }
            }
        }
        if unsure.is_empty() {
            return Ok(HashMap::new());
        }
        let keys: Vec<Key> = unsure.into_iter().collect();
        self.blocking(move |backend| {
            keys.into_iter()
                .map(|key| {
                    let found = crate::cold_index::locate(backend, &key)?;
                    Ok((key, found))
                })
                .collect()
        })
        .await
    }

    /// Replays the group's ops in order against the known state.
    fn plan(&self, hot: &HotTier, ops: Vec<Pending>, cold: &ColdFacts) -> Plan {
        let mut plan = Plan {
            sync: self.writes.durability() != Durability::None,
            ..Plan::default()
        };
        let index = hot.index.borrow();
        let mut state: HashMap<Key, Option<(u64, Tier)>> = HashMap::new();
        let prior = |state: &HashMap<Key, Option<(u64, Tier)>>, key: &Key| {
            if let Some(known) = state.get(key) {
                return *known;
            }
            if let Some(loc) = index.get(key) {
                return Some((u64::from(loc.len), Tier::Hot));
            }
            cold.get(key)
                .copied()
                .flatten()
                .map(|(len, _)| (len, Tier::Cold))
        };
        let epoch = self.delete_epoch.get();
        for op in ops {
            match op {
                Pending::Put(items) => {
                    for (key, data) in items {
                        if prior(&state, &key).is_some() {
                            continue;
                        }
                        plan.blocks_delta += 1;
                        plan.bytes_delta += data.len() as i64;
                        state.insert(key.clone(), Some((data.len() as u64, Tier::New)));
                        // The engine's block size limit is far below 4 GiB.
                        let len = data.len() as u32;
                        plan.records
                            .push((Effect::Put { key, len, hits: 0 }, Some(data)));
                    }
                }
                Pending::Delete(keys) => {
                    let mut flags = Vec::with_capacity(keys.len());
                    for key in keys {
                        let Some((len, tier)) = prior(&state, &key) else {
                            flags.push(false);
                            continue;
                        };
                        flags.push(true);
                        plan.blocks_delta -= 1;
                        plan.bytes_delta -= len as i64;
                        // A hot block may also have a cold copy (promoted blocks keep theirs).
                        if tier == Tier::Cold || self.bloom_may_contain(&key) {
                            plan.cold_deletes.push(key.clone());
                        }
                        state.insert(key.clone(), None);
                        plan.records.push((Effect::Tombstone { key }, None));
                    }
                    plan.deleted_flags.push(flags);
                }
                Pending::Flush => {
                    plan.sync = true;
                    plan.flush_cold = true;
                }
                Pending::Promote {
                    key,
                    data,
                    epoch: read_at,
                } => {
                    // Only a block still cold, with no delete committed since it was read.
                    let still_cold = state.get(&key).is_none() && !index.contains(&key);
                    if read_at == epoch && still_cold {
                        plan.promotions += 1;
                        let len = data.len() as u32;
                        state.insert(key.clone(), Some((u64::from(len), Tier::Hot)));
                        plan.records
                            .push((Effect::Put { key, len, hits: 0 }, Some(data)));
                    }
                }
                Pending::Migrate { .. }
                | Pending::Retire { .. }
                | Pending::Seal
                | Pending::Reclaim { .. }
                | Pending::DropPack { .. } => {}
            }
        }
        plan
    }

    /// Runs background work (readahead, hint files) that nobody waits for, inside the shard's
    /// gate, so shutdown waits for it instead of leaving a blocking call to answer an
    /// executor that is gone. (glommio only queues a blocking call once its future is
    /// polled, so the future is handed to a task rather than dropped.) A shard already
    /// shutting down skips it.
    fn background(&self, work: impl std::future::Future<Output = ()> + 'static) {
        if let Ok(task) = self.gate.spawn(work) {
            task.detach();
        }
    }

    /// Seals the active segment (see `Pending::Seal`).
    async fn seal(&self, hot: &HotTier) -> Result<()> {
        let Some(mut writer) = hot.writer.borrow_mut().take() else {
            return Ok(());
        };
        let result = writer.seal().await;
        *hot.writer.borrow_mut() = Some(writer);
        match result {
            Ok(Some(map)) => {
                let mut segments = hot.segments.borrow_mut();
                if let Some(sealed) = map.id().checked_sub(1).and_then(|id| segments.get(&id)) {
                    self.background(write_hint(&hot.dir, sealed.clone()));
                }
                segments.insert(map.id(), map);
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(e) => Err(self.append_error(e)),
        }
    }

    /// Appends records with the shard's writer, mapping failures to shard errors (a failed
    /// write or sync makes the shard read-only; a full disk only fails this group).
    pub(crate) async fn append(
        &self,
        hot: &HotTier,
        records: &[Record<'_>],
        sync: bool,
    ) -> Result<Appended> {
        let Some(mut writer) = hot.writer.borrow_mut().take() else {
            return Err(Error::Poisoned {
                shard: self.id,
                cause: PoisonCause::WriterStopped,
            });
        };
        let result = writer.append(records, sync).await;
        *hot.writer.borrow_mut() = Some(writer);
        match result {
            Ok(appended) => {
                bump(&hot.counters.disk_bytes, appended.disk_bytes);
                let mut segments = hot.segments.borrow_mut();
                for map in &appended.new_segments {
                    segments.insert(map.id(), map.clone());
                }
                if sync {
                    // Segments this append sealed are synced now: give each a hint file, in
                    // the background, so recovery need not read their payloads.
                    for map in &appended.new_segments {
                        if let Some(sealed) =
                            map.id().checked_sub(1).and_then(|id| segments.get(&id))
                        {
                            self.background(write_hint(&hot.dir, sealed.clone()));
                        }
                    }
                }
                let ranges: Vec<_> = if hot.config.prefetch_written {
                    prefetch_ranges(&appended.ranges)
                        .filter_map(|(id, start, end)| {
                            Some((segments.get(&id)?.clone(), start, end))
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                // A small append ends in the page it began in: nothing to read ahead, and no
                // trip to the blocking pool for it.
                if !ranges.is_empty() {
                    // The commit does not wait for the readahead.
                    let prefetch = crate::rt::spawn_blocking(move || {
                        for (map, start, end) in ranges {
                            // One call per MiB: a single large MADV_WILLNEED is cut short at
                            // the device's readahead limit.
                            let (start, end) = (start as usize, end as usize);
                            for at in (start..end).step_by(PREFETCH_STEP) {
                                map.prefetch(at, PREFETCH_STEP.min(end - at));
                            }
                        }
                    });
                    self.background(prefetch);
                }
                Ok(appended)
            }
            Err(e) => Err(self.append_error(e)),
        }
    }

    /// The shard error for an append failure; a failed write or sync poisons the shard.
    fn append_error(&self, err: AppendError) -> Error {
        let cause = match err {
            AppendError::NoSpace(path) => {
                return Error::NoSpace {
                    shard: self.id,
                    path,
                    detail: String::new(),
                };
            }
            AppendError::Invalid(reason) => {
                return Error::RecordRefused {
                    shard: self.id,
                    reason,
                };
            }
            AppendError::Write(e) => PoisonCause::SegmentWrite(std::sync::Arc::new(e)),
            AppendError::Sync(e) => PoisonCause::SegmentSync(std::sync::Arc::new(e)),
        };
        self.writes.poison(cause.clone());
        Error::Poisoned {
            shard: self.id,
            cause,
        }
    }

    /// Points the index at the appended records, feeds the bloom filter, and drops deleted
    /// blocks from the cache.
    fn apply(&self, hot: &HotTier, records: Vec<(Effect, Option<Bytes>)>, appended: &Appended) {
        let mut index = hot.index.borrow_mut();
        // The epoch moves before any deleted key leaves the cache (see `read_view`).
        if records
            .iter()
            .any(|(effect, _)| matches!(effect, Effect::Tombstone { .. }))
        {
            self.delete_epoch.advance();
        }
        for ((effect, _), &(segment, offset)) in records.into_iter().zip(&appended.locations) {
            match effect {
                Effect::Put { key, len, hits } => {
                    self.bloom.insert_hash(bloom_hash(&key));
                    index.insert(
                        &key,
                        Loc {
                            segment,
                            offset,
                            len,
                            // Keys are multihashes, far below u16::MAX bytes.
                            key_len: key.len() as u16,
                            hits,
                        },
                    );
                }
                Effect::Tombstone { key } => {
                    index.remove(&key);
                    self.cache.remove(&key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::prefetch_ranges;

    #[test]
    fn readahead_leaves_out_the_page_the_next_append_rewrites() {
        let cut: Vec<_> = prefetch_ranges(&[(3, 100, 20_000)]).collect();
        assert_eq!(cut, vec![(3, 100, 16_384)]);
        // A sealed segment is never written again: read all of it.
        let rolled: Vec<_> = prefetch_ranges(&[(3, 9_000, 40_000), (4, 0, 5_000)]).collect();
        assert_eq!(rolled, vec![(3, 9_000, 40_000), (4, 0, 4_096)]);
        // Within one page: nothing but that page, so nothing.
        assert_eq!(prefetch_ranges(&[(4, 5_000, 6_000)]).count(), 0);
        // Ending on a page boundary: the next append starts a new page.
        let aligned: Vec<_> = prefetch_ranges(&[(4, 5_000, 12_288)]).collect();
        assert_eq!(aligned, vec![(4, 5_000, 12_288)]);
    }
}
