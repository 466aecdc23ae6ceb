//! CAR writers: CARv1 to any `Write`, CARv2 (with its index) to a seekable one.

use std::io::{Seek, SeekFrom, Write};

use ipfrs_core_types::Cid;

use crate::error::CarError;
use crate::header::{V1Header, V2_HEADER_LEN, V2_PRAGMA, V2Header};
use crate::index::Index;
use crate::varint;

/// Writes a CARv1 stream: the header at creation, then one section per block.
///
/// The caller decides the order (a DAG walk from the roots gives the usual one) and must not
/// write a block twice if the file is to be canonical; the writer does not check.
pub struct CarWriter<W: Write> {
    out: W,
    written: u64,
    scratch: Vec<u8>,
}

impl<W: Write> CarWriter<W> {
    /// Writes the CARv1 header listing `roots`.
    pub fn new(out: W, roots: &[Cid]) -> Result<CarWriter<W>, CarError> {
        let mut writer = CarWriter {
            out,
            written: 0,
            scratch: Vec::new(),
        };
        let header =
            V1Header::encode(roots).map_err(|reason| CarError::BadHeader { offset: 0, reason })?;
        varint::write(header.len() as u64, &mut writer.scratch);
        writer.scratch.extend_from_slice(&header);
        writer.flush_scratch()?;
        Ok(writer)
    }

    /// Appends one section: the block's CID (as given, so the codec is kept) and its bytes.
    pub fn write_block(&mut self, cid: &Cid, data: &[u8]) -> Result<(), CarError> {
        let cid_bytes = cid.to_bytes();
        varint::write((cid_bytes.len() + data.len()) as u64, &mut self.scratch);
        self.scratch.extend_from_slice(&cid_bytes);
        self.flush_scratch()?;
        self.out.write_all(data).map_err(|source| CarError::Io {
            offset: self.written,
            source,
        })?;
        self.written += data.len() as u64;
        Ok(())
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    /// Flushes and returns the output.
    pub fn finish(mut self) -> Result<W, CarError> {
        self.out.flush().map_err(|source| CarError::Io {
            offset: self.written,
            source,
        })?;
        Ok(self.out)
    }

    fn flush_scratch(&mut self) -> Result<(), CarError> {
        self.out
            .write_all(&self.scratch)
            .map_err(|source| CarError::Io {
                offset: self.written,
                source,
            })?;
        self.written += self.scratch.len() as u64;
        self.scratch.clear();
        Ok(())
    }
}

/// Writes a CARv2 file as go-car does: pragma, fixed header, a CARv1 payload, then a
/// MultihashIndexSorted index; the header's sizes and offsets are filled in by
/// [`CarV2Writer::finish`], hence the `Seek` bound. The index is held in memory until then
/// (about 80 bytes per block).
pub struct CarV2Writer<W: Write + Seek> {
    payload: CarWriter<W>,
    start: u64,
    index: Index,
}

impl<W: Write + Seek> CarV2Writer<W> {
    /// Writes the pragma, a placeholder header and the payload's CARv1 header.
    pub fn new(mut out: W, roots: &[Cid]) -> Result<CarV2Writer<W>, CarError> {
        let io = |source| CarError::Io { offset: 0, source };
        let start = out.stream_position().map_err(io)?;
        out.write_all(&V2_PRAGMA).map_err(io)?;
        out.write_all(&[0u8; V2_HEADER_LEN]).map_err(io)?;
        Ok(CarV2Writer {
            payload: CarWriter::new(out, roots)?,
            start,
            index: Index::default(),
        })
    }

    /// Appends one section to the payload and records it in the index.
    pub fn write_block(&mut self, cid: &Cid, data: &[u8]) -> Result<(), CarError> {
        self.index.add(cid, self.payload.bytes_written());
        self.payload.write_block(cid, data)
    }

    /// Writes the index, fills in the header, flushes, and returns the output positioned at
    /// the end.
    pub fn finish(self) -> Result<W, CarError> {
        let data_offset = (V2_PRAGMA.len() + V2_HEADER_LEN) as u64;
        let data_size = self.payload.bytes_written();
        let mut out = self.payload.finish()?;
        let header = V2Header {
            characteristics: 0,
            data_offset,
            data_size,
            index_offset: data_offset + data_size,
        };
        out.write_all(&self.index.encode())
            .map_err(|source| CarError::Io {
                offset: header.index_offset,
                source,
            })?;
        let io = |source| CarError::Io {
            offset: V2_PRAGMA.len() as u64,
            source,
        };
        let end = out.stream_position().map_err(io)?;
        out.seek(SeekFrom::Start(self.start + V2_PRAGMA.len() as u64))
            .map_err(io)?;
        out.write_all(&header.encode()).map_err(io)?;
        out.seek(SeekFrom::Start(end)).map_err(io)?;
        out.flush().map_err(io)?;
        Ok(out)
    }
}
