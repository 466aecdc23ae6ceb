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

use ipfrs_core_types::key::Key;
use ipfrs_tiering::segment::recover::Kind;
use ipfrs_tiering::segment::{HotIndex, MappedSegment, scan_segment, walk_headers};

use super::HotTier;
use super::steps::{backend_bytes, check_room};
use super::writer::RECORD_ALIGN;
use crate::commit::enqueue;
use crate::queue::{Ack, Mode, Pending, WriteOp};
use crate::shard::{Shard, bump};
use crate::space;
use crate::{Error, Result};

/// Bytes of records moved per step: small enough that a step holds the writer for a few
/// milliseconds, large enough that the cold backend gets real batches.
pub(crate) const STEP_BYTES: u64 = 4 << 20;

/// How long compaction waits after a failure before trying again; doubled at each failure
/// in a row (a full disk stays full for a while) up to [`RETRY_AFTER_MAX`].
pub(crate) const RETRY_AFTER: Duration = Duration::from_secs(1);
pub(crate) const RETRY_AFTER_MAX: Duration = Duration::from_secs(60);

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
            // Idle: once nothing has woken the task for a while, a checkpoint saves the next
            // open after a crash the walk of the cold keys.
            let checkpoint = crate::checkpoint::wanted(&shard, hot);
            let woken = if checkpoint {
                futures_lite::future::or(
                    async { Some(hot.wake_rx.recv_async().await.is_ok()) },
                    async {
                        crate::rt::sleep(crate::checkpoint::CHECKPOINT_AFTER).await;
                        None
                    },
                )
                .await
            } else {
                Some(hot.wake_rx.recv_async().await.is_ok())
            };
            match woken {
                Some(true) => {}
                Some(false) => return,
                None if hot.stopping.get() => return,
                None => match submit(&shard, Pending::Checkpoint).await {
                    Ok(()) => {}
                    Err(Error::Poisoned { .. } | Error::Stopped { .. }) => return,
                    Err(e) => {
                        eprintln!(
                            "ipfrs shard {}: writing a checkpoint failed: {e}; the next open \
                             after a crash walks the cold keys",
                            shard.id
                        );
                        pause(retry_after).await;
                        retry_after = (retry_after * 2).min(RETRY_AFTER_MAX);
                    }
                },
            }
            continue;
        }
        if reclaimable() {
            match reclaim_packs(&shard, hot.config.reclaim_below_percent).await {
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
/// `space`) holds a new segment and the cold copy of a whole one; otherwise it waits
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
        .max(EXPLICIT_RECLAIM_BELOW_PERCENT);
    reclaim_packs(shard, below).await?;
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
    let (mut found, mut records_end) = block_records(map.clone(), Walk::Headers).await;
    if !covers_live(hot, segment, &found) {
        // A header that misled the walk: every record must move before the segment goes.
        (found, records_end) = block_records(map, Walk::Checked).await;
    }
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
    let inline_up_to = hot.inline_up_to();
    let live_bytes: u64 = indexed_here(&hot.index.borrow(), segment, &found)
        .map(|(_, _, len)| backend_bytes(u64::from(*len), inline_up_to))
        .sum();
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

/// How [`block_records`] reads a segment.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Walk {
    /// The records' headers alone (see [`ipfrs_tiering::segment::walk_headers`]): one page
    /// per large record. The steps that follow check every record they copy, and a large
    /// block left in place is checked by every read of it; the caller checks that the walk
    /// found every record the index holds there ([`covers_live`]).
    Headers,
    /// Every record, checked ([`scan_segment`]): damaged ones are listed too.
    Checked,
}

/// The block records of a segment or pack (key, offset, payload length; damaged ones too,
/// tombstones and marks left out) and where its records end, read on the blocking pool. A
/// header walk that does not read falls back to the checked scan.
pub(crate) async fn block_records(map: MappedSegment, walk: Walk) -> (Vec<(Key, u32, u32)>, usize) {
    crate::rt::spawn_blocking(move || {
        let walked = match walk {
            Walk::Headers => walk_headers(map.bytes(), RECORD_ALIGN).map(|(scan, _)| scan),
            Walk::Checked => None,
        };
        let scan = walked.unwrap_or_else(|| {
            // Front to back: readahead instead of a disk read per page of a pack that is
            // not in the page cache (the mappings are MADV_RANDOM for point reads).
            map.reading_sequentially();
            let scan = scan_segment(map.bytes(), RECORD_ALIGN);
            map.reading_randomly();
            scan
        });
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

/// The records of `found` that the hot index still points at, there in `segment`.
fn indexed_here<'a>(
    index: &'a HotIndex,
    segment: u32,
    found: &'a [(Key, u32, u32)],
) -> impl Iterator<Item = &'a (Key, u32, u32)> + 'a {
    found.iter().filter(move |(key, offset, _)| {
        index
            .get(key)
            .is_some_and(|loc| loc.segment == segment && loc.offset == *offset)
    })
}

/// Whether `found` holds every record the hot index has in `segment`.
fn covers_live(hot: &HotTier, segment: u32, found: &[(Key, u32, u32)]) -> bool {
    let index = hot.index.borrow();
    indexed_here(&index, segment, found).count() as u64 == index.live_in(segment)
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
    enqueue(
        shard,
        WriteOp {
            pending,
            ack: Ack::Done(reply),
        },
    );
    rx.recv_async()
        .await
        .map_err(|_| Error::Stopped { shard: shard.id })?
}

/// The live share under which an explicit compaction (`Engine::compact`, `repo gc`) reclaims a
/// pack, when the configured threshold is lower: an operator asking for space back gets every
/// pack with a fifth or more dead rewritten, where background reclamation waits for half (a
/// rewrite of a pack that is 80% live costs four bytes written per byte given back, worth it
/// only when asked for).
pub(crate) const EXPLICIT_RECLAIM_BELOW_PERCENT: u8 = 80;

/// Reclaims every pack whose live share is under `below_percent`, emptiest first; returns how
/// many were removed.
pub(crate) async fn reclaim_packs(shard: &Rc<Shard>, below_percent: u8) -> Result<u64> {
    let Some(hot) = shard.hot.as_ref() else {
        return Ok(0);
    };
    let candidates = hot.packs.borrow().candidates(below_percent);
    let mut removed = 0;
    for pack in candidates {
        reclaim_pack(shard, hot, pack).await?;
        removed += 1;
    }
    Ok(removed)
}

/// Rewrites what is live in `pack`, then removes it.
async fn reclaim_pack(shard: &Rc<Shard>, hot: &HotTier, pack: u32) -> Result<()> {
    // A pack whose only copy is in the bucket is fetched back first, and none being
    // reclaimed leaves the disk meanwhile: its records are read from its file until the end.
    let _claim = match &hot.remote {
        Some(remote) => Some(crate::hot::remote::claim(remote, pack).await),
        None => None,
    };
    if hot.packs.borrow().is_remote(pack) {
        // Its hint says what it holds: a pack nothing points into any more (one a crash
        // left listed, or emptied by deletes) is dropped without fetching it back.
        if !crate::hot::remote::any_live(shard, hot, pack).await? {
            return submit(shard, Pending::DropPack { pack }).await;
        }
        crate::hot::remote::fetch_back(shard, hot, pack).await?;
    }
    let Some(map) = hot.packs.borrow().map(pack) else {
        return Ok(());
    };
    // Every record checked: a pack is removed once its listed records are rewritten, and
    // nothing but this list says what it held.
    let (found, _) = block_records(map, Walk::Checked).await;
    submit_in_steps(shard, found, |records| Pending::Reclaim { pack, records }).await?;
    submit(shard, Pending::DropPack { pack }).await
}
