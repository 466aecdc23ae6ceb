//! The CAR files of `--workload car`: which blocks each holds, and its bytes.
//!
//! A file is a function of the child's random stream and of what the child knows is stored:
//! fresh blocks (most of it), blocks the store holds already (stored by puts or earlier
//! imports, which a rollback must never remove), now and then a block the child deleted
//! earlier or one section twice, in a shuffled order. About one file in four is faulty: a
//! block whose bytes do not hash to its CID, or the file cut inside a section, always past
//! the first quarter so that earlier batches are stored (and journaled) before the import
//! fails. Every section's block is [`block`] of its index, so the parent can rebuild it.

use std::fmt;
use std::io::ErrorKind;
use std::path::Path;

use ipfrs_car::{CarError, CarWriter};
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::import::ImportOptions;
use crate::torture::workload::{MAX_BLOCK, block};

/// Fresh blocks in a file at most: with blocks of 9 KiB on average, a file of up to about
/// 3 MiB, big enough for a few dozen batches yet quick to hash in a debug build.
const MAX_FRESH: u64 = 320;

/// What is wrong with a faulty file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The section at this position carries bytes that do not hash to its CID.
    Corrupt(usize),
    /// The file ends inside the section at this position.
    Truncated(usize),
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Corrupt(at) => write!(f, "a corrupt block at section {at}"),
            Fault::Truncated(at) => write!(f, "a cut inside section {at}"),
        }
    }
}

/// One generated file.
#[derive(Debug, Clone)]
pub struct CarFile {
    /// The block index of each section, in file order (an index may repeat).
    pub indices: Vec<u64>,
    /// Fresh indices it uses: `next..next + fresh`.
    pub fresh: u64,
    /// Its fault, if any (then the import must fail and roll back).
    pub fault: Option<Fault>,
    /// How the import runs: small batches, so that a file is many journal records and
    /// `put_many` calls, and a kill lands between or inside them.
    pub options: ImportOptions,
}

/// Plans a file of fresh blocks from `next`, some of `stored` (blocks the store may hold)
/// and perhaps one of `deleted` (blocks this child deleted).
pub fn plan(rng: &mut StdRng, next: u64, stored: &[u64], deleted: &[u64]) -> CarFile {
    let fresh = match rng.random_range(0..100u32) {
        0..70 => rng.random_range(1..=40),
        70..95 => rng.random_range(40..=160),
        _ => rng.random_range(160..=MAX_FRESH),
    };
    let mut indices: Vec<u64> = (next..next + fresh).collect();
    if !stored.is_empty() {
        let shared = rng.random_range(0..=(fresh as usize / 3 + 1).min(stored.len()));
        indices.extend((0..shared).map(|_| stored[rng.random_range(0..stored.len())]));
    }
    if !deleted.is_empty() && rng.random_range(0..10u32) < 3 {
        indices.push(deleted[rng.random_range(0..deleted.len())]);
    }
    if rng.random_range(0..10u32) == 0 {
        let again = indices[rng.random_range(0..indices.len())];
        indices.push(again);
    }
    indices.shuffle(rng);
    let n = indices.len();
    // Past the first quarter, so earlier batches are stored before the import fails.
    let roll = rng.random_range(0..100u32);
    let at = rng.random_range(n / 4..n);
    let fault = match roll {
        0..16 => Some(Fault::Corrupt(at)),
        16..24 => Some(Fault::Truncated(at)),
        _ => None,
    };
    let options = ImportOptions {
        max_block_size: MAX_BLOCK,
        // Raised by the import to one batch and one block: batches queue, but few.
        window_bytes: 0,
        batch_bytes: rng.random_range(16 << 10..=512 << 10),
        batch_blocks: rng.random_range(2..=64),
        hash_threads: 2,
        store_threads: 2,
    };
    CarFile {
        indices,
        fresh,
        fault,
        options,
    }
}

impl CarFile {
    /// The file's bytes (CARv1, its first block as the root).
    pub fn bytes(&self) -> Result<Vec<u8>, CarError> {
        let first = block(self.indices[0]);
        let mut writer = CarWriter::new(Vec::new(), &[*first.cid()])?;
        let mut cut = None;
        for (at, &index) in self.indices.iter().enumerate() {
            let b = block(index);
            match self.fault {
                Some(Fault::Corrupt(bad)) if bad == at => {
                    let mut data = b.data().to_vec();
                    if let Some(last) = data.last_mut() {
                        *last ^= 0x5A;
                    }
                    writer.write_block(b.cid(), &data)?;
                }
                Some(Fault::Truncated(bad)) if bad == at => {
                    writer.write_block(b.cid(), b.data())?;
                    // Inside the block's bytes: the section is framed, its data short.
                    let end = usize::try_from(writer.bytes_written()).unwrap_or(usize::MAX);
                    cut = Some(end - 1 - b.len() / 2);
                    break;
                }
                _ => writer.write_block(b.cid(), b.data())?,
            }
        }
        let mut bytes = writer.finish()?;
        if let Some(cut) = cut {
            bytes.truncate(cut);
        }
        Ok(bytes)
    }
}

/// The journals in `dir` (a missing directory holds none).
pub fn journals(dir: &Path) -> std::io::Result<usize> {
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            let mut n = 0;
            for entry in entries {
                n += usize::from(entry?.path().extension().is_some_and(|x| x == "journal"));
            }
            Ok(n)
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rand::SeedableRng;

    /// Valid files read back block for block; faulty ones fail where planned, after the
    /// blocks before the fault.
    #[test]
    fn files_hold_their_blocks_and_faults_land_where_planned() {
        let mut rng = StdRng::seed_from_u64(7);
        let (mut valid, mut corrupt, mut truncated) = (0, 0, 0);
        for round in 0..120u64 {
            let stored: Vec<u64> = (0..round).collect();
            let file = plan(&mut rng, 1000 + round * 400, &stored, &[3]);
            let bytes = file.bytes().unwrap();
            let mut read = Vec::new();
            let mut failed = false;
            for b in ipfrs_car::read(bytes.as_slice()).unwrap() {
                match b {
                    Ok(b) => read.push(b),
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
            let stop = match file.fault {
                None => {
                    valid += 1;
                    file.indices.len()
                }
                Some(Fault::Corrupt(at)) => {
                    corrupt += 1;
                    at
                }
                Some(Fault::Truncated(at)) => {
                    truncated += 1;
                    at
                }
            };
            assert_eq!(failed, file.fault.is_some(), "{:?}", file.fault);
            assert_eq!(read.len(), stop, "{:?}", file.fault);
            for (b, &i) in read.iter().zip(&file.indices) {
                assert_eq!((b.cid(), b.data()), (block(i).cid(), block(i).data()));
            }
        }
        assert!(valid > 60 && corrupt > 5 && truncated > 3);
    }
}
