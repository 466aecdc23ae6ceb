//! A backend library's panics turned into typed errors, at the one seam every call crosses.
//!
//! Libraries panic on damaged files: sled 0.34 panics while opening a store whose snapshot or
//! log has flipped bytes (found by engine/tests/cold_corruption.rs). A panic in a shard
//! thread ends the shard (every later call sees a stopped engine), and one in a blocking pool
//! leaves its caller waiting, so [`open_backend`](super::open_backend) wraps every backend in
//! [`PanicGuard`]: the panic becomes [`Error::Panicked`] naming the call. After such an error
//! the handle may be in any state; later calls may fail too, but none panics through.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};

use bytes::Bytes;
use ipfrs_core_types::BackendKind;

use crate::{ColdBackend, ColdDamage, Error, Result};

/// The text of a panic's payload (`panic!` with a literal or a formatted message).
pub fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(text) = payload.downcast_ref::<&str>() {
        text
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text
    } else {
        "a panic without a message"
    }
}

/// Runs `f`, turning a panic into [`Error::Panicked`] for `backend`, naming `call`.
pub(crate) fn guarded<T>(
    backend: BackendKind,
    call: &str,
    f: impl FnOnce() -> Result<T>,
) -> Result<T> {
    // Unwind safety: after a panic the library's state is suspect, which the error says; the
    // guard only promises that the panic does not cross into the engine.
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        Err(Error::Panicked {
            backend,
            call: call.to_owned(),
            message: panic_message(&*payload).to_owned(),
        })
    })
}

/// A backend whose panics are returned as errors; see the module documentation.
pub struct PanicGuard<B> {
    inner: B,
}

impl<B: ColdBackend> PanicGuard<B> {
    /// Wraps `inner`.
    pub fn new(inner: B) -> PanicGuard<B> {
        PanicGuard { inner }
    }
}

impl<B: ColdBackend> ColdBackend for PanicGuard<B> {
    fn kind(&self) -> BackendKind {
        self.inner.kind()
    }

    fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        guarded(self.kind(), "get", || self.inner.get(key))
    }

    fn size(&self, key: &[u8]) -> Result<Option<u64>> {
        guarded(self.kind(), "size", || self.inner.size(key))
    }

    fn contains(&self, key: &[u8]) -> Result<bool> {
        guarded(self.kind(), "contains", || self.inner.contains(key))
    }

    fn put_batch(&self, items: &[(Vec<u8>, Bytes)]) -> Result<()> {
        guarded(self.kind(), "put_batch", || self.inner.put_batch(items))
    }

    fn delete_batch(&self, keys: &[Vec<u8>]) -> Result<()> {
        guarded(self.kind(), "delete_batch", || {
            self.inner.delete_batch(keys)
        })
    }

    fn iterate(&self, after: Option<&[u8]>, f: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<()> {
        guarded(self.kind(), "iterate", || self.inner.iterate(after, f))
    }

    fn flush(&self) -> Result<()> {
        guarded(self.kind(), "flush", || self.inner.flush())
    }

    fn flush_is_durable(&self) -> bool {
        self.inner.flush_is_durable()
    }

    fn damage_at_open(&self) -> Option<ColdDamage> {
        self.inner.damage_at_open()
    }

    fn salvage(&self, f: &mut dyn FnMut(&[u8], &[u8])) -> Result<Option<u64>> {
        guarded(self.kind(), "salvage", || self.inner.salvage(f))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A backend that panics on every call, as sled does on some damaged files.
    struct Panicking;

    impl ColdBackend for Panicking {
        fn kind(&self) -> BackendKind {
            BackendKind::Sled
        }
        fn get(&self, _: &[u8]) -> Result<Option<Bytes>> {
            panic!("bad page {}", 7)
        }
        fn put_batch(&self, _: &[(Vec<u8>, Bytes)]) -> Result<()> {
            panic!("static message")
        }
        fn delete_batch(&self, _: &[Vec<u8>]) -> Result<()> {
            std::panic::panic_any(42u32)
        }
        fn iterate(&self, _: Option<&[u8]>, _: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<()> {
            panic!("iterate")
        }
        fn flush(&self) -> Result<()> {
            Ok(())
        }
    }

    fn message(result: Result<impl std::fmt::Debug>) -> String {
        match result {
            Err(err @ Error::Panicked { backend, .. }) => {
                assert_eq!(backend, BackendKind::Sled);
                err.to_string()
            }
            other => panic!("expected a backend error, got {other:?}"),
        }
    }

    #[test]
    fn panics_become_backend_errors_naming_the_call() {
        let guard = PanicGuard::new(Panicking);
        let get = message(guard.get(b"k"));
        assert!(
            get.contains("panicked in get") && get.ends_with("bad page 7"),
            "{get}"
        );
        // The default `size` and `contains` go through the inner `get`.
        assert!(message(guard.size(b"k")).contains("panicked in size"));
        assert!(message(guard.contains(b"k")).ends_with("bad page 7"));
        assert!(message(guard.put_batch(&[])).ends_with("static message"));
        assert!(message(guard.delete_batch(&[])).ends_with("a panic without a message"));
        assert!(message(guard.iterate(None, &mut |_, _| true)).contains("iterate"));
        guard.flush().unwrap();
    }
}
