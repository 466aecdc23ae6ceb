//! CAR import into any [`BlockStore`]: one pass per input, all or nothing, crash-safe.
//!
//! Each input is read once (files, pipes and FIFOs alike): a reader thread frames sections,
//! a few threads hash them in parallel (every block checked against its CID), and batches go
//! to `put_many` in file order from a few store threads; memory is bounded by
//! [`ImportOptions::window_bytes`] whatever the input's size ([`pipeline`] has the details).
//!
//! **All or nothing** is kept with an undo journal rather than a second pass: before a batch is
//! stored, the CIDs in it that the store does not hold yet (`has_many`) are appended to the
//! import's journal (`<journal dir>/<pid>-<nanos>.journal`) and synced. [`Import::commit`]
//! flushes the store and removes the journal: that removal is the commit point.
//! [`Import::abort`] deletes exactly the journaled CIDs, flushes, then removes the journal.
//! A journal left by a killed importer is rolled back the same way by [`recover`], which
//! `ipfrs-store` runs every time it opens a repository. So after a crash the import's new
//! blocks are visible until the next open of the store, and gone after it; blocks that were
//! in the store before the import are never journaled, so never removed.
//!
//! **The race with concurrent writers**: if another writer stores a block while an import
//! holds it journaled (the import saw it absent), a rollback deletes that writer's block too.
//! A CLI command holds the store's lock, so it cannot race. `ipfrs-store daemon` serves
//! concurrent writers: it rolls a failed import back with [`Import::abort_keeping`] under its
//! gc lock, sparing every block a pin or a versioning ref reaches, and `ipfrs-store` recovers
//! a killed import's journal the same way ([`recover_keeping`]); an unpinned block stored
//! meanwhile may still go, as gc would remove it. (An engine-side "import epoch" that makes
//! the blocks invisible until commit would remove the race, and the need for `has_many`.)
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use ipfrs_storage::Engine;
//! use ipfrs_tools::import::{Import, ImportOptions};
//! let engine = Engine::open("/tmp/store")?;
//! let options = ImportOptions::for_store(engine.config());
//! let mut import = Import::begin(&engine, "/tmp/store.imports".as_ref(), options)?;
//! match import.add(std::fs::File::open("file.car")?, &|_bytes| {}) {
//!     Ok(added) => {
//!         import.commit()?;
//!         println!("{} blocks", added.blocks);
//!     }
//!     Err(e) => {
//!         import.abort()?;
//!         return Err(e.into());
//!     }
//! }
//! # Ok(())
//! # }
//! ```

mod error;
mod journal;
mod pipeline;

use std::io::Read;
use std::path::{Path, PathBuf};

use futures_lite::future::block_on;
use ipfrs_car::{self as car, CarHeader, ReadOptions};
use ipfrs_storage::{BlockStore, Config};

pub use error::{ImportError, Result};
use journal::Journal;
pub use journal::{Recovered, recover, recover_keeping};

/// Block bytes per batch by default: one `has_many`, one journal record (one fdatasync) and
/// one `put_many` each; 8 MiB keeps the journal's syncs under a few per cent of the time at
/// disk speed while leaving several batches in the default window.
pub const DEFAULT_BATCH_BYTES: usize = 8 << 20;
/// Blocks per batch at most by default (small-block files reach this before the byte limit).
pub const DEFAULT_BATCH_BLOCKS: usize = 4096;
/// Bytes of block data in memory at most by default (read, hashing, queued, being stored).
pub const DEFAULT_WINDOW_BYTES: usize = 64 << 20;
/// Read buffer: small sections are copied out of it, large ones read directly.
const READ_BUFFER: usize = 1 << 20;

/// Opens `input` as a CAR stream; a bad header is an import error that stored nothing.
fn open_reader<R: Read>(
    input: R,
    max_block_size: usize,
) -> Result<car::CarReader<std::io::BufReader<R>>> {
    car::read_buffered(input, ReadOptions { max_block_size }, READ_BUFFER).map_err(|e| {
        ImportError::Car {
            source: Box::new(e),
            stored: 0,
            bytes: 0,
            header: None,
        }
    })
}

/// Room for a section's CID and framing on top of the block (as the CAR reader allows).
const SECTION_OVERHEAD: usize = 128;

/// How an import runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportOptions {
    /// Largest block accepted (the store's `max_block_size`).
    pub max_block_size: usize,
    /// Bytes of block data in flight at most. Raised to hold at least one batch and one
    /// section (else the reader could wait for bytes only its own batch holds).
    pub window_bytes: usize,
    /// Block bytes per batch.
    pub batch_bytes: usize,
    /// Blocks per batch at most.
    pub batch_blocks: usize,
    /// Threads hashing blocks (default: the available cores).
    pub hash_threads: usize,
    /// Threads calling `put_many` (two keep one batch in the store while the next is
    /// journaled).
    pub store_threads: usize,
}

/// Tunes the configuration of an engine a process opens to import into: a CAR import is
/// write-only ingest, so its large blocks are not read back into the page cache after they
/// are written (`HotTier::prefetch_large_written`), which was half the device traffic of a
/// 256 KiB-block import. Their first read fetches each record in one request. A daemon's
/// engine keeps its own configuration.
pub fn tune_for_import(config: &mut Config) {
    if let Some(tier) = &mut config.hot_tier {
        tier.prefetch_large_written = false;
    }
}

impl ImportOptions {
    /// The defaults for a store with this configuration.
    pub fn for_store(config: &Config) -> ImportOptions {
        ImportOptions {
            max_block_size: config.max_block_size,
            ..ImportOptions::default()
        }
    }

    /// The options with the window raised to what the batches need; see the fields.
    fn effective(mut self) -> ImportOptions {
        self.batch_bytes = self.batch_bytes.max(1);
        self.batch_blocks = self.batch_blocks.max(1);
        let needed = self
            .batch_bytes
            .saturating_add(self.max_block_size)
            .saturating_add(SECTION_OVERHEAD);
        self.window_bytes = self.window_bytes.max(needed);
        self
    }
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            max_block_size: ReadOptions::default().max_block_size,
            window_bytes: DEFAULT_WINDOW_BYTES,
            batch_bytes: DEFAULT_BATCH_BYTES,
            batch_blocks: DEFAULT_BATCH_BLOCKS,
            hash_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            store_threads: 2,
        }
    }
}

/// What one input added.
#[derive(Debug, Clone)]
pub struct Added {
    /// The input's header (version and roots).
    pub header: CarHeader,
    /// Blocks stored (including ones already present).
    pub blocks: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// An import of one or more CAR inputs that commits or aborts as a whole.
///
/// Dropping it without [`Import::commit`] or [`Import::abort`] leaves its journal behind:
/// the next [`recover`] rolls it back.
pub struct Import<'s, S> {
    store: &'s S,
    journal: Journal,
    options: ImportOptions,
}

impl<'s, S: BlockStore> Import<'s, S> {
    /// Starts an import into `store` with its journal in `journal_dir` (created if needed).
    /// Run [`recover`] on that directory first if an earlier importer may have died.
    pub fn begin(store: &'s S, journal_dir: &Path, options: ImportOptions) -> Result<Self> {
        Ok(Import {
            store,
            journal: Journal::create(journal_dir)?,
            options: options.effective(),
        })
    }

    /// Imports one CAR stream (CARv1 or CARv2), read once; `progress` is called with each
    /// stretch of input bytes as it is stored. On [`ImportError::Car`] the blocks before the
    /// error in the input are stored (and journaled): abort to remove them, or commit to keep
    /// them. On other errors, abort.
    pub fn add<R: Read + Send>(
        &mut self,
        input: R,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Added> {
        let reader = open_reader(input, self.options.max_block_size)?;
        let header = reader.header().clone();
        let outcome = pipeline::run(
            self.store,
            reader,
            Some(&mut self.journal),
            &self.options,
            progress,
        )?;
        match outcome.error {
            Some(e) => Err(ImportError::Car {
                source: Box::new(e),
                stored: outcome.blocks,
                bytes: outcome.bytes,
                header: Some(Box::new(header)),
            }),
            None => Ok(Added {
                header,
                blocks: outcome.blocks,
                bytes: outcome.bytes,
            }),
        }
    }

    /// Makes every block added so far durable (store flush), then removes the journal: from
    /// here on the import is permanent.
    pub fn commit(self) -> Result<()> {
        block_on(self.store.flush())?;
        self.journal.remove()
    }

    /// Deletes every block this import added that was not in the store before, flushes, and
    /// removes the journal; returns how many blocks were deleted. If this fails the journal
    /// stays, and [`recover`] finishes the rollback later.
    pub fn abort(self) -> Result<u64> {
        let deleted = journal::delete(self.store, self.journal.recorded())?;
        block_on(self.store.flush())?;
        self.journal.remove()?;
        Ok(deleted)
    }

    /// [`Import::abort`], except that the journaled blocks for which `keep` is true stay:
    /// for a store with other writers, where a block this import added may meanwhile have
    /// been stored, or become needed, by someone else (the caller decides, e.g. by what its
    /// pins reach, while holding those writers off).
    pub fn abort_keeping(self, keep: &dyn Fn(&ipfrs_storage::Cid) -> bool) -> Result<u64> {
        let doomed: Vec<_> = self
            .journal
            .recorded()
            .iter()
            .filter(|c| !keep(c))
            .copied()
            .collect();
        let deleted = journal::delete(self.store, &doomed)?;
        block_on(self.store.flush())?;
        self.journal.remove()?;
        Ok(deleted)
    }

    /// The journal file (for messages).
    pub fn journal_path(&self) -> &Path {
        self.journal.path()
    }
}

/// Imports one CAR stream all or nothing: commits if every block verified and stored, else
/// rolls back and returns the error.
pub fn import_car<S: BlockStore, R: Read + Send>(
    store: &S,
    input: R,
    journal_dir: &Path,
    options: ImportOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Added> {
    let mut import = Import::begin(store, journal_dir, options)?;
    match import.add(input, progress) {
        Ok(added) => {
            import.commit()?;
            Ok(added)
        }
        Err(e) => {
            // The import's own error is what the caller needs; a failed rollback leaves the
            // journal for `recover`, which the next open of the store runs.
            let _ = import.abort();
            Err(e)
        }
    }
}

/// Imports one CAR stream in one pass without a journal: blocks before an error stay stored,
/// and a crash leaves what was stored. For stores that keep every valid block anyway (and
/// for measuring the pipeline alone).
pub fn ingest<S: BlockStore, R: Read + Send>(
    store: &S,
    input: R,
    options: ImportOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(Added, Option<ImportError>)> {
    let options = options.effective();
    let reader = open_reader(input, options.max_block_size)?;
    let header = reader.header().clone();
    let outcome = pipeline::run(store, reader, None, &options, progress)?;
    let added = Added {
        header,
        blocks: outcome.blocks,
        bytes: outcome.bytes,
    };
    let error = outcome.error.map(|e| ImportError::Car {
        source: Box::new(e),
        stored: outcome.blocks,
        bytes: outcome.bytes,
        header: Some(Box::new(added.header.clone())),
    });
    Ok((added, error))
}

/// Where the journals of imports into the engine whose data directory is `data_dir` go by
/// default: the sibling directory `<name>.imports` (the engine's own directory admits no
/// foreign files). `ipfrs-store` uses `<repo>/blocks.imports`.
pub fn default_journal_dir(data_dir: &Path) -> PathBuf {
    let dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    match dir.file_name() {
        Some(name) => {
            let mut name = name.to_os_string();
            name.push(".imports");
            dir.with_file_name(name)
        }
        None => dir.join("imports"),
    }
}
