//! Constant dense weights transposed at build time for the dense layers that run on the
//! `gemm_f32` micro-kernel, so that their kernels pack the weight as a matrix product's
//! right-hand side (contiguous rows, vector copies) instead of transposing it at every
//! run.
//!
//! Requires: a well-formed graph whose parameters are bound; run only for CPU schedules
//! (the CUDA schedules read dense's weight in place).
//! Ensures: every f32 dense node `x · Wᵀ (+ b)` with a constant weight `W [N, K]` whose
//! product runs on the micro-kernel (`schedule::gemm_takes`: 16+ rows, `N` a multiple
//! of 16, a SIMD kernel on this CPU...) becomes `matmul(x, Wᵀ)`, `Wᵀ [K, N]` a new
//! parameter `{W}.t`; with a bias, the matmul gets a fresh name (`{node}.matmul`) and an
//! add of the bias, named after the node, follows (the fusion pass makes them one kernel
//! again). The value is unchanged: the matmul's kernel, with the same blocking as the
//! dense layer's, multiplies and sums the same numbers in the same order. A weight read
//! by several dense layers is transposed once; `W` stays only where something else
//! still reads it.

use super::{Params, Rewriter};
use crate::error::Result;
use crate::graph_runtime::graph::{BinaryOp, Graph, Op};
use crate::graph_runtime::schedule::gemm_takes;
use crate::runtime::NdArray;
use crate::te::DType;
use std::collections::HashMap;

/// Run the pass (see the module doc).
pub fn run(src: &Graph, params: Params) -> Result<(Graph, Params)> {
    let mut rw = Rewriter::new(src, params)?;
    let mut transposed = HashMap::new();
    for n in src.nodes() {
        if n.op != Op::Dense {
            rw.copy(n)?;
            continue;
        }
        let (x, w) = (n.inputs[0], n.inputs[1]);
        let (xs, ws) = (src.shape(x), src.shape(w));
        let eligible = src.dtype(x) == DType::F32
            && src.dtype(w) == DType::F32
            && xs.len() == 2
            && ws.len() == 2
            && gemm_takes(xs[0] as i64, ws[0] as i64, ws[1] as i64);
        let Some(wa) = rw.constant(w).filter(|_| eligible) else {
            rw.copy(n)?;
            continue;
        };
        let wt = match transposed.get(&w.0) {
            Some(&wt) => wt,
            None => {
                let array = transpose_2d(wa)?;
                let wt = rw.new_param(&format!("{}.t", src.value_name(w)), array)?;
                transposed.insert(w.0, wt);
                wt
            }
        };
        let xv = rw.value(x)?;
        let out = match n.inputs.get(2) {
            None => rw.add(&n.name, Op::MatMul, &[xv, wt])?,
            Some(&b) => {
                let name = rw.fresh(&format!("{}.matmul", n.name));
                let mm = rw.add(&name, Op::MatMul, &[xv, wt])?;
                let bv = rw.value(b)?;
                rw.add(&n.name, Op::Binary(BinaryOp::Add), &[mm, bv])?
            }
        };
        rw.set(n.output, out);
    }
    rw.finish()
}

/// The transpose of an f32 matrix.
fn transpose_2d(w: &NdArray) -> Result<NdArray> {
    let s = w.shape();
    let (r, c) = (s[0], s[1]);
    let src = w.as_slice::<f32>()?;
    let mut dst = vec![0.0f32; src.len()];
    for i in 0..r {
        for j in 0..c {
            dst[j * r + i] = src[i * c + j];
        }
    }
    NdArray::from_vec(&[c, r], dst)
}
