//! Tests of the GPU simulation: thread-bound loops, shared and local memory, barriers
//! (a missing barrier must change the result) and barrier divergence.

use super::run;
use super::tests::build::*;
use crate::error::Error;
use crate::lower::ir::{Buffer, ForKind, LoweredFunc, Scope, Stmt};
use crate::runtime::NdArray;
use crate::te::*;

fn bind(tag: &str) -> ForKind {
    ForKind::ThreadBinding(tag.into())
}

/// Block-wise sum of `nb` blocks of `t` (a power of two) elements by a shared-memory
/// tree reduction. `barriers[0]` is the barrier after the loads, `barriers[1]` the ones
/// after each step. With `in_loop`, the steps are a serial loop reading the strides
/// from an input buffer (barrier inside a uniform loop); otherwise they are unrolled.
fn reduction(nb: i64, t: i64, barriers: [bool; 2], in_loop: bool) -> LoweredFunc {
    let a = buf("A", DType::I32, &[nb * t]);
    let b = buf("B", DType::I32, &[nb]);
    let strides = buf("Strides", DType::I64, &[t.trailing_zeros() as i64]);
    let s = buf_in("S", DType::I32, &[t], Scope::Shared);
    let (bx, tx, k) = (v("bx"), v("tx"), v("k"));
    let bar = |on: bool| if on { Stmt::Barrier } else { Stmt::NoOp };
    let step = |stride: Expr| {
        Stmt::seq(vec![
            Stmt::if_(
                lt(tx.expr(), stride.clone()),
                st(
                    &s,
                    tx.expr(),
                    ld(&s, tx.expr()) + ld(&s, tx.expr() + stride),
                ),
            ),
            bar(barriers[1]),
        ])
    };
    let steps = if in_loop {
        let stride = v("stride");
        serial(
            &k,
            t.trailing_zeros() as i64,
            Stmt::Let {
                var: stride.clone(),
                value: ld(&strides, k.expr()),
                body: Box::new(step(stride.expr())),
            },
        )
    } else {
        let mut v = vec![];
        let mut st = t / 2;
        while st >= 1 {
            v.push(step(Expr::int(st)));
            st /= 2;
        }
        Stmt::seq(v)
    };
    let body = loop_(
        &bx,
        nb,
        bind("blockIdx.x"),
        alloc(
            &s,
            loop_(
                &tx,
                t,
                bind("threadIdx.x"),
                Stmt::seq(vec![
                    st(&s, tx.expr(), ld(&a, bx.expr() * t + tx.expr())),
                    bar(barriers[0]),
                    steps,
                    Stmt::if_(eq(tx.expr(), 0), st(&b, bx.expr(), ld(&s, 0))),
                ]),
            ),
        ),
    );
    func(vec![a, strides, b], body)
}

fn run_reduction(f: &LoweredFunc, nb: usize, t: usize) -> (Vec<i32>, Vec<i32>) {
    let mut a = NdArray::random(&[nb * t], DType::I32, 7);
    let levels = t.trailing_zeros() as usize;
    let mut strides = NdArray::from_fn(&[levels], |k| (t >> (k + 1)) as i64);
    let mut b = NdArray::zeros(&[nb], DType::I32);
    run(f, &mut [&mut a, &mut strides, &mut b]).unwrap();
    let x = a.to_vec::<i32>().unwrap();
    let want = (0..nb)
        .map(|i| x[i * t..(i + 1) * t].iter().sum())
        .collect();
    (b.to_vec::<i32>().unwrap(), want)
}

#[test]
fn shared_reduction_with_barriers_is_right() {
    for in_loop in [false, true] {
        let f = reduction(4, 16, [true, true], in_loop);
        let (got, want) = run_reduction(&f, 4, 16);
        assert_eq!(got, want, "in_loop = {}", in_loop);
    }
}

#[test]
fn shared_reduction_missing_a_barrier_is_wrong() {
    for in_loop in [false, true] {
        for barriers in [[false, true], [true, false], [false, false]] {
            let f = reduction(4, 16, barriers, in_loop);
            let (got, want) = run_reduction(&f, 4, 16);
            assert_ne!(got, want, "barriers {:?}, in_loop = {}", barriers, in_loop);
        }
    }
}

/// `C = A * B` (n x n, f32) with t x t tiles staged in shared memory by a (t, t) thread
/// block, accumulating in a local buffer. Shared buffers are indexed per dimension.
fn tiled_matmul(n: i64, t: i64, first_barrier: bool, second_barrier: bool) -> LoweredFunc {
    let a = buf("A", DType::F32, &[n, n]);
    let b = buf("B", DType::F32, &[n, n]);
    let c = buf("C", DType::F32, &[n, n]);
    let as_ = buf_in("AS", DType::F32, &[t, t], Scope::Shared);
    let bs = buf_in("BS", DType::F32, &[t, t], Scope::Shared);
    let acc = buf_in("acc", DType::F32, &[1], Scope::Local);
    let (by, bx, ty, tx, ko, ki) = (v("by"), v("bx"), v("ty"), v("tx"), v("ko"), v("ki"));
    let row = by.expr() * t + ty.expr();
    let col = bx.expr() * t + tx.expr();
    let bar = |on: bool| if on { Stmt::Barrier } else { Stmt::NoOp };
    let inner = Stmt::seq(vec![
        st(&acc, 0, f(0.0)),
        serial(
            &ko,
            n / t,
            Stmt::seq(vec![
                st_nd(
                    &as_,
                    vec![ty.expr(), tx.expr()],
                    a.load(vec![row.clone(), ko.expr() * t + tx.expr()]),
                ),
                st_nd(
                    &bs,
                    vec![ty.expr(), tx.expr()],
                    b.load(vec![ko.expr() * t + ty.expr(), col.clone()]),
                ),
                bar(first_barrier),
                serial(
                    &ki,
                    t,
                    st(
                        &acc,
                        0,
                        ld(&acc, 0)
                            + as_.load(vec![ty.expr(), ki.expr()])
                                * bs.load(vec![ki.expr(), tx.expr()]),
                    ),
                ),
                bar(second_barrier),
            ]),
        ),
        st(&c, row.clone() * n + col.clone(), ld(&acc, 0)),
    ]);
    let body = loop_(
        &by,
        n / t,
        bind("blockIdx.y"),
        loop_(
            &bx,
            n / t,
            bind("blockIdx.x"),
            alloc(
                &as_,
                alloc(
                    &bs,
                    loop_(
                        &ty,
                        t,
                        bind("threadIdx.y"),
                        loop_(&tx, t, bind("threadIdx.x"), alloc(&acc, inner)),
                    ),
                ),
            ),
        ),
    );
    func(vec![a, b, c], body)
}

fn run_matmul(f: &LoweredFunc, n: usize) -> (NdArray, NdArray) {
    let mut a = NdArray::random(&[n, n], DType::F32, 3);
    let mut b = NdArray::random(&[n, n], DType::F32, 4);
    let mut c = NdArray::zeros(&[n, n], DType::F32);
    run(f, &mut [&mut a, &mut b, &mut c]).unwrap();
    let (x, y) = (a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap());
    let want = NdArray::from_fn(&[n, n], |k| {
        let (i, j) = (k / n, k % n);
        let mut s = 0f32;
        for q in 0..n {
            s += x[i * n + q] * y[q * n + j];
        }
        s
    });
    (c, want)
}

#[test]
fn tiled_shared_matmul_with_barriers_is_exact() {
    let f = tiled_matmul(16, 4, true, true);
    let (got, want) = run_matmul(&f, 16);
    assert_eq!(got.to_vec::<f32>().unwrap(), want.to_vec::<f32>().unwrap());
}

#[test]
fn tiled_shared_matmul_missing_barriers_is_wrong() {
    // Without the first barrier, threads read tiles not loaded yet; without the second
    // (loop-carried) one, early threads overwrite the tiles while others still use them.
    for (b1, b2) in [(false, true), (true, false)] {
        let f = tiled_matmul(16, 4, b1, b2);
        let (got, want) = run_matmul(&f, 16);
        assert!(
            got.max_abs_diff(&want) > 1e-3,
            "barriers ({}, {}) gave the right answer",
            b1,
            b2
        );
    }
}

#[test]
fn wrong_thread_index_is_wrong() {
    // The tiled matmul, but the B tile is loaded with tx and ty swapped.
    let n = 8;
    let good = tiled_matmul(n, 4, true, true);
    let (ty_id, tx_id) = {
        let mut ids = (0, 0);
        good.body.visit(&mut |s| {
            if let Stmt::For(f) = s {
                match f.var.name() {
                    "ty" => ids.0 = f.var.id(),
                    "tx" => ids.1 = f.var.id(),
                    _ => {}
                }
            }
        });
        ids
    };
    let swap_in_bs = |s: &Stmt| -> Stmt {
        fn go(s: &Stmt, ty: u64, tx: u64) -> Stmt {
            match s {
                Stmt::Store {
                    buf,
                    indices,
                    value,
                } if buf.name() == "BS" => {
                    let mut m = std::collections::HashMap::new();
                    let vars = value.free_vars();
                    let tyv = vars.iter().find(|v| v.id() == ty).unwrap().clone();
                    let txv = vars.iter().find(|v| v.id() == tx).unwrap().clone();
                    m.insert(ty, txv.expr());
                    m.insert(tx, tyv.expr());
                    Stmt::Store {
                        buf: buf.clone(),
                        indices: indices.clone(),
                        value: value.substitute(&m),
                    }
                }
                other => other.map(&mut |c| go(c, ty, tx), &mut |e| e.clone()),
            }
        }
        go(s, ty_id, tx_id)
    };
    let bad = LoweredFunc {
        body: swap_in_bs(&good.body),
        ..good.clone()
    };
    let (got, want) = run_matmul(&good, n as usize);
    assert_eq!(got.to_vec::<f32>().unwrap(), want.to_vec::<f32>().unwrap());
    let (got, want) = run_matmul(&bad, n as usize);
    assert!(got.max_abs_diff(&want) > 1e-3);
}

#[test]
fn local_buffers_are_per_thread_and_shared_per_block() {
    // Each thread counts into a local buffer and a shared counter (thread 0 clears it
    // first: allocations are not cleared); O[b, t] = local count, P[b] = shared count
    // (all threads of the block).
    let o = buf("O", DType::I64, &[3, 8]);
    let p = buf("P", DType::I64, &[3]);
    let loc = buf_in("loc", DType::I64, &[1], Scope::Local);
    let sh = buf_in("sh", DType::I64, &[1], Scope::Shared);
    let (bx, tx, k) = (v("bx"), v("tx"), v("k"));
    let body = loop_(
        &bx,
        3,
        bind("blockIdx.x"),
        alloc(
            &sh,
            loop_(
                &tx,
                8,
                bind("threadIdx.x"),
                alloc(
                    &loc,
                    Stmt::seq(vec![
                        Stmt::if_(eq(tx.expr(), 0), st(&sh, 0, 0)),
                        Stmt::Barrier,
                        st(&loc, 0, 0),
                        serial(&k, 5, st(&loc, 0, ld(&loc, 0) + 1)),
                        st(&sh, 0, ld(&sh, 0) + 1),
                        Stmt::Barrier,
                        st_nd(&o, vec![bx.expr(), tx.expr()], ld(&loc, 0) + tx.expr()),
                        Stmt::if_(eq(tx.expr(), 7), st(&p, bx.expr(), ld(&sh, 0))),
                    ]),
                ),
            ),
        ),
    );
    let fun = func(vec![o, p], body);
    let mut x = NdArray::zeros(&[3, 8], DType::I64);
    let mut y = NdArray::zeros(&[3], DType::I64);
    run(&fun, &mut [&mut x, &mut y]).unwrap();
    assert_eq!(
        x.to_vec::<i64>().unwrap(),
        (0..24).map(|k| 5 + k % 8).collect::<Vec<i64>>()
    );
    assert_eq!(y.to_vec::<i64>().unwrap(), vec![8, 8, 8]);
}

#[test]
fn threads_only_kernel_and_smaller_extents_are_guarded() {
    // No blockIdx; two sibling threadIdx.x loops of extents 8 and 4 (launch: 8 threads).
    // O[t] = t for t < 8, then O[t] += 100 for t < 4 after a barrier. Code outside the
    // thread loops runs in every thread: Q[0] counts them.
    let o = buf("O", DType::I64, &[8]);
    let q = buf("Q", DType::I64, &[1]);
    let (t1, t2) = (v("t1"), v("t2"));
    let w = v("w");
    let body = loop_(
        &w,
        1,
        bind("vthread"),
        Stmt::seq(vec![
            loop_(
                &t1,
                8,
                bind("threadIdx.x"),
                Stmt::seq(vec![st(&o, t1.expr(), t1.expr()), st(&q, 0, ld(&q, 0) + 1)]),
            ),
            Stmt::NoOp,
        ]),
    );
    let kernel = Stmt::seq(vec![
        body,
        // A second kernel whose thread loops are siblings inside one outer threadIdx.y loop.
        loop_(
            &v("ty"),
            1,
            bind("threadIdx.y"),
            Stmt::seq(vec![
                loop_(
                    &t1,
                    8,
                    bind("threadIdx.x"),
                    st(&o, t1.expr(), ld(&o, t1.expr()) * 2),
                ),
                Stmt::Barrier,
                loop_(
                    &t2,
                    4,
                    bind("threadIdx.x"),
                    st(&o, t2.expr(), ld(&o, t2.expr()) + 100),
                ),
            ]),
        ),
    ]);
    let fun = func(vec![o, q], kernel);
    let mut x = NdArray::zeros(&[8], DType::I64);
    let mut y = NdArray::zeros(&[1], DType::I64);
    run(&fun, &mut [&mut x, &mut y]).unwrap();
    assert_eq!(
        x.to_vec::<i64>().unwrap(),
        vec![100, 102, 104, 106, 8, 10, 12, 14]
    );
    assert_eq!(y.to_vec::<i64>().unwrap(), vec![8]);
}

#[test]
fn divergent_barriers_are_errors() {
    let o = buf("O", DType::I64, &[8]);
    let tx = v("tx");
    // A barrier only threads tx < 2 reach.
    let body = loop_(
        &tx,
        8,
        bind("threadIdx.x"),
        Stmt::seq(vec![
            Stmt::if_(lt(tx.expr(), 2), Stmt::Barrier),
            st(&o, tx.expr(), 1),
        ]),
    );
    let mut x = NdArray::zeros(&[8], DType::I64);
    match run(&func(vec![o.clone()], body), &mut [&mut x]) {
        Err(Error::Internal { msg, .. }) => assert!(msg.contains("barrier divergence"), "{}", msg),
        other => panic!("{:?}", other),
    }
    // Threads waiting at different barriers.
    let body = loop_(
        &tx,
        8,
        bind("threadIdx.x"),
        Stmt::If {
            cond: lt(tx.expr(), 2),
            then: Box::new(Stmt::seq(vec![Stmt::Barrier, st(&o, tx.expr(), 1)])),
            els: Some(Box::new(Stmt::seq(vec![
                Stmt::Barrier,
                st(&o, tx.expr(), 2),
            ]))),
        },
    );
    match run(&func(vec![o.clone()], body), &mut [&mut x]) {
        Err(Error::Internal { msg, .. }) => assert!(msg.contains("different barriers"), "{}", msg),
        other => panic!("{:?}", other),
    }
    // An out-of-bounds access inside a thread names the buffer and the thread.
    let body = loop_(&tx, 9, bind("threadIdx.x"), st(&o, tx.expr(), 1));
    match run(&func(vec![o.clone()], body), &mut [&mut x]) {
        Err(Error::Internal { msg, .. }) => {
            assert!(msg.contains("O") && msg.contains("index 8"), "{}", msg)
        }
        other => panic!("{:?}", other),
    }
    // A thread extent that depends on a variable bound inside the kernel.
    let (bx, ty) = (v("bx"), v("ty"));
    let body = loop_(
        &bx,
        2,
        bind("blockIdx.x"),
        Stmt::for_(
            ty.clone(),
            Expr::int(0),
            bx.expr() + 1,
            bind("threadIdx.y"),
            Stmt::NoOp,
        ),
    );
    match run(&func(vec![o.clone()], body), &mut [&mut x]) {
        Err(Error::Internal { msg, .. }) => {
            assert!(msg.contains("threadIdx.y") && msg.contains("bx"), "{}", msg)
        }
        other => panic!("{:?}", other),
    }
    // Global allocation inside a kernel.
    let g = buf("G", DType::I64, &[8]);
    let body = loop_(&tx, 8, bind("threadIdx.x"), alloc(&g, Stmt::NoOp));
    match run(&func(vec![o], body), &mut [&mut x]) {
        Err(Error::Internal { msg, .. }) => assert!(msg.contains("G"), "{}", msg),
        other => panic!("{:?}", other),
    }
}

#[test]
fn symbolic_grid() {
    // B[i] = A[i] * 2 with blocks of 4 threads over a symbolic n (guarded).
    let n = v("n");
    let a = Buffer::new("A", DType::F32, vec![n.expr()], Scope::Global);
    let b = Buffer::new("B", DType::F32, vec![n.expr()], Scope::Global);
    let (bx, tx) = (v("bx"), v("tx"));
    let i = bx.expr() * 4 + tx.expr();
    let body = Stmt::for_(
        bx.clone(),
        Expr::int(0),
        floordiv(n.expr() + 3, 4),
        bind("blockIdx.x"),
        loop_(
            &tx,
            4,
            bind("threadIdx.x"),
            Stmt::if_(
                lt(i.clone(), n.expr()),
                st(&b, i.clone(), ld(&a, i) * f(2.0)),
            ),
        ),
    );
    let fun = LoweredFunc {
        name: "g".into(),
        params: vec![a, b],
        shape_vars: vec![n],
        body,
    };
    for len in [1usize, 4, 10] {
        let mut x = NdArray::from_fn(&[len], |k| k as f32);
        let mut y = NdArray::zeros(&[len], DType::F32);
        run(&fun, &mut [&mut x, &mut y]).unwrap();
        assert_eq!(
            y.to_vec::<f32>().unwrap(),
            (0..len).map(|k| 2.0 * k as f32).collect::<Vec<_>>()
        );
    }
}
