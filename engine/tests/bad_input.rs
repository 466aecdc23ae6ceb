//! Bad input gets a typed error and changes nothing: blocks, CIDs, directories, configuration.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;

use bytes::Bytes;
use ipfrs_car::varint;
use ipfrs_storage::key::{parse_cid, parse_cid_bytes};
use ipfrs_storage::{BackendKind, Block, BlockError, BlockStore, Cid, Config, Engine, Error};

fn config(dir: &Path) -> Config {
    let mut config = Config::new(dir);
    config.shards = Some(2);
    config.cache_bytes = 1 << 20;
    config.bloom_expected_items = 4096;
    config
}

/// The names in a directory.
fn entries(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

fn assert_empty_store(engine: &Engine) {
    let store = engine.blocking();
    let stats = store.stats().unwrap();
    assert_eq!((stats.blocks, stats.bytes), (0, 0));
    assert_eq!(store.cids().count(), 0);
}

/// A CIDv1 raw over a multihash with an arbitrary code and digest, from its binary form.
fn crafted_cid(code: u64, digest: &[u8]) -> Cid {
    let mut bytes = vec![0x01, 0x55];
    varint::write(code, &mut bytes);
    varint::write(digest.len() as u64, &mut bytes);
    bytes.extend_from_slice(digest);
    parse_cid_bytes(&bytes).unwrap()
}

#[test]
fn data_that_does_not_match_its_cid_is_refused() {
    let good = Block::new(&b"the real data"[..]).unwrap();
    let cid = *good.cid();
    let wrong = Bytes::from_static(b"other data");
    assert_eq!(
        Block::from_parts(cid, wrong.clone()),
        Err(BlockError::HashMismatch { cid })
    );
    // One flipped bit is enough.
    let mut flipped = good.data().to_vec();
    flipped[0] ^= 1;
    assert!(matches!(
        Block::from_parts(cid, flipped.clone()),
        Err(BlockError::HashMismatch { .. })
    ));

    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    for data in [wrong, Bytes::from(flipped), Bytes::new()] {
        let err = futures_lite::future::block_on(engine.put_data(&cid, data)).unwrap_err();
        assert!(
            matches!(err, Error::Block(BlockError::HashMismatch { cid: c }) if c == cid),
            "{err:?}"
        );
        let err = engine
            .blocking()
            .put_data(&cid, Bytes::from_static(b"x"))
            .unwrap_err();
        assert!(matches!(err, Error::Block(BlockError::HashMismatch { .. })));
    }
    // An identity CID whose inline data differs from the data given.
    let identity = parse_cid_bytes(&[0x01, 0x55, 0x00, 0x03, b'a', b'b', b'c']).unwrap();
    let err = engine
        .blocking()
        .put_data(&identity, Bytes::from_static(b"abd"))
        .unwrap_err();
    assert!(
        matches!(err, Error::Block(BlockError::HashMismatch { .. })),
        "{err:?}"
    );

    let store = engine.blocking();
    assert!(!store.has(&cid).unwrap());
    assert_eq!(store.get(&cid).unwrap(), None);
    assert_empty_store(&engine);
    // The right data is accepted afterwards.
    store.put_data(&cid, good.data().clone()).unwrap();
    assert_eq!(store.get(&cid).unwrap().as_ref(), Some(good.data()));
    store.close().unwrap();
}

#[test]
fn blocks_over_the_size_limit_are_refused_whole_batches_included() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.max_block_size = 1000;
    let engine = Engine::open(cfg).unwrap();
    let store = engine.blocking();

    let big = Block::new(vec![3u8; 1001]).unwrap();
    match store.put(&big) {
        Err(Error::Block(BlockError::TooLarge { size, limit })) => {
            assert_eq!((size, limit), (1001, 1000));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        store.put_data(big.cid(), big.data().clone()),
        Err(Error::Block(BlockError::TooLarge { .. }))
    ));
    // One oversized block refuses the whole batch: none of the others is stored.
    let small: Vec<Block> = (0u8..6)
        .map(|i| Block::new(vec![i; 10 * usize::from(i)]).unwrap())
        .collect();
    let mut batch = small.clone();
    batch.insert(3, big.clone());
    assert!(matches!(
        store.put_many(&batch),
        Err(Error::Block(BlockError::TooLarge {
            size: 1001,
            limit: 1000
        }))
    ));
    let cids: Vec<Cid> = batch.iter().map(|b| *b.cid()).collect();
    assert!(store.has_many(&cids).unwrap().iter().all(|h| !h));
    assert_empty_store(&engine);

    // At the limit is accepted.
    let edge = Block::new(vec![4u8; 1000]).unwrap();
    store.put(&edge).unwrap();
    assert_eq!(store.get_size(edge.cid()).unwrap(), Some(1000));
    store.close().unwrap();
}

#[test]
fn the_default_limit_is_two_mebibytes() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    assert_eq!(engine.config().max_block_size, 2 << 20);
    let big = Block::new(vec![1u8; (2 << 20) + 1]).unwrap();
    assert!(matches!(
        engine.blocking().put(&big),
        Err(Error::Block(BlockError::TooLarge { .. }))
    ));
    assert_empty_store(&engine);
}

#[test]
fn unsupported_multihash_codes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    let store = engine.blocking();
    for code in [0x30_0000u64, 0x99, 0x1_0000_0000] {
        let cid = crafted_cid(code, &[7u8; 32]);
        assert_eq!(cid.hash().code(), code);
        assert_eq!(
            Block::from_parts(cid, &b"data"[..]),
            Err(BlockError::UnsupportedHash { code })
        );
        match store.put_data(&cid, Bytes::from_static(b"data")) {
            Err(Error::Block(BlockError::UnsupportedHash { code: c })) => assert_eq!(c, code),
            other => panic!("code {code:#x}: {other:?}"),
        }
        // Lookups of such a CID are simply misses, not errors.
        assert!(!store.has(&cid).unwrap());
        assert_eq!(store.get(&cid).unwrap(), None);
    }
    assert_empty_store(&engine);
}

#[test]
fn malformed_cids_are_typed_errors() {
    let malformed = |r: Result<Cid, BlockError>, what: &str| match r {
        Err(BlockError::MalformedCid { reason }) => assert!(!reason.is_empty(), "{what}"),
        other => panic!("{what}: {other:?}"),
    };
    for text in [
        "",
        "b",
        "not a cid",
        "bafy!!!!",
        "Qm",
        "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbd", // base58, one character short
        "zzzzzzzzzzzzzzzz",
        "bafkreibnoelefnzgwbcacyt4vh52ymxvzbjq7mmqhtcnwarfq4lz", // truncated digest
    ] {
        malformed(parse_cid(text), text);
    }
    let good = Block::new(&b"x"[..]).unwrap();
    let bytes = good.cid().to_bytes();
    for (what, b) in [
        ("empty", vec![]),
        ("version only", vec![0x01]),
        ("truncated", bytes[..bytes.len() - 1].to_vec()),
        ("version 2", [&[0x02u8][..], &bytes[1..]].concat()),
        ("explicit v0", [&[0x00u8][..], &bytes[1..]].concat()),
        ("unterminated varint", vec![0x01, 0xff, 0xff, 0xff]),
    ] {
        malformed(parse_cid_bytes(&b), what);
    }
    // And the valid forms still parse, so the errors above are not blanket refusals.
    assert_eq!(parse_cid_bytes(&bytes).unwrap(), *good.cid());
    assert_eq!(parse_cid(&good.cid().to_string()).unwrap(), *good.cid());
}

/// A valid CID followed by junk is malformed (`cid::Cid::try_from(&[u8])` alone reads a
/// prefix and would drop the junk); Kubo's `cid.Cast` refuses trailing bytes too.
#[test]
fn cid_bytes_with_trailing_junk_are_malformed() {
    let good = Block::new(&b"x"[..]).unwrap();
    let mut bytes = good.cid().to_bytes();
    // The encoder below is right: the exact bytes give back the CID's own text.
    assert_eq!(base32_multibase(&bytes), good.cid().to_string());
    bytes.extend_from_slice(b"junk");
    assert!(matches!(
        parse_cid_bytes(&bytes),
        Err(BlockError::MalformedCid { .. })
    ));
    // The same in text form: base32 of the CID's bytes followed by junk.
    let text = base32_multibase(&bytes);
    assert!(
        matches!(parse_cid(&text), Err(BlockError::MalformedCid { .. })),
        "{text} parsed as {:?}",
        parse_cid(&text)
    );
}

/// Multibase text whose bytes are a CIDv0 (`0x12 0x20` + digest) followed by junk is
/// malformed: only the bare base58 `Qm...` form is read as CIDv0 text.
#[test]
fn multibase_cid_v0_bytes_with_trailing_junk_are_malformed() {
    let good = Block::new(&b"x"[..]).unwrap();
    let v0 = Cid::new_v0(*good.cid().hash()).unwrap();
    let mut bytes = v0.to_bytes();
    assert_eq!(bytes.len(), 34);
    // The exact bytes in multibase form are a valid way to write the CIDv0.
    assert_eq!(parse_cid(&base32_multibase(&bytes)).unwrap(), v0);
    bytes.extend_from_slice(b"junk");
    let text = base32_multibase(&bytes);
    assert!(
        matches!(parse_cid(&text), Err(BlockError::MalformedCid { .. })),
        "{text} parsed as {:?}",
        parse_cid(&text)
    );
}

/// Multibase base32 (prefix `b`, RFC 4648 lowercase, no padding), as CIDv1 text uses.
fn base32_multibase(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut out = String::from("b");
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

#[test]
fn a_directory_that_is_not_ours_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let foreign = dir.path().join("notes.txt");
    std::fs::write(&foreign, b"my precious notes").unwrap();
    match Engine::open(config(dir.path())) {
        Err(Error::NotOurDirectory { path }) => assert_eq!(path, dir.path()),
        other => panic!("{:?}", other.err()),
    }
    assert_eq!(std::fs::read(&foreign).unwrap(), b"my precious notes");
    assert_eq!(
        entries(dir.path()),
        BTreeSet::from(["notes.txt".to_string()])
    );
    assert!(!dir.path().join("ipfrs.meta").exists());

    // A foreign sub-directory counts too.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("photos")).unwrap();
    assert!(matches!(
        Engine::open(config(dir.path())),
        Err(Error::NotOurDirectory { .. })
    ));
    assert_eq!(entries(dir.path()), BTreeSet::from(["photos".to_string()]));
}

/// A crash during the first open, after `ipfrs.meta.tmp` was created but before it was
/// renamed, leaves `LOCK` + `ipfrs.meta.tmp`: only the engine's own files, so it opens.
#[test]
fn a_crash_while_writing_the_metadata_leaves_an_openable_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("LOCK"), b"").unwrap();
    std::fs::write(dir.path().join("ipfrs.meta.tmp"), b"ipfrs-storage\nform").unwrap();
    let engine = Engine::open(config(dir.path())).expect("only our own files are there");
    assert_empty_store(&engine);
}

#[test]
fn a_second_open_of_a_locked_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = Engine::open(config(dir.path())).unwrap();
    let block = Block::new(&b"first engine"[..]).unwrap();
    first.blocking().put(&block).unwrap();
    let meta_before = std::fs::read(dir.path().join("ipfrs.meta")).unwrap();
    for shards in [Some(2), None] {
        let mut cfg = config(dir.path());
        cfg.shards = shards;
        match Engine::open(cfg) {
            Err(Error::Locked { path }) => assert_eq!(path, dir.path().join("LOCK")),
            other => panic!("{:?}", other.err()),
        }
    }
    // Another backend is refused as locked too, before anything of it is created.
    let mut other = config(dir.path());
    other.backend = BackendKind::ParityDb;
    assert!(matches!(Engine::open(other), Err(Error::Locked { .. })));
    assert_eq!(
        std::fs::read(dir.path().join("ipfrs.meta")).unwrap(),
        meta_before
    );
    // The first engine still works, reads and writes.
    let store = first.blocking();
    assert_eq!(store.get(block.cid()).unwrap().as_ref(), Some(block.data()));
    let more = Block::new(&b"still writable"[..]).unwrap();
    store.put(&more).unwrap();
    assert_eq!(store.stats().unwrap().blocks, 2);
    store.close().unwrap();
    drop(store);
    drop(first);
    // Once the first is gone, the directory opens again with both blocks.
    let again = Engine::open(config(dir.path())).unwrap();
    assert!(again.blocking().has(more.cid()).unwrap());
    assert_eq!(again.blocking().stats().unwrap().blocks, 2);
}

/// Creates a store with one block in it, and closes it.
fn store_with_a_block(dir: &Path, backend: BackendKind, shards: usize) -> Block {
    let mut cfg = config(dir);
    cfg.backend = backend;
    cfg.shards = Some(shards);
    let engine = Engine::open(cfg).unwrap();
    let block = Block::new(&b"kept"[..]).unwrap();
    engine.blocking().put(&block).unwrap();
    engine.blocking().close().unwrap();
    block
}

#[test]
fn reopening_with_another_backend_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let block = store_with_a_block(dir.path(), BackendKind::Sled, 2);
    let before = entries(dir.path());
    for requested in [BackendKind::ParityDb, BackendKind::RocksDb] {
        let mut cfg = config(dir.path());
        cfg.backend = requested;
        match Engine::open(cfg) {
            Err(Error::BackendMismatch {
                path,
                recorded,
                requested: r,
            }) => {
                assert_eq!(path, dir.path());
                assert_eq!((recorded, r), (BackendKind::Sled, requested));
            }
            // A build without rocksdb says so first: also a typed error, nothing created.
            Err(Error::BackendNotCompiled(k)) => {
                assert_eq!(k, BackendKind::RocksDb);
                assert!(!ipfrs_storage::compiled_backends().contains(&k));
            }
            other => panic!("{requested}: {:?}", other.err()),
        }
        assert!(!dir.path().join("shard-000").join(requested.name()).exists());
    }
    assert_eq!(entries(dir.path()), before);
    let mut cfg = config(dir.path());
    cfg.backend = BackendKind::Sled;
    let engine = Engine::open(cfg).unwrap();
    assert_eq!(
        engine.blocking().get(block.cid()).unwrap().as_ref(),
        Some(block.data())
    );
}

#[test]
fn reopening_with_another_explicit_shard_count_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let block = store_with_a_block(dir.path(), BackendKind::Sled, 3);
    for requested in [1, 2, 4, 8] {
        let mut cfg = config(dir.path());
        cfg.shards = Some(requested);
        match Engine::open(cfg) {
            Err(Error::ShardCountMismatch {
                path,
                recorded,
                requested: r,
            }) => {
                assert_eq!(path, dir.path());
                assert_eq!((recorded, r), (3, requested));
            }
            other => panic!("{requested}: {:?}", other.err()),
        }
    }
    assert!(!dir.path().join("shard-003").exists());
    // `None` takes the recorded count.
    let mut cfg = config(dir.path());
    cfg.shards = None;
    let engine = Engine::open(cfg).unwrap();
    assert_eq!(engine.shard_count(), 3);
    assert_eq!(engine.config().shards, Some(3));
    assert_eq!(
        engine.blocking().get(block.cid()).unwrap().as_ref(),
        Some(block.data())
    );
}

#[test]
fn an_unknown_store_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let meta = dir.path().join("ipfrs.meta");
    let text = "ipfrs-storage\nformat=99\nbackend=sled\nshards=2\n";
    std::fs::write(&meta, text).unwrap();
    match Engine::open(config(dir.path())) {
        Err(Error::IncompatibleFormat {
            path,
            found,
            supported,
        }) => {
            assert_eq!(path, dir.path());
            assert_eq!(found, "99");
            assert_eq!(supported, 2);
        }
        other => panic!("{:?}", other.err()),
    }
    assert_eq!(std::fs::read_to_string(&meta).unwrap(), text);
    assert!(!dir.path().join("shard-000").exists());

    // Metadata that is not ours at all, or lacks the format, is refused the same way.
    for bad in [
        "something else\nformat=2\n",
        "ipfrs-storage\nbackend=sled\nshards=2\n",
        "ipfrs-storage\nformat=2\nbackend=nonesuch\nshards=2\n",
        "ipfrs-storage\nformat=2\nbackend=sled\nshards=0\n",
        "ipfrs-storage\nformat=1-to-2\nbackend=sled\nshards=2\n",
    ] {
        std::fs::write(&meta, bad).unwrap();
        assert!(
            matches!(
                Engine::open(config(dir.path())),
                Err(Error::IncompatibleFormat { .. })
            ),
            "{bad:?}"
        );
        assert_eq!(std::fs::read_to_string(&meta).unwrap(), bad);
    }
}

#[test]
fn invalid_configuration_is_refused_before_anything_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let mut cases: Vec<(&str, Config)> = Vec::new();
    let mut c = config(&path);
    c.shards = Some(0);
    cases.push(("shards", c));
    for rate in [0.0, 1.0, -0.5, 1.5, f64::NAN] {
        let mut c = config(&path);
        c.bloom_fp_rate = rate;
        cases.push(("bloom_fp_rate", c));
    }
    let mut c = config(&path);
    c.max_block_size = 0;
    cases.push(("max_block_size", c));
    for (field, cfg) in cases {
        match Engine::open(cfg) {
            Err(Error::InvalidConfig { field: f, reason }) => {
                assert_eq!(f, field);
                assert!(!reason.is_empty());
            }
            other => panic!("{field}: {:?}", other.err()),
        }
        assert!(!path.exists(), "{field}: the data directory was created");
    }
}
