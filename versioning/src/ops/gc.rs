//! Garbage collection: mark from every ref (and extra roots), sweep unreachable blocks that
//! this layer stored.
//!
//! What gc considers: only the blocks in the ledger, i.e. blocks a commit, merge or import
//! of this layer brought into the store (ones the store did not already hold). Kept: every
//! block reachable from any ref (branches, tags, HEAD) through commits, parents, states,
//! tensors, delta bases, chunks and delta payloads; every CID named in provenance; every
//! block reachable from `extra_roots`. Anything else in the store — other users' blocks,
//! blocks that existed before this layer wrote the same bytes — is never touched. A caller
//! that keeps blocks of its own (the pins of the store, which may name a block byte-identical
//! to a chunk this layer stored) passes their keys to [`Repo::gc_keeping`]. gc holds the
//! ledger's exclusive guard, so no commit is in flight while it runs.

use std::collections::HashSet;
use std::fmt;

use cid::Cid;
use ipfrs_storage::BlockStore;
use serde::Serialize;

use crate::error::Result;
use crate::ledger::Ledger;
use crate::refs::RefStore;
use crate::repo::Repo;

/// What gc found and did. Serialises with CIDs as text ([`crate::cid_text`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GcReport {
    /// Refs marked from.
    pub refs: usize,
    /// Blocks reachable from refs and extra roots.
    pub reachable: usize,
    /// Blocks recorded in the ledger (the only candidates).
    pub candidates: usize,
    /// Candidates no ref or root reaches, kept because the caller holds them (pins).
    pub held: usize,
    /// Blocks deleted (or that would be, in a dry run).
    #[serde(with = "crate::cid_text::vec")]
    pub swept: Vec<Cid>,
    /// Bytes freed according to the store's statistics (0 in a dry run).
    pub freed_bytes: u64,
    /// Whether nothing was deleted on purpose.
    pub dry_run: bool,
}

impl fmt::Display for GcReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "gc{}: {} refs, {} reachable, {} candidates, {} swept, {} bytes freed",
            if self.dry_run { " (dry run)" } else { "" },
            self.refs,
            self.reachable,
            self.candidates,
            self.swept.len(),
            self.freed_bytes
        )?;
        if self.held > 0 {
            write!(f, "; {} kept as pinned", self.held)?;
        }
        Ok(())
    }
}

impl<S: BlockStore, R: RefStore, L: Ledger> Repo<S, R, L> {
    /// Collects garbage; see the module documentation for what is kept.
    pub async fn gc(&self, extra_roots: &[Cid], dry_run: bool) -> Result<GcReport> {
        self.gc_keeping(extra_roots, &HashSet::new(), dry_run).await
    }

    /// [`Repo::gc`], also keeping every candidate whose storage key (multihash) is in `held`:
    /// the blocks the store's pins keep, which this layer cannot see.
    pub async fn gc_keeping(
        &self,
        extra_roots: &[Cid],
        held: &HashSet<Vec<u8>>,
        dry_run: bool,
    ) -> Result<GcReport> {
        let _guard = self.ledger.exclusive()?;
        let refs = self.refs.list("")?;
        let mut roots: Vec<Cid> = refs.iter().map(|(_, c)| *c).collect();
        roots.extend_from_slice(extra_roots);
        // A missing object aborts here, before anything is deleted.
        let keep = self.reachable(&roots).await?.keys();
        let candidates = self.ledger.recorded()?;
        let mut held_count = 0;
        let mut swept: Vec<Cid> = Vec::new();
        for c in &candidates {
            let key = c.hash().to_bytes();
            if keep.contains(&key) {
                continue;
            }
            if held.contains(&key) {
                held_count += 1;
            } else {
                swept.push(*c);
            }
        }
        let mut freed_bytes = 0;
        if !dry_run && !swept.is_empty() {
            let before = self.store.stats().await?.bytes;
            for batch in swept.chunks(1024) {
                self.store.delete_many(batch).await?;
            }
            self.store.flush().await?;
            let after = self.store.stats().await?.bytes;
            freed_bytes = before.saturating_sub(after);
            let gone: HashSet<Vec<u8>> = swept.iter().map(|c| c.hash().to_bytes()).collect();
            self.ledger.forget(&gone)?;
        }
        Ok(GcReport {
            refs: refs.len(),
            reachable: keep.len(),
            candidates: candidates.len(),
            held: held_count,
            swept,
            freed_bytes,
            dry_run,
        })
    }
}
