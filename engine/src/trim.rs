//! Returning the C allocator's free memory to the kernel on a timer.
//!
//! glibc keeps freed chunks in per-thread arenas and returns memory to the kernel only from
//! the top of each heap. Blocks churn through the block cache, compaction batches and the cold
//! backend's pages from many threads, so freed memory piles up behind live chunks and the
//! resident set stays far above what is live. `malloc_trim` releases those free pages.

use std::time::Duration;

use crate::Result;
use crate::service::ServiceThread;

/// The thread that trims; stopped with the engine.
pub(crate) struct Trimmer(ServiceThread<()>);

impl Trimmer {
    /// Starts trimming every `every`; `None` (or a C library without `malloc_trim`) starts
    /// nothing.
    pub(crate) fn start(every: Option<Duration>) -> Result<Trimmer> {
        let Some(every) = every.filter(|_| SUPPORTED) else {
            return Ok(Trimmer(ServiceThread::none()));
        };
        tune_allocator();
        // Disconnection (the engine stopping) ends the loop; a timeout is a tick.
        ServiceThread::spawn("ipfrs-trim", Some(0), move |stop: flume::Receiver<()>| {
            while let Err(flume::RecvTimeoutError::Timeout) = stop.recv_timeout(every) {
                release_free_memory();
            }
        })
        .map(Trimmer)
    }

    /// Stops and joins the thread; idempotent.
    pub(crate) fn stop(&self) {
        self.0.stop();
    }
}

const SUPPORTED: bool = cfg!(all(target_os = "linux", target_env = "gnu"));

/// Sets glibc's allocator for block-sized buffers, once per process; a no-op on other C
/// libraries. The engine does it when it manages the allocator's free memory
/// ([`Config::release_free_memory_every`](crate::Config::release_free_memory_every)), and
/// `ipfrs-bench` before its first target, so that every target runs with the same settings.
///
/// Why: glibc serves an allocation above its mmap threshold (128 KiB at first, then raised
/// to the largest freed one) with a mapping of its own, which the kernel zeroes a page at a
/// time on first touch and unmaps on free. The engine's block-sized buffers (each DMA write's
/// buffer, each section of an import) paid a page fault per 4 KiB every time: over half the
/// kernel time of a 1 GiB CAR import of 256 KiB blocks (1.8 s of sys time, 0.8 s with these
/// settings). A fixed 4 MiB threshold serves them from the arenas, and a 64 MiB trim
/// threshold keeps a heap's free top for the next one; the timer's `malloc_trim` still
/// hands free memory back to the kernel.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        // SAFETY: mallopt only changes the allocator's thresholds; it takes no pointers.
        ONCE.call_once(|| unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
        });
    }
}

fn release_free_memory() {
    // SAFETY: malloc_trim takes no pointers; it only returns free pages to the kernel.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::malloc_trim(0);
    }
}
