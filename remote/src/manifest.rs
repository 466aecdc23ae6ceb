//! A shard's manifest: the packs that make up its cold tier at one generation.
//!
//! ```text
//! <prefix>/shard-NNN/manifests/GGGGGGGGGGGGGGGG    generation G, written once, create-only
//!
//! magic "IPFman02" | shard u32 | generation u64 | count u32 | entries
//!                  | dead_count u32 | dead entries | xxh3-64 of all before             (LE)
//! entry: pack u32 | pack_len u64 | pack_xxh3 u64 | hint_len u32
//! dead:  pack u32 | offset u32   (a record of a listed pack that is no longer live)
//! ```
//! Why: an object store has no rename and no append, so the list of live packs cannot be one
//! object updated in place. Each change is a new generation written create-only; the highest
//! generation is the truth, and a pack is deleted only once a generation that no longer lists
//! it is durable (and a grace period has passed for readers of the older one). The digest of
//! each pack lets a replica or `verify` check a downloaded pack as a whole; each record in it
//! still checks itself.
//!
//! The dead records are what a pack's hint cannot say: a block deleted (or moved) after its
//! pack was sealed. A replica that builds its index from the hints skips them, so it does not
//! serve a block the writer deleted; a pack's dead records leave the list with the pack.

use xxhash_rust::xxh3::xxh3_64;

use crate::error::{RemoteError, Result};

const MAGIC: &[u8; 8] = b"IPFman02";
const HEADER_LEN: usize = 8 + 4 + 8 + 4;
const ENTRY_LEN: usize = 4 + 8 + 8 + 4;
const DEAD_LEN: usize = 4 + 4;

/// One pack as a manifest lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackEntry {
    /// The pack's number in its shard.
    pub pack: u32,
    /// The pack's length in bytes.
    pub pack_len: u64,
    /// xxh3-64 of the pack's bytes.
    pub pack_xxh3: u64,
    /// The hint file's length in bytes.
    pub hint_len: u32,
}

/// The packs of one shard at one generation, in pack order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The shard.
    pub shard: u32,
    /// The generation: one more than the one it replaces.
    pub generation: u64,
    /// The live packs, ascending by number, each once.
    pub packs: Vec<PackEntry>,
    /// Records of listed packs that are no longer live, as (pack, offset), ascending, each
    /// once.
    pub dead: Vec<(u32, u32)>,
}

impl Manifest {
    /// The manifest's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            HEADER_LEN + self.packs.len() * ENTRY_LEN + 4 + self.dead.len() * DEAD_LEN + 8,
        );
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.shard.to_le_bytes());
        out.extend_from_slice(&self.generation.to_le_bytes());
        let count = u32::try_from(self.packs.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&count.to_le_bytes());
        for p in &self.packs {
            out.extend_from_slice(&p.pack.to_le_bytes());
            out.extend_from_slice(&p.pack_len.to_le_bytes());
            out.extend_from_slice(&p.pack_xxh3.to_le_bytes());
            out.extend_from_slice(&p.hint_len.to_le_bytes());
        }
        let dead = u32::try_from(self.dead.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&dead.to_le_bytes());
        for (pack, offset) in &self.dead {
            out.extend_from_slice(&pack.to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
        }
        let sum = xxh3_64(&out);
        out.extend_from_slice(&sum.to_le_bytes());
        out
    }

    /// Decodes the manifest at `path` (named in errors), refusing any byte that fails its
    /// checks: magic, length, checksum, packs out of order.
    pub fn decode(path: &str, bytes: &[u8]) -> Result<Manifest> {
        let damaged = |reason: &str| RemoteError::Damaged {
            path: path.to_owned(),
            reason: reason.to_owned(),
        };
        if bytes.len() < HEADER_LEN + 4 + 8 || &bytes[..8] != MAGIC {
            return Err(damaged("not a manifest (magic or length)"));
        }
        let (body, sum) = bytes.split_at(bytes.len() - 8);
        if xxh3_64(body).to_le_bytes() != sum {
            return Err(damaged("checksum mismatch"));
        }
        let u32_at = |at: usize| u32::from_le_bytes(body[at..at + 4].try_into().unwrap_or([0; 4]));
        let u64_at = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().unwrap_or([0; 8]));
        let count = u32_at(20) as usize;
        let dead_at = HEADER_LEN + count * ENTRY_LEN;
        if body.len() < dead_at + 4 {
            return Err(damaged("length does not match the pack count"));
        }
        let dead_count = u32_at(dead_at) as usize;
        if body.len() != dead_at + 4 + dead_count * DEAD_LEN {
            return Err(damaged("length does not match the counts"));
        }
        let dead: Vec<(u32, u32)> = (0..dead_count)
            .map(|i| {
                let at = dead_at + 4 + i * DEAD_LEN;
                (u32_at(at), u32_at(at + 4))
            })
            .collect();
        if dead.windows(2).any(|w| w[0] >= w[1]) {
            return Err(damaged("dead records not in ascending order"));
        }
        let packs: Vec<PackEntry> = (0..count)
            .map(|i| {
                let at = HEADER_LEN + i * ENTRY_LEN;
                PackEntry {
                    pack: u32_at(at),
                    pack_len: u64_at(at + 4),
                    pack_xxh3: u64_at(at + 12),
                    hint_len: u32_at(at + 20),
                }
            })
            .collect();
        if packs.windows(2).any(|w| w[0].pack >= w[1].pack) {
            return Err(damaged("packs not in ascending order"));
        }
        Ok(Manifest {
            shard: u32_at(8),
            generation: u64_at(12),
            packs,
            dead,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn sample() -> Manifest {
        Manifest {
            shard: 3,
            generation: 17,
            packs: (0..5)
                .map(|i| PackEntry {
                    pack: i * 2 + 1,
                    pack_len: 64 << 20 | u64::from(i),
                    pack_xxh3: 0x1234_5678_9abc_def0 ^ u64::from(i),
                    hint_len: 4096 + i,
                })
                .collect(),
            dead: vec![(1, 0), (1, 4096), (3, 128)],
        }
    }

    #[test]
    fn round_trips() {
        let m = sample();
        assert_eq!(Manifest::decode("m", &m.encode()).unwrap(), m);
        let empty = Manifest {
            shard: 0,
            generation: 0,
            packs: vec![],
            dead: vec![],
        };
        assert_eq!(Manifest::decode("m", &empty.encode()).unwrap(), empty);
    }

    #[test]
    fn every_flipped_bit_and_every_truncation_is_refused() {
        let bytes = sample().encode();
        for bit in 0..bytes.len() * 8 {
            let mut bad = bytes.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(
                matches!(
                    Manifest::decode("m", &bad),
                    Err(RemoteError::Damaged { .. })
                ),
                "bit {bit}"
            );
        }
        for len in 0..bytes.len() {
            assert!(
                Manifest::decode("m", &bytes[..len]).is_err(),
                "length {len}"
            );
        }
    }

    #[test]
    fn packs_out_of_order_are_refused_even_with_a_valid_checksum() {
        let mut m = sample();
        m.packs.swap(1, 2);
        let err = Manifest::decode("m", &m.encode()).unwrap_err();
        assert!(err.to_string().contains("ascending"), "{err}");
    }

    #[test]
    fn dead_records_out_of_order_are_refused() {
        let mut m = sample();
        m.dead.swap(0, 1);
        let err = Manifest::decode("m", &m.encode()).unwrap_err();
        assert!(err.to_string().contains("dead records"), "{err}");
    }
}
