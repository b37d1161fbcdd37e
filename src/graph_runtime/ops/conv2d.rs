//! 2-D convolution, NCHW input, OIHW (or packed OHWI16o) weight, with stride, padding,
//! dilation and groups.

use super::{ci, dims, pad};
use crate::graph_runtime::graph::{Conv2dAttrs, WeightLayout};
use crate::te::{compute, reduce_axis, sum, Expr, Tensor};

/// `out[n, o, y, x] = sum_{c, ky, kx} pad(x)[n, g * Cg + c, y * sh + ky * dh, x * sw + kx * dw]
/// * w[o, c, ky, kx]` with `g = o / (O / groups)` and `Cg = C / groups`; an `OHWI16o`
/// weight is read as `w[o / 16, ky, kx, c, o % 16]`. With a
/// [`WeightLayout::Winograd23`] weight: Winograd's algorithm
/// ([`conv2d_winograd`](super::conv2d_winograd); the graph checked stride and dilation 1).
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    xs: &[usize],
    ws: &[usize],
    a: &Conv2dAttrs,
    out_shape: &[usize],
) -> Tensor {
    if a.weight_layout == WeightLayout::Winograd23 {
        return super::conv2d_winograd(x, xs, w, ws, a.padding);
    }
    let p = a.padding;
    let xp = pad(
        x,
        xs,
        &[(0, 0), (0, 0), (p[0], p[2]), (p[1], p[3])],
        Expr::float_of(0.0, x.dtype()),
        "pad",
    );
    let [o, cg, kh, kw] = a.weight_layout.oihw(ws);
    let layout = a.weight_layout;
    let og = o / a.groups;
    let rc = reduce_axis(0, cg as i64, "rc");
    let ry = reduce_axis(0, kh as i64, "ry");
    let rx = reduce_axis(0, kw as i64, "rx");
    let [sh, sw] = a.stride;
    let [dh, dw] = a.dilation;
    let groups = a.groups;
    compute(&dims(out_shape), "out", |i| {
        let chan = if groups == 1 {
            rc.x()
        } else {
            (&i[1] / ci(og)) * ci(cg) + rc.x()
        };
        let yy = &i[2] * ci(sh) + ry.x() * ci(dh);
        let xx = &i[3] * ci(sw) + rx.x() * ci(dw);
        // (A Winograd weight took the other path above.)
        let wv = if layout == WeightLayout::Ohwi16o {
            w.at(&[&i[1] / ci(16), ry.x(), rx.x(), rc.x(), &i[1] % ci(16)])
        } else {
            w.at(&[i[1].clone(), rc.x(), ry.x(), rx.x()])
        };
        sum(
            xp.at(&[i[0].clone(), chan, yy, xx]) * wv,
            &[rc.clone(), ry.clone(), rx.clone()],
        )
    })
}
