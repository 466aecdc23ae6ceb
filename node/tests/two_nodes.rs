//! Two `bitswap-node` processes on loopback: one imports a CAR of a mixed DAG (dag-cbor root,
//! a UnixFS file of dag-pb nodes over raw leaves, a dag-cbor child, an identity link), the
//! other fetches the whole DAG by its root over bitswap. Then the fetcher's repository is
//! opened and every block of the CAR is compared byte for byte and checked against its CID.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Proc, file_bytes, mixed_dag, unixfs_file, write_car};
use futures_lite::future::block_on;
use ipfrs_storage::{BlockStore, Config, Engine, verify};

/// Bound of each step (start, listen, fetch): the whole test stays well under a minute.
const STEP: Duration = Duration::from_secs(40);

#[test]
fn a_node_fetches_a_whole_dag_from_another_over_bitswap() {
    let dir = tempfile::tempdir().unwrap();
    // 300 KiB in 4 KiB raw leaves, 8 links per dag-pb node: 75 leaves under three levels.
    let file = file_bytes(300 * 1024, 7);
    let (root, blocks, identity) = mixed_dag(&file);
    let car = dir.path().join("dag.car");
    write_car(&car, &root, &blocks);

    let repo_a = dir.path().join("a");
    let repo_b = dir.path().join("b");
    let mut server = Proc::node(
        "server",
        &[
            "--repo",
            repo_a.to_str().unwrap(),
            "--import-car",
            car.to_str().unwrap(),
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
        ],
    );
    let imported = server.expect("imported", STEP);
    assert!(
        imported.starts_with(&format!("{} ", blocks.len())),
        "{imported}"
    );
    assert_eq!(server.expect("root", STEP), root.to_string());
    let peer = server.expect("peer-id", STEP);
    let addr = server.expect("listening", STEP);
    assert!(addr.starts_with("/ip4/127.0.0.1/tcp/"), "{addr}");
    assert!(addr.ends_with(&format!("/p2p/{peer}")), "{addr}");

    let mut client = Proc::node(
        "client",
        &[
            "--repo",
            repo_b.to_str().unwrap(),
            "--connect",
            &addr,
            "--fetch",
            &root.to_string(),
            "--timeout-secs",
            "30",
        ],
    );
    let fetched = client.expect("fetched", STEP);
    let status = client.wait(STEP);
    assert!(status.success(), "client exited with {status}");
    // Every stored block, and the identity link (answered from its CID, never sent).
    let total: usize = blocks.iter().map(|b| b.len()).sum();
    assert_eq!(
        fetched,
        format!(
            "{root} {} {}",
            blocks.len() + 1,
            total + identity.hash().digest().len()
        )
    );
    drop(server);

    let engine = Engine::open(Config::new(repo_b.join("blocks"))).unwrap();
    block_on(async {
        for block in &blocks {
            let got = engine
                .get(block.cid())
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("{} was not stored", block.cid()));
            assert_eq!(&got, block.data(), "{}", block.cid());
            verify(block.cid(), &got).unwrap();
        }
        // Nothing else was stored (the identity CID never is).
        assert_eq!(engine.stats().await.unwrap().blocks, blocks.len() as u64);
        engine.close().await.unwrap();
    });
}

/// A 6 MiB file of 256 KiB leaves, all asked for at once: more blocks than fit one bitswap
/// message (4 MiB), as a Kubo-sized UnixFS file is.
#[test]
fn a_dag_of_256_kib_leaves_past_one_bitswap_message_arrives_whole() {
    let dir = tempfile::tempdir().unwrap();
    let file = file_bytes(6 << 20, 3);
    let (root, blocks) = unixfs_file(&file, 256 << 10, 32);
    let car = dir.path().join("big.car");
    write_car(&car, &root, &blocks);
    let repo_a = dir.path().join("a");
    let mut server = Proc::node(
        "server",
        &[
            "--repo",
            repo_a.to_str().unwrap(),
            "--import-car",
            car.to_str().unwrap(),
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
        ],
    );
    let addr = server.expect("listening", STEP);
    let repo_b = dir.path().join("b");
    let mut client = Proc::node(
        "client",
        &[
            "--repo",
            repo_b.to_str().unwrap(),
            "--connect",
            &addr,
            "--fetch",
            &root.to_string(),
            "--timeout-secs",
            "20",
        ],
    );
    let total: usize = blocks.iter().map(|b| b.len()).sum();
    assert_eq!(
        client.expect("fetched", STEP),
        format!("{root} {} {total}", blocks.len())
    );
    assert!(client.wait(STEP).success());
}
