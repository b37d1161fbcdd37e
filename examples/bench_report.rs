//! The CPU performance report: loopforge's matmul and softmax kernels against the usual
//! baselines, measured in one run and printed as one table.
//!
//! ```sh
//! cargo run --release --example bench_report                # threads 1 and 2, table
//! cargo run --release --example bench_report -- --threads 2 # one thread count
//! cargo run --release --example bench_report -- --json      # one JSON object per line
//! cargo run --release --example bench_report -- --quick     # small sizes (smoke test)
//! cargo run --release --example bench_report -- --only matmul # one workload family
//! cargo run --release --example bench_report -- --rounds 3  # median of 3 rounds
//! ```
//!
//! Workloads: f32 matmul `C = A B` (square, 1024 and 2048; 256 and 512 with `--quick`),
//! the softmax of every row of a 1024 x 1024 f32 matrix (256 x 256 with `--quick`), and
//! ResNet-18's conv2d layers at batch 1 (`conv.rs`: the graph runtime's loop schedule,
//! the tensorized one and, for 3x3 stride-1 layers, Winograd's, against PyTorch; also
//! MobileNetV2's depthwise and pointwise layers and EfficientNet-B0's 5x5 depthwise
//! ones), and
//! dense layers with bias and ReLU (`dense.rs`: the graph runtime's build of the layer
//! against PyTorch's `linear`), and the activations `sigmoid`, `tanh` and `gelu` of a feature map
//! (`activation.rs`: the graph runtime's elementwise kernels against PyTorch's).
//!
//! Implementations: loopforge's default schedule (`create_schedule` as is; smallest matmul
//! size and one thread only, it has no parallel loop and takes ~10 s at 1024),
//! `schedules::matmul_cpu`, `schedules::matmul_cpu_tensorized`, for softmax a hand-written
//! partial-reduction schedule (`loopforge_softmax`) and `schedules::softmax_rows_tensorized`
//! (`loopforge_softmax_tensorized`: the `reduce_max_f32`, `exp_sub_f32` and
//! `reduce_sum_f32` intrinsics), the `gemm` and
//! `matrixmultiply` crates (the latter in a child process of this program, because it reads
//! `MATMUL_NUM_THREADS` once per process), and numpy / PyTorch through a `python3`
//! subprocess that times its own calls, where they can be imported (with
//! `OPENBLAS_NUM_THREADS`/`OMP_NUM_THREADS`/`MKL_NUM_THREADS` and `torch.set_num_threads`
//! set to the thread count). A baseline that cannot run is a row "not available (why)".
//!
//! Timing: wall clock, one warm-up call, then the median of at least 5 calls (as many as
//! fit in about 2 s, at most 30); a call longer than 1 s is timed 3 times, warm-up
//! included. With `--rounds N` everything is measured N times over (loopforge and the
//! baselines alternately, so that a slow spell of a shared machine falls on both) and
//! each row is the median of its N medians ("not available" if any round failed it).
//! The Rust kernels run inside a rayon pool of exactly `threads` threads.
//! Every loopforge and `gemm`/`matrixmultiply` result is checked against a reference.

#[path = "bench_report/activation.rs"]
mod activation;
#[path = "bench_report/blocked.rs"]
mod blocked;
#[path = "bench_report/conv.rs"]
mod conv;
#[path = "bench_report/dense.rs"]
mod dense;

use loopforge::prelude::*;
use std::process::Command;
use std::time::Instant;

/// One line of the report.
#[derive(Debug, Clone)]
struct Row {
    workload: String,
    imp: String,
    threads: usize,
    /// Median seconds; None when the implementation is not available.
    median_s: Option<f64>,
    /// Why it is not available, or a remark.
    note: Option<String>,
    /// FLOPs of one call (matmul only).
    flops: Option<f64>,
}

impl Row {
    fn timed(workload: &str, imp: &str, threads: usize, s: f64, flops: Option<f64>) -> Row {
        Row {
            workload: workload.into(),
            imp: imp.into(),
            threads,
            median_s: Some(s),
            note: None,
            flops,
        }
    }

    fn missing(workload: &str, imp: &str, threads: usize, why: impl Into<String>) -> Row {
        Row {
            workload: workload.into(),
            imp: imp.into(),
            threads,
            median_s: None,
            note: Some(why.into()),
            flops: None,
        }
    }
}

struct Opts {
    threads: Vec<usize>,
    json: bool,
    quick: bool,
    /// Only the workloads whose name starts with this (`--only matmul`,
    /// `--only conv2d_dw`).
    only: Option<String>,
    /// Times to measure everything (`--rounds N`, default 1); each row is then the median
    /// of its rounds' medians.
    rounds: usize,
}

impl Opts {
    /// Whether `--only` selects `workload`, or (given a family such as `conv2d`) some
    /// workload of that family.
    fn wants(&self, workload: &str) -> bool {
        self.only
            .as_deref()
            .is_none_or(|p| workload.starts_with(p) || p.starts_with(workload))
    }
}

impl Opts {
    /// Seconds of repeated calls to aim for per measurement.
    fn budget(&self) -> f64 {
        if self.quick {
            0.3
        } else {
            2.0
        }
    }
    fn min_reps(&self) -> usize {
        if self.quick {
            3
        } else {
            5
        }
    }
    fn matmul_sizes(&self) -> Vec<usize> {
        if self.quick {
            vec![256, 512]
        } else {
            vec![1024, 2048]
        }
    }
    fn softmax_n(&self) -> usize {
        if self.quick {
            256
        } else {
            1024
        }
    }
}

fn parse_args() -> std::result::Result<Opts, String> {
    let mut o = Opts {
        threads: vec![1, 2],
        json: false,
        quick: false,
        only: None,
        rounds: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--json" => o.json = true,
            "--quick" => o.quick = true,
            "--only" => o.only = Some(it.next().ok_or("--only needs a workload name")?),
            "--rounds" => {
                let v = it.next().ok_or("--rounds needs a number")?;
                o.rounds = match v.parse() {
                    Ok(r) if r >= 1 => r,
                    _ => return Err(format!("--rounds: not a number >= 1: {}", v)),
                };
            }
            "--threads" => {
                let v = it.next().ok_or("--threads needs a number")?;
                let t: usize = v
                    .parse()
                    .map_err(|_| format!("--threads: not a number: {}", v))?;
                if t == 0 {
                    return Err("--threads must be at least 1".into());
                }
                o.threads = vec![t];
            }
            "-h" | "--help" => {
                println!("usage: bench_report [--threads N] [--rounds N] [--json] [--quick] [--only WORKLOAD]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown option {}", other)),
        }
    }
    Ok(o)
}

/// A `python3` child for the numpy and PyTorch baselines, without the environment's
/// `OPENBLAS_CORETYPE` and `OPENBLAS_L2_SIZE` (some machines set them, e.g. to Haswell on
/// an AVX-512 CPU): OpenBLAS then picks its kernels for this CPU, as a user's numpy does.
/// The kernels it picked are named in the numpy row's "baseline versions" line.
fn python3() -> Command {
    let mut cmd = Command::new("python3");
    cmd.env_remove("OPENBLAS_CORETYPE")
        .env_remove("OPENBLAS_L2_SIZE");
    cmd
}

/// The JSON objects a python child printed, one per line (other lines skipped); objects
/// with an `info` field go to `infos` (once each) instead.
fn child_json(stdout: &str, infos: &mut Vec<String>) -> Vec<serde_json::Value> {
    let mut values = vec![];
    for line in stdout.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        match v["info"].as_str() {
            Some(i) => {
                if !infos.iter().any(|x| x == i) {
                    infos.push(i.to_string());
                }
            }
            None => values.push(v),
        }
    }
    values
}

/// Median seconds of `f` (see the module doc for the policy).
fn measure(mut f: impl FnMut(), budget: f64, min_reps: usize) -> f64 {
    let t = Instant::now();
    f();
    let first = t.elapsed().as_secs_f64();
    let mut v = vec![];
    let reps = if first > 1.0 {
        v.push(first);
        2
    } else {
        ((budget / first.max(1e-6)) as usize).clamp(min_reps, 30)
    };
    for _ in 0..reps {
        let t = Instant::now();
        f();
        v.push(t.elapsed().as_secs_f64());
    }
    median(&mut v)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

fn matmul_te(n: i64) -> (Tensor, Tensor, Tensor) {
    let a = placeholder(&[n.into(), n.into()], DType::F32, "A");
    let b = placeholder(&[n.into(), n.into()], DType::F32, "B");
    let k = reduce_axis(0, n, "k");
    let c = compute(&[n.into(), n.into()], "C", |i| {
        sum(
            a.at(&[i[0].clone(), k.x()]) * b.at(&[k.x(), i[1].clone()]),
            &[k.clone()],
        )
    });
    (a, b, c)
}

/// Largest of `|got - want| / (1 + |want|)`.
fn rel_err(got: &[f32], want: &[f32]) -> f64 {
    got.iter()
        .zip(want)
        .map(|(g, w)| ((g - w).abs() / (1.0 + w.abs())) as f64)
        .fold(0.0, f64::max)
}

fn check(what: &str, got: &[f32], want: &[f32], tol: f64) -> std::result::Result<(), String> {
    let e = rel_err(got, want);
    if e <= tol {
        Ok(())
    } else {
        Err(format!("{}: WRONG RESULT (relative error {:.2e})", what, e))
    }
}

/// `c = a b` with the gemm crate, row-major n x n.
fn gemm_crate(a: &[f32], b: &[f32], c: &mut [f32], n: usize, threads: usize) {
    let par = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    let n_ = n as isize;
    // Safety: the three slices hold n x n elements, row-major (column stride 1, row
    // stride n); gemm computes dst = alpha dst + beta lhs rhs, dst not read (read_dst false).
    unsafe {
        gemm::gemm(
            n,
            n,
            n,
            c.as_mut_ptr(),
            1,
            n_,
            false,
            a.as_ptr(),
            1,
            n_,
            b.as_ptr(),
            1,
            n_,
            0.0f32,
            1.0f32,
            false,
            false,
            false,
            par,
        )
    }
}

/// `c = a b` with matrixmultiply's sgemm, row-major n x n.
fn matrixmultiply_sgemm(a: &[f32], b: &[f32], c: &mut [f32], n: usize) {
    let n_ = n as isize;
    // Safety: the three slices hold n x n elements, row-major (row stride n, column stride 1).
    unsafe {
        matrixmultiply::sgemm(
            n,
            n,
            n,
            1.0,
            a.as_ptr(),
            n_,
            1,
            b.as_ptr(),
            n_,
            1,
            0.0,
            c.as_mut_ptr(),
            n_,
            1,
        )
    }
}

/// The child process that times matrixmultiply (`MATMUL_NUM_THREADS` set by the parent):
/// prints the median seconds, or an error line.
fn child_matrixmultiply(n: usize, budget: f64, min_reps: usize) {
    let x = NdArray::random(&[n, n], DType::F32, 1);
    let y = NdArray::random(&[n, n], DType::F32, 2);
    let (a, b) = (x.as_slice::<f32>().unwrap(), y.as_slice::<f32>().unwrap());
    let mut c = vec![0f32; n * n];
    let mut want = vec![0f32; n * n];
    gemm_crate(a, b, &mut want, n, 1);
    matrixmultiply_sgemm(a, b, &mut c, n);
    if let Err(e) = check("matrixmultiply", &c, &want, 1e-3) {
        println!("error {}", e);
        return;
    }
    let s = measure(|| matrixmultiply_sgemm(a, b, &mut c, n), budget, min_reps);
    println!("median {}", s);
}

fn run_matrixmultiply_child(
    o: &Opts,
    n: usize,
    threads: usize,
) -> std::result::Result<f64, String> {
    let exe = std::env::current_exe().map_err(|e| format!("no path to this program: {}", e))?;
    let mut cmd = Command::new(exe);
    cmd.arg("--child-matrixmultiply")
        .arg(n.to_string())
        .arg(o.budget().to_string())
        .arg(o.min_reps().to_string())
        .env("MATMUL_NUM_THREADS", threads.to_string());
    let out = cmd
        .output()
        .map_err(|e| format!("could not start the child process: {}", e))?;
    let text = String::from_utf8_lossy(&out.stdout);
    for line in text.lines() {
        if let Some(s) = line.strip_prefix("median ") {
            return s
                .trim()
                .parse()
                .map_err(|_| format!("bad child output {}", line));
        }
        if let Some(e) = line.strip_prefix("error ") {
            return Err(e.to_string());
        }
    }
    Err(format!(
        "child process failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    ))
}

fn matmul_rows(o: &Opts, n: usize, threads: usize, with_default: bool) -> Result<Vec<Row>> {
    let wl = format!("matmul_f32_{}", n);
    let flops = Some(2.0 * (n as f64).powi(3));
    let (bud, minr) = (o.budget(), o.min_reps());
    let mut rows = vec![];
    let x = NdArray::random(&[n, n], DType::F32, 1);
    let y = NdArray::random(&[n, n], DType::F32, 2);
    let (a, b) = (x.as_slice::<f32>()?, y.as_slice::<f32>()?);
    let mut want = vec![0f32; n * n];
    gemm_crate(a, b, &mut want, n, threads);

    let (ta, tb, tc) = matmul_te(n as i64);
    let args = [ta, tb, tc.clone()];
    let mut z = NdArray::zeros(&[n, n], DType::F32);

    let default_name = "loopforge_default_schedule";
    if with_default {
        eprintln!("  {} {} threads={}", wl, default_name, threads);
        let k = build(&create_schedule(&[tc.clone()])?, &args, Target::cpu())?;
        k.run(&[&x, &y], &mut [&mut z])?;
        match check(default_name, z.as_slice::<f32>()?, &want, 1e-3) {
            Ok(()) => {
                let s = measure(|| k.run(&[&x, &y], &mut [&mut z]).unwrap(), bud, minr);
                rows.push(Row::timed(&wl, default_name, threads, s, flops));
            }
            Err(e) => rows.push(Row::missing(&wl, default_name, threads, e)),
        }
    } else if threads > 1 {
        rows.push(Row::missing(
            &wl,
            default_name,
            threads,
            "not run: create_schedule has no parallel loop, the 1-thread figure applies",
        ));
    } else {
        rows.push(Row::missing(
            &wl,
            default_name,
            threads,
            "skipped: too slow at this size (~10 s at 1024, 8x that here)",
        ));
    }

    let schedules: [(&str, Schedule); 2] = [
        (
            "loopforge_matmul_cpu",
            loopforge::schedules::matmul_cpu(&tc, threads)?,
        ),
        (
            "loopforge_matmul_cpu_tensorized",
            loopforge::schedules::matmul_cpu_tensorized(&tc, threads)?,
        ),
    ];
    for (name, s) in schedules {
        eprintln!("  {} {} threads={}", wl, name, threads);
        let k = build(&s, &args, Target::cpu())?;
        z.as_mut_slice::<f32>()?.fill(0.0);
        k.run(&[&x, &y], &mut [&mut z])?;
        match check(name, z.as_slice::<f32>()?, &want, 1e-3) {
            Ok(()) => {
                let s = measure(|| k.run(&[&x, &y], &mut [&mut z]).unwrap(), bud, minr);
                rows.push(Row::timed(&wl, name, threads, s, flops));
            }
            Err(e) => rows.push(Row::missing(&wl, name, threads, e)),
        }
    }

    eprintln!("  {} gemm threads={}", wl, threads);
    let mut c = vec![0f32; n * n];
    let s = measure(|| gemm_crate(a, b, &mut c, n, threads), bud, minr);
    rows.push(Row::timed(&wl, "gemm_crate", threads, s, flops));

    eprintln!("  {} matrixmultiply threads={}", wl, threads);
    rows.push(match run_matrixmultiply_child(o, n, threads) {
        Ok(s) => Row::timed(&wl, "matrixmultiply_crate", threads, s, flops),
        Err(e) => Row::missing(&wl, "matrixmultiply_crate", threads, e),
    });
    Ok(rows)
}

/// Row-wise softmax of an n x n matrix: row max and row sum as vectorized partial
/// reductions over 8 lanes (a hand-written rfactor), then a scalar 8-way combine.
fn softmax_te(n: i64) -> (Tensor, [Tensor; 6]) {
    const L: i64 = 8;
    let x = placeholder(&[n.into(), n.into()], DType::F32, "X");
    let k1 = reduce_axis(0, n / L, "k1");
    // PM[i, l] = max over k of X[i, k*L + l]: L independent partial maxima per row.
    let pm = compute(&[n.into(), L.into()], "PM", |i| {
        max_reduce(
            x.at(&[i[0].clone(), k1.x() * L + i[1].clone()]),
            &[k1.clone()],
        )
    });
    let l1 = reduce_axis(0, L, "l1");
    let m = compute(&[n.into()], "M", |i| {
        max_reduce(pm.at(&[i[0].clone(), l1.x()]), &[l1.clone()])
    });
    let e = compute(&[n.into(), n.into()], "E", |i| {
        exp(x.at(&[i[0].clone(), i[1].clone()]) - m.at(&[i[0].clone()]))
    });
    let k2 = reduce_axis(0, n / L, "k2");
    let ps = compute(&[n.into(), L.into()], "PS", |i| {
        sum(
            e.at(&[i[0].clone(), k2.x() * L + i[1].clone()]),
            &[k2.clone()],
        )
    });
    let l2 = reduce_axis(0, L, "l2");
    let s = compute(&[n.into()], "S", |i| {
        sum(ps.at(&[i[0].clone(), l2.x()]), &[l2.clone()])
    });
    let y = compute(&[n.into(), n.into()], "Y", |i| {
        e.at(&[i[0].clone(), i[1].clone()]) / s.at(&[i[0].clone()])
    });
    (x, [pm, m, e, ps, s, y])
}

/// Rows in blocks of 8 (the block loop parallel when threads > 1); every
/// intermediate computed per row inside the block; 8-wide inner loops vectorized (two
/// f32x4 each), the partial reductions with their lane axis innermost.
fn softmax_schedule(t: &[Tensor; 6], threads: usize) -> Result<Schedule> {
    let [pm, m, e, ps, s, y] = t;
    let mut sch = create_schedule(&[y.clone()])?;
    let [yi, yj] = sch.axes2(y)?;
    let (yio, yii) = sch.split(y, &yi, 8)?;
    if threads > 1 {
        sch.parallel(y, &yio)?;
    }
    let (yjo, yji) = sch.split(y, &yj, 8)?;
    sch.reorder(y, &[&yio, &yii, &yjo, &yji])?;
    sch.vectorize(y, &yji)?;
    for st in [s, ps, e, m, pm] {
        sch.compute_at(st, y, &yii)?;
    }
    for p in [pm, ps] {
        let [_, l] = sch.axes2(p)?;
        let k = sch.reduce_axes(p)?.remove(0);
        sch.reorder(p, &[&k, &l])?;
        sch.vectorize(p, &l)?;
    }
    let [_, ej] = sch.axes2(e)?;
    let (_, eji) = sch.split(e, &ej, 8)?;
    sch.vectorize(e, &eji)?;
    Ok(sch)
}

fn softmax_reference(x: &[f32], n: usize) -> Vec<f32> {
    let mut out = vec![0f32; n * n];
    for (r, o) in x.chunks(n).zip(out.chunks_mut(n)) {
        let m = r.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let mut s = 0f64;
        for (v, o) in r.iter().zip(o.iter_mut()) {
            *o = (v - m).exp();
            s += *o as f64;
        }
        for o in o.iter_mut() {
            *o = (*o as f64 / s) as f32;
        }
    }
    out
}

fn softmax_rows(o: &Opts, threads: usize) -> Result<Vec<Row>> {
    let n = o.softmax_n();
    let wl = format!("softmax_f32_{}x{}", n, n);
    let xa = NdArray::random(&[n, n], DType::F32, 3);
    let want = softmax_reference(xa.as_slice::<f32>()?, n);
    // The hand-written partial reductions above, and the library's tensorized schedule
    // (reduce_max_f32, exp_sub_f32 and reduce_sum_f32 intrinsics).
    let (x, t) = softmax_te(n as i64);
    let hand = build(
        &softmax_schedule(&t, threads)?,
        &[x, t[5].clone()],
        Target::cpu(),
    )?;
    let x2 = placeholder(&[(n as i64).into(), (n as i64).into()], DType::F32, "X");
    let out = loopforge::schedules::softmax_rows(&x2)?;
    let tens = build(
        &loopforge::schedules::softmax_rows_tensorized(&out, threads)?,
        &[x2, out],
        Target::cpu(),
    )?;
    let mut rows = vec![];
    for (name, k) in [
        ("loopforge_softmax", hand),
        ("loopforge_softmax_tensorized", tens),
    ] {
        eprintln!("  {} {} threads={}", wl, name, threads);
        let mut ya = NdArray::zeros(&[n, n], DType::F32);
        k.run(&[&xa], &mut [&mut ya])?;
        rows.push(match check(name, ya.as_slice::<f32>()?, &want, 1e-5) {
            Ok(()) => {
                let s = measure(
                    || k.run(&[&xa], &mut [&mut ya]).unwrap(),
                    o.budget(),
                    o.min_reps(),
                );
                Row::timed(&wl, name, threads, s, None)
            }
            Err(e) => Row::missing(&wl, name, threads, e),
        });
    }
    Ok(rows)
}

/// The start of every Python baseline script: imports, and glibc's malloc brought to the
/// steady state of a long-running process.
const PY_PRELUDE: &str = r#"
import json, sys, time
# glibc's malloc hands out blocks over its mmap threshold (128 KiB at first) as fresh
# pages, faulted in again at every call; freeing such a block raises the threshold (to
# the block's size), as a long-running process's first large tensors do. Do that up
# front, so each baseline is timed in that steady state, whatever ran before it in the
# process (PyTorch's depthwise conv2d of 144x56x56 took 6.1 ms before and 0.4 ms after).
bytearray(16 << 20)
"#;

/// Times numpy and PyTorch themselves (after [`PY_PRELUDE`]); argv: matmul sizes
/// (comma-separated), softmax n, threads, budget seconds, minimum repetitions. One JSON
/// object per line.
const PY_SCRIPT: &str = r#"
sizes = [int(s) for s in sys.argv[1].split(",")]
smn, threads, budget, min_reps = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
def emit(**kw):
    print(json.dumps(kw), flush=True)
def measure(f):
    t = time.perf_counter(); f(); first = time.perf_counter() - t
    v = []
    if first > 1.0:
        v.append(first); reps = 2
    else:
        reps = max(min_reps, min(30, int(budget / max(first, 1e-6))))
    for _ in range(reps):
        t = time.perf_counter(); f(); v.append(time.perf_counter() - t)
    v.sort(); n = len(v)
    return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])
workloads = ["matmul_f32_%d" % n for n in sizes] + ["softmax_f32_%dx%d" % (smn, smn)]
try:
    import numpy as np
except Exception as e:
    for w in workloads:
        emit(workload=w, impl="numpy", note="numpy not importable: %s" % e)
else:
    blas = "BLAS unknown"
    try:
        cfg = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas = "%s %s" % (cfg.get("name"), cfg.get("version"))
    except Exception:
        pass
    try:
        import ctypes, glob, os
        libs = os.path.join(os.path.dirname(np.__file__), "..", "numpy.libs", "*openblas*")
        lib = ctypes.CDLL(glob.glob(libs)[0])
        core = None
        for name in ("scipy_openblas_get_corename64_", "openblas_get_corename64_", "openblas_get_corename"):
            try:
                core = getattr(lib, name)
                break
            except AttributeError:
                pass
        core.restype = ctypes.c_char_p
        blas += ", %s kernels" % core().decode()
    except Exception:
        pass
    emit(info="numpy %s (%s)" % (np.__version__, blas))
    rng = np.random.default_rng(1)
    for n in sizes:
        a = rng.random((n, n), dtype=np.float32); b = rng.random((n, n), dtype=np.float32)
        c = np.empty((n, n), dtype=np.float32)
        emit(workload="matmul_f32_%d" % n, impl="numpy", median_s=measure(lambda: np.matmul(a, b, out=c)))
    x = rng.random((smn, smn), dtype=np.float32); y = np.empty_like(x)
    def softmax():
        m = x.max(axis=1, keepdims=True)
        np.subtract(x, m, out=y); np.exp(y, out=y)
        np.divide(y, y.sum(axis=1, keepdims=True), out=y)
    emit(workload=workloads[-1], impl="numpy", median_s=measure(softmax))
try:
    import torch
except Exception as e:
    for w in workloads:
        emit(workload=w, impl="torch", note="torch not importable: %s" % e)
else:
    torch.set_num_threads(threads)
    emit(info="torch %s" % torch.__version__)
    for n in sizes:
        a = torch.rand(n, n); b = torch.rand(n, n); c = torch.empty(n, n)
        emit(workload="matmul_f32_%d" % n, impl="torch", median_s=measure(lambda: torch.matmul(a, b, out=c)))
    x = torch.rand(smn, smn)
    emit(workload=workloads[-1], impl="torch", median_s=measure(lambda: torch.softmax(x, dim=1)))
"#;

/// What every PyTorch child script starts with (after [`PY_PRELUDE`]): the workload
/// names (argv 2), threads, budget and minimum repetitions (argv 3 to 5), `measure(f)`
/// (the median of as many calls as fit the budget, at least `min_reps`, at most 50),
/// `torch` imported (else a "not importable" row per workload) with its thread count
/// set.
const PY_TORCH: &str = r#"
names = sys.argv[2].split(";")
threads, budget, min_reps = int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
def measure(f):
    t = time.perf_counter(); f(); first = time.perf_counter() - t
    reps = max(min_reps, min(50, int(budget / max(first, 1e-6))))
    v = []
    for _ in range(reps):
        t = time.perf_counter(); f(); v.append(time.perf_counter() - t)
    v.sort(); n = len(v)
    return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])
try:
    import torch
except Exception as e:
    for n in names:
        print(json.dumps(dict(workload=n, impl="torch", note="torch not importable: %s" % e)))
    sys.exit(0)
torch.set_num_threads(threads)
print(json.dumps(dict(info="torch %s" % torch.__version__)))
"#;

/// Rows timed by a PyTorch script (after [`PY_PRELUDE`] and [`PY_TORCH`]) in a `python3` child: argv
/// `spec`, the workload names (`;`-separated), threads, budget seconds, minimum
/// repetitions; one JSON object per line. A workload it does not report is a row "not
/// available" (as is each one when python3 cannot start).
fn torch_script_rows(
    o: &Opts,
    threads: usize,
    infos: &mut Vec<String>,
    script: &str,
    spec: &str,
    names: &[String],
    flops: impl Fn(&str) -> Option<f64>,
) -> Vec<Row> {
    let t = threads.to_string();
    let out = python3()
        .arg("-c")
        .arg(format!("{}{}{}", PY_PRELUDE, PY_TORCH, script))
        .arg(spec)
        .arg(names.join(";"))
        .arg(&t)
        .arg(o.budget().to_string())
        .arg(o.min_reps().to_string())
        .env("OMP_NUM_THREADS", &t)
        .output();
    let text = match out {
        Ok(out) => String::from_utf8_lossy(&out.stdout).to_string(),
        Err(e) => {
            return names
                .iter()
                .map(|n| Row::missing(n, "torch", threads, format!("python3: {}", e)))
                .collect()
        }
    };
    let mut rows = vec![];
    for v in child_json(&text, infos) {
        let Some(w) = v["workload"].as_str() else {
            continue;
        };
        rows.push(match v["median_s"].as_f64() {
            Some(s) => Row::timed(w, "torch", threads, s, flops(w)),
            None => Row::missing(
                w,
                "torch",
                threads,
                v["note"].as_str().unwrap_or("no result"),
            ),
        });
    }
    for n in names {
        if !rows.iter().any(|r| &r.workload == n) {
            rows.push(Row::missing(
                n,
                "torch",
                threads,
                "python3 stopped before it",
            ));
        }
    }
    rows
}

fn python_rows(o: &Opts, threads: usize, infos: &mut Vec<String>) -> Vec<Row> {
    let sizes: Vec<String> = o.matmul_sizes().iter().map(|n| n.to_string()).collect();
    let smn = o.softmax_n();
    let workloads: Vec<String> = o
        .matmul_sizes()
        .iter()
        .map(|n| format!("matmul_f32_{}", n))
        .chain([format!("softmax_f32_{}x{}", smn, smn)])
        .collect();
    let all_missing = |why: String| -> Vec<Row> {
        workloads
            .iter()
            .flat_map(|w| {
                ["numpy", "torch"]
                    .into_iter()
                    .map(|imp| Row::missing(w, imp, threads, why.clone()))
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    eprintln!("  numpy / torch threads={}", threads);
    let t = threads.to_string();
    let out = python3()
        .arg("-c")
        .arg(format!("{}{}", PY_PRELUDE, PY_SCRIPT))
        .arg(sizes.join(","))
        .arg(smn.to_string())
        .arg(&t)
        .arg(o.budget().to_string())
        .arg(o.min_reps().to_string())
        .env("OPENBLAS_NUM_THREADS", &t)
        .env("OMP_NUM_THREADS", &t)
        .env("MKL_NUM_THREADS", &t)
        .output();
    let out = match out {
        Ok(out) => out,
        Err(e) => return all_missing(format!("python3 could not be started: {}", e)),
    };
    let mut rows = vec![];
    for v in child_json(&String::from_utf8_lossy(&out.stdout), infos) {
        let (Some(w), Some(imp)) = (v["workload"].as_str(), v["impl"].as_str()) else {
            continue;
        };
        if !o.wants(w) {
            continue;
        }
        let flops = w
            .strip_prefix("matmul_f32_")
            .and_then(|n| n.parse::<f64>().ok())
            .map(|n| 2.0 * n * n * n);
        rows.push(match (v["median_s"].as_f64(), v["note"].as_str()) {
            (Some(s), _) => Row::timed(w, imp, threads, s, flops),
            (None, note) => Row::missing(w, imp, threads, note.unwrap_or("no result")),
        });
    }
    if rows.is_empty() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or("no output").to_string();
        return all_missing(format!("python3 failed: {}", last));
    }
    // Whatever the script did not report (it died half-way) is missing too.
    let err = String::from_utf8_lossy(&out.stderr);
    let why = format!(
        "python3 stopped before it: {}",
        err.lines().last().unwrap_or("no error message")
    );
    for w in workloads.iter().filter(|w| o.wants(w)) {
        for imp in ["numpy", "torch"] {
            if !rows.iter().any(|r| &r.workload == w && r.imp == imp) {
                rows.push(Row::missing(w, imp, threads, why.clone()));
            }
        }
    }
    rows
}

/// Median of the fastest loopforge implementation of each (workload, threads).
fn best_loopforge(rows: &[Row], w: &str, t: usize) -> Option<f64> {
    rows.iter()
        .filter(|r| r.workload == w && r.threads == t && r.imp.starts_with("loopforge"))
        .filter_map(|r| r.median_s)
        .min_by(|a, b| a.partial_cmp(b).unwrap())
}

fn print_json(rows: &[Row]) {
    for r in rows {
        let mut v = serde_json::json!({
            "workload": r.workload,
            "impl": r.imp,
            "threads": r.threads,
            "median": r.median_s.map(|s| s * 1e3),
            "unit": "ms",
        });
        if let Some(n) = &r.note {
            v["note"] = serde_json::Value::from(n.as_str());
        }
        println!("{}", v);
    }
}

fn print_table(rows: &[Row], infos: &[String], rounds: usize) {
    println!("| workload | impl | threads | median ms | GFLOP/s | ratio to best loopforge |");
    println!("|---|---|---|---|---|---|");
    for r in rows {
        match r.median_s {
            Some(s) => {
                let gf = r
                    .flops
                    .map(|f| format!("{:.1}", f / s / 1e9))
                    .unwrap_or_else(|| "—".into());
                let ratio = best_loopforge(rows, &r.workload, r.threads)
                    .map(|b| format!("{:.2}", s / b))
                    .unwrap_or_else(|| "—".into());
                println!(
                    "| {} | {} | {} | {:.2} | {} | {} |",
                    r.workload,
                    r.imp,
                    r.threads,
                    s * 1e3,
                    gf,
                    ratio
                );
            }
            None => println!(
                "| {} | {} | {} | not available ({}) | — | — |",
                r.workload,
                r.imp,
                r.threads,
                r.note.as_deref().unwrap_or("?")
            ),
        }
    }
    println!();
    println!("ratio = median / median of the fastest loopforge kernel of the same workload and thread count (> 1: slower than loopforge).");
    if rounds > 1 {
        println!("median: of the medians of {} rounds, each round measuring every implementation in turn.", rounds);
    }
    for i in infos {
        println!("baseline versions: {}", i);
    }
}

/// Every selected workload on `t` threads, loopforge's kernels and the baselines, once.
fn one_round(o: &Opts, t: usize, infos: &mut Vec<String>) -> Result<Vec<Row>> {
    let mut rows = vec![];
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(t)
        .build()
        .map_err(|e| Error::Target(format!("rayon pool of {} threads: {}", t, e)))?;
    let sizes = o.matmul_sizes();
    for (idx, &n) in sizes.iter().enumerate().filter(|_| o.wants("matmul")) {
        // The default schedule: smallest size, 1 thread only (no parallel loop).
        let with_default = idx == 0 && t == 1;
        rows.extend(pool.install(|| matmul_rows(o, n, t, with_default))?);
    }
    if o.wants("softmax") {
        rows.extend(pool.install(|| softmax_rows(o, t))?);
    }
    if o.wants("matmul") || o.wants("softmax") {
        rows.extend(python_rows(o, t, infos));
    }
    if o.wants("conv2d") {
        rows.extend(pool.install(|| conv::conv_rows(o, t))?);
        rows.extend(conv::torch_rows(o, t, infos));
    }
    if o.wants("dense") {
        rows.extend(pool.install(|| dense::dense_rows(o, t))?);
        rows.extend(dense::torch_rows(o, t, infos));
    }
    if ["sigmoid", "tanh", "gelu"].iter().any(|w| o.wants(w)) {
        rows.extend(pool.install(|| activation::activation_rows(o, t))?);
        rows.extend(activation::torch_rows(o, t, infos));
    }
    Ok(rows)
}

/// One row per (workload, implementation, threads), in order of first appearance: the
/// median of the rounds' medians (of an even count, the mean of the middle two). Where
/// some round has no time for it (a baseline that cannot run, a result that failed its
/// check), the row is that round's, "not available" with its reason (and in how many of
/// the rounds), so a failure in any round shows.
fn median_of_rounds(rows: Vec<Row>) -> Vec<Row> {
    let mut out: Vec<(Vec<Row>, Vec<f64>)> = vec![];
    for r in rows {
        let key = |x: &Row| (x.workload.clone(), x.imp.clone(), x.threads);
        let times = r.median_s;
        match out.iter_mut().find(|(rs, _)| key(&rs[0]) == key(&r)) {
            Some((rs, ts)) => {
                rs.push(r);
                ts.extend(times);
            }
            None => out.push((vec![r], times.into_iter().collect())),
        }
    }
    out.into_iter()
        .map(|(mut rs, mut times)| {
            let rounds = rs.len();
            if let Some(i) = rs.iter().position(|r| r.median_s.is_none()) {
                let mut r = rs.swap_remove(i);
                if rounds > 1 && !times.is_empty() {
                    let why = r.note.take().unwrap_or_default();
                    r.note = Some(format!(
                        "{} (in {} of {} rounds)",
                        why,
                        rounds - times.len(),
                        rounds
                    ));
                }
                return r;
            }
            times.sort_by(f64::total_cmp);
            let mid = times.len() / 2;
            let mut r = rs.swap_remove(0);
            r.median_s = Some(if times.len() % 2 == 0 {
                (times[mid - 1] + times[mid]) / 2.0
            } else {
                times[mid]
            });
            r
        })
        .collect()
}

fn main() -> Result<()> {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("--child-matrixmultiply") {
        let n = argv[2].parse().expect("size");
        let budget = argv[3].parse().expect("budget");
        let min_reps = argv[4].parse().expect("repetitions");
        child_matrixmultiply(n, budget, min_reps);
        return Ok(());
    }
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bench_report: {}", e);
            std::process::exit(2);
        }
    };
    let mut rows = vec![];
    let mut infos = vec![];
    for round in 0..o.rounds {
        for &t in &o.threads {
            eprintln!("round {} of {}, threads = {}", round + 1, o.rounds, t);
            rows.extend(one_round(&o, t, &mut infos)?);
        }
    }
    let mut rows = median_of_rounds(rows);
    // Group: workload (in order of first appearance), then threads, then as measured.
    let mut order: Vec<String> = vec![];
    for r in &rows {
        if !order.contains(&r.workload) {
            order.push(r.workload.clone());
        }
    }
    rows.sort_by_key(|r| {
        (
            order.iter().position(|w| *w == r.workload).unwrap(),
            r.threads,
        )
    });
    if o.json {
        print_json(&rows);
    } else {
        print_table(&rows, &infos, o.rounds);
    }
    Ok(())
}
