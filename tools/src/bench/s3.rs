//! The S3 side of a run (issue 16): where the bucket comes from (`--s3 garage` starts a local
//! Garage for the run, `--s3 env` takes the AWS environment and `--s3-bucket`), and the raw
//! baseline `s3/object-per-block`, the layout Kubo's go-ds-s3 uses: one object per block, its
//! key the block's multihash in hex. put is one PUT, get one GET, has one HEAD, and a batch
//! sends its requests all at once. The engine's S3 target (`engine+s3/B`) is the engine with
//! `Config.remote` pointing at the same bucket.
//!
//! Every target of a session gets its own prefix under the run's, so rounds and targets never
//! read each other's objects. Requests are counted in the client's HTTP layer
//! ([`ipfrs_remote::counting`]) for both targets the same way.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use ipfrs_garage::Garage;
use ipfrs_remote::{PackBucket, RemoteConfig, RemoteTier, RequestCounter, s3_store};
use ipfrs_storage::key::key_of;
use ipfrs_storage::{Block, Cid};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::cli::S3Arg;
use super::driver::{OpFuture, OpTarget};
use super::error::{BenchError, Result};
use super::target::{check_absent, check_absent_many, check_get, check_get_many};
use super::workload::{Dataset, FreshBlocks, Op};

/// How long a pack that left a manifest stays in the bucket: a run's stores are thrown away
/// with their prefix and no replica reads them, so none needs the default ten minutes.
const BENCH_DELETE_GRACE: Duration = Duration::from_secs(1);

/// The bucket of a run, and the Garage serving it when the run started one.
pub struct S3Service {
    config: RemoteConfig,
    /// Killed and reaped when the service is dropped, at the end of the run (before the
    /// run's directory, which holds its data, is removed).
    _garage: Option<Garage>,
    /// What the report says about where the bucket is.
    description: String,
    /// Every session's prefix starts with this, unique per run.
    run_prefix: String,
}

impl S3Service {
    /// Starts Garage in `dir` (for `--s3 garage`) or takes the environment's endpoint and
    /// credentials (`--s3 env`, `bucket` required), and checks that the bucket answers.
    /// Every client of the run keeps its connections alive or not as `reuse_connections`
    /// says.
    pub fn start(
        source: S3Arg,
        bucket: Option<&str>,
        reuse_connections: bool,
        garage_block_size: Option<u64>,
        dir: &Path,
    ) -> Result<S3Service> {
        let (mut config, garage, description) = match source {
            S3Arg::Garage => {
                let binary = ipfrs_garage::garage_binary()?.ok_or_else(|| {
                    BenchError::Usage(format!(
                        "--s3 garage: no garage binary (set {} or put garage on PATH; \
                         scripts/ensure-garage installs it)",
                        ipfrs_garage::GARAGE_ENV
                    ))
                })?;
                let garage =
                    Garage::start_with_block_size(&binary, &dir.join("garage"), garage_block_size)?;
                let mut config = RemoteConfig::new(Some(&garage.endpoint()), garage.bucket());
                config.region = garage.region().to_owned();
                config.access_key_id = Some(garage.access_key().to_owned());
                config.secret_access_key = Some(garage.secret_key().to_owned());
                let description = format!(
                    "Garage on {} (bucket {}, binary {}, block_size {}), started for this run",
                    garage.endpoint(),
                    garage.bucket(),
                    binary.display(),
                    garage_block_size.map_or("default".to_string(), |b| b.to_string())
                );
                (config, Some(garage), description)
            }
            S3Arg::Env => {
                let bucket = bucket.ok_or_else(|| {
                    BenchError::Usage("--s3 env needs the bucket: --s3-bucket NAME".into())
                })?;
                let config = RemoteConfig::from_env(bucket);
                let description = format!(
                    "{} bucket {} (region {}, from the AWS_* environment)",
                    config.endpoint_name(),
                    config.bucket,
                    config.region
                );
                (config, None, description)
            }
        };
        config.reuse_connections = reuse_connections;
        let description = format!(
            "{description}; connections {}",
            if reuse_connections {
                "kept alive"
            } else {
                "one per request"
            }
        );
        // A wrong endpoint, credentials or bucket is reported now, not after the first
        // targets ran.
        drop(PackBucket::open(&config)?);
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Ok(S3Service {
            config,
            _garage: garage,
            description,
            run_prefix: format!("ipfrs-bench-{stamp}-{}", std::process::id()),
        })
    }

    /// Where the bucket is, for the report's header.
    pub fn describe(&self) -> &str {
        &self.description
    }

    /// The bucket with a prefix of its own for the session in `dir` (the round's and
    /// target's directory names: unique within the run).
    pub fn config_for(&self, dir: &Path) -> RemoteConfig {
        let session: Vec<String> = dir
            .components()
            .rev()
            .take(2)
            .map(|c| sanitize(&c.as_os_str().to_string_lossy()))
            .collect();
        let mut config = self.config.clone();
        config.prefix = format!(
            "{}/{}",
            self.run_prefix,
            session.into_iter().rev().collect::<Vec<_>>().join("/")
        );
        config
    }

    /// The engine's pack tier on the session's prefix, keeping `local_pack_bytes` of
    /// uploaded packs on the local disk, with `readahead` bytes of read-ahead if given.
    pub fn tier_for(
        &self,
        dir: &Path,
        local_pack_bytes: u64,
        readahead: Option<u64>,
    ) -> RemoteTier {
        let mut tier = RemoteTier::new(self.config_for(dir));
        tier.local_pack_bytes = local_pack_bytes;
        if let Some(bytes) = readahead {
            tier.readahead_bytes = bytes;
        }
        tier.delete_grace = BENCH_DELETE_GRACE;
        tier
    }
}

/// A path component as an S3 key segment: letters, digits and `-`, nothing a signature or
/// a URL would have to escape (`+` in `engine+s3` is one).
fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// One object per block on the bucket, the raw baseline of the S3 targets.
pub struct ObjectPerBlock<'d> {
    store: Arc<dyn ObjectStore>,
    /// One worker thread, as a `PackBucket`'s: the requests wait on the network, not the CPU.
    runtime: tokio::runtime::Runtime,
    prefix: String,
    data: &'d Dataset,
    fresh: FreshBlocks,
}

impl<'d> ObjectPerBlock<'d> {
    /// The target over `config`'s bucket and prefix, its client made as a `PackBucket`'s
    /// (connections reused or not as `config.reuse_connections` says), requests counted.
    pub fn open(config: &RemoteConfig, data: &'d Dataset) -> Result<ObjectPerBlock<'d>> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("s3-object-per-block")
            .enable_all()
            .build()
            .map_err(|e| BenchError::Internal(format!("cannot start the S3 runtime: {e}")))?;
        Ok(ObjectPerBlock {
            store: s3_store(config, Arc::new(RequestCounter::default()))?,
            runtime,
            prefix: config.prefix.clone(),
            data,
            fresh: FreshBlocks::default(),
        })
    }

    /// A block's object: its multihash in hex under the prefix.
    fn path(&self, cid: &Cid) -> ObjectPath {
        let mut key = String::with_capacity(self.prefix.len() + 80);
        key.push_str(&self.prefix);
        key.push('/');
        for byte in key_of(cid) {
            key.push_str(&format!("{byte:02x}"));
        }
        ObjectPath::from(key)
    }

    /// Runs every request on the runtime at once and waits for all of them, in order.
    async fn all<T, F>(&self, requests: impl IntoIterator<Item = F>) -> Result<Vec<T>>
    where
        T: Send + 'static,
        F: Future<Output = object_store::Result<T>> + Send + 'static,
    {
        let handles: Vec<_> = requests
            .into_iter()
            .map(|r| self.runtime.spawn(r))
            .collect();
        let mut out = Vec::with_capacity(handles.len());
        for handle in handles {
            let answer = handle
                .await
                .map_err(|e| BenchError::Internal(format!("an S3 request's task failed: {e}")))?;
            out.push(answer?);
        }
        Ok(out)
    }

    /// PUTs each block as its own object.
    async fn put(&self, blocks: Vec<Block>) -> Result<u64> {
        let mut bytes = 0;
        let requests: Vec<_> = blocks
            .into_iter()
            .map(|block| {
                let (cid, data) = block.into_parts();
                bytes += data.len() as u64;
                let store = Arc::clone(&self.store);
                let path = self.path(&cid);
                async move { store.put(&path, PutPayload::from(data)).await }
            })
            .collect();
        self.all(requests).await?;
        Ok(bytes)
    }

    /// GETs each block; the lengths, in order (`None`: not there).
    async fn get(&self, cids: &[Cid]) -> Result<Vec<Option<usize>>> {
        let requests: Vec<_> = cids
            .iter()
            .map(|cid| {
                let store = Arc::clone(&self.store);
                let path = self.path(cid);
                async move {
                    match store.get(&path).await {
                        Ok(found) => Ok(Some(found.bytes().await?.len())),
                        Err(object_store::Error::NotFound { .. }) => Ok(None),
                        Err(e) => Err(e),
                    }
                }
            })
            .collect();
        self.all(requests).await
    }

    /// HEADs each block; whether each is there, in order.
    async fn has(&self, cids: &[Cid]) -> Result<Vec<bool>> {
        let requests: Vec<_> = cids
            .iter()
            .map(|cid| {
                let store = Arc::clone(&self.store);
                let path = self.path(cid);
                async move {
                    match store.head(&path).await {
                        Ok(_) => Ok(true),
                        Err(object_store::Error::NotFound { .. }) => Ok(false),
                        Err(e) => Err(e),
                    }
                }
            })
            .collect();
        self.all(requests).await
    }
}

impl OpTarget for ObjectPerBlock<'_> {
    fn call(&self, op: Op) -> OpFuture<'_> {
        let data = self.data;
        Box::pin(async move {
            match op {
                Op::Ingest { first, len } => {
                    // Hashed on the client thread, as the engine's callers do.
                    let range = first as usize..(first + len) as usize;
                    let blocks = range.map(|i| data.block(i)).collect::<Result<Vec<_>>>()?;
                    self.put(blocks).await
                }
                Op::Put(i) => self.put(vec![data.block(i as usize)?]).await,
                Op::PutNew => {
                    let block = data.fresh_block(self.fresh.take())?;
                    self.put(vec![block]).await
                }
                Op::Get(i) => {
                    let got = self.get(std::slice::from_ref(data.cid(i as usize))).await?;
                    check_get(data, i, got.first().copied().flatten())
                }
                Op::GetMany { first, len } => {
                    let (first, len) = (first as usize, len as usize);
                    let got = self.get(data.sample_cids(first, len)).await?;
                    check_get_many(data, data.sample_blocks(first, len), got.into_iter())
                }
                Op::HasAbsent(i) => {
                    let found = self
                        .has(std::slice::from_ref(data.absent(i as usize)))
                        .await?;
                    check_absent(data, i, found.first().copied().unwrap_or(true))
                }
                Op::HasManyAbsent { first, len } => {
                    let found = self
                        .has(data.absent_run(first as usize, len as usize))
                        .await?;
                    check_absent_many(data, first, len, found.into_iter())
                }
                Op::Delete { first, len } => {
                    let range = first as usize..(first + len) as usize;
                    let requests: Vec<_> = range
                        .map(|i| {
                            let store = Arc::clone(&self.store);
                            let path = self.path(data.cid(i));
                            async move { store.delete(&path).await }
                        })
                        .collect();
                    self.all(requests).await?;
                    Ok(0)
                }
            }
        })
    }

    fn blocking(&self) -> bool {
        false
    }

    /// Lists the prefix (S3 answers 1,000 keys a page; `page` is how the report counts).
    fn scan(&self, page: usize, on_page: &mut dyn FnMut(Duration, usize)) -> Result<u64> {
        let store = Arc::clone(&self.store);
        let prefix = ObjectPath::from(self.prefix.as_str());
        self.runtime.block_on(async move {
            let mut listing = store.list(Some(&prefix));
            let (mut total, mut count, mut start) = (0, 0, Instant::now());
            while let Some(meta) = listing.next().await {
                meta?;
                count += 1;
                if count == page {
                    on_page(start.elapsed(), count);
                    total += count as u64;
                    (count, start) = (0, Instant::now());
                }
            }
            on_page(start.elapsed(), count);
            Ok(total + count as u64)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_prefixes_are_plain_and_unique_per_round_and_target() {
        assert_eq!(sanitize("r0-engine+s3-sled"), "r0-engine-s3-sled");
        assert_eq!(sanitize("store"), "store");
        assert_eq!(sanitize("a b/c"), "a-b-c");
    }
}
