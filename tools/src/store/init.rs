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
    if let Some(name) = &args.backend {
        config.backend = name.parse::<BackendKind>().map_err(Error::Usage)?;
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
    let report = Initialized {
        repo: repo.root().to_path_buf(),
        backend: engine.config().backend.to_string(),
        shards: engine.shard_count(),
    };
    block_on(engine.close())?;
    Ok(report)
}
