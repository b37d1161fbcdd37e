//! Scalar data types.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The element type of a tensor or expression (scalar; vector width is tracked by the IR).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DType {
    /// 32-bit IEEE float.
    F32,
    /// 64-bit IEEE float.
    F64,
    /// 32-bit signed integer.
    I32,
    /// 64-bit signed integer; the type of indices, loop variables and shapes.
    I64,
    /// Boolean (stored as one byte: 0 or 1).
    Bool,
    /// 16-bit IEEE binary16 float (`half::f16`): arithmetic is done in f32 and rounded
    /// back to f16 after every operation (see `te::arith`).
    F16,
    /// 16-bit bfloat16 float (`half::bf16`: f32's exponent, 8 significant bits);
    /// arithmetic in f32, rounded back after every operation.
    BF16,
}

impl DType {
    /// Whether this is a floating-point type.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64 | DType::F16 | DType::BF16)
    }
    /// Whether this is a 16-bit float (`float16` or `bfloat16`): held in memory as its 16
    /// bits, computed on in f32 and rounded back after every operation.
    pub fn is_half(self) -> bool {
        matches!(self, DType::F16 | DType::BF16)
    }
    /// Whether this is a (signed) integer type.
    pub fn is_int(self) -> bool {
        matches!(self, DType::I32 | DType::I64)
    }
    /// Size of one element in bytes.
    pub fn bytes(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F64 | DType::I64 => 8,
            DType::F16 | DType::BF16 => 2,
            DType::Bool => 1,
        }
    }
    /// Bit width of one element (1 byte for bool).
    pub fn bits(self) -> usize {
        self.bytes() * 8
    }
    /// The TVM-style name (`float32`, `int64`...).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F64 => "float64",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::I32 => "int32",
            DType::I64 => "int64",
            DType::Bool => "bool",
        }
    }
    /// The type with TVM-style name `name` (the inverse of [`DType::name`]).
    pub fn from_name(name: &str) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.name() == name)
    }
    /// Every dtype.
    pub const ALL: [DType; 7] = [
        DType::F32,
        DType::F64,
        DType::F16,
        DType::BF16,
        DType::I32,
        DType::I64,
        DType::Bool,
    ];
    /// The type both operands of a binary operation are converted to: the wider float,
    /// any float over an integer, the wider integer. `float16` with `bfloat16` meet in
    /// `float32`, which holds both exactly.
    pub fn promote(a: DType, b: DType) -> DType {
        use DType::*;
        if a == b {
            return a;
        }
        match (a, b) {
            (F64, _) | (_, F64) => F64,
            (F32, _) | (_, F32) => F32,
            (F16, BF16) | (BF16, F16) => F32,
            (F16, _) | (_, F16) => F16,
            (BF16, _) | (_, BF16) => BF16,
            (I64, _) | (_, I64) => I64,
            (I32, _) | (_, I32) => I32,
            _ => Bool,
        }
    }
}

impl std::str::FromStr for DType {
    type Err = crate::error::Error;
    /// Parse a TVM-style name (`float16`, `bfloat16`, `float32`, ..., `bool`).
    fn from_str(s: &str) -> crate::error::Result<DType> {
        DType::from_name(s).ok_or_else(|| {
            let names: Vec<&str> = DType::ALL.iter().map(|d| d.name()).collect();
            crate::error::Error::InvalidExpr(format!(
                "unknown dtype {:?}; the dtypes are {}",
                s,
                names.join(", ")
            ))
        })
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::DType;

    #[test]
    fn half_dtypes_are_named_sized_and_promoted() {
        assert_eq!(DType::F16.name(), "float16");
        assert_eq!(DType::BF16.to_string(), "bfloat16");
        for d in DType::ALL {
            assert_eq!(d.name().parse::<DType>().unwrap(), d);
            let json = serde_json::to_string(&d).unwrap();
            assert_eq!(serde_json::from_str::<DType>(&json).unwrap(), d);
        }
        let err = "half".parse::<DType>().unwrap_err().to_string();
        assert!(err.contains("float16, bfloat16"), "{}", err);
        assert_eq!((DType::F16.bytes(), DType::BF16.bits()), (2, 16));
        assert!(DType::F16.is_float() && DType::BF16.is_half() && !DType::F32.is_half());
        assert_eq!(DType::promote(DType::F16, DType::BF16), DType::F32);
        assert_eq!(DType::promote(DType::I64, DType::F16), DType::F16);
        assert_eq!(DType::promote(DType::BF16, DType::Bool), DType::BF16);
        assert_eq!(DType::promote(DType::BF16, DType::F32), DType::F32);
        assert_eq!(DType::promote(DType::F64, DType::F16), DType::F64);
    }
}
