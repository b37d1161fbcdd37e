//! Elementwise operators: binary with numpy broadcasting, unary activations, and inference
//! batch normalization (a per-channel affine map).

use super::{ci, dims};
use crate::graph_runtime::graph::{BinaryOp, UnaryOp};
use crate::intrinsics::Activation;
use crate::te::{compute, max, min, sqrt, Expr, Tensor};

/// The indices into an operand of shape `s` broadcast to the output index `i` (numpy
/// rules: dimensions aligned from the right; size-1 dimensions read index 0).
pub(crate) fn broadcast_index(i: &[Expr], s: &[usize]) -> Vec<Expr> {
    let off = i.len() - s.len();
    s.iter()
        .enumerate()
        .map(|(d, &n)| {
            if n == 1 && n != 0 {
                ci(0)
            } else {
                i[d + off].clone()
            }
        })
        .collect()
}

/// `a op b` with broadcasting to `out_shape`.
pub fn binary(
    op: BinaryOp,
    a: &Tensor,
    b: &Tensor,
    sa: &[usize],
    sb: &[usize],
    out_shape: &[usize],
) -> Tensor {
    compute(&dims(out_shape), "out", |i| {
        binary_expr(
            op,
            a.at(&broadcast_index(i, sa)),
            b.at(&broadcast_index(i, sb)),
        )
    })
}

/// The scalar function of a binary operator.
pub(crate) fn binary_expr(op: BinaryOp, x: Expr, y: Expr) -> Expr {
    match op {
        BinaryOp::Add => x + y,
        BinaryOp::Sub => x - y,
        BinaryOp::Mul => x * y,
        BinaryOp::Div => x / y,
    }
}

/// The scalar function of a unary operator.
pub(crate) fn unary_expr(op: UnaryOp, v: Expr) -> Expr {
    let dt = v.dtype();
    let c = |f: f64| Expr::float_of(f, dt);
    match op {
        UnaryOp::Relu => max(v, c(0.0)),
        UnaryOp::Clip { min: lo, max: hi } => min(max(v, c(lo)), c(hi)),
        UnaryOp::Sigmoid => Activation::Sigmoid.expr(v),
        UnaryOp::Tanh => Activation::Tanh.expr(v),
        UnaryOp::Gelu => Activation::Gelu.expr(v),
        UnaryOp::Erf => Activation::Erf.expr(v),
        UnaryOp::Exp => Activation::Exp.expr(v),
    }
}

/// A unary activation.
pub fn unary(op: UnaryOp, x: &Tensor, s: &[usize]) -> Tensor {
    compute(&dims(s), "out", |i| unary_expr(op, x.at(i)))
}

/// `(x - mean[c]) / sqrt(var[c] + eps) * gamma[c] + beta[c]` with `c` the second dimension;
/// `ins = [x, gamma, beta, mean, var]`.
pub fn batch_norm(ins: &[Tensor], s: &[usize], eps: f64) -> Tensor {
    compute(&dims(s), "out", |i| {
        batch_norm_expr(
            ins[0].at(i),
            &i[1],
            [&ins[1], &ins[2], &ins[3], &ins[4]],
            eps,
        )
    })
}

/// The batch normalization of the value `x` of channel `c` with `[gamma, beta, mean, var]`.
pub(crate) fn batch_norm_expr(x: Expr, c: &Expr, v: [&Tensor; 4], eps: f64) -> Expr {
    let dt = x.dtype();
    let c = [c.clone()];
    let scale = v[0].at(&c) / sqrt(v[3].at(&c) + Expr::float_of(eps, dt));
    (x - v[2].at(&c)) * scale + v[1].at(&c)
}
