//! Versioning objects and delta payloads read from blocks: the block store holds what CAR
//! imports and peers put there, so `Object::decode` and `delta::decode` see untrusted bytes.
//!
//! The first input byte picks the mode (modulo 3):
//! - 0: the rest is a DAG-CBOR block given to `Object::decode`. Whatever decodes must encode
//!   again, decode back to the same object, and encode canonically (a second round trip gives
//!   the same CID).
//! - 1: a delta payload against a base chunk: (transform, element size, base length, base,
//!   payload). `delta::decode` must not panic, and what it returns is a whole chunk.
//! - 2: a delta round trip: a base and a new chunk from the input, `delta::encode` then
//!   `delta::decode` gives the new chunk back bit for bit; then a flipped payload byte must
//!   fail cleanly or give a chunk of the right length (zstd frames carry no checksum here).

use ipfrs_storage::Block;
use ipfrs_versioning::Object;
use ipfrs_versioning::delta::{self, Transform};

const ELEMS: [usize; 4] = [1, 2, 4, 8];

/// Runs the `versioning_objects` target on one input: object decoding and delta decoding
/// never panic, decoded objects encode back canonically, delta round trips are bit-exact.
///
/// # Panics
/// When an invariant of the module doc does not hold (that is the finding).
pub fn versioning_objects(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => object(rest),
        1 => delta_payload(rest),
        _ => delta_round_trip(rest),
    }
}

fn object(bytes: &[u8]) {
    let Ok(block) = Block::new(bytes.to_vec()) else {
        return;
    };
    let Ok(object) = Object::decode(block.cid(), bytes, "fuzz") else {
        return;
    };
    let encoded = object
        .to_block()
        .unwrap_or_else(|e| panic!("a decoded {} does not encode: {e}", object.kind()));
    let again = Object::decode(encoded.cid(), encoded.data(), "fuzz")
        .unwrap_or_else(|e| panic!("an encoded {} does not decode: {e}", object.kind()));
    assert_eq!(again, object);
    let twice = again
        .to_block()
        .unwrap_or_else(|e| panic!("re-encoding failed: {e}"));
    assert_eq!(twice.cid(), encoded.cid(), "encoding is not canonical");
}

fn delta_payload(bytes: &[u8]) {
    let [t, elem, hi, lo, rest @ ..] = bytes else {
        return;
    };
    let transform = if t & 1 == 0 {
        Transform::Xor
    } else {
        Transform::Sub
    };
    // Mostly valid element sizes, sometimes an invalid one.
    let elem = if elem & 0x80 != 0 {
        usize::from(*elem & 0x0f)
    } else {
        ELEMS[usize::from(elem & 3)]
    };
    // Payloads of both encoding versions are read back from stores.
    let version = if t & 2 == 0 {
        delta::Version::V2
    } else {
        delta::Version::V1
    };
    let base_len = usize::from(u16::from_be_bytes([*hi, *lo])) % (rest.len() + 1);
    let (base, payload) = rest.split_at(base_len);
    if let Ok(chunk) = delta::decode(version, transform, payload, base, elem) {
        assert_eq!(chunk.len(), base.len());
    }
}

fn delta_round_trip(bytes: &[u8]) {
    let [e, level, rest @ ..] = bytes else {
        return;
    };
    let elem = ELEMS[usize::from(e & 3)];
    // Base and new of the same whole-element length: new = base with the input's changes.
    let half = rest.len() / 2 / elem * elem;
    let (base, changes) = rest.split_at(half);
    let new: Vec<u8> = base
        .iter()
        .zip(changes)
        .map(|(b, c)| {
            if e & 4 != 0 {
                b ^ c
            } else {
                b.wrapping_add(*c)
            }
        })
        .collect();
    let level = i32::from(level % 4);
    let (version, encoded) = if e & 8 == 0 {
        (delta::Version::V2, delta::encode(&new, base, elem, level))
    } else {
        (
            delta::Version::V1,
            delta::encode_v1(&new, base, elem, level),
        )
    };
    let Some((transform, payload)) = encoded else {
        return;
    };
    assert!(
        payload.len() < new.len(),
        "encode keeps only smaller deltas"
    );
    match delta::decode(version, transform, &payload, base, elem) {
        Ok(back) => assert!(back == new, "delta round trip is not exact"),
        Err(e) => panic!("a delta encode made does not decode: {e}"),
    }
    if !payload.is_empty() {
        let mut damaged = payload.clone();
        let at = usize::from(*e) % damaged.len();
        damaged[at] ^= 0x5a;
        if let Ok(chunk) = delta::decode(version, transform, &damaged, base, elem) {
            assert_eq!(chunk.len(), base.len());
        }
    }
}
