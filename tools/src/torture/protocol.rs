//! The child's event log: one line per event on its stdout, read by the parent.
//!
//! An intent line (`P`, `D`) is written before the operation starts and an acknowledgement
//! line (`p`, `d`) after the engine returned, each with one write to the pipe. A pipe keeps
//! what was written when its writer is killed, so after a SIGKILL the parent still reads
//! every acknowledgement the child made: an operation without its ack line was never
//! acknowledged to anyone, and one without its intent line never started.
//!
//! A CAR import (`--workload car`) is logged at each step that changes what a crash leaves:
//! `I` before its journal is created (with the flag saying whether the file is faulty and
//! the block indices of its sections, in file order), `B` once the journal exists, `K` when
//! every block verified and stored and the commit (store flush, journal removal) starts, `k`
//! when it returned; for a faulty file `A` when the rollback starts and `a` when it
//! returned. `R` and `r` bracket the rollback of journals left by an earlier child, which a
//! child runs right after opening the store, as every `ipfrs-store` command does.

use crate::torture::error::{Error, Result};

/// One line of the child's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// About to open the store (recovery runs inside the open).
    Opening,
    /// The store is open.
    Ready,
    /// These blocks are about to be put (one `put_many`).
    PutIssued(Vec<u64>),
    /// The put of these blocks was acknowledged.
    PutAcked(Vec<u64>),
    /// These blocks are about to be deleted (one `delete_many`).
    DeleteIssued(Vec<u64>),
    /// The delete of these blocks was acknowledged.
    DeleteAcked(Vec<u64>),
    /// `Engine::compact` started.
    CompactStarted,
    /// `Engine::compact` returned, having compacted this many segments.
    CompactDone(u64),
    /// A CAR import is about to begin: whether its file is faulty (a corrupt or truncated
    /// section, so it must fail), and the block index of each section, in file order.
    ImportStarted {
        /// The file has a fault and must be rolled back.
        faulty: bool,
        /// Section by section (may repeat an index).
        indices: Vec<u64>,
    },
    /// The import's journal exists (`Import::begin` returned).
    ImportBegun,
    /// Every block verified and was stored: `Import::commit` starts.
    ImportCommitting,
    /// `Import::commit` returned: the import is permanent.
    ImportCommitted,
    /// The faulty file was refused as it must be: `Import::abort` starts.
    ImportAborting,
    /// `Import::abort` returned, having deleted this many blocks.
    ImportAborted(u64),
    /// Journals of interrupted imports were found: their rollback (`recover`) starts.
    RollbackStarted,
    /// The rollback returned: journals removed, blocks deleted.
    RollbackDone {
        /// Journals rolled back.
        journals: u64,
        /// Blocks deleted.
        deleted: u64,
    },
    /// An operation failed: the child stops with this message.
    Failed(String),
}

impl Event {
    /// The event as one line (with its newline).
    pub fn to_line(&self) -> String {
        let list = |tag: &str, indices: &[u64]| {
            let mut line = tag.to_owned();
            for i in indices {
                line.push(' ');
                line.push_str(&i.to_string());
            }
            line
        };
        let mut line = match self {
            Event::Opening => "open".to_owned(),
            Event::Ready => "ready".to_owned(),
            Event::PutIssued(v) => list("P", v),
            Event::PutAcked(v) => list("p", v),
            Event::DeleteIssued(v) => list("D", v),
            Event::DeleteAcked(v) => list("d", v),
            Event::CompactStarted => "C".to_owned(),
            Event::CompactDone(n) => format!("c {n}"),
            Event::ImportStarted { faulty, indices } => {
                list(&format!("I {}", u8::from(*faulty)), indices)
            }
            Event::ImportBegun => "B".to_owned(),
            Event::ImportCommitting => "K".to_owned(),
            Event::ImportCommitted => "k".to_owned(),
            Event::ImportAborting => "A".to_owned(),
            Event::ImportAborted(n) => format!("a {n}"),
            Event::RollbackStarted => "R".to_owned(),
            Event::RollbackDone { journals, deleted } => format!("r {journals} {deleted}"),
            // One line whatever the message holds.
            Event::Failed(msg) => format!("E {}", msg.replace('\n', " ")),
        };
        line.push('\n');
        line
    }

    /// Parses one line (without its newline).
    pub fn parse(line: &str) -> Result<Event> {
        let bad = || Error::Protocol(line.to_owned());
        let (tag, rest) = line.split_once(' ').unwrap_or((line, ""));
        let indices = || -> Result<Vec<u64>> {
            rest.split_ascii_whitespace()
                .map(|w| w.parse().map_err(|_| bad()))
                .collect()
        };
        Ok(match tag {
            "open" => Event::Opening,
            "ready" => Event::Ready,
            "P" => Event::PutIssued(indices()?),
            "p" => Event::PutAcked(indices()?),
            "D" => Event::DeleteIssued(indices()?),
            "d" => Event::DeleteAcked(indices()?),
            "C" => Event::CompactStarted,
            "c" => Event::CompactDone(rest.trim().parse().map_err(|_| bad())?),
            "I" => match indices()?.split_first() {
                Some((&flag @ (0 | 1), indices)) => Event::ImportStarted {
                    faulty: flag == 1,
                    indices: indices.to_vec(),
                },
                _ => return Err(bad()),
            },
            "B" => Event::ImportBegun,
            "K" => Event::ImportCommitting,
            "k" => Event::ImportCommitted,
            "A" => Event::ImportAborting,
            "a" => Event::ImportAborted(rest.trim().parse().map_err(|_| bad())?),
            "R" => Event::RollbackStarted,
            "r" => match indices()?.as_slice() {
                &[journals, deleted] => Event::RollbackDone { journals, deleted },
                _ => return Err(bad()),
            },
            "E" => Event::Failed(rest.to_owned()),
            _ => return Err(bad()),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn event() -> impl Strategy<Value = Event> {
        let v = || prop::collection::vec(any::<u64>(), 0..6);
        prop_oneof![
            Just(Event::Opening),
            Just(Event::Ready),
            v().prop_map(Event::PutIssued),
            v().prop_map(Event::PutAcked),
            v().prop_map(Event::DeleteIssued),
            v().prop_map(Event::DeleteAcked),
            Just(Event::CompactStarted),
            any::<u64>().prop_map(Event::CompactDone),
            (any::<bool>(), v())
                .prop_map(|(faulty, indices)| Event::ImportStarted { faulty, indices }),
            Just(Event::ImportBegun),
            Just(Event::ImportCommitting),
            Just(Event::ImportCommitted),
            Just(Event::ImportAborting),
            any::<u64>().prop_map(Event::ImportAborted),
            Just(Event::RollbackStarted),
            (any::<u64>(), any::<u64>())
                .prop_map(|(journals, deleted)| Event::RollbackDone { journals, deleted }),
            "[a-z ]{0,20}".prop_map(Event::Failed),
        ]
    }

    proptest! {
        #[test]
        fn every_event_round_trips_through_its_line(e in event()) {
            let line = e.to_line();
            prop_assert!(line.ends_with('\n'));
            prop_assert_eq!(Event::parse(line.trim_end_matches('\n')).unwrap(), e);
        }
    }

    #[test]
    fn garbage_is_a_protocol_error() {
        for line in [
            "",
            "x 1",
            "P 1 two",
            "c",
            "test crash ... ",
            "I",
            "I 2 5",
            "r 1",
            "a",
        ] {
            assert!(
                matches!(Event::parse(line), Err(Error::Protocol(_))),
                "{line:?}"
            );
        }
    }
}
