//! Where a repository lives and how its engine is opened.
//!
//! Layout: `<repo>/blocks` is the engine's data directory (owned by the engine: nothing else
//! is written there), `<repo>/config.toml` the optional engine configuration, `<repo>/pins`
//! the optional pins file for `repo gc`; `<repo>/ledger` belongs to the versioning layer.

use std::path::{Path, PathBuf};

use ipfrs_storage::{Config, Engine};

use super::error::{Error, Result};

/// The environment variable naming the repository when --repo is absent.
pub const REPO_ENV: &str = "IPFRS_STORE_REPO";

/// A repository directory.
#[derive(Debug, Clone)]
pub struct Repo {
    root: PathBuf,
    config_file: Option<PathBuf>,
}

impl Repo {
    /// The repository from --repo, else $IPFRS_STORE_REPO, else the per-user default
    /// ($XDG_DATA_HOME/ipfrs-store, else ~/.local/share/ipfrs-store). `config` is --config.
    pub fn locate(flag: Option<PathBuf>, config: Option<PathBuf>) -> Result<Repo> {
        let root = match flag {
            Some(dir) => dir,
            None => match std::env::var_os(REPO_ENV).filter(|v| !v.is_empty()) {
                Some(dir) => PathBuf::from(dir),
                None => default_dir().ok_or_else(|| {
                    Error::Usage(format!(
                        "no repository: give --repo DIR or set {REPO_ENV} (neither \
                         XDG_DATA_HOME nor HOME is set)"
                    ))
                })?,
            },
        };
        Ok(Repo {
            root,
            config_file: config,
        })
    }

    /// The repository directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The engine's data directory.
    pub fn blocks_dir(&self) -> PathBuf {
        self.root.join("blocks")
    }

    /// The default pins file.
    pub fn pins_file(&self) -> PathBuf {
        self.root.join("pins")
    }

    /// Whether `init` has run.
    pub fn is_initialized(&self) -> bool {
        self.blocks_dir().is_dir()
    }

    /// The repository's own configuration file, `<repo>/config.toml`.
    pub fn default_config_file(&self) -> PathBuf {
        self.root.join("config.toml")
    }

    /// The configuration file in force: --config, else `<repo>/config.toml` if present.
    pub fn config_file(&self) -> Option<PathBuf> {
        let default = self.default_config_file();
        self.config_file
            .clone()
            .or_else(|| default.is_file().then_some(default))
    }

    /// The engine configuration: from [`Repo::config_file`], else the defaults; the data
    /// directory is always `<repo>/blocks`.
    pub fn config(&self) -> Result<Config> {
        match self.config_file() {
            Some(path) => Ok(Config::from_toml_file(&path, self.blocks_dir())?),
            None => Ok(Config::new(self.blocks_dir())),
        }
    }

    /// Opens the engine of an initialized repository.
    pub fn open(&self) -> Result<Engine> {
        self.open_tuned(|_| {})
    }

    /// [`Repo::open`] with the configuration adjusted by `tune` first (for one command's
    /// needs, e.g. [`crate::import::tune_for_import`]).
    pub fn open_tuned(&self, tune: impl FnOnce(&mut Config)) -> Result<Engine> {
        let mut config = self.config()?;
        tune(&mut config);
        if !self.is_initialized() {
            return Err(Error::NotInitialized {
                repo: self.root.clone(),
            });
        }
        Ok(Engine::open(config)?)
    }
}

fn default_dir() -> Option<PathBuf> {
    let data = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|home| PathBuf::from(home).join(".local/share"))
        })?;
    Some(data.join("ipfrs-store"))
}
