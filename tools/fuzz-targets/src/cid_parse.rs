//! CIDs and multihashes from user input (command lines, HTTP paths, CAR sections, keys read
//! back from a backend), and block verification against them.
//!
//! The same input is tried as every form:
//! - binary CID (`key::parse_cid_bytes`): accepted bytes are exactly the CID's encoding (no
//!   trailing bytes, no second spelling), and the CID survives text and key round trips;
//! - text CID (`key::parse_cid`), when the input is UTF-8: what parses prints and parses
//!   back to the same CID;
//! - storage key (`key::cid_of_key`): an accepted key is exactly the listed CID's multihash;
//! - a CID prefix followed by data, given to `Block::from_parts`: it accepts exactly what
//!   `verify` accepts, and a block built from the data with a supported hash verifies, while
//!   the same CID with one byte of the data changed does not.

use cid::Cid;
use ipfrs_storage::key::{cid_of_key, identity_data, key_of, parse_cid, parse_cid_bytes};
use ipfrs_storage::{Block, BlockError, Codec, HashAlgorithm, verify};

/// Runs the `cid_parse` target on one input: CID, key and block parsing never panic, and
/// every accepted form round-trips; `from_parts` accepts exactly what `verify` accepts.
///
/// # Panics
/// When an invariant of the module doc does not hold (that is the finding).
pub fn cid_parse(data: &[u8]) {
    binary(data);
    if let Ok(text) = std::str::from_utf8(data) {
        text_form(text);
    }
    if let Ok(cid) = cid_of_key(data) {
        assert_eq!(
            key_of(&cid),
            data,
            "a key parses but is not the listed CID's multihash"
        );
        assert_eq!(cid.codec(), Codec::Raw.code());
    }
    from_parts(data);
    valid_block(data);
}

fn binary(bytes: &[u8]) {
    let Ok(cid) = parse_cid_bytes(bytes) else {
        return;
    };
    assert_eq!(
        cid.to_bytes(),
        bytes,
        "accepted bytes are not the CID's encoding"
    );
    assert_eq!(parse_cid(&cid.to_string()), Ok(cid));
    let key = key_of(&cid);
    match cid_of_key(&key) {
        Ok(listed) => assert_eq!(listed.hash(), cid.hash()),
        Err(e) => panic!("the key of a parsed CID does not list: {e}"),
    }
    if let Some(inline) = identity_data(&cid) {
        assert_eq!(inline, cid.hash().digest());
    }
}

fn text_form(text: &str) {
    let Ok(cid) = parse_cid(text) else {
        return;
    };
    let printed = cid.to_string();
    assert_eq!(
        parse_cid(&printed),
        Ok(cid),
        "{text:?} printed as {printed:?}"
    );
    assert_eq!(parse_cid_bytes(&cid.to_bytes()), Ok(cid));
}

/// A CID read from the front of the input, the rest as the block's data.
fn from_parts(bytes: &[u8]) {
    let mut rest = bytes;
    let Ok(cid) = Cid::read_bytes(&mut rest) else {
        return;
    };
    let verified = verify(&cid, rest);
    match Block::from_parts(cid, rest.to_vec()) {
        Ok(block) => {
            assert!(verified.is_ok());
            assert_eq!(block.cid(), &cid);
            assert_eq!(block.data().as_ref(), rest);
        }
        Err(e) => assert_eq!(verified, Err(e)),
    }
}

/// A block built from the input verifies; the same CID over changed data does not.
fn valid_block(bytes: &[u8]) {
    let Some((&pick, data)) = bytes.split_first() else {
        return;
    };
    let hash = HashAlgorithm::ALL[usize::from(pick) % HashAlgorithm::ALL.len()];
    let codec = [Codec::Raw, Codec::DagPb, Codec::DagCbor][usize::from(pick >> 6) % 3];
    let block = match Block::with(codec, hash, data.to_vec()) {
        Ok(block) => block,
        // Only identity refuses data: more than a CID can carry.
        Err(BlockError::IdentityTooLarge { size, .. }) => {
            assert_eq!(hash, HashAlgorithm::Identity);
            assert_eq!(size, data.len());
            return;
        }
        Err(e) => panic!("{hash} refused {} bytes: {e}", data.len()),
    };
    assert_eq!(block.cid().hash().code(), hash.multihash_code());
    if let Err(e) = Block::from_parts(*block.cid(), data.to_vec()) {
        panic!("a block's own CID does not verify its data: {e}");
    }
    // Its binary and text forms parse back to it.
    assert_eq!(parse_cid_bytes(&block.cid().to_bytes()), Ok(*block.cid()));
    assert_eq!(parse_cid(&block.cid().to_string()), Ok(*block.cid()));
    if !data.is_empty() {
        let mut changed = data.to_vec();
        let at = usize::from(pick) % changed.len();
        changed[at] ^= 0x01;
        assert_eq!(
            Block::from_parts(*block.cid(), changed),
            Err(BlockError::HashMismatch { cid: *block.cid() })
        );
    }
}
