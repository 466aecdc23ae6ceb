//! Chains of commits in the chunk-recipe format: every version checks out bit for bit,
//! decode depth stays bounded, histories of the earlier format continue, and the chunk
//! codec round-trips every bit pattern of every dtype.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::*;
use futures_lite::future::block_on;
use ipfrs_storage::{Block, BlockStore};
use ipfrs_versioning::{DType, Key, RepoConfig, TensorData, TensorObject, Tensors, codec};
use proptest::prelude::*;

/// The recipes of tensor `name` at commit `c`.
fn recipes(fx: &Fixture, c: &cid::Cid, name: &str) -> ipfrs_versioning::Chunked {
    let s = block_on(fx.repo.commit_state(c)).unwrap();
    match block_on(fx.repo.tensor_object(&s.tensors[name])).unwrap() {
        TensorObject::Chunked(t) => t,
        other => panic!("expected chunk recipes, got {other:?}"),
    }
}

#[test]
fn thirty_steps_check_out_bit_exact_at_bounded_depth() {
    let fx = Fixture::with_config(RepoConfig {
        chunk_bytes: 256,
        max_chain_depth: 5,
        ..RepoConfig::default()
    });
    let mut m = model(30);
    let mut history = Vec::new();
    for i in 0..30 {
        // Alternate sparse rows and a dense step, so both kinds of patch chain.
        m = if i % 5 == 4 {
            nudge(&m, &(0..64).collect::<Vec<_>>(), 1e-5)
        } else {
            nudge(&m, &[(i * 7) % 64, (i * 13) % 64], 1e-3)
        };
        let c = fx.commit("main", &m, &format!("step {i}"));
        let t = recipes(&fx, &c.commit, "layer0.weight");
        let deepest = t.chunks.iter().map(|r| r.depth()).max().unwrap();
        assert!(deepest <= 5, "step {i}: depth {deepest}");
        history.push((c.commit, m.clone(), deepest));
    }
    assert!(
        history.iter().any(|(_, _, d)| *d >= 3),
        "patches chain beyond one"
    );
    for (c, want, _) in &history {
        assert_eq!(&fx.checkout(&c.to_string()), want, "commit {c}");
    }
}

/// Dense steps (every weight moved by a Gaussian-sized step, as an optimizer does) chain at
/// most two patches per chunk before a chunk is re-based on its key: the decode work of a
/// dense tip stays bounded at every depth, and every version checks out bit for bit.
#[test]
fn dense_steps_decode_through_at_most_two_patches() {
    let chunk_bytes = 16 * 1024;
    let mut ws = Weights::new(chunk_bytes, 0x2545_f491_4f6c_dd1d);
    ws.commit("v0");
    let mut deepest = 0;
    for step in 1..=12 {
        ws.nudge(0..ws.w.len(), 1e-6);
        let c = ws.commit(&format!("dense {step}"));
        let mut chunks = recipes(&ws.fx, &c.commit, "w").chunks;
        block_on(ws.fx.repo.resolve_chains(&mut chunks)).unwrap();
        for r in &chunks {
            assert!(
                r.patches.len() <= 2,
                "step {step}: {} patches",
                r.patches.len()
            );
            // A patch is appended only to patches of at most half the chunk.
            if let Some((_, before)) = r.patches.split_last() {
                let chained: u64 = before.iter().map(|p| u64::from(p.bytes)).sum();
                assert!(
                    chained <= chunk_bytes as u64 / 2,
                    "step {step}: {chained} bytes"
                );
            }
            deepest = deepest.max(r.patches.len());
        }
    }
    assert!(deepest >= 1, "dense steps are stored as patches");
    ws.check_history(&ws.fx);
}

/// A dense step too large to chain onto (a patch over half the chunk), then small changes:
/// each small change is a patch on that chain, not a new delta against the key that would
/// carry the dense step again at every commit; every version checks out bit for bit.
#[test]
fn small_changes_after_a_large_dense_step_do_not_pay_for_it_again() {
    let chunk_bytes = 16 * 1024;
    let mut ws = Weights::new(chunk_bytes, 0x9e37_79b9_7f4a_7c15);
    ws.commit("v0");
    ws.nudge(0..ws.w.len(), 1e-4);
    let dense = ws.commit("dense");
    // What the test is about: the dense step's patches are over half their chunk.
    let heavy: Vec<u64> = recipes(&ws.fx, &dense.commit, "w")
        .chunks
        .iter()
        .map(|r| r.patch_bytes())
        .collect();
    assert!(
        heavy.iter().all(|&b| b > chunk_bytes as u64 / 2),
        "dense patches: {heavy:?}"
    );
    for step in 0..8 {
        // 32 values of one chunk (a chunk is 4 rows of 1024).
        let chunk = (step * 5) % 16;
        let at = chunk * 4096 + step * 100;
        ws.nudge(at..at + 32, 1e-3);
        let c = ws.commit(&format!("small {step}"));
        // A patch of 32 values, its link and the objects naming it (about 3 KiB); a delta
        // against the key would hold the whole dense step again (over 8 KiB).
        assert!(
            c.new_bytes < chunk_bytes as u64 / 4,
            "step {step}: {} bytes",
            c.new_bytes
        );
        let r = &recipes(&ws.fx, &c.commit, "w").chunks[chunk];
        assert!(r.depth() >= 2, "step {step}: depth {}", r.depth());
    }
    ws.check_history(&ws.fx);
}

#[test]
fn a_history_of_the_earlier_format_continues_with_recipes() {
    let fx = Fixture::new();
    let m1 = model(31);
    let c1 = commit_v2_format(&fx, "main", &m1);
    let m2 = nudge(&m1, &[5], 1e-3);
    let c2 = fx.commit("main", &m2, "on top of the earlier format");
    assert_eq!(c2.parents, vec![c1]);
    let t = recipes(&fx, &c2.commit, "layer0.weight");
    // Unchanged chunks point at the earlier raw chunk blocks; the changed one is a delta
    // on its raw chunk.
    assert!(t.chunks.iter().all(|r| matches!(r.key, Key::Raw(_))));
    assert_eq!(t.chunks.iter().filter(|r| r.depth() == 1).count(), 1);
    assert_eq!(fx.checkout(&c1.to_string()), m1);
    assert_eq!(fx.checkout("main"), m2);
}

#[test]
fn first_versions_are_compressed_keys() {
    let fx = Fixture::with_config(RepoConfig {
        chunk_bytes: 64 * 1024,
        ..RepoConfig::default()
    });
    let mut rng = 0x1234_5678_u64;
    let values: Vec<f32> = (0..65536)
        .map(|_| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            ((rng >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.04
        })
        .collect();
    let mut m = Tensors::new();
    m.insert("w".into(), f32_tensor(&values, vec![256, 256]));
    let c = fx.commit("main", &m, "v1");
    let t = recipes(&fx, &c.commit, "w");
    assert!(t.chunks.iter().all(|r| matches!(r.key, Key::Packed(_))));
    assert!(c.new_bytes < 262_144 * 9 / 10, "{} of 262144", c.new_bytes);
    assert_eq!(fx.checkout("main"), m);
}

/// Element bit patterns that stress exactness: NaNs with payloads, signed zeros,
/// subnormals, infinities and extremes, mixed with random ones.
fn special_bits(size: usize) -> Vec<u64> {
    match size {
        2 => vec![
            0x0000, 0x8000, 0x0001, 0x8001, 0x7c00, 0xfc00, 0x7e01, 0x7f81, 0xffff, 0x03ff,
        ],
        4 => vec![
            0,
            0x8000_0000,
            1,
            0x8000_0001,
            0x007f_ffff,
            0x7f80_0000,
            0xff80_0000,
            0x7fc0_0001,
            0xffbf_ffff,
            0x7f7f_ffff,
        ],
        8 => vec![
            0,
            1 << 63,
            1,
            0x7ff0_0000_0000_0000,
            0x7ff8_0000_dead_beef,
            u64::MAX,
        ],
        _ => vec![0, 1, 0x7f, 0x80, 0xff],
    }
}

const DTYPES: [DType; 13] = [
    DType::F32,
    DType::F16,
    DType::BF16,
    DType::F64,
    DType::I8,
    DType::I16,
    DType::I32,
    DType::I64,
    DType::U8,
    DType::U16,
    DType::U32,
    DType::U64,
    DType::Bool,
];

fn tensor_bytes() -> impl Strategy<Value = (DType, Vec<u8>)> {
    (0..DTYPES.len(), 0usize..600, any::<u64>()).prop_map(|(k, n, seed)| {
        let dtype = DTYPES[k];
        let size = dtype.size();
        let specials = special_bits(size);
        let mut x = seed | 1;
        let mut data = Vec::with_capacity(n * size);
        for i in 0..n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let bits = if x % 3 == 0 {
                specials[i % specials.len()]
            } else if x % 3 == 1 {
                // A weight-like value near a common exponent.
                (0x3c00_0000_3c00_0000 ^ (x >> 40)) & (u64::MAX >> (64 - 8 * size as u32))
            } else {
                x
            };
            data.extend_from_slice(&bits.to_le_bytes()[..size]);
        }
        (dtype, data)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_chunk_codec_is_bit_exact_for_every_dtype((dtype, data) in tensor_bytes()) {
        if let Some(packed) = codec::pack(&data, dtype, 3) {
            prop_assert!(packed.len() < data.len());
            prop_assert_eq!(codec::unpack(&packed, dtype, data.len()).unwrap(), data);
        }
    }

}

proptest! {
    // Each case opens an engine: fewer cases, each still covering three versions.
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn commits_of_every_dtype_check_out_bit_exact(
        (dtype, a) in tensor_bytes(),
        flips in proptest::collection::vec(any::<(usize, u8)>(), 0..8),
    ) {
        let fx = Fixture::new();
        let n = (a.len() / dtype.size()) as u64;
        let mut b = a.clone();
        for (at, x) in flips {
            if !b.is_empty() {
                let i = at % b.len();
                b[i] ^= x;
            }
        }
        let mut commits = Vec::new();
        for v in [&a, &b, &a] {
            let mut m = Tensors::new();
            m.insert("t".into(), TensorData::new("t", dtype, vec![n], Bytes::copy_from_slice(v)).unwrap());
            commits.push((fx.commit("main", &m, "v").commit, v.clone()));
        }
        for (c, v) in commits {
            let got = fx.checkout(&c.to_string());
            prop_assert_eq!(got["t"].data.as_ref(), v.as_slice());
        }
    }
}

#[test]
fn a_delta_of_the_earlier_format_continues_with_recipes() {
    use ipfrs_versioning::{
        ChunkSource, Commit, Delta, DeltaChunk, Object, Provenance, RefStore, State, delta,
    };
    let fx = Fixture::new(); // 256-byte chunks
    let old: Vec<f32> = (0..192).map(|i| (i as f32 * 0.37).sin()).collect();
    let mut v2 = old.clone();
    v2[3] += 1e-3; // chunk 0: delta-coded
    v2[130] = 7.5; // chunk 2: stored raw
    let (base_cid, base) = store_full_v2(&fx, &f32_tensor(&old, vec![192]), 256);
    let v2_t = f32_tensor(&v2, vec![192]);
    let mut blocks = Vec::new();
    let mut chunks = Vec::new();
    for (i, (n, o)) in v2_t
        .data
        .chunks(256)
        .zip(old_bytes(&old).chunks(256))
        .enumerate()
    {
        let raw = Block::new(Bytes::copy_from_slice(n)).unwrap();
        let from = match i {
            0 => {
                let (t, payload) = delta::encode(n, o, 4, 3).unwrap();
                let p = Block::new(Bytes::from(payload)).unwrap();
                let from = match t {
                    delta::Transform::Xor => ChunkSource::Xor(*p.cid()),
                    delta::Transform::Sub => ChunkSource::Sub(*p.cid()),
                };
                blocks.push(p);
                from
            }
            1 => ChunkSource::Base,
            _ => {
                blocks.push(raw.clone());
                ChunkSource::Raw
            }
        };
        chunks.push(DeltaChunk {
            chunk: *raw.cid(),
            from,
        });
    }
    let d = Object::Delta(Delta {
        base: base_cid,
        encoding: delta::ENCODING.into(),
        depth: 1,
        dtype: DType::F32,
        shape: vec![192],
        chunk_bytes: base.chunk_bytes,
        chunks,
    })
    .to_block()
    .unwrap();
    let mut state = State::default();
    state.tensors.insert("w".into(), *d.cid());
    let state = Object::State(state).to_block().unwrap();
    let commit = Object::Commit(Commit {
        state: *state.cid(),
        parents: Vec::new(),
        author: "earlier".into(),
        message: "a format-2 delta".into(),
        timestamp_ms: 1,
        provenance: Provenance::default(),
    })
    .to_block()
    .unwrap();
    let c1 = *commit.cid();
    blocks.extend([d, state, commit]);
    block_on(fx.repo.store().put_many(&blocks)).unwrap();
    fx.repo
        .refs()
        .compare_and_swap("heads/main", None, Some(c1))
        .unwrap();

    // On top: chunk 1 changes; chunk 0 (delta-coded before) is unchanged.
    let mut v3 = v2.clone();
    v3[70] -= 2e-3;
    let mut m3 = Tensors::new();
    m3.insert("w".into(), f32_tensor(&v3, vec![192]));
    let c3 = fx.commit("main", &m3, "on a format-2 delta");
    assert_eq!(c3.parents, vec![c1]);
    let t = recipes(&fx, &c3.commit, "w");
    // No recipe reaches a delta-coded chunk of the earlier format: it gets a key of its own
    // (raw here: 64 values do not compress), once.
    assert_eq!(t.chunks[0].depth(), 0, "re-keyed once");
    let again = block_on(fx.repo.store().has(&t.chunks[0].key.block())).unwrap();
    assert!(again, "its key is stored");
    assert_eq!(t.chunks[1].depth(), 1, "a delta on the base's raw chunk");
    assert_eq!(t.chunks[2].key, Key::Raw(t.chunks[2].chunk));
    assert_eq!(f32_values(&fx.checkout(&c1.to_string())["w"]), v2);
    assert_eq!(fx.checkout("main"), m3);
}

fn old_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// About N(0, 1): a sum of 12 uniforms from a xorshift state (nonzero).
struct Normal(u64);

impl Normal {
    fn sample(&mut self) -> f32 {
        let mut sum = 0.0f32;
        for _ in 0..12 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            sum += (self.0 >> 40) as f32 / (1u64 << 24) as f32;
        }
        sum - 6.0
    }
}

/// Weights of 256 rows of 256 values (a 16 KiB chunk holds 16 rows), Gaussian-like.
struct Rows {
    w: Vec<f32>,
    rng: Normal,
}

impl Rows {
    fn new(seed: u64) -> Rows {
        let mut rng = Normal(seed | 1);
        let w = (0..256 * 256).map(|_| 0.02 * rng.sample()).collect();
        Rows { w, rng }
    }

    /// Half a row of each chunk moved by a small step (of row `step % 16`): every chunk
    /// changes, as 1% of the rows of a model with narrow rows changes most chunks.
    fn step(&mut self, step: usize) -> Tensors {
        for k in 0..16 {
            let row = 16 * k + step % 16;
            for i in row * 256..row * 256 + 128 {
                self.w[i] += 1e-4 * self.rng.sample();
            }
        }
        self.tensors()
    }

    fn tensors(&self) -> Tensors {
        let mut m = Tensors::new();
        m.insert("w".into(), f32_tensor(&self.w, vec![256, 256]));
        m
    }
}

/// The size of the block of tensor `name`'s object at commit `c`.
fn object_bytes(fx: &Fixture, c: &cid::Cid, name: &str) -> usize {
    let s = block_on(fx.repo.commit_state(c)).unwrap();
    let block = block_on(ipfrs_storage::BlockStore::get(
        fx.repo.store(),
        &s.tensors[name],
    ));
    block.unwrap().unwrap().len()
}

/// A commit that changes every chunk writes one link per chunk, not every chunk's whole
/// patch list again: the tensor object stays the same size however deep the chains grow
/// (it grew by a patch entry per chunk per commit when recipes listed their patches), and
/// every version still checks out bit for bit through its chain, after a gc too.
#[test]
fn patch_chains_keep_the_tensor_object_the_same_size_at_any_depth() {
    let fx = Fixture::with_config(RepoConfig {
        chunk_bytes: 16384,
        ..RepoConfig::default()
    });
    let mut rows = Rows::new(40);
    fx.commit("main", &rows.tensors(), "v0");
    let mut history = Vec::new();
    let mut sizes = Vec::new();
    for step in 0..20 {
        let m = rows.step(step);
        let c = fx.commit("main", &m, &format!("step {step}"));
        sizes.push(object_bytes(&fx, &c.commit, "w"));
        history.push((c.commit, m));
    }
    let tip = recipes(&fx, &history.last().unwrap().0, "w");
    assert!(
        tip.chunks
            .iter()
            .all(|r| r.patches.is_empty() && r.chain.is_some())
    );
    let deepest = tip.chunks.iter().map(|r| r.depth()).max().unwrap();
    assert!(deepest >= 10, "chains grew to {deepest} patches");
    // Only the depth and byte counts of the chains change, by a byte or two per chunk.
    let (first, last) = (sizes[1], *sizes.last().unwrap());
    assert!(
        last <= first + 3 * 16,
        "object of {first} bytes grew to {last}"
    );
    // gc follows the chains: a link it did not reach would be swept, and its chunk lost.
    block_on(fx.repo.gc(&[], false)).unwrap();
    for (c, want) in &history {
        assert_eq!(&fx.checkout(&c.to_string()), want, "commit {c}");
    }
}

/// A recipe object of format 3 (each recipe listing its patches itself) still checks out,
/// and a commit on top continues each changed chunk's history as a chain that holds the
/// listed patches, then the new one.
#[test]
fn recipes_that_list_their_patches_continue_as_chains() {
    let fx = Fixture::with_config(RepoConfig {
        chunk_bytes: 16384,
        ..RepoConfig::default()
    });
    let mut rows = Rows::new(41);
    fx.commit("main", &rows.tensors(), "v0");
    let mut m = Tensors::new();
    for step in 0..3 {
        m = rows.step(step);
        fx.commit("main", &m, &format!("step {step}"));
    }
    // The tip rewritten as format 3: chains walked into listed patches, each payload a
    // block of its own (format 3 has no links to carry them).
    let tip = fx.resolve("main");
    let listed = forged_commit(&fx, tip, "w", |t| {
        let inline = block_on(fx.repo.resolve_chains(&mut t.chunks)).unwrap();
        let payloads: Vec<Block> = inline
            .values()
            .map(|data| Block::new(data.clone()).unwrap())
            .collect();
        assert!(payloads.iter().all(|b| inline.contains_key(b.cid())));
        block_on(fx.repo.store().put_many(&payloads)).unwrap();
        t.format = ipfrs_versioning::CHUNKED_FORMAT_V3.into();
    });
    let v3 = recipes(&fx, &listed, "w");
    assert!(
        v3.chunks
            .iter()
            .all(|r| r.chain.is_none() && r.patches.len() == 3)
    );
    assert_eq!(fx.checkout(&listed.to_string()), m);

    ipfrs_versioning::RefStore::compare_and_swap(
        fx.repo.refs(),
        "heads/main",
        Some(tip),
        Some(listed),
    )
    .unwrap();
    let next = rows.step(3);
    let c = fx.commit("main", &next, "on format 3");
    let t = recipes(&fx, &c.commit, "w");
    assert_eq!(t.format, ipfrs_versioning::CHUNKED_FORMAT);
    for (new, old) in t.chunks.iter().zip(&v3.chunks) {
        assert!(new.patches.is_empty());
        assert_eq!(new.depth(), 4, "three listed patches, then the new one");
        let mut walked = vec![new.clone()];
        block_on(fx.repo.resolve_chains(&mut walked)).unwrap();
        assert_eq!(walked[0].patches[..3], old.patches[..]);
    }
    assert_eq!(fx.checkout(&c.commit.to_string()), next);
    assert_eq!(fx.checkout(&listed.to_string()), m);
}

/// A small patch travels inside its link (no block of its own), a dense one is a block the
/// link names; both kinds check out bit for bit after gc, and through a CAR export into
/// another store (which holds exactly the blocks the DAG walk found).
#[test]
fn small_patches_travel_inside_their_links_and_large_ones_beside_them() {
    use ipfrs_versioning::{INLINE_PATCH_BYTES, Object};
    let mut ws = Weights::new(64 * 1024, 0x0123_4567_89ab_cdef);
    ws.commit("v0");
    // A few values of the first chunk: a patch of a few hundred bytes.
    ws.nudge(100..164, 1e-3);
    let sparse = ws.commit("sparse").commit;
    // Every value: patches of a third of their chunk, far over the inline bound.
    ws.nudge(0..ws.w.len(), 1e-6);
    let dense = ws.commit("dense").commit;
    let fx = &ws.fx;
    let head_link = |c: &cid::Cid| {
        let r = recipes(fx, c, "w").chunks[0].clone();
        let head = r.chain.expect("a chained recipe").head;
        match block_on(fx.repo.object(&head)).unwrap() {
            Object::Link(l) => l,
            other => panic!("{head} is a {}", other.kind()),
        }
    };
    let small = head_link(&sparse);
    let data = small.data.as_ref().expect("a small patch is inline");
    assert_eq!(data.len(), small.patch.bytes as usize);
    assert!(data.len() <= INLINE_PATCH_BYTES);
    assert!(!block_on(fx.repo.store().has(&small.patch.payload)).unwrap());
    let large = head_link(&dense);
    assert!(large.data.is_none(), "{} bytes inline", large.patch.bytes);
    assert!(large.patch.bytes as usize > INLINE_PATCH_BYTES);
    assert!(block_on(fx.repo.store().has(&large.patch.payload)).unwrap());

    block_on(fx.repo.gc(&[], false)).unwrap();
    ws.check_history(fx);
    let dir = tempfile::tempdir().unwrap();
    let car = dir.path().join("chain.car");
    let exported = block_on(fx.repo.export_car(&"main".parse().unwrap(), &car)).unwrap();
    let other = Fixture::new();
    let imported = block_on(other.repo.import_car(&car, Some("imported"))).unwrap();
    assert_eq!(imported.blocks, exported.blocks);
    ws.check_history(&other);
}

/// A repository of one F32 tensor `w`, 64 rows of 1024 weights of N(0, 0.02), and the
/// versions committed of it.
struct Weights {
    fx: Fixture,
    rng: Normal,
    w: Vec<f32>,
    history: Vec<(cid::Cid, Tensors)>,
}

impl Weights {
    fn new(chunk_bytes: usize, seed: u64) -> Weights {
        let fx = Fixture::with_config(RepoConfig {
            chunk_bytes,
            ..RepoConfig::default()
        });
        let mut rng = Normal(seed);
        let w = (0..64 * 1024).map(|_| 0.02 * rng.sample()).collect();
        Weights {
            fx,
            rng,
            w,
            history: Vec::new(),
        }
    }

    /// Adds `amount` x N(0, 1) to each weight in `at`.
    fn nudge(&mut self, at: std::ops::Range<usize>, amount: f32) {
        for v in &mut self.w[at] {
            *v += amount * self.rng.sample();
        }
    }

    /// Commits the weights to main.
    fn commit(&mut self, message: &str) -> ipfrs_versioning::CommitSummary {
        let mut m = Tensors::new();
        m.insert("w".into(), f32_tensor(&self.w, vec![64, 1024]));
        let c = self.fx.commit("main", &m, message);
        self.history.push((c.commit, m));
        c
    }

    /// Every version committed checks out of `fx` bit for bit.
    fn check_history(&self, fx: &Fixture) {
        for (c, want) in &self.history {
            assert_eq!(&fx.checkout(&c.to_string()), want, "commit {c}");
        }
    }
}

/// A tensor keeps the chunks it was first stored in: a repository reopened with another
/// chunk size (a changed config, or a new default) still stores the next change of it as a
/// patch on its chains, while a tensor new to the history takes the new size.
#[test]
fn a_tensor_keeps_its_chunk_size_when_the_configured_one_changes() {
    let mut ws = Weights::new(16 * 1024, 7);
    ws.commit("v0");
    ws.nudge(1024..2048, 1e-4);
    ws.commit("v1");
    let engine = ws.fx.repo.store().clone();
    let wider = ipfrs_versioning::Repo::new(
        engine.clone(),
        ipfrs_versioning::MetadataRefStore::new(engine),
        ipfrs_versioning::FileLedger::open(ws.fx.path("ledger")).unwrap(),
        RepoConfig {
            chunk_bytes: 64 * 1024,
            ..RepoConfig::default()
        },
    );
    ws.nudge(5000..6000, 1e-4);
    let mut m = Tensors::new();
    m.insert("w".into(), f32_tensor(&ws.w, vec![64, 1024]));
    let fresh: Vec<f32> = (0..64 * 1024).map(|i| (i as f32 * 0.01).sin()).collect();
    m.insert("fresh".into(), f32_tensor(&fresh, vec![64, 1024]));
    let c = block_on(wider.commit("main", &m, info("v2"))).unwrap();

    let object = |name: &str| {
        let s = block_on(wider.commit_state(&c.commit)).unwrap();
        match block_on(wider.tensor_object(&s.tensors[name])).unwrap() {
            TensorObject::Chunked(t) => t,
            other => panic!("expected chunk recipes, got {other:?}"),
        }
    };
    let w = object("w");
    assert_eq!(w.chunk_bytes, 16 * 1024, "w keeps its chunks");
    assert_eq!(w.chunks.len(), 16);
    // Elements 5000..6000 lie in the second chunk, which the first commit's key and a
    // patch now rebuild; the chunk v1 changed keeps its patch.
    assert_eq!(w.chunks[1].depth(), 1);
    assert_eq!(w.chunks[0].depth(), 1);
    assert!(w.chunks[2..].iter().all(|r| r.depth() == 0));
    assert_eq!(
        object("fresh").chunk_bytes,
        64 * 1024,
        "a new tensor takes the new size"
    );
    assert_eq!(
        block_on(wider.checkout(&ipfrs_versioning::Revision::Head))
            .unwrap()
            .1,
        m
    );
    ws.check_history(&ws.fx);
}
