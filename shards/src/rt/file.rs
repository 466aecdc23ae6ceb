//! Segment files under either driver: glommio's `DmaFile` (io_uring) or a plain file whose
//! calls run as system calls (the fallback).
//!
//! The fallback opens with O_DIRECT where the filesystem allows it, set after the open with
//! `fcntl(F_SETFL)` so that a filesystem refusing it (tmpfs) is told apart from a failed
//! create: such files are written through the page cache, and `fdatasync` makes them durable
//! all the same. Buffers are 4096-byte aligned either way, which O_DIRECT needs.

use std::fs::File;
use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use glommio::io::{DmaBuffer, DmaFile, OpenOptions};
use ipfrs_core_types::IoDriver;

use super::{driver, spawn_blocking};

/// O_DIRECT's alignment for buffers (and the writer's for offsets and lengths).
const ALIGN: usize = 4096;

/// A segment file open for reading and writing.
#[derive(Clone)]
pub(crate) enum SegmentFile {
    /// io_uring DMA.
    Dma(Rc<DmaFile>),
    /// System calls.
    Plain(Arc<PlainFile>),
}

/// The fallback's file: the descriptor and the path it was opened at.
pub(crate) struct PlainFile {
    file: File,
    /// For the power-cut simulation's journal (tests).
    #[cfg_attr(not(feature = "failpoints"), allow(dead_code))]
    path: PathBuf,
}

/// A write in flight: `None` if its task was cancelled.
pub(crate) type WriteTask = Pin<Box<dyn Future<Output = Option<io::Result<usize>>>>>;

/// glommio's error as an `io::Error` of the same kind, with its context in the message (a
/// full disk stays `StorageFull`, which is what the writer looks for).
pub(crate) fn io_error(err: glommio::GlommioError<()>) -> io::Error {
    let message = err.to_string();
    match err {
        glommio::GlommioError::IoError(e) => e,
        glommio::GlommioError::EnhancedIoError { source, .. } => {
            let kind = source.raw_os_error().map_or(source.kind(), |code| {
                io::Error::from_raw_os_error(code).kind()
            });
            io::Error::new(kind, message)
        }
        _ => io::Error::other(message),
    }
}

impl SegmentFile {
    /// Opens `path` for reading and writing; `create_new`: creates it, failing if it exists.
    pub(crate) async fn open(path: &Path, create_new: bool) -> io::Result<SegmentFile> {
        if driver() == IoDriver::Fallback {
            let path = path.to_path_buf();
            return spawn_blocking(move || PlainFile::open(path, create_new))
                .await
                .map(|file| SegmentFile::Plain(Arc::new(file)));
        }
        let mut options = OpenOptions::new();
        options.read(true).write(true);
        if create_new {
            options.create_new(true);
        }
        let file = options.dma_open(path).await.map_err(io_error)?;
        Ok(SegmentFile::Dma(Rc::new(file)))
    }

    /// Allocates `len` bytes for the file (its size becomes `len`).
    pub(crate) async fn pre_allocate(&self, len: u64) -> io::Result<()> {
        match self {
            SegmentFile::Dma(file) => file.pre_allocate(len, false).await.map_err(io_error),
            SegmentFile::Plain(file) => {
                let file = Arc::clone(file);
                spawn_blocking(move || file.allocate(len)).await
            }
        }
    }

    /// Closes the file (waiting for glommio's close; the fallback's closes when dropped).
    pub(crate) async fn close(self) {
        if let SegmentFile::Dma(file) = self
            && let Ok(file) = Rc::try_unwrap(file)
        {
            let _ = file.close().await;
        }
    }

    /// The path the file was opened at.
    #[cfg_attr(not(feature = "failpoints"), allow(dead_code))]
    pub(crate) fn path(&self) -> Option<PathBuf> {
        match self {
            SegmentFile::Dma(file) => file.path().map(|p| p.to_path_buf()),
            SegmentFile::Plain(file) => Some(file.path.clone()),
        }
    }

    /// A buffer of `len` bytes fit for a write to this file.
    pub(crate) fn alloc_buffer(&self, len: usize) -> Buffer {
        match self {
            SegmentFile::Dma(file) => Buffer::Dma(file.alloc_dma_buffer(len)),
            SegmentFile::Plain(_) => Buffer::Aligned(AlignedBuffer::new(len)),
        }
    }

    /// Starts writing `buffer` at `at` and returns the write in flight: a task on the shard
    /// (io_uring) or on the blocking pool (fallback); either way it runs without being polled.
    pub(crate) fn write_at(&self, buffer: Buffer, at: u64) -> WriteTask {
        match (self, buffer) {
            (SegmentFile::Dma(file), Buffer::Dma(buffer)) => {
                let file = Rc::clone(file);
                let task =
                    glommio::spawn_local(async move { file.write_at(buffer, at).await }).detach();
                Box::pin(async move { task.await.map(|r| r.map_err(io_error)) })
            }
            (SegmentFile::Plain(file), Buffer::Aligned(buffer)) => {
                let file = Arc::clone(file);
                let task = blocking::unblock(move || {
                    pwrite_all(file.file.as_raw_fd(), buffer.as_bytes(), at)
                });
                Box::pin(async move { Some(task.await) })
            }
            // `alloc_buffer` matches buffers to files.
            _ => Box::pin(async { Some(Err(io::Error::other("a buffer of the other driver"))) }),
        }
    }

    /// `fdatasync`, through io_uring or the blocking pool.
    pub(crate) async fn fdatasync(&self) -> io::Result<()> {
        match self {
            SegmentFile::Dma(file) => file.fdatasync().await.map_err(io_error),
            SegmentFile::Plain(file) => {
                let file = Arc::clone(file);
                spawn_blocking(move || fdatasync(file.file.as_raw_fd())).await
            }
        }
    }

    /// `fdatasync` as a system call on this thread.
    pub(crate) fn fdatasync_here(&self) -> io::Result<()> {
        fdatasync(self.as_raw_fd())
    }
}

impl AsRawFd for SegmentFile {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            SegmentFile::Dma(file) => file.as_raw_fd(),
            SegmentFile::Plain(file) => file.file.as_raw_fd(),
        }
    }
}

impl PlainFile {
    fn open(path: PathBuf, create_new: bool) -> io::Result<PlainFile> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(create_new)
            .mode(0o644)
            .open(&path)?;
        // SAFETY: fcntl on a descriptor `file` owns; F_GETFL/F_SETFL read and set its flags.
        unsafe {
            let flags = libc::fcntl(file.as_raw_fd(), libc::F_GETFL);
            // EINVAL where the filesystem has no O_DIRECT (tmpfs): buffered writes then.
            if flags >= 0 {
                let _ = libc::fcntl(file.as_raw_fd(), libc::F_SETFL, flags | libc::O_DIRECT);
            }
        }
        Ok(PlainFile { file, path })
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        let len =
            libc::off_t::try_from(len).map_err(|_| io::Error::other("length beyond off_t"))?;
        // SAFETY: fallocate on a descriptor `self` owns.
        let r = unsafe { libc::fallocate(self.file.as_raw_fd(), 0, 0, len) };
        if r == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        // A filesystem without fallocate: the size alone (its blocks come at the first write,
        // so a full disk shows there instead).
        if err.raw_os_error() == Some(libc::EOPNOTSUPP) {
            return self.file.set_len(len as u64);
        }
        Err(err)
    }
}

pub(crate) fn fdatasync(fd: RawFd) -> io::Result<()> {
    // SAFETY: fdatasync takes a descriptor, which the caller keeps open for the call.
    if unsafe { libc::fdatasync(fd) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Writes all of `data` at `at` with `pwrite` on the calling thread; returns the bytes
/// written, fewer only if the file ended.
pub(crate) fn pwrite_all(fd: RawFd, data: &[u8], at: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < data.len() {
        let rest = &data[done..];
        let offset = libc::off_t::try_from(at + done as u64)
            .map_err(|_| io::Error::other("write offset beyond off_t"))?;
        // SAFETY: `rest` is valid for reads of `rest.len()` bytes for the whole call, and the
        // caller keeps the descriptor open until the call returns.
        let n = unsafe { libc::pwrite(fd, rest.as_ptr().cast(), rest.len(), offset) };
        match n {
            n if n > 0 => done += n as usize,
            0 => break,
            _ => {
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    return Err(err);
                }
            }
        }
    }
    Ok(done)
}

/// A write buffer: glommio's DMA buffer, or a 4096-byte aligned one for the fallback.
pub(crate) enum Buffer {
    /// glommio's (registered with io_uring where memory allows).
    Dma(DmaBuffer),
    /// Aligned heap memory.
    Aligned(AlignedBuffer),
}

impl Buffer {
    /// Its length.
    pub(crate) fn len(&self) -> usize {
        match self {
            Buffer::Dma(b) => b.len(),
            Buffer::Aligned(b) => b.len,
        }
    }

    /// Its bytes.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            Buffer::Dma(b) => b.as_bytes(),
            Buffer::Aligned(b) => b.as_bytes(),
        }
    }

    /// Its bytes, to fill.
    pub(crate) fn as_bytes_mut(&mut self) -> &mut [u8] {
        match self {
            Buffer::Dma(b) => b.as_bytes_mut(),
            Buffer::Aligned(b) => b.as_bytes_mut(),
        }
    }

    /// Shortens it to `len` bytes.
    pub(crate) fn trim_to_size(&mut self, len: usize) {
        match self {
            Buffer::Dma(b) => b.trim_to_size(len),
            Buffer::Aligned(b) => b.len = b.len.min(len),
        }
    }
}

/// Heap memory whose first byte is 4096-byte aligned: a `Vec` over-allocated by the
/// alignment, used from the first aligned byte (no unsafe allocation code).
pub(crate) struct AlignedBuffer {
    bytes: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuffer {
    /// Its bytes.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[self.start..self.start + self.len]
    }

    /// Its bytes, to fill.
    pub(crate) fn as_bytes_mut(&mut self) -> &mut [u8] {
        &mut self.bytes[self.start..self.start + self.len]
    }

    /// `len` zeroed bytes, the first at a 4096-byte boundary.
    pub(crate) fn new(len: usize) -> AlignedBuffer {
        let bytes = vec![0u8; len + ALIGN];
        let start = bytes.as_ptr().align_offset(ALIGN);
        AlignedBuffer { bytes, start, len }
    }
}
