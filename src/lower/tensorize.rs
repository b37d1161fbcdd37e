//! Tensorization, a step of `schedule_ops`: the loop nest of a stage under its tensorized
//! axis is matched against the intrinsic's declaration and replaced by one call.
//!
//! Requires: bounds inference; the stage's root variables as expressions of its leaf
//! variables (`vmap`). Ensures, or fails with a schedule error that names the stage, the
//! axis and the intrinsic:
//! - the loops from the axis inward are the declaration's data axes then reduce axes, in
//!   order, with equal constant extents and no guards of non-dividing splits — except,
//!   for an intrinsic that takes partial tiles, a guard `v + rest < bound` on a data loop
//!   `v`, which the call absorbs as that axis's run-time extent `max(0, min(declared,
//!   bound - rest))`;
//! - after renaming those loop variables to the declaration's axes and rebasing every
//!   tensor index to the tile's first element, the stage's body is structurally the
//!   declaration's, sums and products in either order (else the error shows the first
//!   differing subexpression of both); a read may run along the placeholder's dimensions
//!   in any order (a transposed view), each of its relative indices a linear combination
//!   of the declaration's axes (two axes along one dimension: a convolution's `x * 2 +
//!   rx`), and have extra dimensions that stay fixed in the tile, and so may the output
//!   (a row's sum tensorized by a 0-d reduction intrinsic); failing that, a read of a
//!   compact buffer (or the output's store) may be linear in its flattened offset
//!   instead, once `floordiv(p, w) * w + floormod(p, w)` is folded back into `p`: a fused
//!   `(y, x)` axis walking an image's positions across its rows; or, where the
//!   declaration itself reads a placeholder at non-linear indices (a packed panel `A[i /
//!   6, k, i % 6]`), the read's relative indices may be those same expressions
//!   (simplified over the declared extents; the simplifier has already taken a block's
//!   whole panels out of each division into the tile's origin), the view then having
//!   the buffer's own strides;
//! - the call's operands are the tiles' first elements in their buffers with the buffers'
//!   strides; it updates the output (mode `Update`) when the reduction started outside the
//!   nest, and computes it whole (`Compute`) otherwise. (`schedule_ops` then either
//!   makes the calls at the reduction's first slice `Compute` ones, for a CPU intrinsic,
//!   or ends the init nest in the same call in mode `Init`, output operand only.)

use super::infer_bound::{Bounds, StageInfo};
use super::ir::{IntrinMode, IntrinOperand, IntrinsicCall, Stmt};
use super::simplify::{const_bounds, simplify, simplify_with, Ranges};
use crate::error::{sched_err, Result};
use crate::intrinsics::TensorIntrin;
use crate::schedule::Schedule;
use crate::te::{max, min, BinOp, CmpOp, Expr, ExprNode, IterKind, OpKind, Tensor, Var};
use std::collections::HashMap;
use std::sync::Arc;

/// What the matcher learns of one declared input: the tensor, the indices of its tile's
/// first element, and for each of the placeholder's dimensions the tensor dimensions it
/// moves along as (tensor dimension, steps of it per step of the placeholder's): 2 for a
/// strided convolution's input read at `x * 2 + rx`; two placeholder dimensions may move
/// along one tensor dimension (`x * 2` and `rx` both along the input's width).
///
/// `flat`: the read is linear only in the tensor's flattened offset (row-major, compact);
/// its one "dimension" is then that offset, recorded as the last tensor dimension with
/// the offset's coefficient.
#[derive(Clone)]
struct Bound {
    tensor: Tensor,
    base: Vec<Expr>,
    dims: Vec<Vec<(usize, i64)>>,
    flat: bool,
}

/// What the matcher learns, per declared input.
#[derive(Clone)]
struct Binding {
    tensors: Vec<Option<Bound>>,
}

struct Matcher<'a> {
    intrin: &'a TensorIntrin,
    /// Inner leaf variable -> the declaration's axis variable.
    to_decl: HashMap<u64, Expr>,
    /// Inner leaf variable -> 0.
    zero: HashMap<u64, Expr>,
    /// The ranges of the stage's leaf variables with constant extents: an index such as
    /// `floordiv(io*12 + ii, 6)` over a packed panel is affine once `ii < 6` is known.
    ranges: Ranges,
    /// The declaration's axes over their declared extents.
    decl_ranges: Ranges,
    bind: Binding,
}

/// `Err((stage side, declaration side))` at the first difference.
type Match = std::result::Result<(), (Expr, Expr)>;

impl Matcher<'_> {
    fn expr(&mut self, s: &Expr, d: &Expr) -> Match {
        let differ = || Err((s.clone(), d.clone()));
        match (s.node(), d.node()) {
            (ExprNode::Read(t, idx), ExprNode::Read(p, pidx)) => {
                let Some(pi) = self
                    .intrin
                    .inputs
                    .iter()
                    .position(|x| Arc::ptr_eq(&x.op, &p.op))
                else {
                    return differ();
                };
                if idx.len() < pidx.len() {
                    return differ();
                }
                let idx: Vec<Expr> = idx.iter().map(|i| simplify_with(i, &self.ranges)).collect();
                let base: Vec<Expr> = idx
                    .iter()
                    .map(|i| simplify(&i.substitute(&self.zero)))
                    .collect();
                // Each tensor dimension moves along one placeholder dimension (any
                // order: a transposed read is a view with swapped strides) or not at all.
                let rel = self.relative(&idx, &base);
                // Failing that, a packed panel read as the declaration reads it.
                let (dims, flat) = match linear_dims(&rel, pidx)
                    .or_else(|| same_indices(&rel, pidx, &self.decl_ranges))
                {
                    Some(d) => (d, false),
                    // Only divisions can make an index linear in the flattened offset
                    // alone (a fused axis split across rows).
                    None if !idx.iter().any(crate::egraph::has_int_divmod) => return differ(),
                    None => match self.flat_dims(t, &idx, &base, pidx) {
                        Some(d) => (d, true),
                        None => return differ(),
                    },
                };
                match &self.bind.tensors[pi] {
                    Some(b0) => {
                        let same = Arc::ptr_eq(&b0.tensor.op, &t.op)
                            && b0.tensor.value_index == t.value_index
                            && b0.dims == dims
                            && b0.flat == flat
                            && b0.base.iter().zip(&base).all(|(x, y)| x.structural_eq(y));
                        if !same {
                            return differ();
                        }
                    }
                    None => {
                        self.bind.tensors[pi] = Some(Bound {
                            tensor: t.clone(),
                            base,
                            dims,
                            flat,
                        })
                    }
                }
                Ok(())
            }
            // A subexpression the algebra pass bound once: matched where it is used.
            (ExprNode::Let(v, val, body), _) => {
                let inlined = body.substitute(&HashMap::from([(v.id(), val.clone())]));
                self.expr(&inlined, d)
            }
            (ExprNode::Var(v), _) => match self.to_decl.get(&v.id()) {
                Some(x) if x.structural_eq(d) => Ok(()),
                _ => differ(),
            },
            (ExprNode::Int(..), _) | (ExprNode::Float(..), _) => {
                if s.structural_eq(d) {
                    Ok(())
                } else {
                    differ()
                }
            }
            (ExprNode::Binary(o1, a1, b1), ExprNode::Binary(o2, a2, b2)) if o1 == o2 => {
                if !matches!(o1, BinOp::Add | BinOp::Mul) {
                    self.expr(a1, a2)?;
                    return self.expr(b1, b2);
                }
                // Sums and products match in either order (exactly commutative, in floats
                // too): `x * w` is the declaration's `A * B` with `w` as `A`.
                let before = self.bind.clone();
                let first = self.expr(a1, a2).and_then(|_| self.expr(b1, b2));
                if first.is_err() {
                    let kept = std::mem::replace(&mut self.bind, before);
                    if self.expr(b1, a2).and_then(|_| self.expr(a1, b2)).is_ok() {
                        return Ok(());
                    }
                    self.bind = kept;
                }
                first
            }
            (ExprNode::Cmp(o1, a1, b1), ExprNode::Cmp(o2, a2, b2)) if o1 == o2 => {
                self.expr(a1, a2)?;
                self.expr(b1, b2)
            }
            (ExprNode::Cast(t1, a1), ExprNode::Cast(t2, a2)) if t1 == t2 => self.expr(a1, a2),
            (ExprNode::Call(f1, x1), ExprNode::Call(f2, x2))
                if f1 == f2 && x1.len() == x2.len() =>
            {
                x1.iter().zip(x2).try_for_each(|(a, b)| self.expr(a, b))
            }
            (ExprNode::Select(..), ExprNode::Select(..))
            | (ExprNode::And(..), ExprNode::And(..))
            | (ExprNode::Or(..), ExprNode::Or(..))
            | (ExprNode::Not(..), ExprNode::Not(..)) => {
                let (cs, cd) = (s.children(), d.children());
                cs.iter().zip(&cd).try_for_each(|(a, b)| self.expr(a, b))
            }
            _ => differ(),
        }
    }
}

impl Matcher<'_> {
    /// The indices `idx` relative to the tile's origin `base`, in the declaration's axes.
    fn relative(&self, idx: &[Expr], base: &[Expr]) -> Vec<Expr> {
        idx.iter()
            .zip(base)
            .map(|(i, b)| simplify(&simplify(&(i.clone() - b.clone())).substitute(&self.to_decl)))
            .collect()
    }

    /// [`linear_dims`] of a read of `t` at `idx` (tile origin `base`) taken in `t`'s
    /// flattened row-major offset: one entry per placeholder index, along `t`'s last
    /// dimension with the offset's coefficient. `None` unless `t` has constant sizes and
    /// the offset, its fused divisions folded ([`fold_divmod`]), is linear in the declaration's
    /// axes.
    fn flat_dims(
        &self,
        t: &Tensor,
        idx: &[Expr],
        base: &[Expr],
        pidx: &[Expr],
    ) -> Option<Vec<Vec<(usize, i64)>>> {
        let strides = compact_strides(t)?;
        let last = strides.len().checked_sub(1)?;
        let steps = self.flat_steps(idx, base, &strides, pidx)?;
        Some(steps.into_iter().map(|c| vec![(last, c)]).collect())
    }

    /// The steps of the flattened offset `sum(idx[d] * strides[d])`, relative to the
    /// tile's origin `base`, per step of each of `vars` (the declaration's axes), when it
    /// is a linear combination of them.
    fn flat_steps(
        &self,
        idx: &[Expr],
        base: &[Expr],
        strides: &[i64],
        vars: &[Expr],
    ) -> Option<Vec<i64>> {
        let rel =
            flat_offset(idx, strides, &self.ranges) - flat_offset(base, strides, &self.ranges);
        let rel = simplify(&simplify(&rel).substitute(&self.to_decl));
        let dims = linear_dims(&[rel], vars)?;
        Some(dims.iter().map(|d| d[0].1).collect())
    }
}

/// The row-major strides of `t`'s buffer when every size is constant.
fn compact_strides(t: &Tensor) -> Option<Vec<i64>> {
    let shape: Vec<i64> = t
        .shape()
        .iter()
        .map(|d| d.as_int())
        .collect::<Option<_>>()?;
    let mut strides = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * shape[d + 1];
    }
    Some(strides)
}

/// `sum(idx[d] * strides[d])`, simplified under `ranges`, with each
/// `floordiv(p, w) * w + floormod(p, w)` folded back into `p` (see [`fold_divmod`]).
fn flat_offset(idx: &[Expr], strides: &[i64], ranges: &Ranges) -> Expr {
    let flat = idx
        .iter()
        .zip(strides)
        .map(|(i, &s)| i.clone() * Expr::int(s))
        .reduce(|a, b| a + b)
        .unwrap_or_else(|| Expr::int(0));
    simplify_with(&fold_divmod(&simplify_with(&flat, ranges)), ranges)
}

/// The terms `(coefficient, atom)` of a sum of constant multiples (an atom: anything
/// but a sum, a difference or a product by a constant).
fn linear_terms(e: &Expr, scale: i64, out: &mut Vec<(i64, Expr)>) {
    match e.node() {
        ExprNode::Binary(BinOp::Add, a, b) => {
            linear_terms(a, scale, out);
            linear_terms(b, scale, out);
        }
        ExprNode::Binary(BinOp::Sub, a, b) => {
            linear_terms(a, scale, out);
            linear_terms(b, -scale, out);
        }
        ExprNode::Binary(BinOp::Mul, a, b) if b.as_int().is_some() => {
            linear_terms(a, scale * b.as_int().unwrap_or(1), out)
        }
        ExprNode::Binary(BinOp::Mul, a, b) if a.as_int().is_some() => {
            linear_terms(b, scale * a.as_int().unwrap_or(1), out)
        }
        _ => match e.as_int() {
            Some(c) => out.push((scale * c, Expr::int(1))),
            None => out.push((scale, e.clone())),
        },
    }
}

/// `e` (a sum of constant multiples) with every pair `a * floordiv(p, w) + b *
/// floormod(p, w)` where `a == b * w` replaced by `b * p`: the identity `floordiv(p, w) *
/// w + floormod(p, w) == p` that flattening a fused axis needs, found term by term (the
/// e-graph would find it too, at a cost that grows with the number of terms).
fn fold_divmod(e: &Expr) -> Expr {
    let mut terms = vec![];
    linear_terms(e, 1, &mut terms);
    let mut changed = true;
    while changed {
        changed = false;
        'pairs: for i in 0..terms.len() {
            let ExprNode::Binary(BinOp::Div, p, w) = terms[i].1.node() else {
                continue;
            };
            let Some(wv) = w.as_int() else { continue };
            for j in 0..terms.len() {
                let ExprNode::Binary(BinOp::Mod, q, v) = terms[j].1.node() else {
                    continue;
                };
                if v.as_int() == Some(wv) && q.structural_eq(p) && terms[i].0 == terms[j].0 * wv {
                    let (b, p) = (terms[j].0, p.clone());
                    terms.remove(i.max(j));
                    terms.remove(i.min(j));
                    linear_terms(&p, b, &mut terms);
                    changed = true;
                    break 'pairs;
                }
            }
        }
    }
    terms
        .into_iter()
        .map(|(c, a)| a * Expr::int(c))
        .reduce(|a, b| a + b)
        .unwrap_or_else(|| Expr::int(0))
}

/// For each placeholder index (a declared axis variable), the tensor dimensions it moves
/// along with their constant coefficients, when every relative index `rel[e]` is a linear
/// combination of those variables (`None` otherwise, or when a placeholder index is not
/// a plain variable or moves along no dimension).
fn linear_dims(rel: &[Expr], pidx: &[Expr]) -> Option<Vec<Vec<(usize, i64)>>> {
    let vars: Vec<u64> = pidx
        .iter()
        .map(|p| match simplify(p).node() {
            ExprNode::Var(v) => Some(v.id()),
            _ => None,
        })
        .collect::<Option<_>>()?;
    let mut dims = vec![vec![]; pidx.len()];
    for (e, r) in rel.iter().enumerate() {
        let mut rest = r.clone();
        for (k, &v) in vars.iter().enumerate() {
            let only: HashMap<u64, Expr> = vars
                .iter()
                .map(|&w| (w, Expr::int(i64::from(w == v))))
                .collect();
            let c = simplify(&r.substitute(&only)).as_int()?;
            if c != 0 {
                dims[k].push((e, c));
                rest = rest - pidx[k].clone() * Expr::int(c);
            }
        }
        if simplify(&rest).as_int() != Some(0) {
            return None;
        }
    }
    dims.iter().all(|d| !d.is_empty()).then_some(dims)
}

/// Each tensor dimension along the placeholder dimension of the same position, when the
/// read's relative indices are the declaration's own index expressions (after renaming;
/// both simplified over the declared axes' ranges, `decl_ranges`): a packed panel `A[i /
/// 6, k, i % 6]` read as the declaration reads it. The view then has the tensor's strides
/// as they are.
fn same_indices(
    rel: &[Expr],
    pidx: &[Expr],
    decl_ranges: &Ranges,
) -> Option<Vec<Vec<(usize, i64)>>> {
    let same = |r: &Expr, p: &Expr| {
        simplify_with(r, decl_ranges).structural_eq(&simplify_with(p, decl_ranges))
    };
    (rel.len() == pidx.len() && rel.iter().zip(pidx).all(|(r, p)| same(r, p)))
        .then(|| (0..rel.len()).map(|d| vec![(d, 1)]).collect())
}

/// The extent as a constant, when the ranges pin it to one value.
fn const_extent(e: &Expr, r: &Ranges) -> Option<i64> {
    match const_bounds(e, r) {
        Some((lo, hi)) if lo == hi => Some(lo),
        _ => simplify_with(e, r).as_int(),
    }
}

/// The ranges of every leaf loop (bounds inference's), and `[0, extent - 1]` for each
/// leaf loop of the stage whose extent simplifies to a constant.
fn leaf_ranges(st: &crate::schedule::Stage, info: &StageInfo, all: &Ranges) -> Ranges {
    let mut r = all.clone();
    for &l in &st.leaves {
        if let Some(e) = const_extent(&info.ext[l], all) {
            r.set(st.axes[l].var.id(), 0, e - 1);
        }
    }
    r
}

/// The call replacing the nest of `info`'s stage under leaf `axis`, the position of that
/// leaf, and the guards the call absorbs. `vmap` gives the root variables in terms of the leaves; `store_idx` the
/// output's indices; `first_red` the position of the first reduce leaf.
#[allow(clippy::too_many_arguments)]
pub(crate) fn call_for(
    s: &Schedule,
    b: &Bounds,
    info: &StageInfo,
    vmap: &HashMap<u64, Expr>,
    store_idx: &[Expr],
    axis: &str,
    intrin: &Arc<TensorIntrin>,
    first_red: Option<usize>,
) -> Result<Tensorized> {
    let st = &s.stages[info.si];
    let what = format!(
        "cannot tensorize {} at {} with {}",
        st.name, axis, intrin.name
    );
    let err = |m: String| Err(sched_err(&st.name, format!("{}: {}", what, m)));
    let Some(pos) = st.leaves.iter().position(|&l| st.axes[l].name == axis) else {
        return err(format!(
            "{} is no longer a leaf axis (leaf axes: {})",
            axis,
            st.leaf_names().join(", ")
        ));
    };
    let inner = &st.leaves[pos..];
    let OpKind::Compute { axis: daxes, body } = &intrin.output.op.kind else {
        return err("its declaration is not a compute".into());
    };
    let raxes = intrin.output.op.reduce_axis();
    let decl_vars: Vec<&Var> = daxes.iter().chain(raxes.iter()).map(|a| &a.var).collect();
    let extents = intrin.extents();
    let describe = || {
        inner
            .iter()
            .map(|&l| {
                let a = &st.axes[l];
                let kind = if a.kind == IterKind::Reduce {
                    "reduce"
                } else {
                    "data"
                };
                format!(
                    "{} ({}, extent {})",
                    a.name,
                    kind,
                    simplify_with(&info.ext[l], &b.ranges)
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let want_kinds = daxes.len();
    let kinds_ok = inner.len() == decl_vars.len()
        && inner
            .iter()
            .enumerate()
            .all(|(n, &l)| (st.axes[l].kind == IterKind::Reduce) == (n >= want_kinds));
    let ranges = leaf_ranges(st, info, &b.ranges);
    let extents_ok = kinds_ok
        && inner
            .iter()
            .zip(&extents)
            .all(|(&l, &e)| const_extent(&info.ext[l], &ranges) == Some(e));
    if !extents_ok {
        return err(format!(
            "the loops under it are {}; the intrinsic needs {} data-parallel loops then {} reduce loops with extents {:?}",
            describe(),
            daxes.len(),
            raxes.len(),
            extents
        ));
    }
    let inner_vars: Vec<&Var> = inner.iter().map(|&l| &st.axes[l].var).collect();
    // Guards of non-dividing splits on the nest's loops: with an intrinsic that takes
    // partial tiles, each `v + rest < bound` on a data loop `v` (`rest` free of the nest's
    // variables) shortens that axis to `bound - rest`; any other is refused.
    let mut room: Vec<Option<Expr>> = vec![None; daxes.len()];
    let mut absorbed = vec![];
    for (g, _) in &info.guards {
        let used: Vec<usize> = (0..inner_vars.len())
            .filter(|&n| g.uses_var(inner_vars[n]))
            .collect();
        if used.is_empty() {
            continue;
        }
        let fits = match (intrin.partial, used.as_slice(), g.node()) {
            (true, &[n], ExprNode::Cmp(CmpOp::Lt, p, bound)) if n < daxes.len() => {
                let v = inner_vars[n];
                let rest = simplify(&p.substitute(&HashMap::from([(v.id(), Expr::int(0))])));
                simplify(&(p.clone() - rest.clone()))
                    .structural_eq(&v.expr())
                    .then(|| (n, simplify(&(bound.clone() - rest))))
            }
            _ => None,
        };
        let Some((n, r)) = fits else {
            return err(format!(
                "the loops under it are guarded ({}): a split factor does not divide its extent; make the tile sizes divide the extents{}",
                g,
                if intrin.partial { "" } else { " (this intrinsic takes whole tiles only)" }
            ));
        };
        room[n] = Some(match room[n].take() {
            Some(old) => min(old, r),
            None => r,
        });
        absorbed.push(g.clone());
    }
    let call_extents: Vec<Expr> = extents
        .iter()
        .enumerate()
        .map(|(n, &e)| match room.get(n).cloned().flatten() {
            Some(r) => simplify(&max(min(Expr::int(e), r), Expr::int(0))),
            None => Expr::int(e),
        })
        .collect();
    for other in &s.stages {
        if let crate::schedule::Attach::At { stage, axis: a } = &other.attach {
            if stage == &st.name && inner.iter().any(|&l| &st.axes[l].name == a) {
                return err(format!(
                    "stage {} is computed at {}, inside the nest; compute it at {} or outside",
                    other.name, a, axis
                ));
            }
        }
    }
    let mut m = Matcher {
        intrin,
        to_decl: inner_vars
            .iter()
            .zip(&decl_vars)
            .map(|(v, d)| (v.id(), d.expr()))
            .collect(),
        zero: inner_vars.iter().map(|v| (v.id(), Expr::int(0))).collect(),
        ranges,
        decl_ranges: {
            let mut r = Ranges::new();
            for (v, &e) in decl_vars.iter().zip(&extents) {
                r.set(v.id(), 0, e - 1);
            }
            r
        },
        bind: Binding {
            tensors: vec![None; intrin.inputs.len()],
        },
    };
    let stage_body = info.bodies[0].substitute(vmap);
    let r = match (stage_body.node(), body[0].node()) {
        (ExprNode::Reduce(rs), ExprNode::Reduce(rd)) => {
            let x = Var::new("x", rs.source[0].dtype()).expr();
            let y = Var::new("y", rs.source[0].dtype()).expr();
            let (cs, cd) = (
                rs.combiner.combine(&[x.clone()], &[y.clone()]),
                rd.combiner.combine(&[x], &[y]),
            );
            if rs.source.len() != 1 || rd.source.len() != 1 || !cs[0].structural_eq(&cd[0]) {
                Err((cs[0].clone(), cd[0].clone()))
            } else {
                m.expr(&rs.source[0], &rd.source[0])
            }
        }
        (ExprNode::Reduce(_), _) | (_, ExprNode::Reduce(_)) => {
            Err((stage_body.clone(), body[0].clone()))
        }
        _ => m.expr(&stage_body, &body[0]),
    };
    if let Err((a, d)) = r {
        return err(format!(
            "the loop nest computes `{}` where the intrinsic declares `{}`",
            a, d
        ));
    }
    // The output: each of the declaration's dimensions runs along one dimension of the
    // stage's buffer (any order: a transposed view); the other dimensions stay fixed in
    // the tile (e.g. a row's sum tensorized as a 0-d reduction).
    if store_idx.len() < daxes.len() {
        return err(format!(
            "{} has {} dimensions, the intrinsic's output {}",
            st.name,
            store_idx.len(),
            daxes.len()
        ));
    }
    let out_base: Vec<Expr> = store_idx
        .iter()
        .map(|i| simplify(&i.substitute(&m.zero)))
        .collect();
    let out_rel = m.relative(store_idx, &out_base);
    let out = &info.buffers[0];
    let out_strides = out.strides();
    let out_op_strides: Vec<Expr> = match output_dims(&st.name, daxes, &out_rel) {
        Ok(dims) => dims.iter().map(|&e| out_strides[e].clone()).collect(),
        Err(msg) => {
            // Linear in the flattened offset instead (a fused axis across rows)?
            let consts: Option<Vec<i64>> = out_strides.iter().map(|x| x.as_int()).collect();
            let vars: Vec<Expr> = daxes.iter().map(|a| a.var.expr()).collect();
            match consts.and_then(|c| m.flat_steps(store_idx, &out_base, &c, &vars)) {
                Some(steps) => steps.into_iter().map(Expr::int).collect(),
                None => return err(msg),
            }
        }
    };
    let mut operands = vec![];
    for (pi, bound) in m.bind.tensors.iter().enumerate() {
        let Some(Bound {
            tensor: t,
            base,
            dims,
            flat,
        }) = bound
        else {
            return err(format!(
                "the intrinsic's input {} is not read by the loop nest",
                intrin.inputs[pi].name()
            ));
        };
        let (buf, origin) = b
            .buffer_of(t)
            .ok_or_else(|| sched_err(&st.name, format!("{}: {} has no buffer", what, t.name())))?;
        let index = base
            .iter()
            .enumerate()
            .map(|(d, i)| match origin {
                Some(o) => simplify(&(i.clone() - o[d].clone())),
                None => i.clone(),
            })
            .collect();
        let strides = buf.strides();
        if *flat {
            // The offsets were taken in the tensor's compact layout: the buffer must be it.
            let compact =
                compact_strides(t).map(|c| c.into_iter().map(Expr::int).collect::<Vec<_>>());
            let same = origin.is_none()
                && compact.is_some_and(|c| c.iter().zip(&strides).all(|(a, b)| a.structural_eq(b)));
            if !same {
                return err(format!(
                    "{} is read along its flattened positions, which needs it whole and compact in memory (not a cached or padded region)",
                    t.name()
                ));
            }
        }
        operands.push(IntrinOperand {
            buf: buf.clone(),
            index,
            strides: dims
                .iter()
                .map(|along| {
                    let terms = along
                        .iter()
                        .map(|&(e, c)| strides[e].clone() * Expr::int(c));
                    simplify(&terms.reduce(|a, b| a + b).expect("not empty"))
                })
                .collect(),
        });
    }
    operands.push(IntrinOperand {
        buf: out.clone(),
        index: out_base,
        strides: out_op_strides,
    });
    let mode = if !raxes.is_empty() && first_red.is_some_and(|f| f < pos) {
        IntrinMode::Update
    } else {
        IntrinMode::Compute
    };
    Ok(Tensorized {
        pos,
        call: Stmt::Intrinsic(IntrinsicCall {
            intrin: intrin.clone(),
            operands,
            mode,
            extents: call_extents,
        }),
        absorbed,
    })
}

/// For each of the declaration's output axes, the dimension of the buffer of `stage` it
/// runs along (each its own; the others must stay fixed in the tile), from the store's
/// indices relative to the tile; else the message for the schedule error.
fn output_dims(
    stage: &str,
    daxes: &[crate::te::IterVar],
    out_rel: &[Expr],
) -> std::result::Result<Vec<usize>, String> {
    let mut out_dims: Vec<usize> = vec![];
    for a in daxes {
        let v = a.var.expr();
        match out_rel
            .iter()
            .enumerate()
            .find(|(e, r)| r.structural_eq(&v) && !out_dims.contains(e))
        {
            Some((e, _)) => out_dims.push(e),
            None => {
                return Err(format!(
                    "no dimension of {} is indexed by the intrinsic's output axis `{}` (relative to the tile, {}'s indices are [{}])",
                    stage,
                    a.var.name(),
                    stage,
                    out_rel.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(", ")
                ))
            }
        }
    }
    if let Some((d, r)) = out_rel
        .iter()
        .enumerate()
        .find(|(e, r)| !out_dims.contains(e) && r.as_int() != Some(0))
    {
        return Err(format!(
            "dimension {} of {} is indexed by `{}`, which moves inside the nest but is none of the intrinsic's output axes",
            d, stage, r
        ));
    }
    Ok(out_dims)
}

/// What [`call_for`] makes of a tensorized nest.
pub(crate) struct Tensorized {
    /// The position of the tensorized axis among the stage's leaves.
    pub pos: usize,
    /// The call replacing the nest.
    pub call: Stmt,
    /// The stage's guards that the call's extents take care of (a partial tile's): the
    /// caller must not wrap the call in them.
    pub absorbed: Vec<Expr>,
}

#[cfg(test)]
mod tests {
    use super::{flat_offset, Ranges};
    use crate::te::{floordiv, floormod, DType, Var};

    #[test]
    fn flattened_offsets_of_a_fused_axis_fold_back_to_it() {
        // x[c, floordiv(p, 12), floormod(p, 12)] of a [5, 3, 12] tensor, p = o * 16 + i.
        let (c, o, i) = (
            Var::new("c", DType::I64),
            Var::new("o", DType::I64),
            Var::new("i", DType::I64),
        );
        let p = o.expr() * 16 + i.expr();
        let idx = [c.expr(), floordiv(p.clone(), 12), floormod(p, 12)];
        let flat = flat_offset(&idx, &[36, 12, 1], &Ranges::new());
        let want = c.expr() * 36 + o.expr() * 16 + i.expr();
        assert!(
            crate::lower::simplify::simplify(&(flat.clone() - want)).as_int() == Some(0),
            "{}",
            flat
        );
        // A modulo of another divisor does not pair: the division stays.
        let q = o.expr() * 16 + i.expr();
        let idx = [c.expr(), floordiv(q.clone(), 12), floormod(q, 8)];
        let flat = flat_offset(&idx, &[36, 12, 1], &Ranges::new());
        assert!(flat.to_string().contains("floordiv"), "{}", flat);
    }
}
