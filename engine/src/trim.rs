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

fn release_free_memory() {
    // SAFETY: malloc_trim takes no pointers; it only returns free pages to the kernel.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::malloc_trim(0);
    }
}
