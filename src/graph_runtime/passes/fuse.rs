//! Operator fusion: elementwise chains into their producer's kernel.
//!
//! Requires: a well-formed graph with no [`Op::Fused`] node.
//! Ensures: walking the nodes in order, each node not yet taken anchors a group and
//! extends it greedily through its output's reader while that output is read by exactly
//! one node, once, is not a graph output, and the reader is elementwise (add, sub, mul,
//! div with any other operand broadcast to it — a bias, a residual —, relu, clip, sigmoid,
//! tanh, gelu, erf, exp, batch norm) with an output of the same shape. A group of two or more nodes
//! becomes one [`Op::Fused`] node named after its last member and placed where that member
//! was (every operand of the group is computed before it, and the group's intermediate
//! values had no other reader); its inputs are the anchor's then each step's other
//! operands (each value once). Conv2d + bias + residual add + relu, dense + bias + gelu
//! and add + relu all become one kernel.

use super::{readers, Params, Rewriter};
use crate::error::Result;
use crate::graph_runtime::graph::{EpilogueStep, FusedOp, Graph, Op, ValueId};

/// Run the pass (see the module doc).
pub fn run(src: &Graph, params: Params) -> Result<(Graph, Params)> {
    let rd = readers(src);
    let nodes = src.nodes();
    // group[i]: the members of the group anchored at node i (when i is an anchor);
    // taken[i]: node i belongs to some group.
    let mut groups: Vec<Option<Vec<usize>>> = vec![None; nodes.len()];
    let mut taken = vec![false; nodes.len()];
    for a in 0..nodes.len() {
        if taken[a] || matches!(nodes[a].op, Op::Fused(_)) {
            continue;
        }
        taken[a] = true;
        let mut members = vec![a];
        let mut cur = nodes[a].output;
        while let [r] = rd[cur.0][..] {
            let c = &nodes[r];
            let extends = !taken[r]
                && !src.outputs().contains(&cur)
                && c.op.is_elementwise()
                && src.shape(c.output) == src.shape(cur)
                && match c.op {
                    Op::BatchNorm { .. } => c.inputs[0] == cur,
                    _ => true,
                };
            if !extends {
                break;
            }
            taken[r] = true;
            members.push(r);
            cur = c.output;
        }
        groups[a] = Some(members);
    }
    // Where each group is emitted: at its last member.
    let mut emit_at: Vec<Option<usize>> = vec![None; nodes.len()];
    for (a, g) in groups.iter().enumerate() {
        if let Some(g) = g {
            emit_at[*g.last().expect("non-empty")] = Some(a);
        }
    }

    let mut rw = Rewriter::new(src, params)?;
    for (i, n) in nodes.iter().enumerate() {
        let Some(a) = emit_at[i] else { continue };
        let members = groups[a].as_ref().expect("anchor");
        if members.len() == 1 {
            rw.copy(n)?;
            continue;
        }
        let anchor = &nodes[a];
        let mut ins: Vec<ValueId> = anchor
            .inputs
            .iter()
            .map(|&v| rw.value(v))
            .collect::<Result<_>>()?;
        let anchor_inputs = ins.len();
        let mut index_of = |v: ValueId, ins: &mut Vec<ValueId>| -> Result<usize> {
            let nv = rw.value(v)?;
            Ok(match ins[anchor_inputs..].iter().position(|&x| x == nv) {
                Some(p) => anchor_inputs + p,
                None => {
                    ins.push(nv);
                    ins.len() - 1
                }
            })
        };
        let mut epilogue = vec![];
        let mut cur = anchor.output;
        for &m in &members[1..] {
            let c = &nodes[m];
            epilogue.push(match &c.op {
                Op::Unary(u) => EpilogueStep::Unary(*u),
                Op::Binary(b) => {
                    let value_left = c.inputs[0] == cur;
                    let other = c.inputs[if value_left { 1 } else { 0 }];
                    EpilogueStep::Binary {
                        op: *b,
                        input: index_of(other, &mut ins)?,
                        value_left,
                    }
                }
                Op::BatchNorm { eps } => EpilogueStep::BatchNorm {
                    eps: *eps,
                    inputs: [
                        index_of(c.inputs[1], &mut ins)?,
                        index_of(c.inputs[2], &mut ins)?,
                        index_of(c.inputs[3], &mut ins)?,
                        index_of(c.inputs[4], &mut ins)?,
                    ],
                },
                other => unreachable!("{} is not elementwise", other.kind_name()),
            });
            cur = c.output;
        }
        let op = Op::Fused(FusedOp {
            anchor: Box::new(anchor.op.clone()),
            anchor_inputs,
            epilogue,
            members: members.iter().map(|&m| nodes[m].name.clone()).collect(),
        });
        let nv = rw.add(&n.name, op, &ins)?;
        rw.set(n.output, nv);
    }
    rw.finish()
}
