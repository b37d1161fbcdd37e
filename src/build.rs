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
    /// An NVIDIA GPU: CUDA C compiled to PTX with NVRTC (which must be loadable when
    /// building), run through the CUDA driver. `arch` is the PTX architecture
    /// (`"sm_90"`, `"compute_80"`...); `None` asks GPU 0, or uses `compute_80` without one.
    Cuda {
        /// The architecture to compile for.
        arch: Option<String>,
    },
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
    /// A CUDA GPU, the architecture of GPU 0 (or `compute_80` where there is none).
    pub fn cuda() -> Target {
        Target::Cuda { arch: None }
    }
    /// A CUDA GPU of the given architecture (`"sm_80"`, `"sm_90"`, `"compute_90"`...):
    /// for compiling offline.
    pub fn cuda_arch(arch: &str) -> Target {
        Target::Cuda {
            arch: Some(arch.to_string()),
        }
    }
}

enum Backend {
    Cpu(crate::codegen_cpu::CpuModule),
    Interp,
    Cuda(Box<crate::codegen_cuda::CudaModule>),
}

/// A compiled kernel: call it on host arrays. A CUDA kernel copies the arrays to GPU 0,
/// launches, and copies the arrays it writes back (a target error where there is no GPU).
pub struct Kernel {
    func: LoweredFunc,
    is_input: Vec<bool>,
    /// Whether the function has a parallel loop (run on the rayon pool).
    parallel: bool,
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
        Target::Cuda { arch } => Backend::Cuda(Box::new(crate::codegen_cuda::compile(
            &func,
            arch.as_deref(),
        )?)),
    };
    let mut parallel = false;
    func.body.visit(&mut |s| {
        parallel |= matches!(s, crate::lower::ir::Stmt::For(f) if f.kind == crate::lower::ir::ForKind::Parallel);
    });
    Ok(Kernel {
        func,
        is_input,
        parallel,
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
    /// Whether the kernel has a parallel loop: on the CPU it then runs on the rayon
    /// pool's threads.
    pub fn is_parallel(&self) -> bool {
        self.parallel
    }
    /// Time spent in `lower`.
    pub fn lower_time(&self) -> Duration {
        self.lower_time
    }
    /// Time spent compiling the lowered function.
    pub fn compile_time(&self) -> Duration {
        self.compile_time
    }
    /// The generated CUDA C (CUDA kernels only).
    pub fn cuda_source(&self) -> Option<&str> {
        match &self.backend {
            Backend::Cuda(m) => Some(&m.source().code),
            _ => None,
        }
    }
    /// The PTX NVRTC produced (CUDA kernels only).
    pub fn ptx(&self) -> Option<&str> {
        match &self.backend {
            Backend::Cuda(m) => Some(m.ptx()),
            _ => None,
        }
    }

    /// The compiled CUDA module (CUDA kernels only): its stream and
    /// [`launch_raw`](crate::codegen_cuda::CudaModule::launch_raw) run the kernel on
    /// arrays kept on the GPU.
    pub fn cuda_module(&self) -> Option<&crate::codegen_cuda::CudaModule> {
        match &self.backend {
            Backend::Cuda(m) => Some(m),
            _ => None,
        }
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
            Backend::Cuda(m) => {
                let written = self.written_params();
                let mut host: Vec<crate::codegen_cuda::HostArg> = args
                    .iter_mut()
                    .zip(&written)
                    .map(|(a, &w)| {
                        let bytes = NdArray::as_bytes_mut(a);
                        if w {
                            crate::codegen_cuda::HostArg::InOut(bytes)
                        } else {
                            crate::codegen_cuda::HostArg::In(bytes)
                        }
                    })
                    .collect();
                m.launch(&mut host, &shape_vals)
            }
        }
    }

    /// Which parameters are inputs (placeholders), in parameter order.
    pub(crate) fn input_params(&self) -> &[bool] {
        &self.is_input
    }

    /// Launch the CUDA kernel on arrays already on the GPU, without waiting: `args` in
    /// parameter order, each a device address with the shape and dtype of the array
    /// there (checked against the parameters as [`call`](Self::call) checks arrays).
    ///
    /// # Safety
    /// Each address must be a live allocation on the kernel's device of at least the
    /// bytes of its shape and dtype, alive until the kernel is done.
    pub(crate) unsafe fn launch_on_device(
        &self,
        args: &[(u64, &[usize], crate::te::DType)],
    ) -> Result<()> {
        let Backend::Cuda(m) = &self.backend else {
            return Err(Error::Target(format!(
                "kernel {} was not compiled for CUDA",
                self.func.name
            )));
        };
        let meta: Vec<(&[usize], crate::te::DType)> = args.iter().map(|a| (a.1, a.2)).collect();
        let shape_vals = bind_args(&self.func, &meta)?;
        let ptrs: Vec<u64> = args.iter().map(|a| a.0).collect();
        // Safety: the caller's guarantee, and bind_args checked the shapes.
        unsafe { m.launch_raw(&ptrs, &shape_vals) }
    }

    /// Which parameters the CUDA kernel writes (copied back after a launch).
    fn written_params(&self) -> Vec<bool> {
        let written = self.func.body.written_buffers();
        self.func
            .params
            .iter()
            .map(|p| written.contains(p.name()))
            .collect()
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
                let call = |ptrs: &[*mut u8]| unsafe { m.call(ptrs, &shape_vals) };
                if self.parallel {
                    // On a worker of the pool (where the calling thread is not one): each
                    // parallel loop then starts from a worker that takes part in it,
                    // instead of being handed over from outside with the caller blocked
                    // until a worker wakes it (a handover per loop, not per run).
                    let addrs: Vec<usize> = ptrs.iter().map(|p| *p as usize).collect();
                    rayon::scope(|_| {
                        let ptrs: Vec<*mut u8> = addrs.iter().map(|&a| a as *mut u8).collect();
                        call(&ptrs)
                    });
                } else {
                    call(&ptrs);
                }
                Ok(())
            }
            Backend::Cuda(m) => {
                let mut ins = inputs.iter();
                let mut outs = outputs.iter_mut();
                let mut host: Vec<crate::codegen_cuda::HostArg> = self
                    .is_input
                    .iter()
                    .map(|&inp| {
                        if inp {
                            crate::codegen_cuda::HostArg::In(NdArray::as_bytes(ins.next().unwrap()))
                        } else {
                            crate::codegen_cuda::HostArg::InOut(NdArray::as_bytes_mut(
                                outs.next().unwrap(),
                            ))
                        }
                    })
                    .collect();
                m.launch(&mut host, &shape_vals)
            }
        }
    }
}
