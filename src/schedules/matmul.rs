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
