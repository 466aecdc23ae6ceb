//! The codec on its own: what the writers write reads back, and each refusal is the typed
//! cause a caller can match. Interop with go-car's files is tested in ipfrs-tools
//! (tests/car_interop.rs), whose fixtures live there.

#![allow(clippy::unwrap_used)]

use std::io::Cursor;

use ipfrs_car::{
    CarError, CarV2Writer, CarVersion, CarWriter, HeaderFault, ReadOptions, SectionLengthFault,
    read, read_with,
};
use ipfrs_core_types::{Block, Cid};

fn blocks(n: usize) -> Vec<Block> {
    (0..n)
        .map(|i| Block::new(format!("block {i}").into_bytes()).unwrap())
        .collect()
}

fn v1(blocks: &[Block]) -> Vec<u8> {
    let roots: Vec<Cid> = blocks.iter().take(1).map(|b| *b.cid()).collect();
    let mut writer = CarWriter::new(Vec::new(), &roots).unwrap();
    for b in blocks {
        writer.write_block(b.cid(), b.data()).unwrap();
    }
    writer.finish().unwrap()
}

#[test]
fn v1_and_v2_read_back_what_was_written() {
    let want = blocks(5);
    let file = v1(&want);
    let reader = read(&file[..]).unwrap();
    assert_eq!(reader.header().version, CarVersion::V1);
    assert_eq!(reader.header().roots, [*want[0].cid()]);
    let got: Vec<Block> = reader.collect::<Result<_, _>>().unwrap();
    assert_eq!(got, want);

    let mut writer = CarV2Writer::new(Cursor::new(Vec::new()), &[*want[1].cid()]).unwrap();
    for b in &want {
        writer.write_block(b.cid(), b.data()).unwrap();
    }
    let file = writer.finish().unwrap().into_inner();
    let reader = read(&file[..]).unwrap();
    let header = reader.header().clone();
    assert_eq!(header.version, CarVersion::V2);
    assert_eq!(header.roots, [*want[1].cid()]);
    let v2 = header.v2.unwrap();
    // The payload is the CARv1 file of the same roots and blocks, right after 11 + 40 bytes.
    assert_eq!(v2.data_offset, 51);
    let payload = &file[51..51 + v2.data_size as usize];
    let mut alone = CarWriter::new(Vec::new(), &[*want[1].cid()]).unwrap();
    for b in &want {
        alone.write_block(b.cid(), b.data()).unwrap();
    }
    assert_eq!(payload, &alone.finish().unwrap()[..]);
    assert_eq!(v2.index_offset, 51 + v2.data_size);
    let got: Vec<Block> = reader.collect::<Result<_, _>>().unwrap();
    assert_eq!(got, want);
}

#[test]
fn sections_are_framed_before_they_are_verified() {
    let want = blocks(3);
    let file = v1(&want);
    let mut reader = read(&file[..]).unwrap();
    let mut offsets = Vec::new();
    while let Some(section) = reader.next_section() {
        let section = section.unwrap();
        offsets.push(section.offset);
        assert_eq!(section.verify().unwrap(), want[offsets.len() - 1]);
    }
    assert_eq!(offsets.len(), 3);
    assert!(offsets.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(reader.offset(), file.len() as u64);
}

#[test]
fn refusals_carry_their_typed_cause() {
    // A header with version 2 that is longer than the pragma.
    let mut header = Vec::new();
    let body = serde_ipld_dagcbor_header(2);
    ipfrs_car::varint::write(body.len() as u64, &mut header);
    header.extend(&body);
    match read(&header[..]) {
        Err(CarError::BadHeader {
            reason: HeaderFault::Pragma,
            offset: 0,
        }) => {}
        other => panic!("{:?}", other.err()),
    }

    // A CARv2 whose data offset points into its own header.
    let mut file = vec![
        0x0a, 0xa1, 0x67, b'v', b'e', b'r', b's', b'i', b'o', b'n', 0x02,
    ];
    let mut fixed = [0u8; 40];
    fixed[16..24].copy_from_slice(&20u64.to_le_bytes());
    file.extend(fixed);
    match read(&file[..]) {
        Err(CarError::BadHeader {
            reason:
                HeaderFault::DataOffsetInsideHeader {
                    data_offset: 20,
                    min: 51,
                },
            ..
        }) => {}
        other => panic!("{:?}", other.err()),
    }

    // A block over the limit is refused at its length, before anything is allocated.
    let big = Block::new(vec![7u8; 1000]).unwrap();
    let file = v1(std::slice::from_ref(&big));
    let options = ReadOptions {
        max_block_size: 500,
    };
    let err = read_with(&file[..], options)
        .unwrap()
        .next()
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(
            err,
            CarError::SectionLength {
                reason: SectionLengthFault::OverLimit {
                    max_block_size: 500
                },
                ..
            }
        ),
        "{err}"
    );
    // The cause is reachable as the error's source, not only in its message.
    let source = std::error::Error::source(&err).unwrap();
    assert_eq!(
        source.to_string(),
        "larger than the block limit (500 bytes) plus a CID"
    );
}

/// The DAG-CBOR map `{roots: [], version}`: a valid header body whatever the version.
fn serde_ipld_dagcbor_header(version: u8) -> Vec<u8> {
    let mut out = vec![0xa2, 0x65];
    out.extend(b"roots");
    out.push(0x80);
    out.push(0x67);
    out.extend(b"version");
    out.push(version);
    out
}
