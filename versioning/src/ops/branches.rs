//! Branches and tags: create, list, delete.

use std::fmt;

use cid::Cid;
use ipfrs_storage::BlockStore;
use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use crate::cid_text::Text;
use crate::error::{Error, Result};
use crate::ledger::Ledger;
use crate::refs::{BRANCH_PREFIX, HEAD, RefStore, TAG_PREFIX, validate_name};
use crate::repo::{Repo, branch_ref, tag_ref};
use crate::revision::Revision;

/// A listing of refs. Serialises as `refs`, each `{name, commit, at_head}`, and `head`; CIDs
/// as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefList {
    /// Name (without `heads/` or `tags/`) and commit.
    pub refs: Vec<(String, Cid)>,
    /// The commit HEAD points at, to mark it.
    pub head: Option<Cid>,
}

impl Serialize for RefList {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let refs: Vec<RefText<'_>> = self
            .refs
            .iter()
            .map(|(name, cid)| RefText {
                name,
                commit: Text(cid),
                at_head: Some(*cid) == self.head,
            })
            .collect();
        let mut out = serializer.serialize_struct("RefList", 2)?;
        out.serialize_field("refs", &refs)?;
        out.serialize_field("head", &self.head.as_ref().map(Text))?;
        out.end()
    }
}

/// One ref of a serialised [`RefList`], marked when HEAD points at its commit.
#[derive(Serialize)]
struct RefText<'a> {
    name: &'a str,
    commit: Text<'a>,
    at_head: bool,
}

impl fmt::Display for RefList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, cid) in &self.refs {
            let mark = if Some(*cid) == self.head { '*' } else { ' ' };
            writeln!(f, "{mark} {name} {cid}")?;
        }
        Ok(())
    }
}

impl<S: BlockStore, R: RefStore, L: Ledger> Repo<S, R, L> {
    async fn create_ref(&self, full: String, at: &Revision) -> Result<Cid> {
        validate_name(&full)?;
        let cid = self.resolve(at).await?;
        match self.refs.compare_and_swap(&full, None, Some(cid)) {
            Err(Error::Conflict { .. }) => Err(Error::RefExists(full)),
            other => other.map(|()| cid),
        }
    }

    fn delete_ref(&self, full: String) -> Result<Cid> {
        validate_name(&full)?;
        let current = self
            .refs
            .get(&full)?
            .ok_or_else(|| Error::UnknownRef(full.clone()))?;
        self.refs.compare_and_swap(&full, Some(current), None)?;
        Ok(current)
    }

    fn list_refs(&self, prefix: &str) -> Result<RefList> {
        let refs = self
            .refs
            .list(prefix)?
            .into_iter()
            .map(|(n, c)| (n[prefix.len()..].to_string(), c))
            .collect();
        Ok(RefList {
            refs,
            head: self.refs.get(HEAD)?,
        })
    }

    /// Creates branch `name` at `at`; [`Error::RefExists`] if it exists.
    pub async fn create_branch(&self, name: &str, at: &Revision) -> Result<Cid> {
        self.create_ref(branch_ref(name), at).await
    }

    /// Deletes branch `name`, returning where it pointed. Its commits stay until gc.
    pub fn delete_branch(&self, name: &str) -> Result<Cid> {
        self.delete_ref(branch_ref(name))
    }

    /// Every branch.
    pub fn branches(&self) -> Result<RefList> {
        self.list_refs(BRANCH_PREFIX)
    }

    /// Creates tag `name` at `at`; tags never move, so an existing tag is [`Error::RefExists`].
    pub async fn create_tag(&self, name: &str, at: &Revision) -> Result<Cid> {
        self.create_ref(tag_ref(name), at).await
    }

    /// Deletes tag `name`, returning where it pointed.
    pub fn delete_tag(&self, name: &str) -> Result<Cid> {
        self.delete_ref(tag_ref(name))
    }

    /// Every tag.
    pub fn tags(&self) -> Result<RefList> {
        self.list_refs(TAG_PREFIX)
    }
}
