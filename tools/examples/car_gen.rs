//! Writes a CARv1 file for import benchmarks: `--kind big` is 256 KiB raw blocks,
//! `--kind mixed` blocks of 1-8 KiB alternating dag-cbor (a CBOR byte string) and dag-pb (a
//! PBNode with only Data), both valid for their codec; sha2-256, pseudo-random content
//! (seeded, so the same command gives the same file). The first block is the root.
//!
//! ```text
//! cargo run --release -p ipfrs-tools --example car_gen -- --kind big --mib 1024 --out /data/big.car
//! ipfrs-store --repo /data/r car import /data/big.car
//! ipfrs-bench -w car --car /data/big.car --backend parity-db
//! ```
//! Generated files are data: never commit them.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use ipfrs_car::CarWriter;
use ipfrs_car::varint;
use ipfrs_storage::{Block, Codec, HashAlgorithm};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Kind {
    /// 256 KiB raw blocks.
    Big,
    /// 1-8 KiB dag-cbor and dag-pb blocks.
    Mixed,
}

#[derive(Debug, Parser)]
struct Args {
    /// The block sizes and codecs.
    #[arg(long, value_enum)]
    kind: Kind,
    /// Bytes of block data to write, in MiB.
    #[arg(long, default_value_t = 1024)]
    mib: u64,
    /// The CAR file to write.
    #[arg(long)]
    out: PathBuf,
    /// Seed of the content.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn block(kind: Kind, i: u64, rng: &mut StdRng) -> Result<Block, Box<dyn std::error::Error>> {
    match kind {
        Kind::Big => {
            let mut data = vec![0u8; 256 << 10];
            rng.fill_bytes(&mut data);
            Ok(Block::new(data)?)
        }
        Kind::Mixed => {
            let len = rng.random_range(1024..=8192 - 8);
            let mut payload = vec![0u8; len];
            rng.fill_bytes(&mut payload);
            let mut data = Vec::with_capacity(len + 8);
            if i.is_multiple_of(2) {
                // CBOR major type 2 (byte string) with a 2-byte length.
                data.push(0x59);
                data.extend_from_slice(&(len as u16).to_be_bytes());
                data.extend_from_slice(&payload);
                Ok(Block::with(Codec::DagCbor, HashAlgorithm::Sha2_256, data)?)
            } else {
                // PBNode field 1 (Data), length-delimited.
                data.push(0x0a);
                varint::write(len as u64, &mut data);
                data.extend_from_slice(&payload);
                Ok(Block::with(Codec::DagPb, HashAlgorithm::Sha2_256, data)?)
            }
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let target = args.mib << 20;
    let mut rng = StdRng::seed_from_u64(args.seed);
    let first = block(args.kind, 0, &mut rng)?;
    let mut writer = CarWriter::new(
        BufWriter::with_capacity(1 << 20, File::create(&args.out)?),
        &[*first.cid()],
    )?;
    writer.write_block(first.cid(), first.data())?;
    let (mut bytes, mut blocks) = (first.len() as u64, 1u64);
    while bytes < target {
        let b = block(args.kind, blocks, &mut rng)?;
        writer.write_block(b.cid(), b.data())?;
        bytes += b.len() as u64;
        blocks += 1;
    }
    let file = writer.bytes_written();
    writer.finish()?;
    println!(
        "{}: {blocks} blocks, {:.1} MiB of blocks, {:.1} MiB file",
        args.out.display(),
        bytes as f64 / (1 << 20) as f64,
        file as f64 / (1 << 20) as f64
    );
    Ok(())
}
