//! A full disk: on a small loop-mounted ext4 image, writes fail with `Error::NoSpace` once no
//! new hot segment can be allocated, everything acknowledged before stays readable, the engine
//! keeps serving reads, and the store reopens.
//!
//! Needs root (mkfs.ext4, mount -o loop). Where mounting is impossible the test fails with the
//! reason, unless `IPFRS_ALLOW_NO_LOOP_MOUNT=1` is set, in which case it says loudly that it
//! did not run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use ipfrs_storage::{Block, Config, Durability, Engine, Error, HotTier};

/// The image's size: room for a few segments and the cold backend's files.
const IMAGE_BYTES: u64 = 40 << 20;

/// Unmounts on drop, so a failing assertion does not leave a mount behind.
struct Mount {
    point: PathBuf,
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.point).status();
    }
}

fn run(cmd: &mut Command) -> Result<(), String> {
    match cmd.output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Err(format!("{cmd:?} could not run: {e}")),
    }
}

fn mount_small_ext4(dir: &Path) -> Result<Mount, String> {
    let image = dir.join("disk.img");
    let point = dir.join("mnt");
    std::fs::create_dir_all(&point).map_err(|e| e.to_string())?;
    let file = std::fs::File::create(&image).map_err(|e| e.to_string())?;
    file.set_len(IMAGE_BYTES).map_err(|e| e.to_string())?;
    drop(file);
    run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image))?;
    run(Command::new("mount")
        .args(["-o", "loop"])
        .arg(&image)
        .arg(&point))?;
    Ok(Mount { point })
}

fn config(dir: &Path) -> Config {
    let mut config = Config::new(dir);
    config.shards = Some(1);
    config.durability = Durability::Sync;
    config.max_block_size = 64 << 10;
    // A budget far above the disk: the hot tier fills it before compaction would start.
    config.hot_tier = Some(HotTier {
        segment_bytes: 1 << 20,
        budget_bytes: 1 << 30,
        ..HotTier::default()
    });
    config
}

fn block(i: usize) -> Block {
    let data: Vec<u8> = (0..32 << 10).map(|j| (i * 7 + j * 13) as u8).collect();
    Block::new([data, (i as u64).to_le_bytes().to_vec()].concat()).unwrap()
}

#[test]
fn a_full_disk_fails_writes_cleanly_and_keeps_everything_acknowledged() {
    let tmp = tempfile::tempdir().unwrap();
    let mount = match mount_small_ext4(tmp.path()) {
        Ok(mount) => mount,
        Err(reason) if std::env::var_os("IPFRS_ALLOW_NO_LOOP_MOUNT").is_some() => {
            eprintln!(
                "\n*** full-disk test DID NOT RUN: cannot mount a loop ext4 image: {reason}\n"
            );
            return;
        }
        Err(reason) => panic!(
            "cannot mount a loop ext4 image ({reason}); run as root, or set \
             IPFRS_ALLOW_NO_LOOP_MOUNT=1 to skip this test knowingly"
        ),
    };
    let store_dir = mount.point.join("store");
    // Space someone else holds, freed later to show that writing resumes.
    let filler = mount.point.join("filler");
    std::fs::write(&filler, vec![1u8; 4 << 20]).unwrap();
    let engine = Engine::open(config(&store_dir)).unwrap();
    let store = engine.blocking();
    let mut acked = Vec::new();
    let mut failure = None;
    for batch in 0..1000 {
        let blocks: Vec<Block> = (batch * 4..batch * 4 + 4).map(block).collect();
        match store.put_many(&blocks) {
            Ok(()) => acked.extend(blocks),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let failure = failure.expect("a 40 MiB disk must fill up");
    assert!(
        matches!(failure, Error::NoSpace { .. }),
        "expected NoSpace, got {failure}"
    );
    assert!(failure.to_string().contains("no space left"), "{failure}");
    assert!(acked.len() > 100, "only {} blocks fit", acked.len());

    // Reads keep working, every acknowledged block is intact, and the shard is not read-only:
    // a later write fails the same clean way.
    for b in &acked {
        assert_eq!(store.get(b.cid()).unwrap().as_ref(), Some(b.data()));
    }
    let stats = store.stats().unwrap();
    assert_eq!(stats.blocks, acked.len() as u64);
    assert!(!stats.shards[0].read_only);
    // A later write fails the same clean way, unless background compaction has given space
    // back meanwhile (a compacted segment's unwritten tail is punched out when it becomes a
    // pack): then it is stored like any other.
    let again = block(1_000_000);
    match store.put(&again) {
        Err(Error::NoSpace { .. }) => {}
        Ok(()) => acked.push(again),
        other => panic!("expected NoSpace or a stored block, got {other:?}"),
    }
    // Once space is freed, the same engine takes writes again.
    std::fs::remove_file(&filler).unwrap();
    let late = block(2_000_000);
    store.put(&late).unwrap();
    acked.push(late);
    store.close().unwrap();
    drop(store);
    drop(engine);

    // The store reopens on the full disk with everything acknowledged.
    let engine = Engine::open(config(&store_dir)).unwrap();
    let store = engine.blocking();
    let cids: Vec<_> = acked.iter().map(|b| *b.cid()).collect();
    for (b, got) in acked.iter().zip(store.get_many(&cids).unwrap()) {
        assert_eq!(got.as_ref(), Some(b.data()));
    }
    store.close().unwrap();
    drop(store);
    drop(engine);
    drop(mount);
}

/// Runs `f` on a thread and fails the test if it has not returned within `limit` (a hang
/// fails instead of hanging CI; the stuck thread is left behind).
fn within<T: Send + 'static>(
    what: &str,
    limit: std::time::Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("{what} did not return within {limit:?}"))
}

/// A budget below the disk, so background compaction moves blocks into the cold backend
/// while the disk fills; the reserve is one segment.
fn compacting_config(dir: &Path) -> Config {
    let mut config = config(dir);
    config.hot_tier = Some(HotTier {
        segment_bytes: 1 << 20,
        budget_bytes: 4 << 20,
        keep_hot_reads: 0,
        ..HotTier::default()
    });
    config.space_reserve_bytes = Some(2 << 20);
    config
}

#[test]
fn compaction_and_deletes_on_a_full_disk_never_hang_and_close_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let mount = match mount_small_ext4(tmp.path()) {
        Ok(mount) => mount,
        Err(reason) if std::env::var_os("IPFRS_ALLOW_NO_LOOP_MOUNT").is_some() => {
            eprintln!("\n*** full-disk test DID NOT RUN: {reason}\n");
            return;
        }
        Err(reason) => panic!("cannot mount a loop ext4 image ({reason})"),
    };
    let store_dir = mount.point.join("store");
    let limit = std::time::Duration::from_secs(60);
    let engine = Engine::open(compacting_config(&store_dir)).unwrap();
    // Fill the disk while background compaction runs; every put either succeeds or fails
    // with NoSpace, none hangs.
    let (engine, acked) = within("filling the disk", limit, move || {
        let store = engine.blocking();
        let mut acked = Vec::new();
        let mut no_space = 0;
        for batch in 0..1000 {
            let blocks: Vec<Block> = (batch * 4..batch * 4 + 4).map(block).collect();
            match store.put_many(&blocks) {
                Ok(()) => acked.extend(blocks),
                Err(Error::NoSpace { .. }) => {
                    no_space += 1;
                    if no_space >= 20 {
                        break;
                    }
                }
                Err(e) => panic!("expected NoSpace, got {e}"),
            }
        }
        assert!(no_space >= 20, "a 40 MiB disk must fill up");
        drop(store);
        (engine, acked)
    });
    assert!(acked.len() > 100, "only {} blocks fit", acked.len());
    let stats = engine.blocking().stats().unwrap();
    assert!(
        stats.compaction_cold_bytes > 0,
        "compaction never ran: {stats:?}"
    );
    // Deletes on the full disk go through (the reserve is released for them), and an
    // explicit compaction ends, with success or NoSpace, never hanging.
    let (engine, kept) = within("deleting and compacting", limit, move || {
        let store = engine.blocking();
        let (gone, kept): (Vec<_>, Vec<_>) =
            acked.into_iter().enumerate().partition(|(i, _)| i % 2 == 0);
        let cids: Vec<_> = gone.iter().map(|(_, b)| *b.cid()).collect();
        store.delete_many(&cids).unwrap();
        match futures_lite::future::block_on(engine.compact()) {
            Ok(_) | Err(Error::NoSpace { .. }) => {}
            Err(e) => panic!("expected success or NoSpace, got {e}"),
        }
        for (_, b) in &gone {
            assert_eq!(store.get(b.cid()).unwrap(), None);
        }
        drop(store);
        (engine, kept.into_iter().map(|(_, b)| b).collect::<Vec<_>>())
    });
    // Close returns, and everything kept reads back after a reopen.
    within("close", limit, move || {
        engine.blocking().close().unwrap();
    });
    let engine = Engine::open(compacting_config(&store_dir)).unwrap();
    let store = engine.blocking();
    for b in &kept {
        assert_eq!(store.get(b.cid()).unwrap().as_ref(), Some(b.data()));
    }
    store.close().unwrap();
    drop(store);
    drop(engine);
    drop(mount);
}
