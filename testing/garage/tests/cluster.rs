//! Three Garage nodes with three replicas: with one node down, everything acknowledged is
//! still read and new puts still succeed (a quorum is 2 of 3); the node rejoins on restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use ipfrs_garage::{GarageCluster, garage_for_test};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};

use common::{TEST_BOUND, runtime, s3_client};

fn client(cluster: &GarageCluster, node: usize) -> object_store::aws::AmazonS3 {
    s3_client(
        &cluster.endpoint(node).unwrap(),
        cluster.region(),
        cluster.access_key(),
        cluster.secret_key(),
        cluster.bucket(),
    )
}

fn object(i: usize) -> (ObjectPath, Bytes) {
    let body = format!("object {i} ").repeat(100 + i);
    (ObjectPath::from(format!("packs/{i:04}")), Bytes::from(body))
}

async fn read_all(store: &object_store::aws::AmazonS3, count: usize) {
    for i in 0..count {
        let (path, body) = object(i);
        let got = store.get(&path).await.unwrap().bytes().await.unwrap();
        assert_eq!(got, body, "object {i}");
    }
}

#[test]
fn one_node_down_loses_nothing_and_takes_puts() {
    let Some(binary) = garage_for_test("one_node_down_loses_nothing_and_takes_puts").unwrap()
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = GarageCluster::start_with(&binary, dir.path(), 3).unwrap();
    assert_eq!(cluster.len(), 3);
    let rt = runtime();
    let store = client(&cluster, 0);
    rt.block_on(async {
        tokio::time::timeout(TEST_BOUND, async {
            for i in 0..20 {
                let (path, body) = object(i);
                store
                    .put(&path, PutPayload::from_bytes(body))
                    .await
                    .unwrap();
            }
        })
        .await
        .expect("20 puts within the test's bound");
    });

    cluster.stop_node(2).unwrap();
    assert!(!cluster.is_running(2).unwrap());
    rt.block_on(async {
        tokio::time::timeout(TEST_BOUND, async {
            read_all(&store, 20).await;
            for i in 20..25 {
                let (path, body) = object(i);
                store
                    .put(&path, PutPayload::from_bytes(body))
                    .await
                    .unwrap();
            }
            read_all(&store, 25).await;
        })
        .await
        .expect("reads and puts with a node down within the test's bound");
    });

    // The restarted node serves everything, the puts it missed included (its reads ask a
    // quorum, which holds them).
    cluster.start_node(2).unwrap();
    let restarted = client(&cluster, 2);
    rt.block_on(async {
        tokio::time::timeout(TEST_BOUND, read_all(&restarted, 25))
            .await
            .expect("reads through the restarted node within the test's bound");
    });
}

#[test]
fn node_index_out_of_range_is_an_error() {
    let Some(binary) = garage_for_test("node_index_out_of_range_is_an_error").unwrap() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = GarageCluster::start_with(&binary, dir.path(), 1).unwrap();
    let err = cluster.stop_node(1).unwrap_err();
    assert!(
        matches!(err, ipfrs_garage::Error::NoSuchNode { index: 1, len: 1 }),
        "{err}"
    );
}
