//! Replays a workload's operations on a target with `threads x in_flight` concurrent lanes, in
//! closed loop (each lane issues its next op when the last one answers) or open loop
//! (`--rate`: op `i` is due at `start + i / rate`, and its latency runs from that intended
//! time, so a stall is charged to every op it delayed: no coordinated omission).
//!
//! Lanes are async so one client thread can keep several engine requests in flight; targets
//! whose calls block (raw backends) and open-loop runs (which sleep) get one thread per lane.
//! The disk ceiling drives the same lanes on its own glommio executor (see `disk`).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::error::{BenchError, Result};
use super::workload::Op;

/// A target's answer to one op: the block bytes it moved.
pub type OpFuture<'a> = Pin<Box<dyn Future<Output = Result<u64>> + Send + 'a>>;

/// Something ops can be replayed on from plain threads.
pub trait OpTarget: Sync {
    /// Performs `op`, checking the answer (a stored block found with its length, an absent
    /// one not found).
    fn call(&self, op: Op) -> OpFuture<'_>;

    /// Whether `call`'s future blocks its thread instead of waiting (then each lane gets a
    /// thread of its own).
    fn blocking(&self) -> bool;

    /// Lists every stored CID, `page` at a time, calling `on_page(latency, count)` per page;
    /// returns the total count.
    fn scan(&self, page: usize, on_page: &mut dyn FnMut(Duration, usize)) -> Result<u64>;
}

/// What one measured pass did.
pub struct Measurement {
    /// Operations completed (blocks or keys for batched calls, keys for scan).
    pub ops: u64,
    /// Block bytes moved.
    pub bytes: u64,
    /// Wall time of the pass.
    pub wall: Duration,
    /// Latency per call, nanoseconds.
    pub hist: Histogram<u64>,
}

/// A latency histogram in nanoseconds (1 ns to 1 hour, 3 significant digits).
pub fn histogram() -> Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3)
        .map_err(|e| BenchError::Internal(format!("latency histogram: {e}")))
}

/// Nanoseconds of `d`, at least 1 (the histogram's lowest value).
pub fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1)
}

/// How the ops of one pass are handed out to lanes.
pub struct Schedule<'a> {
    ops: &'a [Op],
    lanes: usize,
    rate: Option<f64>,
    start: Instant,
    /// Duration mode: cycle through `ops` until then; else run each op once.
    until: Option<Instant>,
    next: AtomicUsize,
    stop: AtomicBool,
}

impl<'a> Schedule<'a> {
    /// A pass over `ops` by `lanes` lanes starting now, for `duration` if given.
    pub fn new(
        ops: &'a [Op],
        lanes: usize,
        rate: Option<f64>,
        duration: Option<Duration>,
    ) -> Schedule<'a> {
        let start = Instant::now();
        Schedule {
            ops,
            lanes: lanes.max(1),
            rate,
            start,
            until: duration.map(|d| start + d),
            next: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        }
    }

    /// The lane's next op and, in open loop, the time it is due; `None` when the pass is over.
    /// `issued` counts the lane's ops so far.
    fn next(&self, lane: usize, issued: &mut usize) -> Option<(Op, Option<Instant>)> {
        if self.ops.is_empty() || self.stop.load(Ordering::Relaxed) {
            return None;
        }
        let (index, due) = match self.rate {
            None => (self.next.fetch_add(1, Ordering::Relaxed), None),
            Some(rate) => {
                let index = lane + self.lanes * *issued;
                let due = self.start + Duration::from_secs_f64(index as f64 / rate);
                (index, Some(due))
            }
        };
        *issued += 1;
        match self.until {
            None if index >= self.ops.len() => None,
            Some(until) if due.unwrap_or_else(Instant::now) >= until => None,
            _ => Some((self.ops[index % self.ops.len()], due)),
        }
    }

    /// Time since the pass started.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Ends the pass early (after an error).
    fn abort(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// What one lane did.
pub struct LaneOutput {
    ops: u64,
    bytes: u64,
    hist: Histogram<u64>,
}

/// One lane: takes ops from the schedule until it is exhausted, waiting with `sleep` for
/// each op's due time in open loop, and records each op's latency.
pub async fn lane<C, CF, S, SF>(
    schedule: &Schedule<'_>,
    lane: usize,
    ops_per_op: impl Fn(Op) -> u64,
    call: C,
    sleep: S,
) -> Result<LaneOutput>
where
    C: Fn(Op) -> CF,
    CF: Future<Output = Result<u64>>,
    S: Fn(Instant) -> SF,
    SF: Future<Output = ()>,
{
    let mut out = LaneOutput {
        ops: 0,
        bytes: 0,
        hist: histogram()?,
    };
    let mut issued = 0;
    while let Some((op, due)) = schedule.next(lane, &mut issued) {
        let begin = match due {
            Some(due) => {
                if Instant::now() < due {
                    sleep(due).await;
                }
                due
            }
            None => Instant::now(),
        };
        match call(op).await {
            Ok(bytes) => {
                out.hist.saturating_record(nanos(begin.elapsed()));
                out.ops += ops_per_op(op);
                out.bytes += bytes;
            }
            Err(err) => {
                schedule.abort();
                return Err(err);
            }
        }
    }
    Ok(out)
}

/// Ops an op counts for: blocks for batch calls, else one.
pub fn op_weight(op: Op) -> u64 {
    match op {
        Op::Ingest { len, .. }
        | Op::Delete { len, .. }
        | Op::GetMany { len, .. }
        | Op::HasManyAbsent { len, .. } => u64::from(len),
        _ => 1,
    }
}

/// Merges lane outputs into a measurement of a pass that took `wall`.
pub fn merge(outputs: Vec<Result<LaneOutput>>, wall: Duration) -> Result<Measurement> {
    let mut m = Measurement {
        ops: 0,
        bytes: 0,
        wall,
        hist: histogram()?,
    };
    for out in outputs {
        let out = out?;
        m.ops += out.ops;
        m.bytes += out.bytes;
        m.hist
            .add(&out.hist)
            .map_err(|e| BenchError::Internal(format!("latency histogram: {e:?}")))?;
    }
    Ok(m)
}

/// The lane settings of a pass.
#[derive(Debug, Clone, Copy)]
pub struct Lanes {
    /// Client threads.
    pub threads: usize,
    /// Requests in flight per thread.
    pub in_flight: usize,
    /// Open-loop rate.
    pub rate: Option<f64>,
}

/// Replays `ops` on `target` from plain threads; see the module docs.
pub fn drive(
    target: &dyn OpTarget,
    ops: &[Op],
    lanes: Lanes,
    duration: Option<Duration>,
) -> Result<Measurement> {
    let total = lanes.threads * lanes.in_flight;
    let per_thread = if target.blocking() || lanes.rate.is_some() {
        1
    } else {
        lanes.in_flight
    };
    let schedule = Schedule::new(ops, total, lanes.rate, duration);
    let outputs: Vec<Result<LaneOutput>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..total / per_thread)
            .map(|t| {
                let schedule = &schedule;
                scope.spawn(move || {
                    if lanes.rate.is_some() {
                        precise_sleeps();
                    }
                    let futures: Vec<_> = (t * per_thread..(t + 1) * per_thread)
                        .map(|l| {
                            lane(
                                schedule,
                                l,
                                op_weight,
                                |op| target.call(op),
                                // Only lanes with a thread of their own sleep (see `drive`).
                                |due| async move { sleep_until(due) },
                            )
                        })
                        .collect();
                    futures_lite::future::block_on(join_all(futures))
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join().unwrap_or_else(|_| {
                    vec![Err(BenchError::Internal("a client thread panicked".into()))]
                })
            })
            .collect()
    });
    merge(outputs, schedule.elapsed())
}

/// Asks the kernel to wake this thread's sleeps on time: the default timer slack (50 us) would
/// be charged to every open-loop op as latency, since latency runs from the due time.
fn precise_sleeps() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_TIMERSLACK takes an integer and affects only the calling thread.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
    }
}

/// How early a lane stops sleeping and starts spinning for its next op's due time: the
/// scheduler's wake-up lag on a busy machine, which would otherwise count as the op's latency.
const SPIN_BEFORE_DUE: Duration = Duration::from_micros(50);

/// Blocks the thread until `due`: sleeps most of the way, spins the last stretch.
fn sleep_until(due: Instant) {
    let now = Instant::now();
    if due > now + SPIN_BEFORE_DUE {
        std::thread::sleep(due - now - SPIN_BEFORE_DUE);
    }
    while Instant::now() < due {
        std::hint::spin_loop();
    }
}

/// Lists every key once on the calling thread, one latency per page.
pub fn drive_scan(target: &dyn OpTarget, page: usize) -> Result<Measurement> {
    let mut hist = histogram()?;
    let start = Instant::now();
    let keys = target.scan(page, &mut |latency, _| {
        hist.saturating_record(nanos(latency));
    })?;
    Ok(Measurement {
        ops: keys,
        bytes: 0,
        wall: start.elapsed(),
        hist,
    })
}

/// Polls every future to completion; outputs in input order.
pub async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pending: Vec<Option<Pin<Box<F>>>> =
        futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    let mut done: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx: &mut Context<'_>| {
        let mut all = true;
        for (slot, out) in pending.iter_mut().zip(done.iter_mut()) {
            if let Some(fut) = slot {
                match fut.as_mut().poll(cx) {
                    Poll::Ready(v) => {
                        *out = Some(v);
                        *slot = None;
                    }
                    Poll::Pending => all = false,
                }
            }
        }
        if all { Poll::Ready(()) } else { Poll::Pending }
    })
    .await;
    done.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Mutex;

    use super::*;

    /// Records the ops it sees; `Get(13)` fails.
    struct Recorder {
        seen: Mutex<Vec<Op>>,
        blocking: bool,
    }

    impl OpTarget for Recorder {
        fn call(&self, op: Op) -> OpFuture<'_> {
            Box::pin(async move {
                if op == Op::Get(13) {
                    return Err(BenchError::Check("13".into()));
                }
                self.seen.lock().unwrap().push(op);
                Ok(10)
            })
        }
        fn blocking(&self) -> bool {
            self.blocking
        }
        fn scan(&self, _: usize, on_page: &mut dyn FnMut(Duration, usize)) -> Result<u64> {
            on_page(Duration::from_micros(5), 3);
            on_page(Duration::from_micros(7), 2);
            Ok(5)
        }
    }

    fn recorder(blocking: bool) -> Recorder {
        Recorder {
            seen: Mutex::new(Vec::new()),
            blocking,
        }
    }

    #[test]
    fn closed_loop_runs_each_op_once() {
        for blocking in [false, true] {
            let target = recorder(blocking);
            let ops: Vec<Op> = (0..100).map(Op::Get).collect();
            let lanes = Lanes {
                threads: 2,
                in_flight: 3,
                rate: None,
            };
            let failed = drive(&target, &ops, lanes, None).err();
            assert!(matches!(failed, Some(BenchError::Check(_))));
            let ops: Vec<Op> = (20..120).map(Op::Get).collect();
            let m = drive(&target, &ops, lanes, None).unwrap();
            assert_eq!((m.ops, m.bytes, m.hist.len()), (100, 1000, 100));
            let mut seen = target.seen.lock().unwrap().clone();
            seen.retain(|op| matches!(op, Op::Get(i) if *i >= 20));
            seen.sort_by_key(|op| match op {
                Op::Get(i) => *i,
                _ => 0,
            });
            assert_eq!(seen, ops);
        }
    }

    #[test]
    fn batches_count_their_blocks() {
        let target = recorder(false);
        let ops = [
            Op::Ingest { first: 0, len: 4 },
            Op::Ingest { first: 4, len: 3 },
        ];
        let lanes = Lanes {
            threads: 1,
            in_flight: 1,
            rate: None,
        };
        let m = drive(&target, &ops, lanes, None).unwrap();
        assert_eq!((m.ops, m.hist.len()), (7, 2));
        let ops = [
            Op::GetMany { first: 0, len: 5 },
            Op::HasManyAbsent { first: 0, len: 6 },
            Op::Get(20),
        ];
        let m = drive(&target, &ops, lanes, None).unwrap();
        assert_eq!((m.ops, m.hist.len()), (12, 3));
    }

    #[test]
    fn open_loop_paces_ops_and_charges_from_the_due_time() {
        let target = recorder(false);
        let ops: Vec<Op> = (20..40).map(Op::Get).collect();
        let lanes = Lanes {
            threads: 2,
            in_flight: 1,
            rate: Some(400.0),
        };
        let m = drive(&target, &ops, lanes, None).unwrap();
        assert_eq!(m.ops, 20);
        // 20 ops at 400/s: the last is due 47.5 ms after the start.
        assert!(m.wall >= Duration::from_millis(47), "{:?}", m.wall);
    }

    #[test]
    fn duration_mode_cycles_until_time_is_up() {
        let target = recorder(false);
        let ops = [Op::Get(20), Op::Get(21)];
        let lanes = Lanes {
            threads: 1,
            in_flight: 2,
            rate: None,
        };
        let m = drive(&target, &ops, lanes, Some(Duration::from_millis(30))).unwrap();
        assert!(m.ops > 2, "{} ops", m.ops);
        assert!(m.wall >= Duration::from_millis(30));
    }

    #[test]
    fn scan_records_a_latency_per_page() {
        let m = drive_scan(&recorder(false), 3).unwrap();
        assert_eq!((m.ops, m.hist.len()), (5, 2));
    }
}
