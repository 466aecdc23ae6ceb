//! Streaming CAR reader: one section in memory at a time, every block verified.

use std::io::{BufReader, ErrorKind, Read};

use bytes::Bytes;
use ipfrs_core_types::{Block, Cid};

use crate::error::{CarError, HeaderFault, SectionLengthFault};
use crate::header::{CarHeader, CarVersion, V1Header, V2_HEADER_LEN, V2_PRAGMA, V2Header};
use crate::varint::{self, Varint};

/// The largest CARv1 header accepted. go-car uses 32 MiB for the same purpose; headers of
/// real files are a few hundred bytes (roots only), so 1 MiB leaves ample room.
const MAX_HEADER_LEN: u64 = 1 << 20;
/// Room for a section's CID on top of the block: a CIDv1 with a 64-byte digest and four
/// maximal varints fits in 100 bytes.
const MAX_CID_LEN: u64 = 100;

/// Limits applied while reading.
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions {
    /// Largest block accepted; a longer section is an error before anything is allocated
    /// for it (default 2 MiB, the engine's default limit).
    pub max_block_size: usize,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            max_block_size: 2 << 20,
        }
    }
}

/// Opens a CAR stream (CARv1 or CARv2) with default limits; see [`CarReader`].
pub fn read<R: Read>(reader: R) -> Result<CarReader<BufReader<R>>, CarError> {
    read_with(reader, ReadOptions::default())
}

/// Opens a CAR stream with the given limits: reads the header(s), then yields blocks.
pub fn read_with<R: Read>(
    reader: R,
    options: ReadOptions,
) -> Result<CarReader<BufReader<R>>, CarError> {
    CarReader::new(BufReader::new(reader), options)
}

/// Opens a CAR stream with the given limits and a read buffer of `capacity` bytes. A large
/// buffer saves one read call per few small sections (the default buffer is 8 KiB, two or
/// three sections of a small-block file); sections larger than the buffer are read directly.
pub fn read_buffered<R: Read>(
    reader: R,
    options: ReadOptions,
    capacity: usize,
) -> Result<CarReader<BufReader<R>>, CarError> {
    CarReader::new(BufReader::with_capacity(capacity, reader), options)
}

/// One section of a CAR file, framed and its CID parsed but its hash not yet checked: what
/// [`CarReader::next_section`] yields so that hashing can run on other threads.
#[derive(Debug, Clone)]
pub struct Section {
    /// The CID the section names.
    pub cid: Cid,
    /// The block's bytes (a slice of the section's allocation: no copy).
    pub data: Bytes,
    /// Where the section starts in the file (for errors).
    pub offset: u64,
}

impl Section {
    /// Checks the bytes against the CID: the block, or [`CarError::BadBlock`] at the
    /// section's offset.
    pub fn verify(self) -> Result<Block, CarError> {
        let Section { cid, data, offset } = self;
        Block::from_parts(cid, data).map_err(|source| CarError::BadBlock {
            cid: Box::new(cid),
            offset,
            source: Box::new(source),
        })
    }
}

/// An iterator over a CAR file's blocks, each verified against its CID.
///
/// Memory is one section whatever the file's size. After the first error the iterator ends.
/// For CARv2 the blocks come from the data payload; the index, if any, is not read.
pub struct CarReader<R> {
    inner: R,
    header: CarHeader,
    options: ReadOptions,
    /// Bytes consumed from the start of the file.
    offset: u64,
    /// Where the block sections end (CARv2); `None`: at end of input (CARv1).
    end: Option<u64>,
    done: bool,
}

impl<R: Read> CarReader<R> {
    fn new(mut inner: R, options: ReadOptions) -> Result<CarReader<R>, CarError> {
        let mut offset = 0;
        let first = read_v1_header(&mut inner, &mut offset)?;
        let (header, end) = match first.version {
            1 => (
                CarHeader {
                    version: CarVersion::V1,
                    roots: first.roots.unwrap_or_default(),
                    v2: None,
                },
                None,
            ),
            2 => {
                if offset != V2_PRAGMA.len() as u64 {
                    return Err(CarError::BadHeader {
                        offset: 0,
                        reason: HeaderFault::Pragma,
                    });
                }
                let mut fixed = [0u8; V2_HEADER_LEN];
                read_exact(&mut inner, &mut fixed, &mut offset, "CARv2 header")?;
                let v2 = V2Header::decode(&fixed);
                let start = (V2_PRAGMA.len() + V2_HEADER_LEN) as u64;
                let Some(padding) = v2.data_offset.checked_sub(start) else {
                    return Err(CarError::BadHeader {
                        offset: V2_PRAGMA.len() as u64,
                        reason: HeaderFault::DataOffsetInsideHeader {
                            data_offset: v2.data_offset,
                            min: start,
                        },
                    });
                };
                skip(&mut inner, padding, &mut offset)?;
                let data_end = v2.data_offset.checked_add(v2.data_size).ok_or_else(|| {
                    CarError::BadHeader {
                        offset: V2_PRAGMA.len() as u64,
                        reason: HeaderFault::DataRangeOverflows,
                    }
                })?;
                let inner_header_at = offset;
                let payload = read_v1_header(&mut inner, &mut offset)?;
                if payload.version != 1 {
                    return Err(CarError::UnsupportedVersion {
                        version: payload.version,
                        offset: inner_header_at,
                    });
                }
                if offset > data_end {
                    return Err(CarError::BadHeader {
                        offset: inner_header_at,
                        reason: HeaderFault::PastDataSize,
                    });
                }
                (
                    CarHeader {
                        version: CarVersion::V2,
                        roots: payload.roots.unwrap_or_default(),
                        v2: Some(v2),
                    },
                    Some(data_end),
                )
            }
            version => return Err(CarError::UnsupportedVersion { version, offset: 0 }),
        };
        Ok(CarReader {
            inner,
            header,
            options,
            offset,
            end,
            done: false,
        })
    }

    /// The file's header (version and roots).
    pub fn header(&self) -> &CarHeader {
        &self.header
    }

    /// Bytes read from the start of the file so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next section, framed and parsed but not verified (see [`Section::verify`]);
    /// `None` at the end. After the first error every call returns `None`. Mixing this with
    /// the iterator is fine: both advance the same stream.
    pub fn next_section(&mut self) -> Option<Result<Section, CarError>> {
        if self.done {
            return None;
        }
        let item = self.read_section().transpose();
        if !matches!(item, Some(Ok(_))) {
            self.done = true;
        }
        item
    }

    fn read_section(&mut self) -> Result<Option<Section>, CarError> {
        if self.end.is_some_and(|end| self.offset >= end) {
            return Ok(None);
        }
        let start = self.offset;
        let (length, varint_len) = match varint::read(&mut self.inner) {
            Ok(Varint::Value(v, n)) => (v, n as u64),
            Ok(Varint::End) if self.end.is_none() => return Ok(None),
            Ok(Varint::End) | Ok(Varint::Truncated) => {
                return Err(CarError::Truncated {
                    what: "section length",
                    offset: start,
                    needed: 1,
                });
            }
            Ok(Varint::Malformed) => {
                return Err(CarError::BadVarint {
                    what: "section length",
                    offset: start,
                });
            }
            Err(source) => {
                return Err(CarError::Io {
                    offset: start,
                    source,
                });
            }
        };
        self.offset += varint_len;
        let limit = self.options.max_block_size as u64 + MAX_CID_LEN;
        let refuse = |reason: SectionLengthFault| CarError::SectionLength {
            length,
            offset: start,
            reason,
        };
        if length == 0 {
            return Err(refuse(SectionLengthFault::Empty));
        }
        if length > limit {
            return Err(refuse(SectionLengthFault::OverLimit {
                max_block_size: self.options.max_block_size,
            }));
        }
        if let Some(end) = self.end
            && self.offset + length > end
        {
            return Err(refuse(SectionLengthFault::PastDataEnd { end }));
        }
        let mut section = vec![0u8; length as usize];
        read_exact(
            &mut self.inner,
            &mut section,
            &mut self.offset,
            "block section",
        )
        .map_err(|e| match e {
            CarError::Truncated { what, needed, .. } => CarError::Truncated {
                what,
                offset: start,
                needed,
            },
            other => other,
        })?;
        let mut rest = &section[..];
        let cid = Cid::read_bytes(&mut rest).map_err(|source| CarError::BadCid {
            offset: start,
            source,
        })?;
        let cid_len = section.len() - rest.len();
        // A slice of the section: no copy, the CID's few bytes ride along in the allocation.
        let data = Bytes::from(section).slice(cid_len..);
        Ok(Some(Section {
            cid,
            data,
            offset: start,
        }))
    }
}

impl<R: Read> Iterator for CarReader<R> {
    type Item = Result<Block, CarError>;

    fn next(&mut self) -> Option<Self::Item> {
        let item = self.next_section()?.and_then(Section::verify);
        if item.is_err() {
            self.done = true;
        }
        Some(item)
    }
}

/// Reads a length-prefixed CARv1 header at `*offset`.
fn read_v1_header(r: &mut impl Read, offset: &mut u64) -> Result<V1Header, CarError> {
    let start = *offset;
    let length = match varint::read(r) {
        Ok(Varint::Value(v, n)) => {
            *offset += n as u64;
            v
        }
        Ok(Varint::End) | Ok(Varint::Truncated) => {
            return Err(CarError::Truncated {
                what: "CAR header length",
                offset: start,
                needed: 1,
            });
        }
        Ok(Varint::Malformed) => {
            return Err(CarError::BadVarint {
                what: "CAR header length",
                offset: start,
            });
        }
        Err(source) => {
            return Err(CarError::Io {
                offset: start,
                source,
            });
        }
    };
    if length == 0 || length > MAX_HEADER_LEN {
        return Err(CarError::HeaderLength {
            length,
            offset: start,
            limit: MAX_HEADER_LEN,
        });
    }
    let body_at = *offset;
    let mut body = vec![0u8; length as usize];
    read_exact(r, &mut body, offset, "CAR header")?;
    let header = V1Header::decode(&body).map_err(|reason| CarError::BadHeader {
        offset: body_at,
        reason,
    })?;
    if header.version == 1 && header.roots.is_none() {
        return Err(CarError::BadHeader {
            offset: body_at,
            reason: HeaderFault::NoRoots,
        });
    }
    Ok(header)
}

fn read_exact(
    r: &mut impl Read,
    buf: &mut [u8],
    offset: &mut u64,
    what: &'static str,
) -> Result<(), CarError> {
    match r.read_exact(buf) {
        Ok(()) => {
            *offset += buf.len() as u64;
            Ok(())
        }
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => Err(CarError::Truncated {
            what,
            offset: *offset,
            needed: buf.len() as u64,
        }),
        Err(source) => Err(CarError::Io {
            offset: *offset,
            source,
        }),
    }
}

/// Skips `n` bytes (CARv2 padding) without buffering them.
fn skip(r: &mut impl Read, n: u64, offset: &mut u64) -> Result<(), CarError> {
    let skipped =
        std::io::copy(&mut r.take(n), &mut std::io::sink()).map_err(|source| CarError::Io {
            offset: *offset,
            source,
        })?;
    if skipped < n {
        return Err(CarError::Truncated {
            what: "CARv2 padding",
            offset: *offset,
            needed: n,
        });
    }
    *offset += n;
    Ok(())
}
