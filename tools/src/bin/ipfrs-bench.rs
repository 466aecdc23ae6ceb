//! `ipfrs-bench`: measures the ipfrs storage engine against the raw cold backends it runs on.
//!
//! For each compiled backend it runs the workloads (batched ingest with sha2-256 hashing,
//! single and batched gets, zipfian gets, single and batched `has` of absent CIDs, a get/put
//! mix, a scan, a delete; with `--car FILE`, the ingest of a CAR file's blocks; on request,
//! `put`: single durable puts of new blocks) on the raw backend (called directly, as the
//! engine's shards would) and on the engine over that backend with and without its hot tier,
//! plus the disk and CPU ceilings (for put: one O_DIRECT write + fdatasync per call at queue
//! depth 1), in interleaved rounds. It prints ops/s, MiB/s, latency percentiles, memory and
//! the ratios to the raw backend and the ceiling. `--help` lists the flags.

#[path = "../bench/mod.rs"]
mod bench;

fn main() -> std::process::ExitCode {
    bench::main()
}
