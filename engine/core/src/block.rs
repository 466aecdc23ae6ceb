use std::fmt;
use std::str::FromStr;

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

/// Hash functions a block can be created with: every multihash of multihash-codetable that
/// IPFS data uses. Verification ([`verify`]) accepts every code this build enables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlgorithm {
    /// sha2-256, 0x12: the IPFS default. sha2 picks the SHA-NI code path at run time on x86-64.
    Sha2_256,
    /// sha2-512, 0x13.
    Sha2_512,
    /// sha3-224, 0x17.
    Sha3_224,
    /// sha3-256, 0x16.
    Sha3_256,
    /// sha3-384, 0x15.
    Sha3_384,
    /// sha3-512, 0x14.
    Sha3_512,
    /// blake3 with a 32-byte digest, 0x1e.
    Blake3,
    /// blake2b-256, 0xb220: common in Filecoin data.
    Blake2b256,
    /// identity, 0x00: the data is the digest (at most 64 bytes, the largest digest a `Cid`
    /// holds). Such blocks are answered from the CID and never stored.
    Identity,
}

impl HashAlgorithm {
    /// Every algorithm, in the order of the multicodec table.
    pub const ALL: [HashAlgorithm; 9] = [
        HashAlgorithm::Identity,
        HashAlgorithm::Sha2_256,
        HashAlgorithm::Sha2_512,
        HashAlgorithm::Sha3_512,
        HashAlgorithm::Sha3_384,
        HashAlgorithm::Sha3_256,
        HashAlgorithm::Sha3_224,
        HashAlgorithm::Blake3,
        HashAlgorithm::Blake2b256,
    ];

    /// The multicodec name (as Kubo's `--mhtype` spells it).
    pub const fn name(self) -> &'static str {
        match self {
            HashAlgorithm::Sha2_256 => "sha2-256",
            HashAlgorithm::Sha2_512 => "sha2-512",
            HashAlgorithm::Sha3_224 => "sha3-224",
            HashAlgorithm::Sha3_256 => "sha3-256",
            HashAlgorithm::Sha3_384 => "sha3-384",
            HashAlgorithm::Sha3_512 => "sha3-512",
            HashAlgorithm::Blake3 => "blake3",
            HashAlgorithm::Blake2b256 => "blake2b-256",
            HashAlgorithm::Identity => "identity",
        }
    }

    /// The multihash code.
    pub const fn multihash_code(self) -> u64 {
        match self {
            HashAlgorithm::Identity => IDENTITY_CODE,
            HashAlgorithm::Sha2_256 => 0x12,
            HashAlgorithm::Sha2_512 => 0x13,
            HashAlgorithm::Sha3_512 => 0x14,
            HashAlgorithm::Sha3_384 => 0x15,
            HashAlgorithm::Sha3_256 => 0x16,
            HashAlgorithm::Sha3_224 => 0x17,
            HashAlgorithm::Blake3 => 0x1e,
            HashAlgorithm::Blake2b256 => 0xb220,
        }
    }

    fn digest(self, data: &[u8]) -> Result<Multihash<64>, BlockError> {
        let code = match self {
            HashAlgorithm::Identity => {
                return Multihash::wrap(IDENTITY_CODE, data).map_err(|_| {
                    BlockError::IdentityTooLarge {
                        size: data.len(),
                        limit: IDENTITY_CID_LIMIT,
                    }
                });
            }
            HashAlgorithm::Sha2_256 => Code::Sha2_256,
            HashAlgorithm::Sha2_512 => Code::Sha2_512,
            HashAlgorithm::Sha3_224 => Code::Sha3_224,
            HashAlgorithm::Sha3_256 => Code::Sha3_256,
            HashAlgorithm::Sha3_384 => Code::Sha3_384,
            HashAlgorithm::Sha3_512 => Code::Sha3_512,
            HashAlgorithm::Blake3 => Code::Blake3_256,
            HashAlgorithm::Blake2b256 => Code::Blake2b256,
        };
        Ok(code.digest(data))
    }
}

/// The most inline data an identity CID can carry here: `Cid` holds digests of up to 64 bytes.
const IDENTITY_CID_LIMIT: usize = 64;

impl fmt::Display for HashAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for HashAlgorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        HashAlgorithm::ALL
            .into_iter()
            .find(|h| h.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = HashAlgorithm::ALL.iter().map(|h| h.name()).collect();
                format!("unknown hash {s:?} (expected one of {})", names.join(", "))
            })
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
    ///
    /// Errors: [`BlockError::IdentityTooLarge`] for identity over 64 bytes of data.
    pub fn with(
        codec: Codec,
        hash: HashAlgorithm,
        data: impl Into<Bytes>,
    ) -> Result<Block, BlockError> {
        let data = data.into();
        let mh = hash.digest(&data)?;
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
    verify_multihash(cid.hash(), data, || *cid)
}

/// Checks that `data` hashes to the storage key `key` (multihash bytes, see [`crate::key`]).
///
/// The engine calls this on every block it reads back from a cold backend: the backend's
/// files are not checksummed by the engine, and content addressing makes the key itself the
/// check. A key that is not a canonical multihash is [`BlockError::MalformedCid`].
pub fn verify_key(key: &[u8], data: &[u8]) -> Result<(), BlockError> {
    let cid = crate::key::cid_of_key(key)?;
    verify_multihash(cid.hash(), data, || cid)
}

/// The storage key (multihash bytes) `data` has under the multihash `code`, or `None` for a code
/// this build cannot hash with, and for identity (whose "digest" is the data itself).
///
/// Recovery uses it to name the block a damaged record holds: content addressing makes the
/// payload's own hash the one witness of its key that a bit flip in the header cannot forge.
pub fn key_for_data(code: u64, data: &[u8]) -> Option<crate::key::Key> {
    if code == IDENTITY_CODE {
        return None;
    }
    let table = Code::try_from(code).ok()?;
    Some(table.digest(data).to_bytes())
}

/// The digest comparison behind [`verify`] and [`verify_key`]; `cid` names the block in the
/// error (built only on a mismatch).
fn verify_multihash(
    mh: &Multihash<64>,
    data: &[u8],
    cid: impl FnOnce() -> Cid,
) -> Result<(), BlockError> {
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
            Err(BlockError::HashMismatch { cid: cid() })
        };
    }
    let table = Code::try_from(code).map_err(|_| BlockError::UnsupportedHash { code })?;
    let computed: Multihash<64> = table.digest(data);
    // Truncated digests are refused: a short digest would let unrelated data collide.
    if computed.digest() == mh.digest() {
        Ok(())
    } else {
        Err(BlockError::HashMismatch { cid: cid() })
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
        for hash in HashAlgorithm::ALL {
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
    fn every_algorithm_has_its_multihash_code_and_name() {
        for hash in HashAlgorithm::ALL {
            let block = Block::with(Codec::Raw, hash, &b"x"[..]).unwrap();
            assert_eq!(block.cid().hash().code(), hash.multihash_code(), "{hash}");
            assert_eq!(hash.name().parse::<HashAlgorithm>(), Ok(hash));
        }
        assert!("md5".parse::<HashAlgorithm>().is_err());
    }

    #[test]
    fn digests_match_known_vectors() {
        // Digests of "abc" from the algorithms' published test vectors (FIPS 180-4, FIPS 202,
        // the BLAKE3 reference); each proves the enum is wired to the right function.
        let cases = [
            (
                HashAlgorithm::Sha2_512,
                "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
            ),
            (
                HashAlgorithm::Sha3_224,
                "e642824c3f8cf24ad09234ee7d3c766fc9a3a5168d0c94ad73b46fdf",
            ),
            (
                HashAlgorithm::Sha3_256,
                "3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532",
            ),
            (
                HashAlgorithm::Sha3_384,
                "ec01498288516fc926459f58e2c6ad8df9b473cb0fc08c2596da7cf0e49be4b298d88cea927ac7f539f1edf228376d25",
            ),
            (
                HashAlgorithm::Sha3_512,
                "b751850b1a57168a5693cd924b6b096e08f621827444f70d884f5d0240d2712e10e116e9192af3c91a7ec57647e3934057340b4cf408d5a56592f8274eec53f0",
            ),
            (
                HashAlgorithm::Blake3,
                "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85",
            ),
        ];
        for (hash, hex) in cases {
            let block = Block::with(Codec::Raw, hash, &b"abc"[..]).unwrap();
            let got: String = block
                .cid()
                .hash()
                .digest()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(got, hex, "{hash}");
        }
    }

    #[test]
    fn identity_construction_is_bounded_by_the_cid() {
        let block = Block::with(Codec::Raw, HashAlgorithm::Identity, &b"tiny"[..]).unwrap();
        assert_eq!(block.cid().hash().digest(), b"tiny");
        assert_eq!(
            Block::with(Codec::Raw, HashAlgorithm::Identity, vec![0u8; 65]),
            Err(BlockError::IdentityTooLarge {
                size: 65,
                limit: 64
            })
        );
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
    fn verify_key_checks_bytes_against_a_storage_key() {
        for hash in [HashAlgorithm::Sha2_256, HashAlgorithm::Blake3] {
            let block = Block::with(Codec::DagCbor, hash, &b"stored"[..]).unwrap();
            let key = crate::key::key_of(block.cid());
            assert_eq!(verify_key(&key, b"stored"), Ok(()));
            let Err(BlockError::HashMismatch { cid }) = verify_key(&key, b"stores") else {
                panic!("{hash}: other bytes accepted");
            };
            // Named as listed: CIDv1 raw over the key.
            assert_eq!(cid.hash(), block.cid().hash());
        }
        assert!(matches!(
            verify_key(b"\x12", b"x"),
            Err(BlockError::MalformedCid { .. })
        ));
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
