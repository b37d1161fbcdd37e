//! The loop IR: statements over buffers, produced by lowering and consumed by the
//! interpreter and the code generators. Printed in a form close to TVM's lowered TIR.

use crate::te::{DType, Expr, ExprNode, Var};
use serde::{Deserialize, Serialize};
use std::fmt::{self, Write};
use std::sync::Arc;

/// Where a buffer lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Scope {
    /// Function arguments and root-level intermediates.
    Global,
    /// GPU shared memory (one copy per thread block).
    Shared,
    /// Per-thread (registers / stack).
    Local,
    /// A tensor-core fragment (`wmma.matrix_a`, `wmma.matrix_b`, `wmma.accumulator`):
    /// 16x16 tiles held collectively by the 32 threads of a warp, in a layout only the
    /// wmma intrinsics know; accessed through them alone. The interpreter keeps the whole
    /// tile in the warp's first thread (which runs the warp-collective calls).
    Fragment(FragmentKind),
}

/// What a [`Scope::Fragment`] holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FragmentKind {
    /// The left operand of a tensor-core multiply (`wmma.matrix_a`).
    MatrixA,
    /// The right operand (`wmma.matrix_b`).
    MatrixB,
    /// The accumulator (`wmma.accumulator`).
    Accumulator,
}

impl Scope {
    /// Parse TVM's scope names.
    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "global" => Some(Scope::Global),
            "shared" => Some(Scope::Shared),
            "local" => Some(Scope::Local),
            "wmma.matrix_a" => Some(Scope::Fragment(FragmentKind::MatrixA)),
            "wmma.matrix_b" => Some(Scope::Fragment(FragmentKind::MatrixB)),
            "wmma.accumulator" => Some(Scope::Fragment(FragmentKind::Accumulator)),
            _ => None,
        }
    }
    /// TVM's name of the scope.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Global => "global",
            Scope::Shared => "shared",
            Scope::Local => "local",
            Scope::Fragment(FragmentKind::MatrixA) => "wmma.matrix_a",
            Scope::Fragment(FragmentKind::MatrixB) => "wmma.matrix_b",
            Scope::Fragment(FragmentKind::Accumulator) => "wmma.accumulator",
        }
    }
}

/// A named, typed region of memory. Buffers are identified by name within a function.
#[derive(Clone, Debug)]
pub struct Buffer(pub Arc<BufferNode>);

/// The data of a [`Buffer`].
#[derive(Debug)]
pub struct BufferNode {
    /// Unique name within the function.
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Logical shape (row-major). After storage flattening accesses use one flat index.
    pub shape: Vec<Expr>,
    /// Memory scope.
    pub scope: Scope,
    /// Element strides per dimension when they differ from the row-major ones (padded
    /// by `storage_align`); `None` means row-major.
    pub strides: Option<Vec<Expr>>,
}

impl Buffer {
    /// A new buffer.
    pub fn new(name: impl Into<String>, dtype: DType, shape: Vec<Expr>, scope: Scope) -> Buffer {
        Buffer(Arc::new(BufferNode {
            name: name.into(),
            dtype,
            shape,
            scope,
            strides: None,
        }))
    }
    /// A buffer with explicit (padded) strides, in elements.
    pub fn with_strides(
        name: impl Into<String>,
        dtype: DType,
        shape: Vec<Expr>,
        strides: Vec<Expr>,
        scope: Scope,
    ) -> Buffer {
        Buffer(Arc::new(BufferNode {
            name: name.into(),
            dtype,
            shape,
            scope,
            strides: Some(strides),
        }))
    }
    /// The stride of each dimension in elements (row-major unless padded).
    pub fn strides(&self) -> Vec<Expr> {
        if let Some(s) = &self.0.strides {
            return s.clone();
        }
        let n = self.0.shape.len();
        let mut out = vec![Expr::int(1); n];
        for d in (0..n.saturating_sub(1)).rev() {
            out[d] = crate::lower::simplify::simplify(
                &(out[d + 1].clone() * self.0.shape[d + 1].clone()),
            );
        }
        out
    }
    /// Whether the strides were given (padded) rather than row-major.
    pub fn has_explicit_strides(&self) -> bool {
        self.0.strides.is_some()
    }
    /// Name.
    pub fn name(&self) -> &str {
        &self.0.name
    }
    /// Element type.
    pub fn dtype(&self) -> DType {
        self.0.dtype
    }
    /// Shape.
    pub fn shape(&self) -> &[Expr] {
        &self.0.shape
    }
    /// Scope.
    pub fn scope(&self) -> Scope {
        self.0.scope
    }
    /// Number of elements to allocate, as an expression (the product of the shape, or the
    /// outermost extent times its stride when strides are padded).
    pub fn num_elements(&self) -> Expr {
        if let (Some(st), Some(d0)) = (&self.0.strides, self.0.shape.first()) {
            return crate::lower::simplify::simplify(&(d0.clone() * st[0].clone()));
        }
        let mut n = Expr::int(1);
        for s in &self.0.shape {
            n = n * s.clone();
        }
        crate::lower::simplify::simplify(&n)
    }
    /// Read element(s).
    pub fn load(&self, idx: Vec<Expr>) -> Expr {
        Expr::new(ExprNode::Load(self.clone(), idx))
    }
}

/// How a loop runs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ForKind {
    /// One iteration after another.
    Serial,
    /// Iterations run on the thread pool.
    Parallel,
    /// Turned into vector instructions by the vectorize pass.
    Vectorized,
    /// Fully unrolled by the unroll pass.
    Unrolled,
    /// Bound to a GPU thread axis (`blockIdx.x`, `threadIdx.y`, `vthread`...).
    ThreadBinding(String),
}

impl ForKind {
    /// Printed name.
    pub fn name(&self) -> String {
        match self {
            ForKind::Serial => "serial".into(),
            ForKind::Parallel => "parallel".into(),
            ForKind::Vectorized => "vectorized".into(),
            ForKind::Unrolled => "unrolled".into(),
            ForKind::ThreadBinding(t) => format!("thread_binding({})", t),
        }
    }
}

/// A loop `for var in [min, min + extent)`.
#[derive(Debug, Clone)]
pub struct For {
    /// Loop variable (int64).
    pub var: Var,
    /// First value.
    pub min: Expr,
    /// Trip count.
    pub extent: Expr,
    /// How it runs.
    pub kind: ForKind,
    /// Loop body.
    pub body: Stmt,
}

/// A statement of the loop IR.
#[derive(Debug, Clone)]
pub enum Stmt {
    /// A loop.
    For(Box<For>),
    /// Conditional.
    If {
        /// Condition (bool).
        cond: Expr,
        /// Taken when true.
        then: Box<Stmt>,
        /// Taken when false.
        els: Option<Box<Stmt>>,
    },
    /// Statements in order.
    Seq(Vec<Stmt>),
    /// `buf[indices] = value` (a vector store when the index is a `Ramp`).
    Store {
        /// Destination.
        buf: Buffer,
        /// One index per dimension (one flat index after storage flattening).
        indices: Vec<Expr>,
        /// The value (same lanes as the index).
        value: Expr,
    },
    /// Allocate `buf` (its shape gives the size) for the duration of `body`.
    Allocate {
        /// The buffer (scope says where).
        buf: Buffer,
        /// Where it is live.
        body: Box<Stmt>,
    },
    /// `let var = value` for the duration of `body`.
    Let {
        /// Bound variable.
        var: Var,
        /// Its value.
        value: Expr,
        /// Scope of the binding.
        body: Box<Stmt>,
    },
    /// Marks the computation of a tensor (for readability; no semantics).
    Produce {
        /// The tensor produced.
        name: String,
        /// The computation.
        body: Box<Stmt>,
    },
    /// Evaluate an expression for its effect (calls).
    Evaluate(Expr),
    /// A barrier among the threads of a GPU block (`__syncthreads()`).
    Barrier,
    /// A call of a tensor intrinsic (`Schedule::tensorize`) on strided tiles.
    Intrinsic(IntrinsicCall),
    /// Nothing.
    NoOp,
}

/// One operand of an [`IntrinsicCall`]: a strided tile of a buffer.
#[derive(Debug, Clone)]
pub struct IntrinOperand {
    /// The buffer.
    pub buf: Buffer,
    /// Indices of the tile's first element (one flat index after storage flattening).
    pub index: Vec<Expr>,
    /// Stride in elements of each dimension of the intrinsic's placeholder.
    pub strides: Vec<Expr>,
}

/// A call of a tensor intrinsic: the inputs in declaration order, then the output.
#[derive(Debug, Clone)]
pub struct IntrinsicCall {
    /// The intrinsic.
    pub intrin: std::sync::Arc<crate::intrinsics::TensorIntrin>,
    /// Operands: inputs, then the output.
    pub operands: Vec<IntrinOperand>,
    /// What the call does.
    pub mode: IntrinMode,
    /// The extent of each of the declaration's axes (data, then reduce) for this call:
    /// the declared constants, except for the data axes of a partial tile (an intrinsic
    /// declared with [`partial_tiles`](crate::intrinsics::TensorIntrin::partial_tiles)).
    pub extents: Vec<Expr>,
}

/// What an [`IntrinsicCall`] does to its output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntrinMode {
    /// Compute the declaration (a reduction starts from its identity).
    Compute,
    /// A reduction whose partial result is in the output: combine into it.
    Update,
    /// Only set the output tile to the reduction's identity (the reduction starts before
    /// the tensorized nest); the only operand is the output.
    Init,
}

impl IntrinMode {
    /// The word the CPU implementation receives: 0, 1 or 2.
    pub fn code(self) -> i64 {
        match self {
            IntrinMode::Compute => 0,
            IntrinMode::Update => 1,
            IntrinMode::Init => 2,
        }
    }
}

impl IntrinsicCall {
    fn map_exprs(&self, fe: &mut dyn FnMut(&Expr) -> Expr) -> IntrinsicCall {
        IntrinsicCall {
            intrin: self.intrin.clone(),
            operands: self
                .operands
                .iter()
                .map(|o| IntrinOperand {
                    buf: o.buf.clone(),
                    index: o.index.iter().map(&mut *fe).collect(),
                    strides: o.strides.iter().map(&mut *fe).collect(),
                })
                .collect(),
            mode: self.mode,
            extents: self.extents.iter().map(&mut *fe).collect(),
        }
    }

    /// Whether some extent differs from the declared one (a partial tile).
    pub fn is_partial(&self) -> bool {
        self.extents
            .iter()
            .zip(self.intrin.extents())
            .any(|(e, d)| e.as_int() != Some(d))
    }
}

impl Stmt {
    /// The buffer this statement itself writes: a store's, or an intrinsic call's output.
    pub fn written_buffer(&self) -> Option<&Buffer> {
        match self {
            Stmt::Store { buf, .. } => Some(buf),
            Stmt::Intrinsic(c) => c.operands.last().map(|o| &o.buf),
            _ => None,
        }
    }

    /// The names of every buffer this statement writes, itself or nested: stores' and
    /// intrinsic calls' outputs.
    pub fn written_buffers(&self) -> std::collections::HashSet<String> {
        let mut written = std::collections::HashSet::new();
        self.visit(&mut |s| {
            if let Some(b) = s.written_buffer() {
                written.insert(b.name().to_string());
            }
        });
        written
    }

    /// A sequence, flattening nested sequences and dropping no-ops.
    pub fn seq(items: Vec<Stmt>) -> Stmt {
        let mut out = Vec::new();
        for s in items {
            match s {
                Stmt::Seq(v) => out.extend(v),
                Stmt::NoOp => {}
                s => out.push(s),
            }
        }
        match out.len() {
            0 => Stmt::NoOp,
            1 => out.pop().unwrap(),
            _ => Stmt::Seq(out),
        }
    }
    /// A loop statement.
    pub fn for_(var: Var, min: Expr, extent: Expr, kind: ForKind, body: Stmt) -> Stmt {
        Stmt::For(Box::new(For {
            var,
            min,
            extent,
            kind,
            body,
        }))
    }
    /// An if statement without else.
    pub fn if_(cond: Expr, then: Stmt) -> Stmt {
        Stmt::If {
            cond,
            then: Box::new(then),
            els: None,
        }
    }

    /// Rebuild with every direct sub-statement and expression mapped (one level).
    pub fn map(
        &self,
        fs: &mut dyn FnMut(&Stmt) -> Stmt,
        fe: &mut dyn FnMut(&Expr) -> Expr,
    ) -> Stmt {
        match self {
            Stmt::For(f) => Stmt::For(Box::new(For {
                var: f.var.clone(),
                min: fe(&f.min),
                extent: fe(&f.extent),
                kind: f.kind.clone(),
                body: fs(&f.body),
            })),
            Stmt::If { cond, then, els } => Stmt::If {
                cond: fe(cond),
                then: Box::new(fs(then)),
                els: els.as_ref().map(|e| Box::new(fs(e))),
            },
            Stmt::Seq(v) => Stmt::Seq(v.iter().map(&mut *fs).collect()),
            Stmt::Store {
                buf,
                indices,
                value,
            } => Stmt::Store {
                buf: buf.clone(),
                indices: indices.iter().map(&mut *fe).collect(),
                value: fe(value),
            },
            Stmt::Allocate { buf, body } => Stmt::Allocate {
                buf: buf.clone(),
                body: Box::new(fs(body)),
            },
            Stmt::Let { var, value, body } => Stmt::Let {
                var: var.clone(),
                value: fe(value),
                body: Box::new(fs(body)),
            },
            Stmt::Produce { name, body } => Stmt::Produce {
                name: name.clone(),
                body: Box::new(fs(body)),
            },
            Stmt::Evaluate(e) => Stmt::Evaluate(fe(e)),
            Stmt::Barrier => Stmt::Barrier,
            Stmt::Intrinsic(c) => Stmt::Intrinsic(c.map_exprs(fe)),
            Stmt::NoOp => Stmt::NoOp,
        }
    }

    /// Rewrite every expression in the tree (statements recursively).
    pub fn map_exprs(&self, fe: &mut dyn FnMut(&Expr) -> Expr) -> Stmt {
        // `map` calls its two closures one after the other, never nested, so both may
        // reach `fe` through one RefCell.
        let fe = std::cell::RefCell::new(fe);
        self.map(&mut |s| s.map_exprs(&mut **fe.borrow_mut()), &mut |e| {
            (fe.borrow_mut())(e)
        })
    }

    /// Visit every statement (pre-order).
    pub fn visit(&self, f: &mut dyn FnMut(&Stmt)) {
        f(self);
        match self {
            Stmt::For(x) => x.body.visit(f),
            Stmt::If { then, els, .. } => {
                then.visit(f);
                if let Some(e) = els {
                    e.visit(f);
                }
            }
            Stmt::Seq(v) => v.iter().for_each(|s| s.visit(f)),
            Stmt::Allocate { body, .. } | Stmt::Let { body, .. } | Stmt::Produce { body, .. } => {
                body.visit(f)
            }
            _ => {}
        }
    }

    /// Visit every expression directly held by any statement of the tree.
    pub fn visit_exprs(&self, f: &mut dyn FnMut(&Expr)) {
        self.visit(&mut |s| match s {
            Stmt::For(x) => {
                f(&x.min);
                f(&x.extent)
            }
            Stmt::If { cond, .. } => f(cond),
            Stmt::Store { indices, value, .. } => {
                indices.iter().for_each(&mut *f);
                f(value)
            }
            Stmt::Let { value, .. } => f(value),
            Stmt::Evaluate(e) => f(e),
            Stmt::Intrinsic(c) => {
                c.operands.iter().for_each(|o| {
                    o.index.iter().for_each(&mut *f);
                    o.strides.iter().for_each(&mut *f)
                });
                c.extents.iter().for_each(&mut *f)
            }
            _ => {}
        });
    }

    /// Substitute variables (by id) everywhere in the tree.
    pub fn substitute(&self, map: &std::collections::HashMap<u64, Expr>) -> Stmt {
        if map.is_empty() {
            return self.clone();
        }
        self.map_exprs(&mut |e| e.substitute(map))
    }
}

/// A lowered function: the unit the backends compile.
#[derive(Debug, Clone)]
pub struct LoweredFunc {
    /// Function name.
    pub name: String,
    /// Argument buffers, in call order (inputs and outputs as given to `lower`).
    pub params: Vec<Buffer>,
    /// Symbolic dimensions, bound at call time from the arguments' shapes.
    pub shape_vars: Vec<Var>,
    /// The body.
    pub body: Stmt,
}

// ---------------------------------------------------------------- printing

struct Printer {
    out: String,
    indent: usize,
}

impl Printer {
    fn line(&mut self, s: &str) {
        for _ in 0..self.indent {
            self.out.push_str("  ");
        }
        self.out.push_str(s);
        self.out.push('\n');
    }
    fn stmt(&mut self, s: &Stmt) {
        match s {
            Stmt::For(f) => {
                let kind = if f.kind == ForKind::Serial {
                    String::new()
                } else {
                    format!(" {}", f.kind.name())
                };
                let range = if f.min.as_int() == Some(0) {
                    format!("{}", f.extent)
                } else {
                    format!(
                        "{}, {}",
                        f.min,
                        crate::lower::simplify::simplify(&(f.min.clone() + f.extent.clone()))
                    )
                };
                self.line(&format!(
                    "for {} in range({}){}:",
                    f.var.name(),
                    range,
                    kind
                ));
                self.indent += 1;
                self.stmt(&f.body);
                self.indent -= 1;
            }
            Stmt::If { cond, then, els } => {
                self.line(&format!("if {}:", cond));
                self.indent += 1;
                self.stmt(then);
                self.indent -= 1;
                if let Some(e) = els {
                    self.line("else:");
                    self.indent += 1;
                    self.stmt(e);
                    self.indent -= 1;
                }
            }
            Stmt::Seq(v) => v.iter().for_each(|s| self.stmt(s)),
            Stmt::Store {
                buf,
                indices,
                value,
            } => {
                let idx: Vec<String> = indices.iter().map(|i| i.to_string()).collect();
                self.line(&format!("{}[{}] = {}", buf.name(), idx.join(", "), value));
            }
            Stmt::Allocate { buf, body } => {
                let shape: Vec<String> = buf.shape().iter().map(|i| i.to_string()).collect();
                let strides = match &buf.0.strides {
                    Some(st) => format!(
                        ", strides=({})",
                        st.iter()
                            .map(|i| i.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    None => String::new(),
                };
                self.line(&format!(
                    "allocate {}[{}, ({})]{}, scope=\"{}\"",
                    buf.name(),
                    buf.dtype(),
                    shape.join(", "),
                    strides,
                    buf.scope().name()
                ));
                self.stmt(body);
            }
            Stmt::Let { var, value, body } => {
                self.line(&format!("let {} = {}", var.name(), value));
                self.stmt(body);
            }
            Stmt::Produce { name, body } => {
                self.line(&format!("// produce {}", name));
                self.stmt(body);
            }
            Stmt::Evaluate(e) => self.line(&format!("{}", e)),
            Stmt::Barrier => self.line("__syncthreads()"),
            Stmt::Intrinsic(c) => {
                let ops: Vec<String> = c
                    .operands
                    .iter()
                    .map(|o| {
                        let idx: Vec<String> = o.index.iter().map(|e| e.to_string()).collect();
                        let st: Vec<String> = o.strides.iter().map(|e| e.to_string()).collect();
                        format!(
                            "{}[{}] strides ({})",
                            o.buf.name(),
                            idx.join(", "),
                            st.join(", ")
                        )
                    })
                    .collect();
                let mode = match c.mode {
                    IntrinMode::Compute => "",
                    IntrinMode::Update => ".update",
                    IntrinMode::Init => ".init",
                };
                let extents = if c.is_partial() {
                    let e: Vec<String> = c.extents.iter().map(|e| e.to_string()).collect();
                    format!(" extents ({})", e.join(", "))
                } else {
                    String::new()
                };
                self.line(&format!(
                    "{}{}({}){}",
                    c.intrin.name,
                    mode,
                    ops.join(", "),
                    extents
                ))
            }
            Stmt::NoOp => self.line("pass"),
        }
    }
}

impl fmt::Display for Stmt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut p = Printer {
            out: String::new(),
            indent: 0,
        };
        p.stmt(self);
        f.write_str(&p.out)
    }
}

impl fmt::Display for LoweredFunc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut head = String::new();
        write!(head, "@{}(", self.name)?;
        for (i, b) in self.params.iter().enumerate() {
            if i > 0 {
                head.push_str(", ");
            }
            let shape: Vec<String> = b.shape().iter().map(|s| s.to_string()).collect();
            write!(
                head,
                "{}: Buffer({}, [{}])",
                b.name(),
                b.dtype(),
                shape.join(", ")
            )?;
        }
        head.push_str("):");
        writeln!(f, "{}", head)?;
        let mut p = Printer {
            out: String::new(),
            indent: 1,
        };
        p.stmt(&self.body);
        f.write_str(&p.out)
    }
}
