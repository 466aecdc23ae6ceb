//! `ipfrs-store` end to end: the binary on temporary repositories, every subcommand, JSON
//! output parsed, and bad input answered with one line and a non-zero exit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use bytes::Bytes;
use futures_lite::future::block_on;
use ipfrs_storage::key::parse_cid;
use ipfrs_storage::{
    Block, BlockStore, Cid, CidPage, Config, Cursor, Engine, HashAlgorithm, Stats,
};
use serde_json::Value;

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ipfrs-store"));
    // Never fall back to the user's own repository.
    cmd.env_remove("IPFRS_STORE_REPO")
        .env_remove("XDG_DATA_HOME")
        .env("HOME", "/nonexistent-home-for-tests");
    cmd
}

fn run_in(repo: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = bin();
    cmd.arg("--repo").arg(repo).args(args);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(data) = stdin {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(data).unwrap();
    }
    child.wait_with_output().unwrap()
}

/// Runs and expects success; returns stdout.
fn ok(repo: &Path, args: &[&str]) -> String {
    let out = run_in(repo, args, None);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json(repo: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&ok(repo, &all)).unwrap()
}

/// Runs and expects failure with exactly one line on stderr, naming `needle`, and no panic.
fn fails(repo: &Path, args: &[&str], needle: &str) -> i32 {
    let out = run_in(repo, args, None);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(!out.status.success(), "{args:?} succeeded");
    assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
    assert!(stderr.starts_with("ipfrs-store: error: "), "{stderr}");
    assert!(
        stderr.contains(needle),
        "{args:?}: {stderr} lacks {needle:?}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    out.status.code().unwrap()
}

fn new_repo() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let init = json(&repo, &["init", "--shards", "2"]);
    assert_eq!(init["shards"], 2);
    (dir, repo)
}

fn ls(repo: &Path) -> Vec<String> {
    let v = json(repo, &["block", "ls"]);
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect()
}

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/car/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The CID a block is listed under: CIDv1 raw of its multihash.
fn listed(cid: &str) -> String {
    let cid = parse_cid(cid).unwrap();
    Cid::new_v1(0x55, *cid.hash()).to_string()
}

#[test]
fn init_creates_the_layout_and_refuses_twice() {
    let (_dir, repo) = new_repo();
    assert!(repo.join("blocks").is_dir());
    fails(&repo, &["init"], "already initialized");
    let stat = json(&repo, &["repo", "stat"]);
    assert_eq!(stat["blocks"], 0);
    assert_eq!(stat["shards"].as_array().unwrap().len(), 2);
}

#[test]
fn init_records_the_backend_and_a_bad_one_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("pdb");
    let init = json(&repo, &["init", "--backend", "parity-db", "--shards", "1"]);
    assert_eq!(init["backend"], "parity-db");
    assert_eq!(init["shards"], 1);
    ok(&repo, &["block", "ls"]);
    let config = std::fs::read_to_string(repo.join("config.toml")).unwrap();
    assert!(config.contains("backend = \"parity-db\""), "{config}");

    // A configuration file in force wins over nothing: a contradicting flag is refused.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("config.toml"), "backend = \"sled\"\n").unwrap();
    fails(&other, &["init", "--backend", "parity-db"], "contradicts");
    assert!(!other.join("blocks").exists());

    let bad = dir.path().join("bad");
    assert_eq!(fails(&bad, &["init", "--backend", "lmdb"], "lmdb"), 2);
    assert!(!bad.exists());
}

#[test]
fn progress_and_noise_stay_off_a_piped_stderr() {
    let (_dir, repo) = new_repo();
    let car = fixture("sample-v1.car");
    for args in [
        vec!["car", "import", car.as_str()],
        vec!["repo", "verify"],
        vec![
            "repo",
            "gc",
            "bafy2bzaced4ueelaegfs5fqu4tzsh6ywbbpfk3cxppupmxfdhbpbhzawfw5oy",
        ],
    ] {
        let out = run_in(&repo, &args, None);
        assert!(out.status.success());
        assert!(
            out.stderr.is_empty(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn block_put_get_stat_ls_rm() {
    let (dir, repo) = new_repo();
    let file = dir.path().join("data");
    std::fs::write(&file, b"some block bytes").unwrap();
    let put = json(&repo, &["block", "put", file.to_str().unwrap()]);
    let cid = put["cid"].as_str().unwrap().to_string();
    assert_eq!(
        cid,
        Block::new(&b"some block bytes"[..])
            .unwrap()
            .cid()
            .to_string()
    );
    assert_eq!(put["size"], 16);

    assert_eq!(
        ok(&repo, &["block", "get", &cid]).as_bytes(),
        b"some block bytes"
    );
    let out = dir.path().join("out");
    ok(&repo, &["block", "get", &cid, "-o", out.to_str().unwrap()]);
    assert_eq!(std::fs::read(&out).unwrap(), b"some block bytes");
    assert_eq!(json(&repo, &["block", "stat", &cid])["size"], 16);
    assert_eq!(ls(&repo), vec![cid.clone()]);
    assert!(ok(&repo, &["block", "ls"]).contains(&cid));

    let rm = json(&repo, &["block", "rm", &cid]);
    assert_eq!(rm["removed"][0], cid.as_str());
    fails(&repo, &["block", "stat", &cid], "not in the store");
    assert!(ls(&repo).is_empty());
}

#[test]
fn block_put_from_stdin_with_every_hash_and_a_codec() {
    let (_dir, repo) = new_repo();
    // An empty DAG-CBOR map: valid dag-cbor, so the codec check accepts it.
    let data = [0xa0u8];
    for hash in HashAlgorithm::ALL {
        let out = run_in(
            &repo,
            &[
                "--json",
                "block",
                "put",
                "--cid-codec",
                "dag-cbor",
                "--mhtype",
                hash.name(),
            ],
            Some(&data),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let cid = parse_cid(v["cid"].as_str().unwrap()).unwrap();
        assert_eq!(cid.codec(), 0x71);
        assert_eq!(cid.hash().code(), hash.multihash_code(), "{hash}");
        let got = run_in(&repo, &["block", "get", &cid.to_string()], None);
        assert_eq!(got.stdout, data, "{hash}");
    }
    // Identity blocks are answered from the CID and never stored.
    assert_eq!(ls(&repo).len(), HashAlgorithm::ALL.len() - 1);
}

#[test]
fn block_put_refuses_data_that_does_not_decode_as_its_codec() {
    let (dir, repo) = new_repo();
    let file = dir.path().join("junk");
    std::fs::write(&file, [0xffu8, 0xff, 0xff]).unwrap();
    for codec in ["dag-pb", "dag-cbor"] {
        let f = file.to_str().unwrap();
        fails(
            &repo,
            &["block", "put", "--cid-codec", codec, f],
            "does not decode",
        );
    }
    fails(
        &repo,
        &[
            "block",
            "put",
            "--cid-codec",
            "nonsense",
            file.to_str().unwrap(),
        ],
        "unknown --cid-codec",
    );
    fails(
        &repo,
        &["block", "put", "--mhtype", "md5", file.to_str().unwrap()],
        "md5",
    );
    assert!(ls(&repo).is_empty());
}

#[test]
fn block_rm_of_an_absent_block_removes_nothing_unless_forced() {
    let (dir, repo) = new_repo();
    let file = dir.path().join("a");
    std::fs::write(&file, b"present").unwrap();
    let present = json(&repo, &["block", "put", file.to_str().unwrap()])["cid"]
        .as_str()
        .unwrap()
        .to_string();
    let absent = Block::new(&b"absent"[..]).unwrap().cid().to_string();
    fails(
        &repo,
        &["block", "rm", &present, &absent],
        "not in the store",
    );
    assert_eq!(ls(&repo), vec![present.clone()]);
    let rm = json(&repo, &["block", "rm", "--force", &present, &absent]);
    assert_eq!(rm["removed"][0], present.as_str());
    assert_eq!(rm["absent"][0], absent.as_str());
    assert!(ls(&repo).is_empty());
}

#[test]
fn repo_stat_json_adds_up_and_prometheus_parses() {
    let (_dir, repo) = new_repo();
    ok(&repo, &["car", "import", &fixture("simple-unixfs.car")]);
    let stat = json(&repo, &["repo", "stat"]);
    assert_eq!(stat["blocks"], 22);
    let shards = stat["shards"].as_array().unwrap();
    let sum: u64 = shards.iter().map(|s| s["blocks"].as_u64().unwrap()).sum();
    assert_eq!(sum, 22);
    let bytes: u64 = shards.iter().map(|s| s["bytes"].as_u64().unwrap()).sum();
    assert_eq!(stat["bytes"].as_u64().unwrap(), bytes);
    assert!(stat["bloom_bytes"].as_u64().unwrap() > 0);
    // Per tier: nothing compacted yet, so no packs and nothing in a bucket; the hot tier
    // holds every byte.
    let tiers = &stat["tiers"];
    assert_eq!(tiers["hot_bytes"].as_u64().unwrap(), bytes);
    for field in [
        "packs",
        "pack_live_bytes",
        "pack_disk_bytes",
        "remote_packs",
        "remote_reads",
    ] {
        assert_eq!(tiers[field].as_u64(), Some(0), "{field}: {tiers}");
    }

    let text = ok(&repo, &["repo", "stat", "--prometheus"]);
    assert!(text.contains("ipfrs_blocks 22\n"), "{text}");
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (name, value) = line.rsplit_once(' ').unwrap();
        assert!(value.parse::<f64>().is_ok(), "{line}");
        assert!(name.starts_with("ipfrs_"), "{line}");
    }
    let human = ok(&repo, &["repo", "stat"]);
    assert!(human.contains("blocks     22"), "{human}");
    assert!(
        human.contains("packs      0 (0 only in the bucket)"),
        "{human}"
    );
}

#[test]
fn gc_keeps_what_roots_and_pins_reach_and_removes_the_rest() {
    let (dir, repo) = new_repo();
    // Unpinned, so the roots here come from ROOT arguments and the pins file only.
    ok(
        &repo,
        &[
            "car",
            "import",
            "--pin-roots=false",
            &fixture("simple-unixfs.car"),
            &fixture("sample-v1.car"),
        ],
    );
    let extra = dir.path().join("extra");
    std::fs::write(&extra, b"unreachable").unwrap();
    let extra_cid = json(&repo, &["block", "put", extra.to_str().unwrap()])["cid"]
        .as_str()
        .unwrap()
        .to_string();
    let before = ls(&repo).len();

    fails(&repo, &["repo", "gc"], "no roots");
    assert_eq!(ls(&repo).len(), before);

    let unixfs_root = "QmPLPpnptHc1DMhJAWNYMTqBTqqRQNy5WsY7F9pZgsBfMT";
    let sample_root = "bafy2bzaced4ueelaegfs5fqu4tzsh6ywbbpfk3cxppupmxfdhbpbhzawfw5oy";
    std::fs::write(repo.join("pins"), format!("# pinned\n{unixfs_root}\n\n")).unwrap();

    let dry = json(&repo, &["repo", "gc", "--dry-run", sample_root]);
    assert_eq!(dry["removed"], 1);
    assert_eq!(ls(&repo).len(), before);

    let gc = json(&repo, &["repo", "gc", sample_root]);
    assert_eq!(gc["removed"], 1);
    let after = ls(&repo);
    assert_eq!(after.len(), before - 1);
    assert!(!after.contains(&extra_cid));
    assert!(after.contains(&listed(unixfs_root)));
    ok(&repo, &["repo", "verify"]);

    // With only the pins file, the sample DAG goes.
    let gc = json(&repo, &["repo", "gc"]);
    assert_eq!(gc["removed"].as_u64().unwrap() as usize, before - 1 - 22);
    assert_eq!(ls(&repo).len(), 22);

    let bad_pins = dir.path().join("bad-pins");
    std::fs::write(
        &bad_pins,
        "QmPLPpnptHc1DMhJAWNYMTqBTqqRQNy5WsY7F9pZgsBfMT\nnot-a-cid\n",
    )
    .unwrap();
    fails(
        &repo,
        &["repo", "gc", "--pins", bad_pins.to_str().unwrap()],
        ":2: bad CID",
    );
    assert_eq!(ls(&repo).len(), 22);
}

#[test]
fn bad_input_gives_one_line_and_a_non_zero_exit() {
    let (dir, repo) = new_repo();
    let missing = dir.path().join("no-such-file");
    let m = missing.to_str().unwrap();
    assert_eq!(fails(&repo, &["block", "put", m], "no-such-file"), 1);
    fails(&repo, &["car", "import", m], "no-such-file");
    assert_eq!(
        fails(&repo, &["block", "stat", "bafyNOTACID"], "bad CID"),
        2
    );
    fails(&repo, &["block", "get", "zzz"], "bad CID");
    fails(
        &repo,
        &[
            "car",
            "export",
            "nope",
            "-o",
            dir.path().join("o.car").to_str().unwrap(),
        ],
        "bad CID",
    );
    assert_eq!(fails(&repo, &["block", "frobnicate"], "frobnicate"), 2);
    fails(&repo, &["car", "import"], "required");

    let uninit = dir.path().join("elsewhere");
    fails(&uninit, &["block", "ls"], "not an initialized repository");
    assert!(
        !uninit.exists(),
        "a failed command must not create the repository"
    );

    std::fs::write(
        repo.join("config.toml"),
        "cache_bytes = 1\ncache_byts = 2\n",
    )
    .unwrap();
    fails(&repo, &["repo", "stat"], "cache_byts");
    let other = dir.path().join("other.toml");
    std::fs::write(&other, "durability = \"sometimes\"\n").unwrap();
    fails(
        &repo,
        &["--config", other.to_str().unwrap(), "repo", "stat"],
        "sometimes",
    );
    fails(&repo, &["--config", m, "repo", "stat"], "no-such-file");
}

#[test]
fn config_file_limits_apply() {
    let (dir, repo) = new_repo();
    std::fs::write(
        repo.join("config.toml"),
        "max_block_size = 100\ndurability = \"sync\"\n",
    )
    .unwrap();
    let big = dir.path().join("big");
    std::fs::write(&big, vec![7u8; 200]).unwrap();
    fails(
        &repo,
        &["block", "put", big.to_str().unwrap()],
        "exceeds the limit of 100",
    );
    let small = dir.path().join("small");
    std::fs::write(&small, vec![7u8; 100]).unwrap();
    ok(&repo, &["block", "put", small.to_str().unwrap()]);
    assert_eq!(ls(&repo).len(), 1);
}

#[test]
fn the_environment_names_the_repository() {
    let (_dir, repo) = new_repo();
    let out = bin()
        .env("IPFRS_STORE_REPO", &repo)
        .args(["--json", "repo", "stat"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["repo"], repo.to_str().unwrap());
    // No --repo, no variable, no HOME: a usage error, not a guess.
    let out = bin()
        .env_remove("HOME")
        .args(["repo", "stat"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--repo"));
}

/// A store that serves wrong bytes for one block: stands in for on-disk corruption, which
/// sled gives no handle to inject (the hot tier's segment files will).
struct LyingStore {
    inner: Engine,
    victim: Cid,
}

impl BlockStore for LyingStore {
    async fn put_many(&self, blocks: &[Block]) -> ipfrs_storage::Result<()> {
        self.inner.put_many(blocks).await
    }
    async fn get_many(&self, cids: &[Cid]) -> ipfrs_storage::Result<Vec<Option<Bytes>>> {
        let mut found = self.inner.get_many(cids).await?;
        for (cid, data) in cids.iter().zip(&mut found) {
            if cid.hash() == self.victim.hash() {
                *data = Some(Bytes::from_static(b"flipped bits"));
            }
        }
        Ok(found)
    }
    async fn has_many(&self, cids: &[Cid]) -> ipfrs_storage::Result<Vec<bool>> {
        self.inner.has_many(cids).await
    }
    async fn get_size(&self, cid: &Cid) -> ipfrs_storage::Result<Option<u64>> {
        self.inner.get_size(cid).await
    }
    async fn delete_many(&self, cids: &[Cid]) -> ipfrs_storage::Result<Vec<bool>> {
        self.inner.delete_many(cids).await
    }
    async fn cid_page(&self, cursor: Cursor, limit: usize) -> ipfrs_storage::Result<CidPage> {
        self.inner.cid_page(cursor, limit).await
    }
    async fn stats(&self) -> ipfrs_storage::Result<Stats> {
        BlockStore::stats(&self.inner).await
    }
    async fn flush(&self) -> ipfrs_storage::Result<()> {
        BlockStore::flush(&self.inner).await
    }
    async fn close(&self) -> ipfrs_storage::Result<()> {
        BlockStore::close(&self.inner).await
    }
}

#[test]
fn verify_names_a_corrupt_block() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path());
    config.shards = Some(2);
    let engine = Engine::open(config).unwrap();
    let blocks: Vec<Block> = (0..300u32)
        .map(|i| Block::new(i.to_le_bytes().repeat(10)).unwrap())
        .collect();
    block_on(engine.put_many(&blocks)).unwrap();
    let victim = *blocks[123].cid();

    let damage = || Ok(block_on(engine.damage())?);
    let clean = ipfrs_tools::store::verify::verify(&engine, damage, None).unwrap();
    assert!(clean.is_clean());
    assert_eq!(clean.checked, 300);

    let lying = LyingStore {
        inner: engine.clone(),
        victim,
    };
    let report = ipfrs_tools::store::verify::verify(&lying, damage, None).unwrap();
    assert_eq!(report.checked, 300);
    assert_eq!(report.corrupt, vec![victim.to_string()]);
    assert!(!report.is_clean());
    block_on(BlockStore::close(&engine)).unwrap();
}

/// The first segment file holding `needle`, and where.
fn find_in_segments(repo: &Path, needle: &[u8]) -> Option<(PathBuf, usize)> {
    for shard in std::fs::read_dir(repo.join("blocks")).unwrap() {
        let segments = shard.unwrap().path().join("segments");
        let Ok(entries) = std::fs::read_dir(&segments) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            if let Some(at) = bytes.windows(needle.len()).position(|w| w == needle) {
                return Some((path, at));
            }
        }
    }
    None
}

#[test]
fn verify_names_a_block_damaged_on_disk_and_compact_moves_blocks_cold() {
    let (dir, repo) = new_repo();
    let good = dir.path().join("good");
    let bad = dir.path().join("bad");
    std::fs::write(&good, vec![7u8; 5000]).unwrap();
    let payload: Vec<u8> = (0..5000u32).map(|i| (i * 31 % 251) as u8).collect();
    std::fs::write(&bad, &payload).unwrap();
    let good_cid = json(&repo, &["block", "put", good.to_str().unwrap()])["cid"]
        .as_str()
        .unwrap()
        .to_string();
    let bad_cid = json(&repo, &["block", "put", bad.to_str().unwrap()])["cid"]
        .as_str()
        .unwrap()
        .to_string();
    let clean = json(&repo, &["repo", "verify"]);
    assert_eq!(clean["checked"], 2);

    // Flip a byte of the block's bytes inside its hot segment.
    let (segment, at) = find_in_segments(&repo, &payload).expect("the block is in a segment");
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[at + 100] ^= 0x01;
    std::fs::write(&segment, bytes).unwrap();
    let out = run_in(&repo, &["repo", "verify"], None);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("corrupt {}", listed(&bad_cid))),
        "{text}"
    );
    assert!(!text.contains(&listed(&good_cid)), "{text}");

    // compact: the intact block moves to the cold backend and still reads back.
    let compacted = json(&repo, &["repo", "compact"]);
    assert!(compacted["segments"].as_u64().unwrap() >= 1, "{compacted}");
    let stat = json(&repo, &["repo", "stat"]);
    assert_eq!(stat["tiers"]["hot_blocks"], 0, "{stat}");
    assert!(
        stat["tiers"]["cold_bytes"].as_u64().unwrap() >= 5000,
        "{stat}"
    );
    let out = dir.path().join("out");
    ok(
        &repo,
        &["block", "get", &good_cid, "-o", out.to_str().unwrap()],
    );
    assert_eq!(std::fs::read(&out).unwrap(), vec![7u8; 5000]);
}

#[test]
fn help_into_a_closed_pipe_is_not_a_panic() {
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut fds = [0; 2];
    // SAFETY: pipe writes two new descriptors into `fds`.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both descriptors were just created and nothing else owns them.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // As `ipfrs-store --help | head` when head has already exited: the write gets EPIPE.
    drop(read);
    let out = bin()
        .arg("--help")
        .stdout(Stdio::from(write))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
}
