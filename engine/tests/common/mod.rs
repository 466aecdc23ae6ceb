//! Shared by the engine's tests: running this test binary's own child test and killing it
//! (crash tests), a seccomp filter refusing io_uring, and blocks of two sizes.
#![allow(clippy::unwrap_used, dead_code)]

pub mod remote;
pub mod seccomp;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs the ignored test `child` of this test binary with `envs`, waits for it to print
/// "ready", lets it print acknowledgements (one number a line) for `run_for`, kills it with
/// SIGKILL and returns the last number it printed, counting those printed after the kill
/// decision but before the kill landed: they were acknowledged too.
pub fn kill_child_after(child: &str, envs: &[(&str, String)], run_for: Duration) -> Option<u64> {
    let mut process = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            child,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(process.stdout.take().unwrap()).lines();
    // libtest prints "test <child> ... " before the child's own "ready".
    for line in lines.by_ref() {
        if line.unwrap().ends_with("ready") {
            break;
        }
    }
    let deadline = Instant::now() + run_for;
    let mut last = None;
    for line in lines.by_ref() {
        if let Ok(n) = line.unwrap().parse::<u64>() {
            last = Some(n);
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    process.kill().unwrap();
    for line in lines {
        if let Ok(n) = line.unwrap_or_default().parse::<u64>() {
            last = Some(n);
        }
    }
    process.wait().unwrap();
    last
}

/// `count` blocks, one in `small_every` of `small` bytes and the rest of `large`, distinct
/// by `seed` (the tests of packs: large blocks stay in packs, small ones are copied inline).
pub fn two_sizes(
    seed: u32,
    count: u32,
    small_every: u32,
    small: usize,
    large: usize,
) -> Vec<ipfrs_storage::Block> {
    (0..count)
        .map(|i| {
            let len = if i % small_every == 0 { small } else { large };
            let fill = format!("{seed}:{i}:");
            ipfrs_storage::Block::new(fill.repeat(len / fill.len() + 1)[..len].to_string()).unwrap()
        })
        .collect()
}
