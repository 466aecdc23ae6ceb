//! `car import`: CAR files into the store, verified, in batches, all or nothing per file.
//!
//! Without --partial every file is read twice: a validation pass (framing and every block's
//! hash, nothing stored), then an ingest pass. Memory stays at one batch whatever the size of
//! the files; the price is reading and hashing each file twice. Bad input therefore stores
//! nothing. A failure of the store itself during the ingest pass (disk full) leaves the blocks
//! stored so far: they are valid, content-addressed blocks, and `repo gc` removes them if they
//! are not wanted.

use std::fs::File;
use std::path::{Path, PathBuf};

use futures_lite::future::block_on;
use indicatif::ProgressBar;
use ipfrs_storage::{Block, BlockStore, Engine};
use serde::Serialize;

use super::error::{Error, Result};
use super::output::{self, Report};
use super::progress;
use crate::car::{self, CarError, CarVersion, ReadOptions};

/// Blocks per `put_many` call: large enough to amortize the round trip to the shards and to
/// fill group commits, small enough to bound memory (see [`BATCH_BYTES`]).
pub const BATCH_BLOCKS: usize = 1024;
/// Bytes per `put_many` call at most (a batch is sent at whichever limit comes first).
pub const BATCH_BYTES: usize = 16 << 20;

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

/// Reads one CAR file with the store's block limit, opening errors tagged with the path.
fn open(path: &Path, options: ReadOptions) -> Result<car::CarReader<std::io::BufReader<File>>> {
    let file = File::open(path).map_err(|e| Error::io("cannot open", path, e))?;
    car::read_with(file, options).map_err(|source| Error::Car {
        path: path.to_path_buf(),
        source: Box::new(source),
        stored: 0,
    })
}

/// Batches read ahead of the store: the reader thread parses and hashes the next batch while
/// the store writes the current one. Memory: at most this many batches queued, plus one being
/// filled and one being written (3 x [`BATCH_BYTES`] = 48 MiB at most).
const READ_AHEAD: usize = 1;

/// A batch of verified blocks from the reader thread, the file offset after them, and the
/// error that ended the file early, if any.
struct Batch {
    blocks: Vec<Block>,
    offset: u64,
    error: Option<CarError>,
}

/// Imports one CAR file into `store` in one pass, `put_many` in batches; every block was
/// verified by the reader, which runs on its own thread one batch ahead. Returns the file's
/// figures; a CAR error past the header comes back in [`FileImport::error`] with the figures
/// of the blocks stored before it. Store failures and unreadable headers are errors.
pub fn ingest<S: BlockStore>(
    store: &S,
    path: &Path,
    options: ReadOptions,
    progress: &ProgressBar,
) -> Result<FileImport> {
    let reader = open(path, options)?;
    let header = reader.header().clone();
    let mut report = FileImport {
        path: path.to_path_buf(),
        version: version_name(header.version),
        roots: header.roots.iter().map(ToString::to_string).collect(),
        blocks: 0,
        bytes: 0,
        error: None,
    };
    let mut done = reader.offset();
    progress.inc(done);
    let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(READ_AHEAD);
    std::thread::scope(|scope| {
        scope.spawn(move || read_batches(reader, &tx));
        // `rx` is consumed here: if the store fails, it is dropped on return, the reader's
        // next send fails, and the reader thread ends.
        for batch in rx {
            if !batch.blocks.is_empty() {
                block_on(store.put_many(&batch.blocks))?;
                report.blocks += batch.blocks.len() as u64;
                report.bytes += batch.blocks.iter().map(|b| b.len() as u64).sum::<u64>();
            }
            progress.inc(batch.offset.saturating_sub(done));
            done = batch.offset;
            if let Some(source) = batch.error {
                // Blocks before the error were whole and verified, and are stored.
                let err = Error::Car {
                    path: path.to_path_buf(),
                    source: Box::new(source),
                    stored: report.blocks,
                };
                report.error = Some(err.to_string());
                break;
            }
        }
        Ok(report)
    })
}

/// The reader thread: batches of at most [`BATCH_BLOCKS`] blocks or [`BATCH_BYTES`] bytes,
/// the last one carrying the error that ended the file, if any.
fn read_batches<R: std::io::Read>(
    mut reader: car::CarReader<R>,
    tx: &std::sync::mpsc::SyncSender<Batch>,
) {
    let mut blocks = Vec::with_capacity(BATCH_BLOCKS);
    let mut bytes = 0;
    loop {
        let (last, error) = match reader.next() {
            None => (true, None),
            Some(Err(e)) => (true, Some(e)),
            Some(Ok(block)) => {
                bytes += block.len();
                blocks.push(block);
                (false, None)
            }
        };
        if last || blocks.len() >= BATCH_BLOCKS || bytes >= BATCH_BYTES {
            let batch = Batch {
                blocks: std::mem::replace(&mut blocks, Vec::with_capacity(BATCH_BLOCKS)),
                offset: reader.offset(),
                error,
            };
            bytes = 0;
            if tx.send(batch).is_err() || last {
                return;
            }
        }
    }
}

/// Reads the whole file, verifying framing and every block's hash; stores nothing.
fn validate(path: &Path, options: ReadOptions, progress: &ProgressBar) -> Result<()> {
    let mut reader = open(path, options)?;
    let mut start = reader.offset();
    while let Some(item) = reader.next() {
        progress.inc(reader.offset() - start);
        start = reader.offset();
        item.map_err(|source: CarError| Error::Car {
            path: path.to_path_buf(),
            source: Box::new(source),
            stored: 0,
        })?;
    }
    Ok(())
}

fn version_name(version: CarVersion) -> &'static str {
    match version {
        CarVersion::V1 => "v1",
        CarVersion::V2 => "v2",
    }
}

/// `car import`. Without `partial`: every file is validated before any is ingested, so bad
/// input imports nothing at all. With `partial`: one pass per file, blocks before an error
/// are kept, later files still run; the report lists each file's error.
pub fn run(engine: &Engine, files: &[PathBuf], partial: bool) -> Result<(Imported, Option<Error>)> {
    let options = ReadOptions {
        max_block_size: engine.config().max_block_size,
    };
    let mut total = 0;
    for path in files {
        total += std::fs::metadata(path)
            .map_err(|e| Error::io("cannot open", path, e))?
            .len();
    }
    let mut imported = Imported { files: Vec::new() };
    if !partial {
        let bar = progress::bar("verifying", Some(total), true);
        for path in files {
            validate(path, options, &bar)?;
        }
        bar.finish_and_clear();
    }
    let bar = progress::bar("importing", Some(total), true);
    let mut failed = 0;
    for path in files {
        let file = match ingest(engine, path, options, &bar) {
            Ok(file) => file,
            Err(err @ Error::Car { .. }) if partial => FileImport {
                path: path.clone(),
                version: "?",
                roots: Vec::new(),
                blocks: 0,
                bytes: 0,
                error: Some(err.to_string()),
            },
            Err(err) => return Err(err),
        };
        if let Some(message) = &file.error {
            if !partial {
                // The file changed since it was validated; the message says what was stored.
                return Err(Error::Changed(message.clone()));
            }
            failed += 1;
        }
        imported.files.push(file);
    }
    bar.finish_and_clear();
    let failure = (failed > 0).then_some(Error::PartialImport {
        failed,
        total: files.len(),
    });
    Ok((imported, failure))
}
