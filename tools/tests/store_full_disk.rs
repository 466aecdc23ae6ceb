//! `ipfrs-store` on small loop-mounted ext4 filesystems: `init` on a filesystem too small for
//! a new store fails with a typed message naming what it needs and what is free, and leaves
//! nothing behind (nor when it fails half-way); on a filesystem big enough it succeeds. A
//! full disk is freed by `block rm` and `repo gc`, after which puts work again.
//!
//! Needs root (mkfs.ext4, mount -o loop). Where mounting is impossible the tests fail with
//! the reason, unless `IPFRS_ALLOW_NO_LOOP_MOUNT=1` is set, in which case they say loudly
//! that they did not run. Every child process runs under a watchdog: one that has not ended
//! within [`CHILD_LIMIT`] is killed and fails the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Longest any one `ipfrs-store` command may run before the test calls it hung.
const CHILD_LIMIT: Duration = Duration::from_secs(60);

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

/// Mounts a fresh ext4 image of `bytes` under `dir/mnt`; `mkfs_args` go to mkfs.ext4.
/// `None` (after saying so loudly) when mounting is impossible and the environment allows
/// skipping.
fn mount_ext4(dir: &Path, bytes: u64, mkfs_args: &[&str]) -> Option<Mount> {
    let mounted = (|| {
        let image = dir.join("disk.img");
        let point = dir.join("mnt");
        std::fs::create_dir_all(&point).map_err(|e| e.to_string())?;
        let file = std::fs::File::create(&image).map_err(|e| e.to_string())?;
        file.set_len(bytes).map_err(|e| e.to_string())?;
        drop(file);
        run(Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .args(mkfs_args)
            .arg(&image))?;
        run(Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(&point))?;
        Ok::<_, String>(Mount { point })
    })();
    match mounted {
        Ok(mount) => Some(mount),
        Err(reason) if std::env::var_os("IPFRS_ALLOW_NO_LOOP_MOUNT").is_some() => {
            eprintln!("\n*** full-disk test DID NOT RUN: {reason}\n");
            None
        }
        Err(reason) => panic!("cannot mount a loop ext4 image ({reason})"),
    }
}

/// Runs `ipfrs-store --repo <repo> <args>`, killing it and failing the test if it has not
/// ended within [`CHILD_LIMIT`].
fn store(repo: &Path, args: &[&str]) -> Output {
    let mut child = common::store_command(repo).args(args).spawn().unwrap();
    // Both pipes are drained while the child runs: a block written to stdout is larger than
    // a pipe's buffer, and a child blocked on a full pipe would look like a hang.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Output {
                status,
                stdout: stdout.join().unwrap(),
                stderr: stderr.join().unwrap(),
            };
        }
        if start.elapsed() > CHILD_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "ipfrs-store {args:?} hung for {CHILD_LIMIT:?} and was killed; stderr: {}",
                String::from_utf8_lossy(&stderr.join().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs and expects success; returns stdout.
fn ok(repo: &Path, args: &[&str]) -> String {
    let out = store(repo, args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs and expects exit code 1 with the error as the last line on stderr and no panic;
/// returns that line.
fn fails(repo: &Path, args: &[&str]) -> String {
    let out = store(repo, args);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // The error is the last line; before it only the engine's own notes (background
    // compaction on a full disk reports its failures).
    let last = stderr.lines().last().unwrap_or_default().to_string();
    assert!(last.starts_with("ipfrs-store: error: "), "{stderr}");
    assert!(
        stderr
            .lines()
            .rev()
            .skip(1)
            .all(|l| l.starts_with("ipfrs shard ")),
        "{args:?}: {stderr}"
    );
    last
}

/// An engine configuration file with small segments and reserve.
fn small_config(dir: &Path, segment_mib: u64, reserve_mib: u64) -> PathBuf {
    let path = dir.join(format!("small-{segment_mib}-{reserve_mib}.toml"));
    std::fs::write(
        &path,
        format!(
            "hot_segment_bytes = {}\nhot_budget_bytes = {}\nspace_reserve_bytes = {}\n",
            segment_mib << 20,
            (segment_mib << 20) * 4,
            reserve_mib << 20
        ),
    )
    .unwrap();
    path
}

#[test]
fn init_on_a_too_small_filesystem_fails_typed_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(mount) = mount_ext4(tmp.path(), 64 << 20, &[]) else {
        return;
    };
    let repo = mount.point.join("r");
    // The defaults (64 MiB segments, a reserve of one segment per shard) need 259 MiB for
    // two shards; the filesystem has about 58 MiB.
    let line = fails(&repo, &["init", "--shards", "2"]);
    for needle in [
        "not enough free space to initialize",
        "2 hot segments of 64.0 MiB",
        "a space reserve of 128.0 MiB",
        "is free",
    ] {
        assert!(line.contains(needle), "{line} lacks {needle:?}");
    }
    assert!(!repo.exists(), "init left {} behind", repo.display());
    // Nothing else was created on the filesystem either.
    let left: Vec<_> = std::fs::read_dir(&mount.point)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "lost+found")
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    // Just too small with 16 MiB segments and reserve (2 x 16 + 32 + 3 MiB > 58 MiB).
    let config = small_config(tmp.path(), 16, 32);
    let config = config.to_str().unwrap();
    let line = fails(&repo, &["--config", config, "init", "--shards", "2"]);
    assert!(line.contains("2 hot segments of 16.0 MiB"), "{line}");
    assert!(!repo.exists());
    // Big enough with 8 MiB segments and reserve: init succeeds and the store works.
    let config = small_config(tmp.path(), 8, 16);
    let config = config.to_str().unwrap();
    let out = ok(&repo, &["--config", config, "init", "--shards", "2"]);
    assert!(out.contains("initialized"), "{out}");
    let block = tmp.path().join("block");
    std::fs::write(&block, b"a block on a small disk").unwrap();
    let cid = ok(
        &repo,
        &["--config", config, "block", "put", block.to_str().unwrap()],
    );
    let got = store(
        &repo,
        &[
            "--config",
            config,
            "block",
            "get",
            cid.split_whitespace().next().unwrap(),
        ],
    );
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert_eq!(got.stdout, b"a block on a small disk");
    drop(mount);
}

#[test]
fn init_that_fails_half_way_removes_what_it_created() {
    let tmp = tempfile::tempdir().unwrap();
    // Plenty of bytes but only 48 inodes: the space check passes and creating the store's
    // files runs out of inodes part-way (a failure after init started creating).
    let Some(mount) = mount_ext4(tmp.path(), 48 << 20, &["-N", "16"]) else {
        return;
    };
    let config = small_config(tmp.path(), 8, 16);
    let config = config.to_str().unwrap();
    // Leave fewer free inodes than a two-shard store needs (about 20 files and directories),
    // but enough for it to start.
    let filler = mount.point.join("filler");
    std::fs::create_dir(&filler).unwrap();
    for i in 0.. {
        if std::fs::File::create(filler.join(i.to_string())).is_err() {
            break;
        }
    }
    for entry in std::fs::read_dir(&filler).unwrap().take(10) {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    let repo = mount.point.join("r");
    let out = store(&repo, &["--config", config, "init", "--shards", "2"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        !repo.exists(),
        "init left {} behind ({stderr})",
        repo.display()
    );
    // With the inodes back, init succeeds.
    std::fs::remove_dir_all(&filler).unwrap();
    ok(&repo, &["--config", config, "init", "--shards", "2"]);
    drop(mount);
}

/// Bytes in use on the filesystem holding `path` (root-reserved blocks count as free).
fn used_bytes(path: &Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a zeroed statvfs is a valid output buffer; statvfs reads the NUL-terminated
    // path and writes only the struct it is given.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut stat) }, 0);
    (stat.f_blocks - stat.f_bfree) * stat.f_frsize
}

/// A block of 256 KiB, distinct per `i`.
fn block_data(i: u32) -> Vec<u8> {
    let mut data: Vec<u8> = (0..256u32 << 10)
        .map(|j| (j.wrapping_mul(31) ^ i.wrapping_mul(7)) as u8)
        .collect();
    data[..4].copy_from_slice(&i.to_le_bytes());
    data
}

/// A disk filled through the library until puts fail with NoSpace is freed by `block rm` of
/// half the blocks and `repo gc`, and puts work again.
///
/// Run as root, this needs puts to stop while the space free for unprivileged writers
/// (f_bavail) still holds the headroom a compaction of one segment needs: root allocated new
/// hot segments from ext4's root-reserved blocks past every check before, and after `block
/// rm` no compaction step ever had the room it asked for.
#[test]
fn a_full_disk_is_freed_by_block_rm_and_repo_gc() {
    use ipfrs_storage::{Block, Engine, Error};
    let tmp = tempfile::tempdir().unwrap();
    let Some(mount) = mount_ext4(tmp.path(), 96 << 20, &[]) else {
        return;
    };
    let repo = mount.point.join("r");
    let config = small_config(tmp.path(), 8, 16);
    let config_path = config.to_str().unwrap().to_string();
    ok(&repo, &["--config", &config_path, "init", "--shards", "2"]);
    // Fill the disk through the library (background compaction runs: the budget is 32 MiB)
    // until puts fail with NoSpace, under a watchdog.
    let (tx, rx) = std::sync::mpsc::channel();
    let engine_config =
        ipfrs_storage::Config::from_toml_file(&config, repo.join("blocks")).unwrap();
    std::thread::spawn(move || {
        let engine = Engine::open(engine_config).unwrap();
        let store = engine.blocking();
        let mut acked = Vec::new();
        let mut refused = Vec::new();
        for i in 0..2000u32 {
            let block = Block::new(block_data(i)).unwrap();
            match store.put(&block) {
                Ok(()) => acked.push(*block.cid()),
                Err(Error::NoSpace { .. }) => {
                    refused.push(i);
                    if refused.len() >= 10 {
                        break;
                    }
                }
                Err(e) => panic!("expected NoSpace, got {e}"),
            }
        }
        store.close().unwrap();
        let _ = tx.send((acked, refused));
    });
    let (acked, refused) = rx
        .recv_timeout(CHILD_LIMIT)
        .expect("filling the disk hung or panicked");
    let no_space = refused.len();
    assert!(
        no_space >= 10,
        "the disk never filled ({} blocks)",
        acked.len()
    );
    assert!(acked.len() >= 40, "only {} blocks fit", acked.len());
    let full = used_bytes(&mount.point);
    // The CLI refuses puts too: a block the library was refused goes to a shard whose
    // active segment has no room for it, and whose new segment would take the room kept for
    // freeing space (a block routed to a shard with room left in its active segment could
    // still be stored).
    let extra = tmp.path().join("extra");
    std::fs::write(&extra, block_data(refused[refused.len() - 1])).unwrap();
    let extra = extra.to_str().unwrap();
    fails(&repo, &["--config", &config_path, "block", "put", extra]);
    // Remove half the blocks with the store's own tools.
    let (gone, kept): (Vec<_>, Vec<_>) = acked.iter().enumerate().partition(|(i, _)| i % 2 == 0);
    let gone: Vec<String> = gone.iter().map(|(_, c)| c.to_string()).collect();
    for chunk in gone.chunks(50) {
        let mut args = vec!["--config", config_path.as_str(), "block", "rm"];
        args.extend(chunk.iter().map(String::as_str));
        ok(&repo, &args);
    }
    let pins = tmp.path().join("pins");
    let kept: Vec<String> = kept.iter().map(|(_, c)| c.to_string()).collect();
    std::fs::write(&pins, kept.join("\n")).unwrap();
    let out = ok(
        &repo,
        &[
            "--config",
            &config_path,
            "repo",
            "gc",
            "--pins",
            pins.to_str().unwrap(),
        ],
    );
    let freed = used_bytes(&mount.point);
    // What gc gives back goes first to the shards' reserves (taken back once space returns:
    // 2 x 8 MiB here), so the disk shows less freed than gc removed; what is left must still
    // hold half a segment, and the put below must succeed.
    if freed + (4 << 20) > full {
        let du = Command::new("du")
            .args(["-ak"])
            .arg(&repo)
            .output()
            .unwrap();
        panic!(
            "gc gave back too little: {full} bytes used before, {freed} after ({out})\n{}",
            String::from_utf8_lossy(&du.stdout)
        );
    }
    // Puts work again, and every kept block reads back.
    let put = store(&repo, &["--config", &config_path, "block", "put", extra]);
    if !put.status.success() {
        let du = Command::new("du")
            .args(["-ak"])
            .arg(&repo)
            .output()
            .unwrap();
        let stat = store(&repo, &["--config", &config_path, "--json", "repo", "stat"]);
        panic!(
            "a put after gc failed: {}\ngc said: {out}\n{full} bytes used before gc, {freed} \
             after\n{}\n{}",
            String::from_utf8_lossy(&put.stderr),
            String::from_utf8_lossy(&du.stdout),
            String::from_utf8_lossy(&stat.stdout)
        );
    }
    for cid in kept.iter().step_by(7) {
        let got = store(&repo, &["--config", &config_path, "block", "get", cid]);
        assert!(
            got.status.success(),
            "{}",
            String::from_utf8_lossy(&got.stderr)
        );
    }
    for cid in gone.iter().step_by(7) {
        fails(&repo, &["--config", &config_path, "block", "get", cid]);
    }
    drop(mount);
}
