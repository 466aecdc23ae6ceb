//! A cold backend whose files are damaged, kept open as far as it still can be.
//!
//! One bad page in a backend must not make the store unopenable: when the library refuses
//! to open its files, or the walk of its keys at open fails part-way, the shard serves its
//! hot tier over a [`DamagedBackend`] instead of failing. Every read it cannot answer fails
//! with the [`ColdDamage`] (never `None`, which would claim the block is absent), and the
//! damage stays on record for `repo verify` and `repo repair`.

use std::sync::Arc;

use bytes::Bytes;
use ipfrs_core_types::BackendKind;

use crate::{ColdBackend, ColdDamage, DamageStage, Error, Result};

/// A backend found damaged when the engine opened it; see the module documentation.
pub struct DamagedBackend {
    /// The library's handle, when it opened at all.
    inner: Option<Arc<dyn ColdBackend>>,
    damage: ColdDamage,
}

impl DamagedBackend {
    /// A backend the library refused to open: every call but `flush` fails with `damage`.
    pub fn unopenable(damage: ColdDamage) -> DamagedBackend {
        DamagedBackend {
            inner: None,
            damage,
        }
    }

    /// A backend that opened but lost data to damage (its key walk failed, or the library
    /// skipped damaged data while opening): reads and writes go to `inner`, a walk stops
    /// (without error) where the damage stops it, so listings still cover the keys before
    /// it, and a key `inner` does not have is an error, not `None`: it may be among the lost.
    /// `has`/`size` still answer from what is left (writes rely on them).
    pub fn walked(inner: Arc<dyn ColdBackend>, damage: ColdDamage) -> DamagedBackend {
        DamagedBackend {
            inner: Some(inner),
            damage,
        }
    }

    /// The damage found at open.
    pub fn damage(&self) -> &ColdDamage {
        &self.damage
    }

    fn inner(&self) -> Result<&dyn ColdBackend> {
        self.inner
            .as_deref()
            .ok_or_else(|| self.damage.clone().into_error())
    }
}

impl ColdBackend for DamagedBackend {
    fn kind(&self) -> BackendKind {
        self.damage.backend
    }

    fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        match self.inner()?.get(key)? {
            Some(value) => Ok(Some(value)),
            None => Err(ColdDamage {
                cause: format!(
                    "not found, and the backend lost data to damage, so it may have been \
                     there ({}); run `repo repair`",
                    self.damage.cause
                ),
                stage: DamageStage::Read,
                ..self.damage.clone()
            }
            .into_error()),
        }
    }

    fn size(&self, key: &[u8]) -> Result<Option<u64>> {
        self.inner()?.size(key)
    }

    fn contains(&self, key: &[u8]) -> Result<bool> {
        self.inner()?.contains(key)
    }

    fn put_batch(&self, items: &[(Vec<u8>, Bytes)]) -> Result<()> {
        self.inner()?.put_batch(items)
    }

    fn delete_batch(&self, keys: &[Vec<u8>]) -> Result<()> {
        self.inner()?.delete_batch(keys)
    }

    /// Visits what can still be walked: nothing when the backend did not open, the keys
    /// before the first failure otherwise. The keys past it are not listed; the damage
    /// (reported by the engine at open and by `repo verify`) says the listing is partial.
    fn iterate(&self, after: Option<&[u8]>, f: &mut dyn FnMut(&[u8], u64) -> bool) -> Result<()> {
        match &self.inner {
            None => Ok(()),
            Some(inner) => match inner.iterate(after, f) {
                Err(e) if is_damage(&e) => Ok(()),
                other => other,
            },
        }
    }

    /// Nothing was written to a backend that did not open; one that did flushes as usual.
    fn flush(&self) -> Result<()> {
        match &self.inner {
            None => Ok(()),
            Some(inner) => inner.flush(),
        }
    }

    fn damage_at_open(&self) -> Option<ColdDamage> {
        Some(self.damage.clone())
    }

    fn flush_is_durable(&self) -> bool {
        self.inner
            .as_ref()
            .is_none_or(|inner| inner.flush_is_durable())
    }
}

/// Whether `err` comes from damaged files (a refused read, or a library panic) rather than
/// from the environment.
pub fn is_damage(err: &Error) -> bool {
    match err {
        Error::Backend { message, .. } => message.contains("the library panicked"),
        other => other.damage().is_some(),
    }
}

/// The damage an open failure means, or `None` when the failure is not the files' fault (a
/// lock held by another process, a directory that cannot be created, a backend not in this
/// build): those still fail the open.
pub fn damage_of_open_error(
    kind: BackendKind,
    dir: &std::path::Path,
    err: &Error,
) -> Option<ColdDamage> {
    let cause = match err {
        Error::Io { .. } => return err.damage().cloned(),
        Error::NotCompiled(_) => return None,
        Error::Backend { message, .. } => message.clone(),
    };
    // Messages of sled, parity-db and rocksdb (and the OS) for causes outside the files.
    const NOT_DAMAGE: [&str; 6] = [
        "could not acquire lock",
        "file is in use",
        "lock file",
        "ermission denied",
        "No space left",
        "Too many open files",
    ];
    if NOT_DAMAGE.iter().any(|m| cause.contains(m)) {
        return None;
    }
    Some(ColdDamage {
        backend: kind,
        path: dir.to_path_buf(),
        stage: DamageStage::Open,
        cause,
    })
}

/// Width, in bytes, of the numbers [`resume_after_damage`] probes with: longer than any
/// multihash key of a supported hash (2 + 64 bytes) is not needed, as probing only has to
/// move forward past a damaged part.
const PROBE_WIDTH: usize = 40;

/// Whether a walk starting after `after` gets past its first step without damage.
fn walks_from(backend: &dyn ColdBackend, after: &[u8]) -> Result<bool> {
    match backend.iterate(Some(after), &mut |_, _| false) {
        Ok(()) => Ok(true),
        Err(e) if is_damage(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// `key` as a [`PROBE_WIDTH`]-byte big-endian number plus `2^bit` (saturating).
fn probe(key: &[u8], bit: usize) -> Vec<u8> {
    let mut n = key.to_vec();
    n.resize(n.len().max(PROBE_WIDTH), 0);
    let mut at = n.len() - 1 - bit / 8;
    let mut carry = 1u16 << (bit % 8);
    loop {
        let sum = u16::from(n[at]) + carry;
        n[at] = sum as u8;
        carry = sum >> 8;
        if carry == 0 {
            return n;
        }
        if at == 0 {
            return vec![0xff; n.len()];
        }
        at -= 1;
    }
}

/// Where a walk that failed on damage right after `last` can go on: the smallest probed
/// key after which walking works again, so that no readable key past the damaged part is
/// skipped (keys in the damaged part itself cannot be read). Probes `last + 2^k` for growing
/// `k`, then bisects between the last failing and the first working probe. `None` when no
/// key up to the end of the key space walks.
pub fn resume_after_damage(backend: &dyn ColdBackend, last: &[u8]) -> Result<Option<Vec<u8>>> {
    let bits = 8 * last.len().max(PROBE_WIDTH);
    let mut failing = 0;
    let mut working = None;
    for bit in 0..bits {
        let at = probe(last, bit);
        if walks_from(backend, &at)? {
            working = Some(bit);
            break;
        }
        failing = bit;
    }
    let Some(bit) = working else {
        return Ok(None);
    };
    if bit == 0 {
        return Ok(Some(probe(last, 0)));
    }
    // Walking works from `last + 2^bit` and not from `last + 2^failing`: bisect between
    // them on the offset from `last`, bit by bit from the top.
    let mut lo = probe(last, failing);
    let hi = probe(last, bit);
    for step in (0..failing).rev() {
        let mid = probe(&lo, step);
        if mid >= hi {
            continue;
        }
        if !walks_from(backend, &mid)? {
            lo = mid;
        }
    }
    let resume = probe(&lo, 0);
    Ok(Some(if walks_from(backend, &resume)? {
        resume
    } else {
        hi
    }))
}
