//! Regression tests for bugs found by the property and feature tests.

mod common;
use loopforge::prelude::*;

/// compute_at into Y while Z also reads P through the inlined X (outside Y's loop).
#[test]
fn compute_at_refuses_a_consumer_reached_through_an_inlined_stage() {
    let a = placeholder(&[8.into()], DType::F32, "A");
    let p = compute(&[8.into()], "P", |i| a.at(&[i[0].clone()]) * 2.0f32);
    let x = compute(&[8.into()], "X", |i| p.at(&[i[0].clone()]) + 1.0f32);
    let y = compute(&[8.into()], "Y", |i| x.at(&[i[0].clone()]) * 3.0f32);
    let z = compute(&[8.into()], "Z", |i| {
        x.at(&[i[0].clone()]) + y.at(&[i[0].clone()])
    });
    let mut s = create_schedule(&[z.clone()]).unwrap();
    s.compute_inline(&x).unwrap();
    let yi = s.axes(&y).unwrap().remove(0);
    common::assert_sched_err(s.compute_at(&p, &y, &yi), "Z also reads it outside Y");
    // Inlining after compute_at reaches the same state: lower must refuse it, typed.
    let mut s = create_schedule(&[z.clone()]).unwrap();
    let yi = s.axes(&y).unwrap().remove(0);
    let r = s.compute_at(&p, &y, &yi);
    assert!(r.is_err(), "Z reads X which reads P outside Y: {:?}", r);
}

/// compute_at through an inlined reader: P's reader X is inlined into Y, Y is computed at
/// Z's rows, so P may be computed there too (the softmax schedule: the row maximum at
/// the output's row, read by the exponentials through the inlined shift). It was refused
/// ("Z does not read P").
#[test]
fn compute_at_where_an_inlined_readers_consumer_is_computed() {
    let a = placeholder(&[6.into(), 8.into()], DType::F32, "A");
    let p = compute(&[6.into()], "P", |i| {
        a.at(&[i[0].clone(), 0.into()]) + a.at(&[i[0].clone(), 7.into()])
    });
    let x = compute(&[6.into(), 8.into()], "X", |i| {
        a.at(&[i[0].clone(), i[1].clone()]) - p.at(&[i[0].clone()])
    });
    let y = compute(&[6.into(), 8.into()], "Y", |i| {
        x.at(&[i[0].clone(), i[1].clone()]) * 2.0f32
    });
    let z = compute(&[6.into(), 8.into()], "Z", |i| {
        y.at(&[i[0].clone(), i[1].clone()]) + 1.0f32
    });
    let mut s = create_schedule(&[z.clone()]).unwrap();
    s.compute_inline(&x).unwrap();
    let [zi, _] = s.axes2(&z).unwrap();
    s.compute_at(&y, &z, &zi).unwrap();
    s.compute_at(&p, &z, &zi).unwrap();
    let args = [a.clone(), z.clone()];
    let text = lower(&s, &args).unwrap().to_string();
    assert!(text.contains("allocate P[float32, (1)]"), "{}", text);
    let want = common::run_all(
        &create_schedule(&[z.clone()]).unwrap(),
        &args,
        Target::interp(),
        3,
    );
    for t in [Target::interp(), Target::cpu()] {
        let got = common::run_all(&s, &args, t, 3);
        common::assert_outputs_close(&args, &got, &want, "P at Z's rows");
    }
}

/// Fuse in a producer computed inside the tail of a non-dividing tile.
#[test]
fn empty_tail_regions_do_not_run_fused_producers() {
    let a = placeholder(&[10.into(), 29.into()], DType::F32, "A");
    let c = compute(&[10.into(), 29.into()], "C", |i| {
        a.at(&[i[0].clone(), i[1].clone()]) * 2.0f32
    });
    let d = compute(&[10.into(), 29.into()], "D", |i| {
        c.at(&[i[0].clone(), i[1].clone()]) + 1.0f32
    });
    let mut s = create_schedule(&[d.clone()]).unwrap();
    let [ci, cj] = s.axes2(&c).unwrap();
    s.fuse(&c, &[&ci, &cj]).unwrap();
    let [di, dj] = s.axes2(&d).unwrap();
    let (_, _, _, dji) = s.tile(&d, &di, &dj, 9, 4).unwrap();
    s.compute_at(&c, &d, &dji).unwrap();
    let args = [a.clone(), d.clone()];
    let want = common::run_all(
        &create_schedule(&[d.clone()]).unwrap(),
        &args,
        Target::interp(),
        1,
    );
    for t in [Target::interp(), Target::cpu()] {
        let got = common::run_all(&s, &args, t, 1);
        common::assert_outputs_close(&args, &got, &want, "fused producer in a tile tail");
    }
}

#[test]
fn a_reduction_inside_an_expression_is_a_typed_error() {
    let a = placeholder(&[4.into(), 9.into()], DType::F32, "A");
    let k = reduce_axis(0, 9, "k");
    let r = compute(&[4.into()], "R", |i| {
        sum(a.at(&[i[0].clone(), k.x()]), &[k.clone()]) + 0.5f32
    });
    match lower(&create_schedule(&[r.clone()]).unwrap(), &[a, r]) {
        Err(Error::InvalidExpr(m)) => assert!(
            m.contains("in R: a reduction must be the whole body"),
            "{}",
            m
        ),
        other => panic!(
            "expected InvalidExpr, got {:?}",
            other.map(|f| f.to_string())
        ),
    }
}

#[test]
fn two_tensors_named_alike_in_one_stage_are_refused() {
    let a1 = placeholder(&[4.into()], DType::F32, "A");
    let a2 = placeholder(&[4.into()], DType::F32, "A");
    let c = compute(&[4.into()], "C", |i| {
        a1.at(&[i[0].clone()]) + a2.at(&[i[0].clone()]) * 10.0f32
    });
    assert!(
        matches!(create_schedule(&[c]), Err(Error::InvalidExpr(m)) if m.contains("two different tensors are named A"))
    );
    let x = placeholder(&[4.into()], DType::F32, "X");
    let x2 = compute(&[4.into()], "X", |i| x.at(&[i[0].clone()]) * 2.0f32);
    let y = compute(&[4.into()], "Y", |i| {
        x.at(&[i[0].clone()]) + x2.at(&[i[0].clone()])
    });
    assert!(
        matches!(create_schedule(&[y]), Err(Error::InvalidExpr(m)) if m.contains("two different tensors are named X"))
    );
}

/// Inlining after compute_at can leave a stage attached in an inlined stage: lower refuses.
#[test]
fn inlining_after_compute_at_is_refused_by_lower() {
    let a = placeholder(&[8.into()], DType::F32, "A");
    let p = compute(&[8.into()], "P", |i| a.at(&[i[0].clone()]) * 2.0f32);
    let x = compute(&[8.into()], "X", |i| p.at(&[i[0].clone()]) + 1.0f32);
    let y = compute(&[8.into()], "Y", |i| x.at(&[i[0].clone()]) * 3.0f32);
    let z = compute(&[8.into()], "Z", |i| {
        x.at(&[i[0].clone()]) + y.at(&[i[0].clone()])
    });
    let mut s = create_schedule(&[z.clone()]).unwrap();
    let xi = s.axes(&x).unwrap().remove(0);
    s.compute_at(&p, &x, &xi).unwrap();
    s.compute_inline(&x).unwrap();
    match lower(&s, &[a, z]) {
        Err(Error::Schedule { stage, msg }) => {
            assert!(stage == "P" && msg.contains("was inlined"), "{}", msg)
        }
        other => panic!(
            "expected a schedule error, got {:?}",
            other.map(|f| f.to_string())
        ),
    }
}

/// A reduction axis named like a default data axis (`k`, the third) used to share its
/// name, and scheduling then confused the two ("cannot reorder k, it was fused into ...").
#[test]
fn a_reduction_axis_named_like_a_default_data_axis_gets_its_own_name() {
    let a = placeholder(&[3.into(), 4.into(), 5.into(), 6.into()], DType::F32, "A");
    let k = reduce_axis(0, 6, "k");
    let c = compute(&[3.into(), 4.into(), 5.into()], "C", |i| {
        sum(
            a.at(&[i[0].clone(), i[1].clone(), i[2].clone(), k.x()]),
            &[k.clone()],
        )
    });
    let mut s = create_schedule(&[c.clone()]).unwrap();
    let [ci, cj, ck] = s.axes3(&c).unwrap();
    assert_eq!(
        [ci.name.as_str(), cj.name.as_str(), ck.name.as_str()],
        ["i", "j", "ax2"]
    );
    let kr = s.reduce_axes(&c).unwrap().remove(0);
    assert_eq!(kr.name, "k");
    let f = s.fuse(&c, &[&cj, &ck]).unwrap();
    let (ko, ki) = s.split(&c, &kr, 4).unwrap();
    s.reorder(&c, &[&ci, &ko, &f, &ki]).unwrap();
    let args = [a.clone(), c.clone()];
    common::check_against_unscheduled(&s, &args, &[c], 3, "reduction axis k, data axis ax2");
}

/// Names the user chose that clash are a typed error naming both axes.
#[test]
fn clashing_axis_names_are_a_typed_error() {
    let a = placeholder(&[4.into(), 6.into()], DType::F32, "A");
    let k = reduce_axis(0, 6, "k");
    let c = compute_named(&[4.into()], "C", &["k"], |i| {
        sum(a.at(&[i[0].clone(), k.x()]), &[k.clone()])
    });
    common::assert_sched_err(
        create_schedule(&[c]),
        "two axes of C are named k (a data axis and a reduction axis",
    );
}
