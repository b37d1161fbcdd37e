//! Pass: loop partition (Halide's and TVM's answer to non-dividing splits and to
//! boundary conditions).
//!
//! Requires: flattened, simplified IR. Ensures:
//! - a loop over `v` whose body holds a guard `a*v + rest < 0` (a > 0, `rest` over loops
//!   inside the body and values fixed outside) is split into a main loop, where the guard
//!   is provably true and removed, and a tail loop that keeps it. So the main body of a
//!   non-dividing split carries no guard and can be vectorized; only the last iterations
//!   pay for the check;
//! - a serial, parallel or unrolled loop with constant bounds whose body selects on a
//!   comparison linear in `v` (a padding stage's `select(0 <= y - 1 && y - 1 < h, x[..],
//!   0)`, a window that reads it) is split at the constant points where the comparison
//!   becomes provably true (a lower bound: the loop's first iterations keep the select) or
//!   stops being so (an upper bound: its last iterations keep it); in between the select
//!   is its true branch, and the next `simplify` removes the index clamps the ranges
//!   decide. A split point that depends on the loops around `v` is taken where the
//!   comparison holds for all their values (a stride-2 plane's even and odd halves, an
//!   enclosing loop of extent 2). Where the inner loops' extents depend on `v` (a packed
//!   panel whose last block is shorter), a serial loop of at most 64 iterations is checked
//!   value by value and its provably true prefix split off. At most [`MAX_SELECT_SPLITS`] such
//!   splits per function bound the code growth.

use super::bound::{eval, Interval};
use super::ir::{For, Stmt};
use super::simplify::{simplify, simplify_with, Ranges};
use crate::te::{and, floordiv, max, min, CmpOp, Expr, ExprNode, Var};
use std::collections::{HashMap, HashSet};

/// Splits on select conditions allowed per function (each copies a loop body).
pub const MAX_SELECT_SPLITS: usize = 64;

/// Partition every loop whose body holds a guard it can prove for a prefix of iterations,
/// or a select condition it can prove for a constant range of them.
pub fn partition(s: &Stmt) -> Stmt {
    let mut st = State {
        done: HashSet::new(),
        select_splits: 0,
        outer: HashMap::new(),
    };
    go(s, &mut st)
}

struct State {
    /// Loop variables not to split again (the parts that keep their condition).
    done: HashSet<u64>,
    select_splits: usize,
    /// The ranges of the loops around the statement being visited.
    outer: HashMap<u64, Interval>,
}

/// Where a condition of a loop's body is provably true.
struct Split {
    /// The conjunct (of a guard, or of a select's condition).
    cond: Expr,
    /// It holds for `v < at` (`prefix`), or for `v >= at`.
    at: Expr,
    prefix: bool,
    /// It is a select's condition, not an `if` guard.
    select: bool,
}

/// `f` over `[min, min + ext)` with `body`; a fresh variable unless `keep_var`.
fn part(f: &For, min: Expr, ext: Expr, body: &Stmt, keep_var: bool) -> Stmt {
    let (var, body) = if keep_var {
        (f.var.clone(), body.clone())
    } else {
        let v = Var::new(f.var.name(), f.var.dtype());
        let mut map = HashMap::new();
        map.insert(f.var.id(), v.expr());
        (v, body.substitute(&map))
    };
    Stmt::For(Box::new(For {
        var,
        min,
        extent: ext,
        kind: f.kind.clone(),
        body,
    }))
}

fn go(s: &Stmt, st: &mut State) -> Stmt {
    match s {
        Stmt::For(f)
            if !st.done.contains(&f.var.id())
                && !matches!(f.kind, super::ir::ForKind::ThreadBinding(_)) =>
        {
            let allow_select = st.select_splits < MAX_SELECT_SPLITS;
            if let Some(sp) = find_split(f, allow_select, &st.outer) {
                let m = f.min.clone();
                // Iterations before the split point.
                let head_ext = simplify(&max(
                    min(sp.at.clone() - m.clone(), f.extent.clone()),
                    Expr::int(0),
                ));
                let tail_ext = simplify(&(f.extent.clone() - head_ext.clone()));
                let dropped = if sp.select {
                    drop_select_cond(&f.body, &sp.cond)
                } else {
                    drop_guard(&f.body, &sp.cond)
                };
                let (head_body, tail_body) = if sp.prefix {
                    (&dropped, &f.body)
                } else {
                    (&f.body, &dropped)
                };
                // The part that keeps the condition is not split on it again.
                let (head_kept, tail_kept) = (!sp.prefix, sp.prefix);
                let useful = if sp.prefix {
                    head_ext.as_int() != Some(0)
                } else {
                    tail_ext.as_int() != Some(0)
                };
                if useful {
                    if sp.select {
                        st.select_splits += 1;
                    }
                    let tail_min = simplify(&(m.clone() + head_ext.clone()));
                    let mut parts = vec![];
                    for (lo, ext, body, kept) in [
                        (m, head_ext, head_body, head_kept),
                        (tail_min, tail_ext, tail_body, tail_kept),
                    ] {
                        if ext.as_int() == Some(0) {
                            continue;
                        }
                        // The part that keeps the condition gets a fresh variable (marked
                        // done: copies of the body elsewhere share the other variables).
                        let p = part(f, lo, ext, body, !kept);
                        if kept {
                            if let Stmt::For(x) = &p {
                                st.done.insert(x.var.id());
                            }
                        }
                        parts.push(go(&p, st));
                    }
                    return if parts.len() == 1 {
                        parts.pop().expect("one part")
                    } else {
                        Stmt::seq(parts)
                    };
                }
            }
            inside(f, s, st)
        }
        Stmt::For(f) => inside(f, s, st),
        other => other.map(&mut |x| go(x, st), &mut |e| e.clone()),
    }
}

/// The values `f`'s variable takes.
fn range(f: &For) -> Interval {
    Interval::new(
        f.min.clone(),
        simplify(&(f.min.clone() + f.extent.clone() - 1)),
    )
}

/// The loop `s` (over `f`) with its body partitioned, `f`'s range known in the body.
fn inside(f: &For, s: &Stmt, st: &mut State) -> Stmt {
    let before = st.outer.insert(f.var.id(), range(f));
    let out = s.map(&mut |x| go(x, st), &mut |e| e.clone());
    match before {
        Some(r) => st.outer.insert(f.var.id(), r),
        None => st.outer.remove(&f.var.id()),
    };
    out
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

/// `c` as `d < 0` for an integer comparison (`a < b`: `a - b`; `a <= b`: `a - b - 1`; `a >
/// b`: `b - a`; `a >= b`: `b - a - 1`).
fn as_negative(c: &Expr, all_forms: bool) -> Option<Expr> {
    let ExprNode::Cmp(op, a, b) = c.node() else {
        return None;
    };
    if !a.dtype().is_int() || c.lanes() != 1 {
        return None;
    }
    let (a, b) = (a.clone(), b.clone());
    Some(simplify(&match op {
        CmpOp::Lt => a - b,
        CmpOp::Le if all_forms => a - b - 1,
        CmpOp::Gt if all_forms => b - a,
        CmpOp::Ge if all_forms => b - a - 1,
        _ => return None,
    }))
}

/// A guard of `f`'s body and the first value of `f.var` for which it may fail; or, with
/// `selects` and constant bounds, a select condition and where it becomes or stops being
/// provably true. A select's split point that depends on the loops around `f` (their
/// ranges `outer`) is taken where the condition holds for all their values (a padded
/// plane's even columns, under a loop over the two halves).
fn find_split(f: &For, selects: bool, outer: &HashMap<u64, Interval>) -> Option<Split> {
    let mut inner: HashMap<u64, Interval> = HashMap::new();
    let mut lets: HashSet<u64> = HashSet::new();
    let mut conds: Vec<(Expr, bool)> = vec![];
    f.body.visit(&mut |s| match s {
        Stmt::For(g) => {
            inner.insert(g.var.id(), range(g));
        }
        Stmt::Let { var, .. } => {
            lets.insert(var.id());
        }
        Stmt::If {
            cond, els: None, ..
        } => {
            let mut cs = vec![];
            conjuncts(cond, &mut cs);
            conds.extend(cs.into_iter().map(|c| (c, false)));
        }
        _ => {}
    });
    let constant_loop = f.min.as_int().is_some() && f.extent.as_int().is_some();
    if selects
        && constant_loop
        && matches!(
            f.kind,
            super::ir::ForKind::Serial
                | super::ir::ForKind::Parallel
                | super::ir::ForKind::Unrolled
        )
    {
        f.body.visit_exprs(&mut |e| {
            e.visit(&mut |x| {
                if let ExprNode::Select(c, _, _) = x.node() {
                    if c.lanes() == 1 {
                        let mut cs = vec![];
                        conjuncts(c, &mut cs);
                        conds.extend(cs.into_iter().map(|c| (c, true)));
                    }
                }
                true
            })
        });
    }
    for (c, select) in conds {
        let Some(d) = as_negative(&c, select) else {
            continue;
        };
        if d.free_vars().iter().any(|v| lets.contains(&v.id())) {
            continue;
        }
        let (coef, rest) = match linear_in(&d, &f.var) {
            Some(x) => x,
            None => continue,
        };
        if coef == 0 || (!select && coef < 0) {
            continue;
        }
        let hi = match upper_bound(&rest, &inner) {
            Some(h)
                if !h.uses_var(&f.var)
                    && !h.free_vars().iter().any(|v| inner.contains_key(&v.id())) =>
            {
                h
            }
            _ => {
                // The inner loops' extents depend on `v` (a packed panel's last block
                // is shorter): prove the condition value by value instead.
                if let Some(at) = select
                    .then(|| true_prefix(f, coef, &rest, &inner))
                    .flatten()
                {
                    return Some(Split {
                        cond: c,
                        at: Expr::int(at),
                        prefix: true,
                        select,
                    });
                }
                continue;
            }
        };
        let split_at = |hi: Expr| {
            if coef > 0 {
                // coef*v + hi < 0  <=>  v <= floor((-hi - 1) / coef)
                (simplify(&(floordiv(Expr::int(-1) - hi, coef) + 1)), true)
            } else {
                // hi < |coef|*v  <=>  v >= floor(hi / |coef|) + 1
                (simplify(&(floordiv(hi, -coef) + 1)), false)
            }
        };
        let (mut at, prefix) = split_at(hi.clone());
        if select && at.as_int().is_none() {
            // The largest `rest` over the enclosing loops too: a constant point where
            // the condition holds whatever their values.
            if let Some(h) = upper_bound(&hi, outer).filter(|h| h.as_int().is_some()) {
                at = split_at(h).0;
            }
        }
        if select {
            // Only constant splits strictly inside the loop: anything else would copy the
            // body for nothing (or for iterations that do not exist).
            let (lo, n) = (f.min.as_int()?, f.extent.as_int()?);
            match at.as_int() {
                Some(a) if a > lo && a < lo + n => {}
                _ => continue,
            }
        }
        return Some(Split {
            cond: c,
            at,
            prefix,
            select,
        });
    }
    None
}

/// Most iterations of a loop checked value by value for a select split.
const MAX_SCAN: i64 = 64;

/// The upper bound of `e` over the loops in `env`, simplified; inner loop bounds may
/// mention other inner loops, so it is evaluated twice.
fn upper_bound(e: &Expr, env: &HashMap<u64, Interval>) -> Option<Expr> {
    let h = simplify_with(&eval(e, env).hi?, &Ranges::new());
    Some(simplify(&eval(&h, env).hi?))
}

/// For a constant loop `f` over `v` and a condition `coef * v + rest < 0` (`coef > 0`)
/// whose inner loops' extents depend on `v`: the first value of `v` for which the
/// condition is not provably true for every inner iteration, when that leaves a
/// non-empty proper prefix of the loop (each value checked with `v` fixed, so the
/// inner bounds are constants).
fn true_prefix(f: &For, coef: i64, rest: &Expr, inner: &HashMap<u64, Interval>) -> Option<i64> {
    let (lo, n) = (f.min.as_int()?, f.extent.as_int()?);
    // Not a parallel loop: its two parts would each be dealt out to the threads (8 row
    // blocks on 2 threads: 4 + 4 became 4 + 3, then 1 alone, 25% slower).
    if coef <= 0 || n > MAX_SCAN || f.kind == super::ir::ForKind::Parallel {
        return None;
    }
    let holds = |v: i64| {
        let mut env = inner.clone();
        env.insert(f.var.id(), Interval::point(Expr::int(v)));
        upper_bound(rest, &env)
            .and_then(|x| x.as_int())
            .is_some_and(|h| {
                coef.checked_mul(v)
                    .and_then(|cv| cv.checked_add(h))
                    .is_some_and(|t| t < 0)
            })
    };
    let at = (lo..lo + n).find(|&v| !holds(v))?;
    (at > lo).then_some(at)
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

/// `c` without its conjunct `cond`: `None` when `cond` is not one of them, else the
/// other conjuncts (`None` inside when there are none left).
fn without_conjunct(c: &Expr, cond: &Expr) -> Option<Option<Expr>> {
    let mut parts = vec![];
    conjuncts(c, &mut parts);
    let n = parts.len();
    parts.retain(|p| !p.structural_eq(cond));
    (parts.len() < n).then(|| parts.into_iter().reduce(and))
}

/// Remove the conjunct `cond` from every guard in `s`.
fn drop_guard(s: &Stmt, cond: &Expr) -> Stmt {
    match s {
        Stmt::If {
            cond: c,
            then,
            els: None,
        } => {
            let then = drop_guard(then, cond);
            match without_conjunct(c, cond) {
                None => Stmt::if_(c.clone(), then),
                Some(None) => then,
                Some(Some(k)) => Stmt::if_(k, then),
            }
        }
        other => other.map(&mut |x| drop_guard(x, cond), &mut |e| e.clone()),
    }
}

/// Replace the conjunct `cond` by true in every select condition of `s` (a select left
/// without conditions is its true branch).
fn drop_select_cond(s: &Stmt, cond: &Expr) -> Stmt {
    s.map_exprs(&mut |e| drop_in_expr(e, cond))
}

fn drop_in_expr(e: &Expr, cond: &Expr) -> Expr {
    e.mutate(&mut |x| {
        let ExprNode::Select(c, t, f) = x.node() else {
            return None;
        };
        let rest = without_conjunct(c, cond)?;
        let t = drop_in_expr(t, cond);
        Some(match rest {
            None => t,
            Some(k) => crate::te::select(k, t, drop_in_expr(f, cond)),
        })
    })
}
