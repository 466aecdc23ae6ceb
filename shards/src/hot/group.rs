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
use super::append::{append, seal};
use super::steps::{drop_pack, migrate, reclaim, retire};
use super::writer::{Appended, Record};
use crate::queue::{Ack, Pending, WriteOp, acknowledge};
use crate::shard::{Shard, apply_delta, bump};
use crate::{PoisonCause, Result};

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

/// Commits one group into the hot tier (see the module documentation).
pub(crate) async fn commit_group_hot(shard: &Rc<Shard>, hot: &HotTier, group: Vec<WriteOp>) {
    if let [
        WriteOp {
            pending:
                Pending::Migrate { .. }
                | Pending::Retire { .. }
                | Pending::Seal
                | Pending::Reclaim { .. }
                | Pending::DropPack { .. }
                | Pending::Checkpoint,
            ..
        },
    ] = group.as_slice()
    {
        let Some(op) = group.into_iter().next() else {
            return;
        };
        shard.writes.stage.set(op.pending.name());
        // A compaction or reclamation step moves blocks between the tiers (or removes a file
        // the checkpoint's hot recovery would have read): the checkpoint goes first.
        let moves = !matches!(op.pending, Pending::Seal | Pending::Checkpoint);
        if moves && let Err(e) = shard.checkpoint.invalidate_from(shard).await {
            op.ack.fail(e);
            return;
        }
        let result = match op.pending {
            Pending::Migrate {
                segment,
                records,
                mode,
            } => migrate(shard, hot, segment, records, mode).await,
            Pending::Retire { segment } => retire(shard, hot, segment).await,
            Pending::Seal => seal(shard, hot).await,
            Pending::Reclaim { pack, records } => reclaim(shard, hot, pack, records).await,
            Pending::DropPack { pack } => drop_pack(shard, hot, pack).await,
            Pending::Checkpoint => crate::checkpoint::take(shard, hot).await,
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
    let result = commit_hot(shard, hot, pendings).await;
    match result {
        Ok(flags) => {
            bump(&shard.counters.write_groups, 1);
            bump(&shard.counters.write_ops, ops);
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
async fn commit_hot(shard: &Shard, hot: &HotTier, ops: Vec<Pending>) -> Result<Vec<Vec<bool>>> {
    let cold = resolve_cold(shard, hot, &ops).await?;
    let plan = plan(shard, hot, ops, &cold);
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
    // A tombstone of a block the backend may hold, or a promotion, makes a checkpoint's
    // counters wrong once durable, before the backend changes: it goes first.
    if !plan.cold_deletes.is_empty() || plan.promotions > 0 {
        shard.checkpoint.invalidate_from(shard).await?;
    }
    let appended = append(shard, hot, &records, plan.sync).await?;
    drop(records);
    if !plan.cold_deletes.is_empty() || plan.flush_cold {
        // The cold index is the only record of where in a pack a deleted block lay: the
        // bucket's manifest must be able to list it dead even if the process dies before
        // the next generation.
        if let Some(remote) = &hot.remote {
            let dead: Vec<PackLoc> = plan
                .cold_deletes
                .iter()
                .filter_map(|key| match cold.get(key) {
                    Some(Some((_, Some(loc)))) => Some(*loc),
                    _ => None,
                })
                .collect();
            if let Err(e) = remote.note_dead(&dead) {
                // The tombstones are durable and the cold copies untouched: a reopen notes
                // the records again and redoes the deletes.
                return Err(shard.poisoned_by(PoisonCause::DeadRecords(std::sync::Arc::new(e))));
            }
        }
        let keys = plan.cold_deletes.clone();
        let sync = plan.sync;
        // The backend's own error is kept (as the poison's cause), not mapped.
        let deleted = shard
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
            return Err(shard.poisoned_by(PoisonCause::ColdDelete(std::sync::Arc::new(e))));
        }
        // Crash tests: dies once the cold index forgot the deleted blocks' locations.
        if !plan.cold_deletes.is_empty() {
            fail::fail_point!("remote-after-cold-delete", |_| std::process::abort());
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
        if let Some(remote) = &hot.remote {
            remote.wake();
        }
    }
    apply(shard, hot, plan.records, &appended);
    apply_delta(&shard.counters.blocks, plan.blocks_delta);
    apply_delta(&shard.counters.bytes, plan.bytes_delta);
    bump(&hot.counters.promotions, plan.promotions);
    Ok(plan.deleted_flags)
}

/// Sizes in the cold backend (and pack locations) of the keys the group touches that are
/// not hot and that the bloom filter cannot rule out: one blocking call for the whole
/// group.
async fn resolve_cold(shard: &Shard, hot: &HotTier, ops: &[Pending]) -> Result<ColdFacts> {
    let mut unsure: HashSet<Key> = HashSet::new();
    {
        let index = hot.index.borrow();
        let mut consider = |key: &Key| {
            if !index.contains(key) && shard.bloom_may_contain(key) {
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
    shard
        .blocking(move |backend| {
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
fn plan(shard: &Shard, hot: &HotTier, ops: Vec<Pending>, cold: &ColdFacts) -> Plan {
    let mut plan = Plan {
        sync: shard.writes.durability() != Durability::None,
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
    let epoch = shard.delete_epoch.get();
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
                    if tier == Tier::Cold || shard.bloom_may_contain(&key) {
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
            | Pending::DropPack { .. }
            | Pending::Checkpoint => {}
        }
    }
    plan
}

/// Points the index at the appended records, feeds the bloom filter, and drops deleted
/// blocks from the cache.
fn apply(shard: &Shard, hot: &HotTier, records: Vec<(Effect, Option<Bytes>)>, appended: &Appended) {
    let mut index = hot.index.borrow_mut();
    // The epoch moves before any deleted key leaves the cache (see `read_view`).
    if records
        .iter()
        .any(|(effect, _)| matches!(effect, Effect::Tombstone { .. }))
    {
        shard.delete_epoch.advance();
    }
    for ((effect, _), &(segment, offset)) in records.into_iter().zip(&appended.locations) {
        match effect {
            Effect::Put { key, len, hits } => {
                shard.bloom.insert_hash(bloom_hash(&key));
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
                shard.cache.remove(&key);
            }
        }
    }
}
