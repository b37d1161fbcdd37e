//! Check: GPU launch limits.
//!
//! Requires: final loop structure. Ensures (or reports as a schedule error naming the
//! axis): a loop bound to `threadIdx.x`/`y` has at most 1024 iterations and one bound to
//! `threadIdx.z` at most 64, the threads of one block number at most 1024, and no axis
//! is bound to `blockIdx.y`/`z` with more than 65535 iterations — the limits of every
//! NVIDIA GPU since compute capability 3.0. Extents known only at run time are checked
//! when the kernel is launched.

use super::ir::{ForKind, Stmt};
use crate::error::{Error, Result};
use std::collections::HashMap;

/// Check the constant extents of thread-bound loops against the device limits.
pub fn check(func_name: &str, s: &Stmt) -> Result<()> {
    let mut launch: HashMap<String, (i64, String)> = HashMap::new();
    let mut err = None;
    s.visit(&mut |x| {
        if let Stmt::For(f) = x {
            if let (ForKind::ThreadBinding(tag), Some(n)) = (&f.kind, f.extent.as_int()) {
                let e = launch
                    .entry(tag.clone())
                    .or_insert((0, f.var.name().to_string()));
                if n > e.0 {
                    *e = (n, f.var.name().to_string());
                }
            }
        }
    });
    let limit = |tag: &str| match tag {
        "threadIdx.x" | "threadIdx.y" => Some(1024),
        "threadIdx.z" => Some(64),
        "blockIdx.y" | "blockIdx.z" => Some(65535),
        _ => None,
    };
    let mut tags: Vec<&String> = launch.keys().collect();
    tags.sort();
    for tag in tags {
        let (n, axis) = &launch[tag];
        if let Some(l) = limit(tag) {
            if *n > l && err.is_none() {
                err = Some(format!("{} is bound to {} with {} iterations; the device allows at most {}: split it and bind the inner part", axis, tag, n, l));
            }
        }
    }
    let threads: i64 = ["threadIdx.x", "threadIdx.y", "threadIdx.z"]
        .iter()
        .map(|t| launch.get(*t).map(|v| v.0).unwrap_or(1))
        .product();
    if threads > 1024 && err.is_none() {
        let axes: Vec<String> = ["threadIdx.x", "threadIdx.y", "threadIdx.z"]
            .iter()
            .filter_map(|t| {
                launch
                    .get(*t)
                    .map(|(n, a)| format!("{} = {} ({})", t, n, a))
            })
            .collect();
        err = Some(format!(
            "a block of kernel {} would have {} threads ({}); the device allows at most 1024",
            func_name,
            threads,
            axes.join(", ")
        ));
    }
    match err {
        Some(m) => Err(Error::Lower(m)),
        None => Ok(()),
    }
}
