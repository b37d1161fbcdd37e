//! `tensorize` with the built-in `gemm_f32` intrinsic: the loop nest of a matmul tile is
//! replaced by a call; the reference interpreter runs the intrinsic's declaration (the
//! oracle), the CPU backend its host function (AVX2+FMA micro-kernel where available).
//! Each case: golden IR, numbers against the unscheduled computation on both, trace
//! replay; then the errors.

mod common;
use common::*;
use loopforge::intrinsics::{self, gemm_f32, gemm_f32_k3, TensorIntrin};
use loopforge::prelude::*;
use loopforge::schedules;

/// `C[i, j] = sum_k A[i, k] * B[k, j]` tiled 6 x 16, the whole reduction in the call
/// (`kc == k`) or split with the calls accumulating (`kc < k`).
fn tiled(c: &Tensor, kc: Option<i64>) -> Schedule {
    tiled_rows(c, 6, kc)
}

/// [`tiled`] with tiles of `mr` rows.
fn tiled_rows(c: &Tensor, mr: i64, kc: Option<i64>) -> Schedule {
    let mut s = create_schedule(&[c.clone()]).unwrap();
    let [i, j] = s.axes2(c).unwrap();
    let k = s.reduce_axes(c).unwrap().remove(0);
    let (io, ii) = s.split(c, &i, mr).unwrap();
    let (jo, ji) = s.split(c, &j, 16).unwrap();
    let kext = s.stage(c).unwrap().op.reduce_axis()[0]
        .extent
        .as_int()
        .unwrap();
    match kc {
        None => {
            s.reorder(c, &[&jo, &io, &ii, &ji, &k]).unwrap();
            s.tensorize(c, &ii, &gemm_f32(mr, 16, kext).unwrap())
                .unwrap();
        }
        Some(kc) => {
            let (ko, ki) = s.split(c, &k, kc).unwrap();
            s.reorder(c, &[&jo, &io, &ko, &ii, &ji, &ki]).unwrap();
            s.tensorize(c, &ii, &gemm_f32(mr, 16, kc).unwrap()).unwrap();
        }
    }
    s
}

fn check(name: &str, c: &Tensor, args: &[Tensor], s: &Schedule, golden_name: Option<&str>) {
    let base = create_schedule(&[c.clone()]).unwrap();
    let want = run_all(&base, args, Target::interp(), 11);
    let text = lower(s, args).unwrap().to_string();
    assert!(
        text.contains("gemm_f32_6x16x"),
        "{}: no call in\n{}",
        name,
        text
    );
    if let Some(g) = golden_name {
        golden(g, &text);
    }
    for t in [Target::interp(), Target::cpu()] {
        let got = run_all(s, args, t.clone(), 11);
        assert_outputs_close(args, &got, &want, &format!("{} on {:?}", name, t));
    }
    let replayed = Schedule::replay(&[c.clone()], &s.trace_json()).unwrap();
    assert_eq!(
        lower(&replayed, args).unwrap().to_string(),
        text,
        "{}",
        name
    );
}

#[test]
fn tensorize_whole_reduction() {
    let (a, b, c) = matmul(60, 48, 40);
    let args = [a, b, c.clone()];
    check(
        "gemm 60x48x40, one call per tile",
        &c,
        &args,
        &tiled(&c, None),
        Some("tensorize"),
    );
}

#[test]
fn tensorize_accumulating_calls() {
    // K = 40 in steps of 8.
    let (a, b, c) = matmul(12, 32, 40);
    let args = [a, b, c.clone()];
    let s = tiled(&c, Some(8));
    let text = lower(&s, &args).unwrap().to_string();
    // No init nest: the call of the first slice (`k.outer == 0`) computes the tile, the
    // others add to it.
    assert!(!text.contains(".init("), "{}", text);
    assert!(
        text.contains("if k.outer == 0:\n") || text.contains(" = k.outer == 0\n"),
        "{}",
        text
    );
    assert!(text.contains("gemm_f32_6x16x8(A["), "{}", text);
    assert!(text.contains("gemm_f32_6x16x8.update(A["), "{}", text);
    check(
        "gemm 12x32x40, kc 8",
        &c,
        &args,
        &s,
        Some("tensorize_accumulate"),
    );
}

#[test]
fn tensorize_strided_views_and_packed_b() {
    // A read transposed (A[k, i]: the tile's strides are (1, M)) and B packed into a
    // local panel per column block: the intrinsic sees every kind of stride.
    let (m, n, kk) = (18i64, 32i64, 24i64);
    let a = placeholder(&[kk.into(), m.into()], DType::F32, "A");
    let b = placeholder(&[kk.into(), n.into()], DType::F32, "B");
    let k = reduce_axis(0, kk, "k");
    let at = compute(&[m.into(), kk.into()], "AT", |i| {
        a.at(&[i[1].clone(), i[0].clone()])
    });
    let c = compute(&[m.into(), n.into()], "C", |i| {
        sum(
            at.at(&[i[0].clone(), k.x()]) * b.at(&[k.x(), i[1].clone()]),
            &[k.clone()],
        )
    });
    let args = [a, b.clone(), c.clone()];
    let mut s = create_schedule(&[c.clone()]).unwrap();
    s.compute_inline(&at).unwrap();
    let bp = s.cache_read(&b, "global", &[&c]).unwrap();
    let [i, j] = s.axes2(&c).unwrap();
    let kx = s.reduce_axes(&c).unwrap().remove(0);
    let (io, ii) = s.split(&c, &i, 6).unwrap();
    let (jo, ji) = s.split(&c, &j, 16).unwrap();
    s.reorder(&c, &[&jo, &io, &ii, &ji, &kx]).unwrap();
    s.compute_at(&bp, &c, &jo).unwrap();
    s.tensorize(&c, &ii, &gemm_f32(6, 16, kk).unwrap()).unwrap();
    let base = create_schedule(&[c.clone()]).unwrap();
    let want = run_all(&base, &args, Target::interp(), 5);
    for t in [Target::interp(), Target::cpu()] {
        let got = run_all(&s, &args, t.clone(), 5);
        assert_outputs_close(&args, &got, &want, &format!("strided views on {:?}", t));
    }
}

#[test]
fn gemm_intrinsic_against_its_declaration_on_random_views() {
    // Property: for random tile sizes (the micro-kernel's 6x16 blocks and the portable
    // edges), the host function equals the declaration run by the interpreter.
    let mut rng = Rng(7u64);
    let mut next = |n: u64| rng.below(n);
    for case in 0..16 {
        let mr = [1, 5, 6, 7, 12, 13][next(6) as usize];
        let nr = [1, 4, 8, 16, 17, 24, 32][next(7) as usize];
        let kc = 1 + next(20) as i64;
        let (mt, nt) = (2i64, 3i64);
        let (a, b, c) = matmul(mr * mt, nr * nt, kc * 2);
        let args = [a, b, c.clone()];
        let mut s = create_schedule(&[c.clone()]).unwrap();
        let [i, j] = s.axes2(&c).unwrap();
        let k = s.reduce_axes(&c).unwrap().remove(0);
        let (io, ii) = s.split(&c, &i, mr).unwrap();
        let (jo, ji) = s.split(&c, &j, nr).unwrap();
        let (ko, ki) = s.split(&c, &k, kc).unwrap();
        s.reorder(&c, &[&io, &jo, &ko, &ii, &ji, &ki]).unwrap();
        s.tensorize(&c, &ii, &gemm_f32(mr, nr, kc).unwrap())
            .unwrap();
        let want = run_all(&s, &args, Target::interp(), case);
        let got = run_all(&s, &args, Target::cpu(), case);
        assert_outputs_close(
            &args,
            &got,
            &want,
            &format!("gemm_f32_{}x{}x{} host function vs declaration", mr, nr, kc),
        );
    }
}

#[test]
fn gemm_k3_intrinsic_against_its_declaration_on_random_views() {
    // Property: `C[i, j] = sum_{a, b, c} A[i, a, b, c] * B[a, b, c, j]`, tiled and the
    // three reduce axes handed to `gemm_f32_k3` (whole, or a slice of `c` with the calls
    // accumulating), for random sizes: the host function equals the declaration.
    let mut rng = Rng(11u64);
    let mut next = |n: u64| rng.below(n);
    for case in 0..8 {
        let mr = [1, 4, 6, 7, 12][next(5) as usize];
        let nr = [1, 5, 8, 16, 17, 24][next(6) as usize];
        let k = [1 + next(3) as i64, 1 + next(3) as i64, 1 + next(6) as i64];
        let slices = 1 + next(2) as i64;
        let (m, n) = (mr * 2, nr * 2);
        let a = placeholder(
            &[m.into(), k[0].into(), k[1].into(), (k[2] * slices).into()],
            DType::F32,
            "A",
        );
        let b = placeholder(
            &[k[0].into(), k[1].into(), (k[2] * slices).into(), n.into()],
            DType::F32,
            "B",
        );
        let r: Vec<IterVar> = [k[0], k[1], k[2] * slices]
            .iter()
            .enumerate()
            .map(|(d, &e)| reduce_axis(0, e, &format!("r{}", d)))
            .collect();
        let c = compute(&[m.into(), n.into()], "C", |i| {
            sum(
                a.at(&[i[0].clone(), r[0].x(), r[1].x(), r[2].x()])
                    * b.at(&[r[0].x(), r[1].x(), r[2].x(), i[1].clone()]),
                &r,
            )
        });
        let args = [a, b, c.clone()];
        let mut s = create_schedule(&[c.clone()]).unwrap();
        let [i, j] = s.axes2(&c).unwrap();
        let ra = s.reduce_axes(&c).unwrap();
        let (io, ii) = s.split(&c, &i, mr).unwrap();
        let (jo, ji) = s.split(&c, &j, nr).unwrap();
        let (ro, ri) = s.split(&c, &ra[2], k[2]).unwrap();
        s.reorder(&c, &[&io, &jo, &ro, &ii, &ji, &ra[0], &ra[1], &ri])
            .unwrap();
        let intrin = gemm_f32_k3(mr, nr, k).unwrap();
        s.tensorize(&c, &ii, &intrin).unwrap();
        let text = lower(&s, &args).unwrap().to_string();
        // The first slice computes the tile (no init), the others add to it.
        assert!(
            text.contains(&format!("{}(A[", intrin.name))
                && (slices == 1) != text.contains(&format!("{}.update(A[", intrin.name))
                && !text.contains(".init("),
            "{}",
            text
        );
        check_against_unscheduled(
            &s,
            &args,
            &[c.clone()],
            case,
            &format!(
                "{} ({} slices) host function vs declaration",
                intrin.name, slices
            ),
        );
    }
}

#[test]
fn tensorize_under_a_non_dividing_outer_split() {
    // The 6-row tiles of an 18-row output (3 of them) split again by 2: the second outer
    // block holds one real tile and one past the end, whose call the guard must skip
    // (a call there would write rows 18..24 of C).
    let (a, b, c) = matmul(18, 32, 8);
    let args = [a, b, c.clone()];
    let mut s = create_schedule(&[c.clone()]).unwrap();
    let [i, j] = s.axes2(&c).unwrap();
    let k = s.reduce_axes(&c).unwrap().remove(0);
    let (io, ii) = s.split(&c, &i, 6).unwrap();
    let (jo, ji) = s.split(&c, &j, 16).unwrap();
    let (ioo, ioi) = s.split(&c, &io, 2).unwrap();
    s.reorder(&c, &[&ioo, &jo, &ioi, &ii, &ji, &k]).unwrap();
    s.tensorize(&c, &ii, &gemm_f32(6, 16, 8).unwrap()).unwrap();
    let text = lower(&s, &args).unwrap().to_string();
    assert!(text.contains("gemm_f32_6x16x8("), "{}", text);
    check_against_unscheduled(
        &s,
        &args,
        &[c.clone()],
        2,
        "tiles under a non-dividing split",
    );
}

#[test]
fn tensorize_partial_tiles() {
    // gemm_f32 takes partial tiles: rows 10 = 6 + 4 and columns 40 = 16 + 16 + 8 split
    // by the tile; each call gets the extents the split's guards leave it, and no guard.
    let (a, b, c) = matmul(10, 40, 8);
    let args = [a, b, c.clone()];
    let s = tiled(&c, None);
    let text = lower(&s, &args).unwrap().to_string();
    assert!(
        text.contains("let inv1 = min(16, j.outer * -16 + 40)")
            && text.contains(") extents (min(6, i.outer * -6 + 10), inv1, 8)"),
        "{}",
        text
    );
    assert!(!text.contains("if "), "no guard is left: {}", text);
    check_against_unscheduled(&s, &args, &[c.clone()], 6, "partial 6x16 tiles of 10x40");
    // Replay gives the same IR.
    let replayed = Schedule::replay(&[c.clone()], &s.trace_json()).unwrap();
    assert_eq!(lower(&replayed, &args).unwrap().to_string(), text);
    // An accumulating nest (the reduction split outside the call): the first slice's
    // call computes the partial tile, the others update it, with the same extents.
    let s = tiled_rows(&c, 4, Some(4));
    let text = lower(&s, &args).unwrap().to_string();
    assert!(
        text.contains("x16x4(A[") && text.contains(".update(") && !text.contains(".init("),
        "{}",
        text
    );
    assert!(text.contains("min(4, i.outer * -4 + 10)"), "{}", text);
    check_against_unscheduled(
        &s,
        &args,
        &[c.clone()],
        7,
        "partial 4x16 tiles, accumulating",
    );
}

#[test]
fn tensorize_errors() {
    // Tile sizes below 1: typed errors naming the intrinsic.
    for e in [
        gemm_f32(0, 16, 8).unwrap_err().to_string(),
        gemm_f32_k3(6, 16, [3, 0, 3]).unwrap_err().to_string(),
    ] {
        assert!(e.contains("every tile size must be at least 1"), "{}", e);
    }
    let (a, b, c) = matmul(12, 32, 8);
    let args = [a.clone(), b.clone(), c.clone()];
    // Not the declared computation: a max-reduction, and a product with an extra term.
    let k = reduce_axis(0, 8, "k");
    let cmax = compute(&[12.into(), 32.into()], "Cmax", |i| {
        max_reduce(
            a.at(&[i[0].clone(), k.x()]) * b.at(&[k.x(), i[1].clone()]),
            &[k.clone()],
        )
    });
    let k2 = reduce_axis(0, 8, "k");
    let cplus = compute(&[12.into(), 32.into()], "Cplus", |i| {
        sum(
            a.at(&[i[0].clone(), k2.x()]) * b.at(&[k2.x(), i[1].clone()]) + 1.0f32,
            &[k2.clone()],
        )
    });
    for (t, needle) in [
        (&cmax, "the loop nest computes `max("),
        (&cplus, "where the intrinsic declares `A[i, k] * B[k, j]`"),
    ] {
        let mut s = create_schedule(&[t.clone()]).unwrap();
        let [i, j] = s.axes2(t).unwrap();
        let (io, ii) = s.split(t, &i, 6).unwrap();
        let (jo, ji) = s.split(t, &j, 16).unwrap();
        let kk = s.reduce_axes(t).unwrap().remove(0);
        s.reorder(t, &[&io, &jo, &ii, &ji, &kk]).unwrap();
        s.tensorize(t, &ii, &gemm_f32(6, 16, 8).unwrap()).unwrap();
        let e = lower(&s, &[a.clone(), b.clone(), t.clone()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot tensorize"), "{}", e);
        assert!(e.contains(needle), "{}", e);
    }
    // A tile that does not divide: guarded loops, refused by an intrinsic that takes whole
    // tiles only (gemm_f32's declaration without `partial_tiles`; see
    // `tensorize_partial_tiles` for the ones that take them).
    let (a2, b2, c2) = matmul(10, 32, 8);
    let g = gemm_f32(6, 16, 8).unwrap();
    let whole = TensorIntrin::new("gemm_whole_tiles_test", &g.output, &g.inputs, g.cpu).unwrap();
    let mut s = create_schedule(&[c2.clone()]).unwrap();
    let [i, j] = s.axes2(&c2).unwrap();
    let (io, ii) = s.split(&c2, &i, 6).unwrap();
    let (jo, ji) = s.split(&c2, &j, 16).unwrap();
    let kk = s.reduce_axes(&c2).unwrap().remove(0);
    s.reorder(&c2, &[&io, &jo, &ii, &ji, &kk]).unwrap();
    s.tensorize(&c2, &ii, &whole).unwrap();
    let e = lower(&s, &[a2, b2, c2.clone()]).unwrap_err().to_string();
    assert!(e.contains("the loops under it are guarded"), "{}", e);
    assert!(e.contains("this intrinsic takes whole tiles only"), "{}", e);
    // Wrong extents (tile 6x16 where the intrinsic is 6x8).
    let mut s = tiled(&c, None);
    let ii = s.axis(&c, "i.inner").unwrap();
    s.tensorize(&c, &ii, &gemm_f32(6, 8, 8).unwrap()).unwrap();
    let e = lower(&s, &args).unwrap_err().to_string();
    assert!(e.contains("with extents [6, 8, 8]"), "{}", e);
    // Wrong number of loops under the axis, caught by the primitive.
    let mut s = create_schedule(&[c.clone()]).unwrap();
    let [i, _] = s.axes2(&c).unwrap();
    let (io, _) = s.split(&c, &i, 6).unwrap();
    assert_sched_err(
        s.tensorize(&c, &io, &gemm_f32(6, 16, 8).unwrap()),
        "cannot tensorize C at i.outer with gemm_f32_6x16x8: 4 loops are under it",
    );
    // Replay needs the intrinsic registered; an unknown name is an error.
    let json = r#"[{"op":"tensorize","stage":"C","axis":"i","intrin":"no_such_intrin"}]"#;
    let e = Schedule::replay(&[c.clone()], json)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no intrinsic of that name is registered"),
        "{}",
        e
    );
    // Two different intrinsics cannot share a name.
    let x = placeholder(&[4.into()], DType::F32, "X");
    let y = compute(&[4.into()], "Y", |i| x.at(&[i[0].clone()]));
    let first = TensorIntrin::new("copy4_test", &y, &[x.clone()], None).unwrap();
    intrinsics::register(&first).unwrap();
    let second = TensorIntrin::new("copy4_test", &y, &[x], None).unwrap();
    assert!(intrinsics::register(&second).is_err());
}

#[test]
fn library_tensorized_matmul_schedule() {
    // 6-row tiles: 60 rows (whole tiles), 52 and 100 rows (partial last tiles and, for
    // 100, a partial last row block of A.global padded with zero rows); one and two
    // threads; packed B panels.
    for (m, n, k, threads) in [
        (60, 48, 40, 1),
        (52, 32, 1200, 2),
        (100, 16, 24, 1),
        (3, 16, 8, 1),
    ] {
        let (a, b, c) = matmul(m, n, k);
        let args = [a, b, c.clone()];
        let s = schedules::matmul_cpu_tensorized(&c, threads).unwrap();
        let text = lower(&s, &args).unwrap().to_string();
        // The tile is this CPU's (6 x 16, or 12 x 32 with AVX-512 where 32 divides n).
        let g = schedules::GemmBlocking::for_shape(m, n, k, threads).unwrap();
        // kc: the largest divisor of k within a 16 KiB micro-panel of B at 16 columns (240
        // of 1200), up to 512 at 32 (400 of 1200).
        let limit = if g.nr == 32 { 512 } else { 4096 / g.nr };
        let kc = (1..=k.min(limit)).rev().find(|d| k % d == 0).unwrap();
        assert_eq!(g.kc, kc, "{:?}", g);
        // One slice of the reduction: each block computed by one call; several: the
        // first computes, the others update.
        let name = format!(
            "gemm_f32_panels_{}x{}x{}_{}x{}",
            g.mc, g.nc, g.kc, g.mr, g.nr
        );
        assert!(
            text.contains(&format!("{}(A", name))
                && (g.kc == k) != text.contains(&format!("{}.update(", name)),
            "{}",
            text
        );
        assert_eq!(
            text.contains(") extents ("),
            m % g.mc != 0,
            "a partial block exactly when {} does not divide {}: {}",
            g.mc,
            m,
            text
        );
        let want = run_all(
            &create_schedule(&[c.clone()]).unwrap(),
            &args,
            Target::interp(),
            2,
        );
        for target in [Target::interp(), Target::cpu()] {
            let got = run_all(&s, &args, target.clone(), 2);
            assert_outputs_close(
                &args,
                &got,
                &want,
                &format!("tensorized {}x{}x{} on {:?}", m, n, k, target),
            );
        }
    }
    let (_, _, c) = matmul(12, 40, 8);
    let e = schedules::matmul_cpu_tensorized(&c, 1)
        .unwrap_err()
        .to_string();
    assert!(e.contains("need columns a multiple of 16"), "{}", e);
}

#[test]
fn avx512_blocking_of_the_tensorized_matmul() {
    // On an AVX-512 CPU the register tile is 12 x 32 (B packed in 32-column micro-panels,
    // kc at most 512) where 32 divides the columns, else the AVX2 tile 6 x 16. The
    // schedule is the same on every CPU (only the micro-kernel differs), so it is checked
    // here whatever this CPU has: rows that 12 does not divide (partial tiles and a
    // partial last row block), several column blocks and reduction slices, two threads.
    let g = schedules::GemmBlocking::for_shape_on(1024, 1024, 1024, 1, true).unwrap();
    assert_eq!((g.mr, g.nr, g.kc, g.mc % 12), (12, 32, 512, 0), "{:?}", g);
    let g = schedules::GemmBlocking::for_shape_on(100, 48, 64, 1, true).unwrap();
    assert_eq!((g.mr, g.nr), (6, 16), "{:?}", g);
    for (m, n, k, threads) in [(50, 64, 600, 1), (29, 96, 40, 2)] {
        let (a, b, c) = matmul(m, n, k);
        let args = [a, b, c.clone()];
        let mut g = schedules::GemmBlocking::for_shape_on(m, n, k, threads, true).unwrap();
        g.nc = 32;
        g.mc = 24;
        let s = schedules::matmul_cpu_tensorized_with(&c, g).unwrap();
        let text = lower(&s, &args).unwrap().to_string();
        assert!(
            text.contains(&format!("gemm_f32_panels_24x32x{}_12x32", g.kc)),
            "{}",
            text
        );
        // 12-row panels pack A in 4 x 4 blocks: a step's four rows as one vector read
        // across rows (k apart), transposed in registers by the code generator; where the
        // row blocks run in parallel and the last is partial, every block's pack keeps
        // the padding's per-element select (scalar).
        assert_eq!(
            text.contains(&format!(", {}, 4)]", k)) && text.contains("A.global[ramp("),
            threads == 1,
            "{}",
            text
        );
        check_against_unscheduled(
            &s,
            &args,
            &[c.clone()],
            3,
            &format!("12x32 tiles, {}x{}x{}", m, n, k),
        );
    }
    let (_, _, c) = matmul(24, 64, 8);
    let g = schedules::GemmBlocking::for_shape_on(24, 64, 8, 1, true).unwrap();
    let e = schedules::matmul_cpu_tensorized_with(&c, schedules::GemmBlocking { nr: 24, ..g })
        .unwrap_err()
        .to_string();
    assert!(e.contains("nr = 24"), "{}", e);
}

#[test]
fn blocked_tensorized_matmul_several_blocks() {
    // Two column blocks (parallel), three row blocks, three reduction slices: every packed
    // panel is refilled, and the second slice onwards accumulates (mode update).
    let (a, b, c) = matmul(36, 64, 60);
    let args = [a, b, c.clone()];
    let g = schedules::GemmBlocking {
        mr: 6,
        nr: 16,
        mc: 12,
        nc: 32,
        kc: 20,
        threads: 2,
        parallel_rows: false,
    };
    let s = schedules::matmul_cpu_tensorized_with(&c, g).unwrap();
    let text = lower(&s, &args).unwrap().to_string();
    assert!(
        text.contains("gemm_f32_panels_12x32x20_6x16.update("),
        "{}",
        text
    );
    assert!(text.contains("parallel"), "{}", text);
    check_against_unscheduled(&s, &args, &[c.clone()], 3, "blocked 36x64x60");
    // The trace replays onto a fresh computation.
    let (a2, b2, c2) = matmul(36, 64, 60);
    let replayed = Schedule::replay(&[c2.clone()], &s.trace_json()).unwrap();
    assert_eq!(lower(&replayed, &[a2, b2, c2]).unwrap().to_string(), text);
    // The row blocks in parallel instead (each thread packs its own rows of A), the
    // shared panel of B packed in parallel before them.
    let rows = schedules::GemmBlocking {
        parallel_rows: true,
        ..g
    };
    let s = schedules::matmul_cpu_tensorized_with(&c, rows).unwrap();
    let text = lower(&s, &args).unwrap().to_string();
    assert!(
        text.contains("for i.outer in range(3) parallel:"),
        "{}",
        text
    );
    assert!(
        text.contains("for ax1.outer in range(2) parallel:"),
        "{}",
        text
    );
    check_against_unscheduled(
        &s,
        &args,
        &[c.clone()],
        3,
        "blocked 36x64x60, parallel rows",
    );
    // Row blocks that overhang the rows (100 = 4 x 24 + 4): the last block of A.global
    // holds 4 rows and zero padding, its tiles are partial or empty.
    let (a, b, c100) = matmul(100, 32, 16);
    let args100 = [a, b, c100.clone()];
    let g100 = schedules::GemmBlocking {
        mr: 6,
        nr: 16,
        mc: 24,
        nc: 16,
        kc: 8,
        threads: 1,
        parallel_rows: false,
    };
    let s = schedules::matmul_cpu_tensorized_with(&c100, g100).unwrap();
    check_against_unscheduled(&s, &args100, &[c100.clone()], 4, "blocked 100x32x16, mc 24");
    // Blocking that does not tile the shape is a typed error naming the knob.
    for (bad, what) in [
        (
            schedules::GemmBlocking { mc: 10, ..g },
            "mc = 10 must be a multiple of mr = 6",
        ),
        (schedules::GemmBlocking { nc: 24, ..g }, "nc = 24"),
        (schedules::GemmBlocking { kc: 7, ..g }, "kc = 7"),
        (schedules::GemmBlocking { mr: 5, ..g }, "mr = 5"),
    ] {
        let e = schedules::matmul_cpu_tensorized_with(&c, bad)
            .unwrap_err()
            .to_string();
        assert!(e.contains(what), "{}", e);
    }
}

#[test]
fn tensorize_output_view_along_other_dimensions() {
    // `Ct[j, i] = sum_k A[i, k] B[k, j]` (the transposed product, as an NCHW convolution's
    // output runs along positions and channels): the tile's rows run along Ct's second
    // dimension. Row counts 1..7 exercise every register block of the micro-kernel, and
    // the column stride of the tile is not 1 (the kernel goes through a copy of the tile).
    for (mr, m) in [(7, 14), (5, 10), (3, 9), (6, 12)] {
        let (n, kk) = (32i64, 24i64);
        let a = placeholder(&[m.into(), kk.into()], DType::F32, "A");
        let b = placeholder(&[kk.into(), n.into()], DType::F32, "B");
        let k = reduce_axis(0, kk, "k");
        let ct = compute(&[n.into(), m.into()], "Ct", |x| {
            sum(
                a.at(&[x[1].clone(), k.x()]) * b.at(&[k.x(), x[0].clone()]),
                &[k.clone()],
            )
        });
        let args = [a, b, ct.clone()];
        let mut s = create_schedule(&[ct.clone()]).unwrap();
        let [j, i] = s.axes2(&ct).unwrap();
        let kx = s.reduce_axes(&ct).unwrap().remove(0);
        let (io, ii) = s.split(&ct, &i, mr).unwrap();
        let (jo, ji) = s.split(&ct, &j, 16).unwrap();
        let (ko, ki) = s.split(&ct, &kx, 8).unwrap();
        s.reorder(&ct, &[&jo, &io, &ko, &ii, &ji, &ki]).unwrap();
        s.tensorize(&ct, &ii, &gemm_f32(mr, 16, 8).unwrap())
            .unwrap();
        let text = lower(&s, &args).unwrap().to_string();
        assert!(text.contains(&format!("strides (1, {})", m)), "{}", text);
        check_against_unscheduled(
            &s,
            &args,
            &[ct.clone()],
            5,
            &format!("transposed output, {} rows", mr),
        );
    }
}

#[test]
fn tensorized_conv2d_schedule() {
    use loopforge::graph_runtime::ops::conv2d;
    use loopforge::graph_runtime::Conv2dAttrs;
    // (input NCHW, output channels, kernel, stride, padding, dilation): 3x3 with padding,
    // strided, 1x1, dilated, a channel count that is not a power of two, and a width whose
    // row tile leaves a 1-row register block (7 = 6 + 1).
    // Fewer than 8 input channels (6 and 4 here, and the 3-channel 7x7 stem) take the
    // whole window in one `gemm_f32_k3` call; tiles of 12 positions or more a call per
    // channel slice; the 7-wide rows and the 1x1 a `gemm_f32` call per tap.
    // The 1x1 ones with 4+ rows per thread run the rows outside the channel blocks.
    let cases: [([usize; 4], usize, usize, usize, usize, usize); 8] = [
        ([1, 12, 10, 10], 32, 1, 1, 0, 1),
        ([1, 8, 10, 10], 16, 3, 1, 1, 1),
        ([1, 3, 30, 30], 16, 7, 2, 3, 1),
        ([1, 8, 14, 14], 16, 3, 1, 1, 1),
        ([1, 6, 11, 11], 32, 3, 2, 1, 1),
        ([2, 20, 6, 6], 16, 1, 1, 0, 1),
        ([1, 4, 12, 12], 16, 3, 1, 2, 2),
        ([1, 16, 7, 7], 16, 3, 1, 1, 1),
    ];
    for (xs, o, k, stride, pad, dil) in cases {
        let attrs = Conv2dAttrs {
            stride: [stride; 2],
            padding: [pad; 4],
            dilation: [dil; 2],
            groups: 1,
            ..Conv2dAttrs::default()
        };
        let ws = [o, xs[1], k, k];
        let oh = (xs[2] + 2 * pad - dil * (k - 1) - 1) / stride + 1;
        let out_shape = [xs[0], o, oh, oh];
        let dims = |v: &[usize]| v.iter().map(|&d| Expr::from(d as i64)).collect::<Vec<_>>();
        let x = placeholder(&dims(&xs), DType::F32, "x");
        let w = placeholder(&dims(&ws), DType::F32, "w");
        let out = conv2d(&x, &w, &xs, &ws, &attrs, &out_shape);
        let args = [x, w, out.clone()];
        let s = schedules::conv2d_nchw_cpu_tensorized(&out, 2).unwrap();
        let text = lower(&s, &args).unwrap().to_string();
        let window = format!("x16x{}x{}x{}", xs[1], k, k);
        let taps = format!("x16x{}x{}x{}", k, k, xs[1]);
        let expect = if xs[1] < 8 {
            window.as_str()
        } else if k > 1 && oh >= 12 {
            taps.as_str()
        } else {
            // Channels reduced in slices: the first computes the tile, the others (if
            // any) update it; no init nest either way.
            "x16x"
        };
        assert!(text.contains(expect), "expected {}: {}", expect, text);
        assert!(!text.contains(".init("), "{}", text);
        if xs == [1, 4, 12, 12] {
            // The copy-out of a 12-position tile: four channels unrolled, each reading a
            // column of the `[position][channel]` accumulator (stride 16), so the four
            // reads are the columns of one 4 x 4 block (`codegen_cpu/transpose_loads.rs`).
            golden("conv2d_tensorized_window", &text);
            let columns = (0..4)
                .filter(|r| {
                    let at = if *r == 0 {
                        String::new()
                    } else {
                        format!(" + {}", r)
                    };
                    text.contains(&format!("{} + l.inner.outer * 64, 16, 4)]", at))
                })
                .count();
            assert_eq!(columns, 4, "{}", text);
        }
        // Positions fused across rows instead for a small image at stride 1 (with a
        // channel block per thread).
        let fused = k == 1 && stride == 1 && pad == 0 && oh < 16 && xs[0] * o / 16 >= 2;
        let rows_outer = k == 1 && xs[0] * oh >= 8 && !fused;
        let out_loops = &text[text.find("// produce out").unwrap()..];
        assert_eq!(
            out_loops.contains("for i.k.fused in range"),
            rows_outer,
            "(batch, row) parallel for 1x1 kernels: {}",
            text
        );
        check_against_unscheduled(
            &s,
            &args,
            &[out.clone()],
            9,
            &format!("conv2d {:?} k{} s{} d{}", xs, k, stride, dil),
        );
        let replayed = Schedule::replay(&[out.clone()], &s.trace_json()).unwrap();
        assert_eq!(lower(&replayed, &args).unwrap().to_string(), text);
    }
    // Weights already packed `[O/16][KH][KW][C][16]` (what a graph build makes of
    // constant weights): read as they are, no packing stage.
    for (xs, o, k, stride, pad) in [
        ([1usize, 8, 10, 10], 32usize, 3usize, 1usize, 1usize),
        ([1, 6, 11, 11], 16, 3, 2, 1),
    ] {
        use loopforge::graph_runtime::WeightLayout;
        let attrs = Conv2dAttrs {
            weight_layout: WeightLayout::Ohwi16o,
            ..Conv2dAttrs::same(stride, pad)
        };
        let ws = WeightLayout::ohwi16o_shape(&[o, xs[1], k, k]);
        let oh = (xs[2] + 2 * pad - k) / stride + 1;
        let out_shape = [xs[0], o, oh, oh];
        let dims = |v: &[usize]| v.iter().map(|&d| Expr::from(d as i64)).collect::<Vec<_>>();
        let x = placeholder(&dims(&xs), DType::F32, "x");
        let w = placeholder(&dims(&ws), DType::F32, "w");
        let out = conv2d(&x, &w, &xs, &ws, &attrs, &out_shape);
        let args = [x, w, out.clone()];
        let s = schedules::conv2d_nchw_cpu_tensorized(&out, 2).unwrap();
        let text = lower(&s, &args).unwrap().to_string();
        assert!(
            text.contains(", w[") && !text.contains("w.global"),
            "{}",
            text
        );
        check_against_unscheduled(
            &s,
            &args,
            &[out.clone()],
            3,
            &format!("prepacked conv2d {:?} s{}", xs, stride),
        );
        let replayed = Schedule::replay(&[out.clone()], &s.trace_json()).unwrap();
        assert_eq!(lower(&replayed, &args).unwrap().to_string(), text);
    }
    // A fused epilogue: relu(conv + bias[o]) + residual, the convolution as accumulator.
    {
        let xs = [1usize, 8, 9, 9];
        let ws = [32usize, 8, 3, 3];
        let attrs = Conv2dAttrs {
            stride: [1; 2],
            padding: [1; 4],
            dilation: [1; 2],
            groups: 1,
            ..Conv2dAttrs::default()
        };
        let dims = |v: &[usize]| v.iter().map(|&d| Expr::from(d as i64)).collect::<Vec<_>>();
        let x = placeholder(&dims(&xs), DType::F32, "x");
        let w = placeholder(&dims(&ws), DType::F32, "w");
        let bias = placeholder(&[32.into()], DType::F32, "bias");
        let res = placeholder(&dims(&[1, 32, 9, 9]), DType::F32, "res");
        let conv = conv2d(&x, &w, &xs, &ws, &attrs, &[1, 32, 9, 9]);
        let biased = compute(&dims(&[1, 32, 9, 9]), "biased", |i| {
            conv.at(i) + bias.at(&[i[1].clone()])
        });
        let out = compute(&dims(&[1, 32, 9, 9]), "fused", |i| {
            max(biased.at(i), Expr::from(0.0f32)) + res.at(i)
        });
        let args = [x, w, bias, res, out.clone()];
        let s = schedules::conv2d_nchw_cpu_tensorized(&out, 2).unwrap();
        let text = lower(&s, &args).unwrap().to_string();
        assert!(text.contains("gemm_f32_9x16x8.update("), "{}", text);
        assert!(!text.contains("produce biased"), "{}", text);
        check_against_unscheduled(
            &s,
            &args,
            &[out.clone()],
            4,
            "conv2d + bias + relu + residual",
        );
    }
    // Depthwise: not this schedule's form, a typed error.
    let xs = [1, 16, 8, 8];
    let ws = [16, 1, 3, 3];
    let x = placeholder(&[1.into(), 16.into(), 8.into(), 8.into()], DType::F32, "x");
    let w = placeholder(&[16.into(), 1.into(), 3.into(), 3.into()], DType::F32, "w");
    let attrs = Conv2dAttrs {
        stride: [1; 2],
        padding: [1; 4],
        dilation: [1; 2],
        groups: 16,
        ..Conv2dAttrs::default()
    };
    let out = conv2d(&x, &w, &xs, &ws, &attrs, &[1, 16, 8, 8]);
    let e = schedules::conv2d_nchw_cpu_tensorized(&out, 1)
        .unwrap_err()
        .to_string();
    assert!(e.contains("only one group is supported"), "{}", e);
    // A 5-d weight whose blocks are not 16 channels: not the packed layout.
    use loopforge::graph_runtime::WeightLayout;
    let attrs = Conv2dAttrs {
        weight_layout: WeightLayout::Ohwi16o,
        ..Conv2dAttrs::same(1, 1)
    };
    let ws = [2usize, 3, 3, 16, 8];
    let x = placeholder(&[1.into(), 16.into(), 8.into(), 8.into()], DType::F32, "x");
    let w = placeholder(&ws.map(|d| Expr::from(d as i64)), DType::F32, "w");
    let out = conv2d(&x, &w, &xs, &ws, &attrs, &[1, 16, 8, 8]);
    let e = schedules::conv2d_nchw_cpu_tensorized(&out, 1)
        .unwrap_err()
        .to_string();
    assert!(e.contains("whose last size is not 16"), "{}", e);
}

/// `Y[o, y, x] = sum_c X[c, y, x] * W[o, c]` (a pointwise convolution, its product
/// written input first) with `y, x` fused into positions and tiled by 16 across the rows.
fn fused_positions(transposed_read: bool) -> ([Tensor; 3], Schedule) {
    let (o, c, h, w) = (8i64, 12i64, 3i64, 10i64);
    let xs: [Expr; 3] = if transposed_read {
        [c.into(), w.into(), h.into()]
    } else {
        [c.into(), h.into(), w.into()]
    };
    let x = placeholder(&xs, DType::F32, "X");
    let wt = placeholder(&[o.into(), c.into()], DType::F32, "W");
    let k = reduce_axis(0, c, "rc");
    let y = compute(&[o.into(), h.into(), w.into()], "Y", |i| {
        let at = if transposed_read {
            [k.x(), i[2].clone(), i[1].clone()]
        } else {
            [k.x(), i[1].clone(), i[2].clone()]
        };
        sum(x.at(&at) * wt.at(&[i[0].clone(), k.x()]), &[k.clone()])
    });
    let mut s = create_schedule(&[y.clone()]).unwrap();
    let a = s.axes(&y).unwrap();
    let kx = s.reduce_axes(&y).unwrap().remove(0);
    let p = s.fuse(&y, &[&a[1], &a[2]]).unwrap();
    let (po, pi) = s.split(&y, &p, 16).unwrap();
    let (oo, oi) = s.split(&y, &a[0], 6).unwrap();
    s.reorder(&y, &[&po, &oo, &oi, &pi, &kx]).unwrap();
    ([x, wt, y], s)
}

#[test]
fn tensorize_positions_fused_across_rows() {
    // The 30 positions in tiles of 16 (the second partial), 8 channels in tiles of 6 (the
    // second partial): X's reads are linear only in its flattened offset, and the
    // declaration's `A * B` matches `X * W` with W as A.
    let ([x, wt, y], mut s) = fused_positions(false);
    let ci = s.leaf_axes(&y).unwrap()[2].clone();
    s.tensorize(&y, &ci, &gemm_f32(6, 16, 12).unwrap()).unwrap();
    let args = [x, wt, y.clone()];
    let text = lower(&s, &args).unwrap().to_string();
    // B (X) and C (Y) run along positions with unit stride, whole rows apart.
    assert!(
        text.contains("X[") && text.contains("strides (30, 1)"),
        "{}",
        text
    );
    check(
        "fused positions",
        &y,
        &args,
        &s,
        Some("tensorize_fused_positions"),
    );
}

#[test]
fn tensorize_refuses_a_fused_axis_read_across_a_transposed_view() {
    // X stored [c, x, y]: the positions run down its columns, no flattened offset is
    // linear in them.
    let ([x, wt, y], mut s) = fused_positions(true);
    let ci = s.leaf_axes(&y).unwrap()[2].clone();
    s.tensorize(&y, &ci, &gemm_f32(6, 16, 12).unwrap()).unwrap();
    let e = lower(&s, &[x, wt, y]).unwrap_err().to_string();
    assert!(
        e.contains("cannot tensorize Y") && e.contains("the loop nest computes"),
        "{}",
        e
    );
}

#[test]
fn tensorize_refuses_a_fused_axis_read_from_a_cached_region() {
    // X cached per tile of positions: the cache holds a region (its origin the tile's
    // rows), not the compact tensor the flattened offsets were taken in.
    let ([x, wt, y], mut s) = fused_positions(false);
    let leaves = s.leaf_axes(&y).unwrap();
    let xc = s.cache_read(&x, "global", &[&y]).unwrap();
    s.compute_at(&xc, &y, &leaves[0]).unwrap();
    s.tensorize(&y, &leaves[2], &gemm_f32(6, 16, 12).unwrap())
        .unwrap();
    let e = lower(&s, &[x, wt, y]).unwrap_err().to_string();
    assert!(
        e.contains("cannot tensorize Y")
            && e.contains(
                "is read along its flattened positions, which needs it whole and compact"
            ),
        "{}",
        e
    );
}

#[test]
fn built_in_intrinsics_declared_from_many_threads_are_one_object() {
    // A size no other test declares: every thread races to declare and register it.
    let got: Vec<std::sync::Arc<TensorIntrin>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|_| s.spawn(|| gemm_f32(5, 16, 37).unwrap()))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(got.iter().all(|g| std::sync::Arc::ptr_eq(g, &got[0])));
}

#[test]
fn parallel_row_blocks_balance_the_threads() {
    // With several threads the row blocks are dealt out whole. The blocking leaves the
    // busiest thread within 5% of an even share, or within 1% of the fewest rows any block
    // of 48 to 288 rows can give it; and it takes no block below 48 rows unless there are
    // too few rows for those (each block streams the packed panel of B once).
    let busiest = |m: i64, mc: i64, t: i64| ((m + mc - 1) / mc + t - 1) / t * mc;
    for t in [2i64, 3, 4] {
        for m in (6..3000).step_by(7) {
            for avx512 in [false, true] {
                let g =
                    schedules::GemmBlocking::for_shape_on(m, 64, 64, t as usize, avx512).unwrap();
                let sizes = |lo: i64, hi: i64| -> Vec<i64> {
                    (1..=hi / g.mr)
                        .map(|q| q * g.mr)
                        .filter(|&mc| mc >= lo && (m + mc - 1) / mc >= t)
                        .collect()
                };
                let lo = if sizes(48, 288).is_empty() { 1 } else { 48 };
                let all = sizes(lo, 288);
                if all.is_empty() {
                    // Fewer rows than threads have tiles: one block, serial rows.
                    assert!(!g.parallel_rows, "{} rows, {} threads: {:?}", m, t, g);
                    continue;
                }
                let what = format!("{} rows, {} threads: {:?}", m, t, g);
                assert!(
                    g.parallel_rows && g.mc % g.mr == 0 && g.mc <= 288,
                    "{}",
                    what
                );
                assert!(g.mc >= lo, "{}", what);
                let got = busiest(m, g.mc, t);
                let share = (m + t - 1) / t;
                let fewest = all.iter().map(|&mc| busiest(m, mc, t)).min().unwrap();
                assert!(
                    got * 20 <= share * 21 || got * 100 <= fewest * 101,
                    "{}: the busiest thread has {} rows, an even share is {}, {} possible",
                    what,
                    got,
                    share,
                    fewest
                );
                if m >= 2 * 96 * t {
                    assert!(g.mc >= 48, "{}", what);
                }
            }
        }
    }
    // 1024 rows on two threads: 4 blocks of 258 (516 and 508 rows), not 8 of 132 (528 and
    // 496); 256 rows: 2 blocks of 132 (already within 1%); 630 and 700 rows, 1250 on four
    // threads: no 6-row blocks.
    let mc = |m, t| {
        schedules::GemmBlocking::for_shape_on(m, 1024, 1024, t, false)
            .unwrap()
            .mc
    };
    assert_eq!(mc(1024, 2), 258);
    assert_eq!(mc(256, 2), 132);
    for (m, t) in [(630, 2), (700, 2), (1250, 4)] {
        assert!(mc(m, t) >= 96, "{} rows, {} threads: mc {}", m, t, mc(m, t));
    }
}
