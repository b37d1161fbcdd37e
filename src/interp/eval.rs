//! Expression evaluation and buffer access (loads, stores, index flattening, bounds
//! checks) on a [`Machine`].
//!
//! Vectors: an operation on a vector and a scalar broadcasts the scalar; two vectors must
//! have the same number of lanes. A load or store whose index has several lanes gathers or
//! scatters lane by lane (later lanes win when a scatter repeats an index).

use super::exec::Machine;
use super::program::{Access, CExpr, CNode};
use super::value::{binary, cast, compare, math, truthy, Scalar, Value, R};
use crate::te::BinOp;

/// Apply `f` lane-wise to one value.
fn map1(x: Value, mut f: impl FnMut(Scalar) -> R<Scalar>) -> R<Value> {
    match x {
        Value::S(a) => Ok(Value::S(f(a)?)),
        Value::V(v) => Ok(Value::V(v.into_iter().map(f).collect::<R<Vec<_>>>()?)),
    }
}

/// Apply `f` lane-wise to two values, broadcasting a scalar.
fn map2(x: Value, y: Value, mut f: impl FnMut(Scalar, Scalar) -> R<Scalar>) -> R<Value> {
    match (x, y) {
        (Value::S(a), Value::S(b)) => Ok(Value::S(f(a, b)?)),
        (Value::V(u), Value::S(b)) => Ok(Value::V(
            u.into_iter().map(|a| f(a, b)).collect::<R<Vec<_>>>()?,
        )),
        (Value::S(a), Value::V(w)) => Ok(Value::V(
            w.into_iter().map(|b| f(a, b)).collect::<R<Vec<_>>>()?,
        )),
        (Value::V(u), Value::V(w)) => {
            if u.len() != w.len() {
                return Err(format!("lanes mismatch: {} vs {}", u.len(), w.len()));
            }
            Ok(Value::V(
                u.into_iter()
                    .zip(w)
                    .map(|(a, b)| f(a, b))
                    .collect::<R<Vec<_>>>()?,
            ))
        }
    }
}

/// Lane `k` of a value (a scalar broadcasts).
fn lane(v: &Value, k: usize) -> Scalar {
    match v {
        Value::S(s) => *s,
        Value::V(l) => l[k],
    }
}

/// Flat element indices of an access, bounds-checked.
enum Flat {
    One(usize),
    Many(Vec<usize>),
}

impl<'p> Machine<'p> {
    /// Evaluate an expression.
    pub(crate) fn eval(&mut self, e: &CExpr) -> R<Value> {
        if e.lanes == 1 {
            return self.eval_scalar(e).map(Value::S);
        }
        match &e.node {
            CNode::Const(c) => Ok(Value::S(*c)),
            CNode::Var(s) => Ok(self.env[*s].clone()),
            CNode::Undef(n) => Err(format!(
                "use of undefined variable {} (not bound where it is used)",
                n
            )),
            CNode::Binary(op, a, b) => {
                let (x, y) = (self.eval(a)?, self.eval(b)?);
                if let (Value::S(p), Value::S(q)) = (&x, &y) {
                    return Ok(Value::S(binary(*op, a.dt, *p, *q)?));
                }
                map2(x, y, |p, q| binary(*op, a.dt, p, q)).map_err(|m| format!("{:?}: {}", op, m))
            }
            CNode::Cmp(op, a, b) => {
                let (x, y) = (self.eval(a)?, self.eval(b)?);
                map2(x, y, |p, q| compare(*op, p, q)).map_err(|m| format!("{:?}: {}", op, m))
            }
            CNode::And(a, b) => {
                let (x, y) = (self.eval(a)?, self.eval(b)?);
                map2(x, y, |p, q| Ok(Scalar::I((truthy(p) && truthy(q)) as i64)))
                    .map_err(|m| format!("and: {}", m))
            }
            CNode::Or(a, b) => {
                let (x, y) = (self.eval(a)?, self.eval(b)?);
                map2(x, y, |p, q| Ok(Scalar::I((truthy(p) || truthy(q)) as i64)))
                    .map_err(|m| format!("or: {}", m))
            }
            CNode::Not(a) => map1(self.eval(a)?, |p| Ok(Scalar::I(!truthy(p) as i64))),
            CNode::Select(c, t, f) => {
                let (c, t, f) = (self.eval(c)?, self.eval(t)?, self.eval(f)?);
                if let Value::S(c) = c {
                    if t.lanes() == f.lanes() || t.lanes() == 1 || f.lanes() == 1 {
                        let n = t.lanes().max(f.lanes());
                        let pick = if truthy(c) { t } else { f };
                        return Ok(broadcast(pick, n));
                    }
                }
                let n = c.lanes().max(t.lanes()).max(f.lanes());
                for v in [&c, &t, &f] {
                    if v.lanes() != 1 && v.lanes() != n {
                        return Err(format!(
                            "select: lanes mismatch (condition {}, true {}, false {})",
                            c.lanes(),
                            t.lanes(),
                            f.lanes()
                        ));
                    }
                }
                let lanes = (0..n)
                    .map(|k| {
                        if truthy(lane(&c, k)) {
                            lane(&t, k)
                        } else {
                            lane(&f, k)
                        }
                    })
                    .collect();
                Ok(Value::from_lanes(lanes))
            }
            CNode::Cast(a) => {
                let to = e.dt;
                map1(self.eval(a)?, |p| Ok(cast(to, p)))
            }
            CNode::Call(f, args) => {
                let dt = e.dt;
                if args.len() == 1 {
                    map1(self.eval(&args[0])?, |p| math(*f, dt, &[p]))
                } else if args.len() == 2 {
                    let (x, y) = (self.eval(&args[0])?, self.eval(&args[1])?);
                    map2(x, y, |p, q| math(*f, dt, &[p, q]))
                        .map_err(|m| format!("{}: {}", f.name(), m))
                } else {
                    Err(format!("{} called with {} arguments", f.name(), args.len()))
                }
            }
            CNode::Load(acc) => {
                let flat = self.flat(acc, "load from")?;
                let b = self.buf(acc.buf)?;
                Ok(match flat {
                    Flat::One(i) => Value::S(b.get(i)),
                    Flat::Many(v) => Value::V(v.into_iter().map(|i| b.get(i)).collect()),
                })
            }
            CNode::Ramp(base, stride, lanes) => {
                let b = match self.eval(base)? {
                    Value::S(s) => s,
                    v => {
                        return Err(format!(
                            "ramp base has {} lanes (must be scalar)",
                            v.lanes()
                        ))
                    }
                };
                let dt = base.dt;
                let lanes = (0..*lanes as i64)
                    .map(|k| {
                        binary(
                            BinOp::Add,
                            dt,
                            b,
                            cast(dt, Scalar::I(k.wrapping_mul(*stride))),
                        )
                    })
                    .collect::<R<Vec<_>>>()?;
                Ok(Value::from_lanes(lanes))
            }
            CNode::Broadcast(v, lanes) => match self.eval(v)? {
                Value::S(s) => Ok(Value::from_lanes(vec![s; *lanes as usize])),
                v => Err(format!(
                    "broadcast of a value with {} lanes (must be scalar)",
                    v.lanes()
                )),
            },
            CNode::Let(slot, v, body) => {
                self.env[*slot] = self.eval(v)?;
                self.eval(body)
            }
        }
    }

    /// Evaluate an expression known statically to be a scalar (the fast path: no vector
    /// handling, no allocation).
    fn eval_scalar(&mut self, e: &CExpr) -> R<Scalar> {
        match &e.node {
            CNode::Const(c) => Ok(*c),
            CNode::Var(s) => match &self.env[*s] {
                Value::S(x) => Ok(*x),
                Value::V(v) => Err(format!(
                    "variable slot {} holds {} lanes where a scalar is expected",
                    s,
                    v.len()
                )),
            },
            CNode::Undef(n) => Err(format!(
                "use of undefined variable {} (not bound where it is used)",
                n
            )),
            CNode::Binary(op, a, b) => {
                let (x, y) = (self.eval_scalar(a)?, self.eval_scalar(b)?);
                binary(*op, a.dt, x, y)
            }
            CNode::Cmp(op, a, b) => {
                let (x, y) = (self.eval_scalar(a)?, self.eval_scalar(b)?);
                compare(*op, x, y)
            }
            CNode::And(a, b) => {
                let (x, y) = (self.eval_scalar(a)?, self.eval_scalar(b)?);
                Ok(Scalar::I((truthy(x) && truthy(y)) as i64))
            }
            CNode::Or(a, b) => {
                let (x, y) = (self.eval_scalar(a)?, self.eval_scalar(b)?);
                Ok(Scalar::I((truthy(x) || truthy(y)) as i64))
            }
            CNode::Not(a) => Ok(Scalar::I(!truthy(self.eval_scalar(a)?) as i64)),
            CNode::Select(c, t, f) => {
                let (c, t, f) = (
                    self.eval_scalar(c)?,
                    self.eval_scalar(t)?,
                    self.eval_scalar(f)?,
                );
                Ok(if truthy(c) { t } else { f })
            }
            CNode::Cast(a) => Ok(cast(e.dt, self.eval_scalar(a)?)),
            CNode::Call(f, args) => match args.as_slice() {
                [a] => {
                    let x = self.eval_scalar(a)?;
                    math(*f, e.dt, &[x])
                }
                [a, b] => {
                    let (x, y) = (self.eval_scalar(a)?, self.eval_scalar(b)?);
                    math(*f, e.dt, &[x, y])
                }
                _ => Err(format!("{} called with {} arguments", f.name(), args.len())),
            },
            CNode::Load(acc) => {
                let i = self.flat_scalar(acc, "load from")?;
                Ok(self.buf(acc.buf)?.get(i))
            }
            CNode::Ramp(base, _, _) | CNode::Broadcast(base, _) => self.eval_scalar(base),
            CNode::Let(slot, v, body) => {
                self.env[*slot] = self.eval(v)?;
                self.eval_scalar(body)
            }
        }
    }

    /// The flat index of a scalar access (every index statically a scalar), checked.
    fn flat_scalar(&mut self, acc: &Access, what: &str) -> R<usize> {
        if let [idx] = acc.indices.as_slice() {
            let i = self.eval_scalar(idx)?;
            let len = self.buf(acc.buf)?.len();
            return match i {
                Scalar::I(i) if i >= 0 && (i as u64) < len as u64 => Ok(i as usize),
                Scalar::I(i) => Err(format!(
                    "out-of-bounds {} buffer {}: index {} not in [0, {})",
                    what, self.prog.bufs[acc.buf].name, i, len
                )),
                Scalar::F(_) => Err(format!(
                    "float index in {} buffer {}",
                    what, self.prog.bufs[acc.buf].name
                )),
            };
        }
        match self.flat(acc, what)? {
            Flat::One(i) => Ok(i),
            Flat::Many(v) => Err(format!(
                "{} buffer {}: a scalar access has {} lanes",
                what,
                self.prog.bufs[acc.buf].name,
                v.len()
            )),
        }
    }

    /// The buffer in slot `s`, which must be allocated.
    fn buf(&self, s: usize) -> R<&super::memory::Buf> {
        self.bufs[s].as_ref().ok_or_else(|| {
            format!(
                "buffer {} used outside its allocation",
                self.prog.bufs[s].name
            )
        })
    }

    /// Evaluate the indices of an access into bounds-checked flat indices.
    fn flat(&mut self, acc: &Access, what: &str) -> R<Flat> {
        let name = &self.prog.bufs[acc.buf].name;
        let check = |i: i64, len: usize| -> R<usize> {
            if i >= 0 && (i as u64) < len as u64 {
                Ok(i as usize)
            } else {
                Err(format!(
                    "out-of-bounds {} buffer {}: index {} not in [0, {})",
                    what, name, i, len
                ))
            }
        };
        let int = |s: Scalar| -> R<i64> {
            match s {
                Scalar::I(i) => Ok(i),
                Scalar::F(_) => Err(format!("float index in {} buffer {}", what, name)),
            }
        };
        if acc.indices.len() == 1 {
            let idx = self.eval(&acc.indices[0])?;
            let len = self.buf(acc.buf)?.len();
            return match idx {
                Value::S(s) => Ok(Flat::One(check(int(s)?, len)?)),
                Value::V(v) => Ok(Flat::Many(
                    v.into_iter()
                        .map(|s| check(int(s)?, len))
                        .collect::<R<Vec<_>>>()?,
                )),
            };
        }
        // One index per dimension: row-major flattening with per-dimension bounds checks.
        let mut vals = Vec::with_capacity(acc.indices.len());
        for i in &acc.indices {
            vals.push(self.eval(i)?);
        }
        let b = self.buf(acc.buf)?;
        if vals.len() != b.dims.len() {
            return Err(format!(
                "{} buffer {} with {} indices, but it has {} dimensions",
                what,
                name,
                vals.len(),
                b.dims.len()
            ));
        }
        let n = vals.iter().map(|v| v.lanes()).max().unwrap_or(1);
        if vals.iter().any(|v| v.lanes() != 1 && v.lanes() != n) {
            let l: Vec<usize> = vals.iter().map(|v| v.lanes()).collect();
            return Err(format!(
                "{} buffer {}: indices have mismatched lanes {:?}",
                what, name, l
            ));
        }
        let mut out = Vec::with_capacity(n);
        for k in 0..n {
            let mut flat: i64 = 0;
            for (d, v) in vals.iter().enumerate() {
                let i = int(lane(v, k))?;
                let dim = b.dims[d];
                if i < 0 || i >= dim {
                    return Err(format!(
                        "out-of-bounds {} buffer {}: index {} of dimension {} not in [0, {}) (indices {:?})",
                        what, name, i, d, dim, vals
                    ));
                }
                flat = flat * dim + i;
            }
            out.push(check(flat, b.len())?);
        }
        if n == 1 && vals.iter().all(|v| matches!(v, Value::S(_))) {
            Ok(Flat::One(out[0]))
        } else {
            Ok(Flat::Many(out))
        }
    }

    /// Execute a store.
    pub(crate) fn store(&mut self, acc: &Access, value: &CExpr) -> R<()> {
        if value.lanes == 1 && acc.indices.iter().all(|i| i.lanes == 1) {
            let i = self.flat_scalar(acc, "store to")?;
            let x = self.eval_scalar(value)?;
            let name = &self.prog.bufs[acc.buf].name;
            let b = self.bufs[acc.buf]
                .as_mut()
                .ok_or_else(|| format!("buffer {} used outside its allocation", name))?;
            return b
                .set(i, x)
                .map_err(|m| format!("store to buffer {}: {}", name, m));
        }
        let flat = self.flat(acc, "store to")?;
        let v = self.eval(value)?;
        let name = &self.prog.bufs[acc.buf].name;
        let b = self.bufs[acc.buf]
            .as_mut()
            .ok_or_else(|| format!("buffer {} used outside its allocation", name))?;
        let wrong = |m: String| format!("store to buffer {}: {}", name, m);
        match (flat, v) {
            (Flat::One(i), Value::S(x)) => b.set(i, x).map_err(wrong),
            (Flat::Many(idx), Value::V(xs)) if idx.len() == xs.len() => {
                for (i, x) in idx.into_iter().zip(xs) {
                    b.set(i, x).map_err(wrong)?;
                }
                Ok(())
            }
            (f, v) => {
                let il = match f {
                    Flat::One(_) => 1,
                    Flat::Many(v) => v.len(),
                };
                Err(wrong(format!(
                    "index has {} lanes but the value has {}",
                    il,
                    v.lanes()
                )))
            }
        }
    }
}

/// A value with `n` lanes (a scalar is repeated; a vector must already have `n`).
fn broadcast(v: Value, n: usize) -> Value {
    match v {
        Value::S(s) if n > 1 => Value::V(vec![s; n]),
        v => v,
    }
}
