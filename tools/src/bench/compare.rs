//! `ipfrs-bench compare old.json new.json`: the change of every figure present in both
//! reports, with regressions past the threshold flagged (and a non-zero exit).
//!
//! Figures compared per workload and target: median ops/s (higher is better), median p99
//! latency and the target's median memory growth (+RSS; both lower is better). A figure only in
//! one report is skipped.

use std::fmt::Write as _;
use std::path::Path;

use super::doc::Document;
use super::error::{BenchError, Result};

/// One compared figure.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// Workload name.
    pub workload: String,
    /// Target name.
    pub target: String,
    /// `ops/s`, `p99 us` or `+RSS MiB`.
    pub metric: &'static str,
    /// The old value.
    pub old: f64,
    /// The new value.
    pub new: f64,
    /// Relative change, new / old - 1.
    pub change: f64,
    /// Whether the change is worse than the threshold.
    pub regression: bool,
}

/// Reads a report written by `--json`.
pub fn load(path: &Path) -> Result<Document> {
    let text = std::fs::read_to_string(path).map_err(|e| BenchError::io("cannot read", path, e))?;
    serde_json::from_str(&text).map_err(|e| {
        BenchError::Usage(format!(
            "{} is not an ipfrs-bench --json report: {e}",
            path.display()
        ))
    })
}

/// Every figure of `new` that `old` also has, in `new`'s order.
pub fn changes(old: &Document, new: &Document, threshold: f64) -> Vec<Change> {
    let mut out = Vec::new();
    for w in &new.workloads {
        let Some(old_w) = old.workloads.iter().find(|o| o.name == w.name) else {
            continue;
        };
        for r in &w.results {
            let Some(old_r) = old_w.results.iter().find(|o| o.target == r.target) else {
                continue;
            };
            let rss = |f: &crate::bench::doc::TargetFigures| {
                f.rss_growth_mib.map_or(f64::NAN, |s| s.median)
            };
            let figures = [
                ("ops/s", old_r.ops_per_s.median, r.ops_per_s.median, true),
                ("p99 us", old_r.latency_us.p99, r.latency_us.p99, false),
                ("+RSS MiB", rss(old_r), rss(r), false),
            ];
            for (metric, old_v, new_v, higher_is_better) in figures {
                if !(old_v > 0.0 && new_v.is_finite()) {
                    continue;
                }
                let change = new_v / old_v - 1.0;
                let worse = if higher_is_better { -change } else { change };
                out.push(Change {
                    workload: w.name.clone(),
                    target: r.target.clone(),
                    metric,
                    old: old_v,
                    new: new_v,
                    change,
                    regression: worse > threshold,
                });
            }
        }
    }
    out
}

/// Why the two runs' figures may not compare (different settings or CPUs), one line each.
pub fn warnings(old: &Document, new: &Document) -> Vec<String> {
    let mut out = Vec::new();
    if old.settings.blocks != new.settings.blocks
        || old.settings.size != new.settings.size
        || old.settings.threads != new.settings.threads
        || old.settings.in_flight != new.settings.in_flight
        || old.settings.durability != new.settings.durability
    {
        out.push("the two runs used different settings; figures may not compare".to_string());
    }
    if old.machine.cpu_model != new.machine.cpu_model {
        out.push(format!(
            "different CPUs ({} vs {})",
            old.machine.cpu_model, new.machine.cpu_model
        ));
    }
    out
}

/// The printed comparison.
pub fn render(old: &Document, new: &Document, changes: &[Change], threshold: f64) -> String {
    let mut out = String::new();
    for warning in warnings(old, new) {
        let _ = writeln!(out, "warning: {warning}");
    }
    let _ = write!(
        out,
        "  {:<11} {:<18} {:<8} {:>12} {:>12} {:>8}",
        "workload", "target", "figure", "old", "new", "change"
    );
    for c in changes {
        let _ = write!(
            out,
            "\n  {:<11} {:<18} {:<8} {:>12.1} {:>12.1} {:>+7.1}%{}",
            c.workload,
            c.target,
            c.metric,
            c.old,
            c.new,
            c.change * 100.0,
            if c.regression { "  REGRESSION" } else { "" }
        );
    }
    let regressions = changes.iter().filter(|c| c.regression).count();
    let _ = write!(
        out,
        "\n{regressions} of {} figures regressed by more than {:.1}%.",
        changes.len(),
        threshold * 100.0
    );
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::bench::doc::{Latency, RoundFigures, TargetFigures, WorkloadReport};

    fn doc(ops: f64, p99: f64) -> Document {
        let round = RoundFigures {
            ops: 1,
            bytes: 0,
            seconds: 1.0,
            ops_per_s: ops,
            mib_per_s: None,
            latency_us: Latency {
                p50: 1.0,
                p90: 1.0,
                p99,
                p99_9: p99,
                max: p99,
            },
            peak_rss_mib: None,
            start_rss_mib: None,
            rss_growth_mib: None,
            target_cpu_s: None,
            target_major_faults: None,
            s3_requests: None,
        };
        let text = include_str!("testdata/minimal.json");
        let mut d: Document = serde_json::from_str(text).unwrap();
        d.workloads = vec![WorkloadReport {
            name: "get".into(),
            description: String::new(),
            ceiling: None,
            results: vec![TargetFigures::new("engine/sled".into(), false, vec![round])],
        }];
        d
    }

    #[test]
    fn slower_or_later_is_a_regression_past_the_threshold() {
        let old = doc(1000.0, 100.0);
        let same = changes(&old, &doc(950.0, 105.0), 0.10);
        // No memory figures in these documents: ops/s and p99 only.
        assert_eq!(same.len(), 2);
        assert!(same.iter().all(|c| !c.regression));
        let slower = changes(&old, &doc(800.0, 100.0), 0.10);
        assert!(slower[0].regression && !slower[1].regression);
        assert!((slower[0].change + 0.2).abs() < 1e-9);
        let later = changes(&old, &doc(1000.0, 150.0), 0.10);
        assert!(!later[0].regression && later[1].regression);
        let faster = changes(&old, &doc(5000.0, 10.0), 0.10);
        assert!(faster.iter().all(|c| !c.regression));
        let text = render(&old, &doc(800.0, 100.0), &slower, 0.10);
        assert!(
            text.contains("REGRESSION") && text.contains("-20.0%"),
            "{text}"
        );
        assert!(text.contains("1 of 2 figures regressed"), "{text}");
    }
}
