//! The AVX2+FMA register-tile kernels on CPUs that also have AVX-512 (where the host
//! functions would otherwise always take the AVX-512 ones): this binary holds one test,
//! which sets `LOOPFORGE_NO_AVX512` before anything reads it, then checks
//! `gemm_f32_panels` (whole 6 x 16 tiles straight to the 6-row kernel, partial ones and
//! other panel sizes through the dispatch), `gemm_f32` and `gemm_f32_k3` calls that
//! update `C` against the interpreter running their declarations. On a CPU without
//! AVX2 and FMA it says so and checks the portable path instead.

mod common;
use common::*;
use loopforge::graph_runtime::ops::conv2d;
use loopforge::graph_runtime::Conv2dAttrs;
use loopforge::intrinsics::{self, CpuPath};
use loopforge::prelude::*;
use loopforge::schedules;

#[test]
fn avx2_kernels_against_their_declarations() {
    // Safe in edition 2021; the only test of this process, so nothing reads it first.
    std::env::set_var("LOOPFORGE_NO_AVX512", "1");
    assert!(!intrinsics::has_avx512f());
    if CpuPath::best() != CpuPath::Avx2Fma {
        eprintln!("this CPU lacks AVX2 or FMA: the portable path is checked instead");
    }
    let mut case = 0;
    for (m, n, k, blocks) in [
        (30, 64, 24, [6, 16, 12, 32, 8]),
        (23, 40, 17, [6, 16, 18, 32, 17]),
        (13, 48, 9, [4, 16, 8, 16, 3]),
        (25, 96, 10, [12, 32, 24, 64, 5]),
    ] {
        case += 1;
        let (a, b, c) = matmul(m, n, k);
        let args = [a.clone(), b.clone(), c.clone()];
        let s = panels_by_hand(&c, &a, &b, blocks);
        let what = format!("gemm_f32_panels {}x{}x{}, {:?}", m, n, k, blocks);
        let want = run_all(&s, &args, Target::interp(), case);
        let got = run_all(&s, &args, Target::cpu(), case);
        assert_outputs_close(&args, &got, &want, &what);
        check_against_unscheduled(&s, &args, &[c.clone()], case, &what);
    }
    // The library schedules that call `gemm_f32` per tile and `gemm_f32_k3` per window,
    // their later reduction slices updating `C`.
    let (a, b, c) = matmul(20, 48, 40);
    let args = [a, b, c.clone()];
    let mut s = create_schedule(&[c.clone()]).unwrap();
    let [i, j] = s.axes2(&c).unwrap();
    let kx = s.reduce_axes(&c).unwrap().remove(0);
    let (io, ii) = s.split(&c, &i, 6).unwrap();
    let (jo, ji) = s.split(&c, &j, 16).unwrap();
    let (ko, ki) = s.split(&c, &kx, 8).unwrap();
    s.reorder(&c, &[&io, &jo, &ko, &ii, &ji, &ki]).unwrap();
    s.tensorize(&c, &ii, &intrinsics::gemm_f32(6, 16, 8).unwrap())
        .unwrap();
    check_against_unscheduled(&s, &args, &[c.clone()], 5, "gemm_f32 tiles, 5 slices");
    let (xs, ws) = ([1, 32, 14, 14], [32, 32, 3, 3]);
    let x = placeholder(
        &[1.into(), 32.into(), 14.into(), 14.into()],
        DType::F32,
        "x",
    );
    let w = placeholder(&[32.into(), 32.into(), 3.into(), 3.into()], DType::F32, "w");
    let y = conv2d(&x, &w, &xs, &ws, &Conv2dAttrs::same(1, 1), &[1, 32, 14, 14]);
    let cfg = schedules::ConvConfig {
        kc: 16,
        kernel: schedules::ConvKernel::AllTaps,
        ..schedules::ConvConfig::for_shape(&schedules::ConvShape::of(&y).unwrap(), 1)
    };
    let s = schedules::conv2d_nchw_cpu_tensorized_with(&y, cfg).unwrap();
    check_against_unscheduled(
        &s,
        &[x, w, y.clone()],
        &[y],
        6,
        "gemm_f32_k3, 2 channel slices",
    );
}
