//! Bad input: a typed error, no ref moved, nothing half-written.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use futures_lite::future::block_on;
use ipfrs_storage::BlockStore;
use ipfrs_versioning::car::{decode_car, encode_car};
use ipfrs_versioning::{
    ChunkSource, Commit, DType, Delta, DeltaChunk, Error, MergeStrategy, Object, Provenance,
    RefStore, Revision, State, TensorData, TensorObject, write_safetensors,
};

fn stored_bytes(fx: &Fixture) -> u64 {
    block_on(fx.repo.store().stats()).unwrap().bytes
}

#[test]
fn corrupt_and_truncated_safetensors_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cli = ipfrs_versioning::cli::open_engine(&dir.path().join("repo")).unwrap();
    let good = dir.path().join("good.safetensors");
    write_safetensors(&good, &model(1)).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", bytes[..bytes.len() - 10].to_vec()),
        ("header cut", bytes[..20].to_vec()),
        ("garbage", b"definitely not a safetensors file".to_vec()),
        ("empty", Vec::new()),
    ];
    for (what, data) in cases {
        let path = dir.path().join(format!("{what}.safetensors"));
        std::fs::write(&path, data).unwrap();
        let err = cli.commit(&path, "main", "a", "m", &[]).unwrap_err();
        assert!(matches!(err, Error::Safetensors { .. }), "{what}: {err}");
        assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
    }
    assert!(
        cli.branch_list().unwrap().refs.is_empty(),
        "no branch was created"
    );
    let err = cli
        .commit(&dir.path().join("absent"), "main", "a", "m", &[])
        .unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
}

#[test]
fn tensor_bytes_must_match_dtype_and_shape() {
    let err = TensorData::new("w", DType::F32, vec![2, 3], vec![0u8; 23]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::ShapeMismatch {
                expected: 24,
                got: 23,
                ..
            }
        ),
        "{err}"
    );
    let err = TensorData::new("w", DType::F64, vec![u64::MAX, 4], vec![]).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
}

#[test]
fn unknown_revisions_and_invalid_names() {
    let fx = Fixture::new();
    fx.commit("main", &model(2), "one");
    for rev in ["nope", "HEAD@0"] {
        let r: Revision = rev.parse().unwrap();
        let err = block_on(fx.repo.checkout(&r)).unwrap_err();
        assert!(
            matches!(err, Error::UnknownRef(_) | Error::NothingAsOf { .. }),
            "{rev}: {err}"
        );
    }
    let err = block_on(fx.repo.create_branch("b", &"nope".parse().unwrap())).unwrap_err();
    assert!(matches!(err, Error::UnknownRef(_)), "{err}");
    assert_eq!(fx.repo.branches().unwrap().refs.len(), 1);
    for bad in ["", "a//b", "../x", ".hidden", "sp ace", "a@b"] {
        assert!(
            bad.parse::<Revision>().is_err() || fx.repo.refs().get(bad).is_err(),
            "{bad}"
        );
    }
    let err = block_on(fx.repo.commit("../escape", &model(2), info("x"))).unwrap_err();
    assert!(matches!(err, Error::InvalidRefName { .. }), "{err}");
    // A CID that is not a stored commit.
    let stray = ipfrs_storage::Block::new(&b"x"[..]).unwrap();
    let err = block_on(fx.repo.resolve(&Revision::Commit(*stray.cid()))).unwrap_err();
    assert!(matches!(err, Error::MissingBlock { .. }), "{err}");
    assert!(fx.repo.delete_branch("nope").is_err());
}

#[test]
fn merge_of_different_tensor_sets_or_layouts_changes_nothing() {
    let fx = Fixture::new();
    let m = model(3);
    fx.commit("main", &m, "base");
    block_on(fx.repo.create_branch("other", &"main".parse().unwrap())).unwrap();
    let ours = fx.commit("main", &nudge(&m, &[0], 1.0), "ours").commit;
    let mut extra = nudge(&m, &[1], 1.0);
    extra.insert("extra".into(), f32_tensor(&[1.0], vec![1]));
    extra.remove("step");
    fx.commit("other", &extra, "theirs");
    let before = stored_bytes(&fx);
    let avg = MergeStrategy::WeightedAverage { theirs: 0.5 };
    let err = block_on(
        fx.repo
            .merge("main", &"other".parse().unwrap(), avg, info("m")),
    )
    .unwrap_err();
    match err {
        Error::TensorSetMismatch {
            only_ours,
            only_theirs,
        } => {
            assert_eq!(only_ours, ["step"]);
            assert_eq!(only_theirs, ["extra"]);
        }
        other => panic!("{other}"),
    }
    // Same names, different shape.
    let mut reshaped = m.clone();
    let w = &m["layer0.weight"];
    reshaped.insert(
        "layer0.weight".into(),
        TensorData::new("w", DType::F32, vec![16, 64], w.data.clone()).unwrap(),
    );
    fx.commit("other", &reshaped, "reshaped");
    let err = block_on(
        fx.repo
            .merge("main", &"other".parse().unwrap(), avg, info("m")),
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::MergeMismatch { ref name, .. } if name == "layer0.weight"),
        "{err}"
    );
    // Differing integer tensors cannot be averaged.
    let mut stepped = nudge(&m, &[9], 1.0);
    stepped.insert(
        "step".into(),
        TensorData::new("s", DType::I64, vec![1], 8i64.to_le_bytes().to_vec()).unwrap(),
    );
    fx.commit("other", &stepped, "stepped");
    let err = block_on(
        fx.repo
            .merge("main", &"other".parse().unwrap(), avg, info("m")),
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::MergeMismatch { ref name, .. } if name == "step"),
        "{err}"
    );
    let err = block_on(fx.repo.merge(
        "main",
        &"other".parse().unwrap(),
        MergeStrategy::WeightedAverage { theirs: 1.5 },
        info("m"),
    ))
    .unwrap_err();
    assert!(matches!(err, Error::BadWeight(_)), "{err}");
    assert_eq!(fx.resolve("main"), ours, "main did not move");
    // Only the three "other" commits were stored since; the refused merges stored nothing.
    let after_commits = stored_bytes(&fx);
    let again = block_on(
        fx.repo
            .merge("main", &"other".parse().unwrap(), avg, info("m")),
    );
    assert!(again.is_err());
    assert_eq!(stored_bytes(&fx), after_commits);
    assert!(after_commits > before);
}

#[test]
fn delta_whose_layout_differs_from_its_base_is_refused() {
    let fx = Fixture::new();
    let m = model(4);
    let c1 = fx.commit("main", &m, "one");
    // A delta of the earlier format, on a full tensor of that format.
    let (base_cid, base) = common::store_full_v2(&fx, &m["layer0.weight"], 256);
    let forged = |dtype: DType, shape: Vec<u64>| Delta {
        base: base_cid,
        encoding: ipfrs_versioning::delta::ENCODING.into(),
        depth: 1,
        dtype,
        shape,
        chunk_bytes: base.chunk_bytes,
        chunks: base
            .chunks
            .iter()
            .map(|c| DeltaChunk {
                chunk: *c,
                from: ChunkSource::Base,
            })
            .collect(),
    };
    for (i, delta) in [
        forged(DType::I32, base.shape.clone()),
        forged(DType::F32, vec![16, 64]),
    ]
    .into_iter()
    .enumerate()
    {
        let delta_block = Object::Delta(delta).to_block().unwrap();
        let mut s = State::default();
        s.tensors.insert("layer0.weight".into(), *delta_block.cid());
        let state_block = Object::State(s).to_block().unwrap();
        let commit_block = Object::Commit(Commit {
            state: *state_block.cid(),
            parents: vec![c1.commit],
            author: "forger".into(),
            message: format!("bad {i}"),
            timestamp_ms: 1,
            provenance: Provenance::default(),
        })
        .to_block()
        .unwrap();
        block_on(fx.repo.store().put_many(&[
            delta_block.clone(),
            state_block,
            commit_block.clone(),
        ]))
        .unwrap();
        let out = fx.path("bad.safetensors");
        let err = block_on(
            fx.repo
                .checkout_to_file(&Revision::Commit(*commit_block.cid()), &out),
        )
        .unwrap_err();
        assert!(
            matches!(err, Error::BadDelta { ref cid, .. } if **cid == *delta_block.cid()),
            "{err}"
        );
        assert!(!out.exists());
        assert_eq!(fx.resolve("HEAD"), c1.commit, "HEAD did not move");
    }
}

#[test]
fn checkout_with_a_missing_block_names_it_and_writes_nothing() {
    let fx = Fixture::new();
    let m = model(5);
    let c1 = fx.commit("main", &m, "one");
    let c2 = fx.commit("main", &nudge(&m, &[0], 1e-3), "two");
    let state = block_on(fx.repo.commit_state(&c1.commit)).unwrap();
    let TensorObject::Chunked(w) =
        block_on(fx.repo.tensor_object(&state.tensors["layer0.weight"])).unwrap()
    else {
        panic!()
    };
    // Chunk 0's key is the key of c2's recipe too, so both commits lose it.
    let victim = w.chunks[0].key.block();
    assert!(block_on(fx.repo.store().delete(&victim)).unwrap());
    for rev in [c1.commit, c2.commit] {
        let out = fx.path("out.safetensors");
        let err = block_on(fx.repo.checkout_to_file(&Revision::Commit(rev), &out)).unwrap_err();
        assert!(
            matches!(err, Error::MissingBlock { cid } if cid == victim),
            "{err}"
        );
        assert!(err.to_string().contains(&victim.to_string()));
        assert!(!out.exists());
    }
    assert_eq!(fx.resolve("HEAD"), c2.commit);
    // Chunks are leaves (never read while marking), so gc still runs and keeps all that is
    // reachable; a missing object would abort it instead.
    let report = block_on(fx.repo.gc(&[], false)).unwrap();
    assert!(report.swept.is_empty(), "{report}");
}

#[test]
fn corrupt_car_files_are_refused_and_incomplete_imports_move_no_ref() {
    let fx = Fixture::new();
    let c = fx.commit("main", &model(6), "one");
    let car = fx.path("m.car");
    block_on(fx.repo.export_car(&"main".parse().unwrap(), &car)).unwrap();
    let bytes = std::fs::read(&car).unwrap();
    let (roots, blocks) = decode_car(&bytes).unwrap();
    assert_eq!(roots, [c.commit]);
    assert!(matches!(
        decode_car(&bytes[..bytes.len() - 3]),
        Err(Error::Car(_))
    ));
    assert!(matches!(decode_car(&bytes[..5]), Err(Error::Car(_))));
    let mut flipped = bytes.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    let err = decode_car(&flipped).unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
    // A CAR without the chunks of one tensor: import stores what it has, names the missing
    // block and does not create the branch.
    let other = Fixture::new();
    let mut partial = Vec::new();
    let kept: Vec<(cid::Cid, &[u8])> = blocks
        .iter()
        .filter(|b| b.cid().codec() != 0x55)
        .map(|b| (*b.cid(), b.data().as_ref()))
        .collect();
    encode_car(&roots, &kept, &mut partial).unwrap();
    let path = other.path("partial.car");
    std::fs::write(&path, partial).unwrap();
    let err = block_on(other.repo.import_car(&path, Some("main"))).unwrap_err();
    assert!(matches!(err, Error::MissingBlock { .. }), "{err}");
    assert!(other.repo.branches().unwrap().refs.is_empty());
}
