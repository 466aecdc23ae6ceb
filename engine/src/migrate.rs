//! Converting a closed store of format 1 to format 2 (`ipfrs-store repo migrate`).
//!
//! Format 1 stored each cold block's bytes as its backend value; format 2 stores an index
//! entry (`ipfrs_tiering::pack`). Hot segments are the same in both, so only the cold
//! backends are rewritten: each shard's backend is copied into a fresh one whose values are
//! `encode_inline(key, old value)`, every old value checked against its key on the way (a value
//! that does not hash to its key is not copied, and is named), and the copy replaces the old.
//!
//! The store says where a conversion stands, so that a crash at any point is finished by
//! running it again, and no build opens a half-converted store:
//! ```text
//! ipfrs.meta  format=1                    nothing changed yet
//!             format=1-to-2, migrated=K   shards [0, K) done, shard K may be in a step below
//!             format=2                    done (written only once every shard is done)
//!
//! shard K, by which of shard-K/<backend> (B), <backend>.migrating (M), <backend>.v1 (V) exist:
//!   B          old backend, untouched         -> copy B into a fresh M
//!   B M        copy under way (M partial)     -> remove M, copy again
//!   M V        old moved aside, M complete    -> rename M to B
//!   B V        new backend in place           -> migrated=K+1, then remove V
//!   V          (a swap never leaves this)     -> V is the untouched old backend: rename to B
//!   none       no cold backend                -> nothing to copy
//! a shard below K: B (done), or B V (remove V)
//! ```
//! M is synced to disk (every file and directory under it) before B is renamed, and the shard
//! directory is synced after each rename, so the renames are the only commit points.
//! `migrated` counts a shard only once its new backend is in place under B, and before V is
//! removed: a shard whose B is new is therefore never copied again (which would refuse
//! every one of its values as damaged).

use std::fs::File;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use ipfrs_core_types::key::cid_of_key;
use ipfrs_core_types::{BackendKind, Cid, Config, verify_key};
use ipfrs_tiering::pack::encode_inline;
use ipfrs_tiering::{BackendOptions, ColdBackend, open_backend};

use crate::directory::{
    Directory, FORMAT_VERSION, META_FILE, MIGRATABLE_FORMAT, MIGRATING_FORMAT, Recorded,
};
use crate::repair::{past_damage, rename, sibling};
use crate::{Error, Result};

/// Keys copied per batch, at most: bounds the copy's memory together with [`STEP_BYTES`].
const STEP: usize = 256;
/// Value bytes copied per batch, at most (a batch of 2 MiB blocks would otherwise hold
/// 512 MiB).
const STEP_BYTES: usize = 16 << 20;
/// Suffix of the new backend while it is being written.
const MIGRATING_SUFFIX: &str = "migrating";
/// Suffix of the old backend between the swap and its removal.
const OLD_SUFFIX: &str = "v1";

/// What [`migrate`] did to one shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardMigration {
    /// The shard.
    pub shard: usize,
    /// The shard's cold backend directory (`shard-NNN/<backend>`).
    pub path: PathBuf,
    /// What was done.
    pub outcome: ShardOutcome,
    /// Blocks copied into the new backend by this run.
    pub blocks: u64,
    /// Block bytes copied by this run (without the entries' one-byte tags).
    pub bytes: u64,
    /// Blocks whose stored bytes do not hash to their key: not copied (they were damaged).
    pub refused: Vec<Cid>,
    /// Keys that are not valid multihashes: not copied, counted.
    pub refused_unnamed: u64,
    /// Why blocks of the old backend may be missing that cannot be named (its walk met
    /// damaged parts, or the library skipped damage when it opened); `None`: every key was
    /// seen.
    pub unknown_loss: Option<String>,
}

/// What a run did to a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardOutcome {
    /// Its backend was copied into the new format by this run.
    Copied,
    /// An earlier, interrupted run had copied it: this run finished its swap or cleanup.
    Finished,
    /// Converted before this run (the store was already at format 2, or an interrupted run
    /// got past this shard).
    AlreadyDone,
    /// The shard has no cold backend: nothing to copy.
    NoBackend,
}

/// What [`migrate`] did to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateReport {
    /// The data directory.
    pub path: PathBuf,
    /// The format the store recorded before this run (`1`, `1-to-2` for an interrupted run,
    /// or the current format when there was nothing to do).
    pub from: String,
    /// The format the store has now.
    pub to: u32,
    /// One entry per shard (every shard is [`ShardOutcome::AlreadyDone`] for a store that was
    /// already current).
    pub shards: Vec<ShardMigration>,
}

impl MigrateReport {
    /// Whether the store was already at the current format: nothing was changed.
    pub fn was_current(&self) -> bool {
        self.from == FORMAT_VERSION.to_string()
    }

    /// Blocks copied by this run, over all shards.
    pub fn blocks(&self) -> u64 {
        self.shards.iter().map(|s| s.blocks).sum()
    }

    /// Block bytes copied by this run, over all shards.
    pub fn bytes(&self) -> u64 {
        self.shards.iter().map(|s| s.bytes).sum()
    }

    /// Values refused (by name and unnamed), over all shards.
    pub fn refused(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.refused.len() as u64 + s.refused_unnamed)
            .sum()
    }
}

/// Converts the closed store described by `config` (its data directory; the backend and
/// shard count are the ones the store records, and `backend_cache_bytes` sizes the backends'
/// caches) from format 1 to the current format, in place (see the module documentation).
/// It locks the store as [`crate::Engine::open`] does, so it never runs beside an open engine.
///
/// A store already at the current format is left untouched. A run that stops (a crash, an
/// I/O error) leaves a store that no build opens but that the next run finishes. Values that
/// do not hash to their key are not copied and are named in the report; everything else is
/// copied bit-exact.
///
/// # Errors
/// [`Error::NotOurDirectory`] when the directory holds no store (nothing is created),
/// [`Error::Locked`], [`Error::IncompatibleFormat`] for a format this build does not know,
/// [`Error::BackendNotCompiled`], [`Error::Io`] for the file operations,
/// [`Error::ColdBackend`] when a backend fails for a reason other than damage,
/// [`Error::UnexpectedFiles`] when a shard is in a state no conversion leaves (then it is
/// left as it was).
pub fn migrate(config: impl Into<Config>) -> Result<MigrateReport> {
    let config = config.into();
    let path = config.data_dir.clone();
    // Checked before the lock, which would create the directory and its lock file.
    if !path.join(META_FILE).is_file() {
        return Err(Error::NotOurDirectory { path });
    }
    let directory = Directory::lock(&path)?;
    let Some(mut recorded) = directory.read_recorded()? else {
        return Err(Error::NotOurDirectory { path });
    };
    let meta = recorded.meta.clone();
    let from = recorded.format.clone();
    let shard_dirs: Vec<PathBuf> = (0..meta.shards)
        .map(|shard| directory.shard_dir(shard, meta.backend))
        .collect();
    if from == FORMAT_VERSION.to_string() {
        return Ok(MigrateReport {
            path,
            from,
            to: FORMAT_VERSION,
            shards: shard_dirs
                .into_iter()
                .enumerate()
                .map(|(shard, dir)| ShardMigration::new(shard, dir, ShardOutcome::AlreadyDone))
                .collect(),
        });
    }
    if !ipfrs_tiering::backends::is_compiled(meta.backend) {
        return Err(Error::BackendNotCompiled(meta.backend));
    }
    if from == MIGRATABLE_FORMAT {
        // From here on no build opens the store until the conversion is done.
        recorded = Recorded {
            format: MIGRATING_FORMAT.to_string(),
            meta: meta.clone(),
            migrated: 0,
        };
        directory.write_recorded(&recorded)?;
    }
    let options = BackendOptions {
        cache_bytes: (config.backend_cache_bytes / meta.shards as u64).max(1 << 20),
    };
    let mut shards = Vec::with_capacity(meta.shards);
    for (shard, dir) in shard_dirs.into_iter().enumerate() {
        let done = shard < recorded.migrated;
        let report = migrate_shard(shard, meta.backend, &dir, &options, done, &mut |n| {
            recorded.migrated = n;
            directory.write_recorded(&recorded)
        })?;
        shards.push(report);
    }
    directory.write_recorded(&Recorded {
        format: FORMAT_VERSION.to_string(),
        meta,
        migrated: 0,
    })?;
    Ok(MigrateReport {
        path,
        from,
        to: FORMAT_VERSION,
        shards,
    })
}

impl ShardMigration {
    fn new(shard: usize, path: PathBuf, outcome: ShardOutcome) -> ShardMigration {
        ShardMigration {
            shard,
            path,
            outcome,
            blocks: 0,
            bytes: 0,
            refused: Vec::new(),
            refused_unnamed: 0,
            unknown_loss: None,
        }
    }
}

fn storage(dir: &Path, err: ipfrs_tiering::Error) -> Error {
    Error::ColdBackend {
        path: dir.to_path_buf(),
        source: err,
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Brings one shard to the new format from whichever state a run left it in (see the
/// module's table). `done`: the store records this shard as converted. `count_done(n)`
/// records shards `[0, n)` as converted.
fn migrate_shard(
    shard: usize,
    kind: BackendKind,
    dir: &Path,
    options: &BackendOptions,
    done: bool,
    count_done: &mut dyn FnMut(usize) -> Result<()>,
) -> Result<ShardMigration> {
    let new = sibling(dir, MIGRATING_SUFFIX);
    let old = sibling(dir, OLD_SUFFIX);
    let shard_dir = dir.parent().unwrap_or(dir);
    let (has_b, has_m, has_v) = (dir.exists(), new.exists(), old.exists());
    let unexpected = |what: &str| Error::UnexpectedFiles {
        path: dir.to_path_buf(),
        reason: format!(
            "{what} exist together, a state no conversion leaves; move the one that is \
             not the shard's backend away and run the migration again"
        ),
    };
    if done {
        if has_m {
            return Err(unexpected(&format!(
                "shard {shard} is recorded as converted, but {} and {}",
                dir.display(),
                new.display()
            )));
        }
        // Removed when the shard was converted; again here, in case a copy of it came back.
        remove_file(&ipfrs_shards::open_state::path(dir), shard_dir)?;
        if has_v {
            remove_dir(&old, shard_dir)?;
        }
        return Ok(ShardMigration::new(
            shard,
            dir.to_path_buf(),
            ShardOutcome::AlreadyDone,
        ));
    }
    match (has_b, has_m, has_v) {
        (true, true, true) => {
            return Err(unexpected(&format!(
                "{}, {} and {}",
                dir.display(),
                new.display(),
                old.display()
            )));
        }
        (false, true, false) => {
            return Err(unexpected(&format!(
                "{} without {} or {}",
                new.display(),
                dir.display(),
                old.display()
            )));
        }
        _ => {}
    }
    // The saved bloom filter and counters describe the old values: the next open walks.
    remove_file(&ipfrs_shards::open_state::path(dir), shard_dir)?;
    let mut report = ShardMigration::new(shard, dir.to_path_buf(), ShardOutcome::Finished);
    match (has_b, has_m, has_v) {
        (false, false, false) => report.outcome = ShardOutcome::NoBackend,
        (true, false, false) | (true, true, false) => {
            if has_m {
                // Only ever a partial copy: the swap starts once the copy is durable.
                remove_dir(&new, shard_dir)?;
            }
            copy(kind, dir, &new, options, &mut report)?;
            report.outcome = ShardOutcome::Copied;
            rename(dir, &old)?;
            sync_dir(shard_dir)?;
            rename(&new, dir)?;
            sync_dir(shard_dir)?;
        }
        (false, true, true) => {
            rename(&new, dir)?;
            sync_dir(shard_dir)?;
        }
        (true, false, true) => {}
        (false, false, true) => {
            // Only the old backend is left (by hand, or by a crash in a move we do not
            // make): it is complete, so the shard starts over from it.
            rename(&old, dir)?;
            sync_dir(shard_dir)?;
            return migrate_shard(shard, kind, dir, options, done, count_done);
        }
        // Refused above.
        (true, true, true) | (false, true, false) => {}
    }
    // The new backend is in place (or there is none): counted before the old one goes.
    count_done(shard + 1)?;
    if old.exists() {
        remove_dir(&old, shard_dir)?;
    }
    Ok(report)
}

/// Copies every block of the backend in `from` into a fresh backend in `to` as inline index
/// entries, checking each against its key; flushes and closes both, and syncs `to` to disk.
fn copy(
    kind: BackendKind,
    from: &Path,
    to: &Path,
    options: &BackendOptions,
    report: &mut ShardMigration,
) -> Result<()> {
    let old = open_backend(kind, from, options).map_err(|e| storage(from, e))?;
    if let Some(damage) = old.damage_at_open() {
        report.unknown_loss = Some(format!(
            "the backend skipped damaged data when it opened: {}",
            damage.cause
        ));
    }
    {
        let fresh = open_backend(kind, to, options).map_err(|e| storage(to, e))?;
        copy_all(&*old, &*fresh, from, report)?;
        fresh.flush().map_err(|e| storage(to, e))?;
        // Dropped here: parity-db writes everything out when its handle goes.
    }
    drop(old);
    // sled's flush is not an fdatasync, and parity-db's is not durable either: the files
    // are synced here before the rename that makes them the shard's backend.
    sync_tree(to)
}

/// Walks `old` in key order, in batches, and writes the blocks that hash to their key into
/// `fresh`; goes on past damaged parts of the walk (as `repo repair` does).
fn copy_all(
    old: &dyn ColdBackend,
    fresh: &dyn ColdBackend,
    dir: &Path,
    report: &mut ShardMigration,
) -> Result<()> {
    let mut after: Option<Vec<u8>> = None;
    loop {
        let mut batch: Vec<(Vec<u8>, Bytes)> = Vec::new();
        let (mut seen, mut batch_bytes, mut last) = (0usize, 0usize, None::<Vec<u8>>);
        let walked = old.iterate(after.as_deref(), &mut |key, value| {
            seen += 1;
            last = Some(key.to_vec());
            if verify_key(key, value).is_ok() {
                batch.push((key.to_vec(), encode_inline(key, value)));
                batch_bytes += value.len();
                report.blocks += 1;
                report.bytes += value.len() as u64;
            } else {
                match cid_of_key(key) {
                    Ok(cid) => report.refused.push(cid),
                    Err(_) => report.refused_unnamed += 1,
                }
            }
            seen < STEP && batch_bytes < STEP_BYTES
        });
        if !batch.is_empty() {
            fresh.put_batch(&batch).map_err(|e| storage(dir, e))?;
        }
        if let Err(e) = walked {
            let from = last.or(after).unwrap_or_default();
            match past_damage(old, e, &from, &mut report.unknown_loss)
                .map_err(|e| storage(dir, e))?
            {
                Some(resume) => {
                    after = Some(resume);
                    continue;
                }
                None => return Ok(()),
            }
        }
        // The walk stopped early only when the batch was full: otherwise it reached the end.
        match last {
            Some(last) if seen == STEP || batch_bytes >= STEP_BYTES => after = Some(last),
            _ => return Ok(()),
        }
    }
}

/// Syncs every file and directory under `dir`, and `dir` itself.
fn sync_tree(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        if path.is_dir() {
            sync_tree(&path)?;
        } else {
            File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(io(&path))?;
        }
    }
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<()> {
    ipfrs_tiering::segment::file::sync_dir(dir).map_err(io(dir))
}

/// Removes a directory tree and syncs its parent.
fn remove_dir(dir: &Path, parent: &Path) -> Result<()> {
    std::fs::remove_dir_all(dir).map_err(io(dir))?;
    sync_dir(parent)
}

/// Removes a file if it exists, and syncs its directory when it did.
fn remove_file(path: &Path, parent: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => sync_dir(parent),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}
