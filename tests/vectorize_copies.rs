//! The `vectorize_copies` pass: after `loop_partition`, a padding stage's interior copy
//! and its fills run as 128-bit vectors with a scalar tail; loops that are not plain
//! copies of another buffer, short ones and GPU threads' loops stay as they were. The
//! results are those of the unscheduled computation computed by hand here.

mod common;
use common::*;
use loopforge::prelude::*;

/// `P[i, j]` = `A` (`h x w`) padded by `pad` on every side with `fill` (indices clamped,
/// as the graph's padding stage does).
fn padded(h: i64, w: i64, pad: i64, fill: f32) -> (Tensor, Tensor) {
    let a = placeholder(&[h.into(), w.into()], DType::F32, "A");
    let p = compute(&[(h + 2 * pad).into(), (w + 2 * pad).into()], "P", |i| {
        let (y, x) = (i[0].clone() - pad, i[1].clone() - pad);
        let inside = and(
            and(ge(y.clone(), 0), lt(y.clone(), h)),
            and(ge(x.clone(), 0), lt(x.clone(), w)),
        );
        let clamp = |e: Expr, n: i64| min(max(e, 0), n - 1);
        select(inside, a.at(&[clamp(y, h), clamp(x, w)]), fill)
    });
    (a, p)
}

/// `P` computed by hand for `A[y, x] = y * w + x + 0.5`.
fn expected(h: usize, w: usize, pad: usize, fill: f32) -> Vec<f32> {
    let (ph, pw) = (h + 2 * pad, w + 2 * pad);
    let mut out = vec![];
    for y in 0..ph {
        for x in 0..pw {
            let inside = (pad..pad + h).contains(&y) && (pad..pad + w).contains(&x);
            out.push(if inside {
                ((y - pad) * w + x - pad) as f32 + 0.5
            } else {
                fill
            });
        }
    }
    out
}

fn run(s: &Schedule, args: &[Tensor], h: usize, w: usize, pad: usize, fill: f32) {
    let a: Vec<f32> = (0..h * w).map(|k| k as f32 + 0.5).collect();
    let want = expected(h, w, pad, fill);
    for target in [Target::cpu(), Target::interp()] {
        let k = build(s, args, target.clone()).unwrap();
        let xa = NdArray::from_slice(&[h, w], &a).unwrap();
        let mut p = NdArray::zeros(&[h + 2 * pad, w + 2 * pad], DType::F32);
        k.run(&[&xa], &mut [&mut p]).unwrap();
        assert_eq!(
            p.to_vec::<f32>().unwrap(),
            want,
            "{:?} {}x{} pad {}",
            target,
            h,
            w,
            pad
        );
    }
}

#[test]
fn padding_interior_and_fills_become_vectors_with_a_tail() {
    // Rows of 37 (a tail of 1 after 9 chunks) padded by 2: the interior copy of each row
    // and the fills of the top and bottom rows (41 wide) are vectors.
    let (a, p) = padded(5, 37, 2, -1.0);
    let args = [a, p.clone()];
    let s = create_schedule(&[p]).unwrap();
    let text = lower(&s, &args).unwrap().to_string();
    golden("vectorize_copies_padding", &text);
    assert!(text.contains("= A[ramp("), "{}", text);
    assert!(text.contains("] = x4(-1.0f)"), "{}", text);
    run(&s, &args, 5, 37, 2, -1.0);
    // Widths that are and are not multiples of 4, and rows too short to vectorize.
    for (h, w, pad) in [(3, 8, 1), (4, 13, 3), (2, 5, 1), (1, 64, 0)] {
        let (a, p) = padded(h as i64, w as i64, pad as i64, 2.5);
        let args = [a, p.clone()];
        let s = create_schedule(&[p]).unwrap();
        run(&s, &args, h, w, pad, 2.5);
    }
}

#[test]
fn loops_that_are_not_plain_copies_stay_scalar() {
    // A computed value (not a copy), and a copy of 7 elements (under 8: not worth it).
    let a = placeholder(&[16.into()], DType::F32, "A");
    let b = compute(&[16.into()], "B", |i| a.at(&[i[0].clone()]) * 2.0f32);
    let c = compute(&[7.into()], "C", |i| a.at(&[i[0].clone()]));
    for (t, what) in [(&b, "computed value"), (&c, "7 elements")] {
        let args = [a.clone(), t.clone()];
        let s = create_schedule(&[t.clone()]).unwrap();
        let text = lower(&s, &args).unwrap().to_string();
        assert!(!text.contains("ramp("), "{}: {}", what, text);
    }
    // GPU threads' loops are left as scheduled.
    let d = compute(&[4.into(), 64.into()], "D", |i| {
        a.at(&[floormod(i[1].clone(), 16)])
    });
    let args = [a.clone(), d.clone()];
    let mut s = create_schedule(&[d.clone()]).unwrap();
    let [r, _] = s.axes2(&d).unwrap();
    s.bind(&d, &r, "threadIdx.x").unwrap();
    let text = lower(&s, &args).unwrap().to_string();
    assert!(!text.contains("ramp("), "{}", text);
}
