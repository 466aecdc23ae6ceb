//! Damage in the cold backend's files: byte flips and truncations in the files of sled,
//! parity-db (and rocksdb with its feature). Whatever the damage, the engine opens or refuses
//! with a typed error, and every read gives the exact bytes, nothing, or an error: never other
//! bytes. The engine hashes every block it reads from a cold backend against its multihash,
//! so a backend that hands back damaged bytes yields `Error::Corrupt`.
//!
//! Each scenario prints one line of counts (`cargo test --test cold_corruption -- --nocapture`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once, mpsc};
use std::time::Duration;

use bytes::Bytes;
use ipfrs_storage::key::key_of;
use ipfrs_storage::{BackendKind, Block, Cid, Config, Engine, Error, HotTier};
use ipfrs_tiering::{BackendOptions, open_backend};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// `count` blocks of varied sizes (empty to 128 KiB, most under 4 KiB; ~4 MB in all).
fn blocks(seed: u64, count: usize) -> Vec<Block> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..count)
        .map(|i| {
            let len = match rng.random_range(0..10) {
                0 => rng.random_range(0..64),
                1..=5 => 64 + rng.random_range(0..4032),
                6..=8 => 4096 + rng.random_range(0..28 << 10),
                _ => (32 << 10) + rng.random_range(0..96 << 10),
            } as usize;
            let mut data: Vec<u8> = (0..len).map(|_| rng.random::<u8>()).collect();
            // Unique even when two random payloads coincide (the empty ones).
            data.extend_from_slice(&(i as u32).to_le_bytes());
            Block::new(data).unwrap()
        })
        .collect()
}

const SHARDS: usize = 2;

/// Hot tier off: every put goes straight to the cold backend.
fn config(dir: &Path, kind: BackendKind) -> Config {
    let mut config = Config::new(dir);
    config.shards = Some(SHARDS);
    config.backend = kind;
    config.hot_tier = None;
    config.cache_bytes = 1 << 20;
    config.backend_cache_bytes = 4 << 20;
    config
}

fn store_all(dir: &Path, kind: BackendKind, all: &[Block]) {
    let engine = Engine::open(config(dir, kind)).unwrap();
    let store = engine.blocking();
    for chunk in all.chunks(25) {
        store.put_many(chunk).unwrap();
    }
    store.close().unwrap();
}

/// Every file of every shard's backend directory (`shard-NNN/<backend>/...`).
fn backend_files(dir: &Path, kind: BackendKind) -> Vec<PathBuf> {
    fn walk(path: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(path).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    for shard in 0..SHARDS {
        walk(
            &dir.join(format!("shard-{shard:03}")).join(kind.name()),
            &mut out,
        );
    }
    out.sort();
    out
}

/// What is done to the backend's files while the engine is closed.
#[derive(Debug, Clone, Copy)]
enum Damage {
    /// Nothing (the control: every block must read back exact).
    None,
    /// A few flipped bytes at random offsets in every file.
    FlipsLight,
    /// A few flipped bytes in each data file (64 KiB or more), sparing the small metadata
    /// and configuration files whose damage only ever fails the open.
    FlipsDataFiles,
    /// One flipped byte per 256 bytes (at least 16) in every file.
    FlipsHeavy,
    /// One byte flipped inside the stored bytes of each of 40 blocks, wherever the backend
    /// keeps them (found by content): damage no backend-level structure notices.
    FlipsInPayloads,
    /// The largest file cut at a random length.
    TruncateLargest,
}

/// Applies `damage`; returns how many bytes were flipped (or cut off).
fn inflict(dir: &Path, kind: BackendKind, damage: Damage, all: &[Block], rng: &mut StdRng) -> u64 {
    let files = backend_files(dir, kind);
    assert!(
        !files.is_empty(),
        "no backend files under {}",
        dir.display()
    );
    let flip = |path: &Path, offsets: &[u64], rng: &mut StdRng| {
        let mut bytes = std::fs::read(path).unwrap();
        for &at in offsets {
            bytes[at as usize] ^= 1 + rng.random_range(0..255) as u8;
        }
        std::fs::write(path, bytes).unwrap();
        offsets.len() as u64
    };
    let mut total = 0;
    match damage {
        Damage::None => {}
        Damage::FlipsLight | Damage::FlipsDataFiles | Damage::FlipsHeavy => {
            for path in &files {
                let len = std::fs::metadata(path).unwrap().len();
                if len == 0 || matches!(damage, Damage::FlipsDataFiles) && len < 64 << 10 {
                    continue;
                }
                let count = match damage {
                    Damage::FlipsLight | Damage::FlipsDataFiles => 4,
                    _ => (len / 256).max(16),
                };
                let offsets: Vec<u64> = (0..count)
                    .map(|_| rng.random_range(0..len.max(1)))
                    .collect();
                total += flip(path, &offsets, rng);
            }
        }
        Damage::FlipsInPayloads => {
            // 32 random bytes from the middle of each of 40 blocks: found where the backend
            // keeps the block. parity-db's index files are 32 MiB, mostly zero pages: those
            // are skipped with one comparison each, and a table of first bytes spares most
            // offsets the hash lookup (a plain search per needle takes minutes in debug).
            let needles: HashMap<[u8; 8], &[u8]> = all
                .iter()
                .filter(|b| b.len() >= 64)
                .take(40)
                .map(|b| {
                    let mid = b.len() / 2 - 16;
                    let needle = &b.data()[mid..mid + 32];
                    (needle[..8].try_into().unwrap(), needle)
                })
                .collect();
            let mut first = [false; 256];
            for head in needles.keys() {
                first[usize::from(head[0])] = true;
            }
            const PAGE: usize = 4096;
            let zero = [0u8; PAGE];
            for path in &files {
                let bytes = std::fs::read(path).unwrap();
                let mut offsets = Vec::new();
                for (page, chunk) in bytes.chunks(PAGE).enumerate() {
                    if chunk == &zero[..chunk.len()] {
                        continue;
                    }
                    let start = page * PAGE;
                    for at in start..(start + chunk.len()).min(bytes.len().saturating_sub(31)) {
                        if !first[usize::from(bytes[at])] {
                            continue;
                        }
                        let head: [u8; 8] = bytes[at..at + 8].try_into().unwrap();
                        if needles
                            .get(&head)
                            .is_some_and(|n| &bytes[at..at + 32] == *n)
                        {
                            offsets.push(at as u64 + 16);
                        }
                    }
                }
                if !offsets.is_empty() {
                    total += flip(path, &offsets, rng);
                }
            }
        }
        Damage::TruncateLargest => {
            let largest = files
                .iter()
                .max_by_key(|p| std::fs::metadata(p).unwrap().len())
                .unwrap();
            let len = std::fs::metadata(largest).unwrap().len();
            let keep = rng.random_range(0..len.max(1));
            std::fs::OpenOptions::new()
                .write(true)
                .open(largest)
                .unwrap()
                .set_len(keep)
                .unwrap();
            total = len - keep;
        }
    }
    total
}

/// What a reopen after the damage saw.
#[derive(Debug, Default)]
struct Seen {
    /// The open's error, if it failed (always a typed `Error`).
    open_error: Option<String>,
    exact: usize,
    none: usize,
    corrupt: usize,
    other_error: usize,
    /// Reads refused with `Closed`: a shard died (a panic got through). Must stay 0.
    closed: usize,
    /// Reads that returned bytes other than the block's: must stay 0.
    wrong: usize,
    /// `get_many` calls over a batch (each all-or-nothing).
    batches_ok: usize,
    batches_failed: usize,
    /// Listing: CIDs listed, and whether it ended in an error.
    listed: usize,
    list_error: bool,
}

/// Reopens the damaged store and reads every block, one `get` each, then `get_many` in
/// batches and the listing.
fn reopen_and_read(dir: &Path, kind: BackendKind, all: &[Block]) -> Seen {
    let mut seen = Seen::default();
    let engine = match Engine::open(config(dir, kind)) {
        Ok(engine) => engine,
        // `Closed` would mean a shard thread died while starting: a panic got through.
        Err(Error::Closed) => panic!("the open failed with Closed: a shard thread died"),
        Err(e) => {
            seen.open_error = Some(e.to_string());
            return seen;
        }
    };
    let store = engine.blocking();
    for block in all {
        match store.get(block.cid()) {
            Ok(Some(data)) if data == block.data() => seen.exact += 1,
            Ok(Some(_)) => seen.wrong += 1,
            Ok(None) => seen.none += 1,
            Err(Error::Corrupt { .. }) => seen.corrupt += 1,
            Err(Error::Closed) => seen.closed += 1,
            Err(_) => seen.other_error += 1,
        }
    }
    for chunk in all.chunks(32) {
        let cids: Vec<Cid> = chunk.iter().map(|b| *b.cid()).collect();
        match store.get_many(&cids) {
            Ok(found) => {
                seen.batches_ok += 1;
                for (block, got) in chunk.iter().zip(found) {
                    if got.is_some_and(|data| data != block.data()) {
                        seen.wrong += 1;
                    }
                }
            }
            Err(_) => seen.batches_failed += 1,
        }
    }
    for cid in store.cids() {
        match cid {
            Ok(_) => seen.listed += 1,
            Err(_) => {
                seen.list_error = true;
                break;
            }
        }
    }
    // A close may report the backend's final flush failing on damaged files: not checked.
    let _ = store.close();
    seen
}

static PANICS: AtomicUsize = AtomicUsize::new(0);
static HOOK: Once = Once::new();
/// Scenarios run one at a time, so the panic count is theirs.
static SERIAL: Mutex<()> = Mutex::new(());

/// Counts every panic in the process (shard threads and blocking pools included), then
/// reports it as usual.
fn count_panics() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
    });
}

/// How long a damaged reopen and its reads may take before it counts as a hang.
const DEADLINE: Duration = Duration::from_secs(120);

/// Runs `f` on its own thread, catching a panic, failing the test after [`DEADLINE`].
fn within_deadline<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::Result<T> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name(format!("damaged-{what}"))
        .spawn(move || {
            let _ = tx.send(std::panic::catch_unwind(AssertUnwindSafe(f)));
        })
        .unwrap();
    rx.recv_timeout(DEADLINE)
        .unwrap_or_else(|_| panic!("{what}: no answer within {DEADLINE:?} (a hang)"))
}

/// Stores blocks, damages the files, reopens and reads; asserts that no read returned other
/// bytes and that no panic got through (a library panic must come back as an error), and
/// prints the counts.
fn scenario(kind: BackendKind, damage: Damage, seed: u64) -> Seen {
    count_panics();
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let started = std::time::Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let all = blocks(seed, 300);
    store_all(&dir, kind, &all);
    let mut rng = StdRng::seed_from_u64(seed ^ 0xdead_beef);
    let damaged = inflict(&dir, kind, damage, &all, &mut rng);
    let panics_before = PANICS.load(Ordering::SeqCst);
    let what = format!("{kind}-{damage:?}-{seed}");
    let outcome = {
        let (dir, all) = (dir.clone(), all.clone());
        within_deadline(&what, move || reopen_and_read(&dir, kind, &all))
    };
    let panics = PANICS.load(Ordering::SeqCst) - panics_before;
    let seen = match outcome {
        Ok(seen) => seen,
        Err(_) => panic!("{what}: the damaged reopen or a read panicked in the caller"),
    };
    println!(
        "cold damage {kind} {damage:?} seed {seed:#x}: {damaged} bytes damaged; open {}; \
         get: exact {} none {} corrupt {} other-error {} wrong {}; get_many batches ok {} \
         failed {}; listed {}{}; library panics caught {panics}; {:.1} s",
        seen.open_error
            .as_deref()
            .map_or("ok".to_string(), |e| format!("FAILED ({e})")),
        seen.exact,
        seen.none,
        seen.corrupt,
        seen.other_error,
        seen.wrong,
        seen.batches_ok,
        seen.batches_failed,
        seen.listed,
        if seen.list_error { " then error" } else { "" },
        started.elapsed().as_secs_f64(),
    );
    assert_eq!(seen.wrong, 0, "{what}: other bytes were served");
    assert_eq!(
        seen.closed, 0,
        "{what}: a shard stopped (a panic got through)"
    );
    if seen.open_error.is_none() {
        let answered = seen.exact + seen.none + seen.corrupt + seen.other_error;
        assert_eq!(answered, all.len(), "{what}: every get answered");
    }
    seen
}

/// The control and every kind of damage, for one backend and several seeds.
fn campaign(kind: BackendKind) {
    let control = scenario(kind, Damage::None, 1);
    assert_eq!(control.exact, 300, "{kind}: the undamaged store reads back");
    assert_eq!(control.listed, 300);
    for seed in [0x11, 0x22] {
        scenario(kind, Damage::FlipsLight, seed);
        scenario(kind, Damage::FlipsDataFiles, seed);
        scenario(kind, Damage::FlipsHeavy, seed);
        scenario(kind, Damage::TruncateLargest, seed);
    }
    // Damage inside stored values is invisible to the backend: only the engine's own check
    // can find it, and it must (when the backend opens and hands the bytes back).
    let payloads = scenario(kind, Damage::FlipsInPayloads, 0x44);
    if payloads.open_error.is_none() {
        assert!(
            payloads.exact < 300,
            "{kind}: 40 damaged payloads all read back exact"
        );
    }
}

#[test]
fn sled_files_damaged() {
    campaign(BackendKind::Sled);
}

#[test]
fn paritydb_files_damaged() {
    campaign(BackendKind::ParityDb);
}

#[cfg(feature = "rocksdb")]
#[test]
fn rocksdb_files_damaged() {
    campaign(BackendKind::RocksDb);
}

/// Writes each value under its block's key straight into shard 0's backend (as an inline
/// index entry of the format the value was encoded in), as damage that leaves the backend's
/// own structures intact would.
fn overwrite_in_backend(dir: &Path, kind: BackendKind, items: &[(&Block, Bytes)]) {
    let backend = open_backend(
        kind,
        &dir.join("shard-000").join(kind.name()),
        &BackendOptions::default(),
    )
    .unwrap();
    let items: Vec<(Vec<u8>, Bytes)> = items
        .iter()
        .map(|(block, value)| (key_of(block.cid()), value.clone()))
        .collect();
    backend.put_batch(&items).unwrap();
    backend.flush().unwrap();
}

/// The inline entry format damaged entries are written in.
#[derive(Debug, Clone, Copy)]
enum Format {
    /// Written before inline entries carried a checksum: the engine hashes the bytes
    /// against the key.
    Unchecked,
    /// With a checksum over key and bytes.
    Checked,
}

impl Format {
    /// An entry for `block` holding `other`'s bytes (for `Checked`: `other`'s whole entry,
    /// filed under the wrong key).
    fn other_block(self, other: &Block) -> Bytes {
        match self {
            Format::Unchecked => ipfrs_tiering::pack::encode_inline_unchecked(other.data()),
            Format::Checked => {
                ipfrs_tiering::pack::encode_inline(&key_of(other.cid()), other.data())
            }
        }
    }

    /// `block`'s entry with one bit of its first byte of data flipped after it was written.
    fn flipped(self, block: &Block) -> Bytes {
        let mut value = match self {
            Format::Unchecked => ipfrs_tiering::pack::encode_inline_unchecked(block.data()),
            Format::Checked => {
                ipfrs_tiering::pack::encode_inline(&key_of(block.cid()), block.data())
            }
        }
        .to_vec();
        let first_data_byte = value.len() - block.data().len();
        value[first_data_byte] ^= 0x40;
        Bytes::from(value)
    }
}

fn one_shard(dir: &Path, kind: BackendKind, hot: bool) -> Config {
    let mut config = Config::new(dir);
    config.shards = Some(1);
    config.backend = kind;
    config.max_block_size = 128 << 10;
    config.hot_tier = hot.then(|| HotTier {
        segment_bytes: 512 << 10,
        budget_bytes: 4 << 20,
        promote_after_reads: 2,
        // Damage to inline entries is what these tests inflict, and only inline reads count
        // for promotion: every block here is copied into the backend when it goes cold.
        inline_threshold_bytes: 16 << 10,
        ..HotTier::default()
    });
    config
}

/// Whether `result` is `Corrupt`, naming `block` (any other answer fails the test).
fn is_corrupt(result: Result<Option<Bytes>, Error>, block: &Block) -> bool {
    match result {
        Err(err @ Error::Corrupt { .. }) => {
            assert_eq!(err.corrupt_cid().as_ref(), Some(block.cid()), "{err}");
            true
        }
        other => panic!("expected Corrupt for {}, got {other:?}", block.cid()),
    }
}

/// Wrong bytes under a key (another block's, or the block's with one byte flipped) are
/// `Corrupt` on every read, alone or in a batch, are never cached, and do not stop the
/// other blocks from being read.
fn wrong_bytes_are_corrupt_and_never_cached(kind: BackendKind, format: Format) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let all = blocks(7, 6);
    let engine = Engine::open(one_shard(&dir, kind, false)).unwrap();
    engine.blocking().put_many(&all).unwrap();
    engine.blocking().close().unwrap();
    drop(engine);
    overwrite_in_backend(
        &dir,
        kind,
        &[
            (&all[0], format.other_block(&all[1])),
            (&all[2], format.flipped(&all[2])),
        ],
    );

    let engine = Engine::open(one_shard(&dir, kind, false)).unwrap();
    let store = engine.blocking();
    for _ in 0..2 {
        assert!(is_corrupt(store.get(all[0].cid()), &all[0]));
        assert!(is_corrupt(store.get(all[2].cid()), &all[2]));
    }
    let batch: Vec<Cid> = all.iter().map(|b| *b.cid()).collect();
    assert!(
        matches!(store.get_many(&batch), Err(Error::Corrupt { .. })),
        "a batch with a damaged block fails as a whole"
    );
    let stats = store.stats().unwrap();
    assert_eq!(stats.corrupt_cold_reads, 4 + 2, "each refused read counts");
    // Good blocks a failed batch read on the caller's thread may be cached (they were
    // checked); the damaged ones never are.
    assert!(
        stats.shards[0].cache_entries <= 4,
        "only good blocks are cached: {}",
        stats.shards[0].cache_entries
    );
    for block in [&all[1], &all[3], &all[4], &all[5]] {
        assert_eq!(store.get(block.cid()).unwrap().as_ref(), Some(block.data()));
    }
    let stats = store.stats().unwrap();
    assert_eq!(
        stats.shards[0].cache_entries, 4,
        "only the good blocks are cached"
    );
    // Still refused after the good blocks filled the cache.
    assert!(is_corrupt(store.get(all[0].cid()), &all[0]));
    store.close().unwrap();
}

#[test]
fn sled_wrong_bytes_are_corrupt_and_never_cached() {
    wrong_bytes_are_corrupt_and_never_cached(BackendKind::Sled, Format::Checked);
}

#[test]
fn paritydb_wrong_bytes_are_corrupt_and_never_cached() {
    wrong_bytes_are_corrupt_and_never_cached(BackendKind::ParityDb, Format::Checked);
}

/// Entries written before inline checksums are still checked, by hashing them.
#[test]
fn sled_wrong_bytes_of_unchecked_entries_are_corrupt_and_never_cached() {
    wrong_bytes_are_corrupt_and_never_cached(BackendKind::Sled, Format::Unchecked);
}

#[test]
fn paritydb_wrong_bytes_of_unchecked_entries_are_corrupt_and_never_cached() {
    wrong_bytes_are_corrupt_and_never_cached(BackendKind::ParityDb, Format::Unchecked);
}

/// A damaged cold block read often enough to be promoted is never copied into the hot tier,
/// while a good one read as often is (so the promotion path was exercised).
#[test]
fn corrupt_cold_blocks_are_never_promoted() {
    let kind = BackendKind::Sled;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let all = blocks(9, 8);
    let engine = Engine::open(one_shard(&dir, kind, true)).unwrap();
    let store = engine.blocking();
    store.put_many(&all).unwrap();
    store.compact().unwrap();
    assert_eq!(store.stats().unwrap().hot_blocks, 0, "all moved cold");
    store.close().unwrap();
    drop(engine);
    overwrite_in_backend(
        &dir,
        kind,
        &[(&all[0], Format::Checked.other_block(&all[1]))],
    );

    let mut config = one_shard(&dir, kind, true);
    // No cache: every read reaches the backend and counts towards promotion.
    config.cache_bytes = 0;
    let engine = Engine::open(config).unwrap();
    let store = engine.blocking();
    for _ in 0..4 {
        assert!(is_corrupt(store.get(all[0].cid()), &all[0]));
        assert_eq!(
            store.get(all[3].cid()).unwrap().as_ref(),
            Some(all[3].data())
        );
    }
    // Promotions are queued writes: a flush waits for them.
    store.flush().unwrap();
    let stats = store.stats().unwrap();
    assert_eq!(stats.promotions, 1, "only the good block was promoted");
    // At least the promoted one: the damaged entry no longer points into its pack, so the
    // walk at open (the backend changed) finds that pack partly dead, and background
    // reclamation may move its other blocks hot too.
    assert!(stats.hot_blocks >= 1, "{stats:?}");
    assert_eq!(stats.corrupt_cold_reads, 4);
    assert!(is_corrupt(store.get(all[0].cid()), &all[0]));
    store.close().unwrap();
}

// ---------------------------------------------------------------------------------------
// The cold half of the bit-rot campaign: one flipped bit at a time in a cold backend's files,
// then open, read, repair, reopen.

/// Two shards with a hot tier: blocks put and compacted are cold, the later ones hot.
fn tiered(dir: &Path, kind: BackendKind) -> Config {
    let mut config = Config::new(dir);
    config.shards = Some(SHARDS);
    config.backend = kind;
    config.max_block_size = 128 << 10;
    config.cache_bytes = 0;
    config.backend_cache_bytes = 4 << 20;
    config.hot_tier = Some(HotTier {
        segment_bytes: 512 << 10,
        budget_bytes: 16 << 20,
        // The campaign damages a backend that holds the blocks themselves (inline), as it
        // was written for. With packed entries a flip can leave a key that the walk lists
        // but `get` does not find, after reclamation had moved the block back into the hot
        // tier: the repair then names as dropped a block that is still stored (hot).
        inline_threshold_bytes: 16 << 10,
        ..HotTier::default()
    });
    config
}

/// `count` blocks of 16 bytes to 6 KiB (small, so the campaign stays in seconds).
fn small_blocks(seed: u64, count: usize) -> Vec<Block> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..count)
        .map(|i| {
            let len = 16 + rng.random_range(0..6 << 10);
            let mut data: Vec<u8> = (0..len).map(|_| rng.random::<u8>()).collect();
            data.extend_from_slice(&(i as u32).to_le_bytes());
            Block::new(data).unwrap()
        })
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else if entry.file_name() != "LOCK" {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Flips one bit of `path`: half the time at any offset, half the time in a non-zero byte
/// (most of a backend's files is preallocated zeros, where a flip finds nothing to damage).
fn flip_one_bit(path: &Path, rng: &mut StdRng) -> u64 {
    let mut bytes = std::fs::read(path).unwrap();
    let mut at = rng.random_range(0..bytes.len());
    if rng.random_bool(0.5) {
        for _ in 0..256 {
            if bytes[at] != 0 {
                break;
            }
            at = rng.random_range(0..bytes.len());
        }
    }
    bytes[at] ^= 1 << rng.random_range(0..8);
    std::fs::write(path, bytes).unwrap();
    at as u64
}

/// The name class of a backend file, for the per-file tally (`snap.00000000000A1F3` and
/// `table_00_5` become `snap.*` and `table_*`).
fn file_class(path: &Path, root: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap();
    let inner: PathBuf = rel.components().skip(2).collect();
    let name = inner.to_string_lossy().to_string();
    match name.find(['.', '_']) {
        Some(i) if !name.starts_with("blobs") => format!("{}*", &name[..=i]),
        _ if name.starts_with("blobs") => "blobs/*".to_string(),
        _ => name,
    }
}

/// What one flip led to.
#[derive(Debug, Default, Clone)]
struct FlipOutcome {
    /// The open reported damage in a shard's cold backend.
    open_damage: bool,
    /// Cold blocks read back exact, refused as corrupt, read as absent.
    cold_exact: usize,
    cold_corrupt: usize,
    cold_none: usize,
    /// Blocks the repair dropped by name, and whether it reported an unknown loss.
    repair_dropped: usize,
    repair_unknown: bool,
    /// Cold blocks not readable after the repair (dropped, or lost without a name).
    lost: usize,
}

impl FlipOutcome {
    /// Whether the damage was seen at all (by the open, a read or the repair).
    fn detected(&self) -> bool {
        self.open_damage || self.cold_corrupt > 0 || self.repair_dropped > 0 || self.repair_unknown
    }
}

/// One flip: damage a copy of the pristine store, open (must succeed), read every block (hot
/// exact; cold exact, absent or `Corrupt`, never other bytes), close, repair, reopen (clean,
/// nothing damaged, every block readable before still readable, every listed block exact).
fn one_flip(
    kind: BackendKind,
    pristine: &Path,
    hot: &[Block],
    cold: &[Block],
    rng: &mut StdRng,
) -> (String, FlipOutcome) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    copy_dir(pristine, &dir);
    let files: Vec<PathBuf> = backend_files(&dir, kind)
        .into_iter()
        .filter(|f| std::fs::metadata(f).unwrap().len() > 0)
        .collect();
    // Half the flips go to the largest file (the log or value tables, where the blocks
    // are), half to any file (small metadata files whose damage can refuse the open).
    let file = if rng.random_bool(0.5) {
        files
            .iter()
            .max_by_key(|f| std::fs::metadata(f).unwrap().len())
            .unwrap()
    } else {
        &files[rng.random_range(0..files.len())]
    };
    let at = flip_one_bit(file, rng);
    let class = file_class(file, &dir);
    let what = format!("{kind}: bit flip at {at} of {}", file.display());
    let mut outcome = FlipOutcome::default();

    let engine = Engine::open(tiered(&dir, kind))
        .unwrap_or_else(|e| panic!("{what}: the store did not open: {e}"));
    let damage = engine.cold_damage();
    outcome.open_damage = !damage.is_empty();
    for (_, d) in &damage {
        assert_eq!(d.backend, kind, "{what}");
        assert!(d.path.starts_with(&dir), "{what}: {d}");
    }
    let store = engine.blocking();
    for block in hot {
        let got = store.get(block.cid());
        assert!(
            matches!(&got, Ok(Some(data)) if data == block.data()),
            "{what}: hot block {} not served: {:?}",
            block.cid(),
            got.map(|g| g.map(|d| d.len()))
        );
    }
    let mut readable_before = Vec::new();
    for block in cold {
        match store.get(block.cid()) {
            Ok(Some(data)) => {
                assert_eq!(&data, block.data(), "{what}: other bytes served");
                outcome.cold_exact += 1;
                readable_before.push(block.clone());
            }
            Ok(None) => outcome.cold_none += 1,
            Err(err @ Error::Corrupt { .. }) => {
                assert_eq!(err.corrupt_cid().as_ref(), Some(block.cid()), "{what}");
                outcome.cold_corrupt += 1;
            }
            Err(e) => panic!("{what}: a cold read failed with {e:?}, not Corrupt"),
        }
    }
    readable_before.extend(hot.iter().cloned());
    // A close may report a damaged backend's final flush failing: not checked here.
    let _ = store.close();
    drop(store);
    drop(engine);

    let repaired = ipfrs_storage::repair_cold(tiered(&dir, kind))
        .unwrap_or_else(|e| panic!("{what}: repair failed: {e}"));
    for shard in &repaired {
        outcome.repair_dropped += shard.dropped.len();
        outcome.repair_unknown |= shard.unknown_loss.is_some();
        if let Some(backup) = &shard.backup {
            assert!(backup.is_dir(), "{what}: the damaged backend is kept aside");
        }
        for cid in &shard.dropped {
            assert!(
                !readable_before.iter().any(|b| b.cid() == cid),
                "{what}: the repair dropped {cid}, which read back exact"
            );
        }
    }

    let engine = Engine::open(tiered(&dir, kind)).unwrap();
    assert!(
        engine.cold_damage().is_empty(),
        "{what}: damage after repair: {:?}",
        engine.cold_damage()
    );
    let store = engine.blocking();
    for block in &readable_before {
        let got = store.get(block.cid());
        assert!(
            matches!(&got, Ok(Some(data)) if data == block.data()),
            "{what}: {} was readable before the repair, now {:?}; repair: {repaired:?}",
            block.cid(),
            got.map(|g| g.map(|d| d.len()))
        );
    }
    // The repaired store verifies: every listed block reads back exact.
    let mut listed = 0;
    for cid in store.cids() {
        let cid = cid.unwrap_or_else(|e| panic!("{what}: listing after repair: {e}"));
        let data = store.get(&cid).unwrap().unwrap();
        ipfrs_storage::verify(&cid, &data).unwrap();
        listed += 1;
    }
    assert!(listed >= readable_before.len(), "{what}");
    outcome.lost = cold
        .iter()
        .filter(|b| !matches!(store.get(b.cid()), Ok(Some(data)) if data == b.data()))
        .count();
    store.close().unwrap();
    (class, outcome)
}

/// Seeded single-bit flips in every file class of `kind`'s cold backend, one at a time;
/// prints per file class how many flips were seen (open, read or repair) and how many cold
/// blocks went missing silently (absent without any report: damage the backend cannot tell).
fn bit_flip_campaign(kind: BackendKind, flips: usize) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let started = std::time::Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let pristine = tmp.path().join("pristine");
    let all = small_blocks(0xb17, 240);
    let (cold, hot) = all.split_at(160);
    {
        let engine = Engine::open(tiered(&pristine, kind)).unwrap();
        let store = engine.blocking();
        store.put_many(cold).unwrap();
        store.compact().unwrap();
        store.put_many(hot).unwrap();
        let stats = store.stats().unwrap();
        assert_eq!(
            stats.hot_blocks,
            hot.len() as u64,
            "{kind}: the hot blocks stay hot"
        );
        store.close().unwrap();
    }
    let mut rng = StdRng::seed_from_u64(0x5eed ^ kind as u64);
    // Per file class: flips, flips detected, flips that lost blocks without any report,
    // cold blocks read as absent, cold blocks gone after the repair.
    let mut tally: std::collections::BTreeMap<String, [usize; 5]> = Default::default();
    for _ in 0..flips {
        let (class, o) = one_flip(kind, &pristine, hot, cold, &mut rng);
        let entry = tally.entry(class).or_default();
        entry[0] += 1;
        entry[1] += usize::from(o.detected());
        entry[2] += usize::from((o.cold_none > 0 || o.lost > 0) && !o.detected());
        entry[3] += o.cold_none;
        entry[4] += o.lost;
    }
    let mut silent = 0;
    for (class, [n, detected, silently, none, lost]) in &tally {
        println!(
            "cold bit flips {kind} {class}: {n} flips, {detected} detected, {silently} lost \
             blocks silently; {none} cold reads absent, {lost} cold blocks gone after repair"
        );
        silent += silently;
    }
    // sled (with the durable mark) and parity-db report every flip that costs a block.
    if kind != BackendKind::RocksDb {
        assert_eq!(silent, 0, "{kind}: flips lost blocks without a report");
    }
    println!(
        "cold bit flips {kind}: {flips} flips in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn sled_single_bit_flips_open_read_and_repair() {
    bit_flip_campaign(BackendKind::Sled, 32);
}

#[test]
fn paritydb_single_bit_flips_open_read_and_repair() {
    bit_flip_campaign(BackendKind::ParityDb, 32);
}

#[cfg(feature = "rocksdb")]
#[test]
fn rocksdb_single_bit_flips_open_read_and_repair() {
    bit_flip_campaign(BackendKind::RocksDb, 32);
}
