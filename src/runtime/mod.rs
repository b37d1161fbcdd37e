//! Runtime support shared by the backends: host arrays and call-time argument binding.

mod args;
mod ndarray;
pub use args::bind_args;
pub use ndarray::{Element, NdArray};
