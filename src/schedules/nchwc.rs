//! CPU schedules of convolutions in the blocked layout `NCHW[c]c`
//! ([`conv2d_nchwc`](crate::graph_runtime::ops::conv2d_nchwc),
//! [`depthwise_conv2d_nchwc`](crate::graph_runtime::ops::depthwise_conv2d_nchwc)): TVM's
//! x86 `conv2d_NCHWc` and `depthwise_conv2d_NCHWc`.
//!
//! In that layout a tile of output positions x one block of output channels is a block of
//! the output itself, rows of `ob` contiguous channels, and the input channels of a
//! block are contiguous at every position: the `gemm_f32` micro-kernel reads its `A`
//! (positions x input channels) and `B` (input channels x output channels) panels and
//! updates its `C` tile in place, with no packing and no transposed copy-out (the NCHW
//! schedule accumulates in a `[position][channel]` buffer and transposes it on the way
//! out). A depthwise convolution's taps are vectors of channels, contiguous at any
//! stride. The input and the weight may be blocked placeholders or the layout
//! transforms of NCHW/OIHW tensors in the same computation (the input's transform, or
//! its padding, becomes the convolution's input stage; the weight's is inlined).

use super::conv2d::{divisors, row_tiles, single_reduction};
use crate::error::{Error, Result};
use crate::intrinsics::gemm_f32_k3;
use crate::schedule::{create_schedule, Schedule};
use crate::te::{DType, OpKind, Tensor};

fn not_eligible(what: &str, out: &Tensor, why: String) -> Error {
    Error::InvalidExpr(format!("{}: {} {}", what, out.name(), why))
}

/// The constant sizes of `t`, if it has them.
fn sizes(t: &Tensor) -> Option<Vec<i64>> {
    t.shape().iter().map(|d| d.as_int()).collect()
}

/// The reduction `out` is or whose elementwise epilogue `out` is, with the same 5-d
/// shape, f32, its two inputs (data or its padding stage, weight) and reduce axes
/// `reduce` in number; otherwise the typed error of `what`.
fn blocked_conv(
    what: &str,
    out: &Tensor,
    reduce: usize,
    weight_rank: usize,
) -> Result<(Tensor, Tensor, Tensor, Vec<i64>)> {
    let conv = single_reduction(out).map_err(|m| not_eligible(what, out, m))?;
    if out.dtype() != DType::F32 {
        return Err(not_eligible(
            what,
            out,
            format!("is {}, not f32", out.dtype()),
        ));
    }
    let shape = sizes(&conv)
        .filter(|s| s.len() == 5 && Some(s) == sizes(out).as_ref())
        .ok_or_else(|| {
            not_eligible(
                what,
                out,
                "is not a blocked convolution [N, O/ob, OH, OW, ob] of constant sizes (or an elementwise epilogue of one)".into(),
            )
        })?;
    let inputs = conv.op.input_tensors();
    match (conv.op.reduce_axis().len(), inputs.as_slice()) {
        (r, [d, w]) if r == reduce && d.shape().len() == 5 && w.shape().len() == weight_rank => {
            Ok((conv.clone(), d.clone(), w.clone(), shape))
        }
        _ => Err(not_eligible(
            what,
            out,
            format!(
                "is not a blocked convolution: it must read a 5-d input and a {}-d weight with {} reduce axes",
                weight_rank, reduce
            ),
        )),
    }
}

/// Input channels (blocks of `cb`, times the `kw` taps of a kernel row) per micro-kernel
/// call: the largest divisor of the `blocks` whose reduction stays within 256 steps, so
/// the call's `B` panel (`k x 16` floats) fits in L1 (at least one block).
fn blocks_per_call(blocks: i64, cb: i64, kw: i64) -> i64 {
    divisors(blocks, blocks)
        .into_iter()
        .find(|&d| d * cb * kw <= 256)
        .unwrap_or(1)
}

/// The schedule of `out`: a blocked convolution
/// ([`conv2d_nchwc`](crate::graph_runtime::ops::conv2d_nchwc): input `[N, C/cb, H, W,
/// cb]`, weight `[O/ob, C/cb, KH, KW, cb, ob]`, output `[N, O/ob, OH, OW, ob]`) or an
/// elementwise epilogue of one (a fused bias + relu), f32, any stride, padding and
/// dilation:
///
/// - the padding stage (if any) computed whole first, (batch, channel block) parallel;
/// - per output row and block of output channels, the row in tiles of `mr` positions
///   (the divisor of the width up to 30 that fills the micro-kernel's 6-row register
///   blocks best), each tile updated in place by `gemm_f32_k3(mr, ob, [kcb, KW, cb])`
///   calls: one per kernel row and slice of `kcb` input channel blocks (the most whose
///   reduction `kcb * KW * cb` stays within 256), the tile zeroed first;
/// - (batch, output channel block, output row) fused and parallel on `threads > 1`
///   threads;
/// - under an epilogue the convolution accumulates each tile in a local buffer and the
///   epilogue is applied as the tile is stored, 4 channels to a vector.
///
/// Output blocks of 16 channels (`ob`) fill the micro-kernel's 16-wide tiles; blocks of
/// 8 run its one-vector-per-row kernel, about half as fast (BENCHMARKS.md: MobileNetV2's
/// 144 -> 24 layer with `ob = 8`, 0.58 ms against 0.30 on the NCHW pointwise schedule).
///
/// A typed error when `out` does not have that form.
pub fn conv2d_nchwc_cpu(out: &Tensor, threads: usize) -> Result<Schedule> {
    const WHAT: &str = "conv2d_nchwc_cpu";
    let (conv, data, w, shape) = blocked_conv(WHAT, out, 4, 6)?;
    let ws = sizes(&w)
        .ok_or_else(|| not_eligible(WHAT, out, "needs a weight of constant sizes".into()))?;
    let (ob, width) = (shape[4], shape[3]);
    let (blocks, kw, cb) = (ws[1], ws[3], ws[4]);
    let mr = row_tiles(width, 30).first().copied().unwrap_or(1);
    let kcb = blocks_per_call(blocks, cb, kw);
    let intrin = gemm_f32_k3(mr, ob, [kcb, kw, cb])?;
    let mut s = create_schedule(&[out.clone()])?;
    if matches!(data.op.kind, OpKind::Compute { .. }) {
        super::pad_at_root(&mut s, &data, threads)?;
    }
    super::inline_all_but(&mut s, &[&data, &conv, out])?;
    let a = s.axes(out)?;
    let (xo, xi) = s.split(out, &a[3], mr)?;
    let rows = s.fuse(out, &[&a[0], &a[1], &a[2]])?;
    if threads > 1 {
        s.parallel(out, &rows)?;
    }
    // The tile's stage: `out` itself, or the convolution computed per tile of an
    // epilogue (which then stores the tile in vectors of channels).
    let (tile_stage, x) = if conv.same_as(out) {
        (out.clone(), xi)
    } else {
        if ob % 4 == 0 {
            let (oo, oi) = s.split(out, &a[4], 4)?;
            s.unroll(out, &oo)?;
            s.vectorize(out, &oi)?;
        }
        s.compute_at(&conv, out, &xo)?;
        let x = s.axes(&conv)?.remove(3);
        (conv.clone(), x)
    };
    // The tile's channels: the stage's innermost data axis.
    let oi = s
        .axes(&tile_stage)?
        .last()
        .cloned()
        .ok_or_else(|| not_eligible(WHAT, out, "has no data axes".into()))?;
    let r = s.reduce_axes(&tile_stage)?;
    let (rco, rci) = s.split(&tile_stage, &r[0], kcb)?;
    s.reorder(&tile_stage, &[&rco, &r[1], &x, &oi, &rci, &r[2], &r[3]])?;
    s.tensorize(&tile_stage, &x, &intrin)?;
    Ok(s)
}

/// Positions of an output row computed together in vector registers by
/// [`depthwise_conv2d_nchwc_cpu`], for a chunk of `lanes` channels: eight 128-bit
/// accumulators' worth (8 positions of a 4-channel chunk), fewer on a narrower row.
fn depthwise_tile(width: i64, lanes: i64) -> i64 {
    let vectors = (lanes / 4).max(1);
    (8 / vectors).clamp(1, width.max(1))
}

/// The schedule of `out`: a blocked depthwise convolution
/// ([`depthwise_conv2d_nchwc`](crate::graph_runtime::ops::depthwise_conv2d_nchwc): input
/// `[N, C/c, H, W, c]`, weight `[C/c, KH, KW, c]`) or an elementwise epilogue of one,
/// f32, any stride, padding and dilation:
///
/// - per (batch, channel block), in parallel on `threads > 1` threads, the block's padded
///   plane built first (a buffer of the block, vectors of channels);
/// - the block's channels in chunks of 4 (one 128-bit vector; the whole block where 4
///   does not divide it), each output row in tiles of 8 positions by one chunk
///   (`depthwise_tile`), the tile's accumulators in registers, the kernel window
///   outside the tile and unrolled, the tile's positions unrolled: every tap is one
///   vector load of the weight and one of the input per position, contiguous at any
///   stride (at stride 1 neighbouring taps load the same input vectors, which Cranelift
///   loads once). A row whose last tile would be partial shifts it back to overlap the
///   one before (all tiles whole).
///
/// A typed error when `out` does not have that form.
pub fn depthwise_conv2d_nchwc_cpu(out: &Tensor, threads: usize) -> Result<Schedule> {
    const WHAT: &str = "depthwise_conv2d_nchwc_cpu";
    let (conv, data, _, shape) = blocked_conv(WHAT, out, 2, 4)?;
    let (width, c) = (shape[3], shape[4]);
    let lanes = if c % 4 == 0 { 4 } else { c };
    // The convolution's own input when it is a stage (its padding; 5-d, as checked).
    let pad = matches!(data.op.kind, OpKind::Compute { .. }).then_some(data);
    let mut s = create_schedule(&[out.clone()])?;
    let mut keep = vec![out, &conv];
    keep.extend(pad.as_ref());
    super::inline_all_but(&mut s, &keep)?;
    let acc = super::accumulator(&mut s, out, &conv)?;
    let a = s.axes(out)?;
    let planes = s.fuse(out, &[&a[0], &a[1]])?;
    if threads > 1 {
        s.parallel(out, &planes)?;
    }
    let tile = depthwise_tile(width, lanes);
    let (xo, xi) = if width % tile != 0 {
        s.split_shift_inwards(out, &a[3], tile)?
    } else {
        s.split(out, &a[3], tile)?
    };
    // Channels in chunks of `lanes`, the chunks outside the row's tiles.
    let (co, ci) = s.split(out, &a[4], lanes)?;
    s.reorder(out, &[&planes, &a[2], &co, &xo, &xi, &ci])?;
    s.unroll(out, &xi)?;
    let vector = |s: &mut Schedule, t: &Tensor, ax: &crate::schedule::Axis| -> Result<()> {
        if lanes == 4 {
            s.vectorize(t, ax)
        } else {
            s.unroll(t, ax)
        }
    };
    vector(&mut s, out, &ci)?;
    s.compute_at(&acc, out, &xo)?;
    if let Some(pad) = &pad {
        s.compute_at(pad, out, &planes)?;
        let last = s.axes(pad)?.remove(4);
        let (po, pi) = s.split(pad, &last, lanes)?;
        s.unroll(pad, &po)?;
        vector(&mut s, pad, &pi)?;
    }
    let ca = s.axes(&acc)?;
    let r = s.reduce_axes(&acc)?;
    s.reorder(&acc, &[&r[0], &r[1], &ca[3], &ca[4]])?;
    s.unroll(&acc, &r[0])?;
    s.unroll(&acc, &r[1])?;
    s.unroll(&acc, &ca[3])?;
    vector(&mut s, &acc, &ca[4])?;
    Ok(s)
}
