//! State the shard writes and callers' threads read (see [`crate::read_view`]).

use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// A value only its shard's thread changes, which other threads may read.
///
/// The shard's code reads it as it read the `RefCell` it replaced (`borrow`, `borrow_mut`),
/// and the same rule keeps it from deadlocking: the shard never holds a borrow across an
/// `await`, nor borrows mutably while it holds a borrow. Readers on other threads only ever
/// take read locks, or `try_borrow_mut`, which never waits, so the shard's writes wait at
/// most for a reader's lookup.
#[derive(Default)]
pub(crate) struct Shared<T>(RwLock<T>);

impl<T> Shared<T> {
    pub(crate) fn new(value: T) -> Shared<T> {
        Shared(RwLock::new(value))
    }

    /// Reads the value. A panic while it was held leaves it as the panic left it (a shard that
    /// panics stops; readers still see a consistent map, the writes are whole-value updates).
    pub(crate) fn borrow(&self) -> RwLockReadGuard<'_, T> {
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes the value (the shard's thread only).
    pub(crate) fn borrow_mut(&self) -> RwLockWriteGuard<'_, T> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes the value if nobody holds it now; never waits.
    pub(crate) fn try_borrow_mut(&self) -> Option<RwLockWriteGuard<'_, T>> {
        self.0.try_write().ok()
    }
}

/// Counts the shard's committed groups that deleted something. A reader notes it before a
/// cold read: if it has not moved when the reader acts on what it read (caches it, asks for
/// it to be promoted), no delete can have come in between.
#[derive(Default)]
pub(crate) struct Epoch(std::sync::atomic::AtomicU64);

impl Epoch {
    pub(crate) fn get(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Acquire)
    }

    /// A group that deleted something committed (the shard's thread only).
    pub(crate) fn advance(&self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }
}
