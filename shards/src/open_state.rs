//! A shard's open state: its bloom filter and counters, saved at a clean close so that the
//! next open need not walk every cold key to rebuild them (a walk costs seconds per GiB of cold
//! data over sled, minutes for a large node).
//!
//! ```text
//! shard-NNN/open-state   written after a clean close, once the backend is closed
//!
//! magic "IPFopen1" | backend u8 | fingerprint u64 | blocks u64 | bytes u64
//!   | num_hashes u32 | words u64 | packs u64 | bloom words (u64 each)
//!   | per pack: id u32, live u64, held u64 | xxh3-64 of everything before
//! ```
//! A filter that could miss a key must never be used, so the state is used only when nothing
//! can have changed the cold backend since it was written:
//! - it is single use: open removes it (and syncs the directory) before anything runs, so a
//!   crash, a failed close or any later session without a clean close leaves no state behind
//!   and the next open walks the keys;
//! - it names the backend's files as they were after the close (path, size, inode, mtime and
//!   ctime of each, hashed into the fingerprint), and open compares that before it opens the
//!   backend: a repair that swapped the backend directory, an older version of this code or any
//!   tool that wrote into the backend changes at least one of them;
//! - the bloom filter must have the size the configuration asks for, so a changed budget is
//!   rebuilt to that budget.
//!
//! Whatever fails here (a torn or damaged file, a mismatch) only means the keys are walked.
//!
//! **Checkpoints.** A crash leaves no state, and walking the keys costs about 0.3 s per GiB
//! of 4 KiB blocks in packs. So a running shard with a hot tier also writes its state to the
//! same file (magic `IPFckpt1`, fingerprint unused) whenever compaction has been idle for a
//! while (see `crate::checkpoint`). Its backend files change while it runs, so a checkpoint
//! cannot be checked by fingerprint; it is kept valid instead: the shard removes the file
//! (durably) before anything that would make it wrong, i.e. before any write to the cold
//! backend, and before it appends a record that makes a block hot and cold at once or
//! tombstones a block the backend may hold. What a checkpoint describes is therefore the
//! cold backend as it still is, and its counters count only the cold blocks that were not
//! hot: the hot tier's recovery adds the hot ones, whatever the log gained or lost since.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use ipfrs_core_types::BackendKind;
use xxhash_rust::xxh3::{Xxh3, xxh3_64};

const MAGIC: &[u8; 8] = b"IPFopen1";
/// A checkpoint written while the shard ran (see the module documentation).
const CHECKPOINT_MAGIC: &[u8; 8] = b"IPFckpt1";
/// magic, backend, fingerprint, blocks, bytes, num_hashes, words, packs.
const HEADER_LEN: usize = 8 + 1 + 8 + 8 + 8 + 4 + 8 + 8;
/// One pack's figures: id, live bytes, held bytes.
const PACK_LEN: usize = 4 + 8 + 8;

/// What a clean close leaves for the next open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenState {
    /// Written while the shard ran (a checkpoint) rather than at a clean close: `blocks` and
    /// `bytes` then count only the cold blocks that were not hot, and the hot tier's
    /// recovery adds the hot ones.
    pub checkpoint: bool,
    /// Blocks the shard stored (hot and cold, each once; see `checkpoint`).
    pub blocks: u64,
    /// Bytes of block data the shard stored (see `checkpoint`).
    pub bytes: u64,
    /// The bloom filter's hash count.
    pub num_hashes: u32,
    /// The bloom filter's bits.
    pub words: Vec<u64>,
    /// Per pack: its number, and the block bytes its index entries hold (live) and held when
    /// it was made (see the hot tier's packs): what reclamation decides by.
    pub packs: Vec<(u32, u64, u64)>,
}

/// The open-state file of the shard whose backend lives in `backend_dir`
/// (`shard-NNN/<backend>`): `shard-NNN/open-state`.
pub fn path(backend_dir: &Path) -> PathBuf {
    backend_dir
        .parent()
        .unwrap_or(backend_dir)
        .join("open-state")
}

/// A fingerprint of every file under `backend_dir`: relative path, size, inode, mtime and
/// ctime (nanoseconds). ctime cannot be set back by a user, so a write by anything shows.
pub fn fingerprint(backend_dir: &Path) -> std::io::Result<u64> {
    let mut entries = Vec::new();
    collect(backend_dir, backend_dir, &mut entries)?;
    entries.sort_unstable();
    let mut hasher = Xxh3::new();
    let top = std::fs::metadata(backend_dir)?;
    hasher.update(&top.ino().to_le_bytes());
    for (name, facts) in &entries {
        hasher.update(name.as_bytes());
        hasher.update(&[0]);
        for fact in facts {
            hasher.update(&fact.to_le_bytes());
        }
    }
    Ok(hasher.digest())
}

type FileFacts = (String, [i64; 6]);

fn collect(root: &Path, dir: &Path, out: &mut Vec<FileFacts>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        let path = entry.path();
        if meta.is_dir() {
            collect(root, &path, out)?;
            continue;
        }
        let name = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .to_string_lossy()
            .into_owned();
        // Sizes and inodes fit i64 on Linux; the casts only reinterpret them for hashing.
        let facts = [
            meta.size() as i64,
            meta.ino() as i64,
            meta.mtime(),
            meta.mtime_nsec(),
            meta.ctime(),
            meta.ctime_nsec(),
        ];
        out.push((name, facts));
    }
    Ok(())
}

/// Writes `state` for the backend in `backend_dir`, which must be closed: to a temporary
/// file, synced, renamed into place, directory synced.
pub fn save(backend_dir: &Path, backend: BackendKind, state: &OpenState) -> std::io::Result<()> {
    let fingerprint = fingerprint(backend_dir)?;
    write(backend_dir, MAGIC, backend, fingerprint, state)
}

/// Writes `state` as a checkpoint of the running shard whose backend lives in `backend_dir`
/// (see the module documentation), as durably as [`save`]. The caller must [`discard`] it
/// before anything changes what it describes.
pub fn save_checkpoint(
    backend_dir: &Path,
    backend: BackendKind,
    state: &OpenState,
) -> std::io::Result<()> {
    write(backend_dir, CHECKPOINT_MAGIC, backend, 0, state)
}

/// Removes the state or checkpoint of the backend in `backend_dir`, if any, and syncs the
/// directory: once this returns, no later open can use it.
pub fn discard(backend_dir: &Path) -> std::io::Result<()> {
    let path = path(backend_dir);
    match std::fs::remove_file(&path) {
        Ok(()) => ipfrs_tiering::segment::file::sync_dir(path.parent().unwrap_or(backend_dir)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn write(
    backend_dir: &Path,
    magic: &[u8; 8],
    backend: BackendKind,
    fingerprint: u64,
    state: &OpenState,
) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(HEADER_LEN + state.words.len() * 8 + 8);
    out.extend_from_slice(magic);
    out.push(backend_code(backend));
    out.extend_from_slice(&fingerprint.to_le_bytes());
    out.extend_from_slice(&state.blocks.to_le_bytes());
    out.extend_from_slice(&state.bytes.to_le_bytes());
    out.extend_from_slice(&state.num_hashes.to_le_bytes());
    out.extend_from_slice(&(state.words.len() as u64).to_le_bytes());
    out.extend_from_slice(&(state.packs.len() as u64).to_le_bytes());
    for word in &state.words {
        out.extend_from_slice(&word.to_le_bytes());
    }
    for (id, live, held) in &state.packs {
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&live.to_le_bytes());
        out.extend_from_slice(&held.to_le_bytes());
    }
    let checksum = xxh3_64(&out);
    out.extend_from_slice(&checksum.to_le_bytes());

    let path = path(backend_dir);
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&out)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, &path)?;
    ipfrs_tiering::segment::file::sync_dir(path.parent().unwrap_or(backend_dir))
}

/// Takes the state a clean close (or a checkpoint) left for the backend in `backend_dir`,
/// which must not be opened yet: reads it, removes the file durably (single use), and returns
/// it only if it is intact, was written for this backend kind and, for a clean close's
/// state, the backend's files are as the close left them. `None` means: walk the keys.
pub fn take(backend_dir: &Path, backend: BackendKind) -> Option<OpenState> {
    let path = path(backend_dir);
    let bytes = std::fs::read(&path).ok()?;
    // Removed before anything else happens: if it cannot be removed, it cannot be trusted
    // to be gone before the backend changes, so it is not used.
    std::fs::remove_file(&path).ok()?;
    ipfrs_tiering::segment::file::sync_dir(path.parent()?).ok()?;
    let (written, state) = decode(&bytes, backend)?;
    (state.checkpoint || written == fingerprint(backend_dir).ok()?).then_some(state)
}

/// The fingerprint and state in `bytes`, if they are a whole, intact file for `backend`.
fn decode(bytes: &[u8], backend: BackendKind) -> Option<(u64, OpenState)> {
    let (body, checksum) = bytes.split_last_chunk::<8>()?;
    if xxh3_64(body) != u64::from_le_bytes(*checksum) {
        return None;
    }
    let (header, rest) = body.split_at_checked(HEADER_LEN)?;
    let checkpoint = match &header[..8] {
        m if m == MAGIC => false,
        m if m == CHECKPOINT_MAGIC => true,
        _ => return None,
    };
    if header[8] != backend_code(backend) {
        return None;
    }
    let u64_at = |at: usize| header[at..at + 8].try_into().ok().map(u64::from_le_bytes);
    let fingerprint = u64_at(9)?;
    let blocks = u64_at(17)?;
    let bytes_stored = u64_at(25)?;
    let num_hashes = u32::from_le_bytes(header[33..37].try_into().ok()?);
    let count = usize::try_from(u64_at(37)?).ok()?;
    let pack_count = usize::try_from(u64_at(45)?).ok()?;
    let words_len = count.checked_mul(8)?;
    if rest.len() != words_len.checked_add(pack_count.checked_mul(PACK_LEN)?)?
        || count == 0
        || num_hashes == 0
    {
        return None;
    }
    let (words, packs) = rest.split_at(words_len);
    let words = words
        .chunks_exact(8)
        .map(|w| w.try_into().map(u64::from_le_bytes))
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    let packs = packs
        .chunks_exact(PACK_LEN)
        .map(|p| {
            Some((
                u32::from_le_bytes(p[0..4].try_into().ok()?),
                u64::from_le_bytes(p[4..12].try_into().ok()?),
                u64::from_le_bytes(p[12..20].try_into().ok()?),
            ))
        })
        .collect::<Option<Vec<_>>>()?;
    Some((
        fingerprint,
        OpenState {
            checkpoint,
            blocks,
            bytes: bytes_stored,
            num_hashes,
            words,
            packs,
        },
    ))
}

/// A stable code per backend kind (names could be reworded; the file must not change).
fn backend_code(backend: BackendKind) -> u8 {
    match backend {
        BackendKind::Sled => 1,
        BackendKind::ParityDb => 2,
        BackendKind::RocksDb => 3,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn state() -> OpenState {
        OpenState {
            checkpoint: false,
            blocks: 7,
            bytes: 4096,
            num_hashes: 5,
            words: vec![1, u64::MAX, 0, 42],
            packs: vec![(3, 100, 400), (9, 0, 7)],
        }
    }

    fn backend_dir() -> (tempfile::TempDir, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("shard-000").join("sled");
        std::fs::create_dir_all(dir.join("blobs")).unwrap();
        std::fs::write(dir.join("db"), b"backend bytes").unwrap();
        std::fs::write(dir.join("blobs/1"), b"a blob").unwrap();
        (root, dir)
    }

    #[test]
    fn a_saved_state_is_taken_once() {
        let (_root, dir) = backend_dir();
        save(&dir, BackendKind::Sled, &state()).unwrap();
        assert_eq!(take(&dir, BackendKind::Sled), Some(state()));
        assert!(!path(&dir).exists(), "single use");
        assert_eq!(take(&dir, BackendKind::Sled), None);
    }

    #[test]
    fn a_checkpoint_is_taken_once_whatever_the_files_and_discard_removes_it() {
        let (_root, dir) = backend_dir();
        let checkpoint = OpenState {
            checkpoint: true,
            ..state()
        };
        save_checkpoint(&dir, BackendKind::Sled, &checkpoint).unwrap();
        // The backend's files change while the engine runs: a checkpoint is kept valid by
        // being discarded before a change, not by its fingerprint.
        std::fs::write(dir.join("db"), b"backend bytez").unwrap();
        assert_eq!(take(&dir, BackendKind::Sled), Some(checkpoint.clone()));
        assert!(!path(&dir).exists(), "single use");
        save_checkpoint(&dir, BackendKind::Sled, &checkpoint).unwrap();
        assert_eq!(take(&dir, BackendKind::ParityDb), None, "another backend");
        save_checkpoint(&dir, BackendKind::Sled, &checkpoint).unwrap();
        discard(&dir).unwrap();
        assert!(!path(&dir).exists());
        discard(&dir).unwrap();
        assert_eq!(take(&dir, BackendKind::Sled), None);
    }

    #[test]
    fn any_change_to_the_backend_files_voids_it() {
        let changes: [fn(&Path); 4] = [
            |dir| std::fs::write(dir.join("db"), b"backend bytez").unwrap(),
            |dir| std::fs::write(dir.join("blobs/2"), b"new").unwrap(),
            |dir| std::fs::remove_file(dir.join("blobs/1")).unwrap(),
            |dir| {
                // Same bytes, rewritten: ctime moves even if a tool restores mtime.
                std::thread::sleep(std::time::Duration::from_millis(5));
                std::fs::write(dir.join("db"), b"backend bytes").unwrap();
            },
        ];
        for (i, change) in changes.into_iter().enumerate() {
            let (_root, dir) = backend_dir();
            save(&dir, BackendKind::Sled, &state()).unwrap();
            change(&dir);
            assert_eq!(take(&dir, BackendKind::Sled), None, "change {i}");
            assert!(!path(&dir).exists(), "change {i}: removed anyway");
        }
    }

    #[test]
    fn a_damaged_file_or_another_backend_is_refused() {
        let (_root, dir) = backend_dir();
        save(&dir, BackendKind::Sled, &state()).unwrap();
        let good = std::fs::read(path(&dir)).unwrap();
        assert_eq!(take(&dir, BackendKind::ParityDb), None);
        for at in [0, 9, 20, good.len() / 2, good.len() - 1] {
            let mut bad = good.clone();
            bad[at] ^= 0x20;
            std::fs::write(path(&dir), &bad).unwrap();
            assert_eq!(take(&dir, BackendKind::Sled), None, "flip at {at}");
        }
        std::fs::write(path(&dir), &good[..good.len() - 3]).unwrap();
        assert_eq!(take(&dir, BackendKind::Sled), None, "torn");
    }
}
