//! Whole models: a typed operator [`Graph`], compiled node by node into kernels
//! ([`build`]) and run by a [`GraphExecutor`].
//!
//! ```
//! use loopforge::graph_runtime::{self, Graph};
//! use loopforge::{NdArray, Target};
//! use loopforge::te::DType;
//! use std::collections::HashMap;
//!
//! let mut g = Graph::new();
//! let x = g.input("x", &[2, 8], DType::F32).unwrap();
//! let w = g.param("w", &[4, 8]).unwrap();
//! let b = g.param("b", &[4]).unwrap();
//! let y = g.dense("fc", x, w, Some(b)).unwrap();
//! let y = g.relu("relu", y).unwrap();
//! g.output(y).unwrap();
//!
//! let mut params = HashMap::new();
//! params.insert("w".to_string(), NdArray::random(&[4, 8], DType::F32, 1));
//! params.insert("b".to_string(), NdArray::random(&[4], DType::F32, 2));
//! let model = graph_runtime::build(&g, Target::cpu(), &params, 1).unwrap();
//! let mut ex = model.executor();
//! ex.set_input("x", NdArray::random(&[2, 8], DType::F32, 3)).unwrap();
//! ex.run().unwrap();
//! assert_eq!(ex.get_output(0).unwrap().shape(), &[2, 4]);
//! ```
//!
//! [`build`] first runs the graph [`passes`] (constant and batch-norm folding, fusion of
//! elementwise chains into their producer; each can be switched off with
//! [`BuildOptions`]), then compiles each node of the resulting graph into one kernel: its
//! inputs are placeholders, [`ops::compute`] builds its tensor expression and
//! [`schedule::default_schedule`] its CPU schedule. The executor allocates the buffers of
//! the memory plan ([`passes::memory_plan`]) once and reuses them across runs; for a model
//! built for CUDA it keeps them, and the parameters, on the GPU (only the inputs and the
//! outputs cross to and from the host at each run).

mod device;
mod graph;
pub mod models;
pub mod npy;
pub mod onnx;
pub mod ops;
pub mod passes;
mod saved;
pub mod schedule;

pub use graph::{
    broadcast_shape, BinaryOp, Conv2dAttrs, EpilogueStep, FusedOp, Graph, Node, Op, Pool2dAttrs,
    UnaryOp, ValueId, ValueInfo, ValueKind, WeightLayout,
};
pub use passes::{BuildOptions, MemoryPlan};

use crate::autotune::{TunedConfig, TuningLog};
use crate::error::{graph_err, Error, Result};
use crate::runtime::NdArray;
use crate::te::{placeholder, Tensor};
use crate::{Kernel, Target};
use std::collections::HashMap;

/// A graph compiled for one target: the graph after the passes, one kernel per node of
/// it, the parameters and the memory plan.
pub struct CompiledModel {
    /// The graph after the passes (what the kernels compute).
    graph: Graph,
    /// Nodes of the graph given to `build`.
    source_nodes: usize,
    kernels: Vec<Kernel>,
    plan: MemoryPlan,
    options: BuildOptions,
    /// Parameter arrays, indexed by value id (`None` for non-parameters).
    params: Vec<Option<NdArray>>,
    target: Target,
    /// Which default schedules, and with how many threads (for `save`).
    kind: ScheduleKind,
    threads: usize,
    /// Each node's schedule as a trace (JSON), in node order.
    traces: Vec<String>,
    /// Each node's configuration from the tuning log (`None`: the default schedule).
    tuned: Vec<Option<TunedConfig>>,
}

/// Which default schedules a build uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleKind {
    /// [`schedule::default_schedule`] (CPU: parallel loops, vectors).
    Cpu,
    /// [`schedule::cuda_schedule`] (GPU: blocks and threads, one kernel per node).
    Cuda,
}

/// Compile `graph` for `target`: the graph [`passes`] (all on; see
/// [`build_with_options`]), then one kernel per node of the passed graph, scheduled with
/// the default schedule of its operator for that target ([`schedule::default_schedule`] for the CPU and the
/// interpreter, `threads > 1` parallelizing; [`schedule::cuda_schedule`] for CUDA).
/// `params` must hold exactly the graph's parameters, each with its declared shape and
/// dtype; a missing, misshapen or unknown parameter is an [`Error::Graph`] naming it.
pub fn build(
    graph: &Graph,
    target: Target,
    params: &HashMap<String, NdArray>,
    threads: usize,
) -> Result<CompiledModel> {
    let kind = match target {
        Target::Cuda { .. } => ScheduleKind::Cuda,
        _ => ScheduleKind::Cpu,
    };
    build_with(graph, target, params, threads, kind)
}

/// [`build`] with the schedules chosen apart from the target: `Target::interp()` with
/// [`ScheduleKind::Cuda`] runs the GPU schedules on the interpreter's simulated GPU (how
/// they are tested without one).
pub fn build_with(
    graph: &Graph,
    target: Target,
    params: &HashMap<String, NdArray>,
    threads: usize,
    kind: ScheduleKind,
) -> Result<CompiledModel> {
    build_with_progress(graph, target, params, threads, kind, &mut |_, _, _| {})
}

/// [`build_with`], calling `progress(i, n, node)` before compiling node `i` of `n` (the
/// command line prints it during long compiles).
pub fn build_with_progress(
    graph: &Graph,
    target: Target,
    params: &HashMap<String, NdArray>,
    threads: usize,
    kind: ScheduleKind,
    progress: &mut dyn FnMut(usize, usize, &Node),
) -> Result<CompiledModel> {
    build_with_options(
        graph,
        target,
        params,
        threads,
        kind,
        &BuildOptions::default(),
        progress,
    )
}

/// [`build_with_progress`] with the graph passes chosen by `options` (the other entry
/// points run them all).
pub fn build_with_options(
    graph: &Graph,
    target: Target,
    params: &HashMap<String, NdArray>,
    threads: usize,
    kind: ScheduleKind,
    options: &BuildOptions,
    progress: &mut dyn FnMut(usize, usize, &Node),
) -> Result<CompiledModel> {
    if graph.outputs().is_empty() {
        return Err(graph_err(
            "<graph>",
            "the graph has no outputs; mark at least one value with Graph::output",
        ));
    }
    build_with_settings(
        graph,
        target,
        params,
        &BuildSettings {
            threads,
            kind,
            options: *options,
            tuning: None,
        },
        progress,
    )
}

/// Everything a build is told besides the graph, the target and the parameters.
#[derive(Debug, Clone, Copy)]
pub struct BuildSettings<'a> {
    /// Threads of the CPU kernels (1: serial).
    pub threads: usize,
    /// Which schedules.
    pub kind: ScheduleKind,
    /// Which graph passes.
    pub options: BuildOptions,
    /// A tuning log ([`crate::autotune`]): CPU schedules of the nodes whose workload it
    /// holds for this thread count take its best configuration
    /// ([`schedule::tuned_schedule`]); the others their default.
    pub tuning: Option<&'a TuningLog>,
}

/// The most general build: [`build_with_options`] with a tuning log.
pub fn build_with_settings(
    graph: &Graph,
    target: Target,
    params: &HashMap<String, NdArray>,
    settings: &BuildSettings<'_>,
    progress: &mut dyn FnMut(usize, usize, &Node),
) -> Result<CompiledModel> {
    let BuildSettings {
        threads,
        kind,
        options,
        tuning,
    } = *settings;
    let options = &options;
    let bound = bind_params(graph, params)?;
    let (g, bound) = passes::run(graph, bound, options, kind)?;
    let mut kernels = vec![];
    let mut traces = vec![];
    let mut tuned = vec![];
    for (i, n) in g.nodes().iter().enumerate() {
        progress(i, g.nodes().len(), n);
        let cfg = match (tuning, kind) {
            (Some(log), ScheduleKind::Cpu) => log
                .best(
                    &crate::autotune::workload_key(&g, n),
                    crate::autotune::log::CPU,
                    threads,
                )
                .map(|r| r.config)
                // Nodes on the micro-kernel are not tuned: a register-blocked
                // configuration logged for one (before it ran there) does not apply.
                .filter(|_| {
                    !node_computation(&g, n)
                        .is_ok_and(|(_, out)| schedule::gemm_tensorized_applies(&n.op, &out))
                }),
            _ => None,
        };
        let how = match &cfg {
            Some(c) => NodeSchedule::Tuned(c),
            None => NodeSchedule::Default,
        };
        let (k, t) = compile_node(&g, n, target.clone(), threads, kind, how)?;
        kernels.push(k);
        traces.push(t);
        tuned.push(cfg);
    }
    let plan = passes::memory_plan::plan(&g, options.plan_memory);
    Ok(CompiledModel {
        graph: g,
        source_nodes: graph.nodes().len(),
        kernels,
        plan,
        options: *options,
        params: bound,
        target,
        kind,
        threads,
        traces,
        tuned,
    })
}

/// Check `params` against the graph's declared parameters (every one given, with its
/// shape and dtype, and nothing else) and index them by value id.
pub(crate) fn bind_params(
    graph: &Graph,
    params: &HashMap<String, NdArray>,
) -> Result<passes::Params> {
    let mut bound: Vec<Option<NdArray>> = (0..graph.values().len()).map(|_| None).collect();
    for &p in graph.params() {
        let info = graph.value(p);
        let name = graph.value_name(p);
        let a = params.get(name).ok_or_else(|| {
            graph_err(
                name,
                format!(
                    "parameter missing: no array named {} was given (expected shape {:?}, {})",
                    name, info.shape, info.dtype
                ),
            )
        })?;
        if a.shape() != info.shape.as_slice() || a.dtype() != info.dtype {
            return Err(graph_err(
                name,
                format!(
                    "parameter has shape {:?} ({}) but the graph declares {:?} ({})",
                    a.shape(),
                    a.dtype(),
                    info.shape,
                    info.dtype
                ),
            ));
        }
        bound[p.0] = Some(a.clone());
    }
    let mut unknown: Vec<&String> = params
        .keys()
        .filter(|k| {
            !graph
                .params()
                .iter()
                .any(|&p| graph.value_name(p) == k.as_str())
        })
        .collect();
    unknown.sort();
    if let Some(u) = unknown.first() {
        let declared: Vec<&str> = graph
            .params()
            .iter()
            .map(|&p| graph.value_name(p))
            .collect();
        return Err(graph_err(
            u,
            format!(
                "the graph has no parameter of this name; its parameters are [{}]",
                declared.join(", ")
            ),
        ));
    }
    Ok(bound)
}

/// The TE computation of one node: placeholders `x0, x1, ...` for its inputs and the
/// output tensor (`out`).
pub fn node_computation(graph: &Graph, node: &Node) -> Result<(Vec<Tensor>, Tensor)> {
    let shapes: Vec<&[usize]> = node.inputs.iter().map(|&v| graph.shape(v)).collect();
    let ins: Vec<Tensor> = node
        .inputs
        .iter()
        .enumerate()
        .map(|(k, &v)| {
            placeholder(
                &ops::dims(graph.shape(v)),
                graph.dtype(v),
                &format!("x{}", k),
            )
        })
        .collect();
    let out = ops::compute(&node.op, &ins, &shapes, graph.shape(node.output))?;
    Ok((ins, out))
}

/// Which schedule [`compile_node`] gives a node.
enum NodeSchedule<'a> {
    /// The default schedule of the build's kind.
    Default,
    /// A CPU template with tuned knobs ([`schedule::tuned_schedule`]).
    Tuned(&'a TunedConfig),
    /// A saved schedule trace (JSON), replayed on the node's computation.
    Trace(&'a str),
}

/// Compile one node with the schedule `how` says. Returns the kernel and its schedule's
/// trace.
fn compile_node(
    graph: &Graph,
    node: &Node,
    target: Target,
    threads: usize,
    kind: ScheduleKind,
    how: NodeSchedule<'_>,
) -> Result<(Kernel, String)> {
    let (ins, out) = node_computation(graph, node)?;
    // The CUDA schedules may compute `out` differently (dense reading its weight in
    // place): the schedule is made (and a trace replayed) on theirs.
    let (cuda, out) = match kind {
        ScheduleKind::Cuda => {
            let (s, out) = schedule::cuda_schedule(&node.op, &out).map_err(|e| wrap(node, e))?;
            (Some(s), out)
        }
        ScheduleKind::Cpu => (None, out),
    };
    let s = match how {
        NodeSchedule::Trace(t) => crate::schedule::Schedule::replay(std::slice::from_ref(&out), t),
        NodeSchedule::Tuned(c) => {
            schedule::tuned_schedule(&node.op, &out, threads, c).map_err(|e| {
                Error::Tuning(format!(
                    "the logged configuration {} does not apply: {}",
                    c, e
                ))
            })
        }
        NodeSchedule::Default => match cuda {
            Some(s) => Ok(s),
            None => schedule::default_schedule(&node.op, &out, threads),
        },
    }
    .map_err(|e| wrap(node, e))?;
    let mut args = ins;
    args.push(out);
    let k = crate::build(&s, &args, target).map_err(|e| wrap(node, e))?;
    Ok((k, s.trace_json()))
}

/// Context for a failure to compile a node (compiler bugs stay [`Error::Internal`]).
fn wrap(node: &Node, e: Error) -> Error {
    match e {
        Error::Internal { .. } => e,
        e => graph_err(
            &node.name,
            format!("cannot compile {}: {}", node.op.kind_name(), e),
        ),
    }
}

impl CompiledModel {
    /// The graph the kernels compute: the graph given to `build` after the passes (same
    /// inputs and outputs; a node named like a value of the source graph computes that
    /// value, see [`passes`]).
    pub fn graph(&self) -> &Graph {
        &self.graph
    }
    /// Number of kernels (one per node of [`graph`](Self::graph)).
    pub fn num_kernels(&self) -> usize {
        self.kernels.len()
    }
    /// The schedule of kernel `i` (node `i` of [`graph`](Self::graph)) as a trace of
    /// primitives (JSON, as [`Schedule::trace_json`](crate::schedule::Schedule::trace_json)
    /// writes it); `None` past the last node.
    pub fn schedule_trace(&self, i: usize) -> Option<&str> {
        self.traces.get(i).map(String::as_str)
    }
    /// Number of nodes of the graph given to `build` (before the passes).
    pub fn source_nodes(&self) -> usize {
        self.source_nodes
    }
    /// The memory plan: which buffer holds each node output, and the bytes of the
    /// intermediate values with and without buffer reuse.
    pub fn memory_plan(&self) -> &MemoryPlan {
        &self.plan
    }
    /// The passes this model was built with.
    pub fn options(&self) -> &BuildOptions {
        &self.options
    }
    /// The array of parameter `name` of the passed graph ([`graph`](Self::graph)):
    /// folded and packed weights included.
    pub fn param(&self, name: &str) -> Option<&NdArray> {
        let g = &self.graph;
        let p = g.params().iter().find(|&&p| g.value_name(p) == name)?;
        self.params.get(p.0)?.as_ref()
    }
    /// The target the kernels were compiled for.
    pub fn target(&self) -> &Target {
        &self.target
    }
    /// The configuration node `i` of [`graph`](Self::graph) was scheduled with from the
    /// tuning log (`None`: its default schedule).
    pub fn tuned_config(&self, i: usize) -> Option<&TunedConfig> {
        self.tuned.get(i).and_then(|c| c.as_ref())
    }

    /// The kernel of node `i` (in [`Graph::nodes`] order of [`graph`](Self::graph)).
    pub fn kernel(&self, i: usize) -> &Kernel {
        &self.kernels[i]
    }
    /// A new executor: allocates the buffers of the memory plan once.
    pub fn executor(&self) -> GraphExecutor<'_> {
        let buffers = self
            .plan
            .buffers
            .iter()
            .map(|&(bytes, dt)| NdArray::zeros(&[bytes / dt.bytes().max(1)], dt))
            .collect::<Vec<_>>();
        GraphExecutor {
            model: self,
            inputs: (0..self.graph.values().len()).map(|_| None).collect(),
            owner: vec![None; buffers.len()],
            buffers,
            device: None,
        }
    }
}

/// One kernel's time in [`GraphExecutor::run_profiled`].
#[derive(Debug, Clone, PartialEq)]
pub struct NodeTime {
    /// The node's name (a fused kernel is named after its anchor).
    pub node: String,
    /// The node's operator (`conv2d`; `fused conv2d` for a fused group).
    pub op: String,
    /// Wall time of the kernel, seconds.
    pub seconds: f64,
}

/// Runs a [`CompiledModel`]: set the inputs, run, read the outputs. The buffers of the
/// memory plan live as long as the executor and are reused by every run.
pub struct GraphExecutor<'m> {
    model: &'m CompiledModel,
    /// Graph inputs (once set), by value id; parameters live in the model.
    inputs: Vec<Option<NdArray>>,
    /// The plan's buffers (each viewed with the shape of the value it holds last).
    buffers: Vec<NdArray>,
    /// The value each buffer holds as of the last run.
    owner: Vec<Option<ValueId>>,
    /// For a CUDA model: the parameters and the plan's buffers on the GPU (created at the
    /// first run).
    device: Option<device::DeviceArrays>,
}

impl GraphExecutor<'_> {
    /// Set graph input `name`. An unknown name, or an array whose shape or dtype differs
    /// from the declared ones, is an [`Error::Graph`].
    pub fn set_input(&mut self, name: &str, array: NdArray) -> Result<()> {
        let g = &self.model.graph;
        let v = g
            .inputs()
            .iter()
            .copied()
            .find(|&v| g.value_name(v) == name)
            .ok_or_else(|| {
                let names: Vec<&str> = g.inputs().iter().map(|&v| g.value_name(v)).collect();
                graph_err(
                    name,
                    format!(
                        "the graph has no input of this name; its inputs are [{}]",
                        names.join(", ")
                    ),
                )
            })?;
        let info = g.value(v);
        if array.shape() != info.shape.as_slice() || array.dtype() != info.dtype {
            return Err(graph_err(
                name,
                format!(
                    "input has shape {:?} ({}) but the graph declares {:?} ({})",
                    array.shape(),
                    array.dtype(),
                    info.shape,
                    info.dtype
                ),
            ));
        }
        self.inputs[v.0] = Some(array);
        Ok(())
    }

    fn array(&self, v: ValueId) -> Option<&NdArray> {
        match &self.model.graph.value(v).kind {
            ValueKind::Param(_) => self.model.params[v.0].as_ref(),
            ValueKind::Input(_) => self.inputs[v.0].as_ref(),
            ValueKind::Node(_) => {
                let b = self.model.plan.storage_of[v.0]?;
                (self.owner[b] == Some(v)).then(|| &self.buffers[b])
            }
        }
    }

    /// Run every node in order. Every graph input must have been set.
    pub fn run(&mut self) -> Result<()> {
        let g = &self.model.graph;
        self.check_inputs()?;
        if matches!(self.model.target, Target::Cuda { .. }) {
            return self.run_on_device();
        }
        let n = g.nodes().len();
        if self.model.kernels.iter().any(|k| k.is_parallel()) {
            // Every node on one worker of the rayon pool: each kernel's parallel loops
            // start from a thread that takes part in them, and the caller is handed
            // over to the pool once per run rather than once per parallel loop.
            // (Two threads, alternated run by run in one process, medians of 60:
            // ResNet-18 26.8-29.1 against 26.9-29.7 ms, MobileNetV2 12.0-12.4 against
            // 11.7-13.4 ms, on a loaded machine.)
            return rayon::scope(|_| (0..n).try_for_each(|i| self.run_node(i)));
        }
        (0..n).try_for_each(|i| self.run_node(i))
    }

    /// [`run`](Self::run), timing each kernel (TVM's debug executor): one entry per
    /// node, in order. CPU and interpreter models only (a CUDA model's kernels run
    /// asynchronously on the device): a typed error for a CUDA model.
    pub fn run_profiled(&mut self) -> Result<Vec<NodeTime>> {
        let g = &self.model.graph;
        if matches!(self.model.target, Target::Cuda { .. }) {
            return Err(Error::Argument(
                "run_profiled times kernels on the CPU; a CUDA model's kernels run asynchronously (profile it with nsys)".into(),
            ));
        }
        self.check_inputs()?;
        let mut times = Vec::with_capacity(g.nodes().len());
        for (i, node) in g.nodes().iter().enumerate() {
            let start = std::time::Instant::now();
            self.run_node(i)?;
            times.push(NodeTime {
                node: node.name.clone(),
                op: match &node.op {
                    Op::Fused(f) => format!("fused {}", f.anchor.kind_name()),
                    op => op.kind_name().to_string(),
                },
                seconds: start.elapsed().as_secs_f64(),
            });
        }
        Ok(times)
    }

    /// Every graph input set, else the typed error naming the first that is not.
    fn check_inputs(&self) -> Result<()> {
        let g = &self.model.graph;
        for &v in g.inputs() {
            if self.inputs[v.0].is_none() {
                return Err(graph_err(
                    g.value_name(v),
                    format!(
                        "input not set: call set_input(\"{}\", ..) with an array of shape {:?} before run",
                        g.value_name(v),
                        g.shape(v)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Run node `i`'s kernel on the CPU into its planned buffer.
    fn run_node(&mut self, i: usize) -> Result<()> {
        let g = &self.model.graph;
        let (node, kernel) = (&g.nodes()[i], &self.model.kernels[i]);
        let b = self.model.plan.storage_of[node.output.0].expect("node outputs are planned");
        let info = g.value(node.output);
        let mut out = std::mem::replace(&mut self.buffers[b], NdArray::zeros(&[0], info.dtype));
        // The buffer holds another value from now on (even if the kernel fails).
        self.owner[b] = None;
        let r = out
            .reshape_in_place(&info.shape, info.dtype)
            .and_then(|()| {
                let ins: Vec<&NdArray> = node
                    .inputs
                    .iter()
                    .map(|&v| {
                        self.array(v).ok_or_else(|| {
                            crate::error::internal(
                                format!(
                                    "the memory plan reused the buffer of {} before {} read it",
                                    g.value_name(v),
                                    node.name
                                ),
                                "(graph)",
                            )
                        })
                    })
                    .collect::<Result<_>>()?;
                kernel.run(&ins, &mut [&mut out])
            });
        self.buffers[b] = out;
        r.map_err(|e| wrap(node, e))?;
        self.owner[b] = Some(node.output);
        Ok(())
    }

    /// [`run`](Self::run) for a CUDA model: every kernel on the arrays kept on the GPU.
    fn run_on_device(&mut self) -> Result<()> {
        self.owner.iter_mut().for_each(|o| *o = None);
        if self.device.is_none() {
            self.device = device::DeviceArrays::new(self.model)?;
        }
        let Some(dev) = self.device.as_mut() else {
            return Ok(());
        };
        self.owner = dev.run(self.model, &self.inputs, &mut self.buffers)?;
        Ok(())
    }

    /// Graph output `i` (as of the last run).
    pub fn get_output(&self, i: usize) -> Result<&NdArray> {
        let g = &self.model.graph;
        let v = *g.outputs().get(i).ok_or_else(|| {
            graph_err(
                "<output>",
                format!(
                    "output index {} is out of range: the graph has {} outputs",
                    i,
                    g.outputs().len()
                ),
            )
        })?;
        self.array(v).ok_or_else(|| {
            graph_err(
                g.value_name(v),
                "the output is a graph input that has not been set",
            )
        })
    }

    /// The array of any value of the model's graph (input, parameter or node output) as of
    /// the last run; `None` for an input not set, and for an intermediate value whose
    /// buffer the memory plan has since given to another value (build without
    /// `plan_memory` to keep them all). For a model built for CUDA, intermediate values
    /// stay on the GPU: only inputs, parameters and outputs are here.
    pub fn value(&self, v: ValueId) -> Option<&NdArray> {
        self.array(v)
    }
}
