//! Bit rot in the hot tier: a seeded campaign of single-bit flips in record headers, keys,
//! payloads and hint files of a cleanly closed store, each on a fresh copy.
//!
//! After every flip the store must open; every undamaged block reads back exact; the damaged
//! block never reads as bytes (it is `Corrupt`, or absent) and `repo verify` names it by its
//! CID and nothing else; a flipped hint file costs nothing (the segment is scanned instead).
//! A few trials run the `ipfrs-store repo verify` binary for its exit code and text.
//!
//! `IPFRS_BITROT_TRIALS` (default 48) and `IPFRS_BITROT_SEED` change the campaign; a failure
//! names the trial, the file, the offset and the bit, so it replays.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use futures_lite::future::block_on;
use ipfrs_storage::{Block, BlockStore, Cid, Codec, Config, Engine, Error, HashAlgorithm};
use ipfrs_tiering::segment::record::HEADER_LEN;
use ipfrs_tiering::segment::recover::{Kind, scan_segment};
use ipfrs_tiering::segment::{Alignment, file::list_segments};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Small segments, so the store has sealed segments (read through their hint files) and an
/// active one (scanned) in each shard.
const SEGMENT_BYTES: u64 = 256 << 10;
const SHARDS: usize = 2;
/// Small enough for the small segments (a segment holds at least two of the largest blocks).
const MAX_BLOCK: usize = 16 << 10;

/// Where one block's record lies.
#[derive(Debug, Clone)]
struct Placed {
    cid: Cid,
    data: Vec<u8>,
    segment_file: PathBuf,
    segment: u32,
    shard: usize,
    offset: usize,
    key_len: usize,
}

fn config(blocks_dir: &Path) -> Config {
    let mut config = Config::new(blocks_dir);
    config.shards = Some(SHARDS);
    config.max_block_size = MAX_BLOCK;
    if let Some(hot) = &mut config.hot_tier {
        hot.segment_bytes = SEGMENT_BYTES;
    }
    config
}

fn store_bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ipfrs-store"))
}

/// A repository made by `ipfrs-store init`, filled through the library with blocks of three
/// hash functions, closed cleanly.
fn pristine(root: &Path, rng: &mut StdRng) -> Vec<Block> {
    let repo = root.join("repo");
    let out = store_bin()
        .args(["--repo", repo.to_str().unwrap(), "init", "--shards", "2"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    std::fs::write(
        repo.join("config.toml"),
        format!("hot_segment_bytes = {SEGMENT_BYTES}\nmax_block_size = {MAX_BLOCK}\n"),
    )
    .unwrap();
    let engine = Engine::open(config(&repo.join("blocks"))).unwrap();
    let hashes = [
        HashAlgorithm::Sha2_256,
        HashAlgorithm::Blake3,
        HashAlgorithm::Sha2_512,
    ];
    let blocks: Vec<Block> = (0..240)
        .map(|i| {
            let len = rng.random_range(1..12_000);
            let data: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            Block::with(Codec::Raw, hashes[i % hashes.len()], data).unwrap()
        })
        .collect();
    for chunk in blocks.chunks(16) {
        block_on(engine.put_many(chunk)).unwrap();
    }
    block_on(engine.close()).unwrap();
    blocks
}

/// Every block record of the store, found by scanning the segment files.
fn placements(repo: &Path, blocks: &[Block]) -> Vec<Placed> {
    let mut placed = Vec::new();
    for shard in 0..SHARDS {
        let dir = repo.join(format!("blocks/shard-{shard:03}/segments"));
        for (segment, path) in list_segments(&dir).unwrap() {
            let bytes = std::fs::read(&path).unwrap();
            let scan = scan_segment(&bytes, Alignment::WORD);
            assert!(scan.bad.is_empty(), "pristine segment {path:?} is damaged");
            for found in scan.found {
                if !matches!(found.kind, Kind::Put { .. }) {
                    continue;
                }
                let block = blocks
                    .iter()
                    .find(|b| b.cid().hash().to_bytes() == *found.key)
                    .expect("every record is a block we stored");
                placed.push(Placed {
                    cid: *block.cid(),
                    data: block.data().to_vec(),
                    segment_file: path.clone(),
                    segment,
                    shard,
                    offset: found.offset,
                    key_len: found.key.len(),
                });
            }
        }
    }
    assert_eq!(placed.len(), blocks.len(), "every block is hot, once");
    placed
}

fn hint_files(repo: &Path) -> Vec<PathBuf> {
    let mut hints = Vec::new();
    for shard in 0..SHARDS {
        let dir = repo.join(format!("blocks/shard-{shard:03}/segments"));
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "hint") {
                hints.push(path);
            }
        }
    }
    hints.sort();
    hints
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn flip(path: &Path, at: usize, bit: u8) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 1 << bit;
    std::fs::write(path, bytes).unwrap();
}

/// The CID as `repo verify` prints it: CIDv1 raw over the multihash.
fn listed(cid: &Cid) -> String {
    Cid::new_v1(Codec::Raw.code(), *cid.hash()).to_string()
}

/// Which part of a record a flip hits.
#[derive(Debug, Clone, Copy)]
enum Part {
    Header,
    Key,
    Payload,
}

/// Opens the damaged copy, verifies it and reads every block; panics with `what` on any
/// broken promise. `victim` is the block whose record holds the flip, if any.
fn check(repo: &Path, blocks: &[Placed], victim: Option<&Placed>, what: &str) {
    let engine = Engine::open(config(&repo.join("blocks")))
        .unwrap_or_else(|e| panic!("{what}: the store must open: {e}"));
    let report = ipfrs_tools::store::verify::verify(
        &engine,
        || Ok(block_on(engine.damage())?),
        Some(blocks.len() as u64),
    )
    .unwrap_or_else(|e| panic!("{what}: verify failed: {e}"));
    for block in blocks {
        let got = block_on(engine.get(&block.cid));
        let is_victim = victim.is_some_and(|v| v.cid == block.cid);
        match got {
            Ok(Some(data)) if data[..] == block.data[..] && !is_victim => {}
            Ok(Some(data)) if data[..] != block.data[..] => {
                panic!("{what}: {} served wrong bytes", block.cid)
            }
            Ok(Some(_)) => panic!("{what}: the damaged record was served"),
            Err(Error::Corrupt { .. }) | Ok(None) if is_victim => {}
            other => panic!("{what}: undamaged {} read as {other:?}", block.cid),
        }
    }
    match victim {
        Some(victim) => {
            assert_eq!(
                report.corrupt,
                vec![listed(&victim.cid)],
                "{what}: verify must name the damaged block and only it: {report:?}"
            );
            assert!(report.missing.is_empty(), "{what}: {report:?}");
            let site = format!("hot segment {} at offset {}", victim.segment, victim.offset);
            for place in &report.damaged {
                let here = place.shard == victim.shard && place.site == site;
                let names_it = place.cid.as_deref() == Some(&listed(&victim.cid)[..]);
                assert!(
                    here || names_it,
                    "{what}: damage reported elsewhere: {place:?}"
                );
            }
            assert!(!report.is_clean());
        }
        None => assert!(report.is_clean(), "{what}: {report:?}"),
    }
    block_on(engine.close()).unwrap();
}

/// `ipfrs-store repo verify` on a damaged copy: exit code 1 and the CID in its report.
fn check_cli(repo: &Path, victim: &Placed, what: &str) {
    let out = store_bin()
        .args(["--repo", repo.to_str().unwrap(), "repo", "verify"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{what}: {text}");
    assert!(
        text.contains(&format!("corrupt {}", listed(&victim.cid))),
        "{what}: {text}"
    );
}

#[test]
fn every_single_bit_flip_is_reported_and_costs_only_its_block() {
    let seed: u64 = std::env::var("IPFRS_BITROT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let trials: usize = std::env::var("IPFRS_BITROT_TRIALS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(48);
    let mut rng = StdRng::seed_from_u64(seed);
    let root = tempfile::tempdir().unwrap();
    let blocks = pristine(root.path(), &mut rng);
    let pristine_repo = root.path().join("repo");
    let placed = placements(&pristine_repo, &blocks);
    let hints = hint_files(&pristine_repo);
    assert!(!hints.is_empty(), "the store must have sealed segments");
    let sealed = |p: &Placed| {
        hints
            .iter()
            .any(|h| h.with_extension("seg") == p.segment_file)
    };
    assert!(placed.iter().any(sealed) && !placed.iter().all(sealed));

    let mut parts_hit = [0usize; 4];
    for trial in 0..trials {
        let copy = root.path().join(format!("trial-{trial}"));
        copy_dir(&pristine_repo, &copy);
        let bit = rng.random_range(0..8u8);
        let class = trial % 4;
        parts_hit[class] += 1;
        if class == 3 {
            let hint = &hints[rng.random_range(0..hints.len())];
            let len = std::fs::metadata(hint).unwrap().len() as usize;
            let at = rng.random_range(0..len);
            let file = copy.join(hint.strip_prefix(&pristine_repo).unwrap());
            flip(&file, at, bit);
            let what = format!("seed {seed} trial {trial}: hint {file:?} byte {at} bit {bit}");
            check(&copy, &placed, None, &what);
        } else {
            let part = [Part::Header, Part::Key, Part::Payload][class];
            let victim = &placed[rng.random_range(0..placed.len())];
            let (start, len) = match part {
                Part::Header => (victim.offset, HEADER_LEN),
                Part::Key => (victim.offset + HEADER_LEN, victim.key_len),
                Part::Payload => (
                    victim.offset + HEADER_LEN + victim.key_len,
                    victim.data.len(),
                ),
            };
            let at = start + rng.random_range(0..len);
            let file = copy.join(victim.segment_file.strip_prefix(&pristine_repo).unwrap());
            flip(&file, at, bit);
            let what = format!(
                "seed {seed} trial {trial}: {part:?} of {} ({}sealed) in {file:?} byte {at} bit {bit}",
                victim.cid,
                if sealed(victim) { "" } else { "not " }
            );
            check(&copy, &placed, Some(victim), &what);
            if trial < 6 {
                check_cli(&copy, victim, &what);
            }
        }
        std::fs::remove_dir_all(&copy).unwrap();
    }
    assert!(parts_hit.iter().all(|&n| n > 0), "{parts_hit:?}");
}
