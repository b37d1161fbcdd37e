//! Pass: storage synchronization (barriers for shared memory).
//!
//! Requires: loop nests with their `Produce` markers and allocations (after
//! `schedule_ops`). Ensures: inside a GPU kernel (under a loop bound to `blockIdx.*` or
//! `threadIdx.*`), the computation of every buffer in `shared` scope is preceded by a
//! barrier (no thread overwrites the buffer while another still reads the previous
//! contents, e.g. in the previous iteration of a `k.outer` loop) and followed by one (no
//! thread reads it before every thread has written its part). Barriers are placed at the
//! level of the `Produce`, which every thread of the block reaches.

use super::ir::{ForKind, Scope, Stmt};
use std::collections::HashSet;

/// Insert the barriers around shared-memory producers inside kernels (two producers in a
/// row share the barrier between them).
pub fn insert_barriers(s: &Stmt) -> Stmt {
    merge_adjacent(&go(s, false, &mut HashSet::new()))
}

/// Drop a barrier that directly follows another one in a sequence.
fn merge_adjacent(s: &Stmt) -> Stmt {
    match s {
        Stmt::Seq(v) => {
            let mut out: Vec<Stmt> = vec![];
            for x in v.iter().map(merge_adjacent) {
                let flat = match x {
                    Stmt::Seq(inner) => inner,
                    other => vec![other],
                };
                for y in flat {
                    if matches!(y, Stmt::Barrier) && matches!(out.last(), Some(Stmt::Barrier)) {
                        continue;
                    }
                    out.push(y);
                }
            }
            Stmt::seq(out)
        }
        other => other.map(&mut merge_adjacent, &mut |e| e.clone()),
    }
}

fn go(s: &Stmt, in_kernel: bool, shared: &mut HashSet<String>) -> Stmt {
    match s {
        Stmt::For(f) => {
            let k = in_kernel
                || matches!(&f.kind, ForKind::ThreadBinding(t) if t.starts_with("blockIdx") || t.starts_with("threadIdx"));
            s.map(&mut |x| go(x, k, shared), &mut |e| e.clone())
        }
        Stmt::Allocate { buf, body } => {
            let fresh = buf.scope() == Scope::Shared && shared.insert(buf.name().to_string());
            let body = go(body, in_kernel, shared);
            if fresh {
                shared.remove(buf.name());
            }
            Stmt::Allocate {
                buf: buf.clone(),
                body: Box::new(body),
            }
        }
        Stmt::Produce { name, body } if in_kernel && shared.contains(name) => {
            let inner = Stmt::Produce {
                name: name.clone(),
                body: Box::new(go(body, in_kernel, shared)),
            };
            Stmt::Seq(vec![Stmt::Barrier, inner, Stmt::Barrier])
        }
        other => other.map(&mut |x| go(x, in_kernel, shared), &mut |e| e.clone()),
    }
}
