//! CIDs as text (`bafy...`) in the serialised results of this crate: what `ipfrs-store
//! version --json` prints, or any serde format meant for people and other programs.
//!
//! The `cid` crate's own serde form is an IPLD link (bytes under CBOR tag 42). That is right
//! for the stored objects ([`crate::objects`] keep it: their DAG-CBOR bytes, and so their
//! CIDs, must not change) and wrong for a report, where serde_json would print the link as an
//! array of numbers. So the result types ([`crate::CommitSummary`], [`crate::Log`],
//! [`crate::Diff`], ...) put `#[serde(with = "cid_text")]` on a `Cid`, `cid_text::vec` on a
//! list and `cid_text::option` on an `Option<Cid>`. Serialising only: results are not read
//! back.

use cid::Cid;
use serde::{Serialize, Serializer};

/// Serialises a CID as its text form (multibase base32 for CIDv1, base58btc for CIDv0).
pub fn serialize<S: Serializer>(cid: &Cid, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(cid)
}

/// A borrowed CID that serialises as text, for hand-written `Serialize` impls.
#[derive(Debug, Clone, Copy)]
pub struct Text<'a>(pub &'a Cid);

impl Serialize for Text<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize(self.0, serializer)
    }
}

/// A list of CIDs as a sequence of texts.
pub mod vec {
    use cid::Cid;
    use serde::Serializer;

    use super::Text;

    /// Serialises `cids` as a sequence of CID texts.
    pub fn serialize<S: Serializer>(cids: &[Cid], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(cids.iter().map(Text))
    }
}

/// An optional CID as its text, or none (`null` in JSON).
pub mod option {
    use cid::Cid;
    use serde::Serializer;

    use super::Text;

    /// Serialises `cid` as its text, or as none.
    pub fn serialize<S: Serializer>(cid: &Option<Cid>, serializer: S) -> Result<S::Ok, S::Error> {
        match cid {
            Some(c) => serializer.serialize_some(&Text(c)),
            None => serializer.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeMap;
    use std::str::FromStr;

    use super::*;
    use crate::car::CarSummary;
    use crate::objects::{Commit, Provenance};
    use crate::{
        Blame, BlameEntry, Change, CheckoutSummary, CommitSummary, DType, Diff, GcReport, Log,
        LogEntry, MergeOutcome, RefList, TensorDiff,
    };

    /// A dag-cbor CID and a raw one, fixed.
    fn cids() -> (Cid, Cid) {
        (
            Cid::from_str("bafyreidxu6zn47rkwmxv25s6axb4mqwfhtbp3c5ysbjvnbaab6ivxl6g2q").unwrap(),
            Cid::from_str("bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku").unwrap(),
        )
    }

    fn json(value: &impl Serialize) -> String {
        serde_json::to_string(value).unwrap()
    }

    #[test]
    fn helpers_write_cids_as_text() {
        #[derive(Serialize)]
        struct All {
            #[serde(with = "crate::cid_text")]
            one: Cid,
            #[serde(with = "crate::cid_text::vec")]
            many: Vec<Cid>,
            #[serde(with = "crate::cid_text::option")]
            some: Option<Cid>,
            #[serde(with = "crate::cid_text::option")]
            none: Option<Cid>,
        }
        let (a, b) = cids();
        let all = All {
            one: a,
            many: vec![a, b],
            some: Some(b),
            none: None,
        };
        assert_eq!(
            json(&all),
            format!(r#"{{"one":"{a}","many":["{a}","{b}"],"some":"{b}","none":null}}"#)
        );
        // CIDv0 keeps its base58btc form.
        let v0 = Cid::from_str("QmdfTbBqBPQ7VNxZEYEj14VmRuZBkqFbiwReogJgS1zR1n").unwrap();
        assert_eq!(
            json(&Text(&v0)),
            r#""QmdfTbBqBPQ7VNxZEYEj14VmRuZBkqFbiwReogJgS1zR1n""#
        );
    }

    #[test]
    fn summaries_serialise_with_text_cids_in_field_order() {
        let (a, b) = cids();
        let summary = CommitSummary {
            commit: a,
            branch: "main".into(),
            parents: vec![b],
            full: 1,
            deltas: 2,
            unchanged: 3,
            new_blocks: 4,
            new_bytes: 5,
        };
        assert_eq!(
            json(&summary),
            format!(
                r#"{{"commit":"{a}","branch":"main","parents":["{b}"],"full":1,"deltas":2,"unchanged":3,"new_blocks":4,"new_bytes":5}}"#
            )
        );
        let merged = MergeOutcome::Merged(summary.clone());
        assert_eq!(
            json(&merged),
            format!(r#"{{"outcome":"merged","commit":{}}}"#, json(&summary))
        );
        assert_eq!(
            json(&MergeOutcome::UpToDate(a)),
            format!(r#"{{"outcome":"up-to-date","commit":"{a}"}}"#)
        );
        assert_eq!(
            json(&MergeOutcome::FastForward { from: a, to: b }),
            format!(r#"{{"outcome":"fast-forward","from":"{a}","to":"{b}"}}"#)
        );
        let gc = GcReport {
            refs: 1,
            reachable: 2,
            candidates: 3,
            held: 4,
            swept: vec![b],
            freed_bytes: 6,
            dry_run: true,
        };
        assert_eq!(
            json(&gc),
            format!(
                r#"{{"refs":1,"reachable":2,"candidates":3,"held":4,"swept":["{b}"],"freed_bytes":6,"dry_run":true}}"#
            )
        );
        let car = CarSummary {
            root: a,
            blocks: 7,
            bytes: 8,
        };
        assert_eq!(
            json(&car),
            format!(r#"{{"root":"{a}","blocks":7,"bytes":8}}"#)
        );
        let checkout = CheckoutSummary {
            commit: a,
            tensors: 2,
            bytes: 9,
        };
        assert_eq!(
            json(&checkout),
            format!(r#"{{"commit":"{a}","tensors":2,"bytes":9}}"#)
        );
    }

    #[test]
    fn refs_mark_the_head() {
        let (a, b) = cids();
        let list = RefList {
            refs: vec![("exp".into(), b), ("main".into(), a)],
            head: Some(a),
        };
        assert_eq!(
            json(&list),
            format!(
                r#"{{"refs":[{{"name":"exp","commit":"{b}","at_head":false}},{{"name":"main","commit":"{a}","at_head":true}}],"head":"{a}"}}"#
            )
        );
        let empty = RefList {
            refs: Vec::new(),
            head: None,
        };
        assert_eq!(json(&empty), r#"{"refs":[],"head":null}"#);
    }

    #[test]
    fn diffs_tag_each_change_and_name_dtypes_as_safetensors_does() {
        let (a, b) = cids();
        let tensor = |name: &str, change| TensorDiff {
            name: name.into(),
            change,
        };
        let diff = Diff {
            from: a,
            to: b,
            tensors: vec![
                tensor(
                    "a",
                    Change::Added {
                        dtype: DType::BF16,
                        shape: vec![3],
                    },
                ),
                tensor("d", Change::Removed),
                tensor(
                    "m",
                    Change::Changed {
                        chunks: vec![0, 2],
                        total_chunks: 3,
                        l2: 4.0,
                        max_abs: 0.5,
                    },
                ),
                tensor(
                    "r",
                    Change::Relaid {
                        from: (DType::F32, vec![4, 4]),
                        to: (DType::F16, vec![2, 8]),
                    },
                ),
            ],
        };
        assert_eq!(
            json(&diff),
            format!(
                concat!(
                    r#"{{"from":"{a}","to":"{b}","tensors":["#,
                    r#"{{"name":"a","change":"added","dtype":"BF16","shape":[3]}},"#,
                    r#"{{"name":"d","change":"removed"}},"#,
                    r#"{{"name":"m","change":"changed","chunks":[0,2],"total_chunks":3,"l2":4.0,"max_abs":0.5}},"#,
                    r#"{{"name":"r","change":"relaid","from_dtype":"F32","from_shape":[4,4],"to_dtype":"F16","to_shape":[2,8]}}"#,
                    "]}}"
                ),
                a = a,
                b = b
            )
        );
    }

    #[test]
    fn log_and_blame_entries_carry_the_commit_with_its_cid_and_time() {
        let (a, b) = cids();
        let commit = Commit {
            state: b,
            parents: vec![a],
            author: "ada".into(),
            message: "step".into(),
            timestamp_ms: 1_700_000_000_999,
            provenance: Provenance {
                datasets: vec![b],
                hyperparameters: BTreeMap::from([("lr".into(), "3e-4".into())]),
                gradients: vec![a],
                metadata: BTreeMap::from([("run".into(), "7".into())]),
            },
        };
        let text = format!(
            concat!(
                r#"{{"cid":"{a}","state":"{b}","parents":["{a}"],"author":"ada","message":"step","#,
                r#""timestamp_ms":1700000000999,"time":"2023-11-14T22:13:20Z","#,
                r#""provenance":{{"datasets":["{b}"],"hyperparameters":{{"lr":"3e-4"}},"#,
                r#""gradients":["{a}"],"metadata":{{"run":"7"}}}}}}"#
            ),
            a = a,
            b = b
        );
        let log = Log {
            entries: vec![LogEntry {
                cid: a,
                commit: commit.clone(),
            }],
        };
        assert_eq!(json(&log), format!(r#"{{"commits":[{text}]}}"#));
        let blame = Blame {
            entries: vec![BlameEntry {
                tensor: "w".into(),
                commit: a,
                info: commit,
            }],
        };
        assert_eq!(
            json(&blame),
            format!(r#"{{"tensors":[{{"tensor":"w","commit":{text}}}]}}"#)
        );
    }
}
