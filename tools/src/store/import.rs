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

/// Imports one CAR file into `store` in one pass, `put_many` in batches; every block was
/// verified by the reader. Returns the file's figures; a CAR error past the header comes back
/// in [`FileImport::error`] with the figures of the blocks stored before it. Store failures
/// and unreadable headers are errors.
pub fn ingest<S: BlockStore>(
    store: &S,
    path: &Path,
    options: ReadOptions,
    progress: &ProgressBar,
) -> Result<FileImport> {
    let mut reader = open(path, options)?;
    let header = reader.header().clone();
    let mut report = FileImport {
        path: path.to_path_buf(),
        version: version_name(header.version),
        roots: header.roots.iter().map(ToString::to_string).collect(),
        blocks: 0,
        bytes: 0,
        error: None,
    };
    let mut batch: Vec<Block> = Vec::with_capacity(BATCH_BLOCKS);
    let mut batch_bytes = 0;
    let mut start = reader.offset();
    let flush = |batch: &mut Vec<Block>, report: &mut FileImport| -> Result<()> {
        block_on(store.put_many(batch))?;
        report.blocks += batch.len() as u64;
        report.bytes += batch.iter().map(|b| b.len() as u64).sum::<u64>();
        batch.clear();
        Ok(())
    };
    loop {
        let next = reader.next();
        progress.inc(reader.offset() - start);
        start = reader.offset();
        match next {
            None => break,
            Some(Ok(block)) => {
                batch_bytes += block.len();
                batch.push(block);
                if batch.len() >= BATCH_BLOCKS || batch_bytes >= BATCH_BYTES {
                    flush(&mut batch, &mut report)?;
                    batch_bytes = 0;
                }
            }
            Some(Err(source)) => {
                // Blocks before the error are whole and verified: store them, then report.
                flush(&mut batch, &mut report)?;
                let err = Error::Car {
                    path: path.to_path_buf(),
                    source: Box::new(source),
                    stored: report.blocks,
                };
                report.error = Some(err.to_string());
                return Ok(report);
            }
        }
    }
    flush(&mut batch, &mut report)?;
    Ok(report)
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
