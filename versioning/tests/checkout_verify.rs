//! What a checkout to a file checks: the store vouches for every block it returns, so a
//! plain checkout trusts that a recipe rebuilds its chunk; the verified checkout hashes
//! every rebuilt chunk against the chunk CID its recipe records; a raw key stored under
//! another CID than its chunk's is hashed either way.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::{Fixture, f32_tensor, forged_commit, model, temp_files};
use futures_lite::future::block_on;
use ipfrs_storage::{Block, BlockStore};
use ipfrs_versioning::{CheckoutOptions, Error, Key, Revision, TensorObject, read_safetensors};

#[test]
fn a_recipe_that_rebuilds_another_chunk_fails_only_the_verified_checkout() {
    let fx = Fixture::new();
    let mut m = model(11);
    // Four 256-byte chunks, each one repeated value: every key is packed, so the only
    // check of a rebuild against its chunk is the verified checkout's.
    let name = "smooth";
    let values: Vec<f32> = (0..256).map(|i| 1.0 + (i / 64) as f32).collect();
    m.insert(name.into(), f32_tensor(&values, vec![16, 16]));
    let c1 = fx.commit("main", &m, "one");
    // Chunk 0 rebuilt from chunk 1's key: every block is intact, the recipe lies.
    let forged = forged_commit(&fx, c1.commit, name, |t| {
        assert!(t.chunks.len() > 1);
        assert_ne!(t.chunks[0].chunk, t.chunks[1].chunk);
        assert!(matches!(t.chunks[1].key, Key::Packed(_)));
        t.chunks[0].key = t.chunks[1].key;
        t.chunks[0].patches = t.chunks[1].patches.clone();
        t.chunks[0].chain = t.chunks[1].chain;
    });
    let rev = Revision::Commit(forged);
    let out = fx.path("out.safetensors");
    let want = block_on(
        fx.repo
            .tensor_object(&block_on(fx.repo.commit_state(&c1.commit)).unwrap().tensors[name]),
    )
    .unwrap();
    let TensorObject::Chunked(want) = want else {
        panic!("chunked")
    };
    let err = block_on(
        fx.repo
            .checkout_to_file_verified(&rev, &out, CheckoutOptions::default()),
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::ChunkMismatch { cid } if cid == want.chunks[0].chunk),
        "{err}"
    );
    assert!(!out.exists());
    assert_eq!(fx.resolve("HEAD"), c1.commit, "HEAD did not move");

    // The plain checkout trusts the recipe (its blocks are what the store holds): it writes
    // chunk 1's bytes where chunk 0 goes, and every other byte as committed.
    block_on(fx.repo.checkout_to_file(&rev, &out)).unwrap();
    let got = read_safetensors(&out).unwrap();
    let (w, g) = (&m[name].data, &got[name].data);
    let chunk = usize::try_from(want.chunk_bytes).unwrap();
    assert_eq!(g[..chunk], w[chunk..2 * chunk]);
    assert_eq!(g[chunk..], w[chunk..]);
    for (n, t) in &m {
        if n != name {
            assert_eq!(got[n].data, t.data, "{n}");
        }
    }
}

#[test]
fn a_raw_key_under_another_cid_is_hashed_without_asking() {
    let fx = Fixture::new();
    let m = model(12);
    let c1 = fx.commit("main", &m, "one");
    let name = "layer0.weight";
    // A raw block that is not chunk 0, named as chunk 0's raw key.
    let other = Block::new(Bytes::from(vec![0x5a; 256])).unwrap();
    block_on(fx.repo.store().put(&other)).unwrap();
    let mut victim = None;
    let forged = forged_commit(&fx, c1.commit, name, |t| {
        victim = Some(t.chunks[0].chunk);
        t.chunks[0].key = Key::Raw(*other.cid());
        t.chunks[0].patches.clear();
        t.chunks[0].chain = None;
    });
    let out = fx.path("out.safetensors");
    let err = block_on(fx.repo.checkout_to_file(&Revision::Commit(forged), &out)).unwrap_err();
    assert!(
        matches!(err, Error::ChunkMismatch { cid } if Some(cid) == victim),
        "{err}"
    );
    assert!(!out.exists());

    // Both checkouts of the honest commit write the committed bytes.
    for verified in [false, true] {
        let rev = Revision::Commit(c1.commit);
        let options = CheckoutOptions::default();
        if verified {
            block_on(fx.repo.checkout_to_file_verified(&rev, &out, options)).unwrap();
        } else {
            block_on(fx.repo.checkout_to_file_with(&rev, &out, options)).unwrap();
        }
        let got = read_safetensors(&out).unwrap();
        assert_eq!(got.len(), m.len());
        for (n, t) in &m {
            assert_eq!(got[n].data, t.data, "{n} (verified: {verified})");
        }
    }
}

/// A recipe whose chain is not what it says (a link too many or too few, or a head that is
/// no link) cannot be rebuilt: both checkouts fail naming its chunk, and leave no file.
#[test]
fn a_patch_chain_of_the_wrong_length_fails_the_checkout() {
    let fx = Fixture::new();
    let m = model(13);
    fx.commit("main", &m, "one");
    let mut m2 = m.clone();
    let mut w = common::f32_values(&m2["layer0.weight"]);
    w[3] += 1e-3;
    m2.insert("layer0.weight".into(), f32_tensor(&w, vec![64, 16]));
    let c2 = fx.commit("main", &m2, "two");
    let name = "layer0.weight";
    let out = fx.path("out.safetensors");
    type Forge = fn(&mut ipfrs_versioning::Chain, cid::Cid);
    let forgeries: [(&str, Forge); 3] = [
        ("one link too many", |c, _| c.depth += 1),
        ("one link too few", |c, _| c.depth -= 1),
        ("a commit as its head", |c, commit| c.head = commit),
    ];
    for (what, forge) in forgeries {
        let mut victim = None;
        let forged = forged_commit(&fx, c2.commit, name, |t| {
            let r = t.chunks.iter_mut().find(|r| r.chain.is_some()).unwrap();
            victim = Some(r.chunk);
            forge(r.chain.as_mut().unwrap(), c2.commit);
        });
        for verified in [false, true] {
            let rev = Revision::Commit(forged);
            let options = CheckoutOptions::default();
            let err = if verified {
                block_on(fx.repo.checkout_to_file_verified(&rev, &out, options)).unwrap_err()
            } else {
                block_on(fx.repo.checkout_to_file_with(&rev, &out, options)).unwrap_err()
            };
            assert!(
                matches!(&err, Error::BadDelta { cid, .. } if Some(**cid) == victim),
                "{what}: {err}"
            );
            assert!(!out.exists(), "{what}");
        }
    }
}

/// The offset of `needle` in the first file under `dir` (recursively) that holds it.
fn find_in_files(dir: &std::path::Path, needle: &[u8]) -> Option<(std::path::PathBuf, u64)> {
    for entry in std::fs::read_dir(dir).ok()? {
        let path = entry.ok()?.path();
        if path.is_dir() {
            if let Some(found) = find_in_files(&path, needle) {
                return Some(found);
            }
        } else if let Ok(bytes) = std::fs::read(&path)
            && let Some(at) = bytes.windows(needle.len()).position(|w| w == needle)
        {
            return Some((path, at as u64));
        }
    }
    None
}

/// A plain checkout trusts the store's check of every block it reads: a key whose record
/// is damaged on disk fails it with the store's `Corrupt` error, leaves no file and the
/// file already there as it was, and fails a read of the same commit too.
#[test]
fn a_damaged_key_record_fails_the_checkout_and_leaves_the_old_file() {
    use std::os::unix::fs::FileExt;
    let fx = Fixture::new();
    let mut m = model(12);
    // Eight 256-byte chunks of smooth values: packed keys, each of its own bytes.
    let name = "smooth";
    let values: Vec<f32> = (0..512).map(|i| 1.0 + (i as f32 * 0.01).sin()).collect();
    m.insert(name.into(), f32_tensor(&values, vec![32, 16]));
    let c1 = fx.commit("main", &m, "one");
    let state = block_on(fx.repo.commit_state(&c1.commit)).unwrap();
    let TensorObject::Chunked(t) = block_on(fx.repo.tensor_object(&state.tensors[name])).unwrap()
    else {
        panic!("chunked")
    };
    let Key::Packed(key) = t.chunks[3].key else {
        panic!("a packed key")
    };
    let bytes = block_on(fx.repo.store().get(&key)).unwrap().unwrap();
    let (file, at) = find_in_files(&fx.path("blocks"), &bytes).expect("the key's record");
    let out = fx.path("out.safetensors");
    std::fs::write(&out, b"the file before").unwrap();
    // Damage that appears while the engine runs: its reads see it through their mapping.
    let seg = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
    let at = at + bytes.len() as u64 / 2;
    let mut byte = [0u8];
    std::fs::File::open(&file)
        .unwrap()
        .read_exact_at(&mut byte, at)
        .unwrap();
    seg.write_all_at(&[byte[0] ^ 0x10], at).unwrap();
    drop(seg);

    let rev = Revision::Commit(c1.commit);
    let err = block_on(fx.repo.checkout_to_file(&rev, &out)).unwrap_err();
    assert!(
        matches!(err, Error::Store(ipfrs_storage::Error::Corrupt { .. })),
        "{err}"
    );
    assert_eq!(std::fs::read(&out).unwrap(), b"the file before");
    let left = temp_files(fx.dir.path());
    assert!(left.is_empty(), "{left:?}");
    let err = block_on(fx.repo.checkout(&rev)).unwrap_err();
    assert!(
        matches!(err, Error::Store(ipfrs_storage::Error::Corrupt { .. })),
        "{err}"
    );
}
