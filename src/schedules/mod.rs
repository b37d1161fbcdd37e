//! A library of good default schedules for common operators: CPU ([`matmul_cpu`],
//! [`activation_cpu`],
//! [`conv2d_depthwise_cpu`], [`conv2d_pointwise_cpu`], [`conv2d_nchw_cpu_blocked`],
//! [`matmul_cpu_tensorized`], [`conv2d_nchw_cpu_tensorized`], [`conv2d_winograd_cpu`],
//! [`softmax_rows_tensorized`]; in the blocked layout `NCHW[c]c`: [`conv2d_nchwc_cpu`],
//! [`depthwise_conv2d_nchwc_cpu`])
//! and CUDA ([`matmul_cuda`]).

mod activation;
mod conv2d;
mod conv_blocked;
mod cuda;
mod depthwise;
mod matmul;
mod nchwc;
mod pointwise;
pub mod softmax;
mod winograd;
pub use activation::{activation_cpu, activation_fits, activation_of};
pub use conv2d::{
    conv2d_nchw_cpu_tensorized, conv2d_nchw_cpu_tensorized_with, ConvConfig, ConvKernel, ConvShape,
};
pub(crate) use conv2d::{divisors, row_tiles};
pub use conv_blocked::conv2d_nchw_cpu_blocked;
pub use cuda::{
    conv2d_cuda_nchw, matmul_cuda, matmul_cuda_tensorcore, matmul_cuda_with, CudaMatmulConfig,
};
pub use depthwise::conv2d_depthwise_cpu;
pub(crate) use matmul::{default_k_unroll, gemm_blis, register_tile};
pub use matmul::{
    matmul_cpu, matmul_cpu_config, matmul_cpu_tensorized, matmul_cpu_tensorized_with,
    matmul_cpu_with, GemmBlocking, MatmulConfig,
};
pub use nchwc::{conv2d_nchwc_cpu, depthwise_conv2d_nchwc_cpu};
pub use pointwise::conv2d_pointwise_cpu;
pub use softmax::{softmax_rows, softmax_rows_tensorized};
pub use winograd::{conv2d_winograd_cpu, conv2d_winograd_cpu_with, WinogradConfig};

use crate::error::Result;
use crate::schedule::Schedule;
use crate::te::Tensor;

/// Every operation of the computation of `out` (`out` itself and placeholders included),
/// each once.
pub(crate) fn stages_of(out: &Tensor) -> Vec<Tensor> {
    let mut seen = std::collections::HashSet::new();
    let mut found = vec![];
    let mut todo = vec![out.clone()];
    while let Some(t) = todo.pop() {
        if seen.insert(t.op.name.clone()) {
            todo.extend(t.op.input_tensors());
            found.push(t);
        }
    }
    found
}

/// The stage named `name` in the computation of `out` (`out` itself included), if any.
pub(crate) fn find_stage(out: &Tensor, name: &str) -> Option<Tensor> {
    stages_of(out).into_iter().find(|t| t.op.name == name)
}

/// A padding stage computed whole first (its reads of the input unguarded), its two outer
/// axes (batch and channels; batch and rows in a channels-last layout) fused and parallel
/// on several threads.
pub(crate) fn pad_at_root(s: &mut Schedule, pad: &Tensor, threads: usize) -> Result<()> {
    let a = s.axes(pad)?;
    if a.len() >= 2 && threads > 1 {
        let f = s.fuse(pad, &[&a[0], &a[1]])?;
        s.parallel(pad, &f)?;
    }
    Ok(())
}

/// Every stage but `keep` inlined into its readers (an epilogue's elementwise stages, a
/// transform computed in the output's loops).
pub(crate) fn inline_all_but(s: &mut Schedule, keep: &[&Tensor]) -> Result<()> {
    for st in s.stages.clone() {
        if !keep.iter().any(|k| k.op.name == st.name) {
            s.compute_inline(st.name.as_str())?;
        }
    }
    Ok(())
}

/// The stage a convolution's output tile accumulates in: the convolution `conv` itself
/// when `out` is an epilogue that reads it (the epilogue is then applied as the tile is
/// stored), otherwise a `local` cache of `out`.
pub(crate) fn accumulator(s: &mut Schedule, out: &Tensor, conv: &Tensor) -> Result<Tensor> {
    if conv.same_as(out) {
        s.cache_write(out, "local")
    } else {
        Ok(conv.clone())
    }
}
