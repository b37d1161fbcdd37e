//! `loopforge`: compile, run and benchmark models from the command line (in the spirit of
//! TVM's `tvmc`).
//!
//! ```text
//! loopforge compile model.onnx -o model.lfm [--target cpu|cuda|interp] [--threads N] [--tuning-log F]
//! loopforge run model.lfm --input x.npy [--input name=y.npy ...] --output out.npy [--threads N]
//! loopforge bench model.onnx|model.lfm [--target cpu|cuda|interp] [--threads N] [--warmup W] [--repeat R] [--json] [--tuning-log F] [--profile]
//! loopforge tune model.onnx --log F [--threads N] [--trials T] [--repeat R] [--retune]
//! ```
//!
//! `tune` measures candidate schedules of each distinct conv2d/dense/matmul workload of the
//! model and appends the fastest to the tuning log `F` (JSON lines); `compile` and `bench`
//! with `--tuning-log F` then use them. `--threads` defaults to `LOOPFORGE_NUM_THREADS`,
//! else 1. Errors are printed with what
//! to do and exit with status 1 (2 for a bad command line).

use clap::{Parser, Subcommand};
use loopforge::autotune::{self, TuneEvent, TuneOptions, TuningLog};
use loopforge::graph_runtime::{
    self, npy, BuildOptions, BuildSettings, CompiledModel, GraphExecutor, ScheduleKind,
};
use loopforge::{Error, NdArray, Result, Target};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "loopforge",
    version,
    about = "Compile, run and benchmark models with loopforge"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Compile an ONNX model into a self-contained .lfm file.
    Compile {
        /// The ONNX model.
        model: PathBuf,
        /// Where to write the compiled model.
        #[arg(short, long)]
        output: PathBuf,
        /// cpu, cuda or interp (the reference interpreter).
        #[arg(long, default_value = "cpu")]
        target: String,
        /// Threads the CPU kernels are compiled for (parallel loops when above 1).
        #[arg(long)]
        threads: Option<usize>,
        /// A tuning log written by `loopforge tune` (CPU targets).
        #[arg(long)]
        tuning_log: Option<PathBuf>,
    },
    /// Run a compiled model on .npy inputs and write its outputs as .npy.
    Run {
        /// The compiled model (.lfm).
        model: PathBuf,
        /// An input: `file.npy` (for a model with one input) or `name=file.npy`.
        #[arg(long = "input", required = true)]
        inputs: Vec<String>,
        /// Where to write the outputs, in the model's output order.
        #[arg(long = "output", required = true)]
        outputs: Vec<PathBuf>,
        /// Worker threads for parallel loops.
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Measure the latency of a model (.onnx, compiled first, or .lfm) on random inputs.
    Bench {
        /// The model.
        model: PathBuf,
        /// Threads (compilation for .onnx, and worker threads).
        #[arg(long)]
        threads: Option<usize>,
        /// cpu, cuda or interp: what an .onnx model is compiled for (a compiled .lfm
        /// model keeps its own).
        #[arg(long)]
        target: Option<String>,
        /// Untimed runs first.
        #[arg(long, default_value_t = 5)]
        warmup: usize,
        /// Timed runs.
        #[arg(long, default_value_t = 50)]
        repeat: usize,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// A tuning log written by `loopforge tune` (for .onnx models).
        #[arg(long)]
        tuning_log: Option<PathBuf>,
        /// Then time each kernel over the same number of runs and print the median per
        /// node, slowest first (CPU and interp models).
        #[arg(long)]
        profile: bool,
    },
    /// Search the schedules of the model's conv2d, dense and matmul workloads on this
    /// machine and append the fastest to a tuning log.
    Tune {
        /// The ONNX model.
        model: PathBuf,
        /// The tuning log (JSON lines; created if missing, appended to otherwise).
        #[arg(long)]
        log: PathBuf,
        /// Threads the builds that will read the log use (the kernels are timed with them).
        #[arg(long)]
        threads: Option<usize>,
        /// Candidate schedules measured per workload at most.
        #[arg(long, default_value_t = 16)]
        trials: usize,
        /// Timed runs per candidate (the median counts).
        #[arg(long, default_value_t = 10)]
        repeat: usize,
        /// Measure workloads the log already holds again.
        #[arg(long)]
        retune: bool,
    },
}

fn threads(arg: Option<usize>) -> Result<usize> {
    if let Some(n) = arg {
        return if n >= 1 {
            Ok(n)
        } else {
            Err(Error::Argument("--threads must be at least 1".into()))
        };
    }
    match std::env::var("LOOPFORGE_NUM_THREADS") {
        Ok(v) => v.parse::<usize>().ok().filter(|&n| n >= 1).ok_or_else(|| {
            Error::Argument(format!(
                "LOOPFORGE_NUM_THREADS={} is not a positive number of threads",
                v
            ))
        }),
        Err(_) => Ok(1),
    }
}

fn pool(n: usize) {
    // The first call sets rayon's global pool; later ones keep it.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global();
}

fn target(name: &str) -> Result<Target> {
    match name {
        "cpu" => Ok(Target::cpu()),
        "cuda" => Ok(Target::cuda()),
        "interp" => Ok(Target::interp()),
        other => Err(Error::Argument(format!(
            "unknown target {:?}: use cpu, cuda or interp",
            other
        ))),
    }
}

/// Compile an ONNX model, printing progress on stderr.
fn compile_onnx(
    path: &Path,
    target: Target,
    threads: usize,
    tuning_log: Option<&Path>,
    quiet: bool,
) -> Result<CompiledModel> {
    let (graph, params) = graph_runtime::onnx::load(path)?;
    let kind = match target {
        Target::Cuda { .. } => ScheduleKind::Cuda,
        _ => ScheduleKind::Cpu,
    };
    let log = tuning_log.map(TuningLog::load).transpose()?;
    let start = Instant::now();
    let m = graph_runtime::build_with_settings(
        &graph,
        target,
        &params,
        &BuildSettings {
            threads,
            kind,
            options: BuildOptions::default(),
            tuning: log.as_ref(),
        },
        &mut |i, n, node| {
            if !quiet {
                eprint!(
                    "\rcompiling {:>4}/{} {:<40}",
                    i + 1,
                    n,
                    format!("{} ({})", node.name, node.op.kind_name())
                );
            }
        },
    )?;
    if !quiet {
        let plan = m.memory_plan();
        eprintln!(
            "\rcompiled {} nodes into {} kernels in {:.2} s; intermediates {} -> {} bytes{:<20}",
            graph.nodes().len(),
            m.num_kernels(),
            start.elapsed().as_secs_f64(),
            plan.unplanned_bytes,
            plan.planned_bytes,
            ""
        );
        if log.is_some() {
            let tuned = (0..m.num_kernels())
                .filter(|&i| m.tuned_config(i).is_some())
                .count();
            eprintln!(
                "{} of {} kernels scheduled from the tuning log",
                tuned,
                m.num_kernels()
            );
        }
    }
    Ok(m)
}

/// Tune the model's workloads, printing each result.
fn tune(model: &Path, log_path: &Path, opts: &TuneOptions) -> Result<()> {
    let (graph, params) = graph_runtime::onnx::load(model)?;
    let mut log = TuningLog::load_or_new(log_path)?;
    let start = Instant::now();
    let report =
        autotune::tune_graph(
            &graph,
            &params,
            opts,
            &mut log,
            Some(log_path),
            &mut |e| match e {
                TuneEvent::Start {
                    index,
                    count,
                    node,
                    op,
                } => eprint!(
                    "\rtuning {:>3}/{} {:<48}",
                    index + 1,
                    count,
                    format!("{} ({})", node, op)
                ),
                TuneEvent::Done(r) => {
                    eprintln!(
                    "\r{:<10} {:<28} x{:<2} default {:>9.1} us  best {:>9.1} us  {:>5.2}x  {}{}",
                    r.op,
                    r.node,
                    r.nodes,
                    r.default_us,
                    r.best_us,
                    r.default_us / r.best_us,
                    r.best,
                    if r.tried == 0 { "  (from the log)" } else { "" }
                );
                    for (c, why) in &r.rejected {
                        eprintln!("  rejected {}: {}", c, why);
                    }
                }
            },
        )?;
    let default: f64 = report
        .workloads
        .iter()
        .map(|r| r.default_us * r.nodes as f64)
        .sum();
    let best: f64 = report
        .workloads
        .iter()
        .map(|r| r.best_us * r.nodes as f64)
        .sum();
    eprintln!(
        "tuned {} workloads in {:.1} s; their kernels: {:.2} ms by default, {:.2} ms tuned ({:.2}x); log: {}",
        report.workloads.len(),
        start.elapsed().as_secs_f64(),
        default / 1e3,
        best / 1e3,
        default / best.max(1e-9),
        log_path.display()
    );
    Ok(())
}

fn load_any(
    path: &Path,
    target_name: Option<&str>,
    threads: usize,
    tuning_log: Option<&Path>,
    quiet: bool,
) -> Result<CompiledModel> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("onnx") => compile_onnx(
            path,
            target(target_name.unwrap_or("cpu"))?,
            threads,
            tuning_log,
            quiet,
        ),
        _ if tuning_log.is_some() => Err(Error::Argument(format!(
            "{} is a compiled model: its schedules are fixed; --tuning-log applies when compiling an .onnx model",
            path.display()
        ))),
        _ if target_name.is_some() => Err(Error::Argument(format!(
            "{} is a compiled model: its target is fixed; --target applies when compiling an .onnx model",
            path.display()
        ))),
        _ => CompiledModel::load(path),
    }
}

fn run(model: &Path, inputs: &[String], outputs: &[PathBuf]) -> Result<()> {
    let m = CompiledModel::load(model)?;
    let names: Vec<String> = m
        .graph()
        .inputs()
        .iter()
        .map(|&v| m.graph().value_name(v).to_string())
        .collect();
    let mut ex = m.executor();
    for spec in inputs {
        let (name, file) = match spec.split_once('=') {
            Some((n, f)) => (n.to_string(), f),
            None if names.len() == 1 => (names[0].clone(), spec.as_str()),
            None => {
                return Err(Error::Argument(format!(
                    "the model has inputs {:?}: give each as --input name=file.npy",
                    names
                )))
            }
        };
        ex.set_input(&name, npy::load(file)?)?;
    }
    ex.run()?;
    let n_out = m.graph().outputs().len();
    if outputs.len() != n_out {
        return Err(Error::Argument(format!(
            "the model has {} outputs; give {} --output files",
            n_out, n_out
        )));
    }
    for (i, path) in outputs.iter().enumerate() {
        npy::save(path, ex.get_output(i)?)?;
    }
    Ok(())
}

/// What `bench` measures and how.
struct BenchOptions<'a> {
    target: Option<&'a str>,
    threads: usize,
    warmup: usize,
    repeat: usize,
    json: bool,
    tuning_log: Option<&'a Path>,
    profile: bool,
}

fn bench(model: &Path, o: &BenchOptions<'_>) -> Result<()> {
    let BenchOptions {
        target,
        threads,
        warmup,
        repeat,
        json,
        tuning_log,
        profile,
    } = *o;
    let start = Instant::now();
    let m = load_any(model, target, threads, tuning_log, json)?;
    let target_name = match m.target() {
        Target::Cpu => "cpu",
        Target::Cuda { .. } => "cuda",
        Target::Interp => "interp",
    };
    let build_s = start.elapsed().as_secs_f64();
    if profile && target_name == "cuda" {
        return Err(Error::Argument(
            "--profile times each kernel on the CPU; a CUDA model's kernels run asynchronously (profile it with nsys)".into(),
        ));
    }
    let mut ex = m.executor();
    for (k, &v) in m.graph().inputs().iter().enumerate() {
        let info = m.graph().value(v);
        ex.set_input(
            m.graph().value_name(v),
            NdArray::random(&info.shape, info.dtype, 1000 + k as u64),
        )?;
    }
    for _ in 0..warmup {
        ex.run()?;
    }
    let mut t: Vec<f64> = Vec::with_capacity(repeat.max(1));
    for _ in 0..repeat.max(1) {
        let s = Instant::now();
        ex.run()?;
        t.push(s.elapsed().as_secs_f64() * 1e3);
    }
    t.sort_by(|a, b| a.partial_cmp(b).expect("times are finite"));
    let pct = |p: f64| t[((t.len() - 1) as f64 * p).round() as usize];
    let mean = t.iter().sum::<f64>() / t.len() as f64;
    let nodes = if profile {
        node_medians(&mut ex, repeat.max(1))?
    } else {
        vec![]
    };
    if json {
        let mut v = serde_json::json!({
                "model": model.display().to_string(),
                "target": target_name,
                "threads": threads,
                "runs": t.len(),
                "build_s": build_s,
                "min_ms": t[0],
                "p50_ms": pct(0.5),
                "p90_ms": pct(0.9),
                "p99_ms": pct(0.99),
                "max_ms": t[t.len() - 1],
                "mean_ms": mean,
        });
        if profile {
            v["profile"] = nodes
                .iter()
                .map(|(n, op, ms)| serde_json::json!({"node": n, "op": op, "median_ms": ms}))
                .collect();
        }
        println!("{}", v);
    } else {
        println!(
            "{}: {} runs after {} warm-up, {}, {} thread(s)\n  min {:.3} ms  p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  max {:.3} ms  mean {:.3} ms\n  load/compile {:.2} s",
            model.display(),
            t.len(),
            warmup,
            target_name,
            threads,
            t[0],
            pct(0.5),
            pct(0.9),
            pct(0.99),
            t[t.len() - 1],
            mean,
            build_s
        );
        if profile {
            print_profile(&nodes);
        }
    }
    Ok(())
}

/// Each node's median kernel time over `runs` profiled runs (ms), slowest first:
/// `(node, operator, ms)`.
fn node_medians(ex: &mut GraphExecutor<'_>, runs: usize) -> Result<Vec<(String, String, f64)>> {
    let mut per_node: Vec<(String, String, Vec<f64>)> = vec![];
    for _ in 0..runs {
        for (i, nt) in ex.run_profiled()?.into_iter().enumerate() {
            if per_node.len() <= i {
                per_node.push((nt.node, nt.op, vec![]));
            }
            per_node[i].2.push(nt.seconds * 1e3);
        }
    }
    let mut out: Vec<(String, String, f64)> = per_node
        .into_iter()
        .map(|(n, op, mut t)| {
            t.sort_by(|a, b| a.total_cmp(b));
            (n, op, t[t.len() / 2])
        })
        .collect();
    out.sort_by(|a, b| b.2.total_cmp(&a.2));
    Ok(out)
}

/// The per-node table of `bench --profile`: median ms, share of the sum, running share.
fn print_profile(nodes: &[(String, String, f64)]) {
    let total: f64 = nodes.iter().map(|n| n.2).sum();
    println!(
        "  per kernel (median of each over the runs; their sum {:.3} ms):",
        total
    );
    println!("  {:>9} {:>6} {:>6}  {:<20} node", "ms", "%", "cum %", "op");
    let mut cum = 0.0;
    for (node, op, ms) in nodes {
        cum += ms;
        println!(
            "  {:>9.3} {:>6.1} {:>6.1}  {:<20} {}",
            ms,
            100.0 * ms / total,
            100.0 * cum / total,
            op,
            node
        );
    }
}

fn main() {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Compile {
            model,
            output,
            target: t,
            threads: n,
            tuning_log,
        } => threads(n).and_then(|n| {
            pool(n);
            let m = compile_onnx(&model, target(&t)?, n, tuning_log.as_deref(), false)?;
            m.save(&output)?;
            eprintln!("wrote {}", output.display());
            Ok(())
        }),
        Cmd::Run {
            model,
            inputs,
            outputs,
            threads: n,
        } => threads(n).and_then(|n| {
            pool(n);
            run(&model, &inputs, &outputs)
        }),
        Cmd::Bench {
            model,
            threads: n,
            target,
            warmup,
            repeat,
            json,
            tuning_log,
            profile,
        } => threads(n).and_then(|n| {
            pool(n);
            let o = BenchOptions {
                target: target.as_deref(),
                threads: n,
                warmup,
                repeat,
                json,
                tuning_log: tuning_log.as_deref(),
                profile,
            };
            bench(&model, &o)
        }),
        Cmd::Tune {
            model,
            log,
            threads: n,
            trials,
            repeat,
            retune,
        } => threads(n).and_then(|n| {
            pool(n);
            let opts = TuneOptions {
                threads: n,
                trials,
                repeats: repeat,
                retune,
                ..TuneOptions::default()
            };
            tune(&model, &log, &opts)
        }),
    };
    if let Err(e) = r {
        eprintln!("error: {}", e);
        std::process::exit(1);
    }
}
