//! A bounded load test of `ipfrs-store daemon` on loopback: starts the daemon on a fresh
//! repository (ports chosen by the OS), runs `--clients` clients for `--secs` seconds doing
//! block reads (RPC and gateway), pinned block puts and CAR imports, checks that every
//! acknowledged block is there, prints the latency percentiles, stops the daemon.
//!
//! ```text
//! cargo build --release -p ipfrs-tools --bin ipfrs-store --example daemon_load
//! target/release/examples/daemon_load --clients 64 --secs 20
//! ```
//! Exits 1 if any operation failed or any acknowledged block is missing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use clap::Parser;
use ipfrs_tools::daemon::load::{LoadConfig, run};

/// Load test of ipfrs-store daemon.
#[derive(Parser)]
struct Args {
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Seconds of load.
    #[arg(long, default_value_t = 20)]
    secs: u64,
    /// Per cent of block puts.
    #[arg(long, default_value_t = 20)]
    put_percent: u32,
    /// Per cent of CAR imports.
    #[arg(long, default_value_t = 5)]
    import_percent: u32,
    /// Bytes per block.
    #[arg(long, default_value_t = 16384)]
    block_bytes: usize,
    /// Leaves per imported CAR.
    #[arg(long, default_value_t = 32)]
    car_blocks: usize,
    /// The ipfrs-store binary (default: beside this example's directory).
    #[arg(long)]
    bin: Option<PathBuf>,
    /// Shards of the fresh store.
    #[arg(long, default_value_t = 2)]
    shards: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let bin = args.bin.clone().unwrap_or_else(|| {
        let exe = std::env::current_exe().unwrap();
        exe.parent().unwrap().parent().unwrap().join("ipfrs-store")
    });
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let store = |a: &[&str]| {
        let mut c = Command::new(&bin);
        c.arg("--repo").arg(&repo).args(a);
        c
    };
    let shards = args.shards.to_string();
    assert!(
        store(&["init", "--shards", &shards])
            .status()
            .unwrap()
            .success()
    );
    let mut daemon = store(&["daemon", "--api", "127.0.0.1:0", "--gateway", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(daemon.stdout.take().unwrap()).lines();
    let (mut api, mut gateway) = (String::new(), String::new());
    for line in lines.by_ref() {
        let line = line.unwrap();
        let url = |l: &str| format!("http://127.0.0.1:{}", l.rsplit("/tcp/").next().unwrap());
        if line.starts_with("RPC API") {
            api = url(&line);
        } else if line.starts_with("Gateway") {
            gateway = url(&line);
        } else if line == "Daemon is ready" {
            break;
        }
    }
    let config = LoadConfig {
        api,
        gateway,
        clients: args.clients,
        duration: Duration::from_secs(args.secs),
        put_percent: args.put_percent,
        import_percent: args.import_percent,
        block_bytes: args.block_bytes,
        car_blocks: args.car_blocks,
        daemon_pid: Some(daemon.id()),
    };
    let report = run(&config);
    // SAFETY: our own child.
    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    let stopped = daemon.wait().unwrap();
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            eprintln!("daemon_load: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
    println!(
        "\n{} clients, {:.1} s, {:.0} ops/s; daemon stopped {}",
        report.clients,
        report.seconds,
        report.ops_per_second,
        if stopped.success() {
            "cleanly"
        } else {
            "with an error"
        }
    );
    println!("| operation | ok | errors | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|---|");
    for (name, f) in [
        ("block/get (RPC)", &report.rpc_get),
        ("/ipfs/{cid}?format=raw (gateway)", &report.gateway_get),
        ("block/put?pin=true", &report.block_put),
        ("dag/import", &report.dag_import),
    ] {
        println!(
            "| {name} | {} | {} | {:.2} | {:.2} | {:.2} |",
            f.ok, f.errors, f.p50_ms, f.p99_ms, f.max_ms
        );
    }
    println!(
        "acknowledged blocks checked: {}, lost: {}; daemon KiB (start, end): VmRSS {:?}, \
         RssAnon {:?}",
        report.checked, report.lost, report.daemon_rss_kib, report.daemon_anon_kib
    );
    let errors = report.rpc_get.errors
        + report.gateway_get.errors
        + report.block_put.errors
        + report.dag_import.errors;
    if errors > 0 || report.lost > 0 || !stopped.success() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
