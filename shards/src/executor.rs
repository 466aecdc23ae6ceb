//! A shard's thread: its executor (glommio, or the fallback driver's: see `rt`), its request
//! loop and its shutdown.
//!
//! The executor is built inside the shard's own thread, so a ring setup failure comes back as
//! an error naming its cause instead of a panic in a thread. Before it serves anything, the
//! shard opens its state (`startup`).

use std::path::PathBuf;
use std::rc::Rc;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

use ipfrs_core_types::{Config, IoDriver};
use ipfrs_tiering::ColdDamage;

use crate::hot::compaction;
use crate::open_state::{self, OpenState};
use crate::protocol::{Request, ShardHandle};
use crate::read_view::ReadView;
use crate::shard::Shard;
use crate::{Error, ExecutorFailure, Result, rt, startup};

/// A running shard: its handle and its thread.
pub struct ShardThread {
    handle: ShardHandle,
    thread: JoinHandle<()>,
    cold_damage: Arc<OnceLock<ColdDamage>>,
}

impl ShardThread {
    /// The client side of the shard.
    pub fn handle(&self) -> &ShardHandle {
        &self.handle
    }

    /// The damage the shard's cold backend showed at open, if any: the shard then serves its
    /// hot tier, and cold reads it cannot answer fail with the damage (see
    /// `ipfrs_tiering::backends::DamagedBackend`).
    pub fn cold_damage(&self) -> Option<&ColdDamage> {
        self.cold_damage.get()
    }

    /// Waits for the shard's thread to end (after a `Shutdown` request or once every handle is
    /// dropped).
    pub fn join(self) {
        // A panic in the shard thread has already been reported by the panic hook; there is
        // nothing left to recover at join time.
        let _ = self.thread.join();
    }
}

/// What the shard sends back once it is ready (or could not start).
type Ready = std::sync::mpsc::SyncSender<Result<Arc<ReadView>>>;

/// Starts shard `id` of `shards` over the backend directory `dir`, and waits until it serves
/// requests (bloom filter and counters rebuilt) or has failed to start.
pub fn start_shard(id: usize, shards: usize, config: &Config, dir: PathBuf) -> Result<ShardThread> {
    let (tx, rx) = flume::bounded(config.queue_depth.max(1));
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
    // Its sender lives exactly as long as the thread (dropped on return or unwind): waiters
    // watch it to learn that no reply can come any more (see `PendingReply::wait`).
    let (thread_alive, stopped) = flume::bounded::<()>(0);
    let config = config.clone();
    let cold_damage = Arc::new(OnceLock::new());
    let damage_slot = Arc::clone(&cold_damage);
    let thread = std::thread::Builder::new()
        .name(format!("ipfrs-shard-{id}"))
        .spawn(move || {
            let _alive = thread_alive;
            let on_panic = ready_tx.clone();
            // glommio panics rather than returns on some environment failures: a panic before
            // the shard is ready becomes `start_shard`'s error instead of a dead thread (which
            // `start_shard` could only report as a stopped shard). After it is ready, a panic
            // is a bug; waiters learn of it through `thread_alive`.
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                run_shard(id, shards, &config, dir, rx, ready_tx, &damage_slot)
            }));
            if let Err(panic) = ran {
                // Full (the shard reported already) or disconnected (`start_shard` returned):
                // then nobody waits for this.
                let _ = on_panic.try_send(Err(probe::start_panic_error(id, panic.as_ref())));
            }
        })
        .map_err(|e| Error::Executor {
            shard: id,
            cause: ExecutorFailure::Spawn(Arc::new(e)),
        })?;
    let started = ready_rx.recv().unwrap_or(Err(Error::Stopped { shard: id }));
    match started {
        Ok(view) => Ok(ShardThread {
            handle: ShardHandle::new(id, tx, stopped, view),
            thread,
            cold_damage,
        }),
        Err(err) => {
            let _ = thread.join();
            Err(err)
        }
    }
}

/// The CPUs this thread may run on (its affinity mask, inherited from the thread that opened
/// the engine), in ascending order. Under `taskset -c 2,3` or a container's cpuset these are
/// not 0..n, and pinning a shard to a CPU outside them fails.
pub(crate) fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity writes at most
    // size_of::<cpu_set_t>() bytes into it, and CPU_ISSET reads within it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            let n = std::thread::available_parallelism().map_or(1, |n| n.get());
            return (0..n).collect();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
            .collect()
    }
}

/// The shard's thread: builds its executor, opens its state (`startup`), serves until
/// shutdown, then finishes what had to wait for the backend to close.
fn run_shard(
    id: usize,
    shards: usize,
    config: &Config,
    dir: PathBuf,
    rx: flume::Receiver<Request>,
    ready: Ready,
    cold_damage: &OnceLock<ColdDamage>,
) {
    let started = build_executor(id, config).and_then(|executor| {
        Ok((
            executor,
            startup::open(id, shards, config, &dir, cold_damage)?,
        ))
    });
    let (executor, opened) = match started {
        Ok(started) => started,
        Err(err) => {
            let _ = ready.send(Err(err));
            return;
        }
    };
    let startup::Opened {
        shard,
        resume,
        next_seq,
        segments_dir,
    } = opened;
    // After the executor stops, segments kept for a backend without durable flushes are
    // removed, once that backend is really closed (dropped: parity-db writes everything out
    // when it is dropped).
    let backend_alive = Arc::downgrade(&shard.backend);
    let view = Arc::new(shard.view());
    let (deferred, open_state) = executor.run(async move {
        if let Some(hot) = &shard.hot {
            if let Err(err) = hot.start_writer(resume, next_seq).await {
                let _ = ready.send(Err(err.into_error(id, "starting the writer in", &hot.dir)));
                return (Vec::new(), None);
            }
            shard.lend_lane();
            let compacting = compaction::run(Rc::clone(&shard));
            if let Some(task) =
                rt::spawn_low_priority("ipfrs-compaction", COMPACTION_SHARES, compacting)
            {
                *hot.compaction.borrow_mut() = Some(task);
            }
            if let Some(remote) = &hot.remote {
                let uploading = crate::hot::remote::run(Rc::clone(&shard));
                if let Some(task) =
                    rt::spawn_low_priority("ipfrs-uploader", COMPACTION_SHARES, uploading)
                {
                    *remote.task.borrow_mut() = Some(task);
                }
            }
        }
        let _ = ready.send(Ok(view));
        serve(shard, rx).await
    });
    if backend_alive.upgrade().is_some() {
        return;
    }
    let deferred_done = deferred.into_iter().fold(true, |done, change| {
        let applied = change.apply(&segments_dir);
        if let Err(err) = &applied {
            eprintln!("ipfrs shard {id}: after closing the backend, {change:?}: {err}");
        }
        done && applied.is_ok()
    });
    // Saved last, over the closed backend's files as they stay: the fingerprint must see
    // every write the close made.
    if let Some(state) = open_state
        && deferred_done
        && cold_damage.get().is_none()
        && let Err(err) = open_state::save(&dir, config.backend, &state)
    {
        eprintln!(
            "ipfrs shard {id}: saving the open state (the next open walks the cold keys): {err}"
        );
    }
}

/// Builds the shard's executor on the configured I/O driver, pinned to its core when asked;
/// a refused io_uring is a typed error naming its cause.
fn build_executor(id: usize, config: &Config) -> Result<rt::Executor> {
    let cpu = config.pin_shards.then(|| {
        let cpus = allowed_cpus();
        cpus.get(id % cpus.len().max(1)).copied().unwrap_or(0)
    });
    // The engine resolves `Auto` once for all shards; a shard started on its own resolves it
    // here.
    let driver = match config.io_driver {
        IoDriver::Auto => resolve_io_driver(IoDriver::Auto).unwrap_or(IoDriver::Fallback),
        driver => driver,
    };
    if driver == IoDriver::IoUring {
        preflight(id)?;
    }
    // Fault injection (tests only, the `failpoints` feature): glommio panicking as it builds
    // the executor (engine/tests/io_uring_blocked.rs).
    fail::fail_point!("shard-start");
    let name = format!("ipfrs-shard-{id}");
    let options = rt::ExecutorOptions {
        name: &name,
        cpu,
        io_memory: config.io_memory_per_shard,
        blocking_threads: config.blocking_threads_per_shard,
        spin_before_park: config.spin_before_park,
    };
    rt::Executor::build(driver, &options).map_err(|err| classify(id, err))
}

/// The shard's main loop: dispatch until `Shutdown` (or until every sender is gone), then
/// let in-flight work finish, flush the backend and acknowledge the shutdown. Returns the
/// compacted segments whose files wait for the backend to be closed, and, after a clean
/// close, the state the next open may start from instead of walking the cold keys.
async fn serve(
    shard: Rc<Shard>,
    rx: flume::Receiver<Request>,
) -> (Vec<crate::hot::Deferred>, Option<OpenState>) {
    let mut shutdown_reply = None;
    while let Ok(request) = rx.recv_async().await {
        match request {
            Request::Shutdown { reply } => {
                shutdown_reply = Some(reply);
                break;
            }
            request => crate::requests::dispatch(&shard, request),
        }
    }
    // Compaction stops first: it finishes the step it is in (whose writes the committer
    // still takes), so none of its blocking calls outlives the executor; cancelled only if
    // the step does not end in time.
    if let Some(hot) = &shard.hot {
        hot.stopping.set(true);
        let _ = hot.wake_tx.try_send(());
        let compaction = hot.compaction.borrow_mut().take();
        if let Some(mut task) = compaction
            && bounded(&mut task).await.is_none()
        {
            task.cancel().await;
        }
        // The uploader too: a pack not uploaded now is uploaded after the next open.
        if let Some(remote) = &hot.remote {
            remote.wake();
            let uploader = remote.task.borrow_mut().take();
            if let Some(mut task) = uploader
                && bounded(&mut task).await.is_none()
            {
                task.cancel().await;
            }
        }
    }
    // Waits for the committer and every read task spawned through the gate, for a bounded
    // time: a backend call that never returns (a wedged backend after a disk error) must not
    // hang `close()`. What is still running then is dropped with the executor, as in a crash.
    let mut result = Ok(());
    if bounded(shard.gate.close()).await.is_none() {
        eprintln!(
            "ipfrs shard {}: in-flight work did not finish within {} s of shutdown (the \
             writer: {}; {} task(s) in all, the writer's included); closing without it",
            shard.id,
            SHUTDOWN_GRACE.as_secs(),
            shard.writes.stage.get(),
            shard.gate_tasks.get()
        );
        result = Err(Error::ShutdownTimeout {
            shard: shard.id,
            step: "in-flight work",
            secs: SHUTDOWN_GRACE.as_secs(),
        });
    }
    if let Some(hot) = &shard.hot {
        // Writes acknowledged under durability None become durable at a clean close.
        // The closing mark (an append of no records) names everything before it durable, so
        // the next recovery reports damage anywhere in the log as corruption: without it, the
        // last group's records could only be told apart from a torn write by the next group.
        shard.reclaim_lane(true);
        let writer = hot.writer.borrow_mut().take();
        let clean = shard.writes.poisoned().is_none();
        if let Some(mut writer) = writer
            && clean
        {
            let closed = match writer.sync().await {
                Ok(()) => writer.append(&[], true).await.map(|_| ()),
                Err(e) => Err(e),
            };
            if let Err(err) = closed {
                result = Err(err.into_error(shard.id, "the final sync of", &hot.dir));
            }
        }
    }
    // The flush runs on the blocking pool; if it never returns, its thread keeps the backend
    // (so nothing drops it and waits on it again) and the shard stops anyway.
    let flushed = bounded(shard.blocking(|backend| backend.flush()))
        .await
        .unwrap_or_else(|| {
            Err(Error::ShutdownTimeout {
                shard: shard.id,
                step: "the final flush",
                secs: SHUTDOWN_GRACE.as_secs(),
            })
        });
    if let Err(e) = &flushed {
        eprintln!("ipfrs shard {}: at shutdown: {e}", shard.id);
    }
    let result = result.and(flushed);
    // Only a close that made everything durable, with no write refused after a failed sync,
    // leaves a state: its filter and counts are then those of the store on disk.
    let open_state = (result.is_ok() && shard.writes.poisoned().is_none())
        .then(|| crate::checkpoint::state_of(&shard, false));
    let deferred = shard
        .hot
        .as_ref()
        .map(|hot| std::mem::take(&mut *hot.deferred.borrow_mut()))
        .unwrap_or_default();
    drop(shard);
    if let Some(reply) = shutdown_reply {
        let _ = reply.send(result);
    }
    (deferred, open_state)
}

/// How long shutdown waits for in-flight work, and then for the final flush, before it
/// gives up on them and reports it.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(20);

/// `work`'s output, or `None` if it takes longer than [`SHUTDOWN_GRACE`].
async fn bounded<T>(work: impl std::future::Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(work.await) }, async {
        crate::rt::sleep(SHUTDOWN_GRACE).await;
        None
    })
    .await
}

/// Compaction's share of its core against the foreground queue's default of 1000: it gets
/// about a tenth of the core while requests are waiting, all of it when the shard is idle.
const COMPACTION_SHARES: usize = 100;

/// The memlock limit below which glommio 0.9 refuses to build an executor (it checks this
/// itself, even for root), in bytes.
const GLOMMIO_MIN_MEMLOCK: u64 = 512 << 10;

/// Checks what glommio needs before asking it for an executor (`shard` names the caller in
/// errors). Call it before changing anything on disk, so a machine that cannot run shards
/// refuses the open without side effects. glommio reports a low memlock
/// limit as an untyped `io::Error`, and when the process's first ring is refused it panics in
/// a one-time probe that then stays poisoned for the whole process: both must be caught here.
pub fn preflight(shard: usize) -> Result<()> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } == 0
        && limit.rlim_cur < GLOMMIO_MIN_MEMLOCK
    {
        return Err(Error::MemlockTooLow {
            have: limit.rlim_cur,
            need: GLOMMIO_MIN_MEMLOCK,
        });
    }
    probe_io_uring(shard)
}

/// The driver the shards run with for `requested`: `Fallback` as asked; `IoUring` if this
/// process can run glommio's executors, else its error ([`Error::IoUringUnavailable`] naming
/// the refused call, or [`Error::MemlockTooLow`]); `Auto`: `IoUring` when it can, else
/// `Fallback` (said once per process on stderr, with the reason).
pub fn resolve_io_driver(requested: IoDriver) -> Result<IoDriver> {
    match requested {
        IoDriver::Fallback => Ok(IoDriver::Fallback),
        IoDriver::IoUring => preflight(0).map(|()| IoDriver::IoUring),
        IoDriver::Auto => match preflight(0) {
            Ok(()) => Ok(IoDriver::IoUring),
            Err(err) => {
                static SAID: std::sync::Once = std::sync::Once::new();
                SAID.call_once(|| {
                    eprintln!(
                        "ipfrs: io_uring cannot be used here ({err}); running on the fallback \
                         I/O driver (plain system calls, same format and guarantees)"
                    );
                });
                Ok(IoDriver::Fallback)
            }
        },
    }
}

// The io_uring probe and the naming of io_uring errors live behind the runtime seam, as they
// mirror what glommio does with io_uring rather than anything of the shard.
use crate::rt::probe::{self, classify, probe_io_uring};

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::allowed_cpus;

    #[test]
    fn allowed_cpus_follow_the_affinity_mask() {
        let all = allowed_cpus();
        assert!(!all.is_empty());
        let last = *all.last().unwrap();
        // A thread restricted to one CPU, as `taskset -c <last>` would restrict the process.
        let seen = std::thread::spawn(move || {
            // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET writes within it.
            unsafe {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(last, &mut set);
                assert_eq!(
                    libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
                    0
                );
            }
            allowed_cpus()
        })
        .join()
        .unwrap();
        assert_eq!(seen, vec![last]);
    }
}
