//! The command line of `ipfrs-store` (clap derive).

use std::path::PathBuf;

use clap::{Args as ClapArgs, Parser, Subcommand};
use ipfrs_storage::HashAlgorithm;

/// ipfrs-store: administer an ipfrs block store (blocks, CAR files, statistics, verify, gc).
///
/// The repository is `--repo DIR`, else $IPFRS_STORE_REPO, else $XDG_DATA_HOME/ipfrs-store
/// (~/.local/share/ipfrs-store). Inside: blocks/ (the engine's data directory), config.toml
/// (optional engine configuration), pins (optional, one root CID a line, for `repo gc`).
#[derive(Debug, Parser)]
#[command(name = "ipfrs-store", version)]
pub struct Args {
    /// The repository directory.
    #[arg(long, global = true, value_name = "DIR")]
    pub repo: Option<PathBuf>,
    /// Engine configuration (TOML); default: <repo>/config.toml when it exists.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print results as JSON (for scripts) instead of text for people.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the repository and its block store.
    Init(InitArgs),
    /// Single blocks: put, get, stat, rm, ls.
    #[command(subcommand)]
    Block(BlockCommand),
    /// CAR files: import and export.
    #[command(subcommand)]
    Car(CarCommand),
    /// The whole store: stat, verify, gc.
    #[command(subcommand)]
    Repo(RepoCommand),
}

/// `init` options.
#[derive(Debug, ClapArgs)]
pub struct InitArgs {
    /// Cold backend: sled, parity-db or rocksdb. Written to <repo>/config.toml when no
    /// configuration file is in force (later commands must open the same backend); must
    /// agree with the file when one is.
    #[arg(long)]
    pub backend: Option<String>,
    /// Number of shards, fixed for the store's life (overrides the config file; default: one
    /// per core).
    #[arg(long)]
    pub shards: Option<usize>,
}

/// `block` subcommands.
#[derive(Debug, Subcommand)]
pub enum BlockCommand {
    /// Store a block read from FILE (or stdin when FILE is absent or `-`); prints its CID.
    Put {
        /// The file holding the block's bytes.
        file: Option<PathBuf>,
        /// The CID's codec: raw, dag-pb, dag-cbor, dag-json, json, or a number (0x55).
        /// dag-pb and dag-cbor data must decode as such.
        #[arg(long, default_value = "raw")]
        cid_codec: String,
        /// The multihash: sha2-256, sha2-512, sha3-224, sha3-256, sha3-384, sha3-512,
        /// blake3, blake2b-256, identity.
        #[arg(long, default_value = "sha2-256")]
        mhtype: HashAlgorithm,
    },
    /// Write a block's raw bytes to stdout, also with --json (or to --output, which with
    /// --json prints the CID and size).
    Get {
        /// The block's CID.
        cid: String,
        /// Write to this file instead of stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Print a block's CID and size.
    Stat {
        /// The block's CID.
        cid: String,
    },
    /// Remove blocks. Absent blocks are an error (nothing is removed) unless --force.
    Rm {
        /// The blocks' CIDs.
        #[arg(required = true)]
        cids: Vec<String>,
        /// Ignore absent blocks.
        #[arg(long)]
        force: bool,
    },
    /// List every stored block (as CIDv1 raw: blocks are stored by multihash).
    Ls,
}

/// `car` subcommands.
#[derive(Debug, Subcommand)]
pub enum CarCommand {
    /// Import CARv1/CARv2 files. Every file is read and verified in full before anything is
    /// stored, so a bad file imports nothing (unless --partial).
    Import {
        /// The CAR files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Keep the blocks read before an error (one pass per file), and go on with the
        /// next file.
        #[arg(long)]
        partial: bool,
    },
    /// Export the DAGs under ROOTs (dag-pb, dag-cbor and raw links followed) as a CAR file.
    Export {
        /// The root CIDs (listed in the file's header).
        #[arg(required = true)]
        roots: Vec<String>,
        /// The CAR file to write (replaced only once the export is complete).
        #[arg(short, long)]
        output: PathBuf,
        /// Write CARv2 with a MultihashIndexSorted index (as go-car does) instead of CARv1.
        #[arg(long)]
        v2: bool,
    },
}

/// `repo` subcommands.
#[derive(Debug, Subcommand)]
pub enum RepoCommand {
    /// Blocks, bytes, per-shard figures, cache hit rate, bloom filter size.
    Stat {
        /// Print the engine's metrics in the Prometheus text format instead.
        #[arg(long)]
        prometheus: bool,
    },
    /// Rehash every block; list corrupt and missing ones; exit 1 if there are any.
    Verify,
    /// Move hot blocks not read since they were written into the cold backend now, and
    /// remove the emptied segment files (background compaction does this past the budget).
    Compact,
    /// Remove every block not reachable from the roots (ROOT arguments, and the pins file).
    /// Versioning refs are not roots yet: pin them.
    Gc {
        /// Root CIDs to keep (with everything they link to).
        roots: Vec<String>,
        /// A pins file (one CID a line, `#` comments); default: <repo>/pins if it exists.
        #[arg(long, value_name = "FILE")]
        pins: Option<PathBuf>,
        /// Report what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
}
