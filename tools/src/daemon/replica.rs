//! `ipfrs-store replica serve`: the trustless gateway over a read replica of a bucket
//! ([`ipfrs_storage::Replica`]), so several gateways serve the one data set a primary
//! uploads (issue 16).
//!
//! No repository and no data directory: the `[remote]` section of the configuration file
//! names the bucket, parsed as the engine's config file is (credentials only from the
//! environment). The replica is opened and refreshed on blocking threads (both list the
//! bucket and fetch hints); requests read it through [`BlockStore`] meanwhile, against the
//! index of the last refresh. Stops on SIGINT or SIGTERM: no new connections, requests in
//! flight finish (up to the server's drain deadline), then the replica is closed.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ipfrs_storage::{BlockStore, Config, Replica};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::store::cli::ReplicaServeArgs;
use crate::store::error::{Error as CliError, Result};

use super::gateway::Gateway;
use super::limits::Limits;
use super::run::{StopSignals, multiaddr, parse_addr};
use super::server;

/// Opens the replica of `config`'s bucket and serves it until a stop signal.
pub fn run(config: &Path, args: &ReplicaServeArgs) -> Result<()> {
    let addr = parse_addr(&args.gateway)?;
    if !addr.ip().is_loopback() && !args.allow_remote {
        return Err(CliError::Usage(format!(
            "{addr} is not a loopback address: give --allow-remote to serve the replica \
             beyond this machine"
        )));
    }
    // The data directory is never used: a replica keeps nothing on disk.
    let parsed = Config::from_toml_file(config, config.parent().unwrap_or(Path::new(".")))?;
    let Some(remote) = parsed.remote else {
        return Err(CliError::Usage(format!(
            "{} has no [remote] section: a replica serves the bucket it names",
            config.display()
        )));
    };
    let name = format!("{}/{}", remote.bucket.bucket, remote.bucket.prefix);
    let limits = Limits {
        max_connections: args.max_connections.max(1),
        header_timeout: Duration::from_secs(args.header_timeout.max(1)),
        ..Limits::default()
    };
    // Opened before the runtime exists: it blocks this thread while it indexes the bucket.
    let replica = Arc::new(Replica::open_tier(&remote).map_err(ipfrs_storage::Error::from)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ipfrs-replica")
        .build()
        .map_err(|e| CliError::io("cannot start the runtime for", config, e))?;
    let every = (args.refresh_every > 0).then(|| Duration::from_secs(args.refresh_every));
    let result = runtime.block_on(serve(replica.clone(), &name, addr, every, limits));
    // A refresh still running on a blocking thread is not waited for: it only reads.
    runtime.shutdown_timeout(Duration::from_secs(1));
    let closed = futures_lite::future::block_on(BlockStore::close(&*replica));
    result?;
    Ok(closed?)
}

async fn serve(
    replica: Arc<Replica>,
    name: &str,
    addr: SocketAddr,
    refresh_every: Option<Duration>,
    limits: Limits,
) -> Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| CliError::io("cannot listen on", format!("{addr} for"), e))?;
    let bound = listener
        .local_addr()
        .map_err(|e| CliError::io("cannot read the address of", format!("{addr}"), e))?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let gateway = Arc::new(Gateway {
        store: replica.clone(),
    });
    tasks.spawn(server::serve(
        listener,
        limits,
        move |req| gateway.clone().handle(req),
        stop_rx.clone(),
    ));
    if let Some(every) = refresh_every {
        tasks.spawn(refresh_loop(replica.clone(), every, stop_rx.clone()));
    }
    let stop = StopSignals::install();
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "Replica of {name}: {} blocks", replica.block_count());
        let _ = writeln!(out, "Gateway server listening on {}", multiaddr(bound));
        let _ = writeln!(out, "Replica is ready");
        let _ = out.flush();
    }
    let signal = stop.wait().await;
    eprintln!("ipfrs-store: {signal}: stopping (requests in flight finish first)");
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Refreshes the replica every `every` until `stop`; a failed refresh is reported on stderr
/// and the previous index keeps serving (the next round tries again).
async fn refresh_loop(replica: Arc<Replica>, every: Duration, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let work = tokio::task::spawn_blocking({
            let replica = replica.clone();
            move || replica.refresh()
        });
        let done = tokio::select! {
            _ = stop.changed() => return,
            done = work => done,
        };
        match done {
            Ok(Ok(report)) if report.packs_added + report.packs_dropped > 0 => {
                eprintln!(
                    "ipfrs-store: replica refreshed: {} packs added, {} dropped; {} blocks",
                    report.packs_added,
                    report.packs_dropped,
                    replica.block_count()
                );
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                eprintln!("ipfrs-store: replica refresh failed (serving the previous index): {e}")
            }
            Err(e) => eprintln!("ipfrs-store: replica refresh did not finish: {e}"),
        }
    }
}
