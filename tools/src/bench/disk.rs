//! The disk ceiling: the same blocks written sequentially and read back at random with
//! glommio's O_DIRECT `DmaFile`, at the same queue depth (`threads x in_flight` requests in
//! flight; for get-many, each request a batch of reads issued together) as the stores, so
//! "vs ceiling" says how much of the disk a store gets.
//!
//! Each block sits at its own 4 KiB-aligned offset of one file, in ingest order; an ingest
//! batch is written block by block and then `fdatasync`ed (unless `--durability none`), as the
//! raw backends flush per batch. O_DIRECT reads bypass the page cache: a store that serves gets
//! from memory can beat this ceiling, and the ratio shows it. The executor registers only
//! [`IO_MEMORY`] with io_uring (memlock is often 8 MiB); larger buffers come from the heap.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use glommio::io::{DmaFile, OpenOptions};
use glommio::{LocalExecutorBuilder, Placement};

use super::cli::Plan;
use super::driver::{Lanes, Measurement, Schedule, join_all, lane, merge, op_weight};
use super::error::{BenchError, Result};
use super::workload::{Dataset, Op};

/// Memory the ceiling's executor registers with io_uring.
const IO_MEMORY: usize = 1 << 20;

/// O_DIRECT alignment used for offsets and lengths (the largest common logical block size).
const ALIGN: u64 = 4096;

/// The file name of the ceiling's data, in its own directory of the run.
const FILE: &str = "o_direct.dat";

/// One round's disk ceiling.
pub struct DiskTarget<'d> {
    path: PathBuf,
    data: &'d Dataset,
    /// Aligned offset of each stored block.
    offsets: Vec<u64>,
    sync: bool,
    /// Whether the file exists yet (reads open it, ingest creates it).
    written: bool,
}

fn aligned(len: u64) -> u64 {
    len.div_ceil(ALIGN) * ALIGN
}

fn glommio_error(what: &str, path: &Path, err: impl std::fmt::Display) -> BenchError {
    BenchError::Disk(format!("{what} {}: {err}", path.display()))
}

impl<'d> DiskTarget<'d> {
    /// The ceiling for `data`, writing in `dir` (created here).
    pub fn new(dir: &Path, data: &'d Dataset, plan: &Plan) -> Result<DiskTarget<'d>> {
        std::fs::create_dir_all(dir).map_err(|e| BenchError::io("cannot create", dir, e))?;
        let mut offsets = Vec::with_capacity(data.stored);
        let mut at = 0;
        for i in 0..data.stored {
            offsets.push(at);
            at += aligned(data.block_len(i) as u64);
        }
        Ok(DiskTarget {
            path: dir.join(FILE),
            data,
            offsets,
            sync: plan.durability.syncs(),
            written: false,
        })
    }

    /// Replays `ops` (ingest batches or gets) on a glommio executor of its own thread.
    pub fn run(
        &mut self,
        ops: &[Op],
        lanes: Lanes,
        duration: Option<Duration>,
    ) -> Result<Measurement> {
        let creates = matches!(ops.first(), Some(Op::Ingest { .. }));
        if !creates && !self.written {
            return Err(BenchError::Internal(
                "the disk ceiling reads before it wrote".into(),
            ));
        }
        let this = &*self;
        let outcome = std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    let executor = LocalExecutorBuilder::new(Placement::Unbound)
                        .name("ipfrs-bench-disk")
                        .io_memory(IO_MEMORY)
                        .make()
                        .map_err(|e| BenchError::Disk(format!("io_uring unavailable: {e}")))?;
                    executor.run(this.pass(ops, lanes, duration, creates))
                })
                .join()
                .unwrap_or_else(|_| Err(BenchError::Internal("the disk thread panicked".into())))
        });
        if creates && outcome.is_ok() {
            self.written = true;
        }
        outcome
    }

    async fn pass(
        &self,
        ops: &[Op],
        lanes: Lanes,
        duration: Option<Duration>,
        creates: bool,
    ) -> Result<Measurement> {
        let file = if creates {
            create(&self.path).await
        } else {
            DmaFile::open(&self.path).await.map_err(|e| e.to_string())
        }
        .map_err(|e| glommio_error("cannot open with O_DIRECT", &self.path, e))?;
        let total = lanes.threads * lanes.in_flight;
        let schedule = Schedule::new(ops, total, lanes.rate, duration);
        let futures: Vec<_> = (0..total)
            .map(|l| {
                lane(
                    &schedule,
                    l,
                    op_weight,
                    |op| self.call(&file, op),
                    |due| glommio::timer::sleep(due.saturating_duration_since(Instant::now())),
                )
            })
            .collect();
        let outputs = join_all(futures).await;
        let wall = schedule.elapsed();
        let closed = file
            .close()
            .await
            .map_err(|e| glommio_error("cannot close", &self.path, e));
        let measured = merge(outputs, wall)?;
        closed?;
        Ok(measured)
    }

    async fn call(&self, file: &DmaFile, op: Op) -> Result<u64> {
        match op {
            Op::Ingest { first, len } => {
                let mut bytes = 0;
                for i in first as usize..(first + len) as usize {
                    let data = self.data.data(i);
                    let mut buf = file.alloc_dma_buffer(aligned(data.len() as u64) as usize);
                    let dst = buf.as_bytes_mut();
                    dst[..data.len()].copy_from_slice(&data);
                    dst[data.len()..].fill(0);
                    file.write_at(buf, self.offsets[i])
                        .await
                        .map_err(|e| glommio_error("cannot write", &self.path, e))?;
                    bytes += data.len() as u64;
                }
                if self.sync {
                    file.fdatasync()
                        .await
                        .map_err(|e| glommio_error("cannot fdatasync", &self.path, e))?;
                }
                Ok(bytes)
            }
            Op::Get(i) => self.read(file, i as usize).await,
            // A batch's reads are all issued at once: the disk sees the batch as a queue.
            Op::GetMany { first, len } => {
                let blocks = self.data.sample_blocks(first as usize, len as usize);
                let reads = blocks
                    .iter()
                    .map(|&i| self.read(file, i as usize))
                    .collect();
                join_all(reads).await.into_iter().sum()
            }
            other => Err(BenchError::Internal(format!(
                "the disk ceiling has no {other:?}"
            ))),
        }
    }

    /// Reads block `i` back and checks its bytes; returns its length.
    async fn read(&self, file: &DmaFile, i: usize) -> Result<u64> {
        let want = self.data.data(i);
        let got = file
            .read_at_aligned(self.offsets[i], aligned(want.len() as u64) as usize)
            .await
            .map_err(|e| glommio_error("cannot read", &self.path, e))?;
        if got.len() < want.len() || got[..want.len()] != want[..] {
            return Err(BenchError::Check(format!(
                "disk ceiling: block {i} read back wrong"
            )));
        }
        Ok(want.len() as u64)
    }

    /// Removes the file.
    pub fn close(self) -> Result<()> {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(BenchError::io("cannot remove", &self.path, e))
            }
            _ => Ok(()),
        }
    }
}

/// Creates (or truncates) an O_DIRECT file open for reading and writing.
///
/// The file gets one page of data through the page cache first: glommio decides, per thread,
/// whether the device supports polled I/O by reading offset 0 of the first file it opens, and
/// on an empty file that read succeeds without touching the device, so it wrongly enables the
/// poll ring and every later DMA read fails with EOPNOTSUPP (seen on virtio disks).
async fn create(path: &Path) -> std::result::Result<DmaFile, String> {
    let seed_page = || -> std::io::Result<()> {
        use std::io::Write;
        let mut file = std::fs::File::create(path)?;
        file.write_all(&[0xa5; ALIGN as usize])?;
        file.sync_data()
    };
    seed_page().map_err(|e| e.to_string())?;
    OpenOptions::new()
        .read(true)
        .write(true)
        .dma_open(path)
        .await
        .map_err(|e| e.to_string())
}

/// Why a filesystem of type `fs_type` cannot give a disk figure (it refuses O_DIRECT), if it
/// cannot; the disk ceilings check this first.
pub fn refuses_o_direct(fs_type: &str) -> Option<String> {
    (fs_type == "tmpfs").then(|| {
        "the data directory is on tmpfs, which refuses O_DIRECT (use --dir on a disk-backed \
         filesystem)"
            .into()
    })
}

/// Whether O_DIRECT I/O through glommio works in `dir`: `None` if so, else the reason (the
/// filesystem refusing O_DIRECT, as tmpfs does, or io_uring being unavailable).
pub fn probe(dir: &Path, fs_type: &str) -> Option<String> {
    // glommio silently falls back to buffered I/O there; a "disk" figure would be memory.
    if let Some(reason) = refuses_o_direct(fs_type) {
        return Some(reason);
    }
    let path = dir.join("o_direct.probe");
    let result = std::thread::scope(|scope| {
        scope
            .spawn(|| -> Result<(), String> {
                let executor = LocalExecutorBuilder::new(Placement::Unbound)
                    .io_memory(IO_MEMORY)
                    .make()
                    .map_err(|e| format!("io_uring unavailable: {e}"))?;
                executor.run(async {
                    let file = create(&path).await.map_err(|e| {
                        format!("the {fs_type} filesystem refuses O_DIRECT files ({e})")
                    })?;
                    let mut buf = file.alloc_dma_buffer(ALIGN as usize);
                    buf.as_bytes_mut().fill(7);
                    let wrote = file.write_at(buf, 0).await;
                    let read = file.read_at_aligned(0, ALIGN as usize).await;
                    let _ = file.close().await;
                    wrote.map_err(|e| format!("O_DIRECT write failed on {fs_type}: {e}"))?;
                    let read = read.map_err(|e| format!("O_DIRECT read failed: {e}"))?;
                    if read.iter().all(|&b| b == 7) && read.len() == ALIGN as usize {
                        Ok(())
                    } else {
                        Err("O_DIRECT read back wrong bytes".into())
                    }
                })
            })
            .join()
            .unwrap_or_else(|_| Err("the O_DIRECT probe panicked".into()))
    });
    let _ = std::fs::remove_file(&path);
    result.err()
}
