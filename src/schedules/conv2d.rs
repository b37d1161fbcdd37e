//! The CPU convolution schedule on the `gemm_f32` micro-kernel: an NCHW convolution is,
//! for each output row and kernel tap, a GEMM of output positions x input channels by
//! input channels x output channels (TVM's and oneDNN's direct convolution with a
//! register-blocked inner product).

use crate::error::{Error, Result};
use crate::intrinsics::{gemm_f32, gemm_f32_k3};
use crate::schedule::{create_schedule, Axis, LayoutDim, Schedule};
use crate::te::{OpKind, Tensor};
use serde::{Deserialize, Serialize};

fn not_eligible(out: &Tensor, why: String) -> Error {
    Error::InvalidExpr(format!(
        "conv2d_nchw_cpu_tensorized: {} {}",
        out.name(),
        why
    ))
}

/// The reductions that `t` reads through elementwise stages (stopping at each).
fn reductions_feeding(t: &Tensor) -> Vec<Tensor> {
    let mut found: Vec<Tensor> = vec![];
    let mut todo = t.op.input_tensors();
    while let Some(x) = todo.pop() {
        if !x.op.reduce_axis().is_empty() {
            if !found.iter().any(|f| f.same_as(&x)) {
                found.push(x);
            }
        } else if matches!(x.op.kind, OpKind::Compute { .. }) {
            todo.extend(x.op.input_tensors());
        }
    }
    found
}

/// The one reduction `out` is (a convolution) or reads through elementwise stages (a
/// fused epilogue); otherwise the message for `schedule`'s typed error.
pub(crate) fn single_reduction(out: &Tensor) -> std::result::Result<Tensor, String> {
    if !out.op.reduce_axis().is_empty() {
        return Ok(out.clone());
    }
    match reductions_feeding(out).as_slice() {
        [conv] => Ok(conv.clone()),
        convs => Err(format!(
            "reads {} reductions, not one convolution",
            convs.len()
        )),
    }
}

/// Input channel counts below this reduce over the whole window in one micro-kernel call
/// (see [`conv2d_nchw_cpu_tensorized`]).
const FEW_CHANNELS: i64 = 8;

/// Positions per tile along the output row: the divisor of `width` up to 30 that fills
/// the micro-kernel's 6-row register blocks best (the larger on a tie).
fn row_tile(width: i64) -> i64 {
    row_tiles(width, 30).first().copied().unwrap_or(1)
}

/// The divisors of `width` up to `limit`, the ones that fill the micro-kernel's 6-row
/// register blocks best first (the larger first on a tie).
pub(crate) fn row_tiles(width: i64, limit: i64) -> Vec<i64> {
    let fill = |d: i64| d as f64 / (6 * ((d + 5) / 6)) as f64;
    let mut tiles = divisors(width, limit);
    tiles.sort_by(|&a, &b| fill(b).total_cmp(&fill(a)).then(b.cmp(&a)));
    tiles
}

/// The divisors of `n` up to `limit`, largest first.
pub(crate) fn divisors(n: i64, limit: i64) -> Vec<i64> {
    (1..=n.min(limit)).rev().filter(|d| n % d == 0).collect()
}

/// How the micro-kernel covers a convolution's reduction in
/// [`conv2d_nchw_cpu_tensorized_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConvKernel {
    /// One `gemm_f32_k3(mr, 16, [C, KH, KW])` call over the whole window (an RGB stem:
    /// few input channels, many taps).
    Window,
    /// One `gemm_f32_k3(mr, 16, [KH, KW, kc])` call per slice of `kc` input channels:
    /// every tap with the tile in registers.
    AllTaps,
    /// One `gemm_f32(mr, 16, kc)` call per tap and channel slice: each tap's `kc x 16`
    /// weight panel stays in L1 while every register block of the tile reads it.
    PerTap,
}

/// Knobs of [`conv2d_nchw_cpu_tensorized_with`] (what the autotuner searches).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConvConfig {
    /// Output positions per tile along a row (`mr` of the micro-kernel call); divides the
    /// output width.
    pub row_tile: i64,
    /// Input channels per micro-kernel call (`AllTaps`, `PerTap`); divides the input
    /// channels. `Window` reduces over all of them and ignores it.
    pub kc: i64,
    /// How the calls cover the reduction.
    pub kernel: ConvKernel,
    /// Parallelize the output rows as well as the (batch, channel block) pairs.
    pub parallel_rows: bool,
    /// The accumulator holds every output row of a channel block, and the rows run
    /// inside the reduction's outer loops: each weight panel is read once per block
    /// instead of once per row (small images, many channels). Excludes `parallel_rows`.
    #[serde(default)]
    pub all_rows: bool,
    /// A 1x1 kernel's output positions fused across rows, in tiles of `row_tile` that
    /// need not divide the width (7x7 images: 49 positions in 8 tiles of 6 and one of
    /// 1, instead of 7 rows of a 6 and a 1). Implies the accumulator of `all_rows`.
    #[serde(default)]
    pub fused_rows: bool,
    /// Threads of the parallel loop (1: serial).
    pub threads: usize,
}

/// The sizes of a convolution that [`conv2d_nchw_cpu_tensorized`] can schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvShape {
    /// Batch.
    pub batch: i64,
    /// Output channels (a multiple of 16).
    pub out_channels: i64,
    /// Input channels.
    pub in_channels: i64,
    /// Kernel height.
    pub kh: i64,
    /// Kernel width.
    pub kw: i64,
    /// Output width.
    pub width: i64,
    /// The input is read as it is stored, at stride 1 (no padding stage, its rows and
    /// columns the output's): a 1x1 kernel's positions then lie contiguous across rows.
    pub unit_stride: bool,
}

impl ConvShape {
    /// The sizes of the convolution `out` computes (or of the one an elementwise
    /// epilogue `out` reads); the same typed error as [`conv2d_nchw_cpu_tensorized`]
    /// when that schedule does not apply.
    pub fn of(out: &Tensor) -> Result<ConvShape> {
        Ok(analyze(out)?.shape)
    }
}

impl ConvConfig {
    /// The default configuration for `shape` on `threads` threads:
    /// - row tile: the divisor of the width up to 30 that fills 6-row register blocks
    ///   best (for the `Window` kernel on an AVX-512 CPU, the largest up to 64);
    /// - `kc`: the largest divisor of the input channels up to 256;
    /// - kernel: `Window` below 8 input channels, `AllTaps` for kernels larger than 1x1
    ///   with tiles of 12+ positions, `PerTap` otherwise;
    /// - for a 1x1 kernel at stride 1 over rows narrower than 16 (7x7, 14x14 images)
    ///   with a (batch, channel block) pair per thread or more: positions fused across
    ///   rows (`fused_rows`) in tiles of 6;
    /// - otherwise rows parallel when there are fewer than four (batch, channel block)
    ///   pairs per thread.
    pub fn for_shape(shape: &ConvShape, threads: usize) -> ConvConfig {
        let c = shape.in_channels;
        let blocks = shape.batch * shape.out_channels / 16;
        let fused_rows = shape.unit_stride && shape.width < 16 && blocks >= threads as i64;
        let parallel_rows = !fused_rows && blocks < 4 * threads as i64;
        let row_tile = if fused_rows {
            6
        } else if c < FEW_CHANNELS && crate::intrinsics::has_avx512f() {
            // The window's one call per tile, on AVX-512 (whose kernel splits a tile's
            // rows evenly in blocks of up to 12): the fewest calls, the largest divisor
            // up to 64 (the 7x7 stem on 112-wide rows: 56, 1.28-1.32 -> 1.20 ms on a Zen
            // 5 core; the AVX2 kernel measured no better at 56 than at 28).
            divisors(shape.width, 64).first().copied().unwrap_or(1)
        } else {
            row_tile(shape.width)
        };
        let kernel = if c < FEW_CHANNELS {
            ConvKernel::Window
        } else if shape.kh * shape.kw > 1 && row_tile >= 12 {
            ConvKernel::AllTaps
        } else {
            ConvKernel::PerTap
        };
        ConvConfig {
            row_tile,
            kc: divisors(c, 256).first().copied().unwrap_or(1),
            kernel,
            parallel_rows,
            all_rows: false,
            fused_rows,
            threads,
        }
    }

    /// Check the configuration against `shape` (typed errors naming the knob).
    pub fn check(&self, shape: &ConvShape) -> Result<()> {
        let bad = |m: String| Error::InvalidExpr(format!("conv2d_nchw_cpu_tensorized_with: {}", m));
        if self.row_tile < 1 || (!self.fused_rows && shape.width % self.row_tile != 0) {
            return Err(bad(format!(
                "row_tile = {} must be at least 1 and divide the output width {}",
                self.row_tile, shape.width
            )));
        }
        if self.kernel != ConvKernel::Window && (self.kc < 1 || shape.in_channels % self.kc != 0) {
            return Err(bad(format!(
                "kc = {} must be at least 1 and divide the {} input channels",
                self.kc, shape.in_channels
            )));
        }
        if self.threads < 1 {
            return Err(bad("threads must be at least 1".into()));
        }
        if (self.all_rows || self.fused_rows) && self.parallel_rows {
            return Err(bad(
                "all_rows and fused_rows keep a channel block's rows in one task; they cannot be combined with parallel_rows".into(),
            ));
        }
        if self.fused_rows && !shape.unit_stride {
            return Err(bad(format!(
                "fused_rows fuses output positions across rows, which needs a 1x1 kernel at stride 1 without padding (this one is {}x{}{})",
                shape.kh,
                shape.kw,
                if shape.kh * shape.kw == 1 { ", strided or padded" } else { "" }
            )));
        }
        Ok(())
    }
}

/// What the schedule needs to know of a convolution: its stages and sizes.
struct ConvParts {
    /// The reduction (`out`, or the one `out`'s epilogue reads).
    conv: Tensor,
    /// The input or its padding stage.
    data: Tensor,
    /// The weight, OIHW or already packed (5-d).
    w: Tensor,
    shape: ConvShape,
}

fn analyze(out: &Tensor) -> Result<ConvParts> {
    let shape: Vec<i64> = out
        .shape()
        .iter()
        .map(|d| d.as_int())
        .collect::<Option<_>>()
        .ok_or_else(|| not_eligible(out, "needs constant sizes".into()))?;
    let [batch, o, _, width] = shape[..] else {
        return Err(not_eligible(
            out,
            format!("has {} dimensions, not 4 (NCHW)", shape.len()),
        ));
    };
    if o % 16 != 0 {
        return Err(not_eligible(
            out,
            format!(
                "has {} output channels; the micro-kernel needs a multiple of 16",
                o
            ),
        ));
    }
    // The convolution: `out` itself, or the reduction an elementwise epilogue of the
    // same shape reads.
    let same_shape = |c: &Tensor| {
        c.shape().len() == 4
            && c.shape()
                .iter()
                .zip(out.shape())
                .all(|(a, b)| a.as_int() == b.as_int())
    };
    let conv = single_reduction(out)
        .ok()
        .filter(|c| c.same_as(out) || same_shape(c))
        .ok_or_else(|| {
            not_eligible(
                out,
                "is neither a convolution nor an elementwise epilogue of one".into(),
            )
        })?;
    let red = conv.op.reduce_axis();
    let inputs = conv.op.input_tensors();
    let (data, w) = match (red.len(), inputs.as_slice()) {
        (3, [d, w]) if matches!(w.shape().len(), 4 | 5) => (d.clone(), w.clone()),
        _ => {
            return Err(not_eligible(
                out,
                "is not a convolution (two inputs, three reduce axes)".into(),
            ))
        }
    };
    let c = red[0]
        .extent
        .as_int()
        .ok_or_else(|| not_eligible(out, "needs a constant channel count".into()))?;
    // An OIHW weight is packed here; a 5-d one is already `[O / 16][KH][KW][C][16]`.
    let prepacked = w.shape().len() == 5;
    let weight_c = if prepacked { 3 } else { 1 };
    if w.shape()[weight_c].as_int() != Some(c)
        || data.shape().get(1).and_then(|d| d.as_int()) != Some(c)
    {
        return Err(not_eligible(
            out,
            "is grouped (its weight's input channels differ from the reduction); only one group is supported".into(),
        ));
    }
    if prepacked && w.shape()[4].as_int() != Some(16) {
        return Err(not_eligible(
            out,
            format!(
                "reads a 5-d weight {} whose last size is not 16; a packed weight is [O/16, KH, KW, C, 16]",
                w.name()
            ),
        ));
    }
    let kh = red[1].extent.as_int().unwrap_or(1);
    let kw = red[2].extent.as_int().unwrap_or(1);
    let spatial =
        |t: &Tensor| -> Vec<Option<i64>> { t.shape().iter().skip(2).map(|d| d.as_int()).collect() };
    let unit_stride = !matches!(data.op.kind, OpKind::Compute { .. })
        && spatial(&data) == spatial(out)
        && kh * kw == 1;
    Ok(ConvParts {
        conv,
        data,
        w,
        shape: ConvShape {
            batch,
            out_channels: o,
            in_channels: c,
            kh,
            kw,
            width,
            unit_stride,
        },
    })
}

/// Store the NCHW stage `t` channels-last, `[N][H][W][C]`.
pub(super) fn channels_last(s: &mut Schedule, t: &Tensor) -> Result<()> {
    let [n, c, h, w] = [0, 1, 2, 3].map(LayoutDim::dim);
    s.transform_layout(t, &[n, h, w, c]).map(|_| ())
}

/// Schedule a 2-D convolution `out[n, o, y, x] = sum_{c, ky, kx} data[n, c, y * sh + ky *
/// dh, x * sw + kx * dw] * w[o, c, ky, kx]` (NCHW, OIHW, one group; `data` is the input or
/// a padding stage, which is materialized at root, channels-last (`[N][H][W][C]`) for
/// kernels larger than 1x1 that reduce over channels innermost) for the CPU:
///
/// - the weights packed at root as `[O / 16][KH][KW][C][16]`, so each tap's `kc x 16`
///   panel of output channels is contiguous. The packing is part of every call unless
///   the convolution reads a weight already in that layout (5-d, read as
///   `w[o / 16, ky, kx, c, o % 16]`: what the graph build makes of constant weights, see
///   [`WeightLayout::Ohwi16o`](crate::graph_runtime::WeightLayout::Ohwi16o));
/// - per output row `y`, block of 16 output channels and tile of `mr` positions
///   (by default [`ConvConfig::for_shape`]'s row tile), an accumulator `out.local` laid out `[.., x, o]` (its
///   rows are the tile's positions), then copied out. The micro-kernel updates it
///   ([`ConvKernel`]; by default):
///   - with fewer than 8 input channels (an RGB stem): in one `gemm_f32_k3(mr, 16, [C,
///     KH, KW])` call over the whole window;
///   - for kernels larger than 1x1 and tiles of at least 12 positions: one
///     `gemm_f32_k3(mr, 16, [KH, KW, kc])` call per slice of `kc` (at most 256) input
///     channels, all taps with the tile in registers;
///   - otherwise: one `gemm_f32(mr, 16, kc)` call per tap `(ky, kx)` and channel slice,
///     the tap's weight panel staying in L1 across the tile's register blocks;
/// - batch and channel blocks fused and parallel over `threads` (with the output rows
///   when there are fewer than four blocks per thread); for a 1x1 kernel the output rows
///   outside the channel blocks instead, (batch, row) parallel (when there are four per
///   thread), so each row's inputs stay in L1 across the blocks.
///
/// `out` may also be an elementwise epilogue of the convolution (`relu(conv + bias)`, a
/// residual sum: a graph's fused group); the convolution then plays the accumulator and
/// the epilogue is applied as the tile is copied out.
///
/// A typed error when the convolution does not have that form (grouped or depthwise,
/// output channels not a multiple of 16, symbolic sizes): use another schedule then.
///
/// The knobs take their defaults from [`ConvConfig::for_shape`]; see
/// [`conv2d_nchw_cpu_tensorized_with`] to choose them.
pub fn conv2d_nchw_cpu_tensorized(out: &Tensor, threads: usize) -> Result<Schedule> {
    let shape = ConvShape::of(out)?;
    conv2d_nchw_cpu_tensorized_with(out, ConvConfig::for_shape(&shape, threads))
}

/// [`conv2d_nchw_cpu_tensorized`] with explicit knobs (checked by [`ConvConfig::check`]).
pub fn conv2d_nchw_cpu_tensorized_with(out: &Tensor, cfg: ConvConfig) -> Result<Schedule> {
    let ConvParts {
        conv,
        data,
        w,
        shape,
    } = analyze(out)?;
    cfg.check(&shape)?;
    let ConvConfig {
        row_tile: mr,
        kc,
        threads,
        ..
    } = cfg;
    let prepacked = w.shape().len() == 5;
    let mut s = create_schedule(&[out.clone()])?;
    if matches!(data.op.kind, OpKind::Compute { .. }) {
        if shape.kh * shape.kw > 1 && cfg.kernel != ConvKernel::Window {
            // The padded copy channels-last (`[N][H][W][C]`): each position's channels
            // are contiguous, so every register-block row of the micro-kernel streams
            // along one run of memory as the reduction steps through channels, instead
            // of touching a plane per channel (one thread: ResNet-18's 3x3 layers
            // 3-25% faster, e.g. 512@7 4.4-5.2 -> 3.9 ms, 64->128 stride 2 1.45 -> 1.38).
            channels_last(&mut s, &data)?;
        }
        super::pad_at_root(&mut s, &data, threads)?;
    }
    // Elementwise stages of an epilogue (bias broadcasts...) computed in `out`'s loops.
    super::inline_all_but(&mut s, &[&data, &conv, out])?;
    if !prepacked {
        let wp = s.cache_read(&w, "global", &[&conv])?;
        s.transform_layout(
            &wp,
            &[
                LayoutDim::outer(0, 16),
                LayoutDim::dim(2),
                LayoutDim::dim(3),
                LayoutDim::dim(1),
                LayoutDim::inner(0, 16),
            ],
        )?;
        // Copy in the weights' own order (contiguous reads; the writes stay inside one
        // block of 16 output channels), the blocks in parallel.
        let pw = s.axes(&wp)?;
        s.reorder(&wp, &[&pw[0], &pw[4], &pw[3], &pw[1], &pw[2]])?;
        if threads > 1 {
            s.parallel(&wp, &pw[0])?;
        }
    }
    let acc = super::accumulator(&mut s, out, &conv)?;
    channels_last(&mut s, &acc)?;
    let a = s.axes(out)?;
    let whole_image = cfg.all_rows || cfg.fused_rows;
    let (oo, oi) = s.split(out, &a[1], 16)?;
    // The copy-out's tiles: the accumulator's row tiles, or vectors along the row where
    // positions are fused across rows.
    let out_tile = if cfg.fused_rows { 4 } else { mr };
    let (xo, xi) = s.split(out, &a[3], out_tile)?;
    // A 1x1 convolution's weights are small and its inputs per output few: the output
    // rows go outside the channel blocks, so that one row's inputs stay in L1 while
    // every block reads them (instead of the whole input streaming through once per
    // block), the (batch, row) pairs in parallel when there are enough of them.
    let height = out.shape()[2].as_int().unwrap_or(1);
    let rows_outer = shape.kh * shape.kw == 1
        && !whole_image
        && shape.batch * height >= 4 * threads.max(1) as i64;
    if rows_outer {
        s.reorder(out, &[&a[0], &a[2], &oo, &xo, &oi, &xi])?;
    } else {
        s.reorder(out, &[&a[0], &oo, &a[2], &xo, &oi, &xi])?;
    }
    // Parallel over (batch, channel block), and over output rows too when there are
    // fewer than four such blocks per thread (a 64-channel layer has 4).
    let parallel = if rows_outer {
        s.fuse(out, &[&a[0], &a[2]])?
    } else if cfg.parallel_rows {
        s.fuse(out, &[&a[0], &oo, &a[2]])?
    } else {
        s.fuse(out, &[&a[0], &oo])?
    };
    if threads > 1 {
        s.parallel(out, &parallel)?;
    }
    // The tile's copy-out (and an epilogue: bias, relu) along the row in vectors: each
    // reads 4 positions of the `[x][o]` accumulator 16 apart, stores them contiguous.
    // (Only where 4 divides the tile: a partial vector would widen the region of the
    // accumulator that bound inference gives the tile, past the intrinsic's shape.)
    if cfg.fused_rows {
        s.vectorize(out, &xi)?;
    } else if mr % 4 == 0 {
        // Four channels unrolled inside: their four strided reads of the accumulator are
        // the columns of a 4 x 4 block, which the CPU backend loads as four rows and
        // transposes in registers (`codegen_cpu/transpose_loads.rs`; MobileNetV2's stem
        // 0.384 -> 0.343 ms, ResNet-18's 2.62 -> 2.55).
        let (xio, xii) = s.split(out, &xi, 4)?;
        let (oio, oii) = s.split(out, &oi, 4)?;
        s.reorder(out, &[&oio, &xio, &oii, &xii])?;
        s.unroll(out, &oii)?;
        s.vectorize(out, &xii)?;
    }
    let ConvShape {
        in_channels: c,
        kh,
        kw,
        ..
    } = shape;
    // The accumulator at the width block (its rows a tile of one output row), or with
    // `all_rows` at the channel block: the block's whole output image, its rows (and row
    // tiles) inside the reduction's outer loops so that each weight panel serves them all.
    s.compute_at(&acc, out, if whole_image { &parallel } else { &xo })?;
    let ca = s.axes(&acc)?;
    let r = s.reduce_axes(&acc)?;
    let (n, y, o) = (&ca[0], &ca[1], &ca[3]);
    // Loops outside the reduction's outer loops (`pre`), inside them (`rows`), then the
    // tile: positions `x` (tensorized there) and channels `o`.
    let (pre, rows, x): (Vec<&Axis>, Vec<Axis>, Axis) = if cfg.fused_rows {
        // Positions across rows: the input's and the accumulator's offsets are linear
        // in them (tensorize folds the flattened `y * W + x`).
        let p = s.fuse(&acc, &[y, &ca[2]])?;
        let (po, pi) = s.split(&acc, &p, mr)?;
        (vec![n], vec![po], pi)
    } else if cfg.all_rows {
        let (cxo, cxi) = s.split(&acc, &ca[2], mr)?;
        (vec![n], vec![y.clone(), cxo], cxi)
    } else {
        (vec![n, y], vec![], ca[2].clone())
    };
    let rows: Vec<&Axis> = rows.iter().collect();
    let slices = match cfg.kernel {
        ConvKernel::Window => None,
        _ => Some(s.split(&acc, &r[0], kc)?),
    };
    // The reduction's loops outside the rows and inside the tile, and the intrinsic.
    let (outer, inner, intrin): (Vec<&Axis>, Vec<&Axis>, _) = match (cfg.kernel, &slices) {
        (ConvKernel::AllTaps, Some((rco, rci))) => (
            vec![rco],
            vec![&r[1], &r[2], rci],
            gemm_f32_k3(mr, 16, [kh, kw, kc])?,
        ),
        (ConvKernel::PerTap, Some((rco, rci))) => {
            (vec![&r[1], &r[2], rco], vec![rci], gemm_f32(mr, 16, kc)?)
        }
        _ => (
            vec![],
            r.iter().collect(),
            gemm_f32_k3(mr, 16, [c, kh, kw])?,
        ),
    };
    let order: Vec<&Axis> = pre
        .into_iter()
        .chain(outer)
        .chain(rows)
        .chain([&x, o])
        .chain(inner)
        .collect();
    s.reorder(&acc, &order)?;
    s.tensorize(&acc, &x, &intrin)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::row_tile;

    #[test]
    fn row_tiles_of_resnet_widths() {
        // 6-row blocks filled best: 28 = 6+6+6+6+4, 14 = 6+6+2, 7 = 6+1.
        assert_eq!(row_tile(56), 28);
        assert_eq!(row_tile(28), 28);
        assert_eq!(row_tile(14), 14);
        assert_eq!(row_tile(7), 7);
        assert_eq!(row_tile(112), 28);
        assert_eq!(row_tile(12), 12);
    }
}
