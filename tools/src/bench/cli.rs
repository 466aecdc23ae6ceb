//! The command line ([`Args`], parsed by clap) and its validated form ([`Plan`]).

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use ipfrs_storage::{BackendKind, Config, Durability};

use super::error::{BenchError, Result};

/// Compares the ipfrs engine with the raw cold backends it runs on: batched ingest (sha2-256
/// hashing included), uniform random gets, and lookups of absent CIDs, per block size and
/// backend. Prints ops/s, MiB/s, p50/p99 latency and the engine/raw ratio.
#[derive(Debug, Parser)]
#[command(name = "ipfrs-bench", version, about, long_about = None)]
pub struct Args {
    /// Blocks of the small size class, before --scale.
    #[arg(long, value_name = "N", default_value_t = 20_000)]
    pub small_count: u64,

    /// Blocks of the large size class, before --scale.
    #[arg(long, value_name = "N", default_value_t = 2_000)]
    pub large_count: u64,

    /// Size of the small blocks (bytes; K/KiB and M/MiB suffixes accepted).
    #[arg(long, value_name = "BYTES", default_value = "4KiB", value_parser = parse_size)]
    pub small_size: usize,

    /// Size of the large blocks (at most the engine's 2 MiB block limit).
    #[arg(long, value_name = "BYTES", default_value = "256KiB", value_parser = parse_size)]
    pub large_size: usize,

    /// Multiplies both block counts (0.1 for a quick look, 5 for a longer run).
    #[arg(
        long,
        value_name = "FACTOR",
        default_value_t = 1.0,
        allow_negative_numbers = true
    )]
    pub scale: f64,

    /// Blocks per put_many call (and per raw put_batch + flush).
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub batch: usize,

    /// Client threads, for the engine and for the raw backends alike.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub threads: usize,

    /// A backend to measure (sled, parity-db, rocksdb); repeat for several. Default: every
    /// backend in this build.
    #[arg(long = "backend", value_name = "NAME", value_parser = parse_backend)]
    pub backends: Vec<BackendKind>,

    /// Directory to benchmark in: a fresh subdirectory is made in it and removed afterwards.
    /// Default: a temporary directory.
    #[arg(long, value_name = "PATH")]
    pub dir: Option<PathBuf>,

    /// When writes are acknowledged (the engine's Durability); raw backends flush after each
    /// batch unless `none`.
    #[arg(long, value_enum, default_value_t = DurabilityArg::Batch)]
    pub durability: DurabilityArg,

    /// Engine shards. Default: one per core.
    #[arg(long, value_name = "N")]
    pub shards: Option<usize>,

    /// Let idle engine shards spin this many microseconds before sleeping (lower single-call
    /// latency for more CPU). Default: no spinning.
    #[arg(long, value_name = "US")]
    pub spin_us: Option<u64>,

    /// Seed of the block contents and of the access pattern.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub seed: u64,

    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Print nothing on stdout (errors still go to stderr); use with --json.
    #[arg(long, short)]
    pub quiet: bool,
}

/// The `--durability` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DurabilityArg {
    /// Every write is synced before it is acknowledged (concurrent writes share a sync).
    Sync,
    /// Group commit, the engine's default.
    Batch,
    /// No sync: a crash may lose acknowledged writes.
    None,
}

impl DurabilityArg {
    /// The engine's setting.
    pub fn durability(self) -> Durability {
        match self {
            DurabilityArg::Sync => Durability::Sync,
            DurabilityArg::Batch => Durability::default(),
            DurabilityArg::None => Durability::None,
        }
    }

    /// The name given on the command line.
    pub fn name(self) -> &'static str {
        match self {
            DurabilityArg::Sync => "sync",
            DurabilityArg::Batch => "batch",
            DurabilityArg::None => "none",
        }
    }
}

/// One block size and how many blocks of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeClass {
    /// Bytes per block.
    pub size: usize,
    /// Number of blocks (also the number of gets and of absent lookups).
    pub count: usize,
}

/// The validated command line: everything a run needs.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The size classes, small first.
    pub classes: Vec<SizeClass>,
    /// Blocks per batch.
    pub batch: usize,
    /// Client threads.
    pub threads: usize,
    /// Backends to measure, each compiled into this build.
    pub backends: Vec<BackendKind>,
    /// Where to make the run's directory; `None`: the system's temporary directory.
    pub dir: Option<PathBuf>,
    /// The durability setting.
    pub durability: DurabilityArg,
    /// Engine shards; `None`: the engine's default.
    pub shards: Option<usize>,
    /// Engine shards' spin before parking, in microseconds.
    pub spin_us: Option<u64>,
    /// RNG seed.
    pub seed: u64,
    /// The --scale factor (reported only; already applied to the counts).
    pub scale: f64,
    /// JSON output file.
    pub json: Option<PathBuf>,
    /// No stdout output.
    pub quiet: bool,
}

impl Plan {
    /// Checks every value, with a one-line message naming the flag for the first bad one.
    pub fn from_args(args: Args) -> Result<Plan> {
        let usage = |msg: String| Err(BenchError::Usage(msg));
        if !args.scale.is_finite() || args.scale <= 0.0 {
            return usage(format!(
                "--scale must be a positive number (got {})",
                args.scale
            ));
        }
        let max_block = Config::new(".").max_block_size;
        let mut classes = Vec::new();
        for (name, count, size) in [
            ("small", args.small_count, args.small_size),
            ("large", args.large_count, args.large_size),
        ] {
            if size == 0 {
                return usage(format!("--{name}-size must be at least 1 byte"));
            }
            if size > max_block {
                return usage(format!(
                    "--{name}-size {size} is larger than the engine's maximum block size \
                     ({max_block} bytes, the bitswap limit)"
                ));
            }
            let scaled = (count as f64 * args.scale).round();
            if scaled < 1.0 {
                return usage(if count == 0 {
                    format!("--{name}-count must be at least 1 (got 0)")
                } else {
                    format!(
                        "--{name}-count {count} x --scale {} leaves no blocks; use a larger \
                         scale",
                        args.scale
                    )
                });
            }
            let count = scaled as usize;
            if count
                .checked_mul(size)
                .is_none_or(|b| b > isize::MAX as usize)
            {
                return usage(format!(
                    "{count} blocks of {size} bytes do not fit in memory (--{name}-count, \
                     --scale)"
                ));
            }
            classes.push(SizeClass { size, count });
        }
        if args.batch == 0 {
            return usage("--batch must be at least 1 (got 0)".into());
        }
        if args.threads == 0 {
            return usage("--threads must be at least 1 (got 0)".into());
        }
        if args.shards == Some(0) {
            return usage("--shards must be at least 1 (got 0)".into());
        }
        let mut backends: Vec<BackendKind> = Vec::new();
        for kind in args.backends {
            if !ipfrs_storage::compiled_backends().contains(&kind) {
                return usage(format!(
                    "backend {kind} is not in this build (rebuild with `--features {kind}`)"
                ));
            }
            if !backends.contains(&kind) {
                backends.push(kind);
            }
        }
        if backends.is_empty() {
            backends = ipfrs_storage::compiled_backends();
        }
        Ok(Plan {
            classes,
            batch: args.batch,
            threads: args.threads,
            backends,
            dir: args.dir,
            durability: args.durability,
            shards: args.shards,
            spin_us: args.spin_us,
            seed: args.seed,
            scale: args.scale,
            json: args.json,
            quiet: args.quiet,
        })
    }
}

/// Parses a backend name.
fn parse_backend(text: &str) -> Result<BackendKind, String> {
    text.parse()
}

/// Parses a byte size: `4096`, `4K`, `4KiB`, `2M`, `2MiB` (binary units, case-insensitive).
fn parse_size(text: &str) -> Result<usize, String> {
    let lower = text.trim().to_ascii_lowercase();
    let split = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (digits, unit) = lower.split_at(split);
    let shift = match unit.trim() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        _ => return Err(format!("unknown unit in {text:?} (use bytes, K or M)")),
    };
    let value: usize = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size in bytes"))?;
    value
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn plan(args: &[&str]) -> Result<Plan> {
        let args = Args::try_parse_from(std::iter::once("ipfrs-bench").chain(args.iter().copied()))
            .map_err(|e| BenchError::Usage(e.to_string()))?;
        Plan::from_args(args)
    }

    #[test]
    fn defaults_are_the_readme_workload() {
        let plan = plan(&[]).unwrap();
        assert_eq!(
            plan.classes,
            vec![
                SizeClass {
                    size: 4096,
                    count: 20_000
                },
                SizeClass {
                    size: 256 << 10,
                    count: 2_000
                }
            ]
        );
        assert_eq!((plan.batch, plan.threads), (64, 2));
        assert_eq!(plan.backends, ipfrs_storage::compiled_backends());
        assert_eq!(plan.durability, DurabilityArg::Batch);
    }

    #[test]
    fn scale_multiplies_counts() {
        let plan = plan(&["--scale", "0.01"]).unwrap();
        assert_eq!(plan.classes[0].count, 200);
        assert_eq!(plan.classes[1].count, 20);
    }

    #[test]
    fn sizes_take_units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("256KiB"), Ok(256 << 10));
        assert_eq!(parse_size("2MiB"), Ok(2 << 20));
        assert!(parse_size("2GiB").is_err());
        assert!(parse_size("abc").is_err());
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for args in [
            &["--small-count", "0"][..],
            &["--scale", "0"],
            &["--scale", "0.00001"],
            &["--large-size", "3MiB"],
            &["--small-size", "0"],
            &["--batch", "0"],
            &["--threads", "0"],
            &["--shards", "0"],
        ] {
            let err = plan(args).unwrap_err();
            assert!(err.is_usage(), "{args:?}: {err}");
            assert!(!err.to_string().contains('\n'), "{args:?}: {err}");
        }
    }

    #[test]
    fn repeated_backends_are_deduplicated() {
        let plan = plan(&["--backend", "sled", "--backend", "sled"]).unwrap();
        assert_eq!(plan.backends, vec![BackendKind::Sled]);
    }
}
