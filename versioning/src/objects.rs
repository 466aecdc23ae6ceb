//! The versioning objects, stored as DAG-CBOR blocks (codec 0x71, sha2-256).
//!
//! Every object is encoded as a one-key map naming its kind (`{"tensor": {...}}`,
//! `{"delta": {...}}`, `{"state": {...}}`, `{"commit": {...}}`), so any block can be decoded
//! without knowing beforehand what it is, and a future format can add kinds. Tensor data
//! chunks are plain raw blocks (codec 0x55) and are not objects.
//!
//! Links between objects are real IPLD links (CBOR tag 42), so the objects travel in CAR
//! files and other IPLD tools can walk them.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;

use cid::Cid;
use ipfrs_storage::{Block, Codec, HashAlgorithm};
use serde::{Deserialize, Serialize};

use crate::delta::Transform;
use crate::dtype::DType;
use crate::error::{Error, Result};

/// A tensor stored in full: its data cut into `chunk_bytes`-sized raw blocks (the last one
/// may be shorter).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tensor {
    /// Element type.
    pub dtype: DType,
    /// Shape, outermost dimension first.
    pub shape: Vec<u64>,
    /// Bytes per chunk, a multiple of the element size.
    pub chunk_bytes: u64,
    /// The data chunks in order (raw CIDs).
    pub chunks: Vec<Cid>,
}

/// Where the bytes of one chunk of a [`Delta`] come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChunkSource {
    /// Identical to the base's chunk at the same index: nothing stored here.
    Base,
    /// The block `chunk` itself is stored (a changed chunk no delta made smaller).
    Raw,
    /// The block holds the chunk XOR the base's chunk, byte-plane grouped and zstd-compressed.
    Xor(Cid),
    /// The block holds the chunk minus the base's chunk (wrapping integer difference of the
    /// element bit patterns), byte-plane grouped and zstd-compressed.
    Sub(Cid),
}

impl ChunkSource {
    /// The stored payload block and its transform, for delta-coded chunks.
    pub fn payload(&self) -> Option<(Transform, Cid)> {
        match self {
            ChunkSource::Xor(c) => Some((Transform::Xor, *c)),
            ChunkSource::Sub(c) => Some((Transform::Sub, *c)),
            ChunkSource::Base | ChunkSource::Raw => None,
        }
    }
}

/// One chunk of a [`Delta`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeltaChunk {
    /// The CID of the chunk's reconstructed bytes: the same CID a full [`Tensor`] would list,
    /// so unchanged chunks are recognised without decoding, and a reconstruction is verified.
    pub chunk: Cid,
    /// Where its bytes come from.
    pub from: ChunkSource,
}

/// A tensor stored as an exact difference against an earlier full version of it (object
/// format 2: read, no longer written; new versions are [`Chunked`]).
///
/// The base is the full [`Tensor`] the parent's version refers to: the parent's own tensor
/// when that is full, else the parent delta's base. So a delta is never based on a delta and
/// a checkout decodes at most one delta per chunk, however long the history; chunks that did
/// not change since the parent keep the parent's entries (no re-encoding, no new payload).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delta {
    /// The full tensor object this delta applies to.
    pub base: Cid,
    /// The encoding of the payload blocks; see [`crate::delta::ENCODING`].
    pub encoding: String,
    /// Versions of this tensor since `base` was stored (1 for the first delta on it). Deltas
    /// are an earlier format: new versions are [`Chunked`].
    pub depth: u32,
    /// Element type (must equal the base's).
    pub dtype: DType,
    /// Shape (must equal the base's).
    pub shape: Vec<u64>,
    /// Bytes per chunk (must equal the base's).
    pub chunk_bytes: u64,
    /// The chunks, index for index with the base's.
    pub chunks: Vec<DeltaChunk>,
}

/// The name of the chunk-recipe format, recorded in every new [`Chunked`] object. Patches are
/// delta payloads of encoding [`crate::delta::ENCODING`], keys payloads of
/// [`crate::codec::pack`]; a recipe's patches are a [`Chain`] of [`PatchLink`] objects.
pub const CHUNKED_FORMAT: &str = "recipes/packed-keys/delta-v2-patches/chains/v4";

/// The format of [`Chunked`] objects written before patch chains: every recipe lists its
/// patches itself. Still read, and continued by new commits.
pub const CHUNKED_FORMAT_V3: &str = "recipes/packed-keys/delta-v2-patches/v3";

/// The starting bytes of a chunk [`Recipe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Key {
    /// A raw block holding the bytes as they are (chunks of earlier formats, or chunks
    /// compression does not make smaller).
    Raw(Cid),
    /// A block holding the bytes compressed by [`crate::codec::pack`].
    Packed(Cid),
}

impl Key {
    /// The block holding the key.
    pub fn block(&self) -> Cid {
        match self {
            Key::Raw(c) | Key::Packed(c) => *c,
        }
    }
}

/// One step of a [`Recipe`]: a delta payload applied to the bytes so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Patch {
    /// The transform the payload was made with.
    pub transform: Transform,
    /// The payload block (encoding [`crate::delta::ENCODING`]).
    pub payload: Cid,
    /// The payload's size in bytes: what the commit weighs as the patch's decode cost.
    pub bytes: u32,
}

/// The patches of a [`Recipe`] stored as a chain of [`PatchLink`] objects, newest first.
///
/// A recipe that listed its patches itself made every commit rewrite every patch of every
/// chunk (each tensor object is written again whenever one of its chunks changes): with
/// narrow rows, where a commit touches most chunks, that grew with the chain's depth to
/// more than the patches themselves. A chain costs a commit one link per changed chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chain {
    /// The newest link.
    pub head: Cid,
    /// The number of links.
    pub depth: u32,
    /// The links' payload bytes together.
    pub bytes: u64,
}

/// One link of a [`Chain`] (object kind `link`): a patch and the link before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchLink {
    /// The link holding the patch applied before this one; `None` for the first.
    pub prev: Option<Cid>,
    /// The patch.
    pub patch: Patch,
    /// The patch's payload itself, for one of at most [`INLINE_PATCH_BYTES`]: then
    /// `patch.payload` is the CID it would have as a block, and no such block is stored.
    /// A checkout walks every link anyway, so a small patch inline costs it one read
    /// instead of two (a read of a small block costs about what decoding a sparse patch
    /// does), and the store one block instead of two.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "serde_bytes")]
    pub data: Option<Vec<u8>>,
}

/// Patch payloads that links carry inline ([`PatchLink::data`]), by the CID each would have
/// as a block (`Repo::resolve_chains` returns them).
pub type InlinePayloads = HashMap<Cid, Bytes>;

/// The largest patch payload a [`PatchLink`] carries inline (a sparse patch of a few rows
/// is 1-10 KiB; dense patches, a third of a chunk, stay blocks of their own).
pub const INLINE_PATCH_BYTES: usize = 16 * 1024;

/// How to rebuild one chunk: decode the key, then apply each patch in order: those of the
/// chain (oldest first), then those listed here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipe {
    /// The CID of the rebuilt bytes as a raw block: the same CID a full [`Tensor`] would
    /// list, so unchanged chunks are recognised without decoding and a rebuild is verified.
    pub chunk: Cid,
    /// The starting bytes.
    pub key: Key,
    /// Deltas applied after the chain's, in order (format 3 recipes; a recipe whose chain
    /// has been walked, `Repo::resolve_chains`). New recipes keep their patches in `chain`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patches: Vec<Patch>,
    /// The earlier patches, as links (format 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<Chain>,
}

impl Recipe {
    /// The recipe of `chunk` that is its key alone, without patches.
    pub fn key_only(chunk: Cid, key: Key) -> Recipe {
        Recipe {
            chunk,
            key,
            patches: Vec::new(),
            chain: None,
        }
    }

    /// The number of patches, chained and listed: the chunk's decode depth, bounded by
    /// `RepoConfig::max_chain_depth`.
    pub fn depth(&self) -> u32 {
        let listed = u32::try_from(self.patches.len()).unwrap_or(u32::MAX);
        self.chain.map_or(0, |c| c.depth).saturating_add(listed)
    }

    /// The payload bytes of all its patches: what a rebuild decodes on top of the key.
    pub fn patch_bytes(&self) -> u64 {
        let listed: u64 = self.patches.iter().map(|p| u64::from(p.bytes)).sum();
        self.chain.map_or(0, |c| c.bytes) + listed
    }
}

/// A tensor whose every chunk is a [`Recipe`] ([`CHUNKED_FORMAT`], or format 3,
/// [`CHUNKED_FORMAT_V3`]).
///
/// A chunk changed since the parent version extends the parent's recipe with a delta
/// against the parent's bytes, or replaces its patches with one delta against the key (the
/// best recent ancestor, for steps that drift slowly), or starts a new compressed key:
/// whichever stores least, within the depth bound. A chunk unchanged since the parent keeps
/// the parent's recipe. So a version costs what changed, and a checkout reads only this
/// object and decodes each chunk on its own, in parallel, through a bounded number of
/// patches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunked {
    /// [`CHUNKED_FORMAT`] or [`CHUNKED_FORMAT_V3`].
    pub format: String,
    /// Element type.
    pub dtype: DType,
    /// Shape, outermost dimension first.
    pub shape: Vec<u64>,
    /// Bytes per chunk, a multiple of the element size (the last chunk may be shorter).
    pub chunk_bytes: u64,
    /// The chunks in order.
    pub chunks: Vec<Recipe>,
}

/// One model state: tensor name to tensor object ([`Tensor`] or [`Delta`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Tensors by name, sorted (a `BTreeMap`, and DAG-CBOR sorts map keys canonically).
    pub tensors: BTreeMap<String, Cid>,
    /// The `__metadata__` of the safetensors file the state was committed from (torch writes
    /// `format: pt`), written back on checkout so the file comes back the same. Absent from
    /// the object when the file had none, so states without it keep their earlier bytes and
    /// CIDs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
}

/// Where a commit's weights came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// Training-data CIDs (datasets, shards) the update was computed from.
    pub datasets: Vec<Cid>,
    /// Hyperparameters as text (`lr` -> `3e-4`): text keeps every value exact and printable.
    pub hyperparameters: BTreeMap<String, String>,
    /// Gradient or update tensors (object or block CIDs) that produced this state.
    pub gradients: Vec<Cid>,
    /// Free key/value metadata.
    pub metadata: BTreeMap<String, String>,
}

impl Provenance {
    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.datasets.is_empty()
            && self.hyperparameters.is_empty()
            && self.gradients.is_empty()
            && self.metadata.is_empty()
    }
}

/// A commit: a state, its parents and who made it, when and from what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    /// The [`State`] object.
    pub state: Cid,
    /// Parent commits: none for a root, one usually, two for a merge (ours first).
    pub parents: Vec<Cid>,
    /// Who made it.
    pub author: String,
    /// Why.
    pub message: String,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// Where the weights came from.
    pub provenance: Provenance,
}

/// Any versioning object, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Object {
    /// A full tensor.
    Tensor(Tensor),
    /// A tensor as a delta.
    Delta(Delta),
    /// A tensor as chunk recipes (formats 3 and 4).
    Chunked(Chunked),
    /// A model state.
    State(State),
    /// A commit.
    Commit(Commit),
    /// A link of a recipe's patch chain.
    Link(PatchLink),
}

impl Object {
    /// The object's kind, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Object::Tensor(_) => "tensor",
            Object::Delta(_) => "delta",
            Object::Chunked(_) => "chunked",
            Object::State(_) => "state",
            Object::Commit(_) => "commit",
            Object::Link(_) => "link",
        }
    }

    /// The object as a DAG-CBOR block.
    pub fn to_block(&self) -> Result<Block> {
        let bytes = serde_ipld_dagcbor::to_vec(self).map_err(|e| Error::Encode {
            what: self.kind(),
            reason: e.to_string(),
        })?;
        Ok(Block::with(Codec::DagCbor, HashAlgorithm::Sha2_256, bytes)?)
    }

    /// Decodes a block's bytes; `expected` names the kind the caller wanted, for the error.
    pub fn decode(cid: &Cid, data: &[u8], expected: &'static str) -> Result<Object> {
        serde_ipld_dagcbor::from_slice(data).map_err(|e| Error::Decode {
            cid: Box::new(*cid),
            expected,
            reason: e.to_string(),
        })
    }
}

/// A tensor object of either representation, with what both share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TensorObject {
    /// Stored in full.
    Full(Tensor),
    /// Stored as a delta.
    Delta(Delta),
    /// Stored as chunk recipes.
    Chunked(Chunked),
}

impl TensorObject {
    /// Element type.
    pub fn dtype(&self) -> DType {
        match self {
            TensorObject::Full(t) => t.dtype,
            TensorObject::Delta(d) => d.dtype,
            TensorObject::Chunked(c) => c.dtype,
        }
    }

    /// Shape.
    pub fn shape(&self) -> &[u64] {
        match self {
            TensorObject::Full(t) => &t.shape,
            TensorObject::Delta(d) => &d.shape,
            TensorObject::Chunked(c) => &c.shape,
        }
    }

    /// Bytes per chunk.
    pub fn chunk_bytes(&self) -> u64 {
        match self {
            TensorObject::Full(t) => t.chunk_bytes,
            TensorObject::Delta(d) => d.chunk_bytes,
            TensorObject::Chunked(c) => c.chunk_bytes,
        }
    }

    /// The CIDs of the logical (reconstructed) chunks, whatever the representation: two
    /// tensor objects hold the same data exactly when these, dtype and shape are equal.
    pub fn chunk_cids(&self) -> Vec<Cid> {
        match self {
            TensorObject::Full(t) => t.chunks.clone(),
            TensorObject::Delta(d) => d.chunks.iter().map(|c| c.chunk).collect(),
            TensorObject::Chunked(c) => c.chunks.iter().map(|r| r.chunk).collect(),
        }
    }

    /// Whether two tensor objects hold the same data.
    pub fn same_content(&self, other: &TensorObject) -> bool {
        self.dtype() == other.dtype()
            && self.shape() == other.shape()
            && self.chunk_cids() == other.chunk_cids()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::str::FromStr;

    use super::*;

    /// A commit is stored as DAG-CBOR with its CIDs as IPLD links, and printed with them as
    /// text (`crate::cid_text`, in the log and blame results): printing must not move the
    /// stored bytes, so a fixed commit keeps its CID and decodes back to itself.
    #[test]
    fn a_commit_keeps_its_stored_encoding() {
        let state =
            Cid::from_str("bafyreidxu6zn47rkwmxv25s6axb4mqwfhtbp3c5ysbjvnbaab6ivxl6g2q").unwrap();
        let data =
            Cid::from_str("bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku").unwrap();
        let commit = Object::Commit(Commit {
            state,
            parents: vec![state],
            author: "ada".into(),
            message: "step".into(),
            timestamp_ms: 1_700_000_000_999,
            provenance: Provenance {
                datasets: vec![data],
                hyperparameters: BTreeMap::from([("lr".into(), "3e-4".into())]),
                gradients: vec![data],
                metadata: BTreeMap::from([("run".into(), "7".into())]),
            },
        });
        let block = commit.to_block().unwrap();
        assert_eq!(
            block.cid().to_string(),
            "bafyreigfeeywz7g4bi2hibtyh5ugb4qt3xd6bakl4ec3itecy5jscxy5ha"
        );
        // The links are CBOR tag 42 (0xd8 0x2a), not text.
        assert!(block.data().windows(2).any(|w| w == [0xd8, 0x2a]));
        assert!(!block.data().windows(4).any(|w| w == b"bafy"));
        assert_eq!(
            Object::decode(block.cid(), block.data(), "commit").unwrap(),
            commit
        );
    }
}
