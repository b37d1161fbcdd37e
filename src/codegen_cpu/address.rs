//! Element addresses: `base + index * size`, with the index's sum reassociated by loop depth.
//!
//! An index such as `(io*4 + ii) * n + k + 8` is split into its added terms; terms are grouped
//! by the depth of the innermost loop variable they use and added to the base pointer from the
//! outermost group inward (`((base + outer << s) + inner << s) + 32`). Each partial pointer is
//! invariant in the deeper loops, so Cranelift hoists it, and the innermost step folds into
//! the x86 addressing mode; constant terms become the access's immediate offset.

use super::fngen::FnGen;
use super::repr::{elem_shift, Val};
use crate::error::{internal, Result};
use crate::te::{BinOp, DType, Expr, ExprNode};
use cranelift::prelude::*;

/// The terms of a sum of i64 values.
fn flatten_add<'e>(e: &'e Expr, out: &mut Vec<&'e Expr>) {
    match e.node() {
        ExprNode::Binary(BinOp::Add, a, b)
            if a.dtype() == DType::I64 && a.lanes() == 1 && b.lanes() == 1 =>
        {
            flatten_add(a, out);
            flatten_add(b, out);
        }
        _ => out.push(e),
    }
}

impl<'a, 'f> FnGen<'a, 'f> {
    /// An integer index value as i64.
    pub fn index_to_i64(&mut self, v: Val) -> Result<Value> {
        match v.dt {
            DType::I64 => Ok(v.v),
            DType::I32 => Ok(self.b.ins().sextend(types::I64, v.v)),
            DType::Bool => Ok(self.b.ins().uextend(types::I64, v.v)),
            _ => Err(internal(format!("buffer index of type {}", v.dt), self.src)),
        }
    }

    /// Lower a scalar index expression to an i64.
    pub fn scalar_index(&mut self, e: &Expr) -> Result<Value> {
        let v = self.gen_expr(e)?;
        if v.is_vec() {
            return Err(internal(
                format!("expected a scalar index, got {} lanes in {}", v.lanes, e),
                self.src,
            ));
        }
        self.index_to_i64(v)
    }

    /// `base + idx << log2(size of dt)`.
    pub fn elem_addr(&mut self, base: Value, idx: Value, dt: DType) -> Value {
        let sh = elem_shift(dt);
        let off = if sh == 0 {
            idx
        } else {
            self.b.ins().ishl_imm_s(idx, sh)
        };
        self.b.ins().iadd(base, off)
    }

    /// The loop depth an expression varies at (0: invariant in every loop).
    fn expr_depth(&self, e: &Expr) -> u32 {
        let mut d = 0;
        e.visit(&mut |x| {
            match x.node() {
                ExprNode::Var(v) => d = d.max(self.var_depth(v)),
                ExprNode::Load(..) => d = d.max(self.loop_depth()),
                _ => {}
            }
            true
        });
        d
    }

    /// Address of element `idx` (a scalar index expression) of a buffer of `dt` at `base`,
    /// as a pointer and an immediate byte offset.
    pub fn gen_elem_addr(&mut self, base: Value, idx: &Expr, dt: DType) -> Result<(Value, i32)> {
        if idx.dtype() != DType::I64 || idx.lanes() != 1 {
            let i = self.scalar_index(idx)?;
            return Ok((self.elem_addr(base, i, dt), 0));
        }
        let mut terms = Vec::new();
        flatten_add(idx, &mut terms);
        let mut konst: i64 = 0;
        let mut groups: Vec<(u32, Vec<&Expr>)> = Vec::new();
        for t in terms {
            if let Some(c) = t.as_int() {
                konst = konst.wrapping_add(c);
                continue;
            }
            let d = self.expr_depth(t);
            match groups.iter_mut().find(|(gd, _)| *gd == d) {
                Some((_, v)) => v.push(t),
                None => groups.push((d, vec![t])),
            }
        }
        groups.sort_by_key(|(d, _)| *d);
        let mut p = base;
        for (_, ts) in groups {
            let mut sum: Option<Value> = None;
            for t in ts {
                let v = self.scalar_index(t)?;
                sum = Some(match sum {
                    None => v,
                    Some(s) => self.b.ins().iadd(s, v),
                });
            }
            p = self.elem_addr(p, sum.expect("groups are non-empty"), dt);
        }
        let off = konst.wrapping_mul(dt.bytes() as i64);
        match i32::try_from(off) {
            Ok(o) => Ok((p, o)),
            Err(_) => Ok((self.b.ins().iadd_imm_s(p, off), 0)),
        }
    }
}
