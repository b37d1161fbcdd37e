//! Compiling the generated CUDA C to PTX with NVRTC (through cudarc, loaded at run time).
//!
//! cudarc looks `libnvrtc.so.12` up by name: on a machine without a CUDA toolkit, `pip
//! install nvidia-cuda-nvrtc-cu12` and add `<site-packages>/nvidia/cuda_nvrtc/lib` to
//! `LD_LIBRARY_PATH`. No GPU is needed to compile.

use super::CudaSource;
use crate::error::{internal, Error, Result};
use cudarc::nvrtc::{compile_ptx_with_opts, CompileError, CompileOptions};
use std::sync::OnceLock;

/// Architecture compiled for when none is given and no GPU can be asked (Ampere: PTX for
/// it is JIT-compiled by the driver for any newer GPU).
pub const DEFAULT_ARCH: &str = "compute_80";

/// Whether the NVRTC library can be loaded (checked once).
pub fn nvrtc_available() -> bool {
    static PRESENT: OnceLock<bool> = OnceLock::new();
    // Safety: only tries to open the library; nothing of it is called.
    *PRESENT.get_or_init(|| unsafe { cudarc::nvrtc::sys::is_culib_present() })
}

/// The virtual architecture NVRTC should generate PTX for: `sm_90` and `90` mean
/// `compute_90`; `compute_XX` (also with a suffix such as `compute_90a`) is kept.
pub fn ptx_arch(arch: &str) -> Result<String> {
    let digits = arch
        .strip_prefix("compute_")
        .or_else(|| arch.strip_prefix("sm_"))
        .unwrap_or(arch);
    let num: String = digits.chars().take_while(|c| c.is_ascii_digit()).collect();
    let suffix = &digits[num.len()..];
    if num.len() < 2 || !(suffix.is_empty() || suffix == "a" || suffix == "f") {
        return Err(Error::Target(format!(
            "unknown CUDA architecture {:?} (expected e.g. \"sm_80\", \"sm_90\" or \"compute_90\")",
            arch
        )));
    }
    Ok(format!("compute_{}{}", num, suffix))
}

/// Compile `src` to PTX for `arch` (`"compute_80"`, `"sm_90"`...).
///
/// Errors: [`Error::Target`] when NVRTC cannot be loaded or the architecture is unknown;
/// an internal error carrying NVRTC's log and the CUDA source when NVRTC rejects the code
/// (generated code that does not compile is a compiler bug).
pub fn compile_ptx(src: &CudaSource, arch: &str) -> Result<String> {
    let arch = ptx_arch(arch)?;
    if !nvrtc_available() {
        return Err(Error::Target(format!(
            "cannot compile CUDA kernel {}: libnvrtc.so.12 was not found (pip install nvidia-cuda-nvrtc-cu12 and add <site-packages>/nvidia/cuda_nvrtc/lib to LD_LIBRARY_PATH)",
            src.kernel_name
        )));
    }
    let opts = CompileOptions {
        options: vec![format!("--gpu-architecture={}", arch)],
        name: Some(format!("{}.cu", src.kernel_name)),
        ..Default::default()
    };
    match compile_ptx_with_opts(&src.code, opts) {
        Ok(ptx) => Ok(ptx.to_src()),
        Err(CompileError::CompileError { log, options, .. }) => Err(internal(
            format!(
                "NVRTC rejected the CUDA C generated for {} (options {:?}):\n{}",
                src.kernel_name,
                options,
                log.to_string_lossy()
            ),
            &src.code,
        )),
        Err(e) => Err(internal(
            format!("NVRTC failed on {}: {}", src.kernel_name, e),
            &src.code,
        )),
    }
}
