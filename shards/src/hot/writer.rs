//! The hot tier's appender: records into the active segment with io_uring DMA writes.
//!
//! Records are packed at 8-byte alignment, but O_DIRECT writes must start and end on 4096-byte
//! boundaries. So each append starts at the 4096-byte boundary at or before the append
//! position and first re-writes the bytes already there (`tail`, kept in memory): the rewritten
//! sector holds the same bytes as before, so a torn rewrite cannot change a synced record.
//! An append is cut into DMA buffers of `write_chunk_bytes`, each written as soon as it is
//! full, up to [`MAX_WRITES_IN_FLIGHT`] at once; then one fdatasync covers them (unless
//! durability is None).
//!
//! An append of at most [`DIRECT_MAX`] bytes into the active segment (a lone writer's put, a
//! small group) makes its write and its fdatasync as plain system calls on the shard's thread
//! instead: through io_uring both are handed to the kernel's io-wq workers (an O_DIRECT write
//! into preallocated, unwritten extents cannot be issued without blocking, and fsync never
//! can), and each hand-off is a thread wake-up, costly in a VM. A lone durable put went from
//! 1,253-1,423 to 2,412-2,665 per second that way, 16 writers from 18.8k to 22.3k, 4 KiB
//! batch ingest by 37% (`ipfrs-bench -w put --threads 1|16`, `-w ingest --size 4KiB`). The shard's thread
//! blocks for one small write and one sync, the time the group's waiters wait anyway; callers
//! that arrive meanwhile queue and form the next group, as they would have.
//!
//! Every append starts with a mark record naming the position up to which the log was durable
//! before it (see `ipfrs_tiering::segment::recover`): that is how recovery tells a torn tail
//! from corruption. When a record does not fit in the active segment, the segment is sealed
//! (it is synced with the rest of the append) and a new one is created, preallocated and its
//! directory entry synced before anything in it can be acknowledged.

use std::collections::VecDeque;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use ipfrs_tiering::segment::file::{segment_path, sync_dir};
use ipfrs_tiering::segment::recover::{MARK_KEY, Position, encode_mark};
use ipfrs_tiering::segment::{
    Alignment, HeaderDigest, MappedSegment, Payload, encode_header, encoded_len,
};

use super::lane::Lent;
use super::power_cut;
use crate::rt::{self, Buffer, SegmentFile, WriteTask};

/// O_DIRECT granularity: every write starts and ends on a multiple of this.
pub(crate) const DMA_ALIGN: u64 = 4096;

/// DMA buffers one append keeps in flight; filling the next waits for the oldest. Without a
/// cap an append allocated its whole size in DMA buffers at once, beside the records it was
/// given: 32 MiB more for a compaction rewrite of a full segment.
pub(crate) const MAX_WRITES_IN_FLIGHT: usize = 8;

/// Appends of at most this many bytes (mark, records and the rewritten tail) into the active
/// segment write and sync with system calls on the shard's thread (see the module docs).
/// Larger ones keep several DMA writes in flight through io_uring, where the parallelism pays.
pub(crate) const DIRECT_MAX: u64 = 128 << 10;

/// Records are padded to 8 bytes (see `Alignment::WORD`).
pub(crate) const RECORD_ALIGN: Alignment = Alignment::WORD;

pub(crate) fn align_down(v: u64) -> u64 {
    v & !(DMA_ALIGN - 1)
}

fn align_up(v: u64) -> u64 {
    (v + DMA_ALIGN - 1) & !(DMA_ALIGN - 1)
}

/// A record's length in a segment, padding included.
pub(crate) fn record_len(record: &Record<'_>) -> u64 {
    let data_len = record.payload.data().map_or(0, <[u8]>::len);
    encoded_len(record.key.len(), data_len, RECORD_ALIGN) as u64
}

/// A full disk is `NoSpace` (nothing was written, writing may resume once space is freed);
/// anything else is a write failure. Both drivers keep the OS error's kind (see
/// `rt::file::io_error`).
fn classify(err: io::Error, path: &Path) -> AppendError {
    let full = matches!(err.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
        || matches!(
            err.kind(),
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
        );
    if full {
        AppendError::NoSpace(path.to_path_buf())
    } else {
        AppendError::Write(err)
    }
}

/// Fault injection (tests only, the `failpoints` feature): a full disk at preallocation.
fn injected_preallocate_failure() -> Option<io::Error> {
    fail::fail_point!("hot-preallocate", |_| Some(io::Error::from_raw_os_error(
        libc::ENOSPC
    )));
    None
}

/// Fault injection (tests only): a write of `len` bytes that fails (EIO) or comes up short.
#[cfg_attr(not(feature = "failpoints"), allow(unused_variables))]
pub(crate) fn injected_write_outcome(len: usize) -> Option<Option<io::Result<usize>>> {
    fail::fail_point!("hot-write", |_| Some(Some(Err(
        io::Error::from_raw_os_error(libc::EIO)
    ))));
    fail::fail_point!("hot-short-write", |_| Some(Some(Ok(len / 2))));
    None
}

/// Fault injection (tests only): fdatasync reports an error (EIO).
pub(crate) fn injected_sync_failure() -> Option<io::Error> {
    fail::fail_point!("hot-sync", |_| Some(io::Error::from_raw_os_error(
        libc::EIO
    )));
    None
}

/// A write of `len` bytes as it came back (`None`: its task was cancelled): `Ok` only if
/// all of it was written.
pub(crate) fn write_outcome(outcome: Option<io::Result<usize>>, len: usize) -> io::Result<()> {
    match outcome {
        Some(Ok(n)) if n == len => Ok(()),
        Some(Ok(n)) => Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("short write: {n} of {len} bytes"),
        )),
        Some(Err(e)) => Err(e),
        None => Err(io::Error::other("write task was cancelled")),
    }
}

/// One record to append.
pub(crate) struct Record<'a> {
    pub(crate) key: &'a [u8],
    pub(crate) payload: Payload<'a>,
}

/// Why an append failed.
#[derive(Debug)]
pub(crate) enum AppendError {
    /// A new segment could not be allocated: the disk is full. Nothing was written, the log is
    /// unchanged, later appends may succeed once space is freed.
    NoSpace(PathBuf),
    /// A record cannot be encoded (key or payload length out of range); nothing was written.
    Invalid(String),
    /// A write failed or came up short. Some of the append may be on disk past the append
    /// position: the caller must stop writing (the shard goes read-only).
    Write(io::Error),
    /// The sync failed: after a failed fsync the kernel may have dropped dirty pages, so
    /// nothing unsynced may be acknowledged, ever (the shard goes read-only).
    Sync(io::Error),
}

/// A failed write or sync of an append, which its caller handles (see
/// [`AppendError::refused`]).
pub(crate) enum IoFailure {
    Write(io::Error),
    Sync(io::Error),
}

impl AppendError {
    /// The shard error for an append refused before anything was written (a full disk, a
    /// record the format cannot hold), the same wherever it happens; a failed write or sync
    /// comes back as `Err`, because what it means depends on the caller: start-up and the
    /// final sync report it, the group writer also makes the shard read-only.
    pub(crate) fn refused(self, shard: usize) -> Result<crate::Error, IoFailure> {
        match self {
            AppendError::NoSpace(path) => Ok(crate::Error::NoSpace {
                shard,
                path,
                detail: String::new(),
            }),
            AppendError::Invalid(reason) => Ok(crate::Error::RecordRefused { shard, reason }),
            AppendError::Write(e) => Err(IoFailure::Write(e)),
            AppendError::Sync(e) => Err(IoFailure::Sync(e)),
        }
    }

    /// The shard error for a failure outside a write group (starting the writer, the final
    /// sync), where no acknowledgement depends on it and so nothing is poisoned.
    pub(crate) fn into_error(
        self,
        shard: usize,
        operation: &'static str,
        dir: &std::path::Path,
    ) -> crate::Error {
        match self.refused(shard) {
            Ok(refused) => refused,
            Err(IoFailure::Write(e) | IoFailure::Sync(e)) => {
                crate::Error::segment_io(shard, operation, dir)(e)
            }
        }
    }
}

/// Where each appended record landed, and the segments the append created.
pub(crate) struct Appended {
    /// Per record, in input order: (segment, offset).
    pub(crate) locations: Vec<(u32, u32)>,
    /// Segments created by this append, to be registered for reads.
    pub(crate) new_segments: Vec<MappedSegment>,
    /// Bytes written to disk, rewrites of partial sectors included.
    pub(crate) disk_bytes: u64,
    /// The byte ranges appended, per segment: (segment, start, end).
    pub(crate) ranges: Vec<(u32, u64, u64)>,
    /// The segments this append sealed, with what a walk over their headers must find.
    pub(crate) sealed: Vec<Sealed>,
}

/// A segment as its writer sealed it: what a hint built from its records' headers alone
/// must agree with (see `append::write_hint`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sealed {
    /// The segment's number.
    pub(crate) segment: u32,
    /// Where its records end.
    pub(crate) end: u64,
    /// The [`HeaderDigest`] of its records as written; `None` when this writer did not write
    /// all of them (it resumed the segment after a restart).
    pub(crate) headers: Option<u64>,
}

/// The appender of one shard.
pub(crate) struct Writer {
    dir: PathBuf,
    segment_bytes: u64,
    chunk_bytes: usize,
    file: SegmentFile,
    active: u32,
    /// Where the next record goes in the active segment.
    pos: u64,
    /// The bytes between `align_down(pos)` and `pos`, rewritten by the next append.
    tail: Vec<u8>,
    /// Everything before this position is durable.
    durable: Position,
    /// Sealed segments written since the last sync.
    unsynced: Vec<SegmentFile>,
    seq: u64,
    /// The digest of the active segment's headers and keys, for its hint (see [`Sealed`]);
    /// `None` if the segment was resumed with records this writer did not write.
    headers: Option<HeaderDigest>,
}

impl Writer {
    /// Resumes appending to segment `active` at `pos`, whose last partial sector is `tail`
    /// and whose records before `pos` have the digest `headers` (`None` if unknown: that
    /// segment's hint then comes from a checked scan).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn resume(
        dir: &Path,
        active: u32,
        pos: u64,
        tail: Vec<u8>,
        seq: u64,
        headers: Option<HeaderDigest>,
        segment_bytes: u64,
        chunk_bytes: usize,
    ) -> io::Result<Writer> {
        let path = segment_path(dir, active);
        let file = SegmentFile::open(&path, false).await?;
        Ok(Writer {
            dir: dir.to_path_buf(),
            segment_bytes,
            chunk_bytes,
            file,
            active,
            pos,
            tail,
            // Recovery synced or zeroed everything before `pos`.
            durable: Position {
                segment: active,
                offset: pos,
            },
            unsynced: Vec::new(),
            seq,
            headers,
        })
    }

    /// Creates segment `id` (preallocated, directory entry durable) and maps it.
    pub(crate) async fn create_segment(
        dir: &Path,
        id: u32,
        segment_bytes: u64,
    ) -> Result<(SegmentFile, MappedSegment), AppendError> {
        let path = segment_path(dir, id);
        let file = SegmentFile::open(&path, true)
            .await
            .map_err(|e| classify(e, &path))?;
        // Fault injection (tests): a full disk when a segment is allocated.
        let allocated = match injected_preallocate_failure() {
            Some(e) => Err(e),
            None => file.pre_allocate(segment_bytes).await,
        };
        if let Err(e) = allocated {
            // Leave no half-made segment behind: recovery would map a short file.
            file.close().await;
            let _ = std::fs::remove_file(&path);
            return Err(classify(e, &path));
        }
        let created = power_cut::segment_created(&path, segment_bytes);
        let dir_owned = dir.to_path_buf();
        let synced = rt::spawn_blocking(move || sync_dir(&dir_owned)).await;
        synced.map_err(AppendError::Sync)?;
        power_cut::dir_synced(created);
        let map = MappedSegment::open(id, &path).map_err(AppendError::Write)?;
        Ok((file, map))
    }

    /// Lends the active segment's append state to callers' threads (see `super::lane`), if
    /// everything appended so far is durable: a lent writer must not be used until
    /// [`Self::take_back`].
    pub(crate) fn lend(&mut self) -> Option<Lent> {
        let synced = self.unsynced.is_empty()
            && self.durable
                == (Position {
                    segment: self.active,
                    offset: self.pos,
                });
        if !synced {
            return None;
        }
        Some(Lent {
            fd: self.file.as_raw_fd(),
            path: segment_path(&self.dir, self.active),
            segment_bytes: self.segment_bytes,
            active: self.active,
            pos: self.pos,
            tail: std::mem::take(&mut self.tail),
            seq: self.seq,
            headers: self.headers.take(),
        })
    }

    /// Takes back what [`Self::lend`] lent, with the appends made with it.
    pub(crate) fn take_back(&mut self, lent: Lent) {
        self.pos = lent.pos;
        self.tail = lent.tail;
        self.seq = lent.seq;
        self.headers = lent.headers;
        // Every lent append is synced before it returns.
        self.durable = Position {
            segment: self.active,
            offset: self.pos,
        };
    }

    /// The active segment's number.
    pub(crate) fn active(&self) -> u32 {
        self.active
    }

    /// Bytes left in the active segment: an append of more starts a new segment.
    pub(crate) fn room(&self) -> u64 {
        self.segment_bytes.saturating_sub(self.pos)
    }

    /// Appends `records` after a mark record, in order, and syncs if `sync`.
    pub(crate) async fn append(
        &mut self,
        records: &[Record<'_>],
        sync: bool,
    ) -> Result<Appended, AppendError> {
        let mut out = Appended {
            locations: Vec::with_capacity(records.len()),
            new_segments: Vec::new(),
            disk_bytes: 0,
            ranges: Vec::new(),
            sealed: Vec::new(),
        };
        if let Some(bad) = records
            .iter()
            .find_map(|r| encode_header(0, r.key, r.payload).err())
        {
            return Err(AppendError::Invalid(bad.to_string()));
        }
        let mark = encode_mark(self.durable);
        let mark_record = Record {
            key: MARK_KEY,
            payload: Payload::Data(&mark),
        };
        let mark_len = record_len(&mark_record);
        // Bytes of the mark and records not yet put: each pass's DMA buffers are sized to it
        // (with the tail, and never past the segment's end), not to a whole chunk.
        let mut left = mark_len + records.iter().map(record_len).sum::<u64>();
        // Small and within the active segment: system calls on this thread (module docs).
        let direct = (self.pos - align_down(self.pos)) + left <= DIRECT_MAX
            && self.pos + left <= self.segment_bytes
            && self.unsynced.is_empty();
        let mut next = 0;
        let mut first = true;
        while first || next < records.len() {
            let start = align_down(self.pos);
            let expected = ((self.pos - start) + left).min(self.segment_bytes - start);
            let mut chunks = Chunks::new(self.file.clone(), start, self.chunk_bytes, expected);
            chunks.direct = direct;
            chunks.put(&self.tail);
            let mut pos = self.pos;
            if first {
                first = false;
                left -= mark_len;
                if pos + mark_len <= self.segment_bytes {
                    self.put_record(&mut chunks, &mark_record, mark_len);
                    pos += mark_len;
                }
            }
            while let Some(record) = records.get(next) {
                let len = record_len(record);
                if pos + len > self.segment_bytes {
                    if pos == 0 {
                        // Config validation keeps blocks far below the segment size.
                        return Err(AppendError::Write(io::Error::other(
                            "record larger than a whole segment",
                        )));
                    }
                    break;
                }
                chunks.make_room(len).await;
                self.put_record(&mut chunks, record, len);
                // Segments are at most 4 GiB (config validation), so offsets fit in u32.
                out.locations.push((self.active, pos as u32));
                pos += len;
                left -= len;
                next += 1;
            }
            let (tail, written) = chunks.finish(pos).await.map_err(AppendError::Write)?;
            out.disk_bytes += written;
            out.ranges.push((self.active, self.pos, pos));
            self.pos = pos;
            self.tail = tail;
            if next < records.len() {
                self.roll_over(&mut out).await?;
            }
        }
        if sync {
            self.sync_with(direct).await?;
        }
        Ok(out)
    }

    /// Makes everything appended so far durable.
    pub(crate) async fn sync(&mut self) -> Result<(), AppendError> {
        self.sync_with(false).await
    }

    /// Makes everything appended so far durable; `direct`: with a system call on this thread
    /// (a small append's, see the module docs).
    async fn sync_with(&mut self, direct: bool) -> Result<(), AppendError> {
        // Fault injection (tests): fdatasync reports an error (EIO).
        if let Some(e) = injected_sync_failure() {
            return Err(AppendError::Sync(e));
        }
        for file in self.unsynced.drain(..) {
            power_cut::fdatasync(&file, false)
                .await
                .map_err(AppendError::Sync)?;
        }
        power_cut::fdatasync(&self.file, direct)
            .await
            .map_err(AppendError::Sync)?;
        self.durable = Position {
            segment: self.active,
            offset: self.pos,
        };
        Ok(())
    }

    /// Seals the active segment (synced) and starts a new one, if the active one holds
    /// anything; returns the new segment's mapping.
    pub(crate) async fn seal(&mut self) -> Result<Option<(MappedSegment, Sealed)>, AppendError> {
        if self.pos == 0 {
            return Ok(None);
        }
        self.sync().await?;
        let mut out = Appended {
            locations: Vec::new(),
            new_segments: Vec::new(),
            disk_bytes: 0,
            ranges: Vec::new(),
            sealed: Vec::new(),
        };
        self.roll_over(&mut out).await?;
        self.sync().await?;
        Ok(out.new_segments.pop().zip(out.sealed.pop()))
    }

    /// Seals the active segment and continues in a new one.
    async fn roll_over(&mut self, out: &mut Appended) -> Result<(), AppendError> {
        let id = self.active + 1;
        let (file, map) = Writer::create_segment(&self.dir, id, self.segment_bytes).await?;
        let sealed = std::mem::replace(&mut self.file, file);
        self.unsynced.push(sealed);
        out.new_segments.push(map);
        out.sealed.push(Sealed {
            segment: self.active,
            end: self.pos,
            headers: self.headers.as_ref().map(HeaderDigest::value),
        });
        self.headers = Some(HeaderDigest::default());
        self.active = id;
        self.pos = 0;
        self.tail.clear();
        Ok(())
    }

    fn put_record(&mut self, chunks: &mut Chunks, record: &Record<'_>, len: u64) {
        // Lengths were checked by the engine (block size limit far below the record limit).
        // `append` checked every record before writing any, so this cannot fail; a zero header
        // would read as the end of the log, which is why it is checked up front.
        let header = encode_header(self.seq, record.key, record.payload)
            .unwrap_or([0u8; ipfrs_tiering::segment::record::HEADER_LEN]);
        self.seq += 1;
        if let Some(digest) = &mut self.headers {
            digest.add(&header, record.key);
        }
        chunks.put(&header);
        chunks.put(record.key);
        let data = record.payload.data().unwrap_or(&[]);
        chunks.put(data);
        let unpadded = header.len() + record.key.len() + data.len();
        chunks.zeros(len as usize - unpadded);
    }
}

/// DMA buffers being filled for one contiguous write, each sent to the disk when full.
struct Chunks {
    file: SegmentFile,
    chunk_bytes: usize,
    /// Bytes still to be put (an upper bound): a buffer is no larger than this, rounded up to
    /// a sector. A group commit of a few small puts allocated a whole chunk (1 MiB) before:
    /// 15,171 of them in 30 s of the soak.
    expected: u64,
    current: Option<Buffer>,
    /// File position of `current`'s first byte.
    current_at: u64,
    /// Bytes filled in `current`.
    filled: usize,
    writes: VecDeque<(WriteTask, usize)>,
    /// Bytes of the writes awaited so far.
    written: u64,
    /// The first error among the writes awaited so far.
    failure: Option<io::Error>,
    /// Write each buffer with `pwrite` on this thread as it is sent (a small append).
    direct: bool,
}

impl Chunks {
    fn new(file: SegmentFile, at: u64, chunk_bytes: usize, expected: u64) -> Chunks {
        Chunks {
            file,
            chunk_bytes: chunk_bytes.max(DMA_ALIGN as usize),
            expected,
            current: None,
            current_at: at,
            filled: 0,
            writes: VecDeque::new(),
            written: 0,
            failure: None,
            direct: false,
        }
    }

    /// The buffer being filled: a chunk, or less when less is expected (whole sectors, so
    /// that a full buffer ends on a sector and the next one continues the same write).
    fn buffer(&mut self) -> &mut Buffer {
        let size = (align_up(self.expected.max(1)) as usize).min(self.chunk_bytes);
        let file = &self.file;
        self.current.get_or_insert_with(|| file.alloc_buffer(size))
    }

    /// Accounts for `n` bytes put; sends the buffer once full.
    fn filled_by(&mut self, n: usize, capacity: usize) {
        self.filled += n;
        self.expected = self.expected.saturating_sub(n as u64);
        if self.filled == capacity {
            self.send();
        }
    }

    fn put(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let filled = self.filled;
            let buf = self.buffer();
            let capacity = buf.len();
            let n = (capacity - filled).min(bytes.len());
            buf.as_bytes_mut()[filled..filled + n].copy_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            self.filled_by(n, capacity);
        }
    }

    fn zeros(&mut self, mut n: usize) {
        while n > 0 {
            let filled = self.filled;
            let buf = self.buffer();
            let capacity = buf.len();
            let k = (capacity - filled).min(n);
            buf.as_bytes_mut()[filled..filled + k].fill(0);
            n -= k;
            self.filled_by(k, capacity);
        }
    }

    /// Starts writing the current buffer (trimmed to whole sectors, zero padded).
    fn send(&mut self) {
        let Some(mut buf) = self.current.take() else {
            return;
        };
        let len = align_up(self.filled as u64) as usize;
        buf.as_bytes_mut()[self.filled..len].fill(0);
        buf.trim_to_size(len);
        power_cut::write_issued(&self.file, self.current_at, buf.as_bytes());
        let at = self.current_at;
        self.current_at += len as u64;
        self.filled = 0;
        if self.direct {
            let written = rt::pwrite_all(self.file.as_raw_fd(), buf.as_bytes(), at);
            let outcome = match injected_write_outcome(len) {
                Some(outcome) => outcome,
                None => Some(written),
            };
            self.note(outcome, len);
            return;
        }
        let task = self.file.write_at(buf, at);
        self.writes.push_back((task, len));
        #[cfg(test)]
        tests::PEAK_IN_FLIGHT.with(|peak| peak.set(peak.get().max(self.writes.len())));
    }

    /// Notes the outcome of a write of `len` bytes (`None`: its task was cancelled).
    fn note(&mut self, outcome: Option<io::Result<usize>>, len: usize) {
        match write_outcome(outcome, len) {
            Ok(()) => self.written += len as u64,
            Err(e) => {
                self.failure.get_or_insert(e);
            }
        }
    }

    /// Waits for enough writes that putting `len` more bytes keeps at most
    /// [`MAX_WRITES_IN_FLIGHT`] in flight. Putting them completes at most the current buffer
    /// and one per chunk of them (a buffer is a whole chunk, or all the append has left); a
    /// record longer than the cap's chunks waits for every write and is then sent whole.
    async fn make_room(&mut self, len: u64) {
        let completes = 1 + (len as usize).div_ceil(self.chunk_bytes);
        self.settle(MAX_WRITES_IN_FLIGHT.saturating_sub(completes))
            .await;
    }

    /// Waits for the oldest writes until at most `keep` are in flight, noting their outcome.
    async fn settle(&mut self, keep: usize) {
        while self.writes.len() > keep {
            let Some((task, len)) = self.writes.pop_front() else {
                break;
            };
            // Fault injection (tests): the write fails (EIO) or comes up short.
            let outcome = match injected_write_outcome(len) {
                Some(outcome) => {
                    // The real write still runs to completion before the error is reported.
                    let _ = task.await;
                    outcome
                }
                None => task.await,
            };
            self.note(outcome, len);
        }
    }

    /// Sends the last buffer and waits for every write. Returns the bytes of the partial last
    /// sector before `end` (the next append's `tail`) and the bytes written.
    async fn finish(mut self, end: u64) -> io::Result<(Vec<u8>, u64)> {
        let tail_from = align_down(end);
        let mut tail = Vec::new();
        if let Some(buf) = &self.current {
            let from = (tail_from - self.current_at) as usize;
            tail.extend_from_slice(&buf.as_bytes()[from..self.filled]);
        }
        self.send();
        self.settle(0).await;
        match self.failure {
            Some(e) => Err(e),
            None => Ok((tail, self.written)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::cell::Cell;

    use ipfrs_core_types::IoDriver;
    use ipfrs_tiering::segment::record::decode;

    use crate::rt::{Executor, ExecutorOptions};

    use super::*;

    thread_local! {
        /// The most writes one `Chunks` had in flight on this thread.
        pub(super) static PEAK_IN_FLIGHT: Cell<usize> = const { Cell::new(0) };
    }

    #[test]
    fn an_append_keeps_a_bounded_number_of_writes_in_flight() {
        for driver in [IoDriver::IoUring, IoDriver::Fallback] {
            // A thread per driver: a thread's driver is set once, by its executor.
            std::thread::spawn(move || bounded_writes_in_flight(driver))
                .join()
                .unwrap();
        }
    }

    fn bounded_writes_in_flight(driver: IoDriver) {
        const CHUNK: usize = 64 << 10;
        const SEGMENT: u64 = 16 << 20;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let options = ExecutorOptions {
            name: "writer-test",
            cpu: None,
            io_memory: 1 << 20,
            blocking_threads: 2,
            spin_before_park: None,
        };
        let executor = Executor::build(driver, &options).unwrap();
        executor.run(async move {
            let (file, _map) = Writer::create_segment(&path, 1, SEGMENT).await.unwrap();
            file.close().await;
            let mut writer = Writer::resume(
                &path,
                1,
                0,
                Vec::new(),
                1,
                Some(HeaderDigest::default()),
                SEGMENT,
                CHUNK,
            )
            .await
            .unwrap();
            // 4 MiB in 256 records: 64 chunks, eight times the cap.
            let keys: Vec<[u8; 8]> = (0..256u64).map(u64::to_be_bytes).collect();
            let data: Vec<Vec<u8>> = (0..256usize)
                .map(|i| vec![(i % 251) as u8; (16 << 10) - 64])
                .collect();
            let records: Vec<Record<'_>> = keys
                .iter()
                .zip(&data)
                .map(|(key, data)| Record {
                    key,
                    payload: Payload::Data(data),
                })
                .collect();
            PEAK_IN_FLIGHT.with(|peak| peak.set(0));
            let appended = writer.append(&records, true).await.unwrap();
            let peak = PEAK_IN_FLIGHT.with(Cell::get);
            assert!(
                peak >= 2,
                "{driver}: the writes were not overlapped: {peak}"
            );
            assert!(peak <= MAX_WRITES_IN_FLIGHT, "{peak} writes in flight");
            let bytes = std::fs::read(segment_path(&path, 1)).unwrap();
            for ((segment, offset), (key, data)) in
                appended.locations.iter().zip(keys.iter().zip(&data))
            {
                assert_eq!(*segment, 1);
                let record = decode(&bytes, *offset as usize, RECORD_ALIGN).unwrap();
                assert_eq!(record.key, key);
                assert_eq!(record.payload, Payload::Data(data));
            }
        });
    }
}
