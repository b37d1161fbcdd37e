//! Constant folding.
//!
//! Requires: a well-formed graph whose parameters are all bound.
//! Ensures: no node has only parameters as inputs: each such node is evaluated at build
//! time and its value becomes a parameter carrying the node's name (reshape and flatten by
//! giving the bytes the new shape; every other operator by running its computation,
//! unscheduled, on the reference interpreter). Nodes are visited in order, so chains of
//! such nodes fold entirely. Parameters that nothing reads any more are dropped.

use super::{Params, Rewriter};
use crate::error::Result;
use crate::graph_runtime::graph::{Graph, Node, Op};
use crate::graph_runtime::node_computation;
use crate::graph_runtime::schedule::naive_schedule;
use crate::runtime::NdArray;
use crate::Target;

/// Run the pass (see the module doc).
pub fn run(src: &Graph, params: Params) -> Result<(Graph, Params)> {
    let mut rw = Rewriter::new(src, params)?;
    for n in src.nodes() {
        let constant: Option<Vec<&NdArray>> = n.inputs.iter().map(|&v| rw.constant(v)).collect();
        match constant {
            Some(arrays) if !arrays.is_empty() => {
                let value = evaluate(src, n, &arrays)?;
                let nv = rw.param_named(&n.name, value)?;
                rw.set(n.output, nv);
            }
            _ => {
                rw.copy(n)?;
            }
        }
    }
    rw.finish()
}

/// The value of node `n` of `g` on the given input arrays.
fn evaluate(g: &Graph, n: &Node, ins: &[&NdArray]) -> Result<NdArray> {
    let out = g.value(n.output);
    if matches!(n.op, Op::Reshape { .. } | Op::Flatten) {
        return NdArray::from_bytes(&out.shape, out.dtype, ins[0].as_bytes());
    }
    let (placeholders, t) = node_computation(g, n)?;
    let s = naive_schedule(&t)?;
    let mut args = placeholders;
    args.push(t);
    let k = crate::build(&s, &args, Target::interp())?;
    let mut result = NdArray::zeros(&out.shape, out.dtype);
    k.run(ins, &mut [&mut result])?;
    Ok(result)
}
