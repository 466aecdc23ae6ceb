//! Helia (`helia` with `@helia/trustless-gateway-client` as its only block broker, the
//! Helia 7 successor of `@helia/block-brokers`' trustless gateway broker, and `@helia/unixfs`)
//! reads a UnixFS file (dag-pb nodes over raw leaves, several levels) from the trustless
//! gateway of `ipfrs-store daemon`, after the file was imported as a CAR through the RPC API;
//! Helia checks each block against its CID, and the bytes must be the original's. Its
//! packages (Node 22 among them) are pinned in tools/js/daemon and installed by
//! scripts/ensure-node-packages-daemon into a scratch folder (reused when present); skipped,
//! saying so, only where node or npm is absent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod daemon_common;

use std::process::Command;
use std::time::Duration;

use daemon_common::{
    Daemon, car_under, get, init_repo, node_packages, output_within, post_files, unixfs,
};

/// The client's bound.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(40);

#[test]
fn helia_reads_a_unixfs_file_from_the_gateway() {
    let Some(folder) = node_packages("helia_reads_a_unixfs_file_from_the_gateway") else {
        return;
    };
    let folder = folder.as_path();

    let dir = tempfile::tempdir().unwrap();
    let repo = init_repo(dir.path());
    let daemon = Daemon::start(&repo, &[]);
    // 700 KiB in 16 KiB raw leaves, 8 links per dag-pb node: 44 leaves under three levels.
    let data = unixfs::file_bytes(700 << 10, 23);
    let (root, blocks) = unixfs::file(&data, 16 << 10, 8);
    assert!(blocks.len() > 50, "{}", blocks.len());
    let import = post_files(
        &format!("{}/api/v0/dag/import", daemon.api),
        &[&car_under(&root, &blocks)],
    );
    assert_eq!(import.status, 200, "{}", import.text());
    assert_eq!(import.lines()[0]["Root"]["Cid"]["/"], root.to_string());
    // The gateway serves the root as Helia will ask for it.
    let probe = get(&format!("{}/ipfs/{root}?format=raw", daemon.gateway), &[]);
    assert_eq!(probe.status, 200);

    let out = dir.path().join("read.bin");
    let child = Command::new(folder.join("node_modules/.bin/node"))
        .arg(folder.join("helia_gateway.mjs"))
        .arg(&daemon.gateway)
        .arg(root.to_string())
        .arg(&out)
        .current_dir(folder)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let result = output_within(child, CLIENT_TIMEOUT, "helia_gateway.mjs");
    assert!(
        result.status.success(),
        "helia_gateway.mjs: {}\n{}",
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&result.stdout).trim(),
        format!("read {}", data.len())
    );
    let read = std::fs::read(&out).unwrap();
    assert_eq!(read.len(), data.len());
    assert!(read == data, "Helia read other bytes than the file's");
    assert!(daemon.stop().success());
}
