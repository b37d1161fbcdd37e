//! Tensors and the operations that produce them: `placeholder`, `compute`, reductions.

use super::dtype::DType;
use super::expr::{binary, BinOp, CommReducer, CommReducerNode, Expr, ExprNode, ReduceNode, Var};
use crate::error::{Error, Result};
use std::fmt;
use std::sync::Arc;

/// Whether an iteration variable is data-parallel or a reduction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum IterKind {
    /// An output dimension; iterations are independent.
    DataPar,
    /// A reduction dimension; iterations combine into one value.
    Reduce,
}

/// An iteration variable with its domain `[min, min + extent)` (TVM's `IterVar`).
#[derive(Clone, Debug)]
pub struct IterVar {
    /// The loop variable.
    pub var: Var,
    /// Lower bound.
    pub min: Expr,
    /// Number of iterations.
    pub extent: Expr,
    /// Data-parallel or reduction.
    pub kind: IterKind,
}

impl IterVar {
    /// The variable as an expression.
    pub fn x(&self) -> Expr {
        self.var.expr()
    }
    /// The variable's name.
    pub fn name(&self) -> &str {
        self.var.name()
    }
}
impl From<&IterVar> for Expr {
    fn from(v: &IterVar) -> Expr {
        v.var.expr()
    }
}
impl From<IterVar> for Expr {
    fn from(v: IterVar) -> Expr {
        v.var.expr()
    }
}

/// A reduction axis over `[min, max)` (TVM's `te.reduce_axis((min, max), name)`).
pub fn reduce_axis(min: impl Into<Expr>, max: impl Into<Expr>, name: &str) -> IterVar {
    let min = min.into();
    let max = max.into();
    let extent = binary(BinOp::Sub, max, min.clone());
    let extent = crate::lower::simplify::simplify(&extent);
    IterVar {
        var: Var::new(name, DType::I64),
        min,
        extent,
        kind: IterKind::Reduce,
    }
}

/// What produces a tensor.
#[derive(Debug)]
pub enum OpKind {
    /// An input.
    Placeholder {
        /// Element type.
        dtype: DType,
    },
    /// A computed tensor (one or more outputs sharing axes).
    Compute {
        /// Data-parallel axes, one per output dimension.
        axis: Vec<IterVar>,
        /// The value of each output at the point `axis`.
        body: Vec<Expr>,
    },
}

/// An operation: a placeholder or a compute.
#[derive(Debug)]
pub struct Operation {
    /// Unique name (the stage's name in a schedule).
    pub name: String,
    /// Output shape.
    pub shape: Vec<Expr>,
    /// What it is.
    pub kind: OpKind,
}

impl Operation {
    /// Reduction axes used by the body (empty when it is not a reduction).
    pub fn reduce_axis(&self) -> Vec<IterVar> {
        match &self.kind {
            OpKind::Compute { body, .. } => match body[0].node() {
                ExprNode::Reduce(r) => r.axis.clone(),
                _ => vec![],
            },
            _ => vec![],
        }
    }
    /// Number of outputs.
    pub fn num_outputs(&self) -> usize {
        match &self.kind {
            OpKind::Compute { body, .. } => body.len(),
            OpKind::Placeholder { .. } => 1,
        }
    }
    /// Output `i`'s type.
    pub fn output_dtype(&self, i: usize) -> DType {
        match &self.kind {
            OpKind::Compute { body, .. } => body[i].dtype(),
            OpKind::Placeholder { dtype } => *dtype,
        }
    }
    /// Name of output `i`'s tensor (the op name when there is one output, else `name.v{i}`).
    pub fn output_name(&self, i: usize) -> String {
        if self.num_outputs() == 1 {
            self.name.clone()
        } else {
            format!("{}.v{}", self.name, i)
        }
    }
    /// Whether this is a placeholder.
    pub fn is_placeholder(&self) -> bool {
        matches!(self.kind, OpKind::Placeholder { .. })
    }
    /// Tensors read by the body (distinct tensors, in first-read order; two different
    /// tensors that share a name both appear, so name clashes can be reported).
    pub fn input_tensors(&self) -> Vec<Tensor> {
        let mut out: Vec<Tensor> = vec![];
        if let OpKind::Compute { body, .. } = &self.kind {
            for b in body {
                b.visit(&mut |e| {
                    if let ExprNode::Read(t, _) = e.node() {
                        if !out.iter().any(|o| o.same_as(t)) {
                            out.push(t.clone());
                        }
                    }
                    true
                });
            }
        }
        out
    }
}

/// A tensor: one output of an operation.
#[derive(Clone, Debug)]
pub struct Tensor {
    /// The producing operation.
    pub op: Arc<Operation>,
    /// Which output of `op`.
    pub value_index: usize,
}

impl Tensor {
    /// The tensor's name (also its buffer's name).
    pub fn name(&self) -> String {
        self.op.output_name(self.value_index)
    }
    /// Element type.
    pub fn dtype(&self) -> DType {
        self.op.output_dtype(self.value_index)
    }
    /// Shape.
    pub fn shape(&self) -> &[Expr] {
        &self.op.shape
    }
    /// Number of dimensions.
    pub fn ndim(&self) -> usize {
        self.op.shape.len()
    }
    /// Read element `idx`. Index expressions of integer type; a wrong number of indices is
    /// reported by `lower` (via [`Tensor::try_at`] here).
    pub fn at(&self, idx: &[Expr]) -> Expr {
        Expr::new(ExprNode::Read(self.clone(), idx.to_vec()))
    }
    /// Read element `idx`, checking the number of indices and their types.
    pub fn try_at(&self, idx: &[Expr]) -> Result<Expr> {
        if idx.len() != self.ndim() {
            return Err(Error::InvalidExpr(format!(
                "tensor {} has {} dimensions but was indexed with {} indices",
                self.name(),
                self.ndim(),
                idx.len()
            )));
        }
        for (d, i) in idx.iter().enumerate() {
            if !i.dtype().is_int() {
                return Err(Error::InvalidExpr(format!(
                    "index {} of tensor {} has type {}; indices must be integers",
                    d,
                    self.name(),
                    i.dtype()
                )));
            }
        }
        Ok(self.at(idx))
    }
    /// Whether two handles denote the same tensor.
    pub fn same_as(&self, o: &Tensor) -> bool {
        Arc::ptr_eq(&self.op, &o.op) && self.value_index == o.value_index
    }
}

impl fmt::Display for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor({}, [", self.name())?;
        for (i, s) in self.shape().iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{}", s)?;
        }
        write!(f, "], {})", self.dtype())
    }
}

/// An input tensor of the given shape and type (TVM's `te.placeholder`).
pub fn placeholder(shape: &[Expr], dtype: DType, name: &str) -> Tensor {
    Tensor {
        op: Arc::new(Operation {
            name: name.to_string(),
            shape: shape.to_vec(),
            kind: OpKind::Placeholder { dtype },
        }),
        value_index: 0,
    }
}

fn make_axes(shape: &[Expr]) -> Vec<IterVar> {
    const NAMES: [&str; 6] = ["i", "j", "k", "l", "m", "n"];
    shape
        .iter()
        .enumerate()
        .map(|(d, s)| IterVar {
            var: Var::new(
                if d < NAMES.len() {
                    NAMES[d].to_string()
                } else {
                    format!("ax{}", d)
                },
                DType::I64,
            ),
            min: Expr::int(0),
            extent: s.clone(),
            kind: IterKind::DataPar,
        })
        .collect()
}

/// A computed tensor: `f` gives the value at each point of `shape` (TVM's `te.compute`).
/// The axes are named `i, j, k, l, ...`, except that a name the body's reduction axes
/// already use is replaced by `ax{d}` (`d` the dimension); use [`compute_named`] to choose
/// names.
pub fn compute(shape: &[Expr], name: &str, f: impl FnOnce(&[Expr]) -> Expr) -> Tensor {
    let axes = make_axes(shape);
    let idx: Vec<Expr> = axes.iter().map(|a| a.x()).collect();
    let body = f(&idx);
    let (axes, body) = rename_clashing_axes(axes, vec![body]);
    finish_compute(shape, name, axes, body).remove(0)
}

/// Default-named data axes whose names a reduction axis of `body` also uses, renamed
/// `ax{d}` (the body rewritten to match), so that the stage's axis names are distinct.
fn rename_clashing_axes(mut axes: Vec<IterVar>, body: Vec<Expr>) -> (Vec<IterVar>, Vec<Expr>) {
    let reduce: Vec<String> = match body.first().map(|b| b.node()) {
        Some(ExprNode::Reduce(r)) => r.axis.iter().map(|a| a.var.name().to_string()).collect(),
        _ => return (axes, body),
    };
    let mut map = std::collections::HashMap::new();
    for (d, a) in axes.iter_mut().enumerate() {
        if reduce.iter().any(|n| n == a.var.name()) {
            let fresh = Var::new(format!("ax{}", d), DType::I64);
            map.insert(a.var.id(), Expr::from(&fresh));
            a.var = fresh;
        }
    }
    if map.is_empty() {
        return (axes, body);
    }
    let body = body.iter().map(|b| b.substitute(&map)).collect();
    (axes, body)
}

/// Like [`compute`], with the axis names given.
pub fn compute_named(
    shape: &[Expr],
    name: &str,
    axis_names: &[&str],
    f: impl FnOnce(&[Expr]) -> Expr,
) -> Tensor {
    let mut axes = make_axes(shape);
    for (a, n) in axes.iter_mut().zip(axis_names) {
        a.var = Var::new(*n, DType::I64);
    }
    let idx: Vec<Expr> = axes.iter().map(|a| a.x()).collect();
    let body = f(&idx);
    finish_compute(shape, name, axes, vec![body]).remove(0)
}

/// A compute with several outputs over the same axes, e.g. the two results of an argmax
/// built with [`comm_reducer`]. Outputs are named `name.v0`, `name.v1`, ...
pub fn compute_multi(
    shape: &[Expr],
    name: &str,
    f: impl FnOnce(&[Expr]) -> Vec<Expr>,
) -> Vec<Tensor> {
    let axes = make_axes(shape);
    let idx: Vec<Expr> = axes.iter().map(|a| a.x()).collect();
    let body = f(&idx);
    let (axes, body) = rename_clashing_axes(axes, body);
    finish_compute(shape, name, axes, body)
}

fn finish_compute(shape: &[Expr], name: &str, axis: Vec<IterVar>, body: Vec<Expr>) -> Vec<Tensor> {
    let n = body.len();
    let op = Arc::new(Operation {
        name: name.to_string(),
        shape: shape.to_vec(),
        kind: OpKind::Compute { axis, body },
    });
    (0..n)
        .map(|i| Tensor {
            op: op.clone(),
            value_index: i,
        })
        .collect()
}

/// Build a reducer from a combiner over tuples and an identity (TVM's `te.comm_reducer`).
///
/// `combine(lhs, rhs)` returns the combined tuple; `identity(dtypes)` the identity tuple for
/// the source types. Apply it with [`CommReducer::reduce`].
pub fn comm_reducer(
    name: &str,
    dtypes: &[DType],
    combine: impl FnOnce(&[Expr], &[Expr]) -> Vec<Expr>,
    identity: impl FnOnce(&[DType]) -> Vec<Expr>,
) -> CommReducer {
    let lhs: Vec<Var> = dtypes
        .iter()
        .enumerate()
        .map(|(i, t)| Var::new(format!("x{}", i), *t))
        .collect();
    let rhs: Vec<Var> = dtypes
        .iter()
        .enumerate()
        .map(|(i, t)| Var::new(format!("y{}", i), *t))
        .collect();
    let le: Vec<Expr> = lhs.iter().map(|v| v.expr()).collect();
    let re: Vec<Expr> = rhs.iter().map(|v| v.expr()).collect();
    let result = combine(&le, &re);
    let identity = identity(dtypes);
    CommReducer(Arc::new(CommReducerNode {
        name: name.to_string(),
        lhs,
        rhs,
        result,
        identity,
    }))
}

impl CommReducer {
    /// Reduce `source` (one expression per tuple element) over `axis`; returns one
    /// expression per tuple element, to be the bodies of a [`compute_multi`].
    pub fn reduce(&self, source: &[Expr], axis: &[IterVar]) -> Vec<Expr> {
        let rn = |vi| {
            Expr::new(ExprNode::Reduce(Arc::new(ReduceNode {
                combiner: self.clone(),
                source: source.to_vec(),
                axis: axis.to_vec(),
                value_index: vi,
            })))
        };
        // All value indices must share one ReduceNode's data: build them from a shared node.
        (0..source.len()).map(rn).collect()
    }
}

fn simple_reducer(name: &str, dt: DType, op: BinOp, identity: Expr) -> CommReducer {
    comm_reducer(
        name,
        &[dt],
        |a, b| vec![binary(op, a[0].clone(), b[0].clone())],
        |_| vec![identity],
    )
}

fn lowest(dt: DType) -> Expr {
    match dt {
        DType::F32 | DType::F64 | DType::F16 | DType::BF16 => Expr::float_of(f64::NEG_INFINITY, dt),
        DType::I32 => Expr::int_of(i32::MIN as i64, dt),
        DType::I64 => Expr::int_of(i64::MIN, dt),
        DType::Bool => Expr::bool(false),
    }
}
fn highest(dt: DType) -> Expr {
    match dt {
        DType::F32 | DType::F64 | DType::F16 | DType::BF16 => Expr::float_of(f64::INFINITY, dt),
        DType::I32 => Expr::int_of(i32::MAX as i64, dt),
        DType::I64 => Expr::int_of(i64::MAX, dt),
        DType::Bool => Expr::bool(true),
    }
}

/// Sum of `e` over `axis` (TVM's `te.sum`).
pub fn sum(e: impl Into<Expr>, axis: &[IterVar]) -> Expr {
    let e = e.into();
    let dt = e.dtype();
    simple_reducer("sum", dt, BinOp::Add, Expr::int_of(0, dt))
        .reduce(&[e], axis)
        .remove(0)
}
/// Product of `e` over `axis`.
pub fn prod(e: impl Into<Expr>, axis: &[IterVar]) -> Expr {
    let e = e.into();
    let dt = e.dtype();
    simple_reducer("prod", dt, BinOp::Mul, Expr::int_of(1, dt))
        .reduce(&[e], axis)
        .remove(0)
}
/// Maximum of `e` over `axis` (TVM's `te.max`).
pub fn max_reduce(e: impl Into<Expr>, axis: &[IterVar]) -> Expr {
    let e = e.into();
    let dt = e.dtype();
    simple_reducer("max", dt, BinOp::Max, lowest(dt))
        .reduce(&[e], axis)
        .remove(0)
}
/// Minimum of `e` over `axis` (TVM's `te.min`).
pub fn min_reduce(e: impl Into<Expr>, axis: &[IterVar]) -> Expr {
    let e = e.into();
    let dt = e.dtype();
    simple_reducer("min", dt, BinOp::Min, highest(dt))
        .reduce(&[e], axis)
        .remove(0)
}

/// The smallest value of a type (identity of `max`).
pub fn min_value(dt: DType) -> Expr {
    lowest(dt)
}
/// The largest value of a type (identity of `min`).
pub fn max_value(dt: DType) -> Expr {
    highest(dt)
}
