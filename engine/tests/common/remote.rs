//! What the tests of the pack tier on a bucket share: the store they open, stats, waiting for
//! the uploader, a directory as the bucket, and finding its objects.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ipfrs_storage::{BackendKind, Config, Engine, HotTier, RemoteConfig, RemoteTier, Stats};

/// The engine's counters.
pub fn stats(engine: &Engine) -> Stats {
    engine.blocking().stats().unwrap()
}

/// Waits (at most 60 s) until the background work has done what `done` asks; returns the
/// last stats either way, for the caller's assertion to show.
pub fn settle(engine: &Engine, done: impl Fn(&Stats) -> bool) -> Stats {
    settle_for(engine, Duration::from_secs(60), done)
}

/// [`settle`], waiting at most `limit`.
pub fn settle_for(engine: &Engine, limit: Duration, done: impl Fn(&Stats) -> bool) -> Stats {
    let start = Instant::now();
    loop {
        let s = stats(engine);
        if done(&s) || start.elapsed() > limit {
            return s;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A bucket that is the directory `root/bucket` (created: a bucket must exist), its
/// objects under `prefix`.
pub fn dir_bucket(root: &Path, bucket: &str, prefix: &str) -> RemoteConfig {
    std::fs::create_dir_all(root.join(bucket)).unwrap();
    let mut config = RemoteConfig::new(Some(&format!("file://{}", root.display())), bucket);
    config.prefix = prefix.into();
    config
}

/// The hot segments of [`store_config`]: small, so that a few hundred blocks make packs.
pub const SEGMENT: u64 = 1 << 20;

/// The store the pack-tier tests open in `dir` ([`local_store_config`]), its packs on
/// `bucket` with `local_pack_bytes` kept on the disk ([`tier`]).
pub fn store_config(dir: &Path, bucket: RemoteConfig, local_pack_bytes: u64) -> Config {
    let mut config = local_store_config(dir);
    config.remote = Some(tier(bucket, local_pack_bytes));
    config
}

/// [`store_config`] without a bucket: two shards on sled, blocks up to 256 KiB, 1 MiB
/// segments and four of them as the hot budget, nothing kept hot by reads or promoted (what
/// compaction reaches is packed, and reads of it go to the bucket once there is one).
pub fn local_store_config(dir: &Path) -> Config {
    let mut config = Config::new(dir);
    config.shards = Some(2);
    config.backend = BackendKind::Sled;
    config.max_block_size = 256 << 10;
    config.hot_tier = Some(HotTier {
        segment_bytes: SEGMENT,
        budget_bytes: 4 * SEGMENT,
        keep_hot_reads: 0,
        promote_after_reads: 0,
        ..HotTier::default()
    });
    config
}

/// The pack tier the tests use: `bucket`, `local_pack_bytes` of packs kept on the disk, and
/// no grace before deletes (a test checks the bucket right after); the rest as defaults.
pub fn tier(bucket: RemoteConfig, local_pack_bytes: u64) -> RemoteTier {
    RemoteTier {
        local_pack_bytes,
        delete_grace: Duration::ZERO,
        ..RemoteTier::new(bucket)
    }
}

/// Files under `dir` (recursively) whose name ends with `suffix`, sorted.
pub fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_ending(&path, suffix));
        } else if path.to_string_lossy().ends_with(suffix) {
            found.push(path);
        }
    }
    found.sort();
    found
}
