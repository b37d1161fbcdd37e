//! The CPU schedule of a depthwise convolution (NCHW, one input channel per output
//! channel, as MobileNet's 3x3 layers): each channel's padded plane is built in a buffer
//! inside the channel loop (on the stack up to 64 KiB; no padded copy of the whole
//! input), and each output
//! row is computed in vector registers with the kernel window unrolled, a few 128-bit
//! vectors across the row at a time (a stride-2 convolution's taps are loaded as two
//! vectors and shuffled, as every stride-2 access of the CPU backend).

use super::conv2d::single_reduction;
use super::find_stage;
use crate::error::{Error, Result};
use crate::schedule::{create_schedule, Schedule};
use crate::te::Tensor;

fn not_eligible(out: &Tensor, why: String) -> Error {
    Error::InvalidExpr(format!("conv2d_depthwise_cpu: {} {}", out.name(), why))
}

/// Output positions along a row computed together (in registers): up to four 128-bit
/// vectors, fewer when the row is shorter.
fn row_chunk(width: i64) -> i64 {
    match width {
        w if w >= 16 => 16,
        w if w >= 8 => 8,
        _ => 4,
    }
}

/// The depthwise schedule of `out`: a convolution with one input channel per output
/// channel (its channel reduction of extent 1; the graph's `groups == channels`), or an
/// elementwise epilogue of one (a fused conv + bias + relu), f32. Its padding stage (the
/// stage named `pad`, if any) is computed per channel plane; on `threads > 1` threads
/// the (batch, channel) planes run in parallel.
///
/// A typed error when `out` does not have that form.
pub fn conv2d_depthwise_cpu(out: &Tensor, threads: usize) -> Result<Schedule> {
    let conv = &single_reduction(out).map_err(|m| not_eligible(out, m))?;
    let red = conv.op.reduce_axis();
    let rank = conv.shape().len();
    if red.len() != 3 || rank != 4 || red[0].extent.as_int() != Some(1) {
        return Err(not_eligible(
            out,
            "is not a depthwise 2-D convolution (NCHW, reductions over one channel and a \
             kernel window)"
                .into(),
        ));
    }
    if out.dtype() != crate::te::DType::F32 {
        return Err(not_eligible(out, format!("is {}, not f32", out.dtype())));
    }
    let pad = find_stage(conv, "pad");
    let width = out.shape()[3].as_int().unwrap_or(1);
    let mut s = create_schedule(&[out.clone()])?;
    let mut keep = vec![out, conv];
    keep.extend(pad.as_ref());
    super::inline_all_but(&mut s, &keep)?;
    let cl = super::accumulator(&mut s, out, conv)?;
    let [n, c, y, x] = {
        let a = s.axes(out)?;
        [a[0].clone(), a[1].clone(), a[2].clone(), a[3].clone()]
    };
    let nc = s.fuse(out, &[&n, &c])?;
    if threads > 1 {
        s.parallel(out, &nc)?;
    }
    let chunk = row_chunk(width);
    let (xo, xi) = s.split(out, &x, chunk)?;
    let (xio, xii) = s.split(out, &xi, 4)?;
    s.reorder(out, &[&nc, &y, &xo, &xio, &xii])?;
    s.unroll(out, &xio)?;
    s.vectorize(out, &xii)?;
    s.compute_at(&cl, out, &xo)?;
    if let Some(pad) = &pad {
        s.compute_at(pad, out, &nc)?;
    }
    let ca = s.axes(&cl)?;
    let r = s.reduce_axes(&cl)?;
    let (cxo, cxi) = s.split(&cl, &ca[3], 4)?;
    s.reorder(&cl, &[&r[0], &r[1], &r[2], &cxo, &cxi])?;
    s.unroll(&cl, &r[1])?;
    s.unroll(&cl, &r[2])?;
    s.unroll(&cl, &cxo)?;
    s.vectorize(&cl, &cxi)?;
    Ok(s)
}
