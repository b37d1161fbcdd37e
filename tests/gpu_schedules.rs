//! GPU-bound schedules run on the reference interpreter (simulated blocks, threads, shared
//! memory and barriers) against the unscheduled computation.

mod common;
use common::*;
use loopforge::lower::ir::Stmt;
use loopforge::prelude::*;

/// The classic shared-memory tiled matmul: 8x8 thread blocks, A and B tiles staged in
/// shared memory at every `k.outer` step, optionally fetched cooperatively (each thread
/// loads one element) instead of redundantly (each thread loads the whole tile).
fn tiled(c: &Tensor, a: &Tensor, b: &Tensor, cooperative: bool) -> Schedule {
    let mut s = create_schedule(&[c.clone()]).unwrap();
    let [i, j] = s.axes2(c).unwrap();
    let k = s.reduce_axes(c).unwrap().remove(0);
    let (by, ty) = s.split(c, &i, 8).unwrap();
    let (bx, tx) = s.split(c, &j, 8).unwrap();
    let (ko, ki) = s.split(c, &k, 8).unwrap();
    s.reorder(c, &[&by, &bx, &ty, &tx, &ko, &ki]).unwrap();
    s.bind(c, &by, "blockIdx.y").unwrap();
    s.bind(c, &bx, "blockIdx.x").unwrap();
    s.bind(c, &ty, "threadIdx.y").unwrap();
    s.bind(c, &tx, "threadIdx.x").unwrap();
    for t in [a, b] {
        let sh = s.cache_read(t, "shared", &[c]).unwrap();
        s.compute_at(&sh, c, &ko).unwrap();
        if cooperative {
            let [r, q] = s.axes2(&sh).unwrap();
            s.bind(&sh, &r, "threadIdx.y").unwrap();
            s.bind(&sh, &q, "threadIdx.x").unwrap();
        }
    }
    s
}

#[test]
fn shared_memory_tiled_matmul_on_the_simulated_gpu() {
    let (a, b, c) = matmul(32, 24, 40);
    let args = [a.clone(), b.clone(), c.clone()];
    let want = run_all(
        &create_schedule(&[c.clone()]).unwrap(),
        &args,
        Target::interp(),
        4,
    );
    for coop in [false, true] {
        let s = tiled(&c, &a, &b, coop);
        let got = run_all(&s, &args, Target::interp(), 4);
        assert_outputs_close(
            &args,
            &got,
            &want,
            &format!("tiled matmul (cooperative fetch: {})", coop),
        );
        if coop {
            golden("gpu_tiled_matmul", &lower(&s, &args).unwrap().to_string());
        }
    }
}

#[test]
fn shared_tiles_cover_the_whole_block() {
    let (a, b, c) = matmul(32, 24, 40);
    let f = lower(&tiled(&c, &a, &b, true), &[a, b, c]).unwrap();
    let text = f.to_string();
    // One tile per block: 8 rows of A and 8 columns of B, 8 deep — not one row per thread.
    assert!(
        text.contains("allocate A.shared[float32, (64)], scope=\"shared\""),
        "{}",
        text
    );
    assert!(
        text.contains("allocate B.shared[float32, (64)], scope=\"shared\""),
        "{}",
        text
    );
    assert_eq!(text.matches("__syncthreads()").count(), 3, "{}", text);
}

fn strip_barriers(s: &Stmt) -> Stmt {
    match s {
        Stmt::Barrier => Stmt::NoOp,
        other => other.map(&mut |x| strip_barriers(x), &mut |e| e.clone()),
    }
}

#[test]
fn without_the_inserted_barriers_the_result_is_wrong() {
    let (a, b, c) = matmul(32, 24, 40);
    let args = [a.clone(), b.clone(), c.clone()];
    let mut f = lower(&tiled(&c, &a, &b, true), &args).unwrap();
    f.body = strip_barriers(&f.body);
    let mut arrs = make_args(&args, 4);
    let mut refs: Vec<&mut NdArray> = arrs.iter_mut().collect();
    loopforge::interp::run(&f, &mut refs).unwrap();
    let want = run_all(
        &create_schedule(&[c.clone()]).unwrap(),
        &args,
        Target::interp(),
        4,
    );
    assert!(
        !arrs[2].allclose(&want[2], 1e-4, 1e-4),
        "a kernel with no barriers should race on the shared tiles"
    );
}

#[test]
fn elementwise_with_non_dividing_thread_blocks() {
    let a = placeholder(&[1000.into()], DType::F32, "A");
    let b = compute(&[1000.into()], "B", |i| {
        exp(a.at(&[i[0].clone()])) * 2.0f32 + 1.0f32
    });
    let mut s = create_schedule(&[b.clone()]).unwrap();
    let [i] = <[Axis; 1]>::try_from(s.axes(&b).unwrap()).unwrap();
    let (bx, tx) = s.split(&b, &i, 64).unwrap();
    s.bind(&b, &bx, "blockIdx.x").unwrap();
    s.bind(&b, &tx, "threadIdx.x").unwrap();
    let args = [a, b.clone()];
    let want = run_all(
        &create_schedule(&[b.clone()]).unwrap(),
        &args,
        Target::interp(),
        2,
    );
    let got = run_all(&s, &args, Target::interp(), 2);
    assert_outputs_close(&args, &got, &want, "elementwise on the simulated GPU");
}

#[test]
fn binding_errors() {
    let (_, _, c) = matmul(32, 24, 40);
    let mut s = create_schedule(&[c.clone()]).unwrap();
    let k = s.reduce_axes(&c).unwrap().remove(0);
    assert_sched_err(
        s.bind(&c, &k, "threadIdx.x"),
        "cannot bind k: it is a reduce axis",
    );
    let [i, j] = s.axes2(&c).unwrap();
    s.bind(&c, &i, "blockIdx.x").unwrap();
    assert_sched_err(
        s.bind(&c, &j, "blockIdx.x"),
        "cannot bind j to blockIdx.x: i is already bound to it",
    );
    assert_sched_err(
        s.bind(&c, &i, "threadIdx.x"),
        "cannot bind i: it is already thread_binding(blockIdx.x)",
    );
}

#[test]
fn thread_extents_over_the_device_limit_are_errors() {
    let a = placeholder(&[4096.into()], DType::F32, "A");
    let b = compute(&[4096.into()], "B", |i| a.at(&[i[0].clone()]) + 1.0f32);
    let mut s = create_schedule(&[b.clone()]).unwrap();
    let [i] = <[Axis; 1]>::try_from(s.axes(&b).unwrap()).unwrap();
    let (bx, tx) = s.split(&b, &i, 2048).unwrap();
    s.bind(&b, &bx, "blockIdx.x").unwrap();
    s.bind(&b, &tx, "threadIdx.x").unwrap();
    match lower(&s, &[a.clone(), b.clone()]) {
        Err(Error::Lower(m)) => assert!(
            m.contains("i.inner is bound to threadIdx.x with 2048 iterations; the device allows at most 1024"),
            "{}",
            m
        ),
        other => panic!("expected a lowering error, got {:?}", other.map(|f| f.to_string())),
    }
    let c = compute(&[64.into(), 64.into()], "C", |i| {
        a.at(&[i[0].clone() * 64 + i[1].clone()])
    });
    let mut s = create_schedule(&[c.clone()]).unwrap();
    let [i, j] = s.axes2(&c).unwrap();
    s.bind(&c, &i, "threadIdx.y").unwrap();
    s.bind(&c, &j, "threadIdx.x").unwrap();
    match lower(&s, &[a, c]) {
        Err(Error::Lower(m)) => assert!(m.contains("would have 4096 threads"), "{}", m),
        other => panic!(
            "expected a lowering error, got {:?}",
            other.map(|f| f.to_string())
        ),
    }
}

/// A plain stage computed inside a kernel gets TVM's scope: `local` under `threadIdx`.
#[test]
fn stages_computed_inside_kernels_get_local_or_shared_scope() {
    let a = placeholder(&[256.into()], DType::F32, "A");
    let b = compute(&[256.into()], "B", |i| exp(a.at(&[i[0].clone()])));
    let c = compute(&[256.into()], "C", |i| b.at(&[i[0].clone()]) * 2.0f32);
    let args = [a.clone(), c.clone()];
    let want = run_all(
        &create_schedule(&[c.clone()]).unwrap(),
        &args,
        Target::interp(),
        8,
    );
    for (at_thread, scope) in [(true, "local"), (false, "shared")] {
        let mut s = create_schedule(&[c.clone()]).unwrap();
        let [i] = <[Axis; 1]>::try_from(s.axes(&c).unwrap()).unwrap();
        let (bx, tx) = s.split(&c, &i, 64).unwrap();
        s.bind(&c, &bx, "blockIdx.x").unwrap();
        s.bind(&c, &tx, "threadIdx.x").unwrap();
        s.compute_at(&b, &c, if at_thread { &tx } else { &bx })
            .unwrap();
        let text = lower(&s, &args).unwrap().to_string();
        assert!(text.contains(&format!("scope=\"{}\"", scope)), "{}", text);
        let got = run_all(&s, &args, Target::interp(), 8);
        assert_outputs_close(
            &args,
            &got,
            &want,
            &format!("B computed in {} memory", scope),
        );
    }
}

/// Shared tiles padded against bank conflicts (row stride 8 -> 33 = 32 + 1).
#[test]
fn storage_align_on_shared_tiles() {
    let (a, b, c) = matmul(32, 24, 40);
    let args = [a.clone(), b.clone(), c.clone()];
    let mut s = tiled(&c, &a, &b, true);
    for t in ["A.shared", "B.shared"] {
        let [r, _] = s.axes2(t).unwrap();
        s.storage_align(t, &r, 32, 1).unwrap();
    }
    let text = lower(&s, &args).unwrap().to_string();
    assert!(
        text.contains("allocate A.shared[float32, (264)], scope=\"shared\""),
        "{}",
        text
    );
    let want = run_all(
        &create_schedule(&[c.clone()]).unwrap(),
        &args,
        Target::interp(),
        4,
    );
    let got = run_all(&s, &args, Target::interp(), 4);
    assert_outputs_close(&args, &got, &want, "tiled matmul with aligned shared tiles");
    let replayed = Schedule::replay(&[c.clone()], &s.trace_json()).unwrap();
    assert_eq!(lower(&replayed, &args).unwrap().to_string(), text);
    if loopforge::codegen_cuda::nvrtc_available() {
        let k = build(&s, &args, Target::cuda_arch("sm_80")).unwrap();
        assert!(
            k.cuda_source()
                .unwrap()
                .contains("__shared__ __align__(32) float A_shared[264]"),
            "{}",
            k.cuda_source().unwrap()
        );
    }
}

// ---------------------------------------------------------------- double_buffer

/// The cooperative tiled matmul with both shared tiles double-buffered.
fn double_buffered(c: &Tensor, a: &Tensor, b: &Tensor) -> Schedule {
    let mut s = tiled(c, a, b, true);
    s.double_buffer("A.shared").unwrap();
    s.double_buffer("B.shared").unwrap();
    s
}

#[test]
fn double_buffer() {
    // K = 40 fills 5 steps of 8; K = 13 leaves a ragged last step; K = 5 has one step
    // (the prefetch never runs).
    for k in [40, 13, 5] {
        let (a, b, c) = matmul(32, 24, k);
        let args = [a.clone(), b.clone(), c.clone()];
        let s = double_buffered(&c, &a, &b);
        let want = run_all(
            &create_schedule(&[c.clone()]).unwrap(),
            &args,
            Target::interp(),
            3,
        );
        let got = run_all(&s, &args, Target::interp(), 3);
        let name = format!("double-buffered tiled matmul, K = {}", k);
        assert_outputs_close(&args, &got, &want, &name);
        let text = lower(&s, &args).unwrap().to_string();
        if k == 40 {
            golden("double_buffer", &text);
        }
        // Two copies of each tile, allocated once outside the k.outer loop; a prologue
        // and one barrier per iteration (the two copies make the second one needless).
        let alloc = format!(
            "allocate A.shared[float32, ({})], scope=\"shared\"",
            2 * 8 * k.min(8)
        );
        assert!(text.contains(&alloc), "{}: {}", name, text);
        assert_eq!(text.matches(&alloc).count(), 1, "{}: {}", name, text);
        // Replay.
        let replayed = Schedule::replay(&[c.clone()], &s.trace_json()).unwrap();
        assert_eq!(
            lower(&replayed, &args).unwrap().to_string(),
            text,
            "{}",
            name
        );
    }
}

#[test]
fn double_buffer_needs_the_closing_barrier() {
    // The prefetch overwrites the copy the previous iteration read: without the barrier
    // that closes each iteration, fast threads clobber a tile slow ones still read.
    let (a, b, c) = matmul(32, 24, 40);
    let args = [a.clone(), b.clone(), c.clone()];
    let mut f = lower(&double_buffered(&c, &a, &b), &args).unwrap();
    fn strip_in_loops(s: &Stmt) -> Stmt {
        match s {
            Stmt::For(f) if f.var.name() == "k.outer" => strip_barriers(s),
            other => other.map(&mut |x| strip_in_loops(x), &mut |e| e.clone()),
        }
    }
    let before = f.to_string().matches("__syncthreads()").count();
    f.body = strip_in_loops(&f.body);
    // Only the closing barrier of the main loop is gone; the prologue's and the peeled
    // last iteration's stay.
    assert_eq!(f.to_string().matches("__syncthreads()").count(), before - 1);
    let mut arrs = make_args(&args, 4);
    let mut refs: Vec<&mut NdArray> = arrs.iter_mut().collect();
    loopforge::interp::run(&f, &mut refs).unwrap();
    let want = run_all(
        &create_schedule(&[c.clone()]).unwrap(),
        &args,
        Target::interp(),
        4,
    );
    assert!(!arrs[2].allclose(&want[2], 1e-4, 1e-4));
}

#[test]
fn double_buffer_errors() {
    let (a, b, c) = matmul(32, 24, 40);
    // A local stage.
    let mut s = create_schedule(&[c.clone()]).unwrap();
    let al = s.cache_read(&a, "local", &[&c]).unwrap();
    let i = s.axis(&c, "i").unwrap();
    s.compute_at(&al, &c, &i).unwrap();
    assert_sched_err(
        s.double_buffer(&al),
        "cannot double_buffer A.local: its buffer has Local scope; double buffering applies to shared-memory stages",
    );
    // A shared stage computed at the root.
    let mut s = create_schedule(&[c.clone()]).unwrap();
    let sh = s.cache_read(&a, "shared", &[&c]).unwrap();
    assert_sched_err(
        s.double_buffer(&sh),
        "cannot double_buffer A.shared: it is not computed inside a loop",
    );
    // Computed at a loop that is unrolled: no serial loop to pipeline.
    let mut s = tiled(&c, &a, &b, true);
    s.double_buffer("A.shared").unwrap();
    let ko = s.axis(&c, "k.outer").unwrap();
    s.unroll(&c, &ko).unwrap();
    let e = lower(&s, &[a.clone(), b.clone(), c.clone()]).unwrap_err();
    assert!(
        e.to_string()
            .contains("cannot double_buffer A.shared: its buffer is not allocated directly inside a serial loop"),
        "{}",
        e
    );
    // Unknown stage.
    let mut s = create_schedule(&[c.clone()]).unwrap();
    assert!(s.double_buffer("nope").is_err());
}
