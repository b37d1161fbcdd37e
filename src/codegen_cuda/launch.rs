//! The launch configuration of a kernel: grid and block sizes as expressions of the
//! function's shape variables, evaluated when the kernel is called.
//!
//! As in the interpreter's GPU simulation (`interp/gpu.rs`), the launch size of an axis is
//! the largest extent of the loops bound to it (1 when none is); threads past a loop's
//! extent skip that loop.

use crate::error::{Error, Result};
use crate::lower::ir::ForKind;
use crate::lower::simplify::simplify;
use crate::te::{Expr, Var};
use std::collections::HashMap;

/// Most threads in one block on every CUDA GPU since compute capability 2.0.
pub const MAX_THREADS_PER_BLOCK: i64 = 1024;
/// Largest block size per axis (x, y, z).
pub const MAX_BLOCK_DIM: [i64; 3] = [1024, 1024, 64];
/// Largest grid size per axis (x, y, z).
pub const MAX_GRID_DIM: [i64; 3] = [(1 << 31) - 1, 65535, 65535];

/// A GPU launch axis a loop can be bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GpuAxis {
    /// `blockIdx.{x,y,z}` (0, 1, 2).
    Block(usize),
    /// `threadIdx.{x,y,z}` (0, 1, 2).
    Thread(usize),
}

impl GpuAxis {
    /// The CUDA built-in holding the index (`blockIdx.x`...).
    pub fn builtin(self) -> String {
        let (base, d) = match self {
            GpuAxis::Block(d) => ("blockIdx", d),
            GpuAxis::Thread(d) => ("threadIdx", d),
        };
        format!("{}.{}", base, ["x", "y", "z"][d])
    }
}

/// How the CUDA backend runs a loop of the given kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LoopRole {
    /// Bound to a block or thread index.
    Gpu(GpuAxis),
    /// A sequential loop (`serial`, leftover `vectorized`/`unrolled`, `vthread`).
    Serial,
    /// A thread-pool loop: a CPU construct.
    Parallel,
    /// A thread tag this backend does not know.
    Unknown,
}

/// Classify a loop kind (thread tags as the interpreter reads them).
pub(crate) fn loop_role(k: &ForKind) -> LoopRole {
    let tag = match k {
        ForKind::ThreadBinding(t) => t.as_str(),
        ForKind::Parallel => return LoopRole::Parallel,
        _ => return LoopRole::Serial,
    };
    if tag.starts_with("vthread") || tag.starts_with("cthread") {
        return LoopRole::Serial;
    }
    let dim = match tag {
        "blockIdx.x" | "threadIdx.x" => 0,
        "blockIdx.y" | "threadIdx.y" => 1,
        "blockIdx.z" | "threadIdx.z" => 2,
        _ => return LoopRole::Unknown,
    };
    if tag.starts_with("blockIdx") {
        LoopRole::Gpu(GpuAxis::Block(dim))
    } else {
        LoopRole::Gpu(GpuAxis::Thread(dim))
    }
}

/// Grid and block sizes of a kernel, as expressions of the shape variables.
#[derive(Debug, Clone)]
pub struct LaunchConfig {
    /// Blocks along x, y, z.
    pub grid: [Expr; 3],
    /// Threads per block along x, y, z.
    pub block: [Expr; 3],
    /// The variables the sizes may mention (the function's shape variables, in order).
    pub shape_vars: Vec<Var>,
}

/// Evaluated launch sizes: `(grid, block)`.
pub type LaunchDims = ([u32; 3], [u32; 3]);

impl LaunchConfig {
    /// The sizes for the given values of the shape variables (in `shape_vars` order).
    /// A size of 0 means there is nothing to run. Sizes over CUDA's limits are
    /// [`Error::Target`].
    pub fn dims(&self, shape_vals: &[i64]) -> Result<LaunchDims> {
        if shape_vals.len() != self.shape_vars.len() {
            return Err(Error::Argument(format!(
                "the launch configuration needs {} shape values, got {}",
                self.shape_vars.len(),
                shape_vals.len()
            )));
        }
        let map: HashMap<u64, Expr> = self
            .shape_vars
            .iter()
            .zip(shape_vals)
            .map(|(v, &x)| (v.id(), Expr::int_of(x, v.dtype())))
            .collect();
        let eval = |e: &Expr, what: &str| -> Result<i64> {
            simplify(&e.substitute(&map)).as_int().ok_or_else(|| {
                Error::Target(format!(
                    "cannot evaluate the {} size {} for shape values {:?}",
                    what, e, shape_vals
                ))
            })
        };
        let mut grid = [0i64; 3];
        let mut block = [0i64; 3];
        for d in 0..3 {
            grid[d] = eval(&self.grid[d], "grid")?.max(0);
            block[d] = eval(&self.block[d], "block")?.max(0);
        }
        check_limits(&grid, &block)?;
        let u = |a: [i64; 3]| a.map(|x| x as u32);
        Ok((u(grid), u(block)))
    }

    /// Threads per block, if it is a constant.
    pub fn const_threads_per_block(&self) -> Option<i64> {
        self.block
            .iter()
            .map(|e| e.as_int().map(|x| x.max(0)))
            .try_fold(1i64, |acc, x| x.map(|x| acc.saturating_mul(x)))
    }
}

/// Check sizes against CUDA's limits ([`MAX_GRID_DIM`], [`MAX_BLOCK_DIM`],
/// [`MAX_THREADS_PER_BLOCK`]).
pub(crate) fn check_limits(grid: &[i64; 3], block: &[i64; 3]) -> Result<()> {
    let xyz = ["x", "y", "z"];
    for d in 0..3 {
        if block[d] > MAX_BLOCK_DIM[d] {
            return Err(Error::Target(format!(
                "{} threads along threadIdx.{} in one block: CUDA allows at most {}",
                block[d], xyz[d], MAX_BLOCK_DIM[d]
            )));
        }
        if grid[d] > MAX_GRID_DIM[d] {
            return Err(Error::Target(format!(
                "{} blocks along blockIdx.{}: CUDA allows at most {}",
                grid[d], xyz[d], MAX_GRID_DIM[d]
            )));
        }
    }
    let threads = block.iter().fold(1i64, |a, &b| a.saturating_mul(b));
    if threads > MAX_THREADS_PER_BLOCK {
        return Err(Error::Target(format!(
            "{} threads per block ({} x {} x {}): CUDA allows at most {}; split the axes bound to threadIdx further and bind the outer parts to blockIdx",
            threads, block[0], block[1], block[2], MAX_THREADS_PER_BLOCK
        )));
    }
    Ok(())
}
