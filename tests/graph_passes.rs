//! The graph passes: batch norm folding, fusion (kernel counts and results against the
//! unfused build on the interpreter, the CPU JIT and the CUDA schedules on the simulated
//! GPU), memory planning (buffers reused, results bit-identical to the unplanned run),
//! saved models of the passed graph, and a ResNet-18-shaped network checked operator by
//! operator against the reference interpreter.
//!
//! Tolerances: results of a build with passes against one without are compared with
//! `|got - want| <= 1e-4 + 1e-4 |want|` (folding rounds `w * gamma / sqrt(var + eps)` once
//! instead of per operation; fused kernels may contract differently into FMA). The
//! ResNet-18 check allows `|got - want| <= 2e-3 * max(1, max |want|)` per node: twenty
//! layers of f32 convolutions with folded weights and different summation orders
//! (measured: below 1e-4 of the node's largest magnitude). Memory planning changes no
//! arithmetic: compared bit for bit.

use loopforge::graph_runtime::{
    self, models, BuildOptions, CompiledModel, Conv2dAttrs, Graph, Op, ScheduleKind, WeightLayout,
};
use loopforge::prelude::*;
use std::collections::HashMap;

fn rnd(shape: &[usize], seed: u64) -> NdArray {
    NdArray::random(shape, DType::F32, seed)
}

/// `r * scale + offset`, `r` uniform in [-1, 1).
fn around(shape: &[usize], seed: u64, scale: f32, offset: f32) -> NdArray {
    let r = rnd(shape, seed);
    NdArray::from_fn(shape, |i| r.get_f64(i) as f32 * scale + offset)
}

fn close(got: &NdArray, want: &NdArray, what: &str) {
    assert_eq!(got.shape(), want.shape(), "{}: shape", what);
    for (i, (a, b)) in got
        .to_f64_vec()
        .into_iter()
        .zip(want.to_f64_vec())
        .enumerate()
    {
        assert!(
            (a - b).abs() <= 1e-4 + 1e-4 * b.abs(),
            "{}: element {} is {} but should be {}",
            what,
            i,
            a,
            b
        );
    }
}

/// A batch norm over `c` channels with parameters named `name.*`.
fn bn(
    g: &mut Graph,
    ps: &mut HashMap<String, NdArray>,
    name: &str,
    x: ValueId,
    seed: u64,
) -> ValueId {
    let c = g.shape(x)[1];
    let mut p = |k: &str, a: NdArray| {
        let n = format!("{}.{}", name, k);
        ps.insert(n.clone(), a);
        g.param(&n, &[c]).unwrap()
    };
    let gamma = p("gamma", around(&[c], seed, 0.5, 1.0));
    let beta = p("beta", around(&[c], seed + 1, 0.5, 0.0));
    let mean = p("mean", around(&[c], seed + 2, 0.5, 0.0));
    let var = p("var", around(&[c], seed + 3, 0.4, 1.0));
    g.batch_norm(name, x, gamma, beta, mean, var, 1e-5).unwrap()
}

use loopforge::graph_runtime::ValueId;

fn param(g: &mut Graph, ps: &mut HashMap<String, NdArray>, name: &str, a: NdArray) -> ValueId {
    let v = g.param(name, a.shape()).unwrap();
    ps.insert(name.to_string(), a);
    v
}

fn build(
    g: &Graph,
    ps: &HashMap<String, NdArray>,
    target: Target,
    threads: usize,
    kind: ScheduleKind,
    opts: BuildOptions,
) -> CompiledModel {
    graph_runtime::build_with_options(g, target, ps, threads, kind, &opts, &mut |_, _, _| {})
        .unwrap_or_else(|e| panic!("build failed: {}", e))
}

/// [`build`] for the CPU on one thread.
fn build_cpu(g: &Graph, ps: &HashMap<String, NdArray>, opts: BuildOptions) -> CompiledModel {
    build(g, ps, Target::cpu(), 1, ScheduleKind::Cpu, opts)
}

/// The names of the parameters of `m`'s graph, in its order.
fn param_names(m: &CompiledModel) -> Vec<&str> {
    let g = m.graph();
    g.params().iter().map(|&p| g.value_name(p)).collect()
}

/// `m`'s first output on input `x` equals that of the same graph built with no pass.
fn same_as_without_passes(
    m: &CompiledModel,
    g: &Graph,
    ps: &HashMap<String, NdArray>,
    threads: usize,
    xa: &NdArray,
    what: &str,
) {
    let none = build(
        g,
        ps,
        Target::cpu(),
        threads,
        ScheduleKind::Cpu,
        BuildOptions::none(),
    );
    close(&run(m, &[("x", xa)])[0], &run(&none, &[("x", xa)])[0], what);
}

fn run(m: &CompiledModel, inputs: &[(&str, &NdArray)]) -> Vec<NdArray> {
    let mut ex = m.executor();
    for (n, a) in inputs {
        ex.set_input(n, (*a).clone()).unwrap();
    }
    ex.run().unwrap();
    (0..m.graph().outputs().len())
        .map(|i| ex.get_output(i).unwrap().clone())
        .collect()
}

fn has_batch_norm(m: &CompiledModel) -> bool {
    m.graph().nodes().iter().any(|n| match &n.op {
        Op::BatchNorm { .. } => true,
        Op::Fused(f) => {
            matches!(*f.anchor, Op::BatchNorm { .. })
                || f.epilogue
                    .iter()
                    .any(|s| matches!(s, graph_runtime::EpilogueStep::BatchNorm { .. }))
        }
        _ => false,
    })
}

/// Every pass on against every pass off, on the interpreter, the CPU JIT (1 and 2
/// threads) and the CUDA schedules on the simulated GPU; the passed graph also compiled
/// with NVRTC where it is present (as many kernels as the CUDA schedules' graph). Returns
/// the number of kernels of the CPU schedules' graph with the passes.
fn compare_passes(
    g: &Graph,
    ps: &HashMap<String, NdArray>,
    inputs: &[(&str, &NdArray)],
    what: &str,
) -> usize {
    let want = run(
        &build(
            g,
            ps,
            Target::interp(),
            1,
            ScheduleKind::Cpu,
            BuildOptions::none(),
        ),
        inputs,
    );
    // Kernels per kind of schedules (the CPU's graph may differ: an activation on the
    // vector intrinsic anchors its own kernel there).
    let (mut cpu_kernels, mut kernels) = (None, 0);
    for (target, threads, kind) in [
        (Target::interp(), 1, ScheduleKind::Cpu),
        (Target::cpu(), 1, ScheduleKind::Cpu),
        (Target::cpu(), 2, ScheduleKind::Cpu),
        (Target::interp(), 1, ScheduleKind::Cuda),
    ] {
        let m = build(
            g,
            ps,
            target.clone(),
            threads,
            kind,
            BuildOptions::default(),
        );
        kernels = m.num_kernels();
        if kind == ScheduleKind::Cpu {
            assert_eq!(*cpu_kernels.get_or_insert(kernels), kernels, "{}", what);
        }
        for (i, (got, w)) in run(&m, inputs).iter().zip(&want).enumerate() {
            close(
                got,
                w,
                &format!(
                    "{} ({:?}, {:?}, {} threads) output {}",
                    what, target, kind, threads, i
                ),
            );
        }
    }
    if loopforge::codegen_cuda::nvrtc_available() {
        let m = graph_runtime::build(g, Target::cuda_arch("sm_80"), ps, 1)
            .unwrap_or_else(|e| panic!("{}: CUDA build failed: {}", what, e));
        assert_eq!(m.num_kernels(), kernels, "{}", what);
        assert!(
            (0..m.num_kernels()).all(|i| m.kernel(i).ptx().is_some()),
            "{}",
            what
        );
    } else if std::env::var("LOOPFORGE_REQUIRE_NVRTC").is_ok_and(|v| v == "1") {
        panic!("LOOPFORGE_REQUIRE_NVRTC=1 but libnvrtc.so.12 was not found");
    }
    cpu_kernels.expect("a CPU build")
}

// ------------------------------------------------------------ batch norm folding

#[test]
fn batch_norm_folds_into_conv_and_dense() {
    let mut g = Graph::new();
    let mut ps = HashMap::new();
    let x = g.input("x", &[1, 3, 9, 9], DType::F32).unwrap();
    // conv + bn
    let w1 = param(&mut g, &mut ps, "w1", rnd(&[8, 3, 3, 3], 1));
    let h = g.conv2d("conv1", x, w1, Conv2dAttrs::same(1, 1)).unwrap();
    let h = bn(&mut g, &mut ps, "bn1", h, 10);
    // conv + per-channel bias (ONNX's Conv with a bias) + bn, strided and grouped
    let w2 = param(&mut g, &mut ps, "w2", rnd(&[8, 4, 3, 3], 2));
    let b2 = param(&mut g, &mut ps, "b2", rnd(&[8, 1, 1], 3));
    let a = Conv2dAttrs {
        groups: 2,
        ..Conv2dAttrs::same(2, 1)
    };
    let h = g.conv2d("conv2", h, w2, a).unwrap();
    let h = g.add("conv2_bias", h, b2).unwrap();
    let h = bn(&mut g, &mut ps, "bn2", h, 20);
    let f = g.flatten("flatten", h).unwrap();
    // dense + bn
    let wd = param(&mut g, &mut ps, "wd", rnd(&[6, 8 * 5 * 5], 4));
    let bd = param(&mut g, &mut ps, "bd", rnd(&[6], 5));
    let d = g.dense("fc", f, wd, Some(bd)).unwrap();
    let y = bn(&mut g, &mut ps, "bn3", d, 30);
    g.output(y).unwrap();
    let xa = rnd(&[1, 3, 9, 9], 6);

    let unfolded = build_cpu(&g, &ps, BuildOptions::none());
    let folded_only = BuildOptions {
        fold: true,
        ..BuildOptions::none()
    };
    let folded = build_cpu(&g, &ps, folded_only);
    assert!(has_batch_norm(&unfolded));
    assert!(!has_batch_norm(&folded), "{:#?}", folded.graph().nodes());
    // conv + add, conv + add, flatten, dense: the batch norms and the original bias add gone.
    assert_eq!(folded.num_kernels(), 6);
    assert_eq!(unfolded.num_kernels(), g.nodes().len());
    close(
        &run(&folded, &[("x", &xa)])[0],
        &run(&unfolded, &[("x", &xa)])[0],
        "folded against unfolded",
    );
    // A batch norm whose conv output is read elsewhere too is not folded.
    let mut g2 = Graph::new();
    let mut ps2 = HashMap::new();
    let x = g2.input("x", &[1, 3, 6, 6], DType::F32).unwrap();
    let w = param(&mut g2, &mut ps2, "w", rnd(&[3, 3, 3, 3], 7));
    let c = g2.conv2d("conv", x, w, Conv2dAttrs::same(1, 1)).unwrap();
    let b = bn(&mut g2, &mut ps2, "bn", c, 40);
    let y = g2.add("sum", b, c).unwrap();
    g2.output(y).unwrap();
    let m = build_cpu(&g2, &ps2, folded_only);
    assert!(has_batch_norm(&m));
}

#[test]
fn constants_fold_into_parameters() {
    // reshape of a parameter, and an add of two parameters, feed the graph.
    let mut g = Graph::new();
    let mut ps = HashMap::new();
    let x = g.input("x", &[2, 6], DType::F32).unwrap();
    let p = param(&mut g, &mut ps, "p", rnd(&[3, 2], 1));
    let q = param(&mut g, &mut ps, "q", rnd(&[6], 2));
    let r = g.reshape("p_flat", p, &[6]).unwrap();
    let s = g.add("pq", r, q).unwrap();
    let t = g.sigmoid("pq_sig", s).unwrap();
    let y = g.mul("y", x, t).unwrap();
    g.output(y).unwrap();
    let xa = rnd(&[2, 6], 3);
    let m = build_cpu(
        &g,
        &ps,
        BuildOptions {
            fold: true,
            ..BuildOptions::none()
        },
    );
    assert_eq!(m.num_kernels(), 1, "{:#?}", m.graph().nodes());
    // The folded value is a parameter named after the node it replaces.
    let names: Vec<&str> = m
        .graph()
        .params()
        .iter()
        .map(|&v| m.graph().value_name(v))
        .collect();
    assert_eq!(names, ["pq_sig"]);
    same_as_without_passes(&m, &g, &ps, 1, &xa, "folded constants");
}

// ------------------------------------------------------------ weight packing

#[test]
fn conv_weights_pack_at_build_time() {
    // conv1 (32 output channels) and conv3 share a weight: packed once, and the OIHW `w1`,
    // read by nothing else, disappears. conv2 has 8 output channels (not a multiple of
    // 16): left OIHW.
    let mut g = Graph::new();
    let mut ps = HashMap::new();
    let x = g.input("x", &[1, 8, 9, 9], DType::F32).unwrap();
    let w1 = param(&mut g, &mut ps, "w1", rnd(&[32, 8, 3, 3], 1));
    let b1 = param(&mut g, &mut ps, "b1", rnd(&[32, 1, 1], 2));
    let h = g.conv2d("conv1", x, w1, Conv2dAttrs::same(1, 1)).unwrap();
    let h = g.add("bias1", h, b1).unwrap();
    let h = g.relu("relu1", h).unwrap();
    let w2 = param(&mut g, &mut ps, "w2", rnd(&[8, 32, 1, 1], 3));
    let h = g.conv2d("conv2", h, w2, Conv2dAttrs::same(2, 0)).unwrap();
    let y = g.conv2d("conv3", h, w1, Conv2dAttrs::same(1, 1)).unwrap();
    g.output(y).unwrap();
    let xa = rnd(&[1, 8, 9, 9], 4);
    compare_passes(&g, &ps, &[("x", &xa)], "packed conv weights");

    let m = build_cpu(&g, &ps, BuildOptions::default());
    let pg = m.graph();
    let names = param_names(&m);
    assert_eq!(names, ["w1.packed", "b1", "w2"], "{:?}", names);
    assert_eq!(pg.shape(pg.params()[0]), [2, 3, 3, 8, 16]);
    let layouts: Vec<WeightLayout> = pg
        .nodes()
        .iter()
        .filter_map(|n| match &n.op {
            Op::Conv2d(a) => Some(a.weight_layout),
            Op::Fused(f) => match &*f.anchor {
                Op::Conv2d(a) => Some(a.weight_layout),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(
        layouts,
        [
            WeightLayout::Ohwi16o,
            WeightLayout::Oihw,
            WeightLayout::Ohwi16o
        ]
    );
    // The kernels read the packed panels as they are: no packing stage at run time.
    let ir = m.kernel(0).lowered().to_string();
    assert!(!ir.contains(".global"), "{}", ir);
    assert!(ir.contains("gemm_f32"), "{}", ir);
    // The packed weight's element (o, c, ky, kx) sits at [o / 16, ky, kx, c, o % 16].
    let packed = m.param("w1.packed").unwrap();
    let w1a = &ps["w1"];
    for (o, c, ky, kx) in [(0, 0, 0, 0), (17, 5, 2, 1), (31, 7, 1, 2), (15, 3, 0, 2)] {
        let src = ((o * 8 + c) * 3 + ky) * 3 + kx;
        let dst = (((o / 16 * 3 + ky) * 3 + kx) * 8 + c) * 16 + o % 16;
        assert_eq!(
            packed.get_f64(dst),
            w1a.get_f64(src),
            "({o}, {c}, {ky}, {kx})"
        );
    }
    // CUDA schedules read OIHW: nothing is packed for them.
    let cuda = build(
        &g,
        &ps,
        Target::interp(),
        1,
        ScheduleKind::Cuda,
        BuildOptions::default(),
    );
    assert!(cuda
        .graph()
        .params()
        .iter()
        .all(|&p| cuda.graph().shape(p).len() != 5));
}

#[test]
fn dense_weights_transpose_at_build_time() {
    // fc (20 rows, 32 columns, bias) and fc3 share `w`: transposed once into `w.t`; fc2
    // (16 columns, no bias) gets `w2.t`; small (4 rows) stays a dense layer and keeps
    // `w` alive. The layers on `w.t` are matmuls (fc's bias an add fused into its kernel)
    // that pack `B` with vector copies.
    let mut g = Graph::new();
    let mut ps = HashMap::new();
    let x = g.input("x", &[20, 24], DType::F32).unwrap();
    let x2 = g.input("x2", &[4, 24], DType::F32).unwrap();
    let w = param(&mut g, &mut ps, "w", rnd(&[32, 24], 1));
    let b = param(&mut g, &mut ps, "b", rnd(&[32], 2));
    let h = g.dense("fc", x, w, Some(b)).unwrap();
    let h = g.relu("relu", h).unwrap();
    let w2 = param(&mut g, &mut ps, "w2", rnd(&[16, 32], 3));
    let y = g.dense("fc2", h, w2, None).unwrap();
    let z = g.dense("fc3", x, w, None).unwrap();
    let s = g.dense("small", x2, w, Some(b)).unwrap();
    for o in [y, z, s] {
        g.output(o).unwrap();
    }
    let (xa, x2a) = (rnd(&[20, 24], 4), rnd(&[4, 24], 5));
    compare_passes(
        &g,
        &ps,
        &[("x", &xa), ("x2", &x2a)],
        "transposed dense weights",
    );

    let m = build_cpu(&g, &ps, BuildOptions::default());
    let pg = m.graph();
    let mut names = param_names(&m);
    names.sort();
    assert_eq!(names, ["b", "w", "w.t", "w2.t"], "{:?}", names);
    let wt = m.param("w.t").unwrap();
    assert_eq!(wt.shape(), [24, 32]);
    for (j, k) in [(0, 0), (31, 23), (5, 17)] {
        assert_eq!(
            wt.get_f64(k * 32 + j),
            ps["w"].get_f64(j * 24 + k),
            "({j}, {k})"
        );
    }
    let kinds: Vec<(String, &str)> = pg
        .nodes()
        .iter()
        .map(|n| {
            let op = match &n.op {
                Op::Fused(f) => &*f.anchor,
                op => op,
            };
            (n.name.clone(), op.kind_name())
        })
        .collect();
    assert!(kinds.contains(&("relu".into(), "matmul")), "{:?}", kinds);
    assert!(kinds.contains(&("fc2".into(), "matmul")), "{:?}", kinds);
    assert!(kinds.contains(&("fc3".into(), "matmul")), "{:?}", kinds);
    assert!(kinds.contains(&("small".into(), "dense")), "{:?}", kinds);
    for i in 0..m.num_kernels() {
        let ir = m.kernel(i).lowered().to_string();
        if pg.nodes()[i].name != "small" {
            assert!(
                ir.contains("gemm_f32_") && !ir.contains("produce wt\n"),
                "{}",
                ir
            );
            assert!(ir.contains(".global[ramp("), "B packed in vectors: {}", ir);
        }
    }
    // With the pass off, the same layers stay dense (and transpose in the kernel).
    let off = build_cpu(
        &g,
        &ps,
        BuildOptions {
            pack_weights: false,
            ..BuildOptions::default()
        },
    );
    assert!(off.param("w.t").is_none());
    let (a, b) = (
        run(&m, &[("x", &xa), ("x2", &x2a)]),
        run(&off, &[("x", &xa), ("x2", &x2a)]),
    );
    for (i, (p, q)) in a.iter().zip(&b).enumerate() {
        close(p, q, &format!("output {} with and without the pass", i));
    }
}

#[test]
fn packed_weight_layout_is_checked() {
    let mut g = Graph::new();
    let x = g.input("x", &[1, 8, 9, 9], DType::F32).unwrap();
    let packed = Conv2dAttrs {
        weight_layout: WeightLayout::Ohwi16o,
        ..Conv2dAttrs::same(1, 1)
    };
    let w = g.param("w", &[2, 3, 3, 8, 16]).unwrap();
    let y = g.conv2d("ok", x, w, packed).unwrap();
    assert_eq!(g.shape(y), [1, 32, 9, 9]);
    let oihw = g.param("w4", &[32, 8, 3, 3]).unwrap();
    let e = g.conv2d("rank", x, oihw, packed).unwrap_err().to_string();
    assert!(e.contains("OHWI16o") && e.contains("rank"), "{}", e);
    let w8 = g.param("w8", &[2, 3, 3, 8, 8]).unwrap();
    let e = g.conv2d("block", x, w8, packed).unwrap_err().to_string();
    assert!(e.contains("16 as its last size"), "{}", e);
    let grouped = Conv2dAttrs {
        groups: 2,
        ..packed
    };
    let w2 = g.param("w2", &[2, 3, 3, 4, 16]).unwrap();
    let e = g.conv2d("grouped", x, w2, grouped).unwrap_err().to_string();
    assert!(e.contains("one group"), "{}", e);
}

// ------------------------------------------------------------ fusion

#[test]
fn conv_bias_relu_is_one_kernel() {
    let mut g = Graph::new();
    let mut ps = HashMap::new();
    let x = g.input("x", &[1, 4, 10, 10], DType::F32).unwrap();
    let w = param(&mut g, &mut ps, "w", rnd(&[8, 4, 3, 3], 1));
    let b = param(&mut g, &mut ps, "b", rnd(&[8, 1, 1], 2));
    let h = g.conv2d("conv", x, w, Conv2dAttrs::same(1, 1)).unwrap();
    let h = g.add("bias", h, b).unwrap();
    let y = g.relu("relu", h).unwrap();
    g.output(y).unwrap();
    let xa = rnd(&[1, 4, 10, 10], 3);
    assert_eq!(compare_passes(&g, &ps, &[("x", &xa)], "conv+bias+relu"), 1);
    let m = build_cpu(&g, &ps, BuildOptions::default());
    let n = &m.graph().nodes()[0];
    assert_eq!(n.name, "relu");
    match &n.op {
        Op::Fused(f) => assert_eq!(f.members, ["conv", "bias", "relu"]),
        other => panic!("expected a fused node, got {:?}", other),
    }
    // The epilogue is computed in the convolution's loop nest: one kernel, no
    // intermediate buffer for the convolution's output.
    let ir = m.kernel(0).lowered().to_string();
    assert!(ir.contains("allocate anchor"), "{}", ir);
    assert!(!ir.contains("allocate anchor[float32, (800)]"), "{}", ir);
}

/// Dense + bias + GELU and matmul + bias + tanh are one kernel each for CUDA (and for the
/// CPU without AVX2 and FMA); on a CPU with them the activations each anchor a kernel of
/// their own (their vector intrinsic), four kernels.
#[test]
fn dense_bias_gelu_kernels_per_target() {
    let mut g = Graph::new();
    let mut ps = HashMap::new();
    let x = g.input("x", &[3, 16], DType::F32).unwrap();
    let w = param(&mut g, &mut ps, "w", rnd(&[12, 16], 1));
    let b = param(&mut g, &mut ps, "b", rnd(&[12], 2));
    let h = g.dense("fc", x, w, Some(b)).unwrap();
    let y = g.gelu("gelu", h).unwrap();
    // matmul + broadcast bias + tanh as well
    let w2 = param(&mut g, &mut ps, "w2", rnd(&[12, 8], 3));
    let b2 = param(&mut g, &mut ps, "b2", rnd(&[8], 4));
    let z = g.matmul("mm", y, w2).unwrap();
    let z = g.add("mm_bias", z, b2).unwrap();
    let z = g.tanh("tanh", z).unwrap();
    g.output(z).unwrap();
    let xa = rnd(&[3, 16], 5);
    let avx2 = loopforge::intrinsics::has_avx2_fma();
    assert_eq!(
        compare_passes(&g, &ps, &[("x", &xa)], "dense+bias+gelu, matmul+bias+tanh"),
        if avx2 { 4 } else { 2 }
    );
    let cuda = graph_runtime::build_with(&g, Target::interp(), &ps, 1, ScheduleKind::Cuda).unwrap();
    assert_eq!(cuda.num_kernels(), 2);
    let m = graph_runtime::build(&g, Target::cpu(), &ps, 1).unwrap();
    let ops: Vec<&str> = m.graph().nodes().iter().map(|n| n.op.kind_name()).collect();
    if avx2 {
        assert_eq!(
            ops,
            ["dense", "gelu", "fused", "tanh"],
            "{:#?}",
            m.graph().nodes()
        );
    } else {
        assert_eq!(ops, ["fused", "fused"], "{:#?}", m.graph().nodes());
    }
}

#[test]
fn residual_block_fuses() {
    let mut g = Graph::new();
    let mut ps = HashMap::new();
    let c = 8;
    let x = g.input("x", &[1, c, 8, 8], DType::F32).unwrap();
    let w1 = param(&mut g, &mut ps, "w1", rnd(&[c, c, 3, 3], 1));
    let w2 = param(&mut g, &mut ps, "w2", rnd(&[c, c, 3, 3], 2));
    let a = Conv2dAttrs::same(1, 1);
    let h = g.conv2d("conv1", x, w1, a).unwrap();
    let h = bn(&mut g, &mut ps, "bn1", h, 10);
    let h = g.relu("relu1", h).unwrap();
    let h = g.conv2d("conv2", h, w2, a).unwrap();
    let h = bn(&mut g, &mut ps, "bn2", h, 20);
    let s = g.add("skip", h, x).unwrap();
    let y = g.relu("relu2", s).unwrap();
    g.output(y).unwrap();
    let xa = rnd(&[1, c, 8, 8], 3);
    // conv1+bn1+relu1 and conv2+bn2+skip+relu2: 7 nodes, 2 kernels.
    assert_eq!(g.nodes().len(), 7);
    assert_eq!(compare_passes(&g, &ps, &[("x", &xa)], "residual block"), 2);
    // Fusion alone (batch norms not folded) fuses them as epilogue steps.
    let fuse_only = BuildOptions {
        fuse: true,
        ..BuildOptions::none()
    };
    let m = build(&g, &ps, Target::cpu(), 2, ScheduleKind::Cpu, fuse_only);
    assert_eq!(m.num_kernels(), 2);
    same_as_without_passes(&m, &g, &ps, 2, &xa, "fusion only");
}

#[test]
fn hard_swish_after_a_conv_is_one_kernel_silu_two() {
    // The biased conv's output is read twice, by a chain and by the product that closes it:
    // hard swish's (x * relu6(x + 3) / 6) joins the conv's epilogue; SiLU's (x *
    // sigmoid(x)), whose sigmoid is cheaper in a kernel of its own, does not.
    for hard in [true, false] {
        let mut g = Graph::new();
        let mut ps = HashMap::new();
        let x = g.input("x", &[1, 4, 10, 10], DType::F32).unwrap();
        let w = param(&mut g, &mut ps, "w", rnd(&[8, 4, 3, 3], 1));
        let b = param(&mut g, &mut ps, "b", rnd(&[8, 1, 1], 2));
        let h = g.conv2d("conv", x, w, Conv2dAttrs::same(1, 1)).unwrap();
        let h = g.add("bias", h, b).unwrap();
        let y = if hard {
            let three = NdArray::from_vec(&[1], vec![3.0f32]).unwrap();
            let six = NdArray::from_vec(&[1], vec![6.0f32]).unwrap();
            let three = param(&mut g, &mut ps, "three", three);
            let six = param(&mut g, &mut ps, "six", six);
            let t = g.add("plus3", h, three).unwrap();
            let t = g.relu6("relu6", t).unwrap();
            let t = g.mul("times_x", h, t).unwrap();
            g.div("hswish", t, six).unwrap()
        } else {
            let s = g.sigmoid("sig", h).unwrap();
            g.mul("silu", s, h).unwrap()
        };
        g.output(y).unwrap();
        let xa = rnd(&[1, 4, 10, 10], 3);
        let what = if hard { "conv+hard swish" } else { "conv+silu" };
        let kernels = compare_passes(&g, &ps, &[("x", &xa)], what);
        assert_eq!(kernels, if hard { 1 } else { 2 }, "{}", what);
        let m = build_cpu(&g, &ps, BuildOptions::default());
        let Op::Fused(f) = &m.graph().nodes()[0].op else {
            panic!(
                "{}: the conv is not fused: {:?}",
                what,
                m.graph().nodes()[0].op
            )
        };
        let joins: Vec<_> = f
            .epilogue
            .iter()
            .filter(|s| matches!(s, graph_runtime::EpilogueStep::BinaryEarlier { .. }))
            .collect();
        if hard {
            assert_eq!(
                f.members,
                ["conv", "bias", "plus3", "relu6", "times_x", "hswish"]
            );
            // times_x reads the value after one step (conv, then + bias).
            assert!(
                matches!(
                    joins[..],
                    [graph_runtime::EpilogueStep::BinaryEarlier { at: 1, .. }]
                ),
                "{:?}",
                f.epilogue
            );
        } else {
            assert_eq!(f.members, ["conv", "bias"], "{}", what);
            assert!(joins.is_empty());
        }
    }
}

#[test]
fn diamonds_in_a_row_fuse_one_per_group() {
    // y = y * clip(y, -1, 1), twenty times: one diamond per group (each join repeats the
    // forked value's expression; all twenty in one group took minutes to compile).
    let mut g = Graph::new();
    let x = g.input("x", &[2, 8], DType::F32).unwrap();
    let mut y = g.relu("r", x).unwrap();
    for i in 0..20 {
        let c = g.clip(&format!("c{}", i), y, -1.0, 1.0).unwrap();
        y = g.mul(&format!("m{}", i), y, c).unwrap();
    }
    g.output(y).unwrap();
    let xa = rnd(&[2, 8], 4);
    let t = std::time::Instant::now();
    let kernels = compare_passes(&g, &HashMap::new(), &[("x", &xa)], "twenty diamonds");
    // Groups: relu + the first diamond; then each group anchored at a clip takes its
    // product and the next diamond (9 of them); the last clip and product.
    assert_eq!(kernels, 11);
    assert!(t.elapsed().as_secs() < 120, "{:?}", t.elapsed());
}

#[test]
fn a_fused_step_cannot_read_a_later_value() {
    // A saved file's fused node whose join reads a value the chain has not computed yet.
    let mut g = Graph::new();
    let x = g.input("x", &[2, 8], DType::F32).unwrap();
    let f = graph_runtime::FusedOp {
        anchor: Box::new(Op::Unary(graph_runtime::UnaryOp::Relu)),
        anchor_inputs: 1,
        epilogue: vec![graph_runtime::EpilogueStep::BinaryEarlier {
            op: graph_runtime::BinaryOp::Mul,
            value_left: true,
            at: 1,
        }],
        members: vec!["r".into(), "m".into()],
    };
    let e = g.add_node("m", Op::Fused(f), &[x]).unwrap_err().to_string();
    assert!(
        e.contains("reads the value after step 1, which comes later"),
        "{}",
        e
    );
}

/// A step reading a value the anchor already takes (a conv's own input added back after
/// it, 1x1 and 3x3 on Winograd) reads it where the anchor does: the fused node lists it
/// once.
#[test]
fn an_epilogue_reads_the_anchors_input_once() {
    for k in [1, 3] {
        let mut g = Graph::new();
        let mut ps = HashMap::new();
        let x = g.input("x", &[1, 16, 8, 8], DType::F32).unwrap();
        let w = param(&mut g, &mut ps, "w", rnd(&[16, 16, k, k], 1));
        let h = g.conv2d("conv", x, w, Conv2dAttrs::same(1, k / 2)).unwrap();
        let s = g.add("skip", h, x).unwrap();
        let y = g.relu("relu", s).unwrap();
        let y = g.mul("scale", y, x).unwrap();
        g.output(y).unwrap();
        let xa = rnd(&[1, 16, 8, 8], 2);
        let what = format!("conv {}x{} + x, relu, * x", k, k);
        assert_eq!(compare_passes(&g, &ps, &[("x", &xa)], &what), 1);
        let m = build(
            &g,
            &ps,
            Target::cpu(),
            1,
            ScheduleKind::Cpu,
            BuildOptions::default(),
        );
        let node = &m.graph().nodes()[0];
        let xs = node
            .inputs
            .iter()
            .filter(|&&v| m.graph().value_name(v) == "x")
            .count();
        assert_eq!(xs, 1, "{}: {:#?}", what, node);
    }
}

/// An activation over planes smaller than one 8-lane vector (a squeeze-excitation's gate
/// on `[1, C, 1, 1]`) stays in the convolution's epilogue on every target; over larger
/// ones it anchors its own kernel for the CPU schedules on an AVX2 CPU.
#[test]
fn small_activations_stay_in_the_epilogue() {
    for hw in [1, 4] {
        let mut g = Graph::new();
        let mut ps = HashMap::new();
        let x = g.input("x", &[1, 8, hw, hw], DType::F32).unwrap();
        let w = param(&mut g, &mut ps, "w", rnd(&[16, 8, 1, 1], 1));
        let h = g.conv2d("fc", x, w, Conv2dAttrs::same(1, 0)).unwrap();
        let y = g.sigmoid("gate", h).unwrap();
        g.output(y).unwrap();
        let xa = rnd(&[1, 8, hw, hw], 2);
        let own = hw * hw >= 8 && loopforge::intrinsics::has_avx2_fma();
        assert_eq!(
            compare_passes(&g, &ps, &[("x", &xa)], &format!("conv + sigmoid @{}", hw)),
            if own { 2 } else { 1 }
        );
    }
}

#[test]
fn fusion_stops_at_shared_values_and_outputs() {
    // h is read twice (relu and the add): it ends its group; the relu output is a graph
    // output: it ends its group too. (A plane of 16: the tanh anchors a kernel of its own
    // for the CPU schedules on an AVX2 CPU, its vector intrinsic's.)
    let mut g = Graph::new();
    let x = g.input("x", &[2, 8], DType::F32).unwrap();
    let h = g.sigmoid("h", x).unwrap();
    let r = g.relu("r", h).unwrap();
    let s = g.add("s", r, h).unwrap();
    let t = g.tanh("t", s).unwrap();
    g.output(t).unwrap();
    g.output(r).unwrap();
    let xa = rnd(&[2, 8], 1);
    let ps = HashMap::new();
    let avx2 = loopforge::intrinsics::has_avx2_fma();
    assert_eq!(
        compare_passes(&g, &ps, &[("x", &xa)], "shared values"),
        if avx2 { 4 } else { 3 }
    );
}

// ------------------------------------------------------------ memory planning

fn conv_chain(n: usize) -> (Graph, HashMap<String, NdArray>) {
    let mut g = Graph::new();
    let mut ps = HashMap::new();
    let mut h = g.input("x", &[1, 4, 12, 12], DType::F32).unwrap();
    for i in 0..n {
        let w = param(
            &mut g,
            &mut ps,
            &format!("w{}", i),
            around(&[4, 4, 3, 3], i as u64, 0.3, 0.0),
        );
        h = g
            .conv2d(&format!("conv{}", i), h, w, Conv2dAttrs::same(1, 1))
            .unwrap();
        h = g.relu(&format!("relu{}", i), h).unwrap();
    }
    g.output(h).unwrap();
    (g, ps)
}

#[test]
fn memory_plan_reuses_buffers_in_a_chain() {
    let (g, ps) = conv_chain(6);
    let xa = rnd(&[1, 4, 12, 12], 9);
    let bytes = 4 * 12 * 12 * 4;
    for fuse in [false, true] {
        let opts = BuildOptions {
            fuse,
            ..BuildOptions::none()
        };
        let planned_opts = BuildOptions {
            plan_memory: true,
            ..opts
        };
        let unplanned = build(&g, &ps, Target::cpu(), 2, ScheduleKind::Cpu, opts);
        let planned = build(&g, &ps, Target::cpu(), 2, ScheduleKind::Cpu, planned_opts);
        let intermediates = planned.num_kernels() - 1;
        let (pu, pp) = (unplanned.memory_plan(), planned.memory_plan());
        assert_eq!(pu.unplanned_bytes, intermediates * bytes);
        assert_eq!(pu.planned_bytes, pu.unplanned_bytes);
        assert_eq!(pp.unplanned_bytes, intermediates * bytes);
        // A chain needs two buffers in turn (a node's output never shares with its input).
        assert_eq!(pp.planned_bytes, 2 * bytes, "fuse {}: {:?}", fuse, pp);
        assert_eq!(pp.num_buffers(), 3); // two intermediate, one output
        let a = run(&unplanned, &[("x", &xa)]);
        let b = run(&planned, &[("x", &xa)]);
        assert_eq!(
            a[0].to_vec::<f32>().unwrap(),
            b[0].to_vec::<f32>().unwrap(),
            "planned and unplanned runs differ"
        );
    }
}

#[test]
fn memory_plan_keeps_live_values_apart() {
    // A value read late (the residual x1) must keep its buffer while others come and go.
    let mut g = Graph::new();
    let x = g.input("x", &[4, 16], DType::F32).unwrap();
    let x1 = g.sigmoid("x1", x).unwrap();
    let mut h = x1;
    for i in 0..4 {
        h = g.softmax(&format!("sm{}", i), h, 1).unwrap();
    }
    let y = g.add("y", h, x1).unwrap();
    g.output(y).unwrap();
    let ps = HashMap::new();
    let opts = BuildOptions {
        fuse: false,
        ..BuildOptions::default()
    };
    let planned = build_cpu(&g, &ps, opts);
    let plan = planned.memory_plan();
    let buf = |name: &str| {
        let n = planned
            .graph()
            .nodes()
            .iter()
            .find(|n| n.name == name)
            .unwrap();
        plan.storage_of[n.output.0].unwrap()
    };
    for i in 0..4 {
        assert_ne!(buf("x1"), buf(&format!("sm{}", i)));
    }
    assert_eq!(plan.planned_bytes, 3 * 4 * 16 * 4);
    assert_eq!(plan.unplanned_bytes, 5 * 4 * 16 * 4);
    let xa = rnd(&[4, 16], 1);
    let unplanned = build_cpu(
        &g,
        &ps,
        BuildOptions {
            plan_memory: false,
            ..opts
        },
    );
    assert_eq!(
        run(&planned, &[("x", &xa)])[0].to_vec::<f32>().unwrap(),
        run(&unplanned, &[("x", &xa)])[0].to_vec::<f32>().unwrap()
    );
    // Clobbered intermediates are not handed out as if they were current.
    let mut ex = planned.executor();
    ex.set_input("x", xa).unwrap();
    ex.run().unwrap();
    let sm0 = planned
        .graph()
        .nodes()
        .iter()
        .find(|n| n.name == "sm0")
        .unwrap();
    assert!(ex.value(sm0.output).is_none());
}

// ------------------------------------------------------------ saved models

#[test]
fn saved_model_of_the_passed_graph_round_trips() {
    let mut g = Graph::new();
    let mut ps = HashMap::new();
    let x = g.input("x", &[1, 3, 8, 8], DType::F32).unwrap();
    // 16 output channels: the CPU build stores the weight packed (`OHWI16o`).
    let w = param(&mut g, &mut ps, "w", rnd(&[16, 3, 3, 3], 1));
    let h = g.conv2d("conv", x, w, Conv2dAttrs::same(1, 1)).unwrap();
    let h = bn(&mut g, &mut ps, "bn", h, 10);
    let h = g.relu("relu", h).unwrap();
    let h = g.global_avg_pool("gap", h).unwrap();
    let y = g.flatten("flat", h).unwrap();
    g.output(y).unwrap();
    let xa = rnd(&[1, 3, 8, 8], 2);
    for kind in [ScheduleKind::Cpu, ScheduleKind::Cuda] {
        let target = if kind == ScheduleKind::Cpu {
            Target::cpu()
        } else {
            Target::interp()
        };
        let m = build(&g, &ps, target, 2, kind, BuildOptions::default());
        assert_eq!(m.num_kernels(), 3);
        assert_eq!(
            m.param("conv.w_folded.packed").is_some(),
            kind == ScheduleKind::Cpu,
            "{:?}",
            m.graph().params()
        );
        let bytes = m.to_bytes().unwrap();
        let loaded = CompiledModel::from_bytes(&bytes, "m.lfm").unwrap();
        // The stored graph is the passed one: loading runs no pass and replans the memory.
        assert_eq!(loaded.graph().nodes(), m.graph().nodes());
        assert_eq!(loaded.memory_plan(), m.memory_plan());
        assert_eq!(loaded.options(), m.options());
        assert_eq!(loaded.source_nodes(), g.nodes().len());
        assert_eq!(
            run(&m, &[("x", &xa)])[0].to_vec::<f32>().unwrap(),
            run(&loaded, &[("x", &xa)])[0].to_vec::<f32>().unwrap()
        );
        assert_eq!(loaded.to_bytes().unwrap(), bytes);
    }
}

// ------------------------------------------------------------ ResNet-18

#[test]
fn resnet18_operator_by_operator() {
    let size = 32;
    let (g, ps) = models::resnet18(1, size, 1000, 7).unwrap();
    let xa = rnd(&[1, 3, size, size], 8);
    // The reference: every source node on the interpreter (default schedules, no pass),
    // each from the reference's own inputs.
    let reference = build(
        &g,
        &ps,
        Target::interp(),
        1,
        ScheduleKind::Cpu,
        BuildOptions::none(),
    );
    let mut rex = reference.executor();
    rex.set_input("input", xa.clone()).unwrap();
    rex.run().unwrap();
    // The compiled model: CPU JIT, folding and fusion on; planning off so that every
    // node's value survives the run.
    let keep = BuildOptions {
        plan_memory: false,
        ..BuildOptions::default()
    };
    let m = build(&g, &ps, Target::cpu(), 2, ScheduleKind::Cpu, keep);
    assert_eq!(g.nodes().len(), 69);
    // stem conv (+bias+relu) and max pool; per block conv1 (+bias+relu) and conv2
    // (+bias+residual+relu), plus the three downsample convs (+bias); pool, flatten, fc.
    assert_eq!(
        m.num_kernels(),
        24,
        "{:#?}",
        m.graph()
            .nodes()
            .iter()
            .map(|n| &n.name)
            .collect::<Vec<_>>()
    );
    assert!(!has_batch_norm(&m));
    let mut ex = m.executor();
    ex.set_input("input", xa.clone()).unwrap();
    ex.run().unwrap();
    let mut compared = 0;
    for n in m.graph().nodes() {
        // Nodes named like a source value compute it (folded convs get new names, and
        // are all inside fused groups here).
        let Some(src) = g.nodes().iter().find(|s| s.name == n.name) else {
            panic!("node {} has no source value", n.name);
        };
        let got = ex.value(n.output).unwrap();
        let want = rex.value(src.output).unwrap();
        assert_eq!(got.shape(), want.shape(), "{}", n.name);
        let scale = want.to_f64_vec().iter().fold(1.0f64, |m, v| m.max(v.abs()));
        let diff = got.max_abs_diff(want);
        assert!(
            diff <= 2e-3 * scale,
            "{}: max |diff| {} (largest magnitude {})",
            n.name,
            diff,
            scale
        );
        compared += 1;
    }
    assert_eq!(compared, 24);
    // Memory planning on: the same logits, bit for bit, in fewer bytes.
    let planned = build(
        &g,
        &ps,
        Target::cpu(),
        2,
        ScheduleKind::Cpu,
        BuildOptions::default(),
    );
    let plan = planned.memory_plan();
    assert!(plan.planned_bytes * 2 < plan.unplanned_bytes, "{:?}", plan);
    assert_eq!(
        run(&planned, &[("input", &xa)])[0].to_vec::<f32>().unwrap(),
        ex.get_output(0).unwrap().to_vec::<f32>().unwrap()
    );
}
