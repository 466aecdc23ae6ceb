//! Segment files on disk: their names, their read-only mappings, and truncating a torn tail.
//!
//! ```text
//! shard-NNN/segments/00000001.seg   preallocated to the segment size, mapped once, read-only
//! ```
//! A mapping is shared through an `Arc`: every `Bytes` handed out by [`MappedSegment::slice`]
//! holds it, so a block a caller holds stays readable after compaction removes its file (the
//! kernel keeps an unlinked file's pages while a mapping of them lives).

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use memmap2::Mmap;

/// The extension of segment files.
const EXTENSION: &str = "seg";

/// The path of segment `id` in `dir`: eight decimal digits, so names sort in segment order.
pub fn segment_path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("{id:08}.{EXTENSION}"))
}

/// The segment files in `dir`, in ascending number order. Other files are ignored.
pub fn list_segments(dir: &Path) -> io::Result<Vec<(u32, PathBuf)>> {
    list_numbered(dir, EXTENSION)
}

/// The files `NNNNNNNN.<extension>` in `dir`, in ascending number order (segments, packs).
pub fn list_numbered(dir: &Path, extension: &str) -> io::Result<Vec<(u32, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some(extension) {
            continue;
        }
        let id = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse::<u32>().ok());
        if let Some(id) = id {
            out.push((id, path));
        }
    }
    out.sort_by_key(|(id, _)| *id);
    Ok(out)
}

/// A read-only mapping of a whole segment file.
#[derive(Clone)]
pub struct MappedSegment {
    id: u32,
    map: Arc<Mmap>,
    /// The whole mapping as one `Bytes` (owning a share of the mapping): every slice handed
    /// to a reader is a slice of it, which costs a reference-count increment, no allocation.
    whole: Bytes,
}

/// The page size the residency check assumes. Where pages are larger, `mincore` refuses the
/// unaligned address and the range is taken as resident: no readahead, reads as before.
const PAGE: usize = 4096;

/// Slices at least this long are read ahead in one request when their pages have not been:
/// more than four pages, which would otherwise be four or more separate disk reads.
const READ_AHEAD_FROM: usize = 16 << 10;

/// The owner `Bytes` keeps alive: a share of the mapping.
struct MappedBytes(Arc<Mmap>);

impl AsRef<[u8]> for MappedBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl MappedSegment {
    /// Maps the file at `path` (its current length) read-only.
    pub fn open(id: u32, path: &Path) -> io::Result<MappedSegment> {
        let file = File::open(path)?;
        // SAFETY: the mapping is read-only and segment files are only ever appended to by this
        // shard's writer, in regions no reader has been given yet (a record is indexed only
        // after its write completed), or zeroed past the end of the valid records during
        // recovery before the mapping is made. Bytes a reader holds never change.
        let map = unsafe { Mmap::map(&file)? };
        // Reads are point lookups: read-ahead would only pull in neighbours nobody asked for.
        let _ = map.advise(memmap2::Advice::Random);
        let map = Arc::new(map);
        Ok(MappedSegment {
            id,
            whole: Bytes::from_owner(MappedBytes(Arc::clone(&map))),
            map,
        })
    }

    /// The segment's number.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The whole mapping.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// The mapped length.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the mapping is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Tells the kernel the whole mapping is about to be read front to back (recovery's
    /// scan): large readahead instead of one page per fault. [`Self::reading_randomly`] undoes
    /// it.
    pub fn reading_sequentially(&self) {
        let _ = self.map.advise(memmap2::Advice::Sequential);
    }

    /// Back to point lookups: no readahead around faults.
    pub fn reading_randomly(&self) {
        let _ = self.map.advise(memmap2::Advice::Random);
    }

    /// Drops this process's page-table entries for the whole mapping (MADV_DONTNEED) after a
    /// background pass over it (hint file, compaction scan, recovery): the pages stay in the
    /// page cache, but they no longer count in the process's resident memory until read
    /// again.
    pub fn release(&self) {
        // SAFETY: the mapping is shared and read-only, so MADV_DONTNEED discards no data: a
        // later access (including through a `Bytes` a reader holds) faults the same file bytes
        // back in from the page cache or the disk.
        let _ = unsafe {
            self.map
                .unchecked_advise(memmap2::UncheckedAdvice::DontNeed)
        };
    }

    /// Asks the kernel to read `len` bytes at `offset` into the page cache in the background
    /// (MADV_WILLNEED). Records written with O_DIRECT bypass the page cache, so without this
    /// the first read of each one is a major page fault on the reader's thread.
    pub fn prefetch(&self, offset: usize, len: usize) {
        let start = offset & !(4096 - 1);
        let end = offset.saturating_add(len).min(self.map.len());
        if end > start {
            // Advice only: a failure leaves reads correct, just slower.
            let _ = self
                .map
                .advise_range(memmap2::Advice::WillNeed, start, end - start);
        }
    }

    /// `len` bytes at `offset`, about to be read, as a `Bytes` that borrows the mapping (no
    /// copy), or `None` if the range is outside it.
    ///
    /// A range of [`READ_AHEAD_FROM`] bytes or more whose first page is not in the page cache
    /// is first asked for whole (MADV_WILLNEED): the mapping is MADV_RANDOM, so the faults of
    /// the caller's pass over it would read it a page at a time, each waiting for the last:
    /// 64 disk reads for a 256 KiB block written with O_DIRECT (which leaves nothing in the
    /// page cache) or evicted since. Asked for whole, it is read in large requests while the
    /// pass starts. A resident range costs one `mincore` of one page.
    pub fn slice(&self, offset: usize, len: usize) -> Option<Bytes> {
        let end = offset.checked_add(len)?;
        if end > self.map.len() {
            return None;
        }
        let range = self.whole.slice(offset..end);
        if len >= READ_AHEAD_FROM && !first_page_resident(&range) {
            self.prefetch(offset, len);
        }
        Some(range)
    }

    /// `len` bytes at `offset` as a `Bytes` that borrows the mapping, for a caller that keeps
    /// it without reading it (a record left in place, its header checked): no readahead.
    pub fn slice_unread(&self, offset: usize, len: usize) -> Option<Bytes> {
        let end = offset.checked_add(len)?;
        (end <= self.map.len()).then(|| self.whole.slice(offset..end))
    }
}

/// Whether the page holding the first byte of `range` (a slice of a mapping) is in the page
/// cache: one `mincore` of one page, a fraction of a microsecond, where asking for the whole
/// range again would walk the page cache for each of its pages on every read.
fn first_page_resident(range: &[u8]) -> bool {
    let start = range.as_ptr() as usize & !(PAGE - 1);
    let mut resident = [0u8; 1];
    // SAFETY: `start` is the page-aligned start of the page holding `range[0]`, a page of
    // the live mapping that `range` keeps alive (mappings are page aligned, so the page is
    // inside it); mincore only reads the page tables and writes one byte (one page asked)
    // into `resident`.
    let rc = unsafe {
        libc::mincore(
            start as *mut libc::c_void,
            1,
            resident.as_mut_ptr().cast::<libc::c_uchar>(),
        )
    };
    // On an error (an address it refuses), say resident: the read goes on without readahead.
    rc != 0 || resident[0] & 1 == 1
}

/// Makes sure `path` is at least `len` bytes long with its blocks allocated, as a segment's
/// creation does: a crash between creating a segment file and preallocating it leaves a short
/// file, which the writer must not resume in (its mapping would not cover new records).
pub fn ensure_allocated(path: &Path, len: u64) -> io::Result<()> {
    let file = std::fs::OpenOptions::new().write(true).open(path)?;
    if file.metadata()?.len() >= len {
        return Ok(());
    }
    let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
    // SAFETY: fallocate on a file descriptor we own; no memory is passed.
    let rc = unsafe { libc::fallocate(fd, 0, 0, len as libc::off_t) };
    if rc != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EOPNOTSUPP) {
            return Err(err);
        }
        file.set_len(len)?;
    }
    file.sync_all()
}

/// Zeroes `path` from `from` to its end and makes that durable: a torn tail must not be met
/// again by the next recovery once new records are appended before it.
pub fn zero_tail(path: &Path, from: u64) -> io::Result<()> {
    let file = std::fs::OpenOptions::new().write(true).open(path)?;
    let len = file.metadata()?.len();
    if from >= len {
        return Ok(());
    }
    let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
    // SAFETY: fallocate on a file descriptor we own; no memory is passed.
    let rc = unsafe {
        libc::fallocate(
            fd,
            libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE,
            from as libc::off_t,
            (len - from) as libc::off_t,
        )
    };
    if rc != 0 {
        // Not every file system zeroes ranges (tmpfs does not): write the zeros instead.
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EOPNOTSUPP) {
            return Err(err);
        }
        write_zeros(&file, from, len)?;
    }
    file.sync_data()
}

fn write_zeros(file: &File, from: u64, to: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let zeros = vec![0u8; 1 << 20];
    let mut at = from;
    while at < to {
        let n = (to - at).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

/// Writes `bytes` as `path` durably: to `<path>.tmp`, synced, renamed into place, the
/// directory synced. A crash leaves either the old file (or none) or the whole new one.
pub fn write_durably(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Makes a directory's entries durable (after creating, renaming or removing a file in it).
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_and_list_in_order() {
        let dir = tempfile::tempdir().unwrap();
        for id in [10u32, 2, 1] {
            std::fs::write(segment_path(dir.path(), id), b"x").unwrap();
        }
        std::fs::write(dir.path().join("notes.txt"), b"ignored").unwrap();
        std::fs::write(dir.path().join("junk.seg"), b"ignored").unwrap();
        let ids: Vec<u32> = list_segments(dir.path())
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(ids, vec![1, 2, 10]);
        assert!(segment_path(dir.path(), 2).ends_with("00000002.seg"));
    }

    #[test]
    fn slices_outlive_the_file_and_the_segment_handle() {
        let dir = tempfile::tempdir().unwrap();
        let path = segment_path(dir.path(), 1);
        std::fs::write(&path, b"hello mapped world").unwrap();
        let seg = MappedSegment::open(1, &path).unwrap();
        let slice = seg.slice(6, 6).unwrap();
        assert!(seg.slice(10, 100).is_none());
        drop(seg);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(&slice[..], b"mapped");
    }

    #[test]
    fn slices_read_whole_whatever_is_resident() {
        let dir = tempfile::tempdir().unwrap();
        let path = segment_path(dir.path(), 1);
        let bytes: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        // Out of the page cache where the kernel agrees to drop it (a clean file's pages).
        let file = File::open(&path).unwrap();
        // SAFETY: plain advice on an open descriptor.
        unsafe {
            libc::posix_fadvise(
                std::os::fd::AsRawFd::as_raw_fd(&file),
                0,
                0,
                libc::POSIX_FADV_DONTNEED,
            )
        };
        let seg = MappedSegment::open(1, &path).unwrap();
        // Small, large across pages, and the mapping's last pages: the readahead is advice,
        // it changes when the bytes arrive, not which.
        assert_eq!(&seg.slice(100, 4000).unwrap()[..], &bytes[100..4100]);
        let (start, len) = (60 * PAGE + 10, 8 * PAGE);
        let large = seg.slice(start, len).unwrap();
        assert_eq!(&large[..], &bytes[start..start + len]);
        assert!(first_page_resident(&large), "read just now");
        let tail = bytes.len() - 5 * PAGE;
        assert_eq!(&seg.slice(tail, 5 * PAGE).unwrap()[..], &bytes[tail..]);
        let unread = seg.slice_unread(200 * PAGE, 10 * PAGE).unwrap();
        assert_eq!(&unread[..], &bytes[200 * PAGE..210 * PAGE]);
        assert!(seg.slice(bytes.len() - 10, 11).is_none());
        assert!(seg.slice_unread(bytes.len() - 10, 11).is_none());
    }

    #[test]
    fn zero_tail_clears_only_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.seg");
        std::fs::write(&path, vec![0xabu8; 10_000]).unwrap();
        zero_tail(&path, 4000).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 10_000);
        assert!(bytes[..4000].iter().all(|&b| b == 0xab));
        assert!(bytes[4000..].iter().all(|&b| b == 0));
    }
}
