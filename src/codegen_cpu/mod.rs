//! The CPU backend: JIT-compiles a [`LoweredFunc`] to native code with Cranelift.
//!
//! [`compile`] turns a lowered function into a [`CpuModule`] whose entry point has the C ABI
//! `fn(args: *const *mut u8, shapes: *const i64)`: `args[i]` is the base pointer of
//! `func.params[i]`, `shapes[j]` the value of `func.shape_vars[j]`.
//!
//! What it supports:
//! - serial loops (also leftover `Vectorized`/`Unrolled` ones): a guard and a pre-header
//!   where the extent is not a constant (code Cranelift hoists never runs for an empty
//!   loop), then a header that tests at the top (16+ iterations or an unknown count: the
//!   values an iteration leaves are used once, so single-use loads fold into their users)
//!   or a body that branches back to itself (shorter loops);
//!   `Parallel` loops outlined into task functions run on rayon (parallel loops nested in an
//!   outlined body run serially);
//! - `If`, `Seq`, `Let`, `Produce`, `Evaluate`, `NoOp`; stores and loads with one flat index
//!   (scalar, stride-1 ramps as one unaligned vector access, other ramps gathered/scattered
//!   per lane, except four 4-lane f32 loads of one sequence that read the columns of a
//!   4 x 4 block: its four rows loaded and transposed in registers, `transpose_loads.rs`;
//!   broadcast indices as load + splat). Addresses are `base + index << log2(size)`
//!   with the index's sum reassociated by loop depth (invariant parts hoisted, constants in
//!   the immediate offset);
//! - `Allocate`: a buffer whose accesses all have constant indices (unrolled tiles) lives in
//!   registers (one variable per element or per 128-bit chunk, zero-initialised); otherwise
//!   constant sizes up to 64 KiB go on the stack (64-byte aligned, *not* zeroed), anything
//!   else on the heap through `loopforge_alloc`/`loopforge_free` (contents undefined;
//!   freed blocks of 64 KiB and up cached for the next run, `heap.rs`); an unrolled f32 or
//!   f64 tile of such variables is lowered step by step so that its accumulators keep
//!   their registers from one iteration to the next (`tile_steps.rs`);
//! - expressions over f32, f64, f16, bf16, i32, i64 and bool in scalars and 128-bit vectors
//!   (f32x4, f64x2, i32x4, i64x2, and f16x8/bf16x8 held as i16x8 bit patterns; vector bools
//!   are lane masks), with the reference interpreter's
//!   semantics: floor division/modulo on integers (0 for a zero divisor, shifts and masks for
//!   power-of-two constants), fmod for floats, NaN-propagating float min/max, saturating
//!   float->int casts; `a * b + c` on f32/f64 becomes a fused multiply-add when the host
//!   has AVX and FMA; halves are computed in f32 through conversion helpers and rounded
//!   after every operation, lane by lane (`half.rs`), never fused;
//! - math calls: `sqrt`, `abs`, `floor`, `ceil` as instructions; `exp`, `sigmoid`, `tanh`
//!   and `erf` of f32 computed inline, four lanes at a time where the target rounds
//!   natively (SSE4.1 on x86; `vmath.rs`: `exp_f32`'s polynomial, within 1 ulp; `sigmoid`
//!   2, `tanh` 1, `erf` 2, 3 without FMA), scalars through lane 0 of a vector; `log`,
//!   `log1p`, `pow` (and float `%`), the f64 functions and, without native rounding, the
//!   f32 ones through Rust helpers, lane by lane for vectors.
//!
//! What the IR must guarantee: every executed access is in bounds (both sides of a `Select`
//! are evaluated); a parameter the kernel writes does not overlap any other parameter (each
//! buffer is its own alias region, so loads are reused across stores to other buffers);
//! buffers read before being written hold unspecified values unless heap-allocated (or
//! promoted to registers, which start at zero).
//!
//! Loads of a buffer the kernel never writes (no store, no intrinsic output), outside
//! every `if`, are marked `readonly` and `can_move`: Cranelift then treats them as pure
//! values, placed next to their first use rather than in program order (a register tile's
//! loads no longer all precede its FMAs), merged when equal, and hoisted out of the loops
//! their index does not depend on (loops run at least once wherever code is hoisted to).
//! Loads under an `if` keep their place: a guard may be what keeps their index in bounds.
//! The same holds for a heap-allocated buffer in the statements of its allocation that
//! follow its last store (a packed panel read by its consumer: `FnGen::frozen`).
//!
//! In a function whose body contains an intrinsic call (a tensorized micro-kernel), float
//! vector constants inside loops are loads from a 16-byte slot per use site, owned by the
//! [`CpuModule`], instead of register splats: Cranelift would hoist a splat to the entry,
//! spill it across the call (no vector register survives one in the System V x86-64
//! ABI) and store it back on every back edge of the loops that reload it.
//!
//! Errors: GPU-only constructs (thread-bound loops, barriers) and vector shapes other than
//! 128 bits give [`Error::Target`](crate::error::Error::Target); a Cranelift rejection is an
//! internal error carrying the IR.
//!
//! Environment knobs: `LOOPFORGE_DUMP_ASM=1` prints the machine code of every compiled
//! function to stderr; `LOOPFORGE_FMA=0` disables FMA contraction and
//! `LOOPFORGE_TILE_STEPS=0` the step-by-step lowering of register tiles (for A/B timings).

mod address;
mod arith;
mod capture;
mod cast;
mod expr;
mod fngen;
mod half;
mod heap;
mod helpers;
mod jit;
mod lanes;
mod memory;
mod parallel;
mod promote;
mod repr;
mod stmt;
mod tile_steps;
mod transpose_loads;
mod vmath;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_perf;
#[cfg(test)]
mod tests_tile_steps;
#[cfg(test)]
mod tests_transpose;
#[cfg(test)]
mod tests_vec;
#[cfg(test)]
mod tests_vmath;

use crate::error::{internal, Result};
use crate::lower::ir::LoweredFunc;
use cranelift::prelude::*;
use cranelift_jit::JITModule;
use cranelift_module::Linkage;
use std::time::{Duration, Instant};

/// The entry point's type.
type EntryFn = unsafe extern "C" fn(*const *mut u8, *const i64);

/// A compiled kernel: the JIT module that owns the machine code and its entry point.
pub struct CpuModule {
    module: Option<Box<JITModule>>,
    /// The vector constants the code reads by address (dropped after the code is freed).
    #[allow(clippy::vec_box)] // the code holds each slot's address: slots must not move
    _consts: Vec<Box<jit::ConstSlot>>,
    /// Loads made movable because their heap buffer was frozen (for tests).
    #[cfg(test)]
    frozen_loads: usize,
    entry: EntryFn,
    n_params: usize,
    n_shapes: usize,
    compile_time: Duration,
}

// Safety: after `finalize_definitions` the code and data are immutable; calling the entry
// point touches only the caller's buffers and the thread-safe rayon pool.
unsafe impl Send for CpuModule {}
unsafe impl Sync for CpuModule {}

impl CpuModule {
    /// Run the kernel.
    ///
    /// # Safety
    /// `args[i]` must point to a buffer of `params[i]`'s dtype large enough for its shape
    /// under `shape_vals`, and `shape_vals` must hold the values of `func.shape_vars` in order.
    /// Buffers written by the kernel must not be accessed concurrently.
    pub unsafe fn call(&self, args: &[*mut u8], shape_vals: &[i64]) {
        assert_eq!(
            args.len(),
            self.n_params,
            "wrong number of kernel arguments"
        );
        assert_eq!(
            shape_vals.len(),
            self.n_shapes,
            "wrong number of shape values"
        );
        (self.entry)(args.as_ptr(), shape_vals.as_ptr())
    }

    /// The vector constants the code reads from memory (one per use site).
    #[cfg(test)]
    pub(crate) fn const_slots(&self) -> usize {
        self._consts.len()
    }

    /// The loads made movable because every store to their heap buffer was behind them.
    #[cfg(test)]
    pub(crate) fn frozen_loads(&self) -> usize {
        self.frozen_loads
    }

    /// Time spent generating and JIT-compiling the machine code.
    pub fn compile_time(&self) -> Duration {
        self.compile_time
    }
}

impl Drop for CpuModule {
    fn drop(&mut self) {
        if let Some(m) = self.module.take() {
            // Safety: the entry point cannot be called any more (we are being dropped).
            unsafe { m.free_memory() };
        }
    }
}

impl std::fmt::Debug for CpuModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuModule")
            .field("n_params", &self.n_params)
            .field("n_shapes", &self.n_shapes)
            .field("compile_time", &self.compile_time)
            .finish()
    }
}

/// JIT-compile a lowered function for the host CPU.
pub fn compile(func: &LoweredFunc) -> Result<CpuModule> {
    let t0 = Instant::now();
    let isa = jit::host_isa()?;
    let mut cx = jit::ModuleCtx::new(jit::new_module(isa), func);
    let built = fngen::build_function(
        &mut cx,
        func,
        "lf_entry",
        &[types::I64, types::I64],
        Linkage::Export,
        false,
        |g, p| {
            let flags = MemFlagsData::trusted();
            for (i, buf) in func.params.iter().enumerate() {
                let ptr = g.b.ins().load(types::I64, flags, p[0], 8 * i as i32);
                g.bind_buf(buf.name(), ptr);
            }
            for (i, v) in func.shape_vars.iter().enumerate() {
                let x = g.b.ins().load(types::I64, flags, p[1], 8 * i as i32);
                let x = g.cast(repr::Val::scalar(x, crate::te::DType::I64), v.dtype())?;
                g.bind_var(v, fngen::Binding::Value(x));
            }
            g.gen_body(&func.body)
        },
    );
    let id = match built {
        Ok(id) => id,
        Err(e) => {
            // Safety: nothing was finalized, so no code from this module can be running.
            unsafe { cx.module.free_memory() };
            return Err(e);
        }
    };
    if let Err(e) = cx.module.finalize_definitions() {
        unsafe { cx.module.free_memory() };
        return Err(internal(format!("cannot finalize JIT code: {}", e), func));
    }
    let code = cx.module.get_finalized_function(id);
    // Safety: `lf_entry` was defined with exactly this signature.
    let entry: EntryFn = unsafe { std::mem::transmute::<*const u8, EntryFn>(code) };
    Ok(CpuModule {
        module: Some(Box::new(cx.module)),
        _consts: cx.consts,
        #[cfg(test)]
        frozen_loads: cx.frozen_loads,
        entry,
        n_params: func.params.len(),
        n_shapes: func.shape_vars.len(),
        compile_time: t0.elapsed(),
    })
}
