//! Pass: e-graph index simplification (equality saturation with `egg`).
//!
//! Requires: flattened IR already through [`super::simplify`] (canonical linear forms,
//! the divisions the hand-written rules can remove removed), constant loop ranges where
//! known. Ensures: every `int64` index expression or condition that still holds a floor
//! division or modulo — in load and store indices, guards, loop bounds, `let` values —
//! has been saturated with [`crate::egraph::rules::index`] under the ranges of its
//! enclosing loop variables and `let`s, and replaced by the cheapest equivalent when that
//! has fewer `/` and `%` (or as many and fewer nodes); replacements are re-canonicalized
//! by `simplify`. Expressions without division or modulo are left to `simplify`.
//!
//! What it removes that `simplify` leaves: the `floordiv(x, c) * c + floormod(x, c)`
//! that flattening a fused axis produces (`-> x`), nested divisions and modulos
//! (`floordiv(floordiv(x, 4), 8) -> floordiv(x, 32)`, `floormod(floormod(x, 12), 4) ->
//! floormod(x, 4)`), and divisions decided only by ranges the linear forms cannot see.
//!
//! Loads inside an index (indirect indexing) are opaque to the e-graph and their own
//! indices are not visited.
//!
//! Every run is bounded by [`Limits`]; the stop reasons, summed, are returned as a
//! [`Summary`] that the pipeline prints in the IR dump after this pass.

use super::ir::{For, Stmt};
use super::simplify::{const_bounds, simplify_with, Ranges};
use crate::egraph::{has_int_divmod, simplify_index, Limits, Summary};
use crate::te::{DType, Expr, ExprNode};

/// Simplify the index expressions of `s` with the e-graph.
pub fn run(s: &Stmt, limits: &Limits) -> (Stmt, Summary) {
    let mut cx = Cx {
        r: Ranges::new(),
        limits,
        summary: Summary::default(),
    };
    let out = cx.stmt(s);
    (out, cx.summary)
}

struct Cx<'a> {
    r: Ranges,
    limits: &'a Limits,
    summary: Summary,
}

impl Cx<'_> {
    fn stmt(&mut self, s: &Stmt) -> Stmt {
        match s {
            Stmt::For(f) => {
                let min = self.expr(&f.min);
                let extent = self.expr(&f.extent);
                let known = match (const_bounds(&min, &self.r), const_bounds(&extent, &self.r)) {
                    (Some((lo, mhi)), Some((_, ehi))) => Some((lo, (mhi + ehi - 1).max(lo))),
                    _ => None,
                };
                if let Some((lo, hi)) = known {
                    self.r.set(f.var.id(), lo, hi);
                }
                let body = self.stmt(&f.body);
                self.r.remove(f.var.id());
                Stmt::For(Box::new(For {
                    var: f.var.clone(),
                    min,
                    extent,
                    kind: f.kind.clone(),
                    body,
                }))
            }
            Stmt::Let { var, value, body } => {
                let value = self.expr(value);
                if var.dtype().is_int() {
                    if let Some((lo, hi)) = const_bounds(&value, &self.r) {
                        self.r.set(var.id(), lo, hi);
                    }
                }
                let body = self.stmt(body);
                self.r.remove(var.id());
                Stmt::Let {
                    var: var.clone(),
                    value,
                    body: Box::new(body),
                }
            }
            other => {
                // Expressions first (under the current ranges), then the sub-statements.
                let mut exprs = vec![];
                other.map(&mut |x| x.clone(), &mut |e| {
                    exprs.push(e.clone());
                    e.clone()
                });
                let new: Vec<Expr> = exprs.iter().map(|e| self.expr(e)).collect();
                let mut it = new.into_iter();
                let with_exprs = other.map(&mut |x| x.clone(), &mut |_| it.next().unwrap());
                with_exprs.map(&mut |x| self.stmt(x), &mut |e| e.clone())
            }
        }
    }

    /// Rewrite the index parts of `e`: maximal `int64`/boolean subtrees holding a floor
    /// division or modulo.
    fn expr(&mut self, e: &Expr) -> Expr {
        if !has_int_divmod(e) {
            return e.clone();
        }
        let r = &self.r;
        let limits = self.limits;
        let summary = &mut self.summary;
        e.mutate(&mut |x| {
            // Roots: int64 arithmetic, and comparisons of int64 values (conjunctions are
            // entered, so each comparison is a root of its own).
            let index_root = x.lanes() == 1
                && match x.node() {
                    ExprNode::Binary(_, a, _) => a.dtype() == DType::I64,
                    ExprNode::Cmp(_, a, _) => a.dtype() == DType::I64,
                    ExprNode::Select(_, a, _) => a.dtype() == DType::I64,
                    _ => false,
                };
            if !index_root || !has_int_divmod(x) {
                return None;
            }
            let (y, rep) = simplify_index(x, &|id| r.get(id), limits);
            let rep = rep?;
            let rewritten = rep.rewritten;
            summary.push(rep);
            Some(if rewritten {
                simplify_with(&y, r)
            } else {
                x.clone()
            })
        })
    }
}
