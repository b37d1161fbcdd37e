//! Scalar expressions: the vocabulary shared by tensor expressions and the loop IR.
//!
//! An [`Expr`] is immutable and cheap to clone (an `Arc`). The same type serves the TE
//! level (tensor reads, reductions) and the loop IR (buffer loads, vector ramps); each
//! pass documents which forms it accepts.

use super::dtype::DType;
use super::tensor::{IterVar, Tensor};
use crate::lower::ir::Buffer;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

static NEXT_VAR_ID: AtomicU64 = AtomicU64::new(1);

/// A named variable: a symbolic dimension, a loop index or a let binding.
/// Two vars are the same when their ids are equal, whatever their names.
#[derive(Clone, Debug)]
pub struct Var(pub(crate) Arc<VarNode>);

/// The data of a [`Var`].
#[derive(Debug)]
pub struct VarNode {
    /// Unique id.
    pub id: u64,
    /// Human-readable name (not necessarily unique).
    pub name: String,
    /// Type of the variable.
    pub dtype: DType,
}

impl Var {
    /// A fresh variable of the given name and type.
    pub fn new(name: impl Into<String>, dtype: DType) -> Var {
        Var(Arc::new(VarNode {
            id: NEXT_VAR_ID.fetch_add(1, Ordering::Relaxed),
            name: name.into(),
            dtype,
        }))
    }
    /// The variable's name.
    pub fn name(&self) -> &str {
        &self.0.name
    }
    /// The variable's unique id.
    pub fn id(&self) -> u64 {
        self.0.id
    }
    /// The variable's type.
    pub fn dtype(&self) -> DType {
        self.0.dtype
    }
    /// The variable as an expression.
    pub fn expr(&self) -> Expr {
        Expr::new(ExprNode::Var(self.clone()))
    }
}
impl PartialEq for Var {
    fn eq(&self, o: &Var) -> bool {
        self.0.id == o.0.id
    }
}
impl Eq for Var {}
impl std::hash::Hash for Var {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.0.id.hash(h)
    }
}
impl PartialOrd for Var {
    fn partial_cmp(&self, o: &Var) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Var {
    fn cmp(&self, o: &Var) -> std::cmp::Ordering {
        self.0.id.cmp(&o.0.id)
    }
}

/// A symbolic dimension of type int64, bound when a kernel is called (TVM's `te.var`).
pub fn var(name: &str) -> Expr {
    Var::new(name, DType::I64).expr()
}

/// Binary arithmetic operators. `Div` and `Mod` on integers are floor division and
/// floor modulo (as in TVM's `floordiv`/`floormod`); on floats, true division and fmod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BinOp {
    /// `a + b`
    Add,
    /// `a - b`
    Sub,
    /// `a * b`
    Mul,
    /// `a / b` (floor division on integers)
    Div,
    /// `a % b` (floor modulo on integers)
    Mod,
    /// `min(a, b)`
    Min,
    /// `max(a, b)`
    Max,
}

/// Comparison operators; the result is `bool`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CmpOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

/// Math intrinsics (calls to the backend's math library or native instructions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MathFn {
    /// e^x
    Exp,
    /// natural logarithm
    Log,
    /// `log(1 + x)`, accurate for small `x`
    Log1p,
    /// square root
    Sqrt,
    /// hyperbolic tangent
    Tanh,
    /// 1 / (1 + e^-x)
    Sigmoid,
    /// error function
    Erf,
    /// x^y (two arguments)
    Pow,
    /// |x|
    Abs,
    /// round toward -inf
    Floor,
    /// round toward +inf
    Ceil,
}

impl MathFn {
    /// Name used in printed IR and in the CPU runtime's helper symbols.
    pub fn name(self) -> &'static str {
        match self {
            MathFn::Exp => "exp",
            MathFn::Log => "log",
            MathFn::Log1p => "log1p",
            MathFn::Sqrt => "sqrt",
            MathFn::Tanh => "tanh",
            MathFn::Sigmoid => "sigmoid",
            MathFn::Erf => "erf",
            MathFn::Pow => "pow",
            MathFn::Abs => "abs",
            MathFn::Floor => "floor",
            MathFn::Ceil => "ceil",
        }
    }
    /// Number of arguments.
    pub fn arity(self) -> usize {
        if self == MathFn::Pow {
            2
        } else {
            1
        }
    }
}

/// A commutative reducer: a combiner over tuples and its identity (TVM's `comm_reducer`).
#[derive(Clone, Debug)]
pub struct CommReducer(pub(crate) Arc<CommReducerNode>);

/// The data of a [`CommReducer`].
#[derive(Debug)]
pub struct CommReducerNode {
    /// Display name (`sum`, `max`, `argmax`...).
    pub name: String,
    /// Left operand variables (the accumulator), one per tuple element.
    pub lhs: Vec<Var>,
    /// Right operand variables (the new value), one per tuple element.
    pub rhs: Vec<Var>,
    /// The combined value, one per tuple element, over `lhs` and `rhs`.
    pub result: Vec<Expr>,
    /// The identity element, one per tuple element.
    pub identity: Vec<Expr>,
}

impl CommReducer {
    /// The reducer's data.
    pub fn node(&self) -> &CommReducerNode {
        &self.0
    }
    /// Combine accumulator `a` with value `b` (substituting into the combiner).
    pub fn combine(&self, a: &[Expr], b: &[Expr]) -> Vec<Expr> {
        let n = &self.0;
        let mut map = std::collections::HashMap::new();
        for (v, e) in n.lhs.iter().zip(a) {
            map.insert(v.id(), e.clone());
        }
        for (v, e) in n.rhs.iter().zip(b) {
            map.insert(v.id(), e.clone());
        }
        n.result.iter().map(|r| r.substitute(&map)).collect()
    }
}

/// A reduction (TE level only): `combiner` over `source` for all points of `axis`.
#[derive(Debug)]
pub struct ReduceNode {
    /// The combiner.
    pub combiner: CommReducer,
    /// The values reduced, one per tuple element.
    pub source: Vec<Expr>,
    /// The reduction axes.
    pub axis: Vec<IterVar>,
    /// Which tuple element this expression yields.
    pub value_index: usize,
}

/// An expression node. Build them with the constructors and operators, not directly.
#[derive(Debug)]
pub enum ExprNode {
    /// Integer or bool constant.
    Int(i64, DType),
    /// Floating-point constant.
    Float(f64, DType),
    /// A variable.
    Var(Var),
    /// Arithmetic; both operands have the same type.
    Binary(BinOp, Expr, Expr),
    /// Comparison of two operands of the same type; yields bool.
    Cmp(CmpOp, Expr, Expr),
    /// Logical and.
    And(Expr, Expr),
    /// Logical or.
    Or(Expr, Expr),
    /// Logical not.
    Not(Expr),
    /// `cond ? t : f`; both branches are evaluated (no side effects exist).
    Select(Expr, Expr, Expr),
    /// Type conversion.
    Cast(DType, Expr),
    /// Math intrinsic call.
    Call(MathFn, Vec<Expr>),
    /// TE level: read of a tensor element.
    Read(Tensor, Vec<Expr>),
    /// TE level: a reduction.
    Reduce(Arc<ReduceNode>),
    /// Loop IR: load from a buffer (one flat index after storage flattening; a vector
    /// load when the index is a `Ramp`).
    Load(Buffer, Vec<Expr>),
    /// Loop IR: the vector `base, base+stride, ..., base+(lanes-1)*stride`.
    Ramp(Expr, i64, u32),
    /// Loop IR: a scalar repeated over `lanes` lanes.
    Broadcast(Expr, u32),
    /// `let var = value in body`.
    Let(Var, Expr, Expr),
}

/// An immutable, shareable expression.
#[derive(Clone, Debug)]
pub struct Expr(pub(crate) Arc<ExprNode>);

impl Expr {
    /// Wrap a node.
    pub fn new(n: ExprNode) -> Expr {
        Expr(Arc::new(n))
    }
    /// The node.
    pub fn node(&self) -> &ExprNode {
        &self.0
    }
    /// Integer constant of type int64.
    pub fn int(v: i64) -> Expr {
        Expr::new(ExprNode::Int(v, DType::I64))
    }
    /// Integer constant of the given type.
    pub fn int_of(v: i64, dt: DType) -> Expr {
        if dt.is_float() {
            return Expr::new(ExprNode::Float(super::arith::int_to_float(dt, v), dt));
        }
        // Constants hold values of their type: i32 wraps, bool is 0 or 1.
        let v = match dt {
            DType::Bool => (v != 0) as i64,
            DType::I32 => v as i32 as i64,
            _ => v,
        };
        Expr::new(ExprNode::Int(v, dt))
    }
    /// Float constant of the given type (rounded to it: `f32` once, halves through f32).
    pub fn float_of(v: f64, dt: DType) -> Expr {
        if !dt.is_float() {
            return Expr::int_of(v as i64, dt);
        }
        let v = super::arith::round_float(dt, v);
        Expr::new(ExprNode::Float(v, dt))
    }
    /// A constant of any type from an f64 value.
    pub fn constant(v: f64, dt: DType) -> Expr {
        Expr::float_of(v, dt)
    }
    /// Boolean constant.
    pub fn bool(b: bool) -> Expr {
        Expr::new(ExprNode::Int(b as i64, DType::Bool))
    }
    /// The constant value, if this is an integer constant.
    pub fn as_int(&self) -> Option<i64> {
        match self.node() {
            ExprNode::Int(v, _) => Some(*v),
            _ => None,
        }
    }
    /// The constant value, if this is a float constant.
    pub fn as_float(&self) -> Option<f64> {
        match self.node() {
            ExprNode::Float(v, _) => Some(*v),
            _ => None,
        }
    }
    /// The variable, if this is a variable.
    pub fn as_var(&self) -> Option<&Var> {
        match self.node() {
            ExprNode::Var(v) => Some(v),
            _ => None,
        }
    }
    /// Whether this is a constant.
    pub fn is_const(&self) -> bool {
        matches!(self.node(), ExprNode::Int(..) | ExprNode::Float(..))
    }
    /// Pointer identity.
    pub fn same_as(&self, o: &Expr) -> bool {
        Arc::ptr_eq(&self.0, &o.0)
    }

    /// The scalar type of the expression.
    pub fn dtype(&self) -> DType {
        match self.node() {
            ExprNode::Int(_, t) | ExprNode::Float(_, t) => *t,
            ExprNode::Var(v) => v.dtype(),
            ExprNode::Binary(_, a, _) => a.dtype(),
            ExprNode::Cmp(..) | ExprNode::And(..) | ExprNode::Or(..) | ExprNode::Not(..) => {
                DType::Bool
            }
            ExprNode::Select(_, t, _) => t.dtype(),
            ExprNode::Cast(t, _) => *t,
            ExprNode::Call(_, a) => a[0].dtype(),
            ExprNode::Read(t, _) => t.dtype(),
            ExprNode::Reduce(r) => r.source[r.value_index].dtype(),
            ExprNode::Load(b, _) => b.dtype(),
            ExprNode::Ramp(b, _, _) => b.dtype(),
            ExprNode::Broadcast(v, _) => v.dtype(),
            ExprNode::Let(_, _, b) => b.dtype(),
        }
    }

    /// Number of vector lanes (1 for scalars).
    pub fn lanes(&self) -> u32 {
        match self.node() {
            ExprNode::Int(..) | ExprNode::Float(..) | ExprNode::Var(_) => 1,
            ExprNode::Ramp(_, _, l) | ExprNode::Broadcast(_, l) => *l,
            ExprNode::Binary(_, a, b) | ExprNode::Cmp(_, a, b) => a.lanes().max(b.lanes()),
            ExprNode::And(a, b) | ExprNode::Or(a, b) => a.lanes().max(b.lanes()),
            ExprNode::Not(a) | ExprNode::Cast(_, a) => a.lanes(),
            ExprNode::Select(c, t, f) => c.lanes().max(t.lanes()).max(f.lanes()),
            ExprNode::Call(_, a) => a.iter().map(|x| x.lanes()).max().unwrap_or(1),
            ExprNode::Read(..) | ExprNode::Reduce(_) => 1,
            ExprNode::Load(_, idx) => idx.iter().map(|x| x.lanes()).max().unwrap_or(1),
            ExprNode::Let(_, _, b) => b.lanes(),
        }
    }

    /// The children of this node, in a fixed order.
    pub fn children(&self) -> Vec<&Expr> {
        match self.node() {
            ExprNode::Int(..) | ExprNode::Float(..) | ExprNode::Var(_) => vec![],
            ExprNode::Binary(_, a, b) | ExprNode::Cmp(_, a, b) => vec![a, b],
            ExprNode::And(a, b) | ExprNode::Or(a, b) => vec![a, b],
            ExprNode::Not(a) | ExprNode::Cast(_, a) => vec![a],
            ExprNode::Select(c, t, f) => vec![c, t, f],
            ExprNode::Call(_, a) | ExprNode::Read(_, a) | ExprNode::Load(_, a) => {
                a.iter().collect()
            }
            ExprNode::Reduce(r) => r.source.iter().collect(),
            ExprNode::Ramp(b, _, _) | ExprNode::Broadcast(b, _) => vec![b],
            ExprNode::Let(_, v, b) => vec![v, b],
        }
    }

    /// Rebuild this node with new children (same order as [`Expr::children`]).
    pub fn with_children(&self, c: Vec<Expr>) -> Expr {
        let mut it = c.into_iter();
        let mut n = || it.next().expect("with_children: too few children");
        let node = match self.node() {
            ExprNode::Int(..) | ExprNode::Float(..) | ExprNode::Var(_) => return self.clone(),
            ExprNode::Binary(op, _, _) => ExprNode::Binary(*op, n(), n()),
            ExprNode::Cmp(op, _, _) => ExprNode::Cmp(*op, n(), n()),
            ExprNode::And(..) => ExprNode::And(n(), n()),
            ExprNode::Or(..) => ExprNode::Or(n(), n()),
            ExprNode::Not(_) => ExprNode::Not(n()),
            ExprNode::Cast(t, _) => ExprNode::Cast(*t, n()),
            ExprNode::Select(..) => ExprNode::Select(n(), n(), n()),
            ExprNode::Call(f, a) => ExprNode::Call(*f, a.iter().map(|_| n()).collect()),
            ExprNode::Read(t, a) => ExprNode::Read(t.clone(), a.iter().map(|_| n()).collect()),
            ExprNode::Load(b, a) => ExprNode::Load(b.clone(), a.iter().map(|_| n()).collect()),
            ExprNode::Reduce(r) => ExprNode::Reduce(Arc::new(ReduceNode {
                combiner: r.combiner.clone(),
                source: r.source.iter().map(|_| n()).collect(),
                axis: r.axis.clone(),
                value_index: r.value_index,
            })),
            ExprNode::Ramp(_, s, l) => ExprNode::Ramp(n(), *s, *l),
            ExprNode::Broadcast(_, l) => ExprNode::Broadcast(n(), *l),
            ExprNode::Let(v, _, _) => ExprNode::Let(v.clone(), n(), n()),
        };
        Expr::new(node)
    }

    /// Rewrite bottom-up-on-demand: `f` is asked first for each node; where it returns
    /// `Some`, that replaces the node (and is not visited further); otherwise the children
    /// are rewritten and the node rebuilt (unchanged nodes keep their identity).
    pub fn mutate(&self, f: &mut dyn FnMut(&Expr) -> Option<Expr>) -> Expr {
        if let Some(r) = f(self) {
            return r;
        }
        let kids = self.children();
        if kids.is_empty() {
            return self.clone();
        }
        let mut changed = false;
        let new: Vec<Expr> = kids
            .into_iter()
            .map(|k| {
                let r = k.mutate(f);
                if !r.same_as(k) {
                    changed = true;
                }
                r
            })
            .collect();
        if changed {
            self.with_children(new)
        } else {
            self.clone()
        }
    }

    /// Visit every node (pre-order). Return `false` from `f` to skip a node's children.
    pub fn visit(&self, f: &mut dyn FnMut(&Expr) -> bool) {
        if f(self) {
            for k in self.children() {
                k.visit(f);
            }
        }
    }

    /// Replace variables by id.
    pub fn substitute(&self, map: &std::collections::HashMap<u64, Expr>) -> Expr {
        if map.is_empty() {
            return self.clone();
        }
        self.mutate(&mut |e| match e.node() {
            ExprNode::Var(v) => map.get(&v.id()).cloned(),
            _ => None,
        })
    }

    /// Whether the expression mentions the variable.
    pub fn uses_var(&self, v: &Var) -> bool {
        let mut found = false;
        self.visit(&mut |e| {
            if let ExprNode::Var(x) = e.node() {
                if x == v {
                    found = true;
                }
            }
            !found
        });
        found
    }

    /// All free variables, in first-use order.
    pub fn free_vars(&self) -> Vec<Var> {
        let mut out: Vec<Var> = Vec::new();
        let mut bound: Vec<Var> = Vec::new();
        collect_vars(self, &mut out, &mut bound);
        out
    }

    /// Structural equality (vars by id, buffers and tensors by name).
    pub fn structural_eq(&self, o: &Expr) -> bool {
        if self.same_as(o) {
            return true;
        }
        let same_head = match (self.node(), o.node()) {
            (ExprNode::Int(a, t), ExprNode::Int(b, u)) => return a == b && t == u,
            (ExprNode::Float(a, t), ExprNode::Float(b, u)) => {
                return a.to_bits() == b.to_bits() && t == u
            }
            (ExprNode::Var(a), ExprNode::Var(b)) => return a == b,
            (ExprNode::Binary(p, ..), ExprNode::Binary(q, ..)) => p == q,
            (ExprNode::Cmp(p, ..), ExprNode::Cmp(q, ..)) => p == q,
            (ExprNode::And(..), ExprNode::And(..)) => true,
            (ExprNode::Or(..), ExprNode::Or(..)) => true,
            (ExprNode::Not(..), ExprNode::Not(..)) => true,
            (ExprNode::Select(..), ExprNode::Select(..)) => true,
            (ExprNode::Cast(t, _), ExprNode::Cast(u, _)) => t == u,
            (ExprNode::Call(f, _), ExprNode::Call(g, _)) => f == g,
            (ExprNode::Read(t, a), ExprNode::Read(u, b)) => {
                t.name() == u.name() && a.len() == b.len()
            }
            (ExprNode::Load(t, a), ExprNode::Load(u, b)) => {
                t.name() == u.name() && a.len() == b.len()
            }
            (ExprNode::Ramp(_, s, l), ExprNode::Ramp(_, t, m)) => s == t && l == m,
            (ExprNode::Broadcast(_, l), ExprNode::Broadcast(_, m)) => l == m,
            (ExprNode::Let(v, ..), ExprNode::Let(w, ..)) => v == w,
            (ExprNode::Reduce(a), ExprNode::Reduce(b)) => Arc::ptr_eq(a, b),
            _ => false,
        };
        same_head
            && self.children().len() == o.children().len()
            && self
                .children()
                .iter()
                .zip(o.children())
                .all(|(a, b)| a.structural_eq(b))
    }
}

fn collect_vars(e: &Expr, out: &mut Vec<Var>, bound: &mut Vec<Var>) {
    match e.node() {
        ExprNode::Var(v) => {
            if !out.contains(v) && !bound.contains(v) {
                out.push(v.clone());
            }
        }
        ExprNode::Let(v, val, body) => {
            collect_vars(val, out, bound);
            bound.push(v.clone());
            collect_vars(body, out, bound);
            bound.pop();
        }
        ExprNode::Reduce(r) => {
            for a in &r.axis {
                bound.push(a.var.clone());
            }
            for s in &r.source {
                collect_vars(s, out, bound);
            }
            for _ in &r.axis {
                bound.pop();
            }
        }
        _ => {
            for k in e.children() {
                collect_vars(k, out, bound);
            }
        }
    }
}

// ---------------------------------------------------------------- constructors

/// Convert both operands to their common type (constants adopt the other side's type).
pub(crate) fn unify(a: Expr, b: Expr) -> (Expr, Expr) {
    let (ta, tb) = (a.dtype(), b.dtype());
    if ta == tb {
        return (a, b);
    }
    if a.is_const() && a.lanes() == 1 && (!ta.is_float() || tb.is_float()) {
        return (retype_const(&a, tb), b);
    }
    if b.is_const() && b.lanes() == 1 && (!tb.is_float() || ta.is_float()) {
        return (a, retype_const(&b, ta));
    }
    let t = DType::promote(ta, tb);
    (cast(t, a), cast(t, b))
}

fn retype_const(e: &Expr, t: DType) -> Expr {
    match e.node() {
        ExprNode::Int(v, _) => Expr::int_of(*v, t),
        ExprNode::Float(v, _) => Expr::float_of(*v, t),
        _ => cast(t, e.clone()),
    }
}

/// Binary operation with type unification.
pub fn binary(op: BinOp, a: Expr, b: Expr) -> Expr {
    let (a, b) = unify(a, b);
    Expr::new(ExprNode::Binary(op, a, b))
}

/// Comparison with type unification.
pub fn cmp(op: CmpOp, a: impl Into<Expr>, b: impl Into<Expr>) -> Expr {
    let (a, b) = unify(a.into(), b.into());
    Expr::new(ExprNode::Cmp(op, a, b))
}

/// `a == b`
pub fn eq(a: impl Into<Expr>, b: impl Into<Expr>) -> Expr {
    cmp(CmpOp::Eq, a, b)
}
/// `a != b`
pub fn ne(a: impl Into<Expr>, b: impl Into<Expr>) -> Expr {
    cmp(CmpOp::Ne, a, b)
}
/// `a < b`
pub fn lt(a: impl Into<Expr>, b: impl Into<Expr>) -> Expr {
    cmp(CmpOp::Lt, a, b)
}
/// `a <= b`
pub fn le(a: impl Into<Expr>, b: impl Into<Expr>) -> Expr {
    cmp(CmpOp::Le, a, b)
}
/// `a > b`
pub fn gt(a: impl Into<Expr>, b: impl Into<Expr>) -> Expr {
    cmp(CmpOp::Gt, a, b)
}
/// `a >= b`
pub fn ge(a: impl Into<Expr>, b: impl Into<Expr>) -> Expr {
    cmp(CmpOp::Ge, a, b)
}
/// Logical and.
pub fn and(a: impl Into<Expr>, b: impl Into<Expr>) -> Expr {
    Expr::new(ExprNode::And(to_bool(a.into()), to_bool(b.into())))
}
/// Logical or.
pub fn or(a: impl Into<Expr>, b: impl Into<Expr>) -> Expr {
    Expr::new(ExprNode::Or(to_bool(a.into()), to_bool(b.into())))
}
/// Logical not.
pub fn not(a: impl Into<Expr>) -> Expr {
    Expr::new(ExprNode::Not(to_bool(a.into())))
}
fn to_bool(e: Expr) -> Expr {
    if e.dtype() == DType::Bool {
        e
    } else {
        ne(e.clone(), Expr::int_of(0, e.dtype()))
    }
}

/// `cond ? t : f` (TVM's `te.select`; both sides are evaluated).
pub fn select(cond: impl Into<Expr>, t: impl Into<Expr>, f: impl Into<Expr>) -> Expr {
    let (t, f) = unify(t.into(), f.into());
    Expr::new(ExprNode::Select(to_bool(cond.into()), t, f))
}

/// TVM's `tir.if_then_else`: the same as [`select`] in loopforge (loads are never
/// out-of-bounds-evaluated speculatively, because loopforge clamps nothing: write the
/// guard so both branches are in bounds, or use it as a pure value choice).
pub fn if_then_else(cond: impl Into<Expr>, t: impl Into<Expr>, f: impl Into<Expr>) -> Expr {
    select(cond, t, f)
}

/// Type conversion (a no-op when the type already matches).
pub fn cast(t: DType, e: impl Into<Expr>) -> Expr {
    let e = e.into();
    if e.dtype() == t {
        return e;
    }
    match e.node() {
        ExprNode::Int(v, _) if e.lanes() == 1 => Expr::int_of(*v, t),
        // Saturating, as Rust's `as` (and the backends) convert.
        ExprNode::Float(v, _) if !t.is_float() => {
            Expr::int_of(super::arith::float_to_int(t, *v), t)
        }
        ExprNode::Float(v, _) => Expr::float_of(*v, t),
        _ => Expr::new(ExprNode::Cast(t, e)),
    }
}

fn call1(f: MathFn, x: Expr) -> Expr {
    let x = if x.dtype().is_float() {
        x
    } else {
        cast(DType::F32, x)
    };
    Expr::new(ExprNode::Call(f, vec![x]))
}
/// e^x
pub fn exp(x: impl Into<Expr>) -> Expr {
    call1(MathFn::Exp, x.into())
}
/// natural logarithm
pub fn log(x: impl Into<Expr>) -> Expr {
    call1(MathFn::Log, x.into())
}
/// `log(1 + x)`, accurate where `x` is small (C's `log1p`)
pub fn log1p(x: impl Into<Expr>) -> Expr {
    call1(MathFn::Log1p, x.into())
}
/// square root
pub fn sqrt(x: impl Into<Expr>) -> Expr {
    call1(MathFn::Sqrt, x.into())
}
/// hyperbolic tangent
pub fn tanh(x: impl Into<Expr>) -> Expr {
    call1(MathFn::Tanh, x.into())
}
/// logistic sigmoid `1 / (1 + exp(-x))`
pub fn sigmoid(x: impl Into<Expr>) -> Expr {
    call1(MathFn::Sigmoid, x.into())
}
/// error function
pub fn erf(x: impl Into<Expr>) -> Expr {
    call1(MathFn::Erf, x.into())
}
/// round toward negative infinity
pub fn floor(x: impl Into<Expr>) -> Expr {
    call1(MathFn::Floor, x.into())
}
/// round toward positive infinity
pub fn ceil(x: impl Into<Expr>) -> Expr {
    call1(MathFn::Ceil, x.into())
}
/// absolute value (integers too)
pub fn abs(x: impl Into<Expr>) -> Expr {
    let x = x.into();
    if x.dtype().is_float() {
        Expr::new(ExprNode::Call(MathFn::Abs, vec![x]))
    } else {
        let z = Expr::int_of(0, x.dtype());
        select(
            lt(x.clone(), z.clone()),
            binary(BinOp::Sub, z, x.clone()),
            x,
        )
    }
}
/// `x` to the power `y`
pub fn pow(x: impl Into<Expr>, y: impl Into<Expr>) -> Expr {
    let (x, y) = unify(x.into(), y.into());
    let (x, y) = if x.dtype().is_float() {
        (x, y)
    } else {
        (cast(DType::F32, x), cast(DType::F32, y))
    };
    Expr::new(ExprNode::Call(MathFn::Pow, vec![x, y]))
}
/// Elementwise minimum of two expressions.
pub fn min(a: impl Into<Expr>, b: impl Into<Expr>) -> Expr {
    binary(BinOp::Min, a.into(), b.into())
}
/// Elementwise maximum of two expressions.
pub fn max(a: impl Into<Expr>, b: impl Into<Expr>) -> Expr {
    binary(BinOp::Max, a.into(), b.into())
}
/// Floor division (integers) / division (floats).
pub fn floordiv(a: impl Into<Expr>, b: impl Into<Expr>) -> Expr {
    binary(BinOp::Div, a.into(), b.into())
}
/// Floor modulo (integers) / fmod (floats).
pub fn floormod(a: impl Into<Expr>, b: impl Into<Expr>) -> Expr {
    binary(BinOp::Mod, a.into(), b.into())
}

// ---------------------------------------------------------------- conversions

impl From<i64> for Expr {
    fn from(v: i64) -> Expr {
        Expr::int(v)
    }
}
impl From<i32> for Expr {
    fn from(v: i32) -> Expr {
        Expr::int(v as i64)
    }
}
impl From<usize> for Expr {
    fn from(v: usize) -> Expr {
        Expr::int(v as i64)
    }
}
impl From<f32> for Expr {
    fn from(v: f32) -> Expr {
        Expr::float_of(v as f64, DType::F32)
    }
}
impl From<f64> for Expr {
    fn from(v: f64) -> Expr {
        Expr::float_of(v, DType::F64)
    }
}
impl From<bool> for Expr {
    fn from(v: bool) -> Expr {
        Expr::bool(v)
    }
}
impl From<&Expr> for Expr {
    fn from(v: &Expr) -> Expr {
        v.clone()
    }
}
impl From<&Var> for Expr {
    fn from(v: &Var) -> Expr {
        v.expr()
    }
}
impl From<Var> for Expr {
    fn from(v: Var) -> Expr {
        v.expr()
    }
}

// ---------------------------------------------------------------- operators

macro_rules! impl_binop {
    ($tr:ident, $m:ident, $op:expr) => {
        impl<R: Into<Expr>> std::ops::$tr<R> for Expr {
            type Output = Expr;
            fn $m(self, r: R) -> Expr {
                binary($op, self, r.into())
            }
        }
        impl<R: Into<Expr>> std::ops::$tr<R> for &Expr {
            type Output = Expr;
            fn $m(self, r: R) -> Expr {
                binary($op, self.clone(), r.into())
            }
        }
        impl std::ops::$tr<Expr> for f32 {
            type Output = Expr;
            fn $m(self, r: Expr) -> Expr {
                binary($op, self.into(), r)
            }
        }
        impl std::ops::$tr<Expr> for f64 {
            type Output = Expr;
            fn $m(self, r: Expr) -> Expr {
                binary($op, self.into(), r)
            }
        }
        impl std::ops::$tr<Expr> for i64 {
            type Output = Expr;
            fn $m(self, r: Expr) -> Expr {
                binary($op, self.into(), r)
            }
        }
        impl std::ops::$tr<Expr> for i32 {
            type Output = Expr;
            fn $m(self, r: Expr) -> Expr {
                binary($op, self.into(), r)
            }
        }
    };
}
impl_binop!(Add, add, BinOp::Add);
impl_binop!(Sub, sub, BinOp::Sub);
impl_binop!(Mul, mul, BinOp::Mul);
impl_binop!(Div, div, BinOp::Div);
impl_binop!(Rem, rem, BinOp::Mod);

impl std::ops::Neg for Expr {
    type Output = Expr;
    fn neg(self) -> Expr {
        let z = Expr::int_of(0, self.dtype());
        binary(BinOp::Sub, z, self)
    }
}
impl std::ops::Neg for &Expr {
    type Output = Expr;
    fn neg(self) -> Expr {
        -(self.clone())
    }
}

// ---------------------------------------------------------------- printing

fn prec(e: &Expr) -> u8 {
    match e.node() {
        ExprNode::Or(..) => 1,
        ExprNode::And(..) => 2,
        ExprNode::Cmp(..) => 3,
        ExprNode::Binary(BinOp::Add | BinOp::Sub, ..) => 4,
        ExprNode::Binary(BinOp::Mul | BinOp::Div | BinOp::Mod, ..) => 5,
        _ => 9,
    }
}

fn wrap(f: &mut fmt::Formatter<'_>, e: &Expr, min_prec: u8) -> fmt::Result {
    if prec(e) < min_prec {
        write!(f, "({})", e)
    } else {
        write!(f, "{}", e)
    }
}

/// Print a float constant so that it reads back as the same value (`f32` with an `f`
/// suffix, `float16`/`bfloat16` with `f16`/`bf16`: the shortest f32 that rounds back).
pub(crate) fn fmt_float(v: f64, t: DType) -> String {
    let suffix = match t {
        DType::F32 => "f",
        DType::F16 => "f16",
        DType::BF16 => "bf16",
        _ => "",
    };
    if v.is_nan() {
        format!("nan{}", suffix)
    } else if v.is_infinite() {
        format!("{}inf{}", if v < 0.0 { "-" } else { "" }, suffix)
    } else if v == v.trunc() && v.abs() < 1e15 {
        format!("{:.1}{}", v, suffix)
    } else if t != DType::F64 {
        format!("{:?}{}", v as f32, suffix)
    } else {
        format!("{:?}", v)
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.node() {
            ExprNode::Int(v, DType::Bool) => write!(f, "{}", *v != 0),
            ExprNode::Int(v, DType::I32) => write!(f, "{}i32", v),
            ExprNode::Int(v, _) => write!(f, "{}", v),
            ExprNode::Float(v, t) => write!(f, "{}", fmt_float(*v, *t)),
            ExprNode::Var(v) => write!(f, "{}", v.name()),
            ExprNode::Binary(op, a, b) => match op {
                BinOp::Min | BinOp::Max => {
                    write!(
                        f,
                        "{}({}, {})",
                        if *op == BinOp::Min { "min" } else { "max" },
                        a,
                        b
                    )
                }
                BinOp::Div if !a.dtype().is_float() => write!(f, "floordiv({}, {})", a, b),
                BinOp::Mod if !a.dtype().is_float() => write!(f, "floormod({}, {})", a, b),
                BinOp::Mod => write!(f, "fmod({}, {})", a, b),
                _ => {
                    let p = prec(self);
                    let s = match op {
                        BinOp::Add => "+",
                        BinOp::Sub => "-",
                        BinOp::Mul => "*",
                        _ => "/",
                    };
                    wrap(f, a, p)?;
                    write!(f, " {} ", s)?;
                    wrap(f, b, p + 1)
                }
            },
            ExprNode::Cmp(op, a, b) => {
                let s = match op {
                    CmpOp::Eq => "==",
                    CmpOp::Ne => "!=",
                    CmpOp::Lt => "<",
                    CmpOp::Le => "<=",
                    CmpOp::Gt => ">",
                    CmpOp::Ge => ">=",
                };
                wrap(f, a, 4)?;
                write!(f, " {} ", s)?;
                wrap(f, b, 4)
            }
            ExprNode::And(a, b) => {
                wrap(f, a, 2)?;
                write!(f, " && ")?;
                wrap(f, b, 3)
            }
            ExprNode::Or(a, b) => {
                wrap(f, a, 1)?;
                write!(f, " || ")?;
                wrap(f, b, 2)
            }
            ExprNode::Not(a) => {
                write!(f, "!")?;
                wrap(f, a, 9)
            }
            ExprNode::Select(c, t, e) => write!(f, "select({}, {}, {})", c, t, e),
            ExprNode::Cast(t, e) => write!(f, "{}({})", t, e),
            ExprNode::Call(m, a) => {
                write!(f, "{}(", m.name())?;
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{}", x)?;
                }
                write!(f, ")")
            }
            ExprNode::Read(t, idx) => {
                write!(f, "{}[", t.name())?;
                for (i, x) in idx.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{}", x)?;
                }
                write!(f, "]")
            }
            ExprNode::Load(b, idx) => {
                write!(f, "{}[", b.name())?;
                for (i, x) in idx.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{}", x)?;
                }
                write!(f, "]")
            }
            ExprNode::Reduce(r) => {
                write!(f, "reduce({}, [", r.combiner.node().name)?;
                for (i, x) in r.source.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{}", x)?;
                }
                write!(f, "], axis=[")?;
                for (i, a) in r.axis.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{}", a.var.name())?;
                }
                write!(f, "]")?;
                if r.source.len() > 1 {
                    write!(f, ", value_index={}", r.value_index)?;
                }
                write!(f, ")")
            }
            ExprNode::Ramp(b, s, l) => write!(f, "ramp({}, {}, {})", b, s, l),
            ExprNode::Broadcast(v, l) => write!(f, "x{}({})", l, v),
            ExprNode::Let(v, val, body) => write!(f, "(let {} = {} in {})", v.name(), val, body),
        }
    }
}

/// `ceil(a / b)` for a positive constant `b`, as `floordiv(a + b - 1, b)`.
pub fn ceil_div_expr(a: Expr, b: i64) -> Expr {
    floordiv(a + (b - 1), b)
}
