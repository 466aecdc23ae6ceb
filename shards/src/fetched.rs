//! What a read of one key returns before it is checked.

use bytes::Bytes;

use crate::{Error, Result};

/// A block as a shard answers a read: plain bytes (cache, cold backend, identity CID), or a
/// hot-segment record (header, key, payload), a zero-copy slice of the segment's mapping, that
/// the caller checks with [`Fetched::into_data`]. Checking on the caller's side keeps the
/// checksum work and the page faults of a first read off the shard's core.
///
/// `Data` is already checked: every inline block read from the cold backend passed its
/// checksum over key and bytes (or, from a store written before inline checksums, was hashed
/// against its key); a mismatch is [`Error::Corrupt`], and the cache holds only bytes that
/// passed.
#[derive(Debug, Clone)]
pub enum Fetched {
    /// The block's bytes.
    Data(Bytes),
    /// A hot record, not yet checked.
    Record(Bytes),
}

impl Fetched {
    /// The block's bytes, after checking a hot record against its checksum and `key`.
    ///
    /// # Errors
    /// [`Error::Corrupt`] if the record is damaged or holds another key: its bytes are never
    /// handed out.
    pub fn into_data(self, key: &[u8]) -> Result<Bytes> {
        let record = match self {
            Fetched::Data(data) => return Ok(data),
            Fetched::Record(record) => record,
        };
        let corrupt = |reason: String| Error::Corrupt {
            key: key.to_vec(),
            reason,
        };
        // Records are read back over their exact extent, without the padding.
        let exact =
            ipfrs_tiering::segment::Alignment::new(1).map_err(|e| corrupt(e.to_string()))?;
        let range = match ipfrs_tiering::segment::decode(&record, 0, exact) {
            Ok(decoded) if decoded.key != key => {
                return Err(corrupt("the record holds another key".into()));
            }
            Ok(decoded) => match decoded.payload {
                ipfrs_tiering::segment::Payload::Data(data) => {
                    let start = data.as_ptr() as usize - record.as_ptr() as usize;
                    start..start + data.len()
                }
                ipfrs_tiering::segment::Payload::Tombstone => {
                    return Err(corrupt("the index points at a tombstone".into()));
                }
            },
            Err(e) => return Err(corrupt(e.to_string())),
        };
        Ok(record.slice(range))
    }
}
