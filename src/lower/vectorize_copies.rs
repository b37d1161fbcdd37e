//! Pass: vectorize plain copy loops.
//!
//! Requires: flat accesses (after `storage_flatten`), the loops `loop_partition` split,
//! and to run before `vectorize`. Ensures: a serial loop outside GPU kernels, of constant
//! extent of at least [`MIN_EXTENT`], whose body is one store of a 32-bit element at an
//! index of unit stride in the loop variable, of a value that is either invariant in it
//! or a load of another buffer at an index of unit stride in it (a padding stage's
//! interior, a fill, a reshape's contiguous run), becomes a loop over chunks of
//! [`LANES`] iterations marked `vectorized`, then a serial tail of the remaining
//! iterations; `vectorize` turns the chunks into 128-bit loads and stores. Every
//! iteration stores the same value at the same place as before, and no iteration reads
//! what another writes (the value reads another buffer), so the result is unchanged.

use super::ir::{ForKind, Stmt};
use super::simplify::simplify;
use super::vectorize::affine;
use crate::te::{DType, Expr, ExprNode, Var};
use std::collections::HashMap;

/// Iterations per vector (128 bits of 32-bit elements).
pub const LANES: i64 = 4;
/// Shorter loops are left alone (their vector part would be one or two chunks).
pub const MIN_EXTENT: i64 = 8;

/// Vectorize the eligible copy loops of `s`.
pub fn vectorize_copies(s: &Stmt) -> Stmt {
    go(s)
}

fn go(s: &Stmt) -> Stmt {
    match s {
        // Inside a GPU kernel each thread's loops stay as scheduled.
        Stmt::For(f) if matches!(f.kind, ForKind::ThreadBinding(_)) => s.clone(),
        Stmt::For(f) if f.kind == ForKind::Serial => match split(f) {
            Some(r) => r,
            None => s.map(&mut go, &mut |e| e.clone()),
        },
        _ => s.map(&mut go, &mut |e| e.clone()),
    }
}

/// Whether `e` reads at unit stride in `v` (or does not depend on it).
fn unit_or_invariant(e: &Expr, v: &Var) -> bool {
    if !e.uses_var(v) {
        return true;
    }
    matches!(affine(e, v), Some((1, _)))
}

/// The chunked loop and its tail, if `f` is an eligible copy loop.
fn split(f: &super::ir::For) -> Option<Stmt> {
    let n = f.extent.as_int()?;
    if n < MIN_EXTENT {
        return None;
    }
    let Stmt::Store {
        buf,
        indices,
        value,
    } = &f.body
    else {
        return None;
    };
    if indices.len() != 1
        || !matches!(buf.dtype(), DType::F32 | DType::I32)
        || value.dtype() != buf.dtype()
        || !matches!(affine(&indices[0], &f.var), Some((1, _)))
    {
        return None;
    }
    let v = &f.var;
    let plain = match value.node() {
        _ if !value.uses_var(v) => {
            // An invariant value: nothing may read memory (a load could alias the store).
            let mut loads = false;
            value.visit(&mut |e| {
                loads |= matches!(e.node(), ExprNode::Load(..));
                !loads
            });
            !loads
        }
        ExprNode::Load(src, idx) => {
            src.name() != buf.name() && idx.len() == 1 && unit_or_invariant(&idx[0], v)
        }
        _ => false,
    };
    if !plain {
        return None;
    }
    let chunks = n / LANES;
    let outer = Var::new(format!("{}.outer", v.name()), DType::I64);
    let inner = Var::new(format!("{}.inner", v.name()), DType::I64);
    let at = |x: Expr| {
        let mut m = HashMap::new();
        m.insert(v.id(), x);
        f.body.substitute(&m)
    };
    let body = at(simplify(
        &(f.min.clone() + outer.expr() * LANES + inner.expr()),
    ));
    let mut parts = vec![Stmt::for_(
        outer,
        Expr::int(0),
        Expr::int(chunks),
        ForKind::Serial,
        Stmt::for_(
            inner,
            Expr::int(0),
            Expr::int(LANES),
            ForKind::Vectorized,
            body,
        ),
    )];
    if n % LANES != 0 {
        parts.push(Stmt::for_(
            v.clone(),
            simplify(&(f.min.clone() + Expr::int(chunks * LANES))),
            Expr::int(n % LANES),
            ForKind::Serial,
            f.body.clone(),
        ));
    }
    Some(Stmt::seq(parts))
}
