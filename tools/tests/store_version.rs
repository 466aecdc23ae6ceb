//! `ipfrs-store version ...` end to end: the binary on temporary repositories, models written
//! as safetensors files with the safetensors crate, JSON output parsed, checkouts compared
//! byte for byte, and `repo gc` keeping every versioned block.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use safetensors::Dtype;
use safetensors::tensor::TensorView;
use serde_json::Value;

fn run_in(repo: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ipfrs-store"))
        .env_remove("IPFRS_STORE_REPO")
        .env_remove("XDG_DATA_HOME")
        .env("HOME", "/nonexistent-home-for-tests")
        .env("USER", "tester")
        .arg("--repo")
        .arg(repo)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok(repo: &Path, args: &[&str]) -> String {
    let out = run_in(repo, args);
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

/// Runs and expects failure: exactly one line on stderr naming `needle`, no panic; returns
/// the exit code.
fn fails(repo: &Path, args: &[&str], needle: &str) -> i32 {
    let out = run_in(repo, args);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(!out.status.success(), "{args:?} succeeded");
    assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
    assert!(stderr.starts_with("ipfrs-store: error: "), "{stderr}");
    assert!(
        stderr.contains(needle),
        "{args:?}: {stderr} lacks {needle:?}"
    );
    assert!(out.stdout.is_empty(), "{args:?} printed on stdout");
    out.status.code().unwrap()
}

/// Columns of the weight matrix: 4096 x 128 f32 is 2 MiB, two chunks of the default
/// 1 MiB, each holding 2048 rows.
const COLS: usize = 128;
const ROWS: usize = 4096;

/// A model: `w` (ROWS x COLS f32) and `b` (COLS f32).
struct Model {
    w: Vec<f32>,
    b: Vec<f32>,
}

impl Model {
    fn new(seed: f32) -> Model {
        Model {
            // Multiples of 1/4: sums and halves of them are exact in f32.
            w: (0..ROWS * COLS)
                .map(|i| ((i % 97) as f32 - 48.0) * 0.25 + seed)
                .collect(),
            b: (0..COLS).map(|i| i as f32 * 0.5).collect(),
        }
    }

    fn bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    /// Writes the model with the safetensors crate; returns the file's bytes.
    fn write(&self, path: &Path) -> Vec<u8> {
        let (w, b) = (Model::bytes(&self.w), Model::bytes(&self.b));
        let tensors = [
            (
                "w",
                TensorView::new(Dtype::F32, vec![ROWS, COLS], &w).unwrap(),
            ),
            ("b", TensorView::new(Dtype::F32, vec![COLS], &b).unwrap()),
        ];
        let bytes = safetensors::serialize(tensors, None).unwrap();
        std::fs::write(path, &bytes).unwrap();
        bytes
    }

    /// Reads `w` back from a safetensors file.
    fn read_w(path: &Path) -> Vec<f32> {
        let bytes = std::fs::read(path).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        st.tensor("w")
            .unwrap()
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    repo: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let repo = root.join("repo");
        Fixture {
            _dir: dir,
            root,
            repo,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn ok(&self, args: &[&str]) -> String {
        ok(&self.repo, args)
    }

    fn json(&self, args: &[&str]) -> Value {
        json(&self.repo, args)
    }

    /// Commits `model` on `branch`; returns the commit's CID and the file's bytes.
    fn commit(&self, model: &Model, branch: &str, message: &str) -> (String, Vec<u8>) {
        let file = self.path(&format!("{message}.safetensors"));
        let bytes = model.write(&file);
        let out = self.json(&[
            "version",
            "commit",
            file.to_str().unwrap(),
            "--branch",
            branch,
            "-m",
            message,
        ]);
        assert_eq!(out["branch"], branch);
        (out["commit"].as_str().unwrap().to_string(), bytes)
    }

    /// Checks out `args` (a revision and flags) to a new file; returns its bytes.
    fn checkout(&self, args: &[&str]) -> Vec<u8> {
        let out = self.path("checkout.safetensors");
        let mut all = vec!["version", "checkout"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", out.to_str().unwrap()]);
        self.ok(&all);
        let bytes = std::fs::read(&out).unwrap();
        std::fs::remove_file(&out).unwrap();
        bytes
    }
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect()
}

#[test]
fn commit_log_checkout_branch_tag_diff_blame() {
    let f = Fixture::new();
    let init = f.json(&["version", "init"]);
    assert_eq!(init["created_store"], true);
    // Refs live in the engine's metadata, not in files beside it.
    assert!(f.repo.join("blocks").is_dir() && !f.repo.join("refs").exists());
    assert_eq!(f.json(&["version", "init"])["created_store"], false);

    let dataset = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku";
    let v1 = Model::new(0.0);
    let file1 = f.path("v1.safetensors");
    let bytes1 = v1.write(&file1);
    let c1 = f.json(&[
        "version",
        "commit",
        file1.to_str().unwrap(),
        "--message",
        "first",
        "--author",
        "alice",
        "--dataset",
        dataset,
        "--param",
        "lr=3e-4",
        "--param",
        "epochs=2",
        "--meta",
        "run=a1",
    ]);
    assert_eq!(c1["branch"], "main");
    assert_eq!(c1["parents"], serde_json::json!([]));
    assert_eq!(c1["full"], 2);
    let c1 = c1["commit"].as_str().unwrap().to_string();

    // Rows 0..10 change: only the first of w's two chunks.
    let mut v2 = Model::new(0.0);
    for x in &mut v2.w[..10 * COLS] {
        *x += 1.5;
    }
    let (c2, bytes2) = f.commit(&v2, "main", "second");
    assert_ne!(c1, c2);

    let log = f.json(&["version", "log"]);
    let commits = log["commits"].as_array().unwrap();
    assert_eq!(commits.len(), 2);
    assert_eq!(commits[0]["cid"], c2.as_str());
    assert_eq!(strs(&commits[0]["parents"]), [c1.as_str()]);
    assert_eq!(commits[0]["author"], "tester");
    let first = &commits[1];
    assert_eq!(first["cid"], c1.as_str());
    assert_eq!(first["author"], "alice");
    assert_eq!(first["message"], "first");
    assert_eq!(strs(&first["provenance"]["datasets"]), [dataset]);
    assert_eq!(first["provenance"]["hyperparameters"]["lr"], "3e-4");
    assert_eq!(first["provenance"]["hyperparameters"]["epochs"], "2");
    assert_eq!(first["provenance"]["metadata"]["run"], "a1");
    let (t1, t2) = (
        first["timestamp_ms"].as_u64().unwrap(),
        commits[0]["timestamp_ms"].as_u64().unwrap(),
    );
    assert!(t2 > t1, "{t1} {t2}");
    assert_eq!(
        f.json(&["version", "log", "-n", "1"])["commits"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let text = f.ok(&["version", "log", "main"]);
    assert!(text.contains(&format!("commit {c1}")), "{text}");
    // Dates for people (RFC 3339, UTC, to the second); JSON keeps the milliseconds beside it.
    let date = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(t1),
    )
    .to_string();
    assert!(text.contains(&format!("Date:   {date}\n")), "{text}");
    assert!(!text.contains(" ms\n"), "{text}");
    assert_eq!(first["time"], date.as_str());
    assert!(text.contains("Author: alice") && text.contains("hyperparameter: lr=3e-4"));

    // Checkouts give back the committed files byte for byte: by branch, commit, HEAD, time.
    assert!(f.checkout(&["main"]) == bytes2);
    assert!(
        f.checkout(&["main", "--fsync"]) == bytes2,
        "--fsync writes the same file"
    );
    assert!(f.checkout(&[&c1]) == bytes1);
    assert!(f.checkout(&[]) == bytes1, "HEAD follows the last checkout");
    assert!(f.checkout(&["main", "--as-of", &t1.to_string()]) == bytes1);
    assert!(f.checkout(&["main", "--as-of", &t2.to_string()]) == bytes2);

    // Branches and tags.
    let created = f.json(&["version", "branch", "create", "exp", "--at", &c1]);
    assert_eq!(created["commit"], c1.as_str());
    f.json(&["version", "tag", "create", "v1", "--at", &c1]);
    let branches = f.json(&["version", "branch", "list"]);
    let names: Vec<&str> = branches["refs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["exp", "main"]);
    assert!(f.checkout(&["v1"]) == bytes1);
    assert!(f.checkout(&["exp"]) == bytes1);
    let tags = f.json(&["version", "tag", "list"]);
    assert_eq!(tags["refs"][0]["name"], "v1");
    assert_eq!(tags["refs"][0]["at_head"], true);
    assert!(
        f.ok(&["version", "branch", "list"])
            .contains(&format!("  main {c2}"))
    );
    f.json(&["version", "branch", "delete", "exp"]);
    assert_eq!(
        f.json(&["version", "branch", "list"])["refs"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Diff: w changed in chunk 0 of 2 by 1.5 over 10 rows; b unchanged (left out).
    let diff = f.json(&["version", "diff", &c1, &c2]);
    assert_eq!(
        (diff["from"].as_str(), diff["to"].as_str()),
        (Some(&*c1), Some(&*c2))
    );
    let tensors = diff["tensors"].as_array().unwrap();
    assert_eq!(tensors.len(), 1, "{diff}");
    let w = &tensors[0];
    assert_eq!(
        (w["name"].as_str(), w["change"].as_str()),
        (Some("w"), Some("changed"))
    );
    assert_eq!(w["chunks"], serde_json::json!([0]));
    assert_eq!(w["total_chunks"], 2);
    let l2 = w["l2"].as_f64().unwrap();
    let want = (1.5f64 * 1.5 * (10 * COLS) as f64).sqrt();
    assert!((l2 - want).abs() < 1e-9 * want, "{l2} vs {want}");
    assert_eq!(w["max_abs"].as_f64(), Some(1.5));
    let text = f.ok(&["version", "diff", "v1", "main"]);
    assert!(text.contains("M w chunks 1/2"), "{text}");

    // Blame: w last changed by the second commit, b by the first (with its provenance).
    let blame = f.json(&["version", "blame", "main"]);
    let by: Vec<(&str, &str)> = blame["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["tensor"].as_str().unwrap(),
                t["commit"]["cid"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(by, [("b", c1.as_str()), ("w", c2.as_str())]);
    assert_eq!(
        blame["tensors"][0]["commit"]["provenance"]["metadata"]["run"],
        "a1"
    );
    let text = f.ok(&["version", "blame", "main"]);
    assert!(
        text.contains(&format!("b {c1} alice {date}: first")),
        "{text}"
    );
}

#[test]
fn merge_fast_forwards_or_averages_and_car_export_imports() {
    let f = Fixture::new();
    f.ok(&["init", "--shards", "2"]);
    let (c1, _) = f.commit(&Model::new(0.0), "main", "base");
    f.ok(&["version", "branch", "create", "ff", "--at", "main"]);
    f.ok(&["version", "branch", "create", "exp", "--at", "main"]);
    let (c2, bytes2) = f.commit(&Model::new(1.0), "main", "ours");
    let (c3, _) = f.commit(&Model::new(2.0), "exp", "theirs");

    // ff is behind main: a fast-forward.
    let ff = f.json(&["version", "merge", "main", "--branch", "ff"]);
    assert_eq!(ff["outcome"], "fast-forward");
    assert_eq!(
        (ff["from"].as_str(), ff["to"].as_str()),
        (Some(&*c1), Some(&*c2))
    );
    assert!(f.checkout(&["ff"]) == bytes2);
    assert_eq!(
        f.json(&["version", "merge", "main", "--branch", "ff"])["outcome"],
        "up-to-date"
    );

    // main and exp diverged: refused without --weighted, averaged with it.
    let code = fails(
        &f.repo,
        &["version", "merge", "exp", "--branch", "main"],
        "cannot be fast-forwarded",
    );
    assert_eq!(code, 1);
    assert_eq!(
        fails(
            &f.repo,
            &["version", "merge", "exp", "--weighted", "1.5"],
            "1.5"
        ),
        2
    );
    let merged = f.json(&[
        "version",
        "merge",
        "exp",
        "--branch",
        "main",
        "--weighted",
        "0.25",
    ]);
    assert_eq!(merged["outcome"], "merged");
    assert_eq!(
        strs(&merged["commit"]["parents"]),
        [c2.as_str(), c3.as_str()]
    );
    let out = f.path("merged.safetensors");
    f.ok(&["version", "checkout", "main", "-o", out.to_str().unwrap()]);
    let (ours, theirs) = (Model::new(1.0).w, Model::new(2.0).w);
    let got = Model::read_w(&out);
    assert_eq!(got.len(), ours.len());
    for ((g, o), t) in got.iter().zip(&ours).zip(&theirs) {
        // Quarters: 0.75 * o + 0.25 * t is exact in f64 and rounds to itself in f32.
        assert_eq!(*g as f64, 0.75 * *o as f64 + 0.25 * *t as f64);
    }

    // Export main's whole history as a CAR file; import it into a fresh repository.
    let car = f.path("main.car");
    let exported = f.json(&["version", "export", "main", "-o", car.to_str().unwrap()]);
    let root = exported["root"].as_str().unwrap().to_string();
    assert!(exported["blocks"].as_u64().unwrap() > 4);
    let other = f.path("other");
    let imported = json(&other, &["version", "init"]);
    assert_eq!(imported["created_store"], true);
    let imported = json(
        &other,
        &[
            "version",
            "import",
            car.to_str().unwrap(),
            "--branch",
            "main",
        ],
    );
    assert_eq!(imported["root"], root.as_str());
    let a = f.checkout(&["main"]);
    let back = other.join("back.safetensors");
    ok(
        &other,
        &["version", "checkout", "main", "-o", back.to_str().unwrap()],
    );
    assert!(std::fs::read(&back).unwrap() == a);
    let log = json(&other, &["version", "log", "main"]);
    assert_eq!(log["commits"].as_array().unwrap().len(), 4);
}

#[test]
fn commit_on_a_new_branch_starts_at_head_or_orphan() {
    let f = Fixture::new();
    f.ok(&["version", "init"]);
    let (c1, _) = f.commit(&Model::new(0.0), "main", "one");
    // Rows 0..10 change: w is a delta against HEAD's commit, b is unchanged.
    let mut v2 = Model::new(0.0);
    for x in &mut v2.w[..10 * COLS] {
        *x += 1.5;
    }
    let file = f.path("v2.safetensors");
    let bytes2 = v2.write(&file);
    let c2 = f.json(&["version", "commit", file.to_str().unwrap(), "-b", "exp"]);
    assert_eq!(strs(&c2["parents"]), [c1.as_str()]);
    assert_eq!(
        (c2["full"].as_u64(), c2["deltas"].as_u64()),
        (Some(0), Some(1))
    );
    assert!(f.checkout(&["exp"]) == bytes2);
    let log = f.json(&["version", "log", "exp"]);
    assert_eq!(log["commits"].as_array().unwrap().len(), 2);

    let orphan = f.json(&[
        "version",
        "commit",
        file.to_str().unwrap(),
        "-b",
        "fresh",
        "--orphan",
    ]);
    assert_eq!(orphan["parents"], serde_json::json!([]));
    assert_eq!(orphan["full"], 2);
    fails(
        &f.repo,
        &["version", "commit", file.to_str().unwrap(), "--orphan"],
        "main",
    );
}

#[test]
fn the_chain_depth_bound_is_a_repository_setting_and_a_commit_flag() {
    let f = Fixture::new();
    f.ok(&["version", "init", "--max-chain-depth", "3"]);
    let conf = std::fs::read_to_string(f.repo.join("versioning.conf")).unwrap();
    assert!(conf.contains("max_chain_depth = 3"), "{conf}");
    f.commit(&Model::new(0.0), "main", "one");
    let mut v = Model::new(0.0);
    for x in &mut v.w[..COLS] {
        *x += 0.25;
    }
    let file = f.path("v2.safetensors");
    let bytes = v.write(&file);
    let c = f.json(&[
        "version",
        "commit",
        file.to_str().unwrap(),
        "--max-chain-depth",
        "0",
    ]);
    assert_eq!(c["deltas"], 1);
    assert!(f.checkout(&["main"]) == bytes);
    // A typo in the config file is reported, not ignored.
    std::fs::write(f.repo.join("versioning.conf"), "max_chain_deph = 3\n").unwrap();
    fails(&f.repo, &["version", "log"], "unknown key");
}

#[test]
fn help_says_where_refs_live() {
    let f = Fixture::new();
    let help = f.ok(&["--help"]);
    // Refs are in the engine's metadata (the init test checks no refs/ is made).
    assert!(!help.contains("refs/ and ledger"), "{help}");
    assert!(help.contains("versioning refs"), "{help}");
    let init = f.ok(&["version", "init", "--help"]);
    assert!(!init.contains("ref directory"), "{init}");
    assert!(init.contains("metadata keeps the refs"), "{init}");
}

#[test]
fn a_torch_style_file_with_metadata_comes_back_byte_for_byte() {
    let f = Fixture::new();
    f.ok(&["version", "init"]);
    let m = Model::new(0.5);
    let (w, b) = (Model::bytes(&m.w), Model::bytes(&m.b));
    let tensors = [
        (
            "w",
            TensorView::new(Dtype::F32, vec![ROWS, COLS], &w).unwrap(),
        ),
        ("b", TensorView::new(Dtype::F32, vec![COLS], &b).unwrap()),
    ];
    // torch's save_file writes {"format": "pt"} as the header's __metadata__.
    let pt = [("format".to_string(), "pt".to_string())].into();
    let bytes = safetensors::serialize(tensors, Some(pt)).unwrap();
    let file = f.path("pt.safetensors");
    std::fs::write(&file, &bytes).unwrap();
    f.json(&["version", "commit", file.to_str().unwrap()]);
    assert!(f.checkout(&["main"]) == bytes, "the checkout differs");
}

/// The number of blocks `block ls` lists.
fn block_count(repo: &Path) -> usize {
    ok(repo, &["block", "ls"]).lines().count()
}

/// Stores a file as a block; returns its CID.
fn put(f: &Fixture, file: &Path) -> String {
    let out = f.json(&["block", "put", file.to_str().unwrap()]);
    out["cid"].as_str().unwrap().to_string()
}

#[test]
fn version_gc_keeps_a_pinned_block_identical_to_a_chunk_it_stored() {
    let f = Fixture::new();
    f.ok(&["version", "init"]);
    // b (COLS f32, 512 bytes) is one chunk: a raw block of exactly its bytes, as noise does
    // not compress (a compressible chunk is stored packed, under another CID).
    let mut scratch = Model::new(0.0);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    scratch.b = (0..COLS)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            f32::from_bits((x >> 32) as u32)
        })
        .collect();
    f.commit(&scratch, "scratch", "scratch");
    let chunk = f.path("b.bin");
    std::fs::write(&chunk, Model::bytes(&scratch.b)).unwrap();
    let cid = put(&f, &chunk);
    f.ok(&["pin", "add", &cid]);
    // Nothing reaches the scratch commit: its branch is gone and HEAD moves to main.
    f.ok(&["version", "branch", "delete", "scratch"]);
    let main = f.path("main.safetensors");
    Model::new(1.0).write(&main);
    f.ok(&["version", "commit", main.to_str().unwrap(), "--orphan"]);

    let gc = f.json(&["version", "gc"]);
    assert!(!strs(&gc["swept"]).contains(&cid.as_str()), "{gc}");
    assert!(!gc["swept"].as_array().unwrap().is_empty(), "{gc}");
    assert_eq!(gc["held"], 1, "{gc}");
    let got = f.path("got.bin");
    f.ok(&["block", "get", &cid, "-o", got.to_str().unwrap()]);
    assert!(std::fs::read(&got).unwrap() == Model::bytes(&scratch.b));

    // Once unpinned, the block is the versioning layer's garbage again.
    f.ok(&["pin", "rm", &cid]);
    let gc = f.json(&["version", "gc"]);
    assert_eq!(strs(&gc["swept"]), [cid.as_str()], "{gc}");
}

#[test]
fn repo_gc_keeps_every_versioned_block() {
    let f = Fixture::new();
    f.ok(&["init", "--shards", "2"]);
    let pinned = f.path("pinned");
    std::fs::write(&pinned, b"a pinned block").unwrap();
    let pinned = put(&f, &pinned);
    let loose = f.path("loose");
    std::fs::write(&loose, b"nobody keeps this block").unwrap();
    let loose = put(&f, &loose);

    let (c1, bytes1) = f.commit(&Model::new(0.0), "main", "one");
    let mut v2 = Model::new(0.0);
    v2.w[0] = 100.0;
    let (c2, bytes2) = f.commit(&v2, "main", "two");
    f.ok(&["version", "tag", "create", "first", "--at", &c1]);
    // A commit no ref will reach: its branch is deleted and HEAD moves back to main.
    let (scratch, _) = f.commit(&Model::new(7.0), "scratch", "scratch");
    f.ok(&["version", "branch", "delete", "scratch"]);
    f.checkout(&["main"]);

    // The versioning layer's own gc sees the scratch commit's blocks as garbage.
    let dry = f.json(&["version", "gc", "--dry-run"]);
    assert_eq!(dry["refs"], 3, "{dry}"); // heads/main, tags/first, HEAD
    let garbage = dry["swept"].as_array().unwrap().len();
    assert!(garbage >= 3, "{dry}"); // commit, state, tensors (and chunks)
    f.ok(&["block", "stat", &scratch]);

    let before = block_count(&f.repo);
    let gc = f.json(&["repo", "gc", &pinned]);
    let refs = strs(&gc["refs"]);
    assert!(refs.contains(&format!("heads/main={c2}").as_str()), "{gc}");
    assert!(refs.contains(&format!("tags/first={c1}").as_str()), "{gc}");
    assert!(refs.contains(&format!("HEAD={c2}").as_str()), "{gc}");
    assert!(gc["versioned"].as_u64().unwrap() > 4, "{gc}");
    // The loose block and the scratch commit's own blocks went; nothing versioned did.
    let removed = gc["removed"].as_u64().unwrap() as usize;
    assert_eq!(removed, 1 + garbage, "{gc}");
    assert_eq!(block_count(&f.repo), before - removed);
    fails(&f.repo, &["block", "stat", &loose], "not in the store");
    fails(&f.repo, &["block", "stat", &scratch], "not in the store");
    f.ok(&["block", "stat", &pinned]);
    assert!(f.checkout(&["main"]) == bytes2);
    assert!(f.checkout(&["first"]) == bytes1);
    assert_eq!(
        f.json(&["version", "log", "main"])["commits"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // Nothing is left for a second pass, and every ref still resolves.
    assert_eq!(f.json(&["repo", "gc", &pinned])["removed"], 0);
    // The swept versioning blocks left the ledger: the layer's own gc finds nothing to do.
    let after = f.json(&["version", "gc", "--dry-run"]);
    assert_eq!(after["swept"].as_array().unwrap().len(), 0, "{after}");
    // Without roots, repo gc still refuses, refs or not.
    fails(&f.repo, &["repo", "gc"], "no roots");
}

#[test]
fn bad_input_gives_one_line() {
    let f = Fixture::new();
    // Before init: the repository is named.
    fails(
        &f.repo,
        &["version", "log"],
        "not an initialized repository",
    );
    f.ok(&["version", "init"]);
    assert_eq!(
        fails(&f.repo, &["version", "log"], "unknown revision \"HEAD\""),
        1
    );
    let (_, _) = f.commit(&Model::new(0.0), "main", "one");
    let out = f.path("out.safetensors");
    let out = out.to_str().unwrap();
    assert_eq!(
        fails(
            &f.repo,
            &["version", "checkout", "nosuch", "-o", out],
            "unknown revision \"nosuch\""
        ),
        1
    );
    assert!(!Path::new(out).exists(), "a failed checkout left a file");
    assert_eq!(
        fails(&f.repo, &["version", "diff", "main", "nosuch"], "nosuch"),
        1
    );
    assert_eq!(
        fails(
            &f.repo,
            &["version", "branch", "delete", "nosuch"],
            "nosuch"
        ),
        1
    );
    assert_eq!(
        fails(
            &f.repo,
            &["version", "branch", "create", "main", "--at", "main"],
            "already exists"
        ),
        1
    );
    assert_eq!(
        fails(
            &f.repo,
            &["version", "branch", "create", "a//b"],
            "invalid ref name"
        ),
        2
    );
    let junk = f.path("junk.safetensors");
    std::fs::write(&junk, b"not a safetensors file").unwrap();
    assert_eq!(
        fails(
            &f.repo,
            &["version", "commit", junk.to_str().unwrap()],
            "junk.safetensors"
        ),
        1
    );
    let good = f.path("one.safetensors");
    let good = good.to_str().unwrap();
    assert_eq!(
        fails(
            &f.repo,
            &["version", "commit", good, "--param", "lr"],
            "KEY=VALUE"
        ),
        2
    );
    assert_eq!(
        fails(
            &f.repo,
            &["version", "commit", good, "--dataset", "xyz"],
            "bad CID"
        ),
        2
    );
    assert_eq!(
        fails(
            &f.repo,
            &["version", "checkout", "main", "--as-of", "soon", "-o", out],
            "--as-of"
        ),
        2
    );
    assert_eq!(
        fails(
            &f.repo,
            &["version", "checkout", "main", "--as-of", "1000", "-o", out],
            "no commit of"
        ),
        1
    );
    // Nothing moved: one commit on main.
    assert_eq!(
        f.json(&["version", "log"])["commits"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}
