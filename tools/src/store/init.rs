//! `init`: create the repository and its block store.
//!
//! A store's first open takes disk at once: each shard preallocates its first hot segment
//! and its space reserve, and creates the cold backend's files. So `init` first checks that
//! the filesystem has that room (a typed error naming what it needs and what is free, and
//! nothing created), and if anything fails after it started creating, it removes everything
//! it created: a failed `init` never leaves a half-made repository.

use std::path::{Path, PathBuf};

use futures_lite::future::block_on;
use ipfrs_storage::{BackendKind, BlockStore, Config, Engine};
use serde::Serialize;

use super::cli::InitArgs;
use super::error::{Error, Result};
use super::output::Report;
use super::repo::Repo;

/// Disk the cold backend's first files take per shard, at most: sled writes a first log
/// segment (512 KiB by default) with its configuration and snapshot files; parity-db's
/// metadata and empty tables are smaller.
const BACKEND_INITIAL_BYTES_PER_SHARD: u64 = 1 << 20;

/// Disk the store's own small files take (store metadata, the metadata log, the
/// repository's config.toml, directory blocks), rounded up generously: a few KiB each.
const STORE_FILES_BYTES: u64 = 1 << 20;

/// What `init` created.
#[derive(Debug, Serialize)]
pub struct Initialized {
    /// The repository.
    pub repo: PathBuf,
    /// The cold backend recorded in the store.
    pub backend: String,
    /// The shard count recorded in the store.
    pub shards: usize,
}

impl Report for Initialized {
    fn human(&self) -> String {
        format!(
            "initialized {} ({} backend, {} shards)\n",
            self.repo.display(),
            self.backend,
            self.shards
        )
    }
}

/// The disk a new store takes at its first open, by part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitialSpace {
    /// Hot segments the first open preallocates (one per shard; 0 without a hot tier).
    pub hot_segments: u64,
    /// Size of one hot segment.
    pub segment_bytes: u64,
    /// The space reserve, across all shards.
    pub reserve_bytes: u64,
    /// The cold backend's first files and the store's own small files.
    pub files_bytes: u64,
}

impl InitialSpace {
    /// The disk a store opened with `config` (shard count resolved as the engine resolves it
    /// for a new store) takes at once.
    pub fn of(config: &Config) -> InitialSpace {
        // The engine's rule for a new store without a shard count: one per core.
        let shards = config
            .shards
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1);
        let (hot_segments, segment_bytes) = match &config.hot_tier {
            Some(hot) => (shards as u64, hot.segment_bytes),
            None => (0, 0),
        };
        InitialSpace {
            hot_segments,
            segment_bytes,
            reserve_bytes: config.space_reserve_per_shard(shards) * shards as u64,
            files_bytes: BACKEND_INITIAL_BYTES_PER_SHARD * shards as u64 + STORE_FILES_BYTES,
        }
    }

    /// The total.
    pub fn total(&self) -> u64 {
        self.hot_segments * self.segment_bytes + self.reserve_bytes + self.files_bytes
    }
}

/// Creates `<repo>/blocks` through the engine, with the configuration and the flags. Checks
/// the free space first; on any failure removes what it created.
pub fn run(repo: &Repo, args: &InitArgs) -> Result<Initialized> {
    if repo.is_initialized() {
        return Err(Error::AlreadyInitialized {
            repo: repo.root().to_path_buf(),
        });
    }
    let mut config = repo.config()?;
    // The engine must be opened with the backend the store was created with, so a --backend
    // flag has to outlive this command: it goes into <repo>/config.toml when no file is in
    // force, and must agree with the file when one is.
    let mut write_backend = None;
    if let Some(name) = &args.backend {
        let backend = name.parse::<BackendKind>().map_err(Error::Usage)?;
        match repo.config_file() {
            Some(file) if backend != config.backend => {
                return Err(Error::Usage(format!(
                    "--backend {backend} contradicts {} (backend = {}): edit the file instead",
                    file.display(),
                    config.backend
                )));
            }
            Some(_) => {}
            None => write_backend = Some(backend),
        }
        config.backend = backend;
    }
    if let Some(shards) = args.shards {
        config.shards = Some(shards);
    }
    check_space(repo.root(), &config)?;
    let created = Created::start(repo)?;
    match create(repo, config, write_backend) {
        Ok(report) => Ok(report),
        Err(e) => {
            created.remove();
            Err(e)
        }
    }
}

/// Opens (so creates) the store, writes the config file if asked, closes.
fn create(repo: &Repo, config: Config, write_backend: Option<BackendKind>) -> Result<Initialized> {
    let engine = Engine::open(config)?;
    let written = write_backend.map_or(Ok(()), |backend| {
        let path = repo.default_config_file();
        let text = format!(
            "# Engine configuration of this repository (keys: see ipfrs-store's README section).\n\
             # The backend is fixed when the store is created.\nbackend = \"{backend}\"\n"
        );
        std::fs::write(&path, text).map_err(|e| Error::io("cannot write", &path, e))
    });
    let report = Initialized {
        repo: repo.root().to_path_buf(),
        backend: engine.config().backend.to_string(),
        shards: engine.shard_count(),
    };
    // Close even after a failed write, so nothing of the store is open when it is removed.
    let closed = block_on(engine.close());
    written?;
    closed?;
    Ok(report)
}

/// Fails with [`Error::NoSpaceForInit`] unless the filesystem that will hold `root` has the
/// room a store opened with `config` takes at once.
fn check_space(root: &Path, config: &Config) -> Result<()> {
    let need = InitialSpace::of(config);
    // The repository may not exist yet: its filesystem is its nearest existing ancestor's.
    let existing = root
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or_else(|| Path::new("."));
    let free = free_bytes(existing)
        .map_err(|e| Error::io("cannot read the free space of", existing, e))?;
    if free < need.total() {
        return Err(Error::NoSpaceForInit {
            repo: root.to_path_buf(),
            need: need.total(),
            hot_segments: need.hot_segments,
            segment_bytes: need.segment_bytes,
            reserve_bytes: need.reserve_bytes,
            files_bytes: need.files_bytes,
            free,
        });
    }
    Ok(())
}

/// Bytes free for unprivileged writers on the filesystem holding `path`: the engine counts
/// only these (never the blocks ext4 keeps back for root), so `init` does too.
fn free_bytes(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path =
        std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    // SAFETY: a zeroed statvfs is a valid output buffer; statvfs reads the NUL-terminated
    // path and writes only the struct it is given.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
}

/// What `init` is about to create, to remove on failure.
struct Created {
    /// The outermost directory `init` created (the repository or an ancestor), if any:
    /// everything under it is `init`'s.
    new_dir: Option<PathBuf>,
    /// Inside a repository directory that existed before: its block store and, unless a
    /// file was already there, its config file.
    blocks_dir: PathBuf,
    config_file: Option<PathBuf>,
}

impl Created {
    /// Creates the repository directory (and missing ancestors), noting what was new.
    fn start(repo: &Repo) -> Result<Created> {
        let root = repo.root();
        let new_dir = root
            .ancestors()
            .take_while(|p| !p.as_os_str().is_empty() && !p.exists())
            .last()
            .map(Path::to_path_buf);
        let config_file = repo.default_config_file();
        let created = Created {
            new_dir,
            blocks_dir: repo.blocks_dir(),
            config_file: (!config_file.exists()).then_some(config_file),
        };
        if let Err(e) = std::fs::create_dir_all(root) {
            created.remove();
            return Err(Error::io("cannot create repository", root, e));
        }
        Ok(created)
    }

    /// Removes what `init` created (best effort: the error being reported is the one that
    /// made `init` fail).
    fn remove(self) {
        match self.new_dir {
            Some(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            None => {
                let _ = std::fs::remove_dir_all(&self.blocks_dir);
                if let Some(file) = self.config_file {
                    let _ = std::fs::remove_file(file);
                }
            }
        }
    }
}
