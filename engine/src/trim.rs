//! Returning the C allocator's free memory to the kernel on a timer.
//!
//! glibc keeps freed chunks in per-thread arenas and returns memory to the kernel only from
//! the top of each heap. Blocks churn through the block cache, compaction batches and the cold
//! backend's pages from many threads, so freed memory piles up behind live chunks and the
//! resident set stays far above what is live. `malloc_trim` releases those free pages.

use std::sync::{Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::{Error, Result};

/// The thread that trims, and the way to stop it.
pub(crate) struct Trimmer {
    stop: Mutex<Option<flume::Sender<()>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Trimmer {
    /// Starts trimming every `every`; `None` starts nothing.
    pub(crate) fn start(every: Option<Duration>) -> Result<Trimmer> {
        let Some(every) = every.filter(|_| SUPPORTED) else {
            return Ok(Trimmer {
                stop: Mutex::new(None),
                thread: Mutex::new(None),
            });
        };
        let (stop, stopped) = flume::bounded::<()>(0);
        let thread = std::thread::Builder::new()
            .name("ipfrs-trim".into())
            .spawn(move || {
                // Disconnection (the sender dropped) is the stop signal; a timeout is a tick.
                while let Err(flume::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    release_free_memory();
                }
            })
            .map_err(|e| Error::Storage(format!("cannot start the trim thread: {e}")))?;
        Ok(Trimmer {
            stop: Mutex::new(Some(stop)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Stops and joins the thread; idempotent.
    pub(crate) fn stop(&self) {
        drop(
            self.stop
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
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
