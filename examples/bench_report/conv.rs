//! The conv2d workloads of the report: ResNet-18's layer shapes at batch 1, loopforge's
//! vectorized-loops schedule (`graph_runtime::schedule::conv2d_loops`, the graph
//! runtime's fallback), the tensorized one (`schedules::conv2d_nchw_cpu_tensorized`, its
//! default where it applies; also on weights packed ahead of time, as the graph runtime
//! runs it) and, for 3x3 stride-1 layers, Winograd's F(2x2, 3x3)
//! (`schedules::conv2d_winograd_cpu` on weights transformed ahead of time, the graph
//! runtime's default there); MobileNetV2's depthwise layers with the loops and the
//! depthwise schedule (`schedules::conv2d_depthwise_cpu`, the graph runtime's default
//! for them), and its pointwise layers also with the pointwise schedule
//! (`schedules::conv2d_pointwise_cpu`, the graph runtime's default for them) and the
//! register-blocked one (`schedules::conv2d_nchw_cpu_blocked`); every layer also in the
//! blocked layout NCHW[c]c (`schedules::conv2d_nchwc_cpu`,
//! `schedules::depthwise_conv2d_nchwc_cpu`, input and weight blocked ahead of time);
//! against PyTorch's
//! `conv2d` (oneDNN) where `torch` imports.

use super::blocked::{unblock, Blocked};
use super::{check, measure, Opts, Row};
use loopforge::graph_runtime::ops::{
    conv2d, conv2d_winograd, winograd_weight_shape, winograd_weights_f23,
};
use loopforge::graph_runtime::passes::pack_conv_weights::pack_ohwi16o;
use loopforge::graph_runtime::{Conv2dAttrs, WeightLayout};
use loopforge::prelude::*;

/// One convolution: name, input channels, output channels, input size, kernel, stride,
/// padding, groups (ResNet-18's layers have one; MobileNetV2's depthwise layers as many
/// as channels).
pub struct ConvShape {
    pub name: &'static str,
    pub c: usize,
    pub o: usize,
    pub hw: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
    pub groups: usize,
}

impl ConvShape {
    fn out_hw(&self) -> usize {
        (self.hw + 2 * self.pad - self.k) / self.stride + 1
    }
    fn flops(&self) -> f64 {
        let ohw = self.out_hw();
        2.0 * (self.o * ohw * ohw * (self.c / self.groups) * self.k * self.k) as f64
    }
    pub fn workload(&self) -> String {
        format!("conv2d_{}", self.name)
    }
}

/// The layers measured (`--quick`: the first two; `--only`: those it names).
pub fn shapes(o: &Opts) -> Vec<ConvShape> {
    let s = |name, c, o, hw, k, stride, pad| ConvShape {
        name,
        c,
        o,
        hw,
        k,
        stride,
        pad,
        groups: 1,
    };
    // MobileNetV2's depthwise 3x3 layers (batch 1, 224x224 input).
    let dw = |name, c, hw, stride| ConvShape {
        groups: c,
        ..s(name, c, c, hw, 3, stride, 1)
    };
    let all = vec![
        s("64x56_3x3", 64, 64, 56, 3, 1, 1),
        s("128x28_3x3", 128, 128, 28, 3, 1, 1),
        s("256x14_3x3", 256, 256, 14, 3, 1, 1),
        s("512x7_3x3", 512, 512, 7, 3, 1, 1),
        s("64to128_3x3_s2", 64, 128, 56, 3, 2, 1),
        s("64to128_1x1_s2", 64, 128, 56, 1, 2, 0),
        s("3to64_7x7_s2", 3, 64, 224, 7, 2, 3),
        dw("dw32x112_3x3", 32, 112, 1),
        dw("dw144x56_3x3", 144, 56, 1),
        dw("dw144x56_3x3_s2", 144, 56, 2),
        dw("dw384x14_3x3", 384, 14, 1),
        dw("dw960x7_3x3", 960, 7, 1),
        // EfficientNet-B0's depthwise 5x5 layers.
        ConvShape {
            k: 5,
            pad: 2,
            ..dw("dw672x14_5x5", 672, 14, 1)
        },
        ConvShape {
            k: 5,
            pad: 2,
            ..dw("dw1152x7_5x5", 1152, 7, 1)
        },
        // MobileNetV2's pointwise layers: expansion and projection.
        s("pw16to96x112", 16, 96, 112, 1, 1, 0),
        s("pw24to144x56", 24, 144, 56, 1, 1, 0),
        s("pw144to24x56", 144, 24, 56, 1, 1, 0),
        s("pw96to576x14", 96, 576, 14, 1, 1, 0),
        s("pw576to96x14", 576, 96, 14, 1, 1, 0),
        s("pw960to160x7", 960, 160, 7, 1, 1, 0),
    ];
    let n = if o.quick { 2 } else { all.len() };
    all.into_iter()
        .take(n)
        .filter(|s| o.wants(&s.workload()))
        .collect()
}

/// loopforge's rows for every shape.
pub fn conv_rows(o: &Opts, threads: usize) -> Result<Vec<Row>> {
    let mut rows = vec![];
    for sh in shapes(o) {
        let wl = sh.workload();
        let attrs = Conv2dAttrs {
            stride: [sh.stride; 2],
            padding: [sh.pad; 4],
            dilation: [1; 2],
            groups: sh.groups,
            ..Conv2dAttrs::default()
        };
        let xs = [1, sh.c, sh.hw, sh.hw];
        let ws = [sh.o, sh.c / sh.groups, sh.k, sh.k];
        let ohw = sh.out_hw();
        let os = [1, sh.o, ohw, ohw];
        let dims = |v: &[usize]| v.iter().map(|&d| Expr::from(d as i64)).collect::<Vec<_>>();
        let x = placeholder(&dims(&xs), DType::F32, "x");
        let w = placeholder(&dims(&ws), DType::F32, "w");
        let out = conv2d(&x, &w, &xs, &ws, &attrs, &os);
        let args = [x.clone(), w, out.clone()];
        let xa = NdArray::random(&xs, DType::F32, 5);
        let wa = NdArray::random(&ws, DType::F32, 6);
        // The same convolution reading weights packed ahead of time, as a graph build
        // does with constant weights (`passes::pack_conv_weights`).
        let pattrs = Conv2dAttrs {
            weight_layout: WeightLayout::Ohwi16o,
            ..attrs
        };
        let pws = WeightLayout::ohwi16o_shape(&ws);
        let wp = placeholder(&dims(&pws), DType::F32, "w");
        let pout = conv2d(&x, &wp, &xs, &pws, &pattrs, &os);
        let pargs = [x, wp, pout.clone()];
        let grouped = sh.groups > 1;
        let pwa = if grouped || sh.o % 16 != 0 {
            wa.clone()
        } else {
            pack_ohwi16o(&wa)?
        };
        // Winograd's F(2x2, 3x3) on weights transformed ahead of time (the graph build's
        // default for 3x3 stride-1 convolutions over 16+ channels).
        let us = winograd_weight_shape(sh.o, sh.c);
        let u = placeholder(&dims(&us), DType::F32, "u");
        let wout = conv2d_winograd(&args[0], &xs, &u, &us, [sh.pad; 4]);
        let wargs = [args[0].clone(), u, wout.clone()];
        let winograd = sh.k == 3 && sh.stride == 1 && sh.c >= 16 && !grouped;
        let uwa = if winograd {
            winograd_weights_f23(&wa)?
        } else {
            wa.clone()
        };
        let mut reference: Option<Vec<f32>> = None;
        let plain = |name, sched, args, w| Candidate {
            name,
            sched,
            args,
            x: &xa,
            w,
            blocked_out: false,
        };
        let mut candidates = vec![plain(
            "loopforge_conv2d_loops",
            loopforge::graph_runtime::schedule::conv2d_loops(&out, threads),
            &args,
            &wa,
        )];
        if grouped {
            candidates.push(plain(
                "loopforge_conv2d_depthwise",
                loopforge::schedules::conv2d_depthwise_cpu(&out, threads),
                &args,
                &wa,
            ));
        } else {
            candidates.extend([
                plain(
                    "loopforge_conv2d_tensorized",
                    loopforge::schedules::conv2d_nchw_cpu_tensorized(&out, threads),
                    &args,
                    &wa,
                ),
                plain(
                    "loopforge_conv2d_tensorized_prepacked",
                    loopforge::schedules::conv2d_nchw_cpu_tensorized(&pout, threads),
                    &pargs,
                    &pwa,
                ),
            ]);
        }
        if sh.k == 1 && sh.stride == 1 && sh.pad == 0 && !grouped {
            candidates.extend([
                plain(
                    "loopforge_conv2d_pointwise",
                    loopforge::schedules::conv2d_pointwise_cpu(&out, threads),
                    &args,
                    &wa,
                ),
                plain(
                    "loopforge_conv2d_blocked",
                    loopforge::schedules::conv2d_nchw_cpu_blocked(&out, threads),
                    &args,
                    &wa,
                ),
            ]);
        }
        if winograd {
            candidates.push(plain(
                "loopforge_conv2d_winograd",
                loopforge::schedules::conv2d_winograd_cpu(&wout, threads),
                &wargs,
                &uwa,
            ));
        }
        // The same convolution in the blocked layout NCHW[c]c, input, weight and output
        // blocked ahead of time (as in a model run in that layout throughout).
        let nchwc = Blocked::new(&sh, &attrs, &xa, &wa)?;
        if let Some(b) = &nchwc {
            let sched = if grouped {
                loopforge::schedules::depthwise_conv2d_nchwc_cpu(&b.args[2], threads)
            } else {
                loopforge::schedules::conv2d_nchwc_cpu(&b.args[2], threads)
            };
            candidates.push(Candidate {
                name: "loopforge_conv2d_nchwc",
                sched,
                args: &b.args,
                x: &b.x,
                w: &b.w,
                blocked_out: true,
            });
        }
        for cand in candidates {
            let name = cand.name;
            eprintln!("  {} {} threads={}", wl, name, threads);
            let k = match cand.sched.and_then(|s| build(&s, cand.args, Target::cpu())) {
                Ok(k) => k,
                Err(e) => {
                    rows.push(Row::missing(&wl, name, threads, e.to_string()));
                    continue;
                }
            };
            let oshape: Vec<usize> = cand.args[2]
                .shape()
                .iter()
                .map(|d| d.as_int().unwrap_or(0) as usize)
                .collect();
            let mut ya = NdArray::zeros(&oshape, DType::F32);
            let (x, w) = (cand.x, cand.w);
            k.run(&[x, w], &mut [&mut ya])?;
            let got = if cand.blocked_out {
                unblock(&ya)?
            } else {
                ya.as_slice::<f32>()?.to_vec()
            };
            let verdict = match &reference {
                Some(want) => check(name, &got, want, 1e-4),
                None => {
                    reference = Some(got);
                    Ok(())
                }
            };
            rows.push(match verdict {
                Ok(()) => {
                    let s = measure(
                        || k.run(&[x, w], &mut [&mut ya]).unwrap(),
                        o.budget(),
                        o.min_reps(),
                    );
                    Row::timed(&wl, name, threads, s, Some(sh.flops()))
                }
                Err(e) => Row::missing(&wl, name, threads, &e),
            });
        }
    }
    Ok(rows)
}

/// One schedule measured: its arguments (input, weight, output), the arrays it reads,
/// and whether its output is blocked (NCHW[c]c, unblocked for the check).
struct Candidate<'a> {
    name: &'static str,
    sched: Result<Schedule>,
    args: &'a [Tensor; 3],
    x: &'a NdArray,
    w: &'a NdArray,
    blocked_out: bool,
}

/// Times `torch.nn.functional.conv2d` (after [`super::PY_TORCH`]); argv: shapes as `c,o,hw,k,stride,pad,groups;...`,
/// threads, budget seconds, minimum repetitions.
const PY_CONV: &str = r#"
shapes = [tuple(int(v) for v in s.split(",")) for s in sys.argv[1].split(";")]
with torch.no_grad():
    for (c, o, hw, k, s, p, g), n in zip(shapes, names):
        x = torch.rand(1, c, hw, hw); w = torch.rand(o, c // g, k, k)
        f = lambda: torch.nn.functional.conv2d(x, w, stride=s, padding=p, groups=g)
        for _ in range(3): f()
        print(json.dumps(dict(workload=n, impl="torch", median_s=measure(f))), flush=True)
"#;

/// PyTorch's rows (or one "not available" row per shape).
pub fn torch_rows(o: &Opts, threads: usize, infos: &mut Vec<String>) -> Vec<Row> {
    let shapes = shapes(o);
    let spec: Vec<String> = shapes
        .iter()
        .map(|s| {
            format!(
                "{},{},{},{},{},{},{}",
                s.c, s.o, s.hw, s.k, s.stride, s.pad, s.groups
            )
        })
        .collect();
    let names: Vec<String> = shapes.iter().map(|s| s.workload()).collect();
    eprintln!("  torch conv2d threads={}", threads);
    let flops = |w: &str| shapes.iter().find(|s| s.workload() == w).map(|s| s.flops());
    super::torch_script_rows(o, threads, infos, PY_CONV, &spec.join(";"), &names, flops)
}
