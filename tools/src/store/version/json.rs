//! The JSON forms of the `version` results. The versioning types hold `Cid`s, whose serde
//! form is an IPLD link (bytes), not text, so each result is mirrored here with CIDs as
//! strings; the text for people is the versioning layer's own `Display`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ipfrs_storage::Cid;
use ipfrs_versioning::car::CarSummary;
use ipfrs_versioning::ops::log::format_timestamp;
use ipfrs_versioning::{
    Blame, Change, Commit, CommitSummary, Diff, GcReport, Log, MergeOutcome, Provenance, RefList,
};
use serde::Serialize;

fn strings(cids: &[Cid]) -> Vec<String> {
    cids.iter().map(ToString::to_string).collect()
}

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
    pub(super) fn new(s: &CommitSummary) -> CommitJson {
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
    pub(super) fn new(p: &Provenance) -> ProvenanceJson {
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
    /// `timestamp_ms` as RFC 3339 in UTC, to the second, as the text output shows it.
    time: String,
    provenance: ProvenanceJson,
}

impl CommitObjectJson {
    pub(super) fn new(cid: &Cid, c: &Commit) -> CommitObjectJson {
        CommitObjectJson {
            cid: cid.to_string(),
            state: c.state.to_string(),
            parents: strings(&c.parents),
            author: c.author.clone(),
            message: c.message.clone(),
            timestamp_ms: c.timestamp_ms,
            time: format_timestamp(c.timestamp_ms),
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
    pub(super) fn new(log: &Log) -> LogJson {
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
    pub(super) commit: String,
    pub(super) tensors: usize,
    pub(super) bytes: u64,
    pub(super) output: PathBuf,
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
    pub(super) fn new(list: &RefList) -> RefsJson {
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
    pub(super) action: &'static str,
    pub(super) kind: &'static str,
    pub(super) name: String,
    pub(super) commit: String,
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
    pub(super) fn new(d: &Diff) -> DiffJson {
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
    pub(super) fn new(outcome: &MergeOutcome) -> MergeJson {
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
    pub(super) fn new(b: &Blame) -> BlameJson {
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
    held: usize,
    swept: Vec<String>,
    freed_bytes: u64,
    dry_run: bool,
}

impl GcJson {
    pub(super) fn new(r: &GcReport) -> GcJson {
        GcJson {
            refs: r.refs,
            reachable: r.reachable,
            candidates: r.candidates,
            held: r.held,
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
    pub(super) fn new(s: &CarSummary, file: &Path, branch: Option<String>) -> CarJson {
        CarJson {
            root: s.root.to_string(),
            blocks: s.blocks,
            bytes: s.bytes,
            file: file.to_path_buf(),
            branch,
        }
    }
}
