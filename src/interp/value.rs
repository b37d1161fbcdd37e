//! Runtime values of the interpreter and the semantics of every scalar operator.
//!
//! This file is the single definition of loopforge's arithmetic: the Cranelift backend
//! must agree with it (except that the JIT may fuse `a * b + c` into one FMA, which rounds
//! once: compare floating-point results with a tolerance).
//!
//! * Integer-like values (`int32`, `int64`, `bool`) are held as `i64`, always normalised
//!   to their type (`int32` sign-extended from 32 bits, `bool` 0 or 1); floats (`float32`,
//!   `float64`, `float16`, `bfloat16`) as `f64`, always exactly representable in their type.
//! * Arithmetic is done in the expression's type: `f32` ops in `f32` (rounded every op),
//!   `f64` in `f64`, `f16`/`bf16` in `f32` rounded to the half type every op,
//!   `i32` wrapping in `i32`, `i64` wrapping in `i64`; `bool` arithmetic
//!   is done on 0/1 in `i64` and the result is `!= 0`.
//! * Integer `Div`/`Mod` are floor division/modulo; by zero they yield 0
//!   (`MIN / -1` wraps to `MIN`, `MIN % -1` is 0). Float `Mod` is truncated `fmod`.
//! * Float `Min`/`Max`: NaN if either operand is NaN, `-0.0 < +0.0`, else min/max.
//! * Casts: float -> int truncates and saturates (NaN -> 0, Rust `as`), int -> int wraps,
//!   int/float -> `bool` is `!= 0`, `bool` -> number is 0/1, `i64 -> f32` rounds once;
//!   conversions to and from `f16`/`bf16` go through `f32`.
//! * Math functions are computed in the type with Rust's `f32`/`f64` methods (`exp`,
//!   `ln`, `ln_1p`, `sqrt`, `tanh`, `powf`, `abs`, `floor`, `ceil`) and the `libm` crate's `erff` /
//!   `erf`, as the CPU backend's helpers do; `sigmoid(x) = 1 / (1 + exp(-x))` with each
//!   op in the type; on halves, in `f32` with the result rounded once.

pub(crate) use crate::te::arith::norm_int;
use crate::te::arith::{float_binary, float_to_int, int_binary, int_to_float, round_float};
use crate::te::{BinOp, CmpOp, DType, MathFn};

/// Result of the interpreter's internals: the error is a message naming what went wrong
/// (turned into [`crate::error::Error::Internal`] with the function's IR by `run`).
pub(crate) type R<T> = Result<T, String>;

/// One lane of a value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Scalar {
    /// An `int32`, `int64` or `bool` (normalised to its type).
    I(i64),
    /// A `float32`, `float16` or `bfloat16` (exactly a value of its type) or `float64`.
    F(f64),
}

/// A runtime value: a scalar or a vector of two or more lanes.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    /// One lane.
    S(Scalar),
    /// Several lanes (vectors built by the interpreter always have at least two).
    V(Vec<Scalar>),
}

impl Value {
    /// Number of lanes (1 for a scalar).
    pub(crate) fn lanes(&self) -> usize {
        match self {
            Value::S(_) => 1,
            Value::V(v) => v.len(),
        }
    }
    /// The integer, if this is a scalar integer.
    pub(crate) fn as_int(&self) -> Option<i64> {
        match self {
            Value::S(Scalar::I(v)) => Some(*v),
            _ => None,
        }
    }
    /// A vector from lanes (one lane becomes a scalar).
    pub(crate) fn from_lanes(mut v: Vec<Scalar>) -> Value {
        if v.len() == 1 {
            Value::S(v.pop().expect("one lane"))
        } else {
            Value::V(v)
        }
    }
}

/// A constant of type `dt` from an integer literal.
pub(crate) fn int_const(dt: DType, v: i64) -> Scalar {
    cast(dt, Scalar::I(v))
}

/// A constant of type `dt` from a float literal.
pub(crate) fn float_const(dt: DType, v: f64) -> Scalar {
    cast(dt, Scalar::F(v))
}

/// Whether a scalar counts as true (non-zero).
pub(crate) fn truthy(s: Scalar) -> bool {
    match s {
        Scalar::I(v) => v != 0,
        Scalar::F(x) => x != 0.0,
    }
}

/// `a op b` in type `dt` (the type of both operands).
pub(crate) fn binary(op: BinOp, dt: DType, a: Scalar, b: Scalar) -> R<Scalar> {
    match (a, b) {
        (Scalar::I(x), Scalar::I(y)) => Ok(Scalar::I(int_binary(op, dt, x, y))),
        (Scalar::F(x), Scalar::F(y)) => Ok(Scalar::F(float_binary(op, dt, x, y))),
        _ => Err(format!(
            "operands of {:?} ({}) mix integer and float values",
            op, dt
        )),
    }
}

/// `a op b`, yielding a bool (0/1). NaN compares unequal to everything (`!=` is true).
pub(crate) fn compare(op: CmpOp, a: Scalar, b: Scalar) -> R<Scalar> {
    let r = match (a, b) {
        (Scalar::I(x), Scalar::I(y)) => crate::te::arith::compare(op, x, y),
        (Scalar::F(x), Scalar::F(y)) => crate::te::arith::compare(op, x, y),
        _ => {
            return Err(format!(
                "operands of comparison {:?} mix integer and float values",
                op
            ))
        }
    };
    Ok(Scalar::I(r as i64))
}

/// Convert a scalar (of whatever type) to type `to`.
pub(crate) fn cast(to: DType, a: Scalar) -> Scalar {
    match a {
        Scalar::I(v) if to.is_float() => Scalar::F(int_to_float(to, v)),
        Scalar::I(v) => Scalar::I(norm_int(to, v)),
        Scalar::F(x) if to.is_float() => Scalar::F(round_float(to, x)),
        Scalar::F(x) => Scalar::I(float_to_int(to, x)),
    }
}

/// A math intrinsic in type `dt` (`args` has the function's arity).
pub(crate) fn math(f: MathFn, dt: DType, args: &[Scalar]) -> R<Scalar> {
    let arg = |k: usize| -> R<Scalar> {
        args.get(k)
            .copied()
            .ok_or_else(|| format!("{} takes {} argument(s)", f.name(), f.arity()))
    };
    match (dt, arg(0)?) {
        (_, Scalar::F(x)) if dt.is_float() => {
            let y = match f {
                MathFn::Pow => match arg(1)? {
                    Scalar::F(y) => y,
                    Scalar::I(_) => return Err("pow: mixed integer and float arguments".into()),
                },
                _ => 0.0,
            };
            Ok(Scalar::F(crate::te::arith::math_float(f, dt, x, y)))
        }
        (DType::I32 | DType::I64, Scalar::I(v)) => match f {
            MathFn::Abs => Ok(Scalar::I(norm_int(dt, v.wrapping_abs()))),
            MathFn::Floor | MathFn::Ceil => Ok(Scalar::I(v)),
            _ => Err(format!(
                "math function {} applied to integer type {}",
                f.name(),
                dt
            )),
        },
        _ => Err(format!("math function {} applied to type {}", f.name(), dt)),
    }
}
