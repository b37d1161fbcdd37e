//! A fused group: the anchor operator's computation with its output stage renamed
//! [`ANCHOR`] (absent when the anchor is itself elementwise, except for an activation
//! with a vectorized intrinsic, `UnaryOp::activation`, which the CPU schedule hands to
//! that intrinsic and the others inline), and one output stage `out`
//! that applies the whole elementwise chain to it, so the epilogue is computed in the
//! output's loop nest: the schedules attach the anchor's (reduction) stage inside it, as
//! TVM's `cache_write` + `compute_at` does.

use super::dims;
use super::elementwise::{batch_norm_expr, binary_expr, broadcast_index, unary_expr};
use crate::error::Result;
use crate::graph_runtime::graph::{EpilogueStep, FusedOp, Op};
use crate::te::{compute, OpKind, Operation, Tensor};
use std::sync::Arc;

/// The name of the anchor's output stage inside a fused group's computation.
pub const ANCHOR: &str = "anchor";

/// `t`'s operation under another name (its body reads its inputs, never itself, so the
/// copy is the same computation).
fn renamed(t: &Tensor, name: &str) -> Tensor {
    let OpKind::Compute { axis, body } = &t.op.kind else {
        return t.clone();
    };
    Tensor {
        op: Arc::new(Operation {
            name: name.to_string(),
            shape: t.op.shape.clone(),
            kind: OpKind::Compute {
                axis: axis.clone(),
                body: body.clone(),
            },
        }),
        value_index: t.value_index,
    }
}

/// The fused group `f` over the placeholders `ins` (shapes `shapes`): see the module doc.
pub fn fused(
    f: &FusedOp,
    ins: &[Tensor],
    shapes: &[&[usize]],
    out_shape: &[usize],
) -> Result<Tensor> {
    let k = f.anchor_inputs;
    let (a_ins, a_shapes) = (&ins[..k], &shapes[..k]);
    // The anchor's value at an output index.
    enum Anchor {
        Stage(Tensor, Option<Tensor>),
        Elementwise,
    }
    let anchor = match f.anchor.as_ref() {
        // An activation stays a stage of its own (which the CPU schedule may hand to an
        // intrinsic; the others inline it).
        Op::Unary(u) if u.activation().is_some() => {
            let t = super::compute(f.anchor.as_ref(), a_ins, a_shapes, out_shape)?;
            Anchor::Stage(renamed(&t, ANCHOR), None)
        }
        op if op.is_elementwise() => Anchor::Elementwise,
        // Dense with a bias: the product is the anchor, the bias the first epilogue term.
        Op::Dense if k == 3 => {
            let mm = super::dense(&a_ins[0], &a_ins[1], None, a_shapes[0], a_shapes[1]);
            Anchor::Stage(renamed(&mm, ANCHOR), Some(a_ins[2].clone()))
        }
        op => {
            let t = super::compute(op, a_ins, a_shapes, out_shape)?;
            Anchor::Stage(renamed(&t, ANCHOR), None)
        }
    };
    let anchor_op = f.anchor.as_ref().clone();
    Ok(compute(&dims(out_shape), "out", |i| {
        let read = |j: usize| ins[j].at(&broadcast_index(i, shapes[j]));
        let mut v = match (&anchor, &anchor_op) {
            (Anchor::Stage(t, bias), _) => {
                let v = t.at(i);
                match bias {
                    Some(b) => v + b.at(&[i[1].clone()]),
                    None => v,
                }
            }
            (Anchor::Elementwise, Op::Binary(b)) => binary_expr(*b, read(0), read(1)),
            (Anchor::Elementwise, Op::Unary(u)) => unary_expr(*u, read(0)),
            (Anchor::Elementwise, Op::BatchNorm { eps }) => {
                batch_norm_expr(read(0), &i[1], [&ins[1], &ins[2], &ins[3], &ins[4]], *eps)
            }
            (Anchor::Elementwise, op) => unreachable!("{} is not elementwise", op.kind_name()),
        };
        // The value after each step so far (the anchor's first).
        let mut values = vec![v.clone()];
        for step in &f.epilogue {
            v = match step {
                EpilogueStep::Unary(u) => unary_expr(*u, v),
                EpilogueStep::BinaryEarlier { op, value_left, at } => {
                    let e = values[*at].clone();
                    if *value_left {
                        binary_expr(*op, v, e)
                    } else {
                        binary_expr(*op, e, v)
                    }
                }
                EpilogueStep::Binary {
                    op,
                    input,
                    value_left,
                } => {
                    let o = read(*input);
                    if *value_left {
                        binary_expr(*op, v, o)
                    } else {
                        binary_expr(*op, o, v)
                    }
                }
                EpilogueStep::BatchNorm { eps, inputs } => batch_norm_expr(
                    v,
                    &i[1],
                    [
                        &ins[inputs[0]],
                        &ins[inputs[1]],
                        &ins[inputs[2]],
                        &ins[inputs[3]],
                    ],
                    *eps,
                ),
            };
            values.push(v.clone());
        }
        v
    }))
}
