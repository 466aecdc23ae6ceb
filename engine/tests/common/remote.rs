//! What the tests of the pack tier on a bucket share: stats, waiting for the uploader, a
//! directory as the bucket, and finding its objects.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ipfrs_storage::{Engine, RemoteConfig, RemoteTier, Stats};

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
