//! Inline vector math: `exp`, `sigmoid`, `tanh` and `erf` of f32 computed in the generated
//! code, four lanes at a time, instead of a call to a scalar Rust helper for every lane.
//!
//! `exp` is the algorithm of the `exp_f32` intrinsic (`intrinsics::exp`, whose module doc
//! gives it and its measured accuracy: at most 1 ulp from the correctly rounded result,
//! NaN passed through, infinity above `ln(f32::MAX)`, 0 far below the subnormals) with
//! the same operations in the same order: where FMA is native the results are the
//! intrinsic's AVX2 path bit for bit (each of its eight lanes is independent), without FMA
//! its portable path's. The integer part `n` of `x log2 e` is read from the bits of
//! `n + 1.5 * 2^23` (exact for `|n| < 2^22`; the clamped argument keeps `|n| <= 151`), so
//! no float-to-int conversion is needed. `sigmoid(x)` is `1 / (1 + exp(-x))`, the
//! interpreter's formula, with that `exp`; `tanh` is Cephes `tanhf` (an odd polynomial
//! below `|x| = 0.625`, `1 - 2 / (exp(2|x|) + 1)` with `x`'s sign above) on that `exp`;
//! `erf` an odd polynomial below `|x| = 1` and `1 - exp(-x^2) b(1 / |x|)` above, with
//! `x`'s sign (coefficients fitted by `scripts/fit_erf.py`). Measured against f64 over
//! about a million points (`tests_vmath.rs`): `exp` at most 1 ulp, `sigmoid` 2, `tanh`
//! 1, `erf` 2 (3 without FMA).
//!
//! A scalar goes through a vector (its lane 0), so the scalar tail of a vectorized loop
//! computes exactly what its vector body does.
//!
//! `sigmoid` is within 2 ulp where its result is a normal f32; below `x = -88.72` it is 0
//! (`exp(-x)` overflows), as the interpreter's formula gives in f32.
//!
//! Requires: `round` (SSE4.1's `roundps`, for the round to nearest even); the caller
//! keeps the Rust helper where it is missing. Ensures: NaN in, NaN out (`exp` and `erf`
//! return the input's NaN; `sigmoid` and `tanh` a NaN computed from it).

use super::fngen::FnGen;
use super::repr::Val;
use crate::error::Result;
use crate::intrinsics::activation::{ERF_A, ERF_B, TANH_Q, TANH_SMALL};
use crate::intrinsics::exp::{HI, LN2_HI, LN2_LO, LO, P};
use crate::te::{DType, MathFn};
use cranelift::prelude::*;

/// `1.5 * 2^23`: adding it to an integral float below `2^22` in magnitude puts the
/// integer in the low mantissa bits.
const SHIFTER: f32 = 12_582_912.0;

impl<'a, 'f> FnGen<'a, 'f> {
    /// `f(a)` computed inline when `f` is `exp`, `sigmoid`, `tanh` or `erf` of f32 (one or
    /// four lanes) and the target rounds natively; `None` where the caller should call
    /// the helper.
    pub(crate) fn inline_math(&mut self, f: MathFn, a: Val) -> Result<Option<Val>> {
        let inlined = matches!(
            f,
            MathFn::Exp | MathFn::Tanh | MathFn::Erf | MathFn::Sigmoid
        );
        if !inlined || a.dt != DType::F32 || !(a.lanes == 1 || a.lanes == 4) || !self.cx.round {
            return Ok(None);
        }
        let x = self.splat(a, 4)?.v;
        let v = match f {
            MathFn::Exp => self.exp_f32x4(x)?,
            MathFn::Tanh => self.tanh_f32x4(x)?,
            MathFn::Erf => self.erf_f32x4(x)?,
            MathFn::Sigmoid => {
                let neg = self.b.ins().fneg(x);
                let e = self.exp_f32x4(neg)?;
                let one = self.f32x4_const(1.0)?;
                let d = self.b.ins().fadd(one, e);
                self.b.ins().fdiv(one, d)
            }
            _ => return Ok(None), // not `inlined`
        };
        let v = if a.lanes == 1 {
            self.b.ins().extractlane(v, 0)
        } else {
            v
        };
        Ok(Some(Val { v, ..a }))
    }

    /// `exp` of the f32x4 `x` (the module doc).
    fn exp_f32x4(&mut self, x: Value) -> Result<Value> {
        let (hi, lo) = (self.f32x4_const(HI)?, self.f32x4_const(LO)?);
        // min then max with the constant as the second operand (x86's `minps`/`maxps`
        // patterns: a NaN lane comes out as the constant and is restored at the end).
        let lt = self.b.ins().fcmp(FloatCC::LessThan, x, hi);
        let xc = self.select_f32x4(lt, x, hi)?;
        let gt = self.b.ins().fcmp(FloatCC::LessThan, lo, xc);
        let xc = self.select_f32x4(gt, xc, lo)?;
        let log2e = self.f32x4_const(std::f32::consts::LOG2_E)?;
        let t = self.b.ins().fmul(xc, log2e);
        let n = self.b.ins().nearest(t);
        let (c_hi, c_lo) = (self.f32x4_const(LN2_HI)?, self.f32x4_const(LN2_LO)?);
        let r = self.mul_sub(xc, n, c_hi);
        let r = self.mul_sub(r, n, c_lo);
        let z = self.b.ins().fmul(r, r);
        let p = self.poly(&P, r)?;
        let e = self.mul_add(p, z, r);
        let one = self.f32x4_const(1.0)?;
        let e = self.b.ins().fadd(e, one);
        // 2^n as two factors 2^(n >> 1) 2^(n - (n >> 1)): a subnormal result is rounded
        // once, by the last product.
        let shifter = self.f32x4_const(SHIFTER)?;
        let shifted = self.b.ins().fadd(n, shifter);
        let bits = self.lanes_as(types::I32X4, shifted);
        let base = self.i32x4_const(SHIFTER.to_bits() as i32);
        let ni = self.b.ins().isub(bits, base);
        let n1 = self.b.ins().sshr_imm_u(ni, 1);
        let n2 = self.b.ins().isub(ni, n1);
        let bias = self.i32x4_const(127);
        let mut out = e;
        for k in [n1, n2] {
            let biased = self.b.ins().iadd(k, bias);
            let exp_bits = self.b.ins().ishl_imm_u(biased, 23);
            let scale = self.lanes_as(types::F32X4, exp_bits);
            out = self.b.ins().fmul(out, scale);
        }
        let nan = self.b.ins().fcmp(FloatCC::Unordered, x, x);
        self.select_f32x4(nan, x, out)
    }

    /// Lanes of `t` where the comparison result `mask` is set, of `f` elsewhere.
    fn select_f32x4(&mut self, mask: Value, t: Value, f: Value) -> Result<Value> {
        let lanes = |v| Val {
            v,
            dt: DType::F32,
            lanes: 4,
        };
        Ok(self.blend(mask, lanes(t), lanes(f))?.v)
    }

    /// `tanh` of the f32x4 `x` (Cephes `tanhf`) as `tanh(|x|)` with the sign of `x`:
    /// below `|x| = 0.625` the odd polynomial `z + z^3 q(z^2)` (`z = |x|`), above it `1 -
    /// 2 / (exp(2z) + 1)` (1 once `exp` overflows); both computed, the lane's chosen. NaN
    /// takes the second form, which passes it through.
    fn tanh_f32x4(&mut self, x: Value) -> Result<Value> {
        let (z, sign) = self.abs_and_sign(x);
        // Large: 1 - 2 / (exp(2z) + 1).
        let two_z = self.b.ins().fadd(z, z);
        let e = self.exp_f32x4(two_z)?;
        let (one, two) = (self.f32x4_const(1.0)?, self.f32x4_const(2.0)?);
        let d = self.b.ins().fadd(e, one);
        let q = self.b.ins().fdiv(two, d);
        let large = self.b.ins().fsub(one, q);
        // Small: z + z^3 q(z^2).
        let z2 = self.b.ins().fmul(z, z);
        let p = self.poly(&TANH_Q, z2)?;
        let pz2 = self.b.ins().fmul(p, z2);
        let small = self.mul_add(pz2, z, z);
        let limit = self.f32x4_const(TANH_SMALL)?;
        let is_small = self.b.ins().fcmp(FloatCC::LessThan, z, limit);
        // tanh(|x|) >= 0 (+0 at 0): x's sign ORed in (-0 stays -0, NaN stays NaN).
        let t = self.select_f32x4(is_small, small, large)?;
        Ok(self.with_sign(t, sign))
    }

    /// `erf` of the f32x4 `x` as `erf(|x|)` with the sign of `x`: below `|x| = 1` the odd
    /// polynomial `z a(z^2)` (`z = |x|`), above it `1 - exp(-z^2) b(1 / z)` (`erfc(z)
    /// e^(z^2)` is smooth in `1 / z`; 1 once `exp(-z^2)` underflows); both computed, the
    /// lane's chosen. NaN takes the second form, which passes it through.
    fn erf_f32x4(&mut self, x: Value) -> Result<Value> {
        let (z, sign) = self.abs_and_sign(x);
        let z2 = self.b.ins().fmul(z, z);
        let a = self.poly(&ERF_A, z2)?;
        let small = self.b.ins().fmul(a, z);
        let one = self.f32x4_const(1.0)?;
        let t = self.b.ins().fdiv(one, z);
        let b = self.poly(&ERF_B, t)?;
        let neg_z2 = self.b.ins().fneg(z2);
        let e = self.exp_f32x4(neg_z2)?;
        let erfc = self.b.ins().fmul(e, b);
        let large = self.b.ins().fsub(one, erfc);
        let is_small = self.b.ins().fcmp(FloatCC::LessThan, z, one);
        let r = self.select_f32x4(is_small, small, large)?;
        let r = self.with_sign(r, sign);
        // NaN as it came (`-z^2` flipped its sign on the way).
        let nan = self.b.ins().fcmp(FloatCC::Unordered, x, x);
        self.select_f32x4(nan, x, r)
    }

    /// `|x|` and the sign bits of `x` (an i32x4 mask of them).
    fn abs_and_sign(&mut self, x: Value) -> (Value, Value) {
        let bits = self.lanes_as(types::I32X4, x);
        let sign_mask = self.i32x4_const(i32::MIN);
        let sign = self.b.ins().band(bits, sign_mask);
        let magnitude = self.b.ins().band_not(bits, sign_mask);
        (self.lanes_as(types::F32X4, magnitude), sign)
    }

    /// The non-negative `r` (NaN included) with the sign bits `sign` ORed in.
    fn with_sign(&mut self, r: Value, sign: Value) -> Value {
        let bits = self.lanes_as(types::I32X4, r);
        let bits = self.b.ins().bor(bits, sign);
        self.lanes_as(types::F32X4, bits)
    }

    /// The polynomial with coefficients `c` (highest degree first) at `x`, by Horner.
    fn poly(&mut self, c: &[f32], x: Value) -> Result<Value> {
        let mut p = self.f32x4_const(c[0])?;
        for v in &c[1..] {
            let v = self.f32x4_const(*v)?;
            p = self.mul_add(p, x, v);
        }
        Ok(p)
    }

    /// `a * b + c`, fused where FMA is native.
    fn mul_add(&mut self, a: Value, b: Value, c: Value) -> Value {
        if self.cx.fma {
            self.b.ins().fma(a, b, c)
        } else {
            let m = self.b.ins().fmul(a, b);
            self.b.ins().fadd(m, c)
        }
    }

    /// `x - a * b`, fused where FMA is native.
    fn mul_sub(&mut self, x: Value, a: Value, b: Value) -> Value {
        if self.cx.fma {
            let na = self.b.ins().fneg(a);
            self.b.ins().fma(na, b, x)
        } else {
            let m = self.b.ins().fmul(a, b);
            self.b.ins().fsub(x, m)
        }
    }

    /// `v` in four lanes, through `FnGen::splat` (in a loop of a function that calls an
    /// intrinsic, read from memory rather than kept in a register across the calls).
    fn f32x4_const(&mut self, v: f32) -> Result<Value> {
        let s = self.b.ins().f32const(v);
        Ok(self.splat(Val::scalar(s, DType::F32), 4)?.v)
    }

    fn i32x4_const(&mut self, v: i32) -> Value {
        self.vconst_ints(types::I32X4, &[v as i64; 4])
    }
}
