//! A Helia node (js-libp2p: TCP, noise, yamux; `@helia/unixfs`; bitswap as its only block
//! broker) dials a `bitswap-node` on loopback and reads a UnixFS file the node imported from
//! a CAR; the bytes must be the original's. The Node packages (versions pinned in
//! node/js/package-lock.json, Node 22 among them) are installed by
//! scripts/ensure-node-packages-bitswap into target/, once; the test is skipped, saying so,
//! only where `node` or `npm` is not installed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Proc, file_bytes, unixfs_file, write_car};

/// Bound of the node's start and of Helia's read: the interop stays well under a minute
/// (the one-time package install is bounded by the script itself).
const STEP: Duration = Duration::from_secs(40);

fn installed(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success())
}

/// The folder with the Helia client and its packages, installed if needed.
fn helia_client() -> PathBuf {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scripts/ensure-node-packages-bitswap"
    );
    let out = Command::new("bash").arg(script).output().unwrap();
    assert!(
        out.status.success(),
        "scripts/ensure-node-packages-bitswap failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    PathBuf::from(stdout.lines().last().unwrap().trim())
}

#[test]
fn helia_reads_a_unixfs_file_served_by_the_node() {
    if !installed("node") || !installed("npm") {
        eprintln!(
            "SKIPPED helia_reads_a_unixfs_file_served_by_the_node: `node` or `npm` is not \
             installed here (Debian: apt-get install nodejs npm); the Helia interop test \
             needs npm to install its pinned packages"
        );
        return;
    }
    let client = helia_client();

    let dir = tempfile::tempdir().unwrap();
    // 1 MiB in 16 KiB raw leaves, 16 links per dag-pb node: 64 leaves under two levels.
    let file = file_bytes(1 << 20, 11);
    let (root, blocks) = unixfs_file(&file, 16 * 1024, 16);
    let car = dir.path().join("file.car");
    write_car(&car, &root, &blocks);

    let repo = dir.path().join("repo");
    let mut server = Proc::node(
        "server",
        &[
            "--repo",
            repo.to_str().unwrap(),
            "--import-car",
            car.to_str().unwrap(),
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
        ],
    );
    assert_eq!(server.expect("root", STEP), root.to_string());
    let addr = server.expect("listening", STEP);

    let out = dir.path().join("read.bin");
    let mut helia = Proc::spawn(
        "helia",
        &client.join("node_modules/.bin/node"),
        &[
            client.join("helia_fetch.mjs").to_str().unwrap(),
            &addr,
            &root.to_string(),
            out.to_str().unwrap(),
        ],
    );
    let read = helia.expect("read", STEP);
    assert_eq!(read, file.len().to_string());
    let status = helia.wait(Duration::from_secs(10));
    assert!(status.success(), "helia exited with {status}");
    let got = std::fs::read(Path::new(&out)).unwrap();
    assert!(
        got == file,
        "Helia read {} bytes that differ from the file",
        got.len()
    );
}
