//! CAR import and export speed against the engine's own batched `put_many`.
//!
//! Generates a CARv1 file of `--mib` MiB of random raw leaves (`--block-kib` each, sha2-256)
//! under a tree of dag-cbor nodes, then measures on fresh stores in `--dir`:
//! 1. `car import` as the CLI runs it (validation pass, then ingest pass),
//! 2. one ingest pass alone (what `--partial` does),
//! 3. `car export` of the root's DAG to a file (from the store of 2),
//! 4. the engine's `put_many` of the same blocks in the same batch size (blocks built and
//!    hashed outside the timed region, so this is the store's own ceiling), with a second
//!    line that includes generating and hashing them.
//!
//! Between phases it runs `sync` and waits 2 s so one phase's writeback does not land in the
//! next one's time.
//!
//! ```text
//! cargo run --release -p ipfrs-tools --example car_bench -- --mib 1024 --rounds 3 --dir /path/on/disk
//! ```

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Parser;
use futures_lite::future::block_on;
use indicatif::ProgressBar;
use ipfrs_car::{CarWriter, ReadOptions};
use ipfrs_storage::{Block, BlockStore, Cid, Codec, Config, Engine, HashAlgorithm};
use ipfrs_tools::store::{export, import};
use ipld_core::ipld::Ipld;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

/// Links per interior dag-cbor node (a node of 1024 CIDs is about 40 KiB).
const FANOUT: usize = 1024;

#[derive(Debug, Parser)]
struct Args {
    /// Size of the leaf data in MiB.
    #[arg(long, default_value_t = 256)]
    mib: u64,
    /// Leaf block size in KiB.
    #[arg(long, default_value_t = 256)]
    block_kib: usize,
    /// Where the CAR file and the stores go (a real disk, not tmpfs).
    #[arg(long)]
    dir: PathBuf,
    /// Rounds of every phase (a median is printed when more than one).
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// Keep the generated CAR file (e.g. to import it with `ipfrs-store` under a memory
    /// profiler).
    #[arg(long)]
    keep: bool,
    /// Shards of the stores.
    #[arg(long, default_value_t = 2)]
    shards: usize,
}

type BoxError = Box<dyn std::error::Error>;

fn leaf(seed: u64, size: usize) -> Result<Block, BoxError> {
    let mut data = vec![0u8; size];
    StdRng::seed_from_u64(seed).fill_bytes(&mut data);
    Ok(Block::new(data)?)
}

/// The dag-cbor interior nodes over `children`, level by level; the last is the root.
fn tree(mut children: Vec<Cid>) -> Result<Vec<Block>, BoxError> {
    let mut nodes = Vec::new();
    loop {
        let mut parents = Vec::new();
        for chunk in children.chunks(FANOUT) {
            let list = Ipld::List(chunk.iter().map(|c| Ipld::Link(*c)).collect());
            let bytes = serde_ipld_dagcbor::to_vec(&list)?;
            let node = Block::with(Codec::DagCbor, HashAlgorithm::Sha2_256, bytes)?;
            parents.push(*node.cid());
            nodes.push(node);
        }
        if parents.len() == 1 {
            return Ok(nodes);
        }
        children = parents;
    }
}

fn generate(path: &Path, leaves: u64, size: usize) -> Result<(Cid, u64, u64), BoxError> {
    // First pass: the leaves' CIDs, to know the root the header must name.
    let mut cids = Vec::with_capacity(leaves as usize);
    for i in 0..leaves {
        cids.push(*leaf(i, size)?.cid());
    }
    let nodes = tree(cids)?;
    let root = *nodes.last().ok_or("no root")?.cid();
    let mut writer = CarWriter::new(BufWriter::new(File::create(path)?), &[root])?;
    for i in 0..leaves {
        let block = leaf(i, size)?;
        writer.write_block(block.cid(), block.data())?;
    }
    for node in &nodes {
        writer.write_block(node.cid(), node.data())?;
    }
    let bytes = writer.bytes_written();
    writer.finish()?;
    Ok((root, leaves + nodes.len() as u64, bytes))
}

fn open(dir: &Path, shards: usize) -> Result<Engine, BoxError> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    let mut config = Config::new(dir);
    config.shards = Some(shards);
    Ok(Engine::open(config)?)
}

/// Lets the previous phase's dirty pages reach the disk, so one phase's writeback does not
/// slow the next one down.
fn settle() {
    let _ = std::process::Command::new("sync").status();
    std::thread::sleep(Duration::from_secs(2));
}

fn line(what: &str, blocks: u64, bytes: u64, took: Duration) {
    let secs = took.as_secs_f64();
    println!(
        "{what:<44} {blocks:>8} blocks {:>9.1} MiB  {:>7.2} s  {:>9.0} blocks/s  {:>7.1} MiB/s",
        bytes as f64 / (1 << 20) as f64,
        secs,
        blocks as f64 / secs,
        bytes as f64 / (1 << 20) as f64 / secs
    );
}

/// One timed phase.
struct Measure {
    what: String,
    blocks: u64,
    bytes: u64,
    took: Duration,
}

impl Measure {
    fn new(what: &str, blocks: u64, bytes: u64, took: Duration) -> Measure {
        Measure {
            what: what.to_string(),
            blocks,
            bytes,
            took,
        }
    }
}

/// One round of every phase, each on a fresh store.
fn round_once(
    args: &Args,
    car: &Path,
    root: Cid,
    leaves: u64,
    size: usize,
    data_bytes: u64,
) -> Result<Vec<Measure>, BoxError> {
    let mut out = Vec::new();

    // 1. The CLI's import: validation pass + ingest pass.
    settle();
    let engine = open(&args.dir.join("store-import"), args.shards)?;
    let t = Instant::now();
    let (report, failure) = import::run(&engine, &[car.to_path_buf()], false)?;
    block_on(BlockStore::flush(&engine))?;
    let took = t.elapsed();
    if let Some(e) = failure {
        return Err(e.into());
    }
    let file = report.files.first().ok_or("no report")?;
    out.push(Measure::new(
        "car import (verify pass + ingest pass)",
        file.blocks,
        file.bytes,
        took,
    ));
    block_on(BlockStore::close(&engine))?;

    // 2. One ingest pass (what --partial does).
    settle();
    let engine = open(&args.dir.join("store-ingest"), args.shards)?;
    let options = ReadOptions {
        max_block_size: engine.config().max_block_size,
    };
    let t = Instant::now();
    let file = import::ingest(&engine, car, options, &ProgressBar::hidden())?;
    block_on(BlockStore::flush(&engine))?;
    out.push(Measure::new(
        "car ingest, one pass (--partial)",
        file.blocks,
        file.bytes,
        t.elapsed(),
    ));

    // 3. Export of the root's DAG from that store.
    settle();
    let exported = args.dir.join("export.car");
    let t = Instant::now();
    let (w, walked) = export::write_car(
        &engine,
        &[root],
        BufWriter::new(File::create(&exported)?),
        false,
        &exported,
    )?;
    w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    out.push(Measure::new(
        "car export (CARv1, DFS, get_many of 64)",
        walked.blocks,
        walked.bytes,
        t.elapsed(),
    ));
    block_on(BlockStore::close(&engine))?;

    // 4. The engine's own put_many of the same blocks, same batch size.
    settle();
    let engine = open(&args.dir.join("store-put"), args.shards)?;
    let mut put_time = Duration::ZERO;
    let t = Instant::now();
    let mut batch = Vec::with_capacity(import::BATCH_BLOCKS);
    let mut sent = 0u64;
    for i in 0..leaves {
        batch.push(leaf(i, size)?);
        if batch.len() == import::BATCH_BLOCKS.min(import::BATCH_BYTES / size).max(1)
            || i + 1 == leaves
        {
            let s = Instant::now();
            block_on(engine.put_many(&batch))?;
            put_time += s.elapsed();
            sent += batch.len() as u64;
            batch.clear();
        }
    }
    let s = Instant::now();
    block_on(BlockStore::flush(&engine))?;
    put_time += s.elapsed();
    let total = t.elapsed();
    out.push(Measure::new(
        "engine put_many, timed calls only",
        sent,
        data_bytes,
        put_time,
    ));
    out.push(Measure::new(
        "engine put_many incl. generating + hashing",
        sent,
        data_bytes,
        total,
    ));
    block_on(BlockStore::close(&engine))?;

    std::fs::remove_file(&exported)?;
    Ok(out)
}

fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.dir)?;
    let size = args.block_kib << 10;
    let leaves = (args.mib << 20) / size as u64;
    let car = args.dir.join("bench.car");
    let t = Instant::now();
    let (root, blocks, car_bytes) = generate(&car, leaves, size)?;
    println!(
        "generated {} ({blocks} blocks, {:.1} MiB, {} KiB leaves) in {:.1} s; {} shards, default durability (group commit)",
        car.display(),
        car_bytes as f64 / (1 << 20) as f64,
        args.block_kib,
        t.elapsed().as_secs_f64(),
        args.shards
    );
    let data_bytes = leaves * size as u64;
    let mut results: Vec<Measure> = Vec::new();
    for round in 1..=args.rounds {
        println!("round {round}:");
        for m in round_once(&args, &car, root, leaves, size, data_bytes)? {
            line(&m.what, m.blocks, m.bytes, m.took);
            results.push(m);
        }
    }
    if args.rounds > 1 {
        println!("median of {} rounds:", args.rounds);
        let mut seen: Vec<&str> = Vec::new();
        for m in &results {
            if seen.contains(&m.what.as_str()) {
                continue;
            }
            seen.push(&m.what);
            let mut times: Vec<Duration> = results
                .iter()
                .filter(|r| r.what == m.what)
                .map(|r| r.took)
                .collect();
            times.sort();
            line(&m.what, m.blocks, m.bytes, times[times.len() / 2]);
        }
    }

    for d in ["store-import", "store-ingest", "store-put"] {
        std::fs::remove_dir_all(args.dir.join(d))?;
    }
    if args.keep {
        println!("kept {} (root {root})", car.display());
    } else {
        std::fs::remove_file(&car)?;
    }
    Ok(())
}
