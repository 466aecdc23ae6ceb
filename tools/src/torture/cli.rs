//! The command line of `ipfrs-torture` (clap derive).

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use ipfrs_storage::BackendKind;

use crate::torture::workload::{Mode, Workload};

/// ipfrs-torture: a crash campaign against the engine. A child process puts, deletes and
/// compacts; it is SIGKILLed at random moments (also while it opens the store, and during
/// compaction); the store is reopened and checked against every acknowledgement the child
/// made. With `--workload car` the child also imports generated CAR files (some corrupt or
/// truncated) all or nothing, and the check adds: committed imports are whole, interrupted
/// and failed ones leave nothing of their own once rolled back. Prints one summary line; a
/// failure prints the seed, the kill and the replay command.
#[derive(Debug, Parser)]
#[command(name = "ipfrs-torture", version)]
pub struct Args {
    /// Seed of the workload and the kill plan (default: random, printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Number of kills.
    #[arg(long, default_value_t = 100)]
    pub kills: u64,
    /// Durability mode under test: sync, batch or none.
    #[arg(long, default_value = "sync")]
    pub durability: Mode,
    /// What the child does: ops (puts, deletes, compactions) or car (the same with CAR
    /// imports mixed in).
    #[arg(long, default_value = "ops")]
    pub workload: Workload,
    /// Cold backend: sled, parity-db or rocksdb.
    #[arg(long, default_value = "sled")]
    pub backend: BackendKind,
    /// Campaign directory (new or empty): the store goes in DIR/store. Default: a temporary
    /// directory. The store is removed after a passing campaign unless --keep is given, and
    /// kept after a failure.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Keep the store after a passing campaign.
    #[arg(long)]
    pub keep: bool,
    /// Stored blocks the campaign keeps at most (children delete more past it; checks trim
    /// back to it), which bounds disk use and the time of each check.
    #[arg(long, default_value_t = 3000)]
    pub live_cap: usize,
    /// Internal: the process the campaign kills.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands (only the hidden child).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run as the campaign's child (started by the campaign itself).
    #[command(hide = true)]
    Child {
        /// The engine's data directory.
        #[arg(long)]
        store: PathBuf,
        /// Seed of this child's operations.
        #[arg(long)]
        child_seed: u64,
        /// The first fresh block index.
        #[arg(long)]
        next: u64,
    },
}
