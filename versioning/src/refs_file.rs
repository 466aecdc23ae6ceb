//! Refs as files: `<dir>/heads/main` holds the commit CID as text.
//!
//! A compare-and-swap holds an exclusive lock on `<dir>/.lock` (flock, so it also excludes
//! other processes) while it reads, compares and replaces the ref. A replacement is written
//! to a hidden temporary file, fsynced, renamed over the ref and the directory fsynced, so a
//! crash leaves either the old or the new value, never a torn one; readers need no lock.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use cid::Cid;

use crate::error::{Error, Result};
use crate::refs::{RefStore, validate_name};

/// Refs kept in a directory of small files.
#[derive(Debug, Clone)]
pub struct FileRefStore {
    dir: PathBuf,
}

impl FileRefStore {
    /// Opens (creating if needed) the ref directory.
    pub fn open(dir: impl Into<PathBuf>) -> Result<FileRefStore> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
        Ok(FileRefStore { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn read(&self, name: &str) -> Result<Option<Cid>> {
        let path = self.path(name);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path)(e)),
        };
        let cid = ipfrs_storage::key::parse_cid(text.trim()).map_err(|e| Error::Io {
            path: path.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
        })?;
        Ok(Some(cid))
    }

    fn write(&self, name: &str, cid: &Cid) -> Result<()> {
        let path = self.path(name);
        let parent = path.parent().unwrap_or(&self.dir).to_path_buf();
        fs::create_dir_all(&parent).map_err(Error::io(&parent))?;
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = parent.join(format!(".{file_name}.tmp-{}", std::process::id()));
        let result = (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(format!("{cid}\n").as_bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, &path)?;
            File::open(&parent)?.sync_all()
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map_err(Error::io(&path))
    }

    fn remove(&self, name: &str) -> Result<()> {
        let path = self.path(name);
        fs::remove_file(&path).map_err(Error::io(&path))?;
        let parent = path.parent().unwrap_or(&self.dir);
        File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(Error::io(parent))
    }

    fn collect(&self, dir: &Path, prefix: &str, out: &mut Vec<(String, Cid)>) -> Result<()> {
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(Error::io(dir))?;
            let file_name = entry.file_name().to_string_lossy().into_owned();
            // Hidden files are the lock and temporaries; valid names never start with '.'.
            if file_name.starts_with('.') {
                continue;
            }
            let path = entry.path();
            let Ok(rel) = path.strip_prefix(&self.dir) else {
                continue;
            };
            let name = rel
                .to_string_lossy()
                .replace(std::path::MAIN_SEPARATOR, "/");
            if path.is_dir() {
                self.collect(&path, prefix, out)?;
            } else if name.starts_with(prefix)
                && validate_name(&name).is_ok()
                && let Some(cid) = self.read(&name)?
            {
                out.push((name, cid));
            }
        }
        Ok(())
    }
}

impl RefStore for FileRefStore {
    fn get(&self, name: &str) -> Result<Option<Cid>> {
        validate_name(name)?;
        self.read(name)
    }

    fn compare_and_swap(&self, name: &str, expected: Option<Cid>, new: Option<Cid>) -> Result<()> {
        validate_name(name)?;
        let lock_path = self.dir.join(".lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(Error::io(&lock_path))?;
        // Released when `lock` is dropped (closing the file drops the flock).
        lock.lock().map_err(Error::io(&lock_path))?;
        let found = self.read(name)?;
        if found != expected {
            return Err(Error::Conflict {
                name: name.to_string(),
                expected: expected.map(Box::new),
                found: found.map(Box::new),
            });
        }
        match new {
            Some(cid) => self.write(name, &cid),
            None if found.is_some() => self.remove(name),
            None => Ok(()),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<(String, Cid)>> {
        let mut out = Vec::new();
        self.collect(&self.dir, prefix, &mut out)?;
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}
