//! A shard's write queue: puts, deletes, flushes and the steps of compaction and
//! reclamation, in arrival order, each with whom to answer. The committer (`commit`) is its
//! only consumer; it takes them in groups.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ipfrs_core_types::Durability;
use ipfrs_core_types::key::Key;

use crate::protocol::Reply;
use crate::space;
use crate::{Error, PoisonCause};

/// Whose compaction a step belongs to, and where its records go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Background compaction (keeping the budget): records go to the cold backend, which must
    /// leave the headroom free after them; the reserve is never used.
    Background,
    /// An explicit compaction (`compact`, `repo gc`): records go to the cold backend, and the
    /// shard's reserve may be released for them.
    Freeing,
    /// An explicit compaction on a disk too short for the cold copy: the live records are
    /// rewritten into the hot tier instead (a segment cleaner: the live parts of segments
    /// share a new one), which needs at most a new segment, paid by the reserve if need be.
    /// The cold backend may store a block in several times its bytes for a while (sled 0.34
    /// keeps a replaced blob until its log segment closes), so on a short disk moving records
    /// there can take more than removing their segment gives back.
    Cleaning,
}

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
    /// where the records go (see [`Mode`]).
    Migrate {
        segment: u32,
        records: Vec<(Key, u32)>,
        mode: Mode,
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
    /// Write a checkpoint of the open state (see `crate::checkpoint`). Runs alone.
    Checkpoint,
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
            Pending::Checkpoint => "writing a checkpoint",
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
                | Pending::Checkpoint
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
    pub(crate) fn weight(&self) -> usize {
        match &self.pending {
            Pending::Put(items) => items.len(),
            Pending::Delete(keys) => keys.len(),
            Pending::Migrate { records, .. } | Pending::Reclaim { records, .. } => records.len(),
            Pending::Flush
            | Pending::Promote { .. }
            | Pending::Retire { .. }
            | Pending::Seal
            | Pending::DropPack { .. }
            | Pending::Checkpoint => 1,
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
    /// Whether the writer is lent to callers' threads when the committer goes idle: not
    /// after a group of several writes (see `commit::run_committer`).
    pub(crate) lend_after: Cell<bool>,
    /// Set after a failed sync; every later write is refused with this reason.
    poisoned: RefCell<Option<PoisonCause>>,
    /// Wakes a gathering committer early once `max_ops` are queued.
    wake_tx: flume::Sender<()>,
    wake_rx: flume::Receiver<()>,
    /// The shard's disk space reserve (see [`crate::space`]).
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
            lend_after: Cell::new(true),
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

    /// Queues `op` behind every earlier one; wakes a gathering committer once the batch is
    /// full (a full wake channel means a wake-up is already pending).
    pub(crate) fn push(&self, op: WriteOp) {
        self.queued.set(self.queued.get() + op.weight());
        if self.oldest.get().is_none() {
            self.oldest.set(Some(Instant::now()));
        }
        self.pending.borrow_mut().push_back(op);
        if let Durability::Batch { max_ops, .. } = self.durability
            && self.queued.get() >= max_ops
        {
            let _ = self.wake_tx.try_send(());
        }
    }

    /// True if no committer runs and the caller is to start one (it then runs until
    /// [`Self::finish_if_empty`] says it may stop).
    pub(crate) fn claim_committer(&self) -> bool {
        !self.committer_running.replace(true)
    }

    /// The committer's check before each group: with nothing queued it stops, marked idle.
    pub(crate) fn finish_if_empty(&self) -> bool {
        if self.pending.borrow().is_empty() {
            self.committer_running.set(false);
            self.stage.set("idle");
            true
        } else {
            false
        }
    }

    /// Takes every queued op when no committer can run (the shard is shutting down).
    pub(crate) fn strand(&self) -> Vec<WriteOp> {
        self.committer_running.set(false);
        self.queued.set(0);
        self.oldest.set(None);
        self.pending.borrow_mut().drain(..).collect()
    }

    /// Waits until the batch is full ([`Self::push`] wakes it).
    pub(crate) async fn filled(&self) {
        let _ = self.wake_rx.recv_async().await;
    }

    /// Takes the next group: every queued op up to the first that runs alone, or that op by
    /// itself if it is first.
    pub(crate) fn take_group(&self) -> Vec<WriteOp> {
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
    pub(crate) fn gather_for(&self) -> Option<Duration> {
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
