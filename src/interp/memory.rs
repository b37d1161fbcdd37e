//! Typed buffers of the interpreter: allocation, element access, and copying to and from
//! the caller's [`NdArray`]s.

use super::value::{Scalar, R};
use crate::runtime::NdArray;
use crate::te::DType;

/// Largest allocation (in elements) the interpreter accepts, to fail cleanly instead of
/// aborting on a wrong size.
const MAX_ELEMENTS: i64 = 1 << 31;

/// What a float element of a new allocation holds until written (a NaN).
pub(crate) const POISON_F32: f32 = f32::NAN;
/// What an integer element of a new allocation holds until written: large enough that an
/// index computed from it is out of bounds.
pub(crate) const POISON_INT: i64 = 0x5eed_0bad;

/// The elements of a buffer, typed (bools are one byte, 0 or 1, as in memory).
#[derive(Debug, Clone)]
pub(crate) enum Storage {
    /// float32 elements.
    F32(Vec<f32>),
    /// float64 elements.
    F64(Vec<f64>),
    /// float16 elements.
    F16(Vec<half::f16>),
    /// bfloat16 elements.
    BF16(Vec<half::bf16>),
    /// int32 elements.
    I32(Vec<i32>),
    /// int64 elements.
    I64(Vec<i64>),
    /// bool elements.
    Bool(Vec<bool>),
}

/// A buffer at run time: its elements and its dimensions (for per-dimension indexing).
#[derive(Debug, Clone)]
pub(crate) struct Buf {
    /// The elements, row-major.
    pub data: Storage,
    /// The dimensions (their product is the number of elements).
    pub dims: Vec<i64>,
}

impl Buf {
    /// A new allocation's buffer, its contents undefined as in compiled code: filled with
    /// NaNs ([`POISON_F32`] for f32) or [`POISON_INT`] (integers), so that a kernel
    /// that reads an element before writing it gives a visibly wrong result here instead
    /// of the zero that compiled code happens to see; `name` is for the error message on
    /// a bad shape.
    pub(crate) fn uninit(dtype: DType, dims: Vec<i64>, name: &str) -> R<Buf> {
        let mut n: i64 = 1;
        for &d in &dims {
            if d < 0 {
                return Err(format!(
                    "allocation of {} with negative extent {} (shape {:?})",
                    name, d, dims
                ));
            }
            n = n.saturating_mul(d);
        }
        if n > MAX_ELEMENTS {
            return Err(format!(
                "allocation of {} with shape {:?} is too large ({} elements)",
                name, dims, n
            ));
        }
        let n = n as usize;
        let data = match dtype {
            DType::F32 => Storage::F32(vec![POISON_F32; n]),
            DType::F64 => Storage::F64(vec![POISON_F32 as f64; n]),
            DType::F16 => Storage::F16(vec![half::f16::NAN; n]),
            DType::BF16 => Storage::BF16(vec![half::bf16::NAN; n]),
            DType::I32 => Storage::I32(vec![POISON_INT as i32; n]),
            DType::I64 => Storage::I64(vec![POISON_INT; n]),
            DType::Bool => Storage::Bool(vec![true; n]),
        };
        Ok(Buf { data, dims })
    }

    /// A copy of a host array.
    pub(crate) fn from_array(a: &NdArray) -> R<Buf> {
        let e = |x: crate::error::Error| x.to_string();
        let data = match a.dtype() {
            DType::F32 => Storage::F32(a.to_vec::<f32>().map_err(e)?),
            DType::F64 => Storage::F64(a.to_vec::<f64>().map_err(e)?),
            DType::F16 => Storage::F16(a.to_vec::<half::f16>().map_err(e)?),
            DType::BF16 => Storage::BF16(a.to_vec::<half::bf16>().map_err(e)?),
            DType::I32 => Storage::I32(a.to_vec::<i32>().map_err(e)?),
            DType::I64 => Storage::I64(a.to_vec::<i64>().map_err(e)?),
            DType::Bool => Storage::Bool(a.to_vec::<bool>().map_err(e)?),
        };
        Ok(Buf {
            data,
            dims: a.shape().iter().map(|&d| d as i64).collect(),
        })
    }

    /// Copy the elements back into the host array they came from.
    pub(crate) fn write_back(&self, a: &mut NdArray) -> R<()> {
        let e = |x: crate::error::Error| x.to_string();
        match &self.data {
            Storage::F32(v) => a.as_mut_slice::<f32>().map_err(e)?.copy_from_slice(v),
            Storage::F64(v) => a.as_mut_slice::<f64>().map_err(e)?.copy_from_slice(v),
            Storage::F16(v) => a.as_mut_slice::<half::f16>().map_err(e)?.copy_from_slice(v),
            Storage::BF16(v) => a
                .as_mut_slice::<half::bf16>()
                .map_err(e)?
                .copy_from_slice(v),
            Storage::I32(v) => a.as_mut_slice::<i32>().map_err(e)?.copy_from_slice(v),
            Storage::I64(v) => a.as_mut_slice::<i64>().map_err(e)?.copy_from_slice(v),
            Storage::Bool(v) => a.as_mut_slice::<bool>().map_err(e)?.copy_from_slice(v),
        }
        Ok(())
    }

    /// Number of elements.
    pub(crate) fn len(&self) -> usize {
        match &self.data {
            Storage::F32(v) => v.len(),
            Storage::F64(v) => v.len(),
            Storage::F16(v) => v.len(),
            Storage::BF16(v) => v.len(),
            Storage::I32(v) => v.len(),
            Storage::I64(v) => v.len(),
            Storage::Bool(v) => v.len(),
        }
    }

    /// Element `i` (the caller checked `i < len()`).
    #[inline]
    pub(crate) fn get(&self, i: usize) -> Scalar {
        match &self.data {
            Storage::F32(v) => Scalar::F(v[i] as f64),
            Storage::F64(v) => Scalar::F(v[i]),
            Storage::F16(v) => Scalar::F(v[i].to_f64()),
            Storage::BF16(v) => Scalar::F(v[i].to_f64()),
            Storage::I32(v) => Scalar::I(v[i] as i64),
            Storage::I64(v) => Scalar::I(v[i]),
            Storage::Bool(v) => Scalar::I(v[i] as i64),
        }
    }

    /// Set element `i` (the caller checked `i < len()`); the value must be of the
    /// buffer's kind (integer or float) and is converted to its type.
    #[inline]
    pub(crate) fn set(&mut self, i: usize, x: Scalar) -> R<()> {
        match (&mut self.data, x) {
            (Storage::F32(v), Scalar::F(x)) => v[i] = x as f32,
            (Storage::F64(v), Scalar::F(x)) => v[i] = x,
            // Through f32, as every conversion to a half (exact for values of the type).
            (Storage::F16(v), Scalar::F(x)) => v[i] = half::f16::from_f32(x as f32),
            (Storage::BF16(v), Scalar::F(x)) => v[i] = half::bf16::from_f32(x as f32),
            (Storage::I32(v), Scalar::I(x)) => v[i] = x as i32,
            (Storage::I64(v), Scalar::I(x)) => v[i] = x,
            (Storage::Bool(v), Scalar::I(x)) => v[i] = x != 0,
            _ => return Err("value of the wrong kind (integer/float) stored".into()),
        }
        Ok(())
    }
}
