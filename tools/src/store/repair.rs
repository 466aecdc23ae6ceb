//! `repo repair`: rebuild damaged cold backends, with the store closed.
//!
//! Each shard's cold backend is checked (every key walked, every block read and hashed); a
//! sound one is left as it is. A damaged one is rebuilt from the blocks that read back exact,
//! and moved aside as `shard-NNN/<backend>.damaged-N` (never deleted). The report names every
//! block dropped, and says where blocks may be gone that cannot be named (a backend that did
//! not open, or a walk stopped by damage). The hot tier is not touched.

use ipfrs_storage::ShardRepair;
use serde::Serialize;

use super::error::{Error, Result};
use super::output::Report;
use super::repo::Repo;

/// What `repo repair` did to one shard.
#[derive(Debug, Serialize)]
pub struct RepairedShard {
    /// The shard.
    pub shard: usize,
    /// Its cold backend's directory.
    pub path: String,
    /// Where the damaged backend was moved (`null`: it was sound, nothing changed).
    pub backup: Option<String>,
    /// Blocks read back exact (and copied, when rebuilt).
    pub kept: u64,
    /// Blocks dropped because they could not be read back exact (CIDv1 raw).
    pub dropped: Vec<String>,
    /// Dropped keys that are not valid multihashes (counted, not named).
    pub dropped_unnamed: u64,
    /// Why blocks may be gone that cannot be named (`null`: every key was seen).
    pub unknown_loss: Option<String>,
}

/// What `repo repair` did.
#[derive(Debug, Serialize)]
pub struct Repaired {
    /// One entry per shard.
    pub shards: Vec<RepairedShard>,
}

impl Repaired {
    fn from_engine(shards: Vec<ShardRepair>) -> Repaired {
        Repaired {
            shards: shards
                .into_iter()
                .map(|s| RepairedShard {
                    shard: s.shard,
                    path: s.path.display().to_string(),
                    backup: s.backup.map(|b| b.display().to_string()),
                    kept: s.kept,
                    dropped: s.dropped.iter().map(ToString::to_string).collect(),
                    dropped_unnamed: s.dropped_unnamed,
                    unknown_loss: s.unknown_loss,
                })
                .collect(),
        }
    }

    /// Blocks dropped by name, over all shards.
    pub fn dropped(&self) -> usize {
        self.shards.iter().map(|s| s.dropped.len()).sum()
    }
}

impl Report for Repaired {
    fn human(&self) -> String {
        let rebuilt = self.shards.iter().filter(|s| s.backup.is_some()).count();
        let mut out = if rebuilt == 0 {
            format!(
                "all {} cold backends are sound: nothing changed\n",
                self.shards.len()
            )
        } else {
            format!(
                "rebuilt {rebuilt} of {} cold backends: {} blocks kept, {} dropped\n",
                self.shards.len(),
                self.shards.iter().map(|s| s.kept).sum::<u64>(),
                self.dropped()
                    + self
                        .shards
                        .iter()
                        .map(|s| s.dropped_unnamed as usize)
                        .sum::<usize>()
            )
        };
        for shard in self.shards.iter().filter(|s| s.backup.is_some()) {
            out.push_str(&format!(
                "shard {}: rebuilt {} ({} blocks kept); the damaged backend is kept at {}\n",
                shard.shard,
                shard.path,
                shard.kept,
                shard.backup.as_deref().unwrap_or("?")
            ));
            for cid in &shard.dropped {
                out.push_str(&format!("dropped {cid}\n"));
            }
            if shard.dropped_unnamed > 0 {
                out.push_str(&format!(
                    "dropped {} keys that are not multihashes\n",
                    shard.dropped_unnamed
                ));
            }
            if let Some(loss) = &shard.unknown_loss {
                out.push_str(&format!("lost, count unknown: {loss}\n"));
            }
        }
        out
    }
}

/// Repairs the repository's block store; it must not be open elsewhere (the store's lock
/// makes a concurrent open fail).
pub fn run(repo: &Repo) -> Result<Repaired> {
    let config = repo.config()?;
    if !repo.is_initialized() {
        return Err(Error::NotInitialized {
            repo: repo.root().to_path_buf(),
        });
    }
    Ok(Repaired::from_engine(ipfrs_storage::repair_cold(config)?))
}
