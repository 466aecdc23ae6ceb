//! A node's `garage.toml`, its ports and the secrets tests use.
//!
//! Ports are chosen by binding 127.0.0.1:0 and releasing the socket before Garage binds it:
//! another process may take the port in between, which then shows as a start-up error in the
//! log rather than a wrong answer; the window is milliseconds and tests run on one machine.

use std::net::TcpListener;
use std::path::{Path, PathBuf};

use rand::Rng;

use crate::{Error, REGION};

/// The ports and directories of one node, and what its `garage.toml` says.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The node's directory: `garage.toml`, `garage.log`, `meta/` and `data/` live in it.
    pub dir: PathBuf,
    /// Inter-node RPC port (also the one the CLI talks to).
    pub rpc_port: u16,
    /// S3 API port.
    pub s3_port: u16,
    /// Copies of each object and its metadata (1 for a single node).
    pub replication_factor: usize,
    /// The cluster's shared RPC secret, 32 bytes as hex.
    pub rpc_secret: String,
    /// Garage's `block_size`: the unit it stores and reads objects in (its default is
    /// 1 MiB). A ranged read costs a whole block, so a store of packs read by small ranges
    /// wants it smaller. `None`: Garage's default.
    pub block_size: Option<u64>,
}

impl NodeConfig {
    /// A node under `dir` with fresh ports; nodes of one cluster share `rpc_secret`.
    pub fn new(dir: &Path, replication_factor: usize, rpc_secret: &str) -> Result<Self, Error> {
        Ok(Self {
            dir: dir.to_path_buf(),
            rpc_port: free_port()?,
            s3_port: free_port()?,
            replication_factor,
            rpc_secret: rpc_secret.to_string(),
            block_size: None,
        })
    }

    /// Path of the node's `garage.toml`.
    pub fn path(&self) -> PathBuf {
        self.dir.join("garage.toml")
    }

    /// Path of the log its server writes (standard output and error).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("garage.log")
    }

    /// The S3 endpoint URL, path-style (no `root_domain` is configured, so Garage serves no
    /// virtual-hosted-style requests).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// The `garage.toml` text.
    pub fn to_toml(&self) -> String {
        let mut root = toml::Table::new();
        let path = |sub: &str| toml::Value::String(self.dir.join(sub).display().to_string());
        root.insert("metadata_dir".into(), path("meta"));
        root.insert("data_dir".into(), path("data"));
        root.insert("db_engine".into(), "lmdb".into());
        // Tests need no durability across machine crashes; fsync would only slow them.
        root.insert("metadata_fsync".into(), false.into());
        root.insert("data_fsync".into(), false.into());
        root.insert(
            "replication_factor".into(),
            toml::Value::Integer(self.replication_factor as i64),
        );
        let rpc = format!("127.0.0.1:{}", self.rpc_port);
        root.insert("rpc_bind_addr".into(), rpc.clone().into());
        // Without it `garage node id` prints no address, and peers would have to guess one.
        root.insert("rpc_public_addr".into(), rpc.into());
        root.insert("rpc_secret".into(), self.rpc_secret.clone().into());
        if let Some(size) = self.block_size {
            root.insert(
                "block_size".into(),
                toml::Value::Integer(i64::try_from(size).unwrap_or(i64::MAX)),
            );
        }
        let mut s3 = toml::Table::new();
        s3.insert("s3_region".into(), REGION.into());
        s3.insert(
            "api_bind_addr".into(),
            format!("127.0.0.1:{}", self.s3_port).into(),
        );
        root.insert("s3_api".into(), toml::Value::Table(s3));
        // No [admin], [s3_web] or [k2v_api]: the CLI reaches the node over RPC, and ports
        // nobody uses are only more ports to collide on.
        root.to_string()
    }

    /// Writes `garage.toml` into the node's directory, creating the directory.
    pub fn write(&self) -> Result<(), Error> {
        std::fs::create_dir_all(&self.dir).map_err(|source| Error::Io {
            what: "creating the node directory",
            path: self.dir.clone(),
            source,
        })?;
        std::fs::write(self.path(), self.to_toml()).map_err(|source| Error::Io {
            what: "writing garage.toml",
            path: self.path(),
            source,
        })
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> Result<u16, Error> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(Error::NoPort)?;
    Ok(listener.local_addr().map_err(Error::NoPort)?.port())
}

/// `bytes` random bytes as lowercase hex.
pub fn random_hex(bytes: usize) -> String {
    let mut rng = rand::rng();
    (0..bytes)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

/// A random access key id in Garage's own format (`GK` and 12 bytes as hex), so that the
/// CLI's `key import` takes it like a key Garage generated.
pub fn random_access_key() -> String {
    format!("GK{}", random_hex(12))
}

/// A random secret key in Garage's own format (32 bytes as hex).
pub fn random_secret_key() -> String {
    random_hex(32)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn block_size_is_written_only_when_set() {
        let mut config = NodeConfig::new(Path::new("/tmp/node"), 1, &random_hex(32)).unwrap();
        let parsed: toml::Table = config.to_toml().parse().unwrap();
        assert!(!parsed.contains_key("block_size"));
        config.block_size = Some(65536);
        let parsed: toml::Table = config.to_toml().parse().unwrap();
        assert_eq!(parsed["block_size"].as_integer(), Some(65536));
    }

    #[test]
    fn config_binds_loopback_only_and_parses_back() {
        let dir = Path::new("/tmp/some where/\"quoted\"");
        let config = NodeConfig::new(dir, 3, &random_hex(32)).unwrap();
        let parsed: toml::Table = config.to_toml().parse().unwrap();
        assert_eq!(
            parsed["rpc_bind_addr"].as_str().unwrap(),
            format!("127.0.0.1:{}", config.rpc_port)
        );
        assert_eq!(
            parsed["s3_api"]["api_bind_addr"].as_str().unwrap(),
            format!("127.0.0.1:{}", config.s3_port)
        );
        assert_eq!(parsed["s3_api"]["s3_region"].as_str().unwrap(), REGION);
        assert_eq!(parsed["replication_factor"].as_integer().unwrap(), 3);
        assert_eq!(
            parsed["metadata_dir"].as_str().unwrap(),
            dir.join("meta").display().to_string()
        );
        assert_ne!(config.rpc_port, config.s3_port);
    }

    #[test]
    fn keys_have_garages_format() {
        let key = random_access_key();
        assert_eq!(key.len(), 26);
        assert!(key.starts_with("GK"));
        assert!(key[2..].chars().all(|c| c.is_ascii_hexdigit()));
        let secret = random_secret_key();
        assert_eq!(secret.len(), 64);
        assert_ne!(secret, random_secret_key());
    }
}
