//! Blame: which commit last changed each tensor, and from what data.
//!
//! Walking back from a commit, a tensor is followed into the first parent that holds the
//! same content (same dtype, shape and chunk CIDs); the commit where no parent does is the
//! one that changed it (or added it).

use std::collections::HashMap;
use std::fmt;

use cid::Cid;
use ipfrs_storage::BlockStore;
use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use crate::error::Result;
use crate::ledger::Ledger;
use crate::objects::{Commit, State, TensorObject};
use crate::ops::log::{CommitText, fmt_provenance, format_timestamp};
use crate::refs::RefStore;
use crate::repo::Repo;
use crate::revision::Revision;

/// Who last changed one tensor. Serialises as `tensor` and `commit`, the commit in the form
/// of a [`crate::LogEntry`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlameEntry {
    /// The tensor.
    pub tensor: String,
    /// The commit that last changed it.
    pub commit: Cid,
    /// That commit (author, message, time, provenance).
    pub info: Commit,
}

/// Blame of every tensor of a commit, by name. Serialises as `{"tensors": [...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Blame {
    /// One entry per tensor.
    #[serde(rename = "tensors")]
    pub entries: Vec<BlameEntry>,
}

impl Serialize for BlameEntry {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut out = serializer.serialize_struct("BlameEntry", 2)?;
        out.serialize_field("tensor", &self.tensor)?;
        out.serialize_field("commit", &CommitText::new(&self.commit, &self.info))?;
        out.end()
    }
}

impl fmt::Display for Blame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.entries {
            let first = e.info.message.lines().next().unwrap_or("");
            writeln!(
                f,
                "{} {} {} {}: {}",
                e.tensor,
                e.commit,
                e.info.author,
                format_timestamp(e.info.timestamp_ms),
                first
            )?;
            fmt_provenance(f, &e.info.provenance, "    ")?;
        }
        Ok(())
    }
}

impl<S: BlockStore, R: RefStore, L: Ledger> Repo<S, R, L> {
    /// For each tensor of `rev`, the commit that last changed it.
    pub async fn blame(&self, rev: &Revision) -> Result<Blame> {
        let start = self.resolve(rev).await?;
        let mut commits: HashMap<Cid, (Commit, State)> = HashMap::new();
        let mut objects: HashMap<Cid, TensorObject> = HashMap::new();
        let head = self.load_commit_state(&start, &mut commits).await?;
        let mut entries = Vec::new();
        for (name, cid) in &head.1.tensors {
            let content = self.cached_tensor(cid, &mut objects).await?;
            let mut at = start;
            'walk: loop {
                let parents = self.load_commit_state(&at, &mut commits).await?.0.parents;
                for p in parents {
                    let state = self.load_commit_state(&p, &mut commits).await?.1;
                    if let Some(pc) = state.tensors.get(name) {
                        let same = pc == cid
                            || self
                                .cached_tensor(pc, &mut objects)
                                .await?
                                .same_content(&content);
                        if same {
                            at = p;
                            continue 'walk;
                        }
                    }
                }
                break;
            }
            let info = self.load_commit_state(&at, &mut commits).await?.0;
            entries.push(BlameEntry {
                tensor: name.clone(),
                commit: at,
                info,
            });
        }
        Ok(Blame { entries })
    }

    async fn load_commit_state(
        &self,
        cid: &Cid,
        cache: &mut HashMap<Cid, (Commit, State)>,
    ) -> Result<(Commit, State)> {
        if let Some(hit) = cache.get(cid) {
            return Ok(hit.clone());
        }
        let c = self.commit_object(cid).await?;
        let s = self.state_object(&c.state).await?;
        cache.insert(*cid, (c.clone(), s.clone()));
        Ok((c, s))
    }

    async fn cached_tensor(
        &self,
        cid: &Cid,
        cache: &mut HashMap<Cid, TensorObject>,
    ) -> Result<TensorObject> {
        if let Some(hit) = cache.get(cid) {
            return Ok(hit.clone());
        }
        let t = self.tensor_object(cid).await?;
        cache.insert(*cid, t.clone());
        Ok(t)
    }
}
