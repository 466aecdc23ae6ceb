//! A bucket holding shards' packs: uploads, manifests and ranged reads, run on a runtime
//! thread of its own.
//!
//! ```text
//! <prefix>/shard-NNN/packs/PPPPPPPP.pack        a sealed pack, byte for byte (create-only)
//! <prefix>/shard-NNN/packs/PPPPPPPP.hint        its hint file (create-only, written after it)
//! <prefix>/shard-NNN/manifests/GGGGGGGGGGGGGGGG the live packs at generation G (create-only)
//! ```
//! Every call returns a [`Pending`] at once: a shard's executor awaits it without blocking
//! its core (the request runs on the bucket's own tokio thread), a plain thread waits on it.
//! Nothing is ever overwritten: an upload that finds its object already there compares the
//! bytes (an earlier attempt that finished before a crash is taken as done; different bytes
//! are refused), and a manifest generation that exists is refused. Every put looks first
//! (HEAD), then puts create-only: Garage 2.5 ignores `If-None-Match` on PutObject, so there
//! only the look stands between two writers of one shard, and it cannot stop two that race.

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_lite::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{
    ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutMultipartOptions, PutOptions,
    PutPayload, RetryConfig, WriteMultipart,
};

use crate::config::RemoteConfig;
use crate::counting::{CountingConnector, RequestCounter, RequestCounts};
use crate::error::{RemoteError, Result};
use crate::manifest::{Manifest, PackEntry};

/// Packs up to this size go up in one create-only PUT; larger ones as a multipart upload,
/// which S3 makes visible only once complete.
const SINGLE_PUT_MAX: usize = 16 << 20;
/// The part size of a multipart upload (S3 wants at least 5 MiB for all but the last).
const PART_BYTES: usize = 8 << 20;

/// The answer to a bucket call, to be awaited (from any executor) or waited for.
#[must_use = "a bucket call is only known to have happened once its Pending is awaited"]
pub struct Pending<T> {
    rx: flume::Receiver<Result<T>>,
}

impl<T> Pending<T> {
    /// Blocks the calling thread until the answer comes.
    pub fn wait(self) -> Result<T> {
        self.rx.recv().unwrap_or(Err(RemoteError::Stopped))
    }

    /// Waits for the answer without blocking the executor.
    pub async fn result(self) -> Result<T> {
        self.rx
            .recv_async()
            .await
            .unwrap_or(Err(RemoteError::Stopped))
    }
}

/// A bucket (and prefix) holding the packs of a store's shards.
pub struct PackBucket {
    store: Arc<dyn ObjectStore>,
    root: String,
    /// `None` only while dropping.
    runtime: Option<tokio::runtime::Runtime>,
    request_timeout: Duration,
    /// What the client has sent (see [`crate::counting`]).
    requests: Arc<RequestCounter>,
}

impl std::fmt::Debug for PackBucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackBucket({} under {:?})", self.store, self.root)
    }
}

impl PackBucket {
    /// Opens `config`'s bucket and checks that it answers: a wrong endpoint, wrong credentials
    /// or a missing bucket are reported here, within `config.open_timeout`, not at the first
    /// upload.
    pub fn open(config: &RemoteConfig) -> Result<PackBucket> {
        if config.bucket.is_empty() {
            return Err(RemoteError::Config("no bucket given".into()));
        }
        // A directory as the store (a shared mount, or tests without a server): the bucket
        // is a directory under it, and must exist as a bucket must.
        if let Some(dir) = config
            .endpoint
            .as_deref()
            .and_then(|e| e.strip_prefix("file://"))
        {
            let root = std::path::Path::new(dir).join(&config.bucket);
            if !root.is_dir() {
                return Err(RemoteError::NoBucket {
                    bucket: config.bucket.clone(),
                });
            }
            let store = object_store::local::LocalFileSystem::new_with_prefix(&root)
                .map_err(|e| RemoteError::Config(e.to_string()))?;
            return PackBucket::with_store(Arc::new(store), &config.prefix);
        }
        let requests = Arc::new(RequestCounter::default());
        let store = s3_store(config, Arc::clone(&requests))?;
        let mut bucket = PackBucket::with_store(store, &config.prefix)?;
        bucket.requests = requests;
        bucket.request_timeout = config.request_timeout;
        let root = bucket.root_path();
        let store = Arc::clone(&bucket.store);
        let probe = bucket.spawn_with(config.open_timeout, "open", async move {
            store
                .list_with_delimiter(Some(&root))
                .await
                .map(drop)
                .map_err(RemoteError::Store)
        });
        match probe.wait() {
            Ok(()) => Ok(bucket),
            Err(e) => Err(classify_open_error(config, e)),
        }
    }

    /// A bucket over any object store (local files or memory for tests and single machines),
    /// its objects under `prefix`.
    pub fn with_store(store: Arc<dyn ObjectStore>, prefix: &str) -> Result<PackBucket> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("ipfrs-remote")
            .enable_all()
            .build()
            .map_err(|e| RemoteError::Config(format!("cannot start the runtime: {e}")))?;
        Ok(PackBucket {
            store,
            root: prefix.trim_matches('/').to_owned(),
            runtime: Some(runtime),
            request_timeout: Duration::from_secs(60),
            requests: Arc::new(RequestCounter::default()),
        })
    }

    /// The HTTP requests this bucket's client has sent so far, by method, retries included
    /// (all zero for a store that is not S3, such as local files or memory).
    pub fn requests(&self) -> RequestCounts {
        self.requests.snapshot()
    }

    /// Uploads pack `pack` of `shard` and then its hint, each create-only, and returns the
    /// pack's manifest entry. Run again after a crash, it finds what the first attempt
    /// finished and checks it is the same bytes.
    pub fn upload_pack(
        &self,
        shard: u32,
        pack: u32,
        bytes: Bytes,
        hint: Bytes,
    ) -> Pending<PackEntry> {
        let store = Arc::clone(&self.store);
        let pack_path = self.pack_path(shard, pack);
        let hint_path = self.hint_path(shard, pack);
        // A whole pack may take longer than one request: each request has its own timeout.
        self.spawn_with(Duration::MAX, "upload", async move {
            let entry = PackEntry {
                pack,
                pack_len: bytes.len() as u64,
                pack_xxh3: twox_hash::XxHash3_64::oneshot(&bytes),
                hint_len: u32::try_from(hint.len())
                    .map_err(|_| RemoteError::Config("hint file over 4 GiB".into()))?,
            };
            put_once(store.as_ref(), &pack_path, bytes).await?;
            // The hint goes last: a replica that finds a hint finds its whole pack.
            put_once(store.as_ref(), &hint_path, hint).await?;
            Ok(entry)
        })
    }

    /// Writes `manifest` as its shard's generation `manifest.generation`, create-only.
    pub fn publish(&self, manifest: &Manifest) -> Pending<()> {
        let store = Arc::clone(&self.store);
        let path = self.manifest_path(manifest.shard, manifest.generation);
        let bytes = Bytes::from(manifest.encode());
        self.spawn("publish", async move {
            put_new(store.as_ref(), &path, bytes)
                .await
                .map_err(|e| RemoteError::on(&path, e))
        })
    }

    /// The highest generation of `shard`'s manifest, or `None` if it has none. A damaged
    /// newest manifest is an error, never passed over for an older one: that older one may
    /// list packs already deleted.
    ///
    /// The writer replaces its newest generation and deletes the one before it (after its
    /// grace period): a generation listed and gone before it could be read was replaced, so
    /// the listing is read again rather than failing the caller (as long as each listing
    /// finds a newer generation; a few times when none is newer), and a listing that finds
    /// nothing is believed only when it is repeated.
    pub fn latest_manifest(&self, shard: u32) -> Pending<Option<Manifest>> {
        let store = Arc::clone(&self.store);
        let dir = self.shard_path(shard, "manifests");
        self.spawn("latest manifest", async move {
            // Misses whose next listing found no newer generation (the object vanished
            // unreplaced: counted against a few), and misses in all (a writer replacing
            // faster than this reader reads: bounded far higher, as each was progress).
            let (mut stalled, mut missed, mut empty) = (0, 0, 0);
            let mut gone: Option<u64> = None;
            let (generation, path, bytes) = loop {
                let Some((generation, path)) = newest_generation(store.as_ref(), &dir).await?
                else {
                    // A listing that is not a snapshot (a file system's) can pass over the
                    // generation the writer deletes and miss the one it has just put in
                    // place: nothing listed is believed only when listed again (a new
                    // shard has no manifest; a shard that had one always keeps its newest).
                    empty += 1;
                    if gone.is_some() && missed < REPLACED_RETRIES {
                        missed += 1;
                        continue;
                    }
                    if empty < EMPTY_LISTINGS {
                        continue;
                    }
                    return Ok(None);
                };
                if gone.is_some_and(|g| generation <= g) {
                    stalled += 1;
                }
                match get_all(store.as_ref(), &path).await {
                    Ok(bytes) => break (generation, path, bytes),
                    Err(RemoteError::NotFound { .. })
                        if stalled < UNREPLACED_RETRIES && missed < REPLACED_RETRIES =>
                    {
                        missed += 1;
                        gone = Some(generation);
                    }
                    Err(e) => return Err(e),
                }
            };
            let manifest = Manifest::decode(path.as_ref(), &bytes)?;
            if manifest.shard != shard || manifest.generation != generation {
                return Err(RemoteError::Damaged {
                    path: path.to_string(),
                    reason: format!(
                        "names shard {} generation {}, stored as shard {shard} generation {generation}",
                        manifest.shard, manifest.generation
                    ),
                });
            }
            Ok(Some(manifest))
        })
    }

    /// The shards that have objects under the prefix (a `shard-NNN/` folder), ascending: what
    /// a replica, which has no local files to count them from, reads. One listing request
    /// (with a delimiter, so it costs a page per thousand shards, not one per object).
    pub fn shards(&self) -> Pending<Vec<u32>> {
        let store = Arc::clone(&self.store);
        let root = self.root_path();
        self.spawn("shard listing", async move {
            let listing = store.list_with_delimiter(Some(&root)).await?;
            let mut shards: Vec<u32> = listing
                .common_prefixes
                .iter()
                // Folders not named shard-NNN are not a store's: skipped, not an error.
                .filter_map(|dir| dir.filename()?.strip_prefix("shard-")?.parse().ok())
                .collect();
            shards.sort_unstable();
            Ok(shards)
        })
    }

    /// The byte ranges `ranges` of a pack, in the order asked (close ranges are fetched in one
    /// request).
    pub fn read_ranges(
        &self,
        shard: u32,
        pack: u32,
        ranges: Vec<Range<u64>>,
    ) -> Pending<Vec<Bytes>> {
        let store = Arc::clone(&self.store);
        let path = self.pack_path(shard, pack);
        self.spawn("ranged read", async move {
            store
                .get_ranges(&path, &ranges)
                .await
                .map_err(|e| RemoteError::on(&path, e))
        })
    }

    /// A pack's hint file.
    pub fn read_hint(&self, shard: u32, pack: u32) -> Pending<Bytes> {
        let store = Arc::clone(&self.store);
        let path = self.hint_path(shard, pack);
        self.spawn(
            "hint read",
            async move { get_all(store.as_ref(), &path).await },
        )
    }

    /// A whole pack, checked against its manifest entry (length and digest).
    pub fn read_pack(&self, shard: u32, entry: PackEntry) -> Pending<Bytes> {
        let store = Arc::clone(&self.store);
        let path = self.pack_path(shard, entry.pack);
        self.spawn_with(Duration::MAX, "pack read", async move {
            let bytes = get_all(store.as_ref(), &path).await?;
            if bytes.len() as u64 != entry.pack_len
                || twox_hash::XxHash3_64::oneshot(&bytes) != entry.pack_xxh3
            {
                return Err(RemoteError::Damaged {
                    path: path.to_string(),
                    reason: format!(
                        "{} bytes that do not match the manifest's {} and digest",
                        bytes.len(),
                        entry.pack_len
                    ),
                });
            }
            Ok(bytes)
        })
    }

    /// The numbers of the packs (or lone hints) stored for `shard`, listed or not by its
    /// manifest, ascending: what a crash left behind shows up here.
    pub fn list_packs(&self, shard: u32) -> Pending<Vec<u32>> {
        let store = Arc::clone(&self.store);
        let dir = self.shard_path(shard, "packs");
        self.spawn("pack listing", async move {
            let mut packs = std::collections::BTreeSet::new();
            let mut listing = store.list(Some(&dir));
            while let Some(meta) = listing.next().await {
                let meta = meta?;
                let name = meta.location.filename().unwrap_or_default();
                let number = name
                    .strip_suffix(".pack")
                    .or_else(|| name.strip_suffix(".hint"))
                    .and_then(|n| n.parse::<u32>().ok());
                packs.extend(number);
            }
            Ok(packs.into_iter().collect())
        })
    }

    /// The manifest generations stored for `shard`, ascending.
    pub fn list_generations(&self, shard: u32) -> Pending<Vec<u64>> {
        let store = Arc::clone(&self.store);
        let dir = self.shard_path(shard, "manifests");
        self.spawn("manifest listing", async move {
            let mut generations = Vec::new();
            let mut listing = store.list(Some(&dir));
            while let Some(meta) = listing.next().await {
                let meta = meta?;
                let name = meta.location.filename().unwrap_or_default();
                generations.extend(name.parse::<u64>().ok());
            }
            generations.sort_unstable();
            Ok(generations)
        })
    }

    /// Deletes manifest generation `generation` of `shard` (one a newer generation replaced,
    /// a grace period ago: a reader that listed it has read it since).
    pub fn delete_manifest(&self, shard: u32, generation: u64) -> Pending<()> {
        let store = Arc::clone(&self.store);
        let path = self.manifest_path(shard, generation);
        self.spawn("manifest delete", async move {
            match store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(RemoteError::Store(e)),
            }
        })
    }

    /// Deletes a pack and its hint (the hint first, so a reader never finds a hint without
    /// its pack). Only for packs no durable manifest generation lists any more.
    pub fn delete_pack(&self, shard: u32, pack: u32) -> Pending<()> {
        let store = Arc::clone(&self.store);
        let paths = [self.hint_path(shard, pack), self.pack_path(shard, pack)];
        self.spawn("delete", async move {
            for path in &paths {
                match store.delete(path).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(RemoteError::Store(e)),
                }
            }
            Ok(())
        })
    }

    fn spawn<T, F>(&self, what: &'static str, work: F) -> Pending<T>
    where
        T: Send + 'static,
        F: Future<Output = Result<T>> + Send + 'static,
    {
        self.spawn_with(self.request_timeout, what, work)
    }

    /// Runs `work` on the bucket's runtime, failing it with [`RemoteError::TimedOut`] after
    /// `limit`.
    fn spawn_with<T, F>(&self, limit: Duration, what: &'static str, work: F) -> Pending<T>
    where
        T: Send + 'static,
        F: Future<Output = Result<T>> + Send + 'static,
    {
        let (tx, rx) = flume::bounded(1);
        if let Some(runtime) = &self.runtime {
            runtime.spawn(async move {
                let result = if limit == Duration::MAX {
                    work.await
                } else {
                    tokio::time::timeout(limit, work).await.unwrap_or_else(|_| {
                        Err(RemoteError::TimedOut {
                            secs: limit.as_secs(),
                            what: what.to_owned(),
                        })
                    })
                };
                // The caller may have stopped waiting: nothing to tell then.
                let _ = tx.send(result);
            });
        }
        Pending { rx }
    }

    fn root_path(&self) -> Path {
        Path::from(self.root.as_str())
    }

    fn shard_path(&self, shard: u32, rest: &str) -> Path {
        let key = format!("shard-{shard:03}/{rest}");
        if self.root.is_empty() {
            Path::from(key)
        } else {
            Path::from(format!("{}/{key}", self.root))
        }
    }

    fn pack_path(&self, shard: u32, pack: u32) -> Path {
        self.shard_path(shard, &format!("packs/{pack:08}.pack"))
    }

    fn hint_path(&self, shard: u32, pack: u32) -> Path {
        self.shard_path(shard, &format!("packs/{pack:08}.hint"))
    }

    fn manifest_path(&self, shard: u32, generation: u64) -> Path {
        self.shard_path(shard, &format!("manifests/{generation:016}"))
    }
}

impl Drop for PackBucket {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which a tokio context (an embedder's) forbids.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The S3 client of `config`'s bucket, as every bucket of this crate makes it (plain HTTP
/// allowed, the timeouts, three retries, connections kept alive or not as
/// `config.reuse_connections` says), counting its requests into `requests` (and the
/// process total, [`crate::counting::process_requests`]). It does not check that the bucket
/// answers: [`PackBucket::open`] does.
pub fn s3_store(
    config: &RemoteConfig,
    requests: Arc<RequestCounter>,
) -> Result<Arc<dyn ObjectStore>> {
    if config.bucket.is_empty() {
        return Err(RemoteError::Config("no bucket given".into()));
    }
    let mut options = ClientOptions::new()
        .with_allow_http(true)
        .with_connect_timeout(config.open_timeout.min(Duration::from_secs(5)))
        .with_timeout(config.request_timeout);
    if !config.reuse_connections {
        options = options.with_pool_max_idle_per_host(0);
    }
    let retry = RetryConfig {
        max_retries: 3,
        retry_timeout: config.request_timeout,
        ..RetryConfig::default()
    };
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(&config.bucket)
        .with_region(&config.region)
        // The options carry allow_http: with_client_options replaces the builder's.
        .with_client_options(options)
        .with_retry(retry)
        .with_http_connector(CountingConnector::new(requests));
    if let Some(endpoint) = &config.endpoint {
        builder = builder
            .with_endpoint(endpoint)
            .with_virtual_hosted_style_request(false);
    }
    if let (Some(id), Some(secret)) = (&config.access_key_id, &config.secret_access_key) {
        builder = builder
            .with_access_key_id(id)
            .with_secret_access_key(secret);
    }
    let store = builder
        .build()
        .map_err(|e| RemoteError::Config(e.to_string()))?;
    Ok(Arc::new(store))
}

/// Stores `bytes` at `path` unless an object is there; if one is, it must hold the same
/// bytes (an earlier attempt of this upload), or the upload is refused.
async fn put_once(store: &dyn ObjectStore, path: &Path, bytes: Bytes) -> Result<()> {
    match put_new(store, path, bytes.clone()).await {
        Ok(()) => Ok(()),
        Err(object_store::Error::AlreadyExists { .. }) => {
            let there = get_all(store, path).await?;
            if there == bytes {
                Ok(())
            } else {
                Err(RemoteError::Exists {
                    path: path.to_string(),
                })
            }
        }
        Err(e) => Err(RemoteError::on(path, e)),
    }
}

/// Stores `bytes` at `path`, or fails with `AlreadyExists` if an object is there.
///
/// The object is looked up first, whatever its size: Garage 2.5 ignores `If-None-Match` on
/// PutObject (a create-only put overwrites there), and a multipart upload cannot be
/// create-only on every store. A shard's packs and manifests are written by the one engine
/// that owns the shard, so nobody races the look; where the store honours `If-None-Match`,
/// the single PUT is create-only as well.
async fn put_new(store: &dyn ObjectStore, path: &Path, bytes: Bytes) -> object_store::Result<()> {
    match store.head(path).await {
        Ok(_) => {
            return Err(object_store::Error::AlreadyExists {
                path: path.to_string(),
                source: "present before the upload".into(),
            });
        }
        Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(e),
    }
    if bytes.len() <= SINGLE_PUT_MAX {
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        store
            .put_opts(path, PutPayload::from(bytes), options)
            .await
            .map(drop)
    } else {
        let upload = store
            .put_multipart_opts(path, PutMultipartOptions::default())
            .await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        writer.put(bytes);
        writer.finish().await.map(drop)
    }
}

/// Listings of a shard's manifests [`PackBucket::latest_manifest`] makes at most, after the
/// newest it listed was deleted before it could be read, that list no newer generation.
const UNREPLACED_RETRIES: u32 = 5;

/// Listings that find no manifest before [`PackBucket::latest_manifest`] says a shard has
/// none (see there: with one, the test `manifest_race` got `None` in about every other run
/// on a loaded machine; object_store's local listing passes over a file deleted while it
/// lists without a word, so nothing tells such a listing from an empty shard's).
const EMPTY_LISTINGS: u32 = 3;

/// Manifests [`PackBucket::latest_manifest`] may find deleted before it read them, each time
/// with a newer one listed next: a writer (grace period zero) replaced them faster than the
/// reader got from its listing to its read, which a reader descheduled on a loaded machine
/// lost five times running (a fixed five retries failed the test `manifest_race` in CI).
const REPLACED_RETRIES: u32 = 1000;

/// The highest generation under `dir` and its path. A generation deleted while the listing
/// ran (a replaced one, by the writer) is passed over.
async fn newest_generation(store: &dyn ObjectStore, dir: &Path) -> Result<Option<(u64, Path)>> {
    let mut newest: Option<(u64, Path)> = None;
    let mut listing = store.list(Some(dir));
    while let Some(meta) = listing.next().await {
        let meta = match meta {
            Ok(meta) => meta,
            Err(object_store::Error::NotFound { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        let name = meta.location.filename().unwrap_or_default();
        // Anything that is not a generation number is not ours to read.
        let Ok(generation) = name.parse::<u64>() else {
            continue;
        };
        if newest.as_ref().is_none_or(|(g, _)| generation > *g) {
            newest = Some((generation, meta.location));
        }
    }
    Ok(newest)
}

async fn get_all(store: &dyn ObjectStore, path: &Path) -> Result<Bytes> {
    Ok(store
        .get(path)
        .await
        .map_err(|e| RemoteError::on(path, e))?
        .bytes()
        .await?)
}

/// Names what went wrong at open from the client's error: the server's refusal of the
/// credentials, a missing bucket, or no answer at all.
fn classify_open_error(config: &RemoteConfig, e: RemoteError) -> RemoteError {
    let reason = match &e {
        RemoteError::Store(inner) => error_chain(inner),
        RemoteError::TimedOut { secs, .. } => format!("no answer within {secs} s"),
        other => other.to_string(),
    };
    // Matched on the status phrase and S3's error codes, never on a bare number: the text
    // also holds the request's URL, whose port may read 403 or 404.
    let says = |needles: &[&str]| needles.iter().any(|n| reason.contains(n));
    if says(&["NoSuchBucket"]) {
        RemoteError::NoBucket {
            bucket: config.bucket.clone(),
        }
    } else if says(&[
        "status code: 401",
        "status code: 403",
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
    ]) {
        RemoteError::Denied {
            bucket: config.bucket.clone(),
            reason,
        }
    } else if says(&["status code: 404"]) {
        RemoteError::NoBucket {
            bucket: config.bucket.clone(),
        }
    } else {
        RemoteError::Unreachable {
            endpoint: config.endpoint_name(),
            reason,
        }
    }
}

/// The error and all its sources on one line: the client's top error says "retry error",
/// the cause is further down.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(text: &str) -> RemoteError {
        let e = RemoteError::Store(object_store::Error::Generic {
            store: "S3",
            source: text.to_owned().into(),
        });
        classify_open_error(&RemoteConfig::new(Some("http://127.0.0.1:40403"), "b"), e)
    }

    #[test]
    fn open_errors_are_named_by_status_and_code_not_by_numbers_in_the_url() {
        let refused = "Error performing GET http://127.0.0.1:40403/b?list-type=2 in 2ms - \
                       error sending request: connection refused";
        assert!(matches!(classify(refused), RemoteError::Unreachable { .. }));
        let forbidden = "Error performing GET http://127.0.0.1:3900/b in 1ms - Server returned \
                         non-2xx status code: 403 Forbidden: <Code>AccessDenied</Code>";
        assert!(matches!(classify(forbidden), RemoteError::Denied { .. }));
        let missing = "Error performing GET http://127.0.0.1:3900/b in 1ms - Server returned \
                       non-2xx status code: 404 Not Found: <Code>NoSuchBucket</Code>";
        assert!(matches!(classify(missing), RemoteError::NoBucket { .. }));
    }
}
