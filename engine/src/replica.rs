//! A read-only replica of a store whose packs are on an object store (issue 16).
//!
//! The replica needs nothing of the primary's data directory: it lists the bucket's shards,
//! reads each shard's newest manifest, fetches the hint file of every pack the manifest lists
//! and replays the hints in pack order into an in-memory index, exactly as recovery replays
//! segments ([`ipfrs_tiering::segment::replay`]): a pack is a former segment, so pack order
//! is sequence order, a later record of a key wins and a tombstone removes it. A pack whose
//! hint is missing or damaged is read whole (checked against its manifest entry's digest) and
//! scanned instead.
//!
//! Reads look the key up in that index and fetch the record's exact extent with a ranged GET;
//! every record is checked (checksum and key, as the engine checks a hot record) before its
//! bytes are served, so a damaged record is [`ReplicaError::Corrupt`], never data. `has` and
//! `get_size` answer from the index alone: an absent block never reaches the object store.
//!
//! [`Replica::refresh`] reads the manifests again. A manifest that only adds packs numbered
//! above every pack already indexed continues the replay where it stopped (only the new
//! hints are fetched); any other change (a pack dropped by reclamation, a pack numbered
//! below one indexed) rebuilds that shard's index from all its hints, since dropping a pack
//! can bring back an older record of a key that the dropped pack had superseded.
//!
//! Known limits:
//! - The replica sees what is uploaded: blocks still in the primary's hot segments, and
//!   packs not yet listed in a manifest, are absent until a later [`Replica::refresh`].
//! - A primary that reclaims a pack rewrites its live records into its hot tier; it keeps the
//!   pack listed until the segment they went to is packed and uploaded, so a replica serves
//!   them from the old pack meanwhile. A block deleted after that rewrite (its hot copy
//!   tombstoned) is still served from the old pack until the pack leaves the manifest.
//! - Deletes reach the replica through the manifest's dead records (the primary lists each
//!   deleted block's record with its next generation); a delete the primary acknowledged
//!   but has not published yet is seen after the next generation and a refresh.
//! - A pack deleted from the bucket after it left the manifest (past the primary's grace
//!   period) fails reads of a replica that has not refreshed since with
//!   [`ReplicaError::Remote`] (not found), never with other bytes.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use bytes::Bytes;
use ipfrs_core_types::Cid;
use ipfrs_core_types::key::{cid_of_key, identity_data, key_of};
use ipfrs_remote::readahead::Plan;
use ipfrs_remote::{
    Manifest, PackBucket, PackEntry, Pending, ReadAhead, RemoteConfig, RemoteError, RemoteTier,
};
use ipfrs_shards::Fetched;
use ipfrs_tiering::segment::hint::decode_hint;
use ipfrs_tiering::segment::index::fingerprint;
use ipfrs_tiering::segment::recover::Kind;
use ipfrs_tiering::segment::{
    Alignment, HotIndex, Loc, Recovered, SegmentScan, replay, scan_segment,
};

/// Packs read at once, by a batched read or by indexing (hints): a bound on the sockets and
/// buffers one call holds, not a tuned figure (Garage on loopback is saturated by 8 requests
/// in flight, `ipfrs-remote`'s bucket_bench).
pub const READS_IN_FLIGHT: usize = 32;

/// An error of a [`Replica`]. Separate from the engine's [`crate::Error`]: a replica has no
/// shards, disk or backend to fail, so a caller matches only what can happen here.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplicaError {
    /// A record read from a pack failed its check (checksum, key or extent): its bytes are not
    /// served.
    #[error(
        "block {} is corrupt in shard {shard} pack {pack} at offset {offset}: {reason}",
        key_name(key)
    )]
    Corrupt {
        /// The block's key (its multihash).
        key: Vec<u8>,
        /// The shard whose pack holds the record.
        shard: u32,
        /// The pack.
        pack: u32,
        /// The record's offset in the pack.
        offset: u32,
        /// Which check failed.
        reason: String,
    },
    /// The object store failed or refused a request (the error names the object).
    #[error(transparent)]
    Remote(#[from] RemoteError),
}

impl ReplicaError {
    /// The CID (CIDv1 raw) of the block a [`ReplicaError::Corrupt`] names.
    pub fn corrupt_cid(&self) -> Option<Cid> {
        match self {
            ReplicaError::Corrupt { key, .. } => cid_of_key(key).ok(),
            ReplicaError::Remote(_) => None,
        }
    }
}

/// A key for messages: its CID when it is a multihash, else its bytes in hex.
fn key_name(key: &[u8]) -> String {
    match cid_of_key(key) {
        Ok(cid) => cid.to_string(),
        Err(_) => key.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

/// The result of a replica operation.
pub type ReplicaResult<T> = std::result::Result<T, ReplicaError>;

/// What a [`Replica::refresh`] changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Refreshed {
    /// Packs indexed that the previous manifests did not list.
    pub packs_added: usize,
    /// Packs no longer listed, whose records are no longer served.
    pub packs_dropped: usize,
    /// Shards whose index was rebuilt from all their hints (a pack dropped, or one added
    /// below the highest indexed) rather than continued.
    pub shards_rebuilt: usize,
}

/// A read-only view of a store's packs on an object store, from another machine or data
/// directory: every block in the uploaded packs is served, checked, by ranged reads.
///
/// Memory: one index entry per key the packs hold live, the engine's hot-index entry (a
/// 128-bit key fingerprint and a 16-byte location, 32 bytes, plus a control byte, at a load
/// factor between 7/16 and 7/8): 37 to 75 bytes per block, whatever the block's size. Keys
/// are not stored (each record carries its key, checked on every read). Opening and
/// refreshing hold a shard's hint files in memory while they replay them (about 20 bytes plus
/// the key's length per record).
///
/// Lookups probe each shard's index in turn: the replica does not know the primary's shard
/// count (a shard with nothing uploaded has no folder), so it cannot route a key.
///
/// It is also a [`crate::BlockStore`] that refuses writes ([`crate::Error::ReadOnly`]), so
/// code written against the trait (a gateway) serves a bucket unchanged.
///
/// ```no_run
/// use ipfrs_remote::RemoteConfig;
/// use ipfrs_storage::{Block, Replica};
/// let mut config = RemoteConfig::from_env("my-bucket");
/// config.prefix = "store-a".to_owned();
/// let replica = Replica::open(config)?;
/// let block = Block::new(&b"some data"[..])?;
/// if replica.has(block.cid()) {
///     let data = futures_lite::future::block_on(replica.get(block.cid()))?;
///     assert_eq!(data.as_ref(), Some(block.data()));
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Replica {
    bucket: PackBucket,
    /// Every shard with a manifest, ascending by shard number.
    shards: RwLock<Vec<ShardIndex>>,
    /// Held by a refresh from its first request to its swap, so two refreshes do not each
    /// diff against a state the other is replacing.
    refreshing: Mutex<()>,
    /// Set by [`BlockStore::close`](crate::BlockStore::close): the trait's calls then fail
    /// with [`crate::Error::Closed`] (this type's own methods go on serving).
    closed: AtomicBool,
    /// The records of the pack a listing read last: a listing walks a pack a page at a time,
    /// and each page would otherwise fetch its hint again.
    listed: Mutex<Option<ListedPack>>,
    /// Read-ahead of sequential reads (a gateway walking a file), and the ranges it cached.
    readahead: ReadAhead,
    /// Records read by a request of their own, and records served from read-aheads.
    fetched: AtomicU64,
    from_readahead: AtomicU64,
}

/// How a replica's reads were served since it opened ([`Replica::reads`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplicaReads {
    /// Records fetched by a ranged request made for them.
    pub fetched: u64,
    /// Records served from a range read ahead (cached, or in flight for another read).
    pub from_readahead: u64,
    /// Bytes of read-ahead ranges cached now.
    pub cached_bytes: u64,
}

/// A pack's records, as a listing reads them: (offset, key) in pack order.
#[derive(Clone)]
struct ListedPack {
    shard: u32,
    entry: PackEntry,
    /// Every record that names a block (puts, and damaged records whose key could be read),
    /// by offset.
    records: Arc<Vec<(u32, Vec<u8>)>>,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Replica({:?}, {} blocks)",
            self.bucket,
            self.block_count()
        )
    }
}

/// One shard's index, at the manifest generation it was built from.
struct ShardIndex {
    shard: u32,
    generation: u64,
    /// The manifest's packs (ascending), to tell what a newer manifest adds and drops.
    packs: Vec<PackEntry>,
    /// Key fingerprint -> record, with the pack number in `Loc::segment`.
    index: HotIndex,
    /// The manifest's dead records (pack, offset): blocks the writer deleted after their
    /// pack was sealed, which the hints still list. A key whose record is here is absent.
    dead: std::collections::HashSet<(u32, u32)>,
    /// Blocks served and their bytes: the index's records not in `dead`. Counted when the
    /// index or `dead` changes (a refresh), so that `stats` and `block_count` do not walk
    /// the index on every call.
    served: (u64, u64),
}

impl ShardIndex {
    /// Counts [`ShardIndex::served`] again, after the index or `dead` changed.
    fn recount(&mut self) {
        self.served = self
            .index
            .iter()
            .filter(|(_, loc)| !self.dead.contains(&(loc.segment, loc.offset)))
            .fold((0, 0), |(blocks, bytes), (_, loc)| {
                (blocks + 1, bytes + u64::from(loc.len))
            });
    }
}

impl Replica {
    /// Opens `config`'s bucket and indexes every shard's newest manifest. A wrong endpoint or
    /// credentials fail here (see [`PackBucket::open`]); a bucket with no manifests yet opens
    /// as an empty replica that [`Replica::refresh`] fills later.
    ///
    /// Blocks the calling thread while it lists, reads manifests and fetches hints (one
    /// request per pack): from an async executor, call it from a blocking pool.
    /// Reads read ahead as a store's do by default (`RemoteTier::new`'s figures).
    pub fn open(config: RemoteConfig) -> ReplicaResult<Replica> {
        Replica::open_tier(&RemoteTier::new(config))
    }

    /// [`Replica::open`] of `tier`'s bucket, reading ahead as `tier` says
    /// (`readahead_bytes`, `range_cache_bytes`; the rest of `tier` is the writer's business).
    pub fn open_tier(tier: &RemoteTier) -> ReplicaResult<Replica> {
        let bucket = PackBucket::open(&tier.bucket)?;
        Replica::with_readahead(bucket, tier.readahead_bytes, tier.range_cache_bytes)
    }

    /// [`Replica::open`] over a bucket already opened (any object store: memory or local
    /// files for tests and single machines).
    pub fn open_with_bucket(bucket: PackBucket) -> ReplicaResult<Replica> {
        Replica::with_readahead(
            bucket,
            RemoteTier::DEFAULT_READAHEAD_BYTES,
            RemoteTier::DEFAULT_RANGE_CACHE_BYTES,
        )
    }

    fn with_readahead(bucket: PackBucket, readahead: u64, cache: u64) -> ReplicaResult<Replica> {
        let replica = Replica {
            readahead: ReadAhead::new(readahead, cache),
            fetched: AtomicU64::new(0),
            from_readahead: AtomicU64::new(0),
            bucket,
            shards: RwLock::new(Vec::new()),
            refreshing: Mutex::new(()),
            closed: AtomicBool::new(false),
            listed: Mutex::new(None),
        };
        replica.refresh()?;
        Ok(replica)
    }

    /// Reads every shard's newest manifest again and brings the index to it: packs new since
    /// are indexed, packs no longer listed are dropped (their blocks absent unless another
    /// listed pack holds them). Reads go on meanwhile against the previous index; each
    /// shard's new index replaces its old one at once. On error, shards already brought
    /// forward stay so and the rest keep their previous index.
    ///
    /// Blocks the calling thread, like [`Replica::open`].
    pub fn refresh(&self) -> ReplicaResult<Refreshed> {
        let _one_at_a_time = self
            .refreshing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let listed = self.bucket.shards().wait()?;
        // Every manifest is asked for before any is waited on: the requests overlap.
        let pending: Vec<(u32, Pending<Option<Manifest>>)> = listed
            .iter()
            .map(|&shard| (shard, self.bucket.latest_manifest(shard)))
            .collect();
        let mut manifests = Vec::with_capacity(pending.len());
        for (shard, manifest) in pending {
            if let Some(manifest) = manifest.wait()? {
                manifests.push((shard, manifest));
            }
        }
        let mut report = Refreshed::default();
        // Shards whose manifests are gone from the bucket are no longer served.
        self.write_shards(|shards| {
            shards.retain(|s| manifests.iter().any(|(shard, _)| *shard == s.shard));
        });
        for (shard, manifest) in manifests {
            self.refresh_shard(shard, manifest, &mut report)?;
        }
        Ok(report)
    }

    /// Brings one shard's index to `manifest`.
    fn refresh_shard(
        &self,
        shard: u32,
        manifest: Manifest,
        report: &mut Refreshed,
    ) -> ReplicaResult<()> {
        let current = self.read_shards(|shards| {
            shards
                .iter()
                .find(|s| s.shard == shard)
                .map(|s| (s.generation, s.packs.clone()))
        });
        let Some((generation, packs)) = current else {
            let index = self.index_packs(shard, &manifest.packs)?.index;
            report.packs_added += manifest.packs.len();
            let mut built = ShardIndex {
                shard,
                generation: manifest.generation,
                packs: manifest.packs,
                index,
                dead: manifest.dead.iter().copied().collect(),
                served: (0, 0),
            };
            built.recount();
            self.write_shards(|shards| {
                let at = shards.partition_point(|s| s.shard < shard);
                shards.insert(at, built);
            });
            return Ok(());
        };
        // The dead records change without the packs changing (a delete).
        let dead: std::collections::HashSet<(u32, u32)> = manifest.dead.iter().copied().collect();
        if generation == manifest.generation && packs == manifest.packs {
            return Ok(());
        }
        if packs == manifest.packs {
            self.write_shards(|shards| {
                if let Some(s) = shards.iter_mut().find(|s| s.shard == shard) {
                    s.dead = dead;
                    s.generation = manifest.generation;
                    s.recount();
                }
            });
            return Ok(());
        }
        // An entry that changed under the same pack number counts as dropped and added.
        let dropped = packs.iter().filter(|p| !manifest.packs.contains(p)).count();
        let added: Vec<PackEntry> = manifest
            .packs
            .iter()
            .filter(|p| !packs.contains(p))
            .copied()
            .collect();
        report.packs_added += added.len();
        report.packs_dropped += dropped;
        let highest = packs.iter().map(|p| p.pack).max();
        let appends = dropped == 0 && added.iter().all(|p| Some(p.pack) > highest);
        if appends {
            // The replay continues: a key the new packs touch ends as their last record of
            // it says (a put points at it, a tombstone removes it), any other key is as it was.
            let tail = self.index_packs(shard, &added)?;
            self.write_shards(|shards| {
                if let Some(s) = shards.iter_mut().find(|s| s.shard == shard) {
                    for key in &tail.tombstoned {
                        s.index.remove_fingerprint(fingerprint(key));
                    }
                    for (fp, loc) in tail.index.iter() {
                        s.index.insert_fingerprint(fp, loc);
                    }
                    s.generation = manifest.generation;
                    s.packs = manifest.packs;
                    s.dead = dead;
                    s.recount();
                }
            });
        } else {
            let index = self.index_packs(shard, &manifest.packs)?.index;
            report.shards_rebuilt += 1;
            self.write_shards(|shards| {
                if let Some(s) = shards.iter_mut().find(|s| s.shard == shard) {
                    s.index = index;
                    s.generation = manifest.generation;
                    s.packs = manifest.packs;
                    s.dead = dead;
                    s.recount();
                }
            });
        }
        Ok(())
    }

    /// Replays `packs` (ascending) of `shard` from their hints, or from the packs themselves
    /// where a hint does not decode.
    fn index_packs(&self, shard: u32, packs: &[PackEntry]) -> ReplicaResult<Recovered> {
        let mut sources = Vec::with_capacity(packs.len());
        for window in packs.chunks(READS_IN_FLIGHT) {
            let pending: Vec<Pending<Bytes>> = window
                .iter()
                .map(|p| self.bucket.read_hint(shard, p.pack))
                .collect();
            for (entry, hint) in window.iter().zip(pending) {
                let sound = |hint: &Bytes| {
                    decode_hint(hint).is_some_and(|scan| scan.end as u64 <= entry.pack_len)
                };
                let source = match hint.wait() {
                    Ok(hint) if sound(&hint) => Source::Hint(hint),
                    // A pack sealed without a hint, or a hint damaged in the bucket (or one
                    // whose records run past its pack): the pack's own records say the same,
                    // at the cost of reading it whole.
                    Ok(_) | Err(RemoteError::NotFound { .. }) => {
                        Source::Pack(self.bucket.read_pack(shard, *entry).wait()?)
                    }
                    Err(e) => return Err(e.into()),
                };
                sources.push((entry.pack, source));
            }
        }
        let scans: Vec<(u32, SegmentScan<'_>)> = sources
            .iter()
            .map(|(pack, source)| (*pack, source.scan()))
            .collect();
        Ok(replay(&scans, |_| {}))
    }

    /// The block's bytes, `None` if no indexed pack holds it. An identity CID is answered
    /// from the CID itself.
    ///
    /// # Errors
    /// [`ReplicaError::Corrupt`] if the record fails its check (never served);
    /// [`ReplicaError::Remote`] if the object store fails the read.
    pub async fn get(&self, cid: &Cid) -> ReplicaResult<Option<Bytes>> {
        Ok(self
            .get_many(std::slice::from_ref(cid))
            .await?
            .pop()
            .flatten())
    }

    /// The blocks' bytes, in input order. The records are grouped by pack and sorted by
    /// offset: one ranged request per pack (the object store joins close ranges), up to
    /// [`READS_IN_FLIGHT`] packs' requests in flight at once. Absent blocks cost no request.
    ///
    /// # Errors
    /// As [`Replica::get`]: the first failure fails the whole call.
    pub async fn get_many(&self, cids: &[Cid]) -> ReplicaResult<Vec<Option<Bytes>>> {
        let mut out: Vec<Option<Bytes>> = vec![None; cids.len()];
        // By (shard, pack), with the pack's manifest entry; each pack's records sorted below.
        let mut wanted: BTreeMap<(u32, u32), (Option<PackEntry>, Vec<Wanted>)> = BTreeMap::new();
        self.read_shards(|shards| {
            for (i, cid) in cids.iter().enumerate() {
                if let Some(data) = identity_data(cid) {
                    out[i] = Some(Bytes::copy_from_slice(data));
                    continue;
                }
                let key = key_of(cid);
                if let Some((shard, loc)) = locate(shards, &key) {
                    wanted
                        .entry((shard, loc.segment))
                        .or_insert_with(|| (listed_pack(shards, shard, loc.segment), Vec::new()))
                        .1
                        .push(Wanted { loc, at: i, key });
                }
            }
        });
        let mut groups = wanted.into_iter().peekable();
        while groups.peek().is_some() {
            let window: Vec<_> = groups
                .by_ref()
                .take(READS_IN_FLIGHT)
                .map(|((shard, pack), (listed, mut records))| {
                    records.sort_unstable_by_key(|w| w.loc.offset);
                    let items: Vec<(usize, Range<u64>)> = records
                        .iter()
                        .enumerate()
                        .map(|(j, w)| {
                            let start = u64::from(w.loc.offset);
                            (j, start..start + w.loc.record_len() as u64)
                        })
                        .collect();
                    // Named by its digest too: a range cached from one pack is never taken
                    // for another that came to carry its number.
                    let id = listed.map_or(u64::from(shard) << 32 | u64::from(pack), |e| {
                        let mut name = [0u8; 16];
                        name[..4].copy_from_slice(&shard.to_le_bytes());
                        name[4..8].copy_from_slice(&pack.to_le_bytes());
                        name[8..].copy_from_slice(&e.pack_xxh3.to_le_bytes());
                        xxhash_rust::xxh3::xxh3_64(&name)
                    });
                    let plan = self.readahead.plan(id, listed.map(|e| e.pack_len), &items);
                    let reply = (!plan.request.is_empty())
                        .then(|| self.bucket.read_ranges(shard, pack, plan.request.clone()));
                    PackRead {
                        shard,
                        pack,
                        records,
                        plan,
                        reply,
                    }
                })
                .collect();
            self.serve(window, &mut out).await?;
        }
        Ok(out)
    }

    /// How reads were served since the replica opened.
    pub fn reads(&self) -> ReplicaReads {
        ReplicaReads {
            fetched: self.fetched.load(Ordering::Relaxed),
            from_readahead: self.from_readahead.load(Ordering::Relaxed),
            cached_bytes: self.readahead.held(),
        }
    }

    /// Waits for a window of ranged reads (and read-aheads of other calls they joined) and
    /// checks every record before it goes in `out`.
    async fn serve(
        &self,
        window: Vec<PackRead<'_>>,
        out: &mut [Option<Bytes>],
    ) -> ReplicaResult<()> {
        let mut joined = Vec::new();
        for PackRead {
            shard,
            pack,
            records,
            mut plan,
            reply,
        } in window
        {
            let mut got: Vec<(usize, Bytes)> = plan.hits.drain(..).collect();
            self.from_readahead
                .fetch_add(got.len() as u64, Ordering::Relaxed);
            self.fetched
                .fetch_add(plan.fetch.len() as u64, Ordering::Relaxed);
            joined.extend(plan.joined.drain(..).map(|(j, range, landing)| {
                (
                    shard,
                    pack,
                    records[j].at,
                    records[j].loc,
                    records[j].key.clone(),
                    range,
                    landing,
                )
            }));
            if let Some(reply) = reply {
                got.extend(plan.finish(reply.result().await?));
            }
            for (j, record) in got {
                let Wanted { loc, at, key } = &records[j];
                out[*at] = Some(check(shard, pack, loc, key, record)?);
            }
        }
        for (shard, pack, at, loc, key, range, landing) in joined {
            let record = match landing.record(&range).await {
                Some(record) => {
                    self.from_readahead.fetch_add(1, Ordering::Relaxed);
                    record
                }
                // The read-ahead it waited for failed or was dropped: it asks on its own.
                None => {
                    self.fetched.fetch_add(1, Ordering::Relaxed);
                    self.bucket
                        .read_ranges(shard, pack, vec![range])
                        .result()
                        .await?
                        .pop()
                        .unwrap_or_default()
                }
            };
            out[at] = Some(check(shard, pack, &loc, &key, record)?);
        }
        Ok(())
    }

    /// Whether an indexed pack holds the block. Answered from the index alone: never a
    /// request to the object store, and so never an error.
    pub fn has(&self, cid: &Cid) -> bool {
        identity_data(cid).is_some() || self.read_shards(|s| locate(s, &key_of(cid)).is_some())
    }

    /// The block's size in bytes, `None` if no indexed pack holds it. From the index alone,
    /// like [`Replica::has`]; the size is the record's as its hint lists it, checked against
    /// the record itself when the block is read.
    pub fn get_size(&self, cid: &Cid) -> Option<u64> {
        if let Some(data) = identity_data(cid) {
            return Some(data.len() as u64);
        }
        self.read_shards(|s| locate(s, &key_of(cid)).map(|(_, loc)| u64::from(loc.len)))
    }

    /// How many blocks the replica serves.
    pub fn block_count(&self) -> u64 {
        self.served().0
    }

    /// The bytes the index's tables hold now (slots of
    /// [`ENTRY_BYTES`](ipfrs_tiering::segment::index::ENTRY_BYTES) plus a control byte
    /// each), across shards.
    pub fn index_memory_bytes(&self) -> u64 {
        self.read_shards(|s| s.iter().map(|s| s.index.memory_bytes()).sum())
    }

    /// The manifest generation `shard` is indexed at, `None` if the replica has no manifest
    /// of it.
    pub fn generation(&self, shard: u32) -> Option<u64> {
        self.read_shards(|s| s.iter().find(|s| s.shard == shard).map(|s| s.generation))
    }

    /// The blocks served and their bytes (the sizes the hints list), as each shard counted
    /// them at its last refresh.
    pub(crate) fn served(&self) -> (u64, u64) {
        self.read_shards(|s| {
            s.iter().fold((0, 0), |(blocks, bytes), s| {
                (blocks + s.served.0, bytes + s.served.1)
            })
        })
    }

    /// The packs indexed now, across shards.
    pub(crate) fn pack_count(&self) -> u64 {
        self.read_shards(|s| s.iter().map(|s| s.packs.len() as u64).sum())
    }

    /// Marks the replica closed for the [`crate::BlockStore`] calls.
    pub(crate) fn mark_closed(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// Whether [`Replica::mark_closed`] ran.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The packs indexed now of every shard numbered `from` or above, ascending by shard
    /// then pack: what a listing walks.
    pub(crate) fn packs_from(&self, from: u32) -> Vec<(u32, Vec<PackEntry>)> {
        self.read_shards(|s| {
            s.iter()
                .filter(|s| s.shard >= from)
                .map(|s| (s.shard, s.packs.clone()))
                .collect()
        })
    }

    /// Whether the record at (`pack`, `offset`) of `shard` is the one a read of `key` is
    /// served from now: a listing names each served block once, at that record.
    pub(crate) fn serves_from(&self, shard: u32, pack: u32, offset: u32, key: &[u8]) -> bool {
        self.read_shards(|s| {
            locate(s, key)
                .is_some_and(|(at, loc)| at == shard && loc.segment == pack && loc.offset == offset)
        })
    }

    /// The records of one pack (from its hint, or from the pack itself when the hint is
    /// missing or does not decode, as indexing does). The last pack read is kept for the
    /// next page of the same listing.
    pub(crate) async fn pack_records(
        &self,
        shard: u32,
        entry: PackEntry,
    ) -> ReplicaResult<Arc<Vec<(u32, Vec<u8>)>>> {
        let cached = self
            .listed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(listed) = cached
            && listed.shard == shard
            && listed.entry == entry
        {
            return Ok(listed.records);
        }
        let source = match self.bucket.read_hint(shard, entry.pack).result().await {
            Ok(hint)
                if decode_hint(&hint).is_some_and(|scan| scan.end as u64 <= entry.pack_len) =>
            {
                Source::Hint(hint)
            }
            Ok(_) | Err(RemoteError::NotFound { .. }) => {
                Source::Pack(self.bucket.read_pack(shard, entry).result().await?)
            }
            Err(e) => return Err(e.into()),
        };
        let records: Vec<(u32, Vec<u8>)> = source
            .scan()
            .found
            .iter()
            .filter(|found| matches!(found.kind, Kind::Put { .. } | Kind::Damaged { .. }))
            // Offsets within a pack fit its index's u32 locations (packs are former segments).
            .filter_map(|found| Some((u32::try_from(found.offset).ok()?, found.key.to_vec())))
            .collect();
        let records = Arc::new(records);
        *self.listed.lock().unwrap_or_else(PoisonError::into_inner) = Some(ListedPack {
            shard,
            entry,
            records: Arc::clone(&records),
        });
        Ok(records)
    }

    fn read_shards<T>(&self, f: impl FnOnce(&[ShardIndex]) -> T) -> T {
        // Nothing panics while the lock is held (index lookups and inserts), so a poisoned
        // lock still guards a whole index.
        f(&self.shards.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn write_shards(&self, f: impl FnOnce(&mut Vec<ShardIndex>)) {
        f(&mut self.shards.write().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Where a key's record is: its shard and location.
fn locate(shards: &[ShardIndex], key: &[u8]) -> Option<(u32, Loc)> {
    shards.iter().find_map(|s| {
        s.index
            .get(key)
            .filter(|loc| !s.dead.contains(&(loc.segment, loc.offset)))
            .map(|loc| (s.shard, loc))
    })
}

/// A record a batched read fetches.
struct Wanted {
    loc: Loc,
    /// Where its block goes in the answer.
    at: usize,
    key: Vec<u8>,
}

/// One pack's ranged read of a batch, in flight.
struct PackRead<'a> {
    shard: u32,
    pack: u32,
    /// The records asked for, by offset (the plan's indices point here).
    records: Vec<Wanted>,
    plan: Plan<'a>,
    /// The plan's request, unless the cache and read-aheads in flight hold everything.
    reply: Option<Pending<Vec<Bytes>>>,
}

/// The manifest entry of `pack` of `shard`.
fn listed_pack(shards: &[ShardIndex], shard: u32, pack: u32) -> Option<PackEntry> {
    let packs = &shards.iter().find(|s| s.shard == shard)?.packs;
    let at = packs.binary_search_by_key(&pack, |e| e.pack).ok()?;
    Some(packs[at])
}

/// The block in `record` (the record at `loc` of `pack`), once its checksum and key check.
fn check(shard: u32, pack: u32, loc: &Loc, key: &[u8], record: Bytes) -> ReplicaResult<Bytes> {
    Fetched::Record(record).into_data(key).map_err(|e| {
        let reason = match e {
            ipfrs_shards::Error::Corrupt { reason, .. } => reason,
            other => other.to_string(),
        };
        ReplicaError::Corrupt {
            key: key.to_vec(),
            shard,
            pack,
            offset: loc.offset,
            reason,
        }
    })
}

/// What a pack's records are read from at indexing.
enum Source {
    /// Its hint file, known to decode.
    Hint(Bytes),
    /// The whole pack, checked against its manifest entry.
    Pack(Bytes),
}

impl Source {
    fn scan(&self) -> SegmentScan<'_> {
        match self {
            // Checked to decode when it was fetched.
            Source::Hint(hint) => decode_hint(hint).unwrap_or_default(),
            Source::Pack(pack) => {
                let mut scan = scan_segment(pack, Alignment::WORD);
                // A pack is immutable and was whole when uploaded: a bad region is damage,
                // not a torn tail, so the records after it stay indexed (replay would drop
                // them as a tail) and a damaged record it could name reads as corrupt.
                scan.bad.clear();
                scan
            }
        }
    }
}
