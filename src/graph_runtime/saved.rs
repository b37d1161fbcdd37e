//! `CompiledModel::save` / `load`: a self-contained model file (`.lfm`).
//!
//! The stored graph is the graph after the build's passes (folded parameters, fused
//! nodes), so loading runs no pass again: it compiles exactly what was saved, and plans
//! the memory anew (a deterministic function of the graph).
//!
//! Layout: the 8 bytes `LFMODEL1`, a little-endian `u64` header length, the header (JSON:
//! the target, the schedule kind and thread count, the passes' options, the graph as the sequence of its values
//! — inputs, parameters and nodes in creation order — its outputs, each node's schedule
//! trace, and each parameter's shape, dtype, offset and length), then the parameters'
//! bytes (little-endian). Loading rebuilds the graph through the builder (so a file that
//! describes an ill-formed graph is refused like a bad builder call), checks every
//! parameter against its declaration, and recompiles each node with its stored schedule
//! replayed; any inconsistency, truncation or foreign file is an `Error::Graph` naming the
//! file, never a panic.

use super::passes::{memory_plan, BuildOptions};
use super::{
    compile_node, CompiledModel, Graph, NodeSchedule, Op, ScheduleKind, ValueId, ValueKind,
};
use crate::autotune::TunedConfig;
use crate::error::{graph_err, internal, Result};
use crate::runtime::NdArray;
use crate::te::DType;
use crate::Target;
use serde::{Deserialize, Serialize};
use std::path::Path;

const MAGIC: &[u8; 8] = b"LFMODEL1";

#[derive(Serialize, Deserialize)]
enum SavedTarget {
    Cpu,
    Interp,
    Cuda(Option<String>),
}

#[derive(Serialize, Deserialize)]
enum SavedValue {
    Input {
        name: String,
        shape: Vec<usize>,
        dtype: DType,
    },
    Param {
        name: String,
        shape: Vec<usize>,
        dtype: DType,
    },
    Node {
        name: String,
        op: Op,
        inputs: Vec<usize>,
    },
}

#[derive(Serialize, Deserialize)]
struct SavedParam {
    value: usize,
    offset: u64,
    len: u64,
}

#[derive(Serialize, Deserialize)]
struct Header {
    target: SavedTarget,
    cuda_schedules: bool,
    threads: usize,
    values: Vec<SavedValue>,
    outputs: Vec<usize>,
    traces: Vec<String>,
    params: Vec<SavedParam>,
    /// The passes the model was built with (the stored graph is the graph after them;
    /// loading plans the memory again when `plan_memory` is set).
    #[serde(default)]
    options: Option<BuildOptions>,
    /// Nodes of the graph before the passes.
    #[serde(default)]
    source_nodes: Option<usize>,
    /// Each node's configuration from a tuning log (the trace holds its schedule; this
    /// says where it came from).
    #[serde(default)]
    tuned: Vec<Option<TunedConfig>>,
}

impl CompiledModel {
    /// Write the model (graph, parameters, schedules, target) to `path`.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        std::fs::write(path, self.to_bytes()?).map_err(|e| {
            graph_err(
                &path.display().to_string(),
                format!("cannot write the model file: {}", e),
            )
        })
    }

    /// The model file's bytes (see the module doc).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let g = &self.graph;
        let mut values = vec![];
        for (i, v) in g.values().iter().enumerate() {
            let id = ValueId(i);
            values.push(match &v.kind {
                ValueKind::Input(name) => SavedValue::Input {
                    name: name.clone(),
                    shape: v.shape.clone(),
                    dtype: v.dtype,
                },
                ValueKind::Param(name) => SavedValue::Param {
                    name: name.clone(),
                    shape: v.shape.clone(),
                    dtype: v.dtype,
                },
                ValueKind::Node(n) => {
                    let node = &g.nodes()[*n];
                    debug_assert_eq!(node.output, id);
                    SavedValue::Node {
                        name: node.name.clone(),
                        op: node.op.clone(),
                        inputs: node.inputs.iter().map(|v| v.0).collect(),
                    }
                }
            });
        }
        let mut blob = vec![];
        let mut params = vec![];
        for &p in g.params() {
            let a = self.params[p.0].as_ref().expect("bound at build");
            params.push(SavedParam {
                value: p.0,
                offset: blob.len() as u64,
                len: a.nbytes() as u64,
            });
            blob.extend_from_slice(&a.to_le_bytes());
        }
        let header = Header {
            target: match &self.target {
                Target::Cpu => SavedTarget::Cpu,
                Target::Interp => SavedTarget::Interp,
                Target::Cuda { arch } => SavedTarget::Cuda(arch.clone()),
            },
            cuda_schedules: self.kind == ScheduleKind::Cuda,
            threads: self.threads,
            values,
            outputs: g.outputs().iter().map(|v| v.0).collect(),
            traces: self.traces.clone(),
            params,
            options: Some(self.options),
            source_nodes: Some(self.source_nodes),
            tuned: self.tuned.clone(),
        };
        let json = serde_json::to_vec(&header).map_err(|e| {
            internal(
                format!("cannot serialize the model header: {}", e),
                "(model header)",
            )
        })?;
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&(json.len() as u64).to_le_bytes());
        out.extend_from_slice(&json);
        out.extend_from_slice(&blob);
        Ok(out)
    }

    /// Read a model written by [`save`](Self::save) and compile it for its target.
    pub fn load(path: impl AsRef<Path>) -> Result<CompiledModel> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let bytes = std::fs::read(path)
            .map_err(|e| graph_err(&name, format!("cannot read the model file: {}", e)))?;
        Self::from_bytes(&bytes, &name)
    }

    /// [`load`](Self::load) from bytes; `name` names the source in errors.
    pub fn from_bytes(bytes: &[u8], name: &str) -> Result<CompiledModel> {
        let bad = |m: String| graph_err(name, m);
        if bytes.len() < 16 || &bytes[..8] != MAGIC {
            return Err(bad(
                "not a loopforge model file (it must start with LFMODEL1; write one with CompiledModel::save or `loopforge compile`)".into(),
            ));
        }
        let hlen = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")) as usize;
        let body = &bytes[16..];
        if hlen > body.len() {
            return Err(bad(format!(
                "the file is truncated: its header needs {} bytes, {} are left",
                hlen,
                body.len()
            )));
        }
        let header: Header = serde_json::from_slice(&body[..hlen])
            .map_err(|e| bad(format!("the header is malformed: {}", e)))?;
        let blob = &body[hlen..];

        // The graph, through the builder.
        let mut g = Graph::new();
        for (i, v) in header.values.iter().enumerate() {
            let id = match v {
                SavedValue::Input { name, shape, dtype } => g.input(name, shape, *dtype)?,
                SavedValue::Param { name, shape, dtype } => g.param_typed(name, shape, *dtype)?,
                SavedValue::Node {
                    name: n,
                    op,
                    inputs,
                } => {
                    let ins: Vec<ValueId> = inputs.iter().map(|&x| ValueId(x)).collect();
                    if ins.iter().any(|x| x.0 >= i) {
                        return Err(bad(format!("node {} reads a value defined after it", n)));
                    }
                    g.add_node(n, op.clone(), &ins)?
                }
            };
            if id.0 != i {
                return Err(bad(format!("value {} was rebuilt as {}", i, id.0)));
            }
        }
        for &o in &header.outputs {
            if o >= g.values().len() {
                return Err(bad(format!("output {} is not a value of the graph", o)));
            }
            g.output(ValueId(o))?;
        }
        if header.traces.len() != g.nodes().len() {
            return Err(bad(format!(
                "{} schedules for {} nodes",
                header.traces.len(),
                g.nodes().len()
            )));
        }
        // Files written before tuning logs existed: every node default.
        let tuned = match header.tuned.len() {
            0 => vec![None; g.nodes().len()],
            n if n == g.nodes().len() => header.tuned.clone(),
            n => {
                return Err(bad(format!(
                    "{} tuning entries for {} nodes",
                    n,
                    g.nodes().len()
                )))
            }
        };

        // The parameters.
        let mut params: Vec<Option<NdArray>> = (0..g.values().len()).map(|_| None).collect();
        for p in &header.params {
            let info = g
                .values()
                .get(p.value)
                .filter(|v| matches!(v.kind, ValueKind::Param(_)))
                .ok_or_else(|| {
                    bad(format!(
                        "parameter data for value {}, not a parameter",
                        p.value
                    ))
                })?;
            let (start, len) = (p.offset as usize, p.len as usize);
            let end = start
                .checked_add(len)
                .filter(|&e| e <= blob.len())
                .ok_or_else(|| {
                    bad(format!(
                        "the file is truncated: parameter {} needs bytes {}..{}, the file has {}",
                        g.value_name(ValueId(p.value)),
                        start,
                        start.saturating_add(len),
                        blob.len()
                    ))
                })?;
            params[p.value] = Some(
                NdArray::from_le_bytes(&info.shape, info.dtype, &blob[start..end]).map_err(
                    |e| {
                        bad(format!(
                            "parameter {}: {}",
                            g.value_name(ValueId(p.value)),
                            e
                        ))
                    },
                )?,
            );
        }
        if let Some(&missing) = g.params().iter().find(|p| params[p.0].is_none()) {
            return Err(bad(format!(
                "parameter {} has no data",
                g.value_name(missing)
            )));
        }

        let target = match header.target {
            SavedTarget::Cpu => Target::Cpu,
            SavedTarget::Interp => Target::Interp,
            SavedTarget::Cuda(arch) => Target::Cuda { arch },
        };
        let kind = if header.cuda_schedules {
            ScheduleKind::Cuda
        } else {
            ScheduleKind::Cpu
        };
        let mut kernels = vec![];
        for (n, t) in g.nodes().iter().zip(&header.traces) {
            kernels.push(
                compile_node(
                    &g,
                    n,
                    target.clone(),
                    header.threads,
                    kind,
                    NodeSchedule::Trace(t),
                )?
                .0,
            );
        }
        // Files written before the passes existed hold an unpassed graph.
        let options = header.options.unwrap_or_else(BuildOptions::none);
        let plan = memory_plan::plan(&g, options.plan_memory);
        Ok(CompiledModel {
            source_nodes: header.source_nodes.unwrap_or(g.nodes().len()),
            graph: g,
            kernels,
            plan,
            options,
            params,
            target,
            kind,
            threads: header.threads,
            traces: header.traces,
            tuned,
        })
    }
}
