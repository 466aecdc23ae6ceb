//! Opening the engine of an ipfrs-store repository (`<repo>/blocks`, optional
//! `<repo>/config.toml`) and importing CAR files into it.

use std::path::{Path, PathBuf};

use ipfrs_storage::{Cid, Engine};
use ipfrs_tools::import::{self, ImportOptions};
use ipfrs_tools::store::repo::Repo;

use crate::{Error, Result};

/// An open repository: its engine and where its import journals go.
pub struct OpenRepo {
    /// The engine of `<repo>/blocks`.
    pub engine: Engine,
    journals: PathBuf,
}

/// What one CAR import stored.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The roots in the file's header.
    pub roots: Vec<Cid>,
    /// Blocks in the file (including ones already stored).
    pub blocks: u64,
    /// Their bytes.
    pub bytes: u64,
}

impl OpenRepo {
    /// Opens (creating if needed) the repository at `dir` with its configuration, and rolls
    /// back any import a killed process left half done, as `ipfrs-store` does on every open.
    /// Blocking: call it off the async executor.
    pub fn open(dir: &Path) -> Result<OpenRepo> {
        let repo = Repo::locate(Some(dir.to_path_buf()), None)?;
        let engine = Engine::open(repo.config()?)?;
        let journals = repo.root().join("blocks.imports");
        import::recover(&engine, &journals)?;
        Ok(OpenRepo { engine, journals })
    }

    /// Imports one CAR file, all or nothing (every block verified against its CID).
    /// Blocking: call it off the async executor.
    pub fn import_car(&self, path: &Path) -> Result<Imported> {
        let file = std::fs::File::open(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let options = ImportOptions::for_store(self.engine.config());
        let added = import::import_car(&self.engine, file, &self.journals, options, &|_| {})?;
        Ok(Imported {
            roots: added.header.roots,
            blocks: added.blocks,
            bytes: added.bytes,
        })
    }
}
