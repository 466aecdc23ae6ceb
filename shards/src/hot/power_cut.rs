//! Power-cut simulation of the hot tier's files, for tests (engine/tests/power_loss.rs).
//!
//! The writer reports here every DMA write it issues, every fdatasync, every segment it creates
//! and every directory sync that makes a creation durable. Without the `failpoints` feature
//! these hooks are empty and compile to nothing. With it, they cost one atomic load until a
//! test process calls [`arm`]; from then on the process keeps a journal of everything not yet
//! durable, as a disk's volatile cache would hold it (LazyFS and redb's crash tests model the
//! same thing):
//! - each write since the last successful fdatasync of its file: path, offset, the bytes
//!   written and the bytes they replaced (read just before the write is issued; writes to a
//!   range never overlap in flight, since an append waits for its writes before the next
//!   rewrites its last sector);
//! - each segment created since the last sync of its directory (its name may vanish) or of
//!   the file itself (its preallocated size may be lost).
//!
//! At the armed event count the process writes the journal to a file, syncs it and kills
//! itself with SIGKILL from inside the hook, so no later write, sync or acknowledgement can
//! happen. The test then decides, per pending entry, what the power cut kept, and applies that
//! to the files ([`read_journal`] gives the entries in the order they happened). Exiting waits
//! for the process's in-flight io_uring requests (`io_uring_files_cancel` in `do_exit`), so the
//! files no longer change once the parent has reaped the child.

use std::path::Path;

use crate::rt::SegmentFile;

/// What a sync must clear from the journal once it has succeeded (nothing without the feature).
pub(crate) struct Ticket {
    #[cfg(feature = "failpoints")]
    inner: Option<(std::path::PathBuf, u64)>,
}

/// A DMA write of `data` at `at` in `file` is about to be issued.
#[inline]
pub(crate) fn write_issued(file: &SegmentFile, at: u64, data: &[u8]) {
    #[cfg(feature = "failpoints")]
    if sim::armed()
        && let Some(path) = file.path()
    {
        sim::write_issued(&path, at, data);
    }
    #[cfg(not(feature = "failpoints"))]
    let _ = (file, at, data);
}

/// [`write_issued`] for a write made outside the shard's writer, by a caller's thread
/// (`hot::lane`), which knows its file by path and descriptor.
#[inline]
pub(crate) fn write_issued_at(path: &Path, at: u64, data: &[u8]) {
    #[cfg(feature = "failpoints")]
    if sim::armed() {
        sim::write_issued(path, at, data);
    }
    #[cfg(not(feature = "failpoints"))]
    let _ = (path, at, data);
}

/// [`fdatasync`] of the descriptor `fd` of `path`, as a system call on this thread (a
/// caller's thread, `hot::lane`).
#[inline]
pub(crate) fn fdatasync_at(fd: std::os::fd::RawFd, path: &Path) -> std::io::Result<()> {
    #[cfg(feature = "failpoints")]
    let ticket = sim::armed().then(|| sim::sync_starts(path));
    #[cfg(not(feature = "failpoints"))]
    let _ = path;
    crate::rt::fdatasync(fd)?;
    #[cfg(feature = "failpoints")]
    if let Some(ticket) = ticket {
        sim::file_synced(&ticket.0, ticket.1);
    }
    Ok(())
}

/// `file.fdatasync()`, with the journal told which writes it made durable; `direct`: as a
/// system call on this thread rather than through io_uring (see `writer`'s module docs).
#[inline]
pub(crate) async fn fdatasync(file: &SegmentFile, direct: bool) -> std::io::Result<()> {
    #[cfg(feature = "failpoints")]
    let ticket = if sim::armed() {
        file.path().map(|path| sim::sync_starts(&path))
    } else {
        None
    };
    if direct {
        file.fdatasync_here()?;
    } else {
        file.fdatasync().await?;
    }
    #[cfg(feature = "failpoints")]
    if let Some(ticket) = ticket {
        sim::file_synced(&ticket.0, ticket.1);
    }
    Ok(())
}

/// Segment file `path` was created and preallocated to `len` bytes; its directory is synced
/// next (pass the ticket to [`dir_synced`] once it is).
#[inline]
pub(crate) fn segment_created(path: &Path, len: u64) -> Ticket {
    #[cfg(feature = "failpoints")]
    {
        Ticket {
            inner: sim::armed().then(|| sim::segment_created(path, len)),
        }
    }
    #[cfg(not(feature = "failpoints"))]
    {
        let _ = (path, len);
        Ticket {}
    }
}

/// The directory sync after a segment's creation succeeded.
#[inline]
pub(crate) fn dir_synced(ticket: Ticket) {
    #[cfg(feature = "failpoints")]
    if let Some((path, seq)) = ticket.inner {
        sim::dir_synced(&path, seq);
    }
    #[cfg(not(feature = "failpoints"))]
    let _ = ticket;
}

#[cfg(feature = "failpoints")]
pub use sim::{CutAt, Pending, arm, cut_now, read_journal};

#[cfg(feature = "failpoints")]
mod sim {
    use std::io::{self, Read, Write};
    use std::os::unix::fs::FileExt;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Mutex, MutexGuard, PoisonError};

    /// First bytes of a journal file.
    const MAGIC: &[u8; 8] = b"IPFcut01";
    /// Last bytes of a complete journal file: a journal without them was cut short.
    const END: &[u8; 4] = b"END!";
    const TAG_WRITE: u8 = 1;
    const TAG_CREATE: u8 = 2;

    static ARMED: AtomicBool = AtomicBool::new(false);
    static STATE: Mutex<Option<Journal>> = Mutex::new(None);

    /// Something not yet durable when the power was cut, in the order it happened.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Pending {
        /// A write not covered by a successful fdatasync of its file.
        Write {
            /// The segment file.
            path: PathBuf,
            /// Where the write starts.
            offset: u64,
            /// The bytes written.
            data: Vec<u8>,
            /// The file's bytes of that range just before the write (shorter if the file
            /// ended inside the range).
            prev: Vec<u8>,
        },
        /// A segment file whose creation is not durable in full.
        Create {
            /// The segment file.
            path: PathBuf,
            /// The size it was preallocated to.
            len: u64,
            /// Whether its directory was synced since: its name survives a power cut.
            entry_durable: bool,
            /// Whether the file was fdatasync'ed since: its size survives a power cut.
            size_durable: bool,
        },
    }

    struct Entry {
        seq: u64,
        pending: Pending,
    }

    /// When an armed process cuts its power.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum CutAt {
        /// At the n-th write, fdatasync, segment creation or directory sync (counting from 1).
        Event(u64),
        /// At the n-th segment creation, after the file is made and before its directory is
        /// synced: rare among all events, so asked for by itself.
        Creation(u64),
        /// Only when [`cut_now`] is called.
        Never,
    }

    struct Journal {
        path: PathBuf,
        cut_at: CutAt,
        events: u64,
        creations: u64,
        seq: u64,
        entries: Vec<Entry>,
    }

    /// Starts journaling this process's hot-tier writes; the power is cut (the journal is
    /// written to `journal`, synced, and the process killed with SIGKILL) at `cut_at`,
    /// counting from now.
    pub fn arm(journal: &Path, cut_at: CutAt) {
        *lock() = Some(Journal {
            path: journal.to_path_buf(),
            cut_at,
            events: 0,
            creations: 0,
            seq: 0,
            entries: Vec::new(),
        });
        ARMED.store(true, Ordering::Release);
    }

    /// Cuts the power now (see [`arm`]); does nothing if the journal is not armed.
    pub fn cut_now() {
        let mut state = lock();
        if let Some(journal) = state.as_mut() {
            journal.cut();
        }
    }

    /// The entries of a journal written at a power cut, in the order they happened.
    ///
    /// # Errors
    /// The file cannot be read, or it is not a complete journal.
    pub fn read_journal(path: &Path) -> io::Result<Vec<Pending>> {
        let mut bytes = Vec::new();
        std::fs::File::open(path)?.read_to_end(&mut bytes)?;
        let bad = || {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "not a complete power-cut journal",
            )
        };
        let body = bytes
            .strip_prefix(MAGIC.as_slice())
            .and_then(|b| b.strip_suffix(END.as_slice()))
            .ok_or_else(bad)?;
        let mut r = Reader { buf: body };
        let mut out = Vec::new();
        while !r.buf.is_empty() {
            let tag = r.take(1).ok_or_else(bad)?[0];
            let path_len = r.u64().ok_or_else(bad)? as usize;
            let path = PathBuf::from(
                String::from_utf8(r.take(path_len).ok_or_else(bad)?.to_vec()).map_err(|_| bad())?,
            );
            out.push(match tag {
                TAG_WRITE => {
                    let offset = r.u64().ok_or_else(bad)?;
                    let n = r.u64().ok_or_else(bad)? as usize;
                    let data = r.take(n).ok_or_else(bad)?.to_vec();
                    let n = r.u64().ok_or_else(bad)? as usize;
                    let prev = r.take(n).ok_or_else(bad)?.to_vec();
                    Pending::Write {
                        path,
                        offset,
                        data,
                        prev,
                    }
                }
                TAG_CREATE => {
                    let len = r.u64().ok_or_else(bad)?;
                    let flags = r.take(2).ok_or_else(bad)?;
                    Pending::Create {
                        path,
                        len,
                        entry_durable: flags[0] != 0,
                        size_durable: flags[1] != 0,
                    }
                }
                _ => return Err(bad()),
            });
        }
        Ok(out)
    }

    struct Reader<'a> {
        buf: &'a [u8],
    }

    impl<'a> Reader<'a> {
        fn take(&mut self, n: usize) -> Option<&'a [u8]> {
            if n > self.buf.len() {
                return None;
            }
            let (head, rest) = self.buf.split_at(n);
            self.buf = rest;
            Some(head)
        }

        fn u64(&mut self) -> Option<u64> {
            Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
        }
    }

    fn lock() -> MutexGuard<'static, Option<Journal>> {
        STATE.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn armed() -> bool {
        ARMED.load(Ordering::Acquire)
    }

    pub(super) fn write_issued(path: &Path, at: u64, data: &[u8]) {
        let prev = read_range(path, at, data.len());
        let mut state = lock();
        if let Some(journal) = state.as_mut() {
            journal.record(Pending::Write {
                path: path.to_path_buf(),
                offset: at,
                data: data.to_vec(),
                prev,
            });
            journal.event();
        }
    }

    /// Returns the ticket of the sync: the entries it covers are those before it.
    pub(super) fn sync_starts(path: &Path) -> (PathBuf, u64) {
        let mut state = lock();
        let seq = state.as_ref().map_or(0, |journal| journal.seq);
        if let Some(journal) = state.as_mut() {
            journal.event();
        }
        (path.to_path_buf(), seq)
    }

    pub(super) fn file_synced(path: &Path, before: u64) {
        if let Some(journal) = lock().as_mut() {
            journal.entries.retain_mut(|entry| {
                if entry.seq >= before {
                    return true;
                }
                match &mut entry.pending {
                    Pending::Write { path: p, .. } => p != path,
                    Pending::Create {
                        path: p,
                        entry_durable,
                        size_durable,
                        ..
                    } => {
                        if p == path {
                            *size_durable = true;
                        }
                        !(*entry_durable && *size_durable)
                    }
                }
            });
        }
    }

    pub(super) fn segment_created(path: &Path, len: u64) -> (PathBuf, u64) {
        let mut state = lock();
        let Some(journal) = state.as_mut() else {
            return (PathBuf::new(), 0);
        };
        journal.record(Pending::Create {
            path: path.to_path_buf(),
            len,
            entry_durable: false,
            size_durable: false,
        });
        let ticket = journal.seq;
        journal.creations += 1;
        if journal.cut_at == CutAt::Creation(journal.creations) {
            journal.cut();
        }
        journal.event();
        (
            path.parent().map(Path::to_path_buf).unwrap_or_default(),
            ticket,
        )
    }

    pub(super) fn dir_synced(dir: &Path, before: u64) {
        if let Some(journal) = lock().as_mut() {
            journal
                .entries
                .retain_mut(|entry| match &mut entry.pending {
                    Pending::Create {
                        path,
                        entry_durable,
                        size_durable,
                        ..
                    } if entry.seq < before => {
                        if path.parent() == Some(dir) {
                            *entry_durable = true;
                        }
                        !(*entry_durable && *size_durable)
                    }
                    _ => true,
                });
        }
    }

    /// The file's bytes at `at..at + len` (fewer where the file ends).
    fn read_range(path: &Path, at: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        let mut filled = 0;
        if let Ok(file) = std::fs::File::open(path) {
            while filled < len {
                match file.read_at(&mut buf[filled..], at + filled as u64) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => panic!("power-cut journal: reading {}: {e}", path.display()),
                }
            }
        }
        buf.truncate(filled);
        buf
    }

    impl Journal {
        fn record(&mut self, pending: Pending) {
            self.entries.push(Entry {
                seq: self.seq,
                pending,
            });
            self.seq += 1;
        }

        /// Counts one event; the armed one cuts the power.
        fn event(&mut self) {
            self.events += 1;
            if self.cut_at == CutAt::Event(self.events) {
                self.cut();
            }
        }

        /// Writes the journal durably and kills the process. Called with the state locked,
        /// so no other thread can journal (and so issue) anything meanwhile.
        fn cut(&mut self) -> ! {
            if let Err(e) = self.dump() {
                // The parent finds no journal and fails the test with this on stderr.
                eprintln!("power cut: writing {}: {e}", self.path.display());
            }
            // SAFETY: kill(2) on our own pid; no memory is passed.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
            loop {
                std::thread::park();
            }
        }

        fn dump(&self) -> io::Result<()> {
            let mut out = Vec::new();
            out.extend_from_slice(MAGIC);
            let put_bytes = |out: &mut Vec<u8>, bytes: &[u8]| {
                out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
                out.extend_from_slice(bytes);
            };
            for entry in &self.entries {
                match &entry.pending {
                    Pending::Write {
                        path,
                        offset,
                        data,
                        prev,
                    } => {
                        out.push(TAG_WRITE);
                        put_bytes(&mut out, path.as_os_str().as_encoded_bytes());
                        out.extend_from_slice(&offset.to_le_bytes());
                        put_bytes(&mut out, data);
                        put_bytes(&mut out, prev);
                    }
                    Pending::Create {
                        path,
                        len,
                        entry_durable,
                        size_durable,
                    } => {
                        out.push(TAG_CREATE);
                        put_bytes(&mut out, path.as_os_str().as_encoded_bytes());
                        out.extend_from_slice(&len.to_le_bytes());
                        out.push(u8::from(*entry_durable));
                        out.push(u8::from(*size_durable));
                    }
                }
            }
            out.extend_from_slice(END);
            let tmp = self.path.with_extension("tmp");
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&out)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        }
    }
}
