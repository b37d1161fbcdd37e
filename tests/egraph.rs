//! The e-graph passes end to end: `egraph_index` removes the division and modulo that
//! flattening a fused axis leaves (golden IR, before and after in the dumps), scheduled
//! kernels still compute what the unscheduled computation does (interpreter and JIT,
//! factors that do not divide), the limits stop a blow-up and the dump says which, and
//! `egraph_algebra` makes softplus finite at x = 710 and 1000.

mod common;
use common::*;
use loopforge::egraph::Limits;
use loopforge::lower::{lower_traced, lower_traced_with, LowerOptions};
use loopforge::prelude::*;
use std::time::Duration;

/// C[i, j] = A[i, j] * 2 + B[i, j] on 37 x 19.
fn axpy2d() -> (Tensor, Vec<Tensor>) {
    let a = placeholder(&[37.into(), 19.into()], DType::F32, "A");
    let b = placeholder(&[37.into(), 19.into()], DType::F32, "B");
    let c = compute(&[37.into(), 19.into()], "C", |i| {
        a.at(&[i[0].clone(), i[1].clone()]) * 2.0f32 + b.at(&[i[0].clone(), i[1].clone()])
    });
    (c.clone(), vec![a, b, c])
}

fn step<'a>(steps: &'a [(String, Option<String>)], name: &str) -> &'a (String, Option<String>) {
    steps
        .iter()
        .find(|(p, _)| p == name || p.starts_with(&format!("{} [", name)))
        .unwrap_or_else(|| panic!("no pass {}", name))
}

/// Check a schedule against the unscheduled computation on the interpreter and the JIT.
fn same_as_unscheduled(c: &Tensor, args: &[Tensor], s: &Schedule, what: &str) {
    let base = create_schedule(&[c.clone()]).unwrap();
    let want = run_all(&base, args, Target::interp(), 3);
    let got = run_all(s, args, Target::interp(), 3);
    assert_outputs_close(args, &got, &want, &format!("{} on the interpreter", what));
    let got = run_all(s, args, Target::cpu(), 3);
    assert_outputs_close(args, &got, &want, &format!("{} on the CPU JIT", what));
}

#[test]
fn fuse_then_split_loses_its_div_and_mod() {
    // fuse(i, j) then split the fused axis by 16 (703 = 43 * 16 + 15: not dividing).
    // After storage_flatten and simplify, every access is
    //   C[floordiv(i.j.fused.outer * 16 + i.j.fused.inner, 19) * 19
    //     + floormod(i.j.fused.outer * 16 + i.j.fused.inner, 19)]
    // which simplify.rs cannot recombine (two different atoms of its linear form);
    // egraph_index proves it equal to i.j.fused.outer * 16 + i.j.fused.inner.
    let (c, args) = axpy2d();
    let mut s = create_schedule(&[c.clone()]).unwrap();
    let [i, j] = s.axes2(&c).unwrap();
    let f = s.fuse(&c, &[&i, &j]).unwrap();
    s.split(&c, &f, 16).unwrap();
    let (func, steps) = lower_traced(&s, &args).unwrap();
    // The IR egraph_index starts from: the last dump before it.
    let at = steps
        .iter()
        .position(|(p, _)| p.starts_with("egraph_index"))
        .unwrap();
    let before = steps[..at]
        .iter()
        .rev()
        .find_map(|(_, t)| t.as_ref())
        .unwrap();
    assert!(
        before.contains("floormod(i.j.fused.outer * 16 + i.j.fused.inner, 19)"),
        "{}",
        before
    );
    let (label, after) = step(&steps, "egraph_index");
    assert!(label.contains("saturated"), "{}", label);
    let after = after.as_ref().expect("egraph_index changes the IR");
    assert!(!after.contains("floormod"), "{}", after);
    assert!(!after.contains("floordiv"), "{}", after);
    assert!(
        after.contains("C[i.j.fused.outer * 16 + i.j.fused.inner] = "),
        "{}",
        after
    );
    golden("egraph_fuse_split", &func.to_string());
    same_as_unscheduled(&c, &args, &s, "fuse then split");
}

#[test]
fn split_then_fuse_inner_axes_recombines() {
    // split(i, 8), then fuse(i.inner, j): i = i.outer*8 + fused/19, j = fused % 19, and
    // the flat index (i.outer*8 + fused/19)*19 + fused%19 becomes i.outer*152 + fused.
    let (c, args) = axpy2d();
    let mut s = create_schedule(&[c.clone()]).unwrap();
    let [i, j] = s.axes2(&c).unwrap();
    let (_, ii) = s.split(&c, &i, 8).unwrap();
    s.fuse(&c, &[&ii, &j]).unwrap();
    let (func, _) = lower_traced(&s, &args).unwrap();
    let text = func.to_string();
    assert!(!text.contains("floormod"), "{}", text);
    same_as_unscheduled(&c, &args, &s, "split then fuse");
}

#[test]
fn scheduled_kernels_compute_the_same() {
    let (c, args) = axpy2d();
    type Sched = fn(&mut Schedule, &Tensor) -> loopforge::Result<()>;
    let cases: [(&str, Sched); 4] = [
        ("fuse, split 7, vectorize", |s, c| {
            let [i, j] = s.axes2(c)?;
            let f = s.fuse(c, &[&i, &j])?;
            let (_, fi) = s.split(c, &f, 8)?;
            s.vectorize(c, &fi)?;
            Ok(())
        }),
        ("tile 8x4, fuse the inner tile", |s, c| {
            let [i, j] = s.axes2(c)?;
            let (_, _, ii, ji) = s.tile(c, &i, &j, 8, 4)?;
            s.fuse(c, &[&ii, &ji])?;
            Ok(())
        }),
        ("fuse, split 5, split 3", |s, c| {
            let [i, j] = s.axes2(c)?;
            let f = s.fuse(c, &[&i, &j])?;
            let (fo, _) = s.split(c, &f, 5)?;
            s.split(c, &fo, 3)?;
            Ok(())
        }),
        ("fuse, split 38 (a multiple of the row)", |s, c| {
            let [i, j] = s.axes2(c)?;
            let f = s.fuse(c, &[&i, &j])?;
            s.split(c, &f, 38)?;
            Ok(())
        }),
    ];
    for (what, apply) in cases {
        let mut s = create_schedule(&[c.clone()]).unwrap();
        apply(&mut s, &c).unwrap();
        same_as_unscheduled(&c, &args, &s, what);
    }
}

#[test]
fn a_blow_up_hits_the_limit_and_the_dump_says_so() {
    // C[i] reads A as a 10-d view of 2s: each index is a div/mod of i, and the flattened
    // index is a sum of ten such terms. Associativity and commutativity of + make about
    // 3^10 e-nodes: the default node limit (10 000) stops it.
    let a = placeholder(&vec![Expr::from(2i64); 10], DType::F32, "A");
    let c = compute(&[1024.into()], "C", |i| {
        let x = i[0].clone();
        let idx: Vec<Expr> = (0..10)
            .map(|k| floormod(floordiv(x.clone(), 1i64 << (9 - k)), 2))
            .collect();
        a.at(&idx)
    });
    let args = vec![a, c.clone()];
    let s = create_schedule(&[c.clone()]).unwrap();
    let opts = LowerOptions {
        egraph: Limits::default(),
    };
    let (_, steps) = lower_traced_with(&s, &args, &opts).unwrap();
    let (label, _) = step(&steps, "egraph_index");
    assert!(
        label.contains("stopped by the node limit (10000)"),
        "{}",
        label
    );
    let opts = LowerOptions {
        egraph: Limits {
            nodes: 1_000_000,
            iterations: 1,
            time: Duration::from_secs(600),
        },
    };
    let (_, steps) = lower_traced_with(&s, &args, &opts).unwrap();
    let (label, _) = step(&steps, "egraph_index");
    assert!(
        label.contains("stopped by the iteration limit (1)"),
        "{}",
        label
    );
    // Whatever the limits, the kernel computes the same: C is A read in order.
    let out = run_all(&s, &args, Target::interp(), 1);
    assert_eq!(
        out[0].to_vec::<f32>().unwrap(),
        out[1].to_vec::<f32>().unwrap()
    );
}

/// y = log(1 + exp(x)) over f64 and f32 inputs: finite where exp overflows.
fn softplus(dt: DType, n: i64) -> (Tensor, Vec<Tensor>) {
    let x = placeholder(&[n.into()], dt, "X");
    let one = Expr::constant(1.0, dt);
    let y = compute(&[n.into()], "Y", |i| {
        log(one.clone() + exp(x.at(&[i[0].clone()])))
    });
    (y.clone(), vec![x, y])
}

fn arr(xs: &[f64], dt: DType) -> NdArray {
    if dt == DType::F64 {
        NdArray::from_slice(&[xs.len()], xs).unwrap()
    } else {
        let v: Vec<f32> = xs.iter().map(|x| *x as f32).collect();
        NdArray::from_vec(&[xs.len()], v).unwrap()
    }
}

fn softplus_ref(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

#[test]
fn softplus_is_finite_at_710_and_1000_on_the_interpreter_and_the_jit() {
    let xs = [
        -1000.0, -710.0, -20.0, -1.0, 0.0, 0.5, 20.0, 100.0, 710.0, 1000.0,
    ];
    for dt in [DType::F64, DType::F32] {
        let (y, args) = softplus(dt, xs.len() as i64);
        let f = lower(&create_schedule(&[y.clone()]).unwrap(), &args).unwrap();
        let text = f.to_string();
        assert!(text.contains("log1p(exp(0"), "{}", text);
        for vectorized in [false, true] {
            let mut s = create_schedule(&[y.clone()]).unwrap();
            if vectorized {
                let i = s.axes(&y).unwrap()[0].clone();
                let (_, ii) = s
                    .split(&y, &i, if dt == DType::F64 { 2 } else { 4 })
                    .unwrap();
                s.vectorize(&y, &ii).unwrap();
            }
            for t in [Target::interp(), Target::cpu()] {
                let input = arr(&xs, dt);
                let k = build(&s, &args, t.clone()).unwrap();
                let mut out = NdArray::zeros(&[xs.len()], dt);
                k.run(&[&input], &mut [&mut out]).unwrap();
                let got: Vec<f64> = (0..xs.len()).map(|k| out.get_f64(k)).collect();
                for (x, g) in xs.iter().zip(&got) {
                    let want = softplus_ref(*x);
                    assert!(g.is_finite(), "{:?} {:?}: softplus({}) = {}", dt, t, x, g);
                    assert!(
                        (g - want).abs() <= 1e-6 * want.abs().max(1.0),
                        "{:?} {:?}: softplus({}) = {}, want {}",
                        dt,
                        t,
                        x,
                        g,
                        want
                    );
                }
            }
        }
    }
}

#[test]
fn exp_log_pow_and_shared_subexpressions() {
    let n = 37i64;
    let a = placeholder(&[n.into()], DType::F32, "A");
    let b = placeholder(&[n.into()], DType::F32, "B");
    let e = compute(&[n.into()], "E", |i| exp(log(a.at(&[i[0].clone()]))));
    let p = compute(&[n.into()], "P", |i| {
        pow(a.at(&[i[0].clone()]) + b.at(&[i[0].clone()]), 2.0f32)
    });
    for (out, args) in [
        (e.clone(), vec![a.clone(), e.clone()]),
        (p.clone(), vec![a.clone(), b.clone(), p.clone()]),
    ] {
        let f = lower(&create_schedule(&[out.clone()]).unwrap(), &args).unwrap();
        let text = f.to_string();
        assert!(!text.contains("exp(") && !text.contains("pow("), "{}", text);
        if out.name() == "P" {
            assert!(
                text.contains("let cse0 = A[i] + B[i] in cse0 * cse0"),
                "{}",
                text
            );
        }
    }
    // Positive inputs: exp(log x) is x exactly; pow(a + b, 2) is (a + b)^2 exactly.
    let xs: Vec<f64> = (0..n).map(|k| 0.25 + k as f64 * 1.5).collect();
    let ys: Vec<f64> = (0..n).map(|k| k as f64 * 0.75 - 3.0).collect();
    let xa = arr(&xs, DType::F32);
    let ya = arr(&ys, DType::F32);
    for t in [Target::interp(), Target::cpu()] {
        let ke = build(
            &create_schedule(&[e.clone()]).unwrap(),
            &[a.clone(), e.clone()],
            t.clone(),
        )
        .unwrap();
        let mut out = NdArray::zeros(&[n as usize], DType::F32);
        ke.run(&[&xa], &mut [&mut out]).unwrap();
        assert_eq!(out.to_vec::<f32>().unwrap(), xa.to_vec::<f32>().unwrap());
        let kp = build(
            &create_schedule(&[p.clone()]).unwrap(),
            &[a.clone(), b.clone(), p.clone()],
            t.clone(),
        )
        .unwrap();
        let mut out = NdArray::zeros(&[n as usize], DType::F32);
        kp.run(&[&xa, &ya], &mut [&mut out]).unwrap();
        let want: Vec<f32> = xs
            .iter()
            .zip(&ys)
            .map(|(x, y)| {
                let s = *x as f32 + *y as f32;
                s * s
            })
            .collect();
        assert_eq!(out.to_vec::<f32>().unwrap(), want);
    }
}
