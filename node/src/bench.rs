//! `bitswap-node bench`: blocks fetched over bitswap on loopback, with the engine as the
//! store of both nodes against the blockstore crate's `InMemoryBlockstore`, in one run.
//!
//! One serving node per store holds the N blocks (stored before the clock starts); each
//! round, a fresh fetching node of the same kind connects to it, asks for all N blocks (at
//! most [`FETCH_WINDOW`] queries in flight) and the clock stops once every block has been
//! received and handed to its store. The two kinds alternate which goes first each round. Figures are medians over the rounds; the engines' metrics show the calls
//! bitswap made (the server's `get`s, the client's `get` before each want and its `put`s).

use std::path::Path;
use std::time::{Duration, Instant};

use blockstore::{Blockstore, InMemoryBlockstore};
use ipfrs_storage::{Block, BlockStore, Cid, Config, Engine, MetricsSnapshot, Op};
use libp2p::Multiaddr;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use crate::{FETCH_WINDOW, MAX_MULTIHASH, Node, Result};

/// Longest one round may take before the bench gives up.
const ROUND_TIMEOUT: Duration = Duration::from_secs(300);
/// Blocks per `put_many` when the serving engine is filled.
const FILL_BATCH: usize = 256;

/// The bench's parameters.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Blocks fetched per round. Past 1024, beetswap stalls 30 s per 1024 blocks (see
    /// [`Node::fetch_dag`]), which the figures would measure instead of the stores.
    #[arg(long, default_value_t = 1000)]
    pub blocks: usize,
    /// Bytes per block (raw blocks of random bytes).
    #[arg(long, default_value_t = 16 * 1024)]
    pub size: usize,
    /// Rounds per store kind; medians are reported.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Shards of each engine (default: one per core).
    #[arg(long)]
    pub shards: Option<usize>,
}

/// The stores compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Memory,
    Engine,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Memory => "InMemoryBlockstore",
            Kind::Engine => "ipfrs engine",
        }
    }
}

/// Runs the bench and prints its table and the engines' metrics on stdout.
pub async fn run(args: &BenchArgs) -> Result<()> {
    let scratch = tempfile::tempdir().map_err(|source| crate::Error::Io {
        path: std::env::temp_dir(),
        source,
    })?;
    let blocks = make_blocks(args.blocks, args.size)?;
    let cids: Vec<Cid> = blocks.iter().map(|b| *b.cid()).collect();

    let server_engine = open_engine(&scratch.path().join("server"), args.shards)?;
    for batch in blocks.chunks(FILL_BATCH) {
        BlockStore::put_many(&server_engine, batch).await?;
    }
    let memory = InMemoryBlockstore::<MAX_MULTIHASH>::new();
    for block in &blocks {
        memory.put_keyed(block.cid(), block.data()).await?;
    }
    let engine_addr = spawn_server(server_engine.clone()).await?;
    let memory_addr = spawn_server(memory).await?;

    let mut secs: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut client_metrics = None;
    for round in 0..args.rounds {
        let order = if round % 2 == 0 {
            [Kind::Memory, Kind::Engine]
        } else {
            [Kind::Engine, Kind::Memory]
        };
        for kind in order {
            let elapsed = match kind {
                Kind::Memory => {
                    let store = InMemoryBlockstore::<MAX_MULTIHASH>::new();
                    fetch_round(store, &memory_addr, &cids).await?
                }
                Kind::Engine => {
                    let dir = scratch.path().join(format!("client-{round}"));
                    let engine = open_engine(&dir, args.shards)?;
                    let elapsed = fetch_round(engine.clone(), &engine_addr, &cids).await?;
                    client_metrics = Some(engine.metrics().await?);
                    BlockStore::close(&engine).await?;
                    elapsed
                }
            };
            secs[kind as usize].push(elapsed.as_secs_f64());
        }
    }

    let total_mib = (args.blocks * args.size) as f64 / f64::from(1u32 << 20);
    println!(
        "bitswap fetch over loopback: {} blocks of {} bytes ({total_mib:.1} MiB) per round, \
         {} rounds, at most {FETCH_WINDOW} queries in flight; engines: {} shards, durability \
         {:?}",
        args.blocks,
        args.size,
        args.rounds,
        server_engine.shard_count(),
        server_engine.config().durability,
    );
    println!("| store (both nodes) | blocks/s (median) | MiB/s (median) | seconds per round |");
    println!("| --- | ---: | ---: | --- |");
    let mut medians = [0.0f64; 2];
    for kind in [Kind::Memory, Kind::Engine] {
        let rounds = &secs[kind as usize];
        let median = median(rounds);
        medians[kind as usize] = median;
        let list: Vec<String> = rounds.iter().map(|s| format!("{s:.3}")).collect();
        println!(
            "| {} | {:.0} | {:.1} | {} |",
            kind.name(),
            args.blocks as f64 / median,
            total_mib / median,
            list.join(", "),
        );
    }
    println!(
        "engine/in-memory throughput: {:.2}",
        medians[Kind::Memory as usize] / medians[Kind::Engine as usize]
    );
    print_metrics(
        "serving engine, all rounds",
        &server_engine.metrics().await?,
    );
    if let Some(metrics) = client_metrics {
        print_metrics("fetching engine, last round", &metrics);
    }
    BlockStore::close(&server_engine).await?;
    Ok(())
}

/// `n` raw blocks of `size` random bytes (seeded: the same blocks every run).
fn make_blocks(n: usize, size: usize) -> Result<Vec<Block>> {
    let mut rng = StdRng::seed_from_u64(1);
    (0..n)
        .map(|_| {
            let mut data = vec![0u8; size];
            rng.fill_bytes(&mut data);
            Ok(Block::new(data).map_err(ipfrs_storage::Error::from)?)
        })
        .collect()
}

fn open_engine(dir: &Path, shards: Option<usize>) -> Result<Engine> {
    let mut config = Config::new(dir);
    config.shards = shards;
    Ok(Engine::open(config)?)
}

/// Starts a node serving `store` on a loopback port; returns its address.
async fn spawn_server<S: Blockstore + Send + Sync + 'static>(store: S) -> Result<Multiaddr> {
    let mut node = Node::new(store, false)?;
    node.listen(loopback())?;
    let addr = node.listen_addr().await?;
    // The server runs until the process ends: the bench is the whole process.
    tokio::spawn(node.serve());
    Ok(addr)
}

/// One round: a fresh node over `store` fetches every block of `cids` from `server`; the
/// time from the first want to the last block stored.
async fn fetch_round<S: Blockstore + Send + Sync + 'static>(
    store: S,
    server: &Multiaddr,
    cids: &[Cid],
) -> Result<Duration> {
    let mut node = Node::new(store, false)?;
    node.dial(server.clone())?;
    node.connected(ROUND_TIMEOUT).await?;
    let start = Instant::now();
    node.fetch_blocks(cids, cids.len() as u64, ROUND_TIMEOUT)
        .await?;
    Ok(start.elapsed())
}

fn loopback() -> Multiaddr {
    Multiaddr::empty()
        .with(libp2p::multiaddr::Protocol::Ip4(
            std::net::Ipv4Addr::LOCALHOST,
        ))
        .with(libp2p::multiaddr::Protocol::Tcp(0))
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// The calls bitswap made on an engine: count, items, bytes, latency quantiles.
fn print_metrics(label: &str, metrics: &MetricsSnapshot) {
    println!("{label}:");
    for op in metrics.ops.iter().filter(|o| o.calls > 0) {
        let q = |q: f64| op.latency_micros.value_at_quantile(q);
        println!(
            "  {:<6} calls {:>7}  items {:>7}  errors {}  MiB {:>8.1}  latency us p50 {} p90 {} p99 {} max {}",
            op.op.name(),
            op.calls,
            op.items,
            op.errors,
            op.bytes as f64 / f64::from(1u32 << 20),
            q(0.5),
            q(0.9),
            q(0.99),
            op.latency_micros.max(),
        );
    }
    for op in Op::ALL {
        if !metrics.ops.iter().any(|o| o.op == op && o.calls > 0) {
            print!("  {} 0;", op.name());
        }
    }
    println!();
}
