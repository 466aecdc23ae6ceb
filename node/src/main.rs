//! `bitswap-node`: a libp2p bitswap node over an ipfrs-store repository.
//!
//! ```text
//! bitswap-node --repo A --import-car file.car --listen /ip4/127.0.0.1/tcp/0
//! bitswap-node --repo B --connect /ip4/127.0.0.1/tcp/PORT/p2p/PEER --fetch ROOT
//! bitswap-node bench --blocks 2000 --size 16384 --rounds 5
//! ```
//! stdout carries one fact a line for a parent process to read: `peer-id <id>`,
//! `listening <multiaddr>/p2p/<id>`, `imported <blocks> <bytes> <file>`, `root <cid>`,
//! `fetched <root> <blocks> <bytes>`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use ipfrs_node::bench::{self, BenchArgs};
use ipfrs_node::repo::OpenRepo;
use ipfrs_node::{Error, Node, Result};
use ipfrs_storage::{BlockStore, Cid};
use libp2p::Multiaddr;

#[derive(Debug, Parser)]
#[command(
    name = "bitswap-node",
    about = "A libp2p bitswap node (TCP, noise, yamux) whose block store is the ipfrs engine",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Fetch blocks over loopback bitswap with the engine vs the in-memory blockstore.
    Bench(BenchArgs),
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The ipfrs-store repository (engine data in `<repo>/blocks`; created if missing).
    #[arg(long)]
    repo: Option<PathBuf>,
    /// Address to listen on, e.g. /ip4/127.0.0.1/tcp/0 (repeatable).
    #[arg(long)]
    listen: Vec<Multiaddr>,
    /// Peer to dial, e.g. /ip4/127.0.0.1/tcp/4001/p2p/12D3... (repeatable).
    #[arg(long)]
    connect: Vec<Multiaddr>,
    /// Import a CAR file before serving, all or nothing (repeatable).
    #[arg(long)]
    import_car: Vec<PathBuf>,
    /// Fetch the whole DAG under this root from the connected peers, then exit.
    #[arg(long)]
    fetch: Option<Cid>,
    /// Keep serving after --fetch instead of exiting.
    #[arg(long)]
    serve: bool,
    /// Give up a --fetch after this many seconds.
    #[arg(long, default_value_t = 60)]
    timeout_secs: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match &cli.command {
        Some(Command::Bench(args)) => bench::run(args).await,
        None => run(cli.run).await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bitswap-node: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: RunArgs) -> Result<()> {
    let Some(dir) = args.repo.clone() else {
        eprintln!("bitswap-node: --repo DIR is required (or use `bitswap-node bench`)");
        std::process::exit(2);
    };
    let cars = args.import_car.clone();
    // Opening, recovery and imports block (threads, fsyncs): off the async workers.
    let repo = tokio::task::spawn_blocking(move || -> Result<OpenRepo> {
        let repo = OpenRepo::open(&dir)?;
        for car in &cars {
            let imported = repo.import_car(car)?;
            println!(
                "imported {} {} {}",
                imported.blocks,
                imported.bytes,
                car.display()
            );
            for root in imported.roots {
                println!("root {root}");
            }
        }
        Ok(repo)
    })
    .await
    .map_err(|e| Error::Swarm(Box::new(e)))??;
    let engine = repo.engine.clone();

    let mut node = Node::new(repo.engine, true)?;
    println!("peer-id {}", node.peer_id());
    for addr in args.listen {
        node.listen(addr)?;
    }
    for addr in args.connect {
        node.dial(addr)?;
    }
    if let Some(root) = args.fetch {
        let fetched = node
            .fetch_dag(root, Duration::from_secs(args.timeout_secs))
            .await?;
        println!("fetched {root} {} {}", fetched.blocks, fetched.bytes);
        if !args.serve {
            drop(node);
            BlockStore::close(&engine).await?;
            return Ok(());
        }
    }
    node.serve().await
}
