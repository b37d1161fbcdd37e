//! Which nodes have a tunable schedule, and the key that names their computation.

use super::TunedConfig;
use crate::error::Result;
use crate::graph_runtime::{node_computation, schedule};
use crate::graph_runtime::{Graph, Node, Op};
use crate::te::Tensor;

/// A node whose default schedule has knobs: its computation and the default knobs.
pub struct Workload {
    /// The key of its computation ([`workload_key`]).
    pub key: String,
    /// The name of the node's operator (the anchor's for a fused group).
    pub op: &'static str,
    /// The node's name.
    pub node: String,
    /// The node's operator.
    pub operator: Op,
    /// Placeholders of the node's inputs.
    pub inputs: Vec<Tensor>,
    /// The node's output tensor.
    pub out: Tensor,
    /// The configuration of the default schedule ([`schedule::default_config`]).
    pub default: TunedConfig,
}

/// The key of a node's computation: its operator with the attributes (a fused group's
/// anchor and epilogue, without the member names), and the shapes and dtypes of its
/// inputs and output. Nodes of different graphs with the same key compute the same
/// function of their inputs, so one tuning serves both.
pub fn workload_key(graph: &Graph, node: &Node) -> String {
    let mut op = node.op.clone();
    if let Op::Fused(f) = &mut op {
        f.members.clear();
    }
    let op = serde_json::to_string(&op).expect("operators serialize");
    let value = |v| format!("{:?}:{}", graph.shape(v), graph.dtype(v));
    let ins: Vec<String> = node.inputs.iter().map(|&v| value(v)).collect();
    format!("{} ({}) -> {}", op, ins.join(", "), value(node.output))
}

/// The node as a tuning workload for a build with `threads` threads, or `None` when its
/// default schedule has no knobs.
pub fn workload(graph: &Graph, node: &Node, threads: usize) -> Result<Option<Workload>> {
    let (inputs, out) = node_computation(graph, node)?;
    let Some(default) = schedule::default_config(&node.op, &out, threads) else {
        return Ok(None);
    };
    let op = match &node.op {
        Op::Fused(f) => f.anchor.kind_name(),
        op => op.kind_name(),
    };
    Ok(Some(Workload {
        key: workload_key(graph, node),
        op,
        node: node.name.clone(),
        operator: node.op.clone(),
        inputs,
        out,
        default,
    }))
}
