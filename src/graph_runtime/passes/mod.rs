//! Graph passes, run by [`build`](super::build) between checking the parameters and
//! compiling the kernels. In order:
//!
//! 1. [`fold_constants`] — nodes whose inputs are all parameters are evaluated at build
//!    time (on the reference interpreter; reshape and flatten by re-labelling the bytes)
//!    and become parameters.
//! 2. [`fold_batch_norm`] — an inference batch norm directly after a conv2d (optionally
//!    through a per-channel bias add) or a dense layer, which nothing else reads, is folded
//!    into that layer's weights and a bias.
//! 3. [`pack_conv_weights`] — (CPU schedules only) constant conv2d weights packed into
//!    the micro-kernel's blocked layout, so the kernels do not pack them at every run;
//!    [`transpose_dense_weights`] — (CPU schedules only) the constant weights of dense
//!    layers that run on the micro-kernel transposed, the layers made matmuls (and a
//!    bias add).
//! 4. [`fuse`] — a producer followed by a chain of single-reader elementwise operators
//!    becomes one [`Op::Fused`](super::Op::Fused) node: one kernel (for the CPU
//!    schedules on a CPU with AVX2 and FMA, an activation the vector intrinsic takes
//!    starts a group of its own: the graph depends on the CPU it is built on).
//! 5. [`memory_plan`] — (on the final graph, when the executor is made) liveness over the
//!    nodes in order; intermediate values whose lifetimes do not overlap share buffers.
//!
//! Every pass takes a graph and its parameters (by value id) and returns a new graph that
//! computes the same graph outputs from the same graph inputs (up to rounding where
//! weights are refolded). Names carry meaning across passes: **a node of the result that
//! has the name of a value of the source graph computes that value** (a fused group is
//! named after its last node; a folded batch norm's output after the batch norm), and new
//! nodes and parameters get fresh names (`conv1.folded`, `bn1.weight`...).
//! [`BuildOptions`] switches each pass off, which the tests use to compare.

pub mod fold_batch_norm;
pub mod fold_constants;
pub mod fuse;
pub mod memory_plan;
pub mod pack_conv_weights;
pub mod transpose_dense_weights;

pub use memory_plan::MemoryPlan;

use super::graph::{Graph, Node, ValueId, ValueKind};
use super::ScheduleKind;
use crate::error::Result;
use crate::runtime::NdArray;
use serde::{Deserialize, Serialize};

/// Which graph passes a build runs (all on by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildOptions {
    /// Constant folding, and batch norm folded into the conv2d or dense before it.
    pub fold: bool,
    /// Fusion of elementwise chains into their producer's kernel.
    pub fuse: bool,
    /// Buffers shared between intermediate values whose lifetimes do not overlap.
    pub plan_memory: bool,
    /// Constant conv2d weights packed, and those of dense layers on the micro-kernel
    /// transposed, at build time for the CPU micro-kernel (CPU schedules only; files
    /// saved before this option read it as off).
    #[serde(default)]
    pub pack_weights: bool,
    /// With `pack_weights`: 3x3, stride-1 convolutions with at least 16 input channels
    /// computed by Winograd's F(2x2, 3x3), their weights transformed at build time (files
    /// saved before this option read it as off).
    #[serde(default)]
    pub winograd: bool,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            fold: true,
            fuse: true,
            plan_memory: true,
            pack_weights: true,
            winograd: true,
        }
    }
}

impl BuildOptions {
    /// Every pass off: one kernel per node of the source graph, one buffer per value.
    pub fn none() -> BuildOptions {
        BuildOptions {
            fold: false,
            fuse: false,
            plan_memory: false,
            pack_weights: false,
            winograd: false,
        }
    }
}

/// Parameter arrays by value id (`None` for values that are not parameters).
pub type Params = Vec<Option<NdArray>>;

/// Run the graph passes that `opts` enables, in order (memory planning excepted: it
/// belongs to the compiled model, see [`memory_plan::plan`]), for schedules of `kind`.
pub fn run(
    graph: &Graph,
    params: Params,
    opts: &BuildOptions,
    kind: ScheduleKind,
) -> Result<(Graph, Params)> {
    let (mut g, mut p) = (graph.clone(), params);
    if opts.fold {
        (g, p) = fold_constants::run(&g, p)?;
        (g, p) = fold_batch_norm::run(&g, p)?;
    }
    if opts.pack_weights && kind == ScheduleKind::Cpu {
        (g, p) = pack_conv_weights::run(&g, p, opts.winograd)?;
        (g, p) = transpose_dense_weights::run(&g, p)?;
    }
    if opts.fuse {
        (g, p) = fuse::run(&g, p, kind == ScheduleKind::Cpu)?;
    }
    Ok((g, p))
}

/// For each value, the indices of the nodes that read it (with multiplicity).
pub(crate) fn readers(g: &Graph) -> Vec<Vec<usize>> {
    let mut r = vec![vec![]; g.values().len()];
    for (i, n) in g.nodes().iter().enumerate() {
        for &v in &n.inputs {
            r[v.0].push(i);
        }
    }
    r
}

/// Builds a pass's result graph from a source graph: graph inputs are declared first, in
/// order; parameters of the source are declared on first use (so parameters nothing reads
/// any more disappear); nodes are copied or replaced by the pass.
pub(crate) struct Rewriter<'a> {
    src: &'a Graph,
    /// The source's parameters; each moves into the result on first use (no copy).
    src_params: Params,
    /// The result graph.
    pub g: Graph,
    /// The result's parameters, by its value ids.
    pub params: Params,
    map: Vec<Option<ValueId>>,
}

impl<'a> Rewriter<'a> {
    pub fn new(src: &'a Graph, src_params: Params) -> Result<Rewriter<'a>> {
        let mut rw = Rewriter {
            src,
            src_params,
            g: Graph::new(),
            params: vec![],
            map: vec![None; src.values().len()],
        };
        for &v in src.inputs() {
            let info = src.value(v);
            let nv = rw.g.input(src.value_name(v), &info.shape, info.dtype)?;
            rw.map[v.0] = Some(nv);
        }
        Ok(rw)
    }

    fn grow(&mut self) {
        self.params.resize_with(self.g.values().len(), || None);
    }

    /// The result's value for source value `v` (declaring a source parameter on first use).
    pub fn value(&mut self, v: ValueId) -> Result<ValueId> {
        if let Some(n) = self.map[v.0] {
            return Ok(n);
        }
        match &self.src.value(v).kind {
            ValueKind::Param(name) => {
                let a = self.src_params[v.0]
                    .take()
                    .expect("parameters are bound before the passes");
                let nv = self.param_named(name, a)?;
                self.map[v.0] = Some(nv);
                Ok(nv)
            }
            _ => Err(crate::error::internal(
                format!(
                    "graph pass: value {} is used before the node computing it was emitted",
                    self.src.value_name(v)
                ),
                "(graph)",
            )),
        }
    }

    /// The parameter array of a result value, if it is a parameter.
    pub fn param_of(&self, v: ValueId) -> Option<&NdArray> {
        self.params.get(v.0).and_then(|p| p.as_ref())
    }

    /// The array of source value `v` if it is constant: a source parameter, or a value the
    /// pass has turned into a parameter. Declares nothing.
    pub fn constant(&self, v: ValueId) -> Option<&NdArray> {
        match self.map[v.0] {
            Some(nv) => self.param_of(nv),
            None => self.src_params.get(v.0).and_then(|p| p.as_ref()),
        }
    }

    /// A new parameter named exactly `name` (which the pass replaces: a source node's
    /// name whose value the parameter holds).
    pub fn param_named(&mut self, name: &str, a: NdArray) -> Result<ValueId> {
        let nv = self.g.param_typed(name, a.shape(), a.dtype())?;
        self.grow();
        self.params[nv.0] = Some(a);
        Ok(nv)
    }

    /// `base`, or `base.1`, `base.2`...: a name taken neither in the result nor in the
    /// source graph (whose remaining names the result may still copy).
    pub fn fresh(&self, base: &str) -> String {
        (0..)
            .map(|i| {
                if i == 0 {
                    base.to_string()
                } else {
                    format!("{}.{}", base, i)
                }
            })
            .find(|n| !self.g.has_name(n) && !self.src.has_name(n))
            .expect("some suffix is free")
    }

    /// A new parameter named `name` (made fresh if taken).
    pub fn new_param(&mut self, name: &str, a: NdArray) -> Result<ValueId> {
        let name = self.fresh(name);
        let nv = self.g.param_typed(&name, a.shape(), a.dtype())?;
        self.grow();
        self.params[nv.0] = Some(a);
        Ok(nv)
    }

    /// Record that source value `v` is `nv` in the result.
    pub fn set(&mut self, v: ValueId, nv: ValueId) {
        self.map[v.0] = Some(nv);
    }

    /// Copy source node `n` unchanged (its inputs mapped).
    pub fn copy(&mut self, n: &Node) -> Result<ValueId> {
        let ins = n
            .inputs
            .iter()
            .map(|&v| self.value(v))
            .collect::<Result<Vec<_>>>()?;
        let nv = self.g.add_node(&n.name, n.op.clone(), &ins)?;
        self.grow();
        self.set(n.output, nv);
        Ok(nv)
    }

    /// Add a node to the result.
    pub fn add(&mut self, name: &str, op: super::Op, ins: &[ValueId]) -> Result<ValueId> {
        let nv = self.g.add_node(name, op, ins)?;
        self.grow();
        Ok(nv)
    }

    /// Mark the outputs and return the result.
    pub fn finish(mut self) -> Result<(Graph, Params)> {
        for &o in self.src.outputs() {
            let nv = self.value(o)?;
            self.g.output(nv)?;
        }
        self.grow();
        Ok((self.g, self.params))
    }
}
