//! Pass (TE level): algebraic rewrites of compute bodies by equality saturation (`egg`).
//!
//! Requires: the effective bodies of the stages (after [`super::inline`]). Ensures:
//! every float-valued body (each source of a reduction; the combiner is left alone) has
//! been saturated with [`crate::egraph::rules::algebra`] and
//! [`crate::egraph::rules::numerics`] and replaced by the extraction under
//! [`crate::egraph::AlgebraCost`] when that is cheaper: `exp(log x) -> x`,
//! `pow(x, 2) -> x*x`, `log(1 + exp(x)) -> max(x, 0) + log1p(exp(0 - |x|))` (finite at
//! x = 710 in f64, x = 100 in f32), `log(sigmoid x)` likewise; subexpressions the result
//! uses more than once (a tensor read included) are bound once by an expression `let`
//! (`cse0`, ...). Bodies with nothing to gain are returned untouched (same `Arc`), so
//! their lowering does not change. Index expressions inside reads are opaque here (the
//! `egraph_index` pass sees them after flattening).
//!
//! Semantics: the rules are exact in IEEE arithmetic except `exp(log x) -> x`, which
//! assumes `x >= 0` as Theano does (for a negative `x` the original is NaN).

use crate::egraph::{rewrite_algebra, Limits, Summary};
use crate::te::{Expr, ExprNode};
use std::collections::HashMap;

/// Rewrite the bodies of `eff` (stage name -> bodies) in `order` (the stages' order, for
/// deterministic reports). Returns the new bodies, the summary of the runs and, for the
/// IR dump, the rewritten bodies as text (`None` when nothing changed).
pub fn run(
    eff: &HashMap<String, Vec<Expr>>,
    order: &[String],
    limits: &Limits,
) -> (HashMap<String, Vec<Expr>>, Summary, Option<String>) {
    let mut out = eff.clone();
    let mut summary = Summary::default();
    let mut text = String::new();
    for name in order {
        let Some(bodies) = eff.get(name) else {
            continue;
        };
        let mut new = vec![];
        for (k, b) in bodies.iter().enumerate() {
            let nb = rewrite_body(b, limits, &mut summary);
            if !nb.same_as(b) {
                let suffix = if bodies.len() > 1 {
                    format!(".v{}", k)
                } else {
                    String::new()
                };
                text.push_str(&format!("{}{} = {}\n", name, suffix, nb));
            }
            new.push(nb);
        }
        out.insert(name.clone(), new);
    }
    (
        out,
        summary,
        if text.is_empty() { None } else { Some(text) },
    )
}

/// One body: a reduction's sources one by one, otherwise the whole expression.
pub fn rewrite_body(b: &Expr, limits: &Limits, summary: &mut Summary) -> Expr {
    match b.node() {
        ExprNode::Reduce(r) => {
            let mut changed = false;
            let src: Vec<Expr> = r
                .source
                .iter()
                .map(|s| {
                    let n = rewrite_value(s, limits, summary);
                    changed |= !n.same_as(s);
                    n
                })
                .collect();
            if changed {
                b.with_children(src)
            } else {
                b.clone()
            }
        }
        _ => rewrite_value(b, limits, summary),
    }
}

fn rewrite_value(e: &Expr, limits: &Limits, summary: &mut Summary) -> Expr {
    let (n, rep) = rewrite_algebra(e, limits);
    match rep {
        Some(r) => {
            let rewritten = r.rewritten;
            summary.push(r);
            if rewritten {
                n
            } else {
                e.clone()
            }
        }
        None => e.clone(),
    }
}
