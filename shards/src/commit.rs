//! A shard's write path: one writer, group commit.
//!
//! Puts, deletes and flushes are queued in arrival order. A single committer task drains the
//! queue in groups: each group is one backend batch (puts and deletes collapsed per key to the
//! group's final state) and, unless durability is `None`, one sync; only then are the bloom
//! filter, the cache and the counters updated and every waiter of the group acknowledged.
//!
//! ```text
//!   idle --write queued--> gathering --(Batch: max_ops queued or max_delay passed;
//!                                        Sync/None: at once)--> committing --queue empty--> idle
//!                                                                    |  queue not empty
//!                                                                    +--> gathering
//! ```
//!
//! A failed sync poisons the shard (read-only until reopened): after a failed fsync the kernel
//! may have dropped the dirty pages, so retrying and acknowledging could lose data silently.

use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use hashbrown::HashMap;
use ipfrs_core_types::Durability;
use ipfrs_core_types::key::{Key, bloom_hash};
use ipfrs_tiering::ColdBackend;

use crate::hot::group::commit_group_hot;
use crate::protocol::Reply;
use crate::queue::{Ack, Pending, WriteOp, acknowledge};
use crate::shard::{Shard, apply_delta, bump};
use crate::space;
use crate::{Error, PoisonCause, Result};

/// One write of a group as the blocking writer sees it. The flag says whether the bloom
/// filter may contain the key: when it cannot, the writer skips the backend lookup.
enum OpData {
    Put(Vec<(Key, Bytes, bool)>),
    Delete(Vec<(Key, bool)>),
    Flush,
}

/// What a committed group changed.
#[derive(Default)]
struct GroupOutcome {
    /// Per delete op, whether each key was present.
    deleted_flags: Vec<Vec<bool>>,
    /// Bloom hashes of every key put.
    put_hashes: Vec<u64>,
    /// Keys removed from the backend.
    removed: Vec<Key>,
    blocks_delta: i64,
    bytes_delta: i64,
}

enum GroupError {
    Write(ipfrs_tiering::Error),
    Sync(ipfrs_tiering::Error),
}

/// Applies a group to the backend in order, as one batch of final states, then syncs.
///
/// Puts of blocks already stored are not rewritten (content addressing: same key, same
/// bytes); deletes of absent keys change nothing.
fn apply_group(
    backend: &dyn ColdBackend,
    ops: Vec<OpData>,
    sync: bool,
) -> Result<GroupOutcome, GroupError> {
    // Key -> size after the ops seen so far (None: absent), and what to write.
    let mut state: HashMap<Key, Option<u64>> = HashMap::new();
    let mut writes: HashMap<Key, Option<Bytes>> = HashMap::new();
    let mut outcome = GroupOutcome::default();
    let prior = |state: &HashMap<Key, Option<u64>>, key: &Key, maybe: bool| match state.get(key) {
        Some(known) => Ok(*known),
        None if maybe => crate::cold_index::size(backend, key).map_err(GroupError::Write),
        None => Ok(None),
    };
    for op in ops {
        match op {
            OpData::Put(items) => {
                for (key, value, maybe) in items {
                    outcome.put_hashes.push(bloom_hash(&key));
                    if prior(&state, &key, maybe)?.is_none() {
                        outcome.blocks_delta += 1;
                        outcome.bytes_delta += value.len() as i64;
                        state.insert(key.clone(), Some(value.len() as u64));
                        writes.insert(key, Some(value));
                    }
                }
            }
            OpData::Delete(keys) => {
                let mut flags = Vec::with_capacity(keys.len());
                for (key, maybe) in keys {
                    let size = prior(&state, &key, maybe)?;
                    flags.push(size.is_some());
                    if let Some(size) = size {
                        outcome.blocks_delta -= 1;
                        outcome.bytes_delta -= size as i64;
                        state.insert(key.clone(), None);
                        writes.insert(key, None);
                    }
                }
                outcome.deleted_flags.push(flags);
            }
            OpData::Flush => {}
        }
    }
    let mut puts = Vec::new();
    for (key, value) in writes {
        match value {
            Some(value) => {
                let entry = crate::cold_index::inline(&key, &value);
                puts.push((key, entry));
            }
            None => outcome.removed.push(key),
        }
    }
    if !puts.is_empty() {
        backend.put_batch(&puts).map_err(GroupError::Write)?;
    }
    if !outcome.removed.is_empty() {
        backend
            .delete_batch(&outcome.removed)
            .map_err(GroupError::Write)?;
    }
    if sync {
        backend.flush().map_err(GroupError::Sync)?;
    }
    Ok(outcome)
}

pub(crate) fn enqueue(shard: &Rc<Shard>, op: WriteOp) {
    let q = &shard.writes;
    if let Some(cause) = q.poisoned() {
        let err = Error::Poisoned {
            shard: shard.id,
            cause,
        };
        op.ack.fail(err);
        return;
    }
    q.push(op);
    if q.claim_committer() && !shard.spawn(async move |shard| run_committer(shard).await) {
        // The shard is shutting down (its gate is closed): no committer will run, so
        // whatever is queued is answered now. A compaction still running when shutdown
        // began queues its next step here; left unanswered, it would hold the gate open
        // until close gives up.
        for op in q.strand() {
            op.ack.fail(Error::Stopped { shard: shard.id });
        }
    }
}

pub(crate) fn enqueue_put(shard: &Rc<Shard>, items: Vec<(Key, Bytes)>, reply: Reply<()>) {
    enqueue(
        shard,
        WriteOp {
            pending: Pending::Put(items),
            ack: Ack::Done(reply),
        },
    );
}

pub(crate) fn enqueue_delete(shard: &Rc<Shard>, keys: Vec<Key>, reply: Reply<Vec<bool>>) {
    enqueue(
        shard,
        WriteOp {
            pending: Pending::Delete(keys),
            ack: Ack::Deleted(reply),
        },
    );
}

pub(crate) fn enqueue_flush(shard: &Rc<Shard>, reply: Reply<()>) {
    enqueue(
        shard,
        WriteOp {
            pending: Pending::Flush,
            ack: Ack::Done(reply),
        },
    );
}

async fn run_committer(shard: Rc<Shard>) {
    let q = &shard.writes;
    loop {
        if q.finish_if_empty() {
            if q.lend_after.get() {
                shard.lend_lane();
            }
            return;
        }
        if let Some(wait) = q.gather_for() {
            q.stage.set("gathering a batch");
            futures_lite::future::or(crate::rt::sleep(wait), q.filled()).await;
            continue;
        }
        let group = q.take_group();
        // Writers that queue together contend: a lent writer would make them wait for a
        // caller's write and sync before each group (16 writers: 20.0k puts/s lent against
        // 25.8k without). It is lent again after a group of one.
        let writes = group
            .iter()
            .filter(|op| matches!(op.pending, Pending::Put(_) | Pending::Delete(_)))
            .count();
        if writes > 0 {
            q.lend_after.set(writes == 1);
        }
        // Before anything reads the index or the writer: the lane's puts are in both.
        q.stage.set("taking the writer back from callers");
        shard.reclaim_lane(false);
        q.stage.set("admitting a group (space check)");
        // The claim on the room for a new segment is held until the group is committed.
        let (group, _claim) = admit(&shard, group).await;
        // Writes queued before a write or sync failed must not reach the disk after it
        // (only this task poisons the shard, so nothing changes between here and the commit).
        let group = refuse_if_poisoned(&shard, group);
        if !group.is_empty() {
            q.stage.set("committing a group");
            match &shard.hot {
                Some(hot) => commit_group_hot(&shard, hot, group).await,
                None => commit_group(&shard, group).await,
            }
        }
        if !q.space.whole() {
            q.stage.set("taking the space reserve back");
            // Space may have come back (a compaction step removed a segment): the
            // reserve is taken back before the next group can use it.
            let space = Arc::clone(&q.space);
            crate::rt::spawn_blocking(move || space.retake()).await;
        }
    }
}

/// Applies the space policy to a group before it is committed (see [`space`]): puts are
/// refused with `NoSpace` while the reserve is not whole, when they would start a new hot
/// segment that leaves less than [`space::headroom`] free, and, without a hot tier, when
/// the cold backend has no room for them; deletes may release the reserve, and are refused
/// only when even that leaves no room for their records. Returns the ops to commit, and
/// the claim on a new segment's room, to hold until the group is committed.
async fn admit(shard: &Shard, group: Vec<WriteOp>) -> (Vec<WriteOp>, Option<space::Claim>) {
    use ipfrs_tiering::segment::encoded_len;
    let align = crate::hot::writer::RECORD_ALIGN;
    let mut put_bytes = 0u64;
    // The group's records in the active segment, its mark record included (a few dozen
    // bytes: one sector is an upper bound).
    let mut record_bytes = crate::hot::writer::DMA_ALIGN;
    let mut deletes = false;
    for op in &group {
        match &op.pending {
            Pending::Put(items) => {
                for (key, value) in items {
                    put_bytes += value.len() as u64;
                    record_bytes += encoded_len(key.len(), value.len(), align) as u64;
                }
            }
            Pending::Promote { key, data, .. } => {
                put_bytes += data.len() as u64;
                record_bytes += encoded_len(key.len(), data.len(), align) as u64;
            }
            Pending::Delete(keys) => {
                deletes = true;
                record_bytes += keys
                    .iter()
                    .map(|key| encoded_len(key.len(), 0, align) as u64)
                    .sum::<u64>();
            }
            _ => {}
        }
    }
    if put_bytes == 0 && !deletes {
        return (group, None);
    }
    let space = Arc::clone(&shard.writes.space);
    // A group that does not fit in the active segment starts a new one: a delete may
    // release the reserve for it, a put must leave the headroom free after it (root could
    // allocate it from ext4's root-reserved blocks, past every check, and leave no room
    // that compaction can see).
    let segment_bytes = shard.hot.as_ref().map_or(0, |hot| hot.config.segment_bytes);
    let rolls_over = shard.hot.as_ref().is_some_and(|hot| {
        hot.writer
            .borrow()
            .as_ref()
            .is_some_and(|w| record_bytes > w.room())
    });
    let roll_over = if rolls_over { segment_bytes } else { 0 };
    let headroom = space::headroom(segment_bytes);
    let cold_only = shard.hot.is_none();
    // The common case needs no system call: puts into the active segment of a shard whose
    // reserve is whole, and no delete. It is decided here, without a trip to the blocking
    // pool (a lone writer's put waited for one on every call).
    if !cold_only && !deletes && !rolls_over && !space.full() && space.whole() {
        return (group, None);
    }
    let (puts_fit, deletes_fit, claim) = crate::rt::spawn_blocking(move || {
        let mut claim = None;
        let puts_fit = put_bytes == 0
            || ((space.whole() || {
                space.retake();
                space.whole()
            }) && (!cold_only || space.ensure(space::cold_need(put_bytes), 0, false).is_ok())
                && (!(rolls_over || space.full()) || {
                    claim = space.ensure(segment_bytes, headroom, false).ok();
                    space.set_full(claim.is_none());
                    claim.is_some()
                }));
        let deletes_fit = !deletes
            || match space.ensure(roll_over + space::COLD_SLACK, 0, true) {
                Ok(_) => true,
                Err(free) => free >= space::DELETE_SLACK,
            };
        (puts_fit, deletes_fit, claim)
    })
    .await;
    let no_space = || Error::NoSpace {
        shard: shard.id,
        path: shard.writes.space.dir().to_path_buf(),
        detail: String::new(),
    };
    let mut admitted = Vec::with_capacity(group.len());
    for op in group {
        let refused = match &op.pending {
            Pending::Put(_) | Pending::Promote { .. } => !puts_fit,
            Pending::Delete(_) => !deletes_fit,
            _ => false,
        };
        if refused {
            op.ack.fail(no_space());
        } else {
            admitted.push(op);
        }
    }
    (admitted, claim)
}

/// The group, or nothing once the shard refuses writes: then every op is answered with the
/// reason.
fn refuse_if_poisoned(shard: &Shard, group: Vec<WriteOp>) -> Vec<WriteOp> {
    let Some(cause) = shard.writes.poisoned() else {
        return group;
    };
    for op in group {
        op.ack.fail(Error::Poisoned {
            shard: shard.id,
            cause: cause.clone(),
        });
    }
    Vec::new()
}

async fn commit_group(shard: &Shard, group: Vec<WriteOp>) {
    let mut data = Vec::with_capacity(group.len());
    let mut replies = Vec::with_capacity(group.len());
    let mut sync = shard.writes.durability() != Durability::None;
    for op in group {
        data.push(match op.pending {
            Pending::Put(items) => OpData::Put(
                items
                    .into_iter()
                    .map(|(k, v)| {
                        let maybe = shard.bloom_may_contain(&k);
                        (k, v, maybe)
                    })
                    .collect(),
            ),
            Pending::Delete(keys) => OpData::Delete(
                keys.into_iter()
                    .map(|k| {
                        let maybe = shard.bloom_may_contain(&k);
                        (k, maybe)
                    })
                    .collect(),
            ),
            Pending::Flush => {
                sync = true;
                OpData::Flush
            }
            // Only the hot tier queues these; without one there is nothing to do.
            Pending::Promote { .. }
            | Pending::Migrate { .. }
            | Pending::Retire { .. }
            | Pending::Seal
            | Pending::Reclaim { .. }
            | Pending::DropPack { .. }
            | Pending::Checkpoint => OpData::Flush,
        });
        replies.push(op.ack);
    }
    let ops = replies.len() as u64;
    let backend = std::sync::Arc::clone(&shard.backend);
    let result = crate::rt::spawn_blocking(move || apply_group(&*backend, data, sync)).await;
    match result {
        Ok(outcome) => {
            for hash in &outcome.put_hashes {
                shard.bloom.insert_hash(*hash);
            }
            if !outcome.removed.is_empty() {
                // The epoch first: a reader on another thread that filled the cache with
                // a block read before the delete either sees the new epoch and drops it,
                // or filled it before this removal (see `read_view`).
                shard.delete_epoch.advance();
                for key in &outcome.removed {
                    shard.cache.remove(key);
                }
            }
            apply_delta(&shard.counters.blocks, outcome.blocks_delta);
            apply_delta(&shard.counters.bytes, outcome.bytes_delta);
            bump(&shard.counters.write_groups, 1);
            bump(&shard.counters.write_ops, ops);
            acknowledge(replies, outcome.deleted_flags);
        }
        Err(err) => {
            let err = match err {
                GroupError::Write(e) => shard.backend_error(e),
                GroupError::Sync(e) => shard.poisoned_by(PoisonCause::BackendSync(Arc::new(e))),
            };
            for ack in replies {
                ack.fail(err.clone());
            }
        }
    }
}
