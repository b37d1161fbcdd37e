//! The scalar arithmetic of loopforge: the single definition of what every operator
//! computes on constants, shared by the reference interpreter and the simplifier's
//! constant folding (the CPU backend implements the same semantics in machine code).
//!
//! Integers are held as `i64` normalised to their type (`int32` wraps, `bool` is 0/1);
//! floats as `f64`, an `f32`, `f16` or `bf16` value always exactly representable in its
//! type. Integer `/` and `%` are floor division and modulo, 0 for a zero divisor; float
//! `%` is truncated fmod; float `min`/`max` propagate NaN and order `-0.0` below `+0.0`.
//!
//! Half precision (`float16`: IEEE binary16; `bfloat16`: f32's sign and exponent with 8
//! significant bits): every operation — arithmetic, `min`/`max`, `%`, math intrinsics —
//! is done in f32 on the (exact) f32 values of its operands and the result rounded to the
//! half type, to nearest, ties to even, overflowing to infinity, NaN staying NaN. Nothing
//! is fused: `a * b + c` rounds after the product and after the sum. Conversions to and
//! from halves go through f32: `f64 -> f16` rounds to f32 then to f16, `int -> bf16`
//! converts to f32 (rounding once) then rounds to bf16, `f16 -> int` truncates the exact
//! f32 value. The roundings are the `half` crate's (`f16::from_f32`, `bf16::from_f32`).

use super::{BinOp, CmpOp, DType, MathFn};
use half::{bf16, f16};

/// The f32 `x` rounded to type `dt` and widened back to f32: a half type rounds to
/// nearest even (see the module doc); any other type leaves `x` unchanged.
#[inline]
pub fn round_f32(dt: DType, x: f32) -> f32 {
    match dt {
        DType::F16 => f16::from_f32(x).to_f32(),
        DType::BF16 => bf16::from_f32(x).to_f32(),
        _ => x,
    }
}

/// The f64 `x` rounded to float type `dt`: `f64` unchanged, `f32` rounded once, `f16` and
/// `bf16` rounded to f32 and then to the half type (conversions go through f32).
#[inline]
pub fn round_float(dt: DType, x: f64) -> f64 {
    match dt {
        DType::F32 | DType::F16 | DType::BF16 => round_f32(dt, x as f32) as f64,
        _ => x,
    }
}

/// The bits of the half type `dt` (`float16` or `bfloat16`) nearest to `x` (ties to even).
///
/// # Panics
/// If `dt` is not a half type.
#[inline]
pub fn half_bits_from_f32(dt: DType, x: f32) -> u16 {
    match dt {
        DType::F16 => f16::from_f32(x).to_bits(),
        DType::BF16 => bf16::from_f32(x).to_bits(),
        _ => panic!("half_bits_from_f32: {} is not a half type", dt),
    }
}

/// The (exact) f32 value of the bits of a half type `dt` (`float16` or `bfloat16`).
///
/// # Panics
/// If `dt` is not a half type.
#[inline]
pub fn half_bits_to_f32(dt: DType, bits: u16) -> f32 {
    match dt {
        DType::F16 => f16::from_bits(bits).to_f32(),
        DType::BF16 => bf16::from_bits(bits).to_f32(),
        _ => panic!("half_bits_to_f32: {} is not a half type", dt),
    }
}

/// The integer `v` converted to float type `dt`: `f64` directly, `f32` rounded once,
/// halves through f32 (`v as f32`, then rounded to the half type).
#[inline]
pub fn int_to_float(dt: DType, v: i64) -> f64 {
    match dt {
        DType::F64 => v as f64,
        _ => round_f32(dt, v as f32) as f64,
    }
}

/// The float `x` converted to integer type `dt`: truncating toward zero and saturating
/// (NaN -> 0, as Rust's `as`); `bool` is `x != 0`. A half's value is exactly its f32's,
/// so this is also the half -> f32 -> int conversion.
#[inline]
pub fn float_to_int(dt: DType, x: f64) -> i64 {
    match dt {
        DType::I32 => x as i32 as i64,
        DType::Bool => (x != 0.0) as i64,
        _ => x as i64,
    }
}

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

/// `x op y` in f32 (for `f32` and, followed by a rounding, for the half types).
#[inline]
pub fn f32_binary(op: BinOp, x: f32, y: f32) -> f32 {
    match op {
        BinOp::Add => x + y,
        BinOp::Sub => x - y,
        BinOp::Mul => x * y,
        BinOp::Div => x / y,
        BinOp::Mod => x % y,
        BinOp::Min => fmin32(x, y),
        BinOp::Max => fmax32(x, y),
    }
}

/// `x op y` on floats of type `dt` (f32 operations round to f32; half operations are done
/// in f32 and rounded to the half type).
pub fn float_binary(op: BinOp, dt: DType, x: f64, y: f64) -> f64 {
    if dt != DType::F64 {
        round_f32(dt, f32_binary(op, x as f32, y as f32)) as f64
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
                MathFn::Log1p => x.ln_1p(),
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

/// Math intrinsic `f` on floats of type `dt` (`y` is pow's exponent): `f64` in f64, `f32`
/// in f32, halves in f32 with the result rounded to the half type.
pub fn math_float(f: MathFn, dt: DType, x: f64, y: f64) -> f64 {
    if dt == DType::F64 {
        math_f64(f, x, y)
    } else {
        round_f32(dt, math_f32(f, x as f32, y as f32)) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both NaN, or the same bits.
    fn same(a: f64, b: f64) -> bool {
        (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits()
    }

    /// Every midpoint between two neighbouring finite f16 values rounds to the one with the
    /// even significand, and points just off the midpoint to the nearer one (checked on the
    /// bit patterns, independently of how `half` computes it).
    #[test]
    fn f16_rounds_to_nearest_even() {
        for k in 0u16..0x7bff {
            let lo = f16::from_bits(k).to_f64();
            let hi = f16::from_bits(k + 1).to_f64();
            let mid = (lo + hi) / 2.0; // exact in f64, and in f32 too
            let even = if k % 2 == 0 { lo } else { hi };
            assert_eq!(
                round_float(DType::F16, mid),
                even,
                "midpoint above bits {:#x}",
                k
            );
            assert_eq!(round_float(DType::F16, -mid), -even);
            let below = f32::from_bits((mid as f32).to_bits() - 1) as f64;
            let above = f32::from_bits((mid as f32).to_bits() + 1) as f64;
            if mid > 0.0 {
                assert_eq!(
                    round_float(DType::F16, below),
                    lo,
                    "below the midpoint of {:#x}",
                    k
                );
                assert_eq!(
                    round_float(DType::F16, above),
                    hi,
                    "above the midpoint of {:#x}",
                    k
                );
            }
            // Values of the type are kept exactly.
            assert_eq!(round_float(DType::F16, lo), lo);
        }
        // Overflow: the midpoint between the largest finite value and the next power of two
        // (65520) rounds to infinity; anything below it to 65504.
        assert_eq!(round_float(DType::F16, 65519.99), 65504.0);
        assert_eq!(round_float(DType::F16, 65520.0), f64::INFINITY);
        assert_eq!(round_float(DType::F16, -1e9), f64::NEG_INFINITY);
        // Subnormals: half the smallest subnormal ties to zero, a little more rounds up.
        let tiny = 2f64.powi(-24);
        assert_eq!(round_float(DType::F16, tiny / 2.0), 0.0);
        assert_eq!(round_float(DType::F16, tiny * 0.5000001), tiny);
        assert_eq!(round_float(DType::F16, tiny * 1.5), 2.0 * tiny);
        assert!(round_float(DType::F16, f64::NAN).is_nan());
    }

    /// The same for bfloat16, whose neighbours are f32 bit patterns `k << 16`.
    #[test]
    fn bf16_rounds_to_nearest_even() {
        for k in (0u32..0x7f7f).step_by(7).chain(0x7f70..0x7f7f) {
            let lo = f32::from_bits(k << 16);
            let hi = f32::from_bits((k + 1) << 16);
            let mid = f32::from_bits((k << 16) | 0x8000);
            let even = if k % 2 == 0 { lo } else { hi };
            assert_eq!(
                round_f32(DType::BF16, mid),
                even,
                "midpoint above bits {:#x}",
                k
            );
            assert_eq!(round_f32(DType::BF16, -mid), -even);
            let below = f32::from_bits(((k << 16) | 0x8000) - 1);
            let above = f32::from_bits(((k << 16) | 0x8000) + 1);
            assert_eq!(round_f32(DType::BF16, below), lo);
            assert_eq!(round_f32(DType::BF16, above), hi);
        }
        // f32::MAX is above the midpoint between the largest bf16 and 2^128: infinity.
        assert_eq!(round_f32(DType::BF16, f32::MAX), f32::INFINITY);
        assert_eq!(round_f32(DType::BF16, 257.0), 256.0); // tie, to even
        assert_eq!(round_f32(DType::BF16, 259.0), 260.0); // tie, to even
        let nan = round_f32(DType::BF16, f32::from_bits(0x7f80_0001));
        assert!(
            nan.is_nan(),
            "a NaN whose payload is in the low bits stays NaN"
        );
        // The bits helpers agree with the rounding and read back exactly.
        for x in [0.1f32, -3.75, 1e-30, 6.0e4, 1.0 + 1.0 / 256.0] {
            for dt in [DType::F16, DType::BF16] {
                let b = half_bits_from_f32(dt, x);
                assert_eq!(half_bits_to_f32(dt, b), round_f32(dt, x), "{} {}", dt, x);
            }
        }
    }

    /// Half arithmetic is f32 arithmetic rounded after every operation (never fused).
    #[test]
    fn half_arithmetic_rounds_after_every_operation() {
        let f = |dt: DType, a: f64, b: f64, c: f64| {
            let p = float_binary(BinOp::Mul, dt, a, b);
            float_binary(BinOp::Add, dt, p, c)
        };
        // (1 + 2^-10)^2 = 1 + 2^-9 + 2^-20: the product rounds to 1 + 2^-9, so adding
        // -(1 + 2^-9) gives exactly 0 (a fused multiply-add would give 2^-20).
        let a = 1.0 + 2f64.powi(-10);
        let c = -(1.0 + 2f64.powi(-9));
        assert_eq!(f(DType::F16, a, a, c), 0.0);
        assert_eq!(f(DType::F32, a, a, c), 2f64.powi(-20));
        // The same for bfloat16 with its 8 significant bits.
        let a = 1.0 + 2f64.powi(-7);
        let c = -(1.0 + 2f64.powi(-6));
        assert_eq!(f(DType::BF16, a, a, c), 0.0);
        // Ties to even on a sum: 1 + 2^-11 is halfway between 1 and 1 + 2^-10.
        let h = 2f64.powi(-11);
        assert_eq!(float_binary(BinOp::Add, DType::F16, 1.0, h), 1.0);
        assert_eq!(
            float_binary(BinOp::Add, DType::F16, 1.0 + 2.0 * h, h),
            1.0 + 4.0 * h
        );
        // Overflow to infinity, division, min/max, fmod.
        assert_eq!(
            float_binary(BinOp::Mul, DType::F16, 256.0, 256.0),
            f64::INFINITY
        );
        assert_eq!(float_binary(BinOp::Mul, DType::BF16, 256.0, 256.0), 65536.0);
        assert_eq!(
            float_binary(BinOp::Div, DType::F16, 1.0, 3.0),
            f16::from_f32(1.0 / 3.0).to_f64()
        );
        assert_eq!(
            float_binary(BinOp::Div, DType::F16, 1.0, 3.0),
            0.333251953125
        );
        assert!(float_binary(BinOp::Max, DType::F16, f64::NAN, 1.0).is_nan());
        assert_eq!(
            float_binary(BinOp::Min, DType::BF16, -0.0, 0.0).to_bits(),
            (-0.0f64).to_bits()
        );
        assert_eq!(float_binary(BinOp::Mod, DType::F16, 7.5, 2.0), 1.5);
        // Against the half crate's own operators (f32 then round), on many operand pairs.
        let vals: Vec<f64> = (0..40)
            .map(|i| round_float(DType::F16, (i as f64 - 17.3) * 0.731))
            .collect();
        for &x in &vals {
            for &y in &vals {
                let (hx, hy) = (f16::from_f64(x), f16::from_f64(y));
                for (op, want) in [
                    (BinOp::Add, hx + hy),
                    (BinOp::Sub, hx - hy),
                    (BinOp::Mul, hx * hy),
                    (BinOp::Div, hx / hy),
                ] {
                    let got = float_binary(op, DType::F16, x, y);
                    assert!(same(got, want.to_f64()), "{:?} {} {}: {}", op, x, y, got);
                }
                let (bx, by) = (bf16::from_f32(x as f32), bf16::from_f32(y as f32));
                let got = float_binary(BinOp::Mul, DType::BF16, bx.to_f64(), by.to_f64());
                assert!(same(got, (bx * by).to_f64()));
            }
        }
    }

    /// Conversions to halves go through f32 (two roundings), from halves through their
    /// exact f32 value.
    #[test]
    fn half_conversions_go_through_f32() {
        // f64 -> f16: 1 + 2^-11 + 2^-40 is above the f16 midpoint, but rounds to f32 as
        // exactly the midpoint, which then ties to even (1.0).
        let x = 1.0 + 2f64.powi(-11) + 2f64.powi(-40);
        assert_eq!(round_float(DType::F16, x), 1.0);
        // int -> bf16: 2^24 + 2^16 + 1 rounds to f32 as 2^24 + 2^16, the bf16 midpoint,
        // which ties to 2^24 (direct rounding would give 2^24 + 2^17).
        let v = (1i64 << 24) + (1 << 16) + 1;
        assert_eq!(int_to_float(DType::BF16, v), (1i64 << 24) as f64);
        assert_eq!(int_to_float(DType::F16, 65519), 65504.0);
        assert_eq!(int_to_float(DType::F16, 65520), f64::INFINITY);
        assert_eq!(int_to_float(DType::F16, -2049), -2048.0); // tie, to even
        assert_eq!(int_to_float(DType::F16, 2051), 2052.0); // tie, to even
                                                            // half -> int truncates and saturates; NaN -> 0.
        assert_eq!(float_to_int(DType::I32, -2.75), -2);
        assert_eq!(float_to_int(DType::I32, 65504.0), 65504);
        let big = bf16::from_f32(3e38).to_f64();
        assert_eq!(float_to_int(DType::I32, big), i32::MAX as i64);
        assert_eq!(float_to_int(DType::I64, -big), i64::MIN);
        assert_eq!(float_to_int(DType::I32, f64::NAN), 0);
        assert_eq!(float_to_int(DType::Bool, -0.0), 0);
    }

    /// Math intrinsics on halves are the f32 function rounded once.
    #[test]
    fn half_math_is_f32_rounded() {
        assert_eq!(math_float(MathFn::Exp, DType::F16, 1.0, 0.0), 2.71875);
        assert_eq!(math_float(MathFn::Sqrt, DType::BF16, 2.0, 0.0), 1.4140625);
        for i in -20..20 {
            let x = round_float(DType::F16, i as f64 * 0.37);
            let want = f16::from_f32(math_f32(MathFn::Tanh, x as f32, 0.0)).to_f64();
            assert!(same(math_float(MathFn::Tanh, DType::F16, x, 0.0), want));
            let want = f16::from_f32(math_f32(MathFn::Sigmoid, x as f32, 0.0)).to_f64();
            assert!(same(math_float(MathFn::Sigmoid, DType::F16, x, 0.0), want));
        }
        // f32 and f64 are unchanged by the rounding step.
        assert_eq!(
            math_float(MathFn::Exp, DType::F32, 1.0, 0.0),
            1f32.exp() as f64
        );
        assert_eq!(math_float(MathFn::Exp, DType::F64, 1.0, 0.0), 1f64.exp());
    }
}
