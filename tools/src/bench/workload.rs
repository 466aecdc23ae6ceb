//! The data of a run: block contents generated up front from a seeded RNG, and the CIDs of
//! blocks that are never stored.

use bytes::Bytes;
use ipfrs_storage::{Block, Cid};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use super::cli::SizeClass;
use super::error::Result;

/// The blocks of one size class, as one buffer sliced into blocks (no copy per block).
///
/// The contents are fixed by the seed, so every target stores the same blocks. Hashing is not
/// done here: targets build their `Block`s (sha2-256) inside the timed ingest.
pub struct Workload {
    /// The size class.
    pub class: SizeClass,
    data: Bytes,
}

impl Workload {
    /// Generates `class.count` random blocks of `class.size` bytes.
    pub fn generate(class: SizeClass, seed: u64) -> Workload {
        let mut rng = StdRng::seed_from_u64(seed ^ (class.size as u64).rotate_left(32));
        let mut data = vec![0u8; class.count * class.size];
        rng.fill_bytes(&mut data);
        Workload {
            class,
            data: Bytes::from(data),
        }
    }

    /// The bytes of block `i` (`i < count`).
    pub fn block(&self, i: usize) -> Bytes {
        let size = self.class.size;
        self.data.slice(i * size..(i + 1) * size)
    }

    /// The bytes of blocks `range`.
    pub fn blocks(&self, range: std::ops::Range<usize>) -> Vec<Bytes> {
        range.map(|i| self.block(i)).collect()
    }
}

/// `n` CIDs of blocks no target ever stores: sha2-256 of random 40-byte strings.
pub fn absent_cids(n: usize, seed: u64) -> Result<Vec<Cid>> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0xab5e_17c1_d5ee_d000);
    let mut cids = Vec::with_capacity(n);
    for _ in 0..n {
        let mut data = [0u8; 40];
        rng.fill_bytes(&mut data);
        data[..7].copy_from_slice(b"absent:");
        cids.push(*Block::new(data.to_vec())?.cid());
    }
    Ok(cids)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn workload_is_fixed_by_the_seed() {
        let class = SizeClass {
            size: 100,
            count: 5,
        };
        let a = Workload::generate(class, 7);
        let b = Workload::generate(class, 7);
        let c = Workload::generate(class, 8);
        assert_eq!(a.blocks(0..5), b.blocks(0..5));
        assert_ne!(a.block(0), c.block(0));
        assert_ne!(a.block(0), a.block(1));
        assert_eq!(a.block(4).len(), 100);
    }

    #[test]
    fn absent_cids_are_distinct() {
        let cids = absent_cids(100, 1).unwrap();
        let set: std::collections::HashSet<_> = cids.iter().collect();
        assert_eq!(set.len(), 100);
    }
}
