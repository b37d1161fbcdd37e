//! The `loopforge` command line: compile an ONNX model, run it on .npy inputs, benchmark
//! it, tune it (a tuning log that compile and bench then read), and its errors (each with
//! exit status 1 and a message saying what to do).

use loopforge::graph_runtime::{self, npy, CompiledModel, Conv2dAttrs, Graph};
use loopforge::prelude::*;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

fn exe() -> Command {
    Command::new(env!("CARGO_BIN_EXE_loopforge"))
}

/// The stderr of a run that must have succeeded (else the assertion shows it).
fn succeeded(out: &std::process::Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{}", err);
    err
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("loopforge_cli_{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// A small conv + relu + dense model compiled through the API and saved (to a new file at
/// each call).
fn saved_model() -> (PathBuf, NdArray, NdArray) {
    let mut g = Graph::new();
    let x = g.input("x", &[1, 2, 6, 6], DType::F32).unwrap();
    let w = g.param("w", &[3, 2, 3, 3]).unwrap();
    let c = g.conv2d("conv", x, w, Conv2dAttrs::same(1, 1)).unwrap();
    let r = g.relu("relu", c).unwrap();
    let f = g.flatten("flat", r).unwrap();
    let wf = g.param("fc", &[4, 108]).unwrap();
    let y = g.dense("dense", f, wf, None).unwrap();
    g.output(y).unwrap();
    let mut ps = HashMap::new();
    ps.insert(
        "w".to_string(),
        NdArray::random(&[3, 2, 3, 3], DType::F32, 1),
    );
    ps.insert("fc".to_string(), NdArray::random(&[4, 108], DType::F32, 2));
    let m = graph_runtime::build(&g, Target::cpu(), &ps, 1).unwrap();
    let xa = NdArray::random(&[1, 2, 6, 6], DType::F32, 3);
    let mut ex = m.executor();
    ex.set_input("x", xa.clone()).unwrap();
    ex.run().unwrap();
    let want = ex.get_output(0).unwrap().clone();
    // A file of its own per call: tests run concurrently, and one must not read the
    // model while another rewrites it.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = tmp(&format!("model{}.lfm", n));
    m.save(&path).unwrap();
    (path, xa, want)
}

#[test]
fn run_and_bench_a_saved_model() {
    let (model, x, want) = saved_model();
    let xin = tmp("x.npy");
    npy::save(&xin, &x).unwrap();
    let yout = tmp("y.npy");
    let out = exe()
        .args(["run", model.to_str().unwrap(), "--input"])
        .arg(&xin)
        .arg("--output")
        .arg(&yout)
        .args(["--threads", "2"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = npy::load(&yout).unwrap();
    assert_eq!(got.to_vec::<f32>().unwrap(), want.to_vec::<f32>().unwrap());
    // Named input.
    let out = exe()
        .args(["run", model.to_str().unwrap()])
        .arg(format!("--input=x={}", xin.display()))
        .arg("--output")
        .arg(&yout)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = exe()
        .args([
            "bench",
            model.to_str().unwrap(),
            "--repeat",
            "5",
            "--warmup",
            "1",
            "--json",
        ])
        .env("LOOPFORGE_NUM_THREADS", "2")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["runs"], 5);
    assert_eq!(v["threads"], 2);
    assert_eq!(v["target"], "cpu");
    let (p50, p90) = (v["p50_ms"].as_f64().unwrap(), v["p90_ms"].as_f64().unwrap());
    assert!(p50 > 0.0 && p50 <= p90, "{}", v);
}

#[test]
fn bench_compiles_an_onnx_model_for_the_target_given() {
    let onnx = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/onnx/mlp.onnx");
    let out = exe()
        .args(["bench", onnx.to_str().unwrap(), "--target", "interp"])
        .args(["--repeat", "2", "--warmup", "0", "--json"])
        .output()
        .unwrap();
    succeeded(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["target"], "interp");
    assert_eq!(v["runs"], 2);
    // A compiled model keeps the target it was compiled for.
    let (model, _, _) = saved_model();
    let out = exe()
        .args(["bench", model.to_str().unwrap(), "--target", "cuda"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is a compiled model: its target is fixed; --target applies when compiling an .onnx model"),
        "{}",
        err
    );
}

#[test]
fn bench_profiles_each_kernel() {
    let onnx = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/onnx/mlp.onnx");
    let out = exe()
        .args(["bench", onnx.to_str().unwrap(), "--profile", "--json"])
        .args(["--repeat", "3", "--warmup", "1"])
        .output()
        .unwrap();
    succeeded(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let nodes = v["profile"].as_array().unwrap();
    assert!(!nodes.is_empty(), "{}", v);
    // Slowest first, every node named with its operator.
    let ms: Vec<f64> = nodes
        .iter()
        .map(|n| n["median_ms"].as_f64().unwrap())
        .collect();
    assert!(ms.windows(2).all(|w| w[0] >= w[1]), "{:?}", ms);
    assert!(
        nodes
            .iter()
            .all(|n| !n["node"].as_str().unwrap().is_empty()
                && !n["op"].as_str().unwrap().is_empty()),
        "{}",
        v
    );
    // The table: one line per kernel after the header.
    let out = exe()
        .args(["bench", onnx.to_str().unwrap(), "--profile"])
        .args(["--repeat", "2", "--warmup", "0"])
        .output()
        .unwrap();
    succeeded(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("per kernel (median of each over the runs"),
        "{}",
        text
    );
    assert!(text.contains("cum %"), "{}", text);
    assert!(
        text.lines().filter(|l| l.contains("dense")).count() >= 1,
        "{}",
        text
    );
    // A CUDA model is refused before any run (its kernels are not timed one by one).
    if loopforge::codegen_cuda::nvrtc_available() {
        let out = exe()
            .args([
                "bench",
                onnx.to_str().unwrap(),
                "--target",
                "cuda",
                "--profile",
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--profile times each kernel on the CPU"),
            "{}",
            err
        );
    }
}

#[test]
fn compile_an_onnx_model_then_run_it() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/onnx");
    let onnx = dir.join("mlp.onnx");
    let lfm = tmp("mlp.lfm");
    let out = exe()
        .args([
            "compile",
            onnx.to_str().unwrap(),
            "-o",
            lfm.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("compiled"));
    // The compiled file gives what the library gives for the same model.
    let (g, ps) = graph_runtime::onnx::load(&onnx).unwrap();
    let m = graph_runtime::build(&g, Target::cpu(), &ps, 1).unwrap();
    let input = g.value(g.inputs()[0]);
    let x = NdArray::random(&input.shape, input.dtype, 9);
    let mut ex = m.executor();
    ex.set_input(g.value_name(g.inputs()[0]), x.clone())
        .unwrap();
    ex.run().unwrap();
    let want = ex.get_output(0).unwrap().to_vec::<f32>().unwrap();
    let (xin, yout) = (tmp("mlp_x.npy"), tmp("mlp_y.npy"));
    npy::save(&xin, &x).unwrap();
    let out = exe()
        .args(["run", lfm.to_str().unwrap(), "--input"])
        .arg(&xin)
        .arg("--output")
        .arg(&yout)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(npy::load(&yout).unwrap().to_vec::<f32>().unwrap(), want);
}

#[test]
fn errors_say_what_to_do() {
    let (model, _, _) = saved_model();
    let garbage = tmp("garbage.lfm");
    std::fs::write(&garbage, b"nothing here").unwrap();
    for (args, needle) in [
        (
            vec![
                "run".to_string(),
                garbage.display().to_string(),
                "--input".into(),
                "x.npy".into(),
                "--output".into(),
                "y.npy".into(),
            ],
            "not a loopforge model file",
        ),
        (
            vec![
                "run".to_string(),
                model.display().to_string(),
                "--input".into(),
                "/nonexistent.npy".into(),
                "--output".into(),
                "y.npy".into(),
            ],
            "cannot read /nonexistent.npy",
        ),
        (
            vec![
                "compile".to_string(),
                "/nonexistent.onnx".into(),
                "-o".into(),
                "m.lfm".into(),
                "--target".into(),
                "tpu".into(),
            ],
            "unknown target \"tpu\"",
        ),
        (
            vec![
                "bench".to_string(),
                model.display().to_string(),
                "--threads".into(),
                "0".into(),
            ],
            "--threads must be at least 1",
        ),
    ] {
        let out = exe().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{:?}", args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{:?}: {}", args, err);
    }
    // A bad command line is clap's usage error (status 2).
    let out = exe().args(["run"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn tune_then_compile_and_bench_with_the_log() {
    let onnx = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/onnx/mlp.onnx");
    let log = tmp("mlp_tuning.log");
    let _ = std::fs::remove_file(&log);
    let tune = |extra: &[&str]| {
        let out = exe()
            .args(["tune", onnx.to_str().unwrap(), "--log"])
            .arg(&log)
            .args(["--trials", "3", "--repeat", "1", "--threads", "1"])
            .args(extra)
            .output()
            .unwrap();
        succeeded(&out)
    };
    // The MLP's two dense layers (batch 4) are the workloads; one record each.
    let err = tune(&[]);
    assert!(err.contains("tuned 2 workloads"), "{}", err);
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.lines().count(), 2, "{}", text);
    assert!(
        text.lines().all(|l| l.contains("\"op\":\"dense\"")),
        "{}",
        text
    );
    // Again: found in the log, nothing appended; --retune measures again.
    let err = tune(&[]);
    assert!(err.contains("(from the log)"), "{}", err);
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 2);
    tune(&["--retune"]);
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 4);

    // compile with the log: both dense kernels from it (not the softmax), same results as the library's
    // default build.
    let lfm = tmp("mlp_tuned.lfm");
    let out = exe()
        .args(["compile", onnx.to_str().unwrap(), "-o"])
        .arg(&lfm)
        .arg("--tuning-log")
        .arg(&log)
        .output()
        .unwrap();
    let err = succeeded(&out);
    assert!(
        err.contains("2 of 3 kernels scheduled from the tuning log"),
        "{}",
        err
    );
    let m = CompiledModel::load(&lfm).unwrap();
    let tuned: Vec<bool> = (0..m.num_kernels())
        .map(|i| m.tuned_config(i).is_some())
        .collect();
    assert_eq!(tuned, [true, true, false], "dense + relu, dense, softmax");
    let (g, ps) = graph_runtime::onnx::load(&onnx).unwrap();
    let plain = graph_runtime::build(&g, Target::cpu(), &ps, 1).unwrap();
    let input = g.value(g.inputs()[0]);
    let x = NdArray::random(&input.shape, input.dtype, 4);
    let outputs = |m: &CompiledModel| {
        let mut ex = m.executor();
        ex.set_input(g.value_name(g.inputs()[0]), x.clone())
            .unwrap();
        ex.run().unwrap();
        ex.get_output(0).unwrap().clone()
    };
    assert!(outputs(&m).allclose(&outputs(&plain), 1e-5, 1e-6));

    // bench with the log.
    let out = exe()
        .args([
            "bench",
            onnx.to_str().unwrap(),
            "--repeat",
            "3",
            "--tuning-log",
        ])
        .arg(&log)
        .output()
        .unwrap();
    succeeded(&out);

    // Errors: a file that is not a log, a log given with a compiled model.
    let bad = tmp("bad_tuning.log");
    std::fs::write(&bad, "{\"workload\": 3}\n").unwrap();
    for (args, needle) in [
        (
            vec![
                "bench".to_string(),
                onnx.display().to_string(),
                "--tuning-log".into(),
                bad.display().to_string(),
            ],
            format!("{}:1: not a tuning record", bad.display()),
        ),
        (
            vec![
                "bench".to_string(),
                lfm.display().to_string(),
                "--tuning-log".into(),
                log.display().to_string(),
            ],
            "is a compiled model: its schedules are fixed".to_string(),
        ),
    ] {
        let out = exe().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{:?}", args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&needle), "{:?}: {}", args, err);
    }
}
