//! [`Config`] from a TOML file.
//!
//! Every key is optional; a missing key keeps the default of [`Config::new`]. Unknown keys are
//! refused with the key named, so a typo never silently leaves a default in force. The data
//! directory is not read from the file: whoever opens the store decides it.
//!
//! ```toml
//! shards = 4                      # fixed when the store is created; later opens must match
//! backend = "sled"                # "sled", "parity-db" or "rocksdb"
//! cache_bytes = 67108864          # block cache, all shards together
//! backend_cache_bytes = 67108864  # the cold backend's own cache, all shards together
//! location_cache_bytes = 33554432 # where cold blocks lie in packs, all shards together
//! bloom_expected_items = 1000000  # blocks the bloom filters are sized for
//! bloom_fp_rate = 0.01            # false-positive rate at that count
//! max_block_size = 2097152        # largest block `put` accepts
//! durability = "sync"             # "sync" (group commit, the default), "batch" (group commit with a window) or "none"
//! batch_max_delay = "500us"       # batch only: a duration string or an integer of microseconds
//! batch_max_ops = 1024            # batch only: a group is written at this many writes
//! io_driver = "auto"             # "auto" (io_uring when allowed, else the fallback), "io_uring" or "fallback"
//! io_memory_per_shard = 1048576   # io_uring registered memory per shard (counts in ulimit -l)
//! blocking_threads_per_shard = 2  # threads running cold-backend calls, per shard
//! pin_shards = true               # pin shard i to core i % cores
//! caller_reads = true             # answer reads on the caller's thread where possible
//! caller_writes = true            # write a lone durable put on the caller's thread
//! queue_depth = 1024              # requests queued per shard before senders wait
//! spin_before_park = "200us"      # idle spin before sleeping (the default); 0: never spin
//! release_free_memory_every = "1s" # hand glibc's free memory back to the kernel; 0: never
//! hot_tier = true                 # hot segment tier on (default) or off (cold backend only)
//! hot_budget_bytes = 1073741824   # disk the hot segments may take, all shards together
//! hot_segment_bytes = 67108864    # one segment file (multiple of 4096, at most 4 GiB)
//! hot_write_chunk_bytes = 1048576 # one DMA write
//! hot_keep_reads = 2              # reads since written that keep a block hot at compaction
//! hot_promote_after_reads = 2     # cold reads that copy a block back (0: never)
//! hot_prefetch_written = true     # read new records into the page cache after writing
//! hot_prefetch_large_written = true # ... those above the inline threshold too
//! hot_inline_threshold_bytes = 1024 # cold blocks up to this size are copied into the
//!                                 # backend; larger ones stay in their pack
//! hot_reclaim_below_percent = 50  # rewrite a pack once its live share falls under this
//! space_reserve_bytes = 134217728 # kept back for deletes and compaction on a full disk, all
//!                                 # shards together; absent: one hot segment per shard; 0: off
//!
//! [remote]                        # the pack tier on S3 (absent: packs stay local)
//! bucket = "ipfrs"                # required in the section
//! endpoint = "http://127.0.0.1:3900" # absent: AWS_ENDPOINT_URL, else AWS S3 of the region
//! region = "garage"               # absent: AWS_REGION or AWS_DEFAULT_REGION, else "garage"
//! prefix = "node-a"               # key prefix of this store's objects (default: none)
//! local_pack_bytes = 1073741824   # uploaded packs kept on the local disk, all shards together
//! delete_grace = "10m"            # how long a pack that left the manifest stays in the bucket
//! readahead_bytes = 1048576       # fetched past a sequential read of a pack (0: off)
//! range_cache_bytes = 33554432    # memory for those ranges, all shards together
//! reuse_connections = true        # false: a connection per request
//! ```
//!
//! The bucket's credentials come only from `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`,
//! never from the file: a configuration file is copied, printed and committed, and a secret
//! in it leaks with it. A file that names them is refused.
//!
//! Durations are either strings in humantime's syntax (`"500us"`, `"2ms"`, `"1s 500ms"`) or
//! integers counting microseconds (`500`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::remote::{RemoteConfig, RemoteTier};
use crate::{BackendKind, Config, Durability};

/// Why a configuration file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigFileError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not valid TOML, has an unknown key, or a value of the wrong type or range.
    #[error("{origin}: line {line}: {message}")]
    Invalid {
        /// The file, or `<string>` for text given directly.
        origin: String,
        /// The 1-based line of the offending key or value.
        line: usize,
        /// What is wrong (for an unknown key: the key and the keys allowed).
        message: String,
    },
}

/// The file's keys: [`Config`]'s fields, flattened so the file stays a list of `key = value`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    shards: Option<usize>,
    backend: Option<String>,
    cache_bytes: Option<u64>,
    backend_cache_bytes: Option<u64>,
    location_cache_bytes: Option<u64>,
    bloom_expected_items: Option<u64>,
    bloom_fp_rate: Option<f64>,
    max_block_size: Option<usize>,
    durability: Option<DurabilityName>,
    batch_max_delay: Option<DurationValue>,
    batch_max_ops: Option<usize>,
    io_driver: Option<String>,
    io_memory_per_shard: Option<usize>,
    blocking_threads_per_shard: Option<usize>,
    pin_shards: Option<bool>,
    caller_reads: Option<bool>,
    caller_writes: Option<bool>,
    queue_depth: Option<usize>,
    spin_before_park: Option<DurationValue>,
    release_free_memory_every: Option<DurationValue>,
    hot_tier: Option<bool>,
    hot_budget_bytes: Option<u64>,
    hot_segment_bytes: Option<u64>,
    hot_write_chunk_bytes: Option<usize>,
    hot_keep_reads: Option<u16>,
    hot_promote_after_reads: Option<u16>,
    hot_prefetch_written: Option<bool>,
    hot_prefetch_large_written: Option<bool>,
    hot_inline_threshold_bytes: Option<u32>,
    hot_reclaim_below_percent: Option<u8>,
    space_reserve_bytes: Option<u64>,
    remote: Option<RemoteSection>,
}

/// The `[remote]` table: [`RemoteTier`] without its credentials.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoteSection {
    bucket: Option<String>,
    endpoint: Option<String>,
    region: Option<String>,
    prefix: Option<String>,
    local_pack_bytes: Option<u64>,
    delete_grace: Option<DurationValue>,
    readahead_bytes: Option<u64>,
    range_cache_bytes: Option<u64>,
    reuse_connections: Option<bool>,
    /// Read only to refuse it by name (see the module docs); its value is never shown.
    access_key_id: Option<toml::Value>,
    /// As `access_key_id`.
    secret_access_key: Option<toml::Value>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum DurabilityName {
    Sync,
    Batch,
    None,
}

/// A duration written as a humantime string or an integer of microseconds.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum DurationValue {
    Micros(u64),
    Text(String),
}

impl DurationValue {
    fn resolve(&self) -> Result<Duration, String> {
        match self {
            DurationValue::Micros(us) => Ok(Duration::from_micros(*us)),
            DurationValue::Text(text) => humantime::parse_duration(text)
                .map_err(|e| format!("bad duration {text:?}: {e} (e.g. \"500us\" or 500)")),
        }
    }
}

impl Config {
    /// Reads a TOML configuration file; the store lives in `data_dir`.
    ///
    /// Errors: [`ConfigFileError::Io`] if the file cannot be read, [`ConfigFileError::Invalid`]
    /// (naming the line and the key) for bad TOML, unknown keys and bad values.
    pub fn from_toml_file(
        path: &Path,
        data_dir: impl Into<PathBuf>,
    ) -> Result<Config, ConfigFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        parse(&text, &path.display().to_string(), data_dir.into())
    }

    /// Parses TOML text as [`Config::from_toml_file`] does.
    pub fn from_toml_str(
        text: &str,
        data_dir: impl Into<PathBuf>,
    ) -> Result<Config, ConfigFileError> {
        parse(text, "<string>", data_dir.into())
    }
}

fn parse(text: &str, origin: &str, data_dir: PathBuf) -> Result<Config, ConfigFileError> {
    parse_with_env(text, origin, data_dir, &|name| std::env::var(name).ok())
}

/// [`parse`] with the environment given as a lookup, so tests need not change the process's.
fn parse_with_env(
    text: &str,
    origin: &str,
    data_dir: PathBuf,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigFileError> {
    let file: ConfigFile = toml::from_str(text).map_err(|e| ConfigFileError::Invalid {
        origin: origin.to_string(),
        line: e.span().map_or(1, |span| line_of(text, span.start)),
        message: e.message().trim().to_string(),
    })?;
    let invalid = |key: &str, message: String| ConfigFileError::Invalid {
        origin: origin.to_string(),
        line: key_line(text, key),
        message: format!("{key}: {message}"),
    };
    let mut config = Config::new(data_dir);
    macro_rules! take {
        ($($field:ident),*) => { $( if let Some(v) = file.$field { config.$field = v; } )* };
    }
    take!(
        cache_bytes,
        backend_cache_bytes,
        location_cache_bytes,
        bloom_expected_items,
        bloom_fp_rate,
        max_block_size,
        io_memory_per_shard,
        blocking_threads_per_shard,
        pin_shards,
        caller_reads,
        caller_writes,
        queue_depth
    );
    config.shards = file.shards;
    config.space_reserve_bytes = file.space_reserve_bytes;
    if file.hot_tier == Some(false) {
        config.hot_tier = None;
    } else if let Some(hot) = &mut config.hot_tier {
        macro_rules! hot {
            ($($key:ident => $field:ident),*) => {
                $( if let Some(v) = file.$key { hot.$field = v; } )*
            };
        }
        hot!(
            hot_budget_bytes => budget_bytes,
            hot_segment_bytes => segment_bytes,
            hot_write_chunk_bytes => write_chunk_bytes,
            hot_keep_reads => keep_hot_reads,
            hot_promote_after_reads => promote_after_reads,
            hot_prefetch_written => prefetch_written,
            hot_prefetch_large_written => prefetch_large_written,
            hot_inline_threshold_bytes => inline_threshold_bytes,
            hot_reclaim_below_percent => reclaim_below_percent
        );
    }
    if let Some(name) = &file.backend {
        config.backend = name
            .parse::<BackendKind>()
            .map_err(|e| invalid("backend", e))?;
    }
    if let Some(name) = &file.io_driver {
        config.io_driver = name.parse().map_err(|e| invalid("io_driver", e))?;
    }
    if let Some(spin) = &file.spin_before_park {
        let spin = spin.resolve().map_err(|e| invalid("spin_before_park", e))?;
        config.spin_before_park = (!spin.is_zero()).then_some(spin);
    }
    if let Some(every) = &file.release_free_memory_every {
        let every = every
            .resolve()
            .map_err(|e| invalid("release_free_memory_every", e))?;
        config.release_free_memory_every = (!every.is_zero()).then_some(every);
    }
    let batch_keys = file.batch_max_delay.is_some() || file.batch_max_ops.is_some();
    config.durability = match file.durability {
        Some(DurabilityName::Sync) | Some(DurabilityName::None) if batch_keys => {
            let key = if file.batch_max_delay.is_some() {
                "batch_max_delay"
            } else {
                "batch_max_ops"
            };
            return Err(invalid(
                key,
                "applies only to durability = \"batch\"".to_string(),
            ));
        }
        Some(DurabilityName::Sync) => Durability::Sync,
        Some(DurabilityName::None) => Durability::None,
        None if !batch_keys => Durability::default(),
        // Batch keys alone ask for batch, as they did when batch was the default.
        Some(DurabilityName::Batch) | None => {
            let (mut max_delay, mut max_ops) = Durability::BATCH_WINDOW;
            if let Some(delay) = &file.batch_max_delay {
                max_delay = delay.resolve().map_err(|e| invalid("batch_max_delay", e))?;
            }
            if let Some(ops) = file.batch_max_ops {
                max_ops = ops;
            }
            Durability::Batch { max_delay, max_ops }
        }
    };
    if let Some(section) = &file.remote {
        config.remote = Some(remote_tier(section, env).map_err(|(key, e)| invalid(key, e))?);
    }
    Ok(config)
}

/// The pack tier of a `[remote]` table: its keys over the AWS environment's, credentials
/// from the environment alone. Errors name the key.
fn remote_tier(
    section: &RemoteSection,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<RemoteTier, (&'static str, String)> {
    let var = |name: &str| env(name).filter(|v| !v.is_empty());
    for (key, given) in [
        ("access_key_id", section.access_key_id.is_some()),
        ("secret_access_key", section.secret_access_key.is_some()),
    ] {
        if given {
            return Err((
                key,
                "credentials are read from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY only, \
                 never from the file"
                    .into(),
            ));
        }
    }
    let bucket = match section.bucket.as_deref() {
        Some(b) if !b.trim().is_empty() => b,
        _ => return Err(("bucket", "[remote] needs a bucket".into())),
    };
    let endpoint = section.endpoint.clone().or_else(|| var("AWS_ENDPOINT_URL"));
    let mut bucket = RemoteConfig::new(endpoint.as_deref(), bucket);
    if let Some(region) = section
        .region
        .clone()
        .or_else(|| var("AWS_REGION"))
        .or_else(|| var("AWS_DEFAULT_REGION"))
    {
        bucket.region = region;
    }
    if let Some(prefix) = &section.prefix {
        bucket.prefix = prefix.trim_matches('/').to_owned();
    }
    if let Some(reuse) = section.reuse_connections {
        bucket.reuse_connections = reuse;
    }
    bucket.access_key_id = var("AWS_ACCESS_KEY_ID");
    bucket.secret_access_key = var("AWS_SECRET_ACCESS_KEY");
    let mut tier = RemoteTier::new(bucket);
    if let Some(bytes) = section.local_pack_bytes {
        tier.local_pack_bytes = bytes;
    }
    if let Some(grace) = &section.delete_grace {
        tier.delete_grace = grace.resolve().map_err(|e| ("delete_grace", e))?;
    }
    if let Some(bytes) = section.readahead_bytes {
        tier.readahead_bytes = bytes;
    }
    if let Some(bytes) = section.range_cache_bytes {
        tier.range_cache_bytes = bytes;
    }
    Ok(tier)
}

/// The 1-based line holding byte `offset`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The line where `key` is set (for errors found after parsing), else 1.
fn key_line(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| {
            l.trim_start()
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map_or(1, |i| i + 1)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn empty_file_gives_the_defaults() {
        let config = Config::from_toml_str("", "/d").unwrap();
        let default = Config::new("/d");
        assert_eq!(config.cache_bytes, default.cache_bytes);
        assert_eq!(config.durability, default.durability);
        assert_eq!(config.shards, None);
    }

    #[test]
    fn every_key_is_read() {
        let text = r#"
shards = 3
backend = "parity-db"
cache_bytes = 1000
backend_cache_bytes = 2000
bloom_expected_items = 3000
bloom_fp_rate = 0.05
max_block_size = 4000
durability = "batch"
batch_max_delay = "2ms"
batch_max_ops = 7
io_driver = "fallback"
io_memory_per_shard = 5000
blocking_threads_per_shard = 4
pin_shards = false
queue_depth = 9
spin_before_park = 250
release_free_memory_every = "5s"
hot_budget_bytes = 5000000
hot_segment_bytes = 8192000
hot_write_chunk_bytes = 65536
hot_keep_reads = 3
hot_promote_after_reads = 0
hot_prefetch_written = false
hot_prefetch_large_written = false
"#;
        let c = Config::from_toml_str(text, "/d").unwrap();
        assert_eq!(c.shards, Some(3));
        assert_eq!(c.backend, BackendKind::ParityDb);
        assert_eq!(
            (c.cache_bytes, c.backend_cache_bytes, c.bloom_expected_items),
            (1000, 2000, 3000)
        );
        assert_eq!(c.bloom_fp_rate, 0.05);
        assert_eq!(c.max_block_size, 4000);
        assert_eq!(c.io_driver, crate::IoDriver::Fallback);
        assert_eq!(
            c.durability,
            Durability::Batch {
                max_delay: Duration::from_millis(2),
                max_ops: 7
            }
        );
        assert_eq!(c.io_memory_per_shard, 5000);
        assert_eq!(c.blocking_threads_per_shard, 4);
        assert!(!c.pin_shards);
        assert_eq!(c.queue_depth, 9);
        assert_eq!(c.spin_before_park, Some(Duration::from_micros(250)));
        assert_eq!(c.release_free_memory_every, Some(Duration::from_secs(5)));
        let hot = c.hot_tier.unwrap();
        assert_eq!(
            (hot.budget_bytes, hot.segment_bytes, hot.write_chunk_bytes),
            (5_000_000, 8_192_000, 65_536)
        );
        assert_eq!((hot.keep_hot_reads, hot.promote_after_reads), (3, 0));
        assert!(!hot.prefetch_written && !hot.prefetch_large_written);
        let off = Config::from_toml_str("hot_tier = false", "/d").unwrap();
        assert!(off.hot_tier.is_none());
        let never = Config::from_toml_str("release_free_memory_every = 0", "/d").unwrap();
        assert_eq!(never.release_free_memory_every, None);
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let err = Config::from_toml_str("cache_bytes = 1\ncache_byts = 2\n", "/d").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("cache_byts"), "{text}");
        assert!(text.contains("line 2"), "{text}");
        assert_eq!(text.lines().count(), 1, "{text}");
    }

    #[test]
    fn bad_values_are_refused_with_the_key() {
        for (text, key) in [
            ("backend = \"lmdb\"", "backend"),
            ("durability = \"sync\"\nbatch_max_ops = 3", "batch_max_ops"),
            ("spin_before_park = \"soon\"", "spin_before_park"),
            (
                "release_free_memory_every = \"often\"",
                "release_free_memory_every",
            ),
            ("durability = \"eventually\"", "eventually"),
            ("io_driver = \"epoll\"", "io_driver"),
            ("cache_bytes = \"big\"", "string"),
        ] {
            let err = Config::from_toml_str(text, "/d").unwrap_err().to_string();
            assert!(err.contains(key), "{text}: {err}");
        }
    }

    #[test]
    fn sync_and_none_durability() {
        let c = Config::from_toml_str("durability = \"sync\"", "/d").unwrap();
        assert_eq!(c.durability, Durability::Sync);
        let c = Config::from_toml_str("durability = \"none\"", "/d").unwrap();
        assert_eq!(c.durability, Durability::None);
    }

    fn with_env(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigFileError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse_with_env(text, "<string>", "/d".into(), &|name| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn remote_section_reads_every_key_and_credentials_from_the_environment_only() {
        let text = r#"
cache_bytes = 1000

[remote]
bucket = "ipfrs"
endpoint = "http://127.0.0.1:3900"
region = "garage"
prefix = "/node-a/"
local_pack_bytes = 4096
delete_grace = "2m"
readahead_bytes = 65536
range_cache_bytes = 0
reuse_connections = false
"#;
        let env = [
            ("AWS_ACCESS_KEY_ID", "GKid"),
            ("AWS_SECRET_ACCESS_KEY", "s3cr3t"),
            ("AWS_ENDPOINT_URL", "http://elsewhere:9000"),
            ("AWS_REGION", "eu-west-1"),
        ];
        let c = with_env(text, &env).unwrap();
        assert_eq!(c.cache_bytes, 1000);
        assert!(!format!("{c:?}").contains("s3cr3t"));
        let tier = c.remote.unwrap();
        assert_eq!(tier.local_pack_bytes, 4096);
        assert_eq!(tier.delete_grace, Duration::from_secs(120));
        assert_eq!((tier.readahead_bytes, tier.range_cache_bytes), (65536, 0));
        let b = &tier.bucket;
        // The file's endpoint and region win over the environment's.
        assert_eq!(b.endpoint.as_deref(), Some("http://127.0.0.1:3900"));
        assert_eq!((b.bucket.as_str(), b.region.as_str()), ("ipfrs", "garage"));
        assert_eq!(b.prefix, "node-a");
        assert!(!b.reuse_connections);
        assert_eq!(b.access_key_id.as_deref(), Some("GKid"));
        assert_eq!(b.secret_access_key.as_deref(), Some("s3cr3t"));

        // Only the bucket given: the rest from the environment, else the defaults.
        let c = with_env("[remote]\nbucket = \"b\"", &env[2..]).unwrap();
        let tier = c.remote.unwrap();
        assert_eq!(
            tier.bucket.endpoint.as_deref(),
            Some("http://elsewhere:9000")
        );
        assert_eq!(tier.bucket.region, "eu-west-1");
        assert_eq!(tier.bucket.access_key_id, None);
        assert_eq!(tier, RemoteTier::new(tier.bucket.clone()));
        assert!(with_env("", &env).unwrap().remote.is_none());
    }

    #[test]
    fn remote_section_refuses_credentials_a_missing_bucket_and_unknown_keys() {
        for (text, key) in [
            (
                "[remote]\nbucket = \"b\"\nsecret_access_key = \"s3cr3t\"",
                "secret_access_key",
            ),
            (
                "[remote]\nbucket = \"b\"\naccess_key_id = \"GKid\"",
                "access_key_id",
            ),
            ("[remote]\nprefix = \"p\"", "bucket"),
            ("[remote]\nbucket = \"\"", "bucket"),
            (
                "[remote]\nbucket = \"b\"\ndelete_grace = \"later\"",
                "delete_grace",
            ),
            ("[remote]\nbucket = \"b\"\nbuckett = \"c\"", "buckett"),
            ("[remote]\nbucket = \"b\"\nlocal_pack_bytes = -1", "line 3"),
        ] {
            let err = with_env(text, &[]).unwrap_err().to_string();
            assert!(err.contains(key), "{text}: {err}");
            assert!(!err.contains("s3cr3t") && !err.contains("GKid"), "{err}");
            assert_eq!(err.lines().count(), 1, "{err}");
        }
        let err = with_env("[remote]\nbucket = \"b\"\nsecret_access_key = \"x\"", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn missing_file_is_an_io_error_naming_it() {
        let err = Config::from_toml_file(Path::new("/nonexistent/x.toml"), "/d").unwrap_err();
        assert!(matches!(err, ConfigFileError::Io { .. }));
        assert!(err.to_string().contains("/nonexistent/x.toml"));
    }
}
