//! A shard's request loop: each request from a [`ShardHandle`](crate::ShardHandle) is served
//! here. Writes go to the write queue (`commit`); reads run as tasks of their own, for what a
//! caller's thread could not answer (`read_view`): bloom filter, hot index, cache, then the
//! cold index on the blocking pool.
//!
//! A read that misses the cache fills it only if no delete committed while it was reading
//! (`delete_epoch`), so a deleted block can never come back through a late cache fill.

use std::rc::Rc;

use ipfrs_core_types::key::{Key, cid_of_key};
use ipfrs_tiering::ColdBackend;
use ipfrs_tiering::pack::{Entry, PackLoc};

use crate::cache::BlockCache;
use crate::cold_index::{self, injected_cold_read_failure};
use crate::commit::{enqueue, enqueue_delete, enqueue_flush, enqueue_put};
use crate::damage::{Damage, DamageSite, MAX_DAMAGE_KEPT};
use crate::hot::HotTier;
use crate::protocol::{Fetched, Request};
use crate::queue::{Ack, Pending, WriteOp};
use crate::read_view::ReadCounters;
use crate::shard::{Shard, bump};
use crate::{Error, Result};

/// Serves one request. Writes are queued for the writer; reads run as their own tasks.
pub(crate) fn dispatch(shard: &Rc<Shard>, request: Request) {
    match request {
        Request::Put { items, reply } => {
            bump(
                &shard.counters.put_bytes,
                items.iter().map(|(_, v)| v.len() as u64).sum(),
            );
            enqueue_put(shard, items, reply)
        }
        Request::Delete { keys, reply } => enqueue_delete(shard, keys, reply),
        Request::Promote { key, data, epoch } => {
            if shard.hot.is_some() {
                enqueue(
                    shard,
                    WriteOp {
                        pending: Pending::Promote { key, data, epoch },
                        ack: Ack::Nobody,
                    },
                );
            }
        }
        Request::Flush { reply } => enqueue_flush(shard, reply),
        Request::Get { keys, reply } => {
            shard.spawn(async move |s| {
                let _ = reply.send(get_many(&s, keys).await);
            });
        }
        Request::Has { keys, reply } => {
            shard.spawn(async move |s| {
                let _ = reply.send(has_many(&s, keys).await);
            });
        }
        Request::Size { keys, reply } => {
            shard.spawn(async move |s| {
                let _ = reply.send(size_many(&s, keys).await);
            });
        }
        Request::Scan {
            after,
            limit,
            reply,
        } => {
            shard.spawn(async move |s| {
                let _ = reply.send(scan(&s, after, limit).await);
            });
        }
        Request::Compact { reply } => {
            shard.spawn(async move |s| {
                let _ = reply.send(crate::hot::compaction::compact_all(&s).await);
            });
        }
        Request::Stats { reply } => {
            let _ = reply.send(Ok(shard.stats()));
        }
        Request::Damage { reply } => {
            let _ = reply.send(Ok(shard.damage_report()));
        }
        // Handled by the shard's main loop, which owns the shutdown sequence.
        Request::Shutdown { reply } => {
            let _ = reply.send(Err(Error::Stopped { shard: shard.id }));
        }
    }
}

async fn get_many(shard: &Rc<Shard>, keys: Vec<Key>) -> Result<Vec<Option<Fetched>>> {
    let mut out = vec![None; keys.len()];
    let mut misses = Vec::new();
    {
        let cache = &shard.cache;
        for (i, key) in keys.iter().enumerate() {
            if !shard.may_contain(key) {
                continue;
            }
            if let Some(record) = shard.hot.as_ref().and_then(|hot| hot.fetch(key)) {
                out[i] = Some(Fetched::Record(record));
                continue;
            }
            if let Some(record) = shard.hot.as_ref().and_then(|hot| {
                crate::hot::cached_pack_record(cache, &hot.packs, &hot.segments, key)
            }) {
                ReadCounters::add(&shard.reads.location_hits, 1);
                out[i] = Some(Fetched::Record(record));
                continue;
            }
            match cache.get(key) {
                Some(value) => {
                    ReadCounters::add(&shard.reads.cache_hits, 1);
                    out[i] = Some(Fetched::Data(value));
                }
                None => misses.push(i),
            }
        }
    }
    if misses.is_empty() {
        return Ok(out);
    }
    ReadCounters::add(&shard.reads.cache_misses, misses.len() as u64);
    let epoch = shard.delete_epoch.get();
    let miss_keys: Vec<Key> = misses.iter().map(|&i| keys[i].clone()).collect();
    let (miss_keys, entries, mut damaged) = shard
        .blocking(move |backend| {
            let mut damaged = Vec::new();
            let mut entries = Vec::with_capacity(miss_keys.len());
            for key in &miss_keys {
                if let Some(err) = injected_cold_read_failure(backend.kind()) {
                    return Err(err);
                }
                let entry = match cold_index::get(backend, key) {
                    Ok(entry) => entry,
                    // Damaged backend files (a refused read, a backend that did not open,
                    // an unreadable entry) make this key corrupt: never `None`, which
                    // claims it absent.
                    Err(e) if ipfrs_tiering::backends::is_damage(&e) => {
                        damaged.push((key.clone(), e.to_string()));
                        entries.push(None);
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                // An inline block was checked by its checksum as it was decoded (a
                // mismatch is damage, above); one from a store written before inline
                // checksums is hashed here, on the blocking pool, never on the shard's
                // core. A packed one is a record that the caller checks by its own
                // checksum and key.
                if let Some(Entry::InlineUnchecked(data)) = &entry
                    && let Err(e) = ipfrs_core_types::verify_key(key, data)
                {
                    damaged.push((
                        key.clone(),
                        format!("the cold backend returned other bytes: {e}"),
                    ));
                }
                entries.push(entry);
            }
            Ok((miss_keys, entries, damaged))
        })
        .await?;
    // Packed blocks are records in the pack files' mappings: resolved here, checked by
    // the caller like hot records, never copied or cached (the page cache holds them).
    let mut located = Vec::new();
    // Records in packs whose only copy is in the bucket: (position in `values`, key, where).
    let mut remote_wanted = Vec::new();
    let mut values: Vec<Option<Fetched>> = miss_keys
        .iter()
        .zip(entries)
        .enumerate()
        .map(|(at, (key, entry))| match entry {
            // Not in the backend: a reclamation may have put it back in the hot tier
            // (before dropping its entry) while the backend was asked.
            None => shard
                .hot
                .as_ref()
                .and_then(|hot| hot.fetch(key))
                .map(Fetched::Record),
            Some(Entry::Inline(data) | Entry::InlineUnchecked(data)) => Some(Fetched::Data(data)),
            Some(Entry::Packed(loc)) => {
                // A reclamation may have moved the block back into the hot tier (and
                // dropped the pack) since the entry was read; a delete may have removed
                // it. Only an entry that nothing explains is damage.
                let record = shard
                    .hot
                    .as_ref()
                    .and_then(|hot| hot.pack_record(&loc).or_else(|| hot.fetch(key)));
                let remote = || {
                    shard
                        .hot
                        .as_ref()
                        .is_some_and(|hot| hot.packs.borrow().is_remote(loc.pack))
                };
                // Asked only on a miss: local records pay nothing for it.
                if record.is_none() && remote() {
                    remote_wanted.push((at, key.clone(), loc));
                    return None;
                }
                if record.is_none() && epoch == shard.delete_epoch.get() {
                    damaged.push((
                        key.clone(),
                        format!(
                            "its index entry points into pack {}, which is gone",
                            loc.pack
                        ),
                    ));
                }
                if record.is_some() {
                    located.push((key, loc));
                }
                record.map(Fetched::Record)
            }
        })
        .collect();
    if let Some(remote) = shard.hot.as_ref().and_then(|hot| hot.remote.as_ref())
        && !remote_wanted.is_empty()
    {
        let wanted: Vec<(Key, PackLoc)> = remote_wanted
            .iter()
            .map(|(_, key, loc)| (key.clone(), *loc))
            .collect();
        let records = crate::hot::remote::read_records(shard, remote, &wanted).await?;
        // Checked here, not by the caller: checked bytes may be cached and promoted, which
        // makes the hot tier and the cache the local copies of what the bucket served.
        for ((at, key, _), record) in remote_wanted.into_iter().zip(records) {
            match Fetched::Record(record).into_data(&key) {
                Ok(data) => values[at] = Some(Fetched::Data(data)),
                Err(e) => damaged.push((key, format!("in the bucket: {e}"))),
            }
        }
    }
    bump(&shard.counters.corrupt_cold_reads, damaged.len() as u64);
    if let Some((key, reason)) = damaged.into_iter().next() {
        // The whole read fails, as for a damaged hot record, and nothing it read is
        // cached or promoted: the caller retries key by key to find the others.
        return Err(Error::Corrupt { key, reason });
    }
    let fill = epoch == shard.delete_epoch.get();
    if fill {
        // No delete committed since the entries were read: their locations stand.
        for (key, loc) in located {
            shard.cache.insert_location(key, loc);
        }
    }
    let mut promote = Vec::new();
    {
        let cache = &shard.cache;
        for ((i, key), value) in misses.into_iter().zip(miss_keys).zip(values) {
            if let (true, Some(Fetched::Data(value))) = (fill, &value) {
                if let Some(hot) = &shard.hot
                    && hot.count_cold_read(&key)
                {
                    promote.push((key.clone(), value.clone()));
                }
                cache.insert(key, value.clone());
            }
            out[i] = value;
        }
    }
    for (key, data) in promote {
        enqueue(
            shard,
            WriteOp {
                pending: Pending::Promote { key, data, epoch },
                ack: Ack::Nobody,
            },
        );
    }
    Ok(out)
}

async fn has_many(shard: &Shard, keys: Vec<Key>) -> Result<Vec<bool>> {
    lookup_many(
        shard,
        keys,
        false,
        |hot, key| hot.index.borrow().contains(key).then_some(true),
        |cache, key| cache.contains(key).then_some(true),
        |backend, key| backend.contains(key),
    )
    .await
}

async fn size_many(shard: &Shard, keys: Vec<Key>) -> Result<Vec<Option<u64>>> {
    lookup_many(
        shard,
        keys,
        None,
        |hot, key| {
            hot.index
                .borrow()
                .get(key)
                .map(|loc| Some(u64::from(loc.len)))
        },
        |cache, key| cache.get(key).map(|value| Some(value.len() as u64)),
        cold_index::size,
    )
    .await
}

/// Answers each key from the first tier that can: `absent` where the bloom filter rules
/// the key out, `from_hot` where the hot index knows it, `from_cache` where the cache
/// does, and one blocking batch of `from_backend` calls for the rest.
async fn lookup_many<T: Clone + Send + 'static>(
    shard: &Shard,
    keys: Vec<Key>,
    absent: T,
    from_hot: impl Fn(&HotTier, &[u8]) -> Option<T>,
    from_cache: impl Fn(&BlockCache, &[u8]) -> Option<T>,
    from_backend: fn(&dyn ColdBackend, &[u8]) -> ipfrs_tiering::Result<T>,
) -> Result<Vec<T>> {
    let mut out = vec![absent; keys.len()];
    let mut unsure = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        if !shard.may_contain(key) {
            continue;
        }
        if let Some(value) = shard.hot.as_ref().and_then(|hot| from_hot(hot, key)) {
            out[i] = value;
            continue;
        }
        match from_cache(&shard.cache, key) {
            Some(value) => out[i] = value,
            None => unsure.push(i),
        }
    }
    if unsure.is_empty() {
        return Ok(out);
    }
    let unsure_keys: Vec<Key> = unsure.iter().map(|&i| keys[i].clone()).collect();
    let answers = shard
        .blocking(move |backend| {
            unsure_keys
                .iter()
                .map(|key| from_backend(backend, key))
                .collect::<ipfrs_tiering::Result<Vec<_>>>()
        })
        .await?;
    // A reclamation may have put the block back in the hot tier and dropped its entry
    // while the backend was asked: the hot tier is asked again (it comes first there).
    for (i, answer) in unsure.into_iter().zip(answers) {
        out[i] = shard
            .hot
            .as_ref()
            .and_then(|hot| from_hot(hot, &keys[i]))
            .unwrap_or(answer);
    }
    Ok(out)
}

/// Keys after `after` in ascending order, from both tiers, without duplicates.
async fn scan(shard: &Shard, after: Option<Key>, limit: usize) -> Result<Vec<Key>> {
    // Hot keys are read from the record headers in the segment mappings, on the blocking
    // pool (page faults), then merged with the cold backend's ordered walk.
    let hot_source = shard.hot.as_ref().map(|hot| {
        let segments = hot.segments.borrow().clone();
        let entries: Vec<_> = hot.index.borrow().iter().collect();
        (segments, entries)
    });
    let (merged, unreadable_hot, malformed_cold) = shard
        .blocking(move |backend| {
            let (mut hot_keys, unreadable_hot) = match hot_source {
                Some((segments, entries)) => crate::hot::keys_of(&segments, &entries),
                None => (Vec::new(), Vec::new()),
            };
            if let Some(after) = &after {
                hot_keys.retain(|k| k > after);
            }
            hot_keys.sort_unstable();
            hot_keys.truncate(limit);
            // A cold key that is no multihash (damage the backend did not notice) is skipped
            // and reported, and does not count against the page: one bad key must neither
            // fail the listing nor end it early.
            let mut cold = Vec::with_capacity(limit.min(4096));
            let mut malformed_cold = Vec::new();
            backend.iterate(after.as_deref(), &mut |key, _| {
                if cid_of_key(key).is_ok() {
                    cold.push(key.to_vec());
                } else if malformed_cold.len() < MAX_DAMAGE_KEPT {
                    malformed_cold.push(key.to_vec());
                }
                cold.len() < limit
            })?;
            let mut merged = Vec::with_capacity(limit.min(hot_keys.len() + cold.len()));
            let (mut h, mut c) = (hot_keys.into_iter().peekable(), cold.into_iter().peekable());
            while merged.len() < limit {
                let next = match (h.peek(), c.peek()) {
                    (Some(a), Some(b)) if a == b => {
                        c.next();
                        h.next()
                    }
                    (Some(a), Some(b)) if a < b => h.next(),
                    (Some(_), Some(_)) | (None, Some(_)) => c.next(),
                    (Some(_), None) => h.next(),
                    (None, None) => None,
                };
                match next {
                    Some(key) => merged.push(key),
                    None => break,
                }
            }
            Ok((merged, unreadable_hot, malformed_cold))
        })
        .await?;
    let hot_damage = unreadable_hot.into_iter().map(|(loc, cause)| Damage {
        shard: shard.id,
        site: DamageSite::HotRecord {
            segment: loc.segment,
            offset: u64::from(loc.offset),
        },
        key: None,
        key_proven: false,
        cause,
    });
    let cold_damage = malformed_cold.into_iter().map(|key| Damage {
        shard: shard.id,
        site: DamageSite::ColdBackend {
            detail: "a key that is no multihash".into(),
        },
        key: Some(key),
        key_proven: false,
        cause: "the backend lists a key that does not parse as a multihash".into(),
    });
    shard.note_damage(hot_damage.chain(cold_damage));
    Ok(merged)
}
