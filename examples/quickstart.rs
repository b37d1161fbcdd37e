//! loopforge in one screen: define a matmul, print its lowered IR, JIT-compile a naive
//! and a scheduled version, check both against the reference interpreter, and time them.
//!
//! Run: `cargo run --release --example quickstart [N]` (default N = 512).

use loopforge::prelude::*;
use std::time::Instant;

fn main() -> Result<()> {
    let n: i64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(512);

    // What: C[i, j] = sum_k A[i, k] * B[k, j].
    let a = placeholder(&[n.into(), n.into()], DType::F32, "A");
    let b = placeholder(&[n.into(), n.into()], DType::F32, "B");
    let k = reduce_axis(0, n, "k");
    let c = compute(&[n.into(), n.into()], "C", |i| {
        sum(
            a.at(&[i[0].clone(), k.x()]) * b.at(&[k.x(), i[1].clone()]),
            &[k.clone()],
        )
    });
    let args = [a.clone(), b.clone(), c.clone()];

    // How (1): the default schedule, three plain loops.
    let naive = create_schedule(&[c.clone()])?;
    // How (2): register-blocked, vectorized, unrolled (see loopforge::schedules::matmul).
    let fast = loopforge::schedules::matmul_cpu(&c, 1)?;

    println!(
        "== lowered IR of the scheduled matmul ==\n{}",
        lower(&fast, &args)?
    );
    println!("== schedule trace ==\n{}\n", fast.trace_json());

    let x = NdArray::random(&[n as usize, n as usize], DType::F32, 1);
    let y = NdArray::random(&[n as usize, n as usize], DType::F32, 2);

    // The reference: the interpreter on the unscheduled computation (small sizes only: it is slow).
    let check_n = n.min(96);
    let want = if check_n == n {
        let k = build(&naive, &args, Target::interp())?;
        let mut z = NdArray::zeros(&[n as usize, n as usize], DType::F32);
        k.run(&[&x, &y], &mut [&mut z])?;
        Some(z)
    } else {
        None
    };

    let flops = 2.0 * (n * n * n) as f64;
    for (name, s) in [("naive", &naive), ("scheduled", &fast)] {
        let t0 = Instant::now();
        let kernel = build(s, &args, Target::cpu())?;
        let jit = t0.elapsed();
        let mut z = NdArray::zeros(&[n as usize, n as usize], DType::F32);
        kernel.run(&[&x, &y], &mut [&mut z])?;
        let verdict = match &want {
            Some(w) => {
                if z.allclose(w, 1e-4, 1e-4) {
                    "matches the reference".to_string()
                } else {
                    format!("MISMATCH (max abs diff {})", z.max_abs_diff(w))
                }
            }
            None => check_against_naive_rows(&x, &y, &z, n as usize),
        };
        let mut times = vec![];
        for _ in 0..5 {
            let t = Instant::now();
            kernel.run(&[&x, &y], &mut [&mut z])?;
            times.push(t.elapsed().as_secs_f64());
        }
        times.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let med = times[times.len() / 2];
        println!(
            "{:>9}: lower+JIT {:6.1} ms, median {:8.2} ms, {:6.2} GFLOP/s, {}",
            name,
            jit.as_secs_f64() * 1e3,
            med * 1e3,
            flops / med / 1e9,
            verdict
        );
    }
    Ok(())
}

/// For large sizes: check a few rows against a plain Rust dot product.
fn check_against_naive_rows(x: &NdArray, y: &NdArray, z: &NdArray, n: usize) -> String {
    let (xs, ys, zs) = (
        x.as_slice::<f32>().unwrap(),
        y.as_slice::<f32>().unwrap(),
        z.as_slice::<f32>().unwrap(),
    );
    let mut worst = 0f32;
    for &i in &[0, n / 3, n - 1] {
        for j in 0..n {
            let mut s = 0f32;
            for k in 0..n {
                s += xs[i * n + k] * ys[k * n + j];
            }
            worst = worst.max((s - zs[i * n + j]).abs() / (1.0 + s.abs()));
        }
    }
    if worst < 1e-4 {
        "matches a direct computation (3 rows checked)".into()
    } else {
        format!("MISMATCH (relative error {})", worst)
    }
}
