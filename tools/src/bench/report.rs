//! The printed report: a header (machine, settings, targets), one table per workload, and a
//! footer that says how to read them.

use std::fmt::Write as _;
use std::path::Path;

use super::doc::{Document, Settings, Spread, WorkloadReport};
use super::machine::Machine;
use super::target::TargetKind;

/// The lines printed before any measurement.
pub fn header(
    s: &Settings,
    m: &Machine,
    dir: &Path,
    targets: &[TargetKind],
    disk_unavailable: Option<&str>,
    sync_unavailable: Option<&str>,
) -> String {
    let names: Vec<String> = targets.iter().map(|t| t.name()).collect();
    let mut out = format!(
        "ipfrs-bench {}: {} cores ({}), kernel {}, io_uring {}, {} MiB available{}\n\
         data directory {} ({}; removed afterwards)\n\
         {} round{} of: {}\n\
         {}{} client threads x {} in flight, batches of {}, durability {}, shards {}, seed {}",
        env!("CARGO_PKG_VERSION"),
        m.cores,
        m.cpu_model,
        m.kernel,
        m.io_uring,
        m.mem_available_mib,
        if m.release_build {
            ""
        } else {
            " -- DEBUG BUILD: figures mean little, use --release"
        },
        dir.display(),
        m.fs_type,
        s.rounds,
        if s.rounds == 1 { "" } else { "s" },
        names.join(", "),
        // A run of only the car workload generates no blocks.
        if s.blocks > 0 {
            format!(
                "{} blocks per round ({:.0} MiB; {}), ",
                s.blocks,
                s.stored_bytes as f64 / (1 << 20) as f64,
                s.size_description
            )
        } else {
            String::new()
        },
        s.threads,
        s.in_flight,
        s.batch,
        s.durability,
        s.shards
            .map_or_else(|| "one per core".into(), |n| n.to_string()),
        s.seed,
    );
    if let (Some(file), Some(blocks), Some(bytes)) = (&s.car_file, s.car_blocks, s.car_bytes) {
        let _ = write!(
            out,
            "\ncar: {file}, {blocks} blocks ({:.1} MiB), ingested into a fresh store per target",
            bytes as f64 / (1 << 20) as f64
        );
    }
    if let Some(reason) = disk_unavailable {
        let _ = write!(out, "\ndisk ceiling NOT measured: {reason}");
    }
    if let Some(reason) = sync_unavailable {
        let _ = write!(
            out,
            "\nwrite+fdatasync ceiling of put NOT measured: {reason}"
        );
    }
    if m.sha_ni == Some(false) {
        out.push_str("\nno SHA-NI on this CPU: sha2-256 runs the portable code, about 5x slower");
    }
    out
}

/// A number for a table cell: no decimals from 100 on, one below.
fn n(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

/// Ops/s with the rounds' range, compactly: "12345 (11.9k-13.0k)".
fn ops_cell(s: &Spread) -> String {
    let short = |x: f64| {
        if x >= 10_000.0 {
            format!("{:.1}k", x / 1000.0)
        } else {
            format!("{x:.0}")
        }
    };
    format!("{:.0} ({}-{})", s.median, short(s.min), short(s.max))
}

fn opt(x: Option<f64>, f: impl Fn(f64) -> String) -> String {
    x.map_or_else(|| "-".into(), f)
}

/// One workload's table.
pub fn table(w: &WorkloadReport) -> String {
    let mut out = format!(
        "\n{}\n  {:<26} {:>24} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>7}",
        w.description,
        "target",
        "ops/s (min-max)",
        "MiB/s",
        "p50 us",
        "p90 us",
        "p99 us",
        "p99.9",
        "max us",
        "+RSS MiB",
        "vs base",
        "vs ceil",
    );
    for r in &w.results {
        let l = &r.latency_us;
        let _ = write!(
            out,
            "\n  {:<26} {:>24} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>7}",
            r.target,
            ops_cell(&r.ops_per_s),
            opt(r.mib_per_s.map(|m| m.median), n),
            n(l.p50),
            n(l.p90),
            n(l.p99),
            n(l.p99_9),
            n(l.max),
            opt(r.rss_growth_mib.map(|m| m.median), |x| format!("{x:.0}")),
            opt(r.vs_baseline, |x| format!("{x:.2}x")),
            opt(r.vs_ceiling, |x| format!("{:.0}%", x * 100.0)),
        );
    }
    if let Some(ceiling) = &w.ceiling {
        let _ = write!(out, "\n  (ceiling: {ceiling})");
    }
    out
}

/// The S3 requests of a workload's S3 targets (the median round's, by method, and per op),
/// or `None` when no target of it talks to S3.
pub fn s3_requests(w: &WorkloadReport) -> Option<String> {
    let counted: Vec<_> = w
        .results
        .iter()
        .filter_map(|r| Some((r, r.s3_requests?)))
        .collect();
    if counted.is_empty() {
        return None;
    }
    let mut out = format!(
        "  S3 requests in the measured pass (median round; DELETE includes other methods):\n  \
         {:<26} {:>9} {:>9} {:>9} {:>9} {:>7} {:>9} {:>9}",
        "target", "GET", "PUT", "HEAD", "POST", "DELETE", "total", "per op"
    );
    for (r, c) in counted {
        let _ = write!(
            out,
            "\n  {:<26} {:>9} {:>9} {:>9} {:>9} {:>7} {:>9} {:>9}",
            r.target,
            c.get,
            c.put,
            c.head,
            c.post,
            c.delete + c.other,
            c.total,
            opt(r.s3_requests_per_op, |x| format!("{x:.3}")),
        );
    }
    Some(out)
}

/// Per target, what one round of all its workloads cost the process: CPU seconds, major page
/// faults, and the memory peak (medians over rounds).
pub fn resources(doc: &Document) -> String {
    let mut out = format!(
        "\nper target and round (all workloads): median CPU seconds, major page faults, memory\n  \
         {:<26} {:>8} {:>13} {:>9} {:>9}",
        "target", "CPU s", "major faults", "peak MiB", "+RSS MiB"
    );
    for name in &doc.targets {
        // Every workload of a target carries the same per-round figures: take the first.
        let Some(r) = doc
            .workloads
            .iter()
            .flat_map(|w| &w.results)
            .find(|r| &r.target == name)
        else {
            continue;
        };
        let median = |f: &dyn Fn(&super::doc::RoundFigures) -> Option<f64>| {
            Spread::of(&r.rounds.iter().filter_map(f).collect::<Vec<_>>()).map(|s| s.median)
        };
        let _ = write!(
            out,
            "\n  {:<26} {:>8} {:>13} {:>9} {:>9}",
            name,
            opt(median(&|x| x.target_cpu_s), |v| format!("{v:.2}")),
            opt(median(&|x| x.target_major_faults.map(|f| f as f64)), |v| {
                format!("{v:.0}")
            }),
            opt(median(&|x| x.peak_rss_mib), |v| format!("{v:.0}")),
            opt(median(&|x| x.rss_growth_mib), |v| format!("{v:.0}")),
        );
    }
    out
}

/// The closing lines: how to read the tables, what is missing, the total time.
pub fn footer(doc: &Document) -> String {
    let s = &doc.settings;
    let start_rss = doc
        .workloads
        .iter()
        .flat_map(|w| &w.results)
        .flat_map(|r| &r.rounds)
        .filter_map(|r| r.start_rss_mib)
        .fold(0.0, f64::max);
    let mut out = format!(
        "\nFigures are medians over {} rounds, targets interleaved; ops/s shows the rounds' \
         min-max.\n\
         Latency per call (per batch for ingest/car/delete/get-many/has-many-absent, whose \
         ops are blocks or CIDs; per page for scan){}.\n\
         +RSS: the target's peak resident memory (VmHWM, reset per target) above the process's \
         memory when the target opened ({:.0} MiB at most: the generated blocks and the tool).\n\
         vs base: ops/s over the baseline's ({}); above 1 = faster. vs ceil: MiB/s over the \
         slowest ceiling's (disk/o_direct = O_DIRECT writes / page-cache-free reads at the same \
         queue depth, cpu/sha2-256 = hashing alone, mem/xxh3 = one checking pass over the \
         read blocks' bytes in memory, disk/write+fdatasync = one O_DIRECT write \
         + fdatasync per call at queue depth 1 per lane); reads above 100% come from memory.",
        s.rounds,
        match s.rate {
            Some(_) => ", from each op's intended start (open loop)",
            None => "",
        },
        start_rss,
        if s.baseline == "raw" {
            "the raw backend under the same engine; engine+s3: s3/object-per-block"
        } else {
            &s.baseline
        },
    );
    for m in &doc.missing {
        let _ = write!(out, "\nNot measured yet: {m}");
    }
    let _ = write!(out, "\nTotal wall time {:.1} s.", doc.wall_seconds);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_read_naturally() {
        assert_eq!(n(1234.56), "1235");
        assert_eq!(n(12.34), "12.3");
        let s = Spread {
            median: 12_345.0,
            min: 11_900.0,
            max: 13_020.0,
        };
        assert_eq!(ops_cell(&s), "12345 (11.9k-13.0k)");
        assert_eq!(opt(None, n), "-");
    }
}
