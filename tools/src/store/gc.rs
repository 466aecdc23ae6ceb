//! `repo gc`: remove every block not reachable from the roots.
//!
//! Mark: walk the DAGs under the roots (dag-pb, dag-cbor and raw links), collecting the
//! multihashes reached (blocks are keyed by multihash), and add what the versioning refs
//! reach (branches, tags, HEAD: see [`super::version::ref_roots`], walked by the versioning
//! layer, which knows its objects), so a versioned model is never removed. Sweep: list every stored block and
//! delete the unmarked ones in batches. A block that does not decode as its codec stops the
//! collection before anything is removed: what it links to cannot be known. Blocks of other
//! codecs are kept, but their links are not followed (and what only they reach is removed).
//! Memory: the set of reachable multihashes.
//!
//! Then the hot segments are compacted, so the space of the removed blocks comes back to the
//! filesystem (a full disk is freed this way: the store keeps a reserve for it).
//!
//! Writers must not run meanwhile: a block stored after the mark and before the sweep would
//! be removed. [`crate::daemon::gc::collect`] runs this under the gc lock that every write of
//! the daemon shares; an embedder calling [`collect`] directly must stop its writers first.

use std::collections::HashSet;
use std::path::Path;

use futures_lite::future::block_on;
use ipfrs_storage::key::{Key, key_of};
use ipfrs_storage::{BlockStore, Cid, Engine};
use serde::Serialize;

use super::dag::{self, OnMissing};
use super::error::{Error, Result};
use super::progress;
use super::version::RefRoots;

/// Blocks deleted per `delete_many`.
const BATCH: usize = 1024;

/// What `repo gc` did (or would do, with --dry-run).
#[derive(Debug, Serialize)]
pub struct Collected {
    /// The roots kept.
    pub roots: Vec<String>,
    /// The versioning refs kept as roots too, as `name=commit`.
    pub refs: Vec<String>,
    /// Blocks the versioning refs reach (kept; also counted in `reachable`).
    pub versioned: u64,
    /// Blocks reachable from them (kept).
    pub reachable: u64,
    /// Blocks removed (or to be removed with --dry-run).
    pub removed: u64,
    /// Linked blocks that were not stored.
    pub missing: Vec<String>,
    /// Reachable blocks whose links could not be followed (other codecs).
    pub unfollowed: u64,
    /// Whether nothing was removed on purpose.
    pub dry_run: bool,
    /// Hot segments compacted after the sweep, so the disk space of the removed blocks
    /// comes back (their segments are preallocated files).
    pub segments_compacted: u64,
    /// Why that compaction stopped short, if it did (e.g. a disk too full to move the live
    /// blocks out); the removal itself stands.
    pub compaction_error: Option<String>,
}

/// A store whose freed space can be given back to the filesystem after a sweep.
pub trait Reclaim {
    /// Compacts what the sweep emptied; returns the segments removed.
    fn reclaim(&self) -> Result<u64>;
}

impl Reclaim for Engine {
    fn reclaim(&self) -> Result<u64> {
        Ok(block_on(self.compact())?)
    }
}

impl super::output::Report for Collected {
    fn human(&self) -> String {
        let verb = if self.dry_run {
            "would remove"
        } else {
            "removed"
        };
        let mut out = format!(
            "{} roots and {} versioning refs, {} reachable blocks kept ({} versioned), {verb} {} \
             blocks\n",
            self.roots.len(),
            self.refs.len(),
            self.reachable,
            self.versioned,
            self.removed
        );
        if !self.missing.is_empty() {
            out.push_str(&format!(
                "note: {} linked blocks are not in the store\n",
                self.missing.len()
            ));
        }
        if let Some(e) = &self.compaction_error {
            out.push_str(&format!(
                "note: compaction after the sweep stopped ({e}); the space of the removed blocks \
                 comes back as compaction proceeds\n"
            ));
        }
        if self.unfollowed > 0 {
            out.push_str(&format!(
                "note: {} kept blocks have codecs whose links are not followed\n",
                self.unfollowed
            ));
        }
        out
    }
}

/// Reads a pins file: one CID a line; blank lines and `#` comments are skipped.
pub fn read_pins(path: &Path) -> Result<Vec<Cid>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("cannot read", path, e))?;
    let mut pins = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let entry = line.split('#').next().unwrap_or("").trim();
        if entry.is_empty() {
            continue;
        }
        let cid = ipfrs_storage::key::parse_cid(entry).map_err(|e| Error::BadPin {
            path: path.to_path_buf(),
            line: i + 1,
            text: entry.to_string(),
            reason: e.to_string(),
        })?;
        pins.push(cid);
    }
    Ok(pins)
}

/// Marks from `roots` and `kept` (what the versioning refs reach, and direct pins), then
/// sweeps every unmarked block (unless `dry_run`). With no roots and nothing kept, every block
/// goes: the caller decides whether that is allowed (`repo gc` refuses it, see
/// [`crate::daemon::gc::collect`]).
///
/// `swept` receives the multihash of every block removed, so the caller can drop them from
/// the versioning ledger.
pub fn collect<S: BlockStore + Reclaim>(
    store: &S,
    roots: &[Cid],
    kept: &RefRoots,
    dry_run: bool,
    swept: &mut HashSet<Vec<u8>>,
) -> Result<Collected> {
    let mut marked: HashSet<Key> = kept.keys.clone();
    let walked = dag::walk(store, roots, OnMissing::Note, |cid, _| {
        marked.insert(key_of(cid));
        Ok(())
    })?;
    let bar = progress::bar("collecting", None, false);
    let mut removed = 0u64;
    let mut doomed: Vec<Cid> = Vec::with_capacity(BATCH);
    let mut stream = store.cids();
    loop {
        let next = block_on(stream.next()).transpose()?;
        if let Some(cid) = next {
            bar.inc(1);
            if !marked.contains(&key_of(&cid)) {
                doomed.push(cid);
            }
        }
        if doomed.len() >= BATCH || (next.is_none() && !doomed.is_empty()) {
            removed += doomed.len() as u64;
            // The listing resumes after the last key it returned, so deleting keys it has
            // already passed does not disturb it.
            if !dry_run {
                block_on(store.delete_many(&doomed))?;
                swept.extend(doomed.iter().map(|c| c.hash().to_bytes()));
            }
            doomed.clear();
        }
        if next.is_none() {
            break;
        }
    }
    bar.finish_and_clear();
    // Deleted blocks free nothing on disk until their hot segments are compacted (segments
    // are preallocated; background compaction runs only past the hot budget), so a `repo gc`
    // on a full disk would leave it full: compact even when this sweep removed nothing (the
    // blocks may have gone with `block rm`).
    let (segments_compacted, compaction_error) = if !dry_run {
        match store.reclaim() {
            Ok(n) => (n, None),
            Err(e) => (0, Some(e.to_string())),
        }
    } else {
        (0, None)
    };
    Ok(Collected {
        segments_compacted,
        compaction_error,
        roots: roots.iter().map(ToString::to_string).collect(),
        refs: kept
            .refs
            .iter()
            .map(|(name, cid)| format!("{name}={cid}"))
            .collect(),
        versioned: kept.keys.len() as u64,
        reachable: marked.len() as u64,
        removed,
        missing: walked.missing.iter().map(ToString::to_string).collect(),
        unfollowed: walked.unfollowed,
        dry_run,
    })
}
