//! Type conversions with loopforge's semantics: float->int truncates and saturates (NaN -> 0,
//! as Rust `as`), int/float->bool is `!= 0`, bool->number is 0/1, ints widen by sign
//! extension and narrow by truncation. `float16`/`bfloat16` convert through f32: to a half,
//! the value is converted to f32 and rounded; from a half, its exact f32 is converted.

use super::fngen::FnGen;
use super::repr::{scalar_type, val_type, Val};
use crate::error::Result;
use crate::te::DType;
use cranelift::prelude::*;

impl<'a, 'f> FnGen<'a, 'f> {
    /// Convert `val` to `to` (lane count preserved).
    pub fn cast(&mut self, val: Val, to: DType) -> Result<Val> {
        if val.dt == to {
            return Ok(val);
        }
        if val.lanes == 1 {
            let v = self.cast_scalar(val.v, val.dt, to)?;
            return Ok(Val::scalar(v, to));
        }
        let lanes = val.lanes;
        let to_ty = val_type(to, lanes)?;
        let from_ty = val_type(val.dt, lanes)?;
        let v = val.v;
        // Vector fast paths (same lane count and width); everything else lane by lane.
        let fast = match (val.dt, to) {
            (DType::I32, DType::F32) | (DType::I64, DType::F64) => {
                Some(self.b.ins().fcvt_from_sint(to_ty, v))
            }
            (DType::F32, DType::I32) => Some(self.b.ins().fcvt_to_sint_sat(to_ty, v)),
            (DType::I32 | DType::I64, DType::Bool) if from_ty.lane_bits() == to_ty.lane_bits() => {
                let z = self.b.ins().iconst(from_ty.lane_type(), 0);
                let z = self.b.ins().splat(from_ty, z);
                Some(self.b.ins().icmp(IntCC::NotEqual, v, z))
            }
            (DType::F32 | DType::F64, DType::Bool) if from_ty.lane_bits() == to_ty.lane_bits() => {
                let z = self.iconst_of(val.dt, 0);
                let z = self.b.ins().splat(from_ty, z);
                Some(self.b.ins().fcmp(FloatCC::NotEqual, v, z))
            }
            (DType::Bool, DType::I32 | DType::I64) if from_ty.lane_bits() == to_ty.lane_bits() => {
                let one = self.iconst_of(to, 1);
                let one = self.b.ins().splat(to_ty, one);
                Some(self.b.ins().band(v, one))
            }
            _ => None,
        };
        if let Some(v) = fast {
            return Ok(Val { v, dt: to, lanes });
        }
        self.map_lanes(&[val], lanes, to, &mut |g, a| {
            g.cast_scalar(a[0].v, a[0].dt, to)
        })
    }

    /// Convert one scalar `v` of `from` to `to`.
    pub fn cast_scalar(&mut self, v: Value, from: DType, to: DType) -> Result<Value> {
        use DType::*;
        if from == to {
            return Ok(v);
        }
        if from.is_half() {
            let x = self.half_to_f32(v, from)?;
            return self.cast_scalar(x, F32, to);
        }
        if to.is_half() {
            let x = self.cast_scalar(v, from, F32)?;
            return self.f32_to_half(x, to);
        }
        let to_ty = scalar_type(to);
        Ok(match (from, to) {
            _ if from == to => v,
            (I32, I64) => self.b.ins().sextend(to_ty, v),
            (I64, I32) => self.b.ins().ireduce(to_ty, v),
            (I32 | I64, F32 | F64) => self.b.ins().fcvt_from_sint(to_ty, v),
            (F32 | F64, I32 | I64) => self.b.ins().fcvt_to_sint_sat(to_ty, v),
            (F32, F64) => self.b.ins().fpromote(to_ty, v),
            (F64, F32) => self.b.ins().fdemote(to_ty, v),
            (I32 | I64, Bool) => self.b.ins().icmp_imm_s(IntCC::NotEqual, v, 0),
            (F32 | F64, Bool) => {
                let z = self.iconst_of(from, 0);
                self.b.ins().fcmp(FloatCC::NotEqual, v, z)
            }
            (Bool, I32 | I64) => self.b.ins().uextend(to_ty, v),
            (Bool, F32 | F64) => {
                let w = self.b.ins().uextend(types::I32, v);
                self.b.ins().fcvt_from_sint(to_ty, w)
            }
            _ => unreachable!("all dtype pairs are covered"),
        })
    }
}
