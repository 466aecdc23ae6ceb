//! The CARv1 header (DAG-CBOR) and the CARv2 fixed header.

use ipfrs_core_types::Cid;
use serde::{Deserialize, Serialize};

use crate::error::HeaderFault;

/// The CAR format version of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CarVersion {
    /// CARv1: header and sections.
    V1,
    /// CARv2: pragma, fixed header, a CARv1 payload, optional index.
    V2,
}

/// A CAR file's header: its roots, and for CARv2 the fixed header too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarHeader {
    /// The format version.
    pub version: CarVersion,
    /// The roots listed in the (inner) CARv1 header.
    pub roots: Vec<Cid>,
    /// The CARv2 fixed header, for CARv2 files.
    pub v2: Option<V2Header>,
}

/// The 40-byte CARv2 header that follows the pragma.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V2Header {
    /// Characteristics bitfield (bit 0 of the first byte: fully indexed).
    pub characteristics: u128,
    /// Offset of the CARv1 payload from the start of the file.
    pub data_offset: u64,
    /// Length of the CARv1 payload.
    pub data_size: u64,
    /// Offset of the index, 0 when absent.
    pub index_offset: u64,
}

/// The CARv2 pragma: a CARv1 header `{version: 2}` with its length prefix.
pub(crate) const V2_PRAGMA: [u8; 11] = [
    0x0a, 0xa1, 0x67, b'v', b'e', b'r', b's', b'i', b'o', b'n', 0x02,
];
/// Size of the CARv2 fixed header.
pub(crate) const V2_HEADER_LEN: usize = 40;

impl V2Header {
    pub(crate) fn decode(bytes: &[u8; V2_HEADER_LEN]) -> V2Header {
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let mut c = [0u8; 16];
        c.copy_from_slice(&bytes[..16]);
        V2Header {
            characteristics: u128::from_be_bytes(c),
            data_offset: u64_at(16),
            data_size: u64_at(24),
            index_offset: u64_at(32),
        }
    }

    pub(crate) fn encode(&self) -> [u8; V2_HEADER_LEN] {
        let mut out = [0u8; V2_HEADER_LEN];
        out[..16].copy_from_slice(&self.characteristics.to_be_bytes());
        out[16..24].copy_from_slice(&self.data_offset.to_le_bytes());
        out[24..32].copy_from_slice(&self.data_size.to_le_bytes());
        out[32..40].copy_from_slice(&self.index_offset.to_le_bytes());
        out
    }
}

/// The CARv1 header as DAG-CBOR. Field order matters for encoding: DAG-CBOR sorts map keys by
/// length, so `roots` comes before `version`. `roots` is absent in the CARv2 pragma.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct V1Header {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roots: Option<Vec<Cid>>,
    pub version: u64,
}

impl V1Header {
    pub(crate) fn decode(bytes: &[u8]) -> Result<V1Header, HeaderFault> {
        serde_ipld_dagcbor::from_slice(bytes).map_err(HeaderFault::Decode)
    }

    pub(crate) fn encode(roots: &[Cid]) -> Result<Vec<u8>, HeaderFault> {
        let header = V1Header {
            roots: Some(roots.to_vec()),
            version: 1,
        };
        serde_ipld_dagcbor::to_vec(&header).map_err(HeaderFault::Encode)
    }
}
