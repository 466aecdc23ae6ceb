//! The swarm: TCP, noise, yamux, identify and beetswap over a block store.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use beetswap::QueryId;
use blockstore::Blockstore;
use ipfrs_storage::Cid;
use libp2p::futures::StreamExt;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, Swarm, SwarmBuilder, identify, noise, tcp, yamux};

use crate::{CountingStore, Error, Result};

/// Largest multihash the node handles: the engine's (64 bytes, every digest of the
/// codetable). A CID with a longer one is refused by beetswap before any store call.
pub const MAX_MULTIHASH: usize = 64;

/// The identify protocol version the node announces (Kubo's and Helia's).
const IDENTIFY_PROTOCOL: &str = "ipfs/0.1.0";

/// A connection with no stream open is closed after this: long enough for a fetch that
/// pauses between rounds, short enough not to keep dead peers.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Queries in flight at most during a fetch: beetswap sends the whole wantlist in one
/// message, so a bounded window keeps messages small and lets stored blocks be served
/// while the rest are on the way.
pub const FETCH_WINDOW: usize = 256;

/// How often a wait for stored blocks checks the store.
const STORE_POLL: Duration = Duration::from_millis(5);

/// The node's behaviours: identify (so js-libp2p learns this peer speaks bitswap) and
/// bitswap over the store `S`.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour<S: Blockstore + 'static> {
    identify: identify::Behaviour,
    bitswap: beetswap::Behaviour<MAX_MULTIHASH, CountingStore<S>>,
}

/// What a fetch brought.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fetched {
    /// Distinct blocks (the root included).
    pub blocks: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Blocks of a codec other than dag-pb, dag-cbor and raw: kept, links not followed.
    pub unfollowed: u64,
}

/// A libp2p node serving and fetching blocks over bitswap with `S` as its block store.
pub struct Node<S: Blockstore + 'static> {
    swarm: Swarm<Behaviour<S>>,
    store: Arc<CountingStore<S>>,
    /// Print each listen address on stdout (`listening <addr>/p2p/<peer id>`).
    announce: bool,
    listening: Vec<Multiaddr>,
    /// Connections open now.
    connections: usize,
}

impl<S: Blockstore + 'static> Node<S> {
    /// A node with a new identity over `store`. With `announce`, every listen address is
    /// printed on stdout as it becomes known, for a parent process to read.
    pub fn new(store: S, announce: bool) -> Result<Node<S>> {
        let store = Arc::new(CountingStore::new(store));
        let bitswap_store = Arc::clone(&store);
        let swarm = SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(
                tcp::Config::default(),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|e| Error::Swarm(Box::new(e)))?
            .with_behaviour(|key| Behaviour {
                identify: identify::Behaviour::new(identify::Config::new(
                    IDENTIFY_PROTOCOL.to_string(),
                    key.public(),
                )),
                bitswap: beetswap::Behaviour::new(bitswap_store),
            })
            .map_err(|e| Error::Swarm(Box::new(e)))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(IDLE_TIMEOUT))
            .build();
        Ok(Node {
            swarm,
            store,
            announce,
            listening: Vec::new(),
            connections: 0,
        })
    }

    /// The node's peer id.
    pub fn peer_id(&self) -> PeerId {
        *self.swarm.local_peer_id()
    }

    /// The store, with the count of blocks bitswap stored through it.
    pub fn store(&self) -> &CountingStore<S> {
        &self.store
    }

    /// Starts listening on `addr` (`/ip4/127.0.0.1/tcp/0` for a port the OS picks).
    pub fn listen(&mut self, addr: Multiaddr) -> Result<()> {
        self.swarm.listen_on(addr)?;
        Ok(())
    }

    /// Waits until the node listens somewhere and returns that address with `/p2p/<peer id>`.
    pub async fn listen_addr(&mut self) -> Result<Multiaddr> {
        while self.listening.is_empty() {
            self.step().await?;
        }
        Ok(self.listening[0].clone())
    }

    /// Dials a peer (a multiaddr, with or without `/p2p/<peer id>`).
    pub fn dial(&mut self, addr: Multiaddr) -> Result<()> {
        self.swarm.dial(addr)?;
        Ok(())
    }

    /// Waits until at least one connection is established (after [`Node::dial`]).
    pub async fn connected(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while self.connections == 0 {
            self.step_until(deadline, "connected", || (1, 1)).await?;
        }
        Ok(())
    }

    /// Serves blocks until the process ends.
    pub async fn serve(mut self) -> Result<()> {
        loop {
            self.step().await?;
        }
    }

    /// Drives the swarm for one event; returns bitswap's events, handles the rest.
    async fn step(&mut self) -> Result<Option<beetswap::Event>> {
        let event = self.swarm.next().await.ok_or(Error::SwarmEnded)?;
        Ok(match event {
            SwarmEvent::Behaviour(BehaviourEvent::Bitswap(event)) => Some(event),
            SwarmEvent::NewListenAddr { address, .. } => {
                let full = address.with_p2p(self.peer_id()).unwrap_or_else(|a| a);
                if self.announce {
                    println!("listening {full}");
                }
                self.listening.push(full);
                None
            }
            SwarmEvent::ConnectionEstablished { .. } => {
                self.connections += 1;
                None
            }
            SwarmEvent::ConnectionClosed { .. } => {
                self.connections = self.connections.saturating_sub(1);
                None
            }
            _ => None,
        })
    }

    /// Fetches every block reachable from `root` (links of dag-pb, dag-cbor and raw blocks;
    /// other codecs are kept but not followed) from the connected peers, and returns once
    /// every one is in the store. Blocks already stored are not fetched again (beetswap asks
    /// the store first). Fails after `timeout` with what is still missing.
    ///
    /// From a beetswap peer (another `bitswap-node`), a DAG of more than 1024 blocks stalls
    /// 30 s after every 1024: beetswap 0.5's server keeps at most 1024 wants per peer and
    /// never drops a want it has served, and its client sends no cancel for a block it got
    /// from that peer, so later wants are ignored until the client's full wantlist, sent
    /// every 30 s, replaces the list. The same cap applies to any client of this node's
    /// server that does not cancel wants the node served (not measured here for Kubo; the
    /// Helia test reads 65 blocks).
    pub async fn fetch_dag(&mut self, root: Cid, timeout: Duration) -> Result<Fetched> {
        let deadline = Instant::now() + timeout;
        let mut fetched = Fetched::default();
        let mut seen: HashSet<Cid> = HashSet::from([root]);
        let mut queue: VecDeque<Cid> = VecDeque::from([root]);
        let mut in_flight: HashMap<QueryId, Cid> = HashMap::new();
        let mut got: Vec<Cid> = Vec::new();
        loop {
            while in_flight.len() < FETCH_WINDOW
                && let Some(cid) = queue.pop_front()
            {
                let query = self.swarm.behaviour_mut().bitswap.get(&cid);
                in_flight.insert(query, cid);
            }
            if in_flight.is_empty() {
                break;
            }
            let event = self.step_until(deadline, "fetched", || {
                (in_flight.len() + queue.len(), seen.len())
            });
            let Some(event) = event.await? else {
                continue;
            };
            match event {
                beetswap::Event::GetQueryResponse { query_id, data } => {
                    let Some(cid) = in_flight.remove(&query_id) else {
                        continue;
                    };
                    fetched.blocks += 1;
                    fetched.bytes += data.len() as u64;
                    match ipfrs_tools::car::links(&cid, &data)? {
                        Some(links) => {
                            for link in links {
                                if seen.insert(link) {
                                    queue.push_back(link);
                                }
                            }
                        }
                        None => fetched.unfollowed += 1,
                    }
                    got.push(cid);
                }
                beetswap::Event::GetQueryError { query_id, error } => {
                    if let Some(cid) = in_flight.remove(&query_id) {
                        return Err(Error::Fetch {
                            cid: Box::new(cid),
                            source: error,
                        });
                    }
                }
            }
        }
        self.wait_stored(&got, deadline).await?;
        Ok(fetched)
    }

    /// Fetches the blocks `cids` (no links followed), at most [`FETCH_WINDOW`] in flight, and
    /// returns their bytes once bitswap has handed `stored_target` blocks in all to the store
    /// (see [`CountingStore::stored`]).
    pub async fn fetch_blocks(
        &mut self,
        cids: &[Cid],
        stored_target: u64,
        timeout: Duration,
    ) -> Result<u64> {
        let deadline = Instant::now() + timeout;
        let mut next = cids.iter();
        let mut in_flight: HashMap<QueryId, Cid> = HashMap::new();
        let mut bytes = 0u64;
        let mut answered = 0usize;
        loop {
            while in_flight.len() < FETCH_WINDOW
                && let Some(cid) = next.next()
            {
                in_flight.insert(self.swarm.behaviour_mut().bitswap.get(cid), *cid);
            }
            if in_flight.is_empty() {
                break;
            }
            let event =
                self.step_until(deadline, "fetched", || (cids.len() - answered, cids.len()));
            match event.await? {
                Some(beetswap::Event::GetQueryResponse { query_id, data })
                    if in_flight.remove(&query_id).is_some() =>
                {
                    answered += 1;
                    bytes += data.len() as u64;
                }
                Some(beetswap::Event::GetQueryError { query_id, error }) => {
                    if let Some(cid) = in_flight.remove(&query_id) {
                        return Err(Error::Fetch {
                            cid: Box::new(cid),
                            source: error,
                        });
                    }
                }
                _ => {}
            }
        }
        while self.store.stored() < stored_target {
            let stored = self.store.stored();
            self.step_or_tick(
                deadline,
                "stored",
                (stored_target - stored) as usize,
                cids.len(),
            )
            .await?;
        }
        Ok(bytes)
    }

    /// One swarm event, or a timeout error once `deadline` passes; `left` says how many of
    /// how many blocks are still missing, for the error.
    async fn step_until(
        &mut self,
        deadline: Instant,
        what: &'static str,
        left: impl FnOnce() -> (usize, usize),
    ) -> Result<Option<beetswap::Event>> {
        let left_time = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left_time, self.step()).await {
            Ok(event) => event,
            Err(_) => {
                let (missing, total) = left();
                Err(Error::Timeout {
                    what,
                    missing,
                    total,
                })
            }
        }
    }

    /// Drives the swarm for up to [`STORE_POLL`] (beetswap stores received blocks in tasks
    /// the swarm polls), failing once `deadline` passes.
    async fn step_or_tick(
        &mut self,
        deadline: Instant,
        what: &'static str,
        missing: usize,
        total: usize,
    ) -> Result<()> {
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what,
                missing,
                total,
            });
        }
        // An event or the tick, whichever is first; bitswap events here are late answers to
        // queries already settled, nothing to do with them.
        let _ = tokio::time::timeout(STORE_POLL, self.step()).await;
        Ok(())
    }

    /// Waits until every block of `cids` is in the store: beetswap reports a block before
    /// its store call has run, and drops that call's error, so the store itself is asked.
    async fn wait_stored(&mut self, cids: &[Cid], deadline: Instant) -> Result<()> {
        let mut missing: Vec<Cid> = cids.to_vec();
        loop {
            let mut still = Vec::new();
            for cid in missing {
                if !self.store.has(&cid).await? {
                    still.push(cid);
                }
            }
            missing = still;
            if missing.is_empty() {
                return Ok(());
            }
            self.step_or_tick(deadline, "stored", missing.len(), cids.len())
                .await?;
        }
    }
}
