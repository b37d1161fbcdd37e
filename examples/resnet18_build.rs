//! Build the full ResNet-18 (1x3x224x224, random weights from a fixed seed) for the CPU
//! with every graph pass on, and print the build time, the kernel count and memory plan,
//! and the latency per run (median of N runs after warm-up) with 1 and 2 threads.
//!
//! Run: `cargo run --release --example resnet18_build [N]` (default N = 10). Pass
//! `--no-passes` to build without folding, fusion and memory planning, `--no-winograd`
//! to keep every convolution direct, `--profile` to print each kernel's time (one
//! thread; `--profile=T` with `T` threads).

use loopforge::graph_runtime::{self, models, BuildOptions, ScheduleKind};
use loopforge::prelude::*;
use std::time::Instant;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runs: usize = args
        .iter()
        .find_map(|a| a.parse().ok())
        .unwrap_or(10)
        .max(1);
    let mut opts = if args.iter().any(|a| a == "--no-passes") {
        BuildOptions::none()
    } else {
        BuildOptions::default()
    };
    if args.iter().any(|a| a == "--no-winograd") {
        opts.winograd = false;
    }
    let (g, params) = models::resnet18(1, 224, 1000, 7)?;
    let x = NdArray::random(&[1, 3, 224, 224], DType::F32, 1);
    {
        // The graph passes alone (part of the build time below).
        let bound: Vec<Option<NdArray>> = g
            .values()
            .iter()
            .enumerate()
            .map(|(i, _)| {
                let name = g.value_name(loopforge::graph_runtime::ValueId(i));
                g.params()
                    .iter()
                    .any(|p| p.0 == i)
                    .then(|| params[name].clone())
            })
            .collect();
        let t0 = Instant::now();
        let (pg, _) = graph_runtime::passes::run(&g, bound, &opts, ScheduleKind::Cpu)?;
        println!(
            "graph passes: {:.3} s ({} -> {} nodes)",
            t0.elapsed().as_secs_f64(),
            g.nodes().len(),
            pg.nodes().len()
        );
    }
    let profile = args.iter().find_map(|a| {
        (a == "--profile")
            .then_some(1)
            .or_else(|| a.strip_prefix("--profile=").and_then(|t| t.parse().ok()))
    });
    if let Some(threads) = profile {
        let keep = BuildOptions {
            plan_memory: false,
            ..opts
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("a thread pool");
        let m = graph_runtime::build_with_options(
            &g,
            Target::cpu(),
            &params,
            threads,
            ScheduleKind::Cpu,
            &keep,
            &mut |_, _, _| {},
        )?;
        let mut ex = m.executor();
        ex.set_input("input", x.clone())?;
        ex.run()?;
        for (i, n) in m.graph().nodes().iter().enumerate() {
            let ins: Vec<&NdArray> = n
                .inputs
                .iter()
                .map(|&v| ex.value(v).expect("kept"))
                .collect();
            let mut out = ex.value(n.output).expect("kept").clone();
            let s = Instant::now();
            pool.install(|| -> Result<()> {
                for _ in 0..runs {
                    m.kernel(i).run(&ins, &mut [&mut out])?;
                }
                Ok(())
            })?;
            println!(
                "{:>8.3} ms  {} ({}) -> {:?}",
                s.elapsed().as_secs_f64() * 1e3 / runs as f64,
                n.name,
                match &n.op {
                    graph_runtime::Op::Fused(f) => format!("fused {}", f.anchor.kind_name()),
                    op => op.kind_name().to_string(),
                },
                m.graph().shape(n.output)
            );
        }
    }
    for threads in [1usize, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("a thread pool");
        pool.install(|| -> Result<()> {
            let t0 = Instant::now();
            let m = graph_runtime::build_with_options(
                &g,
                Target::cpu(),
                &params,
                threads,
                ScheduleKind::Cpu,
                &opts,
                &mut |_, _, _| {},
            )?;
            let build_s = t0.elapsed().as_secs_f64();
            let (lower_s, codegen_s) = (0..m.num_kernels()).fold((0.0, 0.0), |(l, c), i| {
                let k = m.kernel(i);
                (
                    l + k.lower_time().as_secs_f64(),
                    c + k.compile_time().as_secs_f64(),
                )
            });
            let plan = m.memory_plan();
            let mut ex = m.executor();
            ex.set_input("input", x.clone())?;
            ex.run()?; // warm-up
            let mut t = vec![];
            for _ in 0..runs {
                let s = Instant::now();
                ex.run()?;
                t.push(s.elapsed().as_secs_f64() * 1e3);
            }
            t.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
            println!(
                "resnet18 224x224, {} thread(s): build {:.2} s (lowering {:.2} s, Cranelift {:.2} s), {} nodes -> {} kernels, intermediates {:.1} MiB -> {:.1} MiB, latency median {:.1} ms (min {:.1}, {} runs)",
                threads,
                build_s,
                lower_s,
                codegen_s,
                m.source_nodes(),
                m.num_kernels(),
                plan.unplanned_bytes as f64 / (1 << 20) as f64,
                plan.planned_bytes as f64 / (1 << 20) as f64,
                t[t.len() / 2],
                t[0],
                runs
            );
            Ok(())
        })?;
    }
    Ok(())
}
