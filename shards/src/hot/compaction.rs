//! Compaction: keeping the hot segments within their budget.
//!
//! ```text
//!   idle --woken after a commit, over budget--> scan oldest sealed segment (blocking pool)
//!     --> migrate its live records, a few MiB per step, each step a write group of its own:
//!           still hot (read since written)  -> rewritten into the active segment, synced
//!           cold, at most inline_threshold  -> put into the cold backend (inline), flushed
//!           cold, larger                    -> stays where it is: an index entry
//!                                              (pack, offset, len) goes into the backend
//!           damaged                         -> dropped from the index, counted
//!     --> retire: if index entries point into it, the segment becomes a pack (renamed to
//!         .pack once the backend's flush made the entries durable, its tail past the
//!         records given back); otherwise the file is removed; the directory is synced
//!     --> over budget still? next oldest : packs under their live threshold? reclaim : idle
//! ```
//! Reclaiming a pack rewrites its live records into the hot tier (a step per few MiB, as
//! above) and removes the pack once no entry points into it.
//! Each step goes through the shard's write queue, so it is ordered with puts and deletes (a
//! delete can never be undone by a late move) and a step never holds the writer for long.
//! The task runs in a task queue with a small share of the core, so foreground requests keep
//! priority. A segment is removed only after every record it held is durable elsewhere, and
//! tombstones in it are dropped with it: it is the oldest segment, so no older record of
//! their keys remains in the hot tier, and their cold deletes are already durable.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ipfrs_core_types::key::Key;
use ipfrs_tiering::ColdBackend;
use ipfrs_tiering::pack::{self, PackLoc};
use ipfrs_tiering::segment::recover::Kind;
use ipfrs_tiering::segment::{Loc, MappedSegment, Payload, decode, encoded_len, scan_segment};

use super::writer::{RECORD_ALIGN, Record};
use super::{Deferred, HotTier};
use crate::commit::{Ack, Pending, WriteOp, space};
use crate::shard::{Shard, bump};
use crate::{Error, Result};

/// Bytes of records moved per step: small enough that a step holds the writer for a few
/// milliseconds, large enough that the cold backend gets real batches.
pub(crate) const STEP_BYTES: u64 = 4 << 20;

/// How long compaction waits after a failure before trying again; doubled at each failure
/// in a row (a full disk stays full for a while) up to [`RETRY_AFTER_MAX`].
const RETRY_AFTER: Duration = Duration::from_secs(1);
const RETRY_AFTER_MAX: Duration = Duration::from_secs(60);

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

/// The compaction task of one shard; runs until the shard stops.
pub(crate) async fn run(shard: Rc<Shard>) {
    let Some(hot) = shard.hot.as_ref() else {
        return;
    };
    let mut retry_after = RETRY_AFTER;
    // A retry's wait ends early when shutdown wakes the task.
    let pause = |wait: Duration| {
        futures_lite::future::or(crate::rt::sleep(wait), async {
            let _ = hot.wake_rx.recv_async().await;
        })
    };
    loop {
        if hot.stopping.get() {
            return;
        }
        let reclaimable = || {
            !hot.packs
                .borrow()
                .candidates(hot.config.reclaim_below_percent)
                .is_empty()
        };
        if !hot.over_budget() && !reclaimable() {
            if hot.wake_rx.recv_async().await.is_err() {
                return;
            }
            continue;
        }
        if reclaimable() {
            match super::reclaim::reclaim_packs(&shard, hot.config.reclaim_below_percent).await {
                Ok(_) => {}
                Err(Error::Poisoned { .. } | Error::Stopped { .. }) => return,
                Err(e) => {
                    bump(&hot.counters.compaction_failures, 1);
                    eprintln!(
                        "ipfrs shard {}: pack reclamation failed: {e}; retrying in {} s",
                        shard.id,
                        retry_after.as_secs()
                    );
                    pause(retry_after).await;
                    retry_after = (retry_after * 2).min(RETRY_AFTER_MAX);
                    continue;
                }
            }
        }
        while hot.over_budget() && !hot.stopping.get() {
            let oldest = sealed_segments(hot).first().copied();
            let Some(segment) = oldest else {
                break;
            };
            match compact_segment(&shard, segment, Mode::Background).await {
                Ok(()) => retry_after = RETRY_AFTER,
                Err(Error::Poisoned { .. } | Error::Stopped { .. }) => return,
                Err(e) => {
                    // Reported and counted, never fatal: the segment stays (nothing in it is
                    // lost), foreground writes that need the space get `NoSpace` themselves,
                    // and shutdown cancels the wait.
                    bump(&hot.counters.compaction_failures, 1);
                    eprintln!(
                        "ipfrs shard {}: compaction of segment {segment} failed: {e}; retrying \
                         in {} s",
                        shard.id,
                        retry_after.as_secs()
                    );
                    pause(retry_after).await;
                    retry_after = (retry_after * 2).min(RETRY_AFTER_MAX);
                    break;
                }
            }
        }
    }
}

/// Compacts every sealed segment now, whatever the budget (an operator's `compact`, and
/// `repo gc`), then, if the disk has room, seals the active segment and compacts it too:
/// blocks read since written stay hot, the rest moves to the cold backend. It may use the
/// space reserve (it is how a full disk is freed).
///
/// Sealing takes a new preallocated segment, and compacting the sealed one moves its live
/// records into the cold backend: on a disk short of space that costs more than it gives back
/// (the cold backend stores a block in more than its record's bytes). So the active segment
/// is sealed only when, as the compaction starts, the space free beyond the headroom (see
/// `commit::space`) holds a new segment and the cold copy of a whole one; otherwise it waits
/// for a later compaction. Decided before anything moves, so that shards compacting at once
/// do not decide on each other's progress.
pub(crate) async fn compact_all(shard: &Rc<Shard>) -> Result<u64> {
    let Some(hot) = shard.hot.as_ref() else {
        return Ok(0);
    };
    let segment_bytes = hot.config.segment_bytes;
    let room = Arc::clone(&shard.writes.space);
    let seal = crate::rt::spawn_blocking(move || {
        let need = segment_bytes + space::cold_need(segment_bytes);
        room.ensure(need, space::headroom(segment_bytes), false)
            .is_ok()
    })
    .await;
    let mut freeing = space::Freeing::start(&shard.writes.space);
    let mut compacted = match compact_in_order(shard, sealed_segments(hot)).await {
        Ok(n) => n,
        // On a disk too short for every shard to free at once (each needs a new segment's
        // room to rewrite into), this one waits for the others of its store to finish, which
        // gives their room back, and tries once more. It stops counting itself while it
        // waits: two shards that both ran short would otherwise wait for each other.
        Err(Error::NoSpace { .. }) if freeing.others() > 0 => {
            drop(freeing);
            while space::Freeing::running(&shard.writes.space) > 0 {
                crate::rt::sleep(Duration::from_millis(20)).await;
            }
            freeing = space::Freeing::start(&shard.writes.space);
            compact_in_order(shard, sealed_segments(hot)).await?
        }
        Err(e) => return Err(e),
    };
    if seal {
        // Another writer may have taken the room meanwhile: the new segment's own check
        // refuses it then, and the active segment waits.
        match submit(shard, Pending::Seal).await {
            Ok(()) | Err(Error::NoSpace { .. }) => {}
            Err(e) => return Err(e),
        }
        compacted += compact_in_order(shard, sealed_segments(hot)).await?;
    }
    // Packs emptied by deletes give their space back now too (this is what `repo gc`
    // frees with).
    let below = hot
        .config
        .reclaim_below_percent
        .max(super::reclaim::EXPLICIT_RECLAIM_BELOW_PERCENT);
    super::reclaim::reclaim_packs(shard, below).await?;
    drop(freeing);
    let room = Arc::clone(&shard.writes.space);
    crate::rt::spawn_blocking(move || room.retake()).await;
    Ok(compacted)
}

/// Compacts `segments` in order, oldest first: a tombstone is dropped when its segment is
/// compacted, so an older segment still holding the block it deleted must be gone first (a
/// reopen would replay that block). Returns how many were compacted.
async fn compact_in_order(shard: &Rc<Shard>, segments: Vec<u32>) -> Result<u64> {
    let mut compacted = 0u64;
    for segment in segments {
        compact_segment(shard, segment, Mode::Freeing).await?;
        compacted += 1;
    }
    Ok(compacted)
}

/// The sealed segments, oldest first: every segment but the newest one.
///
/// The active segment is always the newest: a roll-over creates segment `active + 1` and
/// registers it once its append returns, so until then the newest registered segment is the
/// one just sealed, which is left out too (harmless: it is compacted next time). The writer
/// cannot say which segment is active while it is out for an append, which is when a
/// compaction listing "all but the writer's active segment" took the active one for sealed:
/// its retire then found the records appended after its scan (`segment N still has live
/// records after compaction`, engine/tests/compaction_race.rs).
fn sealed_segments(hot: &HotTier) -> Vec<u32> {
    let active = hot.writer.borrow().as_ref().map(|w| w.active());
    let segments = hot.segments.borrow();
    let newest = segments.keys().next_back().copied();
    segments
        .keys()
        .copied()
        .filter(|&id| Some(id) != newest && Some(id) != active)
        .collect()
}

/// Moves every live record out of `segment`, then removes it. `mode`: [`Mode::Background`]
/// or [`Mode::Freeing`].
///
/// The cold room the whole segment needs is checked first, so that a disk too full for it
/// fails the segment before any of it moves: steps that moved half a segment would take cold
/// space and give none back (only its removal does). An explicit compaction that finds less
/// room than that and the headroom cleans the segment instead (see [`Mode::Cleaning`]).
async fn compact_segment(shard: &Rc<Shard>, segment: u32, mode: Mode) -> Result<()> {
    let Some(hot) = shard.hot.as_ref() else {
        return Ok(());
    };
    let Some(map) = hot.segments.borrow().get(&segment).cloned() else {
        return Ok(());
    };
    let (found, records_end) = block_records(map).await;
    // Where its records end, should it become a pack (the rest of the file is given back).
    // Background and explicit compaction may work on one segment at once: the entries the
    // other already counted must not be forgotten, or its retirement would remove a segment
    // that entries point into.
    hot.packing
        .borrow_mut()
        .entry(segment)
        .or_insert(super::Packing {
            held: 0,
            moved_out: 0,
            records_end: records_end as u64,
        });
    let inline_up_to = u64::from(hot.config.inline_threshold_bytes);
    let live_bytes: u64 = {
        let index = hot.index.borrow();
        found
            .iter()
            .filter(|(key, offset, _)| {
                index
                    .get(key)
                    .is_some_and(|loc| loc.segment == segment && loc.offset == *offset)
            })
            .map(|(_, _, len)| backend_bytes(u64::from(*len), inline_up_to))
            .sum()
    };
    let mut mode = mode;
    if live_bytes > 0 {
        // An explicit compaction moves records to the cold backend only while that leaves
        // the headroom free, as background compaction does; on a disk shorter than that it
        // cleans the segment instead.
        match check_room(shard, space::cold_need(live_bytes), Mode::Background).await {
            Ok(_) => {}
            Err(Error::NoSpace { .. }) if mode == Mode::Freeing => mode = Mode::Cleaning,
            Err(e) => return Err(e),
        }
    }
    submit_in_steps(shard, found, |records| Pending::Migrate {
        segment,
        records,
        mode,
    })
    .await?;
    submit(shard, Pending::Retire { segment }).await
}

/// The room a rewrite of records of these (key length, payload length) into the hot tier
/// needs: only a new segment, if they do not fit in the active one (they take at most a
/// header and padding more than their payloads, and a mark), paid by the reserve if need be.
pub(crate) async fn rewrite_claim(
    shard: &Shard,
    hot: &HotTier,
    sizes: impl Iterator<Item = (usize, u64)>,
) -> Result<Option<space::Claim>> {
    let record_bytes: u64 = sizes
        .map(|(key_len, len)| encoded_len(key_len, len as usize, RECORD_ALIGN) as u64)
        .sum::<u64>()
        + super::writer::DMA_ALIGN;
    let room = hot.writer.borrow().as_ref().map_or(0, |w| w.room());
    if record_bytes > room {
        match check_room(shard, hot.config.segment_bytes, Mode::Cleaning).await {
            Ok(claim) => Ok(Some(claim)),
            Err(Error::NoSpace {
                shard: id, path, ..
            }) => Err(Error::NoSpace {
                shard: id,
                path,
                detail: format!(
                    ": a new segment for a rewrite of {record_bytes} bytes: the active \
                     one has {room} left; the reserve holds {} of {} bytes",
                    shard.writes.space.held(),
                    shard.writes.space.target()
                ),
            }),
            Err(e) => Err(e),
        }
    } else {
        Ok(None)
    }
}

/// Makes sure `need` bytes are free: for an explicit compaction, releasing the shard's
/// reserve if need be; for background compaction, leaving the headroom free after them (see
/// `commit::space`), so that filling the disk never takes the room a later `repo gc` needs.
/// The returned claim counts the room as taken until it is dropped.
async fn check_room(shard: &Shard, need: u64, mode: Mode) -> Result<space::Claim> {
    let freeing = mode != Mode::Background;
    let keep = if freeing {
        0
    } else {
        shard
            .hot
            .as_ref()
            .map_or(0, |hot| space::headroom(hot.config.segment_bytes))
    };
    let room = Arc::clone(&shard.writes.space);
    crate::rt::spawn_blocking(move || room.ensure(need, keep, freeing))
        .await
        .map_err(|free| Error::NoSpace {
            shard: shard.id,
            path: shard.writes.space.dir().to_path_buf(),
            detail: format!(
                ": compaction needs {need} bytes{}, {free} free",
                if keep > 0 {
                    format!(" and {keep} more left free")
                } else {
                    String::new()
                }
            ),
        })
}

/// The block records of a segment or pack (key, offset, payload length; damaged ones too,
/// tombstones and marks left out) and where its records end, read on the blocking pool.
pub(crate) async fn block_records(map: MappedSegment) -> (Vec<(Key, u32, u32)>, usize) {
    crate::rt::spawn_blocking(move || {
        let scan = scan_segment(map.bytes(), RECORD_ALIGN);
        let found = scan
            .found
            .into_iter()
            .filter_map(|f| match f.kind {
                Kind::Put { len } | Kind::Damaged { len, .. } => {
                    Some((f.key.to_vec(), f.offset as u32, len))
                }
                Kind::Tombstone | Kind::Mark(_) => None,
            })
            .collect();
        map.release();
        (found, scan.end)
    })
    .await
}

/// Submits `found` records as write groups of about [`STEP_BYTES`] each, built by `step`,
/// one after the other.
pub(crate) async fn submit_in_steps(
    shard: &Rc<Shard>,
    found: Vec<(Key, u32, u32)>,
    step: impl Fn(Vec<(Key, u32)>) -> Pending,
) -> Result<()> {
    let mut records = Vec::new();
    let mut bytes = 0u64;
    for (key, offset, len) in found {
        bytes += u64::from(len);
        records.push((key, offset));
        if bytes >= STEP_BYTES {
            bytes = 0;
            submit(shard, step(std::mem::take(&mut records))).await?;
        }
    }
    if !records.is_empty() {
        submit(shard, step(records)).await?;
    }
    Ok(())
}

/// Queues a compaction step on the shard's writer and waits for it.
pub(crate) async fn submit(shard: &Rc<Shard>, pending: Pending) -> Result<()> {
    let (reply, rx) = flume::bounded(1);
    shard.enqueue(WriteOp {
        pending,
        ack: Ack::Done(reply),
    });
    rx.recv_async()
        .await
        .map_err(|_| Error::Stopped { shard: shard.id })?
}

/// A record read back for a move, checked.
struct Moving {
    key: Key,
    offset: u32,
    loc: Loc,
    /// The payload, a slice of the segment's mapping; `None` if the record is damaged.
    data: Option<Bytes>,
    /// Whether it is rewritten into the hot tier (intact and read since written) rather than
    /// moved to the cold backend (or, damaged, dropped).
    stays_hot: bool,
}

impl Shard {
    /// One compaction step (runs as the writer's group): moves the records of `segment` that
    /// the index still points at.
    pub(crate) async fn migrate(
        &self,
        hot: &HotTier,
        segment: u32,
        records: Vec<(Key, u32)>,
        mode: Mode,
    ) -> Result<()> {
        let Some(map) = hot.segments.borrow().get(&segment).cloned() else {
            return Ok(());
        };
        let live: Vec<(Key, u32, Loc)> = {
            let index = hot.index.borrow();
            records
                .into_iter()
                .filter_map(|(key, offset)| {
                    let loc = index.get(&key)?;
                    (loc.segment == segment && loc.offset == offset).then_some((key, offset, loc))
                })
                .collect()
        };
        if live.is_empty() {
            return Ok(());
        }
        // The cold backend is never written without room (see `commit::space`): an explicit
        // compaction releases the reserve for it if need be, background compaction leaves the
        // headroom alone, and a step that does not fit fails with `NoSpace` before the backend
        // sees it (the segment was checked as a whole, but other shards write meanwhile).
        // Rewrites into the hot tier are counted as cold too: an upper bound.
        let inline_up_to = u64::from(hot.config.inline_threshold_bytes);
        let moving_bytes: u64 = live
            .iter()
            .map(|(_, _, loc)| backend_bytes(u64::from(loc.len), inline_up_to))
            .sum();
        // Held until the step's writes are done, so other shards count them as taken.
        let _claim = if mode == Mode::Cleaning {
            let sizes = live
                .iter()
                .map(|(key, _, loc)| (key.len(), u64::from(loc.len)));
            rewrite_claim(self, hot, sizes).await?
        } else {
            Some(check_room(self, space::cold_need(moving_bytes), mode).await?)
        };
        // Keep blocks read since their write, unless hot data alone fills half the budget
        // (then everything moves, so compaction always makes progress).
        let keep_reads = hot.config.keep_hot_reads;
        let room_for_hot = hot.index.borrow().bytes() < hot.budget_share() / 2;
        let cleaning = mode == Mode::Cleaning;
        // Read and check every record on the blocking pool (page faults and checksums stay
        // off the shard's core), and put the cold ones into the backend there, durably.
        let (moving, cold_bytes, packed_bytes, packed_records) = self
            .blocking(move |backend| {
                let mut packed_bytes = 0u64;
                // Record bytes of the blocks indexed in place (the rest of the moved records
                // left the segment: copied inline, rewritten hot, or dropped as damaged).
                let mut packed_records = 0u64;
                let mut moving = Vec::with_capacity(live.len());
                let mut cold = Vec::new();
                let mut stale = Vec::new();
                for (key, offset, loc) in live {
                    let data = decode(map.bytes(), offset as usize, RECORD_ALIGN)
                        .ok()
                        .filter(|r| r.key == key.as_slice())
                        .and_then(|r| match r.payload {
                            Payload::Data(d) => {
                                let start = offset as usize
                                    + ipfrs_tiering::segment::record::HEADER_LEN
                                    + key.len();
                                map.slice(start, d.len())
                            }
                            Payload::Tombstone => None,
                        });
                    let stays_hot = data.is_some()
                        && (cleaning || (room_for_hot && keep_reads > 0 && loc.hits >= keep_reads));
                    // A small cold block is copied into the backend; a large one stays in this
                    // segment, soon a pack, and the backend learns where.
                    if let (Some(data), false) = (&data, stays_hot) {
                        let entry = if data.len() as u64 <= inline_up_to {
                            crate::cold_index::inline(data)
                        } else {
                            packed_bytes += data.len() as u64;
                            packed_records += loc.record_len() as u64;
                            pack::encode_packed(PackLoc {
                                pack: segment,
                                offset,
                                len: data.len() as u32,
                                key_len: key.len() as u16,
                            })
                        };
                        cold.push((key.clone(), entry));
                    } else if stays_hot && points_here(backend, &key, segment)? {
                        // An earlier compaction of this segment indexed the block here, then
                        // the process died before the segment became a pack. The block now
                        // moves to another hot segment and this file may be removed: the
                        // entry must not outlive it (it would be served once the hot copy
                        // is deleted or compacted away).
                        stale.push(key.clone());
                    }
                    moving.push(Moving {
                        key,
                        offset,
                        loc,
                        data,
                        stays_hot,
                    });
                }
                // What the backend is given: inline blocks and packed entries, not the blocks
                // that stay in the pack (those are written once, in their segment).
                let cold_bytes: u64 = cold.iter().map(|(_, d)| d.len() as u64).sum();
                // The stale entries' removal is made durable by the flush before the file
                // changes (`change_files`), which is all it must precede.
                if !stale.is_empty() {
                    backend.delete_batch(&stale)?;
                }
                if !cold.is_empty() {
                    put_in_bounded_batches(backend, &cold)?;
                    backend.flush()?;
                }
                Ok((moving, cold_bytes, packed_bytes, packed_records))
            })
            .await?;
        let read_bytes: u64 = moving.iter().map(|m| m.loc.record_len() as u64).sum();
        if let Some(packing) = hot.packing.borrow_mut().get_mut(&segment) {
            packing.held += packed_bytes;
            packing.moved_out += read_bytes.saturating_sub(packed_records);
        }
        let rewrite: Vec<&Moving> = moving.iter().filter(|m| m.stays_hot).collect();
        let records: Vec<Record<'_>> = rewrite
            .iter()
            .map(|m| Record {
                key: &m.key,
                payload: Payload::Data(m.data.as_deref().unwrap_or(&[])),
            })
            .collect();
        // Rewritten records must be durable before their old segment can be removed.
        let appended = if records.is_empty() {
            None
        } else {
            Some(self.append(hot, &records, true).await?)
        };
        let mut index = hot.index.borrow_mut();
        let mut rewritten_bytes = 0u64;
        if let Some(appended) = &appended {
            for (m, &(new_segment, new_offset)) in rewrite.iter().zip(&appended.locations) {
                rewritten_bytes += u64::from(m.loc.len);
                index.insert(
                    &m.key,
                    Loc {
                        segment: new_segment,
                        offset: new_offset,
                        // Halved at each move: a block must keep being read to stay hot.
                        hits: m.loc.hits / 2,
                        ..m.loc
                    },
                );
            }
        }
        let mut damaged = 0u64;
        for m in moving.iter().filter(|m| !m.stays_hot) {
            index.remove_if_at(&m.key, segment, m.offset);
            if m.data.is_none() {
                // The block cannot be moved without serving damaged bytes: it is dropped
                // and counted, never copied.
                damaged += 1;
                eprintln!(
                    "ipfrs shard {}: dropped a corrupt hot record in segment {segment} at \
                     offset {}",
                    self.id, m.offset
                );
                crate::commit::apply_delta(&self.counters.blocks, -1);
                crate::commit::apply_delta(&self.counters.bytes, -i64::from(m.loc.len));
            }
        }
        bump(&hot.counters.corrupt_records, damaged);
        bump(&hot.counters.compaction_read_bytes, read_bytes);
        bump(&hot.counters.compaction_cold_bytes, cold_bytes);
        bump(&hot.counters.compaction_rewritten_bytes, rewritten_bytes);
        Ok(())
    }

    /// Removes a compacted segment (runs as the writer's group).
    pub(crate) async fn retire(&self, hot: &HotTier, segment: u32) -> Result<()> {
        let active = hot.writer.borrow().as_ref().map(|w| w.active());
        // Already retired (two compactions of one segment), or still being written.
        if active == Some(segment) || !hot.segments.borrow().contains_key(&segment) {
            return Ok(());
        }
        if hot.index.borrow().live_in(segment) > 0 {
            // A record was added to the index after the scan (cannot happen: segments are
            // sealed) — keep the file rather than lose it.
            return Err(Error::segment_io(
                self.id,
                "retiring",
                ipfrs_tiering::segment::file::segment_path(&hot.dir, segment),
            )(std::io::Error::other(
                "the segment still has live records after compaction",
            )));
        }
        // Readers holding blocks of this segment keep its mapping alive.
        let map = hot.segments.borrow_mut().remove(&segment);
        let packing = hot
            .packing
            .borrow_mut()
            .remove(&segment)
            .unwrap_or_default();
        // Index entries point into it: it stays, as a pack (readable through the packs from
        // now on, whatever its file is called).
        let change = match map {
            Some(map) if packing.held > 0 => {
                hot.packs.borrow_mut().insert(
                    segment,
                    map,
                    packing.held,
                    packing.records_end.saturating_sub(packing.moved_out),
                    packing.records_end,
                );
                Deferred::MakePack {
                    segment,
                    records_end: packing.records_end,
                }
            }
            _ => Deferred::RemoveSegment(segment),
        };
        bump(&hot.counters.segments_compacted, 1);
        // Until the backend's flush is durable, the entries and moved blocks may be only in
        // its memory: the file keeps its segment name (and its hint), and recovery replays it
        // as hot if we crash.
        self.change_files(hot, change).await
    }

    /// Carries out a file change that relies on the backend's latest writes: now if its
    /// flush made them durable, else once the backend has been closed (see
    /// [`HotTier::deferred`]).
    pub(crate) async fn change_files(&self, hot: &HotTier, change: Deferred) -> Result<()> {
        if !self.backend.flush_is_durable() {
            hot.deferred.borrow_mut().push(change);
            return Ok(());
        }
        // Every backend write before the change is made durable first, not only the ones the
        // change relies on directly: a delete made without a flush (durability `None`) of a
        // block indexed into this file would otherwise come back after a crash, pointing into
        // a file that is gone (the torture campaign found this).
        self.blocking(|backend| backend.flush()).await?;
        let dir = hot.dir.clone();
        let failed = Error::segment_io(self.id, change.operation(), change.path(&dir));
        crate::rt::spawn_blocking(move || change.apply(&dir))
            .await
            .map_err(failed)
    }
}

/// Whether the backend's entry for `key` points into `segment` (a pack number is its
/// segment's number).
fn points_here(backend: &dyn ColdBackend, key: &[u8], segment: u32) -> ipfrs_tiering::Result<bool> {
    Ok(matches!(
        crate::cold_index::locate(backend, key)?,
        Some((_, Some(loc))) if loc.pack == segment
    ))
}

/// What a cold block of `len` bytes gives the backend: itself when inline, else only its
/// packed entry (the block stays in its segment, soon a pack, which takes no new room).
fn backend_bytes(len: u64, inline_up_to: u64) -> u64 {
    /// A packed entry, rounded up: tag, pack, offset, lengths.
    const ENTRY_BYTES: u64 = 16;
    if len <= inline_up_to {
        len
    } else {
        ENTRY_BYTES
    }
}

/// Bytes of blocks handed to the cold backend in one `put_batch` during compaction.
const MIGRATE_BATCH_BYTES: usize = 4 << 20;

/// Puts `cold` in batches of about [`MIGRATE_BATCH_BYTES`]. parity-db's and rocksdb's
/// batches copy every value before applying it (sled's did, when the sled backend used
/// `sled::Batch`), so one batch per segment was a transient of a segment's size (32 MiB in
/// the soak) per shard.
/// A crash between batches is harmless: the segment is removed only after the flush that
/// follows, and putting a block again stores the same bytes.
fn put_in_bounded_batches(
    backend: &dyn ColdBackend,
    cold: &[(Vec<u8>, Bytes)],
) -> ipfrs_tiering::Result<()> {
    let mut start = 0;
    let mut bytes = 0;
    for (i, (_, data)) in cold.iter().enumerate() {
        bytes += data.len();
        if bytes >= MIGRATE_BATCH_BYTES || i + 1 == cold.len() {
            backend.put_batch(&cold[start..=i])?;
            start = i + 1;
            bytes = 0;
        }
    }
    Ok(())
}
