//! Schedules: *how* a computation runs (TVM's `te.Schedule`).
//!
//! A [`Schedule`] holds one [`Stage`] per compute operation. Every primitive validates its
//! arguments, returns a typed error naming stage and axis, and is recorded in the trace
//! ([`Step`]), which serializes to JSON and replays onto a fresh schedule.

mod cache;
mod graph;
mod layout;
mod primitives;
mod rfactor;
mod stage;
mod trace;

pub use layout::LayoutDim;
pub use stage::{Attach, AxisInfo, Relation, Stage};
pub use trace::{from_json, to_json, Step};

use crate::error::{sched_err, Error, Result};
use crate::te::Tensor;

/// A handle to an axis of a stage (root or derived by split/fuse).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Axis {
    /// The stage the axis belongs to.
    pub stage: String,
    /// The axis name within the stage.
    pub name: String,
}

impl std::fmt::Display for Axis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.stage, self.name)
    }
}

/// Anything that names a stage: a tensor (its operation) or a name.
pub trait StageRef {
    /// The stage's name.
    fn stage_name(&self) -> String;
}
impl StageRef for Tensor {
    fn stage_name(&self) -> String {
        self.op.name.clone()
    }
}
impl StageRef for &Tensor {
    fn stage_name(&self) -> String {
        self.op.name.clone()
    }
}
impl StageRef for str {
    fn stage_name(&self) -> String {
        self.to_string()
    }
}
impl StageRef for &str {
    fn stage_name(&self) -> String {
        self.to_string()
    }
}
impl StageRef for String {
    fn stage_name(&self) -> String {
        self.clone()
    }
}

/// A schedule over some output tensors.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// The outputs the schedule was created for.
    pub outputs: Vec<Tensor>,
    /// Compute stages in topological order (producers first).
    pub stages: Vec<Stage>,
    /// Placeholders read by the computation (by name).
    pub placeholders: Vec<Tensor>,
    /// Every primitive applied so far.
    pub trace: Vec<Step>,
}

/// Create a schedule for the given outputs (TVM's `te.create_schedule`).
///
/// Errors when two different operations share a name (names identify stages and buffers).
pub fn create_schedule(outputs: &[Tensor]) -> Result<Schedule> {
    graph::create(outputs)
}

impl Schedule {
    /// The stage named by `r`.
    pub fn stage<S: StageRef + ?Sized>(&self, r: &S) -> Result<&Stage> {
        let n = r.stage_name();
        self.stages
            .iter()
            .find(|s| s.name == n)
            .ok_or_else(|| self.no_stage(&n))
    }

    pub(crate) fn stage_index(&self, name: &str) -> Result<usize> {
        self.stages
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| self.no_stage(name))
    }

    fn no_stage(&self, n: &str) -> Error {
        let names: Vec<&str> = self.stages.iter().map(|s| s.name.as_str()).collect();
        if self.placeholders.iter().any(|p| p.op.name == n) {
            return sched_err(
                n,
                format!(
                    "{} is a placeholder (an input); only compute stages ({}) can be scheduled",
                    n,
                    names.join(", ")
                ),
            );
        }
        Error::Schedule {
            stage: n.to_string(),
            msg: format!(
                "no stage named {} in this schedule; stages are: {}",
                n,
                names.join(", ")
            ),
        }
    }

    /// The root data-parallel axes of a stage (TVM's `s[C].op.axis`).
    pub fn axes<S: StageRef + ?Sized>(&self, r: &S) -> Result<Vec<Axis>> {
        let st = self.stage(r)?;
        Ok((0..st.n_data)
            .map(|i| Axis {
                stage: st.name.clone(),
                name: st.axes[i].name.clone(),
            })
            .collect())
    }

    /// The root reduce axes of a stage (TVM's `s[C].op.reduce_axis`).
    pub fn reduce_axes<S: StageRef + ?Sized>(&self, r: &S) -> Result<Vec<Axis>> {
        let st = self.stage(r)?;
        Ok((st.n_data..st.n_data + st.n_reduce)
            .map(|i| Axis {
                stage: st.name.clone(),
                name: st.axes[i].name.clone(),
            })
            .collect())
    }

    /// The current leaf axes (loop order, outermost first).
    pub fn leaf_axes<S: StageRef + ?Sized>(&self, r: &S) -> Result<Vec<Axis>> {
        let st = self.stage(r)?;
        Ok(st
            .leaf_names()
            .into_iter()
            .map(|n| Axis {
                stage: st.name.clone(),
                name: n,
            })
            .collect())
    }

    /// The axis of a stage with the given name.
    pub fn axis<S: StageRef + ?Sized>(&self, r: &S, name: &str) -> Result<Axis> {
        let st = self.stage(r)?;
        match st.axis_index(name) {
            Some(_) => Ok(Axis {
                stage: st.name.clone(),
                name: name.to_string(),
            }),
            None => {
                let names: Vec<&str> = st.axes.iter().map(|a| a.name.as_str()).collect();
                Err(sched_err(
                    &st.name,
                    format!("no axis named {}; axes are: {}", name, names.join(", ")),
                ))
            }
        }
    }

    /// The two root axes of a 2-D stage.
    pub fn axes2<S: StageRef + ?Sized>(&self, r: &S) -> Result<[Axis; 2]> {
        let v = self.axes(r)?;
        let n = v.len();
        <[Axis; 2]>::try_from(v).map_err(|_| {
            sched_err(
                &r.stage_name(),
                format!("axes2: the stage has {} axes, not 2", n),
            )
        })
    }

    /// The three root axes of a 3-D stage.
    pub fn axes3<S: StageRef + ?Sized>(&self, r: &S) -> Result<[Axis; 3]> {
        let v = self.axes(r)?;
        let n = v.len();
        <[Axis; 3]>::try_from(v).map_err(|_| {
            sched_err(
                &r.stage_name(),
                format!("axes3: the stage has {} axes, not 3", n),
            )
        })
    }

    /// The trace as JSON.
    pub fn trace_json(&self) -> String {
        to_json(&self.trace)
    }

    /// Apply recorded steps to this schedule.
    pub fn apply_trace(&mut self, steps: &[Step]) -> Result<()> {
        for s in steps {
            self.apply_step(s)
                .map_err(|e| Error::Trace(format!("step {:?} failed: {}", s, e)))?;
        }
        Ok(())
    }

    /// A fresh schedule of `outputs` with the trace (JSON) replayed onto it.
    pub fn replay(outputs: &[Tensor], trace_json: &str) -> Result<Schedule> {
        let steps = from_json(trace_json)?;
        let mut s = create_schedule(outputs)?;
        s.apply_trace(&steps)?;
        Ok(s)
    }

    fn apply_step(&mut self, step: &Step) -> Result<()> {
        let ax = |st: &str, n: &str| Axis {
            stage: st.to_string(),
            name: n.to_string(),
        };
        match step {
            Step::Split {
                stage,
                axis,
                factor,
            } => self
                .split(stage.as_str(), &ax(stage, axis), *factor)
                .map(|_| ()),
            Step::SplitShiftInwards {
                stage,
                axis,
                factor,
            } => self
                .split_shift_inwards(stage.as_str(), &ax(stage, axis), *factor)
                .map(|_| ()),
            Step::SplitNparts {
                stage,
                axis,
                nparts,
            } => self
                .split_nparts(stage.as_str(), &ax(stage, axis), *nparts)
                .map(|_| ()),
            Step::Fuse { stage, axes } => {
                let a: Vec<Axis> = axes.iter().map(|n| ax(stage, n)).collect();
                let r: Vec<&Axis> = a.iter().collect();
                self.fuse(stage.as_str(), &r).map(|_| ())
            }
            Step::Reorder { stage, axes } => {
                let a: Vec<Axis> = axes.iter().map(|n| ax(stage, n)).collect();
                let r: Vec<&Axis> = a.iter().collect();
                self.reorder(stage.as_str(), &r)
            }
            Step::Vectorize { stage, axis } => self.vectorize(stage.as_str(), &ax(stage, axis)),
            Step::Unroll { stage, axis } => self.unroll(stage.as_str(), &ax(stage, axis)),
            Step::Parallel { stage, axis } => self.parallel(stage.as_str(), &ax(stage, axis)),
            Step::Bind {
                stage,
                axis,
                thread,
            } => self.bind(stage.as_str(), &ax(stage, axis), thread),
            Step::ComputeAt {
                stage,
                parent,
                axis,
            } => self.compute_at(stage.as_str(), parent.as_str(), &ax(parent, axis)),
            Step::ComputeInline { stage } => self.compute_inline(stage.as_str()),
            Step::ComputeRoot { stage } => self.compute_root(stage.as_str()),
            Step::CacheRead {
                tensor,
                scope,
                readers,
            } => {
                let r: Vec<&str> = readers.iter().map(|s| s.as_str()).collect();
                self.cache_read_by_name(tensor, scope, &r).map(|_| ())
            }
            Step::CacheWrite { tensor, scope } => {
                self.cache_write_by_name(tensor, scope).map(|_| ())
            }
            Step::StorageAlign {
                stage,
                axis,
                factor,
                offset,
            } => self.storage_align(stage.as_str(), &ax(stage, axis), *factor, *offset),
            Step::DoubleBuffer { stage } => self.double_buffer(stage.as_str()),
            Step::TransformLayout { stage, dims } => {
                self.transform_layout(stage.as_str(), dims).map(|_| ())
            }
            Step::Rfactor {
                stage,
                axis,
                factor_axis,
            } => self
                .rfactor(stage.as_str(), &ax(stage, axis), *factor_axis)
                .map(|_| ()),
            Step::Tensorize {
                stage,
                axis,
                intrin,
            } => {
                let i = crate::intrinsics::lookup(intrin).ok_or_else(|| {
                    crate::error::sched_err(
                        stage,
                        format!(
                            "cannot replay tensorize with {}: no intrinsic of that name is registered (declare it, e.g. intrinsics::gemm_f32(..), before replaying)",
                            intrin
                        ),
                    )
                })?;
                self.tensorize(stage.as_str(), &ax(stage, axis), &i)
            }
        }
    }
}
