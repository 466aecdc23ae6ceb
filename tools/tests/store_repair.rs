//! `ipfrs-store repo repair` end to end: a store whose cold backend of one shard is damaged
//! still opens and serves its hot blocks, `repo verify` names the damage (exit 1), `repo
//! repair` rebuilds the damaged backend from what reads back exact (keeping the damaged one
//! aside), names what it dropped, and leaves a store that verifies clean.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use bytes::Bytes;
use common::{json, run};
use ipfrs_storage::key::{key_of, shard_of};
use ipfrs_storage::{BackendKind, Block, Config, Engine};
use ipfrs_tiering::{BackendOptions, open_backend};

const SHARDS: usize = 2;

/// A repository with `cold` blocks compacted into the backends and `hot` blocks after them.
fn filled_repo(dir: &Path) -> (PathBuf, Vec<Block>, Vec<Block>) {
    let repo = dir.join("repo");
    let out = run(&repo, &["init", "--shards", &SHARDS.to_string()]);
    assert!(out.status.success(), "{out:?}");
    let blocks: Vec<Block> = (0..120u32)
        .map(|i| Block::new(i.to_le_bytes().repeat(200 + i as usize)).unwrap())
        .collect();
    let (cold, hot) = blocks.split_at(90);
    let engine = Engine::open(Config::new(repo.join("blocks"))).unwrap();
    assert_eq!(engine.config().backend, BackendKind::Sled);
    let store = engine.blocking();
    store.put_many(cold).unwrap();
    store.compact().unwrap();
    store.put_many(hot).unwrap();
    assert_eq!(store.stats().unwrap().hot_blocks, hot.len() as u64);
    store.close().unwrap();
    (repo, cold.to_vec(), hot.to_vec())
}

fn backend_dir(repo: &Path, shard: usize) -> PathBuf {
    repo.join("blocks")
        .join(format!("shard-{shard:03}"))
        .join("sled")
}

/// Reads every block through the library (one process, not one per block); returns which
/// read back exact.
fn readable(repo: &Path, blocks: &[&Block]) -> Vec<bool> {
    let engine = Engine::open(Config::new(repo.join("blocks"))).unwrap();
    let store = engine.blocking();
    let found = blocks
        .iter()
        .map(|b| matches!(store.get(b.cid()), Ok(Some(data)) if data == b.data()))
        .collect();
    store.close().unwrap();
    found
}

fn get(repo: &Path, block: &Block, out: &Path) -> bool {
    let cid = block.cid().to_string();
    let done = run(repo, &["block", "get", &cid, "-o", out.to_str().unwrap()]);
    done.status.success() && std::fs::read(out).unwrap() == block.data().as_ref()
}

/// sled cannot open shard 0's backend (its log file cannot be read: a directory stands in
/// its place, as an unreadable disk area would fail the read): the store opens anyway, hot blocks and shard 1 serve, verify names the damage, repair rebuilds shard
/// 0 (its cold blocks cannot be named: the count is unknown) and keeps the damaged copy.
#[test]
fn repair_rebuilds_a_backend_that_does_not_open() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, cold, hot) = filled_repo(dir.path());
    let log = backend_dir(&repo, 0).join("db");
    std::fs::rename(&log, backend_dir(&repo, 0).join("db.moved")).unwrap();
    std::fs::create_dir(&log).unwrap();
    let out = dir.path().join("out");

    assert!(
        get(&repo, &hot[0], &out),
        "a hot block is served by the CLI"
    );
    let on_shard1: Vec<&Block> = cold
        .iter()
        .filter(|b| shard_of(b.cid(), SHARDS) == 1)
        .collect();
    assert!(!on_shard1.is_empty());
    assert!(
        get(&repo, on_shard1[0], &out),
        "a cold block of the sound shard"
    );
    let still: Vec<&Block> = hot.iter().chain(on_shard1.iter().copied()).collect();
    assert!(
        readable(&repo, &still).iter().all(|r| *r),
        "hot and shard 1 serve"
    );
    let on_shard0 = cold
        .iter()
        .find(|b| shard_of(b.cid(), SHARDS) == 0)
        .unwrap();
    let refused = run(&repo, &["block", "get", &on_shard0.cid().to_string()]);
    assert!(
        !refused.status.success(),
        "a block of the damaged shard was served"
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("corrupt") && stderr.contains("damaged"),
        "{stderr}"
    );

    let (code, verified) = json(&repo, &["repo", "verify"]);
    assert_eq!(code, 1, "{verified}");
    let places = verified["damaged"].as_array().unwrap();
    assert!(
        places.iter().any(|p| p["shard"] == 0
            && p["site"].as_str().unwrap().contains("cold backend")
            && p["site"].as_str().unwrap().contains("shard-000")),
        "{verified}"
    );

    let (code, repaired) = json(&repo, &["repo", "repair"]);
    assert_eq!(code, 0, "{repaired}");
    let shards = repaired["shards"].as_array().unwrap();
    assert_eq!(shards.len(), SHARDS);
    let backup = PathBuf::from(shards[0]["backup"].as_str().expect("shard 0 rebuilt"));
    assert!(
        backup.join("db.moved").is_file(),
        "the damaged backend is kept"
    );
    assert!(
        shards[0]["unknown_loss"]
            .as_str()
            .unwrap()
            .contains("did not open")
    );
    assert!(
        shards[1]["backup"].is_null(),
        "the sound shard is left alone"
    );
    assert_eq!(shards[1]["kept"], on_shard1.len() as u64);

    let (code, verified) = json(&repo, &["repo", "verify"]);
    assert_eq!(code, 0, "{verified}");
    assert_eq!(
        verified["checked"],
        (hot.len() + on_shard1.len()) as u64,
        "{verified}"
    );
    assert!(
        readable(&repo, &still).iter().all(|r| *r),
        "every block readable before the repair still is"
    );
    assert!(get(&repo, &hot[1], &out));
    // A second repair finds nothing to do.
    let (_, again) = json(&repo, &["repo", "repair"]);
    assert!(
        again["shards"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["backup"].is_null()),
        "{again}"
    );
}

/// Wrong bytes under two keys of shard 1's backend (damage sled cannot see): verify names the
/// two blocks, repair drops exactly those two by CID and keeps every other block.
#[test]
fn repair_drops_blocks_that_do_not_read_back_exact_and_names_them() {
    let dir = tempfile::tempdir().unwrap();
    let (repo, cold, hot) = filled_repo(dir.path());
    let victims: Vec<&Block> = cold
        .iter()
        .filter(|b| shard_of(b.cid(), SHARDS) == 1)
        .take(2)
        .collect();
    {
        let backend = open_backend(
            BackendKind::Sled,
            &backend_dir(&repo, 1),
            &BackendOptions::default(),
        )
        .unwrap();
        let items: Vec<(Vec<u8>, Bytes)> = victims
            .iter()
            .map(|b| {
                (
                    key_of(b.cid()),
                    ipfrs_tiering::pack::encode_inline_unchecked(b"not the block"),
                )
            })
            .collect();
        backend.put_batch(&items).unwrap();
        backend.flush().unwrap();
    }
    let mut named: Vec<String> = victims.iter().map(|b| b.cid().to_string()).collect();
    named.sort();

    let (code, verified) = json(&repo, &["repo", "verify"]);
    assert_eq!(code, 1);
    let mut corrupt: Vec<String> = verified["corrupt"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    corrupt.sort();
    assert_eq!(corrupt.len(), 2, "{verified}");

    let (code, repaired) = json(&repo, &["repo", "repair"]);
    assert_eq!(code, 0, "{repaired}");
    let shard1 = &repaired["shards"][1];
    let mut dropped: Vec<String> = shard1["dropped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    dropped.sort();
    assert_eq!(dropped, corrupt, "{repaired}");
    assert!(shard1["unknown_loss"].is_null());
    assert!(repaired["shards"][0]["backup"].is_null());
    let text = String::from_utf8(run(&repo, &["repo", "verify"]).stdout).unwrap();
    assert!(text.contains("0 corrupt, 0 missing"), "{text}");

    let all: Vec<&Block> = cold.iter().chain(&hot).collect();
    for (block, readable) in all.iter().zip(readable(&repo, &all)) {
        let victim = victims.iter().any(|v| v.cid() == block.cid());
        assert_eq!(readable, !victim, "{}", block.cid());
    }
    let out = dir.path().join("out");
    assert!(!get(&repo, victims[0], &out), "a dropped block is gone");
    assert!(get(&repo, &hot[0], &out));
    assert_eq!(named.len(), 2);
}
