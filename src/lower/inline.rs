//! Pass (TE level): compute_inline. Substitutes the bodies of inlined stages into their
//! readers.
//!
//! Requires: a schedule. Ensures: the effective body of every stage reads no inlined
//! stage (reads of inlined stages are replaced by their expressions at the read indices).

use crate::schedule::{Attach, Schedule};
use crate::te::{Expr, ExprNode, OpKind};
use std::collections::HashMap;

/// The effective bodies of every compute stage, with inlined stages substituted.
pub fn inline_bodies(s: &Schedule) -> HashMap<String, Vec<Expr>> {
    let mut eff: HashMap<String, Vec<Expr>> = HashMap::new();
    // Stages are in topological order: producers are resolved before their readers.
    for st in &s.stages {
        let body = match &st.op.kind {
            OpKind::Compute { body, .. } => body.clone(),
            _ => continue,
        };
        let body: Vec<Expr> = body
            .iter()
            .map(|b| substitute_inlined(b, s, &eff))
            .collect();
        eff.insert(st.name.clone(), body);
    }
    eff
}

fn substitute_inlined(e: &Expr, s: &Schedule, eff: &HashMap<String, Vec<Expr>>) -> Expr {
    e.mutate(&mut |x| match x.node() {
        ExprNode::Read(t, idx) => {
            let st = s.stages.iter().find(|st| st.name == t.op.name)?;
            if st.attach != Attach::Inline {
                let idx2: Vec<Expr> = idx.iter().map(|i| substitute_inlined(i, s, eff)).collect();
                return Some(t.at(&idx2));
            }
            let body = &eff[&st.name][t.value_index];
            let axes = match &st.op.kind {
                OpKind::Compute { axis, .. } => axis,
                _ => return None,
            };
            let map: HashMap<u64, Expr> = axes
                .iter()
                .zip(idx)
                .map(|(a, i)| (a.var.id(), substitute_inlined(i, s, eff)))
                .collect();
            Some(body.substitute(&map))
        }
        _ => None,
    })
}
