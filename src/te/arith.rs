//! The scalar arithmetic of loopforge: the single definition of what every operator
//! computes on constants, shared by the reference interpreter and the simplifier's
//! constant folding (the CPU backend implements the same semantics in machine code).
//!
//! Integers are held as `i64` normalised to their type (`int32` wraps, `bool` is 0/1);
//! floats as `f64`, an `f32` value always exactly representable. Integer `/` and `%` are
//! floor division and modulo, 0 for a zero divisor; float `%` is truncated fmod; float
//! `min`/`max` propagate NaN and order `-0.0` below `+0.0`.

use super::{BinOp, CmpOp, DType, MathFn};

/// Normalise an integer to type `dt` (wrap to 32 bits for `int32`, 0/1 for `bool`).
pub fn norm_int(dt: DType, v: i64) -> i64 {
    match dt {
        DType::I32 => v as i32 as i64,
        DType::Bool => (v != 0) as i64,
        _ => v,
    }
}

macro_rules! floor_div_mod {
    ($div:ident, $rem:ident, $t:ty) => {
        /// Floor division; 0 when dividing by zero; `MIN / -1` wraps.
        pub fn $div(a: $t, b: $t) -> $t {
            if b == 0 {
                return 0;
            }
            let q = a.wrapping_div(b);
            if a.wrapping_rem(b) != 0 && ((a < 0) != (b < 0)) {
                q - 1
            } else {
                q
            }
        }
        /// Floor modulo (sign of the divisor); 0 when dividing by zero.
        pub fn $rem(a: $t, b: $t) -> $t {
            if b == 0 {
                return 0;
            }
            let r = a.wrapping_rem(b);
            if r != 0 && ((r < 0) != (b < 0)) {
                r + b
            } else {
                r
            }
        }
    };
}
floor_div_mod!(floordiv_i32, floormod_i32, i32);
floor_div_mod!(floordiv_i64, floormod_i64, i64);

macro_rules! float_min_max {
    ($min:ident, $max:ident, $t:ty) => {
        /// NaN-propagating minimum with `-0.0 < +0.0`.
        pub fn $min(x: $t, y: $t) -> $t {
            if x.is_nan() || y.is_nan() {
                <$t>::NAN
            } else if x < y {
                x
            } else if y < x {
                y
            } else if x.is_sign_negative() {
                x
            } else {
                y
            }
        }
        /// NaN-propagating maximum with `-0.0 < +0.0`.
        pub fn $max(x: $t, y: $t) -> $t {
            if x.is_nan() || y.is_nan() {
                <$t>::NAN
            } else if x > y {
                x
            } else if y > x {
                y
            } else if x.is_sign_positive() {
                x
            } else {
                y
            }
        }
    };
}
float_min_max!(fmin32, fmax32, f32);
float_min_max!(fmin64, fmax64, f64);

/// `x op y` on integers of type `dt`.
pub fn int_binary(op: BinOp, dt: DType, x: i64, y: i64) -> i64 {
    match dt {
        DType::I32 => {
            let (x, y) = (x as i32, y as i32);
            (match op {
                BinOp::Add => x.wrapping_add(y),
                BinOp::Sub => x.wrapping_sub(y),
                BinOp::Mul => x.wrapping_mul(y),
                BinOp::Div => floordiv_i32(x, y),
                BinOp::Mod => floormod_i32(x, y),
                BinOp::Min => x.min(y),
                BinOp::Max => x.max(y),
            }) as i64
        }
        _ => {
            let r = match op {
                BinOp::Add => x.wrapping_add(y),
                BinOp::Sub => x.wrapping_sub(y),
                BinOp::Mul => x.wrapping_mul(y),
                BinOp::Div => floordiv_i64(x, y),
                BinOp::Mod => floormod_i64(x, y),
                BinOp::Min => x.min(y),
                BinOp::Max => x.max(y),
            };
            norm_int(dt, r)
        }
    }
}

/// `x op y` on floats of type `dt` (f32 operations round to f32).
pub fn float_binary(op: BinOp, dt: DType, x: f64, y: f64) -> f64 {
    if dt == DType::F32 {
        let (x, y) = (x as f32, y as f32);
        (match op {
            BinOp::Add => x + y,
            BinOp::Sub => x - y,
            BinOp::Mul => x * y,
            BinOp::Div => x / y,
            BinOp::Mod => x % y,
            BinOp::Min => fmin32(x, y),
            BinOp::Max => fmax32(x, y),
        }) as f64
    } else {
        match op {
            BinOp::Add => x + y,
            BinOp::Sub => x - y,
            BinOp::Mul => x * y,
            BinOp::Div => x / y,
            BinOp::Mod => x % y,
            BinOp::Min => fmin64(x, y),
            BinOp::Max => fmax64(x, y),
        }
    }
}

/// `x op y` for any ordered scalars (NaN compares unequal to everything: `!=` is true).
pub fn compare<T: PartialOrd>(op: CmpOp, x: T, y: T) -> bool {
    match op {
        CmpOp::Eq => x == y,
        CmpOp::Ne => x != y,
        CmpOp::Lt => x < y,
        CmpOp::Le => x <= y,
        CmpOp::Gt => x > y,
        CmpOp::Ge => x >= y,
    }
}

macro_rules! math_fn {
    ($name:ident, $t:ty, $erf:path) => {
        /// Math intrinsic `f` in this float type (`y` is pow's exponent, ignored otherwise).
        #[inline]
        pub fn $name(f: MathFn, x: $t, y: $t) -> $t {
            match f {
                MathFn::Exp => x.exp(),
                MathFn::Log => x.ln(),
                MathFn::Sqrt => x.sqrt(),
                MathFn::Tanh => x.tanh(),
                MathFn::Sigmoid => 1.0 / (1.0 + (-x).exp()),
                MathFn::Erf => $erf(x),
                MathFn::Pow => x.powf(y),
                MathFn::Abs => x.abs(),
                MathFn::Floor => x.floor(),
                MathFn::Ceil => x.ceil(),
            }
        }
    };
}
math_fn!(math_f32, f32, libm::erff);
math_fn!(math_f64, f64, libm::erf);
