//! Runs the built `ipfrs-bench` binary: a tiny run with `--json` must report every target,
//! phase and field, and bad arguments must fail with one line on stderr.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ipfrs-bench"))
        .args(args)
        .output()
        .expect("run ipfrs-bench")
}

/// A JSON value, parsed by the small parser below (the tools crate has no serde).
#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn get(&self, key: &str) -> &Json {
        match self {
            Json::Obj(fields) => fields
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v)
                .unwrap_or_else(|| panic!("missing field {key:?} in {self:?}")),
            other => panic!("{other:?} is not an object (looking for {key:?})"),
        }
    }

    fn num(&self) -> f64 {
        match self {
            Json::Num(x) => *x,
            other => panic!("{other:?} is not a number"),
        }
    }

    fn str(&self) -> &str {
        match self {
            Json::Str(s) => s,
            other => panic!("{other:?} is not a string"),
        }
    }

    fn arr(&self) -> &[Json] {
        match self {
            Json::Arr(items) => items,
            other => panic!("{other:?} is not an array"),
        }
    }
}

struct Parser<'a> {
    text: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn parse(text: &str) -> Json {
        let mut p = Parser {
            text: text.as_bytes(),
            pos: 0,
        };
        let value = p.value();
        p.ws();
        assert_eq!(
            p.pos,
            p.text.len(),
            "trailing characters after the JSON document"
        );
        value
    }

    fn ws(&mut self) {
        while self.pos < self.text.len() && self.text[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn eat(&mut self, c: u8) {
        self.ws();
        assert_eq!(
            self.text.get(self.pos).copied(),
            Some(c),
            "expected {:?} at byte {}",
            c as char,
            self.pos
        );
        self.pos += 1;
    }

    fn peek(&mut self) -> u8 {
        self.ws();
        *self.text.get(self.pos).expect("unexpected end of JSON")
    }

    fn value(&mut self) -> Json {
        match self.peek() {
            b'{' => {
                self.eat(b'{');
                let mut fields = Vec::new();
                if self.peek() == b'}' {
                    self.eat(b'}');
                    return Json::Obj(fields);
                }
                loop {
                    let key = self.string();
                    self.eat(b':');
                    fields.push((key, self.value()));
                    if self.peek() == b',' {
                        self.eat(b',');
                    } else {
                        self.eat(b'}');
                        return Json::Obj(fields);
                    }
                }
            }
            b'[' => {
                self.eat(b'[');
                let mut items = Vec::new();
                if self.peek() == b']' {
                    self.eat(b']');
                    return Json::Arr(items);
                }
                loop {
                    items.push(self.value());
                    if self.peek() == b',' {
                        self.eat(b',');
                    } else {
                        self.eat(b']');
                        return Json::Arr(items);
                    }
                }
            }
            b'"' => Json::Str(self.string()),
            _ => {
                let start = self.pos;
                while self.pos < self.text.len() && !b",]} \n\r\t".contains(&self.text[self.pos]) {
                    self.pos += 1;
                }
                let word = std::str::from_utf8(&self.text[start..self.pos]).unwrap();
                match word {
                    "null" => Json::Null,
                    "true" => Json::Bool(true),
                    "false" => Json::Bool(false),
                    _ => Json::Num(
                        word.parse()
                            .unwrap_or_else(|_| panic!("bad token {word:?}")),
                    ),
                }
            }
        }
    }

    fn string(&mut self) -> String {
        self.eat(b'"');
        let mut out = String::new();
        loop {
            let c = self.text[self.pos];
            self.pos += 1;
            match c {
                b'"' => return out,
                b'\\' => {
                    let e = self.text[self.pos];
                    self.pos += 1;
                    match e {
                        b'n' => out.push('\n'),
                        b'u' => {
                            let hex = std::str::from_utf8(&self.text[self.pos..self.pos + 4]);
                            let code = u32::from_str_radix(hex.unwrap(), 16).unwrap();
                            out.push(char::from_u32(code).unwrap());
                            self.pos += 4;
                        }
                        other => out.push(other as char),
                    }
                }
                _ => out.push(c as char),
            }
        }
    }
}

const PHASES: [&str; 5] = ["ingest", "get", "has_absent", "get_many", "has_many_absent"];

/// Checks the whole document of a run with the given block sizes.
fn check_report(doc: &Json, sizes: &[u64]) {
    assert_eq!(doc.get("tool").str(), "ipfrs-bench");
    assert!(!doc.get("version").str().is_empty());
    let settings = doc.get("settings");
    for field in ["threads", "batch", "seed", "scale"] {
        assert!(settings.get(field).num() > 0.0, "settings.{field}");
    }
    assert!(["sync", "batch", "none"].contains(&settings.get("durability").str()));
    let _ = settings.get("shards");
    let backends: Vec<&str> = settings
        .get("backends")
        .arr()
        .iter()
        .map(Json::str)
        .collect();
    assert!(backends.contains(&"sled") && backends.contains(&"parity-db"));
    let cpu = doc.get("cpu");
    assert!(cpu.get("sha256_mb_per_s").num() > 0.0);
    assert!(matches!(cpu.get("sha_ni"), Json::Bool(_) | Json::Null));
    assert!(doc.get("wall_seconds").num() > 0.0);

    let results = doc.get("results").arr();
    assert_eq!(results.len(), sizes.len() * backends.len() * 2);
    for &size in sizes {
        for &backend in &backends {
            for target in ["engine", "raw"] {
                let r = results
                    .iter()
                    .find(|r| {
                        r.get("block_size").num() == size as f64
                            && r.get("backend").str() == backend
                            && r.get("target").str() == target
                    })
                    .unwrap_or_else(|| panic!("no result for {target}/{backend} at {size} B"));
                let blocks = r.get("blocks").num();
                assert!(blocks >= 1.0);
                for phase in PHASES {
                    let p = r.get("phases").get(phase);
                    assert_eq!(p.get("ops").num(), blocks, "{target}/{backend} {phase}");
                    assert!(p.get("seconds").num() > 0.0);
                    assert!(p.get("ops_per_s").num() > 0.0, "{target}/{backend} {phase}");
                    assert!(p.get("p50_us").num() > 0.0);
                    assert!(p.get("p99_us").num() >= p.get("p50_us").num());
                    assert!(p.get("max_us").num() >= p.get("p99_us").num());
                    match phase {
                        "has_absent" | "has_many_absent" => {
                            assert_eq!(p.get("mib_per_s"), &Json::Null)
                        }
                        _ => {
                            assert!(p.get("mib_per_s").num() > 0.0);
                            assert_eq!(p.get("bytes").num(), blocks * size as f64);
                        }
                    }
                }
                let ratios = r.get("engine_over_raw_ops");
                if target == "engine" {
                    assert!(r.get("shards").num() >= 1.0);
                    for phase in PHASES {
                        assert!(ratios.get(phase).num() > 0.0, "ratio {backend} {phase}");
                    }
                } else {
                    assert_eq!(r.get("shards"), &Json::Null);
                    assert_eq!(ratios, &Json::Null);
                }
            }
        }
    }
}

/// Whether `dir` is empty (the run's subdirectory was removed).
fn is_empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).unwrap().next().is_none()
}

#[test]
fn tiny_run_reports_every_target_and_phase() {
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("out.json");
    let data = tmp.path().join("data");
    let out = bench(&[
        "--scale",
        "0.002",
        "--json",
        json.to_str().unwrap(),
        "--dir",
        data.to_str().unwrap(),
        "--shards",
        "2",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    for needle in [
        "CPU ceiling",
        "SHA-NI",
        "4 KiB blocks x 40",
        "256 KiB blocks x 4",
        "engine/sled",
        "raw/parity-db",
        "has_absent",
        "engine/raw",
        "Total wall time",
    ] {
        assert!(
            stdout.contains(needle),
            "{needle:?} missing from:\n{stdout}"
        );
    }
    let doc = Parser::parse(&std::fs::read_to_string(&json).unwrap());
    check_report(&doc, &[4096, 256 << 10]);
    assert_eq!(doc.get("settings").get("shards").num(), 2.0);
    assert!(is_empty(&data), "the run's directory was left behind");
}

#[test]
fn quiet_run_prints_nothing_and_honours_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("quiet.json");
    let out = bench(&[
        "--quiet",
        "--small-count",
        "30",
        "--large-count",
        "3",
        "--small-size",
        "1000",
        "--large-size",
        "64K",
        "--batch",
        "7",
        "--threads",
        "3",
        "--durability",
        "none",
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
    let doc = Parser::parse(&std::fs::read_to_string(&json).unwrap());
    check_report(&doc, &[1000, 64 << 10]);
    let settings = doc.get("settings");
    assert_eq!(settings.get("durability").str(), "none");
    assert_eq!(settings.get("batch").num(), 7.0);
    assert_eq!(settings.get("threads").num(), 3.0);
    assert_eq!(settings.get("seed").num(), 9.0);
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
    assert_one_line_error(&["--small-count", "0"], "--small-count");
    assert_one_line_error(&["--large-count", "0"], "--large-count");
    assert_one_line_error(&["--scale", "0.00001"], "--scale");
    assert_one_line_error(&["--scale", "-1"], "--scale");
    assert_one_line_error(&["--large-size", "3MiB"], "maximum block size");
    assert_one_line_error(&["--threads", "0"], "--threads");
    assert_one_line_error(&["--batch", "0"], "--batch");
    assert_one_line_error(&["--durability", "sometimes"], "sometimes");
    assert_one_line_error(&["--backend", "nosuch"], "nosuch");
    assert_one_line_error(&["--no-such-flag"], "--no-such-flag");
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
}
