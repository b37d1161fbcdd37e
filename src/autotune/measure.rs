//! Compile candidate configurations of a workload and time them.

use super::workload::Workload;
use super::TunedConfig;
use crate::error::Result;
use crate::graph_runtime::schedule::{const_shape, tuned_schedule};
use crate::runtime::NdArray;
use crate::{Kernel, Target};
use std::time::Instant;

/// Pseudo-random inputs of `w` in [-1, 1) (fixed seeds: every candidate reads the same).
pub fn random_inputs(w: &Workload) -> Vec<NdArray> {
    w.inputs
        .iter()
        .enumerate()
        .map(|(i, t)| NdArray::random(&const_shape(t), t.dtype(), 17 + i as u64))
        .collect()
}

/// One candidate compiled, with a buffer for its output.
pub struct Candidate {
    /// Its configuration.
    pub config: TunedConfig,
    kernel: Kernel,
    /// What its last run computed.
    pub output: NdArray,
}

impl Candidate {
    /// Schedule `w` with `cfg` for a build of `threads` threads and compile it for the
    /// CPU; then run it once (untimed: its output is then valid). Schedule and compile
    /// errors are returned as they are.
    pub fn compile(
        w: &Workload,
        cfg: &TunedConfig,
        threads: usize,
        inputs: &[NdArray],
    ) -> Result<Candidate> {
        let s = tuned_schedule(&w.operator, &w.out, threads, cfg)?;
        let mut args = w.inputs.clone();
        args.push(w.out.clone());
        let mut c = Candidate {
            config: *cfg,
            kernel: crate::build(&s, &args, Target::Cpu)?,
            output: NdArray::zeros(&const_shape(&w.out), w.out.dtype()),
        };
        c.run(inputs)?;
        Ok(c)
    }

    /// Run once; the wall time in microseconds.
    pub fn run(&mut self, inputs: &[NdArray]) -> Result<f64> {
        let ins: Vec<&NdArray> = inputs.iter().collect();
        let t = Instant::now();
        self.kernel.run(&ins, &mut [&mut self.output])?;
        Ok(t.elapsed().as_secs_f64() * 1e6)
    }

    /// The median of `repeats` runs (at least one), in microseconds.
    pub fn median_us(&mut self, inputs: &[NdArray], repeats: usize) -> Result<f64> {
        let mut t = (0..repeats.max(1))
            .map(|_| self.run(inputs))
            .collect::<Result<Vec<f64>>>()?;
        Ok(median(&mut t))
    }
}

/// The median of `t` (reordered).
pub fn median(t: &mut [f64]) -> f64 {
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

/// Time `cands` against each other: `rounds` rounds, each running every candidate once
/// in turn (so that the machine's slow and fast moments fall on all of them alike); the
/// median time of each, in microseconds.
pub fn interleaved_medians(
    cands: &mut [Candidate],
    inputs: &[NdArray],
    rounds: usize,
) -> Result<Vec<f64>> {
    let mut times = vec![Vec::with_capacity(rounds); cands.len()];
    for _ in 0..rounds.max(1) {
        for (c, t) in cands.iter_mut().zip(&mut times) {
            t.push(c.run(inputs)?);
        }
    }
    Ok(times.iter_mut().map(|t| median(t)).collect())
}
