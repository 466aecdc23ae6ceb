//! Walking a segment buffer record by record, with a given synced offset, to a one-pass verdict.
//! Tests and fuzzing use it as a reference; recovery itself uses `recover::scan_segment` and
//! `recover::replay`, which take the durable position from the log's mark records.

use std::iter::FusedIterator;

use super::align::Alignment;
use super::error::RecordError;
use super::record::{Decoded, decode, first_nonzero};

/// Why a [`Scanner`] stopped. Every variant says where the valid records end
/// ([`ScanEnd::records_end`]): the offset the next record would be appended at once the tail
/// is dealt with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanEnd {
    /// Every byte from `end` to the end of the buffer is zero (unwritten), and `end` is at or
    /// past the synced mark: nothing was lost or torn.
    Clean {
        /// The end of the last valid record.
        end: usize,
    },
    /// The bytes at `offset` are not a valid record, and `offset` is at or past the synced
    /// mark: a write that was never acknowledged was cut short (or wrote out of order).
    /// Recovery truncates here: it must zero (or overwrite) the bytes from `offset` on before
    /// appending, so that a later scan does not meet them again.
    TornTail {
        /// Where the bad record starts: the end of the valid records.
        offset: usize,
        /// What was wrong with it.
        cause: RecordError,
    },
    /// The bytes at `offset` are not a valid record, yet `offset` is before the synced mark:
    /// data that was durable, and may have been acknowledged, is damaged or missing. Recovery
    /// must report this, never drop it silently.
    Corruption {
        /// Where the bad record starts: the end of the valid records.
        offset: usize,
        /// What was wrong with it.
        cause: RecordError,
    },
}

impl ScanEnd {
    /// The offset where the valid records end.
    pub fn records_end(&self) -> usize {
        match *self {
            ScanEnd::Clean { end } => end,
            ScanEnd::TornTail { offset, .. } | ScanEnd::Corruption { offset, .. } => offset,
        }
    }
}

/// An iterator over the records of a segment buffer, from offset 0, that stops at the end of the
/// records or at the first bad one and then says why ([`Scanner::end`]).
///
/// `synced_up_to` is the writer's durable mark: every byte before it was made durable (and the
/// mark is at a record boundary). Bad or missing bytes at an offset before it are
/// [`ScanEnd::Corruption`]; at or after it they are a [`ScanEnd::TornTail`]. For a sealed
/// segment, pass its full written length. Records are yielded in file order, which is `seq`
/// order for segments written by one shard.
///
/// Telling a clean end from a torn one checks that everything after the last record is zero, so
/// a scan reads the whole buffer; pass a shorter slice to bound that.
#[derive(Debug, Clone)]
pub struct Scanner<'a> {
    buf: &'a [u8],
    align: Alignment,
    synced_up_to: usize,
    pos: usize,
    end: Option<ScanEnd>,
}

impl<'a> Scanner<'a> {
    /// A scanner over `buf`, a segment's bytes from its start, whose records are aligned to
    /// `align`, with `synced_up_to` the durable mark (see the type's documentation).
    pub fn new(buf: &'a [u8], align: Alignment, synced_up_to: usize) -> Scanner<'a> {
        Scanner {
            buf,
            align,
            synced_up_to,
            pos: 0,
            end: None,
        }
    }

    /// Why the scan stopped, once the iterator has returned `None`; `None` before that.
    pub fn end(&self) -> Option<&ScanEnd> {
        self.end.as_ref()
    }

    /// Runs the scan to its end, dropping the remaining records, and returns why it stopped.
    pub fn finish(mut self) -> ScanEnd {
        loop {
            if let Err(end) = self.advance() {
                return end;
            }
        }
    }

    /// Decodes the next record, or returns (and remembers) why the scan stops.
    fn advance(&mut self) -> Result<Decoded<'a>, ScanEnd> {
        if let Some(end) = &self.end {
            return Err(end.clone());
        }
        match decode(self.buf, self.pos, self.align) {
            Ok(record) => {
                self.pos = record.next_offset;
                Ok(record)
            }
            Err(err) => {
                let end = self.stop(self.pos, err);
                self.end = Some(end.clone());
                Err(end)
            }
        }
    }

    /// Classifies the failure to decode a record at `offset`.
    fn stop(&self, offset: usize, err: RecordError) -> ScanEnd {
        let rest = self.buf.get(offset..).unwrap_or(&[]);
        let cause = match first_nonzero(rest) {
            None if offset >= self.synced_up_to => return ScanEnd::Clean { end: offset },
            // Unwritten (or absent) space before the mark: durable records are missing.
            None => err,
            // An unwritten header with bytes after it: name the stray bytes.
            Some(i) if matches!(err, RecordError::Unwritten { .. }) => RecordError::StrayData {
                offset,
                at: offset + i,
            },
            Some(_) => err,
        };
        if offset < self.synced_up_to {
            ScanEnd::Corruption { offset, cause }
        } else {
            ScanEnd::TornTail { offset, cause }
        }
    }
}

impl<'a> Iterator for Scanner<'a> {
    type Item = Decoded<'a>;

    fn next(&mut self) -> Option<Decoded<'a>> {
        self.advance().ok()
    }
}

impl FusedIterator for Scanner<'_> {}
