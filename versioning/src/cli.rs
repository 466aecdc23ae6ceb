//! The CLI-facing layer: blocking calls taking paths and strings, returning printable
//! reports, for `ipfrs-store version ...`. No argument parser here: the binary owns clap.
//!
//! Repository layout: `<repo>/blocks` is the engine's data directory, which also holds the
//! refs (in its metadata store, see [`crate::MetadataRefStore`]), and `<repo>/ledger` the list
//! of blocks this layer stored (see [`crate::ledger`]). A `<repo>/refs` directory of ref files
//! from earlier versions is imported once, then renamed to `refs.imported`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use cid::Cid;
use futures_lite::future::block_on;
use ipfrs_storage::{BlockStore, Engine, MetadataStore};

use crate::car::CarSummary;
use crate::error::{Error, Result};
use crate::ledger::FileLedger;
use crate::objects::Provenance;
use crate::ops::blame::Blame;
use crate::ops::branches::RefList;
use crate::ops::checkout::CheckoutSummary;
use crate::ops::checkout_file::CheckoutOptions;
use crate::ops::commit::{CommitInfo, CommitSummary};
use crate::ops::diff::Diff;
use crate::ops::gc::GcReport;
use crate::ops::log::Log;
use crate::ops::merge::{MergeOutcome, MergeStrategy};
use crate::refs::RefStore;
use crate::refs_engine::MetadataRefStore;
use crate::refs_file::FileRefStore;
use crate::repo::{Repo, RepoConfig};
use crate::tensors::read_safetensors_with_metadata;

/// A repository on disk, driven by blocking calls.
pub struct VersionCli<S> {
    repo: Repo<S, MetadataRefStore<S>, FileLedger>,
}

/// The engine's data directory inside a repository.
pub fn blocks_dir(repo: &Path) -> PathBuf {
    repo.join("blocks")
}

/// Opens the repository at `repo` with an [`Engine`] on `<repo>/blocks`, creating what is
/// missing (so it is also `init`).
pub fn open_engine(repo: &Path) -> Result<VersionCli<Engine>> {
    let engine = Engine::open(blocks_dir(repo))?;
    let config = crate::config_file::load_config(repo)?;
    VersionCli::open(repo, engine, config)
}

/// Creates (or reopens) the repository at `repo`: the engine's directory (which keeps the
/// refs) and the ledger. Idempotent; no branch exists until the first commit.
pub fn init(repo: &Path) -> Result<VersionCli<Engine>> {
    std::fs::create_dir_all(repo).map_err(Error::io(repo))?;
    open_engine(repo)
}

/// Parses provenance arguments: `dataset=<cid>`, `gradient=<cid>`, `hparam.<key>=<value>`,
/// `meta.<key>=<value>`.
pub fn parse_provenance(args: &[String]) -> Result<Provenance> {
    let mut p = Provenance::default();
    for arg in args {
        let bad = |reason: &str| Error::BadArgument {
            arg: arg.clone(),
            reason: reason.to_string(),
        };
        let (key, value) = arg
            .split_once('=')
            .ok_or_else(|| bad("expected key=value"))?;
        let cid = || ipfrs_storage::key::parse_cid(value).map_err(|e| bad(&e.to_string()));
        if key == "dataset" {
            p.datasets.push(cid()?);
        } else if key == "gradient" {
            p.gradients.push(cid()?);
        } else if let Some(k) = key.strip_prefix("hparam.").filter(|k| !k.is_empty()) {
            p.hyperparameters.insert(k.to_string(), value.to_string());
        } else if let Some(k) = key.strip_prefix("meta.").filter(|k| !k.is_empty()) {
            p.metadata.insert(k.to_string(), value.to_string());
        } else {
            return Err(bad("key must be dataset, gradient, hparam.<k> or meta.<k>"));
        }
    }
    Ok(p)
}

fn cids(args: &[String]) -> Result<Vec<Cid>> {
    args.iter()
        .map(|a| ipfrs_storage::key::parse_cid(a).map_err(Error::from))
        .collect()
}

/// Moves the ref files of an earlier layout (`<repo>/refs`) into `refs` (a ref already there
/// wins), then renames their directory to `refs.imported` so that a branch deleted later is
/// not imported again. Without such a directory it does nothing.
///
/// # Errors
/// Reading the files, or storing a ref.
pub fn import_ref_files(repo: &Path, refs: &impl RefStore) -> Result<()> {
    let dir = repo.join("refs");
    if !dir.is_dir() {
        return Ok(());
    }
    for (name, cid) in FileRefStore::open(&dir)?.list("")? {
        match refs.compare_and_swap(&name, None, Some(cid)) {
            Ok(()) | Err(Error::Conflict { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let done = repo.join("refs.imported");
    std::fs::rename(&dir, &done).map_err(Error::io(&done))
}

/// The tensors of `file` and the descriptive part of a commit of them.
fn commit_input(
    file: &Path,
    author: &str,
    message: &str,
    provenance: &[String],
) -> Result<(crate::tensors::Tensors, CommitInfo)> {
    let provenance = parse_provenance(provenance)?;
    let (tensors, file_metadata) = read_safetensors_with_metadata(file)?;
    let info = CommitInfo {
        author: author.to_string(),
        message: message.to_string(),
        provenance,
        timestamp_ms: None,
        file_metadata,
    };
    Ok((tensors, info))
}

impl<S: BlockStore + MetadataStore + Clone> VersionCli<S> {
    /// Opens the refs (in `store`'s metadata) and the ledger of `repo` (creating it) over
    /// `store`.
    pub fn open(repo: &Path, store: S, config: RepoConfig) -> Result<VersionCli<S>> {
        let refs = MetadataRefStore::new(store.clone());
        import_ref_files(repo, &refs)?;
        let ledger = FileLedger::open(repo.join("ledger"))?;
        Ok(VersionCli {
            repo: Repo::new(store, refs, ledger, config),
        })
    }

    /// The library-level repository, for anything not wrapped here.
    pub fn repo(&self) -> &Repo<S, MetadataRefStore<S>, FileLedger> {
        &self.repo
    }

    /// The configuration, to change for this process (e.g. a commit's own depth bound);
    /// [`crate::config_file::save_config`] keeps a change for later ones.
    pub fn config_mut(&mut self) -> &mut RepoConfig {
        self.repo.config_mut()
    }

    /// Commits a safetensors file on `branch`; a new branch starts at HEAD's commit (see
    /// [`Repo::commit`]).
    pub fn commit(
        &self,
        file: &Path,
        branch: &str,
        author: &str,
        message: &str,
        provenance: &[String],
    ) -> Result<CommitSummary> {
        let (tensors, info) = commit_input(file, author, message, provenance)?;
        block_on(self.repo.commit(branch, &tensors, info))
    }

    /// Commits a safetensors file as the first commit of the new branch `branch`, with no
    /// parent (see [`Repo::commit_orphan`]).
    pub fn commit_orphan(
        &self,
        file: &Path,
        branch: &str,
        author: &str,
        message: &str,
        provenance: &[String],
    ) -> Result<CommitSummary> {
        let (tensors, info) = commit_input(file, author, message, provenance)?;
        block_on(self.repo.commit_orphan(branch, &tensors, info))
    }

    /// History of `rev` (`HEAD`, branch, tag, CID, `<rev>@<ms>`).
    pub fn log(&self, rev: &str, limit: Option<usize>) -> Result<Log> {
        block_on(self.repo.log(&rev.parse()?, limit))
    }

    /// Writes `rev` to a safetensors file (replaced atomically, not fsynced).
    pub fn checkout(&self, rev: &str, out: &Path) -> Result<CheckoutSummary> {
        self.checkout_with(rev, out, CheckoutOptions::default())
    }

    /// [`VersionCli::checkout`] with options (`fsync`).
    pub fn checkout_with(
        &self,
        rev: &str,
        out: &Path,
        options: CheckoutOptions,
    ) -> Result<CheckoutSummary> {
        block_on(self.repo.checkout_to_file_with(&rev.parse()?, out, options))
    }

    /// [`VersionCli::checkout_with`], also hashing every rebuilt chunk against its chunk
    /// CID ([`Repo::checkout_to_file_verified`]).
    pub fn checkout_verified(
        &self,
        rev: &str,
        out: &Path,
        options: CheckoutOptions,
    ) -> Result<CheckoutSummary> {
        block_on(
            self.repo
                .checkout_to_file_verified(&rev.parse()?, out, options),
        )
    }

    /// Creates a branch at `at`.
    pub fn branch_create(&self, name: &str, at: &str) -> Result<Cid> {
        block_on(self.repo.create_branch(name, &at.parse()?))
    }

    /// Lists branches.
    pub fn branch_list(&self) -> Result<RefList> {
        self.repo.branches()
    }

    /// Deletes a branch.
    pub fn branch_delete(&self, name: &str) -> Result<Cid> {
        self.repo.delete_branch(name)
    }

    /// Creates a tag at `at`.
    pub fn tag_create(&self, name: &str, at: &str) -> Result<Cid> {
        block_on(self.repo.create_tag(name, &at.parse()?))
    }

    /// Lists tags.
    pub fn tag_list(&self) -> Result<RefList> {
        self.repo.tags()
    }

    /// Deletes a tag.
    pub fn tag_delete(&self, name: &str) -> Result<Cid> {
        self.repo.delete_tag(name)
    }

    /// Differences from `from` to `to`.
    pub fn diff(&self, from: &str, to: &str) -> Result<Diff> {
        block_on(self.repo.diff(&from.parse()?, &to.parse()?))
    }

    /// Merges `theirs` into `branch`: fast-forward only without `weight`, else a weighted
    /// average with their weight.
    pub fn merge(
        &self,
        branch: &str,
        theirs: &str,
        weight: Option<f64>,
        author: &str,
        message: &str,
    ) -> Result<MergeOutcome> {
        let strategy = match weight {
            None => MergeStrategy::FastForwardOnly,
            Some(w) => MergeStrategy::WeightedAverage { theirs: w },
        };
        let info = CommitInfo {
            author: author.to_string(),
            message: message.to_string(),
            ..CommitInfo::default()
        };
        block_on(self.repo.merge(branch, &theirs.parse()?, strategy, info))
    }

    /// Who last changed each tensor of `rev`.
    pub fn blame(&self, rev: &str) -> Result<Blame> {
        block_on(self.repo.blame(&rev.parse()?))
    }

    /// Collects garbage, keeping also what `extra_roots` (CIDs) reach.
    pub fn gc(&self, extra_roots: &[String], dry_run: bool) -> Result<GcReport> {
        self.gc_keeping(extra_roots, &HashSet::new(), dry_run)
    }

    /// [`VersionCli::gc`], also keeping the blocks whose storage keys (multihashes) are in
    /// `held` (the store's pins: see [`Repo::gc_keeping`]).
    pub fn gc_keeping(
        &self,
        extra_roots: &[String],
        held: &HashSet<Vec<u8>>,
        dry_run: bool,
    ) -> Result<GcReport> {
        block_on(self.repo.gc_keeping(&cids(extra_roots)?, held, dry_run))
    }

    /// Exports `rev`'s DAG as a CARv1 file.
    pub fn export(&self, rev: &str, out: &Path) -> Result<CarSummary> {
        block_on(self.repo.export_car(&rev.parse()?, out))
    }

    /// Imports a CARv1 file, optionally setting `branch` to its root.
    pub fn import(&self, file: &Path, branch: Option<&str>) -> Result<CarSummary> {
        block_on(self.repo.import_car(file, branch))
    }
}
