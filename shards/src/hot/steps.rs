//! The steps of compaction and reclamation as the shard's writer runs them: each is a write
//! group of its own (see `queue::Pending`), so it is ordered with puts and deletes. The
//! compaction task (`compaction`) decides which segments and packs to work on and queues
//! their steps; these functions do them.
//!
//! - `migrate`: moves a few MiB of a segment's live records: still hot ones are rewritten
//!   into the active segment (synced), cold small ones are put into the backend inline,
//!   cold large ones stay where they are and get an index entry (pack, offset, len).
//! - `retire`: turns a segment that has been moved out into a pack (renamed once the
//!   backend's entries are durable) or removes it.
//! - `reclaim`: rewrites into the hot tier the records of a pack its index entries still
//!   point at, then drops those entries; `drop_pack` removes the pack once nothing points
//!   into it. A crash between the rewrite and the entry's removal leaves both: the hot copy
//!   shadows the entry, which points into a pack that is still there.

use std::sync::Arc;

use bytes::Bytes;
use ipfrs_core_types::key::Key;
use ipfrs_tiering::ColdBackend;
use ipfrs_tiering::pack::{self, PackLoc};
use ipfrs_tiering::segment::{Loc, MappedSegment, Payload, decode, decode_header, encoded_len};

use super::append::{append, change_files};
use super::writer::{RECORD_ALIGN, Record};
use super::{Deferred, HotTier};
use crate::cold_index;
use crate::queue::Mode;
use crate::shard::{Shard, apply_delta, bump};
use crate::space;
use crate::{Error, Result};

/// A record read back for a move, checked as far as the move needs (see [`Check`]).
struct Moving {
    key: Key,
    offset: u32,
    loc: Loc,
    /// The payload, a slice of the segment's mapping; `None` if the record is damaged.
    data: Option<Bytes>,
    /// Whether it is rewritten into the hot tier (intact and read since written) rather than
    /// moved to the cold backend (or, damaged, dropped).
    stays_hot: bool,
}

/// A record of a pack that its index entry still points at.
struct Live {
    key: Key,
    len: u64,
    /// Its payload, checked (checksum and key); `None` if the record is damaged.
    data: Option<Bytes>,
}

/// How much of a record a step reads before it trusts it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Every byte, checksum and key: for a payload that is copied (inline into the backend,
    /// or rewritten into the hot tier).
    Full,
    /// The header and key alone: for a large block that stays where it is, in what becomes
    /// a pack. Every read of it checks the whole record, so damage is still reported, never
    /// served; reading every byte here cost a device read per byte ingested (the segment was
    /// written with O_DIRECT, so its payloads are not in the page cache).
    Header,
}

/// The payload of `key`'s record at `offset` in `map`, as a slice of the mapping; `None` if
/// the record is damaged, holds another key, or is not the `len` bytes its index entry says.
fn payload(
    map: &MappedSegment,
    (key, offset, len): (&[u8], u32, u64),
    check: Check,
) -> Option<Bytes> {
    let offset = offset as usize;
    let header = decode_header(map.bytes(), offset, RECORD_ALIGN).ok()?;
    if header.key != key || header.tombstone || header.payload_len as u64 != len {
        return None;
    }
    if check == Check::Full {
        // The whole record (read ahead in one request if it is large), then checked.
        let record = map.slice(offset, header.next_offset - offset)?;
        decode(&record, 0, RECORD_ALIGN).ok()?;
    }
    let start = offset + ipfrs_tiering::segment::record::HEADER_LEN + key.len();
    map.slice_unread(start, header.payload_len)
}

/// Whether the backend's entry for `key` points into `segment` (a pack number is its
/// segment's number).
fn points_here(backend: &dyn ColdBackend, key: &[u8], segment: u32) -> ipfrs_tiering::Result<bool> {
    Ok(matches!(
        crate::cold_index::locate(backend, key)?,
        Some((_, Some(loc))) if loc.pack == segment
    ))
}

/// What a cold block of `len` bytes gives the backend: itself when inline, else only its
/// packed entry (the block stays in its segment, soon a pack, which takes no new room).
pub(crate) fn backend_bytes(len: u64, inline_up_to: u64) -> u64 {
    /// A packed entry, rounded up: tag, pack, offset, lengths.
    const ENTRY_BYTES: u64 = 16;
    if len <= inline_up_to {
        len
    } else {
        ENTRY_BYTES
    }
}

/// Bytes of blocks handed to the cold backend in one `put_batch` during compaction.
const MIGRATE_BATCH_BYTES: usize = 4 << 20;

/// Puts `cold` in batches of about [`MIGRATE_BATCH_BYTES`]. parity-db's and rocksdb's
/// batches copy every value before applying it (sled's did, when the sled backend used
/// `sled::Batch`), so one batch per segment was a transient of a segment's size (32 MiB in
/// the soak) per shard.
/// A crash between batches is harmless: the segment is removed only after the flush that
/// follows, and putting a block again stores the same bytes.
fn put_in_bounded_batches(
    backend: &dyn ColdBackend,
    cold: &[(Vec<u8>, Bytes)],
) -> ipfrs_tiering::Result<()> {
    let mut start = 0;
    let mut bytes = 0;
    for (i, (_, data)) in cold.iter().enumerate() {
        bytes += data.len();
        if bytes >= MIGRATE_BATCH_BYTES || i + 1 == cold.len() {
            backend.put_batch(&cold[start..=i])?;
            start = i + 1;
            bytes = 0;
        }
    }
    Ok(())
}

/// The room a rewrite of records of these (key length, payload length) into the hot tier
/// needs: only a new segment, if they do not fit in the active one (they take at most a
/// header and padding more than their payloads, and a mark), paid by the reserve if need be.
pub(crate) async fn rewrite_claim(
    shard: &Shard,
    hot: &HotTier,
    sizes: impl Iterator<Item = (usize, u64)>,
) -> Result<Option<space::Claim>> {
    let record_bytes: u64 = sizes
        .map(|(key_len, len)| encoded_len(key_len, len as usize, RECORD_ALIGN) as u64)
        .sum::<u64>()
        + super::writer::DMA_ALIGN;
    let room = hot.writer.borrow().as_ref().map_or(0, |w| w.room());
    if record_bytes > room {
        match check_room(shard, hot.config.segment_bytes, Mode::Cleaning).await {
            Ok(claim) => Ok(Some(claim)),
            Err(Error::NoSpace {
                shard: id, path, ..
            }) => Err(Error::NoSpace {
                shard: id,
                path,
                detail: format!(
                    ": a new segment for a rewrite of {record_bytes} bytes: the active \
                     one has {room} left; the reserve holds {} of {} bytes",
                    shard.writes.space.held(),
                    shard.writes.space.target()
                ),
            }),
            Err(e) => Err(e),
        }
    } else {
        Ok(None)
    }
}

/// Makes sure `need` bytes are free: for an explicit compaction, releasing the shard's
/// reserve if need be; for background compaction, leaving the headroom free after them (see
/// `space`), so that filling the disk never takes the room a later `repo gc` needs.
/// The returned claim counts the room as taken until it is dropped.
pub(crate) async fn check_room(shard: &Shard, need: u64, mode: Mode) -> Result<space::Claim> {
    let freeing = mode != Mode::Background;
    let keep = if freeing {
        0
    } else {
        shard
            .hot
            .as_ref()
            .map_or(0, |hot| space::headroom(hot.config.segment_bytes))
    };
    let room = Arc::clone(&shard.writes.space);
    crate::rt::spawn_blocking(move || room.ensure(need, keep, freeing))
        .await
        .map_err(|free| Error::NoSpace {
            shard: shard.id,
            path: shard.writes.space.dir().to_path_buf(),
            detail: format!(
                ": compaction needs {need} bytes{}, {free} free",
                if keep > 0 {
                    format!(" and {keep} more left free")
                } else {
                    String::new()
                }
            ),
        })
}

/// One compaction step (runs as the writer's group): moves the records of `segment` that
/// the index still points at.
pub(crate) async fn migrate(
    shard: &Shard,
    hot: &HotTier,
    segment: u32,
    records: Vec<(Key, u32)>,
    mode: Mode,
) -> Result<()> {
    let Some(map) = hot.segments.borrow().get(&segment).cloned() else {
        return Ok(());
    };
    let live: Vec<(Key, u32, Loc)> = {
        let index = hot.index.borrow();
        records
            .into_iter()
            .filter_map(|(key, offset)| {
                let loc = index.get(&key)?;
                (loc.segment == segment && loc.offset == offset).then_some((key, offset, loc))
            })
            .collect()
    };
    if live.is_empty() {
        return Ok(());
    }
    // The cold backend is never written without room (see `space`): an explicit
    // compaction releases the reserve for it if need be, background compaction leaves the
    // headroom alone, and a step that does not fit fails with `NoSpace` before the backend
    // sees it (the segment was checked as a whole, but other shards write meanwhile).
    // Rewrites into the hot tier are counted as cold too: an upper bound.
    let inline_up_to = hot.inline_up_to();
    let moving_bytes: u64 = live
        .iter()
        .map(|(_, _, loc)| backend_bytes(u64::from(loc.len), inline_up_to))
        .sum();
    // Held until the step's writes are done, so other shards count them as taken.
    let _claim = if mode == Mode::Cleaning {
        let sizes = live
            .iter()
            .map(|(key, _, loc)| (key.len(), u64::from(loc.len)));
        rewrite_claim(shard, hot, sizes).await?
    } else {
        Some(check_room(shard, space::cold_need(moving_bytes), mode).await?)
    };
    // Keep blocks read since their write, unless hot data alone fills half the budget
    // (then everything moves, so compaction always makes progress).
    let keep_reads = hot.config.keep_hot_reads;
    let room_for_hot = hot.index.borrow().bytes() < hot.budget_share() / 2;
    let cleaning = mode == Mode::Cleaning;
    // Read and check every record on the blocking pool (page faults and checksums stay
    // off the shard's core), and put the cold ones into the backend there, durably.
    let (moving, cold_bytes, packed_bytes, packed_records) = shard
        .blocking(move |backend| {
            let mut packed_bytes = 0u64;
            // Record bytes of the blocks indexed in place (the rest of the moved records
            // left the segment: copied inline, rewritten hot, or dropped as damaged).
            let mut packed_records = 0u64;
            let mut moving = Vec::with_capacity(live.len());
            let mut cold = Vec::new();
            let mut stale = Vec::new();
            for (key, offset, loc) in live {
                let hot_again =
                    cleaning || (room_for_hot && keep_reads > 0 && loc.hits >= keep_reads);
                let check = if !hot_again && u64::from(loc.len) > inline_up_to {
                    Check::Header
                } else {
                    Check::Full
                };
                let data = payload(&map, (&key, offset, u64::from(loc.len)), check);
                let stays_hot = data.is_some() && hot_again;
                // A small cold block is copied into the backend; a large one stays in this
                // segment, soon a pack, and the backend learns where.
                if let (Some(data), false) = (&data, stays_hot) {
                    let entry = if data.len() as u64 <= inline_up_to {
                        crate::cold_index::inline(&key, data)
                    } else {
                        packed_bytes += data.len() as u64;
                        packed_records += loc.record_len() as u64;
                        pack::encode_packed(PackLoc {
                            pack: segment,
                            offset,
                            len: data.len() as u32,
                            key_len: key.len() as u16,
                        })
                    };
                    cold.push((key.clone(), entry));
                } else if stays_hot && points_here(backend, &key, segment)? {
                    // An earlier compaction of this segment indexed the block here, then
                    // the process died before the segment became a pack. The block now
                    // moves to another hot segment and this file may be removed: the
                    // entry must not outlive it (it would be served once the hot copy
                    // is deleted or compacted away).
                    stale.push(key.clone());
                }
                moving.push(Moving {
                    key,
                    offset,
                    loc,
                    data,
                    stays_hot,
                });
            }
            // What the backend is given: inline blocks and packed entries, not the blocks
            // that stay in the pack (those are written once, in their segment).
            let cold_bytes: u64 = cold.iter().map(|(_, d)| d.len() as u64).sum();
            // The stale entries' removal is made durable by the flush before the file
            // changes (`change_files`), which is all it must precede.
            if !stale.is_empty() {
                backend.delete_batch(&stale)?;
            }
            if !cold.is_empty() {
                put_in_bounded_batches(backend, &cold)?;
                backend.flush()?;
            }
            Ok((moving, cold_bytes, packed_bytes, packed_records))
        })
        .await?;
    let read_bytes: u64 = moving.iter().map(|m| m.loc.record_len() as u64).sum();
    if let Some(packing) = hot.packing.borrow_mut().get_mut(&segment) {
        packing.held += packed_bytes;
        packing.moved_out += read_bytes.saturating_sub(packed_records);
    }
    let rewrite: Vec<&Moving> = moving.iter().filter(|m| m.stays_hot).collect();
    let records: Vec<Record<'_>> = rewrite
        .iter()
        .map(|m| Record {
            key: &m.key,
            payload: Payload::Data(m.data.as_deref().unwrap_or(&[])),
        })
        .collect();
    // Rewritten records must be durable before their old segment can be removed.
    let appended = if records.is_empty() {
        None
    } else {
        Some(append(shard, hot, &records, true).await?)
    };
    let mut index = hot.index.borrow_mut();
    let mut rewritten_bytes = 0u64;
    if let Some(appended) = &appended {
        for (m, &(new_segment, new_offset)) in rewrite.iter().zip(&appended.locations) {
            rewritten_bytes += u64::from(m.loc.len);
            index.insert(
                &m.key,
                Loc {
                    segment: new_segment,
                    offset: new_offset,
                    // Halved at each move: a block must keep being read to stay hot.
                    hits: m.loc.hits / 2,
                    ..m.loc
                },
            );
        }
    }
    let mut damaged = 0u64;
    for m in moving.iter().filter(|m| !m.stays_hot) {
        // Where a block that stays in this segment (soon a pack) lies, for cold reads that
        // need not ask the backend: its entry is durable by now.
        if let Some(data) = m.data.as_ref().filter(|d| d.len() as u64 > inline_up_to) {
            shard.cache.insert_location(
                &m.key,
                PackLoc {
                    pack: segment,
                    offset: m.offset,
                    len: data.len() as u32,
                    key_len: m.key.len() as u16,
                },
            );
        }
        index.remove_if_at(&m.key, segment, m.offset);
        if m.data.is_none() {
            // The block cannot be moved without serving damaged bytes: it is dropped
            // and counted, never copied.
            damaged += 1;
            eprintln!(
                "ipfrs shard {}: dropped a corrupt hot record in segment {segment} at \
                 offset {}",
                shard.id, m.offset
            );
            apply_delta(&shard.counters.blocks, -1);
            apply_delta(&shard.counters.bytes, -i64::from(m.loc.len));
        }
    }
    bump(&hot.counters.corrupt_records, damaged);
    bump(&hot.counters.compaction_read_bytes, read_bytes);
    bump(&hot.counters.compaction_cold_bytes, cold_bytes);
    bump(&hot.counters.compaction_rewritten_bytes, rewritten_bytes);
    Ok(())
}

/// Removes a compacted segment (runs as the writer's group).
pub(crate) async fn retire(shard: &Shard, hot: &HotTier, segment: u32) -> Result<()> {
    let active = hot.writer.borrow().as_ref().map(|w| w.active());
    // Already retired (two compactions of one segment), or still being written.
    if active == Some(segment) || !hot.segments.borrow().contains_key(&segment) {
        return Ok(());
    }
    if hot.index.borrow().live_in(segment) > 0 {
        // A record was added to the index after the scan (cannot happen: segments are
        // sealed) — keep the file rather than lose it.
        return Err(Error::segment_io(
            shard.id,
            "retiring",
            ipfrs_tiering::segment::file::segment_path(&hot.dir, segment),
        )(std::io::Error::other(
            "the segment still has live records after compaction",
        )));
    }
    // Readers holding blocks of this segment keep its mapping alive.
    let map = hot.segments.borrow_mut().remove(&segment);
    let packing = hot
        .packing
        .borrow_mut()
        .remove(&segment)
        .unwrap_or_default();
    // Index entries point into it: it stays, as a pack (readable through the packs from
    // now on, whatever its file is called).
    let change = match map {
        Some(map) if packing.held > 0 => {
            hot.packs.borrow_mut().insert(
                segment,
                map,
                packing.held,
                packing.records_end.saturating_sub(packing.moved_out),
                packing.records_end,
            );
            Deferred::MakePack {
                segment,
                records_end: packing.records_end,
            }
        }
        _ => Deferred::RemoveSegment(segment),
    };
    bump(&hot.counters.segments_compacted, 1);
    // Until the backend's flush is durable, the entries and moved blocks may be only in
    // its memory: the file keeps its segment name (and its hint), and recovery replays it
    // as hot if we crash.
    change_files(shard, hot, change).await?;
    if let Some(remote) = &hot.remote {
        remote.wake();
    }
    Ok(())
}

/// One reclamation step (runs as the writer's group): of `records` of `pack`, those still
/// indexed there are rewritten into the hot tier (unless already hot) and their entries
/// dropped.
pub(crate) async fn reclaim(
    shard: &Shard,
    hot: &HotTier,
    pack: u32,
    records: Vec<(Key, u32)>,
) -> Result<()> {
    let Some(map) = hot.packs.borrow().map(pack) else {
        return Ok(());
    };
    let live: Vec<Live> = shard
        .blocking(move |backend| {
            let mut live = Vec::new();
            for (key, offset) in records {
                let Some((len, Some(loc))) = cold_index::locate(backend, &key)? else {
                    continue;
                };
                if loc.pack != pack || loc.offset != offset {
                    continue;
                }
                let data = payload(&map, (&key, offset, len), Check::Full);
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
    let _claim = rewrite_claim(shard, hot, rewrite.iter().map(|l| (l.key.len(), l.len))).await?;
    let records: Vec<Record<'_>> = rewrite
        .iter()
        .map(|l| Record {
            key: &l.key,
            payload: Payload::Data(l.data.as_deref().unwrap_or(&[])),
        })
        .collect();
    // The hot copies are durable before the entries that the pack answered go.
    if !records.is_empty() {
        let appended = append(shard, hot, &records, true).await?;
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
    shard
        .blocking(move |backend| {
            backend.delete_batch(&keys)?;
            backend.flush()
        })
        .await?;
    // Their entries are gone: the blocks are hot again or lost, and this pack goes soon.
    for l in &live {
        shard.cache.forget_location(&l.key);
    }
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
            shard.id
        );
        apply_delta(&shard.counters.blocks, -1);
        apply_delta(&shard.counters.bytes, -(l.len as i64));
    }
    bump(&hot.counters.corrupt_records, damaged.len() as u64);
    Ok(())
}

/// Removes `pack`, which no entry points into any more (runs as the writer's group).
pub(crate) async fn drop_pack(shard: &Shard, hot: &HotTier, pack: u32) -> Result<()> {
    if !hot.packs.borrow().contains(pack) {
        return Ok(());
    }
    hot.packs.borrow_mut().remove(pack);
    bump(&hot.counters.packs_reclaimed, 1);
    // A crash before the entries' removal is durable must still find the pack.
    change_files(shard, hot, Deferred::RemovePack(pack)).await?;
    // A later manifest generation leaves it out, once what was rewritten out of it is in
    // the bucket too; the bucket deletes it a grace later.
    if let Some(remote) = &hot.remote {
        let active = hot.writer.borrow().as_ref().map_or(pack, |w| w.active());
        remote.retire(pack, active);
    }
    Ok(())
}
