//! The cold backends, one file each, and [`open_backend`] to open one by kind.

mod damaged;
mod guard;
mod paritydb;
#[cfg(feature = "rocksdb")]
mod rocksdb;
mod sled;

use std::path::Path;
use std::sync::Arc;

use ipfrs_core_types::BackendKind;

pub use self::damaged::{DamagedBackend, damage_of_open_error, is_damage, resume_after_damage};
pub use self::guard::{PanicGuard, panic_message};
pub use self::paritydb::ParityDbBackend;
#[cfg(feature = "rocksdb")]
pub use self::rocksdb::RocksDbBackend;
pub use self::sled::SledBackend;
use crate::{BackendOptions, ColdBackend, ColdDamage, Error, Result};

/// Whether this build includes `kind`.
pub const fn is_compiled(kind: BackendKind) -> bool {
    match kind {
        BackendKind::Sled | BackendKind::ParityDb => true,
        BackendKind::RocksDb => cfg!(feature = "rocksdb"),
    }
}

/// The backends this build includes.
pub fn compiled() -> Vec<BackendKind> {
    BackendKind::ALL
        .into_iter()
        .filter(|k| is_compiled(*k))
        .collect()
}

/// Opens (creating if needed) the backend of `kind` in directory `dir`.
///
/// The backend comes wrapped in [`PanicGuard`]: a panic of the library, in the open or in
/// any later call, is returned as [`Error::Backend`] instead of unwinding into the caller.
pub fn open_backend(
    kind: BackendKind,
    dir: &Path,
    options: &BackendOptions,
) -> Result<Box<dyn ColdBackend>> {
    std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
    guard::guarded(kind, "open", || match kind {
        BackendKind::Sled => Ok(guard_box(SledBackend::open(dir, options)?)),
        BackendKind::ParityDb => Ok(guard_box(ParityDbBackend::open(dir, options)?)),
        #[cfg(feature = "rocksdb")]
        BackendKind::RocksDb => Ok(guard_box(RocksDbBackend::open(dir, options)?)),
        #[cfg(not(feature = "rocksdb"))]
        BackendKind::RocksDb => Err(Error::NotCompiled(kind)),
    })
}

/// Opens the backend like [`open_backend`], but a backend whose files are damaged still
/// opens: as a [`DamagedBackend`] that fails every read with the damage, which comes back
/// beside it. Failures that are not the files' fault (see [`damage_of_open_error`]) are
/// still errors.
pub fn open_or_damaged(
    kind: BackendKind,
    dir: &Path,
    options: &BackendOptions,
) -> Result<(Box<dyn ColdBackend>, Option<ColdDamage>)> {
    match open_backend(kind, dir, options) {
        Ok(backend) => match backend.damage_at_open() {
            None => Ok((backend, None)),
            Some(damage) => Ok((
                Box::new(DamagedBackend::walked(Arc::from(backend), damage.clone())),
                Some(damage),
            )),
        },
        Err(err) => match damage_of_open_error(kind, dir, &err) {
            Some(damage) => Ok((
                Box::new(DamagedBackend::unopenable(damage.clone())),
                Some(damage),
            )),
            None => Err(err),
        },
    }
}

fn guard_box(backend: impl ColdBackend) -> Box<dyn ColdBackend> {
    Box::new(PanicGuard::new(backend))
}
