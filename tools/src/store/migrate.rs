//! `repo migrate`: convert a store of an older format in place, with the store closed.
//!
//! Each shard's cold backend is copied into the current value format (every value checked
//! against its key; one that does not match is not copied and is named), then swapped in;
//! hot segments stay as they are. An interrupted run leaves a store that only this command
//! opens, and running it again finishes the job. A store already current is left untouched.

use ipfrs_storage::{MigrateReport, ShardOutcome};
use serde::Serialize;

use super::error::{Error, Result};
use super::output::{Report, bytes};
use super::repo::Repo;

/// What `repo migrate` did to one shard.
#[derive(Debug, Serialize)]
pub struct MigratedShard {
    /// The shard.
    pub shard: usize,
    /// Its cold backend's directory.
    pub path: String,
    /// "copied" (converted by this run), "finished" (an interrupted run had copied it; this
    /// one finished the swap), "already-done", or "no-backend".
    pub outcome: &'static str,
    /// Blocks copied by this run.
    pub blocks: u64,
    /// Block bytes copied by this run.
    pub bytes: u64,
    /// Blocks not copied because their stored bytes do not hash to their CID (CIDv1 raw).
    pub refused: Vec<String>,
    /// Keys not copied because they are not multihashes (counted, not named).
    pub refused_unnamed: u64,
    /// Why blocks of the old backend may be missing that cannot be named (`null`: every key
    /// was seen).
    pub unknown_loss: Option<String>,
}

/// What `repo migrate` did.
#[derive(Debug, Serialize)]
pub struct Migrated {
    /// The store's data directory.
    pub path: String,
    /// The format before this run ("1", "1-to-2" for an interrupted run, or the current
    /// format when nothing was to be done).
    pub from: String,
    /// The format now.
    pub to: u32,
    /// Whether anything was changed.
    pub changed: bool,
    /// Shards converted by this run (copied or finished).
    pub shards_converted: usize,
    /// Blocks copied, over all shards.
    pub blocks: u64,
    /// Block bytes copied, over all shards.
    pub bytes: u64,
    /// Values refused, over all shards (named and unnamed).
    pub refused: u64,
    /// One entry per shard.
    pub shards: Vec<MigratedShard>,
}

impl Migrated {
    fn from_engine(report: &MigrateReport) -> Migrated {
        let shards: Vec<MigratedShard> = report
            .shards
            .iter()
            .map(|s| MigratedShard {
                shard: s.shard,
                path: s.path.display().to_string(),
                outcome: match s.outcome {
                    ShardOutcome::Copied => "copied",
                    ShardOutcome::Finished => "finished",
                    ShardOutcome::AlreadyDone => "already-done",
                    ShardOutcome::NoBackend => "no-backend",
                },
                blocks: s.blocks,
                bytes: s.bytes,
                refused: s.refused.iter().map(ToString::to_string).collect(),
                refused_unnamed: s.refused_unnamed,
                unknown_loss: s.unknown_loss.clone(),
            })
            .collect();
        Migrated {
            path: report.path.display().to_string(),
            from: report.from.clone(),
            to: report.to,
            changed: !report.was_current(),
            shards_converted: report
                .shards
                .iter()
                .filter(|s| matches!(s.outcome, ShardOutcome::Copied | ShardOutcome::Finished))
                .count(),
            blocks: report.blocks(),
            bytes: report.bytes(),
            refused: report.refused(),
            shards,
        }
    }
}

impl Report for Migrated {
    fn human(&self) -> String {
        if !self.changed {
            return format!(
                "{} is already at store format {}: nothing changed\n",
                self.path, self.to
            );
        }
        let mut out = format!(
            "migrated {} from store format {} to {}: {} of {} shards converted, {} blocks \
             copied ({}), {} values refused\n",
            self.path,
            self.from,
            self.to,
            self.shards_converted,
            self.shards.len(),
            self.blocks,
            bytes(self.bytes),
            self.refused
        );
        for shard in &self.shards {
            for cid in &shard.refused {
                out.push_str(&format!(
                    "shard {}: refused {cid}: its stored bytes do not match its CID (not copied)\n",
                    shard.shard
                ));
            }
            if shard.refused_unnamed > 0 {
                out.push_str(&format!(
                    "shard {}: refused {} keys that are not multihashes\n",
                    shard.shard, shard.refused_unnamed
                ));
            }
            if let Some(loss) = &shard.unknown_loss {
                out.push_str(&format!(
                    "shard {}: lost, count unknown: {loss}\n",
                    shard.shard
                ));
            }
        }
        out
    }
}

/// Migrates the repository's block store; it must not be open elsewhere (the store's lock
/// makes a concurrent open fail).
pub fn run(repo: &Repo) -> Result<Migrated> {
    let config = repo.config()?;
    if !repo.is_initialized() {
        return Err(Error::NotInitialized {
            repo: repo.root().to_path_buf(),
        });
    }
    Ok(Migrated::from_engine(&ipfrs_storage::migrate(config)?))
}
