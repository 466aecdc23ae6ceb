use bytes::Bytes;
use cid::Cid;
use multihash::Multihash;
use multihash_codetable::{Code, MultihashDigest};

use crate::BlockError;
use crate::key::{IDENTITY_CODE, MAX_IDENTITY_SIZE};

/// The IPLD codecs the engine names. Any codec is stored (keys are multihashes); these are
/// the ones [`Block::with`] can label a block with by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// Raw bytes, 0x55.
    Raw,
    /// dag-pb (UnixFS), 0x70.
    DagPb,
    /// dag-cbor, 0x71.
    DagCbor,
}

impl Codec {
    /// The multicodec code.
    pub const fn code(self) -> u64 {
        match self {
            Codec::Raw => 0x55,
            Codec::DagPb => 0x70,
            Codec::DagCbor => 0x71,
        }
    }
}

/// Hash functions a block can be created with. Verification accepts every code of
/// multihash-codetable that this build enables (sha2, sha3, blake2b, blake3, identity).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlgorithm {
    /// sha2-256, 0x12: the IPFS default. sha2 picks the SHA-NI code path at run time on x86-64.
    Sha2_256,
    /// blake3 with a 32-byte digest, 0x1e.
    Blake3,
    /// blake2b-256, 0xb220: common in Filecoin data.
    Blake2b256,
}

impl HashAlgorithm {
    fn code(self) -> Code {
        match self {
            HashAlgorithm::Sha2_256 => Code::Sha2_256,
            HashAlgorithm::Blake3 => Code::Blake3_256,
            HashAlgorithm::Blake2b256 => Code::Blake2b256,
        }
    }
}

/// A content-addressed block: bytes and the CID they hash to.
///
/// The fields are private and every constructor verifies (or computes) the hash, so a `Block`
/// in hand is always consistent: the engine stores it without hashing it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    cid: Cid,
    data: Bytes,
}

impl Block {
    /// A CIDv1 raw block with a sha2-256 multihash computed from `data`.
    ///
    /// ```
    /// let block = ipfrs_core_types::Block::new(&b"hello"[..]).unwrap();
    /// assert_eq!(block.cid().codec(), 0x55);
    /// ```
    pub fn new(data: impl Into<Bytes>) -> Result<Block, BlockError> {
        Self::with(Codec::Raw, HashAlgorithm::Sha2_256, data)
    }

    /// A CIDv1 block with the given codec and hash function, hashed from `data`.
    pub fn with(
        codec: Codec,
        hash: HashAlgorithm,
        data: impl Into<Bytes>,
    ) -> Result<Block, BlockError> {
        let data = data.into();
        let mh = hash.code().digest(&data);
        Ok(Block {
            cid: Cid::new_v1(codec.code(), mh),
            data,
        })
    }

    /// A block from a CID given by the caller and its bytes, verified: the bytes must hash to
    /// the CID's multihash (any code of the codetable, CIDv0 or CIDv1, any codec).
    pub fn from_parts(cid: Cid, data: impl Into<Bytes>) -> Result<Block, BlockError> {
        let data = data.into();
        verify(&cid, &data)?;
        Ok(Block { cid, data })
    }

    /// The block's CID.
    pub fn cid(&self) -> &Cid {
        &self.cid
    }

    /// The block's bytes.
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// The block's length in bytes.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True for a zero-length block (a valid block: it has a CID like any other).
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Splits the block into its CID and bytes.
    pub fn into_parts(self) -> (Cid, Bytes) {
        (self.cid, self.data)
    }
}

/// Checks that `data` hashes to the multihash in `cid`.
pub fn verify(cid: &Cid, data: &[u8]) -> Result<(), BlockError> {
    let mh = cid.hash();
    let code = mh.code();
    if code == IDENTITY_CODE {
        if data.len() > MAX_IDENTITY_SIZE {
            return Err(BlockError::IdentityTooLarge {
                size: data.len(),
                limit: MAX_IDENTITY_SIZE,
            });
        }
        return if mh.digest() == data {
            Ok(())
        } else {
            Err(BlockError::HashMismatch { cid: *cid })
        };
    }
    let table = Code::try_from(code).map_err(|_| BlockError::UnsupportedHash { code })?;
    let computed: Multihash<64> = table.digest(data);
    // Truncated digests are refused: a short digest would let unrelated data collide.
    if computed.digest() == mh.digest() {
        Ok(())
    } else {
        Err(BlockError::HashMismatch { cid: *cid })
    }
}

/// Whether sha2-256 runs on the CPU's SHA extensions here. sha2 picks its x86 SHA-NI code at
/// run time under exactly this condition (cpufeatures: `sha` and `sse4.1`); elsewhere it uses
/// its portable code, about five times slower.
pub fn sha256_accelerated() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("sha") && std::is_x86_feature_detected!("sse4.1")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("sha2")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn every_constructor_yields_a_verifiable_block() {
        for hash in [
            HashAlgorithm::Sha2_256,
            HashAlgorithm::Blake3,
            HashAlgorithm::Blake2b256,
        ] {
            for codec in [Codec::Raw, Codec::DagPb, Codec::DagCbor] {
                let block = Block::with(codec, hash, &b"payload"[..]).unwrap();
                assert_eq!(block.cid().codec(), codec.code());
                let again = Block::from_parts(*block.cid(), block.data().clone()).unwrap();
                assert_eq!(again, block);
                assert!(Block::from_parts(*block.cid(), &b"other"[..]).is_err());
            }
        }
    }

    #[test]
    fn cid_v0_is_accepted() {
        let v1 = Block::new(&b"v0 data"[..]).unwrap();
        let v0 = Cid::new_v0(*v1.cid().hash()).unwrap();
        assert!(Block::from_parts(v0, &b"v0 data"[..]).is_ok());
        assert_eq!(
            crate::key::key_of(&v0),
            crate::key::key_of(v1.cid()),
            "CIDv0 and CIDv1 of the same multihash share one key"
        );
    }

    #[test]
    fn truncated_digest_is_refused() {
        let full = Code::Sha2_256.digest(b"abc");
        let short = Multihash::<64>::wrap(0x12, &full.digest()[..16]).unwrap();
        let cid = Cid::new_v1(0x55, short);
        assert_eq!(
            Block::from_parts(cid, &b"abc"[..]),
            Err(BlockError::HashMismatch { cid })
        );
    }

    #[test]
    fn identity_blocks_carry_their_data_and_a_limit() {
        let mh = Multihash::<64>::wrap(0x00, b"inline").unwrap();
        let cid = Cid::new_v1(0x55, mh);
        assert!(Block::from_parts(cid, &b"inline"[..]).is_ok());
        assert!(Block::from_parts(cid, &b"other"[..]).is_err());
        assert_eq!(crate::key::identity_data(&cid), Some(&b"inline"[..]));
        // `Cid` holds at most 64 digest bytes, tighter than MAX_IDENTITY_SIZE: larger inline
        // data cannot even form a CID, so it never reaches the store.
        assert!(Multihash::<64>::wrap(0x00, &[1u8; 65]).is_err());
    }

    #[test]
    fn routing_spreads_keys_over_every_shard() {
        let mut counts = [0usize; 8];
        for i in 0u32..8000 {
            let block = Block::new(i.to_le_bytes().to_vec()).unwrap();
            counts[crate::key::shard_of(block.cid(), 8)] += 1;
        }
        // Uniform routing puts ~1000 on each; a broken hash (e.g. the multihash prefix)
        // would put them all on one.
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
    }
}
