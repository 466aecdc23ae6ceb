//! The command line of `ipfrs-store` (clap derive).

use std::path::PathBuf;

use clap::{Args as ClapArgs, Parser, Subcommand};
use ipfrs_storage::HashAlgorithm;
use serde::{Deserialize, Serialize};

/// ipfrs-store: administer an ipfrs block store (blocks, CAR files, statistics, verify, gc,
/// versioned model checkpoints).
///
/// The repository is `--repo DIR`, else $IPFRS_STORE_REPO, else $XDG_DATA_HOME/ipfrs-store
/// (~/.local/share/ipfrs-store). Inside: blocks/ (the engine's data directory, which also
/// holds in its metadata the pins of `pin add` and the versioning refs: branches, tags,
/// HEAD), config.toml (optional engine configuration), pins (optional, an older pins file:
/// one root CID a line, kept by `repo gc` and `version gc`), ledger (the list of blocks the
/// versioning layer stored, the only ones `version gc` may remove). A refs/ directory of an
/// earlier version is moved into the metadata by the first `version` command or `repo gc`,
/// then renamed refs.imported.
///
/// While `ipfrs-store daemon` runs on the repository (it holds the store and writes its API
/// address to <repo>/api), every command is sent to it instead and prints what it prints
/// without a daemon ($IPFRS_STORE_API_TOKEN: its bearer token, if it needs one). The daemon
/// opens the files a command names itself, relative to this process's directory (same
/// machine); stdin (block put, car import -) is uploaded to it. repo repair and repo migrate
/// need the store closed: they fail, naming the daemon, until it stops.
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
#[derive(Debug, Subcommand, Clone, Serialize, Deserialize)]
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
    /// Pins: the roots `repo gc` keeps (stored in the block store's metadata).
    #[command(subcommand)]
    Pin(PinCommand),
    /// Serve the store (foreground): Kubo's RPC API subset and a trustless gateway. Stops on
    /// SIGINT/SIGTERM. While it runs, other ipfrs-store commands are sent to it (all but
    /// repo repair and repo migrate).
    Daemon(DaemonArgs),
    /// Versioned model checkpoints (Git-for-Tensors): commit safetensors files, log,
    /// checkout, branches, tags, diff, merge, blame, gc, CAR export/import.
    #[command(subcommand)]
    Version(VersionCommand),
    /// A read-only replica of a store whose packs are on S3-compatible storage (the
    /// `[remote]` section of --config): no repository, nothing written.
    #[command(subcommand)]
    Replica(ReplicaCommand),
}

/// `replica` subcommands.
#[derive(Debug, Subcommand, Clone, Serialize, Deserialize)]
pub enum ReplicaCommand {
    /// Serve the bucket named by the `[remote]` section of --config FILE.toml over the
    /// trustless gateway (foreground, read-only: raw blocks and CARs), re-reading its
    /// manifests every --refresh-every seconds. Stops on SIGINT/SIGTERM.
    Serve(ReplicaServeArgs),
}

/// `replica serve` options.
#[derive(Debug, ClapArgs, Clone, Serialize, Deserialize)]
pub struct ReplicaServeArgs {
    /// The trustless gateway's address (port 0: any free port; the bound one is printed).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub gateway: String,
    /// Seconds between two reads of the bucket's manifests (what the primary uploaded
    /// since is served after the next one); 0: never, serve what was there at start.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub refresh_every: u64,
    /// Allow listening on a non-loopback address.
    #[arg(long)]
    pub allow_remote: bool,
    /// Connections served at once; more are answered 503.
    #[arg(long, default_value_t = 512, value_name = "N")]
    pub max_connections: usize,
    /// Seconds a client has to send a request's headers before the connection is closed.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub header_timeout: u64,
}

/// `init` options.
#[derive(Debug, ClapArgs, Clone, Serialize, Deserialize)]
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
#[derive(Debug, Subcommand, Clone, Serialize, Deserialize)]
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
        #[serde(with = "as_text")]
        mhtype: HashAlgorithm,
    },
    /// Write blocks' raw bytes to stdout, one after the other, also with --json (or one
    /// block to --output, which with --json prints the CID and size).
    Get {
        /// The blocks' CIDs.
        #[arg(required = true)]
        cids: Vec<String>,
        /// Write to this file instead of stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Print blocks' CIDs and sizes, one a line (--json: an object for one CID, an array
    /// for several). An absent block is an error.
    Stat {
        /// The blocks' CIDs.
        #[arg(required = true)]
        cids: Vec<String>,
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
#[derive(Debug, Subcommand, Clone, Serialize, Deserialize)]
pub enum CarCommand {
    /// Import CARv1/CARv2 files, each read once (a FIFO works; `-` is stdin). All or
    /// nothing: any error removes every block the command added (unless --partial), and an
    /// import killed mid-way is rolled back by the next command that opens the store.
    Import {
        /// The CAR files (`-` for stdin).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Keep the blocks read before an error, and go on with the next file.
        #[arg(long)]
        partial: bool,
        /// Pin the roots of each file recursively (`--pin-roots=false` to leave them unpinned,
        /// so `repo gc` may remove them).
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1,
              default_missing_value = "true", value_name = "BOOL")]
        pin_roots: bool,
    },
    /// Export the DAGs under ROOTs (dag-pb, dag-cbor and raw links followed) as a CAR file.
    Export {
        /// The root CIDs (listed in the file's header).
        #[arg(required = true)]
        roots: Vec<String>,
        /// The CAR file to write (replaced only once the export is complete; created with
        /// the umask's mode), or `-` for stdout (CARv1).
        #[arg(short, long)]
        output: PathBuf,
        /// Write CARv2 with a MultihashIndexSorted index (as go-car does) instead of CARv1.
        #[arg(long)]
        v2: bool,
    },
}

/// `repo` subcommands.
#[derive(Debug, Subcommand, Clone, Serialize, Deserialize)]
pub enum RepoCommand {
    /// Blocks, bytes, per-shard figures, cache hit rate, bloom filter size.
    Stat {
        /// Print the engine's metrics in the Prometheus text format instead.
        #[arg(long)]
        prometheus: bool,
    },
    /// Rehash every block; list corrupt and missing ones; exit 1 if there are any.
    Verify,
    /// Rebuild damaged cold backends from the blocks that read back exact; the damaged ones
    /// are kept aside (shard-NNN/<backend>.damaged-N). Lists what was dropped. Needs the
    /// store closed: refused while a daemon runs on the repository.
    Repair,
    /// Convert a store written by an older version to the current format, in place (each
    /// shard's cold backend is rewritten; values that do not match their CID are not copied
    /// and are listed). Run it again after an interruption to finish. Needs the store
    /// closed: refused while a daemon runs on the repository.
    Migrate,
    /// Move hot blocks not read since they were written into the cold backend now, and
    /// remove the emptied segment files (background compaction does this past the budget).
    Compact,
    /// Remove every block not reachable from the roots: pins (`pin add`, `car import`'s
    /// roots), ROOT arguments and the pins file. Every versioning ref (branch, tag, HEAD) is a
    /// root too, so a versioned model is never removed; at least one pin, ROOT or pins-file
    /// entry is required.
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

/// `daemon` options.
#[derive(Debug, ClapArgs, Clone, Serialize, Deserialize)]
pub struct DaemonArgs {
    /// The RPC API's address (port 0: any free port; the bound one is printed).
    #[arg(long, default_value = "127.0.0.1:5001", value_name = "ADDR")]
    pub api: String,
    /// The trustless gateway's address (`off`: no gateway).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub gateway: String,
    /// Allow listening on non-loopback addresses (the API then requires --api-auth).
    #[arg(long)]
    pub allow_remote: bool,
    /// Kubo's API.Authorizations (JSON): bearer tokens and the paths each may call.
    #[arg(long, value_name = "FILE")]
    pub api_auth: Option<PathBuf>,
    /// Connections served at once per listener; more are answered 503.
    #[arg(long, default_value_t = 512, value_name = "N")]
    pub max_connections: usize,
    /// Seconds a client has to send a request's headers before the connection is closed.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub header_timeout: u64,
    /// Seconds a request body may go without data before the request fails (an upload is
    /// then rolled back).
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub body_timeout: u64,
}

/// `pin` subcommands.
#[derive(Debug, Subcommand, Clone, Serialize, Deserialize)]
pub enum PinCommand {
    /// Pin blocks so `repo gc` keeps them; every block a pin keeps must be stored.
    Add {
        /// The CIDs.
        #[arg(required = true)]
        cids: Vec<String>,
        /// Keep everything the block links to as well (`--recursive=false`: the block alone).
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1,
              default_missing_value = "true", value_name = "BOOL")]
        recursive: bool,
    },
    /// Remove pins (their blocks stay until `repo gc`).
    Rm {
        /// The CIDs.
        #[arg(required = true)]
        cids: Vec<String>,
        /// Also remove recursive pins (`--recursive=false` refuses to).
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1,
              default_missing_value = "true", value_name = "BOOL")]
        recursive: bool,
    },
    /// List the pins.
    Ls,
}

/// `version` subcommands.
#[derive(Debug, Subcommand, Clone, Serialize, Deserialize)]
pub enum VersionCommand {
    /// Prepare the repository for versioning: the block store (as `init` does, if it does not
    /// exist yet; its metadata keeps the refs) and the ledger. Idempotent.
    Init {
        /// Keep in the repository's config (versioning.conf, key max_chain_depth) the most
        /// deltas a chunk may chain before a new compressed key: its decode depth at
        /// checkout (default 64; 0 stores every changed chunk whole, compressed).
        #[arg(long, value_name = "N")]
        max_chain_depth: Option<u32>,
    },
    /// Commit the tensors of a safetensors file on a branch. A branch that does not exist yet
    /// is created by its first commit, which starts at HEAD's commit (the last one made or
    /// checked out) as `git checkout -b` does, unless --orphan.
    Commit(CommitArgs),
    /// History of a revision, newest first.
    Log {
        /// Where the history starts: HEAD, a branch, a tag or a commit CID.
        #[arg(default_value = "HEAD")]
        rev: String,
        /// Show at most this many commits.
        #[arg(short = 'n', long, value_name = "N")]
        limit: Option<usize>,
    },
    /// Write a commit's tensors to a safetensors file (bit-exact) and point HEAD at it.
    Checkout {
        /// HEAD, a branch, a tag or a commit CID.
        #[arg(default_value = "HEAD")]
        rev: String,
        /// The newest commit of REV's first-parent history made at or before this time:
        /// milliseconds since the Unix epoch, or an RFC 3339 time (2026-11-24T18:00:00Z).
        #[arg(long, value_name = "TIME")]
        as_of: Option<String>,
        /// The safetensors file to write (replaced atomically).
        #[arg(short, long)]
        output: PathBuf,
        /// Flush the file to disk (fsync) before it replaces OUTPUT; off by default, as in
        /// git (a power loss soon after may leave it incomplete; a crash never leaves a
        /// half-written file under its name).
        #[arg(long)]
        fsync: bool,
        /// Also hash every rebuilt chunk (SHA-256) against the chunk CID its commit
        /// records. Off by default: the store checks every block it reads, so this only
        /// checks that each chunk's recipe rebuilds it (worth it for a history imported
        /// from elsewhere); it costs about a quarter of the checkout's CPU.
        #[arg(long)]
        verify: bool,
    },
    /// Branches: create, list, delete.
    #[command(subcommand)]
    Branch(RefCommand),
    /// Tags: create, list, delete.
    #[command(subcommand)]
    Tag(RefCommand),
    /// Per-tensor differences between two commits: added, removed, changed chunks, L2 norm
    /// and largest absolute change.
    Diff {
        /// The old revision.
        from: String,
        /// The new revision.
        #[arg(default_value = "HEAD")]
        to: String,
    },
    /// Merge a revision into a branch: fast-forward only, or with --weighted a weighted
    /// average of the two states as a two-parent commit.
    Merge {
        /// The revision to merge in.
        theirs: String,
        /// The branch that receives the merge.
        #[arg(long, default_value = "main")]
        branch: String,
        /// Their weight in [0, 1]: each float element becomes (1 - ALPHA) * ours + ALPHA *
        /// theirs. Without it, only a fast-forward is done.
        #[arg(long, value_name = "ALPHA")]
        weighted: Option<f64>,
        /// Author of a merge commit (default: $USER).
        #[arg(long)]
        author: Option<String>,
        /// Message of a merge commit.
        #[arg(short, long)]
        message: Option<String>,
    },
    /// For each tensor, the commit that last changed it, with its provenance.
    Blame {
        /// The revision.
        #[arg(default_value = "HEAD")]
        rev: String,
    },
    /// Remove the blocks this layer stored that no ref (branch, tag, HEAD), ROOT or pin
    /// (`pin add`, and the pins file, as `repo gc` keeps them) reaches. Blocks it did not
    /// store (other users' blocks) are never removed.
    Gc {
        /// Extra root CIDs to keep.
        roots: Vec<String>,
        /// Report what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Export a commit and everything it reaches (history included) as a CARv1 file.
    Export {
        /// The revision.
        #[arg(default_value = "HEAD")]
        rev: String,
        /// The CAR file to write (replaced only once complete).
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Import a CARv1 file made by `version export`, optionally setting a branch to its root.
    Import {
        /// The CAR file.
        file: PathBuf,
        /// The branch to create or move to the imported commit.
        #[arg(long)]
        branch: Option<String>,
    },
}

/// `version commit` options.
#[derive(Debug, ClapArgs, Clone, Serialize, Deserialize)]
pub struct CommitArgs {
    /// The safetensors file.
    pub file: PathBuf,
    /// Why.
    #[arg(short, long, default_value = "")]
    pub message: String,
    /// Who (default: $USER).
    #[arg(long)]
    pub author: Option<String>,
    /// The branch to commit on.
    #[arg(short, long, default_value = "main")]
    pub branch: String,
    /// Start BRANCH (which must not exist) with a commit that has no parent, instead of at
    /// HEAD's commit: every tensor is stored in full and its history is its own.
    #[arg(long)]
    pub orphan: bool,
    /// For this commit, the most deltas a chunk may chain (default: the repository's
    /// max_chain_depth).
    #[arg(long, value_name = "N")]
    pub max_chain_depth: Option<u32>,
    /// A training-data CID the weights were computed from (repeatable).
    #[arg(long, value_name = "CID")]
    pub dataset: Vec<String>,
    /// A gradient or update CID that produced the weights (repeatable).
    #[arg(long, value_name = "CID")]
    pub gradient: Vec<String>,
    /// A hyperparameter, KEY=VALUE (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    pub param: Vec<String>,
    /// Free metadata, KEY=VALUE (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    pub meta: Vec<String>,
}

/// `version branch` and `version tag` subcommands.
#[derive(Debug, Subcommand, Clone, Serialize, Deserialize)]
pub enum RefCommand {
    /// Create one at a revision.
    Create {
        /// Its name.
        name: String,
        /// Where it points.
        #[arg(long, default_value = "HEAD")]
        at: String,
    },
    /// List them; `*` marks the one at HEAD's commit.
    List,
    /// Delete one (the commits stay until gc).
    Delete {
        /// Its name.
        name: String,
    },
}

/// A value as its text (`Display` and `FromStr`), for types of lower crates that have no serde
/// form: commands travel to a daemon as JSON.
mod as_text {
    use std::fmt::Display;
    use std::str::FromStr;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<T: Display, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(value)
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}
