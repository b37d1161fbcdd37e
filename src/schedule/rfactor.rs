//! `rfactor`: factor a reduction over one of its reduce axes (TVM's `s.rfactor(C, ki)`).
//!
//! Given a reduction stage `C[i..] = R_{k..} f(k..)` and a reduce leaf axis `kf` of it
//! (typically the inner part of a split reduce axis), `rfactor` builds a new stage
//! `C.rf` whose data-parallel axes are `C`'s plus `kf` (inserted at `factor_axis`) and
//! which reduces over the remaining reduce leaves of `C`; `C` becomes the reduction over
//! `kf` of `C.rf`. The partial results over `kf` are independent, so `C.rf`'s `kf` axis
//! can then be vectorized or parallelized like any data-parallel axis.
//!
//! The remaining reduce leaves (e.g. `k.outer`) become root reduce axes of `C.rf` with
//! their extents, and `C`'s root reduce variables are expressed through them as the split
//! and fuse relations say. Where a split does not divide its extent, the covered range
//! overshoots: the source is then `select(in range, source, identity)` with the root
//! variables clamped into their ranges (so every read stays inside the tensors it reads)
//! — the reducer's identity leaves the partial result unchanged.
//!
//! `rfactor` rebuilds `C`'s stage (its data axes keep their names), so it must come before
//! any split, fuse or annotation of `C`'s data axes; its attach point, scope and
//! `storage_align` requests are kept.

use super::cache::fresh_data_axes;
use super::{Attach, Axis, Relation, Schedule, Stage, StageRef, Step};
use crate::error::{sched_err, Result};
use crate::lower::ir::{ForKind, Scope};
use crate::lower::simplify::simplify;
use crate::te::{
    and, floordiv, floormod, lt, min, reduce_axis, select, Expr, ExprNode, IterKind, IterVar,
    OpKind, Operation, Tensor, Var,
};
use std::collections::HashMap;
use std::sync::Arc;

impl Schedule {
    /// Factor the reduction of stage `s` over its reduce leaf axis `axis` (TVM's
    /// `s.rfactor(C, k, factor_axis)`): returns the new tensor `<stage>.rf` (its first
    /// output, for a tuple reduction), computed by a new stage whose data axes are the
    /// stage's data axes with `axis` inserted at position `factor_axis`
    /// (`0..=number of data axes`), and which reduces over the stage's other reduce
    /// leaves. The stage itself becomes the reduction over `axis` of that tensor, with the
    /// same reducer (sum, max, min, prod or any `comm_reducer`) and so the same identity.
    ///
    /// Apply it after splitting the reduce axis and before any other primitive on the
    /// stage's data axes.
    ///
    /// ```
    /// use loopforge::prelude::*;
    /// let a = placeholder(&[8.into(), 1024.into()], DType::F32, "A");
    /// let k = reduce_axis(0, 1024, "k");
    /// let c = compute(&[8.into()], "C", |i| sum(a.at(&[i[0].clone(), k.x()]), &[k.clone()]));
    /// let mut s = create_schedule(&[c.clone()]).unwrap();
    /// let k = s.reduce_axes(&c).unwrap().remove(0);
    /// let (ko, ki) = s.split(&c, &k, 4).unwrap();
    /// let cf = s.rfactor(&c, &ki, 1).unwrap(); // C.rf[i, k.inner] = sum over k.outer
    /// let [_, lane] = s.axes2(&cf).unwrap();
    /// let ko = s.reduce_axes(&cf).unwrap().remove(0);
    /// s.reorder(&cf, &[&ko, &lane]).unwrap();
    /// s.vectorize(&cf, &lane).unwrap();
    /// # let _ = ko;
    /// ```
    pub fn rfactor<S: StageRef + ?Sized>(
        &mut self,
        s: &S,
        axis: &Axis,
        factor_axis: usize,
    ) -> Result<Tensor> {
        let name = s.stage_name();
        let si = self.stage_index(&name)?;
        let st = &self.stages[si];
        let fail = |m: String| {
            Err(sched_err(
                &name,
                format!("cannot rfactor {} at {}: {}", name, axis.name, m),
            ))
        };
        if !st.is_reduction() {
            return fail(format!(
                "{} is not a reduction (it has no reduce axes); rfactor applies to a stage whose body is a reduction such as sum(.., [k])",
                name
            ));
        }
        let fi = self.leaf(si, axis, "rfactor")?;
        let st = &self.stages[si];
        let reduce_leaves: Vec<String> = st
            .leaves
            .iter()
            .filter(|&&l| st.axes[l].kind == IterKind::Reduce)
            .map(|&l| st.axes[l].name.clone())
            .collect();
        if st.axes[fi].kind != IterKind::Reduce {
            return fail(format!(
                "{} is a data-parallel axis; rfactor factors out a reduce leaf axis (those of {} are: {})",
                axis.name,
                name,
                reduce_leaves.join(", ")
            ));
        }
        if factor_axis > st.n_data {
            return fail(format!(
                "factor_axis {} is out of range: {}.rf has {} data axes besides {}, so the position must be 0 to {}",
                factor_axis, name, st.n_data, axis.name, st.n_data
            ));
        }
        let data_touched: Vec<String> = st
            .axes
            .iter()
            .filter(|a| {
                a.kind == IterKind::DataPar
                    && (a.annotation != ForKind::Serial
                        || st
                            .axis_index(&a.name)
                            .is_some_and(|i| i >= st.n_data + st.n_reduce))
            })
            .map(|a| a.name.clone())
            .collect();
        if !data_touched.is_empty() {
            return fail(format!(
                "the data axes of {} were already split, fused or annotated ({}); rfactor rebuilds the stage, so apply it first (after splitting the reduce axis) and schedule the data axes afterwards",
                name,
                data_touched.join(", ")
            ));
        }
        if st.tensorize.is_some() {
            return fail(format!(
                "{} is tensorized; rfactor it before tensorizing (then tensorize {}.rf or {})",
                name, name, name
            ));
        }
        for other in &self.stages {
            if let Attach::At { stage, axis: a } = &other.attach {
                let keeps = st.axis_index(a).is_some_and(|i| i < st.n_data);
                if stage == &name && !keeps {
                    return fail(format!(
                        "stage {} is computed at {}.{}, an axis that rfactor removes; compute it at a data axis of {} or of {}.rf afterwards",
                        other.name, name, a, name, name
                    ));
                }
            }
        }
        let rf_name = format!("{}.rf", name);
        if self.stages.iter().any(|x| x.name == rf_name)
            || self.placeholders.iter().any(|p| p.op.name == rf_name)
        {
            return fail(format!(
                "a stage named {} exists already; rfactor a stage once",
                rf_name
            ));
        }

        let op = st.op.clone();
        let OpKind::Compute { axis: daxes, body } = &op.kind else {
            return fail("it is not a compute stage".into());
        };
        let ExprNode::Reduce(red) = body[0].node() else {
            return fail("its body is not a reduction".into());
        };
        let (combiner, source) = (red.combiner.clone(), red.source.clone());
        let roots = op.reduce_axis();

        // Extents of the reduce axes, root and derived, in the order the relations were
        // applied (only reduce axes are involved: data axes are untouched, checked above).
        let mut root_ext: Vec<Expr> = vec![Expr::int(0); st.n_data];
        root_ext.extend(roots.iter().map(|iv| simplify(&iv.extent)));
        let ext = st.derived_extents(&root_ext, &simplify);

        // Fresh variables for the reduce leaves; offsets of every reduce axis through
        // them; the conditions of splits that overshoot.
        let mut off: Vec<Option<Expr>> = vec![None; st.axes.len()];
        let mut overshoots = vec![false; st.axes.len()];
        let mut leaf_var: HashMap<usize, Var> = HashMap::new();
        for &l in &st.leaves {
            if st.axes[l].kind == IterKind::Reduce {
                let v = Var::new(st.axes[l].name.clone(), crate::te::DType::I64);
                off[l] = Some(v.expr());
                leaf_var.insert(l, v);
            }
        }
        let mut conds: Vec<Expr> = vec![];
        for rel in st.relations.iter().rev() {
            match rel {
                Relation::Split {
                    parent,
                    outer,
                    inner,
                    ..
                } => {
                    let (o, i) = (off[*outer].clone(), off[*inner].clone());
                    let (Some(o), Some(i)) = (o, i) else {
                        return fail("internal: a split reduce axis without offsets".into());
                    };
                    let p = simplify(&(o * ext[*inner].clone() + i));
                    let covered = simplify(
                        &(ext[*outer].clone() * ext[*inner].clone() - ext[*parent].clone()),
                    );
                    let over = covered.as_int() != Some(0);
                    if over {
                        conds.push(lt(p.clone(), ext[*parent].clone()));
                    }
                    overshoots[*parent] = over || overshoots[*outer] || overshoots[*inner];
                    off[*parent] = Some(p);
                }
                Relation::Fuse {
                    outer,
                    inner,
                    fused,
                } => {
                    let Some(f) = off[*fused].clone() else {
                        return fail("internal: a fused reduce axis without an offset".into());
                    };
                    off[*outer] = Some(simplify(&floordiv(f.clone(), ext[*inner].clone())));
                    off[*inner] = Some(simplify(&floormod(f, ext[*inner].clone())));
                    overshoots[*outer] = overshoots[*fused];
                    overshoots[*inner] = overshoots[*fused];
                }
            }
        }

        // C.rf: data axes (C's, with the factored axis inserted), reduce axes (the other
        // reduce leaves, in loop order).
        let mut rf_axes = fresh_data_axes(daxes);
        let mut vmap: HashMap<u64, Expr> = HashMap::new();
        for (a, n) in daxes.iter().zip(&rf_axes) {
            vmap.insert(a.var.id(), n.x());
        }
        rf_axes.insert(
            factor_axis,
            IterVar {
                var: leaf_var[&fi].clone(),
                min: Expr::int(0),
                extent: ext[fi].clone(),
                kind: IterKind::DataPar,
            },
        );
        let rf_reduce: Vec<IterVar> = st
            .leaves
            .iter()
            .filter(|&&l| l != fi && st.axes[l].kind == IterKind::Reduce)
            .map(|l| IterVar {
                var: leaf_var[l].clone(),
                min: Expr::int(0),
                extent: ext[*l].clone(),
                kind: IterKind::Reduce,
            })
            .collect();
        for (r, iv) in roots.iter().enumerate() {
            let ax = st.n_data + r;
            let Some(o) = off[ax].clone() else {
                return fail(format!(
                    "internal: no offset for reduce axis {}",
                    iv.var.name()
                ));
            };
            let o = if overshoots[ax] {
                min(o, simplify(&(ext[ax].clone() - 1)))
            } else {
                o
            };
            vmap.insert(iv.var.id(), simplify(&(iv.min.clone() + o)));
        }
        let cond = conds.into_iter().reduce(and);
        let identity = combiner.node().identity.clone();
        let src: Vec<Expr> = source
            .iter()
            .zip(&identity)
            .map(|(x, id)| {
                let x = x.substitute(&vmap);
                match &cond {
                    Some(c) => select(c.clone(), x, id.clone()),
                    None => x,
                }
            })
            .collect();
        let rf_body = if rf_reduce.is_empty() {
            src
        } else {
            combiner.reduce(&src, &rf_reduce)
        };
        let mut rf_shape = op.shape.clone();
        rf_shape.insert(factor_axis, ext[fi].clone());
        let rf_op = Arc::new(Operation {
            name: rf_name.clone(),
            shape: rf_shape,
            kind: OpKind::Compute {
                axis: rf_axes,
                body: rf_body,
            },
        });

        // C: the reduction over the factored axis of C.rf.
        let c_axes = fresh_data_axes(daxes);
        let rk = reduce_axis(0, ext[fi].clone(), &axis.name);
        let mut idx: Vec<Expr> = c_axes.iter().map(|a| a.x()).collect();
        idx.insert(factor_axis, rk.x());
        let reads: Vec<Expr> = (0..op.num_outputs())
            .map(|v| {
                Tensor {
                    op: rf_op.clone(),
                    value_index: v,
                }
                .at(&idx)
            })
            .collect();
        let c_body = combiner.reduce(&reads, &[rk]);
        let c_op = Arc::new(Operation {
            name: name.clone(),
            shape: op.shape.clone(),
            kind: OpKind::Compute {
                axis: c_axes,
                body: c_body,
            },
        });

        let old = self.stages[si].clone();
        let mut fresh = Stage::new(c_op, old.is_output, old.scope);
        fresh.attach = old.attach;
        fresh.aligns = old.aligns;
        fresh.double_buffer = old.double_buffer;
        self.stages[si] = fresh;
        self.stages
            .insert(si, Stage::new(rf_op.clone(), false, Scope::Global));
        self.trace.push(Step::Rfactor {
            stage: name,
            axis: axis.name.clone(),
            factor_axis,
        });
        Ok(Tensor {
            op: rf_op,
            value_index: 0,
        })
    }
}
