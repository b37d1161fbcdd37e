//! Layer normalization over the last axis.

use super::dims;
use crate::te::{compute, reduce_axis, sqrt, sum, Expr, Tensor};

/// `mean = sum(x) / D`, `var = sum((x - mean)^2) / D` (two passes, stages `mean` and
/// `var`), `out = (x - mean) * (1 / sqrt(var + eps)) * gamma + beta` (the reciprocal is
/// per row, hoisted out of the row's loop: one division per row, not per element).
pub fn layer_norm(x: &Tensor, gamma: &Tensor, beta: &Tensor, s: &[usize], eps: f64) -> Tensor {
    let dt = x.dtype();
    let r = s.len() - 1;
    let d = s[r];
    let inv = Expr::float_of(1.0 / d as f64, dt);
    let outer = &s[..r];
    let k = reduce_axis(0, d as i64, "k");
    let full = |i: &[Expr], last: Expr| -> Vec<Expr> {
        let mut v = i.to_vec();
        v.push(last);
        v
    };
    let mean = compute(&dims(outer), "mean", |i| {
        sum(x.at(&full(i, k.x())) * inv.clone(), &[k.clone()])
    });
    let k2 = reduce_axis(0, d as i64, "k2");
    let var = compute(&dims(outer), "var", |i| {
        let c = x.at(&full(i, k2.x())) - mean.at(i);
        sum(c.clone() * c * inv.clone(), &[k2.clone()])
    });
    compute(&dims(s), "out", |i| {
        let o = &i[..r];
        let last = [i[r].clone()];
        let rstd = Expr::float_of(1.0, dt) / sqrt(var.at(o) + Expr::float_of(eps, dt));
        (x.at(i) - mean.at(o)) * rstd * gamma.at(&last) + beta.at(&last)
    })
}
