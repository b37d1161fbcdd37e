//! Statements as CUDA C, and the assembly of the whole source (prelude, signature, body).
//!
//! - a loop bound to `blockIdx.*`/`threadIdx.*` becomes `const long long i = threadIdx.x;`
//!   (plus its `min`), inside `if (threadIdx.x < extent) { ... }` when the launch size of
//!   that axis can exceed the loop's extent (threads past the extent skip the loop, as in
//!   the interpreter's simulation);
//! - other loops become `for` loops (`#pragma unroll` for leftover `unrolled` ones;
//!   `vthread` loops run serially); `parallel` loops are refused (a CPU construct);
//! - `Allocate` in `shared` scope becomes a `__shared__` array, in `local` scope a local
//!   array, both of constant size, not zero-initialised; `Barrier` is `__syncthreads()`;
//! - `let` becomes a `const` local; vector values are stored lane by lane;
//! - buffers of f16/bf16 elements (parameters, shared and local arrays) are
//!   `unsigned short` arrays of the bits: a store converts the `float` value back.
//!
//! Every binding site gets its own C name (see `names.rs`), so declarations never clash
//! whatever the nesting.

use super::expr::{ctype, mem_ctype, prec};
use super::kernel::KernelPlan;
use super::launch::{loop_role, LoopRole};
use super::names::{sanitize, Namer};
use super::prelude::Helper;
use super::{CudaSource, KernelParam};
use crate::error::{internal, Error, Result};
use crate::intrinsics::CudaOperand;
use crate::lower::ir::{Buffer, ForKind, FragmentKind, IntrinsicCall, LoweredFunc, Scope, Stmt};
use crate::lower::simplify::simplify;
use crate::te::{DType, Expr, ExprNode};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Write;

/// Static shared memory a block may use without opting in to more (bytes).
pub const MAX_STATIC_SHARED_BYTES: i64 = 48 * 1024;

/// A variable's C name and number of lanes (a vector `let` is a C array).
pub(crate) struct VarBinding {
    pub name: String,
    pub lanes: u32,
}

/// A buffer's C name and shape (to flatten accesses with one index per dimension).
pub(crate) struct BufBinding {
    pub name: String,
    pub shape: Vec<Expr>,
}

/// The state of the emission of one kernel.
pub(crate) struct Emitter<'a> {
    /// The function (for error messages).
    pub func: &'a LoweredFunc,
    plan: &'a KernelPlan<'a>,
    names: Namer,
    /// Var id -> bindings, innermost last.
    pub vars: HashMap<u64, Vec<VarBinding>>,
    /// Buffer name -> bindings, innermost last.
    bufs: HashMap<String, Vec<BufBinding>>,
    /// Helpers the code uses.
    pub helpers: BTreeSet<Helper>,
    out: String,
    indent: usize,
    shared_bytes: i64,
    /// The guards of thread-bound loops around the current statement (`threadIdx.x < 8`
    /// for loop `j`), to refuse barriers that only some threads would reach.
    guards: Vec<String>,
    /// Vector loads already read into a 16-byte temporary (`float4`...) by the enclosing
    /// store, keyed by the address of their node: lane `k` is `tmp.x/y/z/w`.
    pub vec_loads: HashMap<*const ExprNode, String>,
    /// The values of the scalar `let`s in scope (to prove vector accesses aligned).
    let_values: HashMap<u64, Expr>,
    /// Device functions of the intrinsics the kernel calls, in first-use order.
    intrin_sources: Vec<&'static str>,
    /// Names of the enclosing loops bound to `threadIdx.x` (warp-collective calls may not
    /// depend on the lane).
    lane_loops: Vec<String>,
    /// Shared buffers whose 16-byte copies from global memory may be asynchronous (see
    /// [`async_copy_targets`]); when there are any, every barrier waits for the thread's
    /// copies first.
    async_bufs: HashSet<String>,
}

impl<'a> Emitter<'a> {
    fn line(&mut self, s: &str) {
        for _ in 0..self.indent {
            self.out.push_str("  ");
        }
        self.out.push_str(s);
        self.out.push('\n');
    }

    fn bind_var(&mut self, v: &crate::te::Var, lanes: u32) -> String {
        let name = self.names.fresh(v.name());
        self.vars.entry(v.id()).or_default().push(VarBinding {
            name: name.clone(),
            lanes,
        });
        name
    }

    fn unbind_var(&mut self, v: &crate::te::Var) {
        if let Some(s) = self.vars.get_mut(&v.id()) {
            s.pop();
        }
    }

    /// The C name of `buf` and the flat index of an access with `idx`.
    pub(crate) fn access(&self, buf: &Buffer, idx: &[Expr]) -> Result<(String, Expr)> {
        let b = self
            .bufs
            .get(buf.name())
            .and_then(|s| s.last())
            .ok_or_else(|| {
                internal(
                    format!(
                        "CUDA codegen: access to unknown buffer {}: it is neither a parameter nor allocated by an enclosing Allocate",
                        buf.name()
                    ),
                    self.func,
                )
            })?;
        if idx.len() == 1 {
            return Ok((b.name.clone(), idx[0].clone()));
        }
        if idx.len() != b.shape.len() || idx.is_empty() {
            return Err(internal(
                format!(
                    "CUDA codegen: access to {} with {} indices, but it has {} dimensions",
                    buf.name(),
                    idx.len(),
                    b.shape.len()
                ),
                self.func,
            ));
        }
        // Row-major: ((i0 * d1 + i1) * d2 + i2)...
        let mut flat = idx[0].clone();
        for (i, d) in idx.iter().zip(&b.shape).skip(1) {
            flat = flat * d.clone() + i.clone();
        }
        Ok((b.name.clone(), flat))
    }

    fn stmt(&mut self, s: &Stmt) -> Result<()> {
        match s {
            Stmt::For(f) => self.for_loop(f),
            Stmt::If { cond, then, els } => {
                if self.lanes(cond) > 1 {
                    return Err(internal(
                        format!("CUDA codegen: vector condition {}", cond),
                        self.func,
                    ));
                }
                let c = self.text(cond, 0)?;
                self.line(&format!("if ({}) {{", c));
                self.block(then)?;
                if let Some(e) = els {
                    self.line("} else {");
                    self.block(e)?;
                }
                self.line("}");
                Ok(())
            }
            Stmt::Seq(v) => v.iter().try_for_each(|x| self.stmt(x)),
            Stmt::Store {
                buf,
                indices,
                value,
            } => self.store(buf, indices, value),
            Stmt::Allocate { buf, body } => self.allocate(buf, body),
            Stmt::Let { var, value, body } => {
                if value.dtype() != var.dtype() {
                    return Err(internal(
                        format!(
                            "CUDA codegen: let {}: {} bound to a {} value",
                            var.name(),
                            var.dtype(),
                            value.dtype()
                        ),
                        self.func,
                    ));
                }
                let lanes = self.lanes(value);
                let mut vals = Vec::new();
                for k in 0..lanes {
                    vals.push(self.text(value, k)?);
                }
                let name = self.bind_var(var, lanes);
                let t = ctype(var.dtype());
                if lanes == 1 {
                    self.line(&format!("const {} {} = {};", t, name, vals[0]));
                } else {
                    self.line(&format!(
                        "const {} {}[{}] = {{{}}};",
                        t,
                        name,
                        lanes,
                        vals.join(", ")
                    ));
                }
                if lanes == 1 {
                    self.let_values.insert(var.id(), value.clone());
                }
                let r = self.stmt(body);
                self.let_values.remove(&var.id());
                self.unbind_var(var);
                r
            }
            Stmt::Produce { name, body } => {
                self.line(&format!("// produce {}", name));
                self.stmt(body)
            }
            Stmt::Evaluate(e) => {
                for k in 0..self.lanes(e) {
                    let x = self.text(e, k)?;
                    self.line(&format!("(void)({});", x));
                }
                Ok(())
            }
            Stmt::Intrinsic(c) => self.intrinsic(c),
            Stmt::Barrier => {
                if let Some(g) = self.guards.last() {
                    return Err(Error::Target(format!(
                        "kernel {}: a barrier (__syncthreads()) would run only in the threads with {}, but every thread of a block must reach it; bind loops of equal extent to that thread axis",
                        self.func.name, g
                    )));
                }
                if !self.async_bufs.is_empty() {
                    self.use_helper(Helper::CpAsyncWait);
                    self.line(&format!("{}();", Helper::CpAsyncWait.name()));
                }
                self.line("__syncthreads();");
                Ok(())
            }
            Stmt::NoOp => Ok(()),
        }
    }

    /// `s` one level deeper.
    fn block(&mut self, s: &Stmt) -> Result<()> {
        self.indent += 1;
        let r = self.stmt(s);
        self.indent -= 1;
        r
    }

    fn for_loop(&mut self, f: &crate::lower::ir::For) -> Result<()> {
        if !f.var.dtype().is_int() {
            return Err(internal(
                format!(
                    "CUDA codegen: loop variable {} has type {}",
                    f.var.name(),
                    f.var.dtype()
                ),
                self.func,
            ));
        }
        let t = ctype(f.var.dtype());
        match loop_role(&f.kind) {
            LoopRole::Gpu(axis) => {
                let idx = axis.builtin();
                let lane = idx == "threadIdx.x";
                let size = self.plan.axis_size(axis).clone();
                let ext = simplify(&self.plan.resolve(&f.extent));
                let covers = simplify(&(size.clone() - ext.clone())).as_int() == Some(0);
                let guarded = !covers;
                if guarded {
                    let cond = match f.extent.as_int() {
                        Some(n) if (0..=u32::MAX as i64).contains(&n) => {
                            format!("{} < {}", idx, n)
                        }
                        _ => format!(
                            "({}){} < {}",
                            ctype(f.extent.dtype()),
                            idx,
                            self.operand(&f.extent, 0, prec::REL + 1)?
                        ),
                    };
                    self.line(&format!("if ({}) {{", cond));
                    self.indent += 1;
                    self.guards.push(format!(
                        "{} < {} (loop {}, launched with {})",
                        idx,
                        f.extent,
                        f.var.name(),
                        size
                    ));
                }
                let value = if f.min.as_int() == Some(0) {
                    idx
                } else {
                    format!(
                        "({}){} + {}",
                        t,
                        idx,
                        self.operand(&f.min, 0, prec::ADD + 1)?
                    )
                };
                let name = self.bind_var(&f.var, 1);
                self.line(&format!("const {} {} = {};", t, name, value));
                if lane {
                    self.lane_loops.push(f.var.name().to_string());
                }
                let r = self.stmt(&f.body);
                if lane {
                    self.lane_loops.pop();
                }
                self.unbind_var(&f.var);
                if guarded {
                    self.guards.pop();
                    self.indent -= 1;
                }
                r?;
                if guarded {
                    self.line("}");
                }
                Ok(())
            }
            LoopRole::Parallel => Err(Error::Target(format!(
                "kernel {}: loop {} is parallel, a CPU construct; bind it to blockIdx/threadIdx for the GPU",
                self.func.name,
                f.var.name()
            ))),
            LoopRole::Unknown => Err(Error::Target(format!(
                "kernel {}: unknown thread binding {} of loop {} (expected blockIdx.x/y/z, threadIdx.x/y/z or vthread)",
                self.func.name,
                f.kind.name(),
                f.var.name()
            ))),
            LoopRole::Serial => {
                let min = self.text(&f.min, 0)?;
                let end_e = if f.min.as_int() == Some(0) {
                    f.extent.clone()
                } else {
                    simplify(&(f.min.clone() + f.extent.clone()))
                };
                let mut end = self.operand(&end_e, 0, prec::REL + 1)?;
                // Bounds that read memory are computed once, before the loop (as the
                // interpreter does), in case the body writes that memory.
                let hoist = contains_load(&f.extent) || contains_load(&f.min);
                if hoist {
                    let n = self.names.fresh(&format!("{}_end", f.var.name()));
                    self.line("{");
                    self.indent += 1;
                    self.line(&format!("const {} {} = {};", t, n, end));
                    end = n;
                }
                if f.kind == ForKind::Unrolled {
                    self.line("#pragma unroll");
                }
                let note = match &f.kind {
                    ForKind::ThreadBinding(tag) => format!("  // {}", tag),
                    _ => String::new(),
                };
                let name = self.bind_var(&f.var, 1);
                self.line(&format!(
                    "for ({t} {name} = {min}; {name} < {end}; ++{name}) {{{note}"
                ));
                let r = self.block(&f.body);
                self.unbind_var(&f.var);
                r?;
                self.line("}");
                if hoist {
                    self.indent -= 1;
                    self.line("}");
                }
                Ok(())
            }
        }
    }

    fn store(&mut self, buf: &Buffer, indices: &[Expr], value: &Expr) -> Result<()> {
        self.not_fragment(buf)?;
        if value.dtype() != buf.dtype() {
            return Err(internal(
                format!(
                    "CUDA codegen: store of a {} value into buffer {} of type {}",
                    value.dtype(),
                    buf.name(),
                    buf.dtype()
                ),
                self.func,
            ));
        }
        let (name, flat) = self.access(buf, indices)?;
        let lanes = self.lanes(&flat).max(self.lanes(value));
        if self.copy(buf, &name, &flat, value, lanes)? {
            return Ok(());
        }
        if lanes == 1 {
            let (i, v) = (self.text(&flat, 0)?, self.text(value, 0)?);
            let v = self.mem_value(buf.dtype(), v);
            self.line(&format!("{}[{}] = {};", name, i, v));
            return Ok(());
        }
        if let Some(vt) = vector_ctype(buf.dtype(), lanes) {
            return self.store_vector(buf, &name, &flat, value, lanes, vt);
        }
        // A vector store, lane by lane. When the value reads the buffer it writes, all
        // lanes are computed before any is stored.
        let mut reads_self = false;
        value.visit(&mut |e| {
            if let ExprNode::Load(b, _) = e.node() {
                reads_self |= b.name() == buf.name();
            }
            !reads_self
        });
        let mut idx = Vec::new();
        let mut vals = Vec::new();
        for k in 0..lanes {
            idx.push(self.text(&flat, k)?);
            vals.push(self.text(value, k)?);
        }
        if reads_self {
            self.line("{");
            self.indent += 1;
            let t = ctype(buf.dtype());
            let mut tmps = Vec::new();
            for (k, v) in vals.iter().enumerate() {
                let tmp = self.names.fresh(&format!("{}_lane{}", name, k));
                self.line(&format!("const {} {} = {};", t, tmp, v));
                tmps.push(tmp);
            }
            for (i, tmp) in idx.iter().zip(&tmps) {
                let v = self.mem_value(buf.dtype(), tmp.clone());
                self.line(&format!("{}[{}] = {};", name, i, v));
            }
            self.indent -= 1;
            self.line("}");
        } else {
            for (i, v) in idx.iter().zip(vals) {
                let v = self.mem_value(buf.dtype(), v);
                self.line(&format!("{}[{}] = {};", name, i, v));
            }
        }
        Ok(())
    }

    /// A store whose value is a load of the same dtype (a cache stage's copy), when it
    /// can be a plain copy: one element as its bits (a half is not converted through
    /// float and back), or 16 bytes as one `uint4` when both sides are aligned unit
    /// ramps of 16 bytes outside `local` arrays (an asynchronous copy from global into
    /// one of [`async_copy_targets`]). `false`: not such a copy, nothing emitted.
    fn copy(
        &mut self,
        buf: &Buffer,
        name: &str,
        flat: &Expr,
        value: &Expr,
        lanes: u32,
    ) -> Result<bool> {
        let ExprNode::Load(src, idx) = value.node() else {
            return Ok(false);
        };
        if src.dtype() != buf.dtype() {
            return Ok(false);
        }
        let (src_name, src_flat) = self.access(src, idx)?;
        if lanes == 1 {
            let (i, j) = (self.text(flat, 0)?, self.text(&src_flat, 0)?);
            self.line(&format!("{}[{}] = {}[{}];", name, i, src_name, j));
            return Ok(true);
        }
        if lanes as usize * buf.dtype().bytes() != 16
            || buf.scope() == Scope::Local
            || src.scope() == Scope::Local
        {
            return Ok(false);
        }
        let (Some(d), Some(sb)) = (
            self.aligned_unit_ramp(flat, lanes),
            self.aligned_unit_ramp(&src_flat, lanes),
        ) else {
            return Ok(false);
        };
        let (d, sb) = (self.text(&d, 0)?, self.text(&sb, 0)?);
        if self.async_bufs.contains(buf.name()) && src.scope() == Scope::Global {
            let f = Helper::CpAsync16.name();
            self.use_helper(Helper::CpAsync16);
            self.line(&format!("{}(&{}[{}], &{}[{}]);", f, name, d, src_name, sb));
            return Ok(true);
        }
        self.line(&format!(
            "*reinterpret_cast<uint4*>(&{}[{}]) = *reinterpret_cast<const uint4*>(&{}[{}]);",
            name, d, src_name, sb
        ));
        Ok(true)
    }

    /// A 16-byte vector store (`float4`, `double2`, `int4`, `longlong2`). Unit-stride
    /// loads of the value whose first index is a multiple of the lane count are read
    /// whole into a temporary first (one 128-bit load); the store is one 128-bit store
    /// under the same condition unless the destination is a `local` array (kept as
    /// scalar stores so that the compiler can keep it in registers). Anything else is
    /// lane by lane. Every lane is computed before anything is stored.
    fn store_vector(
        &mut self,
        buf: &Buffer,
        name: &str,
        flat: &Expr,
        value: &Expr,
        lanes: u32,
        vt: &str,
    ) -> Result<()> {
        self.line("{");
        self.indent += 1;
        let mut loads = Vec::new();
        value.visit(&mut |e| {
            if let ExprNode::Load(..) = e.node() {
                loads.push(e.clone());
                return false;
            }
            true
        });
        let mut hoisted = Vec::new();
        for e in &loads {
            let ExprNode::Load(b, idx) = e.node() else {
                continue;
            };
            let (src, f) = self.access(b, idx)?;
            let lt = vector_ctype(b.dtype(), lanes).filter(|_| b.scope() != Scope::Local);
            if let (Some(base), Some(lt)) = (self.aligned_unit_ramp(&f, lanes), lt) {
                let base = self.text(&base, 0)?;
                let tmp = self.names.fresh(&format!("{}_vec", src));
                self.line(&format!(
                    "const {} {} = *reinterpret_cast<const {}*>(&{}[{}]);",
                    lt, tmp, lt, src, base
                ));
                let key = e.node() as *const ExprNode;
                self.vec_loads.insert(key, tmp);
                hoisted.push(key);
            }
        }
        let mut vals = Vec::new();
        for k in 0..lanes {
            vals.push(self.text(value, k)?);
        }
        for k in &hoisted {
            self.vec_loads.remove(k);
        }
        match self.aligned_unit_ramp(flat, lanes) {
            Some(base) if buf.scope() != Scope::Local => {
                let base = self.text(&base, 0)?;
                self.line(&format!(
                    "*reinterpret_cast<{}*>(&{}[{}]) = make_{}({});",
                    vt,
                    name,
                    base,
                    vt,
                    vals.join(", ")
                ));
            }
            _ => {
                let t = ctype(buf.dtype());
                let mut tmps = Vec::new();
                for (k, v) in vals.iter().enumerate() {
                    let tmp = self.names.fresh(&format!("{}_lane{}", name, k));
                    self.line(&format!("const {} {} = {};", t, tmp, v));
                    tmps.push(tmp);
                }
                for (k, tmp) in tmps.iter().enumerate() {
                    let i = self.text(flat, k as u32)?;
                    self.line(&format!("{}[{}] = {};", name, i, tmp));
                }
            }
        }
        self.indent -= 1;
        self.line("}");
        Ok(())
    }

    /// The base of `flat` if it is `ramp(base, 1, lanes)` with `base` a multiple of
    /// `lanes` for every value of its variables, so that the access is one aligned 16-byte
    /// vector (buffers themselves are 16-byte aligned: `cudaMalloc`'d or `__align__(32)`).
    fn aligned_unit_ramp(&self, flat: &Expr, lanes: u32) -> Option<Expr> {
        match flat.node() {
            ExprNode::Ramp(base, 1, l) if *l == lanes && self.multiple_of(base, lanes as i64) => {
                Some(base.clone())
            }
            _ => None,
        }
    }

    /// Whether `e` is a multiple of `n` whatever its variables are: a sufficient test on
    /// the structure (constants, sums of multiples, products with a multiple, `let`
    /// variables bound to multiples).
    fn multiple_of(&self, e: &Expr, n: i64) -> bool {
        use crate::te::BinOp;
        match e.node() {
            ExprNode::Int(v, _) => v % n == 0,
            ExprNode::Binary(BinOp::Add | BinOp::Sub, a, b) => {
                self.multiple_of(a, n) && self.multiple_of(b, n)
            }
            ExprNode::Binary(BinOp::Mul, a, b) => self.multiple_of(a, n) || self.multiple_of(b, n),
            ExprNode::Cast(_, a) => self.multiple_of(a, n),
            ExprNode::Var(v) => self
                .let_values
                .get(&v.id())
                .is_some_and(|x| self.multiple_of(x, n)),
            _ => false,
        }
    }

    /// The value `text` (of the C type [`ctype`] of `dt`) as an element of a `dt` buffer:
    /// the bits of a half, anything else unchanged.
    fn mem_value(&mut self, dt: DType, text: String) -> String {
        match dt {
            DType::F16 => self.wrap_helper(Helper::F32ToF16, &text).text,
            DType::BF16 => self.wrap_helper(Helper::F32ToBf16, &text).text,
            _ => text,
        }
    }

    /// A tensor intrinsic: its CUDA implementation's statement, with a pointer and a
    /// leading dimension per operand (a fragment operand points at its 16x16 tile's
    /// registers).
    fn intrinsic(&mut self, c: &IntrinsicCall) -> Result<()> {
        let imp = c.intrin.cuda.ok_or_else(|| {
            Error::Target(format!(
                "kernel {}: intrinsic {} has no CUDA implementation",
                self.func.name, c.intrin.name
            ))
        })?;
        if c.is_partial() {
            return Err(Error::Target(format!(
                "kernel {}: {} covers a partial tile here (a split factor does not divide its extent); the CUDA implementations take whole tiles only",
                self.func.name, c.intrin.name
            )));
        }
        if imp.warp_collective {
            let place = match (self.guards.last(), self.lane_loops.last()) {
                (Some(g), _) => Some(format!("only in the threads with {}", g)),
                (None, Some(l)) => Some(format!(
                    "inside loop {}, bound to threadIdx.x, so with different operands in each thread of a warp",
                    l
                )),
                _ => None,
            };
            if let Some(p) = place {
                return Err(Error::Target(format!(
                    "kernel {}: {} is executed by the 32 threads of a warp together, but here it would run {}; leave the loops of a tensorized stage unbound to threadIdx.x (bind warps to threadIdx.y/z)",
                    self.func.name, c.intrin.name, p
                )));
            }
        }
        let mut ops = Vec::new();
        for o in &c.operands {
            let (name, flat) = self.access(&o.buf, &o.index)?;
            if let Scope::Fragment(_) = o.buf.scope() {
                // Tile (r, c) of a fragment buffer with rows of `ld` elements holds its 8
                // registers at tile index r * (ld / 16) + c.
                let ld = o
                    .strides
                    .first()
                    .and_then(|s| simplify(s).as_int())
                    .filter(|ld| ld % 16 == 0 && *ld > 0)
                    .ok_or_else(|| {
                        Error::Target(format!(
                            "kernel {}: fragment {} passed to {} with rows of {} elements; fragment buffers hold whole 16x16 tiles (rows a constant multiple of 16)",
                            self.func.name,
                            o.buf.name(),
                            c.intrin.name,
                            o.strides.first().map(|s| s.to_string()).unwrap_or_default()
                        ))
                    })?;
                use crate::te::{floordiv, floormod};
                let tile = floordiv(flat.clone(), Expr::int(16 * ld)) * Expr::int(ld / 16)
                    + floordiv(floormod(flat.clone(), Expr::int(ld)), Expr::int(16));
                let reg = simplify(&(tile * 8));
                ops.push(CudaOperand {
                    ptr: format!("&{}[{}]", name, self.text(&reg, 0)?),
                    ld: String::new(),
                });
                continue;
            }
            let unit = o
                .strides
                .last()
                .map(|s| simplify(s).as_int() == Some(1))
                .unwrap_or(true);
            if !unit {
                return Err(Error::Target(format!(
                    "kernel {}: {} reads {} with stride {} along its last dimension; the CUDA implementation needs rows of contiguous elements",
                    self.func.name,
                    c.intrin.name,
                    o.buf.name(),
                    o.strides.last().map(|s| s.to_string()).unwrap_or_default()
                )));
            }
            let ld = match o.strides.len() {
                0 | 1 => "1".to_string(),
                n => format!("(int)({})", self.text(&simplify(&o.strides[n - 2]), 0)?),
            };
            let ptr = format!("&{}[{}]", name, self.text(&flat, 0)?);
            ops.push(CudaOperand { ptr, ld });
        }
        if !self.intrin_sources.contains(&imp.source) {
            self.intrin_sources.push(imp.source);
        }
        let call = (imp.call)(c.mode, &ops);
        self.line(&call);
        Ok(())
    }

    /// Elements of a fragment are in no known place: only intrinsics may touch them.
    pub(crate) fn not_fragment(&self, buf: &Buffer) -> Result<()> {
        if let Scope::Fragment(_) = buf.scope() {
            return Err(Error::Target(format!(
                "kernel {}: fragment {} is read or written element by element; tensor-core fragments are accessed only through the wmma intrinsics (tensorize the stages that load, compute and store them)",
                self.func.name,
                buf.name()
            )));
        }
        Ok(())
    }

    /// A fragment buffer: 8 registers per 16x16 tile in each thread (`float` for an f32
    /// accumulator, `unsigned` pairs of halves for f16 operands).
    fn allocate_fragment(
        &mut self,
        buf: &Buffer,
        kind: FragmentKind,
        size: &Expr,
        body: &Stmt,
    ) -> Result<()> {
        let n = size.as_int().filter(|n| n % 256 == 0 && *n > 0).ok_or_else(|| {
            Error::Target(format!(
                "kernel {}: fragment {} has {} elements; tensor-core fragments are whole 16x16 tiles (a constant multiple of 256)",
                self.func.name,
                buf.name(),
                size
            ))
        })?;
        let t = match (kind, buf.dtype()) {
            (FragmentKind::Accumulator, DType::F32) => "float",
            (FragmentKind::MatrixA | FragmentKind::MatrixB, DType::F16) => "unsigned",
            (k, dt) => {
                return Err(Error::Target(format!(
                    "kernel {}: fragment {} ({:?}) of {}: the tensor-core intrinsics take float16 operands and float32 accumulators",
                    self.func.name,
                    buf.name(),
                    k,
                    dt
                )))
            }
        };
        let name = self.names.fresh(buf.name());
        self.line(&format!("{} {}[{}];", t, name, n / 256 * 8));
        self.bufs
            .entry(buf.name().to_string())
            .or_default()
            .push(BufBinding {
                name,
                shape: vec![Expr::int(n)],
            });
        let r = self.stmt(body);
        if let Some(s) = self.bufs.get_mut(buf.name()) {
            s.pop();
        }
        r
    }

    fn allocate(&mut self, buf: &Buffer, body: &Stmt) -> Result<()> {
        let size = simplify(&self.plan.resolve(&buf.num_elements()));
        let what = match buf.scope() {
            Scope::Shared => "shared",
            Scope::Local => "local",
            Scope::Fragment(kind) => return self.allocate_fragment(buf, kind, &size, body),
            Scope::Global => {
                return Err(Error::Target(format!(
                    "kernel {}: global buffer {} is allocated inside the GPU kernel; give it shared or local scope (cache_read/cache_write), or compute it at root",
                    self.func.name,
                    buf.name()
                )))
            }
        };
        let n = size.as_int().ok_or_else(|| {
            Error::Target(format!(
                "kernel {}: {} buffer {} has non-constant size {}; CUDA needs a constant size for {} arrays (make the extents of the loops it is computed over constant)",
                self.func.name,
                what,
                buf.name(),
                size,
                what
            ))
        })?;
        let n = n.max(1);
        let name = self.names.fresh(buf.name());
        let t = mem_ctype(buf.dtype());
        if buf.scope() == Scope::Shared {
            self.shared_bytes += n * buf.dtype().bytes() as i64;
            if self.shared_bytes > MAX_STATIC_SHARED_BYTES {
                return Err(Error::Target(format!(
                    "kernel {}: shared buffer {} brings the block's shared memory to {} bytes; at most {} bytes can be allocated statically",
                    self.func.name,
                    buf.name(),
                    self.shared_bytes,
                    MAX_STATIC_SHARED_BYTES
                )));
            }
            self.line(&format!("__shared__ __align__(32) {} {}[{}];", t, name, n));
        } else {
            self.line(&format!("{} {}[{}];", t, name, n));
        }
        self.bufs
            .entry(buf.name().to_string())
            .or_default()
            .push(BufBinding {
                name,
                shape: vec![Expr::int(n)],
            });
        let r = self.stmt(body);
        if let Some(s) = self.bufs.get_mut(buf.name()) {
            s.pop();
        }
        r
    }
}

/// The CUDA type of a 16-byte vector of `lanes` elements of `dt`, if there is one.
fn vector_ctype(dt: DType, lanes: u32) -> Option<&'static str> {
    match (dt, lanes) {
        (DType::F32, 4) => Some("float4"),
        (DType::F64, 2) => Some("double2"),
        (DType::I32, 4) => Some("int4"),
        (DType::I64, 2) => Some("longlong2"),
        _ => None,
    }
}

/// Whether `e` reads memory.
fn contains_load(e: &Expr) -> bool {
    let mut found = false;
    e.visit(&mut |x| {
        found |= matches!(x.node(), ExprNode::Load(..));
        !found
    });
    found
}

/// The shared buffers that may be filled by asynchronous copies (`cp.async`): those
/// computed in `Produce` blocks of their own name that never read them. Every barrier
/// then waits for the thread's copies, and that suffices: `storage_sync` puts a barrier
/// after each computation of a shared buffer before anything reads it, and the
/// double-buffered loop reads, before its closing barrier, only the other copy than the
/// one its prefetch fills.
fn async_copy_targets(body: &Stmt) -> HashSet<String> {
    let mut shared = HashSet::new();
    body.visit(&mut |s| {
        if let Stmt::Allocate { buf, .. } = s {
            if buf.scope() == Scope::Shared {
                shared.insert(buf.name().to_string());
            }
        }
    });
    let mut produced = HashSet::new();
    let mut self_read = HashSet::new();
    body.visit(&mut |s| {
        let Stmt::Produce { name, body } = s else {
            return;
        };
        if !shared.contains(name) {
            return;
        }
        produced.insert(name.clone());
        let mut reads = false;
        body.visit(&mut |x| {
            if let Stmt::Intrinsic(c) = x {
                let n = c.operands.len().saturating_sub(1);
                reads |= c.operands[..n].iter().any(|o| o.buf.name() == name);
            }
        });
        body.visit_exprs(&mut |e| {
            e.visit(&mut |y| {
                reads |= matches!(y.node(), ExprNode::Load(b, _) if b.name() == name);
                !reads
            })
        });
        if reads {
            self_read.insert(name.clone());
        }
    });
    produced.retain(|n| !self_read.contains(n));
    produced
}

/// Emit the CUDA source of `func`, whose kernel is described by `plan`.
pub(crate) fn emit_source(func: &LoweredFunc, plan: &KernelPlan<'_>) -> Result<CudaSource> {
    let mut e = Emitter {
        func,
        plan,
        names: Namer::new(),
        vars: HashMap::new(),
        bufs: HashMap::new(),
        helpers: BTreeSet::new(),
        out: String::new(),
        indent: 1,
        shared_bytes: 0,
        guards: Vec::new(),
        vec_loads: HashMap::new(),
        let_values: HashMap::new(),
        intrin_sources: Vec::new(),
        lane_loops: Vec::new(),
        async_bufs: async_copy_targets(&func.body),
    };
    let kernel_name = e.names.fresh(&format!("{}_kernel", sanitize(&func.name)));

    let mut written: HashSet<String> = HashSet::new();
    func.body.visit(&mut |s| {
        if let Some(buf) = s.written_buffer() {
            written.insert(buf.name().to_string());
        }
    });

    let mut sig = Vec::new();
    let mut params = Vec::new();
    for p in &func.params {
        let name = e.names.fresh(p.name());
        let w = written.contains(p.name());
        sig.push(format!(
            "{}{}* __restrict__ {}",
            if w { "" } else { "const " },
            mem_ctype(p.dtype()),
            name
        ));
        params.push(KernelParam::Buffer {
            name: p.name().to_string(),
            dtype: p.dtype(),
            written: w,
        });
        e.bufs
            .entry(p.name().to_string())
            .or_default()
            .push(BufBinding {
                name,
                shape: p.shape().to_vec(),
            });
    }
    let mut conversions = Vec::new();
    for v in &func.shape_vars {
        params.push(KernelParam::Shape {
            name: v.name().to_string(),
        });
        if v.dtype() == DType::I64 {
            let name = e.bind_var(v, 1);
            sig.push(format!("long long {}", name));
        } else {
            let arg = e.names.fresh(&format!("{}_arg", v.name()));
            sig.push(format!("long long {}", arg));
            let name = e.bind_var(v, 1);
            conversions.push(format!(
                "const {} {} = ({}){};",
                ctype(v.dtype()),
                name,
                ctype(v.dtype()),
                arg
            ));
        }
    }
    for c in &conversions {
        e.line(c);
    }
    for (v, val) in &plan.lets {
        let x = e.text(val, 0)?;
        let name = e.bind_var(v, 1);
        e.line(&format!("const {} {} = {};", ctype(v.dtype()), name, x));
    }
    e.stmt(plan.root)?;
    let body = std::mem::take(&mut e.out);

    let l = &plan.launch;
    let mut code = String::new();
    let _ = writeln!(
        code,
        "// Generated by loopforge from `{}`.",
        sanitize(&func.name)
    );
    let _ = writeln!(
        code,
        "// Launch: grid ({}, {}, {}), block ({}, {}, {}).",
        l.grid[0], l.grid[1], l.grid[2], l.block[0], l.block[1], l.block[2]
    );
    code.push('\n');
    for h in &e.helpers {
        code.push_str(&h.definition());
        code.push('\n');
    }
    for s in &e.intrin_sources {
        code.push_str(s);
        code.push('\n');
    }
    let bounds = match l.const_threads_per_block() {
        Some(n) if n > 0 => format!("__launch_bounds__({}) ", n),
        _ => String::new(),
    };
    let head = format!("extern \"C\" __global__ void {}{}(", bounds, kernel_name);
    let one_line = format!("{}{}) {{", head, sig.join(", "));
    if one_line.len() <= 100 {
        code.push_str(&one_line);
        code.push('\n');
    } else {
        code.push_str(&head);
        code.push('\n');
        for (i, p) in sig.iter().enumerate() {
            let end = if i + 1 == sig.len() { ") {" } else { "," };
            let _ = writeln!(code, "    {}{}", p, end);
        }
    }
    code.push_str(&body);
    code.push_str("}\n");
    Ok(CudaSource {
        kernel_name,
        code,
        launch: plan.launch.clone(),
        params,
    })
}
