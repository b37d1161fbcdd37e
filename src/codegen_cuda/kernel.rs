//! Finding the GPU kernel of a lowered function and its launch configuration.
//!
//! The CUDA backend supports functions whose whole body is one kernel: the outermost loop
//! bound to `blockIdx.*`/`threadIdx.*`, with only `let`s (and `produce` markers) around it.
//! Such `let`s are pure, so the kernel recomputes them. Everything else outside the
//! thread-bound loops would be host code, which this backend does not generate:
//!
//! - a store outside every thread-bound loop, or no binding at all: the unbound-kernel
//!   error (`kernel main has no GPU thread binding: ...`);
//! - several thread-bound loop nests, or one inside a host loop, `if` or allocation:
//!   "only one kernel per function is supported yet".

use super::launch::{check_limits, loop_role, GpuAxis, LaunchConfig, LoopRole};
use crate::error::{Error, Result};
use crate::lower::ir::{LoweredFunc, Stmt};
use crate::lower::simplify::simplify;
use crate::te::{BinOp, Expr, ExprNode, Var};
use std::collections::{HashMap, HashSet};

/// The kernel of a function, ready to emit.
pub(crate) struct KernelPlan<'a> {
    /// The `let`s around the kernel, outermost first.
    pub lets: Lets<'a>,
    /// The outermost thread-bound loop.
    pub root: &'a Stmt,
    /// Grid and block sizes.
    pub launch: LaunchConfig,
    /// The value of every `let` variable around and inside the kernel, with the lets it
    /// mentions substituted (so sizes and guards can be compared as expressions of the
    /// shape variables).
    pub let_values: HashMap<u64, Expr>,
}

impl KernelPlan<'_> {
    /// The launch size of an axis.
    pub(crate) fn axis_size(&self, a: GpuAxis) -> &Expr {
        match a {
            GpuAxis::Block(d) => &self.launch.grid[d],
            GpuAxis::Thread(d) => &self.launch.block[d],
        }
    }

    /// `e` with the enclosing `let`s substituted.
    pub(crate) fn resolve(&self, e: &Expr) -> Expr {
        e.substitute(&self.let_values)
    }
}

/// Something on the host side around the kernel.
enum HostCtx {
    Loop(String),
    If,
    Alloc(String),
}

/// `let` bindings in scope, outermost first.
type Lets<'a> = Vec<(&'a Var, &'a Expr)>;

/// A thread-bound loop nest found on the host side: the loop, the lets around it, and
/// why it could not be launched once (a host construct around it), if so.
type Found<'a> = (&'a Stmt, Lets<'a>, Option<String>);

#[derive(Default)]
struct Walk<'a> {
    kernels: Vec<Found<'a>>,
    writes: Vec<String>,
    lets: Lets<'a>,
    ctx: Vec<HostCtx>,
    unknown_tag: Option<String>,
}

impl<'a> Walk<'a> {
    fn go(&mut self, s: &'a Stmt) {
        match s {
            Stmt::For(f) => match loop_role(&f.kind) {
                LoopRole::Gpu(_) => {
                    let ctx = self.ctx.last().map(|c| match c {
                        HostCtx::Loop(v) => format!(
                            "it is inside the host loop over {} (bind that loop to a GPU axis or move it inside the kernel)",
                            v
                        ),
                        HostCtx::If => "it is inside a host-side `if`".to_string(),
                        HostCtx::Alloc(b) => format!(
                            "{} is allocated outside it (attach that stage inside the kernel with compute_at)",
                            b
                        ),
                    });
                    self.kernels.push((s, self.lets.clone(), ctx));
                }
                LoopRole::Unknown => {
                    self.unknown_tag.get_or_insert_with(|| f.kind.name());
                }
                _ => {
                    self.ctx.push(HostCtx::Loop(f.var.name().to_string()));
                    self.go(&f.body);
                    self.ctx.pop();
                }
            },
            Stmt::If { then, els, .. } => {
                self.ctx.push(HostCtx::If);
                self.go(then);
                if let Some(e) = els {
                    self.go(e);
                }
                self.ctx.pop();
            }
            Stmt::Seq(v) => v.iter().for_each(|x| self.go(x)),
            Stmt::Store { .. } | Stmt::Intrinsic(_) => {
                let buf = s.written_buffer().expect("a store or call writes a buffer");
                if !self.writes.iter().any(|w| w == buf.name()) {
                    self.writes.push(buf.name().to_string());
                }
            }
            Stmt::Allocate { buf, body } => {
                self.ctx.push(HostCtx::Alloc(buf.name().to_string()));
                self.go(body);
                self.ctx.pop();
            }
            Stmt::Let { var, value, body } => {
                self.lets.push((var, value));
                self.go(body);
                self.lets.pop();
            }
            Stmt::Produce { body, .. } => self.go(body),
            Stmt::Evaluate(_) | Stmt::Barrier | Stmt::NoOp => {}
        }
    }
}

/// The message of the unbound-kernel error.
pub(crate) fn unbound_message(func: &str) -> String {
    format!(
        "kernel {} has no GPU thread binding: bind an axis to blockIdx.x/threadIdx.x (unbound GPU kernel)",
        func
    )
}

/// Find the kernel of `func` and compute its launch configuration.
pub(crate) fn plan(func: &LoweredFunc) -> Result<KernelPlan<'_>> {
    let mut w = Walk::default();
    w.go(&func.body);
    if let Some(tag) = w.unknown_tag {
        return Err(Error::Target(format!(
            "kernel {}: unknown thread binding {} (expected blockIdx.x/y/z, threadIdx.x/y/z or vthread)",
            func.name, tag
        )));
    }
    if !w.writes.is_empty() {
        return Err(Error::Target(format!(
            "{}; it writes {} outside every loop bound to blockIdx/threadIdx",
            unbound_message(&func.name),
            w.writes.join(", ")
        )));
    }
    let (root, lets, ctx) = match w.kernels.len() {
        0 => return Err(Error::Target(unbound_message(&func.name))),
        1 => w.kernels.pop().expect("one kernel"),
        n => {
            let loops: Vec<String> = w
                .kernels
                .iter()
                .map(|(s, _, _)| match s {
                    Stmt::For(f) => format!("{} ({})", f.var.name(), f.kind.name()),
                    _ => String::new(),
                })
                .collect();
            return Err(Error::Target(format!(
                "function {} has {} GPU kernels (separate loop nests bound to blockIdx/threadIdx, at {}); only one kernel per function is supported yet",
                func.name,
                n,
                loops.join(", ")
            )));
        }
    };
    if let Some(why) = ctx {
        return Err(Error::Target(format!(
            "function {}: the GPU kernel cannot be launched once: {}; only one kernel per function is supported yet",
            func.name, why
        )));
    }

    // A let may mention only the lets outside it: resolving them outermost first leaves
    // expressions of the shape variables.
    let mut let_values: HashMap<u64, Expr> = HashMap::new();
    for (v, e) in &lets {
        let resolved = e.substitute(&let_values);
        let_values.insert(v.id(), resolved);
    }
    // Lets inside the kernel too: a thread extent or an allocation size may name one.
    root.visit(&mut |s| {
        if let Stmt::Let { var, value, .. } = s {
            let resolved = value.substitute(&let_values);
            let_values.insert(var.id(), resolved);
        }
    });

    let shape_ids: HashSet<u64> = func.shape_vars.iter().map(|v| v.id()).collect();
    let mut sizes: [[Option<Expr>; 3]; 2] = Default::default();
    let mut err: Option<Error> = None;
    root.visit(&mut |s| {
        let Stmt::For(f) = s else { return };
        let LoopRole::Gpu(axis) = loop_role(&f.kind) else {
            return;
        };
        let ext = simplify(&f.extent.substitute(&let_values));
        if let Some(v) = ext.free_vars().iter().find(|v| !shape_ids.contains(&v.id())) {
            err.get_or_insert(Error::Target(format!(
                "kernel {}: the extent {} of loop {} (bound to {}) depends on {}, which is only known inside the kernel; launch sizes may depend only on the shape variables",
                func.name,
                f.extent,
                f.var.name(),
                axis.builtin(),
                v.name()
            )));
            return;
        }
        let (side, d) = match axis {
            GpuAxis::Block(d) => (0, d),
            GpuAxis::Thread(d) => (1, d),
        };
        let slot = &mut sizes[side][d];
        *slot = Some(match slot.take() {
            None => ext,
            Some(prev) if prev.structural_eq(&ext) => prev,
            Some(prev) => simplify(&Expr::new(ExprNode::Binary(BinOp::Max, prev, ext))),
        });
    });
    if let Some(e) = err {
        return Err(e);
    }
    let fin = |o: &Option<Expr>| o.clone().unwrap_or_else(|| Expr::int(1));
    let launch = LaunchConfig {
        grid: [fin(&sizes[0][0]), fin(&sizes[0][1]), fin(&sizes[0][2])],
        block: [fin(&sizes[1][0]), fin(&sizes[1][1]), fin(&sizes[1][2])],
        shape_vars: func.shape_vars.clone(),
    };
    // Constant sizes are checked now; symbolic ones when the kernel is launched.
    let c = |a: &[Expr; 3]| a.clone().map(|e| e.as_int().unwrap_or(0));
    check_limits(&c(&launch.grid), &c(&launch.block)).map_err(|e| match e {
        Error::Target(m) => Error::Target(format!("kernel {}: {}", func.name, m)),
        other => other,
    })?;
    Ok(KernelPlan {
        lets,
        root,
        launch,
        let_values,
    })
}
