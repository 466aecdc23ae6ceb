//! The bucket's request counts against a real Garage: each call moves the counts of the
//! methods it sends, by as many requests as S3 sees. Skipped with a message where Garage is
//! not installed, unless `IPFRS_REQUIRE_GARAGE` is set.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use ipfrs_garage::{Garage, garage_for_test};
use ipfrs_remote::{PackBucket, RemoteConfig, RequestCounts, process_requests};

mod common;
use common::bytes_of;

#[test]
fn requests_are_counted_by_method_as_garage_sees_them() {
    let Some(binary) =
        garage_for_test("requests_are_counted_by_method_as_garage_sees_them").unwrap()
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let garage = Garage::start_with(&binary, dir.path()).unwrap();
    let mut config = RemoteConfig::new(Some(&garage.endpoint()), garage.bucket());
    config.region = ipfrs_garage::REGION.to_owned();
    config.prefix = "counted".to_owned();
    config.access_key_id = Some(garage.access_key().to_owned());
    config.secret_access_key = Some(garage.secret_key().to_owned());
    config.request_timeout = Duration::from_secs(30);

    let process_before = process_requests();
    let bucket = PackBucket::open(&config).unwrap();
    // Opening lists the prefix once to see that the bucket answers.
    let opened = bucket.requests();
    assert_eq!(
        opened,
        RequestCounts {
            get: 1,
            ..RequestCounts::default()
        }
    );

    // An upload looks (HEAD) and then puts, for the pack and for its hint.
    let pack = bytes_of(100_000, 1);
    bucket
        .upload_pack(0, 1, pack.clone(), bytes_of(100, 2))
        .wait()
        .unwrap();
    let uploaded = bucket.requests();
    assert_eq!(
        uploaded.since(&opened),
        RequestCounts {
            head: 2,
            put: 2,
            ..RequestCounts::default()
        }
    );

    // One ranged read and one whole-object read: two GETs.
    let range = 10..20;
    let got = bucket.read_ranges(0, 1, Vec::from([range])).wait().unwrap();
    assert_eq!(&got[0][..], &pack[10..20]);
    bucket.read_hint(0, 1).wait().unwrap();
    let read = bucket.requests();
    assert_eq!(
        read.since(&uploaded),
        RequestCounts {
            get: 2,
            ..RequestCounts::default()
        }
    );

    // Deleting a pack deletes its hint and itself: object_store's S3 client sends each
    // delete as a one-key multi-object delete, a POST.
    bucket.delete_pack(0, 1).wait().unwrap();
    let deleted = bucket.requests();
    assert_eq!(
        deleted.since(&read),
        RequestCounts {
            post: 2,
            ..RequestCounts::default()
        }
    );
    assert_eq!(deleted.total(), 9);

    // The process total holds this bucket's requests (and any other test's, running beside).
    let process = process_requests().since(&process_before);
    assert!(process.total() >= deleted.total(), "{process:?}");
}
