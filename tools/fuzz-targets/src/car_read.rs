//! CAR files from outside: the streaming reader of ipfrs-car, the whole-file decoder of
//! ipfrs-versioning built on it (`decode_car`, used by `import_car`, with its own block
//! limit) and the link extractors of ipfrs-tools.
//!
//! A CAR file comes from the network or a user; no input may panic either reader, and their
//! memory stays bounded by their limits, not by lengths the file claims (the CI run passes
//! `-malloc_limit_mb`, so one oversized allocation is a crash).
//!
//! The first input byte picks the mode:
//! - bit 0 clear (raw): the rest is the file. Both readers run on it; when both accept it
//!   whole they must agree on the roots and the blocks. The link extractors run on the same
//!   bytes as a dag-cbor and as a dag-pb block.
//! - bit 0 set (structured): the rest describes blocks (codec, hash, bytes), written with the
//!   real CARv1 (bit 1 clear) or CARv2 (bit 1 set) writer. Reading back must give exactly
//!   those blocks. Then the tail of the input damages the file, and a second read must still
//!   give every block that lies wholly before the first damaged byte, unchanged. Blocks must
//!   verify against their hashes, which random bytes almost never do, so this mode is what
//!   takes the reader past the first section.

use std::io::Cursor;

use cid::Cid;
use ipfrs_car::{CarError, CarV2Writer, CarWriter, read};
use ipfrs_storage::{Block, Codec, HashAlgorithm};
use ipfrs_tools::car::links;

/// Runs the `car_read` target on one input: neither CAR reader panics, both agree on files
/// both accept, written files read back exactly and damage never hides earlier blocks.
///
/// # Panics
/// When an invariant of the module doc does not hold (that is the finding).
pub fn car_read(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        raw(rest);
    } else {
        structured(rest, mode & 2 != 0);
    }
}

/// Reads everything the streaming reader yields: the roots (if the header reads), the blocks
/// before the first error, and that error.
fn read_all(bytes: &[u8]) -> (Option<Vec<Cid>>, Vec<Block>, Option<CarError>) {
    let reader = match read(bytes) {
        Ok(reader) => reader,
        Err(e) => return (None, Vec::new(), Some(e)),
    };
    let roots = reader.header().roots.clone();
    let mut blocks = Vec::new();
    let mut error = None;
    let mut last_offset = 0;
    let mut reader = reader;
    // Not a `for`: the loop reads the reader's offset between items.
    #[allow(clippy::while_let_on_iterator)]
    while let Some(item) = reader.next() {
        // The offset only moves forward and never past the input.
        assert!(reader.offset() >= last_offset && reader.offset() <= bytes.len() as u64);
        last_offset = reader.offset();
        match item {
            Ok(block) => blocks.push(block),
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    // After the end or an error the iterator stays done.
    assert!(reader.next().is_none());
    (Some(roots), blocks, error)
}

fn raw(bytes: &[u8]) {
    let (roots, blocks, error) = read_all(bytes);
    for block in &blocks {
        // Every block handed out verifies against its CID.
        assert!(ipfrs_storage::verify(block.cid(), block.data()).is_ok());
        let _ = links(block.cid(), block.data());
    }
    let decoded = ipfrs_versioning::car::decode_car(bytes);
    if let (Some(roots), None, Ok((v_roots, v_blocks))) = (&roots, &error, &decoded) {
        // Both readers accept the whole file: the same roots, the same blocks.
        assert_eq!(roots, v_roots);
        assert_eq!(&blocks, v_blocks);
    }
    if let Ok((_, v_blocks)) = &decoded {
        for block in v_blocks {
            assert!(ipfrs_storage::verify(block.cid(), block.data()).is_ok());
        }
    }
    // The link extractors take any bytes labelled with their codec (they do not hash).
    let Ok(empty) = Block::new(&b""[..]) else {
        return;
    };
    for codec in [Codec::DagCbor, Codec::DagPb] {
        let cid = Cid::new_v1(codec.code(), *empty.cid().hash());
        if let Ok(Some(found)) = links(&cid, bytes) {
            assert!(found.len() <= bytes.len());
        }
    }
}

const CODECS: [Codec; 3] = [Codec::Raw, Codec::DagPb, Codec::DagCbor];

fn structured(program: &[u8], v2: bool) {
    let mut input = program.iter().copied();
    let mut blocks = Vec::new();
    // Up to 16 blocks: (codec and hash byte, length, fill byte).
    while blocks.len() < 16 {
        let Some(spec) = input.next() else { break };
        if spec == 0xff {
            break;
        }
        let len = usize::from(input.next().unwrap_or(0)) * 5;
        let fill = input.next().unwrap_or(0);
        let codec = CODECS[usize::from(spec % 3)];
        let hash = HashAlgorithm::ALL[usize::from(spec / 3) % HashAlgorithm::ALL.len()];
        let bytes: Vec<u8> = (0..len).map(|i| fill ^ (i as u8)).collect();
        let bytes = if hash == HashAlgorithm::Identity {
            bytes[..bytes.len().min(64)].to_vec()
        } else {
            bytes
        };
        match Block::with(codec, hash, bytes) {
            Ok(block) => blocks.push(block),
            Err(e) => panic!("building a block failed: {e}"),
        }
    }
    let roots: Vec<Cid> = blocks.iter().take(2).map(|b| *b.cid()).collect();

    // Write, remembering where each section ends.
    let mut ends = Vec::new();
    let file = if v2 {
        let mut writer = CarV2Writer::new(Cursor::new(Vec::new()), &roots)
            .unwrap_or_else(|e| panic!("CARv2 writer: {e}"));
        for block in &blocks {
            writer
                .write_block(block.cid(), block.data())
                .unwrap_or_else(|e| panic!("CARv2 write: {e}"));
            ends.push(None);
        }
        writer
            .finish()
            .unwrap_or_else(|e| panic!("CARv2 finish: {e}"))
            .into_inner()
    } else {
        let mut writer =
            CarWriter::new(Vec::new(), &roots).unwrap_or_else(|e| panic!("CARv1 writer: {e}"));
        for block in &blocks {
            writer
                .write_block(block.cid(), block.data())
                .unwrap_or_else(|e| panic!("CARv1 write: {e}"));
            ends.push(Some(writer.bytes_written() as usize));
        }
        writer
            .finish()
            .unwrap_or_else(|e| panic!("CARv1 finish: {e}"))
    };
    // CARv2: the payload starts after the 11-byte pragma and the 40-byte header.
    let ends: Vec<usize> = if v2 {
        let mut payload =
            CarWriter::new(Vec::new(), &roots).unwrap_or_else(|e| panic!("CARv1 writer: {e}"));
        blocks
            .iter()
            .map(|b| {
                payload
                    .write_block(b.cid(), b.data())
                    .unwrap_or_else(|e| panic!("CARv1 write: {e}"));
                51 + payload.bytes_written() as usize
            })
            .collect()
    } else {
        ends.into_iter().flatten().collect()
    };

    let (read_roots, read_blocks, error) = read_all(&file);
    assert!(
        error.is_none(),
        "a file the writer made does not read: {error:?}"
    );
    assert_eq!(read_roots.as_ref(), Some(&roots));
    assert_eq!(read_blocks, blocks);
    if !v2 {
        match ipfrs_versioning::car::decode_car(&file) {
            Ok((v_roots, v_blocks)) => {
                assert_eq!(v_roots, roots);
                assert_eq!(v_blocks, blocks);
            }
            Err(e) => panic!("versioning cannot read a CARv1 the ipfrs-car writer wrote: {e}"),
        }
    }

    // Damage: (offset hi, offset lo, xor) triples; xor 0 truncates there.
    let damage: Vec<u8> = input.collect();
    if damage.len() < 3 || file.is_empty() {
        return;
    }
    let mut file = file;
    let mut first_damaged = file.len();
    for chunk in damage.chunks_exact(3) {
        if file.is_empty() {
            break;
        }
        let at = usize::from(u16::from_be_bytes([chunk[0], chunk[1]])) % file.len();
        match chunk[2] {
            0 => file.truncate(at),
            flip => file[at] ^= flip,
        }
        first_damaged = first_damaged.min(at);
    }
    let (_, after, _) = read_all(&file);
    let intact = ends.iter().filter(|&&end| end <= first_damaged).count();
    assert!(
        after.len() >= intact,
        "{} blocks read, {intact} were intact",
        after.len()
    );
    assert_eq!(after[..intact], blocks[..intact]);
    raw(&file);
}
