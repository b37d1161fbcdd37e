//! Pass: build the loop nests (TVM's ScheduleOps / MakeLoopNest).
//!
//! Requires: bounds inference. Ensures: one loop per leaf axis (in leaf order, with its
//! annotation as the loop kind), stages computed at their attach points inside their
//! consumer's loops (allocated there over their inferred region), root intermediates
//! allocated around the whole body, reductions split into an init nest (placed just before
//! the first reduce loop) and an update (a CPU intrinsic's first slice computes instead,
//! with no init nest), non-dividing splits guarded by `if`s around the
//! innermost body, tensor reads replaced by multi-dimensional buffer loads relative to
//! each buffer's origin, and tensorized nests replaced by intrinsic calls (`tensorize.rs`).

use super::infer_bound::{Bounds, StageInfo};
use super::ir::{Buffer, IntrinMode, IntrinsicCall, Stmt};
use super::simplify::simplify;
use crate::error::{Error, Result};
use crate::schedule::{Attach, Schedule};
use crate::te::{and, Expr, ExprNode, IterKind, Var};
use std::collections::HashMap;

/// Build the function body for the schedule.
pub fn build_body(s: &Schedule, b: &Bounds) -> Result<Stmt> {
    let mut parts = vec![];
    let mut allocs: Vec<Buffer> = vec![];
    for (si, st) in s.stages.iter().enumerate() {
        if st.attach != Attach::Root {
            continue;
        }
        let info = b.stages[si].as_ref().expect("root stages have bounds");
        parts.push(produce(s, b, info)?);
        if !info.is_arg {
            allocs.extend(info.buffers.iter().cloned());
        }
    }
    Ok(allocate_around(allocs, Stmt::seq(parts)))
}

/// Replace reads by loads relative to buffer origins.
fn to_loads(e: &Expr, b: &Bounds) -> Result<Expr> {
    let mut err: Option<Error> = None;
    let r = e.mutate(&mut |x| match x.node() {
        ExprNode::Read(t, idx) => {
            let (buf, origin) = match b.buffer_of(t) {
                Some(v) => v,
                None => {
                    err = Some(Error::Lower(format!(
                        "tensor {} is read but is neither an input nor a stage of this schedule",
                        t.name()
                    )));
                    return Some(x.clone());
                }
            };
            let mut out = vec![];
            for (d, i) in idx.iter().enumerate() {
                let i = match to_loads(i, b) {
                    Ok(v) => v,
                    Err(e) => {
                        err = Some(e);
                        return Some(x.clone());
                    }
                };
                out.push(match origin {
                    Some(o) if o[d].as_int() != Some(0) => simplify(&(i - o[d].clone())),
                    _ => i,
                });
            }
            Some(buf.load(out))
        }
        _ => None,
    });
    match err {
        Some(e) => Err(e),
        None => Ok(r),
    }
}

/// The conjunction of the stage's guards of non-dividing splits (only those of
/// data-parallel loops with `data_only`), leaving out `absorbed` (a partial tile's, which
/// its call's extents express); `None` when nothing is left.
fn stage_guard(info: &StageInfo, data_only: bool, absorbed: &[Expr]) -> Option<Expr> {
    conj(
        info.guards
            .iter()
            .filter(|g| !data_only || g.1 == IterKind::DataPar)
            .filter(|g| !absorbed.iter().any(|a| a.structural_eq(&g.0)))
            .map(|g| g.0.clone())
            .collect(),
    )
}

fn produce(s: &Schedule, b: &Bounds, info: &StageInfo) -> Result<Stmt> {
    let st = &s.stages[info.si];
    let n_root = st.n_data + st.n_reduce;
    let vmap: HashMap<u64, Expr> = (0..n_root)
        .map(|r| {
            (
                st.axes[r].var.id(),
                simplify(&(info.root_min[r].clone() + info.off[r].clone())),
            )
        })
        .collect();
    let store_idx: Vec<Expr> = (0..st.n_data)
        .map(|d| simplify(&(vmap[&st.axes[d].var.id()].clone() - info.origin[d].clone())))
        .collect();
    let all_guard = stage_guard(info, false, &[]);
    let data_guard = stage_guard(info, true, &[]);
    let guard = |cond: &Option<Expr>, s: Stmt| match cond {
        Some(c) => Stmt::if_(c.clone(), s),
        None => s,
    };

    let (init, main) = match info.bodies[0].node() {
        ExprNode::Reduce(r) => {
            let src: Vec<Expr> = r
                .source
                .iter()
                .map(|x| to_loads(&x.substitute(&vmap), b))
                .collect::<Result<_>>()?;
            let acc: Vec<Expr> = info
                .buffers
                .iter()
                .map(|buf| buf.load(store_idx.clone()))
                .collect();
            let new = r.combiner.combine(&acc, &src);
            let update = if new.len() == 1 {
                Stmt::Store {
                    buf: info.buffers[0].clone(),
                    indices: store_idx.clone(),
                    value: new[0].clone(),
                }
            } else {
                // Evaluate every combined value before storing any of them.
                let tmps: Vec<Var> = new
                    .iter()
                    .enumerate()
                    .map(|(v, x)| Var::new(format!("{}.v{}.next", st.name, v), x.dtype()))
                    .collect();
                let mut stores: Vec<Stmt> = info
                    .buffers
                    .iter()
                    .zip(&tmps)
                    .map(|(buf, t)| Stmt::Store {
                        buf: buf.clone(),
                        indices: store_idx.clone(),
                        value: t.expr(),
                    })
                    .collect();
                let mut body = Stmt::seq(std::mem::take(&mut stores));
                for (t, x) in tmps.iter().zip(&new).rev() {
                    body = Stmt::Let {
                        var: t.clone(),
                        value: x.clone(),
                        body: Box::new(body),
                    };
                }
                body
            };
            let init = Stmt::seq(
                info.buffers
                    .iter()
                    .zip(&r.combiner.node().identity)
                    .map(|(buf, id)| Stmt::Store {
                        buf: buf.clone(),
                        indices: store_idx.clone(),
                        value: id.clone(),
                    })
                    .collect(),
            );
            (Some(guard(&data_guard, init)), guard(&all_guard, update))
        }
        _ => {
            let stores = info
                .buffers
                .iter()
                .zip(&info.bodies)
                .map(|(buf, body)| {
                    Ok(Stmt::Store {
                        buf: buf.clone(),
                        indices: store_idx.clone(),
                        value: to_loads(&body.substitute(&vmap), b)?,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            (None, guard(&all_guard, Stmt::seq(stores)))
        }
    };

    let leaves = &st.leaves;
    let first_red = leaves
        .iter()
        .position(|&l| st.axes[l].kind == IterKind::Reduce);
    // A tensorized nest: no loops from `stop` inward, one intrinsic call instead (which
    // starts the reduction itself when it begins inside the nest).
    let (stop, main, absorbed) = match &st.tensorize {
        Some((axis, intrin)) => {
            let t =
                super::tensorize::call_for(s, b, info, &vmap, &store_idx, axis, intrin, first_red)?;
            (t.pos, t.call, t.absorbed)
        }
        None => (leaves.len(), main, vec![]),
    };
    // Inside a tensorized nest the init is the intrinsic's too (mode Init, the output
    // operand only). Guards of non-dividing splits of the loops outside the nest keep the
    // calls inside the stage's region; those inside it are the call's extents (a partial
    // tile: `call_for` refuses any other).
    let data_guard = stage_guard(info, true, &absorbed);
    let all_guard = stage_guard(info, false, &absorbed);
    let (init, main) = match &main {
        Stmt::Intrinsic(c) if stop < leaves.len() => {
            match first_slice_computes(st, info, stop, c) {
                // No init nest: the first slice of the reduction computes the tile.
                Some(main) => (None, guard(&all_guard, main)),
                None => (
                    Some(guard(
                        &data_guard,
                        Stmt::Intrinsic(IntrinsicCall {
                            intrin: c.intrin.clone(),
                            operands: c.operands.last().into_iter().cloned().collect(),
                            mode: IntrinMode::Init,
                            extents: c.extents.clone(),
                        }),
                    )),
                    guard(&all_guard, main),
                ),
            }
        }
        _ => (init, main),
    };
    let init_nest = |from: usize| -> Stmt {
        // Loops over the data-parallel leaves inside the first reduce loop (down to the
        // tensorized nest), with fresh vars.
        let mut body = init.clone().unwrap_or(Stmt::NoOp);
        let mut fresh: HashMap<u64, Expr> = HashMap::new();
        let mut loops = vec![];
        for &l in &leaves[from..stop.max(from)] {
            let a = &st.axes[l];
            if a.kind == IterKind::DataPar {
                let v = Var::new(format!("{}.init", a.name), a.var.dtype());
                fresh.insert(a.var.id(), v.expr());
                loops.push((v, info.ext[l].clone(), a.annotation.clone()));
            }
        }
        body = body.substitute(&fresh);
        for (v, e, k) in loops.into_iter().rev() {
            body = Stmt::for_(v, Expr::int(0), e.substitute(&fresh), k, body);
        }
        body
    };

    let has_init = init.is_some();
    let mut stmt = main;
    for pos in (0..stop).rev() {
        // (A tensorized nest that starts with the reduction initializes it itself.)
        if has_init && first_red == Some(pos + 1) && pos + 1 < stop {
            stmt = Stmt::seq(vec![init_nest(pos + 1), stmt]);
        }
        let ax = &st.axes[leaves[pos]];
        stmt = attach_here(s, b, &st.name, &ax.name, stmt)?;
        stmt = Stmt::for_(
            ax.var.clone(),
            Expr::int(0),
            info.ext[leaves[pos]].clone(),
            ax.annotation.clone(),
            stmt,
        );
    }
    if has_init && first_red == Some(0) && stop > 0 {
        stmt = Stmt::seq(vec![init_nest(0), stmt]);
    }
    Ok(Stmt::Produce {
        name: st.name.clone(),
        body: Box::new(stmt),
    })
}

/// For an update call `c` of a CPU intrinsic (the reduction started outside the nest,
/// whose loops are `stage.leaves[..stop]`): `if (every reduce loop outside is at its
/// first iteration) c in mode Compute else c`, BLIS's `beta = 0` on the first slice
/// of `k`. Each tile is then written by its first call instead of being zeroed by an
/// init nest and read back: one pass over the output less. The reduce loops run from 0
/// and at least once (constant extents), so every tile's first call is one with them all
/// at 0; a CUDA intrinsic keeps its init (tensor-core fragments are filled once, before
/// their loop). `None` where that does not apply.
fn first_slice_computes(
    st: &crate::schedule::Stage,
    info: &StageInfo,
    stop: usize,
    c: &IntrinsicCall,
) -> Option<Stmt> {
    if c.mode != IntrinMode::Update || c.intrin.cpu.is_none() || c.intrin.cuda.is_some() {
        return None;
    }
    let mut first: Option<Expr> = None;
    for &l in &st.leaves[..stop] {
        if st.axes[l].kind != IterKind::Reduce {
            continue;
        }
        if info.ext[l].as_int().is_none_or(|n| n < 1) {
            return None;
        }
        let at0 = crate::te::eq(st.axes[l].var.expr(), Expr::int(0));
        first = Some(match first {
            Some(f) => and(f, at0),
            None => at0,
        });
    }
    let compute = Stmt::Intrinsic(IntrinsicCall {
        mode: IntrinMode::Compute,
        ..c.clone()
    });
    Some(Stmt::If {
        cond: first?,
        then: Box::new(compute),
        els: Some(Box::new(Stmt::Intrinsic(c.clone()))),
    })
}

/// Put the stages attached at `stage.axis` (with their allocations) before `rest`.
fn attach_here(s: &Schedule, b: &Bounds, stage: &str, axis: &str, rest: Stmt) -> Result<Stmt> {
    let mut parts = vec![];
    let mut allocs = vec![];
    for (si, st) in s.stages.iter().enumerate() {
        if let Attach::At { stage: p, axis: a } = &st.attach {
            if p == stage && a == axis {
                let info = b.stages[si].as_ref().expect("attached stages have bounds");
                parts.push(produce(s, b, info)?);
                if !info.is_arg {
                    allocs.extend(info.buffers.iter().cloned());
                }
            }
        }
    }
    if parts.is_empty() {
        return Ok(rest);
    }
    parts.push(rest);
    Ok(allocate_around(allocs, Stmt::seq(parts)))
}

/// `body` inside allocations of `bufs` (the first outermost).
fn allocate_around(bufs: Vec<Buffer>, body: Stmt) -> Stmt {
    bufs.into_iter()
        .rev()
        .fold(body, |body, buf| Stmt::Allocate {
            buf,
            body: Box::new(body),
        })
}

fn conj(v: Vec<Expr>) -> Option<Expr> {
    v.into_iter().reduce(and)
}
