//! A shard's packs on an S3-compatible bucket (`Config::remote`, issue 16).
//!
//! ```text
//!   local pack (sealed, renamed .pack) --upload: pack, then hint, create-only-->
//!   in the bucket, not yet listed --publish generation G+1 listing it-->
//!   listed --local disk of listed packs over the budget: oldest first--> remote only
//!                                    (the index keeps pointing into it; reads by ranged GET)
//!   reclaimed (live records rewritten hot, entries dropped, pack dropped) -->
//!   generation G+2 without it --delete_grace later--> deleted from the bucket
//! ```
//! Ordering: a local pack file is removed only once its upload and a manifest generation
//! listing it are durable on the object store (S3 acknowledges a PUT once it is), so the
//! bytes an index entry points at always exist somewhere. A pack leaves the bucket only one
//! generation after it left the manifest, and a grace period later, so a replica that read
//! the older generation can still read it. The hot tier stays the acknowledgement point:
//! nothing here delays a put.
//!
//! The uploader is a task on the shard's executor; every object store call runs on the
//! bucket's own runtime thread and is awaited over a channel, so the shard's core never waits
//! on the network. File reads and removals go to the blocking pool.
//!
//! Deletes: a delete drops the block's entry from the cold index, which was the only record
//! of where in a pack the block lay, while the manifest that lists that record dead (so that
//! replicas stop serving it) is published later. So the record is first appended to the
//! shard's `DEAD` file and synced, after the tombstone and before the cold index changes;
//! an open reads the file back, and a publish trims it to what no manifest lists yet.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hashbrown::HashSet;
use ipfrs_core_types::RemoteTier;
use ipfrs_remote::{Manifest, PackBucket, PackEntry, ReadAhead, RemoteError};
use ipfrs_tiering::pack::{PackLoc, pack_hint_path, pack_path};
use ipfrs_tiering::segment::MappedSegment;
use ipfrs_tiering::segment::file::write_durably;
use ipfrs_tiering::segment::hint::{decode_hint, encode_hint};
use ipfrs_tiering::segment::scan_segment;

use super::HotTier;
use super::compaction::{RETRY_AFTER, RETRY_AFTER_MAX};
use super::writer::RECORD_ALIGN;
use crate::shard::{Shard, bump};
use crate::{Error, Result};

/// How often an idle uploader looks again without being woken (deletes whose grace ended).
const IDLE_TICK: Duration = Duration::from_secs(5);

/// Packs uploaded between two manifest generations at most: a long backlog (a store that
/// just got a bucket) still publishes, and lets evictions start, every few packs.
const UPLOADS_PER_GENERATION: usize = 4;

/// An object to delete from the bucket once its grace has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Doomed {
    /// A pack (and its hint) no manifest generation since lists.
    Pack(u32),
    /// A manifest generation a newer one replaced: without this, every open and every
    /// replica refresh lists a growing number of them.
    Manifest(u64),
}

/// Counters of the pack tier (single-threaded, so `Cell`s).
#[derive(Default)]
pub(crate) struct RemoteCounters {
    /// Packs uploaded (with their hints).
    pub(crate) uploads: Cell<u64>,
    /// Pack bytes uploaded.
    pub(crate) upload_bytes: Cell<u64>,
    /// Manifest generations published.
    pub(crate) manifests: Cell<u64>,
    /// Packs whose local file was removed (their copy in the bucket serves them).
    pub(crate) evictions: Cell<u64>,
    /// Packs fetched back from the bucket (to be reclaimed).
    pub(crate) fetched_back: Cell<u64>,
    /// Packs deleted from the bucket.
    pub(crate) deletes: Cell<u64>,
    /// Records read from the bucket, and their bytes.
    pub(crate) reads: Cell<u64>,
    pub(crate) read_bytes: Cell<u64>,
    /// Records served from ranges read ahead, without a request.
    pub(crate) range_hits: Cell<u64>,
    /// Uploader steps that failed (an unreachable store, a full disk) and were retried.
    pub(crate) failures: Cell<u64>,
}

/// One shard's view of its bucket.
pub(crate) struct RemotePacks {
    pub(crate) bucket: PackBucket,
    shard: u32,
    /// The newest manifest generation published (or found at open); generation 0 and no packs
    /// for a shard that has none yet.
    manifest: RefCell<Manifest>,
    /// This shard's share of `RemoteTier::local_pack_bytes`.
    local_budget: u64,
    grace: Duration,
    /// Packs no longer listed, deleted from the bucket once their time comes.
    doomed: RefCell<Vec<(Doomed, Instant)>>,
    /// Records of packs (listed or not yet) whose blocks were deleted since the pack was
    /// sealed, as (pack, offset): the manifest lists those of listed packs, so that a replica
    /// building its index from the hints does not serve them.
    dead: RefCell<BTreeSet<(u32, u32)>>,
    /// The `DEAD` file (see the module docs) and the records it holds.
    dead_log: PathBuf,
    logged: RefCell<BTreeSet<(u32, u32)>>,
    /// Reclaimed packs still listed, and the segment that was active when each was dropped
    /// (see [`still_retiring`]).
    retiring: RefCell<Vec<(u32, u32)>>,
    /// Read-ahead of sequential reads and the ranges it cached.
    readahead: ReadAhead,
    /// Packs being reclaimed: not evicted meanwhile (the reclamation reads their files).
    pub(crate) busy: RefCell<HashSet<u32>>,
    /// The bucket and prefix, as the marker names them.
    name: String,
    /// Whether the marker file exists (see [`marker_path`]).
    marked: Cell<bool>,
    /// Whether this open has looked for packs a crash left in the bucket.
    swept: Cell<bool>,
    pub(crate) counters: RemoteCounters,
    /// The uploader task, stopped at shutdown like compaction.
    pub(crate) task: RefCell<Option<crate::rt::Task<()>>>,
    wake_tx: flume::Sender<()>,
    wake_rx: flume::Receiver<()>,
}

impl RemotePacks {
    /// Opens shard `shard`'s bucket and reads its newest manifest (blocking: the shard's
    /// executor is not running yet). An unreachable store, refused credentials or a damaged
    /// newest manifest fail the open, each with its own error: a store must not start
    /// without the packs its index points at.
    ///
    /// The dead records the `DEAD` file in `segments_dir` holds join the manifest's.
    pub(crate) fn open(
        shard: usize,
        shards: usize,
        tier: &RemoteTier,
        segments_dir: &Path,
    ) -> Result<RemotePacks> {
        let failed = |e| Error::remote(shard)(e);
        let bucket = PackBucket::open(&tier.bucket).map_err(failed)?;
        let id = shard as u32;
        let manifest = bucket
            .latest_manifest(id)
            .wait()
            .map_err(failed)?
            .unwrap_or(Manifest {
                shard: id,
                generation: 0,
                packs: Vec::new(),
                dead: Vec::new(),
            });
        let (wake_tx, wake_rx) = flume::bounded(1);
        let dead_log = dead_log_path(segments_dir);
        let logged = match std::fs::read(&dead_log) {
            Ok(bytes) => decode_dead(&bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
            Err(e) => return Err(Error::segment_io(shard, "reading", &dead_log)(e)),
        };
        let dead = manifest.dead.iter().chain(&logged).copied().collect();
        Ok(RemotePacks {
            dead: RefCell::new(dead),
            dead_log,
            logged: RefCell::new(logged),
            readahead: ReadAhead::new(
                tier.readahead_bytes,
                tier.range_cache_bytes / shards.max(1) as u64,
            ),
            retiring: RefCell::default(),
            bucket,
            shard: id,
            manifest: RefCell::new(manifest),
            local_budget: tier.local_pack_bytes / shards.max(1) as u64,
            grace: tier.delete_grace,
            doomed: RefCell::default(),
            busy: RefCell::default(),
            name: format!(
                "{} bucket {} prefix {:?}",
                tier.bucket.endpoint_name(),
                tier.bucket.bucket,
                tier.bucket.prefix
            ),
            marked: Cell::new(false),
            swept: Cell::new(false),
            counters: RemoteCounters::default(),
            task: RefCell::new(None),
            wake_tx,
            wake_rx,
        })
    }

    /// The packs the newest manifest lists.
    pub(crate) fn listed(&self) -> Vec<u32> {
        self.manifest
            .borrow()
            .packs
            .iter()
            .map(|e| e.pack)
            .collect()
    }

    /// The manifest entry of `pack`, if listed.
    fn entry(&self, pack: u32) -> Option<PackEntry> {
        self.manifest
            .borrow()
            .packs
            .iter()
            .find(|e| e.pack == pack)
            .copied()
    }

    /// Notes that the records at `locs` are no longer live (their blocks are being deleted),
    /// for the next manifest generation, durably: call it before the cold index forgets
    /// them. Blocks the shard's thread for one append and one fdatasync, and only when a
    /// record is new to the file.
    pub(crate) fn note_dead(&self, locs: &[PackLoc]) -> std::io::Result<()> {
        let fresh: Vec<(u32, u32)> = {
            let logged = self.logged.borrow();
            let published = self.manifest.borrow();
            locs.iter()
                .map(|loc| (loc.pack, loc.offset))
                .filter(|r| !logged.contains(r) && published.dead.binary_search(r).is_err())
                .collect()
        };
        if !fresh.is_empty() {
            use std::io::Write;
            let mut bytes = Vec::with_capacity(fresh.len() * DEAD_ENTRY);
            for &(pack, offset) in &fresh {
                encode_dead(&mut bytes, pack, offset);
            }
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.dead_log)?;
            file.write_all(&bytes)?;
            file.sync_data()?;
            if file.metadata()?.len() == bytes.len() as u64 {
                // A new file: its directory entry must survive a crash too.
                ipfrs_tiering::segment::file::sync_dir(
                    self.dead_log.parent().unwrap_or(Path::new(".")),
                )?;
            }
            self.logged.borrow_mut().extend(&fresh);
        }
        self.dead
            .borrow_mut()
            .extend(locs.iter().map(|loc| (loc.pack, loc.offset)));
        Ok(())
    }

    /// After generation `published` is durable: the `DEAD` file keeps only the records no
    /// manifest lists yet (those of packs not listed yet), or goes. Blocking, without an
    /// await in between, so no delete appends meanwhile.
    fn trim_dead_log(&self, published: &Manifest) -> std::io::Result<()> {
        let listed: BTreeSet<u32> = published.packs.iter().map(|e| e.pack).collect();
        let keep: BTreeSet<(u32, u32)> = {
            let logged = self.logged.borrow();
            if logged.is_empty() {
                return Ok(());
            }
            let dead = self.dead.borrow();
            logged
                .iter()
                // Still pending: its pack is not listed yet, and is not gone.
                .filter(|r| !listed.contains(&r.0) && dead.contains(r))
                .copied()
                .collect()
        };
        if keep.len() == self.logged.borrow().len() {
            return Ok(());
        }
        if keep.is_empty() {
            match std::fs::remove_file(&self.dead_log) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        } else {
            let mut bytes = Vec::with_capacity(keep.len() * DEAD_ENTRY);
            for &(pack, offset) in &keep {
                encode_dead(&mut bytes, pack, offset);
            }
            write_durably(&self.dead_log, &bytes)?;
        }
        *self.logged.borrow_mut() = keep;
        Ok(())
    }

    /// Pack `pack` was reclaimed while segment `active` took the records rewritten out of
    /// it: if listed, it stays listed until those are uploaded.
    pub(crate) fn retire(&self, pack: u32, active: u32) {
        if self.entry(pack).is_some() {
            self.retiring.borrow_mut().push((pack, active));
        }
        self.wake();
    }

    /// Asks the uploader to look again (a pack was made or dropped).
    pub(crate) fn wake(&self) {
        let _ = self.wake_tx.try_send(());
    }
}

/// The uploader task of one shard: uploads new packs, publishes manifests, evicts local
/// copies past the budget and deletes packs whose grace ended; runs until the shard stops.
pub(crate) async fn run(shard: Rc<Shard>) {
    let Some(hot) = shard.hot.as_ref() else {
        return;
    };
    let Some(remote) = hot.remote.as_ref() else {
        return;
    };
    // After a failure it waits as compaction does, doubling at each failure in a row.
    let mut retry_after = RETRY_AFTER;
    loop {
        if hot.stopping.get() {
            return;
        }
        let wait = match step(&shard, hot, remote).await {
            Ok(true) => continue,
            Ok(false) => {
                retry_after = RETRY_AFTER;
                IDLE_TICK
            }
            Err(Error::Poisoned { .. } | Error::Stopped { .. }) => return,
            Err(e) => {
                bump(&remote.counters.failures, 1);
                eprintln!(
                    "ipfrs shard {}: the pack tier: {e}; retrying in {} s",
                    shard.id,
                    retry_after.as_secs()
                );
                let wait = retry_after;
                retry_after = (retry_after * 2).min(RETRY_AFTER_MAX);
                wait
            }
        };
        futures_lite::future::or(crate::rt::sleep(wait), async {
            let _ = remote.wake_rx.recv_async().await;
        })
        .await;
    }
}

/// One round of the uploader; true if there is more to do at once.
async fn step(shard: &Shard, hot: &HotTier, remote: &RemotePacks) -> Result<bool> {
    let failed = |e| Error::remote(shard.id)(e);
    // 0. Once per open: packs in the bucket that neither the manifest nor this disk has are
    // what a crash left (dropped before their delete came); they go the way of the others.
    if !remote.swept.get() {
        let stored = remote
            .bucket
            .list_packs(remote.shard)
            .result()
            .await
            .map_err(failed)?;
        let known: BTreeSet<u32> = remote
            .listed()
            .into_iter()
            .chain(hot.packs.borrow().local().into_iter().map(|(id, _)| id))
            .collect();
        let generations = remote
            .bucket
            .list_generations(remote.shard)
            .result()
            .await
            .map_err(failed)?;
        let current = remote.manifest.borrow().generation;
        let now = Instant::now();
        let mut doomed = remote.doomed.borrow_mut();
        doomed.extend(
            stored
                .into_iter()
                .filter(|p| !known.contains(p))
                .map(|p| (Doomed::Pack(p), now)),
        );
        doomed.extend(
            generations
                .into_iter()
                .filter(|g| *g < current)
                .map(|g| (Doomed::Manifest(g), now)),
        );
        drop(doomed);
        remote.swept.set(true);
    }
    // 1. Uploads: local packs the manifest does not list, oldest first.
    let listed: BTreeSet<u32> = remote.listed().into_iter().collect();
    let waiting: Vec<u32> = hot
        .packs
        .borrow()
        .local()
        .into_iter()
        .map(|(id, _)| id)
        .filter(|id| !listed.contains(id))
        .collect();
    let more = waiting.len() > UPLOADS_PER_GENERATION;
    let mut uploaded = Vec::new();
    for id in waiting.into_iter().take(UPLOADS_PER_GENERATION) {
        if hot.stopping.get() {
            break;
        }
        let Some(map) = hot.packs.borrow().map(id) else {
            continue;
        };
        let dir = hot.dir.clone();
        let read = crate::rt::spawn_blocking(move || upload_bytes(&dir, id, &map))
            .await
            .map_err(Error::segment_io(
                shard.id,
                "reading for upload the pack",
                pack_path(&hot.dir, id),
            ))?;
        // Still named as a segment (its rename waits for the backend's close), or damaged
        // (kept local, where `repo verify` reports it).
        let Some((bytes, hint)) = read else {
            continue;
        };
        let len = bytes.len() as u64;
        let entry = remote
            .bucket
            .upload_pack(remote.shard, id, bytes, hint)
            .result()
            .await
            .map_err(failed)?;
        bump(&remote.counters.uploads, 1);
        bump(&remote.counters.upload_bytes, len);
        uploaded.push(entry);
        // Crash tests (the `failpoints` feature): the process dies between an upload and
        // the manifest that would list it.
        fail::fail_point!("remote-after-upload", |_| std::process::abort());
    }
    // 2. A new generation when the live set changed: new uploads in, dropped packs out.
    let mut live: BTreeSet<u32> = hot.packs.borrow().ids().into_iter().collect();
    // Reclaimed packs stay listed until what was rewritten out of them is in the bucket.
    live.extend(still_retiring(hot, remote));
    let old = remote.manifest.borrow().clone();
    // By pack number: ascending, each once, as a manifest lists them.
    let next: Vec<PackEntry> = old
        .packs
        .iter()
        .chain(&uploaded)
        .filter(|e| live.contains(&e.pack))
        .map(|e| (e.pack, *e))
        .collect::<BTreeMap<u32, PackEntry>>()
        .into_values()
        .collect();
    // Dropped while it was being uploaded: in the bucket, never listed.
    let orphans: Vec<u32> = uploaded
        .iter()
        .map(|e| e.pack)
        .filter(|p| !live.contains(p))
        .collect();
    let dead: Vec<(u32, u32)> = {
        let mut dead = remote.dead.borrow_mut();
        // A pack gone takes its dead records with it.
        dead.retain(|(pack, _)| live.contains(pack));
        let listed: BTreeSet<u32> = next.iter().map(|e| e.pack).collect();
        dead.iter()
            .filter(|(pack, _)| listed.contains(pack))
            .copied()
            .collect()
    };
    if next != old.packs || dead != old.dead {
        let manifest = Manifest {
            shard: remote.shard,
            generation: old.generation + 1,
            packs: next,
            dead,
        };
        remote
            .bucket
            .publish(&manifest)
            .result()
            .await
            .map_err(failed)?;
        bump(&remote.counters.manifests, 1);
        // Crash tests: dies once a generation is published, before any eviction or delete.
        fail::fail_point!("remote-after-publish", |_| std::process::abort());
        let now = Instant::now();
        let mut doomed = remote.doomed.borrow_mut();
        for gone in old.packs.iter().filter(|e| !live.contains(&e.pack)) {
            doomed.push((Doomed::Pack(gone.pack), now));
        }
        if old.generation > 0 {
            doomed.push((Doomed::Manifest(old.generation), now));
        }
        drop(doomed);
        // Not a failure of the round: the generation is published, and records the file
        // still holds only cost their note again at the next open.
        if let Err(e) = remote.trim_dead_log(&manifest) {
            eprintln!(
                "ipfrs shard {}: the pack tier: cannot trim {}: {e}",
                shard.id,
                remote.dead_log.display()
            );
        }
        *remote.manifest.borrow_mut() = manifest;
    }
    {
        let now = Instant::now();
        remote
            .doomed
            .borrow_mut()
            .extend(orphans.into_iter().map(|p| (Doomed::Pack(p), now)));
    }
    // 3. Local copies past the budget leave the disk, oldest first.
    evict_over_budget(shard, hot, remote).await?;
    // 4. Deletes whose grace ended.
    let due: Vec<(Doomed, Instant)> = {
        let mut doomed = remote.doomed.borrow_mut();
        let (due, wait): (Vec<_>, Vec<_>) = doomed
            .drain(..)
            .partition(|(_, since)| since.elapsed() >= remote.grace);
        *doomed = wait;
        due
    };
    let mut due = due.into_iter();
    while let Some((object, since)) = due.next() {
        let deleted = match object {
            Doomed::Pack(pack) => remote.bucket.delete_pack(remote.shard, pack),
            Doomed::Manifest(generation) => remote.bucket.delete_manifest(remote.shard, generation),
        };
        if let Err(e) = deleted.result().await {
            // Kept, due at once, for the next round.
            let mut doomed = remote.doomed.borrow_mut();
            doomed.push((object, since));
            doomed.extend(due);
            return Err(failed(e));
        }
        if let Doomed::Pack(_) = object {
            bump(&remote.counters.deletes, 1);
        }
    }
    Ok(more)
}

/// The reclaimed packs that must stay listed: their live records were rewritten into the hot
/// tier, in segments up to the one active when the pack was dropped, and until each of
/// those segments is sealed, packed and uploaded (or removed, nothing in it live), a replica
/// finds those blocks only in the old pack. Those released are forgotten.
fn still_retiring(hot: &HotTier, remote: &RemotePacks) -> Vec<u32> {
    // The active segment while no entry points into it holds nothing rewritten (or all of it
    // was deleted since): waiting for it to be sealed would keep a pack emptied by deletes
    // listed, and in the bucket, until the next write fills it. A sealed segment is still
    // waited for even with no hot entries left: compaction moves its entries to the cold
    // index before it becomes a pack.
    let idle_active = hot
        .writer
        .borrow()
        .as_ref()
        .map(|w| w.active())
        .filter(|&active| hot.index.borrow().live_in(active) == 0);
    let oldest_hot = hot
        .segments
        .borrow()
        .keys()
        .copied()
        .find(|&id| Some(id) != idle_active);
    let listed: BTreeSet<u32> = remote.listed().into_iter().collect();
    let oldest_unlisted = hot
        .packs
        .borrow()
        .local()
        .into_iter()
        .map(|(id, _)| id)
        .find(|id| !listed.contains(id));
    let pending = |upto: u32| {
        oldest_hot.is_some_and(|id| id <= upto) || oldest_unlisted.is_some_and(|id| id <= upto)
    };
    let mut retiring = remote.retiring.borrow_mut();
    retiring.retain(|&(_, upto)| pending(upto));
    retiring.iter().map(|&(pack, _)| pack).collect()
}

/// Removes the local files of listed packs, oldest first, while those take more than the
/// shard's share of the local budget. Packs being reclaimed stay.
async fn evict_over_budget(shard: &Shard, hot: &HotTier, remote: &RemotePacks) -> Result<()> {
    let listed: BTreeSet<u32> = remote.listed().into_iter().collect();
    loop {
        let victim = {
            let local = hot.packs.borrow().local();
            let held: u64 = local
                .iter()
                .filter(|(id, _)| listed.contains(id))
                .map(|(_, disk)| disk)
                .sum();
            if held <= remote.local_budget {
                return Ok(());
            }
            let busy = remote.busy.borrow();
            local
                .iter()
                .map(|(id, _)| *id)
                .find(|id| listed.contains(id) && !busy.contains(id))
        };
        let Some(id) = victim else {
            return Ok(());
        };
        if !remote.marked.get() {
            // Before the first local file goes: from now on this store cannot be read
            // without its bucket, and an open without one must say so.
            let (marker, name) = (marker_path(&hot.dir), remote.name.clone());
            crate::rt::spawn_blocking(move || {
                write_durably(&marker, format!("{name}\n").as_bytes())
            })
            .await
            .map_err(Error::segment_io(
                shard.id,
                "writing the bucket marker",
                marker_path(&hot.dir),
            ))?;
            remote.marked.set(true);
        }
        // The files go first, then the mapping (readers holding it keep reading; a new
        // reader meanwhile still finds it local). Claimed meanwhile, so that a reclamation
        // waits rather than fetch the pack back under a removal still running.
        let _claim = claim(remote, id).await;
        let dir = hot.dir.clone();
        crate::rt::spawn_blocking(move || super::packs::remove_on_disk(&dir, id))
            .await
            .map_err(Error::segment_io(
                shard.id,
                "removing the uploaded pack",
                pack_path(&hot.dir, id),
            ))?;
        // Crash tests: dies with the local files gone and the mapping still held.
        fail::fail_point!("remote-after-evict", |_| std::process::abort());
        if hot.packs.borrow_mut().evict(id) {
            bump(&remote.counters.evictions, 1);
        }
    }
}

/// Pack `pack` held against eviction and reclamation at once, released when dropped.
pub(crate) struct Claim<'a> {
    remote: &'a RemotePacks,
    pack: u32,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.remote.busy.borrow_mut().remove(&self.pack);
    }
}

/// Claims `pack`, waiting while an eviction or a reclamation holds it.
pub(crate) async fn claim(remote: &RemotePacks, pack: u32) -> Claim<'_> {
    while !remote.busy.borrow_mut().insert(pack) {
        crate::rt::sleep(Duration::from_millis(5)).await;
    }
    Claim { remote, pack }
}

/// The file that says a shard's packs may be only in a bucket, and which (its contents name
/// the bucket for the error): written durably before the first local pack file is removed,
/// checked by every open.
pub(crate) fn marker_path(segments_dir: &Path) -> PathBuf {
    segments_dir.join("BUCKET")
}

/// The `DEAD` file of a shard's segments directory (see the module docs).
fn dead_log_path(segments_dir: &Path) -> PathBuf {
    segments_dir.join("DEAD")
}

/// Bytes per record in the `DEAD` file: pack and offset (u32 LE each), then the xxh3 of
/// those 8 bytes, which tells a whole entry from what a torn append left.
const DEAD_ENTRY: usize = 16;

fn encode_dead(out: &mut Vec<u8>, pack: u32, offset: u32) {
    let mut entry = [0u8; 8];
    entry[..4].copy_from_slice(&pack.to_le_bytes());
    entry[4..].copy_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(&entry);
    out.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(&entry).to_le_bytes());
}

/// The records of a `DEAD` file; entries failing their check (a torn tail) are left out.
fn decode_dead(bytes: &[u8]) -> BTreeSet<(u32, u32)> {
    bytes
        .chunks_exact(DEAD_ENTRY)
        .filter(|e| xxhash_rust::xxh3::xxh3_64(&e[..8]).to_le_bytes() == e[8..])
        .map(|e| {
            let word = |at: usize| u32::from_le_bytes([e[at], e[at + 1], e[at + 2], e[at + 3]]);
            (word(0), word(4))
        })
        .collect()
}

/// The bytes to upload for local pack `id` of `dir`, mapped as `map`: its records (the
/// punched-out tail left off), a slice of the mapping rather than a copy (a pack is tens of
/// MiB, and an edge device runs several shards), and its hint, made from a scan where the
/// hint file is missing. `None` if the file is not under its pack name yet (its rename waits
/// for the backend's close: until then a crash replays it as a segment), or is damaged.
/// Blocking.
fn upload_bytes(
    dir: &Path,
    id: u32,
    map: &MappedSegment,
) -> std::io::Result<Option<(Bytes, Bytes)>> {
    match std::fs::metadata(pack_path(dir, id)) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    }
    let pack = map.bytes();
    let hint = match std::fs::read(pack_hint_path(dir, id)) {
        Ok(hint) => Some(hint),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let (end, hint) = match hint.as_deref().and_then(decode_hint).map(|scan| scan.end) {
        Some(end) => (end, hint.unwrap_or_default()),
        None => {
            // A segment sealed without a hint, or a damaged hint: a scan says where the
            // records end, and becomes the hint a replica needs.
            let scan = scan_segment(pack, RECORD_ALIGN);
            let Some(made) = encode_hint(&scan) else {
                return Ok(None);
            };
            (scan.end, made)
        }
    };
    // Read ahead whole (`slice`): a pack written with O_DIRECT is not in the page cache, and
    // the upload's pass over it would otherwise fault it in a page at a time.
    Ok(map
        .slice(0, end)
        .map(|records| (records, Bytes::from(hint))))
}

/// Fetches remote pack `pack` back into a local file, for a reclamation to read every
/// record of it; it is mapped and local again (and evicted again once reclaimed or uploaded).
pub(crate) async fn fetch_back(shard: &Shard, hot: &HotTier, pack: u32) -> Result<()> {
    let Some(remote) = hot.remote.as_ref() else {
        return Ok(());
    };
    if !hot.packs.borrow().is_remote(pack) {
        return Ok(());
    }
    let failed = |e| Error::remote(shard.id)(e);
    let Some(entry) = remote.entry(pack) else {
        return Err(failed(RemoteError::NotFound {
            path: format!("pack {pack} (not in the shard's manifest)"),
        }));
    };
    let bytes = remote
        .bucket
        .read_pack(remote.shard, entry)
        .result()
        .await
        .map_err(failed)?;
    let hint = remote
        .bucket
        .read_hint(remote.shard, pack)
        .result()
        .await
        .map_err(failed)?;
    let dir = hot.dir.clone();
    let map = crate::rt::spawn_blocking(move || write_back(&dir, pack, &bytes, &hint))
        .await
        .map_err(Error::segment_io(
            shard.id,
            "writing back the fetched pack",
            pack_path(&hot.dir, pack),
        ))?;
    let disk = map.bytes().len() as u64;
    hot.packs
        .borrow_mut()
        .relocalize(pack, map, disk.div_ceil(4096) * 4096);
    bump(&remote.counters.fetched_back, 1);
    Ok(())
}

/// Whether any index entry still points into remote pack `pack`, by its hint's records; true
/// when the hint cannot tell (the pack is then fetched back and walked whole).
pub(crate) async fn any_live(shard: &Shard, hot: &HotTier, pack: u32) -> Result<bool> {
    let Some(remote) = hot.remote.as_ref() else {
        return Ok(true);
    };
    let hint = remote
        .bucket
        .read_hint(remote.shard, pack)
        .result()
        .await
        .map_err(Error::remote(shard.id))?;
    let Some(scan) = decode_hint(&hint) else {
        return Ok(true);
    };
    let records: Vec<(Vec<u8>, u32)> = scan
        .found
        .iter()
        .filter(|f| matches!(f.kind, ipfrs_tiering::segment::recover::Kind::Put { .. }))
        .filter_map(|f| Some((f.key.to_vec(), u32::try_from(f.offset).ok()?)))
        .collect();
    shard
        .blocking(move |backend| {
            for (key, offset) in &records {
                if let Some((_, Some(loc))) = crate::cold_index::locate(backend, key)?
                    && loc.pack == pack
                    && loc.offset == *offset
                {
                    return Ok(true);
                }
            }
            Ok(false)
        })
        .await
}

/// Writes a fetched pack and its hint under their names in `dir` (through temporary names,
/// synced, so a crash leaves either nothing or the whole file) and maps the pack. Blocking.
fn write_back(dir: &Path, pack: u32, bytes: &[u8], hint: &[u8]) -> std::io::Result<MappedSegment> {
    write_durably(&pack_path(dir, pack), bytes)?;
    write_durably(&pack_hint_path(dir, pack), hint)?;
    MappedSegment::open(pack, &pack_path(dir, pack))
}

/// Reads the records at `wanted` (key, location) from the bucket, one ranged request per
/// pack (close ranges merged), packs in parallel; the records come back unchecked, in the
/// order asked. Sequential reads read ahead, and records already read ahead (or being read)
/// cost no request of their own (see [`ReadAhead`]).
pub(crate) async fn read_records(
    shard: &Shard,
    remote: &RemotePacks,
    wanted: &[(Vec<u8>, PackLoc)],
) -> Result<Vec<Bytes>> {
    let mut by_pack: BTreeMap<u32, Vec<(usize, Range<u64>)>> = BTreeMap::new();
    for (i, (_, loc)) in wanted.iter().enumerate() {
        let start = u64::from(loc.offset);
        by_pack
            .entry(loc.pack)
            .or_default()
            .push((i, start..start + loc.record_len() as u64));
    }
    let mut out = vec![Bytes::new(); wanted.len()];
    let mut pending = Vec::new();
    let mut joined = Vec::new();
    for (pack, mut items) in by_pack {
        items.sort_unstable_by_key(|(_, r)| r.start);
        let pack_len = remote.entry(pack).map(|e| e.pack_len);
        let mut plan = remote.readahead.plan(u64::from(pack), pack_len, &items);
        bump(&remote.counters.range_hits, plan.hits.len() as u64);
        for (i, record) in plan.hits.drain(..) {
            out[i] = record;
        }
        joined.extend(plan.joined.drain(..).map(|(i, r, l)| (i, pack, r, l)));
        if !plan.request.is_empty() {
            let reading = remote
                .bucket
                .read_ranges(remote.shard, pack, plan.request.clone());
            pending.push((plan, reading));
        }
    }
    for (plan, reading) in pending {
        let got = reading.result().await.map_err(Error::remote(shard.id))?;
        bump(&remote.counters.reads, plan.fetch.len() as u64);
        bump(
            &remote.counters.read_bytes,
            got.iter().map(|b| b.len() as u64).sum(),
        );
        for (i, record) in plan.finish(got) {
            out[i] = record;
        }
    }
    for (i, pack, range, landing) in joined {
        if let Some(record) = landing.record(&range).await {
            bump(&remote.counters.range_hits, 1);
            out[i] = record;
            continue;
        }
        // The read-ahead it waited for failed or was dropped: it asks on its own.
        let mut got = remote
            .bucket
            .read_ranges(remote.shard, pack, vec![range])
            .result()
            .await
            .map_err(Error::remote(shard.id))?;
        bump(&remote.counters.reads, 1);
        out[i] = got.pop().unwrap_or_default();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn dead_entries_round_trip_and_a_torn_or_damaged_entry_is_left_out() {
        let mut bytes = Vec::new();
        for (pack, offset) in [(1, 0), (1, 4160), (7, 8)] {
            encode_dead(&mut bytes, pack, offset);
        }
        let all: BTreeSet<(u32, u32)> = [(1, 0), (1, 4160), (7, 8)].into();
        assert_eq!(decode_dead(&bytes), all);
        // A torn append: the last entry is cut short.
        assert_eq!(
            decode_dead(&bytes[..bytes.len() - 3]),
            [(1, 0), (1, 4160)].into()
        );
        // A zeroed entry (what a crash can leave past the synced end) is not (0, 0).
        let mut zeroed = bytes.clone();
        zeroed.extend_from_slice(&[0; DEAD_ENTRY]);
        assert_eq!(decode_dead(&zeroed), all);
        let mut flipped = bytes;
        flipped[DEAD_ENTRY + 2] ^= 1;
        assert_eq!(decode_dead(&flipped), [(1, 0), (7, 8)].into());
    }
}
