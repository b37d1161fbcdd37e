//! Max and average pooling (NCHW) and global average pooling.

use super::{ci, dims, pad};
use crate::graph_runtime::graph::Pool2dAttrs;
use crate::te::{cast, compute, max, max_reduce, min, min_value, reduce_axis, sum, Expr, Tensor};

fn windows(a: &Pool2dAttrs) -> (crate::te::IterVar, crate::te::IterVar) {
    (
        reduce_axis(0, a.kernel[0] as i64, "ry"),
        reduce_axis(0, a.kernel[1] as i64, "rx"),
    )
}

/// Max over each window; the padding is `-inf`, so it never wins (every window holds at
/// least one real element: the graph checks padding < kernel).
pub fn max_pool2d(x: &Tensor, s: &[usize], a: &Pool2dAttrs, out_shape: &[usize]) -> Tensor {
    let p = a.padding;
    let xp = pad(
        x,
        s,
        &[(0, 0), (0, 0), (p[0], p[2]), (p[1], p[3])],
        min_value(x.dtype()),
        "pad",
    );
    let (ry, rx) = windows(a);
    compute(&dims(out_shape), "out", |i| {
        let yy = &i[2] * ci(a.stride[0]) + ry.x();
        let xx = &i[3] * ci(a.stride[1]) + rx.x();
        max_reduce(
            xp.at(&[i[0].clone(), i[1].clone(), yy, xx]),
            &[ry.clone(), rx.clone()],
        )
    })
}

/// Mean over each window, counting only the elements inside the unpadded input
/// (`count_include_pad = 0`): the window sum of the zero-padded input times
/// `1 / (valid rows * valid columns)`.
pub fn avg_pool2d(x: &Tensor, s: &[usize], a: &Pool2dAttrs, out_shape: &[usize]) -> Tensor {
    let p = a.padding;
    let dt = x.dtype();
    let xp = pad(
        x,
        s,
        &[(0, 0), (0, 0), (p[0], p[2]), (p[1], p[3])],
        Expr::float_of(0.0, dt),
        "pad",
    );
    let (ry, rx) = windows(a);
    let valid = |o: &Expr, d: usize| -> Expr {
        let start = o * ci(a.stride[d - 2]) - ci(p[d - 2]);
        let end = start.clone() + ci(a.kernel[d - 2]);
        min(end, ci(s[d])) - max(start, ci(0))
    };
    compute(&dims(out_shape), "out", |i| {
        let cnt = valid(&i[2], 2) * valid(&i[3], 3);
        let inv = Expr::float_of(1.0, dt) / cast(dt, cnt);
        let yy = &i[2] * ci(a.stride[0]) + ry.x();
        let xx = &i[3] * ci(a.stride[1]) + rx.x();
        sum(
            xp.at(&[i[0].clone(), i[1].clone(), yy, xx]) * inv,
            &[ry.clone(), rx.clone()],
        )
    })
}

/// `out[n, c, 0, 0] = sum_{y, x} x[n, c, y, x] / (H * W)`.
pub fn global_avg_pool(x: &Tensor, s: &[usize]) -> Tensor {
    let ry = reduce_axis(0, s[2] as i64, "ry");
    let rx = reduce_axis(0, s[3] as i64, "rx");
    let inv = Expr::float_of(1.0 / (s[2] * s[3]) as f64, x.dtype());
    compute(&dims(&[s[0], s[1], 1, 1]), "out", |i| {
        sum(
            x.at(&[i[0].clone(), i[1].clone(), ry.x(), rx.x()]) * inv,
            &[ry.clone(), rx.clone()],
        )
    })
}
