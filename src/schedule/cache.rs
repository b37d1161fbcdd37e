//! cache_read and cache_write: insert a copy stage in a given memory scope and rewire
//! the readers (or the writer) to it.

use super::{Schedule, Stage, StageRef, Step};
use crate::error::{sched_err, Error, Result};
use crate::lower::ir::Scope;
use crate::te::{Expr, ExprNode, IterKind, IterVar, OpKind, Operation, Tensor, Var};
use std::collections::HashMap;
use std::sync::Arc;

fn parse_scope(stage: &str, scope: &str) -> Result<Scope> {
    Scope::parse(scope).ok_or_else(|| {
        sched_err(
            stage,
            format!(
                "unknown memory scope {:?}; scopes are \"global\", \"shared\" and \"local\"",
                scope
            ),
        )
    })
}

fn copy_axes(shape: &[Expr]) -> Vec<IterVar> {
    shape
        .iter()
        .enumerate()
        .map(|(d, s)| IterVar {
            var: Var::new(format!("ax{}", d), crate::te::DType::I64),
            min: Expr::int(0),
            extent: s.clone(),
            kind: IterKind::DataPar,
        })
        .collect()
}

/// Data-parallel copies of `axes` with fresh variables of the same names and ranges (a
/// rebuilt stage's own axes).
pub(super) fn fresh_data_axes(axes: &[IterVar]) -> Vec<IterVar> {
    axes.iter()
        .map(|a| IterVar {
            var: Var::new(a.var.name(), crate::te::DType::I64),
            min: a.min.clone(),
            extent: a.extent.clone(),
            kind: IterKind::DataPar,
        })
        .collect()
}

pub(super) fn with_body(op: &Operation, body: Vec<Expr>) -> Arc<Operation> {
    let axis = match &op.kind {
        OpKind::Compute { axis, .. } => axis.clone(),
        _ => unreachable!("only compute ops have bodies"),
    };
    Arc::new(Operation {
        name: op.name.clone(),
        shape: op.shape.clone(),
        kind: OpKind::Compute { axis, body },
    })
}

impl Schedule {
    fn tensor_by_name(&self, name: &str) -> Result<Tensor> {
        if let Some(p) = self.placeholders.iter().find(|p| p.op.name == name) {
            return Ok(p.clone());
        }
        let st = self.stage(name)?;
        if st.op.num_outputs() != 1 {
            return Err(sched_err(
                name,
                format!("cannot cache {}: it has several outputs", name),
            ));
        }
        Ok(Tensor {
            op: st.op.clone(),
            value_index: 0,
        })
    }

    /// Read `tensor` through a copy in `scope` ("global", "shared", "local"), for the given
    /// readers; returns the copy, a new stage named `<tensor>.<scope>`.
    pub fn cache_read<S: StageRef + ?Sized>(
        &mut self,
        tensor: &S,
        scope: &str,
        readers: &[&Tensor],
    ) -> Result<Tensor> {
        let names: Vec<String> = readers.iter().map(|t| t.op.name.clone()).collect();
        let r: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        self.cache_read_by_name(&tensor.stage_name(), scope, &r)
    }

    pub(crate) fn cache_read_by_name(
        &mut self,
        name: &str,
        scope: &str,
        readers: &[&str],
    ) -> Result<Tensor> {
        let sc = parse_scope(name, scope)?;
        let src = self.tensor_by_name(name)?;
        let new_name = format!("{}.{}", name, scope);
        if self.stages.iter().any(|s| s.name == new_name) {
            return Err(sched_err(
                name,
                format!("{} already has a cache named {}", name, new_name),
            ));
        }
        if readers.is_empty() {
            return Err(sched_err(name, "cache_read needs at least one reader"));
        }
        let actual = self.readers_of(name);
        for r in readers {
            if !actual.iter().any(|a| a == r) {
                return Err(sched_err(
                    name,
                    format!(
                        "cannot cache_read {} for {}: {} does not read it (its readers are: {})",
                        name,
                        r,
                        r,
                        actual.join(", ")
                    ),
                ));
            }
        }
        let axis = copy_axes(src.shape());
        let idx: Vec<Expr> = axis.iter().map(|a| a.x()).collect();
        let op = Arc::new(Operation {
            name: new_name.clone(),
            shape: src.shape().to_vec(),
            kind: OpKind::Compute {
                axis,
                body: vec![src.at(&idx)],
            },
        });
        let cache = Tensor {
            op: op.clone(),
            value_index: 0,
        };
        let mut first = self.stages.len();
        for r in readers {
            let ri = self.stage_index(r)?;
            first = first.min(ri);
            let rop = self.stages[ri].op.clone();
            let body = match &rop.kind {
                OpKind::Compute { body, .. } => body
                    .iter()
                    .map(|b| replace_reads(b, name, &cache))
                    .collect(),
                _ => unreachable!(),
            };
            self.stages[ri].op = with_body(&rop, body);
        }
        self.stages.insert(first, Stage::new(op, false, sc));
        self.trace.push(Step::CacheRead {
            tensor: name.to_string(),
            scope: scope.to_string(),
            readers: readers.iter().map(|s| s.to_string()).collect(),
        });
        Ok(cache)
    }

    /// Compute `tensor` into a copy in `scope` first, then copy it out; returns the new
    /// stage `<tensor>.<scope>`, which takes over the computation (and its reduce axes).
    /// Apply it before any other primitive on `tensor`'s stage.
    pub fn cache_write<S: StageRef + ?Sized>(&mut self, tensor: &S, scope: &str) -> Result<Tensor> {
        self.cache_write_by_name(&tensor.stage_name(), scope)
    }

    pub(crate) fn cache_write_by_name(&mut self, name: &str, scope: &str) -> Result<Tensor> {
        let sc = parse_scope(name, scope)?;
        let si = self.stage_index(name)?;
        let st = &self.stages[si];
        if !st.relations.is_empty()
            || st
                .axes
                .iter()
                .any(|a| a.annotation != crate::lower::ir::ForKind::Serial)
        {
            return Err(sched_err(name, format!("cache_write must come before any other primitive on {}: it replaces the stage's axes", name)));
        }
        if st.op.num_outputs() != 1 {
            return Err(sched_err(
                name,
                format!("cannot cache_write {}: it has several outputs", name),
            ));
        }
        let new_name = format!("{}.{}", name, scope);
        if self.stages.iter().any(|s| s.name == new_name) {
            return Err(sched_err(
                name,
                format!("{} already has a cache named {}", name, new_name),
            ));
        }
        let op = st.op.clone();
        let (axis, body) = match &op.kind {
            OpKind::Compute { axis, body } => (axis.clone(), body.clone()),
            _ => {
                return Err(Error::Schedule {
                    stage: name.into(),
                    msg: "not a compute stage".into(),
                })
            }
        };
        let new_axis = fresh_data_axes(&axis);
        let map: HashMap<u64, Expr> = axis
            .iter()
            .zip(&new_axis)
            .map(|(a, b)| (a.var.id(), b.x()))
            .collect();
        let cbody: Vec<Expr> = body.iter().map(|b| b.substitute(&map)).collect();
        let cop = Arc::new(Operation {
            name: new_name.clone(),
            shape: op.shape.clone(),
            kind: OpKind::Compute {
                axis: new_axis,
                body: cbody,
            },
        });
        let cache = Tensor {
            op: cop.clone(),
            value_index: 0,
        };
        let idx: Vec<Expr> = axis.iter().map(|a| a.x()).collect();
        let nop = Arc::new(Operation {
            name: name.to_string(),
            shape: op.shape.clone(),
            kind: OpKind::Compute {
                axis,
                body: vec![cache.at(&idx)],
            },
        });
        let old = self.stages[si].clone();
        let mut fresh = Stage::new(nop, old.is_output, old.scope);
        fresh.attach = old.attach;
        self.stages[si] = fresh;
        self.stages.insert(si, Stage::new(cop, false, sc));
        self.trace.push(Step::CacheWrite {
            tensor: name.to_string(),
            scope: scope.to_string(),
        });
        Ok(cache)
    }
}

/// Replace reads of operation `name` by reads of `by` (same indices).
fn replace_reads(e: &Expr, name: &str, by: &Tensor) -> Expr {
    replace_reads_with(e, name, &|idx| by.at(idx))
}

/// Replace each read `name[idx]` by `with(idx)` (the indices already rewritten).
pub(super) fn replace_reads_with(e: &Expr, name: &str, with: &dyn Fn(&[Expr]) -> Expr) -> Expr {
    e.mutate(&mut |x| match x.node() {
        ExprNode::Read(t, idx) if t.op.name == name => {
            let idx: Vec<Expr> = idx
                .iter()
                .map(|i| replace_reads_with(i, name, with))
                .collect();
            Some(with(&idx))
        }
        ExprNode::Reduce(r) => {
            let src: Vec<Expr> = r
                .source
                .iter()
                .map(|s| replace_reads_with(s, name, with))
                .collect();
            Some(x.with_children(src))
        }
        _ => None,
    })
}
