//! The loop primitives (split, fuse, reorder, annotations) and placement primitives
//! (compute_at, compute_inline, compute_root). Each validates, then records a trace step.

use super::{Attach, Axis, AxisInfo, Relation, Schedule, StageRef, Step};
use crate::error::{sched_err, Result};
use crate::lower::ir::ForKind;
use crate::te::{IterKind, Var};

impl Schedule {
    /// Resolve `axis` as a current leaf of stage `si`; the error says why it is not.
    pub(super) fn leaf(&self, si: usize, axis: &Axis, what: &str) -> Result<usize> {
        let st = &self.stages[si];
        if axis.stage != st.name {
            return Err(sched_err(
                &st.name,
                format!(
                    "cannot {} {}: it is an axis of stage {}, not of {}; use the axes of {} (leaf axes: {})",
                    what,
                    axis.name,
                    axis.stage,
                    st.name,
                    st.name,
                    st.leaf_names().join(", ")
                ),
            ));
        }
        let idx = st.axis_index(&axis.name).ok_or_else(|| {
            sched_err(
                &st.name,
                format!(
                    "cannot {} {}: no such axis; leaf axes are: {}",
                    what,
                    axis.name,
                    st.leaf_names().join(", ")
                ),
            )
        })?;
        if st.leaf_pos(idx).is_none() {
            let why = match st.consumer_of(idx) {
                Some(Relation::Split { outer, inner, .. }) => {
                    format!(
                        "it was split into {}, {}",
                        st.axes[*outer].name, st.axes[*inner].name
                    )
                }
                Some(Relation::Fuse { fused, .. }) => {
                    format!("it was fused into {}", st.axes[*fused].name)
                }
                None => "it is not a leaf axis".to_string(),
            };
            return Err(sched_err(
                &st.name,
                format!(
                    "cannot {} {}, {}; leaf axes are: {}",
                    what,
                    axis.name,
                    why,
                    st.leaf_names().join(", ")
                ),
            ));
        }
        Ok(idx)
    }

    fn new_axis(&mut self, si: usize, name: String, kind: IterKind) -> usize {
        let st = &mut self.stages[si];
        st.axes.push(AxisInfo {
            var: Var::new(name.clone(), crate::te::DType::I64),
            name,
            kind,
            annotation: ForKind::Serial,
        });
        st.axes.len() - 1
    }

    fn split_impl<S: StageRef + ?Sized>(
        &mut self,
        s: &S,
        axis: &Axis,
        factor: Option<i64>,
        nparts: Option<i64>,
        shift_inwards: bool,
    ) -> Result<(Axis, Axis)> {
        let si = self.stage_index(&s.stage_name())?;
        let idx = self.leaf(si, axis, "split")?;
        if shift_inwards {
            self.check_shift_inwards(si, axis)?;
        }
        let v = factor.or(nparts).unwrap();
        if v < 1 {
            let what = if factor.is_some() { "factor" } else { "nparts" };
            return Err(sched_err(
                &self.stages[si].name,
                format!(
                    "cannot split {} by {} {}: it must be at least 1",
                    axis.name, what, v
                ),
            ));
        }
        let kind = self.stages[si].axes[idx].kind;
        let base = axis.name.clone();
        let o = self.new_axis(si, format!("{}.outer", base), kind);
        let i = self.new_axis(si, format!("{}.inner", base), kind);
        let st = &mut self.stages[si];
        st.relations.push(Relation::Split {
            parent: idx,
            outer: o,
            inner: i,
            factor,
            nparts,
            shift_inwards,
        });
        let p = st.leaf_pos(idx).unwrap();
        st.leaves.splice(p..p + 1, [o, i]);
        let name = st.name.clone();
        self.trace.push(match factor {
            Some(f) if shift_inwards => Step::SplitShiftInwards {
                stage: name.clone(),
                axis: base.clone(),
                factor: f,
            },
            Some(f) => Step::Split {
                stage: name.clone(),
                axis: base.clone(),
                factor: f,
            },
            None => Step::SplitNparts {
                stage: name.clone(),
                axis: base.clone(),
                nparts: v,
            },
        });
        Ok((
            Axis {
                stage: name.clone(),
                name: format!("{}.outer", base),
            },
            Axis {
                stage: name,
                name: format!("{}.inner", base),
            },
        ))
    }

    /// Split `axis` into `(outer, inner)` with `inner` of extent `factor`. Factors that do
    /// not divide the extent are legal: the tail iterations are guarded.
    pub fn split<S: StageRef + ?Sized>(
        &mut self,
        s: &S,
        axis: &Axis,
        factor: i64,
    ) -> Result<(Axis, Axis)> {
        self.split_impl(s, axis, Some(factor), None, false)
    }

    /// Split `axis` by `factor` like [`Schedule::split`], but where `factor` does not
    /// divide the extent, shift the last block back so that it ends at the extent
    /// (Halide's `TailStrategy::ShiftInwards`): every block is whole, so a vectorized or
    /// unrolled `inner` needs no scalar tail, and the points where the last two blocks
    /// overlap are computed twice (with the same values). Legal on a data axis of a stage
    /// without a reduction (a reduction computed twice would accumulate twice). Where the
    /// extent is not known to be at least `factor` when the loops are built, the tail is
    /// guarded as by `split`.
    pub fn split_shift_inwards<S: StageRef + ?Sized>(
        &mut self,
        s: &S,
        axis: &Axis,
        factor: i64,
    ) -> Result<(Axis, Axis)> {
        self.split_impl(s, axis, Some(factor), None, true)
    }

    /// The typed error for a shift-inwards split of `axis` in stage `si`, if it is not
    /// legal there: the stage reduces (points computed twice would accumulate twice).
    fn check_shift_inwards(&self, si: usize, axis: &Axis) -> Result<()> {
        let st = &self.stages[si];
        let reduce: Vec<&str> = st
            .axes
            .iter()
            .filter(|a| a.kind == IterKind::Reduce)
            .map(|a| a.name.as_str())
            .collect();
        if reduce.is_empty() {
            return Ok(());
        }
        Err(sched_err(
            &st.name,
            format!(
                "cannot split_shift_inwards {}: {} is a reduction (over {}), and the points \
                 its shifted last block recomputes would be accumulated twice; use split, \
                 whose tail is guarded, or shift a stage without a reduction (the \
                 consumer of a cache_write, an epilogue)",
                axis.name,
                st.name,
                reduce.join(", ")
            ),
        ))
    }

    /// Split `axis` into `(outer, inner)` with `outer` of extent `nparts`.
    pub fn split_nparts<S: StageRef + ?Sized>(
        &mut self,
        s: &S,
        axis: &Axis,
        nparts: i64,
    ) -> Result<(Axis, Axis)> {
        self.split_impl(s, axis, None, Some(nparts), false)
    }

    /// Tile two axes: split both and order them `x.outer, y.outer, x.inner, y.inner`.
    pub fn tile<S: StageRef + ?Sized>(
        &mut self,
        s: &S,
        x: &Axis,
        y: &Axis,
        xf: i64,
        yf: i64,
    ) -> Result<(Axis, Axis, Axis, Axis)> {
        let (xo, xi) = self.split(s, x, xf)?;
        let (yo, yi) = self.split(s, y, yf)?;
        self.reorder(s, &[&xo, &yo, &xi, &yi])?;
        Ok((xo, yo, xi, yi))
    }

    /// Fuse adjacent leaf axes (outermost first) into one.
    pub fn fuse<S: StageRef + ?Sized>(&mut self, s: &S, axes: &[&Axis]) -> Result<Axis> {
        let si = self.stage_index(&s.stage_name())?;
        if axes.len() < 2 {
            if axes.len() == 1 {
                self.leaf(si, axes[0], "fuse")?;
                return Ok(axes[0].clone());
            }
            return Err(sched_err(
                &self.stages[si].name,
                "fuse needs at least one axis",
            ));
        }
        let idx: Vec<usize> = axes
            .iter()
            .map(|a| self.leaf(si, a, "fuse"))
            .collect::<Result<_>>()?;
        let st = &self.stages[si];
        let pos: Vec<usize> = idx.iter().map(|&i| st.leaf_pos(i).unwrap()).collect();
        for w in pos.windows(2) {
            if w[1] != w[0] + 1 {
                return Err(sched_err(
                    &st.name,
                    format!(
                        "cannot fuse {} and {}: they are not adjacent in the loop order ({}); fuse only neighbouring axes, outer first (reorder them first)",
                        st.axes[st.leaves[w[0]]].name,
                        st.axes[st.leaves[w[1]]].name.clone(),
                        st.leaf_names().join(", ")
                    ),
                ));
            }
        }
        let kinds: Vec<IterKind> = idx.iter().map(|&i| st.axes[i].kind).collect();
        if kinds.iter().any(|k| *k != kinds[0]) {
            return Err(sched_err(
                &st.name,
                "cannot fuse a data-parallel axis with a reduce axis".to_string(),
            ));
        }
        let names: Vec<String> = idx.iter().map(|&i| st.axes[i].name.clone()).collect();
        let mut cur = idx[0];
        for &next in &idx[1..] {
            let st = &self.stages[si];
            let name = format!("{}.{}.fused", st.axes[cur].name, st.axes[next].name);
            let f = self.new_axis(si, name, kinds[0]);
            let st = &mut self.stages[si];
            st.relations.push(Relation::Fuse {
                outer: cur,
                inner: next,
                fused: f,
            });
            let p = st.leaf_pos(cur).unwrap();
            st.leaves.splice(p..p + 2, [f]);
            cur = f;
        }
        let st = &self.stages[si];
        self.trace.push(Step::Fuse {
            stage: st.name.clone(),
            axes: names,
        });
        Ok(Axis {
            stage: st.name.clone(),
            name: st.axes[cur].name.clone(),
        })
    }

    /// Reorder leaf axes: the listed axes take the positions they occupy, in the order given.
    pub fn reorder<S: StageRef + ?Sized>(&mut self, s: &S, axes: &[&Axis]) -> Result<()> {
        let si = self.stage_index(&s.stage_name())?;
        let idx: Vec<usize> = axes
            .iter()
            .map(|a| self.leaf(si, a, "reorder"))
            .collect::<Result<_>>()?;
        let st = &mut self.stages[si];
        for (k, i) in idx.iter().enumerate() {
            if idx[..k].contains(i) {
                return Err(sched_err(
                    &st.name,
                    format!(
                        "reorder lists {} twice; list each leaf axis at most once (leaf axes: {})",
                        st.axes[*i].name,
                        st.leaf_names().join(", ")
                    ),
                ));
            }
        }
        let mut pos: Vec<usize> = idx.iter().map(|&i| st.leaf_pos(i).unwrap()).collect();
        pos.sort();
        for (p, i) in pos.iter().zip(&idx) {
            st.leaves[*p] = *i;
        }
        let names = idx.iter().map(|&i| st.axes[i].name.clone()).collect();
        self.trace.push(Step::Reorder {
            stage: st.name.clone(),
            axes: names,
        });
        Ok(())
    }

    fn annotate<S: StageRef + ?Sized>(
        &mut self,
        s: &S,
        axis: &Axis,
        kind: ForKind,
        what: &str,
    ) -> Result<()> {
        let si = self.stage_index(&s.stage_name())?;
        let idx = self.leaf(si, axis, what)?;
        let st = &mut self.stages[si];
        if st.axes[idx].kind == IterKind::Reduce
            && !matches!(kind, ForKind::Unrolled | ForKind::Serial)
        {
            return Err(sched_err(
                &st.name,
                format!(
                    "cannot {} {}: it is a reduce axis, whose iterations combine into one value; {} only data-parallel axes (reduce axes may be split, reordered and unrolled)",
                    what, axis.name, what
                ),
            ));
        }
        if st.axes[idx].annotation != ForKind::Serial && st.axes[idx].annotation != kind {
            return Err(sched_err(
                &st.name,
                format!(
                    "cannot {} {}: it is already {}",
                    what,
                    axis.name,
                    st.axes[idx].annotation.name()
                ),
            ));
        }
        st.axes[idx].annotation = kind;
        Ok(())
    }

    /// Turn the loop of `axis` into vector instructions (its extent should be the vector
    /// width, or a multiple of it; otherwise it stays a scalar loop).
    pub fn vectorize<S: StageRef + ?Sized>(&mut self, s: &S, axis: &Axis) -> Result<()> {
        self.annotate(s, axis, ForKind::Vectorized, "vectorize")?;
        self.trace.push(Step::Vectorize {
            stage: s.stage_name(),
            axis: axis.name.clone(),
        });
        Ok(())
    }

    /// Fully unroll the loop of `axis` (its extent must be a constant at lowering time).
    pub fn unroll<S: StageRef + ?Sized>(&mut self, s: &S, axis: &Axis) -> Result<()> {
        self.annotate(s, axis, ForKind::Unrolled, "unroll")?;
        self.trace.push(Step::Unroll {
            stage: s.stage_name(),
            axis: axis.name.clone(),
        });
        Ok(())
    }

    /// Run the iterations of `axis` on the thread pool.
    pub fn parallel<S: StageRef + ?Sized>(&mut self, s: &S, axis: &Axis) -> Result<()> {
        self.annotate(s, axis, ForKind::Parallel, "parallelize")?;
        self.trace.push(Step::Parallel {
            stage: s.stage_name(),
            axis: axis.name.clone(),
        });
        Ok(())
    }

    /// Bind `axis` to a GPU thread axis (`blockIdx.x`, `threadIdx.y`, `vthread`...).
    pub fn bind<S: StageRef + ?Sized>(&mut self, s: &S, axis: &Axis, thread: &str) -> Result<()> {
        const TAGS: [&str; 7] = [
            "blockIdx.x",
            "blockIdx.y",
            "blockIdx.z",
            "threadIdx.x",
            "threadIdx.y",
            "threadIdx.z",
            "vthread",
        ];
        if !TAGS.contains(&thread) {
            return Err(sched_err(
                &s.stage_name(),
                format!(
                    "cannot bind {} to {:?}: thread axes are {}",
                    axis.name,
                    thread,
                    TAGS.join(", ")
                ),
            ));
        }
        let si = self.stage_index(&s.stage_name())?;
        self.leaf(si, axis, "bind")?;
        if thread != "vthread" {
            if let Some(other) = self.stages[si]
                .axes
                .iter()
                .find(|a| a.annotation == ForKind::ThreadBinding(thread.to_string()))
            {
                return Err(sched_err(
                    &self.stages[si].name,
                    format!("cannot bind {} to {}: {} is already bound to it; bind each thread axis once per stage", axis.name, thread, other.name),
                ));
            }
        }
        self.annotate(s, axis, ForKind::ThreadBinding(thread.to_string()), "bind")?;
        self.trace.push(Step::Bind {
            stage: s.stage_name(),
            axis: axis.name.clone(),
            thread: thread.to_string(),
        });
        Ok(())
    }

    /// Whether stage `consumer` reads `producer`, directly or through inlined stages.
    fn consumes(&self, consumer: &str, producer: &str) -> bool {
        self.readers_of(producer).iter().any(|r| {
            r == consumer
                || (self
                    .stage(r.as_str())
                    .map(|s| s.attach == Attach::Inline)
                    .unwrap_or(false)
                    && self.consumes(consumer, r))
        })
    }

    /// The chain of `(stage, axis)` attach points above `stage`, innermost first.
    pub(crate) fn attach_chain(&self, stage: &str) -> Vec<(String, String)> {
        let mut out = vec![];
        let mut cur = stage.to_string();
        for _ in 0..self.stages.len() {
            match self.stage(cur.as_str()).map(|s| s.attach.clone()) {
                Ok(Attach::At { stage, axis }) => {
                    out.push((stage.clone(), axis));
                    cur = stage;
                }
                _ => break,
            }
        }
        out
    }

    /// Whether `stage` is computed somewhere inside the loop nest of `outer`.
    pub(crate) fn attached_within(&self, stage: &str, outer: &str) -> bool {
        self.attach_chain(stage).iter().any(|(s, _)| s == outer)
    }

    /// Compute `s` inside the loop of `axis` of its consumer `parent`, only over the region
    /// that one iteration of that loop needs.
    pub fn compute_at<S: StageRef + ?Sized, P: StageRef + ?Sized>(
        &mut self,
        s: &S,
        parent: &P,
        axis: &Axis,
    ) -> Result<()> {
        let (name, pname) = (s.stage_name(), parent.stage_name());
        let si = self.stage_index(&name)?;
        let pi = self.stage_index(&pname)?;
        if si == pi {
            return Err(sched_err(
                &name,
                "cannot compute a stage at one of its own axes",
            ));
        }
        self.leaf(pi, axis, "compute_at")?;
        if self.stages[si].is_output {
            return Err(sched_err(&name, format!("cannot compute_at {}: it is an output of the schedule and must be computed at root", name)));
        }
        // The readers that compute it, through inlined ones (a stage inlined into its
        // consumer leaves the consumer reading what it read).
        if !self.consumes(&pname, &name)
            && !self
                .effective_readers_of(&name)
                .iter()
                .any(|r| self.attached_within(r, &pname))
        {
            let readers = self.effective_readers_of(&name);
            return Err(sched_err(
                &name,
                format!(
                    "cannot compute_at {} in {}: {} does not read {}; compute a stage only inside a consumer ({}) or a stage that the consumer is computed in",
                    name,
                    pname,
                    pname,
                    name,
                    if readers.is_empty() { "it has none".to_string() } else { readers.join(", ") }
                ),
            ));
        }
        let others: Vec<String> = self
            .effective_readers_of(&name)
            .into_iter()
            .filter(|r| r != &pname && !self.attached_within(r, &pname))
            .collect();
        if !others.is_empty() {
            return Err(sched_err(
                &name,
                format!("cannot compute_at {} in {}: {} also reads it outside {}; compute it at root instead", name, pname, others.join(", "), pname),
            ));
        }
        self.stages[si].attach = Attach::At {
            stage: pname.clone(),
            axis: axis.name.clone(),
        };
        self.trace.push(Step::ComputeAt {
            stage: name,
            parent: pname,
            axis: axis.name.clone(),
        });
        Ok(())
    }

    /// Substitute the stage's expression into its consumers (no loop nest of its own).
    pub fn compute_inline<S: StageRef + ?Sized>(&mut self, s: &S) -> Result<()> {
        let name = s.stage_name();
        let si = self.stage_index(&name)?;
        let st = &self.stages[si];
        if st.is_reduction() {
            return Err(sched_err(
                &name,
                format!("cannot compute_inline {}: it is a reduction; only elementwise (non-reduce) stages can be inlined — use compute_at instead", name),
            ));
        }
        if st.is_output {
            return Err(sched_err(
                &name,
                format!(
                    "cannot compute_inline {}: it is an output of the schedule",
                    name
                ),
            ));
        }
        if st.op.num_outputs() > 1 {
            return Err(sched_err(
                &name,
                format!("cannot compute_inline {}: it has several outputs", name),
            ));
        }
        self.stages[si].attach = Attach::Inline;
        self.trace.push(Step::ComputeInline { stage: name });
        Ok(())
    }

    /// Pad the buffer of the stage so that the stride of dimension `axis` (a root data
    /// axis) is `factor * k + offset` elements (TVM's `storage_align`; e.g. to avoid shared
    /// memory bank conflicts). Only buffers the schedule allocates can be padded, not
    /// arguments.
    pub fn storage_align<S: StageRef + ?Sized>(
        &mut self,
        s: &S,
        axis: &Axis,
        factor: i64,
        offset: i64,
    ) -> Result<()> {
        let name = s.stage_name();
        let si = self.stage_index(&name)?;
        let st = &self.stages[si];
        if axis.stage != st.name {
            return Err(sched_err(
                &name,
                format!(
                    "cannot storage_align {}: it is an axis of stage {}, not of {}",
                    axis.name, axis.stage, name
                ),
            ));
        }
        let d = match st.axis_index(&axis.name) {
            Some(d) if d < st.n_data => d,
            _ => {
                let roots: Vec<&str> = st.axes[..st.n_data]
                    .iter()
                    .map(|a| a.name.as_str())
                    .collect();
                return Err(sched_err(
                    &name,
                    format!("cannot storage_align {}: it is not a dimension of {}'s buffer; the dimensions are {}", axis.name, name, roots.join(", ")),
                ));
            }
        };
        if d + 1 == st.n_data {
            return Err(sched_err(&name, format!("cannot storage_align {}: it is the innermost dimension, whose stride is always 1; align an outer one", axis.name)));
        }
        if factor < 1 || offset < 0 || offset >= factor {
            return Err(sched_err(&name, format!("cannot storage_align {} with factor {} and offset {}: need factor >= 1 and 0 <= offset < factor", axis.name, factor, offset)));
        }
        if st.is_output {
            return Err(sched_err(&name, format!("cannot storage_align {}: it is an output, whose layout the caller's array fixes", name)));
        }
        self.stages[si].aligns.retain(|a| a.0 != d);
        self.stages[si].aligns.push((d, factor, offset));
        self.trace.push(Step::StorageAlign {
            stage: name,
            axis: axis.name.clone(),
            factor,
            offset,
        });
        Ok(())
    }

    /// Keep two copies of the stage's shared-memory buffer (TVM's `double_buffer`): in each
    /// iteration of the loop it is computed in, the threads fill the copy for the next
    /// iteration while reading the current one, so that the loads of the next tile are
    /// issued before the arithmetic on this one and one barrier per iteration suffices
    /// instead of two. The stage must be in `shared` scope and computed inside a loop
    /// (call [`compute_at`](Self::compute_at) first).
    pub fn double_buffer<S: StageRef + ?Sized>(&mut self, s: &S) -> Result<()> {
        let name = s.stage_name();
        let si = self.stage_index(&name)?;
        let st = &self.stages[si];
        if st.scope != crate::lower::ir::Scope::Shared {
            return Err(sched_err(
                &name,
                format!(
                    "cannot double_buffer {}: its buffer has {:?} scope; double buffering applies to shared-memory stages (cache_read(tensor, \"shared\", readers))",
                    name, st.scope
                ),
            ));
        }
        if !matches!(st.attach, Attach::At { .. }) {
            return Err(sched_err(
                &name,
                format!(
                    "cannot double_buffer {}: it is not computed inside a loop; compute_at it at the loop whose iterations should overlap (e.g. the reduction's outer axis) first",
                    name
                ),
            ));
        }
        self.stages[si].double_buffer = true;
        self.trace.push(Step::DoubleBuffer { stage: name });
        Ok(())
    }

    /// Replace the loop nest under leaf `axis` (inclusive) by a call of `intrin` (TVM's
    /// `tensorize`). The loops from `axis` inward must correspond in order to the
    /// intrinsic's axes (data, then reduce) with the same extents and no guards, and the
    /// nest must compute what the intrinsic declares; lowering checks it and otherwise
    /// fails with the first differing subexpression of both sides.
    pub fn tensorize<S: StageRef + ?Sized>(
        &mut self,
        s: &S,
        axis: &Axis,
        intrin: &std::sync::Arc<crate::intrinsics::TensorIntrin>,
    ) -> Result<()> {
        let name = s.stage_name();
        let si = self.stage_index(&name)?;
        let idx = self.leaf(si, axis, "tensorize")?;
        let st = &self.stages[si];
        let pos = st.leaf_pos(idx).expect("leaf() checked it is a leaf");
        let inner = st.leaves.len() - pos;
        let want = intrin.extents().len();
        if inner != want {
            return Err(sched_err(
                &name,
                format!(
                    "cannot tensorize {} at {} with {}: {} loops are under it ({}), the intrinsic has {} axes; tensorize at the loop whose nest has exactly the intrinsic's shape",
                    name,
                    axis.name,
                    intrin.name,
                    inner,
                    st.leaves[pos..]
                        .iter()
                        .map(|&l| st.axes[l].name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    want
                ),
            ));
        }
        crate::intrinsics::register(intrin)?;
        self.stages[si].tensorize = Some((axis.name.clone(), intrin.clone()));
        self.trace.push(Step::Tensorize {
            stage: name,
            axis: axis.name.clone(),
            intrin: intrin.name.clone(),
        });
        Ok(())
    }

    /// Compute the stage in its own loop nest at the top level (the default).
    pub fn compute_root<S: StageRef + ?Sized>(&mut self, s: &S) -> Result<()> {
        let name = s.stage_name();
        let si = self.stage_index(&name)?;
        self.stages[si].attach = Attach::Root;
        self.trace.push(Step::ComputeRoot { stage: name });
        Ok(())
    }
}
