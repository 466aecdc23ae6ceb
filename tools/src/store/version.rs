//! `version`: versioned model checkpoints (Git-for-Tensors, crate ipfrs-versioning) over the
//! repository's engine.
//!
//! The versioning layer keeps its refs in `<repo>/refs` and its ledger (the blocks it stored,
//! the only ones its gc may remove) in `<repo>/ledger`, next to the engine's `<repo>/blocks`,
//! which holds its objects and chunks like any other blocks. It runs over the engine `run`
//! opened with the repository's configuration, so one process holds the store and its lock.
//! Every subcommand prints the layer's own text for people, or JSON with CIDs as strings.
//!
//! `repo gc` keeps what the refs reach ([`ref_roots`]): it walks from them with the layer's
//! own walker, which knows that a delta names reconstructed chunks it does not store.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use futures_lite::future::block_on;
use ipfrs_storage::key::Key;
use ipfrs_storage::{Cid, Engine};
use ipfrs_versioning::car::CarSummary;
use ipfrs_versioning::cli::VersionCli;
use ipfrs_versioning::{
    Blame, Change, Commit, CommitSummary, Diff, FileRefStore, GcReport, Log, MemLedger,
    MergeOutcome, Provenance, RefList, RefStore, RepoConfig,
};
use serde::Serialize;

use super::cli::{CommitArgs, RefCommand, VersionCommand};
use super::error::{self, Error, Result};
use super::output::{Report, print};
use super::repo::Repo;

/// The ref directory of a repository.
pub fn refs_dir(repo: &Repo) -> PathBuf {
    repo.root().join("refs")
}

/// The ledger file of a repository.
pub fn ledger_file(repo: &Repo) -> PathBuf {
    repo.root().join("ledger")
}

/// Opens the versioning layer of `repo` over `engine` (creating its ref directory and ledger
/// if they do not exist).
pub fn open(repo: &Repo, engine: &Engine) -> Result<VersionCli<Engine>> {
    Ok(VersionCli::open(
        repo.root(),
        engine.clone(),
        RepoConfig::default(),
    )?)
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

fn shown<T>(data: T, text: impl Into<String>) -> Shown<T> {
    let mut text = text.into();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    Shown { data, text }
}

fn strings(cids: &[Cid]) -> Vec<String> {
    cids.iter().map(ToString::to_string).collect()
}

/// Runs one `version` subcommand and prints its result. `created_store` says whether
/// `version init` has just created the block store.
pub fn run(
    engine: &Engine,
    repo: &Repo,
    command: VersionCommand,
    json: bool,
    created_store: bool,
) -> Result<()> {
    let vcs = open(repo, engine)?;
    match command {
        VersionCommand::Init => print(&init(repo, &vcs, created_store)?, json),
        VersionCommand::Commit(args) => print(&commit(&vcs, &args)?, json),
        VersionCommand::Log { rev, limit } => {
            let log = vcs.log(&rev, limit)?;
            print(&shown(LogJson::new(&log), log.to_string()), json)
        }
        VersionCommand::Checkout { rev, as_of, output } => {
            let rev = match as_of {
                Some(time) => format!("{rev}@{}", parse_time(&time)?),
                None => rev,
            };
            let done = vcs.checkout(&rev, &output)?;
            let data = CheckoutJson {
                commit: done.commit.to_string(),
                tensors: done.tensors,
                bytes: done.bytes,
                output: output.clone(),
            };
            let text = format!("{done} to {}", output.display());
            print(&shown(data, text), json)
        }
        VersionCommand::Branch(cmd) => refs(&vcs, RefKind::Branch, cmd, json),
        VersionCommand::Tag(cmd) => refs(&vcs, RefKind::Tag, cmd, json),
        VersionCommand::Diff { from, to } => {
            let diff = vcs.diff(&from, &to)?;
            print(&shown(DiffJson::new(&diff), diff.to_string()), json)
        }
        VersionCommand::Merge {
            theirs,
            branch,
            weighted,
            author,
            message,
        } => {
            let message = message.unwrap_or_else(|| format!("merge {theirs} into {branch}"));
            let outcome = vcs.merge(
                &branch,
                &theirs,
                weighted,
                &author.unwrap_or_else(default_author),
                &message,
            )?;
            print(&shown(MergeJson::new(&outcome), outcome.to_string()), json)
        }
        VersionCommand::Blame { rev } => {
            let blame = vcs.blame(&rev)?;
            print(&shown(BlameJson::new(&blame), blame.to_string()), json)
        }
        VersionCommand::Gc { roots, dry_run } => {
            for root in &roots {
                error::parse_cid(root)?;
            }
            let report = vcs.gc(&roots, dry_run)?;
            print(&shown(GcJson::new(&report), report.to_string()), json)
        }
        VersionCommand::Export { rev, output } => {
            let summary = vcs.export(&rev, &output)?;
            let text = format!("exported {summary} to {}", output.display());
            print(&shown(CarJson::new(&summary, &output, None), text), json)
        }
        VersionCommand::Import { file, branch } => {
            let summary = vcs.import(&file, branch.as_deref())?;
            let mut text = format!("imported {summary} from {}", file.display());
            if let Some(b) = &branch {
                text.push_str(&format!("; branch {b} -> {}", summary.root));
            }
            print(
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
    /// The ref directory.
    pub refs: PathBuf,
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

fn init(repo: &Repo, vcs: &VersionCli<Engine>, created_store: bool) -> Result<Initialized> {
    Ok(Initialized {
        repo: repo.root().to_path_buf(),
        created_store,
        refs: refs_dir(repo),
        ledger: ledger_file(repo),
        branches: vcs.branch_list()?.refs.len(),
    })
}

/// $USER, else "unknown": who a commit is by when --author is not given.
fn default_author() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "unknown".into())
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

fn commit(vcs: &VersionCli<Engine>, args: &CommitArgs) -> Result<Shown<CommitJson>> {
    let provenance = provenance_args(args)?;
    let author = args.author.clone().unwrap_or_else(default_author);
    let summary = vcs.commit(
        &args.file,
        &args.branch,
        &author,
        &args.message,
        &provenance,
    )?;
    Ok(shown(CommitJson::new(&summary), summary.to_string()))
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

fn refs(vcs: &VersionCli<Engine>, kind: RefKind, command: RefCommand, json: bool) -> Result<()> {
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
            print(&changed("created", name, commit), json)
        }
        RefCommand::Delete { name } => {
            let commit = match kind {
                RefKind::Branch => vcs.branch_delete(&name)?,
                RefKind::Tag => vcs.tag_delete(&name)?,
            };
            print(&changed("deleted", name, commit), json)
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
            print(&shown(RefsJson::new(&list), text), json)
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

/// The blocks the versioning refs of `repo` reach, for `repo gc`. Nothing is created: a
/// repository without a ref directory has no refs. A ref whose objects are missing is an
/// error (nothing can be said about what it reaches), so gc stops before removing anything.
pub fn ref_roots(repo: &Repo, engine: &Engine) -> Result<RefRoots> {
    let dir = refs_dir(repo);
    if !dir.is_dir() {
        return Ok(RefRoots::default());
    }
    let refs = FileRefStore::open(&dir)?;
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

// The JSON forms. The versioning types hold `Cid`s, whose serde form is an IPLD link, not
// text, so each is mirrored here with CIDs as strings.

/// A commit summary.
#[derive(Debug, Serialize)]
pub struct CommitJson {
    commit: String,
    branch: String,
    parents: Vec<String>,
    full: usize,
    deltas: usize,
    unchanged: usize,
    new_blocks: usize,
    new_bytes: u64,
}

impl CommitJson {
    fn new(s: &CommitSummary) -> CommitJson {
        CommitJson {
            commit: s.commit.to_string(),
            branch: s.branch.clone(),
            parents: strings(&s.parents),
            full: s.full,
            deltas: s.deltas,
            unchanged: s.unchanged,
            new_blocks: s.new_blocks,
            new_bytes: s.new_bytes,
        }
    }
}

/// Provenance.
#[derive(Debug, Serialize)]
pub struct ProvenanceJson {
    datasets: Vec<String>,
    hyperparameters: BTreeMap<String, String>,
    gradients: Vec<String>,
    metadata: BTreeMap<String, String>,
}

impl ProvenanceJson {
    fn new(p: &Provenance) -> ProvenanceJson {
        ProvenanceJson {
            datasets: strings(&p.datasets),
            hyperparameters: p.hyperparameters.clone(),
            gradients: strings(&p.gradients),
            metadata: p.metadata.clone(),
        }
    }
}

/// A commit object.
#[derive(Debug, Serialize)]
pub struct CommitObjectJson {
    cid: String,
    state: String,
    parents: Vec<String>,
    author: String,
    message: String,
    timestamp_ms: u64,
    provenance: ProvenanceJson,
}

impl CommitObjectJson {
    fn new(cid: &Cid, c: &Commit) -> CommitObjectJson {
        CommitObjectJson {
            cid: cid.to_string(),
            state: c.state.to_string(),
            parents: strings(&c.parents),
            author: c.author.clone(),
            message: c.message.clone(),
            timestamp_ms: c.timestamp_ms,
            provenance: ProvenanceJson::new(&c.provenance),
        }
    }
}

/// A log.
#[derive(Debug, Serialize)]
pub struct LogJson {
    commits: Vec<CommitObjectJson>,
}

impl LogJson {
    fn new(log: &Log) -> LogJson {
        LogJson {
            commits: log
                .entries
                .iter()
                .map(|e| CommitObjectJson::new(&e.cid, &e.commit))
                .collect(),
        }
    }
}

/// A checkout.
#[derive(Debug, Serialize)]
pub struct CheckoutJson {
    commit: String,
    tensors: usize,
    bytes: u64,
    output: PathBuf,
}

/// One branch or tag.
#[derive(Debug, Serialize)]
pub struct RefJson {
    name: String,
    commit: String,
    at_head: bool,
}

/// A listing of branches or tags.
#[derive(Debug, Serialize)]
pub struct RefsJson {
    refs: Vec<RefJson>,
    head: Option<String>,
}

impl RefsJson {
    fn new(list: &RefList) -> RefsJson {
        RefsJson {
            refs: list
                .refs
                .iter()
                .map(|(name, cid)| RefJson {
                    name: name.clone(),
                    commit: cid.to_string(),
                    at_head: Some(*cid) == list.head,
                })
                .collect(),
            head: list.head.map(|c| c.to_string()),
        }
    }
}

/// A branch or tag created or deleted.
#[derive(Debug, Serialize)]
pub struct RefChangeJson {
    action: &'static str,
    kind: &'static str,
    name: String,
    commit: String,
}

/// How one tensor differs.
#[derive(Debug, Serialize)]
#[serde(tag = "change", rename_all = "lowercase")]
pub enum ChangeJson {
    /// Only in the new commit.
    Added {
        /// Element type.
        dtype: String,
        /// Shape.
        shape: Vec<u64>,
    },
    /// Only in the old commit.
    Removed,
    /// Same layout, different data.
    Changed {
        /// Indices of the chunks that differ.
        chunks: Vec<usize>,
        /// Chunks in the tensor.
        total_chunks: usize,
        /// L2 norm of the change.
        l2: f64,
        /// Largest absolute change.
        max_abs: f64,
    },
    /// Different dtype, shape or chunking.
    Relaid {
        /// Old dtype.
        from_dtype: String,
        /// Old shape.
        from_shape: Vec<u64>,
        /// New dtype.
        to_dtype: String,
        /// New shape.
        to_shape: Vec<u64>,
    },
}

/// One tensor of a diff.
#[derive(Debug, Serialize)]
pub struct TensorDiffJson {
    name: String,
    #[serde(flatten)]
    change: ChangeJson,
}

/// A diff.
#[derive(Debug, Serialize)]
pub struct DiffJson {
    from: String,
    to: String,
    tensors: Vec<TensorDiffJson>,
}

impl DiffJson {
    fn new(d: &Diff) -> DiffJson {
        let tensors = d
            .tensors
            .iter()
            .map(|t| TensorDiffJson {
                name: t.name.clone(),
                change: match &t.change {
                    Change::Added { dtype, shape } => ChangeJson::Added {
                        dtype: dtype.to_string(),
                        shape: shape.clone(),
                    },
                    Change::Removed => ChangeJson::Removed,
                    Change::Changed {
                        chunks,
                        total_chunks,
                        l2,
                        max_abs,
                    } => ChangeJson::Changed {
                        chunks: chunks.clone(),
                        total_chunks: *total_chunks,
                        l2: *l2,
                        max_abs: *max_abs,
                    },
                    Change::Relaid { from, to } => ChangeJson::Relaid {
                        from_dtype: from.0.to_string(),
                        from_shape: from.1.clone(),
                        to_dtype: to.0.to_string(),
                        to_shape: to.1.clone(),
                    },
                },
            })
            .collect();
        DiffJson {
            from: d.from.to_string(),
            to: d.to.to_string(),
            tensors,
        }
    }
}

/// What a merge did.
#[derive(Debug, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum MergeJson {
    /// Their commit was already in the branch's history.
    UpToDate {
        /// The branch's tip.
        commit: String,
    },
    /// The branch moved forward.
    FastForward {
        /// Old tip.
        from: String,
        /// New tip.
        to: String,
    },
    /// A weighted-average merge commit was made.
    Merged {
        /// The merge commit.
        commit: CommitJson,
    },
}

impl MergeJson {
    fn new(outcome: &MergeOutcome) -> MergeJson {
        match outcome {
            MergeOutcome::UpToDate(c) => MergeJson::UpToDate {
                commit: c.to_string(),
            },
            MergeOutcome::FastForward { from, to } => MergeJson::FastForward {
                from: from.to_string(),
                to: to.to_string(),
            },
            MergeOutcome::Merged(s) => MergeJson::Merged {
                commit: CommitJson::new(s),
            },
        }
    }
}

/// One tensor's blame.
#[derive(Debug, Serialize)]
pub struct BlameEntryJson {
    tensor: String,
    commit: CommitObjectJson,
}

/// A blame.
#[derive(Debug, Serialize)]
pub struct BlameJson {
    tensors: Vec<BlameEntryJson>,
}

impl BlameJson {
    fn new(b: &Blame) -> BlameJson {
        BlameJson {
            tensors: b
                .entries
                .iter()
                .map(|e| BlameEntryJson {
                    tensor: e.tensor.clone(),
                    commit: CommitObjectJson::new(&e.commit, &e.info),
                })
                .collect(),
        }
    }
}

/// What `version gc` did.
#[derive(Debug, Serialize)]
pub struct GcJson {
    refs: usize,
    reachable: usize,
    candidates: usize,
    swept: Vec<String>,
    freed_bytes: u64,
    dry_run: bool,
}

impl GcJson {
    fn new(r: &GcReport) -> GcJson {
        GcJson {
            refs: r.refs,
            reachable: r.reachable,
            candidates: r.candidates,
            swept: strings(&r.swept),
            freed_bytes: r.freed_bytes,
            dry_run: r.dry_run,
        }
    }
}

/// A CAR export or import.
#[derive(Debug, Serialize)]
pub struct CarJson {
    root: String,
    blocks: usize,
    bytes: u64,
    file: PathBuf,
    branch: Option<String>,
}

impl CarJson {
    fn new(s: &CarSummary, file: &Path, branch: Option<String>) -> CarJson {
        CarJson {
            root: s.root.to_string(),
            blocks: s.blocks,
            bytes: s.bytes,
            file: file.to_path_buf(),
            branch,
        }
    }
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
