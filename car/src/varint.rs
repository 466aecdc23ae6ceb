//! Unsigned LEB128 varints as CAR uses them (at most 9 bytes, values below 2^63, minimal
//! encoding): the section and header lengths, and the codec of a CARv2 index.

use std::io::{ErrorKind, Read};

/// The longest varint the CAR spec allows (values below 2^63).
pub const MAX_LEN: usize = 9;

/// Outcome of reading a varint. Not an error type: a clean end of input is how a CARv1 stream
/// ends, so the caller decides which outcomes are errors where. The four cases are every way
/// a byte stream can go, hence no `#[non_exhaustive]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Varint {
    /// The value and how many bytes it took.
    Value(u64, usize),
    /// End of input before the first byte: a clean end of the stream.
    End,
    /// End of input inside the varint.
    Truncated,
    /// Too long or too large.
    Malformed,
}

/// Reads one varint, a byte at a time (so nothing past it is consumed: wrap an unbuffered
/// source in a `BufReader`); I/O errors other than end of input are returned as errors.
pub fn read(r: &mut impl Read) -> std::io::Result<Varint> {
    let mut value = 0u64;
    for i in 0..MAX_LEN {
        let mut byte = [0u8];
        match r.read_exact(&mut byte) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => {
                return Ok(if i == 0 {
                    Varint::End
                } else {
                    Varint::Truncated
                });
            }
            Err(e) => return Err(e),
        }
        value |= u64::from(byte[0] & 0x7f) << (7 * i);
        if byte[0] & 0x80 == 0 {
            // A trailing zero byte would be a non-minimal encoding; the spec forbids it.
            if i > 0 && byte[0] == 0 {
                return Ok(Varint::Malformed);
            }
            return Ok(Varint::Value(value, i + 1));
        }
    }
    Ok(Varint::Malformed)
}

/// Appends `value`'s minimal encoding to `out`. Values of 2^63 and above take 10 bytes,
/// which [`read`] refuses as the CAR spec does: lengths and codecs never come near.
pub fn write(mut value: u64, out: &mut Vec<u8>) {
    loop {
        let low = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(value in 0u64..(1 << 63)) {
            let mut buf = Vec::new();
            write(value, &mut buf);
            prop_assert!(buf.len() <= MAX_LEN);
            match read(&mut &buf[..]).unwrap() {
                Varint::Value(v, n) => { prop_assert_eq!(v, value); prop_assert_eq!(n, buf.len()); }
                _ => prop_assert!(false, "did not decode"),
            }
        }
    }

    #[test]
    fn ends_and_bad_encodings() {
        assert!(matches!(read(&mut &[][..]).unwrap(), Varint::End));
        assert!(matches!(read(&mut &[0x80][..]).unwrap(), Varint::Truncated));
        assert!(matches!(
            read(&mut &[0x80, 0x00][..]).unwrap(),
            Varint::Malformed
        ));
        assert!(matches!(
            read(&mut &[0xff; 10][..]).unwrap(),
            Varint::Malformed
        ));
    }
}
