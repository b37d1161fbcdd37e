//! The NCHW[c]c candidates of the conv2d report: a layer's input and weight blocked
//! ahead of time by loopforge kernels of the layout transforms
//! (`graph_runtime::ops::{nchw_to_nchwc, oihw_to_blocked, depthwise_weight_to_blocked}`),
//! the blocked convolution, and its output unblocked for the check against NCHW.

use super::conv::ConvShape;
use loopforge::graph_runtime::ops::{
    conv2d_nchwc, depthwise_conv2d_nchwc, depthwise_weight_to_blocked, nchw_to_nchwc,
    nchwc_to_nchw, oihw_to_blocked, BlockedConv,
};
use loopforge::graph_runtime::Conv2dAttrs;
use loopforge::prelude::*;

/// Channels per block (input, output) of the NCHW[c]c candidates: 16 for dense
/// convolutions where 16 divides the channels (the micro-kernel's tile width), else 8,
/// else the input's channels whole (an RGB stem's 3); 8 for depthwise ones (blocks of 4
/// measured the same).
fn blocks(sh: &ConvShape) -> (usize, usize) {
    let ob = if sh.o.is_multiple_of(16) { 16 } else { 8 };
    if sh.groups > 1 {
        (8, 8)
    } else if sh.c.is_multiple_of(16) {
        (16, ob)
    } else if sh.c.is_multiple_of(8) {
        (8, ob)
    } else {
        (sh.c, ob)
    }
}

/// A convolution in the blocked layout: its arguments and its input and weight arrays,
/// blocked by loopforge kernels of the layout transforms.
pub struct Blocked {
    pub args: [Tensor; 3],
    pub x: NdArray,
    pub w: NdArray,
}

impl Blocked {
    /// `None` where the blocks do not divide the channels.
    pub fn new(
        sh: &ConvShape,
        a: &Conv2dAttrs,
        xa: &NdArray,
        wa: &NdArray,
    ) -> Result<Option<Blocked>> {
        let (cb, ob) = blocks(sh);
        if !sh.c.is_multiple_of(cb)
            || !sh.o.is_multiple_of(ob)
            || (sh.groups > 1 && sh.groups != sh.c)
        {
            return Ok(None);
        }
        let xs = [1, sh.c, sh.hw, sh.hw];
        let ws = [sh.o, sh.c / sh.groups, sh.k, sh.k];
        let dims = |v: &[usize]| v.iter().map(|&d| Expr::from(d as i64)).collect::<Vec<_>>();
        let x = placeholder(&dims(&xs), DType::F32, "x");
        let w = placeholder(&dims(&ws), DType::F32, "w");
        let xt = nchw_to_nchwc(&x, &xs, cb, "xb")?;
        let wt = if sh.groups > 1 {
            depthwise_weight_to_blocked(&w, &ws, cb, "wb")?
        } else {
            oihw_to_blocked(&w, &ws, cb, ob, "wb")?
        };
        let xb = transform(&x, &xt, xa)?;
        let wb = transform(&w, &wt, wa)?;
        let conv = BlockedConv {
            stride: a.stride,
            padding: a.padding,
            dilation: a.dilation,
        };
        let xp = placeholder(&dims(xb.shape()), DType::F32, "x");
        let wp = placeholder(&dims(wb.shape()), DType::F32, "w");
        let out = if sh.groups > 1 {
            depthwise_conv2d_nchwc(&xp, &wp, xb.shape(), wb.shape(), &conv)?
        } else {
            conv2d_nchwc(&xp, &wp, xb.shape(), wb.shape(), &conv)?
        };
        Ok(Some(Blocked {
            args: [xp, wp, out],
            x: xb,
            w: wb,
        }))
    }
}

/// `out`, a layout transform of the placeholder `input`, applied to `a` (a JIT kernel).
fn transform(input: &Tensor, out: &Tensor, a: &NdArray) -> Result<NdArray> {
    let shape: Vec<usize> = out
        .shape()
        .iter()
        .map(|d| d.as_int().unwrap_or(0) as usize)
        .collect();
    let k = build(
        &create_schedule(&[out.clone()])?,
        &[input.clone(), out.clone()],
        Target::cpu(),
    )?;
    let mut b = NdArray::zeros(&shape, DType::F32);
    k.run(&[a], &mut [&mut b])?;
    Ok(b)
}

/// A blocked output `[N, C/c, H, W, c]` in NCHW order.
pub fn unblock(a: &NdArray) -> Result<Vec<f32>> {
    let s = a.shape().to_vec();
    let x = placeholder(
        &s.iter().map(|&d| Expr::from(d as i64)).collect::<Vec<_>>(),
        DType::F32,
        "y",
    );
    let back = nchwc_to_nchw(&x, &s, "back")?;
    Ok(transform(&x, &back, a)?.as_slice::<f32>()?.to_vec())
}
