//! Pass: arithmetic simplification.
//!
//! Requires: any IR. Ensures: integer expressions are in a canonical linear form
//! (`sum(coef * atom) + const`, atoms ordered by variable creation so outer loops come
//! first), constants folded, and — given the loop variables' ranges — floor division and
//! modulo removed where the range proves them trivial (`(io*16 + ii) / 16 -> io` when
//! `0 <= ii < 16`), comparisons, `min`/`max` and `select` decided where the ranges decide
//! them, and `if` statements with decided conditions removed. Float arithmetic is only
//! constant-folded (never reassociated), so results do not change.

use super::ir::{For, Stmt};
use crate::te::{cast, BinOp, CmpOp, DType, Expr, ExprNode, MathFn};
use std::collections::HashMap;

/// Constant bounds `[lo, hi]` (inclusive) of integer variables.
#[derive(Clone, Default, Debug)]
pub struct Ranges {
    map: HashMap<u64, (i64, i64)>,
}

impl Ranges {
    /// No known ranges.
    pub fn new() -> Ranges {
        Ranges::default()
    }
    /// Record that var `id` lies in `[lo, hi]`.
    pub fn set(&mut self, id: u64, lo: i64, hi: i64) {
        self.map.insert(id, (lo, hi));
    }
    /// Forget var `id`'s range.
    pub fn remove(&mut self, id: u64) {
        self.map.remove(&id);
    }
    /// The range of var `id`, if known.
    pub fn get(&self, id: u64) -> Option<(i64, i64)> {
        self.map.get(&id).copied()
    }
}

/// Simplify an expression knowing nothing about variable ranges.
pub fn simplify(e: &Expr) -> Expr {
    simplify_with(e, &Ranges::new())
}

/// Simplify an expression with known variable ranges.
pub fn simplify_with(e: &Expr, r: &Ranges) -> Expr {
    Simp { r }.expr(e)
}

/// Try to decide a boolean expression under the ranges.
pub fn prove(e: &Expr, r: &Ranges) -> Option<bool> {
    let s = simplify_with(e, r);
    match s.node() {
        ExprNode::Int(v, DType::Bool) => Some(*v != 0),
        _ => None,
    }
}

/// Constant bounds of an integer expression under the ranges, if they can be derived.
pub fn const_bounds(e: &Expr, r: &Ranges) -> Option<(i64, i64)> {
    let s = Simp { r };
    let l = s.linear(&s.expr(e))?;
    s.lin_bounds(&l)
}

/// Simplify every expression of a statement, tracking loop ranges (constant extents), and
/// drop `if`s whose condition is decided.
pub fn simplify_stmt(s: &Stmt) -> Stmt {
    let mut r = Ranges::new();
    stmt(s, &mut r)
}

fn stmt(s: &Stmt, r: &mut Ranges) -> Stmt {
    match s {
        Stmt::For(f) => {
            let min = simplify_with(&f.min, r);
            let extent = simplify_with(&f.extent, r);
            if extent.as_int() == Some(0) {
                return Stmt::NoOp;
            }
            if extent.as_int() == Some(1) && !matches!(f.kind, super::ir::ForKind::ThreadBinding(_))
            {
                // A single iteration: the loop variable is just its first value.
                let mut m = HashMap::new();
                m.insert(f.var.id(), min);
                return stmt(&f.body.substitute(&m), r);
            }
            let known = match (const_bounds(&min, r), const_bounds(&extent, r)) {
                (Some((lo, _)), Some((_, ehi))) => {
                    let (_, mhi) = const_bounds(&min, r).unwrap();
                    Some((lo, mhi + ehi - 1))
                }
                _ => None,
            };
            if let Some((lo, hi)) = known {
                r.set(f.var.id(), lo, hi.max(lo));
            }
            let body = stmt(&f.body, r);
            r.remove(f.var.id());
            if matches!(body, Stmt::NoOp) {
                return Stmt::NoOp;
            }
            Stmt::For(Box::new(For {
                var: f.var.clone(),
                min,
                extent,
                kind: f.kind.clone(),
                body,
            }))
        }
        Stmt::If { cond, then, els } => {
            let c = simplify_with(cond, r);
            match c.node() {
                ExprNode::Int(v, DType::Bool) => {
                    if *v != 0 {
                        stmt(then, r)
                    } else {
                        els.as_ref().map(|e| stmt(e, r)).unwrap_or(Stmt::NoOp)
                    }
                }
                _ => Stmt::If {
                    cond: c,
                    then: Box::new(stmt(then, r)),
                    els: els.as_ref().map(|e| Box::new(stmt(e, r))),
                },
            }
        }
        Stmt::Seq(v) => Stmt::seq(v.iter().map(|x| stmt(x, r)).collect()),
        Stmt::Let { var, value, body } => {
            let value = simplify_with(value, r);
            if let Some(b) = const_bounds(&value, r) {
                if var.dtype().is_int() {
                    r.set(var.id(), b.0, b.1);
                }
            }
            let body = stmt(body, r);
            r.remove(var.id());
            Stmt::Let {
                var: var.clone(),
                value,
                body: Box::new(body),
            }
        }
        other => {
            let mut fs = |x: &Stmt| stmt(x, &mut r.clone());
            let rr = r.clone();
            other.map(&mut fs, &mut |e| simplify_with(e, &rr))
        }
    }
}

// ---------------------------------------------------------------- linear forms

/// `sum(coef * atom) + constant` over one integer dtype.
#[derive(Clone, Debug)]
struct Lin {
    dt: DType,
    terms: Vec<(String, Expr, i64)>,
    c: i64,
}

impl Lin {
    fn constant(c: i64, dt: DType) -> Lin {
        Lin {
            dt,
            terms: vec![],
            c,
        }
    }
    fn atom(e: Expr) -> Lin {
        Lin {
            dt: e.dtype(),
            terms: vec![(key(&e), e, 1)],
            c: 0,
        }
    }
    fn add(mut self, o: &Lin, sign: i64) -> Lin {
        for (k, e, c) in &o.terms {
            if let Some(t) = self.terms.iter_mut().find(|t| &t.0 == k) {
                t.2 = t.2.wrapping_add(c.wrapping_mul(sign));
            } else {
                self.terms
                    .push((k.clone(), e.clone(), c.wrapping_mul(sign)));
            }
        }
        self.terms.retain(|t| t.2 != 0);
        self.c = self.c.wrapping_add(o.c.wrapping_mul(sign));
        self
    }
    fn scale(mut self, k: i64) -> Lin {
        if k == 0 {
            return Lin::constant(0, self.dt);
        }
        for t in &mut self.terms {
            t.2 = t.2.wrapping_mul(k);
        }
        self.c = self.c.wrapping_mul(k);
        self
    }
    fn as_const(&self) -> Option<i64> {
        if self.terms.is_empty() {
            Some(self.c)
        } else {
            None
        }
    }
    fn to_expr(&self) -> Expr {
        let mut terms = self.terms.clone();
        terms.sort_by(|a, b| order_key(&a.1).cmp(&order_key(&b.1)).then(a.0.cmp(&b.0)));
        // Positive terms first so the printed form reads `a*16 + b - c`.
        let mut out: Option<Expr> = None;
        let mk = |e: &Expr, c: i64, dt| {
            if c == 1 {
                e.clone()
            } else {
                mul(e.clone(), Expr::int_of(c, dt))
            }
        };
        for (_, e, c) in terms.iter().filter(|t| t.2 > 0) {
            let t = mk(e, *c, self.dt);
            out = Some(match out {
                None => t,
                Some(o) => bin(BinOp::Add, o, t),
            });
        }
        for (_, e, c) in terms.iter().filter(|t| t.2 < 0) {
            out = Some(match out {
                None => mul(e.clone(), Expr::int_of(*c, self.dt)),
                Some(o) => bin(BinOp::Sub, o, mk(e, -*c, self.dt)),
            });
        }
        match out {
            None => Expr::int_of(self.c, self.dt),
            Some(o) if self.c > 0 => bin(BinOp::Add, o, Expr::int_of(self.c, self.dt)),
            Some(o) if self.c < 0 => bin(BinOp::Sub, o, Expr::int_of(-self.c, self.dt)),
            Some(o) => o,
        }
    }
}

fn bin(op: BinOp, a: Expr, b: Expr) -> Expr {
    Expr::new(ExprNode::Binary(op, a, b))
}
fn mul(a: Expr, b: Expr) -> Expr {
    bin(BinOp::Mul, a, b)
}

/// Atoms are ordered by the smallest variable id they mention: vars created first (outer
/// loops, shape variables) print first.
fn order_key(e: &Expr) -> u64 {
    let mut m = u64::MAX;
    e.visit(&mut |x| {
        if let ExprNode::Var(v) = x.node() {
            m = m.min(v.id());
        }
        true
    });
    m
}

/// A structural key: like the printed form but with variable ids.
pub(crate) fn key(e: &Expr) -> String {
    let mut s = String::new();
    write_key(e, &mut s);
    s
}
fn write_key(e: &Expr, s: &mut String) {
    use std::fmt::Write;
    match e.node() {
        ExprNode::Var(v) => {
            let _ = write!(s, "{}#{}", v.name(), v.id());
        }
        ExprNode::Int(v, t) => {
            let _ = write!(s, "{}:{}", v, t);
        }
        ExprNode::Float(v, t) => {
            let _ = write!(s, "{}:{}", v.to_bits(), t);
        }
        _ => {
            let head = match e.node() {
                ExprNode::Binary(op, ..) => format!("{:?}", op),
                ExprNode::Cmp(op, ..) => format!("{:?}", op),
                ExprNode::And(..) => "and".into(),
                ExprNode::Or(..) => "or".into(),
                ExprNode::Not(..) => "not".into(),
                ExprNode::Select(..) => "sel".into(),
                ExprNode::Cast(t, _) => format!("cast{}", t),
                ExprNode::Call(f, _) => f.name().into(),
                ExprNode::Read(t, _) => format!("read:{}", t.name()),
                ExprNode::Load(b, _) => format!("load:{}", b.name()),
                ExprNode::Ramp(_, st, l) => format!("ramp{}:{}", st, l),
                ExprNode::Broadcast(_, l) => format!("bc{}", l),
                ExprNode::Let(v, ..) => format!("let{}", v.id()),
                ExprNode::Reduce(r) => format!("reduce{:p}", std::sync::Arc::as_ptr(r)),
                _ => unreachable!(),
            };
            s.push_str(&head);
            s.push('(');
            for k in e.children() {
                write_key(k, s);
                s.push(',');
            }
            s.push(')');
        }
    }
}

struct Simp<'a> {
    r: &'a Ranges,
}

fn floordiv_i(a: i64, b: i64) -> i64 {
    crate::te::arith::floordiv_i64(a, b)
}
fn floormod_i(a: i64, b: i64) -> i64 {
    crate::te::arith::floormod_i64(a, b)
}

impl<'a> Simp<'a> {
    /// The linear form of an already-simplified integer expression.
    fn linear(&self, e: &Expr) -> Option<Lin> {
        let dt = e.dtype();
        if !dt.is_int() || e.lanes() != 1 {
            return None;
        }
        Some(match e.node() {
            ExprNode::Int(v, _) => Lin::constant(*v, dt),
            ExprNode::Binary(BinOp::Add, a, b) => self.linear(a)?.add(&self.linear(b)?, 1),
            ExprNode::Binary(BinOp::Sub, a, b) => self.linear(a)?.add(&self.linear(b)?, -1),
            ExprNode::Binary(BinOp::Mul, a, b) => {
                let (la, lb) = (self.linear(a)?, self.linear(b)?);
                match (la.as_const(), lb.as_const()) {
                    (_, Some(k)) => la.scale(k),
                    (Some(k), _) => lb.scale(k),
                    _ => Lin::atom(e.clone()),
                }
            }
            _ => Lin::atom(e.clone()),
        })
    }

    fn atom_bounds(&self, e: &Expr) -> Option<(i64, i64)> {
        match e.node() {
            ExprNode::Var(v) => self.r.get(v.id()),
            ExprNode::Int(v, _) => Some((*v, *v)),
            ExprNode::Binary(BinOp::Mod, _, b) => {
                let c = b.as_int()?;
                if c > 0 {
                    Some((0, c - 1))
                } else {
                    None
                }
            }
            ExprNode::Binary(BinOp::Div, a, b) => {
                let c = b.as_int()?;
                let (lo, hi) = self.lin_bounds(&self.linear(a)?)?;
                if c > 0 {
                    Some((floordiv_i(lo, c), floordiv_i(hi, c)))
                } else {
                    None
                }
            }
            ExprNode::Binary(BinOp::Min, a, b) => {
                let (x, y) = (self.expr_bounds(a)?, self.expr_bounds(b)?);
                Some((x.0.min(y.0), x.1.min(y.1)))
            }
            ExprNode::Binary(BinOp::Max, a, b) => {
                let (x, y) = (self.expr_bounds(a)?, self.expr_bounds(b)?);
                Some((x.0.max(y.0), x.1.max(y.1)))
            }
            ExprNode::Binary(BinOp::Mul, a, b) => {
                let (x, y) = (self.expr_bounds(a)?, self.expr_bounds(b)?);
                let c = [x.0 * y.0, x.0 * y.1, x.1 * y.0, x.1 * y.1];
                Some((*c.iter().min()?, *c.iter().max()?))
            }
            ExprNode::Select(_, t, f) => {
                let (x, y) = (self.expr_bounds(t)?, self.expr_bounds(f)?);
                Some((x.0.min(y.0), x.1.max(y.1)))
            }
            ExprNode::Cast(_, a) if a.dtype().is_int() => self.expr_bounds(a),
            _ => None,
        }
    }

    fn expr_bounds(&self, e: &Expr) -> Option<(i64, i64)> {
        self.lin_bounds(&self.linear(e)?)
    }

    fn lin_bounds(&self, l: &Lin) -> Option<(i64, i64)> {
        let (mut lo, mut hi) = (l.c as i128, l.c as i128);
        for (_, e, c) in &l.terms {
            let (a, b) = self.atom_bounds(e)?;
            let (x, y) = ((a as i128) * (*c as i128), (b as i128) * (*c as i128));
            lo += x.min(y);
            hi += x.max(y);
        }
        if lo < i64::MIN as i128 || hi > i64::MAX as i128 {
            return None;
        }
        Some((lo as i64, hi as i64))
    }

    fn expr(&self, e: &Expr) -> Expr {
        let kids: Vec<Expr> = e.children().into_iter().map(|k| self.expr(k)).collect();
        let e2 = if kids.iter().zip(e.children()).all(|(a, b)| a.same_as(b)) {
            e.clone()
        } else {
            e.with_children(kids)
        };
        self.node(&e2)
    }

    /// Simplify one node whose children are already simplified.
    fn node(&self, e: &Expr) -> Expr {
        match e.node() {
            ExprNode::Binary(op, a, b) => self.binary(*op, a, b, e),
            ExprNode::Cmp(op, a, b) => self.cmp(*op, a, b, e),
            ExprNode::And(a, b) => match (a.as_int(), b.as_int()) {
                (Some(0), _) | (_, Some(0)) => Expr::bool(false),
                (Some(_), _) => b.clone(),
                (_, Some(_)) => a.clone(),
                _ => e.clone(),
            },
            ExprNode::Or(a, b) => match (a.as_int(), b.as_int()) {
                (Some(1), _) | (_, Some(1)) => Expr::bool(true),
                (Some(_), _) => b.clone(),
                (_, Some(_)) => a.clone(),
                _ => e.clone(),
            },
            ExprNode::Not(a) => match a.as_int() {
                Some(v) => Expr::bool(v == 0),
                None => e.clone(),
            },
            ExprNode::Select(c, t, f) => match c.as_int() {
                Some(v) if c.lanes() == 1 => {
                    if v != 0 {
                        t.clone()
                    } else {
                        f.clone()
                    }
                }
                _ if t.structural_eq(f) => t.clone(),
                _ => e.clone(),
            },
            ExprNode::Cast(t, a) if a.is_const() && a.lanes() == 1 => cast(*t, a.clone()),
            ExprNode::Cast(t, a) if a.dtype() == *t => a.clone(),
            ExprNode::Call(f, args) if args.iter().all(|a| a.as_float().is_some()) => {
                let x = args[0].as_float().unwrap();
                let dt = args[0].dtype();
                let v = match f {
                    MathFn::Abs => x.abs(),
                    MathFn::Floor => x.floor(),
                    MathFn::Ceil => x.ceil(),
                    _ => return e.clone(),
                };
                Expr::float_of(v, dt)
            }
            ExprNode::Let(v, val, body) if val.is_const() || val.as_var().is_some() => {
                let mut m = HashMap::new();
                m.insert(v.id(), val.clone());
                self.expr(&body.substitute(&m))
            }
            _ => e.clone(),
        }
    }

    fn binary(&self, op: BinOp, a: &Expr, b: &Expr, e: &Expr) -> Expr {
        let dt = a.dtype();
        if a.lanes() > 1 || b.lanes() > 1 {
            return e.clone();
        }
        if dt.is_float() {
            if let (Some(x), Some(y)) = (a.as_float(), b.as_float()) {
                let v = crate::te::arith::float_binary(op, dt, x, y);
                return Expr::float_of(v, dt);
            }
            return e.clone();
        }
        if !dt.is_int() {
            return e.clone();
        }
        match op {
            BinOp::Add | BinOp::Sub | BinOp::Mul => match self.linear(e) {
                Some(l) => l.to_expr(),
                None => e.clone(),
            },
            BinOp::Div | BinOp::Mod => self.divmod(op, a, b, e),
            BinOp::Min | BinOp::Max => {
                if a.structural_eq(b) {
                    return a.clone();
                }
                let d = match (self.linear(a), self.linear(b)) {
                    (Some(x), Some(y)) => x.add(&y, -1),
                    _ => return e.clone(),
                };
                if let Some((lo, hi)) = self.lin_bounds(&d) {
                    let a_le_b = hi <= 0;
                    let a_ge_b = lo >= 0;
                    if a_le_b {
                        return if op == BinOp::Min {
                            a.clone()
                        } else {
                            b.clone()
                        };
                    }
                    if a_ge_b {
                        return if op == BinOp::Min {
                            b.clone()
                        } else {
                            a.clone()
                        };
                    }
                }
                e.clone()
            }
        }
    }

    fn divmod(&self, op: BinOp, a: &Expr, b: &Expr, e: &Expr) -> Expr {
        let dt = a.dtype();
        let c = match b.as_int() {
            Some(c) if c > 0 => c,
            Some(0) => return e.clone(),
            _ => {
                if let (Some(x), Some(y)) = (a.as_int(), b.as_int()) {
                    if y != 0 {
                        return Expr::int_of(
                            if op == BinOp::Div {
                                floordiv_i(x, y)
                            } else {
                                floormod_i(x, y)
                            },
                            dt,
                        );
                    }
                }
                return e.clone();
            }
        };
        if c == 1 {
            return if op == BinOp::Div {
                a.clone()
            } else {
                Expr::int_of(0, dt)
            };
        }
        let l = match self.linear(a) {
            Some(l) => l,
            None => return e.clone(),
        };
        if let Some(x) = l.as_const() {
            return Expr::int_of(
                if op == BinOp::Div {
                    floordiv_i(x, c)
                } else {
                    floormod_i(x, c)
                },
                dt,
            );
        }
        // a = c*Q + R, with R holding the terms whose coefficients c does not divide.
        let mut q = Lin::constant(floordiv_i(l.c, c), dt);
        let mut r = Lin::constant(floormod_i(l.c, c), dt);
        for (k, t, coef) in &l.terms {
            if coef % c == 0 {
                q.terms.push((k.clone(), t.clone(), coef / c));
            } else {
                r.terms.push((k.clone(), t.clone(), *coef));
            }
        }
        let rb = self.lin_bounds(&r);
        if op == BinOp::Div {
            match rb {
                Some((lo, hi)) if floordiv_i(lo, c) == floordiv_i(hi, c) => {
                    q.c += floordiv_i(lo, c);
                    q.to_expr()
                }
                _ => {
                    if q.terms.is_empty() && q.c == 0 {
                        return bin(BinOp::Div, r.to_expr(), b.clone());
                    }
                    let rest = Lin::atom(bin(BinOp::Div, r.to_expr(), b.clone()));
                    q.add(&rest, 1).to_expr()
                }
            }
        } else {
            match rb {
                Some((lo, hi)) if floordiv_i(lo, c) == floordiv_i(hi, c) => {
                    let sh = floordiv_i(lo, c) * c;
                    r.c -= sh;
                    r.to_expr()
                }
                _ => bin(BinOp::Mod, r.to_expr(), b.clone()),
            }
        }
    }

    fn cmp(&self, op: CmpOp, a: &Expr, b: &Expr, e: &Expr) -> Expr {
        if a.lanes() > 1 || b.lanes() > 1 {
            return e.clone();
        }
        let dt = a.dtype();
        if dt.is_float() {
            if let (Some(x), Some(y)) = (a.as_float(), b.as_float()) {
                return Expr::bool(crate::te::arith::compare(op, x, y));
            }
            return e.clone();
        }
        let d = match (self.linear(a), self.linear(b)) {
            (Some(x), Some(y)) => x.add(&y, -1),
            _ => {
                if let (Some(x), Some(y)) = (a.as_int(), b.as_int()) {
                    return Expr::bool(cmp_i(op, x, y));
                }
                return e.clone();
            }
        };
        if let Some((lo, hi)) = self.lin_bounds(&d) {
            let decided = match op {
                CmpOp::Lt if hi < 0 => Some(true),
                CmpOp::Lt if lo >= 0 => Some(false),
                CmpOp::Le if hi <= 0 => Some(true),
                CmpOp::Le if lo > 0 => Some(false),
                CmpOp::Gt if lo > 0 => Some(true),
                CmpOp::Gt if hi <= 0 => Some(false),
                CmpOp::Ge if lo >= 0 => Some(true),
                CmpOp::Ge if hi < 0 => Some(false),
                CmpOp::Eq if lo == 0 && hi == 0 => Some(true),
                CmpOp::Eq if lo > 0 || hi < 0 => Some(false),
                CmpOp::Ne if lo == 0 && hi == 0 => Some(false),
                CmpOp::Ne if lo > 0 || hi < 0 => Some(true),
                _ => None,
            };
            if let Some(v) = decided {
                return Expr::bool(v);
            }
        }
        e.clone()
    }
}

fn cmp_i(op: CmpOp, x: i64, y: i64) -> bool {
    crate::te::arith::compare(op, x, y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::te::{DType, Var};

    #[test]
    fn split_index_div_mod_vanish() {
        let io = Var::new("io", DType::I64);
        let ii = Var::new("ii", DType::I64);
        let mut r = Ranges::new();
        r.set(io.id(), 0, 63);
        r.set(ii.id(), 0, 15);
        let e = (io.expr() * 16 + ii.expr()) / 16;
        assert_eq!(simplify_with(&e, &r).to_string(), "io");
        let m = (io.expr() * 16 + ii.expr()) % 16;
        assert_eq!(simplify_with(&m, &r).to_string(), "ii");
    }

    #[test]
    fn linear_cancellation_and_order() {
        let a = Var::new("a", DType::I64);
        let b = Var::new("b", DType::I64);
        let e = (b.expr() + a.expr() * 3 + 1) - (b.expr() + 1);
        assert_eq!(simplify(&e).to_string(), "a * 3");
        let e = b.expr() + a.expr() * 16 - 2;
        assert_eq!(simplify(&e).to_string(), "a * 16 + b - 2");
    }

    #[test]
    fn comparisons_decided_by_ranges() {
        let i = Var::new("i", DType::I64);
        let mut r = Ranges::new();
        r.set(i.id(), 0, 9);
        assert_eq!(prove(&crate::te::lt(i.expr(), 10), &r), Some(true));
        assert_eq!(prove(&crate::te::lt(i.expr(), 9), &r), None);
        assert_eq!(
            simplify_with(&crate::te::min(i.expr(), 20), &r).to_string(),
            "i"
        );
    }
}
