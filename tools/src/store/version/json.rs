//! The JSON forms that are the CLI's own: a result with the file the command wrote or read,
//! or a ref change. The versioning layer's results serialise themselves, CIDs as text
//! ([`ipfrs_versioning::cid_text`]), and are printed as they are.

use std::path::{Path, PathBuf};

use ipfrs_versioning::car::CarSummary;
use serde::Serialize;

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
