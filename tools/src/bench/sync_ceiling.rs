//! The durability ceiling of the put workload: what a single writer gets from the disk when
//! every call must be durable before the next, i.e. one O_DIRECT write of one block and one
//! `fdatasync`, queue depth 1, per lane (`threads x in_flight` lanes, as the stores get).
//!
//! Each lane writes its own file in the run's directory, appending block after block into
//! space preallocated [`CHUNK`] at a time (as the engine's segments are preallocated), so the
//! figure is N independent writers, each paying its own sync; a store can only beat it by
//! sharing syncs among writers (group commit). Plain `pwrite` + `fdatasync` on the lane's own
//! thread, not io_uring: the ceiling must not depend on a driver, and a lane waits anyway.
//! With `--durability none` the lanes only write (the target is then named `disk/write`).

use std::fs::File;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use super::driver::{OpFuture, OpTarget};
use super::error::{BenchError, Result};
use super::workload::{Dataset, FreshBlocks, Op};

/// O_DIRECT alignment of offsets, lengths and buffers (the largest common logical block size).
const ALIGN: usize = 4096;

/// Space each lane's file is extended by when its writes reach the end: large enough that
/// extending is rare, small enough not to fill a small disk.
const CHUNK: u64 = 32 << 20;

/// One lane's file: where its next block goes and how far it is preallocated.
struct LaneFile {
    file: File,
    path: PathBuf,
    next: u64,
    allocated: u64,
    /// Over-allocated so an aligned window of any block length fits in it.
    buffer: Vec<u8>,
}

impl LaneFile {
    /// Creates `path` for O_DIRECT writes.
    fn create(path: PathBuf) -> Result<LaneFile> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_DIRECT)
            .open(&path)
            .map_err(|e| BenchError::io("cannot create with O_DIRECT", &path, e))?;
        Ok(LaneFile {
            file,
            path,
            next: 0,
            allocated: 0,
            buffer: Vec::new(),
        })
    }

    /// Writes `data` at the next aligned offset, then syncs it if `sync`.
    fn append(&mut self, data: &[u8], sync: bool) -> Result<()> {
        let len = data.len().div_ceil(ALIGN) * ALIGN;
        if self.next + len as u64 > self.allocated {
            let grow = CHUNK.max(len as u64);
            preallocate(&self.file, self.allocated, grow)
                .map_err(|e| BenchError::io("cannot preallocate", &self.path, e))?;
            self.allocated += grow;
        }
        if self.buffer.len() < len + ALIGN {
            self.buffer = vec![0; len + ALIGN];
        }
        // The window of the buffer that starts on an aligned address (O_DIRECT needs it).
        let start = self.buffer.as_ptr().align_offset(ALIGN);
        let window = &mut self.buffer[start..start + len];
        window[..data.len()].copy_from_slice(data);
        window[data.len()..].fill(0);
        self.file
            .write_all_at(window, self.next)
            .map_err(|e| BenchError::io("cannot write", &self.path, e))?;
        if sync {
            self.file
                .sync_data()
                .map_err(|e| BenchError::io("cannot fdatasync", &self.path, e))?;
        }
        self.next += len as u64;
        Ok(())
    }
}

/// Allocates `len` bytes of `file` from `offset` (the file grows to cover them).
fn preallocate(file: &File, offset: u64, len: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return Err(std::io::Error::other("file offset out of range"));
    };
    // SAFETY: fallocate reads only its integer arguments; the descriptor is open for writing
    // and outlives the call.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, offset, len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// One round's write+fdatasync ceiling.
pub struct SyncCeiling<'d> {
    dir: PathBuf,
    data: &'d Dataset,
    sync: bool,
    /// One file per lane: a call takes one, so with as many files as lanes none waits.
    files: Mutex<Vec<LaneFile>>,
    fresh: FreshBlocks,
}

impl<'d> SyncCeiling<'d> {
    /// The ceiling for `lanes` lanes writing blocks sized as `data`'s, in `dir` (created here);
    /// `sync`: fdatasync after each write.
    pub fn new(dir: &Path, data: &'d Dataset, lanes: usize, sync: bool) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| BenchError::io("cannot create", dir, e))?;
        let files = (0..lanes.max(1))
            .map(|lane| LaneFile::create(dir.join(format!("lane-{lane:03}.dat"))))
            .collect::<Result<Vec<_>>>()?;
        Ok(SyncCeiling {
            dir: dir.to_path_buf(),
            data,
            sync,
            files: Mutex::new(files),
            fresh: FreshBlocks::default(),
        })
    }

    /// Writes the next block through a free lane file.
    fn put(&self) -> Result<u64> {
        let k = self.fresh.take();
        let len = self.data.fresh_len(k)?;
        // The source block's bytes: the disk does not care that they are not the fresh ones.
        let source = (k % self.data.stored as u64) as usize;
        let taken = self.files.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut file = taken.ok_or_else(|| {
            BenchError::Internal("the sync ceiling has more callers than lanes".into())
        })?;
        let written = file.append(&self.data.data(source), self.sync);
        self.files
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(file);
        written.map(|()| len as u64)
    }

    /// Removes the lanes' files.
    pub fn close(self) -> Result<()> {
        drop(self.files);
        match std::fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(BenchError::io("cannot remove", &self.dir, e))
            }
            _ => Ok(()),
        }
    }
}

impl OpTarget for SyncCeiling<'_> {
    fn call(&self, op: Op) -> OpFuture<'_> {
        let result = match op {
            Op::PutNew => self.put(),
            other => Err(BenchError::Internal(format!(
                "the write+fdatasync ceiling has no {other:?}"
            ))),
        };
        Box::pin(async move { result })
    }

    fn blocking(&self) -> bool {
        true
    }

    fn scan(&self, _: usize, _: &mut dyn FnMut(Duration, usize)) -> Result<u64> {
        Err(BenchError::Internal(
            "the write+fdatasync ceiling cannot scan".into(),
        ))
    }
}

/// Whether O_DIRECT writes and fdatasync work in `dir`: `None` if so, else the reason.
pub fn probe(dir: &Path, fs_type: &str) -> Option<String> {
    if let Some(reason) = super::disk::refuses_o_direct(fs_type) {
        return Some(reason);
    }
    let path = dir.join("write-sync.probe");
    let result = LaneFile::create(path.clone()).and_then(|mut f| f.append(&[7; 100], true));
    let _ = std::fs::remove_file(&path);
    result.err().map(|e| format!("on {fs_type}: {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::bench::workload::SizeSpec;

    #[test]
    fn lanes_append_aligned_blocks_and_close_removes_them() {
        let tmp = tempfile::tempdir().unwrap();
        if let Some(reason) = probe(tmp.path(), "") {
            eprintln!("skipped: {reason}");
            return;
        }
        let data = Dataset::generate(SizeSpec::Fixed(5000), 3, 0, 0, (0, 0), 1).unwrap();
        let dir = tmp.path().join("ceiling");
        let ceiling = SyncCeiling::new(&dir, &data, 2, true).unwrap();
        for _ in 0..5 {
            let bytes = futures_lite::future::block_on(ceiling.call(Op::PutNew)).unwrap();
            assert_eq!(bytes, 5000);
        }
        // One lane did all five calls (one caller at a time): 5 blocks of two pages each.
        let sizes: Vec<u64> = {
            let files = ceiling.files.lock().unwrap();
            files.iter().map(|f| f.next).collect()
        };
        assert_eq!(sizes.iter().sum::<u64>(), 5 * 8192, "{sizes:?}");
        let written = std::fs::read(dir.join("lane-001.dat")).unwrap();
        assert_eq!(&written[8192..8192 + 5000], &data.data(1)[..]);
        assert!(futures_lite::future::block_on(ceiling.call(Op::Get(0))).is_err());
        ceiling.close().unwrap();
        assert!(!dir.exists());
    }
}
