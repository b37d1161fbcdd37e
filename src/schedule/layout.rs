//! transform_layout: store a stage's buffer in a blocked layout (dimensions split and
//! permuted, e.g. `A[M, K]` packed as `A[M / 6, K, 6]`), so that a micro-kernel reads
//! contiguous panels. The stage computes the same values; its readers index the new
//! layout through `floordiv`/`floormod`, which simplification removes where the loop
//! ranges allow (TVM's `transform_layout`, restricted to splits and permutations; a split
//! whose factor does not divide the extent pads the last block with zeros).

use super::cache::{replace_reads_with, with_body};
use super::{Schedule, Stage, StageRef, Step};
use crate::error::{sched_err, Result};
use crate::lower::ir::ForKind;
use crate::te::{
    and, floordiv, floormod, lt, min, select, Expr, ExprNode, IterKind, IterVar, OpKind, Operation,
    Tensor, Var,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// One dimension of a transformed layout, in terms of the stage's original dimensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LayoutDim {
    /// Original dimension `dim`, whole.
    Dim {
        /// The original dimension.
        dim: usize,
    },
    /// `dim / factor`: which block of `factor` elements.
    Outer {
        /// The original dimension.
        dim: usize,
        /// The block size; when it does not divide the dimension's extent, the layout is
        /// padded to a whole number of blocks (the padding holds zeros).
        factor: i64,
    },
    /// `dim % factor`: the position inside the block.
    Inner {
        /// The original dimension.
        dim: usize,
        /// The block size, the same as its `Outer`'s.
        factor: i64,
    },
}

impl LayoutDim {
    /// Dimension `dim` whole.
    pub fn dim(dim: usize) -> LayoutDim {
        LayoutDim::Dim { dim }
    }
    /// Blocks of `factor` along `dim`.
    pub fn outer(dim: usize, factor: i64) -> LayoutDim {
        LayoutDim::Outer { dim, factor }
    }
    /// Position inside the blocks of `factor` along `dim`.
    pub fn inner(dim: usize, factor: i64) -> LayoutDim {
        LayoutDim::Inner { dim, factor }
    }
    fn source(&self) -> usize {
        match *self {
            LayoutDim::Dim { dim }
            | LayoutDim::Outer { dim, .. }
            | LayoutDim::Inner { dim, .. } => dim,
        }
    }
}

impl Schedule {
    /// Store `tensor`'s buffer in the layout `dims`, outermost first: each original
    /// dimension appears either whole ([`LayoutDim::dim`]) or split into blocks
    /// ([`LayoutDim::outer`] and [`LayoutDim::inner`], with one factor; when the factor
    /// does not divide the extent, the last block is padded with zeros, which only a
    /// stage that is no reduction can have). `transform_layout(&ap, &[outer(0, 6), dim(1), inner(0, 6)])` turns a
    /// `[M, K]` copy of `A` into `[M / 6, K, 6]`: six rows interleaved, each step of `K`
    /// one contiguous group. The stage's axes become the new dimensions (`ax0.outer`,
    /// `ax1`, `ax0.inner`); its readers read the new layout. Apply it before any other
    /// primitive on the stage; outputs (whose layout the caller fixes) cannot change.
    pub fn transform_layout<S: StageRef + ?Sized>(
        &mut self,
        tensor: &S,
        dims: &[LayoutDim],
    ) -> Result<Tensor> {
        let name = tensor.stage_name();
        let si = self.stage_index(&name)?;
        let st = &self.stages[si];
        let err = |m: String| {
            Err(sched_err(
                &name,
                format!("cannot transform_layout {}: {}", name, m),
            ))
        };
        if st.is_output {
            return err("it is an output, whose layout the caller's array fixes".into());
        }
        if !st.relations.is_empty()
            || !st.aligns.is_empty()
            || st.axes.iter().any(|a| a.annotation != ForKind::Serial)
        {
            return err(
                "apply it before any other primitive on the stage (its axes are replaced)".into(),
            );
        }
        if st.op.num_outputs() != 1 {
            return err("it has several outputs".into());
        }
        let OpKind::Compute { axis, body } = &st.op.kind else {
            return err("it is not a compute stage".into());
        };
        let rank = axis.len();
        let extents = match check_layout(&st.op.shape, dims) {
            Ok(e) => e,
            Err(m) => return err(m),
        };
        // Dimensions whose blocks overhang (factor not dividing the extent): (dim, extent).
        let padded: Vec<(usize, i64)> = dims
            .iter()
            .filter_map(|d| match *d {
                LayoutDim::Outer { dim, factor } => {
                    let e = st.op.shape[dim].as_int().expect("checked constant");
                    (e % factor != 0).then_some((dim, e))
                }
                _ => None,
            })
            .collect();
        if !padded.is_empty() && body.iter().any(|b| matches!(b.node(), ExprNode::Reduce(_))) {
            return err(format!(
                "a factor does not divide dimension {} (extent {}), and a reduction cannot be padded; use a divisor",
                padded[0].0, padded[0].1
            ));
        }
        let names: Vec<String> = dims
            .iter()
            .map(|d| {
                let base = axis[d.source()].var.name();
                match d {
                    LayoutDim::Dim { .. } => base.to_string(),
                    LayoutDim::Outer { .. } => format!("{}.outer", base),
                    LayoutDim::Inner { .. } => format!("{}.inner", base),
                }
            })
            .collect();
        let new_axis: Vec<IterVar> = names
            .iter()
            .zip(&extents)
            .map(|(n, &e)| IterVar {
                var: Var::new(n.clone(), crate::te::DType::I64),
                min: Expr::int(0),
                extent: Expr::int(e),
                kind: IterKind::DataPar,
            })
            .collect();
        // Original index d in terms of the new axes.
        let mut old_of: Vec<Expr> = vec![Expr::int(0); rank];
        for (d, a) in dims.iter().zip(&new_axis) {
            match *d {
                LayoutDim::Dim { dim } => old_of[dim] = a.x(),
                LayoutDim::Outer { dim, factor } => {
                    old_of[dim] = old_of[dim].clone() + a.x() * Expr::int(factor)
                }
                LayoutDim::Inner { dim, .. } => old_of[dim] = old_of[dim].clone() + a.x(),
            }
        }
        // In the padding: the value at the clamped index (in bounds: `select` evaluates
        // both sides), replaced by zero.
        let inside = padded
            .iter()
            .map(|&(d, e)| lt(old_of[d].clone(), Expr::int(e)))
            .reduce(and);
        for &(d, e) in &padded {
            old_of[d] = min(old_of[d].clone(), Expr::int(e - 1));
        }
        let map: HashMap<u64, Expr> = axis
            .iter()
            .zip(&old_of)
            .map(|(a, e)| (a.var.id(), e.clone()))
            .collect();
        let new_body = body
            .iter()
            .map(|b| {
                let v = b.substitute(&map);
                match &inside {
                    Some(c) => {
                        let zero = Expr::float_of(0.0, v.dtype());
                        select(c.clone(), v, zero)
                    }
                    None => v,
                }
            })
            .collect();
        let op = Arc::new(Operation {
            name: name.clone(),
            shape: extents.iter().map(|&e| Expr::int(e)).collect(),
            kind: OpKind::Compute {
                axis: new_axis,
                body: new_body,
            },
        });
        let packed = Tensor {
            op: op.clone(),
            value_index: 0,
        };
        let layout = dims.to_vec();
        let read = |idx: &[Expr]| {
            let new_idx: Vec<Expr> = layout
                .iter()
                .map(|d| match *d {
                    LayoutDim::Dim { dim } => idx[dim].clone(),
                    LayoutDim::Outer { dim, factor } => floordiv(idx[dim].clone(), factor),
                    LayoutDim::Inner { dim, factor } => floormod(idx[dim].clone(), factor),
                })
                .collect();
            packed.at(&new_idx)
        };
        for r in self.readers_of(&name) {
            let ri = self.stage_index(&r)?;
            let rop = self.stages[ri].op.clone();
            let OpKind::Compute { body, .. } = &rop.kind else {
                continue;
            };
            let body = body
                .iter()
                .map(|b| replace_reads_with(b, &name, &read))
                .collect();
            self.stages[ri].op = with_body(&rop, body);
        }
        let old = self.stages[si].clone();
        let mut fresh = Stage::new(op, false, old.scope);
        fresh.attach = old.attach;
        self.stages[si] = fresh;
        self.trace.push(Step::TransformLayout {
            stage: name,
            dims: layout,
        });
        Ok(packed)
    }
}

/// The extents of the new layout, or what is wrong with it.
fn check_layout(shape: &[Expr], dims: &[LayoutDim]) -> std::result::Result<Vec<i64>, String> {
    let rank = shape.len();
    let mut seen: Vec<Vec<&LayoutDim>> = vec![vec![]; rank];
    for d in dims {
        if d.source() >= rank {
            return Err(format!(
                "{:?} names dimension {}, but the stage has {} (0..{})",
                d,
                d.source(),
                rank,
                rank
            ));
        }
        seen[d.source()].push(d);
    }
    let mut extents = vec![];
    for d in dims {
        let dim = d.source();
        let Some(e) = shape[dim].as_int() else {
            return Err(format!(
                "dimension {} has no constant extent ({})",
                dim, shape[dim]
            ));
        };
        let parts = &seen[dim];
        let ok = match parts.as_slice() {
            [LayoutDim::Dim { .. }] => true,
            [a, b] => matches!(
                (a, b),
                (LayoutDim::Outer { factor: f, .. }, LayoutDim::Inner { factor: g, .. })
                | (LayoutDim::Inner { factor: f, .. }, LayoutDim::Outer { factor: g, .. })
                if f == g
            ),
            _ => false,
        };
        if !ok {
            return Err(format!(
                "dimension {} must appear once whole, or once as outer and once as inner with the same factor; it appears as {:?}",
                dim, parts
            ));
        }
        extents.push(match *d {
            LayoutDim::Dim { .. } => e,
            LayoutDim::Outer { factor, .. } | LayoutDim::Inner { factor, .. } => {
                if factor < 1 {
                    return Err(format!(
                        "factor {} of dimension {} must be at least 1",
                        factor, dim
                    ));
                }
                if matches!(d, LayoutDim::Outer { .. }) {
                    (e + factor - 1) / factor
                } else {
                    factor
                }
            }
        });
    }
    if let Some(missing) = (0..rank).find(|&d| seen[d].is_empty()) {
        return Err(format!(
            "dimension {} is missing; every dimension of the stage must appear",
            missing
        ));
    }
    Ok(extents)
}
