//! The hot tier's log-structured segment files: record format, index, mapping and recovery.
//!
//! A shard appends blocks to its active segment as self-checking records (see [`record`] for
//! the byte layout). This module has no executor in it: the DMA writer and the compaction task
//! live in the shards crate, which owns the event loop; everything here is plain functions over
//! buffers and files, so recovery can be tested byte by byte.
//!
//! - [`record`]: the record format, [`encode_into`] / [`encode_at`] to write one record and
//!   [`decode`] to read one back, zero copy.
//! - [`Alignment`]: the alignment every record starts at and is padded to (8 bytes in hot
//!   segments; the writer's O_DIRECT writes stay sector-aligned on their own).
//! - [`Scanner`]: walks a segment buffer record by record against a given synced offset and
//!   says why it stopped ([`ScanEnd`]): a clean end, a torn tail, or corruption (a reference
//!   for tests and fuzzing; recovery uses [`scan_segment`] and [`replay`]).
//! - [`RecordError`]: everything that can be wrong with a record, with its offset.
//! - [`index`]: the per-shard map from key fingerprint to record location ([`HotIndex`]).
//! - [`file`](mod@file): segment file names, read-only mappings handing out zero-copy `Bytes`.
//! - [`recover`]: rebuilding the index from segment files, torn tail vs corruption.
//! - [`hint`]: a sealed segment's record list, so recovery need not read the payloads.
//! - [`salvage`]: naming the block a damaged record held, proven by its payload's hash.

mod align;
mod error;
pub mod file;
pub mod hint;
pub mod index;
pub mod record;
pub mod recover;
pub mod salvage;
mod scan;

pub use align::Alignment;
pub use error::{LengthField, RecordError};
pub use file::MappedSegment;
pub use index::{HotIndex, Loc};
pub use record::{
    Decoded, Header, HeaderDigest, Payload, decode, decode_header, encode_at, encode_header,
    encode_into, encoded_len,
};
pub use recover::{Position, Recovered, SegmentScan, replay, scan_segment, walk_headers};
pub use salvage::KeyTrust;
pub use scan::{ScanEnd, Scanner};
