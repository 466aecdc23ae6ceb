//! The write alignment records are padded to.

use super::error::RecordError;

/// The alignment every record starts at and is padded to: a power of two between 1 and
/// [`Alignment::MAX`] bytes.
///
/// Hot segments use [`Alignment::WORD`]: records are packed at 8 bytes, and the writer keeps its
/// O_DIRECT writes aligned by rewriting the partial last sector of the previous write, not by
/// padding records to sectors. Holding the value in this type means the padding arithmetic
/// never sees a zero or a non-power-of-two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Alignment(usize);

impl Alignment {
    /// The smallest logical block size of a disk: enough for O_DIRECT on most devices.
    pub const SECTOR: Alignment = Alignment(512);

    /// The page size on x86-64: O_DIRECT alignment that satisfies every device, and what
    /// glommio's DMA files use by default.
    pub const PAGE: Alignment = Alignment(4096);

    /// Eight bytes: what hot segments pad records to. Records are packed, not sector-aligned:
    /// the writer makes each DMA write aligned by rewriting the partial last sector of the
    /// previous write, so a 4 KiB block costs 4 KiB plus its header on disk, not 8 KiB.
    pub const WORD: Alignment = Alignment(8);

    /// The largest alignment accepted: 64 KiB, the largest page size of any Linux platform
    /// (arm64 and ppc64 can use 64 KiB pages). More would only waste space on padding.
    pub const MAX: usize = 64 * 1024;

    /// Checks that `bytes` is a power of two no larger than [`Alignment::MAX`].
    ///
    /// # Errors
    /// [`RecordError::InvalidAlignment`] otherwise (including for 0).
    pub fn new(bytes: usize) -> Result<Alignment, RecordError> {
        if bytes.is_power_of_two() && bytes <= Self::MAX {
            Ok(Alignment(bytes))
        } else {
            Err(RecordError::InvalidAlignment { align: bytes })
        }
    }

    /// The alignment in bytes.
    pub fn get(self) -> usize {
        self.0
    }

    /// Whether `offset` is a multiple of this alignment.
    pub fn is_aligned(self, offset: usize) -> bool {
        offset & (self.0 - 1) == 0
    }

    /// `len` rounded up to the next multiple of this alignment, or `None` if that overflows.
    pub fn round_up(self, len: usize) -> Option<usize> {
        let mask = self.0 - 1;
        len.checked_add(mask).map(|n| n & !mask)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn accepts_powers_of_two_up_to_max() {
        for shift in 0..=16 {
            let a = Alignment::new(1 << shift);
            assert_eq!(a.map(Alignment::get), Ok(1 << shift));
        }
        for bad in [0, 3, 6, 100, 513, 4095, Alignment::MAX * 2, usize::MAX] {
            assert_eq!(
                Alignment::new(bad),
                Err(RecordError::InvalidAlignment { align: bad })
            );
        }
        assert_eq!(Alignment::new(512), Ok(Alignment::SECTOR));
        assert_eq!(Alignment::new(4096), Ok(Alignment::PAGE));
    }

    #[test]
    fn round_up_and_is_aligned() {
        let a = Alignment::SECTOR;
        assert_eq!(a.round_up(0), Some(0));
        assert_eq!(a.round_up(1), Some(512));
        assert_eq!(a.round_up(512), Some(512));
        assert_eq!(a.round_up(513), Some(1024));
        assert_eq!(a.round_up(usize::MAX), None);
        assert!(a.is_aligned(0));
        assert!(a.is_aligned(1024));
        assert!(!a.is_aligned(1000));
        let one = Alignment::new(1).unwrap();
        assert_eq!(one.round_up(7), Some(7));
        assert!(one.is_aligned(7));
    }
}
