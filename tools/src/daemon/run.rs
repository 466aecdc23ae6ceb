//! `ipfrs-store daemon`: binds the API and the gateway, records the API address in
//! `<repo>/api` (as Kubo does, for other `ipfrs-store` processes to hand their work to), serves
//! until SIGINT or SIGTERM, then drains the requests in flight, removes the `api` file, and
//! returns so the caller closes the engine.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::watch;

use crate::store::cli::DaemonArgs;
use crate::store::error::Error as CliError;
use crate::store::repo::Repo;

use super::auth::Authorizations;
use super::command;
use super::error::{Error, Result};
use super::gateway::Gateway;
use super::limits::Limits;
use super::node::Node;
use super::rpc::{self, Rpc};
use super::server;

/// The file in the repository that holds the running daemon's API address.
pub fn api_file(repo: &Repo) -> PathBuf {
    repo.root().join("api")
}

/// Parses `127.0.0.1:5001` or Kubo's `/ip4/127.0.0.1/tcp/5001`.
pub fn parse_addr(text: &str) -> Result<SocketAddr> {
    let bad = || Error::BadRequest(format!("bad listen address {text:?} (e.g. 127.0.0.1:5001)"));
    if let Some(rest) = text
        .strip_prefix("/ip4/")
        .or_else(|| text.strip_prefix("/ip6/"))
    {
        let (ip, port) = rest.split_once("/tcp/").ok_or_else(bad)?;
        let ip: std::net::IpAddr = ip.parse().map_err(|_| bad())?;
        let port: u16 = port.trim_end_matches('/').parse().map_err(|_| bad())?;
        return Ok(SocketAddr::new(ip, port));
    }
    text.parse().map_err(|_| bad())
}

/// The multiaddr form of `addr` (what Kubo prints and writes in `api`).
pub fn multiaddr(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => format!("/ip4/{}/tcp/{}", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("/ip6/{}/tcp/{}", a.ip(), a.port()),
    }
}

/// Runs the daemon over `node` until a stop signal.
pub fn run(node: Node, args: &DaemonArgs) -> crate::store::error::Result<()> {
    let api = parse_addr(&args.api)?;
    let gateway = match args.gateway.as_str() {
        "" | "off" | "none" => None,
        text => Some(parse_addr(text)?),
    };
    let auth = match &args.api_auth {
        Some(path) => Some(Authorizations::load(path)?),
        None => None,
    };
    for addr in std::iter::once(api).chain(gateway) {
        if !addr.ip().is_loopback() && !args.allow_remote {
            return Err(CliError::Usage(format!(
                "{addr} is not a loopback address: give --allow-remote to listen beyond this \
                 machine (the API then needs --api-auth)"
            )));
        }
    }
    if !api.ip().is_loopback() && auth.is_none() {
        return Err(CliError::Usage(format!(
            "the API on {api} would be open to the network: give --api-auth FILE (Kubo's \
             API.Authorizations with a bearer token)"
        )));
    }
    let limits = Limits {
        max_connections: args.max_connections.max(1),
        header_timeout: std::time::Duration::from_secs(args.header_timeout.max(1)),
        body_idle: std::time::Duration::from_secs(args.body_timeout.max(1)),
        ..Limits::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ipfrs-daemon")
        .build()
        .map_err(|e| CliError::io("cannot start the runtime for", node.repo().root(), e))?;
    let node = Arc::new(node);
    let result = runtime.block_on(serve(node.clone(), api, gateway, auth, limits));
    // Blocking tasks still running (an import cut off by the drain deadline) are not waited
    // for: the engine close that follows fails their writes, and their journals roll back at
    // the next open.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}

async fn serve(
    node: Arc<Node>,
    api: SocketAddr,
    gateway: Option<SocketAddr>,
    auth: Option<Authorizations>,
    limits: Limits,
) -> crate::store::error::Result<()> {
    let root = node.repo().root().to_path_buf();
    let bind = |addr: SocketAddr| {
        let root = root.clone();
        async move {
            TcpListener::bind(addr)
                .await
                .map_err(|e| CliError::io("cannot listen on", format!("{addr} for"), e))
                .map_err(|e| (e, root))
        }
    };
    let api_listener = bind(api).await.map_err(|(e, _)| e)?;
    let api_bound = api_listener
        .local_addr()
        .map_err(|e| CliError::io("cannot read the address of", &root, e))?;
    let gateway_listener = match gateway {
        Some(addr) => Some(bind(addr).await.map_err(|(e, _)| e)?),
        None => None,
    };
    let peer_id = rpc::peer_id(&node).await?;
    let command_secret = command::write_secret(node.repo())?;
    let rpc = Arc::new(Rpc {
        node: node.clone(),
        auth,
        limits: limits.clone(),
        peer_id,
        command_secret: command_secret.clone(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(server::serve(
        api_listener,
        limits.clone(),
        move |req| rpc.clone().handle(req),
        stop_rx.clone(),
    ));
    let mut lines = vec![format!(
        "RPC API server listening on {}",
        multiaddr(api_bound)
    )];
    if let Some(listener) = gateway_listener {
        let bound = listener
            .local_addr()
            .map_err(|e| CliError::io("cannot read the address of", &root, e))?;
        // The engine handle is shared (a clone of the same open engine), not reopened.
        let gw = Arc::new(Gateway {
            store: Arc::new(node.engine().clone()),
        });
        tasks.spawn(server::serve(
            listener,
            limits,
            move |req| gw.clone().handle(req),
            stop_rx.clone(),
        ));
        lines.push(format!("Gateway server listening on {}", multiaddr(bound)));
    }
    // Other processes reach the API at a loopback address even when it listens on all.
    let reach = if api_bound.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), api_bound.port())
    } else {
        api_bound
    };
    let api_path = api_file(node.repo());
    let api_text = multiaddr(reach);
    std::fs::write(&api_path, &api_text).map_err(|e| CliError::io("cannot write", &api_path, e))?;
    let stop = StopSignals::install();
    lines.push("Daemon is ready".into());
    {
        let mut out = std::io::stdout().lock();
        for line in &lines {
            let _ = writeln!(out, "{line}");
        }
        let _ = out.flush();
    }
    let signal = stop.wait().await;
    eprintln!("ipfrs-store: {signal}: stopping (requests in flight finish first)");
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    // Only our own file: a second daemon (refused by the lock) never wrote one.
    if std::fs::read_to_string(&api_path).is_ok_and(|t| t == api_text) {
        let _ = std::fs::remove_file(&api_path);
    }
    let secret_path = command::secret_file(node.repo());
    if std::fs::read_to_string(&secret_path).is_ok_and(|t| t == command_secret) {
        let _ = std::fs::remove_file(&secret_path);
    }
    Ok(())
}

/// SIGINT and SIGTERM, caught from the moment this is made: made before a daemon says it is
/// ready, so that a signal sent as soon as it says so (a test, a supervisor) is a drain and
/// not the default action's exit. Made after the readiness line, a SIGTERM 70 ms after it
/// killed the daemon of `daemon_safety::connections_past_the_limit_get_503` in CI.
pub struct StopSignals(Option<(Signal, Signal)>);

impl StopSignals {
    /// Installs the handlers (inside the runtime).
    pub fn install() -> StopSignals {
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => StopSignals(Some((term, int))),
            _ => StopSignals(None),
        }
    }

    /// Waits for SIGINT or SIGTERM; says which.
    pub async fn wait(self) -> &'static str {
        let Some((mut term, mut int)) = self.0 else {
            // Without signal handlers the default action (exit) applies; wait forever.
            std::future::pending::<()>().await;
            return "stopped";
        };
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    }
}
