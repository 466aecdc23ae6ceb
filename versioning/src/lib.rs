//! ipfrs-versioning: Git-for-Tensors over any [`ipfrs_storage::BlockStore`].
//!
//! Model states are stored as IPLD objects (DAG-CBOR) in the block store: tensors cut into
//! fixed element-aligned chunks, each a recipe of a losslessly compressed key and a bounded
//! chain of exact deltas (so a version costs what changed and unchanged chunks are shared),
//! states, and commits with provenance. Refs (branches, tags, HEAD) live in a [`RefStore`]
//! with compare-and-swap, so concurrent committers never lose a commit.
//!
//! ```
//! use ipfrs_versioning::{CommitInfo, DType, MemLedger, MemRefStore, Repo, RepoConfig,
//!                        Revision, TensorData, Tensors};
//! # let dir = tempfile::tempdir().unwrap();
//! let engine = ipfrs_storage::Engine::open(dir.path())?;
//! let repo = Repo::new(engine, MemRefStore::new(), MemLedger::new(), RepoConfig::default());
//! let mut model = Tensors::new();
//! let weights: Vec<u8> = [1.0f32, 2.0, 3.0].iter().flat_map(|v| v.to_le_bytes()).collect();
//! model.insert("w".into(), TensorData::new("w", DType::F32, vec![3], weights)?);
//! futures_lite::future::block_on(async {
//!     let c = repo.commit("main", &model, CommitInfo::default()).await?;
//!     let (at, back) = repo.checkout(&Revision::Branch("main".into())).await?;
//!     assert_eq!((at, back), (c.commit, model));
//!     Ok::<(), ipfrs_versioning::Error>(())
//! })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod car;
pub mod chunking;
pub mod cid_text;
pub mod cli;
pub mod codec;
pub mod config_file;
pub mod dag;
pub mod delta;
pub mod dtype;
pub mod error;
pub mod ledger;
pub mod objects;
pub mod ops;
pub mod refs;
pub mod refs_engine;
pub mod refs_file;
pub mod repo;
pub mod revision;
pub mod tensors;

pub use dtype::DType;
pub use error::{Error, Result};
pub use ledger::{FileLedger, Ledger, MemLedger};
pub use objects::{
    CHUNKED_FORMAT, CHUNKED_FORMAT_V3, Chain, ChunkSource, Chunked, Commit, Delta, DeltaChunk,
    INLINE_PATCH_BYTES, InlinePayloads, Key, Object, Patch, PatchLink, Provenance, Recipe, State,
    Tensor, TensorObject,
};
pub use ops::blame::{Blame, BlameEntry};
pub use ops::branches::RefList;
pub use ops::checkout::CheckoutSummary;
pub use ops::checkout_file::CheckoutOptions;
pub use ops::commit::{CommitInfo, CommitSummary};
pub use ops::diff::{Change, Diff, TensorDiff};
pub use ops::gc::GcReport;
pub use ops::log::{Log, LogEntry};
pub use ops::merge::{MergeOutcome, MergeStrategy};
pub use refs::{MemRefStore, RefStore};
pub use refs_engine::MetadataRefStore;
pub use refs_file::FileRefStore;
pub use repo::{DEFAULT_MAX_CHAIN_DEPTH, Repo, RepoConfig};
pub use revision::Revision;
pub use tensors::{
    FileMetadata, TensorData, Tensors, read_safetensors, read_safetensors_with_metadata,
    write_safetensors, write_safetensors_with_metadata,
};
