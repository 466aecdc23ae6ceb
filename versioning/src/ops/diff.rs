//! Diff: what changed between two commits, tensor by tensor.
//!
//! Unchanged chunks are recognised by CID without reading them; only changed chunks are
//! read to measure the change (L2 norm and largest absolute difference, in f64).

use std::fmt;

use cid::Cid;
use ipfrs_storage::BlockStore;
use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use crate::dtype::DType;
use crate::error::Result;
use crate::ledger::Ledger;
use crate::refs::RefStore;
use crate::repo::Repo;
use crate::revision::Revision;

/// How one tensor differs. Serialises as a map tagged by `change` (`added`, `removed`,
/// `changed`, `relaid`) with the variant's fields; dtypes by their safetensors names (`F32`),
/// a relayout as `from_dtype`, `from_shape`, `to_dtype`, `to_shape`.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Only in the new commit.
    Added {
        /// Element type.
        dtype: DType,
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
        /// sqrt(sum((new - old)^2)) over all elements.
        l2: f64,
        /// max |new - old|.
        max_abs: f64,
    },
    /// Different dtype, shape or chunking: not comparable element-wise.
    Relaid {
        /// Old dtype and shape.
        from: (DType, Vec<u64>),
        /// New dtype and shape.
        to: (DType, Vec<u64>),
    },
}

impl Serialize for Change {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let fields = match self {
            Change::Removed => 1,
            Change::Added { .. } => 3,
            Change::Changed { .. } | Change::Relaid { .. } => 5,
        };
        let mut out = serializer.serialize_struct("Change", fields)?;
        match self {
            Change::Added { dtype, shape } => {
                out.serialize_field("change", "added")?;
                out.serialize_field("dtype", dtype.name())?;
                out.serialize_field("shape", shape)?;
            }
            Change::Removed => out.serialize_field("change", "removed")?,
            Change::Changed {
                chunks,
                total_chunks,
                l2,
                max_abs,
            } => {
                out.serialize_field("change", "changed")?;
                out.serialize_field("chunks", chunks)?;
                out.serialize_field("total_chunks", total_chunks)?;
                out.serialize_field("l2", l2)?;
                out.serialize_field("max_abs", max_abs)?;
            }
            Change::Relaid { from, to } => {
                out.serialize_field("change", "relaid")?;
                out.serialize_field("from_dtype", from.0.name())?;
                out.serialize_field("from_shape", &from.1)?;
                out.serialize_field("to_dtype", to.0.name())?;
                out.serialize_field("to_shape", &to.1)?;
            }
        }
        out.end()
    }
}

/// One tensor of a diff. Serialises as its `name` followed by the fields of its [`Change`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TensorDiff {
    /// The tensor.
    pub name: String,
    /// How it differs.
    #[serde(flatten)]
    pub change: Change,
}

/// The differences between two commits; unchanged tensors are left out. Serialises with CIDs
/// as text ([`crate::cid_text`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diff {
    /// Old commit.
    #[serde(with = "crate::cid_text")]
    pub from: Cid,
    /// New commit.
    #[serde(with = "crate::cid_text")]
    pub to: Cid,
    /// Tensors that differ, by name.
    pub tensors: Vec<TensorDiff>,
}

impl fmt::Display for Diff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "diff {} -> {}", self.from, self.to)?;
        for t in &self.tensors {
            match &t.change {
                Change::Added { dtype, shape } => writeln!(f, "A {} {dtype} {shape:?}", t.name)?,
                Change::Removed => writeln!(f, "D {}", t.name)?,
                Change::Changed {
                    chunks,
                    total_chunks,
                    l2,
                    max_abs,
                } => writeln!(
                    f,
                    "M {} chunks {}/{} l2={l2:.6e} max_abs={max_abs:.6e}",
                    t.name,
                    chunks.len(),
                    total_chunks
                )?,
                Change::Relaid { from, to } => writeln!(
                    f,
                    "R {} {} {:?} -> {} {:?}",
                    t.name, from.0, from.1, to.0, to.1
                )?,
            }
        }
        Ok(())
    }
}

impl<S: BlockStore, R: RefStore, L: Ledger> Repo<S, R, L> {
    /// The differences from commit `from` to commit `to`.
    pub async fn diff(&self, from: &Revision, to: &Revision) -> Result<Diff> {
        let from_cid = self.resolve(from).await?;
        let to_cid = self.resolve(to).await?;
        let old = self.commit_state(&from_cid).await?;
        let new = self.commit_state(&to_cid).await?;
        let mut tensors = Vec::new();
        for (name, old_cid) in &old.tensors {
            if !new.tensors.contains_key(name) {
                tensors.push(TensorDiff {
                    name: name.clone(),
                    change: Change::Removed,
                });
                continue;
            }
            let new_cid = &new.tensors[name];
            if new_cid == old_cid {
                continue;
            }
            let a = self.tensor_object(old_cid).await?;
            let b = self.tensor_object(new_cid).await?;
            if a.same_content(&b) {
                continue;
            }
            let change = if a.dtype() != b.dtype()
                || a.shape() != b.shape()
                || a.chunk_bytes() != b.chunk_bytes()
                || a.chunk_cids().len() != b.chunk_cids().len()
            {
                Change::Relaid {
                    from: (a.dtype(), a.shape().to_vec()),
                    to: (b.dtype(), b.shape().to_vec()),
                }
            } else {
                let (ca, cb) = (a.chunk_cids(), b.chunk_cids());
                let chunks: Vec<usize> = (0..ca.len()).filter(|&i| ca[i] != cb[i]).collect();
                let dtype = a.dtype();
                let (mut sum, mut max_abs) = (0.0f64, 0.0f64);
                for batch in chunks.chunks(self.config.batch_blocks.max(1)) {
                    let xs = self.read_chunks(old_cid, &a, batch).await?;
                    let ys = self.read_chunks(new_cid, &b, batch).await?;
                    for (x, y) in xs.iter().zip(&ys) {
                        for i in 0..x.len().min(y.len()) / dtype.size() {
                            let d = dtype.value(y, i) - dtype.value(x, i);
                            sum += d * d;
                            // NaN compares false, so a NaN difference is reported via l2.
                            if d.abs() > max_abs {
                                max_abs = d.abs();
                            }
                        }
                    }
                }
                Change::Changed {
                    chunks,
                    total_chunks: ca.len(),
                    l2: sum.sqrt(),
                    max_abs,
                }
            };
            tensors.push(TensorDiff {
                name: name.clone(),
                change,
            });
        }
        for (name, cid) in &new.tensors {
            if !old.tensors.contains_key(name) {
                let b = self.tensor_object(cid).await?;
                tensors.push(TensorDiff {
                    name: name.clone(),
                    change: Change::Added {
                        dtype: b.dtype(),
                        shape: b.shape().to_vec(),
                    },
                });
            }
        }
        tensors.sort_by(|x, y| x.name.cmp(&y.name));
        Ok(Diff {
            from: from_cid,
            to: to_cid,
            tensors,
        })
    }
}
