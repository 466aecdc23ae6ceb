//! Commands a running daemon runs whole for another `ipfrs-store` (`version ...`, `repo
//! compact`, `repo gc` with roots or `--dry-run`, `car import --partial` and from stdin,
//! `car export` of several roots or CARv2, `block put` from stdin): the same steps run on a
//! repository alone and on one a daemon holds print the same stdout and stderr (commit CIDs and times, which differ between two
//! runs, are numbered in order of appearance) and exit alike, and leave the same files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod daemon_common;

use std::path::PathBuf;
use std::process::Output;

use daemon_common::handoff::{cli, write_model};
use daemon_common::{Daemon, car, dag, read_car};

/// What one step printed and how it ended.
#[derive(Debug, PartialEq)]
struct Seen {
    args: String,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Output with what legitimately differs between two runs replaced: commit CIDs (their
/// commits hold the time) numbered in order of first appearance, times and millisecond
/// timestamps blanked. Other CIDs (blocks of fixed content) are numbered too, which keeps
/// equal CIDs equal and different ones different.
fn normalize(text: &str, cids: &mut Vec<String>) -> String {
    let mut out = String::new();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String, cids: &mut Vec<String>| {
        // A colon ends a word when nothing follows it ("<time>: message").
        let colon = word.ends_with(':');
        if colon {
            word.pop();
        }
        if word.starts_with("baf") && word.len() > 40 {
            let n = cids.iter().position(|c| c == word).unwrap_or_else(|| {
                cids.push(word.clone());
                cids.len() - 1
            });
            out.push_str(&format!("<cid{n}>"));
        } else if word.len() >= 12 && word.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str("<ms>");
        } else if is_rfc3339(word) {
            out.push_str("<time>");
        } else {
            out.push_str(word);
        }
        if colon {
            out.push(':');
        }
        word.clear();
    };
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || c == '-' || c == ':' {
            word.push(c);
        } else {
            flush(&mut word, &mut out, cids);
            out.push(c);
        }
    }
    flush(&mut word, &mut out, cids);
    out
}

/// `2026-12-06T10:44:34Z` (what `version log` prints for a commit's time).
fn is_rfc3339(word: &str) -> bool {
    word.len() == 20 && word.as_bytes()[10] == b'T' && word.ends_with('Z')
}

/// A repository alone, or held by a daemon, and the steps run on it.
struct Run {
    dir: PathBuf,
    seen: Vec<Seen>,
    cids: Vec<String>,
}

impl Run {
    fn new(dir: PathBuf) -> Run {
        let out = cli(&dir).args(["init", "--shards", "2"]).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        Run {
            dir,
            seen: Vec::new(),
            cids: Vec::new(),
        }
    }

    fn repo(&self) -> PathBuf {
        self.dir.join("repo")
    }

    /// Runs one step and keeps what it printed (normalized).
    fn step(&mut self, args: &[&str]) -> Output {
        let out = cli(&self.dir).args(args).output().unwrap();
        let seen = Seen {
            args: normalize(&args.join(" "), &mut self.cids),
            code: out.status.code(),
            stdout: normalize(&String::from_utf8_lossy(&out.stdout), &mut self.cids),
            stderr: normalize(&String::from_utf8_lossy(&out.stderr), &mut self.cids),
        };
        self.seen.push(seen);
        out
    }

    /// A step fed `input` on its stdin, which must succeed.
    fn ok_with_stdin(&mut self, args: &[&str], input: &[u8]) -> String {
        use std::io::Write;
        let mut child = cli(&self.dir)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.seen.push(Seen {
            args: normalize(&args.join(" "), &mut self.cids),
            code: out.status.code(),
            stdout: normalize(&String::from_utf8_lossy(&out.stdout), &mut self.cids),
            stderr: normalize(&String::from_utf8_lossy(&out.stderr), &mut self.cids),
        });
        String::from_utf8(out.stdout).unwrap()
    }

    /// A step that must succeed; its stdout as text.
    fn ok(&mut self, args: &[&str]) -> String {
        let out = self.step(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&mut self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.ok(&all)).unwrap()
    }

    fn file(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.dir.join(name)).unwrap()
    }
}

/// The CID text of an object field.
fn cid_of(v: &serde_json::Value, field: &str) -> String {
    v[field].as_str().unwrap().to_string()
}

/// Every step, in order; asserts what must hold in either setting.
fn steps(r: &mut Run) {
    let v1 = write_model(&r.dir.join("v1.safetensors"), 1.0);
    let v2 = write_model(&r.dir.join("v2.safetensors"), 1.5);

    r.json(&["version", "init"]);
    let first = r.json(&["version", "commit", "v1.safetensors", "-m", "first"]);
    let first = cid_of(&first, "commit");
    r.ok(&["version", "commit", "v2.safetensors", "-m", "second"]);
    r.ok(&["version", "log"]);
    r.ok(&["version", "branch", "create", "old", "--at", &first]);
    r.ok(&["version", "tag", "create", "v1", "--at", "old"]);
    r.ok(&["version", "branch", "list"]);
    r.json(&["version", "diff", "old"]);
    r.ok(&["version", "blame"]);

    // checkout to a relative path: the files are the committed ones, bit for bit
    r.ok(&["version", "checkout", "-o", "out1.safetensors", "v1"]);
    r.json(&["version", "checkout", "main", "-o", "out2.safetensors"]);
    assert!(r.file("out1.safetensors") == v1, "checkout of v1");
    assert!(r.file("out2.safetensors") == v2, "checkout of main");

    r.ok(&["version", "merge", "main", "--branch", "old"]);
    r.ok(&["version", "export", "-o", "history.car"]);
    r.json(&["version", "import", "history.car", "--branch", "imported"]);

    // blocks outside versioning: a pinned DAG (car import pins its root), a loose block
    let pinned = dag("handoff pinned", 8, 1500);
    std::fs::write(r.dir.join("pinned.car"), car(&pinned)).unwrap();
    r.ok(&["car", "import", "pinned.car"]);
    let kept = dag("handoff kept by a root", 5, 700);
    std::fs::write(r.dir.join("kept.car"), car(&kept)).unwrap();
    r.ok(&["car", "import", "--pin-roots=false", "kept.car"]);
    std::fs::write(r.dir.join("loose.bin"), b"a loose block nobody keeps").unwrap();
    let loose = r.json(&["block", "put", "loose.bin"]);
    let loose = cid_of(&loose, "cid");
    // stdin travels with the handed command
    let piped = dag("handoff piped", 3, 400);
    r.ok_with_stdin(&["--json", "car", "import", "-"], &car(&piped));
    r.ok_with_stdin(
        &["block", "put", "--cid-codec", "raw"],
        b"a block from stdin",
    );
    let kept_root = kept[0].cid().to_string();

    r.json(&["repo", "gc", "--dry-run", &kept_root]);
    std::fs::write(r.dir.join("extra-pins"), format!("{kept_root}\n")).unwrap();
    r.json(&["repo", "gc", "--dry-run", "--pins", "extra-pins"]);
    // a dry run removes nothing, not even the block no root keeps
    r.ok(&["block", "stat", &loose]);
    r.json(&["version", "gc"]);
    r.ok(&["repo", "gc", &kept_root]);
    // gc kept the pinned DAG, the DAG under the root given, and every version
    let all: Vec<String> = pinned
        .iter()
        .chain(&kept)
        .map(|b| b.cid().to_string())
        .collect();
    let mut stat = vec!["block", "stat"];
    stat.extend(all.iter().map(String::as_str));
    r.ok(&stat);
    assert_eq!(r.step(&["block", "stat", &loose]).status.code(), Some(1));
    r.ok(&["version", "checkout", "v1", "-o", "out3.safetensors"]);
    assert!(r.file("out3.safetensors") == v1, "v1 survives gc");

    // car commands that Kubo's endpoints have no shape for
    let two = [pinned[0].cid().to_string(), kept_root.clone()];
    r.ok(&["car", "export", &two[0], &two[1], "-o", "two.car"]);
    r.json(&["car", "export", &two[0], "--v2", "-o", "one-v2.car"]);
    let (roots, blocks) = read_car(&r.file("two.car"));
    assert_eq!(roots.len(), 2);
    assert_eq!(blocks.len(), pinned.len() + kept.len());
    let mut bad = car(&dag("handoff truncated", 4, 900));
    bad.truncate(bad.len() - 10);
    std::fs::write(r.dir.join("bad.car"), bad).unwrap();
    assert_eq!(
        r.step(&["car", "import", "--partial", "kept.car", "bad.car"])
            .status
            .code(),
        Some(1)
    );
    // What compaction moves depends on what was read since the store opened (a daemon's
    // store has been open all along): the figures differ, the report does not.
    let out = r.step(&["repo", "compact"]);
    assert!(out.status.success());
    let last = r.seen.last_mut().unwrap();
    last.stdout.retain(|c| !c.is_ascii_digit());

    // errors: the same message and exit code
    assert!(
        !r.step(&["version", "log", "no-such-branch"])
            .status
            .success()
    );
    assert_eq!(
        r.step(&["version", "commit", "v1.safetensors", "--param", "nokey"])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn handed_off_commands_print_and_do_what_they_do_without_a_daemon() {
    // The two runs are independent: side by side, to halve the test's time.
    let alone = tempfile::tempdir().unwrap();
    let by_itself = {
        let dir = alone.path().to_path_buf();
        std::thread::spawn(move || {
            let mut a = Run::new(dir);
            steps(&mut a);
            a
        })
    };
    let held = tempfile::tempdir().unwrap();
    let mut b = Run::new(held.path().to_path_buf());
    let daemon = Daemon::start(&b.repo(), &[]);
    steps(&mut b);
    let a = by_itself.join().unwrap();

    assert_eq!(a.seen.len(), b.seen.len());
    for (x, y) in a.seen.iter().zip(&b.seen) {
        assert_eq!(x, y, "with and without a daemon");
    }
    // The same DAGs exported, byte for byte.
    assert!(a.file("two.car") == b.file("two.car"));
    assert!(a.file("one-v2.car") == b.file("one-v2.car"));
    // The daemon really held the store throughout.
    assert!(b.repo().join("api").is_file());
    assert!(daemon.stop().success());
}
