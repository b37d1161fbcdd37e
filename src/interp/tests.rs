//! Tests of the interpreter on hand-built host IR: loop nests, indexing, arithmetic
//! semantics, vectors, allocations, symbolic shapes and errors.

use super::run;
use crate::error::Error;
use crate::lower::ir::{Buffer, ForKind, LoweredFunc, Scope, Stmt};
use crate::runtime::NdArray;
use crate::te::*;

/// Helpers to build IR by hand (shared with the GPU tests).
pub(super) mod build {
    use super::*;

    /// A function without shape variables.
    pub fn func(params: Vec<Buffer>, body: Stmt) -> LoweredFunc {
        LoweredFunc {
            name: "f".into(),
            params,
            shape_vars: vec![],
            body,
        }
    }
    /// A buffer of constant shape.
    pub fn buf(name: &str, dt: DType, shape: &[i64]) -> Buffer {
        buf_in(name, dt, shape, Scope::Global)
    }
    /// A buffer of constant shape in a scope.
    pub fn buf_in(name: &str, dt: DType, shape: &[i64], scope: Scope) -> Buffer {
        Buffer::new(
            name,
            dt,
            shape.iter().map(|&d| Expr::int(d)).collect(),
            scope,
        )
    }
    /// `b[idx] = v` (flat).
    pub fn st(b: &Buffer, idx: impl Into<Expr>, v: impl Into<Expr>) -> Stmt {
        Stmt::Store {
            buf: b.clone(),
            indices: vec![idx.into()],
            value: v.into(),
        }
    }
    /// `b[i0, i1, ...] = v`.
    pub fn st_nd(b: &Buffer, idx: Vec<Expr>, v: impl Into<Expr>) -> Stmt {
        Stmt::Store {
            buf: b.clone(),
            indices: idx,
            value: v.into(),
        }
    }
    /// `b[idx]` (flat).
    pub fn ld(b: &Buffer, idx: impl Into<Expr>) -> Expr {
        b.load(vec![idx.into()])
    }
    /// `for v in range(n)` of a kind.
    pub fn loop_(v: &Var, n: i64, kind: ForKind, body: Stmt) -> Stmt {
        Stmt::for_(v.clone(), Expr::int(0), Expr::int(n), kind, body)
    }
    /// `for v in range(n)`.
    pub fn serial(v: &Var, n: i64, body: Stmt) -> Stmt {
        loop_(v, n, ForKind::Serial, body)
    }
    /// `allocate b { body }`.
    pub fn alloc(b: &Buffer, body: Stmt) -> Stmt {
        Stmt::Allocate {
            buf: b.clone(),
            body: Box::new(body),
        }
    }
    /// An int64 variable.
    pub fn v(name: &str) -> Var {
        Var::new(name, DType::I64)
    }
    /// A vector ramp.
    pub fn ramp(base: impl Into<Expr>, stride: i64, lanes: u32) -> Expr {
        Expr::new(ExprNode::Ramp(base.into(), stride, lanes))
    }
    /// A broadcast.
    pub fn bcast(x: impl Into<Expr>, lanes: u32) -> Expr {
        Expr::new(ExprNode::Broadcast(x.into(), lanes))
    }
    /// A cast node (never folded).
    pub fn cast_node(t: DType, x: Expr) -> Expr {
        Expr::new(ExprNode::Cast(t, x))
    }
    /// An f32 constant.
    pub fn f(x: f32) -> Expr {
        Expr::from(x)
    }
}
use build::*;

/// Run a function whose last parameter is an output of `n` elements of type `dt`,
/// computing `exprs[k]` into element `k`; the inputs are given.
fn eval_into(dt: DType, inputs: Vec<(Buffer, NdArray)>, exprs: Vec<Expr>) -> NdArray {
    let n = exprs.len();
    let out = buf("out", dt, &[n as i64]);
    let body = Stmt::seq(
        exprs
            .into_iter()
            .enumerate()
            .map(|(k, e)| st(&out, k, e))
            .collect(),
    );
    let mut params: Vec<Buffer> = inputs.iter().map(|(b, _)| b.clone()).collect();
    params.push(out);
    let f = func(params, body);
    let mut arrays: Vec<NdArray> = inputs.into_iter().map(|(_, a)| a).collect();
    arrays.push(NdArray::zeros(&[n], dt));
    let mut refs: Vec<&mut NdArray> = arrays.iter_mut().collect();
    run(&f, &mut refs).unwrap();
    arrays.pop().unwrap()
}

/// An input buffer holding `data`.
fn input<T: crate::runtime::Element>(name: &str, data: &[T]) -> (Buffer, NdArray) {
    (
        buf(name, T::DTYPE, &[data.len() as i64]),
        NdArray::from_slice(&[data.len()], data).unwrap(),
    )
}

fn matmul_ir(n: i64, m: i64, kk: i64) -> (LoweredFunc, [Buffer; 3]) {
    let a = buf("A", DType::F32, &[n, kk]);
    let b = buf("B", DType::F32, &[kk, m]);
    let c = buf("C", DType::F32, &[n, m]);
    let (i, j, k) = (v("i"), v("j"), v("k"));
    let cij = i.expr() * m + j.expr();
    let body = serial(
        &i,
        n,
        serial(
            &j,
            m,
            Stmt::seq(vec![
                st(&c, cij.clone(), f(0.0)),
                serial(
                    &k,
                    kk,
                    st(
                        &c,
                        cij.clone(),
                        ld(&c, cij.clone())
                            + ld(&a, i.expr() * kk + k.expr()) * ld(&b, k.expr() * m + j.expr()),
                    ),
                ),
            ]),
        ),
    );
    (func(vec![a.clone(), b.clone(), c.clone()], body), [a, b, c])
}

fn matmul_ref(a: &[f32], b: &[f32], n: usize, m: usize, kk: usize) -> Vec<f32> {
    let mut c = vec![0f32; n * m];
    for i in 0..n {
        for j in 0..m {
            let mut s = 0f32;
            for k in 0..kk {
                s += a[i * kk + k] * b[k * m + j];
            }
            c[i * m + j] = s;
        }
    }
    c
}

#[test]
fn matmul_matches_rust_loop() {
    for &(n, m, kk) in &[(3usize, 5usize, 7usize), (64, 64, 64)] {
        let (f, _) = matmul_ir(n as i64, m as i64, kk as i64);
        let a = NdArray::random(&[n, kk], DType::F32, 1);
        let b = NdArray::random(&[kk, m], DType::F32, 2);
        let mut c = NdArray::zeros(&[n, m], DType::F32);
        run(&f, &mut [&mut a.clone(), &mut b.clone(), &mut c]).unwrap();
        let want = matmul_ref(a.as_slice().unwrap(), b.as_slice().unwrap(), n, m, kk);
        assert_eq!(
            c.to_vec::<f32>().unwrap(),
            want,
            "matmul {}x{}x{}",
            n,
            m,
            kk
        );
    }
}

#[test]
fn multi_dim_indices_are_row_major() {
    // B[j, i] = A[i, j] + A[i*4 + j] (flat and per-dimension loads of the same element).
    let a = buf("A", DType::I64, &[3, 4]);
    let b = buf("B", DType::I64, &[4, 3]);
    let (i, j) = (v("i"), v("j"));
    let body = serial(
        &i,
        3,
        serial(
            &j,
            4,
            st_nd(
                &b,
                vec![j.expr(), i.expr()],
                a.load(vec![i.expr(), j.expr()]) + ld(&a, i.expr() * 4 + j.expr()),
            ),
        ),
    );
    let f = func(vec![a, b], body);
    let mut x = NdArray::from_fn(&[3, 4], |k| k as i64);
    let mut y = NdArray::zeros(&[4, 3], DType::I64);
    run(&f, &mut [&mut x, &mut y]).unwrap();
    let want: Vec<i64> = (0..12).map(|k| 2 * ((k % 3) * 4 + k / 3) as i64).collect();
    assert_eq!(y.to_vec::<i64>().unwrap(), want);
}

#[test]
fn floor_div_mod_with_negatives_and_zero() {
    let pairs: [(i64, i64); 8] = [
        (7, 2),
        (-7, 2),
        (7, -2),
        (-7, -2),
        (5, 0),
        (-5, 0),
        (i64::MIN, -1),
        (6, 3),
    ];
    let mut data = vec![];
    for (a, b) in pairs {
        data.push(a);
        data.push(b);
    }
    let (xb, xa) = input("X", &data);
    let mut exprs = vec![];
    for k in 0..pairs.len() as i64 {
        exprs.push(floordiv(ld(&xb, 2 * k), ld(&xb, 2 * k + 1)));
        exprs.push(floormod(ld(&xb, 2 * k), ld(&xb, 2 * k + 1)));
    }
    let got = eval_into(DType::I64, vec![(xb, xa)], exprs)
        .to_vec::<i64>()
        .unwrap();
    assert_eq!(
        got,
        vec![3, 1, -4, 1, -4, -1, 3, -1, 0, 0, 0, 0, i64::MIN, 0, 2, 0]
    );

    // int32: computed (and wrapping) in 32 bits.
    let d32: Vec<i32> = vec![-7, 2, 7, -2, 3, 0, i32::MIN, -1, i32::MAX, 1];
    let (yb, ya) = input("Y", &d32);
    let e = |k: i64| ld(&yb, k);
    let exprs = vec![
        floordiv(e(0), e(1)),
        floormod(e(0), e(1)),
        floordiv(e(2), e(3)),
        floormod(e(2), e(3)),
        floordiv(e(4), e(5)),
        floormod(e(4), e(5)),
        floordiv(e(6), e(7)),
        e(8) + e(9),
        e(8) * e(8),
    ];
    let got = eval_into(DType::I32, vec![(yb, ya)], exprs)
        .to_vec::<i32>()
        .unwrap();
    assert_eq!(got, vec![-4, 1, -4, -1, 0, 0, i32::MIN, i32::MIN, 1]);
}

#[test]
fn float_mod_is_fmod_and_min_max_propagate_nan() {
    let (xb, xa) = input("X", &[-7.5f32, 2.0, f32::NAN, 1.0, -0.0, 0.0]);
    let e = |k: i64| ld(&xb, k);
    let got = eval_into(
        DType::F32,
        vec![(xb.clone(), xa)],
        vec![
            floormod(e(0), e(1)),
            min(e(2), e(3)),
            max(e(3), e(2)),
            min(e(0), e(1)),
            max(e(0), e(1)),
            e(0) / e(1),
            min(e(5), e(4)),
            max(e(4), e(5)),
        ],
    )
    .to_vec::<f32>()
    .unwrap();
    assert_eq!(got[0], -1.5);
    assert!(got[1].is_nan() && got[2].is_nan());
    assert_eq!(&got[3..6], &[-7.5, 2.0, -3.75]);
    // -0.0 < +0.0 for min and max.
    assert!(got[6] == 0.0 && got[6].is_sign_negative());
    assert!(got[7] == 0.0 && got[7].is_sign_positive());
}

#[test]
fn f32_arithmetic_rounds_every_op() {
    // 2^24 + 1 + 1 + ... stays 2^24 in f32 (it would be 2^24 + 10 in f64).
    let acc = buf("acc", DType::F32, &[1]);
    let k = v("k");
    let body = Stmt::seq(vec![
        st(&acc, 0, f(16777216.0)),
        serial(&k, 10, st(&acc, 0, ld(&acc, 0) + f(1.0))),
    ]);
    let fun = func(vec![acc], body);
    let mut out = NdArray::zeros(&[1], DType::F32);
    run(&fun, &mut [&mut out]).unwrap();
    assert_eq!(out.to_vec::<f32>().unwrap(), vec![16777216.0]);

    // Each product and sum rounded to f32, not fused or widened.
    let (xb, xa) = input("X", &[0.1f32, 3.0, 1e-8]);
    let e = |k: i64| ld(&xb, k);
    let got = eval_into(
        DType::F32,
        vec![(xb.clone(), xa)],
        vec![e(0) * e(1) + e(2), e(0) / e(1)],
    )
    .to_vec::<f32>()
    .unwrap();
    assert_eq!(got, vec![0.1f32 * 3.0 + 1e-8, 0.1f32 / 3.0]);

    // The same in f64 is computed in f64.
    let (yb, ya) = input("Y", &[0.1f64, 3.0]);
    let got = eval_into(
        DType::F64,
        vec![(yb.clone(), ya)],
        vec![ld(&yb, 0) * ld(&yb, 1)],
    )
    .to_vec::<f64>()
    .unwrap();
    assert_eq!(got, vec![0.1f64 * 3.0]);
}

#[test]
fn casts_truncate_saturate_and_wrap() {
    let (xb, xa) = input("X", &[-3.7f32, 1e10, -1e10, f32::NAN, 0.5, 0.0]);
    let e = |k: i64| cast_node(DType::I32, ld(&xb, k));
    let got = eval_into(
        DType::I32,
        vec![(xb.clone(), xa.clone())],
        (0..6).map(e).collect(),
    )
    .to_vec::<i32>()
    .unwrap();
    assert_eq!(got, vec![-3, i32::MAX, i32::MIN, 0, 0, 0]);
    let got = eval_into(
        DType::Bool,
        vec![(xb.clone(), xa)],
        (0..6).map(|k| cast_node(DType::Bool, ld(&xb, k))).collect(),
    )
    .to_vec::<bool>()
    .unwrap();
    assert_eq!(got, vec![true, true, true, true, true, false]);

    let big = (1i64 << 53) + 1;
    let (yb, ya) = input("Y", &[(1i64 << 32) + 5, -1, 2, 0, big, (1i64 << 24) + 1]);
    let e = |k: i64| ld(&yb, k);
    let got = eval_into(
        DType::I32,
        vec![(yb.clone(), ya.clone())],
        vec![cast_node(DType::I32, e(0)), cast_node(DType::I32, e(1))],
    )
    .to_vec::<i32>()
    .unwrap();
    assert_eq!(got, vec![5, -1]);
    let got = eval_into(
        DType::Bool,
        vec![(yb.clone(), ya.clone())],
        vec![cast_node(DType::Bool, e(2)), cast_node(DType::Bool, e(3))],
    )
    .to_vec::<bool>()
    .unwrap();
    assert_eq!(got, vec![true, false]);
    let got = eval_into(
        DType::F32,
        vec![(yb.clone(), ya.clone())],
        vec![
            cast_node(DType::F32, e(5)),
            cast_node(DType::F32, cast_node(DType::Bool, e(2))),
            cast_node(DType::F32, cast_node(DType::Bool, e(3))),
        ],
    )
    .to_vec::<f32>()
    .unwrap();
    assert_eq!(got, vec![((1i64 << 24) + 1) as f32, 1.0, 0.0]);
    let got = eval_into(
        DType::F64,
        vec![(yb.clone(), ya)],
        vec![cast_node(DType::F64, e(4))],
    )
    .to_vec::<f64>()
    .unwrap();
    assert_eq!(got, vec![big as f64]);

    // f64 -> f32 rounds; f64 -> i64 truncates toward zero.
    let (zb, za) = input("Z", &[0.1f64, -2.5]);
    let got = eval_into(
        DType::F32,
        vec![(zb.clone(), za.clone())],
        vec![cast_node(DType::F32, ld(&zb, 0))],
    )
    .to_vec::<f32>()
    .unwrap();
    assert_eq!(got, vec![0.1f32]);
    let got = eval_into(
        DType::I64,
        vec![(zb.clone(), za)],
        vec![cast_node(DType::I64, ld(&zb, 1))],
    )
    .to_vec::<i64>()
    .unwrap();
    assert_eq!(got, vec![-2]);
}

#[test]
fn select_and_logic() {
    let (xb, xa) = input("X", &[1i64, 5, -2]);
    let e = |k: i64| ld(&xb, k);
    let got = eval_into(
        DType::I64,
        vec![(xb.clone(), xa)],
        vec![
            select(lt(e(0), e(1)), e(0), e(1)),
            select(gt(e(0), e(1)), e(0), e(1)),
            select(and(lt(e(2), 0), not(eq(e(1), 5))), 10, 20),
            select(or(lt(e(2), 0), eq(e(1), 4)), 10, 20),
            select(ne(e(0), e(0)), 1, 2),
            select(ge(e(1), 5), 1, 2) + select(le(e(1), 4), 10, 20),
        ],
    )
    .to_vec::<i64>()
    .unwrap();
    assert_eq!(got, vec![1, 5, 20, 10, 2, 21]);
}

#[test]
fn math_functions_match_std_and_libm() {
    let xs32 = [0.5f32, -1.25, 2.0, 0.0];
    let xs64 = [0.5f64, -1.25, 2.0, 0.0];
    type F1 = fn(Expr) -> Expr;
    let fns: [(&str, F1); 10] = [
        ("exp", |x| exp(x)),
        ("log", |x| log(x)),
        ("log1p", |x| log1p(x)),
        ("sqrt", |x| sqrt(x)),
        ("tanh", |x| tanh(x)),
        ("sigmoid", |x| sigmoid(x)),
        ("erf", |x| erf(x)),
        ("abs", |x| abs(x)),
        ("floor", |x| floor(x)),
        ("ceil", |x| ceil(x)),
    ];
    let r32 = |name: &str, x: f32| -> f32 {
        match name {
            "exp" => x.exp(),
            "log" => x.ln(),
            "log1p" => x.ln_1p(),
            "sqrt" => x.sqrt(),
            "tanh" => x.tanh(),
            "sigmoid" => 1.0 / (1.0 + (-x).exp()),
            "erf" => libm::erff(x),
            "abs" => x.abs(),
            "floor" => x.floor(),
            _ => x.ceil(),
        }
    };
    let r64 = |name: &str, x: f64| -> f64 {
        match name {
            "exp" => x.exp(),
            "log" => x.ln(),
            "log1p" => x.ln_1p(),
            "sqrt" => x.sqrt(),
            "tanh" => x.tanh(),
            "sigmoid" => 1.0 / (1.0 + (-x).exp()),
            "erf" => libm::erf(x),
            "abs" => x.abs(),
            "floor" => x.floor(),
            _ => x.ceil(),
        }
    };
    for (name, mk) in fns {
        let (xb, xa) = input("X", &xs32);
        let got = eval_into(
            DType::F32,
            vec![(xb.clone(), xa)],
            (0..4).map(|k| mk(ld(&xb, k))).collect(),
        )
        .to_vec::<f32>()
        .unwrap();
        for (g, x) in got.iter().zip(xs32) {
            let w = r32(name, x);
            assert!(
                g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
                "{}f32({}) = {} want {}",
                name,
                x,
                g,
                w
            );
        }
        let (yb, ya) = input("Y", &xs64);
        let got = eval_into(
            DType::F64,
            vec![(yb.clone(), ya)],
            (0..4).map(|k| mk(ld(&yb, k))).collect(),
        )
        .to_vec::<f64>()
        .unwrap();
        for (g, x) in got.iter().zip(xs64) {
            let w = r64(name, x);
            assert!(
                g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
                "{}f64({}) = {} want {}",
                name,
                x,
                g,
                w
            );
        }
    }
    // Sanity of a few values, and pow.
    let (xb, xa) = input("X", &[0.5f32, 2.0, 3.0]);
    let e = |k: i64| ld(&xb, k);
    let got = eval_into(
        DType::F32,
        vec![(xb.clone(), xa)],
        vec![erf(e(0)), pow(e(1), e(2)), sigmoid(f(0.0)), log(f(-1.0))],
    )
    .to_vec::<f32>()
    .unwrap();
    assert!((got[0] - 0.5204999).abs() < 1e-6);
    assert_eq!(got[1], 2.0f32.powf(3.0));
    assert_eq!(got[2], 0.5);
    assert!(got[3].is_nan());
    let (yb, ya) = input("Y", &[2.0f64, 0.5]);
    let got = eval_into(
        DType::F64,
        vec![(yb.clone(), ya)],
        vec![pow(ld(&yb, 0), ld(&yb, 1))],
    )
    .to_vec::<f64>()
    .unwrap();
    assert_eq!(got, vec![2.0f64.powf(0.5)]);
}

#[test]
fn vector_ramp_load_store_gather_and_broadcast() {
    // B[ramp(4i, 1, 4)] = A[ramp(4i, 1, 4)] * x4(2) + 1   (scalar operand broadcast)
    // C[ramp(0, 2, 4)] = A[ramp(1, 3, 4)]                  (gather and scatter)
    let a = buf("A", DType::F32, &[16]);
    let b = buf("B", DType::F32, &[16]);
    let c = buf("C", DType::F32, &[8]);
    let i = v("i");
    let body = Stmt::seq(vec![
        serial(
            &i,
            4,
            st(
                &b,
                ramp(i.expr() * 4, 1, 4),
                ld(&a, ramp(i.expr() * 4, 1, 4)) * bcast(f(2.0), 4) + f(1.0),
            ),
        ),
        st(&c, ramp(0, 2, 4), ld(&a, ramp(1, 3, 4))),
        // Vector select with a vector condition, stored to the odd elements.
        st(
            &c,
            ramp(1, 2, 4),
            select(
                lt(ramp(0, 1, 4), bcast(2, 4)),
                ld(&a, ramp(0, 1, 4)),
                bcast(f(-1.0), 4),
            ),
        ),
    ]);
    let fun = func(vec![a, b, c], body);
    let mut x = NdArray::from_fn(&[16], |k| k as f32);
    let mut y = NdArray::zeros(&[16], DType::F32);
    let mut z = NdArray::zeros(&[8], DType::F32);
    run(&fun, &mut [&mut x, &mut y, &mut z]).unwrap();
    assert_eq!(
        y.to_vec::<f32>().unwrap(),
        (0..16).map(|k| k as f32 * 2.0 + 1.0).collect::<Vec<_>>()
    );
    assert_eq!(
        z.to_vec::<f32>().unwrap(),
        vec![1.0, 0.0, 4.0, 1.0, 7.0, -1.0, 10.0, -1.0]
    );
}

#[test]
fn vector_math_cast_and_multi_dim_gather() {
    // Lane-wise cast and math, and a per-dimension vector index.
    let a = buf("A", DType::I64, &[2, 4]);
    let o = buf("O", DType::F32, &[4]);
    let body = st(
        &o,
        ramp(0, 1, 4),
        sqrt(cast_node(
            DType::F32,
            a.load(vec![bcast(1, 4), ramp(0, 1, 4)]),
        )),
    );
    let fun = func(vec![a, o], body);
    let mut x = NdArray::from_slice(&[2, 4], &[0i64, 0, 0, 0, 1, 4, 9, 16]).unwrap();
    let mut y = NdArray::zeros(&[4], DType::F32);
    run(&fun, &mut [&mut x, &mut y]).unwrap();
    assert_eq!(y.to_vec::<f32>().unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
}

#[test]
fn let_statement_and_expression_with_shadowing() {
    let o = buf("O", DType::I64, &[3]);
    let x = v("x");
    let inner = Expr::new(ExprNode::Let(x.clone(), Expr::int(100), x.expr() + 1));
    let body = Stmt::Let {
        var: x.clone(),
        value: Expr::int(7),
        body: Box::new(Stmt::seq(vec![
            st(&o, 0, x.expr() * 2),
            st(&o, 1, inner),
            // After the inner let, x is 7 again.
            st(&o, 2, x.expr()),
        ])),
    };
    let fun = func(vec![o], body);
    let mut y = NdArray::zeros(&[3], DType::I64);
    run(&fun, &mut [&mut y]).unwrap();
    assert_eq!(y.to_vec::<i64>().unwrap(), vec![14, 101, 7]);
}

#[test]
fn allocate_is_poisoned_each_time() {
    // for i: allocate T[4] { O[i] = T[i]; T[i] = 5 }  -> O all poison (an allocation's
    // contents are undefined: compiled code does not clear them either).
    // allocate U[4] { for i: U[i] = A[i]*2 ; for i: P[i] = U[3-i] }
    let a = buf("A", DType::I64, &[4]);
    let o = buf("O", DType::I64, &[4]);
    let p = buf("P", DType::I64, &[4]);
    let t = buf("T", DType::I64, &[4]);
    let u = buf_in("U", DType::I64, &[4], Scope::Local);
    let i = v("i");
    let body = Stmt::seq(vec![
        serial(
            &i,
            4,
            alloc(
                &t,
                Stmt::seq(vec![
                    st(&o, i.expr(), ld(&t, i.expr())),
                    st(&t, i.expr(), 5),
                ]),
            ),
        ),
        alloc(
            &u,
            Stmt::seq(vec![
                serial(&i, 4, st(&u, i.expr(), ld(&a, i.expr()) * 2)),
                serial(&i, 4, st(&p, i.expr(), ld(&u, 3 - i.expr()))),
            ]),
        ),
    ]);
    let fun = func(vec![a, o, p], body);
    let mut x = NdArray::from_slice(&[4], &[1i64, 2, 3, 4]).unwrap();
    let mut y = NdArray::from_slice(&[4], &[9i64, 9, 9, 9]).unwrap();
    let mut z = NdArray::zeros(&[4], DType::I64);
    run(&fun, &mut [&mut x, &mut y, &mut z]).unwrap();
    let poison = super::memory::POISON_INT;
    assert_eq!(y.to_vec::<i64>().unwrap(), vec![poison; 4]);
    assert_eq!(z.to_vec::<i64>().unwrap(), vec![8, 6, 4, 2]);
}

#[test]
fn symbolic_shapes_bind_from_arguments() {
    // A[n, 3] -> B[n] = sum_j A[i, j] + n; an allocation sized by n.
    let n = v("n");
    let a = Buffer::new("A", DType::I64, vec![n.expr(), Expr::int(3)], Scope::Global);
    let b = Buffer::new("B", DType::I64, vec![n.expr()], Scope::Global);
    let t = Buffer::new("T", DType::I64, vec![n.expr()], Scope::Global);
    let (i, j) = (v("i"), v("j"));
    let body = alloc(
        &t,
        Stmt::seq(vec![
            Stmt::for_(
                i.clone(),
                Expr::int(0),
                n.expr(),
                ForKind::Serial,
                st(&t, i.expr(), 0),
            ),
            Stmt::for_(
                i.clone(),
                Expr::int(0),
                n.expr(),
                ForKind::Parallel,
                serial(
                    &j,
                    3,
                    st(
                        &t,
                        i.expr(),
                        ld(&t, i.expr()) + a.load(vec![i.expr(), j.expr()]),
                    ),
                ),
            ),
            Stmt::for_(
                i.clone(),
                Expr::int(0),
                n.expr(),
                ForKind::Vectorized,
                st(&b, i.expr(), ld(&t, i.expr()) + n.expr()),
            ),
        ]),
    );
    let fun = LoweredFunc {
        name: "sym".into(),
        params: vec![a, b],
        shape_vars: vec![n],
        body,
    };
    for len in [1usize, 5, 9] {
        let mut x = NdArray::from_fn(&[len, 3], |k| k as i64);
        let mut y = NdArray::zeros(&[len], DType::I64);
        run(&fun, &mut [&mut x, &mut y]).unwrap();
        let want: Vec<i64> = (0..len as i64).map(|r| 9 * r + 3 + len as i64).collect();
        assert_eq!(y.to_vec::<i64>().unwrap(), want);
    }
}

fn internal_msg(r: crate::error::Result<()>) -> String {
    match r {
        Err(Error::Internal { msg, .. }) => msg,
        other => panic!("expected an internal error, got {:?}", other),
    }
}

#[test]
fn out_of_bounds_accesses_are_internal_errors() {
    let a = buf("Ain", DType::F32, &[4]);
    let b = buf("Bout", DType::F32, &[4]);
    let i = v("i");
    // Load past the end.
    let fun = func(
        vec![a.clone(), b.clone()],
        serial(&i, 4, st(&b, i.expr(), ld(&a, i.expr() + 1))),
    );
    let mut x = NdArray::zeros(&[4], DType::F32);
    let mut y = NdArray::zeros(&[4], DType::F32);
    let m = internal_msg(run(&fun, &mut [&mut x, &mut y]));
    assert!(m.contains("Ain") && m.contains("index 4"), "{}", m);
    // Store before the start.
    let fun = func(
        vec![a.clone(), b.clone()],
        serial(&i, 4, st(&b, i.expr() - 1, ld(&a, i.expr()))),
    );
    let m = internal_msg(run(&fun, &mut [&mut x, &mut y]));
    assert!(m.contains("Bout") && m.contains("index -1"), "{}", m);
    // A vector lane out of bounds.
    let fun = func(
        vec![a.clone(), b.clone()],
        st(&b, ramp(0, 1, 4), ld(&a, ramp(1, 1, 4))),
    );
    let m = internal_msg(run(&fun, &mut [&mut x, &mut y]));
    assert!(m.contains("Ain") && m.contains("index 4"), "{}", m);
    // Per-dimension: [0, 5] of a [2, 4] buffer is out of bounds though flat 5 is not.
    let c = buf("C2", DType::F32, &[2, 4]);
    let fun = func(
        vec![c.clone()],
        st_nd(&c, vec![Expr::int(0), Expr::int(5)], f(1.0)),
    );
    let mut z = NdArray::zeros(&[2, 4], DType::F32);
    let m = internal_msg(run(&fun, &mut [&mut z]));
    assert!(m.contains("C2") && m.contains("dimension 1"), "{}", m);
    // The error carries the IR.
    match run(&fun, &mut [&mut z]) {
        Err(Error::Internal { ir, .. }) => assert!(ir.contains("C2[0, 5]"), "{}", ir),
        other => panic!("{:?}", other),
    }
}

#[test]
fn malformed_ir_is_an_internal_error() {
    let a = buf("A", DType::F32, &[8]);
    let mut x = NdArray::zeros(&[8], DType::F32);
    // Undefined variable.
    let ghost = v("ghost");
    let m = internal_msg(run(
        &func(vec![a.clone()], st(&a, ghost.expr(), f(1.0))),
        &mut [&mut x],
    ));
    assert!(m.contains("ghost"), "{}", m);
    // A loop variable used after its loop.
    let i = v("i");
    let body = Stmt::seq(vec![serial(&i, 2, Stmt::NoOp), st(&a, i.expr(), f(0.0))]);
    let m = internal_msg(run(&func(vec![a.clone()], body), &mut [&mut x]));
    assert!(m.contains("undefined variable i"), "{}", m);
    // Unknown buffer.
    let t = buf("Tmp", DType::F32, &[8]);
    let m = internal_msg(run(
        &func(vec![a.clone()], st(&a, 0, ld(&t, 0))),
        &mut [&mut x],
    ));
    assert!(m.contains("Tmp"), "{}", m);
    // Lanes mismatch between index and value, and between operands.
    let m = internal_msg(run(
        &func(
            vec![a.clone()],
            st(&a, ramp(0, 1, 4), ld(&a, ramp(0, 1, 2))),
        ),
        &mut [&mut x],
    ));
    assert!(m.contains("lanes"), "{}", m);
    let m = internal_msg(run(
        &func(
            vec![a.clone()],
            st(
                &a,
                ramp(0, 1, 4),
                ld(&a, ramp(0, 1, 4)) + ld(&a, ramp(0, 1, 2)),
            ),
        ),
        &mut [&mut x],
    ));
    assert!(m.contains("lanes"), "{}", m);
    // Wrong number of indices.
    let m = internal_msg(run(
        &func(
            vec![a.clone()],
            st_nd(&a, vec![Expr::int(0), Expr::int(0)], f(0.0)),
        ),
        &mut [&mut x],
    ));
    assert!(m.contains("A") && m.contains("indices"), "{}", m);
    // Store of the wrong type.
    let m = internal_msg(run(
        &func(vec![a.clone()], st(&a, 0, Expr::int(1))),
        &mut [&mut x],
    ));
    assert!(m.contains("A"), "{}", m);
    // A vector if-condition.
    let body = Stmt::if_(lt(ramp(0, 1, 4), bcast(2, 4)), st(&a, 0, f(1.0)));
    let m = internal_msg(run(&func(vec![a.clone()], body), &mut [&mut x]));
    assert!(m.contains("lanes"), "{}", m);
    // Unknown thread tag.
    let body = loop_(&i, 2, ForKind::ThreadBinding("warp.x".into()), Stmt::NoOp);
    let m = internal_msg(run(&func(vec![a.clone()], body), &mut [&mut x]));
    assert!(m.contains("warp.x"), "{}", m);
    // Nothing was written on error.
    assert_eq!(x.to_vec::<f32>().unwrap(), vec![0.0; 8]);
}

#[test]
fn bad_arguments_are_argument_errors() {
    let (f, _) = matmul_ir(2, 3, 4);
    let mut a = NdArray::zeros(&[2, 4], DType::F32);
    let mut b = NdArray::zeros(&[4, 3], DType::F32);
    let mut c = NdArray::zeros(&[2, 3], DType::F32);
    assert!(run(&f, &mut [&mut a, &mut b, &mut c]).is_ok());
    assert!(matches!(
        run(&f, &mut [&mut a, &mut b]),
        Err(Error::Argument(_))
    ));
    let mut c64 = NdArray::zeros(&[2, 3], DType::F64);
    assert!(matches!(
        run(&f, &mut [&mut a, &mut b, &mut c64]),
        Err(Error::Argument(_))
    ));
    let mut cbad = NdArray::zeros(&[3, 2], DType::F32);
    assert!(matches!(
        run(&f, &mut [&mut a, &mut b, &mut cbad]),
        Err(Error::Argument(_))
    ));
    let mut c1 = NdArray::zeros(&[6], DType::F32);
    assert!(matches!(
        run(&f, &mut [&mut a, &mut b, &mut c1]),
        Err(Error::Argument(_))
    ));
}

#[test]
fn if_else_evaluate_and_bool_buffers() {
    let o = buf("O", DType::Bool, &[4]);
    let i = v("i");
    let body = serial(
        &i,
        4,
        Stmt::seq(vec![
            Stmt::If {
                cond: eq(floormod(i.expr(), 2), 0),
                then: Box::new(st(&o, i.expr(), Expr::bool(true))),
                els: Some(Box::new(st(&o, i.expr(), Expr::bool(false)))),
            },
            Stmt::Evaluate(ld(&o, i.expr())),
            Stmt::Barrier,
            Stmt::Produce {
                name: "O".into(),
                body: Box::new(Stmt::NoOp),
            },
        ]),
    );
    let fun = func(vec![o], body);
    let mut y = NdArray::from_slice(&[4], &[false, true, true, true]).unwrap();
    run(&fun, &mut [&mut y]).unwrap();
    assert_eq!(y.to_vec::<bool>().unwrap(), vec![true, false, true, false]);
}

#[test]
fn loop_with_nonzero_min_and_empty_loops() {
    let o = buf("O", DType::I64, &[6]);
    let i = v("i");
    let body = Stmt::seq(vec![
        Stmt::for_(
            i.clone(),
            Expr::int(2),
            Expr::int(3),
            ForKind::Unrolled,
            st(&o, i.expr(), i.expr() * 10),
        ),
        Stmt::for_(
            i.clone(),
            Expr::int(0),
            Expr::int(0),
            ForKind::Serial,
            st(&o, 100, 1),
        ),
        Stmt::for_(
            i.clone(),
            Expr::int(0),
            Expr::int(-3),
            ForKind::Serial,
            st(&o, 100, 1),
        ),
        loop_(
            &i,
            2,
            ForKind::ThreadBinding("vthread".into()),
            st(&o, i.expr(), ld(&o, i.expr()) + 1),
        ),
    ]);
    let fun = func(vec![o], body);
    let mut y = NdArray::zeros(&[6], DType::I64);
    run(&fun, &mut [&mut y]).unwrap();
    assert_eq!(y.to_vec::<i64>().unwrap(), vec![1, 1, 20, 30, 40, 0]);
}
