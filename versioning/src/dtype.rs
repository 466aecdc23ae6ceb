//! Element types of stored tensors.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The element type of a tensor. Data is always little-endian, C order (as in safetensors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    /// IEEE 754 binary32.
    F32,
    /// IEEE 754 binary16.
    F16,
    /// bfloat16 (the top half of a binary32).
    BF16,
    /// IEEE 754 binary64.
    F64,
    /// Signed 8-bit integer.
    I8,
    /// Signed 16-bit integer.
    I16,
    /// Signed 32-bit integer.
    I32,
    /// Signed 64-bit integer.
    I64,
    /// Unsigned 8-bit integer.
    U8,
    /// Unsigned 16-bit integer.
    U16,
    /// Unsigned 32-bit integer.
    U32,
    /// Unsigned 64-bit integer.
    U64,
    /// One byte per element, 0 or 1.
    Bool,
}

impl DType {
    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            DType::I8 | DType::U8 | DType::Bool => 1,
            DType::F16 | DType::BF16 | DType::I16 | DType::U16 => 2,
            DType::F32 | DType::I32 | DType::U32 => 4,
            DType::F64 | DType::I64 | DType::U64 => 8,
        }
    }

    /// Whether values of this type are floating point (and so can be averaged).
    pub const fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16 | DType::BF16 | DType::F64)
    }

    /// The safetensors name of the type.
    pub const fn name(self) -> &'static str {
        match self {
            DType::F32 => "F32",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            DType::F64 => "F64",
            DType::I8 => "I8",
            DType::I16 => "I16",
            DType::I32 => "I32",
            DType::I64 => "I64",
            DType::U8 => "U8",
            DType::U16 => "U16",
            DType::U32 => "U32",
            DType::U64 => "U64",
            DType::Bool => "BOOL",
        }
    }

    /// The element at `index` of little-endian `data` as f64 (bool and integers by value).
    /// The caller keeps `index` in range.
    pub(crate) fn value(self, data: &[u8], index: usize) -> f64 {
        let at = index * self.size();
        let b = &data[at..at + self.size()];
        let le2 = || [b[0], b[1]];
        let le4 = || [b[0], b[1], b[2], b[3]];
        let le8 = || [b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]];
        match self {
            DType::F32 => f64::from(f32::from_le_bytes(le4())),
            DType::F16 => half::f16::from_le_bytes(le2()).to_f64(),
            DType::BF16 => half::bf16::from_le_bytes(le2()).to_f64(),
            DType::F64 => f64::from_le_bytes(le8()),
            DType::I8 => f64::from(b[0] as i8),
            DType::I16 => f64::from(i16::from_le_bytes(le2())),
            DType::I32 => f64::from(i32::from_le_bytes(le4())),
            DType::I64 => i64::from_le_bytes(le8()) as f64,
            DType::U8 | DType::Bool => f64::from(b[0]),
            DType::U16 => f64::from(u16::from_le_bytes(le2())),
            DType::U32 => f64::from(u32::from_le_bytes(le4())),
            DType::U64 => u64::from_le_bytes(le8()) as f64,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl TryFrom<safetensors::Dtype> for DType {
    type Error = String;

    fn try_from(d: safetensors::Dtype) -> Result<DType, String> {
        use safetensors::Dtype as S;
        Ok(match d {
            S::F32 => DType::F32,
            S::F16 => DType::F16,
            S::BF16 => DType::BF16,
            S::F64 => DType::F64,
            S::I8 => DType::I8,
            S::I16 => DType::I16,
            S::I32 => DType::I32,
            S::I64 => DType::I64,
            S::U8 => DType::U8,
            S::U16 => DType::U16,
            S::U32 => DType::U32,
            S::U64 => DType::U64,
            S::BOOL => DType::Bool,
            other => return Err(other.to_string()),
        })
    }
}

impl From<DType> for safetensors::Dtype {
    fn from(d: DType) -> safetensors::Dtype {
        use safetensors::Dtype as S;
        match d {
            DType::F32 => S::F32,
            DType::F16 => S::F16,
            DType::BF16 => S::BF16,
            DType::F64 => S::F64,
            DType::I8 => S::I8,
            DType::I16 => S::I16,
            DType::I32 => S::I32,
            DType::I64 => S::I64,
            DType::U8 => S::U8,
            DType::U16 => S::U16,
            DType::U32 => S::U32,
            DType::U64 => S::U64,
            DType::Bool => S::BOOL,
        }
    }
}
