//! The reference interpreter: executes a [`LoweredFunc`] on host arrays. It is the oracle
//! of the tests, so it is simple and strict rather than fast.
//!
//! It accepts the IR of any stage of the pipeline:
//! * loads and stores with one flat index, or with one index per dimension (flattened
//!   row-major with the buffer's shape; each index is checked against its dimension);
//! * every statement: loops of every kind run serially in order, except loops bound to
//!   GPU axes (below); `Allocate` gives a buffer whose size is its shape evaluated when
//!   the allocation is reached, filled with NaNs (integers with a large sentinel): its
//!   contents are undefined in compiled code, so a kernel that reads an element before
//!   writing it must not pass here by chance; `Produce` is transparent; `Barrier`
//!   outside a GPU kernel does nothing;
//! * every loop-IR expression, on scalars and on vectors of any width (a scalar operand
//!   of a vector operation is broadcast; a load or store with a vector index gathers or
//!   scatters lane by lane).
//!
//! The arithmetic (in the expression's type, floor division, casts, math functions) is
//! defined in `value.rs`; the Cranelift backend implements the same semantics.
//!
//! GPU-bound IR: the outermost loop bound to `blockIdx.*`/`threadIdx.*` starts a kernel,
//! launched with, per axis, the largest extent bound to it (computed when the kernel
//! starts). Its blocks run one after another; the threads of a block are simulated
//! (`gpu.rs`): each thread runs the whole kernel body (code outside the `threadIdx` loops
//! included, as on a GPU), a thread-bound loop binding its variable to the thread's index
//! (skipped where the index is not below the loop's extent); thread 0 runs until a
//! barrier, then thread 1, ..., so a missing barrier or a wrong thread index gives a wrong
//! result. A barrier not reached by all threads of the block is an error. `shared`
//! allocations in a kernel are one buffer per block (filled with NaNs when the block first
//! reaches them, not cleared if reached again), `local` ones one per thread; a `global`
//! allocation inside a kernel is an error; `vthread` loops run serially.
//!
//! Errors: wrong arguments are [`crate::error::Error::Argument`] (from
//! [`crate::runtime::bind_args`]); an out-of-bounds access, the use of an unbound
//! variable, or malformed IR is [`crate::error::Error::Internal`], whose message names
//! the buffer and the index and which carries the function's IR. The interpreter never
//! panics on bad IR. On error the arrays are left unchanged.
//!
//! Implementation: `compile.rs` resolves variables to slots and buffers to indices and
//! produces a flat instruction list (`program.rs`) executed by `exec.rs`; expressions are
//! evaluated by a tree walker (`eval.rs`) over the values of `value.rs`; buffers are in
//! `memory.rs`.

mod compile;
mod eval;
mod exec;
mod gpu;
mod memory;
mod program;
mod value;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_gpu;

use crate::error::{internal, Result};
use crate::lower::ir::LoweredFunc;
use crate::runtime::{bind_args, NdArray};
use exec::{Machine, Stop};
use memory::Buf;
use value::{norm_int, Scalar, Value};

/// Execute a lowered function on host arrays, in parameter order (inputs and outputs
/// alike). The arrays must match the parameters' dtypes and shapes (symbolic dimensions
/// are bound from them); outputs are written in place.
pub fn run(func: &LoweredFunc, args: &mut [&mut NdArray]) -> Result<()> {
    let shape_vals = {
        let sig: Vec<(&[usize], crate::te::DType)> =
            args.iter().map(|a| (a.shape(), a.dtype())).collect();
        bind_args(func, &sig)?
    };
    let prog = compile::compile(func).map_err(|m| internal(m, func))?;
    let mut m = Machine::new(&prog);
    for (k, a) in args.iter().enumerate() {
        m.bufs[k] = Some(Buf::from_array(a).map_err(|e| internal(e, func))?);
    }
    for (&(slot, dt), v) in prog.shape_var_slots.iter().zip(shape_vals) {
        m.env[slot] = Value::S(Scalar::I(norm_int(dt, v)));
    }
    match m.exec(0).map_err(|e| internal(e, func))? {
        Stop::End => {}
        Stop::Barrier(_) => return Err(internal("barrier outside a GPU kernel", func)),
    }
    for (k, a) in args.iter_mut().enumerate() {
        match &m.bufs[k] {
            Some(b) => b.write_back(a).map_err(|e| internal(e, func))?,
            None => {
                return Err(internal(
                    format!("parameter {} lost", func.params[k].name()),
                    func,
                ))
            }
        }
    }
    Ok(())
}
