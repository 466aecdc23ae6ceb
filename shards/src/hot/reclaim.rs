//! Pack reclamation: giving back the disk space of packs whose blocks were deleted.
//!
//! ```text
//!   a pack's live share < reclaim_below_percent (or nothing live)
//!     --> scan its records (blocking pool)
//!     --> per step (a write group of its own, a few MiB): the records whose index entry still
//!         points at them are rewritten into the hot tier (synced), unless already hot, then
//!         their entries are dropped from the backend (flushed)
//!     --> drop: no entry points into the pack any more: remove its file (after the backend's
//!         clean close when its flush is not durable)
//! ```
//! A crash between the rewrite and the entry's removal leaves both: the hot copy shadows the
//! entry, which points into a pack that is still there. The rewritten blocks are hot again and
//! go through compaction like new ones, so a block is moved at most once per reclamation of
//! its pack.

use std::rc::Rc;

use bytes::Bytes;
use ipfrs_core_types::key::Key;
use ipfrs_tiering::segment::{Loc, Payload, decode};

use super::writer::{RECORD_ALIGN, Record};
use super::{Deferred, HotTier};
use crate::Result;
use crate::cold_index;
use crate::commit::Pending;
use crate::hot::compaction::{block_records, rewrite_claim, submit, submit_in_steps};
use crate::shard::{Shard, bump};

/// The live share under which an explicit compaction (`Engine::compact`, `repo gc`) reclaims a
/// pack, when the configured threshold is lower: an operator asking for space back gets every
/// pack with a fifth or more dead rewritten, where background reclamation waits for half (a
/// rewrite of a pack that is 80% live costs four bytes written per byte given back, worth it
/// only when asked for).
pub(crate) const EXPLICIT_RECLAIM_BELOW_PERCENT: u8 = 80;

/// Reclaims every pack whose live share is under `below_percent`, emptiest first; returns how
/// many were removed.
pub(crate) async fn reclaim_packs(shard: &Rc<Shard>, below_percent: u8) -> Result<u64> {
    let Some(hot) = shard.hot.as_ref() else {
        return Ok(0);
    };
    let candidates = hot.packs.borrow().candidates(below_percent);
    let mut removed = 0;
    for pack in candidates {
        reclaim_pack(shard, hot, pack).await?;
        removed += 1;
    }
    Ok(removed)
}

/// Rewrites what is live in `pack`, then removes it.
async fn reclaim_pack(shard: &Rc<Shard>, hot: &HotTier, pack: u32) -> Result<()> {
    let Some(map) = hot.packs.borrow().map(pack) else {
        return Ok(());
    };
    let (found, _) = block_records(map).await;
    submit_in_steps(shard, found, |records| Pending::Reclaim { pack, records }).await?;
    submit(shard, Pending::DropPack { pack }).await
}

/// A record of a pack that its index entry still points at.
struct Live {
    key: Key,
    len: u64,
    /// Its payload, checked (checksum and key); `None` if the record is damaged.
    data: Option<Bytes>,
}

impl Shard {
    /// One reclamation step (runs as the writer's group): of `records` of `pack`, those still
    /// indexed there are rewritten into the hot tier (unless already hot) and their entries
    /// dropped.
    pub(crate) async fn reclaim(
        &self,
        hot: &HotTier,
        pack: u32,
        records: Vec<(Key, u32)>,
    ) -> Result<()> {
        let Some(map) = hot.packs.borrow().map(pack) else {
            return Ok(());
        };
        let live: Vec<Live> = self
            .blocking(move |backend| {
                let mut live = Vec::new();
                for (key, offset) in records {
                    let Some((len, Some(loc))) = cold_index::locate(backend, &key)? else {
                        continue;
                    };
                    if loc.pack != pack || loc.offset != offset {
                        continue;
                    }
                    let data = decode(map.bytes(), offset as usize, RECORD_ALIGN)
                        .ok()
                        .filter(|r| r.key == key.as_slice())
                        .and_then(|r| match r.payload {
                            Payload::Data(d) => map.slice(
                                offset as usize
                                    + ipfrs_tiering::segment::record::HEADER_LEN
                                    + key.len(),
                                d.len(),
                            ),
                            Payload::Tombstone => None,
                        });
                    live.push(Live { key, len, data });
                }
                Ok(live)
            })
            .await?;
        if live.is_empty() {
            return Ok(());
        }
        let rewrite: Vec<&Live> = {
            let index = hot.index.borrow();
            live.iter()
                .filter(|l| l.data.is_some() && !index.contains(&l.key))
                .collect()
        };
        let _claim = rewrite_claim(self, hot, rewrite.iter().map(|l| (l.key.len(), l.len))).await?;
        let records: Vec<Record<'_>> = rewrite
            .iter()
            .map(|l| Record {
                key: &l.key,
                payload: Payload::Data(l.data.as_deref().unwrap_or(&[])),
            })
            .collect();
        // The hot copies are durable before the entries that the pack answered go.
        if !records.is_empty() {
            let appended = self.append(hot, &records, true).await?;
            let mut index = hot.index.borrow_mut();
            for (l, &(segment, offset)) in rewrite.iter().zip(&appended.locations) {
                index.insert(
                    &l.key,
                    Loc {
                        segment,
                        offset,
                        // Block lengths are far below 4 GiB (the engine's block limit).
                        len: l.len as u32,
                        key_len: l.key.len() as u16,
                        hits: 0,
                    },
                );
            }
        }
        drop(records);
        let keys: Vec<Key> = live.iter().map(|l| l.key.clone()).collect();
        self.blocking(move |backend| {
            backend.delete_batch(&keys)?;
            backend.flush()
        })
        .await?;
        let released: u64 = live.iter().map(|l| l.len).sum();
        hot.packs.borrow_mut().release(pack, released);
        let rewritten: u64 = rewrite.iter().map(|l| l.len).sum();
        bump(&hot.counters.compaction_rewritten_bytes, rewritten);
        let damaged: Vec<&Live> = live.iter().filter(|l| l.data.is_none()).collect();
        for l in &damaged {
            // The block cannot be moved without serving damaged bytes: dropped and counted,
            // as compaction does.
            eprintln!(
                "ipfrs shard {}: dropped a corrupt record of pack {pack} (its block is lost)",
                self.id
            );
            crate::commit::apply_delta(&self.counters.blocks, -1);
            crate::commit::apply_delta(&self.counters.bytes, -(l.len as i64));
        }
        bump(&hot.counters.corrupt_records, damaged.len() as u64);
        Ok(())
    }

    /// Removes `pack`, which no entry points into any more (runs as the writer's group).
    pub(crate) async fn drop_pack(&self, hot: &HotTier, pack: u32) -> Result<()> {
        if !hot.packs.borrow().contains(pack) {
            return Ok(());
        }
        hot.packs.borrow_mut().remove(pack);
        bump(&hot.counters.packs_reclaimed, 1);
        // A crash before the entries' removal is durable must still find the pack.
        self.change_files(hot, Deferred::RemovePack(pack)).await
    }
}
