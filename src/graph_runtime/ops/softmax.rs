//! Numerically stable softmax along one axis.

use super::dims;
use crate::te::{compute, exp, max_reduce, reduce_axis, sum, Expr, Tensor};

/// `mx = max_axis x` (stage `max`), `den = sum_axis exp(x - mx)` (stage `den`),
/// `out = exp(x - mx) * (1 / den)` (the exponential is recomputed rather than stored; one
/// division per row, hoisted out of the row's loop, rather than one per element).
pub fn softmax(x: &Tensor, s: &[usize], axis: usize) -> Tensor {
    let reduced: Vec<usize> = s
        .iter()
        .enumerate()
        .filter(|(d, _)| *d != axis)
        .map(|(_, &n)| n)
        .collect();
    let with = |i: &[Expr], e: Expr| -> Vec<Expr> {
        let mut v = i.to_vec();
        v.insert(axis, e);
        v
    };
    let without = |i: &[Expr]| -> Vec<Expr> {
        let mut v = i.to_vec();
        v.remove(axis);
        v
    };
    let k = reduce_axis(0, s[axis] as i64, "k");
    let mx = compute(&dims(&reduced), "max", |i| {
        max_reduce(x.at(&with(i, k.x())), &[k.clone()])
    });
    let k2 = reduce_axis(0, s[axis] as i64, "k2");
    let den = compute(&dims(&reduced), "den", |i| {
        sum(exp(x.at(&with(i, k2.x())) - mx.at(i)), &[k2.clone()])
    });
    compute(&dims(s), "out", |i| {
        let o = without(i);
        exp(x.at(i) - mx.at(&o)) * (Expr::float_of(1.0, x.dtype()) / den.at(&o))
    })
}
