//! Appends to the hot tier's active segment, and the file changes that go with them (sealing
//! a segment, writing its hint file, renaming or removing segments and packs), run by the
//! shard's writer for a group or a compaction step.

use super::writer::{AppendError, Appended, IoFailure, RECORD_ALIGN, Record, align_down};
use super::{Deferred, HotTier};
use crate::shard::{Shard, bump};
use crate::{Error, PoisonCause, Result};

/// Writes the hint file of a sealed, synced segment on the blocking pool. Run it with
/// `background`: a missing hint only means recovery scans that segment.
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

/// Runs background work (readahead, hint files) that nobody waits for, inside the shard's
/// gate, so shutdown waits for it instead of leaving a blocking call to answer an
/// executor that is gone. (glommio only queues a blocking call once its future is
/// polled, so the future is handed to a task rather than dropped.) A shard already
/// shutting down skips it.
fn background(shard: &Shard, work: impl std::future::Future<Output = ()> + 'static) {
    if let Ok(task) = shard.gate.spawn(work) {
        task.detach();
    }
}

/// Seals the active segment (see `Pending::Seal`).
pub(crate) async fn seal(shard: &Shard, hot: &HotTier) -> Result<()> {
    let Some(mut writer) = hot.writer.borrow_mut().take() else {
        return Ok(());
    };
    let result = writer.seal().await;
    *hot.writer.borrow_mut() = Some(writer);
    match result {
        Ok(Some(map)) => {
            let mut segments = hot.segments.borrow_mut();
            if let Some(sealed) = map.id().checked_sub(1).and_then(|id| segments.get(&id)) {
                background(shard, write_hint(&hot.dir, sealed.clone()));
            }
            segments.insert(map.id(), map);
            Ok(())
        }
        Ok(None) => Ok(()),
        Err(e) => Err(append_error(shard, e)),
    }
}

/// Appends records with the shard's writer, mapping failures to shard errors (a failed
/// write or sync makes the shard read-only; a full disk only fails this group).
pub(crate) async fn append(
    shard: &Shard,
    hot: &HotTier,
    records: &[Record<'_>],
    sync: bool,
) -> Result<Appended> {
    let Some(mut writer) = hot.writer.borrow_mut().take() else {
        return Err(Error::Poisoned {
            shard: shard.id,
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
                    if let Some(sealed) = map.id().checked_sub(1).and_then(|id| segments.get(&id)) {
                        background(shard, write_hint(&hot.dir, sealed.clone()));
                    }
                }
            }
            let ranges: Vec<_> = if hot.config.prefetch_written {
                prefetch_ranges(&appended.ranges)
                    .filter_map(|(id, start, end)| Some((segments.get(&id)?.clone(), start, end)))
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
                background(shard, prefetch);
            }
            Ok(appended)
        }
        Err(e) => Err(append_error(shard, e)),
    }
}

/// The shard error for an append failure; a failed write or sync poisons the shard.
fn append_error(shard: &Shard, err: AppendError) -> Error {
    let cause = match err.refused(shard.id) {
        Ok(refused) => return refused,
        Err(IoFailure::Write(e)) => PoisonCause::SegmentWrite(std::sync::Arc::new(e)),
        Err(IoFailure::Sync(e)) => PoisonCause::SegmentSync(std::sync::Arc::new(e)),
    };
    shard.writes.poison(cause.clone());
    Error::Poisoned {
        shard: shard.id,
        cause,
    }
}

/// Carries out a file change that relies on the backend's latest writes: now if its
/// flush made them durable, else once the backend has been closed (see
/// [`HotTier::deferred`]).
pub(crate) async fn change_files(shard: &Shard, hot: &HotTier, change: Deferred) -> Result<()> {
    if !shard.backend.flush_is_durable() {
        hot.deferred.borrow_mut().push(change);
        return Ok(());
    }
    // Every backend write before the change is made durable first, not only the ones the
    // change relies on directly: a delete made without a flush (durability `None`) of a
    // block indexed into this file would otherwise come back after a crash, pointing into
    // a file that is gone (the torture campaign found this).
    shard.blocking(|backend| backend.flush()).await?;
    let dir = hot.dir.clone();
    let failed = Error::segment_io(shard.id, change.operation(), change.path(&dir));
    crate::rt::spawn_blocking(move || change.apply(&dir))
        .await
        .map_err(failed)
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
