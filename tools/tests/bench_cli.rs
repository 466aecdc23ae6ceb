//! Runs the built `ipfrs-bench` binary: a tiny run's `--json` document must have every field
//! (parsed with serde_json), `compare` must flag a regression with its exit code, and bad
//! arguments must fail with one line on stderr. Counts are tiny; nothing asserts speed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use serde_json::Value;

use common::{bench, num, read_json, succeed};

const ALL_WORKLOADS: [&str; 9] = [
    "ingest",
    "get",
    "get-many",
    "get-zipf",
    "has-absent",
    "has-many-absent",
    "mixed",
    "scan",
    "delete",
];

/// Checks a target's figures on a workload: every round present, the spread consistent, the
/// percentiles in order.
fn check_figures(r: &Value, rounds: usize, what: &str) {
    let all = r["rounds"].as_array().unwrap();
    assert_eq!(all.len(), rounds, "{what}: rounds");
    for round in all {
        assert!(num(&round["ops"], what) >= 1.0, "{what}: ops");
        assert!(num(&round["seconds"], what) > 0.0);
        assert!(num(&round["ops_per_s"], what) > 0.0);
        for key in [
            "mib_per_s",
            "start_rss_mib",
            "peak_rss_mib",
            "rss_growth_mib",
        ] {
            assert!(round.get(key).is_some(), "{what}: rounds[].{key}");
        }
    }
    let ops = &r["ops_per_s"];
    let (median, min, max) = (
        num(&ops["median"], what),
        num(&ops["min"], what),
        num(&ops["max"], what),
    );
    assert!(min > 0.0 && min <= median && median <= max, "{what}: {ops}");
    let l = &r["latency_us"];
    let p: Vec<f64> = ["p50", "p90", "p99", "p99_9", "max"]
        .iter()
        .map(|k| num(&l[k], what))
        .collect();
    assert!(p[0] > 0.0, "{what}: p50");
    assert!(p.windows(2).all(|w| w[0] <= w[1]), "{what}: {l}");
    // Linux: the peak is measured; it is at least the memory the blocks take.
    assert!(num(&r["peak_rss_mib"]["median"], what) > 1.0, "{what}: rss");
    for key in [
        "baseline",
        "vs_baseline",
        "vs_ceiling",
        "mib_per_s",
        "is_ceiling",
    ] {
        assert!(r.get(key).is_some(), "{what}: no {key}");
    }
}

#[test]
fn tiny_run_writes_every_field() {
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("out.json");
    let md = tmp.path().join("out.md");
    let data = tmp.path().join("data");
    let stdout = succeed(&[
        "--markdown",
        md.to_str().unwrap(),
        "--blocks",
        "40",
        "--ops",
        "50",
        "--rounds",
        "2",
        "--shards",
        "2",
        "--json",
        json.to_str().unwrap(),
        "--dir",
        data.to_str().unwrap(),
    ]);
    for needle in [
        "IPFS mix",
        "ingest: 40 blocks",
        "get-zipf",
        "get-many: get_many of 32 uniform random blocks per call",
        "has-many-absent: has_many of 32 never-stored CIDs per call",
        "engine/sled",
        "raw/parity-db",
        "cpu/sha2-256",
        "vs base",
        "major page faults",
        "Total wall time",
    ] {
        assert!(stdout.contains(needle), "{needle:?} missing:\n{stdout}");
    }
    assert!(
        std::fs::read_dir(&data).unwrap().next().is_none(),
        "the run's directory was left behind"
    );

    let md = std::fs::read_to_string(&md).unwrap();
    let rows: Vec<&str> = md.lines().collect();
    assert!(rows[0].starts_with("| target | ingest MiB/s | get ops/s | get p99 µs |"));
    assert!(
        rows[0].ends_with("| scan CIDs/s | delete blocks/s |"),
        "{md}"
    );
    for head in ["| get-many blocks/s |", "| has-many-absent CIDs/s |"] {
        assert!(rows[0].contains(head), "{head} not in {md}");
    }
    assert!(
        rows.iter().any(|r| r.starts_with("| `engine/sled` |")),
        "{md}"
    );
    // The header row and the alignment row, then a row per target, every row as wide.
    let width = rows[0].matches('|').count();
    assert!(rows.iter().all(|r| r.matches('|').count() == width), "{md}");

    let doc = read_json(&json);
    assert_eq!(doc["tool"], "ipfrs-bench");
    assert!(!doc["version"].as_str().unwrap().is_empty());
    assert!(doc["command"].as_array().unwrap().len() > 1);
    let s = &doc["settings"];
    assert_eq!(s["blocks"], 40);
    assert_eq!(s["size"], "ipfs");
    assert_eq!(s["rounds"], 2);
    assert_eq!(s["shards"], 2);
    assert_eq!(s["duration_s"], Value::Null);
    assert!(num(&s["stored_bytes"], "stored_bytes") > 0.0);
    for key in [
        "warmup_s",
        "threads",
        "in_flight",
        "batch",
        "rate",
        "zipf_skew",
        "read_ratio",
        "durability",
        "cache_bytes",
        "seed",
        "baseline",
        "backends",
        "size_description",
    ] {
        assert!(s.get(key).is_some(), "settings.{key}");
    }
    let m = &doc["machine"];
    assert!(num(&m["cores"], "cores") >= 1.0);
    for key in ["cpu_model", "kernel", "fs_type"] {
        assert!(!m[key].as_str().unwrap().is_empty(), "machine.{key}");
    }
    assert!(num(&m["mem_available_mib"], "mem") > 0.0);
    assert!(num(&m["mem_free_mib"], "mem") >= 0.0);
    assert!(m["crate_versions"]["glommio"].is_string());
    assert!(m["crate_versions"]["sled"].is_string());
    assert!(m.get("sha_ni").is_some() && m["release_build"].is_boolean());
    assert_eq!(doc["missing"], serde_json::json!([]));
    assert!(!stdout.contains("Not measured yet"), "{stdout}");
    assert_eq!(s["car_file"], Value::Null);
    assert_eq!(rows.len(), 2 + doc["targets"].as_array().unwrap().len());
    assert!(num(&doc["wall_seconds"], "wall") > 0.0);

    let targets: Vec<&str> = doc["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    let disk = doc["disk_ceiling_unavailable"].is_null();
    for t in [
        "raw/sled",
        "engine+hot/sled",
        "engine/sled",
        "raw/parity-db",
        "engine+hot/parity-db",
        "engine/parity-db",
    ] {
        assert!(targets.contains(&t), "{t} not in {targets:?}");
    }
    assert_eq!(targets.contains(&"disk/o_direct"), disk);
    assert!(targets.contains(&"cpu/sha2-256"));

    let workloads = doc["workloads"].as_array().unwrap();
    let names: Vec<&str> = workloads
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ALL_WORKLOADS);
    for w in workloads {
        let name = w["name"].as_str().unwrap();
        let results = w["results"].as_array().unwrap();
        let of = |t: &str| results.iter().find(|r| r["target"] == t);
        for backend in ["sled", "parity-db"] {
            let engine = of(&format!("engine/{backend}")).unwrap();
            let raw = of(&format!("raw/{backend}")).unwrap();
            check_figures(raw, 2, &format!("{name} raw/{backend}"));
            for variant in ["engine", "engine+hot"] {
                let e = of(&format!("{variant}/{backend}")).unwrap();
                check_figures(e, 2, &format!("{name} {variant}/{backend}"));
                assert_eq!(e["baseline"], format!("raw/{backend}"));
                assert!(num(&e["vs_baseline"], "vs_baseline") > 0.0);
            }
            assert_eq!(raw["vs_baseline"], Value::Null);
            // --ops 50: 50 calls, or 50 keys in calls of --batch 32 for the batched reads.
            for r in [engine, raw] {
                let ops = num(&r["rounds"][0]["ops"], "ops");
                match name {
                    "ingest" | "delete" => assert_eq!(ops, 40.0, "{name}"),
                    "scan" => assert!(ops >= 40.0, "{name}: {ops}"),
                    _ => assert_eq!(ops, 50.0, "{name}"),
                }
                let mib = &r["rounds"][0]["mib_per_s"];
                match name {
                    // Every block read is counted with its bytes.
                    "get" | "get-many" | "get-zipf" => assert!(num(mib, name) > 0.0),
                    "has-absent" | "has-many-absent" => assert!(mib.is_null(), "{name}"),
                    _ => {}
                }
            }
        }
        let ceilings: Vec<&str> = results
            .iter()
            .filter(|r| r["is_ceiling"] == true)
            .map(|r| r["target"].as_str().unwrap())
            .collect();
        match name {
            "ingest" => {
                assert!(ceilings.contains(&"cpu/sha2-256"));
                assert_eq!(ceilings.contains(&"disk/o_direct"), disk);
                assert!(w["ceiling"].is_string());
                let engine = of("engine/sled").unwrap();
                assert!(num(&engine["vs_ceiling"], "vs_ceiling") > 0.0);
            }
            "get" | "get-many" | "get-zipf" => {
                assert_eq!(ceilings.contains(&"disk/o_direct"), disk);
                if disk {
                    let disk = of("disk/o_direct").unwrap();
                    check_figures(disk, 2, &format!("{name} disk/o_direct"));
                    assert_eq!(num(&disk["rounds"][0]["ops"], "ops"), 50.0, "{name}");
                }
            }
            _ => {
                assert!(ceilings.is_empty(), "{name}: {ceilings:?}");
                assert_eq!(w["ceiling"], Value::Null);
            }
        }
    }
}

#[test]
fn flags_shape_the_run_and_quiet_prints_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("quiet.json");
    let out = bench(&[
        "--quiet",
        "--blocks",
        "30",
        "--size",
        "1000",
        "-w",
        "has-absent",
        "-w",
        "get",
        "-w",
        "has-many-absent",
        "-w",
        "get-many",
        "--duration",
        "50ms",
        "--rate",
        "2000",
        "--batch",
        "7",
        "--threads",
        "3",
        "--in-flight",
        "1",
        "--durability",
        "none",
        "--backend",
        "sled",
        "--baseline",
        "engine/sled",
        "--no-ceiling",
        "--rounds",
        "1",
        "--seed",
        "9",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "--quiet printed on stdout");
    assert!(out.stderr.is_empty(), "--quiet printed on stderr");
    let doc = read_json(&json);
    let s = &doc["settings"];
    assert_eq!(s["durability"], "none");
    assert_eq!(s["size"], "1000");
    assert_eq!(s["batch"], 7);
    assert_eq!(s["threads"], 3);
    assert_eq!(s["in_flight"], 1);
    assert_eq!(s["seed"], 9);
    assert_eq!(s["rate"], 2000.0);
    assert_eq!(s["duration_s"], 0.05);
    assert_eq!(s["stored_bytes"], 30_000);
    assert_eq!(
        doc["targets"],
        serde_json::json!(["raw/sled", "engine+hot/sled", "engine/sled"])
    );
    // Ingest ran (the reads need it) but only the chosen workloads are reported.
    let names: Vec<&str> = doc["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["get", "get-many", "has-absent", "has-many-absent"]);
    let get = &doc["workloads"][0]["results"];
    let raw = get
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["target"] == "raw/sled")
        .unwrap();
    assert_eq!(raw["baseline"], "engine/sled");
    // Open loop at 2000/s for 50 ms: at most 100 ops were due.
    let ops = num(&raw["rounds"][0]["ops"], "ops");
    assert!((1.0..=100.0).contains(&ops), "{ops} ops");
    // The batched reads: at most 100 calls were due, each of --batch 7 keys (the op list of
    // 100,000 keys ends with a short call no 50 ms run reaches), and ops count keys.
    for (w, name) in [(1, "get-many"), (3, "has-many-absent")] {
        let workload = &doc["workloads"][w];
        assert_eq!(workload["name"], name);
        for r in workload["results"].as_array().unwrap() {
            let round = &r["rounds"][0];
            let ops = num(&round["ops"], name);
            let what = format!("{name} {}: {ops} ops", r["target"]);
            assert!((7.0..=700.0).contains(&ops), "{what}");
            assert_eq!(ops % 7.0, 0.0, "{what}");
            let bytes = num(&round["bytes"], name);
            let want = if name == "get-many" {
                ops * 1000.0
            } else {
                0.0
            };
            assert_eq!(bytes, want, "{what}");
        }
    }
}

#[test]
fn compare_flags_regressions_with_its_exit_code() {
    let tmp = tempfile::tempdir().unwrap();
    let old = tmp.path().join("old.json");
    let new = tmp.path().join("new.json");
    succeed(&[
        "--quiet",
        "--blocks",
        "20",
        "--ops",
        "20",
        "--rounds",
        "1",
        "--backend",
        "sled",
        "-w",
        "get",
        "--no-ceiling",
        "--json",
        old.to_str().unwrap(),
    ]);
    let same = succeed(&["compare", old.to_str().unwrap(), old.to_str().unwrap()]);
    // ops/s and p99 of the three targets (raw, engine with and without its hot tier), and
    // +RSS where a target grew at all.
    let compared: usize = same
        .lines()
        .find_map(|l| l.strip_prefix("0 of "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no summary in {same}"));
    assert!((6..=9).contains(&compared), "{same}");
    assert!(!same.contains("REGRESSION"));

    // The engine's get got 3x slower.
    let mut doc = read_json(&old);
    let result = doc["workloads"][0]["results"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|r| r["target"] == "engine/sled")
        .unwrap();
    let ops = num(&result["ops_per_s"]["median"], "ops");
    result["ops_per_s"]["median"] = serde_json::json!(ops / 3.0);
    std::fs::write(&new, serde_json::to_string(&doc).unwrap()).unwrap();

    let out = bench(&["compare", old.to_str().unwrap(), new.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let flagged: Vec<&str> = text.lines().filter(|l| l.contains("REGRESSION")).collect();
    assert_eq!(flagged.len(), 1, "{text}");
    assert!(flagged[0].contains("engine/sled") && flagged[0].contains("-66.7%"));

    let lenient = bench(&[
        "compare",
        "--threshold",
        "70%",
        old.to_str().unwrap(),
        new.to_str().unwrap(),
    ]);
    assert!(lenient.status.success());

    std::fs::write(&new, "{\"not\": \"a report\"}").unwrap();
    assert_one_line_error(
        &["compare", old.to_str().unwrap(), new.to_str().unwrap()],
        "not an ipfrs-bench --json report",
    );
    let missing = tmp.path().join("missing.json");
    assert_one_line_error(
        &["compare", old.to_str().unwrap(), missing.to_str().unwrap()],
        "cannot read",
    );
}

/// Asserts a failed run: non-zero exit (not a panic), nothing on stdout, exactly one line on
/// stderr containing `needle`.
fn assert_one_line_error(args: &[&str], needle: &str) {
    let out = bench(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let code = out.status.code();
    assert!(
        !out.status.success() && code != Some(101),
        "{args:?}: exit {code:?}"
    );
    assert!(out.stdout.is_empty(), "{args:?}: printed on stdout");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "{args:?}: stderr is not one line:\n{stderr}"
    );
    assert!(lines[0].contains("error"), "{args:?}: {stderr}");
    assert!(
        lines[0].contains(needle),
        "{args:?}: {needle:?} not in {stderr}"
    );
}

#[test]
fn bad_arguments_fail_with_one_line() {
    assert_one_line_error(&["--blocks", "0"], "--blocks");
    assert_one_line_error(&["--ops", "0"], "--ops");
    assert_one_line_error(&["--size", "3MiB"], "maximum block size");
    assert_one_line_error(&["--size", "0"], "--size");
    assert_one_line_error(&["-w", "car"], "--car FILE");
    assert_one_line_error(
        &["-w", "car", "--car", "/nonexistent/blocks.car"],
        "/nonexistent/blocks.car",
    );
    assert_one_line_error(&["--threads", "0"], "--threads");
    assert_one_line_error(&["--in-flight", "0"], "--in-flight");
    assert_one_line_error(&["--batch", "0"], "--batch");
    assert_one_line_error(&["--rounds", "0"], "--rounds");
    assert_one_line_error(&["--rate", "0"], "--rate");
    assert_one_line_error(&["--duration", "soon"], "soon");
    assert_one_line_error(&["--durability", "sometimes"], "sometimes");
    assert_one_line_error(&["--backend", "nosuch"], "nosuch");
    if !cfg!(feature = "rocksdb") {
        assert_one_line_error(&["--backend", "rocksdb"], "--features rocksdb");
    }
    assert_one_line_error(&["--no-such-flag"], "--no-such-flag");
    assert_one_line_error(&["compare", "only-one.json"], "required");
}

fn car_fixture(name: &str) -> String {
    format!("{}/tests/fixtures/car/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn car_workload_ingests_every_block_of_the_file_into_each_target() {
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("car.json");
    let data = tmp.path().join("data");
    let car = car_fixture("sample-v1.car");
    let stdout = succeed(&[
        "-w",
        "car,get",
        "--car",
        &car,
        "--blocks",
        "20",
        "--ops",
        "20",
        "--rounds",
        "2",
        "--backend",
        "sled",
        "--json",
        json.to_str().unwrap(),
        "--dir",
        data.to_str().unwrap(),
    ]);
    assert!(stdout.contains("car: ingest of"), "{stdout}");
    assert!(stdout.contains("1049 blocks"), "{stdout}");
    // The engine's rounds ran the import itself (which stores exactly the file's blocks, or
    // fails the run), not a replay.
    assert!(stdout.contains("car import"), "{stdout}");
    assert!(
        std::fs::read_dir(&data).unwrap().next().is_none(),
        "the run's directory was left behind"
    );
    let doc = read_json(&json);
    let s = &doc["settings"];
    assert_eq!(s["car_file"], car.as_str());
    assert_eq!(s["car_blocks"], 1049);
    let car_bytes = num(&s["car_bytes"], "car_bytes");
    // The blocks are most of the file (the rest: header, CIDs and length prefixes).
    let file_len = std::fs::metadata(&car).unwrap().len() as f64;
    assert!(
        car_bytes > 0.8 * file_len && car_bytes < file_len,
        "{car_bytes}"
    );
    let names: Vec<&str> = doc["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["get", "car"]);
    let w = &doc["workloads"][1];
    let results = w["results"].as_array().unwrap();
    let targets: Vec<&str> = results
        .iter()
        .map(|r| r["target"].as_str().unwrap())
        .collect();
    let disk = doc["disk_ceiling_unavailable"].is_null();
    let mut want = vec!["raw/sled", "engine+hot/sled", "engine/sled"];
    if disk {
        want.push("disk/o_direct");
    }
    want.push("cpu/sha2-256");
    assert_eq!(targets, want);
    for r in results {
        let what = format!("car {}", r["target"]);
        check_figures(r, 2, &what);
        for round in r["rounds"].as_array().unwrap() {
            // Every block of the file, with all its bytes, in every round.
            assert_eq!(num(&round["ops"], &what), 1049.0, "{what}");
            assert_eq!(num(&round["bytes"], &what), car_bytes, "{what}");
            assert!(num(&round["mib_per_s"], &what) > 0.0, "{what}");
        }
    }
    let engine = results
        .iter()
        .find(|r| r["target"] == "engine/sled")
        .unwrap();
    assert_eq!(engine["baseline"], "raw/sled");
    assert!(num(&engine["vs_ceiling"], "vs_ceiling") > 0.0);
    // The get workload ran over the generated blocks, as without car.
    let get = &doc["workloads"][0]["results"][0];
    assert_eq!(num(&get["rounds"][0]["ops"], "get ops"), 20.0);
}

#[test]
fn a_bad_car_file_fails_with_one_line_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let car = tmp.path().join("x.car");
    std::fs::write(&car, b"not really a car").unwrap();
    let path = car.to_str().unwrap();
    assert_one_line_error(&["-w", "car", "--car", path, "--rounds", "1"], path);
    let bad = car_fixture("badsectionlength.car");
    assert_one_line_error(&["-w", "car", "--car", &bad], "badsectionlength.car");
    assert_one_line_error(
        &["-w", "car", "--car", tmp.path().to_str().unwrap()],
        "not a file",
    );
    assert_one_line_error(&["-w", "get", "--car", &bad], "--workload car");
}

#[test]
fn unwritable_dir_fails_with_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    // A directory below a regular file cannot be created, even by root.
    let file = tmp.path().join("file");
    std::fs::write(&file, b"not a directory").unwrap();
    let below = file.join("sub");
    assert_one_line_error(&["--dir", below.to_str().unwrap()], "--dir");

    // A read-only directory, where permissions apply (not as root).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let ro = tmp.path().join("ro");
        std::fs::create_dir(&ro).unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
        if std::fs::write(ro.join("probe"), b"").is_err() {
            assert_one_line_error(&["--dir", ro.to_str().unwrap()], "--dir");
        }
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    let json = tmp.path().join("missing").join("out.json");
    assert_one_line_error(&["--json", json.to_str().unwrap()], "--json");
    assert_one_line_error(&["--markdown", json.to_str().unwrap()], "--markdown");
}
