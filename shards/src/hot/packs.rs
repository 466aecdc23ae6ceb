//! A shard's packs: sealed segments whose blocks went cold, kept as immutable files that the
//! cold backend's index points into (see [`ipfrs_tiering::pack`] for the format and why).
//!
//! ```text
//!   sealed segment --compaction: small cold blocks copied inline, large ones indexed in place,
//!                    hot ones rewritten--> every record elsewhere or indexed here
//!     --retire: nothing packed? remove the file : rename NNNNNNNN.seg -> .pack (and its hint),
//!               punch out the unwritten tail, sync the directory
//!     --deletes and rewrites lower its live bytes--> live share under the threshold
//!     --reclaim: live records rewritten into the hot tier, their entries dropped, then the
//!                file removed
//! ```
//! Ordering: an index entry is written (and flushed) while its record is still in a hot
//! segment, so a crash before the rename leaves a segment that recovery replays as hot (the
//! entries are shadowed until it is compacted again, which rewrites them the same). With a
//! backend whose flush is not durable (parity-db 0.5), the rename waits until the backend has
//! been closed, as segment removal does: until then the file keeps its segment name.

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use hashbrown::HashMap;
use ipfrs_tiering::pack::{PackLoc, list_packs, pack_hint_path, pack_path};
use ipfrs_tiering::segment::MappedSegment;
use ipfrs_tiering::segment::file::{segment_path, sync_dir};
use ipfrs_tiering::segment::hint::hint_path;

/// One shard's packs.
#[derive(Default)]
pub(crate) struct Packs {
    /// The mapped pack files, by number. A segment whose rename waits for the backend's close
    /// is here too (under its segment name on disk).
    maps: BTreeMap<u32, MappedSegment>,
    /// Per pack: block bytes its index entries hold now (live), and the record bytes its file
    /// holds (held: live or not, from its segment's records; after a crash, what its file
    /// takes on disk): their ratio decides reclamation. A segment packed after half its blocks
    /// were deleted is a half-empty pack from the start, and must be seen as one.
    bytes: HashMap<u32, PackBytes>,
    /// Per pack: the disk bytes its file takes (its records; the rest was punched out).
    disk: HashMap<u32, u64>,
    /// Packs whose only copy is in the bucket (see `crate::hot::remote`): the index still
    /// points into them and their figures are kept, but reads go to the bucket.
    remote: std::collections::BTreeSet<u32>,
}

/// Live and held block bytes of one pack.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PackBytes {
    pub(crate) live: u64,
    pub(crate) held: u64,
}

impl Packs {
    /// Maps every pack file in `dir`.
    pub(crate) fn open(dir: &Path) -> std::io::Result<Packs> {
        use std::os::unix::fs::MetadataExt;
        let mut packs = Packs::default();
        for (id, path) in list_packs(dir)? {
            packs.maps.insert(id, MappedSegment::open(id, &path)?);
            packs
                .disk
                .insert(id, std::fs::metadata(&path)?.blocks() * 512);
        }
        Ok(packs)
    }

    /// The record at `loc`, a zero-copy slice of its pack's mapping, unchecked (the caller
    /// checks its checksum and key, as for a hot record). A large record not in the page
    /// cache is asked of the disk whole (see `MappedSegment::slice`).
    pub(crate) fn record(&self, loc: &PackLoc) -> Option<Bytes> {
        self.maps
            .get(&loc.pack)
            .and_then(|map| map.slice(loc.offset as usize, loc.record_len()))
    }

    /// Whether pack `id` exists, here or only in the bucket.
    pub(crate) fn contains(&self, id: u32) -> bool {
        self.maps.contains_key(&id) || self.remote.contains(&id)
    }

    /// Whether pack `id`'s only copy is in the bucket.
    pub(crate) fn is_remote(&self, id: u32) -> bool {
        self.remote.contains(&id)
    }

    /// Packs whose only copy is in the bucket.
    pub(crate) fn remote_count(&self) -> u64 {
        self.remote.len() as u64
    }

    /// Registers pack `id`, listed by the bucket's manifest and absent here, as remote.
    pub(crate) fn add_remote(&mut self, id: u32) {
        if !self.maps.contains_key(&id) {
            self.remote.insert(id);
        }
    }

    /// Pack `id` leaves the local disk (its upload and a manifest listing it are durable):
    /// its mapping is dropped (readers holding records keep it alive) and its figures kept.
    pub(crate) fn evict(&mut self, id: u32) -> bool {
        if self.maps.remove(&id).is_none() {
            return false;
        }
        self.disk.remove(&id);
        self.remote.insert(id);
        true
    }

    /// Pack `id`, fetched back from the bucket into a local file, is mapped again.
    pub(crate) fn relocalize(&mut self, id: u32, map: MappedSegment, disk: u64) {
        if self.remote.remove(&id) {
            self.maps.insert(id, map);
            self.disk.insert(id, disk);
        }
    }

    /// The local packs and the disk bytes each takes, by number.
    pub(crate) fn local(&self) -> Vec<(u32, u64)> {
        self.maps
            .keys()
            .map(|id| (*id, self.disk.get(id).copied().unwrap_or(0)))
            .collect()
    }

    /// Every pack, local or remote, by number.
    pub(crate) fn ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.maps.keys().chain(&self.remote).copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Adds a pack (just converted) holding `live` bytes of indexed blocks among `held` bytes
    /// of its records (the dead ones included), in its first `records_end` bytes.
    pub(crate) fn insert(
        &mut self,
        id: u32,
        map: MappedSegment,
        live: u64,
        held: u64,
        records_end: u64,
    ) {
        self.maps.insert(id, map);
        self.bytes.insert(
            id,
            PackBytes {
                live,
                held: held.max(live),
            },
        );
        self.disk.insert(id, records_end.div_ceil(4096) * 4096);
    }

    /// After a walk of the index (no saved figures): each pack holds at least what its file
    /// takes on disk, dead records included.
    pub(crate) fn settle_walked(&mut self) {
        for (id, disk) in &self.disk {
            let bytes = self.bytes.entry(*id).or_default();
            bytes.held = bytes.held.max(*disk);
        }
    }

    /// Counts `len` bytes of index entries pointing into `pack`, found by a walk of the index
    /// at open (the held bytes are what the walk finds: a crash forgets the original figure).
    pub(crate) fn count_walked(&mut self, pack: u32, len: u64) {
        let bytes = self.bytes.entry(pack).or_default();
        bytes.live += len;
        bytes.held += len;
    }

    /// Restores the figures a clean close saved.
    pub(crate) fn restore(&mut self, saved: &[(u32, PackBytes)]) {
        for (id, bytes) in saved {
            if self.contains(*id) {
                self.bytes.insert(*id, *bytes);
            }
        }
    }

    /// The figures of every mapped pack, for the saved open state.
    pub(crate) fn figures(&self) -> Vec<(u32, PackBytes)> {
        self.ids()
            .into_iter()
            .map(|id| (id, self.bytes.get(&id).copied().unwrap_or_default()))
            .collect()
    }

    /// An index entry into `pack` of `len` bytes was removed (a delete, or a rewrite).
    pub(crate) fn release(&mut self, pack: u32, len: u64) {
        if let Some(bytes) = self.bytes.get_mut(&pack) {
            bytes.live = bytes.live.saturating_sub(len);
        }
    }

    /// The packs worth reclaiming, emptiest first: those whose live share is under
    /// `below_percent` (0: only packs with nothing live).
    pub(crate) fn candidates(&self, below_percent: u8) -> Vec<u32> {
        let mut found: Vec<(u64, u32)> = self
            .ids()
            .into_iter()
            .map(|id| (id, self.bytes.get(&id).copied().unwrap_or_default()))
            .filter(|(_, b)| {
                b.live == 0 || b.live * 100 < b.held.saturating_mul(u64::from(below_percent))
            })
            .map(|(id, b)| ((b.live * 1000).checked_div(b.held).unwrap_or(0), id))
            .collect();
        found.sort_unstable();
        found.into_iter().map(|(_, id)| id).collect()
    }

    /// The highest pack number, if any (new segments must be numbered above it).
    pub(crate) fn max_id(&self) -> Option<u32> {
        let local = self.maps.keys().next_back().copied();
        let remote = self.remote.last().copied();
        local.max(remote)
    }

    /// The mapping of pack `id`.
    pub(crate) fn map(&self, id: u32) -> Option<MappedSegment> {
        self.maps.get(&id).cloned()
    }

    /// Forgets pack `id` (its file is being removed; readers holding its records keep the
    /// mapping alive).
    pub(crate) fn remove(&mut self, id: u32) {
        self.maps.remove(&id);
        self.remote.remove(&id);
        self.bytes.remove(&id);
        self.disk.remove(&id);
    }

    /// Packs (local or remote), the local disk bytes they take, and the block bytes their
    /// entries hold.
    pub(crate) fn usage(&self) -> (u64, u64, u64) {
        let live = self.bytes.values().map(|b| b.live).sum();
        let count = (self.maps.len() + self.remote.len()) as u64;
        (count, self.disk.values().sum(), live)
    }
}

/// Turns segment `id` of `dir` into a pack on disk: its unwritten tail punched out (the file
/// keeps its size, so no mapping of it can fault past its end), the segment and its hint
/// renamed, the directory synced. Blocking.
pub(crate) fn convert_on_disk(dir: &Path, id: u32, records_end: u64) -> std::io::Result<()> {
    let segment = segment_path(dir, id);
    punch_tail(&segment, records_end)?;
    std::fs::rename(&segment, pack_path(dir, id))?;
    match std::fs::rename(hint_path(dir, id), pack_hint_path(dir, id)) {
        Ok(()) => {}
        // A segment sealed without a hint (it was damaged, or the hint write failed).
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    sync_dir(dir)
}

/// Removes pack `id` and its hint from `dir`, then syncs the directory. Blocking. A pack
/// already gone is fine: one that left the disk for the bucket has no local file.
pub(crate) fn remove_on_disk(dir: &Path, id: u32) -> std::io::Result<()> {
    for path in [pack_path(dir, id), pack_hint_path(dir, id)] {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    sync_dir(dir)
}

/// Gives the disk blocks of `path` from `from` (rounded up to a page) to its end back to the
/// file system, keeping the file's size. A file system without hole punching keeps them: that
/// costs space, not correctness.
fn punch_tail(path: &Path, from: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let file = std::fs::OpenOptions::new().write(true).open(path)?;
    let len = file.metadata()?.len();
    let start = from.div_ceil(4096) * 4096;
    if start >= len {
        return Ok(());
    }
    // SAFETY: fallocate on an fd we own, with a range inside the file; PUNCH_HOLE with
    // KEEP_SIZE changes no byte before `start` and does not change the file's length.
    let done = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            start as libc::off_t,
            (len - start) as libc::off_t,
        )
    };
    if done != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EOPNOTSUPP) {
            return Err(err);
        }
    }
    file.sync_all()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reclaim_picks_the_emptiest_pack_under_the_threshold() {
        let mut packs = Packs::default();
        let dir = tempfile::tempdir().unwrap();
        for id in 1..=3 {
            let path = dir.path().join(format!("{id}"));
            std::fs::write(&path, vec![0u8; 4096]).unwrap();
            packs.insert(
                id,
                MappedSegment::open(id, &path).unwrap(),
                1000,
                1000,
                1000,
            );
        }
        // A pack made from a segment whose other records were dead is reclaimable at once.
        let path = dir.path().join("4");
        std::fs::write(&path, vec![0u8; 4096]).unwrap();
        packs.insert(4, MappedSegment::open(4, &path).unwrap(), 1000, 5000, 5000);
        assert_eq!(packs.candidates(50), vec![4]);
        packs.remove(4);
        assert!(packs.candidates(50).is_empty());
        packs.release(2, 600);
        assert_eq!(packs.candidates(50), vec![2]);
        packs.release(3, 900);
        assert_eq!(packs.candidates(50), vec![3, 2]);
        assert!(packs.candidates(0).is_empty());
        packs.release(1, 1000);
        assert_eq!(packs.candidates(0), vec![1]);
        assert_eq!(packs.usage(), (3, 3 * 4096, 500));
        assert_eq!(packs.max_id(), Some(3));
    }

    /// A record of several pages comes back whole whether or not its first page was in the
    /// page cache (the prefetch is advice: it changes when the bytes arrive, not which).
    #[test]
    fn a_multi_page_record_reads_whole_whatever_is_resident() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1");
        let bytes: Vec<u8> = (0..64 << 10).map(|i: u32| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let mut packs = Packs::default();
        let map = MappedSegment::open(1, &path).unwrap();
        // Not yet touched through this mapping: the residency check runs either way.
        let loc = PackLoc {
            pack: 1,
            offset: 5000,
            len: 20_000,
            key_len: 10,
        };
        packs.insert(1, map, 20_000, 20_000, bytes.len() as u64);
        let record = packs.record(&loc).unwrap();
        assert_eq!(&record[..], &bytes[5000..5000 + loc.record_len()]);
        let again = packs.record(&loc).unwrap();
        assert_eq!(again, record);
        // Past the mapping: nothing, as before.
        let past = PackLoc {
            offset: 60 << 10,
            ..loc
        };
        assert!(packs.record(&past).is_none());
    }

    #[test]
    fn a_converted_segment_keeps_its_records_and_frees_its_tail() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = segment_path(dir.path(), 7);
        let mut bytes = vec![0u8; 1 << 20];
        bytes[..5000].fill(0xab);
        std::fs::write(&path, &bytes).unwrap();
        std::fs::write(hint_path(dir.path(), 7), b"hint").unwrap();
        convert_on_disk(dir.path(), 7, 5000).unwrap();
        let pack = pack_path(dir.path(), 7);
        let back = std::fs::read(&pack).unwrap();
        assert_eq!(back.len(), 1 << 20);
        assert!(back[..5000].iter().all(|&b| b == 0xab));
        assert!(back[5000..].iter().all(|&b| b == 0));
        // 8 KiB of records (two pages) stay allocated, the rest is returned (where supported).
        let blocks = std::fs::metadata(&pack).unwrap().blocks() * 512;
        assert!(blocks <= 64 << 10, "{blocks} bytes still allocated");
        assert_eq!(
            std::fs::read(pack_hint_path(dir.path(), 7)).unwrap(),
            b"hint"
        );
        assert!(!path.exists());
        remove_on_disk(dir.path(), 7).unwrap();
        assert!(!pack.exists());
    }
}
