//! Disk space: a reserve kept for deletes and compaction, and a check before cold writes.
//!
//! A full disk must be freeable with the store's own tools: a delete needs room for its
//! tombstone (a new hot segment when the active one is full), and compaction needs room in
//! the cold backend for the records it moves before it can remove their segment. So each
//! shard holds a reserve file (`shard-NNN/space.reserve`, preallocated with `fallocate`) that
//! puts can never use: when it is all that is left, puts fail with `NoSpace`, and a delete or
//! compaction step that needs the room releases it (truncates the file). It is taken back
//! after the next group once the space has returned (compaction removed a segment), and
//! while it is not whole, puts are refused, so the room goes to freeing space first.
//!
//! The cold backend is never written without room: sled 0.34 leaks an I/O buffer writer when
//! a blob write fails with ENOSPC (`Log::reserve` returns early after claiming its slot), and
//! from then on every flush, and every read of a blob written after it, waits forever. So a
//! write that would not fit fails here, before the backend sees it.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// Room kept free beyond what a cold write needs: the backend's log records, indexes and
/// metadata around the values.
pub(crate) const COLD_SLACK: u64 = 2 << 20;

/// Disk a cold write of `bytes` of values may take: the values (sled writes a large value to
/// a blob file and a pointer to its log), an eighth more for headers and pages, and
/// [`COLD_SLACK`].
pub(crate) fn cold_need(bytes: u64) -> u64 {
    bytes + bytes / 8 + COLD_SLACK
}

/// Free space (beyond the reserves) that writes which fill the disk must leave: new hot
/// segments for puts, and background compaction's cold writes. It is the cold room an
/// explicit compaction needs to move every live record of one segment of `segment_bytes` out
/// and remove it, so that after `block rm` a full disk can always be freed with `repo gc`
/// (the reserves then pay for the tombstones' own segment and for slack).
///
/// The checks read the space free for unprivileged writers (`f_bavail`): as root, writes
/// succeed past it into the blocks ext4 keeps for root, and a hot tier that grew into them
/// left compaction no room it could see (a full-disk test found it).
pub(crate) fn headroom(segment_bytes: u64) -> u64 {
    cold_need(segment_bytes)
}

/// Bytes that writes checked by [`Space::ensure`] in this process may still be writing: the
/// shards share the filesystem, so each counts the others' pending writes as taken.
static CLAIMED: AtomicU64 = AtomicU64::new(0);

/// Explicit compactions running, per store directory (see [`Freeing`]).
static FREEING: Mutex<Vec<(PathBuf, usize)>> = Mutex::new(Vec::new());

fn freeing_in(store: &Path) -> usize {
    let running = FREEING.lock().unwrap_or_else(PoisonError::into_inner);
    running
        .iter()
        .find(|(dir, _)| dir == store)
        .map_or(0, |(_, n)| *n)
}

/// Held for the length of an explicit compaction: while any runs in a store, none of its
/// shards takes its reserve back. Taking it back after every step gave the room a compaction
/// had just released to another shard's reserve (they share the filesystem), and the
/// compaction's next step found the disk as full as before (`repo gc` on a full disk then
/// stopped with `NoSpace`). Per store: other engines in the process are not held back.
pub(crate) struct Freeing(PathBuf);

impl Freeing {
    pub(crate) fn start(space: &Space) -> Freeing {
        let mut running = FREEING.lock().unwrap_or_else(PoisonError::into_inner);
        match running.iter_mut().find(|(dir, _)| *dir == space.store) {
            Some((_, n)) => *n += 1,
            None => running.push((space.store.clone(), 1)),
        }
        Freeing(space.store.clone())
    }

    /// Explicit compactions of the same store running besides this one.
    pub(crate) fn others(&self) -> usize {
        freeing_in(&self.0).saturating_sub(1)
    }

    /// Explicit compactions running in the store of `space`.
    pub(crate) fn running(space: &Space) -> usize {
        freeing_in(&space.store)
    }
}

impl Drop for Freeing {
    fn drop(&mut self) {
        let mut running = FREEING.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(at) = running.iter().position(|(dir, _)| *dir == self.0) {
            running[at].1 -= 1;
            if running[at].1 == 0 {
                running.swap_remove(at);
            }
        }
    }
}

/// Space counted as taken until dropped (after the write it was checked for).
#[derive(Debug)]
pub(crate) struct Claim(u64);

impl Drop for Claim {
    fn drop(&mut self) {
        CLAIMED.fetch_sub(self.0, Ordering::AcqRel);
    }
}

/// Room a delete needs at least, for the cold backend's log records of its deletes, once
/// the reserve is gone.
pub(crate) const DELETE_SLACK: u64 = 1 << 20;

/// The reserve's file name, in the shard's directory.
const RESERVE_FILE: &str = "space.reserve";

/// One shard's reserve and the filesystem it is on.
#[derive(Debug)]
pub(crate) struct Space {
    /// The store's directory (the shards' parent): what [`Freeing`] is counted by.
    store: PathBuf,
    /// The shard's directory (on the filesystem whose space is counted).
    dir: PathBuf,
    /// The reserve file; `None` when the reserve is off.
    reserve: Option<PathBuf>,
    /// Bytes the reserve should hold.
    target: u64,
    /// Set when a put was refused for want of a new segment's room, until a new segment
    /// fits again: until then every put is refused, even one that would still fit in the
    /// active segment, so that a full disk answers every write the same way.
    full: std::sync::atomic::AtomicBool,
    /// Bytes it holds now.
    held: AtomicU64,
}

impl Space {
    /// Opens the reserve of the shard in `dir`, taking up to `target` bytes (as much as the disk
    /// allows: a store opened on a full disk starts with a partial reserve and refuses puts
    /// until it is whole). Blocking.
    pub(crate) fn open(dir: &Path, target: u64) -> Space {
        let space = Space {
            dir: dir.to_path_buf(),
            store: dir.parent().unwrap_or(dir).to_path_buf(),
            reserve: (target > 0).then(|| dir.join(RESERVE_FILE)),
            target,
            full: std::sync::atomic::AtomicBool::new(false),
            held: AtomicU64::new(0),
        };
        if let Some(path) = &space.reserve {
            space.held.store(allocated(path), Ordering::Release);
            space.retake();
        }
        space
    }

    /// Bytes the reserve holds now.
    pub(crate) fn held(&self) -> u64 {
        self.held.load(Ordering::Acquire)
    }

    /// Bytes the reserve is meant to hold.
    pub(crate) fn target(&self) -> u64 {
        self.target
    }

    /// The shard's directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether puts were refused for want of a new segment's room since one last fitted.
    pub(crate) fn full(&self) -> bool {
        self.full.load(Ordering::Acquire)
    }

    /// Notes whether the last check for a new segment's room failed.
    pub(crate) fn set_full(&self, full: bool) {
        self.full.store(full, Ordering::Release);
    }

    /// Whether the reserve is whole (or off): puts may use the rest of the disk.
    pub(crate) fn whole(&self) -> bool {
        self.held.load(Ordering::Acquire) >= self.target
    }

    /// Bytes free for this process on the shard's filesystem. Blocking.
    pub(crate) fn free(&self) -> io::Result<u64> {
        free_bytes(&self.dir)
    }

    /// Makes sure `need` bytes are free, and `keep` more after them (beyond what other
    /// shards' checked writes may still take), releasing the reserve for it if `use_reserve`
    /// and that is what it takes. The returned claim counts the `need` bytes as taken until it
    /// is dropped, after the write. Returns the bytes free when they are not enough. Blocking.
    pub(crate) fn ensure(&self, need: u64, keep: u64, use_reserve: bool) -> Result<Claim, u64> {
        let available = || {
            // An unreadable filesystem size is not a reason to refuse: the write will say.
            self.free().map_or(u64::MAX, |f| {
                f.saturating_sub(CLAIMED.load(Ordering::Acquire))
            })
        };
        let want = need.saturating_add(keep);
        let mut free = available();
        if free < want && use_reserve && self.release() {
            free = available();
        }
        if free < want {
            return Err(free);
        }
        CLAIMED.fetch_add(need, Ordering::AcqRel);
        Ok(Claim(need))
    }

    /// Frees the reserve's blocks; true if it held any. Blocking.
    fn release(&self) -> bool {
        let Some(path) = &self.reserve else {
            return false;
        };
        if self.held.load(Ordering::Acquire) == 0 {
            return false;
        }
        let released = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|f| f.set_len(0));
        match released {
            Ok(()) => {
                self.held.store(0, Ordering::Release);
                true
            }
            Err(e) => {
                eprintln!(
                    "ipfrs: could not release the space reserve {}: {e}",
                    path.display()
                );
                false
            }
        }
    }

    /// Takes the reserve back, as far as the free space allows while leaving [`COLD_SLACK`]
    /// free (so a put refused for want of the reserve still leaves room for deletes) beyond
    /// what checked writes of any shard may still take: another shard's compaction step that
    /// was promised room must not find it gone, or its cold backend sees ENOSPC. Blocking.
    pub(crate) fn retake(&self) {
        let Some(path) = &self.reserve else {
            return;
        };
        let held = self.held.load(Ordering::Acquire);
        if held >= self.target || freeing_in(&self.store) > 0 {
            return;
        }
        let free = free_bytes(&self.dir)
            .unwrap_or(0)
            .saturating_sub(CLAIMED.load(Ordering::Acquire));
        let want = (self.target - held).min(free.saturating_sub(COLD_SLACK));
        if want == 0 {
            return;
        }
        if let Err(e) = preallocate(path, held + want) {
            eprintln!(
                "ipfrs: could not take back the space reserve {}: {e}",
                path.display()
            );
        }
        self.held.store(allocated(path), Ordering::Release);
    }
}

/// Bytes of `path` allocated on disk (0 if absent).
fn allocated(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map_or(0, |m| m.blocks() * 512)
}

/// Allocates the first `len` bytes of `path` (creating it), synced so that the space is
/// really held after a crash too.
fn preallocate(path: &Path, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    let len = i64::try_from(len).map_err(io::Error::other)?;
    // SAFETY: fallocate on a file descriptor this function owns; mode 0 allocates and
    // extends the file.
    if unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    file.sync_all()
}

/// Bytes free for unprivileged writers on the filesystem holding `dir` (what ENOSPC is
/// decided on for this process: root may use the blocks ext4 reserves, but the engine does
/// not count on them).
pub(crate) fn free_bytes(dir: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: a zeroed statvfs is a valid output buffer; statvfs reads the NUL-terminated
    // path and writes only the struct it is given.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(stat.f_bavail as u64 * stat.f_frsize as u64)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_held_released_for_a_need_and_taken_back() {
        let dir = tempfile::tempdir().unwrap();
        let space = Space::open(dir.path(), 1 << 20);
        assert!(space.whole());
        assert!(allocated(&dir.path().join(RESERVE_FILE)) >= 1 << 20);
        // A need that fits without it leaves it alone.
        assert!(space.ensure(1, 0, true).is_ok());
        assert!(space.whole());
        // A need beyond the disk releases it, and still fails, naming the space free.
        let free = space.ensure(u64::MAX, 0, true).unwrap_err();
        assert!(free > 0);
        assert!(!space.whole());
        assert_eq!(allocated(&dir.path().join(RESERVE_FILE)), 0);
        space.retake();
        assert!(space.whole());
        // Reopening finds what the file holds.
        drop(space);
        assert!(Space::open(dir.path(), 1 << 20).whole());
        // Off: always whole, never a file.
        let off = tempfile::tempdir().unwrap();
        let space = Space::open(off.path(), 0);
        assert!(space.whole());
        assert!(!off.path().join(RESERVE_FILE).exists());
    }
}
