//! `version`: versioned model checkpoints (Git-for-Tensors, crate ipfrs-versioning) over the
//! repository's engine.
//!
//! The versioning layer keeps its refs in the engine's metadata (`versioning/refs/<name>`, see
//! [`MetadataRefStore`]; a `<repo>/refs` directory of an earlier version is imported once) and
//! its ledger (the blocks it stored, the only ones its gc may remove) in `<repo>/ledger`, next
//! to the engine's `<repo>/blocks`, which holds its objects and chunks like any other blocks. It runs over the engine `run`
//! opened with the repository's configuration, so one process holds the store and its lock.
//! Every subcommand prints the layer's own text for people, or JSON with CIDs as strings.
//!
//! `repo gc` keeps what the refs reach ([`ref_roots`]): it walks from them with the layer's
//! own walker, which knows that a delta names reconstructed chunks it does not store.

mod json;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use futures_lite::future::block_on;
use ipfrs_storage::key::Key;
use ipfrs_storage::{Cid, Engine};
use ipfrs_versioning::cli::VersionCli;
use ipfrs_versioning::{
    CheckoutOptions, CommitSummary, MemLedger, MetadataRefStore, RefStore, RepoConfig, config_file,
};
use serde::Serialize;

use json::{CarJson, CheckoutJson, RefChangeJson};

use super::caller::Caller;
use super::cli::{CommitArgs, RefCommand, VersionCommand};
use super::error::{self, Error, Result};
use super::output::Report;
use super::repo::Repo;
use crate::daemon::Node;

/// The ledger's file name in a repository.
const LEDGER: &str = "ledger";

/// The ledger file of a repository.
pub fn ledger_file(repo: &Repo) -> PathBuf {
    repo.root().join(LEDGER)
}

/// Opens the versioning layer of `repo` over `engine` (creating its ledger if it does not
/// exist; the refs are in the engine's metadata).
pub fn open(repo: &Repo, engine: &Engine) -> Result<VersionCli<Engine>> {
    let config = config_file::load_config(repo.root())?;
    Ok(VersionCli::open(repo.root(), engine.clone(), config)?)
}

/// A result: JSON from `data`, and the versioning layer's own text for people.
#[derive(Debug, Serialize)]
pub struct Shown<T> {
    #[serde(flatten)]
    data: T,
    #[serde(skip)]
    text: String,
}

impl<T: Serialize> Report for Shown<T> {
    fn human(&self) -> String {
        self.text.clone()
    }
}

/// A result printed as its `Display` text for people and as itself in JSON.
fn displayed<T: std::fmt::Display>(data: T) -> Shown<T> {
    let text = data.to_string();
    shown(data, text)
}

fn shown<T>(data: T, text: impl Into<String>) -> Shown<T> {
    let mut text = text.into();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    Shown { data, text }
}

/// Runs one `version` subcommand for `caller` and prints its result there. `created_store`
/// says whether `version init` has just created the block store.
///
/// The same code runs in the process that parsed the command and in a daemon handed it: the
/// refs move by compare-and-swap in the engine's metadata and the ledger's lock is a `flock`,
/// both of which hold between requests of one daemon as between processes; commands that store
/// blocks also hold the writers' side of the node's gc lock (and `version gc` its exclusive
/// side), so a `repo gc` running meanwhile in the daemon cannot sweep the blocks of a commit
/// whose branch has not moved yet.
pub fn run(
    node: &Node,
    command: VersionCommand,
    json: bool,
    created_store: bool,
    caller: &mut Caller,
) -> Result<()> {
    let (engine, repo) = (node.engine(), node.repo());
    let mut vcs = open(repo, engine)?;
    match command {
        VersionCommand::Init { max_chain_depth } => {
            if let Some(n) = max_chain_depth {
                vcs.config_mut().max_chain_depth = n;
                config_file::save_config(repo.root(), vcs.repo().config())?;
            }
            let done = init(&caller.repo_root(repo), &vcs, created_store)?;
            caller.print(&done, json)
        }
        VersionCommand::Commit(args) => {
            if let Some(n) = args.max_chain_depth {
                vcs.config_mut().max_chain_depth = n;
            }
            let _write = node.gc_lock().blocking_write();
            let done = commit(&vcs, &args, caller)?;
            caller.print(&done, json)
        }
        VersionCommand::Log { rev, limit } => {
            let log = vcs.log(&rev, limit)?;
            caller.print(&displayed(log), json)
        }
        VersionCommand::Checkout {
            rev,
            as_of,
            output,
            fsync,
            verify,
        } => {
            let rev = match as_of {
                Some(time) => format!("{rev}@{}", parse_time(&time)?),
                None => rev,
            };
            let (path, options) = (caller.path(&output), CheckoutOptions { fsync });
            let done = if verify {
                vcs.checkout_verified(&rev, &path, options)?
            } else {
                vcs.checkout_with(&rev, &path, options)?
            };
            caller.adopt_new_file(&output)?;
            let data = CheckoutJson {
                commit: done.commit.to_string(),
                tensors: done.tensors,
                bytes: done.bytes,
                output: output.clone(),
            };
            let text = format!("{done} to {}", output.display());
            caller.print(&shown(data, text), json)
        }
        VersionCommand::Branch(cmd) => refs(&vcs, RefKind::Branch, cmd, json, caller),
        VersionCommand::Tag(cmd) => refs(&vcs, RefKind::Tag, cmd, json, caller),
        VersionCommand::Diff { from, to } => {
            let diff = vcs.diff(&from, &to)?;
            caller.print(&displayed(diff), json)
        }
        VersionCommand::Merge {
            theirs,
            branch,
            weighted,
            author,
            message,
        } => {
            let message = message.unwrap_or_else(|| format!("merge {theirs} into {branch}"));
            let _write = node.gc_lock().blocking_write();
            let outcome = vcs.merge(
                &branch,
                &theirs,
                weighted,
                &author.unwrap_or_else(|| caller.user()),
                &message,
            )?;
            caller.print(&displayed(outcome), json)
        }
        VersionCommand::Blame { rev } => {
            let blame = vcs.blame(&rev)?;
            caller.print(&displayed(blame), json)
        }
        VersionCommand::Gc { roots, dry_run } => {
            for root in &roots {
                error::parse_cid(root)?;
            }
            // No write of the daemon (a put, an import, a pin) runs while the sweep decides.
            let _exclusive = node.gc_lock().blocking_gc();
            // The store's pins keep blocks too (one may be byte-identical to a chunk this
            // layer stored, so in its ledger): the same pins `repo gc` keeps.
            let pinned = crate::daemon::gc::pinned_keys(repo, engine)?;
            let report = vcs.gc_keeping(&roots, &pinned, dry_run)?;
            caller.print(&displayed(report), json)
        }
        VersionCommand::Export { rev, output } => {
            let summary = vcs.export(&rev, &caller.path(&output))?;
            caller.adopt_new_file(&output)?;
            let text = format!("exported {summary} to {}", output.display());
            caller.print(&shown(CarJson::new(&summary, &output, None), text), json)
        }
        VersionCommand::Import { file, branch } => {
            let _write = node.gc_lock().blocking_write();
            let summary = vcs.import(&caller.path(&file), branch.as_deref())?;
            let mut text = format!("imported {summary} from {}", file.display());
            if let Some(b) = &branch {
                text.push_str(&format!("; branch {b} -> {}", summary.root));
            }
            caller.print(
                &shown(CarJson::new(&summary, &file, branch.clone()), text),
                json,
            )
        }
    }
}

/// `version init`'s result.
#[derive(Debug, Serialize)]
pub struct Initialized {
    /// The repository.
    pub repo: PathBuf,
    /// Whether the block store was created by this command (else it existed).
    pub created_store: bool,
    /// The ledger file.
    pub ledger: PathBuf,
    /// Branches that already exist.
    pub branches: usize,
}

impl Report for Initialized {
    fn human(&self) -> String {
        format!(
            "versioning ready in {} ({}; {} branches)\n",
            self.repo.display(),
            if self.created_store {
                "block store created"
            } else {
                "existing block store"
            },
            self.branches
        )
    }
}

/// `root`: the repository as the caller named it.
fn init(root: &Path, vcs: &VersionCli<Engine>, created_store: bool) -> Result<Initialized> {
    Ok(Initialized {
        repo: root.to_path_buf(),
        created_store,
        ledger: root.join(LEDGER),
        branches: vcs.branch_list()?.refs.len(),
    })
}

/// The versioning layer's provenance arguments from the flags of `version commit`.
fn provenance_args(args: &CommitArgs) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for (key, cids) in [("dataset", &args.dataset), ("gradient", &args.gradient)] {
        for text in cids {
            // Checked here so a bad one is reported as a CID, with the usage exit code.
            let cid = error::parse_cid(text)?;
            out.push(format!("{key}={cid}"));
        }
    }
    for (flag, prefix, pairs) in [
        ("--param", "hparam.", &args.param),
        ("--meta", "meta.", &args.meta),
    ] {
        for pair in pairs {
            let (key, value) = pair
                .split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| Error::Usage(format!("{flag} {pair:?}: expected KEY=VALUE")))?;
            out.push(format!("{prefix}{key}={value}"));
        }
    }
    Ok(out)
}

fn commit(
    vcs: &VersionCli<Engine>,
    args: &CommitArgs,
    caller: &Caller,
) -> Result<Shown<CommitSummary>> {
    let provenance = provenance_args(args)?;
    let author = args.author.clone().unwrap_or_else(|| caller.user());
    let commit = if args.orphan {
        VersionCli::commit_orphan
    } else {
        VersionCli::commit
    };
    let summary = commit(
        vcs,
        &caller.path(&args.file),
        &args.branch,
        &author,
        &args.message,
        &provenance,
    )?;
    Ok(displayed(summary))
}

/// Parses --as-of: milliseconds since the Unix epoch, or an RFC 3339 time.
pub fn parse_time(text: &str) -> Result<u64> {
    let text = text.trim();
    if let Ok(ms) = text.parse::<u64>() {
        return Ok(ms);
    }
    let bad = || {
        Error::Usage(format!(
            "--as-of {text:?}: expected milliseconds since the Unix epoch or an RFC 3339 time \
             (2026-11-24T18:00:00Z)"
        ))
    };
    let time = humantime::parse_rfc3339_weak(text).map_err(|_| bad())?;
    let since = time.duration_since(UNIX_EPOCH).map_err(|_| bad())?;
    u64::try_from(since.as_millis()).map_err(|_| bad())
}

/// Branches or tags.
#[derive(Debug, Clone, Copy)]
enum RefKind {
    Branch,
    Tag,
}

impl RefKind {
    fn name(self) -> &'static str {
        match self {
            RefKind::Branch => "branch",
            RefKind::Tag => "tag",
        }
    }
}

fn refs(
    vcs: &VersionCli<Engine>,
    kind: RefKind,
    command: RefCommand,
    json: bool,
    caller: &mut Caller,
) -> Result<()> {
    let changed = |action: &'static str, name: String, commit: Cid| {
        let text = match action {
            "created" => format!("created {} {name} at {commit}", kind.name()),
            _ => format!("deleted {} {name} (was {commit})", kind.name()),
        };
        let data = RefChangeJson {
            action,
            kind: kind.name(),
            name,
            commit: commit.to_string(),
        };
        shown(data, text)
    };
    match command {
        RefCommand::Create { name, at } => {
            let commit = match kind {
                RefKind::Branch => vcs.branch_create(&name, &at)?,
                RefKind::Tag => vcs.tag_create(&name, &at)?,
            };
            caller.print(&changed("created", name, commit), json)
        }
        RefCommand::Delete { name } => {
            let commit = match kind {
                RefKind::Branch => vcs.branch_delete(&name)?,
                RefKind::Tag => vcs.tag_delete(&name)?,
            };
            caller.print(&changed("deleted", name, commit), json)
        }
        RefCommand::List => {
            let list = match kind {
                RefKind::Branch => vcs.branch_list()?,
                RefKind::Tag => vcs.tag_list()?,
            };
            let text = if list.refs.is_empty() {
                format!("no {}s", kind.name())
            } else {
                list.to_string()
            };
            caller.print(&shown(list, text), json)
        }
    }
}

/// What the versioning refs of a repository keep: their names and the storage keys of
/// every block they reach.
#[derive(Debug, Default)]
pub struct RefRoots {
    /// Every ref (`heads/<branch>`, `tags/<tag>`, `HEAD`) with its commit.
    pub refs: Vec<(String, Cid)>,
    /// The storage keys (multihashes) of every block the refs reach.
    pub keys: HashSet<Key>,
}

/// The blocks the versioning refs in `engine`'s metadata reach, for `repo gc`. A ref whose objects are missing is an
/// error (nothing can be said about what it reaches), so gc stops before removing anything.
pub fn ref_roots(repo: &Repo, engine: &Engine) -> Result<RefRoots> {
    let refs = MetadataRefStore::new(engine.clone());
    // Ref files of an earlier layout are roots too: import them before anything is swept.
    ipfrs_versioning::cli::import_ref_files(repo.root(), &refs)?;
    let listed = refs.list("")?;
    if listed.is_empty() {
        return Ok(RefRoots::default());
    }
    let roots: Vec<Cid> = listed.iter().map(|(_, c)| *c).collect();
    // Only the walk is used: the ledger is irrelevant to it.
    let vcs = ipfrs_versioning::Repo::new(
        engine.clone(),
        refs,
        MemLedger::new(),
        RepoConfig::default(),
    );
    let keys = block_on(vcs.reachable(&roots))?.keys();
    Ok(RefRoots { refs: listed, keys })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn args(dataset: &[&str], param: &[&str], meta: &[&str]) -> CommitArgs {
        let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        CommitArgs {
            file: PathBuf::from("m.safetensors"),
            message: String::new(),
            author: None,
            branch: "main".into(),
            orphan: false,
            max_chain_depth: None,
            dataset: own(dataset),
            gradient: Vec::new(),
            param: own(param),
            meta: own(meta),
        }
    }

    #[test]
    fn provenance_flags_become_the_layers_arguments() {
        let cid = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku";
        let got = provenance_args(&args(&[cid], &["lr=3e-4", "opt=adam=w"], &["run=7"])).unwrap();
        assert_eq!(
            got,
            [
                format!("dataset={cid}"),
                "hparam.lr=3e-4".into(),
                "hparam.opt=adam=w".into(),
                "meta.run=7".into()
            ]
        );
        let parsed = ipfrs_versioning::cli::parse_provenance(&got).unwrap();
        assert_eq!(parsed.hyperparameters["opt"], "adam=w");
        for bad in [
            args(&["not-a-cid"], &[], &[]),
            args(&[], &["lr"], &[]),
            args(&[], &[], &["=v"]),
        ] {
            let err = provenance_args(&bad).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{err}");
        }
    }

    #[test]
    fn as_of_takes_milliseconds_or_rfc3339() {
        assert_eq!(parse_time("1700000000000").unwrap(), 1_700_000_000_000);
        assert_eq!(parse_time("1970-01-01T00:00:01Z").unwrap(), 1000);
        assert_eq!(
            parse_time("2023-11-14T22:13:20Z").unwrap(),
            1_700_000_000_000
        );
        assert!(matches!(parse_time("yesterday"), Err(Error::Usage(_))));
        assert!(matches!(parse_time("-5"), Err(Error::Usage(_))));
    }
}
