//! Log: the history of a commit, newest first, with provenance.

use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::fmt;
use std::time::{Duration, UNIX_EPOCH};

use cid::Cid;
use ipfrs_storage::BlockStore;
use serde::{Serialize, Serializer};

use crate::error::Result;
use crate::ledger::Ledger;
use crate::objects::{Commit, Provenance};
use crate::refs::RefStore;
use crate::repo::Repo;
use crate::revision::Revision;

/// One commit of a log. Serialises as the commit's fields after its `cid`, with `time` (the
/// timestamp as [`format_timestamp`] writes it) after `timestamp_ms`, and CIDs as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Its CID.
    pub cid: Cid,
    /// The commit.
    pub commit: Commit,
}

/// A history, newest first. Serialises as `{"commits": [...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Log {
    /// The commits.
    #[serde(rename = "commits")]
    pub entries: Vec<LogEntry>,
}

impl Serialize for LogEntry {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        CommitText::new(&self.cid, &self.commit).serialize(serializer)
    }
}

/// The serialised form of a commit with its CID, in log and blame entries. Not the stored
/// form (a [`Commit`] keeps IPLD links, without its own CID or a readable time), so a view.
#[derive(Serialize)]
pub(crate) struct CommitText<'a> {
    #[serde(with = "crate::cid_text")]
    cid: &'a Cid,
    #[serde(with = "crate::cid_text")]
    state: &'a Cid,
    #[serde(with = "crate::cid_text::vec")]
    parents: &'a [Cid],
    author: &'a str,
    message: &'a str,
    timestamp_ms: u64,
    time: String,
    provenance: ProvenanceText<'a>,
}

impl<'a> CommitText<'a> {
    pub(crate) fn new(cid: &'a Cid, commit: &'a Commit) -> CommitText<'a> {
        let p = &commit.provenance;
        CommitText {
            cid,
            state: &commit.state,
            parents: &commit.parents,
            author: &commit.author,
            message: &commit.message,
            timestamp_ms: commit.timestamp_ms,
            time: format_timestamp(commit.timestamp_ms),
            provenance: ProvenanceText {
                datasets: &p.datasets,
                hyperparameters: &p.hyperparameters,
                gradients: &p.gradients,
                metadata: &p.metadata,
            },
        }
    }
}

/// A [`Provenance`] with CIDs as text: its derived serde form is the stored one (links).
#[derive(Serialize)]
struct ProvenanceText<'a> {
    #[serde(with = "crate::cid_text::vec")]
    datasets: &'a [Cid],
    hyperparameters: &'a BTreeMap<String, String>,
    #[serde(with = "crate::cid_text::vec")]
    gradients: &'a [Cid],
    metadata: &'a BTreeMap<String, String>,
}

pub(crate) fn fmt_provenance(
    f: &mut fmt::Formatter<'_>,
    p: &Provenance,
    indent: &str,
) -> fmt::Result {
    for d in &p.datasets {
        writeln!(f, "{indent}dataset: {d}")?;
    }
    for (k, v) in &p.hyperparameters {
        writeln!(f, "{indent}hyperparameter: {k}={v}")?;
    }
    for g in &p.gradients {
        writeln!(f, "{indent}gradient: {g}")?;
    }
    for (k, v) in &p.metadata {
        writeln!(f, "{indent}meta: {k}={v}")?;
    }
    Ok(())
}

/// The last millisecond RFC 3339 can write (9999-12-31T23:59:59.999Z): its years have four
/// digits, and humantime fails past it.
const LAST_RFC3339_MS: u64 = 253_402_300_799_999;

/// A commit's timestamp (milliseconds since the Unix epoch) for people: RFC 3339 in UTC, to
/// the second (`2026-11-24T18:00:00Z`); `<ms> ms` past the year 9999.
pub fn format_timestamp(ms: u64) -> String {
    if ms > LAST_RFC3339_MS {
        return format!("{ms} ms");
    }
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

impl fmt::Display for LogEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.commit;
        writeln!(f, "commit {}", self.cid)?;
        if c.parents.len() > 1 {
            let ps: Vec<String> = c.parents.iter().map(Cid::to_string).collect();
            writeln!(f, "Merge: {}", ps.join(" "))?;
        }
        writeln!(f, "Author: {}", c.author)?;
        writeln!(f, "Date:   {}", format_timestamp(c.timestamp_ms))?;
        writeln!(f)?;
        for line in c.message.lines() {
            writeln!(f, "    {line}")?;
        }
        fmt_provenance(f, &c.provenance, "    ")
    }
}

impl fmt::Display for Log {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.entries.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl<S: BlockStore, R: RefStore, L: Ledger> Repo<S, R, L> {
    /// Every ancestor of `rev` (itself included), newest timestamp first, at most `limit`.
    pub async fn log(&self, rev: &Revision, limit: Option<usize>) -> Result<Log> {
        let start = self.resolve(rev).await?;
        let limit = limit.unwrap_or(usize::MAX);
        let mut seen = HashSet::from([start]);
        let mut loaded = HashMap::new();
        let mut heap = BinaryHeap::new();
        let first = self.commit_object(&start).await?;
        heap.push((first.timestamp_ms, start));
        loaded.insert(start, first);
        let mut entries = Vec::new();
        while let Some((_, cid)) = heap.pop() {
            if entries.len() >= limit {
                break;
            }
            let Some(commit) = loaded.remove(&cid) else {
                continue;
            };
            for p in &commit.parents {
                if seen.insert(*p) {
                    let pc = self.commit_object(p).await?;
                    heap.push((pc.timestamp_ms, *p));
                    loaded.insert(*p, pc);
                }
            }
            entries.push(LogEntry { cid, commit });
        }
        Ok(Log { entries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc_to_the_second() {
        assert_eq!(format_timestamp(0), "1970-01-01T00:00:00Z");
        // 1_700_000_000_000 ms is 2023-11-14T22:13:20Z; the milliseconds are dropped.
        assert_eq!(format_timestamp(1_700_000_000_999), "2023-11-14T22:13:20Z");
        assert_eq!(format_timestamp(LAST_RFC3339_MS), "9999-12-31T23:59:59Z");
        assert_eq!(format_timestamp(u64::MAX), format!("{} ms", u64::MAX));
    }
}
