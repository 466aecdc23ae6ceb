//! Power-loss test: a child process runs concurrent puts and deletes with the hot tier's
//! power-cut journal armed (`ipfrs_shards::power_cut`, the `failpoints` feature). At a seeded
//! event (a segment write, fdatasync, segment creation or directory sync) the journal of
//! everything not yet durable is written out and the child kills itself with SIGKILL. The
//! parent then plays the disk after a power cut: every write not covered by an fdatasync is
//! kept, dropped (its range gets its earlier bytes back) or torn (a prefix of its 512-byte
//! sectors kept, or now and then any subset of them); a segment created since the last sync
//! of its directory may vanish, and one never fdatasync'ed may lose its preallocated size; a
//! hint file written during the run may vanish. Then it reopens the store and checks:
//! - it opens, reports no corrupt record (nothing synced was damaged) and takes writes;
//! - a put acknowledged under Sync or Batch is present and bit-exact, a delete acknowledged
//!   under them holds (unless a later op on the key was issued);
//! - any block, acknowledged under None or not acknowledged at all, is whole or absent: every
//!   read returns the exact bytes or nothing, never wrong bytes nor a `Corrupt` error;
//! - listing and the block count agree with the reads.
//!
//! After some cuts nothing is checked: the next child recovers the torn store itself, writes on
//! and is cut again, and the check after that holds every key to what either run may have left.
//!
//! Each worker thread owns its keys, so the order of the ops on a key is the order its thread
//! issued them. The parent's decisions are seeded (`IPFRS_POWER_SEEDS`, comma separated,
//! overrides the seeds; `IPFRS_POWER_CUTS` the cuts per seed); the child's timing is not.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ipfrs_shards::power_cut::{self, CutAt, Pending};
use ipfrs_storage::{Block, Cid, Config, Durability, Engine, HotTier, IoDriver};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const ENV_DIR: &str = "IPFRS_POWER_CHILD_DIR";
const ENV_WORK: &str = "IPFRS_POWER_CHILD_WORK";
const ENV_MODE: &str = "IPFRS_POWER_CHILD_MODE";
/// The I/O driver the child writes with (the parent checks under io_uring).
const ENV_DRIVER: &str = "IPFRS_POWER_CHILD_DRIVER";
const ENV_SEED: &str = "IPFRS_POWER_CHILD_SEED";
const ENV_CYCLE: &str = "IPFRS_POWER_CHILD_CYCLE";
/// "event N" or "creation N" (see `CutAt`).
const ENV_CUT_AT: &str = "IPFRS_POWER_CHILD_CUT_AT";

/// Worker threads of the child, each with its own keys.
const THREADS: u64 = 3;
/// The granularity at which the parent tears a write (a disk's logical sector).
const SECTOR: usize = 512;
/// The child cuts the power itself after this long if the armed event has not come.
const CUT_AT_THE_LATEST: Duration = Duration::from_secs(3);
/// How long a child may take before the test gives up on it.
const CHILD_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Sync,
    Batch,
    None,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Sync => "sync",
            Mode::Batch => "batch",
            Mode::None => "none",
        }
    }

    fn parse(name: &str) -> Mode {
        match name {
            "sync" => Mode::Sync,
            "batch" => Mode::Batch,
            _ => Mode::None,
        }
    }

    /// Whether an acknowledged write is durable.
    fn acks_durable(self) -> bool {
        self != Mode::None
    }
}

fn config(dir: &Path, mode: Mode) -> Config {
    let mut config = Config::new(dir);
    config.shards = Some(2);
    config.durability = match mode {
        Mode::Sync => Durability::Sync,
        Mode::Batch => Durability::Batch {
            max_delay: Duration::from_millis(1),
            max_ops: 64,
        },
        Mode::None => Durability::None,
    };
    config.max_block_size = 16 << 10;
    config.hot_tier = Some(HotTier {
        // Small segments, so that runs roll segments over (creations, seals, hint files);
        // small DMA writes, so that a group is several writes in flight, each kept, dropped
        // or torn on its own; a budget no run reaches: compaction would move blocks into the
        // cold backend, whose files this journal does not cover.
        segment_bytes: 128 << 10,
        write_chunk_bytes: 16 << 10,
        budget_bytes: 1 << 30,
        ..HotTier::default()
    });
    config
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Block `id`: its bytes depend only on `id`. Mostly small blocks, some near the limit.
fn block(id: u64) -> Block {
    let h = splitmix(id);
    let len = if h % 10 < 8 {
        64 + (h >> 8) as usize % 4000
    } else {
        4096 + (h >> 8) as usize % 12_000
    };
    let mut data = Vec::with_capacity(len + 8);
    data.extend_from_slice(&id.to_le_bytes());
    let mut x = h;
    while data.len() < len + 8 {
        x = splitmix(x);
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(len + 8);
    Block::new(data).unwrap()
}

/// The worker thread that owns key `id`.
fn owner(id: u64) -> u64 {
    (id >> 24) & 0xff
}

/// The `n`-th new key of thread `t` in cycle `cycle`.
fn new_id(cycle: u64, t: u64, n: u64) -> u64 {
    (cycle << 32) | (t << 24) | n
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Put,
    Delete,
}

/// One op a worker issued, and whether it was acknowledged before the cut.
#[derive(Debug)]
struct Op {
    kind: Kind,
    ids: Vec<u64>,
    acked: bool,
}

/// The child: `THREADS` workers put and delete their own keys until the power is cut.
#[test]
#[ignore = "helper: run as a child process by the power-loss tests"]
fn power_cut_child() {
    let Ok(dir) = std::env::var(ENV_DIR) else {
        return;
    };
    let var = |name: &str| std::env::var(name).unwrap();
    let work = PathBuf::from(var(ENV_WORK));
    let mode = Mode::parse(&var(ENV_MODE));
    let seed: u64 = var(ENV_SEED).parse().unwrap();
    let cycle: u64 = var(ENV_CYCLE).parse().unwrap();
    let cut_at = match var(ENV_CUT_AT).split_once(' ').unwrap() {
        ("event", n) => CutAt::Event(n.parse().unwrap()),
        (_, n) => CutAt::Creation(n.parse().unwrap()),
    };
    let known: Vec<u64> = std::fs::read_to_string(work.join("known"))
        .unwrap()
        .split_whitespace()
        .map(|s| s.parse().unwrap())
        .collect();

    power_cut::arm(&work.join("journal"), cut_at);
    let mut child_config = config(dir.as_ref(), mode);
    child_config.io_driver = var(ENV_DRIVER).parse().unwrap();
    let engine = Engine::open(child_config).unwrap();
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = engine.blocking();
            let mut log = std::fs::File::create(work.join(format!("ops-{t}"))).unwrap();
            let mut mine: Vec<u64> = known.iter().copied().filter(|&id| owner(id) == t).collect();
            let mut rng = StdRng::seed_from_u64(splitmix(seed ^ (cycle << 8) ^ t));
            std::thread::spawn(move || {
                let mut fresh = 0;
                loop {
                    let roll = rng.random_range(0..100);
                    let (kind, ids) = if roll < 60 || mine.is_empty() {
                        let n = rng.random_range(1..=6);
                        let ids: BTreeSet<u64> = (0..n)
                            .map(|_| {
                                if mine.is_empty() || rng.random_bool(0.75) {
                                    fresh += 1;
                                    new_id(cycle, t, fresh)
                                } else {
                                    mine[rng.random_range(0..mine.len())]
                                }
                            })
                            .collect();
                        (Kind::Put, ids)
                    } else {
                        let n = rng.random_range(1..=4);
                        let ids: BTreeSet<u64> = (0..n)
                            .map(|_| mine[rng.random_range(0..mine.len())])
                            .collect();
                        (Kind::Delete, ids)
                    };
                    let ids: Vec<u64> = ids.into_iter().collect();
                    let list: Vec<String> = ids.iter().map(u64::to_string).collect();
                    let tag = if kind == Kind::Put { "P" } else { "D" };
                    // Written before the op is sent: the parent must know every op that may
                    // have reached the disk. A process kill keeps what write(2) was given.
                    log.write_all(format!("{tag} {}\n", list.join(",")).as_bytes())
                        .unwrap();
                    let blocks: Vec<Block> = ids.iter().map(|&id| block(id)).collect();
                    let result = match kind {
                        Kind::Put => store.put_many(&blocks).map(|_| ()),
                        Kind::Delete => {
                            let cids: Vec<Cid> = blocks.iter().map(|b| *b.cid()).collect();
                            store.delete_many(&cids).map(|_| ())
                        }
                    };
                    match result {
                        Ok(()) => log.write_all(b"A\n").unwrap(),
                        Err(e) => {
                            log.write_all(format!("F {e}\n").as_bytes()).unwrap();
                            return;
                        }
                    }
                    if kind == Kind::Put {
                        for id in ids {
                            if !mine.contains(&id) {
                                mine.push(id);
                            }
                        }
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(CUT_AT_THE_LATEST);
    power_cut::cut_now();
    // Only reached if a worker stopped on an error and nothing cut the power.
    for worker in workers {
        let _ = worker.join();
    }
    panic!("the power-cut journal was never armed");
}

/// The ops each worker of a dead child issued, in order.
fn read_ops(work: &Path) -> Vec<Vec<Op>> {
    (0..THREADS)
        .map(|t| {
            let text = std::fs::read_to_string(work.join(format!("ops-{t}"))).unwrap_or_default();
            let mut ops: Vec<Op> = Vec::new();
            for line in text.lines() {
                let (tag, rest) = line.split_at(1);
                match tag {
                    "P" | "D" => ops.push(Op {
                        kind: if tag == "P" { Kind::Put } else { Kind::Delete },
                        ids: rest.trim().split(',').map(|s| s.parse().unwrap()).collect(),
                        acked: false,
                    }),
                    "A" => ops.last_mut().unwrap().acked = true,
                    // A kill mid-line leaves a partial line: that op was never sent.
                    _ if !line.starts_with('F') => {}
                    _ => panic!("worker {t} failed before the power cut: {line}"),
                }
            }
            ops
        })
        .collect()
}

/// What the parent did to the files at one cut, for the failure message.
#[derive(Default, Debug)]
struct Cut {
    kept: usize,
    dropped: usize,
    torn: usize,
    vanished_files: Vec<PathBuf>,
    emptied_files: Vec<PathBuf>,
    vanished_hints: Vec<PathBuf>,
}

/// Plays the disk after a power cut: see the module documentation.
fn apply_power_cut(pending: &[Pending], new_hints: &[PathBuf], rng: &mut StdRng) -> Cut {
    let mut cut = Cut::default();
    let open = |path: &Path| {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    // Back to the durable image: undo every pending write, newest first.
    for entry in pending.iter().rev() {
        if let Pending::Write {
            path,
            offset,
            prev,
            data,
        } = entry
        {
            assert_eq!(
                prev.len(),
                data.len(),
                "write past the end of {}",
                path.display()
            );
            open(path).write_all_at(prev, *offset).unwrap();
        }
    }
    for entry in pending {
        if let Pending::Create {
            path,
            entry_durable,
            size_durable,
            ..
        } = entry
        {
            if !entry_durable && rng.random_bool(0.5) {
                cut.vanished_files.push(path.clone());
            } else if !size_durable && rng.random_bool(0.3) {
                cut.emptied_files.push(path.clone());
            }
        }
    }
    // Then what reached the disk of each pending write, oldest first.
    let mut touched: HashSet<PathBuf> = HashSet::new();
    for entry in pending {
        let Pending::Write {
            path, offset, data, ..
        } = entry
        else {
            continue;
        };
        if cut.vanished_files.contains(path) {
            continue;
        }
        touched.insert(path.clone());
        let sectors = data.len() / SECTOR;
        match rng.random_range(0..100) {
            0..40 => {
                open(path).write_all_at(data, *offset).unwrap();
                cut.kept += 1;
            }
            40..62 if sectors > 1 => {
                let keep = rng.random_range(1..sectors) * SECTOR;
                open(path).write_all_at(&data[..keep], *offset).unwrap();
                cut.torn += 1;
            }
            // A device need not write a request's sectors in order either.
            62..70 if sectors > 1 => {
                let file = open(path);
                for (i, sector) in data.chunks(SECTOR).enumerate() {
                    if rng.random_bool(0.5) {
                        file.write_all_at(sector, offset + (i * SECTOR) as u64)
                            .unwrap();
                    }
                }
                cut.torn += 1;
            }
            _ => cut.dropped += 1,
        }
    }
    for path in &cut.emptied_files {
        open(path).set_len(0).unwrap();
    }
    for path in &cut.vanished_files {
        std::fs::remove_file(path).unwrap();
    }
    for path in &touched {
        if !cut.vanished_files.contains(path) {
            open(path).sync_all().unwrap();
        }
    }
    // A hint is written (synced, renamed, directory synced) after its segment was synced, in
    // the background: one written during the run may not have reached the disk.
    for path in new_hints {
        if rng.random_bool(0.5) {
            std::fs::remove_file(path).unwrap();
            cut.vanished_hints.push(path.clone());
        }
    }
    cut
}

/// Hint files (finished or not) under the store's directory.
fn hint_files(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let Ok(shards) = std::fs::read_dir(dir) else {
        return out;
    };
    for shard in shards.flatten() {
        let Ok(files) = std::fs::read_dir(shard.path().join("segments")) else {
            continue;
        };
        for file in files.flatten() {
            let name = file.file_name().to_string_lossy().into_owned();
            if name.ends_with(".hint") || name.ends_with(".hint.tmp") {
                out.insert(file.path());
            }
        }
    }
    out
}

/// Runs the child until it cuts its power; fails unless it died as a power cut does.
fn run_child(
    dir: &Path,
    work: &Path,
    (mode, driver): (Mode, IoDriver),
    seed: u64,
    cycle: u64,
    cut_at: CutAt,
) {
    let cut_at = match cut_at {
        CutAt::Event(n) => format!("event {n}"),
        CutAt::Creation(n) => format!("creation {n}"),
        CutAt::Never => unreachable!("every child cuts its power"),
    };
    let stderr = std::fs::File::create(work.join("stderr")).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "power_cut_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ENV_DIR, dir)
        .env(ENV_WORK, work)
        .env(ENV_MODE, mode.name())
        .env(ENV_DRIVER, driver.name())
        .env(ENV_SEED, seed.to_string())
        .env(ENV_CYCLE, cycle.to_string())
        .env(ENV_CUT_AT, cut_at)
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + CHILD_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the child did not cut the power within {CHILD_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let stderr = std::fs::read_to_string(work.join("stderr")).unwrap_or_default();
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "the child did not end in a power cut ({status}):\n{stderr}"
    );
}

/// Power cuts of children writing under `driver` in `mode`, each checked after a reopen.
fn campaign(mode: Mode, driver: IoDriver) {
    let seeds: Vec<u64> = std::env::var("IPFRS_POWER_SEEDS")
        .ok()
        .map(|s| s.split(',').map(|x| x.trim().parse().unwrap()).collect())
        .unwrap_or_else(|| vec![1, 2, 3]);
    let cuts: u64 = std::env::var("IPFRS_POWER_CUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let mut totals = Cut::default();
    let mut acked_durable = 0usize;
    let mut chained = 0usize;
    for &seed in &seeds {
        let mut rng = StdRng::seed_from_u64(splitmix(seed ^ mode as u64));
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("store");
        let work = root.path().join("work");
        std::fs::create_dir_all(&work).unwrap();
        // What each key may be (present, absent): what the last check found, or what the
        // ops since may have left.
        let mut allowed: HashMap<u64, HashSet<bool>> = HashMap::new();
        // The cuts since the last check, for the failure message.
        let mut unchecked = String::new();
        for cycle in 0..cuts {
            let known: Vec<String> = allowed.keys().map(u64::to_string).collect();
            std::fs::write(work.join("known"), known.join(" ")).unwrap();
            for name in ["journal", "ops-0", "ops-1", "ops-2"] {
                let _ = std::fs::remove_file(work.join(name));
            }
            let hints_before = hint_files(&dir);
            // Mostly a cut while the workers run; sometimes one while the store opens, or
            // between a new segment's creation and its directory's sync.
            let cut_at = match rng.random_range(0..10) {
                0 => CutAt::Event(rng.random_range(1..=8)),
                1..3 => CutAt::Creation(rng.random_range(1..=4)),
                _ => CutAt::Event(rng.random_range(8..=400)),
            };
            run_child(&dir, &work, (mode, driver), seed, cycle, cut_at);

            let pending = power_cut::read_journal(&work.join("journal")).unwrap_or_else(|e| {
                panic!("{} seed {seed} cycle {cycle}: no journal: {e}", mode.name())
            });
            let new_hints: Vec<PathBuf> = hint_files(&dir)
                .difference(&hints_before)
                .cloned()
                .collect();
            let cut = apply_power_cut(&pending, &new_hints, &mut rng);
            unchecked += &format!(" cycle {cycle}: cut at {cut_at:?}: {cut:?};");

            for ops in read_ops(&work) {
                for op in ops {
                    let after = op.kind == Kind::Put;
                    if op.acked && mode.acks_durable() {
                        acked_durable += op.ids.len();
                    }
                    for id in op.ids {
                        let states = allowed.entry(id).or_insert_with(|| HashSet::from([false]));
                        if op.acked && mode.acks_durable() {
                            states.clear();
                        }
                        states.insert(after);
                    }
                }
            }
            // Mostly a check after each cut; sometimes the next child recovers the store
            // itself and writes on before the next cut.
            if cycle + 1 == cuts || rng.random_bool(0.7) {
                let context = format!("{} seed {seed}:{unchecked}", mode.name());
                let found = verify_reopened(&dir, mode, &allowed, &context);
                allowed = found
                    .into_iter()
                    .map(|(id, present)| (id, HashSet::from([present])))
                    .collect();
                unchecked.clear();
            } else {
                chained += 1;
            }
            totals.kept += cut.kept;
            totals.dropped += cut.dropped;
            totals.torn += cut.torn;
            totals.vanished_files.extend(cut.vanished_files);
            totals.emptied_files.extend(cut.emptied_files);
            totals.vanished_hints.extend(cut.vanished_hints);
        }
    }
    eprintln!(
        "power loss ({}): {} seeds x {cuts} cuts; unsynced writes kept {}, dropped {}, torn {}; \
         segments vanished {}, emptied {}; hints vanished {}; {acked_durable} durable acks; \
         {chained} cuts recovered by the next child",
        mode.name(),
        seeds.len(),
        totals.kept,
        totals.dropped,
        totals.torn,
        totals.vanished_files.len(),
        totals.emptied_files.len(),
        totals.vanished_hints.len(),
    );
    assert!(
        totals.kept + totals.dropped + totals.torn > 0,
        "no cut ever met an unsynced write"
    );
}

/// Reopens the store after a cut and checks every key against what it may be; returns what
/// it found (made durable by a clean close). The checks are against what each key may be,
/// since a cut the check follows may have come after earlier ones no check followed.
fn verify_reopened(
    dir: &Path,
    mode: Mode,
    allowed: &HashMap<u64, HashSet<bool>>,
    context: &str,
) -> HashMap<u64, bool> {
    let engine = Engine::open(config(dir, mode))
        .unwrap_or_else(|e| panic!("{context}: the store does not open: {e}"));
    let store = engine.blocking();
    let stats = store.stats().unwrap();
    assert_eq!(
        stats.corrupt_records, 0,
        "{context}: recovery reported corrupt records, but nothing synced was damaged"
    );
    let mut found = HashMap::new();
    let mut by_cid: HashMap<Cid, u64> = HashMap::new();
    let mut ids: Vec<u64> = allowed.keys().copied().collect();
    ids.sort_unstable();
    for id in ids {
        let b = block(id);
        by_cid.insert(*b.cid(), id);
        let present = match store.get(b.cid()) {
            Ok(Some(data)) => {
                assert!(
                    data == *b.data(),
                    "{context}: block {id} served with wrong bytes"
                );
                true
            }
            Ok(None) => false,
            Err(e) => panic!("{context}: block {id} unreadable: {e}"),
        };
        assert_eq!(store.has(b.cid()).unwrap(), present, "{context}: has({id})");
        let states = &allowed[&id];
        assert!(
            states.contains(&present),
            "{context}: block {id} is {}",
            if present {
                "present, but its delete was acknowledged"
            } else {
                "absent, but its put was acknowledged"
            }
        );
        found.insert(id, present);
    }
    let mut listed = BTreeSet::new();
    for cid in store.cids() {
        let cid = cid.unwrap_or_else(|e| panic!("{context}: listing failed: {e}"));
        let id = by_cid
            .get(&cid)
            .unwrap_or_else(|| panic!("{context}: listed {cid}, which was never put"));
        listed.insert(*id);
    }
    let present: BTreeSet<u64> = found
        .iter()
        .filter(|(_, p)| **p)
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(
        listed, present,
        "{context}: listing disagrees with the reads"
    );
    assert_eq!(
        stats.blocks,
        present.len() as u64,
        "{context}: the block count disagrees with the reads"
    );
    // Writable again, and a clean close makes what was found durable for the next cycle.
    let probe = Block::new(format!("probe after {context}").into_bytes()).unwrap();
    store.put(&probe).unwrap();
    assert_eq!(store.get(probe.cid()).unwrap().as_ref(), Some(probe.data()));
    store.delete(probe.cid()).unwrap();
    store.flush().unwrap();
    store.close().unwrap();
    found
}

#[test]
fn power_loss_keeps_synced_writes_under_sync() {
    campaign(Mode::Sync, IoDriver::IoUring);
}

#[test]
fn power_loss_keeps_synced_writes_under_sync_on_the_fallback_driver() {
    campaign(Mode::Sync, IoDriver::Fallback);
}

#[test]
fn power_loss_keeps_synced_writes_under_batch() {
    campaign(Mode::Batch, IoDriver::IoUring);
}

#[test]
fn power_loss_never_serves_a_wrong_block_under_none() {
    campaign(Mode::None, IoDriver::IoUring);
}
