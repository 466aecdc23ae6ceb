//! One Garage node, driven through `object_store` the way the engine's pack tier will drive
//! it: put, get, ranged get, create-only put (not enforced by Garage 2.5), list and delete.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use futures_lite::StreamExt;
use ipfrs_garage::{Garage, garage_for_test};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use common::{TEST_BOUND, runtime, s3_client};

/// Starts a node for `test`, or `None` when Garage is absent and not required.
fn start(test: &str, dir: &std::path::Path) -> Option<Garage> {
    let binary = garage_for_test(test).unwrap()?;
    Some(Garage::start_with(&binary, dir).unwrap())
}

fn client(garage: &Garage) -> object_store::aws::AmazonS3 {
    s3_client(
        &garage.endpoint(),
        garage.region(),
        garage.access_key(),
        garage.secret_key(),
        garage.bucket(),
    )
}

/// 64 KiB of a pattern whose every byte depends on its offset, so a misplaced range shows.
fn payload() -> Bytes {
    (0..64 * 1024u32)
        .map(|i| (i.wrapping_mul(31) ^ (i >> 8)) as u8)
        .collect()
}

#[test]
fn put_get_and_ranged_get_return_what_was_put() {
    let dir = tempfile::tempdir().unwrap();
    let Some(garage) = start("put_get_and_ranged_get_return_what_was_put", dir.path()) else {
        return;
    };
    let store = client(&garage);
    let data = payload();
    runtime().block_on(async {
        tokio::time::timeout(TEST_BOUND, async {
            let path = ObjectPath::from("packs/0001.pack");
            store
                .put(&path, PutPayload::from_bytes(data.clone()))
                .await
                .unwrap();
            let whole = store.get(&path).await.unwrap().bytes().await.unwrap();
            assert_eq!(whole, data);
            let range = store.get_range(&path, 1000..5096).await.unwrap();
            assert_eq!(range, data.slice(1000..5096));
            // Several ranges in one call, as the pack tier's get_many will ask.
            let ranges = store
                .get_ranges(&path, &[0..10, 60_000..60_100, 65_535..65_536])
                .await
                .unwrap();
            assert_eq!(ranges[0], data.slice(0..10));
            assert_eq!(ranges[1], data.slice(60_000..60_100));
            assert_eq!(ranges[2], data.slice(65_535..65_536));
            let head = store.head(&path).await.unwrap();
            assert_eq!(head.size, data.len() as u64);
        })
        .await
        .expect("object-store calls within the test's bound");
    });
}

/// Garage 2.5 does not enforce create-only puts: its PutObject reads no precondition header
/// (garage_api_s3 2.5.0 honours If-None-Match on GET and copy only), so `PutMode::Create`,
/// which object_store sends as `If-None-Match: *`, overwrites like a plain put. The pack
/// tier cannot count on it to keep a sealed pack from being replaced on Garage; it has to
/// name every upload so that no two writers use one name. This test fails the day Garage
/// refuses the second put, and the workaround can then go.
#[test]
fn create_only_put_is_not_enforced_by_garage() {
    let dir = tempfile::tempdir().unwrap();
    let Some(garage) = start("create_only_put_is_not_enforced_by_garage", dir.path()) else {
        return;
    };
    let store = client(&garage);
    runtime().block_on(async {
        tokio::time::timeout(TEST_BOUND, async {
            let path = ObjectPath::from("packs/sealed.pack");
            let create = || PutOptions {
                mode: PutMode::Create,
                ..PutOptions::default()
            };
            store
                .put_opts(&path, PutPayload::from_static(b"first"), create())
                .await
                .unwrap();
            let second = store
                .put_opts(&path, PutPayload::from_static(b"second"), create())
                .await;
            assert!(
                second.is_ok(),
                "Garage now refuses a second create-only put ({second:?}): the pack tier may \
                 rely on PutMode::Create, and this test should assert the refusal"
            );
            let kept = store.get(&path).await.unwrap().bytes().await.unwrap();
            assert_eq!(&kept[..], b"second", "the second create-only put overwrote");
        })
        .await
        .expect("object-store calls within the test's bound");
    });
}

#[test]
fn list_shows_puts_and_delete_removes() {
    let dir = tempfile::tempdir().unwrap();
    let Some(garage) = start("list_shows_puts_and_delete_removes", dir.path()) else {
        return;
    };
    let store = client(&garage);
    runtime().block_on(async {
        tokio::time::timeout(TEST_BOUND, async {
            for name in ["shard0/a", "shard0/b", "shard1/c"] {
                store
                    .put(
                        &ObjectPath::from(name),
                        PutPayload::from(name.as_bytes().to_vec()),
                    )
                    .await
                    .unwrap();
            }
            let listed = |prefix: &'static str| {
                let store = &store;
                async move {
                    let mut names: Vec<String> = store
                        .list(Some(&ObjectPath::from(prefix)))
                        .map(|meta| meta.unwrap().location.to_string())
                        .collect()
                        .await;
                    names.sort();
                    names
                }
            };
            assert_eq!(listed("shard0").await, ["shard0/a", "shard0/b"]);
            assert_eq!(listed("shard1").await, ["shard1/c"]);

            store.delete(&ObjectPath::from("shard0/a")).await.unwrap();
            assert_eq!(listed("shard0").await, ["shard0/b"]);
            let gone = store.get(&ObjectPath::from("shard0/a")).await;
            assert!(
                matches!(gone, Err(object_store::Error::NotFound { .. })),
                "get after delete: {gone:?}"
            );
        })
        .await
        .expect("object-store calls within the test's bound");
    });
}

#[test]
fn wrong_secret_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let Some(garage) = start("wrong_secret_is_refused", dir.path()) else {
        return;
    };
    let store = s3_client(
        &garage.endpoint(),
        garage.region(),
        garage.access_key(),
        &"0".repeat(64),
        garage.bucket(),
    );
    runtime().block_on(async {
        let put = tokio::time::timeout(
            TEST_BOUND,
            store.put(&ObjectPath::from("x"), PutPayload::from_static(b"x")),
        )
        .await
        .expect("a refusal within the test's bound");
        assert!(put.is_err(), "a put signed with a wrong secret: {put:?}");
    });
}

#[test]
fn missing_binary_is_an_error_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let err = Garage::start_with(&dir.path().join("no-such-garage"), dir.path()).unwrap_err();
    assert!(
        matches!(err, ipfrs_garage::Error::Io { .. }),
        "starting a missing binary: {err}"
    );
}
