//! The CUDA backend on GPU-bound schedules written with the schedule API. Each kernel is
//! (a) run on the interpreter's GPU simulation against the unscheduled computation, (b)
//! golden-checked on characteristic lines of its CUDA source, (c) compiled with NVRTC for
//! compute_80 and compute_90 and built with `Target::cuda_arch`. Where a GPU is present
//! it also runs there against the reference; without one, `call` must say so.
//!
//! NVRTC comes from the pip wheel nvidia-cuda-nvrtc-cu12 (LD_LIBRARY_PATH must name its
//! `nvidia/cuda_nvrtc/lib`). Without it the NVRTC checks print "skipping: libnvrtc.so.12
//! not found", unless LOOPFORGE_REQUIRE_NVRTC=1 (CI), where they fail.

mod common;
use common::*;
use loopforge::codegen_cuda::{self, compile_ptx, emit, nvrtc_available, CudaSource};
use loopforge::prelude::*;
use loopforge::schedules;

// ---------------------------------------------------------------- helpers

/// Whether NVRTC checks can run here (see the file doc).
fn nvrtc() -> bool {
    if nvrtc_available() {
        return true;
    }
    if std::env::var("LOOPFORGE_REQUIRE_NVRTC").is_ok_and(|v| v == "1") {
        panic!("LOOPFORGE_REQUIRE_NVRTC=1 but libnvrtc.so.12 was not found: pip install nvidia-cuda-nvrtc-cu12 and add <site-packages>/nvidia/cuda_nvrtc/lib to LD_LIBRARY_PATH");
    }
    eprintln!("skipping: libnvrtc.so.12 not found");
    false
}

/// Assemble `ptx` for `sm_<sm>` with ptxas where `LOOPFORGE_PTXAS` names it (`.ci/run`
/// sets it to the pip wheel nvidia-cuda-nvcc-cu12's): inline PTX is checked only there.
fn assemble(name: &str, ptx: &str, sm: &str) {
    let Ok(ptxas) = std::env::var("LOOPFORGE_PTXAS") else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("loopforge_ptxas_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!(
        "{}_{}.ptx",
        name.replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
        sm
    ));
    std::fs::write(&file, ptx).unwrap();
    let out = std::process::Command::new(&ptxas)
        .arg(format!("-arch=sm_{}", sm))
        .arg(&file)
        .arg("-o")
        .arg(file.with_extension("cubin"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run ptxas {}: {}", ptxas, e));
    assert!(
        out.status.success(),
        "{}: ptxas rejected the PTX for sm_{}:\n{}",
        name,
        sm,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// (b) and (c): emit `s`, check that the source contains every line of `expect`, compile
/// it with NVRTC for compute_80 and compute_90, and build it for the GPU.
fn check_source(name: &str, s: &Schedule, args: &[Tensor], expect: &[&str]) -> CudaSource {
    let f = lower(s, args).unwrap_or_else(|e| panic!("{}: lower failed: {}", name, e));
    let src = emit(&f).unwrap_or_else(|e| panic!("{}: emit failed: {}", name, e));
    for line in expect {
        assert!(
            src.code.contains(line),
            "{}: the CUDA source lacks {:?}:\n{}",
            name,
            line,
            src.code
        );
    }
    if nvrtc() {
        for arch in ["compute_80", "compute_90"] {
            let ptx = compile_ptx(&src, arch).unwrap_or_else(|e| panic!("{}: {}", name, e));
            assemble(name, &ptx, &arch["compute_".len()..]);
            assert!(
                ptx.contains(&format!(".entry {}(", src.kernel_name)),
                "{}: no entry point in the PTX",
                name
            );
            assert!(
                ptx.contains(&format!(".target sm_{}", &arch["compute_".len()..])),
                "{}: PTX for the wrong target",
                name
            );
        }
        let k = build(s, args, Target::cuda_arch("sm_90"))
            .unwrap_or_else(|e| panic!("{}: build for CUDA failed: {}", name, e));
        assert_eq!(k.cuda_source(), Some(src.code.as_str()), "{}", name);
        assert!(
            k.ptx().is_some_and(|p| p.contains(".target sm_90")),
            "{}",
            name
        );
    }
    src
}

/// The GPU run: compare with `want` where a GPU is present; otherwise `call` must be a
/// target error saying that no GPU is available.
fn check_gpu_run(
    name: &str,
    s: &Schedule,
    args: &[Tensor],
    arrays: Vec<NdArray>,
    want: &[NdArray],
) {
    if let Some(arrs) = gpu_call(name, s, args, arrays) {
        assert_outputs_close(args, &arrs, want, &format!("{} on the GPU", name));
    }
}

/// Call the CUDA kernel of `s` on `arrays`: the arrays after the call where a GPU is
/// present; `None` where NVRTC is absent, or where there is no GPU (then `call` must be a
/// target error saying so).
fn gpu_call(
    name: &str,
    s: &Schedule,
    args: &[Tensor],
    arrays: Vec<NdArray>,
) -> Option<Vec<NdArray>> {
    if !nvrtc() {
        return None;
    }
    let k = build(s, args, Target::cuda()).unwrap_or_else(|e| panic!("{}: {}", name, e));
    let mut arrs = arrays;
    let mut refs: Vec<&mut NdArray> = arrs.iter_mut().collect();
    let r = k.call(&mut refs);
    if std::env::var("LOOPFORGE_REQUIRE_GPU").is_ok_and(|v| v == "1")
        && codegen_cuda::device_arch().is_none()
    {
        panic!("LOOPFORGE_REQUIRE_GPU=1 but no CUDA device could be opened (driver missing?)");
    }
    if codegen_cuda::device_arch().is_some() {
        r.unwrap_or_else(|e| panic!("{}: GPU run failed: {}", name, e));
        Some(arrs)
    } else {
        match r {
            Err(Error::Target(m)) => assert!(m.contains("no GPU is available"), "{}: {}", name, m),
            other => panic!("{}: expected a no-GPU target error, got {:?}", name, other),
        }
        None
    }
}

/// The scheduled kernel on the interpreter and (where present) the GPU with the same
/// `arrays`: the outputs must agree bit for bit (any NaN matching any NaN).
fn check_bit_exact(name: &str, s: &Schedule, args: &[Tensor], arrays: Vec<NdArray>) {
    let k = build(s, args, Target::interp()).unwrap();
    let mut want = arrays.clone();
    let mut refs: Vec<&mut NdArray> = want.iter_mut().collect();
    k.call(&mut refs)
        .unwrap_or_else(|e| panic!("{}: interpreter: {}", name, e));
    if let Some(got) = gpu_call(name, s, args, arrays) {
        for (i, t) in args.iter().enumerate() {
            if !t.op.is_placeholder() {
                let what = format!("{} on the GPU vs the interpreter ({})", name, t.name());
                assert_bit_exact(&got[i], &want[i], &what);
            }
        }
    }
}

/// (a) for constant shapes: the scheduled kernel on the interpreter against the
/// unscheduled computation, then the GPU run.
fn check_numerics(name: &str, outputs: &[Tensor], s: &Schedule, args: &[Tensor]) {
    let want = run_all(
        &create_schedule(outputs).unwrap(),
        args,
        Target::interp(),
        5,
    );
    let got = run_all(s, args, Target::interp(), 5);
    assert_outputs_close(args, &got, &want, &format!("{} on the interpreter", name));
    check_gpu_run(name, s, args, make_args(args, 5), &want);
}

fn dims(src: &CudaSource, shape_vals: &[i64]) -> ([u32; 3], [u32; 3]) {
    src.launch.dims(shape_vals).unwrap()
}

fn expect_target_err<T>(r: Result<T>, needle: &str) -> String {
    match r {
        Err(Error::Target(m)) => {
            assert!(m.contains(needle), "message {:?} lacks {:?}", m, needle);
            m
        }
        Err(e) => panic!("expected a target error containing {:?}, got {}", needle, e),
        Ok(_) => panic!("expected a target error containing {:?}, got Ok", needle),
    }
}

// ---------------------------------------------------------------- kernels

#[test]
fn elementwise_add_split_and_bound() {
    let n = 1000i64; // not a multiple of 64: the last block has idle threads
    let a = placeholder(&[n.into()], DType::F32, "A");
    let b = placeholder(&[n.into()], DType::F32, "B");
    let c = compute(&[n.into()], "C", |i| {
        a.at(&[i[0].clone()]) + b.at(&[i[0].clone()])
    });
    let args = [a, b, c.clone()];
    let mut s = create_schedule(&[c.clone()]).unwrap();
    let i = s.axes(&c).unwrap().remove(0);
    let (bx, tx) = s.split(&c, &i, 64).unwrap();
    s.bind(&c, &bx, "blockIdx.x").unwrap();
    s.bind(&c, &tx, "threadIdx.x").unwrap();
    check_numerics("add", &[c.clone()], &s, &args);
    let src = check_source(
        "add",
        &s,
        &args,
        &[
            "extern \"C\" __global__ void __launch_bounds__(64) main_kernel(",
            "const float* __restrict__ A",
            "const float* __restrict__ B",
            "float* __restrict__ C",
            "const long long i_outer = blockIdx.x;",
            "const long long i_inner = threadIdx.x;",
            "< 1000",
            "] = A[",
        ],
    );
    assert_eq!(src.kernel_name, "main_kernel");
    assert_eq!(dims(&src, &[]), ([16, 1, 1], [64, 1, 1]));
    assert_eq!(src.launch.const_threads_per_block(), Some(64));
}

/// float16/bfloat16 `A * B + 1.5`, one element per thread, on arbitrary bit patterns:
/// `unsigned short` parameters, conversions through the prelude helpers, a rounding after
/// the product and after the sum; the GPU agrees with the interpreter bit for bit. Also
/// with a vectorized axis of 8 halves per thread (emitted lane by lane).
#[test]
fn half_mul_add_bit_exact() {
    let n = 1000i64;
    for (dt, tag, conv) in [
        (DType::F16, "f16", "lf_f16_to_f32"),
        (DType::BF16, "bf16", "lf_bf16_to_f32"),
    ] {
        let (a, b, c) = half_mul_add(dt, n);
        let args = [a, b, c.clone()];
        let arrays = vec![
            half_bits_array(&[n as usize], dt, 3),
            half_bits_array(&[n as usize], dt, 4),
            NdArray::zeros(&[n as usize], dt),
        ];
        let mut s = create_schedule(&[c.clone()]).unwrap();
        let i = s.axes(&c).unwrap().remove(0);
        let (bx, tx) = s.split(&c, &i, 64).unwrap();
        s.bind(&c, &bx, "blockIdx.x").unwrap();
        s.bind(&c, &tx, "threadIdx.x").unwrap();
        let name = format!("{} mul add", dt);
        check_numerics(&name, &[c.clone()], &s, &args);
        check_bit_exact(&name, &s, &args, arrays.clone());
        let store = format!(
            "C[inv0 + i_inner] = lf_f32_to_{tag}(lf_round_{tag}(lf_round_{tag}({conv}(A[inv0 + i_inner]) * {conv}(B[inv0 + i_inner])) + 1.5f));"
        );
        let src = check_source(
            &name,
            &s,
            &args,
            &[
                "const unsigned short* __restrict__ A",
                "const unsigned short* __restrict__ B",
                "unsigned short* __restrict__ C",
                &store,
            ],
        );
        assert!(!src.code.contains("#include"), "{}", src.code);

        // 1024 elements: the vectorized axis divides it (no guard, no tail loop).
        let (a, b, c) = half_mul_add(dt, 1024);
        let args = [a, b, c.clone()];
        let arrays = vec![
            half_bits_array(&[1024], dt, 5),
            half_bits_array(&[1024], dt, 6),
            NdArray::zeros(&[1024], dt),
        ];
        let mut s = create_schedule(&[c.clone()]).unwrap();
        let i = s.axes(&c).unwrap().remove(0);
        let (bx, rest) = s.split(&c, &i, 256).unwrap();
        let (tx, lane) = s.split(&c, &rest, 8).unwrap();
        s.bind(&c, &bx, "blockIdx.x").unwrap();
        s.bind(&c, &tx, "threadIdx.x").unwrap();
        s.vectorize(&c, &lane).unwrap();
        let name = format!("{} mul add, 8 lanes per thread", dt);
        check_bit_exact(&name, &s, &args, arrays);
        let src = check_source(&name, &s, &args, &["+ 7] = lf_f32_to_"]);
        assert!(!src.code.contains("for ("), "{}", src.code);
    }
}

/// A float16/bfloat16 matrix cast to float32 and summed over rows, one row per thread:
/// f32 additions only, so the GPU agrees with the interpreter bit for bit.
#[test]
fn half_cast_row_sum_bit_exact() {
    for dt in [DType::F16, DType::BF16] {
        let (a, b) = half_cast_row_sum(dt, 50, 33);
        let args = [a, b.clone()];
        let mut s = create_schedule(&[b.clone()]).unwrap();
        let i = s.axes(&b).unwrap().remove(0);
        let (bx, tx) = s.split(&b, &i, 16).unwrap();
        s.bind(&b, &bx, "blockIdx.x").unwrap();
        s.bind(&b, &tx, "threadIdx.x").unwrap();
        let name = format!("{} cast row sum", dt);
        check_numerics(&name, &[b.clone()], &s, &args);
        check_bit_exact(&name, &s, &args, make_args(&args, 9));
        let conv = if dt == DType::F16 {
            "(float)lf_f16_to_f32(A["
        } else {
            "(float)lf_bf16_to_f32(A["
        };
        check_source(
            &name,
            &s,
            &args,
            &[
                "const unsigned short* __restrict__ A",
                "float* __restrict__ S",
                conv,
            ],
        );
    }
}

/// A matmul of float16 inputs accumulated in float32, blocks and threads in two
/// dimensions (the shape tensor-core kernels start from).
#[test]
fn half_matmul_f32_accumulator() {
    let (a, b, c) = half_matmul_f32_acc(DType::F16, 37, 19, 23);
    let args = [a, b, c.clone()];
    let mut s = create_schedule(&[c.clone()]).unwrap();
    let [i, j] = s.axes2(&c).unwrap();
    let (bx, tx) = s.split(&c, &i, 8).unwrap();
    let (by, ty) = s.split(&c, &j, 4).unwrap();
    s.reorder(&c, &[&bx, &by, &tx, &ty]).unwrap();
    s.bind(&c, &bx, "blockIdx.x").unwrap();
    s.bind(&c, &tx, "threadIdx.x").unwrap();
    s.bind(&c, &by, "blockIdx.y").unwrap();
    s.bind(&c, &ty, "threadIdx.y").unwrap();
    check_numerics("f16 matmul", &[c.clone()], &s, &args);
    check_source(
        "f16 matmul",
        &s,
        &args,
        &[
            "const unsigned short* __restrict__ A",
            "float* __restrict__ C",
            "(float)lf_f16_to_f32(A[",
            "for (long long k = 0; k < 23; ++k) {",
        ],
    );
}

/// A vectorized inner axis (4 lanes per thread) is emitted lane by lane.
#[test]
fn vectorized_axis_inside_a_thread_uses_16_byte_vectors_when_aligned() {
    let n = 1024i64;
    // `shift` 0: every vector starts at a multiple of 4 (one float4 load and store);
    // `shift` 1: the loads of A are not provably aligned and stay scalar.
    for shift in [0i64, 1] {
        let a = placeholder(&[(n + 1).into()], DType::F32, "A");
        let c = compute(&[n.into()], "C", |i| {
            a.at(&[i[0].clone() + shift]) * 3.0f32 + 1.0f32
        });
        let args = [a, c.clone()];
        let mut s = create_schedule(&[c.clone()]).unwrap();
        let i = s.axes(&c).unwrap().remove(0);
        let (bx, rest) = s.split(&c, &i, 256).unwrap();
        let (tx, lane) = s.split(&c, &rest, 4).unwrap();
        s.bind(&c, &bx, "blockIdx.x").unwrap();
        s.bind(&c, &tx, "threadIdx.x").unwrap();
        s.vectorize(&c, &lane).unwrap();
        let name = format!("vectorized (shift {})", shift);
        check_numerics(&name, &[c.clone()], &s, &args);
        let expect: &[&str] = if shift == 0 {
            &[
                "const float4 A_vec = *reinterpret_cast<const float4*>(&A[",
                "*reinterpret_cast<float4*>(&C[",
                "make_float4(A_vec.x * 3.0f + 1.0f, A_vec.y * 3.0f + 1.0f,",
            ]
        } else {
            &["* 4 + 3] * 3.0f + 1.0f", "*reinterpret_cast<float4*>(&C["]
        };
        let src = check_source(&name, &s, &args, expect);
        assert_eq!(
            src.code.contains("const float4"),
            shift == 0,
            "{}",
            src.code
        );
        assert!(!src.code.contains("for ("), "{}", src.code);
        assert_eq!(dims(&src, &[]), ([4, 1, 1], [64, 1, 1]));
    }
}

#[test]
fn matmul_blocks_and_threads_in_two_dimensions() {
    let (a, b, c) = matmul(37, 19, 23);
    let args = [a, b, c.clone()];
    let mut s = create_schedule(&[c.clone()]).unwrap();
    let [i, j] = s.axes2(&c).unwrap();
    let (bx, tx) = s.split(&c, &i, 8).unwrap();
    let (by, ty) = s.split(&c, &j, 4).unwrap();
    s.reorder(&c, &[&bx, &by, &tx, &ty]).unwrap();
    s.bind(&c, &bx, "blockIdx.x").unwrap();
    s.bind(&c, &tx, "threadIdx.x").unwrap();
    s.bind(&c, &by, "blockIdx.y").unwrap();
    s.bind(&c, &ty, "threadIdx.y").unwrap();
    check_numerics("matmul", &[c.clone()], &s, &args);
    let src = check_source(
        "matmul",
        &s,
        &args,
        &[
            "__launch_bounds__(32)",
            "= blockIdx.x;",
            "= blockIdx.y;",
            "= threadIdx.x;",
            "= threadIdx.y;",
            "for (long long k = 0; k < 23; ++k) {",
        ],
    );
    assert_eq!(dims(&src, &[]), ([5, 5, 1], [8, 4, 1]));
}

#[test]
fn row_sum_with_threads_on_rows() {
    let (r, c) = (50i64, 33i64);
    let a = placeholder(&[r.into(), c.into()], DType::F32, "A");
    let k = reduce_axis(0, c, "k");
    let b = compute(&[r.into()], "B", |i| {
        sum(a.at(&[i[0].clone(), k.x()]), &[k.clone()])
    });
    let args = [a, b.clone()];
    let mut s = create_schedule(&[b.clone()]).unwrap();
    let i = s.axes(&b).unwrap().remove(0);
    let (bx, tx) = s.split(&b, &i, 16).unwrap();
    s.bind(&b, &bx, "blockIdx.x").unwrap();
    s.bind(&b, &tx, "threadIdx.x").unwrap();
    check_numerics("row sum", &[b.clone()], &s, &args);
    let src = check_source(
        "row sum",
        &s,
        &args,
        &[
            "= 0.0f;",
            "for (long long k = 0; k < 33; ++k) {",
            "const float* __restrict__ A",
        ],
    );
    assert_eq!(dims(&src, &[]), ([4, 1, 1], [16, 1, 1]));
}

/// Softmax over rows, one row per thread: the row max and sum are reductions computed
/// into per-thread `local` buffers at the thread axis (cache_write + compute_inline of the
/// global stage), the exponential inlined.
#[test]
fn softmax_chain_one_row_per_thread() {
    let (r, c) = (37i64, 29i64);
    let x = placeholder(&[r.into(), c.into()], DType::F32, "X");
    let k1 = reduce_axis(0, c, "k1");
    let m = compute(&[r.into()], "M", |i| {
        max_reduce(x.at(&[i[0].clone(), k1.x()]), &[k1.clone()])
    });
    let e = compute(&[r.into(), c.into()], "E", |i| {
        exp(x.at(&[i[0].clone(), i[1].clone()]) - m.at(&[i[0].clone()]))
    });
    let k2 = reduce_axis(0, c, "k2");
    let total = compute(&[r.into()], "S", |i| {
        sum(e.at(&[i[0].clone(), k2.x()]), &[k2.clone()])
    });
    let y = compute(&[r.into(), c.into()], "Y", |i| {
        e.at(&[i[0].clone(), i[1].clone()]) / total.at(&[i[0].clone()])
    });
    let args = [x, y.clone()];
    let mut s = create_schedule(&[y.clone()]).unwrap();
    s.compute_inline(&e).unwrap();
    let ml = s.cache_write(&m, "local").unwrap();
    let sl = s.cache_write(&total, "local").unwrap();
    s.compute_inline(&m).unwrap();
    s.compute_inline(&total).unwrap();
    let [i, _] = s.axes2(&y).unwrap();
    let (bx, tx) = s.split(&y, &i, 16).unwrap();
    s.bind(&y, &bx, "blockIdx.x").unwrap();
    s.bind(&y, &tx, "threadIdx.x").unwrap();
    s.compute_at(&sl, &y, &tx).unwrap();
    s.compute_at(&ml, &y, &tx).unwrap();
    check_numerics("softmax", &[y.clone()], &s, &args);
    let src = check_source(
        "softmax",
        &s,
        &args,
        &[
            "float M_local[1];",
            "float S_local[1];",
            "lf_fmax_f32(",
            "expf(",
            "-__int_as_float(0x7f800000)",
        ],
    );
    assert!(!src.code.contains("__shared__"), "{}", src.code);
}

#[test]
fn int32_floor_division_and_modulo() {
    let n = 300i64;
    let a = placeholder(&[n.into()], DType::I32, "A");
    let b = placeholder(&[n.into()], DType::I32, "B");
    // B holds zeros and negatives: floor semantics and the zero-divisor rule both matter.
    let c = compute(&[n.into()], "C", |i| {
        let (x, y) = (a.at(&[i[0].clone()]), b.at(&[i[0].clone()]));
        floordiv(x.clone(), y.clone()) * 100 + floormod(x.clone(), y) + floordiv(x, 3)
    });
    let args = [a, b, c.clone()];
    let mut s = create_schedule(&[c.clone()]).unwrap();
    let i = s.axes(&c).unwrap().remove(0);
    let (bx, tx) = s.split(&c, &i, 128).unwrap();
    s.bind(&c, &bx, "blockIdx.x").unwrap();
    s.bind(&c, &tx, "threadIdx.x").unwrap();
    check_numerics("divmod", &[c.clone()], &s, &args);
    check_source(
        "divmod",
        &s,
        &args,
        &[
            "__device__ __forceinline__ int lf_floordiv_i32(int a, int b) {",
            "if (b == 0) return 0;",
            "lf_floormod_i32(",
            "lf_mul_i32(",
            "int* __restrict__ C",
        ],
    );
}

#[test]
fn symbolic_shape() {
    let n = var("n");
    let a = placeholder(&[n.clone()], DType::F32, "A");
    let b = placeholder(&[n.clone()], DType::F32, "B");
    let c = compute(&[n.clone()], "C", |i| {
        a.at(&[i[0].clone()]) * 2.0f32 + b.at(&[i[0].clone()])
    });
    let args = [a, b, c.clone()];
    let mut s = create_schedule(&[c.clone()]).unwrap();
    let i = s.axes(&c).unwrap().remove(0);
    let (bx, tx) = s.split(&c, &i, 32).unwrap();
    s.bind(&c, &bx, "blockIdx.x").unwrap();
    s.bind(&c, &tx, "threadIdx.x").unwrap();
    for len in [1000usize, 5, 64] {
        let x = NdArray::random(&[len], DType::F32, 1);
        let y = NdArray::random(&[len], DType::F32, 2);
        let mut want = NdArray::zeros(&[len], DType::F32);
        let mut got = NdArray::zeros(&[len], DType::F32);
        build(
            &create_schedule(&[c.clone()]).unwrap(),
            &args,
            Target::interp(),
        )
        .unwrap()
        .run(&[&x, &y], &mut [&mut want])
        .unwrap();
        build(&s, &args, Target::interp())
            .unwrap()
            .run(&[&x, &y], &mut [&mut got])
            .unwrap();
        assert_close(
            &got,
            &want,
            &format!("symbolic n = {} on the interpreter", len),
        );
        let z = NdArray::zeros(&[len], DType::F32);
        check_gpu_run(
            "symbolic",
            &s,
            &args,
            vec![x, y, z],
            &[
                NdArray::zeros(&[0], DType::F32),
                NdArray::zeros(&[0], DType::F32),
                want,
            ],
        );
    }
    let src = check_source(
        "symbolic",
        &s,
        &args,
        &["long long n) {", "= blockIdx.x;", "< n"],
    );
    assert_eq!(src.launch.const_threads_per_block(), Some(32));
    assert_eq!(dims(&src, &[1000]), ([32, 1, 1], [32, 1, 1]));
    assert_eq!(dims(&src, &[5]), ([1, 1, 1], [32, 1, 1]));
    assert_eq!(dims(&src, &[0]).0, [0, 1, 1]);
}

/// The shared-memory tiled matmul: A and B tiles staged in shared memory at every
/// `k.outer` step, fetched cooperatively (one element per thread), with the barriers the
/// lowering inserts.
#[test]
fn shared_memory_tiled_matmul() {
    let (a, b, c) = matmul(32, 24, 40);
    let args = [a.clone(), b.clone(), c.clone()];
    let mut s = create_schedule(&[c.clone()]).unwrap();
    let [i, j] = s.axes2(&c).unwrap();
    let k = s.reduce_axes(&c).unwrap().remove(0);
    let (by, ty) = s.split(&c, &i, 8).unwrap();
    let (bx, tx) = s.split(&c, &j, 8).unwrap();
    let (ko, ki) = s.split(&c, &k, 8).unwrap();
    s.reorder(&c, &[&by, &bx, &ty, &tx, &ko, &ki]).unwrap();
    s.bind(&c, &by, "blockIdx.y").unwrap();
    s.bind(&c, &bx, "blockIdx.x").unwrap();
    s.bind(&c, &ty, "threadIdx.y").unwrap();
    s.bind(&c, &tx, "threadIdx.x").unwrap();
    for t in [&a, &b] {
        let sh = s.cache_read(t, "shared", &[&c]).unwrap();
        s.compute_at(&sh, &c, &ko).unwrap();
        let [r, q] = s.axes2(&sh).unwrap();
        s.bind(&sh, &r, "threadIdx.y").unwrap();
        s.bind(&sh, &q, "threadIdx.x").unwrap();
    }
    check_numerics("tiled matmul", &[c.clone()], &s, &args);
    let src = check_source(
        "tiled matmul",
        &s,
        &args,
        &[
            "__shared__ __align__(32) float A_shared[64];",
            "__shared__ __align__(32) float B_shared[64];",
            "__syncthreads();",
            "] = A[",
            "A_shared[",
        ],
    );
    assert_eq!(
        src.code.matches("__syncthreads();").count(),
        3,
        "{}",
        src.code
    );
    // Every loop bound to a thread axis spans the whole block: no guards.
    assert!(!src.code.contains("if (threadIdx"), "{}", src.code);
    assert_eq!(dims(&src, &[]), ([3, 4, 1], [8, 8, 1]));
}

/// A stencil reading A through shared memory, computed at the block axis. The copy is
/// bound to threadIdx.x (one element per thread; 65 threads for 64 outputs, so the
/// compute loop is guarded) where every block copies the same amount; with a tail block
/// the lowering gives the copy an extent that depends on blockIdx, which neither the
/// interpreter nor CUDA can launch: the typed error is expected there, and the redundant
/// fetch (every thread copies the tile, a serial loop) works.
#[test]
fn shared_stencil_computed_at_the_block_axis() {
    let stencil = |n: i64, cooperative: bool| {
        let a = placeholder(&[(n + 1).into()], DType::F32, "A");
        let b = compute(&[n.into()], "B", |i| {
            a.at(&[i[0].clone()]) + a.at(&[i[0].clone() + 1])
        });
        let mut s = create_schedule(&[b.clone()]).unwrap();
        let i = s.axes(&b).unwrap().remove(0);
        let (bx, tx) = s.split(&b, &i, 64).unwrap();
        s.bind(&b, &bx, "blockIdx.x").unwrap();
        s.bind(&b, &tx, "threadIdx.x").unwrap();
        let ash = s.cache_read(&a, "shared", &[&b]).unwrap();
        s.compute_at(&ash, &b, &bx).unwrap();
        if cooperative {
            let ax = s.axes(&ash).unwrap().remove(0);
            s.bind(&ash, &ax, "threadIdx.x").unwrap();
        }
        (s, vec![a, b])
    };

    let (s, args) = stencil(1024, true);
    check_numerics("stencil", &args[1..], &s, &args);
    let src = check_source(
        "stencil",
        &s,
        &args,
        &[
            "__shared__ __align__(32) float A_shared[65];",
            "__syncthreads();",
            "if (threadIdx.x < 64) {",
        ],
    );
    assert_eq!(dims(&src, &[]), ([16, 1, 1], [65, 1, 1]));

    let (s, args) = stencil(1000, false);
    check_numerics("stencil, redundant fetch", &args[1..], &s, &args);
    check_source(
        "stencil, redundant fetch",
        &s,
        &args,
        &[
            "__shared__ __align__(32) float A_shared[65];",
            "__syncthreads();",
        ],
    );

    let (s, args) = stencil(1000, true);
    let f = lower(&s, &args).unwrap();
    expect_target_err(emit(&f), "which is only known inside the kernel");
}

// ---------------------------------------------------------------- errors

#[test]
fn unbound_kernel_is_a_target_error() {
    let (a, b, c) = matmul(16, 16, 16);
    let args = [a, b, c.clone()];
    let s = create_schedule(&[c.clone()]).unwrap();
    let f = lower(&s, &args).unwrap();
    let m = expect_target_err(
        emit(&f),
        "kernel main has no GPU thread binding: bind an axis to blockIdx.x/threadIdx.x (unbound GPU kernel)",
    );
    assert!(m.contains("it writes C outside every loop bound"), "{}", m);
    expect_target_err(
        build(&s, &args, Target::cuda_arch("sm_80")),
        "(unbound GPU kernel)",
    );
}

#[test]
fn host_code_around_the_kernel_is_refused() {
    let n = 256i64;
    let a = placeholder(&[n.into()], DType::F32, "A");
    let b = compute(&[n.into()], "B", |i| a.at(&[i[0].clone()]) * 2.0f32);
    let c = compute(&[n.into()], "C", |i| b.at(&[i[0].clone()]) + 1.0f32);
    let args = [a, c.clone()];
    let bind = |s: &mut Schedule, t: &Tensor| {
        let i = s.axes(t).unwrap().remove(0);
        let (bx, tx) = s.split(t, &i, 64).unwrap();
        s.bind(t, &bx, "blockIdx.x").unwrap();
        s.bind(t, &tx, "threadIdx.x").unwrap();
    };
    // B is computed on the host side (unbound), C in a kernel.
    let mut s = create_schedule(&[c.clone()]).unwrap();
    bind(&mut s, &c);
    let m = expect_target_err(emit(&lower(&s, &args).unwrap()), "(unbound GPU kernel)");
    assert!(m.contains("it writes B outside"), "{}", m);
    // Both bound: two kernels.
    bind(&mut s, &b);
    expect_target_err(
        emit(&lower(&s, &args).unwrap()),
        "has 2 GPU kernels (separate loop nests bound to blockIdx/threadIdx, at i.outer (thread_binding(blockIdx.x)), i.outer (thread_binding(blockIdx.x))); only one kernel per function is supported yet",
    );
}

#[test]
fn cpu_only_parallel_loop_inside_a_kernel_is_refused() {
    let (a, b, c) = matmul(16, 16, 16);
    let args = [a, b, c.clone()];
    let mut s = create_schedule(&[c.clone()]).unwrap();
    let [i, j] = s.axes2(&c).unwrap();
    s.bind(&c, &i, "blockIdx.x").unwrap();
    s.parallel(&c, &j).unwrap();
    expect_target_err(
        emit(&lower(&s, &args).unwrap()),
        "kernel main: loop j is parallel, a CPU construct; bind it to blockIdx/threadIdx for the GPU",
    );
}

#[test]
fn unknown_architecture_is_a_target_error() {
    let (a, b, c) = matmul(8, 8, 8);
    let args = [a, b, c.clone()];
    let mut s = create_schedule(&[c.clone()]).unwrap();
    let [i, _] = s.axes2(&c).unwrap();
    s.bind(&c, &i, "threadIdx.x").unwrap();
    let src = emit(&lower(&s, &args).unwrap()).unwrap();
    expect_target_err(
        compile_ptx(&src, "volta"),
        "unknown CUDA architecture \"volta\"",
    );
    expect_target_err(
        build(&s, &args, Target::cuda_arch("sm_")),
        "unknown CUDA architecture",
    );
    // Without NVRTC, building says where to get it.
    if !nvrtc_available() {
        expect_target_err(
            build(&s, &args, Target::cuda()),
            "libnvrtc.so.12 was not found",
        );
        expect_target_err(compile_ptx(&src, "sm_90"), "libnvrtc.so.12 was not found");
    }
}

#[test]
fn nvrtc_rejection_is_an_internal_error_with_the_log_and_the_source() {
    if !nvrtc() {
        return;
    }
    let (a, b, c) = matmul(8, 8, 8);
    let args = [a, b, c.clone()];
    let mut s = create_schedule(&[c.clone()]).unwrap();
    let [i, _] = s.axes2(&c).unwrap();
    s.bind(&c, &i, "threadIdx.x").unwrap();
    let mut src = emit(&lower(&s, &args).unwrap()).unwrap();
    src.code = src.code.replace("__syncthreads", "__no_such_function");
    src.code
        .push_str("extern \"C\" __global__ void broken() { undeclared_name = 1; }\n");
    match compile_ptx(&src, "compute_80") {
        Err(Error::Internal { msg, ir }) => {
            assert!(msg.contains("NVRTC rejected"), "{}", msg);
            assert!(
                msg.contains("undeclared_name"),
                "the log should name the culprit: {}",
                msg
            );
            assert!(
                ir.contains("extern \"C\" __global__ void broken()"),
                "{}",
                ir
            );
        }
        other => panic!("expected an internal error, got {:?}", other),
    }
}

// ---------------------------------------------------------------- the schedule library

/// `C = A^T B` with `A` stored k-major (`A[k, i]`), the layout the SIMT GEMM reads with
/// 16-byte vectors on both sides.
fn matmul_tn(m: i64, n: i64, kk: i64) -> (Tensor, Tensor, Tensor) {
    let a = placeholder(&[kk.into(), m.into()], DType::F32, "A");
    let b = placeholder(&[kk.into(), n.into()], DType::F32, "B");
    let k = reduce_axis(0, kk, "k");
    let c = compute(&[m.into(), n.into()], "C", |i| {
        sum(
            a.at(&[k.x(), i[0].clone()]) * b.at(&[k.x(), i[1].clone()]),
            &[k.clone()],
        )
    });
    (a, b, c)
}

/// A small tiling of the library's SIMT GEMM (64 threads), quick on the interpreter.
fn small_gemm() -> schedules::CudaMatmulConfig {
    schedules::CudaMatmulConfig {
        bm: 32,
        bn: 32,
        bk: 4,
        tm: 4,
        tn: 4,
        double_buffer: true,
    }
}

#[test]
fn library_simt_gemm_in_every_layout_and_non_dividing_sizes() {
    for (m, n, k) in [(64, 64, 16), (50, 70, 13)] {
        for (layout, db) in [("nn", true), ("tn", true), ("nt", true), ("tn", false)] {
            let (a, b, c) = match layout {
                "nn" => matmul(m, n, k),
                "tn" => matmul_tn(m, n, k),
                _ => matmul_nt(m.into(), n.into(), k.into()),
            };
            let args = [a.clone(), b.clone(), c.clone()];
            let cfg = schedules::CudaMatmulConfig {
                double_buffer: db,
                ..small_gemm()
            };
            let s = schedules::matmul_cuda_with(&c, cfg).unwrap();
            let name = format!(
                "simt gemm {} {}x{}x{} (double buffer {})",
                layout, m, n, k, db
            );
            check_numerics(&name, &[c.clone()], &s, &args);
            // Dividing sizes: the shared tiles and the output are written with 16-byte
            // vectors; B's register copy (contiguous in j) is read with one.
            let mut expect = vec!["__syncthreads();", "__shared__ __align__(32) float"];
            if m == 64 && layout != "nt" {
                expect.push("*reinterpret_cast<float4*>(&C[");
                expect.push("= *reinterpret_cast<const float4*>(&B_shared[");
            }
            check_source(&name, &s, &args, &expect);
        }
    }
}

#[test]
fn library_simt_gemm_default_tiles_compile_and_run() {
    // The default 128x128 tiles (256 threads) on a size they divide, plus a ragged edge.
    for (m, n, k) in [(128, 128, 16), (130, 132, 9)] {
        let (a, b, c) = matmul_tn(m, n, k);
        let args = [a.clone(), b.clone(), c.clone()];
        let s = schedules::matmul_cuda(&c).unwrap();
        let name = format!("default simt gemm {}x{}x{}", m, n, k);
        check_numerics(&name, &[c.clone()], &s, &args);
        let src = check_source(&name, &s, &args, &["__launch_bounds__(256)"]);
        assert_eq!(
            dims(&src, &[]),
            (
                [(n as u32).div_ceil(128), (m as u32).div_ceil(128), 1],
                [16, 16, 1]
            )
        );
    }
}

#[test]
fn library_simt_gemm_errors() {
    let (_, _, c) = matmul(64, 64, 16);
    let bad = schedules::CudaMatmulConfig {
        tn: 2,
        ..small_gemm()
    };
    let e = schedules::matmul_cuda_with(&c, bad)
        .unwrap_err()
        .to_string();
    assert!(e.contains("multiples of 4"), "{}", e);
    let many = schedules::CudaMatmulConfig {
        bm: 256,
        bn: 256,
        tm: 4,
        tn: 4,
        bk: 8,
        double_buffer: false,
    };
    let e = schedules::matmul_cuda_with(&c, many)
        .unwrap_err()
        .to_string();
    assert!(e.contains("at most 1024"), "{}", e);
    let x = placeholder(&[8.into()], DType::F32, "X");
    let y = compute(&[8.into()], "Y", |i| x.at(&[i[0].clone()]) * 2.0f32);
    let e = schedules::matmul_cuda(&y).unwrap_err().to_string();
    assert!(e.contains("Y is not a matmul"), "{}", e);
}

/// `C = sum_k f32(A[i, k]) * f32(B[k, j])` with float16 `A`, `B`.
fn matmul_f16(m: i64, n: i64, kk: i64) -> (Tensor, Tensor, Tensor) {
    let a = placeholder(&[m.into(), kk.into()], DType::F16, "A");
    let b = placeholder(&[kk.into(), n.into()], DType::F16, "B");
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

#[test]
fn tensor_core_gemm_through_tensorize() {
    // The interpreter runs each wmma call's declaration once per warp (in its first
    // thread, which holds whole fragments); NVRTC compiles the inline PTX.
    for (m, n, k) in [(64, 64, 32), (128, 64, 96)] {
        let (a, b, c) = matmul_f16(m, n, k);
        let args = [a.clone(), b.clone(), c.clone()];
        let s = schedules::matmul_cuda_tensorcore(&c).unwrap();
        let name = format!("tensor-core gemm {}x{}x{}", m, n, k);
        check_numerics(&name, &[c.clone()], &s, &args);
        let text = lower(&s, &args).unwrap().to_string();
        for call in [
            "wmma_load_a_f16(",
            "wmma_load_b_f16(",
            "wmma_mma_f16_f32.update(",
            "wmma_mma_f16_f32.init(",
            "wmma_store_f32(",
        ] {
            assert!(text.contains(call), "{}: no {} in\n{}", name, call, text);
        }
        let src = check_source(
            &name,
            &s,
            &args,
            &[
                "wmma.mma.sync.aligned.row.row.m16n16k16.f32.f32",
                "float C_wmma_accumulator[32];",
                "unsigned A_shared_wmma_matrix_a[16];",
                "lf_wmma_fill(&C_wmma_accumulator[24], 0.0f);",
                // Each of the warp's 2x2 accumulator tiles has its own 8 registers.
                "lf_wmma_mma(&C_wmma_accumulator[8], &A_shared_wmma_matrix_a[0], &B_shared_wmma_matrix_b[8]);",
                "lf_wmma_mma(&C_wmma_accumulator[24], &A_shared_wmma_matrix_a[8], &B_shared_wmma_matrix_b[8]);",
                "lf_wmma_store(&C[",
                "__shared__ __align__(32) unsigned short A_shared[",
            ],
        );
        assert_eq!(
            dims(&src, &[]),
            ([(n / 64) as u32, (m / 64) as u32, 1], [32, 2, 2])
        );
    }
    // 128x128 blocks of 2x4 warps where M and N allow, each warp 4x2 fragments; shared
    // tiles fetched with 16-byte asynchronous copies into rows padded by 8 halves,
    // double buffered.
    let (m, n, k) = (256, 128, 96);
    let (a, b, c) = matmul_f16(m, n, k);
    let args = [a.clone(), b.clone(), c.clone()];
    let s = schedules::matmul_cuda_tensorcore(&c).unwrap();
    let name = format!("tensor-core gemm {}x{}x{}", m, n, k);
    check_numerics(&name, &[c.clone()], &s, &args);
    let src = check_source(
        &name,
        &s,
        &args,
        &[
            "float C_wmma_accumulator[64];",
            "unsigned A_shared_wmma_matrix_a[32];",
            "unsigned B_shared_wmma_matrix_b[16];",
            "lf_wmma_mma(&C_wmma_accumulator[56], &A_shared_wmma_matrix_a[24], &B_shared_wmma_matrix_b[8]);",
            // Two copies of each tile, rows of 32 + 8 and 128 + 8 halves; the copy read
            // at step k_outer (of 2 in the loop: k_outer % 2 is k_outer).
            "__shared__ __align__(32) unsigned short A_shared[10240];",
            "__shared__ __align__(32) unsigned short B_shared[8704];",
            // Asynchronous 16-byte copies, waited for before each barrier.
            "lf_cp_async16(&A_shared[",
            "lf_cp_async16(&B_shared[",
            "cp.async.cg.shared.global [%0], [%1], 16;",
            "lf_cp_async_wait();\n    __syncthreads();",
            "k_outer * 5120], (int)(40));",
            "k_outer * 4352], (int)(136));",
        ],
    );
    assert_eq!(dims(&src, &[]), ([1, 2, 1], [32, 2, 4]));
    assert!(!src.code.contains("lf_f16_to_f32"), "{}", src.code);
}

#[test]
fn tensor_core_errors() {
    let (_, _, c) = matmul_f16(48, 64, 32);
    let e = schedules::matmul_cuda_tensorcore(&c)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("48x64x32: M and N must be multiples of 64"),
        "{}",
        e
    );
    let (_, _, c32) = matmul(64, 64, 32);
    let e = schedules::matmul_cuda_tensorcore(&c32)
        .unwrap_err()
        .to_string();
    assert!(e.contains("the operands must be float16"), "{}", e);
    // A fragment written element by element (no tensorize) cannot be emitted.
    let (a, b, c) = matmul_f16(64, 64, 32);
    let mut s = create_schedule(&[c.clone()]).unwrap();
    let cf = s.cache_write(&c, "wmma.accumulator").unwrap();
    let [i, j] = s.axes2(&c).unwrap();
    let (bi, ii) = s.split(&c, &i, 32).unwrap();
    let (bj, jj) = s.split(&c, &j, 32).unwrap();
    s.reorder(&c, &[&bi, &bj, &ii, &jj]).unwrap();
    s.bind(&c, &bi, "blockIdx.y").unwrap();
    s.bind(&c, &bj, "blockIdx.x").unwrap();
    s.compute_at(&cf, &c, &bj).unwrap();
    let f = lower(&s, &[a, b, c]).unwrap();
    let e = emit(&f).unwrap_err().to_string();
    assert!(e.contains("is read or written element by element"), "{}", e);
}

/// A stride-1 3x3 NCHW convolution over an already padded input.
fn conv3x3(n: i64, ci: i64, co: i64, h: i64, w: i64) -> (Tensor, Tensor, Tensor) {
    let data = placeholder(
        &[n.into(), ci.into(), (h + 2).into(), (w + 2).into()],
        DType::F32,
        "data",
    );
    let weight = placeholder(
        &[co.into(), ci.into(), 3.into(), 3.into()],
        DType::F32,
        "weight",
    );
    let rc = reduce_axis(0, ci, "rc");
    let rh = reduce_axis(0, 3, "rh");
    let rw = reduce_axis(0, 3, "rw");
    let out = compute(&[n.into(), co.into(), h.into(), w.into()], "out", |i| {
        sum(
            data.at(&[
                i[0].clone(),
                rc.x(),
                i[2].clone() + rh.x(),
                i[3].clone() + rw.x(),
            ]) * weight.at(&[i[1].clone(), rc.x(), rh.x(), rw.x()]),
            &[rc.clone(), rh.clone(), rw.clone()],
        )
    });
    (data, weight, out)
}

#[test]
fn library_conv2d_schedule() {
    // W = 6: the last thread's 4 columns are partly outside (guards); W = 8 divides.
    for (n, ci, co, h, w) in [(2, 8, 32, 3, 6), (1, 16, 64, 2, 8)] {
        let (d, wt, out) = conv3x3(n, ci, co, h, w);
        let args = [d, wt, out.clone()];
        let s = schedules::conv2d_cuda_nchw(&out).unwrap();
        let name = format!("conv2d {}x{}x{}x{} -> {}", n, ci, h, w, co);
        check_numerics(&name, &[out.clone()], &s, &args);
        let src = check_source(
            &name,
            &s,
            &args,
            &["__shared__ __align__(32) float data_shared["],
        );
        assert_eq!(
            dims(&src, &[]),
            (
                [h as u32, (co / 32) as u32, n as u32],
                [((w + 3) / 4) as u32, 8, 1]
            )
        );
    }
    // The benchmark's shapes (examples/gpu_bench.rs) lower and compile.
    let (d, wt, out) = conv3x3(16, 64, 64, 56, 56);
    let s = schedules::conv2d_cuda_nchw(&out).unwrap();
    check_source(
        "conv2d benchmark shape",
        &s,
        &[d, wt, out.clone()],
        &["__syncthreads();"],
    );
    let (a, b, c) = matmul_f16(4096, 4096, 4096);
    let s = schedules::matmul_cuda_tensorcore(&c).unwrap();
    check_source(
        "f16 gemm benchmark shape",
        &s,
        &[a, b, c],
        &["lf_wmma_mma("],
    );
    let (a, b, c) = matmul_tn(4096, 4096, 4096);
    let s = schedules::matmul_cuda(&c).unwrap();
    check_source("f32 gemm benchmark shape", &s, &[a, b, c], &["float4"]);
    let (_, _, out) = conv3x3(1, 4, 32, 4, 4);
    let e = schedules::conv2d_cuda_nchw(&out).unwrap_err().to_string();
    assert!(e.contains("need multiples of 32 and 8"), "{}", e);
}
