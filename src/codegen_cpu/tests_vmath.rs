//! The inline `exp`, `sigmoid`, `tanh` and `erf` of f32 (`vmath.rs`) against f64 references,
//! over a dense sweep and the special values, as vector (4 lanes) and scalar code.

use super::tests::{buf, f32s, func, iv, load, loop_, run, store};
use crate::intrinsics::{activation_f32_eval, exp_f32_eval, has_avx2_fma, Activation, CpuPath};
use crate::lower::ir::Stmt;
use crate::te::{DType, Expr, ExprNode, MathFn};

/// Distance in units in the last place between two f32 of the same sign (0 for equal
/// values, NaN to NaN included).
fn ulps(a: f32, b: f32) -> u32 {
    if a.is_nan() && b.is_nan() || a == b {
        return 0;
    }
    if a.is_nan() || b.is_nan() || a.is_sign_negative() != b.is_sign_negative() {
        return u32::MAX;
    }
    a.to_bits().abs_diff(b.to_bits())
}

/// Whether the generated code fuses multiply-adds on this host (the JIT's own decision).
fn fma_on() -> bool {
    super::jit::host_isa()
        .map(|isa| super::jit::contracts_fma(&*isa))
        .unwrap_or(false)
}

/// Whether the functions are computed inline on this host (native rounding; else the
/// Rust helpers, libm's results).
fn inline_on() -> bool {
    super::jit::host_isa()
        .map(|isa| isa.has_round())
        .unwrap_or(false)
}

/// `f` applied to `xs` by a generated kernel: four lanes at a time (`lanes` 4) or one.
fn kernel(f: MathFn, xs: &[f32], lanes: u32) -> Vec<f32> {
    kernel_of(|v| Expr::new(ExprNode::Call(f, vec![v])), xs, lanes)
}

/// `body(x[i])` stored for every element of `xs` by a generated kernel, `lanes` at a time.
fn kernel_of(body: impl Fn(Expr) -> Expr, xs: &[f32], lanes: u32) -> Vec<f32> {
    assert_eq!(xs.len() % 4, 0);
    let n = xs.len();
    let x = buf("x", DType::F32, n as i64);
    let o = buf("o", DType::F32, n as i64);
    let i = iv("i");
    let idx = if lanes == 4 {
        Expr::new(ExprNode::Ramp(i.expr() * 4, 1, 4))
    } else {
        i.expr()
    };
    let call = body(load(&x, idx.clone()));
    let body: Stmt = store(&o, idx, call);
    let fun = func(&[&x, &o], &[], loop_(&i, (n / lanes as usize) as i64, body));
    let (mut xa, mut oa) = (f32s(xs), f32s(&vec![0.0; n]));
    run(&fun, &mut [&mut xa, &mut oa], &[]);
    oa.to_vec::<f32>().unwrap()
}

/// A dense sweep of `[lo, hi]` (`n` points, a multiple of 4) and the special values.
fn inputs(lo: f32, hi: f32, n: usize) -> Vec<f32> {
    let mut xs: Vec<f32> = (0..n)
        .map(|k| lo + (hi - lo) * k as f32 / (n - 1) as f32)
        .collect();
    xs.extend([
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        0.0,
        -0.0,
        1e-30,
        -1e-30,
        88.72283,
        88.72284,
        89.0,
        -87.33655,
        -103.97,
        -104.0,
        -120.0,
        0.625,
        -0.625,
        0.624_999_94,
        f32::MAX,
        f32::MIN,
        f32::MIN_POSITIVE,
    ]);
    while !xs.len().is_multiple_of(4) {
        xs.push(1.0);
    }
    xs
}

/// The largest distance from the f64 reference rounded to f32, after checking that the
/// vector and scalar kernels agree bit for bit and that NaN gives NaN.
fn worst(f: MathFn, xs: &[f32], reference: impl Fn(f64) -> f64) -> u32 {
    let vector = kernel(f, xs, 4);
    let scalar = kernel(f, xs, 1);
    let mut worst = 0;
    for ((&x, &v), &s) in xs.iter().zip(&vector).zip(&scalar) {
        assert!(
            v.to_bits() == s.to_bits() || v.is_nan() && s.is_nan(),
            "{}({}): vector {} scalar {}",
            f.name(),
            x,
            v,
            s
        );
        let want = reference(x as f64) as f32;
        assert_eq!(want.is_nan(), v.is_nan(), "{}({}) = {}", f.name(), x, v);
        let d = ulps(v, want);
        assert!(
            d <= 4,
            "{}({}) = {}, want {} ({} ulp)",
            f.name(),
            x,
            v,
            want,
            d
        );
        worst = worst.max(d);
    }
    eprintln!(
        "{}: at most {} ulp over {} inputs",
        f.name(),
        worst,
        xs.len()
    );
    worst
}

#[test]
fn exp_is_within_one_ulp_and_matches_the_intrinsic() {
    let xs = inputs(-110.0, 95.0, 1 << 20);
    assert!(worst(MathFn::Exp, &xs, f64::exp) <= 1);
    let special = kernel(
        MathFn::Exp,
        &[f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0],
        4,
    );
    assert_eq!(special, vec![f32::INFINITY, 0.0, 1.0, 1.0]);
    if !inline_on() {
        eprintln!("skipped the comparison with exp_f32: no SSE4.1, exp calls the helper");
        return;
    }
    // The intrinsic's operations in its order: its AVX2 path with native FMA, its
    // portable one without.
    let path = match (fma_on(), has_avx2_fma()) {
        (false, _) => CpuPath::Portable,
        (true, true) => CpuPath::Avx2Fma,
        (true, false) => {
            eprintln!("skipped the comparison with exp_f32: FMA without AVX2 here");
            return;
        }
    };
    let got = kernel(MathFn::Exp, &xs, 4);
    let mut want = vec![0.0f32; xs.len()];
    exp_f32_eval(&xs, 1, &mut want, 1, xs.len(), path).unwrap();
    for ((x, g), w) in xs.iter().zip(&got).zip(&want) {
        assert!(
            g.to_bits() == w.to_bits() || g.is_nan() && w.is_nan(),
            "exp({}): generated {} intrinsic ({:?}) {}",
            x,
            g,
            path,
            w
        );
    }
}

#[test]
fn sigmoid_and_tanh_are_within_a_few_ulp() {
    let xs = inputs(-40.0, 40.0, 1 << 20);
    let sigmoid = worst(MathFn::Sigmoid, &xs, |x| 1.0 / (1.0 + (-x).exp()));
    assert!(sigmoid <= 2, "sigmoid: {} ulp", sigmoid);
    let tanh = worst(MathFn::Tanh, &xs, f64::tanh);
    // 1 ulp inline; the libm helper's tanhf, where the inline path is off, reaches 2.
    let bound = if inline_on() { 1 } else { 2 };
    assert!(tanh <= bound, "tanh: {} ulp", tanh);
    // Small arguments, where a difference of exponentials would cancel.
    let small = inputs(-1e-3, 1e-3, 1 << 16);
    assert!(worst(MathFn::Tanh, &small, f64::tanh) <= 1);
    let t = kernel(
        MathFn::Tanh,
        &[-0.0, f32::INFINITY, f32::NEG_INFINITY, 50.0],
        4,
    );
    assert_eq!(t[0].to_bits(), (-0.0f32).to_bits());
    assert_eq!(&t[1..], &[1.0, -1.0, 1.0]);
    let s = kernel(
        MathFn::Sigmoid,
        &[f32::INFINITY, f32::NEG_INFINITY, -200.0, 0.0],
        4,
    );
    assert_eq!(s, vec![1.0, 0.0, 0.0, 0.5]);
}

#[test]
fn erf_is_within_two_ulp() {
    // Both forms and their boundary at 1, the tail where erf rounds to 1, tiny arguments;
    // 2 ulp with FMA, 3 without (the small arguments' polynomial unfused).
    let bound = if fma_on() { 2 } else { 3 };
    let xs = inputs(-6.0, 6.0, 1 << 20);
    let e = worst(MathFn::Erf, &xs, libm::erf);
    assert!(e <= bound, "erf: {} ulp", e);
    let near_one = inputs(0.99, 1.01, 1 << 16);
    assert!(worst(MathFn::Erf, &near_one, libm::erf) <= bound);
    let tiny = inputs(-1e-3, 1e-3, 1 << 16);
    assert!(worst(MathFn::Erf, &tiny, libm::erf) <= bound);
    let t = kernel(
        MathFn::Erf,
        &[-0.0, f32::INFINITY, f32::NEG_INFINITY, -10.0],
        4,
    );
    assert_eq!(t[0].to_bits(), (-0.0f32).to_bits());
    assert_eq!(&t[1..], &[1.0, -1.0, -1.0]);
    // NaN keeps its bits (a positive NaN stays positive).
    let nan = f32::from_bits(0x7fc0_1234);
    let n = kernel(MathFn::Erf, &[nan, -nan, 0.5, 2.0], 4);
    assert_eq!(n[0].to_bits(), nan.to_bits());
    assert_eq!(n[1].to_bits(), (-nan).to_bits());
}

/// The `activation_f32` intrinsic's host function computes what the generated code does
/// for the same expression, bit for bit: its AVX2 path where the JIT fuses multiply-adds,
/// its portable one where it does not (the same operations in the same order).
#[test]
fn activation_intrinsic_matches_the_generated_code() {
    if !inline_on() {
        eprintln!("skipped: no SSE4.1, the generated code calls the helpers");
        return;
    }
    let path = match (fma_on(), has_avx2_fma()) {
        (false, _) => CpuPath::Portable,
        (true, true) => CpuPath::Avx2Fma,
        (true, false) => {
            eprintln!("skipped: FMA without AVX2 here");
            return;
        }
    };
    let mut xs = inputs(-12.0, 12.0, 1 << 18);
    xs.extend(inputs(-100.0, 100.0, 1 << 12));
    for f in Activation::ALL {
        let got = kernel_of(|v| f.expr(v), &xs, 4);
        let mut want = vec![0.0f32; xs.len()];
        activation_f32_eval(f, &xs, &mut want, path).unwrap();
        for ((x, g), w) in xs.iter().zip(&got).zip(&want) {
            assert!(
                g.to_bits() == w.to_bits() || g.is_nan() && w.is_nan(),
                "{}({}): generated {} intrinsic ({:?}) {}",
                f.name(),
                x,
                g,
                path,
                w
            );
        }
    }
}
