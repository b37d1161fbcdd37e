//! The GPU benchmark of `scripts/gpu_check.sh`: loopforge's CUDA kernels against cuBLAS
//! (through cudarc) in the same run, on arrays kept on the GPU, timed with CUDA events
//! after warm-up (median of the timed runs), each result checked against cuBLAS first
//! (relative L2 error ‖out − ref‖ / ‖ref‖, every output element poisoned with NaN before
//! the checked run). Prints a table of ratios last: f32 matmul (SIMT) against
//! cublasSgemm, f16 matmul with tensor cores against cublasGemmEx, a ResNet 3x3 conv2d
//! against cublasSgemm on its im2col-shaped GEMM.
//!
//! Then a whole model: the ResNet-18 of `graph_runtime::models` (batch 1, 224x224) built
//! for CUDA through the graph runtime (one kernel per node, host arrays in and out at each
//! node), its output checked against the CPU build, and its build time and latency
//! (wall clock, median of 20 runs after 3 warm-ups) printed; `scripts/gpu_check.sh`
//! times PyTorch's on the same GPU next to it.
//!
//! `cargo run --release --example gpu_bench [-- quick]` on a machine with an NVIDIA GPU
//! (`quick`: 1024-sized problems, for a smoke test). A benchmark that fails (an error or
//! a panic) is reported and the others still run; the exit status is then 1.

use cudarc::cublas::{sys::cublasOperation_t as Op, CudaBlas, Gemm, GemmConfig};
use cudarc::driver::{sys::CUevent_flags, CudaSlice, CudaStream, DevicePtr};
use loopforge::prelude::*;
use loopforge::schedules;
use std::sync::Arc;

/// One row of the table.
struct Row {
    name: String,
    flop: f64,
    ours_ms: f64,
    theirs: &'static str,
    theirs_ms: f64,
    err: f64,
}

/// Deterministic pseudo-random values in [-1, 1).
fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Median time in milliseconds of `reps` runs of `f` on `stream`, each between two
/// events, after `warm` untimed runs.
fn time_ms(stream: &Arc<CudaStream>, warm: usize, reps: usize, f: &mut dyn FnMut()) -> f64 {
    for _ in 0..warm {
        f();
    }
    stream.synchronize().expect("synchronize");
    let flags = Some(CUevent_flags::CU_EVENT_DEFAULT);
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let start = stream.record_event(flags).expect("event");
            f();
            let end = stream.record_event(flags).expect("event");
            start.elapsed_ms(&end).expect("elapsed") as f64
        })
        .collect();
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    t[t.len() / 2]
}

fn rel_err(got: &[f32], want: &[f32]) -> f64 {
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (g, w) in got.iter().zip(want) {
        let d = *g as f64 - *w as f64;
        num += d * d;
        den += (*w as f64) * (*w as f64);
    }
    if num.is_nan() {
        return f64::NAN;
    }
    (num / den.max(1e-300)).sqrt()
}

fn ptr(s: &CudaSlice<f32>, stream: &Arc<CudaStream>) -> u64 {
    let (p, _sync) = s.device_ptr(stream);
    p
}

/// `C = A^T B` (A stored K x M, B stored K x N, row-major): the library's SIMT GEMM
/// against cublasSgemm.
fn sgemm(m: usize, n: usize, k: usize) -> Result<Row> {
    let at = placeholder(&[(k as i64).into(), (m as i64).into()], DType::F32, "A");
    let b = placeholder(&[(k as i64).into(), (n as i64).into()], DType::F32, "B");
    let r = reduce_axis(0, k as i64, "k");
    let c = compute(&[(m as i64).into(), (n as i64).into()], "C", |i| {
        sum(
            at.at(&[r.x(), i[0].clone()]) * b.at(&[r.x(), i[1].clone()]),
            &[r.clone()],
        )
    });
    let s = schedules::matmul_cuda(&c)?;
    let kernel = build(&s, &[at, b, c], Target::cuda())?;
    let module = kernel.cuda_module().expect("a CUDA kernel");
    let stream = module.stream()?;
    let drv = |e: cudarc::driver::DriverError| Error::Target(format!("{:?}", e));
    let da = stream.clone_htod(&random(k * m, 1)).map_err(drv)?;
    let db = stream.clone_htod(&random(k * n, 2)).map_err(drv)?;
    let dc = stream.clone_htod(&vec![f32::NAN; m * n]).map_err(drv)?;
    let mut dref = stream.alloc_zeros::<f32>(m * n).map_err(drv)?;
    let blas = CudaBlas::new(stream.clone()).map_err(|e| Error::Target(format!("{:?}", e)))?;
    // Row-major C (M x N) is column-major C^T (N x M) = B^T A with B^T: N x K (ld N), A
    // stored column-major as M x K (ld M), transposed.
    let cfg = GemmConfig {
        transa: Op::CUBLAS_OP_N,
        transb: Op::CUBLAS_OP_T,
        m: n as i32,
        n: m as i32,
        k: k as i32,
        alpha: 1.0f32,
        lda: n as i32,
        ldb: m as i32,
        beta: 0.0f32,
        ldc: n as i32,
    };
    let run_blas = |out: &mut CudaSlice<f32>| {
        // Safety: the sizes above match the allocations.
        unsafe { blas.gemm(cfg, &db, &da, out) }.expect("cublasSgemm");
    };
    let (pa, pb, pc) = (ptr(&da, &stream), ptr(&db, &stream), ptr(&dc, &stream));
    let run_ours = || {
        // Safety: the three allocations hold the arrays of the shapes the kernel was built
        // for, and live until the end of this function (synchronized before).
        unsafe { module.launch_raw(&[pa, pb, pc], &[]) }.expect("launch");
    };
    run_ours();
    run_blas(&mut dref);
    let got = stream.clone_dtoh(&dc).map_err(drv)?;
    let want = stream.clone_dtoh(&dref).map_err(drv)?;
    let err = rel_err(&got, &want);
    let ours_ms = time_ms(&stream, 3, 20, &mut || run_ours());
    let theirs_ms = time_ms(&stream, 3, 20, &mut || run_blas(&mut dref));
    Ok(Row {
        name: format!("f32 matmul {}x{}x{} (SIMT)", m, n, k),
        flop: 2.0 * (m * n * k) as f64,
        ours_ms,
        theirs: "cublasSgemm",
        theirs_ms,
        err,
    })
}

/// `C = f32(A) f32(B)` with float16 `A` (M x K), `B` (K x N), row-major, float32 `C`: the
/// library's tensor-core GEMM (wmma) against cublasGemmEx (float16 in, float32 compute and
/// out, the default algorithm, tensor cores allowed).
fn hgemm(m: usize, n: usize, k: usize) -> Result<Row> {
    use cudarc::cublas::{result::gemm_ex, sys};
    let a = placeholder(&[(m as i64).into(), (k as i64).into()], DType::F16, "A");
    let b = placeholder(&[(k as i64).into(), (n as i64).into()], DType::F16, "B");
    let r = reduce_axis(0, k as i64, "k");
    let c = compute(&[(m as i64).into(), (n as i64).into()], "C", |i| {
        sum(
            cast(DType::F32, a.at(&[i[0].clone(), r.x()]))
                * cast(DType::F32, b.at(&[r.x(), i[1].clone()])),
            &[r.clone()],
        )
    });
    let s = schedules::matmul_cuda_tensorcore(&c)?;
    let kernel = build(&s, &[a, b, c], Target::cuda())?;
    let module = kernel.cuda_module().expect("a CUDA kernel");
    let stream = module.stream()?;
    let drv = |e: cudarc::driver::DriverError| Error::Target(format!("{:?}", e));
    let halves = |n: usize, seed: u64| -> Vec<u16> {
        random(n, seed)
            .into_iter()
            .map(|x| half::f16::from_f32(x).to_bits())
            .collect()
    };
    let da = stream.clone_htod(&halves(m * k, 3)).map_err(drv)?;
    let db = stream.clone_htod(&halves(k * n, 4)).map_err(drv)?;
    let dc = stream.clone_htod(&vec![f32::NAN; m * n]).map_err(drv)?;
    let dref = stream.alloc_zeros::<f32>(m * n).map_err(drv)?;
    let blas = CudaBlas::new(stream.clone()).map_err(|e| Error::Target(format!("{:?}", e)))?;
    let p16 = |s: &CudaSlice<u16>| {
        let (p, _sync) = s.device_ptr(&stream);
        p
    };
    let (pa, pb, pc, pref) = (p16(&da), p16(&db), ptr(&dc, &stream), ptr(&dref, &stream));
    let (alpha, beta) = (1.0f32, 0.0f32);
    // Row-major C (M x N) = column-major C^T = B^T A^T: B as the column-major N x K
    // operand (ld N), A as K x M (ld K), no transposes.
    let run_blas = || {
        // Safety: the pointers address live allocations of the sizes given.
        unsafe {
            gemm_ex(
                *blas.handle(),
                sys::cublasOperation_t::CUBLAS_OP_N,
                sys::cublasOperation_t::CUBLAS_OP_N,
                n as i32,
                m as i32,
                k as i32,
                &alpha as *const f32 as *const _,
                pb as *const _,
                sys::cudaDataType_t::CUDA_R_16F,
                n as i32,
                pa as *const _,
                sys::cudaDataType_t::CUDA_R_16F,
                k as i32,
                &beta as *const f32 as *const _,
                pref as *mut _,
                sys::cudaDataType_t::CUDA_R_32F,
                n as i32,
                sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        }
        .expect("cublasGemmEx");
    };
    let run_ours = || {
        // Safety: as in `sgemm`.
        unsafe { module.launch_raw(&[pa, pb, pc], &[]) }.expect("launch");
    };
    run_ours();
    run_blas();
    let got = stream.clone_dtoh(&dc).map_err(drv)?;
    let want = stream.clone_dtoh(&dref).map_err(drv)?;
    let err = rel_err(&got, &want);
    let ours_ms = time_ms(&stream, 3, 20, &mut || run_ours());
    let theirs_ms = time_ms(&stream, 3, 20, &mut || run_blas());
    Ok(Row {
        name: format!("f16 matmul {}x{}x{} (tensor cores)", m, n, k),
        flop: 2.0 * (m * n * k) as f64,
        ours_ms,
        theirs: "cublasGemmEx",
        theirs_ms,
        err,
    })
}

/// A ResNet-style 3x3 convolution (stride 1, NCHW, input already padded): the library's
/// `conv2d_cuda_nchw` against cublasSgemm on the GEMM of the same FLOP count that an
/// im2col lowering would run (`M = batch * H * W`, `N = out channels`, `K = 9 * in
/// channels`; the im2col itself not counted). Checked on 2000 sampled outputs against a
/// float64 host computation.
fn conv2d(batch: usize, c: usize, hw: usize) -> Result<Row> {
    let (n, ci, co, h, w) = (batch as i64, c as i64, c as i64, hw as i64, hw as i64);
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
    let s = schedules::conv2d_cuda_nchw(&out)?;
    let kernel = build(&s, &[data, weight, out], Target::cuda())?;
    let module = kernel.cuda_module().expect("a CUDA kernel");
    let stream = module.stream()?;
    let drv = |e: cudarc::driver::DriverError| Error::Target(format!("{:?}", e));
    let (hp, wp) = (hw + 2, hw + 2);
    let hd = random(batch * c * hp * wp, 5);
    let hwt = random(c * c * 9, 6);
    let dd = stream.clone_htod(&hd).map_err(drv)?;
    let dw = stream.clone_htod(&hwt).map_err(drv)?;
    let dout = stream
        .clone_htod(&vec![f32::NAN; batch * c * hw * hw])
        .map_err(drv)?;
    let (pd, pw, po) = (ptr(&dd, &stream), ptr(&dw, &stream), ptr(&dout, &stream));
    let run_ours = || {
        // Safety: as in `sgemm`.
        unsafe { module.launch_raw(&[pd, pw, po], &[]) }.expect("launch");
    };
    run_ours();
    let got = stream.clone_dtoh(&dout).map_err(drv)?;
    let (mut num, mut den) = (0.0f64, 0.0f64);
    let mut pick = 12345u64;
    for _ in 0..2000 {
        pick = pick
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let idx = (pick >> 20) as usize % got.len();
        let (b, rest) = (idx / (c * hw * hw), idx % (c * hw * hw));
        let (o, rest) = (rest / (hw * hw), rest % (hw * hw));
        let (y, x) = (rest / hw, rest % hw);
        let mut acc = 0.0f64;
        for i in 0..c {
            for dy in 0..3 {
                for dx in 0..3 {
                    let dv = hd[((b * c + i) * hp + y + dy) * wp + x + dx] as f64;
                    acc += dv * hwt[((o * c + i) * 3 + dy) * 3 + dx] as f64;
                }
            }
        }
        num += (got[idx] as f64 - acc).powi(2);
        den += acc * acc;
    }
    let err = (num / den).sqrt();
    // The baseline: cublasSgemm of the im2col-shaped GEMM.
    let (gm, gn, gk) = (batch * hw * hw, c, 9 * c);
    let ga = stream.clone_htod(&random(gm * gk, 7)).map_err(drv)?;
    let gb = stream.clone_htod(&random(gk * gn, 8)).map_err(drv)?;
    let mut gc = stream.alloc_zeros::<f32>(gm * gn).map_err(drv)?;
    let blas = CudaBlas::new(stream.clone()).map_err(|e| Error::Target(format!("{:?}", e)))?;
    let cfg = GemmConfig {
        transa: Op::CUBLAS_OP_N,
        transb: Op::CUBLAS_OP_N,
        m: gn as i32,
        n: gm as i32,
        k: gk as i32,
        alpha: 1.0f32,
        lda: gn as i32,
        ldb: gk as i32,
        beta: 0.0f32,
        ldc: gn as i32,
    };
    let ours_ms = time_ms(&stream, 3, 20, &mut || run_ours());
    let theirs_ms = time_ms(&stream, 3, 20, &mut || {
        // Safety: the sizes match the allocations.
        unsafe { blas.gemm(cfg, &gb, &ga, &mut gc) }.expect("cublasSgemm");
    });
    Ok(Row {
        name: format!("conv2d {}x{}x{}x{} 3x3 -> {}", batch, c, hw, hw, c),
        flop: 2.0 * (batch * c * c * 9 * hw * hw) as f64,
        ours_ms,
        theirs: "sgemm(im2col)",
        theirs_ms,
        err,
    })
}

/// ResNet-18 through the graph runtime on the GPU: build seconds, median latency in
/// milliseconds, and the relative L2 error of its output against the CPU build's.
fn resnet18() -> Result<(f64, f64, f64)> {
    use loopforge::graph_runtime::{self, models};
    use std::time::Instant;
    let (g, params) = models::resnet18(1, 224, 1000, 7)?;
    let x = NdArray::random(&[1, 3, 224, 224], DType::F32, 1);
    let outputs = |model: &graph_runtime::CompiledModel, runs: usize| -> Result<(Vec<f32>, f64)> {
        let mut ex = model.executor();
        ex.set_input("input", x.clone())?;
        for _ in 0..3 {
            ex.run()?;
        }
        let mut t = Vec::with_capacity(runs);
        for _ in 0..runs {
            let start = Instant::now();
            ex.run()?;
            t.push(start.elapsed().as_secs_f64() * 1e3);
        }
        t.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let out = ex.get_output(0)?;
        let v = (0..out.len()).map(|i| out.get_f64(i) as f32).collect();
        Ok((v, t[t.len() / 2]))
    };
    let start = Instant::now();
    let gpu = graph_runtime::build(&g, Target::cuda(), &params, 1)?;
    let build_s = start.elapsed().as_secs_f64();
    let (got, ms) = outputs(&gpu, 20)?;
    let cpu = graph_runtime::build(&g, Target::cpu(), &params, 8)?;
    let (want, _) = outputs(&cpu, 1)?;
    Ok((build_s, ms, rel_err(&got, &want)))
}

/// Run `f`, turning a panic into an error (so that one failing benchmark does not stop
/// the others).
fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Option<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Some(v),
        Ok(Err(e)) => {
            eprintln!("gpu_bench: {} failed: {}", what, e);
            None
        }
        Err(_) => {
            eprintln!("gpu_bench: {} panicked (message above)", what);
            None
        }
    }
}

/// One benchmark, run once (a panic in it is caught and reported).
type Bench = Box<dyn FnOnce() -> Result<Row>>;

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    if loopforge::codegen_cuda::device_arch().is_none() {
        eprintln!("gpu_bench: no CUDA device could be opened");
        std::process::exit(2);
    }
    let size = if quick { 1024 } else { 4096 };
    let mut rows = Vec::new();
    let mut failed = false;
    let batch = if quick { 2 } else { 16 };
    let benches: [(&str, Bench); 3] = [
        ("sgemm", Box::new(move || sgemm(size, size, size))),
        ("hgemm", Box::new(move || hgemm(size, size, size))),
        ("conv2d", Box::new(move || conv2d(batch, 64, 56))),
    ];
    for (what, f) in benches {
        match guarded(what, f) {
            Some(row) => rows.push(row),
            None => failed = true,
        }
    }
    let resnet = guarded("resnet18", resnet18);
    failed |= resnet.is_none();
    println!("== GPU benchmark: loopforge vs cuBLAS (median of 20 runs, CUDA events) ==");
    println!(
        "{:<34} {:>10} {:>9} {:>14} {:>10} {:>9} {:>7} {:>9}",
        "kernel", "ours ms", "TFLOP/s", "baseline", "base ms", "TFLOP/s", "ratio", "rel err"
    );
    for r in &rows {
        let tf = |ms: f64| r.flop / (ms * 1e-3) / 1e12;
        println!(
            "{:<34} {:>10.3} {:>9.2} {:>14} {:>10.3} {:>9.2} {:>6.2}x {:>9.1e}",
            r.name,
            r.ours_ms,
            tf(r.ours_ms),
            r.theirs,
            r.theirs_ms,
            tf(r.theirs_ms),
            r.theirs_ms / r.ours_ms,
            r.err
        );
        failed |= r.err.is_nan() || r.err >= 1e-4;
    }
    if let Some((build_s, ms, err)) = resnet {
        println!(
            "resnet18 batch 1 (graph runtime, CUDA): build {:.2} s, latency {:.3} ms (wall clock, median of 20), rel err vs the CPU build {:.1e}",
            build_s, ms, err
        );
        failed |= err.is_nan() || err >= 1e-4;
    }
    if failed {
        std::process::exit(1);
    }
}
