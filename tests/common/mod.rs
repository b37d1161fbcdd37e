//! Shared helpers for the integration tests: computations and naive references.
#![allow(dead_code)]

use loopforge::prelude::*;

/// `C[i, j] = sum_k A[i, k] * B[j, k]` (the TVM paper's matmul, B transposed).
pub fn matmul_nt(m: Expr, n: Expr, h: Expr) -> (Tensor, Tensor, Tensor) {
    let a = placeholder(&[m.clone(), h.clone()], DType::F32, "A");
    let b = placeholder(&[n.clone(), h.clone()], DType::F32, "B");
    let k = reduce_axis(0, h, "k");
    let c = compute(&[m, n], "C", |i| sum(a.at(&[i[0].clone(), k.x()]) * b.at(&[i[1].clone(), k.x()]), &[k.clone()]));
    (a, b, c)
}

/// `C[i, j] = sum_k A[i, k] * B[k, j]`.
pub fn matmul(m: i64, n: i64, kk: i64) -> (Tensor, Tensor, Tensor) {
    let a = placeholder(&[m.into(), kk.into()], DType::F32, "A");
    let b = placeholder(&[kk.into(), n.into()], DType::F32, "B");
    let k = reduce_axis(0, kk, "k");
    let c = compute(&[m.into(), n.into()], "C", |i| sum(a.at(&[i[0].clone(), k.x()]) * b.at(&[k.x(), i[1].clone()]), &[k.clone()]));
    (a, b, c)
}

/// Run a kernel built from `s` on `inputs` for the given target; returns the outputs.
pub fn run(s: &Schedule, args: &[Tensor], inputs: &[&NdArray], out_shapes: &[(&[usize], DType)], t: Target) -> Vec<NdArray> {
    let k = build(s, args, t).unwrap_or_else(|e| panic!("build failed: {}", e));
    let mut outs: Vec<NdArray> = out_shapes.iter().map(|(s, d)| NdArray::zeros(s, *d)).collect();
    let mut refs: Vec<&mut NdArray> = outs.iter_mut().collect();
    k.run(inputs, &mut refs).unwrap_or_else(|e| panic!("run failed: {}", e));
    outs
}

/// Assert two arrays agree within a tolerance suited to f32 accumulation.
pub fn assert_close(got: &NdArray, want: &NdArray, what: &str) {
    let d = got.max_abs_diff(want);
    assert!(got.allclose(want, 1e-4, 1e-4), "{}: max abs diff {} ({:?} vs {:?})", what, d, got, want);
}
