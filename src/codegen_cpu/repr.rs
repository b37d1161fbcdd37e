//! Mapping of loopforge dtypes and lane counts onto Cranelift types, and [`Val`], the typed
//! SSA value the expression lowering passes around.
//!
//! Representation rules:
//! - scalars: `F32`, `F64`, `I32`, `I64`; `Bool` is an `I8` holding 0 or 1; `float16` and
//!   `bfloat16` are an `I16` holding the value's bits (as in memory): every operation on
//!   them converts to f32, computes, and rounds back (`half.rs`);
//! - vectors are exactly 128 bits: `f32x4`, `f64x2`, `i32x4`, `i64x2`, and `i16x8` for
//!   the eight bit patterns of a half vector;
//! - a vector of `n` bools is a *mask*: an integer vector of `n` lanes of `128 / n` bits, each
//!   lane all ones (true) or all zeros (false). This is what `icmp`/`fcmp` produce on 128-bit
//!   operands, so a comparison of `f32x4` values yields an `i32x4` mask.

use crate::error::{Error, Result};
use crate::te::DType;
use cranelift::prelude::types;
use cranelift::prelude::{Type, Value};

/// A lowered value: the Cranelift SSA value with its loopforge scalar type and lane count.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Val {
    /// The SSA value.
    pub v: Value,
    /// Scalar element type.
    pub dt: DType,
    /// Number of lanes (1 for scalars).
    pub lanes: u32,
}

impl Val {
    /// A scalar value.
    pub fn scalar(v: Value, dt: DType) -> Val {
        Val { v, dt, lanes: 1 }
    }
    /// Whether this is a vector.
    pub fn is_vec(&self) -> bool {
        self.lanes > 1
    }
}

/// The Cranelift type of one scalar of `dt` in a register.
pub(crate) fn scalar_type(dt: DType) -> Type {
    match dt {
        DType::F32 => types::F32,
        DType::F64 => types::F64,
        DType::I32 => types::I32,
        DType::I64 => types::I64,
        DType::F16 | DType::BF16 => types::I16,
        DType::Bool => types::I8,
    }
}

/// The Cranelift type of one element of `dt` in memory (same as in registers; bool is a byte).
pub(crate) fn mem_type(dt: DType) -> Type {
    scalar_type(dt)
}

/// The integer lane type of a bool mask with `lanes` lanes.
pub(crate) fn mask_lane_type(lanes: u32) -> Result<Type> {
    Ok(match lanes {
        2 => types::I64,
        4 => types::I32,
        8 => types::I16,
        16 => types::I8,
        _ => return Err(unsupported_vec(DType::Bool, lanes)),
    })
}

/// The Cranelift type of a value of `dt` with `lanes` lanes (see the module doc).
pub(crate) fn val_type(dt: DType, lanes: u32) -> Result<Type> {
    if lanes == 1 {
        return Ok(scalar_type(dt));
    }
    if dt == DType::Bool {
        return Ok(mask_lane_type(lanes)?.by(lanes).expect("valid mask type"));
    }
    if lanes as usize * dt.bits() != 128 {
        return Err(unsupported_vec(dt, lanes));
    }
    Ok(scalar_type(dt)
        .by(lanes)
        .expect("valid 128-bit vector type"))
}

/// The error for a vector shape the backend cannot represent.
pub(crate) fn unsupported_vec(dt: DType, lanes: u32) -> Error {
    Error::Target(format!(
        "the CPU backend supports only 128-bit vectors (f32x4, f64x2, i32x4, i64x2, f16x8, bf16x8), got {}x{}; \
         vectorize by {} lanes for {}",
        dt,
        lanes,
        128 / dt.bits().max(8),
        dt
    ))
}

/// log2 of the size in bytes of one element of `dt`.
pub(crate) fn elem_shift(dt: DType) -> i64 {
    dt.bytes().trailing_zeros() as i64
}
