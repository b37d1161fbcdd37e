//! Autotuning: the configurable conv2d template against the unscheduled computation, the
//! tuning log (parse, best, errors), the candidate spaces, a tuning run on a small graph
//! whose log a build then uses (results equal to the default build's, the configurations
//! kept by save/load), and the errors of a log that does not fit.
//!
//! Tolerance: tuned and default builds differ only in summation order; compared with
//! `common::assert_close` (`|got - want| <= 1e-4 + 1e-4 |want|`).

mod common;

use common::{assert_close, check_against_unscheduled};
use loopforge::autotune::{
    self, space, tuner, workload_key, TuneOptions, TunedConfig, TuningLog, TuningRecord,
};
use loopforge::graph_runtime::ops::conv2d;
use loopforge::graph_runtime::{
    self, schedule, BuildOptions, BuildSettings, CompiledModel, Conv2dAttrs, Graph, ScheduleKind,
};
use loopforge::prelude::*;
use loopforge::schedules::{self, ConvConfig, ConvKernel, ConvShape, MatmulConfig, WinogradConfig};
use std::collections::HashMap;

fn dims(v: &[usize]) -> Vec<Expr> {
    v.iter().map(|&d| Expr::from(d as i64)).collect()
}

/// A padded 3x3 convolution `[1, c, hw, hw] -> [1, o, hw, hw]`: (x, w, out).
fn conv(c: usize, o: usize, hw: usize, k: usize) -> (Tensor, Tensor, Tensor) {
    let xs = [1, c, hw, hw];
    let ws = [o, c, k, k];
    let x = placeholder(&dims(&xs), DType::F32, "x");
    let w = placeholder(&dims(&ws), DType::F32, "w");
    let attrs = Conv2dAttrs::same(1, k / 2);
    let out = conv2d(&x, &w, &xs, &ws, &attrs, &[1, o, hw, hw]);
    (x, w, out)
}

#[test]
fn conv_template_knobs_against_the_unscheduled_computation() {
    // Each kernel kind, row tiles that leave partial register blocks (5, 7 of 14),
    // channel slices below the channel count, rows parallel.
    let (x, w, out) = conv(12, 32, 14, 3);
    let args = [x, w, out.clone()];
    let shape = ConvShape::of(&out).unwrap();
    assert_eq!(
        (shape.in_channels, shape.out_channels, shape.kh, shape.width),
        (12, 32, 3, 14)
    );
    // `all_rows`: the accumulator holds the block's 14 rows, inside the taps' loops.
    let whole = "allocate out.local[float32, (3136)]";
    for (row_tile, kc, kernel, parallel_rows, all_rows, needle) in [
        (
            7,
            6,
            ConvKernel::PerTap,
            false,
            false,
            "gemm_f32_7x16x6.update(",
        ),
        (14, 4, ConvKernel::AllTaps, true, false, "x16x3x3x4"),
        (2, 12, ConvKernel::Window, false, false, "x16x12x3x3"),
        (
            14,
            12,
            ConvKernel::PerTap,
            true,
            false,
            "gemm_f32_14x16x12.update(",
        ),
        (7, 4, ConvKernel::PerTap, false, true, whole),
        (14, 6, ConvKernel::AllTaps, false, true, whole),
        (7, 12, ConvKernel::Window, false, true, whole),
    ] {
        let cfg = ConvConfig {
            row_tile,
            kc,
            kernel,
            parallel_rows,
            all_rows,
            fused_rows: false,
            threads: 2,
        };
        let s = schedules::conv2d_nchw_cpu_tensorized_with(&out, cfg).unwrap();
        let text = lower(&s, &args).unwrap().to_string();
        assert!(
            text.contains(needle),
            "{:?}: expected {}: {}",
            cfg,
            needle,
            text
        );
        check_against_unscheduled(&s, &args, &[out.clone()], 3, &format!("{:?}", cfg));
        let replayed = Schedule::replay(&[out.clone()], &s.trace_json()).unwrap();
        assert_eq!(lower(&replayed, &args).unwrap().to_string(), text);
    }
    // The default is `for_shape`'s.
    let d = schedules::conv2d_nchw_cpu_tensorized(&out, 2).unwrap();
    let e =
        schedules::conv2d_nchw_cpu_tensorized_with(&out, ConvConfig::for_shape(&shape, 2)).unwrap();
    assert_eq!(d.trace_json(), e.trace_json());
    // Knobs that do not fit: typed errors naming the knob.
    for (cfg, needle) in [
        (
            ConvConfig {
                row_tile: 5,
                ..ConvConfig::for_shape(&shape, 1)
            },
            "row_tile = 5 must be at least 1 and divide the output width 14",
        ),
        (
            ConvConfig {
                kc: 5,
                kernel: ConvKernel::PerTap,
                ..ConvConfig::for_shape(&shape, 1)
            },
            "kc = 5 must be at least 1 and divide the 12 input channels",
        ),
        (
            ConvConfig {
                threads: 0,
                ..ConvConfig::for_shape(&shape, 1)
            },
            "threads must be at least 1",
        ),
        (
            ConvConfig {
                all_rows: true,
                parallel_rows: true,
                ..ConvConfig::for_shape(&shape, 2)
            },
            "all_rows and fused_rows keep a channel block's rows in one task",
        ),
        (
            ConvConfig {
                fused_rows: true,
                parallel_rows: false,
                ..ConvConfig::for_shape(&shape, 1)
            },
            "fused_rows fuses output positions across rows, which needs a 1x1 kernel at stride 1 without padding (this one is 3x3)",
        ),
    ] {
        let e = schedules::conv2d_nchw_cpu_tensorized_with(&out, cfg).unwrap_err();
        assert!(matches!(e, Error::InvalidExpr(_)), "{:?}", e);
        assert!(e.to_string().contains(needle), "{}", e);
    }
}

#[test]
fn conv_template_fuses_a_1x1_kernels_positions_across_rows() {
    // 7x7 positions (49) in tiles of 6 and 12 across rows, the last partial; the default
    // for such a layer. Channel slices of 8 (accumulated) and all 24 channels.
    let (x, w, out) = conv(24, 32, 7, 1);
    let args = [x, w, out.clone()];
    let shape = ConvShape::of(&out).unwrap();
    assert!(shape.unit_stride);
    // One thread: two blocks of 16 channels are enough tasks, the rows stay inside.
    let d = ConvConfig::for_shape(&shape, 1);
    assert!(d.fused_rows && d.row_tile == 6, "{:?}", d);
    for (row_tile, kc) in [(6, 24), (12, 8), (5, 24)] {
        let cfg = ConvConfig { row_tile, kc, ..d };
        let s = schedules::conv2d_nchw_cpu_tensorized_with(&out, cfg).unwrap();
        let text = lower(&s, &args).unwrap().to_string();
        // One call per tile of positions: ceil(49 / row_tile) of them per channel block.
        assert!(
            text.contains(&format!("gemm_f32_{}x16x{}", row_tile, kc))
                && text.contains(&format!("in range({})", (49 + row_tile - 1) / row_tile)),
            "{:?}: {}",
            cfg,
            text
        );
        check_against_unscheduled(&s, &args, &[out.clone()], 4, &format!("{:?}", cfg));
        let replayed = Schedule::replay(&[out.clone()], &s.trace_json()).unwrap();
        assert_eq!(lower(&replayed, &args).unwrap().to_string(), text);
    }
}

fn record(workload: &str, threads: usize, us: f64, mr: i64) -> TuningRecord {
    TuningRecord {
        workload: workload.into(),
        op: "matmul".into(),
        target: "cpu".into(),
        threads,
        config: TunedConfig::Matmul(MatmulConfig {
            mr,
            ..MatmulConfig::default()
        }),
        median_us: us,
        default_us: 10.0,
    }
}

#[test]
fn tuning_log_lines_best_and_errors() {
    let mut log = TuningLog::new();
    log.push(record("a", 1, 5.0, 1));
    log.push(record("a", 1, 3.0, 2));
    log.push(record("a", 2, 1.0, 3));
    log.push(record("b", 1, 2.0, 4));
    let text = log.to_text();
    assert_eq!(text.lines().count(), 4);
    // Blank lines are skipped; the parse gives back the same records.
    let parsed = TuningLog::parse(&format!("\n{}\n", text), "t.log").unwrap();
    assert_eq!(parsed, log);
    let best = parsed.best("a", "cpu", 1).unwrap();
    assert_eq!(best.median_us, 3.0);
    assert_eq!(parsed.best("a", "cpu", 2).unwrap().median_us, 1.0);
    assert!(parsed.best("a", "cuda", 1).is_none());
    assert!(parsed.best("c", "cpu", 1).is_none());

    // Appending to a file, then loading it.
    let path = std::env::temp_dir().join(format!("loopforge_tune_{}.log", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let mut on_disk = TuningLog::load_or_new(&path).unwrap();
    assert!(on_disk.records().is_empty());
    on_disk.append(&path, record("a", 1, 4.0, 1)).unwrap();
    on_disk.append(&path, record("a", 1, 2.0, 2)).unwrap();
    let loaded = TuningLog::load(&path).unwrap();
    assert_eq!(loaded, on_disk);
    assert_eq!(loaded.best("a", "cpu", 1).unwrap().median_us, 2.0);
    std::fs::remove_file(&path).unwrap();

    // Errors name the file and line.
    let first = text.lines().next().unwrap();
    let e = TuningLog::parse(&format!("{}\nnot json\n", first), "t.log").unwrap_err();
    assert!(matches!(e, Error::Tuning(_)), "{:?}", e);
    assert!(
        e.to_string().contains("t.log:2: not a tuning record"),
        "{}",
        e
    );
    let e = TuningLog::parse(
        &first
            .replace("\"median_us\":3.0", "\"median_us\":-1.0")
            .replace("\"median_us\":5.0", "\"median_us\":-1.0"),
        "t.log",
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("t.log:1: median_us = -1 is not a positive time"),
        "{}",
        e
    );
    let e = TuningLog::load(&path).unwrap_err();
    assert!(
        e.to_string().contains("cannot read the tuning log"),
        "{}",
        e
    );
}

/// conv(16 -> 16, 3x3, 12x12) + bias + relu, a 3-channel 5x5 stem conv before it, and a
/// dense layer of 4 rows: three tunable workloads; a max pool that has none.
fn small_graph() -> (Graph, HashMap<String, NdArray>) {
    let mut g = Graph::new();
    let mut ps = HashMap::new();
    let x = g.input("x", &[1, 3, 12, 12], DType::F32).unwrap();
    let mut param = |g: &mut Graph, name: &str, shape: &[usize], seed| {
        ps.insert(name.to_string(), NdArray::random(shape, DType::F32, seed));
        g.param(name, shape).unwrap()
    };
    let w0 = param(&mut g, "w0", &[16, 3, 5, 5], 1);
    let c0 = g.conv2d("stem", x, w0, Conv2dAttrs::same(1, 2)).unwrap();
    let r0 = g.relu("stem_relu", c0).unwrap();
    let w1 = param(&mut g, "w1", &[16, 16, 3, 3], 2);
    let b1 = param(&mut g, "b1", &[1, 16, 1, 1], 3);
    let c1 = g.conv2d("conv1", r0, w1, Conv2dAttrs::same(1, 1)).unwrap();
    let c1 = g.add("conv1_bias", c1, b1).unwrap();
    let r1 = g.relu("conv1_relu", c1).unwrap();
    let p = g
        .max_pool2d(
            "pool",
            r1,
            loopforge::graph_runtime::Pool2dAttrs::new(2, 2, 0),
        )
        .unwrap();
    let f = g.reshape("rows", p, &[4, 144]).unwrap();
    let wd = param(&mut g, "wd", &[24, 144], 4);
    let y = g.dense("fc", f, wd, None).unwrap();
    g.output(y).unwrap();
    (g, ps)
}

fn run(m: &CompiledModel, x: &NdArray) -> NdArray {
    let mut ex = m.executor();
    ex.set_input("x", x.clone()).unwrap();
    ex.run().unwrap();
    ex.get_output(0).unwrap().clone()
}

fn build_tuned(
    g: &Graph,
    ps: &HashMap<String, NdArray>,
    target: Target,
    threads: usize,
    log: Option<&TuningLog>,
) -> Result<CompiledModel> {
    graph_runtime::build_with_settings(
        g,
        target,
        ps,
        &BuildSettings {
            threads,
            kind: ScheduleKind::Cpu,
            options: BuildOptions::default(),
            tuning: log,
        },
        &mut |_, _, _| {},
    )
}

#[test]
fn default_configs_are_the_default_schedules() {
    // For every node of the passed graph with knobs, the template with its default knobs
    // is exactly the default schedule (so the tuner's baseline is what a build runs).
    let (g, ps) = small_graph();
    for threads in [1, 2] {
        let m = graph_runtime::build(&g, Target::cpu(), &ps, threads).unwrap();
        let passed = m.graph();
        let mut tunable = vec![];
        for n in passed.nodes() {
            let (_, out) = graph_runtime::node_computation(passed, n).unwrap();
            let Some(cfg) = schedule::default_config(&n.op, &out, threads) else {
                continue;
            };
            tunable.push(cfg.template());
            let want = schedule::default_schedule(&n.op, &out, threads).unwrap();
            let got = schedule::tuned_schedule(&n.op, &out, threads, &cfg).unwrap();
            assert_eq!(got.trace_json(), want.trace_json(), "{}", n.name);
        }
        assert_eq!(
            tunable,
            ["conv2d", "winograd", "matmul"],
            "{} threads",
            threads
        );
    }
}

#[test]
fn candidate_spaces() {
    let (g, ps) = small_graph();
    let m = graph_runtime::build(&g, Target::cpu(), &ps, 2).unwrap();
    let passed = m.graph();
    let mut sizes = vec![];
    for n in passed.nodes() {
        let Some(w) = autotune::workload::workload(passed, n, 2).unwrap() else {
            continue;
        };
        assert_eq!(w.key, workload_key(passed, n));
        let c = space::candidates(&w).unwrap();
        assert_eq!(c[0], w.default, "{}: the default comes first", w.node);
        for (i, a) in c.iter().enumerate() {
            assert!(!c[i + 1..].contains(a), "{}: {} twice", w.node, a);
            if let (TunedConfig::Conv2d(cc), Ok(shape)) = (a, ConvShape::of(&w.out)) {
                cc.check(&shape).unwrap();
            }
        }
        sizes.push((w.op, c.len()));
    }
    // The stem (3 channels, 12 wide, 2 threads): row tiles 12, 6, 4, 3 x (Window + 2
    // kernels x kc 3, 1) x 3 row options (in the task, parallel, all in one accumulator);
    // conv1 (3x3, 16 channels: Winograd): per row of tiles or the whole image; the dense
    // of 4 x 24: mr 1, 2, 3, 4 x nr 4, 8, 12, 16 but not 4 x 16 (16 accumulators) x
    // unroll 1, 2, 4.
    assert_eq!(sizes, [("conv2d", 60), ("conv2d", 2), ("dense", 45)]);
}

#[test]
fn tune_a_graph_then_build_with_its_log() {
    let (g, ps) = small_graph();
    let x = NdArray::random(&[1, 3, 12, 12], DType::F32, 5);
    let want = run(
        &graph_runtime::build(&g, Target::cpu(), &ps, 2).unwrap(),
        &x,
    );
    let path = std::env::temp_dir().join(format!("loopforge_tuned_{}.log", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let mut log = TuningLog::new();
    let opts = TuneOptions {
        threads: 2,
        trials: 6,
        repeats: 2,
        ..TuneOptions::default()
    };
    let mut events = vec![];
    let report = tuner::tune_graph(&g, &ps, &opts, &mut log, Some(&path), &mut |e| {
        events.push(match e {
            tuner::TuneEvent::Start { index, count, .. } => format!("start {}/{}", index, count),
            tuner::TuneEvent::Done(r) => format!("done {}", r.node),
        })
    })
    .unwrap();
    assert_eq!(report.workloads.len(), 3);
    assert_eq!(events.len(), 6);
    for r in &report.workloads {
        assert!(r.rejected.is_empty(), "{}: {:?}", r.node, r.rejected);
        // conv1 (Winograd) has two candidates only.
        let space = if r.node == "conv1_relu" { 2 } else { 6 };
        assert_eq!(r.tried, space, "{}", r.node);
        assert!(r.best_us <= r.default_us && r.best_us > 0.0, "{:?}", r);
    }
    // One record per workload, in the file too.
    assert_eq!(log.records().len(), 3);
    assert_eq!(TuningLog::load(&path).unwrap(), log);

    // A second run finds them in the log and measures nothing.
    let again = tuner::tune_graph(&g, &ps, &opts, &mut log, None, &mut |_| {}).unwrap();
    assert!(again.workloads.iter().all(|r| r.tried == 0));
    assert_eq!(log.records().len(), 3);

    // The build takes each node's best configuration; same results as the default build.
    let m = build_tuned(&g, &ps, Target::cpu(), 2, Some(&log)).unwrap();
    let tuned: Vec<TunedConfig> = (0..m.num_kernels())
        .filter_map(|i| m.tuned_config(i).copied())
        .collect();
    let best: Vec<TunedConfig> = report.workloads.iter().map(|r| r.best).collect();
    assert_eq!(tuned, best);
    assert_close(&run(&m, &x), &want, "tuned build");
    // For another thread count the log has nothing: every node default.
    let m1 = build_tuned(&g, &ps, Target::cpu(), 1, Some(&log)).unwrap();
    assert!((0..m1.num_kernels()).all(|i| m1.tuned_config(i).is_none()));

    // Saved and loaded: same schedules, same configurations, same results.
    let bytes = m.to_bytes().unwrap();
    let loaded = CompiledModel::from_bytes(&bytes, "tuned.lfm").unwrap();
    for i in 0..m.num_kernels() {
        assert_eq!(loaded.tuned_config(i), m.tuned_config(i));
    }
    assert_close(&run(&loaded, &x), &want, "tuned build, saved and loaded");
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn a_logged_configuration_is_what_the_build_runs() {
    // A log written by hand with non-default knobs for each workload: the kernels' IR
    // shows them, and the interpreter and the JIT agree with the untuned build.
    let (g, ps) = small_graph();
    let x = NdArray::random(&[1, 3, 12, 12], DType::F32, 6);
    let want = run(
        &graph_runtime::build(&g, Target::interp(), &ps, 1).unwrap(),
        &x,
    );
    let plain = graph_runtime::build(&g, Target::cpu(), &ps, 2).unwrap();
    let passed = plain.graph();
    let mut log = TuningLog::new();
    let mut needles = vec![];
    for n in passed.nodes() {
        let Some(w) = autotune::workload::workload(passed, n, 2).unwrap() else {
            continue;
        };
        let (config, needle) = match w.default {
            TunedConfig::Conv2d(d) => (
                TunedConfig::Conv2d(ConvConfig {
                    row_tile: 4,
                    kc: if d.kernel == ConvKernel::Window {
                        d.kc
                    } else {
                        8
                    },
                    kernel: ConvKernel::PerTap,
                    ..d
                }),
                if d.kernel == ConvKernel::Window {
                    "gemm_f32_4x16x3.update(".to_string()
                } else {
                    "gemm_f32_4x16x8.update(".to_string()
                },
            ),
            TunedConfig::Matmul(d) => (
                TunedConfig::Matmul(MatmulConfig {
                    mr: 2,
                    nr: 12,
                    k_unroll: 4,
                    ..d
                }),
                "12".to_string(),
            ),
            // conv1 (16 -> 16 channels, 3x3, 6x6 tiles): the transformed tiles of one row
            // (16 x 16 x 6) or of the whole image (16 x 16 x 36).
            TunedConfig::Winograd(d) => (
                TunedConfig::Winograd(WinogradConfig {
                    per_row: !d.per_row,
                    ..d
                }),
                format!(
                    "allocate wino.v[float32, ({})]",
                    if d.per_row { 9216 } else { 1536 }
                ),
            ),
        };
        log.push(TuningRecord {
            workload: w.key.clone(),
            op: w.op.into(),
            target: "cpu".into(),
            threads: 2,
            config,
            median_us: 1.0,
            default_us: 2.0,
        });
        needles.push(needle);
    }
    for target in [Target::interp(), Target::cpu()] {
        let m = build_tuned(&g, &ps, target.clone(), 2, Some(&log)).unwrap();
        let mut k = 0;
        for i in 0..m.num_kernels() {
            if m.tuned_config(i).is_some() {
                let ir = m.kernel(i).lowered().to_string();
                assert!(ir.contains(&needles[k]), "expected {}: {}", needles[k], ir);
                k += 1;
            }
        }
        assert_eq!(k, 3);
        assert_close(
            &run(&m, &x),
            &want,
            &format!("hand-tuned build on {:?}", target),
        );
    }
}

#[test]
fn a_log_that_does_not_fit_is_an_error() {
    let (g, ps) = small_graph();
    let plain = graph_runtime::build(&g, Target::cpu(), &ps, 1).unwrap();
    let passed = plain.graph();
    let conv1 = passed
        .nodes()
        .iter()
        .find(|n| {
            autotune::workload::workload(passed, n, 1)
                .unwrap()
                .is_some_and(|w| w.op == "conv2d" && w.node != "stem")
        })
        .unwrap();
    let w = autotune::workload::workload(passed, conv1, 1)
        .unwrap()
        .unwrap();
    let TunedConfig::Conv2d(d) = w.default else {
        panic!("conv1 is a conv2d workload")
    };
    for (config, needle) in [
        (
            TunedConfig::Conv2d(ConvConfig { row_tile: 5, ..d }),
            "row_tile = 5 must be at least 1 and divide the output width 12",
        ),
        (
            TunedConfig::Matmul(MatmulConfig::default()),
            "a tuned matmul configuration does not apply to a fused node",
        ),
    ] {
        let mut log = TuningLog::new();
        log.push(TuningRecord {
            workload: w.key.clone(),
            op: "conv2d".into(),
            target: "cpu".into(),
            threads: 1,
            config,
            median_us: 1.0,
            default_us: 1.0,
        });
        let Err(e) = build_tuned(&g, &ps, Target::cpu(), 1, Some(&log)) else {
            panic!("a build with {} should fail", config)
        };
        let text = e.to_string();
        assert!(matches!(e, Error::Graph { .. }), "{:?}", e);
        assert!(text.contains(&conv1.name), "{}", text);
        assert!(text.contains("the logged configuration"), "{}", text);
        assert!(text.contains(needle), "{}", text);
    }
}
