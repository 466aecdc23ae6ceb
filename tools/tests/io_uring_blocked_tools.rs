//! `ipfrs-store` and `ipfrs-bench` in a process where io_uring is refused, as Docker's default
//! seccomp profile refuses it: each binary is started with a filter refusing the three
//! io_uring calls (installed between fork and exec), and must work with no flag, on the
//! fallback driver, naming it.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![cfg(all(target_os = "linux", target_arch = "x86_64"))]

#[path = "../../engine/tests/common/seccomp.rs"]
mod seccomp;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// `program args`, with io_uring refused (EPERM) in the child from before it starts.
fn without_io_uring(program: &str, args: &[&str]) -> Output {
    let mut command = Command::new(program);
    command
        .args(args)
        .env_remove("IPFRS_STORE_REPO")
        .env("HOME", "/nonexistent-home-for-tests")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: the closure runs between fork and exec; `try_refuse` allocates nothing, takes
    // no lock and only makes prctl calls.
    unsafe {
        command.pre_exec(|| seccomp::try_refuse(&seccomp::ALL_IO_URING, libc::EPERM));
    }
    command.output().unwrap()
}

fn store(repo: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--repo", repo.to_str().unwrap(), "--json"];
    all.extend_from_slice(args);
    let out = without_io_uring(env!("CARGO_BIN_EXE_ipfrs-store"), &all);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?}: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {stderr}"))
}

#[test]
fn ipfrs_store_runs_on_the_fallback_driver() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    store(&repo, &["init", "--shards", "2"]);
    // Larger than the writer's direct-write limit (128 KiB) and smaller: both write paths.
    let mut cids = Vec::new();
    for (i, len) in [16usize, 300_000].into_iter().enumerate() {
        let file = dir.path().join(format!("data-{i}"));
        let data: Vec<u8> = (0..len).map(|j| (i * 31 + j * 7) as u8).collect();
        std::fs::write(&file, &data).unwrap();
        let put = store(&repo, &["block", "put", file.to_str().unwrap()]);
        cids.push((put["cid"].as_str().unwrap().to_string(), data));
    }
    for (cid, data) in &cids {
        let out = without_io_uring(
            env!("CARGO_BIN_EXE_ipfrs-store"),
            &["--repo", repo.to_str().unwrap(), "block", "get", cid],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(&out.stdout, data);
    }
    let stat = store(&repo, &["repo", "stat"]);
    assert_eq!(stat["io_driver"], "fallback", "{stat}");
    assert_eq!(stat["blocks"], 2, "{stat}");
    let verify = store(&repo, &["repo", "verify"]);
    assert_eq!(
        verify["corrupt"].as_array().map_or(0, Vec::len),
        0,
        "{verify}"
    );
    // The same repository under io_uring (this process is not filtered).
    let out = Command::new(env!("CARGO_BIN_EXE_ipfrs-store"))
        .args(["--repo", repo.to_str().unwrap(), "--json", "repo", "stat"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stat: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stat["io_driver"], "io_uring", "{stat}");
    assert_eq!(stat["blocks"], 2, "{stat}");
}

#[test]
fn ipfrs_bench_runs_on_the_fallback_driver() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("run.json");
    let out = without_io_uring(
        env!("CARGO_BIN_EXE_ipfrs-bench"),
        &[
            "--quiet",
            "--blocks",
            "40",
            "--size",
            "200KiB",
            "-w",
            "ingest",
            "-w",
            "get",
            "--duration",
            "50ms",
            "--backend",
            "sled",
            "--hot-tier",
            "on",
            "--rounds",
            "1",
            "--dir",
            dir.path().to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let machine = &doc["machine"]["io_uring"];
    assert!(
        machine.as_str().unwrap().starts_with("unavailable"),
        "{machine}"
    );
    let text = doc.to_string();
    assert!(text.contains("engine+hot/sled (fallback)"), "{text}");
}
