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

    /// Visits what can still be walked: nothing when the backend did not open; otherwise
    /// every key a walk reaches, going on past each damaged part (see
    /// [`resume_after_damage`]). The keys in a damaged part are not listed; the damage
    /// (reported by the engine at open and by `repo verify`) says the listing is partial.
    fn iterate(&self, after: Option<&[u8]>, f: &mut dyn FnMut(&[u8], &[u8]) -> bool) -> Result<()> {
        let Some(inner) = &self.inner else {
            return Ok(());
        };
        let mut after = after.map(<[u8]>::to_vec);
        loop {
            let (mut last, mut stopped) = (None, false);
            let walked = inner.iterate(after.as_deref(), &mut |key, value| {
                last = Some(key.to_vec());
                stopped = !f(key, value);
                !stopped
            });
            match walked {
                // Past a library panic the walk ends: probing its way on could cost a panic
                // per probe, caught but slow, again on every page of a listing.
                Err(e) if is_damage(&e) && !stopped && !is_panic(&e) => {
                    let from = last.or(after).unwrap_or_default();
                    match resume_after_damage(&**inner, &from)? {
                        Some(resume) => after = Some(resume),
                        None => return Ok(()),
                    }
                }
                Err(e) if is_damage(&e) => return Ok(()),
                other => return other,
            }
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

/// Whether `err` is a library panic the guard turned into an error.
fn is_panic(err: &Error) -> bool {
    matches!(err, Error::Panicked { .. })
}

/// Whether `err` comes from damaged files (a refused read, or a library panic) rather than
/// from the environment.
pub fn is_damage(err: &Error) -> bool {
    match err {
        Error::Panicked { .. } => true,
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
        Error::Damaged(damage) => return Some(damage.clone()),
        Error::Io { .. } | Error::NotCompiled(_) => return None,
        Error::Backend { source, .. } => source.to_string(),
        Error::Panicked { .. } | Error::TruncatedTable { .. } => err.to_string(),
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
/// `k`, then narrows down to the last failing point by binary lifting. `None` (or a point
/// with nothing after it) when the damage reaches the end of the key space.
pub fn resume_after_damage(backend: &dyn ColdBackend, last: &[u8]) -> Result<Option<Vec<u8>>> {
    let width = last.len().max(PROBE_WIDTH);
    let bits = 8 * width;
    let top = vec![0xff; width];
    // Walking after `last` fails (the caller's premise). Doubling steps find a probe that
    // works quickly when the damaged part is small; past the last one, `top` (after which
    // nothing can follow) stands in.
    let mut lo = last.to_vec();
    lo.resize(width, 0);
    let mut hi = None;
    for bit in 0..bits {
        let at = probe(last, bit);
        if walks_from(backend, &at)? {
            hi = Some(at);
            break;
        }
        lo = at;
    }
    let found = hi.is_some();
    let hi = hi.unwrap_or_else(|| top.clone());
    // Binary lifting: the largest point below `hi` from which walking still fails; the next
    // one is where the walk can go on.
    for step in (0..bits).rev() {
        let mid = probe(&lo, step);
        if mid < hi && !walks_from(backend, &mid)? {
            lo = mid;
        }
    }
    let resume = probe(&lo, 0);
    if !found && resume >= top {
        return Ok(None);
    }
    Ok(Some(resume))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::BTreeMap;

    use super::*;

    /// Keys 0..=255 as one byte each, except that a walk entering `bad` (a damaged page)
    /// fails, and so does a read of a key in it.
    struct Holed {
        keys: BTreeMap<Vec<u8>, Bytes>,
        bad: std::ops::RangeInclusive<u8>,
    }

    fn holed(bad: std::ops::RangeInclusive<u8>) -> Holed {
        Holed {
            keys: (0..=255u8)
                .map(|k| (vec![k], Bytes::from(vec![k])))
                .collect(),
            bad,
        }
    }

    impl Holed {
        fn damage(&self) -> Error {
            ColdDamage {
                backend: BackendKind::Sled,
                path: "/holed".into(),
                stage: DamageStage::Read,
                cause: "bad page".into(),
            }
            .into_error()
        }
    }

    impl ColdBackend for Holed {
        fn kind(&self) -> BackendKind {
            BackendKind::Sled
        }
        fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
            if key.len() == 1 && self.bad.contains(&key[0]) {
                return Err(self.damage());
            }
            Ok(self.keys.get(key).cloned())
        }
        fn put_batch(&self, _: &[(Vec<u8>, Bytes)]) -> Result<()> {
            Ok(())
        }
        fn delete_batch(&self, _: &[Vec<u8>]) -> Result<()> {
            Ok(())
        }
        fn iterate(
            &self,
            after: Option<&[u8]>,
            f: &mut dyn FnMut(&[u8], &[u8]) -> bool,
        ) -> Result<()> {
            for (key, value) in &self.keys {
                if after.is_some_and(|a| key.as_slice() <= a) {
                    continue;
                }
                if self.bad.contains(&key[0]) {
                    return Err(self.damage());
                }
                if !f(key, value) {
                    break;
                }
            }
            Ok(())
        }
        fn flush(&self) -> Result<()> {
            Ok(())
        }
    }

    fn damage() -> ColdDamage {
        ColdDamage {
            backend: BackendKind::Sled,
            path: "/holed".into(),
            stage: DamageStage::Walk,
            cause: "walk failed".into(),
        }
    }

    #[test]
    fn a_walk_goes_on_past_each_damaged_part_and_skips_only_it() {
        let backend = DamagedBackend::walked(Arc::new(holed(40..=90)), damage());
        let mut seen = Vec::new();
        backend
            .iterate(None, &mut |key, _| {
                seen.push(key[0]);
                true
            })
            .unwrap();
        let expected: Vec<u8> = (0..40).chain(91..=255).collect();
        assert_eq!(seen, expected);
        // From inside the damage, and stopping early, as a listing page does.
        let mut page = Vec::new();
        backend
            .iterate(Some(&[50]), &mut |key, _| {
                page.push(key[0]);
                page.len() < 3
            })
            .unwrap();
        assert_eq!(page, vec![91, 92, 93]);
    }

    #[test]
    fn resume_finds_the_first_key_past_the_damage() {
        let backend = holed(7..=200);
        let resume = resume_after_damage(&backend, &[6]).unwrap().unwrap();
        assert!(resume.as_slice() >= &[200][..] && resume.as_slice() < &[201][..]);
        // Damage up to the end of the key space: nothing left to walk from the answer.
        let to_end = holed(7..=255);
        if let Some(resume) = resume_after_damage(&to_end, &[6]).unwrap() {
            to_end
                .iterate(Some(&resume), &mut |k, _| panic!("{k:?} after the end"))
                .unwrap();
        }
    }

    #[test]
    fn reads_of_a_damaged_backend_fail_instead_of_claiming_absence() {
        let backend = DamagedBackend::walked(Arc::new(holed(40..=90)), damage());
        assert_eq!(backend.get(&[3]).unwrap().as_deref(), Some(&[3u8][..]));
        assert!(backend.get(&[50]).unwrap_err().damage().is_some());
        let absent = backend.get(&[1, 2, 3]).unwrap_err();
        assert!(
            absent.damage().unwrap().cause.contains("may have been"),
            "{absent}"
        );
        assert!(
            !backend.contains(&[1, 2, 3]).unwrap(),
            "writes still see absence"
        );
        let unopenable = DamagedBackend::unopenable(damage());
        assert!(unopenable.get(&[3]).unwrap_err().damage().is_some());
        unopenable
            .iterate(None, &mut |_, _| panic!("nothing to walk"))
            .unwrap();
        unopenable.flush().unwrap();
    }
}
