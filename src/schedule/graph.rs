//! Building a schedule's stage graph from its outputs: topological order, unique names.

use super::{Schedule, Stage};
use crate::error::{Error, Result};
use crate::lower::ir::Scope;
use crate::te::{Operation, Tensor};
use std::sync::Arc;

pub(super) fn create(outputs: &[Tensor]) -> Result<Schedule> {
    if outputs.is_empty() {
        return Err(Error::Schedule {
            stage: "<none>".into(),
            msg: "create_schedule needs at least one output tensor".into(),
        });
    }
    let mut order: Vec<Arc<Operation>> = vec![];
    let mut placeholders: Vec<Tensor> = vec![];
    for o in outputs {
        if o.op.is_placeholder() {
            return Err(Error::Schedule {
                stage: o.op.name.clone(),
                msg: format!(
                    "{} is a placeholder; the outputs of a schedule must be computed tensors",
                    o.op.name
                ),
            });
        }
        visit(o, &mut order, &mut placeholders, &mut vec![])?;
    }
    for op in &order {
        distinct_axis_names(op)?;
    }
    let stages = order
        .into_iter()
        .map(|op| {
            let is_out = outputs.iter().any(|o| Arc::ptr_eq(&o.op, &op));
            Stage::new(op, is_out, Scope::Global)
        })
        .collect();
    Ok(Schedule {
        outputs: outputs.to_vec(),
        stages,
        placeholders,
        trace: vec![],
    })
}

/// A schedule names axes (and its trace replays them by name), so the data and reduction
/// axes of one stage must be named differently.
fn distinct_axis_names(op: &Operation) -> Result<()> {
    let crate::te::OpKind::Compute { axis, .. } = &op.kind else {
        return Ok(());
    };
    let named: Vec<(String, &str)> = axis
        .iter()
        .map(|a| (a.var.name().to_string(), "data"))
        .chain(
            op.reduce_axis()
                .iter()
                .map(|a| (a.var.name().to_string(), "reduction")),
        )
        .collect();
    for (i, (name, kind)) in named.iter().enumerate() {
        if let Some((_, first)) = named[..i].iter().find(|(n, _)| n == name) {
            let all: Vec<&str> = named.iter().map(|(n, _)| n.as_str()).collect();
            return Err(Error::Schedule {
                stage: op.name.clone(),
                msg: format!(
                    "two axes of {} are named {} (a {} axis and a {} axis; axes: {}); a schedule \
                     refers to axes by name, so give them distinct names (reduce_axis's name, \
                     or compute_named for the data axes)",
                    op.name,
                    name,
                    first,
                    kind,
                    all.join(", ")
                ),
            });
        }
    }
    Ok(())
}

fn visit(
    t: &Tensor,
    order: &mut Vec<Arc<Operation>>,
    ph: &mut Vec<Tensor>,
    stack: &mut Vec<String>,
) -> Result<()> {
    let op = &t.op;
    if op.is_placeholder() {
        if let Some(p) = ph.iter().find(|p| p.op.name == op.name) {
            if !Arc::ptr_eq(&p.op, op) {
                return Err(dup(&op.name));
            }
        } else {
            if order.iter().any(|o| o.name == op.name) {
                return Err(dup(&op.name));
            }
            ph.push(t.clone());
        }
        return Ok(());
    }
    if let Some(o) = order.iter().find(|o| o.name == op.name) {
        if !Arc::ptr_eq(o, op) {
            return Err(dup(&op.name));
        }
        return Ok(());
    }
    if ph.iter().any(|p| p.op.name == op.name) {
        return Err(dup(&op.name));
    }
    if stack.contains(&op.name) {
        return Err(Error::InvalidExpr(format!(
            "the computation has a cycle through {}",
            op.name
        )));
    }
    stack.push(op.name.clone());
    for inp in op.input_tensors() {
        visit(&inp, order, ph, stack)?;
    }
    stack.pop();
    order.push(op.clone());
    Ok(())
}

fn dup(name: &str) -> Error {
    Error::InvalidExpr(format!(
        "two different tensors are named {}; tensor names must be unique within a computation (they name stages and buffers)",
        name
    ))
}

impl Schedule {
    /// Names of the stages that read tensor(s) of operation `name`.
    pub fn readers_of(&self, name: &str) -> Vec<String> {
        let mut out: Vec<String> = vec![];
        for s in &self.stages {
            if s.op.input_tensors().iter().any(|t| t.op.name == name) && !out.contains(&s.name) {
                out.push(s.name.clone());
            }
        }
        out
    }

    /// The stages that read `name` once inlining is done: readers that are inlined are
    /// replaced by their own effective readers.
    pub fn effective_readers_of(&self, name: &str) -> Vec<String> {
        let mut out: Vec<String> = vec![];
        for r in self.readers_of(name) {
            let inlined = self
                .stage(r.as_str())
                .map(|s| s.attach == super::Attach::Inline)
                .unwrap_or(false);
            let more = if inlined {
                self.effective_readers_of(&r)
            } else {
                vec![r]
            };
            for m in more {
                if !out.contains(&m) {
                    out.push(m);
                }
            }
        }
        out
    }
}
