//! Free-variable analysis for outlining parallel loop bodies: which variables and buffers a
//! statement mentions, so the caller can pack exactly those into the task's context.

use crate::lower::ir::Stmt;
use crate::te::{Expr, ExprNode, Var};
use std::collections::HashSet;

/// Variables and buffers mentioned by a statement, each in first-use order.
#[derive(Default)]
pub(crate) struct Mentions {
    /// Every variable that occurs (bound inside or not; the caller filters by its scope).
    pub vars: Vec<Var>,
    /// Names of every buffer loaded from, stored to or allocated.
    pub bufs: Vec<String>,
    seen_vars: HashSet<u64>,
    seen_bufs: HashSet<String>,
}

impl Mentions {
    fn var(&mut self, v: &Var) {
        if self.seen_vars.insert(v.id()) {
            self.vars.push(v.clone());
        }
    }
    fn buf(&mut self, name: &str) {
        if !self.seen_bufs.contains(name) {
            self.seen_bufs.insert(name.to_string());
            self.bufs.push(name.to_string());
        }
    }
    fn expr(&mut self, e: &Expr) {
        e.visit(&mut |x| {
            match x.node() {
                ExprNode::Var(v) => self.var(v),
                ExprNode::Load(b, _) => {
                    self.buf(b.name());
                }
                _ => {}
            }
            true
        });
    }
}

/// Collect what `s` mentions (including allocation shapes and loop bounds).
pub(crate) fn mentions(s: &Stmt) -> Mentions {
    let mut m = Mentions::default();
    s.visit(&mut |st| match st {
        Stmt::For(f) => {
            m.expr(&f.min);
            m.expr(&f.extent);
        }
        Stmt::If { cond, .. } => m.expr(cond),
        Stmt::Store {
            buf,
            indices,
            value,
        } => {
            m.buf(buf.name());
            indices.iter().for_each(|i| m.expr(i));
            m.expr(value);
        }
        Stmt::Allocate { buf, .. } => {
            m.buf(buf.name());
            buf.shape().iter().for_each(|e| m.expr(e));
        }
        Stmt::Let { value, .. } => m.expr(value),
        Stmt::Evaluate(e) => m.expr(e),
        Stmt::Intrinsic(c) => {
            for o in &c.operands {
                m.buf(o.buf.name());
                o.index.iter().chain(&o.strides).for_each(|e| m.expr(e));
            }
        }
        _ => {}
    });
    m
}
