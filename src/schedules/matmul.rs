//! The CPU matmul schedule: a register-blocked micro-kernel (TVM's "blocking" schedule
//! with a local accumulator that the CPU backend keeps in registers), vectorized along `j`,
//! unrolled over the register tile, with `B`'s column panel packed contiguously.

use crate::error::Result;
use crate::schedule::{create_schedule, Schedule};
use crate::te::Tensor;

/// Knobs of [`matmul_cpu_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatmulConfig {
    /// Rows of the register tile.
    pub mr: i64,
    /// Columns of the register tile (a multiple of 4: whole f32x4 vectors).
    pub nr: i64,
    /// Copy the `K x nr` panel of `B` that one column block reads into a contiguous buffer.
    pub pack_b: bool,
    /// Unroll the reduction by this factor (1: no unrolling).
    pub k_unroll: i64,
    /// Parallelize the column blocks when above 1.
    pub threads: usize,
}

impl Default for MatmulConfig {
    fn default() -> Self {
        MatmulConfig {
            mr: 4,
            nr: 8,
            pack_b: true,
            k_unroll: 1,
            threads: 1,
        }
    }
}

/// The default CPU schedule of `c = sum_k a[i, k] * b[k, j]` (see [`matmul_cpu_with`]).
pub fn matmul_cpu(c: &Tensor, threads: usize) -> Result<Schedule> {
    matmul_cpu_with(
        c,
        MatmulConfig {
            threads,
            ..MatmulConfig::default()
        },
    )
}

/// Schedule `c = sum_k a[i, k] * b[k, j]` for the CPU.
///
/// Loop order: `j.outer, i.outer, k (split by k_unroll, the inner part unrolled),
/// i.inner (unrolled), j.inner (vectorized)`; the
/// `mr x nr` block of `C` accumulates in `C.local`, computed at `i.outer`; the packed
/// panel `B.global` is computed at `j.outer`.
pub fn matmul_cpu_with(c: &Tensor, cfg: MatmulConfig) -> Result<Schedule> {
    let mut s = create_schedule(&[c.clone()])?;
    let cl = s.cache_write(c, "local")?;
    let bp = if cfg.pack_b {
        let b =
            c.op.input_tensors()
                .into_iter()
                .nth(1)
                .expect("matmul reads two tensors");
        Some(s.cache_read(&b, "global", &[&cl])?)
    } else {
        None
    };
    let [i, j] = s.axes2(c)?;
    let (io, jo, ii, ji) = s.tile(c, &i, &j, cfg.mr, cfg.nr)?;
    s.reorder(c, &[&jo, &io, &ii, &ji])?;
    if cfg.threads > 1 {
        s.parallel(c, &jo)?;
    }
    s.compute_at(&cl, c, &io)?;
    if let Some(bp) = &bp {
        s.compute_at(bp, c, &jo)?;
    }
    let [ci, cj] = s.axes2(&cl)?;
    let k = s.reduce_axes(&cl)?.remove(0);
    if cfg.k_unroll > 1 {
        let (ko, ki) = s.split(&cl, &k, cfg.k_unroll)?;
        s.reorder(&cl, &[&ko, &ki, &ci, &cj])?;
        s.unroll(&cl, &ki)?;
    } else {
        s.reorder(&cl, &[&k, &ci, &cj])?;
    }
    s.unroll(&cl, &ci)?;
    s.vectorize(&cl, &cj)?;
    s.vectorize(c, &ji)?;
    s.unroll(c, &ii)?;
    Ok(s)
}

/// The CPU matmul schedule with its register tile tensorized by
/// [`gemm_f32`](crate::intrinsics::gemm_f32) (an AVX2+FMA micro-kernel where the CPU has
/// it): `C` in `mr x 16` tiles (`mr` 6, or 4 when 6 does not divide the rows), the
/// reduction in steps of at most 256, and the `kc x 16` panel of `B` that a tile reads
/// packed contiguously at each (column block, reduction step). Needs the rows to be a
/// multiple of 4 and the columns of 16 (a typed error otherwise); the column blocks run on
/// `threads` threads.
pub fn matmul_cpu_tensorized(c: &Tensor, threads: usize) -> Result<Schedule> {
    let not = |m: String| crate::error::Error::InvalidExpr(format!("matmul_cpu_tensorized: {}", m));
    let dim = |d: usize| {
        c.shape()[d]
            .as_int()
            .ok_or_else(|| not(format!("{} needs constant sizes", c.name())))
    };
    let (m, n) = (dim(0)?, dim(1)?);
    let red = c.op.reduce_axis();
    let k = match red.as_slice() {
        [r] => r
            .extent
            .as_int()
            .ok_or_else(|| not("the reduction needs a constant size".into()))?,
        _ => return Err(not(format!("{} is not a one-axis reduction", c.name()))),
    };
    let mr = if m % 6 == 0 {
        6
    } else if m % 4 == 0 {
        4
    } else {
        return Err(not(format!("{} rows: need a multiple of 4 or 6", m)));
    };
    if n % 16 != 0 {
        return Err(not(format!("{} columns: need a multiple of 16", n)));
    }
    let kc = (1..=256.min(k)).rev().find(|d| k % d == 0).unwrap_or(1);
    let mut s = create_schedule(&[c.clone()])?;
    let b =
        c.op.input_tensors()
            .into_iter()
            .nth(1)
            .ok_or_else(|| not("it must read two tensors".into()))?;
    let bp = s.cache_read(&b, "global", &[c])?;
    let [i, j] = s.axes2(c)?;
    let kx = s.reduce_axes(c)?.remove(0);
    let (io, ii) = s.split(c, &i, mr)?;
    let (jo, ji) = s.split(c, &j, 16)?;
    let (ko, ki) = s.split(c, &kx, kc)?;
    s.reorder(c, &[&jo, &ko, &io, &ii, &ji, &ki])?;
    if threads > 1 {
        s.parallel(c, &jo)?;
    }
    s.compute_at(&bp, c, &ko)?;
    s.tensorize(c, &ii, &crate::intrinsics::gemm_f32(mr, 16, kc)?)?;
    Ok(s)
}
