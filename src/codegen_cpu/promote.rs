//! Register promotion of small local buffers (scalar replacement): an `Allocate`d buffer
//! whose every access uses a constant index (after unrolling) lives in Cranelift variables
//! instead of memory: one variable per element, or per 128-bit chunk when it is accessed as
//! aligned stride-1 vectors. This keeps tile accumulators (`cache_write` + unroll +
//! vectorize) in registers and lets Cranelift remove the loads the stores used to block.
//! Loads may also be strided (`ramp(c, s, l)`, `s > 1`, a tile accumulated in vectors
//! of channels and copied out along positions): their lanes are gathered from the
//! variables, or, four columns of a 4 x 4 block together, transposed
//! (`transpose_loads.rs`).

use super::fngen::FnGen;
use super::repr::{val_type, Val};
use crate::error::{internal, Result};
use crate::lower::ir::{Buffer, ForKind, Stmt};
use crate::te::{DType, Expr, ExprNode};
use cranelift::prelude::*;

/// Most variables one promoted buffer may use.
const MAX_CHUNKS: u64 = 64;

/// A buffer living in variables.
pub(crate) struct Promoted {
    /// One variable per chunk of `lanes` elements.
    pub vars: Vec<Variable>,
    /// Elements per variable (1, or the vector width of the accesses).
    pub lanes: u32,
    /// Element type.
    pub dt: DType,
}

/// A constant access to a promoted buffer.
enum Access {
    /// Element `c`.
    Scalar(i64),
    /// Element `c` broadcast to `lanes` lanes (load only).
    Broadcast(i64, u32),
    /// Elements `c .. c + lanes`.
    Vector(i64, u32),
    /// Elements `c, c + stride, ..` (`lanes` of them; load only): gathered from the
    /// variables' lanes (a transposing copy-out of a tile accumulated in vectors).
    Strided(i64, i64, u32),
}

fn classify(indices: &[Expr]) -> Option<Access> {
    if indices.len() != 1 {
        return None;
    }
    match indices[0].node() {
        ExprNode::Int(c, _) => Some(Access::Scalar(*c)),
        ExprNode::Broadcast(x, l) => x.as_int().map(|c| Access::Broadcast(c, *l)),
        ExprNode::Ramp(b, 1, l) => b.as_int().map(|c| Access::Vector(c, *l)),
        ExprNode::Ramp(b, s, l) if *s > 1 => b.as_int().map(|c| Access::Strided(c, *s, *l)),
        _ => None,
    }
}

/// Whether `indices` read a promoted buffer through a strided load (lanes gathered, or
/// transposed by `transpose_loads.rs`).
pub(super) fn is_strided(indices: &[Expr]) -> bool {
    matches!(classify(indices), Some(Access::Strided(..)))
}

/// Elements per variable if `buf`, allocated around `body`, can be promoted.
pub(crate) fn plan(buf: &Buffer, body: &Stmt, outlines_parallel: bool) -> Option<u32> {
    let n = buf.shape().iter().try_fold(1u64, |acc, d| {
        acc.checked_mul(u64::try_from(d.as_int()?).ok()?)
    })?;
    if n == 0 {
        return None;
    }
    let name = buf.name();
    let mut ok = true;
    let mut lanes: u32 = 1;
    let mut accesses: Vec<Access> = Vec::new();
    let mut check = |idx: &[Expr], store: bool, ok: &mut bool| match classify(idx) {
        Some(Access::Broadcast(..) | Access::Strided(..)) if store => *ok = false,
        // A vector of booleans is a mask, not the gathered scalars.
        Some(Access::Strided(..)) if buf.dtype() == DType::Bool => *ok = false,
        Some(a) => accesses.push(a),
        None => *ok = false,
    };
    body.visit(&mut |s| match s {
        Stmt::Allocate { buf: b, .. } if b.name() == name => ok = false,
        // An intrinsic takes the buffer's address.
        Stmt::Intrinsic(c) if c.operands.iter().any(|o| o.buf.name() == name) => ok = false,
        Stmt::For(f) if f.kind == ForKind::Parallel && outlines_parallel => ok = false,
        _ => {}
    });
    body.visit(&mut |s| {
        if let Stmt::Store {
            buf: b, indices, ..
        } = s
        {
            if b.name() == name {
                check(indices, true, &mut ok);
            }
        }
    });
    body.visit_exprs(&mut |e| {
        e.visit(&mut |x| {
            if let ExprNode::Load(b, idx) = x.node() {
                if b.name() == name {
                    check(idx, false, &mut ok);
                }
            }
            true
        })
    });
    // Loads inside allocation shapes and loop bounds are covered by visit_exprs except
    // allocation shapes; a buffer read in a shape is too exotic to promote.
    body.visit(&mut |s| {
        if let Stmt::Allocate { buf: b, .. } = s {
            for d in b.shape() {
                d.visit(&mut |x| {
                    if matches!(x.node(), ExprNode::Load(lb, _) if lb.name() == name) {
                        ok = false;
                    }
                    true
                });
            }
        }
    });
    if !ok || accesses.is_empty() {
        return None;
    }
    for a in &accesses {
        if let Access::Vector(_, l) = a {
            if lanes != 1 && lanes != *l {
                return None;
            }
            lanes = *l;
        }
    }
    if lanes > 1
        && (buf.dtype() == DType::Bool
            || n % lanes as u64 != 0
            || val_type(buf.dtype(), lanes).is_err())
    {
        return None;
    }
    for a in &accesses {
        let (c, w) = match a {
            Access::Scalar(c) | Access::Broadcast(c, _) => (*c, 1),
            Access::Vector(c, l) => (*c, *l),
            // Its first and last elements in bounds (lanes taken one by one).
            Access::Strided(c, s, l) => {
                let last = s.checked_mul(*l as i64 - 1).and_then(|d| c.checked_add(d));
                match last {
                    Some(last) if *c >= 0 => (last, 1),
                    _ => return None,
                }
            }
        };
        if c < 0 || (c as u64) + w as u64 > n || (w > 1 && c % w as i64 != 0) {
            return None;
        }
    }
    if n / lanes as u64 > MAX_CHUNKS {
        return None;
    }
    Some(lanes)
}

impl<'a, 'f> FnGen<'a, 'f> {
    /// Variables for a promoted `buf` of `lanes` elements per variable, zero-initialised.
    pub fn promote_buffer(&mut self, buf: &Buffer, lanes: u32) -> Result<Promoted> {
        let n: i64 = buf
            .shape()
            .iter()
            .map(|d| d.as_int().unwrap_or(0))
            .product();
        let dt = buf.dtype();
        let ty = val_type(dt, lanes)?;
        let zero = self.iconst_of(dt, 0);
        let zero = if lanes > 1 {
            self.b.ins().splat(ty, zero)
        } else {
            zero
        };
        let mut vars = Vec::new();
        for _ in 0..n / lanes as i64 {
            let v = self.b.declare_var(ty);
            self.b.def_var(v, zero);
            vars.push(v);
        }
        Ok(Promoted { vars, lanes, dt })
    }

    /// `buf[indices]` when `buf` is promoted.
    pub fn promoted_load(&mut self, buf: &Buffer, indices: &[Expr]) -> Result<Option<Val>> {
        let Some(p) = self.promoted.get(buf.name()) else {
            return Ok(None);
        };
        let (l, dt) = (p.lanes, p.dt);
        let scalar = |g: &mut Self, c: i64| -> Val {
            let p = &g.promoted[buf.name()];
            let var = p.vars[(c / l as i64) as usize];
            let v = g.b.use_var(var);
            if l == 1 {
                Val::scalar(v, dt)
            } else {
                Val::scalar(g.b.ins().extractlane(v, (c % l as i64) as u8), dt)
            }
        };
        let val = match classify(indices) {
            Some(Access::Scalar(c)) => scalar(self, c),
            Some(Access::Broadcast(c, lanes)) => {
                let s = scalar(self, c);
                self.splat(s, lanes)?
            }
            Some(Access::Vector(c, lanes)) if lanes == l => {
                let var = self.promoted[buf.name()].vars[(c / l as i64) as usize];
                Val {
                    v: self.b.use_var(var),
                    dt,
                    lanes,
                }
            }
            Some(Access::Strided(c, stride, lanes)) => {
                let first = scalar(self, c);
                let mut v = self.splat(first, lanes)?;
                for i in 1..lanes {
                    let e = scalar(self, c + stride * i as i64);
                    v.v = self.b.ins().insertlane(v.v, e.v, i as u8);
                }
                v
            }
            _ => {
                return Err(internal(
                    format!("unplanned access to promoted buffer {}", buf.name()),
                    self.src,
                ))
            }
        };
        Ok(Some(val))
    }

    /// `buf[indices] = v` when `buf` is promoted; returns whether it was.
    pub fn promoted_store(&mut self, buf: &Buffer, indices: &[Expr], value: &Expr) -> Result<bool> {
        let Some(p) = self.promoted.get(buf.name()) else {
            return Ok(false);
        };
        let (l, dt) = (p.lanes, p.dt);
        let mut v = self.gen_expr(value)?;
        if v.dt != dt {
            v = self.cast(v, dt)?;
        }
        match classify(indices) {
            Some(Access::Scalar(c)) if v.lanes == 1 => {
                let var = self.promoted[buf.name()].vars[(c / l as i64) as usize];
                let nv = if l == 1 {
                    v.v
                } else {
                    let old = self.b.use_var(var);
                    self.b.ins().insertlane(old, v.v, (c % l as i64) as u8)
                };
                self.b.def_var(var, nv);
            }
            Some(Access::Vector(c, lanes)) if lanes == l => {
                let v = self.splat(v, lanes)?;
                let var = self.promoted[buf.name()].vars[(c / l as i64) as usize];
                self.b.def_var(var, v.v);
            }
            _ => {
                return Err(internal(
                    format!("unplanned store to promoted buffer {}", buf.name()),
                    self.src,
                ))
            }
        }
        Ok(true)
    }

    /// The variable that `s` writes whole when it is a store to a promoted buffer (a
    /// scalar of a scalar buffer, or one whole chunk of a vector one).
    pub(crate) fn promoted_store_var(&self, s: &Stmt) -> Option<Variable> {
        let Stmt::Store { buf, indices, .. } = s else {
            return None;
        };
        let p = self.promoted.get(buf.name())?;
        let c = match classify(indices)? {
            Access::Scalar(c) if p.lanes == 1 => c,
            Access::Vector(c, lanes) if lanes == p.lanes => c,
            _ => return None,
        };
        p.vars
            .get(usize::try_from(c / p.lanes as i64).ok()?)
            .copied()
    }
}
