//! Runs the built `ipfrs-bench` on the single-call workloads a full node makes: `put` of new
//! blocks one per call against its write+fdatasync ceiling, and single `get` /
//! `has-absent` from 16 client threads, on tiny stores, reading the `--json` report. Counts
//! are tiny; nothing asserts speed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use serde_json::Value;

use common::{bench, num, read_json};

/// Runs with `--quiet --json` in a fresh directory and returns the report.
fn run_json(args: &[&str]) -> Value {
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("out.json");
    let data = tmp.path().join("data");
    let mut all = vec![
        "--quiet",
        "--json",
        json.to_str().unwrap(),
        "--dir",
        data.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    let out = bench(&all);
    assert!(
        out.status.success(),
        "{all:?}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        std::fs::read_dir(&data).unwrap().next().is_none(),
        "the run's directory was left behind"
    );
    read_json(&json)
}

fn workload<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == name)
        .unwrap_or_else(|| panic!("no {name} workload in {:?}", doc["workloads"]))
}

fn row<'a>(w: &'a Value, target: &str) -> &'a Value {
    w["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["target"] == target)
        .unwrap_or_else(|| panic!("no {target} row in {}", w["name"]))
}

/// A row's figures: positive ops/s, every round with ops, p50 > 0 and the percentiles in order;
/// returns the first round's ops.
fn check_row(r: &Value, what: &str) -> f64 {
    assert!(num(&r["ops_per_s"]["median"], what) > 0.0, "{what}: ops/s");
    let rounds = r["rounds"].as_array().unwrap();
    assert!(!rounds.is_empty(), "{what}: no rounds");
    for round in rounds {
        assert!(num(&round["ops"], what) >= 1.0, "{what}: ops");
    }
    let l = &r["latency_us"];
    let p: Vec<f64> = ["p50", "p90", "p99", "p99_9", "max"]
        .iter()
        .map(|k| num(&l[k], what))
        .collect();
    assert!(p[0] > 0.0, "{what}: p50 {l}");
    assert!(p.windows(2).all(|w| w[0] <= w[1]), "{what}: {l}");
    num(&rounds[0]["ops"], what)
}

/// Whether the report measured the put ceiling; if not, it must say why.
fn sync_ceiling_measured(doc: &Value) -> bool {
    let measured = doc["sync_ceiling_unavailable"].is_null();
    if !measured {
        assert!(doc["sync_ceiling_unavailable"].is_string());
        eprintln!(
            "write+fdatasync ceiling not measured here: {}",
            doc["sync_ceiling_unavailable"]
        );
    }
    measured
}

#[test]
fn put_stores_new_blocks_on_every_target_with_a_ceiling_row() {
    let doc = run_json(&[
        "-w",
        "put,scan",
        "--size",
        "4KiB",
        "--blocks",
        "20",
        "--ops",
        "30",
        "--rounds",
        "2",
        "--threads",
        "2",
        "--in-flight",
        "1",
        "--shards",
        "2",
        "--backend",
        "sled",
        "--backend",
        "parity-db",
    ]);
    assert_eq!(doc["settings"]["durability"], "sync");
    let names: Vec<&str> = doc["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    // Ingest ran (put copies its blocks' sizes) but only put and scan are reported.
    assert_eq!(names, ["put", "scan"]);
    let put = workload(&doc, "put");
    let description = put["description"].as_str().unwrap();
    assert!(
        description.contains("durability sync") && description.contains("fdatasync"),
        "{description}"
    );
    for target in [
        "engine+hot/sled",
        "engine/sled",
        "raw/sled",
        "engine+hot/parity-db",
        "engine/parity-db",
        "raw/parity-db",
    ] {
        let r = row(put, target);
        assert_eq!(r["is_ceiling"], false);
        // --ops 30: exactly 30 puts of one 4 KiB block each, in each round.
        assert_eq!(check_row(r, target), 30.0, "{target}");
        for round in r["rounds"].as_array().unwrap() {
            assert_eq!(num(&round["bytes"], target), 30.0 * 4096.0, "{target}");
        }
        assert!(num(&r["mib_per_s"]["median"], target) > 0.0, "{target}");
        // Every put stored a block the store did not have: the scan after it lists the 20
        // ingested blocks and the 30 put ones.
        for round in row(workload(&doc, "scan"), target)["rounds"]
            .as_array()
            .unwrap()
        {
            assert_eq!(num(&round["ops"], target), 50.0, "{target}: scan");
        }
    }
    assert!(num(&row(put, "engine/sled")["vs_baseline"], "vs_baseline") > 0.0);
    assert_eq!(row(put, "engine/sled")["baseline"], "raw/sled");
    // The other ceilings have no put: only the write+fdatasync one appears.
    let ceilings: Vec<&str> = put["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["is_ceiling"] == true)
        .map(|r| r["target"].as_str().unwrap())
        .collect();
    if sync_ceiling_measured(&doc) {
        assert_eq!(ceilings, ["disk/write+fdatasync"]);
        assert_eq!(put["ceiling"], "disk/write+fdatasync");
        let ceiling = row(put, "disk/write+fdatasync");
        assert_eq!(check_row(ceiling, "ceiling"), 30.0);
        for target in ["engine+hot/sled", "raw/sled"] {
            assert!(
                num(&row(put, target)["vs_ceiling"], target) > 0.0,
                "{target}"
            );
        }
        assert!(
            doc["targets"]
                .as_array()
                .unwrap()
                .contains(&"disk/write+fdatasync".into())
        );
    } else {
        assert!(ceilings.is_empty(), "{ceilings:?}");
    }
}

#[test]
fn put_without_durability_has_a_write_only_ceiling_and_runs_for_a_duration() {
    let doc = run_json(&[
        "-w",
        "put",
        "--size",
        "1000",
        "--blocks",
        "10",
        "--duration",
        "200ms",
        "--warmup",
        "50ms",
        "--rounds",
        "1",
        "--threads",
        "1",
        "--durability",
        "none",
        "--hot-tier",
        "on",
        "--backend",
        "sled",
    ]);
    assert_eq!(doc["settings"]["durability"], "none");
    let put = workload(&doc, "put");
    for target in ["engine+hot/sled", "raw/sled"] {
        check_row(row(put, target), target);
    }
    if sync_ceiling_measured(&doc) {
        assert_eq!(put["ceiling"], "disk/write");
        check_row(row(put, "disk/write"), "disk/write");
        assert!(
            !doc["targets"]
                .as_array()
                .unwrap()
                .contains(&"disk/write+fdatasync".into())
        );
    }
}

#[test]
fn single_calls_run_from_16_threads_on_every_target() {
    let doc = run_json(&[
        "-w",
        "put,get,has-absent",
        "--size",
        "4KiB",
        "--blocks",
        "64",
        "--duration",
        "200ms",
        "--rounds",
        "1",
        "--threads",
        "16",
        "--in-flight",
        "1",
        "--shards",
        "2",
        "--backend",
        "sled",
        "--backend",
        "parity-db",
    ]);
    assert_eq!(doc["settings"]["threads"], 16);
    for name in ["get", "has-absent", "put"] {
        let w = workload(&doc, name);
        for backend in ["sled", "parity-db"] {
            for variant in ["raw", "engine", "engine+hot"] {
                let target = format!("{variant}/{backend}");
                check_row(row(w, &target), &format!("{name} {target}"));
            }
        }
    }
    if sync_ceiling_measured(&doc) {
        check_row(
            row(workload(&doc, "put"), "disk/write+fdatasync"),
            "ceiling",
        );
    }
}

#[test]
fn a_bad_durability_is_refused_with_exit_code_2() {
    let out = bench(&["-w", "put", "--durability", "eventually"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("eventually"), "{stderr}");
}
