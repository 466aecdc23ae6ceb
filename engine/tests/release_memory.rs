//! `Config::release_free_memory_every`: an open engine hands memory freed anywhere in the
//! process back to the kernel, and without it glibc keeps it resident.
//!
//! Each case runs in a child process of this test binary, so the resident memory it reports
//! is its own. The child frees most of 192 MiB of small allocations made in another thread
//! (another glibc arena), keeping one in 64 alive so that nothing is at the top of a heap,
//! where glibc would release it unasked.
#![cfg(all(target_os = "linux", target_env = "gnu"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use futures_lite::future::block_on;
use ipfrs_storage::{BlockStore, Config, Engine};

const FREED_MIB: u64 = 192;

fn anon_kib() -> u64 {
    ipfrs_storage::proc_status::kib("RssAnon:").unwrap()
}

/// Leaves about `FREED_MIB` of freed memory inside a glibc arena; returns what stays live.
fn fragment_a_heap() -> Vec<Vec<u8>> {
    std::thread::spawn(|| {
        let chunks: Vec<Vec<u8>> = (0..(FREED_MIB << 20) / 4096)
            .map(|i| vec![i as u8; 4096])
            .collect();
        chunks
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % 64 == 0)
            .map(|(_, c)| c)
            .collect()
    })
    .join()
    .unwrap()
}

/// The child: frees memory, opens an engine with the interval from the parent, waits, and
/// prints its resident memory before the open and after the wait.
#[test]
#[ignore = "run by the tests below in a child process"]
fn child() {
    let every = match std::env::var("IPFRS_RELEASE_EVERY_MS").unwrap().as_str() {
        "off" => None,
        ms => Some(Duration::from_millis(ms.parse().unwrap())),
    };
    let kept = fragment_a_heap();
    // Measured before the engine opens, so no release can have run yet.
    let before = anon_kib();
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path());
    config.shards = Some(1);
    config.release_free_memory_every = every;
    let engine = Engine::open(config).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    let after = anon_kib();
    println!("anon-kib {before} {after}");
    assert_eq!(kept.len() as u64, (FREED_MIB << 20) / 4096 / 64);
    block_on(engine.close()).unwrap();
}

/// Runs the child with `every` ("off" or milliseconds); returns its (before, after) KiB.
fn run_child(every: &str) -> (u64, u64) {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--ignored", "--nocapture"])
        .env("IPFRS_RELEASE_EVERY_MS", every)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let figures: Vec<u64> = stdout
        .lines()
        .find_map(|l| l.strip_prefix("anon-kib "))
        .unwrap_or_else(|| panic!("no figures from the child:\n{stdout}"))
        .split(' ')
        .map(|v| v.parse().unwrap())
        .collect();
    (figures[0], figures[1])
}

#[test]
fn freed_memory_is_released_while_the_engine_is_open() {
    let (before, after) = run_child("50");
    // At most a quarter of the freed memory may remain (the kept chunks alone are 3 MiB).
    assert!(
        after + (FREED_MIB << 10) * 3 / 4 < before + (16 << 10),
        "resident {before} KiB after freeing, {after} KiB after the engine's release"
    );
}

#[test]
fn without_release_glibc_keeps_freed_memory() {
    // The control: the same workload keeps its memory, so the test above measures the engine.
    let (before, after) = run_child("off");
    assert!(
        after + (16 << 10) > before && before > (FREED_MIB << 10) / 2,
        "resident {before} KiB after freeing, {after} KiB after waiting"
    );
}
