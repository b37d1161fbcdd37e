//! The loop partition pass on boundary conditions: a padding stage's `select` is split
//! off its loops' first and last iterations, so the interior is a plain copy; results
//! stay those of the unpartitioned computation (checked against values computed here).

mod common;
use common::*;
use loopforge::prelude::*;

const H: usize = 5;
const W: usize = 7;
const PAD: usize = 2;
const FILL: f32 = -1.0;

/// `P` = `A` (5 x 7) padded by 2 on every side with -1 (indices clamped, as the graph's
/// padding stage does), and `C[i, j]` = the 3 x 3 window sum of `P` at `(i, j)`.
fn padded_window() -> (Vec<Tensor>, Tensor) {
    let a = placeholder(&[(H as i64).into(), (W as i64).into()], DType::F32, "A");
    let (ph, pw) = ((H + 2 * PAD) as i64, (W + 2 * PAD) as i64);
    let p = compute(&[ph.into(), pw.into()], "P", |i| {
        let (y, x) = (i[0].clone() - PAD as i64, i[1].clone() - PAD as i64);
        let inside = and(
            and(ge(y.clone(), 0), lt(y.clone(), H as i64)),
            and(ge(x.clone(), 0), lt(x.clone(), W as i64)),
        );
        let clamp = |e: Expr, n: usize| min(max(e, 0), n as i64 - 1);
        select(inside, a.at(&[clamp(y, H), clamp(x, W)]), FILL)
    });
    let ry = reduce_axis(0, 3, "ry");
    let rx = reduce_axis(0, 3, "rx");
    let c = compute(&[(ph - 2).into(), (pw - 2).into()], "C", |i| {
        sum(
            p.at(&[i[0].clone() + ry.x(), i[1].clone() + rx.x()]),
            &[ry.clone(), rx.clone()],
        )
    });
    (vec![a, c], p)
}

/// The expected `C` for `A[y, x] = a[y * W + x]`.
fn expected(a: &[f32]) -> Vec<f32> {
    let (ph, pw) = (H + 2 * PAD, W + 2 * PAD);
    let p = |y: usize, x: usize| {
        if (PAD..PAD + H).contains(&y) && (PAD..PAD + W).contains(&x) {
            a[(y - PAD) * W + x - PAD]
        } else {
            FILL
        }
    };
    let mut c = vec![];
    for i in 0..ph - 2 {
        for j in 0..pw - 2 {
            c.push(
                (0..3)
                    .flat_map(|r| (0..3).map(move |s| (r, s)))
                    .map(|(r, s)| p(i + r, j + s))
                    .sum(),
            );
        }
    }
    c
}

fn check(s: &Schedule, args: &[Tensor], what: &str) {
    let a: Vec<f32> = (0..H * W).map(|k| k as f32 * 0.25 - 3.0).collect();
    let want = expected(&a);
    for target in [Target::cpu(), Target::interp()] {
        let k = build(s, args, target).unwrap();
        let xa = NdArray::from_slice(&[H, W], &a).unwrap();
        let mut c = NdArray::zeros(&[H + 2 * PAD - 2, W + 2 * PAD - 2], DType::F32);
        k.run(&[&xa], &mut [&mut c]).unwrap();
        assert_eq!(c.to_vec::<f32>().unwrap(), want, "{}", what);
    }
}

#[test]
fn padding_select_split_off_the_boundary() {
    let (args, _) = padded_window();
    let s = create_schedule(&[args[1].clone()]).unwrap();
    let f = lower(&s, &args).unwrap();
    let text = f.to_string();
    golden("loop_partition_padding", &text);
    // The padded stage's interior is a copy: no select, no clamp.
    assert!(
        text.lines().any(|l| l.contains("P[")
            && l.contains("= A[")
            && !l.contains("select")
            && !l.contains("max(")),
        "{}",
        text
    );
    check(&s, &args, "padding, partitioned");
}

#[test]
fn vectorized_loops_straddling_the_border_are_unrolled() {
    // The padded rows vectorized: the vector loop is not split (its lanes stay whole); the
    // row loop around it still is. A group of 4 columns that straddles the border is no
    // vector (its lanes differ in the select's condition): it is unrolled, and each
    // lane's select folds to a constant choice.
    let (args, p) = padded_window();
    let mut s = create_schedule(&[args[1].clone()]).unwrap();
    let [_, x] = s.axes2(&p).unwrap();
    let (_, xi) = s.split(&p, &x, 4).unwrap();
    s.vectorize(&p, &xi).unwrap();
    let text = lower(&s, &args).unwrap().to_string();
    assert!(!text.contains("select("), "{}", text);
    assert!(text.contains("ramp("), "{}", text);
    assert!(text.contains("P[i * 11 + 1] = -1.0f"), "{}", text);
    check(&s, &args, "padding, vectorized");
}

#[test]
fn a_packed_panel_select_split_off_the_last_row_block() {
    // The tensorized matmul packs A per block of 12 rows, 6-row panels padded with zero
    // rows past the 20th: the panel loop's extent depends on the block (2 panels, then 2
    // with the last one partial). The block loop is split value by value: blocks whose
    // rows all exist copy without a select (and call whole tiles), the last keeps it.
    use loopforge::schedules::{matmul_cpu_tensorized_with, GemmBlocking};
    let (a, b, c) = matmul(20, 16, 8);
    let args = [a, b, c.clone()];
    let g = GemmBlocking {
        mr: 6,
        nr: 16,
        mc: 12,
        nc: 16,
        kc: 8,
        threads: 1,
        parallel_rows: false,
    };
    let s = matmul_cpu_tensorized_with(&c, g).unwrap();
    let text = lower(&s, &args).unwrap().to_string();
    let packs: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with("A.global["))
        .collect();
    // Each copies a step's 6 rows, unrolled.
    assert_eq!(packs.len(), 12, "{}", text);
    assert!(
        packs[..6].iter().all(|p| !p.contains("select(")),
        "{}",
        text
    );
    // The last block keeps a select for the rows that may lie past the 20th (rows it
    // proves in range copy without one).
    assert!(packs[6..].iter().any(|p| p.contains("select(")), "{}", text);
    let want = run_all(
        &create_schedule(&[c.clone()]).unwrap(),
        &args,
        Target::interp(),
        3,
    );
    for t in [Target::interp(), Target::cpu()] {
        let got = run_all(&s, &args, t.clone(), 3);
        assert_outputs_close(&args, &got, &want, &format!("{:?}", t));
    }
}

#[test]
fn a_select_on_an_enclosing_loop_is_split_where_it_holds_for_all_its_values() {
    // A 1-d padding (4 on each side) computed in two halves, even then odd positions
    // (as the depthwise schedule's stride-2 planes), each half in vectors of 4. The
    // condition depends on the half (an enclosing loop): the vector loop is split where
    // it holds for both halves, so the middle vector is a plain strided copy.
    let a = placeholder(&[16.into()], DType::F32, "A");
    let p = compute(&[24.into()], "P", |i| {
        let x = i[0].clone() - 4;
        let inside = and(ge(x.clone(), 0), lt(x.clone(), 16));
        select(inside, a.at(&[min(max(x, 0), 15)]), FILL)
    });
    let args = [a, p.clone()];
    let mut s = create_schedule(&[p.clone()]).unwrap();
    let x = s.axes(&p).unwrap().remove(0);
    let (xo, half) = s.split(&p, &x, 2).unwrap();
    s.reorder(&p, &[&half, &xo]).unwrap();
    let (_, lanes) = s.split(&p, &xo, 4).unwrap();
    s.vectorize(&p, &lanes).unwrap();
    let text = lower(&s, &args).unwrap().to_string();
    let interior: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("P[ramp(") && l.contains("= A[ramp("))
        .collect();
    assert_eq!(interior.len(), 1, "{}", text);
    assert!(
        interior
            .iter()
            .all(|l| !l.contains("select") && l.contains(", 2, 4)]")),
        "{}",
        text
    );
    let av: Vec<f32> = (0..16).map(|k| k as f32 * 0.5 - 2.0).collect();
    let want: Vec<f32> = (0..24)
        .map(|x| {
            if (4..20).contains(&x) {
                av[x - 4]
            } else {
                FILL
            }
        })
        .collect();
    for target in [Target::cpu(), Target::interp()] {
        let k = build(&s, &args, target).unwrap();
        let xa = NdArray::from_slice(&[16], &av).unwrap();
        let mut out = NdArray::zeros(&[24], DType::F32);
        k.run(&[&xa], &mut [&mut out]).unwrap();
        assert_eq!(out.to_vec::<f32>().unwrap(), want);
    }
}
