//! Tensor-expression features, checked numerically on the interpreter and the CPU JIT
//! against values computed in plain Rust: multi-output reductions (argmax with
//! `comm_reducer` + `compute_multi`), prod/min/max reductions, every math intrinsic in f32
//! and f64, select/if_then_else, comparisons and logic, casts between every pair of types,
//! integer floor division/modulo, f64/i32/i64 arithmetic, bool outputs, symbolic
//! dimensions bound at call time, reduce axes with a nonzero min, and reads at offsets.

use loopforge::prelude::*;

// ---------------------------------------------------------------- helpers

fn targets() -> [Target; 2] {
    [Target::interp(), Target::cpu()]
}

/// Build `s` for `target` and run it: `inputs` for the placeholders among `args` (in
/// order), fresh arrays of `outs` (shape, dtype) for the computed ones; returns the outputs.
fn run(
    s: &Schedule,
    args: &[Tensor],
    target: Target,
    inputs: &[&NdArray],
    outs: &[(&[usize], DType)],
) -> Vec<NdArray> {
    let k = build(s, args, target.clone())
        .unwrap_or_else(|e| panic!("build for {:?} failed: {}", target, e));
    let mut o: Vec<NdArray> = outs
        .iter()
        .map(|(sh, dt)| NdArray::zeros(sh, *dt))
        .collect();
    let mut refs: Vec<&mut NdArray> = o.iter_mut().collect();
    k.run(inputs, &mut refs)
        .unwrap_or_else(|e| panic!("run on {:?} failed: {}", target, e));
    o
}

/// `(interp, unscheduled)`, `(cpu, unscheduled)` and, when given, `(cpu, scheduled)`.
fn variants(
    outputs: &[Tensor],
    sched: Option<&dyn Fn(&mut Schedule)>,
) -> Vec<(String, Schedule, Target)> {
    let base = create_schedule(outputs).unwrap();
    let mut v: Vec<(String, Schedule, Target)> = targets()
        .into_iter()
        .map(|t| (format!("{:?}", t), base.clone(), t))
        .collect();
    if let Some(f) = sched {
        let mut s = create_schedule(outputs).unwrap();
        f(&mut s);
        v.push(("Interp, scheduled".into(), s.clone(), Target::interp()));
        v.push(("Cpu, scheduled".into(), s, Target::cpu()));
    }
    v
}

/// Elementwise `|got - want| <= rtol * |want|` (NaN equal to NaN). Where `a * b + c` is
/// involved, the CPU backend may fuse it (one rounding instead of two): callers pass a
/// tolerance that allows for it.
fn assert_f32_close(got: &[f32], want: &[f32], rtol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{}: length", what);
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        let ok = (g.is_nan() && w.is_nan())
            || g == w
            || (g - w).abs() <= rtol * w.abs().max(1e-30) + 1e-30;
        assert!(ok, "{}: element {}: got {:e}, want {:e}", what, k, g, w);
    }
}

fn assert_f64_close(got: &[f64], want: &[f64], rtol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{}: length", what);
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        let ok =
            (g.is_nan() && w.is_nan()) || g == w || (g - w).abs() <= rtol * w.abs().max(1e-300);
        assert!(ok, "{}: element {}: got {:e}, want {:e}", what, k, g, w);
    }
}

fn ci(v: usize) -> Expr {
    Expr::int(v as i64)
}

/// Split the innermost root axis of a 1-D or 2-D stage by 4 and vectorize the inner part.
fn vectorize_inner(s: &mut Schedule, t: &Tensor) {
    let ax = s.axes(t).unwrap().pop().unwrap();
    let (_, inner) = s.split(t, &ax, 4).unwrap();
    s.vectorize(t, &inner).unwrap();
}

// ---------------------------------------------------------------- argmax

fn argmax_case(index_dtype: DType) {
    let (n, m) = (7usize, 10usize);
    let a = placeholder(&[ci(n), ci(m)], DType::F32, "A");
    let red = comm_reducer(
        "argmax",
        &[index_dtype, DType::F32],
        |x, y| {
            let take = gt(y[1].clone(), x[1].clone());
            vec![
                select(take.clone(), y[0].clone(), x[0].clone()),
                select(take, y[1].clone(), x[1].clone()),
            ]
        },
        |dts| vec![Expr::int_of(-1, dts[0]), min_value(dts[1])],
    );
    let k = reduce_axis(0, m as i64, "k");
    let outs = compute_multi(&[ci(n)], "argmax", |i| {
        red.reduce(
            &[cast(index_dtype, k.x()), a.at(&[i[0].clone(), k.x()])],
            &[k.clone()],
        )
    });
    assert_eq!(outs.len(), 2);
    assert_eq!(outs[0].name(), "argmax.v0");
    assert_eq!(outs[1].name(), "argmax.v1");
    assert_eq!(outs[0].dtype(), index_dtype);
    assert_eq!(outs[1].dtype(), DType::F32);

    let mut x = NdArray::random(&[n, m], DType::F32, 3);
    {
        let xs = x.as_mut_slice::<f32>().unwrap();
        // Row 2: a tie between columns 3 and 8 (the first one wins with a strict `>`).
        for v in &mut xs[2 * m..3 * m] {
            *v = -0.25;
        }
        xs[2 * m + 3] = 0.75;
        xs[2 * m + 8] = 0.75;
        // Row 5: the maximum in the last column.
        xs[5 * m + m - 1] = 5.0;
    }
    let xs = x.to_vec::<f32>().unwrap();
    let mut want_idx = vec![0i64; n];
    let mut want_val = vec![0f32; n];
    for i in 0..n {
        let (mut bi, mut bv) = (-1i64, f32::NEG_INFINITY);
        for kk in 0..m {
            if xs[i * m + kk] > bv {
                bi = kk as i64;
                bv = xs[i * m + kk];
            }
        }
        want_idx[i] = bi;
        want_val[i] = bv;
    }
    assert_eq!(want_idx[2], 3);
    assert_eq!(want_idx[5], (m - 1) as i64);

    let args = [a.clone(), outs[0].clone(), outs[1].clone()];
    let o0 = outs[0].clone();
    let sched = move |s: &mut Schedule| {
        let [i] = <[Axis; 1]>::try_from(s.axes(&o0).unwrap()).unwrap();
        let (io, _) = s.split(&o0, &i, 3).unwrap();
        s.parallel(&o0, &io).unwrap();
        let k = s.reduce_axes(&o0).unwrap().remove(0);
        s.split(&o0, &k, 4).unwrap();
    };
    for (what, s, t) in variants(&outs, Some(&sched)) {
        let r = run(
            &s,
            &args,
            t,
            &[&x],
            &[(&[n], index_dtype), (&[n], DType::F32)],
        );
        let idx: Vec<i64> = match index_dtype {
            DType::I32 => r[0]
                .to_vec::<i32>()
                .unwrap()
                .into_iter()
                .map(|v| v as i64)
                .collect(),
            _ => r[0].to_vec::<i64>().unwrap(),
        };
        assert_eq!(
            idx, want_idx,
            "argmax index ({:?}) on {}",
            index_dtype, what
        );
        assert_eq!(
            r[1].to_vec::<f32>().unwrap(),
            want_val,
            "argmax value on {}",
            what
        );
    }
}

#[test]
fn argmax_with_i64_index() {
    argmax_case(DType::I64);
}

#[test]
fn argmax_with_i32_index() {
    argmax_case(DType::I32);
}

// ---------------------------------------------------------------- prod / min / max

#[test]
fn prod_min_max_reductions_f32() {
    let (n, m) = (6usize, 9usize);
    let a = placeholder(&[ci(n), ci(m)], DType::F32, "A");
    let k1 = reduce_axis(0, m as i64, "k");
    let p = compute(&[ci(n)], "P", |i| {
        prod(a.at(&[i[0].clone(), k1.x()]), &[k1.clone()])
    });
    let k2 = reduce_axis(0, m as i64, "k");
    let mn = compute(&[ci(n)], "Mn", |i| {
        min_reduce(a.at(&[i[0].clone(), k2.x()]), &[k2.clone()])
    });
    let k3 = reduce_axis(0, m as i64, "k");
    let mx = compute(&[ci(n)], "Mx", |i| {
        max_reduce(a.at(&[i[0].clone(), k3.x()]), &[k3.clone()])
    });
    // Values in [0.5, 1.5) so that the product stays moderate.
    let x = NdArray::from_fn(&[n, m], |k| 0.5f32 + ((k * 37 % 101) as f32) / 101.0);
    let xs = x.to_vec::<f32>().unwrap();
    let mut wp = vec![1f32; n];
    let mut wmn = vec![f32::INFINITY; n];
    let mut wmx = vec![f32::NEG_INFINITY; n];
    for i in 0..n {
        for kk in 0..m {
            let v = xs[i * m + kk];
            wp[i] *= v;
            wmn[i] = wmn[i].min(v);
            wmx[i] = wmx[i].max(v);
        }
    }
    let outs = [p.clone(), mn.clone(), mx.clone()];
    let args = [a.clone(), p.clone(), mn.clone(), mx.clone()];
    let sched = |s: &mut Schedule| {
        for t in [&p, &mn, &mx] {
            let k = s.reduce_axes(t).unwrap().remove(0);
            let (ko, ki) = s.split(t, &k, 4).unwrap();
            s.unroll(t, &ki).unwrap();
            let _ = ko;
        }
    };
    for (what, s, t) in variants(&outs, Some(&sched)) {
        let r = run(
            &s,
            &args,
            t,
            &[&x],
            &[(&[n], DType::F32), (&[n], DType::F32), (&[n], DType::F32)],
        );
        assert_f32_close(
            &r[0].to_vec::<f32>().unwrap(),
            &wp,
            1e-6,
            &format!("prod on {}", what),
        );
        assert_eq!(r[1].to_vec::<f32>().unwrap(), wmn, "min_reduce on {}", what);
        assert_eq!(r[2].to_vec::<f32>().unwrap(), wmx, "max_reduce on {}", what);
    }
}

#[test]
fn prod_min_max_reductions_integers() {
    let (n, m) = (5usize, 6usize);
    let a = placeholder(&[ci(n), ci(m)], DType::I32, "A");
    let b = placeholder(&[ci(n), ci(m)], DType::I64, "B");
    let k1 = reduce_axis(0, m as i64, "k");
    let p = compute(&[ci(n)], "P", |i| {
        prod(b.at(&[i[0].clone(), k1.x()]), &[k1.clone()])
    });
    let k2 = reduce_axis(0, m as i64, "k");
    let mn = compute(&[ci(n)], "Mn", |i| {
        min_reduce(a.at(&[i[0].clone(), k2.x()]), &[k2.clone()])
    });
    let k3 = reduce_axis(0, m as i64, "k");
    let mx = compute(&[ci(n)], "Mx", |i| {
        max_reduce(a.at(&[i[0].clone(), k3.x()]), &[k3.clone()])
    });
    let x = NdArray::random(&[n, m], DType::I32, 8);
    let y = NdArray::random(&[n, m], DType::I64, 9);
    let (xs, ys) = (x.to_vec::<i32>().unwrap(), y.to_vec::<i64>().unwrap());
    let wp: Vec<i64> = (0..n)
        .map(|i| ys[i * m..(i + 1) * m].iter().product())
        .collect();
    let wmn: Vec<i32> = (0..n)
        .map(|i| *xs[i * m..(i + 1) * m].iter().min().unwrap())
        .collect();
    let wmx: Vec<i32> = (0..n)
        .map(|i| *xs[i * m..(i + 1) * m].iter().max().unwrap())
        .collect();
    assert!(wp.iter().any(|v| *v != 0), "degenerate products");
    let outs = [p.clone(), mn.clone(), mx.clone()];
    let args = [a.clone(), b.clone(), p.clone(), mn.clone(), mx.clone()];
    for (what, s, t) in variants(&outs, None) {
        let r = run(
            &s,
            &args,
            t,
            &[&x, &y],
            &[(&[n], DType::I64), (&[n], DType::I32), (&[n], DType::I32)],
        );
        assert_eq!(r[0].to_vec::<i64>().unwrap(), wp, "i64 prod on {}", what);
        assert_eq!(
            r[1].to_vec::<i32>().unwrap(),
            wmn,
            "i32 min_reduce on {}",
            what
        );
        assert_eq!(
            r[2].to_vec::<i32>().unwrap(),
            wmx,
            "i32 max_reduce on {}",
            what
        );
    }
}

#[test]
fn empty_reductions_yield_the_identity() {
    let n = 3usize;
    let a = placeholder(&[ci(n), ci(0)], DType::F32, "A");
    let mk = |name: &str, f: fn(Expr, &[IterVar]) -> Expr| {
        let k = reduce_axis(0, 0i64, "k");
        compute(&[ci(n)], name, |i| {
            f(a.at(&[i[0].clone(), k.x()]), &[k.clone()])
        })
    };
    let s_ = mk("S", sum);
    let p = mk("P", prod);
    let mx = mk("Mx", max_reduce);
    let mn = mk("Mn", min_reduce);
    let x = NdArray::zeros(&[n, 0], DType::F32);
    let outs = [s_.clone(), p.clone(), mx.clone(), mn.clone()];
    let args = [a.clone(), s_, p, mx, mn];
    for (what, s, t) in variants(&outs, None) {
        let sh: &[usize] = &[n];
        let r = run(&s, &args, t, &[&x], &[(sh, DType::F32); 4]);
        assert_eq!(
            r[0].to_vec::<f32>().unwrap(),
            vec![0.0; n],
            "empty sum on {}",
            what
        );
        assert_eq!(
            r[1].to_vec::<f32>().unwrap(),
            vec![1.0; n],
            "empty prod on {}",
            what
        );
        assert_eq!(
            r[2].to_vec::<f32>().unwrap(),
            vec![f32::NEG_INFINITY; n],
            "empty max on {}",
            what
        );
        assert_eq!(
            r[3].to_vec::<f32>().unwrap(),
            vec![f32::INFINITY; n],
            "empty min on {}",
            what
        );
    }
}

// ---------------------------------------------------------------- math intrinsics

/// Inputs for a math function: every value is in its domain. 13 values (a vector tail).
fn domain(positive: bool) -> Vec<f64> {
    if positive {
        vec![
            1e-3, 0.1, 0.25, 0.5, 0.9, 1.0, 1.5, 2.0, 3.7, 10.0, 42.5, 1e3, 7.25e4,
        ]
    } else {
        vec![
            -7.5, -3.0, -1.5, -1.0, -0.7, -0.1, 0.0, 0.3, 0.5, 1.0, 2.2, 4.0, 7.5,
        ]
    }
}

struct Unary {
    name: &'static str,
    te: fn(Expr) -> Expr,
    f32_ref: fn(f32) -> f32,
    f64_ref: fn(f64) -> f64,
    positive: bool,
}

fn unary_fns() -> Vec<Unary> {
    vec![
        Unary {
            name: "exp",
            te: |x| exp(x),
            f32_ref: |x| x.exp(),
            f64_ref: |x| x.exp(),
            positive: false,
        },
        Unary {
            name: "log",
            te: |x| log(x),
            f32_ref: |x| x.ln(),
            f64_ref: |x| x.ln(),
            positive: true,
        },
        Unary {
            name: "sqrt",
            te: |x| sqrt(x),
            f32_ref: |x| x.sqrt(),
            f64_ref: |x| x.sqrt(),
            positive: true,
        },
        Unary {
            name: "tanh",
            te: |x| tanh(x),
            f32_ref: |x| x.tanh(),
            f64_ref: |x| x.tanh(),
            positive: false,
        },
        Unary {
            name: "sigmoid",
            te: |x| sigmoid(x),
            f32_ref: |x| 1.0 / (1.0 + (-x).exp()),
            f64_ref: |x| 1.0 / (1.0 + (-x).exp()),
            positive: false,
        },
        Unary {
            name: "erf",
            te: |x| erf(x),
            f32_ref: libm::erff,
            f64_ref: libm::erf,
            positive: false,
        },
        Unary {
            name: "abs",
            te: |x| abs(x),
            f32_ref: |x| x.abs(),
            f64_ref: |x| x.abs(),
            positive: false,
        },
        Unary {
            name: "floor",
            te: |x| floor(x),
            f32_ref: |x| x.floor(),
            f64_ref: |x| x.floor(),
            positive: false,
        },
        Unary {
            name: "ceil",
            te: |x| ceil(x),
            f32_ref: |x| x.ceil(),
            f64_ref: |x| x.ceil(),
            positive: false,
        },
        Unary {
            name: "neg",
            te: |x| -x,
            f32_ref: |x| -x,
            f64_ref: |x| -x,
            positive: false,
        },
    ]
}

/// Run `B[i] = f(A[i])` (or `f(A[i], C[i])`) in `dt` on every variant; returns the outputs
/// as f64 with the variant's name.
fn run_elementwise(
    dt: DType,
    xs: &[f64],
    ys: Option<&[f64]>,
    f: &dyn Fn(Expr, Option<Expr>) -> Expr,
) -> Vec<(String, Vec<f64>)> {
    let n = xs.len();
    let a = placeholder(&[ci(n)], dt, "A");
    let c = placeholder(&[ci(n)], dt, "C");
    let b = compute(&[ci(n)], "B", |i| {
        f(a.at(&[i[0].clone()]), ys.map(|_| c.at(&[i[0].clone()])))
    });
    let mk = |v: &[f64]| match dt {
        DType::F32 => NdArray::from_fn(&[n], |k| v[k] as f32),
        _ => NdArray::from_fn(&[n], |k| v[k]),
    };
    let x = mk(xs);
    let y = ys.map(mk);
    let mut args = vec![a.clone()];
    let mut inputs = vec![&x];
    if let Some(y) = &y {
        args.push(c.clone());
        inputs.push(y);
    }
    args.push(b.clone());
    let bb = b.clone();
    let sched = move |s: &mut Schedule| vectorize_inner(s, &bb);
    variants(&[b.clone()], Some(&sched))
        .into_iter()
        .map(|(what, s, t)| {
            let r = run(&s, &args, t, &inputs, &[(&[n], b.dtype())]);
            (what, r[0].to_f64_vec())
        })
        .collect()
}

#[test]
fn math_intrinsics_f32() {
    for u in unary_fns() {
        let xs: Vec<f64> = domain(u.positive)
            .into_iter()
            .map(|v| v as f32 as f64)
            .collect();
        let want: Vec<f32> = xs.iter().map(|&v| (u.f32_ref)(v as f32)).collect();
        for (what, got) in run_elementwise(DType::F32, &xs, None, &|x, _| (u.te)(x)) {
            let got: Vec<f32> = got.into_iter().map(|v| v as f32).collect();
            assert_f32_close(&got, &want, 2e-7, &format!("{} (f32) on {}", u.name, what));
        }
    }
}

#[test]
fn math_intrinsics_f64() {
    for u in unary_fns() {
        let xs = domain(u.positive);
        let want: Vec<f64> = xs.iter().map(|&v| (u.f64_ref)(v)).collect();
        for (what, got) in run_elementwise(DType::F64, &xs, None, &|x, _| (u.te)(x)) {
            assert_f64_close(&got, &want, 1e-15, &format!("{} (f64) on {}", u.name, what));
        }
    }
}

#[test]
fn math_intrinsics_known_values() {
    // Spot checks independent of the reference implementations.
    let xs = [0.0, 0.5, 1.0, -1.0, 2.0];
    type Known = (&'static str, fn(Expr) -> Expr, [f64; 5]);
    let cases: [Known; 4] = [
        (
            "erf",
            |x| erf(x),
            [
                0.0,
                0.5204998778130465,
                0.8427007929497149,
                -0.8427007929497149,
                0.9953222650189527,
            ],
        ),
        (
            "sigmoid",
            |x| sigmoid(x),
            [
                0.5,
                0.6224593312018546,
                0.7310585786300049,
                0.2689414213699951,
                0.8807970779778823,
            ],
        ),
        (
            "tanh",
            |x| tanh(x),
            [
                0.0,
                0.46211715726000974,
                0.7615941559557649,
                -0.7615941559557649,
                0.9640275800758169,
            ],
        ),
        (
            "exp",
            |x| exp(x),
            [
                1.0,
                1.6487212707001282,
                std::f64::consts::E,
                0.36787944117144233,
                7.38905609893065,
            ],
        ),
    ];
    for (name, f, want) in cases {
        for (what, got) in run_elementwise(DType::F64, &xs, None, &|x, _| f(x)) {
            assert_f64_close(&got, &want, 1e-15, &format!("{} (f64) on {}", name, what));
        }
        let want32: Vec<f32> = want.iter().map(|v| *v as f32).collect();
        for (what, got) in run_elementwise(DType::F32, &xs, None, &|x, _| f(x)) {
            let got: Vec<f32> = got.into_iter().map(|v| v as f32).collect();
            assert_f32_close(&got, &want32, 3e-7, &format!("{} (f32) on {}", name, what));
        }
    }
}

#[test]
fn pow_min_max_in_f32_and_f64() {
    let xs = domain(true);
    let ys: Vec<f64> = domain(false).into_iter().map(|v| v * 0.5).collect();
    for dt in [DType::F32, DType::F64] {
        let r = |v: f64| if dt == DType::F32 { v as f32 as f64 } else { v };
        let (xs, ys): (Vec<f64>, Vec<f64>) = (
            xs.iter().map(|v| r(*v)).collect(),
            ys.iter().map(|v| r(*v)).collect(),
        );
        // (name, whether it reads the second input, expression, f32 and f64 references)
        type Case = (
            &'static str,
            bool,
            fn(Expr, Expr) -> Expr,
            fn(f32, f32) -> f32,
            fn(f64, f64) -> f64,
        );
        let cases: [Case; 5] = [
            (
                "pow",
                true,
                |x, y| pow(x, y),
                |x, y| x.powf(y),
                |x, y| x.powf(y),
            ),
            (
                "pow(x, 2)",
                false,
                |x, _| pow(x, 2.0f32),
                |x, _| x.powf(2.0),
                |x, _| x.powf(2.0),
            ),
            (
                "min",
                true,
                |x, y| min(x, y),
                |x, y| x.min(y),
                |x, y| x.min(y),
            ),
            (
                "max",
                true,
                |x, y| max(x, y),
                |x, y| x.max(y),
                |x, y| x.max(y),
            ),
            ("fmod", true, |x, y| x % y, |x, y| x % y, |x, y| x % y),
        ];
        for (name, binary, f, r32, r64) in cases {
            // An unread input is not an argument of the kernel.
            let ys_in = if binary { Some(&ys[..]) } else { None };
            let got_all = run_elementwise(dt, &xs, ys_in, &|x, y| {
                f(x, y.unwrap_or_else(|| Expr::float_of(0.0, dt)))
            });
            for (what, got) in got_all {
                let what = format!("{} ({}) on {}", name, dt, what);
                if dt == DType::F32 {
                    let want: Vec<f32> = xs
                        .iter()
                        .zip(&ys)
                        .map(|(a, b)| r32(*a as f32, *b as f32))
                        .collect();
                    let got: Vec<f32> = got.into_iter().map(|v| v as f32).collect();
                    assert_f32_close(&got, &want, 2e-7, &what);
                } else {
                    let want: Vec<f64> = xs.iter().zip(&ys).map(|(a, b)| r64(*a, *b)).collect();
                    assert_f64_close(&got, &want, 1e-15, &what);
                }
            }
        }
    }
}

#[test]
fn float_min_max_propagate_nan_and_order_signed_zeros() {
    let nan = f64::NAN;
    let xs = [nan, 1.0, nan, -0.0, 0.0, -1.0, 3.0, f64::INFINITY];
    let ys = [1.0, nan, nan, 0.0, -0.0, -2.0, 3.0, 5.0];
    for dt in [DType::F32, DType::F64] {
        for (what, got) in run_elementwise(dt, &xs, Some(&ys), &|x, y| min(x, y.unwrap())) {
            let what = format!("min ({}) on {}", dt, what);
            assert!(
                got[0].is_nan() && got[1].is_nan() && got[2].is_nan(),
                "{}: NaN not propagated: {:?}",
                what,
                got
            );
            assert!(
                got[3] == 0.0 && got[3].is_sign_negative(),
                "{}: min(-0, +0) = {:?}",
                what,
                got[3]
            );
            assert!(
                got[4] == 0.0 && got[4].is_sign_negative(),
                "{}: min(+0, -0) = {:?}",
                what,
                got[4]
            );
            assert_eq!(&got[5..], &[-2.0, 3.0, 5.0], "{}", what);
        }
        for (what, got) in run_elementwise(dt, &xs, Some(&ys), &|x, y| max(x, y.unwrap())) {
            let what = format!("max ({}) on {}", dt, what);
            assert!(
                got[0].is_nan() && got[1].is_nan() && got[2].is_nan(),
                "{}: NaN not propagated: {:?}",
                what,
                got
            );
            assert!(
                got[3] == 0.0 && got[3].is_sign_positive(),
                "{}: max(-0, +0) = {:?}",
                what,
                got[3]
            );
            assert!(
                got[4] == 0.0 && got[4].is_sign_positive(),
                "{}: max(+0, -0) = {:?}",
                what,
                got[4]
            );
            assert_eq!(&got[5..], &[-1.0, 3.0, f64::INFINITY], "{}", what);
        }
    }
}

// ---------------------------------------------------------------- select, comparisons, logic

#[test]
fn select_and_if_then_else() {
    let n = 11usize;
    let a = placeholder(&[ci(n)], DType::F32, "A");
    let q = placeholder(&[ci(n)], DType::I32, "Q");
    // B[i] = A[i] > 0 ? A[i] * 2 : -A[i]
    let b = compute(&[ci(n)], "B", |i| {
        let x = a.at(&[i[0].clone()]);
        select(gt(x.clone(), 0.0f32), x.clone() * 2.0f32, -x)
    });
    // S[i] = A[max(i - 1, 0)] if i > 0 else 10 (a shift with a guarded, in-bounds read)
    let sh = compute(&[ci(n)], "S", |i| {
        if_then_else(
            gt(i[0].clone(), 0),
            a.at(&[max(i[0].clone() - 1, 0)]),
            10.0f32,
        )
    });
    // I[i] = Q[i] is odd ? Q[i] : i * 100 (integer branches; a mixed-type constant)
    let ii = compute(&[ci(n)], "I", |i| {
        let v = q.at(&[i[0].clone()]);
        select(
            eq(floormod(v.clone(), 2), 1),
            v,
            cast(DType::I32, i[0].clone() * 100),
        )
    });
    let x = NdArray::random(&[n], DType::F32, 21);
    let y = NdArray::random(&[n], DType::I32, 22);
    let (xs, ys) = (x.to_vec::<f32>().unwrap(), y.to_vec::<i32>().unwrap());
    let wb: Vec<f32> = xs
        .iter()
        .map(|&v| if v > 0.0 { v * 2.0 } else { -v })
        .collect();
    let ws: Vec<f32> = (0..n)
        .map(|i| if i > 0 { xs[i - 1] } else { 10.0 })
        .collect();
    let wi: Vec<i32> = (0..n)
        .map(|i| {
            if ys[i].rem_euclid(2) == 1 {
                ys[i]
            } else {
                i as i32 * 100
            }
        })
        .collect();
    assert!(
        wb.iter().zip(&xs).any(|(w, x)| *x > 0.0 && *w == 2.0 * x) && xs.iter().any(|x| *x < 0.0)
    );
    let outs = [b.clone(), sh.clone(), ii.clone()];
    let args = [a.clone(), q.clone(), b.clone(), sh.clone(), ii.clone()];
    let sched = |s: &mut Schedule| {
        vectorize_inner(s, &b);
        vectorize_inner(s, &sh);
        vectorize_inner(s, &ii);
    };
    for (what, s, t) in variants(&outs, Some(&sched)) {
        let r = run(
            &s,
            &args,
            t,
            &[&x, &y],
            &[(&[n], DType::F32), (&[n], DType::F32), (&[n], DType::I32)],
        );
        assert_eq!(r[0].to_vec::<f32>().unwrap(), wb, "select on {}", what);
        assert_eq!(
            r[1].to_vec::<f32>().unwrap(),
            ws,
            "if_then_else on {}",
            what
        );
        assert_eq!(
            r[2].to_vec::<i32>().unwrap(),
            wi,
            "integer select on {}",
            what
        );
    }
}

#[test]
#[allow(clippy::neg_cmp_op_on_partial_ord)] // `!(a <= b)` is meant: true when a or b is NaN
fn comparisons_and_logic_give_bool_outputs() {
    let fa = [1.0f32, 2.0, -3.0, 0.0, 5.5, -0.0, f32::NAN, 7.0];
    let fb = [1.0f32, 3.0, -4.0, 0.5, 5.5, 0.0, 1.0, f32::NAN];
    let ia = [1i32, 2, -3, 0, 5, -7, 9, 0];
    let ib = [1i32, 3, -4, 0, 5, -6, 8, 1];
    let n = fa.len();
    let a = placeholder(&[ci(n)], DType::F32, "A");
    let b = placeholder(&[ci(n)], DType::F32, "B");
    let p = placeholder(&[ci(n)], DType::I32, "P");
    let q = placeholder(&[ci(n)], DType::I32, "Q");
    type Cmp = (
        &'static str,
        fn(Expr, Expr) -> Expr,
        fn(f32, f32) -> bool,
        fn(i32, i32) -> bool,
    );
    let cmps: [Cmp; 6] = [
        ("eq", |x, y| eq(x, y), |x, y| x == y, |x, y| x == y),
        ("ne", |x, y| ne(x, y), |x, y| x != y, |x, y| x != y),
        ("lt", |x, y| lt(x, y), |x, y| x < y, |x, y| x < y),
        ("le", |x, y| le(x, y), |x, y| x <= y, |x, y| x <= y),
        ("gt", |x, y| gt(x, y), |x, y| x > y, |x, y| x > y),
        ("ge", |x, y| ge(x, y), |x, y| x >= y, |x, y| x >= y),
    ];
    let mut outs = vec![];
    let mut want: Vec<Vec<bool>> = vec![];
    for (k, (name, f, rf, ri)) in cmps.iter().enumerate() {
        outs.push(compute(&[ci(n)], &format!("F{}", k), |i| {
            f(a.at(&[i[0].clone()]), b.at(&[i[0].clone()]))
        }));
        want.push((0..n).map(|i| rf(fa[i], fb[i])).collect());
        outs.push(compute(&[ci(n)], &format!("I{}", k), |i| {
            f(p.at(&[i[0].clone()]), q.at(&[i[0].clone()]))
        }));
        want.push((0..n).map(|i| ri(ia[i], ib[i])).collect());
        let _ = name;
    }
    // and / or / not, on comparisons and on non-bool operands (nonzero is true).
    outs.push(compute(&[ci(n)], "L0", |i| {
        and(
            lt(a.at(&[i[0].clone()]), b.at(&[i[0].clone()])),
            gt(p.at(&[i[0].clone()]), 0),
        )
    }));
    want.push((0..n).map(|i| fa[i] < fb[i] && ia[i] > 0).collect());
    outs.push(compute(&[ci(n)], "L1", |i| {
        or(
            eq(p.at(&[i[0].clone()]), q.at(&[i[0].clone()])),
            ge(a.at(&[i[0].clone()]), 5.0f32),
        )
    }));
    want.push((0..n).map(|i| ia[i] == ib[i] || fa[i] >= 5.0).collect());
    outs.push(compute(&[ci(n)], "L2", |i| {
        not(le(a.at(&[i[0].clone()]), b.at(&[i[0].clone()])))
    }));
    want.push((0..n).map(|i| !(fa[i] <= fb[i])).collect());
    outs.push(compute(&[ci(n)], "L3", |i| {
        and(p.at(&[i[0].clone()]), not(q.at(&[i[0].clone()])))
    }));
    want.push((0..n).map(|i| ia[i] != 0 && ib[i] == 0).collect());
    outs.push(compute(&[ci(n)], "L4", |i| {
        or(a.at(&[i[0].clone()]), p.at(&[i[0].clone()]))
    }));
    want.push((0..n).map(|i| fa[i] != 0.0 || ia[i] != 0).collect());
    for o in &outs {
        assert_eq!(o.dtype(), DType::Bool, "{} should be bool", o.name());
    }
    let x = NdArray::from_slice(&[n], &fa).unwrap();
    let y = NdArray::from_slice(&[n], &fb).unwrap();
    let u = NdArray::from_slice(&[n], &ia).unwrap();
    let v = NdArray::from_slice(&[n], &ib).unwrap();
    let mut args = vec![a.clone(), b.clone(), p.clone(), q.clone()];
    args.extend(outs.iter().cloned());
    let shape = [n];
    let shapes: Vec<(&[usize], DType)> = outs.iter().map(|_| (&shape[..], DType::Bool)).collect();
    let outs2 = outs.clone();
    let sched = move |s: &mut Schedule| {
        for o in &outs2 {
            vectorize_inner(s, o);
        }
    };
    for (what, s, t) in variants(&outs, Some(&sched)) {
        let r = run(&s, &args, t, &[&x, &y, &u, &v], &shapes);
        for (k, o) in outs.iter().enumerate() {
            assert_eq!(
                r[k].to_vec::<bool>().unwrap(),
                want[k],
                "{} on {}",
                o.name(),
                what
            );
        }
    }
}

// ---------------------------------------------------------------- casts

#[derive(Debug, Clone, PartialEq)]
enum Col {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    B(Vec<bool>),
    H(Vec<f16>),
    BH(Vec<bf16>),
}

impl Col {
    fn dtype(&self) -> DType {
        match self {
            Col::F32(_) => DType::F32,
            Col::F64(_) => DType::F64,
            Col::I32(_) => DType::I32,
            Col::I64(_) => DType::I64,
            Col::B(_) => DType::Bool,
            Col::H(_) => DType::F16,
            Col::BH(_) => DType::BF16,
        }
    }
    fn len(&self) -> usize {
        match self {
            Col::F32(v) => v.len(),
            Col::F64(v) => v.len(),
            Col::I32(v) => v.len(),
            Col::I64(v) => v.len(),
            Col::B(v) => v.len(),
            Col::H(v) => v.len(),
            Col::BH(v) => v.len(),
        }
    }
    fn array(&self) -> NdArray {
        let n = [self.len()];
        match self {
            Col::F32(v) => NdArray::from_slice(&n, v),
            Col::F64(v) => NdArray::from_slice(&n, v),
            Col::I32(v) => NdArray::from_slice(&n, v),
            Col::I64(v) => NdArray::from_slice(&n, v),
            Col::B(v) => NdArray::from_slice(&n, v),
            Col::H(v) => NdArray::from_slice(&n, v),
            Col::BH(v) => NdArray::from_slice(&n, v),
        }
        .unwrap()
    }
    fn of(a: &NdArray) -> Col {
        match a.dtype() {
            DType::F32 => Col::F32(a.to_vec().unwrap()),
            DType::F64 => Col::F64(a.to_vec().unwrap()),
            DType::I32 => Col::I32(a.to_vec().unwrap()),
            DType::I64 => Col::I64(a.to_vec().unwrap()),
            DType::Bool => Col::B(a.to_vec().unwrap()),
            DType::F16 => Col::H(a.to_vec().unwrap()),
            DType::BF16 => Col::BH(a.to_vec().unwrap()),
        }
    }
    /// Rust's `as` semantics (float -> int saturating, NaN -> 0; int -> int wrapping;
    /// `!= 0` to bool; bool -> 0/1); to and from halves through f32.
    fn cast(&self, to: DType) -> Col {
        macro_rules! conv {
            ($v:expr) => {
                match to {
                    DType::F32 => Col::F32($v.iter().map(|x| *x as f32).collect()),
                    DType::F64 => Col::F64($v.iter().map(|x| *x as f64).collect()),
                    DType::I32 => Col::I32($v.iter().map(|x| *x as i32).collect()),
                    DType::I64 => Col::I64($v.iter().map(|x| *x as i64).collect()),
                    DType::Bool => Col::B($v.iter().map(|x| *x as f64 != 0.0).collect()),
                    DType::F16 => Col::H($v.iter().map(|x| f16::from_f32(*x as f32)).collect()),
                    DType::BF16 => Col::BH($v.iter().map(|x| bf16::from_f32(*x as f32)).collect()),
                }
            };
        }
        match self {
            Col::F32(v) => conv!(v),
            Col::F64(v) => conv!(v),
            Col::I32(v) => match to {
                DType::Bool => Col::B(v.iter().map(|x| *x != 0).collect()),
                _ => conv!(v),
            },
            Col::I64(v) => match to {
                DType::Bool => Col::B(v.iter().map(|x| *x != 0).collect()),
                _ => conv!(v),
            },
            Col::B(v) => Col::I64(v.iter().map(|x| *x as i64).collect()).cast(to),
            Col::H(v) => Col::F32(v.iter().map(|x| x.to_f32()).collect()).cast(to),
            Col::BH(v) => Col::F32(v.iter().map(|x| x.to_f32()).collect()).cast(to),
        }
    }
    /// Equality with NaN equal to NaN.
    fn same(&self, o: &Col) -> bool {
        match (self, o) {
            (Col::F32(a), Col::F32(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .zip(b)
                        .all(|(x, y)| x == y || (x.is_nan() && y.is_nan()))
            }
            (Col::F64(a), Col::F64(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .zip(b)
                        .all(|(x, y)| x == y || (x.is_nan() && y.is_nan()))
            }
            // Bit for bit (signed zeros), NaN equal to NaN.
            (Col::H(a), Col::H(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .zip(b)
                        .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
            }
            (Col::BH(a), Col::BH(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .zip(b)
                        .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
            }
            _ => self == o,
        }
    }
}

#[test]
fn casts_between_every_pair_of_types() {
    let sources = [
        Col::F32(vec![
            -2.7,
            -0.5,
            0.0,
            -0.0,
            0.5,
            1.0,
            3.9,
            1e10,
            -1e10,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            16777216.0,
            2.5e9,
        ]),
        Col::F64(vec![
            -2.7,
            -0.5,
            0.0,
            0.5,
            1.0,
            3.9,
            1e20,
            -1e20,
            f64::NAN,
            f64::INFINITY,
            2.5e9,
            -3.000000001e9,
            16777217.0,
            0.1,
        ]),
        Col::I32(vec![
            -5,
            -1,
            0,
            1,
            7,
            i32::MAX,
            i32::MIN,
            16777217,
            -16777219,
            123456789,
        ]),
        Col::I64(vec![
            -5,
            0,
            1,
            3_000_000_000,
            -3_000_000_000,
            i64::MAX,
            i64::MIN,
            16777217,
            9007199254740993,
            1 << 40,
        ]),
        Col::B(vec![true, false, false, true, true]),
        Col::H(
            [
                -2.75,
                -0.0,
                0.0,
                0.5,
                1.0,
                3.9,
                65504.0,
                -65504.0,
                f32::INFINITY,
                f32::NAN,
                6e-8, // subnormal
                2049.0,
                0.1,
            ]
            .iter()
            .map(|x| f16::from_f32(*x))
            .collect(),
        ),
        Col::BH(
            [
                -2.75,
                -0.0,
                1.0,
                3.9,
                3e38,
                -3e38,
                f32::NEG_INFINITY,
                f32::NAN,
                1e-39, // subnormal
                16777216.0,
                2.5e9,
                0.1,
            ]
            .iter()
            .map(|x| bf16::from_f32(*x))
            .collect(),
        ),
    ];
    let dts = [
        DType::F32,
        DType::F64,
        DType::I32,
        DType::I64,
        DType::Bool,
        DType::F16,
        DType::BF16,
    ];
    for src in &sources {
        let n = src.len();
        let a = placeholder(&[ci(n)], src.dtype(), "A");
        let x = src.array();
        for &to in &dts {
            let b = compute(&[ci(n)], "B", |i| cast(to, a.at(&[i[0].clone()])));
            assert_eq!(b.dtype(), to);
            let want = src.cast(to);
            let bb = b.clone();
            // Vectorized too, where the widths agree (the vectorizer scalarizes otherwise).
            let sched = move |s: &mut Schedule| {
                let [i] = <[Axis; 1]>::try_from(s.axes(&bb).unwrap()).unwrap();
                let (_, inner) = s.split(&bb, &i, 2).unwrap();
                s.vectorize(&bb, &inner).unwrap();
            };
            for (what, s, t) in variants(&[b.clone()], Some(&sched)) {
                let r = run(&s, &[a.clone(), b.clone()], t, &[&x], &[(&[n], to)]);
                let got = Col::of(&r[0]);
                assert!(
                    got.same(&want),
                    "cast {} -> {} on {}:\n input {:?}\n got   {:?}\n want  {:?}",
                    src.dtype(),
                    to,
                    what,
                    src,
                    got,
                    want
                );
            }
        }
    }
}

#[test]
fn constant_casts_fold_like_runtime_casts() {
    // cast() of a constant folds when the expression is built; the value must be the one
    // the runtime conversion gives.
    let n = 1usize;
    let a = placeholder(&[ci(n)], DType::I32, "A");
    let b = compute(&[ci(n), ci(6)], "B", |i| {
        let consts = [
            cast(DType::I32, Expr::float_of(-2.7, DType::F32)),
            cast(DType::I32, Expr::float_of(1e10, DType::F64)),
            cast(DType::I32, Expr::int_of(3_000_000_000, DType::I64)),
            cast(DType::I32, Expr::float_of(f64::NAN, DType::F64)),
            cast(DType::I32, Expr::bool(true)),
            cast(
                DType::I32,
                cast(DType::Bool, Expr::float_of(-0.5, DType::F32)),
            ),
        ];
        let mut e = consts[5].clone();
        for k in (0..5).rev() {
            e = select(eq(i[1].clone(), k as i64), consts[k].clone(), e);
        }
        e + a.at(&[i[0].clone()])
    });
    let want = vec![-2, i32::MAX, 3_000_000_000i64 as i32, 0, 1, 1];
    let x = NdArray::from_slice(&[1], &[0i32]).unwrap();
    for (what, s, t) in variants(&[b.clone()], None) {
        let r = run(
            &s,
            &[a.clone(), b.clone()],
            t,
            &[&x],
            &[(&[1, 6], DType::I32)],
        );
        assert_eq!(
            r[0].to_vec::<i32>().unwrap(),
            want,
            "folded casts on {}",
            what
        );
    }
}

#[test]
fn half_constant_casts_fold_like_runtime_casts() {
    // A cast of a constant to a half folds when the expression is built; it must round
    // as the runtime conversion does (through f32: two roundings from f64 and int64).
    let cases = [
        Col::F64(vec![0.1]),
        Col::F64(vec![1.0 + 2f64.powi(-11) + 2f64.powi(-40)]),
        Col::F64(vec![1e300]),
        Col::F64(vec![-1e-300]),
        Col::I64(vec![(1 << 24) + (1 << 16) + 1]),
        Col::I32(vec![65519]),
        Col::I32(vec![-2049]),
        Col::F32(vec![3.9]),
        Col::B(vec![true]),
    ];
    for dt in [DType::F16, DType::BF16] {
        for src in &cases {
            let konst = match src {
                Col::F64(v) => Expr::float_of(v[0], DType::F64),
                Col::F32(v) => Expr::float_of(v[0] as f64, DType::F32),
                Col::I64(v) => Expr::int_of(v[0], DType::I64),
                Col::I32(v) => Expr::int_of(v[0] as i64, DType::I32),
                Col::B(v) => Expr::bool(v[0]),
                _ => unreachable!(),
            };
            let folded = cast(dt, konst);
            assert!(folded.is_const(), "{} not folded", folded);
            let a = placeholder(&[ci(1)], src.dtype(), "A");
            let b = compute(&[ci(2)], "B", |i| {
                select(
                    eq(i[0].clone(), 0i64),
                    cast(dt, a.at(&[Expr::int(0)])),
                    folded.clone(),
                )
            });
            let want = src.cast(dt);
            let x = src.array();
            for (what, s, t) in variants(&[b.clone()], None) {
                let r = run(&s, &[a.clone(), b.clone()], t, &[&x], &[(&[2], dt)]);
                let got = Col::of(&r[0]);
                let (runtime, konst) = match &got {
                    Col::H(v) => (Col::H(vec![v[0]]), Col::H(vec![v[1]])),
                    Col::BH(v) => (Col::BH(vec![v[0]]), Col::BH(vec![v[1]])),
                    _ => unreachable!(),
                };
                assert!(
                    runtime.same(&want) && konst.same(&want),
                    "cast {:?} -> {} on {}: runtime {:?}, folded {:?}, want {:?}",
                    src,
                    dt,
                    what,
                    runtime,
                    konst,
                    want
                );
            }
        }
    }
}

// ---------------------------------------------------------------- integer division

fn floordiv_ref(a: i64, b: i64) -> i64 {
    if b == 0 {
        return 0;
    }
    let q = a.wrapping_div(b);
    if a.wrapping_rem(b) != 0 && ((a < 0) != (b < 0)) {
        q - 1
    } else {
        q
    }
}

fn floormod_ref(a: i64, b: i64) -> i64 {
    if b == 0 {
        return 0;
    }
    let r = a.wrapping_rem(b);
    if r != 0 && ((r < 0) != (b < 0)) {
        r + b
    } else {
        r
    }
}

#[test]
fn floor_reference_is_right() {
    assert_eq!(floordiv_ref(-7, 2), -4);
    assert_eq!(floormod_ref(-7, 2), 1);
    assert_eq!(floordiv_ref(7, -2), -4);
    assert_eq!(floormod_ref(7, -2), -1);
    assert_eq!(floordiv_ref(-7, -2), 3);
    assert_eq!(floormod_ref(-7, -2), -1);
    assert_eq!(floordiv_ref(-6, 3), -2);
    assert_eq!(floormod_ref(-6, 3), 0);
}

#[allow(clippy::modulo_one)] // `a % -1` on expressions is one of the cases
fn int_division_case(dt: DType) {
    let mut xs = vec![];
    let mut ys = vec![];
    for a in -9i64..=9 {
        for b in [-4i64, -3, -2, -1, 1, 2, 3, 4, 8] {
            xs.push(a);
            ys.push(b);
        }
    }
    let n = xs.len();
    let a = placeholder(&[ci(n)], dt, "A");
    let b = placeholder(&[ci(n)], dt, "B");
    let at = |i: &[Expr]| a.at(&[i[0].clone()]);
    let bt = |i: &[Expr]| b.at(&[i[0].clone()]);
    // Variable divisors (operators and functions), constant divisors of every sign,
    // including powers of two (which the backend may turn into shifts).
    // (name, whether it reads B, expression, reference)
    type Case<'a> = (
        &'static str,
        bool,
        Box<dyn Fn(&[Expr]) -> Expr + 'a>,
        Box<dyn Fn(i64, i64) -> i64>,
    );
    let cases: Vec<Case> = vec![
        (
            "a / b",
            true,
            Box::new(|i| at(i) / bt(i)),
            Box::new(floordiv_ref),
        ),
        (
            "a % b",
            true,
            Box::new(|i| at(i) % bt(i)),
            Box::new(floormod_ref),
        ),
        (
            "floordiv(a, b)",
            true,
            Box::new(|i| floordiv(at(i), bt(i))),
            Box::new(floordiv_ref),
        ),
        (
            "floormod(a, b)",
            true,
            Box::new(|i| floormod(at(i), bt(i))),
            Box::new(floormod_ref),
        ),
        (
            "a / 3",
            false,
            Box::new(|i| at(i) / 3),
            Box::new(|x, _| floordiv_ref(x, 3)),
        ),
        (
            "a % 3",
            false,
            Box::new(|i| at(i) % 3),
            Box::new(|x, _| floormod_ref(x, 3)),
        ),
        (
            "a / -4",
            false,
            Box::new(|i| at(i) / -4),
            Box::new(|x, _| floordiv_ref(x, -4)),
        ),
        (
            "a % -4",
            false,
            Box::new(|i| at(i) % -4),
            Box::new(|x, _| floormod_ref(x, -4)),
        ),
        (
            "a / 8",
            false,
            Box::new(|i| at(i) / 8),
            Box::new(|x, _| floordiv_ref(x, 8)),
        ),
        (
            "a % 8",
            false,
            Box::new(|i| at(i) % 8),
            Box::new(|x, _| floormod_ref(x, 8)),
        ),
        (
            "a / -8",
            false,
            Box::new(|i| at(i) / -8),
            Box::new(|x, _| floordiv_ref(x, -8)),
        ),
        (
            "a % -8",
            false,
            Box::new(|i| at(i) % -8),
            Box::new(|x, _| floormod_ref(x, -8)),
        ),
        ("a / 1", false, Box::new(|i| at(i) / 1), Box::new(|x, _| x)),
        (
            "a % -1",
            false,
            Box::new(|i| at(i) % -1),
            Box::new(|_, _| 0),
        ),
    ];
    let mk = |v: &[i64]| match dt {
        DType::I32 => NdArray::from_fn(&[n], |k| v[k] as i32),
        _ => NdArray::from_fn(&[n], |k| v[k]),
    };
    let (x, y) = (mk(&xs), mk(&ys));
    for (name, uses_b, f, r) in &cases {
        let c = compute(&[ci(n)], "C", |i| f(i));
        assert_eq!(c.dtype(), dt, "{}", name);
        let want: Vec<f64> = xs.iter().zip(&ys).map(|(p, q)| r(*p, *q) as f64).collect();
        let cc = c.clone();
        let sched = move |s: &mut Schedule| vectorize_inner(s, &cc);
        // An unread input is not an argument of the kernel.
        let (args, inputs) = if *uses_b {
            (vec![a.clone(), b.clone(), c.clone()], vec![&x, &y])
        } else {
            (vec![a.clone(), c.clone()], vec![&x])
        };
        for (what, s, t) in variants(&[c.clone()], Some(&sched)) {
            let got = run(&s, &args, t, &inputs, &[(&[n], dt)]);
            let got = got[0].to_f64_vec();
            for k in 0..n {
                assert_eq!(
                    got[k], want[k],
                    "{} ({}) with a = {}, b = {} on {}",
                    name, dt, xs[k], ys[k], what
                );
            }
        }
    }
}

#[test]
fn integer_floor_division_and_modulo_i32() {
    int_division_case(DType::I32);
}

#[test]
fn integer_floor_division_and_modulo_i64() {
    int_division_case(DType::I64);
}

#[test]
fn integer_division_edge_cases() {
    // Division by zero yields 0 (never traps); MIN / -1 wraps to MIN; MIN % -1 is 0.
    let xs32 = [7i32, -7, 0, i32::MIN, i32::MIN, i32::MAX];
    let ys32 = [0i32, 0, 0, -1, 1, -1];
    let xs64 = [7i64, -7, 0, i64::MIN, i64::MIN, i64::MAX];
    let ys64 = [0i64, 0, 0, -1, 1, -1];
    let n = 6usize;
    for dt in [DType::I32, DType::I64] {
        let a = placeholder(&[ci(n)], dt, "A");
        let b = placeholder(&[ci(n)], dt, "B");
        let q = compute(&[ci(n)], "Q", |i| {
            a.at(&[i[0].clone()]) / b.at(&[i[0].clone()])
        });
        let r = compute(&[ci(n)], "R", |i| {
            a.at(&[i[0].clone()]) % b.at(&[i[0].clone()])
        });
        let (x, y, wq, wr): (NdArray, NdArray, Vec<i64>, Vec<i64>) = if dt == DType::I32 {
            (
                NdArray::from_slice(&[n], &xs32).unwrap(),
                NdArray::from_slice(&[n], &ys32).unwrap(),
                vec![
                    0,
                    0,
                    0,
                    i32::MIN as i64,
                    i32::MIN as i64,
                    -(i32::MAX as i64),
                ],
                vec![0, 0, 0, 0, 0, 0],
            )
        } else {
            (
                NdArray::from_slice(&[n], &xs64).unwrap(),
                NdArray::from_slice(&[n], &ys64).unwrap(),
                vec![0, 0, 0, i64::MIN, i64::MIN, -i64::MAX],
                vec![0, 0, 0, 0, 0, 0],
            )
        };
        let args = [a.clone(), b.clone(), q.clone(), r.clone()];
        for (what, s, t) in variants(&[q.clone(), r.clone()], None) {
            let out = run(&s, &args, t, &[&x, &y], &[(&[n], dt), (&[n], dt)]);
            let (gq, gr): (Vec<i64>, Vec<i64>) = if dt == DType::I32 {
                (
                    out[0]
                        .to_vec::<i32>()
                        .unwrap()
                        .into_iter()
                        .map(i64::from)
                        .collect(),
                    out[1]
                        .to_vec::<i32>()
                        .unwrap()
                        .into_iter()
                        .map(i64::from)
                        .collect(),
                )
            } else {
                (
                    out[0].to_vec::<i64>().unwrap(),
                    out[1].to_vec::<i64>().unwrap(),
                )
            };
            assert_eq!(gq, wq, "division edge cases ({}) on {}", dt, what);
            assert_eq!(gr, wr, "modulo edge cases ({}) on {}", dt, what);
        }
    }
}

// ---------------------------------------------------------------- f64 / i32 / i64

#[test]
fn f64_matrix_vector_product() {
    let (n, m) = (9usize, 13usize);
    let a = placeholder(&[ci(n), ci(m)], DType::F64, "A");
    let v = placeholder(&[ci(m)], DType::F64, "V");
    let k = reduce_axis(0, m as i64, "k");
    let y = compute(&[ci(n)], "Y", |i| {
        sum(a.at(&[i[0].clone(), k.x()]) * v.at(&[k.x()]), &[k.clone()])
    });
    assert_eq!(y.dtype(), DType::F64);
    let x = NdArray::random(&[n, m], DType::F64, 31);
    let w = NdArray::random(&[m], DType::F64, 32);
    let (xs, ws) = (x.to_vec::<f64>().unwrap(), w.to_vec::<f64>().unwrap());
    let want: Vec<f64> = (0..n)
        .map(|i| (0..m).fold(0.0, |acc, kk| acc + xs[i * m + kk] * ws[kk]))
        .collect();
    let yy = y.clone();
    let sched = move |s: &mut Schedule| {
        let k = s.reduce_axes(&yy).unwrap().remove(0);
        let (_, ki) = s.split(&yy, &k, 4).unwrap();
        s.unroll(&yy, &ki).unwrap();
        let [i] = <[Axis; 1]>::try_from(s.axes(&yy).unwrap()).unwrap();
        s.parallel(&yy, &i).unwrap();
    };
    for (what, s, t) in variants(&[y.clone()], Some(&sched)) {
        let r = run(
            &s,
            &[a.clone(), v.clone(), y.clone()],
            t,
            &[&x, &w],
            &[(&[n], DType::F64)],
        );
        // Same summation order as the reference: equal up to FMA contraction (the CPU
        // backend fuses `a * b + c` where the host has FMA).
        assert_f64_close(
            &r[0].to_vec::<f64>().unwrap(),
            &want,
            1e-13,
            &format!("f64 matvec on {}", what),
        );
    }
}

#[test]
fn i32_arithmetic_wraps() {
    let xs = [1i32, -1, 46341, 100_000, i32::MAX, i32::MIN, 12345, -99_999];
    let ys = [3i32, 7, 46341, -100_000, 1, -1, 0, 65536];
    let n = xs.len();
    let a = placeholder(&[ci(n)], DType::I32, "A");
    let b = placeholder(&[ci(n)], DType::I32, "B");
    let c = compute(&[ci(n)], "C", |i| {
        let (x, y) = (a.at(&[i[0].clone()]), b.at(&[i[0].clone()]));
        x.clone() * y.clone() + 7 - (x - y) * 3
    });
    assert_eq!(c.dtype(), DType::I32);
    let want: Vec<i32> = xs
        .iter()
        .zip(&ys)
        .map(|(x, y)| {
            x.wrapping_mul(*y)
                .wrapping_add(7)
                .wrapping_sub(x.wrapping_sub(*y).wrapping_mul(3))
        })
        .collect();
    let x = NdArray::from_slice(&[n], &xs).unwrap();
    let y = NdArray::from_slice(&[n], &ys).unwrap();
    let cc = c.clone();
    let sched = move |s: &mut Schedule| vectorize_inner(s, &cc);
    for (what, s, t) in variants(&[c.clone()], Some(&sched)) {
        let r = run(
            &s,
            &[a.clone(), b.clone(), c.clone()],
            t,
            &[&x, &y],
            &[(&[n], DType::I32)],
        );
        assert_eq!(
            r[0].to_vec::<i32>().unwrap(),
            want,
            "i32 arithmetic on {}",
            what
        );
    }
}

#[test]
fn i64_reduction_and_large_values() {
    let (n, m) = (4usize, 7usize);
    let a = placeholder(&[ci(n), ci(m)], DType::I64, "A");
    let k = reduce_axis(0, m as i64, "k");
    // S[i] = sum_k A[i, k] * 2^33 + k  (beyond the range of i32)
    let s_ = compute(&[ci(n)], "S", |i| {
        sum(
            a.at(&[i[0].clone(), k.x()]) * (1i64 << 33) + k.x(),
            &[k.clone()],
        )
    });
    assert_eq!(s_.dtype(), DType::I64);
    let x = NdArray::random(&[n, m], DType::I64, 41);
    let xs = x.to_vec::<i64>().unwrap();
    let want: Vec<i64> = (0..n)
        .map(|i| {
            (0..m)
                .map(|kk| xs[i * m + kk] * (1i64 << 33) + kk as i64)
                .sum()
        })
        .collect();
    assert!(want.iter().any(|v| v.abs() > i32::MAX as i64));
    for (what, s, t) in variants(&[s_.clone()], None) {
        let r = run(
            &s,
            &[a.clone(), s_.clone()],
            t,
            &[&x],
            &[(&[n], DType::I64)],
        );
        assert_eq!(
            r[0].to_vec::<i64>().unwrap(),
            want,
            "i64 reduction on {}",
            what
        );
    }
}

// ---------------------------------------------------------------- symbolic dimensions

#[test]
fn symbolic_dimension_bound_at_call_time() {
    let n = var("n");
    let a = placeholder(&[n.clone()], DType::F32, "A");
    let b = compute(&[n.clone()], "B", |i| {
        a.at(&[i[0].clone()]) * 2.0f32 + 1.0f32
    });
    // D[i] = A[i + 1] - A[i], over n - 1 elements (an offset read, a derived dimension)
    let d = compute(&[n.clone() - 1], "D", |i| {
        a.at(&[i[0].clone() + 1]) - a.at(&[i[0].clone()])
    });
    let args = [a.clone(), b.clone(), d.clone()];
    let mut sched = create_schedule(&[b.clone(), d.clone()]).unwrap();
    vectorize_inner(&mut sched, &b);
    let [i] = <[Axis; 1]>::try_from(sched.axes(&d).unwrap()).unwrap();
    let (io, _) = sched.split(&d, &i, 3).unwrap();
    sched.parallel(&d, &io).unwrap();
    let base = create_schedule(&[b.clone(), d.clone()]).unwrap();
    for (s, t) in [
        (&base, Target::interp()),
        (&base, Target::cpu()),
        (&sched, Target::interp()),
        (&sched, Target::cpu()),
    ] {
        // One kernel, called with different sizes.
        let k = build(s, &args, t.clone()).unwrap();
        for len in [1usize, 2, 5, 13, 64] {
            let x = NdArray::random(&[len], DType::F32, len as u64);
            let xs = x.to_vec::<f32>().unwrap();
            let mut y = NdArray::zeros(&[len], DType::F32);
            let mut z = NdArray::zeros(&[len - 1], DType::F32);
            k.run(&[&x], &mut [&mut y, &mut z])
                .unwrap_or_else(|e| panic!("n = {} on {:?}: {}", len, t, e));
            let wy: Vec<f32> = xs.iter().map(|v| v * 2.0 + 1.0).collect();
            let wz: Vec<f32> = (0..len - 1).map(|i| xs[i + 1] - xs[i]).collect();
            assert_eq!(
                y.to_vec::<f32>().unwrap(),
                wy,
                "B with n = {} on {:?}",
                len,
                t
            );
            assert_eq!(
                z.to_vec::<f32>().unwrap(),
                wz,
                "D with n = {} on {:?}",
                len,
                t
            );
        }
    }
}

#[test]
fn two_symbolic_dimensions_and_a_symbolic_reduction() {
    let (n, m) = (var("n"), var("m"));
    let a = placeholder(&[n.clone(), m.clone()], DType::F32, "A");
    let k = reduce_axis(0, m.clone(), "k");
    let s_ = compute(&[n.clone()], "S", |i| {
        sum(a.at(&[i[0].clone(), k.x()]), &[k.clone()])
    });
    let args = [a.clone(), s_.clone()];
    for t in targets() {
        let kern = build(&create_schedule(&[s_.clone()]).unwrap(), &args, t.clone()).unwrap();
        for (rows, cols) in [(3usize, 5usize), (1, 1), (7, 0), (4, 33)] {
            let x = NdArray::random(&[rows, cols], DType::F32, 5);
            let xs = x.to_vec::<f32>().unwrap();
            let mut y = NdArray::from_fn(&[rows], |_| 99f32);
            kern.run(&[&x], &mut [&mut y]).unwrap();
            let want: Vec<f32> = (0..rows)
                .map(|i| xs[i * cols..(i + 1) * cols].iter().sum())
                .collect();
            assert_f32_close(
                &y.to_vec::<f32>().unwrap(),
                &want,
                1e-6,
                &format!("row sums {}x{} on {:?}", rows, cols, t),
            );
        }
    }
}

// ---------------------------------------------------------------- reduce axes and offsets

#[test]
fn reduce_axis_with_nonzero_min() {
    let (n, m) = (5usize, 9usize);
    let a = placeholder(&[ci(n), ci(m)], DType::F32, "A");
    let k = reduce_axis(2, 7, "k");
    assert_eq!(k.min.as_int(), Some(2));
    assert_eq!(k.extent.as_int(), Some(5));
    let s_ = compute(&[ci(n)], "S", |i| {
        sum(a.at(&[i[0].clone(), k.x()]) * (k.x() + 1), &[k.clone()])
    });
    let x = NdArray::random(&[n, m], DType::F32, 51);
    let xs = x.to_vec::<f32>().unwrap();
    let want: Vec<f32> = (0..n)
        .map(|i| (2..7).fold(0f32, |acc, kk| acc + xs[i * m + kk] * (kk + 1) as f32))
        .collect();
    let ss = s_.clone();
    let sched = move |s: &mut Schedule| {
        let k = s.reduce_axes(&ss).unwrap().remove(0);
        let (ko, ki) = s.split(&ss, &k, 2).unwrap();
        let [i] = <[Axis; 1]>::try_from(s.axes(&ss).unwrap()).unwrap();
        s.reorder(&ss, &[&ko, &i, &ki]).unwrap();
        s.unroll(&ss, &ki).unwrap();
    };
    for (what, s, t) in variants(&[s_.clone()], Some(&sched)) {
        let r = run(
            &s,
            &[a.clone(), s_.clone()],
            t,
            &[&x],
            &[(&[n], DType::F32)],
        );
        assert_f32_close(
            &r[0].to_vec::<f32>().unwrap(),
            &want,
            1e-5,
            &format!("sum over k in [2, 7) on {}", what),
        );
    }
}

#[test]
fn reads_at_offset_indices() {
    let (n, m) = (6usize, 8usize);
    let a = placeholder(&[ci(n), ci(m)], DType::F32, "A");
    // B[i, j] = A[i + 1, j + 2] * 2 - A[i, j]  over (n - 1, m - 2)
    let b = compute(&[ci(n - 1), ci(m - 2)], "B", |i| {
        a.at(&[i[0].clone() + 1, i[1].clone() + 2]) * 2.0f32 - a.at(&[i[0].clone(), i[1].clone()])
    });
    // C[i, j] = B[i, j + 1] + B[i + 1, j]  over (n - 2, m - 3), with B computed inside C's loop
    let c = compute(&[ci(n - 2), ci(m - 3)], "C", |i| {
        b.at(&[i[0].clone(), i[1].clone() + 1]) + b.at(&[i[0].clone() + 1, i[1].clone()])
    });
    let x = NdArray::random(&[n, m], DType::F32, 61);
    let xs = x.to_vec::<f32>().unwrap();
    let bw = |i: usize, j: usize| xs[(i + 1) * m + j + 2] * 2.0 - xs[i * m + j];
    let want: Vec<f32> = (0..n - 2)
        .flat_map(|i| (0..m - 3).map(move |j| (i, j)))
        .map(|(i, j)| bw(i, j + 1) + bw(i + 1, j))
        .collect();
    let (bb, cc) = (b.clone(), c.clone());
    let sched = move |s: &mut Schedule| {
        let [i, _] = s.axes2(&cc).unwrap();
        let (io, _) = s.split(&cc, &i, 3).unwrap();
        s.compute_at(&bb, &cc, &io).unwrap();
    };
    for (what, s, t) in variants(&[c.clone()], Some(&sched)) {
        let r = run(
            &s,
            &[a.clone(), c.clone()],
            t,
            &[&x],
            &[(&[n - 2, m - 3], DType::F32)],
        );
        assert_f32_close(
            &r[0].to_vec::<f32>().unwrap(),
            &want,
            1e-5,
            &format!("offset reads on {}", what),
        );
    }
}
