//! A library of good default schedules for common operators: CPU ([`matmul_cpu`],
//! [`softmax_rows_tensorized`]) and CUDA ([`matmul_cuda`]).

mod cuda;
mod matmul;
pub mod softmax;
pub use cuda::{
    conv2d_cuda_nchw, matmul_cuda, matmul_cuda_tensorcore, matmul_cuda_with, CudaMatmulConfig,
};
pub use matmul::{matmul_cpu, matmul_cpu_tensorized, matmul_cpu_with, MatmulConfig};
pub use softmax::{softmax_rows, softmax_rows_tensorized};
