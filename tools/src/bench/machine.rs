//! What the figures were measured on: cores, CPU, kernel, the data directory's filesystem,
//! memory, and the versions of the crates that decide the results.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The workspace's lock file, read at build time: the crate versions this binary was built
/// with (the tools crate is never published alone, so the path always exists).
const CARGO_LOCK: &str = include_str!("../../../Cargo.lock");

/// Crates whose versions a reader of the figures needs.
const CRATES: [&str; 12] = [
    "ipfrs-storage",
    "ipfrs-shards",
    "ipfrs-tiering",
    "glommio",
    "sled",
    "parity-db",
    "rocksdb",
    "sha2",
    "blake3",
    "fastbloom",
    "quick_cache",
    "hdrhistogram",
];

/// The machine and build behind a report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    /// Cores this process may use.
    pub cores: usize,
    /// The CPU model (`/proc/cpuinfo`).
    pub cpu_model: String,
    /// Whether the CPU has the SHA-NI instructions; `None` off x86-64.
    pub sha_ni: Option<bool>,
    /// The kernel release.
    pub kernel: String,
    /// The filesystem type of the data directory (`ext4`, `xfs`, `tmpfs`, ...).
    pub fs_type: String,
    /// Free memory at the start, MiB (`MemFree`).
    pub mem_free_mib: u64,
    /// Memory available at the start, MiB (`MemAvailable`: free plus reclaimable cache).
    pub mem_available_mib: u64,
    /// Versions of the crates that matter, from Cargo.lock (absent ones are not in the lock).
    pub crate_versions: BTreeMap<String, String>,
    /// Whether this build is optimised.
    pub release_build: bool,
    /// Whether this process may use io_uring: "usable", or why not (the engine's default
    /// driver then runs on the fallback). Empty in reports written before it was recorded.
    #[serde(default)]
    pub io_uring: String,
}

impl Machine {
    /// Reads everything; unknown values are reported as "unknown" or 0, never an error.
    pub fn probe(data_dir: &Path) -> Machine {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mib = |field: &str| {
            meminfo
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
                .map_or(0, |kib| kib / 1024)
        };
        let sha_ni = ipfrs_storage::sha256_accelerated();
        Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model: std::fs::read_to_string("/proc/cpuinfo")
                .ok()
                .and_then(|text| {
                    text.lines()
                        .find_map(|l| l.strip_prefix("model name"))
                        .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string())
                })
                .unwrap_or_else(|| "unknown".into()),
            sha_ni: cfg!(target_arch = "x86_64").then_some(sha_ni),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map_or_else(|_| "unknown".into(), |s| s.trim().to_string()),
            fs_type: fs_type(data_dir),
            mem_free_mib: mib("MemFree:"),
            mem_available_mib: mib("MemAvailable:"),
            crate_versions: {
                let mut versions = crate_versions(CARGO_LOCK);
                // The lock lists rocksdb whether or not this build has the feature.
                if !ipfrs_storage::compiled_backends()
                    .contains(&ipfrs_storage::BackendKind::RocksDb)
                {
                    versions.remove("rocksdb");
                }
                versions
            },
            release_build: !cfg!(debug_assertions),
            io_uring: match ipfrs_storage::resolve_io_driver(ipfrs_storage::IoDriver::IoUring) {
                Ok(_) => "usable".into(),
                Err(e) => format!("unavailable ({e})"),
            },
        }
    }
}

/// The filesystem type of the mount holding `dir` (the longest mount point that prefixes it).
pub fn fs_type(dir: &Path) -> String {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mount_type(&mounts, &dir).unwrap_or_else(|| "unknown".into())
}

fn mount_type(mounts: &str, dir: &Path) -> Option<String> {
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let _device = fields.next()?;
            // Mount points escape spaces as \040.
            let point = fields.next()?.replace("\\040", " ");
            let kind = fields.next()?;
            dir.starts_with(&point)
                .then(|| (point.len(), kind.to_string()))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, kind)| kind)
}

/// The versions of [`CRATES`] in a Cargo.lock.
fn crate_versions(lock: &str) -> BTreeMap<String, String> {
    let mut versions = BTreeMap::new();
    let mut name: Option<&str> = None;
    for line in lock.lines() {
        if let Some(n) = line.strip_prefix("name = ") {
            name = Some(n.trim_matches('"'));
        } else if let (Some(v), Some(n)) = (line.strip_prefix("version = "), name.take())
            && CRATES.contains(&n)
        {
            versions.insert(n.to_string(), v.trim_matches('"').to_string());
        }
    }
    versions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_mount_point_wins() {
        let mounts = "/dev/vda / ext4 rw 0 0\ntmpfs /tmp tmpfs rw 0 0\n\
                      tmpfs /tmp/my\\040dir tmpfs rw 0 0\n/dev/vdb /data xfs rw 0 0\n";
        let kind = |p: &str| mount_type(mounts, Path::new(p));
        assert_eq!(kind("/tmp/x").as_deref(), Some("tmpfs"));
        assert_eq!(kind("/data/a/b").as_deref(), Some("xfs"));
        assert_eq!(kind("/home").as_deref(), Some("ext4"));
        assert_eq!(kind("/tmp/my dir/y").as_deref(), Some("tmpfs"));
        // A path component match, not a string prefix: /datastore is not under /data.
        assert_eq!(kind("/datastore").as_deref(), Some("ext4"));
    }

    #[test]
    fn versions_come_from_the_lock_file() {
        let versions = crate_versions(CARGO_LOCK);
        assert!(versions.contains_key("glommio"), "{versions:?}");
        assert!(versions.contains_key("sled"));
        assert!(!versions.contains_key("serde"));
        let lock = "[[package]]\nname = \"sled\"\nversion = \"0.34.7\"\n\n[[package]]\n\
                    name = \"other\"\nversion = \"1.0.0\"\n";
        assert_eq!(
            crate_versions(lock).into_iter().collect::<Vec<_>>(),
            vec![("sled".to_string(), "0.34.7".to_string())]
        );
    }
}
