//! Buffer loads and stores: flat index -> address (`base + index << log2(size)`), contiguous
//! vector accesses for stride-1 ramps, two vector loads and a shuffle for 4-lane stride-2
//! loads of 32-bit elements, per-lane gathers/scatters for other strides and for
//! arbitrary vector indices, and scalar-load-plus-splat for broadcast indices.

use super::fngen::FnGen;
use super::repr::{mem_type, val_type, Val};
use crate::error::{internal, Result};
use crate::lower::ir::Buffer;
use crate::te::{DType, Expr, ExprNode};
use cranelift::codegen::ir::AliasRegionData;
use cranelift::prelude::*;

/// A lowered buffer access: where each lane lives.
enum Index {
    /// One element at `addr + off`.
    Scalar { addr: Value, off: i32 },
    /// Lane `i` at `addr + off + i * stride * size`.
    Ramp {
        addr: Value,
        off: i32,
        stride: i64,
        lanes: u32,
    },
    /// The element at `addr + off` in every lane.
    Broadcast { addr: Value, off: i32, lanes: u32 },
    /// One arbitrary address per lane.
    Lanes(Vec<Value>),
}

impl Index {
    fn lanes(&self) -> u32 {
        match self {
            Index::Scalar { .. } => 1,
            Index::Ramp { lanes, .. } | Index::Broadcast { lanes, .. } => *lanes,
            Index::Lanes(v) => v.len() as u32,
        }
    }
}

/// Flags for scalar accesses: buffers are valid and elements naturally aligned.
fn scalar_flags() -> MemFlagsData {
    MemFlagsData::trusted()
}

/// Flags for vector accesses: valid memory, but no alignment beyond the element's.
fn vector_flags() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}

impl<'a, 'f> FnGen<'a, 'f> {
    fn gen_index(&mut self, buf: &Buffer, base: Value, indices: &[Expr]) -> Result<Index> {
        if indices.len() != 1 {
            return Err(internal(
                format!(
                    "access to {} has {} indices; the CPU backend needs one flat index (storage flattening missing?)",
                    buf.name(),
                    indices.len()
                ),
                self.src,
            ));
        }
        let dt = buf.dtype();
        let e = &indices[0];
        match e.node() {
            ExprNode::Ramp(b, stride, lanes) if b.lanes() == 1 => {
                let (addr, off) = self.gen_elem_addr(base, b, dt)?;
                Ok(Index::Ramp {
                    addr,
                    off,
                    stride: *stride,
                    lanes: *lanes,
                })
            }
            ExprNode::Broadcast(x, lanes) if x.lanes() == 1 => {
                let (addr, off) = self.gen_elem_addr(base, x, dt)?;
                Ok(Index::Broadcast {
                    addr,
                    off,
                    lanes: *lanes,
                })
            }
            _ if e.lanes() == 1 => {
                let (addr, off) = self.gen_elem_addr(base, e, dt)?;
                Ok(Index::Scalar { addr, off })
            }
            _ => {
                let v = self.gen_expr(e)?;
                let mut out = Vec::with_capacity(v.lanes as usize);
                for i in 0..v.lanes {
                    let s = self.extract(v, i);
                    let s = self.index_to_i64(s)?;
                    out.push(self.elem_addr(base, s, dt));
                }
                Ok(Index::Lanes(out))
            }
        }
    }

    /// Address and offset of lane `i` of a ramp.
    pub(crate) fn lane_addr(
        &mut self,
        addr: Value,
        off: i32,
        i: u32,
        stride: i64,
        dt: DType,
    ) -> (Value, i32) {
        let lane = (i as i64)
            .wrapping_mul(stride)
            .wrapping_mul(dt.bytes() as i64)
            .wrapping_add(off as i64);
        match i32::try_from(lane) {
            Ok(o) => (addr, o),
            Err(_) => (self.b.ins().iadd_imm_s(addr, lane), 0),
        }
    }

    /// `flags` with the alias region of buffer `buf`: accesses to different buffers never
    /// alias (parameters that are written do not overlap other parameters), so Cranelift's
    /// alias analysis removes redundant loads across stores to other buffers.
    fn region_flags(&mut self, buf: &Buffer, flags: MemFlagsData) -> MemFlagsData {
        let next = self.regions.len() as u32;
        let region = match self.regions.get(buf.name()) {
            Some(r) => *r,
            None => {
                let r = self.b.func.dfg.alias_regions.insert(AliasRegionData {
                    user_id: next,
                    description: std::borrow::Cow::Owned(buf.name().to_string()),
                });
                self.regions.insert(buf.name().to_string(), r);
                r
            }
        };
        flags.with_alias_region(Some(region))
    }

    /// `flags` with `buf`'s alias region, for a load here (movable where that is safe:
    /// [`FnGen::movable_load_flags`]).
    pub(crate) fn load_flags(&mut self, buf: &Buffer, flags: MemFlagsData) -> MemFlagsData {
        let flags = self.region_flags(buf, flags);
        self.movable_load_flags(buf.name(), flags)
    }

    fn load_scalar(&mut self, flags: MemFlagsData, addr: Value, off: i32, dt: DType) -> Value {
        self.b.ins().load(mem_type(dt), flags, addr, off)
    }

    /// Lower `buf[indices]`.
    pub fn gen_load(&mut self, buf: &Buffer, indices: &[Expr]) -> Result<Val> {
        // A column of a transposed 4 x 4 block first: of a buffer in memory or in
        // variables (which would otherwise gather its lanes one by one).
        if let Some(v) = self.transposed_load(buf, indices) {
            #[cfg(test)]
            super::transpose_loads::TRANSPOSED_COLUMNS.with(|n| n.set(n.get() + 1));
            return Ok(v);
        }
        if let Some(v) = self.promoted_load(buf, indices)? {
            return Ok(v);
        }
        let dt = buf.dtype();
        let base = self.buf_ptr_or_err(buf.name())?;
        if self.frozen_here(buf.name()) {
            self.cx.frozen_loads += 1;
        }
        let sflags = self.load_flags(buf, scalar_flags());
        let idx = self.gen_index(buf, base, indices)?;
        if idx.lanes() > 1 {
            val_type(dt, idx.lanes())?;
        }
        match idx {
            Index::Scalar { addr, off } => {
                Ok(Val::scalar(self.load_scalar(sflags, addr, off, dt), dt))
            }
            Index::Broadcast { addr, off, lanes } => {
                let s = Val::scalar(self.load_scalar(sflags, addr, off, dt), dt);
                self.splat(s, lanes)
            }
            Index::Ramp {
                addr,
                off,
                stride,
                lanes,
            } => {
                if stride == 1 && dt != DType::Bool {
                    let ty = val_type(dt, lanes)?;
                    let flags = self.load_flags(buf, vector_flags());
                    let v = self.b.ins().load(ty, flags, addr, off);
                    return Ok(Val { v, dt, lanes });
                }
                if stride == 2 && lanes == 4 && dt.bytes() == 4 && dt != DType::Bool {
                    let flags = self.load_flags(buf, vector_flags());
                    return self.load_stride2x4(flags, addr, off, dt);
                }
                let mut vals = Vec::with_capacity(lanes as usize);
                for l in 0..lanes {
                    let (a, o) = self.lane_addr(addr, off, l, stride, dt);
                    vals.push(self.load_scalar(sflags, a, o, dt));
                }
                self.build_vec(dt, &vals)
            }
            Index::Lanes(addrs) => {
                let mut vals = Vec::with_capacity(addrs.len());
                for a in addrs {
                    vals.push(self.load_scalar(sflags, a, 0, dt));
                }
                self.build_vec(dt, &vals)
            }
        }
    }

    /// Lanes 0, 2, 4, 6 of the 32-bit elements from `addr + off`: two overlapping vector
    /// loads (elements 0..4 and 3..7, so nothing past the last lane is read) and one
    /// `shufps` picking lanes 0 and 2 of the first, 1 and 3 of the second (a stride-2
    /// window: pooling and strided convolutions).
    fn load_stride2x4(
        &mut self,
        flags: MemFlagsData,
        addr: Value,
        off: i32,
        dt: DType,
    ) -> Result<Val> {
        let ty = val_type(dt, 4)?;
        let lo = self.b.ins().load(ty, flags, addr, off);
        let (a3, o3) = self.lane_addr(addr, off, 3, 1, dt);
        let hi = self.b.ins().load(ty, flags, a3, o3);
        // Lanes 0 and 2 of `lo`, then lanes 1 and 3 of `hi`.
        let v = self.shuffle32(ty, lo, hi, [0, 2, 5, 7]);
        Ok(Val { v, dt, lanes: 4 })
    }

    /// Lower `buf[indices] = value`.
    pub fn gen_store(&mut self, buf: &Buffer, indices: &[Expr], value: &Expr) -> Result<()> {
        if self.promoted_store(buf, indices, value)? {
            return Ok(());
        }
        let dt = buf.dtype();
        let base = self.buf_ptr_or_err(buf.name())?;
        let idx = self.gen_index(buf, base, indices)?;
        let mut v = self.gen_expr(value)?;
        if v.dt != dt {
            v = self.cast(v, dt)?;
        }
        let lanes = idx.lanes();
        if v.lanes == 1 && lanes > 1 {
            v = self.splat(v, lanes)?;
        }
        if v.lanes != lanes {
            return Err(internal(
                format!(
                    "store to {} writes {} lanes at an index of {} lanes",
                    buf.name(),
                    v.lanes,
                    lanes
                ),
                self.src,
            ));
        }
        let flags = self.region_flags(buf, scalar_flags());
        let vflags = self.region_flags(buf, vector_flags());
        match idx {
            Index::Scalar { addr, off } => {
                self.b.ins().store(flags, v.v, addr, off);
            }
            Index::Broadcast { addr, off, lanes } => {
                // Every lane writes the same element: the last one wins.
                let s = self.extract(v, lanes - 1);
                self.b.ins().store(flags, s.v, addr, off);
            }
            Index::Ramp {
                addr,
                off,
                stride,
                lanes,
            } => {
                if stride == 1 && dt != DType::Bool {
                    self.b.ins().store(vflags, v.v, addr, off);
                    return Ok(());
                }
                for l in 0..lanes {
                    let s = self.extract(v, l);
                    let (a, o) = self.lane_addr(addr, off, l, stride, dt);
                    self.b.ins().store(flags, s.v, a, o);
                }
            }
            Index::Lanes(addrs) => {
                for (l, a) in addrs.into_iter().enumerate() {
                    let s = self.extract(v, l as u32);
                    self.b.ins().store(flags, s.v, a, 0);
                }
            }
        }
        Ok(())
    }
}
