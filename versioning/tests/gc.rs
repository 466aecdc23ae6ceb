//! gc never removes a block reachable from any ref, never touches blocks it did not store,
//! and does remove versioning garbage.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use common::*;
use futures_lite::future::block_on;
use ipfrs_storage::{Block, BlockStore};
use ipfrs_versioning::{Error, Ledger, RefStore, Revision, Tensors};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Commit { branch: usize, rows: Vec<usize> },
    Branch { from: usize, to: usize },
    DeleteBranch(usize),
    Tag(usize),
    DeleteTag(usize),
    Gc,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3usize, prop::collection::vec(0..64usize, 0..4))
            .prop_map(|(branch, rows)| Op::Commit { branch, rows }),
        1 => (0..3usize, 0..3usize).prop_map(|(from, to)| Op::Branch { from, to }),
        1 => (0..3usize).prop_map(Op::DeleteBranch),
        1 => (0..3usize).prop_map(Op::Tag),
        1 => (0..3usize).prop_map(Op::DeleteTag),
        2 => Just(Op::Gc),
    ]
}

/// Checks every ref against the model and that every reachable block is stored.
fn check(fx: &Fixture, expected: &BTreeMap<String, Tensors>, foreign: &[Block]) {
    for (name, tensors) in expected {
        assert_eq!(&fx.checkout(name), tensors, "{name}");
    }
    let roots: Vec<cid::Cid> = fx
        .repo
        .refs()
        .list("")
        .unwrap()
        .iter()
        .map(|r| r.1)
        .collect();
    let dag = block_on(fx.repo.reachable(&roots)).unwrap();
    let all: Vec<cid::Cid> = dag.objects.iter().map(|o| o.0).chain(dag.leaves).collect();
    let present = block_on(fx.repo.store().has_many(&all)).unwrap();
    assert!(present.iter().all(|p| *p), "a reachable block is gone");
    let cids: Vec<cid::Cid> = foreign.iter().map(|b| *b.cid()).collect();
    let present = block_on(fx.repo.store().has_many(&cids)).unwrap();
    assert!(present.iter().all(|p| *p), "a foreign block is gone");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn gc_keeps_everything_reachable(ops in prop::collection::vec(op(), 1..24)) {
        let fx = Fixture::new();
        let base = model(42);
        // Blocks of another user of the store, one of them byte-identical to a chunk a
        // commit will write: neither may ever be swept.
        let chunk_twin = Block::new(base["layer0.weight"].data.slice(0..256)).unwrap();
        let foreign = vec![Block::new(&b"someone else's block"[..]).unwrap(), chunk_twin];
        block_on(fx.repo.store().put_many(&foreign)).unwrap();
        let mut expected: BTreeMap<String, Tensors> = BTreeMap::new();
        let mut tags: BTreeMap<String, Tensors> = BTreeMap::new();
        let names = ["main", "dev", "exp"];
        for op in ops {
            match op {
                Op::Commit { branch, rows } => {
                    let start = expected.get(names[branch]).cloned().unwrap_or_else(|| base.clone());
                    let next = nudge(&start, &rows, 0.125);
                    fx.commit(names[branch], &next, "c");
                    expected.insert(names[branch].to_string(), next);
                }
                Op::Branch { from, to } => {
                    if let Some(t) = expected.get(names[from]).cloned()
                        && !expected.contains_key(names[to])
                    {
                        block_on(fx.repo.create_branch(names[to], &Revision::Branch(names[from].into()))).unwrap();
                        expected.insert(names[to].to_string(), t);
                    }
                }
                Op::DeleteBranch(b) => {
                    if expected.remove(names[b]).is_some() {
                        fx.repo.delete_branch(names[b]).unwrap();
                    }
                }
                Op::Tag(b) => {
                    let tag = format!("t{b}");
                    if let Some(t) = expected.get(names[b]).cloned()
                        && !tags.contains_key(&tag)
                    {
                        block_on(fx.repo.create_tag(&tag, &Revision::Branch(names[b].into()))).unwrap();
                        tags.insert(tag, t);
                    }
                }
                Op::DeleteTag(b) => {
                    let tag = format!("t{b}");
                    if tags.remove(&tag).is_some() {
                        fx.repo.delete_tag(&tag).unwrap();
                    }
                }
                Op::Gc => {
                    block_on(fx.repo.gc(&[], false)).unwrap();
                }
            }
            let mut all = expected.clone();
            all.extend(tags.clone());
            check(&fx, &all, &foreign);
        }
        // Drop every ref: gc then sweeps every versioning block and nothing else.
        for (name, cid) in fx.repo.refs().list("").unwrap() {
            fx.repo.refs().compare_and_swap(&name, Some(cid), None).unwrap();
        }
        block_on(fx.repo.gc(&[], false)).unwrap();
        let stats = block_on(fx.repo.store().stats()).unwrap();
        prop_assert_eq!(stats.blocks, foreign.len() as u64);
        prop_assert!(fx.repo.ledger().recorded().unwrap().is_empty());
    }
}

#[test]
fn extra_roots_keep_an_unreferenced_commit_and_dry_run_deletes_nothing() {
    let fx = Fixture::new();
    let m = model(1);
    let c1 = fx.commit("main", &m, "one");
    let m2 = nudge(&m, &[3], 1.0);
    let c2 = fx.commit("main", &m2, "two");
    // Move main back to c1 and HEAD with it: c2 is now unreferenced.
    fx.repo
        .refs()
        .compare_and_swap("heads/main", Some(c2.commit), Some(c1.commit))
        .unwrap();
    fx.repo
        .refs()
        .compare_and_swap("HEAD", Some(c2.commit), Some(c1.commit))
        .unwrap();
    let kept = block_on(fx.repo.gc(&[c2.commit], false)).unwrap();
    assert!(kept.swept.is_empty(), "{kept}");
    assert_eq!(fx.checkout(&c2.commit.to_string()), m2);
    let dry = block_on(fx.repo.gc(&[], true)).unwrap();
    assert!(!dry.swept.is_empty());
    assert_eq!(
        fx.checkout(&c2.commit.to_string()),
        m2,
        "a dry run deletes nothing"
    );
    // Keys the caller holds (the store's pins) are kept: here c2's commit block.
    let held: std::collections::HashSet<Vec<u8>> = [c2.commit.hash().to_bytes()].into();
    let pinned = block_on(fx.repo.gc_keeping(&[], &held, false)).unwrap();
    assert_eq!(pinned.held, 1, "{pinned}");
    assert!(!pinned.swept.contains(&c2.commit), "{pinned}");
    assert!(block_on(fx.repo.store().has(&c2.commit)).unwrap());
    let mut rest = dry.swept.clone();
    rest.retain(|c| *c != c2.commit);
    assert_eq!(pinned.swept, rest);
    let real = block_on(fx.repo.gc(&[], false)).unwrap();
    assert_eq!(real.swept, [c2.commit]);
    assert!(pinned.freed_bytes > 0);
    // c2 is gone whole (its state and delta with the first sweep); c1 is whole.
    assert!(real.swept.contains(&c2.commit));
    let err = block_on(fx.repo.checkout(&Revision::Commit(c2.commit))).unwrap_err();
    assert!(matches!(err, Error::MissingBlock { .. }), "{err}");
    assert_eq!(fx.checkout("main"), m);
}

#[test]
fn gc_running_during_commits_never_breaks_a_branch() {
    let fx = Fixture::new();
    let base = model(2);
    std::thread::scope(|s| {
        for t in 0..2usize {
            let fx = &fx;
            let base = &base;
            s.spawn(move || {
                let branch = format!("w{t}");
                for i in 0..8 {
                    fx.commit(&branch, &nudge(base, &[i, t * 10], i as f32), "c");
                }
            });
        }
        let fx = &fx;
        s.spawn(move || {
            for _ in 0..10 {
                block_on(fx.repo.gc(&[], false)).unwrap();
            }
        });
    });
    for t in 0..2usize {
        assert_eq!(
            fx.checkout(&format!("w{t}")),
            nudge(&base, &[7, t * 10], 7.0)
        );
        let log = block_on(fx.repo.log(&format!("w{t}").parse().unwrap(), None)).unwrap();
        assert_eq!(log.entries.len(), 8);
        for e in &log.entries {
            block_on(fx.repo.checkout(&Revision::Commit(e.cid))).unwrap();
        }
    }
}
