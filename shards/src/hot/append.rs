//! Appends to the hot tier's active segment, and the file changes that go with them (sealing
//! a segment, writing its hint file, renaming or removing segments and packs), run by the
//! shard's writer for a group or a compaction step.

use super::writer::{
    AppendError, Appended, IoFailure, RECORD_ALIGN, Record, Sealed, align_down, record_len,
};
use super::{Deferred, HotTier};
use crate::shard::{Shard, bump};
use crate::{Error, PoisonCause, Result};

/// Writes the hint file of a sealed, synced segment on the blocking pool. Run it with
/// `background`: a missing hint only means recovery scans that segment.
///
/// The hint comes from the records' headers (one page per large record; the payloads were
/// written with O_DIRECT and are not in the page cache, so reading them would be a disk read
/// per byte written). The walk must arrive where the writer says the segment ends, with the
/// digest of the headers and keys the writer wrote, so no damaged length or key gets into the
/// hint; otherwise the segment is scanned with every check. Reads check every record they
/// serve, so a payload damaged between the write and the seal is still reported, by the
/// first read rather than by recovery.
fn write_hint(
    dir: &std::path::Path,
    map: ipfrs_tiering::segment::MappedSegment,
    sealed: Sealed,
) -> impl std::future::Future<Output = ()> + 'static {
    use ipfrs_tiering::segment::{scan_segment, walk_headers};
    let dir = dir.to_path_buf();
    crate::rt::spawn_blocking(move || {
        let end = usize::try_from(sealed.end).unwrap_or(usize::MAX);
        let walked = sealed.headers.and_then(|written| {
            let (scan, read) = walk_headers(map.bytes().get(..end)?, RECORD_ALIGN)?;
            (scan.end == end && read.value() == written).then_some(scan)
        });
        let scan = walked.unwrap_or_else(|| scan_segment(map.bytes(), RECORD_ALIGN));
        if let Some(hint) = ipfrs_tiering::segment::hint::encode_hint(&scan) {
            let _ = ipfrs_tiering::segment::hint::write_hint(&dir, map.id(), &hint);
        }
        drop(scan);
        map.release();
    })
}

/// Gives each segment in `sealed` a hint file, in the background.
fn write_hints(shard: &Shard, hot: &HotTier, sealed: &[Sealed]) {
    let segments = hot.segments.borrow();
    for &sealed in sealed {
        if let Some(map) = segments.get(&sealed.segment) {
            background(shard, write_hint(&hot.dir, map.clone(), sealed));
        }
    }
}

/// Bytes per readahead request after a write (see `HotTier::prefetch_written`).
const PREFETCH_STEP: usize = 1 << 20;

/// The `(segment, start, end)` ranges of an append worth reading ahead: the records of at
/// most `small` payload bytes, adjacent ones merged. With `HotTier::prefetch_large_written`
/// off, `small` is the inline threshold: compaction copies those blocks into the backend, so
/// they are read again anyway, while a large block stays where it is written, in what
/// becomes a pack, and is read from the disk when first asked for (one request: see
/// `MappedSegment::slice`).
///
/// The active segment's last partial page is left out. The next append rewrites that page
/// (O_DIRECT from its 4096-byte boundary), and the kernel must lock the page to drop it from
/// the page cache; a readahead of it still waiting for the disk then held up every write of
/// the shard: stalls of 0.2-1.3 s in the soak while sled flushed, its writes in `folio_lock`.
/// That page is read on demand instead. An append ends in the active segment, so the end of
/// its last range is where the cut goes.
fn prefetch_ranges(
    records: &[Record<'_>],
    appended: &Appended,
    small: u64,
) -> Vec<(u32, u64, u64)> {
    let Some(&(active, _, end)) = appended.ranges.last() else {
        return Vec::new();
    };
    let cut = align_down(end);
    let mut ranges: Vec<(u32, u64, u64)> = Vec::new();
    for (record, &(segment, offset)) in records.iter().zip(&appended.locations) {
        let payload = record.payload.data().map_or(0, <[u8]>::len) as u64;
        if payload > small {
            continue;
        }
        let start = u64::from(offset);
        let stop = start + record_len(record);
        match ranges.last_mut() {
            Some(last) if last.0 == segment && last.2 == start => last.2 = stop,
            _ => ranges.push((segment, start, stop)),
        }
    }
    ranges
        .into_iter()
        .filter_map(|(segment, start, stop)| {
            let stop = if segment == active {
                stop.min(cut)
            } else {
                stop
            };
            (stop > align_down(start)).then_some((segment, start, stop))
        })
        .collect()
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
        Ok(Some((map, sealed))) => {
            write_hints(shard, hot, &[sealed]);
            hot.segments.borrow_mut().insert(map.id(), map);
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
            if sync {
                // Segments this append sealed are synced now: give each a hint file, in
                // the background, so recovery need not read their payloads.
                write_hints(shard, hot, &appended.sealed);
            }
            let mut segments = hot.segments.borrow_mut();
            for map in &appended.new_segments {
                segments.insert(map.id(), map.clone());
            }
            let ranges: Vec<_> = match hot.prefetch_up_to() {
                Some(small) => prefetch_ranges(records, &appended, small)
                    .into_iter()
                    .filter_map(|(id, start, end)| Some((segments.get(&id)?.clone(), start, end)))
                    .collect(),
                None => Vec::new(),
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
    shard.poisoned_by(cause)
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
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::writer::{Appended, Record, record_len};
    use super::prefetch_ranges;
    use ipfrs_tiering::segment::Payload;

    /// An append of `records` laid out from `start` in `segment`, rolling over to
    /// `segment + 1` at offset 0 at record `roll_at`, as the writer would report it.
    fn appended(records: &[Record<'_>], segment: u32, start: u64, roll_at: usize) -> Appended {
        let mut locations = Vec::new();
        let mut ranges = vec![(segment, start, start)];
        let (mut id, mut at) = (segment, start);
        for (i, record) in records.iter().enumerate() {
            if i == roll_at {
                (id, at) = (segment + 1, 0);
                ranges.push((id, 0, 0));
            }
            locations.push((id, at as u32));
            at += record_len(record);
            ranges.last_mut().unwrap().2 = at;
        }
        Appended {
            locations,
            new_segments: Vec::new(),
            disk_bytes: 0,
            ranges,
            sealed: Vec::new(),
        }
    }

    fn data(bytes: &[u8]) -> Record<'_> {
        Record {
            key: b"k",
            payload: Payload::Data(bytes),
        }
    }

    #[test]
    fn readahead_leaves_out_the_page_the_next_append_rewrites() {
        let small = vec![0u8; 1000];
        let records: Vec<_> = (0..10).map(|_| data(&small)).collect();
        let len = record_len(&records[0]);
        let end = 96 + 10 * len;
        let cut = prefetch_ranges(&records, &appended(&records, 3, 96, usize::MAX), 16 << 10);
        assert_eq!(cut, vec![(3, 96, end & !4095)]);
        // A sealed segment is never written again: read all of it.
        let rolled = prefetch_ranges(&records, &appended(&records, 3, 9_000, 6), 16 << 10);
        assert_eq!(
            rolled,
            vec![(3, 9_000, 9_000 + 6 * len), (4, 0, (4 * len) & !4095)]
        );
        // Within one page: nothing but that page, so nothing.
        let one = &records[..2];
        assert!(prefetch_ranges(one, &appended(one, 4, 4_096, usize::MAX), 16 << 10).is_empty());
    }

    #[test]
    fn readahead_skips_large_records() {
        let (small, large) = (vec![0u8; 4000], vec![0u8; 256 << 10]);
        let records = [
            data(&small),
            data(&small),
            data(&large),
            data(&small),
            data(&large),
        ];
        let appended = appended(&records, 7, 0, usize::MAX);
        let at = |i: usize| u64::from(appended.locations[i].1);
        let ranges = prefetch_ranges(&records, &appended, 16 << 10);
        // The two small records before the first large one, and the one between the large
        // ones, whole: the append ends in the last large record, pages later.
        assert_eq!(ranges, vec![(7, 0, at(2)), (7, at(3), at(4))]);
        // With a threshold above the large records, everything but the last partial page.
        let all = prefetch_ranges(&records, &appended, 1 << 20);
        let end = at(4) + record_len(&records[4]);
        assert_eq!(all, vec![(7, 0, end & !4095)]);
    }
}
