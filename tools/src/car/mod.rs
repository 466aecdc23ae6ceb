//! CAR files (content-addressed archives): streaming read, write, and the links between blocks.
//!
//! A CARv1 file is a varint-prefixed DAG-CBOR header `{roots: [CID], version: 1}` followed by
//! sections, each a varint length then a CID then the block's bytes. A CARv2 file is an
//! 11-byte pragma (a CARv1 header with version 2), a 40-byte header (characteristics, data
//! offset, data size, index offset), a CARv1 payload, and an optional index (ignored on read:
//! the payload alone yields every block).
//!
//! [`read`] yields blocks one at a time with one section in memory, each block's hash verified
//! before it is handed out ([`ipfrs_storage::Block::from_parts`]); every error names the byte
//! offset where the problem is. [`CarWriter`] writes CARv1, [`CarV2Writer`] CARv2 with the
//! MultihashIndexSorted index go-car writes. [`links`] lists the CIDs a dag-pb, dag-cbor or raw block refers to.
//!
//! Why not rs-car-sync: its errors carry no offsets, it panics on some malformed headers
//! (unchecked subtractions of header fields) and trusts section lengths up to 1 GiB before
//! allocating; the format is small enough that a careful reader is less risk.

mod cbor_links;
mod error;
mod header;
mod index;
mod links;
mod read;
mod varint;
mod write;

pub use error::CarError;
pub use header::{CarHeader, CarVersion, V2Header};
pub use links::{LinkError, links};
pub use read::{CarReader, ReadOptions, Section, read, read_buffered, read_with};
pub use write::{CarV2Writer, CarWriter};
