//! Pass: vectorize.
//!
//! Requires: flattened accesses, simplified constant extents. Ensures: a loop marked
//! `vectorized` whose extent N is a multiple of the vector width W (128 bits / element
//! size: 4 for 32-bit types, 2 for 64-bit ones) and whose body is a sequence of stores
//! (and lets that do not depend on the loop variable) over one element width becomes
//! `N / W` unrolled copies (an `unrolled` loop) of a vector body: indices become
//! `ramp(base, stride, W)`, values invariant in the loop are `broadcast` (a select's
//! invariant condition stays scalar, choosing between whole vectors). Anything else
//! (other extents, mixed widths, conditionals, inner loops, non-affine indices) is left
//! as a scalar loop, unrolled when it runs at most 4 times (a split's tail): vectorize
//! is a hint, never a change of result.

use super::ir::{ForKind, Stmt};
use super::simplify::simplify;
use crate::te::{BinOp, DType, Expr, ExprNode, Var};

/// Longest `vectorized` loop left scalar that is unrolled rather than kept a loop.
const TAIL_UNROLL: i64 = 4;

/// Vectorize the loops marked for it.
pub fn vectorize(s: &Stmt) -> Stmt {
    match s {
        Stmt::For(f) if f.kind == ForKind::Vectorized => {
            let body = vectorize(&f.body);
            if let (Some(n), Some(0)) = (f.extent.as_int(), f.min.as_int()) {
                if let Some(w) = width_of(&body) {
                    if n % w as i64 == 0 {
                        let outer = Var::new(format!("{}.vec", f.var.name()), DType::I64);
                        let base = simplify(&(outer.expr() * w as i64));
                        let v = Vec_ {
                            var: f.var.clone(),
                            base,
                            lanes: w,
                        };
                        if let Some(vb) = v.stmt(&body) {
                            let kind = if n / w as i64 > 1 {
                                ForKind::Unrolled
                            } else {
                                ForKind::Serial
                            };
                            return Stmt::for_(
                                outer,
                                Expr::int(0),
                                Expr::int(n / w as i64),
                                kind,
                                vb,
                            );
                        }
                    }
                }
            }
            // A short remainder (the tail of a split that does not divide its extent)
            // is unrolled: its few scalar copies then use constant indices, so a tile
            // accumulator it updates can stay in registers.
            let kind = match f.extent.as_int() {
                Some(n) if (1..=TAIL_UNROLL).contains(&n) => ForKind::Unrolled,
                _ => ForKind::Serial,
            };
            Stmt::for_(f.var.clone(), f.min.clone(), f.extent.clone(), kind, body)
        }
        other => other.map(&mut |x| vectorize(x), &mut |e| e.clone()),
    }
}

/// The common vector width of the stores in `s` (None when they disagree).
fn width_of(s: &Stmt) -> Option<u32> {
    let mut w: Option<u32> = None;
    let mut ok = true;
    s.visit(&mut |x| {
        if let Stmt::Store { buf, .. } = x {
            let bits = buf.dtype().bits();
            if buf.dtype() == DType::Bool {
                ok = false;
            }
            let lw = (128 / bits) as u32;
            if w.map(|p| p != lw).unwrap_or(false) {
                ok = false;
            }
            w = Some(lw);
        }
    });
    if ok {
        w
    } else {
        None
    }
}

struct Vec_ {
    var: Var,
    base: Expr,
    lanes: u32,
}

impl Vec_ {
    fn bits_ok(&self, dt: DType) -> bool {
        dt != DType::Bool && dt.bits() as u32 * self.lanes == 128
    }

    fn stmt(&self, s: &Stmt) -> Option<Stmt> {
        match s {
            Stmt::Seq(v) => Some(Stmt::Seq(
                v.iter().map(|x| self.stmt(x)).collect::<Option<Vec<_>>>()?,
            )),
            Stmt::Store {
                buf,
                indices,
                value,
            } => {
                let idx = self.index(&indices[0])?;
                if !matches!(idx.node(), ExprNode::Ramp(..)) {
                    return None; // every lane would store to the same place
                }
                let val = self.value(value)?;
                Some(Stmt::Store {
                    buf: buf.clone(),
                    indices: vec![idx],
                    value: val,
                })
            }
            Stmt::Let { var, value, body } if !value.uses_var(&self.var) => Some(Stmt::Let {
                var: var.clone(),
                value: value.clone(),
                body: Box::new(self.stmt(body)?),
            }),
            Stmt::Produce { name, body } => Some(Stmt::Produce {
                name: name.clone(),
                body: Box::new(self.stmt(body)?),
            }),
            Stmt::NoOp => Some(Stmt::NoOp),
            _ => None,
        }
    }

    /// An index expression: must be affine in the loop variable.
    fn index(&self, e: &Expr) -> Option<Expr> {
        if !e.uses_var(&self.var) {
            return Some(Expr::new(ExprNode::Broadcast(e.clone(), self.lanes)));
        }
        let (coef, rest) = affine(e, &self.var)?;
        let b = simplify(&(rest + self.base.clone() * coef));
        Some(Expr::new(ExprNode::Ramp(b, coef, self.lanes)))
    }

    /// A value expression with every operand widened to `lanes`.
    fn value(&self, e: &Expr) -> Option<Expr> {
        if !e.uses_var(&self.var) {
            if !self.bits_ok(e.dtype()) {
                return None;
            }
            return Some(Expr::new(ExprNode::Broadcast(e.clone(), self.lanes)));
        }
        match e.node() {
            ExprNode::Load(b, idx) => {
                if !self.bits_ok(b.dtype()) {
                    return None;
                }
                let i = self.index(&idx[0])?;
                if let ExprNode::Broadcast(s, _) = i.node() {
                    return Some(Expr::new(ExprNode::Broadcast(
                        b.load(vec![s.clone()]),
                        self.lanes,
                    )));
                }
                Some(b.load(vec![i]))
            }
            ExprNode::Binary(_, a, b) | ExprNode::Cmp(_, a, b) => {
                if !self.bits_ok(a.dtype()) {
                    return None;
                }
                let (x, y) = (self.value(a)?, self.value(b)?);
                Some(e.with_children(vec![x, y]))
            }
            ExprNode::Select(c, t, f) => {
                // A condition invariant in the loop stays scalar: it picks a whole vector.
                let c = if c.uses_var(&self.var) {
                    self.value(c)?
                } else {
                    c.clone()
                };
                let (t, f) = (self.value(t)?, self.value(f)?);
                Some(e.with_children(vec![c, t, f]))
            }
            ExprNode::And(..) | ExprNode::Or(..) | ExprNode::Not(..) => {
                let kids = e
                    .children()
                    .into_iter()
                    .map(|k| self.value(k))
                    .collect::<Option<Vec<_>>>()?;
                Some(e.with_children(kids))
            }
            ExprNode::Cast(t, a) => {
                if !self.bits_ok(*t) || !self.bits_ok(a.dtype()) {
                    return None;
                }
                Some(e.with_children(vec![self.value(a)?]))
            }
            ExprNode::Call(_, args) => {
                if !self.bits_ok(e.dtype()) {
                    return None;
                }
                let a = args
                    .iter()
                    .map(|k| self.value(k))
                    .collect::<Option<Vec<_>>>()?;
                Some(e.with_children(a))
            }
            ExprNode::Let(v, val, body) => {
                // An expression `let` (shared subexpressions from `egraph_algebra`): its
                // value is substituted, since a vector-valued variable would not carry
                // its lanes in the IR's types. Loads repeat; the values are the same.
                let mut m = std::collections::HashMap::new();
                m.insert(v.id(), val.clone());
                self.value(&body.substitute(&m))
            }
            _ => None, // the loop variable itself as a value, ...
        }
    }
}

/// `e = coef * v + rest` with a constant `coef`, if `e` is affine in `v`.
pub(super) fn affine(e: &Expr, v: &Var) -> Option<(i64, Expr)> {
    if !e.uses_var(v) {
        return Some((0, e.clone()));
    }
    match e.node() {
        ExprNode::Var(x) if x == v => Some((1, Expr::int(0))),
        ExprNode::Binary(BinOp::Add, a, b) => {
            let (ca, ra) = affine(a, v)?;
            let (cb, rb) = affine(b, v)?;
            Some((ca + cb, ra + rb))
        }
        ExprNode::Binary(BinOp::Sub, a, b) => {
            let (ca, ra) = affine(a, v)?;
            let (cb, rb) = affine(b, v)?;
            Some((ca - cb, ra - rb))
        }
        ExprNode::Binary(BinOp::Mul, a, b) => {
            if let Some(k) = b.as_int() {
                let (c, r) = affine(a, v)?;
                Some((c * k, r * k))
            } else if let Some(k) = a.as_int() {
                let (c, r) = affine(b, v)?;
                Some((c * k, r * k))
            } else {
                None
            }
        }
        _ => None,
    }
}
