//! Pass: loop-invariant code motion.
//!
//! Requires: final loop structure (after vectorize and unroll). Ensures: every maximal
//! scalar subexpression of a loop body that does not change within the loop (uses neither
//! the loop variable nor anything defined inside the loop, and loads only from buffers the
//! loop does not store to) is computed once, in a `let` just outside the loop; of an
//! integer sum with a constant term, `x + c`, only `x` (the constant stays, to become an
//! access's immediate offset, and sums that differ by a constant share one `let`); a
//! variable plus a constant is never bound on its own (for the same reason). Loads are
//! moved only out of loops with a constant, positive trip count, so nothing is read that
//! the original program would not read. Cranelift hoists invariants only on a best-effort
//! basis; doing it here makes the generated loops predictable.

use super::ir::{For, Stmt};
use super::simplify::key;
use crate::te::{BinOp, Expr, ExprNode, Var};
use std::collections::HashSet;

/// Hoist loop invariants out of every loop.
pub fn hoist(s: &Stmt) -> Stmt {
    let mut n = 0;
    go(s, &mut n)
}

fn go(s: &Stmt, n: &mut usize) -> Stmt {
    match s {
        Stmt::For(f) => {
            let body = go(&f.body, n);
            let f = For {
                body,
                ..(**f).clone()
            };
            hoist_loop(&f, n)
        }
        other => other.map(&mut |x| go(x, n), &mut |e| e.clone()),
    }
}

struct Ctx {
    inside: HashSet<u64>,
    stored: HashSet<String>,
    loads_ok: bool,
    found: Vec<(String, Expr, Var)>,
    counter: usize,
}

fn hoist_loop(f: &For, counter: &mut usize) -> Stmt {
    let mut inside: HashSet<u64> = HashSet::new();
    inside.insert(f.var.id());
    let mut stored = HashSet::new();
    f.body.visit(&mut |s| match s {
        Stmt::For(g) => {
            inside.insert(g.var.id());
        }
        Stmt::Let { var, .. } => {
            inside.insert(var.id());
        }
        Stmt::Store { .. } | Stmt::Intrinsic(_) => {
            stored.extend(s.written_buffer().map(|b| b.name().to_string()));
        }
        Stmt::Allocate { buf, .. } => {
            stored.insert(buf.name().to_string());
        }
        _ => {}
    });
    let loads_ok = f.extent.as_int().map(|n| n > 0).unwrap_or(false);
    let mut cx = Ctx {
        inside,
        stored,
        loads_ok,
        found: vec![],
        counter: *counter,
    };
    let body = cx.stmt(&f.body);
    *counter = cx.counter;
    if cx.found.is_empty() {
        return Stmt::For(Box::new(For { body, ..f.clone() }));
    }
    let mut out = Stmt::For(Box::new(For { body, ..f.clone() }));
    for (_, e, v) in cx.found.into_iter().rev() {
        out = Stmt::Let {
            var: v,
            value: e,
            body: Box::new(out),
        };
    }
    out
}

impl Ctx {
    /// Rewrite the expressions of `s`; loads under an `if` or inside a loop that may run
    /// zero times are left in place (they might not be executed at all).
    fn stmt(&mut self, s: &Stmt) -> Stmt {
        match s {
            Stmt::If { cond, then, els } => {
                let cond = self.expr(cond);
                let saved = self.loads_ok;
                self.loads_ok = false;
                let then = Box::new(self.stmt(then));
                let els = els.as_ref().map(|e| Box::new(self.stmt(e)));
                self.loads_ok = saved;
                Stmt::If { cond, then, els }
            }
            Stmt::For(g) => {
                let min = self.expr(&g.min);
                let extent = self.expr(&g.extent);
                let saved = self.loads_ok;
                if !g.extent.as_int().map(|n| n > 0).unwrap_or(false) {
                    self.loads_ok = false;
                }
                let body = self.stmt(&g.body);
                self.loads_ok = saved;
                Stmt::For(Box::new(For {
                    var: g.var.clone(),
                    min,
                    extent,
                    kind: g.kind.clone(),
                    body,
                }))
            }
            Stmt::Let { var, value, body } if self.invariant(value) => {
                // The whole binding moves out; its variable is then defined outside.
                let k = key(value);
                self.inside.remove(&var.id());
                if let Some((_, _, v)) = self.found.iter().find(|f| f.0 == k) {
                    // Already hoisted under another name: reuse it.
                    let mut m = std::collections::HashMap::new();
                    m.insert(var.id(), v.expr());
                    return self.stmt(&body.substitute(&m));
                }
                self.found.push((k, value.clone(), var.clone()));
                self.stmt(body)
            }
            other => {
                // Sub-statements first, then this statement's own expressions (the order
                // in which invariants are found names and orders the hoisted lets).
                let me = std::cell::RefCell::new(self);
                let inner = other.map(&mut |x| me.borrow_mut().stmt(x), &mut |e| e.clone());
                inner.map(&mut |x| x.clone(), &mut |e| me.borrow_mut().expr(e))
            }
        }
    }

    /// An integer sum whose terms are partly invariant: `(invariant terms) + (the rest)`,
    /// so the invariant part can move out even when the terms are interleaved.
    fn regroup(&mut self, e: &Expr) -> Option<Expr> {
        if e.lanes() != 1
            || !e.dtype().is_int()
            || !matches!(e.node(), ExprNode::Binary(BinOp::Add | BinOp::Sub, ..))
        {
            return None;
        }
        let mut terms: Vec<(Expr, bool)> = vec![];
        flatten_sum(e, false, &mut terms);
        let (inv, var): (Vec<_>, Vec<_>) = terms.into_iter().partition(|(t, _)| self.invariant(t));
        let nontrivial = inv
            .iter()
            .any(|(t, _)| !matches!(t.node(), ExprNode::Int(..)));
        if var.is_empty() || inv.len() < 2 && !nontrivial || inv.is_empty() {
            return None;
        }
        let sum = |ts: Vec<(Expr, bool)>| -> Expr {
            let mut acc: Option<Expr> = None;
            for (t, neg) in ts {
                acc = Some(match (acc, neg) {
                    (None, false) => t,
                    (None, true) => Expr::int_of(0, t.dtype()) - t,
                    (Some(a), false) => a + t,
                    (Some(a), true) => a - t,
                });
            }
            acc.expect("non-empty")
        };
        let inv_e = self.expr(&sum(inv));
        let mut acc = inv_e;
        for (t, neg) in var {
            let t = self.expr(&t);
            acc = if neg { acc - t } else { acc + t };
        }
        Some(acc)
    }

    fn invariant(&self, e: &Expr) -> bool {
        let mut ok = true;
        e.visit(&mut |x| {
            match x.node() {
                ExprNode::Var(v) if self.inside.contains(&v.id()) => ok = false,
                ExprNode::Load(b, _) if !self.loads_ok || self.stored.contains(b.name()) => {
                    ok = false
                }
                ExprNode::Let(..) => ok = false,
                _ => {}
            }
            ok
        });
        ok
    }

    /// Rewrite `e`, replacing maximal invariant scalar subtrees by let-bound variables.
    /// Only scalar subtrees move, so ramp/broadcast indices of vector accesses stay put.
    fn expr(&mut self, e: &Expr) -> Expr {
        let trivial = matches!(
            e.node(),
            ExprNode::Var(_) | ExprNode::Int(..) | ExprNode::Float(..)
        );
        if !trivial && e.lanes() == 1 && self.invariant(e) {
            if let Some((rest, c)) = split_constant(e) {
                // `x + c`: only `x` moves out, so `k * 58 + 59` and `k * 58 + 62` share
                // one variable, and the constant stays where the CPU backend folds it
                // into an access's immediate offset (one live register, not one per
                // tap of a stencil).
                let rest = self.expr(&rest);
                return match c {
                    0 => rest,
                    c if c < 0 => rest - Expr::int_of(c.wrapping_neg(), e.dtype()),
                    c => rest + Expr::int_of(c, e.dtype()),
                };
            }
            let k = key(e);
            if let Some((_, _, v)) = self.found.iter().find(|f| f.0 == k) {
                return v.expr();
            }
            let v = Var::new(format!("inv{}", self.counter), e.dtype());
            self.counter += 1;
            self.found.push((k, e.clone(), v.clone()));
            return v.expr();
        }
        if let Some(r) = self.regroup(e) {
            return r;
        }
        match e.node() {
            ExprNode::Load(b, idx) => {
                let idx: Vec<Expr> = idx.iter().map(|i| self.expr(i)).collect();
                b.load(idx)
            }
            ExprNode::Let(v, val, body) => {
                // The bound variable is defined here: nothing using it may move out.
                let val = self.expr(val);
                let fresh = self.inside.insert(v.id());
                let body = self.expr(body);
                if fresh {
                    self.inside.remove(&v.id());
                }
                Expr::new(ExprNode::Let(v.clone(), val, body))
            }
            _ if e.children().is_empty() => e.clone(),
            _ => {
                let kids: Vec<Expr> = e.children().into_iter().map(|k| self.expr(k)).collect();
                e.with_children(kids)
            }
        }
    }
}

/// The terms of a sum, with whether each is subtracted.
fn flatten_sum(e: &Expr, neg: bool, out: &mut Vec<(Expr, bool)>) {
    match e.node() {
        ExprNode::Binary(BinOp::Add, a, b) => {
            flatten_sum(a, neg, out);
            flatten_sum(b, neg, out);
        }
        ExprNode::Binary(BinOp::Sub, a, b) => {
            flatten_sum(a, neg, out);
            flatten_sum(b, !neg, out);
        }
        _ => out.push((e.clone(), neg)),
    }
}

/// An integer scalar sum with constant terms and others: the other terms (in order) and
/// the constants' total. `None` for anything else and for a sum whose first
/// non-constant term is subtracted. The other terms contain no constant term, so
/// splitting them again finds none; a lone variable left is not bound to a `let` (so a
/// packed panel's rows `inv + 1`, `inv + 2`, ... do not each hold a register).
fn split_constant(e: &Expr) -> Option<(Expr, i64)> {
    if !e.dtype().is_int() || !matches!(e.node(), ExprNode::Binary(BinOp::Add | BinOp::Sub, ..)) {
        return None;
    }
    let mut terms = vec![];
    flatten_sum(e, false, &mut terms);
    let mut c: i64 = 0;
    let mut rest: Option<Expr> = None;
    let mut any_const = false;
    for (t, neg) in terms {
        if let Some(v) = t.as_int() {
            any_const = true;
            c = if neg {
                c.wrapping_sub(v)
            } else {
                c.wrapping_add(v)
            };
            continue;
        }
        rest = Some(match (rest, neg) {
            (None, false) => t,
            // `c - x`: left whole (`0 - x` would be a sum with a constant again).
            (None, true) => return None,
            (Some(a), false) => a + t,
            (Some(a), true) => a - t,
        });
    }
    let rest = rest?;
    any_const.then_some((rest, c))
}

#[cfg(test)]
mod tests {
    use super::hoist;
    use crate::lower::ir::{Buffer, ForKind, Scope, Stmt};
    use crate::te::{DType, Expr, Var};

    #[test]
    fn sums_differing_by_a_constant_share_one_let() {
        // for k in 0..4: for l in 0..3: A[k*58 + 59 + l] = A[k*58 + 62 + l]
        let a = Buffer::new("A", DType::F32, vec![Expr::from(400)], Scope::Global);
        let (k, l) = (Var::new("k", DType::I64), Var::new("l", DType::I64));
        let base = k.expr() * 58;
        let store = Stmt::Store {
            buf: a.clone(),
            indices: vec![base.clone() + 59 + l.expr()],
            value: a.load(vec![base + 62 + l.expr()]),
        };
        let inner = Stmt::for_(l, Expr::from(0), Expr::from(3), ForKind::Serial, store);
        let outer = Stmt::for_(k, Expr::from(0), Expr::from(4), ForKind::Serial, inner);
        let text = hoist(&outer).to_string();
        assert_eq!(text.matches("let ").count(), 1, "{}", text);
        assert!(text.contains("let inv0 = k * 58"), "{}", text);
        assert!(
            text.contains("A[inv0 + 59 + l] = A[inv0 + 62 + l]"),
            "{}",
            text
        );
    }

    #[test]
    fn a_hoisted_variable_plus_a_constant_stays_in_place() {
        // for p in 0..4: for j in 0..2: for k in 0..3: A[p*64 + k*8] = A[p*64 + 1 + k*8] + A[p*64 + 2 + k*8]
        // (a packed panel's rows): hoisting out of `k` gives `inv0 + 1 + k * 8`; hoisting
        // out of `j` must leave `inv0 + 1` there, not bind one `let` per row.
        let a = Buffer::new("A", DType::F32, vec![Expr::from(400)], Scope::Global);
        let (p, j, k) = (
            Var::new("p", DType::I64),
            Var::new("j", DType::I64),
            Var::new("k", DType::I64),
        );
        let row = |r: i64| p.expr() * 64 + r + k.expr() * 8;
        let store = Stmt::Store {
            buf: a.clone(),
            indices: vec![p.expr() * 64 + k.expr() * 8],
            value: a.load(vec![row(1)]) + a.load(vec![row(2)]),
        };
        let serial = |v: &Var, n: i64, body: Stmt| {
            Stmt::for_(
                v.clone(),
                Expr::from(0),
                Expr::from(n),
                ForKind::Serial,
                body,
            )
        };
        let nest = serial(&p, 4, serial(&j, 2, serial(&k, 3, store)));
        let text = hoist(&nest).to_string();
        assert_eq!(text.matches("let ").count(), 1, "{}", text);
        assert!(
            text.contains("A[inv0 + 1 + k * 8] + A[inv0 + 2 + k * 8]"),
            "{}",
            text
        );
    }
}
