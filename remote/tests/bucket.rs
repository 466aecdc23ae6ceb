//! The pack bucket against object_store's in-memory store (the same trait as S3): uploads
//! are create-only and idempotent, manifests pick the newest generation and refuse damage,
//! reads return exactly the asked bytes, and opening a wrong endpoint fails in bounded time.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use ipfrs_remote::{Manifest, PackBucket, PackEntry, RemoteConfig, RemoteError};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};

mod common;
use common::bytes_of;

fn bucket() -> (Arc<InMemory>, PackBucket) {
    let store = Arc::new(InMemory::new());
    let bucket = PackBucket::with_store(store.clone(), "pfx").unwrap();
    (store, bucket)
}

fn put_raw(store: &InMemory, path: &str, bytes: Vec<u8>) {
    futures_lite::future::block_on(store.put(&Path::from(path), PutPayload::from(bytes))).unwrap();
}

#[test]
fn a_pack_goes_up_once_and_reads_back_by_range_hint_and_whole() {
    let (_, bucket) = bucket();
    let pack = bytes_of(300_000, 1);
    let hint = bytes_of(2_000, 2);
    let entry = bucket
        .upload_pack(1, 7, pack.clone(), hint.clone())
        .wait()
        .unwrap();
    assert_eq!(entry.pack, 7);
    assert_eq!(entry.pack_len, 300_000);
    assert_eq!(entry.hint_len, 2_000);
    assert_eq!(entry.pack_xxh3, xxhash_rust::xxh3::xxh3_64(&pack));

    let ranges = vec![0..28, 4096..8192, 8200..9000, 299_000..300_000];
    let got = bucket.read_ranges(1, 7, ranges.clone()).wait().unwrap();
    assert_eq!(got.len(), ranges.len());
    for (r, b) in ranges.iter().zip(&got) {
        assert_eq!(&b[..], &pack[r.start as usize..r.end as usize]);
    }
    assert_eq!(bucket.read_hint(1, 7).wait().unwrap(), hint);
    assert_eq!(bucket.read_pack(1, entry).wait().unwrap(), pack);
    // Another shard's pack of the same number is another object.
    assert!(matches!(
        bucket.read_hint(2, 7).wait(),
        Err(RemoteError::NotFound { .. })
    ));

    // Again with the same bytes (a retry after a crash): taken as done.
    assert_eq!(
        bucket
            .upload_pack(1, 7, pack.clone(), hint.clone())
            .wait()
            .unwrap(),
        entry
    );
    // Other bytes under the same number: refused, and what is stored stays.
    let err = bucket
        .upload_pack(1, 7, bytes_of(300_000, 3), hint.clone())
        .wait()
        .unwrap_err();
    assert!(matches!(err, RemoteError::Exists { .. }), "{err}");
    assert_eq!(bucket.read_pack(1, entry).wait().unwrap(), pack);
}

#[test]
fn a_pack_past_the_single_put_goes_up_in_parts_and_is_just_as_create_only() {
    let (_, bucket) = bucket();
    let pack = bytes_of(20 << 20, 4);
    let hint = bytes_of(100, 5);
    let entry = bucket
        .upload_pack(0, 1, pack.clone(), hint.clone())
        .wait()
        .unwrap();
    assert_eq!(bucket.read_pack(0, entry).wait().unwrap(), pack);
    let tail = bucket
        .read_ranges(0, 1, std::iter::once((20 << 20) - 10..20 << 20).collect())
        .wait()
        .unwrap();
    assert_eq!(&tail[0][..], &pack[(20 << 20) - 10..]);
    assert_eq!(
        bucket
            .upload_pack(0, 1, pack.clone(), hint.clone())
            .wait()
            .unwrap(),
        entry
    );
    let mut other = pack.to_vec();
    other[12345] ^= 1;
    assert!(matches!(
        bucket.upload_pack(0, 1, other.into(), hint).wait(),
        Err(RemoteError::Exists { .. })
    ));
}

#[test]
fn a_pack_that_is_not_what_its_manifest_lists_is_refused() {
    let (store, bucket) = bucket();
    let pack = bytes_of(5_000, 6);
    let entry = bucket
        .upload_pack(3, 2, pack.clone(), bytes_of(10, 7))
        .wait()
        .unwrap();
    let wrong_digest = PackEntry {
        pack_xxh3: entry.pack_xxh3 ^ 1,
        ..entry
    };
    assert!(matches!(
        bucket.read_pack(3, wrong_digest).wait(),
        Err(RemoteError::Damaged { .. })
    ));
    let mut flipped = pack.to_vec();
    flipped[4000] ^= 0x10;
    put_raw(&store, "pfx/shard-003/packs/00000002.pack", flipped);
    assert!(matches!(
        bucket.read_pack(3, entry).wait(),
        Err(RemoteError::Damaged { .. })
    ));
}

#[test]
fn manifests_are_create_only_and_the_newest_generation_wins() {
    let (_, bucket) = bucket();
    assert_eq!(bucket.latest_manifest(4).wait().unwrap(), None);
    let entry = |pack| PackEntry {
        pack,
        pack_len: 10,
        pack_xxh3: u64::from(pack),
        hint_len: 1,
    };
    let mut generations = Vec::new();
    for generation in 1..=11 {
        let m = Manifest {
            shard: 4,
            generation,
            packs: (1..=generation as u32).map(entry).collect(),
            dead: Vec::new(),
        };
        bucket.publish(&m).wait().unwrap();
        generations.push(m);
    }
    // 11 sorts after 9 and 10: generations compare as numbers.
    assert_eq!(
        bucket.latest_manifest(4).wait().unwrap().as_ref(),
        generations.last()
    );
    let err = bucket.publish(&generations[2]).wait().unwrap_err();
    assert!(matches!(err, RemoteError::Exists { .. }), "{err}");
    assert_eq!(bucket.latest_manifest(5).wait().unwrap(), None);
}

#[test]
fn a_damaged_or_misfiled_newest_manifest_is_an_error_not_an_older_one() {
    let (store, bucket) = bucket();
    let m = Manifest {
        shard: 1,
        generation: 1,
        packs: vec![],
        dead: Vec::new(),
    };
    bucket.publish(&m).wait().unwrap();
    let mut bytes = Manifest {
        shard: 1,
        generation: 2,
        packs: vec![],
        dead: Vec::new(),
    }
    .encode();
    bytes[9] ^= 4;
    put_raw(&store, "pfx/shard-001/manifests/0000000000000002", bytes);
    assert!(matches!(
        bucket.latest_manifest(1).wait(),
        Err(RemoteError::Damaged { .. })
    ));

    // Generation 1's valid bytes copied under generation 3's name.
    put_raw(
        &store,
        "pfx/shard-001/manifests/0000000000000003",
        m.encode(),
    );
    let err = bucket.latest_manifest(1).wait().unwrap_err();
    assert!(err.to_string().contains("generation 1"), "{err}");
    // A stray object that is not a generation number is not read.
    put_raw(&store, "pfx/shard-001/manifests/README", b"notes".to_vec());
    put_raw(
        &store,
        "pfx/shard-001/manifests/0000000000000004",
        Manifest {
            shard: 1,
            generation: 4,
            packs: vec![],
            dead: Vec::new(),
        }
        .encode(),
    );
    assert_eq!(
        bucket
            .latest_manifest(1)
            .wait()
            .unwrap()
            .unwrap()
            .generation,
        4
    );
}

#[test]
fn a_deleted_pack_is_gone_hint_first_and_deleting_twice_is_fine() {
    let (_, bucket) = bucket();
    let entry = bucket
        .upload_pack(0, 9, bytes_of(100, 8), bytes_of(10, 9))
        .wait()
        .unwrap();
    bucket.delete_pack(0, 9).wait().unwrap();
    assert!(matches!(
        bucket.read_hint(0, 9).wait(),
        Err(RemoteError::NotFound { .. })
    ));
    assert!(matches!(
        bucket.read_pack(0, entry).wait(),
        Err(RemoteError::NotFound { .. })
    ));
    bucket.delete_pack(0, 9).wait().unwrap();
}

#[test]
fn calls_can_be_awaited_from_another_executor_and_the_bucket_dropped_inside_tokio() {
    let (_, bucket) = bucket();
    let entry = futures_lite::future::block_on(
        bucket
            .upload_pack(2, 1, bytes_of(64, 10), bytes_of(8, 11))
            .result(),
    )
    .unwrap();
    assert_eq!(entry.pack_len, 64);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async move { drop(bucket) });
}

fn config_for(endpoint: String) -> RemoteConfig {
    let mut config = RemoteConfig::new(Some(&endpoint), "packs");
    config.access_key_id = Some("GK000000000000000000000000".into());
    config.secret_access_key = Some("0".repeat(64));
    config.open_timeout = Duration::from_secs(2);
    config.request_timeout = Duration::from_secs(2);
    config
}

#[test]
fn opening_an_endpoint_where_nothing_listens_is_unreachable() {
    // A port just released: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = PackBucket::open(&config_for(format!("http://127.0.0.1:{port}"))).unwrap_err();
    assert!(matches!(err, RemoteError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains(&port.to_string()), "{err}");
}

#[test]
fn opening_an_endpoint_that_never_answers_fails_within_the_open_timeout() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accepts and holds connections without a byte of answer.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().take(16) {
            held.push(stream);
        }
        std::thread::sleep(Duration::from_secs(30));
    });
    let err = PackBucket::open(&config_for(format!("http://127.0.0.1:{port}"))).unwrap_err();
    assert!(matches!(err, RemoteError::Unreachable { .. }), "{err}");
}

#[test]
fn a_bucket_needs_a_name() {
    let err = PackBucket::open(&RemoteConfig::new(Some("http://127.0.0.1:1"), "")).unwrap_err();
    assert!(matches!(err, RemoteError::Config(_)), "{err}");
}
