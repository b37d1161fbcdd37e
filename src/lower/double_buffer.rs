//! Pass: double buffering of shared-memory stages ([`Schedule::double_buffer`]).
//!
//! Requires: the barriers of `storage_sync` (it runs right after it) and accesses with one
//! index per dimension (before `storage_flatten`). Each double-buffered buffer `B` is
//! allocated directly inside a serial loop `for v in [min, min + ext)` (possibly under
//! other allocations), with its computation `P(v)` in that loop body between the two
//! barriers `storage_sync` put around it.
//!
//! Ensures: the loop becomes
//!
//! ```text
//! allocate B[2, ...]                      // hoisted, one copy per parity of v - min
//!   if ext > 0 { P(min) into B[0] }        // prologue
//!   barrier
//!   for v in [min, min + ext):
//!     if v + 1 < min + ext { P(v + 1) into B[(v + 1 - min) % 2] }   // prefetch
//!     <the rest of the body, reading B[(v - min) % 2]>
//!     barrier
//! ```
//!
//! The prefetch writes the copy that the previous iteration read (protected by that
//! iteration's closing barrier) while this iteration reads the other one (written before
//! the previous closing barrier): one barrier per iteration instead of two, and the loads
//! of the next tile issued before the arithmetic of this one.
//!
//! [`Schedule::double_buffer`]: crate::schedule::Schedule::double_buffer

use super::ir::{Buffer, For, ForKind, Stmt};
use crate::error::{sched_err, Result};
use crate::te::{gt, lt, Expr, ExprNode};
use std::collections::{HashMap, HashSet};

/// Apply double buffering to the buffers named in `names` (every one must be found).
pub fn inject(s: &Stmt, names: &HashSet<String>) -> Result<Stmt> {
    if names.is_empty() {
        return Ok(s.clone());
    }
    let mut done = HashSet::new();
    let out = go(s, names, &mut done)?;
    if let Some(missing) = names.iter().find(|n| !done.contains(*n)) {
        return Err(sched_err(
            missing,
            format!(
                "cannot double_buffer {}: its buffer is not allocated directly inside a serial loop (it must be computed at a loop, with that loop not unrolled, vectorized, parallel or bound to a thread axis)",
                missing
            ),
        ));
    }
    Ok(out)
}

fn go(s: &Stmt, names: &HashSet<String>, done: &mut HashSet<String>) -> Result<Stmt> {
    if let Stmt::For(f) = s {
        if f.kind == ForKind::Serial {
            if let Some(r) = rewrite_loop(f, names, done)? {
                return Ok(r);
            }
        }
    }
    let mut err = None;
    let out = s.map(
        &mut |x| match go(x, names, done) {
            Ok(y) => y,
            Err(e) => {
                err.get_or_insert(e);
                x.clone()
            }
        },
        &mut |e| e.clone(),
    );
    match err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// The loop rewritten if double-buffered buffers are allocated at the top of its body.
fn rewrite_loop(
    f: &For,
    names: &HashSet<String>,
    done: &mut HashSet<String>,
) -> Result<Option<Stmt>> {
    // Peel the allocations at the top of the body; keep the others around the rest.
    let mut kept: Vec<Buffer> = vec![];
    let mut db: Vec<Buffer> = vec![];
    let mut body = &f.body;
    while let Stmt::Allocate { buf, body: inner } = body {
        if names.contains(buf.name()) {
            db.push(buf.clone());
        } else {
            kept.push(buf.clone());
        }
        body = inner;
    }
    if db.is_empty() {
        return Ok(None);
    }
    let body = go(body, names, done)?;
    let v = f.var.expr();
    let end = f.min.clone() + f.extent.clone();
    let slot = |at: Expr| (at - f.min.clone()) % Expr::int(2);
    let mut rest = body;
    let mut prefetch = vec![];
    let mut prologue = vec![];
    let mut doubled = vec![];
    for b in &db {
        let b2 = doubled_buffer(b);
        rest = with_slot(&rest, b, &b2, &slot(v.clone()));
        let Some((r, produce)) = take_produce(&rest, b.name()) else {
            return Err(sched_err(
                b.name(),
                format!(
                    "cannot double_buffer {}: its computation is not directly in the body of loop {} (it must not be inside a nested loop, condition or let)",
                    b.name(),
                    f.var.name()
                ),
            ));
        };
        rest = r;
        let at = |x: Expr| {
            let mut m = HashMap::new();
            m.insert(f.var.id(), x);
            produce.substitute(&m)
        };
        prefetch.push(Stmt::If {
            cond: lt(v.clone() + Expr::int(1), end.clone()),
            then: Box::new(at(v.clone() + Expr::int(1))),
            els: None,
        });
        prologue.push(at(f.min.clone()));
        doubled.push(b2);
        done.insert(b.name().to_string());
    }
    let mut rest = drop_leading_barrier(&rest);
    for b in kept.iter().rev() {
        rest = Stmt::Allocate {
            buf: b.clone(),
            body: Box::new(rest),
        };
    }
    let mut items = prefetch;
    items.push(rest);
    items.push(Stmt::Barrier);
    let new_loop = Stmt::For(Box::new(For {
        var: f.var.clone(),
        min: f.min.clone(),
        extent: f.extent.clone(),
        kind: f.kind.clone(),
        body: Stmt::seq(items),
    }));
    let mut prologue = Stmt::seq(prologue);
    if f.extent.as_int().is_none_or(|e| e <= 0) {
        prologue = Stmt::If {
            cond: gt(f.extent.clone(), Expr::int(0)),
            then: Box::new(prologue),
            els: None,
        };
    }
    let mut out = Stmt::seq(vec![prologue, Stmt::Barrier, new_loop]);
    for b in doubled.iter().rev() {
        out = Stmt::Allocate {
            buf: b.clone(),
            body: Box::new(out),
        };
    }
    Ok(Some(out))
}

/// `b` with a leading dimension of 2 (padded strides kept; the copies are contiguous).
fn doubled_buffer(b: &Buffer) -> Buffer {
    let mut shape = vec![Expr::int(2)];
    shape.extend(b.shape().iter().cloned());
    if b.has_explicit_strides() {
        let mut strides = vec![b.num_elements()];
        strides.extend(b.strides());
        Buffer::with_strides(b.name(), b.dtype(), shape, strides, b.scope())
    } else {
        Buffer::new(b.name(), b.dtype(), shape, b.scope())
    }
}

/// Every access to `b` in `s` goes to copy `slot` of `b2`: loads, stores and the tiles
/// of tensor-intrinsic calls.
fn with_slot(s: &Stmt, b: &Buffer, b2: &Buffer, slot: &Expr) -> Stmt {
    let fix_expr = |e: &Expr| -> Expr {
        e.mutate(&mut |x| match x.node() {
            ExprNode::Load(lb, idx) if lb.name() == b.name() => {
                let mut i = vec![slot.clone()];
                i.extend(idx.iter().cloned());
                Some(Expr::new(ExprNode::Load(b2.clone(), i)))
            }
            _ => None,
        })
    };
    match s {
        Stmt::Store {
            buf,
            indices,
            value,
        } => {
            let indices: Vec<Expr> = indices.iter().map(fix_expr).collect();
            let value = fix_expr(value);
            if buf.name() == b.name() {
                let mut i = vec![slot.clone()];
                i.extend(indices);
                Stmt::Store {
                    buf: b2.clone(),
                    indices: i,
                    value,
                }
            } else {
                Stmt::Store {
                    buf: buf.clone(),
                    indices,
                    value,
                }
            }
        }
        Stmt::Intrinsic(c) => {
            let mut c = c.clone();
            for o in &mut c.operands {
                o.index = o.index.iter().map(fix_expr).collect();
                o.strides = o.strides.iter().map(fix_expr).collect();
                if o.buf.name() == b.name() {
                    o.buf = b2.clone();
                    o.index.insert(0, slot.clone());
                }
            }
            c.extents = c.extents.iter().map(fix_expr).collect();
            Stmt::Intrinsic(c)
        }
        other => other.map(&mut |x| with_slot(x, b, b2, slot), &mut |e| fix_expr(e)),
    }
}

/// Remove `Produce(name)` from `s`, looking through sequences and allocations only.
fn take_produce(s: &Stmt, name: &str) -> Option<(Stmt, Stmt)> {
    match s {
        Stmt::Produce { name: n, .. } if n == name => Some((Stmt::NoOp, s.clone())),
        Stmt::Seq(items) => items.iter().enumerate().find_map(|(i, x)| {
            take_produce(x, name).map(|(r, p)| {
                let mut v = items.clone();
                v[i] = r;
                (merge_barriers(v), p)
            })
        }),
        Stmt::Allocate { buf, body } => take_produce(body, name).map(|(r, p)| {
            (
                Stmt::Allocate {
                    buf: buf.clone(),
                    body: Box::new(r),
                },
                p,
            )
        }),
        _ => None,
    }
}

/// A sequence without no-ops and with runs of barriers collapsed to one.
fn merge_barriers(items: Vec<Stmt>) -> Stmt {
    let mut out: Vec<Stmt> = vec![];
    for x in items {
        if matches!(x, Stmt::NoOp) {
            continue;
        }
        if matches!(x, Stmt::Barrier) && matches!(out.last(), Some(Stmt::Barrier)) {
            continue;
        }
        out.push(x);
    }
    Stmt::seq(out)
}

/// Drop a barrier at the start of `s` (the previous iteration's closing barrier, or the
/// prologue's, already separates it from what came before).
fn drop_leading_barrier(s: &Stmt) -> Stmt {
    match s {
        Stmt::Barrier => Stmt::NoOp,
        Stmt::Seq(items) if !items.is_empty() => {
            let mut v = items.clone();
            v[0] = drop_leading_barrier(&v[0]);
            merge_barriers(v)
        }
        other => other.clone(),
    }
}
