//! Checkout: a commit's tensors, to memory or to a safetensors file.

use std::fmt;

use cid::Cid;
use ipfrs_storage::BlockStore;
use serde::Serialize;

use crate::error::Result;
use crate::ledger::Ledger;
use crate::refs::RefStore;
use crate::repo::Repo;
use crate::revision::Revision;
use crate::tensors::{FileMetadata, Tensors};

/// What a checkout produced. Serialises with CIDs as text ([`crate::cid_text`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckoutSummary {
    /// The commit checked out.
    #[serde(with = "crate::cid_text")]
    pub commit: Cid,
    /// Tensors written.
    pub tensors: usize,
    /// Bytes of tensor data.
    pub bytes: u64,
}

impl fmt::Display for CheckoutSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "checked out {}: {} tensors, {} bytes",
            self.commit, self.tensors, self.bytes
        )
    }
}

impl<S: BlockStore, R: RefStore, L: Ledger> Repo<S, R, L> {
    /// The tensors of the commit `rev` names, reconstructed bit for bit. HEAD is not moved
    /// (see [`Repo::checkout_to_file`], which streams the file instead).
    pub async fn checkout(&self, rev: &Revision) -> Result<(Cid, Tensors)> {
        let (commit, tensors, _) = self.checkout_with_metadata(rev).await?;
        Ok((commit, tensors))
    }

    /// [`Repo::checkout`], also returning the safetensors `__metadata__` committed with the
    /// state, if any.
    pub async fn checkout_with_metadata(
        &self,
        rev: &Revision,
    ) -> Result<(Cid, Tensors, Option<FileMetadata>)> {
        let commit = self.resolve(rev).await?;
        let state = self.commit_state(&commit).await?;
        let mut out = Tensors::new();
        for (name, cid) in &state.tensors {
            out.insert(name.clone(), self.read_tensor(cid).await?);
        }
        Ok((commit, out, state.metadata))
    }
}
