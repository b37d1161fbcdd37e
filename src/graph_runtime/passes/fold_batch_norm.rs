//! Batch normalization folded into the layer before it.
//!
//! Requires: a well-formed graph whose parameters are bound.
//! Ensures: every f32 inference batch norm whose statistics are parameters and whose input
//! is computed by
//! - a conv2d with a parameter weight, or
//! - such a conv2d plus a per-channel parameter bias (`[O, 1, 1]` or `[1, O, 1, 1]`, what
//!   ONNX's `Conv` with a bias imports as), or
//! - a dense layer with a parameter weight (and bias, if any),
//!
//! where no other node reads the intermediate values and they are not graph outputs, is
//! gone: with `s = gamma / sqrt(var + eps)` per output channel (computed in f64, rounded
//! once to f32), the layer's weight becomes `w' = w * s` (row `o` of the weight scaled by
//! `s[o]`) and its bias `b' = (b - mean) * s + beta` (`b = 0` without one). A conv2d
//! becomes `{conv}.folded` (a new name: its value is not the source conv's) followed by an
//! add of `b'` (shape `[O, 1, 1]`) named after the batch norm; a dense layer becomes a
//! dense with bias named after the batch norm. Other batch norms are left alone (fusion
//! can still put them into their producer's kernel).

use super::{readers, Params, Rewriter};
use crate::error::Result;
use crate::graph_runtime::graph::{BinaryOp, Graph, Op, ValueId, ValueKind};
use crate::runtime::NdArray;
use crate::te::DType;
use std::collections::{HashMap, HashSet};

/// How one batch norm folds.
struct Fold {
    /// The conv2d or dense node.
    layer: usize,
    /// The per-channel bias add between the conv and the batch norm: (node, bias value).
    bias_add: Option<(usize, ValueId)>,
}

/// Run the pass (see the module doc).
pub fn run(src: &Graph, params: Params) -> Result<(Graph, Params)> {
    let rd = readers(src);
    let is_param = |v: ValueId| params.get(v.0).is_some_and(|p| p.is_some());
    let producer = |v: ValueId| match src.value(v).kind {
        ValueKind::Node(i) => Some(i),
        _ => None,
    };
    // Read only by node `by`, once, and not a graph output.
    let private = |v: ValueId, by: usize| rd[v.0] == [by] && !src.outputs().contains(&v);
    let mut folds: HashMap<usize, Fold> = HashMap::new();
    let mut skip: HashSet<usize> = HashSet::new();
    for (bi, bn) in src.nodes().iter().enumerate() {
        if !matches!(bn.op, Op::BatchNorm { .. })
            || src.dtype(bn.output) != DType::F32
            || !bn.inputs[1..].iter().all(|&v| is_param(v))
        {
            continue;
        }
        let x = bn.inputs[0];
        let Some(pi) = producer(x).filter(|_| private(x, bi)) else {
            continue;
        };
        let p = &src.nodes()[pi];
        let o = src.shape(x)[1];
        let fold = match &p.op {
            Op::Conv2d(_) if is_param(p.inputs[1]) => Some(Fold {
                layer: pi,
                bias_add: None,
            }),
            Op::Dense if p.inputs[1..].iter().all(|&v| is_param(v)) => Some(Fold {
                layer: pi,
                bias_add: None,
            }),
            Op::Binary(BinaryOp::Add) => (0..2).find_map(|side| {
                let (y, b) = (p.inputs[side], p.inputs[1 - side]);
                let bs = src.shape(b);
                let per_channel = is_param(b)
                    && (bs == [o, 1, 1] || bs == [1, o, 1, 1])
                    && src.shape(y) == src.shape(x);
                let qi = producer(y).filter(|_| private(y, pi))?;
                let q = &src.nodes()[qi];
                (per_channel && matches!(q.op, Op::Conv2d(_)) && is_param(q.inputs[1])).then_some(
                    Fold {
                        layer: qi,
                        bias_add: Some((pi, b)),
                    },
                )
            }),
            _ => None,
        };
        if let Some(f) = fold {
            skip.insert(f.layer);
            if let Some((a, _)) = f.bias_add {
                skip.insert(a);
            }
            folds.insert(bi, f);
        }
    }

    let mut rw = Rewriter::new(src, params)?;
    for (i, n) in src.nodes().iter().enumerate() {
        if skip.contains(&i) {
            continue;
        }
        let Some(f) = folds.get(&i) else {
            rw.copy(n)?;
            continue;
        };
        let Op::BatchNorm { eps } = n.op else {
            unreachable!("folds are batch norms")
        };
        let layer = &src.nodes()[f.layer];
        let stat = |k: usize| rw.constant(n.inputs[k]).expect("checked").to_f64_vec();
        let (gamma, beta, mean, var) = (stat(1), stat(2), stat(3), stat(4));
        let scale: Vec<f64> = gamma
            .iter()
            .zip(&var)
            .map(|(g, v)| g / (v + eps).sqrt())
            .collect();
        let w = rw.constant(layer.inputs[1]).expect("checked");
        let ws = w.shape().to_vec();
        let row = ws[1..].iter().product::<usize>().max(1);
        let mut w2 = NdArray::zeros(&ws, DType::F32);
        for ((dst, src), s) in w2
            .as_mut_slice::<f32>()?
            .chunks_mut(row)
            .zip(w.as_slice::<f32>()?.chunks(row))
            .zip(&scale)
        {
            for (d, &x) in dst.iter_mut().zip(src) {
                *d = (x as f64 * s) as f32;
            }
        }
        let old_bias: Vec<f64> = match (f.bias_add, layer.inputs.get(2)) {
            (Some((_, b)), _) => rw.constant(b).expect("checked").to_f64_vec(),
            (None, Some(&b)) => rw.constant(b).expect("checked").to_f64_vec(),
            (None, None) => vec![0.0; scale.len()],
        };
        let b2: Vec<f32> = (0..scale.len())
            .map(|c| ((old_bias[c] - mean[c]) * scale[c] + beta[c]) as f32)
            .collect();
        let x = rw.value(layer.inputs[0])?;
        let wname = format!("{}.w_folded", layer.name);
        let bname = format!("{}.b_folded", layer.name);
        let out = match layer.op {
            Op::Dense => {
                let wv = rw.new_param(&wname, w2)?;
                let bv = rw.new_param(&bname, NdArray::from_vec(&[b2.len()], b2)?)?;
                rw.add(&n.name, Op::Dense, &[x, wv, bv])?
            }
            _ => {
                let wv = rw.new_param(&wname, w2)?;
                let o = b2.len();
                let bv = rw.new_param(&bname, NdArray::from_vec(&[o, 1, 1], b2)?)?;
                let cname = rw.fresh(&format!("{}.folded", layer.name));
                let c = rw.add(&cname, layer.op.clone(), &[x, wv])?;
                rw.add(&n.name, Op::Binary(BinaryOp::Add), &[c, bv])?
            }
        };
        rw.set(n.output, out);
    }
    rw.finish()
}
