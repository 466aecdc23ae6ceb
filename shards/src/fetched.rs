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
            // The index said how long the record is: a record that ends elsewhere means a
            // damaged index entry, whose length (and `get_size`) must not be trusted.
            Ok(decoded) if decoded.next_offset != record.len() => {
                return Err(corrupt(format!(
                    "the index gives the record {} bytes, the record has {}",
                    record.len(),
                    decoded.next_offset
                )));
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use bytes::Bytes;
    use ipfrs_tiering::segment::{Alignment, Payload, encode_at};

    use super::Fetched;
    use crate::Error;

    /// A record sliced as the index says: exactly its extent is served; an index entry whose
    /// length is damaged (longer or shorter than the record) is `Corrupt`, never served.
    #[test]
    fn a_record_is_served_only_over_its_exact_extent() {
        let key = [0x12, 4, 1, 2, 3, 4];
        let data = [9u8; 100];
        let mut buf = vec![0u8; 512];
        encode_at(&mut buf, 0, 1, &key, Payload::Data(&data), Alignment::WORD).unwrap();
        let exact = 28 + key.len() + data.len();
        let record = Bytes::from(buf);
        let served = Fetched::Record(record.slice(..exact)).into_data(&key);
        assert_eq!(served.unwrap().as_ref(), &data[..]);
        for len in [exact - 1, exact + 1, exact + 8, 512] {
            let got = Fetched::Record(record.slice(..len)).into_data(&key);
            assert!(matches!(got, Err(Error::Corrupt { .. })), "{len}: {got:?}");
        }
    }
}
