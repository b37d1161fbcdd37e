//! The dense workloads of the report: a fully connected layer with bias and ReLU,
//! `relu(x · wᵀ + b)`, at a transformer's and an MLP's sizes, built by the graph runtime
//! (the default passes and schedules: the weight transposed at build time and the layer
//! on the `gemm_f32` micro-kernel) against PyTorch's `relu(linear(x, w, b))` where
//! `torch` imports.

use super::{check, measure, Opts, Row};
use loopforge::graph_runtime::{self, Graph};
use loopforge::prelude::*;
use std::collections::HashMap;

/// The layers measured: (rows, input features, output features); `--quick`: the first.
fn shapes(o: &Opts) -> Vec<(usize, usize, usize)> {
    let all = vec![(256, 1024, 1024), (64, 768, 768), (16, 256, 256)];
    if o.quick {
        all[..1].to_vec()
    } else {
        all
    }
}

fn workload(&(m, k, n): &(usize, usize, usize)) -> String {
    format!("dense_relu_f32_{}x{}x{}", m, k, n)
}

fn flops(&(m, k, n): &(usize, usize, usize)) -> f64 {
    2.0 * (m * k * n) as f64
}

/// loopforge's rows: the layer as a one-node graph, built and run as a model is.
pub fn dense_rows(o: &Opts, threads: usize) -> Result<Vec<Row>> {
    let mut rows = vec![];
    for sh in shapes(o).iter().filter(|s| o.wants(&workload(s))) {
        let (m, k, n) = *sh;
        let w_name = workload(sh);
        eprintln!("  {} loopforge_graph threads={}", w_name, threads);
        let mut g = Graph::new();
        let x = g.input("x", &[m, k], DType::F32)?;
        let w = g.param("w", &[n, k])?;
        let b = g.param("b", &[n])?;
        let y = g.dense("fc", x, w, Some(b))?;
        let y = g.relu("act", y)?;
        g.output(y)?;
        let (xa, wa, ba) = (
            NdArray::random(&[m, k], DType::F32, 1),
            NdArray::random(&[n, k], DType::F32, 2),
            NdArray::random(&[n], DType::F32, 3),
        );
        let ps = HashMap::from([("w".to_string(), wa.clone()), ("b".to_string(), ba.clone())]);
        let model = graph_runtime::build(&g, Target::cpu(), &ps, threads)?;
        let mut ex = model.executor();
        ex.set_input("x", xa.clone())?;
        ex.run()?;
        let (xs, ws, bs) = (
            xa.as_slice::<f32>()?,
            wa.as_slice::<f32>()?,
            ba.as_slice::<f32>()?,
        );
        let want: Vec<f32> = (0..m * n)
            .map(|e| {
                let (i, j) = (e / n, e % n);
                let s: f64 = (0..k)
                    .map(|p| xs[i * k + p] as f64 * ws[j * k + p] as f64)
                    .sum();
                (s + bs[j] as f64).max(0.0) as f32
            })
            .collect();
        let got = ex.get_output(0)?.as_slice::<f32>()?.to_vec();
        match check(&w_name, &got, &want, 1e-4) {
            Ok(()) => {
                let s = measure(|| ex.run().expect("run"), o.budget(), o.min_reps());
                rows.push(Row::timed(
                    &w_name,
                    "loopforge_graph",
                    threads,
                    s,
                    Some(flops(sh)),
                ));
            }
            Err(e) => rows.push(Row::missing(&w_name, "loopforge_graph", threads, e)),
        }
    }
    Ok(rows)
}

/// Times `torch.relu(torch.nn.functional.linear(x, w, b))` (after
/// [`super::PY_TORCH`]); argv: shapes as `m,k,n;...`, names, threads, budget seconds,
/// minimum repetitions.
const PY_DENSE: &str = r#"
shapes = [tuple(int(v) for v in s.split(",")) for s in sys.argv[1].split(";")]
with torch.no_grad():
    for (m, k, n), name in zip(shapes, names):
        x = torch.rand(m, k); w = torch.rand(n, k); b = torch.rand(n)
        f = lambda: torch.relu(torch.nn.functional.linear(x, w, b))
        for _ in range(3): f()
        print(json.dumps(dict(workload=name, impl="torch", median_s=measure(f))), flush=True)
"#;

/// PyTorch's rows (or one "not available" row per shape).
pub fn torch_rows(o: &Opts, threads: usize, infos: &mut Vec<String>) -> Vec<Row> {
    let shapes: Vec<_> = shapes(o)
        .into_iter()
        .filter(|s| o.wants(&workload(s)))
        .collect();
    if shapes.is_empty() {
        return vec![];
    }
    let spec: Vec<String> = shapes
        .iter()
        .map(|(m, k, n)| format!("{},{},{}", m, k, n))
        .collect();
    let names: Vec<String> = shapes.iter().map(workload).collect();
    eprintln!("  torch dense threads={}", threads);
    let f = |w: &str| shapes.iter().find(|s| workload(s) == w).map(flops);
    super::torch_script_rows(o, threads, infos, PY_DENSE, &spec.join(";"), &names, f)
}
