//! The pack bucket against a real Garage (S3-compatible) on 127.0.0.1: create-only uploads
//! and manifests as S3 answers them, multipart packs, ranged reads, errors at open, and a
//! 3-node cluster that loses a node. Skipped with a message where Garage is not installed,
//! unless `IPFRS_REQUIRE_GARAGE` is set (CI sets it): `scripts/ensure-garage` installs it.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;
use ipfrs_garage::{Garage, GarageCluster, garage_for_test};
use ipfrs_remote::{Manifest, PackBucket, PackEntry, RemoteConfig, RemoteError};

mod common;
use common::bytes_of;

fn config(endpoint: String, bucket: &str, access: &str, secret: &str) -> RemoteConfig {
    let mut config = RemoteConfig::new(Some(&endpoint), bucket);
    config.region = ipfrs_garage::REGION.to_owned();
    config.prefix = "store-a".to_owned();
    config.access_key_id = Some(access.to_owned());
    config.secret_access_key = Some(secret.to_owned());
    config.open_timeout = Duration::from_secs(10);
    config.request_timeout = Duration::from_secs(30);
    config
}

#[test]
fn packs_and_manifests_on_one_garage_node() {
    let Some(binary) = garage_for_test("packs_and_manifests_on_one_garage_node").unwrap() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let garage = Garage::start_with(&binary, dir.path()).unwrap();
    let config = config(
        garage.endpoint(),
        garage.bucket(),
        garage.access_key(),
        garage.secret_key(),
    );
    let bucket = PackBucket::open(&config).unwrap();

    // One PUT and one multipart pack, each read back by range and whole.
    let mut entries = Vec::new();
    for (pack, len) in [(1u32, 300_000usize), (2, 20 << 20)] {
        let bytes = bytes_of(len, u64::from(pack));
        let hint = bytes_of(1000, 100 + u64::from(pack));
        let entry = bucket
            .upload_pack(0, pack, bytes.clone(), hint.clone())
            .wait()
            .unwrap();
        let ranges = vec![0..28, 4096..8192, (len as u64 - 100)..len as u64];
        let got = bucket.read_ranges(0, pack, ranges.clone()).wait().unwrap();
        for (r, b) in ranges.iter().zip(&got) {
            assert_eq!(&b[..], &bytes[r.start as usize..r.end as usize]);
        }
        assert_eq!(bucket.read_hint(0, pack).wait().unwrap(), hint);
        assert_eq!(bucket.read_pack(0, entry).wait().unwrap(), bytes);
        // A retry of the same upload is taken as done; other bytes are refused and change
        // nothing.
        assert_eq!(
            bucket
                .upload_pack(0, pack, bytes.clone(), hint.clone())
                .wait()
                .unwrap(),
            entry
        );
        let err = bucket
            .upload_pack(0, pack, bytes_of(len, 999), hint.clone())
            .wait()
            .unwrap_err();
        assert!(
            matches!(err, RemoteError::Exists { .. }),
            "pack {pack}: {err}"
        );
        assert_eq!(bucket.read_pack(0, entry).wait().unwrap(), bytes);
        entries.push(entry);
    }

    let first = Manifest {
        shard: 0,
        generation: 1,
        packs: entries[..1].to_vec(),
        dead: Vec::new(),
    };
    let second = Manifest {
        shard: 0,
        generation: 2,
        packs: entries.clone(),
        dead: Vec::new(),
    };
    bucket.publish(&first).wait().unwrap();
    bucket.publish(&second).wait().unwrap();
    let err = bucket.publish(&second).wait().unwrap_err();
    assert!(matches!(err, RemoteError::Exists { .. }), "{err}");
    assert_eq!(bucket.latest_manifest(0).wait().unwrap(), Some(second));
    assert_eq!(bucket.latest_manifest(1).wait().unwrap(), None);

    bucket.delete_pack(0, 1).wait().unwrap();
    assert!(matches!(
        bucket.read_pack(0, entries[0]).wait(),
        Err(RemoteError::NotFound { .. })
    ));

    // A second client on the same prefix (a replica) sees what the first wrote.
    let replica = PackBucket::open(&config).unwrap();
    assert_eq!(
        replica
            .latest_manifest(0)
            .wait()
            .unwrap()
            .unwrap()
            .generation,
        2
    );
    assert_eq!(
        replica.read_pack(0, entries[1]).wait().unwrap().len(),
        20 << 20
    );
}

#[test]
fn wrong_credentials_and_a_missing_bucket_are_reported_at_open() {
    let Some(binary) =
        garage_for_test("wrong_credentials_and_a_missing_bucket_are_reported_at_open").unwrap()
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let garage = Garage::start_with(&binary, dir.path()).unwrap();
    let wrong_secret = config(
        garage.endpoint(),
        garage.bucket(),
        garage.access_key(),
        &"f".repeat(64),
    );
    let err = PackBucket::open(&wrong_secret).unwrap_err();
    assert!(matches!(err, RemoteError::Denied { .. }), "{err}");
    let no_bucket = config(
        garage.endpoint(),
        "no-such-bucket",
        garage.access_key(),
        garage.secret_key(),
    );
    let err = PackBucket::open(&no_bucket).unwrap_err();
    assert!(
        matches!(
            err,
            RemoteError::NoBucket { .. } | RemoteError::Denied { .. }
        ),
        "{err}"
    );
}

#[test]
fn a_three_node_cluster_keeps_serving_and_taking_packs_with_a_node_down() {
    let Some(binary) =
        garage_for_test("a_three_node_cluster_keeps_serving_and_taking_packs_with_a_node_down")
            .unwrap()
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = GarageCluster::start_with(&binary, dir.path(), 3).unwrap();
    let config = config(
        cluster.endpoint(0).unwrap(),
        cluster.bucket(),
        cluster.access_key(),
        cluster.secret_key(),
    );
    let bucket = PackBucket::open(&config).unwrap();
    let packs: Vec<(PackEntry, Bytes)> = (1..=4u32)
        .map(|pack| {
            let bytes = bytes_of(200_000 + pack as usize, u64::from(pack));
            let entry = bucket
                .upload_pack(2, pack, bytes.clone(), bytes_of(64, 50 + u64::from(pack)))
                .wait()
                .unwrap();
            (entry, bytes)
        })
        .collect();
    bucket
        .publish(&Manifest {
            shard: 2,
            generation: 1,
            packs: packs.iter().map(|(e, _)| *e).collect(),
            dead: Vec::new(),
        })
        .wait()
        .unwrap();

    cluster.stop_node(2).unwrap();
    for (entry, bytes) in &packs {
        assert_eq!(&bucket.read_pack(2, *entry).wait().unwrap(), bytes);
    }
    // Two of three replicas still make a write quorum.
    let fifth = bytes_of(123_456, 5);
    let entry = bucket
        .upload_pack(2, 5, fifth.clone(), bytes_of(64, 55))
        .wait()
        .unwrap();
    let mut listed: Vec<PackEntry> = packs.iter().map(|(e, _)| *e).collect();
    listed.push(entry);
    bucket
        .publish(&Manifest {
            shard: 2,
            generation: 2,
            packs: listed.clone(),
            dead: Vec::new(),
        })
        .wait()
        .unwrap();
    assert_eq!(
        bucket.latest_manifest(2).wait().unwrap().unwrap().packs,
        listed
    );
    assert_eq!(bucket.read_pack(2, entry).wait().unwrap(), fifth);
}
