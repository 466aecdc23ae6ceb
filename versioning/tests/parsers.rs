//! Parsers of bytes from outside (CAR files, DAG-CBOR objects, safetensors, the ledger file)
//! never panic: any input is a value or a typed error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;

use common::*;
use ipfrs_storage::Block;
use ipfrs_versioning::car::{decode_car, encode_car};
use ipfrs_versioning::tensors::parse_safetensors;
use ipfrs_versioning::{FileLedger, Ledger, Object, Tensor, write_safetensors};
use proptest::prelude::*;

fn sample_car() -> Vec<u8> {
    let chunk = Block::new(vec![1u8; 64]).unwrap();
    let tensor = Object::Tensor(Tensor {
        dtype: ipfrs_versioning::DType::F32,
        shape: vec![16],
        chunk_bytes: 64,
        chunks: vec![*chunk.cid()],
    })
    .to_block()
    .unwrap();
    let mut out = Vec::new();
    encode_car(
        &[*tensor.cid()],
        &[
            (*tensor.cid(), tensor.data().as_ref()),
            (*chunk.cid(), chunk.data().as_ref()),
        ],
        &mut out,
    )
    .unwrap();
    out
}

fn sample_safetensors() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    write_safetensors(&path, &model(1)).unwrap();
    std::fs::read(path).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn car_decoder_never_panics(
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        cut in any::<prop::sample::Index>(),
        noise in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut car = sample_car();
        let good = decode_car(&car).unwrap();
        prop_assert_eq!(good.1.len(), 2);
        for (at, v) in flips {
            let i = at.index(car.len());
            car[i] = v;
        }
        car.truncate(cut.index(car.len() + 1));
        let _ = decode_car(&car);
        let _ = decode_car(&noise);
    }

    #[test]
    fn object_decoder_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let cid = *Block::new(bytes.clone()).unwrap().cid();
        let _ = Object::decode(&cid, &bytes, "any");
    }

    #[test]
    fn safetensors_parser_never_panics(
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut st = sample_safetensors();
        for (at, v) in flips {
            let i = at.index(st.len());
            st[i] = v;
        }
        let _ = parse_safetensors(Path::new("fuzz"), &st);
    }
}

#[test]
fn ledger_ignores_a_torn_tail_and_forgets_swept_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger");
    let ledger = FileLedger::open(&path).unwrap();
    let cids: Vec<cid::Cid> = (0..5u8)
        .map(|i| *Block::new(vec![i]).unwrap().cid())
        .collect();
    ledger.record(&cids[..3]).unwrap();
    ledger.record(&cids[2..]).unwrap();
    assert_eq!(
        ledger.recorded().unwrap(),
        cids,
        "duplicates removed, order kept"
    );
    // A crash in the middle of an append leaves a partial record.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(&[36, 1, 0x55]).unwrap();
    drop(f);
    assert_eq!(FileLedger::open(&path).unwrap().recorded().unwrap(), cids);
    let gone: HashSet<Vec<u8>> = [cids[1], cids[3]]
        .iter()
        .map(|c| c.hash().to_bytes())
        .collect();
    ledger.forget(&gone).unwrap();
    assert_eq!(
        FileLedger::open(&path).unwrap().recorded().unwrap(),
        vec![cids[0], cids[2], cids[4]]
    );
}
