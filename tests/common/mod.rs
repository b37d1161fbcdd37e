//! Shared helpers for the integration tests: computations and naive references.
#![allow(dead_code)]

use loopforge::prelude::*;

/// `Y[i, j] = f(X[i, j])` over a `rows x n` tile, with `X` stored `n x rows` and read along
/// its columns when `transposed` (a strided view): the elementwise intrinsics' declaration
/// tests. Returns `(X, Y)`.
pub fn elementwise_tile(
    rows: i64,
    n: i64,
    transposed: bool,
    f: impl Fn(Expr) -> Expr,
) -> (Tensor, Tensor) {
    let x = if transposed {
        placeholder(&[n.into(), rows.into()], DType::F32, "X")
    } else {
        placeholder(&[rows.into(), n.into()], DType::F32, "X")
    };
    let y = compute(&[rows.into(), n.into()], "Y", |i| {
        f(if transposed {
            x.at(&[i[1].clone(), i[0].clone()])
        } else {
            x.at(&[i[0].clone(), i[1].clone()])
        })
    });
    (x, y)
}

/// `C[i, j] = sum_k A[i, k] * B[j, k]` (the TVM paper's matmul, B transposed).
pub fn matmul_nt(m: Expr, n: Expr, h: Expr) -> (Tensor, Tensor, Tensor) {
    let a = placeholder(&[m.clone(), h.clone()], DType::F32, "A");
    let b = placeholder(&[n.clone(), h.clone()], DType::F32, "B");
    let k = reduce_axis(0, h, "k");
    let c = compute(&[m, n], "C", |i| {
        sum(
            a.at(&[i[0].clone(), k.x()]) * b.at(&[i[1].clone(), k.x()]),
            &[k.clone()],
        )
    });
    (a, b, c)
}

/// `C[i, j] = sum_k A[i, k] * B[k, j]`.
pub fn matmul(m: i64, n: i64, kk: i64) -> (Tensor, Tensor, Tensor) {
    let a = placeholder(&[m.into(), kk.into()], DType::F32, "A");
    let b = placeholder(&[kk.into(), n.into()], DType::F32, "B");
    let k = reduce_axis(0, kk, "k");
    let c = compute(&[m.into(), n.into()], "C", |i| {
        sum(
            a.at(&[i[0].clone(), k.x()]) * b.at(&[k.x(), i[1].clone()]),
            &[k.clone()],
        )
    });
    (a, b, c)
}

/// Run a kernel built from `s` on `inputs` for the given target; returns the outputs.
pub fn run(
    s: &Schedule,
    args: &[Tensor],
    inputs: &[&NdArray],
    out_shapes: &[(&[usize], DType)],
    t: Target,
) -> Vec<NdArray> {
    let k = build(s, args, t).unwrap_or_else(|e| panic!("build failed: {}", e));
    let mut outs: Vec<NdArray> = out_shapes
        .iter()
        .map(|(s, d)| NdArray::zeros(s, *d))
        .collect();
    let mut refs: Vec<&mut NdArray> = outs.iter_mut().collect();
    k.run(inputs, &mut refs)
        .unwrap_or_else(|e| panic!("run failed: {}", e));
    outs
}

/// Assert two arrays agree within a tolerance suited to f32 accumulation.
pub fn assert_close(got: &NdArray, want: &NdArray, what: &str) {
    let d = got.max_abs_diff(want);
    assert!(
        got.allclose(want, 1e-4, 1e-4),
        "{}: max abs diff {} ({:?} vs {:?})",
        what,
        d,
        got,
        want
    );
}

/// Constant shape of a tensor (panics on symbolic shapes: tests use constant ones here).
pub fn const_shape(t: &Tensor) -> Vec<usize> {
    t.shape()
        .iter()
        .map(|d| d.as_int().expect("constant shape") as usize)
        .collect()
}

/// Random inputs for the placeholders among `args`, zeros for the rest; in `args` order.
pub fn make_args(args: &[Tensor], seed: u64) -> Vec<NdArray> {
    args.iter()
        .enumerate()
        .map(|(i, t)| {
            let sh = const_shape(t);
            if t.op.is_placeholder() {
                NdArray::random(&sh, t.dtype(), seed + i as u64)
            } else {
                NdArray::zeros(&sh, t.dtype())
            }
        })
        .collect()
}

/// Run `s` on `target` with the arrays from [`make_args`]; returns all arrays after the call.
pub fn run_all(s: &Schedule, args: &[Tensor], target: Target, seed: u64) -> Vec<NdArray> {
    let k = build(s, args, target).unwrap_or_else(|e| panic!("build failed: {}", e));
    let mut arrs = make_args(args, seed);
    let mut refs: Vec<&mut NdArray> = arrs.iter_mut().collect();
    k.call(&mut refs)
        .unwrap_or_else(|e| panic!("call failed: {}", e));
    arrs
}

/// Compare the outputs (non-placeholder args) of two runs.
pub fn assert_outputs_close(args: &[Tensor], got: &[NdArray], want: &[NdArray], what: &str) {
    for (i, t) in args.iter().enumerate() {
        if !t.op.is_placeholder() {
            assert_close(
                &got[i],
                &want[i],
                &format!("{} (output {})", what, t.name()),
            );
        }
    }
}

/// `s`'s IR against the golden file `name`; the schedule replayed from its trace lowers
/// to the same IR.
pub fn golden_and_replay(name: &str, s: &Schedule, out: &Tensor, args: &[Tensor]) {
    let text = lower(s, args).unwrap().to_string();
    golden(name, &text);
    let replayed = Schedule::replay(&[out.clone()], &s.trace_json()).unwrap();
    assert_eq!(lower(&replayed, args).unwrap().to_string(), text);
}

/// Compare `text` with the golden file `tests/golden/<name>.txt`; `LOOPFORGE_BLESS=1`
/// rewrites the file instead.
pub fn golden(name: &str, text: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{}.txt", name));
    if std::env::var("LOOPFORGE_BLESS")
        .map(|v| v == "1")
        .unwrap_or(false)
    {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "golden file {} is missing; run with LOOPFORGE_BLESS=1 to create it",
            path.display()
        )
    });
    assert_eq!(
        text,
        want,
        "lowered IR differs from {} (LOOPFORGE_BLESS=1 rewrites it)",
        path.display()
    );
}

/// The test triple every schedule primitive gets: golden IR, numeric equality with the
/// unscheduled computation on the interpreter and the JIT, and trace replay.
pub fn check_primitive(
    name: &str,
    outputs: &[Tensor],
    args: &[Tensor],
    apply: impl Fn(&mut Schedule) -> Result<()>,
) {
    let mut s = create_schedule(outputs).unwrap();
    apply(&mut s).unwrap_or_else(|e| panic!("{}: schedule failed: {}", name, e));
    let f = lower(&s, args).unwrap_or_else(|e| panic!("{}: lower failed: {}", name, e));
    let text = f.to_string();
    golden(name, &text);

    let base = create_schedule(outputs).unwrap();
    let want = run_all(&base, args, Target::interp(), 7);
    let got = run_all(&s, args, Target::interp(), 7);
    assert_outputs_close(args, &got, &want, &format!("{} on the interpreter", name));
    let got = run_all(&s, args, Target::cpu(), 7);
    assert_outputs_close(args, &got, &want, &format!("{} on the CPU JIT", name));

    let json = s.trace_json();
    let replayed = Schedule::replay(outputs, &json)
        .unwrap_or_else(|e| panic!("{}: replay failed: {}", name, e));
    assert_eq!(replayed.trace, s.trace, "{}: replayed trace differs", name);
    let f2 = lower(&replayed, args).unwrap();
    assert_eq!(
        f2.to_string(),
        text,
        "{}: the replayed schedule lowers differently",
        name
    );
    let got = run_all(&replayed, args, Target::cpu(), 7);
    assert_outputs_close(
        args,
        &got,
        &want,
        &format!("{} replayed, on the CPU JIT", name),
    );
}

/// Assert that `r` is a schedule error whose message contains `needle`.
pub fn assert_sched_err<T: std::fmt::Debug>(r: Result<T>, needle: &str) {
    match r {
        Err(Error::Schedule { stage, msg }) => {
            let full = format!("In schedule for {}: {}", stage, msg);
            assert!(
                full.contains(needle),
                "error message {:?} lacks {:?}",
                full,
                needle
            );
        }
        other => panic!(
            "expected a schedule error containing {:?}, got {:?}",
            needle, other
        ),
    }
}

// ---------------------------------------------------------------- half precision

/// `C[i] = A[i] * B[i] + 1.5` over `n` elements of half type `dt` (`float16` or
/// `bfloat16`): two roundings per element.
pub fn half_mul_add(dt: DType, n: i64) -> (Tensor, Tensor, Tensor) {
    let a = placeholder(&[n.into()], dt, "A");
    let b = placeholder(&[n.into()], dt, "B");
    let c = compute(&[n.into()], "C", |i| {
        a.at(&[i[0].clone()]) * b.at(&[i[0].clone()]) + cast(dt, 1.5f32)
    });
    (a, b, c)
}

/// `S[i] = sum_k float32(A[i, k])` with `A` of half type `dt`, `m x n`.
pub fn half_cast_row_sum(dt: DType, m: i64, n: i64) -> (Tensor, Tensor) {
    let a = placeholder(&[m.into(), n.into()], dt, "A");
    let k = reduce_axis(0, n, "k");
    let s = compute(&[m.into()], "S", |i| {
        sum(cast(DType::F32, a.at(&[i[0].clone(), k.x()])), &[k.clone()])
    });
    (a, s)
}

/// `C[i, j] = sum_k float32(A[i, k]) * float32(B[k, j])`: half inputs, f32 accumulator.
pub fn half_matmul_f32_acc(dt: DType, m: i64, n: i64, kk: i64) -> (Tensor, Tensor, Tensor) {
    let a = placeholder(&[m.into(), kk.into()], dt, "A");
    let b = placeholder(&[kk.into(), n.into()], dt, "B");
    let k = reduce_axis(0, kk, "k");
    let c = compute(&[m.into(), n.into()], "C", |i| {
        sum(
            cast(DType::F32, a.at(&[i[0].clone(), k.x()]))
                * cast(DType::F32, b.at(&[k.x(), i[1].clone()])),
            &[k.clone()],
        )
    });
    (a, b, c)
}

/// An array of half type `dt` of arbitrary bit patterns (NaNs, infinities, subnormals and
/// all), deterministic in `seed`.
pub fn half_bits_array(shape: &[usize], dt: DType, seed: u64) -> NdArray {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 32) as u16
    };
    match dt {
        DType::F16 => NdArray::from_fn(shape, |_| f16::from_bits(next())),
        DType::BF16 => NdArray::from_fn(shape, |_| bf16::from_bits(next())),
        _ => panic!("half_bits_array: {} is not a half type", dt),
    }
}

/// The bit patterns of a half array (`float16` or `bfloat16`).
pub fn half_bits(a: &NdArray) -> Vec<u16> {
    match a.dtype() {
        DType::F16 => a
            .as_slice::<f16>()
            .unwrap()
            .iter()
            .map(|x| x.to_bits())
            .collect(),
        DType::BF16 => a
            .as_slice::<bf16>()
            .unwrap()
            .iter()
            .map(|x| x.to_bits())
            .collect(),
        d => panic!("half_bits: {} is not a half type", d),
    }
}

/// Assert that two arrays are equal bit for bit (any NaN equals any NaN: payloads may
/// differ between backends), for half, f32 and f64 arrays.
pub fn assert_bit_exact(got: &NdArray, want: &NdArray, what: &str) {
    assert_eq!(
        (got.dtype(), got.shape()),
        (want.dtype(), want.shape()),
        "{}",
        what
    );
    let bits = |a: &NdArray| -> Vec<u64> {
        match a.dtype() {
            DType::F16 | DType::BF16 => half_bits(a).into_iter().map(|b| b as u64).collect(),
            DType::F32 => a
                .as_slice::<f32>()
                .unwrap()
                .iter()
                .map(|x| x.to_bits() as u64)
                .collect(),
            DType::F64 => a
                .as_slice::<f64>()
                .unwrap()
                .iter()
                .map(|x| x.to_bits())
                .collect(),
            d => panic!("assert_bit_exact: unsupported dtype {}", d),
        }
    };
    let (g, w) = (bits(got), bits(want));
    let mut bad = 0;
    for i in 0..g.len() {
        let (x, y) = (got.get_f64(i), want.get_f64(i));
        if g[i] != w[i] && !(x.is_nan() && y.is_nan()) {
            if bad < 5 {
                eprintln!(
                    "{}: element {}: {} ({:#x}) vs {} ({:#x})",
                    what, i, x, g[i], y, w[i]
                );
            }
            bad += 1;
        }
    }
    assert_eq!(bad, 0, "{}: {} of {} elements differ", what, bad, g.len());
}

/// A small deterministic generator (LCG) for property tests.
pub struct Rng(pub u64);

impl Rng {
    /// A value in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }

    /// A value in `[lo, hi)`.
    #[allow(dead_code)]
    pub fn f32_in(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * (self.below(1 << 24) as f32 / (1u32 << 24) as f32)
    }
}

/// `s` on the interpreter and the CPU JIT against the unscheduled computation of
/// `outputs` on the interpreter (the oracle), all arrays drawn from `seed`.
#[allow(dead_code)]
pub fn check_against_unscheduled(
    s: &Schedule,
    args: &[Tensor],
    outputs: &[Tensor],
    seed: u64,
    what: &str,
) {
    let want = run_all(
        &create_schedule(outputs).unwrap(),
        args,
        Target::interp(),
        seed,
    );
    for target in [Target::interp(), Target::cpu()] {
        let got = run_all(s, args, target, seed);
        assert_outputs_close(args, &got, &want, what);
    }
}

/// BLIS's blocking by hand around `gemm_f32_panels`, any sizes: `A` and `B` packed in
/// panels per block, the `mc x nc x kc` block tensorized. Blocks that overhang the rows
/// or the columns are partial (the packed buffers padded with zeros).
pub fn panels_by_hand(
    c: &Tensor,
    a: &Tensor,
    b: &Tensor,
    [mr, nr, mc, nc, kc]: [i64; 5],
) -> Schedule {
    let mut s = create_schedule(&[c.clone()]).unwrap();
    let ap = s.cache_read(a, "global", &[c]).unwrap();
    let bp = s.cache_read(b, "global", &[c]).unwrap();
    let [i, j] = s.axes2(c).unwrap();
    let k = s.reduce_axes(c).unwrap().remove(0);
    let (jc, jrest) = s.split(c, &j, nc).unwrap();
    let (ic, irest) = s.split(c, &i, mc).unwrap();
    let (pc, ki) = s.split(c, &k, kc).unwrap();
    s.reorder(c, &[&jc, &pc, &ic, &irest, &jrest, &ki]).unwrap();
    for (t, dim, width, at) in [(&ap, 0, mr, &ic), (&bp, 1, nr, &pc)] {
        s.transform_layout(
            t,
            &[
                loopforge::schedule::LayoutDim::outer(dim, width),
                loopforge::schedule::LayoutDim::dim(1 - dim),
                loopforge::schedule::LayoutDim::inner(dim, width),
            ],
        )
        .unwrap();
        s.compute_at(t, c, at).unwrap();
    }
    s.tensorize(
        c,
        &irest,
        &loopforge::intrinsics::gemm_f32_panels(mc, nc, kc, mr, nr).unwrap(),
    )
    .unwrap();
    s
}
