//! The CPU schedule of a depthwise convolution (NCHW, one input channel per output
//! channel, as MobileNet's 3x3 layers): each channel's padded plane is built in a buffer
//! inside the channel loop (on the stack up to 64 KiB; no padded copy of the whole
//! input), and each output
//! row is computed in vector registers with the kernel window unrolled, a few 128-bit
//! vectors across the row at a time (a row's last chunk shifted back to overlap the one
//! before where it would otherwise end in scalars; at stride 1 over rows of 16 or more,
//! two rows of two vectors, which share their input rows; rows shorter than 16 under a
//! window of more than 9 taps, the most rows that divide the height and fit in 8
//! accumulators, so the taps' multiply-adds are independent chains). For a stride-2
//! convolution the padded plane holds each row's even columns, then its odd ones (a
//! layout `[.., x % 2, x / 2]`), so every tap is a contiguous vector load; a stride-2
//! read of an ordinary plane would be two loads and a shuffle per vector. (An odd padded
//! width keeps the ordinary plane.)
//!
//! Rows of 4 to 7 positions and of 14 (the 7 x 7 and 14 x 14 planes of MobileNetV2's and
//! EfficientNet's last stages) fill 4-wide vectors of positions badly, and windows of 25
//! taps or a stride of 2 make the positions' vectors costly to load; there (`row_part`)
//! the channels go in the vectors instead, four at a time, as in the blocked layout
//! NCHW[4]c (`channels_in_vectors`).

use super::conv2d::{channels_last, single_reduction};
use super::find_stage;
use crate::error::{Error, Result};
use crate::schedule::{create_schedule, LayoutDim, Schedule};
use crate::te::{Expr, ExprNode, OpKind, Tensor};
use std::collections::HashMap;

fn not_eligible(out: &Tensor, why: String) -> Error {
    Error::InvalidExpr(format!("conv2d_depthwise_cpu: {} {}", out.name(), why))
}

/// How far apart `conv` reads `pad`'s columns for neighbouring output columns (the
/// horizontal stride), when it reads `pad` once and that is a constant.
fn column_stride(conv: &Tensor, pad: &Tensor) -> Option<i64> {
    let OpKind::Compute { axis, body } = &conv.op.kind else {
        return None;
    };
    let mut reads = vec![];
    body[0].visit(&mut |e| {
        if let ExprNode::Read(t, idx) = e.node() {
            if t.same_as(pad) {
                reads.push(idx.last().cloned());
            }
        }
        true
    });
    let [Some(last)] = reads.as_slice() else {
        return None;
    };
    // The last index at output column 1 less the same at column 0.
    let x = axis.last()?.var.id();
    let at = |v: i64| last.substitute(&HashMap::from([(x, Expr::int(v))]));
    crate::lower::simplify::simplify(&(at(1) - at(0))).as_int()
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

/// Output positions along a row (`chunk`, in 4-wide vectors) and output rows (`rows`)
/// computed together, in `rows * chunk / 4` vector accumulators, each tap of the kernel
/// window one multiply-add into every one of them: independent chains, where one
/// accumulator alone waits on its previous multiply-add for every tap.
///
/// - Stride 1 over rows of 16 or more (an even number of rows): two rows of 8, whose taps
///   share input rows (4 rows of loads for 2 output rows instead of 3 for 1), in 4
///   accumulators (the 16 of one row at a time spill more): 9-18% faster at 28-112.
/// - Rows shorter than 16, windows of more than 9 taps: one row's 4 or 8 positions (1 or
///   2 vectors) in the most rows that divide the height and fit in 8 accumulators (a
///   7 x 7 plane: 7 rows of 4; 14 x 14: 2 rows of 8). One accumulator alone was a chain
///   of 25 dependent multiply-adds for a 5 x 5 window: EfficientNet-B0's 5 x 5 layers,
///   one thread (`bench_report`, Zen 4), 672 channels at 14 x 14 0.35 -> 0.25 ms, 1152
///   at 7 x 7 0.27-0.31 -> 0.22. (With 3 x 3 windows the rows together measured no
///   faster.)
/// - Otherwise one row of up to 16 positions (fewer where the row is shorter).
fn rows_and_chunk(width: i64, height: i64, taps: i64, column_stride: Option<i64>) -> (i64, i64) {
    if column_stride == Some(1) && width >= 16 && height % 2 == 0 {
        (8, 2)
    } else if width < 16 && taps > 9 {
        let chunk = if width >= 8 { 8 } else { 4 };
        let most = 8 / (chunk / 4);
        let rows = (1..=most.min(height)).rev().find(|r| height % r == 0);
        (chunk, rows.unwrap_or(1))
    } else {
        (row_chunk(width), 1)
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
    let height = out.shape()[2].as_int().unwrap_or(1);
    let taps = red[1].extent.as_int().unwrap_or(1) * red[2].extent.as_int().unwrap_or(1);
    let stride = pad.as_ref().and_then(|p| column_stride(conv, p));
    if let (Some(pad), Some(part)) = (&pad, row_part(width, taps, stride)) {
        if let Some(w) = channels_in_vectors_weight(conv, pad) {
            channels_in_vectors(&mut s, out, conv, pad, &w, part, threads)?;
            return Ok(s);
        }
    }
    let cl = super::accumulator(&mut s, out, conv)?;
    let [n, c, y, x] = {
        let a = s.axes(out)?;
        [a[0].clone(), a[1].clone(), a[2].clone(), a[3].clone()]
    };
    let nc = s.fuse(out, &[&n, &c])?;
    if threads > 1 {
        s.parallel(out, &nc)?;
    }
    let (chunk, rows) = rows_and_chunk(width, height, taps, stride);
    // A row whose last chunk would end in scalars (14 = 8 + 6, 7 = 4 + 3) shifts that
    // chunk back to overlap the one before: all its chunks are whole vectors (576@14:
    // 0.52 -> 0.25 ms). A tail of whole vectors (56 = 3 * 16 + 8) stays, as it is cheaper
    // than recomputing the overlap.
    let (xo, xi) = if width >= chunk && width % chunk % 4 != 0 {
        s.split_shift_inwards(out, &x, chunk)?
    } else {
        s.split(out, &x, chunk)?
    };
    let (xio, xii) = s.split(out, &xi, 4)?;
    // The rows computed together (if more than one) go inside the chunk loop.
    let (yo, yi) = if rows > 1 {
        let (yo, yi) = s.split(out, &y, rows)?;
        s.unroll(out, &yi)?;
        (yo, Some(yi))
    } else {
        (y, None)
    };
    let mut order = vec![&nc, &yo, &xo, &xio, &xii];
    if let Some(yi) = &yi {
        order.insert(3, yi);
    }
    s.reorder(out, &order)?;
    s.unroll(out, &xio)?;
    s.vectorize(out, &xii)?;
    s.compute_at(&cl, out, &xo)?;
    if let Some(pad) = &pad {
        let padded_width = pad.shape().get(3).and_then(|d| d.as_int());
        if stride == Some(2) && padded_width.is_some_and(|w| w % 2 == 0) {
            // Even and odd columns in two half planes: the taps of a stride-2 row are
            // then contiguous vectors (no shuffles), loaded from `[.., x % 2, x / 2]`.
            s.transform_layout(
                pad,
                &[
                    LayoutDim::dim(0),
                    LayoutDim::dim(1),
                    LayoutDim::dim(2),
                    LayoutDim::inner(3, 2),
                    LayoutDim::outer(3, 2),
                ],
            )?;
            let half = s.axes(pad)?.remove(4);
            let (_, lanes) = s.split(pad, &half, 4)?;
            s.vectorize(pad, &lanes)?;
        }
        s.compute_at(pad, out, &nc)?;
    }
    let ca = s.axes(&cl)?;
    let r = s.reduce_axes(&cl)?;
    let (cxo, cxi) = s.split(&cl, &ca[3], 4)?;
    let mut order = vec![&r[0], &r[1], &r[2], &cxo, &cxi];
    if rows > 1 {
        order.insert(3, &ca[2]);
    }
    s.reorder(&cl, &order)?;
    if rows > 1 {
        s.unroll(&cl, &ca[2])?;
    }
    s.unroll(&cl, &r[1])?;
    s.unroll(&cl, &r[2])?;
    s.unroll(&cl, &cxo)?;
    s.vectorize(&cl, &cxi)?;
    Ok(s)
}

/// Positions of a row that [`channels_in_vectors`] accumulates at a time (in as many
/// vector registers), where it applies: rows of 4 to 7 positions (the whole row; for
/// windows of up to 9 taps only at stride 1), of 14 (half of it), and in fours, rows of
/// 16 or more that 4 divides under windows of more than 9 taps, or at a stride other
/// than 1 when 56 or wider. Measured in MobileNetV2 and EfficientNet-B0, one thread, Zen
/// 4, against the positions in vectors: 5x5 @7 0.20 -> 0.085 ms, @14 0.255 -> 0.185,
/// @28 0.33 -> 0.29, stride 2 to 7 0.121 -> 0.084, to 28 0.245 -> 0.229; 3x3 @7 0.065
/// -> 0.043, @14 0.097 -> 0.091 and 0.065 -> 0.061, stride 2 to 14 0.055 -> 0.050, to 56
/// 0.44 -> 0.38; but 3x3 stride 2 to 7 0.044 -> 0.047 and to 28 0.126 -> 0.135 (the
/// plane copy weighs more against 9 taps), rows of 8 0.030 -> 0.036, and 3x3 at stride 1
/// over rows of 28 and more up to 10% slower (their rows fill whole vectors already).
/// Other widths were not measured.
fn row_part(width: i64, taps: i64, column_stride: Option<i64>) -> Option<i64> {
    match width {
        4..=7 if taps > 9 || column_stride == Some(1) => Some(width),
        14 => Some(7),
        w if w >= 16 && w % 4 == 0 && (taps > 9 || (column_stride != Some(1) && w >= 56)) => {
            Some(4)
        }
        _ => None,
    }
}

/// The weight of the depthwise convolution `conv` (of a [`row_part`] width) reading the
/// padding stage `pad`, where [`channels_in_vectors`] takes it: `conv` reads `pad` and
/// a `[C, 1, KH, KW]` weight alone, one output channel per input channel, channels that
/// 4 divides.
fn channels_in_vectors_weight(conv: &Tensor, pad: &Tensor) -> Option<Tensor> {
    let channels = conv.shape()[1].as_int()?;
    let [a, w] = conv.op.input_tensors().try_into().ok()?;
    let w = if a.same_as(pad) { w } else { a };
    let dims: Vec<Option<i64>> = w.shape().iter().map(|d| d.as_int()).collect();
    let pad_channels = pad.shape().get(1).and_then(|d| d.as_int());
    (dims.len() == 4
        && dims[0] == Some(channels)
        && dims[1] == Some(1)
        && pad_channels == Some(channels)
        && channels % 4 == 0)
        .then_some(w)
}

/// Channels in the vectors instead of positions (as the blocked layout NCHW[4]c computes
/// them), for the rows [`row_part`] names: for each block of 4 channels, its padded
/// planes are copied into `[y][x][channel]`, so that each tap of a position is one vector
/// load, and its weights into `[tap][channel]`; each part of an output row ([`row_part`]
/// positions) accumulates in one vector per position (registers: independent chains of
/// multiply-adds) over the window's taps, then is stored into NCHW through 4 x 4 blocks
/// transposed in registers (the last vector of a part not a multiple of 4 shifted back to
/// overlap the one before).
fn channels_in_vectors(
    s: &mut Schedule,
    out: &Tensor,
    conv: &Tensor,
    pad: &Tensor,
    w: &Tensor,
    part: i64,
    threads: usize,
) -> Result<()> {
    const BLOCK: i64 = 4;
    let cl = super::accumulator(s, out, conv)?;
    let [n, c, y, x] = {
        let a = s.axes(out)?;
        [a[0].clone(), a[1].clone(), a[2].clone(), a[3].clone()]
    };
    let (co, ci) = s.split(out, &c, BLOCK)?;
    let blk = s.fuse(out, &[&n, &co])?;
    if threads > 1 {
        s.parallel(out, &blk)?;
    }
    // Each part of a row copied out in vectors of 4 positions, the four channels'
    // vectors the columns of a 4 x 4 block of the accumulator.
    let (xp, xq) = s.split(out, &x, part)?;
    let (xo, xi) = s.split_shift_inwards(out, &xq, 4)?;
    s.reorder(out, &[&blk, &y, &xp, &xo, &ci, &xi])?;
    s.unroll(out, &xo)?;
    s.unroll(out, &ci)?;
    s.vectorize(out, &xi)?;
    channels_last(s, &cl)?;
    s.compute_at(&cl, out, &xp)?;
    // The weights `[C / 4][1][KH][KW][4]` and the padded planes `[N][C / 4][H][W][4]`
    // (channels innermost), a block's copied inside its loop, its 4 channels a vector.
    let wp = s.cache_read(w, "local", &[&cl])?;
    for (t, d) in [(&wp, 0), (pad, 1)] {
        let layout: Vec<LayoutDim> = (0..4)
            .map(|i| match i == d {
                true => LayoutDim::outer(d, BLOCK),
                false => LayoutDim::dim(i),
            })
            .chain([LayoutDim::inner(d, BLOCK)])
            .collect();
        s.transform_layout(t, &layout)?;
        s.compute_at(t, out, &blk)?;
        let lanes = s.axes(t)?.remove(4);
        s.vectorize(t, &lanes)?;
    }
    // The accumulator's axes in its layout `[n, y, x, c]`: the taps outside the row's
    // positions (all unrolled) and the channels (a vector).
    let ca = s.axes(&cl)?;
    let r = s.reduce_axes(&cl)?;
    s.reorder(&cl, &[&ca[1], &r[0], &r[1], &r[2], &ca[2], &ca[3]])?;
    s.unroll(&cl, &r[1])?;
    s.unroll(&cl, &r[2])?;
    s.unroll(&cl, &ca[2])?;
    s.vectorize(&cl, &ca[3])?;
    Ok(())
}
