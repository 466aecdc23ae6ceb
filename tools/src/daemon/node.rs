//! [`Node`]: the store as the daemon serves it (engine, repository, gc lock), and the writes
//! that must be ordered with gc: block puts, CAR imports with their root pins, pins.

use std::collections::HashSet;
use std::io::Read;

use futures_lite::future::block_on;
use ipfrs_storage::key::key_of;
use ipfrs_storage::{Block, BlockStore, Cid, Engine};
use serde::Serialize;

use crate::import::{Import, ImportOptions};
use crate::store::dag::{self, OnMissing};
use crate::store::gc::Collected;
use crate::store::import::journal_dir;
use crate::store::repo::Repo;

use super::error::{Error, Result};
use super::gc::{self, GcLock};
use super::pins::{self, PinKind};

/// The store a daemon serves.
pub struct Node {
    engine: Engine,
    repo: Repo,
    gc: GcLock,
}

/// A CAR root and what pinning it did.
#[derive(Debug, Clone, Serialize)]
pub struct RootPin {
    /// The root.
    pub cid: String,
    /// Why it could not be pinned ("" when it was, or when pinning was not asked for).
    pub error: String,
}

/// What one CAR import did.
#[derive(Debug, Clone)]
pub struct ImportedCar {
    /// The roots of its header, with their pinning.
    pub roots: Vec<RootPin>,
    /// Blocks stored (including ones already present).
    pub blocks: u64,
    /// Their bytes.
    pub bytes: u64,
}

impl Node {
    /// The node over an open engine of `repo`.
    pub fn new(repo: Repo, engine: Engine) -> Node {
        Node {
            engine,
            repo,
            gc: GcLock::new(),
        }
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The repository.
    pub fn repo(&self) -> &Repo {
        &self.repo
    }

    /// The gc lock (writers take its shared side).
    pub fn gc_lock(&self) -> &GcLock {
        &self.gc
    }

    /// Stores a block and, with `pin`, pins it directly, both before any gc can start.
    pub async fn put_block(&self, block: &Block, pin: bool) -> Result<()> {
        let _write = self.gc.write().await;
        self.engine.put(block).await?;
        if pin {
            pins::add(&self.engine, block.cid(), PinKind::Direct).await?;
        }
        Ok(())
    }

    /// Imports one CAR stream all or nothing (through [`crate::import`], one pass, journaled)
    /// and, with `pin_roots`, pins its roots recursively; gc waits for both. Blocks the
    /// calling thread (not for async tasks).
    pub fn import_car<R: Read + Send>(&self, input: R, pin_roots: bool) -> Result<ImportedCar> {
        let write = self.gc.blocking_write();
        let mut import = Import::begin(
            &self.engine,
            &journal_dir(&self.engine),
            ImportOptions::for_store(self.engine.config()),
        )?;
        let added = match import.add(input, &|_| {}) {
            Ok(added) => added,
            Err(e) => {
                // Other clients write meanwhile: a block this import journaled as new may since
                // have been pinned, or be part of a DAG another import pinned. The rollback
                // runs as gc does, with writers held off, and spares what pins and versions
                // keep. (An unpinned block put meanwhile is not kept, as gc would not keep it.)
                drop(write);
                let _exclusive = self.gc.blocking_gc();
                let kept = gc::kept_keys(&self.repo, &self.engine);
                let rollback = match &kept {
                    Ok(kept) => import.abort_keeping(&|cid| kept.contains(&key_of(cid))),
                    // Without the kept set nothing may be deleted: leave the journal for the
                    // next open's recovery (which runs before any client can write).
                    Err(_) => Ok(0),
                };
                if let Err(rollback) = rollback {
                    eprintln!("ipfrs-store: rollback of a failed import failed: {rollback}");
                }
                return Err(e.into());
            }
        };
        import.commit()?;
        let roots = if pin_roots {
            pin_present_roots(&self.engine, &added.header.roots)?
        } else {
            added
                .header
                .roots
                .iter()
                .map(|c| RootPin {
                    cid: c.to_string(),
                    error: String::new(),
                })
                .collect()
        };
        Ok(ImportedCar {
            roots,
            blocks: added.blocks,
            bytes: added.bytes,
        })
    }

    /// Pins `cid` (with everything below it when `recursive`); every block it keeps must be
    /// stored. Returns whether the pin set changed. Blocks the calling thread.
    pub fn pin_add(&self, cid: &Cid, recursive: bool) -> Result<bool> {
        let _write = self.gc.blocking_write();
        check_complete(&self.engine, cid, recursive)?;
        let kind = if recursive {
            PinKind::Recursive
        } else {
            PinKind::Direct
        };
        block_on(pins::add(&self.engine, cid, kind))
    }

    /// Removes the pin on `cid`.
    pub async fn pin_rm(&self, cid: &Cid, recursive: bool) -> Result<PinKind> {
        pins::rm(&self.engine, cid, recursive).await
    }

    /// gc as Kubo's `repo gc`: everything not pinned, not versioned is removed. Blocks the
    /// calling thread for the whole collection.
    pub fn gc(&self, dry_run: bool) -> Result<Collected> {
        Ok(self.gc_swept(dry_run)?.0)
    }

    /// [`Node::gc`], also returning the keys (multihashes) of the blocks removed.
    pub fn gc_swept(&self, dry_run: bool) -> Result<(Collected, HashSet<Vec<u8>>)> {
        gc::collect_swept(&self.repo, &self.engine, &self.gc, &[], false, dry_run)
    }
}

/// Fails unless `cid` (and, when `recursive`, every block below it) is stored.
pub fn check_complete(engine: &Engine, cid: &Cid, recursive: bool) -> Result<()> {
    if recursive {
        dag::walk(engine, &[*cid], OnMissing::Fail, |_, _| Ok(()))?;
    } else if !block_on(engine.has(cid))? {
        return Err(Error::NotFound(format!("block {cid} is not in the store")));
    }
    Ok(())
}

/// Pins each root that is stored, recursively (a CAR's roots need not be in it: Kubo reports
/// those as pin errors, and so does this).
pub fn pin_present_roots(engine: &Engine, roots: &[Cid]) -> Result<Vec<RootPin>> {
    let mut out = Vec::with_capacity(roots.len());
    for root in roots {
        let error = if block_on(engine.has(root))? {
            block_on(pins::add(engine, root, PinKind::Recursive))?;
            String::new()
        } else {
            format!("block {root} is not in the store: not pinned")
        };
        out.push(RootPin {
            cid: root.to_string(),
            error,
        });
    }
    Ok(out)
}
