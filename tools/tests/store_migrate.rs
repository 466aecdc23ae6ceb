//! `ipfrs-store repo migrate` end to end: a repository whose block store is of format 1 (cold
//! backend values = the blocks' bytes) is refused by every other command with a message
//! naming `repo migrate`; `repo migrate` converts it (text and --json reports), after which
//! every block reads back exact; a second run changes nothing; damaged values are named.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use bytes::Bytes;
use common::{json, run};
use ipfrs_storage::key::{key_of, shard_of};
use ipfrs_storage::{BackendKind, Block};
use ipfrs_tiering::{BackendOptions, open_backend};
use serde_json::Value;

const SHARDS: usize = 2;

fn blocks(count: usize) -> Vec<Block> {
    (0..count as u32)
        .map(|i| Block::new(i.to_le_bytes().repeat(100 + 37 * i as usize)).unwrap())
        .collect()
}

/// A repository whose block store is written as format 1 wrote it (sled, no configuration
/// file): `ipfrs.meta` with format=1, each shard's backend with the raw bytes of its blocks,
/// plus `extra` (shard, key, value) put as they are.
fn v1_repo(dir: &Path, all: &[Block], extra: &[(usize, Vec<u8>, Vec<u8>)]) -> PathBuf {
    let repo = dir.join("repo");
    let store = repo.join("blocks");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::write(
        store.join("ipfrs.meta"),
        format!("ipfrs-storage\nformat=1\nbackend=sled\nshards={SHARDS}\n"),
    )
    .unwrap();
    let options = BackendOptions {
        cache_bytes: 1 << 20,
    };
    for shard in 0..SHARDS {
        let dir = store.join(format!("shard-{shard:03}")).join("sled");
        let backend = open_backend(BackendKind::Sled, &dir, &options).unwrap();
        let mut items: Vec<(Vec<u8>, Bytes)> = all
            .iter()
            .filter(|b| shard_of(b.cid(), SHARDS) == shard)
            .map(|b| (key_of(b.cid()), b.data().clone()))
            .collect();
        items.extend(
            extra
                .iter()
                .filter(|(s, _, _)| *s == shard)
                .map(|(_, k, v)| (k.clone(), Bytes::from(v.clone()))),
        );
        backend.put_batch(&items).unwrap();
        backend.flush().unwrap();
    }
    repo
}

fn meta(repo: &Path) -> String {
    std::fs::read_to_string(repo.join("blocks/ipfrs.meta")).unwrap()
}

#[test]
fn a_v1_store_is_refused_then_migrated_then_served() {
    let dir = tempfile::tempdir().unwrap();
    let all = blocks(40);
    let repo = v1_repo(dir.path(), &all, &[]);

    // Every command that opens the store names the fix, exit 1, nothing changed.
    for args in [&["block", "ls"][..], &["repo", "stat"][..]] {
        let out = run(&repo, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("store format 1") && stderr.contains("`ipfrs-store repo migrate`"),
            "{args:?}: {stderr}"
        );
    }
    assert!(meta(&repo).contains("format=1\n"));

    let out = run(&repo, &["repo", "migrate"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes: u64 = all.iter().map(|b| b.data().len() as u64).sum();
    assert!(
        stdout.starts_with(&format!(
            "migrated {} from store format 1 to 2: {SHARDS} of {SHARDS} shards converted, {} \
             blocks copied (",
            repo.join("blocks").display(),
            all.len()
        )),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("({bytes} bytes)")), "{stdout}");
    assert!(stdout.contains(", 0 values refused\n"), "{stdout}");
    assert!(meta(&repo).contains("format=2\n"));

    // The store now opens and serves every block exact.
    let (code, listed) = json(&repo, &["block", "ls"]);
    assert_eq!(code, 0, "{listed}");
    assert_eq!(listed.as_array().map(Vec::len), Some(all.len()), "{listed}");
    let out_file = dir.path().join("out");
    // A few through `block get` (one process each); verify rehashes every one.
    for block in all.iter().step_by(8) {
        let cid = block.cid().to_string();
        let got = run(
            &repo,
            &["block", "get", &cid, "-o", out_file.to_str().unwrap()],
        );
        assert!(got.status.success(), "{got:?}");
        assert_eq!(std::fs::read(&out_file).unwrap(), block.data().as_ref());
    }
    let (code, verified) = json(&repo, &["repo", "verify"]);
    assert_eq!(code, 0, "{verified}");
    assert_eq!(verified["checked"], all.len(), "{verified}");
    assert_eq!(verified["bytes"], bytes, "{verified}");

    // A second run: already current, nothing changed.
    let (code, again) = json(&repo, &["repo", "migrate"]);
    assert_eq!(code, 0, "{again}");
    assert_eq!(again["changed"], false);
    assert_eq!(again["from"], "2");
    assert_eq!(again["blocks"], 0);
    let text = run(&repo, &["repo", "migrate"]);
    assert_eq!(
        String::from_utf8_lossy(&text.stdout),
        format!(
            "{} is already at store format 2: nothing changed\n",
            repo.join("blocks").display()
        )
    );
}

#[test]
fn migrate_reports_in_json_and_names_refused_values() {
    let dir = tempfile::tempdir().unwrap();
    let all = blocks(30);
    let (damaged, sound) = all.split_at(1);
    let mut bad = damaged[0].data().to_vec();
    bad[3] ^= 1;
    let extra = vec![(
        shard_of(damaged[0].cid(), SHARDS),
        key_of(damaged[0].cid()),
        bad,
    )];
    let repo = v1_repo(dir.path(), sound, &extra);

    let (code, report) = json(&repo, &["repo", "migrate"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["from"], "1");
    assert_eq!(report["to"], 2);
    assert_eq!(report["changed"], true);
    assert_eq!(report["shards_converted"], SHARDS);
    assert_eq!(report["blocks"], sound.len());
    assert_eq!(
        report["bytes"],
        sound.iter().map(|b| b.data().len() as u64).sum::<u64>()
    );
    assert_eq!(report["refused"], 1);
    let shards = report["shards"].as_array().unwrap();
    assert_eq!(shards.len(), SHARDS);
    let refused: Vec<&Value> = shards
        .iter()
        .flat_map(|s| s["refused"].as_array().unwrap())
        .collect();
    assert_eq!(refused, vec![&Value::from(damaged[0].cid().to_string())]);
    for shard in shards {
        assert_eq!(shard["outcome"], "copied");
        assert_eq!(shard["unknown_loss"], Value::Null);
    }
    // The refused block is gone; the rest is served.
    let (code, listed) = json(&repo, &["block", "ls"]);
    assert_eq!(code, 0, "{listed}");
    assert_eq!(
        listed.as_array().map(Vec::len),
        Some(sound.len()),
        "{listed}"
    );
}

#[test]
fn migrate_needs_an_initialized_repository() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("nothing-here");
    let out = run(&repo, &["repo", "migrate"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is not an initialized repository"),
        "{stderr}"
    );
    assert!(!repo.join("blocks").exists());
}
