//! The bodies of the fuzz targets, one function per target, each taking the raw input bytes.
//!
//! Two drivers call them, so each body exists once:
//! - `fuzz/` (cargo-fuzz, nightly, coverage-guided): each `fuzz_targets/<name>.rs` is a
//!   one-line wrapper around the function of the same name.
//! - `tests/smoke.rs` here (stable, part of `cargo test --workspace`): every committed seed in
//!   `fuzz/corpus/<name>/`, then a few thousand seeded mutations of them. No coverage feedback,
//!   so it finds less than a campaign, but it runs on every CI build and catches a change that
//!   makes a parser panic on inputs close to the seeds.
//!
//! A body returns normally for any input a parser rejects with a typed error; it panics only
//! when an invariant in its module doc does not hold, and that panic is the finding.

mod car_read;
mod cid_parse;
mod segment_recovery;
mod versioning_objects;

pub use car_read::car_read;
pub use cid_parse::cid_parse;
pub use segment_recovery::segment_recovery;
pub use versioning_objects::versioning_objects;

/// A target body: any bytes in, a panic only when an invariant breaks.
pub type Target = fn(&[u8]);

/// Every target, by the name of its cargo-fuzz binary and of its corpus directory
/// (`fuzz/corpus/<name>/`), for drivers that run them all.
pub const TARGETS: [(&str, Target); 4] = [
    ("segment_recovery", segment_recovery),
    ("car_read", car_read),
    ("versioning_objects", versioning_objects),
    ("cid_parse", cid_parse),
];
