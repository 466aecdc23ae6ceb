//! The command line ([`Cli`], parsed by clap) and the validated form of a run ([`Plan`]).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ipfrs_storage::{BackendKind, Config, Durability, IoDriver};

use super::error::{BenchError, Result};
use super::workload::{SizeSpec, WorkloadKind};

/// Measures the ipfrs engine over each cold backend against the raw backends called directly
/// and against the ceilings (raw O_DIRECT disk I/O through glommio, and sha2-256 alone), in
/// interleaved rounds. Prints one table per workload: ops/s, MiB/s, latency percentiles, peak
/// RSS, and the ratios to the baseline and to the ceiling.
#[derive(Debug, Parser)]
#[command(
    name = "ipfrs-bench",
    version,
    long_about = None,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// `compare` or `report`; without a subcommand, a benchmark run.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The run's flags.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compares two `--json` reports figure by figure; exits with 1 if any figure regressed past
    /// the threshold.
    Compare(CompareArgs),
    /// Writes the HTML report (charts and tables, one self-contained file) of a saved `--json`
    /// run.
    Report(ReportArgs),
}

/// The flags of `report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The run, as `--json` wrote it.
    pub run: PathBuf,
    /// The HTML file to write.
    #[arg(short = 'o', long = "output", value_name = "FILE.html")]
    pub output: PathBuf,
}

/// The flags of `compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The earlier report.
    pub old: PathBuf,
    /// The later report.
    pub new: PathBuf,
    /// A figure regressed when it is this much worse (ops/s lower, p99 latency higher).
    #[arg(long, value_name = "PERCENT", default_value = "10%", value_parser = parse_percent)]
    pub threshold: f64,
    /// Also write the comparison as an HTML page with a chart per workload.
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<PathBuf>,
}

/// The flags of a benchmark run.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// A workload to run; repeat or separate with commas for several. Default: all but `car`
    /// (added by --car) and `put` (single durable puts of new blocks: slow by nature, so only
    /// on request; its ceiling is disk/write+fdatasync).
    #[arg(
        long = "workload",
        short = 'w',
        value_enum,
        value_name = "NAME",
        value_delimiter = ','
    )]
    pub workloads: Vec<WorkloadKind>,

    /// Blocks stored per round.
    #[arg(long, value_name = "N", default_value_t = 1_000)]
    pub blocks: u64,

    /// Run each timed workload (get, get-many, get-zipf, has-absent, has-many-absent, mixed,
    /// put) for exactly this many ops instead of for --duration (keys for the batched ones:
    /// get-many makes ops / batch calls).
    #[arg(long, value_name = "N")]
    pub ops: Option<u64>,

    /// Block sizes: `ipfs` (a mix of 256 KiB raw chunks and small dag-pb / dag-cbor nodes) or
    /// one fixed size (bytes; K/KiB and M/MiB suffixes accepted).
    #[arg(long, value_name = "SIZE|ipfs", default_value = "ipfs", value_parser = parse_size_spec)]
    pub size: SizeSpec,

    /// How long each timed workload (get, get-many, get-zipf, has-absent, has-many-absent,
    /// mixed, put) runs per target and round, e.g. `2s` or `500ms`.
    #[arg(long, value_name = "TIME", default_value = "200ms", value_parser = parse_duration)]
    pub duration: Duration,

    /// Run each timed workload this long, unmeasured, before measuring it.
    #[arg(long, value_name = "TIME", default_value = "0s", value_parser = parse_duration)]
    pub warmup: Duration,

    /// Measured rounds: every target runs every workload once per round, targets interleaved
    /// (A B C A B C ...); figures are the median over rounds.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub rounds: u32,

    /// Client threads.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub threads: usize,

    /// Requests each client thread keeps in flight (the queue depth is threads x in-flight, for
    /// the disk ceiling too). Blocking raw backends get one thread per request.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub in_flight: usize,

    /// Blocks or CIDs per batched call: ingest / delete (put_many, raw put_batch + flush),
    /// get-many and has-many-absent (get_many / has_many, raw: one call per key).
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub batch: usize,

    /// Open loop: issue this many calls per second in total (an ingest or delete batch is one
    /// call), each timed from its intended start, so stalls count fully: no coordinated
    /// omission. Default: closed loop, as fast as the target answers.
    #[arg(long, value_name = "OPS")]
    pub rate: Option<f64>,

    /// Skew of get-zipf (0: uniform; 0.99: YCSB's hot set; higher: hotter).
    #[arg(long, value_name = "S", default_value_t = 0.99)]
    pub zipf_skew: f64,

    /// Share of gets in the mixed workload; the rest are puts of new blocks.
    #[arg(long, value_name = "FRACTION", default_value_t = 0.9)]
    pub read_ratio: f64,

    /// A backend to measure (sled, parity-db, rocksdb); repeat for several. Default: every
    /// backend in this build.
    #[arg(long = "backend", value_name = "NAME", value_parser = parse_backend)]
    pub backends: Vec<BackendKind>,

    /// What the `vs base` ratio divides by: `raw` (the raw backend under the same engine) or a
    /// target's name, e.g. `engine/sled`.
    #[arg(long, value_name = "TARGET", default_value = "raw")]
    pub baseline: String,

    /// Skip the ceilings (disk and CPU).
    #[arg(long)]
    pub no_ceiling: bool,

    /// When writes are acknowledged (the engine's Durability); raw backends flush and the disk
    /// ceilings fdatasync after each batch (put: each block) unless `none`.
    #[arg(long, value_enum, default_value_t = DurabilityArg::Sync)]
    pub durability: DurabilityArg,

    /// Engine shards. Default: one per core.
    #[arg(long, value_name = "N")]
    pub shards: Option<usize>,

    /// Engine block cache budget (bytes; K/M suffixes). Default: the engine's.
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub cache: Option<usize>,

    /// Which engine variants to measure: with the hot segment tier (`engine+hot/B`), without
    /// it (`engine/B`, straight into the cold backend), or both.
    #[arg(long, value_enum, default_value_t = HotArg::Both)]
    pub hot_tier: HotArg,

    /// The hot tier's disk budget across all shards (bytes; K/M/G suffixes). Default: the
    /// engine's (1 GiB).
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub hot_budget: Option<usize>,

    /// Cold blocks up to this size are copied into the backend (inline); larger ones stay
    /// in packs and the backend holds where (bytes; K/M suffixes). Default: the engine's
    /// (1 KiB).
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub inline_max: Option<usize>,

    /// Whether the hot tier reads what it wrote back into the page cache (`true`/`false`;
    /// `HotTier::prefetch_written`). Default: the engine's (on, large records included).
    /// Off, the first read of a new block goes to the disk, and a write's readahead never
    /// queues beside the next write.
    #[arg(long, value_name = "BOOL")]
    pub prefetch_written: Option<bool>,

    /// Whether a lone durable put is written on the caller's thread while its shard commits
    /// nothing (`true`/`false`; `Config::caller_writes`). Default: the engine's (on).
    #[arg(long, value_name = "BOOL")]
    pub caller_writes: Option<bool>,

    /// Memory for the engine's cache of pack locations, all shards together (bytes; K/M/G
    /// suffixes; 0: off). Default: the engine's (32 MiB).
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub location_cache: Option<usize>,

    /// The engine's I/O driver: `auto` (the engine's default: io_uring where this process may
    /// use it, else the fallback), `io-uring`, `fallback`, or `both` (every engine target
    /// twice, `engine+hot/B` on io_uring and `engine+hot/B (fallback)`, side by side).
    #[arg(long, value_enum, default_value_t = DriverArg::Auto)]
    pub io_driver: DriverArg,

    /// Let idle engine shards spin this many microseconds before sleeping (0: never).
    /// Default: the engine's own (`Config::spin_before_park`, 200 us).
    #[arg(long, value_name = "US")]
    pub spin_us: Option<u64>,

    /// Directory to benchmark in: a fresh subdirectory is made in it and removed afterwards.
    /// Default: a temporary directory.
    #[arg(long, value_name = "PATH")]
    pub dir: Option<PathBuf>,

    /// CAR file (v1 or v2, at most 2 GiB: its blocks are held in memory) for the `car`
    /// workload: every block ingested into a fresh store per target. Without --workload, the
    /// default workloads run and `car` too.
    #[arg(long, value_name = "FILE")]
    pub car: Option<PathBuf>,

    /// Seed of the block contents and of the access patterns.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub seed: u64,

    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,

    /// Also write a one-table Markdown summary (a row per target) to this file.
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,

    /// Also write an HTML report to this file: one self-contained page (inline SVG charts and
    /// CSS, no script) with per workload throughput bars, latency percentile curves and the
    /// figures, then memory and CPU per target, the machine and this command line.
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<PathBuf>,

    /// Print nothing on stdout and no progress bar (errors still go to stderr).
    #[arg(long, short)]
    pub quiet: bool,

    /// Also measure on S3: `engine+s3/B` (the engine with its pack tier on the bucket) and
    /// `s3/object-per-block` (one object per block, as go-ds-s3 stores them), with the S3
    /// requests each made. `garage`: start a local Garage for the run (`IPFRS_GARAGE`, else
    /// `garage` on PATH); `env`: the AWS_* environment's endpoint and credentials with
    /// --s3-bucket. Default: no S3 targets.
    #[arg(long, value_enum, value_name = "garage|env")]
    pub s3: Option<S3Arg>,

    /// The bucket of `--s3 env`.
    #[arg(long, value_name = "NAME")]
    pub s3_bucket: Option<String>,

    /// engine+s3: bytes of uploaded packs kept on the local disk, all shards together
    /// (K/M suffixes). Default 0: every pack is removed locally once uploaded, so a read
    /// past the hot tier is a ranged GET (the case the S3 targets compare).
    #[arg(long, value_name = "BYTES", value_parser = parse_size, default_value = "0")]
    pub local_pack_bytes: usize,

    /// engine+s3: bytes fetched past a sequential read of a pack in the same request
    /// (`RemoteTier::readahead_bytes`, K/M suffixes; 0: off). Default: the engine's, 1 MiB.
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub s3_readahead: Option<usize>,

    /// Whether both S3 targets' clients keep connections alive (`RemoteConfig::
    /// reuse_connections`, `true` by default as there); `false`: a connection per request,
    /// which avoids the delayed-ACK stalls of a server that leaves Nagle on (Garage 2.5).
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub s3_reuse_connections: bool,

    /// `--s3 garage`: Garage's `block_size` (K/M suffixes; default: Garage's own, 1 MiB).
    /// Garage reads a whole block for any range, so packs read by small ranges want it
    /// smaller (64K: random 4 KiB reads at parity with one object per block).
    #[arg(long, value_name = "BYTES", value_parser = parse_size)]
    pub s3_garage_block_size: Option<usize>,
}

/// Where `--s3` finds its bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum S3Arg {
    /// A Garage started for the run on 127.0.0.1 and stopped after it.
    Garage,
    /// `AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
    /// `--s3-bucket`.
    Env,
}

/// Which I/O drivers the engine targets run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DriverArg {
    /// The engine's default: io_uring where it can be used, else the fallback.
    Auto,
    /// io_uring (the run fails where it cannot be used).
    IoUring,
    /// The fallback driver (plain system calls).
    Fallback,
    /// Both, side by side.
    Both,
}

/// Which engine variants a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HotArg {
    /// The engine with its hot segment tier (the default configuration).
    On,
    /// The engine writing straight into the cold backend.
    Off,
    /// Both, side by side.
    Both,
}

impl HotArg {
    /// The variants to run: `true` is hot tier on.
    pub fn variants(self) -> &'static [bool] {
        match self {
            HotArg::On => &[true],
            HotArg::Off => &[false],
            HotArg::Both => &[true, false],
        }
    }
}

/// The `--durability` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DurabilityArg {
    /// Every write is synced before it is acknowledged (group commit as leader and
    /// followers: concurrent writes share a sync), the engine's default.
    Sync,
    /// Group commit with a 500 us gathering window.
    Batch,
    /// No sync: a crash may lose acknowledged writes.
    None,
}

impl DurabilityArg {
    /// The engine's setting.
    pub fn durability(self) -> Durability {
        match self {
            DurabilityArg::Sync => Durability::Sync,
            DurabilityArg::Batch => Durability::batch(),
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

    /// Whether raw targets sync after each batch.
    pub fn syncs(self) -> bool {
        self != DurabilityArg::None
    }
}

/// Ops in the list a timed read workload cycles through: long enough that the cycle does not
/// shape the access pattern, small enough to generate in a blink.
const TIMED_OPS: usize = 100_000;

/// The validated command line: everything a run needs.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Workloads, in run order (ingest first).
    pub workloads: Vec<WorkloadKind>,
    /// Blocks stored per round.
    pub blocks: usize,
    /// Block sizes.
    pub size: SizeSpec,
    /// Time per read workload; `None` with `--ops`.
    pub duration: Option<Duration>,
    /// Length of each read workload's op list: `--ops`, or a long list that a timed run
    /// cycles through.
    pub read_ops: usize,
    /// Unmeasured time before each read workload.
    pub warmup: Duration,
    /// Rounds.
    pub rounds: u32,
    /// Client threads.
    pub threads: usize,
    /// Requests in flight per client thread.
    pub in_flight: usize,
    /// Blocks per batch.
    pub batch: usize,
    /// Open-loop request rate, all clients together.
    pub rate: Option<f64>,
    /// Zipf skew.
    pub zipf_skew: f64,
    /// Share of gets in `mixed`.
    pub read_ratio: f64,
    /// Backends to measure, each compiled into this build.
    pub backends: Vec<BackendKind>,
    /// `raw` or a target name.
    pub baseline: String,
    /// Whether to measure the ceilings.
    pub ceilings: bool,
    /// The durability setting.
    pub durability: DurabilityArg,
    /// Engine shards; `None`: the engine's default.
    pub shards: Option<usize>,
    /// Engine cache budget; `None`: the engine's default.
    pub cache: Option<usize>,
    /// Engine variants: hot tier on, off, or both.
    pub hot_tier: HotArg,
    /// Hot tier budget; `None`: the engine's default.
    pub hot_budget: Option<usize>,
    /// Largest block kept inline in the backend; `None`: the engine's default.
    pub inline_max: Option<usize>,
    /// Location cache budget; `None`: the engine's default.
    pub location_cache: Option<usize>,
    /// Read back written records; `None`: the engine's default.
    pub prefetch_written: Option<bool>,
    /// Lone durable puts on the caller's thread; `None`: the engine's default.
    pub caller_writes: Option<bool>,
    /// The drivers engine targets run on, resolved (`IoUring` or `Fallback`), in order.
    pub io_drivers: Vec<IoDriver>,
    /// Engine shards' spin before parking, in microseconds.
    pub spin_us: Option<u64>,
    /// Where to make the run's directory; `None`: the system's temporary directory.
    pub dir: Option<PathBuf>,
    /// The CAR file of the `car` workload (present exactly when it runs).
    pub car: Option<PathBuf>,
    /// RNG seed.
    pub seed: u64,
    /// JSON output file.
    pub json: Option<PathBuf>,
    /// Markdown summary file.
    pub markdown: Option<PathBuf>,
    /// HTML report file.
    pub report: Option<PathBuf>,
    /// No stdout output, no progress bar.
    pub quiet: bool,
    /// Where the S3 targets' bucket is; `None`: no S3 targets.
    pub s3: Option<S3Arg>,
    /// The bucket of `--s3 env`.
    pub s3_bucket: Option<String>,
    /// engine+s3: uploaded pack bytes kept locally.
    pub local_pack_bytes: u64,
    /// engine+s3: read-ahead bytes, if not the engine's default.
    pub s3_readahead: Option<u64>,
    /// Whether the S3 clients keep connections alive.
    pub s3_reuse_connections: bool,
    /// `--s3 garage`: Garage's block size, if set.
    pub s3_garage_block_size: Option<u64>,
}

impl Plan {
    /// Checks every value, with a one-line message naming the flag for the first bad one.
    pub fn from_args(args: RunArgs) -> Result<Plan> {
        let usage = |msg: String| Err(BenchError::Usage(msg));
        if args.blocks == 0 {
            return usage("--blocks must be at least 1 (got 0)".into());
        }
        let max_block = Config::new(".").max_block_size;
        match args.size {
            SizeSpec::Fixed(0) => return usage("--size must be at least 1 byte".into()),
            SizeSpec::Fixed(size) if size > max_block => {
                return usage(format!(
                    "--size {size} is larger than the engine's maximum block size ({max_block} \
                     bytes, the bitswap limit)"
                ));
            }
            _ => {}
        }
        let blocks = usize::try_from(args.blocks).unwrap_or(usize::MAX);
        // Every block is generated up front, in memory: refuse what cannot fit.
        let bytes = (blocks as u128) * (args.size.max_len() as u128);
        if bytes > (isize::MAX as u128) / 2 {
            return usage(format!(
                "--blocks {blocks} of up to {} bytes do not fit in memory",
                args.size.max_len()
            ));
        }
        for (flag, value) in [
            ("--threads", args.threads),
            ("--in-flight", args.in_flight),
            ("--batch", args.batch),
        ] {
            if value == 0 {
                return usage(format!("{flag} must be at least 1 (got 0)"));
            }
        }
        if args.rounds == 0 {
            return usage("--rounds must be at least 1 (got 0)".into());
        }
        if args.shards == Some(0) {
            return usage("--shards must be at least 1 (got 0)".into());
        }
        if args.duration.is_zero() {
            return usage("--duration must be longer than 0".into());
        }
        if args.ops == Some(0) {
            return usage("--ops must be at least 1 (got 0)".into());
        }
        match (args.s3, &args.s3_bucket) {
            (Some(S3Arg::Env), None) => {
                return usage("--s3 env needs the bucket: --s3-bucket NAME".into());
            }
            (None | Some(S3Arg::Garage), Some(_)) => {
                return usage("--s3-bucket is for --s3 env (Garage makes its own)".into());
            }
            _ => {}
        }
        if let Some(rate) = args.rate
            && !(rate.is_finite() && rate > 0.0)
        {
            return usage(format!("--rate must be a positive number (got {rate})"));
        }
        if !(args.zipf_skew.is_finite() && args.zipf_skew >= 0.0) {
            return usage(format!(
                "--zipf-skew must be 0 or more (got {})",
                args.zipf_skew
            ));
        }
        if !(0.0..=1.0).contains(&args.read_ratio) {
            return usage(format!(
                "--read-ratio must be between 0 and 1 (got {})",
                args.read_ratio
            ));
        }
        let mut workloads: Vec<WorkloadKind> = if args.workloads.is_empty() {
            let mut all = WorkloadKind::DEFAULT.to_vec();
            if args.car.is_some() {
                all.push(WorkloadKind::Car);
            }
            all
        } else {
            args.workloads.clone()
        };
        let car = if workloads.contains(&WorkloadKind::Car) {
            Some(check_car(args.car)?)
        } else if args.car.is_some() {
            return usage("--car is for the car workload: add `--workload car`".into());
        } else {
            None
        };
        workloads.sort();
        workloads.dedup();
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
            workloads,
            blocks,
            size: args.size,
            duration: args.ops.is_none().then_some(args.duration),
            read_ops: args.ops.map_or(TIMED_OPS.max(blocks), |n| {
                usize::try_from(n).unwrap_or(usize::MAX)
            }),
            warmup: args.warmup,
            rounds: args.rounds,
            threads: args.threads,
            in_flight: args.in_flight,
            batch: args.batch,
            rate: args.rate,
            zipf_skew: args.zipf_skew,
            read_ratio: args.read_ratio,
            backends,
            baseline: args.baseline,
            ceilings: !args.no_ceiling,
            durability: args.durability,
            shards: args.shards,
            cache: args.cache,
            hot_tier: args.hot_tier,
            hot_budget: args.hot_budget,
            inline_max: args.inline_max,
            location_cache: args.location_cache,
            prefetch_written: args.prefetch_written,
            caller_writes: args.caller_writes,
            io_drivers: match args.io_driver {
                // Resolved now, so target names say which driver ran.
                DriverArg::Auto => vec![
                    ipfrs_storage::resolve_io_driver(IoDriver::Auto).unwrap_or(IoDriver::Fallback),
                ],
                DriverArg::IoUring => vec![IoDriver::IoUring],
                DriverArg::Fallback => vec![IoDriver::Fallback],
                DriverArg::Both => vec![IoDriver::IoUring, IoDriver::Fallback],
            },
            spin_us: args.spin_us,
            dir: args.dir,
            car,
            seed: args.seed,
            json: args.json,
            markdown: args.markdown,
            report: args.report,
            quiet: args.quiet,
            s3: args.s3,
            s3_bucket: args.s3_bucket,
            local_pack_bytes: args.local_pack_bytes as u64,
            s3_readahead: args.s3_readahead.map(|b| b as u64),
            s3_reuse_connections: args.s3_reuse_connections,
            s3_garage_block_size: args.s3_garage_block_size.map(|b| b as u64),
        })
    }
}

/// The `car` workload needs its file, readable and small enough to hold in memory (it is
/// read only when the run starts, after every flag is checked).
fn check_car(car: Option<PathBuf>) -> Result<PathBuf> {
    let Some(path) = car else {
        return Err(BenchError::Usage(
            "--workload car needs the CAR file: --car FILE".into(),
        ));
    };
    super::car::check(&path)?;
    Ok(path)
}

/// Parses a backend name.
fn parse_backend(text: &str) -> Result<BackendKind, String> {
    text.parse()
}

/// Parses `ipfs` or a fixed size.
fn parse_size_spec(text: &str) -> Result<SizeSpec, String> {
    if text.eq_ignore_ascii_case("ipfs") {
        Ok(SizeSpec::Ipfs)
    } else {
        parse_size(text).map(SizeSpec::Fixed)
    }
}

/// Parses a byte size: `4096`, `4K`, `4KiB`, `2M`, `2MiB` (binary units, case-insensitive).
pub fn parse_size(text: &str) -> Result<usize, String> {
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

/// Parses a duration: `2s`, `1.5s`, `500ms`, `100us`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = t.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else {
        (t, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 2s, 500ms)"))?;
    Duration::try_from_secs_f64(value * scale).map_err(|_| format!("{text:?} is out of range"))
}

/// Parses a percentage: `10%` or `10` (both mean 0.10).
pub fn parse_percent(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let value: f64 = t
        .strip_suffix('%')
        .unwrap_or(t)
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a percentage (e.g. 10%)"))?;
    if !(value.is_finite() && value >= 0.0) {
        return Err(format!("{text:?} must be 0% or more"));
    }
    Ok(value / 100.0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn plan(args: &[&str]) -> Result<Plan> {
        let cli = Cli::try_parse_from(std::iter::once("ipfrs-bench").chain(args.iter().copied()))
            .map_err(|e| BenchError::Usage(e.to_string()))?;
        Plan::from_args(cli.run)
    }

    #[test]
    fn defaults_run_every_workload_on_every_backend() {
        let plan = plan(&[]).unwrap();
        assert_eq!(plan.workloads, WorkloadKind::DEFAULT.to_vec());
        assert_eq!(plan.size, SizeSpec::Ipfs);
        assert_eq!(plan.backends, ipfrs_storage::compiled_backends());
        assert_eq!(plan.durability, DurabilityArg::Sync);
        assert_eq!(plan.baseline, "raw");
        assert!(plan.ceilings && plan.rate.is_none());
        assert_eq!(plan.duration, Some(Duration::from_millis(200)));
        let plan = super::tests::plan(&["--ops", "7"]).unwrap();
        assert_eq!((plan.duration, plan.read_ops), (None, 7));
    }

    #[test]
    fn workloads_run_in_a_fixed_order_once() {
        let plan = plan(&["-w", "delete", "-w", "get", "-w", "ingest", "-w", "get"]).unwrap();
        assert_eq!(
            plan.workloads,
            vec![
                WorkloadKind::Ingest,
                WorkloadKind::Get,
                WorkloadKind::Delete
            ]
        );
    }

    #[test]
    fn batched_reads_are_named_and_run_after_their_single_forms() {
        let plan = plan(&["-w", "has-many-absent,get-many", "--workload", "get"]).unwrap();
        assert_eq!(
            plan.workloads,
            vec![
                WorkloadKind::Get,
                WorkloadKind::GetMany,
                WorkloadKind::HasManyAbsent
            ]
        );
        assert!(plan.workloads.iter().all(|w| w.is_timed()));
        let names: Vec<&str> = WorkloadKind::DEFAULT.iter().map(|w| w.name()).collect();
        assert!(names.contains(&"get-many") && names.contains(&"has-many-absent"));
    }

    #[test]
    fn put_runs_only_on_request_and_after_the_reads() {
        assert!(!plan(&[]).unwrap().workloads.contains(&WorkloadKind::Put));
        let plan = plan(&["-w", "put,get,has-absent", "--durability", "sync"]).unwrap();
        assert_eq!(
            plan.workloads,
            vec![
                WorkloadKind::Get,
                WorkloadKind::HasAbsent,
                WorkloadKind::Put
            ]
        );
        assert_eq!(plan.durability, DurabilityArg::Sync);
        assert!(super::tests::plan(&["--durability", "sometimes"]).is_err());
    }

    #[test]
    fn values_take_units() {
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("256KiB"), Ok(256 << 10));
        assert_eq!(parse_size("2MiB"), Ok(2 << 20));
        assert!(parse_size("2GiB").is_err());
        assert!(parse_size("abc").is_err());
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_percent("10%"), Ok(0.1));
        assert_eq!(parse_percent("2.5"), Ok(0.025));
        assert!(parse_percent("-1%").is_err());
        assert_eq!(parse_size_spec("IPFS"), Ok(SizeSpec::Ipfs));
        assert_eq!(parse_size_spec("4K"), Ok(SizeSpec::Fixed(4096)));
    }

    proptest::proptest! {
        #[test]
        fn sizes_round_trip(n in 0usize..1 << 20) {
            proptest::prop_assert_eq!(parse_size(&n.to_string()), Ok(n));
            proptest::prop_assert_eq!(parse_size(&format!("{n}K")), Ok(n << 10));
            proptest::prop_assert_eq!(parse_size(&format!("{n}MiB")), Ok(n << 20));
        }
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for args in [
            &["--blocks", "0"][..],
            &["--size", "3MiB"],
            &["--size", "0"],
            &["--batch", "0"],
            &["--threads", "0"],
            &["--in-flight", "0"],
            &["--rounds", "0"],
            &["--shards", "0"],
            &["--rate", "0"],
            &["--zipf-skew", "-1"],
            &["--read-ratio", "1.5"],
            &["--duration", "0s"],
            &["--ops", "0"],
            &["-w", "car"],
            &["-w", "car", "--car", "/nonexistent/file.car"],
            &["-w", "car", "--car", "/"],
            &["-w", "get", "--car", "Cargo.toml"],
        ] {
            let err = plan(args).unwrap_err();
            assert!(!err.to_string().contains('\n'), "{args:?}: {err}");
        }
    }

    #[test]
    fn car_runs_last_and_joins_the_defaults_when_given_alone() {
        let car = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/car/sample-v1.car"
        );
        let only = plan(&["-w", "car", "--car", car]).unwrap();
        assert_eq!(only.workloads, vec![WorkloadKind::Car]);
        assert_eq!(only.car.as_deref(), Some(std::path::Path::new(car)));
        let all = plan(&["--car", car]).unwrap();
        assert_eq!(all.workloads.len(), WorkloadKind::DEFAULT.len() + 1);
        assert_eq!(all.workloads.last(), Some(&WorkloadKind::Car));
        let mixed = plan(&["-w", "car,get", "--car", car]).unwrap();
        assert_eq!(mixed.workloads, vec![WorkloadKind::Get, WorkloadKind::Car]);
        assert!(plan(&[]).unwrap().car.is_none());
    }

    #[test]
    fn both_drivers_measure_each_engine_target_twice() {
        let both = plan(&[
            "--io-driver",
            "both",
            "--backend",
            "sled",
            "--hot-tier",
            "on",
        ])
        .unwrap();
        assert_eq!(both.io_drivers, vec![IoDriver::IoUring, IoDriver::Fallback]);
        let names: Vec<String> = crate::bench::target::TargetKind::all(&both)
            .into_iter()
            .map(|t| t.name())
            .collect();
        assert!(names.contains(&"engine+hot/sled".to_string()), "{names:?}");
        assert!(
            names.contains(&"engine+hot/sled (fallback)".to_string()),
            "{names:?}"
        );
        let fallback = plan(&["--io-driver", "fallback"]).unwrap();
        assert_eq!(fallback.io_drivers, vec![IoDriver::Fallback]);
        assert!(plan(&["--io-driver", "epoll"]).is_err());
    }

    #[test]
    fn s3_targets_join_only_with_s3() {
        let names = |args: &[&str]| -> Vec<String> {
            crate::bench::target::TargetKind::all(&plan(args).unwrap())
                .into_iter()
                .map(|t| t.name())
                .collect()
        };
        let plain = names(&["--backend", "sled", "--hot-tier", "on"]);
        assert!(plain.iter().all(|n| !n.contains("s3")), "{plain:?}");
        let s3 = names(&["--backend", "sled", "--hot-tier", "on", "--s3", "garage"]);
        assert!(s3.contains(&"engine+s3/sled".to_string()), "{s3:?}");
        assert!(s3.contains(&"s3/object-per-block".to_string()), "{s3:?}");
        assert_eq!(s3.len(), plain.len() + 2);
        let garage = plan(&["--s3", "garage"]).unwrap();
        assert_eq!(garage.local_pack_bytes, 0);
        assert!(garage.s3_reuse_connections);
        let fresh = plan(&["--s3", "garage", "--s3-reuse-connections", "false"]).unwrap();
        assert!(!fresh.s3_reuse_connections);
        let env = plan(&[
            "--s3",
            "env",
            "--s3-bucket",
            "b",
            "--local-pack-bytes",
            "64M",
        ])
        .unwrap();
        assert_eq!(
            (env.s3, env.s3_bucket.as_deref(), env.local_pack_bytes),
            (Some(S3Arg::Env), Some("b"), 64 << 20)
        );
        for bad in [
            &["--s3", "env"][..],
            &["--s3-bucket", "b"],
            &["--s3", "garage", "--s3-bucket", "b"],
            &["--s3", "minio"],
        ] {
            assert!(plan(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn repeated_backends_are_deduplicated() {
        let plan = plan(&["--backend", "sled", "--backend", "sled"]).unwrap();
        assert_eq!(plan.backends, vec![BackendKind::Sled]);
    }
}
