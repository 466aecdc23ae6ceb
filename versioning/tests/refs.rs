//! The ref stores: one suite run against the file-backed and in-memory implementations.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use ipfrs_storage::Block;
use ipfrs_versioning::{Error, FileRefStore, MemRefStore, MetadataRefStore, RefStore};

fn cid(n: u8) -> cid::Cid {
    *Block::new(vec![n]).unwrap().cid()
}

fn suite(store: &dyn RefStore) {
    assert_eq!(store.get("heads/main").unwrap(), None);
    store
        .compare_and_swap("heads/main", None, Some(cid(1)))
        .unwrap();
    assert_eq!(store.get("heads/main").unwrap(), Some(cid(1)));
    // Stale expectations fail and change nothing.
    let err = store
        .compare_and_swap("heads/main", None, Some(cid(2)))
        .unwrap_err();
    assert!(
        matches!(err, Error::Conflict { found: Some(ref f), .. } if **f == cid(1)),
        "{err}"
    );
    // The message names the commits as people write CIDs, not as Rust debug output.
    let text = err.to_string();
    assert!(
        text.contains(&format!("expected no commit, found {}", cid(1))),
        "{text}"
    );
    assert!(!text.contains("Cid("), "{text}");
    let err = store
        .compare_and_swap("heads/main", Some(cid(3)), None)
        .unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err}");
    assert_eq!(store.get("heads/main").unwrap(), Some(cid(1)));
    store
        .compare_and_swap("heads/main", Some(cid(1)), Some(cid(2)))
        .unwrap();
    store
        .compare_and_swap("heads/a/b", None, Some(cid(3)))
        .unwrap();
    store
        .compare_and_swap("tags/v1", None, Some(cid(4)))
        .unwrap();
    store.compare_and_swap("HEAD", None, Some(cid(2))).unwrap();
    let heads: Vec<String> = store
        .list("heads/")
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(heads, ["heads/a/b", "heads/main"]);
    assert_eq!(store.list("").unwrap().len(), 4);
    store
        .compare_and_swap("tags/v1", Some(cid(4)), None)
        .unwrap();
    assert_eq!(store.get("tags/v1").unwrap(), None);
    assert!(store.list("tags/").unwrap().is_empty());
    for bad in ["", "/x", "x/", "a//b", "../x", "heads/.x", "a b", "a@1"] {
        assert!(
            matches!(store.get(bad), Err(Error::InvalidRefName { .. })),
            "{bad:?}"
        );
        assert!(store.compare_and_swap(bad, None, Some(cid(1))).is_err());
    }
}

#[test]
fn memory_ref_store() {
    suite(&MemRefStore::new());
}

#[test]
fn engine_metadata_ref_store_persists_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let engine = ipfrs_storage::Engine::open(dir.path()).unwrap();
    suite(&MetadataRefStore::new(engine.clone()));
    futures_lite::future::block_on(ipfrs_storage::BlockStore::close(&engine)).unwrap();
    let engine = ipfrs_storage::Engine::open(dir.path()).unwrap();
    let again = MetadataRefStore::new(engine);
    assert_eq!(again.get("heads/main").unwrap(), Some(cid(2)));
    assert_eq!(again.list("").unwrap().len(), 3);
}

#[test]
fn file_ref_store_persists_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    suite(&FileRefStore::open(dir.path()).unwrap());
    let again = FileRefStore::open(dir.path()).unwrap();
    assert_eq!(again.get("heads/main").unwrap(), Some(cid(2)));
    // No temporary files are left behind and the lock file is not listed.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("heads"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert_eq!(again.list("").unwrap().len(), 3);
}

#[test]
fn file_ref_store_cas_is_atomic_across_handles() {
    // Each thread opens its own handle (its own lock file descriptor), as separate processes
    // would; 8 threads x 25 increments through CAS must all land.
    let dir = tempfile::tempdir().unwrap();
    let path = Arc::new(dir.path().to_path_buf());
    let cids: Arc<Vec<cid::Cid>> = Arc::new(
        (0..=200u16)
            .map(|i| *Block::new(i.to_le_bytes().to_vec()).unwrap().cid())
            .collect(),
    );
    FileRefStore::open(&*path)
        .unwrap()
        .compare_and_swap("heads/n", None, Some(cids[0]))
        .unwrap();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (path, cids) = (path.clone(), cids.clone());
            std::thread::spawn(move || {
                let store = FileRefStore::open(&*path).unwrap();
                let mut done = 0;
                while done < 25 {
                    let cur = store.get("heads/n").unwrap().unwrap();
                    let i = cids.iter().position(|c| *c == cur).unwrap();
                    match store.compare_and_swap("heads/n", Some(cur), Some(cids[i + 1])) {
                        Ok(()) => done += 1,
                        Err(Error::Conflict { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let store = FileRefStore::open(&*path).unwrap();
    assert_eq!(store.get("heads/n").unwrap(), Some(cids[200]));
}
