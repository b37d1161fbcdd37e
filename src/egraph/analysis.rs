//! The e-class analysis: what is known about the value of every e-class.
//!
//! * **Integer ranges** (`int64` indices and booleans as 0/1): interval arithmetic from
//!   the constant ranges of the loop variables (`[min, min + extent - 1]`, given by the
//!   pass), with floor division and modulo by constants, `min`/`max`, comparisons decided
//!   where the intervals decide them. A range of one value is a constant: the class gets
//!   that `Num` node (constant folding).
//! * **Float constants** folded with the runtime's semantics (`te::arith`: `f32` rounds
//!   at every operation, halves through `f32`), so folding never changes a result.
//! * **Signs of floats**: whether a class is known `>= 0` or `<= 0` (when not NaN); the
//!   numerics rules and [`super::AlgebraCost`] use it (an `exp` of a non-positive
//!   argument cannot overflow).
//!
//! Merging two classes intersects their ranges and ORs their sign facts: both sides are
//! true of the one value.

use super::{Domain, Float, Lf};
use crate::te::arith::{float_binary, floordiv_i64, floormod_i64, math_float};
use crate::te::{BinOp, MathFn};
use egg::{Analysis, DidMerge, EGraph, Id, Language};
use std::collections::HashMap;

/// The analysis state: the domain and the ranges of the atoms that are variables.
#[derive(Clone, Debug)]
pub struct LfAnalysis {
    /// What the run reasons about (decides how arithmetic nodes are read).
    pub domain: Domain,
    /// Constant ranges `[lo, hi]` of atoms (by atom number).
    pub ranges: HashMap<u32, (i64, i64)>,
}

/// What is known about one e-class.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Facts {
    /// Integer (or boolean 0/1) bounds `[lo, hi]`, inclusive.
    pub range: Option<(i64, i64)>,
    /// The float constant the class equals (bits, so that NaN equals itself).
    pub float: Option<Float>,
    /// Known `>= 0` (float classes; NaN aside).
    pub nonneg: bool,
    /// Known `<= 0` (float classes; NaN aside).
    pub nonpos: bool,
}

impl Facts {
    /// The integer constant, if the range is a single value.
    pub fn constant(&self) -> Option<i64> {
        match self.range {
            Some((lo, hi)) if lo == hi => Some(lo),
            _ => None,
        }
    }
}

fn clamp(lo: i128, hi: i128) -> Option<(i64, i64)> {
    if lo < i64::MIN as i128 || hi > i64::MAX as i128 {
        None
    } else {
        Some((lo as i64, hi as i64))
    }
}

fn corners(a: (i64, i64), b: (i64, i64), f: impl Fn(i128, i128) -> i128) -> Option<(i64, i64)> {
    let c = [
        f(a.0 as i128, b.0 as i128),
        f(a.0 as i128, b.1 as i128),
        f(a.1 as i128, b.0 as i128),
        f(a.1 as i128, b.1 as i128),
    ];
    clamp(*c.iter().min()?, *c.iter().max()?)
}

const BOOL: Option<(i64, i64)> = Some((0, 1));

fn truth(v: Option<bool>) -> Option<(i64, i64)> {
    match v {
        Some(b) => Some((b as i64, b as i64)),
        None => BOOL,
    }
}

/// Interval of an integer binary operation (floor semantics; `x / 0 = x % 0 = 0`).
pub fn int_binary(op: BinOp, a: (i64, i64), b: (i64, i64)) -> Option<(i64, i64)> {
    match op {
        BinOp::Add => clamp(a.0 as i128 + b.0 as i128, a.1 as i128 + b.1 as i128),
        BinOp::Sub => clamp(a.0 as i128 - b.1 as i128, a.1 as i128 - b.0 as i128),
        BinOp::Mul => corners(a, b, |x, y| x * y),
        BinOp::Min => Some((a.0.min(b.0), a.1.min(b.1))),
        BinOp::Max => Some((a.0.max(b.0), a.1.max(b.1))),
        BinOp::Div => {
            if b.0 == b.1 && b.0 != 0 {
                let c = b.0;
                let (x, y) = (floordiv_i64(a.0, c), floordiv_i64(a.1, c));
                Some((x.min(y), x.max(y)))
            } else if b.0 > 0 || b.1 < 0 {
                // A divisor of one sign: the quotient's extremes are at the corners.
                corners(a, b, floordiv_i128)
            } else {
                None
            }
        }
        BinOp::Mod => {
            if b.0 == b.1 && b.0 > 0 {
                let c = b.0;
                // Within one period the modulo is the value shifted.
                if floordiv_i64(a.0, c) == floordiv_i64(a.1, c) {
                    let m = floormod_i64(a.0, c);
                    Some((m, m + (a.1 - a.0)))
                } else {
                    Some((0, c - 1))
                }
            } else if b.0 > 0 {
                Some((0, b.1 - 1))
            } else {
                None
            }
        }
    }
}

fn floordiv_i128(x: i128, y: i128) -> i128 {
    let q = x / y;
    if (x % y != 0) && ((x < 0) != (y < 0)) {
        q - 1
    } else {
        q
    }
}

fn cmp_range(n: &Lf, a: (i64, i64), b: (i64, i64)) -> Option<(i64, i64)> {
    let d = match n {
        Lf::Lt(_) => {
            if a.1 < b.0 {
                Some(true)
            } else if a.0 >= b.1 {
                Some(false)
            } else {
                None
            }
        }
        Lf::Le(_) => {
            if a.1 <= b.0 {
                Some(true)
            } else if a.0 > b.1 {
                Some(false)
            } else {
                None
            }
        }
        Lf::Gt(_) => return cmp_range(&Lf::Lt([Id::from(0usize); 2]), b, a),
        Lf::Ge(_) => return cmp_range(&Lf::Le([Id::from(0usize); 2]), b, a),
        Lf::Eq(_) => {
            if a.0 == a.1 && b.0 == b.1 && a.0 == b.0 {
                Some(true)
            } else if a.1 < b.0 || b.1 < a.0 {
                Some(false)
            } else {
                None
            }
        }
        Lf::Ne(_) => {
            if a.0 == a.1 && b.0 == b.1 && a.0 == b.0 {
                Some(false)
            } else if a.1 < b.0 || b.1 < a.0 {
                Some(true)
            } else {
                None
            }
        }
        _ => None,
    };
    truth(d)
}

fn float_cmp(n: &Lf, x: f64, y: f64) -> bool {
    use crate::te::arith::compare;
    use crate::te::CmpOp;
    let op = match n {
        Lf::Lt(_) => CmpOp::Lt,
        Lf::Le(_) => CmpOp::Le,
        Lf::Gt(_) => CmpOp::Gt,
        Lf::Ge(_) => CmpOp::Ge,
        Lf::Eq(_) => CmpOp::Eq,
        _ => CmpOp::Ne,
    };
    compare(op, x, y)
}

/// The binary operator of an arithmetic node (`None` for any other node).
pub(crate) fn bin_op(n: &Lf) -> Option<BinOp> {
    Some(match n {
        Lf::Add(_) => BinOp::Add,
        Lf::Sub(_) => BinOp::Sub,
        Lf::Mul(_) => BinOp::Mul,
        Lf::Div(_) => BinOp::Div,
        Lf::Mod(_) => BinOp::Mod,
        Lf::Min(_) => BinOp::Min,
        Lf::Max(_) => BinOp::Max,
        _ => return None,
    })
}

fn math_fn(n: &Lf) -> Option<MathFn> {
    Some(match n {
        Lf::Exp(_) => MathFn::Exp,
        Lf::Log(_) => MathFn::Log,
        Lf::Log1p(_) => MathFn::Log1p,
        Lf::Sqrt(_) => MathFn::Sqrt,
        Lf::Tanh(_) => MathFn::Tanh,
        Lf::Sigmoid(_) => MathFn::Sigmoid,
        Lf::Erf(_) => MathFn::Erf,
        Lf::Abs(_) => MathFn::Abs,
        Lf::Floor(_) => MathFn::Floor,
        Lf::Ceil(_) => MathFn::Ceil,
        Lf::Pow(_) => MathFn::Pow,
        _ => return None,
    })
}

impl Analysis<Lf> for LfAnalysis {
    type Data = Facts;

    fn make(egraph: &mut EGraph<Lf, Self>, enode: &Lf, _id: Id) -> Facts {
        let a = &egraph.analysis;
        let d = |i: &Id| &egraph[*i].data;
        let mut f = Facts::default();
        let float_dt = match a.domain {
            Domain::Float(t) => Some(t),
            Domain::Index => None,
        };
        match enode {
            Lf::Num(v) => f.range = Some((*v, *v)),
            Lf::Flt(v) => {
                let x = v.get();
                f.float = Some(*v);
                f.nonneg = x >= 0.0;
                f.nonpos = x <= 0.0;
            }
            Lf::Atom(k) => f.range = a.ranges.get(&k.0).copied(),
            Lf::And([x, y]) => {
                f.range = match (d(x).constant(), d(y).constant()) {
                    (Some(0), _) | (_, Some(0)) => truth(Some(false)),
                    (Some(_), Some(_)) => truth(Some(true)),
                    _ => BOOL,
                }
            }
            Lf::Or([x, y]) => {
                f.range = match (d(x).constant(), d(y).constant()) {
                    (Some(c), _) | (_, Some(c)) if c != 0 => truth(Some(true)),
                    (Some(_), Some(_)) => truth(Some(false)),
                    _ => BOOL,
                }
            }
            Lf::Not([x]) => f.range = truth(d(x).constant().map(|c| c == 0)),
            Lf::Eq([x, y])
            | Lf::Ne([x, y])
            | Lf::Lt([x, y])
            | Lf::Le([x, y])
            | Lf::Gt([x, y])
            | Lf::Ge([x, y]) => {
                f.range = match float_dt {
                    None => match (d(x).range, d(y).range) {
                        (Some(p), Some(q)) => cmp_range(enode, p, q),
                        _ => BOOL,
                    },
                    Some(_) => match (d(x).float, d(y).float) {
                        (Some(p), Some(q)) => truth(Some(float_cmp(enode, p.get(), q.get()))),
                        _ => BOOL,
                    },
                }
            }
            Lf::Select([c, x, y]) => {
                let (dx, dy) = (d(x), d(y));
                match d(c).constant() {
                    Some(v) => f = if v != 0 { dx.clone() } else { dy.clone() },
                    None => {
                        f.range = match (dx.range, dy.range) {
                            (Some(p), Some(q)) => Some((p.0.min(q.0), p.1.max(q.1))),
                            _ => None,
                        };
                        f.nonneg = dx.nonneg && dy.nonneg;
                        f.nonpos = dx.nonpos && dy.nonpos;
                    }
                }
            }
            n => {
                let kids = n.children();
                if let (Some(op), None) = (bin_op(n), float_dt) {
                    if let (Some(p), Some(q)) = (d(&kids[0]).range, d(&kids[1]).range) {
                        f.range = int_binary(op, p, q);
                    }
                } else if let (Some(op), Some(t)) = (bin_op(n), float_dt) {
                    let (x, y) = (d(&kids[0]), d(&kids[1]));
                    if let (Some(p), Some(q)) = (x.float, y.float) {
                        f.float = Some(Float::new(float_binary(op, t, p.get(), q.get())));
                    }
                    match op {
                        BinOp::Add => {
                            f.nonneg = x.nonneg && y.nonneg;
                            f.nonpos = x.nonpos && y.nonpos;
                        }
                        BinOp::Sub => {
                            f.nonneg = x.nonneg && y.nonpos;
                            f.nonpos = x.nonpos && y.nonneg;
                        }
                        BinOp::Mul => {
                            f.nonneg = kids[0] == kids[1]
                                || (x.nonneg && y.nonneg)
                                || (x.nonpos && y.nonpos);
                            f.nonpos = (x.nonneg && y.nonpos) || (x.nonpos && y.nonneg);
                        }
                        BinOp::Max => {
                            f.nonneg = x.nonneg || y.nonneg;
                            f.nonpos = x.nonpos && y.nonpos;
                        }
                        BinOp::Min => {
                            f.nonneg = x.nonneg && y.nonneg;
                            f.nonpos = x.nonpos || y.nonpos;
                        }
                        BinOp::Div | BinOp::Mod => {}
                    }
                } else if let (Some(m), Some(t)) = (math_fn(n), float_dt) {
                    let x = d(&kids[0]);
                    let y = kids.get(1).map(|k| d(k).float);
                    if let Some(p) = x.float.map(Float::get) {
                        match y {
                            None => f.float = Some(Float::new(math_float(m, t, p, 0.0))),
                            Some(Some(q)) => {
                                f.float = Some(Float::new(math_float(m, t, p, q.get())))
                            }
                            Some(None) => {}
                        }
                    }
                    f.nonneg = matches!(
                        m,
                        MathFn::Exp | MathFn::Sqrt | MathFn::Abs | MathFn::Sigmoid
                    );
                }
                if let Some(v) = f.float.map(Float::get) {
                    f.nonneg |= v >= 0.0;
                    f.nonpos |= v <= 0.0;
                }
            }
        }
        f
    }

    fn merge(&mut self, to: &mut Facts, from: Facts) -> DidMerge {
        let mut m = to.clone();
        m.range = match (to.range, from.range) {
            (Some(p), Some(q)) => {
                let r = (p.0.max(q.0), p.1.min(q.1));
                // An empty intersection means unreachable code: keep what we had.
                if r.0 <= r.1 {
                    Some(r)
                } else {
                    Some(p)
                }
            }
            (p, q) => p.or(q),
        };
        m.float = to.float.or(from.float);
        m.nonneg |= from.nonneg;
        m.nonpos |= from.nonpos;
        let a_changed = m != *to;
        let b_changed = m != from;
        *to = m;
        DidMerge(a_changed, b_changed)
    }

    fn modify(egraph: &mut EGraph<Lf, Self>, id: Id) {
        let facts = egraph[id].data.clone();
        if let Some(c) = facts.constant() {
            let k = egraph.add(Lf::Num(c));
            egraph.union(id, k);
        }
        if let Some(v) = facts.float {
            let k = egraph.add(Lf::Flt(v));
            egraph.union(id, k);
        }
    }
}
