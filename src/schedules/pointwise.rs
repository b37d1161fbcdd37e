//! The CPU schedule of a pointwise convolution (1x1 kernel, stride 1, no padding, one
//! group; NCHW, OIHW), MobileNet's expansion and projection layers: a matrix product
//! `W[O, C] x X[C, H*W]` on the `gemm_f32` micro-kernel with the output channels as the
//! tile's rows and the image's positions, fused across rows, as its 16 columns, one call
//! per block of the output (the host function walks the tiles). Both the
//! input (a row of `X`) and the output are then read and written as contiguous vectors
//! straight from the NCHW buffers: nothing is packed or transposed, and an image width
//! that 16 does not divide costs one partial tile per block of rows, not one per row.

use super::conv2d::{divisors, single_reduction};
use super::find_stage;
use crate::error::{Error, Result};
use crate::intrinsics::gemm_f32;
use crate::schedule::{create_schedule, Schedule};
use crate::te::{DType, Tensor};

fn not_eligible(out: &Tensor, why: String) -> Error {
    Error::InvalidExpr(format!("conv2d_pointwise_cpu: {} {}", out.name(), why))
}

/// Accumulator elements per block (`[channels][rows x width]`): 32 KiB of f32, about L1.
const BLOCK_ELEMENTS: i64 = 8192;

/// The blocking of [`conv2d_pointwise_cpu`] for a batch of `n` `o x c` weights over `h x
/// w` images on `threads` threads: image rows per block (the divisor of `h` whose block
/// of positions is nearest 128, the smaller on a tie), output channels per block (the
/// largest divisor of `o` whose accumulator fits [`BLOCK_ELEMENTS`] and, on several
/// threads, that leaves at least two blocks per thread where a divisor of 16 or more
/// does), input channels per micro-kernel call (the largest divisor of `c` up to 256).
fn blocking(n: i64, o: i64, c: i64, h: i64, w: i64, threads: usize) -> (i64, i64, i64) {
    let rows = divisors(h, h)
        .into_iter()
        .min_by_key(|&r| ((r * w - 128).abs(), r))
        .unwrap_or(1);
    let positions = rows * w;
    let fits: Vec<i64> = divisors(o, o)
        .into_iter()
        .filter(|&d| d * positions <= BLOCK_ELEMENTS)
        .collect();
    let tasks = |d: i64| n * (h / rows) * (o / d);
    let channels = fits
        .iter()
        .copied()
        .find(|&d| threads <= 1 || (tasks(d) >= 2 * threads as i64 && d >= 16))
        .or_else(|| fits.first().copied())
        .unwrap_or(1);
    let kc = divisors(c, 256).first().copied().unwrap_or(1);
    (rows, channels, kc)
}

/// The pointwise schedule of `out`: a 2-D NCHW convolution with a 1x1 kernel, stride 1,
/// no padding and one group (its input `[N, C, H, W]`, its weight `[O, C, 1, 1]`), or an
/// elementwise epilogue of one (a fused conv + bias + relu6, a residual sum), f32.
///
/// - the output in blocks of image rows (a divisor of the height, about 128 positions)
///   by output channels (a divisor of the channels; the block's accumulator about 32
///   KiB, two blocks per thread or more where the channels allow); (batch, row block,
///   channel block) fused and parallel on `threads > 1` threads;
/// - per block, an accumulator `[channels][rows][width]` (the convolution itself under an
///   epilogue, else a `local` cache of `out`) computed by one `gemm_f32(channels, rows *
///   width, kc)` call per reduction slice: its rows and columns fused into positions; the
///   host function runs register tiles of 16 positions (a partial last tile) by 6
///   channels (a partial last tile), each tile's 16 positions a contiguous run of the
///   input's channel rows; the reduction (input channels and the 1x1 window fused) whole
///   in the call where it has at most 256 channels (each tile computed in registers,
///   never zeroed or reloaded), else in slices of `kc` accumulated;
/// - the epilogue applied as the block is stored, 4 positions to a vector.
///
/// A typed error when `out` does not have that form (a larger kernel, a stride, padding,
/// groups, a packed weight): use [`conv2d_nchw_cpu_tensorized`](super::conv2d_nchw_cpu_tensorized)
/// or [`conv2d_nchw_cpu_blocked`](super::conv2d_nchw_cpu_blocked) then.
pub fn conv2d_pointwise_cpu(out: &Tensor, threads: usize) -> Result<Schedule> {
    let conv = &single_reduction(out).map_err(|m| not_eligible(out, m))?;
    if out.dtype() != DType::F32 {
        return Err(not_eligible(out, format!("is {}, not f32", out.dtype())));
    }
    let consts =
        |t: &Tensor| -> Option<Vec<i64>> { t.shape().iter().map(|d| d.as_int()).collect() };
    let shape = consts(conv).filter(|s| s.len() == 4);
    let red: Vec<Option<i64>> = conv
        .op
        .reduce_axis()
        .iter()
        .map(|a| a.extent.as_int())
        .collect();
    let inputs = conv.op.input_tensors();
    let (Some(shape), [Some(c), Some(1), Some(1)], [data, weight]) =
        (shape, red.as_slice(), inputs.as_slice())
    else {
        return Err(not_eligible(
            out,
            "is not a 2-D NCHW convolution with a 1x1 kernel over constant sizes".into(),
        ));
    };
    let (n, o, h, w) = (shape[0], shape[1], shape[2], shape[3]);
    let ds = consts(data).unwrap_or_default();
    if ds.len() == 4 && ds[1] != *c {
        return Err(not_eligible(
            out,
            format!(
                "reads {} input channels in groups of {}: it takes one group only",
                ds[1], c
            ),
        ));
    }
    if find_stage(conv, "pad").is_some() || ds != [n, *c, h, w] {
        return Err(not_eligible(
            out,
            format!(
                "must read its input as [{}, {}, {}, {}] unpadded and at stride 1 (pointwise)",
                n, c, h, w
            ),
        ));
    }
    if consts(weight) != Some(vec![o, *c, 1, 1]) {
        return Err(not_eligible(
            out,
            format!(
                "must read an OIHW weight of shape [{}, {}, 1, 1] (not a packed layout)",
                o, c
            ),
        ));
    }
    let (rows, channels, kc) = blocking(n, o, *c, h, w, threads);
    let mut s = create_schedule(&[out.clone()])?;
    super::inline_all_but(&mut s, &[out, conv])?;
    let acc = super::accumulator(&mut s, out, conv)?;
    let [bn, bo, by, bx] = {
        let a = s.axes(out)?;
        [a[0].clone(), a[1].clone(), a[2].clone(), a[3].clone()]
    };
    let (yo, yi) = s.split(out, &by, rows)?;
    let (oo, oi) = s.split(out, &bo, channels)?;
    s.reorder(out, &[&bn, &yo, &oo, &oi, &yi, &bx])?;
    let tasks = s.fuse(out, &[&bn, &yo, &oo])?;
    if threads > 1 {
        s.parallel(out, &tasks)?;
    }
    // The epilogue: 4 positions to a vector (a row's last 1 to 3 scalar).
    let (_, xi) = s.split(out, &bx, 4)?;
    s.vectorize(out, &xi)?;
    s.compute_at(&acc, out, &tasks)?;
    let a = s.axes(&acc)?;
    let r = s.reduce_axes(&acc)?;
    let p = s.fuse(&acc, &[&a[2], &a[3]])?;
    // The reduction (channels, then the 1x1 window) as one loop.
    let k = s.fuse(&acc, &[&r[0], &r[1], &r[2]])?;
    // One call per block: the micro-kernel's host function walks its register tiles
    // (16 positions by 6 channels, partial ones at the edges) without a call per tile.
    if kc < *c {
        let (ko, ki) = s.split(&acc, &k, kc)?;
        s.reorder(&acc, &[&a[0], &ko, &a[1], &p, &ki])?;
    } else {
        s.reorder(&acc, &[&a[0], &a[1], &p, &k])?;
    }
    s.tensorize(&acc, &a[1], &gemm_f32(channels, rows * w, kc)?)?;
    Ok(s)
}
