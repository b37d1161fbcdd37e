//! Lowering: a schedule and its tensor expressions become a loop-IR function.
//!
//! The pipeline, in order (one pass per file; each file's `//!` doc says what it requires
//! and ensures):
//!
//! 1. [`inline`] — substitute `compute_inline` stages into their readers (TE level);
//!    then [`egraph_algebra`] — algebraic and numerical rewrites of the bodies by
//!    equality saturation (`exp(log x) -> x`, `pow(x, 2) -> x*x`, a softplus that does
//!    not overflow), repeated subexpressions bound once by `let` (TE level);
//! 2. [`infer_bound`] — regions, extents, offsets and guards of every stage;
//! 3. [`schedule_ops`] — loop nests, attachments, allocations, reduction init/update;
//! 4. [`storage_sync`] — barriers around shared-memory producers inside GPU kernels;
//! 5. [`double_buffer`] — two copies of `double_buffer` stages, the next filled while the
//!    current one is read;
//! 6. [`storage_flatten`] — one flat index per access;
//! 7. [`simplify`] — canonical index arithmetic, range-aware, decided guards removed;
//!    then [`egraph_index`] — index expressions that still divide (`floordiv`/`floormod`)
//!    saturated with `egg` under the loop ranges, replaced where no longer needed
//!    (`floordiv(x, 19) * 19 + floormod(x, 19) -> x` after a fuse);
//! 8. [`loop_partition`] — split loops of non-dividing splits into a guard-free main part
//!    and a guarded tail, and loops whose body selects on a boundary condition (padding)
//!    into select-free interiors and the boundary iterations that keep the select; then
//!    [`simplify`] again (narrower ranges decide more);
//! 9. [`vectorize_copies`] — plain copy and fill loops (a padding stage's interior)
//!    split into 4-iteration chunks marked `vectorized` and a tail; then [`vectorize`] —
//!    `vectorized` loops become 128-bit vector operations;
//! 10. [`unroll`] — `unrolled` loops become copies of their body;
//! 11. [`simplify`] again, then [`hoist`] — loop-invariant expressions bound by `let`
//!     outside the loops that do not change them;
//! 12. [`verify`] — between passes in debug builds, and at the end always; then
//!     [`thread_limits`] checks GPU launch limits.
//!
//! `LOOPFORGE_DUMP_IR=1` prints the IR after every pass ("(unchanged)" when a pass did
//! nothing). The two e-graph passes add their stop reasons to the pass name, e.g.
//! `egraph_index [egraph: 2 runs, 2 saturated, max 3 iterations, max 41 nodes, 1
//! rewritten]`; `egraph_algebra` prints the bodies it rewrote (before the loop IR exists).
//! Their limits are [`LowerOptions::egraph`] (defaults from [`crate::egraph::Limits::from_env`]).

pub mod bound;
pub mod double_buffer;
pub mod egraph_algebra;
pub mod egraph_index;
pub mod hoist;
pub mod infer_bound;
pub mod inline;
pub mod ir;
pub mod loop_partition;
pub mod schedule_ops;
pub mod simplify;
pub mod storage_flatten;
pub mod storage_sync;
pub(crate) mod tensorize;
pub mod thread_limits;
pub mod unroll;
pub mod vectorize;
pub mod vectorize_copies;
pub mod verify;

use crate::error::{internal, Error, Result};
use crate::schedule::Schedule;
use crate::te::{Expr, ExprNode, Tensor, Var};
use ir::{Buffer, LoweredFunc, Stmt};
use std::collections::HashSet;

/// Options of the lowering pipeline.
#[derive(Clone, Debug, PartialEq)]
pub struct LowerOptions {
    /// Limits of every e-graph run (`egraph_algebra`, `egraph_index`).
    pub egraph: crate::egraph::Limits,
}

impl Default for LowerOptions {
    /// The default limits, overridden by the `LOOPFORGE_EGRAPH_*` environment variables.
    fn default() -> LowerOptions {
        LowerOptions {
            egraph: crate::egraph::Limits::from_env(),
        }
    }
}

/// Lower `schedule` to a loop-IR function whose parameters are `args` (inputs and outputs,
/// in call order; TVM's `tvm.lower(s, [A, B, C])`).
pub fn lower(schedule: &Schedule, args: &[Tensor]) -> Result<LoweredFunc> {
    lower_named(schedule, args, "main")
}

/// [`lower`] with a function name.
pub fn lower_named(schedule: &Schedule, args: &[Tensor], name: &str) -> Result<LoweredFunc> {
    let dump = std::env::var("LOOPFORGE_DUMP_IR")
        .map(|v| v == "1")
        .unwrap_or(false);
    let mut sink = |pass: &str, ir: Option<&str>| match ir {
        Some(ir) => eprintln!("// after {}:\n{}", pass, ir),
        None => eprintln!("// after {}: (unchanged)", pass),
    };
    run_pipeline(
        schedule,
        args,
        name,
        &LowerOptions::default(),
        if dump { Some(&mut sink) } else { None },
    )
}

/// [`lower`], also returning the IR after every pass: `(pass, Some(ir))`, or
/// `(pass, None)` when the pass changed nothing. This is what `LOOPFORGE_DUMP_IR=1` prints.
pub fn lower_traced(schedule: &Schedule, args: &[Tensor]) -> Result<(LoweredFunc, PassDumps)> {
    lower_traced_with(schedule, args, &LowerOptions::default())
}

/// [`lower_traced`] with explicit options (e.g. e-graph limits).
pub fn lower_traced_with(
    schedule: &Schedule,
    args: &[Tensor],
    opts: &LowerOptions,
) -> Result<(LoweredFunc, PassDumps)> {
    let mut steps = vec![];
    let mut sink =
        |pass: &str, ir: Option<&str>| steps.push((pass.to_string(), ir.map(|s| s.to_string())));
    let f = run_pipeline(schedule, args, "main", opts, Some(&mut sink))?;
    Ok((f, steps))
}

/// The IR after each pass: `(pass, Some(ir))`, or `(pass, None)` when unchanged. The
/// e-graph passes' names carry their stop reasons (`egraph_index [egraph: ...]`);
/// `egraph_algebra`'s text is the rewritten bodies, not loop IR.
pub type PassDumps = Vec<(String, Option<String>)>;

type Sink<'a> = &'a mut dyn FnMut(&str, Option<&str>);

fn run_pipeline(
    schedule: &Schedule,
    args: &[Tensor],
    name: &str,
    opts: &LowerOptions,
    mut dump: Option<Sink>,
) -> Result<LoweredFunc> {
    let params = check_args(schedule, args)?;

    let eff = inline::inline_bodies(schedule);
    check_reads(&eff)?;
    let order: Vec<String> = schedule.stages.iter().map(|s| s.name.clone()).collect();
    let (eff, summary, rewritten) = egraph_algebra::run(&eff, &order, &opts.egraph);
    if let Some(d) = dump.as_mut() {
        d(
            &format!("egraph_algebra [{}]", summary),
            rewritten.as_deref(),
        );
    }
    let bounds = infer_bound::infer(schedule, &eff, args)?;
    let body = schedule_ops::build_body(schedule, &bounds)?;
    let mut f = LoweredFunc {
        name: name.to_string(),
        params,
        shape_vars: vec![],
        body,
    };
    f.shape_vars = shape_vars(&f);
    let mut p = Pipeline {
        f,
        dump,
        last: String::new(),
    };
    p.after("schedule_ops", false)?;
    p.f.body = storage_sync::insert_barriers(&p.f.body);
    p.after("storage_sync", false)?;
    let db: HashSet<String> = schedule
        .stages
        .iter()
        .filter(|s| s.double_buffer)
        .map(|s| s.name.clone())
        .collect();
    p.f.body = double_buffer::inject(&p.f.body, &db)?;
    p.after("double_buffer", false)?;

    p.f.body = storage_flatten::flatten(&p.f.body);
    p.after("storage_flatten", true)?;
    p.f.body = simplify::simplify_stmt(&p.f.body);
    p.after("simplify", true)?;
    let (body, summary) = egraph_index::run(&p.f.body, &opts.egraph);
    p.f.body = body;
    p.after(&format!("egraph_index [{}]", summary), true)?;
    p.f.body = loop_partition::partition(&p.f.body);
    p.after("loop_partition", true)?;
    // Partitioning narrows loop ranges: extents that depended on them may now be constant.
    p.f.body = simplify::simplify_stmt(&p.f.body);
    p.after("simplify", true)?;
    p.f.body = vectorize_copies::vectorize_copies(&p.f.body);
    p.after("vectorize_copies", true)?;
    p.f.body = vectorize::vectorize(&p.f.body);
    p.after("vectorize", true)?;
    p.f.body = unroll::unroll(&p.f.body);
    p.after("unroll", true)?;
    p.f.body = simplify::simplify_stmt(&p.f.body);
    p.after("simplify", true)?;
    p.f.body = hoist::hoist(&p.f.body);
    p.after("hoist", true)?;
    verify::verify(&p.f, true).map_err(|m| internal(m, &p.f))?;
    thread_limits::check(&p.f.name, &p.f.body)?;
    Ok(p.f)
}

struct Pipeline<'a> {
    f: LoweredFunc,
    dump: Option<Sink<'a>>,
    last: String,
}

impl Pipeline<'_> {
    fn after(&mut self, pass: &str, flat: bool) -> Result<()> {
        if let Some(d) = self.dump.as_mut() {
            let now = self.f.to_string();
            d(pass, if now == self.last { None } else { Some(&now) });
            self.last = now;
        }
        if cfg!(debug_assertions) {
            verify::verify(&self.f, flat)
                .map_err(|m| internal(format!("after pass {}: {}", pass, m), &self.f))?;
        }
        Ok(())
    }
}

/// The parameter buffers for `args`, checking that the computation is closed over them.
fn check_args(s: &Schedule, args: &[Tensor]) -> Result<Vec<Buffer>> {
    let mut seen = HashSet::new();
    let mut params = vec![];
    for a in args {
        if !seen.insert(a.name()) {
            return Err(Error::Lower(format!(
                "{} appears twice in the argument list",
                a.name()
            )));
        }
        let known = s.placeholders.iter().any(|p| p.op.name == a.op.name)
            || s.stages.iter().any(|st| st.name == a.op.name);
        if !known {
            return Err(Error::Lower(format!(
                "argument {} is not part of this schedule's computation (its stages: {})",
                a.name(),
                s.stages
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        if let Ok(st) = s.stage(a.op.name.as_str()) {
            if st.attach == crate::schedule::Attach::Inline {
                return Err(Error::Lower(format!(
                    "argument {} was inlined (compute_inline); an argument must be materialized",
                    a.name()
                )));
            }
        }
        params.push(Buffer::new(
            a.name(),
            a.dtype(),
            a.shape().to_vec(),
            ir::Scope::Global,
        ));
    }
    for p in &s.placeholders {
        if !args.iter().any(|a| a.op.name == p.op.name) {
            let readers = s.readers_of(&p.op.name);
            return Err(Error::Lower(format!(
                "placeholder {} is read by {} but is not in the argument list; pass it to lower/build",
                p.op.name,
                readers.join(", ")
            )));
        }
    }
    for o in &s.outputs {
        for v in 0..o.op.num_outputs() {
            let name = o.op.output_name(v);
            if !args.iter().any(|a| a.name() == name) {
                return Err(Error::Lower(format!(
                    "output {} is not in the argument list; pass it to lower/build",
                    name
                )));
            }
        }
    }
    Ok(params)
}

/// Every read must have one integer index per dimension, and a reduction must be the
/// whole body of its compute (as in TVM).
fn check_reads(eff: &std::collections::HashMap<String, Vec<Expr>>) -> Result<()> {
    let mut names: Vec<&String> = eff.keys().collect();
    names.sort();
    for name in names {
        let bodies = &eff[name];
        let n_red = bodies
            .iter()
            .filter(|b| matches!(b.node(), ExprNode::Reduce(_)))
            .count();
        let nested = |e: &Expr| {
            let mut found = false;
            e.visit(&mut |x| {
                found |= matches!(x.node(), ExprNode::Reduce(_));
                !found
            });
            found
        };
        let misplaced = bodies.iter().any(|b| match b.node() {
            ExprNode::Reduce(r) => r.source.iter().any(nested),
            _ => nested(b),
        });
        if misplaced || (n_red > 0 && n_red < bodies.len()) {
            return Err(Error::InvalidExpr(format!(
                "in {}: a reduction must be the whole body of its compute (write `compute(.., sum(..))`, then use that tensor in a second compute for anything around the sum)",
                name
            )));
        }
    }
    let mut err = None;
    for bodies in eff.values() {
        for b in bodies {
            b.visit(&mut |e| {
                if let ExprNode::Read(t, idx) = e.node() {
                    if err.is_none() {
                        if let Err(x) = t.try_at(idx) {
                            err = Some(x);
                        }
                    }
                }
                true
            });
        }
    }
    match err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Free variables of the function: its symbolic dimensions, in first-use order.
fn shape_vars(f: &LoweredFunc) -> Vec<Var> {
    let mut out: Vec<Var> = vec![];
    for p in &f.params {
        for d in p.shape() {
            for v in d.free_vars() {
                if !out.contains(&v) {
                    out.push(v);
                }
            }
        }
    }
    let bound = bound_vars(&f.body);
    f.body.visit_exprs(&mut |e| {
        for v in e.free_vars() {
            if !bound.contains(&v.id()) && !out.contains(&v) {
                out.push(v);
            }
        }
    });
    f.body.visit(&mut |s| {
        if let Stmt::Allocate { buf, .. } = s {
            for d in buf.shape() {
                for v in d.free_vars() {
                    if !bound.contains(&v.id()) && !out.contains(&v) {
                        out.push(v);
                    }
                }
            }
        }
    });
    out
}

fn bound_vars(s: &Stmt) -> HashSet<u64> {
    let mut b = HashSet::new();
    s.visit(&mut |x| match x {
        Stmt::For(f) => {
            b.insert(f.var.id());
        }
        Stmt::Let { var, .. } => {
            b.insert(var.id());
        }
        _ => {}
    });
    b
}
