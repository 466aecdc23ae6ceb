//! Operation metrics recorded at the facade, rendered as Prometheus text.
//!
//! Every public operation of [`crate::Engine`] is counted (calls, errors, items, bytes) and
//! timed into an HDR histogram per operation. Cost per call: four relaxed atomic adds and one
//! uncontended mutex lock around a histogram record (tens of nanoseconds); threads calling the
//! same operation at once contend on that mutex, which is small next to a shard round trip
//! (microseconds). Histograms keep 2 significant digits over 1 us..60 s, about 26 KiB each.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;
use ipfrs_core_types::IoDriver;

use crate::Stats;

/// A public operation of the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `put`, `put_many`, `put_data`.
    Put,
    /// `get`, `get_many`.
    Get,
    /// `has`, `has_many`.
    Has,
    /// `get_size`.
    Size,
    /// `delete`, `delete_many`.
    Delete,
    /// `cid_page` (and the `cids` stream built on it).
    List,
    /// `flush`.
    Flush,
}

impl Op {
    /// Every operation, in the order of the snapshot.
    pub const ALL: [Op; 7] = [
        Op::Put,
        Op::Get,
        Op::Has,
        Op::Size,
        Op::Delete,
        Op::List,
        Op::Flush,
    ];

    /// The label used in the Prometheus output.
    pub const fn name(self) -> &'static str {
        match self {
            Op::Put => "put",
            Op::Get => "get",
            Op::Has => "has",
            Op::Size => "size",
            Op::Delete => "delete",
            Op::List => "list",
            Op::Flush => "flush",
        }
    }
}

/// Longest latency the histograms resolve (longer calls are recorded as this): 60 s in us.
const MAX_MICROS: u64 = 60_000_000;
/// Two significant digits: 1% resolution, a small histogram.
const SIGFIGS: u8 = 2;

#[derive(Default)]
struct OpCounters {
    calls: AtomicU64,
    errors: AtomicU64,
    items: AtomicU64,
    bytes: AtomicU64,
    /// Made at the first call recorded here (a stripe serves the ops its threads call).
    latency: Mutex<Option<Histogram<u64>>>,
}

/// Stripes of counters: a call records into its thread's stripe, so threads calling the
/// engine at once do not all write one lock and one cache line (with 16 reader threads the
/// shared histogram's mutex was the hottest line of a hot `get`).
const STRIPES: usize = 8;

/// One stripe, on cache lines of its own.
#[repr(align(128))]
struct Stripe {
    ops: Vec<OpCounters>,
}

std::thread_local! {
    /// This thread's stripe, given out round-robin.
    static STRIPE: usize = {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        NEXT.fetch_add(1, Ordering::Relaxed) as usize % STRIPES
    };
}

/// The live counters of one engine.
pub(crate) struct Metrics {
    stripes: Vec<Stripe>,
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let stripes = (0..STRIPES)
            .map(|_| Stripe {
                ops: Op::ALL.iter().map(|_| OpCounters::default()).collect(),
            })
            .collect();
        Metrics { stripes }
    }

    /// Records one call of `op` over `items` CIDs or blocks and `bytes` of block data.
    pub(crate) fn record(&self, op: Op, ok: bool, items: usize, bytes: u64, elapsed: Duration) {
        let stripe = STRIPE.with(|s| *s);
        let c = &self.stripes[stripe].ops[op as usize];
        c.calls.fetch_add(1, Ordering::Relaxed);
        if !ok {
            c.errors.fetch_add(1, Ordering::Relaxed);
        }
        c.items.fetch_add(items as u64, Ordering::Relaxed);
        c.bytes.fetch_add(bytes, Ordering::Relaxed);
        let micros = (elapsed.as_micros() as u64).clamp(1, MAX_MICROS);
        let mut h = c.latency.lock().unwrap_or_else(PoisonError::into_inner);
        // Within the bounds by the clamp above, so recording cannot fail.
        let _ = h.get_or_insert_with(new_histogram).record(micros);
    }

    pub(crate) fn snapshot(&self, stats: Stats, io_driver: IoDriver) -> MetricsSnapshot {
        let ops = Op::ALL
            .iter()
            .enumerate()
            .map(|(i, &op)| {
                let sum = |field: fn(&OpCounters) -> &AtomicU64| -> u64 {
                    self.stripes
                        .iter()
                        .map(|s| field(&s.ops[i]).load(Ordering::Relaxed))
                        .sum()
                };
                let mut latency_micros = new_histogram();
                for stripe in &self.stripes {
                    let h = stripe.ops[i]
                        .latency
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    if let Some(h) = h.as_ref() {
                        // Same bounds: adding cannot fail.
                        let _ = latency_micros.add(h);
                    }
                }
                OpSnapshot {
                    op,
                    calls: sum(|c| &c.calls),
                    errors: sum(|c| &c.errors),
                    items: sum(|c| &c.items),
                    bytes: sum(|c| &c.bytes),
                    latency_micros,
                }
            })
            .collect();
        MetricsSnapshot {
            ops,
            stats,
            io_driver,
        }
    }
}

#[allow(
    clippy::expect_used,
    reason = "constant bounds that hdrhistogram accepts: 1 <= low, high >= 2 * low, sigfigs <= 5"
)]
fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, SIGFIGS).expect("valid histogram bounds")
}

/// One operation's figures since the engine was opened.
#[derive(Debug, Clone)]
pub struct OpSnapshot {
    /// The operation.
    pub op: Op,
    /// Calls.
    pub calls: u64,
    /// Calls that returned an error.
    pub errors: u64,
    /// CIDs or blocks the calls carried.
    pub items: u64,
    /// Block bytes written (put) or returned (get).
    pub bytes: u64,
    /// Latency of each call in microseconds.
    pub latency_micros: Histogram<u64>,
}

/// A snapshot of the engine's metrics: per-operation figures and the shards' counters.
#[derive(Debug, Clone)]
pub struct MetricsSnapshot {
    /// One entry per [`Op`], in [`Op::ALL`] order.
    pub ops: Vec<OpSnapshot>,
    /// The shards' counters (cache hits, bloom negatives, blocks, bytes).
    pub stats: Stats,
    /// The I/O driver the shards run with (`IoUring` or `Fallback`).
    pub io_driver: IoDriver,
}

/// Reads one counter of an operation's snapshot.
type OpField = fn(&OpSnapshot) -> u64;

/// Quantiles reported for each operation's latency.
const QUANTILES: [f64; 4] = [0.5, 0.9, 0.99, 0.999];

impl MetricsSnapshot {
    /// The snapshot in the Prometheus text exposition format (version 0.0.4).
    pub fn to_prometheus(&self) -> String {
        let mut out = String::new();
        let per_op: [(&str, &str, OpField); 4] = [
            (
                "ipfrs_operations_total",
                "Calls of each public operation.",
                |o| o.calls,
            ),
            (
                "ipfrs_operation_errors_total",
                "Calls that returned an error.",
                |o| o.errors,
            ),
            (
                "ipfrs_operation_items_total",
                "CIDs or blocks carried by the calls.",
                |o| o.items,
            ),
            (
                "ipfrs_operation_bytes_total",
                "Block bytes written (put) or returned (get).",
                |o| o.bytes,
            ),
        ];
        for (name, help, value) in per_op {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for o in &self.ops {
                let _ = writeln!(out, "{name}{{op=\"{}\"}} {}", o.op.name(), value(o));
            }
        }
        let name = "ipfrs_operation_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Latency of each call, measured at the engine's facade."
        );
        let _ = writeln!(out, "# TYPE {name} summary");
        for o in &self.ops {
            let h = &o.latency_micros;
            let op = o.op.name();
            for q in QUANTILES {
                let secs = h.value_at_quantile(q) as f64 / 1e6;
                let _ = writeln!(out, "{name}{{op=\"{op}\",quantile=\"{q}\"}} {secs}");
            }
            let sum = h.mean() * h.len() as f64 / 1e6;
            let _ = writeln!(out, "{name}_sum{{op=\"{op}\"}} {sum}");
            let _ = writeln!(out, "{name}_count{{op=\"{op}\"}} {}", h.len());
        }
        let s = &self.stats;
        let totals = [
            (
                "ipfrs_cache_hits_total",
                "counter",
                "Reads answered by the block caches.",
                s.cache_hits,
            ),
            (
                "ipfrs_cache_misses_total",
                "counter",
                "Reads that went to a cold backend.",
                s.cache_misses,
            ),
            (
                "ipfrs_location_hits_total",
                "counter",
                "Cold reads of packed blocks answered from a cached location, without the backend.",
                s.location_hits,
            ),
            (
                "ipfrs_locations_cached",
                "gauge",
                "Pack locations held by the location caches.",
                s.locations_cached,
            ),
            (
                "ipfrs_bloom_negatives_total",
                "counter",
                "Lookups a bloom filter answered absent.",
                s.bloom_negatives,
            ),
            (
                "ipfrs_caller_reads_total",
                "counter",
                "Keys read on the caller's thread, without a round trip to a shard.",
                s.caller_reads,
            ),
            (
                "ipfrs_caller_puts_total",
                "counter",
                "Puts written on the caller's thread while their shard committed nothing.",
                s.caller_puts,
            ),
            ("ipfrs_blocks", "gauge", "Blocks stored.", s.blocks),
            (
                "ipfrs_stored_bytes",
                "gauge",
                "Bytes of block data stored.",
                s.bytes,
            ),
            (
                "ipfrs_cache_bytes",
                "gauge",
                "Bytes held by the block caches.",
                s.cache_bytes,
            ),
            (
                "ipfrs_corrupt_records_total",
                "counter",
                "Damaged hot-tier records found (reported, never served).",
                s.corrupt_records,
            ),
            (
                "ipfrs_corrupt_cold_reads_total",
                "counter",
                "Cold reads refused: the backend's bytes did not hash to the block's CID.",
                s.corrupt_cold_reads,
            ),
        ];
        for (name, kind, help, value) in totals {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        let name = "ipfrs_io_driver_info";
        let _ = writeln!(
            out,
            "# HELP {name} The I/O driver the shards run with (io_uring or fallback).\n\
             # TYPE {name} gauge\n{name}{{driver=\"{}\"}} 1",
            self.io_driver.name()
        );
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn records_show_up_in_the_exposition() {
        let m = Metrics::new();
        m.record(Op::Put, true, 3, 300, Duration::from_micros(100));
        m.record(Op::Put, false, 1, 0, Duration::from_micros(300));
        m.record(Op::Get, true, 2, 50, Duration::from_secs(3600));
        let stats = Stats {
            cache_hits: 7,
            bloom_negatives: 5,
            corrupt_records: 2,
            corrupt_cold_reads: 3,
            ..Stats::default()
        };
        let snap = m.snapshot(stats, IoDriver::Fallback);
        let put = &snap.ops[Op::Put as usize];
        assert_eq!(
            (put.calls, put.errors, put.items, put.bytes),
            (2, 1, 4, 300)
        );
        let text = snap.to_prometheus();
        assert!(
            text.contains("ipfrs_operations_total{op=\"put\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("ipfrs_operation_errors_total{op=\"put\"} 1\n"));
        assert!(text.contains("ipfrs_operation_bytes_total{op=\"get\"} 50\n"));
        assert!(text.contains("ipfrs_cache_hits_total 7\n"));
        assert!(text.contains("ipfrs_io_driver_info{driver=\"fallback\"} 1\n"));
        assert!(text.contains("ipfrs_bloom_negatives_total 5\n"));
        assert!(text.contains("ipfrs_corrupt_records_total 2\n"));
        assert!(text.contains("ipfrs_corrupt_cold_reads_total 3\n"));
        assert!(text.contains("ipfrs_operation_duration_seconds_count{op=\"put\"} 2\n"));
        // An hour-long call is clamped to the histogram's top, 60 s (within 1%).
        let p99: f64 = text
            .lines()
            .find(|l| {
                l.starts_with("ipfrs_operation_duration_seconds{op=\"get\",quantile=\"0.99\"}")
            })
            .and_then(|l| l.rsplit(' ').next())
            .unwrap()
            .parse()
            .unwrap();
        assert!((59.0..61.0).contains(&p99), "{p99}");
        // Every sample line is `name{labels} value` or `name value`, as the format requires.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
