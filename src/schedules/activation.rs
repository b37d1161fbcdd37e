//! The CPU schedule of an elementwise kernel built around an activation (sigmoid, tanh,
//! GELU, erf, exp, SiLU: [`Activation`]): the activation by the [`activation_f32`] intrinsic (256-bit
//! vectors, where the generated code has 128-bit ones), the rest of the kernel, if any,
//! in vectorized loops reading its result.

use super::stages_of;
use crate::error::{Error, Result};
use crate::intrinsics::{activation_f32, has_avx2_fma, Activation};
use crate::lower::simplify::key;
use crate::schedule::{create_schedule, Schedule};
use crate::te::{BinOp, DType, Expr, ExprNode, OpKind, Tensor};

/// Elements of an intrinsic call's block of rows at most (64 KiB of f32: the block's
/// input and result stay in L2 for the epilogue that reads them).
const BLOCK_ELEMENTS: i64 = 16 * 1024;

/// Which activation `t` computes of a tensor read at `t`'s own indices, if it is one.
pub fn activation_of(t: &Tensor) -> Option<Activation> {
    let OpKind::Compute { axis, body } = &t.op.kind else {
        return None;
    };
    if body.len() != 1 || !t.op.reduce_axis().is_empty() {
        return None;
    }
    // The one tensor it reads, at `t`'s indices.
    let mut reads = vec![];
    body[0].visit(&mut |e| {
        if let ExprNode::Read(x, _) = e.node() {
            reads.push(x.clone());
        }
        true
    });
    let x = reads.first()?;
    let idx: Vec<_> = axis.iter().map(|a| a.var.expr()).collect();
    let want = key(&body[0]);
    Activation::ALL
        .into_iter()
        .find(|f| key(&f.expr(x.at(&idx))) == want)
}

/// Whether `out` is `x * sig` or `sig * x`, `sig` the sigmoid stage `sig` of `x`, both read
/// at `out`'s indices.
fn is_silu(out: &Tensor, sig: &Tensor) -> bool {
    let (OpKind::Compute { axis, body }, [x]) = (&out.op.kind, &sig.op.input_tensors()[..]) else {
        return false;
    };
    let idx: Vec<_> = axis.iter().map(|a| a.var.expr()).collect();
    let ss = key(&sig.at(&idx));
    // The graph reads a broadcast operand's axes of extent 1 at index 0: equivalent
    // outside the call's two axes (inside them `tensorize` would see a constant index
    // where the sigmoid reads the loop's).
    let r = axis.len();
    let idx0: Vec<_> = axis
        .iter()
        .enumerate()
        .map(|(d, a)| match a.extent.as_int() {
            Some(1) if d + 2 < r => Expr::int(0),
            _ => a.var.expr(),
        })
        .collect();
    let is_x = |k: &String| *k == key(&x.at(&idx)) || *k == key(&x.at(&idx0));
    match body[..] {
        [ref b] => match b.node() {
            ExprNode::Binary(BinOp::Mul, l, r) => {
                let (l, r) = (key(l), key(r));
                (is_x(&l) && r == ss) || (l == ss && is_x(&r))
            }
            _ => false,
        },
        _ => false,
    }
}

/// Whether [`activation_cpu`] takes an activation with output `shape` and `dtype`: f32,
/// rank 2 or more, planes (the last two axes) of at least 8 elements (one whole 8-lane
/// vector per call; a smaller tile, as a squeeze-excitation's `[1, C, 1, 1]`, would pay a
/// call for a few elements), on a CPU with AVX2 and FMA (elsewhere the intrinsic runs
/// scalar code, slower than the generated code's vectors). The fusion pass asks it too.
pub fn activation_fits(shape: &[usize], dtype: DType) -> bool {
    let r = shape.len();
    has_avx2_fma() && dtype == DType::F32 && r >= 2 && shape[r - 2] * shape[r - 1] >= 8
}

fn not_eligible(out: &Tensor, why: &str) -> Error {
    Error::InvalidExpr(format!("activation_cpu: {} {}", out.name(), why))
}

/// The schedule of `out`, an f32 tensor of rank 2 or more that is an [`Activation`] of a
/// tensor, or an elementwise function of one such stage (a fused group's activation
/// with its epilogue): the outer axes and blocks of rows of the last two (whole planes
/// up to 16K elements) fused, parallel on `threads > 1` threads; in each block the
/// activation by one [`activation_f32`] call (into a block-sized buffer when it is not
/// `out`), then `out`'s rows vectorized; a sigmoid stage times its own input (SiLU) is one
/// call of the SiLU activation for both. Other injective stages are inlined.
///
/// A typed error where `out` does not have that form or does not [`activation_fits`]
/// (among others: planes of fewer than 8 elements, a CPU without AVX2 and FMA), where
/// its blocks would hold fewer than 8 elements, or where the schedule does not lower
/// (checked here).
pub fn activation_cpu(out: &Tensor, threads: usize) -> Result<Schedule> {
    let shape: Vec<i64> = out.shape().iter().filter_map(|d| d.as_int()).collect();
    let r = shape.len();
    let dims: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
    if r != out.shape().len() || !activation_fits(&dims, out.dtype()) {
        return Err(not_eligible(
            out,
            "is not an f32 tensor of constant shape, rank 2 or more, planes of 8 or more, on a CPU with AVX2 and FMA",
        ));
    }
    // `out` itself, else a stage it reads of its shape (and so its dtype, f32).
    let same_shape = |t: &Tensor| {
        t.dtype() == DType::F32
            && t.shape()
                .iter()
                .map(|d| d.as_int())
                .eq(shape.iter().map(|&d| Some(d)))
    };
    let (stage, f) = std::iter::once(out.clone())
        .chain(out.op.input_tensors().into_iter().filter(same_shape))
        .find_map(|t| activation_of(&t).map(|f| (t, f)))
        .ok_or_else(|| {
            not_eligible(out, "neither is nor reads an activation stage of its shape")
        })?;
    let mut s = create_schedule(&[out.clone()])?;
    for t in stages_of(out) {
        if t.op.name == out.op.name || t.op.name == stage.op.name {
            continue;
        }
        match &t.op.kind {
            OpKind::Compute { .. } if !t.op.reduce_axis().is_empty() => {
                return Err(not_eligible(out, "computes a reduction"));
            }
            OpKind::Compute { .. } => s.compute_inline(t.op.name.as_str())?,
            _ => {}
        }
    }
    // `x * sigmoid(x)` in one call (SiLU): `out` with the sigmoid stage inlined.
    let (stage, f) =
        if stage.op.name != out.op.name && f == Activation::Sigmoid && is_silu(out, &stage) {
            s.compute_inline(stage.op.name.as_str())?;
            (out.clone(), Activation::Silu)
        } else {
            (stage, f)
        };
    let (h, w) = (shape[r - 2], shape[r - 1]);
    let rows = super::divisors(h, (BLOCK_ELEMENTS / w).max(1))[0];
    if rows * w < 8 {
        return Err(not_eligible(
            out,
            "splits its planes into blocks of fewer than 8 elements",
        ));
    }
    let intrin = activation_f32(f, rows, w)?;
    let axes = s.axes(out)?;
    let (ho, hi) = s.split(out, &axes[r - 2], rows)?;
    let mut outer: Vec<_> = axes[..r - 2].to_vec();
    outer.push(ho);
    let block = if outer.len() > 1 {
        s.fuse(out, &outer.iter().collect::<Vec<_>>())?
    } else {
        outer.remove(0)
    };
    if threads > 1 {
        s.parallel(out, &block)?;
    }
    if stage.op.name == out.op.name {
        s.tensorize(out, &hi, &intrin)?;
        return lowered(s, out);
    }
    if w % 4 == 0 {
        let (_, vi) = s.split(out, &axes[r - 1], 4)?;
        s.vectorize(out, &vi)?;
    }
    s.compute_at(&stage, out, &block)?;
    let sa = s.axes(&stage)?;
    s.tensorize(&stage, &sa[r - 2], &intrin)?;
    lowered(s, out)
}

/// `s`, once it is known to lower: `tensorize` matches the nest only then, and a nest
/// this schedule did not foresee is then its error (the caller falls back to another
/// schedule), not the kernel's.
fn lowered(s: Schedule, out: &Tensor) -> Result<Schedule> {
    let mut args: Vec<Tensor> = stages_of(out)
        .into_iter()
        .filter(|t| matches!(t.op.kind, OpKind::Placeholder { .. }))
        .collect();
    args.push(out.clone());
    crate::lower::lower(&s, &args)?;
    Ok(s)
}
