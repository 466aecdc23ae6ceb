//! The child's event log: one line per event on its stdout, read by the parent.
//!
//! An intent line (`P`, `D`) is written before the operation starts and an acknowledgement
//! line (`p`, `d`) after the engine returned, each with one write to the pipe. A pipe keeps
//! what was written when its writer is killed, so after a SIGKILL the parent still reads
//! every acknowledgement the child made: an operation without its ack line was never
//! acknowledged to anyone, and one without its intent line never started.

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
        for line in ["", "x 1", "P 1 two", "c", "test crash ... "] {
            assert!(
                matches!(Event::parse(line), Err(Error::Protocol(_))),
                "{line:?}"
            );
        }
    }
}
