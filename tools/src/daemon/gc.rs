//! Garbage collection that keeps pins and versioned models, and never races with writers.
//!
//! gc marks what the roots reach, then sweeps the rest: a block stored (and pinned) after the
//! mark would be swept. [`GcLock`] is boxo's GC locker: every write that must survive gc
//! (a block put, a CAR import and the pinning of its roots, a pin) holds the shared side for
//! its whole length; gc holds the exclusive side from before the pins are read to after the
//! sweep. So a write either finished before gc read the pins (it is marked), or starts after
//! the sweep; writers wait while gc runs, gc waits for writers in flight.
//!
//! Roots: every recursive pin (and `<repo>/pins`, the older pins file), plus what the
//! versioning refs reach; a direct pin keeps its block alone.

use std::collections::{HashMap, HashSet};

use futures_lite::future::block_on;
use ipfrs_storage::key::key_of;
use ipfrs_storage::{Cid, Engine};
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::store::gc::{self as store_gc, Collected};
use crate::store::repo::Repo;
use crate::store::version;

use super::error::Result;
use super::pins::{self, PinKind};

/// The lock between gc (exclusive) and writers (shared); see the module docs.
#[derive(Debug, Default)]
pub struct GcLock(RwLock<()>);

impl GcLock {
    /// A new lock.
    pub fn new() -> GcLock {
        GcLock::default()
    }

    /// The writers' side, from async code: held while a write and its pins are made.
    pub async fn write(&self) -> RwLockReadGuard<'_, ()> {
        self.0.read().await
    }

    /// The writers' side from a plain thread (not from inside an async task).
    pub fn blocking_write(&self) -> RwLockReadGuard<'_, ()> {
        self.0.blocking_read()
    }

    /// gc's side from a plain thread: waits for the writes in flight, holds new ones off.
    pub fn blocking_gc(&self) -> RwLockWriteGuard<'_, ()> {
        self.0.blocking_write()
    }
}

/// The roots gc keeps beyond the versioning refs: recursive pins (with the CLI's extra
/// `roots`), and the keys of direct pins.
#[derive(Debug, Default)]
pub struct PinRoots {
    /// Kept with everything they link to.
    pub recursive: Vec<Cid>,
    /// Kept alone.
    pub direct: Vec<Cid>,
}

/// The pins of `engine` and the older `<repo>/pins` file (recursive roots).
pub fn pin_roots(repo: &Repo, engine: &Engine) -> Result<PinRoots> {
    let mut roots = PinRoots::default();
    for pin in block_on(pins::ls(engine))? {
        match pin.kind {
            PinKind::Recursive => roots.recursive.push(pin.cid),
            PinKind::Direct => roots.direct.push(pin.cid),
        }
    }
    if repo.pins_file().is_file() {
        roots
            .recursive
            .extend(store_gc::read_pins(&repo.pins_file())?);
    }
    Ok(roots)
}

/// The keys (multihashes) of every block a pin or a versioning ref keeps: what a rollback
/// must not delete. The caller holds gc's side of the lock, so no pin changes meanwhile.
pub fn kept_keys(repo: &Repo, engine: &Engine) -> Result<HashSet<ipfrs_storage::key::Key>> {
    let mut keys = version::ref_roots(repo, engine)?.keys;
    keys.extend(pinned_keys(repo, engine)?);
    Ok(keys)
}

/// The keys (multihashes) of every block a pin keeps: direct pins, and what recursive pins
/// (and the older pins file) reach. `version gc` keeps them, as `repo gc` does.
pub fn pinned_keys(repo: &Repo, engine: &Engine) -> Result<HashSet<ipfrs_storage::key::Key>> {
    let roots = pin_roots(repo, engine)?;
    let mut keys: HashSet<ipfrs_storage::key::Key> = roots.direct.iter().map(key_of).collect();
    crate::store::dag::walk(
        engine,
        &roots.recursive,
        crate::store::dag::OnMissing::Note,
        |cid, _| {
            keys.insert(key_of(cid));
            Ok(())
        },
    )?;
    Ok(keys)
}

/// Why each of `cids` that a pin keeps may not be removed, by key (multihash), in Kubo's
/// words: `pinned: direct`, `pinned: recursive`, or `pinned via <root>` for a block inside a
/// recursively pinned DAG. Walks every recursive pin's DAG (as Kubo's pin checker does). The
/// caller holds gc's side of the lock, so the pins do not change meanwhile.
pub fn pin_reasons(
    repo: &Repo,
    engine: &Engine,
    cids: &[Cid],
) -> Result<HashMap<ipfrs_storage::key::Key, String>> {
    let wanted: HashSet<ipfrs_storage::key::Key> = cids.iter().map(key_of).collect();
    let roots = pin_roots(repo, engine)?;
    let mut reasons = HashMap::new();
    for (list, reason) in [
        (&roots.direct, "pinned: direct"),
        (&roots.recursive, "pinned: recursive"),
    ] {
        for cid in list {
            let key = key_of(cid);
            if wanted.contains(&key) {
                reasons.entry(key).or_insert_with(|| reason.to_string());
            }
        }
    }
    for root in &roots.recursive {
        if wanted.iter().all(|k| reasons.contains_key(k)) {
            break;
        }
        crate::store::dag::walk(
            engine,
            &[*root],
            crate::store::dag::OnMissing::Note,
            |cid, _| {
                let key = key_of(cid);
                if wanted.contains(&key) {
                    reasons
                        .entry(key)
                        .or_insert_with(|| format!("pinned via {root}"));
                }
                Ok(())
            },
        )?;
    }
    Ok(reasons)
}

/// Runs gc under `lock`: removes every block that no pin, no versioning ref and no CID of
/// `extra` reaches (unless `dry_run`); swept blocks also leave the versioning ledger.
///
/// `require_roots`: refuse ([`crate::store::error::Error::NoRoots`]) when there is no root
/// at all, rather than remove every unversioned block (the CLI's `repo gc` does; the daemon's
/// `repo/gc` follows Kubo, where no pins means nothing is kept).
///
/// Must be called from a plain thread (it blocks on the lock and on the store).
pub fn collect(
    repo: &Repo,
    engine: &Engine,
    lock: &GcLock,
    extra: &[Cid],
    require_roots: bool,
    dry_run: bool,
) -> Result<Collected> {
    Ok(collect_swept(repo, engine, lock, extra, require_roots, dry_run)?.0)
}

/// [`collect`], also returning the keys (multihashes) of the blocks removed.
pub fn collect_swept(
    repo: &Repo,
    engine: &Engine,
    lock: &GcLock,
    extra: &[Cid],
    require_roots: bool,
    dry_run: bool,
) -> Result<(Collected, HashSet<Vec<u8>>)> {
    let _exclusive = lock.blocking_gc();
    let mut roots = pin_roots(repo, engine)?;
    roots.recursive.extend_from_slice(extra);
    if require_roots && roots.recursive.is_empty() && roots.direct.is_empty() {
        return Err(crate::store::error::Error::NoRoots.into());
    }
    let mut kept = version::ref_roots(repo, engine)?;
    let versioned = kept.keys.len() as u64;
    kept.keys.extend(roots.direct.iter().map(key_of));
    let mut swept = HashSet::new();
    let mut collected = store_gc::collect(engine, &roots.recursive, &kept, dry_run, &mut swept)?;
    collected.versioned = versioned;
    collected
        .roots
        .extend(roots.direct.iter().map(ToString::to_string));
    // Swept blocks the versioning layer stored leave its ledger too, so the ledger does not
    // grow with blocks that are gone.
    if !swept.is_empty() && version::ledger_file(repo).is_file() {
        let ledger = ipfrs_versioning::FileLedger::open(version::ledger_file(repo))
            .map_err(crate::store::error::Error::from)?;
        ipfrs_versioning::Ledger::forget(&ledger, &swept)
            .map_err(crate::store::error::Error::from)?;
    }
    Ok((collected, swept))
}
