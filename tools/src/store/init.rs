//! `init`: create the repository and its block store.

use std::path::PathBuf;

use futures_lite::future::block_on;
use ipfrs_storage::{BackendKind, BlockStore, Engine};
use serde::Serialize;

use super::cli::InitArgs;
use super::error::{Error, Result};
use super::output::Report;
use super::repo::Repo;

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

/// Creates `<repo>/blocks` through the engine, with the configuration and the flags.
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
    let created_root = !repo.root().exists();
    std::fs::create_dir_all(repo.root())
        .map_err(|e| Error::io("cannot create repository", repo.root(), e))?;
    let engine = match Engine::open(config) {
        Ok(engine) => engine,
        Err(e) => {
            // Leave no half-made repository behind: the engine changed nothing on failure,
            // so only the directory made here may need to go (and only if still empty).
            if created_root {
                let _ = std::fs::remove_dir(repo.root());
            }
            return Err(e.into());
        }
    };
    if let Some(backend) = write_backend {
        let path = repo.default_config_file();
        let text = format!(
            "# Engine configuration of this repository (keys: see ipfrs-store's README section).\n\
             # The backend is fixed when the store is created.\nbackend = \"{backend}\"\n"
        );
        std::fs::write(&path, text).map_err(|e| Error::io("cannot write", &path, e))?;
    }
    let report = Initialized {
        repo: repo.root().to_path_buf(),
        backend: engine.config().backend.to_string(),
        shards: engine.shard_count(),
    };
    block_on(engine.close())?;
    Ok(report)
}
