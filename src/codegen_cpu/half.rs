//! `float16` and `bfloat16` values: they live as their 16 bits (an `I16`, or an `i16x8` for
//! a vector of eight), exactly as in memory, so loads, stores, selects and splats need
//! nothing special. Every operation on them converts its operands to f32 through the
//! `loopforge_{f16,bf16}_to_f32` helpers, computes in f32 and rounds the result back through
//! `loopforge_f32_to_{f16,bf16}` (round to nearest even): `te::arith`'s semantics, bit for
//! bit with the interpreter. Vectors are processed lane by lane, and nothing is contracted
//! into a fused multiply-add (a half `a * b + c` rounds twice).

use super::fngen::FnGen;
use super::helpers::{f32_to_half_helper, half_to_f32_helper, math_helper_name};
use super::repr::Val;
use crate::error::Result;
use crate::te::{BinOp, DType, MathFn};
use cranelift::prelude::*;

impl<'a, 'f> FnGen<'a, 'f> {
    /// The (exact) f32 value of the scalar half bits `v` (`I16`) of type `dt`.
    pub fn half_to_f32(&mut self, v: Value, dt: DType) -> Result<Value> {
        let w = self.b.ins().uextend(types::I32, v);
        Ok(self
            .call_helper(half_to_f32_helper(dt), &[w])?
            .expect("the conversion helper returns a value"))
    }

    /// The bits (`I16`) of the value of half type `dt` nearest to the f32 `x`.
    pub fn f32_to_half(&mut self, x: Value, dt: DType) -> Result<Value> {
        let w = self
            .call_helper(f32_to_half_helper(dt), &[x])?
            .expect("the conversion helper returns a value");
        Ok(self.b.ins().ireduce(types::I16, w))
    }

    /// Apply the f32 lowering `f` lane by lane to the f32 values of `args` (half values of
    /// one type; scalars are broadcast to the widest lane count). When `out` is a half type,
    /// `f` returns an f32 that is rounded to `out`; otherwise `f` returns a scalar of `out`.
    pub fn half_map(
        &mut self,
        args: &[Val],
        out: DType,
        f: &mut dyn FnMut(&mut Self, &[Value]) -> Result<Value>,
    ) -> Result<Val> {
        let lanes = args.iter().map(|a| a.lanes).max().unwrap_or(1);
        self.map_lanes(args, lanes, out, &mut |g, xs| {
            let mut fs = Vec::with_capacity(xs.len());
            for x in xs {
                fs.push(g.half_to_f32(x.v, x.dt)?);
            }
            let r = f(g, &fs)?;
            if out.is_half() {
                g.f32_to_half(r, out)
            } else {
                Ok(r)
            }
        })
    }

    /// `x op y` on two f32 values (fmod through its helper).
    pub fn f32_binary(&mut self, op: BinOp, x: Value, y: Value) -> Result<Value> {
        Ok(match op {
            BinOp::Add => self.b.ins().fadd(x, y),
            BinOp::Sub => self.b.ins().fsub(x, y),
            BinOp::Mul => self.b.ins().fmul(x, y),
            BinOp::Div => self.b.ins().fdiv(x, y),
            BinOp::Min => self.b.ins().fmin(x, y),
            BinOp::Max => self.b.ins().fmax(x, y),
            BinOp::Mod => {
                let name = math_helper_name(None, DType::F32).expect("f32 has an fmod helper");
                self.call_helper(name, &[x, y])?
                    .expect("fmod returns a value")
            }
        })
    }

    /// `a op b` on half values of one type: in f32, rounded back.
    pub fn half_binary(&mut self, op: BinOp, a: Val, b: Val) -> Result<Val> {
        let dt = a.dt;
        self.half_map(&[a, b], dt, &mut |g, x| g.f32_binary(op, x[0], x[1]))
    }

    /// Math intrinsic `f` on half values of one type: the f32 function (the same instruction
    /// or helper as for `float32`), rounded back.
    pub fn half_math(&mut self, f: MathFn, args: &[Val]) -> Result<Val> {
        let dt = args[0].dt;
        let round = self.cx.round;
        self.half_map(args, dt, &mut |g, x| {
            let native = match f {
                MathFn::Sqrt => Some(g.b.ins().sqrt(x[0])),
                MathFn::Abs => Some(g.b.ins().fabs(x[0])),
                MathFn::Floor if round => Some(g.b.ins().floor(x[0])),
                MathFn::Ceil if round => Some(g.b.ins().ceil(x[0])),
                _ => None,
            };
            if let Some(v) = native {
                return Ok(v);
            }
            let name = math_helper_name(Some(f), DType::F32).expect("f32 math helper exists");
            Ok(g.call_helper(name, x)?
                .expect("math helpers return a value"))
        })
    }
}
