//! Concurrent commits to one branch lose nothing: each either lands or gets a Conflict and
//! retries, and the final history holds every commit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use futures_lite::future::block_on;
use ipfrs_versioning::{CommitInfo, Error, Revision};

#[test]
fn racing_committers_lose_nothing() {
    const THREADS: usize = 4;
    const EACH: usize = 6;
    let fx = Fixture::new();
    let base = model(1);
    fx.commit("main", &base, "root");
    let conflicts = AtomicUsize::new(0);
    let landed: Vec<cid::Cid> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (fx, base, conflicts) = (&fx, &base, &conflicts);
                s.spawn(move || {
                    let mut mine = Vec::new();
                    for i in 0..EACH {
                        let tensors = nudge(base, &[t * EACH + i], 1.0);
                        loop {
                            let info = CommitInfo {
                                message: format!("thread {t} commit {i}"),
                                ..info("")
                            };
                            match block_on(fx.repo.commit("main", &tensors, info)) {
                                Ok(s) => {
                                    mine.push(s.commit);
                                    break;
                                }
                                Err(Error::Conflict { name, .. }) => {
                                    assert_eq!(name, "heads/main");
                                    conflicts.fetch_add(1, Ordering::Relaxed);
                                }
                                Err(e) => panic!("{e}"),
                            }
                        }
                    }
                    mine
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert_eq!(landed.len(), THREADS * EACH);
    let log = block_on(fx.repo.log(&Revision::Branch("main".into()), None)).unwrap();
    assert_eq!(log.entries.len(), THREADS * EACH + 1);
    let in_log: HashSet<cid::Cid> = log.entries.iter().map(|e| e.cid).collect();
    assert!(landed.iter().all(|c| in_log.contains(c)));
    // The history is one chain: every commit but the root has exactly one parent, and
    // no two commits share a parent (a lost update would fork it).
    let parents: Vec<cid::Cid> = log
        .entries
        .iter()
        .flat_map(|e| e.commit.parents.clone())
        .collect();
    assert_eq!(parents.len(), THREADS * EACH);
    assert_eq!(parents.iter().collect::<HashSet<_>>().len(), parents.len());
    let messages: HashSet<String> = log
        .entries
        .iter()
        .map(|e| e.commit.message.clone())
        .collect();
    for t in 0..THREADS {
        for i in 0..EACH {
            assert!(messages.contains(&format!("thread {t} commit {i}")));
        }
    }
    eprintln!("{} conflicts retried", conflicts.load(Ordering::Relaxed));
}
