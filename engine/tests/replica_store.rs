//! A read replica through the `BlockStore` trait: a primary engine with `Config::remote` on a
//! directory bucket (`file://`) uploads its packs; a `Replica` on the same bucket, used only
//! through the trait, serves every uploaded block byte-exact, lists exactly those blocks page
//! by page, refuses writes without changing anything, reports a damaged record as corrupt
//! (never its bytes), and fails every call after `close`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::path::Path;

use futures_lite::future::block_on;
use ipfrs_storage::key::key_of;
use ipfrs_storage::{
    Block, BlockStore, Cid, Config, Cursor, Engine, Error, RemoteConfig, Replica, Stats,
};
use ipfrs_tiering::segment::hint::decode_hint;
use ipfrs_tiering::segment::record::HEADER_LEN;
use ipfrs_tiering::segment::recover::Kind;

mod common;

use common::remote::{dir_bucket, files_ending, settle};

/// No pack kept locally: the bucket is the packs' only copy.
fn config(dir: &Path, bucket: RemoteConfig) -> Config {
    common::remote::store_config(dir, bucket, 0)
}

/// A primary that wrote `count` blocks, compacted, and uploaded every pack; its bucket.
fn primary(root: &Path, seed: u32, count: u32) -> (Engine, RemoteConfig, Vec<Block>, Stats) {
    let bucket = dir_bucket(&root.join("s3"), "packs-bucket", "store-a");
    let engine = Engine::open(config(&root.join("store"), bucket.clone())).unwrap();
    let blocks = common::two_sizes(seed, count, 3, 2 << 10, 64 << 10);
    for chunk in blocks.chunks(20) {
        block_on(engine.put_many(chunk)).unwrap();
    }
    block_on(engine.compact()).unwrap();
    let s = settle(&engine, |s| {
        s.packs > 0 && s.remote_packs == s.packs && s.remote_uploads >= s.packs
    });
    assert!(s.packs > 0, "{s:?}");
    assert_eq!(s.remote_packs, s.packs, "every pack uploaded: {s:?}");
    assert_eq!(s.remote_failures, 0, "{s:?}");
    (engine, bucket, blocks, s)
}

/// Every CID of `store`'s listing, `limit` a page, in order.
fn list<S: BlockStore>(store: &S, limit: usize) -> Vec<Cid> {
    let mut cids = Vec::new();
    let mut cursor = Some(Cursor::default());
    let mut pages = 0;
    while let Some(at) = cursor.take() {
        let page = block_on(store.cid_page(at, limit)).unwrap();
        assert!(page.cids.len() <= limit, "a page over its limit");
        cids.extend(page.cids);
        cursor = page.next;
        pages += 1;
        assert!(pages < 100_000, "the listing does not end");
    }
    cids
}

/// Every block of `written` that `listed` names reads back exact with its size; the others
/// are absent, without error.
fn check_serves<S: BlockStore>(store: &S, written: &[Block], listed: &HashSet<Cid>) {
    for block in written {
        let cid = block.cid();
        // The listing names blocks as CIDv1 raw of their multihash.
        let raw = Cid::new_v1(0x55, *cid.hash());
        if listed.contains(&raw) {
            assert_eq!(
                block_on(store.get(cid)).unwrap().as_ref(),
                Some(block.data()),
                "{cid}"
            );
            assert_eq!(
                block_on(store.get_size(cid)).unwrap(),
                Some(block.len() as u64)
            );
            assert!(block_on(store.has(cid)).unwrap(), "{cid}");
        } else {
            assert_eq!(block_on(store.get(cid)).unwrap(), None, "{cid}");
            assert_eq!(block_on(store.get_size(cid)).unwrap(), None, "{cid}");
            assert!(!block_on(store.has(cid)).unwrap(), "{cid}");
        }
    }
    let cids: Vec<Cid> = written.iter().map(|b| *b.cid()).collect();
    let got = block_on(store.get_many(&cids)).unwrap();
    let has = block_on(store.has_many(&cids)).unwrap();
    for ((block, got), has) in written.iter().zip(got).zip(has) {
        let raw = Cid::new_v1(0x55, *block.cid().hash());
        assert_eq!(has, listed.contains(&raw), "{}", block.cid());
        assert_eq!(got.is_some(), has, "{}", block.cid());
        if let Some(got) = got {
            assert_eq!(got, block.data());
        }
    }
}

#[test]
fn a_replica_as_block_store_serves_and_lists_the_uploaded_blocks_and_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, bucket, written, s) = primary(dir.path(), 11, 300);
    let replica = Replica::open(bucket).unwrap();

    // The listing: every block once, and exactly the blocks the primary holds outside its
    // hot tier (with no local pack and no inline blocks, those are the uploaded ones).
    let listed = list(&replica, 17);
    let set: HashSet<Cid> = listed.iter().copied().collect();
    assert_eq!(set.len(), listed.len(), "a block listed twice");
    assert!(!listed.is_empty());
    assert_eq!(listed.len() as u64, s.blocks - s.hot_blocks, "{s:?}");
    let keys: HashSet<Vec<u8>> = written.iter().map(|b| key_of(b.cid())).collect();
    for cid in &listed {
        assert!(keys.contains(&key_of(cid)), "{cid} was never written");
        // The primary has it too.
        assert!(engine.blocking().has(cid).unwrap(), "{cid}");
    }
    // Page sizes do not change the listing, nor its order; neither does the stream.
    assert_eq!(list(&replica, 1_000_000), listed);
    assert_eq!(list(&replica, 1), listed);
    let mut stream = replica.cids();
    let mut streamed = Vec::new();
    while let Some(cid) = block_on(stream.next()) {
        streamed.push(cid.unwrap());
    }
    assert_eq!(streamed, listed);

    check_serves(&replica, &written, &set);
    let stats = block_on(BlockStore::stats(&replica)).unwrap();
    assert_eq!(stats.blocks, listed.len() as u64);
    let bytes: u64 = written
        .iter()
        .filter(|b| set.contains(&Cid::new_v1(0x55, *b.cid().hash())))
        .map(|b| b.len() as u64)
        .sum();
    assert_eq!(stats.bytes, bytes);
    assert_eq!(stats.remote_packs, s.packs, "{stats:?}");

    // Writes are refused, and nothing changes: a new block stays absent, a served one stays.
    let fresh = Block::new(&b"never stored by a replica"[..]).unwrap();
    let served = written
        .iter()
        .find(|b| set.contains(&Cid::new_v1(0x55, *b.cid().hash())))
        .unwrap();
    for result in [
        block_on(replica.put(&fresh)),
        block_on(replica.put_many(std::slice::from_ref(served))),
        block_on(replica.put_data(fresh.cid(), fresh.data().clone())),
    ] {
        assert!(
            matches!(result, Err(Error::ReadOnly { operation: "put" })),
            "{result:?}"
        );
    }
    for result in [
        block_on(BlockStore::delete(&replica, served.cid())).map(|_| ()),
        block_on(replica.delete_many(&[*served.cid(), *fresh.cid()])).map(|_| ()),
    ] {
        assert!(
            matches!(
                result,
                Err(Error::ReadOnly {
                    operation: "delete"
                })
            ),
            "{result:?}"
        );
    }
    assert!(!block_on(BlockStore::has(&replica, fresh.cid())).unwrap());
    assert_eq!(list(&replica, 64), listed);
    check_serves(&replica, &written, &set);
    block_on(replica.flush()).unwrap();

    // Closed: every call fails with Closed; closing again is fine.
    block_on(BlockStore::close(&replica)).unwrap();
    assert!(matches!(
        block_on(BlockStore::get(&replica, served.cid())),
        Err(Error::Closed)
    ));
    assert!(matches!(
        block_on(BlockStore::has(&replica, served.cid())),
        Err(Error::Closed)
    ));
    assert!(matches!(
        block_on(replica.cid_page(Cursor::default(), 10)),
        Err(Error::Closed)
    ));
    assert!(matches!(
        block_on(BlockStore::stats(&replica)),
        Err(Error::Closed)
    ));
    assert!(matches!(block_on(replica.put(&fresh)), Err(Error::Closed)));
    block_on(BlockStore::close(&replica)).unwrap();
    block_on(engine.close()).unwrap();
}

#[test]
fn a_listing_goes_on_across_a_refresh_and_ends_with_the_new_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, bucket, first, _) = primary(dir.path(), 12, 150);
    let replica = Replica::open(bucket).unwrap();
    let before = list(&replica, 1_000_000);
    assert!(!before.is_empty());
    // A page into the listing, the primary uploads more and the replica refreshes.
    let page = block_on(replica.cid_page(Cursor::default(), 5)).unwrap();
    assert_eq!(page.cids, before[..5]);
    let more = common::two_sizes(13, 150, 3, 2 << 10, 64 << 10);
    // Read before the puts: the uploader may be done with them by the time compact returns.
    let was = common::remote::stats(&engine).remote_uploads;
    for chunk in more.chunks(20) {
        block_on(engine.put_many(chunk)).unwrap();
    }
    block_on(engine.compact()).unwrap();
    let s = settle(&engine, |s| {
        s.remote_uploads > was && s.remote_packs == s.packs
    });
    assert!(s.remote_uploads > was, "{s:?}");
    replica.refresh().unwrap();
    let mut rest = Vec::new();
    let mut cursor = page.next;
    while let Some(at) = cursor.take() {
        let page = block_on(replica.cid_page(at, 7)).unwrap();
        rest.extend(page.cids);
        cursor = page.next;
        assert!(rest.len() < 100_000, "the listing does not end");
    }
    let after = list(&replica, 1_000_000);
    assert!(after.len() > before.len(), "new packs listed");
    // Nothing reclaimed, so no old block moved: the old listing is a prefix per shard of
    // the new one, and the pages after the refresh are the new listing past the first 5.
    assert_eq!(after[..5], before[..5]);
    assert_eq!(rest, after[5..], "the cursor went on where it stopped");
    let set: HashSet<Cid> = after.iter().copied().collect();
    let all: Vec<Block> = first.into_iter().chain(more).collect();
    check_serves(&replica, &all, &set);
    assert_eq!(after.len() as u64, s.blocks - s.hot_blocks, "{s:?}");
    block_on(engine.close()).unwrap();
}

#[test]
fn a_corrupt_byte_in_a_pack_object_is_the_corrupt_error_never_the_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, bucket, written, _) = primary(dir.path(), 14, 150);
    block_on(engine.close()).unwrap();
    let replica = Replica::open(bucket).unwrap();
    let by_key: std::collections::HashMap<Vec<u8>, &Block> =
        written.iter().map(|b| (key_of(b.cid()), b)).collect();

    // Two large records of one uploaded pack that the replica serves.
    let packs = files_ending(&dir.path().join("s3"), ".pack");
    let (pack, records) = packs
        .iter()
        .find_map(|pack| {
            let hint = std::fs::read(pack.with_extension("hint")).ok()?;
            let records: Vec<(usize, Vec<u8>)> = decode_hint(&hint)?
                .found
                .iter()
                .filter(|r| matches!(r.kind, Kind::Put { len } if len > 1000))
                .filter(|r| {
                    by_key
                        .get(r.key.as_ref())
                        .is_some_and(|b| block_on(BlockStore::has(&replica, b.cid())).unwrap())
                })
                .map(|r| (r.offset, r.key.to_vec()))
                .collect();
            (records.len() >= 2).then(|| (pack.clone(), records))
        })
        .expect("a pack with two served large records");
    let (at, key) = &records[0];
    let damaged = by_key[key];
    let intact = by_key[&records[1].1];
    let mut bytes = std::fs::read(&pack).unwrap();
    // A payload byte: the record's checksum no longer matches.
    bytes[at + HEADER_LEN + key.len() + 50] ^= 0x01;
    std::fs::write(&pack, bytes).unwrap();

    match block_on(BlockStore::get(&replica, damaged.cid())) {
        Err(e @ Error::Corrupt { .. }) => {
            let raw = Cid::new_v1(0x55, *damaged.cid().hash());
            assert_eq!(e.corrupt_cid(), Some(raw), "{e}");
        }
        other => panic!("{}: {other:?}", damaged.cid()),
    }
    let batch = [*intact.cid(), *damaged.cid()];
    assert!(matches!(
        block_on(BlockStore::get_many(&replica, &batch)),
        Err(Error::Corrupt { .. })
    ));
    // Damaged, not absent; the pack's other records are still served.
    assert!(block_on(BlockStore::has(&replica, damaged.cid())).unwrap());
    assert_eq!(
        block_on(BlockStore::get(&replica, intact.cid()))
            .unwrap()
            .as_ref(),
        Some(intact.data())
    );
}
