//! What the store must hold: the state of every block the campaign ever touched, derived
//! from the children's event logs and the parent's own checked operations.
//!
//! Each block is `Present` (must be found, bit-exact), `Absent` (must not be found: finding
//! it is a resurrection) or `Unknown` (either is allowed: an operation on it was in flight at
//! a kill, or its acknowledgement did not promise durability).
//!
//! Transitions, per event in log order:
//! - put issued: `Present` stays, otherwise `Unknown`; delete issued: `Absent` stays,
//!   otherwise `Unknown` (an unfinished operation may or may not have happened).
//! - put acknowledged: `Present`, delete acknowledged: `Absent` — in the modes whose
//!   acknowledgements are durable (sync, batch). With `none` an acknowledgement adds nothing
//!   to the intent: the block stays `Unknown` until a check observes it.
//! - CAR imports (all or nothing, in every mode: commit and rollback both flush the store):
//!   starting one changes nothing, as a crash before its commit is rolled back by the next
//!   open of the store (the child's, or the check's); so a block only an interrupted or
//!   failed import stored must read absent. When the commit starts, the import's blocks
//!   that were `Absent` become `Unknown` and form a group ([`Model::groups`]): the kill may
//!   land before or after the journal's removal, so all of them are stored or none is. The
//!   commit acknowledged: every block of the file is `Present`.
//! - a check settles every `Unknown` block it observed to what it saw: the parent then closes
//!   the engine cleanly (which flushes), so what was seen is durable from then on, and a
//!   later disappearance or reappearance is a bug in every mode.

use crate::torture::protocol::Event;

/// What the store must say about one block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Never touched, or deleted for sure.
    Absent,
    /// Stored for sure.
    Present,
    /// Either.
    Unknown,
}

/// The expected state of every block index `0..next`.
#[derive(Debug, Clone)]
pub struct Model {
    durable_acks: bool,
    states: Vec<State>,
    /// Indices touched since the last [`Model::settle`] (may repeat).
    touched: Vec<u64>,
    acked_puts: u64,
    acked_deletes: u64,
    /// The blocks of the import in progress (from its start to its end or the next child).
    import: Option<Vec<u64>>,
    /// Imports whose commit started and was not acknowledged: all or none of each stored.
    groups: Vec<Group>,
    acked_imports: u64,
}

/// An import whose commit was cut short: its blocks, and those the store did not hold for
/// sure before it (all of these are stored, or none is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Every block of the file.
    pub indices: Vec<u64>,
    /// The blocks that were `Absent` when the commit started.
    pub new: Vec<u64>,
}

impl Model {
    /// An empty store; `durable_acks`: whether acknowledgements promise durability.
    pub fn new(durable_acks: bool) -> Model {
        Model {
            durable_acks,
            states: Vec::new(),
            touched: Vec::new(),
            acked_puts: 0,
            acked_deletes: 0,
            import: None,
            groups: Vec::new(),
            acked_imports: 0,
        }
    }

    /// Imports whose commit was cut short since the last check.
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    /// Imports committed (acknowledged) so far.
    pub fn acked_imports(&self) -> u64 {
        self.acked_imports
    }

    /// Forgets the groups (after a check observed and settled their blocks).
    pub fn clear_groups(&mut self) {
        self.groups.clear();
    }

    /// The first index never used: a fresh block.
    pub fn next(&self) -> u64 {
        self.states.len() as u64
    }

    /// The expected state of block `index`.
    pub fn state(&self, index: u64) -> State {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.states.get(i).copied())
            .unwrap_or(State::Absent)
    }

    /// Acknowledged puts and deletes so far (children's and the parent's).
    pub fn acks(&self) -> (u64, u64) {
        (self.acked_puts, self.acked_deletes)
    }

    fn slot(&mut self, index: u64) -> &mut State {
        let i = usize::try_from(index).unwrap_or(usize::MAX);
        if i >= self.states.len() {
            // Indices are handed out densely by the parent, so this grows by a few at a time.
            self.states.resize(i.saturating_add(1), State::Absent);
        }
        self.touched.push(index);
        &mut self.states[i]
    }

    /// Applies one event of a child's log.
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::PutIssued(v) => {
                for &i in v {
                    let s = self.slot(i);
                    if *s != State::Present {
                        *s = State::Unknown;
                    }
                }
            }
            Event::DeleteIssued(v) => {
                for &i in v {
                    let s = self.slot(i);
                    if *s != State::Absent {
                        *s = State::Unknown;
                    }
                }
            }
            Event::PutAcked(v) => {
                self.acked_puts += v.len() as u64;
                if self.durable_acks {
                    for &i in v {
                        *self.slot(i) = State::Present;
                    }
                }
            }
            Event::DeleteAcked(v) => {
                self.acked_deletes += v.len() as u64;
                if self.durable_acks {
                    for &i in v {
                        *self.slot(i) = State::Absent;
                    }
                }
            }
            Event::ImportStarted { indices, .. } => {
                for &i in indices {
                    self.slot(i);
                }
                self.import = Some(indices.clone());
            }
            Event::ImportCommitting => {
                if let Some(indices) = self.import.clone() {
                    let mut new = Vec::new();
                    for &i in &indices {
                        let s = self.slot(i);
                        if *s == State::Absent {
                            *s = State::Unknown;
                            new.push(i);
                        }
                    }
                    self.groups.push(Group { indices, new });
                }
            }
            Event::ImportCommitted => {
                if let Some(indices) = self.import.take() {
                    self.groups.retain(|g| g.indices != indices);
                    self.acked_imports += 1;
                    for i in indices {
                        *self.slot(i) = State::Present;
                    }
                }
            }
            Event::ImportAborted(_) | Event::Opening => self.import = None,
            Event::Ready
            | Event::CompactStarted
            | Event::CompactDone(_)
            | Event::ImportBegun
            | Event::ImportAborting
            | Event::RollbackStarted
            | Event::RollbackDone { .. }
            | Event::Failed(_) => {}
        }
    }

    /// Records an operation the parent made and made durable (a clean close follows).
    pub fn record_firm(&mut self, index: u64, present: bool) {
        if present {
            self.acked_puts += 1;
        } else {
            self.acked_deletes += 1;
        }
        *self.slot(index) = if present {
            State::Present
        } else {
            State::Absent
        };
    }

    /// Settles a block to what a check saw (see the module doc).
    pub fn settle(&mut self, index: u64, present: bool) {
        if let Some(s) = usize::try_from(index)
            .ok()
            .and_then(|i| self.states.get_mut(i))
        {
            *s = if present {
                State::Present
            } else {
                State::Absent
            };
        }
    }

    /// Forgets which indices were touched (after a check).
    pub fn clear_touched(&mut self) {
        self.touched.clear();
    }

    /// Indices touched since the last check, each once, ascending.
    pub fn touched(&self) -> Vec<u64> {
        let mut v = self.touched.clone();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Indices in a state.
    pub fn indices(&self, state: State) -> Vec<u64> {
        (0..self.next())
            .filter(|&i| self.state(i) == state)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Event::*;

    #[test]
    fn durable_acks_decide_and_unfinished_operations_stay_open() {
        let mut m = Model::new(true);
        for e in [
            PutIssued(vec![0, 1, 2]),
            PutAcked(vec![0, 1, 2]),
            DeleteIssued(vec![1]),
            DeleteAcked(vec![1]),
            DeleteIssued(vec![2]),
            PutIssued(vec![3]),
            PutIssued(vec![0]),
            DeleteIssued(vec![1]),
        ] {
            m.apply(&e);
        }
        assert_eq!(m.state(0), State::Present, "re-put of a present block");
        assert_eq!(m.state(1), State::Absent, "re-delete of a deleted block");
        assert_eq!(m.state(2), State::Unknown, "delete in flight");
        assert_eq!(m.state(3), State::Unknown, "put in flight");
        assert_eq!(m.state(9), State::Absent, "never touched");
        assert_eq!(m.acks(), (3, 1));
        assert_eq!(m.touched(), vec![0, 1, 2, 3]);
        m.settle(2, false);
        m.settle(3, true);
        assert_eq!((m.state(2), m.state(3)), (State::Absent, State::Present));
    }

    #[test]
    fn imports_change_nothing_until_their_commit_and_a_cut_commit_is_a_group() {
        let mut m = Model::new(true);
        m.apply(&PutIssued(vec![0]));
        m.apply(&PutAcked(vec![0]));
        // Killed mid-import: rolled back, so nothing of it, and block 0 stays.
        m.apply(&ImportStarted {
            faulty: false,
            indices: vec![0, 1, 2],
        });
        m.apply(&ImportBegun);
        assert_eq!(
            [m.state(0), m.state(1), m.state(2)],
            [State::Present, State::Absent, State::Absent]
        );
        assert_eq!(m.next(), 3);
        // The next child imports again and is killed during the commit.
        m.apply(&Opening);
        m.apply(&ImportStarted {
            faulty: false,
            indices: vec![1, 0, 3],
        });
        m.apply(&ImportCommitting);
        assert_eq!(
            m.groups(),
            &[Group {
                indices: vec![1, 0, 3],
                new: vec![1, 3]
            }]
        );
        assert_eq!([m.state(1), m.state(3)], [State::Unknown, State::Unknown]);
        m.clear_groups();
        // A committed import: every block present, no group left.
        m.apply(&ImportStarted {
            faulty: false,
            indices: vec![4, 0],
        });
        m.apply(&ImportCommitting);
        m.apply(&ImportCommitted);
        assert!(m.groups().is_empty());
        assert_eq!([m.state(4), m.state(0)], [State::Present, State::Present]);
        assert_eq!(m.acked_imports(), 1);
        // A faulty import rolled back by itself: a later commit ack refers to nothing.
        m.apply(&ImportStarted {
            faulty: true,
            indices: vec![5],
        });
        m.apply(&ImportAborting);
        m.apply(&ImportAborted(1));
        m.apply(&ImportCommitted);
        assert_eq!(m.state(5), State::Absent);
        assert_eq!(m.acked_imports(), 1);
    }

    #[test]
    fn acks_without_durability_leave_blocks_unknown() {
        let mut m = Model::new(false);
        m.record_firm(0, true);
        for e in [
            PutIssued(vec![1]),
            PutAcked(vec![1]),
            DeleteIssued(vec![0]),
            DeleteAcked(vec![0]),
        ] {
            m.apply(&e);
        }
        assert_eq!(m.state(0), State::Unknown);
        assert_eq!(m.state(1), State::Unknown);
        assert_eq!(m.acks(), (2, 1));
    }
}
