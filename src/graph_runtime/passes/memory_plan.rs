//! Liveness-based memory planning.
//!
//! Requires: a well-formed graph (nodes in topological order, each run once, in order).
//! Ensures: every node output has a storage buffer. A value is live from the node that
//! computes it to the last node that reads it. Walking the nodes in order, the buffers of
//! values whose last reader has run are freed first, then the node's output takes the
//! smallest free buffer of its dtype that holds it (best fit), else grows the largest free
//! buffer of its dtype, else a new buffer. A node's output therefore never shares a buffer
//! with its inputs, nor with any value still to be read. Graph outputs get buffers of
//! their own (never reused: they are read after the run); graph inputs and parameters are
//! not planned (they are the caller's and the model's arrays). With planning off, every
//! node output has its own buffer.

use crate::graph_runtime::graph::{Graph, ValueKind};
use crate::te::DType;

/// Where each node output lives, and what it saves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryPlan {
    /// The storage buffer of each value (by value id; `None` for inputs and parameters).
    pub storage_of: Vec<Option<usize>>,
    /// Each buffer's size in bytes and dtype.
    pub buffers: Vec<(usize, DType)>,
    /// Bytes of the intermediate values (node outputs that are not graph outputs), one
    /// buffer each: what an unplanned executor allocates for them.
    pub unplanned_bytes: usize,
    /// Bytes of the buffers that hold the intermediate values under this plan.
    pub planned_bytes: usize,
}

impl MemoryPlan {
    /// Number of buffers (intermediate and output).
    pub fn num_buffers(&self) -> usize {
        self.buffers.len()
    }
}

fn bytes_of(g: &Graph, i: usize) -> usize {
    let v = &g.values()[i];
    v.shape.iter().product::<usize>() * v.dtype.bytes()
}

/// Plan the buffers of `g`'s node outputs (see the module doc); `reuse = false` gives
/// every value its own buffer.
pub fn plan(g: &Graph, reuse: bool) -> MemoryPlan {
    let nv = g.values().len();
    // The last node reading each value; a value nothing reads dies where it is made.
    let mut last_use: Vec<Option<usize>> = vec![None; nv];
    for (i, n) in g.nodes().iter().enumerate() {
        for &v in &n.inputs {
            last_use[v.0] = Some(last_use[v.0].map_or(i, |l: usize| l.max(i)));
        }
    }
    let is_output = |v: usize| g.outputs().iter().any(|o| o.0 == v);
    let mut storage_of = vec![None; nv];
    let mut buffers: Vec<(usize, DType)> = vec![];
    let mut intermediate: Vec<bool> = vec![];
    let mut free: Vec<usize> = vec![];
    // Values holding a buffer, with their last use.
    let mut live: Vec<(usize, usize)> = vec![];
    let mut unplanned = 0;
    for (i, n) in g.nodes().iter().enumerate() {
        live.retain(|&(v, last)| {
            if last < i {
                free.push(storage_of[v].expect("live values have storage"));
                false
            } else {
                true
            }
        });
        let v = n.output.0;
        let (size, dt) = (bytes_of(g, v), g.values()[v].dtype);
        if is_output(v) || !reuse {
            buffers.push((size, dt));
            intermediate.push(!is_output(v));
            storage_of[v] = Some(buffers.len() - 1);
            if !is_output(v) {
                unplanned += size;
            }
            continue;
        }
        unplanned += size;
        let same: Vec<usize> = free
            .iter()
            .copied()
            .filter(|&b| buffers[b].1 == dt)
            .collect();
        let fit = same
            .iter()
            .copied()
            .filter(|&b| buffers[b].0 >= size)
            .min_by_key(|&b| (buffers[b].0, b));
        let pick = fit.or_else(|| {
            same.iter()
                .copied()
                .max_by_key(|&b| (buffers[b].0, usize::MAX - b))
        });
        let b = match pick {
            Some(b) => {
                free.retain(|&x| x != b);
                buffers[b].0 = buffers[b].0.max(size);
                b
            }
            None => {
                buffers.push((size, dt));
                intermediate.push(true);
                buffers.len() - 1
            }
        };
        storage_of[v] = Some(b);
        live.push((v, last_use[v].unwrap_or(i)));
    }
    let planned = buffers
        .iter()
        .zip(&intermediate)
        .filter(|(_, &im)| im)
        .map(|(b, _)| b.0)
        .sum();
    debug_assert!(g
        .values()
        .iter()
        .enumerate()
        .all(|(i, v)| matches!(v.kind, ValueKind::Node(_)) == storage_of[i].is_some()));
    MemoryPlan {
        storage_of,
        buffers,
        unplanned_bytes: unplanned,
        planned_bytes: planned,
    }
}
