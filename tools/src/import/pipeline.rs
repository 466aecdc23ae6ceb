//! One pass over a CAR stream: a reader thread frames sections into batches, hash threads
//! verify batches in parallel, the calling thread takes them back in file order, journals the
//! blocks each adds and hands it to store threads for `put_many`.
//!
//! ```text
//! reader --raw batches--> hash x N --verified--> in-order journal --> put_many x M
//!   ^------------------------- window: bytes in flight ------------------------'
//! ```
//!
//! Memory: the reader takes each section's bytes from the window before it goes on, and a
//! store thread gives them back once its batch is durable, so at most `window_bytes` (plus
//! one section) of block data is in memory whatever the input's size. Batches are dispatched
//! strictly in file order, and none after a bad one, so "the blocks before the error" is a
//! prefix of the file.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Condvar, Mutex, PoisonError};

use futures_lite::future::block_on;
use ipfrs_car::{CarError, CarReader, Section};
use ipfrs_storage::{Block, BlockStore, Cid};

use super::ImportOptions;
use super::error::{ImportError, Result};
use super::journal::Journal;

/// Bytes of block data in flight, bounded: a counting semaphore over bytes.
struct Window {
    limit: usize,
    state: Mutex<WindowState>,
    freed: Condvar,
}

struct WindowState {
    used: usize,
    closed: bool,
}

impl Window {
    fn new(limit: usize) -> Window {
        Window {
            limit,
            state: Mutex::new(WindowState {
                used: 0,
                closed: false,
            }),
            freed: Condvar::new(),
        }
    }

    /// Takes `n` bytes, waiting while the window is full (a section larger than the whole
    /// window gets it to itself); false once the window is closed.
    fn acquire(&self, n: usize) -> bool {
        // A poisoned lock only means another thread panicked holding it; the counters stay
        // consistent (each update is one statement), and the panic itself is reported.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        while !state.closed && state.used > 0 && state.used + n > self.limit {
            state = self
                .freed
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        if state.closed {
            return false;
        }
        state.used += n;
        true
    }

    fn release(&self, n: usize) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.used = state.used.saturating_sub(n);
        self.freed.notify_all();
    }

    /// Wakes and stops the reader: the import is ending early.
    fn close(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.closed = true;
        self.freed.notify_all();
    }
}

/// Sections framed by the reader, not yet verified.
struct RawBatch {
    seq: u64,
    sections: Vec<Section>,
    /// Window bytes the sections hold.
    bytes: usize,
    /// File bytes from the end of the previous batch to the end of this one (progress).
    file_bytes: u64,
    /// The framing error that ended the input after these sections.
    error: Option<CarError>,
    last: bool,
}

/// A batch whose blocks all hash to their CIDs, cut at the first that does not.
struct Verified {
    seq: u64,
    blocks: Vec<Block>,
    bytes: usize,
    file_bytes: u64,
    error: Option<CarError>,
    last: bool,
}

/// A batch for a store thread, journaled already.
struct PutJob {
    blocks: Vec<Block>,
    bytes: usize,
    file_bytes: u64,
}

/// What one input added.
pub(crate) struct Outcome {
    pub(crate) blocks: u64,
    pub(crate) bytes: u64,
    /// The CAR error that ended the input, after `blocks` were stored.
    pub(crate) error: Option<CarError>,
}

/// State shared by the store threads.
struct Stored {
    blocks: AtomicU64,
    bytes: AtomicU64,
    failed: AtomicBool,
    error: Mutex<Option<ipfrs_storage::Error>>,
}

/// Runs one input through the pipeline; see the module docs. A store or journal failure is
/// an error; a CAR error past the header comes back in [`Outcome::error`].
pub(crate) fn run<S: BlockStore, R: Read + Send>(
    store: &S,
    mut reader: CarReader<R>,
    journal: Option<&mut Journal>,
    options: &ImportOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Outcome> {
    progress(reader.offset());
    let window = Window::new(options.window_bytes);
    let (raw_tx, raw_rx) = mpsc::channel::<RawBatch>();
    let raw_rx = Mutex::new(raw_rx);
    let (done_tx, done_rx) = mpsc::channel::<Verified>();
    let (put_tx, put_rx) = mpsc::channel::<PutJob>();
    let put_rx = Mutex::new(put_rx);
    let stored = Stored {
        blocks: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        failed: AtomicBool::new(false),
        error: Mutex::new(None),
    };
    let (window, raw_rx, put_rx, stored) = (&window, &raw_rx, &put_rx, &stored);

    std::thread::scope(|scope| {
        let reader_thread = scope.spawn(move || read(&mut reader, options, window, raw_tx));
        let mut hashers = Vec::new();
        for _ in 0..options.hash_threads.max(1) {
            let done_tx = done_tx.clone();
            hashers.push(scope.spawn(move || hash(raw_rx, done_tx)));
        }
        drop(done_tx);
        let mut putters = Vec::new();
        for _ in 0..options.store_threads.max(1) {
            putters.push(scope.spawn(move || put(store, put_rx, window, stored, progress)));
        }

        let dispatched = dispatch(store, &done_rx, &put_tx, journal, stored);
        // Whatever happened, stop the reader (after an early stop it may wait for window
        // bytes that will not be freed now; after the last batch it has ended already) and
        // let the store threads drain what was dispatched.
        window.close();
        drop(put_tx);
        drop(done_rx);
        let mut panicked = reader_thread.join().is_err();
        for handle in hashers.into_iter().chain(putters) {
            panicked |= handle.join().is_err();
        }
        let (error, _) = dispatched?;
        if panicked {
            return Err(ImportError::Panicked);
        }
        let store_error = stored
            .error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(e) = store_error {
            return Err(ImportError::Store(e));
        }
        Ok(Outcome {
            blocks: stored.blocks.load(Ordering::Relaxed),
            bytes: stored.bytes.load(Ordering::Relaxed),
            error,
        })
    })
}

/// The reader thread: frames sections into batches of at most `batch_blocks` blocks or
/// `batch_bytes` bytes; the last batch carries the error that ended the input, if any.
fn read<R: Read>(
    reader: &mut CarReader<R>,
    options: &ImportOptions,
    window: &Window,
    tx: mpsc::Sender<RawBatch>,
) {
    let mut seq = 0;
    let mut start = reader.offset();
    let mut sections = Vec::new();
    let mut bytes = 0;
    loop {
        let (last, error) = match reader.next_section() {
            None => (true, None),
            Some(Err(e)) => (true, Some(e)),
            Some(Ok(section)) => {
                let len = section.data.len();
                if !window.acquire(len) {
                    return;
                }
                bytes += len;
                sections.push(section);
                (false, None)
            }
        };
        if last || sections.len() >= options.batch_blocks || bytes >= options.batch_bytes {
            let batch = RawBatch {
                seq,
                sections: std::mem::take(&mut sections),
                bytes: std::mem::take(&mut bytes),
                file_bytes: reader.offset() - start,
                error,
                last,
            };
            start = reader.offset();
            seq += 1;
            if tx.send(batch).is_err() || last {
                return;
            }
        }
    }
}

/// A hash thread: verifies whole batches, so batches (not blocks) are the unit of handoff.
fn hash(rx: &Mutex<Receiver<RawBatch>>, tx: mpsc::Sender<Verified>) {
    loop {
        let next = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(batch) = next else { return };
        let mut blocks = Vec::with_capacity(batch.sections.len());
        let mut error = None;
        for section in batch.sections {
            match section.verify() {
                Ok(block) => blocks.push(block),
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        let verified = Verified {
            seq: batch.seq,
            blocks,
            bytes: batch.bytes,
            file_bytes: batch.file_bytes,
            // A bad block comes before the framing error that ended the batch.
            last: batch.last || error.is_some(),
            error: error.or(batch.error),
        };
        if tx.send(verified).is_err() {
            return;
        }
    }
}

/// The calling thread: takes verified batches in file order; for each, asks which blocks are
/// new, journals them (synced), then hands the batch to a store thread. Stops after the last
/// batch, a bad one, or a store failure. Returns the CAR error, if any, and the batches
/// dispatched.
fn dispatch<S: BlockStore>(
    store: &S,
    done: &Receiver<Verified>,
    puts: &mpsc::Sender<PutJob>,
    mut journal: Option<&mut Journal>,
    stored: &Stored,
) -> Result<(Option<CarError>, u64)> {
    let mut waiting = BTreeMap::new();
    let mut next = 0;
    let mut dispatched = 0;
    for batch in done {
        waiting.insert(batch.seq, batch);
        while let Some(batch) = waiting.remove(&next) {
            next += 1;
            if stored.failed.load(Ordering::Acquire) {
                return Ok((None, dispatched));
            }
            if !batch.blocks.is_empty() {
                if let Some(journal) = journal.as_deref_mut() {
                    let cids: Vec<Cid> = batch.blocks.iter().map(|b| *b.cid()).collect();
                    let present = block_on(store.has_many(&cids))?;
                    let new: Vec<Cid> = cids
                        .into_iter()
                        .zip(present)
                        .filter_map(|(cid, present)| (!present).then_some(cid))
                        .collect();
                    journal.append(&new)?;
                }
                let job = PutJob {
                    blocks: batch.blocks,
                    bytes: batch.bytes,
                    file_bytes: batch.file_bytes,
                };
                if puts.send(job).is_err() {
                    // Every store thread is gone: they panicked (reported by the caller).
                    return Ok((None, dispatched));
                }
                dispatched += 1;
            }
            if batch.last {
                return Ok((batch.error, dispatched));
            }
        }
    }
    // The hash threads ended before the last batch: one of them panicked.
    Err(ImportError::Panicked)
}

/// A store thread: `put_many` of each batch; gives its bytes back to the window once durable.
fn put<S: BlockStore>(
    store: &S,
    rx: &Mutex<Receiver<PutJob>>,
    window: &Window,
    stored: &Stored,
    progress: &(dyn Fn(u64) + Sync),
) {
    loop {
        let next = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(job) = next else { return };
        if stored.failed.load(Ordering::Acquire) {
            window.release(job.bytes);
            continue;
        }
        match block_on(store.put_many(&job.blocks)) {
            Ok(()) => {
                stored
                    .blocks
                    .fetch_add(job.blocks.len() as u64, Ordering::Relaxed);
                stored.bytes.fetch_add(
                    job.blocks.iter().map(|b| b.len() as u64).sum(),
                    Ordering::Relaxed,
                );
                progress(job.file_bytes);
            }
            Err(e) => {
                stored.failed.store(true, Ordering::Release);
                stored
                    .error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get_or_insert(e);
                window.close();
            }
        }
        window.release(job.bytes);
    }
}
