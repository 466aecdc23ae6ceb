//! The one seam between the shards and their runtime: executors, tasks, timers, the blocking
//! pool and the segment files. Two drivers sit behind it:
//! - **io_uring**: a glommio executor per shard, its blocking pool, and DMA file I/O through
//!   io_uring;
//! - **fallback**: for processes that may not use io_uring (Docker's default seccomp profile
//!   refuses it, as do gVisor and many CI containers): an `async-executor` local executor per
//!   shard driven by `async-io` (epoll), the `blocking` crate's thread pool, and plain system
//!   calls (`pwrite`, `fallocate`, `fdatasync`) for the files.
//!
//! Everything else in the shards is written once against this module, so the on-disk format,
//! group commit, recovery, compaction and error rules are the same under both. A shard's
//! thread learns its driver when its executor starts ([`Executor::run`]); code running outside
//! any shard executor (glommio-based unit tests) counts as io_uring.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use ipfrs_core_types::IoDriver;

mod file;
mod gate;
pub(crate) mod probe;

pub(crate) use file::{AlignedBuffer, Buffer, SegmentFile, WriteTask, fdatasync, pwrite_all};
pub(crate) use gate::Gate;

thread_local! {
    /// The driver of the shard running on this thread (io_uring where none was set).
    static DRIVER: Cell<IoDriver> = const { Cell::new(IoDriver::IoUring) };
    /// The fallback driver's executor, while it runs.
    static LOCAL: RefCell<Option<Rc<async_executor::LocalExecutor<'static>>>> =
        const { RefCell::new(None) };
}

/// The driver of the shard executing on this thread: `IoUring` or `Fallback`.
pub(crate) fn driver() -> IoDriver {
    DRIVER.with(Cell::get)
}

/// A shard's executor, built on the shard's thread.
pub(crate) enum Executor {
    /// glommio (io_uring).
    Glommio(glommio::LocalExecutor),
    /// async-executor over async-io's epoll reactor.
    Fallback,
}

/// What building an executor needs beyond the driver.
pub(crate) struct ExecutorOptions<'a> {
    /// Thread and executor name.
    pub(crate) name: &'a str,
    /// The CPU to pin the thread to, if any.
    pub(crate) cpu: Option<usize>,
    /// glommio: memory registered with io_uring.
    pub(crate) io_memory: usize,
    /// glommio: threads of the shard's own blocking pool (the fallback shares the `blocking`
    /// crate's process-wide pool, which grows with demand).
    pub(crate) blocking_threads: usize,
    /// glommio: spin this long before parking (the fallback parks at once: its reactor's
    /// sleep is an epoll wait, with none of glommio's barrier cost to hide).
    pub(crate) spin_before_park: Option<Duration>,
}

impl Executor {
    /// Builds the executor for `driver` (`IoUring` or `Fallback`) on the calling thread.
    pub(crate) fn build(
        driver: IoDriver,
        options: &ExecutorOptions<'_>,
    ) -> Result<Executor, glommio::GlommioError<()>> {
        if driver == IoDriver::Fallback {
            if let Some(cpu) = options.cpu {
                pin_to(cpu);
            }
            return Ok(Executor::Fallback);
        }
        let placement = match options.cpu {
            Some(cpu) => glommio::Placement::Fixed(cpu),
            None => glommio::Placement::Unbound,
        };
        let mut builder = glommio::LocalExecutorBuilder::new(placement);
        if let Some(spin) = options.spin_before_park {
            builder = builder.spin_before_park(spin);
        }
        builder
            .name(options.name)
            .io_memory(options.io_memory)
            .blocking_thread_pool_placement(glommio::PoolPlacement::Unbound(
                options.blocking_threads.max(1),
            ))
            .make()
            .map(Executor::Glommio)
    }

    /// Runs `future` to completion on this thread; tasks it spawned and left running are
    /// dropped with the executor.
    pub(crate) fn run<T>(self, future: impl Future<Output = T>) -> T {
        match self {
            Executor::Glommio(executor) => {
                DRIVER.with(|d| d.set(IoDriver::IoUring));
                executor.run(future)
            }
            Executor::Fallback => {
                DRIVER.with(|d| d.set(IoDriver::Fallback));
                let executor = Rc::new(async_executor::LocalExecutor::new());
                LOCAL.with(|l| *l.borrow_mut() = Some(Rc::clone(&executor)));
                let out = async_io::block_on(executor.run(future));
                // Unfinished tasks are dropped here, while spawning still finds no executor
                // rather than a half-dropped one.
                let executor = LOCAL.with(|l| l.borrow_mut().take());
                drop(executor);
                out
            }
        }
    }
}

/// Pins the calling thread to `cpu` (the fallback's `Placement::Fixed`). A refusal (a cpuset
/// that changed under us) leaves the thread unpinned: placement is a performance hint.
fn pin_to(cpu: usize) {
    if cpu >= libc::CPU_SETSIZE as usize {
        return;
    }
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes within it (checked
    // bound above); sched_setaffinity reads size_of::<cpu_set_t>() bytes of it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        let _ = libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// A task on the shard's executor; dropping it cancels it (as with both runtimes' own).
#[must_use = "a dropped task is cancelled; use `detach` to let it run"]
pub(crate) enum Task<T> {
    /// glommio's task.
    Glommio(glommio::Task<T>),
    /// async-executor's task.
    Fallback(async_executor::Task<T>),
}

impl<T> Task<T> {
    /// Lets the task run to its end without anyone waiting for it.
    pub(crate) fn detach(self) {
        match self {
            Task::Glommio(task) => {
                task.detach();
            }
            Task::Fallback(task) => task.detach(),
        }
    }

    /// Cancels the task and waits until it has stopped; its output if it had finished.
    pub(crate) async fn cancel(self) -> Option<T> {
        match self {
            Task::Glommio(task) => task.cancel().await,
            Task::Fallback(task) => task.cancel().await,
        }
    }
}

impl<T> Future for Task<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match self.get_mut() {
            Task::Glommio(task) => Pin::new(task).poll(cx),
            Task::Fallback(task) => Pin::new(task).poll(cx),
        }
    }
}

/// Spawns `future` on this shard's executor, queued behind what is runnable now.
///
/// Under io_uring this is `spawn_local_into` the current task queue, as glommio's own `Gate`
/// spawns, and not `glommio::spawn_local`, which runs the new task at once: a committer
/// spawned by the first put of a burst then wrote and synced that put alone before the
/// shard had read the others waiting in its queue (16 writers: 30k -> 10k puts/s).
pub(crate) fn spawn_local<T: 'static>(future: impl Future<Output = T> + 'static) -> Task<T> {
    match driver() {
        IoDriver::Fallback => Task::Fallback(with_local(|executor| executor.spawn(future))),
        _ => {
            let queue = glommio::executor().current_task_queue();
            // The only error is an unknown queue, and the running task's queue is known.
            #[allow(clippy::expect_used)]
            let task =
                glommio::spawn_local_into(future, queue).expect("the running task's queue exists");
            Task::Glommio(task)
        }
    }
}

/// Spawns `future` at a low priority: under io_uring in its own task queue with `shares`
/// against the foreground's 1000, so it takes about `shares / 1000` of a busy core and all of
/// an idle one. The fallback executor has no priorities (it is fair between tasks, and the
/// background work yields at each step).
pub(crate) fn spawn_low_priority<T: 'static>(
    name: &'static str,
    shares: usize,
    future: impl Future<Output = T> + 'static,
) -> Option<Task<T>> {
    match driver() {
        IoDriver::Fallback => Some(spawn_local(future)),
        _ => {
            let queue = glommio::executor().create_task_queue(
                glommio::Shares::Static(shares),
                glommio::Latency::NotImportant,
                name,
            );
            glommio::spawn_local_into(future, queue)
                .ok()
                .map(Task::Glommio)
        }
    }
}

fn with_local<R>(f: impl FnOnce(&async_executor::LocalExecutor<'static>) -> R) -> R {
    LOCAL.with(|local| {
        let local = local.borrow();
        // Only shard code calls this, and only while its executor runs (`Executor::run`).
        #[allow(clippy::expect_used)]
        let executor = local
            .as_ref()
            .expect("spawn outside a running fallback executor");
        f(executor)
    })
}

/// Runs `f` on a blocking pool (the shard's under io_uring, the process's under the
/// fallback), so the shard's core never waits on it. Nothing starts until the future is
/// first polled.
pub(crate) async fn spawn_blocking<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    match driver() {
        IoDriver::Fallback => blocking::unblock(f).await,
        _ => glommio::executor().spawn_blocking(f).await,
    }
}

/// Waits `duration` on the shard's executor.
pub(crate) async fn sleep(duration: Duration) {
    match driver() {
        IoDriver::Fallback => {
            async_io::Timer::after(duration).await;
        }
        _ => {
            glommio::timer::sleep(duration).await;
        }
    }
}
