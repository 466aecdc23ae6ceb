//! What the bucket's tests share.

use bytes::Bytes;

/// `len` xorshift bytes from `seed`: incompressible, and different for every seed.
pub fn bytes_of(len: usize, seed: u64) -> Bytes {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect::<Vec<u8>>()
        .into()
}
