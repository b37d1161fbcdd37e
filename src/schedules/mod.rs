//! A library of good default schedules for common operators: CPU ([`matmul_cpu`]) and
//! CUDA ([`matmul_cuda`]).

mod cuda;
mod matmul;
pub use cuda::{matmul_cuda, matmul_cuda_tensorcore, matmul_cuda_with, CudaMatmulConfig};
pub use matmul::{matmul_cpu, matmul_cpu_tensorized, matmul_cpu_with, MatmulConfig};
