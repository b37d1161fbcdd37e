//! The graph runtime: every operator against a plain-Rust reference (f64 accumulation),
//! whole models end to end (MLP, small CNN, residual block) on the CPU JIT and the
//! interpreter, and the typed errors.
//!
//! Tolerance: `|got - want| <= 1e-4 + 1e-4 |want|` (f32 arithmetic, FMA contraction and
//! reassociation by the schedules against an f64 reference).

use loopforge::graph_runtime::{self, Conv2dAttrs, Graph, Pool2dAttrs, ScheduleKind, ValueId};
use loopforge::prelude::*;
use std::collections::HashMap;

const RTOL: f64 = 1e-4;
const ATOL: f64 = 1e-4;

/// A reference tensor in f64.
#[derive(Clone, Debug)]
struct T {
    shape: Vec<usize>,
    data: Vec<f64>,
}

impl T {
    fn of(a: &NdArray) -> T {
        T {
            shape: a.shape().to_vec(),
            data: a.to_f64_vec(),
        }
    }
    fn zeros(shape: &[usize]) -> T {
        T {
            shape: shape.to_vec(),
            data: vec![0.0; shape.iter().product()],
        }
    }
    fn off(&self, i: &[usize]) -> usize {
        let mut o = 0;
        for (d, &x) in i.iter().enumerate() {
            assert!(x < self.shape[d]);
            o = o * self.shape[d] + x;
        }
        o
    }
    fn at(&self, i: &[usize]) -> f64 {
        self.data[self.off(i)]
    }
    fn set(&mut self, i: &[usize], v: f64) {
        let o = self.off(i);
        self.data[o] = v;
    }
    /// Every index of the shape, row-major.
    fn indices(shape: &[usize]) -> Vec<Vec<usize>> {
        let n: usize = shape.iter().product();
        (0..n)
            .map(|mut f| {
                let mut idx = vec![0; shape.len()];
                for d in (0..shape.len()).rev() {
                    idx[d] = f % shape[d];
                    f /= shape[d];
                }
                idx
            })
            .collect()
    }
    fn map(&self, f: impl Fn(f64) -> f64) -> T {
        T {
            shape: self.shape.clone(),
            data: self.data.iter().map(|&x| f(x)).collect(),
        }
    }
}

fn assert_close(got: &NdArray, want: &T, what: &str) {
    assert_eq!(got.shape(), want.shape.as_slice(), "{}: shape", what);
    let g = got.to_f64_vec();
    let mut worst = 0.0f64;
    for (i, (&a, &b)) in g.iter().zip(&want.data).enumerate() {
        let ok = (a - b).abs() <= ATOL + RTOL * b.abs();
        assert!(
            ok,
            "{}: element {} is {} but should be {} (|diff| {})",
            what,
            i,
            a,
            b,
            (a - b).abs()
        );
        worst = worst.max((a - b).abs());
    }
    assert!(worst.is_finite());
}

/// Run `g` with `params` and `inputs` on the interpreter and the CPU JIT (1 and 4
/// threads), and with the CUDA schedules on the interpreter's simulated GPU, and compare
/// every output with `want`; the CUDA build itself is compiled with NVRTC where present
/// and run where a GPU is.
fn check(
    g: &Graph,
    params: &HashMap<String, NdArray>,
    inputs: &[(&str, &NdArray)],
    want: &[T],
    what: &str,
) {
    check_cuda(g, params, inputs, want, what);
    for (target, threads, kind) in [
        (Target::cpu(), 1, ScheduleKind::Cpu),
        (Target::cpu(), 4, ScheduleKind::Cpu),
        (Target::interp(), 1, ScheduleKind::Cpu),
        (Target::interp(), 1, ScheduleKind::Cuda),
    ] {
        let model = graph_runtime::build_with(g, target.clone(), params, threads, kind)
            .unwrap_or_else(|e| panic!("{}: build on {:?} failed: {}", what, target, e));
        let mut ex = model.executor();
        for (n, a) in inputs {
            ex.set_input(n, (*a).clone()).unwrap();
        }
        ex.run()
            .unwrap_or_else(|e| panic!("{}: run failed: {}", what, e));
        for (i, w) in want.iter().enumerate() {
            let got = ex.get_output(i).unwrap();
            assert_close(
                got,
                w,
                &format!(
                    "{} ({:?}, {:?} schedules, {} threads) output {}",
                    what, target, kind, threads, i
                ),
            );
        }
    }
}

/// The whole graph built for CUDA (every node's kernel through NVRTC); run on the GPU
/// where there is one (its arrays kept there between the nodes and the runs), otherwise
/// `run` must say that no GPU is available.
fn check_cuda(
    g: &Graph,
    params: &HashMap<String, NdArray>,
    inputs: &[(&str, &NdArray)],
    want: &[T],
    what: &str,
) {
    if !loopforge::codegen_cuda::nvrtc_available() {
        if std::env::var("LOOPFORGE_REQUIRE_NVRTC").is_ok_and(|v| v == "1") {
            panic!("LOOPFORGE_REQUIRE_NVRTC=1 but libnvrtc.so.12 was not found");
        }
        eprintln!(
            "skipping the CUDA build of {}: libnvrtc.so.12 not found",
            what
        );
        return;
    }
    let model = graph_runtime::build(g, Target::cuda_arch("sm_80"), params, 1)
        .unwrap_or_else(|e| panic!("{}: CUDA build failed: {}", what, e));
    assert!(model.kernel(0).ptx().is_some(), "{}", what);
    let gpu = loopforge::codegen_cuda::device_arch().is_some();
    if std::env::var("LOOPFORGE_REQUIRE_GPU").is_ok_and(|v| v == "1") {
        assert!(
            gpu,
            "LOOPFORGE_REQUIRE_GPU=1 but no CUDA device could be opened"
        );
    }
    let model = if gpu {
        graph_runtime::build(g, Target::cuda(), params, 1).unwrap()
    } else {
        model
    };
    let mut ex = model.executor();
    for (n, a) in inputs {
        ex.set_input(n, (*a).clone()).unwrap();
    }
    // A CUDA model's kernels are not timed one by one on the host.
    match ex.run_profiled() {
        Err(Error::Argument(m)) => assert!(m.contains("asynchronously"), "{}", m),
        other => panic!("{}: run_profiled on a CUDA model: {:?}", what, other),
    }
    match ex.run() {
        Ok(()) if gpu => {
            // Twice: the second run reuses the arrays the first one left on the GPU.
            for run in 0..2 {
                if run == 1 {
                    ex.run().unwrap();
                }
                for (i, w) in want.iter().enumerate() {
                    assert_close(
                        ex.get_output(i).unwrap(),
                        w,
                        &format!("{} on the GPU, output {}, run {}", what, i, run + 1),
                    );
                }
            }
        }
        Err(Error::Graph { msg, .. }) | Err(Error::Target(msg)) if !gpu => {
            assert!(msg.contains("no GPU is available"), "{}: {}", what, msg)
        }
        other => panic!("{}: unexpected result of the CUDA run: {:?}", what, other),
    }
}

fn params(list: &[(&str, &NdArray)]) -> HashMap<String, NdArray> {
    list.iter()
        .map(|(n, a)| (n.to_string(), (*a).clone()))
        .collect()
}

fn rnd(shape: &[usize], seed: u64) -> NdArray {
    NdArray::random(shape, DType::F32, seed)
}

/// Positive values in [0.5, 1.5) (variances).
fn positive(shape: &[usize], seed: u64) -> NdArray {
    let r = rnd(shape, seed);
    NdArray::from_fn(shape, |i| r.get_f64(i) as f32 * 0.5 + 1.0)
}

// ------------------------------------------------------------ references

fn conv_ref(x: &T, w: &T, a: &Conv2dAttrs) -> T {
    let (n, c, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let (o, cg, kh, kw) = (w.shape[0], w.shape[1], w.shape[2], w.shape[3]);
    let og = o / a.groups;
    assert_eq!(cg * a.groups, c);
    let oh = (h + a.padding[0] + a.padding[2] - a.dilation[0] * (kh - 1) - 1) / a.stride[0] + 1;
    let ow = (wd + a.padding[1] + a.padding[3] - a.dilation[1] * (kw - 1) - 1) / a.stride[1] + 1;
    let mut out = T::zeros(&[n, o, oh, ow]);
    for b in 0..n {
        for oc in 0..o {
            let g = oc / og;
            for y in 0..oh {
                for xx in 0..ow {
                    let mut acc = 0.0;
                    for ic in 0..cg {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (y * a.stride[0] + ky * a.dilation[0]) as i64
                                    - a.padding[0] as i64;
                                let ix = (xx * a.stride[1] + kx * a.dilation[1]) as i64
                                    - a.padding[1] as i64;
                                if iy < 0 || ix < 0 || iy >= h as i64 || ix >= wd as i64 {
                                    continue;
                                }
                                acc += x.at(&[b, g * cg + ic, iy as usize, ix as usize])
                                    * w.at(&[oc, ic, ky, kx]);
                            }
                        }
                    }
                    out.set(&[b, oc, y, xx], acc);
                }
            }
        }
    }
    out
}

fn dense_ref(x: &T, w: &T, b: Option<&T>) -> T {
    let (m, k, n) = (x.shape[0], x.shape[1], w.shape[0]);
    let mut out = T::zeros(&[m, n]);
    for i in 0..m {
        for j in 0..n {
            let mut acc = b.map_or(0.0, |b| b.data[j]);
            for kk in 0..k {
                acc += x.at(&[i, kk]) * w.at(&[j, kk]);
            }
            out.set(&[i, j], acc);
        }
    }
    out
}

fn matmul_ref(a: &T, b: &T) -> T {
    let (m, k, n) = (a.shape[0], a.shape[1], b.shape[1]);
    let mut out = T::zeros(&[m, n]);
    for i in 0..m {
        for j in 0..n {
            let acc: f64 = (0..k).map(|kk| a.at(&[i, kk]) * b.at(&[kk, j])).sum();
            out.set(&[i, j], acc);
        }
    }
    out
}

fn bn_ref(x: &T, gamma: &T, beta: &T, mean: &T, var: &T, eps: f64) -> T {
    let mut out = x.clone();
    for idx in T::indices(&x.shape) {
        let c = idx[1];
        let v =
            (x.at(&idx) - mean.data[c]) / (var.data[c] + eps).sqrt() * gamma.data[c] + beta.data[c];
        out.set(&idx, v);
    }
    out
}

fn broadcast_ref(a: &T, b: &T, f: impl Fn(f64, f64) -> f64) -> T {
    let r = a.shape.len().max(b.shape.len());
    let pad = |s: &[usize]| -> Vec<usize> {
        let mut v = vec![1; r - s.len()];
        v.extend_from_slice(s);
        v
    };
    let (sa, sb) = (pad(&a.shape), pad(&b.shape));
    let shape: Vec<usize> = (0..r).map(|d| sa[d].max(sb[d])).collect();
    let mut out = T::zeros(&shape);
    for idx in T::indices(&shape) {
        let ia: Vec<usize> = (0..r)
            .map(|d| if sa[d] == 1 { 0 } else { idx[d] })
            .collect();
        let ib: Vec<usize> = (0..r)
            .map(|d| if sb[d] == 1 { 0 } else { idx[d] })
            .collect();
        let va = a.data[T::zeros(&sa).off(&ia)];
        let vb = b.data[T::zeros(&sb).off(&ib)];
        out.set(&idx, f(va, vb));
    }
    out
}

/// erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7).
fn erf_ref(x: f64) -> f64 {
    let s = x.signum();
    let x = x.abs();
    let t = 1.0 / (1.0 + 0.3275911 * x);
    let y = 1.0
        - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t
            + 0.254829592)
            * t
            * (-x * x).exp();
    s * y
}

fn pool_ref(x: &T, a: &Pool2dAttrs, is_max: bool) -> T {
    let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let oh = (h + a.padding[0] + a.padding[2] - a.kernel[0]) / a.stride[0] + 1;
    let ow = (w + a.padding[1] + a.padding[3] - a.kernel[1]) / a.stride[1] + 1;
    let mut out = T::zeros(&[n, c, oh, ow]);
    for b in 0..n {
        for ch in 0..c {
            for y in 0..oh {
                for xx in 0..ow {
                    let mut acc = if is_max { f64::NEG_INFINITY } else { 0.0 };
                    let mut cnt = 0;
                    for ky in 0..a.kernel[0] {
                        for kx in 0..a.kernel[1] {
                            let iy = (y * a.stride[0] + ky) as i64 - a.padding[0] as i64;
                            let ix = (xx * a.stride[1] + kx) as i64 - a.padding[1] as i64;
                            if iy < 0 || ix < 0 || iy >= h as i64 || ix >= w as i64 {
                                continue;
                            }
                            let v = x.at(&[b, ch, iy as usize, ix as usize]);
                            cnt += 1;
                            acc = if is_max { acc.max(v) } else { acc + v };
                        }
                    }
                    out.set(&[b, ch, y, xx], if is_max { acc } else { acc / cnt as f64 });
                }
            }
        }
    }
    out
}

fn gap_ref(x: &T) -> T {
    let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let mut out = T::zeros(&[n, c, 1, 1]);
    for b in 0..n {
        for ch in 0..c {
            let mut s = 0.0;
            for y in 0..h {
                for xx in 0..w {
                    s += x.at(&[b, ch, y, xx]);
                }
            }
            out.set(&[b, ch, 0, 0], s / (h * w) as f64);
        }
    }
    out
}

fn transpose_ref(x: &T, perm: &[usize]) -> T {
    let shape: Vec<usize> = perm.iter().map(|&p| x.shape[p]).collect();
    let mut out = T::zeros(&shape);
    for idx in T::indices(&shape) {
        let mut src = vec![0; perm.len()];
        for (d, &p) in perm.iter().enumerate() {
            src[p] = idx[d];
        }
        out.set(&idx, x.at(&src));
    }
    out
}

fn concat_ref(xs: &[&T], axis: usize) -> T {
    let mut shape = xs[0].shape.clone();
    shape[axis] = xs.iter().map(|x| x.shape[axis]).sum();
    let mut out = T::zeros(&shape);
    for idx in T::indices(&shape) {
        let mut k = 0;
        let mut local = idx[axis];
        while local >= xs[k].shape[axis] {
            local -= xs[k].shape[axis];
            k += 1;
        }
        let mut src = idx.clone();
        src[axis] = local;
        out.set(&idx, xs[k].at(&src));
    }
    out
}

fn softmax_ref(x: &T, axis: usize) -> T {
    let mut out = x.clone();
    for idx in T::indices(&x.shape) {
        if idx[axis] != 0 {
            continue;
        }
        let n = x.shape[axis];
        let at = |k: usize| {
            let mut i = idx.clone();
            i[axis] = k;
            i
        };
        let m = (0..n)
            .map(|k| x.at(&at(k)))
            .fold(f64::NEG_INFINITY, f64::max);
        let s: f64 = (0..n).map(|k| (x.at(&at(k)) - m).exp()).sum();
        for k in 0..n {
            out.set(&at(k), (x.at(&at(k)) - m).exp() / s);
        }
    }
    out
}

fn layer_norm_ref(x: &T, gamma: &T, beta: &T, eps: f64) -> T {
    let d = *x.shape.last().unwrap();
    let mut out = x.clone();
    for (r, row) in x.data.chunks(d).enumerate() {
        let mean = row.iter().sum::<f64>() / d as f64;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / d as f64;
        for (j, v) in row.iter().enumerate() {
            out.data[r * d + j] = (v - mean) / (var + eps).sqrt() * gamma.data[j] + beta.data[j];
        }
    }
    out
}

// ------------------------------------------------------------ operators

fn conv_case(xs: [usize; 4], o: usize, k: [usize; 2], a: Conv2dAttrs, what: &str) {
    let mut g = Graph::new();
    let x = g.input("x", &xs, DType::F32).unwrap();
    let ws = [o, xs[1] / a.groups, k[0], k[1]];
    let w = g.param("w", &ws).unwrap();
    let y = g.conv2d("conv", x, w, a).unwrap();
    g.output(y).unwrap();
    let xa = rnd(&xs, 11);
    let wa = rnd(&ws, 12);
    let want = conv_ref(&T::of(&xa), &T::of(&wa), &a);
    assert_eq!(g.shape(y), want.shape.as_slice());
    check(&g, &params(&[("w", &wa)]), &[("x", &xa)], &[want], what);
}

#[test]
fn conv2d_plain_and_padded() {
    conv_case(
        [1, 3, 8, 8],
        4,
        [3, 3],
        Conv2dAttrs::default(),
        "conv 3x3 no pad",
    );
    conv_case(
        [2, 3, 9, 7],
        5,
        [3, 3],
        Conv2dAttrs::same(1, 1),
        "conv 3x3 pad 1 odd sizes",
    );
}

#[test]
fn conv2d_strided_dilated_asymmetric() {
    let a = Conv2dAttrs {
        stride: [2, 3],
        padding: [1, 2, 0, 1],
        dilation: [2, 1],
        groups: 1,
        ..Conv2dAttrs::default()
    };
    conv_case(
        [1, 2, 11, 13],
        3,
        [3, 2],
        a,
        "conv strided dilated asymmetric pad",
    );
}

#[test]
fn conv2d_grouped_and_depthwise() {
    let grouped = Conv2dAttrs {
        groups: 2,
        ..Conv2dAttrs::same(1, 1)
    };
    conv_case([1, 4, 8, 8], 6, [3, 3], grouped, "conv groups 2");
    let dw = Conv2dAttrs {
        groups: 4,
        ..Conv2dAttrs::same(2, 1)
    };
    conv_case([2, 4, 9, 9], 4, [3, 3], dw, "depthwise stride 2");
    let dw_mult = Conv2dAttrs {
        groups: 3,
        ..Conv2dAttrs::same(1, 0)
    };
    conv_case(
        [1, 3, 6, 10],
        6,
        [1, 1],
        dw_mult,
        "depthwise multiplier 2, 1x1",
    );
}

#[test]
fn dense_with_and_without_bias_and_matmul() {
    // (1, 512, 300): a matrix-vector product large enough for parallel chunks of output
    // columns (19 columns each at 4 threads: the last chunk partial).
    for (m, k, n) in [
        (1, 16, 10),
        (5, 7, 12),
        (8, 32, 3),
        (1, 512, 300),
        (3, 40, 24),
        // On the micro-kernel (16+ rows, columns a multiple of 16): partial tiles and
        // row blocks, two reduction slices (300 = 2 x 150).
        (37, 40, 48),
        (20, 300, 32),
    ] {
        let mut g = Graph::new();
        let x = g.input("x", &[m, k], DType::F32).unwrap();
        let w = g.param("w", &[n, k]).unwrap();
        let b = g.param("b", &[n]).unwrap();
        let y = g.dense("fc", x, w, Some(b)).unwrap();
        let y2 = g.dense("fc_nobias", x, w, None).unwrap();
        let bm = g.param("bm", &[k, n]).unwrap();
        let y3 = g.matmul("mm", x, bm).unwrap();
        g.output(y).unwrap();
        g.output(y2).unwrap();
        g.output(y3).unwrap();
        let (xa, wa, ba, bma) = (
            rnd(&[m, k], 1),
            rnd(&[n, k], 2),
            rnd(&[n], 3),
            rnd(&[k, n], 4),
        );
        let want = vec![
            dense_ref(&T::of(&xa), &T::of(&wa), Some(&T::of(&ba))),
            dense_ref(&T::of(&xa), &T::of(&wa), None),
            matmul_ref(&T::of(&xa), &T::of(&bma)),
        ];
        check(
            &g,
            &params(&[("w", &wa), ("b", &ba), ("bm", &bma)]),
            &[("x", &xa)],
            &want,
            &format!("dense/matmul {}x{}x{}", m, k, n),
        );
    }
}

#[test]
fn dense_of_a_few_rows_is_dot_products_and_small_kernels_stay_serial() {
    let build = |m: usize, k: usize, n: usize| {
        let mut g = Graph::new();
        let x = g.input("x", &[m, k], DType::F32).unwrap();
        let w = g.param("w", &[n, k]).unwrap();
        let b = g.param("b", &[n]).unwrap();
        let y = g.dense("fc", x, w, Some(b)).unwrap();
        g.output(y).unwrap();
        let ps = params(&[("w", &rnd(&[n, k], 2)), ("b", &rnd(&[n], 3))]);
        graph_runtime::build(&g, Target::cpu(), &ps, 2).unwrap()
    };
    // A batch of one: the weight read in place (no transposed copy), one dot product per
    // output, the columns in parallel chunks.
    let ir = build(1, 512, 300).kernel(0).lowered().to_string();
    assert!(
        ir.contains("dot_f32_512.update(") || ir.contains("dot_f32_512("),
        "{}",
        ir
    );
    assert!(!ir.contains("produce wt"), "{}", ir);
    assert!(ir.contains("parallel"), "{}", ir);
    // 160 multiply-adds: below PARALLEL_MIN_WORK, one thread.
    let ir = build(1, 16, 10).kernel(0).lowered().to_string();
    assert!(!ir.contains("parallel"), "{}", ir);
    // A batch of 8 keeps the register-blocked matmul.
    let ir = build(8, 512, 300).kernel(0).lowered().to_string();
    assert!(!ir.contains("dot_f32") && ir.contains("parallel"), "{}", ir);
}

#[test]
fn dense_and_matmul_of_many_rows_run_on_the_micro_kernel() {
    // 16+ rows and columns a multiple of 16: the BLIS schedule around `gemm_f32`, dense's
    // weight transpose packed into `B` (no `wt` stage), the bias and ReLU fused into one
    // loop over the output; fewer rows or other columns keep the register-blocked loops.
    let build = |m: usize, k: usize, n: usize, threads: usize| {
        let mut g = Graph::new();
        let x = g.input("x", &[m, k], DType::F32).unwrap();
        let w = g.param("w", &[n, k]).unwrap();
        let b = g.param("b", &[n]).unwrap();
        let y = g.dense("fc", x, w, Some(b)).unwrap();
        let y = g.relu("act", y).unwrap();
        let bm = g.param("bm", &[n, n]).unwrap();
        let z = g.matmul("mm", y, bm).unwrap();
        g.output(z).unwrap();
        let (wa, ba, bma) = (rnd(&[n, k], 2), rnd(&[n], 3), rnd(&[n, n], 4));
        let ps = params(&[("w", &wa), ("b", &ba), ("bm", &bma)]);
        let model = graph_runtime::build(&g, Target::cpu(), &ps, threads).unwrap();
        let xa = rnd(&[m, k], 1);
        let mut ex = model.executor();
        ex.set_input("x", xa.clone()).unwrap();
        ex.run().unwrap();
        let h = dense_ref(&T::of(&xa), &T::of(&wa), Some(&T::of(&ba))).map(|v| v.max(0.0));
        let want = matmul_ref(&h, &T::of(&bma));
        assert_close(
            ex.get_output(0).unwrap(),
            &want,
            &format!("{}x{}x{}", m, k, n),
        );
        let irs: Vec<String> = (0..model.num_kernels())
            .map(|i| model.kernel(i).lowered().to_string())
            .collect();
        irs
    };
    for threads in [1, 2] {
        let irs = build(40, 72, 48, threads);
        assert!(irs.iter().all(|ir| ir.contains("gemm_f32_")), "{:#?}", irs);
        assert!(
            irs.iter().all(|ir| !ir.contains("produce wt\n")),
            "{:#?}",
            irs
        );
    }
    let irs = build(8, 72, 48, 1);
    assert!(irs.iter().all(|ir| !ir.contains("gemm_f32_")), "{:#?}", irs);
    let irs = build(40, 72, 20, 1);
    assert!(irs.iter().all(|ir| !ir.contains("gemm_f32_")), "{:#?}", irs);
    // A prime reduction over 256 has no slice of 32+ steps (the kernel would be called
    // once per step): the first layer keeps the loops, the second (k = 48) does not.
    let irs = build(40, 257, 48, 1);
    assert!(
        !irs[0].contains("gemm_f32_") && irs[1].contains("gemm_f32_"),
        "{:#?}",
        irs
    );
}

#[test]
fn batch_norm_inference() {
    let mut g = Graph::new();
    let x = g.input("x", &[2, 3, 4, 5], DType::F32).unwrap();
    let ps: Vec<ValueId> = ["g", "b", "m", "v"]
        .iter()
        .map(|n| g.param(n, &[3]).unwrap())
        .collect();
    let y = g
        .batch_norm("bn", x, ps[0], ps[1], ps[2], ps[3], 1e-5)
        .unwrap();
    g.output(y).unwrap();
    let xa = rnd(&[2, 3, 4, 5], 1);
    let (ga, ba, ma, va) = (rnd(&[3], 2), rnd(&[3], 3), rnd(&[3], 4), positive(&[3], 5));
    let want = bn_ref(
        &T::of(&xa),
        &T::of(&ga),
        &T::of(&ba),
        &T::of(&ma),
        &T::of(&va),
        1e-5,
    );
    check(
        &g,
        &params(&[("g", &ga), ("b", &ba), ("m", &ma), ("v", &va)]),
        &[("x", &xa)],
        &[want],
        "batch_norm",
    );
}

#[test]
fn binary_ops_broadcast() {
    let cases: Vec<(Vec<usize>, Vec<usize>)> = vec![
        (vec![2, 3, 4], vec![2, 3, 4]),
        (vec![2, 3, 4], vec![4]),
        (vec![2, 1, 4], vec![3, 1]),
        (vec![1], vec![5, 8]),
        (vec![2, 3, 1, 1], vec![1, 3, 4, 4]),
    ];
    for (sa, sb) in cases {
        let mut g = Graph::new();
        let a = g.input("a", &sa, DType::F32).unwrap();
        let b = g.input("b", &sb, DType::F32).unwrap();
        let outs = [
            g.add("add", a, b).unwrap(),
            g.sub("sub", a, b).unwrap(),
            g.mul("mul", a, b).unwrap(),
            g.div("div", a, b).unwrap(),
        ];
        for o in outs {
            g.output(o).unwrap();
        }
        let aa = rnd(&sa, 7);
        // keep the divisor away from zero
        let ba = positive(&sb, 8);
        let (ta, tb) = (T::of(&aa), T::of(&ba));
        let want = vec![
            broadcast_ref(&ta, &tb, |x, y| x + y),
            broadcast_ref(&ta, &tb, |x, y| x - y),
            broadcast_ref(&ta, &tb, |x, y| x * y),
            broadcast_ref(&ta, &tb, |x, y| x / y),
        ];
        check(
            &g,
            &HashMap::new(),
            &[("a", &aa), ("b", &ba)],
            &want,
            &format!("binary {:?} {:?}", sa, sb),
        );
    }
}

#[test]
fn unary_activations() {
    let shape = [3, 5, 8];
    let mut g = Graph::new();
    let x = g.input("x", &shape, DType::F32).unwrap();
    let outs = [
        g.relu("relu", x).unwrap(),
        g.relu6("relu6", x).unwrap(),
        g.clip("clip", x, -0.25, 0.5).unwrap(),
        g.sigmoid("sigmoid", x).unwrap(),
        g.tanh("tanh", x).unwrap(),
        g.gelu("gelu", x).unwrap(),
        g.erf("erf", x).unwrap(),
        g.exp("exp", x).unwrap(),
    ];
    for o in outs {
        g.output(o).unwrap();
    }
    // values in [-8, 8) so that relu6 clips on both sides
    let r = rnd(&shape, 9);
    let xa = NdArray::from_fn(&shape, |i| r.get_f64(i) as f32 * 8.0);
    let t = T::of(&xa);
    let want = vec![
        t.map(|v| v.max(0.0)),
        t.map(|v| v.clamp(0.0, 6.0)),
        t.map(|v| v.clamp(-0.25, 0.5)),
        t.map(|v| 1.0 / (1.0 + (-v).exp())),
        t.map(|v| v.tanh()),
        t.map(|v| 0.5 * v * (1.0 + erf_ref(v / std::f64::consts::SQRT_2))),
        t.map(erf_ref),
        t.map(f64::exp),
    ];
    check(&g, &HashMap::new(), &[("x", &xa)], &want, "unary");
}

/// Sigmoid, tanh and GELU alone and as a fused group's anchor with an epilogue (`tanh(x) +
/// y`, `relu(gelu(x))`), and SiLU `x * sigmoid(x)` in either order: on the CPU (where it
/// has AVX2 and FMA) the activation is an `activation_f32` call per block of rows (a
/// plane's rows or fewer, odd widths and a rank-2 tensor included), SiLU one call for
/// both nodes, the rest vectorized; every target against the f64 reference.
#[test]
fn activations_run_on_the_vector_intrinsic() {
    let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
    let gelu = |v: f64| 0.5 * v * (1.0 + erf_ref(v / std::f64::consts::SQRT_2));
    for shape in [
        vec![2, 3, 7, 13],
        vec![1, 2, 150, 120],
        vec![37, 19],
        vec![1, 24, 1, 1],
        vec![1, 5, 1, 9],
    ] {
        let mut g = Graph::new();
        let x = g.input("x", &shape, DType::F32).unwrap();
        let y = g.input("y", &shape, DType::F32).unwrap();
        let s = g.sigmoid("sigmoid", x).unwrap();
        let silu = {
            let s2 = g.sigmoid("s2", x).unwrap();
            g.mul("silu", s2, x).unwrap()
        };
        let silu2 = {
            let s3 = g.sigmoid("s3", x).unwrap();
            g.mul("silu2", x, s3).unwrap()
        };
        let t = g.tanh("tanh", x).unwrap();
        let ty = g.add("tanh_y", t, y).unwrap();
        let ge = g.gelu("gelu", x).unwrap();
        let gr = g.relu("gelu_relu", ge).unwrap();
        for o in [s, silu, silu2, ty, gr] {
            g.output(o).unwrap();
        }
        let (rx, ry) = (rnd(&shape, 21), rnd(&shape, 22));
        let xa = NdArray::from_fn(&shape, |i| rx.get_f64(i) as f32 * 6.0);
        let (tx, ty_) = (T::of(&xa), T::of(&ry));
        let want = vec![
            tx.map(sig),
            tx.map(|v| v * sig(v)),
            tx.map(|v| v * sig(v)),
            T {
                shape: shape.clone(),
                data: tx
                    .data
                    .iter()
                    .zip(&ty_.data)
                    .map(|(a, b)| a.tanh() + b)
                    .collect(),
            },
            tx.map(|v| gelu(v).max(0.0)),
        ];
        let what = format!("activations {:?}", shape);
        check(&g, &HashMap::new(), &[("x", &xa), ("y", &ry)], &want, &what);
        if !loopforge::intrinsics::has_avx2_fma() {
            println!(
                "{}: no AVX2+FMA here, so no activation intrinsic to look for",
                what
            );
            continue;
        }
        let m = graph_runtime::build(&g, Target::cpu(), &HashMap::new(), 2).unwrap();
        assert_eq!(m.num_kernels(), 5, "{}", what);
        // Saved and loaded, the kernels (their schedules replayed) compute the same.
        let loaded =
            graph_runtime::CompiledModel::from_bytes(&m.to_bytes().unwrap(), "a.lfm").unwrap();
        let outputs = |m: &graph_runtime::CompiledModel| {
            let mut ex = m.executor();
            ex.set_input("x", xa.clone()).unwrap();
            ex.set_input("y", ry.clone()).unwrap();
            ex.run().unwrap();
            (0..5)
                .map(|i| ex.get_output(i).unwrap().to_vec::<f32>().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(outputs(&m), outputs(&loaded), "{}", what);
        if shape[shape.len() - 2..].iter().product::<usize>() < 8 {
            // Planes smaller than one 8-lane vector stay on the generated code.
            for k in 0..5 {
                let ir = m.kernel(k).lowered().to_string();
                assert!(!ir.contains("_f32_"), "{}: kernel {}\n{}", what, k, ir);
            }
            continue;
        }
        // SiLU in one call where its `x` reads agree inside the call's axes (a broadcast
        // read of a size-1 row is at index 0), else the sigmoid's call.
        let silu = if shape.len() > 2 && shape[shape.len() - 2] == 1 {
            "sigmoid"
        } else {
            "silu"
        };
        for (k, f) in ["sigmoid", silu, silu, "tanh", "gelu"].iter().enumerate() {
            let ir = m.kernel(k).lowered().to_string();
            assert!(
                ir.contains(&format!("{}_f32_", f)),
                "{}: kernel {}\n{}",
                what,
                k,
                ir
            );
        }
    }
}

#[test]
fn pooling_with_padding() {
    // Output widths 16 and 18 (two 4-lane vectors per block, and one with a remainder)
    // exercise the vectorized default schedule; the others its narrow and scalar paths.
    let cases = [
        ([1, 2, 8, 8], Pool2dAttrs::new(2, 2, 0)),
        ([2, 3, 7, 9], Pool2dAttrs::new(3, 2, 1)),
        ([1, 2, 6, 32], Pool2dAttrs::new(2, 2, 0)),
        ([1, 3, 9, 35], Pool2dAttrs::new(3, 2, 1)),
        ([1, 2, 5, 44], Pool2dAttrs::new(2, 2, 0)),
        (
            [1, 2, 6, 5],
            Pool2dAttrs {
                kernel: [3, 2],
                stride: [1, 2],
                padding: [2, 1, 0, 1],
            },
        ),
    ];
    for (shape, a) in cases {
        let mut g = Graph::new();
        let x = g.input("x", &shape, DType::F32).unwrap();
        let mx = g.max_pool2d("max", x, a).unwrap();
        let av = g.avg_pool2d("avg", x, a).unwrap();
        let gp = g.global_avg_pool("gap", x).unwrap();
        g.output(mx).unwrap();
        g.output(av).unwrap();
        g.output(gp).unwrap();
        // all negative inputs: a padded -inf or 0 that won a max would show
        let r = rnd(&shape, 5);
        let xa = NdArray::from_fn(&shape, |i| r.get_f64(i) as f32 - 1.5);
        let t = T::of(&xa);
        let want = vec![pool_ref(&t, &a, true), pool_ref(&t, &a, false), gap_ref(&t)];
        check(
            &g,
            &HashMap::new(),
            &[("x", &xa)],
            &want,
            &format!("pool {:?} {:?}", shape, a),
        );
        let m = graph_runtime::build(&g, Target::cpu(), &HashMap::new(), 1).unwrap();
        if shape[3] >= 32 {
            // The window reduction runs on 4-lane vectors of the output row.
            for k in 0..2 {
                let ir = m.kernel(k).lowered().to_string();
                assert!(ir.contains("ramp("), "pool kernel {}: {}", k, ir);
            }
        }
        // The global pool sums each plane in partial sums across its columns (as many as
        // the largest divisor of the width up to 8; all widths here have one above 1),
        // 4-lane vectors of them where that count is 8 or 4 (widths 8, 32, 44).
        let ir = m.kernel(2).lowered().to_string();
        assert!(ir.contains(".rf"), "global pool kernel: {}", ir);
        assert_eq!(
            ir.contains("ramp("),
            [8, 32, 44].contains(&shape[3]),
            "global pool kernel: {}",
            ir
        );
    }
}

#[test]
fn shape_ops() {
    let mut g = Graph::new();
    let x = g.input("x", &[2, 3, 4, 5], DType::F32).unwrap();
    let y = g.input("y", &[2, 2, 4, 5], DType::F32).unwrap();
    let f = g.flatten("flat", x).unwrap();
    let r = g.reshape("reshape", x, &[6, 2, 10]).unwrap();
    let t = g.transpose("transpose", x, &[0, 2, 3, 1]).unwrap();
    let c = g.concat("concat", &[x, y, x], 1).unwrap();
    let c3 = g.concat("concat_last", &[x, x], 3).unwrap();
    for o in [f, r, t, c, c3] {
        g.output(o).unwrap();
    }
    let xa = rnd(&[2, 3, 4, 5], 1);
    let ya = rnd(&[2, 2, 4, 5], 2);
    let (tx, ty) = (T::of(&xa), T::of(&ya));
    let reshaped = |s: &[usize]| T {
        shape: s.to_vec(),
        data: tx.data.clone(),
    };
    let want = vec![
        reshaped(&[2, 60]),
        reshaped(&[6, 2, 10]),
        transpose_ref(&tx, &[0, 2, 3, 1]),
        concat_ref(&[&tx, &ty, &tx], 1),
        concat_ref(&[&tx, &tx], 3),
    ];
    check(
        &g,
        &HashMap::new(),
        &[("x", &xa), ("y", &ya)],
        &want,
        "shape ops",
    );
}

#[test]
fn softmax_and_layer_norm() {
    let mut g = Graph::new();
    let x = g.input("x", &[3, 4, 10], DType::F32).unwrap();
    let s_last = g.softmax("sm_last", x, 2).unwrap();
    let s_mid = g.softmax("sm_mid", x, 1).unwrap();
    let gm = g.param("gamma", &[10]).unwrap();
    let bt = g.param("beta", &[10]).unwrap();
    let ln = g.layer_norm("ln", x, gm, bt, 1e-5).unwrap();
    for o in [s_last, s_mid, ln] {
        g.output(o).unwrap();
    }
    // large values: a softmax without the max subtraction overflows f32
    let r = rnd(&[3, 4, 10], 3);
    let xa = NdArray::from_fn(&[3, 4, 10], |i| r.get_f64(i) as f32 * 20.0 + 90.0);
    let (ga, ba) = (rnd(&[10], 4), rnd(&[10], 5));
    let t = T::of(&xa);
    let want = vec![
        softmax_ref(&t, 2),
        softmax_ref(&t, 1),
        layer_norm_ref(&t, &T::of(&ga), &T::of(&ba), 1e-5),
    ];
    check(
        &g,
        &params(&[("gamma", &ga), ("beta", &ba)]),
        &[("x", &xa)],
        &want,
        "softmax/layer_norm",
    );
}

#[test]
fn row_normalizations_are_vectorized() {
    // Rows of 64 (whole vectors) and of 37 (a partial last group of 8 lanes), the layer
    // norm with a fused epilogue: every target agrees with the references, and the CPU
    // kernels keep 8 partial statistics per row in vectors and store the rows as vectors.
    for n in [64usize, 37] {
        let mut g = Graph::new();
        let x = g.input("x", &[2, 32, n], DType::F32).unwrap();
        let sm = g.softmax("sm", x, 2).unwrap();
        // A softmax anchoring a fused group (relu of probabilities: the same values).
        let sm2 = g.softmax("sm2", x, 2).unwrap();
        let sm2 = g.relu("sm2_relu", sm2).unwrap();
        let gm = g.param("gamma", &[n]).unwrap();
        let bt = g.param("beta", &[n]).unwrap();
        let ln = g.layer_norm("ln", x, gm, bt, 1e-5).unwrap();
        let r = g.relu("ln_relu", ln).unwrap();
        g.output(sm).unwrap();
        g.output(r).unwrap();
        g.output(sm2).unwrap();
        let xa = NdArray::from_fn(&[2, 32, n], |i| ((i * 37 % 101) as f32) * 0.3 - 10.0);
        let (ga, ba) = (rnd(&[n], 4), rnd(&[n], 5));
        let t = T::of(&xa);
        let relu = |t: T| T {
            shape: t.shape.clone(),
            data: t.data.iter().map(|v| v.max(0.0)).collect(),
        };
        let want = vec![
            softmax_ref(&t, 2),
            relu(layer_norm_ref(&t, &T::of(&ga), &T::of(&ba), 1e-5)),
            softmax_ref(&t, 2),
        ];
        let ps = params(&[("gamma", &ga), ("beta", &ba)]);
        check(&g, &ps, &[("x", &xa)], &want, &format!("rows of {}", n));
        let m = graph_runtime::build(&g, Target::cpu(), &ps, 2).unwrap();
        for i in 0..m.num_kernels() {
            let ir = m.kernel(i).lowered().to_string();
            if n % 4 == 0 {
                assert!(ir.contains("ramp("), "vector rows: {}", ir);
            }
            // The softmaxes (alone and fused): each row's maximum, exponentials of the
            // row minus it and their sum by the intrinsics; the layer norms' statistics
            // in lanes.
            if m.graph().nodes()[i].name.starts_with("sm") {
                for f in ["reduce_max_f32", "exp_sub_f32", "reduce_sum_f32"] {
                    assert!(ir.contains(&format!("{}_{}(", f, n)), "{}: {}", f, ir);
                }
            } else {
                assert!(ir.contains(".rf"), "statistics in lanes: {}", ir);
            }
        }
    }
}

// ------------------------------------------------------------ models

#[test]
fn mlp_end_to_end() {
    let mut g = Graph::new();
    let x = g.input("x", &[4, 20], DType::F32).unwrap();
    let w1 = g.param("w1", &[32, 20]).unwrap();
    let b1 = g.param("b1", &[32]).unwrap();
    let w2 = g.param("w2", &[10, 32]).unwrap();
    let b2 = g.param("b2", &[10]).unwrap();
    let h = g.dense("fc1", x, w1, Some(b1)).unwrap();
    let h = g.gelu("act1", h).unwrap();
    let o = g.dense("fc2", h, w2, Some(b2)).unwrap();
    let p = g.softmax("prob", o, 1).unwrap();
    g.output(p).unwrap();
    let arrays = [
        ("w1", rnd(&[32, 20], 1)),
        ("b1", rnd(&[32], 2)),
        ("w2", rnd(&[10, 32], 3)),
        ("b2", rnd(&[10], 4)),
    ];
    let ps: HashMap<String, NdArray> = arrays
        .iter()
        .map(|(n, a)| (n.to_string(), a.clone()))
        .collect();
    let xa = rnd(&[4, 20], 5);
    let tp = |n: &str| T::of(&ps[n]);
    let h = dense_ref(&T::of(&xa), &tp("w1"), Some(&tp("b1")))
        .map(|v| 0.5 * v * (1.0 + erf_ref(v / std::f64::consts::SQRT_2)));
    let o = dense_ref(&h, &tp("w2"), Some(&tp("b2")));
    let want = softmax_ref(&o, 1);
    check(&g, &ps, &[("x", &xa)], &[want], "mlp");
}

struct Bn {
    g: NdArray,
    b: NdArray,
    m: NdArray,
    v: NdArray,
}

fn add_bn(
    g: &mut Graph,
    ps: &mut HashMap<String, NdArray>,
    name: &str,
    x: ValueId,
    c: usize,
    seed: u64,
) -> (ValueId, Bn) {
    let bn = Bn {
        g: positive(&[c], seed),
        b: rnd(&[c], seed + 1),
        m: rnd(&[c], seed + 2),
        v: positive(&[c], seed + 3),
    };
    let mut ids = vec![];
    for (suffix, a) in [
        ("gamma", &bn.g),
        ("beta", &bn.b),
        ("mean", &bn.m),
        ("var", &bn.v),
    ] {
        let n = format!("{}.{}", name, suffix);
        ids.push(g.param(&n, &[c]).unwrap());
        ps.insert(n, a.clone());
    }
    let y = g
        .batch_norm(name, x, ids[0], ids[1], ids[2], ids[3], 1e-5)
        .unwrap();
    (y, bn)
}

fn bn_t(x: &T, bn: &Bn) -> T {
    bn_ref(
        x,
        &T::of(&bn.g),
        &T::of(&bn.b),
        &T::of(&bn.m),
        &T::of(&bn.v),
        1e-5,
    )
}

#[test]
fn small_cnn_end_to_end() {
    let mut g = Graph::new();
    let mut ps = HashMap::new();
    let x = g.input("image", &[2, 3, 12, 12], DType::F32).unwrap();
    let w1 = g.param("conv1.w", &[8, 3, 3, 3]).unwrap();
    let w1a = rnd(&[8, 3, 3, 3], 21);
    ps.insert("conv1.w".to_string(), w1a.clone());
    let c1 = g.conv2d("conv1", x, w1, Conv2dAttrs::same(1, 1)).unwrap();
    let (b1, bn1) = add_bn(&mut g, &mut ps, "bn1", c1, 8, 30);
    let r1 = g.relu("relu1", b1).unwrap();
    let p1 = g
        .max_pool2d("pool1", r1, Pool2dAttrs::new(2, 2, 0))
        .unwrap();
    let w2 = g.param("conv2.w", &[8, 1, 3, 3]).unwrap();
    let w2a = rnd(&[8, 1, 3, 3], 22);
    ps.insert("conv2.w".to_string(), w2a.clone());
    let dw = Conv2dAttrs {
        groups: 8,
        ..Conv2dAttrs::same(1, 1)
    };
    let c2 = g.conv2d("dwconv", p1, w2, dw).unwrap();
    let r2 = g.relu6("relu2", c2).unwrap();
    let gp = g.global_avg_pool("gap", r2).unwrap();
    let f = g.flatten("flatten", gp).unwrap();
    let wf = g.param("fc.w", &[5, 8]).unwrap();
    let bf = g.param("fc.b", &[5]).unwrap();
    let (wfa, bfa) = (rnd(&[5, 8], 23), rnd(&[5], 24));
    ps.insert("fc.w".to_string(), wfa.clone());
    ps.insert("fc.b".to_string(), bfa.clone());
    let fc = g.dense("fc", f, wf, Some(bf)).unwrap();
    let prob = g.softmax("softmax", fc, 1).unwrap();
    g.output(prob).unwrap();
    g.output(fc).unwrap();

    let xa = rnd(&[2, 3, 12, 12], 20);
    let t = conv_ref(&T::of(&xa), &T::of(&w1a), &Conv2dAttrs::same(1, 1));
    let t = bn_t(&t, &bn1).map(|v| v.max(0.0));
    let t = pool_ref(&t, &Pool2dAttrs::new(2, 2, 0), true);
    let t = conv_ref(&t, &T::of(&w2a), &dw).map(|v| v.clamp(0.0, 6.0));
    let t = gap_ref(&t);
    let t = T {
        shape: vec![2, 8],
        data: t.data,
    };
    let logits = dense_ref(&t, &T::of(&wfa), Some(&T::of(&bfa)));
    let prob = softmax_ref(&logits, 1);
    check(&g, &ps, &[("image", &xa)], &[prob, logits], "small cnn");
}

#[test]
fn residual_block_end_to_end_and_reruns() {
    let mut g = Graph::new();
    let mut ps = HashMap::new();
    let c = 4;
    let x = g.input("x", &[1, c, 8, 8], DType::F32).unwrap();
    let w1 = g.param("w1", &[c, c, 3, 3]).unwrap();
    let w2 = g.param("w2", &[c, c, 3, 3]).unwrap();
    let (w1a, w2a) = (rnd(&[c, c, 3, 3], 41), rnd(&[c, c, 3, 3], 42));
    ps.insert("w1".to_string(), w1a.clone());
    ps.insert("w2".to_string(), w2a.clone());
    let a = Conv2dAttrs::same(1, 1);
    let h = g.conv2d("conv1", x, w1, a).unwrap();
    let (h, bn1) = add_bn(&mut g, &mut ps, "bn1", h, c, 50);
    let h = g.relu("relu1", h).unwrap();
    let h = g.conv2d("conv2", h, w2, a).unwrap();
    let (h, bn2) = add_bn(&mut g, &mut ps, "bn2", h, c, 60);
    let s = g.add("skip", h, x).unwrap();
    let y = g.relu("relu2", s).unwrap();
    g.output(y).unwrap();

    let reference = |xa: &NdArray| {
        let tx = T::of(xa);
        let t = conv_ref(&tx, &T::of(&w1a), &a);
        let t = bn_t(&t, &bn1).map(|v| v.max(0.0));
        let t = bn_t(&conv_ref(&t, &T::of(&w2a), &a), &bn2);
        broadcast_ref(&t, &tx, |p, q| (p + q).max(0.0))
    };
    let x1 = rnd(&[1, c, 8, 8], 1);
    check(&g, &ps, &[("x", &x1)], &[reference(&x1)], "residual block");

    // One executor, two runs with different inputs: intermediates are reused, and the
    // second result must not depend on the first.
    let model = graph_runtime::build(&g, Target::cpu(), &ps, 2).unwrap();
    let mut ex = model.executor();
    let x2 = rnd(&[1, c, 8, 8], 2);
    ex.set_input("x", x1.clone()).unwrap();
    ex.run().unwrap();
    assert_close(ex.get_output(0).unwrap(), &reference(&x1), "first run");
    ex.set_input("x", x2.clone()).unwrap();
    ex.run().unwrap();
    assert_close(ex.get_output(0).unwrap(), &reference(&x2), "second run");

    // The profiled run computes the same, and times each kernel in order.
    ex.set_input("x", x1.clone()).unwrap();
    let times = ex.run_profiled().unwrap();
    assert_close(ex.get_output(0).unwrap(), &reference(&x1), "profiled run");
    assert_eq!(times.len(), model.num_kernels());
    for (t, node) in times.iter().zip(model.graph().nodes()) {
        assert_eq!(t.node, node.name);
        assert!(t.seconds >= 0.0 && t.seconds.is_finite(), "{:?}", t);
    }
    assert!(times.iter().any(|t| t.op == "fused conv2d"), "{:?}", times);
}

// ------------------------------------------------------------ errors

fn graph_error(e: Error) -> (String, String) {
    match e {
        Error::Graph { node, msg } => (node, msg),
        other => panic!("expected a graph error, got {:?}", other),
    }
}

#[test]
fn shape_mismatch_names_the_node() {
    let mut g = Graph::new();
    let x = g.input("x", &[1, 3, 32, 32], DType::F32).unwrap();
    let w = g.param("w1", &[8, 4, 3, 3]).unwrap();
    let e = g.conv2d("conv1", x, w, Conv2dAttrs::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "node conv1: input channels 3 do not match the weight's 4 (groups 1): the weight must have shape [O, 3, KH, KW]"
    );
    let (node, _) = graph_error(e);
    assert_eq!(node, "conv1");

    let a = g.input("a", &[2, 3], DType::F32).unwrap();
    let b = g.input("b", &[4, 3], DType::F32).unwrap();
    let (node, msg) = graph_error(g.add("plus", a, b).unwrap_err());
    assert_eq!(node, "plus");
    assert!(
        msg.contains("[2, 3]") && msg.contains("[4, 3]") && msg.contains("broadcast"),
        "{}",
        msg
    );

    let wd = g.param("wd", &[5, 4]).unwrap();
    let (node, msg) = graph_error(g.dense("fc", a, wd, None).unwrap_err());
    assert_eq!(node, "fc");
    assert!(
        msg.contains("input features 3") && msg.contains("4"),
        "{}",
        msg
    );

    let (node, msg) = graph_error(g.relu("a", a).unwrap_err());
    assert_eq!(node, "a");
    assert!(msg.contains("unique"), "{}", msg);

    let (node, msg) = graph_error(
        g.max_pool2d("pool", x, Pool2dAttrs::new(2, 2, 2))
            .unwrap_err(),
    );
    assert_eq!(node, "pool");
    assert!(msg.contains("smaller than the kernel"), "{}", msg);

    let (node, msg) = graph_error(g.transpose("t", a, &[0, 0]).unwrap_err());
    assert_eq!(node, "t");
    assert!(msg.contains("permutation"), "{}", msg);
}

fn tiny_graph() -> (Graph, HashMap<String, NdArray>) {
    let mut g = Graph::new();
    let x = g.input("x", &[2, 4], DType::F32).unwrap();
    let w = g.param("w", &[3, 4]).unwrap();
    let y = g.dense("fc", x, w, None).unwrap();
    g.output(y).unwrap();
    let ps = params(&[("w", &rnd(&[3, 4], 1))]);
    (g, ps)
}

#[test]
fn param_errors_name_the_parameter() {
    let (g, _) = tiny_graph();
    let (node, msg) = graph_error(
        graph_runtime::build(&g, Target::cpu(), &HashMap::new(), 1)
            .err()
            .unwrap(),
    );
    assert_eq!(node, "w");
    assert!(msg.contains("missing") && msg.contains("[3, 4]"), "{}", msg);

    let wrong = params(&[("w", &rnd(&[4, 3], 1))]);
    let (node, msg) = graph_error(
        graph_runtime::build(&g, Target::cpu(), &wrong, 1)
            .err()
            .unwrap(),
    );
    assert_eq!(node, "w");
    assert!(msg.contains("[4, 3]") && msg.contains("[3, 4]"), "{}", msg);

    let mut extra = params(&[("w", &rnd(&[3, 4], 1))]);
    extra.insert("w_typo".to_string(), rnd(&[3, 4], 1));
    let (node, msg) = graph_error(
        graph_runtime::build(&g, Target::cpu(), &extra, 1)
            .err()
            .unwrap(),
    );
    assert_eq!(node, "w_typo");
    assert!(msg.contains("no parameter"), "{}", msg);
}

#[test]
fn input_errors() {
    let (g, ps) = tiny_graph();
    let model = graph_runtime::build(&g, Target::cpu(), &ps, 1).unwrap();
    let mut ex = model.executor();
    // run before set_input
    let (node, msg) = graph_error(ex.run().unwrap_err());
    assert_eq!(node, "x");
    assert!(msg.contains("not set"), "{}", msg);
    let (node, msg) = graph_error(ex.run_profiled().unwrap_err());
    assert_eq!(node, "x");
    assert!(msg.contains("not set"), "{}", msg);
    // unknown name
    let (node, msg) = graph_error(ex.set_input("y", rnd(&[2, 4], 2)).unwrap_err());
    assert_eq!(node, "y");
    assert!(msg.contains("no input") && msg.contains("[x]"), "{}", msg);
    // wrong shape, wrong dtype
    let (node, msg) = graph_error(ex.set_input("x", rnd(&[4, 2], 2)).unwrap_err());
    assert_eq!(node, "x");
    assert!(msg.contains("[4, 2]") && msg.contains("[2, 4]"), "{}", msg);
    let (_, msg) = graph_error(
        ex.set_input("x", NdArray::zeros(&[2, 4], DType::F64))
            .unwrap_err(),
    );
    assert!(
        msg.contains("float64") && msg.contains("float32"),
        "{}",
        msg
    );
    // out-of-range output
    ex.set_input("x", rnd(&[2, 4], 2)).unwrap();
    ex.run().unwrap();
    assert!(ex.get_output(0).is_ok());
    assert!(matches!(ex.get_output(1), Err(Error::Graph { .. })));
}

/// A conv-bn-relu-pool-dense-softmax graph with its parameters and an input.
fn saved_model_graph() -> (Graph, HashMap<String, NdArray>, NdArray) {
    let mut g = Graph::new();
    let mut ps = HashMap::new();
    let x = g.input("image", &[1, 3, 8, 8], DType::F32).unwrap();
    let w = g.param("conv.w", &[4, 3, 3, 3]).unwrap();
    ps.insert("conv.w".to_string(), rnd(&[4, 3, 3, 3], 51));
    let c = g.conv2d("conv", x, w, Conv2dAttrs::same(1, 1)).unwrap();
    let (b, _) = add_bn(&mut g, &mut ps, "bn", c, 4, 52);
    let r = g.relu("relu", b).unwrap();
    let p = g.max_pool2d("pool", r, Pool2dAttrs::new(2, 2, 0)).unwrap();
    let f = g.flatten("flatten", p).unwrap();
    let wf = g.param("fc.w", &[3, 64]).unwrap();
    let bf = g.param("fc.b", &[3]).unwrap();
    ps.insert("fc.w".to_string(), rnd(&[3, 64], 53));
    ps.insert("fc.b".to_string(), rnd(&[3], 54));
    let fc = g.dense("fc", f, wf, Some(bf)).unwrap();
    let sm = g.softmax("prob", fc, 1).unwrap();
    g.output(sm).unwrap();
    (g, ps, rnd(&[1, 3, 8, 8], 55))
}

#[test]
fn save_and_load_round_trip() {
    let (g, ps, x) = saved_model_graph();
    for threads in [1, 2] {
        let model = graph_runtime::build(&g, Target::cpu(), &ps, threads).unwrap();
        let path = std::env::temp_dir().join(format!(
            "loopforge_saved_{}_{}.lfm",
            std::process::id(),
            threads
        ));
        model.save(&path).unwrap();
        let loaded = graph_runtime::CompiledModel::load(&path).unwrap();
        std::fs::remove_file(&path).ok();
        assert_eq!(loaded.graph().nodes(), model.graph().nodes());
        let run = |m: &graph_runtime::CompiledModel| {
            let mut ex = m.executor();
            ex.set_input("image", x.clone()).unwrap();
            ex.run().unwrap();
            ex.get_output(0).unwrap().to_vec::<f32>().unwrap()
        };
        // Same graph, parameters and schedules: the same numbers, bit for bit.
        assert_eq!(run(&model), run(&loaded));
        // The stored schedules are the ones replayed (not re-derived): the loaded model's
        // file is byte-identical.
        assert_eq!(model.to_bytes().unwrap(), loaded.to_bytes().unwrap());
    }
}

#[test]
fn bad_model_files_are_errors() {
    let (g, ps, _) = saved_model_graph();
    let bytes = graph_runtime::build(&g, Target::cpu(), &ps, 1)
        .unwrap()
        .to_bytes()
        .unwrap();
    // Every truncation (through the magic, the header, the parameters) is an error.
    for cut in [0, 5, 12, 16, 100, bytes.len() / 2, bytes.len() - 1] {
        let e = graph_runtime::CompiledModel::from_bytes(&bytes[..cut], "m.lfm")
            .err()
            .unwrap_or_else(|| panic!("a file cut at {} bytes loaded", cut));
        let (node, msg) = graph_error(e);
        assert_eq!(node, "m.lfm");
        assert!(
            msg.contains("truncated")
                || msg.contains("not a loopforge model")
                || msg.contains("malformed"),
            "cut at {}: {}",
            cut,
            msg
        );
    }
    let e = graph_runtime::CompiledModel::from_bytes(b"PK\x03\x04 not a model at all", "x.zip")
        .err()
        .unwrap();
    assert!(graph_error(e).1.contains("not a loopforge model file"));
    // A header describing an ill-formed graph is refused by the builder.
    let hlen = u64::from_le_bytes(bytes[8..16].try_into().unwrap()) as usize;
    let header = String::from_utf8(bytes[16..16 + hlen].to_vec()).unwrap();
    let tampered = header.replacen("\"shape\":[4,3,3,3]", "\"shape\":[4,5,3,3]", 1);
    assert_ne!(tampered, header, "the test must change the header");
    let mut t = bytes[..8].to_vec();
    t.extend_from_slice(&(tampered.len() as u64).to_le_bytes());
    t.extend_from_slice(tampered.as_bytes());
    t.extend_from_slice(&bytes[16 + hlen..]);
    let (node, msg) = graph_error(
        graph_runtime::CompiledModel::from_bytes(&t, "m.lfm")
            .err()
            .unwrap(),
    );
    // The stored graph is the passed one: the conv (its batch norm folded in) is the
    // anchor of the fused group conv + bias + relu, named after its last node.
    assert_eq!(node, "relu", "{}", msg);
    assert!(msg.contains("input channels 3"), "{}", msg);
    // Missing files are errors too.
    assert!(graph_runtime::CompiledModel::load("/nonexistent/model.lfm").is_err());
}
