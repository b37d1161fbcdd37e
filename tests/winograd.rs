//! Winograd F(2x2, 3x3) convolution: equal to the direct convolution up to rounding
//! (odd sizes with partial tiles, asymmetric padding, batch 2, both schedule modes, the
//! JIT and the interpreter), its golden IR, its errors, and the graph build choosing it.

mod common;
use common::*;
use loopforge::graph_runtime::ops::{conv2d, conv2d_winograd, winograd_weights_f23};
use loopforge::graph_runtime::{
    self, BuildOptions, Conv2dAttrs, Graph, Op, ScheduleKind, WeightLayout,
};
use loopforge::prelude::*;
use loopforge::schedules::{conv2d_winograd_cpu, conv2d_winograd_cpu_with, WinogradConfig};
use std::collections::HashMap;

fn dims(v: &[usize]) -> Vec<Expr> {
    v.iter().map(|&d| Expr::from(d as i64)).collect()
}

/// Direct and Winograd convolutions of one input: `(x, w, direct, u, winograd)`.
fn pair(xs: [usize; 4], o: usize, padding: [usize; 4]) -> [Tensor; 5] {
    let ws = [o, xs[1], 3, 3];
    let x = placeholder(&dims(&xs), DType::F32, "x");
    let w = placeholder(&dims(&ws), DType::F32, "w");
    let attrs = Conv2dAttrs {
        padding,
        ..Conv2dAttrs::default()
    };
    let (ho, wo) = (
        xs[2] + padding[0] + padding[2] - 2,
        xs[3] + padding[1] + padding[3] - 2,
    );
    let direct = conv2d(&x, &w, &xs, &ws, &attrs, &[xs[0], o, ho, wo]);
    let us = graph_runtime::ops::winograd_weight_shape(o, xs[1]);
    let u = placeholder(&dims(&us), DType::F32, "u");
    let wino = conv2d_winograd(&x, &xs, &u, &us, padding);
    [x, w, direct, u, wino]
}

fn run(s: &Schedule, args: &[Tensor], ins: &[&NdArray], target: Target) -> NdArray {
    let k = build(s, args, target).unwrap();
    let out = args.last().unwrap();
    let sh: Vec<usize> = out
        .shape()
        .iter()
        .map(|d| d.as_int().unwrap() as usize)
        .collect();
    let mut y = NdArray::zeros(&sh, DType::F32);
    k.run(ins, &mut [&mut y]).unwrap();
    y
}

#[test]
fn winograd_equals_direct_convolution() {
    for (xs, o, padding) in [
        ([2, 16, 9, 9], 32, [1, 1, 1, 1]), // odd output: the last tiles half outside
        ([1, 24, 8, 11], 16, [0, 1, 2, 0]), // asymmetric padding, no padding on one side
        ([1, 16, 6, 6], 16, [0, 0, 0, 0]), // no padding, 4x4 output
    ] {
        let [x, w, direct, u, wino] = pair(xs, o, padding);
        let xa = NdArray::random(&xs, DType::F32, 1);
        let wa = NdArray::random(&[o, xs[1], 3, 3], DType::F32, 2);
        let ua = winograd_weights_f23(&wa).unwrap();
        let dargs = [x.clone(), w, direct.clone()];
        let want = run(
            &create_schedule(&[direct]).unwrap(),
            &dargs,
            &[&xa, &wa],
            Target::cpu(),
        );
        let wargs = [x, u, wino.clone()];
        for per_row in [true, false] {
            for threads in [1, 2] {
                let cfg = WinogradConfig { per_row, threads };
                let s = conv2d_winograd_cpu_with(&wino, cfg).unwrap();
                for target in [Target::cpu(), Target::interp()] {
                    let got = run(&s, &wargs, &[&xa, &ua], target.clone());
                    assert_close(
                        &got,
                        &want,
                        &format!(
                            "{:?} o={} pad {:?} {:?} on {:?}",
                            xs, o, padding, cfg, target
                        ),
                    );
                }
            }
        }
        // The unscheduled Winograd computation agrees too.
        let plain = run(
            &create_schedule(&[wino]).unwrap(),
            &wargs,
            &[&xa, &ua],
            Target::interp(),
        );
        assert_close(&plain, &want, "unscheduled Winograd");
    }
}

#[test]
fn winograd_golden_ir_and_replay() {
    let [x, _, _, u, wino] = pair([1, 16, 6, 6], 16, [1, 1, 1, 1]);
    let args = [x.clone(), u.clone(), wino.clone()];
    let s = conv2d_winograd_cpu(&wino, 1).unwrap();
    let text = lower(&s, &args).unwrap().to_string();
    golden("winograd", &text);
    // The 16 channels are one slice of the reduction: each tile computed by one call.
    assert!(
        text.contains("gemm_f32_3x16x16(wino.v[") && !text.contains(".init("),
        "{}",
        text
    );
    let [x2, _, _, u2, wino2] = pair([1, 16, 6, 6], 16, [1, 1, 1, 1]);
    let replayed = Schedule::replay(&[wino2.clone()], &s.trace_json()).unwrap();
    assert_eq!(
        lower(&replayed, &[x2, u2, wino2]).unwrap().to_string(),
        text
    );
}

#[test]
fn default_mode_keeps_every_thread_busy() {
    // Per row of tiles from 7 tiles per row up, while there are rows for every thread.
    let per_row = |tiles, rows, threads| WinogradConfig::for_shape(tiles, rows, threads).per_row;
    assert!(per_row(28, 28, 16)); // 56x56 on 16 threads
    assert!(per_row(7, 7, 2)); // 14x14 on 2 threads
    assert!(!per_row(7, 7, 16)); // 14x14 on 16 threads: the whole image
    assert!(!per_row(4, 4, 1)); // 7x7: the whole image
                                // `of` reads the tiles and rows (and batch) off the computation.
    let [_, _, _, _, wino] = pair([2, 16, 14, 14], 16, [1, 1, 1, 1]);
    assert!(WinogradConfig::of(&wino, 14).unwrap().per_row); // 2 x 7 rows
    assert!(!WinogradConfig::of(&wino, 15).unwrap().per_row);
}

#[test]
fn winograd_errors() {
    // The schedule refuses a direct convolution, naming it.
    let [_, _, direct, _, wino] = pair([1, 16, 6, 6], 16, [1, 1, 1, 1]);
    let e = conv2d_winograd_cpu(&direct, 1).unwrap_err().to_string();
    assert!(e.contains("is not a Winograd convolution"), "{}", e);
    let bad = WinogradConfig {
        per_row: true,
        threads: 0,
    };
    let e = conv2d_winograd_cpu_with(&wino, bad)
        .unwrap_err()
        .to_string();
    assert!(e.contains("threads >= 1"), "{}", e);
    // The weight transform takes 3x3 kernels with output channels a multiple of 16.
    let e = winograd_weights_f23(&NdArray::zeros(&[16, 4, 5, 5], DType::F32))
        .unwrap_err()
        .to_string();
    assert!(e.contains("[O, C, 3, 3]"), "{}", e);
    // A graph convolution with a Winograd weight and stride 2 is a typed error.
    let mut g = Graph::new();
    let x = g.input("x", &[1, 16, 8, 8], DType::F32).unwrap();
    let w = g.param("w", &[16, 1, 16, 16]).unwrap();
    let attrs = Conv2dAttrs {
        stride: [2, 2],
        weight_layout: WeightLayout::Winograd23,
        ..Conv2dAttrs::default()
    };
    let e = g.conv2d("conv", x, w, attrs).unwrap_err().to_string();
    assert!(
        e.contains("conv") && e.contains("strides and dilations 1"),
        "{}",
        e
    );
}

/// conv (3x3, `c` -> 32 channels, stride `stride`) + bias + relu.
fn conv_graph(c: usize, stride: usize) -> (Graph, HashMap<String, NdArray>) {
    let mut g = Graph::new();
    let x = g.input("x", &[1, c, 10, 10], DType::F32).unwrap();
    let w = g.param("w", &[32, c, 3, 3]).unwrap();
    let b = g.param("b", &[32, 1, 1]).unwrap();
    let attrs = Conv2dAttrs {
        stride: [stride; 2],
        padding: [1; 4],
        ..Conv2dAttrs::default()
    };
    let y = g.conv2d("conv", x, w, attrs).unwrap();
    let y = g.add("bias", y, b).unwrap();
    let y = g.relu("relu", y).unwrap();
    g.output(y).unwrap();
    let mut p = HashMap::new();
    p.insert(
        "w".to_string(),
        NdArray::random(&[32, c, 3, 3], DType::F32, 3),
    );
    p.insert("b".to_string(), NdArray::random(&[32, 1, 1], DType::F32, 4));
    (g, p)
}

fn winograd_layout(m: &graph_runtime::CompiledModel) -> bool {
    m.graph().nodes().iter().any(|n| {
        let a = match &n.op {
            Op::Conv2d(a) => Some(a),
            Op::Fused(f) => match f.anchor.as_ref() {
                Op::Conv2d(a) => Some(a),
                _ => None,
            },
            _ => None,
        };
        a.is_some_and(|a| a.weight_layout == WeightLayout::Winograd23)
    })
}

#[test]
fn graph_build_chooses_winograd_where_it_applies() {
    for (c, stride, expect) in [(16, 1, true), (8, 1, false), (16, 2, false)] {
        let (g, p) = conv_graph(c, stride);
        let xa = NdArray::random(&[1, c, 10, 10], DType::F32, 5);
        let mut outs = vec![];
        for winograd in [true, false] {
            let opts = BuildOptions {
                winograd,
                ..BuildOptions::default()
            };
            let m = graph_runtime::build_with_options(
                &g,
                Target::cpu(),
                &p,
                2,
                ScheduleKind::Cpu,
                &opts,
                &mut |_, _, _| {},
            )
            .unwrap();
            assert_eq!(
                winograd_layout(&m),
                winograd && expect,
                "c={} stride={} winograd={}",
                c,
                stride,
                winograd
            );
            let mut ex = m.executor();
            ex.set_input("x", xa.clone()).unwrap();
            ex.run().unwrap();
            outs.push(ex.get_output(0).unwrap().clone());
            // A saved Winograd model loads and runs without the source graph.
            if winograd && expect {
                let dir = std::env::temp_dir().join(format!("lf_wino_{}", std::process::id()));
                std::fs::create_dir_all(&dir).unwrap();
                let path = dir.join("m.lfm");
                m.save(&path).unwrap();
                let loaded = graph_runtime::CompiledModel::load(&path).unwrap();
                let mut ex = loaded.executor();
                ex.set_input("x", xa.clone()).unwrap();
                ex.run().unwrap();
                assert_close(ex.get_output(0).unwrap(), &outs[0], "loaded Winograd model");
                std::fs::remove_dir_all(&dir).ok();
            }
        }
        assert_close(&outs[0], &outs[1], &format!("winograd vs direct, c={}", c));
    }
}
