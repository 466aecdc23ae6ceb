//! The data directory: its metadata file and its lock.
//!
//! ```text
//! data_dir/
//!   ipfrs.meta            "ipfrs-storage", format, backend, shards (written atomically at
//!                         creation, and by `repo migrate`: see `migrate.rs`)
//!   LOCK                  flock'ed while an engine has the store open
//!   metadata.log          small named values with compare-and-swap (see `metadata.rs`)
//!   shard-000/<backend>/  each shard's cold backend
//!   shard-000/segments/   its hot segments (NNNNNNNN.seg) and their hint files (NNNNNNNN.hint)
//!   shard-000/open-state  its bloom filter and counters, saved at a clean close (single use)
//!   shard-000/space.reserve  disk kept free for deletes and compaction
//! ```
//! The metadata makes reopening with another backend, shard count or format a clear error
//! instead of a silent new store; the lock makes a second open fail instead of corrupting.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use ipfrs_core_types::BackendKind;

use crate::{Error, Result};

/// The on-disk format this build reads and writes. Format 2: every cold backend value is an
/// index entry (`ipfrs_tiering::pack`); format 1 stored the block's bytes as the value.
pub(crate) const FORMAT_VERSION: u32 = 2;
/// The format `repo migrate` converts to [`FORMAT_VERSION`] (see `migrate.rs`).
pub(crate) const MIGRATABLE_FORMAT: &str = "1";
/// The format a store records while `repo migrate` converts it: no build opens such a
/// half-converted store (a format 1 build would take converted values for damage), and the
/// `migrated=N` line says which shards are done.
pub(crate) const MIGRATING_FORMAT: &str = "1-to-2";
pub(crate) const META_FILE: &str = "ipfrs.meta";
const LOCK_FILE: &str = "LOCK";
/// Where the metadata is written before its rename; left behind by a crash in between.
const META_TMP_FILE: &str = "ipfrs.meta.tmp";
const MAGIC: &str = "ipfrs-storage";

/// What a store records about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Meta {
    pub(crate) backend: BackendKind,
    pub(crate) shards: usize,
}

/// The metadata of a store in any format this build knows: the current one, or one that
/// `repo migrate` converts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Recorded {
    /// The `format` line as written.
    pub(crate) format: String,
    pub(crate) meta: Meta,
    /// Shards `[0, migrated)` a migration has converted (0 unless `format` is
    /// [`MIGRATING_FORMAT`]).
    pub(crate) migrated: usize,
}

/// The open directory; dropping it releases the lock.
pub(crate) struct Directory {
    pub(crate) path: PathBuf,
    _lock: File,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl Directory {
    /// Opens (creating if needed) and locks the directory; a directory with foreign files is
    /// refused before anything is written in it.
    pub(crate) fn lock(path: &Path) -> Result<Directory> {
        std::fs::create_dir_all(path).map_err(io_err(path))?;
        let has_meta = path.join(META_FILE).exists();
        if !has_meta {
            let foreign = std::fs::read_dir(path)
                .map_err(io_err(path))?
                .filter_map(|entry| entry.ok())
                .any(|entry| entry.file_name() != LOCK_FILE && entry.file_name() != META_TMP_FILE);
            if foreign {
                return Err(Error::NotOurDirectory {
                    path: path.to_path_buf(),
                });
            }
        }
        let lock_path = path.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::Locked { path: lock_path });
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(Error::Io {
                    path: lock_path,
                    source,
                });
            }
        }
        Ok(Directory {
            path: path.to_path_buf(),
            _lock: lock,
        })
    }

    /// The recorded metadata, `None` for a new store. A store in a format `repo migrate`
    /// converts is refused with an [`Error::IncompatibleFormat`] that names the command.
    pub(crate) fn read_meta(&self) -> Result<Option<Meta>> {
        match self.read_recorded()? {
            None => Ok(None),
            Some(recorded) if recorded.format == FORMAT_VERSION.to_string() => {
                Ok(Some(recorded.meta))
            }
            Some(recorded) => Err(self.incompatible(recorded.format)),
        }
    }

    fn incompatible(&self, found: String) -> Error {
        Error::IncompatibleFormat {
            path: self.path.clone(),
            found,
            supported: FORMAT_VERSION,
        }
    }

    /// The recorded metadata in the current format or one `repo migrate` knows; any other
    /// format, and unreadable metadata, is an [`Error::IncompatibleFormat`].
    pub(crate) fn read_recorded(&self) -> Result<Option<Recorded>> {
        let path = self.path.join(META_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(Error::Io { path, source }),
        };
        let mut lines = text.lines();
        if lines.next() != Some(MAGIC) {
            return Err(self.incompatible("unreadable ipfrs.meta".into()));
        }
        let (mut format, mut backend, mut shards, mut migrated) = (None, None, None, None);
        for line in lines {
            match line.split_once('=') {
                Some(("format", v)) => format = Some(v.to_string()),
                Some(("backend", v)) => backend = Some(v.to_string()),
                Some(("shards", v)) => shards = Some(v.to_string()),
                Some(("migrated", v)) => migrated = Some(v.to_string()),
                _ => {}
            }
        }
        let format = format.ok_or_else(|| self.incompatible("no format line".into()))?;
        // The other lines of an unknown format may mean something else: not read.
        let migrating = format == MIGRATING_FORMAT;
        if format != FORMAT_VERSION.to_string() && format != MIGRATABLE_FORMAT && !migrating {
            return Err(self.incompatible(format));
        }
        let backend = backend
            .and_then(|b| b.parse().ok())
            .ok_or_else(|| self.incompatible("unknown backend in ipfrs.meta".into()))?;
        let shards = shards
            .and_then(|s| s.parse().ok())
            .filter(|&n: &usize| n > 0)
            .ok_or_else(|| self.incompatible("bad shard count in ipfrs.meta".into()))?;
        let migrated = match migrated {
            Some(m) if migrating => m
                .parse()
                .ok()
                .filter(|&m: &usize| m <= shards)
                .ok_or_else(|| self.incompatible("bad migrated count in ipfrs.meta".into()))?,
            _ if migrating => {
                return Err(self.incompatible("no migrated count in ipfrs.meta".into()));
            }
            _ => 0,
        };
        Ok(Some(Recorded {
            format,
            meta: Meta { backend, shards },
            migrated,
        }))
    }

    /// Records the metadata of a new store in the current format (see
    /// [`Directory::write_recorded`]).
    pub(crate) fn write_meta(&self, meta: &Meta) -> Result<()> {
        self.write_recorded(&Recorded {
            format: FORMAT_VERSION.to_string(),
            meta: meta.clone(),
            migrated: 0,
        })
    }

    /// Records the metadata: written to a temporary file, synced, renamed into place, and the
    /// directory synced, so a crash leaves the old metadata (or none) or all of the new.
    pub(crate) fn write_recorded(&self, recorded: &Recorded) -> Result<()> {
        let tmp = self.path.join(META_TMP_FILE);
        let mut text = format!(
            "{MAGIC}\nformat={}\nbackend={}\nshards={}\n",
            recorded.format, recorded.meta.backend, recorded.meta.shards
        );
        if recorded.format == MIGRATING_FORMAT {
            text.push_str(&format!("migrated={}\n", recorded.migrated));
        }
        let mut file = File::create(&tmp).map_err(io_err(&tmp))?;
        file.write_all(text.as_bytes()).map_err(io_err(&tmp))?;
        file.sync_all().map_err(io_err(&tmp))?;
        let dest = self.path.join(META_FILE);
        std::fs::rename(&tmp, &dest).map_err(io_err(&dest))?;
        File::open(&self.path)
            .and_then(|dir| dir.sync_all())
            .map_err(io_err(&self.path))
    }

    /// Where shard `id` keeps its backend.
    pub(crate) fn shard_dir(&self, id: usize, backend: BackendKind) -> PathBuf {
        self.path
            .join(format!("shard-{id:03}"))
            .join(backend.name())
    }
}
