//! Pins: kept in the engine's metadata across restarts, `car import` pins its roots, `repo gc`
//! keeps pinned DAGs (recursive) and blocks (direct), and gc run while puts are in flight
//! never removes a block whose put (and pin) was acknowledged.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod daemon_common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::json;
use daemon_common::cbor_node;
use futures_lite::future::block_on;
use ipfrs_storage::{Block, BlockStore, Cid, Config};
use ipfrs_tools::car::CarWriter;
use ipfrs_tools::daemon::Node;
use ipfrs_tools::store::repo::Repo;

/// A DAG: root -> mid -> two leaves; returns (all blocks, root first).
fn dag(tag: &str) -> Vec<Block> {
    let a = Block::new(format!("{tag} leaf a").into_bytes()).unwrap();
    let b = Block::new(format!("{tag} leaf b").into_bytes()).unwrap();
    let mid = cbor_node(&format!("{tag} mid"), &[*a.cid(), *b.cid()]);
    let root = cbor_node(tag, &[*mid.cid()]);
    vec![root, mid, a, b]
}

fn write_car(path: &Path, blocks: &[Block]) {
    let mut w = CarWriter::new(Vec::new(), &[*blocks[0].cid()]).unwrap();
    for b in blocks {
        w.write_block(b.cid(), b.data()).unwrap();
    }
    std::fs::write(path, w.finish().unwrap()).unwrap();
}

fn has(repo: &Path, cid: &Cid) -> bool {
    let out = common::run(repo, &["block", "stat", &cid.to_string()]);
    out.status.success()
}

#[test]
fn pins_survive_restarts_and_gc_keeps_what_they_reach() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let repo = repo.as_path();
    assert_eq!(json(repo, &["init", "--shards", "2"]).0, 0);

    // Imported with its root pinned (the default), and without.
    let pinned = dag("pinned");
    let unpinned = dag("unpinned");
    write_car(&dir.path().join("pinned.car"), &pinned);
    write_car(&dir.path().join("unpinned.car"), &unpinned);
    let car = dir.path().join("pinned.car");
    assert_eq!(json(repo, &["car", "import", car.to_str().unwrap()]).0, 0);
    let car = dir.path().join("unpinned.car");
    let (code, _) = json(
        repo,
        &["car", "import", "--pin-roots=false", car.to_str().unwrap()],
    );
    assert_eq!(code, 0);

    // A direct pin keeps its block alone: the leaves below `direct`'s root go.
    let direct = dag("direct");
    write_car(&dir.path().join("direct.car"), &direct);
    let car = dir.path().join("direct.car");
    let (code, _) = json(
        repo,
        &["car", "import", "--pin-roots=false", car.to_str().unwrap()],
    );
    assert_eq!(code, 0);
    let root = direct[0].cid().to_string();
    let (code, added) = json(repo, &["pin", "add", "--recursive=false", &root]);
    assert_eq!(code, 0, "{added}");

    // Every command is a new process: the pins were read back from the store.
    let (code, listed) = json(repo, &["pin", "ls"]);
    assert_eq!(code, 0);
    let mut listed: Vec<(String, String)> = listed["pins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["cid"].as_str().unwrap().to_string(),
                p["type"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    listed.sort();
    let mut want = vec![
        (pinned[0].cid().to_string(), "recursive".to_string()),
        (root.clone(), "direct".to_string()),
    ];
    want.sort();
    assert_eq!(listed, want);

    let (code, collected) = json(repo, &["repo", "gc"]);
    assert_eq!(code, 0, "{collected}");
    assert_eq!(collected["removed"], 4 + 3, "{collected}");
    for b in &pinned {
        assert!(has(repo, b.cid()), "pinned DAG lost {}", b.cid());
    }
    for b in &unpinned {
        assert!(!has(repo, b.cid()), "unpinned block kept {}", b.cid());
    }
    assert!(has(repo, direct[0].cid()));
    for b in &direct[1..] {
        assert!(!has(repo, b.cid()), "below a direct pin kept {}", b.cid());
    }

    // Unpinned, the DAG goes at the next gc; a recursive pin of an incomplete DAG is refused.
    let (code, _) = json(repo, &["pin", "rm", &pinned[0].cid().to_string()]);
    assert_eq!(code, 0);
    let out = common::run(repo, &["pin", "add", &root]);
    assert!(
        !out.status.success(),
        "a recursive pin over missing blocks must fail"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("not in the store"));
    let (code, collected) = json(repo, &["repo", "gc"]);
    assert_eq!(code, 0, "{collected}");
    assert!(!has(repo, pinned[0].cid()));
    assert!(has(repo, direct[0].cid()));
    // No pin, no root: the CLI refuses rather than empty the store.
    let (code, _) = json(repo, &["pin", "rm", &root]);
    assert_eq!(code, 0);
    let out = common::run(repo, &["repo", "gc"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no roots"));
}

/// gc runs while the writers put: each one a chance for a put to land between mark and sweep.
const ROUNDS: usize = 8;

#[test]
fn gc_during_puts_never_removes_an_acknowledged_pinned_block() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path().join("blocks"));
    config.shards = Some(2);
    let engine = ipfrs_storage::Engine::open(config).unwrap();
    let repo = Repo::locate(Some(dir.path().to_path_buf()), None).unwrap();
    let node = Arc::new(Node::new(repo, engine));
    let stop = Arc::new(AtomicBool::new(false));

    // Writers put and pin blocks as fast as they can; each keeps the CIDs acknowledged.
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (node, stop) = (node.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) || acked.len() < 50 {
                    let block = Block::new(format!("writer {w} block {i}").into_bytes()).unwrap();
                    block_on(node.put_block(&block, true)).unwrap();
                    acked.push(*block.cid());
                    i += 1;
                }
                acked
            })
        })
        .collect();
    // Unpinned blocks to be swept, so every gc has work.
    let mut gcs = 0;
    for round in 0..ROUNDS {
        let junk: Vec<Block> = (0..50)
            .map(|i| Block::new(format!("junk {round} {i}").into_bytes()).unwrap())
            .collect();
        block_on(node.engine().put_many(&junk)).unwrap();
        let collected = node.gc(false).unwrap();
        assert!(collected.removed >= 50, "{collected:?}");
        gcs += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let acked: Vec<Cid> = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    assert_eq!(gcs, ROUNDS);
    let present = block_on(node.engine().has_many(&acked)).unwrap();
    let lost: Vec<_> = acked
        .iter()
        .zip(&present)
        .filter(|(_, p)| !**p)
        .map(|(c, _)| c.to_string())
        .collect();
    assert!(
        lost.is_empty(),
        "gc removed acknowledged pinned blocks: {lost:?}"
    );
    block_on(node.engine().close()).unwrap();
}

/// A reader that says when it is first read, then waits for a signal before its first byte.
struct Gated {
    reading: std::sync::mpsc::Sender<()>,
    gate: std::sync::mpsc::Receiver<()>,
    opened: bool,
    data: std::io::Cursor<Vec<u8>>,
}

impl std::io::Read for Gated {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if !self.opened {
            let _ = self.reading.send(());
            let _ = self.gate.recv();
            self.opened = true;
        }
        self.data.read(buf)
    }
}

#[test]
fn a_failed_import_does_not_roll_back_blocks_another_import_pinned() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path().join("blocks"));
    config.shards = Some(2);
    let engine = ipfrs_storage::Engine::open(config).unwrap();
    let repo = Repo::locate(Some(dir.path().to_path_buf()), None).unwrap();
    let node = Arc::new(Node::new(repo, engine));

    // Both CARs hold the shared block X; A's ends with a corrupt block, so A fails after
    // storing (and journaling as new) X.
    let x = Block::new(&b"the block both imports hold"[..]).unwrap();
    let y = Block::new(&b"a block whose last byte is flipped"[..]).unwrap();
    let root_a = cbor_node("a", &[*x.cid(), *y.cid()]);
    let root_b = cbor_node("b", &[*x.cid()]);
    let mut car_a = {
        let mut w = CarWriter::new(Vec::new(), &[*root_a.cid()]).unwrap();
        for b in [&root_a, &x, &y] {
            w.write_block(b.cid(), b.data()).unwrap();
        }
        w.finish().unwrap()
    };
    let last = car_a.len() - 1;
    car_a[last] ^= 1;
    let car_b = {
        let mut w = CarWriter::new(Vec::new(), &[*root_b.cid()]).unwrap();
        for b in [&root_b, &x] {
            w.write_block(b.cid(), b.data()).unwrap();
        }
        w.finish().unwrap()
    };

    // B starts first and holds the writers' side of the gc lock while it waits for its
    // input, so A's rollback (which takes gc's side) can only run after B pinned its root.
    let (open_b, gate) = std::sync::mpsc::channel();
    let (reading, b_is_reading) = std::sync::mpsc::channel();
    let b = {
        let node = node.clone();
        std::thread::spawn(move || {
            let input = Gated {
                reading,
                gate,
                opened: false,
                data: std::io::Cursor::new(car_b),
            };
            node.import_car(input, true).unwrap()
        })
    };
    // B holds the lock once it reads its input (the lock is taken before the first read).
    b_is_reading.recv().unwrap();
    assert!(!block_on(node.engine().has(x.cid())).unwrap());
    let a = {
        let node = node.clone();
        std::thread::spawn(move || node.import_car(std::io::Cursor::new(car_a), true))
    };
    // A stored X (and will fail on its last block): now let B import X and pin its root.
    while !block_on(node.engine().has(x.cid())).unwrap() {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    open_b.send(()).unwrap();
    let imported_b = b.join().unwrap();
    assert_eq!(imported_b.roots[0].error, "");
    assert!(a.join().unwrap().is_err(), "A's corrupt block must fail it");

    let engine = node.engine();
    assert!(
        block_on(engine.has(x.cid())).unwrap(),
        "A's rollback removed X, which B's pinned DAG holds"
    );
    assert!(block_on(engine.has(root_b.cid())).unwrap());
    assert!(
        !block_on(engine.has(root_a.cid())).unwrap(),
        "A was not rolled back"
    );
    block_on(engine.close()).unwrap();
}

#[test]
fn crash_recovery_of_an_import_keeps_what_pins_reach() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path().join("blocks"));
    config.shards = Some(2);
    let engine = ipfrs_storage::Engine::open(config).unwrap();
    let x = Block::new(&b"shared by a dead import and a pinned DAG"[..]).unwrap();
    let only_dead = Block::new(&b"only the dead import had this"[..]).unwrap();
    let root_dead = cbor_node("dead", &[*x.cid(), *only_dead.cid()]);
    let car_dead = {
        let mut w = CarWriter::new(Vec::new(), &[*root_dead.cid()]).unwrap();
        for b in [&root_dead, &x, &only_dead] {
            w.write_block(b.cid(), b.data()).unwrap();
        }
        w.finish().unwrap()
    };
    // An import that stored its blocks and died before its commit: its journal stays.
    let journal_dir = ipfrs_tools::store::import::journal_dir(&engine);
    let mut import = ipfrs_tools::import::Import::begin(
        &engine,
        &journal_dir,
        ipfrs_tools::import::ImportOptions::for_store(engine.config()),
    )
    .unwrap();
    import.add(std::io::Cursor::new(car_dead), &|_| {}).unwrap();
    drop(import);
    // Meanwhile another client's DAG holding X was pinned.
    let root_live = cbor_node("live", &[*x.cid()]);
    block_on(engine.put(&root_live)).unwrap();
    block_on(ipfrs_tools::daemon::pins::add(
        &engine,
        root_live.cid(),
        ipfrs_tools::daemon::pins::PinKind::Recursive,
    ))
    .unwrap();

    ipfrs_tools::store::import::recover_interrupted(&engine).unwrap();
    assert!(
        block_on(engine.has(x.cid())).unwrap(),
        "recovery removed a pinned DAG's block"
    );
    assert!(!block_on(engine.has(only_dead.cid())).unwrap());
    assert!(!block_on(engine.has(root_dead.cid())).unwrap());
    block_on(engine.close()).unwrap();
}
