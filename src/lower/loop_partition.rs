//! Pass: loop partition (Halide's and TVM's answer to non-dividing splits).
//!
//! Requires: flattened, simplified IR. Ensures: a loop over `v` whose body holds a guard
//! `a*v + rest < 0` (a > 0, `rest` over loops inside the body and values fixed outside)
//! is split into a main loop, where the guard is provably true and removed, and a tail
//! loop that keeps it. So the main body of a non-dividing split carries no guard and can
//! be vectorized; only the last iterations pay for the check.

use super::bound::{eval, Interval};
use super::ir::{For, Stmt};
use super::simplify::{simplify, simplify_with, Ranges};
use crate::te::{and, floordiv, max, min, CmpOp, Expr, ExprNode, Var};
use std::collections::{HashMap, HashSet};

/// Partition every loop whose body holds a guard it can prove for a prefix of iterations.
pub fn partition(s: &Stmt) -> Stmt {
    go(s, &mut HashSet::new())
}

fn go(s: &Stmt, done: &mut HashSet<u64>) -> Stmt {
    match s {
        Stmt::For(f)
            if !done.contains(&f.var.id())
                && !matches!(f.kind, super::ir::ForKind::ThreadBinding(_)) =>
        {
            if let Some((cond, split)) = find_split(f) {
                let m = f.min.clone();
                let main_ext =
                    simplify(&max(min(split - m.clone(), f.extent.clone()), Expr::int(0)));
                if main_ext.as_int() != Some(0) {
                    let main_body = drop_guard(&f.body, &cond);
                    let main = Stmt::For(Box::new(For {
                        var: f.var.clone(),
                        min: m.clone(),
                        extent: main_ext.clone(),
                        kind: f.kind.clone(),
                        body: main_body,
                    }));
                    let main = go(&main, done);
                    let tail_ext = simplify(&(f.extent.clone() - main_ext.clone()));
                    if tail_ext.as_int() == Some(0) {
                        return main;
                    }
                    // The tail gets a fresh variable so the two loops stay independent.
                    let tv = Var::new(f.var.name(), f.var.dtype());
                    let mut map = HashMap::new();
                    map.insert(f.var.id(), tv.expr());
                    done.insert(tv.id());
                    let tail = Stmt::For(Box::new(For {
                        var: tv,
                        min: simplify(&(m + main_ext)),
                        extent: tail_ext,
                        kind: f.kind.clone(),
                        body: f.body.substitute(&map),
                    }));
                    let tail = go(&tail, done);
                    return Stmt::seq(vec![main, tail]);
                }
            }
            s.map(&mut |x| go(x, done), &mut |e| e.clone())
        }
        other => other.map(&mut |x| go(x, done), &mut |e| e.clone()),
    }
}

fn conjuncts(e: &Expr, out: &mut Vec<Expr>) {
    match e.node() {
        ExprNode::And(a, b) => {
            conjuncts(a, out);
            conjuncts(b, out);
        }
        _ => out.push(e.clone()),
    }
}

/// A guard of `f`'s body and the first value of `f.var` for which it may fail.
fn find_split(f: &For) -> Option<(Expr, Expr)> {
    let mut inner: HashMap<u64, Interval> = HashMap::new();
    let mut lets: HashSet<u64> = HashSet::new();
    let mut conds: Vec<Expr> = vec![];
    f.body.visit(&mut |s| match s {
        Stmt::For(g) => {
            inner.insert(
                g.var.id(),
                Interval::new(
                    g.min.clone(),
                    simplify(&(g.min.clone() + g.extent.clone() - 1)),
                ),
            );
        }
        Stmt::Let { var, .. } => {
            lets.insert(var.id());
        }
        Stmt::If {
            cond, els: None, ..
        } => conjuncts(cond, &mut conds),
        _ => {}
    });
    for c in conds {
        let (a, b) = match c.node() {
            ExprNode::Cmp(CmpOp::Lt, a, b) if a.dtype().is_int() => (a.clone(), b.clone()),
            _ => continue,
        };
        let d = simplify(&(a - b));
        if d.free_vars().iter().any(|v| lets.contains(&v.id())) {
            continue;
        }
        let (coef, rest) = match linear_in(&d, &f.var) {
            Some(x) => x,
            None => continue,
        };
        if coef <= 0 {
            continue;
        }
        // Inner loop bounds may mention other inner loops: evaluate twice.
        let hi = match eval(&rest, &inner).hi {
            Some(h) => simplify_with(&h, &Ranges::new()),
            None => continue,
        };
        let hi = match eval(&hi, &inner).hi {
            Some(h) => simplify(&h),
            None => continue,
        };
        if hi.uses_var(&f.var) || hi.free_vars().iter().any(|v| inner.contains_key(&v.id())) {
            continue;
        }
        // coef*v + hi < 0  <=>  v <= floor((-hi - 1) / coef)
        let split = simplify(&(floordiv(Expr::int(-1) - hi, coef) + 1));
        return Some((c, split));
    }
    None
}

/// `e = coef * v + rest` with constant `coef`.
fn linear_in(e: &Expr, v: &Var) -> Option<(i64, Expr)> {
    use crate::te::BinOp;
    if !e.uses_var(v) {
        return Some((0, e.clone()));
    }
    match e.node() {
        ExprNode::Var(x) if x == v => Some((1, Expr::int(0))),
        ExprNode::Binary(BinOp::Add, a, b) => {
            let (ca, ra) = linear_in(a, v)?;
            let (cb, rb) = linear_in(b, v)?;
            Some((ca + cb, ra + rb))
        }
        ExprNode::Binary(BinOp::Sub, a, b) => {
            let (ca, ra) = linear_in(a, v)?;
            let (cb, rb) = linear_in(b, v)?;
            Some((ca - cb, ra - rb))
        }
        ExprNode::Binary(BinOp::Mul, a, b) => {
            let k = b.as_int()?;
            let (c, r) = linear_in(a, v)?;
            Some((c * k, r * k))
        }
        _ => None,
    }
}

/// Remove the conjunct `cond` from every guard in `s`.
fn drop_guard(s: &Stmt, cond: &Expr) -> Stmt {
    match s {
        Stmt::If {
            cond: c,
            then,
            els: None,
        } => {
            let mut parts = vec![];
            conjuncts(c, &mut parts);
            let kept: Vec<Expr> = parts
                .into_iter()
                .filter(|p| !p.structural_eq(cond))
                .collect();
            let then = drop_guard(then, cond);
            match kept.into_iter().reduce(and) {
                None => then,
                Some(k) => Stmt::if_(k, then),
            }
        }
        other => other.map(&mut |x| drop_guard(x, cond), &mut |e| e.clone()),
    }
}
