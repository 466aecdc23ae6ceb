//! `ipfrs-bench`: measures the ipfrs storage engine against the raw cold backends it runs on.
//!
//! For each block size class (4 KiB and 256 KiB by default) and each compiled backend, it runs
//! three phases on the raw backend (called directly, as the engine's shards would) and on the
//! engine over that backend: batched ingest (sha2-256 hashing included), uniform random gets,
//! and lookups of absent CIDs. It prints ops/s, MiB/s, p50 and p99 latency and the engine/raw
//! ratio, plus the CPU's sha2-256 ceiling. `--help` lists the flags.

#[path = "../bench/mod.rs"]
mod bench;

fn main() -> std::process::ExitCode {
    bench::main()
}
