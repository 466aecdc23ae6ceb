//! `version` commands through a daemon under concurrency: commits racing for one branch
//! through one daemon keep the refs whole (compare-and-swap), the commands that need the
//! store closed are refused with the daemon named, and the endpoint that runs handed commands
//! wants the repository's secret.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod daemon_common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use daemon_common::Daemon;
use daemon_common::handoff::{cli, write_model};

/// A repository in `dir` (named `repo`, as the commands name it).
fn init(dir: &Path) -> PathBuf {
    let out = cli(dir).args(["init", "--shards", "2"]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    dir.join("repo")
}

/// A command that must succeed; its stdout.
fn ok(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = cli(dir).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn json(dir: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    serde_json::from_slice(&ok(dir, &all)).unwrap()
}

#[test]
fn repair_and_migrate_are_refused_while_a_daemon_runs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let daemon = Daemon::start(&init(d), &[]);
    for args in [&["repo", "repair"][..], &["repo", "migrate"][..]] {
        let out = cli(d).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&daemon.api), "{err}");
        assert!(err.contains("stop the daemon"), "{err}");
    }
    // The endpoint that opens files by path wants the secret only the repository's readers
    // have; the file is the owner's alone, and goes with the daemon.
    let secret = d.join("repo/api.secret");
    assert_eq!(
        std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let url = format!("{}/api/v0/ipfrs/command", daemon.api);
    let refused = daemon_common::post(&url);
    assert_eq!(refused.status, 403, "{}", refused.text());
    // With the secret, a command for another repository (a stale api file) is refused too.
    let other = tempfile::tempdir().unwrap();
    let handed = serde_json::json!({
        "command": {"Repo": "Compact"}, "json": false, "cwd": other.path(),
        "user": null, "repo": "repo", "umask": 0o022,
    });
    let mut answer = daemon_common::agent()
        .post(&url)
        .header(
            "X-Ipfrs-Command-Secret",
            std::fs::read_to_string(&secret).unwrap(),
        )
        .send(handed.to_string().as_bytes())
        .unwrap();
    assert_eq!(answer.status(), 400);
    let text = answer.body_mut().read_to_string().unwrap();
    assert!(text.contains("this daemon serves"), "{text}");
    let help = cli(d).args(["repo", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("refused while a daemon runs"), "{help}");
    assert!(daemon.stop().success());
    assert!(!secret.exists());
}

/// Concurrent `version commit`s through one daemon: on one branch each either lands or fails
/// on the moved branch (compare-and-swap), never both losing one or splitting the history; on
/// separate branches all land. Every ref then checks out to a file that was committed.
#[test]
fn concurrent_commits_through_the_daemon_keep_the_refs_whole() {
    const WRITERS: usize = 6;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let daemon = Daemon::start(&init(d), &[]);
    ok(d, &["version", "init"]);
    let base = write_model(&d.join("base.safetensors"), 0.0);
    ok(d, &["version", "commit", "base.safetensors", "-m", "base"]);
    let models: Vec<Vec<u8>> = (0..WRITERS)
        .map(|i| write_model(&d.join(format!("m{i}.safetensors")), 1.0 + i as f32))
        .collect();

    // Half on main, half each on its own branch, all started at once.
    let children: Vec<_> = (0..WRITERS)
        .map(|i| {
            let branch = if i % 2 == 0 {
                "main".to_string()
            } else {
                format!("b{i}")
            };
            let child = cli(d)
                .args(["--json", "version", "commit"])
                .arg(format!("m{i}.safetensors"))
                .args(["-m", &format!("writer {i}"), "--branch", &branch])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            (i, branch, child)
        })
        .collect();
    let mut landed_on_main = Vec::new();
    for (i, branch, child) in children {
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        if branch != "main" {
            assert!(out.status.success(), "writer {i} on {branch}: {err}");
        } else if out.status.success() {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            landed_on_main.push((i, v["commit"].as_str().unwrap().to_string()));
        } else {
            // Lost the race for main: told so, with nothing half done.
            assert_eq!(out.status.code(), Some(1), "writer {i}: {err}");
        }
    }
    assert!(!landed_on_main.is_empty(), "some commit on main must land");

    // main's history is base plus the commits that landed, one line, no others
    let log = json(d, &["version", "log", "main"]);
    let entries = log["commits"].as_array().unwrap_or_else(|| panic!("{log}"));
    assert_eq!(entries.len(), 1 + landed_on_main.len(), "{log}");
    let tip = entries[0]["cid"].as_str().unwrap().to_string();
    let (winner, _) = landed_on_main
        .iter()
        .find(|(_, c)| *c == tip)
        .unwrap_or_else(|| panic!("main's tip {tip} is not a commit that landed"));
    ok(
        d,
        &["version", "checkout", "main", "-o", "main.safetensors"],
    );
    assert!(std::fs::read(d.join("main.safetensors")).unwrap() == models[*winner]);
    for i in (1..WRITERS).step_by(2) {
        let out = format!("b{i}.safetensors");
        ok(d, &["version", "checkout", &format!("b{i}"), "-o", &out]);
        assert!(
            std::fs::read(d.join(&out)).unwrap() == models[i],
            "branch b{i}"
        );
    }
    let last = entries.last().unwrap()["cid"].as_str().unwrap().to_string();
    ok(
        d,
        &["version", "checkout", &last, "-o", "base-out.safetensors"],
    );
    assert!(std::fs::read(d.join("base-out.safetensors")).unwrap() == base);
    ok(d, &["repo", "verify"]);
    assert!(daemon.stop().success());
}
