//! Default CPU schedules of the graph operators.
//!
//! - dense with fewer than 4 rows: a `dot_f32` call per output element (the weight read
//!   in place, rows contiguous), output columns in parallel chunks.
//! - dense / matmul (f32, with their fused epilogue) of at least `GEMM_TENSORIZED_ROWS`
//!   rows and columns a multiple of 16: the BLIS schedule of
//!   [`crate::schedules::matmul_cpu_tensorized`] on the `gemm_f32_panels` macro-kernel (dense's
//!   weight transpose inlined into the packing of `B`), the epilogue one vectorized loop
//!   over the output.
//! - other dense / matmul: the register-blocked matmul of [`crate::schedules::matmul_cpu_with`]
//!   with `mm_config`'s knobs (an `mr x nr` accumulator tile in registers, vectorized
//!   along the output columns, `A` not packed, no column blocks);
//!   dense computes the transposed weight panel of each column block at that block
//!   (`wt` computed at `j.outer`: the transpose doubles as packing).
//! - conv2d with a Winograd weight ([`crate::graph_runtime::WeightLayout::Winograd23`]):
//!   [`crate::schedules::conv2d_winograd_cpu`].
//! - conv2d: with one group and output channels a multiple of 16, the direct
//!   convolution on the `gemm_f32` micro-kernel
//!   ([`crate::schedules::conv2d_nchw_cpu_tensorized`]); depthwise (one input channel
//!   per group): [`crate::schedules::conv2d_depthwise_cpu`]; 1x1 with at most 16 input
//!   channels, or another that the micro-kernel does not take:
//!   [`crate::schedules::conv2d_nchw_cpu_blocked`]; with rows narrower than a vector, the padding stage
//!   materialized at root (a padded copy of the input, so that
//!   the convolution's loads are unguarded and vectorize: about 5x faster than inlining
//!   the `select`); output width split into vectors, the
//!   accumulator tile (`out.local`) computed at the width block with the reduction
//!   (`rc, ry, rx`) outside the vector lanes; batch and output channels fused and
//!   parallelized.
//! - injective ops: outer axes fused and parallelized, the innermost axis vectorized when
//!   it divides into whole 128-bit vectors; an activation (alone or anchoring a fused
//!   group) by the `activation_f32` intrinsic, blocks of rows per call, where
//!   [`crate::schedules::activation_fits`] (f32, planes of 8 elements or more, AVX2 and
//!   FMA; [`crate::schedules::activation_cpu`]).
//! - max and average pooling: the convolution's loop schedule ([`conv2d_loops`]): the
//!   padding materialized, output width in vectors, the window reduction outside the
//!   lanes.
//! - softmax over the last axis of f32: rows parallel, each row's maximum, exponentials
//!   and their sum by the `reduce_max_f32`, `exp_sub_f32` and `reduce_sum_f32` intrinsics,
//!   the output's row vectorized (`softmax_rows`);
//! - layer norm (and other last-axis softmaxes): rows parallel, each row's statistics
//!   (`mean`/`var`, `max`/`den`) computed at the row with their reductions in 32 vector
//!   lanes (8 for rows under 128; `rfactor`), the output's row vectorized (`row_normalization`);
//! - global average pooling: planes parallel, each plane's sum in independent partial
//!   sums across its columns (`rfactor`, in registers) then added (`global_pool`);
//! - other reductions (softmax over another axis): stages at root with their outer axis
//!   parallel; nothing vectorized (naive).
//!
//! With `threads <= 1`, or less work than [`PARALLEL_MIN_WORK`], nothing is parallelized.
//!
//! [`tuned_schedule`] applies a configuration found by the autotuner
//! ([`crate::autotune`]) to the same templates (conv2d on the micro-kernel, dense and
//! matmul register-blocked).
//!
//! [`cuda_schedule`] gives the CUDA schedules (one kernel per node).

use crate::autotune::TunedConfig;
use crate::error::Result;
use crate::graph_runtime::graph::WeightLayout;
use crate::graph_runtime::graph::{Conv2dAttrs, Op};
use crate::schedule::{create_schedule, Schedule};
use crate::schedules::default_k_unroll;
use crate::schedules::{
    matmul_cpu_with, ConvConfig, ConvShape, GemmBlocking, MatmulConfig, WinogradConfig,
};
use crate::te::Tensor;

/// Lanes of a 128-bit vector of this tensor's dtype.
fn lanes(t: &Tensor) -> usize {
    (16 / t.dtype().bytes()).max(1)
}

/// The sizes of `t` (1 for a symbolic size).
pub(crate) fn const_shape(t: &Tensor) -> Vec<usize> {
    t.shape()
        .iter()
        .map(|d| d.as_int().unwrap_or(1) as usize)
        .collect()
}

/// The compute stages of the computation of `out` (producers first), by name.
fn stage_names(s: &Schedule) -> Vec<String> {
    s.stages.iter().map(|st| st.name.clone()).collect()
}

fn is_reduction(s: &Schedule, name: &str) -> Result<bool> {
    Ok(!s.reduce_axes(name)?.is_empty())
}

/// The default CPU schedule of the computation `out` of one graph node with operator `op`.
/// A fused group ([`Op::Fused`]) takes its anchor's schedule, with the anchor's stage
/// computed inside the loop nest of the epilogue's output stage (conv2d, dense, matmul) or
/// at root (other reductions); elementwise and injective stages are inlined into `out`.
pub fn default_schedule(op: &Op, out: &Tensor, threads: usize) -> Result<Schedule> {
    if let Some(s) = gemm_tensorized(op, out, threads)? {
        return Ok(s);
    }
    if let Some(cfg) = default_config(op, out, threads) {
        let s = tuned_schedule(op, out, threads, &cfg);
        // A convolution the micro-kernel cannot take after all falls back to the loops.
        if s.is_ok() || !matches!(cfg, TunedConfig::Conv2d(_)) {
            return s;
        }
    }
    let threads = effective_threads(out, threads);
    let f32 = out.dtype() == crate::te::DType::F32;
    match anchor(op) {
        Op::MatMul | Op::Dense if f32 && const_shape(out)[0] < GEMV_ROWS => {
            match dense_rows(out, threads)? {
                Some(s) => Ok(s),
                None => generic(out, threads),
            }
        }
        // Depthwise, pointwise, else register-blocked (rows narrower than a vector: the
        // loops).
        Op::Conv2d(_) if f32 => crate::schedules::conv2d_depthwise_cpu(out, threads)
            .or_else(|_| crate::schedules::conv2d_pointwise_cpu(out, threads))
            .or_else(|_| crate::schedules::conv2d_nchw_cpu_blocked(out, threads))
            .or_else(|_| conv2d_loops(out, threads)),
        Op::Conv2d(_) | Op::MaxPool2d(_) | Op::AvgPool2d(_) => conv2d_loops(out, threads),
        Op::Softmax { axis } if *axis + 1 == const_shape(out).len() => {
            let sh = const_shape(out);
            if sh.len() >= 2
                && sh[sh.len() - 1] >= 1
                && out.dtype() == crate::te::DType::F32
                && crate::schedules::find_stage(out, "exp").is_some()
            {
                softmax_rows(out, threads)
            } else {
                row_normalization(out, &["den", "max"], threads)
            }
        }
        Op::LayerNorm { .. } => row_normalization(out, &["var", "mean"], threads),
        Op::GlobalAvgPool => global_pool(out, threads),
        _ => generic(out, threads),
    }
}

/// Global average pooling (`ops::global_avg_pool`: a sum over each plane's rows and
/// columns): the planes (batch and channel fused) parallel on `threads > 1` threads, each
/// plane's sum in [`pool_chains`] independent partial sums across its columns (`rfactor`,
/// 4-lane vectors where their count is a multiple of 4, else the columns unrolled) then
/// added up unrolled, so that they are held in registers. (A single chain of dependent adds
/// waits out every add's latency: MobileNetV2's 1280 planes of 7x7 took 0.14 ms on one
/// thread.) Other forms (a fused epilogue, symbolic sizes) take [`generic`].
fn global_pool(out: &Tensor, threads: usize) -> Result<Schedule> {
    let red = out.op.reduce_axis();
    let cols = red.get(1).and_then(|r| r.extent.as_int());
    let (2, Some(cols)) = (red.len(), cols) else {
        return generic(out, threads);
    };
    let mut s = create_schedule(&[out.clone()])?;
    let chains = pool_chains(cols);
    let rf = if chains > 1 {
        let r = s.reduce_axes(out)?;
        let (_, rxi) = s.split(out, &r[1], chains)?;
        let data = s.axes(out)?.len();
        Some(s.rfactor(out, &rxi, data)?)
    } else {
        None
    };
    let data = s.axes(out)?;
    let planes = s.fuse(out, &data.iter().collect::<Vec<_>>())?;
    if threads > 1 {
        s.parallel(out, &planes)?;
    }
    if let Some(rf) = rf {
        s.compute_at(&rf, out, &planes)?;
        let rfa = s.axes(&rf)?;
        let lane = rfa[rfa.len() - 1].clone();
        let mut order: Vec<crate::schedule::Axis> = s.reduce_axes(&rf)?;
        order.push(lane.clone());
        s.reorder(&rf, &order.iter().collect::<Vec<_>>())?;
        // The partial sums added up unrolled: every access to them has a constant index,
        // so they live in registers (a loop over them kept them in memory, each update a
        // store-to-load round trip).
        let r = s.reduce_axes(out)?;
        s.unroll(out, &r[0])?;
        if chains % 4 == 0 {
            // The partial sums as whole vectors (two for 8 chains).
            let (lo, li) = s.split(&rf, &lane, 4)?;
            s.unroll(&rf, &lo)?;
            s.vectorize(&rf, &li)?;
        } else {
            s.unroll(&rf, &lane)?;
        }
    }
    Ok(s)
}

/// Independent partial sums for a plane `cols` wide: the largest divisor of `cols` up to
/// 8 (7 for 7x7 planes), so that no column is guarded.
fn pool_chains(cols: i64) -> i64 {
    (1..=cols.clamp(1, 8))
        .rev()
        .find(|d| cols % d == 0)
        .unwrap_or(1)
}

/// Input channels up to which a 1x1 convolution takes the register-blocked schedule
/// ([`crate::schedules::conv2d_nchw_cpu_blocked`]) rather than the micro-kernel: a
/// reduction this short leaves each micro-kernel call too little work (MobileNetV2's
/// 16 -> 96 layer at 112x112: 2.5-2.9 ms blocked, 3.1-4.5 ms on the micro-kernel, one
/// thread).
const BLOCKED_MAX_CHANNELS: i64 = 16;

/// Output positions (`H x W`) from which a pointwise convolution whose output channels
/// are a multiple of 16 takes [`crate::schedules::conv2d_pointwise_cpu`] rather than the
/// micro-kernel's direct schedule on packed weights: at 56x56 and above the pointwise
/// schedule was as fast or faster (MobileNetV2's 16 -> 96 at 112x112: 1.9 ms against
/// 3.4 ms, one thread), at 14x14 and 7x7 up to 1.2-1.6x slower (its 16-position tiles
/// fit 49 or 196 positions worse, and it reads the weight unpacked).
pub const POINTWISE_MIN_POSITIONS: usize = 28 * 28;

/// Whether the CPU build runs a convolution with attributes `a`, OIHW weight shape
/// `weight` and output shape `out` on [`crate::schedules::conv2d_pointwise_cpu`] (and so
/// leaves its weight unpacked): pointwise, and either output channels that 16 does not
/// divide (the micro-kernel's direct schedule cannot take them) or at least
/// [`POINTWISE_MIN_POSITIONS`] output positions.
pub fn prefers_pointwise(a: &Conv2dAttrs, weight: &[usize], out: &[usize]) -> bool {
    a.is_pointwise(weight)
        && out.len() == 4
        && (!weight[0].is_multiple_of(16) || out[2] * out[3] >= POINTWISE_MIN_POSITIONS)
}

/// Partial results per row of `row_normalization`'s statistics: eight 128-bit f32
/// vectors (independent chains) for rows of 128 elements and more, two below.
fn row_lanes(row: usize) -> i64 {
    if row >= 128 {
        32
    } else {
        8
    }
}

/// Softmax over the last axis and layer norm (`stats`: the row statistics' stages,
/// consumers first — `den` then `max`, `var` then `mean` — each a reduction over the
/// row): the rows (all axes but the last, fused) parallel, each row's statistics
/// computed at the row, their reductions in [`row_lanes`] vector lanes (`rfactor`) then
/// combined, and the output's row in vectors.
fn row_normalization(out: &Tensor, stats: &[&str], threads: usize) -> Result<Schedule> {
    let shape = const_shape(out);
    if shape.len() < 2 || out.dtype() != crate::te::DType::F32 {
        return generic(out, threads);
    }
    let mut s = create_schedule(&[out.clone()])?;
    // A fused group's anchor (the normalized value) goes into its epilogue's loop.
    inline_injective(&mut s, out)?;
    let row = rows(&mut s, out, threads)?;
    for st in stats {
        s.compute_at(*st, out, &row)?;
        stat_in_lanes(&mut s, st, row_lanes(shape[shape.len() - 1]))?;
    }
    Ok(s)
}

/// `out`'s outer axes fused into one axis of rows (parallel on `threads > 1` threads) and
/// its last axis vectorized where the vector width divides it; returns the rows' axis.
fn rows(s: &mut Schedule, out: &Tensor, threads: usize) -> Result<crate::schedule::Axis> {
    let shape = const_shape(out);
    let r = shape.len();
    let axes = s.axes(out)?;
    let row = if r > 2 {
        s.fuse(out, &axes[..r - 1].iter().collect::<Vec<_>>())?
    } else {
        axes[0].clone()
    };
    if threads > 1 {
        s.parallel(out, &row)?;
    }
    let l = lanes(out);
    if shape[r - 1].is_multiple_of(l) {
        let (_, vi) = s.split(out, &axes[r - 1], l as i64)?;
        s.vectorize(out, &vi)?;
    }
    Ok(row)
}

/// The row reduction `st` (already computed per row) through `lanes` partial results in
/// vectors (`rfactor`: independent chains), then combined.
fn stat_in_lanes(s: &mut Schedule, st: &str, lanes: i64) -> Result<()> {
    let k = s.reduce_axes(st)?.remove(0);
    let (_, ki) = s.split(st, &k, lanes)?;
    let data = s.axes(st)?;
    let rf = s.rfactor(st, &ki, data.len())?;
    let rfa = s.axes(&rf)?;
    let lane = rfa[rfa.len() - 1].clone();
    let ko = s.reduce_axes(&rf)?.remove(0);
    s.reorder(&rf, &[&ko, &lane])?;
    s.vectorize(&rf, &lane)?;
    let at = s.axes(st)?;
    s.compute_at(&rf, st, &at[at.len() - 1])
}

/// A softmax along rows of f32 (stages `max`, `shift`, `exp`, `den` and the output, or
/// an elementwise epilogue reading it; `ops::softmax`): per row (the outer axes fused,
/// parallel on `threads > 1` threads), each pass over the row by an intrinsic, as
/// `schedules::softmax_rows_tensorized`: the maximum by `reduce_max_f32`, the shift
/// inlined into the exponentials by `exp_sub_f32`, their sum by `reduce_sum_f32`; the
/// output vectorized. Where the row is not the kernel's input as it is stored (a
/// computed stage, which the intrinsics' declarations would not match), the maximum is
/// taken in `row_lanes` partial maxima (`rfactor`, vectors), the shift vectorized and
/// the exponentials by `exp_f32`.
fn softmax_rows(out: &Tensor, threads: usize) -> Result<Schedule> {
    let n = const_shape(out).last().copied().unwrap_or(1);
    let mut s = create_schedule(&[out.clone()])?;
    // A fused group's anchor (the normalized value) goes into its epilogue's loop.
    for name in stage_names(&s) {
        if !["max", "shift", "exp", "den"].contains(&name.as_str()) && name != out.op.name {
            s.compute_inline(name.as_str())?;
        }
    }
    let stored = crate::schedules::find_stage(out, "max")
        .is_some_and(|m| m.op.input_tensors().iter().all(|t| t.op.is_placeholder()));
    let row = rows(&mut s, out, threads)?;
    if stored {
        s.compute_inline("shift")?;
        for st in ["den", "exp", "max"] {
            s.compute_at(st, out, &row)?;
        }
        crate::schedules::softmax::row_passes(&mut s, "max", "exp", "den", n as i64)?;
        return Ok(s);
    }
    for st in ["den", "exp", "shift", "max"] {
        s.compute_at(st, out, &row)?;
    }
    stat_in_lanes(&mut s, "max", row_lanes(n))?;
    let sa = s.axes("shift")?;
    if n.is_multiple_of(4) {
        let (_, vi) = s.split("shift", &sa[sa.len() - 1], 4)?;
        s.vectorize("shift", &vi)?;
    }
    let ea = s.axes("exp")?;
    s.tensorize(
        "exp",
        &ea[ea.len() - 1],
        &crate::intrinsics::exp_f32(n as i64)?,
    )?;
    let dk = s.reduce_axes("den")?.remove(0);
    s.tensorize("den", &dk, &crate::intrinsics::reduce_sum_f32(n as i64)?)?;
    Ok(s)
}

/// The operator a fused group is anchored on, or `op` itself.
fn anchor(op: &Op) -> &Op {
    match op {
        Op::Fused(f) => anchor(&f.anchor),
        op => op,
    }
}

/// The configuration of the tunable template [`default_schedule`] uses for `op` computing
/// `out` on `threads` threads, with its default knobs; `None` when that schedule has no
/// knobs to tune (pooling, elementwise, dense with fewer than 4 rows, matmul and dense
/// on the micro-kernel (`gemm_tensorized`), other dtypes than f32).
///
/// - conv2d with a Winograd weight: [`WinogradConfig::of`];
/// - conv2d (alone or anchoring a fused group) with one group and output channels a
///   multiple of 16: [`ConvConfig::for_shape`] — except pointwise ones (1x1, stride 1,
///   no padding: [`crate::schedules::conv2d_pointwise_cpu`]) and other 1x1 ones of at
///   most `BLOCKED_MAX_CHANNELS` input channels (the register-blocked schedule);
/// - matmul, and dense with 4 rows or more, that do not run on the micro-kernel: the
///   register-blocked product ([`MatmulConfig`]: `mr` up to 4 rows, `nr` 8 columns, 4
///   below 8).
pub fn default_config(op: &Op, out: &Tensor, threads: usize) -> Option<TunedConfig> {
    let threads = effective_threads(out, threads);
    if out.dtype() != crate::te::DType::F32 {
        return None;
    }
    let sh = const_shape(out);
    match anchor(op) {
        Op::Conv2d(a) if a.weight_layout == WeightLayout::Winograd23 => {
            WinogradConfig::of(out, threads)
                .ok()
                .map(TunedConfig::Winograd)
        }
        Op::Conv2d(a) => {
            let shape = ConvShape::of(out).ok()?;
            let kernel = [
                shape.out_channels as usize,
                shape.in_channels as usize,
                shape.kh as usize,
                shape.kw as usize,
            ];
            if a.weight_layout == WeightLayout::Oihw && prefers_pointwise(a, &kernel, &sh) {
                return None; // conv2d_pointwise_cpu
            }
            if shape.kh * shape.kw == 1 && shape.in_channels <= BLOCKED_MAX_CHANNELS {
                return None; // conv2d_nchw_cpu_blocked
            }
            Some(TunedConfig::Conv2d(ConvConfig::for_shape(&shape, threads)))
        }
        Op::MatMul | Op::Dense if gemm_tensorized_applies(op, out) => None,
        Op::MatMul if is_reduction_tensor(out) => {
            mm_config(sh[0], sh[1], default_k_unroll(out), threads).map(TunedConfig::Matmul)
        }
        Op::MatMul | Op::Dense => {
            let mm = main_reduction(out)?;
            if sh[0] < GEMV_ROWS && input_named(&mm, "wt").is_some() {
                return None; // dense_rows
            }
            mm_config(sh[0], sh[1], default_k_unroll(&mm), threads).map(TunedConfig::Matmul)
        }
        _ => None,
    }
}

/// The threads a kernel computing `out` runs on when the build asks for `threads`: 1 below
/// [`PARALLEL_MIN_WORK`].
pub fn effective_threads(out: &Tensor, threads: usize) -> usize {
    if work(out) < PARALLEL_MIN_WORK {
        1
    } else {
        threads
    }
}

/// The schedule template of `op` (as [`default_schedule`] picks it) with the knobs of
/// `cfg`, its `threads` replaced by [`effective_threads`]. A typed error when `cfg` is
/// not a configuration of that template (a conv2d configuration for a dense node) or
/// its knobs do not fit the shapes.
pub fn tuned_schedule(
    op: &Op,
    out: &Tensor,
    threads: usize,
    cfg: &TunedConfig,
) -> Result<Schedule> {
    let threads = effective_threads(out, threads);
    match (anchor(op), cfg) {
        (Op::Conv2d(_), TunedConfig::Winograd(c)) => {
            crate::schedules::conv2d_winograd_cpu_with(out, WinogradConfig { threads, ..*c })
        }
        (Op::Conv2d(_), TunedConfig::Conv2d(c)) => {
            crate::schedules::conv2d_nchw_cpu_tensorized_with(out, ConvConfig { threads, ..*c })
        }
        (Op::MatMul, TunedConfig::Matmul(c)) if is_reduction_tensor(out) => {
            matmul_cpu_with(out, MatmulConfig { threads, ..*c })
        }
        (Op::MatMul | Op::Dense, TunedConfig::Matmul(c)) => {
            dense_with(out, MatmulConfig { threads, ..*c })
        }
        _ => Err(crate::error::Error::Tuning(format!(
            "{}: a tuned {} configuration does not apply to a {} node",
            out.name(),
            cfg.template(),
            op.kind_name()
        ))),
    }
}

/// Kernels with less work than this (output elements times the main reduction's length,
/// an activation's elements weighing more) run on one thread: waking the pool costs more
/// than it saves (a 2-thread MLP of small layers went from 6 to 100 µs).
pub const PARALLEL_MIN_WORK: i64 = 1 << 17;

/// What one element of an activation stage (sigmoid, tanh, GELU...: an exponential or a
/// polynomial, a division) counts for in [`work`], against 1 for a plain elementwise
/// operation: EfficientNet-B0's SiLU over 7 x 7 x 1152 (56448 elements) runs on the
/// pool's threads.
const ACTIVATION_WORK: i64 = 8;

/// The work of computing `out`: the most, over its stages (however deep: Winograd's
/// products sit under the output transform), of a stage's elements times its reduction's
/// length (1 without one), or times [`ACTIVATION_WORK`] for an activation.
fn work(out: &Tensor) -> i64 {
    let elements = |t: &Tensor| -> i64 { const_shape(t).iter().map(|&d| d as i64).product() };
    crate::schedules::stages_of(out)
        .iter()
        .map(|t| {
            let reduction: i64 =
                t.op.reduce_axis()
                    .iter()
                    .map(|a| a.extent.as_int().unwrap_or(1))
                    .product();
            let per = if crate::schedules::activation_of(t).is_some() {
                ACTIVATION_WORK
            } else {
                1
            };
            elements(t).saturating_mul(reduction).saturating_mul(per)
        })
        .max()
        .unwrap_or(0)
}

fn is_reduction_tensor(t: &Tensor) -> bool {
    !t.op.reduce_axis().is_empty()
}

/// The reduction `out` reads (a fused group's anchor, dense's `mm`), or `out` itself.
fn main_reduction(out: &Tensor) -> Option<Tensor> {
    if is_reduction_tensor(out) {
        return Some(out.clone());
    }
    out.op.input_tensors().into_iter().find(is_reduction_tensor)
}

/// The simplest schedule: every stage at root, the padding inlined, nothing parallel or
/// vectorized (a second opinion on the default schedules).
pub fn naive_schedule(out: &Tensor) -> Result<Schedule> {
    let mut s = create_schedule(&[out.clone()])?;
    inline_pads(&mut s)?;
    Ok(s)
}

fn inline_pads(s: &mut Schedule) -> Result<()> {
    for n in stage_names(s) {
        if n == "pad" {
            s.compute_inline("pad")?;
        }
    }
    Ok(())
}

/// Inline every stage that is neither a reduction nor the output (padding, a fused
/// group's injective anchor, dense's weight transpose).
fn inline_injective(s: &mut Schedule, out: &Tensor) -> Result<()> {
    for n in stage_names(s) {
        if n != out.op.name && !is_reduction(s, &n)? {
            s.compute_inline(n.as_str())?;
        }
    }
    Ok(())
}

/// Fuse the outer axes and parallelize; vectorize the innermost axis when its extent is a
/// multiple of the vector width.
fn injective(s: &mut Schedule, t: &Tensor, threads: usize) -> Result<()> {
    let shape = const_shape(t);
    let axes = s.axes(t)?;
    let r = axes.len();
    if r == 0 {
        return Ok(());
    }
    let l = lanes(t);
    if shape[r - 1].is_multiple_of(l) && shape[r - 1] >= l {
        let (_, vi) = s.split(t, &axes[r - 1], l as i64)?;
        s.vectorize(t, &vi)?;
    }
    if threads > 1 && r >= 2 {
        let outer: Vec<&_> = axes[..r - 1].iter().collect();
        let f = s.fuse(t, &outer)?;
        s.parallel(t, &f)?;
    }
    Ok(())
}

/// Parallelize the fused outer data-parallel axes (all but the innermost) of a reduction.
fn reduction(s: &mut Schedule, t: &str, threads: usize) -> Result<()> {
    if threads <= 1 {
        return Ok(());
    }
    let axes = s.axes(t)?;
    let r = axes.len();
    if r == 0 {
        return Ok(());
    }
    let n = if r >= 2 { r - 1 } else { 1 };
    let outer: Vec<&_> = axes[..n].iter().collect();
    let f = s.fuse(t, &outer)?;
    s.parallel(t, &f)
}

fn generic(out: &Tensor, threads: usize) -> Result<Schedule> {
    if let Ok(s) = crate::schedules::activation_cpu(out, threads) {
        return Ok(s);
    }
    let mut s = create_schedule(&[out.clone()])?;
    inline_injective(&mut s, out)?;
    for n in stage_names(&s) {
        if is_reduction(&s, &n)? {
            reduction(&mut s, &n, threads)?;
        } else if n == out.op.name {
            injective(&mut s, out, threads)?;
        }
    }
    Ok(s)
}

/// The register-blocked matmul/dense configuration of an `m x n` result, its reduction
/// unrolled by `k_unroll` (`None` below 4 columns).
pub(crate) fn mm_config(m: usize, n: usize, k_unroll: i64, threads: usize) -> Option<MatmulConfig> {
    if n < 4 {
        return None;
    }
    Some(MatmulConfig {
        mr: m.clamp(1, 4) as i64,
        nr: if n >= 8 { 8 } else { 4 },
        pack_b: true,
        k_unroll,
        threads,
        ..MatmulConfig::default()
    })
}

/// The input tensor of `t`'s computation named `name`.
fn input_named(t: &Tensor, name: &str) -> Option<Tensor> {
    t.op.input_tensors().into_iter().find(|x| x.op.name == name)
}

/// Dense layers with fewer rows than this (a batch of 1 to 3) are matrix-vector products.
pub(crate) const GEMV_ROWS: usize = 4;

/// Dense with few rows (`x` a handful of vectors): each output element is a dot product of
/// a row of `x` with a row of the weight `w [N, K]`, both contiguous, so the weight's
/// transpose is inlined (read in place, not copied at each run) and the reduction is
/// tensorized by [`dot_f32`](crate::intrinsics::dot_f32); the output columns in parallel
/// chunks. `None` when the computation is not of that form.
fn dense_rows(out: &Tensor, threads: usize) -> Result<Option<Schedule>> {
    let Some(mm) = main_reduction(out) else {
        return Ok(None);
    };
    let Some(wt) = input_named(&mm, "wt") else {
        return Ok(None);
    };
    let n = const_shape(&mm)[1];
    let mut s = create_schedule(&[out.clone()])?;
    s.compute_inline(&wt)?;
    let k = s.reduce_axes(&mm)?.remove(0);
    let kext = mm.op.reduce_axis()[0].extent.as_int().unwrap_or(0);
    let [_, j] = s.axes2(&mm)?;
    if threads > 1 {
        let chunk = n.div_ceil(threads * 4).max(1);
        let (jo, _) = s.split(&mm, &j, chunk as i64)?;
        s.parallel(&mm, &jo)?;
    }
    s.tensorize(&mm, &k, &crate::intrinsics::dot_f32(kext)?)?;
    epilogue(&mut s, out, &mm, threads)?;
    Ok(Some(s))
}

/// When `out` is not the product `mm` itself (a bias, a fused epilogue): its elementwise
/// stages other than `mm` and the weight panel `wt` inlined into `out`, which is
/// vectorized and parallelized at root.
fn epilogue(s: &mut Schedule, out: &Tensor, mm: &Tensor, threads: usize) -> Result<()> {
    if mm.same_as(out) {
        return Ok(());
    }
    inline_epilogue(s, out, mm)?;
    injective(s, out, threads)
}

/// Inline every non-reduction stage between the product `mm` and `out` (dense's weight
/// transpose `wt` excepted) into its reader.
fn inline_epilogue(s: &mut Schedule, out: &Tensor, mm: &Tensor) -> Result<()> {
    for n in stage_names(s) {
        if n != out.op.name && n != mm.op.name && !is_reduction(s, &n)? && n != "wt" {
            s.compute_inline(n.as_str())?;
        }
    }
    Ok(())
}

/// Matmul and dense layers (with their fused epilogue) of at least this many rows run on
/// the `gemm_f32_panels` macro-kernel where the columns allow it ([`gemm_takes`]).
pub(crate) const GEMM_TENSORIZED_ROWS: usize = 16;

/// Whether the graph runtime computes an f32 product of `m x k` by `k x n` on the
/// `gemm_f32_panels` macro-kernel: a SIMD micro-kernel on this CPU (AVX-512F or AVX2+FMA; the
/// portable one is slower than the register-blocked loops), at least
/// `GEMM_TENSORIZED_ROWS` rows, `n` a multiple of 16, and a reduction slice (`kc`, a
/// divisor of `k`) of at least 32 steps or all of `k` (a prime `k` over 256 would call
/// the kernel once per step, about 10x slower).
pub(crate) fn gemm_takes(m: i64, n: i64, k: i64) -> bool {
    gemm_blocking(m, n, k, 1).is_some()
}

/// The blocking on `threads` threads of a product that [`gemm_takes`].
fn gemm_blocking(m: i64, n: i64, k: i64, threads: usize) -> Option<GemmBlocking> {
    let simd = crate::intrinsics::has_avx512f() || crate::intrinsics::has_avx2_fma();
    if !simd || m < GEMM_TENSORIZED_ROWS as i64 {
        return None;
    }
    GemmBlocking::for_shape(m, n, k, threads).filter(|g| g.kc >= k.min(32))
}

/// The product stage of a matmul or dense `op` (with its fused epilogue) computing `out`,
/// and its sizes `(m, n, k)`, where all are f32 and constant.
fn gemm_operands(op: &Op, out: &Tensor) -> Option<(Tensor, i64, i64, i64)> {
    let f32 = crate::te::DType::F32;
    if !matches!(anchor(op), Op::MatMul | Op::Dense) || out.dtype() != f32 {
        return None;
    }
    let mm = main_reduction(out)?;
    let dims: Vec<i64> = mm
        .shape()
        .iter()
        .map(|d| d.as_int())
        .collect::<Option<_>>()?;
    let k = match mm.op.reduce_axis().as_slice() {
        [r] => r.extent.as_int()?,
        _ => return None,
    };
    match dims.as_slice() {
        &[m, n] if mm.dtype() == f32 => Some((mm, m, n, k)),
        _ => None,
    }
}

/// Whether `op` computing `out` runs on the micro-kernel (`gemm_tensorized`).
pub(crate) fn gemm_tensorized_applies(op: &Op, out: &Tensor) -> bool {
    gemm_operands(op, out).is_some_and(|(_, m, n, k)| gemm_takes(m, n, k))
}

/// Matmul or dense (`op`, with its fused epilogue) computing `out` on the
/// `gemm_f32_panels` macro-kernel where [`gemm_takes`] its sizes, cache-blocked as
/// [`crate::schedules::matmul_cpu_tensorized`] does (dense's weight transpose inlined
/// into the packing of `B`), the epilogue inlined into one vectorized loop over the
/// output. `Ok(None)` where it does not apply (the register-blocked template runs).
fn gemm_tensorized(op: &Op, out: &Tensor, threads: usize) -> Result<Option<Schedule>> {
    let threads = effective_threads(out, threads);
    let Some((mm, g)) = gemm_operands(op, out)
        .and_then(|(mm, m, n, k)| Some((mm, gemm_blocking(m, n, k, threads)?)))
    else {
        return Ok(None);
    };
    let wt = input_named(&mm, "wt");
    let mut s = create_schedule(&[out.clone()])?;
    // The epilogue inlined into `out` before the blocking adds its packing stages.
    inline_epilogue(&mut s, out, &mm)?;
    crate::schedules::gemm_blis(&mut s, &mm, g, wt.is_some())?;
    if let Some(wt) = &wt {
        s.compute_inline(wt)?;
    }
    if !mm.same_as(out) {
        injective(&mut s, out, threads)?;
    }
    Ok(Some(s))
}

/// Dense, dense with a bias and matmul or dense followed by a fused epilogue: the product
/// (`out` itself, or the reduction `out` reads) register-blocked, the weight transpose `wt`
/// (dense) computed at the column block, the epilogue vectorized at root. The knobs of
/// `cfg` are `mr`, `nr`, `k_unroll` and `threads`; `pack_b` changes nothing (the weight
/// transpose computed at each column block is the panel packing).
fn dense_with(out: &Tensor, cfg: MatmulConfig) -> Result<Schedule> {
    let threads = cfg.threads;
    let Some(mm) = main_reduction(out) else {
        return generic(out, threads);
    };
    let wt = input_named(&mm, "wt");
    let mut s = create_schedule(&[out.clone()])?;
    let cl = s.cache_write(&mm, "local")?;
    let [i, j] = s.axes2(&mm)?;
    let (io, jo, ii, ji) = s.tile(&mm, &i, &j, cfg.mr, cfg.nr)?;
    s.reorder(&mm, &[&jo, &io, &ii, &ji])?;
    if threads > 1 {
        s.parallel(&mm, &jo)?;
    }
    s.compute_at(&cl, &mm, &io)?;
    if let Some(wt) = &wt {
        s.compute_at(wt, &mm, &jo)?;
    }
    crate::schedules::register_tile(&mut s, &cl, cfg.k_unroll)?;
    s.vectorize(&mm, &ji)?;
    s.unroll(&mm, &ii)?;
    epilogue(&mut s, out, &mm, threads)?;
    Ok(s)
}

/// The convolution schedule for any group count, also pooling's (any windowed reduction
/// over an NCHW input): the padding materialized, output width in 128-bit vectors, an
/// accumulator tile per width block with the reduction outside the lanes, batch and
/// channels parallel.
pub fn conv2d_loops(out: &Tensor, threads: usize) -> Result<Schedule> {
    let sh = const_shape(out);
    let l = lanes(out);
    let Some(conv) = main_reduction(out) else {
        return generic(out, threads);
    };
    let mut s = create_schedule(&[out.clone()])?;
    if stage_names(&s).iter().any(|n| n == "pad") {
        // Materialized at root (a copy of the input): the convolution's loads are then
        // unguarded and its inner loop vectorizes.
        let pa = s.axes("pad")?;
        let f = s.fuse("pad", &[&pa[0], &pa[1]])?;
        if threads > 1 {
            s.parallel("pad", &f)?;
        }
    }
    let ow = sh[3];
    let cl = crate::schedules::accumulator(&mut s, out, &conv)?;
    let [n, o, y, x] = {
        let a = s.axes(out)?;
        [a[0].clone(), a[1].clone(), a[2].clone(), a[3].clone()]
    };
    let no = s.fuse(out, &[&n, &o])?;
    if threads > 1 {
        s.parallel(out, &no)?;
    }
    let vw = if ow >= 2 * l && ow.is_multiple_of(2 * l) {
        2 * l
    } else if ow >= l {
        l
    } else {
        0
    };
    let attach = if vw > 0 {
        let (xo, xi) = s.split(out, &x, vw as i64)?;
        if vw == l {
            s.vectorize(out, &xi)?;
        } else {
            let (xio, xii) = s.split(out, &xi, l as i64)?;
            s.unroll(out, &xio)?;
            s.vectorize(out, &xii)?;
        }
        xo
    } else {
        y
    };
    s.compute_at(&cl, out, &attach)?;
    let ca = s.axes(&cl)?;
    let r = s.reduce_axes(&cl)?;
    let cx = ca[3].clone();
    let mut order: Vec<&crate::schedule::Axis> = r.iter().collect();
    let split;
    if vw > 0 {
        split = s.split(&cl, &cx, l as i64)?;
        order.extend([&split.0, &split.1]);
        s.reorder(&cl, &order)?;
        s.unroll(&cl, &split.0)?;
        s.vectorize(&cl, &split.1)?;
    } else {
        order.push(&cx);
        s.reorder(&cl, &order)?;
    }
    Ok(s)
}

/// Threads per block of the CUDA schedules.
const CUDA_THREADS: i64 = 256;

/// The default CUDA schedule of the computation `out` of one graph node: one kernel.
///
/// - matmul, and dense without a bias: the library's SIMT GEMM
///   ([`crate::schedules::matmul_cuda_with`]; 128x128 tiles for large operands, 32x32
///   otherwise), the weight transpose of dense read in place;
/// - everything else: the intermediate stages that are not reductions (padding, the
///   weight transpose) inlined; the output's elements spread over blocks of 256 threads,
///   one element per thread with its reduction in the thread, except softmax and
///   layer_norm, whose normalized axis stays in the thread (one row per thread) with the
///   row's statistics (`max`/`den`, `mean`/`var`) computed there first; the other
///   intermediate reductions (dense's product before its bias) computed per element.
///
/// Correct for every operator; only the GEMMs are tuned. Returns the schedule and the
/// output tensor it computes (for dense, an equivalent computation that reads the weight
/// directly; same inputs).
pub fn cuda_schedule(op: &Op, out: &Tensor) -> Result<(Schedule, Tensor)> {
    if let Op::Fused(f) = op {
        return cuda_schedule(&f.anchor, out);
    }
    let gemm = match op {
        Op::MatMul | Op::Dense => is_reduction_tensor(out),
        _ => false,
    };
    if gemm && out.dtype() == crate::te::DType::F32 {
        let sh = const_shape(out);
        let cfg = if sh[0] >= 128 && sh[1] >= 128 {
            crate::schedules::CudaMatmulConfig::default()
        } else {
            crate::schedules::CudaMatmulConfig {
                bm: 32,
                bn: 32,
                bk: 8,
                tm: 4,
                tn: 4,
                double_buffer: true,
            }
        };
        let plain = out
            .op
            .input_tensors()
            .iter()
            .all(|t| matches!(t.op.kind, crate::te::OpKind::Placeholder { .. }));
        let out = if plain {
            out.clone()
        } else {
            dense_reading_weights(out)?
        };
        return Ok((crate::schedules::matmul_cuda_with(&out, cfg)?, out));
    }
    let mut s = create_schedule(&[out.clone()])?;
    let mut inner = vec![];
    for n in stage_names(&s) {
        if n == out.op.name {
            continue;
        }
        if is_reduction(&s, &n)? {
            inner.push(n);
        } else {
            s.compute_inline(n.as_str())?;
        }
    }
    let axes = s.axes(out)?;
    let serial = match op {
        Op::Softmax { axis } => Some(*axis),
        Op::LayerNorm { .. } => Some(axes.len() - 1),
        _ => None,
    };
    let par: Vec<&crate::schedule::Axis> = axes
        .iter()
        .enumerate()
        .filter(|(d, _)| Some(*d) != serial)
        .map(|(_, a)| a)
        .collect();
    if par.is_empty() {
        return Err(crate::error::Error::Target(format!(
            "{}: no axis to spread over GPU threads (a one-dimensional {} runs in one thread; give it a batch axis)",
            out.name(),
            op.kind_name()
        )));
    }
    let mut order = par.clone();
    if let Some(d) = serial {
        order.push(&axes[d]);
    }
    s.reorder(out, &order)?;
    let f = if par.len() > 1 {
        s.fuse(out, &par)?
    } else {
        par[0].clone()
    };
    let (bx, tx) = s.split(out, &f, CUDA_THREADS)?;
    s.bind(out, &bx, "blockIdx.x")?;
    s.bind(out, &tx, "threadIdx.x")?;
    // Consumers first: a stage can go inside `out` once its readers are there.
    for n in inner.iter().rev() {
        s.compute_at(n.as_str(), out, &tx)?;
    }
    Ok((s, out.clone()))
}

/// Dense without a bias reads its weight through the transpose stage `wt`; the GEMM
/// schedule wants the weight itself (`out[i, j] = sum_k x[i, k] * w[j, k]`).
fn dense_reading_weights(out: &Tensor) -> Result<Tensor> {
    use crate::te::{compute, reduce_axis, sum, ExprNode, OpKind};
    let ins = out.op.input_tensors();
    let x = ins
        .iter()
        .find(|t| matches!(t.op.kind, OpKind::Placeholder { .. }))
        .cloned();
    let wt = input_named(out, "wt");
    let w = wt
        .as_ref()
        .and_then(|t| t.op.input_tensors().into_iter().next());
    let (Some(x), Some(w)) = (x, w) else {
        return Err(crate::error::internal(
            format!(
                "dense {}: expected x · wt with wt = transpose(w)",
                out.name()
            ),
            "(graph operator)",
        ));
    };
    let OpKind::Compute { body, .. } = &out.op.kind else {
        unreachable!("a reduction is a compute")
    };
    let ExprNode::Reduce(r) = body[0].node() else {
        unreachable!("checked by the caller")
    };
    let k = reduce_axis(0, r.axis[0].extent.clone(), "k");
    Ok(compute(out.shape(), &out.op.name, |i| {
        sum(
            x.at(&[i[0].clone(), k.x()]) * w.at(&[i[1].clone(), k.x()]),
            &[k.clone()],
        )
    }))
}
