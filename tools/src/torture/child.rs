//! The child: opens the store, then puts, deletes and compacts forever, logging every intent
//! and acknowledgement on stdout (see [`crate::torture::protocol`]) until the parent kills it.
//! With `--workload car` it first rolls back the imports an earlier child left unfinished
//! (as every `ipfrs-store` command does when it opens a repository), and imports generated
//! CAR files ([`crate::torture::car`]) among its other operations, through
//! [`crate::import::Import`]: `begin` (journal), `add` (one pass: hash, journal each batch's
//! new blocks, `put_many`), then `commit` or, for a faulty file, `abort` -- the calls
//! `ipfrs-store car import` makes.
//!
//! Its operations are a function of its seed and of what the parent told it, so a campaign
//! replays the same workload; only where the kill lands depends on timing.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use ipfrs_storage::{BackendKind, Block, BlockingStore, Engine};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::import::{self as importer, Import, ImportError};
use crate::torture::car;
use crate::torture::protocol::Event;
use crate::torture::workload::{Mode, Workload, block, config};

/// What the parent tells a child on its command line; the candidate blocks to delete come on
/// stdin (one line of indices), as they can be many.
#[derive(Debug, Clone)]
pub struct ChildArgs {
    /// The engine's data directory.
    pub store: PathBuf,
    /// The cold backend.
    pub backend: BackendKind,
    /// The durability mode.
    pub mode: Mode,
    /// Seed of this child's operations.
    pub seed: u64,
    /// The first fresh block index.
    pub next: u64,
    /// Stored blocks above which the child deletes more than it puts.
    pub live_cap: usize,
    /// What it does.
    pub workload: Workload,
}

/// Why the child stopped by itself.
enum Stop {
    /// The parent is gone (stdout closed): nothing to report to.
    Orphaned,
    /// An operation failed: reported on the log.
    Failed(String),
}

fn emit(event: &Event) -> Result<(), Stop> {
    // One write per event, so a line is either wholly in the pipe or not at all.
    let line = event.to_line();
    let mut out = std::io::stdout().lock();
    out.write_all(line.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|_| Stop::Orphaned)
}

/// Runs the child; returns only on failure (exit code 3) or when the parent is gone (0).
pub fn run(args: &ChildArgs) -> std::process::ExitCode {
    match work(args) {
        Ok(()) | Err(Stop::Orphaned) => std::process::ExitCode::SUCCESS,
        Err(Stop::Failed(msg)) => {
            // The parent may already be reading the log: say it there, and on stderr.
            let _ = emit(&Event::Failed(msg.clone()));
            eprintln!("ipfrs-torture child: {msg}");
            std::process::ExitCode::from(3)
        }
    }
}

fn fail<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> Stop + '_ {
    move |e| Stop::Failed(format!("{what}: {e}"))
}

/// Share of operations (per cent) that are CAR imports under `--workload car`.
const IMPORT_SHARE: u32 = 40;

fn work(args: &ChildArgs) -> Result<(), Stop> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Stop::Failed(format!("reading the live list: {e}")))?;
    let mut live: Vec<u64> = line
        .split_ascii_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|e| Stop::Failed(format!("bad live list: {e}")))?;
    let mut rng = StdRng::seed_from_u64(args.seed);
    emit(&Event::Opening)?;
    let mut config = config(&args.store, args.backend, args.mode);
    if args.workload == Workload::Car {
        // As `ipfrs-store car import` opens its engine.
        importer::tune_for_import(&mut config);
    }
    let engine = Engine::open(config).map_err(fail("opening the store"))?;
    let store = engine.blocking();
    emit(&Event::Ready)?;
    let journal_dir = importer::default_journal_dir(&args.store);
    if args.workload == Workload::Car {
        rollback(&engine, &journal_dir)?;
    }
    let mut next = args.next;
    let mut deleted: Vec<u64> = Vec::new();
    loop {
        if args.workload == Workload::Car
            && live.len() <= args.live_cap
            && rng.random_range(0..100u32) < IMPORT_SHARE
        {
            let file = car::plan(&mut rng, next, &live, &deleted);
            next += file.fresh;
            import(&engine, &journal_dir, &file, &mut live, &mut deleted)?;
            continue;
        }
        let roll = rng.random_range(0..100u32);
        let delete_share = if live.len() > args.live_cap { 60 } else { 25 };
        if roll < 6 {
            emit(&Event::CompactStarted)?;
            let n = store.compact().map_err(fail("compact"))?;
            emit(&Event::CompactDone(n))?;
        } else if roll < 6 + delete_share && !live.is_empty() {
            let n = rng.random_range(1..=6usize).min(live.len());
            let victims: Vec<u64> = (0..n)
                .map(|_| live.swap_remove(rng.random_range(0..live.len())))
                .collect();
            delete(&store, &victims)?;
            deleted.extend_from_slice(&victims);
        } else if roll < 10 + delete_share && !deleted.is_empty() {
            // Put back a block deleted earlier in this run: a tombstone and a newer record of
            // the same key must be ordered right through rollover, compaction and recovery.
            let index = deleted.swap_remove(rng.random_range(0..deleted.len()));
            put(&store, &[index])?;
            live.push(index);
        } else {
            let n = rng.random_range(1..=12u64);
            let indices: Vec<u64> = (next..next + n).collect();
            next += n;
            put(&store, &indices)?;
            live.extend_from_slice(&indices);
        }
    }
}

fn put(store: &BlockingStore, indices: &[u64]) -> Result<(), Stop> {
    let blocks: Vec<Block> = indices.iter().map(|&i| block(i)).collect();
    emit(&Event::PutIssued(indices.to_vec()))?;
    if let [one] = blocks.as_slice() {
        store.put(one).map_err(fail("put"))?;
    } else {
        store.put_many(&blocks).map_err(fail("put_many"))?;
    }
    emit(&Event::PutAcked(indices.to_vec()))
}

fn delete(store: &BlockingStore, indices: &[u64]) -> Result<(), Stop> {
    let cids: Vec<_> = indices.iter().map(|&i| *block(i).cid()).collect();
    emit(&Event::DeleteIssued(indices.to_vec()))?;
    store.delete_many(&cids).map_err(fail("delete_many"))?;
    emit(&Event::DeleteAcked(indices.to_vec()))
}

/// Rolls back the imports an earlier child left (their journals), as `ipfrs-store` does
/// right after it opens a repository.
fn rollback(engine: &Engine, journal_dir: &Path) -> Result<(), Stop> {
    let found = car::journals(journal_dir).map_err(fail("listing the import journals"))?;
    if found == 0 {
        return Ok(());
    }
    emit(&Event::RollbackStarted)?;
    let done = importer::recover(engine, journal_dir).map_err(fail("rolling back imports"))?;
    if done.live > 0 {
        return Err(Stop::Failed(format!(
            "{} import journal(s) still locked though their importer was killed",
            done.live
        )));
    }
    emit(&Event::RollbackDone {
        journals: done.journals as u64,
        deleted: done.deleted,
    })
}

/// Imports one generated file all or nothing; a faulty file must fail and is rolled back.
fn import(
    engine: &Engine,
    journal_dir: &Path,
    file: &car::CarFile,
    live: &mut Vec<u64>,
    deleted: &mut Vec<u64>,
) -> Result<(), Stop> {
    let bytes = file.bytes().map_err(fail("writing a CAR file"))?;
    emit(&Event::ImportStarted {
        faulty: file.fault.is_some(),
        indices: file.indices.clone(),
    })?;
    let mut import =
        Import::begin(engine, journal_dir, file.options).map_err(fail("beginning an import"))?;
    emit(&Event::ImportBegun)?;
    match (import.add(bytes.as_slice(), &|_| {}), file.fault) {
        (Ok(added), None) => {
            if added.blocks != file.indices.len() as u64 {
                return Err(Stop::Failed(format!(
                    "a CAR of {} blocks imported as {}",
                    file.indices.len(),
                    added.blocks
                )));
            }
            emit(&Event::ImportCommitting)?;
            import.commit().map_err(fail("committing an import"))?;
            emit(&Event::ImportCommitted)?;
            for &i in &file.indices {
                if let Some(at) = deleted.iter().position(|&d| d == i) {
                    deleted.swap_remove(at);
                }
                if !live.contains(&i) {
                    live.push(i);
                }
            }
            Ok(())
        }
        (Ok(_), Some(fault)) => Err(Stop::Failed(format!(
            "a CAR with {fault} was imported without an error"
        ))),
        (Err(ImportError::Car { .. }), Some(_)) => {
            emit(&Event::ImportAborting)?;
            let n = import
                .abort()
                .map_err(fail("rolling back a failed import"))?;
            emit(&Event::ImportAborted(n))
        }
        (Err(e), _) => Err(Stop::Failed(format!("importing a CAR: {e}"))),
    }
}
