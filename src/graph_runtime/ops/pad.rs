//! The padding stage: an injective compute that the default schedules inline.

use super::{ci, clamp, dims};
use crate::te::{and, compute, ge, lt, select, Expr, Tensor};

/// `x` padded by `pads[d] = (before, after)` along each dimension with `value`. Returns `x`
/// itself when there is no padding. Indices are clamped so that the discarded branch of
/// the `select` stays in bounds (loopforge's `select` evaluates both sides).
pub fn pad(
    x: &Tensor,
    shape: &[usize],
    pads: &[(usize, usize)],
    value: Expr,
    name: &str,
) -> Tensor {
    if pads.iter().all(|&(a, b)| a == 0 && b == 0) {
        return x.clone();
    }
    let out: Vec<usize> = shape
        .iter()
        .zip(pads)
        .map(|(&n, &(a, b))| n + a + b)
        .collect();
    compute(&dims(&out), name, |i| {
        let mut cond: Option<Expr> = None;
        let mut idx = vec![];
        for (d, &(a, _)) in pads.iter().enumerate() {
            if a == 0 && out[d] == shape[d] {
                idx.push(i[d].clone());
                continue;
            }
            let src = &i[d] - ci(a);
            let c = and(ge(src.clone(), ci(0)), lt(src.clone(), ci(shape[d])));
            cond = Some(match cond {
                None => c,
                Some(p) => and(p, c),
            });
            idx.push(clamp(src, 0, shape[d] as i64 - 1));
        }
        let v = x.at(&idx);
        match cond {
            Some(c) => select(c, v, value),
            None => v,
        }
    })
}
