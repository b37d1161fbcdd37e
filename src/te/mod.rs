//! Tensor expressions: *what* is computed (TVM's `te`). Nothing here knows about loops.

pub mod arith;
mod dtype;
mod expr;
mod tensor;

pub use dtype::DType;
pub use expr::{
    abs, and, binary, cast, ceil, ceil_div_expr, cmp, eq, erf, exp, floor, floordiv, floormod, ge,
    gt, if_then_else, le, log, log1p, lt, max, min, ne, not, or, pow, select, sigmoid, sqrt, tanh,
    var, BinOp, CmpOp, CommReducer, CommReducerNode, Expr, ExprNode, MathFn, ReduceNode, Var,
    VarNode,
};
pub use tensor::{
    comm_reducer, compute, compute_multi, compute_named, max_reduce, max_value, min_reduce,
    min_value, placeholder, prod, reduce_axis, sum, IterKind, IterVar, OpKind, Operation, Tensor,
};
