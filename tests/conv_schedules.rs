//! The depthwise convolution schedule (`schedules::conv2d_depthwise_cpu`), the pointwise
//! one (`schedules::conv2d_pointwise_cpu`) and the register-blocked one
//! (`schedules::conv2d_nchw_cpu_blocked`): equal to the unscheduled
//! computation on the interpreter and the JIT (row widths that are not a multiple of the
//! vector chunk, channel counts no tile divides, stride 2, no padding, a 5x5 window, a
//! channel multiplier, batch 2, a fused bias + relu, one thread and two), their golden
//! IR, trace replay, and their errors; and the graph runtime choosing them.

mod common;
use common::*;
use loopforge::graph_runtime::ops::conv2d;
use loopforge::graph_runtime::{self, Conv2dAttrs, Graph};
use loopforge::prelude::*;
use loopforge::schedule::Step;
use loopforge::schedules::{conv2d_depthwise_cpu, conv2d_nchw_cpu_blocked, conv2d_pointwise_cpu};

fn dims(v: &[usize]) -> Vec<Expr> {
    v.iter().map(|&d| Expr::from(d as i64)).collect()
}

/// A grouped convolution of an `xs` input into `o` channels with a `k x k` window:
/// `(x, w, out)`.
fn grouped(
    xs: [usize; 4],
    o: usize,
    k: usize,
    stride: usize,
    pad: usize,
    groups: usize,
) -> [Tensor; 3] {
    let ws = [o, xs[1] / groups, k, k];
    let attrs = Conv2dAttrs {
        stride: [stride; 2],
        padding: [pad; 4],
        groups,
        ..Conv2dAttrs::default()
    };
    let oh = (xs[2] + 2 * pad - k) / stride + 1;
    let ow = (xs[3] + 2 * pad - k) / stride + 1;
    let x = placeholder(&dims(&xs), DType::F32, "x");
    let w = placeholder(&dims(&ws), DType::F32, "w");
    let out = conv2d(&x, &w, &xs, &ws, &attrs, &[xs[0], o, oh, ow]);
    [x, w, out]
}

/// A depthwise convolution (one group per input channel).
fn depthwise(xs: [usize; 4], k: usize, stride: usize, pad: usize) -> [Tensor; 3] {
    grouped(xs, xs[1], k, stride, pad, xs[1])
}

#[test]
fn depthwise_equals_the_unscheduled_convolution() {
    for (xs, k, stride, pad, what) in [
        (
            [1, 3, 14, 14],
            3,
            1,
            1,
            "14 wide: two chunks of 8, the second shifted inwards",
        ),
        (
            [2, 2, 7, 9],
            3,
            1,
            1,
            "batch 2, 9 wide: two chunks of 8, the second shifted inwards",
        ),
        (
            [1, 4, 9, 40],
            3,
            1,
            1,
            "40 wide: chunks of 16 and a tail of 8",
        ),
        (
            [1, 3, 10, 20],
            3,
            1,
            1,
            "two rows at a time, 20 wide: chunks of 8 and a guarded tail of 4",
        ),
        (
            [2, 2, 6, 18],
            3,
            1,
            1,
            "two rows at a time, 18 wide: the last chunk of 8 shifted inwards",
        ),
        ([1, 3, 11, 21], 3, 2, 1, "stride 2, odd sizes"),
        (
            [1, 3, 12, 18],
            3,
            2,
            1,
            "stride 2, even padded width (columns deinterleaved): two chunks of 8, the second shifted inwards",
        ),
        (
            [2, 4, 16, 38],
            3,
            2,
            1,
            "stride 2, batch 2, deinterleaved: a chunk of 16 and a tail of 3",
        ),
        (
            [1, 2, 14, 14],
            5,
            2,
            2,
            "stride 2, 5x5 window, deinterleaved: seven rows of 4 at a time",
        ),
        ([1, 2, 8, 12], 3, 1, 0, "no padding"),
        ([1, 2, 11, 11], 5, 1, 0, "5x5 window, no padding: seven rows of 4 at a time"),
        (
            [1, 2, 13, 13],
            5,
            1,
            2,
            "5x5 window, 13 rows (prime): one row of 8 at a time",
        ),
        (
            [1, 2, 10, 10],
            5,
            1,
            2,
            "5x5 window: two rows of 8 at a time",
        ),
        (
            [1, 3, 7, 7],
            5,
            1,
            2,
            "5x5 window, 7 x 7: seven rows of 4 at a time, the last chunk shifted",
        ),
        (
            [2, 2, 9, 9],
            5,
            1,
            2,
            "5x5 window, 9 wide: three rows of 8 at a time, the second chunk shifted inwards",
        ),
        (
            [1, 2, 12, 5],
            5,
            1,
            2,
            "5x5 window, 5 wide: six rows of 4 at a time, the second chunk shifted inwards",
        ),
        ([1, 5, 3, 3], 3, 1, 1, "3 wide: no whole vector"),
    ] {
        let [x, w, out] = depthwise(xs, k, stride, pad);
        let args = [x, w, out.clone()];
        for threads in [1, 2] {
            let s = conv2d_depthwise_cpu(&out, threads).unwrap();
            check_against_unscheduled(
                &s,
                &args,
                &[out.clone()],
                3,
                &format!("depthwise {} on {} threads", what, threads),
            );
        }
    }
}

#[test]
fn depthwise_with_a_channel_multiplier_and_a_fused_epilogue() {
    // Two output channels per input channel.
    let [x, w, out] = grouped([1, 3, 9, 13], 6, 3, 1, 1, 3);
    let args = [x.clone(), w.clone(), out.clone()];
    let s = conv2d_depthwise_cpu(&out, 2).unwrap();
    check_against_unscheduled(&s, &args, &[out.clone()], 4, "depthwise multiplier 2");
    // relu(conv + bias[c]), as the graph's fusion builds it; also with a 5x5 window over
    // 7 x 7 planes (seven rows at a time).
    for (xs, k, pad, seed, what) in [
        ([1, 3, 9, 13], 3, 1, 5, "depthwise + bias + relu"),
        (
            [1, 3, 7, 7],
            5,
            2,
            6,
            "depthwise 5x5, multiplier 2, + bias + relu",
        ),
    ] {
        let [x, w, out] = grouped(xs, 6, k, 1, pad, 3);
        let b = placeholder(&[Expr::from(6)], DType::F32, "b");
        let fused = compute(out.shape(), "fused", |i| {
            max(out.at(i) + b.at(&[i[1].clone()]), Expr::from(0.0f32))
        });
        let args = [x, w, b, fused.clone()];
        let s = conv2d_depthwise_cpu(&fused, 2).unwrap();
        check_against_unscheduled(&s, &args, &[fused], seed, what);
    }
}

#[test]
fn depthwise_golden_ir_and_replay() {
    let [x, w, out] = depthwise([1, 2, 9, 9], 3, 1, 1);
    let args = [x, w, out.clone()];
    golden_and_replay(
        "depthwise_conv2d",
        &conv2d_depthwise_cpu(&out, 2).unwrap(),
        &out,
        &args,
    );
    // A 5x5 window over rows of 7: all seven rows of 4 positions at a time (seven
    // independent accumulators), the second chunk shifted inwards.
    let [x, w, out] = depthwise([1, 2, 7, 7], 5, 1, 2);
    let args = [x, w, out.clone()];
    golden_and_replay(
        "depthwise_conv2d_5x5_rows",
        &conv2d_depthwise_cpu(&out, 2).unwrap(),
        &out,
        &args,
    );
    // 7 x 7 planes over 8 channels: channels in vectors, blocks of 4.
    let [x, w, out] = depthwise([1, 8, 7, 7], 5, 1, 2);
    let args = [x, w, out.clone()];
    golden_and_replay(
        "depthwise_conv2d_7x7_channels",
        &conv2d_depthwise_cpu(&out, 2).unwrap(),
        &out,
        &args,
    );
    // Stride 1, 16 wide, an even height: two rows of 8 positions at a time.
    let [x, w, out] = depthwise([1, 2, 4, 16], 3, 1, 1);
    let args = [x, w, out.clone()];
    golden_and_replay(
        "depthwise_conv2d_two_rows",
        &conv2d_depthwise_cpu(&out, 2).unwrap(),
        &out,
        &args,
    );
    // Stride 2 over an even padded width: the padded plane holds the even columns, then
    // the odd ones, so every tap of a row is a contiguous vector.
    let [x, w, out] = depthwise([1, 2, 10, 14], 3, 2, 1);
    let args = [x, w, out.clone()];
    golden_and_replay(
        "depthwise_conv2d_stride2",
        &conv2d_depthwise_cpu(&out, 2).unwrap(),
        &out,
        &args,
    );
}

/// Whether `s` computes the depthwise convolution with channels in the vectors (its
/// weights copied per block of 4 channels into a `local` cache).
fn channels_in_vectors(s: &Schedule) -> bool {
    s.stages.iter().any(|st| st.name == "w.local")
}

#[test]
fn depthwise_small_planes_put_channels_in_vectors() {
    // Shape, window, stride, padding, whether channels go in the vectors.
    for (xs, k, stride, pad, taken, what) in [
        ([1, 8, 7, 7], 3, 1, 1, true, "7 x 7, 3x3"),
        ([1, 12, 7, 7], 5, 1, 2, true, "7 x 7, 5x5"),
        (
            [1, 8, 14, 14],
            5,
            1,
            2,
            true,
            "14 x 14, 5x5: rows in two parts of 7",
        ),
        (
            [2, 4, 13, 13],
            5,
            2,
            2,
            true,
            "5x5, stride 2 to 7 x 7, batch 2",
        ),
        ([1, 8, 14, 14], 5, 2, 2, true, "5x5, stride 2"),
        ([2, 4, 13, 13], 3, 2, 1, false, "3x3, stride 2 to 7 wide"),
        ([1, 4, 14, 14], 3, 1, 1, true, "3x3, 14 wide"),
        ([1, 4, 27, 28], 3, 2, 1, true, "3x3, stride 2 to 14 wide"),
        (
            [1, 4, 6, 20],
            5,
            1,
            2,
            true,
            "5x5 over 20-wide rows: parts of 4",
        ),
        (
            [1, 8, 5, 112],
            3,
            2,
            1,
            true,
            "3x3, stride 2 to 56 wide: parts of 4",
        ),
        ([1, 4, 5, 56], 3, 2, 1, false, "3x3, stride 2 to 28 wide"),
        ([1, 4, 4, 16], 3, 1, 1, false, "3x3 over 16-wide rows"),
        ([1, 4, 5, 5], 3, 1, 1, true, "5 wide"),
        ([1, 8, 6, 4], 3, 1, 1, true, "4 wide, 6 high"),
        ([1, 4, 14, 9], 3, 1, 1, false, "9 wide"),
        ([1, 4, 9, 6], 3, 1, 0, false, "no padding stage"),
    ] {
        let [x, w, out] = depthwise(xs, k, stride, pad);
        let args = [x, w, out.clone()];
        for threads in [1, 2] {
            let s = conv2d_depthwise_cpu(&out, threads).unwrap();
            let what = format!("depthwise {} on {} threads", what, threads);
            assert_eq!(channels_in_vectors(&s), taken, "{}", what);
            check_against_unscheduled(&s, &args, &[out.clone()], 7, &what);
        }
    }
    // Rows of 8 and more, channels 4 does not divide, a channel multiplier: positions in
    // vectors, as before.
    for (xs, o, what) in [
        ([1, 8, 8, 8], 8, "8 wide"),
        ([1, 6, 7, 7], 6, "6 channels"),
        ([1, 4, 7, 7], 8, "multiplier 2"),
    ] {
        let [x, w, out] = grouped(xs, o, 3, 1, 1, xs[1]);
        let s = conv2d_depthwise_cpu(&out, 2).unwrap();
        assert!(!channels_in_vectors(&s), "{}", what);
        check_against_unscheduled(&s, &[x, w, out.clone()], &[out.clone()], 8, what);
    }
    // relu(conv + bias[c]): the epilogue applied as the rows are copied out.
    let [x, w, out] = depthwise([1, 8, 7, 7], 5, 1, 2);
    let b = placeholder(&[Expr::from(8)], DType::F32, "b");
    let fused = compute(out.shape(), "fused", |i| {
        max(out.at(i) + b.at(&[i[1].clone()]), Expr::from(0.0f32))
    });
    let s = conv2d_depthwise_cpu(&fused, 2).unwrap();
    assert!(channels_in_vectors(&s));
    check_against_unscheduled(&s, &[x, w, b, fused.clone()], &[fused], 9, "+ bias + relu");
}

#[test]
fn depthwise_rejects_other_computations() {
    // Two input channels per group: not depthwise.
    let [_, _, out] = grouped([1, 4, 8, 8], 4, 3, 1, 1, 2);
    let e = conv2d_depthwise_cpu(&out, 1).unwrap_err().to_string();
    assert!(
        e.contains("conv2d_depthwise_cpu: out is not a depthwise 2-D convolution"),
        "{}",
        e
    );
    let (_, _, c) = matmul(8, 8, 8);
    let e = conv2d_depthwise_cpu(&c, 1).unwrap_err().to_string();
    assert!(e.contains("is not a depthwise 2-D convolution"), "{}", e);
    let a = placeholder(&[Expr::from(4)], DType::F32, "a");
    let y = compute(a.shape(), "y", |i| a.at(i) * Expr::from(2.0f32));
    let e = conv2d_depthwise_cpu(&y, 1).unwrap_err().to_string();
    assert!(
        e.contains("reads 0 reductions, not one convolution"),
        "{}",
        e
    );
}

/// A graph of one convolution `conv2d(x, w, attrs)` (input shape `xs`, weight shape
/// `ws`), followed by a relu when `relu`, through [`build_both`] on random data.
fn one_conv(xs: [usize; 4], ws: [usize; 4], attrs: Conv2dAttrs, relu: bool) -> Vec<Step> {
    let mut g = Graph::new();
    let x = g.input("x", &xs, DType::F32).unwrap();
    let w = g.param("w", &ws).unwrap();
    let mut y = g.conv2d("conv", x, w, attrs).unwrap();
    if relu {
        y = g.relu("relu", y).unwrap();
    }
    g.output(y).unwrap();
    build_both(
        &g,
        &NdArray::random(&ws, DType::F32, 2),
        &NdArray::random(&xs, DType::F32, 1),
    )
}

/// The graph built with CPU schedules on 2 threads for the JIT and for the interpreter:
/// node 0's schedule trace, and the outputs of both (checked equal) for input `x`.
fn build_both(g: &Graph, w: &NdArray, x: &NdArray) -> Vec<Step> {
    let mut params = std::collections::HashMap::new();
    params.insert("w".to_string(), w.clone());
    let mut outs = vec![];
    let mut steps = vec![];
    for target in [Target::cpu(), Target::interp()] {
        let model =
            graph_runtime::build_with(g, target, &params, 2, graph_runtime::ScheduleKind::Cpu)
                .unwrap();
        steps = loopforge::schedule::from_json(model.schedule_trace(0).unwrap()).unwrap();
        let mut ex = model.executor();
        ex.set_input("x", x.clone()).unwrap();
        ex.run().unwrap();
        outs.push(ex.get_output(0).unwrap().clone());
    }
    assert_close(&outs[0], &outs[1], "graph: JIT vs interpreter");
    steps
}

#[test]
fn graph_depthwise_layer_uses_the_depthwise_schedule() {
    let attrs = Conv2dAttrs {
        groups: 16,
        ..Conv2dAttrs::same(1, 1)
    };
    let steps = one_conv([1, 16, 20, 20], [16, 1, 3, 3], attrs, true);
    // The padded plane of each channel is built in the channel loop.
    assert!(
        steps
            .iter()
            .any(|s| matches!(s, Step::ComputeAt { stage, .. } if stage == "pad")),
        "{:?}",
        steps
    );
}

#[test]
fn blocked_equals_the_unscheduled_convolution() {
    for (xs, o, k, stride, pad, what) in [
        ([1, 16, 12, 12], 96, 1, 1, 0, "1x1, 16 -> 96 (tiles of 4)"),
        (
            [1, 6, 9, 13],
            5,
            1,
            1,
            0,
            "1x1, 5 output channels: a partial channel tile",
        ),
        (
            [2, 3, 10, 11],
            9,
            3,
            1,
            1,
            "3x3 padded, batch 2, 11 wide (a partial column tile)",
        ),
        ([1, 4, 13, 17], 6, 3, 2, 1, "3x3 stride 2"),
        ([1, 2, 8, 4], 2, 1, 1, 0, "a row of one vector"),
    ] {
        let [x, w, out] = grouped(xs, o, k, stride, pad, 1);
        let args = [x, w, out.clone()];
        for threads in [1, 2] {
            let s = conv2d_nchw_cpu_blocked(&out, threads).unwrap();
            check_against_unscheduled(
                &s,
                &args,
                &[out.clone()],
                6,
                &format!("blocked {} on {} threads", what, threads),
            );
        }
    }
    // relu(conv + bias[c]).
    let [x, w, out] = grouped([1, 8, 6, 10], 12, 1, 1, 0, 1);
    let b = placeholder(&[Expr::from(12)], DType::F32, "b");
    let fused = compute(out.shape(), "fused", |i| {
        max(out.at(i) + b.at(&[i[1].clone()]), Expr::from(0.0f32))
    });
    let args = [x, w, b, fused.clone()];
    let s = conv2d_nchw_cpu_blocked(&fused, 2).unwrap();
    check_against_unscheduled(&s, &args, &[fused], 7, "blocked + bias + relu");
}

#[test]
fn blocked_golden_ir_and_replay() {
    let [x, w, out] = grouped([1, 3, 4, 12], 8, 1, 1, 0, 1);
    let args = [x, w, out.clone()];
    golden_and_replay(
        "conv2d_blocked",
        &conv2d_nchw_cpu_blocked(&out, 2).unwrap(),
        &out,
        &args,
    );
}

#[test]
fn blocked_rejects_other_computations() {
    let [_, _, out] = grouped([1, 2, 6, 3], 4, 1, 1, 0, 1);
    let e = conv2d_nchw_cpu_blocked(&out, 1).unwrap_err().to_string();
    assert!(
        e.contains("conv2d_nchw_cpu_blocked: out has 3 output columns; the tiles need at least 4"),
        "{}",
        e
    );
    let (_, _, c) = matmul(8, 8, 8);
    let e = conv2d_nchw_cpu_blocked(&c, 1).unwrap_err().to_string();
    assert!(e.contains("is not a 2-D NCHW convolution"), "{}", e);
    let a = placeholder(&[Expr::from(4)], DType::F32, "a");
    let y = compute(a.shape(), "y", |i| a.at(i) * Expr::from(2.0f32));
    let e = conv2d_nchw_cpu_blocked(&y, 1).unwrap_err().to_string();
    assert!(
        e.contains("reads 0 reductions, not one convolution"),
        "{}",
        e
    );
}

#[test]
fn graph_pointwise_layer_uses_the_pointwise_schedule() {
    // 28x28 positions: the smallest image that takes it (graph_runtime::schedule::
    // POINTWISE_MIN_POSITIONS) with 16 dividing the output channels.
    let steps = one_conv(
        [1, 16, 28, 28],
        [32, 16, 1, 1],
        Conv2dAttrs::default(),
        false,
    );
    // The micro-kernel over positions fused across rows, on the OIHW weight (not packed).
    assert!(
        steps.iter().any(|s| matches!(s, Step::Tensorize { .. })),
        "{:?}",
        steps
    );
    assert!(
        steps.iter().any(|s| matches!(s, Step::Fuse { .. })),
        "{:?}",
        steps
    );
}

#[test]
fn graph_strided_1x1_layer_of_few_channels_uses_the_blocked_schedule() {
    let steps = one_conv(
        [1, 16, 24, 24],
        [32, 16, 1, 1],
        Conv2dAttrs::same(2, 0),
        false,
    );
    // Not the micro-kernel (which tensorizes): the accumulator tile cached in registers.
    assert!(
        !steps.iter().any(|s| matches!(s, Step::Tensorize { .. })),
        "{:?}",
        steps
    );
    assert!(
        steps.iter().any(|s| matches!(s, Step::CacheWrite { .. })),
        "{:?}",
        steps
    );
}

#[test]
fn pointwise_equals_the_unscheduled_convolution() {
    for (xs, o, what) in [
        (
            [1, 16, 12, 12],
            24,
            "16 -> 24 at 12x12: whole tiles of 16 positions",
        ),
        (
            [1, 5, 7, 7],
            13,
            "5 -> 13 at 7x7: partial tiles of positions (49) and channels (13)",
        ),
        ([2, 8, 6, 10], 12, "batch 2, 10 wide: tiles across rows"),
        (
            [1, 300, 4, 4],
            16,
            "300 input channels: two slices of 150 accumulated",
        ),
    ] {
        let [x, w, out] = grouped(xs, o, 1, 1, 0, 1);
        let args = [x, w, out.clone()];
        for threads in [1, 2] {
            let s = conv2d_pointwise_cpu(&out, threads).unwrap();
            check_against_unscheduled(
                &s,
                &args,
                &[out.clone()],
                8,
                &format!("pointwise {} on {} threads", what, threads),
            );
        }
    }
    // min(max(conv + bias[c], 0), 6) + residual, as the graph's fusion builds MobileNet's.
    let [x, w, out] = grouped([1, 24, 8, 9], 18, 1, 1, 0, 1);
    let b = placeholder(&[Expr::from(18)], DType::F32, "b");
    let res = placeholder(&dims(&[1, 18, 8, 9]), DType::F32, "res");
    let fused = compute(out.shape(), "fused", |i| {
        min(
            max(out.at(i) + b.at(&[i[1].clone()]), Expr::from(0.0f32)),
            Expr::from(6.0f32),
        ) + res.at(i)
    });
    let args = [x, w, b, res, fused.clone()];
    let s = conv2d_pointwise_cpu(&fused, 2).unwrap();
    check_against_unscheduled(
        &s,
        &args,
        &[fused],
        9,
        "pointwise + bias + relu6 + residual",
    );
}

#[test]
fn pointwise_golden_ir_and_replay() {
    let [x, w, out] = grouped([1, 8, 3, 6], 8, 1, 1, 0, 1);
    let args = [x, w, out.clone()];
    golden_and_replay(
        "conv2d_pointwise",
        &conv2d_pointwise_cpu(&out, 2).unwrap(),
        &out,
        &args,
    );
}

#[test]
fn pointwise_rejects_other_computations() {
    for (xs, o, k, stride, pad, groups, want) in [
        ([1, 4, 8, 8], 8, 3, 1, 1, 1, "with a 1x1 kernel"),
        ([1, 4, 8, 8], 8, 1, 2, 0, 1, "unpadded and at stride 1"),
        ([1, 4, 8, 8], 8, 1, 1, 1, 1, "unpadded and at stride 1"),
        (
            [1, 4, 8, 8],
            8,
            1,
            1,
            0,
            2,
            "in groups of 2: it takes one group only",
        ),
    ] {
        let [_, _, out] = grouped(xs, o, k, stride, pad, groups);
        let e = conv2d_pointwise_cpu(&out, 1).unwrap_err().to_string();
        assert!(
            e.contains("conv2d_pointwise_cpu: out ") && e.contains(want),
            "{}",
            e
        );
    }
    let (_, _, c) = matmul(8, 8, 8);
    let e = conv2d_pointwise_cpu(&c, 1).unwrap_err().to_string();
    assert!(e.contains("with a 1x1 kernel"), "{}", e);
}
