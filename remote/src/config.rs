//! Where the packs go: endpoint, bucket, prefix, region and credentials.

use std::time::Duration;

/// How to reach a bucket on an S3-compatible store.
#[derive(Clone, PartialEq, Eq)]
pub struct RemoteConfig {
    /// The endpoint's URL (`http://127.0.0.1:3900` for a local Garage); `None` for AWS S3
    /// itself, whose endpoint follows from the region.
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
