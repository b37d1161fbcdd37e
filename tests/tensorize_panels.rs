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

#[test]
fn panels_intrinsic_against_its_declaration_on_random_blockings() {
    // Property: for random panel sizes (every supported pair; 6 x 16 takes the AVX2
    // kernel directly where the CPU has it, the others the general dispatch), blocks,
    // slices, partial row blocks and one or two threads, the host function computes what
    // the interpreter computes from the declaration, and both what the unscheduled
    // computation does.
    let mut rng = Rng(11u64);
    let mut next = |n: u64| rng.below(n) as i64;
    for case in 0..12 {
        let mr = [4, 6, 12][next(3) as usize];
        let nr = [16, 32][next(2) as usize];
        let mc = mr * (1 + next(3));
        let nc = nr * (1 + next(2));
        let kc = 1 + next(12);
        let m = 1 + next((2 * mc + 1) as u64);
        let n = nc * (1 + next(2));
        let k = kc * (1 + next(3));
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
        let want = run_all(&s, &args, Target::interp(), case);
        let got = run_all(&s, &args, Target::cpu(), case);
        assert_outputs_close(
            &args,
            &got,
            &want,
            &format!("host vs declaration, {}", what),
        );
        check_against_unscheduled(&s, &args, &[c.clone()], case, &what);
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
    let e = lower(&s, &[a, b, c]).unwrap_err().to_string();
    assert!(e.contains("cannot tensorize C at i.inner"), "{}", e);
    assert!(
        e.contains("A.global[floordiv(i.outer * 12 + i.inner, 6)")
            && e.contains("A[floordiv(i, 4), k, floormod(i, 4)]"),
        "{}",
        e
    );
}
