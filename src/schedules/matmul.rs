//! The CPU matmul schedule: a register-blocked micro-kernel (TVM's "blocking" plus a
//! local accumulator), vectorized along `j`, unrolled over the register tile.

use crate::error::Result;
use crate::schedule::{create_schedule, Schedule};
use crate::te::Tensor;

/// Rows of the register tile.
pub const MR: i64 = 4;
/// Columns of the register tile (two 4-wide f32 vectors).
pub const NR: i64 = 8;

/// Schedule `c = sum_k a[i, k] * b[k, j]` for the CPU. `threads > 1` parallelizes the
/// outer row blocks.
///
/// Loop order: `j.outer, i.outer, k, i.inner (unrolled), j.inner (vectorized)`, with the
/// `MR x NR` block of `C` accumulated in a local buffer computed at `i.outer`.
pub fn matmul_cpu(c: &Tensor, threads: usize) -> Result<Schedule> {
    let mut s = create_schedule(&[c.clone()])?;
    let cl = s.cache_write(c, "local")?;
    let [i, j] = s.axes2(c)?;
    let (io, jo, ii, ji) = s.tile(c, &i, &j, MR, NR)?;
    s.reorder(c, &[&jo, &io, &ii, &ji])?;
    if threads > 1 {
        s.parallel(c, &jo)?;
    }
    s.compute_at(&cl, c, &io)?;
    let [ci, cj] = s.axes2(&cl)?;
    let k = s.reduce_axes(&cl)?.remove(0);
    s.reorder(&cl, &[&k, &ci, &cj])?;
    s.unroll(&cl, &ci)?;
    s.vectorize(&cl, &cj)?;
    s.vectorize(c, &ji)?;
    s.unroll(c, &ii)?;
    Ok(s)
}
