//! Shared fixtures: a real engine on a temporary directory, file refs and ledger beside it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use bytes::Bytes;
use futures_lite::future::block_on;
use ipfrs_storage::{Block, BlockStore, Engine};
use ipfrs_versioning::{
    Chunked, Commit, CommitInfo, CommitSummary, DType, FileLedger, MetadataRefStore, Object,
    Provenance, RefStore, Repo, RepoConfig, Revision, State, Tensor, TensorData, TensorObject,
    Tensors,
};
use rand::{Rng, SeedableRng, rngs::StdRng};

pub type TestRepo = Repo<Engine, MetadataRefStore<Engine>, FileLedger>;

/// A repository in a temporary directory: `<dir>/blocks` (engine), `<dir>/refs`,
/// `<dir>/ledger`, as the CLI lays it out.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub repo: TestRepo,
}

/// Small chunks so that small test tensors span several chunks.
pub fn small_config() -> RepoConfig {
    RepoConfig {
        chunk_bytes: 256,
        max_chain_depth: 4,
        ..RepoConfig::default()
    }
}

impl Fixture {
    pub fn new() -> Fixture {
        Fixture::with_config(small_config())
    }

    pub fn with_config(config: RepoConfig) -> Fixture {
        Fixture::in_dir(tempfile::tempdir().unwrap(), config)
    }

    /// A fixture in `dir`, for callers that choose where it lives (a static one is never
    /// dropped, so its directory must not be one that nothing else cleans).
    pub fn in_dir(dir: tempfile::TempDir, config: RepoConfig) -> Fixture {
        let engine = Engine::open(dir.path().join("blocks")).unwrap();
        let refs = MetadataRefStore::new(engine.clone());
        let ledger = FileLedger::open(dir.path().join("ledger")).unwrap();
        Fixture {
            repo: Repo::new(engine, refs, ledger, config),
            dir,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn commit(&self, branch: &str, tensors: &Tensors, message: &str) -> CommitSummary {
        block_on(self.repo.commit(branch, tensors, info(message))).unwrap()
    }

    pub fn checkout(&self, rev: &str) -> Tensors {
        block_on(self.repo.checkout(&rev.parse().unwrap()))
            .unwrap()
            .1
    }

    pub fn resolve(&self, rev: &str) -> cid::Cid {
        block_on(self.repo.resolve(&rev.parse::<Revision>().unwrap())).unwrap()
    }
}

pub fn info(message: &str) -> CommitInfo {
    CommitInfo {
        author: "tester".into(),
        message: message.into(),
        ..CommitInfo::default()
    }
}

pub fn f32_tensor(values: &[f32], shape: Vec<u64>) -> TensorData {
    let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    TensorData::new("t", DType::F32, shape, Bytes::from(data)).unwrap()
}

pub fn f32_values(t: &TensorData) -> Vec<f32> {
    t.data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// A small model: two f32 matrices, a bf16 vector and an i64 counter.
pub fn model(seed: u64) -> Tensors {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut m = Tensors::new();
    let w: Vec<f32> = (0..64 * 16).map(|_| rng.random_range(-1.0..1.0)).collect();
    m.insert("layer0.weight".into(), f32_tensor(&w, vec![64, 16]));
    let b: Vec<f32> = (0..16).map(|_| rng.random_range(-1.0..1.0)).collect();
    m.insert("layer0.bias".into(), f32_tensor(&b, vec![16]));
    let e: Vec<u8> = (0..100)
        .flat_map(|_| half::bf16::from_f32(rng.random_range(-1.0..1.0)).to_le_bytes())
        .collect();
    m.insert(
        "embed".into(),
        TensorData::new("embed", DType::BF16, vec![100], e).unwrap(),
    );
    m.insert(
        "step".into(),
        TensorData::new("step", DType::I64, vec![1], 7i64.to_le_bytes().to_vec()).unwrap(),
    );
    m
}

/// `m` with `rows` rows of `layer0.weight` changed by a small step.
pub fn nudge(m: &Tensors, rows: &[usize], step: f32) -> Tensors {
    let mut out = m.clone();
    let w = &m["layer0.weight"];
    let mut v = f32_values(w);
    for &r in rows {
        for x in &mut v[r * 16..(r + 1) * 16] {
            *x += step;
        }
    }
    out.insert("layer0.weight".into(), f32_tensor(&v, w.shape.clone()));
    out
}

/// Stores `t` as a full tensor of the earlier object format (raw chunks of `chunk_bytes`
/// and a `tensor` object), as commits made before chunk recipes did.
pub fn store_full_v2(fx: &Fixture, t: &TensorData, chunk_bytes: usize) -> (cid::Cid, Tensor) {
    let parts: Vec<Block> = t
        .data
        .chunks(chunk_bytes)
        .map(|c| Block::new(Bytes::copy_from_slice(c)).unwrap())
        .collect();
    let tensor = Tensor {
        dtype: t.dtype,
        shape: t.shape.clone(),
        chunk_bytes: chunk_bytes as u64,
        chunks: parts.iter().map(|b| *b.cid()).collect(),
    };
    let object = Object::Tensor(tensor.clone()).to_block().unwrap();
    let cid = *object.cid();
    let mut blocks = parts;
    blocks.push(object);
    block_on(fx.repo.store().put_many(&blocks)).unwrap();
    (cid, tensor)
}

/// Commits `tensors` on a new `branch` in the earlier object format (full tensors only),
/// moving the branch and HEAD as a commit of that time did; returns the commit.
pub fn commit_v2_format(fx: &Fixture, branch: &str, tensors: &Tensors) -> cid::Cid {
    let mut state = State::default();
    for (name, t) in tensors {
        let (cid, _) = store_full_v2(fx, t, fx.repo.config().chunk_bytes);
        state.tensors.insert(name.clone(), cid);
    }
    let state_block = Object::State(state).to_block().unwrap();
    let commit = Object::Commit(Commit {
        state: *state_block.cid(),
        parents: Vec::new(),
        author: "earlier".into(),
        message: "earlier format".into(),
        timestamp_ms: 1,
        provenance: Provenance::default(),
    })
    .to_block()
    .unwrap();
    let cid = *commit.cid();
    block_on(fx.repo.store().put_many(&[state_block, commit])).unwrap();
    let refs = fx.repo.refs();
    refs.compare_and_swap(&format!("heads/{branch}"), None, Some(cid))
        .unwrap();
    let head = refs.get("HEAD").unwrap();
    refs.compare_and_swap("HEAD", head, Some(cid)).unwrap();
    cid
}

/// Commits a copy of `parent`'s state whose tensor `name` has its chunk list changed by
/// `forge` (recipes rewritten, chunks dropped: the blocks they name stay intact), stored
/// without the commit path's checks; returns the forged commit.
pub fn forged_commit(
    fx: &Fixture,
    parent: cid::Cid,
    name: &str,
    forge: impl FnOnce(&mut Chunked),
) -> cid::Cid {
    let state = block_on(fx.repo.commit_state(&parent)).unwrap();
    let TensorObject::Chunked(mut t) =
        block_on(fx.repo.tensor_object(&state.tensors[name])).unwrap()
    else {
        panic!("a tensor of this format is chunked")
    };
    forge(&mut t);
    let tensor_block = Object::Chunked(t).to_block().unwrap();
    let mut s = state.clone();
    s.tensors.insert(name.into(), *tensor_block.cid());
    let state_block = Object::State(s).to_block().unwrap();
    let commit_block = Object::Commit(Commit {
        state: *state_block.cid(),
        parents: vec![parent],
        author: "forger".into(),
        message: "forged".into(),
        timestamp_ms: 1,
        provenance: Provenance::default(),
    })
    .to_block()
    .unwrap();
    block_on(
        fx.repo
            .store()
            .put_many(&[tensor_block, state_block, commit_block.clone()]),
    )
    .unwrap();
    *commit_block.cid()
}

/// The temporary files a checkout to a file left in `dir` (named `.<target>.tmp-<pid>`):
/// none once it has finished, whether it succeeded or failed.
pub fn temp_files(dir: &std::path::Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .map(|e| e.path())
        .collect()
}
