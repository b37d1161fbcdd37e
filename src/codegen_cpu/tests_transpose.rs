//! Tests of `transpose_loads.rs`: strided loads that together read 4 x 4 blocks, loaded
//! as rows and transposed, give the values the per-lane loads give; incomplete groups,
//! and buffers the sequence writes, keep the per-lane loads.

use super::tests::{bin, buf, f32s, func, iv, load, loop_, run, store};
use super::transpose_loads::{TRANSPOSED_BLOCKS, TRANSPOSED_COLUMNS};
use crate::lower::ir::Stmt;
use crate::te::{BinOp, DType, Expr, ExprNode};

fn ramp(base: Expr, stride: i64, lanes: u32) -> Expr {
    Expr::new(ExprNode::Ramp(base, stride, lanes))
}

/// `b[c][r] = a[r][c] + 0.5 * c` for a `rows x cols` row-major `a`, positions in vectors
/// of 4, the columns in groups of `max(order) + 1` (a multiple of it: `cols`), of which
/// the offsets `order` are copied, in that order, straight-line; with `also_store`, each
/// sequence also writes `a` (so its loads may not move). Returns how many blocks were
/// transposed and whether the copied columns are right.
fn transpose_copy(rows: i64, cols: i64, order: &[i64], also_store: bool) -> (usize, bool) {
    let g = order.iter().max().expect("some columns") + 1;
    let a = buf("a", DType::F32, rows * cols);
    let b = buf("b", DType::F32, rows * cols);
    let (i, j) = (iv("i"), iv("j"));
    let mut seq = vec![];
    for &r in order {
        let c = j.expr() * g + r;
        let value = bin(
            BinOp::Add,
            load(&a, ramp(i.expr() * (4 * cols) + c.clone(), cols, 4)),
            Expr::new(ExprNode::Broadcast(
                Expr::new(ExprNode::Cast(DType::F32, c.clone())) * Expr::float_of(0.5, DType::F32),
                4,
            )),
        );
        seq.push(store(&b, ramp(c * rows + i.expr() * 4, 1, 4), value));
    }
    if also_store {
        seq.push(store(
            &a,
            i.expr() * (4 * cols) + j.expr() * g,
            Expr::float_of(-1.0, DType::F32),
        ));
    }
    let body = loop_(&i, rows / 4, loop_(&j, cols / g, Stmt::seq(seq)));
    let f = func(&[&a, &b], &[], body);
    let av: Vec<f32> = (0..rows * cols).map(|k| k as f32 * 0.25 - 7.0).collect();
    let (mut aa, mut ba) = (f32s(&av), f32s(&vec![0.0; (rows * cols) as usize]));
    TRANSPOSED_BLOCKS.with(|n| n.set(0));
    run(&f, &mut [&mut aa, &mut ba], &[]);
    let blocks = TRANSPOSED_BLOCKS.with(|n| n.get());
    let got = ba.to_vec::<f32>().unwrap();
    let mut ok = true;
    for r in 0..rows {
        for c in (0..cols).filter(|c| order.contains(&(c % g))) {
            let want = av[(r * cols + c) as usize] + 0.5 * c as f32;
            ok &= got[(c * rows + r) as usize] == want;
        }
    }
    (blocks, ok)
}

#[test]
fn complete_groups_are_transposed_in_registers() {
    // One group of 4 columns per sequence, in order and scrambled; two groups of 8.
    for (order, per_seq) in [
        (vec![0, 1, 2, 3], 1),
        (vec![2, 0, 3, 1], 1),
        (vec![0, 1, 2, 3, 4, 5, 6, 7], 2),
        (vec![7, 3, 5, 1, 0, 4, 2, 6], 2),
    ] {
        for (rows, cols) in [(8, 16), (4, 8), (12, 24)] {
            let (blocks, ok) = transpose_copy(rows, cols, &order, false);
            assert!(ok, "{:?} {}x{}", order, rows, cols);
            // The codegen compiles the sequence once per function.
            assert_eq!(blocks, per_seq, "{:?} {}x{}", order, rows, cols);
        }
    }
}

#[test]
fn incomplete_groups_and_written_buffers_keep_per_lane_loads() {
    for (order, also_store) in [
        (vec![0, 1, 2], false),
        (vec![0, 2], false),
        (vec![0, 1, 2, 3], true),
    ] {
        let cols = 4 * (order.iter().max().unwrap() + 1);
        let (blocks, ok) = transpose_copy(8, cols, &order, also_store);
        assert!(ok, "{:?}", order);
        assert_eq!(blocks, 0, "{:?} also_store {}", order, also_store);
    }
}

/// `b[4 r .. 4 r + 4] = a[ramp(r, 8, 4)]` for `r` in 0..4 (with `let_index`, the index
/// `t + r` with `let t = 0` inside the value), after `before` (statements of the same
/// sequence, which may write the buffer `a`), on `a[k] = k`; returns `b` and the number
/// of blocks transposed.
fn columns_after(before: Vec<Stmt>, let_index: bool) -> (Vec<f32>, usize) {
    let a = buf("a", DType::F32, 32);
    let b = buf("b", DType::F32, 16);
    let mut seq = before;
    for r in 0..4i64 {
        let value = if let_index {
            // `let t = 0 in a[ramp(t + r, 8, 4)]`: `t` is bound inside the value.
            let t = iv("t");
            Expr::new(ExprNode::Let(
                t.clone(),
                Expr::int(0),
                load(&a, ramp(t.expr() + r, 8, 4)),
            ))
        } else {
            load(&a, ramp(Expr::int(r), 8, 4))
        };
        seq.push(store(&b, ramp(Expr::int(4 * r), 1, 4), value));
    }
    let f = func(&[&a, &b], &[], Stmt::seq(seq));
    let av: Vec<f32> = (0..32).map(|k| k as f32).collect();
    let (mut aa, mut ba) = (f32s(&av), f32s(&[0.0; 16]));
    TRANSPOSED_BLOCKS.with(|n| n.set(0));
    run(&f, &mut [&mut aa, &mut ba], &[]);
    (
        ba.to_vec::<f32>().unwrap(),
        TRANSPOSED_BLOCKS.with(|n| n.get()),
    )
}

#[test]
fn writes_nested_in_the_sequence_keep_the_loads_in_place() {
    let a = buf("a", DType::F32, 32);
    let k = iv("k");
    let minus_one = Expr::float_of(-1.0, DType::F32);
    // A loop, and an `if`, that overwrite `a` before the four column loads.
    let in_loop = loop_(&k, 32, store(&a, k.expr(), minus_one.clone()));
    let in_if = Stmt::if_(
        crate::te::gt(Expr::int(1), Expr::int(0)),
        loop_(&k, 32, store(&a, k.expr(), minus_one)),
    );
    for before in [in_loop, in_if] {
        let (got, blocks) = columns_after(vec![before], false);
        assert_eq!(got, vec![-1.0; 16]);
        assert_eq!(blocks, 0);
    }
    // Nothing written: transposed, `b[4 r + i] = a[r + 8 i]`.
    let (got, blocks) = columns_after(vec![], false);
    let want: Vec<f32> = (0..16).map(|j| ((j / 4) + 8 * (j % 4)) as f32).collect();
    assert_eq!((got, blocks), (want.clone(), 1));
    // An index that uses a `let` bound inside the value: per-lane loads, same values.
    let (got, blocks) = columns_after(vec![], true);
    assert_eq!((got, blocks), (want, 0));
}

#[test]
fn strided_loads_of_a_promoted_buffer_read_its_variables() {
    use crate::lower::ir::{Buffer, Scope};
    // t[4 k .. 4 k + 4] = 2 x[4 k .. 4 k + 4] (a tile accumulated in vectors); then, in
    // one sequence, o[4 r ..] = t[ramp(r, 8, 4)] for r in 0..4 (a complete 4 x 4 group:
    // transposed from the variables) and o[16 ..] = t[ramp(5, 8, 4)] (alone: its lanes
    // gathered one by one).
    let x = buf("x", DType::F32, 32);
    let o = buf("o", DType::F32, 20);
    let t = Buffer::new("t", DType::F32, vec![Expr::int(32)], Scope::Local);
    let mut fill = vec![];
    for k in 0..8 {
        let v = bin(
            BinOp::Mul,
            load(&x, ramp(Expr::int(4 * k), 1, 4)),
            Expr::new(ExprNode::Broadcast(Expr::float_of(2.0, DType::F32), 4)),
        );
        fill.push(store(&t, ramp(Expr::int(4 * k), 1, 4), v));
    }
    let mut copy: Vec<Stmt> = (0..4)
        .map(|r| {
            store(
                &o,
                ramp(Expr::int(4 * r), 1, 4),
                load(&t, ramp(Expr::int(r), 8, 4)),
            )
        })
        .collect();
    copy.push(store(
        &o,
        ramp(Expr::int(16), 1, 4),
        load(&t, ramp(Expr::int(5), 8, 4)),
    ));
    let body = Stmt::seq(vec![Stmt::seq(fill), Stmt::seq(copy)]);
    assert_eq!(super::promote::plan(&t, &body, true), Some(4));
    let f = func(
        &[&x, &o],
        &[],
        Stmt::Allocate {
            buf: t,
            body: Box::new(body),
        },
    );
    let xs: Vec<f32> = (0..32).map(|k| k as f32 - 3.5).collect();
    let (mut xa, mut oa) = (f32s(&xs), f32s(&[0.0; 20]));
    TRANSPOSED_BLOCKS.with(|n| n.set(0));
    TRANSPOSED_COLUMNS.with(|n| n.set(0));
    run(&f, &mut [&mut xa, &mut oa], &[]);
    // One block, whose four columns the four loads took.
    assert_eq!(TRANSPOSED_BLOCKS.with(|n| n.get()), 1);
    assert_eq!(TRANSPOSED_COLUMNS.with(|n| n.get()), 4);
    let mut want: Vec<f32> = (0..4)
        .flat_map(|r| (0..4).map(move |l| r + 8 * l))
        .map(|i| 2.0 * xs[i as usize])
        .collect();
    want.extend([5, 13, 21, 29].map(|i| 2.0 * xs[i]));
    assert_eq!(oa.to_vec::<f32>().unwrap(), want);
}

#[test]
fn promoted_buffers_refuse_strided_stores() {
    use crate::lower::ir::{Buffer, Scope};
    let t = Buffer::new("t", DType::F32, vec![Expr::int(32)], Scope::Local);
    let v = Expr::new(ExprNode::Broadcast(Expr::float_of(1.0, DType::F32), 4));
    let body = store(&t, ramp(Expr::int(0), 8, 4), v);
    assert_eq!(super::promote::plan(&t, &body, true), None);
    // A strided load past the end, or starting before the start, is refused too.
    let o = buf("o", DType::F32, 4);
    for base in [9, -1] {
        let read = store(
            &o,
            ramp(Expr::int(0), 1, 4),
            load(&t, ramp(Expr::int(base), 8, 4)),
        );
        assert_eq!(super::promote::plan(&t, &read, true), None, "base {}", base);
    }
    // So is a strided load of booleans (a vector of them is a mask).
    let m = Buffer::new("m", DType::Bool, vec![Expr::int(8)], Scope::Local);
    let ob = buf("ob", DType::Bool, 4);
    let read = Stmt::seq(vec![
        store(&m, 0, Expr::bool(true)),
        store(
            &ob,
            ramp(Expr::int(0), 1, 4),
            load(&m, ramp(Expr::int(0), 2, 4)),
        ),
    ]);
    assert_eq!(super::promote::plan(&m, &read, true), None);
}
