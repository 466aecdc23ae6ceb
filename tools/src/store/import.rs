//! `car import`: CAR files into the store in one pass each, verified, all or nothing.
//!
//! The work is [`crate::import`]'s: every file is read once (so pipes and FIFOs work, and `-`
//! is stdin), its blocks hashed in parallel and stored in batches, the blocks each batch adds
//! journaled first. Without --partial one journal covers every file of the command: any
//! error (a bad block, a truncated file, the store failing) deletes what the command added
//! and nothing of it stays visible; a killed import is rolled back by the next command that
//! opens the repository ([`recover_interrupted`]). With --partial the blocks before a file's
//! error stay, and later files still run.

use std::collections::HashSet;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use indicatif::ProgressBar;
use ipfrs_car::{CarHeader, CarVersion, ReadOptions};
use ipfrs_storage::key::{Key, key_of};
use ipfrs_storage::{BlockStore, Engine};
use serde::Serialize;

use super::caller::Caller;
use super::error::{Error, Result};
use super::output::{self, Report};
use super::progress;
use super::repo::Repo;
use crate::import::{self as importer, Import, ImportError, ImportOptions};

/// Blocks per batch at most (the import's default; see [`crate::import::ImportOptions`]).
pub const BATCH_BLOCKS: usize = importer::DEFAULT_BATCH_BLOCKS;
/// Block bytes per batch (the import's default).
pub const BATCH_BYTES: usize = importer::DEFAULT_BATCH_BYTES;

/// One file's import.
#[derive(Debug, Clone, Serialize)]
pub struct FileImport {
    /// The file.
    pub path: PathBuf,
    /// "v1" or "v2".
    pub version: &'static str,
    /// The roots in its header.
    pub roots: Vec<String>,
    /// Blocks stored (including ones already present).
    pub blocks: u64,
    /// Their bytes.
    pub bytes: u64,
    /// The error that stopped this file (only with --partial).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What `car import` did.
#[derive(Debug, Serialize)]
pub struct Imported {
    /// One entry per file, in order.
    pub files: Vec<FileImport>,
}

impl Report for Imported {
    fn human(&self) -> String {
        let mut out = String::new();
        for f in &self.files {
            let roots = if f.roots.is_empty() {
                "no roots".to_string()
            } else {
                format!("roots {}", f.roots.join(" "))
            };
            out.push_str(&format!(
                "{}: CAR{}, {} blocks, {}, {roots}{}\n",
                f.path.display(),
                f.version,
                f.blocks,
                output::bytes(f.bytes),
                f.error
                    .as_ref()
                    .map(|e| format!(" -- FAILED: {e}"))
                    .unwrap_or_default()
            ));
        }
        out
    }
}

/// The path that means stdin.
const STDIN: &str = "-";

/// Opens one input: a file, a FIFO, or stdin for `-` (the caller's path resolution applied).
fn open(path: &Path, caller: &mut Caller) -> Result<Box<dyn Read + Send>> {
    if path.as_os_str() == STDIN {
        return Ok(caller.stdin());
    }
    let path = caller.path(path);
    let file = File::open(&path).map_err(|e| Error::io("cannot open", &path, e))?;
    Ok(Box::new(file))
}

/// The store's error for an import's, tagged with the file.
fn store_error(err: ImportError, path: &Path, partial: bool) -> Error {
    match err {
        ImportError::Car { source, stored, .. } => Error::Car {
            path: path.to_path_buf(),
            source,
            // Without --partial the import was rolled back: nothing of it stays.
            stored: if partial { stored } else { 0 },
        },
        ImportError::Store(e) => Error::Engine(e),
        ImportError::Journal { what, path, source } => Error::Io { what, path, source },
        ImportError::Panicked => Error::io(
            "import failed (a worker thread panicked) for",
            path,
            std::io::Error::other("panic"),
        ),
    }
}

fn report(path: &Path, header: &CarHeader, blocks: u64, bytes: u64) -> FileImport {
    FileImport {
        path: path.to_path_buf(),
        version: version_name(header.version),
        roots: header.roots.iter().map(ToString::to_string).collect(),
        blocks,
        bytes,
        error: None,
    }
}

/// Imports one CAR file in one pass without a journal (what `--partial` keeps of a file,
/// minus the crash rollback): a CAR error past the header comes back in
/// [`FileImport::error`] with the figures of the blocks stored before it. Store failures and
/// unreadable headers are errors.
pub fn ingest<S: BlockStore>(
    store: &S,
    path: &Path,
    options: ReadOptions,
    progress: &ProgressBar,
) -> Result<FileImport> {
    let options = ImportOptions {
        max_block_size: options.max_block_size,
        ..ImportOptions::default()
    };
    let (added, error) = importer::ingest(
        store,
        open(path, &mut Caller::this_process())?,
        options,
        &|n| progress.inc(n),
    )
    .map_err(|e| store_error(e, path, true))?;
    let mut file = report(path, &added.header, added.blocks, added.bytes);
    file.error = error.map(|e| store_error(e, path, true).to_string());
    Ok(file)
}

fn version_name(version: CarVersion) -> &'static str {
    match version {
        CarVersion::V1 => "v1",
        CarVersion::V2 => "v2",
    }
}

/// Where `ipfrs-store` keeps the journals of imports into `engine`.
pub fn journal_dir(engine: &Engine) -> PathBuf {
    importer::default_journal_dir(&engine.config().data_dir)
}

/// Rolls back imports a killed `ipfrs-store` left behind (their journals); run by every
/// command right after it opens the store. Says on stderr what it removed.
pub fn recover_interrupted(engine: &Engine) -> Result<()> {
    let dir = journal_dir(engine);
    // Blocks a pin or a versioning ref reaches stay: another import (a daemon's client) may
    // have committed and pinned them after the interrupted one journaled them. The set is
    // built only when there is something to roll back.
    // ipfrs-store's data directory is always <repo>/blocks.
    let repo = engine
        .config()
        .data_dir
        .parent()
        .and_then(|root| Repo::locate(Some(root.to_path_buf()), None).ok());
    let kept: std::cell::OnceCell<Option<HashSet<Key>>> = std::cell::OnceCell::new();
    let keep = |cid: &ipfrs_storage::Cid| {
        kept.get_or_init(|| {
            repo.as_ref()
                .and_then(|repo| crate::daemon::gc::kept_keys(repo, engine).ok())
        })
        .as_ref()
        .is_some_and(|k| k.contains(&key_of(cid)))
    };
    let done =
        importer::recover_keeping(engine, &dir, &keep).map_err(|e| store_error(e, &dir, false))?;
    if done.journals > 0 {
        eprintln!(
            "ipfrs-store: rolled back {} interrupted CAR import(s): {} blocks removed",
            done.journals, done.deleted
        );
    }
    Ok(())
}

/// `car import`. Without `partial`: all or nothing over every file (one journal); the first
/// error rolls back everything this command added and is returned. With `partial`: blocks
/// before a file's error are kept, later files still run; the report lists each file's
/// error.
pub fn run(engine: &Engine, files: &[PathBuf], partial: bool) -> Result<(Imported, Option<Error>)> {
    run_for(engine, files, partial, &mut Caller::this_process())
}

/// [`run`] for `caller` (its paths, its stderr).
pub fn run_for(
    engine: &Engine,
    files: &[PathBuf],
    partial: bool,
    caller: &mut Caller,
) -> Result<(Imported, Option<Error>)> {
    run_with(
        engine,
        files,
        partial,
        &journal_dir(engine),
        ImportOptions::for_store(engine.config()),
        caller,
    )
}

/// [`run_for`] into any store, with the journal directory and options given.
pub fn run_with<S: BlockStore>(
    store: &S,
    files: &[PathBuf],
    partial: bool,
    journal_dir: &Path,
    options: ImportOptions,
    caller: &mut Caller,
) -> Result<(Imported, Option<Error>)> {
    // The bar's total when every input is a regular file; pipes make it a spinner.
    let mut total = Some(0);
    for path in files {
        let meta = if path.as_os_str() == STDIN {
            None
        } else {
            let path = caller.path(path);
            Some(std::fs::metadata(&path).map_err(|e| Error::io("cannot open", &path, e))?)
        };
        total = match meta {
            Some(meta) if meta.is_file() => total.map(|t| t + meta.len()),
            _ => None,
        };
    }
    let mut import = Import::begin(store, journal_dir, options)
        .map_err(|e| store_error(e, journal_dir, false))?;
    let bar = progress::bar("importing", total, true);
    let mut imported = Imported { files: Vec::new() };
    let mut failed = 0;
    for path in files {
        let added = open(path, caller).and_then(|input| {
            match import.add(input, &|n| bar.inc(n)) {
                Ok(added) => Ok(report(path, &added.header, added.blocks, added.bytes)),
                // With --partial a bad file is reported with what was kept of it.
                Err(ImportError::Car {
                    source,
                    stored,
                    bytes,
                    header: Some(header),
                }) if partial => {
                    let mut file = report(path, &header, stored, bytes);
                    let err = Error::Car {
                        path: path.clone(),
                        source,
                        stored,
                    };
                    file.error = Some(err.to_string());
                    Ok(file)
                }
                Err(e) => Err(store_error(e, path, partial)),
            }
        });
        match added {
            Ok(file) => {
                failed += usize::from(file.error.is_some());
                imported.files.push(file);
            }
            Err(err @ Error::Car { .. }) if partial => {
                imported.files.push(FileImport {
                    path: path.clone(),
                    version: "?",
                    roots: Vec::new(),
                    blocks: 0,
                    bytes: 0,
                    error: Some(err.to_string()),
                });
                failed += 1;
            }
            Err(err) => {
                bar.finish_and_clear();
                // The import's own error is the one to report; if the rollback fails too,
                // the journal stays and the next command that opens the store finishes it.
                if let Err(rollback) = import.abort() {
                    caller.note(&format!(
                        "ipfrs-store: rollback of the import failed ({rollback}); the next \
                         command that opens the store retries it"
                    ));
                }
                return Err(err);
            }
        }
    }
    bar.finish_and_clear();
    import
        .commit()
        .map_err(|e| store_error(e, journal_dir, partial))?;
    let failure = (failed > 0).then_some(Error::PartialImport {
        failed,
        total: files.len(),
    });
    Ok((imported, failure))
}
