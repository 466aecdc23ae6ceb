//! Criterion micro-benchmarks of the engine's hot paths; the benchmarks live in `benches/`.
//!
//! This library is empty on purpose: `cargo bench -p ipfrs-benches` runs the targets in
//! `benches/*.rs`, and `cargo test --workspace` only compiles them.
