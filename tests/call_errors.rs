//! Mistakes at build and call time come back as typed errors (variant and message
//! checked), never as a panic or an out-of-bounds access: wrong arrays passed to a kernel
//! (count, dtype, rank, dimension, inconsistent or unbound symbolic dimensions), argument
//! lists that do not match the computation, malformed expressions, duplicate tensor names,
//! and bad traces.

use loopforge::prelude::*;

/// Assert that `$e` is `Err($pat)` and that the error's message contains `$needle`.
macro_rules! assert_err {
    ($e:expr, $pat:pat, $needle:expr) => {{
        match $e {
            Err(err @ $pat) => {
                let msg = err.to_string();
                assert!(
                    msg.contains($needle),
                    "error message {:?} lacks {:?}",
                    msg,
                    $needle
                );
            }
            Err(other) => panic!("expected {}, got {:?}", stringify!($pat), other),
            Ok(_) => panic!("expected {}, got Ok", stringify!($pat)),
        }
    }};
}

fn targets() -> [Target; 2] {
    [Target::interp(), Target::cpu()]
}

/// `C[i, j] = sum_k A[i, k] * B[k, j]` with A: 5x4, B: 4x3.
fn matmul() -> (Tensor, Tensor, Tensor) {
    let a = placeholder(&[5.into(), 4.into()], DType::F32, "A");
    let b = placeholder(&[4.into(), 3.into()], DType::F32, "B");
    let k = reduce_axis(0, 4, "k");
    let c = compute(&[5.into(), 3.into()], "C", |i| {
        sum(
            a.at(&[i[0].clone(), k.x()]) * b.at(&[k.x(), i[1].clone()]),
            &[k.clone()],
        )
    });
    (a, b, c)
}

fn matmul_kernel(t: Target) -> Kernel {
    let (a, b, c) = matmul();
    let s = create_schedule(&[c.clone()]).unwrap();
    build(&s, &[a, b, c], t).unwrap()
}

const SENTINEL: f32 = -77.0;

fn sentinel(shape: &[usize]) -> NdArray {
    NdArray::from_fn(shape, |_| SENTINEL)
}

fn untouched(a: &NdArray) -> bool {
    a.to_vec::<f32>().unwrap().iter().all(|v| *v == SENTINEL)
}

// ---------------------------------------------------------------- the arrays of a call

#[test]
fn a_correct_call_works() {
    // The baseline of the error cases below: the same kernel and arrays, all correct.
    for t in targets() {
        let k = matmul_kernel(t.clone());
        let x = NdArray::from_fn(&[5, 4], |i| i as f32);
        let y = NdArray::from_fn(&[4, 3], |i| (i % 3) as f32);
        let mut z = sentinel(&[5, 3]);
        k.run(&[&x, &y], &mut [&mut z]).unwrap();
        let zs = z.to_vec::<f32>().unwrap();
        for i in 0..5 {
            for j in 0..3 {
                let want: f32 = (0..4).map(|kk| (i * 4 + kk) as f32 * j as f32).sum();
                assert_eq!(zs[i * 3 + j], want, "C[{}, {}] on {:?}", i, j, t);
            }
        }
        let (mut x2, mut y2, mut z2) = (x.clone(), y.clone(), sentinel(&[5, 3]));
        k.call(&mut [&mut x2, &mut y2, &mut z2]).unwrap();
        assert_eq!(z2.to_vec::<f32>().unwrap(), zs, "call vs run on {:?}", t);
    }
}

#[test]
fn wrong_number_of_arrays() {
    for t in targets() {
        let k = matmul_kernel(t.clone());
        let mut x = NdArray::zeros(&[5, 4], DType::F32);
        let mut y = NdArray::zeros(&[4, 3], DType::F32);
        let mut z = sentinel(&[5, 3]);
        assert_err!(
            k.call(&mut [&mut x, &mut z]),
            Error::Argument(_),
            "takes 3 arrays (A, B, C) but 2 were given"
        );
        assert!(untouched(&z), "{:?}: output written by a refused call", t);
        let mut extra = NdArray::zeros(&[5, 3], DType::F32);
        assert_err!(
            k.call(&mut [&mut x, &mut y, &mut z, &mut extra]),
            Error::Argument(_),
            "but 4 were given"
        );
        assert_err!(k.call(&mut []), Error::Argument(_), "but 0 were given");

        assert_err!(
            k.run(&[&x], &mut [&mut z]),
            Error::Argument(_),
            "takes 2 inputs and 1 outputs"
        );
        assert_err!(
            k.run(&[&x], &mut [&mut z]),
            Error::Argument(_),
            "but 1 inputs and 1 outputs were given"
        );
        assert_err!(
            k.run(&[&x, &y], &mut []),
            Error::Argument(_),
            "but 2 inputs and 0 outputs were given"
        );
        let mut z2 = sentinel(&[5, 3]);
        assert_err!(
            k.run(&[&x, &y], &mut [&mut z, &mut z2]),
            Error::Argument(_),
            "but 2 inputs and 2 outputs were given"
        );
        // An output passed among the inputs: the counts do not match.
        assert_err!(
            k.run(&[&x, &y, &z2], &mut []),
            Error::Argument(_),
            "but 3 inputs and 0 outputs were given"
        );
        assert!(
            untouched(&z) && untouched(&z2),
            "{:?}: output written by a refused call",
            t
        );
    }
}

#[test]
fn wrong_dtype() {
    for t in targets() {
        let k = matmul_kernel(t.clone());
        let x = NdArray::zeros(&[5, 4], DType::F64);
        let y = NdArray::zeros(&[4, 3], DType::F32);
        let mut z = sentinel(&[5, 3]);
        assert_err!(
            k.run(&[&x, &y], &mut [&mut z]),
            Error::Argument(_),
            "array for A has dtype float64 but the kernel expects float32"
        );
        let x = NdArray::zeros(&[5, 4], DType::F32);
        let mut zi = NdArray::zeros(&[5, 3], DType::I32);
        assert_err!(
            k.run(&[&x, &y], &mut [&mut zi]),
            Error::Argument(_),
            "array for C has dtype int32 but the kernel expects float32"
        );
        let yb = NdArray::zeros(&[4, 3], DType::Bool);
        assert_err!(
            k.run(&[&x, &yb], &mut [&mut z]),
            Error::Argument(_),
            "array for B has dtype bool"
        );
        assert!(untouched(&z), "{:?}: output written by a refused call", t);
    }
}

#[test]
fn wrong_half_dtype() {
    // float16 inputs, a float32 output: a half array of the other kind, a float32 array
    // for a half parameter and a half array for the float32 output are all refused.
    let a = placeholder(&[5.into(), 4.into()], DType::F16, "A");
    let b = placeholder(&[4.into(), 3.into()], DType::F16, "B");
    let k = reduce_axis(0, 4, "k");
    let c = compute(&[5.into(), 3.into()], "C", |i| {
        sum(
            cast(DType::F32, a.at(&[i[0].clone(), k.x()]))
                * cast(DType::F32, b.at(&[k.x(), i[1].clone()])),
            &[k.clone()],
        )
    });
    let s = create_schedule(&[c.clone()]).unwrap();
    for t in targets() {
        let k = build(&s, &[a.clone(), b.clone(), c.clone()], t.clone()).unwrap();
        let x = NdArray::random(&[5, 4], DType::F16, 1);
        let y = NdArray::random(&[4, 3], DType::F16, 2);
        let mut z = sentinel(&[5, 3]);
        k.run(&[&x, &y], &mut [&mut z]).unwrap();
        assert!(!untouched(&z), "{:?}: the correct call wrote nothing", t);
        let mut z = sentinel(&[5, 3]);
        let xb = NdArray::random(&[5, 4], DType::BF16, 1);
        assert_err!(
            k.run(&[&xb, &y], &mut [&mut z]),
            Error::Argument(_),
            "array for A has dtype bfloat16 but the kernel expects float16"
        );
        let y32 = NdArray::zeros(&[4, 3], DType::F32);
        assert_err!(
            k.run(&[&x, &y32], &mut [&mut z]),
            Error::Argument(_),
            "array for B has dtype float32 but the kernel expects float16"
        );
        let mut zh = NdArray::zeros(&[5, 3], DType::F16);
        assert_err!(
            k.run(&[&x, &y], &mut [&mut zh]),
            Error::Argument(_),
            "array for C has dtype float16 but the kernel expects float32"
        );
        assert!(untouched(&z), "{:?}: output written by a refused call", t);
    }
    // Typed access to an array checks the element type.
    let h = NdArray::zeros(&[2], DType::F16);
    assert_err!(
        h.as_slice::<f32>(),
        Error::Argument(_),
        "array holds float16 but was accessed as float32"
    );
    assert_err!(
        NdArray::zeros(&[2], DType::F32).to_vec::<bf16>(),
        Error::Argument(_),
        "array holds float32 but was accessed as bfloat16"
    );
}

#[test]
fn wrong_rank() {
    for t in targets() {
        let k = matmul_kernel(t.clone());
        let x = NdArray::zeros(&[20], DType::F32);
        let y = NdArray::zeros(&[4, 3], DType::F32);
        let mut z = sentinel(&[5, 3]);
        assert_err!(
            k.run(&[&x, &y], &mut [&mut z]),
            Error::Argument(_),
            "array for A has 1 dimensions [20] but the kernel expects 2 ([5, 4])"
        );
        let x = NdArray::zeros(&[5, 4], DType::F32);
        let mut z3 = NdArray::zeros(&[5, 3, 1], DType::F32);
        assert_err!(
            k.run(&[&x, &y], &mut [&mut z3]),
            Error::Argument(_),
            "array for C has 3 dimensions"
        );
        assert!(untouched(&z), "{:?}: output written by a refused call", t);
    }
}

#[test]
fn wrong_dimension() {
    for t in targets() {
        let k = matmul_kernel(t.clone());
        let x = NdArray::zeros(&[5, 4], DType::F32);
        let y = NdArray::zeros(&[4, 3], DType::F32);
        let mut z = sentinel(&[5, 4]);
        assert_err!(
            k.run(&[&x, &y], &mut [&mut z]),
            Error::Argument(_),
            "array for C has shape [5, 4] but the kernel expects dimension 1 to be 3 (shape [5, 3])"
        );
        assert!(untouched(&z), "{:?}: output written by a refused call", t);
        // Same number of elements, transposed: still refused.
        let xt = NdArray::zeros(&[4, 5], DType::F32);
        let mut z = sentinel(&[5, 3]);
        assert_err!(
            k.run(&[&xt, &y], &mut [&mut z]),
            Error::Argument(_),
            "array for A has shape [4, 5] but the kernel expects dimension 0 to be 5"
        );
        // Too small an input would be read out of bounds if accepted.
        let ys = NdArray::zeros(&[4, 2], DType::F32);
        assert_err!(
            k.run(&[&x, &ys], &mut [&mut z]),
            Error::Argument(_),
            "array for B has shape [4, 2]"
        );
        assert!(untouched(&z), "{:?}: output written by a refused call", t);
    }
}

#[test]
fn inconsistent_symbolic_dimension() {
    let n = var("n");
    let a = placeholder(&[n.clone()], DType::F32, "A");
    let b = placeholder(&[n.clone()], DType::F32, "B");
    let c = compute(&[n.clone()], "C", |i| {
        a.at(&[i[0].clone()]) + b.at(&[i[0].clone()])
    });
    let s = create_schedule(&[c.clone()]).unwrap();
    for t in targets() {
        let k = build(&s, &[a.clone(), b.clone(), c.clone()], t.clone()).unwrap();
        let x = NdArray::zeros(&[8], DType::F32);
        let y = NdArray::zeros(&[6], DType::F32);
        let mut z = sentinel(&[8]);
        assert_err!(
            k.run(&[&x, &y], &mut [&mut z]),
            Error::Argument(_),
            "dimension 0 of B is 6 but n was already bound to 8 by another array"
        );
        let y = NdArray::zeros(&[8], DType::F32);
        let mut z6 = sentinel(&[6]);
        assert_err!(
            k.run(&[&x, &y], &mut [&mut z6]),
            Error::Argument(_),
            "dimension 0 of C is 6 but n was already bound to 8"
        );
        assert!(
            untouched(&z) && untouched(&z6),
            "{:?}: output written by a refused call",
            t
        );
        // And consistent sizes work.
        let x = NdArray::from_fn(&[8], |i| i as f32);
        k.run(&[&x, &y], &mut [&mut z]).unwrap();
        assert_eq!(
            z.to_vec::<f32>().unwrap(),
            (0..8).map(|i| i as f32).collect::<Vec<_>>()
        );
    }
}

#[test]
fn derived_symbolic_dimension_must_match() {
    // B has n - 1 elements: its size is checked against A's.
    let n = var("n");
    let a = placeholder(&[n.clone()], DType::F32, "A");
    let b = compute(&[n.clone() - 1], "B", |i| {
        a.at(&[i[0].clone() + 1]) - a.at(&[i[0].clone()])
    });
    let s = create_schedule(&[b.clone()]).unwrap();
    for t in targets() {
        let k = build(&s, &[a.clone(), b.clone()], t.clone()).unwrap();
        let x = NdArray::zeros(&[10], DType::F32);
        let mut y = sentinel(&[10]);
        assert_err!(
            k.run(&[&x], &mut [&mut y]),
            Error::Argument(_),
            "array for B has shape [10] but the kernel expects dimension 0 to be 9"
        );
        assert!(untouched(&y), "{:?}: output written by a refused call", t);
    }
}

#[test]
fn unbound_symbolic_dimension_in_a_reduction_extent() {
    // m appears only in a reduce axis's extent, not in any argument's shape.
    let (n, m) = (var("n"), var("m"));
    let a = placeholder(&[n.clone()], DType::F32, "A");
    let k = reduce_axis(0, m, "k");
    let c = compute(&[n.clone()], "C", |i| {
        sum(
            a.at(&[i[0].clone()]) * cast(DType::F32, k.x()),
            &[k.clone()],
        )
    });
    let s = create_schedule(&[c.clone()]).unwrap();
    for t in targets() {
        let r = build(&s, &[a.clone(), c.clone()], t.clone()).and_then(|k| {
            let x = NdArray::zeros(&[4], DType::F32);
            let mut y = sentinel(&[4]);
            let r = k.run(&[&x], &mut [&mut y]);
            assert!(untouched(&y), "{:?}: output written by a refused call", t);
            r
        });
        assert_err!(r, Error::UnboundVar(_), "unbound symbolic dimension `m`");
    }
}

#[test]
fn unbound_symbolic_dimension_of_an_intermediate() {
    // m is the extent of an intermediate stage (and of a reduction over it) only.
    let (n, m) = (var("n"), var("m"));
    let a = placeholder(&[n.clone()], DType::F32, "A");
    let b = compute(&[m.clone()], "B", |i| {
        cast(DType::F32, i[0].clone()) * 2.0f32
    });
    let k = reduce_axis(0, m, "k");
    let c = compute(&[n.clone()], "C", |i| {
        sum(a.at(&[i[0].clone()]) + b.at(&[k.x()]), &[k.clone()])
    });
    let s = create_schedule(&[c.clone()]).unwrap();
    for t in targets() {
        let r = build(&s, &[a.clone(), c.clone()], t.clone()).and_then(|k| {
            let x = NdArray::zeros(&[4], DType::F32);
            let mut y = sentinel(&[4]);
            let r = k.run(&[&x], &mut [&mut y]);
            assert!(untouched(&y), "{:?}: output written by a refused call", t);
            r
        });
        assert_err!(r, Error::UnboundVar(_), "`m`");
    }
}

#[test]
fn unbound_symbolic_dimension_used_only_in_an_expression_shape() {
    // No argument has a dimension that is exactly n: n cannot be bound from n + 1.
    let n = var("n");
    let a = placeholder(&[n.clone() + 1], DType::F32, "A");
    let c = compute(&[n.clone() + 1], "C", |i| a.at(&[i[0].clone()]) * 2.0f32);
    let s = create_schedule(&[c.clone()]).unwrap();
    for t in targets() {
        let r = build(&s, &[a.clone(), c.clone()], t.clone()).and_then(|k| {
            let x = NdArray::zeros(&[4], DType::F32);
            let mut y = sentinel(&[4]);
            let r = k.run(&[&x], &mut [&mut y]);
            assert!(untouched(&y), "{:?}: output written by a refused call", t);
            r
        });
        assert_err!(r, Error::UnboundVar(_), "`n`");
    }
}

// ---------------------------------------------------------------- the arguments of lower/build

#[test]
fn placeholder_missing_from_args() {
    let (a, _b, c) = matmul();
    let s = create_schedule(&[c.clone()]).unwrap();
    assert_err!(
        lower(&s, &[a.clone(), c.clone()]),
        Error::Lower(_),
        "placeholder B is read by C but is not in the argument list"
    );
    for t in targets() {
        assert_err!(
            build(&s, &[a.clone(), c.clone()], t),
            Error::Lower(_),
            "placeholder B is read by C"
        );
    }
}

#[test]
fn output_missing_from_args() {
    let (a, b, c) = matmul();
    let s = create_schedule(&[c.clone()]).unwrap();
    assert_err!(
        lower(&s, &[a.clone(), b.clone()]),
        Error::Lower(_),
        "output C is not in the argument list"
    );
    for t in targets() {
        assert_err!(
            build(&s, &[a.clone(), b.clone()], t),
            Error::Lower(_),
            "output C is not in the argument list"
        );
    }
}

#[test]
fn one_output_of_a_multi_output_compute_missing() {
    let a = placeholder(&[4.into(), 6.into()], DType::F32, "A");
    let k = reduce_axis(0, 6, "k");
    let red = comm_reducer(
        "sum_max",
        &[DType::F32, DType::F32],
        |x, y| vec![x[0].clone() + y[0].clone(), max(x[1].clone(), y[1].clone())],
        |d| vec![Expr::int_of(0, d[0]), min_value(d[1])],
    );
    let outs = compute_multi(&[4.into()], "R", |i| {
        let v = a.at(&[i[0].clone(), k.x()]);
        red.reduce(&[v.clone(), v], &[k.clone()])
    });
    let s = create_schedule(&[outs[0].clone()]).unwrap();
    assert_err!(
        lower(&s, &[a.clone(), outs[0].clone()]),
        Error::Lower(_),
        "output R.v1 is not in the argument list"
    );
    assert_err!(
        lower(&s, &[a.clone(), outs[1].clone()]),
        Error::Lower(_),
        "output R.v0 is not in the argument list"
    );
    // With both it lowers and computes both.
    let k = build(
        &s,
        &[a.clone(), outs[0].clone(), outs[1].clone()],
        Target::cpu(),
    )
    .unwrap();
    let x = NdArray::from_fn(&[4, 6], |i| (i % 7) as f32);
    let (mut s0, mut s1) = (sentinel(&[4]), sentinel(&[4]));
    k.run(&[&x], &mut [&mut s0, &mut s1]).unwrap();
    let xs = x.to_vec::<f32>().unwrap();
    let want0: Vec<f32> = (0..4).map(|i| xs[i * 6..i * 6 + 6].iter().sum()).collect();
    let want1: Vec<f32> = (0..4)
        .map(|i| {
            xs[i * 6..i * 6 + 6]
                .iter()
                .cloned()
                .fold(f32::NEG_INFINITY, f32::max)
        })
        .collect();
    assert_eq!(s0.to_vec::<f32>().unwrap(), want0);
    assert_eq!(s1.to_vec::<f32>().unwrap(), want1);
}

#[test]
fn duplicated_argument() {
    let (a, b, c) = matmul();
    let s = create_schedule(&[c.clone()]).unwrap();
    assert_err!(
        lower(&s, &[a.clone(), b.clone(), a.clone(), c.clone()]),
        Error::Lower(_),
        "A appears twice in the argument list"
    );
    assert_err!(
        lower(&s, &[a.clone(), b.clone(), c.clone(), c.clone()]),
        Error::Lower(_),
        "C appears twice in the argument list"
    );
    for t in targets() {
        assert_err!(
            build(&s, &[a.clone(), b.clone(), b.clone(), c.clone()], t),
            Error::Lower(_),
            "B appears twice"
        );
    }
}

#[test]
fn argument_not_in_the_computation() {
    let (a, b, c) = matmul();
    let other = placeholder(&[3.into()], DType::F32, "Other");
    let s = create_schedule(&[c.clone()]).unwrap();
    assert_err!(
        lower(&s, &[a, b, c, other]),
        Error::Lower(_),
        "argument Other is not part of this schedule's computation"
    );
}

#[test]
fn inlined_stage_as_argument() {
    let a = placeholder(&[8.into()], DType::F32, "A");
    let b = compute(&[8.into()], "B", |i| a.at(&[i[0].clone()]) * 2.0f32);
    let c = compute(&[8.into()], "C", |i| b.at(&[i[0].clone()]) + 1.0f32);
    let mut s = create_schedule(&[c.clone()]).unwrap();
    s.compute_inline(&b).unwrap();
    assert_err!(
        lower(&s, &[a.clone(), b.clone(), c.clone()]),
        Error::Lower(_),
        "argument B was inlined"
    );
}

// ---------------------------------------------------------------- malformed expressions

#[test]
fn index_count_mismatch_in_a_read() {
    let a = placeholder(&[4.into(), 5.into()], DType::F32, "A");
    let too_few = compute(&[4.into()], "C", |i| a.at(&[i[0].clone()]) * 2.0f32);
    let s = create_schedule(&[too_few.clone()]).unwrap();
    assert_err!(
        lower(&s, &[a.clone(), too_few.clone()]),
        Error::InvalidExpr(_),
        "tensor A has 2 dimensions but was indexed with 1 indices"
    );
    for t in targets() {
        assert_err!(
            build(&s, &[a.clone(), too_few.clone()], t),
            Error::InvalidExpr(_),
            "indexed with 1 indices"
        );
    }
    let too_many = compute(&[4.into(), 5.into()], "D", |i| {
        a.at(&[i[0].clone(), i[1].clone(), i[0].clone()])
    });
    let s = create_schedule(&[too_many.clone()]).unwrap();
    assert_err!(
        lower(&s, &[a.clone(), too_many]),
        Error::InvalidExpr(_),
        "tensor A has 2 dimensions but was indexed with 3 indices"
    );
    // Through an inlined stage, and inside a reduction.
    let b = compute(&[4.into(), 5.into()], "B", |i| a.at(&[i[1].clone()]));
    let k = reduce_axis(0, 5, "k");
    let r = compute(&[4.into()], "R", |i| {
        sum(b.at(&[i[0].clone(), k.x()]), &[k.clone()])
    });
    let mut s = create_schedule(&[r.clone()]).unwrap();
    s.compute_inline(&b).unwrap();
    assert_err!(
        lower(&s, &[a.clone(), r.clone()]),
        Error::InvalidExpr(_),
        "tensor A has 2 dimensions but was indexed with 1 indices"
    );
    // try_at reports it where the read is built.
    assert_err!(
        a.try_at(&[Expr::int(0)]),
        Error::InvalidExpr(_),
        "tensor A has 2 dimensions but was indexed with 1 indices"
    );
}

#[test]
fn float_index_in_a_read() {
    let a = placeholder(&[4.into()], DType::F32, "A");
    assert_err!(
        a.try_at(&[Expr::float_of(1.0, DType::F32)]),
        Error::InvalidExpr(_),
        "index 0 of tensor A has type float32; indices must be integers"
    );
    let c = compute(&[4.into()], "C", |i| {
        a.at(&[cast(DType::F32, i[0].clone())])
    });
    let s = create_schedule(&[c.clone()]).unwrap();
    assert_err!(
        lower(&s, &[a, c]),
        Error::InvalidExpr(_),
        "indices must be integers"
    );
}

#[test]
fn two_tensors_with_the_same_name() {
    // Two placeholders named A, read by different stages.
    let a1 = placeholder(&[4.into()], DType::F32, "A");
    let a2 = placeholder(&[4.into()], DType::F32, "A");
    let b = compute(&[4.into()], "B", |i| a1.at(&[i[0].clone()]) * 2.0f32);
    let c = compute(&[4.into()], "C", |i| {
        a2.at(&[i[0].clone()]) + b.at(&[i[0].clone()])
    });
    assert_err!(
        create_schedule(&[c]),
        Error::InvalidExpr(_),
        "two different tensors are named A"
    );
    // A compute named like a placeholder, read by different stages.
    let x = placeholder(&[4.into()], DType::F32, "X");
    let y = placeholder(&[4.into()], DType::F32, "Y");
    let xc = compute(&[4.into()], "X", |i| y.at(&[i[0].clone()]) * 2.0f32);
    let d = compute(&[4.into()], "D", |i| x.at(&[i[0].clone()]) + 1.0f32);
    let e = compute(&[4.into()], "E", |i| {
        d.at(&[i[0].clone()]) + xc.at(&[i[0].clone()])
    });
    assert_err!(
        create_schedule(&[e]),
        Error::InvalidExpr(_),
        "two different tensors are named X"
    );
    // Two computes named B, one an output and one read by another output.
    let p = placeholder(&[4.into()], DType::F32, "P");
    let b1 = compute(&[4.into()], "B", |i| p.at(&[i[0].clone()]) * 2.0f32);
    let b2 = compute(&[4.into()], "B", |i| p.at(&[i[0].clone()]) * 3.0f32);
    let f = compute(&[4.into()], "F", |i| b2.at(&[i[0].clone()]) + 1.0f32);
    assert_err!(
        create_schedule(&[b1.clone(), f]),
        Error::InvalidExpr(_),
        "two different tensors are named B"
    );
    // The same tensor read twice, and by two stages, is fine.
    let g = compute(&[4.into()], "G", |i| {
        p.at(&[i[0].clone()]) + p.at(&[i[0].clone()])
    });
    let h = compute(&[4.into()], "H", |i| {
        g.at(&[i[0].clone()]) * p.at(&[i[0].clone()])
    });
    assert!(create_schedule(&[h]).is_ok());
}

#[test]
fn bad_schedule_outputs() {
    let a = placeholder(&[4.into()], DType::F32, "A");
    assert_err!(
        create_schedule(&[]),
        Error::Schedule { .. },
        "create_schedule needs at least one output tensor"
    );
    assert_err!(
        create_schedule(&[a]),
        Error::Schedule { .. },
        "A is a placeholder; the outputs of a schedule must be computed tensors"
    );
}

// ---------------------------------------------------------------- traces

#[test]
fn malformed_trace_json() {
    let (_, _, c) = matmul();
    let outs = [c.clone()];
    assert_err!(
        Schedule::replay(&outs, "{ not json"),
        Error::Trace(_),
        "malformed trace JSON"
    );
    assert_err!(
        Schedule::replay(&outs, ""),
        Error::Trace(_),
        "malformed trace JSON"
    );
    // Valid JSON, but not a trace.
    assert_err!(
        Schedule::replay(&outs, r#"{"op": "split"}"#),
        Error::Trace(_),
        "malformed trace JSON"
    );
    assert_err!(
        Schedule::replay(&outs, r#"[{"op": "transpose", "stage": "C"}]"#),
        Error::Trace(_),
        "malformed trace JSON"
    );
    assert_err!(
        Schedule::replay(&outs, r#"[{"op": "split", "stage": "C", "axis": "i"}]"#),
        Error::Trace(_),
        "factor"
    );
    assert_err!(
        Schedule::replay(
            &outs,
            r#"[{"op": "split", "stage": "C", "axis": "i", "factor": "four"}]"#
        ),
        Error::Trace(_),
        "malformed trace JSON"
    );
    // The empty trace replays to a fresh schedule.
    let s = Schedule::replay(&outs, "[]").unwrap();
    assert!(s.trace.is_empty());
}

#[test]
fn trace_naming_a_missing_axis_or_stage() {
    let (_, _, c) = matmul();
    let outs = [c.clone()];
    let mut s = create_schedule(&outs).unwrap();
    let [i, _] = s.axes2(&c).unwrap();
    s.split(&c, &i, 2).unwrap();
    let json = s.trace_json();
    assert!(json.contains("\"i\""), "{}", json);
    // Rename the axis to one the stage does not have.
    let bad = json.replace("\"i\"", "\"q\"");
    assert_err!(
        Schedule::replay(&outs, &bad),
        Error::Trace(_),
        "cannot split q: no such axis"
    );
    // An axis that exists only after a step that is missing from the trace.
    let bad = r#"[{"op": "vectorize", "stage": "C", "axis": "j.inner"}]"#;
    assert_err!(Schedule::replay(&outs, bad), Error::Trace(_), "j.inner");
    // An axis that was already split.
    let bad = r#"[{"op": "split", "stage": "C", "axis": "i", "factor": 2}, {"op": "fuse", "stage": "C", "axes": ["i", "j"]}]"#;
    assert_err!(
        Schedule::replay(&outs, bad),
        Error::Trace(_),
        "it was split into i.outer, i.inner"
    );
    // A stage that does not exist.
    let bad = r#"[{"op": "unroll", "stage": "Z", "axis": "i"}]"#;
    assert_err!(
        Schedule::replay(&outs, bad),
        Error::Trace(_),
        "no stage named Z"
    );
    // The original still replays.
    let r = Schedule::replay(&outs, &json).unwrap();
    assert_eq!(r.trace, s.trace);
}
