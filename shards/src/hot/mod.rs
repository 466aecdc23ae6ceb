//! A shard's hot tier: its segments, its index, recovery at start, and reads.
//!
//! ```text
//! shard-NNN/segments/00000001.seg ...   log-structured, appended by `writer`
//!            index: key fingerprint -> (segment, offset, len, hits)
//! ```
//! New blocks are appended to the active segment by the shard's committer (`group`), which
//! updates the index only after the append is durable under the durability mode. Reads find a
//! hot block in the index and answer with a `Bytes` slice of the segment's mapping: no copy,
//! no syscall on the shard. The client side checks the record (checksum, key) before handing
//! out the payload, so the page faults and the checksum work land on the caller's thread and a
//! damaged record is reported, never served. Compaction (`compaction`) keeps the segments
//! within the hot budget by moving the oldest segment's blocks into the cold backend.

pub(crate) mod append;
pub(crate) mod compaction;
pub(crate) mod group;
pub(crate) mod lane;
pub(crate) mod packs;
pub mod power_cut;
pub(crate) mod remote;
mod steps;
pub(crate) mod writer;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use fastbloom::BloomFilter;
use hashbrown::HashMap;
use ipfrs_core_types::HotTier as HotConfig;
use ipfrs_core_types::key::{bloom_hash, cid_of_key};
use ipfrs_tiering::pack::PackLoc;
use ipfrs_tiering::segment::encoded_len;
use ipfrs_tiering::segment::file::{MappedSegment, ensure_allocated, list_segments, zero_tail};
use ipfrs_tiering::segment::hint::{decode_hint, hint_path, proven_durable};
use ipfrs_tiering::segment::index::fingerprint;
use ipfrs_tiering::segment::recover::durable_mark;
use ipfrs_tiering::segment::salvage::salvage;
use ipfrs_tiering::segment::{
    HeaderDigest, HotIndex, Loc, SegmentScan, replay, scan_segment, walk_headers,
};

use crate::damage::{Damage, DamageSite, MAX_DAMAGE_KEPT};
use crate::shared::Shared;

use writer::{DMA_ALIGN, RECORD_ALIGN, Writer};

/// Cold keys whose reads are counted for promotion, at most; the counts are forgotten when the
/// table fills, which is also how old counts decay.
const PROMOTION_TRACKED_KEYS: usize = 16 * 1024;

/// Counters of the hot tier (single-threaded, so `Cell`s).
#[derive(Default)]
pub(crate) struct HotCounters {
    /// Bytes written to segment files (records, padding and sector rewrites).
    pub(crate) disk_bytes: Cell<u64>,
    /// Record bytes compaction read from segments it emptied.
    pub(crate) compaction_read_bytes: Cell<u64>,
    /// Block bytes compaction moved into the cold backend.
    pub(crate) compaction_cold_bytes: Cell<u64>,
    /// Block bytes compaction rewrote into the active segment (still hot).
    pub(crate) compaction_rewritten_bytes: Cell<u64>,
    /// Segments compaction removed.
    pub(crate) segments_compacted: Cell<u64>,
    /// Cold blocks copied back into the hot tier.
    pub(crate) promotions: Cell<u64>,
    /// Packs removed by reclamation.
    pub(crate) packs_reclaimed: Cell<u64>,
    /// Damaged records found (at recovery, or by compaction; a read of a damaged record fails
    /// with `Corrupt` without counting here).
    pub(crate) corrupt_records: Cell<u64>,
    /// Background compaction steps that failed (full disk, I/O error) and were retried later.
    pub(crate) compaction_failures: Cell<u64>,
    /// Checkpoints of the open state written (see `crate::checkpoint`).
    pub(crate) checkpoints: Cell<u64>,
}

/// The hot tier of one shard.
pub(crate) struct HotTier {
    pub(crate) config: HotConfig,
    pub(crate) dir: PathBuf,
    pub(crate) index: Arc<Shared<HotIndex>>,
    /// Every segment file, the active one included, by number.
    pub(crate) segments: Arc<Shared<BTreeMap<u32, MappedSegment>>>,
    /// The appender; the committer takes it out for the length of an append.
    pub(crate) writer: RefCell<Option<Writer>>,
    /// This shard's share of the hot budget, in bytes.
    pub(crate) budget: u64,
    /// Segments this shard may keep before compaction starts (its share of the budget).
    pub(crate) max_segments: usize,
    pub(crate) counters: HotCounters,
    /// Reads of cold blocks, by key fingerprint, for promotion.
    pub(crate) cold_reads: Arc<std::sync::Mutex<HashMap<u128, u16>>>,
    /// File changes that wait until the cold backend has been closed cleanly, because its
    /// flush does not make the index entries they rely on durable (see
    /// `ColdBackend::flush_is_durable`): a crash replays such a segment as hot, and keeps such
    /// a pack.
    pub(crate) deferred: RefCell<Vec<Deferred>>,
    /// The compaction task: at shutdown it is asked to stop (`stopping`) and waited for,
    /// cancelled only if it does not stop in time (it holds the shard alive otherwise).
    pub(crate) compaction: RefCell<Option<crate::rt::Task<()>>>,
    /// Set at shutdown: compaction finishes the step it is in and returns. Cancelling it
    /// mid-step instead left its blocking calls running on glommio's pool after the executor
    /// was gone, whose threads then panicked ("failed to send response").
    pub(crate) stopping: std::cell::Cell<bool>,
    /// The shard's packs (sealed segments whose blocks went cold).
    pub(crate) packs: Arc<Shared<packs::Packs>>,
    /// Segments being compacted: the block bytes indexed into each so far (it becomes a pack
    /// if any) and where its records end.
    pub(crate) packing: RefCell<HashMap<u32, Packing>>,
    /// Damage found at recovery or by listings, for `repo verify` (at most
    /// [`MAX_DAMAGE_KEPT`](crate::damage::MAX_DAMAGE_KEPT) entries).
    pub(crate) damage: RefCell<Vec<Damage>>,
    /// The shard's packs on a bucket, if `Config::remote` is set (see [`remote`]).
    pub(crate) remote: Option<remote::RemotePacks>,
    /// Wakes the compaction task after a commit that may have passed the budget.
    pub(crate) wake_tx: flume::Sender<()>,
    pub(crate) wake_rx: flume::Receiver<()>,
    /// The writer's state, lent to callers' threads while no group is committed.
    pub(crate) lane: Arc<lane::Lane>,
}

/// A file change that waits for the cold backend's clean close (see [`HotTier::deferred`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Deferred {
    /// A compacted segment none of whose records stayed indexed in it: removed.
    RemoveSegment(u32),
    /// A compacted segment that index entries point into: renamed to a pack.
    MakePack {
        /// The segment (and pack) number.
        segment: u32,
        /// Where its records end (the rest is punched out).
        records_end: u64,
    },
    /// A reclaimed pack: removed.
    RemovePack(u32),
}

impl Deferred {
    /// Carries the change out in the segment directory `dir` (the backend is closed).
    pub(crate) fn apply(self, dir: &Path) -> io::Result<()> {
        match self {
            Deferred::RemoveSegment(id) => {
                remove_if_present(&ipfrs_tiering::segment::file::segment_path(dir, id))?;
                remove_if_present(&hint_path(dir, id))?;
                ipfrs_tiering::segment::file::sync_dir(dir)
            }
            Deferred::MakePack {
                segment,
                records_end,
            } => packs::convert_on_disk(dir, segment, records_end),
            Deferred::RemovePack(id) => packs::remove_on_disk(dir, id),
        }
    }

    /// What [`Deferred::apply`] does, for its error.
    pub(crate) fn operation(&self) -> &'static str {
        match self {
            Deferred::RemoveSegment(_) => "removing the compacted segment",
            Deferred::MakePack { .. } => "turning into a pack the segment",
            Deferred::RemovePack(_) => "removing the reclaimed pack",
        }
    }

    /// The file [`Deferred::apply`] changes, for its error.
    pub(crate) fn path(&self, dir: &Path) -> PathBuf {
        match *self {
            Deferred::RemoveSegment(id) | Deferred::MakePack { segment: id, .. } => {
                ipfrs_tiering::segment::file::segment_path(dir, id)
            }
            Deferred::RemovePack(id) => ipfrs_tiering::pack::pack_path(dir, id),
        }
    }
}

/// Removes `path`; a file already gone is fine.
pub(crate) fn remove_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// A segment on its way to becoming a pack (see [`HotTier::packing`]).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Packing {
    /// Block bytes whose index entries point into the segment.
    pub(crate) held: u64,
    /// Record bytes compaction moved out of it (copied inline into the backend, rewritten
    /// hot, dropped as damaged): the pack does not count them as its own dead records, or a
    /// segment of mostly small blocks would be reclaimed as soon as it was packed.
    pub(crate) moved_out: u64,
    /// Where its records end.
    pub(crate) records_end: u64,
}

/// What recovery found, for the shard to finish opening.
pub(crate) struct Recovery {
    pub(crate) tier: HotTier,
    /// Where to resume appending: (active segment, position, its partial last sector), or
    /// `None` for a new store (the first segment is created once the executor runs).
    pub(crate) resume: Option<(u32, u64, Vec<u8>)>,
    /// The next sequence number.
    pub(crate) next_seq: u64,
    /// Keys whose last record is a tombstone: deletes to redo on the cold backend.
    pub(crate) tombstoned: Vec<Vec<u8>>,
}

impl HotTier {
    /// Rebuilds the hot tier of the shard whose segments are in `dir`, feeding every hot key to
    /// `bloom`. Torn tails are zeroed; corruption is counted and reported on stderr (it stays
    /// findable: reads of a damaged record report it as corrupt).
    pub(crate) fn recover(
        shard: usize,
        dir: &Path,
        config: HotConfig,
        budget: u64,
        bloom: &mut BloomFilter,
    ) -> io::Result<Recovery> {
        std::fs::create_dir_all(dir)?;
        let packs = packs::Packs::open(dir)?;
        let mut maps = Vec::new();
        let listed = list_segments(dir)?;
        if let Some((_, last)) = listed.last() {
            ensure_allocated(last, config.segment_bytes)?;
        }
        for (id, path) in listed {
            maps.push((id, path.clone(), MappedSegment::open(id, &path)?));
        }
        // Sealed segments with a hint file are read from the hint (not their payloads); the
        // active one, and any segment whose hint is missing or damaged, is scanned.
        let hints: Vec<Option<Vec<u8>>> = maps
            .iter()
            .enumerate()
            .map(|(i, (id, _, _))| {
                let sealed = i + 1 < maps.len();
                sealed
                    .then(|| std::fs::read(hint_path(dir, *id)).ok())
                    .flatten()
            })
            .collect();
        fn scan_of(map: &MappedSegment) -> SegmentScan<'_> {
            map.reading_sequentially();
            let scan = scan_segment(map.bytes(), RECORD_ALIGN);
            map.reading_randomly();
            map.release();
            scan
        }
        let mut scans: Vec<(u32, SegmentScan<'_>, bool)> = maps
            .iter()
            .zip(&hints)
            .map(
                |((id, _, map), hint)| match hint.as_deref().and_then(decode_hint) {
                    Some(scan) => (*id, scan, true),
                    None => (*id, scan_of(map), false),
                },
            )
            .collect();
        // A hint is trusted only for a segment the durable mark proves complete on disk.
        let durable = durable_mark(scans.iter().map(|(_, scan, _)| scan));
        for ((id, scan, hinted), (_, _, map)) in scans.iter_mut().zip(&maps) {
            if *hinted && !proven_durable(*id, durable) {
                *scan = scan_of(map);
                *hinted = false;
            }
        }
        let scans: Vec<(u32, SegmentScan<'_>)> =
            scans.into_iter().map(|(id, scan, _)| (id, scan)).collect();
        let recovered = replay(&scans, |key| {
            bloom.insert_hash(bloom_hash(key));
        });
        drop(scans);
        let counters = HotCounters::default();
        counters
            .corrupt_records
            .set(recovered.corruption.len() as u64);
        for bad in recovered.corruption.iter().take(10) {
            eprintln!(
                "ipfrs shard {shard}: corrupt hot record in segment {} at offset {}: {}",
                bad.segment, bad.offset, bad.cause
            );
        }
        let damage = recovered
            .corruption
            .iter()
            .take(MAX_DAMAGE_KEPT)
            .map(|bad| Damage {
                shard,
                site: DamageSite::HotRecord {
                    segment: bad.segment,
                    offset: bad.offset as u64,
                },
                key: bad.key.as_ref().map(|(key, _)| key.clone()),
                key_proven: bad.key.as_ref().is_some_and(|(_, trust)| trust.is_proven()),
                cause: bad.cause.to_string(),
            })
            .collect();
        let mut segments = BTreeMap::new();
        for ((id, path, map), outcome) in maps.into_iter().zip(&recovered.segments) {
            let map = match outcome.torn_at {
                Some(torn) => {
                    // Unmap before zeroing so no reader could see the bytes change.
                    drop(map);
                    zero_tail(&path, torn as u64)?;
                    MappedSegment::open(id, &path)?
                }
                None => map,
            };
            segments.insert(id, map);
        }
        let resume = match (segments.last_key_value(), recovered.segments.last()) {
            (Some((&id, map)), Some(outcome)) => {
                let pos = outcome.append_at as u64;
                let from = (pos & !(DMA_ALIGN - 1)) as usize;
                Some((id, pos, map.bytes()[from..outcome.append_at].to_vec()))
            }
            _ => None,
        };
        let (wake_tx, wake_rx) = flume::bounded(1);
        Ok(Recovery {
            tier: HotTier {
                config,
                dir: dir.to_path_buf(),
                index: Arc::new(Shared::new(recovered.index)),
                segments: Arc::new(Shared::new(segments)),
                writer: RefCell::new(None),
                budget,
                // The active segment plus at least one sealed one.
                max_segments: ((budget / config.segment_bytes.max(1)) as usize).max(2),
                counters,
                cold_reads: Arc::default(),
                compaction: RefCell::new(None),
                deferred: RefCell::default(),
                packs: Arc::new(Shared::new(packs)),
                packing: RefCell::default(),
                damage: RefCell::new(damage),
                wake_tx,
                wake_rx,
                lane: Arc::default(),
                stopping: std::cell::Cell::new(false),
                remote: None,
            },
            resume,
            next_seq: recovered.max_seq + 1,
            tombstoned: recovered.tombstoned,
        })
    }

    /// Starts the appender (inside the executor): resumes the active segment, or creates the
    /// first one.
    pub(crate) async fn start_writer(
        &self,
        resume: Option<(u32, u64, Vec<u8>)>,
        seq: u64,
    ) -> Result<(), writer::AppendError> {
        let (segment_bytes, chunk) = (self.config.segment_bytes, self.config.write_chunk_bytes);
        let (id, pos, tail) = match resume {
            Some(resume) => resume,
            None => {
                // Packs keep their segment numbers: a new log starts above them, so that no
                // segment can ever be renamed onto an existing pack.
                let first = self.packs.borrow().max_id().map_or(1, |id| id + 1);
                let (file, map) = Writer::create_segment(&self.dir, first, segment_bytes).await?;
                let _ = file.close().await;
                self.segments.borrow_mut().insert(first, map);
                (first, 0, Vec::new())
            }
        };
        let headers = self.resumed_headers(id, pos);
        let writer = Writer::resume(&self.dir, id, pos, tail, seq, headers, segment_bytes, chunk)
            .await
            .map_err(writer::AppendError::Write)?;
        *self.writer.borrow_mut() = Some(writer);
        Ok(())
    }

    /// The [`HeaderDigest`] of the records before `pos` in segment `id`, which the writer
    /// resumes, read from their headers (recovery has just read the whole segment, so they
    /// are in the page cache). `None` if recovery found damage anywhere: the walk does not
    /// see a damaged payload, and that segment's hint must then come from a checked scan,
    /// which names it.
    fn resumed_headers(&self, id: u32, pos: u64) -> Option<HeaderDigest> {
        if pos == 0 {
            return Some(HeaderDigest::default());
        }
        if self.counters.corrupt_records.get() > 0 {
            return None;
        }
        let segments = self.segments.borrow();
        let records = segments
            .get(&id)?
            .bytes()
            .get(..usize::try_from(pos).ok()?)?;
        let (scan, digest) = walk_headers(records, writer::RECORD_ALIGN)?;
        (scan.end as u64 == pos).then_some(digest)
    }

    /// The record of a hot key as a zero-copy slice of its segment, counting the read.
    pub(crate) fn fetch(&self, key: &[u8]) -> Option<Bytes> {
        let loc = self.index.borrow_mut().touch(key)?;
        Some(self.record_bytes(&loc))
    }

    /// The record an index entry points at in a pack, unchecked (the caller checks it as a hot
    /// record). Between a compaction step, which writes the entries and drops the records from
    /// the hot index, and the segment's retirement into a pack, the entries point into a
    /// segment that is still hot: it is looked up there too.
    pub(crate) fn pack_record(&self, loc: &PackLoc) -> Option<Bytes> {
        pack_record(&self.packs, &self.segments, loc)
    }

    /// The bytes of the record at `loc` (empty if its segment is gone, which the client's
    /// check then reports as corrupt rather than serving anything).
    pub(crate) fn record_bytes(&self, loc: &Loc) -> Bytes {
        self.segments
            .borrow()
            .get(&loc.segment)
            .and_then(|map| map.slice(loc.offset as usize, loc.record_len()))
            .unwrap_or_default()
    }

    /// Counts a read of a cold block; true when it has been read often enough to be copied
    /// back into the hot tier.
    pub(crate) fn count_cold_read(&self, key: &[u8]) -> bool {
        count_read(&self.cold_reads, self.config.promote_after_reads, key)
    }

    /// The largest cold block compaction copies into the backend (inline) rather than leave
    /// in its pack. With a bucket, none: a block only the local backend held would never
    /// reach the bucket, which must hold every cold block (for a replica, and as the copy).
    pub(crate) fn inline_up_to(&self) -> u64 {
        match self.remote {
            Some(_) => 0,
            None => u64::from(self.config.inline_threshold_bytes),
        }
    }

    /// The largest block whose record is read back into the page cache after its write
    /// (`HotTier::prefetch_written`, `prefetch_large_written`); `None`: none is.
    pub(crate) fn prefetch_up_to(&self) -> Option<u64> {
        self.config.prefetch_written.then(|| {
            if self.config.prefetch_large_written {
                u64::MAX
            } else {
                u64::from(self.config.inline_threshold_bytes)
            }
        })
    }

    /// This shard's share of the hot budget, in bytes.
    pub(crate) fn budget_share(&self) -> u64 {
        self.budget
    }

    /// Whether the segments take more than this shard's share of the budget.
    pub(crate) fn over_budget(&self) -> bool {
        self.segments.borrow().len() > self.max_segments
    }

    /// Disk bytes the segments take (each is preallocated to full size).
    pub(crate) fn disk_footprint(&self) -> u64 {
        self.segments.borrow().len() as u64 * self.config.segment_bytes
    }
}

/// The record a packed index entry points at, unchecked: in its pack, or, between the
/// compaction step that wrote the entry and the segment's retirement into a pack, in its
/// still hot segment. The shard and callers' threads share both maps.
pub(crate) fn pack_record(
    packs: &Shared<packs::Packs>,
    segments: &Shared<BTreeMap<u32, MappedSegment>>,
    loc: &PackLoc,
) -> Option<Bytes> {
    packs.borrow().record(loc).or_else(|| {
        segments
            .borrow()
            .get(&loc.pack)
            .and_then(|map| map.slice(loc.offset as usize, loc.record_len()))
    })
}

/// The record of `key` where `cache` says it lies in a pack, or `None`: no location cached,
/// or its pack is gone (reclaimed since), when the location is dropped so that the caller
/// asks the backend. The caller checks the record like any other, so a location that
/// points at another record is reported, never served. Used by reads on callers' threads and
/// by the shard's `get_many`.
pub(crate) fn cached_pack_record(
    cache: &crate::cache::BlockCache,
    packs: &Shared<packs::Packs>,
    segments: &Shared<BTreeMap<u32, MappedSegment>>,
    key: &[u8],
) -> Option<Bytes> {
    let record = pack_record(packs, segments, &cache.location(key)?);
    if record.is_none() {
        cache.forget_location(key);
    }
    record
}

/// Counts a read of the cold block `key` in `reads`; true once it has been read `threshold`
/// times (0: never), and the count starts over. The shard and callers' threads share `reads`.
pub(crate) fn count_read(
    reads: &std::sync::Mutex<HashMap<u128, u16>>,
    threshold: u16,
    key: &[u8],
) -> bool {
    if threshold == 0 {
        return false;
    }
    let mut reads = reads
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if reads.len() >= PROMOTION_TRACKED_KEYS {
        reads.clear();
    }
    let fp = fingerprint(key);
    let count = reads.entry(fp).or_insert(0);
    *count = count.saturating_add(1);
    if *count >= threshold {
        reads.remove(&fp);
        true
    } else {
        false
    }
}

/// The keys of the index entries `entries` (fingerprint and location), read from the record
/// headers in the segment mappings (for listing; run it on the blocking pool, the reads may
/// fault pages in), and the entries whose key could not be read back.
///
/// A key is listed only if it matches the fingerprint the index holds for it and reads as a
/// CID: a flipped bit in a stored key (in a segment recovered from its hint, whose keys were
/// never reread) would otherwise list a CID that was never stored. Such a record is named by
/// its payload's hash where that proves a key with the indexed fingerprint; otherwise it is
/// returned as unreadable, for the caller to report.
pub(crate) fn keys_of(
    segments: &BTreeMap<u32, MappedSegment>,
    entries: &[(u128, Loc)],
) -> (Vec<Vec<u8>>, Vec<(Loc, String)>) {
    let header = ipfrs_tiering::segment::record::HEADER_LEN;
    let mut keys = Vec::with_capacity(entries.len());
    let mut unreadable = Vec::new();
    for (fp, loc) in entries {
        let Some(map) = segments.get(&loc.segment) else {
            // Compaction removed the segment since the entries were taken.
            continue;
        };
        let at = loc.offset as usize + header;
        let Some(stored) = map.bytes().get(at..at + usize::from(loc.key_len)) else {
            unreadable.push((*loc, "the record runs past its segment".to_string()));
            continue;
        };
        if fingerprint(stored) == *fp && cid_of_key(stored).is_ok() {
            keys.push(stored.to_vec());
            continue;
        }
        let padded = encoded_len(usize::from(loc.key_len), loc.len as usize, RECORD_ALIGN);
        let record = map.slice(loc.offset as usize, padded).unwrap_or_default();
        let end = record.len();
        match salvage(&record, 0, end, RECORD_ALIGN) {
            Some(found) if fingerprint(&found.key) == *fp && cid_of_key(&found.key).is_ok() => {
                keys.push(found.key.into_owned())
            }
            _ => unreadable.push((*loc, "the stored key is damaged".to_string())),
        }
    }
    (keys, unreadable)
}
