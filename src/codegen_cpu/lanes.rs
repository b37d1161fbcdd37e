//! Vector plumbing: splats, per-lane extraction and reassembly, bool masks, and applying a
//! scalar lowering lane by lane (for operations with no vector instruction).

use super::fngen::FnGen;
use super::repr::{mask_lane_type, scalar_type, val_type, Val};
use crate::error::{internal, Result};
use crate::te::arith::{half_bits_from_f32, int_to_float};
use crate::te::DType;
use cranelift::codegen::ir::ConstantData;
use cranelift::prelude::*;

impl<'a, 'f> FnGen<'a, 'f> {
    /// `val` repeated over `lanes` lanes (unchanged when it already has them).
    pub fn splat(&mut self, val: Val, lanes: u32) -> Result<Val> {
        if val.lanes == lanes {
            return Ok(val);
        }
        if val.lanes != 1 {
            return Err(internal(
                format!(
                    "cannot broadcast a {}-lane value to {} lanes",
                    val.lanes, lanes
                ),
                self.src,
            ));
        }
        let ty = val_type(val.dt, lanes)?;
        if self.loop_depth() > 0 && self.calls_intrinsics {
            if let Some(v) = self.const_splat_in_memory(val.v, ty) {
                return Ok(Val {
                    v,
                    dt: val.dt,
                    lanes,
                });
            }
        }
        let s = if val.dt == DType::Bool {
            self.bool_to_mask_lane(val.v, lanes)?
        } else {
            val.v
        };
        Ok(Val {
            v: self.b.ins().splat(ty, s),
            dt: val.dt,
            lanes,
        })
    }

    /// A splat of the float constant `scalar` to the 16-byte vector type `ty` (inside a
    /// loop of a function that calls intrinsics), read from memory where it is used: a
    /// load from a slot of its own, which Cranelift keeps in place and may fold into the
    /// instruction using it. `None` when `scalar` is not a float constant or `ty` is not
    /// 16 bytes wide.
    ///
    /// Cranelift's egraph hoists a register splat of a constant to the function's entry,
    /// from where it is live through every loop; across a call (a tensorized kernel's
    /// micro-kernel: no vector register survives a call in the System V x86-64 ABI) it
    /// is then spilled, and the
    /// register allocator stores it back on each back edge of the loops that reload it,
    /// a store-to-load chain through the stack on every iteration (a ResNet stem's relu
    /// epilogue: +0.5 ms of 3.0). A slot per use site keeps redundant-load elimination
    /// from merging two sites into one value live between them. Functions without an
    /// intrinsic call keep register constants (a load per use would compete with the
    /// loop's own loads; helper calls of lane-wise math were not measured).
    fn const_splat_in_memory(&mut self, scalar: Value, ty: Type) -> Option<Value> {
        use cranelift::codegen::ir::{InstructionData, ValueDef};
        if ty.bytes() != 16 {
            return None;
        }
        let ValueDef::Result(inst, 0) = self.b.func.dfg.value_def(scalar) else {
            return None;
        };
        if ty.lane_type() != self.b.func.dfg.value_type(scalar) {
            return None;
        }
        let (bits, width) = match self.b.func.dfg.insts[inst] {
            InstructionData::UnaryIeee32 { imm, .. } => (u64::from(imm.bits()), 4),
            InstructionData::UnaryIeee64 { imm, .. } => (imm.bits(), 8),
            _ => return None,
        };
        let mut slot = Box::new(super::jit::ConstSlot([0; 16]));
        for lane in slot.0.chunks_exact_mut(width) {
            lane.copy_from_slice(&bits.to_le_bytes()[..width]);
        }
        self.cx.consts.push(slot);
        let ptr = self
            .cx
            .consts
            .last()
            .map_or(std::ptr::null(), |s| s.0.as_ptr());
        let addr = self.b.ins().iconst(types::I64, ptr as i64);
        // The lanes were written little-endian.
        let flags = MemFlagsData::trusted()
            .with_readonly()
            .with_endianness(codegen::ir::Endianness::Little);
        Some(self.b.ins().load(ty, flags, addr, 0))
    }

    /// Bring two operands to the same lane count by splatting a scalar side.
    pub fn unify_lanes(&mut self, a: Val, b: Val) -> Result<(Val, Val)> {
        let l = a.lanes.max(b.lanes);
        Ok((self.splat(a, l)?, self.splat(b, l)?))
    }

    /// A scalar bool (I8 0/1) as one lane of a mask with `lanes` lanes (all ones or zeros).
    pub fn bool_to_mask_lane(&mut self, v: Value, lanes: u32) -> Result<Value> {
        let lt = mask_lane_type(lanes)?;
        let w = if lt == types::I8 {
            v
        } else {
            self.b.ins().uextend(lt, v)
        };
        Ok(self.b.ins().ineg(w))
    }

    /// The vector of type `ty` (four 32-bit lanes) whose lanes are `lanes` of `a` then `b`
    /// (0..4: `a`'s, 4..8: `b`'s), one `shuffle` of their bytes.
    pub fn shuffle32(&mut self, ty: Type, a: Value, b: Value, lanes: [u8; 4]) -> Value {
        let little = MemFlagsData::new().with_endianness(codegen::ir::Endianness::Little);
        let mask: Vec<u8> = lanes.iter().flat_map(|&l| l * 4..l * 4 + 4).collect();
        let mask = self.b.func.dfg.immediates.push(ConstantData::from(mask));
        let a8 = self.b.ins().bitcast(types::I8X16, little, a);
        let b8 = self.b.ins().bitcast(types::I8X16, little, b);
        let v = self.b.ins().shuffle(a8, b8, mask);
        self.b.ins().bitcast(ty, little, v)
    }

    /// Lane `i` of a vector as a scalar (`I8` 0/1 for bool masks).
    pub fn extract(&mut self, val: Val, i: u32) -> Val {
        if val.lanes == 1 {
            return val;
        }
        let x = self.b.ins().extractlane(val.v, i as u8);
        let v = if val.dt == DType::Bool {
            self.b.ins().icmp_imm_s(IntCC::NotEqual, x, 0)
        } else {
            x
        };
        Val::scalar(v, val.dt)
    }

    /// A vector of `dt` from one scalar per lane (bools as `I8` 0/1).
    pub fn build_vec(&mut self, dt: DType, scalars: &[Value]) -> Result<Val> {
        let lanes = scalars.len() as u32;
        if lanes == 1 {
            return Ok(Val::scalar(scalars[0], dt));
        }
        let ty = val_type(dt, lanes)?;
        let mut lane_vals = Vec::with_capacity(scalars.len());
        for &s in scalars {
            lane_vals.push(if dt == DType::Bool {
                self.bool_to_mask_lane(s, lanes)?
            } else {
                s
            });
        }
        let mut v = self.b.ins().splat(ty, lane_vals[0]);
        for (i, &s) in lane_vals.iter().enumerate().skip(1) {
            v = self.b.ins().insertlane(v, s, i as u8);
        }
        Ok(Val { v, dt, lanes })
    }

    /// Apply a scalar lowering `f` lane by lane to `args` (scalars are broadcast), producing
    /// a value of `out_dt` with `lanes` lanes.
    pub fn map_lanes(
        &mut self,
        args: &[Val],
        lanes: u32,
        out_dt: DType,
        f: &mut dyn FnMut(&mut Self, &[Val]) -> Result<Value>,
    ) -> Result<Val> {
        let mut outs = Vec::with_capacity(lanes as usize);
        for i in 0..lanes {
            let lane_args: Vec<Val> = args.iter().map(|a| self.extract(*a, i)).collect();
            outs.push(f(self, &lane_args)?);
        }
        self.build_vec(out_dt, &outs)
    }

    /// An integer vector constant of type `ty` with the given lane values.
    pub fn vconst_ints(&mut self, ty: Type, lanes: &[i64]) -> Value {
        let bytes_per = ty.lane_type().bytes() as usize;
        let mut data = Vec::with_capacity(16);
        for &x in lanes {
            data.extend_from_slice(&x.to_le_bytes()[..bytes_per]);
        }
        let c = self.b.func.dfg.constants.insert(ConstantData::from(data));
        self.b.ins().vconst(ty, c)
    }

    /// The bits (`I16`) of the half-type `dt` constant `v` (a value of the type).
    pub fn half_const(&mut self, dt: DType, v: f64) -> Value {
        let bits = half_bits_from_f32(dt, v as f32);
        self.b.ins().iconst(types::I16, bits as i64)
    }

    /// A scalar constant of `dt` from an integer.
    pub fn iconst_of(&mut self, dt: DType, v: i64) -> Value {
        match dt {
            DType::F32 => self.b.ins().f32const(v as f32),
            DType::F64 => self.b.ins().f64const(v as f64),
            DType::F16 | DType::BF16 => self.half_const(dt, int_to_float(dt, v)),
            DType::Bool => self.b.ins().iconst(types::I8, (v != 0) as i64),
            DType::I32 => self.b.ins().iconst(types::I32, v as i32 as i64),
            DType::I64 => self.b.ins().iconst(scalar_type(dt), v),
        }
    }
}
