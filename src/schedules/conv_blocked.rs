//! The register-blocked direct convolution for the CPU, NCHW: a tile of `mr` output
//! channels by `nr` output columns accumulates in vector registers over the whole
//! reduction (input channels and window), the columns being contiguous in NCHW, so each
//! input vector loaded serves `mr` output channels and the output is stored as whole
//! vectors (no transposition). A 1x1 convolution is then a matrix product
//! `W[O, C] x X[C, H*W]` with the image streamed through: MobileNet's pointwise layers,
//! whose few input channels leave a micro-kernel call too little work.

use super::conv2d::single_reduction;
use super::find_stage;
use crate::error::{Error, Result};
use crate::schedule::{create_schedule, Schedule};
use crate::te::{DType, Tensor};

fn not_eligible(out: &Tensor, why: String) -> Error {
    Error::InvalidExpr(format!("conv2d_nchw_cpu_blocked: {} {}", out.name(), why))
}

/// Output channels per register tile: the first of 4, 3, 2, 6 dividing `channels` (4,
/// with a partial last tile, when none does). Four channels by two vectors are eight
/// accumulators: with six, Cranelift's register allocator spills some of them (an FMA's
/// result is tied to a multiplicand, so each step also copies the input vector).
fn channel_tile(channels: i64) -> i64 {
    [4, 3, 2, 6]
        .into_iter()
        .find(|m| channels % m == 0)
        .unwrap_or(4)
}

/// The register-blocked schedule of `out`: a 2-D NCHW convolution with one group (its
/// reductions: input channels, kernel rows, kernel columns), or an elementwise epilogue
/// of one (a fused conv + bias + relu), f32, at least 4 output columns.
///
/// - a padding stage (the stage named `pad`, if any) is materialized at root, so the
///   convolution's loads are unguarded;
/// - output channels in tiles of `mr` (`channel_tile`: 4, 3, 2 or 6) and columns in
///   tiles of 8 (two 128-bit vectors; a partial last tile where 8 does not divide the
///   width): `mr x 2` vector accumulators, the reduction outside them, the tile unrolled;
/// - per output row, every channel tile in turn (the row's inputs stay in L1); the
///   (batch, row) pairs parallel on `threads > 1` threads.
///
/// A typed error when `out` does not have that form.
pub fn conv2d_nchw_cpu_blocked(out: &Tensor, threads: usize) -> Result<Schedule> {
    let conv = &single_reduction(out).map_err(|m| not_eligible(out, m))?;
    let shape: Option<Vec<i64>> = conv.shape().iter().map(|d| d.as_int()).collect();
    let Some(shape) = shape.filter(|s| s.len() == 4) else {
        return Err(not_eligible(
            out,
            "is not a 2-D NCHW convolution of constant sizes".into(),
        ));
    };
    if conv.op.reduce_axis().len() != 3 {
        return Err(not_eligible(
            out,
            "is not a 2-D convolution (reductions over channels and a kernel window)".into(),
        ));
    }
    if out.dtype() != DType::F32 {
        return Err(not_eligible(out, format!("is {}, not f32", out.dtype())));
    }
    if shape[3] < 4 {
        return Err(not_eligible(
            out,
            format!(
                "has {} output columns; the tiles need at least 4 (one vector)",
                shape[3]
            ),
        ));
    }
    let pad = find_stage(conv, "pad");
    let mut s = create_schedule(&[out.clone()])?;
    let mut keep = vec![out, conv];
    keep.extend(pad.as_ref());
    super::inline_all_but(&mut s, &keep)?;
    if let Some(pad) = &pad {
        super::pad_at_root(&mut s, pad, threads)?;
    }
    let cl = super::accumulator(&mut s, out, conv)?;
    let mr = channel_tile(shape[1]);
    let nr = 8;
    let [n, o, y, x] = {
        let a = s.axes(out)?;
        [a[0].clone(), a[1].clone(), a[2].clone(), a[3].clone()]
    };
    let (oo, oi) = s.split(out, &o, mr)?;
    let (xo, xi) = s.split(out, &x, nr)?;
    let (xio, xii) = s.split(out, &xi, 4)?;
    s.reorder(out, &[&n, &y, &oo, &xo, &oi, &xio, &xii])?;
    let tasks = s.fuse(out, &[&n, &y])?;
    if threads > 1 {
        s.parallel(out, &tasks)?;
    }
    s.unroll(out, &oi)?;
    s.unroll(out, &xio)?;
    s.vectorize(out, &xii)?;
    s.compute_at(&cl, out, &xo)?;
    let ca = s.axes(&cl)?;
    let r = s.reduce_axes(&cl)?;
    let (cxo, cxi) = s.split(&cl, &ca[3], 4)?;
    s.reorder(&cl, &[&r[0], &r[1], &r[2], &ca[1], &cxo, &cxi])?;
    s.unroll(&cl, &ca[1])?;
    s.unroll(&cl, &cxo)?;
    s.vectorize(&cl, &cxi)?;
    Ok(s)
}
