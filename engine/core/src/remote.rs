//! Where a store's packs go when they leave the machine: an S3-compatible bucket (issue 16).
//!
//! These types live here, not in `ipfrs-remote`, because [`crate::Config`] names them and the
//! crates that only configure an engine should not pull in an HTTP client.

use std::time::Duration;

/// How to reach a bucket on an S3-compatible store.
#[derive(Clone, PartialEq, Eq)]
pub struct RemoteConfig {
    /// The endpoint's URL (`http://127.0.0.1:3900` for a local Garage); `None` for AWS S3
    /// itself, whose endpoint follows from the region. `file:///some/dir` uses a directory as
    /// the store (a shared mount; the bucket is a directory under it that must exist).
    pub endpoint: Option<String>,
    /// The bucket.
    pub bucket: String,
    /// The key prefix every object of this store lives under (several stores can share a
    /// bucket); may be empty.
    pub prefix: String,
    /// The region (`garage` for Garage's default).
    pub region: String,
    /// The access key id; `None` asks the environment's usual providers (instance metadata).
    pub access_key_id: Option<String>,
    /// The secret access key.
    pub secret_access_key: Option<String>,
    /// How long opening may take before a silent endpoint is reported as unreachable.
    pub open_timeout: Duration,
    /// How long one request may take (a 64 MiB pack part included) before it fails.
    pub request_timeout: Duration,
    /// Whether requests reuse kept-alive connections. `false` opens one per request: against
    /// a server that leaves Nagle on for its answers (Garage 2.5), a kept-alive connection
    /// stalls each small answer for the client's delayed ACK, 40 ms on Linux (measured on
    /// loopback: 4 KiB GETs 176/s kept alive, 1,663/s fresh, 8 in flight).
    pub reuse_connections: bool,
}

impl std::fmt::Debug for RemoteConfig {
    // The secret never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteConfig")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<hidden>"),
            )
            .field("open_timeout", &self.open_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("reuse_connections", &self.reuse_connections)
            .finish()
    }
}

impl RemoteConfig {
    /// A bucket at `endpoint` with no prefix, region `garage`, no credentials, the default
    /// timeouts (10 s to open, 60 s a request) and kept-alive connections.
    pub fn new(endpoint: Option<&str>, bucket: &str) -> RemoteConfig {
        RemoteConfig {
            endpoint: endpoint.map(str::to_owned),
            bucket: bucket.to_owned(),
            prefix: String::new(),
            region: "garage".to_owned(),
            access_key_id: None,
            secret_access_key: None,
            open_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            reuse_connections: true,
        }
    }

    /// [`RemoteConfig::new`] with what the usual AWS environment variables say:
    /// `AWS_ENDPOINT_URL`, `AWS_REGION` (or `AWS_DEFAULT_REGION`), `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub fn from_env(bucket: &str) -> RemoteConfig {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let mut config = RemoteConfig::new(var("AWS_ENDPOINT_URL").as_deref(), bucket);
        if let Some(region) = var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")) {
            config.region = region;
        }
        config.access_key_id = var("AWS_ACCESS_KEY_ID");
        config.secret_access_key = var("AWS_SECRET_ACCESS_KEY");
        config
    }

    /// The endpoint as reports name it.
    pub fn endpoint_name(&self) -> String {
        self.endpoint
            .clone()
            .unwrap_or_else(|| format!("s3.{}.amazonaws.com", self.region))
    }
}

/// The pack tier on an S3-compatible store: sealed packs are uploaded (create-only) with
/// their hint files and listed in a per-shard manifest; local copies are kept up to
/// `local_pack_bytes` per store and read by ranged GETs beyond it. The index, the bloom
/// filters and small blocks stay local, so `has` of an absent block never leaves the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteTier {
    /// The bucket.
    pub bucket: RemoteConfig,
    /// Disk bytes of uploaded packs kept locally, across all shards (split evenly); the
    /// oldest uploaded packs are removed locally past it. Packs not yet uploaded are always
    /// kept. `u64::MAX`: keep every pack locally too (the bucket is then a replica's source
    /// and a disaster copy).
    pub local_pack_bytes: u64,
    /// How long a pack that left the manifest stays in the bucket before it is deleted: a
    /// replica that read the previous manifest can still read it meanwhile.
    pub delete_grace: Duration,
    /// Bytes fetched past the end of a sequential read of a pack in the bucket, in the same
    /// request: a read is sequential when it asks for two or more records within this many
    /// bytes of each other, or starts at most this far past where the shard's last read of
    /// that pack ended (a file's blocks were written together and are read back in order).
    /// 0: never read ahead.
    pub readahead_bytes: u64,
    /// Memory for the byte ranges of bucket packs fetched by read-ahead, across all shards
    /// (split evenly), oldest dropped first. Packs are immutable, so a cached range never
    /// goes stale; the index still decides what is live.
    pub range_cache_bytes: u64,
}

impl RemoteTier {
    /// [`RemoteTier::readahead_bytes`] unless set.
    pub const DEFAULT_READAHEAD_BYTES: u64 = 1 << 20;
    /// [`RemoteTier::range_cache_bytes`] unless set.
    pub const DEFAULT_RANGE_CACHE_BYTES: u64 = 32 << 20;

    /// Packs on `bucket`, 1 GiB of them kept locally, deleted 10 minutes after they leave the
    /// manifest; 1 MiB of read-ahead (Garage's and most stores' unit of storage: the server
    /// reads that much for any range inside it) into 32 MiB of cached ranges.
    pub fn new(bucket: RemoteConfig) -> RemoteTier {
        RemoteTier {
            bucket,
            local_pack_bytes: 1 << 30,
            delete_grace: Duration::from_secs(600),
            readahead_bytes: RemoteTier::DEFAULT_READAHEAD_BYTES,
            range_cache_bytes: RemoteTier::DEFAULT_RANGE_CACHE_BYTES,
        }
    }
}
