//! Garage (a distributed S3-compatible store) on 127.0.0.1, started and stopped by tests.
//!
//! [`Garage::start`] runs one node in Garage's single-node mode with a bucket and an access
//! key made at start-up; [`GarageCluster::start`] runs several nodes, connects them, assigns
//! and applies a layout with one replica per node, and makes the bucket and key through the
//! `garage` CLI, as an operator would. Every port is on 127.0.0.1, chosen by the kernel
//! (see [`config`]), and every file lives under the directory the caller gives. Dropping a
//! handle kills its processes and reaps them, so a failed test leaves no server behind.
//!
//! The binary is found by [`garage_binary`]; `scripts/ensure-garage` installs it. Tests call
//! [`garage_for_test`], which skips (returns `None` with a message) where Garage is absent,
//! unless `IPFRS_REQUIRE_GARAGE` is set, as in CI, where absence is an error.

mod cluster;
pub mod config;
mod error;
mod node;
mod single;

use std::path::{Path, PathBuf};

pub use cluster::GarageCluster;
pub use error::Error;
pub use single::{BUCKET, Garage};

/// The environment variable naming the `garage` binary to use; it wins over `PATH`.
pub const GARAGE_ENV: &str = "IPFRS_GARAGE";

/// The environment variable that turns a missing binary from a skip into a failure (CI
/// sets it, so that a broken install cannot pass as a green run).
pub const REQUIRE_ENV: &str = "IPFRS_REQUIRE_GARAGE";

/// The S3 region every node is configured with; clients must sign with the same one.
pub const REGION: &str = "garage";

/// Finds the `garage` binary: `$IPFRS_GARAGE` if set, else `garage` on `PATH`, else
/// `~/.cargo/bin/garage` (where `cargo install` puts it, often not on a CI's `PATH`).
///
/// Returns `Ok(None)` when none of these exists. A set `IPFRS_GARAGE` that names no file is
/// [`Error::BadBinaryEnv`]: someone asked for that binary, so falling back would hide a
/// mistake.
pub fn garage_binary() -> Result<Option<PathBuf>, Error> {
    if let Some(path) = std::env::var_os(GARAGE_ENV).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(Some(path))
        } else {
            Err(Error::BadBinaryEnv { path })
        };
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
        .map(|c| c.join("bin"));
    Ok(on_path
        .into_iter()
        .chain(cargo_bin)
        .map(|dir| dir.join("garage"))
        .find(|candidate| candidate.is_file()))
}

/// The binary for a test named `test`, or `None` when the test should skip.
///
/// Where Garage is absent this prints why the test skips and how to install Garage, and
/// returns `Ok(None)`; with `IPFRS_REQUIRE_GARAGE` set it returns [`Error::BinaryMissing`]
/// instead, so that the test fails.
pub fn garage_for_test(test: &str) -> Result<Option<PathBuf>, Error> {
    match garage_binary()? {
        Some(path) => Ok(Some(path)),
        None if required() => Err(Error::BinaryMissing),
        None => {
            eprintln!(
                "SKIPPED {test}: no garage binary (set {GARAGE_ENV}, put garage on PATH or run \
                 scripts/ensure-garage; set {REQUIRE_ENV} to make this a failure)"
            );
            Ok(None)
        }
    }
}

fn required() -> bool {
    std::env::var_os(REQUIRE_ENV).is_some_and(|v| !v.is_empty() && v != "0")
}
