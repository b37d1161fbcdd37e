//! The CPU schedule of the Winograd F(2x2, 3x3) convolution
//! ([`conv2d_winograd`](crate::graph_runtime::ops::conv2d_winograd)): per row of tiles,
//! the input transform vectorized along the tiles, the 16 channel products on the
//! `gemm_f32` micro-kernel, then the output transform vectorized along the output
//! channels, so that the transformed tiles of a row stay in L2 between the three steps.

use super::conv2d::row_tiles;
use super::find_stage;
use crate::error::{Error, Result};
use crate::intrinsics::gemm_f32;
use crate::schedule::{create_schedule, Schedule};
use crate::te::Tensor;
use serde::{Deserialize, Serialize};

fn not_winograd(out: &Tensor, why: &str) -> Error {
    Error::InvalidExpr(format!("conv2d_winograd_cpu: {} {}", out.name(), why))
}

/// A constant size.
fn size(t: &Tensor, d: usize) -> Option<i64> {
    t.shape().get(d).and_then(|e| e.as_int())
}

/// Schedule `out`, the output of
/// [`conv2d_winograd`](crate::graph_runtime::ops::conv2d_winograd) or an elementwise
/// epilogue of it (bias, activation, residual sum: inlined into the output transform), on
/// `threads` threads:
///
/// - `pad` (when the input needs padding) computed whole first (batch and channels in
///   parallel);
/// - the output's loops `(n, y / 2)` fused and parallel: one row of 2x2 output blocks per
///   task, its 2x2 block unrolled, 4 output channels per vector;
/// - at each row ([`WinogradConfig::per_row`], the default from 7 tiles per row up when
///   there are at least as many rows of tiles as threads) or
///   for the whole image first: `wino.v` (input tiles transformed, 4 tiles per vector, the
///   16 elements of a tile unrolled so its 16 inputs are loaded once), and `wino.m` (for
///   each of the 16 products and block of 16 output channels, `gemm_f32(tiles, 16, kc)`
///   calls over slices of `kc` (at most 256) input channels, up to 30 tiles of a row as
///   the micro-kernel's rows; for the whole image, the (product, channel block) pairs in
///   parallel).
///
/// A typed error when `out` is not such a computation.
pub fn conv2d_winograd_cpu(out: &Tensor, threads: usize) -> Result<Schedule> {
    let parts = analyze(out)?;
    let cfg = WinogradConfig::for_shape(parts.tiles_per_row, parts.row_tasks, threads);
    schedule(out, parts, cfg)
}

/// Knobs of [`conv2d_winograd_cpu_with`] (what the autotuner searches).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WinogradConfig {
    /// Transform and multiply one row of tiles at a time inside the output's parallel
    /// loop (the row's tiles stay in L2); otherwise the whole image at root, each
    /// (product, channel block) weight panel serving every row of tiles (small images
    /// with many channels, whose transformed weights are larger than the tiles).
    pub per_row: bool,
    /// Threads of the parallel loops (1: serial).
    pub threads: usize,
}

impl WinogradConfig {
    /// The default configuration of the Winograd convolution `out` (or of the one an
    /// elementwise epilogue `out` reads); the same typed error as
    /// [`conv2d_winograd_cpu`] when `out` is not one.
    pub fn of(out: &Tensor, threads: usize) -> Result<WinogradConfig> {
        let parts = analyze(out)?;
        Ok(WinogradConfig::for_shape(
            parts.tiles_per_row,
            parts.row_tasks,
            threads,
        ))
    }

    /// The default for `tiles_per_row` tiles (of 2 outputs) along a row and `row_tasks`
    /// rows of tiles over the batch (the tasks of the per-row mode's parallel loop): per
    /// row from 7 tiles (a 14-wide output) up, unless there are fewer rows than threads
    /// (14x14 on 16 threads: 7 tasks would leave 9 threads idle, where the whole image
    /// has 16 products x the channel blocks to share out).
    pub fn for_shape(tiles_per_row: i64, row_tasks: i64, threads: usize) -> WinogradConfig {
        WinogradConfig {
            per_row: tiles_per_row >= 7 && row_tasks >= threads as i64,
            threads,
        }
    }
}

/// The stages of a Winograd convolution and its tiles per row.
struct Parts {
    /// The padding stage (absent when the input needs none).
    xp: Option<Tensor>,
    v: Tensor,
    m: Tensor,
    tiles_per_row: i64,
    /// Rows of tiles times the batch.
    row_tasks: i64,
    channels: i64,
}

fn analyze(out: &Tensor) -> Result<Parts> {
    let (Some(v), Some(m)) = (find_stage(out, "wino.v"), find_stage(out, "wino.m")) else {
        return Err(not_winograd(
            out,
            "is not a Winograd convolution (stages wino.v, wino.m) or an elementwise epilogue of one",
        ));
    };
    let xp = find_stage(out, "pad");
    let (Some(tw), Some(c), Some(o)) = (size(&m, 3), size(&v, 2), size(&m, 4)) else {
        return Err(not_winograd(out, "needs constant sizes"));
    };
    if out.shape().len() != 4 || size(out, 1) != Some(o) || o % 16 != 0 {
        return Err(not_winograd(
            out,
            "must be 4-d NCHW with the convolution's output channels, a multiple of 16",
        ));
    }
    let row_tasks = size(&v, 1).unwrap_or(1) * size(&v, 3).unwrap_or(1);
    Ok(Parts {
        xp,
        v,
        m,
        tiles_per_row: tw,
        row_tasks,
        channels: c,
    })
}

/// [`conv2d_winograd_cpu`] with explicit knobs.
pub fn conv2d_winograd_cpu_with(out: &Tensor, cfg: WinogradConfig) -> Result<Schedule> {
    schedule(out, analyze(out)?, cfg)
}

fn schedule(out: &Tensor, parts: Parts, cfg: WinogradConfig) -> Result<Schedule> {
    let Parts {
        xp,
        v,
        m,
        tiles_per_row: tw,
        channels: c,
        ..
    } = parts;
    let WinogradConfig { per_row, threads } = cfg;
    if threads < 1 {
        return Err(not_winograd(out, "needs threads >= 1"));
    }
    let mut s = create_schedule(&[out.clone()])?;
    if let Some(xp) = &xp {
        super::pad_at_root(&mut s, xp, threads)?;
    }
    // The output transform and an epilogue's elementwise stages, computed in `out`'s loops.
    let mut keep = vec![&v, &m, out];
    keep.extend(xp.as_ref());
    super::inline_all_but(&mut s, &keep)?;
    let a = s.axes(out)?;
    let (ty, yi) = s.split(out, &a[2], 2)?;
    let (tx, xi) = s.split(out, &a[3], 2)?;
    let (oo, oi) = s.split(out, &a[1], 4)?;
    s.reorder(out, &[&a[0], &ty, &oo, &tx, &yi, &xi, &oi])?;
    let row = s.fuse(out, &[&a[0], &ty])?;
    if threads > 1 {
        s.parallel(out, &row)?;
    }
    s.unroll(out, &yi)?;
    s.unroll(out, &xi)?;
    s.vectorize(out, &oi)?;
    if per_row {
        s.compute_at(&m, out, &row)?;
        s.compute_at(&v, out, &row)?;
    }

    // The 16 products: rows of the micro-kernel are the row's tiles (in row tiles of at
    // most 30), columns 16 output channels, the reduction slices of kc input channels.
    let ma = s.axes(&m)?;
    let rc = s.reduce_axes(&m)?.remove(0);
    let kc = super::divisors(c, 256).first().copied().unwrap_or(1);
    let mr = row_tiles(tw, 30).first().copied().unwrap_or(1);
    let (ob, o16) = s.split(&m, &ma[4], 16)?;
    let (rco, rci) = s.split(&m, &rc, kc)?;
    let (txo, txi) = s.split(&m, &ma[3], mr)?;
    if per_row {
        s.reorder(
            &m,
            &[&ma[0], &ma[1], &ma[2], &ob, &txo, &rco, &txi, &o16, &rci],
        )?;
    } else {
        // Each (product, channel block) panel of the weights serves every row of tiles.
        s.reorder(
            &m,
            &[&ma[0], &ob, &ma[1], &rco, &ma[2], &txo, &txi, &o16, &rci],
        )?;
        if threads > 1 {
            let f = s.fuse(&m, &[&ma[0], &ob])?;
            s.parallel(&m, &f)?;
        }
    }
    s.tensorize(&m, &txi, &gemm_f32(mr, 16, kc)?)?;

    // The input transform: 4 tiles per vector, the tile's 16 elements unrolled inside.
    let va = s.axes(&v)?;
    let (vxo, vxi) = s.split(&v, &va[4], 4)?;
    s.reorder(&v, &[&va[1], &va[2], &va[3], &vxo, &va[0], &vxi])?;
    if !per_row && threads > 1 {
        let f = s.fuse(&v, &[&va[1], &va[2]])?;
        s.parallel(&v, &f)?;
    }
    s.unroll(&v, &va[0])?;
    s.vectorize(&v, &vxi)?;
    Ok(s)
}
