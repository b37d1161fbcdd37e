//! Tests of vector code: f32x4/f64x2/i32x4/i64x2 arithmetic, contiguous and strided
//! (gather/scatter) accesses, broadcast indices, masks and select, vector casts, vector math
//! calls and ramps as values.

#![allow(
    clippy::needless_range_loop,
    clippy::type_complexity,
    clippy::neg_cmp_op_on_partial_ord
)]

use super::tests::{
    bin, buf, f32s, f64s, floordiv_ref, floormod_ref, func, i32s, i64s, iv, load, loop_, run,
    store, ALL_MATH, MATH_INPUTS,
};
use crate::lower::ir::Stmt;
use crate::runtime::NdArray;
use crate::te::{self, BinOp, DType, Expr, ExprNode, MathFn};

fn ramp(base: Expr, stride: i64, lanes: u32) -> Expr {
    Expr::new(ExprNode::Ramp(base, stride, lanes))
}
fn bcast(x: impl Into<Expr>, lanes: u32) -> Expr {
    Expr::new(ExprNode::Broadcast(x.into(), lanes))
}

#[test]
fn f32x4_axpy_contiguous() {
    // for i in 0..n/4: y[ramp(4i,1,4)] = x[ramp] * x4(2.5) + y[ramp]
    let n = 64i64;
    let x = buf("x", DType::F32, n);
    let y = buf("y", DType::F32, n);
    let i = iv("i");
    let r = ramp(i.expr() * 4, 1, 4);
    let val = bin(
        BinOp::Add,
        bin(BinOp::Mul, load(&x, r.clone()), bcast(2.5f32, 4)),
        load(&y, r.clone()),
    );
    let f = func(&[&x, &y], &[], loop_(&i, n / 4, store(&y, r, val)));
    let xs: Vec<f32> = (0..n).map(|k| k as f32 * 0.5).collect();
    let ys: Vec<f32> = (0..n).map(|k| 3.0 - k as f32).collect();
    let (mut xa, mut ya) = (f32s(&xs), f32s(&ys));
    run(&f, &mut [&mut xa, &mut ya], &[]);
    let got = ya.to_vec::<f32>().unwrap();
    for k in 0..n as usize {
        assert!(
            (got[k] - (xs[k] * 2.5 + ys[k])).abs() <= 1e-5 * (1.0 + got[k].abs()),
            "{}",
            k
        );
    }
}

#[test]
fn f64x2_contiguous_unaligned_offset() {
    // y[ramp(2i+1,1,2)] = x[ramp(2i+1,1,2)] / x2(4) - x2(1)   (odd offset: unaligned vectors)
    let n = 21i64;
    let x = buf("x", DType::F64, n);
    let y = buf("y", DType::F64, n);
    let i = iv("i");
    let r = ramp(i.expr() * 2 + 1, 1, 2);
    let val = bin(
        BinOp::Sub,
        bin(BinOp::Div, load(&x, r.clone()), bcast(4.0f64, 2)),
        bcast(1.0f64, 2),
    );
    let f = func(&[&x, &y], &[], loop_(&i, 10, store(&y, r, val)));
    let xs: Vec<f64> = (0..n).map(|k| k as f64).collect();
    let (mut xa, mut ya) = (f64s(&xs), f64s(&vec![-9.0; n as usize]));
    run(&f, &mut [&mut xa, &mut ya], &[]);
    let got = ya.to_vec::<f64>().unwrap();
    assert_eq!(got[0], -9.0);
    for k in 1..n as usize {
        assert_eq!(got[k], xs[k] / 4.0 - 1.0);
    }
}

#[test]
fn stride3_gather_scatter_f32x4_and_f64x2() {
    // out[ramp(3*4i, 3, 4)] = in[ramp(3*4i + 1, 3, 4)] + x4(1)
    let n = 3 * 4 * 5;
    let a = buf("a", DType::F32, n + 1);
    let o = buf("o", DType::F32, n);
    let i = iv("i");
    let val = bin(
        BinOp::Add,
        load(&a, ramp(i.expr() * 12 + 1, 3, 4)),
        bcast(1.0f32, 4),
    );
    let f = func(
        &[&a, &o],
        &[],
        loop_(&i, 5, store(&o, ramp(i.expr() * 12, 3, 4), val)),
    );
    let xs: Vec<f32> = (0..n + 1).map(|k| k as f32).collect();
    let (mut aa, mut oa) = (f32s(&xs), f32s(&vec![0.0; n as usize]));
    run(&f, &mut [&mut aa, &mut oa], &[]);
    let got = oa.to_vec::<f32>().unwrap();
    for k in 0..n as usize {
        assert_eq!(
            got[k],
            if k % 3 == 0 { xs[k + 1] + 1.0 } else { 0.0 },
            "k={}",
            k
        );
    }
    // f64x2 with negative stride
    let a = buf("a", DType::F64, 10);
    let o = buf("o", DType::F64, 10);
    let val = bin(
        BinOp::Mul,
        load(&a, ramp(9 - i.expr() * 2, -1, 2)),
        bcast(2.0f64, 2),
    );
    let f = func(
        &[&a, &o],
        &[],
        loop_(&i, 5, store(&o, ramp(i.expr() * 2, 1, 2), val)),
    );
    let xs: Vec<f64> = (0..10).map(|k| k as f64).collect();
    let (mut aa, mut oa) = (f64s(&xs), f64s(&[0.0; 10]));
    run(&f, &mut [&mut aa, &mut oa], &[]);
    assert_eq!(
        oa.to_vec::<f64>().unwrap(),
        (0..10).rev().map(|k| k as f64 * 2.0).collect::<Vec<_>>()
    );
}

#[test]
fn stride2_loads_f32x4_and_i32x4() {
    // o[ramp(4i, 1, 4)] = a[ramp(8i + off, 2, 4)] + x4(1) and q[..] = b[..] (i32): two
    // overlapping vector loads and a shuffle. The last ramp ends on the buffer's last
    // element (`8 * 5 + off + 6`), so nothing may be loaded past it.
    for off in [0i64, 1] {
        let n = 8 * 5 + off + 7;
        let a = buf("a", DType::F32, n);
        let b = buf("b", DType::I32, n);
        let o = buf("o", DType::F32, 24);
        let q = buf("q", DType::I32, 24);
        let i = iv("i");
        let src = ramp(i.expr() * 8 + off as i32, 2, 4);
        let dst = ramp(i.expr() * 4, 1, 4);
        let body = crate::lower::ir::Stmt::seq(vec![
            store(
                &o,
                dst.clone(),
                bin(BinOp::Add, load(&a, src.clone()), bcast(1.0f32, 4)),
            ),
            store(&q, dst, load(&b, src)),
        ]);
        let f = func(&[&a, &b, &o, &q], &[], loop_(&i, 6, body));
        let xs: Vec<f32> = (0..n).map(|k| k as f32 * 0.5).collect();
        let ks: Vec<i32> = (0..n as i32).map(|k| 3 * k - 7).collect();
        let (mut aa, mut ba) = (f32s(&xs), i32s(&ks));
        let (mut oa, mut qa) = (f32s(&[0.0; 24]), i32s(&[0; 24]));
        run(&f, &mut [&mut aa, &mut ba, &mut oa, &mut qa], &[]);
        let (got, goti) = (oa.to_vec::<f32>().unwrap(), qa.to_vec::<i32>().unwrap());
        for k in 0..24usize {
            let src = (k / 4) * 8 + off as usize + 2 * (k % 4);
            assert_eq!(got[k], xs[src] + 1.0, "off={} k={}", off, k);
            assert_eq!(goti[k], ks[src], "off={} k={}", off, k);
        }
    }
}

#[test]
fn broadcast_index_load_and_store() {
    // out[ramp(4i,1,4)] = a[x4(i)] * b[ramp(4i,1,4)];  last[x4(0)] = b[ramp(0,1,4)] (last lane wins)
    let n = 16i64;
    let a = buf("a", DType::F32, 4);
    let b = buf("b", DType::F32, n);
    let o = buf("o", DType::F32, n);
    let last = buf("last", DType::F32, 1);
    let i = iv("i");
    let r = ramp(i.expr() * 4, 1, 4);
    let body = te::Expr::int(0);
    let _ = body;
    let f = func(
        &[&a, &b, &o, &last],
        &[],
        crate::lower::ir::Stmt::seq(vec![
            loop_(
                &i,
                4,
                store(
                    &o,
                    r.clone(),
                    bin(BinOp::Mul, load(&a, bcast(i.expr(), 4)), load(&b, r)),
                ),
            ),
            store(&last, bcast(0, 4), load(&b, ramp(Expr::int(0), 1, 4))),
        ]),
    );
    let av = [1.0f32, 2.0, 3.0, 4.0];
    let bv: Vec<f32> = (0..n).map(|k| k as f32 + 0.5).collect();
    let (mut aa, mut ba, mut oa, mut la) = (
        f32s(&av),
        f32s(&bv),
        f32s(&vec![0.0; n as usize]),
        f32s(&[0.0]),
    );
    run(&f, &mut [&mut aa, &mut ba, &mut oa, &mut la], &[]);
    let got = oa.to_vec::<f32>().unwrap();
    for k in 0..n as usize {
        assert_eq!(got[k], av[k / 4] * bv[k]);
    }
    assert_eq!(la.to_vec::<f32>().unwrap()[0], bv[3]);
}

#[test]
fn int_vectors_arith_and_divmod() {
    // i32x4 and i64x2: add, sub, mul, min, max, div/mod by 4, by 3, by -2 and by a vector.
    for dt in [DType::I32, DType::I64] {
        let lanes: u32 = if dt == DType::I32 { 4 } else { 2 };
        let l = lanes as i64;
        let n = 8 * l;
        let a = buf("a", dt, n);
        let b = buf("b", dt, n);
        let ops: Vec<(
            &str,
            Box<dyn Fn(Expr, Expr) -> Expr>,
            Box<dyn Fn(i64, i64) -> i64>,
        )> = vec![
            (
                "add",
                Box::new(|x, y| bin(BinOp::Add, x, y)),
                Box::new(|x, y| x + y),
            ),
            (
                "sub",
                Box::new(|x, y| bin(BinOp::Sub, x, y)),
                Box::new(|x, y| x - y),
            ),
            (
                "mul",
                Box::new(|x, y| bin(BinOp::Mul, x, y)),
                Box::new(|x, y| x * y),
            ),
            (
                "min",
                Box::new(|x, y| bin(BinOp::Min, x, y)),
                Box::new(|x: i64, y| x.min(y)),
            ),
            (
                "max",
                Box::new(|x, y| bin(BinOp::Max, x, y)),
                Box::new(|x: i64, y| x.max(y)),
            ),
            (
                "div",
                Box::new(|x, y| bin(BinOp::Div, x, y)),
                Box::new(floordiv_ref),
            ),
            (
                "mod",
                Box::new(|x, y| bin(BinOp::Mod, x, y)),
                Box::new(floormod_ref),
            ),
        ];
        let av: Vec<i64> = (0..n).map(|k| k * 5 - 19).collect();
        let bv: Vec<i64> = (0..n).map(|k| (k % 7) - 3).collect();
        let mk = |v: &[i64]| {
            if dt == DType::I32 {
                i32s(&v.iter().map(|x| *x as i32).collect::<Vec<_>>())
            } else {
                i64s(v)
            }
        };
        for (name, op, reference) in &ops {
            for divisor in ["vec", "4", "3", "-2", "0", "1"] {
                let o = buf("o", dt, n);
                let i = iv("i");
                let r = ramp(i.expr() * l, 1, lanes);
                let rhs = match divisor {
                    "vec" => load(&b, r.clone()),
                    c => bcast(Expr::int_of(c.parse().unwrap(), dt), lanes),
                };
                let f = func(
                    &[&a, &b, &o],
                    &[],
                    loop_(&i, 8, store(&o, r.clone(), op(load(&a, r), rhs))),
                );
                let (mut aa, mut ba, mut oa) = (mk(&av), mk(&bv), mk(&vec![0; n as usize]));
                run(&f, &mut [&mut aa, &mut ba, &mut oa], &[]);
                let got = oa.to_f64_vec();
                for k in 0..n as usize {
                    let y = if divisor == "vec" {
                        bv[k]
                    } else {
                        divisor.parse().unwrap()
                    };
                    assert_eq!(
                        got[k] as i64,
                        reference(av[k], y),
                        "{} {} {} {} ({})",
                        name,
                        av[k],
                        y,
                        divisor,
                        dt
                    );
                }
            }
        }
    }
}

#[test]
fn vector_select_masks_and_logic() {
    // relu with a twist on f32x4 and f64x2:
    //   o = select((x > 0 && !(x > 3)) || x == -2, x, x * 0.5)
    for dt in [DType::F32, DType::F64] {
        let lanes: u32 = if dt == DType::F32 { 4 } else { 2 };
        let n = 16i64;
        let x = buf("x", dt, n);
        let o = buf("o", dt, n);
        let fl = buf("fl", DType::Bool, n);
        let i = iv("i");
        let r = ramp(i.expr() * lanes as i64, 1, lanes);
        let xv = load(&x, r.clone());
        let c = |v: f64| bcast(Expr::float_of(v, dt), lanes);
        let cond = Expr::new(ExprNode::Or(
            Expr::new(ExprNode::And(
                Expr::new(ExprNode::Cmp(te::CmpOp::Gt, xv.clone(), c(0.0))),
                Expr::new(ExprNode::Not(Expr::new(ExprNode::Cmp(
                    te::CmpOp::Gt,
                    xv.clone(),
                    c(3.0),
                )))),
            )),
            Expr::new(ExprNode::Cmp(te::CmpOp::Eq, xv.clone(), c(-2.0))),
        ));
        let sel = Expr::new(ExprNode::Select(
            cond.clone(),
            xv.clone(),
            bin(BinOp::Mul, xv, c(0.5)),
        ));
        let body =
            crate::lower::ir::Stmt::seq(vec![store(&o, r.clone(), sel), store(&fl, r, cond)]);
        let f = func(&[&x, &o, &fl], &[], loop_(&i, n / lanes as i64, body));
        let xs: Vec<f64> = (0..n).map(|k| k as f64 * 0.75 - 4.0).collect();
        let mut xa = if dt == DType::F32 {
            f32s(&xs.iter().map(|v| *v as f32).collect::<Vec<_>>())
        } else {
            f64s(&xs)
        };
        let mut oa = NdArray::zeros(&[n as usize], dt);
        let mut fa = NdArray::zeros(&[n as usize], DType::Bool);
        run(&f, &mut [&mut xa, &mut oa, &mut fa], &[]);
        let (got, flags) = (oa.to_f64_vec(), fa.to_vec::<bool>().unwrap());
        for k in 0..n as usize {
            let v = xs[k];
            let cnd = (v > 0.0 && !(v > 3.0)) || v == -2.0;
            assert_eq!(got[k], if cnd { v } else { v * 0.5 }, "{} {}", dt, v);
            assert_eq!(flags[k], cnd, "{} {}", dt, v);
        }
    }
}

#[test]
fn vector_casts() {
    // f32x4 -> i32x4 (saturating), i32x4 -> f32x4, f64x2 -> i64x2, i64x2 -> f64x2,
    // f32x4 -> bool mask -> i32x4.
    let xs = [1.5f32, -1.5, 3e9, f32::NAN, -3e9, 0.0, 7.9, -0.2];
    let x = buf("x", DType::F32, 8);
    let oi = buf("oi", DType::I32, 8);
    let of = buf("of", DType::F32, 8);
    let ob = buf("ob", DType::I32, 8);
    let i = iv("i");
    let r = ramp(i.expr() * 4, 1, 4);
    let xv = load(&x, r.clone());
    let ci = Expr::new(ExprNode::Cast(DType::I32, xv.clone()));
    let body = crate::lower::ir::Stmt::seq(vec![
        store(&oi, r.clone(), ci.clone()),
        store(&of, r.clone(), Expr::new(ExprNode::Cast(DType::F32, ci))),
        store(
            &ob,
            r,
            Expr::new(ExprNode::Cast(
                DType::I32,
                Expr::new(ExprNode::Cast(DType::Bool, xv)),
            )),
        ),
    ]);
    let f = func(&[&x, &oi, &of, &ob], &[], loop_(&i, 2, body));
    let (mut xa, mut a1, mut a2, mut a3) =
        (f32s(&xs), i32s(&[0; 8]), f32s(&[0.0; 8]), i32s(&[0; 8]));
    run(&f, &mut [&mut xa, &mut a1, &mut a2, &mut a3], &[]);
    for k in 0..8 {
        assert_eq!(a1.to_vec::<i32>().unwrap()[k], xs[k] as i32, "{}", xs[k]);
        assert_eq!(a2.to_vec::<f32>().unwrap()[k], xs[k] as i32 as f32);
        assert_eq!(a3.to_vec::<i32>().unwrap()[k], (xs[k] != 0.0) as i32);
    }
    // 64-bit lanes
    let ds = [1.5f64, -1.5, 1e300, f64::NAN];
    let x = buf("x", DType::F64, 4);
    let oi = buf("oi", DType::I64, 4);
    let of = buf("of", DType::F64, 4);
    let r = ramp(i.expr() * 2, 1, 2);
    let ci = Expr::new(ExprNode::Cast(DType::I64, load(&x, r.clone())));
    let body = crate::lower::ir::Stmt::seq(vec![
        store(&oi, r.clone(), ci.clone()),
        store(&of, r, Expr::new(ExprNode::Cast(DType::F64, ci))),
    ]);
    let f = func(&[&x, &oi, &of], &[], loop_(&i, 2, body));
    let (mut xa, mut a1, mut a2) = (f64s(&ds), i64s(&[0; 4]), f64s(&[0.0; 4]));
    run(&f, &mut [&mut xa, &mut a1, &mut a2], &[]);
    for k in 0..4 {
        assert_eq!(a1.to_vec::<i64>().unwrap()[k], ds[k] as i64);
        assert_eq!(a2.to_vec::<f64>().unwrap()[k], ds[k] as i64 as f64);
    }
}

#[test]
fn vector_math_calls() {
    let n = MATH_INPUTS.len(); // 12: a multiple of 4 and 2
    for f in ALL_MATH {
        for dt in [DType::F32, DType::F64] {
            let lanes: u32 = if dt == DType::F32 { 4 } else { 2 };
            let x = buf("x", dt, n);
            let o = buf("o", dt, n);
            let i = iv("i");
            let r = ramp(i.expr() * lanes as i64, 1, lanes);
            let mut args = vec![load(&x, r.clone())];
            if f == MathFn::Pow {
                args.push(bcast(Expr::float_of(1.5, dt), lanes));
            }
            let call = Expr::new(ExprNode::Call(f, args));
            let fun = func(
                &[&x, &o],
                &[],
                loop_(&i, n as i64 / lanes as i64, store(&o, r, call)),
            );
            let mut xa = if dt == DType::F32 {
                f32s(&MATH_INPUTS.iter().map(|v| *v as f32).collect::<Vec<_>>())
            } else {
                f64s(&MATH_INPUTS)
            };
            let mut oa = NdArray::zeros(&[n], dt);
            run(&fun, &mut [&mut xa, &mut oa], &[]);
            // Compare with the scalar kernel's results (already checked against Rust).
            let xs = buf("x", dt, n);
            let os = buf("o", dt, n);
            let mut sargs = vec![load(&xs, i.expr())];
            if f == MathFn::Pow {
                sargs.push(Expr::float_of(1.5, dt));
            }
            let scall = Expr::new(ExprNode::Call(f, sargs));
            let sfun = func(
                &[&xs, &os],
                &[],
                loop_(&i, n as i64, store(&os, i.expr(), scall)),
            );
            let mut sa = NdArray::zeros(&[n], dt);
            run(&sfun, &mut [&mut xa, &mut sa], &[]);
            assert!(
                oa.allclose(&sa, 0.0, 0.0),
                "{} {}: {:?} vs {:?}",
                f.name(),
                dt,
                oa,
                sa
            );
        }
    }
}

#[test]
fn ramp_values_and_vector_let() {
    // o[ramp(2i,1,2)] = let v = ramp(2i, 1, 2) * x2(3) in v + v      (i64x2)
    // p[ramp(4i,1,4)] = i32(ramp(4i,1,4)) needs an i64x4 -> not allowed; use i32 ramp instead
    let o = buf("o", DType::I64, 8);
    let p = buf("p", DType::I32, 8);
    let i = iv("i");
    let v = te::Var::new("v", DType::I64);
    let rv = bin(BinOp::Mul, ramp(i.expr() * 2, 1, 2), bcast(3, 2));
    let e = Expr::new(ExprNode::Let(
        v.clone(),
        rv,
        bin(BinOp::Add, v.expr(), v.expr()),
    ));
    let i32base = Expr::new(ExprNode::Cast(DType::I32, i.expr() * 4));
    let body = crate::lower::ir::Stmt::seq(vec![
        store(&o, ramp(i.expr() * 2, 1, 2), e),
        crate::lower::ir::Stmt::Store {
            buf: p.clone(),
            indices: vec![ramp(i.expr() * 4, 1, 4)],
            value: ramp(i32base, -1, 4),
        },
    ]);
    let f = func(&[&o, &p], &[], loop_(&i, 2, body));
    let (mut oa, mut pa) = (i64s(&[0; 8]), i32s(&[0; 8]));
    run(&f, &mut [&mut oa, &mut pa], &[]);
    assert_eq!(oa.to_vec::<i64>().unwrap()[..4], [0, 6, 12, 18]);
    assert_eq!(pa.to_vec::<i32>().unwrap(), vec![0, -1, -2, -3, 4, 3, 2, 1]);
}

#[test]
fn wider_than_128_bits_is_a_target_error() {
    let x = buf("x", DType::F32, 16);
    let i = iv("i");
    let r = ramp(i.expr() * 8, 1, 8);
    let f = func(&[&x], &[], loop_(&i, 2, store(&x, r.clone(), load(&x, r))));
    match super::compile(&f) {
        Err(crate::error::Error::Target(m)) => assert!(m.contains("128-bit"), "{}", m),
        other => panic!("expected a target error, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn vector_fma_pattern_both_orders() {
    // y = c + a*b and y = a*b + c in f32x4 and f64x2, compared with mul_add within rounding.
    for dt in [DType::F32, DType::F64] {
        let lanes: u32 = if dt == DType::F32 { 4 } else { 2 };
        let n = 8i64;
        let a = buf("a", dt, n);
        let b = buf("b", dt, n);
        let o1 = buf("o1", dt, n);
        let o2 = buf("o2", dt, n);
        let i = iv("i");
        let r = ramp(i.expr() * lanes as i64, 1, lanes);
        let m = bin(BinOp::Mul, load(&a, r.clone()), load(&b, r.clone()));
        let c = bcast(Expr::float_of(0.25, dt), lanes);
        let body = crate::lower::ir::Stmt::seq(vec![
            store(&o1, r.clone(), bin(BinOp::Add, m.clone(), c.clone())),
            store(&o2, r, bin(BinOp::Add, c, m)),
        ]);
        let f = func(&[&a, &b, &o1, &o2], &[], loop_(&i, n / lanes as i64, body));
        let av: Vec<f64> = (0..n).map(|k| k as f64 * 0.3 - 1.0).collect();
        let bv: Vec<f64> = (0..n).map(|k| 2.0 - k as f64 * 0.7).collect();
        let mk = |v: &[f64]| {
            if dt == DType::F32 {
                f32s(&v.iter().map(|x| *x as f32).collect::<Vec<_>>())
            } else {
                f64s(v)
            }
        };
        let (mut aa, mut ba, mut oa1, mut oa2) = (mk(&av), mk(&bv), mk(&[0.0; 8]), mk(&[0.0; 8]));
        run(&f, &mut [&mut aa, &mut ba, &mut oa1, &mut oa2], &[]);
        let (g1, g2) = (oa1.to_f64_vec(), oa2.to_f64_vec());
        let (af, bf) = (aa.to_f64_vec(), ba.to_f64_vec());
        for k in 0..n as usize {
            let want = af[k] * bf[k] + 0.25;
            assert!(
                (g1[k] - want).abs() < 1e-5 && (g2[k] - want).abs() < 1e-5,
                "{} {} {}",
                g1[k],
                g2[k],
                want
            );
        }
    }
}

#[test]
fn promoted_local_buffer_mixed_accesses() {
    // allocate acc[8] (f32, vector chunks of 4):
    //   acc[ramp(0)] = x4(0); acc[ramp(4)] = x4(1)
    //   for k: acc[ramp(0)] += x[ramp(4k)]; acc[ramp(4)] += x4(x[k])
    //   acc[2] = acc[2] * 10            (scalar read/write of a vector chunk)
    //   o[ramp(0)] = acc[ramp(0)]; o[ramp(4)] = acc[ramp(4)]; o[8] = acc[5]; o[ramp(9,1,4)] = acc[x4(7)]
    let k = iv("k");
    let x = buf("x", DType::F32, 16);
    let o = buf("o", DType::F32, 13);
    let acc = crate::lower::ir::Buffer::new(
        "acc",
        DType::F32,
        vec![Expr::int(8)],
        crate::lower::ir::Scope::Local,
    );
    let r0 = || ramp(Expr::int(0), 1, 4);
    let r4 = || ramp(Expr::int(4), 1, 4);
    use crate::lower::ir::Stmt;
    let body = Stmt::seq(vec![
        store(&acc, r0(), bcast(0.0f32, 4)),
        store(&acc, r4(), bcast(1.0f32, 4)),
        loop_(
            &k,
            4,
            Stmt::seq(vec![
                store(
                    &acc,
                    r0(),
                    bin(
                        BinOp::Add,
                        load(&acc, r0()),
                        load(&x, ramp(k.expr() * 4, 1, 4)),
                    ),
                ),
                store(
                    &acc,
                    r4(),
                    bin(BinOp::Add, load(&acc, r4()), bcast(load(&x, k.expr()), 4)),
                ),
            ]),
        ),
        store(&acc, 2, load(&acc, 2) * 10.0f32),
        store(&o, r0(), load(&acc, r0())),
        store(&o, r4(), load(&acc, r4())),
        store(&o, 8, load(&acc, 5)),
        store(&o, ramp(Expr::int(9), 1, 4), load(&acc, bcast(7, 4))),
    ]);
    let f = func(
        &[&x, &o],
        &[],
        Stmt::Allocate {
            buf: acc.clone(),
            body: Box::new(body),
        },
    );
    if let crate::lower::ir::Stmt::Allocate { body, .. } = &f.body {
        assert_eq!(super::promote::plan(&acc, body, true), Some(4));
    }
    let xs: Vec<f32> = (0..16).map(|v| v as f32).collect();
    let (mut xa, mut oa) = (f32s(&xs), f32s(&[0.0; 13]));
    run(&f, &mut [&mut xa, &mut oa], &[]);
    let mut want = [0.0f32; 8];
    for kk in 0..4 {
        for l in 0..4 {
            want[l] += xs[kk * 4 + l];
            want[4 + l] += xs[kk];
        }
    }
    for w in want.iter_mut().skip(4) {
        *w += 1.0;
    }
    want[2] *= 10.0;
    let got = oa.to_vec::<f32>().unwrap();
    assert_eq!(&got[..8], &want[..]);
    assert_eq!(got[8], want[5]);
    assert_eq!(&got[9..], &[want[7]; 4]);
}

#[test]
fn promotion_is_refused_for_dynamic_indices_and_parallel_bodies() {
    use crate::lower::ir::{Buffer, Scope, Stmt};
    let k = iv("k");
    let t = Buffer::new("t", DType::I64, vec![Expr::int(4)], Scope::Local);
    let dynamic = loop_(&k, 4, store(&t, k.expr(), k.expr()));
    assert_eq!(super::promote::plan(&t, &dynamic, true), None);
    let par = super::tests::loop_k(
        &k,
        4,
        crate::lower::ir::ForKind::Parallel,
        store(&t, 0, k.expr()),
    );
    assert_eq!(super::promote::plan(&t, &par, true), None);
    assert_eq!(super::promote::plan(&t, &par, false), Some(1));
    let oob = store(&t, 4, 1);
    assert_eq!(super::promote::plan(&t, &oob, true), None);
    let misaligned = store(&t, ramp(Expr::int(1), 1, 2), bcast(1, 2));
    assert_eq!(super::promote::plan(&t, &misaligned, true), None);
    let _ = Stmt::NoOp;
    // A dynamic-index buffer still works through memory: t[k] = k*k; o[k] = t[3 - k]
    let o = buf("o", DType::I64, 4);
    let k2 = iv("k2");
    let body = Stmt::Allocate {
        buf: t.clone(),
        body: Box::new(Stmt::seq(vec![
            loop_(&k, 4, store(&t, k.expr(), k.expr() * k.expr())),
            loop_(&k2, 4, store(&o, k2.expr(), load(&t, 3 - k2.expr()))),
        ])),
    };
    let f = func(&[&o], &[], body);
    let mut oa = i64s(&[0; 4]);
    run(&f, &mut [&mut oa], &[]);
    assert_eq!(oa.to_vec::<i64>().unwrap(), vec![9, 4, 1, 0]);
}

#[test]
fn scalar_condition_selects_vectors_and_bool_vector_loads() {
    // o[ramp(4i)] = select(flag[0], x[ramp], -x[ramp]);  p[ramp(4i)] = select(m[ramp(4i)], x, x4(0))
    let x = buf("x", DType::F32, 8);
    let flag = buf("flag", DType::Bool, 1);
    let m = buf("m", DType::Bool, 8);
    let o = buf("o", DType::F32, 8);
    let p = buf("p", DType::F32, 8);
    let i = iv("i");
    let r = ramp(i.expr() * 4, 1, 4);
    let xv = load(&x, r.clone());
    let neg = bin(BinOp::Sub, bcast(0.0f32, 4), xv.clone());
    let body = crate::lower::ir::Stmt::seq(vec![
        store(
            &o,
            r.clone(),
            Expr::new(ExprNode::Select(load(&flag, 0), xv.clone(), neg)),
        ),
        store(
            &p,
            r.clone(),
            Expr::new(ExprNode::Select(load(&m, r), xv, bcast(0.0f32, 4))),
        ),
    ]);
    let f = func(&[&x, &flag, &m, &o, &p], &[], loop_(&i, 2, body));
    let xs: Vec<f32> = (1..=8).map(|v| v as f32).collect();
    let ms = [true, false, false, true, true, true, false, false];
    for fl in [true, false] {
        let (mut xa, mut fa, mut ma) = (
            f32s(&xs),
            NdArray::from_slice(&[1], &[fl]).unwrap(),
            NdArray::from_slice(&[8], &ms).unwrap(),
        );
        let (mut oa, mut pa) = (f32s(&[0.0; 8]), f32s(&[9.0; 8]));
        run(&f, &mut [&mut xa, &mut fa, &mut ma, &mut oa, &mut pa], &[]);
        let want: Vec<f32> = xs.iter().map(|v| if fl { *v } else { -*v }).collect();
        assert_eq!(oa.to_vec::<f32>().unwrap(), want);
        let want: Vec<f32> = xs
            .iter()
            .zip(ms)
            .map(|(v, b)| if b { *v } else { 0.0 })
            .collect();
        assert_eq!(pa.to_vec::<f32>().unwrap(), want);
    }
}

#[test]
fn min_max_against_constants_match_the_interpreter_bit_for_bit() {
    // relu and clip lower to a comparison and a select (scalar and vector, constant on
    // either side); NaN propagates and -0.0 < +0.0 as in the interpreter.
    let xs: Vec<f32> = vec![
        -0.0,
        0.0,
        f32::NAN,
        1.5,
        -2.0,
        6.0,
        7.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        -1e-30,
        3.0,
        -6.0,
    ];
    let n = xs.len() as i64;
    for c in [0.0f32, -0.0, 6.0, -6.0, f32::INFINITY] {
        for op in [BinOp::Min, BinOp::Max] {
            for (lanes, const_first) in [(1u32, false), (1, true), (4, false), (4, true)] {
                let x = buf("x", DType::F32, n);
                let o = buf("o", DType::F32, n);
                let i = iv("i");
                let (idx, cst) = if lanes == 1 {
                    (i.expr(), Expr::from(c))
                } else {
                    (ramp(i.expr() * 4, 1, 4), bcast(c, 4))
                };
                let v = load(&x, idx.clone());
                let e = if const_first {
                    bin(op, cst, v)
                } else {
                    bin(op, v, cst)
                };
                let f = func(
                    &[&x, &o],
                    &[],
                    loop_(&i, n / lanes as i64, store(&o, idx, e)),
                );
                let (mut xa, mut oa) = (f32s(&xs), f32s(&vec![0.0; xs.len()]));
                run(&f, &mut [&mut xa, &mut oa], &[]);
                let got = oa.to_vec::<f32>().unwrap();
                for (k, &xv) in xs.iter().enumerate() {
                    let want = if op == BinOp::Min {
                        te::arith::fmin32(xv, c)
                    } else {
                        te::arith::fmax32(xv, c)
                    };
                    let same =
                        (want.is_nan() && got[k].is_nan()) || want.to_bits() == got[k].to_bits();
                    assert!(
                        same,
                        "{:?}({}, {}) lanes {} const first {}: got {}, want {}",
                        op, xv, c, lanes, const_first, got[k], want
                    );
                }
            }
        }
    }
}

#[test]
fn vector_min_max_match_the_interpreter_bit_for_bit() {
    // Two data vectors (a max pool's window, a softmax row's maximum): every pair of
    // special values, in both orders, f32 and f64; NaN propagates (any NaN payload) and
    // -0.0 < +0.0 as in the interpreter.
    let vals = [
        -0.0f64,
        0.0,
        f64::NAN,
        1.5,
        -2.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
        1e-30,
    ];
    let (xs, ys): (Vec<f64>, Vec<f64>) = vals
        .iter()
        .flat_map(|&a| vals.iter().map(move |&b| (a, b)))
        .unzip();
    let n = xs.len() as i64;
    for dt in [DType::F32, DType::F64] {
        let lanes = 16 / dt.bytes() as i64;
        for op in [BinOp::Min, BinOp::Max] {
            let x = buf("x", dt, n);
            let y = buf("y", dt, n);
            let o = buf("o", dt, n);
            let i = iv("i");
            let idx = ramp(i.expr() * lanes, 1, lanes as u32);
            let e = bin(op, load(&x, idx.clone()), load(&y, idx.clone()));
            let f = func(&[&x, &y, &o], &[], loop_(&i, n / lanes, store(&o, idx, e)));
            let arr = |v: &[f64]| match dt {
                DType::F32 => f32s(&v.iter().map(|&a| a as f32).collect::<Vec<_>>()),
                _ => f64s(v),
            };
            let (mut xa, mut ya, mut oa) = (arr(&xs), arr(&ys), arr(&vec![0.0; xs.len()]));
            run(&f, &mut [&mut xa, &mut ya, &mut oa], &[]);
            let got: Vec<f64> = match dt {
                DType::F32 => oa
                    .to_vec::<f32>()
                    .unwrap()
                    .iter()
                    .map(|&v| v as f64)
                    .collect(),
                _ => oa.to_vec::<f64>().unwrap(),
            };
            for k in 0..xs.len() {
                // The f32 inputs are the f64 values rounded to f32.
                let (a, b) = match dt {
                    DType::F32 => (xs[k] as f32 as f64, ys[k] as f32 as f64),
                    _ => (xs[k], ys[k]),
                };
                let want = if op == BinOp::Min {
                    te::arith::fmin64(a, b)
                } else {
                    te::arith::fmax64(a, b)
                };
                let same = (want.is_nan() && got[k].is_nan())
                    || (want == got[k] && want.is_sign_negative() == got[k].is_sign_negative());
                assert!(
                    same,
                    "{} {:?}({}, {}): got {}, want {}",
                    dt, op, xs[k], ys[k], got[k], want
                );
            }
        }
    }
}

#[test]
fn vector_constants_in_a_loop_that_calls_an_intrinsic() {
    // for i in 0..4: { C = A · B (a gemm micro-kernel call);
    //                  y[ramp(4i,1,4)] = min(max(x[ramp] + C[i], x4(0)), x4(6)) * x4(0.5);
    //                  z[ramp(2i,1,2)] = w[ramp] * x2(1.5) + x2(-0.25) }
    // Vector constants in a loop of a function that calls an intrinsic are read from
    // memory where they are used (no vector register survives the call): every lane of
    // both widths, on every iteration, against the values computed here.
    use crate::schedule::create_schedule;
    use crate::te::{compute, placeholder, reduce_axis, sum};
    let a = placeholder(&[6.into(), 8.into()], DType::F32, "A");
    let b = placeholder(&[8.into(), 16.into()], DType::F32, "B");
    let k = reduce_axis(0, 8, "k");
    let c = compute(&[6.into(), 16.into()], "C", |i| {
        sum(
            a.at(&[i[0].clone(), k.x()]) * b.at(&[k.x(), i[1].clone()]),
            &[k.clone()],
        )
    });
    let mut s = create_schedule(&[c.clone()]).unwrap();
    let ci = s.axes2(&c).unwrap()[0].clone();
    s.tensorize(&c, &ci, &crate::intrinsics::gemm_f32(6, 16, 8).unwrap())
        .unwrap();
    let lowered = crate::lower::lower(&s, &[a, b, c]).unwrap();
    let mut call = None;
    lowered.body.visit(&mut |st| {
        if matches!(st, Stmt::Intrinsic(_)) {
            call = Some(st.clone());
        }
    });
    let call = call.expect("a tensorized call");
    let n = 16i64;
    let (x, y) = (buf("x", DType::F32, n), buf("y", DType::F32, n));
    let (w, z) = (buf("w", DType::F64, n / 2), buf("z", DType::F64, n / 2));
    let cbuf = lowered.params[2].clone();
    let i = iv("i");
    let (r4, r2) = (ramp(i.expr() * 4, 1, 4), ramp(i.expr() * 2, 1, 2));
    let relu6 = bin(
        BinOp::Min,
        bin(
            BinOp::Max,
            bin(
                BinOp::Add,
                load(&x, r4.clone()),
                bcast(cbuf.load(vec![i.expr()]), 4),
            ),
            bcast(0.0f32, 4),
        ),
        bcast(6.0f32, 4),
    );
    let body = loop_(
        &i,
        4,
        Stmt::seq(vec![
            call,
            store(&y, r4, bin(BinOp::Mul, relu6, bcast(0.5f32, 4))),
            store(
                &z,
                r2.clone(),
                bin(
                    BinOp::Add,
                    bin(BinOp::Mul, load(&w, r2), bcast(1.5f64, 2)),
                    bcast(-0.25f64, 2),
                ),
            ),
        ]),
    );
    let p = &lowered.params;
    let f = func(&[&p[0], &p[1], &p[2], &x, &y, &w, &z], &[], body);
    // One slot per constant site: 0, 6 and 0.5 in f32 lanes, 1.5 and -0.25 in f64 lanes.
    assert_eq!(super::compile(&f).unwrap().const_slots(), 5);
    let mut aa = NdArray::from_fn(&[6, 8], |k| (k % 5) as f32 * 0.25);
    let mut ba = NdArray::from_fn(&[8, 16], |k| (k % 3) as f32 - 1.0);
    let mut ca = NdArray::zeros(&[6, 16], DType::F32);
    let xs: Vec<f32> = (0..n).map(|k| k as f32 - 6.0).collect();
    let ws: Vec<f64> = (0..n / 2).map(|k| k as f64 * 0.75 - 2.0).collect();
    let (mut xa, mut ya) = (f32s(&xs), f32s(&[0.0; 16]));
    let (mut wa, mut za) = (f64s(&ws), f64s(&[0.0; 8]));
    run(
        &f,
        &mut [
            &mut aa, &mut ba, &mut ca, &mut xa, &mut ya, &mut wa, &mut za,
        ],
        &[],
    );
    let cs = ca.to_vec::<f32>().unwrap();
    let got = ya.to_vec::<f32>().unwrap();
    for k in 0..n as usize {
        let want = (xs[k] + cs[k / 4]).clamp(0.0, 6.0) * 0.5;
        assert_eq!(got[k], want, "y[{}]", k);
    }
    let got = za.to_vec::<f64>().unwrap();
    for k in 0..(n / 2) as usize {
        assert_eq!(got[k], ws[k] * 1.5 - 0.25, "z[{}]", k);
    }
    // The call ran: C holds the product.
    assert!(cs.iter().any(|&v| v != 0.0));
}
