//! Unrolled register tiles split into steps (`tile_steps.rs`): the JIT's results equal
//! the interpreter's for tiles it splits (even step counts, vector and scalar variables,
//! f32 and f64, 32- and 64-bit counters, loops tested at the top and at the bottom, loops
//! not starting at 0, 16 variables) and for those it leaves alone (odd step counts, more
//! than 16 variables, steps storing different variables, a store to memory among the
//! tile's, integer tiles); the split runs exactly where the module doc says (where the
//! host has FMA and `LOOPFORGE_TILE_STEPS` is not 0).

use super::compile;
use super::tests::{buf, func};
use crate::lower::ir::{Buffer, ForKind, LoweredFunc, Scope, Stmt};
use crate::runtime::NdArray;
use crate::te::{BinOp, DType, Expr, ExprNode, Var};

/// A tile to build: `rows` accumulators of `lanes` elements (1: scalar variables),
/// updated `steps` times per iteration of a loop of `extent` iterations from `min`.
#[derive(Clone, Copy)]
struct Tile {
    dt: DType,
    lanes: u32,
    rows: i64,
    steps: i64,
    extent: i64,
    min: i64,
    counter: DType,
    /// Store a row twice in the first step (a step the split must refuse).
    repeat_row: bool,
    /// In the second step, store row 0 where row 1 belongs (steps of the same length
    /// that store different variables: refused).
    mixed_steps: bool,
    /// Also store to a global buffer in each step (a sequence the split must refuse).
    global_store: bool,
}

impl Tile {
    fn f32x4(rows: i64, steps: i64, extent: i64) -> Tile {
        Tile {
            dt: DType::F32,
            lanes: 4,
            rows,
            steps,
            extent,
            min: 0,
            counter: DType::I64,
            repeat_row: false,
            mixed_steps: false,
            global_store: false,
        }
    }
}

fn node(op: BinOp, a: Expr, b: Expr) -> Expr {
    Expr::new(ExprNode::Binary(op, a, b))
}

/// `lanes` elements from `base` (a scalar load when `lanes` is 1).
fn at(b: &Buffer, base: Expr, lanes: u32) -> Expr {
    let idx = if lanes == 1 {
        base
    } else {
        Expr::new(ExprNode::Ramp(base, 1, lanes))
    };
    b.load(vec![idx])
}

fn store_at(b: &Buffer, base: Expr, lanes: u32, v: Expr) -> Stmt {
    let idx = if lanes == 1 {
        base
    } else {
        Expr::new(ExprNode::Ramp(base, 1, lanes))
    };
    Stmt::Store {
        buf: b.clone(),
        indices: vec![idx],
        value: v,
    }
}

/// `C[r, :] = sum_q A[r, q] * B[q, :]` over `q < extent * steps`, accumulated in a
/// promoted local tile, the reduction unrolled by `steps` inside the loop.
fn tile_func(t: Tile) -> LoweredFunc {
    let (l, kk) = (t.lanes as i64, t.extent * t.steps);
    let a = buf("A", t.dt, t.rows * kk);
    let b = buf("B", t.dt, kk * l);
    let c = buf("C", t.dt, t.rows * l);
    let log = buf("Log", t.dt, l);
    let acc = Buffer::new("acc", t.dt, vec![Expr::int(t.rows * l)], Scope::Local);
    let k = Var::new("k", t.counter);
    // The step's position in the reduction, as a 64-bit index.
    let kq = |s: i64| {
        let k0 = node(BinOp::Sub, k.expr(), Expr::int_of(t.min, t.counter));
        let k0 = if t.counter == DType::I64 {
            k0
        } else {
            crate::te::cast(DType::I64, k0)
        };
        k0 * t.steps + s
    };
    let bcast = |x: Expr| {
        if t.lanes == 1 {
            x
        } else {
            Expr::new(ExprNode::Broadcast(x, t.lanes))
        }
    };
    let mut update = vec![];
    for s in 0..t.steps {
        for r in 0..t.rows {
            let prod = node(
                BinOp::Mul,
                bcast(a.load(vec![Expr::int(r * kk) + kq(s)])),
                at(&b, kq(s) * l, t.lanes),
            );
            let to = if t.mixed_steps && s == 1 && r == 1 {
                0
            } else {
                r
            };
            let row = Expr::int(to * l);
            let sum = node(BinOp::Add, at(&acc, Expr::int(r * l), t.lanes), prod);
            update.push(store_at(&acc, row.clone(), t.lanes, sum.clone()));
            if t.repeat_row && s == 0 && r == 0 {
                update.push(store_at(&acc, row, t.lanes, sum));
            }
        }
        if t.global_store {
            update.push(store_at(
                &log,
                Expr::int(0),
                t.lanes,
                at(&acc, Expr::int(0), t.lanes),
            ));
        }
    }
    let zero = bcast(if t.dt == DType::I32 {
        Expr::int_of(0, DType::I32)
    } else {
        Expr::float_of(0.0, t.dt)
    });
    let mut body = vec![];
    for r in 0..t.rows {
        body.push(store_at(&acc, Expr::int(r * l), t.lanes, zero.clone()));
    }
    body.push(Stmt::for_(
        k.clone(),
        Expr::int_of(t.min, t.counter),
        Expr::int_of(t.extent, t.counter),
        ForKind::Serial,
        Stmt::seq(update),
    ));
    for r in 0..t.rows {
        body.push(store_at(
            &c,
            Expr::int(r * l),
            t.lanes,
            at(&acc, Expr::int(r * l), t.lanes),
        ));
    }
    let body = Stmt::Allocate {
        buf: acc,
        body: Box::new(Stmt::seq(body)),
    };
    func(&[&a, &b, &c, &log], &[], body)
}

/// Run `t` on the JIT and on the interpreter, compare, and return how many sequences the
/// JIT split into steps.
fn check(t: Tile) -> usize {
    let f = tile_func(t);
    let kk = (t.extent * t.steps) as usize;
    let (rows, l) = (t.rows as usize, t.lanes as usize);
    let a = NdArray::random(&[rows * kk], t.dt, 7);
    let b = NdArray::random(&[kk * l], t.dt, 8);
    let zeros = |n: usize| NdArray::zeros(&[n], t.dt);
    let (mut c_jit, mut log_jit) = (zeros(rows * l), zeros(l));
    let (mut c_ref, mut log_ref) = (zeros(rows * l), zeros(l));
    super::tile_steps::SPLIT_TILES.with(|n| n.set(0));
    let m = compile(&f).unwrap_or_else(|e| panic!("compile failed: {}", e));
    let split = super::tile_steps::SPLIT_TILES.with(|n| n.get());
    let (mut a1, mut b1) = (a.clone(), b.clone());
    let ptrs = [
        a1.as_mut_ptr(),
        b1.as_mut_ptr(),
        c_jit.as_mut_ptr(),
        log_jit.as_mut_ptr(),
    ];
    unsafe { m.call(&ptrs, &[]) };
    let (mut a2, mut b2) = (a, b);
    crate::interp::run(&f, &mut [&mut a2, &mut b2, &mut c_ref, &mut log_ref]).unwrap();
    let close = |x: &NdArray, y: &NdArray| {
        let (x, y) = (x.to_f64_vec(), y.to_f64_vec());
        x.iter()
            .zip(&y)
            .all(|(p, q)| (p - q).abs() <= 1e-4 * (1.0 + q.abs()))
    };
    assert!(
        close(&c_jit, &c_ref) && close(&log_jit, &log_ref),
        "JIT differs from the interpreter on {:?} x {} lanes, {} rows, {} steps, a loop of \
         {} from {} ({:?} counter)",
        t.dt,
        t.lanes,
        t.rows,
        t.steps,
        t.extent,
        t.min,
        t.counter
    );
    split
}

/// Sequences split per tile that qualifies: 1 where this host and environment split
/// tiles (FMA contraction on, `LOOPFORGE_TILE_STEPS` not 0), else 0.
fn splits() -> usize {
    let fma = super::jit::host_isa()
        .map(|isa| super::jit::contracts_fma(&*isa))
        .unwrap_or(false);
    usize::from(fma && super::tile_steps::enabled())
}

#[test]
fn even_steps_are_split_and_match_the_interpreter() {
    let one = splits();
    // 12 x 4 f32 (the matmul's tile), 2 and 4 steps, loops tested at the top (64) and at
    // the bottom (5, 3).
    for (steps, extent) in [(2, 64), (4, 64), (2, 5), (4, 3)] {
        assert_eq!(
            check(Tile::f32x4(12, steps, extent)),
            one,
            "{} steps",
            steps
        );
    }
    // As many variables as registers.
    assert_eq!(check(Tile::f32x4(16, 2, 20)), one);
    let f64x2 = Tile {
        dt: DType::F64,
        lanes: 2,
        ..Tile::f32x4(6, 2, 20)
    };
    assert_eq!(check(f64x2), one);
    // Scalar variables; 32-bit counters starting at 3, tested at the top and the bottom.
    for (dt, extent) in [(DType::F32, 17), (DType::F64, 6)] {
        let scalar = Tile {
            dt,
            lanes: 1,
            min: 3,
            counter: DType::I32,
            ..Tile::f32x4(5, 2, extent)
        };
        assert_eq!(check(scalar), one, "{:?} scalars", dt);
    }
    let i32_counter = Tile {
        min: -2,
        counter: DType::I32,
        ..Tile::f32x4(8, 2, 7)
    };
    assert_eq!(check(i32_counter), one);
}

#[test]
fn other_sequences_are_left_alone_and_match_the_interpreter() {
    // One or three steps: no order of the rows brings the accumulators back.
    assert_eq!(check(Tile::f32x4(12, 1, 32)), 0);
    assert_eq!(check(Tile::f32x4(12, 3, 32)), 0);
    // More variables than registers.
    assert_eq!(check(Tile::f32x4(17, 2, 32)), 0);
    for t in [
        Tile {
            repeat_row: true,
            ..Tile::f32x4(4, 2, 32)
        },
        Tile {
            mixed_steps: true,
            ..Tile::f32x4(4, 2, 32)
        },
        Tile {
            global_store: true,
            ..Tile::f32x4(4, 2, 32)
        },
        // Integer tiles: no FMA ties a result to a multiplicand.
        Tile {
            dt: DType::I32,
            ..Tile::f32x4(4, 2, 9)
        },
        Tile {
            dt: DType::I32,
            lanes: 1,
            ..Tile::f32x4(5, 2, 17)
        },
    ] {
        assert_eq!(check(t), 0);
    }
}
