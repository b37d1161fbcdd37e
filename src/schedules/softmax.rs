//! Softmax over the rows of a 2-D f32 tensor, tensorized for the CPU.
//!
//! [`softmax_rows`] declares the computation in five stages, each row independent:
//! `softmax.max[i] = max_k x[i, k]`, `softmax.shift[i, j] = x[i, j] - max[i]`,
//! `softmax.exp[i, j] = exp(shift[i, j])`, `softmax.den[i] = sum_k exp[i, k]` and
//! `softmax[i, j] = exp[i, j] * (1 / den[i])`; scheduled as is (`create_schedule`), it is the
//! plain reference the tensorized schedule is tested against.
//!
//! [`softmax_rows_tensorized`] computes every intermediate per row, inside the row loop of
//! the output (parallel when `threads > 1`), each pass over the row by an intrinsic
//! (AVX-512 or AVX2+FMA where the CPU has them): the maximum by `reduce_max_f32`, the
//! shifted exponentials `exp(x - max)` by `exp_sub_f32` (the shift stage inlined into
//! them: no pass writes the differences), the denominator by `reduce_sum_f32`; then the
//! scaling, vectorized four vectors at a time (unrolled).

use crate::error::{sched_err, Result};
use crate::intrinsics::{exp_sub_f32, reduce_max_f32, reduce_sum_f32};
use crate::schedule::{create_schedule, Schedule, StageRef};
use crate::te::{compute, exp, max_reduce, reduce_axis, sum, Expr, OpKind, Tensor};

/// The row softmax of a 2-D f32 tensor `x` (`rows x n`), as the five stages of the module
/// doc; returns the output (stage `softmax`).
pub fn softmax_rows(x: &Tensor) -> Result<Tensor> {
    if x.ndim() != 2 {
        return Err(crate::error::Error::InvalidExpr(format!(
            "softmax_rows: {} has {} dimensions; it takes a 2-D tensor (rows x columns)",
            x.name(),
            x.ndim()
        )));
    }
    let (m, n) = (x.shape()[0].clone(), x.shape()[1].clone());
    let k = reduce_axis(0, n.clone(), "k");
    let mx = compute(&[m.clone()], "softmax.max", |i| {
        max_reduce(x.at(&[i[0].clone(), k.x()]), &[k.clone()])
    });
    let shift = compute(&[m.clone(), n.clone()], "softmax.shift", |i| {
        x.at(&[i[0].clone(), i[1].clone()]) - mx.at(&[i[0].clone()])
    });
    let ex = compute(&[m.clone(), n.clone()], "softmax.exp", |i| {
        exp(shift.at(&[i[0].clone(), i[1].clone()]))
    });
    let k2 = reduce_axis(0, n.clone(), "k");
    let den = compute(&[m.clone()], "softmax.den", |i| {
        sum(ex.at(&[i[0].clone(), k2.x()]), &[k2.clone()])
    });
    // Times the reciprocal (one division per row, as PyTorch's kernel): a vector
    // division per element costs several times a multiplication.
    Ok(compute(&[m, n], "softmax", |i| {
        ex.at(&[i[0].clone(), i[1].clone()]) * (Expr::from(1.0f32) / den.at(&[i[0].clone()]))
    }))
}

/// The stage of `out`'s computation named `name`, as a tensor.
fn stage_tensor(out: &Tensor, name: &str) -> Result<Tensor> {
    super::find_stage(out, name).ok_or_else(|| {
        sched_err(
            &out.op.name,
            format!(
                "softmax_rows_tensorized: no stage {} here; pass the output of schedules::softmax_rows",
                name
            ),
        )
    })
}

/// Schedule the output of [`softmax_rows`] with intrinsics (see the module doc). The row
/// length must be a constant; a multiple of 8 keeps every vector loop free of tails.
pub fn softmax_rows_tensorized(out: &Tensor, threads: usize) -> Result<Schedule> {
    let n = match &out.op.kind {
        OpKind::Compute { axis, .. } if axis.len() == 2 && out.op.name == "softmax" => {
            axis[1].extent.as_int()
        }
        _ => None,
    }
    .ok_or_else(|| {
        sched_err(
            &out.op.name,
            "softmax_rows_tensorized takes the output of schedules::softmax_rows with a constant row length",
        )
    })?;
    let mx = stage_tensor(out, "softmax.max")?;
    let shift = stage_tensor(out, "softmax.shift")?;
    let ex = stage_tensor(out, "softmax.exp")?;
    let den = stage_tensor(out, "softmax.den")?;

    let mut s = create_schedule(&[out.clone()])?;
    let [oi, oj] = s.axes2(out)?;
    if threads > 1 {
        s.parallel(out, &oi)?;
    }
    let (_, oji) = s.split(out, &oj, 16)?;
    let (ojv, ojl) = s.split(out, &oji, 4)?;
    s.unroll(out, &ojv)?;
    s.vectorize(out, &ojl)?;
    // The shift is computed inside the exponentials' call (`exp_sub_f32`).
    s.compute_inline(&shift)?;
    for st in [&den, &ex, &mx] {
        s.compute_at(st, out, &oi)?;
    }

    row_passes(&mut s, &mx, &ex, &den, n)?;
    Ok(s)
}

/// A softmax's passes over a row of `n`, each by an intrinsic, on a schedule where the
/// shift stage is inlined into the exponentials and `mx`, `ex` and `den` are computed per
/// row: the maximum by `reduce_max_f32`, `exp(x - max)` by `exp_sub_f32`, their sum by
/// `reduce_sum_f32` (also the graph runtime's softmax kernels).
pub(crate) fn row_passes<S: StageRef + ?Sized>(
    s: &mut Schedule,
    mx: &S,
    ex: &S,
    den: &S,
    n: i64,
) -> Result<()> {
    let mk = s.reduce_axes(mx)?.remove(0);
    s.tensorize(mx, &mk, &reduce_max_f32(n)?)?;
    let ea = s.axes(ex)?;
    s.tensorize(ex, &ea[ea.len() - 1], &exp_sub_f32(n)?)?;
    let dk = s.reduce_axes(den)?.remove(0);
    s.tensorize(den, &dk, &reduce_sum_f32(n)?)
}
