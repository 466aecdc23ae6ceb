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
