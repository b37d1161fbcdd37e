//! Every schedule primitive: golden IR, numeric equality with the unscheduled computation
//! (interpreter and JIT, with factors that do not divide the extents), trace replay, and
//! an error case asserting kind and message.

mod common;
use common::*;
use loopforge::prelude::*;

fn mm() -> (Vec<Tensor>, Vec<Tensor>) {
    let (a, b, c) = matmul(37, 19, 23);
    (vec![c.clone()], vec![a, b, c])
}

/// B = A * 2 (elementwise), C[i, j] = B[i, j] + B[i + 2, j] (a stencil over B).
fn stencil() -> (Vec<Tensor>, Vec<Tensor>, Tensor) {
    let a = placeholder(&[37.into(), 21.into()], DType::F32, "A");
    let b = compute(&[37.into(), 21.into()], "B", |i| {
        a.at(&[i[0].clone(), i[1].clone()]) * 2.0f32
    });
    let c = compute(&[35.into(), 21.into()], "C", |i| {
        b.at(&[i[0].clone(), i[1].clone()]) + b.at(&[i[0].clone() + 2, i[1].clone()])
    });
    (vec![c.clone()], vec![a, c], b)
}

fn c_of(o: &[Tensor]) -> Tensor {
    o[0].clone()
}

#[test]
fn split_by_factor() {
    let (o, args) = mm();
    let c = c_of(&o);
    check_primitive("split", &o, &args, |s| {
        let [i, _] = s.axes2(&c)?;
        s.split(&c, &i, 8)?;
        Ok(())
    });
}

#[test]
fn split_errors() {
    let (o, _) = mm();
    let c = c_of(&o);
    let (_, _, other) = stencil();
    let mut s = create_schedule(&o).unwrap();
    let [i, _] = s.axes2(&c).unwrap();
    let foreign = Axis {
        stage: other.op.name.clone(),
        name: "i".into(),
    };
    assert_sched_err(
        s.split(&c, &foreign, 4),
        "it is an axis of stage B, not of C",
    );
    assert_sched_err(
        s.split(&c, &i, 0),
        "cannot split i by factor 0: it must be at least 1",
    );
    s.split(&c, &i, 4).unwrap();
    assert_sched_err(
        s.split(&c, &i, 4),
        "cannot split i, it was split into i.outer, i.inner",
    );
}

#[test]
fn split_shift_inwards() {
    // C's 21 columns in blocks of 8: [0, 8), [8, 16), then [13, 21) (shifted back, no
    // guard), vectorized; B computed per block, over the shifted region.
    let (o, args, b) = stencil();
    let c = c_of(&o);
    check_primitive("split_shift_inwards", &o, &args, |s| {
        let [_, j] = s.axes2(&c)?;
        let (jo, ji) = s.split_shift_inwards(&c, &j, 8)?;
        let (_, lanes) = s.split(&c, &ji, 4)?;
        s.vectorize(&c, &lanes)?;
        s.compute_at(&b, &c, &jo)?;
        Ok(())
    });
    // The consumer of a reduction's cache_write, shifted; and a factor larger than the
    // extent (19 columns by 32: guarded as by split).
    let (o, args) = mm();
    let c = c_of(&o);
    for (f, what) in [(6, "shifted"), (32, "factor over the extent")] {
        let mut s = create_schedule(&o).unwrap();
        let cl = s.cache_write(&c, "local").unwrap();
        let [_, j] = s.axes2(&c).unwrap();
        let (jo, _) = s.split_shift_inwards(&c, &j, f).unwrap();
        s.compute_at(&cl, &c, &jo).unwrap();
        check_against_unscheduled(&s, &args, &o, 3, &format!("cache_write consumer, {}", what));
    }
}

#[test]
fn split_shift_inwards_errors() {
    // A reduction would accumulate its overlapping points twice.
    let (o, _) = mm();
    let c = c_of(&o);
    let mut s = create_schedule(&o).unwrap();
    let [i, _] = s.axes2(&c).unwrap();
    assert_sched_err(
        s.split_shift_inwards(&c, &i, 8),
        "cannot split_shift_inwards i: C is a reduction (over k), and the points its shifted \
         last block recomputes would be accumulated twice; use split",
    );
    let (o, _, _) = stencil();
    let c = c_of(&o);
    let mut s = create_schedule(&o).unwrap();
    let [i, _] = s.axes2(&c).unwrap();
    assert_sched_err(
        s.split_shift_inwards(&c, &i, 0),
        "cannot split i by factor 0: it must be at least 1",
    );
}

#[test]
fn split_by_nparts() {
    let (o, args) = mm();
    let c = c_of(&o);
    check_primitive("split_nparts", &o, &args, |s| {
        let [_, j] = s.axes2(&c)?;
        s.split_nparts(&c, &j, 3)?;
        Ok(())
    });
}

#[test]
fn split_nparts_errors() {
    let (o, _) = mm();
    let c = c_of(&o);
    let mut s = create_schedule(&o).unwrap();
    let [_, j] = s.axes2(&c).unwrap();
    assert_sched_err(
        s.split_nparts(&c, &j, -1),
        "cannot split j by nparts -1: it must be at least 1",
    );
}

#[test]
fn tile() {
    let (o, args) = mm();
    let c = c_of(&o);
    check_primitive("tile", &o, &args, |s| {
        let [i, j] = s.axes2(&c)?;
        s.tile(&c, &i, &j, 8, 4)?;
        Ok(())
    });
}

#[test]
fn tile_errors() {
    let (o, _) = mm();
    let c = c_of(&o);
    let mut s = create_schedule(&o).unwrap();
    let [i, _] = s.axes2(&c).unwrap();
    let nope = Axis {
        stage: "C".into(),
        name: "q".into(),
    };
    assert_sched_err(
        s.tile(&c, &i, &nope, 4, 4),
        "cannot split q: no such axis; leaf axes are: i.outer, i.inner, j, k",
    );
}

#[test]
fn fuse() {
    let (o, args) = mm();
    let c = c_of(&o);
    check_primitive("fuse", &o, &args, |s| {
        let [i, j] = s.axes2(&c)?;
        let f = s.fuse(&c, &[&i, &j])?;
        s.split(&c, &f, 16)?;
        Ok(())
    });
}

#[test]
fn fuse_errors() {
    let (o, _) = mm();
    let c = c_of(&o);
    let mut s = create_schedule(&o).unwrap();
    let [i, j] = s.axes2(&c).unwrap();
    let k = s.reduce_axes(&c).unwrap().remove(0);
    s.reorder(&c, &[&i, &k, &j]).unwrap();
    assert_sched_err(
        s.fuse(&c, &[&i, &j]),
        "cannot fuse i and j: they are not adjacent in the loop order (i, k, j)",
    );
    assert_sched_err(
        s.fuse(&c, &[&i, &k]),
        "cannot fuse a data-parallel axis with a reduce axis",
    );
}

#[test]
fn reorder() {
    let (o, args) = mm();
    let c = c_of(&o);
    check_primitive("reorder", &o, &args, |s| {
        let [i, j] = s.axes2(&c)?;
        let k = s.reduce_axes(&c)?.remove(0);
        s.reorder(&c, &[&k, &j, &i])?;
        Ok(())
    });
}

#[test]
fn reorder_errors() {
    let (o, _) = mm();
    let c = c_of(&o);
    let mut s = create_schedule(&o).unwrap();
    let [i, j] = s.axes2(&c).unwrap();
    assert_sched_err(s.reorder(&c, &[&i, &j, &i]), "reorder lists i twice");
    let gone = Axis {
        stage: "C".into(),
        name: "i.outer".into(),
    };
    assert_sched_err(
        s.reorder(&c, &[&gone, &j]),
        "cannot reorder i.outer: no such axis",
    );
}

#[test]
fn vectorize() {
    let (o, args) = mm();
    let c = c_of(&o);
    check_primitive("vectorize", &o, &args, |s| {
        let [i, j] = s.axes2(&c)?;
        let k = s.reduce_axes(&c)?.remove(0);
        let (jo, ji) = s.split(&c, &j, 4)?;
        s.reorder(&c, &[&i, &jo, &k, &ji])?;
        s.vectorize(&c, &ji)?;
        Ok(())
    });
}

#[test]
fn vectorize_errors() {
    let (o, _) = mm();
    let c = c_of(&o);
    let mut s = create_schedule(&o).unwrap();
    let k = s.reduce_axes(&c).unwrap().remove(0);
    assert_sched_err(
        s.vectorize(&c, &k),
        "cannot vectorize k: it is a reduce axis",
    );
}

#[test]
fn unroll() {
    let (o, args) = mm();
    let c = c_of(&o);
    check_primitive("unroll", &o, &args, |s| {
        let k = s.reduce_axes(&c)?.remove(0);
        let (_, ki) = s.split(&c, &k, 4)?;
        s.unroll(&c, &ki)?;
        Ok(())
    });
}

#[test]
fn unroll_errors() {
    let (o, _) = mm();
    let c = c_of(&o);
    let mut s = create_schedule(&o).unwrap();
    let [i, _] = s.axes2(&c).unwrap();
    s.split(&c, &i, 4).unwrap();
    assert_sched_err(
        s.unroll(&c, &i),
        "cannot unroll i, it was split into i.outer, i.inner",
    );
}

#[test]
fn parallel() {
    let (o, args) = mm();
    let c = c_of(&o);
    check_primitive("parallel", &o, &args, |s| {
        let [i, _] = s.axes2(&c)?;
        let (io, _) = s.split(&c, &i, 5)?;
        s.parallel(&c, &io)?;
        Ok(())
    });
}

#[test]
fn parallel_errors() {
    let (o, _) = mm();
    let c = c_of(&o);
    let mut s = create_schedule(&o).unwrap();
    let k = s.reduce_axes(&c).unwrap().remove(0);
    assert_sched_err(
        s.parallel(&c, &k),
        "cannot parallelize k: it is a reduce axis",
    );
    let [i, _] = s.axes2(&c).unwrap();
    s.vectorize(&c, &i).unwrap();
    assert_sched_err(
        s.parallel(&c, &i),
        "cannot parallelize i: it is already vectorized",
    );
}

#[test]
fn compute_at() {
    let (o, args, b) = stencil();
    let c = c_of(&o);
    check_primitive("compute_at", &o, &args, |s| {
        let [i, _] = s.axes2(&c)?;
        let (io, _) = s.split(&c, &i, 8)?;
        s.compute_at(&b, &c, &io)?;
        Ok(())
    });
}

#[test]
fn compute_at_errors() {
    let (o, _, b) = stencil();
    let c = c_of(&o);
    let mut s = create_schedule(&o).unwrap();
    let [bi, _] = s.axes2(&b).unwrap();
    assert_sched_err(
        s.compute_at(&c, &b, &bi),
        "cannot compute_at C: it is an output of the schedule",
    );
    // A second, unrelated consumer chain: D reads A only.
    let (mo, _) = mm();
    let mc = c_of(&mo);
    let d = compute(&[4.into()], "D", |i| {
        mc.at(&[i[0].clone(), i[0].clone()]) * 1.0f32
    });
    let e = compute(&[4.into()], "E", |i| d.at(&[i[0].clone()]) + 1.0f32);
    let mut s = create_schedule(&[e.clone()]).unwrap();
    let [ei] = <[Axis; 1]>::try_from(s.axes(&e).unwrap()).unwrap();
    assert_sched_err(
        s.compute_at(&mc, &e, &ei),
        "cannot compute_at C in E: E does not read C",
    );
}

#[test]
fn compute_inline() {
    let (o, args, b) = stencil();
    check_primitive("compute_inline", &o, &args, |s| s.compute_inline(&b));
}

#[test]
fn compute_inline_errors() {
    let (o, _) = mm();
    let c = c_of(&o);
    let d = compute(&[37.into(), 19.into()], "D", |i| {
        c.at(&[i[0].clone(), i[1].clone()]) + 1.0f32
    });
    let mut s = create_schedule(&[d]).unwrap();
    assert_sched_err(
        s.compute_inline(&c),
        "cannot compute_inline C: it is a reduction",
    );
}

#[test]
fn compute_root() {
    let (o, args, b) = stencil();
    let c = c_of(&o);
    check_primitive("compute_root", &o, &args, |s| {
        let [i, _] = s.axes2(&c)?;
        s.compute_at(&b, &c, &i)?;
        s.compute_root(&b)
    });
}

#[test]
fn compute_root_errors() {
    let (o, args, _) = stencil();
    let mut s = create_schedule(&o).unwrap();
    assert_sched_err(
        s.compute_root(&args[0]),
        "A is a placeholder (an input); only compute stages (B, C) can be scheduled",
    );
}

#[test]
fn cache_read() {
    let (o, args) = mm();
    let c = c_of(&o);
    let a = args[0].clone();
    check_primitive("cache_read", &o, &args, |s| {
        let al = s.cache_read(&a, "local", &[&c])?;
        let [i, _] = s.axes2(&c)?;
        let (io, _) = s.split(&c, &i, 8)?;
        s.compute_at(&al, &c, &io)?;
        Ok(())
    });
}

#[test]
fn cache_read_errors() {
    let (o, args, b) = stencil();
    let mut s = create_schedule(&o).unwrap();
    let c = c_of(&o);
    assert_sched_err(
        s.cache_read(&args[0], "local", &[&c]),
        "cannot cache_read A for C: C does not read it (its readers are: B)",
    );
    assert_sched_err(
        s.cache_read(&args[0], "texture", &[&b]),
        "unknown memory scope \"texture\"",
    );
}

#[test]
fn cache_write() {
    let (o, args) = mm();
    let c = c_of(&o);
    check_primitive("cache_write", &o, &args, |s| {
        let cl = s.cache_write(&c, "local")?;
        let [i, j] = s.axes2(&c)?;
        let (_, jo, _, _) = s.tile(&c, &i, &j, 8, 4)?;
        s.compute_at(&cl, &c, &jo)?;
        Ok(())
    });
}

#[test]
fn cache_write_errors() {
    let (o, _) = mm();
    let c = c_of(&o);
    let mut s = create_schedule(&o).unwrap();
    let [i, _] = s.axes2(&c).unwrap();
    s.split(&c, &i, 4).unwrap();
    assert_sched_err(
        s.cache_write(&c, "local"),
        "cache_write must come before any other primitive on C",
    );
}

#[test]
fn bind_runs_on_the_interpreter_and_is_refused_by_the_cpu() {
    let (o, args) = mm();
    let c = c_of(&o);
    let mut s = create_schedule(&o).unwrap();
    let [i, j] = s.axes2(&c).unwrap();
    let (io, ii) = s.split(&c, &i, 8).unwrap();
    s.bind(&c, &io, "blockIdx.x").unwrap();
    s.bind(&c, &ii, "threadIdx.x").unwrap();
    let f = lower(&s, &args).unwrap();
    golden("bind", &f.to_string());
    let want = run_all(&create_schedule(&o).unwrap(), &args, Target::interp(), 3);
    let got = run_all(&s, &args, Target::interp(), 3);
    assert_outputs_close(&args, &got, &want, "bind on the interpreter");
    let replayed = Schedule::replay(&o, &s.trace_json()).unwrap();
    assert_eq!(lower(&replayed, &args).unwrap().to_string(), f.to_string());
    match build(&s, &args, Target::cpu()) {
        Err(Error::Target(m)) => assert!(
            m.contains("threadIdx.x") || m.contains("blockIdx.x"),
            "{}",
            m
        ),
        Err(e) => panic!("unexpected error {}", e),
        Ok(_) => panic!("the CPU backend accepted GPU-bound loops"),
    }
    assert_sched_err(
        s.bind(&c, &j, "threadIdx.x"),
        "i.inner is already bound to it",
    );
    assert_sched_err(s.bind(&c, &j, "warp.x"), "cannot bind j to \"warp.x\"");
}

#[test]
fn ir_dump_after_every_pass() {
    let (o, args) = mm();
    let c = c_of(&o);
    let mut s = create_schedule(&o).unwrap();
    let [_, j] = s.axes2(&c).unwrap();
    let (_, ji) = s.split(&c, &j, 4).unwrap();
    s.unroll(&c, &ji).unwrap();
    let (f, steps) = loopforge::lower::lower_traced(&s, &args).unwrap();
    // The e-graph passes carry their stop reasons after the name: `egraph_index [...]`.
    let names: Vec<&str> = steps
        .iter()
        .map(|(p, _)| p.split(" [").next().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "egraph_algebra",
            "schedule_ops",
            "storage_sync",
            "double_buffer",
            "storage_flatten",
            "simplify",
            "egraph_index",
            "loop_partition",
            "simplify",
            "vectorize_copies",
            "vectorize",
            "unroll",
            "simplify",
            "hoist"
        ]
    );
    // A matmul body has nothing for the algebra rules; there is no division in its
    // indices either, so the index pass runs nothing.
    assert!(steps[0].1.is_none(), "egraph_algebra should change nothing");
    assert_eq!(steps[6].0, "egraph_index [egraph: nothing to run on]");
    assert!(steps[6].1.is_none());
    // Nothing is vectorized here, so that pass reports no change; unroll does change it.
    assert!(
        steps[2].1.is_none(),
        "storage_sync should be unchanged on the CPU"
    );
    assert!(steps[3].1.is_none(), "double_buffer should be unchanged");
    assert!(steps[9].1.is_none(), "vectorize_copies should be unchanged");
    assert!(steps[10].1.is_none(), "vectorize should be unchanged");
    assert!(steps[11].1.is_some(), "unroll should change the IR");
    assert!(
        steps[1]
            .1
            .as_ref()
            .unwrap()
            .contains("C[i, j.outer * 4 + j.inner]"),
        "{}",
        steps[1].1.as_ref().unwrap()
    );
    assert_eq!(
        steps.last().unwrap().1.as_deref().unwrap_or(""),
        f.to_string()
    );
}

#[test]
fn storage_align() {
    let (o, args) = mm();
    let c = c_of(&o);
    let a = args[0].clone();
    check_primitive("storage_align", &o, &args, |s| {
        let al = s.cache_read(&a, "local", &[&c])?;
        let [i, _] = s.axes2(&c)?;
        let (io, _) = s.split(&c, &i, 8)?;
        s.compute_at(&al, &c, &io)?;
        let [r, _] = s.axes2(&al)?;
        // Rows of 23 elements padded to a stride of 25 (25 % 8 == 1).
        s.storage_align(&al, &r, 8, 1)
    });
    let mut s = create_schedule(&o).unwrap();
    let al = s.cache_read(&a, "local", &[&c]).unwrap();
    let [r, _] = s.axes2(&al).unwrap();
    s.storage_align(&al, &r, 8, 1).unwrap();
    let (_, steps) = loopforge::lower::lower_traced(&s, &args).unwrap();
    let first = steps[1].1.as_ref().unwrap();
    assert!(
        first.contains("allocate A.local[float32, (37, 23)], strides=(25, 1)"),
        "{}",
        first
    );
}

#[test]
fn storage_align_errors() {
    let (o, args) = mm();
    let c = c_of(&o);
    let mut s = create_schedule(&o).unwrap();
    let al = s.cache_read(&args[0], "local", &[&c]).unwrap();
    let [r, q] = s.axes2(&al).unwrap();
    assert_sched_err(
        s.storage_align(&al, &q, 8, 1),
        "cannot storage_align ax1: it is the innermost dimension",
    );
    assert_sched_err(
        s.storage_align(&al, &r, 8, 8),
        "need factor >= 1 and 0 <= offset < factor",
    );
    let [ci, _] = s.axes2(&c).unwrap();
    assert_sched_err(
        s.storage_align(&c, &ci, 8, 0),
        "cannot storage_align C: it is an output",
    );
    let k = s.reduce_axes(&c).unwrap().remove(0);
    assert_sched_err(
        s.storage_align(&c, &k, 8, 0),
        "cannot storage_align k: it is not a dimension of C's buffer",
    );
}

/// `C = A B` with 36 x 23 `A` (rows a multiple of 4 for the blocked layouts).
fn mm36() -> (Vec<Tensor>, Vec<Tensor>) {
    let (a, b, c) = matmul(36, 19, 23);
    (vec![c.clone()], vec![a, b, c])
}

#[test]
fn transform_layout() {
    use loopforge::schedule::LayoutDim;
    let (o, args) = mm36();
    let c = c_of(&o);
    let a = args[0].clone();
    // A's copy as [9][23][4] (four rows interleaved), computed per block of 8 rows of C;
    // 8 does not divide 19 columns' split below, nor is the row split 4-aligned.
    check_primitive("transform_layout", &o, &args, |s| {
        let al = s.cache_read(&a, "global", &[&c])?;
        s.transform_layout(
            &al,
            &[
                LayoutDim::outer(0, 4),
                LayoutDim::dim(1),
                LayoutDim::inner(0, 4),
            ],
        )?;
        let [i, j] = s.axes2(&c)?;
        let (io, _) = s.split(&c, &i, 8)?;
        s.split(&c, &j, 8)?;
        s.compute_at(&al, &c, &io)?;
        Ok(())
    });
    // A pure permutation (a transposed copy) and a split whose factor leaves a remainder
    // for the consumer's loop (rows 36 in blocks of 5).
    check_primitive("transform_layout_transpose", &o, &args, |s| {
        let al = s.cache_read(&a, "global", &[&c])?;
        s.transform_layout(&al, &[LayoutDim::dim(1), LayoutDim::dim(0)])?;
        let [i, _] = s.axes2(&c)?;
        let (io, _) = s.split(&c, &i, 5)?;
        s.compute_at(&al, &c, &io)?;
        Ok(())
    });
    // A factor that does not divide: 36 rows in blocks of 5, the last block padded with
    // zero rows (A's copy is [8][23][5]); C's row blocks of 10 read across blocks.
    check_primitive("transform_layout_padded", &o, &args, |s| {
        let al = s.cache_read(&a, "global", &[&c])?;
        s.transform_layout(
            &al,
            &[
                LayoutDim::outer(0, 5),
                LayoutDim::dim(1),
                LayoutDim::inner(0, 5),
            ],
        )?;
        let [i, _] = s.axes2(&c)?;
        let (io, _) = s.split(&c, &i, 10)?;
        s.compute_at(&al, &c, &io)?;
        Ok(())
    });
    let mut s = create_schedule(&o).unwrap();
    let al = s.cache_read(&a, "global", &[&c]).unwrap();
    let padded = s
        .transform_layout(
            &al,
            &[
                LayoutDim::outer(0, 5),
                LayoutDim::dim(1),
                LayoutDim::inner(0, 5),
            ],
        )
        .unwrap();
    let shape: Vec<i64> = padded.shape().iter().map(|e| e.as_int().unwrap()).collect();
    assert_eq!(shape, vec![8, 23, 5]);
    let mut s = create_schedule(&o).unwrap();
    let al = s.cache_read(&a, "global", &[&c]).unwrap();
    let packed = s
        .transform_layout(
            &al,
            &[
                LayoutDim::outer(0, 4),
                LayoutDim::dim(1),
                LayoutDim::inner(0, 4),
            ],
        )
        .unwrap();
    let shape: Vec<i64> = packed.shape().iter().map(|e| e.as_int().unwrap()).collect();
    assert_eq!(shape, vec![9, 23, 4]);
    let names: Vec<String> = s.axes(&al).unwrap().into_iter().map(|a| a.name).collect();
    assert_eq!(names, ["ax0.outer", "ax1", "ax0.inner"]);
}

#[test]
fn transform_layout_errors() {
    use loopforge::schedule::LayoutDim;
    let (o, args) = mm36();
    let c = c_of(&o);
    let mut s = create_schedule(&o).unwrap();
    let al = s.cache_read(&args[0], "global", &[&c]).unwrap();
    assert_sched_err(
        s.transform_layout(
            &al,
            &[
                LayoutDim::outer(0, 0),
                LayoutDim::dim(1),
                LayoutDim::inner(0, 0),
            ],
        ),
        "factor 0 of dimension 0 must be at least 1",
    );
    // A reduction cannot be padded (its blocks must divide).
    let mut s2 = create_schedule(&o).unwrap();
    let cl = s2.cache_write(&c, "local").unwrap();
    assert_sched_err(
        s2.transform_layout(
            &cl,
            &[
                LayoutDim::outer(0, 5),
                LayoutDim::dim(1),
                LayoutDim::inner(0, 5),
            ],
        ),
        "a factor does not divide dimension 0 (extent 36), and a reduction cannot be padded",
    );
    assert_sched_err(
        s.transform_layout(&al, &[LayoutDim::outer(0, 4), LayoutDim::dim(1), LayoutDim::inner(0, 2)]),
        "dimension 0 must appear once whole, or once as outer and once as inner with the same factor",
    );
    assert_sched_err(
        s.transform_layout(&al, &[LayoutDim::dim(0)]),
        "dimension 1 is missing",
    );
    assert_sched_err(
        s.transform_layout(&al, &[LayoutDim::dim(0), LayoutDim::dim(2)]),
        "names dimension 2, but the stage has 2",
    );
    assert_sched_err(
        s.transform_layout(&c, &[LayoutDim::dim(1), LayoutDim::dim(0)]),
        "cannot transform_layout C: it is an output",
    );
    let [r, _] = s.axes2(&al).unwrap();
    s.split(&al, &r, 2).unwrap();
    assert_sched_err(
        s.transform_layout(&al, &[LayoutDim::dim(1), LayoutDim::dim(0)]),
        "apply it before any other primitive on the stage",
    );
}

#[test]
fn storage_align_on_cache_write_and_global_intermediates() {
    // The accumulator of cache_write (a reduction in local memory) and a global
    // intermediate (the stencil's B), padded; numbers on the interpreter and the JIT.
    let (o, args) = mm();
    let c = c_of(&o);
    let mut s = create_schedule(&o).unwrap();
    let cl = s.cache_write(&c, "local").unwrap();
    let [i, _] = s.axes2(&c).unwrap();
    let (io, _) = s.split(&c, &i, 8).unwrap();
    s.compute_at(&cl, &c, &io).unwrap();
    let [r, _] = s.axes2(&cl).unwrap();
    s.storage_align(&cl, &r, 16, 1).unwrap();
    let text = lower(&s, &args).unwrap().to_string();
    // Rows of 19 padded to 33 (33 % 16 == 1).
    assert!(text.contains("C.local[inv"), "{}", text);
    let (_, steps) = loopforge::lower::lower_traced(&s, &args).unwrap();
    let first = steps[1].1.as_ref().unwrap();
    assert!(first.contains("strides=(33, 1)"), "{}", first);
    let want = run_all(&create_schedule(&o).unwrap(), &args, Target::interp(), 3);
    for t in [Target::interp(), Target::cpu()] {
        let got = run_all(&s, &args, t.clone(), 3);
        assert_outputs_close(&args, &got, &want, &format!("aligned C.local on {:?}", t));
    }
    let replayed = Schedule::replay(&o, &s.trace_json()).unwrap();
    assert_eq!(lower(&replayed, &args).unwrap().to_string(), text);

    let (o, args, b) = stencil();
    let mut s = create_schedule(&o).unwrap();
    let [r, _] = s.axes2(&b).unwrap();
    s.storage_align(&b, &r, 8, 0).unwrap();
    let (_, steps) = loopforge::lower::lower_traced(&s, &args).unwrap();
    let first = steps[1].1.as_ref().unwrap();
    assert!(first.contains("strides=(24, 1)"), "{}", first);
    let want = run_all(&create_schedule(&o).unwrap(), &args, Target::interp(), 4);
    for t in [Target::interp(), Target::cpu()] {
        let got = run_all(&s, &args, t.clone(), 4);
        assert_outputs_close(&args, &got, &want, &format!("aligned global B on {:?}", t));
    }
    let mut s = create_schedule(&o).unwrap();
    let [r, _] = s.axes2(&b).unwrap();
    assert_sched_err(
        s.storage_align(&b, &r, 0, 0),
        "cannot storage_align i with factor 0 and offset 0: need factor >= 1",
    );
    assert_sched_err(
        s.storage_align(&b, &r, 4, -1),
        "need factor >= 1 and 0 <= offset < factor",
    );
}
