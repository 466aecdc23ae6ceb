//! The cold backend as the engine's index: every value is an index entry
//! ([`ipfrs_tiering::pack`]), a small block inline or where a large one lies in a pack. These
//! are the blocking calls the shard makes through that format; they run on its blocking pool.

use bytes::Bytes;
use ipfrs_tiering::pack::{self, Entry, PackLoc};
use ipfrs_tiering::{ColdBackend, ColdDamage, DamageStage};

/// A value that is not an index entry is damage the backend did not notice (or a store of
/// another format): reported as a damaged read of that key, never served or taken as absent.
fn bad_entry(backend: &dyn ColdBackend, key: &[u8], err: pack::EntryError) -> ipfrs_tiering::Error {
    ColdDamage {
        backend: backend.kind(),
        path: std::path::PathBuf::new(),
        stage: DamageStage::Read,
        cause: format!("the entry of key {} is unreadable: {err}", hex(key)),
    }
    .into_error()
}

fn hex(key: &[u8]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

/// The entry under `key`. An inline block comes back checked by its checksum (one that fails
/// is damage), or, from a store written before inline checksums, as
/// [`Entry::InlineUnchecked`] for the caller to hash against `key`.
pub(crate) fn get(backend: &dyn ColdBackend, key: &[u8]) -> ipfrs_tiering::Result<Option<Entry>> {
    match backend.get(key)? {
        Some(value) => pack::decode(key, value)
            .map(Some)
            .map_err(|e| bad_entry(backend, key, e)),
        None => Ok(None),
    }
}

/// The block length under `key` and where it lies if packed.
pub(crate) fn locate(
    backend: &dyn ColdBackend,
    key: &[u8],
) -> ipfrs_tiering::Result<Option<(u64, Option<PackLoc>)>> {
    match backend.get(key)? {
        Some(value) => pack::peek(&value)
            .map(Some)
            .map_err(|e| bad_entry(backend, key, e)),
        None => Ok(None),
    }
}

/// The block length under `key`.
pub(crate) fn size(backend: &dyn ColdBackend, key: &[u8]) -> ipfrs_tiering::Result<Option<u64>> {
    Ok(locate(backend, key)?.map(|(len, _)| len))
}

/// The backend value of block `data` stored inline under `key` (with its checksum).
pub(crate) fn inline(key: &[u8], data: &Bytes) -> Bytes {
    pack::encode_inline(key, data)
}

/// Fault injection (tests only, the `failpoints` feature): a cold-backend read failing as an
/// EIO from the disk would make it fail.
#[cfg_attr(not(feature = "failpoints"), allow(unused_variables))]
pub(crate) fn injected_cold_read_failure(
    kind: ipfrs_core_types::BackendKind,
) -> Option<ipfrs_tiering::Error> {
    fail::fail_point!("cold-read", |_| Some(ipfrs_tiering::Error::Backend {
        backend: kind,
        source: Box::new(std::io::Error::from_raw_os_error(libc::EIO)),
    }));
    None
}
