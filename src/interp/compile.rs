//! Translation of a [`LoweredFunc`] into the interpreter's [`Program`].
//!
//! Resolves every variable to an environment slot (one per binding site, so shadowing is
//! honoured) and every buffer, by name, to the innermost enclosing `Allocate` or to a
//! parameter. Checks what can be checked statically (operand types, buffer types and
//! dimensions, thread tags) and reports malformed IR as an error message. A variable used
//! where it is not bound compiles to [`CNode::Undef`], an error only when evaluated.
//!
//! GPU code: the outermost loop bound to `blockIdx.*`/`threadIdx.*` starts a kernel
//! ([`Instr::Launch`]); inside it every such loop becomes a binding ([`Instr::Bind`]) and
//! `shared`/`local` allocations become per-block/per-thread. `vthread` loops are serial.

use super::program::{Access, Axis, BufInfo, CExpr, CNode, Instr, KernelInfo, MemClass, Program};
use super::value::{float_const, int_const, R};
use crate::lower::ir::{Buffer, ForKind, LoweredFunc, Scope, Stmt};
use crate::te::{DType, Expr, ExprNode, MathFn, Var};
use std::collections::HashMap;

/// Compile `func`; the error message says what is malformed.
pub(crate) fn compile(func: &LoweredFunc) -> R<Program> {
    let mut c = Compiler::default();
    for p in &func.params {
        if c.bufs.contains_key(p.name()) {
            return Err(format!("two parameters are named {}", p.name()));
        }
        c.push_buf(p, p.shape().len());
    }
    let mut shape_var_slots = Vec::new();
    for v in &func.shape_vars {
        if !v.dtype().is_int() {
            return Err(format!(
                "shape variable {} has non-integer type {}",
                v.name(),
                v.dtype()
            ));
        }
        shape_var_slots.push((c.bind(v), v.dtype()));
    }
    c.stmt(&func.body)?;
    Ok(Program {
        code: c.code,
        n_slots: c.n_slots,
        bufs: c.buf_info,
        shape_var_slots,
    })
}

/// What a loop's kind means to the interpreter.
enum LoopKind {
    Serial,
    Gpu(Axis),
}

fn loop_kind(k: &ForKind) -> R<LoopKind> {
    let tag = match k {
        ForKind::ThreadBinding(t) => t.as_str(),
        _ => return Ok(LoopKind::Serial),
    };
    if tag.starts_with("vthread") || tag.starts_with("cthread") {
        return Ok(LoopKind::Serial);
    }
    let dim = match tag.rsplit('.').next() {
        Some("x") => 0,
        Some("y") => 1,
        Some("z") => 2,
        _ => usize::MAX,
    };
    match tag.split('.').next() {
        Some("blockIdx") if dim < 3 && tag.len() == 10 => Ok(LoopKind::Gpu(Axis::Block(dim))),
        Some("threadIdx") if dim < 3 && tag.len() == 11 => Ok(LoopKind::Gpu(Axis::Thread(dim))),
        _ => Err(format!(
            "unknown thread tag \"{}\" (expected blockIdx.x/y/z, threadIdx.x/y/z or vthread)",
            tag
        )),
    }
}

/// The buffers allocated inside the kernel being compiled.
#[derive(Default)]
struct KernelCtx {
    block_bufs: Vec<usize>,
    thread_bufs: Vec<usize>,
}

#[derive(Default)]
struct Compiler {
    /// Var id -> stack of slots (innermost binding last).
    vars: HashMap<u64, Vec<usize>>,
    n_slots: usize,
    /// Static lanes of the value held by each slot.
    slot_lanes: Vec<u32>,
    /// Buffer name -> stack of buffer slots.
    bufs: HashMap<String, Vec<usize>>,
    buf_info: Vec<BufInfo>,
    code: Vec<Instr>,
    kernel: Option<KernelCtx>,
}

impl Compiler {
    fn new_slot(&mut self) -> usize {
        self.n_slots += 1;
        self.slot_lanes.push(1);
        self.n_slots - 1
    }
    /// Bind `v` to a new slot holding a scalar.
    fn bind(&mut self, v: &Var) -> usize {
        self.bind_lanes(v, 1)
    }
    /// Bind `v` to a new slot holding `lanes` lanes.
    fn bind_lanes(&mut self, v: &Var, lanes: u32) -> usize {
        let s = self.new_slot();
        self.slot_lanes[s] = lanes;
        self.vars.entry(v.id()).or_default().push(s);
        s
    }
    fn unbind(&mut self, v: &Var) {
        if let Some(st) = self.vars.get_mut(&v.id()) {
            st.pop();
        }
    }
    fn push_buf(&mut self, b: &Buffer, ndim: usize) -> usize {
        let slot = self.buf_info.len();
        self.buf_info.push(BufInfo {
            name: b.name().to_string(),
            dtype: b.dtype(),
            ndim,
        });
        self.bufs
            .entry(b.name().to_string())
            .or_default()
            .push(slot);
        slot
    }
    fn pop_buf(&mut self, b: &Buffer) {
        if let Some(st) = self.bufs.get_mut(b.name()) {
            st.pop();
        }
    }
    fn emit(&mut self, i: Instr) -> usize {
        self.code.push(i);
        self.code.len() - 1
    }
    fn here(&self) -> usize {
        self.code.len()
    }

    fn stmt(&mut self, s: &Stmt) -> R<()> {
        match s {
            Stmt::For(f) => {
                if !f.var.dtype().is_int() {
                    return Err(format!(
                        "loop variable {} has non-integer type {}",
                        f.var.name(),
                        f.var.dtype()
                    ));
                }
                match loop_kind(&f.kind)? {
                    LoopKind::Gpu(_) if self.kernel.is_none() => self.kernel(s),
                    LoopKind::Gpu(axis) => {
                        let min = self.int_expr(&f.min, "loop min")?;
                        let extent = self.int_expr(&f.extent, "loop extent")?;
                        let var = self.bind(&f.var);
                        let at = self.emit(Instr::Jump(0));
                        self.stmt(&f.body)?;
                        self.unbind(&f.var);
                        let exit = self.here();
                        self.code[at] = Instr::Bind {
                            var,
                            dt: f.var.dtype(),
                            axis,
                            min,
                            extent,
                            exit,
                        };
                        Ok(())
                    }
                    LoopKind::Serial => {
                        let min = self.int_expr(&f.min, "loop min")?;
                        let extent = self.int_expr(&f.extent, "loop extent")?;
                        let end = self.new_slot();
                        let var = self.bind(&f.var);
                        let dt = f.var.dtype();
                        let at = self.emit(Instr::Jump(0));
                        self.stmt(&f.body)?;
                        self.unbind(&f.var);
                        self.emit(Instr::LoopNext {
                            var,
                            end,
                            dt,
                            body: at + 1,
                        });
                        let exit = self.here();
                        self.code[at] = Instr::LoopInit {
                            var,
                            end,
                            dt,
                            min,
                            extent,
                            exit,
                        };
                        Ok(())
                    }
                }
            }
            Stmt::If { cond, then, els } => {
                let cond = self.expr(cond)?;
                if cond.dt.is_float() {
                    return Err(format!("if condition has type {}", cond.dt));
                }
                let j = self.emit(Instr::Jump(0));
                self.stmt(then)?;
                match els {
                    Some(e) => {
                        let k = self.emit(Instr::Jump(0));
                        self.code[j] = Instr::JumpIfNot {
                            cond,
                            target: self.here(),
                        };
                        self.stmt(e)?;
                        self.code[k] = Instr::Jump(self.here());
                    }
                    None => {
                        self.code[j] = Instr::JumpIfNot {
                            cond,
                            target: self.here(),
                        }
                    }
                }
                Ok(())
            }
            Stmt::Seq(v) => v.iter().try_for_each(|s| self.stmt(s)),
            Stmt::Store {
                buf,
                indices,
                value,
            } => {
                let acc = self.access(buf, indices, "store to")?;
                let value = self.expr(value)?;
                if value.dt != buf.dtype() {
                    return Err(format!(
                        "store of a {} value into buffer {} of type {}",
                        value.dt,
                        buf.name(),
                        buf.dtype()
                    ));
                }
                self.emit(Instr::Store { acc, value });
                Ok(())
            }
            Stmt::Allocate { buf, body } => {
                let shape = buf
                    .shape()
                    .iter()
                    .map(|e| self.int_expr(e, "allocation extent"))
                    .collect::<R<Vec<_>>>()?;
                let class = match (&self.kernel, buf.scope()) {
                    (None, _) => MemClass::Host,
                    (Some(_), Scope::Shared) => MemClass::Block,
                    (Some(_), Scope::Local | Scope::Fragment(_)) => MemClass::Thread,
                    (Some(_), Scope::Global) => {
                        return Err(format!(
                            "global-scope allocation of {} inside a GPU kernel (use shared or local scope, or allocate it outside the kernel)",
                            buf.name()
                        ))
                    }
                };
                let slot = self.push_buf(buf, buf.shape().len());
                if let Some(k) = &mut self.kernel {
                    match class {
                        MemClass::Block => k.block_bufs.push(slot),
                        MemClass::Thread => k.thread_bufs.push(slot),
                        MemClass::Host => {}
                    }
                }
                self.emit(Instr::Alloc {
                    buf: slot,
                    class,
                    shape,
                });
                self.stmt(body)?;
                self.pop_buf(buf);
                self.emit(Instr::Free { buf: slot, class });
                Ok(())
            }
            Stmt::Let { var, value, body } => {
                let value = self.expr(value)?;
                if value.dt != var.dtype() {
                    return Err(format!(
                        "let {}: {} bound to a {} value",
                        var.name(),
                        var.dtype(),
                        value.dt
                    ));
                }
                let slot = self.bind_lanes(var, value.lanes);
                self.emit(Instr::Let { slot, value });
                self.stmt(body)?;
                self.unbind(var);
                Ok(())
            }
            Stmt::Produce { body, .. } => self.stmt(body),
            Stmt::Evaluate(e) => {
                let e = self.expr(e)?;
                self.emit(Instr::Eval(e));
                Ok(())
            }
            Stmt::Intrinsic(c) => {
                // The declared semantics on the call's views: the oracle. A
                // warp-collective call runs once per warp, in its first thread (which
                // therefore holds whole fragments).
                let r = crate::intrinsics::reference_stmt(c).map_err(|e| e.to_string())?;
                let collective = c.intrin.cuda.is_some_and(|i| i.warp_collective);
                if collective && self.kernel.is_some() {
                    let at = self.emit(Instr::WarpLeaderOnly { target: 0 });
                    self.stmt(&r)?;
                    self.code[at] = Instr::WarpLeaderOnly {
                        target: self.here(),
                    };
                    Ok(())
                } else {
                    self.stmt(&r)
                }
            }
            Stmt::Barrier => {
                if self.kernel.is_some() {
                    self.emit(Instr::Barrier);
                }
                Ok(())
            }
            Stmt::NoOp => Ok(()),
        }
    }

    /// Compile the kernel whose outermost thread-bound loop is `s`.
    fn kernel(&mut self, s: &Stmt) -> R<()> {
        let mut found: Vec<(String, Expr)> = Vec::new();
        s.visit(&mut |x| {
            if let Stmt::For(f) = x {
                if let ForKind::ThreadBinding(t) = &f.kind {
                    found.push((t.clone(), f.extent.clone()));
                }
            }
        });
        let mut dims = Vec::new();
        for (tag, ext) in found {
            if let LoopKind::Gpu(axis) = loop_kind(&ForKind::ThreadBinding(tag.clone()))? {
                // Compiled where the kernel starts: vars bound inside it are undefined here.
                dims.push((axis, tag, self.int_expr(&ext, "thread extent")?));
            }
        }
        let at = self.emit(Instr::Jump(0));
        self.kernel = Some(KernelCtx::default());
        let r = self.stmt(s);
        let ctx = self.kernel.take().unwrap_or_default();
        r?;
        self.emit(Instr::KernelEnd);
        let info = KernelInfo {
            dims,
            block_bufs: ctx.block_bufs,
            thread_bufs: ctx.thread_bufs,
            end: self.here(),
        };
        self.code[at] = Instr::Launch(Box::new(info));
        Ok(())
    }

    fn int_expr(&mut self, e: &Expr, what: &str) -> R<CExpr> {
        let c = self.expr(e)?;
        if !c.dt.is_int() {
            return Err(format!("{} {} has non-integer type {}", what, e, c.dt));
        }
        Ok(c)
    }

    fn access(&mut self, b: &Buffer, indices: &[Expr], what: &str) -> R<Access> {
        let slot = match self.bufs.get(b.name()).and_then(|s| s.last()) {
            Some(s) => *s,
            None => {
                return Err(format!(
                    "{} unknown buffer {}: it is neither a parameter nor allocated by an enclosing Allocate",
                    what,
                    b.name()
                ))
            }
        };
        let info = &self.buf_info[slot];
        if info.dtype != b.dtype() {
            return Err(format!(
                "{} buffer {} as {}, but it is declared {}",
                what,
                b.name(),
                b.dtype(),
                info.dtype
            ));
        }
        if indices.len() != 1 && indices.len() != info.ndim {
            return Err(format!(
                "{} buffer {} with {} indices, but it has {} dimensions (use one flat index or one per dimension)",
                what,
                b.name(),
                indices.len(),
                info.ndim
            ));
        }
        let indices = indices
            .iter()
            .map(|i| self.int_expr(i, "index"))
            .collect::<R<Vec<_>>>()?;
        Ok(Access { buf: slot, indices })
    }

    fn expr(&mut self, e: &Expr) -> R<CExpr> {
        let b = |c: CExpr| Box::new(c);
        let (dt, node) = match e.node() {
            ExprNode::Int(v, dt) => (*dt, CNode::Const(int_const(*dt, *v))),
            ExprNode::Float(v, dt) => (*dt, CNode::Const(float_const(*dt, *v))),
            ExprNode::Var(v) => match self.vars.get(&v.id()).and_then(|s| s.last()) {
                Some(s) => (v.dtype(), CNode::Var(*s)),
                None => (v.dtype(), CNode::Undef(v.name().to_string())),
            },
            ExprNode::Binary(op, x, y) => {
                let (x, y) = (self.expr(x)?, self.expr(y)?);
                if x.dt != y.dt {
                    return Err(format!(
                        "operands of {} have types {} and {}",
                        e, x.dt, y.dt
                    ));
                }
                (x.dt, CNode::Binary(*op, b(x), b(y)))
            }
            ExprNode::Cmp(op, x, y) => {
                let (x, y) = (self.expr(x)?, self.expr(y)?);
                if x.dt != y.dt {
                    return Err(format!(
                        "operands of {} have types {} and {}",
                        e, x.dt, y.dt
                    ));
                }
                (DType::Bool, CNode::Cmp(*op, b(x), b(y)))
            }
            ExprNode::And(x, y) => (DType::Bool, CNode::And(b(self.expr(x)?), b(self.expr(y)?))),
            ExprNode::Or(x, y) => (DType::Bool, CNode::Or(b(self.expr(x)?), b(self.expr(y)?))),
            ExprNode::Not(x) => (DType::Bool, CNode::Not(b(self.expr(x)?))),
            ExprNode::Select(c, t, f) => {
                let (c, t, f) = (self.expr(c)?, self.expr(t)?, self.expr(f)?);
                if t.dt != f.dt || c.dt.is_float() {
                    return Err(format!(
                        "select {} has condition type {} and branch types {} and {}",
                        e, c.dt, t.dt, f.dt
                    ));
                }
                (t.dt, CNode::Select(b(c), b(t), b(f)))
            }
            ExprNode::Cast(t, x) => (*t, CNode::Cast(b(self.expr(x)?))),
            ExprNode::Call(f, args) => {
                if args.len() != f.arity() {
                    return Err(format!(
                        "{} takes {} argument(s) but has {}",
                        f.name(),
                        f.arity(),
                        args.len()
                    ));
                }
                let args = args.iter().map(|a| self.expr(a)).collect::<R<Vec<_>>>()?;
                let dt = args[0].dt;
                if args.iter().any(|a| a.dt != dt)
                    || (dt == DType::Bool)
                    || (!dt.is_float() && !int_ok(*f))
                {
                    return Err(format!("math call {} on unsupported argument type(s)", e));
                }
                (dt, CNode::Call(*f, args))
            }
            ExprNode::Read(..) | ExprNode::Reduce(_) => {
                return Err(format!(
                    "tensor-level expression {} in the loop IR (it must be lowered first)",
                    e
                ))
            }
            ExprNode::Load(buf, idx) => (
                buf.dtype(),
                CNode::Load(self.access(buf, idx, "load from")?),
            ),
            ExprNode::Ramp(base, stride, lanes) => {
                if *lanes == 0 {
                    return Err(format!("{} has zero lanes", e));
                }
                let base = self.expr(base)?;
                (base.dt, CNode::Ramp(b(base), *stride, *lanes))
            }
            ExprNode::Broadcast(v, lanes) => {
                if *lanes == 0 {
                    return Err(format!("{} has zero lanes", e));
                }
                let v = self.expr(v)?;
                (v.dt, CNode::Broadcast(b(v), *lanes))
            }
            ExprNode::Let(v, val, body) => {
                let val = self.expr(val)?;
                if val.dt != v.dtype() {
                    return Err(format!(
                        "let {}: {} bound to a {} value",
                        v.name(),
                        v.dtype(),
                        val.dt
                    ));
                }
                let slot = self.bind_lanes(v, val.lanes);
                let body = self.expr(body);
                self.unbind(v);
                let body = body?;
                (body.dt, CNode::Let(slot, b(val), b(body)))
            }
        };
        let lanes = self.lanes_of(&node);
        Ok(CExpr { dt, lanes, node })
    }

    /// Static number of lanes of a node (the widest operand; mismatches are reported
    /// when evaluated).
    fn lanes_of(&self, n: &CNode) -> u32 {
        match n {
            CNode::Const(_) | CNode::Undef(_) => 1,
            CNode::Var(s) => self.slot_lanes[*s],
            CNode::Binary(_, a, b) | CNode::Cmp(_, a, b) | CNode::And(a, b) | CNode::Or(a, b) => {
                a.lanes.max(b.lanes)
            }
            CNode::Not(a) | CNode::Cast(a) => a.lanes,
            CNode::Select(c, t, f) => c.lanes.max(t.lanes).max(f.lanes),
            CNode::Call(_, args) => args.iter().map(|a| a.lanes).max().unwrap_or(1),
            CNode::Load(acc) => acc.indices.iter().map(|a| a.lanes).max().unwrap_or(1),
            CNode::Ramp(_, _, l) | CNode::Broadcast(_, l) => *l,
            CNode::Let(_, _, body) => body.lanes,
        }
    }
}

/// Math functions that are also defined on integers.
fn int_ok(f: MathFn) -> bool {
    matches!(f, MathFn::Abs | MathFn::Floor | MathFn::Ceil)
}
