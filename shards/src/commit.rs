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

pub(crate) mod space;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hashbrown::HashMap;
use ipfrs_core_types::Durability;
use ipfrs_core_types::key::{Key, bloom_hash};
use ipfrs_tiering::ColdBackend;

use crate::protocol::Reply;
use crate::shard::{Shard, bump};
use crate::{Error, PoisonCause, Result};

/// A queued write.
pub(crate) enum Pending {
    Put(Vec<(Key, Bytes)>),
    Delete(Vec<Key>),
    Flush,
    /// Hot tier: copy a cold block back into the hot tier, unless a delete committed since it
    /// was read (`epoch` is the shard's delete epoch at the read).
    Promote {
        key: Key,
        data: Bytes,
        epoch: u64,
    },
    /// Hot tier compaction: move these records (key, offset) of `segment` out of it, if the
    /// index still points at them. Runs as a group of its own. `mode`: whose compaction, and
    /// where the records go (see `hot::compaction::Mode`).
    Migrate {
        segment: u32,
        records: Vec<(Key, u32)>,
        mode: crate::hot::compaction::Mode,
    },
    /// Hot tier compaction: remove `segment`, now empty of live records. Runs alone.
    Retire {
        segment: u32,
    },
    /// Hot tier: seal the active segment and start a new one, so that an explicit compaction
    /// reaches every record. Runs alone.
    Seal,
    /// Pack reclamation: of these records (key, offset) of `pack`, rewrite into the hot tier
    /// those whose index entry still points at them, and drop those entries. Runs alone.
    Reclaim {
        pack: u32,
        records: Vec<(Key, u32)>,
    },
    /// Pack reclamation: remove `pack`, which no index entry points into any more. Runs alone.
    DropPack {
        pack: u32,
    },
}

impl Pending {
    /// What a step does, for the shutdown report.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Pending::Put(_) => "a put",
            Pending::Delete(_) => "a delete",
            Pending::Flush => "a flush",
            Pending::Promote { .. } => "a promotion",
            Pending::Migrate { .. } => "a compaction step",
            Pending::Retire { .. } => "retiring a compacted segment",
            Pending::Seal => "sealing the active segment",
            Pending::Reclaim { .. } => "a pack reclamation step",
            Pending::DropPack { .. } => "removing a reclaimed pack",
        }
    }

    /// Whether this op runs as a group of its own (compaction steps).
    pub(crate) fn runs_alone(&self) -> bool {
        matches!(
            self,
            Pending::Migrate { .. }
                | Pending::Retire { .. }
                | Pending::Seal
                | Pending::Reclaim { .. }
                | Pending::DropPack { .. }
        )
    }
}

/// Whom to acknowledge for a queued write.
pub(crate) enum Ack {
    Done(Reply<()>),
    Deleted(Reply<Vec<bool>>),
    /// Nobody waits (promotions).
    Nobody,
}

/// Answers every waiter of a committed group: `flags` holds, in order, whether each key of
/// each delete op was present.
pub(crate) fn acknowledge(acks: Vec<Ack>, flags: Vec<Vec<bool>>) {
    let mut flags = flags.into_iter();
    for ack in acks {
        match ack {
            Ack::Done(reply) => {
                let _ = reply.send(Ok(()));
            }
            Ack::Deleted(reply) => {
                let _ = reply.send(Ok(flags.next().unwrap_or_default()));
            }
            Ack::Nobody => {}
        }
    }
}

impl Ack {
    pub(crate) fn fail(self, err: Error) {
        match self {
            Ack::Done(reply) => {
                let _ = reply.send(Err(err));
            }
            Ack::Deleted(reply) => {
                let _ = reply.send(Err(err));
            }
            Ack::Nobody => {}
        }
    }
}

pub(crate) struct WriteOp {
    pub(crate) pending: Pending,
    pub(crate) ack: Ack,
}

impl WriteOp {
    fn weight(&self) -> usize {
        match &self.pending {
            Pending::Put(items) => items.len(),
            Pending::Delete(keys) => keys.len(),
            Pending::Migrate { records, .. } | Pending::Reclaim { records, .. } => records.len(),
            Pending::Flush
            | Pending::Promote { .. }
            | Pending::Retire { .. }
            | Pending::Seal
            | Pending::DropPack { .. } => 1,
        }
    }
}

/// The write queue of one shard.
pub(crate) struct WriteQueue {
    durability: Durability,
    pending: RefCell<VecDeque<WriteOp>>,
    /// Blocks and keys queued (the unit of `Durability::Batch::max_ops`).
    queued: Cell<usize>,
    /// When the oldest queued write arrived.
    oldest: Cell<Option<Instant>>,
    committer_running: Cell<bool>,
    /// What the committer is waiting on, named for the shutdown report should it never
    /// finish (a hang there is otherwise invisible: the executor just parks).
    pub(crate) stage: Cell<&'static str>,
    /// Set after a failed sync; every later write is refused with this reason.
    poisoned: RefCell<Option<PoisonCause>>,
    /// Wakes a gathering committer early once `max_ops` are queued.
    wake_tx: flume::Sender<()>,
    wake_rx: flume::Receiver<()>,
    /// The shard's disk space reserve (see [`space`]).
    pub(crate) space: Arc<space::Space>,
}

impl WriteQueue {
    pub(crate) fn new(durability: Durability, space: space::Space) -> WriteQueue {
        let (wake_tx, wake_rx) = flume::bounded(1);
        WriteQueue {
            space: Arc::new(space),
            durability,
            pending: RefCell::default(),
            queued: Cell::new(0),
            oldest: Cell::new(None),
            committer_running: Cell::new(false),
            stage: Cell::new("idle"),
            poisoned: RefCell::new(None),
            wake_tx,
            wake_rx,
        }
    }

    /// Why the shard refuses writes, if it does.
    pub(crate) fn poisoned(&self) -> Option<PoisonCause> {
        self.poisoned.borrow().clone()
    }

    /// Makes the shard refuse writes from now on (the first cause is kept).
    pub(crate) fn poison(&self, cause: PoisonCause) {
        self.poisoned.borrow_mut().get_or_insert(cause);
    }

    /// The durability mode.
    pub(crate) fn durability(&self) -> Durability {
        self.durability
    }

    /// Takes the next group: every queued op up to the first that runs alone, or that op by
    /// itself if it is first.
    fn take_group(&self) -> Vec<WriteOp> {
        let mut pending = self.pending.borrow_mut();
        let alone = pending.front().is_some_and(|op| op.pending.runs_alone());
        let take = if alone {
            1
        } else {
            pending
                .iter()
                .position(|op| op.pending.runs_alone())
                .unwrap_or(pending.len())
        };
        let group: Vec<WriteOp> = pending.drain(..take).collect();
        let weight: usize = group.iter().map(WriteOp::weight).sum();
        self.queued.set(self.queued.get().saturating_sub(weight));
        if pending.is_empty() {
            self.oldest.set(None);
        }
        group
    }

    /// How long the committer should still gather before writing, if at all.
    fn gather_for(&self) -> Option<Duration> {
        let Durability::Batch { max_delay, max_ops } = self.durability else {
            return None;
        };
        if self.queued.get() >= max_ops {
            return None;
        }
        let oldest = self.oldest.get()?;
        max_delay
            .checked_sub(oldest.elapsed())
            .filter(|d| !d.is_zero())
    }
}

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
            Some(value) => puts.push((key, crate::cold_index::inline(&value))),
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

pub(crate) fn apply_delta(cell: &Cell<u64>, delta: i64) {
    cell.set(cell.get().saturating_add_signed(delta));
}

impl Shard {
    pub(crate) fn enqueue(self: &Rc<Self>, op: WriteOp) {
        let q = &self.writes;
        if let Some(cause) = q.poisoned() {
            let err = Error::Poisoned {
                shard: self.id,
                cause,
            };
            op.ack.fail(err);
            return;
        }
        q.queued.set(q.queued.get() + op.weight());
        if q.oldest.get().is_none() {
            q.oldest.set(Some(Instant::now()));
        }
        q.pending.borrow_mut().push_back(op);
        if let Durability::Batch { max_ops, .. } = q.durability
            && q.queued.get() >= max_ops
        {
            // Full channel means a wake-up is already pending: nothing to add.
            let _ = q.wake_tx.try_send(());
        }
        if !q.committer_running.replace(true)
            && !self.spawn(async move |shard| shard.run_committer().await)
        {
            // The shard is shutting down (its gate is closed): no committer will run, so
            // whatever is queued is answered now. A compaction still running when shutdown
            // began queues its next step here; left unanswered, it would hold the gate open
            // until close gives up.
            q.committer_running.set(false);
            let stranded: Vec<WriteOp> = q.pending.borrow_mut().drain(..).collect();
            q.queued.set(0);
            q.oldest.set(None);
            for op in stranded {
                op.ack.fail(Error::Stopped { shard: self.id });
            }
        }
    }

    pub(crate) fn enqueue_put(self: &Rc<Self>, items: Vec<(Key, Bytes)>, reply: Reply<()>) {
        self.enqueue(WriteOp {
            pending: Pending::Put(items),
            ack: Ack::Done(reply),
        });
    }

    pub(crate) fn enqueue_delete(self: &Rc<Self>, keys: Vec<Key>, reply: Reply<Vec<bool>>) {
        self.enqueue(WriteOp {
            pending: Pending::Delete(keys),
            ack: Ack::Deleted(reply),
        });
    }

    pub(crate) fn enqueue_flush(self: &Rc<Self>, reply: Reply<()>) {
        self.enqueue(WriteOp {
            pending: Pending::Flush,
            ack: Ack::Done(reply),
        });
    }

    async fn run_committer(self: Rc<Self>) {
        let q = &self.writes;
        loop {
            if q.pending.borrow().is_empty() {
                q.committer_running.set(false);
                q.stage.set("idle");
                return;
            }
            if let Some(wait) = q.gather_for() {
                q.stage.set("gathering a batch");
                futures_lite::future::or(crate::rt::sleep(wait), async {
                    let _ = q.wake_rx.recv_async().await;
                })
                .await;
                continue;
            }
            let group = q.take_group();
            q.stage.set("admitting a group (space check)");
            // The claim on the room for a new segment is held until the group is committed.
            let (group, _claim) = self.admit(group).await;
            if !group.is_empty() {
                q.stage.set("committing a group");
                match &self.hot {
                    Some(hot) => self.commit_group_hot(hot, group).await,
                    None => self.commit_group(group).await,
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
    async fn admit(&self, group: Vec<WriteOp>) -> (Vec<WriteOp>, Option<space::Claim>) {
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
        let space = Arc::clone(&self.writes.space);
        // A group that does not fit in the active segment starts a new one: a delete may
        // release the reserve for it, a put must leave the headroom free after it (root could
        // allocate it from ext4's root-reserved blocks, past every check, and leave no room
        // that compaction can see).
        let segment_bytes = self.hot.as_ref().map_or(0, |hot| hot.config.segment_bytes);
        let rolls_over = self.hot.as_ref().is_some_and(|hot| {
            hot.writer
                .borrow()
                .as_ref()
                .is_some_and(|w| record_bytes > w.room())
        });
        let roll_over = if rolls_over { segment_bytes } else { 0 };
        let headroom = space::headroom(segment_bytes);
        let cold_only = self.hot.is_none();
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
                }) && (!cold_only
                    || space.ensure(space::cold_need(put_bytes), 0, false).is_ok())
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
            shard: self.id,
            path: self.writes.space.dir().to_path_buf(),
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

    async fn commit_group(&self, group: Vec<WriteOp>) {
        // Writes queued before a sync failed must not reach the backend after it.
        if let Some(cause) = self.writes.poisoned() {
            for op in group {
                op.ack.fail(Error::Poisoned {
                    shard: self.id,
                    cause: cause.clone(),
                });
            }
            return;
        }
        let mut data = Vec::with_capacity(group.len());
        let mut replies = Vec::with_capacity(group.len());
        let mut sync = self.writes.durability != Durability::None;
        for op in group {
            data.push(match op.pending {
                Pending::Put(items) => OpData::Put(
                    items
                        .into_iter()
                        .map(|(k, v)| {
                            let maybe = self.bloom_may_contain(&k);
                            (k, v, maybe)
                        })
                        .collect(),
                ),
                Pending::Delete(keys) => OpData::Delete(
                    keys.into_iter()
                        .map(|k| {
                            let maybe = self.bloom_may_contain(&k);
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
                | Pending::DropPack { .. } => OpData::Flush,
            });
            replies.push(op.ack);
        }
        let ops = replies.len() as u64;
        let backend = std::sync::Arc::clone(&self.backend);
        let result = crate::rt::spawn_blocking(move || apply_group(&*backend, data, sync)).await;
        match result {
            Ok(outcome) => {
                for hash in &outcome.put_hashes {
                    self.bloom.insert_hash(*hash);
                }
                if !outcome.removed.is_empty() {
                    // The epoch first: a reader on another thread that filled the cache with
                    // a block read before the delete either sees the new epoch and drops it,
                    // or filled it before this removal (see `read_view`).
                    self.delete_epoch.advance();
                    for key in &outcome.removed {
                        self.cache.remove(key);
                    }
                }
                apply_delta(&self.counters.blocks, outcome.blocks_delta);
                apply_delta(&self.counters.bytes, outcome.bytes_delta);
                bump(&self.counters.write_groups, 1);
                bump(&self.counters.write_ops, ops);
                acknowledge(replies, outcome.deleted_flags);
            }
            Err(err) => {
                let err = match err {
                    GroupError::Write(e) => self.backend_error(e),
                    GroupError::Sync(e) => {
                        let cause = PoisonCause::BackendSync(Arc::new(e));
                        self.writes.poison(cause.clone());
                        Error::Poisoned {
                            shard: self.id,
                            cause,
                        }
                    }
                };
                for ack in replies {
                    ack.fail(err.clone());
                }
            }
        }
    }
}
