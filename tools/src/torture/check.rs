//! The checker: compares what a reopened store answered with what the [`Model`] requires.
//!
//! It is a pure function of the model and the observations, so its verdicts are tested on
//! synthetic logs and store states without any engine (see the tests below).

use std::collections::{HashMap, HashSet};
use std::fmt;

use bytes::Bytes;
use ipfrs_storage::Cid;

use crate::torture::model::{Model, State};
use crate::torture::workload::block;

/// What a read of one block returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// The block's bytes.
    Present(Bytes),
    /// `None`: not stored.
    Absent,
    /// `Error::Corrupt`.
    Corrupt(String),
    /// Any other error.
    Failed(String),
}

/// One block read by a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// The block's index.
    pub index: u64,
    /// What `get` returned.
    pub read: Read,
}

/// A broken promise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// A block that must be stored is not.
    Lost {
        /// The block.
        index: u64,
    },
    /// A block whose deletion was acknowledged (or seen) is back.
    Resurrected {
        /// The block.
        index: u64,
    },
    /// Bytes served that are not the block's.
    WrongBytes {
        /// The block.
        index: u64,
    },
    /// The engine reported a stored block corrupt.
    Corrupt {
        /// The block.
        index: u64,
        /// The engine's message.
        reason: String,
    },
    /// A read failed.
    ReadFailed {
        /// The block.
        index: u64,
        /// The engine's message.
        reason: String,
    },
    /// The listing holds a block that was never put.
    Foreign {
        /// The listed CID.
        cid: Cid,
    },
    /// The listing holds a block that must be absent.
    ListedAbsent {
        /// The block.
        index: u64,
    },
    /// The listing misses a block that must be stored.
    Unlisted {
        /// The block.
        index: u64,
    },
    /// An import killed during its commit is neither wholly stored nor wholly rolled back.
    HalfVisibleImport {
        /// Blocks of the file read back.
        stored: Vec<u64>,
        /// Blocks of the file absent though others of it are stored.
        missing: Vec<u64>,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cid = |i: &u64| block(*i).cid().to_string();
        match self {
            Violation::Lost { index } => {
                write!(f, "lost: block {index} ({}) must be stored", cid(index))
            }
            Violation::Resurrected { index } => write!(
                f,
                "resurrected: block {index} ({}) was deleted (or stored only by an import \
                 that did not commit) and is there",
                cid(index)
            ),
            Violation::WrongBytes { index } => {
                write!(f, "wrong bytes served for block {index} ({})", cid(index))
            }
            Violation::Corrupt { index, reason } => {
                write!(
                    f,
                    "block {index} ({}) reported corrupt: {reason}",
                    cid(index)
                )
            }
            Violation::ReadFailed { index, reason } => {
                write!(f, "read of block {index} ({}) failed: {reason}", cid(index))
            }
            Violation::Foreign { cid } => write!(f, "listing holds {cid}, never put"),
            Violation::ListedAbsent { index } => write!(
                f,
                "resurrected in listing: block {index} ({}) was deleted (or stored only by \
                 an import that did not commit)",
                cid(index)
            ),
            Violation::Unlisted { index } => write!(
                f,
                "listing misses block {index} ({}), which must be stored",
                cid(index)
            ),
            Violation::HalfVisibleImport { stored, missing } => write!(
                f,
                "half-visible import (killed in its commit): {} of its blocks stored, {} \
                 absent, e.g. block {} ({})",
                stored.len(),
                missing.len(),
                missing[0],
                cid(&missing[0])
            ),
        }
    }
}

/// Judges the observations and the full listing against the model. `cids` maps the CID of
/// every block index the campaign used back to its index. Every `Present` block of the model
/// must be listed; the reads need only cover the blocks the caller chose to read.
pub fn check(
    model: &Model,
    observations: &[Observation],
    listed: &[Cid],
    cids: &HashMap<Cid, u64>,
) -> Vec<Violation> {
    let mut violations = Vec::new();
    for o in observations {
        let expected = model.state(o.index);
        match (&o.read, expected) {
            (Read::Present(data), _) => {
                if data.as_ref() != block(o.index).data().as_ref() {
                    violations.push(Violation::WrongBytes { index: o.index });
                } else if expected == State::Absent {
                    violations.push(Violation::Resurrected { index: o.index });
                }
            }
            (Read::Absent, State::Present) => violations.push(Violation::Lost { index: o.index }),
            (Read::Absent, _) => {}
            (Read::Corrupt(reason), _) => violations.push(Violation::Corrupt {
                index: o.index,
                reason: reason.clone(),
            }),
            (Read::Failed(reason), _) => violations.push(Violation::ReadFailed {
                index: o.index,
                reason: reason.clone(),
            }),
        }
    }
    let mut seen = HashSet::with_capacity(listed.len());
    for cid in listed {
        match cids.get(cid) {
            None => violations.push(Violation::Foreign { cid: *cid }),
            Some(&index) => {
                seen.insert(index);
                if model.state(index) == State::Absent {
                    violations.push(Violation::ListedAbsent { index });
                }
            }
        }
    }
    for index in model.indices(State::Present) {
        if !seen.contains(&index) {
            violations.push(Violation::Unlisted { index });
        }
    }
    violations
}

/// Judges the imports whose commit a kill cut short ([`Model::groups`]): each is stored
/// whole (every block of the file) or not at all (none of the blocks it was the first to
/// store). Blocks the observations do not cover are not judged.
pub fn check_imports(model: &Model, observations: &[Observation]) -> Vec<Violation> {
    let seen: HashMap<u64, bool> = observations
        .iter()
        .map(|o| (o.index, matches!(o.read, Read::Present(_))))
        .collect();
    let mut violations = Vec::new();
    for group in model.groups() {
        let stored: Vec<u64> = group
            .new
            .iter()
            .copied()
            .filter(|i| seen.get(i) == Some(&true))
            .collect();
        if stored.is_empty() {
            // Rolled back (or nothing was new): blocks stored before stay, as the model says.
            continue;
        }
        // Committed: then every block of the file is stored.
        let mut missing: Vec<u64> = group
            .indices
            .iter()
            .copied()
            .filter(|i| seen.get(i) == Some(&false))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if !missing.is_empty() {
            violations.push(Violation::HalfVisibleImport { stored, missing });
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::torture::protocol::Event::{self, *};
    use proptest::prelude::*;

    /// A store that did exactly what the log says: the blocks whose last event was an
    /// acknowledged put.
    fn faithful_store(log: &[Event]) -> HashSet<u64> {
        let mut stored = HashSet::new();
        for e in log {
            match e {
                PutAcked(v) => stored.extend(v.iter().copied()),
                DeleteAcked(v) => v.iter().for_each(|i| {
                    stored.remove(i);
                }),
                _ => {}
            }
        }
        stored
    }

    fn run(log: &[Event], durable: bool, stored: &HashSet<u64>) -> Vec<Violation> {
        let mut model = Model::new(durable);
        log.iter().for_each(|e| model.apply(e));
        let cids: HashMap<Cid, u64> = (0..model.next() + 4)
            .map(|i| (*block(i).cid(), i))
            .collect();
        let observations: Vec<Observation> = (0..model.next())
            .map(|index| Observation {
                index,
                read: if stored.contains(&index) {
                    Read::Present(block(index).data().clone())
                } else {
                    Read::Absent
                },
            })
            .collect();
        let mut listed: Vec<Cid> = stored.iter().map(|&i| *block(i).cid()).collect();
        listed.sort();
        check(&model, &observations, &listed, &cids)
    }

    fn log() -> Vec<Event> {
        vec![
            PutIssued(vec![0, 1, 2, 3]),
            PutAcked(vec![0, 1, 2, 3]),
            DeleteIssued(vec![1, 2]),
            DeleteAcked(vec![1, 2]),
            PutIssued(vec![4]),
            DeleteIssued(vec![3]),
        ]
    }

    #[test]
    fn a_faithful_store_passes() {
        assert_eq!(run(&log(), true, &faithful_store(&log())), vec![]);
    }

    #[test]
    fn unfinished_operations_may_go_either_way() {
        let mut stored = faithful_store(&log());
        stored.insert(4);
        stored.remove(&3);
        assert_eq!(run(&log(), true, &stored), vec![]);
    }

    #[test]
    fn a_missing_acknowledged_block_is_lost_and_unlisted() {
        let mut stored = faithful_store(&log());
        stored.remove(&0);
        assert_eq!(
            run(&log(), true, &stored),
            vec![
                Violation::Lost { index: 0 },
                Violation::Unlisted { index: 0 }
            ]
        );
    }

    #[test]
    fn a_deleted_block_that_comes_back_is_resurrected() {
        let mut stored = faithful_store(&log());
        stored.insert(2);
        assert_eq!(
            run(&log(), true, &stored),
            vec![
                Violation::Resurrected { index: 2 },
                Violation::ListedAbsent { index: 2 }
            ]
        );
    }

    #[test]
    fn without_durable_acks_loss_and_return_are_allowed() {
        let mut stored = faithful_store(&log());
        stored.remove(&0);
        stored.insert(2);
        assert_eq!(run(&log(), false, &stored), vec![]);
    }

    #[test]
    fn wrong_bytes_corruption_and_foreign_blocks_fail_in_every_mode() {
        for durable in [true, false] {
            let mut model = Model::new(durable);
            log().iter().for_each(|e| model.apply(e));
            let cids: HashMap<Cid, u64> = (0..5).map(|i| (*block(i).cid(), i)).collect();
            let observations = vec![
                Observation {
                    index: 0,
                    read: Read::Present(block(1).data().clone()),
                },
                Observation {
                    index: 4,
                    read: Read::Corrupt("bad checksum".into()),
                },
            ];
            let foreign = *block(99).cid();
            let listed = vec![*block(0).cid(), *block(3).cid(), foreign];
            let v = check(&model, &observations, &listed, &cids);
            assert!(v.contains(&Violation::WrongBytes { index: 0 }), "{v:?}");
            assert!(v.contains(&Violation::Corrupt {
                index: 4,
                reason: "bad checksum".into()
            }));
            assert!(v.contains(&Violation::Foreign { cid: foreign }));
        }
    }

    #[test]
    fn an_import_cut_in_its_commit_must_be_whole_or_gone() {
        let mut model = Model::new(true);
        for e in [
            PutIssued(vec![0]),
            PutAcked(vec![0]),
            ImportStarted {
                faulty: false,
                indices: vec![1, 0, 2, 3],
            },
            ImportBegun,
            ImportCommitting,
        ] {
            model.apply(&e);
        }
        let observe = |present: &[u64]| -> Vec<Observation> {
            (0..4)
                .map(|index| Observation {
                    index,
                    read: if present.contains(&index) {
                        Read::Present(block(index).data().clone())
                    } else {
                        Read::Absent
                    },
                })
                .collect()
        };
        assert_eq!(check_imports(&model, &observe(&[0, 1, 2, 3])), vec![]);
        assert_eq!(check_imports(&model, &observe(&[0])), vec![]);
        assert_eq!(
            check_imports(&model, &observe(&[0, 2])),
            vec![Violation::HalfVisibleImport {
                stored: vec![2],
                missing: vec![1, 3]
            }]
        );
        // Committed, yet the block stored before the import is gone: also caught by `check`
        // (block 0 is `Present`), and here as a half-visible import.
        assert_eq!(
            check_imports(&model, &observe(&[1, 2, 3])),
            vec![Violation::HalfVisibleImport {
                stored: vec![1, 2, 3],
                missing: vec![0]
            }]
        );
    }

    #[test]
    fn blocks_only_an_interrupted_or_failed_import_stored_must_be_absent() {
        for faulty in [false, true] {
            let log = vec![
                PutIssued(vec![0]),
                PutAcked(vec![0]),
                ImportStarted {
                    faulty,
                    indices: vec![0, 1],
                },
                ImportBegun,
                ImportAborting,
            ];
            let stored: HashSet<u64> = [0, 1].into();
            assert_eq!(
                run(&log, true, &stored),
                vec![
                    Violation::Resurrected { index: 1 },
                    Violation::ListedAbsent { index: 1 }
                ]
            );
            let stored: HashSet<u64> = [1].into();
            assert_eq!(
                run(&log, true, &stored),
                vec![
                    Violation::Lost { index: 0 },
                    Violation::Resurrected { index: 1 },
                    Violation::ListedAbsent { index: 1 },
                    Violation::Unlisted { index: 0 }
                ]
            );
        }
    }

    /// Logs as a child writes them: each operation's intent, then maybe its acknowledgement
    /// (the last operation of a child may be cut short by the kill, and a log may hold many
    /// children's runs).
    fn random_log() -> impl Strategy<Value = Vec<Event>> {
        let op = (
            any::<bool>(),
            any::<bool>(),
            prop::collection::vec(0u64..12, 1..4),
        );
        prop::collection::vec(op, 0..30).prop_map(|ops| {
            ops.into_iter()
                .flat_map(|(put, acked, v)| {
                    let (intent, ack) = if put {
                        (PutIssued(v.clone()), PutAcked(v))
                    } else {
                        (DeleteIssued(v.clone()), DeleteAcked(v))
                    };
                    if acked {
                        vec![intent, ack]
                    } else {
                        vec![intent]
                    }
                })
                .collect()
        })
    }

    proptest! {
        /// Any log, a store that applied exactly its acknowledged operations: no violation;
        /// the same store with one acknowledged block flipped: a violation in durable modes.
        #[test]
        fn faithful_stores_pass_and_one_flip_is_caught(log in random_log(), flip in 0u64..12) {
            let stored = faithful_store(&log);
            prop_assert_eq!(run(&log, true, &stored), vec![]);
            prop_assert_eq!(run(&log, false, &stored), vec![]);
            let mut model = Model::new(true);
            log.iter().for_each(|e| model.apply(e));
            let mut flipped = stored.clone();
            if !flipped.remove(&flip) {
                flipped.insert(flip);
            }
            let firm = model.state(flip) != State::Unknown;
            prop_assert_eq!(!run(&log, true, &flipped).is_empty(), firm);
        }
    }
}
