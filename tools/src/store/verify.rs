//! `repo verify`: rehash every stored block, and report every damaged place the engine knows
//! of (hot records recovery found damaged, keys a listing could not read back), so that damage
//! no read can reach, a record whose key is gone, is reported too.

use futures_lite::future::block_on;
use ipfrs_storage::key::cid_of_key;
use ipfrs_storage::{BlockStore, Cid, Damage};
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
    /// Damaged places the engine found, with the block each held where it could be named.
    pub damaged: Vec<DamagedPlace>,
}

/// One damaged place in the report.
#[derive(Debug, Serialize)]
pub struct DamagedPlace {
    /// The shard whose files hold it.
    pub shard: usize,
    /// Where: a hot segment and offset, or the cold backend.
    pub site: String,
    /// The block it held (CIDv1 raw), when it could be named.
    pub cid: Option<String>,
    /// Whether that CID is proven by the stored payload's hash (else it is the key the
    /// damaged record carries, unchecked).
    pub cid_proven: bool,
    /// What is wrong.
    pub cause: String,
}

impl Verified {
    /// Whether every block was sound and no damage was found.
    pub fn is_clean(&self) -> bool {
        self.corrupt.is_empty() && self.missing.is_empty() && self.damaged.is_empty()
    }

    /// Adds the engine's damage report: every place, and each block it names that the reads
    /// did not already find corrupt (a record recovery could not index under its real key
    /// reads as absent, not corrupt).
    fn add_damage(&mut self, damage: Vec<Damage>) {
        for place in damage {
            let cid = place
                .key
                .as_deref()
                .and_then(|key| cid_of_key(key).ok())
                .map(|cid| cid.to_string());
            if let Some(cid) = &cid
                && place.key_proven
                && !self.corrupt.contains(cid)
            {
                self.corrupt.push(cid.clone());
            }
            self.damaged.push(DamagedPlace {
                shard: place.shard,
                site: place.site.to_string(),
                cid,
                cid_proven: place.key_proven,
                cause: place.cause,
            });
        }
    }
}

impl Report for Verified {
    fn human(&self) -> String {
        let mut out = format!(
            "checked {} blocks ({}): {} corrupt, {} missing, {} damaged places\n",
            self.checked,
            output::bytes(self.bytes),
            self.corrupt.len(),
            self.missing.len(),
            self.damaged.len()
        );
        for cid in &self.corrupt {
            out.push_str(&format!("corrupt {cid}\n"));
        }
        for cid in &self.missing {
            out.push_str(&format!("missing {cid}\n"));
        }
        for place in &self.damaged {
            let block = match (&place.cid, place.cid_proven) {
                (Some(cid), true) => format!(" held {cid}"),
                (Some(cid), false) => format!(" claims {cid} (unproven)"),
                (None, _) => String::new(),
            };
            out.push_str(&format!(
                "damaged shard {} {}{block}: {}\n",
                place.shard, place.site, place.cause
            ));
        }
        out
    }
}

/// Reads every block the store lists and checks its bytes against its multihash, then adds
/// `damage` (the engine's report, [`ipfrs_storage::Engine::damage`], taken after the listing
/// so it includes what the listing met). `total` (blocks, from the stats) sizes the progress
/// bar.
pub fn verify<S: BlockStore>(
    store: &S,
    damage: impl FnOnce() -> Result<Vec<Damage>>,
    total: Option<u64>,
) -> Result<Verified> {
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
    report.add_damage(damage()?);
    Ok(report)
}
