//! `rfactor`: the test triple (golden IR, numbers against the unscheduled computation on
//! the interpreter and the JIT with a factor that does not divide the extent, trace
//! replay), every reducer the TE has (sum, max, min, prod, a tuple `comm_reducer`), the
//! shapes of the factoring (factor axis position, several reduce axes, nothing left to
//! reduce), the errors, and the use it exists for: a row reduction whose partial results
//! are computed in vector lanes.

mod common;
use common::*;
use loopforge::prelude::*;

type Reducer = fn(Expr, &[IterVar]) -> Expr;

/// `C[i] = R_k A[i, k]` over an `m x n` input.
fn row_reduce(m: i64, n: i64, r: Reducer) -> (Vec<Tensor>, Vec<Tensor>) {
    let a = placeholder(&[m.into(), n.into()], DType::F32, "A");
    let k = reduce_axis(0, n, "k");
    let c = compute(&[m.into()], "C", |i| {
        r(a.at(&[i[0].clone(), k.x()]), &[k.clone()])
    });
    (vec![c.clone()], vec![a, c])
}

fn sum_r(e: Expr, ax: &[IterVar]) -> Expr {
    sum(e, ax)
}
fn max_r(e: Expr, ax: &[IterVar]) -> Expr {
    max_reduce(e, ax)
}
fn min_r(e: Expr, ax: &[IterVar]) -> Expr {
    min_reduce(e, ax)
}
/// A product of values near 1, so that it neither vanishes nor explodes.
fn prod_r(e: Expr, ax: &[IterVar]) -> Expr {
    prod(e * 0.25f32 + 1.0f32, ax)
}

/// split k by `f`, rfactor k.inner at `pos`, and put the lanes innermost in C.rf.
fn factor(s: &mut Schedule, c: &Tensor, f: i64, pos: usize) -> Result<Tensor> {
    let k = s.reduce_axes(c)?.remove(0);
    let (_, ki) = s.split(c, &k, f)?;
    let cf = s.rfactor(c, &ki, pos)?;
    let lanes = s.axis(&cf, "k.inner")?;
    let ko = s.reduce_axes(&cf)?.remove(0);
    s.reorder(&cf, &[&ko, &lanes])?;
    Ok(cf)
}

#[test]
fn rfactor_sum() {
    // 23 = 5 * 4 + 3: the last k.outer step covers one element past the end.
    let (o, args) = row_reduce(37, 23, sum_r);
    let c = o[0].clone();
    check_primitive("rfactor", &o, &args, |s| {
        factor(s, &c, 4, 1)?;
        Ok(())
    });
    let mut s = create_schedule(&o).unwrap();
    let cf = factor(&mut s, &c, 4, 1).unwrap();
    assert_eq!(cf.name(), "C.rf");
    assert_eq!(cf.shape().len(), 2);
    assert_eq!(s.leaf_axes(&cf).unwrap().len(), 3);
    let names: Vec<String> = s.stages.iter().map(|st| st.name.clone()).collect();
    assert_eq!(names, ["C.rf", "C"]);
    assert_eq!(
        s.reduce_axes(&c).unwrap()[0].name,
        "k.inner",
        "C now reduces over the factored axis"
    );
}

#[test]
fn rfactor_every_reducer_and_position() {
    for (what, r) in [
        ("sum", sum_r as Reducer),
        ("max", max_r as Reducer),
        ("min", min_r as Reducer),
        ("prod", prod_r as Reducer),
    ] {
        for (f, pos) in [(4, 0), (4, 1), (5, 1), (23, 0), (7, 0)] {
            let (o, args) = row_reduce(9, 23, r);
            let c = o[0].clone();
            let mut s = create_schedule(&o).unwrap();
            factor(&mut s, &c, f, pos).unwrap();
            let want = run_all(&create_schedule(&o).unwrap(), &args, Target::interp(), 3);
            for t in [Target::interp(), Target::cpu()] {
                let got = run_all(&s, &args, t.clone(), 3);
                assert_outputs_close(
                    &args,
                    &got,
                    &want,
                    &format!("{} rfactor by {} at {} on {:?}", what, f, pos, t),
                );
            }
        }
    }
}

#[test]
fn rfactor_shapes() {
    // Two reduce axes: factor one (unsplit), C.rf reduces over the other.
    let a = placeholder(&[6.into(), 5.into(), 7.into()], DType::F32, "A");
    let r = reduce_axis(0, 5, "r");
    let k = reduce_axis(1, 7, "k"); // a nonzero min
    let c = compute(&[6.into()], "C", |i| {
        sum(a.at(&[i[0].clone(), r.x(), k.x()]), &[r.clone(), k.clone()])
    });
    let args = [a.clone(), c.clone()];
    let want = run_all(
        &create_schedule(&[c.clone()]).unwrap(),
        &args,
        Target::interp(),
        5,
    );
    let check = |s: &Schedule, what: &str| {
        for t in [Target::interp(), Target::cpu()] {
            let got = run_all(s, &args, t.clone(), 5);
            assert_outputs_close(&args, &got, &want, &format!("{} on {:?}", what, t));
        }
        let replayed = Schedule::replay(&[c.clone()], &s.trace_json()).unwrap();
        assert_eq!(
            lower(&replayed, &args).unwrap().to_string(),
            lower(s, &args).unwrap().to_string(),
            "{} replayed",
            what
        );
    };
    let mut s = create_schedule(&[c.clone()]).unwrap();
    let [rr, _] = <[Axis; 2]>::try_from(s.reduce_axes(&c).unwrap()).unwrap();
    let cf = s.rfactor(&c, &rr, 0).unwrap();
    assert_eq!(s.reduce_axes(&cf).unwrap()[0].name, "k");
    check(&s, "rfactor r of (r, k)");

    // Nothing left to reduce: C.rf is elementwise, C sums it.
    let mut s = create_schedule(&[c.clone()]).unwrap();
    let [rr, kk] = <[Axis; 2]>::try_from(s.reduce_axes(&c).unwrap()).unwrap();
    let f = s.fuse(&c, &[&rr, &kk]).unwrap();
    let cf = s.rfactor(&c, &f, 1).unwrap();
    assert!(s.reduce_axes(&cf).unwrap().is_empty());
    check(&s, "rfactor of the fused reduction");

    // Split then fused back (an overshooting split under a fuse), factor the fused axis.
    let mut s = create_schedule(&[c.clone()]).unwrap();
    let [rr, kk] = <[Axis; 2]>::try_from(s.reduce_axes(&c).unwrap()).unwrap();
    let (ko, ki) = s.split(&c, &kk, 3).unwrap();
    let f = s.fuse(&c, &[&ko, &ki]).unwrap();
    s.reorder(&c, &[&f, &rr]).unwrap();
    let cf = s.rfactor(&c, &f, 1).unwrap();
    // C.rf's lanes can be parallel: they are independent now.
    let [i, lanes] = s.axes2(&cf).unwrap();
    s.parallel(&cf, &lanes).unwrap();
    let _ = i;
    check(&s, "rfactor of a fused split (guarded)");

    // rfactor the factored stage again: C.rf.rf.
    let mut s = create_schedule(&[c.clone()]).unwrap();
    let [rr, _] = <[Axis; 2]>::try_from(s.reduce_axes(&c).unwrap()).unwrap();
    let cf = s.rfactor(&c, &rr, 1).unwrap();
    let k2 = s.reduce_axes(&cf).unwrap().remove(0);
    let (_, k2i) = s.split(&cf, &k2, 2).unwrap();
    let cff = s.rfactor(&cf, &k2i, 0).unwrap();
    assert_eq!(cff.name(), "C.rf.rf");
    check(&s, "rfactor twice");
}

#[test]
fn rfactor_tuple_reducer_argmax() {
    let (n, m) = (7usize, 29usize);
    let a = placeholder(&[(n as i64).into(), (m as i64).into()], DType::F32, "A");
    let red = comm_reducer(
        "argmax",
        &[DType::I32, DType::F32],
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
    let outs = compute_multi(&[(n as i64).into()], "argmax", |i| {
        red.reduce(
            &[cast(DType::I32, k.x()), a.at(&[i[0].clone(), k.x()])],
            &[k.clone()],
        )
    });
    let args = [a.clone(), outs[0].clone(), outs[1].clone()];
    let mut s = create_schedule(&[outs[0].clone()]).unwrap();
    let kx = s.reduce_axes(&outs[0]).unwrap().remove(0);
    let (_, ki) = s.split(&outs[0], &kx, 4).unwrap();
    let cf = s.rfactor(&outs[0], &ki, 1).unwrap();
    assert_eq!(cf.op.num_outputs(), 2);
    let x = NdArray::random(&[n, m], DType::F32, 9);
    let xs = x.as_slice::<f32>().unwrap().to_vec();
    for t in [Target::interp(), Target::cpu()] {
        let k = build(&s, &args, t.clone()).unwrap();
        let mut idx = NdArray::zeros(&[n], DType::I32);
        let mut val = NdArray::zeros(&[n], DType::F32);
        k.run(&[&x], &mut [&mut idx, &mut val]).unwrap();
        for r in 0..n {
            let row = &xs[r * m..(r + 1) * m];
            let (bi, bv) = row
                .iter()
                .enumerate()
                .fold(
                    (0, f32::NEG_INFINITY),
                    |acc, (j, &v)| {
                        if v > acc.1 {
                            (j, v)
                        } else {
                            acc
                        }
                    },
                );
            assert_eq!(
                idx.as_slice::<i32>().unwrap()[r],
                bi as i32,
                "{:?} row {}",
                t,
                r
            );
            assert_eq!(val.as_slice::<f32>().unwrap()[r], bv, "{:?} row {}", t, r);
        }
    }
}

/// The use rfactor exists for: a 1024-wide row reduced in 4 vector lanes (`C.rf[i, l]`
/// accumulates `A[i, 4 k + l]` in one f32x4), the 4 partial results then combined.
fn vector_rows(r: Reducer, what: &str) {
    let (o, args) = row_reduce(16, 1024, r);
    let c = o[0].clone();
    let mut s = create_schedule(&o).unwrap();
    let cf = factor(&mut s, &c, 4, 1).unwrap();
    let lanes = s.axis(&cf, "k.inner").unwrap();
    s.vectorize(&cf, &lanes).unwrap();
    let [i] = <[Axis; 1]>::try_from(s.axes(&c).unwrap()).unwrap();
    s.compute_at(&cf, &c, &i).unwrap();
    let text = lower(&s, &args).unwrap().to_string();
    assert!(
        text.contains("C.rf[ramp(0, 1, 4)] = x4(")
            && text.contains("A[ramp(")
            && text.contains("C.rf[ramp(0, 1, 4)] = "),
        "{}: the partial results are not vector operations:\n{}",
        what,
        text
    );
    golden(&format!("rfactor_vector_{}", what), &text);
    let want = run_all(&create_schedule(&o).unwrap(), &args, Target::interp(), 1);
    for t in [Target::interp(), Target::cpu()] {
        let got = run_all(&s, &args, t.clone(), 1);
        assert_outputs_close(&args, &got, &want, &format!("row {} on {:?}", what, t));
    }
}

#[test]
fn rfactor_vectorized_row_sum() {
    vector_rows(sum_r, "sum");
}

#[test]
fn rfactor_vectorized_row_max() {
    vector_rows(max_r, "max");
}

#[test]
fn rfactor_errors() {
    let (o, _) = row_reduce(8, 16, sum_r);
    let c = o[0].clone();
    let mut s = create_schedule(&o).unwrap();
    let [i] = <[Axis; 1]>::try_from(s.axes(&c).unwrap()).unwrap();
    let k = s.reduce_axes(&c).unwrap().remove(0);
    assert_sched_err(
        s.rfactor(&c, &i, 0),
        "cannot rfactor C at i: i is a data-parallel axis; rfactor factors out a reduce leaf axis (those of C are: k)",
    );
    assert_sched_err(
        s.rfactor(&c, &k, 2),
        "factor_axis 2 is out of range: C.rf has 1 data axes besides k, so the position must be 0 to 1",
    );
    let (ko, _) = s.split(&c, &k, 4).unwrap();
    assert_sched_err(
        s.rfactor(&c, &k, 0),
        "cannot rfactor k, it was split into k.outer, k.inner",
    );
    let nope = Axis {
        stage: "C".into(),
        name: "q".into(),
    };
    assert_sched_err(s.rfactor(&c, &nope, 0), "cannot rfactor q: no such axis");
    // A stage that is not a reduction.
    let (o2, _) = {
        let a = placeholder(&[8.into()], DType::F32, "A");
        let b = compute(&[8.into()], "B", |i| a.at(&[i[0].clone()]) * 2.0f32);
        (vec![b.clone()], vec![a, b])
    };
    let mut s2 = create_schedule(&o2).unwrap();
    let [bi] = <[Axis; 1]>::try_from(s2.axes(&o2[0]).unwrap()).unwrap();
    assert_sched_err(
        s2.rfactor(&o2[0], &bi, 0),
        "cannot rfactor B at i: B is not a reduction",
    );
    // Data axes already scheduled.
    let mut s3 = create_schedule(&o).unwrap();
    let k3 = s3.reduce_axes(&c).unwrap().remove(0);
    let [i3] = <[Axis; 1]>::try_from(s3.axes(&c).unwrap()).unwrap();
    s3.split(&c, &i3, 2).unwrap();
    assert_sched_err(
        s3.rfactor(&c, &k3, 0),
        "the data axes of C were already split, fused or annotated (i.outer, i.inner)",
    );
    // Twice on the same stage.
    let ki = s.axis(&c, "k.inner").unwrap();
    s.rfactor(&c, &ki, 0).unwrap();
    let kk = s.reduce_axes(&c).unwrap().remove(0);
    assert_sched_err(s.rfactor(&c, &kk, 0), "a stage named C.rf exists already");
    let _ = ko;
    // A producer computed at a reduce axis that rfactor would remove.
    let a = placeholder(&[8.into(), 16.into()], DType::F32, "A");
    let b = compute(&[8.into(), 16.into()], "B", |i| {
        a.at(&[i[0].clone(), i[1].clone()]) + 1.0f32
    });
    let k = reduce_axis(0, 16, "k");
    let c4 = compute(&[8.into()], "C", |i| {
        sum(b.at(&[i[0].clone(), k.x()]), &[k.clone()])
    });
    let mut s4 = create_schedule(&[c4.clone()]).unwrap();
    let k4 = s4.reduce_axes(&c4).unwrap().remove(0);
    let (k4o, k4i) = s4.split(&c4, &k4, 4).unwrap();
    s4.compute_at(&b, &c4, &k4o).unwrap();
    assert_sched_err(
        s4.rfactor(&c4, &k4i, 0),
        "stage B is computed at C.k.outer, an axis that rfactor removes",
    );
}
