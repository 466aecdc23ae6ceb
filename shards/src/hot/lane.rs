//! Puts written on the caller's own thread while the shard's writer is idle: the caller as
//! the leader of a group of one.
//!
//! ```text
//!   shard's committer idle --lend--> Lane { the active segment's append state }
//!   caller's put: try_lock --busy or not lent--> the shard's queue (group commit, as before)
//!                 --lent--> bloom says absent? fits the active segment? reserve whole?
//!                 --yes--> mark + record: one pwrite, one fdatasync, on the caller's thread
//!                 --> index, bloom filter --> acknowledged
//!   shard's committer, before its next group: lock --> takes the state back (and the counts)
//! ```
//! A lone durable put paid two thread hand-offs beside its write and sync: the message to the
//! shard's executor and the reply back (about 150 us of a 255 us put on this machine's VM).
//! Written here, it pays neither.
//!
//! Why the order of writes still holds: the state is lent only while no group is being
//! committed, and the committer takes it back (waiting for a put in progress) before it
//! resolves, plans or appends anything. So a lent put and a group never interleave, and every
//! group plans against an index that already holds every put made in the lane. A put whose
//! key the bloom filter cannot rule out goes to the shard: only the shard may look in the cold
//! backend, and a put of a stored block must not store it twice.
//!
//! Under `Durability::Sync` and `Batch` (whose lone writer otherwise waits out the gathering
//! window), not `None`: the lane's put is durable when it returns, so nothing in the lane is
//! ever unsynced (the writer's own invariant when it takes the state back). A failed
//! write or sync is handed to the shard, which refuses writes from then on, as it does after
//! its own failures.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use fastbloom::AtomicBloomFilter;
use ipfrs_core_types::key::bloom_hash;
use ipfrs_tiering::segment::recover::{MARK_KEY, Position, encode_mark};
use ipfrs_tiering::segment::{HeaderDigest, Loc, Payload, encode_at, encode_header, encoded_len};

use super::power_cut;
use super::writer::{self, DIRECT_MAX, DMA_ALIGN, RECORD_ALIGN, Writer, align_down};
use crate::read_view::{HotView, Quick};
use crate::space::Space;
use crate::{Error, PoisonCause, Result};

/// The active segment's append state while the writer lends it (see [`Writer::lend`]).
pub(crate) struct Lent {
    /// The active segment's descriptor: the writer keeps the file open while it lends.
    pub(crate) fd: std::os::fd::RawFd,
    /// Its path (the power-cut simulation's journal names files by path).
    pub(crate) path: PathBuf,
    pub(crate) segment_bytes: u64,
    pub(crate) active: u32,
    /// Where the next record goes; everything before it is durable.
    pub(crate) pos: u64,
    /// The bytes between `align_down(pos)` and `pos`, rewritten by the next append.
    pub(crate) tail: Vec<u8>,
    pub(crate) seq: u64,
    pub(crate) headers: Option<HeaderDigest>,
}

/// What the shard takes from the lane: the counts since it last took them, and a failure
/// to poison itself with.
pub(crate) type Taken = (LaneCounts, Option<PoisonCause>);

/// What lent puts changed, for the shard's counters.
#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LaneCounts {
    /// Blocks stored (each a new key).
    pub(crate) blocks: u64,
    /// Their payload bytes.
    pub(crate) bytes: u64,
    /// Bytes written to the segment, rewritten partial sectors included.
    pub(crate) disk_bytes: u64,
}

#[derive(Default)]
struct State {
    lent: Option<Lent>,
    /// The shard's space accounting, for the reserve check every put makes.
    space: Option<Arc<Space>>,
    /// Set at shutdown: nothing is lent any more.
    closed: bool,
    /// A write or sync that failed in the lane, for the shard to poison itself with.
    failed: Option<PoisonCause>,
    /// Counts since the shard last took them.
    counts: LaneCounts,
    /// Puts made in the lane, ever (a stat).
    puts: u64,
    /// Blocks up to this many bytes are read back into the page cache after their write
    /// (`HotTier::prefetch_written`; `None`: none are).
    prefetch_up_to: Option<u64>,
}

/// One shard's lane (see the module documentation).
#[derive(Default)]
pub(crate) struct Lane {
    state: Mutex<State>,
}

impl Lane {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic in the lane leaves nothing half-done that the state does not say.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Lends the writer's state, if it is synced and the lane still open; blocks up to
    /// `prefetch_up_to` bytes are read back after their write, as the writer's are.
    pub(crate) fn lend(
        &self,
        writer: &mut Writer,
        space: &Arc<Space>,
        prefetch_up_to: Option<u64>,
    ) {
        let mut state = self.state();
        if state.closed || state.failed.is_some() || state.lent.is_some() {
            return;
        }
        state.lent = writer.lend();
        state.prefetch_up_to = prefetch_up_to;
        if state.space.is_none() {
            state.space = Some(Arc::clone(space));
        }
    }

    /// Takes the state back into `writer` (waiting for a put in progress), with the counts
    /// since the last call and a failure to poison the shard with; `close` also shuts the
    /// lane for good.
    pub(crate) fn reclaim(&self, writer: Option<&mut Writer>, close: bool) -> Taken {
        let mut state = self.state();
        state.closed |= close;
        if let Some(lent) = state.lent.take() {
            match writer {
                Some(writer) => writer.take_back(lent),
                // Nothing lends without a writer; a lane found lent without one keeps
                // nothing to give back, and is closed.
                None => state.closed = true,
            }
        }
        (std::mem::take(&mut state.counts), state.failed.take())
    }

    /// The counts since the last call, and a failure to poison the shard with, without
    /// taking the state back (for the stats).
    pub(crate) fn take_counts(&self) -> Taken {
        let mut state = self.state();
        (std::mem::take(&mut state.counts), state.failed.take())
    }

    /// Puts made in the lane since the shard opened.
    pub(crate) fn puts(&self) -> u64 {
        self.state().puts
    }

    /// Stores one block on the calling thread, durably, if the lane is lent and free and the
    /// block can go there (see the module documentation); `Quick::Shard` changes nothing.
    pub(crate) fn try_put(
        &self,
        shard: usize,
        hot: &HotView,
        bloom: &AtomicBloomFilter,
        key: &[u8],
        data: &[u8],
    ) -> Quick<Result<()>> {
        // Never waits: a busy lane means a group or another caller is writing, and the
        // shard's queue is where a put then joins the next group.
        let Ok(mut guard) = self.state.try_lock() else {
            return Quick::Shard;
        };
        let state = &mut *guard;
        let (Some(lent), Some(space)) = (state.lent.as_mut(), state.space.as_ref()) else {
            return Quick::Shard;
        };
        let hash = bloom_hash(key);
        // The filter is read under the lane's lock: the committer adds to it only while it
        // holds the state, so a key it stored is seen here.
        if bloom.contains_hash(hash) || space.full() || !space.whole() {
            return Quick::Shard;
        }
        let Some(write) = encode(lent, key, data) else {
            return Quick::Shard;
        };
        if let Err(cause) = write_and_sync(lent, &write) {
            state.lent = None;
            state.failed = Some(cause.clone());
            return Quick::Answer(Err(Error::Poisoned { shard, cause }));
        }
        let record_at = write.record_at;
        lent.pos = write.end;
        lent.seq += 2;
        if let Some(digest) = &mut lent.headers {
            digest.add(&write.mark_header, MARK_KEY);
            digest.add(&write.record_header, key);
        }
        let from = (align_down(write.end) - write.start) as usize;
        let until = (write.end - write.start) as usize;
        lent.tail.clear();
        lent.tail
            .extend_from_slice(&write.buf.as_bytes()[from..until]);
        // The engine's block size limit is far below 4 GiB, segments below 4 GiB (config
        // validation), and keys are multihashes, far below u16::MAX bytes.
        hot.index.borrow_mut().insert(
            key,
            Loc {
                segment: lent.active,
                offset: record_at as u32,
                len: data.len() as u32,
                key_len: key.len() as u16,
                hits: 0,
            },
        );
        bloom.insert_hash(hash);
        state.counts.blocks += 1;
        state.counts.bytes += data.len() as u64;
        state.counts.disk_bytes += write.buf.as_bytes().len() as u64;
        state.puts += 1;
        // As the writer does (see `append::prefetch_ranges`): up to the last partial page,
        // which the next append rewrites; the put does not wait for the disk's read.
        let readahead = state
            .prefetch_up_to
            .is_some_and(|max| data.len() as u64 <= max)
            .then(|| (lent.active, record_at, align_down(write.end)))
            .filter(|&(_, from, to)| to > align_down(from));
        drop(guard);
        if let Some((segment, from, to)) = readahead
            && let Some(map) = hot.segments.borrow().get(&segment)
        {
            map.prefetch(from as usize, (to - from) as usize);
        }
        Quick::Answer(Ok(()))
    }
}

/// One lent append, encoded: the rewritten tail, a mark record, the block's record, zeros to
/// the sector.
struct Encoded {
    buf: crate::rt::AlignedBuffer,
    /// Where `buf` goes in the segment (a sector boundary).
    start: u64,
    /// Where the block's record starts, and where the append ends.
    record_at: u64,
    end: u64,
    mark_header: [u8; ipfrs_tiering::segment::record::HEADER_LEN],
    record_header: [u8; ipfrs_tiering::segment::record::HEADER_LEN],
}

/// The append of `key`'s block after the lent position, or `None` if it does not fit in the
/// active segment, is too large for one system call, or cannot be encoded (the shard then
/// reports why).
fn encode(lent: &Lent, key: &[u8], data: &[u8]) -> Option<Encoded> {
    let payload = Payload::Data(data);
    // Everything before `pos` is durable: that is what the mark says.
    let mark = encode_mark(Position {
        segment: lent.active,
        offset: lent.pos,
    });
    let mark_payload = Payload::Data(&mark);
    let mark_header = encode_header(lent.seq, MARK_KEY, mark_payload).ok()?;
    let record_header = encode_header(lent.seq + 1, key, payload).ok()?;
    let mark_len = encoded_len(MARK_KEY.len(), mark.len(), RECORD_ALIGN) as u64;
    let record_len = encoded_len(key.len(), data.len(), RECORD_ALIGN) as u64;
    let start = align_down(lent.pos);
    let record_at = lent.pos + mark_len;
    let end = record_at + record_len;
    if end > lent.segment_bytes || end - start > DIRECT_MAX {
        return None;
    }
    let len = (end - start).next_multiple_of(DMA_ALIGN) as usize;
    let mut buf = crate::rt::AlignedBuffer::new(len);
    let bytes = buf.as_bytes_mut();
    let head = (lent.pos - start) as usize;
    bytes.get_mut(..head)?.copy_from_slice(&lent.tail);
    encode_at(bytes, head, lent.seq, MARK_KEY, mark_payload, RECORD_ALIGN).ok()?;
    let at = (record_at - start) as usize;
    encode_at(bytes, at, lent.seq + 1, key, payload, RECORD_ALIGN).ok()?;
    Some(Encoded {
        buf,
        start,
        record_at,
        end,
        mark_header,
        record_header,
    })
}

/// Writes and syncs one lent append; the error is the shard's poison cause.
fn write_and_sync(lent: &Lent, write: &Encoded) -> std::result::Result<(), PoisonCause> {
    let bytes = write.buf.as_bytes();
    power_cut::write_issued_at(&lent.path, write.start, bytes);
    let written = crate::rt::pwrite_all(lent.fd, bytes, write.start);
    // Fault injection (tests): the write fails (EIO) or comes up short.
    let outcome = writer::injected_write_outcome(bytes.len()).unwrap_or(Some(written));
    writer::write_outcome(outcome, bytes.len())
        .map_err(|e| PoisonCause::SegmentWrite(Arc::new(e)))?;
    let synced = match writer::injected_sync_failure() {
        Some(e) => Err(e),
        None => power_cut::fdatasync_at(lent.fd, &lent.path),
    };
    synced.map_err(|e| PoisonCause::SegmentSync(Arc::new(e)))
}
