//! A gate for a shard's tasks: shutdown closes it and waits for every task spawned through it
//! (glommio's `sync::Gate`, for both drivers).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::task::{Poll, Waker};

use super::{Task, spawn_local};

/// Tasks spawned through it are waited for by [`Gate::close`]; once closed, it spawns no more.
#[derive(Default)]
pub(crate) struct Gate {
    inner: Rc<Inner>,
}

#[derive(Default)]
struct Inner {
    closed: Cell<bool>,
    running: Cell<usize>,
    closer: RefCell<Option<Waker>>,
}

/// The gate is closed: the shard is shutting down.
#[derive(Debug)]
pub(crate) struct Closed;

/// Held by a task of the gate until it ends or is dropped.
struct Pass(Rc<Inner>);

impl Drop for Pass {
    fn drop(&mut self) {
        let running = self.0.running.get() - 1;
        self.0.running.set(running);
        if running == 0
            && let Some(waker) = self.0.closer.borrow_mut().take()
        {
            waker.wake();
        }
    }
}

impl Gate {
    /// An open gate.
    pub(crate) fn new() -> Gate {
        Gate::default()
    }

    /// Spawns `future` as a task of the gate, unless the gate is closed.
    pub(crate) fn spawn<T: 'static>(
        &self,
        future: impl Future<Output = T> + 'static,
    ) -> Result<Task<T>, Closed> {
        if self.inner.closed.get() {
            return Err(Closed);
        }
        self.inner.running.set(self.inner.running.get() + 1);
        let pass = Pass(Rc::clone(&self.inner));
        Ok(spawn_local(async move {
            let _pass = pass;
            future.await
        }))
    }

    /// Closes the gate and waits until every task spawned through it has ended.
    pub(crate) async fn close(&self) {
        self.inner.closed.set(true);
        std::future::poll_fn(|cx| {
            if self.inner.running.get() == 0 {
                Poll::Ready(())
            } else {
                *self.inner.closer.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}
