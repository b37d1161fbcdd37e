//! Call-time argument checking shared by every backend: arity, dtypes, shapes, and the
//! binding of symbolic dimensions from the arguments' shapes.

use crate::error::{Error, Result};
use crate::lower::ir::LoweredFunc;
use crate::lower::simplify::simplify;
use crate::te::{Expr, ExprNode};
use std::collections::HashMap;

/// Check `shapes`/`dtypes` of the arguments against `func`'s parameters and bind its
/// symbolic dimensions. Returns the value of each of `func.shape_vars`, in order.
pub fn bind_args(func: &LoweredFunc, args: &[(&[usize], crate::te::DType)]) -> Result<Vec<i64>> {
    if args.len() != func.params.len() {
        let names: Vec<&str> = func.params.iter().map(|b| b.name()).collect();
        return Err(Error::Argument(format!(
            "kernel {} takes {} arrays ({}) but {} were given",
            func.name,
            func.params.len(),
            names.join(", "),
            args.len()
        )));
    }
    let mut bound: HashMap<u64, i64> = HashMap::new();
    // First pass: bind plain variables from dimensions that are exactly a variable.
    for (p, (shape, dt)) in func.params.iter().zip(args) {
        if *dt != p.dtype() {
            return Err(Error::Argument(format!(
                "array for {} has dtype {} but the kernel expects {}",
                p.name(),
                dt,
                p.dtype()
            )));
        }
        if shape.len() != p.shape().len() {
            return Err(Error::Argument(format!(
                "array for {} has {} dimensions {:?} but the kernel expects {} ({})",
                p.name(),
                shape.len(),
                shape,
                p.shape().len(),
                fmt_shape(p.shape())
            )));
        }
        for (d, e) in p.shape().iter().enumerate() {
            if let ExprNode::Var(v) = e.node() {
                let got = shape[d] as i64;
                if let Some(prev) = bound.get(&v.id()) {
                    if *prev != got {
                        return Err(Error::Argument(format!(
                            "dimension {} of {} is {} but {} was already bound to {} by another array",
                            d,
                            p.name(),
                            got,
                            v.name(),
                            prev
                        )));
                    }
                } else {
                    bound.insert(v.id(), got);
                }
            }
        }
    }
    let mut vals = Vec::with_capacity(func.shape_vars.len());
    for v in &func.shape_vars {
        match bound.get(&v.id()) {
            Some(x) => vals.push(*x),
            None => return Err(Error::UnboundVar(v.name().to_string())),
        }
    }
    // Second pass: every dimension, evaluated with the bindings, must match.
    let map: HashMap<u64, Expr> = bound.iter().map(|(k, v)| (*k, Expr::int(*v))).collect();
    for (p, (shape, _)) in func.params.iter().zip(args) {
        for (d, e) in p.shape().iter().enumerate() {
            let want = simplify(&e.substitute(&map));
            match want.as_int() {
                Some(w) if w == shape[d] as i64 => {}
                Some(w) => {
                    return Err(Error::Argument(format!(
                        "array for {} has shape {:?} but the kernel expects dimension {} to be {} (shape {})",
                        p.name(),
                        shape,
                        d,
                        w,
                        fmt_shape(p.shape())
                    )))
                }
                None => {
                    let fv = want.free_vars();
                    let name = fv.first().map(|v| v.name().to_string()).unwrap_or_else(|| want.to_string());
                    return Err(Error::UnboundVar(name));
                }
            }
        }
    }
    Ok(vals)
}

fn fmt_shape(s: &[Expr]) -> String {
    let v: Vec<String> = s.iter().map(|e| e.to_string()).collect();
    format!("[{}]", v.join(", "))
}
