//! Several Garage nodes on 127.0.0.1, made into one cluster through the `garage` CLI.
//!
//! Set-up, in the order an operator follows: start every server (no layout yet, so they
//! serve no data), read each node's id (`garage node id`), connect node 0 to the others
//! (`garage node connect`; they learn of each other through node 0), assign every node a
//! role and apply the layout (`garage layout assign`, `garage layout apply`), then import a
//! key, create the bucket and allow the key on it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::config::{self, NodeConfig};
use crate::node::Node;
use crate::single::BUCKET;
use crate::{Error, REGION};

/// The capacity each node declares in the layout; equal capacities give each node an equal
/// share, and with one replica per node every node holds everything anyway.
const NODE_CAPACITY: &str = "1G";

/// The zone every node is assigned to: one zone is enough on one machine.
const ZONE: &str = "dc1";

/// How long a node may take to see its running peers up. Connections settle in a second or
/// two on loopback (two nodes that dial each other at once drop one of the two connections,
/// and requests in between fail with "Not connected"); the rest is room for a loaded machine.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Pause between two `garage status` polls.
const CONNECT_POLL: Duration = Duration::from_millis(200);

/// A running cluster of Garage nodes with replication factor equal to the node count, one
/// bucket and one key allowed on it. Any node's S3 endpoint serves the whole bucket.
/// Dropping it kills every server and reaps it.
#[derive(Debug)]
pub struct GarageCluster {
    nodes: Vec<Node>,
    /// Each node's `<hex id>@127.0.0.1:<rpc port>`, for reconnecting a restarted node.
    ids: Vec<String>,
    access_key: String,
    secret_key: String,
}

impl GarageCluster {
    /// Starts `nodes` nodes under `dir/node<i>` with the binary [`crate::garage_binary`]
    /// finds; see [`GarageCluster::start_with`].
    pub fn start(dir: &Path, nodes: usize) -> Result<Self, Error> {
        let binary = crate::garage_binary()?.ok_or(Error::BinaryMissing)?;
        Self::start_with(&binary, dir, nodes)
    }

    /// Starts `nodes` (at least 1) servers of `binary` under `dir/node<i>`, each keeping a
    /// copy of everything (replication factor = `nodes`), and makes them one cluster with
    /// the bucket [`BUCKET`]. Returns once the layout is applied and the bucket exists.
    ///
    /// Errors: as [`crate::Garage::start_with`] for each server, and [`Error::Command`] or
    /// [`Error::Unexpected`] for a CLI step that fails.
    pub fn start_with(binary: &Path, dir: &Path, nodes: usize) -> Result<Self, Error> {
        let nodes = nodes.max(1);
        let rpc_secret = config::random_hex(32);
        let mut cluster = Self {
            nodes: Vec::with_capacity(nodes),
            ids: Vec::with_capacity(nodes),
            access_key: config::random_access_key(),
            secret_key: config::random_secret_key(),
        };
        for i in 0..nodes {
            let config = NodeConfig::new(&dir.join(format!("node{i}")), nodes, &rpc_secret)?;
            let mut node = Node::new(binary, config)?;
            node.start(&[], &[])?;
            cluster.nodes.push(node);
        }
        for node in &cluster.nodes {
            cluster.ids.push(node_id(node)?);
        }
        let first = &cluster.nodes[0];
        for id in &cluster.ids[1..] {
            first.cli(&["node", "connect", id])?;
        }
        let mut assign = vec!["layout", "assign", "-z", ZONE, "-c", NODE_CAPACITY];
        // The CLI takes a prefix of the hexadecimal id: the part before the '@'.
        assign.extend(
            cluster
                .ids
                .iter()
                .map(|id| id.split('@').next().unwrap_or(id)),
        );
        first.cli(&assign)?;
        first.cli(&["layout", "apply", "--version", "1"])?;
        first.cli(&[
            "key",
            "import",
            "--yes",
            "-n",
            "ipfrs-test",
            &cluster.access_key,
            &cluster.secret_key,
        ])?;
        first.cli(&["bucket", "create", BUCKET])?;
        first.cli(&[
            "bucket",
            "allow",
            "--read",
            "--write",
            "--owner",
            BUCKET,
            "--key",
            &cluster.access_key,
        ])?;
        for index in 0..cluster.nodes.len() {
            cluster.wait_connected(index)?;
        }
        Ok(cluster)
    }

    /// The number of nodes, running or stopped.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the cluster has no nodes (never, since it starts at least one).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The S3 endpoint of node `index`, `http://127.0.0.1:<port>`; path-style only.
    pub fn endpoint(&self, index: usize) -> Result<String, Error> {
        Ok(self.node(index)?.config.endpoint())
    }

    /// The region to sign requests with.
    pub fn region(&self) -> &str {
        REGION
    }

    /// The access key id.
    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    /// The secret key.
    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        BUCKET
    }

    /// The directory of node `index` (configuration, log, metadata, data).
    pub fn node_dir(&self, index: usize) -> Result<PathBuf, Error> {
        Ok(self.node(index)?.config.dir.clone())
    }

    /// Whether node `index` is running.
    pub fn is_running(&self, index: usize) -> Result<bool, Error> {
        Ok(self.node(index)?.is_running())
    }

    /// Kills node `index` (SIGKILL, as a crash) and reaps it; its files stay. Stopping a
    /// stopped node does nothing.
    pub fn stop_node(&mut self, index: usize) -> Result<(), Error> {
        self.node_mut(index)?.stop();
        Ok(())
    }

    /// Restarts node `index` on its files and ports, and waits until its S3 endpoint
    /// answers and every running node sees every other up again; it rejoins the cluster
    /// from the peers and layout it kept on disk. Starting a running node does nothing.
    pub fn start_node(&mut self, index: usize) -> Result<(), Error> {
        let node = self.node_mut(index)?;
        if node.is_running() {
            return Ok(());
        }
        node.start(&[], &[])?;
        // The others would redial it only after their reconnection back-off (about 30 s
        // here): tell them at once, as an operator would.
        for (other, node) in self.nodes.iter().enumerate() {
            if other != index && node.is_running() {
                node.cli(&["node", "connect", &self.ids[index]])?;
            }
        }
        for other in 0..self.nodes.len() {
            if self.nodes[other].is_running() {
                self.wait_connected(other)?;
            }
        }
        Ok(())
    }

    /// Polls node `index`'s `garage status` until it lists every running node (itself
    /// included) among its healthy nodes.
    fn wait_connected(&self, index: usize) -> Result<(), Error> {
        let expected = self.nodes.iter().filter(|n| n.is_running()).count();
        let node = self.node(index)?;
        let start = Instant::now();
        loop {
            let status = node.cli(&["status"])?;
            let healthy = healthy_nodes(&status);
            if healthy >= expected {
                return Ok(());
            }
            if start.elapsed() > CONNECT_TIMEOUT {
                return Err(Error::NotConnected {
                    index,
                    healthy,
                    expected,
                    waited: start.elapsed(),
                    status,
                });
            }
            std::thread::sleep(CONNECT_POLL);
        }
    }

    fn node(&self, index: usize) -> Result<&Node, Error> {
        let len = self.nodes.len();
        self.nodes
            .get(index)
            .ok_or(Error::NoSuchNode { index, len })
    }

    fn node_mut(&mut self, index: usize) -> Result<&mut Node, Error> {
        let len = self.nodes.len();
        self.nodes
            .get_mut(index)
            .ok_or(Error::NoSuchNode { index, len })
    }
}

/// `<hex id>@127.0.0.1:<rpc port>`, as `garage node id -q` prints it.
fn node_id(node: &Node) -> Result<String, Error> {
    let args = ["node", "id", "-q"];
    let output = node.cli(&args)?;
    let id = output.trim();
    match id.split_once('@') {
        Some((hex, _)) if !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit()) => {
            Ok(id.to_string())
        }
        _ => Err(Error::Unexpected {
            args: args.join(" "),
            output: output.clone(),
        }),
    }
}

/// The rows of the "HEALTHY NODES" table in `garage status` output: lines that start with a
/// 16-digit hexadecimal node id, up to the next "====" heading.
fn healthy_nodes(status: &str) -> usize {
    status
        .lines()
        .skip_while(|line| !line.contains("HEALTHY NODES"))
        .skip(1)
        .take_while(|line| !line.starts_with("===="))
        .filter(|line| {
            let id = line.split_whitespace().next().unwrap_or("");
            id.len() == 16 && id.chars().all(|c| c.is_ascii_hexdigit())
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_rows_are_counted_and_failed_ones_are_not() {
        let status = "==== HEALTHY NODES ====\n\
            ID                Hostname  Address          Tags  Zone  Capacity\n\
            0299bcd7eed53015  host      127.0.0.1:40001  []    dc1   1000.0 MB\n\
            8a1cd703c10d8400  host      127.0.0.1:40003  []    dc1   1000.0 MB\n\
            \n\
            ==== FAILED NODES ====\n\
            ID                Hostname  Address          Tags  Zone  Capacity  Last seen\n\
            ffeeddccbbaa9988  host      127.0.0.1:40005  []    dc1   1000.0 MB  3 seconds ago\n";
        assert_eq!(healthy_nodes(status), 2);
        assert_eq!(healthy_nodes("no table at all"), 0);
    }
}
