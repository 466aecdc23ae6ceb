//! The CAR module against the go-car fixtures (tools/tests/fixtures/car, copied from the
//! shared fixture set): block counts, roots, round trips through the writer, and errors that
//! name the problem and its byte offset.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::PathBuf;

use ipfrs_storage::Cid;
use ipfrs_tools::car::{self, CarError, CarV2Writer, CarVersion, CarWriter};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/car")
        .join(name)
}

fn read_all(name: &str) -> (car::CarHeader, BTreeMap<Cid, Vec<u8>>, usize) {
    let file = std::fs::File::open(fixture(name)).unwrap();
    let mut reader = car::read(file).unwrap();
    let header = reader.header().clone();
    let mut blocks = BTreeMap::new();
    let mut count = 0;
    for block in &mut reader {
        let block = block.unwrap();
        count += 1;
        blocks.insert(*block.cid(), block.data().to_vec());
    }
    (header, blocks, count)
}

fn read_error(name: &str) -> CarError {
    let bytes = std::fs::read(fixture(name)).unwrap();
    match car::read(Cursor::new(bytes)) {
        Err(e) => e,
        Ok(reader) => reader
            .into_iter()
            .find_map(Result::err)
            .expect("the fixture is corrupt, so reading must fail"),
    }
}

/// The root of go-car's sample files (a Filecoin DAG: dag-cbor, blake2b-256).
const SAMPLE_ROOT: &str = "bafy2bzaced4ueelaegfs5fqu4tzsh6ywbbpfk3cxppupmxfdhbpbhzawfw5oy";

#[test]
fn sample_v1_and_wrapped_v2_hold_the_same_1049_blocks() {
    let (h1, b1, n1) = read_all("sample-v1.car");
    let (h2, b2, n2) = read_all("sample-wrapped-v2.car");
    assert_eq!((n1, n2), (1049, 1049));
    assert_eq!(h1.version, CarVersion::V1);
    assert_eq!(h2.version, CarVersion::V2);
    let root: Cid = SAMPLE_ROOT.parse().unwrap();
    assert_eq!(h1.roots, vec![root]);
    assert_eq!(h2.roots, vec![root]);
    assert!(b1.contains_key(&root));
    assert_eq!(b1, b2);
    assert!(
        h2.v2.unwrap().index_offset > 0,
        "the v2 fixture carries an index"
    );
}

#[test]
fn writer_round_trips_v1_and_v2() {
    for name in ["sample-v1.car", "simple-unixfs.car"] {
        let (header, blocks, _) = read_all(name);
        let mut v1 = CarWriter::new(Vec::new(), &header.roots).unwrap();
        let mut v2 = CarV2Writer::new(Cursor::new(Vec::new()), &header.roots).unwrap();
        for (cid, data) in &blocks {
            v1.write_block(cid, data).unwrap();
            v2.write_block(cid, data).unwrap();
        }
        for bytes in [v1.finish().unwrap(), v2.finish().unwrap().into_inner()] {
            let reader = car::read(Cursor::new(bytes)).unwrap();
            assert_eq!(reader.header().roots, header.roots);
            let again: BTreeMap<Cid, Vec<u8>> = reader
                .map(|b| {
                    let b = b.unwrap();
                    (*b.cid(), b.data().to_vec())
                })
                .collect();
            assert_eq!(again, blocks, "{name}");
        }
    }
}

#[test]
fn writer_header_is_byte_identical_to_go_car() {
    let bytes = std::fs::read(fixture("sample-v1.car")).unwrap();
    let root: Cid = SAMPLE_ROOT.parse().unwrap();
    let ours = CarWriter::new(Vec::new(), &[root])
        .unwrap()
        .finish()
        .unwrap();
    assert_eq!(ours, bytes[..ours.len()]);
    assert_eq!(ours.len(), 1 + 0x3c);
}

#[test]
fn bad_header_length_names_the_problem_and_offset() {
    let err = read_error("badheaderlength.car");
    assert!(
        matches!(err, CarError::HeaderLength { offset: 0, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("header length"), "{err}");
}

#[test]
fn bad_section_length_names_the_problem_and_offset() {
    let err = read_error("badsectionlength.car");
    // The header is 1 + 17 bytes; the first section starts right after it.
    assert!(
        matches!(err, CarError::SectionLength { offset: 18, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("at byte 18"), "{err}");
}

#[test]
fn corrupt_pragma_is_a_truncated_header() {
    let err = read_error("sample-corrupt-pragma.car");
    assert!(
        matches!(
            err,
            CarError::Truncated {
                what: "CAR header",
                offset: 1,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_flipped_byte_is_a_hash_mismatch_at_its_section() {
    let mut bytes = std::fs::read(fixture("simple-unixfs.car")).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    let results: Vec<_> = car::read(Cursor::new(bytes)).unwrap().collect();
    let err = results.last().unwrap().as_ref().unwrap_err();
    assert!(matches!(err, CarError::BadBlock { .. }), "{err}");
    assert!(results[..results.len() - 1].iter().all(Result::is_ok));
}

#[test]
fn truncation_anywhere_is_an_error_never_a_panic() {
    let bytes = std::fs::read(fixture("simple-unixfs.car")).unwrap();
    let full = car::read(Cursor::new(bytes.clone())).unwrap().count();
    for cut in 0..bytes.len() {
        let outcome =
            car::read(Cursor::new(bytes[..cut].to_vec())).map(|r| r.collect::<Result<Vec<_>, _>>());
        match outcome {
            Err(_) | Ok(Err(_)) => {}
            // A cut exactly between sections is a shorter, valid CARv1.
            Ok(Ok(blocks)) => assert!(blocks.len() < full, "cut at {cut}"),
        }
    }
}
