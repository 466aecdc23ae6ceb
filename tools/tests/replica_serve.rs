//! `ipfrs-store replica serve` end to end: a primary engine whose packs go to a directory
//! bucket (`file://`, configured by the same TOML file the replica reads) holds a UnixFS
//! file; a replica gateway child process on that bucket serves its blocks raw and as a CAR,
//! byte for byte, refuses writes, serves a block the primary adds later once a refresh has
//! seen it, and stops cleanly on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod daemon_common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use daemon_common::{agent, get, lines_of, read_car, unixfs};
use futures_lite::future::block_on;
use ipfrs_storage::{Block, BlockStore, Config, Engine, Replica, Stats};

/// How long the replica may take to say it is ready, and a refresh to show a new block.
const WAIT: Duration = Duration::from_secs(40);

/// The configuration both sides read: small hot segments so a few MiB seal and pack them,
/// no pack kept locally, and the bucket.
fn write_config(dir: &Path) -> std::path::PathBuf {
    let bucket_root = dir.join("s3");
    std::fs::create_dir_all(bucket_root.join("packs-bucket")).unwrap();
    let path = dir.join("replica.toml");
    std::fs::write(
        &path,
        format!(
            "shards = 2\n\
             max_block_size = 262144\n\
             hot_segment_bytes = 1048576\n\
             hot_budget_bytes = 8388608\n\
             hot_keep_reads = 0\n\
             hot_promote_after_reads = 0\n\
             \n\
             [remote]\n\
             bucket = \"packs-bucket\"\n\
             endpoint = \"file://{}\"\n\
             prefix = \"store-a\"\n\
             local_pack_bytes = 0\n\
             delete_grace = 0\n\
             range_cache_bytes = 0\n",
            bucket_root.display()
        ),
    )
    .unwrap();
    path
}

fn stats(engine: &Engine) -> Stats {
    engine.blocking().stats().unwrap()
}

/// Puts `blocks`, then 4 MiB of filler (so their segments are sealed), compacts, and waits
/// (at most 60 s) until a new pack is uploaded and none is only local.
fn put_and_upload(engine: &Engine, blocks: &[Block], seed: u32) {
    let before = stats(engine).remote_uploads;
    let filler: Vec<Block> = (0..64u32)
        .map(|i| {
            let fill = format!("filler {seed} {i} ");
            Block::new(fill.repeat((64 << 10) / fill.len() + 1)[..64 << 10].to_string()).unwrap()
        })
        .collect();
    for chunk in blocks.chunks(20).chain(filler.chunks(16)) {
        block_on(engine.put_many(chunk)).unwrap();
    }
    block_on(engine.compact()).unwrap();
    let start = Instant::now();
    loop {
        let s = stats(engine);
        if s.remote_uploads > before && s.remote_packs == s.packs && s.remote_manifests > 0 {
            assert_eq!(s.remote_failures, 0, "{s:?}");
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no upload: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Flips a byte in the middle of `data` where a `.pack` object under `bucket` holds it.
fn flip_byte_of(bucket: &Path, data: &[u8]) {
    let mut stack = vec![bucket.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "pack") {
                continue;
            }
            let mut bytes = std::fs::read(&path).unwrap();
            if let Some(at) = bytes.windows(data.len()).position(|w| w == data) {
                bytes[at + data.len() / 2] ^= 0x01;
                std::fs::write(&path, bytes).unwrap();
                return;
            }
        }
    }
    panic!("no pack holds the block");
}

/// Waits (at most 60 s, refreshing `replica`) until every block of `blocks` is in the
/// bucket's manifests: the premise of what the gateway is then asked.
fn wait_in_bucket(replica: &Replica, blocks: &[Block]) {
    let start = Instant::now();
    loop {
        replica.refresh().unwrap();
        let missing = blocks.iter().filter(|b| !replica.has(b.cid())).count();
        if missing == 0 {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{missing} of {} blocks never reached the bucket",
            blocks.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The replica gateway child (killed on drop).
struct Served {
    child: Option<Child>,
    /// `http://127.0.0.1:<port>`.
    base: String,
}

impl Served {
    fn start(config: &Path) -> Served {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ipfrs-store"))
            .env_remove("IPFRS_STORE_REPO")
            .env_remove("AWS_ENDPOINT_URL")
            .env("HOME", "/nonexistent-home-for-tests")
            .arg("--config")
            .arg(config)
            .args([
                "replica",
                "serve",
                "--gateway",
                "127.0.0.1:0",
                "--refresh-every",
                "1",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        // Owned from here, so a failure below still kills it.
        let mut served = Served {
            child: Some(child),
            base: String::new(),
        };
        let rx = lines_of(stdout);
        loop {
            let line = rx
                .recv_timeout(WAIT)
                .expect("the replica did not become ready");
            if line.starts_with("Gateway server listening on /ip4/127.0.0.1/tcp/") {
                let port = line.rsplit("/tcp/").next().unwrap();
                served.base = format!("http://127.0.0.1:{port}");
            } else if line == "Replica is ready" {
                assert!(
                    !served.base.is_empty(),
                    "ready before it printed its address"
                );
                return served;
            }
        }
    }

    /// SIGTERM; the exit status, within 30 s.
    fn stop(mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if start.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                panic!("the replica did not stop within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn a_replica_gateway_serves_the_primarys_blocks_and_cars_and_follows_it() {
    let dir = tempfile::tempdir().unwrap();
    let config_path = write_config(dir.path());
    let config = Config::from_toml_file(&config_path, dir.path().join("primary")).unwrap();
    let remote = config.remote.clone().unwrap().bucket;
    let engine = Engine::open(config).unwrap();

    // A UnixFS file of 40 chunks of 8 KiB under 4-way dag-pb nodes.
    let data = unixfs::file_bytes(40 * 8192, 3);
    let (root, file_blocks) = unixfs::file(&data, 8192, 4);
    put_and_upload(&engine, &file_blocks, 1);
    // The test's premise, checked in process: every block of the file is in the bucket.
    let local = Replica::open(remote.clone()).unwrap();
    wait_in_bucket(&local, &file_blocks);

    let served = Served::start(&config_path);
    for block in &file_blocks {
        let r = get(
            &format!("{}/ipfs/{}?format=raw", served.base, block.cid()),
            &[],
        );
        assert_eq!(
            r.status,
            200,
            "{}: {}",
            block.cid(),
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.body, block.data().as_ref(), "{}", block.cid());
    }
    let r = get(&format!("{}/ipfs/{root}?format=car", served.base), &[]);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let (roots, blocks) = read_car(&r.body);
    assert_eq!(roots, vec![root]);
    // Depth first from the root, each block once: the file's own order.
    let got: Vec<_> = blocks.iter().map(|b| *b.cid()).collect();
    let want: Vec<_> = file_blocks.iter().map(|b| *b.cid()).collect();
    assert_eq!(got, want);
    let rebuilt: Vec<u8> = blocks
        .iter()
        .filter(|b| b.cid().codec() == 0x55)
        .flat_map(|b| b.data().to_vec())
        .collect();
    assert_eq!(rebuilt, data, "the CAR's leaves are the file");

    // Read-only: a write method is refused, and nothing is stored by it.
    let late = Block::new(&b"a block the primary adds after the replica started"[..]).unwrap();
    let url = format!("{}/ipfs/{}?format=raw", served.base, late.cid());
    let put = agent()
        .post(&format!("{}/ipfs/", served.base))
        .send(late.data().as_ref())
        .unwrap();
    assert_eq!(put.status().as_u16(), 405);
    assert_eq!(get(&url, &[]).status, 404);

    // The primary adds a block; a refresh (every second) brings it to the gateway.
    put_and_upload(&engine, std::slice::from_ref(&late), 2);
    wait_in_bucket(&local, std::slice::from_ref(&late));
    let start = Instant::now();
    loop {
        let r = get(&url, &[]);
        if r.status == 200 {
            assert_eq!(r.body, late.data().as_ref());
            break;
        }
        assert_eq!(r.status, 404, "{}", String::from_utf8_lossy(&r.body));
        assert!(
            start.elapsed() < WAIT,
            "the replica did not serve the new block"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // A flipped byte in a pack object: that block is an error, never its bytes; the
    // others are still served. (The config keeps no read-ahead ranges: a range cached
    // before the flip, its records checked then, would serve the block from memory.)
    let leaves: Vec<&Block> = file_blocks
        .iter()
        .filter(|b| b.cid().codec() == 0x55)
        .collect();
    let (damaged, intact) = (leaves[3], leaves[4]);
    flip_byte_of(&dir.path().join("s3"), damaged.data());
    let r = get(
        &format!("{}/ipfs/{}?format=raw", served.base, damaged.cid()),
        &[],
    );
    assert_eq!(r.status, 500, "{}", String::from_utf8_lossy(&r.body));
    let text = String::from_utf8_lossy(&r.body);
    assert!(text.contains("corrupt"), "{text}");
    assert!(
        r.body.len() < damaged.len(),
        "the damaged bytes were served"
    );
    let r = get(
        &format!("{}/ipfs/{}?format=raw", served.base, intact.cid()),
        &[],
    );
    assert_eq!((r.status, &r.body[..]), (200, intact.data().as_ref()));

    let status = served.stop();
    assert!(status.success(), "{status:?}");
    block_on(engine.close()).unwrap();
}

#[test]
fn replica_serve_refuses_a_config_without_remote_and_a_public_address() {
    let dir = tempfile::tempdir().unwrap();
    let run = |config: &Path, extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_ipfrs-store"))
            .env("HOME", "/nonexistent-home-for-tests")
            .arg("--config")
            .arg(config)
            .args(["replica", "serve"])
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let plain = dir.path().join("plain.toml");
    std::fs::write(&plain, "shards = 2\n").unwrap();
    let out = run(&plain, &["--gateway", "127.0.0.1:0"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no [remote] section"), "{stderr}");

    let config = write_config(dir.path());
    let out = run(&config, &["--gateway", "0.0.0.0:0"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--allow-remote"), "{stderr}");

    let out = Command::new(env!("CARGO_BIN_EXE_ipfrs-store"))
        .env("HOME", "/nonexistent-home-for-tests")
        .args(["replica", "serve"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--config"), "{stderr}");
}
