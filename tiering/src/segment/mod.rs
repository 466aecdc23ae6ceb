//! The hot tier's log-structured segment files: for now, their on-disk record format.
//!
//! A shard appends blocks to its active segment as self-checking records (see [`record`] for
//! the byte layout). This module knows only bytes in buffers: opening, preallocating, mapping
//! and syncing segment files belong to the writer and recovery code built on top of it.
//!
//! - [`record`]: the record format, [`encode_into`] / [`encode_at`] to write one record and
//!   [`decode`] to read one back, zero copy.
//! - [`Alignment`]: the write alignment every record is padded to (512 or 4096 for O_DIRECT).
//! - [`Scanner`]: walks a segment buffer record by record and says why it stopped
//!   ([`ScanEnd`]): a clean end, a torn tail to truncate, or corruption to report.
//! - [`RecordError`]: everything that can be wrong with a record, with its offset.

mod align;
mod error;
pub mod record;
mod scan;

pub use align::Alignment;
pub use error::{LengthField, RecordError};
pub use record::{Decoded, Payload, decode, encode_at, encode_into, encoded_len};
pub use scan::{ScanEnd, Scanner};
