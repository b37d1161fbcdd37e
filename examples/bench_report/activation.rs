//! The activation workloads of the report: `sigmoid`, `tanh` and `gelu` (erf form) of a
//! `[1, 64, 112, 112]` f32 feature map (`[1, 16, 56, 56]` with `--quick`), each a
//! one-node graph built by the graph runtime (its elementwise schedule: rows of 4-lane
//! vectors, the function computed inline), against PyTorch's `torch.sigmoid` /
//! `torch.tanh` / `torch.nn.functional.gelu` where `torch` imports.

use super::{check, measure, Opts, Row};
use loopforge::graph_runtime::{self, Graph};
use loopforge::prelude::*;
use std::collections::HashMap;

/// The activations measured, by their PyTorch names.
const OPS: [&str; 3] = ["sigmoid", "tanh", "gelu"];

fn shape(o: &Opts) -> [usize; 4] {
    if o.quick {
        [1, 16, 56, 56]
    } else {
        [1, 64, 112, 112]
    }
}

fn workload(op: &str, s: &[usize; 4]) -> String {
    format!("{}_f32_{}x{}x{}x{}", op, s[0], s[1], s[2], s[3])
}

/// loopforge's rows: each activation as a one-node graph, built and run as a model is,
/// checked against f64 references (relative tolerance 1e-6).
pub fn activation_rows(o: &Opts, threads: usize) -> Result<Vec<Row>> {
    let s = shape(o);
    let mut rows = vec![];
    for op in OPS.iter().filter(|op| o.wants(&workload(op, &s))) {
        let name = workload(op, &s);
        eprintln!("  {} loopforge_graph threads={}", name, threads);
        let mut g = Graph::new();
        let x = g.input("x", &s, DType::F32)?;
        let y = match *op {
            "sigmoid" => g.sigmoid("act", x)?,
            "tanh" => g.tanh("act", x)?,
            "gelu" => g.gelu("act", x)?,
            other => unreachable!("{} is not in OPS", other),
        };
        g.output(y)?;
        let xa = NdArray::random(&s, DType::F32, 1);
        let model = graph_runtime::build(&g, Target::cpu(), &HashMap::new(), threads)?;
        let mut ex = model.executor();
        ex.set_input("x", xa.clone())?;
        ex.run()?;
        let want: Vec<f32> = xa
            .as_slice::<f32>()?
            .iter()
            .map(|&v| {
                let v = v as f64;
                (match *op {
                    "sigmoid" => 1.0 / (1.0 + (-v).exp()),
                    "tanh" => v.tanh(),
                    "gelu" => 0.5 * v * (1.0 + libm::erf(v / std::f64::consts::SQRT_2)),
                    other => unreachable!("{} is not in OPS", other),
                }) as f32
            })
            .collect();
        let got = ex.get_output(0)?.as_slice::<f32>()?.to_vec();
        rows.push(match check(&name, &got, &want, 1e-6) {
            Ok(()) => {
                let t = measure(|| ex.run().expect("run"), o.budget(), o.min_reps());
                Row::timed(&name, "loopforge_graph", threads, t, None)
            }
            Err(e) => Row::missing(&name, "loopforge_graph", threads, e),
        });
    }
    Ok(rows)
}

/// Times `torch.sigmoid(x)` / `torch.tanh(x)` / `torch.nn.functional.gelu(x)` (after [`super::PY_TORCH`]); argv: the
/// shape as `n,c,h,w`, names, threads, budget seconds, minimum repetitions.
const PY_ACTIVATION: &str = r#"
shape = [int(v) for v in sys.argv[1].split(",")]
x = torch.randn(*shape)
with torch.no_grad():
    for name in names:
        op = name.split("_")[0]
        f = getattr(torch, op, None) or getattr(torch.nn.functional, op)
        for _ in range(3): f(x)
        print(json.dumps(dict(workload=name, impl="torch", median_s=measure(lambda: f(x)))), flush=True)
"#;

/// PyTorch's rows (or one "not available" row per activation).
pub fn torch_rows(o: &Opts, threads: usize, infos: &mut Vec<String>) -> Vec<Row> {
    let s = shape(o);
    let names: Vec<String> = OPS
        .iter()
        .map(|op| workload(op, &s))
        .filter(|w| o.wants(w))
        .collect();
    if names.is_empty() {
        return vec![];
    }
    let spec: Vec<String> = s.iter().map(|d| d.to_string()).collect();
    eprintln!("  torch activations threads={}", threads);
    super::torch_script_rows(
        o,
        threads,
        infos,
        PY_ACTIVATION,
        &spec.join(","),
        &names,
        |_| None,
    )
}
