//! Symbolic interval arithmetic over index expressions (the core of bounds inference).
//!
//! An [`Interval`] is `[lo, hi]` (inclusive) with expression endpoints; a missing endpoint
//! means unbounded. Variables absent from the environment are fixed (single points).

use super::simplify::simplify;
use crate::te::{max, min, BinOp, Expr, ExprNode};
use std::collections::HashMap;

/// An inclusive interval with symbolic endpoints.
#[derive(Clone, Debug)]
pub struct Interval {
    /// Lower bound (`None`: unbounded).
    pub lo: Option<Expr>,
    /// Upper bound (`None`: unbounded).
    pub hi: Option<Expr>,
}

impl Interval {
    /// The single point `e`.
    pub fn point(e: Expr) -> Interval {
        Interval {
            lo: Some(e.clone()),
            hi: Some(e),
        }
    }
    /// `[lo, hi]`.
    pub fn new(lo: Expr, hi: Expr) -> Interval {
        Interval {
            lo: Some(lo),
            hi: Some(hi),
        }
    }
    /// Unbounded.
    pub fn everything() -> Interval {
        Interval { lo: None, hi: None }
    }
    /// Whether this is a single point.
    pub fn is_point(&self) -> bool {
        match (&self.lo, &self.hi) {
            (Some(a), Some(b)) => a.same_as(b) || a.structural_eq(b),
            _ => false,
        }
    }
    /// The smallest interval holding both.
    pub fn union(&self, o: &Interval) -> Interval {
        let lo = match (&self.lo, &o.lo) {
            (Some(a), Some(b)) => Some(simplify(&min(a.clone(), b.clone()))),
            _ => None,
        };
        let hi = match (&self.hi, &o.hi) {
            (Some(a), Some(b)) => Some(simplify(&max(a.clone(), b.clone()))),
            _ => None,
        };
        Interval { lo, hi }
    }
}

fn both(a: &Option<Expr>, b: &Option<Expr>, f: impl Fn(Expr, Expr) -> Expr) -> Option<Expr> {
    match (a, b) {
        (Some(x), Some(y)) => Some(f(x.clone(), y.clone())),
        _ => None,
    }
}

/// Whether `e` uses a variable that ranges (a non-point entry of `env`).
fn ranges_in(e: &Expr, env: &HashMap<u64, Interval>) -> bool {
    let mut found = false;
    e.visit(&mut |x| {
        if let ExprNode::Var(v) = x.node() {
            if let Some(iv) = env.get(&v.id()) {
                if !iv.is_point() {
                    found = true;
                }
            }
        }
        !found
    });
    found
}

/// Substitute the point entries of `env`.
fn subst_points(e: &Expr, env: &HashMap<u64, Interval>) -> Expr {
    let map: HashMap<u64, Expr> = env
        .iter()
        .filter(|(_, iv)| iv.is_point())
        .map(|(k, iv)| (*k, iv.lo.clone().unwrap()))
        .collect();
    e.substitute(&map)
}

/// The interval of `e` when each variable in `env` ranges over its interval.
pub fn eval(e: &Expr, env: &HashMap<u64, Interval>) -> Interval {
    if !ranges_in(e, env) {
        return Interval::point(subst_points(e, env));
    }
    match e.node() {
        ExprNode::Var(v) => env
            .get(&v.id())
            .cloned()
            .unwrap_or_else(|| Interval::point(e.clone())),
        ExprNode::Binary(op, a, b) => {
            let (x, y) = (eval(a, env), eval(b, env));
            match op {
                BinOp::Add => Interval {
                    lo: both(&x.lo, &y.lo, |p, q| p + q),
                    hi: both(&x.hi, &y.hi, |p, q| p + q),
                },
                BinOp::Sub => Interval {
                    lo: both(&x.lo, &y.hi, |p, q| p - q),
                    hi: both(&x.hi, &y.lo, |p, q| p - q),
                },
                BinOp::Mul => mul(&x, &y, a, b),
                BinOp::Div => match b.as_int() {
                    Some(c) if c > 0 && y.is_point() => Interval {
                        lo: x.lo.map(|l| crate::te::floordiv(l, c)),
                        hi: x.hi.map(|h| crate::te::floordiv(h, c)),
                    },
                    _ => Interval::everything(),
                },
                BinOp::Mod => match b.as_int() {
                    Some(c) if c > 0 => {
                        // Within one period the modulo is monotone.
                        if let (Some(l), Some(h)) = (&x.lo, &x.hi) {
                            let ql = simplify(&crate::te::floordiv(l.clone(), c));
                            let qh = simplify(&crate::te::floordiv(h.clone(), c));
                            if ql.structural_eq(&qh) {
                                return Interval::new(
                                    simplify(&(l.clone() - ql.clone() * c)),
                                    simplify(&(h.clone() - ql * c)),
                                );
                            }
                        }
                        Interval::new(Expr::int_of(0, a.dtype()), Expr::int_of(c - 1, a.dtype()))
                    }
                    _ => Interval::everything(),
                },
                BinOp::Min => Interval {
                    lo: both(&x.lo, &y.lo, min),
                    hi: both(&x.hi, &y.hi, min),
                },
                BinOp::Max => Interval {
                    lo: both(&x.lo, &y.lo, max),
                    hi: both(&x.hi, &y.hi, max),
                },
            }
        }
        ExprNode::Select(_, t, f) => eval(t, env).union(&eval(f, env)),
        ExprNode::Cast(t, a) if t.is_int() && a.dtype().is_int() => eval(a, env),
        _ => Interval::everything(),
    }
}

fn mul(x: &Interval, y: &Interval, a: &Expr, b: &Expr) -> Interval {
    let scale = |iv: &Interval, c: i64| {
        if c >= 0 {
            Interval {
                lo: iv.lo.clone().map(|l| l * c),
                hi: iv.hi.clone().map(|h| h * c),
            }
        } else {
            Interval {
                lo: iv.hi.clone().map(|h| h * c),
                hi: iv.lo.clone().map(|l| l * c),
            }
        }
    };
    if let Some(c) = b.as_int() {
        return scale(x, c);
    }
    if let Some(c) = a.as_int() {
        return scale(y, c);
    }
    // One side a symbolic point: the product's extremes are at the other side's ends.
    let (p, iv) = if y.is_point() {
        (y.lo.clone().unwrap(), x)
    } else if x.is_point() {
        (x.lo.clone().unwrap(), y)
    } else {
        return Interval::everything();
    };
    match (&iv.lo, &iv.hi) {
        (Some(l), Some(h)) => {
            let (u, v) = (l.clone() * p.clone(), h.clone() * p);
            Interval::new(min(u.clone(), v.clone()), max(u, v))
        }
        _ => Interval::everything(),
    }
}
