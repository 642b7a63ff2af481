//! Element types of tensors ([`ScalarType`]), as ExecuTorch numbers them.

use serde::Serialize;

/// The element type of a tensor. Discriminants are ExecuTorch's (and PyTorch's) numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[repr(i8)]
pub enum ScalarType {
    /// `uint8`
    Byte = 0,
    /// `int8`
    Char = 1,
    /// `int16`
    Short = 2,
    /// `int32`
    Int = 3,
    /// `int64`
    Long = 4,
    /// `float16`
    Half = 5,
    /// `float32`
    Float = 6,
    /// `float64`
    Double = 7,
    /// `bool`
    Bool = 11,
    /// `qint8`
    QInt8 = 12,
    /// `quint8`
    QUInt8 = 13,
    /// `qint32`
    QInt32 = 14,
    /// `bfloat16`
    BFloat16 = 15,
    /// `quint4x2` (two 4-bit values per byte)
    QUInt4x2 = 16,
    /// `quint2x4` (four 2-bit values per byte)
    QUInt2x4 = 17,
    /// `bits16`
    Bits16 = 22,
    /// `float8_e5m2`
    Float8E5M2 = 23,
    /// `float8_e4m3fn`
    Float8E4M3FN = 24,
    /// `float8_e5m2fnuz`
    Float8E5M2FNUZ = 25,
    /// `float8_e4m3fnuz`
    Float8E4M3FNUZ = 26,
    /// `uint16`
    UInt16 = 27,
    /// `uint32`
    UInt32 = 28,
    /// `uint64`
    UInt64 = 29,
}

impl ScalarType {
    /// Every scalar type, in ExecuTorch's order.
    pub const ALL: [ScalarType; 23] = [
        Self::Byte,
        Self::Char,
        Self::Short,
        Self::Int,
        Self::Long,
        Self::Half,
        Self::Float,
        Self::Double,
        Self::Bool,
        Self::QInt8,
        Self::QUInt8,
        Self::QInt32,
        Self::BFloat16,
        Self::QUInt4x2,
        Self::QUInt2x4,
        Self::Bits16,
        Self::Float8E5M2,
        Self::Float8E4M3FN,
        Self::Float8E5M2FNUZ,
        Self::Float8E4M3FNUZ,
        Self::UInt16,
        Self::UInt32,
        Self::UInt64,
    ];

    /// The scalar type with ExecuTorch number `code`, if it is one.
    pub fn from_code(code: i8) -> Option<Self> {
        Self::ALL.iter().copied().find(|t| *t as i8 == code)
    }

    /// ExecuTorch's number for this type.
    pub fn code(self) -> i8 {
        self as i8
    }

    /// Bytes one element occupies in memory (sub-byte types pack into one byte).
    pub fn element_size(self) -> usize {
        use ScalarType::*;
        match self {
            Byte | Char | Bool | QInt8 | QUInt8 | QUInt4x2 | QUInt2x4 => 1,
            Float8E5M2 | Float8E4M3FN | Float8E5M2FNUZ | Float8E4M3FNUZ => 1,
            Short | Half | BFloat16 | Bits16 | UInt16 => 2,
            Int | Float | QInt32 | UInt32 => 4,
            Long | Double | UInt64 => 8,
        }
    }

    /// The name NumPy and PyTorch users know (`float32`, `int64`, ...).
    pub fn name(self) -> &'static str {
        use ScalarType::*;
        match self {
            Byte => "uint8",
            Char => "int8",
            Short => "int16",
            Int => "int32",
            Long => "int64",
            Half => "float16",
            Float => "float32",
            Double => "float64",
            Bool => "bool",
            QInt8 => "qint8",
            QUInt8 => "quint8",
            QInt32 => "qint32",
            BFloat16 => "bfloat16",
            QUInt4x2 => "quint4x2",
            QUInt2x4 => "quint2x4",
            Bits16 => "bits16",
            Float8E5M2 => "float8_e5m2",
            Float8E4M3FN => "float8_e4m3fn",
            Float8E5M2FNUZ => "float8_e5m2fnuz",
            Float8E4M3FNUZ => "float8_e4m3fnuz",
            UInt16 => "uint16",
            UInt32 => "uint32",
            UInt64 => "uint64",
        }
    }

    /// Whether this is a floating-point type.
    pub fn is_float(self) -> bool {
        use ScalarType::*;
        matches!(self, Half | Float | Double | BFloat16 | Float8E5M2 | Float8E4M3FN | Float8E5M2FNUZ | Float8E4M3FNUZ)
    }
}

impl std::fmt::Display for ScalarType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for t in ScalarType::ALL {
            assert_eq!(ScalarType::from_code(t.code()), Some(t));
        }
        for bad in [8, 9, 10, 18, 19, 20, 21, 30, -1, 127] {
            assert_eq!(ScalarType::from_code(bad), None);
        }
    }
}
