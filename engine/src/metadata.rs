//! The engine's metadata store: small named values (the versioning layer's branches, tags and
//! HEAD) changed only by compare-and-swap.
//!
//! Metadata is not block data: it is tiny, rewritten in place, and must be durable with every
//! cold backend alike (parity-db cannot promise a durable flush), so it has its own file
//! instead of a backend namespace:
//!
//! ```text
//! data_dir/metadata.log     "IPFRSMD1", then one record per change:
//!                           key len u32 | value len u32 (u32::MAX: delete) | key | value |
//!                           xxh3-64 of everything before it in the record (all little-endian)
//! data_dir/metadata.tmp     a rewrite in progress; removed at open (the log is still whole)
//! ```
//!
//! One thread owns the file and the in-memory map and serves requests in arrival order over a
//! flume channel, so a compare-and-swap is atomic without locks and no async caller ever
//! blocks on a file operation. Every change is appended and fdatasync'ed before it is
//! acknowledged. Once the log passes 1 MiB and four times its live bytes, it is rewritten to a
//! temporary file, synced and renamed over the log.
//!
//! A failed write, fdatasync, rename or reopen poisons the log (as a failed sync poisons a hot
//! shard): after a failed fsync the kernel may have dropped the dirty pages, and after a failed
//! rename or reopen the open file may be an unlinked inode, so nothing written from then on
//! could be trusted to be found again. Every later change is refused with
//! [`Error::MetadataPoisoned`], carrying the first failure, until the engine is reopened (which
//! replays the log from disk); reads of the values already acknowledged keep working.
//!
//! Recovery: a damaged record that reaches the end of the file (a torn append: a prefix of a
//! record, or zeros past the last whole one) is cut off, as it was never acknowledged. A
//! damaged record with whole records after it is corruption: the store still opens (blocks do
//! not depend on metadata) but every metadata call reports [`Error::MetadataCorrupt`] naming
//! the file and offset, and nothing is written over it.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::service::ServiceThread;
use crate::{Engine, Error, Result};

/// The log's file name in the data directory.
pub(crate) const LOG_FILE: &str = "metadata.log";
/// Where a rewrite is built before its rename.
pub(crate) const TMP_FILE: &str = "metadata.tmp";
const MAGIC: &[u8; 8] = b"IPFRSMD1";
const DELETE: u32 = u32::MAX;
/// Length fields, then the checksum.
const OVERHEAD: usize = 16;

/// Longest metadata key, in bytes.
pub const MAX_METADATA_KEY_BYTES: usize = 1024;
/// Largest metadata value, in bytes.
pub const MAX_METADATA_VALUE_BYTES: usize = 64 << 10;
/// The budget of all live metadata (keys and values), held in memory: the store refuses a
/// change that would pass it with [`Error::MetadataFull`].
pub const MAX_METADATA_BYTES: usize = 16 << 20;
/// The log is rewritten once it is larger than this and four times its live records.
const REWRITE_AFTER: u64 = 1 << 20;

/// What a compare-and-swap did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Swap {
    /// The value was `expected` and is now the new one (durably).
    Done,
    /// The value was not `expected`; nothing changed. Carries the value found.
    Conflict {
        /// The current value (`None`: the key is absent).
        current: Option<Bytes>,
    },
}

/// Small named values with atomic compare-and-swap, kept by the store itself: what the
/// versioning layer keeps its refs in.
///
/// Every change is durable when its future completes, with every cold backend. Keys are 1 to
/// [`MAX_METADATA_KEY_BYTES`] bytes, values at most [`MAX_METADATA_VALUE_BYTES`], and all live keys and values
/// together at most [`MAX_METADATA_BYTES`] (they are held in memory).
///
/// ```
/// use ipfrs_storage::{Engine, MetadataStore, Swap};
/// # let dir = tempfile::tempdir().unwrap();
/// let store = Engine::open(dir.path())?;
/// futures_lite::future::block_on(async {
///     assert_eq!(store.meta_compare_and_swap(b"refs/main", None, Some(b"c1")).await?, Swap::Done);
///     // A writer that read an old value loses, and learns the current one.
///     let lost = store.meta_compare_and_swap(b"refs/main", None, Some(b"c2")).await?;
///     assert!(matches!(lost, Swap::Conflict { current: Some(v) } if v == &b"c1"[..]));
///     assert_eq!(store.meta_list(b"refs/").await?.len(), 1);
///     Ok::<(), ipfrs_storage::Error>(())
/// })?;
/// # Ok::<(), ipfrs_storage::Error>(())
/// ```
pub trait MetadataStore: Send + Sync {
    /// The value under `key`, `None` if absent.
    fn meta_get(&self, key: &[u8]) -> impl Future<Output = Result<Option<Bytes>>> + Send;

    /// Sets `key` to `new` (`None` removes it) if its value is `expected` (`None`: absent),
    /// atomically with respect to every other caller; returns once the change is durable.
    /// Otherwise nothing changes and the result is [`Swap::Conflict`] with the value found.
    ///
    /// # Errors
    /// [`Error::InvalidMetadata`], [`Error::MetadataFull`], [`Error::MetadataCorrupt`], an
    /// I/O error of the log (the change is then not made), [`Error::MetadataPoisoned`] (this
    /// change, or an earlier one, met a failed write, sync or rename: no change is made until
    /// the engine is reopened), [`Error::Closed`].
    fn meta_compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> impl Future<Output = Result<Swap>> + Send;

    /// Every key starting with `prefix` and its value, in ascending key order.
    fn meta_list(
        &self,
        prefix: &[u8],
    ) -> impl Future<Output = Result<Vec<(Vec<u8>, Bytes)>>> + Send;
}

impl MetadataStore for Engine {
    fn meta_get(&self, key: &[u8]) -> impl Future<Output = Result<Option<Bytes>>> + Send {
        let key = key.to_vec();
        self.metadata().call(|reply| Request::Get { key, reply })
    }

    fn meta_compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> impl Future<Output = Result<Swap>> + Send {
        let (key, expected, new) = (
            key.to_vec(),
            expected.map(<[u8]>::to_vec),
            new.map(<[u8]>::to_vec),
        );
        self.metadata().call(|reply| Request::Swap {
            key,
            expected,
            new,
            reply,
        })
    }

    fn meta_list(
        &self,
        prefix: &[u8],
    ) -> impl Future<Output = Result<Vec<(Vec<u8>, Bytes)>>> + Send {
        let prefix = prefix.to_vec();
        self.metadata()
            .call(|reply| Request::List { prefix, reply })
    }
}

/// The thread that owns the log, and the way to it.
pub(crate) struct MetaService(ServiceThread<Request>);

impl MetaService {
    /// Starts the log's thread.
    pub(crate) fn start(log: MetaLog) -> Result<MetaService> {
        ServiceThread::spawn("ipfrs-metadata", None, move |requests| log.serve(requests))
            .map(MetaService)
    }

    /// Sends one request and waits for its reply, without blocking the caller's thread.
    pub(crate) fn call<T: Send + 'static>(
        &self,
        make: impl FnOnce(flume::Sender<Result<T>>) -> Request,
    ) -> impl Future<Output = Result<T>> + Send + 'static {
        let (reply, answer) = flume::bounded(1);
        let sent = self.0.send(make(reply));
        async move {
            if !sent {
                return Err(Error::Closed);
            }
            answer.recv_async().await.map_err(|_| Error::Closed)?
        }
    }

    /// Lets the thread finish the requests already sent, then joins it; idempotent.
    pub(crate) fn stop(&self) {
        self.0.stop();
    }
}

pub(crate) enum Request {
    Get {
        key: Vec<u8>,
        reply: flume::Sender<Result<Option<Bytes>>>,
    },
    Swap {
        key: Vec<u8>,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
        reply: flume::Sender<Result<Swap>>,
    },
    List {
        prefix: Vec<u8>,
        reply: flume::Sender<Result<Entries>>,
    },
}

/// The open log and its live records.
pub(crate) struct MetaLog {
    dir: PathBuf,
    file: Option<File>,
    map: BTreeMap<Vec<u8>, Bytes>,
    live_bytes: usize,
    log_bytes: u64,
    /// Set when the log holds corruption: `(offset, reason)`.
    damaged: Option<(u64, String)>,
    /// Set by the first failed file operation of a change; the log then refuses changes.
    poisoned: Option<Poison>,
}

/// The failure that poisoned the log, returned to every later change.
struct Poison {
    operation: &'static str,
    path: PathBuf,
    source: Arc<std::io::Error>,
}

impl Poison {
    fn error(&self) -> Error {
        Error::MetadataPoisoned {
            path: self.path.clone(),
            operation: self.operation,
            source: Arc::clone(&self.source),
        }
    }
}

/// A failed file operation of a change: which one, on which file, and the kernel's error.
struct Failure {
    operation: &'static str,
    path: PathBuf,
    source: std::io::Error,
}

fn failed<'a>(
    operation: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> Failure + 'a {
    move |source| Failure {
        operation,
        path: path.to_path_buf(),
        source,
    }
}

// The log's file operations, each with a fail point for the fault tests (the `fail` crate's
// `failpoints` feature, turned on only by the engine's dev-dependencies; without it the points
// compile to nothing). A point set to `return` fails the operation with EIO, what a dying
// disk returns.

/// Appends one record. The fault writes half the record first, as a write cut short by a
/// failing disk leaves it.
fn append(file: &mut File, record: &[u8]) -> std::io::Result<()> {
    fail::fail_point!("metadata-write", |_| {
        file.write_all(&record[..record.len() / 2])?;
        Err(std::io::Error::from_raw_os_error(libc::EIO))
    });
    file.write_all(record)
}

/// fdatasync of the log after an append.
fn sync_log(file: &File) -> std::io::Result<()> {
    fail::fail_point!("metadata-sync", |_| Err(std::io::Error::from_raw_os_error(
        libc::EIO
    )));
    file.sync_data()
}

/// Writes and syncs a rewritten log to its temporary file.
fn write_rewrite(tmp: &Path, bytes: &[u8]) -> std::io::Result<()> {
    fail::fail_point!("metadata-rewrite", |_| Err(
        std::io::Error::from_raw_os_error(libc::EIO)
    ));
    let mut file = File::create(tmp)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Renames the rewritten log over the old one.
fn rename_rewrite(tmp: &Path, path: &Path) -> std::io::Result<()> {
    fail::fail_point!("metadata-rename", |_| Err(
        std::io::Error::from_raw_os_error(libc::EIO)
    ));
    std::fs::rename(tmp, path)
}

/// Syncs the directory so the rename is durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fail::fail_point!("metadata-sync-dir", |_| Err(
        std::io::Error::from_raw_os_error(libc::EIO)
    ));
    ipfrs_tiering::segment::file::sync_dir(dir)
}

/// Opens the log for appending, after a rewrite.
fn reopen_log(path: &Path) -> std::io::Result<File> {
    fail::fail_point!("metadata-reopen", |_| Err(
        std::io::Error::from_raw_os_error(libc::EIO)
    ));
    OpenOptions::new().append(true).open(path)
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn encode(key: &[u8], value: Option<&[u8]>, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    let value_len = value.map_or(DELETE, |v| v.len() as u32);
    out.extend_from_slice(&value_len.to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(value.unwrap_or_default());
    let sum = xxhash_rust::xxh3::xxh3_64(&out[start..]);
    out.extend_from_slice(&sum.to_le_bytes());
}

impl Failure {
    /// The error of a failure while opening, where there is nothing to poison: the open fails.
    fn into_io(self) -> Error {
        Error::Io {
            path: self.path,
            source: self.source,
        }
    }
}

/// Live entries under a prefix, in key order.
type Entries = Vec<(Vec<u8>, Bytes)>;

/// One record decoded at `pos`: the key, the value (`None`: delete) and the record's length.
type Decoded<'a> = (&'a [u8], Option<&'a [u8]>, usize);

/// Why a record failed, and whether its damage reaches the end of the file (a torn append).
struct Damage {
    reason: String,
    torn: bool,
}

fn u32_at(b: &[u8], at: usize) -> usize {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w) as usize
}

fn decode(log: &[u8], pos: usize) -> std::result::Result<Decoded<'_>, Damage> {
    let rest = &log[pos..];
    let tail_is_zero = rest.iter().all(|&b| b == 0);
    let damage = |reason: &str, reaches_end: bool| Damage {
        reason: reason.to_string(),
        torn: reaches_end || tail_is_zero,
    };
    if rest.len() < 8 {
        return Err(damage("a record header is cut short", true));
    }
    let key_len = u32_at(rest, 0);
    let raw_value_len = u32_at(rest, 4);
    let value_len = if raw_value_len == DELETE as usize {
        0
    } else {
        raw_value_len
    };
    if key_len == 0 || key_len > MAX_METADATA_KEY_BYTES || value_len > MAX_METADATA_VALUE_BYTES {
        return Err(damage("a record has impossible lengths", false));
    }
    let len = OVERHEAD + key_len + value_len;
    if rest.len() < len {
        return Err(damage("a record is cut short", true));
    }
    let body = &rest[..len - 8];
    let mut sum = [0u8; 8];
    sum.copy_from_slice(&rest[len - 8..len]);
    if xxhash_rust::xxh3::xxh3_64(body) != u64::from_le_bytes(sum) {
        return Err(damage("a record fails its checksum", rest.len() == len));
    }
    let key = &body[8..8 + key_len];
    let value = (raw_value_len != DELETE as usize).then(|| &body[8 + key_len..]);
    Ok((key, value, len))
}

impl MetaLog {
    /// Opens (creating if missing) the log in `dir` and replays it.
    pub(crate) fn open(dir: &Path) -> Result<MetaLog> {
        let tmp = dir.join(TMP_FILE);
        match std::fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_err(&tmp)(e)),
            _ => {}
        }
        let path = dir.join(LOG_FILE);
        let mut log = MetaLog {
            dir: dir.to_path_buf(),
            file: None,
            map: BTreeMap::new(),
            live_bytes: 0,
            log_bytes: 0,
            damaged: None,
            poisoned: None,
        };
        let mut bytes = Vec::new();
        match File::open(&path) {
            Ok(mut f) => {
                f.read_to_end(&mut bytes).map_err(io_err(&path))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                log.rewrite().map_err(Failure::into_io)?;
                return Ok(log);
            }
            Err(e) => return Err(io_err(&path)(e)),
        }
        if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
            if bytes.iter().all(|&b| b == 0) {
                // Created, then cut by a crash before its header was synced: nothing was
                // ever acknowledged from it.
                log.rewrite().map_err(Failure::into_io)?;
                return Ok(log);
            }
            log.damaged = Some((0, "the file does not start with the metadata header".into()));
            return Ok(log);
        }
        let mut pos = MAGIC.len();
        while pos < bytes.len() {
            match decode(&bytes, pos) {
                Ok((key, value, len)) => {
                    log.apply(key, value);
                    pos += len;
                }
                Err(damage) if damage.torn => break,
                Err(damage) => {
                    log.damaged = Some((pos as u64, damage.reason));
                    return Ok(log);
                }
            }
        }
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        if pos < bytes.len() {
            // The torn tail was never acknowledged; appending resumes over it.
            file.set_len(pos as u64).map_err(io_err(&path))?;
            file.sync_data().map_err(io_err(&path))?;
        }
        log.log_bytes = pos as u64;
        log.file = Some(file);
        Ok(log)
    }

    fn apply(&mut self, key: &[u8], value: Option<&[u8]>) {
        let old = match value {
            Some(v) => self
                .map
                .insert(key.to_vec(), Bytes::copy_from_slice(v))
                .map(|old| old.len() + key.len()),
            None => self.map.remove(key).map(|old| old.len() + key.len()),
        };
        self.live_bytes -= old.unwrap_or(0);
        self.live_bytes += value.map_or(0, |v| v.len() + key.len());
    }

    /// Refuses changes once a failed file operation has poisoned the log.
    fn check_poison(&self) -> Result<()> {
        self.poisoned.as_ref().map_or(Ok(()), |p| Err(p.error()))
    }

    /// Poisons the log with `failure` (the first one is kept) and returns the error for it.
    fn poison(&mut self, failure: Failure) -> Error {
        // The descriptor may be an unlinked inode or a file whose pages the kernel dropped:
        // nothing is written through it again.
        self.file = None;
        self.poisoned
            .get_or_insert(Poison {
                operation: failure.operation,
                path: failure.path,
                source: Arc::new(failure.source),
            })
            .error()
    }

    fn check_damage(&self) -> Result<()> {
        match &self.damaged {
            None => Ok(()),
            Some((offset, reason)) => Err(Error::MetadataCorrupt {
                path: self.dir.join(LOG_FILE),
                offset: *offset,
                reason: reason.clone(),
            }),
        }
    }

    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        self.check_damage()?;
        Ok(self.map.get(key).cloned())
    }

    pub(crate) fn list(&self, prefix: &[u8]) -> Result<Entries> {
        self.check_damage()?;
        Ok(self
            .map
            .range(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    pub(crate) fn swap(
        &mut self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<Swap> {
        self.check_damage()?;
        self.check_poison()?;
        let invalid = |reason: String| Err(Error::InvalidMetadata { reason });
        if key.is_empty() || key.len() > MAX_METADATA_KEY_BYTES {
            return invalid(format!("a key must be 1 to {MAX_METADATA_KEY_BYTES} bytes"));
        }
        if new.is_some_and(|v| v.len() > MAX_METADATA_VALUE_BYTES) {
            return invalid(format!(
                "a value must be at most {MAX_METADATA_VALUE_BYTES} bytes"
            ));
        }
        let current = self.map.get(key);
        if current.map(|c| &c[..]) != expected {
            return Ok(Swap::Conflict {
                current: current.cloned(),
            });
        }
        if current.map(|c| &c[..]) == new {
            return Ok(Swap::Done);
        }
        let after = self.live_bytes - current.map_or(0, |c| c.len() + key.len())
            + new.map_or(0, |v| v.len() + key.len());
        if after > MAX_METADATA_BYTES {
            return Err(Error::MetadataFull {
                limit: MAX_METADATA_BYTES,
            });
        }
        let mut record = Vec::with_capacity(OVERHEAD + key.len() + new.map_or(0, <[u8]>::len));
        encode(key, new, &mut record);
        let path = self.dir.join(LOG_FILE);
        let Some(file) = self.file.as_mut() else {
            // Only a damaged or poisoned log has no file, and both were refused above.
            return Err(Error::Internal("the metadata log is not open".into()));
        };
        let appended = append(file, &record)
            .map_err(failed("write", &path))
            .and_then(|()| sync_log(file).map_err(failed("fdatasync", &path)));
        if let Err(failure) = appended {
            // Not acknowledged, so it must not come back at reopen: cut the append off (it may
            // be whole in the page cache) as far as the kernel still lets us. Whether that
            // works or not, the log is poisoned: after a failed fdatasync the kernel may have
            // dropped earlier dirty pages, and retrying would acknowledge what is not on disk.
            if file.set_len(self.log_bytes).is_ok() {
                let _ = file.sync_data();
            }
            return Err(self.poison(failure));
        }
        self.log_bytes += record.len() as u64;
        self.apply(key, new);
        if self.log_bytes > REWRITE_AFTER && self.log_bytes > 4 * (self.live_bytes as u64 + 64) {
            // The change is durable in the old log, and in the new one if the rename happened,
            // so it is acknowledged whatever happens to the rewrite; a failed rewrite poisons
            // the log for the changes after it.
            if let Err(failure) = self.rewrite() {
                self.poison(failure);
            }
        }
        Ok(Swap::Done)
    }

    /// Writes the live records to a new log and renames it over the old one.
    fn rewrite(&mut self) -> std::result::Result<(), Failure> {
        let tmp = self.dir.join(TMP_FILE);
        let path = self.dir.join(LOG_FILE);
        let mut out = MAGIC.to_vec();
        for (k, v) in &self.map {
            encode(k, Some(v), &mut out);
        }
        write_rewrite(&tmp, &out).map_err(failed("write", &tmp))?;
        rename_rewrite(&tmp, &path).map_err(failed("rename", &path))?;
        sync_dir(&self.dir).map_err(failed("directory sync", &self.dir))?;
        self.file = Some(reopen_log(&path).map_err(failed("reopen", &path))?);
        self.log_bytes = out.len() as u64;
        Ok(())
    }

    /// Serves requests until every sender is gone.
    pub(crate) fn serve(mut self, requests: flume::Receiver<Request>) {
        for request in requests.iter() {
            // A caller that dropped its future has dropped its receiver: the reply is lost,
            // but a swap it asked for has still been done (or not) atomically.
            match request {
                Request::Get { key, reply } => drop(reply.send(self.get(&key))),
                Request::List { prefix, reply } => drop(reply.send(self.list(&prefix))),
                Request::Swap {
                    key,
                    expected,
                    new,
                    reply,
                } => drop(reply.send(self.swap(&key, expected.as_deref(), new.as_deref()))),
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn swap(log: &mut MetaLog, key: &str, expected: Option<&str>, new: Option<&str>) -> Swap {
        log.swap(
            key.as_bytes(),
            expected.map(str::as_bytes),
            new.map(str::as_bytes),
        )
        .unwrap()
    }

    #[test]
    fn swaps_survive_reopen_and_conflicts_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = MetaLog::open(dir.path()).unwrap();
        assert_eq!(swap(&mut log, "a", None, Some("1")), Swap::Done);
        assert_eq!(swap(&mut log, "a", Some("1"), Some("2")), Swap::Done);
        assert_eq!(
            swap(&mut log, "a", Some("1"), Some("3")),
            Swap::Conflict {
                current: Some(Bytes::from_static(b"2"))
            }
        );
        assert_eq!(swap(&mut log, "b", None, Some("x")), Swap::Done);
        assert_eq!(swap(&mut log, "b", Some("x"), None), Swap::Done);
        drop(log);
        let log = MetaLog::open(dir.path()).unwrap();
        assert_eq!(log.get(b"a").unwrap().as_deref(), Some(&b"2"[..]));
        assert_eq!(log.get(b"b").unwrap(), None);
    }

    #[test]
    fn torn_tail_is_cut_and_appending_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = MetaLog::open(dir.path()).unwrap();
        swap(&mut log, "keep", None, Some("v"));
        swap(&mut log, "torn", None, Some("w"));
        drop(log);
        let path = dir.path().join(LOG_FILE);
        let len = std::fs::metadata(&path).unwrap().len();
        for cut in 1..(OVERHEAD as u64 + 5) {
            let copy = tempfile::tempdir().unwrap();
            let bytes = std::fs::read(&path).unwrap();
            std::fs::write(copy.path().join(LOG_FILE), &bytes[..(len - cut) as usize]).unwrap();
            let mut log = MetaLog::open(copy.path()).unwrap();
            assert_eq!(log.get(b"keep").unwrap().as_deref(), Some(&b"v"[..]));
            assert_eq!(log.get(b"torn").unwrap(), None, "cut {cut}");
            assert_eq!(swap(&mut log, "after", None, Some("z")), Swap::Done);
            drop(log);
            let log = MetaLog::open(copy.path()).unwrap();
            assert_eq!(log.get(b"after").unwrap().as_deref(), Some(&b"z"[..]));
        }
    }

    #[test]
    fn damage_before_the_last_record_is_reported_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = MetaLog::open(dir.path()).unwrap();
        swap(&mut log, "first", None, Some("1"));
        swap(&mut log, "second", None, Some("2"));
        drop(log);
        let path = dir.path().join(LOG_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        // Inside the first record's value.
        let at = MAGIC.len() + 8 + "first".len();
        bytes[at] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let mut log = MetaLog::open(dir.path()).unwrap();
        let err = log.get(b"second").unwrap_err();
        assert!(
            matches!(err, Error::MetadataCorrupt { offset, .. } if offset == MAGIC.len() as u64),
            "{err}"
        );
        assert!(matches!(
            log.swap(b"x", None, Some(b"y")),
            Err(Error::MetadataCorrupt { .. })
        ));
        // Nothing was written over the evidence.
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
    }

    #[test]
    fn rewrite_keeps_only_live_records() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = MetaLog::open(dir.path()).unwrap();
        let value = "v".repeat(4000);
        let mut previous: Option<String> = None;
        for i in 0..600 {
            let next = format!("{i}{value}");
            swap(&mut log, "hot", previous.as_deref(), Some(&next));
            previous = Some(next);
        }
        swap(&mut log, "other", None, Some("o"));
        let size = std::fs::metadata(dir.path().join(LOG_FILE)).unwrap().len();
        assert!(
            size < REWRITE_AFTER,
            "log of {size} bytes was not rewritten"
        );
        drop(log);
        let log = MetaLog::open(dir.path()).unwrap();
        assert_eq!(
            log.get(b"hot").unwrap().as_deref(),
            previous.as_deref().map(str::as_bytes)
        );
        assert_eq!(log.get(b"other").unwrap().as_deref(), Some(&b"o"[..]));
    }

    #[test]
    fn bad_input_is_refused_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = MetaLog::open(dir.path()).unwrap();
        let big = vec![0u8; MAX_METADATA_VALUE_BYTES + 1];
        assert!(matches!(
            log.swap(b"k", None, Some(&big)),
            Err(Error::InvalidMetadata { .. })
        ));
        assert!(matches!(
            log.swap(b"", None, Some(b"v")),
            Err(Error::InvalidMetadata { .. })
        ));
        let long_key = vec![b'k'; MAX_METADATA_KEY_BYTES + 1];
        assert!(matches!(
            log.swap(&long_key, None, Some(b"v")),
            Err(Error::InvalidMetadata { .. })
        ));
        assert_eq!(log.list(b"").unwrap(), vec![]);
        assert_eq!(
            std::fs::metadata(dir.path().join(LOG_FILE)).unwrap().len(),
            MAGIC.len() as u64
        );
    }

    #[test]
    fn budget_is_enforced() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = MetaLog::open(dir.path()).unwrap();
        let value = vec![7u8; MAX_METADATA_VALUE_BYTES];
        let mut stored = 0;
        let full = loop {
            match log.swap(format!("k{stored}").as_bytes(), None, Some(&value)) {
                Ok(Swap::Done) => stored += 1,
                Ok(other) => panic!("{other:?}"),
                Err(e) => break e,
            }
        };
        assert!(matches!(full, Error::MetadataFull { .. }), "{full}");
        // Full means full: the refused value would have passed the budget, nothing less.
        assert!(log.live_bytes <= MAX_METADATA_BYTES);
        assert!(log.live_bytes + MAX_METADATA_VALUE_BYTES + 4 > MAX_METADATA_BYTES);
        assert_eq!(log.list(b"k").unwrap().len(), stored);
        drop(log);
        assert_eq!(
            MetaLog::open(dir.path()).unwrap().list(b"k").unwrap().len(),
            stored
        );
    }
}
