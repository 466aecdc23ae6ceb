//! Storage keys and routing.
//!
//! A block is stored under its multihash bytes (code, length, digest), not its whole CID, as
//! Kubo/boxo do: the same bytes under the raw and dag-pb codecs are one block. Listing gives
//! CIDv1 raw back. Shards are chosen by `xxh3(digest) % shards`; the bloom filter takes a
//! differently seeded xxh3 of the same digest so its bits are independent of the routing.

use cid::Cid;
use multihash::Multihash;
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use crate::BlockError;
use crate::block::Codec;

/// A storage key: the multihash bytes of a CID.
pub type Key = Vec<u8>;

/// The identity multihash code: the "digest" is the data itself.
pub const IDENTITY_CODE: u64 = 0x00;

/// Inline data an identity CID may carry (boxo's limit): larger ones are refused, so nobody
/// smuggles whole blocks into CIDs.
pub const MAX_IDENTITY_SIZE: usize = 128;

/// Seed of the bloom filter's hash: any constant other than 0 (the routing hash's seed).
const BLOOM_SEED: u64 = 0x1bf5_2d6a_9c3e_8f01;

/// The storage key of a CID.
pub fn key_of(cid: &Cid) -> Key {
    cid.hash().to_bytes()
}

/// The inline data of an identity CID, `None` for any other hash.
pub fn identity_data(cid: &Cid) -> Option<&[u8]> {
    (cid.hash().code() == IDENTITY_CODE).then(|| cid.hash().digest())
}

/// The shard that owns a CID, given the shard count (> 0).
pub fn shard_of(cid: &Cid, shards: usize) -> usize {
    shard_of_digest(cid.hash().digest(), shards)
}

/// The shard that owns a digest; see [`shard_of`].
pub fn shard_of_digest(digest: &[u8], shards: usize) -> usize {
    (xxh3_64(digest) % shards as u64) as usize
}

/// The hash the bloom filters are fed with for a key.
pub fn bloom_hash(key: &[u8]) -> u64 {
    xxh3_64_with_seed(key, BLOOM_SEED)
}

/// The multihash code and the length of the multihash that starts `bytes` (its varints and
/// the digest length they announce), or `None` if no multihash of at most 64 digest bytes
/// starts there. Trailing bytes are allowed: this reads a prefix, for salvaging a key out of
/// a damaged record whose stored key length cannot be trusted.
pub fn multihash_prefix(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut rest = bytes;
    let mh = Multihash::<64>::read(&mut rest).ok()?;
    Some((mh.code(), bytes.len() - rest.len()))
}

/// The CID a key is listed as: CIDv1 raw over the stored multihash.
///
/// A key that is not the canonical encoding of its multihash is refused (see
/// [`parse_cid_bytes`]): its CID would map back to a different key, one `get` cannot find.
pub fn cid_of_key(key: &[u8]) -> Result<Cid, BlockError> {
    let mh = Multihash::<64>::from_bytes(key).map_err(|e| BlockError::MalformedCid {
        reason: e.to_string(),
    })?;
    if mh.to_bytes() != key {
        return Err(BlockError::MalformedCid {
            reason: NON_CANONICAL.into(),
        });
    }
    Ok(Cid::new_v1(Codec::Raw.code(), mh))
}

/// Why a CID or multihash that decodes is still refused. unsigned-varint 0.8 drops the high
/// bits of a 10-byte varint's last byte instead of reporting an overflow
/// (paritytech/unsigned-varint#73), so two spellings (e.g. a 10-byte multihash code that
/// truncates to 0x12, sha2-256) decode to the same value; only the re-encoded bytes tell.
const NON_CANONICAL: &str = "not the canonical encoding (a varint overflows 64 bits)";

/// Parses a CID from its binary form, with a typed error. Trailing bytes are refused (as
/// Kubo's `cid.Cast` does): the cid crate reads a prefix and would drop them silently. So are
/// bytes that decode but are not the CID's own encoding (an overflowing varint), so one CID
/// has one binary form.
pub fn parse_cid_bytes(bytes: &[u8]) -> Result<Cid, BlockError> {
    let mut rest = bytes;
    let cid = Cid::read_bytes(&mut rest).map_err(|e| BlockError::MalformedCid {
        reason: e.to_string(),
    })?;
    if !rest.is_empty() {
        return Err(BlockError::MalformedCid {
            reason: format!(
                "{} bytes after the CID's {}",
                rest.len(),
                bytes.len() - rest.len()
            ),
        });
    }
    if cid.to_bytes() != bytes {
        return Err(BlockError::MalformedCid {
            reason: NON_CANONICAL.into(),
        });
    }
    Ok(cid)
}

/// Parses a CID from its text form (base32 `bafy...`, base58 `Qm...`), with a typed error.
/// Trailing bytes inside the encoding are refused, as by [`parse_cid_bytes`].
pub fn parse_cid(text: &str) -> Result<Cid, BlockError> {
    let malformed = |e: &dyn std::fmt::Display| BlockError::MalformedCid {
        reason: e.to_string(),
    };
    // A bare CIDv0 is base58btc of exactly the 34-byte multihash; anything else is multibase.
    let bytes = if text.len() == 46 && text.starts_with("Qm") {
        cid::multibase::Base::Base58Btc
            .decode(text)
            .map_err(|e| malformed(&e))?
    } else {
        cid::multibase::decode(text).map_err(|e| malformed(&e))?.1
    };
    parse_cid_bytes(&bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::Block;

    /// A 10-byte varint whose last byte carries a bit past 2^63 that the decoder drops:
    /// `low` (7 bits) in the first byte, bit 63 set, and bit 64 set in the spelling only. The
    /// canonical encoding of the decoded value has the same length and ends in 0x01.
    fn overflowing_varint(low: u8) -> Vec<u8> {
        let mut out = vec![low | 0x80];
        out.extend([0x80; 8]);
        out.push(0x03);
        out
    }

    /// Found by the cid_parse fuzz target: a CID whose codec varint overflows 64 bits parsed,
    /// and its bytes were not the CID's encoding (a second binary spelling of one CID).
    #[test]
    fn overflowing_varints_are_malformed_not_aliases() {
        let block = Block::new(&b"x"[..]).unwrap();
        let mut bytes = vec![0x01];
        bytes.extend(overflowing_varint(0x55));
        bytes.extend(block.cid().hash().to_bytes());
        // The cid crate alone accepts it, as a CID with another encoding: the reason for
        // the check.
        let aliased = Cid::try_from(&bytes[..]).unwrap();
        assert_eq!(aliased.codec(), 0x55 | 1 << 63);
        assert_eq!(aliased.to_bytes().len(), bytes.len());
        assert_ne!(aliased.to_bytes(), bytes);
        assert_eq!(
            parse_cid_bytes(&bytes),
            Err(BlockError::MalformedCid {
                reason: NON_CANONICAL.into()
            })
        );
        // The same in a storage key: a multihash code that overflows.
        let digest = block.cid().hash().digest();
        let mut key = overflowing_varint(0x12);
        key.push(digest.len() as u8);
        key.extend(digest);
        assert!(Multihash::<64>::from_bytes(&key).is_ok());
        assert_eq!(
            cid_of_key(&key),
            Err(BlockError::MalformedCid {
                reason: NON_CANONICAL.into()
            })
        );
        // The canonical forms still parse.
        let canonical = aliased.to_bytes();
        assert_eq!(parse_cid_bytes(&canonical), Ok(aliased));
        assert_eq!(parse_cid_bytes(&block.cid().to_bytes()), Ok(*block.cid()));
        assert_eq!(
            cid_of_key(&key_of(block.cid())).map(|c| *c.hash()),
            Ok(*block.cid().hash())
        );
    }

    #[test]
    fn trailing_bytes_are_still_named() {
        let block = Block::new(&b"x"[..]).unwrap();
        let mut bytes = block.cid().to_bytes();
        bytes.extend(b"junk");
        let Err(BlockError::MalformedCid { reason }) = parse_cid_bytes(&bytes) else {
            panic!("trailing bytes accepted");
        };
        assert!(reason.starts_with("4 bytes after"), "{reason}");
    }
}
