//! The HTML report of `ipfrs-bench`: a short real run writes `--json` and `--report`; the page
//! is parsed (html5ever, through scraper) and checked against the JSON: every workload has
//! its throughput and latency charts (SVG with shapes and labelled axes), and the numbers in
//! its tables are the JSON's. `report RUN.json` rebuilds the same page, old JSON files still
//! render, `compare --report` draws regressions in red, and headless Chromium renders the page
//! to a PNG that is not blank, in light and in dark mode. Counts are tiny; nothing asserts
//! speed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use scraper::{ElementRef, Html, Selector};
use serde_json::Value;

use common::{bench, read_json, succeed};

fn sel(css: &str) -> Selector {
    Selector::parse(css).unwrap()
}

fn text(e: ElementRef<'_>) -> String {
    e.text().collect::<String>().trim().to_string()
}

/// A tiny run of every default workload, 2 rounds: (directory, JSON, HTML).
fn tiny_run() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("run.json");
    let html = tmp.path().join("run.html");
    let data = tmp.path().join("data");
    succeed(&[
        "--blocks",
        "24",
        "--ops",
        "40",
        "--rounds",
        "2",
        "--shards",
        "2",
        "--json",
        json.to_str().unwrap(),
        "--report",
        html.to_str().unwrap(),
        "--dir",
        data.to_str().unwrap(),
        "--quiet",
    ]);
    (tmp, json, html)
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// A table cell's number ("12345", "12.3", "1.58x", "52%").
fn cell_number(cell: &str) -> f64 {
    cell.trim_end_matches(['x', '%'])
        .parse()
        .unwrap_or_else(|_| panic!("cell {cell:?} is not a number"))
}

/// Asserts that a cell shows `expected` as the tables round it.
fn assert_cell(cell: &str, expected: f64, what: &str) {
    let shown = cell_number(cell);
    // Cells print no decimals from 100 on, one below (ratios two).
    let tolerance = if expected >= 100.0 { 0.5 } else { 0.05 } + expected.abs() * 1e-12;
    assert!(
        (shown - expected).abs() <= tolerance,
        "{what}: the page shows {cell}, the JSON has {expected}"
    );
}

/// Checks one chart: an SVG with shapes, the axis label and the given texts.
fn check_svg(svg: ElementRef<'_>, axis: &str, texts: &[String], what: &str) {
    let shapes = svg
        .select(&sel("rect, line, polyline, circle, path"))
        .count();
    assert!(shapes >= 10, "{what}: only {shapes} shapes");
    let labels: Vec<String> = svg.select(&sel("text")).map(text).collect();
    assert!(
        labels.iter().any(|l| l.contains(axis)),
        "{what}: no axis label {axis:?} in {labels:?}"
    );
    for t in texts {
        assert!(
            labels.iter().any(|l| l.contains(t.as_str())),
            "{what}: no text {t:?} in {labels:?}"
        );
    }
    assert!(
        svg.value().attr("viewBox").is_some() && svg.value().attr("aria-label").is_some(),
        "{what}: no viewBox or description"
    );
}

/// The checks of a run's page against its JSON.
fn check_run_page(page: &str, doc: &Value) {
    let html = Html::parse_document(page);
    // Self-contained: nothing to fetch, nothing to run.
    for forbidden in ["<script", "<link", " src=", "url(", "@import", "<iframe"] {
        assert!(!page.contains(forbidden), "the page has {forbidden}");
    }
    assert!(page.contains("prefers-color-scheme: dark"));

    let workloads = doc["workloads"].as_array().unwrap();
    assert!(workloads.len() >= 9, "a default run has every workload");
    for w in workloads {
        let name = w["name"].as_str().unwrap();
        let section = html
            .select(&sel(&format!("section.workload[data-workload=\"{name}\"]")))
            .next()
            .unwrap_or_else(|| panic!("no section for {name}"));
        let results = w["results"].as_array().unwrap();
        let stores: Vec<&Value> = results
            .iter()
            .filter(|r| !r["is_ceiling"].as_bool().unwrap())
            .collect();
        // Throughput: a bar per store, its name, its ratio to the baseline, the ceilings.
        let mut texts: Vec<String> = Vec::new();
        for r in &stores {
            texts.push(r["target"].as_str().unwrap().to_string());
            if let Some(v) = r["vs_baseline"].as_f64() {
                texts.push(format!("{v:.2}x"));
            }
        }
        for r in results.iter().filter(|r| r["is_ceiling"] == true) {
            texts.push(format!("ceiling {}", r["target"].as_str().unwrap()));
        }
        let bars = section
            .select(&sel("figure.throughput svg.chart"))
            .next()
            .unwrap_or_else(|| panic!("{name}: no throughput chart"));
        check_svg(bars, "ops/s", &texts, &format!("{name} throughput"));
        let filled = bars
            .select(&sel("rect"))
            .filter(|r| r.value().attr("fill").is_some_and(|f| f != "none"))
            .count();
        assert!(filled >= stores.len(), "{name}: {filled} bars");
        let latency = section
            .select(&sel("figure.latency svg.chart"))
            .next()
            .unwrap_or_else(|| panic!("{name}: no latency chart"));
        let percentiles: Vec<String> = ["p50", "p90", "p99", "p99.9", "max"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        check_svg(latency, "µs", &percentiles, &format!("{name} latency"));
        // A marker per percentile per target (where the latency is measurable).
        let circles = latency.select(&sel("circle")).count();
        assert!(circles >= results.len() * 5, "{name}: {circles} points");
        let legend: Vec<String> = section.select(&sel("ul.legend li")).map(text).collect();
        assert_eq!(legend.len(), results.len(), "{name}: legend {legend:?}");

        // The table: every target's figures as the JSON has them.
        for r in results {
            let target = r["target"].as_str().unwrap();
            let row = section
                .select(&sel(&format!("table.figures tr[data-target=\"{target}\"]")))
                .next()
                .unwrap_or_else(|| panic!("{name}: no row for {target}"));
            let cells: Vec<String> = row.select(&sel("td")).map(text).collect();
            assert_eq!(cells[0], target);
            let what = format!("{name} {target}");
            assert_cell(&cells[1], num(&r["ops_per_s"]["median"]), &what);
            assert_cell(&cells[2], num(&r["ops_per_s"]["min"]), &what);
            assert_cell(&cells[3], num(&r["ops_per_s"]["max"]), &what);
            for (i, key) in ["p50", "p90", "p99", "p99_9", "max"].iter().enumerate() {
                assert_cell(&cells[5 + i], num(&r["latency_us"][key]), &what);
            }
            match r["vs_baseline"].as_f64() {
                Some(v) => assert!((cell_number(&cells[11]) - v).abs() <= 0.005, "{what}"),
                None => assert_eq!(cells[11], "-", "{what}"),
            }
        }
    }

    // Memory and CPU per target: the medians over the target's rounds.
    let resources = html.select(&sel("section#resources")).next().unwrap();
    for caption in ["figure.memory svg.chart", "figure.cpu svg.chart"] {
        assert!(
            resources.select(&sel(caption)).next().is_some(),
            "{caption}"
        );
    }
    check_svg(
        resources
            .select(&sel("figure.memory svg.chart"))
            .next()
            .unwrap(),
        "MiB",
        &[],
        "memory",
    );
    check_svg(
        resources
            .select(&sel("figure.cpu svg.chart"))
            .next()
            .unwrap(),
        "CPU s",
        &[],
        "cpu",
    );
    for target in doc["targets"].as_array().unwrap() {
        let target = target.as_str().unwrap();
        let r = workloads
            .iter()
            .flat_map(|w| w["results"].as_array().unwrap())
            .find(|r| r["target"] == target)
            .unwrap();
        let median = |key: &str| {
            let mut v: Vec<f64> = r["rounds"]
                .as_array()
                .unwrap()
                .iter()
                .map(|round| num(&round[key]))
                .collect();
            v.sort_by(f64::total_cmp);
            let n = v.len();
            if n % 2 == 1 {
                v[n / 2]
            } else {
                (v[n / 2 - 1] + v[n / 2]) / 2.0
            }
        };
        let row = resources
            .select(&sel(&format!("tr[data-target=\"{target}\"]")))
            .next()
            .unwrap_or_else(|| panic!("no resources row for {target}"));
        let cells: Vec<String> = row.select(&sel("td")).map(text).collect();
        let cpu = median("target_cpu_s");
        assert!(
            (cell_number(&cells[1]) - cpu).abs() <= 0.0051,
            "{target} CPU"
        );
        let peak = median("peak_rss_mib");
        assert!(
            (cell_number(&cells[3]) - peak).abs() <= 0.5,
            "{target} peak"
        );
    }

    // The exact command line and the machine.
    let command = text(html.select(&sel("pre.command code")).next().unwrap());
    for arg in doc["command"].as_array().unwrap().iter().skip(1) {
        assert!(
            command.contains(arg.as_str().unwrap()),
            "{arg} not in {command}"
        );
    }
    let run = text(html.select(&sel("section#run")).next().unwrap());
    assert!(run.contains(doc["machine"]["kernel"].as_str().unwrap()));
    assert!(run.contains(doc["machine"]["cpu_model"].as_str().unwrap()));
}

#[test]
fn the_report_of_a_run_has_every_chart_and_the_json_numbers() {
    let (tmp, json, html) = tiny_run();
    let page = std::fs::read_to_string(&html).unwrap();
    let doc = read_json(&json);
    check_run_page(&page, &doc);

    // The saved run gives the same page.
    let again = tmp.path().join("again.html");
    succeed(&[
        "report",
        json.to_str().unwrap(),
        "-o",
        again.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read_to_string(&again).unwrap(), page);
}

#[test]
fn old_json_files_still_render_without_what_they_lack() {
    let tmp = tempfile::tempdir().unwrap();
    // A report from before per-round CPU and memory were saved, and before the put and car
    // fields: the figures it has are drawn, the rest is left out.
    let (_run, json, _) = tiny_run();
    let mut doc = read_json(&json);
    for w in doc["workloads"].as_array_mut().unwrap() {
        for r in w["results"].as_array_mut().unwrap() {
            for round in r["rounds"].as_array_mut().unwrap() {
                let round = round.as_object_mut().unwrap();
                for key in ["target_cpu_s", "target_major_faults", "peak_rss_mib"] {
                    round.remove(key);
                }
            }
        }
    }
    let settings = doc["settings"].as_object_mut().unwrap();
    for key in ["car_file", "car_blocks", "car_bytes"] {
        settings.remove(key);
    }
    doc.as_object_mut()
        .unwrap()
        .remove("sync_ceiling_unavailable");
    let old = tmp.path().join("old.json");
    std::fs::write(&old, serde_json::to_string(&doc).unwrap()).unwrap();
    let out = tmp.path().join("old.html");
    succeed(&["report", old.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    let page = Html::parse_document(&std::fs::read_to_string(&out).unwrap());
    let charts = page.select(&sel("section.workload svg.chart")).count();
    assert_eq!(charts, 2 * doc["workloads"].as_array().unwrap().len());
    assert!(page.select(&sel("figure.cpu")).next().is_none());
    assert!(page.select(&sel("figure.memory")).next().is_none());

    // The committed minimal report of an early version, with no workloads at all.
    let minimal = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/src/bench/testdata/minimal.json"
    );
    succeed(&["report", minimal, "-o", out.to_str().unwrap()]);
    let page = Html::parse_document(&std::fs::read_to_string(&out).unwrap());
    assert!(
        page.select(&sel("section#run pre.command"))
            .next()
            .is_some()
    );
}

#[test]
fn bad_input_is_refused_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.html");
    let missing = tmp.path().join("missing.json");
    let res = bench(&[
        "report",
        missing.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(res.status.code(), Some(1));
    let not_json = tmp.path().join("not.json");
    std::fs::write(&not_json, "{\"tool\": 1}").unwrap();
    let res = bench(&[
        "report",
        not_json.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(res.status.code(), Some(2), "a usage error");
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(
        stderr.contains("is not an ipfrs-bench --json report"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(!out.exists(), "a refused report left a file");
    // An unwritable --report fails before the run measures anything.
    let res = bench(&[
        "--report",
        "/nonexistent-dir/r.html",
        "--blocks",
        "1",
        "--quiet",
    ]);
    assert_eq!(res.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&res.stderr).contains("cannot create --report"));
    // `report` needs its output.
    assert_eq!(
        bench(&["report", not_json.to_str().unwrap()]).status.code(),
        Some(2)
    );
}

#[test]
fn compare_report_draws_regressions_in_red() {
    let (tmp, json, _) = tiny_run();
    let mut doc = read_json(&json);
    // The new run: engine/sled's get at half the ops/s (a regression), raw/sled's get twice
    // as fast (an improvement).
    let get = doc["workloads"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|w| w["name"] == "get")
        .unwrap();
    for r in get["results"].as_array_mut().unwrap() {
        let factor = match r["target"].as_str().unwrap() {
            "engine/sled" => 0.5,
            "raw/sled" => 2.0,
            _ => continue,
        };
        let m = num(&r["ops_per_s"]["median"]);
        r["ops_per_s"]["median"] = Value::from(m * factor);
    }
    let new = tmp.path().join("new.json");
    std::fs::write(&new, serde_json::to_string(&doc).unwrap()).unwrap();
    let page_path = tmp.path().join("compare.html");
    let out = bench(&[
        "compare",
        json.to_str().unwrap(),
        new.to_str().unwrap(),
        "--report",
        page_path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "a regression exits with 1");
    let page = std::fs::read_to_string(&page_path).unwrap();
    assert!(!page.contains("<script") && !page.contains("<link"));
    let html = Html::parse_document(&page);
    let old = read_json(&json);
    for w in old["workloads"].as_array().unwrap() {
        let name = w["name"].as_str().unwrap();
        let section = html
            .select(&sel(&format!("section.workload[data-workload=\"{name}\"]")))
            .next()
            .unwrap_or_else(|| panic!("no section for {name}"));
        let svg = section
            .select(&sel("figure.changes svg.chart"))
            .next()
            .unwrap();
        check_svg(svg, "change, %", &[], name);
    }
    let get = html
        .select(&sel("section.workload[data-workload=\"get\"]"))
        .next()
        .unwrap();
    let row = get
        .select(&sel(
            "tr.regression[data-target=\"engine/sled\"][data-metric=\"ops/s\"]",
        ))
        .next()
        .expect("engine/sled's get ops/s is a regression");
    let cells: Vec<String> = row.select(&sel("td")).map(text).collect();
    assert_eq!(cells[4], "-50.0%");
    let svg = get.select(&sel("figure.changes svg.chart")).next().unwrap();
    let fills: Vec<&str> = svg
        .select(&sel("rect"))
        .filter_map(|r| r.value().attr("fill"))
        .collect();
    assert!(fills.contains(&"#D62728"), "no red bar: {fills:?}");
    assert!(fills.contains(&"#2CA02C"), "no green bar: {fills:?}");
    let labels: Vec<String> = svg.select(&sel("text")).map(text).collect();
    assert!(
        labels.iter().any(|l| l == "-50.0% regression"),
        "{labels:?}"
    );
    assert!(labels.iter().any(|l| l == "+100.0%"), "{labels:?}");
    // Only the changed figures regressed.
    assert_eq!(html.select(&sel("tr.regression")).count(), 1);
}

/// Chromium on PATH, installed by the project's script when missing; `None` (the test then
/// skips) where it cannot be installed.
fn chromium() -> Option<PathBuf> {
    let find = || {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join("chromium"))
                .find(|p| p.is_file())
        })
    };
    if let Some(path) = find() {
        return Some(path);
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/ensure-chromium");
    eprintln!("chromium is not installed: running {script} (apt-get, bounded)");
    let status = Command::new("bash")
        .arg(script)
        .env("ENSURE_CHROMIUM_TIMEOUT", "240")
        .stdin(Stdio::null())
        .status();
    match status {
        Ok(s) if s.success() => find(),
        other => {
            eprintln!("{script} failed: {other:?}");
            None
        }
    }
}

/// Renders `page` in headless Chromium into a PNG; bounded at a minute.
fn screenshot(chromium: &Path, page: &Path, png: &Path, dark: bool, profile: &Path) {
    let mut cmd = Command::new(chromium);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--window-size=1280,1400",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .arg(format!("--screenshot={}", png.display()));
    if dark {
        cmd.arg("--force-dark-mode");
    }
    let mut child = cmd
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "chromium exited with {status}");
            return;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium took over 60 s to take a screenshot");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The decoded RGB pixels of a PNG, with its width and height.
fn pixels(path: &Path) -> (Vec<[u8; 3]>, u32, u32) {
    let decoder = png::Decoder::new(std::fs::File::open(path).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = match info.color_type {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => panic!("unexpected PNG colour type {other:?}"),
    };
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    let px = buf[..info.buffer_size()]
        .chunks(channels)
        .map(|c| [c[0], c[1], c[2]])
        .collect();
    (px, info.width, info.height)
}

#[test]
fn chromium_renders_the_report_in_light_and_dark_mode() {
    let Some(chromium) = chromium() else {
        eprintln!(
            "\n======================================================================\n\
             SKIPPED chromium_renders_the_report_in_light_and_dark_mode: Debian's chromium \
             is not installed and scripts/ensure-chromium could not install it here.\n\
             ======================================================================\n"
        );
        return;
    };
    let (tmp, json, html) = tiny_run();
    let doc = read_json(&json);
    let first_store = doc["workloads"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["is_ceiling"] == false)
        .unwrap()["target"]
        .as_str()
        .unwrap()
        .to_string();
    // The first target's colour (the palette's first): the ingest bars must show it.
    assert_eq!(doc["targets"][0], first_store.as_str());
    let bar_colour = [0x4E, 0x79, 0xA7];
    for (dark, name) in [(false, "light.png"), (true, "dark.png")] {
        let png_path = tmp.path().join(name);
        let profile = tmp.path().join(format!("profile-{name}"));
        screenshot(&chromium, &html, &png_path, dark, &profile);
        let size = std::fs::metadata(&png_path).unwrap().len();
        assert!(size > 20_000, "{name}: only {size} bytes");
        let (px, w, h) = pixels(&png_path);
        assert_eq!((w, h), (1280, 1400), "{name}");
        let luma = |p: &[u8; 3]| (p[0] as u32 * 299 + p[1] as u32 * 587 + p[2] as u32 * 114) / 1000;
        let background = luma(&px[0]);
        if dark {
            assert!(background < 60, "{name}: background luma {background}");
        } else {
            assert!(background > 200, "{name}: background luma {background}");
        }
        let mut distinct: Vec<[u8; 3]> = px.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert!(distinct.len() > 50, "{name}: {} colours", distinct.len());
        // Not blank: a real share of the page differs from its background.
        let drawn = px.iter().filter(|p| p != &&px[0]).count();
        assert!(drawn * 20 > px.len(), "{name}: {drawn} drawn pixels");
        let bar = px.iter().filter(|p| **p == bar_colour).count();
        assert!(
            bar > 200,
            "{name}: {bar} pixels of {first_store}'s bar colour"
        );
    }
}
