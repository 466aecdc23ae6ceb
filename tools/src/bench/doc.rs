//! The results of a run as one document: what `--json` writes, what `compare` reads and what
//! the tables print. Per target and workload it keeps every round's figures and their median,
//! min and max; the ratios are computed here, once.

use serde::{Deserialize, Serialize};

use super::driver::Measurement;
use super::machine::Machine;
use super::rss::Peak;
use super::usage::Usage;

/// The whole report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Document {
    /// Always "ipfrs-bench".
    pub tool: String,
    /// The tool's version.
    pub version: String,
    /// The command line.
    pub command: Vec<String>,
    /// The run's settings.
    pub settings: Settings,
    /// The machine and build.
    pub machine: Machine,
    /// Why the disk ceiling was not measured, if it was not.
    pub disk_ceiling_unavailable: Option<String>,
    /// Why the put workload's write+fdatasync ceiling was not measured, if put ran without
    /// it (absent in older reports).
    #[serde(default)]
    pub sync_ceiling_unavailable: Option<String>,
    /// Every target, in the order each round ran them.
    pub targets: Vec<String>,
    /// One entry per workload, in run order.
    pub workloads: Vec<WorkloadReport>,
    /// What the tool does not measure yet.
    pub missing: Vec<String>,
    /// Wall time of the whole run.
    pub wall_seconds: f64,
}

/// The settings a run used.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    /// Blocks stored per round.
    pub blocks: usize,
    /// Block sizes: `ipfs` or a byte count.
    pub size: String,
    /// The block sizes in words.
    pub size_description: String,
    /// Bytes of the stored blocks.
    pub stored_bytes: u64,
    /// Seconds per read workload, if timed.
    pub duration_s: Option<f64>,
    /// Warm-up seconds per read workload.
    pub warmup_s: f64,
    /// Rounds.
    pub rounds: u32,
    /// Client threads.
    pub threads: usize,
    /// Requests in flight per thread.
    pub in_flight: usize,
    /// Blocks per batch.
    pub batch: usize,
    /// Open-loop rate, if any.
    pub rate: Option<f64>,
    /// Zipf skew of get-zipf.
    pub zipf_skew: f64,
    /// Share of gets in mixed.
    pub read_ratio: f64,
    /// Durability.
    pub durability: String,
    /// Engine shards, if set.
    pub shards: Option<usize>,
    /// Engine cache budget, if set.
    pub cache_bytes: Option<u64>,
    /// Seed.
    pub seed: u64,
    /// `raw` or a target name.
    pub baseline: String,
    /// Backends measured.
    pub backends: Vec<String>,
    /// The `car` workload's file, if it ran (absent in older reports).
    pub car_file: Option<String>,
    /// Blocks in that file.
    pub car_blocks: Option<usize>,
    /// Bytes of those blocks.
    pub car_bytes: Option<u64>,
}

/// One workload's results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkloadReport {
    /// The workload's name.
    pub name: String,
    /// What it does, for the table title.
    pub description: String,
    /// The ceiling target the `vs_ceiling` ratios divide by, if any.
    pub ceiling: Option<String>,
    /// One entry per target that can run the workload.
    pub results: Vec<TargetFigures>,
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p99_9: f64,
    /// Largest.
    pub max: f64,
}

/// A figure over rounds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// Median over rounds (the mean of the middle two for an even count).
    pub median: f64,
    /// Smallest round.
    pub min: f64,
    /// Largest round.
    pub max: f64,
}

impl Spread {
    /// The spread of `values` (non-empty; `None` if empty).
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Spread {
            median,
            min: v[0],
            max: v[n - 1],
        })
    }
}

/// One round of one target on one workload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoundFigures {
    /// Operations (blocks or CIDs for batched calls, keys for scan).
    pub ops: u64,
    /// Block bytes moved.
    pub bytes: u64,
    /// Wall seconds.
    pub seconds: f64,
    /// Operations per second.
    pub ops_per_s: f64,
    /// MiB of block data per second; `None` for workloads that move none.
    pub mib_per_s: Option<f64>,
    /// Latency per call (per batch for batched workloads, per page for scan).
    pub latency_us: Latency,
    /// Peak resident memory during the target's round (all its workloads), MiB.
    pub peak_rss_mib: Option<f64>,
    /// Resident memory when the target's round began, MiB.
    pub start_rss_mib: Option<f64>,
    /// `peak_rss_mib - start_rss_mib`: the target's own memory at its peak.
    pub rss_growth_mib: Option<f64>,
    /// CPU seconds (user + system, all threads) the target's round used, all its workloads.
    pub target_cpu_s: Option<f64>,
    /// Major page faults during the target's round, all its workloads.
    pub target_major_faults: Option<u64>,
    /// The S3 requests sent during this workload's measured pass, for the S3 targets
    /// (absent for the others and in older reports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_requests: Option<S3Requests>,
}

/// S3 requests by HTTP method, retries included, as the bucket's client sent them. A LIST
/// is a GET; a delete, even of one key, is a POST (object_store's multi-object delete).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3Requests {
    /// GETs (object and ranged reads, listings).
    pub get: u64,
    /// PUTs (objects and multipart parts).
    pub put: u64,
    /// HEADs.
    pub head: u64,
    /// POSTs (multipart create and complete, deletes).
    pub post: u64,
    /// DELETEs (multipart aborts).
    pub delete: u64,
    /// Any other method.
    pub other: u64,
    /// All of them.
    pub total: u64,
}

impl From<ipfrs_remote::RequestCounts> for S3Requests {
    fn from(c: ipfrs_remote::RequestCounts) -> S3Requests {
        S3Requests {
            get: c.get,
            put: c.put,
            head: c.head,
            post: c.post,
            delete: c.delete,
            other: c.other,
            total: c.total(),
        }
    }
}

impl RoundFigures {
    /// The figures of a measurement and the target's memory peak.
    pub fn new(m: &Measurement, peak: Option<Peak>, used: Option<Usage>) -> RoundFigures {
        let seconds = m.wall.as_secs_f64().max(1e-9);
        let us = |q: f64| m.hist.value_at_quantile(q) as f64 / 1000.0;
        let mib = |kib: u64| kib as f64 / 1024.0;
        RoundFigures {
            ops: m.ops,
            bytes: m.bytes,
            seconds,
            ops_per_s: m.ops as f64 / seconds,
            mib_per_s: (m.bytes > 0).then(|| m.bytes as f64 / (1 << 20) as f64 / seconds),
            latency_us: Latency {
                p50: us(0.5),
                p90: us(0.9),
                p99: us(0.99),
                p99_9: us(0.999),
                max: m.hist.max() as f64 / 1000.0,
            },
            peak_rss_mib: peak.map(|p| mib(p.peak_kib)),
            start_rss_mib: peak.map(|p| mib(p.start_kib)),
            rss_growth_mib: peak.map(|p| mib(p.growth_kib())),
            target_cpu_s: used.map(|u| u.cpu.as_secs_f64()),
            target_major_faults: used.map(|u| u.major_faults),
            s3_requests: None,
        }
    }
}

/// One target's figures on one workload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetFigures {
    /// The target's name.
    pub target: String,
    /// Whether it is a ceiling.
    pub is_ceiling: bool,
    /// Every round, in order.
    pub rounds: Vec<RoundFigures>,
    /// Operations per second.
    pub ops_per_s: Spread,
    /// MiB per second, if the workload moves data.
    pub mib_per_s: Option<Spread>,
    /// The median over rounds of each percentile.
    pub latency_us: Latency,
    /// Peak resident memory, MiB.
    pub peak_rss_mib: Option<Spread>,
    /// Peak resident memory above the start of the target's round, MiB.
    pub rss_growth_mib: Option<Spread>,
    /// The target the `vs_baseline` ratio divides by.
    pub baseline: Option<String>,
    /// Median ops/s over the baseline's median ops/s.
    pub vs_baseline: Option<f64>,
    /// Median MiB/s over the workload's ceiling's median MiB/s.
    pub vs_ceiling: Option<f64>,
    /// The S3 requests of the median round (by total; the lower middle one for an even
    /// count), for the S3 targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_requests: Option<S3Requests>,
    /// The median over rounds of S3 requests per op (per block or CID for batched calls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3_requests_per_op: Option<f64>,
}

impl TargetFigures {
    /// Aggregates a target's rounds (non-empty).
    pub fn new(target: String, is_ceiling: bool, rounds: Vec<RoundFigures>) -> TargetFigures {
        let spread = |f: &dyn Fn(&RoundFigures) -> Option<f64>| {
            Spread::of(&rounds.iter().filter_map(f).collect::<Vec<_>>())
        };
        let med = |f: &dyn Fn(&Latency) -> f64| {
            spread(&|r: &RoundFigures| Some(f(&r.latency_us))).map_or(0.0, |s| s.median)
        };
        TargetFigures {
            ops_per_s: spread(&|r| Some(r.ops_per_s)).unwrap_or(Spread {
                median: 0.0,
                min: 0.0,
                max: 0.0,
            }),
            mib_per_s: spread(&|r| r.mib_per_s),
            latency_us: Latency {
                p50: med(&|l| l.p50),
                p90: med(&|l| l.p90),
                p99: med(&|l| l.p99),
                p99_9: med(&|l| l.p99_9),
                max: med(&|l| l.max),
            },
            peak_rss_mib: spread(&|r| r.peak_rss_mib),
            rss_growth_mib: spread(&|r| r.rss_growth_mib),
            s3_requests: {
                let mut counted: Vec<S3Requests> =
                    rounds.iter().filter_map(|r| r.s3_requests).collect();
                counted.sort_by_key(|c| c.total);
                counted.get(counted.len().saturating_sub(1) / 2).copied()
            },
            s3_requests_per_op: spread(&|r| {
                r.s3_requests.map(|c| c.total as f64 / r.ops.max(1) as f64)
            })
            .map(|s| s.median),
            target,
            is_ceiling,
            rounds,
            baseline: None,
            vs_baseline: None,
            vs_ceiling: None,
        }
    }

    /// Throughput for ceiling comparisons: MiB/s where data moves, else ops/s.
    fn throughput(&self) -> f64 {
        self.mib_per_s.map_or(self.ops_per_s.median, |m| m.median)
    }
}

/// `a / b`, `None` unless both are positive and finite.
fn ratio(a: f64, b: f64) -> Option<f64> {
    (a.is_finite() && b.is_finite() && a > 0.0 && b > 0.0).then(|| a / b)
}

impl WorkloadReport {
    /// Fills in the ratios: against `baseline` (`raw`: the raw backend under the same engine,
    /// else a target name) and against the slowest ceiling that ran this workload.
    pub fn compute_ratios(&mut self, baseline: &str) {
        let ceiling = self
            .results
            .iter()
            .filter(|r| r.is_ceiling && r.throughput() > 0.0)
            .min_by(|a, b| a.throughput().total_cmp(&b.throughput()))
            .map(|c| (c.target.clone(), c.throughput()));
        self.ceiling = ceiling.as_ref().map(|c| c.0.clone());
        let medians: Vec<(String, f64)> = self
            .results
            .iter()
            .map(|r| (r.target.clone(), r.ops_per_s.median))
            .collect();
        for r in &mut self.results {
            r.baseline = None;
            r.vs_baseline = None;
            r.vs_ceiling = None;
            if r.is_ceiling {
                continue;
            }
            let base = if baseline == "raw" && r.target.starts_with("engine+s3/") {
                // The engine's pack tier on S3 against S3 used directly.
                Some("s3/object-per-block".to_string())
            } else if baseline == "raw" {
                r.target
                    .strip_prefix("engine")
                    .and_then(|rest| rest.split_once('/'))
                    // The fallback driver's targets compare with the same raw backend.
                    .map(|(_, backend)| format!("raw/{}", backend.trim_end_matches(" (fallback)")))
            } else {
                (r.target != baseline).then(|| baseline.to_string())
            };
            if let Some(base) = base
                && let Some((_, ops)) = medians.iter().find(|(name, _)| *name == base)
            {
                r.vs_baseline = ratio(r.ops_per_s.median, *ops);
                r.baseline = Some(base);
            }
            if let Some((_, ceiling)) = &ceiling {
                r.vs_ceiling = ratio(r.throughput(), *ceiling);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn round(ops_per_s: f64, mib: Option<f64>) -> RoundFigures {
        RoundFigures {
            ops: 10,
            bytes: 0,
            seconds: 1.0,
            ops_per_s,
            mib_per_s: mib,
            latency_us: Latency {
                p50: ops_per_s,
                p90: 1.0,
                p99: 2.0,
                p99_9: 3.0,
                max: 4.0,
            },
            peak_rss_mib: Some(ops_per_s),
            start_rss_mib: Some(1.0),
            rss_growth_mib: Some(ops_per_s - 1.0),
            target_cpu_s: None,
            target_major_faults: None,
            s3_requests: None,
        }
    }

    #[test]
    fn spread_is_median_min_max() {
        let s = Spread::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        let s = Spread::of(&[4.0, 1.0, 2.0, 3.0]).unwrap();
        assert_eq!(s.median, 2.5);
        assert!(Spread::of(&[]).is_none());
        assert!(Spread::of(&[f64::NAN]).is_none());
    }

    proptest::proptest! {
        #[test]
        fn spread_brackets_the_median_whatever_the_order(
            mut values in proptest::collection::vec(0.0f64..1e9, 1..20),
            rotate in 0usize..20,
        ) {
            let s = Spread::of(&values).unwrap();
            proptest::prop_assert!(s.min <= s.median && s.median <= s.max);
            proptest::prop_assert_eq!(s.min, values.iter().copied().fold(f64::INFINITY, f64::min));
            let k = rotate % values.len();
            values.rotate_left(k);
            proptest::prop_assert_eq!(Spread::of(&values), Some(s));
        }
    }

    #[test]
    fn s3_requests_are_the_median_rounds_and_per_op() {
        let counted = |total: u64| {
            let mut r = round(1.0, None);
            r.s3_requests = Some(S3Requests {
                get: total,
                total,
                ..S3Requests::default()
            });
            r
        };
        let f = TargetFigures::new(
            "s3/object-per-block".into(),
            false,
            vec![counted(40), counted(10), counted(20)],
        );
        assert_eq!(f.s3_requests.map(|c| c.total), Some(20));
        // Ten ops a round.
        assert_eq!(f.s3_requests_per_op, Some(2.0));
        let plain = TargetFigures::new("raw/sled".into(), false, vec![round(1.0, None)]);
        assert!(plain.s3_requests.is_none() && plain.s3_requests_per_op.is_none());
        let json = serde_json::to_string(&plain).unwrap();
        assert!(!json.contains("s3_requests"), "{json}");
    }

    #[test]
    fn figures_take_the_median_round() {
        let f = TargetFigures::new(
            "x".into(),
            false,
            vec![round(10.0, None), round(30.0, None), round(20.0, None)],
        );
        assert_eq!(f.ops_per_s.median, 20.0);
        assert_eq!(f.latency_us.p50, 20.0);
        assert_eq!(f.peak_rss_mib.unwrap().max, 30.0);
        assert!(f.mib_per_s.is_none());
    }

    #[test]
    fn ratios_pair_engine_with_its_raw_backend_and_the_slowest_ceiling() {
        let t = |name: &str, ceiling, ops, mib| {
            TargetFigures::new(name.into(), ceiling, vec![round(ops, Some(mib))])
        };
        let mut w = WorkloadReport {
            name: "ingest".into(),
            description: String::new(),
            ceiling: None,
            results: vec![
                t("raw/sled", false, 100.0, 10.0),
                t("engine/sled", false, 150.0, 15.0),
                t("raw/parity-db", false, 50.0, 5.0),
                t("engine/parity-db", false, 25.0, 2.5),
                // The hot-tier variants the lead adds compare with the same raw backend.
                t("engine+hot/sled", false, 200.0, 20.0),
                t("engine+hot/sled (fallback)", false, 180.0, 18.0),
                t("disk/o_direct", true, 1000.0, 100.0),
                t("cpu/sha2-256", true, 500.0, 50.0),
            ],
        };
        w.compute_ratios("raw");
        assert_eq!(w.ceiling.as_deref(), Some("cpu/sha2-256"));
        let get = |n: &str| w.results.iter().find(|r| r.target == n).unwrap().clone();
        assert_eq!(get("engine/sled").vs_baseline, Some(1.5));
        assert_eq!(get("engine/sled").baseline.as_deref(), Some("raw/sled"));
        assert_eq!(get("engine/parity-db").vs_baseline, Some(0.5));
        assert_eq!(get("engine+hot/sled").vs_baseline, Some(2.0));
        assert_eq!(
            get("engine+hot/sled (fallback)").baseline.as_deref(),
            Some("raw/sled")
        );
        assert_eq!(get("engine+hot/sled (fallback)").vs_baseline, Some(1.8));
        assert_eq!(get("raw/sled").vs_baseline, None);
        assert_eq!(get("engine/sled").vs_ceiling, Some(0.3));
        assert_eq!(get("disk/o_direct").vs_ceiling, None);

        w.results.push(t("s3/object-per-block", false, 50.0, 5.0));
        w.results.push(t("engine+s3/sled", false, 1000.0, 100.0));
        w.compute_ratios("raw");
        let get = |n: &str| w.results.iter().find(|r| r.target == n).unwrap().clone();
        assert_eq!(
            get("engine+s3/sled").baseline.as_deref(),
            Some("s3/object-per-block")
        );
        assert_eq!(get("engine+s3/sled").vs_baseline, Some(20.0));
        assert_eq!(get("s3/object-per-block").vs_baseline, None);

        w.compute_ratios("engine/sled");
        let get = |n: &str| w.results.iter().find(|r| r.target == n).unwrap().clone();
        assert_eq!(get("raw/sled").vs_baseline, Some(100.0 / 150.0));
        assert_eq!(get("engine/sled").vs_baseline, None);
    }
}
