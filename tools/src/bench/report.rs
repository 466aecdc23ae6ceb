//! The printed tables and the JSON document.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use super::cli::{Plan, SizeClass};
use super::run::{Phase, TargetKind, TargetResult};

/// What the CPU alone allows: sha2-256 throughput on one core.
#[derive(Debug, Clone)]
pub struct CpuCeiling {
    /// sha2-256 on 256 KiB buffers, decimal MB per second, one core.
    pub sha256_mb_per_s: f64,
    /// Whether the CPU has SHA-NI; `None` off x86-64.
    pub sha_ni: Option<bool>,
}

/// Everything the final report and the JSON need.
pub struct Report<'a> {
    /// The run's settings.
    pub plan: &'a Plan,
    /// The CPU ceiling.
    pub cpu: &'a CpuCeiling,
    /// Every target's results, in run order.
    pub results: &'a [TargetResult],
    /// Wall time of the whole run.
    pub elapsed: Duration,
}

/// A size in bytes as "4 KiB", "256 KiB", "2 MiB" or "1000 B".
fn size_name(bytes: usize) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} B")
    }
}

/// The lines printed before any measurement.
pub fn header(plan: &Plan, dir: &Path, cpu: &CpuCeiling) -> String {
    let backends: Vec<&str> = plan.backends.iter().map(|b| b.name()).collect();
    let shards = plan
        .shards
        .map_or_else(|| "one per core".to_string(), |n| n.to_string());
    let sha_ni = match cpu.sha_ni {
        Some(true) => "yes",
        Some(false) => "no (portable sha2 code, about 5x slower)",
        None => "n/a (not x86-64)",
    };
    format!(
        "ipfrs-bench {}: {} client threads, batches of {}, durability {}, seed {}\n\
         backends: {}; engine shards: {}; directory {} (removed afterwards)\n\
         CPU ceiling: sha2-256 alone hashes {:.0} MB/s on one core (256 KiB buffers); SHA-NI: {}",
        env!("CARGO_PKG_VERSION"),
        plan.threads,
        plan.batch,
        plan.durability.name(),
        plan.seed,
        backends.join(", "),
        shards,
        dir.display(),
        cpu.sha256_mb_per_s,
        sha_ni,
    )
}

/// The title and column heads of a size class's table.
pub fn class_header(class: SizeClass) -> String {
    format!(
        "\n{} blocks x {} ({:.1} MiB)\n  {:<18} {:<11} {:>10} {:>9} {:>10} {:>10} {:>11}",
        size_name(class.size),
        class.count,
        (class.size * class.count) as f64 / (1 << 20) as f64,
        "target",
        "phase",
        "ops/s",
        "MiB/s",
        "p50 us",
        "p99 us",
        "engine/raw",
    )
}

/// The engine's ops/s over the raw backend's for `phase`.
fn ratio(engine: &TargetResult, raw: Option<&TargetResult>, phase: Phase) -> Option<f64> {
    let raw = raw?.phase(phase)?.ops_per_s();
    let engine = engine.phase(phase)?.ops_per_s();
    (raw > 0.0).then(|| engine / raw)
}

/// A latency for the table: one decimal below 100 us, none above.
fn latency(us: f64) -> String {
    if us < 100.0 {
        format!("{us:.1}")
    } else {
        format!("{us:.0}")
    }
}

/// One table row per phase of a target; engine rows carry the ratio to `raw`.
pub fn rows(result: &TargetResult, raw: Option<&TargetResult>) -> String {
    let label = format!("{}/{}", result.target.name(), result.backend.name());
    let mut out = String::new();
    for (i, p) in result.phases.iter().enumerate() {
        let mib = p
            .mib_per_s()
            .map_or_else(|| "-".into(), |m| format!("{m:.1}"));
        let ratio = match result.target {
            TargetKind::Engine => {
                ratio(result, raw, p.phase).map_or_else(|| "-".into(), |r| format!("{r:.2}x"))
            }
            TargetKind::Raw => String::new(),
        };
        if i > 0 {
            out.push('\n');
        }
        let _ = write!(
            out,
            "  {:<18} {:<11} {:>10.0} {:>9} {:>10} {:>10} {:>11}",
            label,
            p.phase.name(),
            p.ops_per_s(),
            mib,
            latency(p.p50_us),
            latency(p.p99_us),
            ratio
        );
    }
    out
}

/// The closing lines: how to read the table and the total time.
pub fn footer(report: &Report<'_>) -> String {
    format!(
        "\nops/s and MiB/s: all {} threads together, blocks stored/read per second of wall time.\n\
         Latency is per call: per batch of {} blocks for ingest (sha2-256 hashing included) \
         and for get_many / has_many_absent, per single call for get and has_absent.\n\
         engine/raw: the engine's ops/s over the raw backend's (same keys, batches, flushes; \
         above 1 = engine faster).\n\
         Total wall time {:.1} s.",
        report.plan.threads,
        report.plan.batch,
        report.elapsed.as_secs_f64()
    )
}

/// A JSON number, `null` if not finite.
fn num(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.3}")
    } else {
        "null".into()
    }
}

/// A JSON string literal.
fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `Some(x)` as a JSON value, `None` as `null`.
fn opt<T>(x: Option<T>, f: impl Fn(T) -> String) -> String {
    x.map_or_else(|| "null".into(), f)
}

/// The whole report as a JSON document (written by hand: the tools crate has no serde).
pub fn json(report: &Report<'_>) -> String {
    let plan = report.plan;
    let backends: Vec<String> = plan.backends.iter().map(|b| string(b.name())).collect();
    let mut out = String::new();
    let _ = write!(
        out,
        "{{\n  \"tool\": \"ipfrs-bench\",\n  \"version\": {},\n  \"settings\": {{\"threads\": {}, \
         \"batch\": {}, \"durability\": {}, \"shards\": {}, \"seed\": {}, \"scale\": {}, \
         \"backends\": [{}]}},\n  \"cpu\": {{\"sha256_mb_per_s\": {}, \"sha_ni\": {}, \
         \"buffer_bytes\": {}}},\n  \"wall_seconds\": {},\n  \"results\": [",
        string(env!("CARGO_PKG_VERSION")),
        plan.threads,
        plan.batch,
        string(plan.durability.name()),
        opt(plan.shards, |n| n.to_string()),
        plan.seed,
        num(plan.scale),
        backends.join(", "),
        num(report.cpu.sha256_mb_per_s),
        opt(report.cpu.sha_ni, |b| b.to_string()),
        256 << 10,
        num(report.elapsed.as_secs_f64()),
    );
    for (i, r) in report.results.iter().enumerate() {
        let raw = report
            .results
            .iter()
            .find(|x| x.class == r.class && x.backend == r.backend && x.target == TargetKind::Raw);
        let phases: Vec<String> = r
            .phases
            .iter()
            .map(|p| {
                format!(
                    "\n        {}: {{\"ops\": {}, \"bytes\": {}, \"seconds\": {:.6}, \
                     \"ops_per_s\": {}, \"mib_per_s\": {}, \"p50_us\": {}, \"p99_us\": {}, \
                     \"max_us\": {}}}",
                    string(p.phase.name()),
                    p.ops,
                    p.bytes,
                    p.seconds,
                    num(p.ops_per_s()),
                    opt(p.mib_per_s(), num),
                    num(p.p50_us),
                    num(p.p99_us),
                    num(p.max_us),
                )
            })
            .collect();
        let ratios = match r.target {
            TargetKind::Engine => {
                let items: Vec<String> = Phase::ALL
                    .iter()
                    .map(|&p| format!("{}: {}", string(p.name()), opt(ratio(r, raw, p), num)))
                    .collect();
                format!("{{{}}}", items.join(", "))
            }
            TargetKind::Raw => "null".into(),
        };
        let _ = write!(
            out,
            "{}\n    {{\"block_size\": {}, \"blocks\": {}, \"backend\": {}, \"target\": {}, \
             \"shards\": {}, \"phases\": {{{}\n      }},\n      \"engine_over_raw_ops\": {}}}",
            if i > 0 { "," } else { "" },
            r.class.size,
            r.class.count,
            string(r.backend.name()),
            string(r.target.name()),
            opt(r.shards, |n| n.to_string()),
            phases.join(","),
            ratios,
        );
    }
    out.push_str("\n  ]\n}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_naturally() {
        assert_eq!(size_name(4096), "4 KiB");
        assert_eq!(size_name(256 << 10), "256 KiB");
        assert_eq!(size_name(2 << 20), "2 MiB");
        assert_eq!(size_name(1000), "1000 B");
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(string("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
        assert_eq!(num(f64::NAN), "null");
        assert_eq!(num(1.5), "1.500");
    }
}
