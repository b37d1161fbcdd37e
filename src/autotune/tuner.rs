//! Tune every distinct workload of a graph and log the fastest configurations.

use super::log::{TuningLog, TuningRecord, CPU};
use super::measure::{interleaved_medians, random_inputs, Candidate};
use super::space::candidates;
use super::workload::workload;
use super::TunedConfig;
use crate::error::Result;
use crate::graph_runtime::{bind_params, passes, BuildOptions, Graph, ScheduleKind};
use crate::runtime::NdArray;
use std::collections::HashMap;
use std::path::Path;

/// What a tuning run does.
#[derive(Debug, Clone, Copy)]
pub struct TuneOptions {
    /// The thread count of the builds the log is for (the kernels are timed with it).
    pub threads: usize,
    /// Candidates measured per workload at most (the default counts as one).
    pub trials: usize,
    /// Timed runs per candidate (after one untimed run); the median counts.
    pub repeats: usize,
    /// The graph passes, as the build will run them (they decide the nodes).
    pub options: BuildOptions,
    /// Measure workloads that the log already holds again.
    pub retune: bool,
}

impl Default for TuneOptions {
    fn default() -> Self {
        TuneOptions {
            threads: 1,
            trials: 16,
            repeats: 10,
            options: BuildOptions::default(),
            retune: false,
        }
    }
}

/// The outcome for one workload.
#[derive(Debug, Clone)]
pub struct WorkloadResult {
    /// The workload's key.
    pub key: String,
    /// The operator (`"conv2d"`...).
    pub op: String,
    /// The first node with this workload.
    pub node: String,
    /// Nodes of the passed graph with this workload.
    pub nodes: usize,
    /// The default configuration and its median time (µs; from the log when cached).
    pub default: TunedConfig,
    /// See `default`.
    pub default_us: f64,
    /// The fastest configuration and its median time (µs).
    pub best: TunedConfig,
    /// See `best`.
    pub best_us: f64,
    /// Candidates measured (0: taken from the log).
    pub tried: usize,
    /// Candidates that failed to compile or computed something else than the default
    /// (a compiler bug: each with the reason).
    pub rejected: Vec<(TunedConfig, String)>,
}

/// Progress of [`tune_graph`], for a command line to print.
pub enum TuneEvent<'a> {
    /// Workload `index` of `count` starts (`node` is its first node).
    Start {
        /// 0-based.
        index: usize,
        /// Distinct workloads of the graph.
        count: usize,
        /// Its first node.
        node: &'a str,
        /// Its operator.
        op: &'a str,
    },
    /// A workload is done.
    Done(&'a WorkloadResult),
}

/// Everything a tuning run found, in graph order.
#[derive(Debug, Clone, Default)]
pub struct TuneReport {
    /// One entry per distinct workload.
    pub workloads: Vec<WorkloadResult>,
}

/// Tune `graph` for CPU builds with `opts.threads` threads: run the build's graph passes
/// (with `params`, checked as `build` checks them), then for each distinct tunable
/// workload (see [`super::workload`]) measure up to `opts.trials` candidates
/// ([`candidates`], the default first) on random inputs, time the default and the three
/// fastest again against each other, interleaved, and record the fastest in `log`
/// — and append it to the file `log_path` when given, workload by workload. Workloads
/// the log already holds for this target and thread count are skipped unless
/// `opts.retune`. A candidate whose output differs from the default's (beyond f32
/// reassociation) is rejected and reported, never recorded.
pub fn tune_graph(
    graph: &Graph,
    params: &HashMap<String, NdArray>,
    opts: &TuneOptions,
    log: &mut TuningLog,
    log_path: Option<&Path>,
    progress: &mut dyn FnMut(TuneEvent<'_>),
) -> Result<TuneReport> {
    let bound = bind_params(graph, params)?;
    let (g, _) = passes::run(graph, bound, &opts.options, ScheduleKind::Cpu)?;
    // Distinct workloads in graph order, with how many nodes share each.
    let mut work: Vec<(super::Workload, usize)> = vec![];
    let mut seen: HashMap<String, usize> = HashMap::new();
    for n in g.nodes() {
        if let Some(w) = workload(&g, n, opts.threads)? {
            match seen.get(&w.key) {
                Some(&i) => work[i].1 += 1,
                None => {
                    seen.insert(w.key.clone(), work.len());
                    work.push((w, 1));
                }
            }
        }
    }
    let count = work.len();
    let mut report = TuneReport::default();
    for (index, (w, nodes)) in work.iter().enumerate() {
        let nodes = *nodes;
        progress(TuneEvent::Start {
            index,
            count,
            node: &w.node,
            op: w.op,
        });
        let cached = log.best(&w.key, CPU, opts.threads).filter(|_| !opts.retune);
        let outcome = match cached {
            Some(r) => Outcome {
                default_us: r.default_us,
                best: r.config,
                best_us: r.median_us,
                tried: 0,
                rejected: vec![],
            },
            None => {
                let o = tune_workload(w, opts)?;
                let record = TuningRecord {
                    workload: w.key.clone(),
                    op: w.op.to_string(),
                    target: CPU.into(),
                    threads: opts.threads,
                    config: o.best,
                    median_us: o.best_us,
                    default_us: o.default_us,
                };
                match log_path {
                    Some(p) => log.append(p, record)?,
                    None => log.push(record),
                }
                o
            }
        };
        let result = WorkloadResult {
            key: w.key.clone(),
            op: w.op.to_string(),
            node: w.node.clone(),
            nodes,
            default: w.default,
            default_us: outcome.default_us,
            best: outcome.best,
            best_us: outcome.best_us,
            tried: outcome.tried,
            rejected: outcome.rejected,
        };
        progress(TuneEvent::Done(&result));
        report.workloads.push(result);
    }
    Ok(report)
}

/// Candidates, besides the default, that the second round times against each other.
const FINALISTS: usize = 3;

/// What measuring one workload found (see [`WorkloadResult`]).
struct Outcome {
    default_us: f64,
    best: TunedConfig,
    best_us: f64,
    tried: usize,
    rejected: Vec<(TunedConfig, String)>,
}

/// Measure the candidates of one workload: each alone (`repeats` runs, the median),
/// keeping the fastest few compiled, then the default and those few interleaved
/// (`2 * repeats` rounds) for the times that are recorded.
fn tune_workload(w: &super::Workload, opts: &TuneOptions) -> Result<Outcome> {
    let inputs = random_inputs(w);
    let mut configs = candidates(w)?;
    configs.truncate(opts.trials.max(1));
    // The default is the reference: its failure is an error of the default schedule.
    let mut reference = Candidate::compile(w, &w.default, opts.threads, &inputs)?;
    let want = reference.output.clone();
    let scale = want.to_f64_vec().iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let mut rejected = vec![];
    // The fastest candidates so far (at most FINALISTS: the others are dropped, kernels
    // and outputs with them).
    let mut timed: Vec<(f64, Candidate)> = vec![];
    for cfg in &configs[1..] {
        let c = Candidate::compile(w, cfg, opts.threads, &inputs).and_then(|mut c| {
            if c.output.allclose(&want, 1e-4, 1e-5 * (1.0 + scale)) {
                Ok((c.median_us(&inputs, opts.repeats)?, c))
            } else {
                Err(crate::error::Error::Tuning(format!(
                    "output differs from the default schedule's by up to {:e}",
                    c.output.max_abs_diff(&want)
                )))
            }
        });
        match c {
            Ok(tc) => {
                timed.push(tc);
                timed.sort_by(|a, b| a.0.total_cmp(&b.0));
                timed.truncate(FINALISTS);
            }
            Err(e) => rejected.push((*cfg, e.to_string())),
        }
    }
    reference.median_us(&inputs, 1)?; // warm again after the others ran
    let mut finalists = vec![reference];
    finalists.extend(timed.into_iter().map(|(_, c)| c));
    let times = interleaved_medians(&mut finalists, &inputs, 2 * opts.repeats.max(1))?;
    let best = (0..finalists.len())
        .min_by(|&a, &b| times[a].total_cmp(&times[b]))
        .expect("the default is a finalist");
    Ok(Outcome {
        default_us: times[0],
        best: finalists[best].config,
        best_us: times[best],
        tried: configs.len(),
        rejected,
    })
}
