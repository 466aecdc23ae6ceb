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

/// The CID a key is listed as: CIDv1 raw over the stored multihash.
pub fn cid_of_key(key: &[u8]) -> Result<Cid, BlockError> {
    let mh = Multihash::<64>::from_bytes(key).map_err(|e| BlockError::MalformedCid {
        reason: e.to_string(),
    })?;
    Ok(Cid::new_v1(Codec::Raw.code(), mh))
}

/// Parses a CID from its binary form, with a typed error. Trailing bytes are refused (as
/// Kubo's `cid.Cast` does): the cid crate reads a prefix and would drop them silently.
pub fn parse_cid_bytes(bytes: &[u8]) -> Result<Cid, BlockError> {
    let cid = Cid::try_from(bytes).map_err(|e| BlockError::MalformedCid {
        reason: e.to_string(),
    })?;
    let used = cid.encoded_len();
    if used != bytes.len() {
        return Err(BlockError::MalformedCid {
            reason: format!("{} bytes after the CID's {used}", bytes.len() - used),
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
