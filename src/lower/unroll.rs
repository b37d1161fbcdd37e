//! Pass: unroll.
//!
//! Requires: simplified loop extents. Ensures: every loop marked `unrolled` whose extent is
//! a constant (at most 256) is replaced by copies of its body with the loop variable
//! replaced by each value; other `unrolled` loops become serial loops (the schedule asked
//! for something that cannot be unrolled: the extent is only known at run time).

use super::ir::{ForKind, Stmt};
use crate::te::Expr;
use std::collections::HashMap;

const MAX_UNROLL: i64 = 256;

/// Unroll the loops marked for it.
pub fn unroll(s: &Stmt) -> Stmt {
    match s {
        Stmt::For(f) if f.kind == ForKind::Unrolled => {
            let body = unroll(&f.body);
            match (f.min.as_int(), f.extent.as_int()) {
                (Some(m), Some(n)) if n <= MAX_UNROLL => {
                    let copies = (0..n)
                        .map(|i| {
                            let mut map = HashMap::new();
                            map.insert(f.var.id(), Expr::int(m + i));
                            body.substitute(&map)
                        })
                        .collect();
                    Stmt::seq(copies)
                }
                _ => Stmt::for_(
                    f.var.clone(),
                    f.min.clone(),
                    f.extent.clone(),
                    ForKind::Serial,
                    body,
                ),
            }
        }
        other => other.map(&mut |x| unroll(x), &mut |e| e.clone()),
    }
}
