//! `repo verify`: rehash every stored block.

use futures_lite::future::block_on;
use ipfrs_storage::{BlockStore, Cid};
use serde::Serialize;

use super::error::Result;
use super::output::{self, Report};
use super::progress;

/// Blocks read per `get_many` while verifying.
const BATCH: usize = 64;

/// What `repo verify` found.
#[derive(Debug, Default, Serialize)]
pub struct Verified {
    /// Blocks checked.
    pub checked: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Blocks whose bytes do not hash to their CID (CIDv1 raw: blocks are keyed by multihash).
    pub corrupt: Vec<String>,
    /// Blocks listed by the store but not readable.
    pub missing: Vec<String>,
}

impl Verified {
    /// Whether every block was sound.
    pub fn is_clean(&self) -> bool {
        self.corrupt.is_empty() && self.missing.is_empty()
    }
}

impl Report for Verified {
    fn human(&self) -> String {
        let mut out = format!(
            "checked {} blocks ({}): {} corrupt, {} missing\n",
            self.checked,
            output::bytes(self.bytes),
            self.corrupt.len(),
            self.missing.len()
        );
        for cid in &self.corrupt {
            out.push_str(&format!("corrupt {cid}\n"));
        }
        for cid in &self.missing {
            out.push_str(&format!("missing {cid}\n"));
        }
        out
    }
}

/// Reads every block the store lists and checks its bytes against its multihash.
/// `total` (blocks, from the stats) sizes the progress bar.
pub fn verify<S: BlockStore>(store: &S, total: Option<u64>) -> Result<Verified> {
    let bar = progress::bar("verifying", total, false);
    let mut report = Verified::default();
    let mut stream = store.cids();
    let mut batch: Vec<Cid> = Vec::with_capacity(BATCH);
    loop {
        let next = block_on(stream.next()).transpose()?;
        if let Some(cid) = next {
            batch.push(cid);
        }
        if batch.len() >= BATCH || (next.is_none() && !batch.is_empty()) {
            // A damaged hot record fails the whole batch with `Corrupt`: then each block is
            // read alone, so the report names every damaged one and checks the rest.
            let found = match block_on(store.get_many(&batch)) {
                Ok(found) => found.into_iter().map(Ok).collect(),
                Err(ipfrs_storage::Error::Corrupt { .. }) => batch
                    .iter()
                    .map(|cid| block_on(store.get(cid)))
                    .collect::<Vec<_>>(),
                Err(e) => return Err(e.into()),
            };
            for (cid, data) in batch.drain(..).zip(found) {
                let data = match data {
                    Ok(data) => data,
                    Err(ipfrs_storage::Error::Corrupt { .. }) => {
                        report.checked += 1;
                        bar.inc(1);
                        report.corrupt.push(cid.to_string());
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                };
                report.checked += 1;
                bar.inc(1);
                match data {
                    None => report.missing.push(cid.to_string()),
                    Some(data) => {
                        report.bytes += data.len() as u64;
                        if ipfrs_storage::verify(&cid, &data).is_err() {
                            report.corrupt.push(cid.to_string());
                        }
                    }
                }
            }
        }
        if next.is_none() {
            break;
        }
    }
    bar.finish_and_clear();
    Ok(report)
}
