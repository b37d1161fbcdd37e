//! Numerically stable softmax along one axis.

use super::dims;
use crate::te::{compute, exp, max_reduce, reduce_axis, sum, DType, Expr, Tensor};

/// `mx = max_axis x` (stage `max`), `den = sum_axis exp(x - mx)` (stage `den`),
/// `out = exp(x - mx) * (1 / den)` (one division per row, hoisted out of the row's loop,
/// rather than one per element). Along the last axis of an f32 tensor `x - mx` and its
/// exponentials are stages of their own (`shift`, `exp`; `den` sums `exp`); otherwise the
/// exponential is recomputed rather than stored.
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
    let one = Expr::float_of(1.0, x.dtype());
    if axis + 1 == s.len() && x.dtype() == DType::F32 {
        // Along rows of f32: the shifted row and its exponentials as stages of their
        // own (`shift`, `exp`), so that the CPU schedule computes the row's maximum, its
        // exponentials (the shift inlined into them) and their sum with the
        // `reduce_max_f32`, `exp_sub_f32` and `reduce_sum_f32` intrinsics.
        let shift = compute(&dims(s), "shift", |i| x.at(i) - mx.at(&without(i)));
        let ex = compute(&dims(s), "exp", |i| exp(shift.at(i)));
        let den = compute(&dims(&reduced), "den", |i| {
            sum(ex.at(&with(i, k2.x())), &[k2.clone()])
        });
        return compute(&dims(s), "out", |i| {
            ex.at(i) * (one.clone() / den.at(&without(i)))
        });
    }
    let den = compute(&dims(&reduced), "den", |i| {
        sum(exp(x.at(&with(i, k2.x())) - mx.at(i)), &[k2.clone()])
    });
    compute(&dims(s), "out", |i| {
        let o = without(i);
        exp(x.at(i) - mx.at(&o)) * (one.clone() / den.at(&o))
    })
}
