//! The data directory: its metadata file and its lock.
//!
//! ```text
//! data_dir/
//!   ipfrs.meta            "ipfrs-storage", format, backend, shards (written once, atomically)
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

/// The on-disk format this build reads and writes.
pub(crate) const FORMAT_VERSION: u32 = 1;
const META_FILE: &str = "ipfrs.meta";
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

    /// The recorded metadata, `None` for a new store.
    pub(crate) fn read_meta(&self) -> Result<Option<Meta>> {
        let path = self.path.join(META_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(Error::Io { path, source }),
        };
        let incompatible = |found: String| Error::IncompatibleFormat {
            path: self.path.clone(),
            found,
            supported: FORMAT_VERSION,
        };
        let mut lines = text.lines();
        if lines.next() != Some(MAGIC) {
            return Err(incompatible("unreadable ipfrs.meta".into()));
        }
        let (mut format, mut backend, mut shards) = (None, None, None);
        for line in lines {
            match line.split_once('=') {
                Some(("format", v)) => format = Some(v.to_string()),
                Some(("backend", v)) => backend = Some(v.to_string()),
                Some(("shards", v)) => shards = Some(v.to_string()),
                _ => {}
            }
        }
        let format = format.ok_or_else(|| incompatible("no format line".into()))?;
        if format != FORMAT_VERSION.to_string() {
            return Err(incompatible(format));
        }
        let backend = backend
            .and_then(|b| b.parse().ok())
            .ok_or_else(|| incompatible("unknown backend in ipfrs.meta".into()))?;
        let shards = shards
            .and_then(|s| s.parse().ok())
            .filter(|&n: &usize| n > 0)
            .ok_or_else(|| incompatible("bad shard count in ipfrs.meta".into()))?;
        Ok(Some(Meta { backend, shards }))
    }

    /// Records the metadata of a new store: written to a temporary file, synced, renamed into
    /// place, and the directory synced, so a crash leaves either no metadata or all of it.
    pub(crate) fn write_meta(&self, meta: &Meta) -> Result<()> {
        let tmp = self.path.join(META_TMP_FILE);
        let text = format!(
            "{MAGIC}\nformat={FORMAT_VERSION}\nbackend={}\nshards={}\n",
            meta.backend, meta.shards
        );
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
