//! The `activation_f32` intrinsic (sigmoid, tanh, GELU, erf, exp, SiLU over a tile of rows): generated
//! property tests against its declaration (random tile sizes, row- or column-major reads;
//! the interpreter runs the declaration, the CPU JIT the host function), each code path
//! against f64 references (a SIMD one skipped, saying why, on a CPU without it), and the
//! errors.

mod common;
use common::*;
use loopforge::intrinsics::{activation_f32, activation_f32_eval, Activation, CpuPath};
use loopforge::prelude::*;

fn paths(what: &str) -> Vec<CpuPath> {
    let mut out = vec![CpuPath::Portable];
    for (p, name) in [
        (CpuPath::Avx2Fma, "AVX2+FMA"),
        (CpuPath::Avx512, "AVX-512F"),
    ] {
        match p.check() {
            Ok(()) => out.push(p),
            Err(e) => println!("{}: skipping the {} path: {}", what, name, e),
        }
    }
    out
}

/// Every activation on the AVX-512 path equals the AVX2 path bit for bit: the same
/// operations on wider vectors. Lengths around the 16-lane vectors and the 64-element
/// steps (masked tails), special values. Where the CPU lacks AVX-512,
/// `tests/avx512_emulated.rs` runs it under an emulator.
#[test]
fn avx512_activations_equal_the_avx2_path() {
    if let Err(e) = CpuPath::Avx512.check().and(CpuPath::Avx2Fma.check()) {
        return println!("skipped: {}", e);
    }
    let mut rng = Rng(3);
    for n in [1usize, 15, 16, 17, 63, 64, 65, 200, 1000] {
        let mut xs: Vec<f32> = (0..n).map(|_| rng.f32_in(-12.0, 12.0)).collect();
        for (k, v) in [f32::NAN, 100.0, -100.0, -0.0, 0.5]
            .iter()
            .enumerate()
            .take(n)
        {
            xs[k * n / 5] = *v;
        }
        for f in Activation::ALL {
            let (mut a, mut b) = (vec![0f32; n], vec![0f32; n]);
            activation_f32_eval(f, &xs, &mut a, CpuPath::Avx512).unwrap();
            activation_f32_eval(f, &xs, &mut b, CpuPath::Avx2Fma).unwrap();
            for k in 0..n {
                let same = a[k].to_bits() == b[k].to_bits() || a[k].is_nan() && b[k].is_nan();
                assert!(same, "{}({}): {} vs {}", f.name(), xs[k], a[k], b[k]);
            }
        }
    }
}

/// Units in the last place between two f32 (0 when equal, NaN and NaN included).
fn ulps(a: f32, b: f32) -> u32 {
    if a == b || a.is_nan() && b.is_nan() {
        return 0;
    }
    if a.is_nan() || b.is_nan() || a.is_sign_negative() != b.is_sign_negative() {
        return u32::MAX;
    }
    a.to_bits().abs_diff(b.to_bits())
}

fn erf64(x: f64) -> f64 {
    // Abramowitz and Stegun 7.1.26 is too coarse for a reference: the series below 3,
    // the continued fraction of erfc above (both to f64 precision here).
    let z = x.abs();
    let r = if z < 3.0 {
        let (mut term, mut sum, mut k) = (z, z, 0.0);
        while term.abs() > 1e-17 * sum.abs() {
            k += 1.0;
            term *= -z * z / k;
            sum += term / (2.0 * k + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        let mut f = 0.0;
        for k in (1..60).rev() {
            f = k as f64 / 2.0 / (z + f);
        }
        1.0 - (-z * z).exp() / (z + f) / std::f64::consts::PI.sqrt()
    };
    r.copysign(x)
}

fn reference(f: Activation, x: f64) -> f64 {
    match f {
        Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        Activation::Tanh => x.tanh(),
        Activation::Gelu => 0.5 * x * (1.0 + erf64(x / std::f64::consts::SQRT_2)),
        Activation::Erf => erf64(x),
        Activation::Exp => x.exp(),
        Activation::Silu => x / (1.0 + (-x).exp()),
    }
}

/// Every path against f64: sigmoid and SiLU within 3 ulp where the result is normal, tanh
/// and exp 2, erf 3, GELU
/// within 4 ulp of its value or 2e-7 absolute (where `1 + erf` cancels, below x = -3); the
/// special values.
#[test]
fn activation_code_paths_against_f64() {
    let n = 1 << 18;
    let xs: Vec<f32> = (0..n)
        .map(|i| -30.0 + 60.0 * i as f32 / n as f32)
        .chain([
            0.0, -0.0, 1e-30, -1e-30, 0.625, -0.625, 1.0, -1.0, 95.0, -95.0,
        ])
        .collect();
    for p in paths("activation_f32") {
        for f in Activation::ALL {
            let mut ys = vec![0f32; xs.len()];
            activation_f32_eval(f, &xs, &mut ys, p).unwrap();
            let mut worst = (0u32, 0f32);
            for (&x, &y) in xs.iter().zip(&ys) {
                let want = reference(f, x as f64);
                let w32 = want as f32;
                let u = ulps(y, w32);
                let ok = match f {
                    Activation::Sigmoid | Activation::Silu => {
                        u <= 3 || w32.abs() < f32::MIN_POSITIVE
                    }
                    Activation::Tanh | Activation::Exp => u <= 2,
                    Activation::Erf => u <= 3,
                    Activation::Gelu => u <= 4 || (y as f64 - want).abs() <= 2e-7,
                };
                assert!(
                    ok,
                    "{:?} {}({}) = {}, want {} ({} ulp)",
                    p,
                    f.name(),
                    x,
                    y,
                    w32,
                    u
                );
                if u > worst.0 && w32.abs() >= f32::MIN_POSITIVE && x > -3.0 {
                    worst = (u, x);
                }
            }
            println!(
                "{:?} {}: at most {} ulp (at {})",
                p,
                f.name(),
                worst.0,
                worst.1
            );
        }
        let special = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY];
        let mut out = [0f32; 3];
        activation_f32_eval(Activation::Sigmoid, &special, &mut out, p).unwrap();
        assert!(
            out[0].is_nan() && out[1] == 1.0 && out[2] == 0.0,
            "{:?} {:?}",
            p,
            out
        );
        activation_f32_eval(Activation::Tanh, &special, &mut out, p).unwrap();
        assert!(
            out[0].is_nan() && out[1] == 1.0 && out[2] == -1.0,
            "{:?} {:?}",
            p,
            out
        );
        activation_f32_eval(Activation::Gelu, &special, &mut out, p).unwrap();
        assert!(
            out[0].is_nan() && out[1] == f32::INFINITY,
            "{:?} {:?}",
            p,
            out
        );
        // tanh is odd bit for bit, -0 included.
        let mut t = [0f32; 2];
        activation_f32_eval(Activation::Tanh, &[-0.0, -0.3], &mut t, p).unwrap();
        assert!(
            t[0] == 0.0 && t[0].is_sign_negative(),
            "{:?} tanh(-0) = {}",
            p,
            t[0]
        );
        let mut u = [0f32];
        activation_f32_eval(Activation::Tanh, &[0.3], &mut u, p).unwrap();
        assert_eq!(t[1], -u[0], "{:?}", p);
    }
}

/// `Y[i, j] = f(X[.., ..])` with `X` read along its rows or its columns (a strided view),
/// tensorized at `i` by `activation_f32(f, rows, cols)` over random tile sizes: the CPU
/// JIT's host function against the interpreter running the declaration.
#[test]
fn activations_against_their_declarations() {
    let mut rng = Rng(7);
    for case in 0..20u64 {
        let f = Activation::ALL[case as usize % Activation::ALL.len()];
        let rows = 1 + rng.below(4) as i64;
        let n = 1 + rng.below(40) as i64;
        let cols = rng.below(2) == 0;
        let (x, y) = elementwise_tile(rows, n, cols, |v| f.expr(v));
        let args = [x.clone(), y.clone()];
        let mut s = create_schedule(&[y.clone()]).unwrap();
        let [i, _] = s.axes2(&y).unwrap();
        s.tensorize(&y, &i, &activation_f32(f, rows, n).unwrap())
            .unwrap();
        let text = lower(&s, &args).unwrap().to_string();
        assert!(
            text.contains(&format!("{}_f32_{}x{}(", f.name(), rows, n)),
            "{}",
            text
        );
        let xs: Vec<f32> = (0..rows * n).map(|_| rng.f32_in(-9.0, 9.0)).collect();
        let xa = NdArray::from_slice(&const_shape(&x), &xs).unwrap();
        let shape = [rows as usize, n as usize];
        let mut outs = vec![];
        for t in [Target::interp(), Target::cpu()] {
            let k = build(&s, &args, t).unwrap();
            let mut ya = NdArray::zeros(&shape, DType::F32);
            k.run(&[&xa], &mut [&mut ya]).unwrap();
            outs.push(ya.as_slice::<f32>().unwrap().to_vec());
        }
        for (e, (a, b)) in outs[0].iter().zip(&outs[1]).enumerate() {
            assert!(
                ulps(*a, *b) <= 4 || (a - b).abs() <= 2e-7,
                "case {} ({}) element {}: declaration {} vs host function {}",
                case,
                f.name(),
                e,
                a,
                b
            );
        }
    }
}

/// Trace replay (a saved model's schedules) finds the intrinsic by its name.
#[test]
fn activation_intrinsics_are_found_by_name() {
    for (i, f) in Activation::ALL.into_iter().enumerate() {
        assert_eq!(f as usize, i, "ALL lists {:?} out of declaration order", f);
        let name = format!("{}_f32_3x17", f.name());
        let i = loopforge::intrinsics::lookup(&name).expect(&name);
        assert_eq!(i.name, name);
        assert_eq!(i.extents(), vec![3, 17]);
    }
    assert!(loopforge::intrinsics::lookup("tanh_f32_3").is_none());
    assert!(loopforge::intrinsics::lookup("tanh_f32_0x4").is_none());
    // exp_f32's own names keep their meaning.
    assert_eq!(
        loopforge::intrinsics::lookup("exp_f32_12")
            .unwrap()
            .extents(),
        vec![12]
    );
}

#[test]
fn activation_errors() {
    let e = activation_f32(Activation::Tanh, 0, 4).unwrap_err();
    assert!(matches!(e, Error::InvalidExpr(_)), "{:?}", e);
    assert!(e.to_string().contains("at least one row"), "{}", e);
    let e = activation_f32_eval(
        Activation::Sigmoid,
        &[1.0; 4],
        &mut [0.0; 3],
        CpuPath::Portable,
    )
    .unwrap_err();
    assert!(e.to_string().contains("x has 4 elements, y 3"), "{}", e);
    if CpuPath::Avx2Fma.check().is_err() {
        let e = activation_f32_eval(Activation::Gelu, &[1.0], &mut [0.0], CpuPath::Avx2Fma)
            .unwrap_err();
        assert!(
            matches!(e, Error::Target(_)) && e.to_string().contains("AVX2"),
            "{}",
            e
        );
    }
    // A stage that computes something else is a tensorize error naming both sides.
    let x = placeholder(&[2.into(), 8.into()], DType::F32, "X");
    let y = compute(&[2.into(), 8.into()], "Y", |i| {
        Activation::Sigmoid.expr(x.at(&[i[0].clone(), i[1].clone()]))
    });
    let mut s = create_schedule(&[y.clone()]).unwrap();
    let [i, _] = s.axes2(&y).unwrap();
    let e = s
        .tensorize(&y, &i, &activation_f32(Activation::Tanh, 2, 8).unwrap())
        .and_then(|_| lower(&s, &[x.clone(), y.clone()]).map(|_| ()))
        .unwrap_err();
    assert!(e.to_string().contains("tanh"), "{}", e);
}

/// An activation kernel's elements weigh more than a plain elementwise one's in the graph
/// runtime's choice of threads: a sigmoid over EfficientNet-B0's 7 x 7 x 1152 runs on the
/// threads asked for, a ReLU of the same size (or a sigmoid of a squeeze-excitation's
/// 1152 values) on one.
#[test]
fn activations_weigh_more_in_the_choice_of_threads() {
    use loopforge::graph_runtime::schedule::effective_threads;
    let kernel = |shape: &[i64], f: Option<Activation>| {
        let dims: Vec<Expr> = shape.iter().map(|&d| d.into()).collect();
        let x = placeholder(&dims, DType::F32, "x");
        compute(&dims, "y", |i| match f {
            Some(f) => f.expr(x.at(i)),
            None => max(x.at(i), Expr::from(0.0f32)),
        })
    };
    let big = [1, 1152, 7, 7];
    assert_eq!(
        effective_threads(&kernel(&big, Some(Activation::Sigmoid)), 2),
        2
    );
    assert_eq!(
        effective_threads(&kernel(&big, Some(Activation::Gelu)), 2),
        2
    );
    assert_eq!(effective_threads(&kernel(&big, None), 2), 1);
    assert_eq!(
        effective_threads(&kernel(&[1, 1152, 1, 1], Some(Activation::Sigmoid)), 2),
        1
    );
}
