//! Pass: bounds inference (TVM's InferBound, Halide's BoundsInference).
//!
//! Requires: a schedule and the effective (inlined) bodies. Ensures: for every stage that
//! is not inlined, the range of each root axis it must compute (the region its consumers
//! read, by interval arithmetic backwards from the outputs; at a `compute_at` point only
//! what one iteration of the consumer's loop needs), the extents of all its axes, each
//! axis's offset in terms of the leaf loop variables, the guards of non-dividing splits,
//! and its buffers (region-sized for intermediates, full-sized for arguments).

use super::bound::{eval, Interval};
use super::ir::{Buffer, ForKind, Scope};
use super::simplify::{const_bounds, simplify, simplify_with, Ranges};
use crate::error::{Error, Result};
use crate::schedule::{Attach, Relation, Schedule};
use crate::te::{lt, max, min, Expr, ExprNode, IterKind, OpKind, Tensor};
use std::collections::{HashMap, HashSet};

/// What lowering knows about one (non-inlined) stage.
#[derive(Debug, Clone)]
pub struct StageInfo {
    /// Index of the stage in the schedule.
    pub si: usize,
    /// Stage name.
    pub name: String,
    /// Effective bodies (inlined producers substituted).
    pub bodies: Vec<Expr>,
    /// Min of each root axis (data axes, then reduce axes).
    pub root_min: Vec<Expr>,
    /// Extent of each root axis.
    pub root_ext: Vec<Expr>,
    /// Extent of every axis (root and derived).
    pub ext: Vec<Expr>,
    /// Offset of every axis from its root min, in terms of the leaf variables.
    pub off: Vec<Expr>,
    /// Guards of non-dividing splits, with the kind of the axis split.
    pub guards: Vec<(Expr, IterKind)>,
    /// Index origin of each data dimension of the buffers.
    pub origin: Vec<Expr>,
    /// One buffer per output.
    pub buffers: Vec<Buffer>,
    /// Whether the buffers are function arguments (not allocated).
    pub is_arg: bool,
}

/// The result of bounds inference for a whole schedule.
pub struct Bounds {
    /// One entry per schedule stage (`None` for inlined stages).
    pub stages: Vec<Option<StageInfo>>,
    /// Constant ranges of every leaf variable, for simplification.
    pub ranges: Ranges,
    /// Buffers of placeholders, by name.
    pub placeholders: HashMap<String, Buffer>,
}

impl Bounds {
    /// Info of the stage named `name`.
    pub fn by_name(&self, name: &str) -> Option<&StageInfo> {
        self.stages.iter().flatten().find(|s| s.name == name)
    }
    /// The buffer that holds tensor `t`.
    pub fn buffer_of(&self, t: &Tensor) -> Option<(&Buffer, Option<&[Expr]>)> {
        if let Some(b) = self.placeholders.get(&t.op.name) {
            return Some((b, None));
        }
        let si = self.by_name(&t.op.name)?;
        Some((&si.buffers[t.value_index], Some(&si.origin)))
    }
}

/// Run bounds inference. `args` are the function's argument tensors.
pub fn infer(s: &Schedule, eff: &HashMap<String, Vec<Expr>>, args: &[Tensor]) -> Result<Bounds> {
    let n = s.stages.len();
    let mut out: Vec<Option<StageInfo>> = vec![None; n];
    let mut ranges = Ranges::new();
    // leaf var id -> (extent, owning stage index), for relaxing out-of-scope variables
    let mut leaf_ext: HashMap<u64, Expr> = HashMap::new();
    let arg_names: HashSet<String> = args.iter().map(|t| t.op.name.clone()).collect();

    for si in (0..n).rev() {
        let st = &s.stages[si];
        if st.attach == Attach::Inline {
            continue;
        }
        if let Attach::At { stage, axis } = &st.attach {
            let p = s.stage(stage.as_str())?;
            if p.attach == Attach::Inline {
                return Err(Error::Schedule {
                    stage: st.name.clone(),
                    msg: format!("{} is computed at {}.{}, but {} was inlined; compute it at root or in another consumer", st.name, stage, axis, stage),
                });
            }
            let ok = p
                .axis_index(axis)
                .map(|i| p.leaf_pos(i).is_some())
                .unwrap_or(false);
            if !ok {
                return Err(Error::Schedule {
                    stage: st.name.clone(),
                    msg: format!(
                        "{} is computed at {}.{}, which is no longer a leaf axis of {} (it was split or fused later); compute_at one of: {}",
                        st.name,
                        stage,
                        axis,
                        stage,
                        p.leaf_names().join(", ")
                    ),
                });
            }
        }
        check_consumers_inside(s, si)?;
        let (axes, shape) = match &st.op.kind {
            OpKind::Compute { axis, .. } => (axis.clone(), st.op.shape.clone()),
            _ => unreachable!(),
        };
        let is_arg = arg_names.contains(&st.name);
        let mem_scope = memory_scope(s, si, is_arg || st.is_output);
        let mut root_min: Vec<Expr> = vec![];
        let mut root_ext: Vec<Expr> = vec![];
        let mut buf_shape: Vec<Expr> = vec![];
        if st.is_output || is_arg {
            for a in &axes {
                root_min.push(a.min.clone());
                root_ext.push(simplify(&a.extent));
            }
            buf_shape = shape.iter().map(simplify).collect();
        } else {
            let region = region_of(s, si, mem_scope, eff, &out, &leaf_ext, &ranges)?;
            for (d, iv) in region.into_iter().enumerate() {
                let full_hi = simplify(&(shape[d].clone() - 1));
                let (lo, hi) = match iv {
                    Some(Interval {
                        lo: Some(l),
                        hi: Some(h),
                    }) => (
                        simplify_with(&max(l, Expr::int(0)), &ranges),
                        simplify_with(&min(h, full_hi.clone()), &ranges),
                    ),
                    _ => (Expr::int(0), full_hi.clone()),
                };
                // In the tail of a non-dividing split the consumer's point may lie past the
                // end, making the region empty: never a negative extent.
                let ext = simplify_with(&max(hi - lo.clone() + 1, Expr::int(0)), &ranges);
                let ub = upper_bound(&ext, &leaf_ext, &ranges);
                let alloc = match ub {
                    Some(u) => simplify_with(&min(u, shape[d].clone()), &ranges),
                    None => simplify(&shape[d]),
                };
                root_min.push(lo);
                root_ext.push(ext);
                buf_shape.push(alloc);
            }
        }
        let origin: Vec<Expr> = if is_arg || st.is_output {
            vec![Expr::int(0); axes.len()]
        } else {
            root_min.clone()
        };
        for r in st.op.reduce_axis() {
            root_min.push(r.min.clone());
            root_ext.push(simplify(&r.extent));
        }

        // Extents of derived axes, in the order the relations were applied.
        let ext = st.derived_extents(&root_ext, &|e| simplify_with(e, &ranges));
        // Offsets: leaves are their own variables; parents derive from children.
        let mut off: Vec<Option<Expr>> = vec![None; st.axes.len()];
        for &l in &st.leaves {
            off[l] = Some(st.axes[l].var.expr());
            leaf_ext.insert(st.axes[l].var.id(), ext[l].clone());
            if let Some((_, hi)) = const_bounds(&ext[l], &ranges) {
                ranges.set(st.axes[l].var.id(), 0, (hi - 1).max(0));
            }
        }
        let mut guards = vec![];
        for rel in st.relations.iter().rev() {
            match rel {
                Relation::Split {
                    parent,
                    outer,
                    inner,
                    shift_inwards,
                    ..
                } => {
                    let (o, i) = (off[*outer].clone().unwrap(), off[*inner].clone().unwrap());
                    let covered = simplify_with(
                        &(ext[*outer].clone() * ext[*inner].clone() - ext[*parent].clone()),
                        &ranges,
                    );
                    let whole = covered.as_int() == Some(0);
                    // A shifted last block needs the extent to hold one whole block.
                    let room =
                        simplify_with(&(ext[*parent].clone() - ext[*inner].clone()), &ranges);
                    let shift = *shift_inwards
                        && !whole
                        && const_bounds(&room, &ranges).is_some_and(|(lo, _)| lo >= 0);
                    let p = if shift {
                        let start = crate::te::min(o * ext[*inner].clone(), room);
                        simplify(&(start + i))
                    } else {
                        simplify(&(o * ext[*inner].clone() + i))
                    };
                    if !whole && !shift {
                        guards.push((lt(p.clone(), ext[*parent].clone()), st.axes[*parent].kind));
                    }
                    off[*parent] = Some(p);
                }
                Relation::Fuse {
                    outer,
                    inner,
                    fused,
                } => {
                    let f = off[*fused].clone().unwrap();
                    off[*outer] = Some(simplify_with(
                        &crate::te::floordiv(f.clone(), ext[*inner].clone()),
                        &ranges,
                    ));
                    off[*inner] = Some(simplify_with(
                        &crate::te::floormod(f, ext[*inner].clone()),
                        &ranges,
                    ));
                }
            }
        }
        let off: Vec<Expr> = off
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Expr::int(0)))
            .collect();
        let scope = mem_scope;
        let buffers = (0..st.op.num_outputs())
            .map(
                |v| match aligned_strides(&buf_shape, &st.aligns, is_arg || st.is_output) {
                    Some(strides) => Buffer::with_strides(
                        st.op.output_name(v),
                        st.op.output_dtype(v),
                        buf_shape.clone(),
                        strides,
                        scope,
                    ),
                    None => Buffer::new(
                        st.op.output_name(v),
                        st.op.output_dtype(v),
                        buf_shape.clone(),
                        scope,
                    ),
                },
            )
            .collect();
        out[si] = Some(StageInfo {
            si,
            name: st.name.clone(),
            bodies: eff[&st.name].clone(),
            root_min,
            root_ext,
            ext,
            off,
            guards,
            origin,
            buffers,
            is_arg: is_arg || st.is_output,
        });
    }
    let placeholders = s
        .placeholders
        .iter()
        .map(|p| {
            (
                p.op.name.clone(),
                Buffer::new(
                    p.op.name.clone(),
                    p.dtype(),
                    p.shape().to_vec(),
                    Scope::Global,
                ),
            )
        })
        .collect();
    Ok(Bounds {
        stages: out,
        ranges,
        placeholders,
    })
}

/// Where stage `si`'s buffer lives: arguments in global memory; an explicit cache scope as
/// given; otherwise, for a stage computed inside a GPU kernel, TVM's rule: `local` under a
/// `threadIdx` loop (one copy per thread), `shared` under a `blockIdx` loop only (one per
/// block); `global` elsewhere.
fn memory_scope(s: &Schedule, si: usize, is_arg: bool) -> Scope {
    let st = &s.stages[si];
    if is_arg {
        return Scope::Global;
    }
    if st.scope != Scope::Global {
        return st.scope;
    }
    let (mut thread, mut block) = (false, false);
    let mut cur = si;
    for _ in 0..s.stages.len() {
        let Attach::At { stage, axis } = &s.stages[cur].attach else {
            break;
        };
        let Ok(pi) = s.stage_index(stage) else { break };
        let p = &s.stages[pi];
        let ai = p.axis_index(axis).unwrap_or(usize::MAX);
        for &l in &p.leaves {
            if let ForKind::ThreadBinding(t) = &p.axes[l].annotation {
                thread |= t.starts_with("threadIdx");
                block |= t.starts_with("blockIdx");
            }
            if l == ai {
                break;
            }
        }
        cur = pi;
    }
    if thread {
        Scope::Local
    } else if block {
        Scope::Shared
    } else {
        Scope::Global
    }
}

/// Whether a buffer of `scope` computed inside a loop of this kind serves every iteration
/// of that loop at once (so its region covers them all, as in TVM's InferBound): shared
/// memory is shared by the threads of a block, global memory by all blocks and threads.
fn shared_across(scope: Scope, kind: &ForKind) -> bool {
    let tag = match kind {
        ForKind::ThreadBinding(t) => t.as_str(),
        _ => return false,
    };
    match scope {
        Scope::Shared => tag.starts_with("threadIdx"),
        Scope::Global => tag.starts_with("threadIdx") || tag.starts_with("blockIdx"),
        Scope::Local | Scope::Fragment(_) => false,
    }
}

/// Loop variables in scope where stage `si` is computed (its attach chain's outer leaves).
fn in_scope(s: &Schedule, si: usize, mem: Scope) -> HashSet<u64> {
    let mut set = HashSet::new();
    let mut cur = si;
    for _ in 0..s.stages.len() {
        match &s.stages[cur].attach {
            Attach::At { stage, axis } => {
                let pi = match s.stage_index(stage) {
                    Ok(p) => p,
                    Err(_) => break,
                };
                let p = &s.stages[pi];
                let ai = p.axis_index(axis).unwrap_or(usize::MAX);
                for &l in &p.leaves {
                    if !shared_across(mem, &p.axes[l].annotation) {
                        set.insert(p.axes[l].var.id());
                    }
                    if l == ai {
                        break;
                    }
                }
                cur = pi;
            }
            _ => break,
        }
    }
    set
}

/// Replace loop variables not in `scope` by their ranges (repeatedly, since a range may
/// mention outer loop variables).
fn relax(iv: Interval, scope: &HashSet<u64>, leaf_ext: &HashMap<u64, Expr>) -> Interval {
    let mut iv = iv;
    for _ in 0..8 {
        let mut env: HashMap<u64, Interval> = HashMap::new();
        for e in [&iv.lo, &iv.hi].into_iter().flatten() {
            for v in e.free_vars() {
                if !scope.contains(&v.id()) {
                    if let Some(x) = leaf_ext.get(&v.id()) {
                        env.insert(
                            v.id(),
                            Interval::new(Expr::int(0), simplify(&(x.clone() - 1))),
                        );
                    }
                }
            }
        }
        if env.is_empty() {
            return iv;
        }
        let lo = iv.lo.as_ref().and_then(|l| eval(l, &env).lo);
        let hi = iv.hi.as_ref().and_then(|h| eval(h, &env).hi);
        iv = Interval {
            lo: lo.map(|e| simplify(&e)),
            hi: hi.map(|e| simplify(&e)),
        };
    }
    Interval::everything()
}

/// The region of each data dimension of stage `si` that its consumers read.
fn region_of(
    s: &Schedule,
    si: usize,
    mem: Scope,
    eff: &HashMap<String, Vec<Expr>>,
    info: &[Option<StageInfo>],
    leaf_ext: &HashMap<u64, Expr>,
    ranges: &Ranges,
) -> Result<Vec<Option<Interval>>> {
    let st = &s.stages[si];
    let ndim = st.op.shape.len();
    let mut acc: Vec<Option<Interval>> = vec![None; ndim];
    let mut unbounded = vec![false; ndim];
    let scope = in_scope(s, si, mem);
    for (ci, c) in info.iter().enumerate() {
        let c = match c {
            Some(c) => c,
            None => continue,
        };
        let cst = &s.stages[ci];
        let reads: Vec<Vec<Expr>> = reads_of(&eff[&cst.name], &st.name);
        if reads.is_empty() {
            continue;
        }
        // Leaves of the consumer at or outside the attach point are fixed; inner ones range.
        let fixed_upto: Option<usize> = match &st.attach {
            Attach::At { stage, axis } if *stage == cst.name => {
                cst.axis_index(axis).and_then(|a| cst.leaf_pos(a))
            }
            _ => None,
        };
        let mut env: HashMap<u64, Interval> = HashMap::new();
        for (pos, &l) in cst.leaves.iter().enumerate() {
            let fixed = fixed_upto.map(|f| pos <= f).unwrap_or(false);
            if fixed && !shared_across(mem, &cst.axes[l].annotation) {
                continue;
            }
            env.insert(
                cst.axes[l].var.id(),
                Interval::new(Expr::int(0), simplify(&(c.ext[l].clone() - 1))),
            );
        }
        let mut root_env: HashMap<u64, Interval> = HashMap::new();
        for r in 0..c.root_min.len() {
            let o = eval(&c.off[r], &env);
            let last = simplify(&(c.root_min[r].clone() + c.root_ext[r].clone() - 1));
            let lo =
                o.lo.map(|l| simplify_with(&(c.root_min[r].clone() + l), ranges));
            let hi =
                o.hi.map(|h| simplify_with(&min(c.root_min[r].clone() + h, last.clone()), ranges));
            root_env.insert(cst.axes[r].var.id(), Interval { lo, hi });
        }
        for idx in reads {
            for d in 0..ndim.min(idx.len()) {
                let iv = relax(eval(&idx[d], &root_env), &scope, leaf_ext);
                if iv.lo.is_none() || iv.hi.is_none() {
                    unbounded[d] = true;
                }
                acc[d] = Some(match &acc[d] {
                    None => iv,
                    Some(prev) => prev.union(&iv),
                });
            }
        }
    }
    for d in 0..ndim {
        if unbounded[d] {
            acc[d] = None;
        }
        if let Some(iv) = &acc[d] {
            let lo = iv.lo.as_ref().map(|e| simplify_with(e, ranges));
            let hi = iv.hi.as_ref().map(|e| simplify_with(e, ranges));
            acc[d] = Some(Interval { lo, hi });
        }
    }
    Ok(acc)
}

/// Index lists of every read of stage `name` in `bodies`.
fn reads_of(bodies: &[Expr], name: &str) -> Vec<Vec<Expr>> {
    let mut out = vec![];
    for b in bodies {
        b.visit(&mut |e| {
            if let ExprNode::Read(t, idx) = e.node() {
                if t.op.name == name {
                    out.push(idx.clone());
                }
            }
            true
        });
    }
    out
}

/// An upper bound of `e` free of loop variables: `min(a, b)` is bounded by either side
/// (whichever becomes loop-free), then remaining loop variables take their ranges.
fn upper_bound(e: &Expr, leaf_ext: &HashMap<u64, Expr>, ranges: &Ranges) -> Option<Expr> {
    let is_loop_free = |x: &Expr| {
        x.free_vars()
            .iter()
            .all(|v| !leaf_ext.contains_key(&v.id()))
    };
    if is_loop_free(e) {
        return Some(e.clone());
    }
    for pick_left in [true, false] {
        let d = simplify_with(&drop_bounding(e, true, pick_left), ranges);
        if is_loop_free(&d) {
            return Some(d);
        }
    }
    let r = relax(Interval::point(e.clone()), &HashSet::new(), leaf_ext);
    let hi = r.hi?;
    if let Some((_, c)) = const_bounds(&hi, ranges) {
        return Some(Expr::int(c));
    }
    if is_loop_free(&hi) {
        Some(hi)
    } else {
        None
    }
}

/// Rewrite `e` into something at least as large: a `min` in positive position (or a `max`
/// in negative position) is replaced by one of its sides.
fn drop_bounding(e: &Expr, positive: bool, pick_left: bool) -> Expr {
    use crate::te::BinOp;
    match e.node() {
        ExprNode::Binary(BinOp::Add, a, b) => {
            drop_bounding(a, positive, pick_left) + drop_bounding(b, positive, pick_left)
        }
        ExprNode::Binary(BinOp::Sub, a, b) => {
            drop_bounding(a, positive, pick_left) - drop_bounding(b, !positive, pick_left)
        }
        ExprNode::Binary(BinOp::Mul, a, b) if b.as_int().map(|c| c > 0).unwrap_or(false) => {
            drop_bounding(a, positive, pick_left) * b.clone()
        }
        // Division by a positive constant is monotone (a padded layout's block index,
        // `floordiv(min(i, last), 6)`).
        ExprNode::Binary(BinOp::Div, a, b)
            if !a.dtype().is_float() && b.as_int().is_some_and(|c| c > 0) =>
        {
            crate::te::binary(BinOp::Div, drop_bounding(a, positive, pick_left), b.clone())
        }
        ExprNode::Binary(BinOp::Min, a, b) if positive => {
            drop_bounding(if pick_left { a } else { b }, positive, pick_left)
        }
        ExprNode::Binary(BinOp::Max, a, b) if !positive => {
            drop_bounding(if pick_left { a } else { b }, positive, pick_left)
        }
        // Monotone in both operands: bound each side.
        ExprNode::Binary(op @ (BinOp::Max | BinOp::Min), a, b) => crate::te::binary(
            *op,
            drop_bounding(a, positive, pick_left),
            drop_bounding(b, positive, pick_left),
        ),
        _ => e.clone(),
    }
}

/// A stage computed at `P.ax` must have every consumer computed inside that loop: the
/// consumer is `P` itself, or is attached (through any chain) at `P.ax` or an axis inside it.
fn check_consumers_inside(s: &Schedule, si: usize) -> Result<()> {
    let st = &s.stages[si];
    let (p, ax) = match &st.attach {
        Attach::At { stage, axis } => (stage.clone(), axis.clone()),
        _ => return Ok(()),
    };
    let ps = s.stage(p.as_str())?;
    let pos = ps.axis_index(&ax).and_then(|a| ps.leaf_pos(a)).unwrap_or(0);
    for r in s.effective_readers_of(&st.name) {
        if r == p {
            continue;
        }
        let inside = s.attach_chain(&r).iter().any(|(cs, cax)| {
            *cs == p
                && ps
                    .axis_index(cax)
                    .and_then(|a| ps.leaf_pos(a))
                    .map(|q| q >= pos)
                    .unwrap_or(false)
        });
        if !inside {
            return Err(Error::Schedule {
                stage: st.name.clone(),
                msg: format!(
                    "{} is computed at {}.{}, but its consumer {} is computed outside that loop; attach {} at or inside {}.{}",
                    st.name, p, ax, r, r, p, ax
                ),
            });
        }
    }
    Ok(())
}

/// Strides padded by `storage_align` requests (None when there are none, or the buffer is
/// an argument whose layout the caller fixes). The shape must be constant where padded.
fn aligned_strides(
    shape: &[Expr],
    aligns: &[(usize, i64, i64)],
    is_arg: bool,
) -> Option<Vec<Expr>> {
    if aligns.is_empty() || is_arg {
        return None;
    }
    let n = shape.len();
    let mut strides = vec![Expr::int(1); n];
    for d in (0..n.saturating_sub(1)).rev() {
        let mut st = simplify(&(strides[d + 1].clone() * shape[d + 1].clone()));
        if let Some(&(_, factor, offset)) = aligns.iter().find(|a| a.0 == d) {
            // The smallest stride >= the dense one with stride % factor == offset.
            st = simplify(
                &(crate::te::floordiv(st + (factor - 1 - offset), factor) * factor + offset),
            );
        }
        strides[d] = st;
    }
    Some(strides)
}
