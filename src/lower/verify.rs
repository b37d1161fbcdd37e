//! The IR verifier, run between passes in debug builds (and after the last pass always).
//!
//! Checks: every variable is defined where it is used (a loop, a let, or a shape variable);
//! every buffer accessed is a parameter or allocated in an enclosing scope; no TE-level
//! node (tensor read, reduction) is left; once flattened, every access has one index; the
//! operands of vector operations have equal lanes.

use super::ir::{LoweredFunc, Stmt};
use crate::te::{Expr, ExprNode};
use std::collections::HashSet;

/// Verify `f`; `flat` says whether storage flattening has run. Returns what is wrong.
pub fn verify(f: &LoweredFunc, flat: bool) -> Result<(), String> {
    let mut vars: HashSet<u64> = f.shape_vars.iter().map(|v| v.id()).collect();
    let mut bufs: HashSet<String> = f.params.iter().map(|b| b.name().to_string()).collect();
    stmt(&f.body, &mut vars, &mut bufs, flat)
}

fn expr(
    e: &Expr,
    vars: &mut HashSet<u64>,
    bufs: &HashSet<String>,
    flat: bool,
) -> Result<(), String> {
    match e.node() {
        ExprNode::Var(v) if !vars.contains(&v.id()) => Err(format!(
            "variable {} (id {}) is used outside the scope that defines it",
            v.name(),
            v.id()
        )),
        ExprNode::Read(t, _) => Err(format!("tensor read {} survived lowering", t.name())),
        ExprNode::Reduce(_) => Err("a reduction survived lowering".into()),
        ExprNode::Load(b, idx) => {
            if !bufs.contains(b.name()) {
                return Err(format!(
                    "buffer {} is loaded outside its allocation",
                    b.name()
                ));
            }
            if flat && idx.len() != 1 {
                return Err(format!(
                    "load of {} has {} indices after flattening",
                    b.name(),
                    idx.len()
                ));
            }
            idx.iter().try_for_each(|i| expr(i, vars, bufs, flat))
        }
        ExprNode::Let(v, val, body) => {
            expr(val, vars, bufs, flat)?;
            vars.insert(v.id());
            let r = expr(body, vars, bufs, flat);
            vars.remove(&v.id());
            r
        }
        ExprNode::Binary(_, a, b) | ExprNode::Cmp(_, a, b) if a.lanes() != b.lanes() => {
            Err(format!(
                "operands of {} have {} and {} lanes",
                e,
                a.lanes(),
                b.lanes()
            ))
        }
        _ => e
            .children()
            .into_iter()
            .try_for_each(|k| expr(k, vars, bufs, flat)),
    }
}

fn stmt(
    s: &Stmt,
    vars: &mut HashSet<u64>,
    bufs: &mut HashSet<String>,
    flat: bool,
) -> Result<(), String> {
    match s {
        Stmt::For(f) => {
            expr(&f.min, vars, bufs, flat)?;
            expr(&f.extent, vars, bufs, flat)?;
            vars.insert(f.var.id());
            let r = stmt(&f.body, vars, bufs, flat);
            vars.remove(&f.var.id());
            r
        }
        Stmt::If { cond, then, els } => {
            expr(cond, vars, bufs, flat)?;
            stmt(then, vars, bufs, flat)?;
            match els {
                Some(e) => stmt(e, vars, bufs, flat),
                None => Ok(()),
            }
        }
        Stmt::Seq(v) => v.iter().try_for_each(|x| stmt(x, vars, bufs, flat)),
        Stmt::Store {
            buf,
            indices,
            value,
        } => {
            if !bufs.contains(buf.name()) {
                return Err(format!(
                    "buffer {} is stored outside its allocation",
                    buf.name()
                ));
            }
            if flat && indices.len() != 1 {
                return Err(format!(
                    "store to {} has {} indices after flattening",
                    buf.name(),
                    indices.len()
                ));
            }
            indices.iter().try_for_each(|i| expr(i, vars, bufs, flat))?;
            expr(value, vars, bufs, flat)
        }
        Stmt::Allocate { buf, body } => {
            for d in buf.shape() {
                expr(d, vars, bufs, flat)?;
            }
            let fresh = bufs.insert(buf.name().to_string());
            let r = stmt(body, vars, bufs, flat);
            if fresh {
                bufs.remove(buf.name());
            }
            r
        }
        Stmt::Let { var, value, body } => {
            expr(value, vars, bufs, flat)?;
            vars.insert(var.id());
            let r = stmt(body, vars, bufs, flat);
            vars.remove(&var.id());
            r
        }
        Stmt::Produce { body, .. } => stmt(body, vars, bufs, flat),
        Stmt::Evaluate(e) => expr(e, vars, bufs, flat),
        Stmt::Intrinsic(c) => {
            for o in &c.operands {
                if !bufs.contains(o.buf.name()) {
                    return Err(format!(
                        "buffer {} is passed to {} outside its allocation",
                        o.buf.name(),
                        c.intrin.name
                    ));
                }
                if flat && o.index.len() != 1 {
                    return Err(format!(
                        "operand {} of {} has {} indices after flattening",
                        o.buf.name(),
                        c.intrin.name,
                        o.index.len()
                    ));
                }
                o.index
                    .iter()
                    .chain(&o.strides)
                    .try_for_each(|i| expr(i, vars, bufs, flat))?;
            }
            Ok(())
        }
        Stmt::Barrier | Stmt::NoOp => Ok(()),
    }
}
