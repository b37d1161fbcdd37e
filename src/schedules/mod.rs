//! A library of good default schedules for common operators: CPU ([`matmul_cpu`],
//! [`matmul_cpu_tensorized`], [`conv2d_nchw_cpu_tensorized`], [`conv2d_winograd_cpu`],
//! [`softmax_rows_tensorized`])
//! and CUDA ([`matmul_cuda`]).

mod conv2d;
mod cuda;
mod matmul;
pub mod softmax;
mod winograd;
pub use conv2d::{
    conv2d_nchw_cpu_tensorized, conv2d_nchw_cpu_tensorized_with, ConvConfig, ConvKernel, ConvShape,
};
pub(crate) use conv2d::{divisors, row_tiles};
pub use cuda::{
    conv2d_cuda_nchw, matmul_cuda, matmul_cuda_tensorcore, matmul_cuda_with, CudaMatmulConfig,
};
pub(crate) use matmul::register_tile;
pub use matmul::{
    matmul_cpu, matmul_cpu_tensorized, matmul_cpu_tensorized_with, matmul_cpu_with, GemmBlocking,
    MatmulConfig,
};
pub use softmax::{softmax_rows, softmax_rows_tensorized};
pub use winograd::{conv2d_winograd_cpu, conv2d_winograd_cpu_with, WinogradConfig};

/// The stage named `name` in the computation of `out` (`out` itself included), if any.
pub(crate) fn find_stage(out: &crate::te::Tensor, name: &str) -> Option<crate::te::Tensor> {
    let mut todo = vec![out.clone()];
    while let Some(t) = todo.pop() {
        if t.op.name == name {
            return Some(t);
        }
        todo.extend(t.op.input_tensors());
    }
    None
}
