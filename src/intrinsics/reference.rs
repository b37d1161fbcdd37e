//! The declared semantics of an intrinsic call as plain loop IR, on the call's strided
//! views: what the reference interpreter runs in place of the call.

use crate::error::{internal, Result};
use crate::lower::ir::{ForKind, IntrinMode, IntrinOperand, IntrinsicCall, Stmt};
use crate::te::{Expr, ExprNode, OpKind, Var};
use std::collections::HashMap;
use std::sync::Arc;

/// The flat element index of `o`'s tile at the placeholder indices `idx`.
fn element(o: &IntrinOperand, idx: &[Expr]) -> Expr {
    let base = if o.index.len() == 1 {
        o.index[0].clone()
    } else {
        o.index
            .iter()
            .zip(o.buf.strides())
            .fold(Expr::int(0), |acc, (i, s)| acc + i.clone() * s)
    };
    idx.iter()
        .zip(&o.strides)
        .fold(base, |acc, (i, s)| acc + i.clone() * s.clone())
}

/// Loops over the declaration's axes (data, then reduce) computing what `call` declares.
pub(crate) fn reference_stmt(call: &IntrinsicCall) -> Result<Stmt> {
    let intr = &call.intrin;
    let OpKind::Compute { axis, body } = &intr.output.op.kind else {
        return Err(internal(
            format!("intrinsic {}: the declaration is not a compute", intr.name),
            "(intrinsic declaration)",
        ));
    };
    let n_ops = if call.mode == IntrinMode::Init {
        1
    } else {
        intr.inputs.len() + 1
    };
    if call.operands.len() != n_ops {
        return Err(internal(
            format!(
                "intrinsic {}: called with {} operands, declared with {} inputs and an output",
                intr.name,
                call.operands.len(),
                intr.inputs.len()
            ),
            "(intrinsic call)",
        ));
    }
    let red = intr.output.op.reduce_axis();
    let mut subst = HashMap::new();
    let mut fresh = |a: &crate::te::IterVar| {
        let v = Var::new(format!("{}.{}", intr.name, a.var.name()), a.var.dtype());
        subst.insert(a.var.id(), v.expr());
        (v, a.extent.clone())
    };
    // A partial tile's data axes run over the call's extents.
    let data: Vec<(Var, Expr)> = axis
        .iter()
        .zip(&call.extents)
        .map(|(a, e)| (fresh(a).0, e.clone()))
        .collect();
    let reds: Vec<(Var, Expr)> = red.iter().map(&mut fresh).collect();
    let view = |e: &Expr| -> Expr {
        e.substitute(&subst).mutate(&mut |x| match x.node() {
            ExprNode::Read(t, idx) => {
                let i = intr.inputs.iter().position(|p| Arc::ptr_eq(&p.op, &t.op))?;
                let o = &call.operands[i];
                Some(o.buf.load(vec![element(o, idx)]))
            }
            _ => None,
        })
    };
    let out = call.operands.last().expect("checked above");
    let out_at: Vec<Expr> = data.iter().map(|(v, _)| v.expr()).collect();
    let out_idx = vec![element(out, &out_at)];
    let nest = |vars: &[(Var, Expr)], s: Stmt| {
        vars.iter().rev().fold(s, |s, (v, e)| {
            Stmt::for_(v.clone(), Expr::int(0), e.clone(), ForKind::Serial, s)
        })
    };
    match body[0].node() {
        ExprNode::Reduce(r) => {
            let init = nest(
                &data,
                Stmt::Store {
                    buf: out.buf.clone(),
                    indices: out_idx.clone(),
                    value: r.combiner.node().identity[0].clone(),
                },
            );
            if call.mode == IntrinMode::Init {
                return Ok(init);
            }
            let acc = out.buf.load(out_idx.clone());
            let src: Vec<Expr> = r.source.iter().map(&view).collect();
            let new = r.combiner.combine(&[acc], &src);
            let update = Stmt::Store {
                buf: out.buf.clone(),
                indices: out_idx.clone(),
                value: new[0].clone(),
            };
            let update = nest(&data, nest(&reds, update));
            match call.mode {
                IntrinMode::Update => Ok(update),
                _ => Ok(Stmt::seq(vec![init, update])),
            }
        }
        _ => Ok(nest(
            &data,
            Stmt::Store {
                buf: out.buf.clone(),
                indices: out_idx,
                value: view(&body[0]),
            },
        )),
    }
}
