//! A stage: one compute operation's schedule state (its axes, their relations, its
//! loop order, annotations and where it is attached).

use crate::lower::ir::{ForKind, Scope};
use crate::te::{ceil_div_expr, Expr, IterKind, Operation, Var};
use std::sync::Arc;

/// An iteration axis of a stage, root or derived by split/fuse.
#[derive(Debug, Clone)]
pub struct AxisInfo {
    /// Unique name within the stage (`i`, `i.outer`, `i.inner.j.fused`...).
    pub name: String,
    /// Its loop variable.
    pub var: Var,
    /// Data-parallel or reduce.
    pub kind: IterKind,
    /// How its loop runs.
    pub annotation: ForKind,
}

/// How derived axes relate to their parents.
#[derive(Debug, Clone)]
pub enum Relation {
    /// `parent = outer * inner_extent + inner`; the split gives either the inner extent
    /// (`factor`) or the outer extent (`nparts`).
    Split {
        /// Index of the parent axis.
        parent: usize,
        /// Index of the outer axis.
        outer: usize,
        /// Index of the inner axis.
        inner: usize,
        /// Inner extent, for a split by factor.
        factor: Option<i64>,
        /// Outer extent, for a split by nparts.
        nparts: Option<i64>,
        /// Where the factor does not divide the extent, the last `inner` block is shifted
        /// back to end at the extent (it overlaps the one before and recomputes some
        /// points) instead of being guarded: `parent = min(outer * factor, extent -
        /// factor) + inner` (Halide's `TailStrategy::ShiftInwards`).
        shift_inwards: bool,
    },
    /// `outer = fused / inner_extent`, `inner = fused % inner_extent`.
    Fuse {
        /// Index of the outer axis.
        outer: usize,
        /// Index of the inner axis.
        inner: usize,
        /// Index of the fused axis.
        fused: usize,
    },
}

/// Where a stage's computation is placed.
#[derive(Debug, Clone, PartialEq)]
pub enum Attach {
    /// Its own loop nest at the top level of the function.
    Root,
    /// Substituted into its consumers; no loop nest of its own.
    Inline,
    /// Inside the loop of axis `axis` of stage `stage`.
    At {
        /// The consumer stage.
        stage: String,
        /// The consumer's leaf axis name.
        axis: String,
    },
}

/// The schedule state of one compute operation.
#[derive(Debug, Clone)]
pub struct Stage {
    /// The operation's name (the stage's name).
    pub name: String,
    /// The operation as it now stands (cache_read/cache_write rewrite bodies).
    pub op: Arc<Operation>,
    /// Every axis: the root ones first (data-parallel then reduce), then derived ones.
    pub axes: Vec<AxisInfo>,
    /// Number of root data-parallel axes (they come first in `axes`).
    pub n_data: usize,
    /// Number of root reduce axes (after the data axes).
    pub n_reduce: usize,
    /// Split and fuse relations, in the order applied.
    pub relations: Vec<Relation>,
    /// Leaf axes, outermost loop first.
    pub leaves: Vec<usize>,
    /// Where it is computed.
    pub attach: Attach,
    /// Whether it is an output of the schedule.
    pub is_output: bool,
    /// Memory scope of its buffer.
    pub scope: Scope,
    /// `storage_align` requests: (root data axis, factor, offset).
    pub aligns: Vec<(usize, i64, i64)>,
    /// `double_buffer`: two copies of the buffer, the next one filled while the current
    /// one is read.
    pub double_buffer: bool,
    /// `tensorize`: the loop nest under this leaf axis is replaced by a call of the
    /// intrinsic.
    pub tensorize: Option<(String, std::sync::Arc<crate::intrinsics::TensorIntrin>)>,
}

impl Stage {
    /// The extent of every axis (root and derived by split/fuse), from the extents of the
    /// root axes (`root_ext`, data then reduce), applying the relations in order;
    /// `simp` simplifies each derived extent.
    pub fn derived_extents(&self, root_ext: &[Expr], simp: &dyn Fn(&Expr) -> Expr) -> Vec<Expr> {
        let mut ext: Vec<Expr> = vec![Expr::int(0); self.axes.len()];
        ext[..root_ext.len()].clone_from_slice(root_ext);
        for rel in &self.relations {
            match rel {
                Relation::Split {
                    parent,
                    outer,
                    inner,
                    factor,
                    nparts,
                    ..
                } => {
                    let pe = ext[*parent].clone();
                    match (factor, nparts) {
                        (Some(f), _) => {
                            ext[*inner] = Expr::int(*f);
                            ext[*outer] = simp(&ceil_div_expr(pe, *f));
                        }
                        (None, Some(np)) => {
                            ext[*outer] = Expr::int(*np);
                            ext[*inner] = simp(&ceil_div_expr(pe, *np));
                        }
                        (None, None) => unreachable!("a split has a factor or nparts"),
                    }
                }
                Relation::Fuse {
                    outer,
                    inner,
                    fused,
                } => ext[*fused] = simp(&(ext[*outer].clone() * ext[*inner].clone())),
            }
        }
        ext
    }

    /// A fresh stage for a compute op.
    pub fn new(op: Arc<Operation>, is_output: bool, scope: Scope) -> Stage {
        let mut axes = Vec::new();
        if let crate::te::OpKind::Compute { axis, .. } = &op.kind {
            for a in axis {
                axes.push(AxisInfo {
                    name: a.var.name().to_string(),
                    var: a.var.clone(),
                    kind: IterKind::DataPar,
                    annotation: ForKind::Serial,
                });
            }
        }
        let n_data = axes.len();
        for a in op.reduce_axis() {
            axes.push(AxisInfo {
                name: a.var.name().to_string(),
                var: a.var.clone(),
                kind: IterKind::Reduce,
                annotation: ForKind::Serial,
            });
        }
        let n_reduce = axes.len() - n_data;
        let leaves = (0..axes.len()).collect();
        Stage {
            name: op.name.clone(),
            op,
            axes,
            n_data,
            n_reduce,
            relations: vec![],
            leaves,
            attach: Attach::Root,
            is_output,
            scope,
            aligns: vec![],
            double_buffer: false,
            tensorize: None,
        }
    }

    /// Index of the axis named `name`.
    pub fn axis_index(&self, name: &str) -> Option<usize> {
        self.axes.iter().position(|a| a.name == name)
    }

    /// Position of axis `idx` among the leaves.
    pub fn leaf_pos(&self, idx: usize) -> Option<usize> {
        self.leaves.iter().position(|&l| l == idx)
    }

    /// Names of the current leaves, outermost first.
    pub fn leaf_names(&self) -> Vec<String> {
        self.leaves
            .iter()
            .map(|&l| self.axes[l].name.clone())
            .collect()
    }

    /// Whether the op is a reduction.
    pub fn is_reduction(&self) -> bool {
        self.n_reduce > 0
    }

    /// The relation that consumed axis `idx` (split or fused it), if any.
    pub fn consumer_of(&self, idx: usize) -> Option<&Relation> {
        self.relations.iter().find(|r| match r {
            Relation::Split { parent, .. } => *parent == idx,
            Relation::Fuse { outer, inner, .. } => *outer == idx || *inner == idx,
        })
    }
}
