//! Pass: storage flattening.
//!
//! Requires: loads, stores and intrinsic operands with one index per buffer dimension.
//! Ensures: every load, store and intrinsic operand has one flat index (row-major, or with the buffer's padded strides), and every buffer in the body (allocations and
//! accesses) has a one-dimensional shape `[number of elements]`. Function parameters keep
//! their logical shapes (they are checked against the arguments at call time).

use super::ir::{Buffer, Stmt};
use super::simplify::simplify;
use crate::te::{Expr, ExprNode};
use std::cell::RefCell;
use std::collections::HashMap;

/// Flatten all buffer accesses of `body`.
pub fn flatten(body: &Stmt) -> Stmt {
    let cache: Cache = RefCell::new(HashMap::new());
    go(body, &cache)
}

type Cache = RefCell<HashMap<String, Buffer>>;

fn flat_buf(b: &Buffer, cache: &Cache) -> Buffer {
    if b.shape().len() == 1 {
        return b.clone();
    }
    cache
        .borrow_mut()
        .entry(b.name().to_string())
        .or_insert_with(|| Buffer::new(b.name(), b.dtype(), vec![b.num_elements()], b.scope()))
        .clone()
}

fn flat_index(b: &Buffer, idx: &[Expr]) -> Expr {
    if idx.len() == 1 {
        return idx[0].clone();
    }
    let strides = b.strides();
    let mut acc = Expr::int(0);
    for (i, st) in idx.iter().zip(strides) {
        acc = acc + i.clone() * st;
    }
    simplify(&acc)
}

fn expr(e: &Expr, cache: &Cache) -> Expr {
    e.mutate(&mut |x| match x.node() {
        ExprNode::Load(b, idx) if idx.len() != 1 || b.shape().len() != 1 => {
            let idx: Vec<Expr> = idx.iter().map(|i| expr(i, cache)).collect();
            let i = flat_index(b, &idx);
            Some(flat_buf(b, cache).load(vec![i]))
        }
        _ => None,
    })
}

fn go(s: &Stmt, cache: &Cache) -> Stmt {
    match s {
        Stmt::Store {
            buf,
            indices,
            value,
        } => {
            let idx: Vec<Expr> = indices.iter().map(|i| expr(i, cache)).collect();
            Stmt::Store {
                buf: flat_buf(buf, cache),
                indices: vec![flat_index(buf, &idx)],
                value: expr(value, cache),
            }
        }
        Stmt::Allocate { buf, body } => Stmt::Allocate {
            buf: flat_buf(buf, cache),
            body: Box::new(go(body, cache)),
        },
        Stmt::Intrinsic(c) => {
            let mut c = c.clone();
            for o in &mut c.operands {
                let idx: Vec<Expr> = o.index.iter().map(|i| expr(i, cache)).collect();
                o.index = vec![flat_index(&o.buf, &idx)];
                o.buf = flat_buf(&o.buf, cache);
            }
            Stmt::Intrinsic(c)
        }
        other => other.map(&mut |x| go(x, cache), &mut |e| expr(e, cache)),
    }
}
