//! The `car` workload's data: every block of a CAR file (`--car`), read with the streaming
//! CAR reader (one section in memory at a time, each block verified) into one buffer.
//!
//! The engine imports the file itself, through `ipfrs-store car import`'s path (see
//! `Session::import_car`): what an ingestion node runs, reading and parsing included. The
//! raw backends and the ceilings replay the blocks from memory, so every target stores the
//! same bytes. So the file's blocks must fit in memory: a file over [`MAX_CAR_BYTES`] is
//! refused before anything is read, and the buffer is the size of the blocks (less than
//! the file).

use std::path::Path;

use ipfrs_car::{self as car, ReadOptions};
use ipfrs_storage::Config;

use super::error::{BenchError, Result};
use super::workload::Dataset;

/// The largest CAR file the workload loads: its blocks are held in memory for the run.
pub const MAX_CAR_BYTES: u64 = 2 << 30;

/// Checks that `path` is a readable file of at most [`MAX_CAR_BYTES`]; returns its size.
pub fn check(path: &Path) -> Result<u64> {
    let meta = std::fs::metadata(path).map_err(|e| BenchError::io("cannot read --car", path, e))?;
    if !meta.is_file() {
        return Err(BenchError::Usage(format!(
            "--car {} is not a file",
            path.display()
        )));
    }
    if meta.len() > MAX_CAR_BYTES {
        return Err(BenchError::Usage(format!(
            "--car {} is {} MiB: the car workload holds the file's blocks in memory and takes \
             at most {} MiB",
            path.display(),
            meta.len() >> 20,
            MAX_CAR_BYTES >> 20
        )));
    }
    Ok(meta.len())
}

/// Reads every block of the CAR file at `path` (CARv1 or CARv2), verified, in file order.
/// Blocks over the engine's default size limit are refused here, with the offset, rather
/// than by a target in the middle of a round.
pub fn load(path: &Path) -> Result<Dataset> {
    check(path)?;
    let file =
        std::fs::File::open(path).map_err(|e| BenchError::io("cannot open --car", path, e))?;
    let bad = |e: car::CarError| BenchError::Car(format!("{}: {e}", path.display()));
    let options = ReadOptions {
        max_block_size: Config::new(".").max_block_size,
    };
    let reader = car::read_with(file, options).map_err(bad)?;
    let data = Dataset::of_blocks(reader.map(|b| b.map_err(bad)))?;
    if data.stored == 0 {
        return Err(BenchError::Car(format!(
            "{}: the file holds no blocks",
            path.display()
        )));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use ipfrs_storage::Block;

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/car")
            .join(name)
    }

    #[test]
    fn loads_every_block_verified_and_in_order() {
        let data = load(&fixture("sample-v1.car")).unwrap();
        assert_eq!(data.stored, 1049);
        let file = std::fs::File::open(fixture("sample-v1.car")).unwrap();
        let want: Vec<Block> = car::read(file).unwrap().map(|b| b.unwrap()).collect();
        for (i, block) in want.iter().enumerate() {
            assert_eq!(data.cid(i), block.cid());
            assert_eq!(&data.data(i), block.data());
            // The dataset's blocks are verified against their own (blake2b) CIDs.
            assert_eq!(&data.block(i).unwrap(), block);
        }
        let total: u64 = want.iter().map(|b| b.len() as u64).sum();
        assert_eq!(data.stored_bytes(), total);
        // The CARv2 wrapping of the same payload gives the same dataset.
        let v2 = load(&fixture("sample-wrapped-v2.car")).unwrap();
        assert_eq!(v2.stored, 1049);
        assert_eq!(v2.data(7), data.data(7));
    }

    #[test]
    fn bad_files_are_one_line_errors() {
        for name in ["badsectionlength.car", "sample-corrupt-pragma.car"] {
            let Err(err) = load(&fixture(name)) else {
                panic!("{name} loaded");
            };
            let text = err.to_string();
            assert!(matches!(err, BenchError::Car(_)), "{name}: {text}");
            assert!(text.contains(name) && !text.contains('\n'), "{text}");
        }
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(check(dir.path()), Err(BenchError::Usage(_))));
        let missing = dir.path().join("missing.car");
        assert!(matches!(check(&missing), Err(BenchError::Io { .. })));
    }
}
