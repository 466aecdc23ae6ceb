//! A named thread fed over a channel, stopped by dropping the channel's sender.

use std::sync::{Mutex, PoisonError};
use std::thread::JoinHandle;

use crate::{Error, Result};

/// A thread serving messages of type `T`; `stop` lets it finish what was sent, then joins it.
pub(crate) struct ServiceThread<T> {
    sender: Mutex<Option<flume::Sender<T>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl<T: Send + 'static> ServiceThread<T> {
    /// Starts `serve` on a thread called `name`, over a channel holding up to `capacity`
    /// messages (`None`: unbounded). `serve` should return once its receiver disconnects.
    pub(crate) fn spawn(
        name: &str,
        capacity: Option<usize>,
        serve: impl FnOnce(flume::Receiver<T>) + Send + 'static,
    ) -> Result<ServiceThread<T>> {
        let (sender, receiver) = capacity.map_or_else(flume::unbounded, flume::bounded);
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || serve(receiver))
            .map_err(|source| Error::Thread {
                name: name.into(),
                source,
            })?;
        Ok(ServiceThread {
            sender: Mutex::new(Some(sender)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// A service with no thread, already stopped.
    pub(crate) fn none() -> ServiceThread<T> {
        ServiceThread {
            sender: Mutex::new(None),
            thread: Mutex::new(None),
        }
    }

    /// Sends `message`; false once stopped (or if the thread has ended).
    pub(crate) fn send(&self, message: T) -> bool {
        self.sender
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|sender| sender.send(message).is_ok())
    }

    /// Disconnects the channel and joins the thread; idempotent.
    pub(crate) fn stop(&self) {
        drop(
            self.sender
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
