//! What a run does: the workloads, the blocks (generated up front from a seeded RNG, so every
//! target stores the same bytes), and the operation sequences each workload replays.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use clap::ValueEnum;
use ipfrs_storage::{Block, Cid, Codec, HashAlgorithm};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, RngCore, SeedableRng};

use super::error::{BenchError, Result};

/// The workloads, in the order a round runs them (the derived `Ord`): ingest fills the store
/// the later ones read, delete empties it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, ValueEnum)]
pub enum WorkloadKind {
    /// Store every block in batches (hashing included).
    Ingest,
    /// Single gets of stored blocks, uniform at random.
    Get,
    /// `get_many` of `--batch` stored blocks per call, uniform at random.
    GetMany,
    /// `get_many` of `--batch` blocks stored one after the other (runs of
    /// [`RUN_BLOCKS`] from random starts): reading back what was written together, as a
    /// file's DAG is read. Not in the default set.
    GetManySeq,
    /// Single gets of stored blocks, zipfian (a hot set; --zipf-skew).
    GetZipf,
    /// `has` of CIDs never stored.
    HasAbsent,
    /// `has_many` of `--batch` CIDs never stored per call.
    HasManyAbsent,
    /// Gets of stored blocks and puts of new ones (--read-ratio).
    Mixed,
    /// Single puts of new blocks, one block per call, each acknowledged (with the engine's
    /// --durability; raw backends flush per call) before the lane's next call.
    Put,
    /// List every stored CID.
    Scan,
    /// Delete every ingested block in batches.
    Delete,
    /// Ingest every block of a CAR file (--car) in batches into a fresh store, each block's
    /// hash verified against its CID (hashing included, as in an import).
    Car,
}

impl WorkloadKind {
    /// What runs without `--workload`.
    pub const DEFAULT: [WorkloadKind; 9] = [
        WorkloadKind::Ingest,
        WorkloadKind::Get,
        WorkloadKind::GetMany,
        WorkloadKind::GetZipf,
        WorkloadKind::HasAbsent,
        WorkloadKind::HasManyAbsent,
        WorkloadKind::Mixed,
        WorkloadKind::Scan,
        WorkloadKind::Delete,
    ];

    /// The name in tables, JSON and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            WorkloadKind::Ingest => "ingest",
            WorkloadKind::Get => "get",
            WorkloadKind::GetMany => "get-many",
            WorkloadKind::GetManySeq => "get-many-seq",
            WorkloadKind::GetZipf => "get-zipf",
            WorkloadKind::HasAbsent => "has-absent",
            WorkloadKind::HasManyAbsent => "has-many-absent",
            WorkloadKind::Mixed => "mixed",
            WorkloadKind::Put => "put",
            WorkloadKind::Scan => "scan",
            WorkloadKind::Delete => "delete",
            WorkloadKind::Car => "car",
        }
    }

    /// Whether the workload runs for `--duration` (or `--ops`) and gets `--warmup`: the
    /// reads, mixed, and put (whose blocks are made as it goes, so it needs no fixed count).
    pub fn is_timed(self) -> bool {
        matches!(
            self,
            WorkloadKind::Get
                | WorkloadKind::GetMany
                | WorkloadKind::GetManySeq
                | WorkloadKind::GetZipf
                | WorkloadKind::HasAbsent
                | WorkloadKind::HasManyAbsent
                | WorkloadKind::Mixed
                | WorkloadKind::Put
        )
    }

    /// Whether one call carries `--batch` keys (then ops count keys, latency is per call).
    pub fn is_batched(self) -> bool {
        matches!(
            self,
            WorkloadKind::Ingest
                | WorkloadKind::GetMany
                | WorkloadKind::GetManySeq
                | WorkloadKind::HasManyAbsent
                | WorkloadKind::Delete
                | WorkloadKind::Car
        )
    }

    /// Salt of the workload's access-pattern RNG. Fixed per workload, not the variant's
    /// position, so that adding a workload leaves every other workload's op sequence (and so
    /// its figures' comparability with older reports) unchanged.
    fn salt(self) -> u64 {
        match self {
            WorkloadKind::Ingest => 0,
            WorkloadKind::Get => 1,
            WorkloadKind::GetZipf => 2,
            WorkloadKind::HasAbsent => 3,
            WorkloadKind::Mixed => 4,
            WorkloadKind::Scan => 5,
            WorkloadKind::Delete => 6,
            WorkloadKind::Car => 7,
            WorkloadKind::GetMany => 8,
            WorkloadKind::HasManyAbsent => 9,
            WorkloadKind::Put => 10,
            WorkloadKind::GetManySeq => 11,
        }
    }
}

/// The block sizes of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeSpec {
    /// Every block this many bytes, CIDv1 raw.
    Fixed(usize),
    /// What an IPFS node stores: by count, half 256 KiB raw file chunks, 30% dag-pb nodes of
    /// 256 B to 8 KiB (UnixFS directories and file roots), 20% dag-cbor nodes of 64 B to 1 KiB.
    Ipfs,
}

/// The IPFS chunker's default chunk size.
const CHUNK: usize = 256 << 10;

impl SizeSpec {
    /// The largest block this spec makes.
    pub fn max_len(self) -> usize {
        match self {
            SizeSpec::Fixed(n) => n,
            SizeSpec::Ipfs => CHUNK,
        }
    }

    /// How the spec reads in a table title.
    pub fn describe(self) -> String {
        match self {
            SizeSpec::Fixed(n) => format!("{} blocks", size_name(n)),
            SizeSpec::Ipfs => "IPFS mix (50% 256 KiB raw, 30% dag-pb 256 B-8 KiB, 20% \
                               dag-cbor 64 B-1 KiB)"
                .into(),
        }
    }

    /// The codec and length of the next block.
    fn sample(self, rng: &mut StdRng) -> (Codec, usize) {
        match self {
            SizeSpec::Fixed(n) => (Codec::Raw, n),
            SizeSpec::Ipfs => match rng.random_range(0..10u32) {
                0..5 => (Codec::Raw, CHUNK),
                5..8 => (Codec::DagPb, rng.random_range(256..=8 << 10)),
                _ => (Codec::DagCbor, rng.random_range(64..=1 << 10)),
            },
        }
    }
}

/// A size as "4 KiB", "256 KiB", "2 MiB" or "1000 B".
pub fn size_name(bytes: usize) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} B")
    }
}

/// One timed operation; block numbers index the [`Dataset`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Hash and store blocks `first..first + len` in one call.
    Ingest {
        /// First block.
        first: u32,
        /// Block count.
        len: u32,
    },
    /// Get stored block `i`.
    Get(u32),
    /// Get the blocks of sample entries `first..first + len` (see [`Dataset::sample_blocks`])
    /// in one call.
    GetMany {
        /// First sample entry.
        first: u32,
        /// Key count.
        len: u32,
    },
    /// `has` of absent CID `i`.
    HasAbsent(u32),
    /// `has` of absent CIDs `first..first + len` in one call.
    HasManyAbsent {
        /// First absent CID.
        first: u32,
        /// Key count.
        len: u32,
    },
    /// Hash and store one block `i`.
    Put(u32),
    /// Hash and store the target's next fresh block (see [`Dataset::fresh_block`]): a block
    /// no earlier call of the session stored.
    PutNew,
    /// Delete blocks `first..first + len` in one call.
    Delete {
        /// First block.
        first: u32,
        /// Block count.
        len: u32,
    },
}

/// How [`Dataset::block`] makes a block, hashing included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hashing {
    /// Generated data: hashed with sha2-256 under the span's codec.
    Generated,
    /// Blocks read from a file: verified against their own CID (any hash function and codec),
    /// as an import does.
    Verified,
}

/// Consecutive stored blocks in one run of get-many-seq's keys: 8 MiB of 32 KiB blocks, far
/// more than one batch, so batches mostly read inside one run.
pub const RUN_BLOCKS: usize = 256;

/// The blocks of a run: `stored` blocks ingested, then the blocks mixed-workload puts add;
/// one buffer sliced per block (no copy), and the CIDs computed once here so reads know them.
///
/// Batched reads take their keys as slices of lists made here (a uniform sample of stored
/// blocks, the absent CIDs), so a timed call copies no keys before it reaches the store.
pub struct Dataset {
    /// Blocks ingested by `ingest`.
    pub stored: usize,
    data: Bytes,
    /// (codec, offset in `data`, length) per block.
    spans: Vec<(Codec, usize, usize)>,
    cids: Vec<Cid>,
    absent: Vec<Cid>,
    /// Stored block numbers for the batched reads: first `random_sampled` drawn uniformly
    /// (with replacement), for get-many; then runs of consecutive ones, for get-many-seq.
    sample: Vec<u32>,
    /// Where the runs start in `sample`.
    random_sampled: usize,
    /// `cids[sample[k]]` for each `k`.
    sample_cids: Vec<Cid>,
    hashing: Hashing,
}

impl Dataset {
    /// `stored + extra` blocks drawn from `size`, `absent` CIDs never stored, a uniform
    /// sample of `sampled` stored blocks and `sequential` more in runs of consecutive ones
    /// (none if nothing is stored).
    pub fn generate(
        size: SizeSpec,
        stored: usize,
        extra: usize,
        absent: usize,
        (sampled, sequential): (usize, usize),
        seed: u64,
    ) -> Result<Dataset> {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x1bf5_da7a);
        let total = stored + extra;
        let mut spans = Vec::with_capacity(total);
        let mut offset = 0;
        for _ in 0..total {
            let (codec, len) = size.sample(&mut rng);
            spans.push((codec, offset, len));
            offset += len;
        }
        let mut data = vec![0u8; offset];
        rng.fill_bytes(&mut data);
        let data = Bytes::from(data);
        let mut cids = Vec::with_capacity(total);
        for &(codec, start, len) in &spans {
            let slice = data.slice(start..start + len);
            cids.push(*Block::with(codec, HashAlgorithm::Sha2_256, slice)?.cid());
        }
        let mut sample_rng = StdRng::seed_from_u64(seed ^ 0x5a3b_1e5a_3b1e);
        let mut sample: Vec<u32> = if stored == 0 {
            Vec::new()
        } else {
            (0..sampled)
                .map(|_| sample_rng.random_range(0..stored) as u32)
                .collect()
        };
        // Drawn after the uniform part, so that part (and get-many's figures) is unchanged.
        let random_sampled = sample.len();
        while stored > 0 && sample.len() < random_sampled + sequential {
            let start = sample_rng.random_range(0..stored);
            let end = (start + RUN_BLOCKS).min(stored);
            let room = random_sampled + sequential - sample.len();
            sample.extend((start..end).take(room).map(|i| i as u32));
        }
        let sample_cids = sample.iter().map(|&i| cids[i as usize]).collect();
        Ok(Dataset {
            stored,
            data,
            spans,
            cids,
            absent: absent_cids(absent, seed)?,
            sample,
            random_sampled,
            sample_cids,
            hashing: Hashing::Generated,
        })
    }

    /// A dataset of given blocks (a CAR file's, in file order), all stored by ingest, in one
    /// buffer of their total size; [`Dataset::block`] verifies each against its CID. Nothing
    /// is sampled or absent: only ingest runs over it.
    pub fn of_blocks(blocks: impl IntoIterator<Item = Result<Block>>) -> Result<Dataset> {
        let mut buffer = Vec::new();
        let mut spans = Vec::new();
        let mut cids = Vec::new();
        for block in blocks {
            let block = block?;
            // The span's codec serves generated hashing only; the CID carries the real one.
            spans.push((Codec::Raw, buffer.len(), block.len()));
            buffer.extend_from_slice(block.data());
            cids.push(*block.cid());
        }
        Ok(Dataset {
            stored: spans.len(),
            data: Bytes::from(buffer),
            spans,
            cids,
            absent: Vec::new(),
            sample: Vec::new(),
            random_sampled: 0,
            sample_cids: Vec::new(),
            hashing: Hashing::Verified,
        })
    }

    /// Every block, stored and extra.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Bytes of block `i`.
    pub fn data(&self, i: usize) -> Bytes {
        let (_, start, len) = self.spans[i];
        self.data.slice(start..start + len)
    }

    /// Length of block `i`.
    pub fn block_len(&self, i: usize) -> usize {
        self.spans[i].2
    }

    /// Bytes of blocks `first..first + len` together.
    pub fn bytes_of(&self, first: usize, len: usize) -> u64 {
        self.spans[first..first + len]
            .iter()
            .map(|s| s.2 as u64)
            .sum()
    }

    /// Block `i`, hashed now: the hashing is part of the timed work, as for a real ingest.
    pub fn block(&self, i: usize) -> Result<Block> {
        Ok(match self.hashing {
            Hashing::Generated => {
                Block::with(self.spans[i].0, HashAlgorithm::Sha2_256, self.data(i))?
            }
            Hashing::Verified => Block::from_parts(self.cids[i], self.data(i))?,
        })
    }

    /// The CID of block `i`.
    pub fn cid(&self, i: usize) -> &Cid {
        &self.cids[i]
    }

    /// Absent CID `i`.
    pub fn absent(&self, i: usize) -> &Cid {
        &self.absent[i]
    }

    /// Absent CIDs `first..first + len`.
    pub fn absent_run(&self, first: usize, len: usize) -> &[Cid] {
        &self.absent[first..first + len]
    }

    /// Block numbers of sample entries `first..first + len`.
    pub fn sample_blocks(&self, first: usize, len: usize) -> &[u32] {
        &self.sample[first..first + len]
    }

    /// CIDs of sample entries `first..first + len` (the CIDs of `sample_blocks`).
    pub fn sample_cids(&self, first: usize, len: usize) -> &[Cid] {
        &self.sample_cids[first..first + len]
    }

    /// Bytes of all stored blocks.
    pub fn stored_bytes(&self) -> u64 {
        self.bytes_of(0, self.stored)
    }

    /// The stored block fresh block `k` is made from (its size and codec).
    fn fresh_source(&self, k: u64) -> Result<usize> {
        if self.stored == 0 {
            return Err(BenchError::Internal(
                "the put workload needs generated blocks to copy".into(),
            ));
        }
        Ok((k % self.stored as u64) as usize)
    }

    /// Length of fresh block `k`.
    pub fn fresh_len(&self, k: u64) -> Result<usize> {
        Ok(self.block_len(self.fresh_source(k)?))
    }

    /// Fresh block `k` of the put workload, hashed now (as a caller's put is): the bytes of
    /// stored block `k % stored` with their start overwritten by [`FRESH_TAG`] and `k`, so
    /// each `k` names a block that no workload stored before, with the sizes and codecs of
    /// the stored ones. Copying rather than generating keeps an RNG's cost out of the timed
    /// call. Blocks shorter than the tag and number (12 bytes) can repeat.
    pub fn fresh_block(&self, k: u64) -> Result<Block> {
        let source = self.fresh_source(k)?;
        let mut bytes = self.data(source).to_vec();
        let mut tag = [0u8; 12];
        tag[..4].copy_from_slice(FRESH_TAG);
        tag[4..].copy_from_slice(&k.to_le_bytes());
        let n = tag.len().min(bytes.len());
        bytes[..n].copy_from_slice(&tag[..n]);
        Ok(Block::with(
            self.spans[source].0,
            HashAlgorithm::Sha2_256,
            Bytes::from(bytes),
        )?)
    }
}

/// What starts every fresh block of the put workload; generated blocks start with random
/// bytes, so a fresh block equals a generated one with probability 2^-96 at most.
const FRESH_TAG: &[u8; 4] = b"put:";

/// Numbers the fresh blocks of one session: each call takes the next number, so every put of
/// the session stores a new block, whichever lane makes it.
#[derive(Debug, Default)]
pub struct FreshBlocks {
    next: AtomicU64,
}

impl FreshBlocks {
    /// The next fresh block's number.
    pub fn take(&self) -> u64 {
        // Relaxed: the number only has to be unique, it orders nothing else.
        self.next.fetch_add(1, Ordering::Relaxed)
    }
}

/// `n` CIDs of blocks no target ever stores: sha2-256 of random 40-byte strings.
fn absent_cids(n: usize, seed: u64) -> Result<Vec<Cid>> {
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

/// Samples ranks `0..n` with probability proportional to `1 / (rank + 1)^skew`, from the
/// cumulative distribution (exact, `n` floats of memory).
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    /// The distribution over `n > 0` ranks.
    pub fn new(n: usize, skew: f64) -> Zipf {
        let mut total = 0.0;
        let mut cdf = Vec::with_capacity(n);
        for rank in 0..n {
            total += 1.0 / ((rank + 1) as f64).powf(skew);
            cdf.push(total);
        }
        for c in &mut cdf {
            *c /= total;
        }
        Zipf { cdf }
    }

    /// One rank.
    pub fn sample(&self, rng: &mut impl Rng) -> usize {
        let u: f64 = rng.random();
        self.cdf
            .partition_point(|&c| c < u)
            .min(self.cdf.len().saturating_sub(1))
    }
}

/// The operation sequence of a workload, the same for every target.
///
/// `ops` is the op count of reading workloads (a `--duration` run cycles through the list).
pub fn ops_of(
    kind: WorkloadKind,
    data: &Dataset,
    batch: usize,
    ops: usize,
    zipf_skew: f64,
    read_ratio: f64,
    seed: u64,
) -> Vec<Op> {
    let mut rng = StdRng::seed_from_u64(seed ^ (kind.salt() + 1).wrapping_mul(0x9e37_79b9));
    let n = data.stored;
    // Calls of `batch` consecutive entries of a list of `count`, the last one shorter.
    let batches = |count: usize, make: fn(u32, u32) -> Op| -> Vec<Op> {
        (0..count)
            .step_by(batch)
            .map(|first| make(first as u32, batch.min(count - first) as u32))
            .collect()
    };
    match kind {
        // Car: the same batches over the CAR file's dataset.
        WorkloadKind::Ingest | WorkloadKind::Car => {
            batches(n, |first, len| Op::Ingest { first, len })
        }
        WorkloadKind::Delete => batches(n, |first, len| Op::Delete { first, len }),
        WorkloadKind::Get => (0..ops)
            .map(|_| Op::Get(rng.random_range(0..n) as u32))
            .collect(),
        // `ops` keys (the dataset's sample / absent CIDs), `batch` per call.
        WorkloadKind::GetMany => batches(ops.min(data.random_sampled), |first, len| Op::GetMany {
            first,
            len,
        }),
        // The same over the runs after the uniform part.
        WorkloadKind::GetManySeq => {
            let start = data.random_sampled as u32;
            let runs = data.sample.len() - data.random_sampled;
            batches(ops.min(runs), |first, len| Op::GetMany { first, len })
                .into_iter()
                .map(|op| match op {
                    Op::GetMany { first, len } => Op::GetMany {
                        first: start + first,
                        len,
                    },
                    other => other,
                })
                .collect()
        }
        WorkloadKind::HasManyAbsent => batches(ops.min(data.absent.len()), |first, len| {
            Op::HasManyAbsent { first, len }
        }),
        WorkloadKind::GetZipf => {
            // Hot ranks map to blocks scattered over the store, not to the first ones ingested.
            let mut blocks: Vec<u32> = (0..n as u32).collect();
            blocks.shuffle(&mut rng);
            let zipf = Zipf::new(n, zipf_skew);
            (0..ops)
                .map(|_| Op::Get(blocks[zipf.sample(&mut rng)]))
                .collect()
        }
        WorkloadKind::HasAbsent => (0..ops).map(|i| Op::HasAbsent(i as u32)).collect(),
        // Each target numbers its fresh blocks itself, so a timed run that cycles through the
        // list, and the warm-up before it, still put a new block every call.
        WorkloadKind::Put => vec![Op::PutNew; ops],
        WorkloadKind::Mixed => {
            let extra = data.len() - n;
            let mut puts = 0;
            (0..ops)
                .map(|_| {
                    if extra == 0 || rng.random_bool(read_ratio) {
                        Op::Get(rng.random_range(0..n) as u32)
                    } else {
                        puts += 1;
                        Op::Put((n + (puts - 1) % extra) as u32)
                    }
                })
                .collect()
        }
        WorkloadKind::Scan => Vec::new(),
    }
}

/// New blocks the mixed workload puts: enough for `ops` operations, but at most a quarter of
/// the `stored` blocks (memory: every block is generated up front). Puts past them cycle
/// through them again (see `ops_of`).
pub fn mixed_extra(ops: usize, read_ratio: f64, stored: usize) -> usize {
    let expected = (ops as f64 * (1.0 - read_ratio)).ceil() as usize;
    if expected == 0 || read_ratio >= 1.0 {
        0
    } else {
        expected.min((stored / 4).max(16))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn dataset_is_fixed_by_the_seed() {
        let a = Dataset::generate(SizeSpec::Ipfs, 20, 5, 3, (9, 0), 7).unwrap();
        let b = Dataset::generate(SizeSpec::Ipfs, 20, 5, 3, (9, 0), 7).unwrap();
        let c = Dataset::generate(SizeSpec::Ipfs, 20, 5, 3, (9, 0), 8).unwrap();
        assert_eq!(a.len(), 25);
        assert_eq!(a.data(3), b.data(3));
        assert_ne!(a.data(0), c.data(0));
        for i in 0..a.len() {
            assert_eq!(a.block(i).unwrap().cid(), a.cid(i));
            assert_eq!(a.data(i).len(), a.block_len(i));
        }
        assert_eq!(
            a.stored_bytes(),
            (0..20).map(|i| a.block_len(i) as u64).sum::<u64>()
        );
        assert_eq!(a.sample_blocks(0, 9), b.sample_blocks(0, 9));
        // The sample names stored blocks only, and its CIDs are theirs.
        for (&i, cid) in a.sample_blocks(0, 9).iter().zip(a.sample_cids(0, 9)) {
            assert!((i as usize) < a.stored, "sample entry {i}");
            assert_eq!(cid, a.cid(i as usize));
        }
    }

    #[test]
    fn sample_is_uniform_over_the_stored_blocks() {
        let d = Dataset::generate(SizeSpec::Fixed(8), 10, 5, 0, (20_000, 0), 3).unwrap();
        let mut hits = [0usize; 10];
        for &i in d.sample_blocks(0, 20_000) {
            hits[i as usize] += 1;
        }
        // 2000 expected per block; a standard deviation is about 42.
        assert!(hits.iter().all(|&h| (1700..2300).contains(&h)), "{hits:?}");
        let empty = Dataset::generate(SizeSpec::Fixed(8), 0, 0, 0, (50, 0), 3).unwrap();
        assert!(empty.sample_blocks(0, 0).is_empty());
    }

    #[test]
    fn adding_workloads_keeps_the_older_op_sequences() {
        // The op sequences of these seeds as the workloads' RNG salts made them before
        // get-many and has-many-absent existed (salt = the variant's old position).
        let d = Dataset::generate(SizeSpec::Fixed(8), 1000, 0, 0, (0, 0), 1).unwrap();
        for (kind, salt) in [(WorkloadKind::Get, 1u64), (WorkloadKind::GetZipf, 2)] {
            let mut rng = StdRng::seed_from_u64(4 ^ (salt + 1).wrapping_mul(0x9e37_79b9));
            let ops = ops_of(kind, &d, 8, 50, 0.99, 0.5, 4);
            if kind == WorkloadKind::Get {
                let want: Vec<Op> = (0..50)
                    .map(|_| Op::Get(rng.random_range(0..1000) as u32))
                    .collect();
                assert_eq!(ops, want);
            } else {
                let mut blocks: Vec<u32> = (0..1000).collect();
                blocks.shuffle(&mut rng);
                let zipf = Zipf::new(1000, 0.99);
                let want: Vec<Op> = (0..50)
                    .map(|_| Op::Get(blocks[zipf.sample(&mut rng)]))
                    .collect();
                assert_eq!(ops, want);
            }
        }
    }

    #[test]
    fn fresh_blocks_are_new_and_sized_as_the_stored_ones() {
        let d = Dataset::generate(SizeSpec::Ipfs, 30, 0, 0, (0, 0), 2).unwrap();
        let stored: std::collections::HashSet<Cid> = (0..30).map(|i| *d.cid(i)).collect();
        let mut fresh = std::collections::HashSet::new();
        for k in 0..90u64 {
            let block = d.fresh_block(k).unwrap();
            let source = (k % 30) as usize;
            assert_eq!(block.len(), d.block_len(source));
            assert_eq!(d.fresh_len(k).unwrap(), block.len());
            assert_eq!(block.cid().codec(), d.cid(source).codec());
            assert!(!stored.contains(block.cid()), "fresh block {k} was stored");
            assert!(fresh.insert(*block.cid()), "fresh block {k} repeats");
            // The same number gives the same block (every target puts the same bytes).
            assert_eq!(d.fresh_block(k).unwrap().cid(), block.cid());
        }
        let counter = FreshBlocks::default();
        assert_eq!((counter.take(), counter.take()), (0, 1));
        let empty = Dataset::generate(SizeSpec::Fixed(8), 0, 0, 0, (0, 0), 2).unwrap();
        assert!(empty.fresh_block(0).is_err());
        let ops = ops_of(WorkloadKind::Put, &d, 8, 40, 0.99, 0.5, 1);
        assert_eq!(ops, vec![Op::PutNew; 40]);
        assert!(WorkloadKind::Put.is_timed() && !WorkloadKind::Put.is_batched());
        assert!(!WorkloadKind::DEFAULT.contains(&WorkloadKind::Put));
    }

    #[test]
    fn ipfs_mix_has_chunks_and_small_nodes() {
        let d = Dataset::generate(SizeSpec::Ipfs, 400, 0, 0, (0, 0), 1).unwrap();
        let chunks = (0..400).filter(|&i| d.block_len(i) == CHUNK).count();
        let small = (0..400).filter(|&i| d.block_len(i) <= 8 << 10).count();
        assert!((150..250).contains(&chunks), "{chunks} chunks");
        assert_eq!(chunks + small, 400);
        let codecs: std::collections::HashSet<u64> = (0..400).map(|i| d.cid(i).codec()).collect();
        assert_eq!(codecs.len(), 3);
    }

    #[test]
    fn absent_cids_are_distinct_and_not_stored() {
        let d = Dataset::generate(SizeSpec::Fixed(100), 50, 0, 100, (0, 0), 1).unwrap();
        let absent: std::collections::HashSet<_> = (0..100).map(|i| *d.absent(i)).collect();
        assert_eq!(absent.len(), 100);
        assert!((0..50).all(|i| !absent.contains(d.cid(i))));
    }

    #[test]
    fn zipf_prefers_low_ranks_and_zero_skew_is_uniform() {
        let mut rng = StdRng::seed_from_u64(3);
        let hot = Zipf::new(1000, 1.2);
        let draws: Vec<usize> = (0..10_000).map(|_| hot.sample(&mut rng)).collect();
        assert!(draws.iter().all(|&r| r < 1000));
        let top10 = draws.iter().filter(|&&r| r < 10).count();
        assert!(top10 > 5_000, "{top10} of 10000 in the top 10");
        let flat = Zipf::new(1000, 0.0);
        let top10 = (0..10_000).filter(|_| flat.sample(&mut rng) < 10).count();
        assert!(top10 < 300, "{top10} of 10000 in the top 10 at skew 0");
    }

    /// get-many-seq reads runs of consecutive stored blocks, after the uniform sample, which
    /// it leaves as it was (get-many's figures stay comparable with older reports).
    #[test]
    fn get_many_seq_reads_consecutive_blocks_and_leaves_the_uniform_sample_alone() {
        let (stored, ops, batch) = (5000, 1000, 32);
        let plain = Dataset::generate(SizeSpec::Fixed(8), stored, 0, 0, (ops, 0), 4).unwrap();
        let both = Dataset::generate(SizeSpec::Fixed(8), stored, 0, 0, (ops, ops), 4).unwrap();
        assert_eq!(plain.sample_blocks(0, ops), both.sample_blocks(0, ops));
        let calls = ops_of(WorkloadKind::GetManySeq, &both, batch, ops, 0.99, 0.5, 1);
        assert_eq!(calls.len(), ops.div_ceil(batch));
        let mut breaks = 0;
        for op in calls {
            let Op::GetMany { first, len } = op else {
                panic!("{op:?}");
            };
            assert!(first as usize >= ops, "reads the uniform part: {first}");
            let blocks = both.sample_blocks(first as usize, len as usize);
            assert!(blocks.iter().all(|&b| (b as usize) < stored));
            // Within a call, one block after the other, but where a run ends.
            breaks += blocks.windows(2).filter(|w| w[1] != w[0] + 1).count();
        }
        // 1000 keys in runs of 256: at most a break per run (4), and none otherwise.
        assert!(breaks <= ops.div_ceil(RUN_BLOCKS), "{breaks} breaks");
    }

    proptest::proptest! {
        /// Ingest and delete batches cover every stored block exactly once, in order, and no
        /// read op names a block or absent CID outside the dataset.
        #[test]
        fn batches_partition_the_store(stored in 1usize..200, batch in 1usize..70, ops in 1usize..300) {
            let d = Dataset::generate(SizeSpec::Fixed(8), stored, 3, ops, (ops, ops), 5).unwrap();
            // Batched workloads: ingest and delete cover the store, get-many and
            // has-many-absent cover their `ops` keys.
            for (kind, keys) in [
                (WorkloadKind::Ingest, stored),
                (WorkloadKind::Delete, stored),
                (WorkloadKind::GetMany, ops),
                (WorkloadKind::HasManyAbsent, ops),
            ] {
                proptest::prop_assert!(kind.is_batched());
                let mut next = 0;
                for op in ops_of(kind, &d, batch, ops, 0.99, 0.5, 1) {
                    let (first, len) = match (kind, op) {
                        (WorkloadKind::Ingest, Op::Ingest { first, len })
                        | (WorkloadKind::Delete, Op::Delete { first, len })
                        | (WorkloadKind::GetMany, Op::GetMany { first, len })
                        | (WorkloadKind::HasManyAbsent, Op::HasManyAbsent { first, len }) => {
                            (first, len)
                        }
                        (_, other) => panic!("{other:?} in {kind:?}"),
                    };
                    proptest::prop_assert_eq!(first as usize, next);
                    proptest::prop_assert!(len >= 1 && len as usize <= batch);
                    next += len as usize;
                }
                proptest::prop_assert_eq!(next, keys);
            }
            for &i in d.sample_blocks(0, ops) {
                proptest::prop_assert!((i as usize) < stored);
            }
            for kind in [WorkloadKind::Get, WorkloadKind::GetZipf, WorkloadKind::HasAbsent, WorkloadKind::Mixed] {
                proptest::prop_assert!(!kind.is_batched() && kind.is_timed());
                let list = ops_of(kind, &d, batch, ops, 0.99, 0.5, 1);
                proptest::prop_assert_eq!(list.len(), ops);
                for op in list {
                    let ok = match op {
                        Op::Get(i) => (i as usize) < stored,
                        Op::Put(i) => (stored..d.len()).contains(&(i as usize)),
                        Op::HasAbsent(i) => (i as usize) < ops,
                        _ => false,
                    };
                    proptest::prop_assert!(ok, "{:?} in {:?}", op, kind);
                }
            }
        }
    }

    #[test]
    fn op_sequences_cover_the_store() {
        assert_eq!(mixed_extra(200, 0.5, 1000), 100);
        assert_eq!(mixed_extra(200, 0.5, 100), 25);
        assert_eq!(mixed_extra(200, 1.0, 100), 0);
        let d = Dataset::generate(SizeSpec::Fixed(10), 100, 25, 200, (200, 0), 1).unwrap();
        let ingest = ops_of(WorkloadKind::Ingest, &d, 32, 200, 1.0, 0.5, 1);
        assert_eq!(ingest.len(), 4);
        assert_eq!(ingest[3], Op::Ingest { first: 96, len: 4 });
        let mixed = ops_of(WorkloadKind::Mixed, &d, 32, 200, 1.0, 0.5, 1);
        assert_eq!(mixed.len(), 200);
        let puts: Vec<u32> = mixed
            .iter()
            .filter_map(|op| match op {
                Op::Put(i) => Some(*i),
                _ => None,
            })
            .collect();
        assert!((60..140).contains(&puts.len()), "{} puts", puts.len());
        // Puts store the new blocks in turn, cycling through the 25 of them.
        for (k, &i) in puts.iter().enumerate() {
            assert_eq!(i as usize, 100 + k % 25);
        }
        assert!(mixed.iter().all(|op| match op {
            Op::Get(i) => (*i as usize) < d.stored,
            _ => true,
        }));
    }
}
