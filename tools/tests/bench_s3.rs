//! `ipfrs-bench --s3 garage` end to end: a tiny run against a Garage the bench starts itself
//! reports both S3 targets with their requests, and the engine's `has` of absent blocks sends
//! none while one object per block sends a HEAD each. Skipped with a message where Garage is
//! not installed, unless `IPFRS_REQUIRE_GARAGE` is set. Counts are tiny; nothing asserts speed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use serde_json::Value;

use common::{bench, read_json};

/// A target's figures on a workload of the report.
fn figures<'a>(doc: &'a Value, workload: &str, target: &str) -> &'a Value {
    doc["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == workload)
        .unwrap_or_else(|| panic!("no workload {workload}"))["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["target"] == target)
        .unwrap_or_else(|| panic!("{workload}: no target {target}"))
}

/// The median round's S3 requests of a target on a workload, by method and total.
fn requests(doc: &Value, workload: &str, target: &str, method: &str) -> u64 {
    figures(doc, workload, target)["s3_requests"][method]
        .as_u64()
        .unwrap_or_else(|| panic!("{workload} {target}: no s3_requests.{method}"))
}

#[test]
fn s3_targets_report_their_requests_and_the_engines_absent_has_sends_none() {
    let Some(binary) = ipfrs_garage::garage_for_test(
        "s3_targets_report_their_requests_and_the_engines_absent_has_sends_none",
    )
    .unwrap() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("run.json");
    let markdown = dir.path().join("run.md");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ipfrs-bench"))
        .env(ipfrs_garage::GARAGE_ENV, &binary)
        .args([
            "--s3",
            "garage",
            // Garage takes it (it would not start on a block size it refuses).
            "--s3-garage-block-size",
            "64K",
            "-w",
            "ingest,get,get-many,has-absent",
            "--blocks",
            "48",
            "--size",
            "4KiB",
            "--batch",
            "8",
            "--threads",
            "1",
            "--in-flight",
            "2",
            "--rounds",
            "1",
            "--duration",
            "100ms",
            "--backend",
            "sled",
            "--hot-tier",
            "on",
            "--no-ceiling",
            "--shards",
            "2",
            "--dir",
        ])
        .arg(dir.path())
        .arg("--json")
        .arg(&json)
        .arg("--markdown")
        .arg(&markdown)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = read_json(&json);
    let targets: Vec<&str> = doc["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    for want in [
        "raw/sled",
        "engine+hot/sled",
        "engine+s3/sled",
        "s3/object-per-block",
    ] {
        assert!(targets.contains(&want), "{want} missing from {targets:?}");
    }

    // The point of the pack tier: an absent block is answered from the local index and
    // bloom filters, while one object per block costs a HEAD each.
    assert_eq!(
        requests(&doc, "has-absent", "engine+s3/sled", "total"),
        0,
        "{}",
        figures(&doc, "has-absent", "engine+s3/sled")
    );
    let heads = requests(&doc, "has-absent", "s3/object-per-block", "head");
    assert!(heads > 0);
    assert_eq!(
        requests(&doc, "has-absent", "s3/object-per-block", "total"),
        heads
    );
    // One PUT per block (more only if the client retried).
    assert!(requests(&doc, "ingest", "s3/object-per-block", "put") >= 48);
    assert!(requests(&doc, "get-many", "s3/object-per-block", "get") > 0);

    // engine+s3 is compared with S3 used directly; the local targets carry no counts.
    let engine_get = figures(&doc, "get", "engine+s3/sled");
    assert_eq!(engine_get["baseline"], "s3/object-per-block");
    assert!(engine_get["vs_baseline"].as_f64().unwrap() > 0.0);
    assert!(
        figures(&doc, "get", "raw/sled")
            .get("s3_requests")
            .is_none()
    );
    assert!(
        stdout.contains("S3 requests in the measured pass"),
        "{stdout}"
    );
    assert!(stdout.contains("Garage on http://127.0.0.1:"), "{stdout}");
    assert!(stdout.contains("block_size 65536"), "{stdout}");
    let table = std::fs::read_to_string(&markdown).unwrap();
    assert!(table.contains("has-absent S3 requests"), "{table}");
}

#[test]
fn s3_env_without_a_bucket_is_a_one_line_usage_error() {
    let out = bench(&["--s3", "env", "--no-ceiling"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--s3-bucket"), "{stderr}");
}
