//! Operator fusion: elementwise chains into their producer's kernel.
//!
//! Requires: a well-formed graph with no [`Op::Fused`] node.
//! Ensures: walking the nodes in order, each node not yet taken anchors a group and
//! extends it greedily through its output's reader while that output is read by exactly
//! one node, once, is not a graph output, and the reader is elementwise (add, sub, mul,
//! div with any other operand broadcast to it — a bias, a residual —, relu, clip, sigmoid,
//! tanh, gelu, erf, exp, batch norm) with an output of the same shape. A group of two or
//! more nodes becomes one [`Op::Fused`] node named after its last member and placed where that member
//! was (every operand of the group is computed before it, and the group's intermediate
//! values had no other reader); its inputs are the anchor's then each step's other
//! operands, each value once (a step reading one of the anchor's inputs reads it there). Conv2d + bias + residual add + relu, dense + bias + gelu
//! (but see below) and add + relu all become one kernel.
//!
//! A diamond also extends a group: a value of the group read by exactly two nodes, the
//! later a binary operator reading it once, is followed through the chain that starts at
//! the earlier node and must come back to the later one, which then reads the group's own
//! value ([`EpilogueStep::BinaryEarlier`]; hard swish `x * relu6(x + 3) / 6` after a
//! convolution is one kernel). Only arithmetic and clamps may lie on such a chain (a
//! transcendental function there, as SiLU's sigmoid, ran slower in a convolution's
//! epilogue than as a kernel of its own); a chain that does not come back ends the group
//! at the forked value. One diamond per group (a join repeats the forked value's
//! expression: diamonds in a row would double it each time).
//!
//! For the CPU schedules, an activation with a vectorized intrinsic (sigmoid, tanh, GELU,
//! erf, exp: `UnaryOp::activation`) that the intrinsic takes (`schedules::activation_fits`:
//! f32, rank 2 or more, planes of 8 or more, a CPU with AVX2 and FMA) always anchors a group
//! of its own, with what follows it: its kernel then computes it on 256-bit vectors
//! (`schedules::activation_cpu`), where in another operator's epilogue it would run on
//! the generated code's 128-bit ones (a 1x1 conv 16 -> 96 @112 with its sigmoid: 3.1-3.3
//! ms fused, 1.5-1.6 ms as two kernels). The graph built therefore depends on the CPU it
//! is built on.

use super::{readers, Params, Rewriter};
use crate::error::Result;
use crate::graph_runtime::graph::{EpilogueStep, FusedOp, Graph, Op, ValueId};

/// The diamond at the group's value `a`: `a` read by exactly two nodes, neither in a group
/// yet, `a` not a graph output, the later one (`q`, the join) a binary operator reading `a`
/// once: `(p, q)`, `p` the first node of the chain that must reach `q` (SiLU `x *
/// sigmoid(x)`: `p` the sigmoid, `q` the product).
fn diamond(src: &Graph, rd: &[Vec<usize>], taken: &[bool], a: ValueId) -> Option<(usize, usize)> {
    let [x, y] = rd[a.0][..] else {
        return None;
    };
    let (p, q) = (x.min(y), x.max(y));
    let joins = matches!(src.nodes()[q].op, Op::Binary(_))
        && src.nodes()[q].inputs.iter().filter(|&&v| v == a).count() == 1;
    (p != q && joins && !taken[p] && !taken[q] && !src.outputs().contains(&a)).then_some((p, q))
}

/// Run the pass (see the module doc); with `activations_anchor` (the CPU schedules), an
/// activation that `schedules::activation_fits` never joins a group as a member, it
/// anchors its own.
pub fn run(src: &Graph, params: Params, activations_anchor: bool) -> Result<(Graph, Params)> {
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
        // An open diamond: the chain must reach `.0`, which reads the value computed by
        // the first `.1` members; else the group ends there.
        let mut open: Option<(usize, usize)> = None;
        // One diamond per group: each join repeats the forked value's expression, so
        // diamonds in a row would double the kernel's expression each time.
        let mut joined = false;
        loop {
            let fork = if open.is_none() && !joined {
                diamond(src, &rd, &taken, cur)
            } else {
                None
            };
            let r = match (fork, &rd[cur.0][..]) {
                (Some((p, _)), _) => p,
                (None, [r]) => *r,
                _ => break,
            };
            let c = &nodes[r];
            let extends = !taken[r]
                && !src.outputs().contains(&cur)
                && c.op.is_elementwise()
                && src.shape(c.output) == src.shape(cur)
                && match c.op {
                    Op::BatchNorm { .. } => c.inputs[0] == cur,
                    _ => true,
                };
            // Inside a diamond only arithmetic and clamps: a transcendental function (SiLU's
            // sigmoid) in the epilogue of a convolution made it slower than as a kernel of
            // its own, although that kernel reads and writes the output once more
            // (pointwise 16->96 @112: 3.14 -> 3.22 ms; 3x3 64 @56: 1.95 -> 2.18 ms), while
            // hard swish's `x * relu6(x + 3) / 6` gained (1.07 -> 0.96 ms).
            let cheap = !matches!(c.op, Op::Unary(u) if !u.is_cheap());
            let own_group = activations_anchor
                && matches!(c.op, Op::Unary(u) if u.activation().is_some())
                && crate::schedules::activation_fits(src.shape(c.output), src.dtype(c.output));
            if !extends || own_group || (fork.is_some() || open.is_some()) && !cheap {
                break;
            }
            if let Some((_, q)) = fork {
                open = Some((q, members.len()));
            }
            if open.is_some_and(|(q, _)| q == r) {
                open = None;
                joined = true;
            }
            taken[r] = true;
            members.push(r);
            cur = c.output;
        }
        if let Some((_, len)) = open {
            // The chain stopped before the join: the forked value is read outside the
            // group, which ends where it is computed.
            for &m in &members[len..] {
                taken[m] = false;
            }
            members.truncate(len);
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
        // An operand the group already has (the anchor's own input too: SiLU's `x *
        // sigmoid(x)` reads one `x`) is read where it is.
        let mut index_of = |v: ValueId, ins: &mut Vec<ValueId>| -> Result<usize> {
            let nv = rw.value(v)?;
            Ok(match ins.iter().position(|&x| x == nv) {
                Some(p) => p,
                None => {
                    ins.push(nv);
                    ins.len() - 1
                }
            })
        };
        let mut epilogue = vec![];
        // The group's values: after 0 steps (the anchor's output), 1 step, ...
        let mut values = vec![anchor.output];
        for &m in &members[1..] {
            let c = &nodes[m];
            let cur = *values.last().expect("the anchor's output");
            epilogue.push(match &c.op {
                Op::Unary(u) => EpilogueStep::Unary(*u),
                Op::Binary(b) => {
                    let value_left = c.inputs[0] == cur;
                    let other = c.inputs[if value_left { 1 } else { 0 }];
                    match values.iter().position(|&v| v == other) {
                        // A diamond's join: the other operand is the group's own value.
                        Some(at) => EpilogueStep::BinaryEarlier {
                            op: *b,
                            value_left,
                            at,
                        },
                        None => EpilogueStep::Binary {
                            op: *b,
                            input: index_of(other, &mut ins)?,
                            value_left,
                        },
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
            values.push(c.output);
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
