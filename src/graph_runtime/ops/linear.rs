//! Dense (`x · wᵀ + bias`) and matmul.

use super::dims;
use crate::te::{compute, reduce_axis, sum, Tensor};

/// `out[i, j] = sum_k x[i, k] * wt[k, j] (+ bias[j])`. The weight `w [N, K]` is first
/// transposed into `wt [K, N]` (a stage of the kernel) so that the matmul schedule reads
/// contiguous rows; the product is the stage `mm` and the bias is added by `out`.
pub fn dense(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, xs: &[usize], ws: &[usize]) -> Tensor {
    let (m, k, n) = (xs[0], xs[1], ws[0]);
    let wt = compute(&dims(&[k, n]), "wt", |i| {
        w.at(&[i[1].clone(), i[0].clone()])
    });
    let r = reduce_axis(0, k as i64, "k");
    let mm_name = if bias.is_some() { "mm" } else { "out" };
    let mm = compute(&dims(&[m, n]), mm_name, |i| {
        sum(
            x.at(&[i[0].clone(), r.x()]) * wt.at(&[r.x(), i[1].clone()]),
            &[r.clone()],
        )
    });
    match bias {
        None => mm,
        Some(b) => compute(&dims(&[m, n]), "out", |i| mm.at(i) + b.at(&[i[1].clone()])),
    }
}

/// `out[i, j] = sum_k a[i, k] * b[k, j]`.
pub fn matmul(a: &Tensor, b: &Tensor, sa: &[usize], sb: &[usize]) -> Tensor {
    let r = reduce_axis(0, sa[1] as i64, "k");
    compute(&dims(&[sa[0], sb[1]]), "out", |i| {
        sum(
            a.at(&[i[0].clone(), r.x()]) * b.at(&[r.x(), i[1].clone()]),
            &[r.clone()],
        )
    })
}
