//! The reduction intrinsics (`dot_f32`, `reduce_sum_f32`, `reduce_max_f32`) and the
//! vectorized `exp_f32` and `exp_sub_f32`:
//! generated property tests against each one's declaration (random sizes, strides and
//! inputs; the interpreter runs the declaration, the CPU JIT the host function), each code
//! path of each host function directly (a SIMD one skipped, saying why, on a CPU without
//! it; the AVX-512 ones also run under an emulator in `tests/avx512_emulated.rs`), the accuracy of `exp_f32` against `f64::exp`, the tensorized softmax
//! schedule, and the errors.

mod common;
use common::*;
use loopforge::intrinsics::{
    dot_f32, dot_f32_eval, exp_f32, exp_f32_eval, exp_sub_f32, exp_sub_f32_eval, reduce_max_f32,
    reduce_max_f32_eval, reduce_sum_f32, reduce_sum_f32_eval, CpuPath,
};
use loopforge::prelude::*;
use loopforge::schedules::{softmax_rows, softmax_rows_tensorized};

/// The code paths to test here; prints why a SIMD one is skipped where it is (the
/// AVX-512 paths are also tested under an emulator: `tests/avx512_emulated.rs`).
fn paths(what: &str) -> Vec<CpuPath> {
    let mut out = vec![];
    for (path, name) in [
        (CpuPath::Avx512, "AVX-512F"),
        (CpuPath::Avx2Fma, "AVX2+FMA"),
    ] {
        match path.check() {
            Ok(()) => out.push(path),
            Err(e) => println!("{}: skipping the {} path: {}", what, name, e),
        }
    }
    out.push(CpuPath::Portable);
    out
}

fn targets() -> [Target; 2] {
    [Target::interp(), Target::cpu()]
}

/// `C[i] = sum_k X[.., ..] (* Y[.., ..])`, or `max_k X[.., ..]`, where each operand is
/// read along its rows (unit stride) or its columns (stride = the row length),
/// tensorized at `k` (whole reduction, mode compute) or at `k.inner` (calls accumulate,
/// or take the maximum, after an init call).
#[test]
fn dot_sum_and_max_against_their_declarations() {
    let mut rng = Rng(17);
    for case in 0..36u64 {
        let rows = 1 + rng.below(4) as i64;
        let n = 1 + rng.below(70) as i64;
        let dot = case % 3 == 0;
        let max = case % 3 == 2;
        let x_cols = rng.below(2) == 0;
        let y_cols = rng.below(2) == 0;
        let split = rng.below(3) == 0 && n % 2 == 0;
        let operand = |name: &str, cols: bool| {
            if cols {
                placeholder(&[n.into(), rows.into()], DType::F32, name)
            } else {
                placeholder(&[rows.into(), n.into()], DType::F32, name)
            }
        };
        let at = |t: &Tensor, cols: bool, i: &Expr, k: &Expr| {
            if cols {
                t.at(&[k.clone(), i.clone()])
            } else {
                t.at(&[i.clone(), k.clone()])
            }
        };
        let x = operand("X", x_cols);
        let y = operand("Y", y_cols);
        let k = reduce_axis(0, n, "k");
        let c = compute(&[rows.into()], "C", |i| {
            let v = at(&x, x_cols, &i[0], &k.x());
            if dot {
                sum(v * at(&y, y_cols, &i[0], &k.x()), &[k.clone()])
            } else if max {
                max_reduce(v, &[k.clone()])
            } else {
                sum(v, &[k.clone()])
            }
        });
        let args: Vec<Tensor> = if dot {
            vec![x.clone(), y.clone(), c.clone()]
        } else {
            vec![x.clone(), c.clone()]
        };
        let mut s = create_schedule(&[c.clone()]).unwrap();
        let kx = s.reduce_axes(&c).unwrap().remove(0);
        let (at_axis, len) = if split {
            let (_, ki) = s.split(&c, &kx, n / 2).unwrap();
            (ki, n / 2)
        } else {
            (kx, n)
        };
        let intrin = if dot {
            dot_f32(len).unwrap()
        } else if max {
            reduce_max_f32(len).unwrap()
        } else {
            reduce_sum_f32(len).unwrap()
        };
        s.tensorize(&c, &at_axis, &intrin).unwrap();
        let text = lower(&s, &args).unwrap().to_string();
        let mode = if split { ".update" } else { "" };
        assert!(
            text.contains(&format!("{}{}(", intrin.name, mode)),
            "case {}: no {} call in\n{}",
            case,
            mode,
            text
        );
        let want = run_all(
            &create_schedule(&[c.clone()]).unwrap(),
            &args,
            Target::interp(),
            case,
        );
        for t in targets() {
            let got = run_all(&s, &args, t.clone(), case);
            assert_outputs_close(
                &args,
                &got,
                &want,
                &format!(
                    "case {} ({} n={} rows={} x_cols={} y_cols={} split={}) on {:?}",
                    case, intrin.name, n, rows, x_cols, y_cols, split, t
                ),
            );
        }
        let replayed = Schedule::replay(&[c.clone()], &s.trace_json()).unwrap();
        assert_eq!(lower(&replayed, &args).unwrap().to_string(), text);
    }
}

#[test]
fn dot_sum_and_max_code_paths() {
    let mut rng = Rng(5);
    for p in paths("dot_f32/reduce_sum_f32/reduce_max_f32") {
        for _ in 0..200 {
            let n = rng.below(300) as usize;
            let (sa, sb) = (1 + rng.below(3) as usize, 1 + rng.below(3) as usize);
            let a: Vec<f32> = (0..n.max(1) * sa).map(|_| rng.f32_in(-1.0, 1.0)).collect();
            let b: Vec<f32> = (0..n.max(1) * sb).map(|_| rng.f32_in(-1.0, 1.0)).collect();
            let want_dot: f64 = (0..n).map(|k| a[k * sa] as f64 * b[k * sb] as f64).sum();
            let want_sum: f64 = (0..n).map(|k| a[k * sa] as f64).sum();
            let got_dot = dot_f32_eval(&a, sa, &b, sb, n, p).unwrap() as f64;
            let got_sum = reduce_sum_f32_eval(&a, sa, n, p).unwrap() as f64;
            // The maximum is exact (-inf of nothing).
            let want_max = (0..n).map(|k| a[k * sa]).fold(f32::NEG_INFINITY, f32::max);
            let got_max = reduce_max_f32_eval(&a, sa, n, p).unwrap();
            assert_eq!(got_max, want_max, "{:?} max n={} sa={}", p, n, sa);
            let tol = 1e-5 * (n as f64 + 1.0);
            assert!(
                (got_dot - want_dot).abs() <= tol,
                "{:?} dot n={} sa={} sb={}: {} vs {}",
                p,
                n,
                sa,
                sb,
                got_dot,
                want_dot
            );
            assert!(
                (got_sum - want_sum).abs() <= tol,
                "{:?} sum n={} sa={}: {} vs {}",
                p,
                n,
                sa,
                got_sum,
                want_sum
            );
        }
    }
    // The maximum propagates NaN wherever it is (the vector paths track it apart from
    // their running maxima), and ignores the tail's padding (-inf lanes).
    for p in paths("reduce_max_f32 NaN") {
        for n in [1usize, 7, 8, 15, 16, 17, 31, 64, 65, 100, 130] {
            for at in [0, n / 2, n - 1] {
                let mut a: Vec<f32> = (0..n).map(|k| -1000.0 - k as f32).collect();
                assert_eq!(reduce_max_f32_eval(&a, 1, n, p).unwrap(), -1000.0);
                a[at] = f32::NAN;
                let m = reduce_max_f32_eval(&a, 1, n, p).unwrap();
                assert!(m.is_nan(), "{:?} n={} NaN at {}: {}", p, n, at, m);
            }
        }
    }
    // Views that do not fit are errors, not reads past the end.
    assert!(dot_f32_eval(&[1.0; 4], 2, &[1.0; 4], 1, 3, CpuPath::Portable).is_err());
    assert!(reduce_sum_f32_eval(&[1.0; 4], 0, 2, CpuPath::Portable).is_err());
    assert!(reduce_max_f32_eval(&[1.0; 4], 2, 3, CpuPath::Portable).is_err());
    // A stride whose extent overflows is an error too, not a wrapped check.
    let huge = 1usize << 63;
    assert!(reduce_max_f32_eval(&[1.0; 4], huge, 3, CpuPath::Portable).is_err());
    assert!(dot_f32_eval(&[1.0; 4], 1, &[1.0; 4], huge, 3, CpuPath::Portable).is_err());
    let e = exp_f32_eval(&[1.0; 4], huge, &mut [0.0; 4], 1, 3, CpuPath::Portable).unwrap_err();
    assert!(e.to_string().contains("exp_f32_eval: x"), "{}", e);
}

/// Distance in units in the last place between two finite f32 of the same sign (or zero).
fn ulps(a: f32, b: f32) -> u64 {
    let key = |x: f32| {
        let i = x.to_bits() as i64;
        if i < 0 {
            -(i & 0x7fff_ffff)
        } else {
            i
        }
    };
    (key(a) - key(b)).unsigned_abs()
}

/// `exp_f32` on both code paths, against `f64::exp` rounded to f32: at most 1 ulp over
/// about a million points spread over `[-104, 89]` (normal and subnormal results); the
/// special cases exact.
#[test]
fn exp_accuracy_against_f64() {
    let lo = -104.0f32;
    let hi = 89.0f32;
    let n = 1 << 20;
    let xs: Vec<f32> = (0..n)
        .map(|i| lo + (hi - lo) * (i as f32 / n as f32))
        .chain([
            0.0, -0.0, 1.0, -1.0, 1e-8, -1e-8, 88.72, -87.33, -87.5, -100.0, -103.9,
        ])
        .collect();
    for p in paths("exp_f32") {
        let mut ys = vec![0f32; xs.len()];
        exp_f32_eval(&xs, 1, &mut ys, 1, xs.len(), p).unwrap();
        let (mut max_ulp, mut max_rel, mut worst) = (0u64, 0f64, 0f32);
        for (&x, &y) in xs.iter().zip(&ys) {
            let want = (x as f64).exp();
            let w32 = want as f32;
            if w32.is_infinite() {
                assert!(
                    y.is_infinite() && y > 0.0,
                    "{:?}: exp({}) = {}, want inf",
                    p,
                    x,
                    y
                );
                continue;
            }
            let u = ulps(y, w32);
            if u > max_ulp {
                max_ulp = u;
                worst = x;
            }
            if w32 >= f32::MIN_POSITIVE {
                max_rel = max_rel.max(((y as f64) - want).abs() / want);
            }
        }
        println!(
            "exp_f32 {:?}: max error {} ulp (at x = {}), max relative error {:.3e} for normal results, over {} points of [{}, {}]",
            p,
            max_ulp,
            worst,
            max_rel,
            xs.len(),
            lo,
            hi
        );
        assert!(max_ulp <= 1, "{:?}: {} ulp at {}", p, max_ulp, worst);
        assert!(max_rel < 1e-7, "{:?}: relative error {}", p, max_rel);

        let special = [
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            89.0,
            88.73,
            1000.0,
            -104.0,
            -1000.0,
            0.0,
        ];
        let mut out = [0f32; 9];
        exp_f32_eval(&special, 1, &mut out, 1, 9, p).unwrap();
        assert_eq!(out[0], f32::INFINITY, "{:?} exp(inf)", p);
        assert_eq!(out[1], 0.0, "{:?} exp(-inf)", p);
        assert!(out[2].is_nan(), "{:?} exp(NaN) = {}", p, out[2]);
        assert_eq!(out[3], f32::INFINITY, "{:?} exp(89) overflows", p);
        assert_eq!(out[4], f32::INFINITY, "{:?} exp(88.73) overflows", p);
        assert_eq!(out[5], f32::INFINITY, "{:?} exp(1000)", p);
        assert_eq!(out[6], 0.0, "{:?} exp(-104) underflows", p);
        assert_eq!(out[7], 0.0, "{:?} exp(-1000)", p);
        assert_eq!(out[8], 1.0, "{:?} exp(0)", p);
        // exp(88.72) is finite, just below FLT_MAX: no spurious overflow.
        let mut one = [0f32];
        exp_f32_eval(&[88.72], 1, &mut one, 1, 1, p).unwrap();
        assert!(
            one[0].is_finite() && one[0] > 3.3e38,
            "{:?} exp(88.72) = {}",
            p,
            one[0]
        );
    }
    // Strided views take the same path element by element.
    for p in paths("exp_f32 strided") {
        let x: Vec<f32> = (0..60).map(|i| i as f32 * 0.37 - 11.0).collect();
        let mut y = vec![-1f32; 90];
        exp_f32_eval(&x, 3, &mut y, 3, 20, p).unwrap();
        for i in 0..20 {
            assert!(ulps(y[3 * i], (x[3 * i] as f64).exp() as f32) <= 1);
            assert_eq!(
                y[3 * i + 1],
                -1.0,
                "{:?}: wrote between the strided elements",
                p
            );
        }
    }
    assert!(exp_f32_eval(&[1.0; 4], 1, &mut [0.0; 2], 1, 3, CpuPath::Portable).is_err());
    // A SIMD path this CPU lacks is a typed error naming the feature.
    for (path, feature) in [(CpuPath::Avx512, "AVX-512F"), (CpuPath::Avx2Fma, "AVX2")] {
        if path.check().is_err() {
            let e = exp_f32_eval(&[1.0; 4], 1, &mut [0.0; 4], 1, 4, path).unwrap_err();
            assert!(matches!(e, Error::Target(_)), "{:?}", e);
            assert!(e.to_string().contains(feature), "{}", e);
            let e = dot_f32_eval(&[1.0; 4], 1, &[1.0; 4], 1, 4, path).unwrap_err();
            assert!(e.to_string().contains(feature), "{}", e);
        }
    }
}

/// The AVX-512 and AVX2 paths of `exp_f32` give the same bits (the AVX-512 one scales by
/// `2^n` in one `vscalefps`, the AVX2 one by two exponent-bit multiplications: the same
/// single rounding) over every 61st f32 bit pattern, NaNs, infinities, subnormals and
/// both sides of the overflow and underflow thresholds included.
#[test]
fn exp_avx512_and_avx2_paths_agree_bit_for_bit() {
    let ps = paths("exp_f32 bit for bit");
    if !(ps.contains(&CpuPath::Avx512) && ps.contains(&CpuPath::Avx2Fma)) {
        println!("exp_f32 bit for bit: needs both the AVX-512 and the AVX2 path here; skipped");
        return;
    }
    let chunk = 1usize << 20;
    let mut bits = 0u64;
    let (mut a, mut b) = (vec![0f32; chunk], vec![0f32; chunk]);
    let mut compared = 0usize;
    // The special values, and a step either side of the clamps and of the thresholds
    // where the result overflows (ln FLT_MAX) and becomes subnormal or zero.
    let mut special = vec![f32::INFINITY, f32::NEG_INFINITY, f32::NAN, 0.0, -0.0];
    for t in [89.0f32, -104.0, 88.722_84, -87.336_55, -103.972_08] {
        special.extend([
            t,
            f32::from_bits(t.to_bits() - 1),
            f32::from_bits(t.to_bits() + 1),
        ]);
    }
    while bits <= u32::MAX as u64 {
        let mut xs: Vec<f32> = (0..chunk)
            .map(|i| bits + 61 * i as u64)
            .take_while(|&v| v <= u32::MAX as u64)
            .map(|v| f32::from_bits(v as u32))
            .collect();
        if bits == 0 {
            xs.splice(0..special.len(), special.iter().copied());
        }
        bits += 61 * chunk as u64;
        exp_f32_eval(&xs, 1, &mut a, 1, xs.len(), CpuPath::Avx512).unwrap();
        exp_f32_eval(&xs, 1, &mut b, 1, xs.len(), CpuPath::Avx2Fma).unwrap();
        for (i, &x) in xs.iter().enumerate() {
            assert_eq!(
                a[i].to_bits(),
                b[i].to_bits(),
                "exp({:e}) (bits {:#x}): AVX-512 {:e}, AVX2 {:e}",
                x,
                x.to_bits(),
                a[i],
                b[i]
            );
        }
        compared += xs.len();
    }
    assert!(compared > 70_000_000, "{} compared", compared);
}

/// `Y[i, j] = exp(X[.., ..])` with `X` read along its rows or columns and `Y` contiguous,
/// tensorized at `j` by `exp_f32`; inputs over the whole range where exp is finite and
/// nonzero, compared within 2 ulp (the JIT's vector code, within 1 ulp) with the declaration run by the
/// interpreter (`f32::exp`).
#[test]
fn exp_against_its_declaration() {
    let mut rng = Rng(99);
    for case in 0..16u64 {
        let rows = 1 + rng.below(3) as i64;
        let n = 1 + rng.below(40) as i64;
        let cols = rng.below(2) == 0;
        let (x, y) = elementwise_tile(rows, n, cols, exp);
        let args = [x.clone(), y.clone()];
        let mut s = create_schedule(&[y.clone()]).unwrap();
        let [_, j] = s.axes2(&y).unwrap();
        s.tensorize(&y, &j, &exp_f32(n).unwrap()).unwrap();
        let text = lower(&s, &args).unwrap().to_string();
        assert!(text.contains(&format!("exp_f32_{}(", n)), "{}", text);
        let xs: Vec<f32> = (0..rows * n).map(|_| rng.f32_in(-87.0, 88.0)).collect();
        let xa = NdArray::from_slice(&const_shape(&x), &xs).unwrap();
        let shape = [rows as usize, n as usize];
        host_matches_declaration(&s, &args, &[&xa], &shape, case);
    }
}

/// The output of `s` (shape `shape`, from `inputs`) built by the interpreter (the
/// declaration) and by the CPU JIT (the host function) within 2 ulp of each other.
fn host_matches_declaration(
    s: &Schedule,
    args: &[Tensor],
    inputs: &[&NdArray],
    shape: &[usize],
    case: u64,
) {
    let mut outs = vec![];
    for t in targets() {
        let k = build(s, args, t).unwrap();
        let mut ya = NdArray::zeros(shape, DType::F32);
        k.run(inputs, &mut [&mut ya]).unwrap();
        outs.push(ya.as_slice::<f32>().unwrap().to_vec());
    }
    for (i, (a, b)) in outs[0].iter().zip(&outs[1]).enumerate() {
        assert!(
            ulps(*a, *b) <= 2,
            "case {} element {}: declaration {} vs host function {}",
            case,
            i,
            a,
            b
        );
    }
}

/// `Y[i, j] = exp(X[i, j] - M[i])` tensorized at `j` by `exp_sub_f32` (the difference
/// inlined), against the declaration run by the interpreter (within 2 ulp); and on each
/// code path `exp_sub_f32` gives `exp_f32` of the rounded difference, bit for bit.
#[test]
fn exp_sub_against_its_declaration() {
    let mut rng = Rng(41);
    for case in 0..12u64 {
        let rows = 1 + rng.below(3) as i64;
        let n = 1 + rng.below(40) as i64;
        let x = placeholder(&[rows.into(), n.into()], DType::F32, "X");
        let m = placeholder(&[rows.into()], DType::F32, "M");
        let y = compute(&[rows.into(), n.into()], "Y", |i| {
            exp(x.at(&[i[0].clone(), i[1].clone()]) - m.at(&[i[0].clone()]))
        });
        let args = [x.clone(), m.clone(), y.clone()];
        let mut s = create_schedule(&[y.clone()]).unwrap();
        let [_, j] = s.axes2(&y).unwrap();
        s.tensorize(&y, &j, &exp_sub_f32(n).unwrap()).unwrap();
        let text = lower(&s, &args).unwrap().to_string();
        assert!(text.contains(&format!("exp_sub_f32_{}(", n)), "{}", text);
        let xs: Vec<f32> = (0..rows * n).map(|_| rng.f32_in(-60.0, 60.0)).collect();
        let ms: Vec<f32> = (0..rows).map(|_| rng.f32_in(-30.0, 30.0)).collect();
        let xa = NdArray::from_slice(&[rows as usize, n as usize], &xs).unwrap();
        let ma = NdArray::from_slice(&[rows as usize], &ms).unwrap();
        host_matches_declaration(&s, &args, &[&xa, &ma], &[rows as usize, n as usize], case);
    }
    for p in paths("exp_sub_f32") {
        let x: Vec<f32> = (0..150).map(|i| i as f32 * 0.61 - 40.0).collect();
        for (shift, stride, n) in [(3.25f32, 1, 150), (-7.5, 1, 37), (12.0, 3, 50)] {
            let mut got = vec![0f32; 150];
            let mut want = vec![0f32; 150];
            exp_sub_f32_eval(&x, stride, shift, &mut got, stride, n, p).unwrap();
            let diff: Vec<f32> = x.iter().map(|v| v - shift).collect();
            exp_f32_eval(&diff, stride, &mut want, stride, n, p).unwrap();
            for k in 0..n {
                assert_eq!(
                    got[k * stride].to_bits(),
                    want[k * stride].to_bits(),
                    "{:?} exp({} - {})",
                    p,
                    x[k * stride],
                    shift
                );
            }
        }
    }
}

#[test]
fn intrinsic_errors() {
    assert!(dot_f32(0).is_err());
    let e = reduce_max_f32(0).unwrap_err().to_string();
    assert!(
        e.contains("reduce_max_f32(0): the length must be at least 1"),
        "{}",
        e
    );
    let e = exp_sub_f32(-2).unwrap_err().to_string();
    assert!(
        e.contains("exp_sub_f32(-2): the length must be at least 1"),
        "{}",
        e
    );
    assert!(reduce_sum_f32(-1).is_err());
    let e = exp_f32(0).unwrap_err().to_string();
    assert!(e.contains("the length must be at least 1"), "{}", e);
    // A body that is not the declaration: exp(x) + 1 against exp_f32.
    let x = placeholder(&[3.into(), 8.into()], DType::F32, "X");
    let y = compute(&[3.into(), 8.into()], "Y", |i| {
        exp(x.at(&[i[0].clone(), i[1].clone()])) + 1.0f32
    });
    let mut s = create_schedule(&[y.clone()]).unwrap();
    let [_, j] = s.axes2(&y).unwrap();
    s.tensorize(&y, &j, &exp_f32(8).unwrap()).unwrap();
    let e = lower(&s, &[x.clone(), y.clone()]).unwrap_err().to_string();
    assert!(
        e.contains("cannot tensorize Y at j with exp_f32_8"),
        "{}",
        e
    );
    // A row sum tensorized with the wrong length.
    let k = reduce_axis(0, 8, "k");
    let c = compute(&[3.into()], "C", |i| {
        sum(x.at(&[i[0].clone(), k.x()]), &[k.clone()])
    });
    let mut s = create_schedule(&[c.clone()]).unwrap();
    let kx = s.reduce_axes(&c).unwrap().remove(0);
    s.tensorize(&c, &kx, &reduce_sum_f32(4).unwrap()).unwrap();
    let e = lower(&s, &[x, c]).unwrap_err().to_string();
    assert!(e.contains("with extents [4]"), "{}", e);
}

#[test]
fn tensorized_softmax_schedule() {
    for (rows, n, threads) in [(6, 64, 1), (13, 40, 2), (4, 1024, 2)] {
        let x = placeholder(&[rows.into(), n.into()], DType::F32, "X");
        let out = softmax_rows(&x).unwrap();
        let args = [x.clone(), out.clone()];
        let s = softmax_rows_tensorized(&out, threads).unwrap();
        let text = lower(&s, &args).unwrap().to_string();
        for needle in [
            format!("reduce_max_f32_{}(", n),
            format!("exp_sub_f32_{}(", n),
            format!("reduce_sum_f32_{}(", n),
        ] {
            assert!(text.contains(&needle), "no {} in\n{}", needle, text);
        }
        if rows == 6 {
            golden("softmax_tensorized", &text);
        }
        let base = create_schedule(&[out.clone()]).unwrap();
        // Inputs over a wide range, so that the exponentials span many magnitudes.
        let xs: Vec<f32> = {
            let mut r = Rng(rows as u64);
            (0..rows * n).map(|_| r.f32_in(-30.0, 30.0)).collect()
        };
        let xa = NdArray::from_slice(&[rows as usize, n as usize], &xs).unwrap();
        let shape = [rows as usize, n as usize];
        let k = build(&base, &args, Target::interp()).unwrap();
        let mut want = NdArray::zeros(&shape, DType::F32);
        k.run(&[&xa], &mut [&mut want]).unwrap();
        for t in targets() {
            let k = build(&s, &args, t.clone()).unwrap();
            let mut got = NdArray::zeros(&shape, DType::F32);
            k.run(&[&xa], &mut [&mut got]).unwrap();
            assert!(
                got.allclose(&want, 1e-5, 1e-6),
                "softmax {}x{} threads {} on {:?}: max abs diff {}",
                rows,
                n,
                threads,
                t,
                got.max_abs_diff(&want)
            );
        }
        let replayed = Schedule::replay(&[out.clone()], &s.trace_json()).unwrap();
        assert_eq!(lower(&replayed, &args).unwrap().to_string(), text);
    }
    let x3 = placeholder(&[2.into(), 3.into(), 4.into()], DType::F32, "X");
    assert!(softmax_rows(&x3).is_err());
}

#[test]
fn a_symbolic_reduction_outside_the_call_keeps_the_init_nest() {
    // S[i] = sum_{r, k} X[i, r, k] with r < n (symbolic), k < 8 tensorized: the outer
    // reduce loop's extent is unknown (it may be 0), so no slice can be the one that
    // computes; the init nest calls the intrinsic in mode Init, the nest in Update.
    let n = var("n");
    let x = placeholder(&[Expr::from(3), n.clone(), Expr::from(8)], DType::F32, "X");
    let r = reduce_axis(0, n.clone(), "r");
    let k = reduce_axis(0, 8, "k");
    let c = compute(&[Expr::from(3)], "S", |i| {
        sum(x.at(&[i[0].clone(), r.x(), k.x()]), &[r.clone(), k.clone()])
    });
    let mut s = create_schedule(&[c.clone()]).unwrap();
    let ks = s.reduce_axes(&c).unwrap();
    s.tensorize(&c, &ks[1], &reduce_sum_f32(8).unwrap())
        .unwrap();
    let args = [x.clone(), c.clone()];
    let text = lower(&s, &args).unwrap().to_string();
    assert!(
        text.contains("reduce_sum_f32_8.init(") && text.contains("reduce_sum_f32_8.update("),
        "{}",
        text
    );
    for t in targets() {
        let kernel = build(&s, &args, t.clone()).unwrap();
        for rows in [0usize, 1, 3] {
            let xa = NdArray::from_fn(&[3, rows, 8], |i| (i % 7) as f32 - 3.0);
            let mut sa = NdArray::from_fn(&[3], |_| f32::NAN);
            kernel.run(&[&xa], &mut [&mut sa]).unwrap();
            let xv = xa.to_vec::<f32>().unwrap();
            let w = rows * 8;
            let want: Vec<f32> = (0..3)
                .map(|i| xv[i * w..(i + 1) * w].iter().sum())
                .collect();
            assert_eq!(sa.to_vec::<f32>().unwrap(), want, "{:?}, n = {}", t, rows);
        }
    }
}
