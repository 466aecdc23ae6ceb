//! sled's own flush makes its log "stable" with `sync_file_range` (no metadata, no disk cache
//! flush) and never syncs its blob files; the backend's flush adds the fdatasync. With the
//! fault point on that sync (the `fail` crate's `failpoints` feature, on for the engine's
//! tests), a failed sync must fail the flush and leave the durable mark where it was: the
//! engine then never treats those writes as durable. Once the fault is gone, the next flush
//! moves the mark, and a large value (a sled blob file) is read back after a reopen.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use ipfrs_tiering::backends::SledBackend;
use ipfrs_tiering::{BackendOptions, ColdBackend};

/// The backend's durable-log mark (`ipfrs-durable-lsn` in sled's directory).
fn mark(dir: &std::path::Path) -> Vec<u8> {
    std::fs::read(dir.join("ipfrs-durable-lsn")).unwrap()
}

#[test]
fn a_failed_log_sync_fails_the_flush_and_keeps_the_mark() {
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let options = BackendOptions::default();
    let backend = SledBackend::open(dir.path(), &options).unwrap();
    backend
        .put_batch(&[(b"small".to_vec(), Bytes::from_static(b"value"))])
        .unwrap();
    backend.flush().unwrap();
    let before = mark(dir.path());

    // A value sled keeps in a blob file of its own, then a failing sync.
    let big = Bytes::from(vec![7u8; 1 << 20]);
    backend
        .put_batch(&[(b"big".to_vec(), big.clone())])
        .unwrap();
    fail::cfg("sled-log-sync", "return").unwrap();
    let err = backend
        .flush()
        .expect_err("a failed fdatasync must fail the flush");
    assert!(err.to_string().contains("db"), "{err}");
    assert_eq!(
        mark(dir.path()),
        before,
        "the mark moved past an unsynced log"
    );

    fail::remove("sled-log-sync");
    backend.flush().unwrap();
    assert_ne!(mark(dir.path()), before, "a good flush moves the mark");
    drop(backend);

    let reopened = SledBackend::open(dir.path(), &options).unwrap();
    assert_eq!(reopened.get(b"big").unwrap(), Some(big));
    assert_eq!(
        reopened.get(b"small").unwrap(),
        Some(Bytes::from_static(b"value"))
    );
    scenario.teardown();
}
