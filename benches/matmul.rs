//! f32 matmul 1024 x 1024 x 1024: the naive schedule and the best pure-Cranelift CPU
//! schedule (`loopforge::schedules::matmul_cpu`) on one thread, the tensorized one
//! (`matmul_cpu_tensorized`, the `gemm_f32` micro-kernel) on one and two, and the time to
//! lower + JIT.
//!
//! `cargo bench --bench matmul` (set `LOOPFORGE_BENCH_N` for another size). Throughput is
//! reported in elements = FLOPs, so criterion prints GFLOP/s as "Gelem/s".

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use loopforge::prelude::*;
use std::time::Duration;

fn matmul(n: i64) -> (Tensor, Tensor, Tensor) {
    let a = placeholder(&[n.into(), n.into()], DType::F32, "A");
    let b = placeholder(&[n.into(), n.into()], DType::F32, "B");
    let k = reduce_axis(0, n, "k");
    let c = compute(&[n.into(), n.into()], "C", |i| {
        sum(
            a.at(&[i[0].clone(), k.x()]) * b.at(&[k.x(), i[1].clone()]),
            &[k.clone()],
        )
    });
    (a, b, c)
}

fn bench(cr: &mut Criterion) {
    let n: i64 = std::env::var("LOOPFORGE_BENCH_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024);
    let (a, b, c) = matmul(n);
    let args = [a, b, c.clone()];
    let x = NdArray::random(&[n as usize, n as usize], DType::F32, 1);
    let y = NdArray::random(&[n as usize, n as usize], DType::F32, 2);
    let mut z = NdArray::zeros(&[n as usize, n as usize], DType::F32);

    let mut g = cr.benchmark_group(format!("matmul_f32_{}", n));
    g.throughput(Throughput::Elements(2 * (n * n * n) as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(8));
    let best = build(
        &loopforge::schedules::matmul_cpu(&c, 1).unwrap(),
        &args,
        Target::cpu(),
    )
    .unwrap();
    g.bench_function("best_1thread", |bch| {
        bch.iter(|| best.run(&[&x, &y], &mut [&mut z]).unwrap())
    });
    for threads in [1, 2] {
        let tensorized = build(
            &loopforge::schedules::matmul_cpu_tensorized(&c, threads).unwrap(),
            &args,
            Target::cpu(),
        )
        .unwrap();
        g.bench_function(format!("tensorized_{}thread", threads), |bch| {
            bch.iter(|| tensorized.run(&[&x, &y], &mut [&mut z]).unwrap())
        });
    }
    let naive = build(
        &create_schedule(&[c.clone()]).unwrap(),
        &args,
        Target::cpu(),
    )
    .unwrap();
    g.bench_function("naive_1thread", |bch| {
        bch.iter(|| naive.run(&[&x, &y], &mut [&mut z]).unwrap())
    });
    g.finish();

    let mut g = cr.benchmark_group("compile");
    g.sample_size(20);
    g.bench_function(format!("lower_and_jit_matmul_{}", n), |bch| {
        bch.iter(|| {
            build(
                &loopforge::schedules::matmul_cpu(&c, 1).unwrap(),
                &args,
                Target::cpu(),
            )
            .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
