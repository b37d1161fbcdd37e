//! `float16` and `bfloat16` end to end on the interpreter and the CPU JIT: the backends
//! agree bit for bit (halves round after every operation, so there is no fused
//! multiply-add to excuse a difference) with each other and with a reference written with
//! the `half` crate, on inputs of arbitrary bit patterns (NaNs, infinities, subnormals),
//! scalar and vectorized (`f16x8` on the CPU); casts to and from f32; reductions with a
//! half and with an f32 accumulator; a matmul of half inputs accumulated in f32, and an
//! all-half matmul under the register-blocked CPU schedule.
//! The CUDA side of the same kernels is in `cuda_codegen.rs`.

mod common;
use common::*;
use loopforge::prelude::*;

const HALVES: [DType; 2] = [DType::F16, DType::BF16];

/// `x` rounded to half type `dt` (through f32, as every conversion to a half).
fn round(dt: DType, x: f32) -> f32 {
    match dt {
        DType::F16 => f16::from_f32(x).to_f32(),
        _ => bf16::from_f32(x).to_f32(),
    }
}

/// The value of element `i` of a half array, as f32 (exact).
fn val(a: &NdArray, i: usize) -> f32 {
    a.get_f64(i) as f32
}

/// An array of half type `dt` from f32 values (rounded).
fn half_array(shape: &[usize], dt: DType, f: impl Fn(usize) -> f32) -> NdArray {
    match dt {
        DType::F16 => NdArray::from_fn(shape, |i| f16::from_f32(f(i))),
        _ => NdArray::from_fn(shape, |i| bf16::from_f32(f(i))),
    }
}

/// Run `s` on the interpreter and the CPU with the same arrays; returns both results.
fn interp_and_cpu(s: &Schedule, args: &[Tensor], arrays: &[NdArray]) -> [Vec<NdArray>; 2] {
    [Target::interp(), Target::cpu()].map(|t| {
        let k = build(s, args, t.clone()).unwrap_or_else(|e| panic!("build for {:?}: {}", t, e));
        let mut arrs: Vec<NdArray> = arrays.to_vec();
        let mut refs: Vec<&mut NdArray> = arrs.iter_mut().collect();
        k.call(&mut refs)
            .unwrap_or_else(|e| panic!("call on {:?}: {}", t, e));
        arrs
    })
}

/// The schedules every elementwise kernel runs with: none; split by 8 with the inner
/// loop vectorized (eight halves are 128 bits) and the outer one parallel.
fn elementwise_schedules(c: &Tensor) -> Vec<(&'static str, Schedule)> {
    let plain = create_schedule(&[c.clone()]).unwrap();
    let mut vec = create_schedule(&[c.clone()]).unwrap();
    let i = vec.axes(c).unwrap().remove(0);
    let (io, ii) = vec.split(c, &i, 8).unwrap();
    vec.vectorize(c, &ii).unwrap();
    vec.parallel(c, &io).unwrap();
    vec![("unscheduled", plain), ("vectorized", vec)]
}

#[test]
fn mul_add_is_bit_exact_on_interp_and_cpu() {
    let n = 1003; // not a multiple of the vector width: a scalar tail too
    for dt in HALVES {
        let (a, b, c) = half_mul_add(dt, n);
        let args = [a, b, c.clone()];
        let x = half_bits_array(&[n as usize], dt, 1);
        let y = half_bits_array(&[n as usize], dt, 2);
        let z = NdArray::zeros(&[n as usize], dt);
        // The reference: round after the product, round after the sum.
        let want = half_array(&[n as usize], dt, |i| {
            round(dt, round(dt, val(&x, i) * val(&y, i)) + 1.5)
        });
        for (name, s) in elementwise_schedules(&c) {
            let f = lower(&s, &args).unwrap();
            if name == "vectorized" {
                let ir = f.to_string();
                assert!(
                    ir.contains("ramp("),
                    "{} {}: not vectorized:\n{}",
                    dt,
                    name,
                    ir
                );
            }
            let [interp, cpu] = interp_and_cpu(&s, &args, &[x.clone(), y.clone(), z.clone()]);
            let what = format!("{} {}", dt, name);
            assert_bit_exact(&interp[2], &want, &format!("{} interp vs reference", what));
            assert_bit_exact(&cpu[2], &interp[2], &format!("{} cpu vs interp", what));
        }
    }
}

#[test]
fn mixed_operations_are_bit_exact_on_interp_and_cpu() {
    // Comparisons, select, min/max, division, fmod, math, casts to int and back, a
    // float64 constant and a float32 operand: every kind of half operation.
    let n = 517i64;
    for dt in HALVES {
        let a = placeholder(&[n.into()], dt, "A");
        let b = placeholder(&[n.into()], dt, "B");
        let f = placeholder(&[n.into()], DType::F32, "F");
        let c = compute(&[n.into()], "C", |i| {
            let (x, y) = (a.at(&[i[0].clone()]), b.at(&[i[0].clone()]));
            let z = f.at(&[i[0].clone()]);
            let w = select(
                gt(x.clone(), y.clone()),
                max(x.clone(), y.clone()) - sqrt(abs(x.clone())),
                min(x.clone(), y.clone()) / (y.clone() + 3.0f32),
            );
            let v = cast(dt, cast(DType::I32, x.clone() * 100.0f32)) / 7.0f32;
            let u = floormod(x.clone(), 0.3f32) + exp(y.clone() * 0.5f32) - tanh(x.clone());
            w + v + u + cast(dt, z) * cast(dt, 0.1f64)
        });
        let args = [a, b, f, c.clone()];
        let x = half_array(&[n as usize], dt, |i| (i as f32 - 250.0) * 0.0371);
        let y = half_bits_array(&[n as usize], dt, 7);
        let z = NdArray::random(&[n as usize], DType::F32, 3);
        let out = NdArray::zeros(&[n as usize], dt);
        for (name, s) in elementwise_schedules(&c) {
            let [interp, cpu] =
                interp_and_cpu(&s, &args, &[x.clone(), y.clone(), z.clone(), out.clone()]);
            assert_bit_exact(&cpu[3], &interp[3], &format!("{} {}", dt, name));
            // Not everything is NaN (the comparison would be vacuous).
            let finite = (0..n as usize)
                .filter(|&i| interp[3].get_f64(i).is_finite())
                .count();
            assert!(
                finite > n as usize / 3,
                "{} {}: only {} finite",
                dt,
                name,
                finite
            );
        }
    }
}

#[test]
fn cast_to_f32_and_row_sum() {
    let (m, n) = (37i64, 129i64);
    for dt in HALVES {
        let (a, s_t) = half_cast_row_sum(dt, m, n);
        let args = [a, s_t.clone()];
        let x = half_array(&[m as usize, n as usize], dt, |i| {
            ((i * 7919 % 1000) as f32 - 500.0) * 0.013
        });
        let want = NdArray::from_fn(&[m as usize], |i| {
            let mut acc = 0.0f32;
            for k in 0..n as usize {
                acc += val(&x, i * n as usize + k);
            }
            acc
        });
        let s = create_schedule(&[s_t.clone()]).unwrap();
        let [interp, cpu] = interp_and_cpu(
            &s,
            &args,
            &[x.clone(), NdArray::zeros(&[m as usize], DType::F32)],
        );
        assert_bit_exact(&interp[1], &want, &format!("{} interp vs reference", dt));
        assert_bit_exact(&cpu[1], &interp[1], &format!("{} cpu vs interp", dt));
    }
}

#[test]
fn half_accumulator_rounds_at_every_step() {
    // A sum in the half type itself: 1 + 2^-12 + 2^-12 + ... stays 1 in f16 (each step
    // ties or rounds back down), which an f32 accumulator would not.
    let (m, n) = (3i64, 300i64);
    for dt in HALVES {
        let a = placeholder(&[m.into(), n.into()], dt, "A");
        let k = reduce_axis(0, n, "k");
        let s_t = compute(&[m.into()], "S", |i| {
            sum(a.at(&[i[0].clone(), k.x()]), &[k.clone()])
        });
        let args = [a, s_t.clone()];
        let x = half_array(&[m as usize, n as usize], dt, |i| {
            let (r, k) = (i / n as usize, i % n as usize);
            match (r, k) {
                (0, 0) => 1.0,
                (0, _) => 2f32.powi(-12),
                _ => ((i * 31 % 17) as f32 - 8.0) * 0.37,
            }
        });
        let want = half_array(&[m as usize], dt, |i| {
            let mut acc = 0.0f32;
            for k in 0..n as usize {
                acc = round(dt, acc + val(&x, i * n as usize + k));
            }
            acc
        });
        assert_eq!(want.get_f64(0), 1.0, "{}: the reference itself", dt);
        let s = create_schedule(&[s_t.clone()]).unwrap();
        let [interp, cpu] = interp_and_cpu(&s, &args, &[x, NdArray::zeros(&[m as usize], dt)]);
        assert_bit_exact(&interp[1], &want, &format!("{} interp vs reference", dt));
        assert_bit_exact(&cpu[1], &interp[1], &format!("{} cpu vs interp", dt));
    }
}

#[test]
fn matmul_with_half_inputs_and_f32_accumulator() {
    let (m, n, kk) = (24i64, 20i64, 33i64);
    for dt in HALVES {
        let (a, b, c) = half_matmul_f32_acc(dt, m, n, kk);
        let args = [a, b, c.clone()];
        let x = NdArray::random(&[m as usize, kk as usize], dt, 11);
        let y = NdArray::random(&[kk as usize, n as usize], dt, 12);
        let z = NdArray::zeros(&[m as usize, n as usize], DType::F32);
        // The reference in f64 from the exact half values.
        let want = NdArray::from_fn(&[m as usize, n as usize], |p| {
            let (i, j) = (p / n as usize, p % n as usize);
            (0..kk as usize)
                .map(|k| x.get_f64(i * kk as usize + k) * y.get_f64(k * n as usize + j))
                .sum::<f64>() as f32
        });
        let plain = create_schedule(&[c.clone()]).unwrap();
        let mut tiled = create_schedule(&[c.clone()]).unwrap();
        let [i, j] = tiled.axes2(&c).unwrap();
        let (io, _jo, _ii, ji) = tiled.tile(&c, &i, &j, 8, 4).unwrap();
        tiled.vectorize(&c, &ji).unwrap();
        tiled.parallel(&c, &io).unwrap();
        for (name, s) in [("unscheduled", plain), ("tiled", tiled)] {
            let [interp, cpu] = interp_and_cpu(&s, &args, &[x.clone(), y.clone(), z.clone()]);
            let what = format!("{} {}", dt, name);
            // f32 accumulation (the JIT may fuse a*b+c): a tolerance, against f64.
            assert_close(&interp[2], &want, &format!("{} interp vs reference", what));
            assert_close(&cpu[2], &want, &format!("{} cpu vs reference", what));
        }
    }
}

#[test]
fn half_arrays_convert_and_compare_through_f32() {
    let a = NdArray::from_vec(&[3], vec![f16::from_f32(1.5), f16::NAN, f16::MAX]).unwrap();
    assert_eq!(a.dtype(), DType::F16);
    assert_eq!(a.nbytes(), 6);
    assert_eq!(a.to_f64_vec()[2], 65504.0);
    assert!(a.get_f64(1).is_nan());
    let b = NdArray::from_vec(&[3], vec![f16::from_f32(1.5), f16::NAN, f16::INFINITY]).unwrap();
    assert_eq!(a.max_abs_diff(&b), f64::INFINITY);
    assert!(!a.allclose(&b, 1e-3, 1e-3));
    let c = NdArray::from_vec(&[3], vec![f16::from_f32(1.5009766), f16::NAN, f16::MAX]).unwrap();
    assert!((a.max_abs_diff(&c) - 2f64.powi(-10)).abs() < 1e-12);
    assert!(a.allclose(&c, 1e-3, 0.0) && !a.allclose(&c, 1e-4, 0.0));
    // Typed access checks the dtype.
    let bf = NdArray::random(&[4, 4], DType::BF16, 1);
    assert!(bf
        .as_slice::<bf16>()
        .unwrap()
        .iter()
        .all(|v| v.to_f32().abs() <= 1.0));
    let err = bf.as_slice::<f16>().unwrap_err().to_string();
    assert!(
        err.contains("array holds bfloat16 but was accessed as float16"),
        "{}",
        err
    );
    // random rounds the same f32 sequence as float32 arrays.
    let r32 = NdArray::random(&[16], DType::F32, 5);
    let r16 = NdArray::random(&[16], DType::F16, 5);
    for i in 0..16 {
        assert_eq!(
            r16.get_f64(i) as f32,
            round(DType::F16, r32.get_f64(i) as f32)
        );
    }
}

#[test]
fn half_constants_print_with_their_type() {
    let (a, b, c) = half_mul_add(DType::BF16, 16);
    let s = create_schedule(&[c.clone()]).unwrap();
    let ir = lower(&s, &[a, b, c]).unwrap().to_string();
    assert!(ir.contains("+ 1.5bf16"), "{}", ir);
    let x = cast(DType::F16, 0.1f64);
    assert_eq!(x.to_string(), "0.099975586f16");
    assert_eq!(x.as_float(), Some(f16::from_f32(0.1).to_f64()));
}

#[test]
fn half_matmul_register_blocked_is_bit_exact() {
    // Everything in the half type (the accumulator too, rounded after every product and
    // every sum) under the CPU matmul schedule: a local 4x8 accumulator kept in registers
    // as i16x8 vectors, B packed, the reduction unrolled by 2, column blocks in parallel.
    let (m, n, kk) = (16usize, 24usize, 20usize);
    for dt in HALVES {
        let a = placeholder(&[ci(m), ci(kk)], dt, "A");
        let b = placeholder(&[ci(kk), ci(n)], dt, "B");
        let k = reduce_axis(0, kk as i64, "k");
        let c = compute(&[ci(m), ci(n)], "C", |i| {
            sum(
                a.at(&[i[0].clone(), k.x()]) * b.at(&[k.x(), i[1].clone()]),
                &[k.clone()],
            )
        });
        let args = [a, b, c.clone()];
        let x = NdArray::random(&[m, kk], dt, 21);
        let y = NdArray::random(&[kk, n], dt, 22);
        let want = half_array(&[m, n], dt, |p| {
            let (i, j) = (p / n, p % n);
            let mut acc = 0.0f32;
            for k in 0..kk {
                acc = round(
                    dt,
                    acc + round(dt, val(&x, i * kk + k) * val(&y, k * n + j)),
                );
            }
            acc
        });
        let cfg = loopforge::schedules::MatmulConfig {
            mr: 4,
            nr: 8,
            pack_b: true,
            k_unroll: 2,
            threads: 2,
            ..Default::default()
        };
        let s = loopforge::schedules::matmul_cpu_with(&c, cfg).unwrap();
        let ir = lower(&s, &args).unwrap().to_string();
        assert!(ir.contains("ramp(") && ir.contains("C.local"), "{}", ir);
        let [interp, cpu] = interp_and_cpu(&s, &args, &[x, y, NdArray::zeros(&[m, n], dt)]);
        assert_bit_exact(&interp[2], &want, &format!("{} interp vs reference", dt));
        assert_bit_exact(&cpu[2], &interp[2], &format!("{} cpu vs interp", dt));
    }
}

/// A constant extent.
fn ci(n: usize) -> Expr {
    Expr::int(n as i64)
}
