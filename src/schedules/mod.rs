//! A library of good default CPU schedules for common operators.

mod matmul;
pub use matmul::{matmul_cpu, matmul_cpu_with, MatmulConfig};
