//! The operators as tensor expressions (a small `topi`): one function per operator family,
//! each building the TE computation of one graph node from placeholders of its inputs.

mod conv2d;
mod elementwise;
mod fused;
mod linear;
mod nchwc;
mod norm;
mod pad;
mod pool;
mod shape;
mod softmax;
mod winograd;

pub use conv2d::conv2d;
pub use elementwise::{batch_norm, binary, unary};
pub use fused::{fused, ANCHOR};
pub use linear::{dense, matmul};
pub use nchwc::{
    conv2d_nchwc, depthwise_conv2d_nchwc, depthwise_weight_to_blocked, nchw_to_nchwc,
    nchwc_to_nchw, oihw_to_blocked, BlockedConv,
};
pub use norm::layer_norm;
pub use pad::pad;
pub use pool::{avg_pool2d, global_avg_pool, max_pool2d};
pub use shape::{concat, reshape, transpose};
pub use softmax::softmax;
pub use winograd::{conv2d_winograd, winograd_weight_shape, winograd_weights_f23};

use super::graph::Op;
use crate::error::Result;
use crate::te::{max, min, Expr, Tensor};

/// A constant index.
pub(crate) fn ci(v: usize) -> Expr {
    Expr::int(v as i64)
}

/// Constant shape expressions (the dimensions as `i64` constants).
pub fn dims(s: &[usize]) -> Vec<Expr> {
    s.iter().map(|&d| ci(d)).collect()
}

/// `min(max(e, lo), hi)`: keeps an index in bounds where `select` evaluates a branch
/// whose value is then discarded.
pub(crate) fn clamp(e: Expr, lo: i64, hi: i64) -> Expr {
    min(max(e, Expr::int(lo)), Expr::int(hi))
}

/// The TE computation of `op` applied to `ins` (placeholders of the node's inputs, whose
/// static shapes are `shapes`); `out_shape` is the inferred output shape. Returns the
/// output tensor (named `out`).
pub fn compute(
    op: &Op,
    ins: &[Tensor],
    shapes: &[&[usize]],
    out_shape: &[usize],
) -> Result<Tensor> {
    Ok(match op {
        Op::Conv2d(a) => conv2d(&ins[0], &ins[1], shapes[0], shapes[1], a, out_shape),
        Op::Dense => dense(&ins[0], &ins[1], ins.get(2), shapes[0], shapes[1]),
        Op::MatMul => matmul(&ins[0], &ins[1], shapes[0], shapes[1]),
        Op::BatchNorm { eps } => batch_norm(ins, shapes[0], *eps),
        Op::Binary(b) => binary(*b, &ins[0], &ins[1], shapes[0], shapes[1], out_shape),
        Op::Unary(u) => unary(*u, &ins[0], shapes[0]),
        Op::MaxPool2d(a) => max_pool2d(&ins[0], shapes[0], a, out_shape),
        Op::AvgPool2d(a) => avg_pool2d(&ins[0], shapes[0], a, out_shape),
        Op::GlobalAvgPool => global_avg_pool(&ins[0], shapes[0]),
        Op::Flatten => reshape(&ins[0], shapes[0], out_shape),
        Op::Reshape { shape } => reshape(&ins[0], shapes[0], shape),
        Op::Transpose { perm } => transpose(&ins[0], perm, out_shape),
        Op::Concat { axis } => concat(ins, shapes, *axis, out_shape),
        Op::Softmax { axis } => softmax(&ins[0], shapes[0], *axis),
        Op::LayerNorm { eps } => layer_norm(&ins[0], &ins[1], &ins[2], shapes[0], *eps),
        Op::Fused(f) => fused(f, ins, shapes, out_shape)?,
    })
}
