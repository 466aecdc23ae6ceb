//! Naming the block a damaged record held.
//!
//! A record that fails its checksum has lost the guarantee that made its header worth reading:
//! any field, the key and both lengths included, may be the damaged one. What a bit flip cannot
//! forge is content addressing: a block's key is the hash of its payload. So a damaged record
//! is identified by hashing its payload under the key's multihash code and comparing:
//! - the hash equals the stored key: the key is right ([`KeyTrust::Verified`]) and the damage is
//!   in a header field, the padding or the checksum itself;
//! - the hash differs from the stored key in a few bits (or only in the code varint): the key
//!   was hit and the hash is the real one ([`KeyTrust::Corrected`]);
//! - neither: the payload itself is damaged (the key as stored is most likely right, but
//!   nothing proves it: [`KeyTrust::Unverified`]).
//!
//! A damaged length moves the payload's end, so the lengths tried are the stored ones, the
//! multihash's own length (its varints say how long it is), and every single-bit variant of the
//! payload length that still fits before the next valid record. This costs a few hashes of one
//! payload, and runs only for records that already failed their checksum.

use std::borrow::Cow;

use ipfrs_core_types::key::multihash_prefix;
use ipfrs_core_types::{HashAlgorithm, key_for_data};

use super::align::Alignment;
use super::record::{FLAG_TOMBSTONE, HEADER_LEN, MAX_KEY_LEN, MAX_PAYLOAD_LEN, encoded_len};

/// How far the key of a damaged record can be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyTrust {
    /// The payload hashes to the stored key: the key is the block's, the damage lies elsewhere.
    Verified,
    /// The stored key was damaged; the payload's own hash, a few bits away from it, is the key.
    Corrected,
    /// The payload does not hash to the stored key and no key close to it fits: the payload
    /// is damaged, and the key, as stored, is unproven.
    Unverified,
}

impl KeyTrust {
    /// Whether the key is the block's own (proven by its payload's hash).
    pub fn is_proven(self) -> bool {
        matches!(self, KeyTrust::Verified | KeyTrust::Corrected)
    }
}

/// What [`salvage`] made of a damaged record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Salvaged<'a> {
    /// The key: borrowed when it is the stored one, owned when corrected.
    pub key: Cow<'a, [u8]>,
    /// How far the key can be trusted.
    pub trust: KeyTrust,
    /// The payload length the record is taken to have.
    pub len: u32,
    /// Where the record's extent ends: after its padding when its lengths are proven, else the
    /// `limit` it was given.
    pub end: usize,
}

/// How many differing bits still make a hash "close" to a stored key. A single-bit flip is the
/// common case; a few more allow a burst inside one byte. Two unrelated 32-byte digests differ
/// in about 128 bits, so a chance match is out of reach.
const MAX_KEY_BIT_FLIPS: u32 = 8;

/// Identifies the damaged record at `buf[offset..]`, whose bytes may not reach past `limit`
/// (the next valid record, or the end of the buffer). `None` when no plausible record starts
/// there: no header, a key length and multihash that both fail, or a damaged tombstone (it
/// has no payload to prove a key with).
pub fn salvage(buf: &[u8], offset: usize, limit: usize, align: Alignment) -> Option<Salvaged<'_>> {
    let limit = limit.min(buf.len());
    let header = buf.get(offset..)?.first_chunk::<HEADER_LEN>()?;
    if offset + HEADER_LEN > limit {
        return None;
    }
    let stored_key_len = usize::from(u16::from_le_bytes([header[6], header[7]]));
    let stored_len = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
    if header[5] & FLAG_TOMBSTONE != 0 && stored_len == 0 {
        return None;
    }
    let key_start = offset + HEADER_LEN;
    let key_area = &buf[key_start..limit.min(key_start + MAX_KEY_LEN)];
    let mut key_lens = Vec::with_capacity(2);
    if (1..=MAX_KEY_LEN).contains(&stored_key_len) {
        key_lens.push(stored_key_len);
    }
    if let Some((_, natural)) = multihash_prefix(key_area)
        && !key_lens.contains(&natural)
    {
        key_lens.push(natural);
    }
    let payload_lens =
        std::iter::once(stored_len).chain((0..u32::BITS).map(|bit| stored_len ^ (1 << bit)));
    // The whole padded extent must fit: a record never reaches past the next one.
    let fits = |key_len: usize, len: u32| {
        (len as usize) <= MAX_PAYLOAD_LEN
            && offset.saturating_add(encoded_len(key_len, len as usize, align)) <= limit
    };
    for (i, len) in payload_lens.enumerate() {
        for &key_len in &key_lens {
            if !fits(key_len, len) {
                continue;
            }
            let key = &buf[key_start..key_start + key_len];
            let data = &buf[key_start + key_len..key_start + key_len + len as usize];
            // Every hash code is tried only for the stored lengths: a flipped code is one
            // damage, a flipped code and length two.
            if let Some((key, trust)) = identify(key, data, i == 0) {
                return Some(Salvaged {
                    key,
                    trust,
                    len,
                    end: offset + encoded_len(key_len, len as usize, align),
                });
            }
        }
    }
    // Nothing proves a key: keep the stored one if it at least reads as a whole multihash.
    let key = buf.get(key_start..key_start + stored_key_len)?;
    let exact = multihash_prefix(key).is_some_and(|(_, natural)| natural == key.len());
    (exact && fits(stored_key_len, stored_len)).then_some(Salvaged {
        key: Cow::Borrowed(key),
        trust: KeyTrust::Unverified,
        len: stored_len,
        end: limit,
    })
}

/// The key `data` proves for a stored `key`: itself, or a corrected one a few bits away.
fn identify<'a>(key: &'a [u8], data: &[u8], every_code: bool) -> Option<(Cow<'a, [u8]>, KeyTrust)> {
    let own = leading_varint(key);
    if let Some(computed) = own.and_then(|code| key_for_data(code, data)) {
        if computed == key {
            return Some((Cow::Borrowed(key), KeyTrust::Verified));
        }
        if close(&computed, key) {
            return Some((Cow::Owned(computed), KeyTrust::Corrected));
        }
    }
    if !every_code {
        return None;
    }
    HashAlgorithm::ALL
        .iter()
        .map(|hash| hash.multihash_code())
        .filter(|&code| Some(code) != own)
        .filter_map(|code| key_for_data(code, data))
        .find(|computed| close(computed, key))
        .map(|computed| (Cow::Owned(computed), KeyTrust::Corrected))
}

/// Whether two keys of the same length differ in at most [`MAX_KEY_BIT_FLIPS`] bits.
fn close(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .map(|(x, y)| (x ^ y).count_ones())
            .sum::<u32>()
            <= MAX_KEY_BIT_FLIPS
}

/// The unsigned LEB128 varint at the start of `bytes` (a multihash's code), if one of at most
/// nine bytes is there.
fn leading_varint(bytes: &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for (i, &byte) in bytes.iter().take(9).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::segment::record::{Payload, encode_into};

    const A: Alignment = Alignment::WORD;

    fn sha256_key(data: &[u8]) -> Vec<u8> {
        key_for_data(0x12, data).unwrap()
    }

    /// One record followed by a second one, as in a segment.
    fn two_records(data: &[u8]) -> (Vec<u8>, Vec<u8>, usize) {
        let key = sha256_key(data);
        let mut buf = Vec::new();
        encode_into(&mut buf, 1, &key, Payload::Data(data), A).unwrap();
        let next = buf.len();
        let other = b"the next block";
        encode_into(&mut buf, 2, &sha256_key(other), Payload::Data(other), A).unwrap();
        (buf, key, next)
    }

    #[test]
    fn a_flipped_header_field_keeps_a_verified_key() {
        let data = vec![7u8; 300];
        for byte in [0usize, 4, 5, 12, 20] {
            let (mut buf, key, next) = two_records(&data);
            buf[byte] ^= 0x10;
            let s = salvage(&buf, 0, next, A).unwrap();
            assert_eq!(s.trust, KeyTrust::Verified, "byte {byte}");
            assert_eq!(&*s.key, &key[..]);
            assert_eq!((s.len, s.end), (300, next));
        }
    }

    #[test]
    fn a_flipped_digest_or_code_bit_is_corrected_from_the_payload() {
        let data = vec![3u8; 100];
        // Code byte, length byte, digest bytes.
        for at in [HEADER_LEN, HEADER_LEN + 1, HEADER_LEN + 2, HEADER_LEN + 33] {
            let (mut buf, key, next) = two_records(&data);
            buf[at] ^= 0x01;
            let s = salvage(&buf, 0, next, A).unwrap();
            assert_eq!(s.trust, KeyTrust::Corrected, "byte {at}");
            assert_eq!(&*s.key, &key[..], "byte {at}");
            assert_eq!(s.end, next);
        }
    }

    #[test]
    fn a_flipped_length_is_found_again() {
        let data = vec![9u8; 200];
        for (byte, bit) in [(6usize, 0u8), (6, 5), (8, 0), (8, 6), (9, 2), (11, 7)] {
            let (mut buf, key, next) = two_records(&data);
            buf[byte] ^= 1 << bit;
            let s = salvage(&buf, 0, next, A).unwrap();
            assert!(s.trust.is_proven(), "byte {byte} bit {bit}: {s:?}");
            assert_eq!(&*s.key, &key[..]);
            assert_eq!((s.len, s.end), (200, next), "byte {byte} bit {bit}");
        }
    }

    #[test]
    fn a_damaged_payload_leaves_the_key_unverified() {
        let data = vec![1u8; 64];
        let (mut buf, key, next) = two_records(&data);
        buf[HEADER_LEN + key.len() + 10] ^= 0x40;
        let s = salvage(&buf, 0, next, A).unwrap();
        assert_eq!(s.trust, KeyTrust::Unverified);
        assert_eq!(&*s.key, &key[..]);
        assert_eq!(s.end, next);
    }

    #[test]
    fn a_damaged_tombstone_or_a_garbage_header_names_nothing() {
        let key = sha256_key(b"gone");
        let mut buf = Vec::new();
        encode_into(&mut buf, 1, &key, Payload::Tombstone, A).unwrap();
        buf[13] ^= 1;
        assert_eq!(salvage(&buf, 0, buf.len(), A), None);
        let garbage = vec![0xa5u8; 256];
        assert_eq!(salvage(&garbage, 0, garbage.len(), A), None);
        assert_eq!(salvage(&garbage, 250, garbage.len(), A), None);
    }

    #[test]
    fn close_counts_bits_and_needs_equal_lengths() {
        assert!(close(&[0, 0], &[0xff, 0]));
        assert!(!close(&[0, 0], &[0xff, 1]));
        assert!(!close(&[0], &[0, 0]));
        assert_eq!(leading_varint(&[0x12, 0x20]), Some(0x12));
        assert_eq!(leading_varint(&[0xa0, 0xe4, 0x02]), Some(0xb220));
        assert_eq!(leading_varint(&[0x80; 12]), None);
    }
}
