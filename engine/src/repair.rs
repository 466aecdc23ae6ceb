//! Rebuilding damaged cold backends (`ipfrs-store repo repair`).
//!
//! The engine opens over a damaged cold backend (see `Engine::cold_damage`), but serves only
//! what it can still read. A repair, with the store closed, checks each shard's backend and
//! rebuilds a damaged one: every key it can still walk is read and its entry checked (an
//! inline block hashed against its multihash, a packed one's record read back from its pack),
//! the good entries go into a fresh backend, and the damaged one is moved aside as
//! `shard-NNN/<backend>.damaged-N` (never deleted: an operator may still salvage it). Blocks
//! that cannot be read back exact are dropped and named; keys the damage hid from the walk
//! cannot be named, and the report says so.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use ipfrs_core_types::key::cid_of_key;
use ipfrs_core_types::{BackendKind, Cid, Config};
use ipfrs_tiering::backends::{is_damage, resume_after_damage};
use ipfrs_tiering::pack::sound_entry;
use ipfrs_tiering::{BackendOptions, ColdBackend, open_backend};

use crate::directory::Directory;
use crate::{Error, Result};

/// Keys read, checked and copied per step: bounds the repair's memory to one step of blocks.
const STEP: usize = 256;

/// What a repair did to one shard's cold backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardRepair {
    /// The shard.
    pub shard: usize,
    /// The backend's directory.
    pub path: PathBuf,
    /// Where the damaged backend was moved, if it was rebuilt (`None`: it was sound).
    pub backup: Option<PathBuf>,
    /// Blocks read back exact (and copied, if rebuilt).
    pub kept: u64,
    /// Blocks whose key was seen but whose bytes could not be read back exact: dropped.
    pub dropped: Vec<Cid>,
    /// Keys in the backend that are not valid multihashes (dropped, counted).
    pub dropped_unnamed: u64,
    /// Why blocks may be gone that cannot be named: the backend did not open, or its walk
    /// stopped at damage (`None`: every key was seen).
    pub unknown_loss: Option<String>,
}

impl ShardRepair {
    /// Whether the backend was sound and left as it was.
    pub fn is_clean(&self) -> bool {
        self.backup.is_none()
    }
}

/// Checks every shard's cold backend of the store described by `config` and rebuilds the
/// damaged ones (see the module documentation). The store must be closed: it is locked for
/// the repair, so an open engine makes it fail with [`Error::Locked`].
///
/// A sound backend is left untouched, so a repair of a sound store changes nothing.
///
/// # Errors
/// [`Error::NotOurDirectory`] when the directory holds no store, [`Error::Locked`],
/// [`Error::Io`] for the file operations of the swap, [`Error::ColdBackend`] when a backend
/// fails for a reason other than damage (then the shard is left as it was).
pub fn repair_cold(config: impl Into<Config>) -> Result<Vec<ShardRepair>> {
    let config = config.into();
    let directory = Directory::lock(&config.data_dir)?;
    let Some(meta) = directory.read_meta()? else {
        return Err(Error::NotOurDirectory {
            path: config.data_dir.clone(),
        });
    };
    // A store whose packs left the disk for a bucket: its entries into them cannot be read
    // back here, and a rebuild would drop every one of those blocks. Refused before anything
    // is touched.
    for shard in 0..meta.shards {
        let marker = segments_dir(&directory.shard_dir(shard, meta.backend)).join("BUCKET");
        if let Ok(bucket) = std::fs::read_to_string(&marker) {
            return Err(Error::InvalidConfig {
                field: "remote",
                reason: format!(
                    "the store keeps packs only in a bucket ({}): a repair cannot check \
                     their blocks from this disk and would drop them; not supported yet",
                    bucket.trim()
                ),
            });
        }
    }
    let options = BackendOptions {
        cache_bytes: (config.backend_cache_bytes / meta.shards as u64).max(1 << 20),
    };
    (0..meta.shards)
        .map(|shard| {
            repair_shard(
                shard,
                meta.backend,
                &directory.shard_dir(shard, meta.backend),
                &options,
            )
        })
        .collect()
}

/// A walk of `old`'s keys stopped with `err` after `from`. Damage is noted in `unknown_loss`
/// (once: its blocks cannot be named) and the walk goes on where keys read again (`None`: the
/// damage reaches the end of the key space); any other error is the walk's.
pub(crate) fn past_damage(
    old: &dyn ColdBackend,
    err: ipfrs_tiering::Error,
    from: &[u8],
    unknown_loss: &mut Option<String>,
) -> ipfrs_tiering::Result<Option<Vec<u8>>> {
    if !is_damage(&err) {
        return Err(err);
    }
    unknown_loss.get_or_insert_with(|| {
        format!("the walk of its keys met damaged parts, whose blocks cannot be named: {err}")
    });
    resume_after_damage(old, from)
}

fn storage(dir: &Path, err: ipfrs_tiering::Error) -> Error {
    Error::ColdBackend {
        path: dir.to_path_buf(),
        source: err,
    }
}

fn repair_shard(
    shard: usize,
    kind: BackendKind,
    dir: &Path,
    options: &BackendOptions,
) -> Result<ShardRepair> {
    let mut report = ShardRepair {
        shard,
        path: dir.to_path_buf(),
        backup: None,
        kept: 0,
        dropped: Vec::new(),
        dropped_unnamed: 0,
        unknown_loss: None,
    };
    // A checkpoint left by a crash describes the backend as it was: the repair rewrites it.
    ipfrs_shards::open_state::discard(dir).map_err(|source| Error::Io {
        path: ipfrs_shards::open_state::path(dir),
        source,
    })?;
    let old = match open_backend(kind, dir, options) {
        Ok(old) => Some(old),
        Err(err) => match ipfrs_tiering::backends::damage_of_open_error(kind, dir, &err) {
            Some(damage) => {
                report.unknown_loss = Some(format!(
                    "the backend did not open, so none of its blocks can be read or named: {}",
                    damage.cause
                ));
                None
            }
            None => return Err(storage(dir, err)),
        },
    };
    // What the library skipped while opening is gone without a name.
    let skipped = old.as_ref().and_then(|old| old.damage_at_open());
    // A first pass only reads: a sound backend is left untouched.
    if let Some(old) = &old
        && skipped.is_none()
        && check(&**old, dir, &mut report, None)?
    {
        return Ok(report);
    }
    let rebuilding = sibling(dir, "rebuilding");
    if rebuilding.exists() {
        // Left by a repair that stopped before its swap: only ever a partial copy.
        std::fs::remove_dir_all(&rebuilding).map_err(|source| Error::Io {
            path: rebuilding.clone(),
            source,
        })?;
    }
    {
        let fresh = open_backend(kind, &rebuilding, options).map_err(|e| storage(dir, e))?;
        if let Some(old) = &old {
            report = ShardRepair {
                unknown_loss: None,
                kept: 0,
                dropped: Vec::new(),
                dropped_unnamed: 0,
                ..report
            };
            check(&**old, dir, &mut report, Some(&*fresh))?;
            salvage(&**old, dir, &mut report, &*fresh)?;
            if let Some(damage) = &skipped {
                let walk = report.unknown_loss.take();
                report.unknown_loss = Some(
                    [
                        Some(format!(
                            "the backend skipped damaged data when it opened: {}",
                            damage.cause
                        )),
                        walk,
                    ]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join("; "),
                );
            }
        }
        fresh.flush().map_err(|e| storage(dir, e))?;
        // Dropped here: parity-db writes everything out when its handle goes.
    }
    drop(old);
    let backup = (0..)
        .map(|n| sibling(dir, &format!("damaged-{n}")))
        .find(|p| !p.exists())
        .ok_or_else(|| Error::UnexpectedFiles {
            path: dir.to_path_buf(),
            reason: "no free name for the damaged backend's backup".into(),
        })?;
    rename(dir, &backup)?;
    rename(&rebuilding, dir)?;
    if let Some(parent) = dir.parent() {
        std::fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(|source| Error::Io {
                path: parent.to_path_buf(),
                source,
            })?;
    }
    report.backup = Some(backup);
    Ok(report)
}

/// `dir` with `.suffix` appended to its name (`shard-000/sled.rebuilding`).
pub(crate) fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".");
    name.push(suffix);
    dir.with_file_name(name)
}

pub(crate) fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(|source| Error::Io {
        path: from.to_path_buf(),
        source,
    })
}

/// The hot segments and packs of the shard whose backend is in `dir` (its index entries point
/// into the packs).
fn segments_dir(dir: &Path) -> PathBuf {
    dir.parent().unwrap_or(dir).join("segments")
}

/// Adds what the library's salvage scan finds beyond the walk (see
/// [`ColdBackend::salvage`]): every value that hashes to its key and is not in `fresh` yet
/// is copied, and a dropped block found whole this way is kept after all.
fn salvage(
    old: &dyn ColdBackend,
    dir: &Path,
    report: &mut ShardRepair,
    fresh: &dyn ColdBackend,
) -> Result<()> {
    let mut found: Vec<(Vec<u8>, Bytes)> = Vec::new();
    let mut failed = None;
    let segments = segments_dir(dir);
    let unreadable = old.salvage(&mut |key, value| {
        if failed.is_some() {
            return;
        }
        let Some(entry) = sound_entry(key, value, &segments) else {
            return;
        };
        match fresh.contains(key) {
            Ok(true) => {}
            Ok(false) if found.iter().any(|(k, _)| k == key) => {}
            Ok(false) => found.push((key.to_vec(), entry)),
            Err(e) => failed = Some(e),
        }
        if found.len() >= STEP {
            if let Err(e) = fresh.put_batch(&found) {
                failed = Some(e);
            }
            report.kept += found.len() as u64;
            report
                .dropped
                .retain(|cid| !found.iter().any(|(k, _)| *k == cid.hash().to_bytes()));
            found.clear();
        }
    });
    let unreadable = match unreadable {
        Ok(unreadable) => unreadable,
        Err(e) if is_damage(&e) => None,
        Err(e) => return Err(storage(dir, e)),
    };
    if let Some(e) = failed {
        return Err(storage(dir, e));
    }
    if !found.is_empty() {
        fresh.put_batch(&found).map_err(|e| storage(dir, e))?;
        report.kept += found.len() as u64;
        report
            .dropped
            .retain(|cid| !found.iter().any(|(k, _)| *k == cid.hash().to_bytes()));
    }
    if let Some(pages) = unreadable.filter(|&n| n > 0) {
        let note = format!("{pages} parts of the backend could not be read");
        report.unknown_loss = Some(match report.unknown_loss.take() {
            Some(loss) => format!("{loss}; {note}"),
            None => note,
        });
    }
    Ok(())
}

/// Walks `old`, reading and hashing every block; copies the good ones into `into` if given.
/// Returns whether everything was sound (every key walked, every block exact).
fn check(
    old: &dyn ColdBackend,
    dir: &Path,
    report: &mut ShardRepair,
    into: Option<&dyn ColdBackend>,
) -> Result<bool> {
    let mut after: Option<Vec<u8>> = None;
    let segments = segments_dir(dir);
    loop {
        let mut keys = Vec::with_capacity(STEP);
        let walked = old.iterate(after.as_deref(), &mut |key, _| {
            keys.push(key.to_vec());
            keys.len() < STEP
        });
        let mut good: Vec<(Vec<u8>, Bytes)> = Vec::with_capacity(keys.len());
        for key in &keys {
            let exact = match old.get(key) {
                Ok(Some(value)) => sound_entry(key, &value, &segments),
                Ok(None) => None,
                Err(e) if is_damage(&e) => None,
                Err(e) => return Err(storage(dir, e)),
            };
            match (exact, cid_of_key(key)) {
                (Some(value), _) => {
                    report.kept += 1;
                    good.push((key.clone(), value));
                }
                (None, Ok(cid)) => report.dropped.push(cid),
                (None, Err(_)) => report.dropped_unnamed += 1,
            }
        }
        if let Some(into) = into
            && !good.is_empty()
        {
            into.put_batch(&good).map_err(|e| storage(dir, e))?;
        }
        if let Err(e) = walked {
            // Go on past the damaged part: every readable key after it is kept.
            let last = keys.last().cloned().or(after).unwrap_or_default();
            match past_damage(old, e, &last, &mut report.unknown_loss)
                .map_err(|e| storage(dir, e))?
            {
                Some(resume) => {
                    after = Some(resume);
                    continue;
                }
                None => break,
            }
        }
        match keys.pop() {
            Some(last) if keys.len() + 1 == STEP => after = Some(last),
            _ => break,
        }
    }
    Ok(report.unknown_loss.is_none() && report.dropped.is_empty() && report.dropped_unnamed == 0)
}
