//! Merge: fast-forward, or a weighted average of two states recorded as a two-parent commit.
//!
//! Every check (tensor sets, dtypes, shapes, weight) runs before anything is written, so a
//! refused merge stores nothing and moves no ref.

use std::collections::{HashSet, VecDeque};
use std::fmt;

use bytes::Bytes;
use cid::Cid;
use ipfrs_storage::BlockStore;
use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use crate::cid_text::Text;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::ledger::Ledger;
use crate::ops::commit::{CommitInfo, CommitSummary};
use crate::refs::RefStore;
use crate::repo::{Repo, branch_ref};
use crate::revision::Revision;
use crate::tensors::{TensorData, Tensors};

/// How to merge diverged histories.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MergeStrategy {
    /// Only fast-forward; diverged histories are [`Error::NotFastForward`].
    FastForwardOnly,
    /// Fast-forward when possible; otherwise each float element becomes
    /// `(1 - theirs) * ours + theirs * theirs_value` (computed in f64, rounded once to the
    /// dtype). Non-float tensors must be equal on both sides.
    WeightedAverage {
        /// Weight of their side, in [0, 1].
        theirs: f64,
    },
}

/// What a merge did. Serialises as a map tagged by `outcome`: `up-to-date` with `commit`,
/// `fast-forward` with `from` and `to`, or `merged` with `commit` the merge's
/// [`CommitSummary`]; CIDs as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeOutcome {
    /// Their commit is already in our history.
    UpToDate(Cid),
    /// The branch moved forward to their commit.
    FastForward {
        /// Our old tip.
        from: Cid,
        /// The new tip.
        to: Cid,
    },
    /// A two-parent merge commit was made.
    Merged(CommitSummary),
}

impl Serialize for MergeOutcome {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let fields = match self {
            MergeOutcome::FastForward { .. } => 3,
            MergeOutcome::UpToDate(_) | MergeOutcome::Merged(_) => 2,
        };
        let mut out = serializer.serialize_struct("MergeOutcome", fields)?;
        match self {
            MergeOutcome::UpToDate(c) => {
                out.serialize_field("outcome", "up-to-date")?;
                out.serialize_field("commit", &Text(c))?;
            }
            MergeOutcome::FastForward { from, to } => {
                out.serialize_field("outcome", "fast-forward")?;
                out.serialize_field("from", &Text(from))?;
                out.serialize_field("to", &Text(to))?;
            }
            MergeOutcome::Merged(summary) => {
                out.serialize_field("outcome", "merged")?;
                out.serialize_field("commit", summary)?;
            }
        }
        out.end()
    }
}

impl fmt::Display for MergeOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MergeOutcome::UpToDate(c) => write!(f, "already up to date at {c}"),
            MergeOutcome::FastForward { from, to } => write!(f, "fast-forward {from} -> {to}"),
            MergeOutcome::Merged(s) => write!(f, "merged (weighted average)\n{s}"),
        }
    }
}

impl<S: BlockStore, R: RefStore, L: Ledger> Repo<S, R, L> {
    /// Whether `ancestor` is `of` or one of its ancestors.
    pub async fn is_ancestor(&self, ancestor: &Cid, of: &Cid) -> Result<bool> {
        let mut seen = HashSet::from([*of]);
        let mut queue = VecDeque::from([*of]);
        while let Some(c) = queue.pop_front() {
            if c == *ancestor {
                return Ok(true);
            }
            for p in self.commit_object(&c).await?.parents {
                if seen.insert(p) {
                    queue.push_back(p);
                }
            }
        }
        Ok(false)
    }

    /// Merges `theirs` into `branch`.
    pub async fn merge(
        &self,
        branch: &str,
        theirs: &Revision,
        strategy: MergeStrategy,
        info: CommitInfo,
    ) -> Result<MergeOutcome> {
        let ours = self.resolve(&Revision::Branch(branch.to_string())).await?;
        let theirs = self.resolve(theirs).await?;
        if self.is_ancestor(&theirs, &ours).await? {
            return Ok(MergeOutcome::UpToDate(ours));
        }
        if self.is_ancestor(&ours, &theirs).await? {
            self.refs
                .compare_and_swap(&branch_ref(branch), Some(ours), Some(theirs))?;
            self.set_head(theirs)?;
            return Ok(MergeOutcome::FastForward {
                from: ours,
                to: theirs,
            });
        }
        let weight = match strategy {
            MergeStrategy::FastForwardOnly => {
                return Err(Error::NotFastForward {
                    ours: Box::new(ours),
                    theirs: Box::new(theirs),
                });
            }
            MergeStrategy::WeightedAverage { theirs } => theirs,
        };
        if !(0.0..=1.0).contains(&weight) {
            return Err(Error::BadWeight(weight));
        }
        let a = self.commit_state(&ours).await?;
        let b = self.commit_state(&theirs).await?;
        let only_ours: Vec<String> = a
            .tensors
            .keys()
            .filter(|k| !b.tensors.contains_key(*k))
            .cloned()
            .collect();
        let only_theirs: Vec<String> = b
            .tensors
            .keys()
            .filter(|k| !a.tensors.contains_key(*k))
            .cloned()
            .collect();
        if !only_ours.is_empty() || !only_theirs.is_empty() {
            return Err(Error::TensorSetMismatch {
                only_ours,
                only_theirs,
            });
        }
        // Layouts first, from the small objects, before any data is read.
        let mut pairs = Vec::new();
        for (name, ca) in &a.tensors {
            let cb = &b.tensors[name];
            let (ta, tb) = (self.tensor_object(ca).await?, self.tensor_object(cb).await?);
            if ta.dtype() != tb.dtype() || ta.shape() != tb.shape() {
                return Err(Error::MergeMismatch {
                    name: name.clone(),
                    reason: format!(
                        "ours is {} {:?}, theirs {} {:?}",
                        ta.dtype(),
                        ta.shape(),
                        tb.dtype(),
                        tb.shape()
                    ),
                });
            }
            let same = ta.same_content(&tb);
            if !same && !ta.dtype().is_float() {
                return Err(Error::MergeMismatch {
                    name: name.clone(),
                    reason: format!("{} tensors cannot be averaged and differ", ta.dtype()),
                });
            }
            pairs.push((name.clone(), *ca, *cb, same));
        }
        let mut merged = Tensors::new();
        for (name, ca, cb, same) in pairs {
            let x = self.read_tensor(&ca).await?;
            let t = if same {
                x
            } else {
                let y = self.read_tensor(&cb).await?;
                average(&x, &y, weight)
            };
            merged.insert(name, t);
        }
        // The merged file is ours with averaged weights: it keeps our file's metadata.
        let mut info = info;
        if info.file_metadata.is_none() {
            info.file_metadata = a.metadata.clone();
        }
        let summary = self
            .write_commit(branch, Some(ours), &merged, vec![ours, theirs], info)
            .await?;
        Ok(MergeOutcome::Merged(summary))
    }
}

/// Element-wise `(1 - w) * x + w * y` for float tensors of equal layout.
fn average(x: &TensorData, y: &TensorData, w: f64) -> TensorData {
    let mix = |a: f64, b: f64| (1.0 - w) * a + w * b;
    let n = x.len();
    let mut out = Vec::with_capacity(x.data.len());
    for i in 0..n {
        let v = mix(x.dtype.value(&x.data, i), y.dtype.value(&y.data, i));
        match x.dtype {
            DType::F32 => out.extend_from_slice(&(v as f32).to_le_bytes()),
            DType::F64 => out.extend_from_slice(&v.to_le_bytes()),
            DType::F16 => out.extend_from_slice(&half::f16::from_f64(v).to_le_bytes()),
            DType::BF16 => out.extend_from_slice(&half::bf16::from_f64(v).to_le_bytes()),
            // Only float layouts reach here (checked by the caller).
            _ => out.extend_from_slice(&x.data[i * x.dtype.size()..(i + 1) * x.dtype.size()]),
        }
    }
    TensorData {
        dtype: x.dtype,
        shape: x.shape.clone(),
        data: Bytes::from(out),
    }
}
