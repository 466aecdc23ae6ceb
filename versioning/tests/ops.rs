//! Each operation end to end on a real engine.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use futures_lite::future::block_on;
use ipfrs_storage::BlockStore;
use ipfrs_versioning::cli::parse_provenance;
use ipfrs_versioning::{
    Change, CommitInfo, MergeOutcome, MergeStrategy, Revision, TensorObject, read_safetensors,
    read_safetensors_with_metadata, write_safetensors, write_safetensors_with_metadata,
};

#[test]
fn commit_and_checkout_round_trip_through_safetensors() {
    let fx = Fixture::new();
    let m = model(1);
    let src = fx.path("in.safetensors");
    write_safetensors(&src, &m).unwrap();
    let tensors = read_safetensors(&src).unwrap();
    assert_eq!(tensors, m);
    let c = fx.commit("main", &tensors, "first");
    assert_eq!(c.full, 4);
    assert!(c.parents.is_empty());
    assert_eq!(fx.resolve("main"), c.commit);
    assert_eq!(fx.resolve("HEAD"), c.commit);
    let out = fx.path("out.safetensors");
    let s = block_on(fx.repo.checkout_to_file(&"main".parse().unwrap(), &out)).unwrap();
    assert_eq!(s.commit, c.commit);
    assert_eq!(read_safetensors(&out).unwrap(), m);
    // The chunk size is 256 bytes: the 4 KiB weight spans 16 chunks.
    let state = block_on(fx.repo.commit_state(&c.commit)).unwrap();
    let w = block_on(fx.repo.tensor_object(&state.tensors["layer0.weight"])).unwrap();
    assert_eq!(w.chunk_cids().len(), 16);
}

#[test]
fn sparse_update_is_a_delta_and_unchanged_tensors_are_reused() {
    let fx = Fixture::new();
    let m1 = model(2);
    let c1 = fx.commit("main", &m1, "v1");
    let m2 = nudge(&m1, &[3], 1e-3);
    let c2 = fx.commit("main", &m2, "v2");
    assert_eq!((c2.deltas, c2.unchanged, c2.full), (1, 3, 0));
    assert_eq!(c2.parents, vec![c1.commit]);
    // One changed row (64 bytes) of a 4 KiB weight: the new bytes are the delta payload and
    // the objects (16 recipes of two CIDs each), well under the weight's own size.
    assert!(c2.new_bytes < 3072, "{} new bytes", c2.new_bytes);
    assert_eq!(fx.checkout("main"), m2);
    assert_eq!(fx.checkout(&c1.commit.to_string()), m1);
    let s1 = block_on(fx.repo.commit_state(&c1.commit)).unwrap();
    let s2 = block_on(fx.repo.commit_state(&c2.commit)).unwrap();
    assert_eq!(s1.tensors["embed"], s2.tensors["embed"]);
    let TensorObject::Chunked(t) =
        block_on(fx.repo.tensor_object(&s2.tensors["layer0.weight"])).unwrap()
    else {
        panic!("a new version is stored as chunk recipes")
    };
    assert_eq!(
        t.chunks.iter().filter(|r| r.depth() > 0).count(),
        1,
        "only the changed row's chunk has a patch"
    );
}

#[test]
fn decode_depth_stays_within_the_configured_bound() {
    let fx = Fixture::new(); // max_chain_depth = 4
    let mut m = model(3);
    let mut deepest = Vec::new();
    let mut commits = Vec::new();
    for i in 0..12 {
        // Rows 0 and 1 share chunk 0: it changes every commit, so its recipe must re-key.
        m = nudge(&m, &[i % 2], 1e-3);
        let c = fx.commit("main", &m, &format!("step {i}"));
        let s = block_on(fx.repo.commit_state(&c.commit)).unwrap();
        let TensorObject::Chunked(t) =
            block_on(fx.repo.tensor_object(&s.tensors["layer0.weight"])).unwrap()
        else {
            panic!("expected chunk recipes")
        };
        deepest.push(t.chunks.iter().map(|r| r.depth()).max().unwrap());
        commits.push((c.commit, m.clone()));
    }
    assert!(deepest.iter().all(|&d| d <= 4), "{deepest:?}");
    assert!(
        deepest.iter().any(|&d| d >= 2),
        "patches do chain: {deepest:?}"
    );
    for (c, want) in &commits {
        assert_eq!(&fx.checkout(&c.to_string()), want);
    }
}

#[test]
fn log_lists_history_with_provenance() {
    let fx = Fixture::new();
    let m = model(4);
    fx.commit("main", &m, "one");
    let data_cid = ipfrs_storage::Block::new(&b"dataset shard"[..]).unwrap();
    let provenance = parse_provenance(&[
        format!("dataset={}", data_cid.cid()),
        "hparam.lr=3e-4".into(),
        "meta.run=alpha".into(),
    ])
    .unwrap();
    let info = CommitInfo {
        author: "alice".into(),
        message: "two".into(),
        provenance: provenance.clone(),
        timestamp_ms: None,
        file_metadata: None,
    };
    block_on(fx.repo.commit("main", &nudge(&m, &[1], 0.5), info)).unwrap();
    let log = block_on(fx.repo.log(&Revision::Head, None)).unwrap();
    let messages: Vec<&str> = log
        .entries
        .iter()
        .map(|e| e.commit.message.as_str())
        .collect();
    assert_eq!(messages, ["two", "one"]);
    assert_eq!(log.entries[0].commit.provenance, provenance);
    let text = log.to_string();
    assert!(text.contains("hyperparameter: lr=3e-4"), "{text}");
    assert!(
        text.contains(&format!("dataset: {}", data_cid.cid())),
        "{text}"
    );
    assert_eq!(
        block_on(fx.repo.log(&Revision::Head, Some(1)))
            .unwrap()
            .entries
            .len(),
        1
    );
}

#[test]
fn checkout_as_of_a_timestamp() {
    let fx = Fixture::new();
    let m = model(5);
    let mut cids = Vec::new();
    for (i, ts) in [1000u64, 2000, 3000].iter().enumerate() {
        let info = CommitInfo {
            timestamp_ms: Some(*ts),
            ..info("t")
        };
        let c = block_on(fx.repo.commit("main", &nudge(&m, &[i], 1.0), info)).unwrap();
        cids.push(c.commit);
    }
    assert_eq!(fx.resolve("main@2500"), cids[1]);
    assert_eq!(fx.resolve("main@3000"), cids[2]);
    assert_eq!(fx.resolve("main@1000"), cids[0]);
    assert_eq!(fx.checkout("main@1999"), nudge(&m, &[0], 1.0));
    let err = block_on(fx.repo.resolve(&"main@999".parse().unwrap())).unwrap_err();
    assert!(
        matches!(err, ipfrs_versioning::Error::NothingAsOf { .. }),
        "{err}"
    );
}

#[test]
fn branches_and_tags() {
    let fx = Fixture::new();
    let m = model(6);
    let c1 = fx.commit("main", &m, "one");
    block_on(fx.repo.create_branch("exp/lr", &"main".parse().unwrap())).unwrap();
    block_on(fx.repo.create_tag("v1", &"main".parse().unwrap())).unwrap();
    let c2 = fx.commit("exp/lr", &nudge(&m, &[0], 1.0), "exp");
    assert_eq!(fx.resolve("main"), c1.commit);
    assert_eq!(fx.resolve("exp/lr"), c2.commit);
    assert_eq!(fx.resolve("v1"), c1.commit);
    let branches = fx.repo.branches().unwrap();
    let names: Vec<&str> = branches.refs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["exp/lr", "main"]);
    assert_eq!(
        fx.repo.tags().unwrap().refs,
        vec![("v1".to_string(), c1.commit)]
    );
    let err = block_on(fx.repo.create_tag("v1", &"exp/lr".parse().unwrap())).unwrap_err();
    assert!(
        matches!(err, ipfrs_versioning::Error::RefExists(_)),
        "{err}"
    );
    assert_eq!(fx.repo.delete_branch("exp/lr").unwrap(), c2.commit);
    assert_eq!(fx.repo.delete_tag("v1").unwrap(), c1.commit);
    assert_eq!(fx.repo.branches().unwrap().refs.len(), 1);
    assert!(fx.repo.tags().unwrap().refs.is_empty());
    assert!(fx.repo.delete_tag("v1").is_err());
}

#[test]
fn a_new_branch_starts_at_head_unless_orphan() {
    let fx = Fixture::new();
    let m = model(6);
    let c1 = fx.commit("main", &m, "one");
    // As `git checkout -b`: the first commit of a new branch is parented on HEAD's commit,
    // so one changed row costs a delta, not the whole model again.
    let c2 = fx.commit("exp", &nudge(&m, &[0], 1.0), "exp");
    assert_eq!(c2.parents, [c1.commit]);
    assert_eq!((c2.full, c2.deltas, c2.unchanged), (0, 1, 3));
    assert_eq!(fx.resolve("main"), c1.commit, "main did not move");
    assert_eq!(fx.resolve("exp"), c2.commit);
    // HEAD is now exp's commit: the next new branch starts there.
    let c3 = fx.commit("exp2", &nudge(&m, &[1], 1.0), "exp2");
    assert_eq!(c3.parents, [c2.commit]);

    let orphan = block_on(fx.repo.commit_orphan("fresh", &m, info("orphan"))).unwrap();
    assert!(orphan.parents.is_empty());
    assert_eq!(orphan.full, 4);
    assert_eq!(fx.checkout("fresh"), m);
    let err = block_on(fx.repo.commit_orphan("main", &m, info("again"))).unwrap_err();
    assert!(
        matches!(err, ipfrs_versioning::Error::RefExists(_)),
        "{err}"
    );
    assert_eq!(fx.resolve("main"), c1.commit);
}

#[test]
fn diff_reports_changed_chunks_and_norms() {
    let fx = Fixture::new();
    let m1 = model(7);
    let c1 = fx.commit("main", &m1, "one");
    let mut m2 = nudge(&m1, &[0, 40], 0.5);
    m2.remove("step");
    m2.insert("new".into(), f32_tensor(&[1.0, 2.0], vec![2]));
    let c2 = fx.commit("main", &m2, "two");
    let d = block_on(
        fx.repo
            .diff(&Revision::Commit(c1.commit), &Revision::Commit(c2.commit)),
    )
    .unwrap();
    let names: Vec<&str> = d.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["layer0.weight", "new", "step"]);
    match &d.tensors[0].change {
        Change::Changed {
            chunks,
            total_chunks,
            l2,
            max_abs,
        } => {
            // Rows 0 and 40 of 16 floats (64 bytes) sit in 256-byte chunks 0 and 10.
            assert_eq!(chunks, &[0, 10]);
            assert_eq!(*total_chunks, 16);
            // 32 elements moved by 0.5 (up to f32 rounding).
            assert!((l2 - (32.0f64 * 0.25).sqrt()).abs() < 1e-4, "{l2}");
            assert!((max_abs - 0.5).abs() < 1e-4, "{max_abs}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(d.tensors[1].change, Change::Added { .. }));
    assert!(matches!(d.tensors[2].change, Change::Removed));
    assert!(d.to_string().contains("M layer0.weight chunks 2/16"));
}

#[test]
fn merge_fast_forwards_and_averages() {
    let fx = Fixture::new();
    let m = model(8);
    fx.commit("main", &m, "base");
    block_on(fx.repo.create_branch("a", &"main".parse().unwrap())).unwrap();
    block_on(fx.repo.create_branch("b", &"main".parse().unwrap())).unwrap();
    let ca = fx.commit("a", &nudge(&m, &[0], 1.0), "a");
    // main is behind a: fast-forward.
    let out = block_on(fx.repo.merge(
        "main",
        &"a".parse().unwrap(),
        MergeStrategy::FastForwardOnly,
        info("ff"),
    ))
    .unwrap();
    assert_eq!(
        out,
        MergeOutcome::FastForward {
            from: fx.resolve("b"),
            to: ca.commit
        }
    );
    assert_eq!(fx.resolve("main"), ca.commit);
    let up = block_on(fx.repo.merge(
        "main",
        &"b".parse().unwrap(),
        MergeStrategy::FastForwardOnly,
        info("x"),
    ))
    .unwrap();
    assert_eq!(up, MergeOutcome::UpToDate(ca.commit));
    // b diverges: fast-forward only refuses, weighted average merges.
    let cb = fx.commit("b", &nudge(&m, &[0], 3.0), "b");
    let err = block_on(fx.repo.merge(
        "a",
        &"b".parse().unwrap(),
        MergeStrategy::FastForwardOnly,
        info("x"),
    ))
    .unwrap_err();
    assert!(
        matches!(err, ipfrs_versioning::Error::NotFastForward { .. }),
        "{err}"
    );
    let out = block_on(fx.repo.merge(
        "a",
        &"b".parse().unwrap(),
        MergeStrategy::WeightedAverage { theirs: 0.25 },
        info("avg"),
    ))
    .unwrap();
    let MergeOutcome::Merged(s) = out else {
        panic!("{out:?}")
    };
    assert_eq!(s.parents, vec![ca.commit, cb.commit]);
    let merged = fx.checkout("a");
    let (orig, got) = (
        f32_values(&m["layer0.weight"]),
        f32_values(&merged["layer0.weight"]),
    );
    for i in 0..16 {
        let want = 0.75 * (orig[i] + 1.0) + 0.25 * (orig[i] + 3.0);
        assert!((got[i] - want).abs() < 1e-5, "{i}: {} vs {want}", got[i]);
    }
    assert_eq!(got[16..], orig[16..]);
    assert_eq!(merged["step"], m["step"]);
    let log = block_on(fx.repo.log(&"a".parse().unwrap(), None)).unwrap();
    assert_eq!(log.entries.len(), 4);
}

#[test]
fn blame_names_the_commit_that_last_changed_each_tensor() {
    let fx = Fixture::new();
    let m1 = model(9);
    let c1 = fx.commit("main", &m1, "init");
    let mut m2 = m1.clone();
    m2.insert("layer0.bias".into(), f32_tensor(&[0.5; 16], vec![16]));
    let info2 = CommitInfo {
        provenance: parse_provenance(&["hparam.lr=0.1".into()]).unwrap(),
        ..info("bias")
    };
    let c2 = block_on(fx.repo.commit("main", &m2, info2)).unwrap();
    let c3 = fx.commit("main", &nudge(&m2, &[2], 1.0), "weight");
    // Reverting the bias to v1 is a change too (content differs from the parent).
    let mut m4 = nudge(&m2, &[2], 1.0);
    m4.insert("layer0.bias".into(), m1["layer0.bias"].clone());
    let c4 = fx.commit("main", &m4, "revert bias");
    let blame = block_on(fx.repo.blame(&Revision::Head)).unwrap();
    let by: std::collections::BTreeMap<_, _> = blame
        .entries
        .iter()
        .map(|e| (e.tensor.as_str(), e.commit))
        .collect();
    assert_eq!(by["embed"], c1.commit);
    assert_eq!(by["layer0.weight"], c3.commit);
    assert_eq!(by["layer0.bias"], c4.commit);
    let at3 = block_on(fx.repo.blame(&Revision::Commit(c3.commit))).unwrap();
    let e = at3
        .entries
        .iter()
        .find(|e| e.tensor == "layer0.bias")
        .unwrap();
    assert_eq!(e.commit, c2.commit);
    assert_eq!(e.info.provenance.hyperparameters["lr"], "0.1");
    assert!(at3.to_string().contains("hyperparameter: lr=0.1"));
}

#[test]
fn car_export_and_import_into_another_store() {
    let fx = Fixture::new();
    let m1 = model(10);
    fx.commit("main", &m1, "one");
    let m2 = nudge(&m1, &[5], 0.25);
    let c2 = fx.commit("main", &m2, "two");
    let car = fx.path("model.car");
    let exported = block_on(fx.repo.export_car(&"main".parse().unwrap(), &car)).unwrap();
    assert_eq!(exported.root, c2.commit);
    let other = Fixture::new();
    let imported = block_on(other.repo.import_car(&car, Some("imported"))).unwrap();
    assert_eq!(imported.root, c2.commit);
    assert_eq!(imported.blocks, exported.blocks);
    assert_eq!(other.checkout("imported"), m2);
    let first = block_on(other.repo.log(&"imported".parse().unwrap(), None)).unwrap();
    assert_eq!(first.entries.len(), 2);
    assert_eq!(other.checkout(&first.entries[1].cid.to_string()), m1);
    // Every block of the DAG came along.
    let stats = block_on(other.repo.store().stats()).unwrap();
    assert_eq!(stats.blocks as usize, exported.blocks);
}

#[test]
fn cli_layer_drives_a_repository_directory() {
    let dir = tempfile::tempdir().unwrap();
    let repo_dir = dir.path().join("repo");
    let cli = ipfrs_versioning::cli::init(&repo_dir).unwrap();
    assert!(repo_dir.join("blocks").is_dir() && !repo_dir.join("refs").exists());
    assert!(cli.branch_list().unwrap().refs.is_empty());
    let m = model(11);
    let src = dir.path().join("m.safetensors");
    write_safetensors(&src, &m).unwrap();
    let s = cli
        .commit(&src, "main", "bob", "first", &["meta.k=v".to_string()])
        .unwrap();
    assert!(s.to_string().contains("[main]"));
    cli.tag_create("v1", "main").unwrap();
    assert_eq!(cli.tag_list().unwrap().refs[0].1, s.commit);
    // The refs are in the engine's metadata log, inside the block store's directory.
    assert!(repo_dir.join("blocks/metadata.log").is_file());
    let out = dir.path().join("out.safetensors");
    cli.checkout("v1", &out).unwrap();
    assert_eq!(read_safetensors(&out).unwrap(), m);
    assert!(
        cli.log("HEAD", None)
            .unwrap()
            .to_string()
            .contains("meta: k=v")
    );
    assert!(cli.blame("main").unwrap().entries.len() == 4);
    assert!(cli.diff("main", "v1").unwrap().tensors.is_empty());
    let gc = cli.gc(&[], false).unwrap();
    assert!(gc.swept.is_empty());
}

#[test]
fn a_chain_of_deltas_reuses_recipes_of_chunks_unchanged_since_the_parent() {
    let fx = Fixture::new();
    let m1 = model(12);
    fx.commit("main", &m1, "v1");
    let m2 = nudge(&m1, &[0], 1e-3);
    let c2 = fx.commit("main", &m2, "v2");
    let m3 = nudge(&m2, &[40], 1e-3);
    let c3 = fx.commit("main", &m3, "v3");
    let recipes_of = |c: cid::Cid| {
        let s = block_on(fx.repo.commit_state(&c)).unwrap();
        match block_on(fx.repo.tensor_object(&s.tensors["layer0.weight"])).unwrap() {
            TensorObject::Chunked(t) => t,
            other => panic!("expected chunk recipes, got {other:?}"),
        }
    };
    let (t2, t3) = (recipes_of(c2.commit), recipes_of(c3.commit));
    assert_eq!(t2.chunks[0].depth(), 1);
    assert_eq!(
        t3.chunks[0], t2.chunks[0],
        "chunk 0 unchanged since v2: recipe reused"
    );
    assert_eq!(t3.chunks[10].depth(), 1);
    assert_eq!(t2.chunks[10].depth(), 0);
    assert_eq!(
        t3.chunks[10].key, t2.chunks[10].key,
        "a delta on the same key"
    );
    assert_eq!(fx.checkout("main"), m3);
    assert_eq!(fx.checkout(&c2.commit.to_string()), m2);
}

#[test]
fn ref_files_of_the_earlier_layout_are_imported_once() {
    let dir = tempfile::tempdir().unwrap();
    let repo_dir = dir.path().join("repo");
    let m = model(13);
    let src = dir.path().join("m.safetensors");
    write_safetensors(&src, &m).unwrap();
    let commit = {
        let cli = ipfrs_versioning::cli::init(&repo_dir).unwrap();
        cli.commit(&src, "main", "ann", "first", &[])
            .unwrap()
            .commit
    };
    // What an earlier version left: refs as files, none in the engine yet.
    let old = ipfrs_versioning::FileRefStore::open(repo_dir.join("refs")).unwrap();
    use ipfrs_versioning::RefStore;
    old.compare_and_swap("heads/old", None, Some(commit))
        .unwrap();
    old.compare_and_swap("tags/kept", None, Some(commit))
        .unwrap();

    let cli = ipfrs_versioning::cli::open_engine(&repo_dir).unwrap();
    let branches: Vec<String> = cli
        .branch_list()
        .unwrap()
        .refs
        .into_iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(branches, vec!["main".to_string(), "old".to_string()]);
    assert_eq!(cli.tag_list().unwrap().refs[0].1, commit);
    assert!(!repo_dir.join("refs").exists() && repo_dir.join("refs.imported").is_dir());
    // A branch deleted after the import stays deleted.
    cli.branch_delete("old").unwrap();
    drop(cli);
    let cli = ipfrs_versioning::cli::open_engine(&repo_dir).unwrap();
    assert_eq!(cli.branch_list().unwrap().refs.len(), 1);
}

#[test]
fn safetensors_metadata_survives_commit_checkout_and_merge() {
    let dir = tempfile::tempdir().unwrap();
    let cli = ipfrs_versioning::cli::init(&dir.path().join("repo")).unwrap();
    let m = model(12);
    // What torch's save_file writes: one key, so the header's bytes are deterministic.
    let pt: ipfrs_versioning::FileMetadata = [("format".to_string(), "pt".to_string())].into();
    let src = dir.path().join("pt.safetensors");
    write_safetensors_with_metadata(&src, &m, Some(&pt)).unwrap();
    let original = std::fs::read(&src).unwrap();
    let c1 = cli.commit(&src, "main", "a", "pt", &[]).unwrap();
    let out = dir.path().join("out.safetensors");
    cli.checkout("main", &out).unwrap();
    assert!(std::fs::read(&out).unwrap() == original, "not byte-exact");
    let (_, back) = read_safetensors_with_metadata(&out).unwrap();
    assert_eq!(back.as_ref(), Some(&pt));

    // Several keys: kept exactly (their order in the header is the safetensors crate's).
    let many: ipfrs_versioning::FileMetadata = (0..5)
        .map(|i| (format!("k{i}"), format!("value {i}")))
        .collect();
    write_safetensors_with_metadata(&src, &nudge(&m, &[0], 1.0), Some(&many)).unwrap();
    cli.commit(&src, "exp", "a", "many", &[]).unwrap();
    cli.checkout("exp", &out).unwrap();
    assert_eq!(read_safetensors_with_metadata(&out).unwrap().1, Some(many));

    // A file without metadata commits a state without it: its bytes and CID as before.
    write_safetensors(&src, &m).unwrap();
    let plain = cli.commit(&src, "plain", "a", "plain", &[]).unwrap();
    let state = block_on(cli.repo().commit_state(&plain.commit)).unwrap();
    assert_eq!(state.metadata, None);
    cli.checkout("plain", &out).unwrap();
    assert_eq!(read_safetensors_with_metadata(&out).unwrap().1, None);
    // A weighted merge keeps ours' metadata (main moves on, so that exp has diverged).
    write_safetensors_with_metadata(&src, &nudge(&m, &[5], 1.0), Some(&pt)).unwrap();
    let c2 = cli.commit(&src, "main", "a", "pt 2", &[]).unwrap();
    assert_eq!(c2.parents, [c1.commit]);
    let merged = cli.merge("main", "exp", Some(0.5), "a", "merge").unwrap();
    let MergeOutcome::Merged(merged) = merged else {
        panic!("{merged:?}");
    };
    let state = block_on(cli.repo().commit_state(&merged.commit)).unwrap();
    assert_eq!(state.metadata, Some(pt));
    assert_eq!(merged.parents[0], c2.commit);
}
