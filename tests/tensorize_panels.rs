//! `gemm_f32_panels`, the macro-kernel intrinsic: a whole packed `mc x nc x kc` block of
//! the BLIS matmul schedule in one call. Its reads of the packed panels (`A.global[i / mr,
//! k, i % mr]`) match the declaration's own index expressions. Golden IR, trace replay,
//! the host function against the declaration on random blockings, then the errors.

mod common;
use common::*;
use loopforge::intrinsics::gemm_f32_panels;
use loopforge::prelude::*;
use loopforge::schedule::LayoutDim;
use loopforge::schedules::{self, GemmBlocking};

fn blocking(mr: i64, nr: i64, mc: i64, nc: i64, kc: i64, threads: usize) -> GemmBlocking {
    GemmBlocking {
        mr,
        nr,
        mc,
        nc,
        kc,
        threads,
        parallel_rows: false,
    }
}

#[test]
fn panels_golden_ir_and_replay() {
    // 20 rows in blocks of 12 (the second block partial: 8 rows), two column blocks of 32
    // (two 16-column micro-panels each), two reduction slices (the second updates).
    let (a, b, c) = matmul(20, 64, 24);
    let args = [a, b, c.clone()];
    let s = schedules::matmul_cpu_tensorized_with(&c, blocking(6, 16, 12, 32, 12, 1)).unwrap();
    golden_and_replay("tensorize_panels", &s, &c, &args);
    let text = lower(&s, &args).unwrap().to_string();
    assert!(
        text.contains("gemm_f32_panels_12x32x12_6x16.update(A.global[0] strides (72, 6, 1)"),
        "{}",
        text
    );
    check_against_unscheduled(&s, &args, &[c.clone()], 5, "panels 20x64x24");
}

/// The CPU's results (returned) against the interpreter's, which runs the intrinsic's
/// declaration, and both against the unscheduled computation (`args`: `A`, `B`, `C`).
fn host_vs_declaration(s: &Schedule, args: &[Tensor; 3], case: u64, what: &str) -> Vec<NdArray> {
    let want = run_all(s, args, Target::interp(), case);
    let got = run_all(s, args, Target::cpu(), case);
    assert_outputs_close(args, &got, &want, &format!("host vs declaration, {}", what));
    check_against_unscheduled(s, args, &[args[2].clone()], case, what);
    got
}

#[test]
fn panels_intrinsic_against_its_declaration_on_random_blockings() {
    // Property: for every supported panel size (6 x 16 takes the AVX2 kernel directly
    // where the CPU has it, the others the general dispatch) with random blocks, slices,
    // and row and column counts that the blocks and panels need not divide, the host
    // function computes what the interpreter computes from the declaration, and both
    // what the unscheduled computation does. Calling the kernel again on its own output
    // changes nothing (the first slice overwrites `C`, whatever it held).
    let mut rng = Rng(11u64);
    let mut next = |n: i64| rng.below(n as u64) as i64;
    let mut case = 0;
    for (mr, nr) in [(4, 16), (6, 16), (12, 16), (4, 32), (6, 32), (12, 32)] {
        for _ in 0..2 {
            case += 1;
            let (mc, nc, kc) = (mr * (1 + next(3)), nr * (1 + next(2)), 1 + next(12));
            let (m, n, k) = (1 + next(2 * mc), 1 + next(2 * nc), kc * (1 + next(3)));
            let (a, b, c) = matmul(m, n, k);
            let args = [a.clone(), b.clone(), c.clone()];
            let s = panels_by_hand(&c, &a, &b, [mr, nr, mc, nc, kc]);
            let text = lower(&s, &args).unwrap().to_string();
            assert_eq!(
                text.contains(") extents ("),
                m % mc != 0 || n % nc != 0,
                "partial blocks exactly where the blocks overhang: {}",
                text
            );
            let what = format!(
                "{}x{}x{}, blocks {}x{}x{}, panels {}x{}",
                m, n, k, mc, nc, kc, mr, nr
            );
            let got = host_vs_declaration(&s, &args, case, &what);
            let kernel = build(&s, &args, Target::cpu()).unwrap();
            let mut again = got.clone();
            let mut refs: Vec<&mut NdArray> = again.iter_mut().collect();
            kernel.call(&mut refs).unwrap();
            assert_close(&again[2], &got[2], &format!("called twice, {}", what));
        }
    }
    // The library schedule on random blockings, one or two threads (rows or columns in
    // parallel).
    for case in 0..6 {
        let mr = [4, 6, 12][next(3) as usize];
        let nr = [16, 32][next(2) as usize];
        let (mc, nc, kc) = (mr * (1 + next(3)), nr * (1 + next(2)), 1 + next(12));
        let (m, n, k) = (1 + next(2 * mc + 1), nc * (1 + next(2)), kc * (1 + next(3)));
        let threads = 1 + next(2) as usize;
        let g = GemmBlocking {
            parallel_rows: threads > 1 && next(2) == 1,
            ..blocking(mr, nr, mc, nc, kc, threads)
        };
        let (a, b, c) = matmul(m, n, k);
        let args = [a, b, c.clone()];
        let s = schedules::matmul_cpu_tensorized_with(&c, g).unwrap();
        let text = lower(&s, &args).unwrap().to_string();
        let name = format!("gemm_f32_panels_{}x{}x{}_{}x{}", mc, nc, kc, mr, nr);
        assert!(text.contains(&name), "{:?}: {}", g, text);
        let what = format!("{}x{}x{} with {:?}", m, n, k, g);
        host_vs_declaration(&s, &args, case, &what);
    }
}

#[test]
fn panels_errors() {
    // Sizes: below 1, panels that do not divide the block, panels without a kernel.
    for (e, needle) in [
        (
            gemm_f32_panels(0, 16, 8, 6, 16),
            "every tile size must be at least 1",
        ),
        (gemm_f32_panels(10, 16, 8, 6, 16), "mr = 6 into mc = 10"),
        (gemm_f32_panels(12, 24, 8, 6, 16), "nr = 16 into nc = 24"),
        (
            gemm_f32_panels(10, 16, 8, 5, 16),
            "panels of 5 rows by 16 columns have no host function",
        ),
    ] {
        let e = e.unwrap_err().to_string();
        assert!(e.contains(needle), "{}", e);
    }
    // A's block packed in panels of 6 rows, the intrinsic declared for panels of 4: the
    // reads differ, and the error shows both sides.
    let (a, b, c) = matmul(12, 32, 8);
    let mut s = create_schedule(&[c.clone()]).unwrap();
    let ap = s.cache_read(&a, "global", &[&c]).unwrap();
    let bp = s.cache_read(&b, "global", &[&c]).unwrap();
    let [i, _] = s.axes2(&c).unwrap();
    let (io, _) = s.split(&c, &i, 12).unwrap();
    for (t, dim, width) in [(&ap, 0, 6), (&bp, 1, 16)] {
        s.transform_layout(
            t,
            &[
                LayoutDim::outer(dim, width),
                LayoutDim::dim(1 - dim),
                LayoutDim::inner(dim, width),
            ],
        )
        .unwrap();
        s.compute_at(t, &c, &io).unwrap();
    }
    let ii = s.axis(&c, "i.inner").unwrap();
    s.tensorize(&c, &ii, &gemm_f32_panels(12, 32, 8, 4, 16).unwrap())
        .unwrap();
    let e = lower(&s, &[a.clone(), b.clone(), c])
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot tensorize C at i.inner"), "{}", e);
    assert!(
        e.contains("A.global[floordiv(i.outer * 12 + i.inner, 6)")
            && e.contains("A[floordiv(i, 4), k, floormod(i, 4)]"),
        "{}",
        e
    );
    // A packed computation written by hand: read at the panels' own indices it is
    // tensorized (and computes the product); read from an origin inside a panel (rows
    // shifted by 3 of 6) the view would not be the declaration's, so it is refused.
    let (a, b, _) = matmul(18, 32, 8);
    let pa = compute(&[3.into(), 8.into(), 6.into()], "PA", |x| {
        a.at(&[x[0].clone() * 6 + x[2].clone(), x[1].clone()])
    });
    let pb = compute(&[2.into(), 8.into(), 16.into()], "PB", |x| {
        b.at(&[x[1].clone(), x[0].clone() * 16 + x[2].clone()])
    });
    for shift in [0, 3] {
        let k = reduce_axis(0, 8, "k");
        let out = compute(&[12.into(), 32.into()], "S", |x| {
            let (r, col) = (x[0].clone() + shift, x[1].clone());
            sum(
                pa.at(&[floordiv(r.clone(), 6), k.x(), floormod(r, 6)])
                    * pb.at(&[floordiv(col.clone(), 16), k.x(), floormod(col, 16)]),
                &[k.clone()],
            )
        });
        let mut s = create_schedule(&[out.clone()]).unwrap();
        let [i, _] = s.axes2(&out).unwrap();
        s.tensorize(&out, &i, &gemm_f32_panels(12, 32, 8, 6, 16).unwrap())
            .unwrap();
        let args = [a.clone(), b.clone(), out.clone()];
        if shift == 0 {
            check_against_unscheduled(&s, &args, &[out.clone()], 9, "hand-packed panels");
            continue;
        }
        let e = lower(&s, &args).unwrap_err().to_string();
        assert!(e.contains("cannot tensorize S at i"), "{}", e);
        assert!(
            e.contains("PA[floordiv(i + 3, 6)")
                && e.contains("where the intrinsic declares `A[floordiv(i, 6)"),
            "{}",
            e
        );
    }
}
