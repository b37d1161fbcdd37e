//! Convolutions in the blocked layout `NCHW[c]c`: the operators
//! (`ops::conv2d_nchwc`, `ops::depthwise_conv2d_nchwc` and the layout transforms) equal the
//! NCHW convolution; their schedules (`schedules::conv2d_nchwc_cpu`,
//! `schedules::depthwise_conv2d_nchwc_cpu`) equal the unscheduled computation on the
//! interpreter and the JIT (widths no tile divides, 1x1 and 7x7 windows, strides,
//! padding, dilation, batch 2, blocks of 3, 4, 8 and 16 channels, a fused bias + relu,
//! one thread and two), their golden IR and trace replay, and their errors.

mod common;
use common::*;
use loopforge::graph_runtime::ops::{
    conv2d, conv2d_nchwc, depthwise_conv2d_nchwc, depthwise_weight_to_blocked, nchw_to_nchwc,
    nchwc_to_nchw, oihw_to_blocked, pad, BlockedConv,
};
use loopforge::graph_runtime::Conv2dAttrs;
use loopforge::prelude::*;
use loopforge::schedules::{
    conv2d_nchw_cpu_tensorized, conv2d_nchwc_cpu, depthwise_conv2d_nchwc_cpu,
};

fn dims(v: &[usize]) -> Vec<Expr> {
    v.iter().map(|&d| Expr::from(d as i64)).collect()
}

fn attrs(k_stride: usize, pad: usize, dilation: usize) -> BlockedConv {
    BlockedConv {
        stride: [k_stride; 2],
        padding: [pad; 4],
        dilation: [dilation; 2],
    }
}

/// One blocked convolution case: input `[n, c, h, w]` in blocks of `cb`, `o` output
/// channels in blocks of `ob`, a `k x k` window.
#[derive(Clone, Copy)]
struct Case {
    n: usize,
    c: usize,
    cb: usize,
    hw: [usize; 2],
    o: usize,
    ob: usize,
    k: usize,
    conv: BlockedConv,
}

impl Case {
    /// `(x, w, out)` with the input and weight as blocked placeholders.
    fn build(&self) -> [Tensor; 3] {
        let xs = [self.n, self.c / self.cb, self.hw[0], self.hw[1], self.cb];
        let ws = [
            self.o / self.ob,
            self.c / self.cb,
            self.k,
            self.k,
            self.cb,
            self.ob,
        ];
        let x = placeholder(&dims(&xs), DType::F32, "x");
        let w = placeholder(&dims(&ws), DType::F32, "w");
        let out = conv2d_nchwc(&x, &w, &xs, &ws, &self.conv).unwrap();
        [x, w, out]
    }
}

#[test]
fn blocked_operators_equal_the_nchw_convolution() {
    // NCHW in, transformed to blocks, convolved, transformed back: the NCHW convolution.
    for (n, c, cb, o, ob, h, k, conv) in [
        (1, 8, 4, 16, 8, 9, 3, attrs(1, 1, 1)),
        (2, 6, 3, 8, 4, 11, 3, attrs(2, 1, 1)),
        (1, 4, 2, 4, 4, 10, 3, attrs(1, 2, 2)),
    ] {
        let xs = [n, c, h, h];
        let ws = [o, c, k, k];
        let x = placeholder(&dims(&xs), DType::F32, "x");
        let w = placeholder(&dims(&ws), DType::F32, "w");
        let xc = nchw_to_nchwc(&x, &xs, cb, "xc").unwrap();
        let wc = oihw_to_blocked(&w, &ws, cb, ob, "wc").unwrap();
        let xcs = [n, c / cb, h, h, cb];
        let wcs = [o / ob, c / cb, k, k, cb, ob];
        let yc = conv2d_nchwc(&xc, &wc, &xcs, &wcs, &conv).unwrap();
        let ys = const_shape(&yc);
        let back = nchwc_to_nchw(&yc, &ys, "back").unwrap();
        let a = Conv2dAttrs {
            stride: conv.stride,
            padding: conv.padding,
            dilation: conv.dilation,
            ..Conv2dAttrs::default()
        };
        let oshape = const_shape(&back);
        let want = conv2d(&x, &w, &xs, &ws, &a, &oshape);
        let blocked = [x.clone(), w.clone(), back.clone()];
        let nchw = [x, w, want.clone()];
        let got = run_all(
            &create_schedule(&[back]).unwrap(),
            &blocked,
            Target::interp(),
            7,
        );
        let want = run_all(
            &create_schedule(&[want]).unwrap(),
            &nchw,
            Target::interp(),
            7,
        );
        assert_close(&got[2], &want[2], "blocked against NCHW convolution");
    }
    // A depthwise convolution likewise.
    let xs = [1, 8, 10, 10];
    let ws = [8, 1, 3, 3];
    let x = placeholder(&dims(&xs), DType::F32, "x");
    let w = placeholder(&dims(&ws), DType::F32, "w");
    let xc = nchw_to_nchwc(&x, &xs, 4, "xc").unwrap();
    let wc = depthwise_weight_to_blocked(&w, &ws, 4, "wc").unwrap();
    let yc = depthwise_conv2d_nchwc(&xc, &wc, &[1, 2, 10, 10, 4], &[2, 3, 3, 4], &attrs(2, 1, 1))
        .unwrap();
    let back = nchwc_to_nchw(&yc, &const_shape(&yc), "back").unwrap();
    let a = Conv2dAttrs {
        stride: [2, 2],
        padding: [1; 4],
        groups: 8,
        ..Conv2dAttrs::default()
    };
    let want = conv2d(&x, &w, &xs, &ws, &a, &const_shape(&back));
    let got = run_all(
        &create_schedule(&[back.clone()]).unwrap(),
        &[x.clone(), w.clone(), back],
        Target::interp(),
        8,
    );
    let want = run_all(
        &create_schedule(&[want.clone()]).unwrap(),
        &[x, w, want],
        Target::interp(),
        8,
    );
    assert_close(
        &got[2],
        &want[2],
        "blocked against NCHW depthwise convolution",
    );
}

#[test]
fn conv2d_nchwc_equals_the_unscheduled_convolution() {
    let base = Case {
        n: 1,
        c: 32,
        cb: 16,
        hw: [9, 9],
        o: 32,
        ob: 16,
        k: 3,
        conv: attrs(1, 1, 1),
    };
    for (case, what) in [
        (
            base,
            "3x3, 9 wide (a tile of 9: a register block of 6 and one of 3)",
        ),
        (
            Case {
                hw: [6, 13],
                ..base
            },
            "13 wide (a prime: tiles of 13)",
        ),
        (
            Case {
                n: 2,
                c: 48,
                hw: [8, 8],
                k: 1,
                conv: attrs(1, 0, 1),
                ..base
            },
            "1x1, batch 2, 3 input blocks",
        ),
        (
            Case {
                c: 64,
                hw: [10, 10],
                conv: attrs(2, 1, 1),
                ..base
            },
            "stride 2, 4 input blocks",
        ),
        (
            Case {
                c: 3,
                cb: 3,
                hw: [15, 15],
                k: 7,
                conv: attrs(2, 3, 1),
                ..base
            },
            "an RGB stem: 3 channels in one block, 7x7 stride 2",
        ),
        (
            Case {
                c: 8,
                cb: 4,
                o: 24,
                ob: 8,
                hw: [7, 7],
                conv: attrs(1, 2, 2),
                ..base
            },
            "dilation 2, blocks of 4 in and 8 out",
        ),
        (
            Case {
                c: 16 * 20,
                hw: [4, 4],
                k: 1,
                conv: attrs(1, 0, 1),
                ..base
            },
            "320 input channels (two slices of 10 blocks per call)",
        ),
    ] {
        let [x, w, out] = case.build();
        let args = [x, w, out.clone()];
        for threads in [1, 2] {
            let s = conv2d_nchwc_cpu(&out, threads).unwrap();
            check_against_unscheduled(
                &s,
                &args,
                &[out.clone()],
                11,
                &format!("conv2d_nchwc {} on {} threads", what, threads),
            );
        }
    }
}

#[test]
fn conv2d_nchwc_with_a_fused_epilogue() {
    let [x, w, out] = Case {
        n: 1,
        c: 16,
        cb: 8,
        hw: [7, 7],
        o: 32,
        ob: 16,
        k: 3,
        conv: attrs(1, 1, 1),
    }
    .build();
    // relu(conv + bias[ob, oi]), bias blocked like the channels.
    let b = placeholder(&dims(&[2, 16]), DType::F32, "b");
    let fused = compute(out.shape(), "fused", |i| {
        max(
            out.at(i) + b.at(&[i[1].clone(), i[4].clone()]),
            Expr::from(0.0f32),
        )
    });
    let args = [x, w, b, fused.clone()];
    for threads in [1, 2] {
        let s = conv2d_nchwc_cpu(&fused, threads).unwrap();
        check_against_unscheduled(
            &s,
            &args,
            &[fused.clone()],
            12,
            "conv2d_nchwc + bias + relu",
        );
    }
}

#[test]
fn nchwc_golden_ir_and_replay() {
    let [x, w, out] = Case {
        n: 1,
        c: 32,
        cb: 16,
        hw: [6, 6],
        o: 32,
        ob: 16,
        k: 3,
        conv: attrs(1, 1, 1),
    }
    .build();
    let args = [x, w, out.clone()];
    golden_and_replay(
        "conv2d_nchwc",
        &conv2d_nchwc_cpu(&out, 2).unwrap(),
        &out,
        &args,
    );
    let (x, w, out) = depthwise(1, 2, 8, [6, 10], 3, attrs(1, 1, 1));
    let args = [x, w, out.clone()];
    golden_and_replay(
        "depthwise_conv2d_nchwc",
        &depthwise_conv2d_nchwc_cpu(&out, 2).unwrap(),
        &out,
        &args,
    );
}

/// A blocked depthwise convolution of `blocks` blocks of `c` channels: `(x, w, out)`.
fn depthwise(
    n: usize,
    blocks: usize,
    c: usize,
    hw: [usize; 2],
    k: usize,
    conv: BlockedConv,
) -> (Tensor, Tensor, Tensor) {
    let xs = [n, blocks, hw[0], hw[1], c];
    let ws = [blocks, k, k, c];
    let x = placeholder(&dims(&xs), DType::F32, "x");
    let w = placeholder(&dims(&ws), DType::F32, "w");
    let out = depthwise_conv2d_nchwc(&x, &w, &xs, &ws, &conv).unwrap();
    (x, w, out)
}

#[test]
fn depthwise_nchwc_equals_the_unscheduled_convolution() {
    for (n, blocks, c, hw, k, conv, what) in [
        (
            1,
            3,
            4,
            [9, 16],
            3,
            attrs(1, 1, 1),
            "blocks of 4, 16 wide (tiles of 8)",
        ),
        (
            2,
            2,
            8,
            [7, 7],
            3,
            attrs(1, 1, 1),
            "blocks of 8, 7 wide (the last tile of 4 shifted in), batch 2",
        ),
        (
            1,
            2,
            4,
            [11, 21],
            3,
            attrs(2, 1, 1),
            "stride 2, 11 wide (shifted tail)",
        ),
        (
            1,
            1,
            16,
            [8, 8],
            5,
            attrs(2, 2, 1),
            "blocks of 16 (tiles of 2), 5x5 stride 2",
        ),
        (
            1,
            2,
            3,
            [6, 9],
            3,
            attrs(1, 1, 1),
            "blocks of 3 (no vectors)",
        ),
        (1, 2, 4, [10, 10], 3, attrs(1, 2, 2), "dilation 2"),
        (
            1,
            2,
            8,
            [3, 3],
            3,
            attrs(1, 0, 1),
            "no padding, one output column",
        ),
    ] {
        let (x, w, out) = depthwise(n, blocks, c, hw, k, conv);
        let args = [x, w, out.clone()];
        for threads in [1, 2] {
            let s = depthwise_conv2d_nchwc_cpu(&out, threads).unwrap();
            check_against_unscheduled(
                &s,
                &args,
                &[out.clone()],
                13,
                &format!("depthwise_nchwc {} on {} threads", what, threads),
            );
        }
    }
    // relu6(conv + bias), the graph's fused MobileNet layer.
    let (x, w, out) = depthwise(1, 2, 8, [14, 14], 3, attrs(1, 1, 1));
    let b = placeholder(&dims(&[2, 8]), DType::F32, "b");
    let fused = compute(out.shape(), "fused", |i| {
        min(
            max(
                out.at(i) + b.at(&[i[1].clone(), i[4].clone()]),
                Expr::from(0.0f32),
            ),
            Expr::from(6.0f32),
        )
    });
    let args = [x, w, b, fused.clone()];
    let s = depthwise_conv2d_nchwc_cpu(&fused, 2).unwrap();
    check_against_unscheduled(&s, &args, &[fused], 14, "depthwise_nchwc + bias + relu6");
}

#[test]
fn blocked_operators_reject_mismatched_shapes() {
    let x = placeholder(&dims(&[1, 6, 4, 4]), DType::F32, "x");
    let e = nchw_to_nchwc(&x, &[1, 6, 4, 4], 4, "xc")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("block of 4 channels does not divide x's 6 channels"),
        "{}",
        e
    );
    let w = placeholder(&dims(&[8, 6, 3, 3]), DType::F32, "w");
    let e = oihw_to_blocked(&w, &[8, 6, 3, 3], 3, 16, "wc")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("block of 16 channels does not divide w's 8"),
        "{}",
        e
    );
    // Weight blocks that do not match the input's.
    let xc = placeholder(&dims(&[1, 2, 4, 4, 4]), DType::F32, "xc");
    let wc = placeholder(&dims(&[1, 4, 3, 3, 2, 8]), DType::F32, "wc");
    let e = conv2d_nchwc(
        &xc,
        &wc,
        &[1, 2, 4, 4, 4],
        &[1, 4, 3, 3, 2, 8],
        &attrs(1, 1, 1),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains(
            "the weight wc reads 4 blocks of 2 input channels, the input xc has 2 blocks of 4"
        ),
        "{}",
        e
    );
    // An NCHW input.
    let e = conv2d_nchwc(&x, &wc, &[1, 6, 4, 4], &[1, 4, 3, 3, 2, 8], &attrs(1, 1, 1))
        .unwrap_err()
        .to_string();
    assert!(e.contains("must be 5-d [N, C/cb, H, W, cb]"), "{}", e);
    // A window larger than the padded image.
    let wc = placeholder(&dims(&[1, 2, 7, 7, 4, 8]), DType::F32, "wc");
    let e = conv2d_nchwc(
        &xc,
        &wc,
        &[1, 2, 4, 4, 4],
        &[1, 2, 7, 7, 4, 8],
        &attrs(1, 1, 1),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("the 7x7 window (dilated) does not fit the padded 6x6 image"),
        "{}",
        e
    );
}

#[test]
fn nchwc_schedules_take_layout_transforms_in_the_same_computation() {
    // NCHW input and OIHW weight blocked inside the kernel (the transforms inlined or
    // computed as the convolution's input stage): equal to the unscheduled computation.
    let (xs, ws) = ([1, 16, 9, 9], [16, 16, 3, 3]);
    let x = placeholder(&dims(&xs), DType::F32, "x");
    let w = placeholder(&dims(&ws), DType::F32, "w");
    let xc = nchw_to_nchwc(&x, &xs, 8, "xc").unwrap();
    let wc = oihw_to_blocked(&w, &ws, 8, 16, "wc").unwrap();
    let out = conv2d_nchwc(
        &xc,
        &wc,
        &[1, 2, 9, 9, 8],
        &[1, 2, 3, 3, 8, 16],
        &attrs(1, 1, 1),
    )
    .unwrap();
    let args = [x.clone(), w, out.clone()];
    let s = conv2d_nchwc_cpu(&out, 2).unwrap();
    check_against_unscheduled(
        &s,
        &args,
        &[out],
        15,
        "conv2d_nchwc of transformed operands",
    );
    // A depthwise convolution whose padding was applied in NCHW before the blocking (a
    // stage named `pad` upstream, 4-d): the blocked input is the stage planed per block.
    let xp = pad(
        &x,
        &xs,
        &[(0, 0), (0, 0), (1, 1), (1, 1)],
        Expr::from(0.0f32),
        "pad",
    );
    let xb = nchw_to_nchwc(&xp, &[1, 16, 11, 11], 4, "xb").unwrap();
    let wd = placeholder(&dims(&[4, 3, 3, 4]), DType::F32, "wd");
    let dw = depthwise_conv2d_nchwc(&xb, &wd, &[1, 4, 11, 11, 4], &[4, 3, 3, 4], &attrs(1, 0, 1))
        .unwrap();
    let args = [x, wd, dw.clone()];
    let s = depthwise_conv2d_nchwc_cpu(&dw, 2).unwrap();
    check_against_unscheduled(&s, &args, &[dw], 16, "depthwise of an NCHW-padded input");
}

#[test]
fn nchwc_schedules_reject_other_computations() {
    // An NCHW convolution.
    let xs = [1, 16, 8, 8];
    let ws = [16, 16, 3, 3];
    let x = placeholder(&dims(&xs), DType::F32, "x");
    let w = placeholder(&dims(&ws), DType::F32, "w");
    let a = Conv2dAttrs {
        padding: [1; 4],
        ..Conv2dAttrs::default()
    };
    let nchw = conv2d(&x, &w, &xs, &ws, &a, &[1, 16, 8, 8]);
    let e = conv2d_nchwc_cpu(&nchw, 1).unwrap_err().to_string();
    assert!(
        e.contains("conv2d_nchwc_cpu: out is not a blocked convolution [N, O/ob, OH, OW, ob]"),
        "{}",
        e
    );
    let e = depthwise_conv2d_nchwc_cpu(&nchw, 1)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("depthwise_conv2d_nchwc_cpu: out is not a blocked"),
        "{}",
        e
    );
    // A blocked depthwise convolution is not a dense one, and the other way round.
    let (_, _, dw) = depthwise(1, 2, 4, [6, 6], 3, attrs(1, 1, 1));
    let e = conv2d_nchwc_cpu(&dw, 1).unwrap_err().to_string();
    assert!(e.contains("a 6-d weight with 4 reduce axes"), "{}", e);
    let [_, _, dense] = Case {
        n: 1,
        c: 8,
        cb: 4,
        hw: [6, 6],
        o: 16,
        ob: 16,
        k: 3,
        conv: attrs(1, 1, 1),
    }
    .build();
    let e = depthwise_conv2d_nchwc_cpu(&dense, 1)
        .unwrap_err()
        .to_string();
    assert!(e.contains("a 4-d weight with 2 reduce axes"), "{}", e);
    // The NCHW schedule does not take a blocked convolution either.
    let e = conv2d_nchw_cpu_tensorized(&dense, 1)
        .unwrap_err()
        .to_string();
    assert!(e.contains("has 5 dimensions, not 4 (NCHW)"), "{}", e);
    // f64.
    let xc = placeholder(&dims(&[1, 1, 6, 6, 4]), DType::F64, "x");
    let wc = placeholder(&dims(&[1, 1, 3, 3, 4, 4]), DType::F64, "w");
    let out = conv2d_nchwc(
        &xc,
        &wc,
        &[1, 1, 6, 6, 4],
        &[1, 1, 3, 3, 4, 4],
        &attrs(1, 1, 1),
    )
    .unwrap();
    let e = conv2d_nchwc_cpu(&out, 1).unwrap_err().to_string();
    assert!(e.contains("out is float64, not f32"), "{}", e);
}
