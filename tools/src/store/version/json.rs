//! The JSON forms of the `version` results. The versioning layer's results serialise
//! themselves, CIDs as text ([`ipfrs_versioning::cid_text`]): [`Json`] prints one as it is,
//! and the aliases name what each command prints. The three structs below are the CLI's own:
//! a result with the file the command wrote or read, or a ref change.

use std::path::{Path, PathBuf};

use ipfrs_versioning::car::CarSummary;
use ipfrs_versioning::{Blame, CommitSummary, Diff, GcReport, Log, MergeOutcome, RefList};
use serde::Serialize;

/// A versioning result, serialised as the layer serialises it.
#[derive(Debug, Serialize)]
#[serde(transparent)]
pub struct Json<T>(T);

impl<T: Clone> Json<T> {
    /// A copy of `result` to print: the commands print their result and the text for people
    /// from the same value.
    pub(super) fn new(result: &T) -> Json<T> {
        Json(result.clone())
    }
}

/// A commit summary.
pub type CommitJson = Json<CommitSummary>;
/// A log.
pub type LogJson = Json<Log>;
/// A listing of branches or tags.
pub type RefsJson = Json<RefList>;
/// A diff.
pub type DiffJson = Json<Diff>;
/// What a merge did.
pub type MergeJson = Json<MergeOutcome>;
/// A blame.
pub type BlameJson = Json<Blame>;
/// What `version gc` did.
pub type GcJson = Json<GcReport>;

/// A checkout.
#[derive(Debug, Serialize)]
pub struct CheckoutJson {
    pub(super) commit: String,
    pub(super) tensors: usize,
    pub(super) bytes: u64,
    pub(super) output: PathBuf,
}

/// A branch or tag created or deleted.
#[derive(Debug, Serialize)]
pub struct RefChangeJson {
    pub(super) action: &'static str,
    pub(super) kind: &'static str,
    pub(super) name: String,
    pub(super) commit: String,
}

/// A CAR export or import, its file and the branch an import set.
#[derive(Debug, Serialize)]
pub struct CarJson {
    #[serde(flatten)]
    summary: CarSummary,
    file: PathBuf,
    branch: Option<String>,
}

impl CarJson {
    pub(super) fn new(summary: &CarSummary, file: &Path, branch: Option<String>) -> CarJson {
        CarJson {
            summary: summary.clone(),
            file: file.to_path_buf(),
            branch,
        }
    }
}
