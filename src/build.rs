//! `build`: lower a schedule and compile it for a target; [`Kernel`] calls it on arrays.

use crate::error::{Error, Result};
use crate::lower::ir::LoweredFunc;
use crate::runtime::{bind_args, NdArray};
use crate::schedule::Schedule;
use crate::te::Tensor;
use std::time::{Duration, Instant};

/// Where a kernel runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// JIT-compiled for this CPU with Cranelift.
    Cpu,
    /// The reference interpreter (slow; the oracle of the tests).
    Interp,
}

impl Target {
    /// The host CPU (Cranelift JIT).
    pub fn cpu() -> Target {
        Target::Cpu
    }
    /// The reference interpreter.
    pub fn interp() -> Target {
        Target::Interp
    }
}

enum Backend {
    Cpu(crate::codegen_cpu::CpuModule),
    Interp,
}

/// A compiled kernel: call it on host arrays.
pub struct Kernel {
    func: LoweredFunc,
    is_input: Vec<bool>,
    backend: Backend,
    lower_time: Duration,
    compile_time: Duration,
}

/// Lower `schedule` with the given arguments and compile it for `target`.
pub fn build(schedule: &Schedule, args: &[Tensor], target: Target) -> Result<Kernel> {
    let t0 = Instant::now();
    let func = crate::lower::lower(schedule, args)?;
    let lower_time = t0.elapsed();
    let is_input = args.iter().map(|a| a.op.is_placeholder()).collect();
    build_func(func, is_input, target, lower_time)
}

/// Compile an already lowered function. `is_input[i]` says whether parameter `i` is read
/// only (used by [`Kernel::run`] to split inputs from outputs).
pub fn build_func(
    func: LoweredFunc,
    is_input: Vec<bool>,
    target: Target,
    lower_time: Duration,
) -> Result<Kernel> {
    let t1 = Instant::now();
    let backend = match target {
        Target::Cpu => Backend::Cpu(crate::codegen_cpu::compile(&func)?),
        Target::Interp => Backend::Interp,
    };
    Ok(Kernel {
        func,
        is_input,
        backend,
        lower_time,
        compile_time: t1.elapsed(),
    })
}

impl Kernel {
    /// The lowered function this kernel runs.
    pub fn lowered(&self) -> &LoweredFunc {
        &self.func
    }
    /// Time spent in `lower`.
    pub fn lower_time(&self) -> Duration {
        self.lower_time
    }
    /// Time spent compiling the lowered function.
    pub fn compile_time(&self) -> Duration {
        self.compile_time
    }

    /// Call with every argument in parameter order (as given to `build`).
    pub fn call(&self, args: &mut [&mut NdArray]) -> Result<()> {
        let meta: Vec<(&[usize], crate::te::DType)> =
            args.iter().map(|a| (a.shape(), a.dtype())).collect();
        let shape_vals = bind_args(&self.func, &meta)?;
        match &self.backend {
            Backend::Interp => crate::interp::run(&self.func, args),
            Backend::Cpu(m) => {
                let ptrs: Vec<*mut u8> = args.iter_mut().map(|a| a.as_mut_ptr()).collect();
                // Safety: bind_args checked every array's dtype and shape against the
                // parameters, so every access the kernel makes is in bounds.
                unsafe { m.call(&ptrs, &shape_vals) };
                Ok(())
            }
        }
    }

    /// Call with the inputs (placeholders, in argument order) and the outputs (computed
    /// tensors, in argument order) apart.
    pub fn run(&self, inputs: &[&NdArray], outputs: &mut [&mut NdArray]) -> Result<()> {
        let n_in = self.is_input.iter().filter(|x| **x).count();
        let n_out = self.is_input.len() - n_in;
        if inputs.len() != n_in || outputs.len() != n_out {
            return Err(Error::Argument(format!(
                "kernel {} takes {} inputs and {} outputs ({}) but {} inputs and {} outputs were given",
                self.func.name,
                n_in,
                n_out,
                self.func.params.iter().map(|p| p.name()).collect::<Vec<_>>().join(", "),
                inputs.len(),
                outputs.len()
            )));
        }
        let meta: Vec<(&[usize], crate::te::DType)> = {
            let (mut i, mut o) = (0, 0);
            self.is_input
                .iter()
                .map(|&inp| {
                    if inp {
                        i += 1;
                        (inputs[i - 1].shape(), inputs[i - 1].dtype())
                    } else {
                        o += 1;
                        (outputs[o - 1].shape(), outputs[o - 1].dtype())
                    }
                })
                .collect()
        };
        let shape_vals = bind_args(&self.func, &meta)?;
        match &self.backend {
            Backend::Interp => {
                // The interpreter wants every argument mutable: copy inputs (it is slow anyway).
                let mut ins: Vec<NdArray> = inputs.iter().map(|a| (*a).clone()).collect();
                let mut ins_it = ins.iter_mut();
                let mut outs_it = outputs.iter_mut();
                let mut all: Vec<&mut NdArray> = self
                    .is_input
                    .iter()
                    .map(|&inp| {
                        if inp {
                            ins_it.next().unwrap()
                        } else {
                            &mut **outs_it.next().unwrap()
                        }
                    })
                    .collect();
                crate::interp::run(&self.func, &mut all)
            }
            Backend::Cpu(m) => {
                let (mut i, mut o) = (0, 0);
                let ptrs: Vec<*mut u8> = self
                    .is_input
                    .iter()
                    .map(|&inp| {
                        if inp {
                            i += 1;
                            inputs[i - 1].as_ptr() as *mut u8
                        } else {
                            o += 1;
                            outputs[o - 1].as_mut_ptr()
                        }
                    })
                    .collect();
                // Safety: shapes and dtypes checked by bind_args; inputs are only read.
                unsafe { m.call(&ptrs, &shape_vals) };
                Ok(())
            }
        }
    }
}
