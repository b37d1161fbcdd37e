//! # loopforge
//!
//! A tensor-expression and schedule compiler in the line of TVM and Halide. A kernel author
//! says *what* an operator computes ([`te::compute`], [`te::reduce_axis`], [`te::sum`]) and,
//! apart from it, *how* it runs (a [`schedule::Schedule`]: split, tile, reorder, fuse,
//! vectorize, unroll, parallel, compute_at, cache_read/write...). [`lower()`] turns the pair
//! into a loop IR, [`build()`] JIT-compiles it with Cranelift, and the reference
//! interpreter ([`interp`]) executes the same IR as the oracle of the tests.
//! Whole models are operator graphs ([`graph_runtime::Graph`]) compiled node by node with
//! [`graph_runtime::build`] and run by a [`graph_runtime::GraphExecutor`].
//!
//! ```
//! use loopforge::prelude::*;
//!
//! let n = 64i64;
//! let a = placeholder(&[n.into(), n.into()], DType::F32, "A");
//! let b = placeholder(&[n.into(), n.into()], DType::F32, "B");
//! let k = reduce_axis(0, n, "k");
//! let c = compute(&[n.into(), n.into()], "C", |i| {
//!     sum(a.at(&[i[0].clone(), k.x()]) * b.at(&[k.x(), i[1].clone()]), &[k.clone()])
//! });
//! let mut s = create_schedule(&[c.clone()]).unwrap();
//! let [i, j] = s.axes2(&c).unwrap();
//! let (io, ii) = s.split(&c, &i, 16).unwrap();
//! let (jo, ji) = s.split(&c, &j, 4).unwrap();
//! s.reorder(&c, &[&io, &jo, &ii, &ji]).unwrap();
//! s.vectorize(&c, &ji).unwrap();
//! let kernel = build(&s, &[a, b, c], Target::cpu()).unwrap();
//! let x = NdArray::random(&[64, 64], DType::F32, 1);
//! let y = NdArray::random(&[64, 64], DType::F32, 2);
//! let mut z = NdArray::zeros(&[64, 64], DType::F32);
//! kernel.run(&mut [&x, &y], &mut [&mut z]).unwrap();
//! ```

pub mod autotune;
mod build;
pub mod codegen_cpu;
pub mod codegen_cuda;
pub mod egraph;
pub mod error;
pub mod graph_runtime;
pub mod interp;
pub mod intrinsics;
pub mod lower;
pub mod runtime;
pub mod schedule;
pub mod schedules;
pub mod te;

pub use build::{build, build_func, Kernel, Target};

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
pub use error::{Error, Result};
/// The `half` crate, whose `f16`/`bf16` are the elements of `float16`/`bfloat16` arrays.
pub use half;
pub use lower::lower;
pub use runtime::NdArray;

/// Everything a kernel author usually needs, in one import.
pub mod prelude {
    pub use crate::build::{build, Kernel, Target};
    pub use crate::error::{Error, Result};
    pub use crate::lower::lower;
    pub use crate::runtime::NdArray;
    pub use crate::schedule::{create_schedule, Axis, Schedule};
    pub use crate::te::*;
    pub use half::{bf16, f16};
}
