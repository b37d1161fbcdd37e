//! Running a compiled kernel on a GPU through cudarc's driver API.
//!
//! Two ways in:
//! - [`CudaModule::launch`]: host arrays in, host arrays out (copy every array to the
//!   device, launch with the grid and block of the [`LaunchConfig`](super::LaunchConfig),
//!   copy written arrays back, synchronize). This is what `Kernel::run` uses.
//! - [`CudaModule::launch_raw`]: device pointers the caller allocated on
//!   [`CudaModule::stream`], launched asynchronously, nothing copied: what benchmarks
//!   and a graph runtime keeping tensors on the GPU use.
//!
//! The machines this crate is built and tested on have no GPU, so there only the "no GPU
//! available" path runs; `scripts/gpu_check.sh` runs the CUDA tests and benchmarks on a
//! GPU machine.
//!
//! The context, module and function are created at the first launch and kept.

use super::CudaSource;
use crate::error::{Error, Result};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, LaunchConfig, PushKernelArg,
};
use cudarc::nvrtc::Ptx;
use std::sync::{Arc, OnceLock};

/// Whether the CUDA driver library (`libcuda.so`) can be loaded.
pub fn driver_available() -> bool {
    static PRESENT: OnceLock<bool> = OnceLock::new();
    // Safety: only tries to open the library; nothing of it is called.
    *PRESENT.get_or_init(|| unsafe { cudarc::driver::sys::is_culib_present() })
}

/// The PTX architecture of GPU 0 (`compute_90` for an H100), if there is a GPU.
pub fn device_arch() -> Option<String> {
    if !driver_available() {
        return None;
    }
    if CudaContext::device_count().ok()? < 1 {
        return None;
    }
    let ctx = CudaContext::new(0).ok()?;
    let (major, minor) = ctx.compute_capability().ok()?;
    Some(format!("compute_{}{}", major, minor))
}

/// One argument array of a launch, as bytes.
pub enum HostArg<'a> {
    /// Copied to the device only (the kernel does not write it, or the caller does not
    /// want it back).
    In(&'a [u8]),
    /// Copied to the device and back after the kernel.
    InOut(&'a mut [u8]),
}

/// What a launch needs from the driver, created once.
struct Loaded {
    stream: Arc<CudaStream>,
    func: CudaFunction,
}

/// A CUDA kernel compiled to PTX, loaded onto GPU 0 when first launched.
pub struct CudaModule {
    source: CudaSource,
    ptx: String,
    arch: String,
    loaded: OnceLock<std::result::Result<Loaded, String>>,
}

impl std::fmt::Debug for CudaModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaModule")
            .field("kernel", &self.source.kernel_name)
            .field("arch", &self.arch)
            .finish()
    }
}

impl CudaModule {
    /// A module for `source` compiled to `ptx` for `arch`.
    pub fn new(source: CudaSource, ptx: String, arch: String) -> CudaModule {
        CudaModule {
            source,
            ptx,
            arch,
            loaded: OnceLock::new(),
        }
    }
    /// The CUDA C source.
    pub fn source(&self) -> &CudaSource {
        &self.source
    }
    /// The PTX.
    pub fn ptx(&self) -> &str {
        &self.ptx
    }
    /// The architecture the PTX was generated for.
    pub fn arch(&self) -> &str {
        &self.arch
    }

    fn load(&self) -> Result<&Loaded> {
        let no_gpu = |why: String| {
            Error::Target(format!(
                "cannot run CUDA kernel {}: no GPU is available ({})",
                self.source.kernel_name, why
            ))
        };
        if !driver_available() {
            return Err(no_gpu(
                "the CUDA driver library libcuda.so was not found".into(),
            ));
        }
        let r = self.loaded.get_or_init(|| {
            let ctx = CudaContext::new(0).map_err(|e| format!("no CUDA device 0: {:?}", e))?;
            let module = ctx
                .load_module(Ptx::from_src(self.ptx.clone()))
                .map_err(|e| format!("the driver rejected the PTX for {}: {:?}", self.arch, e))?;
            let func = module
                .load_function(&self.source.kernel_name)
                .map_err(|e| {
                    format!(
                        "kernel {} not in the module: {:?}",
                        self.source.kernel_name, e
                    )
                })?;
            Ok(Loaded {
                stream: ctx.default_stream(),
                func,
            })
        });
        r.as_ref().map_err(|m| no_gpu(m.clone()))
    }

    /// The stream this module launches on (loading the module onto GPU 0 first). Allocate
    /// the buffers of [`launch_raw`](Self::launch_raw) on it.
    pub fn stream(&self) -> Result<Arc<CudaStream>> {
        Ok(self.load()?.stream.clone())
    }

    /// Launch on [`stream`](Self::stream) without copying or waiting: `ptrs` are the
    /// device addresses of the buffer parameters in order, `shape_vals` the values of the
    /// shape variables. Errors of the launch itself are returned; errors of the running
    /// kernel show at the next synchronization.
    ///
    /// # Safety
    /// Each pointer must address a live device allocation of the parameter's dtype holding
    /// at least the elements the kernel touches for these shape values (the whole array of
    /// the shape that `Kernel::call` would check), and stay alive until the kernel is done.
    pub unsafe fn launch_raw(&self, ptrs: &[u64], shape_vals: &[i64]) -> Result<()> {
        let l = self.load()?;
        let n_buf = self
            .source
            .params
            .iter()
            .filter(|p| matches!(p, super::KernelParam::Buffer { .. }))
            .count();
        if ptrs.len() != n_buf {
            return Err(Error::Argument(format!(
                "CUDA kernel {} takes {} buffer pointers, got {}",
                self.source.kernel_name,
                n_buf,
                ptrs.len()
            )));
        }
        let (grid, block) = self.source.launch.dims(shape_vals)?;
        if grid.contains(&0) || block.contains(&0) {
            return Ok(());
        }
        let cfg = LaunchConfig {
            grid_dim: (grid[0], grid[1], grid[2]),
            block_dim: (block[0], block[1], block[2]),
            shared_mem_bytes: 0,
        };
        let mut b = l.stream.launch_builder(&l.func);
        for p in ptrs {
            b.arg(p);
        }
        for v in shape_vals {
            b.arg(v);
        }
        // Safety: the caller guarantees the pointers (see above); parameters are one
        // pointer per buffer, then one 64-bit integer per shape variable.
        unsafe { b.launch(cfg) }.map_err(|e| {
            Error::Target(format!(
                "CUDA kernel {}: launch failed: {:?}",
                self.source.kernel_name, e
            ))
        })?;
        Ok(())
    }

    /// Launch on GPU 0: `args` in parameter order (one per buffer parameter), then the
    /// values of the shape variables. Synchronizes before returning.
    pub fn launch(&self, args: &mut [HostArg<'_>], shape_vals: &[i64]) -> Result<()> {
        let l = self.load()?;
        let (grid, block) = self.source.launch.dims(shape_vals)?;
        if grid.contains(&0) || block.contains(&0) {
            return Ok(());
        }
        let fail = |what: &str, e: cudarc::driver::DriverError| {
            Error::Target(format!(
                "CUDA kernel {}: {} failed: {:?}",
                self.source.kernel_name, what, e
            ))
        };
        let mut dev: Vec<CudaSlice<u8>> = Vec::with_capacity(args.len());
        for a in args.iter() {
            let bytes: &[u8] = match a {
                HostArg::In(b) => b,
                HostArg::InOut(b) => b,
            };
            let mut d = l
                .stream
                .alloc_zeros::<u8>(bytes.len().max(1))
                .map_err(|e| fail("device allocation", e))?;
            if !bytes.is_empty() {
                l.stream
                    .memcpy_htod(bytes, &mut d)
                    .map_err(|e| fail("copy to the device", e))?;
            }
            dev.push(d);
        }
        let cfg = LaunchConfig {
            grid_dim: (grid[0], grid[1], grid[2]),
            block_dim: (block[0], block[1], block[2]),
            shared_mem_bytes: 0,
        };
        let mut b = l.stream.launch_builder(&l.func);
        for d in &dev {
            b.arg(d);
        }
        for v in shape_vals {
            b.arg(v);
        }
        // Safety: the kernel's parameters are one pointer per buffer (each device buffer
        // holds the whole array, whose shape bind_args checked) and one 64-bit integer
        // per shape variable, in this order.
        unsafe { b.launch(cfg) }.map_err(|e| fail("launch", e))?;
        for (a, d) in args.iter_mut().zip(&dev) {
            if let HostArg::InOut(bytes) = a {
                if !bytes.is_empty() {
                    l.stream
                        .memcpy_dtoh(d, &mut bytes[..])
                        .map_err(|e| fail("copy from the device", e))?;
                }
            }
        }
        l.stream
            .synchronize()
            .map_err(|e| fail("synchronization", e))
    }
}
