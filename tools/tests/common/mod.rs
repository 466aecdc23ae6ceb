//! Shared by the end-to-end tests of the binaries: `ipfrs-store` run against a repository with
//! the user's environment kept out of it, and `ipfrs-bench` with its `--json` reports.
#![allow(clippy::unwrap_used, dead_code)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// `ipfrs-store --repo <repo>`, with no repository or data directory taken from the
/// environment, no stdin, and both outputs piped.
pub fn store_command(repo: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ipfrs-store"));
    command
        .env_remove("IPFRS_STORE_REPO")
        .env_remove("XDG_DATA_HOME")
        .env("HOME", "/nonexistent-home-for-tests")
        .arg("--repo")
        .arg(repo)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Runs `ipfrs-store --repo <repo> <args>` to its end.
pub fn run(repo: &Path, args: &[&str]) -> Output {
    store_command(repo).args(args).output().unwrap()
}

/// Runs with `--json`; returns the exit code and the parsed stdout.
pub fn json(repo: &Path, args: &[&str]) -> (i32, Value) {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = run(repo, &all);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    let value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}: stdout {:?} stderr {stderr}", out.stdout));
    (out.status.code().unwrap(), value)
}

/// Runs the built `ipfrs-bench` with `args` to its end.
pub fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ipfrs-bench"))
        .args(args)
        .output()
        .expect("run ipfrs-bench")
}

/// A `--json` report (or any JSON file), parsed.
pub fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Runs `ipfrs-bench` with `args`, asserts it succeeded, returns its stdout.
pub fn succeed(args: &[&str]) -> String {
    let out = bench(args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{args:?}\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A JSON number, or a panic naming `what`.
pub fn num(v: &Value, what: &str) -> f64 {
    v.as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"))
}
