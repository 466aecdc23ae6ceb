//! `--markdown FILE`: the run as one summary table in Markdown, a row per target and a column
//! per workload (median ops/s; MiB/s for ingest, with the ratio to the baseline; p99 for get),
//! the form the README's Benchmarks section shows. A workload that S3 targets ran also gets
//! a column of their S3 requests (total, and per op).

use std::fmt::Write as _;

use super::doc::{Document, TargetFigures};

/// A figure as the README prints it: thousands separated, one decimal below 100.
fn figure(x: f64) -> String {
    if x < 100.0 {
        return format!("{x:.1}");
    }
    let digits = format!("{x:.0}");
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// How a cell is read from a target's figures on a workload.
type Cell = fn(&TargetFigures) -> String;

/// The column heads of a workload and how each cell is read.
fn columns(workload: &str) -> Vec<(String, Cell)> {
    fn ops(r: &TargetFigures) -> String {
        figure(r.ops_per_s.median)
    }
    fn ingest(r: &TargetFigures) -> String {
        let mib = r.mib_per_s.map_or_else(|| "-".into(), |m| figure(m.median));
        match r.vs_baseline {
            Some(v) => format!("{mib} ({v:.2}x)"),
            None => mib,
        }
    }
    fn p50(r: &TargetFigures) -> String {
        figure(r.latency_us.p50)
    }
    fn p99(r: &TargetFigures) -> String {
        figure(r.latency_us.p99)
    }
    match workload {
        "ingest" => vec![("ingest MiB/s".into(), ingest)],
        "car" => vec![("car MiB/s".into(), ingest)],
        "get" => vec![("get ops/s".into(), ops), ("get p99 µs".into(), p99)],
        "put" => vec![("put ops/s".into(), ops), ("put p50 µs".into(), p50)],
        "get-many" => vec![("get-many blocks/s".into(), ops)],
        "has-many-absent" => vec![("has-many-absent CIDs/s".into(), ops)],
        "scan" => vec![("scan CIDs/s".into(), ops)],
        "delete" => vec![("delete blocks/s".into(), ops)],
        other => vec![(format!("{other} ops/s"), ops)],
    }
}

/// A target's S3 requests on a workload: the median round's total and the median per op;
/// `-` for a target that does not talk to S3.
fn s3_requests(r: &TargetFigures) -> String {
    match (r.s3_requests, r.s3_requests_per_op) {
        (Some(c), Some(per_op)) => format!("{} ({per_op:.2})", figure(c.total as f64)),
        (Some(c), None) => figure(c.total as f64),
        _ => "-".into(),
    }
}

/// The summary table of `doc`.
pub fn table(doc: &Document) -> String {
    let mut heads = vec!["target".to_string()];
    let mut cells: Vec<(usize, Cell)> = Vec::new();
    for (w, workload) in doc.workloads.iter().enumerate() {
        for (head, cell) in columns(&workload.name) {
            heads.push(head);
            cells.push((w, cell));
        }
        if workload.results.iter().any(|r| r.s3_requests.is_some()) {
            heads.push(format!("{} S3 requests (per op)", workload.name));
            cells.push((w, s3_requests));
        }
    }
    let mut out = format!("| {} |\n|---|", heads.join(" | "));
    out.push_str(&"--:|".repeat(cells.len()));
    for target in &doc.targets {
        let row: Vec<String> = cells
            .iter()
            .map(|(w, cell)| {
                doc.workloads[*w]
                    .results
                    .iter()
                    .find(|r| &r.target == target)
                    .map_or_else(|| "-".into(), cell)
            })
            .collect();
        let _ = write!(out, "\n| `{target}` | {} |", row.join(" | "));
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_group_thousands() {
        assert_eq!(figure(1_540_793.4), "1,540,793");
        assert_eq!(figure(144.2), "144");
        assert_eq!(figure(36.34), "36.3");
        assert_eq!(figure(1000.0), "1,000");
        assert_eq!(figure(100_000.0), "100,000");
    }
}
