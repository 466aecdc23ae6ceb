//! CAR files (content-addressed archives): streaming read and write, the one codec of the
//! workspace (the `ipfrs-store car` commands and the versioning layer's commit export both use
//! it).
//!
//! A CARv1 file is a varint-prefixed DAG-CBOR header `{roots: [CID], version: 1}` followed by
//! sections, each a varint length then a CID then the block's bytes. A CARv2 file is an
//! 11-byte pragma (a CARv1 header with version 2), a 40-byte header (characteristics, data
//! offset, data size, index offset), a CARv1 payload, and an optional index (ignored on read:
//! the payload alone yields every block).
//!
//! [`read`] yields blocks one at a time with one section in memory, each block's hash verified
//! before it is handed out ([`ipfrs_core_types::Block::from_parts`]); every error names the
//! byte offset where the problem is. [`CarWriter`] writes CARv1, [`CarV2Writer`] CARv2 with the
//! MultihashIndexSorted index go-car writes. [`varint`] is the unsigned LEB128 varint of the
//! format.
//!
//! Why not rs-car-sync: its errors carry no offsets, it panics on some malformed headers
//! (unchecked subtractions of header fields) and trusts section lengths up to 1 GiB before
//! allocating; the format is small enough that a careful reader is less risk.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use ipfrs_car::{CarWriter, read};
//! use ipfrs_core_types::Block;
//!
//! let block = Block::new(&b"hello"[..])?;
//! let mut writer = CarWriter::new(Vec::new(), &[*block.cid()])?;
//! writer.write_block(block.cid(), block.data())?;
//! let file = writer.finish()?;
//!
//! let reader = read(&file[..])?;
//! assert_eq!(reader.header().roots, [*block.cid()]);
//! let blocks = reader.collect::<Result<Vec<_>, _>>()?;
//! assert_eq!(blocks, [block]);
//! # Ok(())
//! # }
//! ```

mod error;
mod header;
mod index;
mod read;
pub mod varint;
mod write;

pub use error::{CarError, HeaderFault, SectionLengthFault};
pub use header::{CarHeader, CarVersion, V2Header};
pub use read::{CarReader, ReadOptions, Section, read, read_buffered, read_with};
pub use write::{CarV2Writer, CarWriter};
