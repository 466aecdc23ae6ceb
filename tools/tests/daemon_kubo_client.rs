//! `kubo-rpc-client` (the npm package, unchanged) against `ipfrs-store daemon`: block
//! put/get/stat/rm (a block of a pinned DAG refused), dag import/export, pin add/ls, refs
//! local, repo stat. Its packages are pinned in
//! tools/js/daemon and installed by scripts/ensure-node-packages-daemon into a scratch folder
//! (reused when present); skipped, saying so, only where node or npm is absent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod daemon_common;

use std::process::Command;
use std::time::Duration;

use daemon_common::{Daemon, car, dag, init_repo, node_packages, output_within, read_car};

/// The client's bound.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(40);

#[test]
fn kubo_rpc_client_works_unchanged() {
    let Some(folder) = node_packages("kubo_rpc_client_works_unchanged") else {
        return;
    };

    let dir = tempfile::tempdir().unwrap();
    let repo = init_repo(dir.path());
    let daemon = Daemon::start(&repo, &[]);
    let blocks = dag("kubo client", 30, 5000);
    let car_path = dir.path().join("dag.car");
    std::fs::write(&car_path, car(&blocks)).unwrap();

    let child = Command::new("node")
        .arg(folder.join("kubo_client.mjs"))
        .arg(&daemon.api)
        .arg(&car_path)
        .arg(blocks[0].cid().to_string())
        .arg(blocks[1].cid().to_string())
        .current_dir(&folder)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Its output is read while it runs (the export it prints is larger than a pipe holds).
    let out = output_within(child, CLIENT_TIMEOUT, "kubo_client.mjs");
    assert!(
        out.status.success(),
        "kubo_client.mjs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    let expected = ipfrs_storage::Block::new(&b"hello from kubo-rpc-client"[..]).unwrap();
    assert_eq!(seen["block"], expected.cid().to_string());
    assert_eq!(seen["blockSize"], 26);
    assert_eq!(seen["imported"][0], blocks[0].cid().to_string());
    // The export the client streamed is the imported DAG, block for block.
    let exported = base64_decode(seen["exportedBase64"].as_str().unwrap());
    assert_eq!(read_car(&exported).1, blocks);
    // block.rm of a block inside the pinned DAG: refused with Kubo's reason; a loose block
    // went without error (checked by the script), so 32 blocks remain, as refs.local says.
    assert_eq!(seen["leaf"], blocks[1].cid().to_string());
    assert_eq!(
        seen["refused"][0],
        format!("pinned via {}", blocks[0].cid()),
        "{seen}"
    );
    assert_eq!(seen["localRefs"], 32, "{seen}");
    assert_eq!(seen["numObjects"], 32, "{seen}");
    assert_eq!(seen["version"], env!("CARGO_PKG_VERSION"));
    assert!(seen["id"].as_str().unwrap().starts_with("12D3KooW"));
    assert!(daemon.stop().success());
}

/// Standard base64 (the client's export, carried in its JSON).
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let bytes: Vec<u8> = text.bytes().filter(|c| *c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            acc |= u32::from(value(*c)) << (18 - 6 * i);
        }
        out.extend_from_slice(&acc.to_be_bytes()[1..chunk.len()]);
    }
    out
}
